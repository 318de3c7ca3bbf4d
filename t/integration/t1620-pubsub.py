#!/usr/bin/python3
"""t1620-pubsub: mod_pubsub, the XEP-0060 service on pubsub.xmppd.test.

Raw IQs through slixmpp (the stanzas and error conditions are what is
checked, with their pubsub#errors elements): disco of the service and of
nodes; create (named, instant, with a form), configure, delete with
redirect, purge; publish (given and generated ids), notifications,
retract; publish-options preconditions; items (all, max_items, by id,
RSM pages); subscribe/unsubscribe and their errors, the last item on
subscribe; access models (whitelist, presence, roster, authorize with the
8.6 form and the owner's answer); subscription options (6.3: the form,
submit, pubsub#deliver false stops the events, the errors, subscribe and
configure in one request; 6.4 defaults); owner affiliations and subscriptions;
limits (item size, max_items cap and trimming, nodes per user,
subscriptions per node and per bare JID, the owner's subscriptions and
affiliations sets, the byte budget of one items answer) and the publish
shaper; an item record that does not read back; xmppctl pubsub; a module
through xmppd_pubsub_request (mod_entityprobe); everything surviving a
restart. A last server: subscriptions that an affiliation change or a
new access model (whitelist, presence) no longer allows are removed and
their subscribers told; a node's request queue bounded
(max_queued_requests); an owner's subscriptions set whose batch fails
changing nothing; a removed account's subscriptions, affiliations and
sole-owned nodes gone with it."""

import asyncio
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

HOST = 'xmppd.test'
PS = 'pubsub.' + HOST
NS = 'http://jabber.org/protocol/pubsub'
OWNER = NS + '#owner'
EVENT = NS + '#event'
ERRS = NS + '#errors'
XDATA = 'jabber:x:data'
RSM = 'http://jabber.org/protocol/rsm'
PROBE = 'urn:xmppd:test:entity'


def q(tag, ns=None):
    return '{%s}%s' % (ns or NS, tag)


def err(r):
    """(condition, pubsub#errors element or None) of an IQ error, or the
    outcome for anything else."""
    if r is None:
        return 'timeout'
    if r['type'] != 'error':
        return r['type']
    e = r.xml.find('{jabber:client}error')
    app = cond = None
    if e is not None:
        for c in e:
            # slixmpp does not know every RFC 6120 condition
            # (policy-violation): read it from the XML.
            if c.tag.startswith('{urn:ietf:params:xml:ns:xmpp-stanzas}') and \
                    not c.tag.endswith('}text'):
                cond = c.tag.split('}')[1]
            if c.tag.startswith('{%s}' % ERRS):
                app = c.tag.split('}')[1]
                if c.get('feature'):
                    app += ':' + c.get('feature')
    return (cond, app)


def form(ftype, fields, form_type=NS + '#node_config'):
    x = "<x xmlns='%s' type='%s'>" % (XDATA, ftype)
    x += "<field var='FORM_TYPE' type='hidden'><value>%s</value></field>" % form_type
    for k, v in fields.items():
        x += "<field var='%s'><value>%s</value></field>" % (k, v)
    return x + '</x>'


async def ps(c, itype, inner, ns=NS):
    return await c.iq(itype, PS, "<pubsub xmlns='%s'>%s</pubsub>" % (ns, inner))


async def create(c, node, fields=None):
    conf = '<configure>%s</configure>' % form('submit', fields) if fields else ''
    return await ps(c, 'set', "<create node='%s'/>%s" % (node, conf))


async def publish(c, node, item_id=None, payload="<entry xmlns='urn:t'>x</entry>",
                  options=None):
    idattr = " id='%s'" % item_id if item_id else ''
    po = ('<publish-options>%s</publish-options>'
          % form('submit', options, NS + '#publish-options')) if options else ''
    return await ps(c, 'set', "<publish node='%s'><item%s>%s</item></publish>%s"
                    % (node, idattr, payload, po))


def published_id(r):
    if r is None or r['type'] != 'result':
        return None
    it = r.xml.find('%s/%s/%s' % (q('pubsub'), q('publish'), q('item')))
    return None if it is None else it.get('id')


async def subscribe(c, node, jid=None):
    return await ps(c, 'set', "<subscribe node='%s' jid='%s'/>" % (node, jid or c.jid.bare))


def sub_state(r):
    if r is None or r['type'] != 'result':
        return None
    s = r.xml.find('%s/%s' % (q('pubsub'), q('subscription')))
    return None if s is None else s.get('subscription')


async def items(c, node, extra='', inner=''):
    return await ps(c, 'get', "<items node='%s'%s>%s</items>" % (node, extra, inner))


def item_ids(r):
    if r is None or r['type'] != 'result':
        return None
    return [i.get('id') for i in r.xml.findall('%s/%s/%s' % (q('pubsub'), q('items'),
                                                              q('item')))]


def event_of(m):
    return None if m is None else m.xml.find(q('event', EVENT))


async def event(c, pred=None, timeout=3):
    return await c.message(lambda m: event_of(m) is not None and (pred is None or pred(m)),
                           timeout=timeout)


def ev_items(m):
    e = event_of(m)
    if e is None:
        return None
    its = e.find(q('items', EVENT))
    if its is None:
        return None
    return (its.get('node'), [(i.tag.split('}')[1], i.get('id')) for i in its])


def field(x, var):
    for f in x.findall('{%s}field' % XDATA):
        if f.get('var') == var:
            v = f.find('{%s}value' % XDATA)
            return '' if v is None else (v.text or '')
    return None


async def config_value(c, node, var):
    r = await ps(c, 'get', "<configure node='%s'/>" % node, OWNER)
    if r is None or r['type'] != 'result':
        return err(r)
    x = r.xml.find('%s/%s/{%s}x' % (q('pubsub', OWNER), q('configure', OWNER), XDATA))
    return None if x is None else field(x, var)


async def hook_event(c):
    """What pubsub_event last ran with (mod_entityprobe)."""
    r = await c.iq('get', HOST, "<event xmlns='%s'/>" % PROBE)
    e = r.xml.find('{%s}event' % PROBE) if r is not None and r['type'] == 'result' else None
    return None if e is None else (e.get('kind'), e.get('node'), e.get('item'),
                                   e.get('publisher'), e.get('payload'), e.get('owner'))


def sub_record_to_v1(srv, node, jid):
    """Rewrites the subscription record of jid on node (server stopped)
    as the version 1 records written before subscription options were
    kept: '1', state, NUL, subid (mdb_load, as another writer would)."""
    for k, v in xt.store_rows(srv, 'mod_pubsub_subs'):
        if xt.key_parts(k)[1:] == (node, jid) and v[:1] == b'2':
            old = b'1' + v[1:3] + v[3:].split(b'\0')[0]
            data = ('VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n %s\n %s\n'
                    'DATA=END\n' % (k.hex(), old.hex()))
            r = subprocess.run([os.environ.get('MDB_LOAD') or 'mdb_load', '-s',
                                'mod_pubsub_subs', srv.spool], input=data.encode(),
                               capture_output=True, timeout=30)
            return r.returncode == 0
    return False


def item_record_broken(srv, node, item_id):
    """Rewrites the record of item item_id of node (server stopped) with
    a payload that does not parse as XML (mdb_load, as another writer
    would): the node still loads, reading the item fails."""
    for k, v in xt.store_rows(srv, 'mod_pubsub_items'):
        parts = v[1:].split(b'\0', 2)
        if xt.key_parts(k)[1] == node and len(parts) == 3 and parts[1] == item_id.encode():
            bad = v[:1] + parts[0] + b'\0' + parts[1] + b'\0' + b'<broken'
            data = ('VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n %s\n %s\n'
                    'DATA=END\n' % (k.hex(), bad.hex()))
            r = subprocess.run([os.environ.get('MDB_LOAD') or 'mdb_load', '-s',
                                'mod_pubsub_items', srv.spool], input=data.encode(),
                               capture_output=True, timeout=30)
            return r.returncode == 0
    return False


async def main():
    moddir = xt.scratch_dir('t1620-build') / 'modules'
    moddir.mkdir()
    xt.build_test_module(moddir, 'mod_entityprobe')
    # The probe module is loaded from its own directory: the others from
    # the build tree by absolute path.
    libs = xt.MODULE_DIR
    mods = {'mod_disco': {}, 'mod_roster': {},
            'mod_pubsub': {'hosts': [HOST], 'max_item_size': 2000,
                           'max_items_per_node': 5, 'default_max_items': 3,
                           'max_nodes_per_user': 10, 'max_nodes': 26, 'max_subscriptions_per_node': 4,
                           'max_subscriptions_per_jid': 3, 'max_affiliations_per_node': 3,
                           'max_items_page_bytes': 1000,
                           'publish_rate': 1, 'publish_burst': 40}}
    srv = xt.Server(workers=2, modules=mods, start=False)
    srv.conf['module_dir'] = str(moddir)
    for m in ('mod_disco', 'mod_roster', 'mod_pubsub'):
        os.symlink(os.path.join(libs, m + '.so'), str(moddir / (m + '.so')))
    srv.conf['modules']['mod_entityprobe'] = {}
    srv.write_config()
    srv.start()
    for u in ('alice', 'bob', 'carol', 'dave', 'flood'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    for c in (alice, bob, carol):
        c.xmpp.send_presence()

    # -- disco of the service (XEP-0060 5.1) -----------------------------
    r = await alice.iq('get', PS, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    ident = r.xml.find('{http://jabber.org/protocol/disco#info}query/'
                       '{http://jabber.org/protocol/disco#info}identity') if r else None
    xt.is_(None if ident is None else (ident.get('category'), ident.get('type')),
           ('pubsub', 'service'), 'disco#info of the service: identity pubsub/service')
    feats = [f.get('var') for f in r.xml.iter('{http://jabber.org/protocol/disco#info}feature')]
    xt.ok(NS + '#publish' in feats and NS + '#publish-options' in feats,
          'and the pubsub features (publish, publish-options)')
    xt.ok(NS + '#subscription-options' in feats and NS + '#retrieve-default-sub' in feats,
          'and subscription-options, retrieve-default-sub')

    # -- create (8.1) ----------------------------------------------------
    xt.is_(err(await create(alice, 'n1')), 'result', 'create a named node')
    xt.is_(err(await create(alice, 'n1')), ('conflict', None), 'the same again: conflict')
    r = await ps(alice, 'set', '<create/>')
    cr = r.xml.find('%s/%s' % (q('pubsub'), q('create'))) if r and r['type'] == 'result' else None
    xt.ok(cr is not None and cr.get('node'), 'an instant node: its name is given back')
    r = await ps(alice, 'set', "<create node=''/>")
    cr = r.xml.find('%s/%s' % (q('pubsub'), q('create'))) if r and r['type'] == 'result' else None
    xt.ok(cr is not None and cr.get('node'), "an instant node asked with node='': its name "
          "is given back (8.1.2)") or xt.diag(str(r))
    if cr is not None and cr.get('node'):
        await ps(alice, 'set', "<delete node='%s'/>" % cr.get('node'), OWNER)
    xt.is_(err(await create(alice, 'nf', {'pubsub#title': 'Formed', 'pubsub#max_items': '2'})),
           'result', 'create and configure')
    xt.is_(await config_value(alice, 'nf', 'pubsub#title'), 'Formed',
           'configure get: the form has the title given at creation')
    xt.is_(await config_value(alice, 'n1', 'pubsub#max_items'), '3',
           'a default node: max_items is default_max_items')
    xt.is_(await config_value(bob, 'n1', 'pubsub#title'), ('forbidden', None),
           'configure by a non-owner: forbidden')
    r = await ps(alice, 'set', "<configure node='n1'>%s</configure>"
                 % form('submit', {'pubsub#max_items': '6'}), OWNER)
    xt.is_(err(r), ('not-acceptable', None), 'max_items above max_items_per_node: not-acceptable')
    r = await ps(alice, 'set', "<configure node='n1'>%s</configure>"
                 % form('submit', {'pubsub#max_items': 'max', 'pubsub#title': 'One'}), OWNER)
    xt.is_(err(r), 'result', 'configure max_items "max" and a title')
    xt.is_(await config_value(alice, 'n1', 'pubsub#max_items'), 'max', 'kept as "max"')
    r = await ps(alice, 'get', '<default/>', OWNER)
    xt.is_(err(r), 'result', 'the default configuration (8.3)')

    # -- subscribe and publish (6.1, 7.1) ---------------------------------
    xt.is_(err(await subscribe(bob, 'n1', 'carol@' + HOST)), ('bad-request', 'invalid-jid'),
           'subscribe for another JID: bad-request, invalid-jid')
    xt.is_(err(await subscribe(bob, 'nope')), ('item-not-found', None),
           'subscribe to a missing node: item-not-found')
    xt.is_(sub_state(await subscribe(bob, 'n1')), 'subscribed', 'bob subscribes to n1')
    r = await publish(alice, 'n1', 'i1')
    xt.is_(published_id(r), 'i1', 'publish with an id: the id comes back')
    m = await event(bob)
    xt.is_(ev_items(m), ('n1', [('item', 'i1')]), 'the subscriber gets the event')
    entry = m.xml.find('%s/%s/%s/{urn:t}entry' % (q('event', EVENT), q('items', EVENT),
                                                 q('item', EVENT))) if m else None
    xt.ok(entry is not None and entry.text == 'x', 'with the payload (deliver_payloads)')
    xt.is_(m['type'] if m else None, 'headline', 'as a headline message from the service')
    xt.is_(await hook_event(alice), ('1', 'n1', 'i1', 'alice@' + HOST, 'entry', '1'),
           'pubsub_event ran: published, with the item, on the node\'s worker')
    gen = published_id(await publish(alice, 'n1'))
    xt.ok(gen and gen != 'i1', 'publish without an id: the service makes one')
    m = await event(bob)
    xt.is_(ev_items(m), ('n1', [('item', gen)]), 'and notifies it')
    xt.is_(err(await publish(alice, 'n1', 'big', "<b xmlns='urn:t'>%s</b>" % ('y' * 2100))),
           ('not-acceptable', 'payload-too-big'), 'an item above max_item_size: payload-too-big')
    xt.is_(err(await publish(bob, 'n1', 'b1')), ('forbidden', None),
           'publish by a subscriber (publishers model): forbidden')
    xt.is_(err(await publish(alice, 'nope', 'x1')), ('item-not-found', None),
           'publish to a missing node: item-not-found')
    xt.is_(err(await ps(alice, 'set', "<publish node='n1'><item id='e'/></publish>")),
           ('bad-request', 'payload-required'), 'an item without payload: payload-required')
    xt.is_(err(await ps(alice, 'set', "<publish node='n1'><item id='t'><a xmlns='urn:t'/>"
                        "<b xmlns='urn:t'/></item></publish>")),
           ('bad-request', 'invalid-payload'), 'two payloads: invalid-payload')
    xt.is_(err(await ps(alice, 'get', '<items/>')), ('bad-request', 'nodeid-required'),
           'items without a node: nodeid-required')

    # -- bad input ---------------------------------------------------------
    xt.is_(err(await create(alice, 'x' * 300)), ('not-acceptable', None),
           'a node name of 300 bytes: not-acceptable')
    xt.is_(err(await subscribe(bob, 'n1', '@@bad')), ('bad-request', 'invalid-jid'),
           'subscribe with a JID that does not parse: invalid-jid')
    xt.is_(err(await items(bob, 'n1', " max_items='lots'")), ('bad-request', None),
           "max_items='lots': bad-request")
    xt.is_(err(await ps(bob, 'get', "<items node='n1'/><set xmlns='%s'><max>-3</max></set>"
                        % RSM)), ('bad-request', None), 'RSM max -3: bad-request')
    r = await ps(alice, 'set', "<configure node='n1'>%s</configure>"
                 % form('submit', {'pubsub#persist_items': 'maybe'}), OWNER)
    xt.is_(err(r), ('not-acceptable', None), 'a boolean field "maybe": not-acceptable')
    r = await ps(alice, 'set', "<affiliations node='n1'><affiliation jid='carol@%s' "
                 "affiliation='emperor'/></affiliations>" % HOST, OWNER)
    xt.is_(err(r), ('bad-request', None), 'an unknown affiliation: bad-request')
    xt.is_(err(await ps(alice, 'set', "<frobnicate node='n1'/>")), ('bad-request', None),
           'an unknown action: bad-request')

    # -- notify_config (8.2.5.3) --------------------------------------------
    r = await ps(alice, 'set', "<configure node='n1'>%s</configure>"
                 % form('submit', {'pubsub#notify_config': '1'}), OWNER)
    m = await event(bob, lambda m: event_of(m).find(q('configuration', EVENT)) is not None)
    c = event_of(m).find(q('configuration', EVENT)) if m else None
    xt.is_(None if c is None else c.get('node'), 'n1',
           'notify_config on: the subscriber gets the configuration event')

    # -- a transient notification-only node (7.1.3.6, 8.5.3.3) --------------
    xt.is_(err(await create(alice, 'tr', {'pubsub#persist_items': '0',
                                           'pubsub#deliver_payloads': '0'})), 'result',
           'a node without persistent items or payloads')
    xt.is_(err(await publish(alice, 'tr', 'p1')), ('bad-request', 'item-forbidden'),
           'an item with a payload there: item-forbidden')
    xt.is_(err(await ps(alice, 'set', "<purge node='tr'/>", OWNER)),
           ('feature-not-implemented', 'unsupported:persistent-items'),
           'purge there: unsupported persistent-items')

    # -- publish-options (7.1.5) -----------------------------------------
    xt.is_(published_id(await publish(alice, 'n1', 'i2', options={
        'pubsub#persist_items': 'true', 'pubsub#access_model': 'open'})), 'i2',
        'publish-options that match: published')
    await event(bob)
    xt.is_(err(await publish(alice, 'n1', 'i3', options={'pubsub#access_model': 'whitelist'})),
           ('conflict', 'precondition-not-met'), 'an unmatched value: precondition-not-met')
    xt.is_(err(await publish(alice, 'n1', 'i3', options={'pubsub#unknown': '1'})),
           ('conflict', 'precondition-not-met'), 'an unknown field: precondition-not-met')

    # -- items (6.5) and RSM (XEP-0059) ----------------------------------
    xt.is_(item_ids(await items(bob, 'n1')), ['i2', gen, 'i1'], 'all items, newest first')
    xt.is_(item_ids(await items(bob, 'n1', " max_items='1'")), ['i2'],
           'max_items=1: the newest')
    xt.is_(item_ids(await items(bob, 'n1', '', "<item id='i1'/>")), ['i1'], 'one item by id')
    r = await ps(bob, 'get', "<items node='n1'/><set xmlns='%s'><max>2</max></set>" % RSM)
    cnt = r.xml.find('%s/{%s}set/{%s}count' % (q('pubsub'), RSM, RSM)) if r else None
    xt.is_((item_ids(r), None if cnt is None else cnt.text), (['i2', gen], '3'),
           'RSM max 2: the first page and the count')
    r = await ps(bob, 'get', "<items node='n1'/><set xmlns='%s'><max>2</max><after>%s</after>"
                 "</set>" % (RSM, gen))
    xt.is_(item_ids(r), ['i1'], 'RSM after the page: the rest')
    # max_items_page_bytes 1000: an answer stops before the payloads pass it,
    # with an RSM <set/> to page on (6.5.7).
    big = "<entry xmlns='urn:t'>%s</entry>" % ('y' * 400)
    await create(carol, 'big', {'pubsub#max_items': '5'})
    got = [published_id(await publish(carol, 'big', 'g%d' % i, big)) for i in range(5)]
    xt.is_(got, ['g0', 'g1', 'g2', 'g3', 'g4'], 'five items of 400 bytes')

    def rsm_of(r):
        st = r.xml.find('%s/{%s}set' % (q('pubsub'), RSM)) if r is not None else None
        return None if st is None else (st.findtext('{%s}first' % RSM),
                                        st.findtext('{%s}last' % RSM),
                                        st.findtext('{%s}count' % RSM))
    r = await items(bob, 'big')
    xt.is_((item_ids(r), rsm_of(r)), (['g4', 'g3'], ('g4', 'g3', '5')),
           'no max_items, no RSM: truncated to the budget, with first, last and count')
    r = await ps(bob, 'get', "<items node='big'/><set xmlns='%s'><after>g3</after></set>" % RSM)
    xt.is_((item_ids(r), rsm_of(r)), (['g2', 'g1'], ('g2', 'g1', '5')),
           'the next page after the last given')
    r = await items(bob, 'big', '', "<item id='g0'/><item id='g1'/><item id='g2'/>")
    xt.is_(item_ids(r), ['g0', 'g1'], 'items by id are truncated to the budget too')

    # -- retract (7.2) ---------------------------------------------------
    xt.is_(err(await ps(alice, 'set', "<retract node='n1'><item id='zz'/></retract>")),
           ('item-not-found', None), 'retract an unknown item: item-not-found')
    xt.is_(err(await ps(alice, 'set', "<retract node='n1'><item/></retract>")),
           ('bad-request', 'item-required'), 'retract without an id: item-required')
    xt.is_(err(await ps(bob, 'set', "<retract node='n1'><item id='i1'/></retract>")),
           ('forbidden', None), 'retract by a subscriber: forbidden')
    xt.is_(err(await ps(alice, 'set', "<retract node='n1'><item id='i1'/></retract>")),
           'result', 'the owner retracts i1')
    xt.is_(ev_items(await event(bob)), ('n1', [('retract', 'i1')]),
           'the subscriber is told (notify_retract)')
    xt.is_(item_ids(await items(bob, 'n1')), ['i2', gen], 'i1 is gone')
    xt.is_(await hook_event(alice), ('2', 'n1', 'i1', 'alice@' + HOST, '-', '1'),
           'pubsub_event ran: retracted')

    # -- max_items trimming ----------------------------------------------
    for i in range(4):
        await publish(alice, 'nf', 't%d' % i)
    xt.is_(item_ids(await items(alice, 'nf')), ['t3', 't2'],
           'max_items 2: the oldest go')

    await publish(alice, 'nf', 't4')
    r = await ps(alice, 'set', "<configure node='nf'>%s</configure>"
                 % form('submit', {'pubsub#max_items': '1'}), OWNER)
    xt.is_((err(r), item_ids(await items(alice, 'nf'))), ('result', ['t4']),
           'max_items lowered to 1: the older items go at once')
    r = await ps(alice, 'set', "<configure node='nf'>%s</configure>"
                 % form('submit', {'pubsub#max_items': '2'}), OWNER)
    await publish(alice, 'nf', 't5')

    # -- last item on subscribe (6.1.7) ----------------------------------
    xt.is_(sub_state(await subscribe(carol, 'n1')), 'subscribed', 'carol subscribes')
    xt.is_(ev_items(await event(carol)), ('n1', [('item', 'i2')]),
           'and gets the last published item')

    # -- notify_sub: the owner hears of subscriptions ----------------------
    await create(alice, 'ns', {'pubsub#notify_sub': '1'})
    await subscribe(carol, 'ns')
    m = await event(alice, lambda m: event_of(m).find(q('subscription', EVENT)) is not None)
    s = event_of(m).find(q('subscription', EVENT)) if m else None
    xt.is_(None if s is None else (s.get('node'), s.get('jid'), s.get('subscription')),
           ('ns', carol.jid.bare, 'subscribed'), 'notify_sub: the owner is told of carol')

    # -- unsubscribe (6.2) -----------------------------------------------
    r = await ps(carol, 'set', "<unsubscribe node='n1' jid='%s'/>" % bob.jid.bare)
    xt.is_(err(r), ('forbidden', None), "unsubscribe of another entity's JID: forbidden (6.2.3.3)")
    r = await ps(carol, 'set', "<unsubscribe node='n1' jid='%s' subid='nope'/>" % carol.jid.bare)
    xt.is_(err(r), ('not-acceptable', 'invalid-subid'), 'unsubscribe with a wrong subid')
    r = await ps(carol, 'set', "<unsubscribe node='n1' jid='%s'/>" % carol.jid.bare)
    xt.is_(err(r), 'result', 'unsubscribe')
    r = await ps(carol, 'set', "<unsubscribe node='n1' jid='%s'/>" % carol.jid.bare)
    xt.is_(err(r), ('unexpected-request', 'not-subscribed'), 'again: not-subscribed')

    # -- subscription options (6.3, 6.4) ----------------------------------
    await create(bob, 'so')
    await subscribe(bob, 'so')
    cj = carol.jid.bare

    def opt(r, var):
        x = opts_x(r)
        return None if x is None else field(x, var)

    def opts_x(r, where='options'):
        if r is None or r['type'] != 'result':
            return None
        return r.xml.find('%s/%s/{%s}x' % (q('pubsub'), q(where), XDATA))

    def sub_form(fields):
        return form('submit', fields, NS + '#subscribe_options')

    async def set_opts(c, jid, fields, extra=''):
        return await ps(c, 'set', "<options node='so' jid='%s'%s>%s</options>"
                        % (jid, extra, sub_form(fields)))

    xt.is_(err(await ps(carol, 'get', "<options node='so' jid='%s'/>" % cj)),
           ('unexpected-request', 'not-subscribed'), 'options without a subscription: '
           'unexpected-request, not-subscribed (6.3.4)')
    r = await ps(carol, 'set', "<subscribe node='nf' jid='%s'/><options>%s</options>"
                 % (cj, sub_form({'pubsub#deliver': 'maybe'})))
    xt.is_((err(r), err(await ps(carol, 'get', "<options node='nf' jid='%s'/>" % cj))),
           (('bad-request', 'invalid-options'), ('unexpected-request', 'not-subscribed')),
           'subscribe with a bad options form: invalid-options, and no subscription')
    r = await ps(carol, 'set', "<subscribe node='so' jid='%s'/><options node='so'>%s</options>"
                 % (cj, sub_form({'pubsub#deliver': '0'})))
    xt.is_(err(r), ('bad-request', None), 'subscribe and configure with a node on <options/>: '
           'bad-request (6.3.7)')
    r = await ps(carol, 'set', "<subscribe node='so' jid='%s'/><options>%s</options>"
                 % (cj, sub_form({'pubsub#deliver': '0'}).replace(
                     '</x>', "<field var='pubsub#show-values'><value>chat</value>"
                     "<value>online</value></field></x>")))
    s = r.xml.find('%s/%s' % (q('pubsub'), q('subscription'))) if r and r['type'] == 'result' \
        else None
    xt.is_((sub_state(r), None if s is None else s.find(q('subscribe-options')) is not None),
           ('subscribed', True), 'subscribe and configure (6.3.7): subscribed, with '
           '<subscribe-options/> (6.1.5)')
    x = opts_x(r)
    xt.is_(None if x is None else (x.get('type'), field(x, 'pubsub#deliver')), ('result', '0'),
           'and the options as a result form, deliver 0 (show-values accepted)')
    r = await ps(carol, 'get', "<options node='so' jid='%s'/>" % cj)
    x = opts_x(r)
    xt.is_(None if x is None else (x.get('type'), field(x, 'FORM_TYPE'),
                                   field(x, 'pubsub#deliver')),
           ('form', NS + '#subscribe_options', '0'), 'options get (6.3.2): the form, deliver 0')
    subid = r.xml.find('%s/%s' % (q('pubsub'), q('options'))).get('subid') if x is not None \
        else None
    xt.is_(err(await ps(carol, 'get', "<options node='so' jid='%s' subid='%s'/>" % (cj, subid))),
           'result', 'with its subid: the same')
    xt.is_(err(await ps(carol, 'get', "<options node='so' jid='%s' subid='nope'/>" % cj)),
           ('not-acceptable', 'invalid-subid'), 'a wrong subid: invalid-subid')
    xt.is_(err(await ps(carol, 'get', "<options node='so'/>")), ('bad-request', 'jid-required'),
           'no jid: jid-required')
    xt.is_(err(await ps(carol, 'get', "<options jid='%s'/>" % cj)),
           ('bad-request', 'nodeid-required'), 'no node: nodeid-required')
    xt.is_(err(await ps(carol, 'get', "<options node='nope' jid='%s'/>" % cj)),
           ('item-not-found', None), 'a missing node: item-not-found')
    xt.is_(err(await ps(alice, 'get', "<options node='so' jid='%s'/>" % cj)),
           ('forbidden', None), "another entity's options: forbidden")
    xt.is_(err(await set_opts(alice, cj, {'pubsub#deliver': '1'})), ('forbidden', None),
           'and submitting them: forbidden')
    bad = [err(await set_opts(carol, cj, f)) for f in (
        {'pubsub#deliver': 'maybe'}, {'pubsub#digest': '1'}, {'pubsub#include_body': 'true'},
        {'pubsub#subscription_type': 'nodes'}, {'pubsub#show-values': 'asleep'})]
    xt.is_(bad, [('bad-request', 'invalid-options')] * 5, 'deliver "maybe", digest, '
           'include_body, subscription_type nodes, show-values "asleep": invalid-options '
           '(6.3.6)')
    r = await ps(carol, 'set', "<options node='so' jid='%s'/>" % cj)
    xt.is_(err(r), ('bad-request', 'invalid-options'), 'a submit without a form: invalid-options')
    r = await ps(carol, 'set', "<options node='so' jid='%s'><x xmlns='%s' type='cancel'/>"
                 "</options>" % (cj, XDATA))
    xt.is_(err(r), 'result', 'a cancelled form: result (XEP-0004 3.1)')
    xt.is_(opt(await ps(carol, 'get', "<options node='so' jid='%s'/>" % cj), 'pubsub#deliver'),
           '0', 'the refused submissions changed nothing')
    await publish(bob, 'so', 'so1')
    xt.is_(ev_items(await event(bob, lambda m: ev_items(m)[0] == 'so')),
           ('so', [('item', 'so1')]), 'a publish: the subscriber with deliver 1 gets it')
    xt.is_(err(await set_opts(carol, cj, {'pubsub#deliver': '1', 'pubsub#digest': '0',
                                          'pubsub#subscription_depth': '1'})),
           'result', 'options submit (6.3.5): deliver 1')
    await publish(bob, 'so', 'so2')
    await event(bob, lambda m: ev_items(m)[0] == 'so')
    xt.is_(ev_items(await event(carol, lambda m: (ev_items(m) or ('',))[0] == 'so')),
           ('so', [('item', 'so2')]), 'carol gets the second publish, not the first '
           '(deliver 0 then 1)')
    xt.is_(err(await set_opts(carol, cj, {'pubsub#deliver': 'false'})), 'result',
           'deliver false again (kept over the restart below)')
    x = opts_x(await ps(carol, 'get', "<default node='so'/>"), 'default')
    xt.is_(None if x is None else (x.get('type'), field(x, 'pubsub#deliver')), ('result', '1'),
           'default subscription options of a node (6.4): a result form, deliver 1')
    xt.ok(opts_x(await ps(carol, 'get', "<default/>"), 'default') is not None,
          "and of the service (6.4.1, no node)")
    xt.is_(err(await ps(carol, 'get', "<default node='nope'/>")), ('item-not-found', None),
           'of a missing node: item-not-found')

    # -- access models (4.5) ---------------------------------------------
    await create(alice, 'wl', {'pubsub#access_model': 'whitelist'})
    xt.is_(err(await subscribe(carol, 'wl')), ('not-allowed', 'closed-node'),
           'whitelist: a stranger gets closed-node')
    xt.is_(err(await items(carol, 'wl')), ('not-allowed', 'closed-node'),
           'and cannot retrieve items')
    r = await ps(alice, 'set', "<affiliations node='wl'><affiliation jid='carol@%s' "
                 "affiliation='member'/></affiliations>" % HOST, OWNER)
    xt.is_(err(r), 'result', 'the owner makes carol a member')
    xt.is_(sub_state(await subscribe(carol, 'wl')), 'subscribed', 'and she may subscribe')
    await create(alice, 'pr', {'pubsub#access_model': 'presence'})
    await create(alice, 'ro', {'pubsub#access_model': 'roster'})
    rc, out, e = srv.ctl('roster', 'add', 'alice', HOST, 'bob@' + HOST)
    xt.is_(rc, 0, 'alice and bob share presence (xmppctl roster add)')
    xt.is_(err(await subscribe(carol, 'pr')),
           ('not-authorized', 'presence-subscription-required'),
           'presence: no subscription, presence-subscription-required')
    xt.is_(sub_state(await subscribe(bob, 'pr')), 'subscribed', 'presence: a contact may')
    xt.is_(err(await subscribe(carol, 'ro')), ('not-authorized', 'not-in-roster-group'),
           'roster: not in the roster, not-in-roster-group')
    xt.is_(sub_state(await subscribe(bob, 'ro')), 'subscribed', 'roster: a contact may')

    # authorize (8.6)
    await create(alice, 'au', {'pubsub#access_model': 'authorize'})
    await publish(alice, 'au', 'a1')
    xt.is_(sub_state(await subscribe(carol, 'au')), 'pending', 'authorize: pending')
    m = await alice.message(lambda m: m.xml.find('{%s}x' % XDATA) is not None, timeout=3)
    x = m.xml.find('{%s}x' % XDATA) if m else None
    xt.is_(None if x is None else (field(x, 'FORM_TYPE'), field(x, 'pubsub#subscriber_jid')),
           (NS + '#subscribe_authorization', carol.jid.bare),
           'the owner gets the authorization form')
    xt.is_(err(await items(carol, 'au')), ('not-authorized', 'pending-subscription'),
           'items while pending: pending-subscription')
    ans = alice.xmpp.Message()
    ans['to'] = PS
    ans.append(ET.fromstring(form('submit', {
        'pubsub#node': 'au', 'pubsub#subscriber_jid': carol.jid.bare, 'pubsub#allow': 'true',
        'pubsub#subid': field(x, 'pubsub#subid') if x is not None else ''},
        NS + '#subscribe_authorization')))
    ans.send()
    m = await event(carol, lambda m: event_of(m).find(q('subscription', EVENT)) is not None)
    s = event_of(m).find(q('subscription', EVENT)) if m else None
    xt.is_(None if s is None else s.get('subscription'), 'subscribed',
           'the owner allows: the subscriber is told')
    xt.is_(item_ids(await items(carol, 'au')), ['a1'], 'and may retrieve items')
    dave0 = await xt.login_ok(srv, 'dave', resource='d0')
    xt.is_(sub_state(await subscribe(dave0, 'au')), 'pending', 'dave asks too: pending')
    m = await alice.message(lambda m: m.xml.find('{%s}x' % XDATA) is not None and
                            field(m.xml.find('{%s}x' % XDATA), 'pubsub#subscriber_jid') ==
                            dave0.jid.bare, timeout=3)
    xt.ok(m is not None, 'the owner is asked about dave')
    deny = alice.xmpp.Message()
    deny['to'] = PS
    deny.append(ET.fromstring(form('submit', {
        'pubsub#node': 'au', 'pubsub#subscriber_jid': dave0.jid.bare, 'pubsub#allow': 'false'},
        NS + '#subscribe_authorization')))
    deny.send()
    m = await event(dave0, lambda m: event_of(m).find(q('subscription', EVENT)) is not None)
    s = event_of(m).find(q('subscription', EVENT)) if m else None
    xt.is_(None if s is None else s.get('subscription'), 'none',
           'the owner denies: the subscriber is told (subscription none)')
    xt.is_(err(await items(dave0, 'au')), ('not-authorized', 'not-subscribed'),
           'and may not retrieve items (not-subscribed)')
    bobans = bob.xmpp.Message()
    bobans['to'] = PS
    bobans.append(ET.fromstring(form('submit', {
        'pubsub#node': 'au', 'pubsub#subscriber_jid': dave0.jid.bare, 'pubsub#allow': 'true'},
        NS + '#subscribe_authorization')))
    bobans.send()
    m = await bob.message(lambda m: m['type'] == 'error', timeout=3)
    xt.is_(m['error']['condition'] if m is not None else None, 'forbidden',
           "a non-owner's answer: a forbidden error")
    await dave0.disconnect()

    # -- owner: affiliations (8.9), subscriptions (8.8) -----------------------
    r = await ps(alice, 'set', "<affiliations node='n1'><affiliation jid='bob@%s' "
                 "affiliation='publisher'/></affiliations>" % HOST, OWNER)
    xt.is_(err(r), 'result', 'make bob a publisher of n1')
    xt.ok(published_id(await publish(bob, 'n1', 'b1')) == 'b1', 'then bob may publish')
    await event(bob)
    r = await ps(alice, 'get', "<affiliations node='n1'/>", OWNER)
    affs = sorted((a.get('jid'), a.get('affiliation')) for a in
                  r.xml.iter(q('affiliation', OWNER))) if r else None
    xt.is_(affs, [('alice@' + HOST, 'owner'), ('bob@' + HOST, 'publisher')],
           'the affiliations, as the owner sees them')
    r = await ps(alice, 'set', "<affiliations node='n1'><affiliation jid='alice@%s' "
                 "affiliation='none'/></affiliations>" % HOST, OWNER)
    xt.is_(err(r), ('not-acceptable', None), 'removing the last owner: not-acceptable')
    xt.is_(err(await ps(bob, 'get', "<affiliations node='n1'/>", OWNER)), ('forbidden', None),
           'affiliations by a non-owner: forbidden')
    r = await ps(alice, 'get', "<subscriptions node='n1'/>", OWNER)
    subs = [(s.get('jid'), s.get('subscription')) for s in r.xml.iter(q('subscription', OWNER))] \
        if r else None
    xt.is_(subs, [('bob@' + HOST, 'subscribed')], 'the subscriptions, as the owner sees them')
    r = await ps(alice, 'set', "<affiliations node='au'><affiliation jid='carol@%s' "
                 "affiliation='outcast'/></affiliations>" % HOST, OWNER)
    xt.is_(err(r), 'result', 'carol made an outcast of au')
    r = await ps(alice, 'get', "<subscriptions node='au'/>", OWNER)
    xt.is_([s.get('jid') for s in r.xml.iter(q('subscription', OWNER))] if r else None, [],
           "and her subscription went (4.1: an outcast has none)")
    xt.is_(err(await subscribe(carol, 'au')), ('forbidden', None),
           'an outcast may not subscribe')
    r = await ps(alice, 'set', "<affiliations node='au'><affiliation jid='dave@%s' "
                 "affiliation='publisher'/></affiliations>" % HOST, OWNER)
    xt.is_(err(r), 'result', 'a third affiliation of au (max_affiliations_per_node 3)')
    r = await ps(alice, 'set', "<affiliations node='au'><affiliation jid='flood@%s' "
                 "affiliation='member'/><affiliation jid='dave@%s' affiliation='none'/>"
                 "<affiliation jid='x@%s' affiliation='member'/></affiliations>"
                 % (HOST, HOST, HOST), OWNER)
    xt.is_(err(r), ('policy-violation', None), 'a fourth: policy-violation, nothing changed')
    r = await ps(alice, 'get', "<affiliations node='au'/>", OWNER)
    xt.is_(sorted(a.get('jid') for a in r.xml.iter(q('affiliation', OWNER))) if r else None,
           sorted(['alice@' + HOST, 'carol@' + HOST, 'dave@' + HOST]), 'the three kept')
    r = await ps(bob, 'get', '<subscriptions/>')
    mine = sorted(s.get('node') for s in r.xml.iter(q('subscription'))) if r else None
    xt.is_(mine, ['n1', 'pr', 'ro', 'so'], "bob's subscriptions on the service (5.6)")

    # -- disco of nodes (5.2-5.5) -------------------------------------------
    r = await alice.iq('get', PS, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
    nodes = sorted(i.get('node') for i in
                   r.xml.iter('{http://jabber.org/protocol/disco#items}item')) if r else []
    xt.ok({'n1', 'nf', 'wl', 'pr', 'ro', 'au'} <= set(nodes), 'disco#items lists the nodes')
    r = await alice.iq('get', PS, "<query xmlns='http://jabber.org/protocol/disco#info' "
                       "node='n1'/>")
    x = r.xml.find('{http://jabber.org/protocol/disco#info}query/{%s}x' % XDATA) if r else None
    xt.is_(None if x is None else (field(x, 'FORM_TYPE'), field(x, 'pubsub#title')),
           (NS + '#meta-data', 'One'), 'disco#info of a node: the meta-data form')
    r = await alice.iq('get', PS, "<query xmlns='http://jabber.org/protocol/disco#items' "
                       "node='n1'/>")
    names = [i.get('name') for i in
             r.xml.iter('{http://jabber.org/protocol/disco#items}item')] if r else None
    xt.is_(names, ['b1', 'i2', gen], 'disco#items of a node: its items')
    r = await alice.iq('get', PS, "<query xmlns='http://jabber.org/protocol/disco#info' "
                       "node='nope'/>")
    xt.is_(err(r), ('item-not-found', None), 'disco#info of a missing node: item-not-found')

    # -- limits: subscriptions per node, nodes per user, the shaper ---------
    await create(alice, 'many')
    got = []
    for i in range(4):
        got.append(err(await subscribe(bob, 'many', '%s/r%d' % (bob.jid.bare, i))))
    xt.is_(got, ['result'] * 3 + [('policy-violation', 'too-many-subscriptions')],
           'the fourth subscription of one bare JID (max_subscriptions_per_jid 3): '
           'too-many-subscriptions')
    got = [err(await subscribe(carol, 'many', carol.jid.bare + r)) for r in ('', '/c9')]
    xt.is_(got, ['result', ('policy-violation', 'too-many-subscriptions')],
           'another JID takes the fourth; the fifth of a node of 4: too-many-subscriptions')

    def subs_set(*entries):
        return ps(alice, 'set', "<subscriptions node='many'>%s</subscriptions>" % ''.join(
            "<subscription jid='%s' subscription='%s'/>" % e for e in entries), OWNER)
    r = await subs_set(('dave@' + HOST, 'subscribed'))
    xt.is_(err(r), ('policy-violation', 'too-many-subscriptions'),
           "the owner's subscriptions set (8.8.2) past max_subscriptions_per_node: "
           "too-many-subscriptions")
    r = await subs_set(('%s/r0' % bob.jid.bare, 'pending'))
    xt.is_(err(r), 'result', 'changing an existing one is not a new subscription')
    r = await ps(alice, 'get', "<subscriptions node='many'/>", OWNER)
    xt.is_(len(r.xml.findall('%s/%s/%s' % (q('pubsub', OWNER), q('subscriptions', OWNER),
                                      q('subscription', OWNER))))
           if r is not None and r['type'] == 'result' else None, 4, 'the node keeps four')
    dave = await xt.login_ok(srv, 'dave', resource='d')
    got = [err(await create(dave, 'd%d' % i)) for i in range(11)]
    xt.is_((got[:10], got[10]), (['result'] * 10, ('not-allowed', 'max-nodes-exceeded')),
           'the eleventh node of a user (max_nodes_per_user 10): max-nodes-exceeded')
    xt.is_(published_id(await publish(dave, 'd0', 'dx')), 'dx', 'an item to be broken')
    await dave.disconnect()

    # -- restart: nodes, items, subscriptions survive ---------------------
    await xt.disconnect_all(alice, bob, carol)
    xt.is_(await srv.astop(), 0, 'xmppd stops')
    xt.ok(sub_record_to_v1(srv, 'n1', bob.jid.bare),
          "bob's subscription to n1 rewritten as a version 1 record")
    xt.ok(item_record_broken(srv, 'd0', 'dx'), "dave's item dx rewritten with a broken payload")
    srv.start()
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    r = await ps(carol, 'get', "<options node='so' jid='%s'/>" % carol.jid.bare)
    xt.is_(opt(r, 'pubsub#deliver'), '0',
           'after a restart: the subscription options (deliver 0)')
    r = await ps(bob, 'get', "<options node='n1' jid='%s'/>" % bob.jid.bare)
    xt.is_(opt(r, 'pubsub#deliver'), '1', 'a version 1 record reads as the default options')
    await carol.disconnect()
    dave = await xt.login_ok(srv, 'dave', resource='d')
    xt.is_(err(await items(dave, 'd0')), ('internal-server-error', None),
           'an item record that does not read back: internal-server-error')
    xt.is_(err(await items(dave, 'd0', inner="<item id='dx'/>")),
           ('internal-server-error', None), 'and again by id: the server is still up')
    await dave.disconnect()
    # Several requests for a node not loaded yet: one load, all answered.
    res = await asyncio.gather(*(items(bob, 'n1') for _ in range(6)))
    xt.is_([item_ids(r) for r in res], [['b1', 'i2', gen]] * 6,
           'after a restart: the items, to six requests racing the load')
    xt.is_(await config_value(alice, 'n1', 'pubsub#title'), 'One', 'the configuration')
    publish_r = await publish(alice, 'n1', 'after')
    xt.is_(ev_items(await event(bob)), ('n1', [('item', 'after')]),
           'and the subscription: bob is notified')
    xt.is_(published_id(publish_r), 'after', 'the publish after the restart answered')

    # -- purge (8.5) and delete (8.4) -------------------------------------
    xt.is_(err(await ps(bob, 'set', "<purge node='n1'/>", OWNER)), ('forbidden', None),
           'purge by a non-owner: forbidden')
    xt.is_(err(await ps(alice, 'set', "<purge node='n1'/>", OWNER)), 'result', 'purge')
    m = await event(bob, lambda m: event_of(m).find(q('purge', EVENT)) is not None)
    xt.ok(m is not None, 'the subscriber gets the purge event')
    xt.is_(item_ids(await items(bob, 'n1')), [], 'no items left')
    xt.is_((await hook_event(alice) or ())[:2], ('3', 'n1'), 'pubsub_event ran: purged')
    r = await ps(alice, 'set', "<delete node='n1'><redirect uri='xmpp:%s?;node=nf'/></delete>"
                 % PS, OWNER)
    xt.is_(err(r), 'result', 'delete with a redirect')
    m = await event(bob, lambda m: event_of(m).find(q('delete', EVENT)) is not None)
    red = event_of(m).find('%s/%s' % (q('delete', EVENT), q('redirect', EVENT))) if m else None
    xt.is_(None if red is None else red.get('uri'), 'xmpp:%s?;node=nf' % PS,
           'the subscriber gets the delete event with the redirect')
    xt.is_(err(await items(bob, 'n1')), ('item-not-found', None), 'the node is gone')
    xt.is_((await hook_event(alice) or ())[:2], ('4', 'n1'), 'pubsub_event ran: deleted')
    xt.is_(err(await create(alice, 'n1')), 'result', 'and may be made again')

    # -- a module through xmppd_pubsub_request ------------------------------
    async def probe(inner, set_=True):
        return await alice.iq('get', HOST, "<pubsub xmlns='%s' service='%s'%s>%s</pubsub>"
                              % (PROBE, PS, " set='1'" if set_ else '', inner))
    r = await probe("<pubsub xmlns='%s'><publish node='n1'><item id='m1'><e xmlns='urn:t'/>"
                    "</item></publish></pubsub>" % NS)
    p = r.xml.find('{%s}pubsub' % PROBE) if r is not None and r['type'] == 'result' else None
    it = p.find('%s/%s/%s' % (q('pubsub'), q('publish'), q('item'))) if p is not None else None
    xt.is_((p.get('condition') if p is not None else None, it.get('id') if it is not None
            else None), ('none', 'm1'), 'a module publishes as the server: the result')
    r = await probe("<pubsub xmlns='%s'><items node='zz'/></pubsub>" % NS, set_=False)
    p = r.xml.find('{%s}pubsub' % PROBE) if r is not None and r['type'] == 'result' else None
    xt.is_(p.get('condition') if p is not None else None, 'item-not-found',
           'and gets the error condition for a missing node')
    xt.is_(item_ids(await items(alice, 'n1')), ['m1'], "the module's item is in the node")

    # -- xmppctl pubsub ------------------------------------------------------
    rc, out, e = srv.ctl('pubsub', 'nodes', PS)
    xt.ok(rc == 0 and {'n1', 'nf', 'wl'} <= set(out.split()), 'xmppctl pubsub nodes')
    rc, out, e = srv.ctl('pubsub', 'items', PS, 'nf')
    xt.is_((rc, [ln.split('\t')[0] for ln in out.splitlines()]), (0, ['t4', 't5']),
           'xmppctl pubsub items (oldest first)')
    rc, out, e = srv.ctl('pubsub', 'delete', PS, 'nf')
    xt.is_(rc, 0, 'xmppctl pubsub delete')
    xt.is_(err(await items(alice, 'nf')), ('item-not-found', None), 'the node is gone')
    rc, out, e = srv.ctl('pubsub', 'delete', PS, 'nf')
    xt.ok(rc != 0 and 'no such node' in (out + e), 'deleting it again: no such node')

    # -- the shaper: a flood from one user, others unaffected ---------------
    flood = await xt.login_ok(srv, 'flood', resource='f')
    await create(flood, 'fl')
    res = await asyncio.gather(*(publish(flood, 'fl', 'f%d' % i) for i in range(45)))
    outcomes = [err(r) for r in res]
    xt.ok(('resource-constraint', None) in outcomes and outcomes.count('result') >= 35,
          'a burst past publish_burst: resource-constraint for the excess')
    wait_type = [r['error']['type'] for r in res if r is not None and r['type'] == 'error']
    xt.ok(wait_type and all(t == 'wait' for t in wait_type), 'of type wait')
    xt.is_(published_id(await publish(alice, 'n1', 'm2')), 'm2', 'another user still publishes')

    # -- the service's node limit (max_nodes 26) --------------------------
    rc, out, e = srv.ctl('pubsub', 'nodes', PS)
    have = len(out.split())
    carol = await xt.login_ok(srv, 'carol', resource='c2')
    got = [err(await create(carol, 'cl%d' % i)) for i in range(26 - have + 1)]
    xt.is_((have < 26, got[:-1] == ['result'] * (26 - have), got[-1]),
           (True, True, ('not-allowed', 'max-nodes-exceeded')),
           'creating past max_nodes of the service: max-nodes-exceeded')

    # -- unload answers, load again finds the nodes --------------------------
    rc, out, e = srv.ctl('module', 'unload', 'mod_pubsub')
    xt.is_(rc, 0, 'xmppctl module unload mod_pubsub')
    xt.is_(err(await items(alice, 'n1'))[0], 'remote-server-not-found',
           'unloaded: the service domain is no longer served here')
    rc, out, e = srv.ctl('module', 'load', 'mod_pubsub')
    xt.is_(rc, 0, 'loaded again')
    xt.is_(item_ids(await items(alice, 'n1')), ['m2', 'm1'], 'and the node is read back')

    await xt.disconnect_all(alice, bob, flood, carol)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')
    srv.teardown()

    # -- access_create: an access rule -----------------------------------
    srv = xt.Server(workers=2, modules={'mod_pubsub': {'hosts': [HOST],
                                                       'access_create': 'creators'}},
                    conf={'acl': {'creators': {'user': ['alice@' + HOST]}},
                          'access_rules': {'creators': [{'allow': 'creators'}]}})
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    xt.is_(err(await create(bob, 'x')), ('forbidden', None),
           'access_create denies bob: forbidden (8.1.3.1)')
    xt.is_(err(await create(alice, 'x')), 'result', 'and allows alice')
    await xt.disconnect_all(alice, bob)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')
    srv.teardown()

    # -- a removed account leaves no rights behind (F13) -------------------
    srv = xt.Server(workers=2, modules={'mod_roster': {}, 'mod_pubsub': {
        'hosts': [HOST], 'max_queued_requests': 3}})
    for u in ('alice', 'bob', 'carol', 'dave'):
        srv.register(u, u + '-pw')
    rc, _, _ = srv.ctl('roster', 'add', 'bob', HOST, 'dave@' + HOST)
    xt.is_(rc, 0, 'bob and dave share presence (xmppctl roster add)')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    dave = await xt.login_ok(srv, 'dave', resource='d')
    cj = carol.jid.bare

    async def owner_list(c, node, what):
        r = await ps(c, 'get', "<%s node='%s'/>" % (what, node), OWNER)
        if r is None or r['type'] != 'result':
            return err(r)
        return sorted(e.get('jid') for e in r.xml.iter() if e.get('jid') is not None)

    def sub_none(node):
        def pred(m):
            s = event_of(m).find(q('subscription', EVENT))
            return s is not None and s.get('node') == node and s.get('subscription') == 'none'
        return pred

    # -- access is kept, not only checked at subscribe time (4.5) ---------
    await create(bob, 'wm', {'pubsub#access_model': 'whitelist'})
    r = await ps(bob, 'set', "<affiliations node='wm'><affiliation jid='%s' affiliation='member'/>"
                 "</affiliations>" % cj, OWNER)
    xt.is_((err(r), sub_state(await subscribe(carol, 'wm'))), ('result', 'subscribed'),
           'whitelist node: carol, a member, subscribes')
    r = await ps(bob, 'set', "<affiliations node='wm'><affiliation jid='%s' affiliation='none'/>"
                 "</affiliations>" % cj, OWNER)
    xt.is_(err(r), 'result', "bob sets carol's affiliation to none")
    xt.ok(await event(carol, sub_none('wm')) is not None,
          'carol is told: subscription none (8.8.4)')
    xt.is_(await owner_list(bob, 'wm', 'subscriptions'), [], 'and her subscription is gone')
    await publish(bob, 'wm', 'w1')
    xt.is_(await event(carol, lambda m: ev_items(m) is not None, timeout=1), None,
           'a publish to wm does not reach her')
    await create(bob, 'ow')
    xt.is_([sub_state(await subscribe(c, 'ow')) for c in (carol, dave)], ['subscribed'] * 2,
           'open node ow: carol and dave subscribe')
    r = await ps(bob, 'set', "<configure node='ow'>%s</configure>"
                 % form('submit', {'pubsub#access_model': 'whitelist'}), OWNER)
    xt.is_(err(r), 'result', 'bob configures ow: whitelist')
    xt.ok(await event(carol, sub_none('ow')) is not None,
          'carol, not on the whitelist, is told: subscription none')
    xt.is_(await owner_list(bob, 'ow', 'subscriptions'), [], 'both non-member subscriptions are gone')
    await publish(bob, 'ow', 'o1')
    xt.is_(await event(carol, lambda m: ev_items(m) is not None, timeout=1), None,
           'a publish to ow does not reach carol')
    await create(bob, 'op')
    xt.is_([sub_state(await subscribe(c, 'op')) for c in (carol, dave)], ['subscribed'] * 2,
           'open node op: carol and dave subscribe')
    r = await ps(bob, 'set', "<configure node='op'>%s</configure>"
                 % form('submit', {'pubsub#access_model': 'presence'}), OWNER)
    xt.is_(err(r), 'result', 'bob configures op: presence')
    xt.ok(await event(carol, sub_none('op')) is not None,
          'carol, without bob\'s presence, is told: subscription none (re-checked)')
    xt.is_(await owner_list(bob, 'op', 'subscriptions'), ['dave@' + HOST],
           "dave, bob's presence contact, stays subscribed")

    # -- a node's queue is bounded (max_queued_requests 3) -----------------
    # carol's <items/> on op (presence, she is not bob's contact) each wait
    # for a roster answer: sent at once, those past the queue's room are
    # refused at once.
    res = await asyncio.gather(*(items(carol, 'op') for _ in range(30)))
    outcomes = [err(r) for r in res]
    xt.ok(('resource-constraint', None) in outcomes and
          ('not-authorized', 'presence-subscription-required') in outcomes,
          'requests past max_queued_requests: resource-constraint, the others answered')
    wait_type = [r['error']['type'] for r in res if r is not None and r['type'] == 'error' and
                 err(r)[0] == 'resource-constraint']
    xt.ok(wait_type and all(t == 'wait' for t in wait_type), 'of type wait')

    # -- an owner's set that fails changes nothing (8.8.2) -----------------
    # A 500-byte localpart makes the subscription's key longer than the
    # store takes (511 bytes): the batch fails, with carol's entry in it.
    long_jid = 'x' * 500 + '@' + HOST
    r = await ps(bob, 'set', "<subscriptions node='op'><subscription jid='%s' "
                 "subscription='subscribed'/><subscription jid='%s' subscription='subscribed'/>"
                 "<subscription jid='dave@%s' subscription='none'/></subscriptions>"
                 % (cj, long_jid, HOST), OWNER)
    xt.is_(err(r), ('internal-server-error', None),
           "the owner's subscriptions set whose batch fails: an error")
    xt.is_(await owner_list(bob, 'op', 'subscriptions'), ['dave@' + HOST],
           'and the node is as it was (no entry added, dave not removed)')

    # -- a removed account leaves no rights behind -------------------------
    aj = alice.jid.bare
    await create(alice, 'own')
    xt.is_(sub_state(await subscribe(carol, 'own')), 'subscribed', 'carol subscribes to own')
    await create(bob, 'bn')
    await create(bob, 'co')
    r = await ps(bob, 'set', "<affiliations node='co'><affiliation jid='%s' affiliation='owner'/>"
                 "</affiliations>" % aj, OWNER)
    xt.is_(err(r), 'result', "bob makes alice a co-owner of co")
    xt.is_([sub_state(await subscribe(alice, 'bn', j)) for j in (aj, str(alice.jid))],
           ['subscribed'] * 2, 'alice subscribes to bn (bare and full JID)')

    rc, _, _ = srv.ctl('unregister', 'alice', HOST)
    xt.is_(rc, 0, 'xmppctl unregister alice')
    m = await event(carol, lambda m: event_of(m).find(q('delete', EVENT)) is not None)
    xt.is_(None if m is None else event_of(m).find(q('delete', EVENT)).get('node'), 'own',
           'her sole-owned node is deleted: its subscriber gets the delete event (8.4.2)')
    subs = affs = None
    for _ in range(50):     # the removal runs after the unregister, node by node
        subs = await owner_list(bob, 'bn', 'subscriptions')
        affs = await owner_list(bob, 'co', 'affiliations')
        if subs == [] and affs == [bob.jid.bare]:
            break
        await asyncio.sleep(0.1)
    xt.is_(subs, [], "her subscriptions (bare and full) to bn are gone")
    xt.is_(affs, [bob.jid.bare], "her ownership of co is gone, bob's stays")
    srv.register('alice', 'alice-pw2')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw2', resource='a')
    xt.is_(err(await ps(alice, 'get', "<configure node='co'/>", OWNER)), ('forbidden', None),
           'registered again: alice may not configure co (not an owner)')
    r = await ps(alice, 'get', '<subscriptions/>')
    sl = r.xml.find('%s/%s' % (q('pubsub'), q('subscriptions'))) if r is not None and \
        r['type'] == 'result' else None
    xt.is_(None if sl is None else len(sl), 0, 'and has no subscriptions (5.6)')
    xt.is_(err(await items(alice, 'own')), ('item-not-found', None), 'own is gone')
    await publish(bob, 'bn', 'after')
    xt.is_(await event(alice, timeout=1), None, "bob's publish to bn does not reach her")
    await xt.disconnect_all(alice, bob, carol, dave)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')
    srv.teardown()


xt.run(main, timeout=150)
