#!/usr/bin/python3
"""t0905-subscriptions: mod_roster, RFC 6121 3 and Appendix A: the two-way
subscription handshake and the roster items it leaves on both sides, the
auto-reply to a request already granted, unsubscribe and unsubscribed,
a pending request delivered again at each login until it is answered, and
pre-approval (3.4)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

NS_R = 'jabber:iq:roster'
USERS = ('alice', 'bob', 'carol', 'dave', 'erin')


# -- helpers -----------------------------------------------------------------

async def client(srv, user, resource, roster=True, priority=None):
    """A logged-in slixmpp client that answers no subscription on its own,
    keeps the roster pushes it gets in .pushes, and has asked for the
    roster."""
    c = xt.Client(srv, user, user + '-pw', resource=resource, priority=priority)
    c.xmpp.auto_authorize = None
    c.xmpp.auto_subscribe = False
    c.pushes = xt.Mailbox()
    c.xmpp.register_handler(Callback(
        'xt-push', MatchXPath('{jabber:client}iq/{%s}query' % NS_R),
        lambda iq: c.pushes.put(iq) if iq['type'] == 'set' else None))
    await c.connect()
    if not c.ok:
        raise xt.HarnessError('login failed: ' + c.describe())
    if roster:
        await c.iq('get', None, "<query xmlns='%s'/>" % NS_R)
    return c


def items(iq):
    """{jid: (subscription, ask, approved)} of a roster result or push."""
    q = iq.xml.find('{%s}query' % NS_R) if iq is not None else None
    if q is None:
        return None
    return {i.get('jid'): (i.get('subscription'), i.get('ask'), i.get('approved'))
            for i in q.findall('{%s}item' % NS_R)}


async def roster(c):
    return items(await c.iq('get', None, "<query xmlns='%s'/>" % NS_R))


async def push_for(c, jid, timeout=5):
    """(subscription, ask, approved) of jid in the next push about it."""
    p = await c.pushes.get(lambda iq: jid in (items(iq) or {}), timeout)
    return items(p)[jid] if p is not None else None


async def sub(c, frm, ptype, timeout=5):
    """The next presence of type ptype from frm (bare or full)."""
    return await c.presences.get(
        lambda p: p['type'] == ptype and (str(p['from']) == frm or p['from'].bare == frm),
        timeout)


def send(c, to, ptype):
    c.xmpp.send_presence(pto=to, ptype=ptype)


def from_attr(p):
    return p.xml.get('from') if p is not None else None


# -- the test ------------------------------------------------------------------

async def main():
    srv = xt.Server(workers=2, modules={'mod_roster': {}})
    for u in USERS:
        srv.register(u, u + '-pw')
    A, B, C, D, E = (srv.jid(u) for u in USERS)

    alice = await client(srv, 'alice', 'a')
    bob = await client(srv, 'bob', 'b')

    # 1. alice asks (RFC 6121 3.1.2, 3.1.3).
    send(alice, B, 'subscribe')
    xt.is_(await push_for(alice, B), ('none', 'subscribe', None),
           'alice\'s roster: bob, none, ask=subscribe (None + Pending Out)')
    p = await sub(bob, A, 'subscribe')
    xt.ok(p is not None, 'bob receives alice\'s request')
    xt.is_(from_attr(p), A, 'from alice\'s bare JID')
    xt.ok(await bob.pushes.get(timeout=1) is None,
          'bob gets no push: a pending request is not a roster item')
    xt.is_(await roster(bob), {}, 'bob\'s roster stays empty')

    # 2. bob approves (3.1.5, 3.1.6).
    send(bob, A, 'subscribed')
    xt.is_(await push_for(bob, A), ('from', None, None), 'bob\'s roster: alice, from')
    p = await sub(alice, B, 'subscribed')
    xt.ok(p is not None, 'alice receives the approval')
    xt.is_(await push_for(alice, B), ('to', None, None), 'alice\'s roster: bob, to, no ask')
    p = await sub(alice, str(bob.jid), 'available')
    xt.ok(p is not None, 'and bob\'s current presence right after (3.1.5)')

    # 3. and 4. the other way round.
    send(bob, A, 'subscribe')
    xt.is_(await push_for(bob, A), ('from', 'subscribe', None),
           'bob\'s roster: alice, from + ask=subscribe')
    p = await sub(alice, B, 'subscribe')
    xt.ok(p is not None, 'alice receives bob\'s request')
    send(alice, B, 'subscribed')
    xt.is_(await push_for(alice, B), ('both', None, None), 'alice\'s roster: bob, both')
    xt.is_(await push_for(bob, A), ('both', None, None), 'bob\'s roster: alice, both')
    p = await sub(bob, str(alice.jid), 'available')
    xt.ok(p is not None, 'bob gets alice\'s presence once approved')
    xt.is_(await roster(alice), {B: ('both', None, None)},
           'alice\'s roster get: bob, subscription both, no ask')
    xt.is_(await roster(bob), {A: ('both', None, None)},
           'bob\'s roster get: alice, subscription both, no ask')

    # A request for a subscription that exists is answered by bob's server
    # (A.3.1), and alice's server, already "Both", does not deliver that
    # answer (A.3.3): nobody sees anything.
    send(alice, B, 'subscribe')
    p = await sub(bob, A, 'subscribe', timeout=1.5)
    xt.ok(p is None, 'asking again: bob is not asked again')
    p = await sub(alice, B, 'subscribed', timeout=0.5)
    xt.ok(p is None, 'and alice sees no second approval')
    xt.ok(await alice.pushes.get(timeout=0.5) is None, 'nothing changed: no push')

    # bob unsubscribes (3.3): both -> from for bob, both -> to for alice,
    # and bob stops seeing alice (unavailable, 3.3.3).
    send(bob, A, 'unsubscribe')
    xt.is_(await push_for(bob, A), ('from', None, None), 'bob unsubscribes: alice is from')
    p = await sub(alice, B, 'unsubscribe')
    xt.ok(p is not None, 'alice is told')
    xt.is_(await push_for(alice, B), ('to', None, None), 'alice\'s roster: bob, to')
    p = await sub(bob, str(alice.jid), 'unavailable')
    xt.ok(p is not None, 'bob gets unavailable from alice\'s resource')

    # bob cancels alice's subscription (3.2): from -> none, to -> none.
    send(bob, A, 'unsubscribed')
    xt.is_(await push_for(bob, A), ('none', None, None), 'bob cancels: alice is none')
    p = await sub(alice, B, 'unsubscribed')
    xt.ok(p is not None, 'alice receives unsubscribed')
    xt.is_(await push_for(alice, B), ('none', None, None), 'alice\'s roster: bob, none')
    p = await sub(alice, str(bob.jid), 'unavailable')
    xt.ok(p is not None, 'alice gets unavailable from bob\'s resource (3.2.2)')

    # Unsubscribed when there is no subscription is not routed (A.2.4).
    send(bob, A, 'unsubscribed')
    p = await sub(alice, B, 'unsubscribed', timeout=1.5)
    xt.ok(p is None, 'a second unsubscribed is not routed')

    # A request to someone offline waits, and comes again at every login
    # until it is answered (3.1.3).
    send(alice, C, 'subscribe')
    xt.is_(await push_for(alice, C), ('none', 'subscribe', None), 'alice asks carol (offline)')
    carol = await client(srv, 'carol', 'c1')
    p = await sub(carol, A, 'subscribe')
    xt.ok(p is not None, 'carol gets the request when she logs in')
    xt.is_(from_attr(p), A, 'from alice\'s bare JID')
    await carol.disconnect()
    carol = await client(srv, 'carol', 'c2', roster=False)
    p = await sub(carol, A, 'subscribe')
    xt.ok(p is not None, 'and again at the next login, not being answered')
    neg = await client(srv, 'carol', 'neg', roster=False, priority=-1)
    p = await sub(neg, A, 'subscribe', timeout=1.5)
    xt.ok(p is None, 'not to a resource with negative priority')
    await neg.disconnect()
    send(carol, A, 'unsubscribed')
    p = await sub(alice, C, 'unsubscribed')
    xt.ok(p is not None, 'carol refuses: alice receives unsubscribed')
    xt.is_(await push_for(alice, C), ('none', None, None), 'alice\'s roster: carol, none, no ask')
    await carol.disconnect()
    carol = await client(srv, 'carol', 'c3')
    p = await sub(carol, A, 'subscribe', timeout=1.5)
    xt.ok(p is None, 'an answered request is not delivered again')
    xt.is_(await roster(carol), {}, 'carol\'s roster is empty')

    # Pre-approval (3.4): dave approves erin before she asks.
    dave = await client(srv, 'dave', 'd')
    send(dave, E, 'subscribed')
    xt.is_(await push_for(dave, E), ('none', None, 'true'),
           'dave\'s roster: erin, none, approved=true')
    erin = await client(srv, 'erin', 'e')
    send(erin, D, 'subscribe')
    xt.is_(await push_for(erin, D), ('none', 'subscribe', None), 'erin asks dave')
    p = await sub(erin, D, 'subscribed')
    xt.ok(p is not None, 'dave\'s server approves at once')
    xt.is_(await push_for(erin, D), ('to', None, None), 'erin\'s roster: dave, to')
    xt.is_(await push_for(dave, E), ('from', None, None),
           'dave\'s roster: erin, from, the approval used up')
    p = await sub(dave, E, 'subscribe', timeout=1.5)
    xt.ok(p is None, 'dave is not asked')
    p = await sub(erin, str(dave.jid), 'available')
    xt.ok(p is not None, 'erin gets dave\'s presence')
    # A pre-approval can be taken back with unsubscribed (3.4).
    send(dave, C, 'subscribed')
    xt.is_(await push_for(dave, C), ('none', None, 'true'), 'dave pre-approves carol')
    send(dave, C, 'unsubscribed')
    xt.is_(await push_for(dave, C), ('none', None, None), 'and takes it back')
    p = await sub(carol, D, 'unsubscribed', timeout=1)
    xt.ok(p is None, 'carol is told nothing of either')
    send(carol, D, 'subscribe')
    p = await sub(dave, C, 'subscribe')
    xt.ok(p is not None, 'carol\'s request now reaches dave')

    await xt.disconnect_all(alice, bob, carol, dave, erin)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
