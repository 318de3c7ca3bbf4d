#!/usr/bin/python3
"""t1650-omemo: what OMEMO (XEP-0384) needs of PEP, between two users who
are not contacts of each other: each publishes a device list and key
bundles with access model open (bundles of urn:xmpp:omemo:2 in one node
with max_items=max, one item per device), and the other fetches them.
Both the current namespace and the eu.siacs.conversations.axolotl one
that deployed clients still use."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_OMEMO = 'urn:xmpp:omemo:2'
NS_AXOLOTL = 'eu.siacs.conversations.axolotl'


def publish_q(node, item_id, payload, options=()):
    opts = ''
    if options:
        fields = ''.join("<field var='%s'><value>%s</value></field>" % kv for kv in options)
        opts = ("<publish-options><x xmlns='jabber:x:data' type='submit'>"
                "<field var='FORM_TYPE' type='hidden'><value>"
                "http://jabber.org/protocol/pubsub#publish-options</value></field>%s"
                "</x></publish-options>" % fields)
    return ("<pubsub xmlns='%s'><publish node='%s'><item id='%s'>%s</item></publish>%s"
            "</pubsub>" % (NS_PUBSUB, node, item_id, payload, opts))


def items_q(node, item_id=None):
    inner = "<item id='%s'/>" % item_id if item_id else ''
    return "<pubsub xmlns='%s'><items node='%s'>%s</items></pubsub>" % (NS_PUBSUB, node, inner)


def items_of(r):
    if r is None or r['type'] != 'result':
        return None
    items = r.xml.find('{%s}pubsub/{%s}items' % (NS_PUBSUB, NS_PUBSUB))
    return [] if items is None else [
        (i.get('id'), list(i)[0] if len(i) else None)
        for i in items.findall('{%s}item' % NS_PUBSUB)]


def bundle(ns, device, spk):
    if ns == NS_OMEMO:
        return ("<bundle xmlns='%s'><spk id='1'>%s</spk><spks>c2ln</spks><ik>aWs=</ik>"
                "<prekeys><pk id='1'>cGsx</pk><pk id='2'>cGsy</pk></prekeys></bundle>"
                % (ns, spk))
    return ("<bundle xmlns='%s'><signedPreKeyPublic signedPreKeyId='1'>%s"
            "</signedPreKeyPublic><signedPreKeySignature>c2ln</signedPreKeySignature>"
            "<identityKey>aWs=</identityKey><prekeys><preKeyPublic preKeyId='1'>cGsx"
            "</preKeyPublic></prekeys></bundle>" % (ns, spk))


OPEN = [('pubsub#access_model', 'open')]
OPEN_MAX = [('pubsub#access_model', 'open'), ('pubsub#max_items', 'max')]


async def main():
    # mod_pubsub without options: a service for every host, PEP on all.
    srv = xt.Server(workers=2, hosts=('xmppd.test', 'second.test'),
                    modules={'mod_disco': {}, 'mod_roster': {}, 'mod_caps': {},
                             'mod_pubsub': {}})
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='phone')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='laptop')
    ajid, bjid = srv.jid('alice'), srv.jid('bob')

    for svc in ('pubsub.xmppd.test', 'pubsub.second.test'):
        r = await alice.iq('get', svc, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        ids = [(i.get('category'), i.get('type')) for i in r.xml.iter(
            '{http://jabber.org/protocol/disco#info}identity')] if r is not None else []
        xt.ok(('pubsub', 'service') in ids, '%s answers as a pubsub service (the default '
              'hosts: every host of the configuration)' % svc) or xt.diag(str(r))

    r = await bob.iq('get', None, "<query xmlns='jabber:iq:roster'/>")
    xt.ok(r is not None and r['type'] == 'result' and len(r.xml.find(
        '{jabber:iq:roster}query')) == 0, 'bob has nobody in his roster (not contacts)')

    # -- urn:xmpp:omemo:2 ------------------------------------------------------
    for c, jid, dev in ((alice, ajid, '1001'), (bob, bjid, '2002')):
        r = await c.iq('set', jid, publish_q(NS_OMEMO + ':devices', 'current',
                                             "<devices xmlns='%s'><device id='%s'/></devices>"
                                             % (NS_OMEMO, dev), OPEN))
        xt.is_(r and r['type'], 'result', '%s publishes a device list (access open)'
               % jid.split('@')[0]) or xt.diag(str(r))
    for dev, spk in (('1001', 'c3BrMQ=='), ('1003', 'c3BrMw==')):
        r = await alice.iq('set', ajid, publish_q(NS_OMEMO + ':bundles', dev,
                                                  bundle(NS_OMEMO, dev, spk), OPEN_MAX))
        xt.is_(r and r['type'], 'result', 'alice publishes the bundle of device %s '
               '(max_items=max, open)' % dev) or xt.diag(str(r))

    got = items_of(await bob.iq('get', ajid, items_q(NS_OMEMO + ':devices')))
    devs = [d.get('id') for _, p in (got or []) if p is not None for d in p]
    xt.is_(devs, ['1001'], 'bob, not her contact, fetches alice\'s device list')
    got = items_of(await bob.iq('get', ajid, items_q(NS_OMEMO + ':bundles', '1001')))
    spk = got[0][1].findtext('{%s}spk' % NS_OMEMO) if got else None
    xt.is_(spk, 'c3BrMQ==', 'and the bundle of device 1001 by its item id')
    got = items_of(await bob.iq('get', ajid, items_q(NS_OMEMO + ':bundles')))
    xt.is_(sorted(i for i, _ in (got or [])), ['1001', '1003'],
           'both bundles are kept in the one node (max_items=max)')
    got = items_of(await alice.iq('get', bjid, items_q(NS_OMEMO + ':devices')))
    devs = [d.get('id') for _, p in (got or []) if p is not None for d in p]
    xt.is_(devs, ['2002'], 'and alice fetches bob\'s')

    r = await bob.iq('set', ajid, publish_q(NS_OMEMO + ':devices', 'current',
                                            "<devices xmlns='%s'><device id='666'/></devices>"
                                            % NS_OMEMO))
    xt.is_(r['error']['condition'] if r is not None and r['type'] == 'error' else None,
           'forbidden', 'bob cannot publish into alice\'s node (XEP-0060 7.1.3.1)')

    # -- eu.siacs.conversations.axolotl (OMEMO 0.3) ----------------------------
    r = await alice.iq('set', ajid, publish_q(NS_AXOLOTL + '.devicelist', 'current',
                                              "<list xmlns='%s'><device id='31'/></list>"
                                              % NS_AXOLOTL, OPEN))
    xt.is_(r and r['type'], 'result', 'alice publishes a legacy device list')
    r = await alice.iq('set', ajid, publish_q(NS_AXOLOTL + '.bundles:31', 'current',
                                              bundle(NS_AXOLOTL, '31', 'bGVn'), OPEN))
    xt.is_(r and r['type'], 'result', 'and the legacy bundle node of device 31')
    got = items_of(await bob.iq('get', ajid, items_q(NS_AXOLOTL + '.devicelist')))
    devs = [d.get('id') for _, p in (got or []) if p is not None for d in p]
    xt.is_(devs, ['31'], 'bob fetches the legacy list')
    got = items_of(await bob.iq('get', ajid, items_q(NS_AXOLOTL + '.bundles:31')))
    spk = got[0][1].findtext('{%s}signedPreKeyPublic' % NS_AXOLOTL) if got else None
    xt.is_(spk, 'bGVn', 'and the legacy bundle')

    await xt.disconnect_all(alice, bob)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
