#!/usr/bin/python3
"""t1300-proxy: behind haproxy, the client's address stays visible.

xmppd listens with `proxy_protocol: true` (a STARTTLS and a direct-TLS
listener) and trusts 127.0.0.1 (`trusted_proxies`); Debian's haproxy,
started here on 127.0.0.1, forwards to them with `send-proxy` (PROXY
protocol v1) and `send-proxy-v2` (v2, one backend with TLVs). Clients
connect to haproxy from other loopback addresses, and the server must see
those: in `xmppctl connected` (address and port), in the per-IP limit
(max_connections_per_ip counts the client, not haproxy) and in an `ip`
acl that c2s_access denies. A PROXY header is believed only from a
trusted proxy; garbage, or no header in time, closes the connection
without a word (haproxy's doc/proxy-protocol.txt 2.1 and 2.2: "any
sequence which does not exactly match the protocol must be discarded and
cause the receiver to abort the connection")."""

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

HAPROXY = os.environ.get('HAPROXY') or shutil.which('haproxy') or '/usr/sbin/haproxy'
PROXY_IP = '127.0.0.1'          # haproxy, the one trusted proxy
MAX_PER_IP = 2
# The header must come within the negotiation timeout, at most 10 s
# (src/net/listener.c, PROXY_WAIT_MAX_S).
HEADER_WAIT = 10

ACCESS = """acl:
  blocked:
    ip: "127.0.0.4/32"
access_rules:
  c2s:
    - deny: blocked
    - allow: all
c2s_access: c2s
"""

V2_SIG = b'\r\n\r\n\x00\r\nQUIT\n'


def v2_header(cmd, fam, body=b''):
    return V2_SIG + bytes([0x20 | cmd, fam]) + struct.pack('!H', len(body)) + body


class FromAddress:
    """The event loop as one slixmpp client sees it: its connection is made
    from a given source address (slixmpp has no option for that)."""

    def __init__(self, loop, ip):
        self._loop = loop
        self._ip = ip

    def __getattr__(self, name):
        return getattr(self._loop, name)

    async def create_connection(self, *a, **kw):
        kw.setdefault('local_addr', (self._ip, 0))
        return await self._loop.create_connection(*a, **kw)


async def login_via(srv, user, port, source_ip, direct_tls=False, timeout=10):
    """A slixmpp client from source_ip to haproxy's port; returns the Client
    and its own address ("IP:PORT") as the server should show it."""
    c = xt.Client(srv, user, user + '-pw', resource='r', address=(PROXY_IP, port),
                  direct_tls=direct_tls)
    c.xmpp.loop = FromAddress(asyncio.get_running_loop(), source_ip)
    await c.connect(timeout)
    local = None
    if c.xmpp.transport is not None:
        name = c.xmpp.transport.get_extra_info('sockname')
        if name:
            local = '%s:%d' % (name[0], name[1])
    return c, local


async def raw_to(srv, ip, port, source_ip, timeout=5):
    """A raw connection (xt.Raw) to ip:port from source_ip."""
    started = time.monotonic()
    r, w = await asyncio.wait_for(
        asyncio.open_connection(ip, port, local_addr=(source_ip, 0), limit=1 << 22), timeout)
    return xt.Raw(srv, r, w, started)


def local_of(raw):
    name = raw.writer.get_extra_info('sockname')
    return '%s:%d' % (name[0], name[1])


class HAProxy:
    """haproxy in the foreground (-db), on 127.0.0.1, one frontend per
    backend; stopped by the test."""

    def __init__(self, d, backends):
        self.dir = d
        self.ports = {}
        lines = ['global', '    maxconn 200', '', 'defaults', '    mode tcp',
                 '    timeout connect 5s', '    timeout client 60s',
                 '    timeout server 60s', '']
        ports = xt.free_ports(PROXY_IP, len(backends))
        for (name, server, opts, extra), port in zip(backends, ports):
            self.ports[name] = port
            lines += ['frontend f_%s' % name, '    bind %s:%d' % (PROXY_IP, port)]
            lines += ['    ' + x for x in extra]
            lines += ['    default_backend b_%s' % name, '',
                      'backend b_%s' % name,
                      '    server s %s:%d %s source %s' % (server[0], server[1], opts, PROXY_IP),
                      '']
        self.conf = str(d / 'haproxy.cfg')
        with open(self.conf, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        self.log_path = str(d / 'haproxy.log')
        self.proc = None

    def start(self, timeout=10):
        check = subprocess.run([HAPROXY, '-c', '-f', self.conf], capture_output=True, text=True)
        if check.returncode != 0:
            raise xt.HarnessError('haproxy -c refused %s: %s%s'
                                  % (self.conf, check.stdout, check.stderr))
        self._log = open(self.log_path, 'ab')
        self.proc = subprocess.Popen([HAPROXY, '-db', '-f', self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log, cwd=str(self.dir))
        deadline = time.monotonic() + timeout
        for port in self.ports.values():
            while True:
                if self.proc.poll() is not None:
                    raise xt.HarnessError('haproxy exited with %s; log:\n%s'
                                          % (self.proc.returncode, self.log()))
                s = socket.socket()
                try:
                    # Listening is enough: a connect would open a
                    # connection to xmppd too.
                    s.bind((PROXY_IP, port))
                except OSError:
                    break
                finally:
                    s.close()
                if time.monotonic() > deadline:
                    raise xt.HarnessError('haproxy did not listen on %d; log:\n%s'
                                          % (port, self.log()))
                time.sleep(0.05)

    def log(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')[-3000:]
        except OSError:
            return ''

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            self._log.close()
            self.proc = None


def addr_is(sessions, jid, want, name):
    """The session of jid is listed, at address want (which is known)."""
    s = xt.session_of(sessions, jid)
    got = s['addr'] if s else None
    return xt.ok(want is not None and got == want, name) or \
        xt.diag('got %r, expected %r' % (got, want))


async def main():
    xt.require_peer('haproxy', HAPROXY)
    srv = xt.Server(extra_conf=ACCESS, start=False,
                    conf={'trusted_proxies': [PROXY_IP + '/32'],
                          'max_connections_per_ip': MAX_PER_IP})
    pp_port, ppt_port = xt.free_ports(srv.ip, 2)
    srv.conf['listen'] += [
        {'port': pp_port, 'ip': srv.ip, 'module': 'c2s', 'starttls_required': True,
         'proxy_protocol': True},
        {'port': ppt_port, 'ip': srv.ip, 'module': 'c2s', 'tls': True,
         'proxy_protocol': True},
    ]
    srv.write_config()
    srv.start()
    users = ('alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan')
    for u in users:
        srv.register(u, u + '-pw')

    # v2 with TLVs the server does not use: a CRC32C and a unique id
    # (section 2.2: "a receiver may choose to skip over and ignore").
    v2_opts = ('send-proxy-v2 proxy-v2-options crc32c,unique-id',
               ['unique-id-format %{+X}o\\ %ci:%cp_%fi:%fp_%Ts_%rt'])
    # What haproxy sends there, seen by a listener of our own.
    headers = asyncio.Queue()

    async def probe_conn(reader, writer):
        try:
            head = await asyncio.wait_for(reader.readexactly(16), 5)
            head += await asyncio.wait_for(reader.readexactly(struct.unpack('!H', head[14:16])[0]), 5)
            headers.put_nowait(head)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
            headers.put_nowait(None)
        writer.close()
    probe = await asyncio.start_server(probe_conn, PROXY_IP, 0)
    probe_port = probe.sockets[0].getsockname()[1]
    hap = HAProxy(srv.dir, [
        ('v1', (srv.ip, pp_port), 'send-proxy', []),
        ('v2', (srv.ip, pp_port)) + v2_opts,
        ('v2tls', (srv.ip, ppt_port), 'send-proxy-v2', []),
        ('v1tls', (srv.ip, ppt_port), 'send-proxy', []),
        ('probe', (PROXY_IP, probe_port)) + v2_opts,
    ])
    hap.start()
    clients = []
    try:
        # Set-up: the v2 frontend really sends TLVs (a header longer than
        # its 12 bytes of IPv4 addresses and ports).
        raw = await raw_to(srv, PROXY_IP, hap.ports['probe'], '127.0.0.2')
        try:
            head = await asyncio.wait_for(headers.get(), 10)
        except asyncio.TimeoutError:
            head = None
        raw.close()
        xt.ok(head is not None and head.startswith(V2_SIG) and len(head) > 16 + 12,
              'set-up: haproxy\'s v2 header carries TLVs (%s bytes)'
              % (len(head) if head else None)) or xt.diag(repr(head))
        await run_checks(srv, hap, pp_port, ppt_port, clients)
    finally:
        await xt.disconnect_all(*clients)
        hap.stop()
        probe.close()


async def run_checks(srv, hap, pp_port, ppt_port, clients):
    P = hap.ports

    # 1. Through haproxy, v1 and v2 (STARTTLS), from 127.0.0.2: the
    # session's address is the client's, port and all.
    alice, alice_addr = await login_via(srv, 'alice', P['v1'], '127.0.0.2')
    clients.append(alice)
    xt.ok(alice.ok, 'send-proxy (v1): alice logs in through haproxy') or xt.diag(alice.describe())
    bob, bob_addr = await login_via(srv, 'bob', P['v2'], '127.0.0.2')
    clients.append(bob)
    xt.ok(bob.ok, 'send-proxy-v2 with TLVs: bob logs in through haproxy') or \
        xt.diag(bob.describe())
    sessions = await srv.wait_connected(
        lambda s: xt.session_of(s, srv.jid('alice', 'r')) and xt.session_of(s, srv.jid('bob', 'r')))
    addr_is(sessions, srv.jid('alice', 'r'), alice_addr,
           'xmppctl connected shows alice at her own address (v1), not haproxy\'s')
    addr_is(sessions, srv.jid('bob', 'r'), bob_addr,
           'xmppctl connected shows bob at his own address (v2)')
    xt.ok(alice_addr is not None and alice_addr.startswith('127.0.0.2:'),
          'alice connected from 127.0.0.2 (%s)' % alice_addr)
    xt.ok(await xt.roundtrip(alice, bob), 'alice and bob chat through haproxy')

    # 2. Direct TLS (XEP-0368) behind haproxy: the header comes before the
    # TLS handshake, v2 and v1.
    carol, carol_addr = await login_via(srv, 'carol', P['v2tls'], '127.0.0.3', direct_tls=True)
    clients.append(carol)
    xt.ok(carol.ok, 'direct TLS with send-proxy-v2: carol logs in') or xt.diag(carol.describe())
    dave, dave_addr = await login_via(srv, 'dave', P['v1tls'], '127.0.0.6', direct_tls=True)
    clients.append(dave)
    xt.ok(dave.ok, 'direct TLS with send-proxy: dave logs in') or xt.diag(dave.describe())
    sessions = await srv.wait_connected(
        lambda s: xt.session_of(s, srv.jid('carol', 'r')) and xt.session_of(s, srv.jid('dave', 'r')))
    addr_is(sessions, srv.jid('carol', 'r'), carol_addr,
           'xmppctl connected shows carol at her own address (direct TLS, v2)')
    addr_is(sessions, srv.jid('dave', 'r'), dave_addr,
           'xmppctl connected shows dave at his own address (direct TLS, v1)')

    # 3. max_connections_per_ip counts clients: alice and bob are the two
    # from 127.0.0.2, so a third from there is refused; carol and dave came
    # through the same haproxy (four connections from 127.0.0.1 in all)
    # and were not.
    third = await raw_to(srv, PROXY_IP, P['v1'], '127.0.0.2')
    await third.send(xt.stream_header(srv.host))
    await third.read_until_close(10)
    third.close()
    xt.is_(xt.stream_error(third.data), 'policy-violation',
           'a third connection from 127.0.0.2 through haproxy: <policy-violation/>') or \
        xt.diag(third.text[-800:])
    frank, _ = await login_via(srv, 'frank', P['v2'], '127.0.0.7')
    clients.append(frank)
    xt.ok(frank.ok, 'meanwhile a client from 127.0.0.7 logs in through the same haproxy') or \
        xt.diag(frank.describe())

    # 4. An ip acl sees the client: c2s_access denies 127.0.0.4
    # (<not-authorized/>, RFC 6120 6.5.10) and no one else.
    erin, _ = await login_via(srv, 'erin', P['v2'], '127.0.0.4')
    clients.append(erin)
    xt.ok(not erin.ok, 'a client from 127.0.0.4 (acl blocked) cannot log in through haproxy')
    xt.is_(erin.auth_failure, 'not-authorized', 'and is told <not-authorized/>') or \
        xt.diag(erin.describe())
    xt.ok(frank.ok and carol.ok, 'while clients from other addresses through it could')

    # 5. Headers a trusted peer sends itself (raw, from 127.0.0.1): TCP4
    # names any address; UNKNOWN (v1) and LOCAL (v2) keep the socket's.
    cases = [
        ('grace', b'PROXY TCP4 192.0.2.77 %s 4242 %d\r\n' % (srv.ip.encode(), pp_port),
         lambda raw: '192.0.2.77:4242', 'a v1 TCP4 header'),
        ('heidi', b'PROXY UNKNOWN\r\n', local_of, 'v1 UNKNOWN'),
        # LOCAL with an address block: the addresses are ignored (2.2:
        # "must use the real connection endpoints").
        ('ivan', v2_header(0, 0x11, socket.inet_aton('192.0.2.88') +
                           socket.inet_aton(srv.ip) + struct.pack('!HH', 4343, pp_port)),
         local_of, 'a v2 LOCAL header'),
    ]
    for user, header, want, what in cases:
        raw = await raw_to(srv, srv.ip, pp_port, PROXY_IP)
        await raw.send(header)
        try:
            jid = await raw.login(user, user + '-pw', resource='r')
        except xt.HarnessError as e:
            jid = None
            xt.diag(str(e))
        sessions = await srv.wait_connected(lambda s: xt.session_of(s, srv.jid(user, 'r')))
        addr_is(sessions, srv.jid(user, 'r'), want(raw),
               '%s: the session\'s address is %s' % (what, want(raw))) or xt.diag(jid)
        raw.close()

    # 6. A PROXY header from a peer not in trusted_proxies is refused: the
    # connection closes and nothing is said. The same bytes from the
    # trusted address get the stream header.
    hello = b'PROXY TCP4 192.0.2.9 192.0.2.1 1000 5222\r\n' + xt.stream_header(srv.host).encode()
    for source, trusted in (('127.0.0.5', False), (PROXY_IP, True)):
        raw = await raw_to(srv, srv.ip, pp_port, source)
        await raw.send(hello)
        if trusted:
            got = await raw.read_until(r'<stream:features', 10)
            xt.ok(got is not None, 'a PROXY header from trusted %s: the stream opens' % source) or \
                xt.diag(raw.text[-500:])
        else:
            closed = await raw.read_until_close(10)
            xt.ok(closed and raw.data == b'',
                  'a PROXY header from untrusted %s: closed without a word' % source) or \
                xt.diag('closed=%s data=%r' % (closed, raw.data[:300]))
        raw.close()

    # 7. Garbage instead of a header, on both kinds of listener: a client
    # that forgot the proxy (a stream header, a TLS ClientHello), an
    # over-long v1 line, a bad v2 signature. Closed without a word, at
    # once (2.1: "abort the connection as soon as possible"), not by the
    # header's time bound.
    garbage = [
        (pp_port, xt.stream_header(srv.host).encode(), 'a stream header'),
        (pp_port, b'PROXY TCP4 ' + b'1' * 120 + b'\r\n', 'an over-long v1 line'),
        (pp_port, b'PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n', 'a v1 line ending in LF alone'),
        (ppt_port, b'\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03' + b'\x00' * 40,
         'a TLS ClientHello'),
        (ppt_port, V2_SIG[:11] + b'X' + b'\x21\x11\x00\x0c' + b'\x00' * 12,
         'a bad v2 signature'),
    ]
    for port, data, what in garbage:
        raw = await raw_to(srv, srv.ip, port, PROXY_IP)
        await raw.send(data)
        closed = await raw.read_until_close(HEADER_WAIT + 5)
        took = xt.elapsed(raw)
        xt.ok(closed and raw.data == b'' and took < HEADER_WAIT / 2,
              '%s instead of a PROXY header (%s): closed at once without a word'
              % (what, 'direct TLS' if port == ppt_port else 'STARTTLS')) or \
            xt.diag('closed=%s after %s s, data=%r' % (closed, took, raw.data[:300]))
        raw.close()

    # 8. No header in time (nothing, or half a line): closed without a
    # word once the bound has passed, and not long before it.
    async def silent(data):
        raw = await raw_to(srv, srv.ip, ppt_port, PROXY_IP)
        if data:
            await raw.send(data)
        closed = await raw.read_until_close(HEADER_WAIT + 15)
        raw.close()
        return raw, closed
    results = await asyncio.gather(silent(b''), silent(b'PROXY TCP4 192.0.2.1 '))
    for (raw, closed), what in zip(results, ('nothing sent', 'half a v1 line')):
        took = xt.elapsed(raw)
        xt.ok(closed and raw.data == b'', 'no PROXY header (%s): closed without a word'
              % what) or xt.diag('closed=%s data=%r' % (closed, raw.data[:300]))
        xt.ok(took is not None and HEADER_WAIT - 2 <= took <= HEADER_WAIT + 10,
              'after the %d s bound (%s s)' % (HEADER_WAIT, took and round(took, 1)))

    # Everyone who logged in is still there: nothing above disturbed them.
    xt.ok(await xt.roundtrip(bob, alice), 'alice and bob still chat')
    xt.ok(hap.proc is not None and hap.proc.poll() is None, 'haproxy ran throughout') or \
        xt.diag(hap.log())


xt.run(main, timeout=240)
