#!/usr/bin/python3
"""t1420-bosh: BOSH (XEP-0124) carrying XMPP (XEP-0206) at /http-bind, with a
raw HTTP client: session creation and its attributes, SASL PLAIN on a
`secure: true` listener, restart, bind, a chat with a TCP client both ways,
rid ordering, a repeated rid, rids out of the window, an unknown sid, a
malformed body, long polling (wait, hold), pause, terminate, the
inactivity timeout (the contact sees unavailable presence), CORS."""

import asyncio
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402
from xt_transports import (Bosh, NS_BOSH, NS_C, NS_SASL, NS_STREAM,  # noqa: E402
                           NS_XBOSH)

MAX_WAIT = 20
INACTIVITY = 4
# The sessions' wait (XEP-0124 7.1): short, since a request nothing wakes is
# held this long; what must come "at once" is checked well under it.
WAIT = 3


def messages(b):
    return [m.findtext('{%s}body' % NS_C) for m in b.findall('{%s}message' % NS_C)] if b is not None else []


async def poll_for(bosh, pred, tries=4):
    """Empty requests until one answers with what pred accepts."""
    for _ in range(tries):
        st, b, _ = await bosh.request()
        if b is not None and pred(b):
            return b
    return None


async def main():
    xt.plan(40)
    srv = xt.Server(workers=2, start=False, modules={'mod_roster': {}},
                    conf={'bosh_max_wait': MAX_WAIT, 'bosh_max_inactivity': INACTIVITY,
                          'bosh_max_pause': 30})
    port = xt.free_ports(srv.ip, 1)[0]
    # A plain HTTP listener behind a (pretend) TLS proxy: `secure: true`
    # makes it count as encrypted, so PLAIN is offered (RFC 6120 6.4.6).
    srv.conf['listen'].append({'port': port, 'ip': srv.ip, 'module': 'http', 'secure': True,
                               'max_stanza_size': 65536})
    srv.write_config()
    srv.start()
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    bob = await xt.login_ok(srv, 'bob', resource='tcp')

    # -- CORS ---------------------------------------------------------------
    b0 = Bosh(srv, port)
    st, hdrs, _ = await b0.post(b'', method='OPTIONS',
                                headers={'Origin': 'https://web.example',
                                         'Access-Control-Request-Method': 'POST'})
    xt.ok(st == 200 and hdrs.get('access-control-allow-origin') == '*' and
          'POST' in hdrs.get('access-control-allow-methods', ''),
          'CORS preflight: 200 with Access-Control-Allow-Origin and -Methods')

    # -- session creation ---------------------------------------------------
    a = Bosh(srv, port)
    st, b = await a.create(wait=WAIT, hold=1)
    x = lambda n: b.get('{%s}%s' % (NS_XBOSH, n))  # noqa: E731
    xt.ok(st == 200 and re.fullmatch(r'[0-9a-f]{34}', b.get('sid') or '') is not None,
          'creation: 200 and a sid (its worker first)')
    xt.is_(a.last_headers.get('content-type'), 'text/xml; charset=utf-8', 'Content-Type text/xml')
    xt.is_((b.get('wait'), b.get('hold'), b.get('requests')), (str(WAIT), '1', '2'),
           'wait and hold as asked, requests = hold + 1 (XEP-0124 7.1)')
    xt.is_((b.get('inactivity'), b.get('maxpause'), b.get('polling') is not None),
           (str(INACTIVITY), '30', True), 'inactivity and maxpause from the configuration')
    xt.is_((b.get('ver'), b.get('from'), x('version')), ('1.6', srv.host, '1.0'),
           'ver (the client\'s, lower), from, xmpp:version (XEP-0206 4)')
    xt.ok(re.fullmatch(r'[0-9a-f]{32}', b.get('authid') or '') is not None, 'authid: the stream id')
    mechs = [m.text for m in b.iter('{%s}mechanism' % NS_SASL)]
    xt.ok(b.find('{%s}features' % NS_STREAM) is not None and 'PLAIN' in mechs,
          'stream features in the creation response, PLAIN on a secure listener (XEP-0206 6)')

    big = Bosh(srv, port)
    st, bb = await big.create(wait=3600)
    xt.is_(bb.get('wait'), str(MAX_WAIT), 'a wait over bosh_max_wait is capped')
    st, bb = await Bosh(srv, port).create(to='elsewhere.test')
    xt.is_((bb.get('type'), bb.get('condition')), ('terminate', 'host-unknown'),
           'creation for a host we do not serve: host-unknown')

    # -- SASL, restart, bind; a chat both ways ------------------------------
    ajid = await a.login('alice', 'web')
    xt.is_(ajid, 'alice@%s/web' % srv.host, 'PLAIN, xmpp:restart, bind: alice is bound')
    # A request with nothing to answer is held (hold=1) until the next
    # one comes: that is the poll below, not its wait.
    sent = asyncio.ensure_future(a.request("<presence xmlns='jabber:client' to='%s'/>" % bob.jid))
    p = await bob.presence(frm=ajid, timeout=5)
    xt.ok(p is not None and p['type'] == 'available', 'bob (TCP) sees alice\'s directed presence')

    poll = asyncio.ensure_future(a.request())
    await sent
    await asyncio.sleep(0.5)
    bob.send(ajid, 'to the web')
    st, b, took = await poll
    xt.ok('to the web' in messages(b) and took < WAIT - 1,
          'TCP -> BOSH: a held request carries the message at once')
    sent = asyncio.ensure_future(a.request("<message xmlns='jabber:client' to='%s' type='chat'>"
                                           "<body>to tcp</body></message>" % bob.jid))
    m = await bob.message(body='to tcp', timeout=5)
    xt.ok(m is not None and str(m['from']) == ajid, 'BOSH -> TCP: bob gets alice\'s message')

    # -- long polling: wait, hold -------------------------------------------
    # (XEP-0124 7.1/11): an empty request is held until `wait` expires
    # (the message's request, held until it comes, is answered then) ...
    empty = asyncio.ensure_future(a.request())
    await sent
    st, b, took = await empty
    xt.ok(b is not None and len(b) == 0 and WAIT * 0.8 <= took < WAIT * 1.8,
          'an empty request is held for wait=%d s and answered empty (took %.1f s)'
          % (WAIT, took))
    # ... and with hold=1 a second request makes the server answer the first.
    first = asyncio.ensure_future(a.request())
    await asyncio.sleep(1.0)
    second = asyncio.ensure_future(a.request())
    st1, b1, t1 = await first
    xt.ok(b1 is not None and t1 < WAIT - 0.5 and not second.done(),
          'hold=1: the held request is answered when the next one comes (%.1f s)' % t1)
    bob.send(ajid, 'for the second')
    st2, b2, t2 = await second
    xt.ok('for the second' in messages(b2), 'the newer held request carries what comes next')

    # -- rid ordering, repeat, window (XEP-0124 14) -------------------------
    base = a.rid
    d2, _ = a.body("<message xmlns='jabber:client' to='%s' type='chat'><body>second</body></message>"
                   % bob.jid, rid=base + 2)
    d1, _ = a.body("<message xmlns='jabber:client' to='%s' type='chat'><body>first</body></message>"
                   % bob.jid, rid=base + 1)
    later = asyncio.ensure_future(a.post(d2.encode()))
    await asyncio.sleep(1.0)
    early = await bob.message(body='second', timeout=1)
    xt.ok(early is None, 'a later rid that comes first waits for the one before it')
    sooner = asyncio.ensure_future(a.post(d1.encode()))
    got = []
    for _ in range(2):
        m = await bob.message(pred=lambda m: m['body'] in ('first', 'second'), timeout=5)
        got.append(m['body'] if m is not None else None)
    xt.is_(got, ['first', 'second'], 'then both are processed in rid order')
    a.rid = base + 2
    r_later, r_sooner = await later, await sooner
    xt.ok(r_later[0] == 200 and r_sooner[0] == 200, 'both requests answered')

    st, b, _ = await a.request("<message xmlns='jabber:client' to='%s' type='chat'><body>once</body>"
                               "</message>" % bob.jid)
    # The answer comes (hold=1) when the next request arrives.
    nxt = asyncio.ensure_future(a.request())
    await asyncio.sleep(0.5)
    bob.send(ajid, 'wake')
    await nxt
    kept = a.last_raw
    st, b, _ = await a.request(rid=a.rid)
    xt.ok(st == 200 and a.last_raw == kept, 'a repeated rid gets the same response (XEP-0124 14.3)')
    m1 = await bob.message(body='once', timeout=3)
    m2 = await bob.message(body='once', timeout=1)
    xt.ok(m1 is not None and m2 is None, 'and what it carried is not sent again')

    st, b, _ = await a.request(rid=a.rid + 10)
    xt.is_((b.get('type'), b.get('condition')) if b is not None else None,
           ('terminate', 'item-not-found'), 'a rid beyond the window: terminate item-not-found')
    p = await bob.presence(frm=ajid, pred=lambda p: p['type'] == 'unavailable', timeout=5)
    xt.ok(p is not None, 'the session is over: bob sees alice unavailable')
    st, b, _ = await a.request()
    xt.is_((b.get('type'), b.get('condition')) if b is not None else None,
           ('terminate', 'item-not-found'), 'its sid is unknown from then on')

    # -- unknown sid, malformed body ------------------------------------------
    u = Bosh(srv, port)
    u.sid = '00' + 'ab' * 16
    st, b, _ = await u.request()
    xt.is_((b.get('type'), b.get('condition')) if b is not None else None,
           ('terminate', 'item-not-found'), 'an unknown sid: terminate item-not-found (XEP-0124 17)')
    st, hdrs, raw = await u.post(b"<body xmlns='" + NS_BOSH.encode() + b"' rid='1'><unclosed></body>")
    xt.ok(st == 400 and b"bad-request" in raw, 'malformed XML: 400 with terminate bad-request')
    st, hdrs, raw = await u.post(b"<notbody xmlns='urn:x' rid='1'/>")
    xt.ok(st == 400 and b"bad-request" in raw, 'not a BOSH <body/>: 400 bad-request')
    st, hdrs, raw = await u.post(b'', method='GET')
    xt.is_(st, 405, 'GET: 405')

    # -- pause (XEP-0124 10) ------------------------------------------------
    c = Bosh(srv, port)
    await c.create(wait=WAIT)
    cjid = await c.login('alice', 'paused')
    held = asyncio.ensure_future(c.request())
    await asyncio.sleep(0.5)
    st, b, took = await c.request(pause=INACTIVITY + 4)
    st_h, b_h, t_h = await held
    xt.ok(b is not None and took < WAIT - 1 and t_h < WAIT - 1,
          'pause: the pause request and the held one are answered at once')
    await asyncio.sleep(INACTIVITY + 2)
    st, b, took = await c.request("<message xmlns='jabber:client' to='%s' type='chat'>"
                                  "<body>after the pause</body></message>" % bob.jid)
    m = await bob.message(body='after the pause', timeout=5)
    xt.ok(b is not None and b.get('type') != 'terminate' and m is not None,
          'the session outlives its inactivity while paused')

    # -- terminate (XEP-0124 12) ----------------------------------------------
    st, b, _ = await c.request("<presence xmlns='jabber:client' to='%s'/>" % bob.jid)
    await bob.presence(frm=cjid, timeout=5)
    st, b, _ = await c.request("<presence xmlns='jabber:client' type='unavailable'/>",
                               type='terminate')
    xt.is_(b.get('type') if b is not None else None, 'terminate', 'terminate answered with type=terminate')
    p = await bob.presence(frm=cjid, pred=lambda p: p['type'] == 'unavailable', timeout=5)
    xt.ok(p is not None, 'bob sees the terminated session unavailable')
    st, b, _ = await c.request()
    xt.is_(b.get('condition') if b is not None else None, 'item-not-found',
           'a terminated session\'s sid is gone')

    # -- inactivity (XEP-0124 7.1) --------------------------------------------
    d = Bosh(srv, port)
    await d.create(wait=WAIT)
    djid = await d.login('alice', 'idle')
    st, b, _ = await d.request("<presence xmlns='jabber:client' to='%s'/>" % bob.jid)
    p = await bob.presence(frm=djid, timeout=5)
    xt.ok(p is not None and p['type'] == 'available', 'an idle session: bob sees it available')
    # The presence request is held up to wait; then nothing comes.
    t0 = time.monotonic()
    p = await bob.presence(frm=djid, pred=lambda p: p['type'] == 'unavailable', timeout=WAIT + INACTIVITY + 8)
    took = time.monotonic() - t0
    xt.ok(p is not None and took >= INACTIVITY - 1,
          'no request for inactivity=%d s: the session ends, bob sees unavailable (%.1f s)'
          % (INACTIVITY, took))
    st, b, _ = await d.request()
    xt.is_(b.get('condition') if b is not None else None, 'item-not-found',
           'the timed-out session\'s sid is gone')

    # -- CORS on a response -------------------------------------------------
    e = Bosh(srv, port)
    data = ("<body xmlns='%s' rid='5' wait='5' hold='1' to='%s'/>" % (NS_BOSH, srv.host)).encode()
    st, hdrs, raw = await e.post(data, headers={'Origin': 'https://web.example'})
    xt.ok(st == 200 and hdrs.get('access-control-allow-origin') == '*',
          'CORS headers on a BOSH response to a page from another origin')

    # -- many sessions, both workers -----------------------------------------
    sessions = [Bosh(srv, port) for _ in range(6)]
    for s in sessions:
        await s.create(wait=5)
    workers = set(s.sid[:2] for s in sessions)
    jids = []
    for i, s in enumerate(sessions):
        jids.append(await s.login('alice', 'm%d' % i))
    xt.ok(len(jids) == 6, 'six sessions log in (sessions on workers %s)' % sorted(workers))
    polls = [asyncio.ensure_future(s.request()) for s in sessions]
    await asyncio.sleep(0.5)
    for j in jids:
        bob.send(j, 'fan ' + j)
    res = await asyncio.gather(*polls)
    xt.ok(all(('fan ' + j) in messages(r[1]) for j, r in zip(jids, res)),
          'each gets its own message, whichever worker its requests came in on')
    await xt.disconnect_all(bob)


xt.run(main, timeout=200)
