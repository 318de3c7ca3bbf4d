#!/usr/bin/python3
"""t1700-muc: XEP-0045 multi-user chat on conference.HOST, with raw
stanzas through slixmpp: the service's disco (6.1); creating a room
(10.1: locked, 201, instant room by an empty submit, the configuration
form); joining (7.2: occupants' presence, self-presence with 110, the
real JID to moderators only in a semi-anonymous room, nickname conflict,
history with maxstanzas and delay, the subject); groupchat (7.4);
subject (8.1); private messages (7.5); nickname change (7.6, 303); one
user in a room with two sessions under one nickname; leaving (7.14); a
non-occupant's message (not-acceptable); kick (8.2, 307), ban (9.1,
301), the outcast list (9.2); a moderated room (voice, visitors, 104);
password, members-only, max users (7.2.5, 7.2.6, 7.2.10); mediated
invitations (7.8.2); room disco#info with the features and roominfo
form (6.4); destroy with an alternate venue (10.9); a temporary room
goes with its last occupant; the message rate limit."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from xt_muc import (  # noqa: E402,F401
    HOST, SVC, MUC, USER, ADMIN, OWNER, XDATA, STANZAS, cond_of, ux, codes, item, join,
    pres_from, groupchat, gc_msg, error_msg, submit, configure, create, admin, form_vars)


async def main():
    srv = xt.Server(workers=2, modules={
        'mod_disco': {}, 'mod_roster': {},
        'mod_muc': {'history_size': 3, 'message_rate': 1, 'message_burst': 12,
                    'max_subject_length': 40}})
    for u in ('alice', 'bob', 'carol', 'dave', 'frank', 'grace'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a1')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    dave = await xt.login_ok(srv, 'dave', resource='d')

    # -- 6.1: the service ------------------------------------------------
    r = await alice.iq('get', SVC, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    ids = [] if r is None else [(i.get('category'), i.get('type')) for i in r.xml.iter(
        '{http://jabber.org/protocol/disco#info}identity')]
    feats = [] if r is None else [f.get('var') for f in r.xml.iter(
        '{http://jabber.org/protocol/disco#info}feature')]
    xt.ok(('conference', 'text') in ids and MUC in feats,
          '6.1: %s is a conference/text service with the muc feature' % SVC) or xt.diag(str(r))

    # -- 10.1: creating a room --------------------------------------------
    p = await join(alice, 'lobby', 'alice')
    xt.ok(p is not None and {'110', '201'} <= codes(p) and
          item(p).get('affiliation') == 'owner' and item(p).get('role') == 'moderator',
          '10.1.1: the creator gets 201 and 110, owner and moderator') or xt.diag(str(p))
    p = await join(bob, 'lobby', 'bob')
    xt.is_(cond_of(p), 'item-not-found', '10.1.1: a locked room is not there for others')
    r = await alice.iq('get', 'lobby@' + SVC, "<query xmlns='%s'/>" % OWNER)
    fv = form_vars(r, OWNER)
    xt.ok(fv.get('FORM_TYPE') == [MUC + '#roomconfig'] and
          'muc#roomconfig_roomname' in fv and 'muc#roomconfig_whois' in fv and
          'muc#roomconfig_maxusers' in fv, '10.1.3: the owner gets the configuration form') \
        or xt.diag(str(r))
    r = await bob.iq('get', 'lobby@' + SVC, "<query xmlns='%s'/>" % OWNER)
    xt.is_(cond_of(r), 'item-not-found', 'others cannot see a locked room\'s form')
    r = await configure(alice, 'lobby')
    xt.is_(cond_of(r), 'result', '10.1.2: an empty submit makes an instant room')

    # -- 7.2: joining -----------------------------------------------------
    bob.send_raw("<presence to='lobby@%s/bob'><show>away</show><x xmlns='%s'/></presence>"
                 % (SVC, MUC))
    pa = await pres_from(bob, 'lobby', 'alice')
    pb = await pres_from(bob, 'lobby', 'bob', lambda p: '110' in codes(p))
    xt.ok(pa is not None and item(pa).get('affiliation') == 'owner' and
          'jid' not in item(pa), '7.2.3: bob gets alice\'s presence, no real JID '
          '(semi-anonymous)') or xt.diag(str(pa))
    xt.ok(pb is not None and item(pb) .get('role') == 'participant' and
          item(pb).get('affiliation') == 'none' and pb['show'] == 'away',
          '7.2.2: bob\'s self-presence: 110, participant, his <show/>') or xt.diag(str(pb))
    s = await bob.message(lambda m: str(m['from']) == 'lobby@' + SVC and
                          m.xml.find('{jabber:client}subject') is not None)
    xt.ok(s is not None, '7.2.16: the (empty) subject comes last')
    pa = await pres_from(alice, 'lobby', 'bob')
    xt.is_(item(pa).get('jid'), str(bob.jid), '7.2.4: a moderator sees bob\'s real JID')

    p = await join(carol, 'lobby', 'bob')
    xt.is_(cond_of(p), 'conflict', '7.2.9: a nickname in use: conflict')
    carol.send_raw("<presence to='nosuch@%s'><x xmlns='%s'/></presence>" % (SVC, MUC))
    p = await carol.presence(lambda p: str(p['from']).startswith('nosuch@'), timeout=2)
    xt.is_(cond_of(p), 'jid-malformed', '7.2.1: no nickname: jid-malformed')

    # -- 7.4, 7.2.15: groupchat and history ---------------------------------
    for i in range(4):
        groupchat(alice, 'lobby', 'hello %d' % i)
    m = await gc_msg(bob, 'lobby', 'alice', 'hello 3')
    xt.ok(m is not None and m['type'] == 'groupchat',
          '7.4: bob gets alice\'s groupchat from lobby@.../alice')
    m = await gc_msg(alice, 'lobby', 'alice', 'hello 3')
    xt.ok(m is not None, '7.4: the sender gets its own message back')
    p = await join(carol, 'lobby', 'carol', "<history maxstanzas='2'/>")
    h1 = await gc_msg(carol, 'lobby', 'alice', 'hello 2')
    h2 = await gc_msg(carol, 'lobby', 'alice', 'hello 3')
    stale = await gc_msg(carol, 'lobby', 'alice', 'hello 1', timeout=0.5)
    xt.ok(h1 is not None and h2 is not None and stale is None and
          h1.xml.find('{urn:xmpp:delay}delay') is not None,
          '7.2.15: maxstanzas=2 gives the last two, with <delay/>') or xt.diag(str(h1))
    p = await join(dave, 'lobby', 'dave', "<history maxchars='0'/>")
    m = await gc_msg(dave, 'lobby', 'alice', timeout=0.5)
    xt.ok(p is not None and m is None, '7.2.15: maxchars=0: no history')
    old = await gc_msg(dave, 'lobby', 'alice', 'hello 0', timeout=0.1)
    xt.ok(old is None, 'history_size 3 keeps three messages')
    frank = await xt.login_ok(srv, 'frank', resource='f')
    grace = await xt.login_ok(srv, 'grace', resource='g')
    await join(frank, 'lobby', 'frank', "<history maxchars='1'/>")
    m = await gc_msg(frank, 'lobby', 'alice', timeout=0.5)
    await join(grace, 'lobby', 'grace', "<history maxchars='100000'/>")
    h = [await gc_msg(grace, 'lobby', 'alice', 'hello %d' % i, timeout=1) for i in (1, 2, 3)]
    xt.ok(m is None and None not in h,
          '7.2.15: maxchars counts the XML: 1 gives none, 100000 all three')
    frank.send_raw("<presence to='lobby@%s/frank' type='unavailable'/>" % SVC)
    grace.send_raw("<presence to='lobby@%s/grace' type='unavailable'/>" % SVC)
    await pres_from(grace, 'lobby', 'grace', lambda p: p['type'] == 'unavailable')
    await pres_from(frank, 'lobby', 'frank', lambda p: p['type'] == 'unavailable')
    await join(frank, 'lobby', 'frank', "<history since='2099-01-01T00:00:00Z'/>")
    m1 = await gc_msg(frank, 'lobby', 'alice', timeout=0.5)
    frank.send_raw("<presence to='lobby@%s/frank' type='unavailable'/>" % SVC)
    await pres_from(frank, 'lobby', 'frank', lambda p: p['type'] == 'unavailable')
    await join(frank, 'lobby', 'frank', "<history since='2000-01-01T00:00:00Z' seconds='3600'/>")
    h = [await gc_msg(frank, 'lobby', 'alice', 'hello %d' % i, timeout=1) for i in (1, 2, 3)]
    xt.ok(m1 is None and None not in h, '7.2.15: since (a future date: none; a past one, '
          'with seconds 3600: all)')
    frank.send_raw("<presence to='lobby@%s/frank' type='unavailable'/>" % SVC)
    await pres_from(frank, 'lobby', 'frank', lambda p: p['type'] == 'unavailable')

    # -- 8.1: subject -------------------------------------------------------
    groupchat(bob, 'lobby', subject='bob says')
    m = await error_msg(bob)
    xt.is_(cond_of(m), 'forbidden', '8.1: a participant may not change the subject')
    groupchat(alice, 'lobby', subject='x' * 41)
    m = await error_msg(alice)
    xt.is_(cond_of(m), 'not-acceptable', 'a subject past max_subject_length: not-acceptable')
    groupchat(alice, 'lobby', subject='Welcome')
    m = await bob.message(lambda m: m['subject'] == 'Welcome')
    xt.ok(m is not None and str(m['from']) == 'lobby@%s/alice' % SVC,
          '8.1: the moderator\'s subject reaches everyone from her occupant JID')

    # -- 7.5: private messages ----------------------------------------------
    bob.send_raw("<message to='lobby@%s/alice' type='chat'><body>psst</body></message>" % SVC)
    m = await alice.message(body='psst')
    xt.ok(m is not None and str(m['from']) == 'lobby@%s/bob' % SVC and
          m.xml.find('{%s}x' % USER) is not None,
          '7.5: a private message from lobby@.../bob with <x muc#user/>') or xt.diag(str(m))
    bob.send_raw("<message to='lobby@%s/nobody' type='chat'><body>?</body></message>" % SVC)
    xt.is_(cond_of(await error_msg(bob)), 'item-not-found', '7.5: to no such occupant')

    # -- 7.4: not an occupant -------------------------------------------------
    srv.register('eve', 'eve-pw')
    eve = await xt.login_ok(srv, 'eve', resource='e')
    groupchat(eve, 'lobby', 'spam')
    xt.is_(cond_of(await error_msg(eve)), 'not-acceptable',
           '7.4: a non-occupant\'s groupchat: not-acceptable')

    # -- 7.6: nickname change -------------------------------------------------
    bob.send_raw("<presence to='lobby@%s/bobby'/>" % SVC)
    pu = await pres_from(carol, 'lobby', 'bob', lambda p: p['type'] == 'unavailable')
    pn = await pres_from(carol, 'lobby', 'bobby')
    xt.ok(pu is not None and '303' in codes(pu) and item(pu).get('nick') == 'bobby' and
          pn is not None and pn['type'] != 'unavailable',
          '7.6: unavailable with 303 and the new nick, then the new presence') \
        or xt.diag(str(pu))
    bob.send_raw("<presence to='lobby@%s/carol'/>" % SVC)
    p = await bob.presence(lambda p: p['type'] == 'error')
    xt.is_(cond_of(p), 'conflict', '7.6.2: changing to a nickname in use: conflict')

    # -- multi-session: one nickname, two sessions --------------------------
    alice2 = await xt.login_ok(srv, 'alice', resource='a2')
    p = await join(alice2, 'lobby', 'alice')
    xt.ok(p is not None and '110' in codes(p) and p['type'] != 'error',
          'a second session of alice joins under the same nickname')
    groupchat(bob, 'lobby', 'to both')
    m1 = await gc_msg(alice, 'lobby', 'bobby', 'to both')
    m2 = await gc_msg(alice2, 'lobby', 'bobby', 'to both')
    xt.ok(m1 is not None and m2 is not None, 'a groupchat reaches both of alice\'s sessions')
    bob.send_raw("<message to='lobby@%s/alice' type='chat'><body>pm2</body></message>" % SVC)
    m1 = await alice.message(body='pm2')
    m2 = await alice2.message(body='pm2')
    xt.ok(m1 is not None and m2 is not None, 'a private message reaches both sessions')
    alice2.send_raw("<presence to='lobby@%s/alice' type='unavailable'/>" % SVC)
    p2 = await pres_from(alice2, 'lobby', 'alice', lambda p: p['type'] == 'unavailable')
    gone = await pres_from(bob, 'lobby', 'alice', lambda p: p['type'] == 'unavailable',
                           timeout=0.7)
    xt.ok(p2 is not None and '110' in codes(p2) and gone is None,
          'one session leaves: it gets its unavailable, the others see alice stay')

    # -- 8.2: kick; 9.1: ban --------------------------------------------------
    r = await admin(bob, 'lobby', "<item nick='carol' role='none'/>")
    xt.is_(cond_of(r), 'forbidden', '8.2: a participant may not kick')
    r = await admin(alice, 'lobby', "<item nick='carol' role='none'><reason>bye</reason></item>")
    pk = await pres_from(carol, 'lobby', 'carol', lambda p: p['type'] == 'unavailable')
    pb = await pres_from(bob, 'lobby', 'carol', lambda p: p['type'] == 'unavailable')
    xt.ok(cond_of(r) == 'result' and pk is not None and {'307', '110'} <= codes(pk) and
          pb is not None and '307' in codes(pb) and item(pb).get('role') == 'none',
          '8.2: kicked: 307 (and 110 to carol), role none') or xt.diag(str(pk))
    r = await admin(alice, 'lobby', "<item nick='alice' role='visitor'/>")
    xt.is_(cond_of(r), 'not-allowed', '8.2: an owner cannot be silenced')
    r = await admin(alice, 'lobby', "<item jid='%s' affiliation='outcast'/>" % bob.jid.bare)
    pb = await pres_from(bob, 'lobby', 'bobby', lambda p: p['type'] == 'unavailable')
    xt.ok(cond_of(r) == 'result' and '301' in codes(pb),
          '9.1: banned: bob gets 301') or xt.diag(str(pb))
    p = await join(bob, 'lobby', 'bob')
    xt.is_(cond_of(p), 'forbidden', '7.2.7: a banned user cannot join')
    r = await admin(alice, 'lobby', "<item affiliation='outcast'/>", 'get')
    its = [] if r is None else r.xml.findall('{%s}query/{%s}item' % (ADMIN, ADMIN))
    xt.is_([i.get('jid') for i in its], [bob.jid.bare], '9.2: the outcast list')
    r = await admin(dave, 'lobby', "<item affiliation='outcast'/>", 'get')
    xt.is_(cond_of(r), 'forbidden', '9.2: a participant may not read it')

    # -- 10.2, 8.3: moderated room, 104, voice -----------------------------
    r = await configure(alice, 'lobby', [('moderatedroom', '1'), ('whois', 'anyone')])
    m = await dave.message(lambda m: '104' in codes(m))
    xt.ok(cond_of(r) == 'result' and m is not None and '172' in codes(m) and
          '170' not in codes(m), '10.2.1: a configuration change sends 104 to occupants, '
          'with 172 (now non-anonymous)') or xt.diag(str(m))
    p = await join(carol, 'lobby', 'carol2')
    xt.ok(item(p).get('role') == 'visitor' and '100' in codes(p),
          '5.1.2: a newcomer of a moderated room is a visitor; 100: non-anonymous') \
        or xt.diag(str(p))
    groupchat(carol, 'lobby', 'can I?')
    xt.is_(cond_of(await error_msg(carol)), 'forbidden', '7.4: a visitor has no voice')
    r = await admin(alice, 'lobby', "<item nick='carol2' role='participant'/>")
    p = await pres_from(carol, 'lobby', 'carol2', lambda p: item(p).get('role') == 'participant')
    xt.ok(cond_of(r) == 'result' and p is not None, '8.3: voice granted: role participant')
    r = await admin(alice, 'lobby', "<item jid='%s' affiliation='member'/>" % carol.jid.bare)
    p = await pres_from(dave, 'lobby', 'carol2', lambda p: item(p).get('affiliation') == 'member')
    xt.ok(cond_of(r) == 'result' and p is not None,
          '9.3: made a member while in the room: everyone sees affiliation member')
    r = await admin(alice, 'lobby', "<item nick='carol2' role='visitor'/>")
    p = await pres_from(carol, 'lobby', 'carol2', lambda p: item(p).get('role') == 'visitor')
    xt.ok(cond_of(r) == 'result' and p is not None, '8.4: voice revoked: role visitor')
    carol.presences.items.clear()   # what came before (the member grant's)
    carol.send_raw("<message to='lobby@%s'><x xmlns='%s' type='submit'><field var='FORM_TYPE'>"
                   "<value>%s#request</value></field><field var='muc#role'><value>participant"
                   "</value></field></x></message>" % (SVC, XDATA, MUC))
    m = await alice.message(lambda m: m.xml.find('{%s}x' % XDATA) is not None)
    fx = None if m is None else m.xml.find('{%s}x' % XDATA)
    fvals = {} if fx is None else {f.get('var'): f.findtext('{%s}value' % XDATA)
                                   for f in fx.findall('{%s}field' % XDATA)}
    xt.ok(fvals.get('muc#roomnick') == 'carol2' and fvals.get('muc#jid') == str(carol.jid)
          and fvals.get('FORM_TYPE') == MUC + '#request',
          '8.6: a visitor\'s voice request reaches the moderator as a form') or xt.diag(str(m))
    approve = ("<message to='lobby@%s'><x xmlns='%s' type='submit'><field var='FORM_TYPE'>"
               "<value>%s#request</value></field><field var='muc#roomnick'><value>carol2"
               "</value></field><field var='muc#request_allow'><value>true</value></field>"
               "</x></message>" % (SVC, XDATA, MUC))
    carol.send_raw(approve)
    xt.is_(cond_of(await error_msg(carol)), 'forbidden',
           '8.6: a visitor cannot approve her own request')
    alice.send_raw(approve)
    p = await pres_from(carol, 'lobby', 'carol2', lambda p: item(p).get('role') == 'participant')
    xt.ok(p is not None, '8.6: the moderator approves: carol has voice')

    # -- 6.4: room disco#info --------------------------------------------------
    r = await dave.iq('get', 'lobby@' + SVC,
                      "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    feats = [] if r is None else [f.get('var') for f in r.xml.iter(
        '{http://jabber.org/protocol/disco#info}feature')]
    fv = form_vars(r, 'http://jabber.org/protocol/disco#info')
    xt.ok({MUC, 'muc_moderated', 'muc_nonanonymous', 'muc_temporary', 'muc_open',
           'muc_unsecured', 'muc_public'} <= set(feats) and
          fv.get('FORM_TYPE') == [MUC + '#roominfo'] and
          fv.get('muc#roominfo_occupants') == ['3'],
          '6.4: the room\'s features and roominfo form') or xt.diag(str(r))
    r = await eve.iq('get', 'lobby@' + SVC,
                     "<query xmlns='http://jabber.org/protocol/disco#items'/>")
    its = [] if r is None else sorted(i.get('jid') for i in r.xml.iter(
        '{http://jabber.org/protocol/disco#items}item'))
    xt.is_(its, sorted('lobby@%s/%s' % (SVC, n) for n in ('alice', 'dave', 'carol2')),
           '6.5: a public room lists its occupants\' room JIDs')

    # -- 7.8.2: a mediated invitation ---------------------------------------
    alice.send_raw("<message to='lobby@%s'><x xmlns='%s'><invite to='%s'><reason>come"
                   "</reason></invite></x></message>" % (SVC, USER, eve.jid.bare))
    m = await eve.message(lambda m: ux(m) is not None)
    inv = None if m is None else ux(m).find('{%s}invite' % USER)
    xt.ok(inv is not None and str(m['from']) == 'lobby@' + SVC and
          inv.get('from') == alice.jid.bare,
          '7.8.2: the invitee gets the invitation from the room') or xt.diag(str(m))
    eve.send_raw("<message to='lobby@%s'><x xmlns='%s'><decline to='%s'><reason>busy"
                 "</reason></decline></x></message>" % (SVC, USER, alice.jid.bare))
    m = await alice.message(lambda m: ux(m) is not None and
                            ux(m).find('{%s}decline' % USER) is not None)
    dc = None if m is None else ux(m).find('{%s}decline' % USER)
    xt.ok(dc is not None and dc.get('from') == eve.jid.bare and
          dc.findtext('{%s}reason' % USER) == 'busy',
          '7.8.3: the decline reaches the inviter, from the invitee') or xt.diag(str(m))
    frank.send_raw("<message to='lobby@%s'><x xmlns='%s'><decline to='%s'/></x></message>"
                   % (SVC, USER, eve.jid.bare))
    xt.is_(cond_of(await error_msg(frank)), 'not-acceptable',
           '7.8.3: a decline without an invitation is not relayed')

    # -- 7.2.5, 7.2.6, 7.2.10: password, members-only, max users -----------
    _, r = await create(alice, 'vault', 'alice', [('passwordprotectedroom', '1'),
                                                 ('roomsecret', 's3cret'), ('maxusers', '2')])
    xt.is_(cond_of(r), 'result', 'a room made with a configuration form (reserved room)')
    p = await join(dave, 'vault', 'dave', '<password>wrong</password>')
    xt.is_(cond_of(p), 'not-authorized', '7.2.5: a wrong password: not-authorized')
    p = await join(dave, 'vault', 'dave', '<password>s3cret</password>')
    xt.ok(p is not None and p['type'] != 'error', '7.2.5: the right password gets in')
    p = await join(eve, 'vault', 'eve', '<password>s3cret</password>')
    xt.is_(cond_of(p), 'service-unavailable', '7.2.10: maxusers 2: the room is full')
    r = await configure(alice, 'vault', [('membersonly', '1')])
    pd = await pres_from(dave, 'vault', 'dave', lambda p: p['type'] == 'unavailable')
    xt.ok('322' in codes(pd), '9.?: made members-only, a non-member leaves with 322')
    p = await join(dave, 'vault', 'dave', '<password>s3cret</password>')
    xt.is_(cond_of(p), 'registration-required', '7.2.6: members only')
    r = await admin(alice, 'vault', "<item jid='%s' affiliation='member'/>" % dave.jid.bare)
    p = await join(dave, 'vault', 'dave', '<password>s3cret</password>')
    xt.ok(cond_of(r) == 'result' and p is not None and p['type'] != 'error' and
          item(p).get('affiliation') == 'member', '9.3: a member gets in')

    # -- 10.9: destroy ----------------------------------------------------------
    r = await alice.iq('set', 'vault@' + SVC, "<query xmlns='%s'><destroy jid='lobby@%s'>"
                       "<reason>moved</reason></destroy></query>" % (OWNER, SVC))
    pd = await pres_from(dave, 'vault', 'dave', lambda p: p['type'] == 'unavailable')
    d = None if ux(pd) is None else ux(pd).find('{%s}destroy' % USER)
    xt.ok(cond_of(r) == 'result' and d is not None and d.get('jid') == 'lobby@' + SVC,
          '10.9: occupants get <destroy/> with the alternate venue') or xt.diag(str(pd))
    r = await dave.iq('get', 'vault@' + SVC,
                      "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    xt.is_(cond_of(r), 'item-not-found', '10.9: the room is gone')

    # -- temporary room: goes with its last occupant -------------------------
    await create(eve, 'tmp', 'eve')
    eve.send_raw("<presence to='tmp@%s/eve' type='unavailable'/>" % SVC)
    await pres_from(eve, 'tmp', 'eve', lambda p: p['type'] == 'unavailable')
    p = await join(eve, 'tmp', 'eve')
    xt.ok('201' in codes(p), '10.1: the emptied temporary room went: joining creates it anew')

    # -- the message rate -------------------------------------------------------
    for i in range(14):
        groupchat(eve, 'tmp', 'flood %d' % i)
    xt.is_(cond_of(await error_msg(eve)), 'resource-constraint',
           'message_burst exceeded: resource-constraint (a token bucket per session)')

    eve.send_raw("<presence to='tmp@%s/eve'><show>away</show></presence>" % SVC)
    p = await eve.presence(lambda p: p['type'] == 'error')
    xt.is_(cond_of(p), 'resource-constraint',
           'presence changes count against the same bucket')

    # -- an owner bans herself, present under two nicknames ------------------
    await create(alice, 'sb', 'alice')
    r = await admin(alice, 'sb', "<item jid='%s' affiliation='owner'/>" % dave.jid.bare)
    await join(alice2, 'sb', 'alice-two')
    r = await admin(alice, 'sb', "<item jid='%s' affiliation='outcast'/>" % alice.jid.bare)
    p1 = await pres_from(alice, 'sb', 'alice', lambda p: p['type'] == 'unavailable')
    p2 = await pres_from(alice2, 'sb', 'alice-two', lambda p: p['type'] == 'unavailable')
    act = None if ux(p2) is None else ux(p2).find('{%s}item/{%s}actor' % (USER, USER))
    xt.ok(cond_of(r) == 'result' and '301' in codes(p1) and '301' in codes(p2) and
          act is not None and act.get('nick') == 'alice',
          '9.1: both occupants of the banned user go with 301, the actor named') \
        or xt.diag(str(p2))

    # -- bounds on what one stanza makes the room send ----------------------
    alice.send_raw("<message to='lobby@%s'><x xmlns='%s'>%s</x></message>" % (
        SVC, USER, ("<invite to='%s'/>" % carol.jid.bare) * 11))
    got = 0
    while await carol.message(lambda m: ux(m) is not None and
                              ux(m).find('{%s}invite' % USER) is not None, timeout=1):
        got += 1
    xt.is_(got, 10, 'at most 10 invitations per message')
    r = await configure(alice, 'lobby', [('roomname', 'n' * 1025)])
    xt.is_(cond_of(r), 'bad-request', 'a room name past 1024 bytes: bad-request')

    # -- 10.2: a bad value changes nothing ---------------------------------
    r = await configure(alice, 'lobby', [('maxusers', 'many'), ('roomname', 'Renamed')])
    xt.is_(cond_of(r), 'bad-request', '10.2: a bad field value: bad-request')
    r = await alice.iq('get', 'lobby@' + SVC, "<query xmlns='%s'/>" % OWNER)
    xt.is_(form_vars(r, OWNER).get('muc#roomconfig_roomname'), [''],
           'and nothing of that form was applied')

    # -- a session that ends leaves (directed presence, RFC 6121 4.6.3) ---
    await xt.disconnect_all(dave)
    p = await pres_from(alice, 'lobby', 'dave', lambda p: p['type'] == 'unavailable')
    xt.ok(p is not None and item(p).get('role') == 'none',
          'an occupant whose session ends leaves the room')

    await xt.disconnect_all(alice, alice2, bob, carol, eve, frank, grace)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=120)
