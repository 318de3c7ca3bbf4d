#!/usr/bin/python3
"""t1000-s2s: federation between two xmppd (RFC 6120, XEP-0220, XEP-0178).

Two servers, a.test and b.test (b also serving c.test and d.test, each with
its own certificate), on two loopback addresses, pinned to each other with
s2s_hosts. First with certificates from one CA (SASL EXTERNAL): bursts from
two sessions on one link, one link per pair of domains (counted with
`xmppctl s2s`), an unreachable domain, a silent one (timeout), SRV records
with names (direct TLS to c.test) from a small DNS server of the test's
own, virtual hosting both ways, raw peers that break the addressing rules
or put two domains on one stream, and s2s_access; then the idle timeout;
then with a ca_file that does not verify anybody (dialback), and with
dialback switched off on b; and a receiving server of the test's own for
evil.test that takes any SASL EXTERNAL, to which b must send nothing when
it cannot verify its certificate and dialback is off.

Every bounce is matched to the message that caused it by its id (RFC 6120
8.3.1: an error keeps the id), not taken as the next error that comes.
"""

import asyncio
import base64
import os
import re
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_SERVER = 'jabber:server'


# -- certificates: one CA for everybody, and one that signed nobody ---------

make_ca = xt.make_ca
make_cert = xt.make_cert


# -- helpers ------------------------------------------------------------------

link = xt.s2s_link
wait_links = xt.wait_links


def send_id(c, to, body, mid):
    """A chat message with our own id, so that its reply (or bounce, RFC
    6120 8.3.1: the error keeps the id) is told from any other."""
    m = c.xmpp.make_message(mto=to, mbody=body, mtype='chat')
    m['id'] = mid
    m.send()


async def error_for(c, mid, timeout=10):
    """The condition of the error c got for its message mid (None if none
    came), and where it came from."""
    m = await c.message(pred=lambda m: m['id'] == mid, mtype='error', timeout=timeout)
    return (m['error']['condition'], str(m['from'])) if m is not None else None


def links_of(links, direction, local=None, remote=None):
    """Every line of links for direction (and local, remote), any state."""
    return [l for l in links or () if l['dir'] == direction and
            (local is None or l['local'] == local) and (remote is None or l['remote'] == remote)]


class RawS2S:
    """A raw server-to-server peer (asyncio streams). until() looks only at
    what arrived after the last send (mark), so that an answer is never
    taken from what came before it."""

    def __init__(self, r, w):
        self.r, self.w, self.data, self.mark = r, w, b'', 0

    @classmethod
    async def open(cls, ip, port, ssl_ctx=None, sni=None):
        kw = {'ssl': ssl_ctx, 'server_hostname': sni} if ssl_ctx else {}
        r, w = await asyncio.wait_for(asyncio.open_connection(ip, port, **kw), 5)
        return cls(r, w)

    def since_mark(self):
        return self.data[self.mark:].decode('utf-8', 'replace')

    async def send(self, s):
        self.mark = len(self.data)
        self.w.write(s.encode())
        await self.w.drain()

    async def until(self, pattern, timeout=5):
        import re
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.since_mark(), re.S)
            if m or time.monotonic() > deadline:
                return m
            try:
                chunk = await asyncio.wait_for(self.r.read(65536), deadline - time.monotonic())
            except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError):
                return re.search(pattern, self.since_mark(), re.S)
            if not chunk:
                return re.search(pattern, self.since_mark(), re.S)
            self.data += chunk

    async def header(self, frm, to):
        await self.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                        "xmlns:stream='http://etherx.jabber.org/streams' "
                        "xmlns:db='jabber:server:dialback' from='%s' to='%s' "
                        "version='1.0'>" % (frm, to))
        return await self.until(r'</stream:features>|<stream:features/>')

    async def starttls(self, ctx, sni):
        await self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        if not await self.until(r'<proceed'):
            return False
        await asyncio.wait_for(self.w.start_tls(ctx, server_hostname=sni), 5)
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


class FakeReceiver:
    """A receiving server for one domain, written for the test, that does
    what an impostor can: it offers STARTTLS (RFC 6120 5), presents
    whatever certificate self.cert holds at the time of the handshake, then
    offers SASL EXTERNAL and answers <success/> to any <auth/> (RFC 6120
    6.4.6), and takes whatever comes after. Only the initiating server's
    check of this certificate (RFC 6120 13.7.2) can tell it from the real
    server of the domain.

    conns holds one dict per connection: 'tls' (the handshake completed),
    'data' (everything received, decrypted), 'closed' (it ended)."""

    def __init__(self, ip, domain, cert):
        self.ip, self.domain, self.cert = ip, domain, cert
        self.conns, self.server, self.port = [], None, None
        self.tasks = set()

    async def start(self):
        self.server = await asyncio.start_server(self._handle, self.ip, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def header(self, n):
        return ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                "xmlns:stream='http://etherx.jabber.org/streams' "
                "xmlns:db='jabber:server:dialback' from='%s' id='fake-%d' "
                "version='1.0'>" % (self.domain, n))

    async def _handle(self, r, w):
        self.tasks.add(asyncio.current_task())
        conn = {'tls': False, 'data': '', 'closed': False}
        self.conns.append(conn)
        n = len(self.conns)
        pos = 0

        async def upto(pattern, timeout=10):
            nonlocal pos
            rx = re.compile(pattern, re.S)
            deadline = time.monotonic() + timeout
            while True:
                m = rx.search(conn['data'], pos)
                if m:
                    pos = m.end()
                    return m
                chunk = await asyncio.wait_for(r.read(65536), max(0.1, deadline - time.monotonic()))
                if not chunk:
                    raise ConnectionError('closed by the peer')
                conn['data'] += chunk.decode('utf-8', 'replace')

        async def say(s):
            w.write(s.encode())
            await w.drain()

        header = r'<stream:stream\b[^>]*>'
        try:
            await upto(header)
            await say(self.header(n) + "<stream:features><starttls xmlns='urn:ietf:params:xml:"
                      "ns:xmpp-tls'><required/></starttls></stream:features>")
            await upto(r'<starttls\b[^>]*>')
            await say("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert)
            await asyncio.wait_for(w.start_tls(ctx), 10)
            conn['tls'] = True
            await upto(header)
            await say(self.header(n) + "<stream:features><mechanisms xmlns='urn:ietf:params:"
                      "xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>"
                      "</stream:features>")
            await upto(r'<auth\b[^>]*(?:/>|>.*?</auth>)')
            await say("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            await upto(header)
            await say(self.header(n) + '<stream:features/>')
            while True:                     # take stanzas until the peer goes
                await upto(r'(?!)', timeout=60)
        except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            w.close()
            conn['closed'] = True
            self.tasks.discard(asyncio.current_task())

    def got(self, since, pattern):
        """The matches of pattern in what every connection from number
        since on received."""
        return [m for c in self.conns[since:] for m in re.finditer(pattern, c['data'], re.S)]

    async def wait_got(self, since, pattern, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.got(since, pattern) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return self.got(since, pattern)

    async def wait_closed(self, since, timeout=5):
        """Waits until every connection from number since on has ended;
        whether they all did."""
        deadline = time.monotonic() + timeout
        while not all(c['closed'] for c in self.conns[since:]) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return all(c['closed'] for c in self.conns[since:])

    async def close(self):
        self.server.close()
        for t in list(self.tasks):
            t.cancel()
        await self.server.wait_closed()


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


async def refused_by_b(bob, evil, mid, what):
    """bob's message to evil.test, whose server presents a certificate b
    cannot verify (what) while b has dialback off: it bounces with
    remote-server-not-found (RFC 6120 8.3.3.15), and the server got the
    TLS handshake but neither an <auth/> nor the message."""
    since = len(evil.conns)
    send_id(bob, 'someone@evil.test', 'not for an impostor', mid)
    xt.is_(await error_for(bob, mid), ('remote-server-not-found', 'someone@evil.test'),
           'dialback off, %s: bob\'s message to evil.test bounces with '
           'remote-server-not-found' % what)
    closed = await evil.wait_closed(since)
    xt.ok(closed and any(c['tls'] for c in evil.conns[since:]) and
          not evil.got(since, r'<auth\b') and not evil.got(since, r'<message\b'),
          'evil.test saw b\'s TLS handshake, then neither an <auth/> nor a <message/>') \
        or xt.diag(evil.conns[since:])


async def main():
    d = xt.scratch_dir('t1000-certs')
    ca1 = make_ca(d, 'ca1')
    ca2 = make_ca(d, 'ca2')           # signed nothing: verifies nobody
    certs = {h: make_cert(d, 'ca1', h)
             for h in ('a.test', 'b.test', 'c.test', 'd.test', 'evil.test', 'denied.test')}

    a = xt.Server(name='t1000-a', hosts=['a.test'], start=False)
    b = xt.Server(name='t1000-b', hosts=['b.test', 'c.test', 'd.test'], start=False)
    dead_port = xt.free_ports(a.ip, 1)[0]         # nothing listens there
    silent = socket.socket()                       # accepts, says nothing
    silent.bind((a.ip, 0))
    silent.listen(8)
    silent_port = silent.getsockname()[1]
    dns_ip = xt.pick_loopback_ip(exclude=(a.ip, b.ip))
    # evil.test, as b's outgoing links see it: a receiving server that
    # takes any SASL EXTERNAL (sections 7 to 9). It presents evil.test's
    # certificate (from ca1, which b does not trust in sections 7 and 8),
    # or one from ca1 that names another domain.
    evil = FakeReceiver(xt.pick_loopback_ip(exclude=(a.ip, b.ip, dns_ip)), 'evil.test',
                        certs['evil.test'])
    await evil.start()
    (d / 'other').mkdir(exist_ok=True)
    other_name = make_cert(d / 'other', '../ca1', 'other.test')

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
    b.conf['certfiles'] = [certs['b.test'], certs['c.test'], certs['d.test']]
    a.conf['s2s_hosts'] = {'b.test': '%s:%d' % (b.ip, b.s2s_port),
                           'nowhere.test': '%s:%d' % (a.ip, dead_port),
                           'silent.test': '%s:%d' % (a.ip, silent_port)}
    b.conf['s2s_hosts'] = {'a.test': '%s:%d' % (a.ip, a.s2s_port),
                           'evil.test': '%s:%d' % (evil.ip, evil.port)}
    # b federates with everybody but denied.test (ejabberd-style rule).
    b.conf['s2s_access'] = 'federate'
    b.conf['access_rules'] = {'federate': [{'deny': 'blocked'}, {'allow': 'all'}]}
    b.conf['acl'] = {'blocked': {'server': 'denied.test'}}
    # c.test is found by SRV (RFC 6120 3.2.1), its target by name (A).
    dns = xt.FakeDNS(dns_ip, srv={
        '_xmpps-server._tcp.c.test': [(5, 0, b.s2s_tls_port, 'c-host.test')],
        '_xmpp-server._tcp.c.test': [(10, 0, b.s2s_port, 'c-host.test')],
    }, a={'c-host.test': [b.ip]})
    for s in (a, b):
        s.write_config()
        s.start()
    a.register('alice', 'alice-pw')
    b.register('bob', 'bob-pw')
    b.register('carol', 'carol-pw', host='c.test')
    b.register('dave', 'dave-pw', host='d.test')

    # 1. One CA: SASL EXTERNAL both ways. Two sessions of alice send at
    # once, before any link exists: one link carries them all
    # (doc/federation.md, "Routing": one link per pair, in order).
    alice = await xt.login_ok(a, 'alice', 'alice-pw', resource='r')
    alice2 = await xt.login_ok(a, 'alice', 'alice-pw', resource='r2')
    bob = await xt.login_ok(b, 'bob', 'bob-pw', resource='r')
    n = 10
    for i in range(n):
        for c in (alice, alice2):
            c.send('bob@b.test', 'burst %d' % i)
    got = {}
    for _ in range(2 * n):
        m = await bob.message(pred=lambda m: m['body'].startswith('burst '), timeout=10)
        if m is None:
            break
        got.setdefault(str(m['from']), []).append(m['body'])
    want = ['burst %d' % i for i in range(n)]
    xt.is_(got, {'alice@a.test/r': want, 'alice@a.test/r2': want},
           'two sessions\' bursts, sent while the link opens, arrive complete and in '
           'order, each from its full JID')
    la = await wait_links(a, lambda l: link(l, 'out', 'a.test', 'b.test'))
    lb = await wait_links(b, lambda l: link(l, 'in', 'b.test', 'a.test'))
    xt.is_(len(links_of(la, 'out', 'a.test', 'b.test')), 1,
           'xmppctl s2s on a: one link a.test -> b.test carried them') or xt.diag(la)
    xt.is_(len(links_of(lb, 'in', remote='a.test')), 1,
           'xmppctl s2s on b: one stream from a.test') or xt.diag(lb)
    xa, xb = link(la, 'out', 'a.test', 'b.test'), link(lb, 'in', 'b.test', 'a.test')
    xt.is_(xa and xa['auth'], 'external', 'xmppctl s2s on a: out a.test -> b.test by SASL EXTERNAL')
    xt.is_(xb and xb['auth'], 'external', 'xmppctl s2s on b: in b.test <- a.test by SASL EXTERNAL')
    xt.like(xa and xa['tls'] or '', r'^TLSv1\.[23]$', 'the link is TLS (%s)' % (xa and xa['tls']))
    xt.is_(xa and xa['out'], str(2 * n), 'a counts the %d stanzas out' % (2 * n))
    xt.is_(xb and xb['in'], str(2 * n), 'b counts the %d stanzas in' % (2 * n))
    bob.send('alice@a.test/r', 'and back')
    m = await alice.message(body='and back', timeout=10)
    xt.is_(m and str(m['from']), 'bob@b.test/r', 'bob@b.test -> alice@a.test arrives')
    await alice2.disconnect()

    # 2. Unreachable: nothing listening -> remote-server-not-found, from
    # the address the message was for (RFC 6120 8.3.1, 8.3.3.15).
    send_id(alice, 'someone@nowhere.test', 'anyone?', 'to-nowhere')
    xt.is_(await error_for(alice, 'to-nowhere'), ('remote-server-not-found', 'someone@nowhere.test'),
           'a domain where nothing listens: the message bounces with remote-server-not-found')

    # 3. A server that accepts and never answers -> remote-server-timeout
    # (8.3.3.16) once s2s_connect_timeout (3 s) has passed.
    t0 = time.monotonic()
    send_id(alice, 'someone@silent.test', 'hello?', 'to-silent')
    e = await error_for(alice, 'to-silent')
    took = time.monotonic() - t0
    xt.ok(e == ('remote-server-timeout', 'someone@silent.test') and 2.5 <= took < 8,
          'a silent server: the message bounces with remote-server-timeout after about '
          's2s_connect_timeout (%.1f s)' % took) or xt.diag(e)
    silent.close()

    # 4. SRV: c.test has no pin; the fake DNS sends a to b's direct TLS
    # port (XEP-0368) on c-host.test, where SNI picks c.test's certificate.
    carol = await xt.login_ok(b, 'carol', 'carol-pw', host='c.test', resource='r')
    alice.send('carol@c.test', 'via SRV')
    m = await carol.message(body='via SRV', timeout=10)
    xt.ok(m is not None, 'alice@a.test -> carol@c.test arrives, found by SRV')
    xt.ok(dns.asked('_xmpps-server._tcp.c.test', 33) and dns.asked('c-host.test', 1),
          'a asked for _xmpps-server._tcp.c.test and the A record of its target') \
        or xt.diag(dns.queries)
    la = await wait_links(a, lambda l: link(l, 'out', 'a.test', 'c.test'))
    xc = link(la, 'out', 'a.test', 'c.test')
    xt.is_(xc and xc['addr'], '%s:%d' % (b.ip, b.s2s_tls_port),
           'a connected to c-host.test\'s address on the direct TLS port (the lower priority)')
    xt.is_(xc and xc['auth'], 'external',
           'b took a.test\'s certificate for the pair c.test <- a.test (SASL EXTERNAL)')
    # Incoming virtual hosting: for SNI c.test, b presents c.test's own
    # certificate (RFC 6120 13.7.2.1); the handshake checks its name.
    try:
        raw = await RawS2S.open(b.ip, b.s2s_tls_port, client_ctx(ca1, alpn='xmpp-server'),
                                'c.test')
        raw.close()
        named = True
    except (ssl.SSLError, OSError) as e:
        named = e
    xt.is_(named, True, 'for SNI c.test, b presents a certificate naming c.test')
    carol.send('alice@a.test/r', 'from c.test')
    m = await alice.message(body='from c.test', timeout=10)
    xt.ok(m is not None, 'carol@c.test -> alice@a.test arrives')
    # Outgoing virtual hosting: b presents c.test's certificate on the
    # link from c.test, so a accepts SASL EXTERNAL for it (XEP-0178 3);
    # with a certificate that does not name c.test the link would fall
    # back to dialback and still deliver.
    lb = await wait_links(b, lambda l: link(l, 'out', 'c.test', 'a.test'))
    la = await wait_links(a, lambda l: link(l, 'in', 'a.test', 'c.test'))
    xt.is_((link(lb, 'out', 'c.test', 'a.test') or {}).get('auth'), 'external',
           'xmppctl s2s on b: out c.test -> a.test by SASL EXTERNAL (c.test\'s certificate)') \
        or xt.diag(lb)
    xt.is_((link(la, 'in', 'a.test', 'c.test') or {}).get('auth'), 'external',
           'xmppctl s2s on a: in a.test <- c.test by SASL EXTERNAL') or xt.diag(la)
    # Our outgoing links use one stream per pair (doc/federation.md):
    # b.test, c.test and d.test each have their own to a.test. (The
    # pairs of b.test and d.test hash to the same worker, whose one
    # table must keep them apart.)
    dave = await xt.login_ok(b, 'dave', 'dave-pw', host='d.test', resource='r')
    dave.send('alice@a.test/r', 'from d.test')
    m = await alice.message(body='from d.test', timeout=10)
    xt.ok(m is not None, 'dave@d.test -> alice@a.test arrives')
    await dave.disconnect()
    lb = await wait_links(b, lambda l: link(l, 'out', 'd.test', 'a.test'))
    la = await wait_links(a, lambda l: link(l, 'in', 'a.test', 'd.test'))
    xt.is_(sorted(l['local'] for l in links_of(lb, 'out', remote='a.test')),
           ['b.test', 'c.test', 'd.test'],
           'b has one link to a.test for each of its domains') or xt.diag(lb)
    ins = links_of(la, 'in', 'a.test')
    xt.ok(sorted(l['remote'] for l in ins) == ['b.test', 'c.test', 'd.test'] and
          len({l['addr'] for l in ins}) == 3, 'a sees them as three streams') or xt.diag(la)

    # 5. Raw peers: addressing checks on an incoming stream (RFC 6120
    # 8.1.1.2, 8.1.2.2, 4.9.3).
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

    # Authenticated for b.test only, a stanza to c.test (XEP-0220: each
    # pair of domains is authenticated on its own).
    raw, ok = await authenticated_raw(b, ca1, certs['evil.test'], 'evil.test')
    await raw.send("<message from='x@evil.test' to='carol@c.test'><body>not yet</body></message>")
    xt.ok(await raw.until(r'<not-authorized\b') is not None,
          'a stanza for a local domain the peer did not authenticate for: <not-authorized/>') \
        or xt.diag(raw.data[-800:])
    raw.close()

    # Several domains over one stream (XEP-0220 multiplexing, which
    # doc/federation.md says we accept): after EXTERNAL for b.test, a
    # db:result adds c.test; its certificate already proves evil.test
    # (XEP-0344), so the answer is valid at once.
    raw, ok = await authenticated_raw(b, ca1, certs['evil.test'], 'evil.test')
    await raw.send("<db:result from='evil.test' to='c.test'>%s</db:result>" % ('0' * 64))
    m = await raw.until(r"<db:result\b[^>]*\bfrom=['\"]c\.test['\"][^>]*\btype=['\"](\w+)")
    xt.is_(m and m.group(1), 'valid', 'a second domain on the same stream: db:result valid') \
        or xt.diag(raw.data[-800:])
    await raw.send("<message from='eve@evil.test/x' to='carol@c.test' type='chat'>"
                   "<body>mux to c</body></message>"
                   "<message from='eve@evil.test/x' to='bob@b.test' type='chat'>"
                   "<body>mux to b</body></message>")
    mc = await carol.message(body='mux to c', timeout=5)
    mb = await bob.message(body='mux to b', timeout=5)
    xt.ok(mc is not None and mb is not None,
          'on that one stream, stanzas to both domains are delivered')
    lb = await wait_links(b, lambda l: len(links_of(l, 'in', remote='evil.test')) == 2)
    mux = links_of(lb, 'in', remote='evil.test')
    xt.ok(sorted(l['local'] for l in mux) == ['b.test', 'c.test'] and
          len({l['addr'] for l in mux}) == 1,
          'xmppctl s2s on b: two pairs, one address (one stream)') or xt.diag(lb)
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

    # s2s_access: b refuses denied.test, whose certificate is as good as
    # evil.test's. SASL EXTERNAL fails (RFC 6120 6.5.10 not-authorized),
    # dialback is refused (XEP-0220 errors: forbidden), and nothing it
    # sends is taken.
    raw = await RawS2S.open(b.ip, b.s2s_port)
    await raw.header('denied.test', 'b.test')
    await raw.starttls(client_ctx(ca1, certs['denied.test']), 'b.test')
    await raw.header('denied.test', 'b.test')
    await raw.external('denied.test')
    xt.is_(xt.sasl_failure(raw.since_mark()), 'not-authorized',
           's2s_access denies denied.test: SASL EXTERNAL fails with <not-authorized/>') \
        or xt.diag(raw.data[-800:])
    await raw.send("<db:result from='denied.test' to='b.test'>%s</db:result>" % ('0' * 64))
    m = await raw.until(r"<db:result\b[^>]*\btype=['\"]error['\"].*?</db:result>")
    xt.like(m and m.group(0) or '', r'<forbidden\b',
            'and dialback is answered with an error, <forbidden/>') or xt.diag(raw.data[-800:])
    await raw.send("<message from='x@denied.test' to='bob@b.test'><body>denied</body></message>")
    xt.ok(await raw.until(r'<not-authorized\b') is not None,
          'a stanza from it then: <not-authorized/>') or xt.diag(raw.data[-800:])
    raw.close()
    # Nor does b send to it: the bounce says forbidden (RFC 6120 8.3.3.4),
    # not that the server was not found.
    send_id(bob, 'x@denied.test', 'to a denied domain', 'to-denied')
    xt.is_(await error_for(bob, 'to-denied'), ('forbidden', 'x@denied.test'),
           'bob\'s message to denied.test bounces with <forbidden/>')
    m = await bob.message(body='denied', timeout=0.5)
    xt.ok(m is None, 'nothing from denied.test was delivered')

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

    # b cannot verify evil.test's certificate (from ca1; b trusts ca2),
    # but dialback is allowed: b still takes SASL EXTERNAL from the
    # receiving server, whose identity then rests on DNS (here the
    # s2s_hosts pin) as it would with dialback (XEP-0220 1: dialback
    # authenticates only the initiating server). xmppctl s2s must not
    # say that certificates authenticated the link.
    since = len(evil.conns)
    send_id(bob, 'someone@evil.test', 'weakly authenticated', 'to-evil-weak')
    got = await evil.wait_got(since, r"<message\b[^>]*\bid=['\"]to-evil-weak['\"]")
    xt.ok(got and evil.got(since, r'<auth\b'),
          'dialback allowed, evil.test\'s certificate unverified: b still authenticates by '
          'SASL EXTERNAL and sends the message') or xt.diag(evil.conns[since:])
    lb = await wait_links(b, lambda l: link(l, 'out', 'b.test', 'evil.test'))
    xt.is_((link(lb, 'out', 'b.test', 'evil.test') or {}).get('auth'), 'external-unverified',
           'xmppctl s2s on b: out b.test -> evil.test is external-unverified, not external') \
        or xt.diag(lb)

    # 8. s2s_dialback: false on b, certificates still unverifiable: b
    # accepts certificate authentication only (doc/configuration.md), so
    # neither server can authenticate to the other.
    await xt.disconnect_all(alice, bob)
    b.stop()
    b.conf['s2s_dialback'] = False
    b.write_config()
    b.start()
    alice = await xt.login_ok(a, 'alice', 'alice-pw', resource='r')
    bob = await xt.login_ok(b, 'bob', 'bob-pw', resource='r')
    raw = await RawS2S.open(b.ip, b.s2s_port)
    await raw.header('a.test', 'b.test')
    await raw.starttls(client_ctx(ca1), 'b.test')
    feat = xt.parse_features(raw.since_mark() if await raw.header('a.test', 'b.test') else '')
    xt.ok(feat is not None and feat.find('{urn:xmpp:features:dialback}dialback') is None,
          'dialback off: b does not offer the dialback feature') \
        or xt.diag(raw.data[-800:])
    await raw.send("<db:result from='a.test' to='b.test'>%s</db:result>" % ('0' * 64))
    m = await raw.until(r"<db:result\b[^>]*\btype=['\"]error['\"].*?</db:result>")
    xt.like(m and m.group(0) or '', r'<policy-violation\b',
            'dialback off: a db:result is answered with an error, <policy-violation/>') \
        or xt.diag(raw.data[-800:])
    raw.close()
    send_id(alice, 'bob@b.test', 'dialback is off', 'to-no-dialback')
    xt.is_(await error_for(alice, 'to-no-dialback'), ('remote-server-not-found', 'bob@b.test'),
           'dialback off on b: alice\'s message, which a could only authenticate by '
           'dialback, bounces with remote-server-not-found')
    send_id(bob, 'alice@a.test/r', 'no dialback from here', 'from-no-dialback')
    xt.is_(await error_for(bob, 'from-no-dialback'), ('remote-server-not-found', 'alice@a.test/r'),
           'dialback off on b: bob\'s message to a, whose certificate b cannot verify, '
           'bounces with remote-server-not-found')
    m = await bob.message(body='dialback is off', timeout=0.5)
    xt.ok(m is None, 'and bob did not get alice\'s message')

    # Nor does b send to a receiving server it cannot authenticate
    # (RFC 6120 13.7.2, XEP-0178 3): evil.test's certificate is from ca1,
    # which b does not trust now, and evil.test would take any SASL
    # EXTERNAL. Without dialback nothing else could authenticate it.
    await refused_by_b(bob, evil, 'to-evil-ca', 'a certificate from a CA b does not trust')

    # 9. b trusts ca1 again, dialback still off: a certificate that names
    # another domain is refused the same way (RFC 6125 6.4); evil.test's
    # own is the positive control: the same server, the same answers, and
    # the message goes through, so the refusals above were about the
    # certificate.
    await xt.disconnect_all(bob)
    b.stop()
    b.conf['ca_file'] = ca1
    b.write_config()
    b.start()
    bob = await xt.login_ok(b, 'bob', 'bob-pw', resource='r')
    evil.cert = other_name
    await refused_by_b(bob, evil, 'to-evil-name', 'a certificate for other.test')
    evil.cert = certs['evil.test']
    since = len(evil.conns)
    send_id(bob, 'someone@evil.test', 'to the right server', 'to-evil-good')
    got = await evil.wait_got(since, r"<message\b[^>]*\bid=['\"]to-evil-good['\"]")
    xt.ok(got, 'dialback off, evil.test\'s certificate verifies: bob\'s message reaches it') \
        or xt.diag(evil.conns[since:])
    lb = await wait_links(b, lambda l: link(l, 'out', 'b.test', 'evil.test'))
    xt.is_((link(lb, 'out', 'b.test', 'evil.test') or {}).get('auth'), 'external',
           'xmppctl s2s on b: out b.test -> evil.test by certificates (external)') or xt.diag(lb)

    await xt.disconnect_all(alice, bob)
    dns.close()
    await evil.close()
    xt.is_(a.stop(), 0, 'a exits 0')
    xt.is_(b.stop(), 0, 'b exits 0')


xt.run(main, timeout=240)
