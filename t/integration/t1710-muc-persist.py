#!/usr/bin/python3
"""t1710-muc-persist: persistent rooms (XEP-0045 10.1.3
muc#roomconfig_persistentroom) keep their configuration, affiliations
and subject in the store across a restart; a persistent room stays when
its last occupant leaves; a temporary one does not survive; a destroyed
persistent room is gone after the restart too. Rooms load lazily: the
first stanzas for a room after the restart wait for its record."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from xt_muc import (  # noqa: E402,F401
    HOST, SVC, MUC, USER, ADMIN, OWNER, XDATA, STANZAS, cond_of, ux, codes, item, join,
    pres_from, groupchat, gc_msg, error_msg, submit, configure, create, admin, form_vars)


DINFO = 'http://jabber.org/protocol/disco#info'


async def info(c, room):
    return await c.iq('get', '%s@%s' % (room, SVC), "<query xmlns='%s'/>" % DINFO)


def features(r):
    return set() if r is None else {f.get('var') for f in r.xml.iter('{%s}feature' % DINFO)}


def ident_name(r):
    i = None if r is None else r.xml.find('{%s}query/{%s}identity' % (DINFO, DINFO))
    return None if i is None else i.get('name')


async def main():
    srv = xt.Server(workers=2, modules={'mod_muc': {}})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')

    _, r = await create(alice, 'keep', 'alice', [
        ('persistentroom', '1'), ('roomname', 'Kept room'), ('membersonly', '1'),
        ('moderatedroom', '1')])
    xt.is_(cond_of(r), 'result', 'a persistent, members-only room is made')
    groupchat(alice, 'keep', subject='Kept subject')
    await alice.message(lambda m: m['subject'] == 'Kept subject')
    r = await admin(alice, 'keep', "<item jid='%s' affiliation='member'/>" % bob.jid.bare)
    xt.is_(cond_of(r), 'result', 'bob is made a member')
    await create(alice, 'gone', 'alice')
    _, r = await create(alice, 'doomed', 'alice', [('persistentroom', '1')])
    r = await alice.iq('set', 'doomed@' + SVC, "<query xmlns='%s'><destroy/></query>" % OWNER)
    xt.is_(cond_of(r), 'result', 'a persistent room is destroyed')
    alice.send_raw("<presence to='keep@%s/alice' type='unavailable'/>" % SVC)
    await pres_from(alice, 'keep', 'alice', lambda p: p['type'] == 'unavailable')
    r = await info(bob, 'keep')
    xt.ok('muc_persistent' in features(r), 'the persistent room stays without occupants')

    await xt.disconnect_all(alice, bob)
    xt.is_(srv.restart(), 0, 'xmppd restarts')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')

    # Several stanzas at once for the room that is loading: they queue.
    to = 'keep@%s' % SVC
    bob.send_raw("<iq type='get' id='q1' to='%s'><query xmlns='%s'/></iq>" % (to, DINFO))
    p = await join(bob, 'keep', 'bob')
    xt.ok(p is not None and p['type'] != 'error' and item(p).get('affiliation') == 'member'
          and item(p).get('role') == 'participant' and '201' not in codes(p),
          'after the restart bob joins as a member (affiliation kept), no 201') \
        or xt.diag(str(p))
    s = await bob.message(lambda m: m['subject'] == 'Kept subject')
    xt.ok(s is not None and str(s['from']) == 'keep@%s/alice' % SVC,
          'the subject survived the restart')
    r = await info(carol, 'keep')
    xt.ok({'muc_persistent', 'muc_membersonly', 'muc_moderated'} <= features(r) and
          ident_name(r) == 'Kept room', 'the configuration survived: features and name') \
        or xt.diag(str(r))
    p = await join(carol, 'keep', 'carol')
    xt.is_(cond_of(p), 'registration-required', 'a non-member is still kept out')
    r = await alice.iq('get', to, "<query xmlns='%s'/>" % OWNER)
    fv = form_vars(r, OWNER)
    xt.ok(fv.get('muc#roomconfig_roomowners') == [alice.jid.bare],
          'alice is still the owner (she gets the form, listed as owner)') or xt.diag(str(r))
    r = await info(carol, 'gone')
    xt.is_(cond_of(r), 'item-not-found', 'the temporary room did not survive')
    r = await info(carol, 'doomed')
    xt.is_(cond_of(r), 'item-not-found', 'the destroyed persistent room stays gone')
    p = await join(carol, 'doomed', 'carol')
    xt.ok('201' in codes(p), 'its name makes a new room')

    # Made temporary, a room's record goes.
    r = await configure(alice, 'keep', [('persistentroom', '0')])
    await xt.disconnect_all(alice, bob, carol)
    xt.is_(srv.restart(), 0, 'xmppd restarts again')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    r = await info(carol, 'keep')
    xt.is_(cond_of(r), 'item-not-found', 'a room made temporary is not kept')
    await xt.disconnect_all(carol)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=90)
