#!/usr/bin/python3
"""t0910-presence: mod_roster, RFC 6121 4: a contact's presence seen after
login (probes answered), broadcast of changes, unavailable when a contact's
TCP connection is killed, the last unavailable presence answering probes
while nobody is online, directed presence and its unavailable, a second
resource learning its contacts' presence, and a contact the user blocked
(mod_blocking, XEP-0191) getting none of the user's presence; presence
errors (RFC 6120 8.3, RFC 6121 8.5): routed to the address they carry, not
broadcast, never answered with an error; presence to a bad address answered
with the presence error that says why."""

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

USERS = ('alice', 'bob', 'carol', 'dave', 'frank')
NS_BLOCK = 'urn:xmpp:blocking'
NS_DELAY = 'urn:xmpp:delay'


# -- helpers -----------------------------------------------------------------

async def client(srv, user, resource, status=None, priority=None):
    """A logged-in slixmpp client that answers no subscription on its own;
    its initial presence carries status when given."""
    c = xt.Client(srv, user, user + '-pw', resource=resource, priority=priority,
                  presence=status is None)
    c.xmpp.auto_authorize = None
    c.xmpp.auto_subscribe = False
    if status is not None:
        c.xmpp.add_event_handler('session_start',
                                 lambda _: c.xmpp.send_presence(pstatus=status))
    await c.connect()
    if not c.ok:
        raise xt.HarnessError('login failed: ' + c.describe())
    # The initial presence has been handled (the session is available)
    # once a round trip sent after it is back: a stream's stanzas are
    # handled in order (RFC 6120 10.1), also while the roster is read
    # from a store that answers late (XMPPD_TEST_STORE_DELAY_MS).
    await c.iq('get', srv.host, "<query xmlns='urn:xmppd:test:sync'/>")
    return c


async def pres(c, frm, ptype='available', status=None, timeout=5):
    """The next presence from frm (a full JID) of that type (and status)."""
    want = None if ptype == 'available' else ptype
    return await c.presences.get(
        lambda p: str(p['from']) == str(frm) and p.xml.get('type') == want and
        (status is None or p['status'] == status), timeout)


async def none_from(c, bare, timeout=1.5):
    """True if no presence at all from bare arrives within timeout."""
    return await c.presences.get(lambda p: p['from'].bare == bare, timeout) is None


async def with_id(clients, sid, timeout=1.0):
    """For each client, whether a presence with id sid reached it."""
    return [await c.presences.get(lambda p: p['id'] == sid, timeout) is not None
            for c in clients]


def kill(c):
    """Drops the TCP connection at once: a reset, no </stream:stream>."""
    t = c.xmpp.transport
    s = t.get_extra_info('socket') if t is not None else None
    if s is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    if t is not None:
        t.abort()


async def both(srv, a, b):
    code, out, err = await srv.actl('roster', 'add', a, srv.host, srv.jid(b))
    if code != 0:
        raise xt.HarnessError('xmppctl roster add %s %s: %s%s' % (a, b, out, err))


# -- the test ------------------------------------------------------------------

async def main():
    # nowhere.test: a remote domain pinned to a port where nothing listens.
    nowhere_ip = xt.pick_loopback_ip()
    nowhere = '%s:%d' % (nowhere_ip, xt.free_ports(nowhere_ip, 1)[0])
    srv = xt.Server(workers=2, modules={'mod_roster': {}, 'mod_blocking': {}},
                    conf={'s2s_hosts': {'nowhere.test': nowhere}})
    for u in USERS:
        srv.register(u, u + '-pw')
    A, B, C, D, F = (srv.jid(u) for u in USERS)
    await both(srv, 'alice', 'bob')
    await both(srv, 'alice', 'carol')

    # A contact's presence after login: the probe is answered (4.3.2), and
    # the new session's presence is broadcast (4.2.2).
    alice = await client(srv, 'alice', 'home', status='at home')
    bob = await client(srv, 'bob', 'desk')
    p = await pres(bob, alice.jid)
    xt.ok(p is not None, 'bob sees alice\'s presence right after logging in')
    xt.is_(p['status'] if p is not None else None, 'at home', 'with her status')
    p = await pres(alice, bob.jid)
    xt.ok(p is not None, 'alice sees bob come online')

    # Changes are broadcast to the contacts (4.4.2).
    alice.xmpp.send_presence(pshow='away', pstatus='out for lunch')
    p = await pres(bob, alice.jid, status='out for lunch')
    xt.ok(p is not None, 'bob sees alice\'s new status')
    xt.is_(p['show'] if p is not None else None, 'away', 'and her show')

    # A second resource learns its contacts' presence too.
    bob2 = await client(srv, 'bob', 'phone')
    p = await pres(bob2, alice.jid, status='out for lunch')
    xt.ok(p is not None, 'bob\'s second resource gets alice\'s presence at its login')
    p = await pres(alice, bob2.jid)
    xt.ok(p is not None, 'and alice sees that second resource come online')
    await bob2.disconnect()
    p = await pres(alice, bob2.jid, 'unavailable')
    xt.ok(p is not None, 'a clean logout is unavailable for alice')

    # Killing bob's connection (no </stream:stream>) is unavailable (4.5.2).
    kill(bob)
    p = await pres(alice, bob.jid, 'unavailable')
    xt.ok(p is not None, 'alice gets unavailable from bob when his TCP connection dies')
    sessions = await srv.wait_connected(lambda s: xt.session_of(s, bob.jid) is None)
    xt.ok(xt.session_of(sessions, bob.jid) is None, 'bob\'s session is gone')

    # Directed presence to a stranger (4.6): delivered, and followed by
    # unavailable when the session ends.
    dave = await client(srv, 'dave', 'd')
    frank = await client(srv, 'frank', 'f')
    alice.xmpp.send_presence(pto=D, pstatus='hello dave')
    p = await pres(dave, alice.jid, status='hello dave')
    xt.ok(p is not None, 'dave gets alice\'s directed presence')

    # The last unavailable presence answers probes while nobody is online.
    alice.xmpp.send_presence(ptype='unavailable', pstatus='gone fishing')
    p = await pres(dave, alice.jid, 'unavailable')
    xt.ok(p is not None, 'dave, who got directed presence, gets her unavailable')
    xt.ok(await none_from(frank, A), 'frank (no subscription, no directed presence) gets nothing')
    await alice.disconnect()
    bob = await client(srv, 'bob', 'again')
    p = await pres(bob, alice.jid, 'unavailable')
    xt.ok(p is not None, 'bob, logging in with alice offline, gets her last unavailable')
    xt.is_(p['status'] if p is not None else None, 'gone fishing', 'with its status')
    d = p.xml.find('{%s}delay' % NS_DELAY) if p is not None else None
    xt.ok(d is not None and d.get('stamp'), 'and a delay stamp (XEP-0203)')

    # Directed presence then a dropped connection.
    alice = await client(srv, 'alice', 'home', status='back')
    p = await pres(bob, alice.jid, status='back')
    xt.ok(p is not None, 'bob sees alice back')
    alice.xmpp.send_presence(pto=F, pstatus='hi frank')
    p = await pres(frank, alice.jid, status='hi frank')
    xt.ok(p is not None, 'frank gets alice\'s directed presence')
    kill(alice)
    p = await pres(frank, alice.jid, 'unavailable')
    xt.ok(p is not None, 'frank gets unavailable when alice\'s connection dies')
    p = await pres(bob, alice.jid, 'unavailable')
    xt.ok(p is not None, 'and so does bob, her contact')
    xt.ok(await none_from(dave, A), 'dave, whose directed presence ended, gets nothing')

    # Blocking (XEP-0191 with mod_blocking): carol, a contact alice blocks,
    # gets none of her presence; bob, not blocked, still does.
    alice = await client(srv, 'alice', 'home', status='before blocking')
    carol = await client(srv, 'carol', 'c')
    p = await pres(carol, alice.jid, status='before blocking')
    xt.ok(p is not None, 'before blocking, carol sees alice')
    r = await alice.iq('set', None, "<block xmlns='%s'><item jid='%s'/></block>" % (NS_BLOCK, C))
    xt.is_(r['type'] if r is not None else None, 'result', 'alice blocks carol')
    alice.xmpp.send_presence(pstatus='after blocking')
    p = await pres(bob, alice.jid, status='after blocking')
    xt.ok(p is not None, 'bob sees alice\'s new presence')
    # XEP-0191 3.3: blocking a contact who saw her presence sends it her
    # unavailable presence; nothing after that.
    p = await carol.presences.get(lambda p: p['from'].bare == A, 3)
    xt.is_(p['type'] if p is not None else None, 'unavailable',
           'carol gets alice\'s unavailable presence as she is blocked (XEP-0191 3.3)')
    xt.ok(await none_from(carol, A), 'and not the presence alice sent after blocking her')
    await carol.disconnect()
    carol = await client(srv, 'carol', 'c2')
    xt.ok(await none_from(carol, A, timeout=2), 'nor when she logs in again (no probe answer)')
    kill(alice)
    p = await pres(bob, alice.jid, 'unavailable')
    xt.ok(p is not None, 'bob sees alice go')
    xt.ok(await none_from(carol, A), 'carol does not')

    # -- Presence errors -------------------------------------------------
    # A presence of type error answers a presence its addressee sent (RFC
    # 6121 4.7.1). It goes where it is addressed like any presence (RFC 6121
    # 8.5), is not taken for a change of the sender's own presence, and is
    # never answered with another error (RFC 6120 8.3.1).
    err = "<error type='cancel'><forbidden xmlns='%s'/></error>" % xt.NS_STANZAS_ERR
    alice = await client(srv, 'alice', 'home', status='errors')
    p = await pres(bob, alice.jid, status='errors')
    xt.ok(p is not None, 'bob sees alice again')
    alice2 = await client(srv, 'alice', 'phone')
    # To a bound full JID: to that resource only (8.5.3.1).
    sid = xt.send_presence_id(frank, alice.jid, 'error', extra=err)
    p = await xt.error_for(alice, sid, 'presence')
    xt.is_(xt.error_summary(p), ('error', 'forbidden', str(frank.jid)),
           'a presence error to alice/home reaches alice/home, as frank sent it')
    xt.is_(await with_id([alice2, bob], sid), [False, False],
           'and neither her other resource nor her contact bob')
    # To the bare JID: to each available resource, as any presence to the
    # bare JID (8.5.2.1.2, doc/architecture.md); errors to subscription
    # requests, sent from the bare JID (3.1.2), come back this way.
    sid_bare = xt.send_presence_id(frank, A, 'error', extra=err)
    xt.is_(await with_id([alice, alice2], sid_bare, timeout=5), [True, True],
           'a presence error to alice\'s bare JID reaches both her resources')
    # Without 'to' it is not the client's presence (RFC 6121 4.7.1 lists
    # no such use): nothing is broadcast, to contacts or own resources.
    sid_own = xt.send_presence_id(alice, None, 'error', extra=err)
    # To a resource that is not bound: ignored (8.5.3.2.2); to an account
    # that does not exist (8.5.1), to the server and to a malformed
    # address: not answered.
    sids = [xt.send_presence_id(frank, srv.jid('alice', 'gone'), 'error', extra=err),
            xt.send_presence_id(frank, srv.jid('nobody'), 'error', extra=err),
            xt.send_presence_id(frank, srv.host, 'error', extra=err),
            xt.send_presence_id(frank, 'bad@@address', 'error', extra=err)]
    await frank.iq('get', srv.host, "<query xmlns='urn:xmppd:test:sync'/>")
    await alice.iq('get', srv.host, "<query xmlns='urn:xmppd:test:sync'/>")
    xt.is_(await with_id([alice2, bob], sid_own), [False, False],
           'alice\'s presence error without \'to\' reaches neither her other resource nor her contact')
    xt.is_(xt.error_summary(await xt.error_for(alice, sid_own, 'presence', timeout=0.3)), None,
           'and it does not come back to alice\'s own session either')
    xt.is_(await with_id([alice, alice2], sids[0], timeout=0.3), [False, False],
           'a presence error to an unbound resource reaches none of alice\'s resources')
    xt.is_([xt.error_summary(await xt.error_for(frank, i, 'presence', timeout=0.3))
            for i in [sid, sid_bare] + sids], [None] * 6,
           'none of the six presence errors is answered with an error')

    # Presence to a bad address is answered with the presence error that
    # says why (RFC 6120 8.3): jid-malformed for an address that is not a
    # JID (8.3.3.8), from the server; remote-server-not-found for a domain
    # that cannot be reached (8.3.3.16), from the address. Presence with
    # no type, unavailable or subscription presence to an account that
    # does not exist is silently ignored (RFC 6121 8.5.1: MUST).
    sid = xt.send_presence_id(frank, 'bad@@address')
    p = await xt.error_for(frank, sid, 'presence')
    xt.is_(xt.error_summary(p), ('error', 'jid-malformed', ''),
           'presence to a malformed address: jid-malformed')
    sid = xt.send_presence_id(frank, 'someone@nowhere.test')
    p = await xt.error_for(frank, sid, 'presence', timeout=15)
    xt.is_(xt.error_summary(p), ('error', 'remote-server-not-found', 'someone@nowhere.test'),
           'presence to an unreachable domain: remote-server-not-found from that address')
    nobody = srv.jid('nobody')
    sids = [xt.send_presence_id(frank, nobody, t) for t in (None, 'unavailable', 'subscribe')]
    await frank.iq('get', srv.host, "<query xmlns='urn:xmppd:test:sync'/>")
    p = await frank.presences.get(lambda p: p['id'] in sids or p['from'].bare == nobody, 0.5)
    xt.is_(p and (p['id'], p['type'], str(p['from'])), None,
           'available, unavailable and subscribe presence to a nonexistent account are not answered')
    await xt.disconnect_all(alice, alice2)

    await xt.disconnect_all(bob, carol, dave, frank)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
