#!/usr/bin/python3
"""t0230-slow-reader: a client that stops reading while megabytes are sent
to it gets every stanza intact and in order once it reads again.

xmppd writes a client's output with SSL_write while the socket takes it,
and keeps the rest until the socket is writable again (a TLS record may
then be half written: OpenSSL requires the retry to present the same
bytes, stream/conn.c). This drives that retry many times over, then checks the
stream is still sound both ways; and that a reader slower than
max_send_queue is cut off with <resource-constraint/>."""

import asyncio
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

N = 160
SIZE = 60000
BODY = re.compile(r'<body>(m\d{3})-(x*)</body>')


async def slow_raw(srv, user, password):
    """A raw client whose reading can be held back: asyncio stops reading
    the socket once 64 KiB wait unread, and nothing is read until asked.
    (Shrinking SO_RCVBUF instead stalls loopback TCP for good: the window
    never again reaches the 64 KiB MSS.)"""
    r = await xt.Raw.open(srv)
    jid = await r.login(user, password, 'slow')
    r.reader._limit = 32768          # asyncio stops reading past 2 x this
    return r, jid


async def read_bodies(r, n, timeout):
    """Reads until n message bodies have come (counted as they arrive, not
    by searching everything read so far each time); returns the text."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    count, scanned = 0, r.mark
    while count < n:
        left = deadline - loop.time()
        if left <= 0 or r.closed:
            break
        if await r._read_some(left) is None:
            break
        # A '</body>' (7 bytes) not complete at the last scan starts at
        # most 6 bytes before where it ended.
        count += r.data.count(b'</body>', max(r.mark, scanned - 6))
        scanned = len(r.data)
    return r.since_mark()


async def wait_log(srv, pattern, timeout):
    """Waits until a line of srv's log matches pattern (read as it grows,
    not all again each time); True if one did within timeout."""
    rx = re.compile(pattern)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with open(srv.log_path, 'rb') as f:
        rest = b''
        while True:
            rest += f.read()
            lines = rest.split(b'\n')
            rest = lines.pop()
            if any(rx.search(l.decode('utf-8', 'replace')) for l in lines):
                return True
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)


async def main():
    srv = xt.Server(conf={'max_send_queue': 64 << 20})
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw')
    bob, bob_jid = await slow_raw(srv, 'bob', 'bob-pw')
    xt.ok(bob_jid is not None, 'bob logs in on a raw stream')

    # ~7 MB for bob while he does not read: more than the socket buffers
    # hold, so xmppd's writes block and go on when the socket drains.
    for i in range(N):
        alice.send(bob_jid, 'm%03d-' % i + 'x' * SIZE)
    deadline = asyncio.get_running_loop().time() + 20
    while 'socket full' not in srv.log() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    xt.like(srv.log(), r'socket full: \d+ bytes wait for it',
            'the socket filled up and the rest waited in the send queue')
    await asyncio.sleep(1)

    # Now bob reads everything.
    bob.reader._limit = 1 << 22
    bob.set_mark()
    text = await read_bodies(bob, N, timeout=60)
    got = BODY.findall(text)
    xt.is_(got[-1][0] if got else None, 'm%03d' % (N - 1), 'bob, reading again, gets the last message')
    xt.is_([g[0] for g in got], ['m%03d' % i for i in range(N)],
           'all %d messages, in order' % N)
    xt.ok(all(len(g[1]) == SIZE for g in got), 'every body intact (%d bytes each)' % SIZE)
    xt.unlike(text, r'<stream:error>', 'no stream error')

    # The stream is still sound both ways.
    await bob.send("<message to='%s' type='chat'><body>still here</body></message>" % alice.jid)
    m = await alice.message(body='still here')
    xt.ok(m is not None, 'bob\'s message afterwards reaches alice')
    alice.send(bob_jid, 'and back')
    bob.set_mark()
    xt.ok(await bob.read_until(r'<body>and back</body>') is not None,
          'and alice\'s reaches bob')
    bob.close()
    await alice.disconnect()
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')

    # A reader slower than max_send_queue (64 KiB more than the socket
    # holds) is cut off; the server goes on serving others. (Carol may be
    # cut off too: what she sent to dave after he was gone comes back to
    # her as errors carrying the 60 kB bodies, and she reads nothing.)
    # Carol is a raw stream that writes all her messages at once, so that
    # this process stays free to let dave read again in time (below).
    srv2 = xt.Server(name='t0230-cutoff', conf={'max_send_queue': 64 << 10},
                     c2s={'max_stanza_size': 65536},
                     tls_listener={'max_stanza_size': 65536})
    for u in ('carol', 'dave', 'erin', 'frank'):
        srv2.register(u, u + '-pw')
    carol = await xt.Raw.open(srv2)
    await carol.login('carol', 'carol-pw', 'flood')
    dave, dave_jid = await slow_raw(srv2, 'dave', 'dave-pw')
    tag = re.search(r'(c2s#[0-9.]+): bound %s' % re.escape(dave_jid), srv2.log())
    if tag is None:
        raise xt.HarnessError('no "bound %s" line in the log' % dave_jid)
    carol.writer.write(''.join("<message to='%s' type='chat'><body>m%03d-%s</body></message>"
                               % (dave_jid, i, 'x' * SIZE) for i in range(N)).encode())
    # What the server queued for dave, the stream error last, reaches him
    # only if he reads it within the lingering close (net/linger.h, 2 s),
    # and `xmppctl connected` may answer later than that while the server
    # is busy with the flood: so the log line of his cut-off (his
    # connection's) says when to read again; what counts is what he reads.
    if not await wait_log(srv2, r'%s: stream error <resource-constraint/>' % re.escape(tag.group(1)),
                          timeout=30):
        xt.diag('no cut-off of %s in the log within 30 s' % tag.group(1))
    dave.reader._limit = 1 << 22
    dave.set_mark()
    closed = await dave.read_until_close(30)
    tail = dave.since_mark()[-600:]
    xt.ok(closed, 'dave\'s stream is closed by the server')
    xt.is_(xt.stream_error(tail), 'resource-constraint',
           'dave\'s stream ends with <stream:error><resource-constraint/>') or xt.diag(tail)
    xt.like(tail, r'</stream:error></stream:stream>$', 'and then </stream:stream>, nothing after it')
    gone = lambda s: not any(x['jid'].startswith(srv2.jid('dave')) for x in s)  # noqa: E731
    sessions = await srv2.wait_connected(gone, timeout=20)
    xt.ok(sessions is not None and gone(sessions), 'dave\'s session is gone')
    erin = await xt.login_ok(srv2, 'erin', 'erin-pw')
    frank = await xt.login_ok(srv2, 'frank', 'frank-pw')
    erin.send(frank.jid, 'business as usual')
    m = await frank.message(body='business as usual')
    xt.ok(m is not None, 'others log in and chat afterwards')
    dave.close()
    carol.close()
    await xt.disconnect_all(erin, frank)
    xt.is_(srv2.stop(), 0, 'the second xmppd exits 0 on SIGTERM')


xt.run(main, timeout=170)
