#!/usr/bin/python3
"""t0150-starttls-whitespace: what may come between <proceed/> and TLS.

RFC 6120 5.4.2.3: after <proceed/> both sides speak TLS from the next byte.
5.3.3 forbids whitespace between <starttls/> and <proceed/>, but clients
send it (a Go client writes a newline after <starttls/>, then its
ClientHello): whitespace before the first TLS record is skipped, wherever
it falls (with <starttls/>, alone, or in front of the ClientHello), and the
handshake succeeds. Any other byte after <starttls/> is plain text that
would be read as if it had come through TLS (the STARTTLS command injection
class, CVE-2011-0411): it reaches neither TLS nor the new stream's parser,
and the connection is closed without a word (5.4.3.2: after <proceed/> the
plain stream is over, so no stream error; the client sees <proceed/> and
then end of file, not a TLS alert, not an answer to what it injected).

A TLS record sent with <starttls/>, without waiting for <proceed/>, is
handed to TLS from what was buffered; a broken one fails the handshake at
once, and xmppd goes on (it once freed the connection under its own feet
there).

The same on s2s, both ways: an incoming stream (a raw peer), and our own
outgoing stream towards a raw peer that writes whitespace after its
<proceed/>.

The TLS here runs over ssl.MemoryBIO (TLSPump), so that the test decides
which bytes share a write: whitespace and the ClientHello in one segment.
"""

import asyncio
import os
import re
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

STARTTLS = "<starttls xmlns='%s'/>" % xt.NS_TLS
PROCEED = r"<proceed xmlns=['\"]%s['\"]\s*/>" % re.escape(xt.NS_TLS)
FEATURES = r'</(?:[\w.-]+:)?features>|<(?:[\w.-]+:)?features\b[^>]*/>'
# Long enough for xmppd to have read what came before as a read of its own.
SEPARATE = 0.3
BROKEN = b'\x16\x03\x01\x00\x05hello'     # a handshake record, but not a message


class TLSPump:
    """TLS over a connection's asyncio streams through ssl.MemoryBIO: the
    records are the test's to write, with any plain bytes in front."""

    def __init__(self, reader, writer, ctx, server_side=False, hostname=None, pending=b''):
        self.r, self.w = reader, writer
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=server_side,
                                server_hostname=hostname)
        self.inc.write(pending)
        self.plain = b''
        self.eof = False

    def _step(self):
        try:
            self.obj.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False

    async def _write(self, data):
        if data:
            self.w.write(data)
            await self.w.drain()

    async def _read(self, timeout):
        chunk = await asyncio.wait_for(self.r.read(65536), timeout)
        if not chunk:
            self.eof = True
        self.inc.write(chunk)
        return chunk

    async def handshake(self, prefix=b'', timeout=5):
        """The handshake, prefix written in the same write as our first
        flight. None when done, else why not."""
        deadline = time.monotonic() + timeout
        try:
            done = self._step()
            await self._write(prefix + self.out.read())
            while not done:
                if not await self._read(deadline - time.monotonic()):
                    return 'end of file in the handshake'
                done = self._step()
                await self._write(self.out.read())
            return None
        except ssl.SSLError as e:
            return 'TLS error: %s' % (e.reason or e)
        except (asyncio.TimeoutError, ConnectionError, OSError) as e:
            return 'no handshake: %r' % e

    async def send(self, data):
        self.obj.write(data.encode() if isinstance(data, str) else data)
        await self._write(self.out.read())

    async def read_until(self, pattern, timeout=5):
        """Decrypted input until regex pattern matches; the match or None."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.S)
        while True:
            try:
                while True:
                    self.plain += self.obj.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
            except ssl.SSLError:
                return None
            await self._write(self.out.read())     # TLS 1.3 key updates and such
            m = rx.search(self.plain.decode('utf-8', 'replace'))
            if m or self.eof or time.monotonic() >= deadline:
                return m
            try:
                await self._read(deadline - time.monotonic())
            except (asyncio.TimeoutError, ConnectionError, OSError):
                return None


def after_proceed(raw):
    """The plain bytes the client received after <proceed/> (None if no
    <proceed/> came)."""
    m = re.search(PROCEED.encode(), raw.data)
    return raw.data[m.end():] if m else None


async def c2s_starttls(srv, port=None, with_starttls=b'', later=(), hello_early=False,
                       tls_prefix=b''):
    """A client opens a stream on port and writes <starttls/> followed by
    with_starttls in one write (and its ClientHello too if hello_early).
    After <proceed/> it writes each of later on its own, then its
    ClientHello, with tls_prefix in the same write. Returns (raw, pump,
    why the handshake failed or None); pump is None if it never got to
    the handshake."""
    raw = await xt.Raw.open(srv, port=port)
    if await raw.open_stream() is None:
        return raw, None, 'no stream features: %r' % raw.text[-300:]
    raw.set_mark()
    pump = TLSPump(raw.reader, raw.writer, srv.client_ssl_context(), hostname=srv.host)
    first = STARTTLS.encode() + with_starttls
    if hello_early:
        # The client does not wait for <proceed/>: its first flight goes
        # with <starttls/>.
        pump._step()
        first += pump.out.read()
    await raw.send(first)
    if not await raw.read_until(PROCEED, 5):
        return raw, None, 'no <proceed/>: %r' % raw.since_mark()[-300:]
    if hello_early:
        # The server's answer to the ClientHello may have come with it.
        pump.inc.write(after_proceed(raw))
    elif after_proceed(raw):
        return raw, None, 'plain bytes after <proceed/>: %r' % after_proceed(raw)
    for chunk in later:
        await asyncio.sleep(SEPARATE)
        await raw.send(chunk)
    await asyncio.sleep(SEPARATE if later else 0)
    if hello_early:
        # The rest of the handshake, read from where it stands.
        why = await pump.handshake(timeout=5)
    else:
        why = await pump.handshake(prefix=tls_prefix, timeout=5)
    return raw, pump, why


async def features_over_tls(srv, pump, header):
    """Opens the new stream over TLS (RFC 6120 5.4.3.3); the features it
    gets (text) or None."""
    await pump.send(header)
    m = await pump.read_until(FEATURES, 5)
    if not m:
        return None
    text = pump.plain.decode('utf-8', 'replace')
    return text[text.find('<stream:features'):]


async def check_handshake(srv, what, port=None, **kw):
    """A STARTTLS with whitespace that must succeed: the handshake, then
    the features of the stream over TLS offer SASL and no STARTTLS."""
    raw, pump, why = await c2s_starttls(srv, port=port, **kw)
    feat = None
    if pump is not None and why is None:
        feat = await features_over_tls(srv, pump, xt.stream_header(srv.host))
    xt.ok(why is None and feat is not None and 'PLAIN' in feat and 'starttls' not in feat,
          '%s: TLS handshake succeeds, SASL offered over TLS' % what) or \
        xt.diag('handshake: %s; features over TLS: %r; plain: %r' %
                (why, feat, raw.data[-300:]))
    raw.close()


async def refused(raw, what, injected):
    """Bytes after <starttls/> that are not TLS (injected: what goes with
    <starttls/>, then what goes on its own after <proceed/>): the peer gets
    <proceed/>, then end of file, nothing in between (no answer to what it
    injected, no stream error, no TLS alert), and an orderly end: not a
    reset, which would say that xmppd left what came unread."""
    raw.set_mark()
    same, later = injected
    await raw.send(STARTTLS.encode() + same)
    got = await raw.read_until(PROCEED, 5)
    for chunk in later:
        await asyncio.sleep(SEPARATE)
        await raw.send(chunk)
    closed = await raw.read_until_close(5)
    rest = after_proceed(raw)
    xt.ok(got is not None and closed and raw.close_reason == 'eof' and rest == b'',
          '%s: <proceed/>, then the connection is closed with nothing more' % what) or \
        xt.diag('proceed: %s, closed: %s (%s), after <proceed/>: %r' %
                (bool(got), closed, raw.close_reason, rest))
    raw.close()


async def check_refused(srv, what, injected):
    raw = await xt.Raw.open(srv)
    if await raw.open_stream() is None:
        xt.ok(False, what) or xt.diag('no stream features: %r' % raw.text[-300:])
        return
    await refused(raw, what, injected)


# ---------------------------------------------------------------------------
# s2s: a raw peer opening a stream to xmppd, and one xmppd opens a stream to
# ---------------------------------------------------------------------------

def s2s_header(frm, to, sid=None):
    """A jabber:server stream header; a receiving peer's carries an id
    (RFC 6120 4.7.3)."""
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            "xmlns:stream='http://etherx.jabber.org/streams' "
            "xmlns:db='jabber:server:dialback' %sfrom='%s' to='%s' version='1.0'>"
            % ("id='%s' " % sid if sid else '', frm, to))


def peer_features(domain):
    return s2s_header(domain, 's.test', sid='peer-' + domain) + \
        "<stream:features><starttls xmlns='%s'/></stream:features>" % xt.NS_TLS


async def s2s_in(srv, what, with_starttls=b'', later=()):
    """A raw peer (peer.test) opens a stream to xmppd's s2s port and does
    STARTTLS with whitespace: the handshake succeeds and the stream over
    TLS gets its features, without STARTTLS."""
    r, w = await asyncio.wait_for(asyncio.open_connection(srv.ip, srv.s2s_port), 5)
    raw = xt.Raw(srv, r, w, time.monotonic())
    await raw.send(s2s_header('peer.test', srv.host))
    feat = await raw.read_until(FEATURES, 5)
    ok_plain = feat is not None and 'starttls' in raw.text
    raw.set_mark()
    await raw.send(STARTTLS.encode() + with_starttls)
    got = await raw.read_until(PROCEED, 5)
    for chunk in later:
        await asyncio.sleep(SEPARATE)
        await raw.send(chunk)
    await asyncio.sleep(SEPARATE if later else 0)
    why, tfeat = 'no <proceed/>', None
    if ok_plain and got:
        pump = TLSPump(r, w, srv.client_ssl_context(), hostname=srv.host,
                       pending=after_proceed(raw))
        why = await pump.handshake(timeout=5)
        if why is None:
            tfeat = await features_over_tls(srv, pump, s2s_header('peer.test', srv.host))
    xt.ok(why is None and tfeat is not None and 'starttls' not in tfeat,
          's2s in, %s: TLS handshake succeeds, features over TLS' % what) or \
        xt.diag('features before TLS: %s; handshake: %s; over TLS: %r; plain: %r' %
                (ok_plain, why, tfeat, raw.data[-300:]))
    raw.close()


class Peer:
    """A raw s2s peer for xmppd's outgoing streams: it offers STARTTLS and
    answers <starttls/> as the scenario for the stream's 'to' domain says.
    results[domain] is what it saw."""

    def __init__(self, ip, ctx):
        self.ip, self.ctx = ip, ctx
        self.scenarios, self.results = {}, {}
        self.done = {}

    async def start(self):
        self.server = await asyncio.start_server(self.handle, self.ip, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle(self, r, w):
        raw = xt.Raw(None, r, w, time.monotonic())
        m = await raw.read_until(r"<stream:stream\b[^>]*\bto=['\"]([^'\"]+)['\"][^>]*>", 10)
        domain = m.group(1) if m else None
        if domain not in self.scenarios:
            self.results.setdefault('errors', []).append('a stream to %s' % domain)
            raw.close()
            return
        try:
            self.results[domain] = await self.scenarios[domain](raw, domain)
        except Exception as e:           # the result says what went wrong
            self.results[domain] = repr(e)
        finally:
            raw.close()
            self.done[domain].set()

    async def negotiate(self, raw, domain, proceed, between=(), prefix=b''):
        """Features with STARTTLS, then proceed (bytes) for <starttls/>; on
        xmppd's ClientHello, each of between on its own, then our server
        flight with prefix in the same write. Returns what xmppd sent over
        TLS (its new stream header) or why there was none."""
        raw.set_mark()
        await raw.send(peer_features(domain))
        if not await raw.read_until(r'<starttls\b[^>]*/>', 10):
            return 'no <starttls/>: %r' % raw.since_mark()[-300:]
        raw.set_mark()
        await raw.send(proceed)
        # xmppd's ClientHello.
        deadline = time.monotonic() + 5
        while len(raw.data) == raw.mark and not raw.closed and time.monotonic() < deadline:
            await raw._read_some(deadline - time.monotonic())
        hello = raw.data[raw.mark:]
        if not hello:
            return 'no ClientHello (closed: %s)' % raw.closed
        for chunk in between:
            await raw.send(chunk)
            await asyncio.sleep(SEPARATE)
        pump = TLSPump(raw.reader, raw.writer, self.ctx, server_side=True, pending=hello)
        why = await pump.handshake(prefix=prefix, timeout=5)
        if why is not None:
            return why
        m = await pump.read_until(r'<stream:stream\b[^>]*>', 5)
        return 'stream over TLS' if m else 'no stream header over TLS: %r' % pump.plain[-300:]

    async def refused(self, raw, domain, proceed, later=None):
        """What is not TLS, with proceed or (later) on its own after
        xmppd's ClientHello: xmppd must write nothing more (not even its
        ClientHello if the bytes came with <proceed/>) and close."""
        raw.set_mark()
        await raw.send(peer_features(domain))
        if not await raw.read_until(r'<starttls\b[^>]*/>', 10):
            return 'no <starttls/>: %r' % raw.since_mark()[-300:]
        raw.set_mark()
        await raw.send(proceed)
        if later is not None:
            if not await raw.read_until(r'^\x16', 5):
                return 'no ClientHello: %r' % raw.since_mark()[:100]
            await asyncio.sleep(SEPARATE)
            raw.set_mark()
            await raw.send(later)
        closed = await raw.read_until_close(5)
        rest = raw.data[raw.mark:]
        return 'closed, nothing more' if closed and rest == b'' else \
            'closed: %s, then: %r' % (closed, rest[:100])


async def s2s_out(peer, alice, domain, scenario, want, what):
    """alice writes to someone at domain: xmppd connects to the peer,
    which runs scenario; the peer's result must be want."""
    peer.scenarios[domain] = scenario
    peer.done[domain] = asyncio.Event()
    alice.send('someone@%s' % domain, 'hello %s' % domain)
    try:
        await asyncio.wait_for(peer.done[domain].wait(), 20)
    except asyncio.TimeoutError:
        pass
    got = peer.results.get(domain, 'xmppd did not connect (%s)' % peer.results.get('errors'))
    xt.is_(got, want, 's2s out, %s' % what)


async def main():
    d = xt.scratch_dir('t0150-certs')
    _, peer_pem = xt.make_certs(d, ['peer%d.test' % i for i in range(1, 6)])
    srv = xt.Server(hosts=['s.test'], start=False, extra_conf=
                    'shaper:\n  fast: {rate: 10000000, burst_size: 10000000}\n')
    srv.s2s_port, shaped_port = xt.free_ports(srv.ip, 2)
    srv.conf['listen'] += [
        {'port': srv.s2s_port, 'ip': srv.ip, 'module': 's2s'},
        # A shaped listener: the bucket limits what is read, so the
        # record after the whitespace may come in pieces.
        {'port': shaped_port, 'ip': srv.ip, 'module': 'c2s', 'starttls_required': True,
         'shaper': 'fast'}]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(peer_pem)
    peer = Peer(srv.ip, ctx)
    await peer.start()
    srv.conf['s2s_hosts'] = {'peer%d.test' % i: '%s:%d' % (srv.ip, peer.port)
                             for i in range(1, 6)}
    srv.conf['s2s_connect_timeout'] = 5
    srv.write_config()
    srv.start()
    srv.register('alice', 'alice-pw')

    # 1. c2s: whitespace after <starttls/> is skipped, the handshake
    # succeeds. First without any, as the yardstick.
    await check_handshake(srv, 'nothing after <starttls/>')
    # (a) In the same write as <starttls/>: a Go client's newline, and
    # every kind of XML whitespace (XML 1.0 2.3, S).
    await check_handshake(srv, '(a) a newline with <starttls/>', with_starttls=b'\n')
    await check_handshake(srv, '(a) " \\t\\r\\n" with <starttls/>', with_starttls=b' \t\r\n')
    # (b) In a write of its own after <proceed/>, before the ClientHello.
    await check_handshake(srv, '(b) a newline on its own after <proceed/>', later=[b'\n'])
    await check_handshake(srv, '(b) a newline with <starttls/>, another on its own',
                          with_starttls=b'\n', later=[b'\r\n'])
    # (c) In front of the ClientHello, in the same write.
    await check_handshake(srv, '(c) a newline in front of the ClientHello', tls_prefix=b'\n')
    # <starttls/>, a newline and the ClientHello in one write (the client
    # did not wait for <proceed/>): TLS reads the record from what was
    # buffered with <starttls/>, past the newline.
    await check_handshake(srv, 'a newline and the ClientHello with <starttls/>',
                          with_starttls=b'\n', hello_early=True)
    # The same on the shaped listener.
    await check_handshake(srv, 'shaped listener, (a) a newline with <starttls/>',
                          port=shaped_port, with_starttls=b'\n')
    await check_handshake(srv, 'shaped listener, (b) a newline on its own',
                          port=shaped_port, later=[b'\n'])
    await check_handshake(srv, 'shaped listener, (c) a newline in front of the ClientHello',
                          port=shaped_port, tls_prefix=b'\n')

    # 2. (d) c2s: anything else after <starttls/> closes the connection,
    # unread: no stanza injected before TLS is ever processed (an IQ would
    # be answered, and any stanza before authentication draws a stream
    # error, RFC 6120 4.9.3.12; the check is that nothing comes at all).
    msg = b"<message to='bob@s.test' type='chat'><body>injected %d</body></message>"
    iq = b"<iq type='get' id='inj%d'><ping xmlns='urn:xmpp:ping'/></iq>"
    await check_refused(srv, '(d) a message with <starttls/>', (msg % 1, ()))
    await check_refused(srv, '(d) a newline and an IQ with <starttls/>', (b'\n' + iq % 2, ()))
    await check_refused(srv, '(d) a message on its own after <proceed/>', (b'', [msg % 3]))
    await check_refused(srv, '(d) a newline, then an IQ on its own', (b'', [b'\n', iq % 4]))
    await check_refused(srv, '(d) a newline and a message with a newline after <proceed/>',
                        (b'', [b'\n' + msg % 5]))
    # A TLS record that is not a valid one: TLS refuses it (the record
    # came with <starttls/>, so TLS is set up on a buffered record).
    raw = await xt.raw_exchange(srv, [STARTTLS.encode() + BROKEN], header=True, timeout=5)
    xt.ok(raw.closed, 'a broken TLS record with <starttls/>: the connection is closed') or \
        xt.diag(raw.close_reason, raw.data[-200:])
    alice = await xt.login(srv, 'alice', 'alice-pw', resource='after')
    xt.ok(alice.ok, 'xmppd still serves logins') or xt.diag(alice.describe())

    # 3. s2s, incoming: a peer server may do the same.
    await s2s_in(srv, '(a) a newline with <starttls/>', with_starttls=b'\n')
    await s2s_in(srv, '(b) a newline on its own after <proceed/>', later=[b'\n'])
    r, w = await asyncio.wait_for(asyncio.open_connection(srv.ip, srv.s2s_port), 5)
    raw = xt.Raw(srv, r, w, time.monotonic())
    await raw.send(s2s_header('peer.test', srv.host))
    await raw.read_until(FEATURES, 5)
    await raw.send(STARTTLS.encode() + BROKEN)
    closed = await raw.read_until_close(5)
    raw.close()
    xt.ok(closed, 's2s in, a broken TLS record with <starttls/>: the connection is closed') or \
        xt.diag(raw.close_reason, raw.data[-200:])
    # (d) on s2s: an element after <proceed/>.
    r, w = await asyncio.wait_for(asyncio.open_connection(srv.ip, srv.s2s_port), 5)
    raw = xt.Raw(srv, r, w, time.monotonic())
    await raw.send(s2s_header('peer.test', srv.host))
    await raw.read_until(FEATURES, 5)
    await refused(raw, "s2s in, (d) a <db:result/> on its own after <proceed/>",
                  (b'', [b"<db:result from='peer.test' to='s.test'>key</db:result>"]))

    # 4. s2s, outgoing: the peer writes whitespace after its <proceed/>,
    # before its first TLS record (its answer to our ClientHello).
    async def with_proceed(raw, domain):
        return await peer.negotiate(raw, domain, "<proceed xmlns='%s'/>\n" % xt.NS_TLS)

    async def on_its_own(raw, domain):
        return await peer.negotiate(raw, domain, "<proceed xmlns='%s'/>" % xt.NS_TLS,
                                    between=[b'\n'])

    async def in_front(raw, domain):
        return await peer.negotiate(raw, domain, "<proceed xmlns='%s'/>" % xt.NS_TLS,
                                    prefix=b' \n')

    async def injected(raw, domain):
        return await peer.refused(raw, domain, "<proceed xmlns='%s'/>"
                                  "<db:result from='%s' to='s.test' type='valid'/>"
                                  % (xt.NS_TLS, domain))

    async def injected_later(raw, domain):
        return await peer.refused(raw, domain, "<proceed xmlns='%s'/>" % xt.NS_TLS,
                                  later="<db:result from='%s' to='s.test' type='valid'/>"
                                  % domain)

    await s2s_out(peer, alice, 'peer1.test', with_proceed, 'stream over TLS',
                  '(a) a newline with <proceed/>: TLS, then our stream over it')
    await s2s_out(peer, alice, 'peer2.test', on_its_own, 'stream over TLS',
                  '(b) a newline on its own before the ServerHello: TLS, then our stream')
    await s2s_out(peer, alice, 'peer3.test', in_front, 'stream over TLS',
                  '(c) whitespace in front of the ServerHello: TLS, then our stream')
    await s2s_out(peer, alice, 'peer4.test', injected, 'closed, nothing more',
                  '(d) an element with <proceed/>: we close without a ClientHello')
    await s2s_out(peer, alice, 'peer5.test', injected_later, 'closed, nothing more',
                  '(d) an element on its own after our ClientHello: we close')

    # 5. A client waiting after <proceed/> when xmppd stops: the plain
    # stream is over, so no <system-shutdown/> in the clear, only the close.
    raw = await xt.Raw.open(srv)
    await raw.open_stream()
    raw.set_mark()
    await raw.send(STARTTLS + '\n')
    got = await raw.read_until(PROCEED, 5)
    await xt.disconnect_all(alice)
    peer.server.close()
    stopping = asyncio.ensure_future(srv.astop())
    closed = await raw.read_until_close(10)
    await stopping
    xt.ok(got is not None and closed and after_proceed(raw) == b'',
          'waiting for TLS as xmppd stops: closed with nothing after <proceed/>') or \
        xt.diag('proceed: %s, closed: %s, after <proceed/>: %r' %
                (bool(got), closed, after_proceed(raw)))
    raw.close()


xt.run(main)
