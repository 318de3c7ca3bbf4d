#!/usr/bin/python3
"""t1210-sm-durable: stream management resumption that survives kill -9 of
the server (sm_durable, XEP-0198 5; doc/architecture.md "Resumption across
a restart"): the rows in the store as stanzas are queued and acknowledged,
a restarted server that treats the stored sessions as detached (routable,
their presence visible to contacts), resumption after the restart that
replays exactly the unacknowledged stanzas in order once with the
committed h, unknown and foreign previd refused, a restored session whose
max runs out (unavailable presence, its messages in offline storage), the
rows gone with the session; the same crash without sm_durable leaves
nothing to resume; and with a slow store, a stanza reaches the client only
once its row is committed and <a/> waits for the committed h.

Raw clients where exact counts matter."""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_SM = xt.NS_SM
MAX_RESUME = 60
ERIN_MAX = 5
# The slow store's delay: every store operation completes this late.
DELAY_MS = 800


async def sm_session(srv, user, resource, max_=None, presence='<presence/>'):
    """A raw session with resumption on, available: (raw, full jid, the
    <enabled/> attributes)."""
    r = await xt.sm_authed(srv, user)
    jid = await r.bind(resource)
    en = await xt.sm_enable(r, max_)
    if jid is None or en is None or not en.startswith('<enabled'):
        raise xt.HarnessError('raw: no SM session for %s: %r' % (user, r.text[-400:]))
    attrs = xt.sm_elems(en)[0].attrib
    await r.send(presence)
    if not await r.read_until(r'<presence\b.*?(/>|</presence>)', 8):
        raise xt.HarnessError('raw: no presence echo for %s' % user)
    return r, jid, attrs


async def roster_both(srv, a, b):
    code, out, err = await srv.actl('roster', 'add', a, srv.host, srv.jid(b))
    if code != 0:
        raise xt.HarnessError('xmppctl roster add %s %s: %s%s' % (a, b, out, err))


async def watcher(srv, user):
    c = xt.Client(srv, user, user + '-pw', resource='w')
    c.xmpp.auto_authorize = None
    c.xmpp.auto_subscribe = False
    await c.connect()
    if not c.ok:
        raise xt.HarnessError('login failed: ' + c.describe())
    return c


def queue_rows(srv, sm_id):
    """The bodies of the queue rows of session sm_id, in key order."""
    prefix = sm_id.encode() + b'\0'
    out = []
    for k, v in xt.store_rows(srv, 'sm_queue') if 'sm_queue' in xt.store_tables(srv) else []:
        if k.startswith(prefix):
            out.extend(xt.sm_bodies(v[1:].decode('utf-8', 'replace')) or ['(not a message)'])
    return out


def state_ids(srv):
    if 'sm_state' not in xt.store_tables(srv):
        return []
    return [k[:-1].decode('ascii', 'replace') for k, _ in xt.store_rows(srv, 'sm_state')]


async def poll(fn, pred, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if pred(v) or time.monotonic() > deadline:
            return v
        await asyncio.sleep(0.1)


def listed(sessions, full):
    return sessions is not None and any(s['jid'] == full for s in sessions)


async def main():
    srv = xt.Server(workers=2, modules={'mod_offline': {}, 'mod_roster': {}},
                    conf={'sm_durable': True, 'sm_max_resume': MAX_RESUME,
                          'sm_ack_interval': 30, 'sm_ack_timeout': 60})
    for u in ('alice', 'bob', 'carol', 'erin'):
        srv.register(u, u + '-pw')
    await roster_both(srv, 'alice', 'erin')
    alice = await watcher(srv, 'alice')

    # -- Before the crash: rows as stanzas are queued and acknowledged -------
    rb, bob_jid, ba = await sm_session(srv, 'bob', 'res')
    bob_id = ba.get('id', '')
    alice.send(bob_jid, 'm1')
    alice.send(bob_jid, 'm2')
    alice.send(bob_jid, 'm3')
    await rb.read_until(r'm3</body>.*?</message>', 5)
    # What the server sent since <enabled/> (the presence echo first).
    seen = xt.sm_stanzas(rb.since_mark())
    names = [e.findtext('{jabber:client}body') for e in seen]
    h_acked = names.index('m1') + 1 if 'm1' in names else 0
    # XEP-0198 4: bob acknowledges up to m1, and sends one stanza.
    await rb.send("<a xmlns='%s' h='%d'/><message to='%s' type='chat'><body>from-bob</body>"
                  "</message>" % (NS_SM, h_acked, alice.jid))
    xt.ok(await alice.message(body='from-bob') is not None, 'bob chats before the crash')
    xt.is_(await xt.sm_ask_h(rb), 2, "<a h='2'/>: bob's presence and message are handled")
    alice.send(bob_jid, 'm4')
    alice.send(bob_jid, 'm5')
    xt.ok(await rb.read_until(r'm5</body>', 5) is not None, 'bob gets m4 and m5')

    # erin: available (away), one message read and not acknowledged, a
    # short max.
    re_, erin_jid, ea = await sm_session(srv, 'erin', 'e', max_=ERIN_MAX,
                                         presence='<presence><show>away</show></presence>')
    xt.is_(ea.get('max'), str(ERIN_MAX), "erin's max is granted")
    alice.send(erin_jid, 'e1')
    xt.ok(await re_.read_until(r'e1</body>', 5) is not None, 'erin gets e1')
    await alice.disconnect()

    # -- kill -9 ---------------------------------------------------------------
    srv.kill9()
    xt.is_(sorted(state_ids(srv)), sorted([bob_id, ea.get('id', '')]),
           'after kill -9 the store holds the state row of each resumable session')
    xt.is_(queue_rows(srv, bob_id), ['m2', 'm3', 'm4', 'm5'],
           "and bob's queue rows: exactly what he had not acknowledged, in order")
    rb.close()
    re_.close()
    srv.restart()

    # -- The restarted server: detached sessions again -------------------------
    sessions = await srv.wait_connected(lambda s: listed(s, bob_jid) and listed(s, erin_jid), 5)
    xt.ok(listed(sessions, bob_jid) and listed(sessions, erin_jid),
          'after the restart both sessions are in the session table')
    alice = await watcher(srv, 'alice')
    p = await alice.presences.get(lambda p: str(p['from']) == erin_jid and
                                  p.xml.get('type') is None, 5)
    xt.is_(p['show'] if p is not None else None, 'away',
           "alice's probe is answered with erin's presence as it was (RFC 6121 4.3)")
    alice.send(bob_jid, 'm6')       # to the detached session: queued
    await asyncio.sleep(0.5)

    # -- Resumption after the restart (XEP-0198 5) ----------------------------
    ru, ans = await xt.sm_resume(srv, 'bob', 'f' * 32, 0)
    xt.is_(xt.sm_failed_condition(ans), 'item-not-found', 'an unknown previd: item-not-found')
    ru.close()
    rc, ans = await xt.sm_resume(srv, 'carol', bob_id, 0)
    xt.is_(xt.sm_failed_condition(ans), 'item-not-found',
           "another account's previd: item-not-found (XEP-0198 10)")
    rc.close()
    r2, ans = await xt.sm_resume(srv, 'bob', bob_id, h_acked)
    a = xt.sm_elems(ans)[0].attrib if ans and ans.startswith('<resumed') else {}
    xt.is_(a.get('previd'), bob_id, 'bob resumes his session after kill -9 and a restart')
    xt.is_(a.get('h'), '2', "<resumed h='2'/>: the count committed before the crash")
    await r2.read_until(r'm6</body>.*?</message>', 5)
    await r2.read_until(r'will-not-match', 1.0)
    got = xt.sm_bodies(r2.since_mark())
    xt.is_(got, ['m2', 'm3', 'm4', 'm5', 'm6'],
           'exactly the unacknowledged stanzas, in order, once, and what came meanwhile')
    n = h_acked + len(xt.sm_stanzas(r2.since_mark()))
    r2.set_mark()
    await r2.send("<a xmlns='%s' h='%d'/><message to='%s' type='chat'><body>back</body></message>"
                  % (NS_SM, n, alice.jid))
    xt.ok(await alice.message(body='back') is not None, 'the resumed session sends')
    xt.is_(await xt.sm_ask_h(r2), 3, 'and h goes on from the committed count')
    xt.is_(await poll(lambda: queue_rows(srv, bob_id), lambda v: v == []), [],
           'the queue rows go once <a h/> covers them')

    # -- The restored session whose max runs out -------------------------------
    t0 = time.monotonic()
    p = await alice.presences.get(lambda p: str(p['from']) == erin_jid and
                                  p.xml.get('type') == 'unavailable', ERIN_MAX + 10)
    xt.ok(p is not None, 'after max, alice sees erin unavailable (%.1f s)' % (time.monotonic() - t0))
    rows = await poll(lambda: xt.user_rows(srv, 'erin').get('mod_offline', []),
                      lambda v: len(v) > 0)
    xt.is_(len(rows), 1, "erin's unacknowledged message is in offline storage")
    xt.ok(ea.get('id') not in await poll(lambda: state_ids(srv), lambda v: ea.get('id') not in v),
          "and erin's rows are gone")
    e2 = await xt.login_ok(srv, 'erin', 'erin-pw', resource='again')
    msgs = []
    while True:
        m = await e2.message(timeout=1 if msgs else 2)
        if m is None:
            break
        msgs.append(m['body'])
    xt.is_(msgs, ['e1'], 'and delivered once at the next login')
    await e2.disconnect()

    # -- The session's end removes its rows -------------------------------------
    await r2.send('</stream:stream>')
    await r2.read_until_close(5)
    xt.ok(bob_id not in await poll(lambda: state_ids(srv), lambda v: bob_id not in v),
          "a closed session's state row goes")
    await alice.disconnect()
    srv.teardown()

    # -- Without sm_durable, nothing survives the crash ---------------------------
    v = xt.Server(name='t1210-volatile', workers=2, conf={'sm_max_resume': MAX_RESUME})
    v.register('bob', 'bob-pw')
    rv, vjid, va = await sm_session(v, 'bob', 'res')
    await rv.send("<message to='%s' type='chat'><body>v1</body></message>" % vjid)
    await rv.read_until(r'v1</body>', 5)
    xt.is_(await xt.sm_ask_h(rv), 2, 'a session without sm_durable counts as usual')
    v.kill9()
    xt.is_(state_ids(v), [], 'without sm_durable the store holds no state row')
    rv.close()
    v.restart()
    rv2, ans = await xt.sm_resume(v, 'bob', va.get('id', ''), 1)
    xt.is_(xt.sm_failed_condition(ans), 'item-not-found',
           'and after kill -9 and a restart resumption fails with item-not-found')
    rv2.close()
    v.teardown()

    # -- A slow store: written once committed, h once committed -------------------
    d = xt.Server(name='t1210-delay', workers=2,
                  conf={'sm_durable': True, 'sm_max_resume': 30, 'store_test_delay_ms': DELAY_MS})
    d.register('bob', 'bob-pw')
    rd, djid, _ = await sm_session(d, 'bob', 'res')
    xt.is_(await xt.sm_ask_h(rd, 10), 1, 'the presence counts once its state row is committed')
    rd.set_mark()
    t0 = time.monotonic()
    await rd.send("<message to='%s' type='chat'><body>slow</body></message><r xmlns='%s'/>"
                  % (djid, NS_SM))
    got = await rd.read_until(r'slow</body>', 10)
    t_msg = time.monotonic() - t0
    xt.ok(got is not None and t_msg >= 0.8 * DELAY_MS / 1000,
          'a stanza reaches the client only once its queue row is committed (%.2f s)' % t_msg)
    got = await rd.read_until(r"<a xmlns='urn:xmpp:sm:3' h='(\d+)'/>", 10)
    t_a = time.monotonic() - t0
    xt.is_(got.group(1) if got else None, '2', "<a h='2'/> counts the message")
    xt.ok(got is not None and t_a - t_msg >= 0.66 * DELAY_MS / 1000,
          'once its state row is committed too (%.2f s after the message)' % (t_a - t_msg))
    rd.close()
    d.teardown()


xt.run(main, timeout=170)
