#!/usr/bin/python3
"""t0900-roster: mod_roster, RFC 6121 2 and XEP-0237: roster get/set/remove,
the stream features, pushes to interested resources only, the error cases of
2.3.3 and the limits, versioning (empty result when nothing changed, pushes
since an older version), persistence across a restart, xmppctl roster
list/add/remove, and the roster going away with the account."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

NS_R = 'jabber:iq:roster'
USERS = ('alice', 'bob', 'carol', 'dave')
MODULES = {'mod_roster': {'max_items': 6, 'max_name_length': 40,
                          'max_group_length': 20, 'max_groups': 3}}


# -- helpers -----------------------------------------------------------------

async def client(srv, user, resource, roster=True):
    """A logged-in slixmpp client that answers nothing on its own, keeps the
    roster pushes it gets in .pushes, and has asked for the roster."""
    c = xt.Client(srv, user, user + '-pw', resource=resource)
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
        await get(c)
    return c


async def get(c, ver=None, to=None):
    q = "<query xmlns='%s'%s/>" % (NS_R, '' if ver is None else " ver='%s'" % ver)
    return await c.iq('get', to, q)


async def setq(c, inner, to=None):
    return await c.iq('set', to, "<query xmlns='%s'>%s</query>" % (NS_R, inner))


def items(iq):
    """{jid: (subscription, ask, name, sorted groups)} of a roster result or
    push; None if it has no query."""
    if iq is None:
        return None
    q = iq.xml.find('{%s}query' % NS_R)
    if q is None:
        return None
    return {i.get('jid'): (i.get('subscription'), i.get('ask'), i.get('name'),
                           sorted(g.text or '' for g in i.findall('{%s}group' % NS_R)))
            for i in q.findall('{%s}item' % NS_R)}


def ver_of(iq):
    q = iq.xml.find('{%s}query' % NS_R) if iq is not None else None
    return q.get('ver') if q is not None else None


def cond(iq):
    if iq is None or iq['type'] != 'error':
        return None
    return iq['error']['condition']


async def push_for(c, jid, timeout=5, sub=None):
    """The next push that carries jid (with that subscription)."""
    return await c.pushes.get(lambda iq: jid in (items(iq) or {}) and
                              (sub is None or items(iq)[jid][0] == sub), timeout)


def push_is(p, user, want, name):
    """Checks a roster push: an IQ set from the user's bare JID (RFC 6121
    2.1.6: a client ignores one from anyone else), carrying exactly one
    item (2.1.6: the item that changed), and that item is want
    ({jid: (subscription, ask, name, groups)}, as items() gives it)."""
    if p is None:
        return xt.ok(False, name + ' (no push came)')
    q = p.xml.find('{%s}query' % NS_R)
    n = len(q.findall('{%s}item' % NS_R)) if q is not None else 0
    return xt.is_((p['type'], p.xml.get('from'), n, items(p)), ('set', user, 1, want), name)


# -- the test ------------------------------------------------------------------

async def main():
    srv = xt.Server(workers=2, modules=MODULES)
    for u in USERS:
        srv.register(u, u + '-pw')
    bob_jid, carol_jid, dave_jid = srv.jid('bob'), srv.jid('carol'), srv.jid('dave')

    # Stream features after authentication (XEP-0237, RFC 6121 3.4).
    raw = await xt.Raw.open(srv)
    await raw.login('alice', 'alice-pw', 'raw')
    xt.like(raw.text, r"<ver xmlns=['\"]urn:xmpp:features:rosterver['\"]",
            'the rosterver stream feature is offered after SASL')
    xt.like(raw.text, r"<sub xmlns=['\"]urn:xmpp:features:pre-approval['\"]",
            'the pre-approval stream feature is offered after SASL')
    raw.close()

    a1 = await client(srv, 'alice', 'one')
    a2 = await client(srv, 'alice', 'two')
    a3 = await client(srv, 'alice', 'three', roster=False)

    r = await get(a1)
    xt.is_(r['type'] if r else None, 'result', 'a roster get is answered with a result')
    xt.is_(items(r), {}, 'a new account has an empty roster')
    v0 = ver_of(r)
    xt.ok(v0, 'the result carries a version (%s)' % v0)

    # Add an item (RFC 6121 2.3): result, and a push to every interested
    # resource, the one that asked included.
    r = await setq(a1, "<item jid='%s' name='Bob'><group>Friends</group>"
                   "<group>Work</group></item>" % bob_jid)
    xt.is_(r['type'] if r else None, 'result', 'adding bob is answered with a result')
    want = {bob_jid: ('none', None, 'Bob', ['Friends', 'Work'])}
    p1 = await push_for(a1, bob_jid)
    push_is(p1, srv.jid('alice'), want, 'the resource that added bob gets the push, from alice\'s '
            'bare JID, with only bob\'s item')
    p2 = await push_for(a2, bob_jid)
    push_is(p2, srv.jid('alice'), want, 'the second resource that requested the roster gets it too')
    xt.ok(ver_of(p2) and ver_of(p2) != v0, 'the push carries a new version')
    p3 = await push_for(a3, bob_jid, timeout=1.5)
    xt.ok(p3 is None, 'a resource that never requested the roster gets no push')
    r = await get(a2)
    xt.is_(items(r), want, 'a roster get returns the item with name and groups')
    v1 = ver_of(r)
    xt.is_(v1, ver_of(p2), 'the roster version is the last push\'s')

    # Update: name and groups are replaced, the subscription kept.
    r = await setq(a1, "<item jid='%s' name='Robert' subscription='both' ask='subscribe' "
                   "approved='true'><group>Family</group></item>" % bob_jid)
    xt.is_(r['type'] if r else None, 'result', 'updating bob is answered with a result')
    p = await push_for(a2, bob_jid)
    push_is(p, srv.jid('alice'), {bob_jid: ('none', None, 'Robert', ['Family'])},
            'the update is pushed; subscription, ask and approved from a set are ignored')

    # RFC 6120 10.1: a stream's stanzas are handled in order, also while
    # the store completes late (XMPPD_TEST_STORE_DELAY_MS): a get sent in
    # the same write as a set sees the set, and the answers keep the
    # order (the push, the set's result: RFC 6121 2.3.2; then the get's).
    # On bob's roster: alice's versions stay as the checks below expect.
    rb = await xt.Raw.open(srv)
    await rb.login('bob', 'bob-pw', 'order')
    rb.set_mark()
    await rb.send("<iq type='get' id='ord-first'><query xmlns='%s'/></iq>" % NS_R)
    xt.ok(await rb.read_until(r"<iq\b[^>]*\bid=['\"]ord-first['\"]"),
          'bob asks for his roster (he is then an interested resource)')
    rb.set_mark()
    await rb.send("<iq type='set' id='ord-set'><query xmlns='%s'><item jid='%s' name='Dave'/>"
                  "</query></iq><iq type='get' id='ord-get'><query xmlns='%s'/></iq>"
                  % (NS_R, dave_jid, NS_R))
    got = await rb.read_until(r"<iq\b[^>]*\bid=['\"]ord-get['\"][^>]*?(?:/>|>.*?</iq>)", 10)
    seen = rb.since_mark()
    where = [m.start() if m else None for m in (
        re.search(r"<iq\b[^>]*\bid=['\"]roster-push-", seen),
        re.search(r"<iq\b[^>]*\bid=['\"]ord-set['\"]", seen),
        re.search(r"<iq\b[^>]*\bid=['\"]ord-get['\"]", seen))]
    xt.ok(None not in where and where == sorted(where),
          'set and get in one write: the push, the set\'s result, then the get\'s result, in '
          'that order (%s)' % where) or xt.diag(seen)
    el = xt.ET.fromstring(got.group(0)) if got else None
    q = el.find('{%s}query' % NS_R) if el is not None else None
    xt.is_([(i.get('jid'), i.get('name')) for i in q.findall('{%s}item' % NS_R)]
           if q is not None else None, [(dave_jid, 'Dave')],
           'and the get lists the item the set added')
    rb.close()

    # Error cases (RFC 6121 2.3.3) and limits.
    r = await a1.iq('set', None, "<query xmlns='%s'/>" % NS_R)
    xt.is_(cond(r), 'bad-request', 'a set with no item: bad-request')
    r = await a1.iq('get', None, "<roster xmlns='%s'/>" % NS_R)
    xt.is_(cond(r), 'bad-request', 'a payload other than <query/>: bad-request')
    r = await setq(a1, "<group>loose</group>")
    xt.is_(cond(r), 'bad-request', 'a set whose child is not an item: bad-request')
    r = await setq(a1, "<item jid='%s'/><item jid='%s'/>" % (carol_jid, dave_jid))
    xt.is_(cond(r), 'bad-request', 'two items in one set: bad-request')
    r = await setq(a1, "<item jid='%s'><group>G</group><group>G</group></item>" % carol_jid)
    xt.is_(cond(r), 'bad-request', 'a group given twice: bad-request')
    r = await setq(a1, "<item jid='%s'><group></group></item>" % carol_jid)
    xt.is_(cond(r), 'not-acceptable', 'an empty group: not-acceptable')
    r = await setq(a1, "<item jid='%s'><group>%s</group></item>" % (carol_jid, 'g' * 21))
    xt.is_(cond(r), 'not-acceptable', 'a group longer than max_group_length: not-acceptable')
    r = await setq(a1, "<item jid='%s' name='%s'/>" % (carol_jid, 'n' * 41))
    xt.is_(cond(r), 'not-acceptable', 'a name longer than max_name_length: not-acceptable')
    r = await setq(a1, "<item jid='%s'>%s</item>" % (
        carol_jid, ''.join('<group>g%d</group>' % i for i in range(4))))
    xt.is_(cond(r), 'not-acceptable', 'more groups than max_groups: not-acceptable')
    r = await setq(a1, "<item name='nobody'/>")
    xt.is_(cond(r), 'bad-request', 'an item without jid: bad-request')
    r = await setq(a1, "<item jid='a@b@c'/>")
    xt.is_(cond(r), 'jid-malformed', 'an invalid jid: jid-malformed')
    r = await setq(a1, "<item jid='%s/res'/>" % carol_jid)
    xt.is_(cond(r), 'bad-request', 'a full JID as item: bad-request')
    r = await setq(a1, "<item jid='%s@example.net'/>" % ('x' * 600))
    xt.is_(cond(r), 'not-acceptable', 'a JID too long to store: not-acceptable')
    r = await setq(a1, "<item jid='%s' subscription='remove'/>" % carol_jid)
    xt.is_(cond(r), 'item-not-found', 'removing an item not in the roster: item-not-found')
    r = await get(a1, to=bob_jid)
    xt.is_(cond(r), 'service-unavailable', 'reading another user\'s roster: service-unavailable')
    r = await setq(a1, "<item jid='%s'/>" % carol_jid, to=bob_jid)
    xt.is_(cond(r), 'forbidden', 'changing another user\'s roster: forbidden')
    r = await get(a1)
    xt.is_(sorted(items(r) or {}), [bob_jid], 'none of the refused sets changed the roster')
    for i in range(5):
        r = await setq(a1, "<item jid='filler%d@example.net'/>" % i)
        xt.is_(r['type'] if r else None, 'result', 'item %d of max_items 6 is accepted'
                   % (i + 2))
    r = await setq(a1, "<item jid='one-too-many@example.net'/>")
    xt.is_(cond(r), 'resource-constraint', 'the 7th item (max_items 6): resource-constraint')

    # Removal (RFC 6121 2.5) is pushed as subscription='remove'.
    for i in range(5):
        await setq(a1, "<item jid='filler%d@example.net' subscription='remove'/>" % i)
    r = await get(a1)
    xt.is_(sorted(items(r) or {}), [bob_jid], 'the removed items are gone')
    p = await a2.pushes.get(lambda iq: (items(iq) or {}).get('filler4@example.net', ('',))[0]
                            == 'remove')
    push_is(p, srv.jid('alice'), {'filler4@example.net': ('remove', None, None, [])},
            'a removal is pushed with subscription=remove (RFC 6121 2.5.2)')

    # XEP-0237: nothing changed -> an empty result; an older version -> an
    # empty result, then pushes of what changed, in order, to that resource.
    cur = ver_of(r)
    r = await get(a1, ver=cur)
    xt.is_(r['type'] if r else None, 'result', 'a get with the current version: result')
    xt.ok(r is not None and r.xml.find('{%s}query' % NS_R) is None,
          'and it is empty (no query, no items)')
    for c in (a1, a2):
        while await c.pushes.get(timeout=0.3) is not None:
            pass
    r = await get(a1, ver=v1)
    xt.ok(r is not None and r['type'] == 'result' and r.xml.find('{%s}query' % NS_R) is None,
          'a get with an older version: an empty result')
    got, shapes = [], []
    while True:
        p = await a1.pushes.get(timeout=1.5)
        if p is None:
            break
        shapes.append((p['type'], p.xml.get('from'), len(items(p) or {})))
        got.append((list(items(p).items())[0], ver_of(p)))
    xt.ok(shapes and all(sh == ('set', srv.jid('alice'), 1) for sh in shapes),
          'each is a set from alice\'s bare JID with one item (%s)' % shapes)
    changed = [g[0] for g in got]
    xt.is_(changed[0] if changed else None, (bob_jid, ('none', None, 'Robert', ['Family'])),
           'the first push since that version is the update of bob')
    xt.is_(sorted(j for j, s in changed[1:]), ['filler%d@example.net' % i for i in range(5)],
           'then the five removals')
    xt.ok(all(s[0] == 'remove' for j, s in changed[1:]), 'pushed as subscription=remove')
    xt.is_(got[-1][1] if got else None, cur, 'the last push carries the current version')
    vs = [g[1] for g in got]
    xt.ok(len(set(vs)) == len(vs), 'every push carries its own version')
    p = await a2.pushes.get(timeout=1)
    xt.ok(p is None, 'the other resource gets none of those pushes')
    r = await get(a1, ver='not-a-version')
    xt.is_(sorted(items(r) or {}), [bob_jid], 'an unknown version gets the full roster')
    r = await get(a1, ver='')
    xt.is_(sorted(items(r) or {}), [bob_jid], 'an empty version gets the full roster')
    xt.is_(ver_of(r), cur, 'with the current version')

    # xmppctl roster list / add / remove.
    code, out, err = await srv.actl('roster', 'list', 'alice', srv.host)
    xt.is_(code, 0, 'xmppctl roster list exits 0')
    xt.is_(out, '%s\tnone\t\tRobert\tFamily\n' % bob_jid, 'and lists bob as stored')
    c1 = await client(srv, 'carol', 'c')
    code, out, err = await srv.actl('roster', 'add', 'alice', srv.host, carol_jid,
                                    'Carol', 'Colleagues')
    xt.is_(code, 0, 'xmppctl roster add exits 0') or xt.diag(out, err)
    p = await push_for(a1, carol_jid)
    push_is(p, srv.jid('alice'), {carol_jid: ('both', None, 'Carol', ['Colleagues'])},
            'alice\'s online resource gets the push (subscription both)')
    p = await push_for(c1, srv.jid('alice'))
    push_is(p, carol_jid, {srv.jid('alice'): ('both', None, None, [])},
            'carol, a local account, gets the mirror item, both')
    pr = await c1.presence(frm=a1.jid)
    xt.ok(pr is not None, 'and carol gets alice\'s presence right away')
    code, out, err = await srv.actl('roster', 'list', 'carol', srv.host)
    xt.is_(out, '%s\tboth\t\t\n' % srv.jid('alice'), 'xmppctl roster list carol shows alice')
    code, out, err = await srv.actl('roster', 'remove', 'alice', srv.host, carol_jid)
    xt.is_(code, 0, 'xmppctl roster remove exits 0')
    p = await push_for(a1, carol_jid)
    push_is(p, srv.jid('alice'), {carol_jid: ('remove', None, None, [])},
            'the removal is pushed to alice: subscription=remove, no name or groups '
            '(RFC 6121 2.5.2)')
    p = await push_for(c1, srv.jid('alice'))
    push_is(p, carol_jid, {srv.jid('alice'): ('to', None, None, [])},
            'carol\'s item for alice first loses from (alice\'s unsubscribe)')
    p = await push_for(c1, srv.jid('alice'))
    push_is(p, carol_jid, {srv.jid('alice'): ('none', None, None, [])},
            'carol\'s item for alice drops to none (unsubscribe + unsubscribed, RFC 6121 2.5.2)')
    code, out, err = await srv.actl('roster', 'remove', 'alice', srv.host, carol_jid)
    xt.is_(code, 1, 'removing it again exits 1')
    xt.like(err, 'not in the roster', 'saying it is not in the roster')
    code, out, err = await srv.actl('roster', 'list', 'nosuchuser', srv.host)
    xt.is_(code, 1, 'xmppctl roster list for an unknown account exits 1')
    code, out, err = await srv.actl('roster', 'add', 'alice', 'elsewhere.test', carol_jid)
    xt.is_(code, 1, 'xmppctl roster add on a host not served exits 1')
    code, out, err = await srv.actl('roster', 'frobnicate')
    xt.ok(code not in (0, None), 'a bad xmppctl roster subcommand fails') or xt.diag(out, err)
    xt.like(err, 'roster list', 'with the usage')

    # Persistence: the roster survives a restart.
    r = await get(a1)
    cur = ver_of(r)
    await xt.disconnect_all(a1, a2, a3, c1)
    code = await srv.astop()
    xt.is_(code, 0, 'xmppd stops cleanly')
    srv.start()
    a1 = await client(srv, 'alice', 'again')
    r = await get(a1)
    xt.is_(items(r), {bob_jid: ('none', None, 'Robert', ['Family'])},
           'after a restart the roster is still there')
    xt.is_(ver_of(r), cur, 'with the same version')
    r = await get(a1, ver=cur)
    xt.ok(r is not None and r['type'] == 'result' and r.xml.find('{%s}query' % NS_R) is None,
          'and a get with that version is still an empty result')

    # More tombstones than max_items: they are dropped, and a version from
    # before that gets the full roster instead of pushes.
    for i in range(3):
        await setq(a1, "<item jid='gone%d@example.net'/>" % i)
        await setq(a1, "<item jid='gone%d@example.net' subscription='remove'/>" % i)
    r = await get(a1, ver=cur)
    xt.is_(items(r), {bob_jid: ('none', None, 'Robert', ['Family'])},
           'once the tombstones are purged, an old version gets the full roster')
    new = ver_of(r)
    xt.ok(new and new != cur, 'with the new version')
    r = await get(a1, ver=new)
    xt.ok(r is not None and r['type'] == 'result' and r.xml.find('{%s}query' % NS_R) is None,
          'and that version gets an empty result')

    # The roster goes with the account (XEP-0077 3.2, remove_user): its
    # items and version counter, the requests still pending (RFC 6121
    # 3.1.3) and the last presence kept for probes (4.3.2). dave and alice
    # are subscribed both ways, carol asks dave for a subscription, dave
    # goes unavailable once (so his last presence is stored) and is
    # available again when his account is removed: his session then ends
    # after remove_user ran.
    code, out, err = await srv.actl('roster', 'add', 'dave', srv.host, srv.jid('alice'))
    xt.is_(code, 0, 'dave and alice subscribed both ways')
    p = await push_for(a1, dave_jid)
    push_is(p, srv.jid('alice'), {dave_jid: ('both', None, None, [])},
            'alice gets the push of her item for dave, both')
    d1 = await client(srv, 'dave', 'd')
    c2 = await client(srv, 'carol', 'c2')
    c2.send_raw("<presence to='%s' type='subscribe'/>" % dave_jid)
    p = await push_for(c2, dave_jid)
    push_is(p, carol_jid, {dave_jid: ('none', 'subscribe', None, [])},
            'carol\'s request makes her an item for dave, none + ask (RFC 6121 3.1.2)')
    pr = await d1.presence(pred=lambda x: x['type'] == 'subscribe', frm=carol_jid)
    xt.ok(pr is not None, 'dave gets carol\'s request')
    d1.xmpp.send_presence(ptype='unavailable', pstatus='away for now')
    d1.xmpp.send_presence()
    await get(d1)
    rows = xt.user_rows(srv, 'dave')
    xt.is_({t: sorted(xt.key_parts(k) for k in v) for t, v in rows.items()},
           {'accounts': [()], 'mod_roster': [('',), (srv.jid('alice'),)],
            'mod_roster_last': [()], 'mod_roster_pending': [(carol_jid,)]},
           'before the removal the spool holds dave\'s account, roster version and item for '
           'alice, last presence and carol\'s pending request')
    code, out, err = await srv.actl('unregister', 'dave', srv.host)
    xt.is_(code, 0, 'dave\'s account is removed (while he is online)')
    xt.ok(await d1.wait_closed(5), 'his session is closed')
    await srv.wait_connected(lambda s: not any(x['jid'].startswith(dave_jid) for x in s))
    # XEP-0077 3.2: the server SHOULD cancel the subscriptions stored in
    # the removed user's roster; as in ejabberd (mod_roster:remove_user
    # sends unsubscribe / unsubscribed to the contacts) and Prosody
    # (mod_roster's user-deleted handler fires roster-item-removed for
    # each item and pending request), the contacts are told as if dave had
    # removed every item (RFC 6121 2.5.2) and their own items for him
    # stay, at none: their rosters are theirs (RFC 6121 2.5 lets only the
    # user remove an item).
    p = await push_for(a1, dave_jid)
    push_is(p, srv.jid('alice'), {dave_jid: ('to', None, None, [])},
            'alice\'s item for dave first loses from (dave\'s unsubscribe, RFC 6121 3.3.3)')
    p = await push_for(a1, dave_jid)
    push_is(p, srv.jid('alice'), {dave_jid: ('none', None, None, [])},
            'then drops to none (dave\'s unsubscribed, RFC 6121 3.2.3)')
    p = await push_for(c2, dave_jid)
    push_is(p, carol_jid, {dave_jid: ('none', None, None, [])},
            'carol\'s request is refused: her item for dave loses its ask (RFC 6121 3.2.3)')
    # Seen in the spool by mdb_dump, before the name is registered again.
    xt.is_(xt.user_rows(srv, 'dave'), {},
           'after the removal and the end of his session no row of dave is left in any table')
    xt.ok((dave_jid,) in [xt.key_parts(k) for k in
                          xt.user_rows(srv, 'alice').get('mod_roster', [])],
          'alice\'s own item for dave stays in her roster')
    await xt.disconnect_all(c2)
    srv.register('dave', 'dave-pw')
    code, out, err = await srv.actl('roster', 'list', 'dave', srv.host)
    xt.is_((code, out), (0, ''), 'a re-created dave starts with an empty roster')

    await xt.disconnect_all(a1)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
