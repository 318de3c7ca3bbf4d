#!/usr/bin/python3
"""t1730-muc-register: registering with a room (XEP-0045 7.10) and
reserved nicknames: the muc#register form, a registration makes a member
with that nickname, <registered/> afterwards, the reserved nickname
discovered (7.12, node x-roomuser-item), nobody else joins or registers
with it (conflict), it survives a restart of a persistent room, a banned
user may not register, and cancelling frees it."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from xt_muc import (  # noqa: E402,F401
    HOST, SVC, MUC, USER, ADMIN, OWNER, XDATA, STANZAS, cond_of, ux, codes, item, join,
    pres_from, groupchat, gc_msg, error_msg, submit, configure, create, admin, form_vars)


REG = 'jabber:iq:register'
DINFO = 'http://jabber.org/protocol/disco#info'


def reg_form(nick=None):
    f = "<field var='FORM_TYPE'><value>%s#register</value></field>" % MUC
    if nick is not None:
        f += "<field var='muc#register_roomnick'><value>%s</value></field>" % nick
    return "<query xmlns='%s'><x xmlns='%s' type='submit'>%s</x></query>" % (REG, XDATA, f)


async def register(c, room, nick=None):
    return await c.iq('set', '%s@%s' % (room, SVC), reg_form(nick))


async def main():
    srv = xt.Server(workers=2, modules={'mod_muc': {}})
    for u in ('alice', 'bob', 'carol', 'eve'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    eve = await xt.login_ok(srv, 'eve', resource='e')
    room = 'club@' + SVC
    await create(alice, 'club', 'alice', [('persistentroom', '1')])

    r = await bob.iq('get', room, "<query xmlns='%s'/>" % REG)
    fv = form_vars(r, REG)
    xt.ok(fv.get('FORM_TYPE') == [MUC + '#register'] and 'muc#register_roomnick' in fv,
          '7.10: the registration form with muc#register_roomnick') or xt.diag(str(r))
    r = await register(bob, 'club', 'bobby')
    xt.is_(cond_of(r), 'result', '7.10: bob registers as bobby')
    r = await admin(alice, 'club', "<item affiliation='member'/>", 'get')
    its = [] if r is None else r.xml.findall('{%s}query/{%s}item' % (ADMIN, ADMIN))
    xt.is_([i.get('jid') for i in its], [bob.jid.bare], '7.10: a registered user is a member')
    r = await bob.iq('get', room, "<query xmlns='%s'/>" % REG)
    q = None if r is None else r.xml.find('{%s}query' % REG)
    xt.ok(q is not None and q.find('{%s}registered' % REG) is not None and
          q.findtext('{%s}username' % REG) == 'bobby',
          '7.10: asked again: <registered/> with the nickname') or xt.diag(str(r))
    r = await bob.iq('get', room, "<query xmlns='%s' node='x-roomuser-item'/>" % DINFO)
    i = None if r is None else r.xml.find('{%s}query/{%s}identity' % (DINFO, DINFO))
    xt.ok(i is not None and i.get('name') == 'bobby', '7.12: the reserved nickname discovered')
    p = await join(carol, 'club', 'bobby')
    xt.is_(cond_of(p), 'conflict', '7.2.9: another user joining with it: conflict')
    r = await register(carol, 'club', 'bobby')
    xt.is_(cond_of(r), 'conflict', '7.10: another user registering it: conflict')
    r = await register(carol, 'club')
    xt.is_(cond_of(r), 'not-acceptable', '7.10: no nickname: not-acceptable')
    p = await join(bob, 'club', 'bobby')
    xt.ok(p is not None and p['type'] != 'error' and item(p).get('affiliation') == 'member',
          'bob joins with his nickname, a member')
    r = await admin(alice, 'club', "<item jid='%s' affiliation='outcast'/>" % eve.jid.bare)
    r = await register(eve, 'club', 'evil')
    xt.is_(cond_of(r), 'forbidden', '7.10: a banned user may not register')

    # A members-only room: registering would make anyone a member.
    await create(alice, 'inner', 'alice', [('membersonly', '1')])
    r = await register(carol, 'inner', 'caro')
    xt.is_(cond_of(r), 'registration-required',
           'members-only: a user without an affiliation may not register')
    p = await join(carol, 'inner', 'caro')
    xt.is_(cond_of(p), 'registration-required', 'and is still not a member')
    r = await carol.iq('get', 'inner@' + SVC, "<query xmlns='%s'/>" % REG)
    xt.is_(cond_of(r), 'registration-required', 'nor gets the form')
    await admin(alice, 'inner', "<item jid='%s' affiliation='member'/>" % bob.jid.bare)
    r = await register(bob, 'inner', 'bobby')
    xt.is_(cond_of(r), 'result', 'members-only: a member reserves a nickname')

    await xt.disconnect_all(alice, bob, carol, eve)
    xt.is_(srv.restart(), 0, 'xmppd restarts')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    p = await join(carol, 'club', 'bobby')
    xt.is_(cond_of(p), 'conflict', 'the reservation survived the restart')
    r = await bob.iq('set', room, "<query xmlns='%s'><remove/></query>" % REG)
    xt.is_(cond_of(r), 'result', 'bob cancels his registration')
    p = await join(carol, 'club', 'bobby')
    xt.ok(p is not None and p['type'] != 'error', 'the nickname is free again')

    await xt.disconnect_all(bob, carol)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=90)
