#!/usr/bin/python3
"""t0810-hooks: hooks and IQ handlers as modules use them (hooks/xmppd.h,
doc/hooks.md), each through a test module of t/modules/:

(a) roster_get (mod_rosterfold): a roster result (RFC 6121 2.1.3) carries
    the item the module folds in, for the right user, beside mod_roster's
    own items; gone after unload, back after load;
(b) c2s_stream_features (mod_featurefold): the fold runs each time
    <stream:features/> is sent (before TLS, after STARTTLS, after SASL, and
    on a direct-TLS stream) with the right tls / authenticated / host, a
    host-restricted handler only for its host, and the static features
    (xmppd_stream_feature) appear only at their stage; gone after unload;
(c) sm_session_opened (mod_sessionopened): runs once for each bound
    session, with its full JID, after the bind result, before the session
    is available, on the session's worker (sessions on both workers);
    stops after unload;
(d) deferred IQ replies (mod_deferred): answered by a timer and by the
    module's own thread, exactly once, with the right id, also to a client
    on the other worker; a client gone before the answer; an unload with
    answers pending.
"""

import asyncio
import os
import re
import shutil
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_R = 'jabber:iq:roster'
NS_FF = 'urn:xmppd:test:featurefold'
NS_SO = 'urn:xmppd:test:sessionopened'
NS_DEF = 'urn:xmppd:test:deferred'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind'
NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls'
HOST, OTHER = 'xmppd.test', 'other.test'


outcome = xt.iq_outcome


async def ctl_ok(srv, *args):
    code, out, err = await srv.actl(*args)
    if code != 0:
        xt.diag('xmppctl %s: %r %s %s' % (' '.join(args), code, out, err))
    return code == 0


# ---------------------------------------------------------------------------
# (a) roster_get
# ---------------------------------------------------------------------------

async def roster(c):
    """{jid: (subscription, name, sorted groups)} of c's roster, or the
    outcome if it is not a result."""
    r = await c.iq('get', None, "<query xmlns='%s'/>" % NS_R)
    if r is None or r['type'] != 'result':
        return outcome(r)
    q = r.xml.find('{%s}query' % NS_R)
    if q is None:
        return 'result without a query'
    return {i.get('jid'): (i.get('subscription'), i.get('name'),
                           sorted(g.text or '' for g in i.findall('{%s}group' % NS_R)))
            for i in q.findall('{%s}item' % NS_R)}


def helpdesk(bare):
    """The item mod_rosterfold adds to bare's roster."""
    return {'helpdesk@%s' % bare.split('@')[1]: ('both', 'Helpdesk for %s' % bare, ['Shared'])}


async def test_roster(srv, alice, bob, carol):
    xt.ok(await ctl_ok(srv, 'roster', 'add', 'alice', HOST, srv.jid('bob'), 'Bob', 'Friends'),
          '(a) xmppctl roster add alice -> bob')
    own_alice = {srv.jid('bob'): ('both', 'Bob', ['Friends'])}
    own_bob = {srv.jid('alice'): ('both', None, [])}
    want = dict(own_alice, **helpdesk(srv.jid('alice')))
    xt.is_(await roster(alice), want, '(a) alice\'s roster: mod_roster\'s item (bob) and the '
           'one mod_rosterfold folds in, named for alice')
    xt.is_(await roster(bob), dict(own_bob, **helpdesk(srv.jid('bob'))),
           '(a) bob\'s roster: his mirror item and the fold\'s, named for bob (the hook is '
           'handed the user asked about)')
    xt.is_(await roster(carol), helpdesk('carol@%s' % OTHER),
           '(a) carol@%s (no items of her own): only the fold\'s, in her domain' % OTHER)

    xt.ok(await ctl_ok(srv, 'module', 'unload', 'mod_rosterfold'), '(a) unload mod_rosterfold')
    xt.is_(await roster(alice), own_alice, '(a) unloaded: alice\'s roster is mod_roster\'s '
           'items only')
    xt.is_(await roster(carol), {}, '(a) ... and carol\'s is empty')
    xt.ok(await ctl_ok(srv, 'module', 'load', 'mod_rosterfold'), '(a) load mod_rosterfold again')
    xt.is_(await roster(alice), want, '(a) loaded again: the fold\'s item is back')


# ---------------------------------------------------------------------------
# (b) c2s_stream_features
# ---------------------------------------------------------------------------

def ours(feat):
    """[(name, attributes)] of the children of a <stream:features/> in
    mod_featurefold's namespace, in order; None if there were no features."""
    if feat is None:
        return None
    return [(c.tag.split('}', 1)[1], dict(c.attrib)) for c in feat
            if c.tag.startswith('{%s}' % NS_FF)]


def stage(tls, auth, host):
    return ('stage', {'tls': str(tls), 'authenticated': str(auth), 'host': host})


async def stages(srv, host, user, password):
    """The features at each stage of a STARTTLS login to host:
    (before TLS, after STARTTLS, after SASL) as Elements (None if missing)."""
    r = await xt.Raw.open(srv)
    try:
        f1 = await r.open_stream(to=host)
        f2 = await r.open_stream(to=host) if await r.starttls() else None
        f3 = await r.open_stream(to=host) if f2 is not None and \
            await r.auth_plain(user, password) else None
        return f1, f2, f3
    finally:
        r.close()


async def direct_tls_features(srv, host):
    r = await xt.Raw.open(srv, tls=True)
    try:
        return await r.open_stream(to=host)
    finally:
        r.close()


async def test_features(srv):
    f1, f2, f3 = await stages(srv, HOST, 'alice', 'alice-pw')
    xt.ok(f1 is not None and f1.find('{%s}starttls' % NS_TLS) is not None,
          '(b) before TLS: the core still offers starttls') or xt.diag(f1)
    xt.is_(ours(f1), [stage(0, 0, HOST), ('only-host', {})],
           '(b) before TLS: the fold ran (tls=0, authenticated=0, host), and the handler for '
           'this host; no static feature (those are for encrypted streams only)')
    xt.is_(ours(f2), [('static-pre', {}), stage(1, 0, HOST), ('only-host', {})],
           '(b) after STARTTLS: the pre-auth static feature, then the fold (tls=1, '
           'authenticated=0)')
    xt.ok(f3 is not None and f3.find('{%s}bind' % NS_BIND) is not None,
          '(b) after SASL: the core still offers bind') or xt.diag(f3)
    xt.is_(ours(f3), [('static-post', {}), stage(1, 1, HOST), ('only-host', {})],
           '(b) after SASL: the post-auth static feature, then the fold (tls=1, '
           'authenticated=1)')
    xt.is_(ours(await direct_tls_features(srv, HOST)),
           [('static-pre', {}), stage(1, 0, HOST), ('only-host', {})],
           '(b) a direct-TLS stream: features as after STARTTLS')

    g1, g2, g3 = await stages(srv, OTHER, 'carol', 'carol-pw')
    xt.is_([ours(g1), ours(g2), ours(g3)],
           [[stage(0, 0, OTHER)], [('static-pre', {}), stage(1, 0, OTHER)],
            [('static-post', {}), stage(1, 1, OTHER)]],
           '(b) a stream to %s: the fold is told that host, and the handler registered for '
           '%s does not run' % (OTHER, HOST))

    xt.ok(await ctl_ok(srv, 'module', 'unload', 'mod_featurefold'),
          '(b) unload mod_featurefold')
    f1, f2, f3 = await stages(srv, HOST, 'alice', 'alice-pw')
    xt.is_([ours(f1), ours(f2), ours(f3), ours(await direct_tls_features(srv, HOST))],
           [[], [], [], []], '(b) unloaded: none of its features at any stage')
    xt.ok(f3 is not None and f3.find('{%s}bind' % NS_BIND) is not None,
          '(b) ... and the core\'s are still there')
    xt.ok(await ctl_ok(srv, 'module', 'load', 'mod_featurefold'), '(b) load it again')
    f1, f2, f3 = await stages(srv, HOST, 'alice', 'alice-pw')
    xt.is_(ours(f3), [('static-post', {}), stage(1, 1, HOST), ('only-host', {})],
           '(b) loaded again: its features are back')


# ---------------------------------------------------------------------------
# (c) sm_session_opened
# ---------------------------------------------------------------------------

def opened_body(jid):
    return 'opened %s available=0' % jid


async def opened_list(c, srv):
    """[(jid, same_thread)] recorded by mod_sessionopened, or the outcome."""
    r = await c.iq('get', srv.host, "<query xmlns='%s'/>" % NS_SO)
    if r is None or r['type'] != 'result':
        return outcome(r)
    q = r.xml.find('{%s}query' % NS_SO)
    return [(s.get('jid'), s.get('same-thread')) for s in q.findall('{%s}session' % NS_SO)]


async def welcomes(c, timeout=1.0):
    """The bodies of the headlines c got from its server within timeout."""
    got = []
    while True:
        m = await c.message(mtype='headline', timeout=timeout)
        if m is None:
            return got
        got.append((str(m['from']), str(m['to']), m['body']))
        timeout = 0.3


async def test_session_opened(srv, alice, bob, carol, seen):
    """alice and bob are on different workers; seen holds (JID, worker) of
    every session bound so far, in order."""
    for c in (alice, bob, carol):
        xt.is_(await welcomes(c), [(c.jid.domain, str(c.jid), opened_body(c.jid))],
               '(c) %s got one "opened" message from the hook, with its full JID, sent '
               'before it was available' % c.jid)
    order = [j for j, w in seen]
    for asker in (alice, bob):
        wa = dict(seen)[str(asker.jid)]
        got = await opened_list(asker, srv)
        xt.is_(got, [(j, '1' if w == wa else '0') for j, w in seen],
               '(c) asked from worker %s: every session bound (%d, on both workers) recorded '
               'once, in order, each on its own session\'s worker' % (wa, len(seen))) \
            or xt.diag(order)

    # The hook runs after the bind result has been written (doc/hooks.md).
    r = await xt.Raw.open(srv)
    try:
        ok = (await r.open_stream() is not None and await r.starttls() and
              await r.open_stream() is not None and await r.auth_plain('alice', 'alice-pw') and
              await r.open_stream() is not None)
        jid = await r.bind('raw') if ok else None
        got = await r.read_until(r'opened \S+ available=\d', 5) if jid else None
        text = r.text
        xt.ok(jid is not None and got is not None and
              text.find('</bind>') < text.find(got.group(0)),
              '(c) on the wire: the bind result first, then the hook\'s message') \
            or xt.diag(text[-1500:])
        xt.is_(got.group(0) if got else None, opened_body(jid),
               '(c) ... for the JID just bound')
    finally:
        r.close()

    xt.ok(await ctl_ok(srv, 'module', 'unload', 'mod_sessionopened'),
          '(c) unload mod_sessionopened')
    late = await xt.login_ok(srv, 'bob', 'bob-pw', resource='late')
    xt.is_(await welcomes(late), [], '(c) unloaded: a new session gets no "opened" message')
    xt.is_(await opened_list(late, srv), 'error:service-unavailable',
           '(c) ... and its IQ is service-unavailable')
    await late.disconnect()
    xt.ok(await ctl_ok(srv, 'module', 'load', 'mod_sessionopened'),
          '(c) load mod_sessionopened again')
    again = await xt.login_ok(srv, 'bob', 'bob-pw', resource='again')
    xt.is_(await welcomes(again), [(HOST, str(again.jid), opened_body(again.jid))],
           '(c) loaded again: a new session gets its message')
    xt.is_([j for j, _ in (await opened_list(again, srv))], [str(again.jid)],
           '(c) ... and is the only one recorded since')
    await again.disconnect()


# ---------------------------------------------------------------------------
# (d) deferred IQ replies
# ---------------------------------------------------------------------------

def deferred_iq(iq_id, how, ms):
    return ("<iq type='get' id='%s' to='%s'><query xmlns='%s' how='%s' ms='%d'/></iq>"
            % (iq_id, HOST, NS_DEF, how, ms))


def replies(raw, iq_id):
    """Every <iq/> with that id the raw client received, as Elements."""
    found = []
    for m in re.finditer(r'<iq\b[^>]*?(?:/>|>.*?</iq>)', raw.text, re.S):
        try:
            e = ET.fromstring(m.group(0).replace('<iq', "<iq xmlns='jabber:client'", 1)
                              if 'xmlns=' not in m.group(0).split('>', 1)[0] else m.group(0))
        except ET.ParseError:
            continue
        if e.get('id') == iq_id:
            found.append(e)
    return found


def summary(e):
    """('result', how, waited ms) or ('error', condition) of a reply."""
    if e.get('type') == 'result':
        a = e.find('{%s}query/{%s}answered' % (NS_DEF, NS_DEF))
        if a is None:
            return ('result', None, None)
        return ('result', a.get('how'), int(a.get('waited') or -1))
    err = e.find('{jabber:client}error')
    conds = [c.tag.split('}', 1)[1] for c in (err if err is not None else [])
             if c.tag.startswith('{%s}' % NS_STANZAS) and not c.tag.endswith('}text')]
    return ('error', conds[0] if conds else None)


def reply_tag(raw, iq_id):
    """The opening tag of the first reply with that id (to find where it is)."""
    m = re.search(r"<iq\b[^>]*id=['\"]%s['\"]" % re.escape(iq_id), raw.text)
    return m.group(0) if m else '\0never\0'


async def wait_reply(raw, iq_id, timeout):
    return await raw.read_until(r"<iq\b[^>]*id=['\"]%s['\"]" % re.escape(iq_id), timeout)


async def deferred_stats(srv):
    code, out, err = await srv.actl('deferred')
    m = re.fullmatch(r'pending (\d+) answered (\d+)\s*', out or '')
    return (int(m.group(1)), int(m.group(2))) if code == 0 and m else (code, out, err)


async def wait_stats(srv, pred, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        s = await deferred_stats(srv)
        if (isinstance(s[0], int) and len(s) == 2 and pred(s)) or time.monotonic() > deadline:
            return s
        await asyncio.sleep(0.05)


async def raw_login(srv, user, resource):
    r = await xt.Raw.open(srv)
    jid = await r.login(user, user + '-pw', resource)
    return r, jid


async def test_deferred(srv, alice, bob):
    r, _ = await raw_login(srv, 'alice', 'def')
    try:
        for how in ('timer', 'thread'):
            iq_id = 'one-' + how
            r.set_mark()
            t0 = time.monotonic()
            await r.send(deferred_iq(iq_id, how, 200))
            got = await wait_reply(r, iq_id, 10)
            took = time.monotonic() - t0
            await asyncio.sleep(0.6)      # a second answer would be here by now
            rs = [summary(e) for e in replies(r, iq_id)]
            xt.is_(len(rs), 1, '(d) %s: exactly one reply with id %s' % (how, iq_id)) \
                or xt.diag(r.since_mark())
            s = rs[0] if rs else ('none',)
            # A margin under 200 ms: libevent's timers run on a coarse
            # clock (a few ms), so one may fire a little early.
            xt.ok(got is not None and s[:2] == ('result', how) and s[2] >= 180 and
                  took >= 0.18, '(d) %s: a result, answered by the %s after %s ms (client '
                  'waited %.0f ms; 200 asked)' % (how, how, s[2] if len(s) > 2 else '?',
                                                  took * 1000)) or xt.diag(s)

        # Several at once, answered in the order of their delays.
        r.set_mark()
        batch = [('b1', 'thread', 900), ('b2', 'timer', 700), ('b3', 'thread', 300),
                 ('b4', 'timer', 100)]
        for iq_id, how, ms in batch:
            await r.send(deferred_iq(iq_id, how, ms))
        for iq_id, _, _ in batch:
            await wait_reply(r, iq_id, 10)
        await asyncio.sleep(0.5)
        got = {iq_id: [summary(e)[:2] for e in replies(r, iq_id)] for iq_id, _, _ in batch}
        xt.is_(got, {iq_id: [('result', how)] for iq_id, how, _ in batch},
               '(d) four pending at once (timers and thread): each answered once, by the '
               'right one, under its own id')
        at = {iq_id: r.text.find(reply_tag(r, iq_id)) for iq_id, _, _ in batch}
        xt.is_(sorted(at, key=at.get), ['b4', 'b3', 'b2', 'b1'],
               '(d) ... in the order of their delays, not of sending')
    finally:
        r.close()

    # bob is on the other worker: the timer runs there, and the thread's
    # answer crosses to it.
    for how in ('timer', 'thread'):
        res = await bob.iq('get', HOST, "<query xmlns='%s' how='%s' ms='200'/>" % (NS_DEF, how),
                           timeout=10)
        a = res.xml.find('{%s}query/{%s}answered' % (NS_DEF, NS_DEF)) \
            if res is not None and res['type'] == 'result' else None
        xt.is_(a.get('how') if a is not None else outcome(res), how,
               '(d) %s: answered to bob, on the other worker' % how)

    # A client gone before the answer: the answer goes nowhere; nothing
    # crashes and nothing leaks (the server's exit is checked under ASan).
    base = await deferred_stats(srv)
    gone, gone_jid = await raw_login(srv, 'alice', 'gone')
    await gone.send(deferred_iq('g1', 'timer', 3000) + deferred_iq('g2', 'thread', 3000))
    s = await wait_stats(srv, lambda s: s[0] == 2)
    xt.is_(s[0], 2, '(d) two answers pending for a client ...') or xt.diag(s)
    gone.close()
    sessions = await srv.wait_connected(lambda ss: xt.session_of(ss, gone_jid) is None)
    s = await deferred_stats(srv)
    xt.ok(xt.session_of(sessions, gone_jid) is None and s[0] == 2,
          '(d) ... that left before they were due (%s)' % (s,)) or xt.diag(sessions, s)
    s = await wait_stats(srv, lambda s: s[0] == 0)
    xt.ok(isinstance(base[1], int) and s == (0, base[1] + 2),
          '(d) both were answered then (%s -> %s), to nobody' % (base, s))
    xt.ok(srv.running(), '(d) xmppd still runs')
    xt.ok(await xt.roundtrip(alice, bob), '(d) and routes messages')

    # Unload with answers pending: the module answers them in unload()
    # (service-unavailable); its timer, dropped by the core before
    # unload(), never answers a second time.
    r, _ = await raw_login(srv, 'alice', 'unl')
    try:
        r.set_mark()
        await r.send(deferred_iq('u1', 'timer', 5000) + deferred_iq('u2', 'thread', 5000))
        s = await wait_stats(srv, lambda s: s[0] == 2)
        xt.is_(s[0], 2, '(d) two answers pending ...') or xt.diag(s)
        t0 = time.monotonic()
        xt.ok(await ctl_ok(srv, 'module', 'unload', 'mod_deferred'),
              '(d) ... when mod_deferred is unloaded')
        came = [await wait_reply(r, iq_id, 5) is not None for iq_id in ('u1', 'u2')]
        xt.ok(came == [True, True] and time.monotonic() - t0 < 4.0,
              '(d) the answers came with the unload, before their time') or xt.diag(came)
        await asyncio.sleep(max(0.0, 5.0 + 1.0 - (time.monotonic() - t0)))
        got = {iq_id: [summary(e) for e in replies(r, iq_id)] for iq_id in ('u1', 'u2')}
        xt.is_(got, {'u1': [('error', 'service-unavailable')],
                     'u2': [('error', 'service-unavailable')]},
               '(d) each got exactly one reply, service-unavailable, and nothing when its '
               'time came')
        xt.ok(srv.running(), '(d) xmppd still runs (no timer ran into unmapped code)')
        r.set_mark()
        await r.send(deferred_iq('u3', 'timer', 100))
        await wait_reply(r, 'u3', 5)
        xt.is_([summary(e) for e in replies(r, 'u3')], [('error', 'service-unavailable')],
               '(d) unloaded: its namespace is service-unavailable (RFC 6120 8.4)')
    finally:
        r.close()
    xt.ok(await ctl_ok(srv, 'module', 'load', 'mod_deferred'), '(d) load mod_deferred again')
    res = await alice.iq('get', HOST, "<query xmlns='%s' how='thread' ms='100'/>" % NS_DEF,
                         timeout=10)
    xt.is_(outcome(res), 'result', '(d) loaded again: a deferred answer comes')


# ---------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------

async def main():
    scratch = xt.scratch_dir('t0810-build')
    moddir = scratch / 'modules'
    moddir.mkdir()
    roster_so = os.path.join(xt.MODULE_DIR, 'mod_roster.so')
    if not os.path.exists(roster_so):
        raise xt.HarnessError('%s is missing (make modules/mod_roster.la, or set '
                              'XMPPD_TEST_MODULE_DIR)' % roster_so)
    shutil.copy(roster_so, moddir / 'mod_roster.so')
    for name in ('mod_rosterfold', 'mod_featurefold', 'mod_sessionopened', 'mod_deferred'):
        xt.build_test_module(moddir, name)

    srv = xt.Server(hosts=(HOST, OTHER), workers=2, conf={'module_dir': str(moddir)},
                    modules={'mod_roster': {}, 'mod_rosterfold': {},
                             'mod_featurefold': {'only_host': HOST},
                             'mod_sessionopened': {}, 'mod_deferred': {}})
    srv.register('alice', 'alice-pw')
    srv.register('bob', 'bob-pw')
    srv.register('carol', 'carol-pw', host=OTHER)

    # alice and bob on different workers (workers: 2); every session bound
    # is noted, for (c).
    seen = []
    alice, wa = await xt.login_on_worker(srv, 'alice', 'alice-pw', lambda w: True, 'a',
                                         seen=seen)
    bob, wb = await xt.login_on_worker(srv, 'bob', 'bob-pw', lambda w: w != wa, 'b', seen=seen)
    if not xt.ok(bob is not None, '(c) bob landed on another worker than alice (%s)' % wa):
        raise xt.HarnessError('no session on the second worker after 20 logins')
    carol = await xt.login_ok(srv, 'carol', 'carol-pw', host=OTHER, resource='c')
    seen.append((str(carol.jid), await xt.worker_of(srv, carol)))

    await test_session_opened(srv, alice, bob, carol, seen)
    await test_roster(srv, alice, bob, carol)
    await test_features(srv)
    await test_deferred(srv, alice, bob)

    await xt.disconnect_all(alice, bob, carol)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM, unloading the modules')
    srv.teardown()


xt.run(main, timeout=240)
