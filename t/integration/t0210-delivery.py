#!/usr/bin/python3
"""t0210-delivery: RFC 6121 8.5 in full for local users: resources sharing
the highest priority, negative priorities, each message type to bare and
full JIDs, IQs and presence to accounts and unknown resources."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

Q = 0.6   # how long to wait for something that must not arrive


ERR = "<error type='cancel'><item-not-found xmlns='%s'/></error>" % xt.NS_STANZAS_ERR


async def sync(c):
    """A round trip to the server: what c sent before is routed (and
    answered, if it was to be) once this returns."""
    await c.iq('get', c.server.host, "<query xmlns='urn:xmppd:test:sync'/>")


async def main():
    srv = xt.Server()
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    b1 = await xt.login_ok(srv, 'bob', resource='one', priority=5)
    b2 = await xt.login_ok(srv, 'bob', resource='two', priority=5)
    b3 = await xt.login_ok(srv, 'bob', resource='low', priority=1)
    bn = await xt.login_ok(srv, 'bob', resource='neg', priority=-1)
    await asyncio.sleep(0.3)
    bare = srv.jid('bob')

    # 8.5.2.1.1: chat and normal to the bare JID reach every resource with
    # the highest priority (one and two), not lower or negative ones.
    for mtype in ('chat', 'normal'):
        alice.send(bare, 'top-' + mtype, mtype)
        got1 = await b1.message(body='top-' + mtype, timeout=3)
        got2 = await b2.message(body='top-' + mtype, timeout=3)
        low = await b3.message(body='top-' + mtype, timeout=Q)
        neg = await bn.message(body='top-' + mtype, timeout=Q)
        xt.ok(got1 is not None and got2 is not None,
              '%s to the bare JID reaches both priority-5 resources' % mtype)
        xt.ok(low is None and neg is None,
              '%s to the bare JID skips the priority-1 and -1 resources' % mtype)

    # headline: every non-negative resource.
    alice.send(bare, 'news', 'headline')
    got = [await c.message(body='news', timeout=3) for c in (b1, b2, b3)]
    neg = await bn.message(body='news', timeout=Q)
    xt.ok(all(g is not None for g in got), 'headline reaches every non-negative resource')
    xt.ok(neg is None, 'headline skips the negative-priority resource')

    # groupchat to a bare JID: service-unavailable (8.5.2.1.1). Each error
    # is matched to the stanza that caused it by its id (RFC 6120 8.3.1).
    sid = xt.send_message_id(alice, bare, 'gc', 'groupchat')
    e = await xt.error_for(alice, sid, timeout=3)
    xt.is_(xt.error_summary(e), ('error', 'service-unavailable', bare),
           'groupchat to a user: service-unavailable from the bare JID')
    xt.ok(all([await c.message(body='gc', timeout=Q) is None for c in (b1, bn)]),
          'and no resource got it')

    # A full JID that is bound gets everything, whatever its priority
    # (8.5.3.1): the negative resource gets a message addressed to it.
    alice.send(srv.jid('bob', 'neg'), 'direct', 'chat')
    xt.ok(await bn.message(body='direct', timeout=3) is not None,
          'a message to a negative-priority full JID is delivered')
    xt.ok(await b1.message(body='direct', timeout=Q) is None, 'and only there')

    # 8.5.3.2.1: to an unbound full JID, chat falls back to the bare JID;
    # normal and headline are bounced.
    gone = srv.jid('bob', 'gone')
    alice.send(gone, 'fallback', 'chat')
    xt.ok(await b1.message(body='fallback', timeout=3) is not None,
          'chat to an unbound resource falls back to the top resources')
    sid = xt.send_message_id(alice, gone, 'lost', 'normal')
    e = await xt.error_for(alice, sid, timeout=3)
    xt.is_(xt.error_summary(e), ('error', 'service-unavailable', gone),
           'normal to an unbound resource: service-unavailable from that JID')
    xt.ok(await b1.message(body='lost', timeout=Q) is None, 'and it is not delivered')

    # A message of type error: delivered to the full JID it is addressed
    # to (8.5.3.1: that is how an error reaches the sender of the stanza
    # that caused it); silently ignored when addressed to the bare JID
    # (8.5.2.1.1) or to a resource that is not bound (8.5.3.2.1, no
    # fallback to the bare JID); never answered with another error (RFC
    # 6120 8.3.1).
    sid = xt.send_message_id(alice, srv.jid('bob', 'two'), 'err-full', 'error', extra=ERR)
    e = await b2.message(body='err-full', timeout=3)
    xt.is_(xt.error_summary(e), ('error', 'item-not-found', str(alice.jid)),
           'a message of type error to a bound full JID is delivered there')
    sids = [xt.send_message_id(alice, bare, 'err-bare', 'error', extra=ERR),
            xt.send_message_id(alice, gone, 'err-gone', 'error', extra=ERR)]
    await sync(alice)
    got = [await c.message(pred=lambda m: m['body'] in ('err-bare', 'err-gone', 'err-full'),
                           timeout=Q) for c in (b1, b2, b3, bn)]
    xt.is_([m['body'] if m is not None else None for m in got], [None] * 4,
           'a message of type error to the bare JID or to an unbound resource reaches nobody')
    xt.is_([xt.error_summary(await xt.error_for(alice, i, timeout=Q)) for i in [sid] + sids],
           [None] * 3, 'and none of the three error messages is answered with an error')

    # IQ to an unbound full JID: service-unavailable (8.5.3.2.3); to the
    # bare JID with a namespace nobody handles: service-unavailable
    # answered by the server on the account's behalf (8.5.2.1.3).
    for to, what in ((gone, 'an unbound resource'), (bare, 'the bare JID')):
        r = await alice.iq('get', to, "<query xmlns='urn:xmppd:test:nothing'/>")
        xt.is_(xt.error_summary(r), ('error', 'service-unavailable', to),
               'IQ to %s: service-unavailable from that JID' % what)

    # Once every resource of bob has a negative priority, a message to the
    # bare JID finds nobody (8.5.2.2.1): no offline module, so it bounces.
    for c in (b1, b2, b3):
        await c.disconnect()
    await asyncio.sleep(0.3)
    sid = xt.send_message_id(alice, bare, 'nobody', 'chat')
    e = await xt.error_for(alice, sid, timeout=3)
    xt.is_(xt.error_summary(e), ('error', 'service-unavailable', bare),
           'with only a negative resource left, chat to the bare JID bounces')
    xt.ok(await bn.message(body='nobody', timeout=Q) is None,
          'and the negative resource does not get it')

    await xt.disconnect_all(alice, bn)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
