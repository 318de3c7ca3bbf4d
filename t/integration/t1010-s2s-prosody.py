#!/usr/bin/python3
"""t1010-s2s-prosody: federation between xmppd (x.s2stest) and Prosody (p.s2stest).

Prosody runs in the foreground with a configuration, data directory and
ports of its own on a loopback address. xmppd finds Prosody through
s2s_hosts; Prosody finds xmppd through DNS: its resolver (libunbound) is
given a resolv.conf that names the test's own DNS server, which answers
_xmpp-server._tcp.x.s2stest with xmppd's s2s port, and a hosts file for the
SRV target's address. No traffic leaves the loopback. The domains are not
under .test: libunbound answers the special-use names of RFC 6761 (test.,
invalid., ...) itself, with NXDOMAIN, without asking any server.

Without Prosody it fails in CI (CI=true) and is skipped on a developer's
machine (xt.require_peer).
"""

import asyncio
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

PROSODY = shutil.which('prosody') or '/usr/bin/prosody'
PROSODYCTL = shutil.which('prosodyctl') or '/usr/bin/prosodyctl'


class Prosody:
    """Enough of xt.Server for xt.login(): ip, c2s_port, host, SSL context."""

    def __init__(self, d, host, ca, cert, key, dns_ip, hosts_file):
        self.dir = d
        self.host = host
        self.ip = xt.pick_loopback_ip()
        self.c2s_port, self.s2s_port = xt.free_ports(self.ip, 2)
        self.ca_file = ca
        self.data = d / 'data'
        self.data.mkdir(exist_ok=True)
        (d / 'resolv.conf').write_text('nameserver %s\n' % dns_ip)
        self.cfg = d / 'prosody.cfg.lua'
        self.log_path = d / 'prosody.log'
        self.cert, self.key, self.hosts_file = cert, key, hosts_file
        self.write_cfg(ca)
        self.proc = None

    def write_cfg(self, s2s_ca):
        """s2s_ca: the CAs Prosody trusts for other servers."""
        d = self.dir
        self.cfg.write_text('''
pidfile = "%(dir)s/prosody.pid"
data_path = "%(data)s"
daemonize = false
run_as_root = true
interfaces = { "%(ip)s" }
c2s_ports = { %(c2s)d }
s2s_ports = { %(s2s)d }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
admin_socket = "%(dir)s/prosody.sock"
log = { { levels = { min = "debug" }, to = "file", filename = "%(dir)s/prosody.log" } }
modules_enabled = { "roster", "saslauth", "tls", "dialback", "disco", "ping", "presence", "message" }
modules_disabled = { "s2s_bidi", "offline", "c2s_limits", "http" }
plugin_paths = { }
authentication = "internal_hashed"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
ssl = { cafile = "%(ca)s" }
unbound = { resolvconf = "%(dir)s/resolv.conf", hoststxt = "%(hosts)s" }
use_ipv6 = false
VirtualHost "%(host)s"
  ssl = { certificate = "%(cert)s", key = "%(key)s" }
''' % {'dir': d, 'data': self.data, 'ip': self.ip, 'c2s': self.c2s_port,
       's2s': self.s2s_port, 'ca': s2s_ca, 'cert': self.cert, 'key': self.key,
       'host': self.host, 'hosts': self.hosts_file})

    def ctl(self, *args):
        r = subprocess.run([PROSODYCTL, '--config', str(self.cfg)] + list(args),
                           capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout + r.stderr

    def start(self, timeout=15):
        self.logf = open(self.dir / 'prosody.out', 'ab')
        self.proc = subprocess.Popen([PROSODY, '--config', str(self.cfg), '-F'],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, cwd=str(self.dir))
        import socket
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise xt.HarnessError('prosody exited with %s:\n%s' % (
                    self.proc.returncode, self.log()[-3000:]))
            try:
                with socket.create_connection((self.ip, self.c2s_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise xt.HarnessError('prosody did not listen:\n%s' % self.log()[-3000:])

    def log(self):
        out = ''
        for f in ('prosody.out', 'prosody.log'):
            try:
                out += (self.dir / f).read_text(errors='replace')
            except OSError:
                pass
        return out

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode if self.proc else None

    def client_ssl_context(self, tls12=False):
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=self.ca_file)
        return ctx


async def main():
    d = xt.scratch_dir('t1010-certs')
    ca1 = xt.make_ca(d, 'ca1')
    certs = {n: xt.make_cert(d, 'ca1', n) for n in ('x.s2stest', 'p.s2stest')}

    x = xt.Server(name='t1010-x', hosts=['x.s2stest'], start=False)
    x.s2s_port = xt.free_ports(x.ip, 1)[0]
    x.ca_file = ca1
    x.conf['listen'].append({'port': x.s2s_port, 'ip': x.ip, 'module': 's2s'})
    x.conf['certfiles'] = [certs['x.s2stest']]
    x.conf['ca_file'] = ca1
    x.conf['module_dir'] = xt.MODULE_DIR
    x.conf['modules'] = {'mod_disco': {}, 'mod_roster': {}, 'mod_offline': {}}

    dns_ip = xt.pick_loopback_ip(exclude=(x.ip,))
    pd = xt.scratch_dir('t1010-prosody')
    hosts_file = pd / 'hosts'
    hosts_file.write_text('%s xmppd-host.s2stest\n' % x.ip)
    dns = xt.FakeDNS(dns_ip, {'_xmpp-server._tcp.x.s2stest': [(0, 0, x.s2s_port, 'xmppd-host.s2stest')]})
    p = Prosody(pd, 'p.s2stest', ca1, str(d / 'p.s2stest.crt'), str(d / 'p.s2stest.key'), dns_ip,
                hosts_file)
    x.conf['s2s_hosts'] = {'p.s2stest': '%s:%d' % (p.ip, p.s2s_port)}
    x.write_config()
    x.start()
    x.register('alice', 'alice-pw')
    code, out = p.ctl('register', 'pat', 'p.s2stest', 'pat-pw')
    if code != 0:
        raise xt.HarnessError('prosodyctl register: %s' % out)
    p.start()
    try:
        alice = await xt.login_ok(x, 'alice', 'alice-pw', resource='r')
        pat = await xt.login(p, 'pat', 'pat-pw', resource='r', mech=None)
        if not pat.ok:
            raise xt.HarnessError('login to prosody: %s\n%s' % (pat.describe(), p.log()[-3000:]))

        # xmppd -> Prosody.
        alice.send('pat@p.s2stest', 'hello prosody')
        m = await pat.message(body='hello prosody', timeout=15)
        xt.ok(m is not None, 'alice@x.s2stest -> pat@p.s2stest arrives at Prosody')
        xt.is_(str(m['from']) if m else None, 'alice@x.s2stest/r', 'from alice\'s full JID')

        # Prosody -> xmppd (Prosody resolves x.s2stest by SRV through our DNS).
        pat.send('alice@x.s2stest/r', 'hello xmppd')
        m = await alice.message(body='hello xmppd', timeout=15)
        xt.ok(m is not None, 'pat@p.s2stest -> alice@x.s2stest arrives at xmppd')
        xt.ok(('_xmpp-server._tcp.x.s2stest', 33) in dns.queries,
              'Prosody found xmppd by SRV (%s)' % dns.queries)

        links = await xt.wait_links(x, lambda l: xt.s2s_link(l, 'out', 'x.s2stest', 'p.s2stest')
                                   and xt.s2s_link(l, 'in', 'x.s2stest', 'p.s2stest'))
        lo, li = xt.s2s_link(links, 'out', 'x.s2stest', 'p.s2stest'), xt.s2s_link(links, 'in', 'x.s2stest', 'p.s2stest')
        xt.ok(lo is not None and lo['auth'] in ('external', 'dialback'),
              'xmppctl s2s: out x.s2stest -> p.s2stest (%s)' % (lo and lo['auth'])) or xt.diag(links)
        xt.ok(li is not None and li['auth'] in ('external', 'dialback'),
              'xmppctl s2s: in x.s2stest <- p.s2stest (%s)' % (li and li['auth'])) or xt.diag(links)
        xt.is_(lo and lo['auth'], 'external', 'Prosody accepts our certificate (SASL EXTERNAL)')

        # An IQ across and its answer back (Prosody answers ping itself).
        r = await alice.iq('get', 'p.s2stest', "<ping xmlns='urn:xmpp:ping'/>", timeout=10)
        xt.is_(r['type'] if r is not None else None, 'result', 'a ping to p.s2stest is answered')

        # A presence subscription both ways with Prosody (RFC 6121 3), then
        # presence in both directions.
        def item(c, j):
            r = c.xmpp.client_roster
            return (r[j]['subscription'], r[j]['pending_out']) if j in r else None

        pat.xmpp.auto_authorize = True
        pat.xmpp.auto_subscribe = True
        alice.xmpp.auto_authorize = True
        await alice.xmpp.get_roster()
        await pat.xmpp.get_roster()
        alice.xmpp.send_presence(pto='pat@p.s2stest', ptype='subscribe')
        both = False
        for _ in range(150):
            if item(alice, 'pat@p.s2stest') == ('both', False) and \
                    item(pat, 'alice@x.s2stest') == ('both', False):
                both = True
                break
            await asyncio.sleep(0.1)
        xt.ok(both, 'subscription handshake with Prosody: both rosters say both') or \
            xt.diag(item(alice, 'pat@p.s2stest'), item(pat, 'alice@x.s2stest'))
        alice.xmpp.send_presence(pstatus='from xmppd')
        pat.xmpp.send_presence(pstatus='from prosody')
        m = await alice.presence(pred=lambda q: q['from'].bare == 'pat@p.s2stest' and
                                 q['status'] == 'from prosody', timeout=10)
        xt.ok(m is not None, 'alice (xmppd) receives pat\'s presence from Prosody')
        m = await pat.presence(pred=lambda q: q['from'].bare == 'alice@x.s2stest' and
                               q['status'] == 'from xmppd', timeout=10)
        xt.ok(m is not None, 'pat (Prosody) receives alice\'s presence from xmppd')

        # Offline: pat writes while alice is away; xmppd stores it and
        # delivers it, stamped, at her next login.
        await alice.disconnect()
        await asyncio.sleep(0.5)
        pat.send('alice@x.s2stest', 'while you were out')
        await asyncio.sleep(1.5)
        alice = await xt.login_ok(x, 'alice', 'alice-pw', resource='r2')
        m = await alice.message(body='while you were out', timeout=10)
        xt.ok(m is not None, 'a message from Prosody to offline alice is delivered at her next login')
        delay = m.xml.find('{urn:xmpp:delay}delay') if m is not None else None
        xt.ok(delay is not None and delay.get('from') == 'x.s2stest',
              'with xmppd\'s delay stamp')

        # A message to a user Prosody does not have comes back as an error.
        alice.send('nobody@p.s2stest', 'anyone?')
        m = await alice.message(mtype='error', timeout=10)
        xt.is_(m['error']['condition'] if m else None, 'service-unavailable',
               'Prosody\'s bounce for an unknown user reaches alice')

        # Dialback both ways: each side trusts a CA that signed nobody.
        await xt.disconnect_all(alice, pat)
        p.stop()
        x.stop()
        ca2 = xt.make_ca(d, 'ca2')
        p.write_cfg(ca2)
        x.conf['ca_file'] = ca2
        x.write_config()
        x.start()
        p.start()
        alice = await xt.login_ok(x, 'alice', 'alice-pw', resource='r')
        pat = await xt.login(p, 'pat', 'pat-pw', resource='r', mech=None)
        alice.send('pat@p.s2stest', 'dialback to prosody')
        m = await pat.message(body='dialback to prosody', timeout=15)
        xt.ok(m is not None, 'with dialback: xmppd -> Prosody arrives')
        pat.send('alice@x.s2stest/r', 'dialback to xmppd')
        m = await alice.message(body='dialback to xmppd', timeout=15)
        xt.ok(m is not None, 'with dialback: Prosody -> xmppd arrives')
        links = await xt.wait_links(x, lambda l: xt.s2s_link(l, 'out', 'x.s2stest', 'p.s2stest')
                                   and xt.s2s_link(l, 'in', 'x.s2stest', 'p.s2stest'))
        lo = xt.s2s_link(links, 'out', 'x.s2stest', 'p.s2stest')
        li = xt.s2s_link(links, 'in', 'x.s2stest', 'p.s2stest')
        xt.is_(lo and lo['auth'], 'dialback', 'xmppctl s2s: out by dialback') or xt.diag(links)
        xt.is_(li and li['auth'], 'dialback', 'xmppctl s2s: in by dialback') or xt.diag(links)
        await xt.disconnect_all(alice, pat)
    except Exception:
        xt.diag('prosody log:\n' + p.log()[-4000:])
        raise
    finally:
        p.stop()
        dns.close()
    xt.is_(x.stop(), 0, 'xmppd exits 0')


xt.require_peer('Prosody', PROSODY, PROSODYCTL)
xt.run(main, timeout=200)
