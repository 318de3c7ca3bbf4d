#!/usr/bin/python3
"""t0145-auth-failures: what slows down password guessing.

A failed authentication is answered only after auth_failure_delay_ms,
without holding up anyone else; after max_auth_attempts failures on one
stream the stream is closed with <policy-violation/> (RFC 6120 6.4.5:
"a configurable but reasonable number of retries", then a stream error
that SHOULD be <policy-violation/>), while a right password before that
still logs in (doc/admin.md, "A failed authentication").

The server runs one worker here, so the other clients share the worker of
the stream that is kept waiting: a delay that blocked the worker instead of
setting a timer would hold them up too."""

import asyncio
import base64
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

DELAY = 1.5           # auth_failure_delay_ms / 1000
ATTEMPTS = 3          # max_auth_attempts
ANSWER = r'<success\b|<failure\b.*?(?:/>|</failure>)|</(?:[\w.-]+:)?error>'


async def encrypted(srv):
    """A raw stream after STARTTLS, at the SASL features."""
    r = await xt.Raw.open(srv)
    if await r.open_stream() is None or not await r.starttls() or await r.open_stream() is None:
        raise xt.HarnessError('raw: no SASL features: %r' % r.text[-500:])
    return r


async def plain(r, user, password, timeout=DELAY + 5):
    """One SASL PLAIN attempt. Returns (answer, seconds from sending the
    <auth/> to the answer): answer is 'success', the failure condition,
    or None if nothing came."""
    r.set_mark()
    token = base64.b64encode(('\0%s\0%s' % (user, password)).encode()).decode()
    t = time.monotonic()
    await r.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (xt.NS_SASL, token))
    m = await r.read_until(ANSWER, timeout)
    took = time.monotonic() - t
    if not m:
        return None, took
    if m.group(0).startswith('<success'):
        return 'success', took
    return xt.sasl_failure(r.since_mark()), took


async def meanwhile(srv, alice, carol):
    """What other clients do while a failure is delayed: a message each
    way between two sessions, and a new connection's stream features.
    Returns the seconds it took (None if something did not happen)."""
    t = time.monotonic()
    if not await xt.roundtrip(alice, carol, timeout=5) or not await xt.roundtrip(carol, alice, timeout=5):
        return None
    r = await xt.Raw.open(srv)
    feat = await r.open_stream(timeout=5)
    r.close()
    return time.monotonic() - t if feat is not None else None


async def main():
    srv = xt.Server(workers=1, conf={'auth_failure_delay_ms': int(DELAY * 1000),
                                     'max_auth_attempts': ATTEMPTS})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw')
    carol = await xt.login_ok(srv, 'carol', 'carol-pw')

    # The delay: the <failure/> comes no sooner than auth_failure_delay_ms
    # after the <auth/>; the others go on meanwhile (started a moment
    # after the <auth/>, so that the failing stream is already waiting).
    mal = await encrypted(srv)

    async def others():
        await asyncio.sleep(0.1)
        return await meanwhile(srv, alice, carol)

    (answer, took), others_took = await asyncio.gather(plain(mal, 'bob', 'wrong'), others())
    xt.is_(answer, 'not-authorized', 'a wrong password: <failure><not-authorized/></failure>')
    xt.ok(took >= DELAY - 0.05,
          'the failure came no sooner than %.1f s after the <auth/> (%.2f s)' % (DELAY, took))
    xt.ok(others_took is not None and others_took < DELAY / 2,
          'meanwhile two other sessions exchanged messages and a new stream got its features, '
          'in less than %.2f s (%s s)' % (DELAY / 2, others_took and round(others_took, 2)))
    xt.ok(others_took is not None and 0.1 + others_took < took,
          'all of that before the delayed failure came')
    mal.close()

    # The limit, on one stream: the first ATTEMPTS-1 failures leave the
    # stream open for a retry; the last is followed by <policy-violation/>
    # and the close; the right password sent afterwards gets nowhere.
    # And on another stream, started at the same time, the right password
    # after ATTEMPTS-1 failures logs in.
    async def too_many():
        r = await encrypted(srv)
        answers = []
        for i in range(ATTEMPTS):
            answers.append((await plain(r, 'bob', 'wrong-%d' % i))[0])
            if i < ATTEMPTS - 1:
                answers.append(xt.stream_error(r.since_mark()))
        closed = await r.read_until_close(5)
        error = xt.stream_error(r.since_mark())
        r.set_mark()
        late = None
        if await r.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (
                xt.NS_SASL, base64.b64encode(b'\0bob\0bob-pw').decode())):
            late = await r.read_until(ANSWER, DELAY + 3)
        r.close()
        return answers, error, closed, late

    async def right_before_limit():
        r = await encrypted(srv)
        answers = [(await plain(r, 'bob', 'wrong-%d' % i))[0] for i in range(ATTEMPTS - 1)]
        answers.append((await plain(r, 'bob', 'bob-pw'))[0])
        jid = None
        if answers[-1] == 'success' and await r.open_stream() is not None:
            jid = await r.bind('retry')
        r.close()
        return answers, jid

    (answers, error, closed, late), (answers2, jid) = await asyncio.gather(
        too_many(), right_before_limit())
    expect = []
    for i in range(ATTEMPTS - 1):
        expect += ['not-authorized', None]
    xt.is_(answers, expect + ['not-authorized'],
           '%d wrong passwords on one stream: %d failures, no stream error before the last'
           % (ATTEMPTS, ATTEMPTS))
    xt.is_(error, 'policy-violation',
           'failure %d is followed by the stream error <policy-violation/>' % ATTEMPTS)
    xt.ok(closed, 'and the server closes the stream')
    xt.ok(late is None or not late.group(0).startswith('<success'),
          'the right password sent after that does not log in')
    xt.is_(answers2, ['not-authorized'] * (ATTEMPTS - 1) + ['success'],
           '%d wrong passwords, then the right one on the same stream: <success/>' % (ATTEMPTS - 1))
    xt.is_(jid, srv.jid('bob', 'retry'), 'and that stream binds bob@.../retry')

    await xt.disconnect_all(alice, carol)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
