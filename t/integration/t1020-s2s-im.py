#!/usr/bin/python3
"""t1020-s2s-im: instant messaging across two xmppd (issue 5 point 7): a
presence subscription handshake between users of a.test and b.test, the
contact's presence seen on login and its unavailable presence when its
connection drops, and an offline message stored on the other server and
delivered with a delay stamp, and a subscription request from a remote
contact that arrives while the user is offline, delivered when she next
logs in (RFC 6121 3.1.3). Once with certificates (SASL EXTERNAL) and once
with dialback only."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

MODULES = {'mod_disco': {}, 'mod_roster': {}, 'mod_offline': {}}


def servers(d, ca_file, tag):
    return xt.federated_pair(d, 'ca1', 't1020-' + tag, ca_file=ca_file,
                             modules={'a.test': MODULES, 'b.test': MODULES})


def roster_item(c, jid):
    """(subscription, ask) of jid in c's roster, as slixmpp has it."""
    r = c.xmpp.client_roster
    if jid not in r:
        return None
    return (r[jid]['subscription'], r[jid]['pending_out'])


async def wait_for(pred, timeout=8):
    for _ in range(int(timeout / 0.1)):
        if pred():
            return True
        await asyncio.sleep(0.1)
    return pred()


async def dana_login(srv):
    """dana, logged in with a client that answers no request itself."""
    c = xt.Client(srv, 'dana', 'dana-pw', resource='r')
    c.xmpp.auto_authorize = None
    c.xmpp.auto_subscribe = False
    if not await c.connect():
        raise xt.HarnessError('login failed: ' + c.describe())
    return c


async def scenario(d, ca_file, tag, auth):
    a, b = servers(d, ca_file, tag)
    a.register('alice', 'alice-pw')
    a.register('dana', 'dana-pw')
    b.register('bob', 'bob-pw')
    alice = await xt.login_ok(a, 'alice', resource='desk')
    bob = await xt.login_ok(b, 'bob', resource='phone')
    bob.xmpp.auto_authorize = True         # bob accepts ...
    bob.xmpp.auto_subscribe = True         # ... and subscribes back
    alice.xmpp.auto_authorize = True
    await alice.xmpp.get_roster()
    await bob.xmpp.get_roster()

    # RFC 6121 3: the two-way handshake across the servers.
    alice.xmpp.send_presence(pto='bob@b.test', ptype='subscribe')
    both = await wait_for(lambda: roster_item(alice, 'bob@b.test') == ('both', False) and
                          roster_item(bob, 'alice@a.test') == ('both', False))
    xt.ok(both, '[%s] subscription handshake across servers: both rosters say both' % tag) or \
        xt.diag(roster_item(alice, 'bob@b.test'), roster_item(bob, 'alice@a.test'))
    links = a.ctl('s2s')[1]
    xt.like(links, r'\tb\.test\t%s\t' % auth, '[%s] the link authenticated with %s' % (tag, auth))

    # Presence: bob's connection drops; alice sees him go unavailable.
    seen = await alice.presence(pred=lambda p: p['from'].bare == 'bob@b.test' and
                                p['type'] != 'unavailable', timeout=5)
    xt.ok(seen is not None, '[%s] alice sees bob available' % tag)
    bob.abort()
    gone = await alice.presence(pred=lambda p: p['from'].bare == 'bob@b.test' and
                                p['type'] == 'unavailable', timeout=8)
    xt.ok(gone is not None, '[%s] when bob\'s connection drops alice sees him unavailable' % tag)

    # Offline: stored on b.test, delivered at bob's next login, stamped.
    alice.send('bob@b.test', 'while you were away [%s]' % tag)
    await asyncio.sleep(1.0)
    bob2 = await xt.login_ok(b, 'bob', resource='laptop')
    m = await bob2.message(body='while you were away [%s]' % tag, timeout=8)
    xt.ok(m is not None, '[%s] the offline message reaches bob at his next login' % tag)
    if m is not None:
        delay = m.xml.find('{urn:xmpp:delay}delay')
        xt.is_(delay is not None and delay.get('from'), 'b.test',
               '[%s] with a delay stamp from b.test' % tag)
        xt.is_(str(m['from']), 'alice@a.test/desk', '[%s] from alice\'s full JID' % tag)
    # And bob's return is seen by alice (probe answered across servers).
    back = await alice.presence(pred=lambda p: str(p['from']) == 'bob@b.test/laptop' and
                                p['type'] != 'unavailable', timeout=8)
    xt.ok(back is not None, '[%s] alice sees bob come back' % tag)

    # RFC 6121 3.1.3: bob asks dana (a.test), who is offline; a.test keeps
    # the request and delivers it when she next comes online, and again
    # at each login until she answers. The message to alice after it
    # travels the same stream, in order: once alice has it, a.test has
    # handled the request.
    bob2.xmpp.send_presence(pto='dana@a.test', ptype='subscribe')
    bob2.send('alice@a.test/desk', 'after the request [%s]' % tag)
    m = await alice.message(body='after the request [%s]' % tag, timeout=8)
    xt.ok(m is not None, '[%s] bob asks dana, offline, to subscribe' % tag)
    for n in ('next', 'following'):
        dana = await dana_login(a)
        p = await dana.presence(pred=lambda p: p['type'] == 'subscribe', timeout=8)
        xt.is_(p and str(p['from']), 'bob@b.test',
               '[%s] dana gets bob\'s request at her %s login, from his bare JID' % (tag, n))
        if n == 'following':
            dana.xmpp.send_presence(pto='bob@b.test', ptype='subscribed')
            p = await bob2.presence(pred=lambda p: p['type'] == 'subscribed', timeout=8)
            xt.is_(p and str(p['from']), 'dana@a.test', '[%s] her answer reaches bob' % tag)
        await dana.disconnect()

    await xt.disconnect_all(alice, bob2)
    xt.is_(a.stop(), 0, '[%s] a.test exits 0' % tag)
    xt.is_(b.stop(), 0, '[%s] b.test exits 0' % tag)


async def main():
    d = xt.scratch_dir('t1020-certs')
    xt.make_ca(d, 'ca1')
    other = xt.make_ca(d, 'ca2')      # signed nobody: forces dialback
    for h in ('a.test', 'b.test'):
        xt.make_cert(d, 'ca1', h)
    await scenario(d, str(d / 'ca1.pem'), 'external', 'external')
    await scenario(d, other, 'dialback', 'dialback')


xt.run(main)
