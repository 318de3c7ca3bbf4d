#!/usr/bin/python3
"""t1610-caps: entity capabilities (XEP-0115, mod_caps).

The clients answer disco#info themselves (a handler of the test), so the
test sees every query the server sends. Checked: the server's own caps in
the stream features after authentication, its ver the XEP-0115 5.1 hash of
what disco#info on the server's node#ver answers; a presence with an
unknown hash makes the server ask that resource for node#ver once, and
the verified features answer xmppd_caps_has_feature (through the probe
module: 1 for an advertised feature, 0 for another); a second user with
the same hash is not asked (the cache is for all users) and has the
features at once; an answer that does not match its hash (XEP-0115 5.4) is
not taken (-1), nor is the legacy form without 'hash'; an unavailable
presence, or one without caps, forgets the resource (-1)."""

import asyncio
import base64
import hashlib
import os
import shutil
import sys

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

HOST = 'xmppd.test'
NS = 'urn:xmppd:test:entity'
NS_CAPS = 'http://jabber.org/protocol/caps'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NODE = 'https://xmppd.test/client'
FEATURES = [NS_INFO, NS_CAPS, 'urn:xmpp:test:node+notify', 'eu.siacs.conversations.axolotl']
IDENTITY = ('client', 'phone', '', 'Test client')
FORM = ('urn:xmpp:dataforms:softwareinfo', {'software': ['testclient'], 'os': ['Debian']})


def ver_of(identities, features, forms=()):
    """XEP-0115 5.1."""
    s = ''
    for i in sorted('/'.join(x) for x in identities):
        s += i + '<'
    for f in sorted(features):
        s += f + '<'
    for ftype, fields in sorted(forms):
        s += ftype + '<'
        for var in sorted(fields):
            s += var + '<'
            for v in sorted(fields[var]):
                s += v + '<'
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


VER = ver_of([IDENTITY], FEATURES, [FORM])


def info_xml(node):
    form = "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>" \
           "<value>%s</value></field>%s</x>" % (FORM[0], ''.join(
               "<field var='%s'><value>%s</value></field>" % (k, v[0]) for k, v in FORM[1].items()))
    return "<query xmlns='%s' node='%s'><identity category='%s' type='%s' name='%s'/>%s%s" \
           "</query>" % (NS_INFO, node, IDENTITY[0], IDENTITY[1], IDENTITY[3],
                         ''.join("<feature var='%s'/>" % f for f in FEATURES), form)


class Answerer:
    """Answers disco#info to a client, counting the queries."""

    def __init__(self, c, extra_feature=None, delay=0):
        self.c = c
        self.queries = []
        self.extra = extra_feature
        self.delay = delay
        c.xmpp.register_handler(Callback('caps-info', MatchXPath(
            '{jabber:client}iq/{%s}query' % NS_INFO), self.handle))

    def handle(self, iq):
        if iq['type'] != 'get':
            return
        node = iq.xml.find('{%s}query' % NS_INFO).get('node') or ''
        self.queries.append((iq['from'].full, node))
        body = info_xml(node)
        if self.extra:
            body = body.replace('</query>', "<feature var='%s'/></query>" % self.extra)
        raw = "<iq type='result' id='%s' to='%s'>%s</iq>" % (iq['id'], iq['from'].full, body)
        if self.delay:
            asyncio.get_event_loop().call_later(self.delay, self.c.xmpp.send_raw, raw)
        else:
            self.c.xmpp.send_raw(raw)


def caps_presence(c, ver=VER, hash_='sha-1'):
    h = " hash='%s'" % hash_ if hash_ else ''
    c.xmpp.send_raw("<presence><c xmlns='%s'%s node='%s' ver='%s'/></presence>" % (
        NS_CAPS, h, NODE, ver))


async def has(c, feature):
    r = await c.iq('get', HOST, "<caps xmlns='%s' feature='%s'/>" % (NS, feature))
    e = r.xml.find('{%s}caps' % NS) if r is not None and r['type'] == 'result' else None
    return None if e is None else e.get('has')


async def hooked(c):
    r = await c.iq('get', HOST, "<hooked xmlns='%s'/>" % NS)
    e = r.xml.find('{%s}hooked' % NS) if r is not None and r['type'] == 'result' else None
    return None if e is None else (int(e.get('runs')), e.get('to'), e.get('available'),
                                   e.get('has'))


async def wait_has(c, feature, want, timeout=5):
    got = None
    for _ in range(int(timeout / 0.1)):
        got = await has(c, feature)
        if got == want:
            break
        await asyncio.sleep(0.1)
    return got


async def main():
    moddir = xt.scratch_dir('t1610-build') / 'modules'
    moddir.mkdir()
    for name in ('mod_caps', 'mod_disco', 'mod_roster'):
        shutil.copy(os.path.join(xt.MODULE_DIR, name + '.so'), moddir / (name + '.so'))
    xt.build_test_module(moddir, 'mod_entityprobe')
    srv = xt.Server(workers=2, conf={'module_dir': str(moddir)}, modules={
        'mod_caps': {}, 'mod_disco': {}, 'mod_roster': {}, 'mod_entityprobe': {}})
    for u in ('alice', 'bob', 'carol', 'dave', 'erin'):
        srv.register(u, u + '-pw')

    # -- the server's caps in the stream features (XEP-0115 6.3) ------------------
    alice = xt.Client(srv, 'alice', 'alice-pw', resource='phone', presence=False)
    seen = []
    alice.xmpp.register_handler(Callback('record features', MatchXPath(
        '{%s}features' % xt.NS_STREAM), lambda f: seen.append(f.xml)))
    await alice.connect(10)
    xt.ok(alice.ok, 'alice logs in')
    caps = [f.find('{%s}c' % NS_CAPS) for f in seen]
    xt.is_([c is not None for c in caps][-1:], [True],
           'the features after authentication carry the server\'s <c/>')
    xt.ok(caps and caps[0] is None, 'and those before it do not')
    c = caps[-1] if caps else None
    if c is not None:
        xt.is_(c.get('hash'), 'sha-1', 'hash sha-1')
        r = await alice.iq('get', HOST, "<query xmlns='%s' node='%s#%s'/>" % (
            NS_INFO, c.get('node'), c.get('ver')))
        q = r.xml.find('{%s}query' % NS_INFO) if r is not None and r['type'] == 'result' else None
        xt.ok(q is not None and len(q) > 0, 'disco#info on the server\'s node#ver answers')
        if q is not None:
            ids = [(i.get('category'), i.get('type'), i.get('{http://www.w3.org/XML/1998/namespace}lang') or '',
                    i.get('name') or '') for i in q.findall('{%s}identity' % NS_INFO)]
            feats = [f.get('var') for f in q.findall('{%s}feature' % NS_INFO)]
            xt.is_(ver_of(ids, feats), c.get('ver'), 'ver is the hash of that answer (5.1)')
            xt.ok(NS_CAPS in feats, 'the server lists the caps feature')
    else:
        for _ in range(3):
            xt.ok(False, 'no <c/> to check')

    # -- a new hash: asked once, verified, answers has_feature --------------------
    aa = Answerer(alice)
    caps_presence(alice)
    got = await wait_has(alice, 'urn:xmpp:test:node+notify', '1')
    xt.is_(got, '1', 'alice\'s advertised feature: 1 once her answer is verified')
    xt.is_(aa.queries, [(HOST, '%s#%s' % (NODE, VER))],
           'the server asked her once, from the server, for node#ver')
    xt.is_(await has(alice, 'urn:xmpp:test:other'), '0', 'a feature she does not have: 0')
    xt.is_(await hooked(alice), (1, '-', '1', '1'),
           'caps_presence ran once for her broadcast (to NULL), once verified, '
           'with has_feature answering during the run')

    bob = await xt.login_ok(srv, 'bob', resource='laptop', presence=False)
    ba = Answerer(bob)
    caps_presence(bob)
    got = await wait_has(bob, 'eu.siacs.conversations.axolotl', '1')
    xt.is_(got, '1', 'bob, same hash: the cached features, at once')
    await asyncio.sleep(0.5)
    xt.is_(ba.queries, [], 'and nobody asked bob')
    xt.is_(len(aa.queries), 1, 'nor alice again')
    xt.is_(await hooked(bob), (1, '-', '1', '1'), 'caps_presence ran for bob at once')

    # -- a wrong answer is not taken (5.4) -----------------------------------------
    carol = await xt.login_ok(srv, 'carol', resource='pc', presence=False)
    ca = Answerer(carol, extra_feature='urn:xmpp:test:injected')
    bad_ver = ver_of([IDENTITY], FEATURES + ['urn:xmpp:test:claimed'], [FORM])
    caps_presence(carol, ver=bad_ver)
    for _ in range(50):
        if ca.queries:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    xt.is_(len(ca.queries), 1, 'carol\'s unknown hash: the server asked her')
    xt.is_(await has(carol, 'urn:xmpp:test:injected'), '-1',
           'her answer does not hash to her ver: not taken (-1)')
    xt.is_(await has(carol, NS_INFO), '-1', 'nothing of it')
    xt.is_(await hooked(carol), (0, '-', '0', '0'), 'and caps_presence did not run for her')

    dave = await xt.login_ok(srv, 'dave', resource='old', presence=False)
    da = Answerer(dave)
    caps_presence(dave, ver='1.0', hash_=None)
    await asyncio.sleep(0.5)
    xt.is_((da.queries, await has(dave, NS_INFO)), ([], '-1'),
           'the legacy form (no hash): not asked, not tracked')

    # -- many resources with one hash while it is asked for ------------------------
    # Twenty resources send a hash nobody has verified yet; the one asked
    # answers a second later: all of them wait for that answer, and each
    # hears of it (a client release seen by many users at once).
    many = [await xt.login_ok(srv, 'erin', 'erin-pw', resource='r%02d' % i, presence=False)
            for i in range(20)]
    feats = FEATURES + ['urn:xmpp:test:many']
    answerers = [Answerer(c, extra_feature='urn:xmpp:test:many', delay=1.0) for c in many]
    many_ver = ver_of([IDENTITY], feats, [FORM])
    for c in many:
        caps_presence(c, ver=many_ver)
    runs = []
    for _ in range(60):
        runs = [await hooked(c) for c in many]
        if all(r is not None and r[0] >= 1 for r in runs):
            break
        await asyncio.sleep(0.1)
    xt.is_(sum(len(a.queries) for a in answerers), 1, 'twenty resources, one hash: asked once')
    xt.is_([r[0] if r else None for r in runs], [1] * 20,
           'caps_presence ran once for each of the twenty after the answer')

    # -- forgetting ----------------------------------------------------------------
    bob.xmpp.send_raw("<presence/>")
    xt.is_(await wait_has(bob, NS_INFO, '-1'), '-1', 'a presence without caps: bob forgotten')
    alice.xmpp.send_raw("<presence type='unavailable'/>")
    xt.is_(await wait_has(alice, NS_INFO, '-1'), '-1', 'unavailable: alice forgotten')
    xt.is_(await hooked(alice), (2, '-', '0', '-1'), 'caps_presence ran for her unavailable')
    caps_presence(alice)
    xt.is_(await wait_has(alice, NS_INFO, '1'), '1', 'available again: known at once')
    xt.is_(len(aa.queries), 1, 'without asking again')
    xt.is_(await hooked(alice), (3, '-', '1', '1'), 'caps_presence ran for it')
    caps_presence(alice)        # a status change: same resource, same hash
    got = None
    for _ in range(50):
        got = await hooked(alice)
        if got is not None and got[0] >= 4:
            break
        await asyncio.sleep(0.1)
    xt.is_(got, (4, '-', '1', '1'),
           'a second presence with the same caps runs caps_presence again')

    await xt.disconnect_all(alice, bob, carol, dave)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')
    srv.teardown()


xt.run(main, timeout=200)
