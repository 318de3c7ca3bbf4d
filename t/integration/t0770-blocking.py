#!/usr/bin/python3
"""t0770-blocking: mod_blocking, XEP-0191 Blocking Command: the blocklist,
pushes, what a blocked entity's stanzas get, what the user's stanzas to a
blocked JID get, JID matching (bare, full, domain, subdomain), unblocking,
persistence across a restart, and removal with the account.

The module keeps the lists in memory, per worker (its hooks decide as a
stanza passes and cannot wait for the store). So the test also checks:
a block or unblock and a message in one write (the message is decided by
the new list); stanzas to an account that has no session on the worker
that routes them (the list is loaded there on first need, and is not
used any more once the account's owner has changed it on another
worker); a resource on another worker that has seen a push cannot reach
the blocked JID; an account with no session at all, after a restart.
Run it with XMPPD_TEST_STORE_DELAY_MS=200 too (doc/modules.md, "Testing
against a backend that answers later")."""

import asyncio
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_BLOCK = 'urn:xmpp:blocking'
NS_BLOCK_ERR = 'urn:xmpp:blocking:errors'
NS_DISCO = 'http://jabber.org/protocol/disco#info'
NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items'
HOST2 = 'other.test'
HOST3 = 'sub.other.test'

_seq = [0]


def next_id():
    _seq[0] += 1
    return 'b%d' % _seq[0]


def stanza_rx(name, attr_rx=''):
    """A regex for one whole <name .../> or <name ...>...</name>."""
    return r"<%s\b(?=[^>]*%s)[^>]*?(?:/>|>.*?</%s>)" % (name, attr_rx, name)


async def raw_iq(r, itype, payload, to=None, timeout=5):
    """An IQ on a Raw stream; returns the reply Element or None."""
    idv = next_id()
    r.set_mark()
    await r.send("<iq type='%s' id='%s'%s>%s</iq>" % (
        itype, idv, " to='%s'" % to if to else '', payload))
    m = await r.read_until(stanza_rx('iq', r"\bid=[\"']%s[\"']" % idv), timeout)
    return xt.ET.fromstring(m.group(0)) if m else None


async def wait_stanza(r, name, attr_rx='', body=None, timeout=5):
    """The next <name/> after the mark matching attr_rx (and holding body);
    returns the Element, or None. Moves the mark past it."""
    rx = stanza_rx(name, attr_rx)
    if body is not None:
        rx = r"<%s\b(?=[^>]*%s)[^>]*?>(?:(?!</%s>).)*?%s.*?</%s>" % (name, attr_rx, name, body, name)
    m = await r.read_until(rx, timeout)
    if not m:
        return None
    r.mark += len(r.data[r.mark:].decode('utf-8', 'replace')[:m.end()].encode('utf-8'))
    return xt.ET.fromstring(m.group(0))


def cond(el):
    """The stanza error condition of an Element (from a Raw stream, or a
    slixmpp stanza's .xml), or None."""
    if el is None:
        return None
    err = next((c for c in el if c.tag in ('error', '{%s}error' % xt.NS_CLIENT)), None)
    if err is None:
        return None
    for c in err:
        if c.tag.startswith('{%s}' % xt.NS_STANZAS_ERR) and not c.tag.endswith('}text'):
            return c.tag.split('}')[1]
    return None


def items(el, what='blocklist'):
    """Sorted item JIDs of <what/> in an IQ Element (None if there is none)."""
    if el is None:
        return None
    q = el.find('{%s}%s' % (NS_BLOCK, what))
    if q is None:
        return None
    return sorted(i.get('jid') for i in q.findall('{%s}item' % NS_BLOCK))


def block_xml(what, *jids):
    return "<%s xmlns='%s'>%s</%s>" % (what, NS_BLOCK, ''.join(
        "<item jid='%s'/>" % j for j in jids), what)


async def blocklist(r):
    return items(await raw_iq(r, 'get', "<blocklist xmlns='%s'/>" % NS_BLOCK))


async def raw_login(srv, user, resource):
    r = await xt.Raw.open(srv)
    await r.login(user, user + '-pw', resource)
    return r


async def raw_on_worker(srv, user, resource, want, tries=20):
    """A Raw session of user on a worker w with want(w): connections are
    spread over the workers by the kernel, so this logs in as resource0,
    resource1, ... and closes those that land elsewhere (waiting until
    their sessions are gone). Returns (raw, full JID, worker), or Nones."""
    for i in range(tries):
        full = srv.jid(user, '%s%d' % (resource, i))
        r = await raw_login(srv, user, '%s%d' % (resource, i))
        sessions = await srv.wait_connected(lambda s: xt.session_of(s, full))
        w = (xt.session_of(sessions, full) or {}).get('worker')
        if w is not None and want(w):
            return r, full, w
        r.close()
        await srv.wait_connected(lambda s: not xt.session_of(s, full))
    return None, None, None


def in_key_order(el):
    """The <blocklist/> items of an IQ Element in the order they came, and
    whether that is the store's key order (the bytes of the JIDs)."""
    q = el.find('{%s}blocklist' % NS_BLOCK) if el is not None else None
    got = [i.get('jid') for i in q.findall('{%s}item' % NS_BLOCK)] if q is not None else None
    return got, got is not None and got == sorted(got, key=lambda j: j.encode('utf-8'))


async def same_write(srv, a1, bob):
    """A block (or an unblock) and a message to the JID in one write: the
    message waits for the change to complete (RFC 6120 10.1) and is
    decided by the new list (XEP-0191 3.3, 3.4)."""
    bob_bare = bob.jid.bare
    a1.set_mark()
    await a1.send("<iq type='set' id='sw-block'>%s</iq>"
                  "<message to='%s' id='sw-m1' type='chat'><body>sent with the block</body></message>"
                  % (block_xml('block', bob_bare), bob_bare))
    r = await a1.read_until(stanza_rx('iq', r"\bid=[\"']sw-block[\"']"))
    xt.ok(r is not None and "type='result'" in r.group(0).replace('"', "'"),
          'block bob and a message to him in one write: the block is answered with a result')
    e = await a1.read_until(stanza_rx('message', r"\bid=[\"']sw-m1[\"']"))
    e = xt.ET.fromstring(e.group(0)) if e else None
    xt.ok(cond(e) == 'not-acceptable' and e.find('error/{%s}blocked' % NS_BLOCK_ERR) is not None,
          'the message written with it comes back <not-acceptable/> with <blocked/>') \
        or xt.diag(a1.since_mark())
    m1 = re.search(stanza_rx('message', r"\bid=[\"']sw-m1[\"']"), a1.since_mark(), re.S)
    xt.ok(r is not None and m1 is not None and r.start() < m1.start(),
          'after the result of the block') or xt.diag(a1.since_mark())
    m = await bob.message(body='sent with the block', timeout=1.5)
    xt.ok(m is None, 'and bob does not get it')

    a1.set_mark()
    await a1.send("<iq type='set' id='sw-unblock'>%s</iq>"
                  "<message to='%s' id='sw-m2' type='chat'><body>sent with the unblock</body></message>"
                  % (block_xml('unblock', bob_bare), bob_bare))
    r = await a1.read_until(stanza_rx('iq', r"\bid=[\"']sw-unblock[\"']"))
    xt.ok(r is not None and "type='result'" in r.group(0).replace('"', "'"),
          'unblock bob and a message to him in one write: the unblock is answered with a result')
    m = await bob.message(body='sent with the unblock')
    xt.ok(m is not None, 'and bob gets the message written with it')


async def other_worker(srv):
    """erin's lists, when the stanzas for her are routed on a worker where
    she has no session (filter_packet runs on the sender's thread): fred
    and gina are on the other worker. Then a resource of erin's on that
    worker, and what it may send once it has seen a push. Ends with erin
    blocking fred and nobody connected."""
    e1, e1_jid, wy = await raw_on_worker(srv, 'erin', 'y', lambda w: True)
    fred, wx = await xt.login_on_worker(srv, 'fred', 'fred-pw', lambda w: w != wy, 'x')
    gina, _ = await xt.login_on_worker(srv, 'gina', 'gina-pw', lambda w: w == wx, 'x')
    hank = await xt.login_ok(srv, 'hank', 'hank-pw', resource='h')
    if not xt.ok(e1 is not None and fred is not None and gina is not None,
                 'erin on one worker, fred and gina on the other'):
        xt.diag(await srv.aconnected())
        return
    fred_bare, hank_bare = srv.jid('fred'), srv.jid('hank')

    # The first stanza for erin on fred's worker: her list is loaded there.
    e1.set_mark()
    fred.send(e1_jid, 'fred, before any block')
    xt.ok(await wait_stanza(e1, 'message', body='fred, before any block') is not None,
          "fred's message reaches erin (her list read on fred's worker, where she has no session)")
    r = await raw_iq(e1, 'set', block_xml('block', fred_bare))
    xt.is_(r.get('type') if r is not None else None, 'result', 'erin blocks fred (on her worker)')
    # What fred's worker read before is out of date (XEP-0191 3.3).
    e1.set_mark()
    fred.send(e1_jid, 'fred, after the block')
    m = await fred.message(mtype='error')
    xt.is_(m['error']['condition'] if m is not None else None, 'service-unavailable',
           "fred's next message is refused <service-unavailable/>, although it is decided on "
           "another worker")
    got = await wait_stanza(e1, 'message', body='fred, after the block', timeout=1.5)
    xt.ok(got is None, 'and erin does not get it')
    r = await fred.iq('get', e1_jid, "<query xmlns='jabber:iq:version'/>")
    xt.is_(cond(r.xml) if r is not None else None, 'service-unavailable',
           "fred's IQ get to erin: <service-unavailable/>")
    e1.set_mark()
    gina.send(e1_jid, 'gina, from the same worker')
    xt.ok(await wait_stanza(e1, 'message', body='gina, from the same worker') is not None,
          "gina's message from that worker still reaches erin")

    # A resource of erin's on fred's worker: it reads the list, and once
    # it has seen the push of a block made on the other worker, its
    # stanzas to the blocked JID are refused (XEP-0191 3.3).
    e2, e2_jid, _ = await raw_on_worker(srv, 'erin', 'x', lambda w: w == wx)
    if not xt.ok(e2 is not None, "a second resource of erin's on fred's worker"):
        return
    xt.is_(await blocklist(e2), [fred_bare], 'erin/x reads the list: fred')
    e2.set_mark()
    r = await raw_iq(e1, 'set', block_xml('block', hank_bare))
    xt.is_(r.get('type') if r is not None else None, 'result', 'erin/y blocks hank')
    push = await wait_stanza(e2, 'iq', r"\btype=[\"']set[\"']", body='<block')
    xt.is_(items(push, 'block'), [hank_bare], 'erin/x gets the push')
    e2.set_mark()
    await e2.send("<message to='%s' type='chat'><body>erin/x, after the block push</body></message>"
                  % hank_bare)
    e = await wait_stanza(e2, 'message', r"\btype=[\"']error[\"']")
    xt.ok(cond(e) == 'not-acceptable' and e.find('error/{%s}blocked' % NS_BLOCK_ERR) is not None,
          "erin/x's message to hank right after the push: <not-acceptable/> with <blocked/>") \
        or xt.diag(e2.since_mark())
    m = await hank.message(body='erin/x, after the block push', timeout=1.5)
    xt.ok(m is None, 'hank does not get it')
    e2.set_mark()
    r = await raw_iq(e1, 'set', block_xml('unblock', hank_bare))
    xt.is_(r.get('type') if r is not None else None, 'result', 'erin/y unblocks hank')
    push = await wait_stanza(e2, 'iq', r"\btype=[\"']set[\"']", body='<unblock')
    xt.is_(items(push, 'unblock'), [hank_bare], 'erin/x gets the unblock push')
    await e2.send("<message to='%s' type='chat'><body>erin/x, after the unblock push</body></message>"
                  % hank_bare)
    xt.ok(await hank.message(body='erin/x, after the unblock push') is not None,
          "erin/x's message to hank right after that push reaches him (XEP-0191 3.4)")
    # fred is still blocked on his worker, where erin's list is now hers.
    fred.send(e2_jid, 'fred, to erin/x')
    m = await fred.message(mtype='error')
    xt.is_(m['error']['condition'] if m is not None else None, 'service-unavailable',
           "fred's message to erin/x: <service-unavailable/>")
    e1.close()
    e2.close()
    await xt.disconnect_all(fred, gina, hank)
    await srv.wait_connected(lambda s: not any(x['jid'].split('@')[0] in
                                               ('erin', 'fred', 'gina', 'hank') for x in s))


async def no_session(srv):
    """After a restart, erin has no session anywhere: the first stanzas for
    her load her list where they are routed."""
    erin_bare = srv.jid('erin')
    fred = await xt.login_ok(srv, 'fred', 'fred-pw', resource='f')
    gina = await xt.login_ok(srv, 'gina', 'gina-pw', resource='g')
    # disco#items: answered for the account to anyone (an empty result
    # without a presence subscription, XEP-0030 8), so only the block
    # makes the difference.
    r = await fred.iq('get', erin_bare, "<query xmlns='%s'/>" % NS_DISCO_ITEMS)
    xt.is_(cond(r.xml) if r is not None else None, 'service-unavailable',
           "fred's service discovery query to erin, who is offline: <service-unavailable/> "
           "(she blocks him)")
    r = await gina.iq('get', erin_bare, "<query xmlns='%s'/>" % NS_DISCO_ITEMS)
    xt.is_(r['type'] if r is not None else None, 'result', "gina's is answered")
    await xt.disconnect_all(fred, gina)


async def main():
    srv = xt.Server(workers=2, hosts=('xmppd.test', HOST2, HOST3),
                    modules={'mod_disco': {}, 'mod_register': {},
                             'mod_blocking': {'max_items': 5}})
    for u in ('alice', 'bob', 'carol', 'erin', 'fred', 'gina', 'hank'):
        srv.register(u, u + '-pw')
    srv.register('dan', 'dan-pw', HOST2)
    srv.register('sam', 'sam-pw', HOST3)
    alice_bare, bob_bare = srv.jid('alice'), srv.jid('bob')

    a1 = await raw_login(srv, 'alice', 'one')
    a2 = await raw_login(srv, 'alice', 'two')
    a3 = await raw_login(srv, 'alice', 'three')   # never reads the list
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b')
    carol = await xt.login_ok(srv, 'carol', 'carol-pw', resource='desk')
    carol2 = await xt.login_ok(srv, 'carol', 'carol-pw', resource='phone')
    dan = await xt.login_ok(srv, 'dan', 'dan-pw', host=HOST2, resource='d')
    sam = await xt.login_ok(srv, 'sam', 'sam-pw', host=HOST3, resource='s')

    disco = await raw_iq(a1, 'get', "<query xmlns='%s'/>" % NS_DISCO, to=srv.host)
    feats = [f.get('var') for f in disco.iter('{%s}feature' % NS_DISCO)] if disco is not None else []
    xt.ok(NS_BLOCK in feats, 'disco#info of the server lists urn:xmpp:blocking') or xt.diag(feats)

    xt.is_(await blocklist(a1), [], 'an empty blocklist at first (XEP-0191 3.2)')
    xt.is_(await blocklist(a2), [], 'the second resource reads it too')

    # -- Block bob ---------------------------------------------------------
    a2.set_mark()
    a3.set_mark()
    r = await raw_iq(a1, 'set', block_xml('block', bob_bare))
    xt.is_(r.get('type') if r is not None else None, 'result', 'block bob: result')
    push = await wait_stanza(a2, 'iq', r"\btype=[\"']set[\"']", body='<block')
    xt.is_(items(push, 'block'), [bob_bare], 'the block push reaches alice/two')
    xt.is_(push.get('from') if push is not None else None, alice_bare,
           'the push comes from alice\'s bare JID')
    late = await wait_stanza(a3, 'iq', r"\btype=[\"']set[\"']", body='<block', timeout=1.5)
    xt.ok(late is None, 'no push to alice/three, which never read the list (XEP-0191 3.3)')
    xt.is_(await blocklist(a2), [bob_bare], 'the blocklist now shows bob')

    # Inbound: bob's message is refused with service-unavailable.
    a1.set_mark()
    bob.send(alice_bare, 'hello from bob, blocked')
    m = await bob.message(mtype='error')
    xt.is_(m['error']['condition'] if m is not None else None, 'service-unavailable',
           "bob's message to alice comes back <service-unavailable/>")
    xt.is_(m['from'].bare if m is not None else None, alice_bare, 'from alice\'s JID')
    got = await wait_stanza(a1, 'message', body='hello from bob, blocked', timeout=1.5)
    xt.ok(got is None, 'and alice does not get it')
    r = await bob.iq('get', srv.jid('alice', 'one'), "<query xmlns='jabber:iq:version'/>")
    xt.is_(cond(r.xml) if r is not None else None, 'service-unavailable',
           "bob's IQ get to alice/one: <service-unavailable/>")
    a1.set_mark()
    bob.send_raw("<presence to='%s'><status>knock</status></presence>" % srv.jid('alice', 'one'))
    got = await wait_stanza(a1, 'presence', body='knock', timeout=1.5)
    xt.ok(got is None, "bob's directed presence is not delivered")
    p = await bob.presence(pred=lambda p: p['type'] == 'error', timeout=0.5)
    xt.ok(p is None, 'and bob gets no error for it (XEP-0191 3.3)')

    # Outbound: alice's message to bob is refused with <blocked/>.
    a1.set_mark()
    await a1.send("<message to='%s' type='chat'><body>hi bob from alice</body></message>" % bob_bare)
    e = await wait_stanza(a1, 'message', r"\btype=[\"']error[\"']")
    xt.is_(cond(e), 'not-acceptable', "alice's message to bob: <not-acceptable/>")
    xt.ok(e is not None and e.find('error/{%s}blocked' % NS_BLOCK_ERR) is not None,
          'with <blocked xmlns="urn:xmpp:blocking:errors"/>')
    xt.is_(e.get('from') if e is not None else None, bob_bare, 'from the blocked JID')
    m = await bob.message(body='hi bob from alice', timeout=1.5)
    xt.ok(m is None, 'bob does not get it')

    # Someone else still gets through; alice's own resources always do.
    a1.set_mark()
    carol.send(alice_bare, 'carol is not blocked')
    xt.ok(await wait_stanza(a1, 'message', body='carol is not blocked') is not None,
          "carol's message reaches alice")
    r = await raw_iq(a1, 'set', block_xml('block', alice_bare))
    xt.is_(r.get('type') if r is not None else None, 'result', 'alice blocks her own JID: result')
    a2.set_mark()
    await a1.send("<message to='%s' type='chat'><body>note to self</body></message>"
                  % srv.jid('alice', 'two'))
    xt.ok(await wait_stanza(a2, 'message', body='note to self') is not None,
          "blocking her own JID does not cut alice's resources off (XEP-0191 5)")

    # A full JID blocks that resource only.
    r = await raw_iq(a1, 'set', block_xml('block', srv.jid('carol', 'desk')))
    xt.is_(r.get('type') if r is not None else None, 'result', 'block carol/desk: result')
    carol.send(alice_bare, 'from the desk')
    m = await carol.message(mtype='error')
    xt.is_(m['error']['condition'] if m is not None else None, 'service-unavailable',
           'carol/desk is refused')
    a1.set_mark()
    carol2.send(alice_bare, 'from the phone')
    xt.ok(await wait_stanza(a1, 'message', body='from the phone') is not None,
          'carol/phone still gets through')

    # -- Bad requests ----------------------------------------------------
    r = await raw_iq(a1, 'set', "<block xmlns='%s'/>" % NS_BLOCK)
    xt.is_(cond(r), 'bad-request', 'an empty <block/>: <bad-request/>')
    r = await raw_iq(a1, 'set', block_xml('block', 'eve@' + srv.host, 'bad@@jid'))
    xt.is_(cond(r), 'jid-malformed', 'an invalid JID: <jid-malformed/>')
    bl = await blocklist(a1)
    xt.ok(bl is not None and 'eve@' + srv.host not in bl,
          'and nothing of that request was stored') or xt.diag(bl)
    r = await raw_iq(a1, 'set', block_xml('block', 'x1@a.test', 'x2@a.test', 'x3@a.test'))
    xt.is_(cond(r), 'resource-constraint', 'more than max_items: <resource-constraint/>')
    r = await bob.iq('get', alice_bare, "<blocklist xmlns='%s'/>" % NS_BLOCK)
    xt.is_(cond(r.xml) if r is not None else None, 'service-unavailable',
           "bob (blocked) asking for alice's list gets nothing but service-unavailable")
    r = await carol2.iq('get', alice_bare, "<blocklist xmlns='%s'/>" % NS_BLOCK)
    xt.is_(cond(r.xml) if r is not None else None, 'forbidden',
           "carol/phone asking for alice's list: <forbidden/>")

    # -- Unblock bob ---------------------------------------------------
    a2.set_mark()
    r = await raw_iq(a1, 'set', block_xml('unblock', bob_bare))
    xt.is_(r.get('type') if r is not None else None, 'result', 'unblock bob: result')
    push = await wait_stanza(a2, 'iq', r"\btype=[\"']set[\"']", body='<unblock')
    xt.is_(items(push, 'unblock'), [bob_bare], 'the unblock push reaches alice/two')
    a1.set_mark()
    bob.send(alice_bare, 'bob again')
    xt.ok(await wait_stanza(a1, 'message', body='bob again') is not None,
          "after unblocking, bob's message is delivered")
    await a1.send("<message to='%s' type='chat'><body>welcome back bob</body></message>"
                  % bob_bare)
    xt.ok(await bob.message(body='welcome back bob') is not None,
          "and alice's message reaches bob")
    await same_write(srv, a1, bob)

    # -- Domains ---------------------------------------------------------
    r = await raw_iq(a1, 'set', block_xml('block', HOST2))
    xt.is_(r.get('type') if r is not None else None, 'result', 'block the domain %s' % HOST2)
    dan.send(alice_bare, 'dan here')
    m = await dan.message(mtype='error')
    xt.is_(m['error']['condition'] if m is not None else None, 'service-unavailable',
           'a user at the blocked domain is refused')
    sam.send(alice_bare, 'sam here')
    m = await sam.message(mtype='error')
    xt.is_(m['error']['condition'] if m is not None else None, 'service-unavailable',
           'so is a user at a subdomain of it (XEP-0191 6)')
    a1.set_mark()
    await a1.send("<message to='dan@%s/d' type='chat'><body>to dan</body></message>" % HOST2)
    e = await wait_stanza(a1, 'message', r"\btype=[\"']error[\"']")
    xt.ok(cond(e) == 'not-acceptable' and e.find('error/{%s}blocked' % NS_BLOCK_ERR) is not None,
          "alice's message to dan@%s is refused as blocked" % HOST2)
    a1.set_mark()
    bob.send(alice_bare, 'bob is at another domain')
    xt.ok(await wait_stanza(a1, 'message', body='bob is at another domain') is not None,
          'users at other domains still get through')

    # -- Persistence ----------------------------------------------------
    want = sorted([alice_bare, srv.jid('carol', 'desk'), HOST2])
    got, ordered = in_key_order(await raw_iq(a1, 'get', "<blocklist xmlns='%s'/>" % NS_BLOCK))
    xt.is_(sorted(got or []), want, 'the list before the restart')
    xt.ok(ordered, 'in key order (the store\'s)') or xt.diag(got)
    await other_worker(srv)
    for c in (bob, carol, carol2, dan, sam):
        await c.disconnect()
    for r in (a1, a2, a3):
        r.close()
    # Stopped with no session left: a session that ends during the
    # shutdown, after another worker has stopped, is another matter.
    await srv.wait_connected(lambda s: not s)
    xt.is_(await srv.astop(), 0, 'xmppd stops')
    srv.start()
    a1 = await raw_login(srv, 'alice', 'one')
    # Her first stanza after the initial presence: decided by the list
    # loaded when her session opened (the stream waited for it).
    await a1.send("<message to='dan@%s/d' type='chat'><body>first after the restart</body>"
                  "</message>" % HOST2)
    e = await wait_stanza(a1, 'message', r"\btype=[\"']error[\"']")
    xt.ok(cond(e) == 'not-acceptable' and e.find('error/{%s}blocked' % NS_BLOCK_ERR) is not None,
          "alice's first message after logging in again, to dan@%s, is refused as blocked"
          % HOST2) or xt.diag(a1.since_mark())
    xt.is_(await blocklist(a1), want, 'the same list after a restart')
    dan = await xt.login_ok(srv, 'dan', 'dan-pw', host=HOST2, resource='d')
    dan.send(alice_bare, 'dan after restart')
    m = await dan.message(mtype='error')
    xt.is_(m['error']['condition'] if m is not None else None, 'service-unavailable',
           'and it is still enforced')
    await no_session(srv)

    # -- The module reloaded while alice is online: its lists in memory go
    # with it and are loaded again (her session's when it next sends, the
    # routing worker's on first need). -----------------------------------
    code, out, err = await srv.actl('module', 'reload', 'mod_blocking')
    xt.is_(code, 0, 'xmppctl module reload mod_blocking') or xt.diag(out + err)
    xt.is_(await blocklist(a1), want, 'alice reads the same list from the reloaded module')
    a1.set_mark()
    await a1.send("<message to='dan@%s/d' type='chat'><body>after the reload</body></message>"
                  % HOST2)
    e = await wait_stanza(a1, 'message', r"\btype=[\"']error[\"']")
    xt.ok(cond(e) == 'not-acceptable' and e.find('error/{%s}blocked' % NS_BLOCK_ERR) is not None,
          'her message to dan@%s is refused as blocked' % HOST2) or xt.diag(a1.since_mark())
    dan.send(alice_bare, 'dan after the reload')
    m = await dan.message(mtype='error')
    xt.is_(m['error']['condition'] if m is not None else None, 'service-unavailable',
           "and dan's to her <service-unavailable/>")

    # -- Unblock all ----------------------------------------------------
    a2 = await raw_login(srv, 'alice', 'two')
    xt.is_(await blocklist(a2), want, 'alice/two reads the list (so it gets pushes, XEP-0191 3.3)')
    a2.set_mark()
    r = await raw_iq(a1, 'set', "<unblock xmlns='%s'/>" % NS_BLOCK)
    xt.is_(r.get('type') if r is not None else None, 'result', 'unblock all: result')
    push = await wait_stanza(a2, 'iq', r"\btype=[\"']set[\"']", body='<unblock')
    xt.is_(items(push, 'unblock'), [], 'the push is an empty <unblock/> (XEP-0191 3.5)')
    xt.is_(await blocklist(a1), [], 'the list is empty')
    a1.set_mark()
    dan.send(alice_bare, 'dan after unblock all')
    xt.ok(await wait_stanza(a1, 'message', body='dan after unblock all') is not None,
          "dan's message is delivered again")

    # -- The list goes with the account (XEP-0077 3.2; remove_user, run by
    # mod_register's in-band cancellation and by xmppctl unregister) ------
    # Seen in the spool by mdb_dump, after the removal and before the name
    # is registered again. A row's key is HOST, NODE, the blocked JID.
    # Other users' lists that name the removed user stay: they are theirs,
    # XEP-0191 says nothing of account removal, and ejabberd (mod_privacy
    # remove_user) and Prosody (storagemanager.purge) delete only the
    # removed user's own lists.
    r = await raw_iq(a1, 'set', block_xml('block', bob_bare, HOST2))
    xt.is_(r.get('type') if r is not None else None, 'result', 'alice blocks bob and %s' % HOST2)
    r = await dan.iq('set', None, block_xml('block', alice_bare))
    xt.is_(r['type'] if r is not None else None, 'result', 'dan blocks alice')
    rows = xt.user_rows(srv, 'alice')
    xt.is_(sorted(xt.key_parts(k) for k in rows.get('mod_blocking', [])), [(bob_bare,), (HOST2,)],
           "before the removal the spool holds alice's two blocklist rows")
    r = await raw_iq(a1, 'set', "<query xmlns='jabber:iq:register'><remove/></query>")
    xt.is_(r.get('type') if r is not None else None, 'result', 'alice cancels her account in-band')
    xt.ok(await a1.read_until_close(5) and await a2.read_until_close(5),
          'her streams are closed (XEP-0077 3.2)')
    await srv.wait_connected(lambda s: not any(x['jid'].startswith(alice_bare) for x in s))
    xt.is_(xt.user_rows(srv, 'alice'), {}, 'after it no row of alice is left in any table')
    rows = xt.user_rows(srv, 'dan', HOST2)
    xt.is_([xt.key_parts(k) for k in rows.get('mod_blocking', [])], [(alice_bare,)],
           "dan's own list, which names alice, is untouched")
    # The same through xmppctl unregister: carol's list.
    carol = await xt.login_ok(srv, 'carol', 'carol-pw', resource='desk')
    r = await carol.iq('set', None, block_xml('block', 'sam@%s' % HOST3))
    xt.is_(r['type'] if r is not None else None, 'result', 'carol blocks sam')
    xt.is_([xt.key_parts(k) for k in xt.user_rows(srv, 'carol').get('mod_blocking', [])],
           [('sam@%s' % HOST3,)], "the spool holds carol's blocklist row")
    await carol.disconnect()
    code, out, err = await srv.actl('unregister', 'carol', srv.host)
    xt.is_(code, 0, 'xmppctl unregister carol') or xt.diag(out + err)
    xt.is_(xt.user_rows(srv, 'carol'), {}, 'after it no row of carol is left in any table')
    code, _, err = await srv.actl('register', 'alice', srv.host, 'alice-pw')
    xt.is_(code, 0, 'xmppctl register alice again') or xt.diag(err)
    a1 = await raw_login(srv, 'alice', 'one')
    xt.is_(await blocklist(a1), [], 'the new account starts with an empty list')
    a1.close()
    a2.close()
    await dan.disconnect()
    await asyncio.sleep(0)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')
    await store_full()


async def store_full():
    """A block the store cannot write (its map is full): the client is told
    <internal-server-error/> (RFC 6120 8.3.3.8), and nothing of it is
    stored or enforced (a batch is all or nothing)."""
    srv = xt.Server(name='t0770-full', workers=2, start=False,
                    modules={'mod_private': {'max_size': 200000, 'max_items': 100000},
                             'mod_blocking': {'max_items': 100000}})
    srv.conf['store_map_size'] = 1 << 20     # the least allowed
    srv.write_config()
    srv.start()
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    a1 = await raw_login(srv, 'alice', 'one')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b')
    # Private XML (XEP-0049) fills the map: smaller and smaller elements,
    # each size until three sets in a row are refused.
    sets = refused = 0
    for size in (150000, 20000, 2000, 200):
        in_a_row = 0
        while in_a_row < 3 and sets < 200:
            sets += 1
            r = await raw_iq(a1, 'set', "<query xmlns='jabber:iq:private'><x%d xmlns='t:full'>%s"
                             "</x%d></query>" % (sets, 'a' * size, sets))
            in_a_row = in_a_row + 1 if cond(r) is not None else 0
            refused += cond(r) is not None
    xt.ok(refused >= 12 and sets < 200, 'the store is full: private XML sets are refused') \
        or xt.diag(sets, refused)
    jids = [bob.jid.bare] + ['u%03d%s@example.net' % (i, 'x' * 200) for i in range(40)]
    r = await raw_iq(a1, 'set', block_xml('block', *jids))
    xt.is_(cond(r), 'internal-server-error',
           'a block of 41 JIDs that cannot be written: <internal-server-error/>')
    xt.is_(await blocklist(a1), [], 'nothing of it was stored')
    a1.set_mark()
    await a1.send("<message to='%s' type='chat'><body>not blocked after all</body></message>"
                  % bob.jid.bare)
    xt.ok(await bob.message(body='not blocked after all') is not None,
          "alice's message to bob is delivered (her list in memory is unchanged)")
    bob.send(srv.jid('alice', 'one'), 'bob is not blocked either')
    xt.ok(await wait_stanza(a1, 'message', body='bob is not blocked either') is not None,
          "and bob's to her")
    a1.close()
    await bob.disconnect()
    await srv.wait_connected(lambda s: not s)
    xt.is_(await srv.astop(), 0, 'the server with the full store exits 0')


xt.run(main)
