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


def msg_seen(m):
    """(body, from, type) of a received message, None if none came."""
    return None if m is None else (m['body'], str(m['from']), m['type'])


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

    # One message is one check: it arrived, from the sender's full JID
    # (RFC 6120 8.1.2.1), with its type.
    alice.send(bob.jid, 'hello bob, it is alice')
    m = await bob.message(body='hello bob, it is alice')
    xt.is_(msg_seen(m), ('hello bob, it is alice', str(alice.jid), 'chat'),
           'bob receives alice\'s chat message, from her full JID')
    bob.send(alice.jid, 'hi alice <&> "quoted"')
    m = await alice.message(body='hi alice <&> "quoted"')
    xt.is_(msg_seen(m), ('hi alice <&> "quoted"', str(bob.jid), 'chat'),
           'alice receives bob\'s reply from his full JID, escaped characters intact')

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
    xt.is_(p['type'] if p is not None else None, 'available',
           'available presence from alice/low reaches alice/high')

    # Nonexistent local user: <service-unavailable/> from that JID (RFC 6121
    # 8.5.1), matched to the message by its id (RFC 6120 8.3.1: the error
    # carries the id of the stanza that caused it).
    sid = xt.send_message_id(bob, srv.jid('nobody'), 'anyone there?')
    m = await xt.error_for(bob, sid)
    xt.is_(xt.error_summary(m), ('error', 'service-unavailable', srv.jid('nobody')),
           'message to a nonexistent user bounces: service-unavailable from that JID')
    # An error is never answered with an error (RFC 6120 8.3.1), not even
    # one to an account that does not exist.
    sid = xt.send_message_id(bob, srv.jid('nobody'), 'an error', 'error',
                             extra="<error type='cancel'><item-not-found xmlns='%s'/></error>"
                             % xt.NS_STANZAS_ERR)
    await bob.iq('get', srv.host, "<query xmlns='urn:xmppd:test:sync'/>")  # routed by now
    xt.is_(xt.error_summary(await xt.error_for(bob, sid, timeout=0.5)), None,
           'a message of type error to a nonexistent user is not answered')

    # IQ to a full JID with no session: <service-unavailable/> (RFC 6121 8.5.3.2.3).
    gone = srv.jid('alice', 'nosuchresource')
    r = await bob.iq('get', gone, "<query xmlns='jabber:iq:version'/>")
    xt.is_(xt.error_summary(r), ('error', 'service-unavailable', gone),
           'IQ to an unknown full JID: service-unavailable from that JID')

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
    name = r.xml.find('{jabber:iq:version}query/{jabber:iq:version}name') if r is not None else None
    xt.is_((r['type'], str(r['from']), name.text if name is not None else None)
           if r is not None else None, ('result', str(hi.jid), 'hi-client'),
           'IQ to alice/high gets her result back, with her payload')

    await xt.disconnect_all(bob, hi, lo)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
