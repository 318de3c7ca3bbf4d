#!/usr/bin/python3
"""t1790-muc-more: XEP-0249 direct invitations (slixmpp's xep_0249 plugin:
the invitee gets the jabber:x:conference element with every attribute,
online and from offline storage, and joins the password-protected room
with the password it carries); XEP-0421 occupant ids on private messages
between occupants."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from xt_muc import HOST, SVC, cond_of, create, join, pres_from  # noqa: E402

CONF = 'jabber:x:conference'
OID = 'urn:xmpp:occupant-id:0'
DELAY = 'urn:xmpp:delay'


def conf_x(m):
    return None if m is None else m.xml.find('{%s}x' % CONF)


def oids(st):
    return [] if st is None else [e.get('id') for e in st.xml.findall('{%s}occupant-id' % OID)]


def invite(c, to, room, password, reason, thread):
    """A direct invitation as slixmpp's plugin builds it, with XEP-0249 2's
    'continue' and 'thread' too (the plugin has no interface for them)."""
    msg = c.xmpp.Message()
    msg['to'] = to
    msg['groupchat_invite']['jid'] = room
    msg['groupchat_invite']['password'] = password
    msg['groupchat_invite']['reason'] = reason
    msg['groupchat_invite'].xml.set('continue', 'true')
    msg['groupchat_invite'].xml.set('thread', thread)
    msg.send()


async def direct_invitations(srv, alice, bob):
    room = 'inv@' + SVC
    _, r = await create(alice, 'inv', 'alice', [('passwordprotectedroom', '1'),
                                                 ('roomsecret', 'cauldron')])
    xt.is_(cond_of(r), 'result', 'a password-protected room is made')
    alice.xmpp.register_plugin('xep_0249')
    alice.xmpp.plugin['xep_0249'].send_invitation(bob.jid.bare, room, password='cauldron',
                                                  reason='plain send_invitation')
    m = await bob.message(lambda m: conf_x(m) is not None)
    x = conf_x(m)
    xt.ok(x is not None and x.get('jid') == room and x.get('password') == 'cauldron' and
          x.get('reason') == 'plain send_invitation' and str(m['from']) == str(alice.jid),
          'XEP-0249 2: send_invitation reaches the invitee from the inviter\'s full JID') \
        or xt.diag(str(m))
    invite(alice, bob.jid.bare, room, 'cauldron', 'Hey, the witches are here', 'e0ffe42b28')
    m = await bob.message(lambda m: conf_x(m) is not None)
    x = conf_x(m)
    xt.ok(x is not None and x.get('jid') == room and x.get('password') == 'cauldron' and
          x.get('reason') == 'Hey, the witches are here' and x.get('continue') == 'true' and
          x.get('thread') == 'e0ffe42b28',
          'XEP-0249 2: jid, password, reason, continue and thread arrive untouched') \
        or xt.diag(str(m))
    p = await join(bob, 'inv', 'bob', "<password>%s</password>" %
                   (x.get('password') if x is not None else ''))
    xt.ok(p is not None and p['type'] != 'error',
          'XEP-0249 2 / XEP-0045 7.2.5: the invitee joins with the invitation\'s password') \
        or xt.diag(str(p))

    # XEP-0249 has no server part beyond delivery: an invitation to an
    # offline user is a message worth keeping (XEP-0160).
    invite(alice, 'carol@' + HOST, room, 'cauldron', 'while you were away', 't-off')
    await alice.iq('get', room, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    carol = await xt.login_ok(srv, 'carol', resource='c')
    m = await carol.message(lambda m: conf_x(m) is not None)
    x = conf_x(m)
    d = None if m is None else m.xml.find('{%s}delay' % DELAY)
    xt.ok(x is not None and x.get('jid') == room and x.get('reason') == 'while you were away'
          and x.get('thread') == 't-off' and d is not None,
          'XEP-0249 / XEP-0160: an invitation to an offline user is stored and delivered '
          'later, with its delay') or xt.diag(str(m))
    p = await join(carol, 'inv', 'carol', "<password>%s</password>" %
                   (x.get('password') if x is not None else ''))
    xt.ok(p is not None and p['type'] != 'error', 'and that invitee joins too') \
        or xt.diag(str(p))
    return carol


async def pm_occupant_ids(alice, bob, carol):
    room = 'inv@' + SVC
    # bob's id as his presence shows it (XEP-0421 4, checked by t1760).
    pb = await pres_from(carol, 'inv', 'bob')
    bid = oids(pb)[0] if oids(pb) else None
    bob.send_raw("<message to='%s/carol' type='chat'><body>pm1</body>"
                 "<occupant-id xmlns='%s' id='forged'/></message>" % (room, OID))
    m = await carol.message(lambda m: m['body'] == 'pm1')
    xt.ok(m is not None and bid is not None and oids(m) == [bid],
          'XEP-0421 5: a private message carries its sender\'s occupant id, the forged one '
          'removed') or xt.diag(str(m), bid)
    alice.send_raw("<message to='%s/bob' type='chat'><body>pm2</body></message>" % room)
    m2 = await bob.message(lambda m: m['body'] == 'pm2')
    xt.ok(m2 is not None and len(oids(m2)) == 1 and oids(m2)[0] != bid,
          'XEP-0421 5: another sender, its own id') or xt.diag(str(m2))


async def main():
    srv = xt.Server(workers=2, modules={'mod_muc': {}, 'mod_offline': {}, 'mod_roster': {}})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await direct_invitations(srv, alice, bob)
    await pm_occupant_ids(alice, bob, carol)

    await xt.disconnect_all(alice, bob, carol)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=90)
