#!/usr/bin/python3
"""t1100-component: external components (XEP-0114) on a `module: component`
listener, driven with slixmpp's ComponentXMPP and, for what a well-behaved
component library will not do (wrong secrets, spoofed addresses), raw
sockets.

What is checked is what the component and the clients see: the handshake
answer, the stream errors (read from the stream), the stanzas and their
addresses, the bounces, disco#items, `xmppctl components`, and the
configuration errors with their file:line."""

import asyncio
import hashlib
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402
from xt_transports import Component, NS_ACCEPT, NS_ECHO  # noqa: E402


NS_ITEMS = 'http://jabber.org/protocol/disco#items'
COMP = 'comp.xmppd.test'
OTHER = 'other.xmppd.test'
SECRETS = {COMP: 'comp-secret', OTHER: 'other-secret'}


def comp_header(domain, ns=NS_ACCEPT):
    # XEP-0114 3: the component names its domain in 'to'.
    return ("<stream:stream xmlns='%s' xmlns:stream='http://etherx.jabber.org/streams' "
            "to='%s'>" % (ns, domain))


async def raw_component(srv, port, domain, secret=None, digest=None, header=None):
    """A raw connection that opens a component stream for domain and, if a
    secret or a digest is given, sends the handshake. Returns (raw, the
    server's header or None, True if <handshake/> came back)."""
    r = await xt.Raw.open(srv, port=port)
    await r.send(header or comp_header(domain))
    m = await r.read_until(r'<stream:stream\b[^>]*>', 5)
    hdr = m.group(0) if m else None
    if hdr is None or (secret is None and digest is None):
        return r, hdr, False
    sid = re.search(r"\bid=['\"]([^'\"]+)['\"]", hdr)
    if digest is None:
        digest = hashlib.sha1(((sid.group(1) if sid else '') + secret).encode()).hexdigest()
    r.set_mark()
    await r.send('<handshake>%s</handshake>' % digest)
    m = await r.read_until(r'<handshake\s*/>|<handshake>\s*</handshake>|</stream:stream>', 5)
    return r, hdr, bool(m) and m.group(0).startswith('<handshake')


async def error_of(r, timeout=5):
    """The stream error the server ended r's stream with (None if none)."""
    await r.read_until_close(timeout)
    r.close()
    return xt.stream_error(r.since_mark())


def items(r):
    q = r.xml.find('{%s}query' % NS_ITEMS) if r is not None else None
    return sorted(i.get('jid') for i in q.findall('{%s}item' % NS_ITEMS)) if q is not None else None


def config_errors(srv, port):
    """--check-config on files with one mistake each: the message names the
    line of the mistake (RFC-free: our own file:line promise)."""
    base = dict(srv.conf)
    c2s = base['listen'][0]

    def comp(**kw):
        d = {'port': port, 'ip': srv.ip, 'module': 'component'}
        d.update(kw)
        return d

    cases = [
        ('a component listener without hosts', [c2s, comp()],
         r"needs 'hosts'"),
        ('hosts on a c2s listener', [dict(c2s, hosts={COMP: {'password': 'x'}})],
         r"'hosts' is only for a listener with 'module: component'"),
        ('a component without a password', [c2s, comp(hosts={COMP: {}})],
         r"needs a non-empty 'password'"),
        ('an unknown key under a component', [c2s, comp(hosts={COMP: {'password': 'x', 'secret': 'y'}})],
         r"secret"),
        ('a component domain that is one of hosts', [c2s, comp(hosts={srv.host: {'password': 'x'}})],
         r"is one of 'hosts'"),
        ('a component domain that is not a domain', [c2s, comp(hosts={'a b@c': {'password': 'x'}})],
         r"not a valid domain"),
        ('the same domain on two listeners',
         [c2s, comp(hosts={COMP: {'password': 'x'}}),
          comp(port=port + 1 if port < 65535 else port - 1, hosts={COMP: {'password': 'y'}})],
         r"already on the listener on line \d+"),
        ('starttls_required on a component listener',
         [c2s, comp(starttls_required=True, hosts={COMP: {'password': 'x'}})],
         r"'starttls_required' does not apply"),
    ]
    for n, (what, listen, rx) in enumerate(cases):
        conf = dict(base, listen=listen)
        path = srv.write_config(srv.config_text(conf), str(srv.dir / ('bad%d.yml' % n)))
        code, text = srv.check_config(path)
        xt.ok(code != 0 and re.search(r'bad%d\.yml:\d+: ' % n, text) and re.search(rx, text),
              'configuration refused with file:line: %s' % what) or xt.diag(text)
    # And the file the server runs with passes.
    code, text = srv.check_config()
    xt.is_(code, 0, 'the configuration with two component domains passes') or xt.diag(text)


async def main():
    # mod_disco from the build tree, and a module that claims a service
    # domain (t/modules/mod_claimdomain.c), built twice: for a component's
    # domain and, as the control, for a free one.
    moddir = xt.scratch_dir('t1100-modules')
    disco_so = os.path.join(xt.MODULE_DIR, 'mod_disco.so')
    if not os.path.exists(disco_so):
        raise xt.HarnessError('%s is missing (make modules/mod_disco.la)' % disco_so)
    shutil.copy(disco_so, moddir / 'mod_disco.so')
    for name, dom in (('mod_claimcomp', COMP), ('mod_claimfree', 'free.xmppd.test')):
        xt.build_test_module(moddir, name, 'mod_claimdomain',
                             ['-DCLAIM_NAME="%s"' % name, '-DCLAIM_DOMAIN="%s"' % dom])
    srv = xt.Server(workers=2, modules={'mod_disco': {}}, start=False,
                    conf={'negotiation_timeout': 4, 'module_dir': str(moddir)})
    port, port2 = xt.free_ports(srv.ip, 2)
    srv.conf['listen'].append({'port': port, 'ip': srv.ip, 'module': 'component',
                               'hosts': {d: {'password': p} for d, p in SECRETS.items()}})
    srv.write_config()
    config_errors(srv, port2)
    srv.start()
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='a')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b')

    # A module cannot claim a component's domain as its service domain.
    # (Why is in the log only; the control below differs in the domain alone.)
    code, out, err = await srv.actl('module', 'load', 'mod_claimcomp')
    xt.ok(code == 1 and 'load failed' in err,
          "a module claiming %s does not load: it is an external component's" % COMP) or \
        xt.diag(code, out, err)
    code, out, err = await srv.actl('module', 'list')
    xt.ok(code == 0 and 'mod_claimcomp' not in out and 'mod_disco' in out,
          'module list: mod_claimcomp is not loaded') or xt.diag(code, out, err)
    code, out, err = await srv.actl('module', 'load', 'mod_claimfree')
    xt.is_(code, 0, 'the same module claiming a free domain loads') or xt.diag(out, err)
    code, out, err = await srv.actl('module', 'unload', 'mod_claimfree')

    # disco#items lists the configured components, connected or not
    # (Prosody's choice; doc/architecture.md).
    r = await alice.iq('get', srv.host, "<query xmlns='%s'/>" % NS_ITEMS)
    xt.is_(items(r), [COMP, OTHER], 'disco#items of the server lists both component domains '
           'before any is connected')

    # ---- The handshake, with slixmpp's ComponentXMPP ----------------------
    comp = Component(srv, port, COMP, SECRETS[COMP])
    xt.ok(await comp.connect(), 'ComponentXMPP completes the handshake (XEP-0114 3)') or \
        xt.diag('stream error: %s' % comp.stream_error)

    # Our header as a raw component sees it: from its domain, an id, no
    # version (XEP-0114 3), then <handshake/> for the right digest.
    raw_ok, hdr, shook = await raw_component(srv, port, OTHER, SECRETS[OTHER])
    xt.ok(hdr is not None and re.search(r"from=['\"]%s['\"]" % re.escape(OTHER), hdr) and
          re.search(r"\bid=['\"][^'\"]{16,}['\"]", hdr) and
          re.search(r"xmlns=['\"]%s['\"]" % NS_ACCEPT, hdr),
          "the server's header: xmlns jabber:component:accept, from the component domain, an id") \
        or xt.diag(hdr)
    xt.ok(hdr is not None and 'version=' not in hdr, "the server's header has no version (XEP-0114 3)") \
        or xt.diag(hdr)
    xt.ok(shook, 'a raw component with the right digest gets an empty <handshake/>') or \
        xt.diag(raw_ok.text[-500:])

    code, out, err = await srv.actl('components')
    xt.ok(code == 0 and re.search(r'^%s\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\t127\.\d+\.\d+\.\d+:\d+$'
                                  % re.escape(COMP), out, re.M) and
          re.search(r'^%s\t' % re.escape(OTHER), out, re.M),
          'xmppctl components lists both: domain, connected since, address') or xt.diag(code, out, err)

    # ---- Routing: a client to the domain and to a JID at it ----------------
    for to in (COMP, 'user@' + COMP, COMP + '/res'):
        body = 'hi %s' % to
        alice.send(to, body)
        got = await comp.messages.get(lambda m: m['body'] == body, 5)
        xt.ok(got is not None and str(got['from']) == str(alice.jid) and str(got['to']) == to,
              'the component gets the message to %s, from alice\'s full JID' % to) or \
            xt.diag(got)
        m = await alice.message(body='echo: ' + body)
        xt.ok(m is not None and str(m['from']) == to,
              "alice gets the component's reply from %s" % to) or xt.diag(m)

    # From both workers: whichever one the component is on, one of these
    # clients is on the other, so a stanza crosses to the component's
    # worker (posted there, never touching its connection from here).
    by_worker, extra = {}, []
    for c in (alice, bob):
        s = xt.session_of(await srv.aconnected(), c.jid)
        by_worker.setdefault(s['worker'] if s else None, c)
    for n in range(12):
        if len([w for w in by_worker if w is not None]) >= 2:
            break
        srv.register('extra%d' % n, 'extra-pw')
        c = await xt.login_ok(srv, 'extra%d' % n, 'extra-pw', resource='x')
        extra.append(c)
        s = xt.session_of(await srv.aconnected(), c.jid)
        by_worker.setdefault(s['worker'] if s else None, c)
    xt.ok(len([w for w in by_worker if w is not None]) >= 2,
          'clients on both workers (xmppctl connected)') or xt.diag(by_worker)
    for w, c in sorted((w, c) for w, c in by_worker.items() if w is not None):
        body = 'from worker %s' % w
        c.send('w@' + COMP, body)
        m = await c.message(body='echo: ' + body)
        xt.ok(m is not None and str(m['from']) == 'w@' + COMP,
              'a client on worker %s and the component exchange messages' % w) or xt.diag(m)
    await xt.disconnect_all(*extra)

    # An IQ round trip, alice -> component -> alice.
    r = await alice.iq('get', 'bot@' + COMP, "<query xmlns='%s'/>" % NS_ECHO)
    q = r.xml.find('{%s}query' % NS_ECHO) if r is not None else None
    xt.ok(r is not None and r['type'] == 'result' and str(r['from']) == 'bot@' + COMP and
          q is not None and q.get('seen-from') == str(alice.jid),
          'an IQ get to bot@%s comes back as the result the component wrote' % COMP) or xt.diag(r)

    # The component sends on its own (to bob's bare JID) and to the other
    # component (component to component through the router).
    comp.x.send_message(mto=bob.jid.bare, mfrom='news@' + COMP, mbody='unsolicited', mtype='chat')
    m = await bob.message(body='unsolicited')
    xt.ok(m is not None and str(m['from']) == 'news@' + COMP,
          'a stanza the component sends from news@%s reaches bob' % COMP) or xt.diag(m)
    raw_ok.set_mark()
    comp.x.send_message(mto='gw@' + OTHER, mfrom=COMP, mbody='to the other', mtype='chat')
    got = await raw_ok.read_until(r'<message\b[^>]*>.*?to the other.*?</message>', 5)
    xt.ok(got is not None and re.search(r"from=['\"]%s['\"]" % re.escape(COMP), got.group(0)),
          'a message from one component to another arrives, from the first') or \
        xt.diag(raw_ok.since_mark())

    # ---- Refusals, read from the stream ------------------------------------
    r, hdr, shook = await raw_component(srv, port, COMP, digest='0' * 40)
    xt.is_(await error_of(r), 'not-authorized', 'a wrong handshake digest: <not-authorized/>')
    r, hdr, shook = await raw_component(srv, port, COMP, secret='not-the-secret')
    xt.is_(await error_of(r), 'not-authorized', 'the digest of a wrong secret: <not-authorized/>')
    r, hdr, _ = await raw_component(srv, port, 'nosuch.xmppd.test')
    xt.is_(await error_of(r), 'host-unknown', 'an unconfigured domain: <host-unknown/> (RFC 6120 4.9.3.6)')
    r, hdr, _ = await raw_component(srv, port, srv.host)
    xt.is_(await error_of(r), 'host-unknown', "the server's own host as a component domain: <host-unknown/>")
    r, hdr, _ = await raw_component(srv, port, COMP, header=comp_header(COMP, ns='jabber:client'))
    xt.is_(await error_of(r), 'invalid-namespace', 'a header in jabber:client: <invalid-namespace/>')
    r = await xt.Raw.open(srv, port=port)
    await r.send(comp_header(COMP) + '<message to="%s"><body>early</body></message>' % bob.jid)
    xt.is_(await error_of(r), 'not-authorized', 'a stanza before the handshake: <not-authorized/>')

    # A second connection for a connected domain: <conflict/>, and the
    # first one stays (Prosody's default).
    r, hdr, shook = await raw_component(srv, port, COMP, SECRETS[COMP])
    xt.is_(await error_of(r), 'conflict', 'a second component for %s: <conflict/>' % COMP)
    body = 'still there?'
    alice.send(COMP, body)
    xt.ok(await comp.messages.get(lambda m: m['body'] == body, 5) is not None,
          'the first component still gets its stanzas after the refused second one')

    # The negotiation deadline (negotiation_timeout: 4 here).
    r, hdr, _ = await raw_component(srv, port, COMP)
    r.set_mark()
    closed = await r.read_until_close(15)
    r.close()
    xt.ok(closed and xt.stream_error(r.since_mark()) == 'connection-timeout' and
          3 <= xt.elapsed(r) <= 14,
          'no handshake within negotiation_timeout: <connection-timeout/>') or \
        xt.diag(r.since_mark(), xt.elapsed(r))

    # Spoofing: a 'from' at another domain, a missing 'from', ends the
    # stream with <invalid-from/> (RFC 6120 4.9.3.9, as Prosody and
    # ejabberd do), and nothing reaches bob.
    for what, attrs in (("a 'from' at a local host", "from='alice@%s/a'" % srv.host),
                        ("a 'from' at the other component", "from='x@%s'" % COMP),
                        ("no 'from'", '')):
        raw_ok.set_mark()
        await raw_ok.send("<message %s to='%s' type='chat'><body>spoof %s</body></message>"
                          % (attrs, bob.jid, what))
        xt.is_(await error_of(raw_ok), 'invalid-from', 'a component stanza with %s: <invalid-from/>' % what)
        m = await bob.message(body='spoof %s' % what, timeout=1)
        xt.ok(m is None, 'bob got nothing from the stanza with %s' % what) or xt.diag(m)
        raw_ok, hdr, shook = await raw_component(srv, port, OTHER, SECRETS[OTHER])
        if not shook:
            raise xt.HarnessError('the raw component could not reconnect: %r' % raw_ok.text[-300:])
    # A missing 'to' is a stanza error to the component, not the end.
    raw_ok.set_mark()
    await raw_ok.send("<iq type='get' id='noto' from='%s'><query xmlns='%s'/></iq>" % (OTHER, NS_ECHO))
    got = await raw_ok.read_until(r"<iq\b[^>]*type=['\"]error['\"].*?</iq>", 5)
    xt.ok(got is not None and 'bad-request' in got.group(0) and not raw_ok.closed,
          "a component IQ without 'to': a <bad-request/> error, the stream goes on") or \
        xt.diag(raw_ok.since_mark())

    # ---- After the component is gone ---------------------------------------
    await comp.disconnect()
    code, out, err = await srv.actl('components')
    xt.ok(code == 0 and COMP not in out and OTHER in out,
          'xmppctl components no longer lists the disconnected one') or xt.diag(out, err)
    body = 'anyone?'
    alice.xmpp.send_message(mto='user@' + COMP, mbody=body, mtype='chat')
    m = await alice.message(lambda m: m['type'] == 'error', timeout=5)
    xt.ok(m is not None and m['error']['condition'] == 'service-unavailable' and
          str(m['from']) == 'user@' + COMP and m['body'] == body,
          'a message to the disconnected component comes back <service-unavailable/> '
          '(RFC 6120 8.3)') or xt.diag(m)
    r = await alice.iq('get', COMP, "<query xmlns='%s'/>" % NS_ECHO)
    xt.ok(r is not None and r['type'] == 'error' and r['error']['condition'] == 'service-unavailable',
          'an IQ to the disconnected component: <service-unavailable/>') or xt.diag(r)
    # RFC 6120 8.3.1: never an error for an error; nothing to say to an
    # unavailable presence. (A directed available presence is answered,
    # as a check that presence bounces are seen at all.)
    alice.xmpp.send_presence(pto='p@' + COMP, ptype='unavailable')
    alice.xmpp.send_message(mto='e@' + COMP, mbody='marker', mtype='error')
    alice.xmpp.send_presence(pto='a@' + COMP)
    p = await alice.presence(lambda p: p['type'] == 'error' and str(p['from']) == 'a@' + COMP,
                             timeout=5)
    xt.ok(p is not None and p['error']['condition'] == 'service-unavailable',
          'a directed available presence to it comes back <service-unavailable/>') or xt.diag(p)
    m = await alice.message(lambda m: str(m['from']) == 'e@' + COMP, timeout=1)
    xt.ok(m is None, 'no bounce for an error message') or xt.diag(m)
    xt.ok(not [x for x in alice.presences.items if str(x['from']) == 'p@' + COMP],
          'no bounce for unavailable presence') or xt.diag(alice.presences.items)
    r = await alice.iq('get', srv.host, "<query xmlns='%s'/>" % NS_ITEMS)
    xt.is_(items(r), [COMP, OTHER], 'disco#items still lists the disconnected component')

    # A new component for the domain is accepted once the first is gone.
    comp2 = Component(srv, port, COMP, SECRETS[COMP])
    xt.ok(await comp2.connect(), 'a component reconnects after the first one left')
    alice.send('user@' + COMP, 'again')
    m = await alice.message(body='echo: again')
    xt.ok(m is not None, 'and gets its stanzas again') or xt.diag(m)

    # ---- Shutdown: <system-shutdown/> to connected components ---------------
    await xt.disconnect_all(alice, bob)
    raw_ok.set_mark()
    await asyncio.get_running_loop().run_in_executor(None, srv.stop)
    xt.is_(await error_of(raw_ok, 5), 'system-shutdown', 'shutdown: the component gets <system-shutdown/>')
    await comp2.disconnect()


xt.run(main)
