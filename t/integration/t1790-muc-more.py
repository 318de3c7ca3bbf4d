#!/usr/bin/python3
"""t1790-muc-more: XEP-0249 direct invitations (slixmpp's xep_0249 plugin:
the invitee gets the jabber:x:conference element with every attribute,
online and from offline storage, and joins the password-protected room
with the password it carries); XEP-0421 occupant ids on private messages
between occupants; muc#roomconfig_roomowners and _roomadmins as the full
lists (those left out lose the affiliation, never the last owner:
conflict; the occupants' presence re-sent); the joins rate of a room
(join_rate, join_burst): past it a join gets resource-constraint (wait), another room is not slowed,
owners get in, and the bucket refills; max_rooms_per_user counts the
persistent rooms a user made before a restart; a persistent room's last
history_size messages survive a restart, with their original delay
stamps, and the ring goes on from there; at shutdown every occupant gets
status 332."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from xt_muc import (  # noqa: E402
    HOST, SVC, admin, codes, cond_of, configure, create, gc_msg, groupchat, item, join,
    pres_from)

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


async def aff_jids(c, room, aff):
    r = await admin(c, room, "<item affiliation='%s'/>" % aff, 'get')
    return None if r is None or r['type'] != 'result' else sorted(
        i.get('jid') for i in r.xml.iter('{http://jabber.org/protocol/muc#admin}item'))


async def form_lists(alice, bob, carol):
    a, b, c = (str(x.jid.bare) for x in (alice, bob, carol))
    await create(alice, 'lists', 'alice')
    await join(bob, 'lists', 'bob')
    await join(carol, 'lists', 'carol')
    # Taken, so that later checks see only the presences that follow.
    await pres_from(bob, 'lists', 'carol')
    await pres_from(alice, 'lists', 'carol')
    await pres_from(alice, 'lists', 'bob')
    r = await configure(alice, 'lists', [('roomowners', [a, b]), ('roomadmins', [c])])
    xt.is_(cond_of(r), 'result', 'XEP-0045 10.2: roomowners and roomadmins submitted')
    pb = await pres_from(alice, 'lists', 'bob', lambda p: item(p).get('affiliation') == 'owner')
    pc = await pres_from(alice, 'lists', 'carol',
                         lambda p: item(p).get('affiliation') == 'admin')
    xt.ok(pb is not None and pc is not None and item(pc).get('role') == 'moderator',
          '10.3, 10.6: the new owner\'s and admin\'s presence is re-sent with the '
          'affiliation (the admin a moderator)') or xt.diag(str(pb), str(pc))
    xt.is_(await aff_jids(alice, 'lists', 'owner'), sorted([a, b]), 'the owners are those listed')
    r = await configure(alice, 'lists', [('roomowners', [b])])
    pa = await pres_from(alice, 'lists', 'alice', lambda p: '110' in
                         codes(p) and item(p).get('affiliation') == 'none')
    xt.ok(cond_of(r) == 'result' and pa is not None and item(pa).get('role') == 'participant',
          '10.4: an owner left out of roomowners loses it: its own presence says none, '
          'participant') or xt.diag(str(r), str(pa))
    xt.is_(await aff_jids(bob, 'lists', 'owner'), [b], 'exactly the listed owner stays')
    xt.is_(await aff_jids(bob, 'lists', 'admin'), [c],
           'an absent roomadmins field changes no admin')
    r = await configure(bob, 'lists', [('roomadmins', [])])
    pc = await pres_from(bob, 'lists', 'carol', lambda p: item(p).get('affiliation') == 'none')
    xt.ok(cond_of(r) == 'result' and pc is not None and item(pc).get('role') == 'participant',
          '10.7: an empty roomadmins removes the admins, their presence re-sent') \
        or xt.diag(str(r), str(pc))
    xt.is_(await aff_jids(bob, 'lists', 'admin'), [], 'no admin left')
    r = await configure(bob, 'lists', [('roomowners', [])])
    xt.is_(cond_of(r), 'conflict', '10.4: a roomowners list that leaves no owner: conflict')
    r = await configure(bob, 'lists', [('roomowners', [a]), ('roomadmins', [b])])
    xt.is_(cond_of(r), 'result', 'an owner may hand the room over (listed as admin)')
    xt.is_(await aff_jids(alice, 'lists', 'owner'), [a], 'the new owner alone')
    xt.is_(await aff_jids(alice, 'lists', 'admin'), [b], 'the old owner an admin')
    r = await configure(alice, 'lists', [('roomowners', [a, 'not a jid@@'])])
    xt.is_(cond_of(r), 'bad-request', 'a JID that does not parse: bad-request')
    r = await configure(alice, 'lists', [('roomowners', [b]), ('roomadmins', ['x@@'])])
    xt.ok(cond_of(r) == 'bad-request' and await aff_jids(alice, 'lists', 'owner') == [a],
          'and nothing changed') or xt.diag(str(r))


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


def hist_rows(srv):
    pfx = ('%s\0hist\0' % SVC).encode()
    return [k for k, _ in xt.store_rows(srv, 'mod_muc_hist') if k.startswith(pfx)]


async def history(c, room, nick, n):
    """Joins; the (body, delay stamp) of the n history messages that come."""
    await join(c, room, nick)
    out = []
    for _ in range(n):
        m = await c.message(lambda m: m['type'] == 'groupchat' and
                            m.xml.find('{%s}delay' % DELAY) is not None and m['body'])
        if m is None:
            break
        out.append((m['body'], m.xml.find('{%s}delay' % DELAY).get('stamp')))
    return out


async def rooms_per_user():
    srv = xt.Server(name='t1790-rooms', workers=2,
                    modules={'mod_muc': {'max_rooms_per_user': 2, 'history_size': 2}})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    for room in ('kept1', 'kept2'):
        _, r = await create(alice, room, 'alice', [('persistentroom', '1')])
        xt.is_(cond_of(r), 'result', 'alice makes the persistent room ' + room)
    p = await join(alice, 'third', 'alice')
    xt.is_(cond_of(p), 'policy-violation', 'max_rooms_per_user 2: a third room is refused')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    await create(bob, 'hist', 'bob', [('persistentroom', '1')])
    for body in ('h1', 'h2', 'h3'):
        groupchat(bob, 'hist', body)
        await gc_msg(bob, 'hist', 'bob', body)
    before = await history(alice, 'hist', 'alice', 2)
    xt.is_([b for b, _ in before], ['h2', 'h3'], 'history_size 2: a joiner gets the last two')
    await xt.disconnect_all(alice, bob)
    await asyncio.sleep(1.1)            # so that a stamp made anew would differ
    xt.is_(srv.restart(), 0, 'xmppd restarts')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    after = await history(alice, 'hist', 'alice', 2)
    xt.ok(after == before and len(after) == 2,
          'XEP-0045 7.2.15: after the restart the same history, in order, with the original '
          'XEP-0203 stamps') or xt.diag(before, after)
    await join(bob, 'hist', 'bob')
    groupchat(bob, 'hist', 'h4')
    await gc_msg(bob, 'hist', 'bob', 'h4')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    later = await history(carol, 'hist', 'carol', 2)
    xt.is_([b for b, _ in later], ['h3', 'h4'], 'a message after the restart goes on the ring')
    await xt.disconnect_all(carol)
    await xt.disconnect_all(alice, bob)
    xt.is_(srv.restart(), 0, 'xmppd restarts again')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    again = await history(alice, 'hist', 'alice', 2)
    xt.is_([b for b, _ in again], ['h3', 'h4'], 'and is stored as the newest')
    xt.is_(len(hist_rows(srv)), 2, 'the store keeps history_size entries (the older ones deleted)')
    r = await bob.iq('set', 'hist@' + SVC,
                     "<query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query>")
    for _ in range(20):                 # the delete's batch commits soon after
        if hist_rows(srv) == []:
            break
        await asyncio.sleep(0.1)
    xt.ok(cond_of(r) == 'result' and hist_rows(srv) == [],
          'a destroyed room\'s history goes from the store') or xt.diag(str(r))
    p = await join(alice, 'third', 'alice')
    xt.is_(cond_of(p), 'policy-violation',
           'after the restart the stored rooms still count: a third room is refused')
    p = await join(bob, 'bobs', 'bob')
    xt.ok(p is not None and p['type'] != 'error' and '201' in codes(p),
          'another user makes a room after the restart') or xt.diag(str(p))
    r = await alice.iq('set', 'kept1@' + SVC,
                       "<query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query>")
    xt.is_(cond_of(r), 'result', 'alice destroys one of her stored rooms')
    p = await join(alice, 'third', 'alice')
    xt.ok(p is not None and p['type'] != 'error' and '201' in codes(p),
          'then she may make another') or xt.diag(str(p))
    await xt.disconnect_all(alice, bob)
    xt.is_(await srv.astop(), 0, 'xmppd (rooms per user) exits 0')


async def main():
    srv = xt.Server(workers=2, modules={'mod_muc': {}, 'mod_offline': {}, 'mod_roster': {}})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await direct_invitations(srv, alice, bob)
    await pm_occupant_ids(alice, bob, carol)
    await form_lists(alice, bob, carol)

    # XEP-0045 12 (status codes registry): 332, removed because the
    # service shuts down, to every occupant of every room (110: its own).
    code = await srv.astop()
    got = []
    for c, room, nick in ((bob, 'inv', 'bob'), (carol, 'inv', 'carol'), (bob, 'lists', 'bob'),
                          (alice, 'lists', 'alice')):
        got.append(await pres_from(c, room, nick, lambda p: p['type'] == 'unavailable' and
                                   '332' in codes(p), timeout=3))
    xt.ok(all(p is not None and {'332', '110'} <= codes(p) and item(p).get('role') == 'none'
              for p in got),
          'XEP-0045 12: at shutdown every occupant of every room gets its unavailable '
          'presence with 332 and 110') or xt.diag(*[str(p) for p in got])
    xt.is_(code, 0, 'xmppd exits 0')
    await xt.disconnect_all(alice, bob, carol)
    await join_rate()
    await rooms_per_user()


xt.run(main, timeout=90)
