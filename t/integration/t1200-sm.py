#!/usr/bin/python3
"""t1200-sm: stream management (XEP-0198, urn:xmpp:sm:3) on c2s: the
feature, enable, <r/>/<a/> counted in both directions, acks the server asks
for (after sm_ack_after stanzas, after sm_ack_interval seconds), h too high,
a dropped connection that leaves the session detached (routable, presence
unchanged), resumption that replays exactly the unacknowledged stanzas in
order once (on any worker, also while the old connection still looks
alive), previd of another account, unknown previd, h too high on resume,
bind replacing a detached session, the end of a detached session after
'max' (unavailable presence, the unacknowledged message stored offline,
an IQ answered with an error), h that waits for the store, slixmpp's own
XEP-0198 support, and kill -9 of a client process resumed from another.

Raw clients where exact counts matter; the server runs with two workers so
that a resumption often crosses them."""

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_SM = 'urn:xmpp:sm:3'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
NS_STREAMS = 'urn:ietf:params:xml:ns:xmpp-streams'
USERS = ('alice', 'bob', 'carol', 'dave', 'erin', 'frank')
MAX_RESUME = 60


# -- raw helpers -------------------------------------------------------------

# The raw stream-management helpers are the harness's (xmppdtest.py).
elems, stanzas, bodies = xt.sm_elems, xt.sm_stanzas, xt.sm_bodies
authed, enable, ask_h = xt.sm_authed, xt.sm_enable, xt.sm_ask_h
resume, failed_condition = xt.sm_resume, xt.sm_failed_condition


async def sm_session(srv, user, resource, max_=None):
    """A raw session with stream management and resumption on, available:
    (raw, full jid, enabled attributes). After it, the server has sent one
    stanza (the presence echo) and handled one (the presence)."""
    r = await authed(srv, user)
    jid = await r.bind(resource)
    en = await enable(r, max_)
    if jid is None or en is None or not en.startswith('<enabled'):
        raise xt.HarnessError('raw: no SM session for %s: %r' % (user, r.text[-400:]))
    attrs = elems(en)[0].attrib
    await r.send('<presence/>')
    if not await r.read_until(r'<presence\b[^>]*/>'):
        raise xt.HarnessError('raw: no presence echo for %s' % user)
    r.set_mark()
    return r, jid, attrs


def cut(r):
    """Drops the TCP connection at once (a reset): no </stream:stream>."""
    s = r.writer.get_extra_info('socket')
    if s is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    r.writer.transport.abort()


async def roster_both(srv, a, b):
    code, out, err = await srv.actl('roster', 'add', a, srv.host, srv.jid(b))
    if code != 0:
        raise xt.HarnessError('xmppctl roster add %s %s: %s%s' % (a, b, out, err))


async def watcher(srv, user, resource):
    c = xt.Client(srv, user, user + '-pw', resource=resource)
    c.xmpp.auto_authorize = None
    c.xmpp.auto_subscribe = False
    await c.connect()
    if not c.ok:
        raise xt.HarnessError('login failed: ' + c.describe())
    return c


async def unavailable_from(c, frm, timeout):
    return await c.presences.get(
        lambda p: str(p['from']) == str(frm) and p.xml.get('type') == 'unavailable', timeout)


def listed(sessions, full):
    return sessions is not None and any(s['jid'] == full for s in sessions)


# -- a client process killed with -9 ------------------------------------------

CHILD = r'''
import asyncio, json, ssl, sys, os
import slixmpp
jid, pw, ip, port, cafile, out = sys.argv[1:7]
x = slixmpp.ClientXMPP(jid, pw)
ctx = ssl.create_default_context(cafile=cafile)
x.ssl_context = ctx
x.get_ssl_context = lambda: ctx
x.register_plugin('xep_0198')
sm = x.plugin['xep_0198']
def save(*_):
    tmp = out + '.tmp'
    with open(tmp, 'w') as f:
        json.dump({'id': sm.sm_id, 'h': sm.handled,
                   'bodies': bodies}, f)
    os.replace(tmp, out)
bodies = []
def on_message(m):
    bodies.append(m['body'])
    # After the incoming filter has counted it.
    asyncio.get_event_loop().call_soon(save)
x.add_event_handler('session_start', lambda _: x.send_presence())
x.add_event_handler('sm_enabled', lambda _: asyncio.get_event_loop().call_soon(save))
x.add_event_handler('message', on_message)
x.connect((ip, int(port)), force_starttls=True)
asyncio.get_event_loop().run_forever()
'''


async def wait_file(path, pred, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                d = json.load(f)
            if pred(d):
                return d
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.1)
    return None


# -- the test ----------------------------------------------------------------

async def main():
    srv = xt.Server(workers=2, modules={'mod_offline': {}, 'mod_roster': {}},
                    conf={'sm_max_resume': MAX_RESUME, 'sm_ack_after': 3,
                          'sm_ack_interval': 2, 'sm_ack_timeout': 60,
                          'sm_max_ack_queue': 50})
    for u in USERS:
        srv.register(u, u + '-pw')
    await roster_both(srv, 'alice', 'bob')
    alice = await watcher(srv, 'alice', 'a')

    # -- The feature and enable (XEP-0198 2, 3) ------------------------------
    r = await authed(srv, 'bob')
    xt.unlike(r.tls_features, r'urn:xmpp:sm:3', 'no <sm/> before authentication')
    xt.like(r.features, r"<sm xmlns='urn:xmpp:sm:3'/>", '<sm/> offered with <bind/> after SASL')
    en = await enable(r)
    xt.is_(failed_condition(en), 'unexpected-request', '<enable/> before bind: unexpected-request')
    bob_jid = await r.bind('res')
    en = await enable(r, 100000)
    attrs = elems(en)[0].attrib if en and en.startswith('<enabled') else {}
    xt.is_(attrs.get('resume'), 'true', '<enabled resume=true/>')
    xt.like(attrs.get('id', ''), r'\A[0-9a-f]{32}\Z', 'with an id')
    xt.is_(attrs.get('max'), str(MAX_RESUME), "the client's max is capped by sm_max_resume")
    bob_id = attrs.get('id', '')
    en2 = await enable(r)
    xt.is_(failed_condition(en2), 'unexpected-request', 'a second <enable/>: unexpected-request')

    # -- Counting what the client sends (XEP-0198 4) --------------------------
    # Presence (1), an IQ to the server (2), a message to alice (3).
    enabled_at = len(r.data)
    await r.send("<presence/><iq type='get' id='q1' to='%s'><query xmlns='urn:xmppd:test:none'/></iq>"
                 "<message to='%s' type='chat'><body>from-bob</body></message>"
                 % (srv.host, alice.jid))
    xt.is_(await ask_h(r), 3, "<r/> is answered with <a h='3'/> after three stanzas")
    m = await alice.message(body='from-bob')
    xt.ok(m is not None, 'and the message went to alice')

    # -- Acks the server asks for (sm_ack_after 3, sm_ack_interval 2 s) -------
    # The server's third stanza since <enabled/> (the presence echo, the
    # IQ error, alice's presence, a message: whichever came third) is
    # followed by <r/>, and nothing before it was.
    alice.send(bob_jid, 'third')
    await r.read_until(r'third</body>', 5)
    since = r.data[enabled_at:].decode()
    pos = since.find("<r xmlns='urn:xmpp:sm:3'/>")
    xt.ok(pos >= 0, 'the server asks for an ack')
    xt.is_(len(stanzas(since[:pos])) if pos >= 0 else None, 3,
           'right after its third stanza (%r)' % since[:pos][-300:])
    await r.read_until(r'will-not-match', 0.5)
    n = len(stanzas(r.data[enabled_at:].decode()))
    await r.send("<a xmlns='%s' h='%d'/>" % (NS_SM, n))
    # One stanza unacknowledged: no <r/> for it at once, one after about
    # sm_ack_interval.
    r.set_mark()
    alice.send(bob_jid, 'fourth')
    xt.ok(await r.read_until(r'fourth</body>', 5) is not None, 'bob gets a fourth message')
    t0 = time.monotonic()
    early = await r.read_until(r"<r xmlns='urn:xmpp:sm:3'/>", 0.8)
    xt.ok(early is None, 'no <r/> at once for one stanza (sm_ack_after is 3)')
    late = await r.read_until(r"<r xmlns='urn:xmpp:sm:3'/>", 8)
    xt.ok(late is not None, 'but one after sm_ack_interval (%.1f s)' % (time.monotonic() - t0))
    n = len(stanzas(r.data[enabled_at:].decode()))
    await r.send("<a xmlns='%s' h='%d'/>" % (NS_SM, n))

    # -- A connection that drops: detached, then resumed (XEP-0198 5) ----------
    # Two messages bob reads but does not acknowledge, the cut, two more
    # while detached.
    r.set_mark()
    alice.send(bob_jid, 'm1')
    alice.send(bob_jid, 'm2')
    await r.read_until(r'm2</body>', 5)
    cut(r)
    await asyncio.sleep(0.5)
    alice.send(bob_jid, 'm3')
    alice.send(bob_jid, 'm4')
    sessions = await srv.wait_connected(lambda s: listed(s, bob_jid), 2)
    xt.ok(listed(sessions, bob_jid), 'the detached session stays in the session table')
    xt.ok(await unavailable_from(alice, bob_jid, 1.5) is None,
          'its contact sees no unavailable presence')
    r2, ans = await resume(srv, 'bob', bob_id, n)
    a = elems(ans)[0].attrib if ans and ans.startswith('<resumed') else {}
    xt.is_(a.get('previd'), bob_id, '<resumed previd/> names the session')
    xt.is_(a.get('h'), '3', "<resumed h='3'/>: the three stanzas bob had sent")
    await r2.read_until(r'm4</body>.*?</message>', 5)
    await r2.read_until(r'will-not-match', 1.0)
    xt.is_(bodies(r2.since_mark()), ['m1', 'm2', 'm3', 'm4'],
           'the unacknowledged stanzas are replayed in order, once')
    n += len(stanzas(r2.since_mark()))
    r2.set_mark()
    await r2.send("<a xmlns='%s' h='%d'/><message to='%s' type='chat'><body>back</body></message>"
                  % (NS_SM, n, alice.jid))
    xt.ok(await alice.message(body='back') is not None, 'the resumed session sends')
    alice.send(bob_jid, 'm5')
    xt.ok(await r2.read_until(r'm5</body>', 5) is not None, 'and receives')
    n += len(stanzas(r2.since_mark()))
    xt.is_(await ask_h(r2), 4, 'h goes on from where it was')

    # -- The old connection still looks alive: the new one takes over ---------
    r3, ans = await resume(srv, 'bob', bob_id, n)
    xt.ok(ans is not None and ans.startswith('<resumed'), 'a resume while attached succeeds (%s)' % ans)
    await r2.read_until_close(5)
    xt.is_(xt.stream_error(r2.text), 'conflict', 'and the old connection gets <conflict/>')
    alice.send(bob_jid, 'm6')
    xt.ok(await r3.read_until(r'm6</body>', 5) is not None, 'the new connection has the session')
    xt.is_(bodies(r3.since_mark()), ['m6'], 'nothing replayed twice')

    # -- What is refused (XEP-0198 5, 10) ---------------------------------------
    rc, ans = await resume(srv, 'carol', bob_id, 0)
    xt.is_(failed_condition(ans), 'item-not-found', "another account's previd: item-not-found")
    rc.close()
    ru, ans = await resume(srv, 'bob', 'f' * 32, 0)
    xt.is_(failed_condition(ans), 'item-not-found', 'an unknown previd: item-not-found')
    ru.close()
    rh, ans = await resume(srv, 'bob', bob_id, 1000)
    xt.like(ans or '', r'<handled-count-too-high\b', 'h above what was sent: handled-count-too-high')
    rh.close()
    alice.send(bob_jid, 'm7')
    xt.ok(await r3.read_until(r'm7</body>', 5) is not None, 'none of them disturbed the session')
    n += len(stanzas(r3.since_mark()))
    await r3.send("<a xmlns='%s' h='%d'/>" % (NS_SM, n))

    # -- <a h/> above what was sent: a stream error (XEP-0198 4) ---------------
    rd, dave_jid, _ = await sm_session(srv, 'dave', 'd')
    await rd.send("<a xmlns='%s' h='7'/>" % NS_SM)
    await rd.read_until_close(5)
    err = rd.since_mark()
    xt.is_(xt.stream_error(err), 'undefined-condition', '<a h/> too high: undefined-condition')
    xt.like(err, r"<handled-count-too-high xmlns='urn:xmpp:sm:3' h='7' send-count='1'/>",
            'with <handled-count-too-high h send-count/>')

    # -- Bind replacing a detached session --------------------------------------
    cut(r3)
    await asyncio.sleep(0.5)
    rb = await authed(srv, 'bob')
    xt.is_(await rb.bind('res'), bob_jid, 'binding the resource of a detached session succeeds')
    await rb.send('<presence/>')
    rr, ans = await resume(srv, 'bob', bob_id, n)
    xt.is_(failed_condition(ans), 'item-not-found', 'the replaced session cannot be resumed')
    rr.close()
    rb.set_mark()
    alice.send(bob_jid, 'm8')
    xt.ok(await rb.read_until(r'm8</body>', 5) is not None, 'the new session gets what is sent')
    rb.close()

    # -- 'max' runs out (XEP-0198 5, 4) -----------------------------------------
    # The client asks for 3 s. A message and an IQ wait unacknowledged.
    await roster_both(srv, 'alice', 'erin')
    re_, erin_jid, ea = await sm_session(srv, 'erin', 'e', max_=3)
    xt.is_(ea.get('max'), '3', "the client's smaller max is granted")
    await alice.presences.get(lambda p: str(p['from']) == erin_jid, 5)
    alice.send(erin_jid, 'stored-after-max')
    await re_.read_until(r'stored-after-max', 5)
    cut(re_)
    await asyncio.sleep(0.3)
    iq_task = asyncio.ensure_future(alice.iq('get', erin_jid, "<query xmlns='jabber:iq:version'/>",
                                             timeout=15))
    t0 = time.monotonic()
    p = await unavailable_from(alice, erin_jid, 12)
    xt.ok(p is not None and time.monotonic() - t0 > 1.5,
          'after max, the contact sees unavailable presence (%.1f s)' % (time.monotonic() - t0))
    rep = await iq_task
    xt.is_(rep.xml.get('type') if rep is not None else None, 'error',
           'the unacknowledged IQ is answered with an error')
    xt.ok(rep is not None and rep.xml.find('{jabber:client}error/{%s}service-unavailable'
                                           % NS_STANZAS) is not None, 'service-unavailable')
    # The row is committed by the store's next group (the IQ's error may
    # come back first).
    deadline = time.monotonic() + 5
    while True:
        rows = xt.user_rows(srv, 'erin').get('mod_offline', [])
        if rows or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    xt.is_(len(rows), 1, 'the unacknowledged message is in offline storage')
    e2 = await xt.login_ok(srv, 'erin', 'erin-pw', resource='again')
    msgs = []
    while True:
        m = await e2.message(timeout=2)
        if m is None:
            break
        msgs.append(m['body'])
    xt.is_(msgs, ['stored-after-max'], 'and delivered once at the next login')
    await e2.disconnect()

    # -- h counts a stanza only once its store work is committed ----------------
    # A store that answers 2 s late: frank's message to offline carol is
    # not in h until it is stored, so a resume right after the cut says h
    # without it.
    d = xt.Server(name='t1200-delay', workers=2, modules={'mod_offline': {}},
                  conf={'store_test_delay_ms': 2000, 'sm_max_resume': 30})
    for u in ('frank', 'carol'):
        d.register(u, u + '-pw')
    rf, frank_jid, fa = await sm_session(d, 'frank', 'f')
    # The presence's own store work (offline messages) is done first.
    xt.is_(await ask_h(rf, 10), 1, 'the presence is counted once its store work is done')
    await rf.send("<message to='%s' type='chat'><body>to-store</body></message>" % d.jid('carol'))
    await asyncio.sleep(0.3)
    cut(rf)
    await asyncio.sleep(0.3)
    rf2, ans = await resume(d, 'frank', fa['id'], 1)
    a = elems(ans)[0].attrib if ans and ans.startswith('<resumed') else {}
    xt.is_(a.get('h'), '1', 'resumed while the store works: h leaves the message out')
    xt.is_(await ask_h(rf2, 8), 1, 'and it stays out (its stream is gone)')
    rf2.close()
    d.teardown()

    # -- slixmpp's XEP-0198: cut, send meanwhile, it resumes ---------------------
    c = xt.Client(srv, 'carol', 'carol-pw', resource='slix')
    c.xmpp.register_plugin('xep_0198')
    smp = c.xmpp.plugin['xep_0198']
    enabled = asyncio.Event()
    resumed = asyncio.Event()
    c.xmpp.add_event_handler('sm_enabled', lambda _: enabled.set())
    c.xmpp.add_event_handler('session_resumed', lambda _: resumed.set())
    await c.connect()
    try:
        await asyncio.wait_for(enabled.wait(), 5)
    except asyncio.TimeoutError:
        pass
    xt.ok(enabled.is_set() and smp.sm_id, 'slixmpp enables stream management')
    carol_jid = c.jid
    alice.send(carol_jid, 's1')
    xt.ok(await c.message(body='s1') is not None, 'slixmpp gets s1')
    c.xmpp.transport.close()          # no </stream:stream>
    await asyncio.sleep(0.5)
    alice.send(carol_jid, 's2')
    alice.send(carol_jid, 's3')
    await asyncio.sleep(0.3)
    c.xmpp.connect(c.address, force_starttls=True)
    try:
        await asyncio.wait_for(resumed.wait(), 10)
    except asyncio.TimeoutError:
        pass
    xt.ok(resumed.is_set(), 'slixmpp resumes its session')
    got = []
    while True:
        m = await c.message(timeout=1.5)
        if m is None:
            break
        got.append(m['body'])
    xt.is_(got, ['s2', 's3'], 'and gets what was sent meanwhile, once, in order')
    await c.disconnect()

    # -- kill -9 of a client process, resumed from another -------------------
    state = str(srv.dir / 'child-sm.json')
    child = subprocess.Popen([sys.executable, '-c', CHILD, srv.jid('frank', 'k'), 'frank-pw',
                              srv.ip, str(srv.c2s_port), srv.ca_file, state],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        st = await wait_file(state, lambda d: d.get('id'))
        xt.ok(st is not None, 'the client process has stream management on')
        frank_k = srv.jid('frank', 'k')
        await srv.wait_connected(lambda s: listed(s, frank_k), 5)
        alice.send(frank_k, 'k1')
        st = await wait_file(state, lambda d: 'k1' in d.get('bodies', []))
        xt.ok(st is not None, 'it got k1 and saved previd and h')
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
        alice.send(frank_k, 'k2')
        alice.send(frank_k, 'k3')
        await asyncio.sleep(0.5)
        if st is not None:
            rk, ans = await resume(srv, 'frank', st['id'], st['h'])
            xt.ok(ans is not None and ans.startswith('<resumed'),
                  'another process resumes with the saved previd and h (%s)' % ans)
            await rk.read_until(r'k3</body>.*?</message>', 5)
            await rk.read_until(r'will-not-match', 1.0)
            xt.is_(bodies(rk.since_mark()), ['k2', 'k3'], 'and gets exactly what the killed one missed')
            rk.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    await alice.disconnect()


xt.run(main, timeout=170)
