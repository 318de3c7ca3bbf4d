#!/usr/bin/python3
"""t0930-offline: XEP-0160 offline messages (mod_offline): stored with a
XEP-0203 delay, delivered in order on the next non-negative available
presence, once; message types (RFC 6121 8.5.2.2.1); what is not worth
storing; quotas; kill -9 and restart; concurrent logins; a stream that
overflows while they are written; account removal."""

import asyncio
import os
import re
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_DELAY = 'urn:xmpp:delay'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
NS_RECEIPTS = 'urn:xmpp:receipts'
STAMP_RE = r'\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z'


def esc(s):
    return s.replace('&', '&amp;').replace('<', '&lt;').replace("'", '&apos;')


def raw_message(c, to, body=None, mtype='chat', extra=''):
    """A message with exactly the children we want (slixmpp adds none)."""
    t = " type='%s'" % mtype if mtype is not None else ''
    b = '<body>%s</body>' % esc(body) if body is not None else ''
    c.send_raw("<message to='%s'%s>%s%s</message>" % (to, t, b, extra))


async def sync(c, timeout=5):
    """A round trip to the server: the stanzas c sent before are routed (and
    stored, or bounced) once the answer is back. Each stored message holds
    c's stream until the store has answered (RFC 6120 10.1): with a store
    that answers late, many of them take a while."""
    r = await c.iq('get', c.server.host, "<query xmlns='%s'/>" % NS_DISCO_INFO, timeout=timeout)
    if r is None:
        raise xt.HarnessError('no answer to disco#info from %s' % c.jid)
    return r


async def collect(c, n, timeout=5, settle=0.0, pred=None):
    """Up to n messages in arrival order (error messages excluded), then
    whatever else arrives within settle seconds."""
    got = []
    deadline = time.monotonic() + timeout
    match = (lambda m: m['type'] != 'error' and (pred is None or pred(m)))
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        m = await c.message(pred=match, timeout=left)
        if m is None:
            break
        got.append(m)
    if settle:
        while True:
            m = await c.message(pred=match, timeout=settle)
            if m is None:
                break
            got.append(m)
    return got


async def collect_shared(cs, n, timeout=5, settle=0.0):
    """Messages to the clients cs (error messages excluded), one list each,
    until n have come to them in all, then whatever else arrives within
    settle seconds."""
    got = [[] for _ in cs]
    deadline = time.monotonic() + timeout
    match = (lambda m: m['type'] != 'error')

    async def one(i):
        while sum(len(g) for g in got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            m = await cs[i].message(pred=match, timeout=min(left, 0.1))
            if m is not None:
                got[i].append(m)
        while settle:
            m = await cs[i].message(pred=match, timeout=settle)
            if m is None:
                break
            got[i].append(m)
    await asyncio.gather(*(one(i) for i in range(len(cs))))
    return got


def bodies(msgs):
    return [m['body'] if m.xml.find('{jabber:client}body') is not None else None for m in msgs]


def delays(m):
    return m.xml.findall('{%s}delay' % NS_DELAY)


def errors_of(c):
    """Error messages received so far (taken from the mailbox):
    [(body, condition)]."""
    out = []
    for m in list(c.messages.items):
        if m['type'] == 'error':
            c.messages.items.remove(m)
            out.append((m['body'], m['error']['condition']))
    return out


async def offline(srv, *clients):
    await xt.disconnect_all(*clients)
    bare = [str(c.jid.bare) for c in clients if c is not None and c.jid is not None]
    await srv.wait_connected(lambda s: not any(x['jid'].split('/')[0] in bare for x in s))


async def main():
    srv = xt.Server(workers=2, modules={'mod_offline': {}, 'mod_disco': {}})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    bob_bare = srv.jid('bob')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='desk')

    # XEP-0160 5.
    r = await sync(alice)
    feats = [f.get('var') for f in r.xml.iter('{%s}feature' % NS_DISCO_INFO)]
    xt.ok('msgoffline' in feats, 'the server announces msgoffline (%s)' % feats)

    # -- What is stored, what is not (RFC 6121 8.5.2.2.1, XEP-0160 3) ------
    t0 = datetime.now(timezone.utc)
    raw_message(alice, bob_bare, 'one <&> "quoted"', 'chat')
    raw_message(alice, bob_bare, 'two', 'normal')
    raw_message(alice, bob_bare, 'three', None)
    raw_message(alice, srv.jid('bob', 'gone'), 'four', 'chat')   # 8.5.3.2.1
    raw_message(alice, bob_bare, 'headline-x', 'headline')
    raw_message(alice, bob_bare, 'gc-x', 'groupchat')
    raw_message(alice, bob_bare, None, 'chat',
                "<composing xmlns='http://jabber.org/protocol/chatstates'/><thread>t1</thread>")
    raw_message(alice, bob_bare, 'nostore-x', 'chat', "<no-store xmlns='urn:xmpp:hints'/>")
    raw_message(alice, bob_bare, 'five', 'chat',
                "<active xmlns='http://jabber.org/protocol/chatstates'/>")
    raw_message(alice, bob_bare, None, 'chat', "<received xmlns='%s' id='r1'/>" % NS_RECEIPTS)
    # XEP-0334 <store/>: even a lone chat state is kept when asked.
    raw_message(alice, bob_bare, None, 'chat',
                "<gone xmlns='http://jabber.org/protocol/chatstates'/><store xmlns='urn:xmpp:hints'/>")
    raw_message(alice, bob_bare, 'six', 'bogus')                  # 5.2.2: as normal
    # A delay claiming to be ours is the sender's forgery.
    raw_message(alice, bob_bare, 'seven', 'chat',
                "<delay xmlns='%s' from='%s' stamp='2001-01-01T00:00:00Z'/>" % (NS_DELAY, srv.host))
    await sync(alice)
    await asyncio.sleep(0.3)
    errs = errors_of(alice)
    xt.is_(sorted(errs), sorted([('gc-x', 'service-unavailable'), ('nostore-x', 'service-unavailable')]),
           'only the groupchat and the no-store message come back, as service-unavailable')

    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='r1')
    got = await collect(bob, 9, settle=1.0)
    t1 = datetime.now(timezone.utc)
    xt.is_(bodies(got), ['one <&> "quoted"', 'two', 'three', 'four', 'five', None, None, 'six',
                         'seven'],
           'bob gets the stored messages in order: chat, normal, untyped, to a gone resource, '
           'with a chat state, a bare receipt, a chat state with a store hint, unknown type; '
           'no headline, groupchat, standalone chat state or no-store')
    xt.ok(len(got) == 9 and got[5].xml.find('{%s}received' % NS_RECEIPTS) is not None
          and got[5].xml.find('{%s}received' % NS_RECEIPTS).get('id') == 'r1',
          'the bodyless receipt arrives with its payload')
    xt.ok(len(got) == 9 and got[6].xml.find('{http://jabber.org/protocol/chatstates}gone') is not None,
          'and the store-hinted chat state with its <gone/>')
    xt.ok(all(str(m['from']) == str(alice.jid) for m in got),
          'each comes from alice\'s full JID (%s)' % [str(m['from']) for m in got])
    xt.is_([m.xml.get('type') for m in got],
           ['chat', 'normal', None, 'chat', 'chat', 'chat', 'chat', 'bogus', 'chat'],
           'each keeps its type attribute (or its absence)')
    ds = [delays(m) for m in got]
    xt.ok(len(got) == 9 and all(len(d) == 1 for d in ds),
          'each carries exactly one urn:xmpp:delay (the forged one is gone) %s' % [len(d) for d in ds])
    flat = [d[0] for d in ds if d]
    xt.ok(flat and all(d.get('from') == srv.host for d in flat),
          'the delay is from the server domain (%s)' % [d.get('from') for d in flat])
    stamps = [d.get('stamp') or '' for d in flat]
    xt.ok(stamps and all(re.match(STAMP_RE, s) for s in stamps),
          'stamps are XEP-0082 UTC with milliseconds (%s)' % stamps[:2])
    try:
        when = [datetime.strptime(s, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=timezone.utc)
                for s in stamps]
    except ValueError:
        when = []
    xt.ok(when and all((t0 - w).total_seconds() < 1 and (w - t1).total_seconds() < 1 for w in when)
          and when == sorted(when),
          'stamps lie between sending and delivery, in order (%s .. %s)'
          % (when[:1], when[-1:]))
    xt.ok(flat and all((d.text or '').strip() == 'Offline Storage' for d in flat),
          'with the reason "Offline Storage" (XEP-0160 2)')

    # Once per session: a presence update, or unavailable then available
    # again, brings nothing more.
    bob.xmpp.send_presence(pstatus='here')
    bob.xmpp.send_presence(ptype='unavailable')
    bob.xmpp.send_presence()
    again = await collect(bob, 1, timeout=1.5)
    xt.is_(bodies(again), [], 'bob does not get them again in the same session')
    await offline(srv, bob)
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='r1')
    again = await collect(bob, 1, timeout=1.5)
    xt.is_(bodies(again), [], 'nor in the next one: delivered messages are deleted')

    # Online, messages go straight through (no delay).
    raw_message(alice, bob_bare, 'live', 'chat')
    m = await bob.message(body='live')
    xt.ok(m is not None and not delays(m), 'to an available bob a message is delivered live, unstamped')
    await offline(srv, bob)

    # -- Stored before live (RFC 6120 10.1, XEP-0160 2 step 5) --------------
    # A message sent once the recipient is available (its other resource has
    # seen its presence) comes after the ones stored before it, even while
    # those are still being read from the store.
    b0 = await xt.login_ok(srv, 'bob', 'bob-pw', resource='lurk', priority=-1)
    raw_message(alice, bob_bare, 'ord-1', 'chat')
    raw_message(alice, bob_bare, 'ord-2', 'chat')
    await sync(alice)
    bord = await xt.login_ok(srv, 'bob', 'bob-pw', resource='ord', priority=0)
    p = await b0.presence(frm=srv.jid('bob', 'ord'))
    xt.ok(p is not None, "bob's other resource sees his new resource's presence")
    raw_message(alice, bob_bare, 'ord-live', 'chat')
    got = await collect(bord, 3, settle=0.5)
    xt.is_(bodies(got), ['ord-1', 'ord-2', 'ord-live'],
           'the new resource gets the stored messages, then the live one sent after its presence')
    xt.ok(len(got) == 3 and delays(got[0]) and delays(got[1]) and not delays(got[2]),
          'the stored ones stamped, the live one not')
    got = await collect(b0, 1, timeout=0.5)
    xt.is_(bodies(got), [], 'the resource with priority -1 gets none of them')
    await offline(srv, b0, bord)

    # A message stored just as its recipient becomes available (the store's
    # answer may come after the new resource has read the store, which then
    # had it) still arrives once.
    brace = await xt.login_ok(srv, 'bob', 'bob-pw', resource='race', presence=False)
    raw_message(alice, bob_bare, 'race-1', 'chat')
    await asyncio.sleep(0.05)
    brace.xmpp.send_presence()
    got = await collect(brace, 1, timeout=3, settle=1.0)
    xt.is_(bodies(got), ['race-1'], 'a message stored as its recipient logs in arrives once')
    await offline(srv, brace)

    # -- Negative priority (RFC 6121 8.5.2.1.1, XEP-0160 2) -----------------
    raw_message(alice, bob_bare, 'neg-1', 'chat')
    raw_message(alice, bob_bare, 'neg-2', 'chat')
    await sync(alice)
    bneg = await xt.login_ok(srv, 'bob', 'bob-pw', resource='neg', priority=-1)
    got = await collect(bneg, 1, timeout=1.5)
    xt.is_(bodies(got), [], 'a session with priority -1 gets no offline messages')
    bpos = await xt.login_ok(srv, 'bob', 'bob-pw', resource='pos', priority=0)
    got = await collect(bpos, 2, settle=0.5)
    xt.is_(bodies(got), ['neg-1', 'neg-2'], 'the next login with priority 0 gets them, in order')
    got = await collect(bneg, 1, timeout=0.5)
    xt.is_(bodies(got), [], 'and the negative one still has none')
    await offline(srv, bneg, bpos)

    # A session going from negative to non-negative priority becomes
    # eligible: it gets them then.
    raw_message(alice, bob_bare, 'tr-1', 'normal')
    await sync(alice)
    btr = await xt.login_ok(srv, 'bob', 'bob-pw', resource='tr', priority=-3)
    got = await collect(btr, 1, timeout=1.0)
    xt.is_(bodies(got), [], 'priority -3: nothing yet')
    btr.xmpp.send_presence(ppriority=2)
    got = await collect(btr, 1, timeout=3, settle=0.5)
    xt.is_(bodies(got), ['tr-1'], 'after a presence with priority 2 it gets the stored message')
    await offline(srv, btr)
    xt.is_(errors_of(alice), [], 'no errors came back for any stored message')

    # -- Durable: kill -9, and a normal restart ----------------------------
    for b in ('k1', 'k2', 'k3'):
        raw_message(alice, bob_bare, b, 'chat')
    await sync(alice)      # routed, so stored and committed
    srv.kill9()
    srv.start()
    await alice.disconnect()
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='desk')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='r2')
    got = await collect(bob, 3, settle=0.5)
    xt.is_(bodies(got), ['k1', 'k2', 'k3'], 'messages stored before kill -9 are delivered after it')
    await offline(srv, bob)

    raw_message(alice, bob_bare, 's1', 'chat')
    raw_message(alice, bob_bare, 's2', 'chat')
    await sync(alice)
    code = await srv.astop()
    xt.is_(code, 0, 'xmppd stops cleanly with offline messages waiting')
    srv.start()
    await alice.disconnect()
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='desk')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='r3')
    got = await collect(bob, 2, settle=0.5)
    xt.is_(bodies(got), ['s1', 's2'], 'and those stored before a restart after it')
    await offline(srv, bob)

    # -- Two logins at once take them once between them -------------------
    want = ['c%d' % i for i in range(12)]
    for b in want:
        raw_message(alice, bob_bare, b, 'chat')
    await sync(alice)
    b1, b2 = await asyncio.gather(xt.login_ok(srv, 'bob', 'bob-pw', resource='x1'),
                                  xt.login_ok(srv, 'bob', 'bob-pw', resource='x2'))
    g1, g2 = await collect_shared((b1, b2), 12, timeout=3, settle=0.5)
    l1, l2 = bodies(g1), bodies(g2)
    xt.is_(sorted(l1 + l2, key=lambda b: int(b[1:])), want,
           'two simultaneous logins get the 12 messages once in all (%d + %d)' % (len(l1), len(l2)))
    xt.ok(l1 == sorted(l1, key=lambda b: int(b[1:])) and l2 == sorted(l2, key=lambda b: int(b[1:])),
          'each in order')
    await offline(srv, b1, b2)

    # -- An error message to an offline user ------------------------------
    # RFC 6121 8.5.2.2.1 (bare JID, no available resource) and 8.5.3.2.1
    # (full JID not bound): a message of type error is silently ignored,
    # so it is neither stored (XEP-0160 3) nor answered with an error (RFC
    # 6120 8.3.1). The chat message sent after them is stored as usual.
    err = "<error type='cancel'><item-not-found xmlns='%s'/></error>" % xt.NS_STANZAS_ERR
    xt.send_message_id(alice, bob_bare, 'err-bare', 'error', extra=err)
    xt.send_message_id(alice, srv.jid('bob', 'gone'), 'err-full', 'error', extra=err)
    raw_message(alice, bob_bare, 'after-errors', 'chat')
    await sync(alice)
    await asyncio.sleep(0.3)
    xt.is_(errors_of(alice), [], 'error messages to an offline user are not answered with an error')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='r4')
    got = []
    while True:
        m = await bob.message(timeout=1.5 if got else 5)
        if m is None:
            break
        got.append((m['type'], m['body']))
    xt.is_(got, [('chat', 'after-errors')],
           'at the next login bob gets the chat message sent after them, not the error messages')
    await offline(srv, bob)

    # -- Account removal forgets them (and a new account starts empty) -----
    # XEP-0077 3.2. Seen in the spool by mdb_dump, after the removal and
    # before the name is registered again (mod_offline also wipes on
    # register_user, which would hide a removal that left rows). Messages
    # carol sent are not hers once stored: bob's stay his.
    raw_message(alice, srv.jid('carol'), 'for-carol', 'chat')
    raw_message(alice, srv.jid('carol'), 'for-carol-2', 'normal')
    raw_message(alice, bob_bare, 'for-bob', 'chat')
    await sync(alice)
    xt.is_(len(xt.user_rows(srv, 'carol').get('mod_offline', [])), 2,
           "before the removal the spool holds carol's two offline messages")
    code, out, err = await srv.actl('unregister', 'carol', srv.host)
    xt.is_(code, 0, 'xmppctl unregister carol') or xt.diag(out + err)
    xt.is_(xt.user_rows(srv, 'carol'), {}, 'after it no row of carol is left in any table')
    xt.is_(len(xt.user_rows(srv, 'bob').get('mod_offline', [])), 1,
           "bob's offline message is still stored")
    srv.register('carol', 'carol-pw')
    carol = await xt.login_ok(srv, 'carol', 'carol-pw', resource='c')
    got = await collect(carol, 1, timeout=1.5)
    xt.is_(bodies(got), [], 'a removed and re-created account has no offline messages')
    await xt.disconnect_all(alice, carol)
    bad = [l for l in srv.log().splitlines()
           if 'mod_offline:' in l and ('[error]' in l or '[warning]' in l)]
    xt.is_(bad, [], 'mod_offline logged no error or warning')
    srv.teardown()

    # -- Quotas: max_messages 3, max_bytes 6000 (XEP-0160 2) ---------------
    q = xt.Server(name='t0920-quota', workers=2,
                  modules={'mod_offline': {'max_messages': 3, 'max_bytes': 6000}})
    for u in ('alice', 'bob'):
        q.register(u, u + '-pw')
    qa = await xt.login_ok(q, 'alice', 'alice-pw', resource='a')
    for b in ('q1', 'q2', 'q3', 'q4'):
        raw_message(qa, q.jid('bob'), b, 'chat')
    await sync(qa)
    await asyncio.sleep(0.3)
    xt.is_(errors_of(qa), [('q4', 'service-unavailable')],
           'with 3 waiting, the 4th message comes back with service-unavailable')
    qb = await xt.login_ok(q, 'bob', 'bob-pw', resource='b')
    got = await collect(qb, 3, timeout=3, settle=0.5)
    xt.is_(bodies(got), ['q1', 'q2', 'q3'], 'bob gets the three that were stored')
    await offline(q, qb)
    raw_message(qa, q.jid('bob'), 'big1-' + 'x' * 3500, 'chat')
    raw_message(qa, q.jid('bob'), 'big2-' + 'y' * 3500, 'chat')
    raw_message(qa, q.jid('bob'), 'small', 'chat')
    await sync(qa)
    await asyncio.sleep(0.3)
    errs = errors_of(qa)
    xt.is_([(b[:5] if b else b, c) for b, c in errs], [('big2-', 'service-unavailable')],
           'after delivery there is room again; over 6000 bytes a message is refused')
    qb = await xt.login_ok(q, 'bob', 'bob-pw', resource='b')
    got = await collect(qb, 2, timeout=3, settle=0.5)
    xt.is_([b[:5] for b in bodies(got)], ['big1-', 'small'], 'bob gets the one that fit and the small one')
    await xt.disconnect_all(qa, qb)
    q.teardown()

    # -- A store that fails (RFC 6121 8.5.2.2.1, XEP-0160 2) ---------------
    # A 1 MiB spool fills up: a message the store could not keep comes back
    # to its sender as service-unavailable (from the store's answer), and
    # every message that did not come back is delivered, in order.
    f = xt.Server(name='t0930-full', workers=2,
                  modules={'mod_offline': {'max_messages': 100000, 'max_bytes': 1 << 30}},
                  conf={'store_map_size': 1 << 20, 'max_send_queue': 8 << 20})
    for u in ('alice', 'bob'):
        f.register(u, u + '-pw')
    fa = await xt.login_ok(f, 'alice', 'alice-pw', resource='a')
    sent = ['full%02d' % i for i in range(30)]
    for b in sent:
        raw_message(fa, f.jid('bob'), b + '-' + 'z' * 48000, 'chat')
    await sync(fa, timeout=30)
    await asyncio.sleep(0.3)
    errs = [(b.split('-')[0] if b else b, c) for b, c in errors_of(fa)]
    back = [b for b, _ in errs]
    xt.ok(errs and all(c == 'service-unavailable' for _, c in errs) and len(errs) < len(sent),
          'once the spool is full, messages come back with service-unavailable (%d of %d: %s)'
          % (len(errs), len(sent), sorted(set(c for _, c in errs))))
    fb = await xt.login_ok(f, 'bob', 'bob-pw', resource='b')
    kept = [b for b in sent if b not in back]
    got = await collect(fb, len(kept), timeout=5, settle=1.0)
    xt.is_([b.split('-')[0] for b in bodies(got)], kept,
           'bob gets, in order, exactly the %d messages that did not come back' % len(kept))
    await xt.disconnect_all(fa, fb)
    f.teardown()

    # -- A stream that overflows while they are written ---------------------
    # max_send_queue 16 KiB: the third 6000-byte message closes bob's
    # stream (resource-constraint) after it was queued; what was queued
    # is gone from the store, the rest comes at the next login.
    o = xt.Server(name='t0920-overflow', workers=2, modules={'mod_offline': {}},
                  conf={'max_send_queue': 16384},
                  c2s={'max_stanza_size': 16384}, tls_listener={'max_stanza_size': 16384})
    for u in ('alice', 'bob'):
        o.register(u, u + '-pw')
    oa = await xt.login_ok(o, 'alice', 'alice-pw', resource='a')
    for i in range(1, 5):
        raw_message(oa, o.jid('bob'), 'ov%d-' % i + str(i) * 6000, 'chat')
    await sync(oa)
    r = await xt.Raw.open(o)
    await r.login('bob', 'bob-pw', 'raw')
    closed = await r.read_until_close(10)
    seen = re.findall(r'<body>(ov\d)-', r.since_mark())
    xt.ok(closed and xt.stream_error(r.since_mark()) == 'resource-constraint',
          'bob\'s stream is closed with resource-constraint (%s)' % xt.stream_error(r.since_mark()))
    xt.is_(seen, ['ov1', 'ov2', 'ov3'], 'after the three messages that were queued')
    r.close()
    await o.wait_connected(lambda s: not any(x['jid'].startswith(o.jid('bob')) for x in s))
    ob = await xt.login_ok(o, 'bob', 'bob-pw', resource='b')
    got = await collect(ob, 1, timeout=3, settle=0.5)
    xt.is_([b[:3] for b in bodies(got)], ['ov4'], 'the next login gets the fourth, and only it')
    await xt.disconnect_all(oa, ob)
    o.teardown()


xt.run(main, timeout=170)
