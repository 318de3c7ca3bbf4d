#!/usr/bin/python3
"""t1790-muc-more: XEP-0249 direct invitations (slixmpp's xep_0249 plugin:
the invitee gets the jabber:x:conference element with every attribute,
online and from offline storage, and joins the password-protected room
with the password it carries); XEP-0421 occupant ids on private messages
between occupants; the joins rate of a room (join_rate, join_burst): past
it a join gets resource-constraint (wait), another room is not slowed,
owners get in, and the bucket refills."""

import asyncio

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


async def join_rate():
    srv = xt.Server(name='t1790-joins', workers=2,
                    modules={'mod_muc': {'join_rate': 1, 'join_burst': 3}})
    users = ['owner'] + ['u%d' % i for i in range(6)]
    for u in users:
        srv.register(u, u + '-pw')
    cs = {u: await xt.login_ok(srv, u, resource='r') for u in users}
    await create(cs['owner'], 'busy', 'owner')
    await create(cs['owner'], 'calm', 'owner')
    got = []
    for u in ('u0', 'u1', 'u2', 'u3'):
        got.append(await join(cs[u], 'busy', u))
    xt.ok(all(p is not None and p['type'] != 'error' for p in got[:3]),
          'join_burst 3: three joins in a row get in') or xt.diag(*[str(p) for p in got])
    e = got[3]
    err = None if e is None else e.xml.find('{jabber:client}error')
    xt.ok(cond_of(e) == 'resource-constraint' and err is not None and
          err.get('type') == 'wait',
          'the fourth at once: resource-constraint, type wait') or xt.diag(str(e))
    p = await join(cs['u4'], 'calm', 'u4')
    xt.ok(p is not None and p['type'] != 'error',
          'a flood in one room does not slow another room') or xt.diag(str(p))
    cs['owner'].send_raw("<presence to='busy@%s/owner' type='unavailable'/>" % SVC)
    await pres_from(cs['owner'], 'busy', 'owner', lambda p: p['type'] == 'unavailable')
    p = await join(cs['owner'], 'busy', 'owner')
    xt.ok(p is not None and p['type'] != 'error', 'the owner gets in past the rate') \
        or xt.diag(str(p))
    await asyncio.sleep(1.2)
    p = await join(cs['u3'], 'busy', 'u3')
    xt.ok(p is not None and p['type'] != 'error', 'a second later the bucket let one more in') \
        or xt.diag(str(p))
    p = await join(cs['u5'], 'busy', 'u5')
    xt.is_(cond_of(p), 'resource-constraint', 'and only one') or xt.diag(str(p))
    await xt.disconnect_all(*cs.values())
    xt.is_(await srv.astop(), 0, 'xmppd (join_rate) exits 0')


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
    await join_rate()


xt.run(main, timeout=90)
