#!/usr/bin/python3
"""t1630-pep: mod_pubsub's PEP front end (XEP-0163) on accounts' bare JIDs.

Checked: the account's disco#info has identity pubsub/pep and the PEP
features (6.1); the first publish makes the node with the publish-options
as configuration (auto-create, 3), the account's other resources get the
event; access model presence by default (a contact with a subscription
may retrieve, a stranger gets presence-subscription-required); only the
account publishes; explicit subscribers are notified; a contact whose
caps (verified by mod_caps) ask for NODE+notify gets the last item when
its resource comes online and later events without subscribing (4.3);
max_pep_nodes limits auto-create and create; items survive a restart;
removing the account removes its nodes."""

import asyncio
import base64
import hashlib
import os
import sys

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

HOST = 'xmppd.test'
NS = 'http://jabber.org/protocol/pubsub'
EVENT = NS + '#event'
ERRS = NS + '#errors'
XDATA = 'jabber:x:data'
INFO = 'http://jabber.org/protocol/disco#info'
NS_CAPS = 'http://jabber.org/protocol/caps'
PROBE = 'urn:xmppd:test:entity'
MOOD = 'urn:t:mood'
CNODE = 'https://xmppd.test/client'
FEATURES = [INFO, NS_CAPS, MOOD + '+notify']
IDENTITY = ('client', 'pc', '', 'Test client')


def ver_of(identities, features):
    s = ''.join(i + '<' for i in sorted('/'.join(x) for x in identities))
    s += ''.join(f + '<' for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


VER = ver_of([IDENTITY], FEATURES)


def answer_caps(c):
    """Answers the server's disco#info for our caps (XEP-0115 6.2)."""
    def handle(iq):
        if iq['type'] != 'get':
            return
        node = iq.xml.find('{%s}query' % INFO).get('node') or ''
        body = "<query xmlns='%s' node='%s'><identity category='%s' type='%s' name='%s'/>%s" \
               "</query>" % (INFO, node, IDENTITY[0], IDENTITY[1], IDENTITY[3],
                             ''.join("<feature var='%s'/>" % f for f in FEATURES))
        c.xmpp.send_raw("<iq type='result' id='%s' to='%s'>%s</iq>" % (
            iq['id'], iq['from'].full, body))
    c.xmpp.register_handler(Callback('caps-info', MatchXPath(
        '{jabber:client}iq/{%s}query' % INFO), handle))


def q(tag, ns=None):
    return '{%s}%s' % (ns or NS, tag)


def err(r):
    if r is None:
        return 'timeout'
    if r['type'] != 'error':
        return r['type']
    e = r.xml.find('{jabber:client}error')
    cond = app = None
    for c in (e if e is not None else []):
        if c.tag.startswith('{urn:ietf:params:xml:ns:xmpp-stanzas}') and \
                not c.tag.endswith('}text'):
            cond = c.tag.split('}')[1]
        if c.tag.startswith('{%s}' % ERRS):
            app = c.tag.split('}')[1]
    return (cond, app)


async def ps(c, to, itype, inner):
    return await c.iq(itype, to, "<pubsub xmlns='%s'>%s</pubsub>" % (NS, inner))


def publish_xml(item_id, text, access=None):
    po = ''
    if access:
        po = ("<publish-options><x xmlns='%s' type='submit'><field var='FORM_TYPE' "
              "type='hidden'><value>%s#publish-options</value></field><field "
              "var='pubsub#access_model'><value>%s</value></field></x></publish-options>"
              % (XDATA, NS, access))
    return ("<publish node='%s'><item id='%s'><mood xmlns='%s'>%s</mood></item></publish>%s"
            % (MOOD, item_id, MOOD, text, po))


def item_ids(r):
    if r is None or r['type'] != 'result':
        return None
    return [i.get('id') for i in r.xml.findall('%s/%s/%s' % (q('pubsub'), q('items'),
                                                              q('item')))]


def ev_item(m):
    e = None if m is None else m.xml.find('%s/%s/%s' % (q('event', EVENT), q('items', EVENT),
                                                      q('item', EVENT)))
    return None if e is None else e.get('id')


async def event(c, timeout=3):
    return await c.message(lambda m: m.xml.find(q('event', EVENT)) is not None,
                           timeout=timeout)


async def main():
    moddir = xt.scratch_dir('t1630-build') / 'modules'
    moddir.mkdir()
    xt.build_test_module(moddir, 'mod_entityprobe')
    for m in ('mod_disco', 'mod_roster', 'mod_caps', 'mod_pubsub'):
        os.symlink(os.path.join(xt.MODULE_DIR, m + '.so'), str(moddir / (m + '.so')))
    srv = xt.Server(workers=2, conf={'module_dir': str(moddir)}, modules={
        'mod_disco': {}, 'mod_roster': {}, 'mod_caps': {}, 'mod_entityprobe': {},
        'mod_pubsub': {'hosts': [HOST], 'node_idle_timeout': 1, 'max_pep_nodes': 3}})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    rc, _, _ = srv.ctl('roster', 'add', 'alice', HOST, 'bob@' + HOST)
    xt.is_(rc, 0, 'alice and bob share presence (xmppctl roster add)')
    alice = await xt.login_ok(srv, 'alice', resource='one')
    alice2 = await xt.login_ok(srv, 'alice', resource='two')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    ab = 'alice@' + HOST

    # -- disco (6.1) -------------------------------------------------------
    r = await alice.iq('get', ab, "<query xmlns='%s'/>" % INFO)
    ids = [(i.get('category'), i.get('type')) for i in r.xml.iter('{%s}identity' % INFO)] \
        if r else []
    feats = [f.get('var') for f in r.xml.iter('{%s}feature' % INFO)] if r else []
    xt.ok(('pubsub', 'pep') in ids and ('account', 'registered') in ids,
          "the account's disco#info: identities account/registered and pubsub/pep")
    xt.ok(NS + '#publish' in feats and NS + '#auto-create' in feats,
          'and the PEP features (publish, auto-create)')
    xt.ok(NS + '#subscription-options' in feats, 'and subscription-options')

    # -- auto-create on publish (3) ---------------------------------------
    r = await ps(alice, ab, 'set', publish_xml('m1', 'happy', access='presence'))
    xt.is_(err(r), 'result', 'the first publish makes the node')
    xt.is_(ev_item(await event(alice2)), 'm1', "the account's other resource gets the event")
    r = await alice.iq('get', None, "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS, MOOD))
    xt.is_(item_ids(r), ['m1'], "an IQ without 'to' is the account's own (RFC 6120 10.3.3)")
    xt.is_(err(await ps(carol, ab, 'set', publish_xml('c1', 'evil'))), ('forbidden', None),
           "another user publishing to the account's node: forbidden")
    xt.is_(err(await ps(carol, ab, 'get', "<items node='%s'/>" % MOOD)),
           ('not-authorized', 'presence-subscription-required'),
           'a stranger (presence access): presence-subscription-required')
    xt.is_(err(await ps(carol, ab, 'get', "<items node='urn:t:none'/>")),
           ('item-not-found', None), 'a node the account does not have: item-not-found')

    # -- a contact with caps asking for NODE+notify (4.3) -----------------
    bob = xt.Client(srv, 'bob', 'bob-pw', resource='pc', presence=False)
    answer_caps(bob)
    await bob.connect()
    bob.xmpp.send_raw("<presence><c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>"
                      % (NS_CAPS, CNODE, VER))
    xt.is_(ev_item(await event(bob, timeout=5)), 'm1',
           'bob (both, caps with +notify) comes online: the last item')
    xt.is_(item_ids(await ps(bob, ab, 'get', "<items node='%s'/>" % MOOD)), ['m1'],
           'and may retrieve the items')
    # carol, a stranger, sends alice directed presence with the same caps:
    # she is not allowed alice's presence, so she gets nothing.
    carol.xmpp.send_raw("<presence to='%s'><c xmlns='%s' hash='sha-1' node='%s' ver='%s'/>"
                        "</presence>" % (ab, NS_CAPS, CNODE, VER))
    xt.ok(await event(carol, timeout=0.7) is None,
          'a stranger with +notify caps sending directed presence: no last item')
    r = await ps(alice, ab, 'set', publish_xml('m2', 'sad'))
    xt.is_(err(r), 'result', 'alice publishes again')
    xt.is_(ev_item(await event(bob)), 'm2', 'bob gets it without a subscription (+notify)')
    xt.ok(await event(carol, timeout=0.5) is None,
          'carol (+notify caps, no presence subscription) does not')

    # -- alice revokes bob's subscription to her presence (RFC 6121 3.2) -----
    alice.xmpp.send_raw("<presence to='bob@%s' type='unsubscribed'/>" % HOST)
    r = await ps(alice, ab, 'set', publish_xml('m2b', 'alone'))
    xt.is_(err(r), 'result', 'alice sends bob unsubscribed, then publishes')
    xt.ok(await event(bob, timeout=0.7) is None,
          'bob (+notify caps, no longer allowed her presence) is not notified (4.3.1)')
    # Shared again; bob's resource comes again and is known again.
    rc, _, _ = srv.ctl('roster', 'add', 'alice', HOST, 'bob@' + HOST)
    bob.xmpp.send_raw("<presence><c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>"
                      % (NS_CAPS, CNODE, VER))
    xt.is_((rc, ev_item(await event(bob, timeout=5))), (0, 'm2b'),
           'presence shared again: bob gets the last item when he sends presence')

    # -- explicit subscription ---------------------------------------------
    rc, _, _ = srv.ctl('roster', 'add', 'alice', HOST, 'carol@' + HOST)
    r = await ps(carol, ab, 'set', "<subscribe node='%s' jid='%s'/>" % (MOOD, 'carol@' + HOST))
    s = r.xml.find('%s/%s' % (q('pubsub'), q('subscription'))) if r is not None and \
        r['type'] == 'result' else None
    xt.is_(None if s is None else s.get('subscription'), 'subscribed',
           'carol (now a contact) subscribes')
    await event(carol, timeout=1)      # the last item, on subscription
    await ps(alice, ab, 'set', publish_xml('m3', 'calm'))
    xt.is_(ev_item(await event(carol)), 'm3', 'a subscriber is notified')
    xt.is_(ev_item(await event(bob)), 'm3', 'and bob by his caps')
    r = await ps(bob, ab, 'set', "<subscribe node='%s' jid='%s'/>" % (MOOD, 'bob@' + HOST))
    await event(bob, timeout=1)        # the last item, on subscription
    await ps(alice, ab, 'set', publish_xml('m4', 'ok'))
    first = ev_item(await event(bob))
    xt.is_((first, await event(bob, timeout=0.6)), ('m4', None),
           'bob subscribed and asking by caps: one event, not two')

    # -- max_pep_nodes 3: auto-create and create are limited --------------
    cb = 'carol@' + HOST
    got = [err(await ps(carol, cb, 'set', "<publish node='urn:t:p%d'><item id='x'>"
                        "<p xmlns='urn:t:p'/></item></publish>" % i)) for i in range(4)]
    xt.is_(got, ['result'] * 3 + [('not-allowed', 'max-nodes-exceeded')],
           'the fourth auto-created node (max_pep_nodes 3): not-allowed, max-nodes-exceeded')
    xt.is_(err(await ps(carol, cb, 'set', "<create node='urn:t:p5'/>")),
           ('not-allowed', 'max-nodes-exceeded'), 'and a create: max-nodes-exceeded')
    xt.is_(err(await ps(carol, cb, 'set', "<publish node='urn:t:p0'><item id='y'>"
                        "<p xmlns='urn:t:p'/></item></publish>")), 'result',
           'a publish to an existing node still works')
    # -- a module, through xmppd_pubsub_request (XEP-0402-like) -------------
    r = await carol.iq('get', HOST, "<pubsub xmlns='%s' service='%s' set='1'><pubsub xmlns='%s'>"
                       "<publish node='urn:t:books'><item id='b1'><b xmlns='urn:t:books'/></item>"
                       "</publish></pubsub></pubsub>" % (PROBE, ab, NS))
    p = r.xml.find('{%s}pubsub' % PROBE) if r is not None and r['type'] == 'result' else None
    xt.is_(None if p is None else p.get('condition'), 'none',
           "a module publishes to an account's PEP node as the server")
    r = await ps(alice, ab, 'get', "<items node='urn:t:books'/>")
    xt.is_(item_ids(r), ['b1'], 'the account sees the item (the node was made by the publish)')

    # -- restart ----------------------------------------------------------
    await xt.disconnect_all(alice, alice2, bob, carol)
    xt.is_(await srv.astop(), 0, 'xmppd stops')
    srv.start()
    bob = await xt.login_ok(srv, 'bob', resource='pc2')
    xt.is_(item_ids(await ps(bob, ab, 'get', "<items node='%s'/>" % MOOD)), ['m4', 'm3', 'm2b', 'm2', 'm1'],
           'after a restart: the items')

    rc, out, _ = srv.ctl('pubsub', 'nodes', ab)
    xt.is_((rc, sorted(out.split())), (0, ['urn:t:books', MOOD]),
           "xmppctl pubsub nodes of an account: its PEP nodes")
    rc, out, _ = srv.ctl('pubsub', 'items', ab, MOOD)
    xt.is_((rc, [ln.split('\t')[0] for ln in out.splitlines()]), (0, ['m1', 'm2', 'm2b', 'm3', 'm4']),
           'xmppctl pubsub items of a PEP node')
    # node_idle_timeout 1: the node leaves memory and is read back.
    await asyncio.sleep(2.2)
    xt.is_(item_ids(await ps(bob, ab, 'get', "<items node='%s'/>" % MOOD)), ['m4', 'm3', 'm2b', 'm2', 'm1'],
           'idle past node_idle_timeout: read back from the store')

    # -- removing the account removes its nodes ----------------------------
    # and its subscriptions to another account's PEP node (bare and full).
    bj = bob.jid.bare
    BN = 'urn:t:bobn'
    alice = await xt.login_ok(srv, 'alice', resource='one')
    r = await ps(bob, bj, 'set', "<publish node='%s'><item id='k1'><k xmlns='urn:t'/></item>"
                 "</publish><publish-options><x xmlns='%s' type='submit'><field var='FORM_TYPE' "
                 "type='hidden'><value>%s#publish-options</value></field><field "
                 "var='pubsub#access_model'><value>open</value></field></x></publish-options>"
                 % (BN, XDATA, NS))
    xt.is_(r['type'] if r is not None else None, 'result', 'bob makes an open PEP node')
    got = []
    for j in (ab, str(alice.jid)):
        r = await ps(alice, bj, 'set', "<subscribe node='%s' jid='%s'/>" % (BN, j))
        got.append(r['type'] if r is not None else None)
    xt.is_(got, ['result'] * 2, "alice subscribes to it (bare and full JID)")

    async def bob_subs():
        r = await bob.iq('get', bj, "<pubsub xmlns='%s#owner'><subscriptions node='%s'/>"
                         "</pubsub>" % (NS, BN))
        if r is None or r['type'] != 'result':
            return err(r)
        return sorted(e.get('jid') for e in r.xml.iter() if e.get('jid') is not None)
    xt.is_(await bob_subs(), sorted([ab, str(alice.jid)]), "bob's node lists her subscriptions")
    rc, _, _ = srv.ctl('unregister', 'alice', HOST)
    xt.is_(rc, 0, 'xmppctl unregister alice')
    subs = None
    for _ in range(50):     # the removal runs after the unregister
        subs = await bob_subs()
        if subs == []:
            break
        await asyncio.sleep(0.1)
    xt.is_(subs, [], "her subscriptions to bob's PEP node are gone with the account")
    srv.register('alice', 'alice-pw')
    alice = await xt.login_ok(srv, 'alice', resource='one')
    xt.is_(err(await ps(alice, ab, 'get', "<items node='%s'/>" % MOOD)),
           ('item-not-found', None), 'registered again: the old node is gone')
    await ps(bob, bj, 'set', "<publish node='%s'><item id='k2'><k xmlns='urn:t'/></item>"
             "</publish>" % BN)
    xt.is_(await event(alice, timeout=1), None, "bob's publish does not reach her")

    await xt.disconnect_all(alice, bob)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')
    srv.teardown()


xt.run(main, timeout=120)
