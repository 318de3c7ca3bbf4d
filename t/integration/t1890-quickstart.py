#!/usr/bin/python3
"""t1890-quickstart: the quick start's own configuration, conf/xmppd.yml,
as the tree ships it, gives a working server: it passes --check-config,
a client logs in over STARTTLS and finds the usual modules (carbons, MAM,
PEP, blocking, ad-hoc, upload.localhost), and the HTTPS listener serves
the web admin page and the web chat, with the acl admins letting
admin@localhost use the admin API.

The file is copied into a scratch tree laid out as the source tree is
(conf/, run/, build -> the build directory, www -> the source's www/),
so that its relative paths resolve as in the quick start; only the
listeners' addresses and ports are changed, to free loopback ones."""

import asyncio
import base64
import http.client
import json
import os
import re
import shutil
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

CONVERSE = xt.TOP_BUILDDIR / 'conversejs' / 'node_modules' / 'converse.js' / 'dist'


def https(ip, port, ca, path, method='GET', body=None, headers=None):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False      # the certificate is for localhost
    c = http.client.HTTPSConnection(ip, port, timeout=10, context=ctx)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


async def ahttps(*a, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: https(*a, **kw))


async def main():
    srv = xt.Server(hosts=('localhost',), start=False)
    hp, = xt.free_ports(srv.ip, 1)
    top = srv.dir / 'tree'
    for d in ('conf', 'run'):
        (top / d).mkdir(parents=True, exist_ok=True)
    os.symlink(str(xt.TOP_BUILDDIR), str(top / 'build'))
    os.symlink(str(xt.TOP_SRCDIR / 'www'), str(top / 'www'))
    shutil.copy(srv.cert_file, str(top / 'run' / 'xmppd.pem'))
    text = (xt.TOP_SRCDIR / 'conf' / 'xmppd.yml').read_text()
    # The listeners of the file, on our address and ports.
    ports = {'5222': srv.c2s_port, '5223': srv.tls_port, '5443': hp}
    n = [0]

    def listener(m):
        n[0] += 1
        return '- port: %d\n%sip: "%s"' % (ports[m.group(1)], m.group(2), srv.ip)
    text = re.sub(r'- port: (5222|5223|5443)\n(\s+)ip: "::"', listener, text)
    text = text.replace('"https://localhost:5443"', '"https://localhost:%d"' % hp)
    if n[0] != 3:
        raise xt.HarnessError('conf/xmppd.yml: %d of its 3 listeners found' % n[0])
    # A quick start with a worker per CPU, and the debug log of a test.
    text = re.sub(r'(?m)^loglevel: info$', 'loglevel: debug', text)
    srv.conf_path = str(top / 'conf' / 'xmppd.yml')
    srv.write_config(text)

    rc, out = srv.check_config()
    xt.is_(rc, 0, 'xmppd --check-config accepts conf/xmppd.yml') or xt.diag(out)
    srv.start()
    srv.register('alice', 'alice-pw')
    srv.register('admin', 'admin-pw')

    # --- a client, and the usual modules --------------------------------
    alice = await xt.login_ok(srv, 'alice', 'alice-pw')
    di = '{http://jabber.org/protocol/disco#info}'
    r = await alice.iq('get', 'localhost', "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    feats = set() if r is None else {f.get('var') for f in r.xml.iter(di + 'feature')}
    want = {'urn:xmpp:carbons:2', 'urn:xmpp:blocking', 'http://jabber.org/protocol/commands',
            'urn:xmpp:ping', 'jabber:iq:version', 'vcard-temp', 'msgoffline'}
    xt.ok(want <= feats, 'the server has the usual modules on (carbons, blocking, ad-hoc, '
          'offline, ping, version, vCard)') or xt.diag(sorted(want - feats))
    r = await alice.iq('get', 'alice@localhost',
                       "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    afeats = set() if r is None else {f.get('var') for f in r.xml.iter(di + 'feature')}
    xt.ok({'urn:xmpp:mam:2', 'http://jabber.org/protocol/pubsub#publish'} <= afeats,
          "the account has MAM and PEP (its disco#info)") or xt.diag(sorted(afeats))
    r = await alice.iq('get', 'upload.localhost',
                       "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    ufeats = set() if r is None else {f.get('var') for f in r.xml.iter(di + 'feature')}
    xt.ok('urn:xmpp:http:upload:0' in ufeats, 'upload.localhost offers file upload (XEP-0363)') \
        or xt.diag(str(r))

    # --- the HTTPS listener: admin page, API, web chat -------------------
    st, h, body = await ahttps(srv.ip, hp, srv.ca_file, '/admin/')
    xt.ok(st == 200 and h.get('content-type', '').startswith('text/html') and
          b'admin.js' in body, 'https://localhost:PORT/admin/ serves the web admin page') \
        or xt.diag(st, body[:300])
    auth = 'Basic ' + base64.b64encode(b'admin@localhost:admin-pw').decode()
    st, h, body = await ahttps(srv.ip, hp, srv.ca_file, '/api/status', 'POST', b'{}',
                               {'Content-Type': 'application/json', 'Authorization': auth})
    res = json.loads(body).get('result', {}) if st == 200 else {}
    xt.ok(st == 200 and res.get('sessions') == 1,
          'admin@localhost (the acl admins of the file) may use the admin API') \
        or xt.diag(st, body[:300])
    auth = 'Basic ' + base64.b64encode(b'alice@localhost:alice-pw').decode()
    st, h, body = await ahttps(srv.ip, hp, srv.ca_file, '/api/status', 'POST', b'{}',
                               {'Content-Type': 'application/json', 'Authorization': auth})
    xt.is_(st, 403, 'alice, who is no admin, may not')
    if (CONVERSE / 'converse.min.js').exists():
        st, h, body = await ahttps(srv.ip, hp, srv.ca_file, '/chat')
        st2, _, js = await ahttps(srv.ip, hp, srv.ca_file, '/chat/dist/converse.min.js')
        xt.ok(st == 200 and b'xmppd-chat-config' in body and st2 == 200 and len(js) > 100000,
              'https://localhost:PORT/chat serves the web chat, Converse.js from build/') \
            or xt.diag(st, body[:300], st2)
    elif xt.in_ci():
        xt.ok(False, 'Converse.js was fetched into the build directory (make conversejs)')
    else:
        xt.skip('Converse.js was not fetched (npm missing)')

    await xt.disconnect_all(alice)
    srv.stop()


xt.run(main, timeout=120)
