#!/usr/bin/python3
"""t1430-transports: each transport talking to the others. One account on
each: alice over WebSocket (RFC 7395), bob over BOSH (XEP-0206), carol over
TCP (slixmpp), and an external component (XEP-0114, slixmpp's
ComponentXMPP answering with echoes). Every pair exchanges a message both
ways, each seen by the receiver with the sender's full JID as 'from'."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402
from xt_transports import NS_C, Bosh, Component, ws_login, ws_message  # noqa: E402

COMP = 'echo.xmppd.test'


def esc(s):
    return s.replace('&', '&amp;').replace('<', '&lt;').replace("'", '&apos;')


def ws_send(ws, to, body):
    ws.send("<message xmlns='jabber:client' type='chat' to='%s'><body>%s</body></message>"
            % (to, esc(body)))


def from_of(b, body):
    for m in (b.findall('{%s}message' % NS_C) if b is not None else []):
        if m.findtext('{%s}body' % NS_C) == body:
            return m.get('from')
    return None


async def bosh_message(bosh, body, tries=4, first=None):
    """The 'from' of the first message with body in first (a response
    already read) or the next polls, or None."""
    f = from_of(first, body)
    for _ in range(tries):
        if f is not None:
            return f
        st, b, _ = await bosh.request()
        f = from_of(b, body)
    return f


def bosh_send(bosh, to, body):
    return bosh.request("<message xmlns='jabber:client' type='chat' to='%s'><body>%s</body>"
                        "</message>" % (to, esc(body)))


async def main():
    srv = xt.Server(workers=2, start=False, conf={'bosh_max_wait': 2})
    hport, cport = xt.free_ports(srv.ip, 2)
    srv.conf['listen'] += [
        {'port': hport, 'ip': srv.ip, 'module': 'http', 'secure': True},
        {'port': cport, 'ip': srv.ip, 'module': 'component',
         'hosts': {COMP: {'password': 'echo-secret'}}},
    ]
    srv.write_config()
    srv.start()
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')

    ws, alice = await ws_login(srv, hport, 'alice', 'ws')
    bosh = Bosh(srv, hport)
    await bosh.create(wait=2, hold=1)
    bob = await bosh.login('bob', 'bosh')
    await bosh.request("<presence xmlns='jabber:client'/>")
    carol = await xt.login_ok(srv, 'carol', 'carol-pw', resource='tcp')
    comp = Component(srv, cport, COMP, 'echo-secret')
    xt.ok(await comp.connect(), 'the component is connected')
    xt.diag('alice %s (WebSocket), bob %s (BOSH), carol %s (TCP)' % (alice, bob, carol.jid))

    # WebSocket <-> BOSH
    ws_send(ws, bob, 'ws to bosh')
    xt.is_(await bosh_message(bosh, 'ws to bosh'), alice,
           'WebSocket -> BOSH: bob gets it from alice\'s full JID')
    await bosh_send(bosh, alice, 'bosh to ws')
    xt.is_(await ws_message(ws, 'bosh to ws'), bob,
           'BOSH -> WebSocket: alice gets it from bob\'s full JID')

    # WebSocket <-> TCP
    ws_send(ws, str(carol.jid), 'ws to tcp')
    m = await carol.message(body='ws to tcp')
    xt.is_(m and str(m['from']), alice, 'WebSocket -> TCP')
    carol.send(alice, 'tcp to ws')
    xt.is_(await ws_message(ws, 'tcp to ws'), str(carol.jid), 'TCP -> WebSocket')

    # BOSH <-> TCP
    await bosh_send(bosh, str(carol.jid), 'bosh to tcp')
    m = await carol.message(body='bosh to tcp')
    xt.is_(m and str(m['from']), bob, 'BOSH -> TCP')
    carol.send(bob, 'tcp to bosh')
    xt.is_(await bosh_message(bosh, 'tcp to bosh'), str(carol.jid), 'TCP -> BOSH')

    # Each client <-> the component: the echo comes back from the
    # component's JID to the client's full JID.
    ws_send(ws, 'bot@' + COMP, 'ws to comp')
    xt.is_(await ws_message(ws, 'echo: ws to comp'), 'bot@' + COMP,
           'WebSocket -> component, and its answer back')
    st, b, _ = await bosh_send(bosh, 'bot@' + COMP, 'bosh to comp')
    xt.is_(await bosh_message(bosh, 'echo: bosh to comp', first=b), 'bot@' + COMP,
           'BOSH -> component, and its answer back')
    carol.send('bot@' + COMP, 'tcp to comp')
    m = await carol.message(body='echo: tcp to comp')
    xt.is_(m and str(m['from']), 'bot@' + COMP, 'TCP -> component, and its answer back')
    seen = []
    for _ in range(3):
        m = await comp.messages.get(lambda m: True, 5)
        seen.append(str(m['from']) if m is not None else None)
    xt.is_(sorted(x for x in seen if x), sorted([alice, bob, str(carol.jid)]),
           'the component saw each client\'s full JID as the sender')

    ws.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
    await ws.until_close()
    ws.close()
    await bosh.request(type='terminate')
    await comp.disconnect()
    await carol.disconnect()
    srv.stop()


xt.run(main, timeout=120)
