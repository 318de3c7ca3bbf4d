#!/usr/bin/python3
"""t1050-s2s-dead-peer: keepalive on server-to-server streams
(doc/federation.md, "Life cycle"; s2s_keepalive, s2s_keepalive_timeout).

After s2s_keepalive seconds of silence a stream gets a whitespace ping
(RFC 6120 4.6.1); a ping that the peer's TCP has not acknowledged
s2s_keepalive_timeout later means the peer is gone, and the stream is
dropped. Two xmppd, a.test and b.test, with s2s_keepalive 1 and
s2s_keepalive_timeout 2, in a network namespace of the test's own:

- b's process is stopped (SIGSTOP) for longer than both timers: its
  kernel still acknowledges, so the peer is alive and the link is kept;
  a message sent meanwhile arrives on that same link after SIGCONT;
- the loopback interface goes down: every packet is dropped, nobody sends
  a FIN or a reset (a peer that vanished, or a cable cut). Both servers
  drop their stream within the bound, and once the network is back a new
  link carries the next message.
"""

import asyncio
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

KEEPALIVE, KEEPALIVE_TIMEOUT = 1, 2
# A ping goes out at most KEEPALIVE plus a tick (half the shortest timer)
# after the network went; it is declared lost KEEPALIVE_TIMEOUT later,
# at the next tick. Then a margin for a loaded machine.
BOUND = KEEPALIVE + KEEPALIVE_TIMEOUT + 1 + 4


def out_link(links):
    return xt.s2s_link(links, 'out', 'a.test', 'b.test')


async def main():
    xt.private_namespaces()
    d = xt.scratch_dir('t1050-certs')
    xt.make_ca(d, 'ca')
    a, b = xt.federated_pair(d, 'ca', 't1050', conf={
        's2s_keepalive': KEEPALIVE, 's2s_keepalive_timeout': KEEPALIVE_TIMEOUT})
    a.register('alice', 'alice-pw')
    b.register('bob', 'bob-pw')
    alice = await xt.login_ok(a, 'alice', resource='r')
    bob = await xt.login_ok(b, 'bob', resource='r')

    for i in range(3):
        alice.send('bob@b.test', 'hello %d' % i)
    got = [await bob.message(body='hello %d' % i, timeout=10) for i in range(3)]
    xt.ok(all(got), 'alice -> bob: three messages arrive')
    la = await xt.wait_links(a, out_link)
    lb = await xt.wait_links(b, lambda l: xt.s2s_link(l, 'in', 'b.test', 'a.test'))
    before = out_link(la)
    old_in = xt.s2s_link(lb, 'in', 'b.test', 'a.test')
    xt.is_(before and before['out'], '3', 'a\'s link a.test -> b.test carried them')

    # 1. A stopped process whose kernel still acknowledges is not dead.
    b.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        missing = []
        sent = False
        while time.monotonic() - t0 < KEEPALIVE + KEEPALIVE_TIMEOUT + 2.5:
            if not sent and time.monotonic() - t0 > 1:
                alice.send('bob@b.test', 'while b is stopped')
                sent = True
            links = await asyncio.get_running_loop().run_in_executor(None, xt.s2s_links, a)
            if not out_link(links):
                missing.append(round(time.monotonic() - t0, 1))
            await asyncio.sleep(0.3)
    finally:
        b.signal(signal.SIGCONT)
    xt.is_(missing, [], 'b stopped for %d s: a keeps its link (the pings are acknowledged)'
           % (KEEPALIVE + KEEPALIVE_TIMEOUT + 2))
    m = await bob.message(body='while b is stopped', timeout=10)
    la = await xt.wait_links(a, out_link)
    xt.ok(m is not None and (out_link(la) or {}).get('out') == '4',
          'after SIGCONT the message sent meanwhile arrives, on the same link') \
        or xt.diag(m, la)

    # 2. The network goes silent: no FIN, no reset, no acknowledgement.
    xt.set_link_up('lo', False)
    try:
        t0 = time.monotonic()
        gone_a = gone_b = None
        while time.monotonic() - t0 < BOUND + 2 and (gone_a is None or gone_b is None):
            la = await asyncio.get_running_loop().run_in_executor(None, xt.s2s_links, a)
            lb = await asyncio.get_running_loop().run_in_executor(None, xt.s2s_links, b)
            now = time.monotonic() - t0
            if gone_a is None and la is not None and not xt.s2s_link(la, 'out', 'a.test',
                                                                     'b.test', None):
                gone_a = now
            if gone_b is None and lb is not None and not [
                    l for l in lb if l['dir'] == 'in' and l['addr'] == old_in['addr']]:
                gone_b = now
            await asyncio.sleep(0.2)
    finally:
        xt.set_link_up('lo', True)
    xt.ok(gone_a is not None and KEEPALIVE_TIMEOUT - 0.5 <= gone_a <= BOUND,
          'a drops its link to the silent peer within %d s (after %s s)'
          % (BOUND, gone_a and '%.1f' % gone_a))
    xt.ok(gone_b is not None and KEEPALIVE_TIMEOUT - 0.5 <= gone_b <= BOUND,
          'b drops the stream from it within %d s (after %s s)'
          % (BOUND, gone_b and '%.1f' % gone_b))

    # The network is back: the next message makes a new link.
    alice.send('bob@b.test', 'after the outage')
    m = await bob.message(body='after the outage', timeout=10)
    lb = await xt.wait_links(b, lambda l: xt.s2s_link(l, 'in', 'b.test', 'a.test'))
    new_in = xt.s2s_link(lb, 'in', 'b.test', 'a.test')
    xt.ok(m is not None and new_in is not None and new_in['addr'] != old_in['addr'],
          'then the next message arrives over a new link (from %s, not %s)'
          % (new_in and new_in['addr'], old_in['addr']))

    await xt.disconnect_all(alice, bob)
    xt.is_(a.stop(), 0, 'a exits 0')
    xt.is_(b.stop(), 0, 'b exits 0')


xt.run(main, timeout=60)
