#!/usr/bin/python3
"""t1810-extdisco: XEP-0215 External Service Discovery (mod_extdisco), with
TURN credentials checked by a real TURN server.

Debian's coturn runs on 127.0.0.1 with use-auth-secret (the TURN REST API:
the credential is "EXPIRY:user@host" and base64(HMAC-SHA1(secret, it))),
sharing its secret with xmppd's turn_secret. alice asks xmppd for the
services and their credentials with slixmpp, and coturn's own test client,
turnutils_uclient, allocates a relay with them, over UDP and over TCP (-y:
the client talks to itself through two relays, so no outside peer).

Checked: the disco#info feature (XEP-0215 5); the services and their
attributes (3.1), those of one type (3.2); the credentials (3.3) and the
errors (unknown service, a request without host, an unknown element, a
set; forbidden for a component and for a user the `access` rule denies);
what coturn says: the credentials allocate, the same password with
another user's name does not, nor a wrong password; after a reload with
credentials_ttl 15, fresh credentials allocate and, once their expiry has
passed, the same ones are refused; a restricted service without
turn_secret is refused at start.
"""

import asyncio
import base64
import calendar
import hashlib
import hmac
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from slixmpp.componentxmpp import ComponentXMPP  # noqa: E402
from slixmpp.exceptions import IqError, IqTimeout  # noqa: E402

ET = xt.ET
NS = 'urn:xmpp:extdisco:2'
NS_INFO = 'http://jabber.org/protocol/disco#info'
SECRET = 'coturn-shared-secret-1810'
TURNSERVER = '/usr/bin/turnserver'
UCLIENT = '/usr/bin/turnutils_uclient'
COMP = 'comp.xmppd.test'
COMP_SECRET = 'comp-secret'
SHORT_TTL = 15  # well past the ~6 s a turnutils_uclient run takes


def services_conf(port):
    return ['type=stun host=127.0.0.1 port=%d transport=udp' % port,
            'type=turn host=127.0.0.1 port=%d transport=udp restricted=true name=relay-udp' % port,
            'type=turn host=127.0.0.1 port=%d transport=tcp restricted=true' % port]


# -- coturn --------------------------------------------------------------------

class Coturn:
    def __init__(self, d, port):
        self.port = port
        self.log_path = str(d / 'turnserver.log')
        self.log = open(self.log_path, 'wb')
        # coturn refuses relaying to loopback peers unless told
        # (--allow-loopback-peers); -n: no configuration file.
        self.proc = subprocess.Popen(
            [TURNSERVER, '-n', '--listening-ip', '127.0.0.1', '--relay-ip', '127.0.0.1',
             '--listening-port', str(port), '--use-auth-secret',
             '--static-auth-secret', SECRET, '--realm', 'localhost', '--no-tls', '--no-dtls',
             '--no-cli', '--allow-loopback-peers', '--log-file', 'stdout', '--simple-log',
             '--pidfile', str(d / 'turnserver.pid'), '--userdb', str(d / 'turndb')],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    async def ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            s = socket.socket()
            try:
                s.settimeout(0.5)
                s.connect(('127.0.0.1', self.port))
                return True
            except OSError:
                await asyncio.sleep(0.2)
            finally:
                s.close()
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def text(self):
        with open(self.log_path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')


async def allocate(port, username, password, tcp=False):
    """Runs turnutils_uclient against coturn: (allocated, output). -y: two
    allocations that send to each other; -v prints "Received relay addr"
    for each allocation that succeeded; a refused one ends the client with
    "Cannot complete Allocation" and a non-zero status."""
    cmd = [UCLIENT, '-v', '-y', '-n', '1', '-p', str(port), '-e', '127.0.0.1',
           '-u', username, '-w', password] + (['-t'] if tcp else []) + ['127.0.0.1']
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    except asyncio.TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return False, (out or b'').decode('utf-8', 'replace') + '\n(timed out)'
    text = out.decode('utf-8', 'replace')
    relays = len(re.findall(r'Received relay addr: 127\.0\.0\.1:\d+', text))
    allocated = proc.returncode == 0 and relays >= 2 and 'Cannot complete Allocation' not in text
    return allocated, text


# -- XMPP ------------------------------------------------------------------------

async def get(c, to, payload):
    """(type, condition, payload element) of the answer to an IQ get."""
    r = await c.iq('get', to, payload)
    if r is None:
        return None, 'timeout', None
    if r['type'] == 'error':
        return 'error', r['error']['condition'], None
    kids = list(r.xml)
    return r['type'], None, kids[0] if kids else None


def services_of(el):
    return [dict(s.attrib) for s in el.findall('{%s}service' % NS)] if el is not None else []


def expected_password(username):
    mac = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def check_credential(s, user, ttl, what):
    """The credential of a restricted service: the REST API's form, valid
    for ttl from now, expires= saying when. Returns the expiry."""
    u = s.get('username', '')
    m = re.fullmatch(r'(\d+):(.+)', u)
    xt.ok(m is not None and m.group(2) == user,
          '%s: username is "EXPIRY:%s"' % (what, user)) or xt.diag(s)
    if m is None:
        return None
    expiry = int(m.group(1))
    now = time.time()
    xt.ok(now + ttl - 15 <= expiry <= now + ttl + 2,
          '%s: the expiry is now + %d s' % (what, ttl)) or xt.diag(expiry, now)
    xt.is_(s.get('password'), expected_password(u),
           '%s: password is base64(HMAC-SHA1(turn_secret, username))' % what)
    exp = s.get('expires', '')
    try:
        when = calendar.timegm(time.strptime(exp, '%Y-%m-%dT%H:%M:%SZ'))
    except ValueError:
        when = None
    xt.is_(when, expiry, '%s: expires= is the expiry as an XEP-0082 DateTime' % what)
    xt.is_(s.get('restricted'), 'true', '%s: restricted="true"' % what)
    return expiry


class Component:
    def __init__(self, srv, port):
        self.x = ComponentXMPP(COMP, COMP_SECRET, srv.ip, port)
        self.started = asyncio.get_running_loop().create_future()
        self.x.add_event_handler('session_start', lambda _: self.started.done() or
                                 self.started.set_result(True))

    async def connect(self):
        self.x.connect()
        try:
            return await asyncio.wait_for(asyncio.shield(self.started), 10)
        except asyncio.TimeoutError:
            return False

    async def ask(self, to, payload):
        iq = self.x.Iq()
        iq['type'] = 'get'
        iq['to'] = to
        iq['from'] = COMP
        iq.append(ET.fromstring(payload))
        try:
            r = await iq.send(timeout=5)
        except IqError as e:
            r = e.iq
        except IqTimeout:
            return None
        if r['type'] != 'error':
            return r['type']
        # The server's <error/> is in the component namespace; slixmpp
        # (which expects jabber:client) appends one of its own after it:
        # read the first.
        for e in r.xml:
            if e.tag.endswith('}error'):
                for c in e:
                    if c.tag.startswith('{urn:ietf:params:xml:ns:xmpp-stanzas}'):
                        return c.tag.split('}')[1]
        return str(r)


async def main():
    xt.require_peer('coturn', TURNSERVER, UCLIENT)

    srv = xt.Server(workers=2, start=False, modules={
        'mod_disco': {}, 'mod_extdisco': {'services': ['x'], 'turn_secret': SECRET,
                                          'access': 'callers'}},
        conf={'acl': {'callers': {'user': ['alice']}},
              'access_rules': {'callers': [{'allow': 'callers'}]}})
    turn_port = xt.free_ports('127.0.0.1', 1)[0]
    comp_port = xt.free_ports(srv.ip, 1)[0]
    srv.conf['modules']['mod_extdisco']['services'] = services_conf(turn_port)
    srv.conf['listen'].append({'port': comp_port, 'ip': srv.ip, 'module': 'component',
                               'hosts': {COMP: {'password': COMP_SECRET}}})
    srv.write_config()

    # A restricted service without turn_secret: refused at start.
    bad = dict(srv.conf)
    bad['modules'] = {'mod_disco': {}, 'mod_extdisco': {'services': services_conf(turn_port)}}
    bad_path = str(srv.dir / 'bad.yml')
    srv.write_config(xt.to_yaml(bad) + '\n', bad_path)
    try:
        r = subprocess.run([xt.XMPPD, '-c', bad_path], capture_output=True, text=True,
                           timeout=15, stdin=subprocess.DEVNULL, cwd=str(srv.dir))
        code, text = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        code, text = 'still running', str(e.stdout or '') + str(e.stderr or '')
    xt.ok(code not in (0, 'still running') and 'turn_secret' in text,
          'a restricted service without turn_secret: xmppd refuses to start') or \
        xt.diag(code, text[-2000:])
    xt.unlike(text, xt.SANITIZER_RE.pattern, 'no sanitizer report from that start')
    srv.write_config()

    srv.start()
    srv.register('alice', 'alice-pw')
    srv.register('bob', 'bob-pw')
    coturn = Coturn(srv.dir, turn_port)
    try:
        await run_checks(srv, coturn, comp_port)
    finally:
        coturn.stop()


async def run_checks(srv, coturn, comp_port):
    xt.ok(await coturn.ready(), 'coturn listens') or xt.diag(coturn.text()[-2000:])
    alice = await xt.login_ok(srv, 'alice', resource='a1')
    user = 'alice@%s' % srv.host
    h = srv.host

    # XEP-0215 5: the server says it does it.
    t, cond, q = await get(alice, h, "<query xmlns='%s'/>" % NS_INFO)
    feats = [f.get('var') for f in q.findall('{%s}feature' % NS_INFO)] if q is not None else []
    xt.ok(NS in feats, 'disco#info of the server has urn:xmpp:extdisco:2') or xt.diag(feats)

    # XEP-0215 3.1: every service.
    t, cond, el = await get(alice, h, "<services xmlns='%s'/>" % NS)
    xt.is_(t, 'result', 'services: a result') or xt.diag(cond)
    xt.ok(el is not None and el.tag == '{%s}services' % NS, 'services: <services/> in it')
    ss = services_of(el)
    xt.is_([(s.get('type'), s.get('transport')) for s in ss],
           [('stun', 'udp'), ('turn', 'udp'), ('turn', 'tcp')], 'services: all three, in order')
    if len(ss) != 3:
        ss = ss + [{}] * (3 - len(ss))
    stun, tudp, ttcp = ss[:3]
    xt.is_((stun.get('host'), stun.get('port')), ('127.0.0.1', str(coturn.port)),
           'stun: host and port')
    xt.ok(not any(k in stun for k in ('username', 'password', 'restricted', 'expires')),
          'stun: no credentials, not restricted') or xt.diag(stun)
    xt.is_(tudp.get('name'), 'relay-udp', 'turn/udp: name')
    xt.is_((tudp.get('host'), tudp.get('port')), ('127.0.0.1', str(coturn.port)),
           'turn/udp: host and port')
    check_credential(tudp, user, 86400, 'turn/udp')
    check_credential(ttcp, user, 86400, 'turn/tcp')

    # XEP-0215 3.2: services of one type.
    t, cond, el = await get(alice, h, "<services xmlns='%s' type='turn'/>" % NS)
    xt.is_([(s.get('type'), s.get('transport')) for s in services_of(el)],
           [('turn', 'udp'), ('turn', 'tcp')], "type='turn': the two TURN services")
    xt.is_(el.get('type') if el is not None else None, 'turn', "type='turn': echoed")
    t, cond, el = await get(alice, h, "<services xmlns='%s' type='ftp'/>" % NS)
    xt.ok(t == 'result' and services_of(el) == [], "type='ftp': an empty list") or \
        xt.diag(t, cond)

    # XEP-0215 3.3: credentials of one service.
    t, cond, el = await get(alice, h, "<credentials xmlns='%s'><service host='127.0.0.1' "
                            "type='turn' port='%d'/></credentials>" % (NS, coturn.port))
    cs = services_of(el)
    xt.ok(t == 'result' and el is not None and el.tag == '{%s}credentials' % NS and
          len(cs) == 2, 'credentials: <credentials/> with both TURN services') or \
        xt.diag(t, cond, cs)
    if cs:
        check_credential(cs[0], user, 86400, 'credentials')
    t, cond, el = await get(alice, h, "<credentials xmlns='%s'><service host='turn.example' "
                            "type='turn'/></credentials>" % NS)
    xt.is_(cond, 'item-not-found', 'credentials of an unknown service: item-not-found')
    t, cond, el = await get(alice, h, "<credentials xmlns='%s'><service host='127.0.0.1' "
                            "type='stun'/></credentials>" % NS)
    xt.is_(cond, 'item-not-found', 'credentials of an unrestricted service: item-not-found')
    t, cond, el = await get(alice, h, "<credentials xmlns='%s'><service type='turn'/>"
                            "</credentials>" % NS)
    xt.is_(cond, 'bad-request', 'credentials without host: bad-request')
    t, cond, el = await get(alice, h, "<credentials xmlns='%s'><service host='127.0.0.1' "
                            "type='turn' port='99999'/></credentials>" % NS)
    xt.is_(cond, 'bad-request', 'credentials with a bad port: bad-request')
    t, cond, el = await get(alice, h, "<bogus xmlns='%s'/>" % NS)
    xt.is_(cond, 'feature-not-implemented', 'an unknown element: feature-not-implemented')
    r = await alice.iq('set', h, "<services xmlns='%s'/>" % NS)
    xt.is_(r['error']['condition'] if r is not None and r['type'] == 'error' else r,
           'bad-request', 'a set: bad-request')

    # Hostile shapes, on a raw stream (slixmpp's parser stalls on a 100 KB
    # attribute in what it reads): a 100 KB type, a thousand <service/>.
    raw = await xt.sm_authed(srv, 'alice')
    await raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                   "<resource>raw</resource></bind></iq>")
    await raw.read_until(r"id=.b.")
    raw.set_mark()
    await raw.send("<iq type='get' id='big' to='%s'><services xmlns='%s' type='%s'/></iq>"
                   % (h, NS, 't' * 100000))
    xt.ok(await raw.read_until(r"<iq[^>]*id=.big.[^>]*>.*?</iq>", timeout=10) and
          "type='result'" in raw.since_mark().replace('"', "'") and
          '<service ' not in raw.since_mark(), 'a 100 KB type: an empty list') or \
        xt.diag(raw.since_mark()[:300])
    raw.set_mark()
    await raw.send("<iq type='get' id='many' to='%s'><credentials xmlns='%s'>%s</credentials>"
                   "</iq>" % (h, NS, "<service host='127.0.0.1' type='turn'/>" * 1000))
    ok = await raw.read_until(r"<iq[^>]*id=.many.[^>]*>.*?</iq>", timeout=10)
    xt.ok(ok and raw.since_mark().count('<service ') == 2,
          'a thousand <service/> asked: the first is answered, once') or \
        xt.diag(raw.since_mark()[:300])
    raw.close()

    # A local user the access rule does not allow: forbidden.
    bob = await xt.login_ok(srv, 'bob', resource='b1')
    t, cond, el = await get(bob, h, "<services xmlns='%s'/>" % NS)
    xt.is_(cond, 'forbidden', 'a user the access rule denies: forbidden')
    t, cond, el = await get(bob, h, "<credentials xmlns='%s'><service host='127.0.0.1' "
                            "type='turn'/></credentials>" % NS)
    xt.is_(cond, 'forbidden', 'the same asking for credentials: forbidden')
    await bob.disconnect()

    # A component (not a local user): forbidden.
    comp = Component(srv, comp_port)
    xt.ok(await comp.connect(), 'the component connects')
    xt.is_(await comp.ask(h, "<services xmlns='%s'/>" % NS), 'forbidden',
           "a component's request: forbidden")
    xt.is_(await comp.ask(h, "<credentials xmlns='%s'><service host='127.0.0.1' type='turn'/>"
                          "</credentials>" % NS), 'forbidden',
           "a component's credentials request: forbidden")
    comp.x.disconnect(wait=1)

    # coturn accepts the credentials: a relay over UDP and over TCP.
    okk, out = await allocate(coturn.port, tudp.get('username', 'x'),
                              tudp.get('password', 'x'))
    xt.ok(okk, 'coturn allocates with the turn/udp credentials (UDP)') or \
        xt.diag(out[-1500:], coturn.text()[-1500:])
    okk, out = await allocate(coturn.port, ttcp.get('username', 'x'),
                              ttcp.get('password', 'x'), tcp=True)
    xt.ok(okk, 'coturn allocates with the turn/tcp credentials (TCP)') or \
        xt.diag(out[-1500:], coturn.text()[-1500:])
    # ... and what coturn refuses, so that the two above mean something.
    u = tudp.get('username', '0:x')
    okk, out = await allocate(coturn.port, u, expected_password(u + 'x'))
    xt.ok(not okk and 'Cannot complete Allocation' in out,
          'coturn refuses a wrong password') or xt.diag(out[-800:])
    other = re.sub(r':alice@', ':bob@', u)
    okk, out = await allocate(coturn.port, other, tudp.get('password', 'x'))
    xt.ok(not okk and 'Cannot complete Allocation' in out,
          "coturn refuses alice's password for another username") or xt.diag(out[-800:])

    # Reload with a short TTL: the credentials follow it, and expire.
    srv.conf['modules']['mod_extdisco']['credentials_ttl'] = SHORT_TTL
    srv.write_config()
    code, out, err = await srv.actl('reload')
    xt.is_(code, 0, 'reload with credentials_ttl %d' % SHORT_TTL) or xt.diag(out, err)
    t, cond, el = await get(alice, h, "<services xmlns='%s' type='turn'/>" % NS)
    ss = services_of(el)
    short = ss[0] if ss else {}
    exp = check_credential(short, user, SHORT_TTL, 'after the reload')
    okk, out = await allocate(coturn.port, short.get('username', 'x'),
                              short.get('password', 'x'))
    xt.ok(okk, 'coturn allocates with them before they expire') or \
        xt.diag(out[-1500:], coturn.text()[-1500:])
    # coturn refuses a timestamp in the past (its REST API check); the
    # wait is bounded, so that a wrong expiry fails rather than hangs.
    await asyncio.sleep(min(max(0, (exp or 0) - time.time()), SHORT_TTL + 2) + 1.5)
    okk, out = await allocate(coturn.port, short.get('username', 'x'),
                              short.get('password', 'x'))
    xt.ok(not okk and 'Cannot complete Allocation' in out,
          'coturn refuses them once expired') or xt.diag(out[-800:])
    xt.ok('Cannot find credentials of user <%s>' % short.get('username') in coturn.text(),
          'coturn says why: no credentials for that (expired) username') or \
        xt.diag(coturn.text()[-1500:])

    # A reload with a malformed entry: the module refuses it, naming the
    # entry in the log, and (the core's rule for a module whose load
    # fails) is out until a reload with a good list.
    good = list(srv.conf['modules']['mod_extdisco']['services'])
    srv.conf['modules']['mod_extdisco']['services'] = good + ['type=turn port=3478']
    srv.write_config()
    await srv.actl('reload')
    xt.like(srv.log(), r"mod_extdisco: services: entry 4 \('type=turn port=3478'\) needs "
            r"type= and host=", 'a service without host: the log names the entry')
    t, cond, el = await get(alice, h, "<services xmlns='%s'/>" % NS)
    xt.is_(cond, 'service-unavailable', 'meanwhile: service-unavailable, no half-read list')
    srv.conf['modules']['mod_extdisco']['services'] = good
    srv.write_config()
    code, out, err = await srv.actl('reload')
    xt.is_(code, 0, 'the reload with the good list again') or xt.diag(out, err)
    t, cond, el = await get(alice, h, "<services xmlns='%s'/>" % NS)
    xt.is_(len(services_of(el)), 3, 'and the services are answered again')

    await xt.disconnect_all(alice)


xt.run(main, timeout=170)
