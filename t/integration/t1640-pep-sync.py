#!/usr/bin/python3
"""t1640-pep-sync: one list of bookmarks and one avatar, whichever way a
client keeps them.

  - XEP-0402 5.3: XEP-0048 bookmarks in XEP-0049 private storage
    (mod_private), the storage:bookmarks PEP node and the
    urn:xmpp:bookmarks:1 PEP node (mod_pubsub) are kept in step, each way;
  - XEP-0398: a vCard photo (mod_vcard) becomes the XEP-0084 PEP avatar,
    and a PEP avatar becomes the vCard photo and the XEP-0153 hash in
    presence.
"""

import asyncio
import base64
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_PRIVATE = 'jabber:iq:private'
NS_BM1 = 'storage:bookmarks'
NS_BM2 = 'urn:xmpp:bookmarks:1'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_VCARD = 'vcard-temp'
NS_UPDATE = 'vcard-temp:x:update'
NS_DATA = 'urn:xmpp:avatar:data'
NS_META = 'urn:xmpp:avatar:metadata'

PNG = base64.b64decode(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==')
PNG2 = PNG + b'\x00trailer'


def b64(data, wrap=0):
    s = base64.b64encode(data).decode()
    if wrap:
        s = '\n'.join(s[i:i + wrap] for i in range(0, len(s), wrap))
    return s


def sha1(data):
    return hashlib.sha1(data).hexdigest()


def private_q(inner):
    return "<query xmlns='%s'>%s</query>" % (NS_PRIVATE, inner)


def items_q(node, item_id=None, max_items=None):
    inner = "<item id='%s'/>" % item_id if item_id else ''
    mx = " max_items='%d'" % max_items if max_items else ''
    return "<pubsub xmlns='%s'><items node='%s'%s>%s</items></pubsub>" % (NS_PUBSUB, node, mx,
                                                                           inner)


def publish_q(node, item_id, payload, options=None):
    opts = ''
    if options:
        fields = ''.join("<field var='%s'><value>%s</value></field>" % kv for kv in options)
        opts = ("<publish-options><x xmlns='jabber:x:data' type='submit'>"
                "<field var='FORM_TYPE' type='hidden'><value>"
                "http://jabber.org/protocol/pubsub#publish-options</value></field>%s"
                "</x></publish-options>" % fields)
    return ("<pubsub xmlns='%s'><publish node='%s'><item id='%s'>%s</item></publish>%s"
            "</pubsub>" % (NS_PUBSUB, node, item_id, payload, opts))


def retract_q(node, item_id):
    return ("<pubsub xmlns='%s'><retract node='%s' notify='true'><item id='%s'/></retract>"
            "</pubsub>" % (NS_PUBSUB, node, item_id))


BM2_OPTIONS = [('pubsub#persist_items', 'true'), ('pubsub#max_items', 'max'),
               ('pubsub#send_last_published_item', 'never'),
               ('pubsub#access_model', 'whitelist')]


def items_of(r):
    """{id: payload element} of an items result, or None for an error."""
    if r is None or r['type'] != 'result':
        return None
    items = r.xml.find('{%s}pubsub/{%s}items' % (NS_PUBSUB, NS_PUBSUB))
    if items is None:
        return {}
    return {i.get('id'): (list(i)[0] if len(i) else None)
            for i in items.findall('{%s}item' % NS_PUBSUB)}


def rooms_of_bm2(items):
    """{room: (name, autojoin, nick, password, extension tags)} of bookmarks:1 items."""
    out = {}
    for jid, c in (items or {}).items():
        if c is None or c.tag != '{%s}conference' % NS_BM2:
            continue
        ext = c.find('{%s}extensions' % NS_BM2)
        out[jid] = (c.get('name'), c.get('autojoin') in ('true', '1'),
                    c.findtext('{%s}nick' % NS_BM2), c.findtext('{%s}password' % NS_BM2),
                    tuple(e.tag for e in ext) if ext is not None else ())
    return out


def rooms_of_bm1(storage):
    """{room: (name, autojoin, nick, password, extension tags)}, [url] of a <storage/>."""
    out, urls = {}, []
    if storage is None:
        return None, None
    for c in storage:
        if c.tag == '{%s}conference' % NS_BM1:
            ext = tuple(e.tag for e in c if e.tag not in ('{%s}nick' % NS_BM1,
                                                           '{%s}password' % NS_BM1))
            out[c.get('jid')] = (c.get('name'), c.get('autojoin') in ('true', '1'),
                                 c.findtext('{%s}nick' % NS_BM1),
                                 c.findtext('{%s}password' % NS_BM1), ext)
        elif c.tag == '{%s}url' % NS_BM1:
            urls.append(c.get('url'))
    return out, urls


async def private_storage(c):
    r = await c.iq('get', None, private_q("<storage xmlns='%s'/>" % NS_BM1))
    if r is None or r['type'] != 'result':
        return None
    return r.xml.find('{%s}query/{%s}storage' % (NS_PRIVATE, NS_BM1))


async def until(fetch, want, timeout=5):
    """Polls fetch() until it returns want (the sync is asynchronous)."""
    got = None
    for _ in range(int(timeout / 0.1)):
        got = await fetch()
        if got == want:
            break
        await asyncio.sleep(0.1)
    return got


async def features_of(c, jid):
    r = await c.iq('get', jid, "<query xmlns='%s'/>" % NS_INFO)
    if r is None or r['type'] != 'result':
        return set()
    return {f.get('var') for f in r.xml.iter('{%s}feature' % NS_INFO)}


def vcard_photo(r):
    if r is None or r['type'] != 'result':
        return None
    photo = r.xml.find('{%s}vCard/{%s}PHOTO' % (NS_VCARD, NS_VCARD))
    if photo is None:
        return ()
    binval = ''.join((photo.findtext('{%s}BINVAL' % NS_VCARD) or '').split())
    return (photo.findtext('{%s}TYPE' % NS_VCARD), binval)


async def main():
    srv = xt.Server(workers=2, modules={'mod_private': {}, 'mod_disco': {}, 'mod_roster': {},
                                        'mod_vcard': {}, 'mod_caps': {},
                                        'mod_pubsub': {}})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='old')
    alice2 = await xt.login_ok(srv, 'alice', 'alice-pw', resource='new')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b')
    ajid = srv.jid('alice')

    feats = await features_of(alice, ajid)
    xt.ok(NS_BM2 + '#compat' in feats and NS_BM2 + '#compat-pep' in feats,
          'the account advertises urn:xmpp:bookmarks:1#compat and #compat-pep (XEP-0402 5.3)') \
        or xt.diag(sorted(feats))
    xt.ok('urn:xmpp:pep-vcard-conversion:0' in feats,
          'and urn:xmpp:pep-vcard-conversion:0 (XEP-0398 3)')

    # -- an old client's private storage reaches both PEP nodes ----------------
    legacy = ("<storage xmlns='%s'>"
              "<conference jid='tea@conf.example' name='Tea' autojoin='true'>"
              "<nick>al</nick><x xmlns='test:ext'/></conference>"
              "<conference jid='war@conf.example' autojoin='false'><password>s3</password>"
              "</conference>"
              "<url name='Site' url='https://example.org/'/></storage>" % NS_BM1)
    r = await alice.iq('set', None, private_q(legacy))
    xt.is_(r and r['type'], 'result', 'an old client stores XEP-0048 bookmarks privately')
    want = {'tea@conf.example': ('Tea', True, 'al', None, ('{test:ext}x',)),
            'war@conf.example': (None, False, None, 's3', ())}

    async def bm2():
        return rooms_of_bm2(items_of(await alice2.iq('get', ajid, items_q(NS_BM2))))
    xt.is_(await until(bm2, want), want,
           'a new client reads one urn:xmpp:bookmarks:1 item per room, its id the room JID, '
           'with name, autojoin, nick, password and the extension')

    async def pep_bm1():
        it = items_of(await alice2.iq('get', ajid, items_q(NS_BM1)))
        s = it.get('current') if it else None
        return rooms_of_bm1(s)[0] if s is not None else None
    xt.is_(await until(pep_bm1, want), want,
           'the storage:bookmarks PEP node holds the same list (item "current")')

    r = await bob.iq('get', ajid, items_q(NS_BM2))
    xt.ok(r is not None and r['type'] == 'error',
          'another user cannot read them (access model whitelist, XEP-0223)') or xt.diag(str(r))

    # -- a new client's publish and retract reach private storage --------------
    bm = ("<conference xmlns='%s' name='Coffee' autojoin='true'><nick>alice</nick>"
          "</conference>" % NS_BM2)
    r = await alice2.iq('set', ajid, publish_q(NS_BM2, 'coffee@conf.example', bm, BM2_OPTIONS))
    xt.is_(r and r['type'], 'result',
           'a new client publishes a bookmark with XEP-0402\'s publish-options') or xt.diag(str(r))
    want3 = dict(want)
    want3['coffee@conf.example'] = ('Coffee', True, 'alice', None, ())

    async def priv():
        return rooms_of_bm1(await private_storage(alice))
    got = await until(priv, (want3, ['https://example.org/']))
    xt.is_(got, (want3, ['https://example.org/']),
           'the old client\'s private storage has it, its <url/> bookmark kept')
    r = await alice2.iq('set', ajid, retract_q(NS_BM2, 'war@conf.example'))
    xt.is_(r and r['type'], 'result', 'a new client retracts one')
    del want3['war@conf.example']
    got = await until(priv, (want3, ['https://example.org/']))
    xt.is_(got, (want3, ['https://example.org/']), 'gone from private storage too')
    xt.is_(await until(pep_bm1, want3), want3, 'and from the storage:bookmarks node')

    # -- a XEP-0048-over-PEP client reaches the other two ----------------------
    pep_legacy = ("<storage xmlns='%s'><conference jid='solo@conf.example' name='Solo' "
                  "autojoin='1'><nick>a</nick></conference></storage>" % NS_BM1)
    r = await alice.iq('set', ajid, publish_q(NS_BM1, 'current', pep_legacy,
                                              [('pubsub#persist_items', 'true'),
                                               ('pubsub#access_model', 'whitelist')]))
    xt.is_(r and r['type'], 'result', 'a client publishes XEP-0048 bookmarks to PEP')
    want1 = {'solo@conf.example': ('Solo', True, 'a', None, ())}
    xt.is_(await until(bm2, want1), want1,
           'urn:xmpp:bookmarks:1 follows: the new room published, the others retracted')
    got = await until(priv, (want1, []))
    xt.is_(got, (want1, []), 'private storage holds the list as published')

    # -- another publisher on her node does not write her private storage ---
    def affs_q(jid, aff):
        return ("<pubsub xmlns='%s#owner'><affiliations node='%s'><affiliation jid='%s' "
                "affiliation='%s'/></affiliations></pubsub>" % (NS_PUBSUB, NS_BM2, jid, aff))
    r = await alice2.iq('set', ajid, affs_q(srv.jid('bob'), 'publisher'))
    xt.is_(r and r['type'], 'result', 'alice makes bob a publisher of her bookmarks node')
    r = await bob.iq('set', ajid, publish_q(NS_BM2, 'evil@conf.example',
                                            "<conference xmlns='%s' name='Evil'/>" % NS_BM2))
    xt.is_(r and r['type'], 'result', 'bob publishes a bookmark there')
    for _ in range(15):
        got = await priv()
        if got != (want1, []):
            break
        await asyncio.sleep(0.1)
    xt.is_(got, (want1, []), "her private storage is not rewritten by bob's publish")
    r = await alice2.iq('set', ajid, retract_q(NS_BM2, 'evil@conf.example'))
    xt.is_(r and r['type'], 'result', 'alice retracts it')
    r = await alice2.iq('set', ajid, affs_q(srv.jid('bob'), 'none'))
    xt.is_(r and r['type'], 'result', "and ends bob's affiliation")
    xt.is_(await until(bm2, want1), want1, 'her bookmarks node is as before')

    # -- nicknames (XEP-0172 4.5): a PEP node like any other -----------------
    NS_NICK = 'http://jabber.org/protocol/nick'
    r = await alice2.iq('set', ajid, publish_q(NS_NICK, 'current',
                                               "<nick xmlns='%s'>Alice A.</nick>" % NS_NICK))
    xt.is_(r and r['type'], 'result', 'alice publishes her nickname')
    m = await alice.message(pred=lambda m: m.xml.find(
        '{%s#event}event/{%s#event}items' % (NS_PUBSUB, NS_PUBSUB)) is not None and m.xml.find(
        '{%s#event}event/{%s#event}items' % (NS_PUBSUB, NS_PUBSUB)).get('node') == NS_NICK)
    nick = m.xml.find('.//{%s}nick' % NS_NICK) if m is not None else None
    xt.is_(nick.text if nick is not None else None, 'Alice A.',
           'her other resource gets the event with it')
    r = await bob.iq('get', ajid, items_q(NS_NICK))
    err = r.xml.find('{jabber:client}error') if r is not None and r['type'] == 'error' else None
    xt.ok(err is not None and err.find(
        '{http://jabber.org/protocol/pubsub#errors}presence-subscription-required') is not None,
        'someone without her presence cannot read it (presence access, the default)') \
        or xt.diag(str(r))

    # -- avatars: vCard -> PEP ---------------------------------------------------
    bjid = srv.jid('bob')
    vc = ("<vCard xmlns='%s'><FN>Bob</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>%s</BINVAL>"
          "</PHOTO></vCard>" % (NS_VCARD, b64(PNG, wrap=20)))
    r = await bob.iq('set', None, vc)
    xt.is_(r and r['type'], 'result', 'bob sets a vCard with a photo')

    async def meta_of(c, jid):
        # The newest (XEP-0060 6.5.7), as XEP-0084 clients ask for it.
        it = items_of(await c.iq('get', jid, items_q(NS_META, max_items=1)))
        if not it or len(it) != 1:
            return None
        (iid, m), = list(it.items())
        infos = [(i.get('id'), i.get('bytes'), i.get('type')) for i in m] if m is not None else []
        return iid, infos
    want_meta = (sha1(PNG), [(sha1(PNG), str(len(PNG)), 'image/png')])
    xt.is_(await until(lambda: meta_of(alice, bjid), want_meta), want_meta,
           'anyone reads his XEP-0084 metadata: item id and info id the SHA-1, bytes, type')
    it = items_of(await alice.iq('get', bjid, items_q(NS_DATA, sha1(PNG))))
    data = it.get(sha1(PNG)) if it else None
    xt.is_(base64.b64decode(data.text) if data is not None else None, PNG,
           'and the data item holds the image')

    # -- avatars: PEP -> vCard and presence -------------------------------------
    carol = await xt.login_ok(srv, 'carol', 'carol-pw', resource='c1')
    carol2 = await xt.login_ok(srv, 'carol', 'carol-pw', resource='c2')
    cjid = srv.jid('carol')
    h2 = sha1(PNG2)
    r = await carol.iq('set', cjid, publish_q(NS_DATA, h2, "<data xmlns='%s'>%s</data>"
                                              % (NS_DATA, b64(PNG2))))
    xt.is_(r and r['type'], 'result', 'carol publishes avatar data to PEP')
    r = await carol.iq('set', cjid, publish_q(NS_META, h2, "<metadata xmlns='%s'><info id='%s' "
                                              "bytes='%d' type='image/gif'/></metadata>"
                                              % (NS_META, h2, len(PNG2))))
    xt.is_(r and r['type'], 'result', 'and its metadata')

    async def carol_photo():
        return vcard_photo(await alice.iq('get', cjid, "<vCard xmlns='%s'/>" % NS_VCARD))
    xt.is_(await until(carol_photo, ('image/gif', b64(PNG2))), ('image/gif', b64(PNG2)),
           'her vCard now has that PHOTO (TYPE from the metadata, BINVAL the data)')
    carol.send_raw('<presence/>')
    p = await carol2.presence(frm=srv.jid('carol', 'c1'),
                              pred=lambda p: p.xml.find('{%s}x' % NS_UPDATE) is not None)
    x = p.xml.find('{%s}x' % NS_UPDATE) if p is not None else None
    xt.is_(x.findtext('{%s}photo' % NS_UPDATE) if x is not None else None, h2,
           'and her presence carries the XEP-0153 hash of it')
    r = await carol.iq('set', cjid, publish_q(NS_META, 'current',
                                              "<metadata xmlns='%s'/>" % NS_META))
    xt.is_(await until(carol_photo, ()), (),
           'an empty <metadata/> (avatar disabled, XEP-0084 4.5) removes the vCard photo')
    r = await carol.iq('set', cjid, "<pubsub xmlns='%s#owner'><affiliations node='%s'>"
                       "<affiliation jid='%s' affiliation='publisher'/></affiliations></pubsub>"
                       % (NS_PUBSUB, NS_META, bjid))
    xt.is_(r and r['type'], 'result', 'carol makes bob a publisher of her avatar metadata')
    r = await bob.iq('set', cjid, publish_q(NS_META, 'bobs', "<metadata xmlns='%s'><info id='%s' "
                                            "bytes='%d' type='image/gif'/></metadata>"
                                            % (NS_META, h2, len(PNG2))))
    xt.is_(r and r['type'], 'result', 'bob publishes metadata there')
    for _ in range(15):
        got = await carol_photo()
        if got != ():
            break
        await asyncio.sleep(0.1)
    xt.is_(got, (), "her vCard is not rewritten by bob's publish")

    # -- the vCard without a photo disables the PEP avatar ---------------------
    r = await bob.iq('set', None, "<vCard xmlns='%s'><FN>Bob</FN></vCard>" % NS_VCARD)
    xt.is_(await until(lambda: meta_of(alice, bjid), ('current', [])), ('current', []),
           'bob\'s vCard without a photo publishes an empty metadata item')

    # -- persisted: after a restart the lists are still one --------------------
    await xt.disconnect_all(alice, alice2, bob, carol, carol2)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')
    srv.start()
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='old')
    xt.is_(rooms_of_bm2(items_of(await alice.iq('get', ajid, items_q(NS_BM2)))), want1,
           'after a restart: the bookmarks:1 items')
    xt.is_(rooms_of_bm1(await private_storage(alice)), (want1, []), 'and the private element')
    await xt.disconnect_all(alice)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM again')


xt.run(main)
