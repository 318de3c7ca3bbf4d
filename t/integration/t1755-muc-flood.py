#!/usr/bin/python3
"""t1755-muc-flood: a flood in one room does not slow the others. Three
occupants of 'busy' send 1,500 groupchat messages each as fast as their
connections take them; the per-session message rate (message_rate,
message_burst) refuses what is past it with resource-constraint, and the
other occupants of 'busy' get only what it let through. Meanwhile
messages in four other rooms (the rooms are spread over the workers by
their JIDs, so some share a worker with 'busy') arrive promptly."""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from xt_muc import SVC, cond_of, join, groupchat, gc_msg, create  # noqa: E402

FLOOD = 1500
RATE, BURST = 10, 30
QUIET = ('q1', 'q2', 'q3', 'q4')


async def main():
    srv = xt.Server(workers=2, modules={
        'mod_disco': {}, 'mod_roster': {},
        'mod_muc': {'message_rate': RATE, 'message_burst': BURST}})
    users = ('f1', 'f2', 'f3', 'r1', 'r2', 'qa', 'qb')
    for u in users:
        srv.register(u, u + '-pw')
    c = {u: await xt.login_ok(srv, u, resource='r') for u in users}
    flooders = [c['f1'], c['f2'], c['f3']]

    await create(c['r1'], 'busy', 'r1')
    for u in ('f1', 'f2', 'f3', 'r2'):
        await join(c[u], 'busy', u)
    for q in QUIET:
        await create(c['qa'], q, 'qa')
        await join(c['qb'], q, 'qb')

    # A baseline round in the quiet rooms.
    t0 = time.monotonic()
    for q in QUIET:
        groupchat(c['qa'], q, 'before %s' % q)
    got = [await gc_msg(c['qb'], q, 'qa', 'before %s' % q, timeout=5) for q in QUIET]
    base = time.monotonic() - t0
    xt.ok(None not in got, 'the quiet rooms work before the flood (%.0f ms)' % (base * 1000))

    # The flood: every flooder's stanzas written at once.
    start = time.monotonic()
    for i in range(FLOOD):
        for n, f in enumerate(flooders):
            groupchat(f, 'busy', 'flood %d %d' % (n, i))
    await asyncio.sleep(0.2)
    # While the server works through it, the quiet rooms talk.
    t0 = time.monotonic()
    for q in QUIET:
        groupchat(c['qa'], q, 'during %s' % q)
    got = [await gc_msg(c['qb'], q, 'qa', 'during %s' % q, timeout=10) for q in QUIET]
    during = time.monotonic() - t0
    xt.diag('the quiet rooms: %.0f ms before the flood, %.0f ms during it'
            % (base * 1000, during * 1000))
    xt.ok(None not in got and during < 2.0,
          'during the flood each quiet room\'s message arrives within 2 s (%.0f ms)'
          % (during * 1000))

    # What the flooders were told, and what the room passed on.
    refused = 0
    while await c['f1'].message(lambda m: m['type'] == 'error' and
                                cond_of(m) == 'resource-constraint', timeout=2):
        refused += 1
    elapsed = time.monotonic() - start
    allowed = BURST + RATE * elapsed
    xt.ok(refused >= FLOOD - allowed,
          'a flooder is refused with resource-constraint past its rate (%d of %d, at most '
          '%.0f let through)' % (refused, FLOOD, allowed))
    seen = 0
    while await c['r2'].message(lambda m: m['type'] == 'groupchat' and
                                (m['body'] or '').startswith('flood '), timeout=1):
        seen += 1
    xt.ok(0 < seen <= 3 * allowed,
          'the other occupants get only what the rate let through (%d of %d sent, '
          'at most %.0f)' % (seen, 3 * FLOOD, 3 * allowed))

    # The flooded room still works once the buckets refill.
    await asyncio.sleep(BURST / RATE + 0.5)
    groupchat(c['f2'], 'busy', 'calm again')
    m = await gc_msg(c['r1'], 'busy', 'f2', 'calm again', timeout=5)
    xt.ok(m is not None, 'after the flood, a flooder may speak again')

    await xt.disconnect_all(*c.values())
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=120)
