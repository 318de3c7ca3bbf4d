#!/usr/bin/python3
"""t0200-messages: routing of messages, IQs and presence (RFC 6121 8, 4)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402


async def login_on_other_worker(srv, other, user, pw, tries=20):
    """Logs user in until `xmppctl connected` puts it on another worker than
    `other`; returns (client, workers seen)."""
    sessions = await srv.wait_connected(lambda s: xt.session_of(s, other.jid))
    mine = xt.session_of(sessions, other.jid)
    if mine is None:
        return None, sessions
    for i in range(tries):
        c = await xt.login_ok(srv, user, pw, resource='w%d' % i)
        sessions = await srv.wait_connected(lambda s: xt.session_of(s, c.jid))
        s = xt.session_of(sessions, c.jid)
        if s is not None and s['worker'] != mine['worker']:
            return c, (mine, s)
        await c.disconnect()
    return None, sessions


async def main():
    srv = xt.Server(workers=2)
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')

    # Chat both ways between two workers.
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='desk')
    bob, seen = await login_on_other_worker(srv, alice, 'bob', 'bob-pw')
    xt.ok(bob is not None, 'alice and bob end up on different workers (%s)'
          % (seen and [s['line'] for s in seen if s]))
    if bob is None:
        bob = await xt.login_ok(srv, 'bob', 'bob-pw')
    xt.diag('connected: %s' % [s['line'] for s in (await srv.aconnected()) or []])

    alice.send(bob.jid, 'hello bob, it is alice')
    m = await bob.message(body='hello bob, it is alice')
    xt.ok(m is not None, 'bob receives alice\'s message')
    xt.is_(str(m['from']) if m else None, str(alice.jid), 'message from is alice\'s full JID')
    xt.is_(m['type'] if m else None, 'chat', 'message type is chat')
    bob.send(alice.jid, 'hi alice <&> "quoted"')
    m = await alice.message(body='hi alice <&> "quoted"')
    xt.ok(m is not None, 'alice receives bob\'s reply, with escaped characters intact')
    xt.is_(str(m['from']) if m else None, str(bob.jid), 'reply from is bob\'s full JID')

    # Ten each way in a burst, order kept (RFC 6120 10.1).
    for i in range(10):
        alice.send(bob.jid, 'burst %d' % i)
    got = []
    for i in range(10):
        m = await bob.message(pred=lambda m: m['body'].startswith('burst '))
        got.append(m['body'] if m else None)
    xt.is_(got, ['burst %d' % i for i in range(10)], 'a burst of 10 arrives complete and in order')

    # Bare JID: goes to the highest-priority available resource
    # (RFC 6121 8.5.2.1.1).
    hi = await xt.login_ok(srv, 'alice', 'alice-pw', resource='high', priority=5)
    lo = await xt.login_ok(srv, 'alice', 'alice-pw', resource='low', priority=1)
    await alice.disconnect()  # leaves alice with exactly 'high' and 'low'
    sessions = await srv.wait_connected(
        lambda s: (xt.session_of(s, hi.jid) or {}).get('priority') == 5
        and (xt.session_of(s, lo.jid) or {}).get('priority') == 1
        and not xt.session_of(s, alice.jid))
    xt.ok((xt.session_of(sessions, hi.jid) or {}).get('priority') == 5 and
          (xt.session_of(sessions, lo.jid) or {}).get('priority') == 1,
          'xmppctl connected shows priorities 5 and 1') or xt.diag(sessions)
    bob.send(srv.jid('alice'), 'to the bare JID')
    m = await hi.message(body='to the bare JID')
    xt.ok(m is not None, 'bare-JID message reaches the priority 5 resource')
    m = await lo.message(body='to the bare JID', timeout=1.5)
    xt.ok(m is None, 'bare-JID message does not reach the priority 1 resource')

    # Presence from one resource reaches the user's other resources
    # (RFC 6121 4.2.2, 4.4.2).
    lo.xmpp.send_presence(pstatus='status from low', ppriority=1)
    p = await hi.presence(frm=lo.jid, pred=lambda p: p['status'] == 'status from low')
    xt.ok(p is not None, 'presence from alice/low reaches alice/high')
    xt.is_(p['type'] if p is not None else None, 'available', 'that presence is available')

    # Nonexistent local user: <service-unavailable/> (RFC 6121 8.5.2.2.1 and
    # the contract).
    bob.send(srv.jid('nobody'), 'anyone there?')
    m = await bob.message(mtype='error')
    xt.ok(m is not None, 'message to a nonexistent user bounces with type=error')
    xt.is_(m['error']['condition'] if m is not None else None, 'service-unavailable',
           'bounce condition is service-unavailable')
    xt.is_(m['from'].bare if m is not None else None, srv.jid('nobody'),
           'bounce comes from the nonexistent JID')

    # IQ to a full JID with no session: <service-unavailable/> (RFC 6121 8.5.3.2.1).
    r = await bob.iq('get', srv.jid('alice', 'nosuchresource'), "<query xmlns='jabber:iq:version'/>")
    xt.ok(r is not None, 'IQ to an unknown full JID is answered')
    xt.is_(r['type'] if r is not None else None, 'error', 'that answer is type=error')
    xt.is_(r['error']['condition'] if r is not None else None, 'service-unavailable',
           'its condition is service-unavailable')

    # An IQ between clients is routed and its reply routed back.
    def answer(iq):
        reply = iq.reply()
        reply['type'] = 'result'
        reply.append(xt.ET.fromstring("<query xmlns='jabber:iq:version'><name>hi-client</name></query>"))
        reply.send()
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
    hi.xmpp.register_handler(Callback('version', MatchXPath("{jabber:client}iq/{jabber:iq:version}query"),
                                      lambda iq: answer(iq) if iq['type'] == 'get' else None))
    r = await bob.iq('get', hi.jid, "<query xmlns='jabber:iq:version'/>")
    xt.is_(r['type'] if r is not None else None, 'result', 'IQ to alice/high gets her result back')
    xt.like(str(r) if r is not None else '', 'hi-client', 'the result carries her payload')

    await xt.disconnect_all(bob, hi, lo)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
