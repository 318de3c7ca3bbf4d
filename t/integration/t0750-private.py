#!/usr/bin/python3
"""t0750-private: XEP-0049 Private XML Storage (mod_private)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_PRIVATE = 'jabber:iq:private'
NS_BOOKMARKS = 'storage:bookmarks'
NS_PREFS = 'test:prefs'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
MAX_ITEMS = 6


def q(inner=''):
    return "<query xmlns='%s'>%s</query>" % (NS_PRIVATE, inner)


def bookmarks(room):
    return ("<storage xmlns='%s'><conference autojoin='true' jid='%s' name='The room'>"
            "<nick>alice</nick></conference></storage>" % (NS_BOOKMARKS, room))


# Mixed content must come back.
PREFS = "<prefs xmlns='%s'>Hello <b>world</b> again<c a='1'/>tail</prefs>" % NS_PREFS


def stored(r, ns, name):
    """The element ns/name in a private result, or None."""
    if r is None or r['type'] != 'result':
        return None
    query = r.xml.find('{%s}query' % NS_PRIVATE)
    return query.find('{%s}%s' % (ns, name)) if query is not None else None


def condition(r):
    return r['error']['condition'] if r is not None and r['type'] == 'error' else None


def rtype(r):
    return r['type'] if r is not None else None


async def main():
    srv = xt.Server(workers=2, modules={'mod_private': {'max_items': MAX_ITEMS}, 'mod_disco': {}})
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='a')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b')

    # Nothing stored: the empty element asked for (XEP-0049 2.3).
    r = await alice.iq('get', None, q("<storage xmlns='%s'/>" % NS_BOOKMARKS))
    e = stored(r, NS_BOOKMARKS, 'storage')
    xt.ok(e is not None and len(e) == 0 and not e.attrib,
          'get before any set: an empty <storage/> in its namespace') or xt.diag(str(r))

    # Round trip, two elements in one set.
    r = await alice.iq('set', None, q(bookmarks('tea@party.example') + PREFS))
    xt.is_(rtype(r), 'result', 'alice stores bookmarks and prefs in one set') or xt.diag(str(r))
    e = stored(await alice.iq('get', None, q("<storage xmlns='%s'/>" % NS_BOOKMARKS)),
               NS_BOOKMARKS, 'storage')
    conf = e.find('{%s}conference' % NS_BOOKMARKS) if e is not None else None
    xt.is_(conf.get('jid') if conf is not None else None, 'tea@party.example',
           'bookmarks come back with the conference jid')
    xt.is_(conf.findtext('{%s}nick' % NS_BOOKMARKS) if conf is not None else None, 'alice',
           'and the nick')
    r = await alice.iq('get', srv.jid('alice'), q("<prefs xmlns='%s'/>" % NS_PREFS))
    e = stored(r, NS_PREFS, 'prefs')
    xt.is_(e.text if e is not None else None, 'Hello ', 'prefs (asked at her bare JID): leading text')
    b = e.find('{%s}b' % NS_PREFS) if e is not None else None
    xt.is_((b.text, b.tail) if b is not None else None, ('world', ' again'),
           'the child element and the text after it (mixed content kept)')
    c = e.find('{%s}c' % NS_PREFS) if e is not None else None
    xt.is_((c.get('a'), c.tail) if c is not None else None, ('1', 'tail'), 'the last child and tail')

    # Attributes in other namespaces (slixmpp drops those, so raw bytes).
    raw = await xt.Raw.open(srv)
    await raw.login('alice', 'alice-pw', 'raw')
    await raw.send("<iq type='set' id='attr1'>%s</iq>"
                   % q("<attrs xmlns='test:attrs' xmlns:t='urn:test:attr' t:mode='dark' "
                       "xml:lang='de'/>"))
    m = await raw.read_until(r"<iq[^>]*id=.attr1.[^>]*>|<iq[^>]*id=.attr1.[^>]*/>")
    xt.like(m.group(0) if m else '', "type=.result.", 'raw: the set with namespaced attributes is stored')
    raw.set_mark()
    await raw.send("<iq type='get' id='attr2'>%s</iq>" % q("<attrs xmlns='test:attrs'/>"))
    m = await raw.read_until(r"<iq[^>]*id=.attr2.*?</iq>")
    e = None
    try:
        iq = xt.ET.fromstring("<w xmlns='jabber:client'>%s</w>" % m.group(0))[0]
        e = iq.find('{%s}query/{test:attrs}attrs' % NS_PRIVATE)
    except (AttributeError, xt.ET.ParseError, IndexError) as ex:
        xt.diag('raw get: %r %r' % (ex, raw.since_mark()[-500:]))
    xt.is_(e.get('{urn:test:attr}mode') if e is not None else None, 'dark',
           'raw: an attribute in its own namespace comes back')
    xt.is_(e.get('{http://www.w3.org/XML/1998/namespace}lang') if e is not None else None, 'de',
           'raw: and xml:lang')
    raw.close()

    # A set replaces what was stored under the same name and namespace.
    r = await alice.iq('set', None, q(bookmarks('rabbit@hole.example')))
    xt.is_(rtype(r), 'result', 'alice replaces her bookmarks')
    e = stored(await alice.iq('get', None, q("<storage xmlns='%s'/>" % NS_BOOKMARKS)),
               NS_BOOKMARKS, 'storage')
    confs = e.findall('{%s}conference' % NS_BOOKMARKS) if e is not None else []
    xt.is_([x.get('jid') for x in confs], ['rabbit@hole.example'], 'only the new bookmarks come back')

    # Per-user isolation.
    r = await bob.iq('set', None, q("<prefs xmlns='%s'>bob's</prefs>" % NS_PREFS))
    xt.is_(rtype(r), 'result', 'bob stores his own prefs')
    e = stored(await bob.iq('get', None, q("<prefs xmlns='%s'/>" % NS_PREFS)), NS_PREFS, 'prefs')
    xt.is_(e.text if e is not None else None, "bob's", 'bob reads his prefs')
    e = stored(await alice.iq('get', None, q("<prefs xmlns='%s'/>" % NS_PREFS)), NS_PREFS, 'prefs')
    xt.is_(e.text if e is not None else None, 'Hello ', "alice's prefs are still hers")
    e = stored(await bob.iq('get', None, q("<storage xmlns='%s'/>" % NS_BOOKMARKS)),
               NS_BOOKMARKS, 'storage')
    xt.ok(e is not None and len(e) == 0, "bob does not see alice's bookmarks")

    # Another JID: forbidden (XEP-0049 2.3, 3).
    r = await bob.iq('get', srv.jid('alice'), q("<prefs xmlns='%s'/>" % NS_PREFS))
    xt.is_(condition(r), 'forbidden', "bob getting alice's private XML: forbidden")
    xt.unlike(str(r), 'Hello', 'and the error does not carry her data')
    r = await bob.iq('set', srv.jid('alice'), q("<prefs xmlns='%s'>mallory</prefs>" % NS_PREFS))
    xt.is_(condition(r), 'forbidden', "bob setting alice's private XML: forbidden")
    r = await alice.iq('set', srv.host, q("<prefs xmlns='%s'>x</prefs>" % NS_PREFS))
    xt.is_(condition(r), 'forbidden', 'a set to the server JID: forbidden')
    e = stored(await alice.iq('get', None, q("<prefs xmlns='%s'/>" % NS_PREFS)), NS_PREFS, 'prefs')
    xt.is_(e.text if e is not None else None, 'Hello ', "alice's prefs are untouched")

    # Reserved namespaces and empty queries: not-acceptable / bad-request.
    for ns in ('jabber:client', 'jabber:server', NS_PRIVATE):
        r = await alice.iq('set', None, q("<foo xmlns='%s'>x</foo>" % ns))
        xt.is_(condition(r), 'not-acceptable', 'a set in %s: not-acceptable' % ns)
        r = await alice.iq('get', None, q("<foo xmlns='%s'/>" % ns))
        xt.is_(condition(r), 'not-acceptable', 'a get in %s: not-acceptable' % ns)
    r = await alice.iq('set', None, q())
    xt.is_(condition(r), 'not-acceptable', 'an empty set: not-acceptable')
    r = await alice.iq('get', None, q())
    xt.is_(condition(r), 'bad-request', 'an empty get: bad-request')
    # All or nothing: a good element next to a bad one is not stored.
    r = await alice.iq('set', None, q("<good xmlns='test:good'>1</good><bad xmlns='jabber:client'/>"))
    xt.is_(condition(r), 'not-acceptable', 'a set with a reserved element among good ones is refused')
    e = stored(await alice.iq('get', None, q("<good xmlns='test:good'/>")), 'test:good', 'good')
    xt.ok(e is not None and not e.text, 'and its good element was not stored')

    # Sizes: max_size (default 65536).
    big = "<big xmlns='test:big'>%s</big>" % ('x' * 66000)
    r = await alice.iq('set', None, q(big))
    xt.is_(condition(r), 'not-acceptable', 'an element over max_size: not-acceptable')
    r = await alice.iq('set', None, q("<small xmlns='test:big'>ok</small>" + big))
    xt.is_(condition(r), 'not-acceptable', 'a set with one element too big is refused whole')
    e = stored(await alice.iq('get', None, q("<small xmlns='test:big'/>")), 'test:big', 'small')
    xt.ok(e is not None and not e.text, 'and its small element was not stored')

    # max_items: alice holds 3 (storage, prefs, attrs); room for 3 more.
    r = await alice.iq('set', None, q(''.join("<i%d xmlns='test:n'/>" % i for i in range(3))))
    xt.is_(rtype(r), 'result', 'up to max_items elements are stored')
    r = await alice.iq('set', None, q("<one-more xmlns='test:n'/>"))
    xt.is_(condition(r), 'resource-constraint', 'one more than max_items: resource-constraint')
    r = await alice.iq('set', None, q("<i0 xmlns='test:n'>again</i0>"))
    xt.is_(rtype(r), 'result', 'replacing a stored element is still allowed at the limit')

    # Service discovery on the account.
    r = await alice.iq('get', srv.jid('alice'), "<query xmlns='%s'/>" % NS_DISCO_INFO)
    xt.like(str(r), r"<feature var=.jabber:iq:private.", 'an account advertises jabber:iq:private')

    # Everything survives a restart.
    await xt.disconnect_all(alice, bob)
    xt.is_(srv.restart(), 0, 'xmppd stops with 0 and starts again')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='a')
    e = stored(await alice.iq('get', None, q("<storage xmlns='%s'/>" % NS_BOOKMARKS)),
               NS_BOOKMARKS, 'storage')
    confs = e.findall('{%s}conference' % NS_BOOKMARKS) if e is not None else []
    xt.is_([x.get('jid') for x in confs], ['rabbit@hole.example'], 'bookmarks survive the restart')
    e = stored(await alice.iq('get', None, q("<prefs xmlns='%s'/>" % NS_PREFS)), NS_PREFS, 'prefs')
    b = e.find('{%s}b' % NS_PREFS) if e is not None else None
    xt.is_((e.text, b.text, b.tail) if b is not None else None, ('Hello ', 'world', ' again'),
           'and so do the prefs, mixed content and all')

    # The data goes with the account (XEP-0077 3.2). Seen in the spool by
    # mdb_dump, after the removal and before the name is registered again
    # (mod_private also wipes on register_user, which would hide a removal
    # that left rows). A row's key is HOST, NODE, namespace, element name.
    await alice.disconnect()
    rows = xt.user_rows(srv, 'alice')
    xt.is_(sorted(xt.key_parts(k) for k in rows.get('mod_private', [])),
           sorted([(NS_BOOKMARKS, 'storage'), (NS_PREFS, 'prefs'), ('test:attrs', 'attrs'),
                   ('test:n', 'i0'), ('test:n', 'i1'), ('test:n', 'i2')]),
           "before the removal the spool holds alice's six elements, and none of the refused ones")
    code, out, err = await srv.actl('unregister', 'alice', srv.host)
    xt.is_(code, 0, 'xmppctl unregister alice') or xt.diag(out + err)
    xt.is_(xt.user_rows(srv, 'alice'), {}, 'after it no row of alice is left in any table')
    rows = xt.user_rows(srv, 'bob')
    xt.is_((rows.get('accounts'), [xt.key_parts(k) for k in rows.get('mod_private', [])]),
           ([b''], [(NS_PREFS, 'prefs')]), "bob's account and prefs rows are untouched")
    srv.register('alice', 'alice-pw2')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw2', resource='a2')
    e = stored(await alice.iq('get', None, q("<storage xmlns='%s'/>" % NS_BOOKMARKS)),
               NS_BOOKMARKS, 'storage')
    xt.ok(e is not None and len(e) == 0, 'the new alice has no bookmarks')
    r = await alice.iq('set', None, q(''.join("<j%d xmlns='test:n'/>" % i for i in range(MAX_ITEMS))))
    xt.is_(rtype(r), 'result', 'and room for max_items elements again')

    await xt.disconnect_all(alice)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
