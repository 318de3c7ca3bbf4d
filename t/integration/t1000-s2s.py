#!/usr/bin/python3
"""t1000-s2s: federation between two xmppd (RFC 6120, XEP-0220, XEP-0178).

Two servers, a.test and b.test, on two loopback addresses, pinned to each
other with s2s_hosts. First with certificates from one CA (SASL EXTERNAL),
then with a ca_file that does not verify them (dialback); an unreachable
domain, a silent one (timeout), a raw peer that spoofs addresses, the idle
timeout, and SRV records (direct TLS to a second virtual host, c.test) from
a small DNS server of the test's own.
"""

import asyncio
import base64
import os
import socket
import ssl
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_SERVER = 'jabber:server'


# -- certificates: one CA for everybody, and one that signed nobody ---------

make_ca = xt.make_ca
make_cert = xt.make_cert


# -- a DNS server that answers SRV queries (RFC 1035 4.1, RFC 2782) ---------

def dns_name(name):
    out = b''
    for label in name.rstrip('.').split('.'):
        out += bytes([len(label)]) + label.encode()
    return out + b'\0'


class FakeDNS:
    """Answers SRV queries from a dict name -> [(prio, weight, port, target)],
    NXDOMAIN otherwise; counts queries."""

    def __init__(self, ip, records):
        self.records = records
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 53))
        self.sock.settimeout(0.2)
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                q, addr = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self.answer(q), addr)
            except Exception as e:  # a malformed query: no answer
                xt.diag('fake DNS: %s' % e)

    def answer(self, q):
        qid = q[:2]
        p, labels = 12, []
        while q[p]:
            labels.append(q[p + 1:p + 1 + q[p]].decode())
            p += 1 + q[p]
        qtype = struct.unpack('>H', q[p + 1:p + 3])[0]
        question = q[12:p + 5]
        name = '.'.join(labels).lower()
        self.queries.append((name, qtype))
        recs = self.records.get(name) if qtype == 33 else None
        if not recs:
            return qid + b'\x81\x83' + b'\0\x01\0\0\0\0\0\0' + question
        body = b''
        for prio, weight, port, target in recs:
            rdata = struct.pack('>HHH', prio, weight, port) + dns_name(target)
            body += b'\xc0\x0c' + struct.pack('>HHIH', 33, 1, 60, len(rdata)) + rdata
        return qid + b'\x81\x80' + struct.pack('>HHHH', 1, len(recs), 0, 0) + question + body

    def close(self):
        self.stop = True
        self.sock.close()


# -- helpers ------------------------------------------------------------------

def s2s_links(srv):
    """`xmppctl s2s` as a list of dicts."""
    code, out, err = srv.ctl('s2s')
    if code != 0:
        xt.diag('xmppctl s2s failed (%r): %s' % (code, err))
        return None
    keys = ('dir', 'local', 'remote', 'auth', 'tls', 'in', 'out', 'state', 'addr')
    return [dict(zip(keys, line.split('\t'))) for line in out.splitlines() if line.strip()]


async def wait_links(srv, pred, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        links = await asyncio.get_running_loop().run_in_executor(None, s2s_links, srv)
        if links is not None and pred(links):
            return links
        if time.monotonic() > deadline:
            return links
        await asyncio.sleep(0.2)


def link(links, direction, local, remote):
    for l in links or ():
        if l['dir'] == direction and l['local'] == local and l['remote'] == remote \
                and l['state'] == 'established':
            return l
    return None


class RawS2S:
    """A raw server-to-server peer (asyncio streams)."""

    def __init__(self, r, w):
        self.r, self.w, self.data = r, w, b''

    @classmethod
    async def open(cls, ip, port, ssl_ctx=None, sni=None):
        kw = {'ssl': ssl_ctx, 'server_hostname': sni} if ssl_ctx else {}
        r, w = await asyncio.wait_for(asyncio.open_connection(ip, port, **kw), 5)
        return cls(r, w)

    async def send(self, s):
        self.w.write(s.encode())
        await self.w.drain()

    async def until(self, pattern, timeout=5):
        import re
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.data.decode('utf-8', 'replace'), re.S)
            if m or time.monotonic() > deadline:
                return m
            try:
                chunk = await asyncio.wait_for(self.r.read(65536), deadline - time.monotonic())
            except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError):
                return re.search(pattern, self.data.decode('utf-8', 'replace'), re.S)
            if not chunk:
                return re.search(pattern, self.data.decode('utf-8', 'replace'), re.S)
            self.data += chunk

    async def header(self, frm, to):
        await self.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                        "xmlns:stream='http://etherx.jabber.org/streams' "
                        "xmlns:db='jabber:server:dialback' from='%s' to='%s' "
                        "version='1.0'>" % (frm, to))
        return await self.until(r'</stream:features>|<stream:features/>')

    async def starttls(self, ctx, sni):
        mark = len(self.data)
        await self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        if not await self.until(r'<proceed'):
            return False
        await asyncio.wait_for(self.w.start_tls(ctx, server_hostname=sni), 5)
        self.data = self.data[:mark]
        return True

    async def external(self, domain):
        await self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
                        "%s</auth>" % base64.b64encode(domain.encode()).decode())
        return await self.until(r'<success|<failure')

    def close(self):
        try:
            self.w.close()
        except Exception:
            pass


def client_ctx(ca, cert=None, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert)
    if alpn:
        ctx.set_alpn_protocols([alpn])
    return ctx


async def authenticated_raw(b, ca, cert, domain):
    """A raw peer on b's s2s port, STARTTLS with cert, EXTERNAL as domain,
    stream restarted: ready for stanzas. Returns (raw, ok)."""
    raw = await RawS2S.open(b.ip, b.s2s_port)
    ok = await raw.header(domain, 'b.test') is not None
    ok = ok and await raw.starttls(client_ctx(ca, cert), 'b.test')
    ok = ok and await raw.header(domain, 'b.test') is not None
    m = ok and await raw.external(domain)
    ok = bool(m) and m.group(0) == '<success'
    ok = ok and await raw.header(domain, 'b.test') is not None
    return raw, ok


async def main():
    d = xt.scratch_dir('t1000-certs')
    ca1 = make_ca(d, 'ca1')
    ca2 = make_ca(d, 'ca2')           # signed nothing: verifies nobody
    certs = {h: make_cert(d, 'ca1', h) for h in ('a.test', 'b.test', 'c.test', 'evil.test')}

    a = xt.Server(name='t1000-a', hosts=['a.test'], start=False)
    b = xt.Server(name='t1000-b', hosts=['b.test', 'c.test'], start=False)
    dead_port = xt.free_ports(a.ip, 1)[0]         # nothing listens there
    silent = socket.socket()                       # accepts, says nothing
    silent.bind((a.ip, 0))
    silent.listen(8)
    silent_port = silent.getsockname()[1]
    dns_ip = xt.pick_loopback_ip(exclude=(a.ip, b.ip))

    for s in (a, b):
        s.s2s_port, s.s2s_tls_port = xt.free_ports(s.ip, 2)
        s.ca_file = ca1                            # what the test's clients trust
        s.conf['listen'] += [{'port': s.s2s_port, 'ip': s.ip, 'module': 's2s'},
                             {'port': s.s2s_tls_port, 'ip': s.ip, 'module': 's2s',
                              'tls': True}]
        s.conf['ca_file'] = ca1
        s.conf['s2s_connect_timeout'] = 3
        s.conf['s2s_resolv_conf'] = str(d / 'resolv.conf')
    (d / 'resolv.conf').write_text('nameserver %s\n' % dns_ip)
    a.conf['certfiles'] = [certs['a.test']]
    b.conf['certfiles'] = [certs['b.test'], certs['c.test']]
    a.conf['s2s_hosts'] = {'b.test': '%s:%d' % (b.ip, b.s2s_port),
                           'nowhere.test': '%s:%d' % (a.ip, dead_port),
                           'silent.test': '%s:%d' % (a.ip, silent_port)}
    b.conf['s2s_hosts'] = {'a.test': '%s:%d' % (a.ip, a.s2s_port)}
    dns = FakeDNS(dns_ip, {
        '_xmpps-server._tcp.c.test': [(5, 0, b.s2s_tls_port, 'c-host.test')],
        '_xmpp-server._tcp.c.test': [(10, 0, b.s2s_port, 'c-host.test')],
    })
    # c-host.test: an address from /etc/hosts would need root's file; the
    # SRV target is resolved by evdns, which reads /etc/hosts: use an
    # address literal instead.
    dns.records['_xmpps-server._tcp.c.test'] = [(5, 0, b.s2s_tls_port, b.ip)]
    dns.records['_xmpp-server._tcp.c.test'] = [(10, 0, b.s2s_port, b.ip)]
    for s in (a, b):
        s.write_config()
        s.start()
    a.register('alice', 'alice-pw')
    b.register('bob', 'bob-pw')
    b.register('carol', 'carol-pw', host='c.test')

    # 1. One CA: SASL EXTERNAL both ways.
    alice = await xt.login_ok(a, 'alice', 'alice-pw', resource='r')
    bob = await xt.login_ok(b, 'bob', 'bob-pw', resource='r')
    alice.send('bob@b.test', 'hello over s2s')
    m = await bob.message(body='hello over s2s', timeout=10)
    xt.ok(m is not None, 'alice@a.test -> bob@b.test arrives')
    xt.is_(str(m['from']) if m else None, 'alice@a.test/r', 'with alice\'s full JID as from')
    bob.send('alice@a.test/r', 'and back')
    m = await alice.message(body='and back', timeout=10)
    xt.ok(m is not None, 'bob@b.test -> alice@a.test arrives')
    for i in range(5):
        alice.send('bob@b.test', 'burst %d' % i)
    got = []
    for i in range(5):
        m = await bob.message(pred=lambda m: m['body'].startswith('burst '), timeout=5)
        got.append(m['body'] if m else None)
    xt.is_(got, ['burst %d' % i for i in range(5)], 'a burst arrives complete and in order')
    la = await wait_links(a, lambda l: link(l, 'out', 'a.test', 'b.test'))
    lb = await wait_links(b, lambda l: link(l, 'in', 'b.test', 'a.test'))
    xa, xb = link(la, 'out', 'a.test', 'b.test'), link(lb, 'in', 'b.test', 'a.test')
    xt.is_(xa and xa['auth'], 'external', 'xmppctl s2s on a: out a.test -> b.test by SASL EXTERNAL') \
        or xt.diag(la)
    xt.is_(xb and xb['auth'], 'external', 'xmppctl s2s on b: in b.test <- a.test by SASL EXTERNAL') \
        or xt.diag(lb)
    xt.like(xa and xa['tls'] or '', r'^TLSv1\.[23]$', 'the link is TLS (%s)' % (xa and xa['tls']))
    xt.ok(xa is not None and int(xa['out']) >= 6, 'a counts stanzas out (%s)' % (xa and xa['out']))
    xt.ok(xb is not None and int(xb['in']) >= 6, 'b counts stanzas in (%s)' % (xb and xb['in']))

    # 2. Unreachable: nothing listening -> remote-server-not-found.
    alice.send('someone@nowhere.test', 'anyone?')
    m = await alice.message(mtype='error', timeout=10)
    xt.is_(m['error']['condition'] if m else None, 'remote-server-not-found',
           'a domain where nothing listens bounces with remote-server-not-found')
    xt.is_(str(m['from']) if m else None, 'someone@nowhere.test', 'the bounce comes from the address')

    # 3. A server that accepts and never answers -> remote-server-timeout.
    t0 = time.monotonic()
    alice.send('someone@silent.test', 'hello?')
    m = await alice.message(mtype='error', timeout=10)
    xt.is_(m['error']['condition'] if m else None, 'remote-server-timeout',
           'a silent server bounces with remote-server-timeout')
    xt.ok(time.monotonic() - t0 < 8, 'after about s2s_connect_timeout (%.1f s)'
          % (time.monotonic() - t0))
    silent.close()

    # 4. SRV: c.test has no pin; the fake DNS sends a to b's direct TLS
    # port (XEP-0368), where SNI picks c.test's certificate.
    carol = await xt.login_ok(b, 'carol', 'carol-pw', host='c.test', resource='r')
    alice.send('carol@c.test', 'via SRV')
    m = await carol.message(body='via SRV', timeout=10)
    xt.ok(m is not None, 'alice@a.test -> carol@c.test arrives, found by SRV')
    xt.ok(('_xmpps-server._tcp.c.test', 33) in dns.queries,
          'a asked for _xmpps-server._tcp.c.test (%s)' % dns.queries)
    la = await wait_links(a, lambda l: link(l, 'out', 'a.test', 'c.test'))
    xc = link(la, 'out', 'a.test', 'c.test')
    xt.ok(xc is not None and xc['addr'].endswith(':%d' % b.s2s_tls_port),
          'over direct TLS, the lower SRV priority (%s)' % (xc and xc['addr']))
    xt.is_(xc and xc['auth'], 'external', 'c.test\'s own certificate verified (virtual hosting)')
    carol.send('alice@a.test/r', 'from c.test')
    m = await alice.message(body='from c.test', timeout=10)
    xt.ok(m is not None, 'carol@c.test -> alice@a.test arrives')

    # 5. Raw peers: addressing checks on an incoming stream.
    raw, ok = await authenticated_raw(b, ca1, certs['evil.test'], 'evil.test')
    xt.ok(ok, 'a raw peer authenticates as evil.test by SASL EXTERNAL') or xt.diag(raw.data[-800:])
    await raw.send("<message from='mallory@a.test' to='bob@b.test'><body>spoof</body></message>")
    m = await raw.until(r'<(invalid-from)\b')
    xt.ok(m is not None, 'a from in a domain it did not authenticate: <invalid-from/>') \
        or xt.diag(raw.data[-800:])
    raw.close()
    m = await bob.message(body='spoof', timeout=1)
    xt.ok(m is None, 'the spoofed message is not delivered')

    raw, ok = await authenticated_raw(b, ca1, certs['evil.test'], 'evil.test')
    await raw.send("<message from='x@evil.test' to='bob@elsewhere.test'><body>relay</body></message>")
    xt.ok(await raw.until(r'<host-unknown\b') is not None,
          'a to in a domain we do not serve: <host-unknown/>') or xt.diag(raw.data[-800:])
    raw.close()

    raw, ok = await authenticated_raw(b, ca1, certs['evil.test'], 'evil.test')
    await raw.send("<message to='bob@b.test'><body>nofrom</body></message>")
    xt.ok(await raw.until(r'<improper-addressing\b') is not None,
          'no from: <improper-addressing/>') or xt.diag(raw.data[-800:])
    raw.close()

    raw = await RawS2S.open(b.ip, b.s2s_port)
    await raw.header('evil.test', 'b.test')
    await raw.starttls(client_ctx(ca1), 'b.test')
    await raw.header('evil.test', 'b.test')
    await raw.send("<message from='x@evil.test' to='bob@b.test'><body>early</body></message>")
    xt.ok(await raw.until(r'<not-authorized\b') is not None,
          'a stanza before authentication: <not-authorized/>') or xt.diag(raw.data[-800:])
    raw.close()

    raw = await RawS2S.open(b.ip, b.s2s_port)
    await raw.header('evil.test', 'b.test')
    await raw.send("<db:result from='evil.test' to='b.test'>00</db:result>")
    xt.ok(await raw.until(r'<policy-violation\b') is not None,
          'dialback before STARTTLS (required): <policy-violation/>') or xt.diag(raw.data[-800:])
    raw.close()

    # Direct TLS (XEP-0368) with ALPN, EXTERNAL, a stanza that is delivered.
    raw = await RawS2S.open(b.ip, b.s2s_tls_port, client_ctx(ca1, certs['evil.test'], 'xmpp-server'),
                            'b.test')
    await raw.header('evil.test', 'b.test')
    m = await raw.external('evil.test')
    ok = bool(m) and m.group(0) == '<success'
    ok = ok and await raw.header('evil.test', 'b.test') is not None
    await raw.send("<message from='eve@evil.test/x' to='bob@b.test' type='chat'>"
                   "<body>direct tls</body></message>")
    m = await bob.message(body='direct tls', timeout=5)
    xt.ok(ok and m is not None, 'direct TLS with ALPN xmpp-server: a stanza is delivered')
    raw.close()

    # 6. Idle timeout: 2 s, then the link reopens on demand.
    await xt.disconnect_all(alice, bob, carol)
    for s in (a, b):
        s.stop()
        s.conf['s2s_idle_timeout'] = 2
        s.write_config()
        s.start()
    alice = await xt.login_ok(a, 'alice', 'alice-pw', resource='r')
    bob = await xt.login_ok(b, 'bob', 'bob-pw', resource='r')
    alice.send('bob@b.test', 'before idle')
    m = await bob.message(body='before idle', timeout=10)
    xt.ok(m is not None, 'message before the idle timeout')
    la = await wait_links(a, lambda l: not link(l, 'out', 'a.test', 'b.test'), timeout=8)
    xt.ok(la is not None and not link(la, 'out', 'a.test', 'b.test'),
          'the idle link closes after s2s_idle_timeout') or xt.diag(la)
    alice.send('bob@b.test', 'after idle')
    m = await bob.message(body='after idle', timeout=10)
    xt.ok(m is not None, 'the link reopens on demand')

    # 7. A CA that verifies nobody: dialback (XEP-0220) both ways.
    await xt.disconnect_all(alice, bob)
    for s in (a, b):
        s.stop()
        s.conf['ca_file'] = ca2
        s.conf['s2s_idle_timeout'] = 600
        s.write_config()
        s.start()
    alice = await xt.login_ok(a, 'alice', 'alice-pw', resource='r')
    bob = await xt.login_ok(b, 'bob', 'bob-pw', resource='r')
    alice.send('bob@b.test', 'dialback hello')
    m = await bob.message(body='dialback hello', timeout=10)
    xt.ok(m is not None, 'with dialback: alice -> bob arrives')
    bob.send('alice@a.test/r', 'dialback back')
    m = await alice.message(body='dialback back', timeout=10)
    xt.ok(m is not None, 'with dialback: bob -> alice arrives')
    la = await wait_links(a, lambda l: link(l, 'out', 'a.test', 'b.test'))
    lb = await wait_links(b, lambda l: link(l, 'in', 'b.test', 'a.test'))
    xt.is_((link(la, 'out', 'a.test', 'b.test') or {}).get('auth'), 'dialback',
           'xmppctl s2s on a says dialback') or xt.diag(la)
    xt.is_((link(lb, 'in', 'b.test', 'a.test') or {}).get('auth'), 'dialback',
           'xmppctl s2s on b says dialback') or xt.diag(lb)

    # A forged dialback key is refused by the authoritative server.
    raw = await RawS2S.open(b.ip, b.s2s_port)
    await raw.header('a.test', 'b.test')
    await raw.starttls(client_ctx(ca1), 'b.test')
    await raw.header('a.test', 'b.test')
    await raw.send("<db:result from='a.test' to='b.test'>%s</db:result>" % ('0' * 64))
    m = await raw.until(r"<db:result[^>]*type=.(\w+)")
    xt.is_(m.group(1) if m else None, 'invalid', 'a forged dialback key is invalid') \
        or xt.diag(raw.data[-800:])
    raw.close()

    await xt.disconnect_all(alice, bob)
    dns.close()
    xt.is_(a.stop(), 0, 'a exits 0')
    xt.is_(b.stop(), 0, 'b exits 0')
    xt.unlike(a.log() + b.log(), r'AddressSanitizer', 'no sanitizer report')


xt.run(main, timeout=240)
