#!/usr/bin/python3
"""t1540-im-gaps: what clients notice (issue 13, points 7 and 8): XEP-0334
hints, standalone XEP-0085 chat states, XEP-0184 receipts and XEP-0333
markers in offline storage (mod_offline); XEP-0012 last activity from the
last unavailable presence, with its status, to the user and the contacts
the user shares presence with, forbidden to anyone else (mod_last, through
the roster query); the presence XEP-0191 3.3 and 3.4 send on block and
unblock (mod_blocking); what an account's disco#info shows (mod_disco).
vCards (XEP-0054) are in t0740."""

import asyncio
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
NS_CHATSTATES = 'http://jabber.org/protocol/chatstates'
NS_HINTS = 'urn:xmpp:hints'
NS_RECEIPTS = 'urn:xmpp:receipts'
NS_MARKERS = 'urn:xmpp:chat-markers:0'
NS_SID = 'urn:xmpp:sid:0'
NS_DELAY = 'urn:xmpp:delay'


async def sync(c, timeout=5):
    """A round trip: what c sent before has been routed (and stored, or
    bounced: a stored message holds c's stream until the store answers)."""
    r = await c.iq('get', c.server.host, "<query xmlns='%s'/>" % NS_DISCO_INFO, timeout=timeout)
    if r is None:
        raise xt.HarnessError('no answer to disco#info from %s' % c.jid)
    return r


async def drain(box, settle):
    """Everything that arrives in box until nothing has for settle seconds."""
    got = []
    while True:
        s = await box.get(None, settle)
        if s is None:
            return got
        got.append(s)


async def offline(srv, *clients):
    await xt.disconnect_all(*clients)
    bare = [str(c.jid.bare) for c in clients]
    await srv.wait_connected(lambda s: not any(x['jid'].split('/')[0] in bare for x in s))


async def client(srv, user, resource, priority=None, status=None):
    """A logged-in client that answers no subscription request on its own
    (slixmpp would grant them) and sends its own initial presence."""
    c = xt.Client(srv, user, user + '-pw', resource=resource, priority=priority, presence=False)
    c.xmpp.auto_authorize = None
    c.xmpp.auto_subscribe = False
    await c.connect()
    if not c.ok:
        raise xt.HarnessError('login failed: ' + c.describe())
    c.send_raw('<presence>%s</presence>' % ('<status>%s</status>' % status if status else ''))
    await sync(c)
    return c


async def subscribe(srv, frm, to):
    """frm subscribes to to's presence and to grants it (RFC 6121 3.1):
    frm's item for to gets 'to', to's item for frm 'from'."""
    frm.send_raw("<presence to='%s' type='subscribe'/>" % to.jid.bare)
    p = await to.presence(pred=lambda p: p['type'] == 'subscribe' and p['from'].bare == frm.jid.bare)
    if p is None:
        raise xt.HarnessError('%s got no subscribe from %s' % (to.jid, frm.jid))
    to.send_raw("<presence to='%s' type='subscribed'/>" % frm.jid.bare)
    p = await frm.presence(pred=lambda p: p['type'] == 'subscribed' and p['from'].bare == to.jid.bare)
    if p is None:
        raise xt.HarnessError('%s got no subscribed from %s' % (frm.jid, to.jid))
    await sync(frm)
    await sync(to)


def presences_from(got, bare):
    """(from, type) of the presence stanzas in got from bare's resources."""
    return sorted((str(p['from']), p['type']) for p in got if p['from'].bare == bare)


# -- Point 7: what offline storage keeps (mod_offline) -------------------------

# (id, body, extra children, stored?). XEP-0160 3 and XEP-0085 5.6: a
# standalone chat state is not stored, one next to a body is; XEP-0334:
# 4.2 no-store is not stored (and bounced, RFC 6121 8.5.2.2.1), 4.1
# no-permanent-store rules out archives, not storage for an offline
# recipient (3.3), 4.4 store keeps even a standalone chat state;
# XEP-0184 receipts and XEP-0333 markers have no body but are state the
# recipient needs when it comes back (and XEP-0333 1 expects a device that
# was away to find them): stored.
OFFLINE_CASES = [
    ('nostore-body', 'not kept', "<no-store xmlns='%s'/>" % NS_HINTS, False),
    ('nostore-cs', None, "<composing xmlns='%s'/><no-store xmlns='%s'/>" % (NS_CHATSTATES, NS_HINTS),
     False),
    ('npstore-body', 'kept for delivery', "<no-permanent-store xmlns='%s'/>" % NS_HINTS, True),
    ('npstore-cs', None, "<paused xmlns='%s'/><no-permanent-store xmlns='%s'/>"
     % (NS_CHATSTATES, NS_HINTS), False),
    ('cs-alone', None, "<active xmlns='%s'/><thread>th1</thread>" % NS_CHATSTATES, False),
    ('cs-origin', None, "<composing xmlns='%s'/><origin-id xmlns='%s' id='o-1'/>"
     % (NS_CHATSTATES, NS_SID), False),
    ('cs-store', None, "<gone xmlns='%s'/><store xmlns='%s'/>" % (NS_CHATSTATES, NS_HINTS), True),
    ('body-cs', 'with a chat state', "<active xmlns='%s'/>" % NS_CHATSTATES, True),
    ('receipt', None, "<received xmlns='%s' id='r-1'/>" % NS_RECEIPTS, True),
    ('marker', None, "<displayed xmlns='%s' id='d-1'/>" % NS_MARKERS, True),
    ('markable', 'read me', "<markable xmlns='%s'/><request xmlns='%s'/>" % (NS_MARKERS, NS_RECEIPTS),
     True),
]


async def offline_hints(srv):
    alice = await xt.login_ok(srv, 'alice', resource='hints')
    bob_bare = srv.jid('bob')
    for sid, body, extra, _ in OFFLINE_CASES:
        xt.send_message_id(alice, bob_bare, body, 'chat', sid=sid, extra=extra)
    await sync(alice)
    errs = await drain(alice.messages, 1.0)
    xt.is_(sorted((m['id'], m['error']['condition']) for m in errs if m['type'] == 'error'),
           [('nostore-body', 'service-unavailable')],
           'only the no-store message with a body comes back, service-unavailable (RFC 6121 '
           '8.5.2.2.1); a standalone chat state with no-store goes silently')
    bob = await xt.login_ok(srv, 'bob', resource='hints')
    got = await drain(bob.messages, 1.5)
    want = [sid for sid, _, _, stored in OFFLINE_CASES if stored]
    xt.is_([m['id'] for m in got], want,
           'bob gets, in order, the no-permanent-store message, the chat state with <store/>, '
           'the body with a chat state, the receipt, the marker and the markable message; not '
           'no-store, nor a standalone chat state (alone, with a thread, an origin-id or '
           'no-permanent-store)')
    by_id = {m['id']: m for m in got}
    m = by_id.get('body-cs')
    xt.ok(m is not None and m['body'] == 'with a chat state'
          and m.xml.find('{%s}active' % NS_CHATSTATES) is not None
          and m.xml.find('{%s}delay' % NS_DELAY) is not None,
          'the body with a chat state keeps its <active/>, stamped with a delay')
    m = by_id.get('receipt')
    r = m.xml.find('{%s}received' % NS_RECEIPTS) if m is not None else None
    xt.ok(r is not None and r.get('id') == 'r-1', 'the receipt keeps its <received id="r-1"/>')
    m = by_id.get('marker')
    r = m.xml.find('{%s}displayed' % NS_MARKERS) if m is not None else None
    xt.ok(r is not None and r.get('id') == 'd-1', 'the marker keeps its <displayed id="d-1"/>')
    await offline(srv, alice, bob)


# -- Point 8: last activity (mod_last, XEP-0012) -------------------------------

NS_LAST = 'jabber:iq:last'
LAST = "<query xmlns='%s'/>" % NS_LAST


def last_of(r):
    """('result', seconds, text) or ('error', condition, None)."""
    if r is None:
        return None
    if r['type'] == 'error':
        return ('error', r['error']['condition'], None)
    q = r.xml.find('{%s}query' % NS_LAST)
    try:
        return ('result', int(q.get('seconds')), q.text or '')
    except (AttributeError, TypeError, ValueError):
        return ('result', None, None)


async def last_activity(srv):
    """alice shares her presence with bob (bob subscribed to her: her
    item 'from') and carol ('both'); she is subscribed to dave's presence
    only (her item 'to': dave does not see hers); erin's request to her
    is pending. XEP-0012 4 and 8: only those allowed to see her presence
    (the presence subscription, RFC 6121 2.1.2.5, 4) may learn it."""
    alice = await client(srv, 'alice', 'desk')
    bob = await client(srv, 'bob', 'b')
    carol = await client(srv, 'carol', 'c')
    dave = await client(srv, 'dave', 'd')
    erin = await client(srv, 'erin', 'e')
    await subscribe(srv, bob, alice)
    await subscribe(srv, carol, alice)
    await subscribe(srv, alice, carol)
    await subscribe(srv, alice, dave)
    erin.send_raw("<presence to='%s' type='subscribe'/>" % alice.jid.bare)
    await alice.presence(pred=lambda p: p['type'] == 'subscribe' and p['from'].bare == erin.jid.bare)
    a = srv.jid('alice')

    # Online: XEP-0012 4, an available resource answers seconds='0' and no
    # text; to a subscriber as to the user.
    xt.is_(last_of(await bob.iq('get', a, LAST)), ('result', 0, ''),
           "bob (alice's item: from) asks while she is online: seconds 0, no text")
    xt.is_(last_of(await carol.iq('get', a, LAST)), ('result', 0, ''),
           'carol (both): the same')
    xt.is_(last_of(await dave.iq('get', a, LAST)), ('error', 'forbidden', None),
           "dave (alice's item: to, he does not see her presence): forbidden")
    xt.is_(last_of(await erin.iq('get', a, LAST)), ('error', 'forbidden', None),
           'erin (her request pending): forbidden')
    xt.is_(last_of(await alice.iq('get', srv.jid('erin'), LAST)), ('error', 'forbidden', None),
           'alice asking about erin (no item on either side): forbidden')

    # The seconds count from her last unavailable presence, not from the
    # end of the session (which comes 2.5 s later), and carry its status.
    alice.send_raw('<presence type="unavailable"><status>Out for lunch</status></presence>')
    await sync(alice)
    await asyncio.sleep(2.5)
    await offline(srv, alice)
    r = last_of(await bob.iq('get', a, LAST))
    xt.ok(r is not None and r[0] == 'result' and r[1] is not None and 2 <= r[1] < 60
          and r[2] == 'Out for lunch',
          'alice offline: bob gets the seconds since her unavailable presence (2..60) and its '
          'status (%r)' % (r,))
    r = last_of(await carol.iq('get', a, LAST))
    xt.ok(r is not None and r[0] == 'result' and r[2] == 'Out for lunch',
          'so does carol (%r); the roster was read with alice offline' % (r,))
    xt.is_(last_of(await dave.iq('get', a, LAST)), ('error', 'forbidden', None),
           'dave still gets forbidden')
    # A contact who stops being a subscriber (RFC 6121 3.3: alice cancels
    # bob's subscription) is refused from then on.
    alice = await client(srv, 'alice', 'desk2')
    alice.send_raw("<presence to='%s' type='unsubscribed'/>" % bob.jid.bare)
    await sync(alice)
    await bob.presence(pred=lambda p: p['type'] == 'unsubscribed' and p['from'].bare == a)
    xt.is_(last_of(await bob.iq('get', a, LAST)), ('error', 'forbidden', None),
           'after alice cancelled his subscription bob gets forbidden')
    await offline(srv, alice, bob, carol, dave, erin)


# -- Point 8: presence on block and unblock (mod_blocking, XEP-0191) -----------

NS_BLOCKING = 'urn:xmpp:blocking'


def items_xml(jids):
    return ''.join("<item jid='%s'/>" % j for j in jids)


async def settle_presences(*clients, settle=1.5):
    """{client: [presence...]} of what each got until all is quiet."""
    got = await asyncio.gather(*(drain(c.presences, settle) for c in clients))
    return dict(zip(clients, got))


def seen(got, bare):
    """(from, type attribute) of got's presence from bare, in order of
    the resource (RFC 6121: None is available)."""
    return sorted((str(p['from']), p.xml.get('type')) for p in got if p['from'].bare == bare)


async def blocking_presence(srv):
    """ann (two resources) shares presence both ways with ben; cat is
    subscribed to ann (ann's item: from); ann to don (ann's item: to);
    eve has nothing to do with her. XEP-0191 3.3: on block, unavailable
    presence goes to the blocked contact only if it receives ann's
    presence (from, both); and as nothing from the contact reaches ann any
    more, her resources see the contacts they were seeing go (to, both).
    3.4: on unblock, the current presence goes out again to those allowed
    to see it, and a probe brings back the presence of those ann is
    subscribed to (RFC 6121 4.3)."""
    ann1 = await client(srv, 'ann', 'one', status='one here')
    ann2 = await client(srv, 'ann', 'two', status='two here')
    ben = await client(srv, 'ben', 'b', status='ben here')
    cat = await client(srv, 'cat', 'c')
    don = await client(srv, 'don', 'd', status='don here')
    eve = await client(srv, 'eve', 'e')
    await subscribe(srv, ben, ann1)
    await subscribe(srv, ann1, ben)
    await subscribe(srv, cat, ann1)
    await subscribe(srv, ann1, don)
    # ann's resources and ben, cat and don see each other as the
    # subscriptions say (checked: the set-up is what the rules below
    # depend on).
    ann2.send_raw('<presence><status>two here</status></presence>')
    ann1.send_raw('<presence><status>one here</status></presence>')
    await sync(ann1)
    await sync(ann2)
    everyone = (ann1, ann2, ben, cat, don, eve)
    got = await settle_presences(*everyone, settle=1.0)
    a1, a2 = str(ann1.jid), str(ann2.jid)
    xt.ok(seen(got[ben], srv.jid('ann')) and seen(got[cat], srv.jid('ann'))
          and not seen(got[don], srv.jid('ann')) and not seen(got[eve], srv.jid('ann')),
          "set-up: ben and cat see ann's presence, don and eve do not")
    contacts = [srv.jid(u) for u in ('ben', 'cat', 'don', 'eve')]

    r = await ann1.iq('set', None, "<block xmlns='%s'>%s</block>" % (NS_BLOCKING, items_xml(contacts)))
    xt.is_(r['type'] if r is not None else None, 'result', 'ann blocks ben, cat, don and eve')
    got = await settle_presences(*everyone)
    unavail = [(a1, 'unavailable'), (a2, 'unavailable')]
    xt.is_(seen(got[ben], srv.jid('ann')), unavail,
           'ben (both) gets unavailable presence from each of ann\'s resources (3.3)')
    xt.is_(seen(got[cat], srv.jid('ann')), unavail, 'so does cat (from)')
    xt.is_(seen(got[don], srv.jid('ann')), [], 'don (ann\'s item: to) gets nothing from ann')
    xt.is_(seen(got[eve], srv.jid('ann')), [], 'eve (none) gets nothing from ann')
    for a in (ann1, ann2):
        xt.is_((seen(got[a], srv.jid('ben')), seen(got[a], srv.jid('don'))),
               ([(str(ben.jid), 'unavailable')], [(str(don.jid), 'unavailable')]),
               '%s sees ben (both) and don (to) go unavailable' % a.jid)
        xt.is_(seen(got[a], srv.jid('cat')) + seen(got[a], srv.jid('eve')), [],
               '%s gets nothing from cat (from) or eve, whom she was not seeing' % a.jid)

    r = await ann1.iq('set', None, "<unblock xmlns='%s'>%s</unblock>"
                      % (NS_BLOCKING, items_xml(contacts)))
    xt.is_(r['type'] if r is not None else None, 'result', 'ann unblocks them')
    got = await settle_presences(*everyone)
    avail = [(a1, None), (a2, None)]
    xt.is_(seen(got[ben], srv.jid('ann')), avail,
           'ben gets the current presence of each of ann\'s resources again (3.4)')
    st = sorted(p['status'] for p in got[ben] if p['from'].bare == srv.jid('ann'))
    xt.is_(st, ['one here', 'two here'], 'with their status')
    xt.is_(seen(got[cat], srv.jid('ann')), avail, 'so does cat')
    xt.is_(seen(got[don], srv.jid('ann')) + seen(got[eve], srv.jid('ann')), [],
           'don and eve get nothing')
    for a in (ann1, ann2):
        xt.is_((seen(got[a], srv.jid('ben')), seen(got[a], srv.jid('don'))),
               ([(str(ben.jid), None)], [(str(don.jid), None)]),
               '%s sees ben and don available again (the probe, RFC 6121 4.3)' % a.jid)
        xt.is_(seen(got[a], srv.jid('cat')) + seen(got[a], srv.jid('eve')), [],
               '%s gets nothing from cat or eve' % a.jid)

    # 3.5: unblocking all restores what each item blocked.
    r = await ann1.iq('set', None, "<block xmlns='%s'>%s</block>"
                      % (NS_BLOCKING, items_xml([srv.jid('ben')])))
    got = await settle_presences(ben, ann1)
    xt.is_(seen(got[ben], srv.jid('ann')), unavail, 'ann blocks ben again: he sees her go')
    r = await ann1.iq('set', None, "<unblock xmlns='%s'/>" % NS_BLOCKING)
    xt.is_(r['type'] if r is not None else None, 'result', 'ann unblocks everyone (3.5)')
    got = await settle_presences(ben, ann1)
    xt.is_((seen(got[ben], srv.jid('ann')), seen(got[ann1], srv.jid('ben'))),
           (avail, [(str(ben.jid), None)]),
           'ben sees ann again, and ann sees ben again')
    await offline(srv, *everyone)


# -- Point 8: an account's service discovery (mod_disco, XEP-0030 8) -----------

NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items'


def info_summary(r):
    """('result', identities, has jabber:iq:last) or ('error', condition)."""
    if r is None:
        return None
    if r['type'] == 'error':
        return ('error', r['error']['condition'])
    q = r.xml.find('{%s}query' % NS_DISCO_INFO)
    ids = sorted((i.get('category'), i.get('type')) for i in q.findall('{%s}identity' % NS_DISCO_INFO))
    feats = [f.get('var') for f in q.findall('{%s}feature' % NS_DISCO_INFO)]
    return ('result', ids, NS_LAST in feats)


def items_summary(r):
    """('result', [(jid, node)]) or ('error', condition)."""
    if r is None:
        return None
    if r['type'] == 'error':
        return ('error', r['error']['condition'])
    q = r.xml.find('{%s}query' % NS_DISCO_ITEMS)
    return ('result', sorted((i.get('jid'), i.get('node')) for i in q.findall('{%s}item' % NS_DISCO_ITEMS)))


async def account_disco(srv):
    """XEP-0030 8: a disco#info to an account's bare JID is answered only
    to those authorized to receive its presence (subscription from or
    both), service-unavailable to anyone else (rule 1.2); disco#items
    shows them what modules add (here mod_discofold's item, as a PEP
    service would list nodes) and anyone else an empty result (rule 2.2).
    gus is subscribed to fay (fay's item: from); fay to hal (her item:
    to, hal does not see her presence); ivy has nothing to do with her."""
    fay = await client(srv, 'fay', 'f')
    gus = await client(srv, 'gus', 'g')
    hal = await client(srv, 'hal', 'h')
    ivy = await client(srv, 'ivy', 'i')
    await subscribe(srv, gus, fay)
    await subscribe(srv, fay, hal)
    f = srv.jid('fay')
    info = "<query xmlns='%s'/>" % NS_DISCO_INFO
    items = "<query xmlns='%s'/>" % NS_DISCO_ITEMS
    full = ('result', [('account', 'registered')], True)
    fold = ('result', [(f, 'discofold')])
    xt.is_(info_summary(await fay.iq('get', f, info)), full, 'fay asks about her own account')
    xt.is_(info_summary(await gus.iq('get', f, info)), full,
           'gus (subscribed to her presence) gets the account identity and features')
    xt.is_(info_summary(await hal.iq('get', f, info)), ('error', 'service-unavailable'),
           'hal (fay\'s item: to) gets service-unavailable (XEP-0030 8 rule 1.2)')
    xt.is_(info_summary(await ivy.iq('get', f, info)), ('error', 'service-unavailable'),
           'ivy (none) gets service-unavailable')
    xt.is_(items_summary(await fay.iq('get', f, items)), fold, 'fay sees her items')
    xt.is_(items_summary(await gus.iq('get', f, items)), fold, 'so does gus')
    xt.is_(items_summary(await hal.iq('get', f, items)), ('result', []),
           'hal gets an empty result (rule 2.2)')
    xt.is_(items_summary(await ivy.iq('get', f, items)), ('result', []), 'so does ivy')
    # The same with fay offline: her roster is read from the store.
    await offline(srv, fay)
    xt.is_((info_summary(await gus.iq('get', f, info)), items_summary(await gus.iq('get', f, items)),
            info_summary(await ivy.iq('get', f, info))),
           (full, fold, ('error', 'service-unavailable')),
           'with fay offline: the same answers to gus and ivy')
    await offline(srv, gus, hal, ivy)


async def main():
    # The shipped modules and mod_discofold (t/modules), in one directory.
    shipped = ('mod_offline', 'mod_disco', 'mod_roster', 'mod_last', 'mod_blocking')
    moddir = xt.scratch_dir('t1540-modules')
    for name in shipped:
        so = os.path.join(xt.MODULE_DIR, name + '.so')
        if not os.path.exists(so):
            raise xt.HarnessError('%s is missing (build the modules, or set '
                                  'XMPPD_TEST_MODULE_DIR)' % so)
        shutil.copy(so, moddir / (name + '.so'))
    xt.build_test_module(moddir, 'mod_discofold')
    mods = {name: {} for name in shipped}
    mods['mod_discofold'] = {}
    srv = xt.Server(workers=2, conf={'module_dir': str(moddir)}, modules=mods)
    for u in ('alice', 'bob', 'carol', 'dave', 'erin', 'ann', 'ben', 'cat', 'don', 'eve',
              'fay', 'gus', 'hal', 'ivy'):
        srv.register(u, u + '-pw')
    await offline_hints(srv)
    await last_activity(srv)
    await blocking_presence(srv)
    await account_disco(srv)
    srv.teardown()


xt.run(main, timeout=170)
