#!/usr/bin/python3
"""t0300-many: 500 concurrent sessions, each receiving one message."""

import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

N = int(os.environ.get('T0300_SESSIONS', '500'))
LOGIN_PARALLEL = 40


async def main():
    srv = xt.Server(workers=2, conf={'max_connections_per_ip': N + 100})

    t0 = time.monotonic()
    users = ['u%03d' % i for i in range(N)]
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(8) as pool:
        results = await asyncio.gather(*(
            loop.run_in_executor(pool, srv.ctl, 'register', u, srv.host, u + '-pw')
            for u in users + ['sender']))
    bad = [(u, r) for u, r in zip(users + ['sender'], results) if r[0] != 0]
    xt.ok(not bad, 'xmppctl register created %d accounts' % (N + 1)) or xt.diag(bad[:5])
    code, out, err = await srv.actl('users', srv.host)
    listed = set(out.split())
    xt.is_(len(listed & {srv.jid(u) for u in users}), N, 'xmppctl users lists all %d' % N)
    xt.diag('registration: %.1f s' % (time.monotonic() - t0))

    t0 = time.monotonic()
    sem = asyncio.Semaphore(LOGIN_PARALLEL)

    async def one(u):
        async with sem:
            # PLAIN: the client-side PBKDF2 of SCRAM in Python would cost
            # more than the server under test; SASL has its own test.
            return await xt.login(srv, u, u + '-pw', resource='r', mech='PLAIN', timeout=30)

    clients = await asyncio.gather(*(one(u) for u in users))
    good = [c for c in clients if c.ok]
    xt.is_(len(good), N, '%d sessions logged in concurrently' % N) or \
        xt.diag('\n'.join(c.describe() for c in clients if not c.ok)[:3000])
    xt.diag('logins: %.1f s' % (time.monotonic() - t0))

    sender = await xt.login_ok(srv, 'sender', 'sender-pw', resource='s')
    sessions = await srv.wait_connected(lambda s: len(s) >= N + 1, timeout=10)
    xt.is_(len(sessions or []), N + 1, 'xmppctl connected lists %d sessions' % (N + 1))
    workers = {s['worker'] for s in sessions or []}
    xt.ok(len(workers) == 2, 'sessions are spread over both workers (%s)' % sorted(workers))

    # One message each, to full and bare JIDs alternately.
    t0 = time.monotonic()
    for i, c in enumerate(clients):
        to = c.jid if i % 2 == 0 and c.jid else srv.jid(c.requested.split('@')[0])
        sender.send(to, 'for %s' % c.requested)
    got = await asyncio.gather(*(c.message(body='for %s' % c.requested, timeout=30)
                                 for c in clients))
    received = [m for m in got if m is not None]
    xt.is_(len(received), N, 'each of the %d sessions received its message' % N)
    xt.ok(all(str(m['from']) == str(sender.jid) for m in received),
          'every message carries the sender\'s full JID')
    stray = sum(len(c.messages.items) for c in clients)
    xt.is_(stray, 0, 'no session received anything else')
    xt.diag('delivery: %.1f s' % (time.monotonic() - t0))

    # Shutting down with every session open: each one is told (RFC 6120 4.9.3.19).
    t0 = time.monotonic()
    code = await srv.astop(timeout=15)
    xt.is_(code, 0, 'xmppd exits 0 on SIGTERM with %d sessions open' % (N + 1))
    await asyncio.gather(*(c.wait_closed(5) for c in good))
    shut = sum(1 for c in good if c.stream_error == 'system-shutdown')
    xt.is_(shut, len(good), 'every session received <system-shutdown/>')
    xt.diag('shutdown: %.1f s' % (time.monotonic() - t0))
    for c in clients + [sender]:
        c.abort()


xt.run(main, timeout=170)
