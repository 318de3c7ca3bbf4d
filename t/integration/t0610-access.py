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
  slow: {rate: 2000, burst_size: 2000}
c2s_access: c2s
"""


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

    # The STARTTLS listener is shaped to 2000 bytes/s (burst 2000): a 12 kB
    # message from alice takes seconds to be read; bob (direct TLS, not
    # shaped) is not slowed down.
    body = 'x' * 12000
    t0 = time.monotonic()
    alice.send(bob.jid, body)
    m = await bob.message(body=body, timeout=20)
    took = time.monotonic() - t0
    xt.ok(m is not None, 'the large message from the shaped client arrives')
    xt.ok(took >= 3.0, 'reading it was held to the shaper rate (%.1f s for 12 kB)' % took)
    t0 = time.monotonic()
    bob.send(alice.jid, body)
    m = await alice.message(body=body, timeout=10)
    took = time.monotonic() - t0
    xt.ok(m is not None and took < 2.0,
          'the unshaped listener is not slowed (%.2f s for 12 kB)' % took)

    await xt.disconnect_all(alice, bob)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
