#!/usr/bin/python3
"""t1440-bosh-strophe: a BOSH client nobody here wrote (strophe.js from npm,
in Node.js, t/tools/bosh-client) against /http-bind (XEP-0124, XEP-0206)
on a plain HTTP listener with `secure: true` (PLAIN offered, as t1420).
It logs in, sends initial presence, chats with a slixmpp TCP client both
ways (each side seeing the other's full JID as 'from'), is listed in
`xmppctl connected`, and is gone once it terminates its session."""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BOSH_CLIENT = os.path.join(HERE, '..', 'tools', 'bosh-client')
STROPHE = os.path.join(BOSH_CLIENT, 'node_modules', 'strophe.js')


def bosh_client_ready():
    """node and strophe.js (npm ci into t/tools/bosh-client, once)."""
    if shutil.which('node') is None or shutil.which('npm') is None:
        return False
    if os.path.isdir(STROPHE):
        return True
    r = subprocess.run(['npm', 'ci', '--no-audit', '--no-fund'], cwd=BOSH_CLIENT,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        xt.diag('npm ci failed: %s' % r.stderr[-2000:])
    return r.returncode == 0


def body_type(xml):
    """The type attribute of a BOSH <body/> strophe.js received."""
    try:
        return ET.fromstring(xml).get('type')
    except ET.ParseError:
        return None


def roster_item(c, jid):
    r = c.xmpp.client_roster
    return r[jid]['subscription'] if jid in r else None


async def until(pred, timeout=8):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def main():
    have = bosh_client_ready()
    xt.require_peer('node, npm and strophe.js (t/tools/bosh-client)',
                    shutil.which('node') or '/nonexistent/node',
                    STROPHE if have else '/nonexistent/strophe.js')
    xt.plan(12)
    srv = xt.Server(workers=2, start=False, modules={'mod_roster': {}},
                    conf={'bosh_max_wait': 20, 'bosh_max_inactivity': 30})
    port = xt.free_ports(srv.ip, 1)[0]
    # A plain HTTP listener behind a (pretend) TLS proxy: `secure: true`
    # makes it count as encrypted, so PLAIN is offered (RFC 6120 6.4.6).
    srv.conf['listen'].append({'port': port, 'ip': srv.ip, 'module': 'http', 'secure': True})
    srv.write_config()
    srv.start()
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')

    # alice and bob are subscribed both ways (RFC 6121 3), so bob sees the
    # presence alice broadcasts from strophe.js (RFC 6121 4.2.2, 4.5.2).
    bob = await xt.login_ok(srv, 'bob', resource='tcp')
    alice_tcp = await xt.login_ok(srv, 'alice', resource='setup')
    for c in (bob, alice_tcp):
        c.xmpp.auto_authorize = True
        c.xmpp.auto_subscribe = True
        await c.xmpp.get_roster()
    bob.xmpp.send_presence(pto='alice@%s' % srv.host, ptype='subscribe')
    both = await until(lambda: roster_item(bob, 'alice@%s' % srv.host) == 'both' and
                       roster_item(alice_tcp, 'bob@%s' % srv.host) == 'both')
    if not both:
        raise xt.HarnessError('subscription set-up failed')
    await alice_tcp.disconnect()
    await bob.presence(frm=alice_tcp.jid, pred=lambda p: p['type'] == 'unavailable', timeout=5)

    env = dict(os.environ, NODE_NO_WARNINGS='1')
    proc = await asyncio.create_subprocess_exec(
        'node', os.path.join(BOSH_CLIENT, 'chat.js'),
        'http://%s:%d/http-bind' % (srv.ip, port), 'alice@%s/strophe' % srv.host, 'alice-pw',
        str(bob.jid), 'hello from strophe',
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    events = []

    async def next_event(pred, timeout=15):
        while True:
            for e in events:
                if pred(e):
                    events.remove(e)
                    return e
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            except asyncio.TimeoutError:
                return None
            if not line:
                return None
            events.append(json.loads(line))

    def statuses():
        return [e['status'] for e in events if e['event'] == 'status']

    online = await next_event(lambda e: e['event'] in ('online', 'error'), timeout=20)
    ajid = (online or {}).get('jid') or '-'
    xt.ok(online is not None and online['event'] == 'online' and
          ajid == 'alice@%s/strophe' % srv.host and
          re.fullmatch(r'[0-9a-f]{34}', online.get('sid') or '') is not None,
          'strophe.js creates a BOSH session (sid), authenticates and binds alice/strophe '
          '(XEP-0206 5, 6)') or xt.diag(online, events)
    # The SASL exchange as strophe.js saw it (XEP-0206 6, RFC 6120 6.4):
    # the mechanisms the server offered, the one it chose, the outcome.
    offered = set(re.findall(r'<mechanism>([^<]+)</mechanism>',
                             ''.join(e['xml'] for e in events if e['event'] == 'recv')))
    chose = [m for e in events if e['event'] == 'sent'
             for m in re.findall(r'<auth [^>]*mechanism=["\']([^"\']+)', e['xml'])]
    xt.ok('PLAIN' in offered and len(chose) == 1 and chose[0] in offered and
          any(e['event'] == 'recv' and '<success xmlns' in e['xml'] for e in events),
          'PLAIN is among the mechanisms offered on the secure listener; strophe.js '
          'authenticated once with one of them (%s)' % ','.join(chose)) \
        or xt.diag(sorted(offered), chose)

    p = await bob.presence(frm=ajid, timeout=10)
    xt.ok(p is not None and p['type'] == 'available',
          'bob (TCP) gets the initial presence strophe.js broadcast, from its full JID')

    m = await bob.message(body='hello from strophe', timeout=10)
    xt.ok(m is not None and str(m['from']) == ajid,
          'BOSH -> TCP: bob gets strophe.js\'s message, from alice/strophe') \
        or xt.diag(m and str(m['from']))

    bob.send(ajid, 'hi back over TCP')
    e = await next_event(lambda e: e['event'] == 'message' and 'hi back over TCP' in e['xml'])
    xt.ok(e is not None and e['from'] == str(bob.jid),
          'TCP -> BOSH: strophe.js gets bob\'s message, from bob/tcp') or xt.diag(e)
    m = await bob.message(body='echo: hi back over TCP', timeout=10)
    xt.ok(m is not None and str(m['from']) == ajid,
          'and its echo comes back to bob, from alice/strophe')

    sessions = await srv.wait_connected(lambda s: xt.session_of(s, ajid))
    xt.ok(xt.session_of(sessions, ajid) is not None,
          'xmppctl connected lists the BOSH session') or xt.diag(sessions)

    # A second round trip after the session has been idle a while: the
    # request strophe.js keeps open (wait capped at bosh_max_wait=20 s) is
    # answered as soon as the message comes, not when its wait runs out
    # (XEP-0124 11); 8 s leaves a margin for a loaded machine.
    await asyncio.sleep(3)
    t0 = time.monotonic()
    bob.send(ajid, 'after a pause')
    e = await next_event(lambda e: e['event'] == 'message' and 'after a pause' in e['xml'],
                         timeout=25)
    took = time.monotonic() - t0
    m = await bob.message(body='echo: after a pause', timeout=10)
    xt.ok(e is not None and took < 8 and m is not None,
          'after 3 s idle, a message reaches strophe.js at once over its held request '
          '(%.1f s) and the echo returns' % took)

    # stdin closed: strophe.js sends unavailable presence in a body with
    # type='terminate' (XEP-0124 12, XEP-0206 8).
    proc.stdin.close()
    off = await next_event(lambda e: e['event'] == 'offline', timeout=15)
    try:
        rc = await asyncio.wait_for(proc.wait(), 10)
    except asyncio.TimeoutError:
        proc.kill()
        rc = await proc.wait()
    err = (await proc.stderr.read()).decode()
    xt.ok(off is not None and rc == 0 and 'DISCONNECTING' in statuses(),
          'strophe.js terminates its session and sees it disconnected') \
        or xt.diag(rc, statuses(), err[-1500:])
    xt.ok(any(e['event'] == 'recv' and body_type(e['xml']) == 'terminate' for e in events),
          'the server answers the terminate request with a body of type=\'terminate\'') \
        or xt.diag([e['xml'] for e in events if e['event'] == 'recv'][-3:])
    p = await bob.presence(frm=ajid, pred=lambda p: p['type'] == 'unavailable', timeout=10)
    xt.ok(p is not None, 'bob sees alice/strophe unavailable')
    sessions = await srv.wait_connected(lambda s: not xt.session_of(s, ajid))
    xt.ok(sessions is not None and not xt.session_of(sessions, ajid),
          'the BOSH session is gone from xmppctl connected')
    await bob.disconnect()
    srv.stop()


xt.run(main, timeout=240)
