#!/usr/bin/python3
"""t1040-s2s-dns: how xmppd finds another server (RFC 6120 3.2, RFC 2782),
with names throughout, never address literals.

The test runs in network and mount namespaces of its own (as root), so
that it has a loopback interface to itself (port 53 for its DNS server,
port 5269 for the fallback of RFC 6120 3.2.2) and can put a file of its
own over /etc/hosts that only it and its xmppd see. a.test sends; b serves
a domain for each way of being found:

- srv.test: an SRV record whose target is a name with an A record;
- next.test: two SRV records, the first to a port where nothing listens:
  the next one is tried (3.2.1 step 8);
- plain.test: no SRV record, an A record: the domain itself on 5269
  (3.2.2);
- v6.test: no SRV record, only an AAAA record (::1);
- hosts.test: in nobody's DNS, only in the test's /etc/hosts.

Then SRV weights (RFC 2782): sixty domains whose records are one of
weight 0 and one of weight 9 at one priority, and one of a higher priority
number. The first connection of each link shows which record was drawn:
the higher priority number never, the weight 0 record seldom (one time in
ten, when the draw is zero).
"""

import asyncio
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

WEIGHTED = 60
DOMAINS = ('srv.test', 'next.test', 'plain.test', 'v6.test', 'hosts.test')


def send_id(c, to, body, mid):
    m = c.xmpp.make_message(mto=to, mbody=body, mtype='chat')
    m['id'] = mid
    m.send()


class FirstConnections:
    """TCP listeners that read each connection's stream header, note which
    address it reached for which domain ('to'), and close it."""

    def __init__(self):
        self.seen = []          # (domain, listener address), in order
        self.servers = []

    async def listen(self, ip, port):
        self.servers.append(await asyncio.start_server(
            lambda r, w, ip=ip: self._conn(r, w, ip), ip, port))

    async def _conn(self, r, w, ip):
        data = b''
        try:
            while b'>' not in data.split(b'<stream:stream', 1)[-1] or b'<stream:stream' not in data:
                chunk = await asyncio.wait_for(r.read(4096), 5)
                if not chunk:
                    break
                data += chunk
        except (asyncio.TimeoutError, ConnectionError):
            pass
        m = re.search(rb"<stream:stream\b[^>]*\bto=['\"]([^'\"]+)", data)
        self.seen.append((m.group(1).decode() if m else None, ip))
        w.close()

    def first(self):
        """domain -> the address its first connection reached."""
        out = {}
        for domain, ip in self.seen:
            out.setdefault(domain, ip)
        return out

    def close(self):
        for s in self.servers:
            s.close()


async def main():
    xt.private_namespaces()
    d = xt.scratch_dir('t1040')
    a = xt.Server(name='t1040-a', hosts=['a.test'], start=False)
    b = xt.Server(name='t1040-b', hosts=['b.test'] + list(DOMAINS), start=False)
    dns_ip = xt.pick_loopback_ip(exclude=(a.ip, b.ip))
    a.s2s_port = xt.free_ports(a.ip, 1)[0]
    b.s2s_port, dead_port = xt.free_ports(b.ip, 2)
    # Each server's certificate comes from its own CA; both trust both
    # (SASL EXTERNAL both ways, no dialback to resolve anything else).
    bundle = d / 'cas.pem'
    bundle.write_text(open(a.ca_file).read() + open(b.ca_file).read())
    a.conf['listen'] += [{'port': a.s2s_port, 'ip': a.ip, 'module': 's2s'}]
    b.conf['listen'] += [{'port': b.s2s_port, 'ip': b.ip, 'module': 's2s'},
                         {'port': 5269, 'ip': b.ip, 'module': 's2s'},
                         {'port': 5269, 'ip': '::1', 'module': 's2s'}]
    for s in (a, b):
        s.conf['ca_file'] = str(bundle)
        s.conf['s2s_connect_timeout'] = 5
        s.conf['s2s_resolv_conf'] = str(d / 'resolv.conf')
    (d / 'resolv.conf').write_text('nameserver %s\n' % dns_ip)
    b.conf['s2s_hosts'] = {'a.test': '%s:%d' % (a.ip, a.s2s_port)}

    # /etc/hosts, for this namespace only (xmppd reads it through evdns).
    hosts = d / 'hosts'
    hosts.write_text('127.0.0.1 localhost\n::1 localhost\n%s xmpp.hosts.test hosts.test\n' % b.ip)
    xt.bind_mount(hosts, '/etc/hosts')

    ip_zero, ip_nine, ip_late = (xt.pick_loopback_ip(exclude=(a.ip, b.ip, dns_ip))
                                 for _ in range(3))
    wport = xt.free_ports(ip_zero, 1)[0]
    srv = {
        '_xmpp-server._tcp.srv.test': [(10, 0, b.s2s_port, 'xmpp.srv.test')],
        '_xmpp-server._tcp.next.test': [(5, 0, dead_port, 'xmpp.srv.test'),
                                        (10, 0, b.s2s_port, 'xmpp.srv.test')],
    }
    for i in range(WEIGHTED):
        srv['_xmpp-server._tcp.w%d.test' % i] = [(10, 0, wport, 'zero.w.test'),
                                                 (10, 9, wport, 'nine.w.test'),
                                                 (20, 100, wport, 'late.w.test')]
    dns = xt.FakeDNS(dns_ip, srv=srv,
                     a={'xmpp.srv.test': [b.ip], 'plain.test': [b.ip], 'zero.w.test': [ip_zero],
                        'nine.w.test': [ip_nine], 'late.w.test': [ip_late]},
                     aaaa={'v6.test': ['::1']})
    for s in (a, b):
        s.write_config()
        s.start()
    a.register('alice', 'alice-pw')
    for dom in DOMAINS:
        b.register('bob', 'bob-pw', host=dom)
    alice = await xt.login_ok(a, 'alice', 'alice-pw', resource='r')
    bobs = {}
    for dom in DOMAINS:
        bobs[dom] = await xt.login_ok(b, 'bob', 'bob-pw', host=dom, resource='r')

    expect = {'srv.test': '%s:%d' % (b.ip, b.s2s_port),
              'next.test': '%s:%d' % (b.ip, b.s2s_port),
              'plain.test': '%s:5269' % b.ip,
              'v6.test': '[::1]:5269',
              'hosts.test': '%s:5269' % b.ip}
    how = {'srv.test': 'SRV, then the A record of its target',
           'next.test': 'the second SRV record when the first refuses',
           'plain.test': 'no SRV: the A record of the domain, port 5269',
           'v6.test': 'no SRV: the AAAA record of the domain, port 5269',
           'hosts.test': 'no DNS at all: /etc/hosts, port 5269'}
    for dom in DOMAINS:
        send_id(alice, 'bob@%s' % dom, 'found %s' % dom, 'to-' + dom)
    got = await asyncio.gather(*(bobs[dom].message(pred=lambda m, dom=dom: m['id'] == 'to-' + dom,
                                                   timeout=10) for dom in DOMAINS))
    links = await xt.wait_links(a, lambda l: all(xt.s2s_link(l, 'out', 'a.test', dom)
                                                 for dom in DOMAINS), timeout=3)
    for dom, m in zip(DOMAINS, got):
        l = xt.s2s_link(links, 'out', 'a.test', dom)
        xt.ok(m is not None and l is not None and l['addr'] == expect[dom],
              '%s, found by %s: the message arrives over a link to %s'
              % (dom, how[dom], expect[dom])) \
            or xt.diag(m, l, [q for q in dns.queries if dom in q[0]])
    xt.is_(dns.asked('hosts.test', 1) + dns.asked('hosts.test', 28), 0,
           'hosts.test was not asked of the DNS (/etc/hosts answered)')

    # RFC 2782 weights and priorities, over many links.
    fc = FirstConnections()
    for ip in (ip_zero, ip_nine, ip_late):
        await fc.listen(ip, wport)
    t0 = time.monotonic()
    for i in range(WEIGHTED):
        send_id(alice, 'u@w%d.test' % i, 'weights', 'w%d' % i)
    while len(fc.first()) < WEIGHTED and time.monotonic() - t0 < 30:
        await asyncio.sleep(0.1)
    first = fc.first()
    xt.is_(sorted(first), sorted('w%d.test' % i for i in range(WEIGHTED)),
           'each of the %d domains was connected to' % WEIGHTED)
    picks = {ip: sum(1 for v in first.values() if v == ip) for ip in (ip_zero, ip_nine, ip_late)}
    xt.note('first connections: weight 0: %d, weight 9: %d, priority 20: %d'
            % (picks[ip_zero], picks[ip_nine], picks[ip_late]))
    xt.is_(picks[ip_late], 0, 'the record with the higher priority number is never tried first')
    # P(weight 0 first) = 1/10 (a draw of 0 in 0..9): 6 expected; 18 or
    # more happens once in 70000 runs, while a draw that ignored weights
    # (1/2) would give fewer than 18 once in 2000.
    xt.ok(picks[ip_zero] < 18, 'the weight 0 record comes first seldom: %d of %d'
          % (picks[ip_zero], WEIGHTED))
    fc.close()

    await xt.disconnect_all(alice, *bobs.values())
    dns.close()
    xt.is_(a.stop(), 0, 'a exits 0')
    xt.is_(b.stop(), 0, 'b exits 0')


xt.run(main, timeout=90)
