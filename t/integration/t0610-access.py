#!/usr/bin/python3
"""t0610-access: acl / access_rules decide who may log in (c2s_access), and a
listener's shaper limits how fast a client's bytes are read."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

ACCESS = """acl:
  banned:
    user: ["mallory@xmppd.test"]
  staff:
    user_regexp: "^staff-"
access_rules:
  c2s:
    - deny: banned
    - allow: all
  staff_only:
    - allow: staff
shaper:
  slow: {rate: 4000, burst_size: 2000}
c2s_access: c2s
"""


BODY = 'x' * 12000


async def shaped_both_ways(shaped, other, what):
    """A 12 kB message from the shaped client takes seconds to be read (the
    shaper: 4000 bytes/s, burst 2000: about 2.8 s); one from the other
    client does not."""
    t0 = time.monotonic()
    shaped.send(other.jid, BODY)
    m = await other.message(body=BODY, timeout=20)
    took = time.monotonic() - t0
    xt.ok(m is not None, 'the large message from the shaped %s client arrives' % what)
    xt.ok(took >= 1.5, 'reading it was held to the shaper rate (%.1f s for 12 kB)' % took)
    t0 = time.monotonic()
    other.send(shaped.jid, BODY)
    m = await shaped.message(body=BODY, timeout=10)
    took = time.monotonic() - t0
    xt.ok(m is not None and took < 1.0,
          'the unshaped listener is not slowed (%.2f s for 12 kB)' % took)


async def main():
    srv = xt.Server(extra_conf=ACCESS, c2s={'shaper': 'slow'})
    for u in ('alice', 'bob', 'mallory'):
        srv.register(u, u + '-pw')

    c = await xt.login(srv, 'mallory')
    xt.ok(not c.ok, 'a user the c2s rule denies cannot log in')
    xt.is_(c.auth_failure, 'not-authorized', 'and gets a SASL <not-authorized/>') or \
        xt.diag(c.describe())
    xt.like(srv.log(), r'mallory@xmppd\.test is not allowed to log in \(c2s_access\)',
            'the log says which rule refused it')
    await c.disconnect()

    alice = await xt.login(srv, 'alice')
    bob = await xt.login(srv, 'bob', direct_tls=True)
    xt.ok(alice.ok and bob.ok, 'users the rule allows log in') or \
        xt.diag(alice.describe(), bob.describe())

    # The STARTTLS listener is shaped: alice is held to the rate, bob
    # (direct TLS, not shaped) is not.
    await shaped_both_ways(alice, bob, 'STARTTLS')

    await xt.disconnect_all(alice, bob)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')

    # The same shaper on the direct TLS listener (XEP-0368): carol's bytes
    # are held to the rate, dave (STARTTLS, unshaped) is not.
    srv2 = xt.Server(name='t0610-direct', extra_conf=ACCESS,
                     tls_listener={'shaper': 'slow'})
    for u in ('carol', 'dave'):
        srv2.register(u, u + '-pw')
    carol = await xt.login(srv2, 'carol', direct_tls=True)
    dave = await xt.login(srv2, 'dave')
    xt.ok(carol.ok and dave.ok, 'both log in, one on the shaped direct TLS listener') or \
        xt.diag(carol.describe(), dave.describe())
    await shaped_both_ways(carol, dave, 'direct TLS')
    await xt.disconnect_all(carol, dave)
    xt.is_(srv2.stop(), 0, 'the second xmppd exits 0 on SIGTERM')


xt.run(main)
