#!/usr/bin/python3
"""t1720-muc-list: what looks across rooms. The service's disco#items
(XEP-0045 6.3) lists public rooms from every worker (rooms live on the
worker their JID names) and persistent ones still in the store, not
hidden or locked ones, with RSM paging (XEP-0059: max, after, count);
xmppctl muc list, occupants, create, destroy."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from xt_muc import (  # noqa: E402,F401
    HOST, SVC, MUC, USER, ADMIN, OWNER, XDATA, STANZAS, cond_of, ux, codes, item, join,
    pres_from, groupchat, gc_msg, error_msg, submit, configure, create, admin, form_vars)


DITEMS = 'http://jabber.org/protocol/disco#items'
RSM = 'http://jabber.org/protocol/rsm'


async def items(c, rsm=''):
    r = await c.iq('get', SVC, "<query xmlns='%s'>%s</query>" % (DITEMS, rsm))
    its = [] if r is None else [(i.get('jid'), i.get('name'))
                                for i in r.xml.iter('{%s}item' % DITEMS)]
    return r, its


async def main():
    srv = xt.Server(workers=2, modules={'mod_muc': {}})
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')

    names = ['r%d' % i for i in range(6)]
    for n in names:
        await create(alice, n, 'alice', [('roomname', 'Room ' + n)])
    await create(alice, 'hidden', 'alice', [('publicroom', '0')])
    await join(alice, 'locked', 'alice')
    await create(alice, 'kept', 'alice', [('persistentroom', '1')])
    alice.send_raw("<presence to='kept@%s/alice' type='unavailable'/>" % SVC)
    await pres_from(alice, 'kept', 'alice', lambda p: p['type'] == 'unavailable')

    r, its = await items(bob)
    want = sorted(['%s@%s' % (n, SVC) for n in names + ['kept']])
    xt.is_(sorted(j for j, _ in its), want,
           '6.3: every public room of both workers, not hidden or locked ones') \
        or xt.diag(str(r))
    xt.ok(('r0@' + SVC, 'Room r0') in its, '6.3: with the room name')
    r, page = await items(bob, "<set xmlns='%s'><max>3</max></set>" % RSM)
    cnt = None if r is None else r.xml.find('{%s}query/{%s}set/{%s}count' % (DITEMS, RSM, RSM))
    last = None if r is None else r.xml.find('{%s}query/{%s}set/{%s}last' % (DITEMS, RSM, RSM))
    xt.ok([j for j, _ in page] == want[:3] and cnt is not None and cnt.text == '7',
          'RSM max 3: the first three, count 7') or xt.diag(str(r))
    r, page = await items(bob, "<set xmlns='%s'><max>10</max><after>%s</after></set>"
                          % (RSM, last.text if last is not None else ''))
    xt.is_([j for j, _ in page], want[3:], 'RSM after the last of the page: the rest')

    code, out, err = await srv.actl('muc', 'list', SVC)
    rows = [ln.split('\t') for ln in out.splitlines()]
    xt.ok(code == 0 and ['r1@' + SVC, '1', 'temporary'] in rows and
          ['kept@' + SVC, '0', 'persistent'] in rows and
          any(r[0] == 'hidden@' + SVC for r in rows),
          'xmppctl muc list: every room, occupants, kind') or xt.diag(out, err)
    await join(bob, 'r2', 'bob')
    code, out, err = await srv.actl('muc', 'occupants', 'r2@' + SVC)
    rows = [ln.split('\t') for ln in out.splitlines()]
    xt.ok(code == 0 and ['bob', 'participant', 'none', str(bob.jid)] in rows and
          ['alice', 'moderator', 'owner', str(alice.jid)] in rows,
          'xmppctl muc occupants: nick, role, affiliation, real JID') or xt.diag(out, err)
    code, out, err = await srv.actl('muc', 'destroy', 'r2@' + SVC, 'closing')
    p = await pres_from(bob, 'r2', 'bob', lambda p: p['type'] == 'unavailable')
    d = None if ux(p) is None else ux(p).find('{%s}destroy' % USER)
    xt.ok(code == 0 and d is not None, 'xmppctl muc destroy: occupants get <destroy/>') \
        or xt.diag(out, err)
    code, out, err = await srv.actl('muc', 'create', 'made@' + SVC, bob.jid.bare)
    p = await join(bob, 'made', 'bob')
    xt.ok(code == 0 and p is not None and '201' not in codes(p) and
          item(p).get('affiliation') == 'owner', 'xmppctl muc create: a ready room, '
          'the given owner') or xt.diag(out, err, str(p))
    code, out, err = await srv.actl('muc', 'create', 'made@' + SVC, bob.jid.bare)
    xt.ok(code != 0 and 'exists' in (out + err), 'creating it again: exists')
    code, out, err = await srv.actl('muc', 'list', 'nosuch.' + HOST)
    xt.ok(code != 0, 'xmppctl muc list of no service: an error')

    await xt.disconnect_all(alice, bob)
    xt.is_(srv.restart(), 0, 'xmppd restarts')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    r, its = await items(bob)
    xt.is_(sorted(j for j, _ in its), ['kept@' + SVC, 'made@' + SVC],
           '6.3: after a restart, the persistent rooms from the store (not in memory)') \
        or xt.diag(str(r))
    await xt.disconnect_all(bob)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')
    srv.teardown()

    # -- max_rooms_per_user ---------------------------------------------
    srv = xt.Server(workers=2, hosts=(HOST, 'second.test'),
                    modules={'mod_muc': {'max_rooms_per_user': 2,
                                         'access_create': 'creators'}},
                    conf={'acl': {'creators': {'user': ['alice@' + HOST]}},
                          'access_rules': {'creators': [{'allow': 'creators'}]}})
    srv.register('alice', 'alice-pw')
    srv.register('bob', 'bob-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    r = await alice.iq('get', 'conference.second.test',
                       "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    xt.is_(cond_of(r), 'result', 'a service for every host: conference.second.test answers')
    p = await join(bob, 'bobs', 'bob')
    xt.is_(cond_of(p), 'not-allowed', 'access_create (an access rule) keeps bob from '
           'creating a room')
    await xt.disconnect_all(bob)
    await create(alice, 'one', 'alice')
    await create(alice, 'two', 'alice')
    p = await join(alice, 'three', 'alice')
    xt.is_(cond_of(p), 'policy-violation', 'max_rooms_per_user 2: a third room is refused')
    alice.send_raw("<presence to='one@%s/alice' type='unavailable'/>" % SVC)
    await pres_from(alice, 'one', 'alice', lambda p: p['type'] == 'unavailable')
    p = await join(alice, 'three', 'alice')
    xt.ok('201' in codes(p), 'once one of them went, she may make another')
    await xt.disconnect_all(alice)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=90)
