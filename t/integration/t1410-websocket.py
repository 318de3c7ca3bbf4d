#!/usr/bin/python3
"""t1410-websocket: XMPP over WebSocket (RFC 7395) on the HTTP listener.

A client nobody here wrote (@xmpp/client from npm, over wss://) chats with
a slixmpp TCP client; a raw WebSocket client checks the handshake (RFC 6455
4.2), the framing (<open/>, <close/>, one element per message), the size
bound on the reassembled message, the origin list and the keepalive pings.
"""

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402
from xt_transports import FRAMING, RawWS  # noqa: E402

GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
HERE = os.path.dirname(os.path.abspath(__file__))
WS_CLIENT = os.path.join(HERE, '..', 'tools', 'ws-client')


def ws_client_ready():
    """node and @xmpp/client (npm ci into t/tools/ws-client, once)."""
    if shutil.which('node') is None or shutil.which('npm') is None:
        return False
    if os.path.isdir(os.path.join(WS_CLIENT, 'node_modules', '@xmpp', 'client')):
        return True
    r = subprocess.run(['npm', 'ci', '--no-audit', '--no-fund'], cwd=WS_CLIENT,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        xt.diag('npm ci failed: %s' % r.stderr[-2000:])
    return r.returncode == 0


async def main():
    srv = xt.Server(workers=2, start=False)
    hp, hsp, hsecure = xt.free_ports(srv.ip, 3)
    srv.conf['listen'] += [
        {'port': hp, 'ip': srv.ip, 'module': 'http', 'max_stanza_size': 10000},
        {'port': hsp, 'ip': srv.ip, 'module': 'http', 'tls': True},
        {'port': hsecure, 'ip': srv.ip, 'module': 'http', 'secure': True},
    ]
    srv.conf['websocket_origins'] = ['https://chat.example', 'https://other.example']
    srv.conf['websocket_ping_interval'] = 2
    srv.write_config()
    srv.start()
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')

    # --- the opening handshake (RFC 6455 4.2.2) ---------------------------
    ws = await RawWS.connect(srv.ip, hp)
    want = base64.b64encode(hashlib.sha1((ws.key + GUID).encode()).digest()).decode()
    xt.is_((ws.status, ws.headers.get('upgrade', '').lower(),
            ws.headers.get('sec-websocket-accept'), ws.headers.get('sec-websocket-protocol')),
           (101, 'websocket', want, 'xmpp'),
           '101 with Upgrade, the Sec-WebSocket-Accept of our key and the xmpp subprotocol')

    # <open/> answered by <open/> and the features, one message each
    # (RFC 7395 3.3.2, 3.3.3).
    hdr, feats = await ws.open()
    xt.like(hdr or '', r"^<open xmlns='%s'[^>]* from='xmppd\.test'[^>]* version='1\.0'[^>]*/>$"
            % FRAMING, 'the server answers with its own <open/>, from its domain, version 1.0')
    xt.like(feats or '', r"^<stream:features xmlns:stream='http://etherx\.jabber\.org/streams'"
            r".*</stream:features>$", 'the features are one message, declaring the stream prefix')
    xt.ok(feats is not None and 'SCRAM-SHA-1' in feats and '>PLAIN<' not in feats and
          'starttls' not in feats,
          'ws:// (not secure): SCRAM offered, no PLAIN and no STARTTLS (RFC 7395 3.4)') \
        or xt.diag(feats)

    # <close/> is answered by <close/> and a close frame 1000 (3.6.1).
    ws.send("<close xmlns='%s'/>" % FRAMING)
    texts, code = await ws.until_close()
    xt.is_((texts, code), (["<close xmlns='%s'/>" % FRAMING], 1000),
           '<close/> is answered with <close/> and a WebSocket close frame, code 1000')
    ws.close()

    # A handshake the server refuses, each with its status.
    ws = await RawWS.connect(srv.ip, hp, protocol=None)
    xt.is_(ws.status, 400, 'no xmpp subprotocol offered: 400 (RFC 7395 3.2)')
    ws.close()
    ws = await RawWS.connect(srv.ip, hp, version='8')
    xt.is_((ws.status, ws.headers.get('sec-websocket-version')), (426, '13'),
           'WebSocket version 8: 426 with Sec-WebSocket-Version: 13 (RFC 6455 4.2.2)')
    ws.close()
    ws = await RawWS.connect(srv.ip, hp, key='not-a-key')
    xt.is_(ws.status, 400, 'a Sec-WebSocket-Key that is not 16 bytes in base64: 400')
    ws.close()
    ws = await RawWS.connect(srv.ip, hp, origin='https://evil.example')
    xt.is_(ws.status, 403, 'an Origin not in websocket_origins: 403')
    ws.close()
    ws = await RawWS.connect(srv.ip, hp, origin='https://chat.example')
    xt.is_(ws.status, 101, 'an Origin in websocket_origins: 101')
    ws.close()

    # The wrong namespace on <open/>: invalid-namespace, <close/>, close.
    ws = await RawWS.connect(srv.ip, hp)
    ws.send("<open xmlns='jabber:client' to='xmppd.test' version='1.0'/>")
    texts, code = await ws.until_close()
    xt.ok(len(texts) == 3 and texts[0].startswith('<open ') and
          "<invalid-namespace xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in texts[1] and
          texts[1].startswith("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>") and
          texts[2] == "<close xmlns='%s'/>" % FRAMING and code == 1000,
          '<open/> outside the framing namespace: <stream:error><invalid-namespace/>, '
          '<close/>, close frame (RFC 7395 3.3.2, 3.6)') or xt.diag(texts, code)
    ws.close()

    # The size bound is on the reassembled message: three 4,000-byte
    # fragments pass each frame's size but not the listener's 10,000.
    ws = await RawWS.connect(srv.ip, hp)
    await ws.open()
    ws.send('<iq type="get" id="a">' + 'x' * 3000, fin=False)
    ws.send('y' * 4000, opcode=0, fin=False)
    ws.send('z' * 4000 + '</iq>', opcode=0, fin=True)
    texts, code = await ws.until_close()
    xt.is_(code, 1009, 'a message of 11,000 bytes in frames of 4,000: closed with 1009 '
           '(message too big), the bound counts the whole message')
    ws.close()
    # ... while a fragmented message under the bound is taken whole.
    ws = await RawWS.connect(srv.ip, hp)
    await ws.open()
    ws.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechan", fin=False)
    ws.send("ism='SCRAM-SHA-1'>" + base64.b64encode(b'n,,n=alice,r=abcdefgh').decode(),
            opcode=0, fin=False)
    ws.send('</auth>', opcode=0, fin=True)
    t = await ws.text()
    xt.like(t or '', r"^<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>",
            'a SASL <auth/> sent in three fragments is reassembled and answered with a challenge')
    # A binary message is refused (RFC 7395 3.2: text only).
    ws.send(b'<presence/>', opcode=2)
    texts, code = await ws.until_close()
    xt.is_(code, 1003, 'a binary message: closed with 1003')
    ws.close()

    # Keepalive (RFC 7395 3.7): a quiet client gets pings; one that answers
    # them stays, one that does not is cut with <connection-timeout/>.
    ws = await RawWS.connect(srv.ip, hp)
    await ws.open()
    silent = await RawWS.connect(srv.ip, hp)
    await silent.open()
    pings, ws_texts = [], []

    async def answer_pings(stop):
        while not stop.is_set():
            op, data = await ws.recv(timeout=0.5)
            if op == 9:
                pings.append(data)
                ws.send(data, opcode=10)      # pong, RFC 6455 5.5.3
            elif op == 1:
                ws_texts.append(data.decode())
            elif op == 8 or (op is None and ws.r.at_eof()):
                return
    stop = asyncio.Event()
    answerer = asyncio.ensure_future(answer_pings(stop))
    texts, code = await silent.until_close(timeout=45)
    xt.ok(any("<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in t
              for t in texts) and code == 1000,
          'a client that does not answer pings is closed with <connection-timeout/>') \
        or xt.diag(texts, code)
    silent.close()
    stop.set()
    await answerer
    xt.ok(len(pings) >= 1, 'the quiet client that answers was pinged too (%d pings; '
          'websocket_ping_interval 2 s, swept every 10 s)' % len(pings))
    ws.send("<close xmlns='%s'/>" % FRAMING)
    texts, code = await ws.until_close()
    xt.is_((ws_texts, texts, code), ([], ["<close xmlns='%s'/>" % FRAMING], 1000),
           'the client that answered its pings is still there: no stream error, '
           '<close/> answered normally')
    ws.close()

    # secure: true (a TLS proxy in front): PLAIN is offered on ws://.
    ws = await RawWS.connect(srv.ip, hsecure)
    _, feats = await ws.open()
    xt.ok(feats is not None and '>PLAIN<' in feats,
          'secure: true: the plain listener counts as encrypted, PLAIN is offered') \
        or xt.diag(feats)
    ws.close()

    # --- stream management (XEP-0198) on a WebSocket -----------------------
    # Resume after the connection drops: the stanzas sent meanwhile come,
    # in order, once.
    async def ws_login(resource, sm=None):
        ws = await RawWS.connect(srv.ip, hsecure)
        await ws.open()
        ws.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>"
                % base64.b64encode(b'\0alice\0alice-pw').decode())
        ok = (await ws.text() or '').startswith('<success')
        await ws.open()
        if sm is not None:
            ws.send(sm)
            return ws, ok, await ws.text()
        ws.send("<iq type='set' id='b1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:"
                "xml:ns:xmpp-bind'><resource>%s</resource></bind></iq>" % resource)
        bound = await ws.text()
        ws.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        return ws, ok and bound is not None and "type='result'" in bound, await ws.text()

    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='tcp')
    ws, logged_in, enabled = await ws_login('smws')
    m = re.search(r"<enabled xmlns='urn:xmpp:sm:3'[^>]* id='([^']+)'", enabled or '')
    xt.ok(logged_in and m is not None and "resume='true'" in enabled,
          'a WebSocket session enables stream management with resume') or xt.diag(enabled)
    previd = m.group(1) if m else 'none'
    bob.send('alice@xmppd.test/smws', 'sm one')
    t = await ws.text()
    xt.ok(t is not None and 'sm one' in t, 'the WebSocket session gets a message (not acked)')
    ws.w.transport.abort()          # the connection drops, no <close/>
    await asyncio.sleep(0.5)
    bob.send('alice@xmppd.test/smws', 'sm two')
    bob.send('alice@xmppd.test/smws', 'sm three')
    await asyncio.sleep(0.5)
    ws2, ok2, resumed = await ws_login(
        None, "<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>" % previd)
    xt.ok(ok2 and resumed is not None and resumed.startswith('<resumed ') and
          "previd='%s'" % previd in resumed,
          'a new WebSocket resumes the detached session (<resumed/>)') or xt.diag(resumed)
    got = []
    for _ in range(6):
        t = await ws2.text(timeout=3)
        if t is None:
            break
        mm = re.search(r'<body>(sm [a-z]+)</body>', t)
        if mm:
            got.append(mm.group(1))
        if len(got) == 3:
            break
    xt.is_(got, ['sm one', 'sm two', 'sm three'],
           'the unacknowledged message and the two sent while detached come, in order, once')
    ws2.send("<a xmlns='urn:xmpp:sm:3' h='3'/>")
    ws2.send("<close xmlns='%s'/>" % FRAMING)
    await ws2.until_close()
    ws2.close()
    await bob.disconnect()

    # --- @xmpp/client over wss:// chatting with a TCP client ---------------
    have = ws_client_ready()
    xt.require_peer('node, npm and @xmpp/client (t/tools/ws-client)',
                    shutil.which('node') or '/nonexistent/node',
                    os.path.join(WS_CLIENT, 'node_modules', '@xmpp', 'client') if have
                    else '/nonexistent/@xmpp/client')
    if have:
        bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='tcp')
        env = dict(os.environ, NODE_TLS_REJECT_UNAUTHORIZED='0', NODE_NO_WARNINGS='1')
        proc = await asyncio.create_subprocess_exec(
            'node', os.path.join(WS_CLIENT, 'chat.js'),
            'wss://%s:%d/xmpp-websocket' % (srv.ip, hsp), 'xmppd.test', 'alice', 'alice-pw',
            str(bob.jid), 'hello from the browser side',
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

        online = await next_event(lambda e: e['event'] in ('online', 'start-failed', 'error'))
        xt.ok(online is not None and online['event'] == 'online' and
              online['jid'].startswith('alice@xmppd.test/'),
              '@xmpp/client logs in over wss:// and binds a resource') or xt.diag(online, events)
        m = await bob.message(body='hello from the browser side', timeout=10)
        xt.ok(m is not None and str(m['from']) == (online or {}).get('jid'),
              'the TCP client receives the WebSocket client\'s message, from its full JID') \
            or xt.diag(m and str(m['from']))
        bob.send((online or {}).get('jid', 'alice@xmppd.test'), 'hi back over TCP')
        e = await next_event(lambda e: e['event'] == 'stanza' and 'hi back over TCP' in e['xml'])
        xt.ok(e is not None and re.search(r"from=['\"]%s['\"]" % re.escape(str(bob.jid)), e['xml']),
              'the WebSocket client receives the TCP client\'s message') or xt.diag(e)
        m = await bob.message(body='echo: hi back over TCP', timeout=10)
        xt.ok(m is not None, 'and its answer comes back to the TCP client')
        sessions = await srv.wait_connected(
            lambda s: xt.session_of(s, (online or {}).get('jid', '-')))
        xt.ok(xt.session_of(sessions, (online or {}).get('jid', '-')) is not None,
              'xmppctl connected lists the WebSocket session')
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
        err = (await proc.stderr.read()).decode()
        e = await next_event(lambda e: e['event'] == 'offline', timeout=2)
        xt.ok(e is not None, '@xmpp/client closes its stream and sees it closed') \
            or xt.diag(events, err[-1000:])
        sessions = await srv.wait_connected(
            lambda s: not xt.session_of(s, (online or {}).get('jid', '-')))
        xt.ok(not xt.session_of(sessions, (online or {}).get('jid', '-')),
              'the WebSocket session is gone after the client closed')
        await bob.disconnect()
    srv.stop()


xt.run(main, timeout=240)
