#!/usr/bin/python3
"""t0110-bind: resource binding (RFC 6120 7) and the legacy session IQ."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402


async def main():
    srv = xt.Server()
    srv.register('alice', 'alice-pw')
    srv.register('bob', 'bob-pw')

    # No resource requested: the server makes one (RFC 6120 7.6.1).
    c1 = await xt.login(srv, 'alice', 'alice-pw')
    c2 = await xt.login(srv, 'alice', 'alice-pw')
    xt.ok(c1.ok and c2.ok, 'two logins without a resource') or xt.diag(c1.describe(), c2.describe())
    r1 = c1.jid.resource if c1.jid else ''
    r2 = c2.jid.resource if c2.jid else ''
    xt.ok(r1 != '', 'server-generated resource is not empty (%r)' % r1)
    xt.is_(c1.jid.bare if c1.jid else None, srv.jid('alice'), 'bound JID has the account bare JID')
    xt.ok(r1 != r2, 'two generated resources differ (%r, %r)' % (r1, r2))
    sessions = await srv.wait_connected(
        lambda s: xt.session_of(s, c1.jid) and xt.session_of(s, c2.jid))
    xt.ok(xt.session_of(sessions, c1.jid) and xt.session_of(sessions, c2.jid),
          'xmppctl connected lists both generated full JIDs') or xt.diag(sessions)
    await xt.disconnect_all(c1, c2)

    # A requested resource is honoured.
    home = await xt.login(srv, 'alice', 'alice-pw', resource='home')
    xt.is_(str(home.jid) if home.jid else None, srv.jid('alice', 'home'),
           'requested resource "home" is bound as asked')

    # Same full JID again: the old session gets <conflict/> and is closed,
    # the new one works (RFC 6120 7.7.2.2, the "override" policy).
    home2 = await xt.login(srv, 'alice', 'alice-pw', resource='home')
    xt.ok(home2.ok, 'second login with the same full JID succeeds') or xt.diag(home2.describe())
    xt.is_(str(home2.jid) if home2.jid else None, srv.jid('alice', 'home'),
           'second login is bound to alice@xmppd.test/home')
    xt.ok(await home.wait_closed(5), 'first session is closed')
    xt.is_(home.stream_error, 'conflict', 'first session received <conflict/> stream error')

    bob = await xt.login_ok(srv, 'bob', 'bob-pw')
    xt.ok(await xt.roundtrip(bob, home2), 'the new session receives messages to alice@xmppd.test/home')
    sessions = await srv.aconnected()
    homes = [s for s in sessions or () if s['jid'] == srv.jid('alice', 'home')]
    xt.is_(len(homes), 1, 'xmppctl connected lists alice@xmppd.test/home once')

    # Legacy session establishment (RFC 3921 3, draft-cridland-xmpp-session):
    # answered with a result.
    r = await bob.iq('set', None, "<session xmlns='%s'/>" % xt.NS_SESSION)
    xt.ok(r is not None, 'session IQ answered')
    xt.is_(r['type'] if r is not None else None, 'result', 'session IQ answered with type=result')

    await xt.disconnect_all(home, home2, bob)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
