#!/usr/bin/python3
"""t0700-disco: XEP-0030 service discovery (mod_disco) for the server and
for accounts, with the features of the other loaded modules."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_ITEMS = 'http://jabber.org/protocol/disco#items'
MODULES = {'mod_disco': {}, 'mod_version': {}, 'mod_ping': {}, 'mod_time': {}}


def query(r, ns):
    """The <query/> of ns in a reply (None if absent or no reply)."""
    return r.xml.find('{%s}query' % ns) if r is not None else None


def features(r):
    q = query(r, NS_INFO)
    return [f.get('var') for f in q.findall('{%s}feature' % NS_INFO)] if q is not None else None


def identities(r):
    q = query(r, NS_INFO)
    if q is None:
        return None
    return [(i.get('category'), i.get('type'), i.get('name'))
            for i in q.findall('{%s}identity' % NS_INFO)]


def items(r):
    q = query(r, NS_ITEMS)
    return [(i.get('jid'), i.get('node')) for i in q.findall('{%s}item' % NS_ITEMS)] \
        if q is not None else None


def rtype(r):
    return r['type'] if r is not None else None


def cond(r):
    return r['error']['condition'] if r is not None and r['type'] == 'error' else None


async def main():
    srv = xt.Server(workers=2, modules=MODULES)
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='a')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b')

    # The server's own JID (XEP-0030 3.1).
    r = await alice.iq('get', srv.host, "<query xmlns='%s'/>" % NS_INFO)
    xt.is_(rtype(r), 'result', 'disco#info to the server: a result')
    xt.ok(('server', 'im', 'xmppd') in (identities(r) or []),
          'the server identifies as server/im "xmppd"') or xt.diag(identities(r))
    f = features(r) or []
    for ns in (NS_INFO, NS_ITEMS, 'jabber:iq:version', 'urn:xmpp:ping', 'urn:xmpp:time'):
        xt.ok(ns in f, 'server features list %s' % ns) or xt.diag(f)
    xt.is_(len(f), len(set(f)), 'no feature is listed twice')
    xt.ok(query(r, NS_INFO) is not None and query(r, NS_INFO).get('node') is None,
          'a reply to a query without a node has no node attribute')

    r = await alice.iq('get', srv.host, "<query xmlns='%s' node='urn:nobody:knows'/>" % NS_INFO)
    xt.is_(cond(r), 'item-not-found', 'disco#info to a node nobody handles: item-not-found')
    r = await alice.iq('get', srv.host, "<query xmlns='%s' node='urn:nobody:knows'/>" % NS_ITEMS)
    xt.is_(cond(r), 'item-not-found', 'disco#items to a node nobody handles: item-not-found')

    r = await alice.iq('get', srv.host, "<query xmlns='%s'/>" % NS_ITEMS)
    xt.is_(rtype(r), 'result', 'disco#items to the server: a result')
    xt.is_(items(r), [], 'no service domains: no items')

    # Hostile or odd requests get stanza errors, not silence.
    r = await alice.iq('set', srv.host, "<query xmlns='%s'/>" % NS_INFO)
    xt.is_(cond(r), 'not-allowed', 'disco#info of type set: not-allowed')
    r = await alice.iq('get', srv.host, "<bogus xmlns='%s'/>" % NS_INFO)
    xt.is_(cond(r), 'bad-request', 'a disco#info payload that is not <query/>: bad-request')

    # An account's bare JID, answered by the server (RFC 6121 8.5.2.1.3).
    r = await alice.iq('get', srv.jid('alice'), "<query xmlns='%s'/>" % NS_INFO)
    xt.is_(rtype(r), 'result', 'disco#info to her own bare JID: a result')
    xt.is_(str(r['from']) if r is not None else None, srv.jid('alice'),
           'it comes from her bare JID')
    xt.is_(identities(r), [('account', 'registered', None)],
           'the account identifies as account/registered')
    f = features(r) or []
    xt.ok('urn:xmpp:ping' in f and NS_INFO in f, 'account features list ping and disco#info') \
        or xt.diag(f)
    xt.ok('urn:xmpp:time' not in f and 'jabber:iq:version' not in f,
          'server-only features are not listed for the account') or xt.diag(f)
    xt.is_(len(f), len(set(f)), 'no account feature is listed twice')

    # XEP-0030 8 rule 1.2: not to someone who may not see the account's
    # presence (no roster module here: nobody but the account may).
    r = await bob.iq('get', srv.jid('alice'), "<query xmlns='%s'/>" % NS_INFO)
    xt.is_(cond(r), 'service-unavailable',
           "another user without a presence subscription: service-unavailable")
    r = await alice.iq('get', srv.jid('alice'), "<query xmlns='%s' node='x'/>" % NS_INFO)
    xt.is_(cond(r), 'item-not-found', 'disco#info to an unknown node of an account: item-not-found')

    r = await alice.iq('get', srv.jid('alice'), "<query xmlns='%s'/>" % NS_ITEMS)
    xt.is_(rtype(r), 'result', 'disco#items to her own bare JID: a result')
    xt.is_(items(r), [], 'it lists no items (none are provided yet)')
    r = await bob.iq('get', srv.jid('alice'), "<query xmlns='%s'/>" % NS_ITEMS)
    xt.is_((rtype(r), items(r)), ('result', []), "disco#items to someone else's account: empty")
    r = await bob.iq('get', srv.jid('alice'), "<query xmlns='%s' node='x'/>" % NS_ITEMS)
    xt.is_((rtype(r), items(r)), ('result', []),
           "disco#items to a node of someone else's account: empty, not telling which exist")
    xt.is_(query(r, NS_ITEMS).get('node') if r is not None and query(r, NS_ITEMS) is not None
           else None, 'x', 'the reply mirrors the node asked for')
    r = await alice.iq('get', srv.jid('alice'), "<query xmlns='%s' node='x'/>" % NS_ITEMS)
    xt.is_(cond(r), 'item-not-found', 'the owner asking for an unknown node: item-not-found')

    # A user that does not exist: the core's answer (RFC 6121 8.5.1).
    r = await alice.iq('get', srv.jid('nobody'), "<query xmlns='%s'/>" % NS_INFO)
    xt.is_(cond(r), 'service-unavailable', 'disco#info to a nonexistent user: service-unavailable')
    r = await alice.iq('get', srv.jid('nobody'), "<query xmlns='%s'/>" % NS_ITEMS)
    xt.is_(cond(r), 'service-unavailable', 'disco#items to a nonexistent user: service-unavailable')

    # The list follows the modules loaded: unload mod_time and it is gone.
    code, out, err = await srv.actl('module', 'unload', 'mod_time')
    xt.is_(code, 0, 'xmppctl module unload mod_time') or xt.diag(out, err)
    r = await alice.iq('get', srv.host, "<query xmlns='%s'/>" % NS_INFO)
    f = features(r) or []
    xt.ok('urn:xmpp:time' not in f and 'urn:xmpp:ping' in f,
          'after unloading mod_time its feature is no longer listed') or xt.diag(f)

    await xt.disconnect_all(alice, bob)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
