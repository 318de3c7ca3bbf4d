#!/usr/bin/python3
"""t0140-tls-versions: the TLS versions xmppd accepts, on STARTTLS and on
the direct-TLS port (XEP-0368): never TLS 1.0 or 1.1 (RFC 8996), TLS 1.2
and 1.3 by default, only 1.3 with tls_min_version: "1.3".

OpenSSL 3 refuses TLS 1.0 and 1.1 on the client side too at its default
security level, so the old-version clients here lower it (SECLEVEL=0) and
first show against `openssl s_server` that they really do speak TLS 1.0
and 1.1: the refusals below are then xmppd's. A server that does not
support the version a client offers answers with a protocol_version alert
(RFC 8446 4.2.1, RFC 5246 E.1); that alert is what is checked, not any
failed handshake."""

import asyncio
import os
import ssl
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

# ssl.TLSVersion.TLSv1 and TLSv1_1 are deprecated: using them is the point.
warnings.simplefilter('ignore', DeprecationWarning)

VERSIONS = {'TLSv1': ssl.TLSVersion.TLSv1, 'TLSv1.1': ssl.TLSVersion.TLSv1_1,
            'TLSv1.2': ssl.TLSVersion.TLSv1_2, 'TLSv1.3': ssl.TLSVersion.TLSv1_3}
REFUSED = 'TLSV1_ALERT_PROTOCOL_VERSION'


def only(srv, name):
    """A client context that offers TLS version `name` and nothing else,
    trusts the test CA and checks the host name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=srv.ca_file)
    ctx.set_ciphers('DEFAULT:@SECLEVEL=0')
    ctx.minimum_version = ctx.maximum_version = VERSIONS[name]
    return ctx


async def handshake(srv, name, ip, port, starttls):
    """TLS version `name` with ip:port, after <starttls/> if starttls.
    Returns the negotiated version, or the SSL error's reason."""
    r, w = await asyncio.wait_for(asyncio.open_connection(ip, port), 5)
    raw = xt.Raw(srv, r, w, time.monotonic())
    try:
        if starttls:
            await raw.open_stream()
            raw.set_mark()
            await raw.send("<starttls xmlns='%s'/>" % xt.NS_TLS)
            if not await raw.read_until(r'<proceed\b', 5):
                return 'no <proceed/>: %r' % raw.since_mark()[-300:]
        try:
            await asyncio.wait_for(w.start_tls(only(srv, name), server_hostname=srv.host), 5)
        except ssl.SSLError as e:
            return e.reason
        except (ConnectionError, asyncio.TimeoutError) as e:
            return 'no handshake: %r' % e
        return w.get_extra_info('ssl_object').version()
    finally:
        raw.close()


class OldTLSServer:
    """openssl s_server speaking TLS 1.0 and 1.1 only, with xmppd's
    certificate: the positive control for the old-version clients."""

    def __init__(self, srv):
        self.ip = srv.ip
        self.port = xt.free_ports(self.ip, 1)[0]
        self.out = srv.dir / 's_server.out'
        self.proc = subprocess.Popen(
            ['openssl', 's_server', '-accept', '%s:%d' % (self.ip, self.port),
             '-cert', srv.cert_file, '-key', srv.cert_file,
             '-min_protocol', 'TLSv1', '-max_protocol', 'TLSv1.1',
             '-cipher', 'DEFAULT@SECLEVEL=0', '-www'],
            stdin=subprocess.DEVNULL, stdout=open(self.out, 'wb'), stderr=subprocess.STDOUT)

    async def ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if b'ACCEPT' in self.out.read_bytes():
                return True
            await asyncio.sleep(0.05)
        return False

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


async def main():
    srv = xt.Server()
    srv.register('alice', 'alice-pw')

    # The control: these clients do speak TLS 1.0 and 1.1.
    old = OldTLSServer(srv)
    try:
        xt.ok(await old.ready(), 'openssl s_server (TLS 1.0-1.1 only) is up') or \
            xt.diag(old.out.read_text(errors='replace'))
        for name in ('TLSv1', 'TLSv1.1'):
            xt.is_(await handshake(srv, name, old.ip, old.port, False), name,
                   'control: a %s-only client completes a %s handshake with s_server' % (name, name))
    finally:
        old.stop()

    # xmppd's default: TLS >= 1.2 (doc/admin.md, DESIGN.md "Security defaults").
    for name in ('TLSv1', 'TLSv1.1'):
        xt.is_(await handshake(srv, name, srv.ip, srv.c2s_port, True), REFUSED,
               'STARTTLS: a %s-only client is refused with a protocol_version alert' % name)
        xt.is_(await handshake(srv, name, srv.ip, srv.tls_port, False), REFUSED,
               'direct TLS: a %s-only client is refused with a protocol_version alert' % name)
    for name in ('TLSv1.2', 'TLSv1.3'):
        xt.is_(await handshake(srv, name, srv.ip, srv.c2s_port, True), name,
               'STARTTLS: a %s-only client is accepted' % name)
        xt.is_(await handshake(srv, name, srv.ip, srv.tls_port, False), name,
               'direct TLS: a %s-only client is accepted' % name)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')

    # tls_min_version: "1.3" refuses TLS 1.2; TLS 1.3 logins work.
    srv13 = xt.Server(name='t0140-min13', conf={'tls_min_version': '1.3'})
    srv13.register('alice', 'alice-pw')
    for name in ('TLSv1.1', 'TLSv1.2'):
        xt.is_(await handshake(srv13, name, srv13.ip, srv13.c2s_port, True), REFUSED,
               'tls_min_version 1.3, STARTTLS: a %s-only client is refused (protocol_version)' % name)
        xt.is_(await handshake(srv13, name, srv13.ip, srv13.tls_port, False), REFUSED,
               'tls_min_version 1.3, direct TLS: a %s-only client is refused (protocol_version)' % name)
    for direct in (False, True):
        c = await xt.login(srv13, 'alice', 'alice-pw', direct_tls=direct)
        xt.ok(c.ok and c.tls_version == 'TLSv1.3',
              'tls_min_version 1.3: a %s login over TLS 1.3 works (%s)'
              % ('direct TLS' if direct else 'STARTTLS', c.tls_version)) or xt.diag(c.describe())
        await c.disconnect()
    xt.is_(srv13.stop(), 0, 'the second xmppd exits 0 on SIGTERM')


xt.run(main)
