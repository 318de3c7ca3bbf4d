#!/usr/bin/python3
"""t1780-muc-moderate: XEP-0425 moderated retraction in a room, both the
current request (urn:xmpp:message-moderate:1) and the older one
(urn:xmpp:message-moderate:0 in <apply-to xmlns='urn:xmpp:fasten:0'/>):
the announcement every occupant gets (XEP-0424 <retract/> and the older
<apply-to/> form), the tombstone that replaces the message in the room's
archive and in the history for joiners, and the errors (forbidden for a
non-moderator, item-not-found for an id the room does not have)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from xt_muc import SVC, create, join  # noqa: E402

NS_SID = xt.NS_SID
INFO = 'http://jabber.org/protocol/disco#info'
MOD1 = 'urn:xmpp:message-moderate:1'
MOD0 = 'urn:xmpp:message-moderate:0'
RET1 = 'urn:xmpp:message-retract:1'
RET0 = 'urn:xmpp:message-retract:0'
FASTEN = 'urn:xmpp:fasten:0'
ROOM = 'mod@' + SVC


def sid_by(m, by):
    got = [e.get('id') for e in m.xml.findall('{%s}stanza-id' % NS_SID) if e.get('by') == by]
    return got[0] if len(got) == 1 else None


def req1(sid, reason='spam'):
    return ("<moderate xmlns='%s' id='%s'><retract xmlns='%s'/><reason>%s</reason></moderate>"
            % (MOD1, sid, RET1, reason))


def req0(sid, reason='old'):
    return ("<apply-to xmlns='%s' id='%s'><moderate xmlns='%s'><retract xmlns='%s'/>"
            "<reason>%s</reason></moderate></apply-to>" % (FASTEN, sid, MOD0, RET0, reason))


def announced(m, sid):
    """Whether m is the room's announcement of sid's retraction, in both
    forms, by room/alice."""
    if m is None or str(m['from']) != ROOM or m['type'] != 'groupchat':
        return False
    r = m.xml.find('{%s}retract' % RET1)
    mo = None if r is None else r.find('{%s}moderated' % MOD1)
    a = m.xml.find('{%s}apply-to' % FASTEN)
    mo0 = None if a is None else a.find('{%s}moderated' % MOD0)
    return (r is not None and r.get('id') == sid and mo is not None and
            mo.get('by') == ROOM + '/alice' and a is not None and a.get('id') == sid and
            mo0 is not None and mo0.get('by') == ROOM + '/alice' and
            mo0.find('{%s}retract' % RET0) is not None)


def is_ann(m):
    return m.xml.find('{%s}retract' % RET1) is not None


def tomb(res, reason):
    """Whether the forwarded message of res is a tombstone (no body, both
    versions' retracted/moderated by room/alice, the reason)."""
    msg = res['msg']
    if msg is None:
        return False
    r1 = msg.find('{%s}retracted' % RET1)
    m1 = None if r1 is None else r1.find('{%s}moderated' % MOD1)
    m0 = msg.find('{%s}moderated' % MOD0)
    return (res['body'] is None and r1 is not None and r1.get('stamp') and m1 is not None and
            m1.get('by') == ROOM + '/alice' and r1.findtext('{%s}reason' % RET1) == reason and
            m0 is not None and m0.get('by') == ROOM + '/alice' and
            m0.find('{%s}retracted' % RET0) is not None and
            msg.get('from') == ROOM + '/bob')


async def bob_history(c):
    """What c got from bob in the room until a second passes quietly."""
    hist = []
    while True:
        m = await c.message(lambda m: str(m['from']) == ROOM + '/bob', timeout=1)
        if m is None:
            return hist
        hist.append(m)


async def main():
    srv = xt.Server(workers=2, modules={'mod_muc': {}})
    for u in ('alice', 'bob', 'carol', 'dave'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    await create(alice, 'mod', 'alice', [('persistentroom', '1')])
    await join(bob, 'mod', 'bob')
    await join(carol, 'mod', 'carol')

    r = await alice.iq('get', ROOM, "<query xmlns='%s'/>" % INFO)
    feats = [] if r is None else [f.get('var') for f in r.xml.iter('{%s}feature' % INFO)]
    xt.ok(MOD1 in feats and MOD0 in feats,
          'XEP-0425: the room advertises message-moderate:1 and :0') or xt.diag(feats)

    sids = {}
    for body in ('spam', 'junk', 'fine'):
        bob.send_raw("<message to='%s' type='groupchat'><body>%s</body></message>" % (ROOM, body))
        m = await alice.message(lambda m, b=body: m['type'] == 'groupchat' and m['body'] == b)
        sids[body] = None if m is None else sid_by(m, ROOM)
    for c in (alice, bob, carol):
        await c.message(lambda m: m['body'] == 'fine')

    r = await bob.iq('set', ROOM, req1(sids['fine']))
    xt.is_(xt.iq_outcome(r), 'error:forbidden', 'XEP-0425: a participant moderating: forbidden')
    r = await carol.iq('set', ROOM, req0(sids['fine']))
    xt.is_(xt.iq_outcome(r), 'error:forbidden', 'the same with the :0 request')
    r = await alice.iq('set', ROOM, req1('0000000000000001'))
    xt.is_(xt.iq_outcome(r), 'error:item-not-found',
           'XEP-0425: an id the room does not have: item-not-found')
    r = await alice.iq('set', ROOM, req1('not-an-id'))
    xt.is_(xt.iq_outcome(r), 'error:item-not-found', 'an id that is no id: item-not-found')
    r = await alice.iq('set', ROOM, "<moderate xmlns='%s' id='%s'/>" % (MOD1, sids['fine']))
    xt.is_(xt.iq_outcome(r), 'error:feature-not-implemented',
           'a moderation that is no retraction: feature-not-implemented')
    m = await bob.message(is_ann, timeout=1)
    xt.ok(m is None, 'refused requests announce nothing') or xt.diag(str(m))

    r = await alice.iq('set', ROOM, req1(sids['spam']))
    xt.is_(xt.iq_outcome(r), 'result', 'XEP-0425: a moderator retracts a message (:1)')
    got = [await c.message(is_ann) for c in (alice, bob, carol)]
    xt.ok(all(announced(m, sids['spam']) for m in got),
          'XEP-0425 / XEP-0424: every occupant gets the announcement, <retract id> with '
          '<moderated by=room/alice/> and the :0 <apply-to/> form') or xt.diag(str(got[1]))
    xt.ok(got[1] is not None and got[1].xml.findtext('{%s}retract/{%s}reason' % (RET1, RET1))
          == 'spam', 'the announcement carries the reason') or xt.diag(str(got[1]))

    r = await alice.iq('set', ROOM, req0(sids['junk']))
    xt.is_(xt.iq_outcome(r), 'result', 'the :0 request (apply-to, moderate:0) too')
    got = [await c.message(is_ann) for c in (alice, bob, carol)]
    xt.ok(all(announced(m, sids['junk']) for m in got),
          'and every occupant gets its announcement') or xt.diag(str(got[2]))

    out, fin, res = await xt.mam_query(carol, to=ROOM)
    anns = [x for x in res if x['msg'] is not None and x['msg'].get('from') == ROOM]
    res = [x for x in res if x not in anns]
    byid = {x['id']: x for x in res}
    ann_of = [None if a['msg'].find('{%s}retract' % RET1) is None else
              a['msg'].find('{%s}retract' % RET1).get('id') for a in anns]
    xt.ok(ann_of == [sids['spam'], sids['junk']] and
          all(a['id'] > sids['fine'] for a in anns),
          'XEP-0424: the announcements are archived after the messages, so that a client '
          'paging on from its last id learns of the retractions') or xt.diag(str(anns))
    xt.ok(out == 'result' and len(res) == 3 and tomb(byid.get(sids['spam'], {'msg': None}),
                                                       'spam'),
          'XEP-0425 tombstones: the archive has the tombstone in the message\'s place, '
          'no body') or xt.diag(str(res))
    xt.ok(tomb(byid.get(sids['junk'], {'msg': None}), 'old'),
          'and for the :0 request likewise') or xt.diag(str(byid.get(sids['junk'])))
    xt.ok(byid.get(sids['fine'], {}).get('body') == 'fine', 'the other message stays')
    out, fin, res = await xt.mam_query(carol, to=ROOM, fields=[
        ('{urn:xmpp:fulltext:0}fulltext', 'spam')])
    xt.ok(out == 'result' and not res, 'a full-text search no longer finds the retracted '
          'word') or xt.diag(str(res))

    dave = await xt.login_ok(srv, 'dave', resource='d')
    await join(dave, 'mod', 'dave')
    hist = await bob_history(dave)
    xt.ok(len(hist) == 3 and hist[0]['body'] == '' and
          hist[0].xml.find('{%s}retracted' % RET1) is not None and hist[2]['body'] == 'fine',
          'the history a joiner gets has the tombstone too') \
        or xt.diag(str([str(h) for h in hist]))

    # The persistent room's history is in the store: a restart must not
    # bring the retracted text back.
    await xt.disconnect_all(alice, bob, carol, dave)
    xt.is_(srv.restart(), 0, 'xmppd restarts')
    dave = await xt.login_ok(srv, 'dave', resource='d')
    await join(dave, 'mod', 'dave')
    hist = await bob_history(dave)
    xt.ok(len(hist) == 3 and 'spam' not in [h['body'] for h in hist] and
          'junk' not in [h['body'] for h in hist] and
          hist[0].xml.find('{%s}retracted' % RET1) is not None and hist[2]['body'] == 'fine',
          'after a restart the history still has the tombstones, not the messages') \
        or xt.diag(str([str(h) for h in hist]))

    await xt.disconnect_all(dave)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=60)
