#!/usr/bin/python3
"""t1760-muc-ids: XEP-0410 MUC self-ping answered by the room (a result
while joined under that nick, not-acceptable (cancel) for a non-occupant,
never relayed to the occupant's client) and its disco#info feature;
XEP-0421 occupant ids on every presence and groupchat message from an
occupant, the same for one user across nick changes and rejoins,
different for another, those a client sent removed, the same after a
restart with occupant_id_secret set; XEP-0359 stanza
ids given by the room, one per message for all its recipients, those
the sender gave in the room's name removed."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

from xt_muc import SVC, cond_of, create, join, pres_from  # noqa: E402

PING = "<ping xmlns='urn:xmpp:ping'/>"
INFO = 'http://jabber.org/protocol/disco#info'
OID = 'urn:xmpp:occupant-id:0'
SID = 'urn:xmpp:sid:0'


def sids(st):
    """The (by, id) of the stanza ids st carries."""
    return [] if st is None else [(e.get('by'), e.get('id'))
                                  for e in st.xml.findall('{%s}stanza-id' % SID)]
FORGED = "<occupant-id xmlns='%s' id='forged'/>" % OID


def oids(st):
    """The occupant ids st carries."""
    return [] if st is None else [e.get('id') for e in st.xml.findall('{%s}occupant-id' % OID)]


def pings_seen(c):
    """A list of the pings (IQ gets; an error reply carries the ping
    too) c's client receives."""
    seen = []
    c.xmpp.register_handler(Callback(
        'seen-ping', MatchXPath('{jabber:client}iq/{urn:xmpp:ping}ping'),
        lambda iq: seen.append(iq) if iq['type'] == 'get' else None))
    return seen


def err_type(st):
    e = None if st is None else st.xml.find('{jabber:client}error')
    return None if e is None else e.get('type')


async def main():
    srv = xt.Server(workers=2, modules={'mod_muc': {'occupant_id_secret': 'a-test-key'}})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    room = 'p@' + SVC
    await create(alice, 'p', 'alice')
    await join(bob, 'p', 'bob')
    await pres_from(alice, 'p', 'bob')      # taken, so that check 10 sees the next one
    seen_a, seen_b = pings_seen(alice), pings_seen(bob)

    r = await alice.iq('get', room, "<query xmlns='%s'/>" % INFO)
    feats = [] if r is None else [f.get('var') for f in r.xml.iter('{%s}feature' % INFO)]
    xt.ok('http://jabber.org/protocol/muc#self-ping-optimization' in feats,
          'XEP-0410 4: the room advertises muc#self-ping-optimization') or xt.diag(str(r))

    r = await alice.iq('get', room + '/alice', PING)
    xt.ok(r is not None and r['type'] == 'result' and str(r['from']) == room + '/alice',
          'XEP-0410 4: a joined occupant\'s self-ping: a result from its occupant JID') \
        or xt.diag(str(r))
    xt.is_(len(seen_a), 0, 'XEP-0410 4: the self-ping did not reach the occupant\'s client')

    r = await carol.iq('get', room + '/bob', PING)
    xt.ok(cond_of(r) == 'not-acceptable' and err_type(r) == 'cancel',
          'XEP-0410 3: a non-occupant\'s ping to an occupant JID: not-acceptable (cancel)') \
        or xt.diag(str(r))
    r = await carol.iq('get', room + '/carol', PING)
    xt.ok(cond_of(r) == 'not-acceptable' and err_type(r) == 'cancel',
          'XEP-0410 3: a self-ping when not joined: not-acceptable (cancel)') or xt.diag(str(r))
    xt.is_(len(seen_b), 0, 'XEP-0410: a non-occupant\'s ping did not reach the occupant\'s client')

    # Left the room: not joined any more.
    bob.send_raw("<presence to='%s/bob' type='unavailable'/>" % room)
    await bob.presence(lambda p: str(p['from']) == room + '/bob' and p['type'] == 'unavailable')
    r = await bob.iq('get', room + '/bob', PING)
    xt.ok(cond_of(r) == 'not-acceptable',
          'XEP-0410 3: a self-ping after leaving: not-acceptable') or xt.diag(str(r))
    xt.is_(len(seen_b), 0, 'and the client got no ping')

    # XEP-0421
    xt.ok(OID in feats, 'XEP-0421 2: the room advertises urn:xmpp:occupant-id:0')
    bob.send_raw("<presence to='%s/bob'><x xmlns='http://jabber.org/protocol/muc'/>%s"
                 "</presence>" % (room, FORGED))
    pb = await pres_from(alice, 'p', 'bob', lambda p: p['type'] != 'unavailable')
    ids = oids(pb)
    xt.ok(len(ids) == 1 and ids[0] != 'forged' and len(ids[0]) == 44,
          'XEP-0421 4: a presence from an occupant carries one occupant id, not the one '
          'its client sent') or xt.diag(str(pb))
    bid = ids[0] if ids else None
    bob.send_raw("<message to='%s' type='groupchat'><body>hello</body>%s</message>"
                 % (room, FORGED))
    m = await alice.message(lambda m: m['type'] == 'groupchat' and m['body'] == 'hello')
    xt.ok(bid is not None and oids(m) == [bid],
          'XEP-0421 4: a groupchat message carries its sender\'s id only (the forged one '
          'removed)') or xt.diag(str(m))
    pa = await join(carol, 'p', 'carol')
    xt.ok(oids(pa) and oids(pa)[0] != bid, 'XEP-0421 3: another user has another id') \
        or xt.diag(str(pa))
    bob.send_raw("<presence to='%s/bobby'>%s</presence>" % (room, FORGED))
    pn = await pres_from(alice, 'p', 'bobby')
    xt.ok(bid is not None and oids(pn) == [bid],
          'XEP-0421 3, 4: the same id after a nick change (the forged one removed)') \
        or xt.diag(str(pn))
    bob.send_raw("<presence to='%s/bobby' type='unavailable'/>" % room)
    await pres_from(alice, 'p', 'bobby', lambda p: p['type'] == 'unavailable')
    pr = await join(bob, 'p', 'bob2')
    xt.ok(bid is not None and oids(pr) == [bid], 'XEP-0421 3: the same id after a rejoin') \
        or xt.diag(str(pr))


    # XEP-0359
    xt.ok(SID in feats, 'XEP-0359 6: the room advertises urn:xmpp:sid:0')
    bob.send_raw("<message to='%s' type='groupchat'><body>s1</body>"
                 "<stanza-id xmlns='%s' by='%s' id='forged'/>"
                 "<stanza-id xmlns='%s' by='other@%s' id='kept'/></message>"
                 % (room, SID, room, SID, SVC))
    ma = await alice.message(lambda m: m['type'] == 'groupchat' and m['body'] == 's1')
    mb = await bob.message(lambda m: m['type'] == 'groupchat' and m['body'] == 's1')
    ours = [i for b, i in sids(ma) if b == room]
    xt.ok(len(ours) == 1 and ours[0] != 'forged',
          'XEP-0359 3.1: one stanza-id by the room, the sender\'s in its name removed') \
        or xt.diag(str(ma))
    xt.ok(('other@' + SVC, 'kept') in sids(ma),
          'XEP-0359 3.1: a stanza-id by another entity stays') \
        or xt.diag(str(ma))
    xt.ok(ours and [i for b, i in sids(mb) if b == room] == ours,
          'XEP-0359: the same id for every recipient of one message') or xt.diag(str(mb))
    bob.send_raw("<message to='%s' type='groupchat'><body>s2</body></message>" % room)
    m2 = await alice.message(lambda m: m['type'] == 'groupchat' and m['body'] == 's2')
    ids2 = [i for b, i in sids(m2) if b == room]
    xt.ok(len(ids2) == 1 and ids2 != ours, 'XEP-0359: another message, another id') \
        or xt.diag(str(m2))

    # With occupant_id_secret set, an id survives a restart.
    await xt.disconnect_all(alice, bob, carol)
    xt.is_(srv.restart(), 0, 'xmppd restarts')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    pr = await join(bob, 'p', 'bob')
    xt.ok(bid is not None and oids(pr) == [bid], 'XEP-0421 3: the same id after a restart') \
        or xt.diag(str(pr))

    await xt.disconnect_all(bob)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=60)
