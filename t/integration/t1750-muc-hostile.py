#!/usr/bin/python3
"""t1750-muc-hostile: what a client may send a MUC service that makes no
sense, answered with the right error and no crash or leak (ASan): IQs
to a room without a payload or with an unknown one, muc#admin items
without what they need, a bad affiliation or role, a configuration
submit of the wrong type, history attributes that are not numbers, a
join to the service itself, an IQ to an occupant, a groupchat to an
occupant, a normal message to the room, and stanzas for a room being
destroyed meanwhile."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from xt_muc import (  # noqa: E402,F401
    HOST, SVC, MUC, USER, ADMIN, OWNER, XDATA, STANZAS, cond_of, ux, codes, item, join,
    pres_from, groupchat, gc_msg, error_msg, submit, configure, create, admin, form_vars)


async def main():
    srv = xt.Server(workers=2, modules={'mod_muc': {}})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    room = 'h@' + SVC
    await create(alice, 'h', 'alice')
    await join(bob, 'h', 'bob', "<history maxstanzas='lots' seconds='-5' since='garbage'/>")

    r = await alice.iq('get', room, None)
    xt.is_(cond_of(r), 'service-unavailable', 'an IQ without a payload')
    r = await alice.iq('get', room, "<query xmlns='urn:nothing'/>")
    xt.is_(cond_of(r), 'service-unavailable', 'an IQ with an unknown payload')
    r = await admin(alice, 'h', '')
    xt.is_(cond_of(r), 'bad-request', 'muc#admin set without an item')
    r = await admin(alice, 'h', "<item nick='bob'/>")
    xt.is_(cond_of(r), 'bad-request', 'an item with neither role nor affiliation')
    r = await admin(alice, 'h', "<item nick='bob' role='emperor'/>")
    xt.is_(cond_of(r), 'bad-request', 'an unknown role')
    r = await admin(alice, 'h', "<item jid='bob@%s' affiliation='king'/>" % HOST)
    xt.is_(cond_of(r), 'bad-request', 'an unknown affiliation')
    r = await admin(alice, 'h', "<item affiliation='member'/>")
    xt.is_(cond_of(r), 'bad-request', 'an affiliation without a JID')
    r = await admin(alice, 'h', "<item nick='nobody' role='none'/>")
    xt.is_(cond_of(r), 'item-not-found', 'kicking nobody: item-not-found')
    r = await admin(alice, 'h', "<item jid='%s' affiliation='none'/>" % alice.jid.bare)
    xt.is_(cond_of(r), 'conflict', '10.4: the last owner cannot go')
    r = await admin(alice, 'h', "<item role='kingpin'/>", 'get')
    xt.is_(cond_of(r), 'bad-request', 'a list of an unknown role')
    r = await alice.iq('set', room, "<query xmlns='%s'><x xmlns='%s' type='result'/></query>"
                       % (OWNER, XDATA))
    xt.is_(cond_of(r), 'bad-request', 'a configuration of type result')
    r = await alice.iq('set', room, "<query xmlns='%s'/>" % OWNER)
    xt.is_(cond_of(r), 'bad-request', 'an owner set with nothing in it')
    r = await bob.iq('set', room, "<query xmlns='%s'><destroy/></query>" % OWNER)
    xt.is_(cond_of(r), 'forbidden', 'a participant cannot destroy the room')
    r = await configure(alice, 'h', [('whois', 'everybody')])
    xt.is_(cond_of(r), 'bad-request', 'a list-single value not among the options')
    r = await configure(alice, 'h', [('maxusers', '0')])
    xt.is_(cond_of(r), 'bad-request', 'maxusers 0')
    bob.xmpp.register_plugin('xep_0199')
    r = await alice.iq('get', room + '/bob', "<ping xmlns='urn:xmpp:ping'/>")
    xt.ok(r is not None and r['type'] == 'result' and str(r['from']) == room + '/bob',
          'an IQ to an occupant is relayed to it, the answer comes from its room JID') \
        or xt.diag(str(r))
    r = await carol.iq('get', room + '/bob', "<ping xmlns='urn:xmpp:ping'/>")
    xt.is_(cond_of(r), 'not-acceptable', 'a non-occupant\'s IQ to an occupant: not-acceptable')
    r = await alice.iq('get', room + '/nobody', "<ping xmlns='urn:xmpp:ping'/>")
    xt.is_(cond_of(r), 'item-not-found', 'an IQ to no such occupant: item-not-found')
    alice.send_raw("<message to='%s/bob' type='groupchat'><body>x</body></message>" % room)
    xt.is_(cond_of(await error_msg(alice)), 'bad-request', '7.5: groupchat to an occupant')
    alice.send_raw("<message to='%s'><body>normal</body></message>" % room)
    xt.is_(cond_of(await error_msg(alice)), 'bad-request', 'a normal message to the room')
    alice.send_raw("<presence to='%s/'/>" % SVC)
    alice.send_raw("<presence to='%s'/>" % SVC)
    alice.send_raw("<message to='%s' type='groupchat'><body>x</body></message>" % SVC)
    r = await alice.iq('get', SVC, "<query xmlns='%s'/>" % OWNER)
    xt.is_(cond_of(r), 'service-unavailable', 'the service itself has no owner query')
    r = await alice.iq('get', SVC, "<query xmlns='http://jabber.org/protocol/disco#info' "
                       "node='x'/>")
    xt.is_(cond_of(r), 'item-not-found', 'disco#info of the service on a node')
    # A burst of stanzas for a room while it is destroyed.
    for i in range(5):
        bob.send_raw("<message to='%s' type='groupchat'><body>b%d</body></message>" % (room, i))
    await alice.iq('set', room, "<query xmlns='%s'><destroy/></query>" % OWNER)
    for i in range(3):
        bob.send_raw("<message to='%s' type='groupchat'><body>c%d</body></message>" % (room, i))
    m = await bob.message(lambda m: m['type'] == 'error' and str(m['from']) == room)
    xt.ok(m is not None and cond_of(m) == 'item-not-found',
          'after the destroy, the room answers for itself no more (item-not-found)')
    r = await alice.iq('get', room, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    xt.is_(cond_of(r), 'item-not-found', 'and it is gone')

    await xt.disconnect_all(alice, bob, carol)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=60)
