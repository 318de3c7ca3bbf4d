#!/usr/bin/python3
"""t1745-muc-roles: the XEP-0045 use cases of roles, affiliations and
their lists that t1700 does not walk through, one check or more per
section: an occupant changing the subject where the room lets it (7.3),
availability changes (7.7), the member list as an occupant sees it
(7.11), exiting with a status text (7.14), the voice list (8.5), revoking
membership (9.4) and the member list in one request (9.5), granting and
revoking moderator (9.6, 9.7) and the moderator list (9.8), owners
(10.3, 10.4, 10.5) and admins (10.6, 10.7, 10.8), and a disco query to an
occupant (6.6), an invitation continuing a one-to-one chat (7.9)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from xt_muc import (  # noqa: E402
    HOST, SVC, USER, ADMIN, STANZAS, cond_of, codes, item, join, pres_from, groupchat, gc_msg, error_msg,
    configure, create, admin)

DISCO_INFO = 'http://jabber.org/protocol/disco#info'


def list_of(r, key='jid'):
    its = [] if r is None or r['type'] != 'result' else \
        r.xml.findall('{%s}query/{%s}item' % (ADMIN, ADMIN))
    return sorted(i.get(key) for i in its)


async def main():
    srv = xt.Server(workers=2, modules={'mod_disco': {}, 'mod_roster': {}, 'mod_muc': {}})
    names = ('olga', 'adam', 'mia', 'pat', 'vic', 'nora')
    for u in names:
        srv.register(u, u + '-pw')
    c = {}
    for u in names:
        c[u] = await xt.login_ok(srv, u, resource='r')
    olga, adam, mia, pat, vic, nora = (c[u] for u in names)
    bare = {u: '%s@%s' % (u, HOST) for u in names}

    # The room: olga owns it; adam admin, mia member; non-anonymous, so
    # that the member list may be shown to occupants (7.11).
    await create(olga, 'team', 'olga', [('whois', 'anyone'), ('changesubject', '1')])
    r = await admin(olga, 'team', "<item jid='%s' affiliation='admin'/>"
                    "<item jid='%s' affiliation='member'/>" % (bare['adam'], bare['mia']))
    xt.is_(cond_of(r), 'result', '10.6, 9.3: one request makes an admin and a member')
    for u in ('adam', 'mia', 'pat', 'vic'):
        p = await join(c[u], 'team', u)
        xt.ok(p is not None and p['type'] != 'error', '%s joins' % u) or xt.diag(str(p))
    p = await pres_from(olga, 'team', 'adam')
    xt.ok(item(p).get('affiliation') == 'admin' and item(p).get('role') == 'moderator',
          '10.6: an admin joins as a moderator') or xt.diag(str(p))

    # -- 7.3: an occupant changes the subject where the room allows it -------
    groupchat(pat, 'team', subject='by pat')
    m = await vic.message(lambda m: m['subject'] == 'by pat')
    xt.ok(m is not None and str(m['from']) == 'team@%s/pat' % SVC,
          '7.3: changesubject on: a participant\'s subject reaches everyone') or xt.diag(str(m))
    await configure(olga, 'team', [('changesubject', '0')])
    groupchat(pat, 'team', subject='again')
    xt.is_(cond_of(await error_msg(pat)), 'forbidden',
           '7.3: changesubject off: a participant may not')

    # -- 7.7: availability changes ------------------------------------------
    pat.send_raw("<presence to='team@%s/pat'><show>dnd</show><status>busy</status>"
                 "</presence>" % SVC)
    p = await pres_from(vic, 'team', 'pat', lambda p: p['show'] == 'dnd')
    ps = await pres_from(pat, 'team', 'pat', lambda p: p['show'] == 'dnd')
    xt.ok(p is not None and p['status'] == 'busy' and item(p).get('role') == 'participant'
          and ps is not None and '110' in codes(ps),
          '7.7: a new <show/> and <status/> reach every occupant, 110 to the sender') \
        or xt.diag(str(p))

    # -- 7.11: the member list --------------------------------------------------
    r = await admin(pat, 'team', "<item affiliation='member'/>", 'get')
    xt.is_(list_of(r), [bare['mia']], '7.11: a participant of a non-anonymous room gets '
           'the member list') or xt.diag(str(r))
    await configure(olga, 'team', [('whois', 'moderators')])
    r = await admin(pat, 'team', "<item affiliation='member'/>", 'get')
    xt.is_(cond_of(r), 'forbidden', '7.11: in a semi-anonymous room it is for admins only')
    r = await admin(pat, 'team', "<item affiliation='admin'/>", 'get')
    xt.is_(cond_of(r), 'forbidden', '7.11: the admin list is not the member list')
    await configure(olga, 'team', [('whois', 'anyone')])

    # -- 8.5: the voice list ------------------------------------------------------
    r = await admin(pat, 'team', "<item role='participant'/>", 'get')
    xt.is_(cond_of(r), 'forbidden', '8.5: a participant may not read the voice list')
    r = await admin(adam, 'team', "<item role='participant'/>", 'get')
    xt.is_(list_of(r, 'nick'), ['mia', 'pat', 'vic'], '8.5: the moderator gets the voice '
           'list by nickname') or xt.diag(str(r))
    r = await admin(adam, 'team', "<item nick='pat' role='visitor'/>"
                    "<item nick='vic' role='visitor'/>")
    p1 = await pres_from(mia, 'team', 'pat', lambda p: item(p).get('role') == 'visitor')
    p2 = await pres_from(mia, 'team', 'vic', lambda p: item(p).get('role') == 'visitor')
    r2 = await admin(adam, 'team', "<item role='participant'/>", 'get')
    xt.ok(cond_of(r) == 'result' and p1 is not None and p2 is not None and
          list_of(r2, 'nick') == ['mia'],
          '8.5: two voices revoked in one request, each broadcast') or xt.diag(str(r2))
    r = await admin(adam, 'team', "<item nick='pat' role='participant'/>"
                    "<item nick='vic' role='participant'/>")
    p1 = await pres_from(mia, 'team', 'vic', lambda p: item(p).get('role') == 'participant')
    xt.ok(cond_of(r) == 'result' and p1 is not None, '8.5: and given back')

    # -- 9.6, 9.7, 9.8: moderators ------------------------------------------------
    r = await admin(mia, 'team', "<item nick='pat' role='moderator'/>")
    xt.is_(cond_of(r), 'forbidden', '9.6: a member (not a moderator) may not grant it')
    r = await admin(adam, 'team', "<item nick='pat' role='moderator'/>")
    p = await pres_from(vic, 'team', 'pat', lambda p: item(p).get('role') == 'moderator')
    xt.ok(cond_of(r) == 'result' and p is not None,
          '9.6: an admin makes pat a moderator; everyone sees it') or xt.diag(str(r))
    r = await admin(pat, 'team', "<item nick='vic' role='moderator'/>")
    xt.is_(cond_of(r), 'not-allowed', '9.6: a moderator who is no admin may not grant it')
    r = await admin(adam, 'team', "<item role='moderator'/>", 'get')
    xt.is_(list_of(r, 'nick'), ['adam', 'olga', 'pat'], '9.8: the moderator list')
    r = await admin(pat, 'team', "<item nick='adam' role='participant'/>")
    xt.is_(cond_of(r), 'not-allowed', '9.7: an admin\'s moderator role stays')
    r = await admin(adam, 'team', "<item nick='pat' role='participant'/>")
    p = await pres_from(vic, 'team', 'pat', lambda p: item(p).get('role') == 'participant')
    xt.ok(cond_of(r) == 'result' and p is not None, '9.7: revoked: pat is a participant')

    # -- 9.4, 9.5: members ---------------------------------------------------------
    r = await admin(adam, 'team', "<item jid='%s' affiliation='member'/>"
                    "<item jid='%s' affiliation='member'/>" % (bare['pat'], bare['nora']))
    r2 = await admin(adam, 'team', "<item affiliation='member'/>", 'get')
    p = await pres_from(vic, 'team', 'pat', lambda p: item(p).get('affiliation') == 'member')
    xt.ok(cond_of(r) == 'result' and list_of(r2) == sorted([bare['mia'], bare['pat'],
                                                            bare['nora']]) and p is not None,
          '9.5: the member list changed in one request') or xt.diag(str(r2))
    await configure(olga, 'team', [('membersonly', '1')])
    pv = await pres_from(vic, 'team', 'vic', lambda p: p['type'] == 'unavailable')
    xt.ok(pv is not None and '322' in codes(pv),
          '9.4 (10.2): made members-only, the non-member vic goes with 322')
    r = await admin(adam, 'team', "<item jid='%s' affiliation='none'><reason>left the "
                    "team</reason></item>" % bare['pat'])
    pp = await pres_from(pat, 'team', 'pat', lambda p: p['type'] == 'unavailable')
    pm = await pres_from(mia, 'team', 'pat', lambda p: p['type'] == 'unavailable')
    xt.ok(cond_of(r) == 'result' and pp is not None and {'321', '110'} <= codes(pp) and
          pm is not None and '321' in codes(pm) and item(pm).get('affiliation') == 'none',
          '9.4: membership revoked in a members-only room: 321, the occupant goes') \
        or xt.diag(str(pp))
    pat.presences.items.clear()
    p = await join(pat, 'team', 'pat')
    xt.is_(cond_of(p), 'registration-required', '9.4: and cannot come back')
    r = await admin(mia, 'team', "<item jid='%s' affiliation='member'/>" % bare['pat'])
    xt.is_(cond_of(r), 'forbidden', '9.5: a member may not change the member list')

    # -- 10.3, 10.4, 10.5: owners -----------------------------------------------------
    r = await admin(adam, 'team', "<item jid='%s' affiliation='owner'/>" % bare['mia'])
    xt.is_(cond_of(r), 'not-allowed', '10.3: an admin may not make owners')
    r = await admin(olga, 'team', "<item jid='%s' affiliation='owner'/>" % bare['mia'])
    p = await pres_from(adam, 'team', 'mia', lambda p: item(p).get('affiliation') == 'owner')
    xt.ok(cond_of(r) == 'result' and p is not None and item(p).get('role') == 'moderator',
          '10.3: mia made owner: everyone sees owner, moderator') or xt.diag(str(p))
    r = await admin(mia, 'team', "<item affiliation='owner'/>", 'get')
    xt.is_(list_of(r), sorted([bare['olga'], bare['mia']]), '10.5: the owner list')
    r = await admin(mia, 'team', "<item jid='%s' affiliation='admin'/>" % bare['olga'])
    p = await pres_from(adam, 'team', 'olga', lambda p: item(p).get('affiliation') == 'admin')
    xt.ok(cond_of(r) == 'result' and p is not None,
          '10.4: an owner revokes another owner (to admin)') or xt.diag(str(r))
    r = await admin(mia, 'team', "<item jid='%s' affiliation='member'/>" % bare['mia'])
    xt.is_(cond_of(r), 'conflict', '10.4: the last owner may not step down')
    r = await admin(mia, 'team', "<item jid='%s' affiliation='owner'/>"
                    "<item jid='%s' affiliation='owner'/>" % (bare['olga'], bare['nora']))
    r2 = await admin(mia, 'team', "<item affiliation='owner'/>", 'get')
    xt.ok(cond_of(r) == 'result' and list_of(r2) == sorted([bare['olga'], bare['mia'],
                                                            bare['nora']]),
          '10.5: the owner list changed in one request') or xt.diag(str(r2))

    # -- 10.6, 10.7, 10.8: admins --------------------------------------------------------
    r = await admin(adam, 'team', "<item jid='%s' affiliation='admin'/>" % bare['pat'])
    xt.is_(cond_of(r), 'not-allowed', '10.6: an admin may not make admins')
    r = await admin(mia, 'team', "<item affiliation='admin'/>", 'get')
    xt.is_(list_of(r), [bare['adam']], '10.8: the admin list')
    r = await admin(mia, 'team', "<item jid='%s' affiliation='member'/>" % bare['adam'])
    p = await pres_from(olga, 'team', 'adam', lambda p: item(p).get('affiliation') == 'member')
    xt.ok(cond_of(r) == 'result' and p is not None and item(p).get('role') == 'participant',
          '10.7: admin revoked to member: the role drops to participant') or xt.diag(str(p))
    r = await admin(olga, 'team', "<item affiliation='admin'/>", 'get')
    xt.is_(cond_of(r), 'result', '10.8: the list may be read by an owner')
    r = await admin(mia, 'team', "<item jid='%s' affiliation='admin'/>"
                    "<item jid='%s' affiliation='admin'/>" % (bare['adam'], bare['vic']))
    r2 = await admin(mia, 'team', "<item affiliation='admin'/>", 'get')
    xt.ok(cond_of(r) == 'result' and list_of(r2) == sorted([bare['adam'], bare['vic']]),
          '10.8: the admin list changed in one request') or xt.diag(str(r2))

    # -- 6.6: a query to an occupant ---------------------------------------------------------
    # Passed to the occupant's client (adam's test client has no disco
    # handler: slixmpp itself answers feature-not-implemented, which
    # comes back from his occupant JID with the asker's id).
    r = await mia.iq('get', 'team@%s/adam' % SVC, "<query xmlns='%s'/>" % DISCO_INFO)
    txt = None if r is None else r.xml.findtext('{jabber:client}error/{%s}text' % STANZAS)
    xt.ok(r is not None and str(r['from']) == 'team@%s/adam' % SVC and
          cond_of(r) == 'feature-not-implemented' and txt is not None and 'handler' in txt,
          '6.6: an occupant\'s query is passed to adam\'s client, the answer comes back from '
          'his occupant JID') or xt.diag(str(r))
    r = await nora.iq('get', 'team@%s/adam' % SVC, "<query xmlns='%s'/>" % DISCO_INFO)
    xt.ok(cond_of(r) == 'bad-request' and str(r['from']) == 'team@%s/adam' % SVC,
          '6.6: a non-occupant\'s disco query: bad-request') or xt.diag(str(r))

    # -- 7.9: a one-to-one chat becomes a conference ---------------------------------------
    olga.send_raw("<message to='team@%s'><x xmlns='http://jabber.org/protocol/muc#user'>"
                  "<invite to='%s'><reason>go on here</reason><continue thread='th-1745'/>"
                  "</invite><invite to='%s'><continue thread='%s'/></invite></x></message>"
                  % (SVC, bare['nora'], bare['vic'], 'x' * 257))
    m = await nora.message(lambda m: m.xml.find('{%s}x/{%s}invite' % (USER, USER)) is not None)
    ce = None if m is None else m.xml.find('{%s}x/{%s}invite/{%s}continue' % (USER, USER, USER))
    xt.ok(ce is not None and ce.get('thread') == 'th-1745',
          '7.9: the invitation carries <continue/> with the chat\'s thread on') \
        or xt.diag(str(m))
    m = await vic.message(lambda m: m.xml.find('{%s}x/{%s}invite' % (USER, USER)) is not None)
    ce = None if m is None else m.xml.find('{%s}x/{%s}invite/{%s}continue' % (USER, USER, USER))
    xt.ok(ce is not None and ce.get('thread') is None,
          '7.9: a thread id past 256 bytes is not copied') or xt.diag(str(m))

    # -- 7.14: exiting with a status text ------------------------------------------------------
    mia.send_raw("<presence to='team@%s/mia' type='unavailable'><status>lunch</status>"
                 "</presence>" % SVC)
    ps = await pres_from(mia, 'team', 'mia', lambda p: p['type'] == 'unavailable')
    po = await pres_from(olga, 'team', 'mia', lambda p: p['type'] == 'unavailable')
    xt.ok(ps is not None and '110' in codes(ps) and po is not None and
          po['status'] == 'lunch' and item(po).get('role') == 'none',
          '7.14: the exit reaches everyone with its status, role none; 110 to mia') \
        or xt.diag(str(po))
    groupchat(olga, 'team', 'after mia left')
    m = await gc_msg(mia, 'team', 'olga', 'after mia left', timeout=0.7)
    xt.ok(m is None, '7.14: who left gets no more groupchat')

    await xt.disconnect_all(*c.values())
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=90)
