#!/usr/bin/python3
"""t1740-muc-slixmpp: a client library's MUC support (slixmpp's
xep_0045 plugin) against the service: join_muc_wait on a new room (the
self-presence, then the subject it waits for), the configuration form
fetched and submitted with its API, a second user joining and seeing the
occupant, a groupchat message through the plugin's events, the role and
affiliation lists, and leave_muc."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

SVC = 'conference.xmppd.test'


async def main():
    srv = xt.Server(workers=2, modules={'mod_disco': {}, 'mod_roster': {}, 'mod_muc': {}})
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    for c in (alice, bob):
        c.xmpp.register_plugin('xep_0045')
    am, bm = alice.xmpp.plugin['xep_0045'], bob.xmpp.plugin['xep_0045']
    room = 'libroom@' + SVC

    try:
        pres, subject, occ, hist = await am.join_muc_wait(room, 'alice', maxstanzas=0,
                                                          timeout=5)
        ok = '201' in [str(s) for s in pres['muc']['status_codes']]
    except Exception as e:
        ok, pres = False, e
    xt.ok(ok, 'join_muc_wait creates the room: 201, and the subject comes') or xt.diag(str(pres))
    try:
        form = await am.get_room_config(room, timeout=5)
        fields = form.get_fields()
        form.set_values({'muc#roomconfig_roomname': 'Library room',
                         'muc#roomconfig_whois': 'anyone'})
        await am.set_room_config(room, form, timeout=5)
        ok = 'muc#roomconfig_persistentroom' in fields
    except Exception as e:
        ok = False
        xt.diag(repr(e))
    xt.ok(ok, 'get_room_config / set_room_config round trip')

    try:
        pres, subject, occ, hist = await bm.join_muc_wait(room, 'bob', timeout=5)
        nicks = [p['from'].resource for p in occ]
        ok = 'alice' in nicks and '100' in [str(s) for s in pres['muc']['status_codes']]
    except Exception as e:
        ok, nicks = False, repr(e)
    xt.ok(ok, 'bob joins, sees alice among the occupants, 100 (non-anonymous)') \
        or xt.diag(str(nicks))
    got = asyncio.get_running_loop().create_future()
    bob.xmpp.add_event_handler('muc::%s::message' % room,
                               lambda m: got.done() or got.set_result(m))
    alice.xmpp.send_message(mto=room, mbody='hello library', mtype='groupchat')
    try:
        m = await asyncio.wait_for(got, 5)
    except asyncio.TimeoutError:
        m = None
    xt.ok(m is not None and m['body'] == 'hello library' and m['from'].resource == 'alice',
          'the plugin delivers alice\'s groupchat to bob')
    try:
        owners = await am.get_affiliation_list(room, 'owner', timeout=5)
        mods = await am.get_roles_list(room, 'moderator', timeout=5)
        ok = owners == [alice.jid.bare] and mods == ['alice']
    except Exception as e:
        ok, owners = False, repr(e)
    xt.ok(ok, 'get_affiliation_list (owner) and get_roles_list (moderator)') \
        or xt.diag(str(owners))
    try:
        await am.set_role(room, 'bob', 'visitor', timeout=5)
        p = await bob.presence(lambda p: p['from'].resource == 'bob' and
                               p['muc']['role'] == 'visitor')
        ok = p is not None
    except Exception as e:
        ok = False
        xt.diag(repr(e))
    xt.ok(ok, 'set_role: bob becomes a visitor')
    bm.leave_muc(room, 'bob')
    p = await alice.presence(lambda p: p['from'].resource == 'bob' and
                             p['type'] == 'unavailable')
    xt.ok(p is not None, 'leave_muc: alice sees bob leave')

    await xt.disconnect_all(alice, bob)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=60)
