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

Then the order of SRV records (RFC 2782), over sixty domains whose four
records are at two priorities, with weights 0, 1 and 1000 at the first and
1000 at the second. Nothing listens at their addresses, so every record is
tried in turn, and the order in which their names are asked of the DNS is
the order xmppd drew: the second priority always last, weight 1000 almost
always first, and then (the draw over weights 0 and 1, with weight 0
first in the list) weight 0 before weight 1 about half of the time.
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

ORDERED = 60
DOMAINS = ('srv.test', 'next.test', 'plain.test', 'v6.test', 'hosts.test')


def send_id(c, to, body, mid):
    m = c.xmpp.make_message(mto=to, mbody=body, mtype='chat')
    m['id'] = mid
    m.send()


def tried_order(dns, i):
    """The targets of domain oI.test in the order their addresses were
    asked (A or AAAA; the first query of each name counts)."""
    order = []
    for name, qtype in dns.queries:
        parts = name.split('.')
        if qtype in (1, 28) and len(parts) == 3 and parts[1] == 'o%d' % i \
                and parts[0] not in order:
            order.append(parts[0])
    return order


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

    ip_dead = xt.pick_loopback_ip(exclude=(a.ip, b.ip, dns_ip))
    wport = xt.free_ports(ip_dead, 1)[0]               # nothing listens there
    srv = {
        '_xmpp-server._tcp.srv.test': [(10, 0, b.s2s_port, 'xmpp.srv.test')],
        '_xmpp-server._tcp.next.test': [(5, 0, dead_port, 'xmpp.srv.test'),
                                        (10, 0, b.s2s_port, 'xmpp.srv.test')],
    }
    arecs = {'xmpp.srv.test': [b.ip], 'plain.test': [b.ip]}
    for i in range(ORDERED):
        srv['_xmpp-server._tcp.o%d.test' % i] = [
            (10, 0, wport, 'zero.o%d.test' % i), (10, 1, wport, 'one.o%d.test' % i),
            (10, 1000, wport, 'heavy.o%d.test' % i), (20, 1000, wport, 'late.o%d.test' % i)]
        for k in ('zero', 'one', 'heavy', 'late'):
            arecs['%s.o%d.test' % (k, i)] = [ip_dead]
    dns = xt.FakeDNS(dns_ip, srv=srv, a=arecs, aaaa={'v6.test': ['::1']})
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

    # RFC 2782: priorities, then weights, over many links.
    for i in range(ORDERED):
        send_id(alice, 'u@o%d.test' % i, 'order', 'o%d' % i)
    bounced = await asyncio.gather(*(alice.message(
        pred=lambda m, i=i: m['id'] == 'o%d' % i, mtype='error', timeout=20)
        for i in range(ORDERED)))
    orders = [tried_order(dns, i) for i in range(ORDERED)]
    xt.ok(all(bounced) and all(sorted(o) == ['heavy', 'late', 'one', 'zero'] for o in orders),
          'each of the %d domains: all four records tried before the bounce' % ORDERED) \
        or xt.diag(orders)
    xt.is_([o for o in orders if o[-1:] != ['late']], [],
           'the record of the second priority is always tried last')
    heavy_first = [o for o in orders if o[:1] == ['heavy']]
    zero_second = sum(1 for o in heavy_first if o[1] == 'zero')
    xt.note('weight 1000 first: %d of %d; then weight 0 before weight 1: %d'
            % (len(heavy_first), ORDERED, zero_second))
    # P(weight 1000 first) = 1000/1002: fewer than 55 of 60 happens once in
    # 3 * 10^8 runs; a draw that ignored weights would give 20 or so.
    xt.ok(len(heavy_first) >= 55, 'weight 1000 is drawn first %d times of %d'
          % (len(heavy_first), ORDERED))
    # Then weights 0 and 1, weight 0 at the head of the list: a draw of 0
    # (one time in two) takes it. Fewer than a fifth (12 of 60) happens
    # once in 10^5 runs or less often; a draw that left weight 0 behind
    # weight 1 gives none.
    xt.ok(heavy_first and zero_second >= len(heavy_first) // 5, 'then weight 0 comes before weight 1 %d times of %d'
          % (zero_second, len(heavy_first)))

    await xt.disconnect_all(alice, *bobs.values())
    dns.close()
    xt.is_(a.stop(), 0, 'a exits 0')
    xt.is_(b.stop(), 0, 'b exits 0')


xt.run(main, timeout=90)
