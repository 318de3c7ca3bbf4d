#!/usr/bin/python3
"""t0220-hibernate: quiet client streams give their XML parser back
(hibernate_after) and go on as before when they talk again, including a
namespace prefix declared on the stream header."""

import asyncio
import collections
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

GIVEN_BACK = re.compile(r'(c2s#[0-9.]+): idle: parser given back')
BOUND = re.compile(r'(c2s#[0-9.]+): bound (\S+)')


def naps(srv):
    """How many times each connection (by its log tag) gave its parser back."""
    return collections.Counter(GIVEN_BACK.findall(srv.log()))


def tags(srv, *jids):
    """The log tags of the connections that bound these full JIDs."""
    bound = {jid: tag for tag, jid in BOUND.findall(srv.log())}
    return [bound.get(str(j)) for j in jids]


async def wait_naps(srv, conns, n, timeout=10):
    """Waits until each of the connections conns (log tags) gave its parser
    back at least n times; returns the counts of those connections. One
    connection hibernating three times is not three connections doing so."""
    deadline = time.monotonic() + timeout
    while True:
        count = naps(srv)
        if all(count[c] >= n for c in conns) or time.monotonic() > deadline:
            return {c: count[c] for c in conns}
        await asyncio.sleep(0.2)


async def raw_login_with_prefix(srv, user, password):
    """Logs in over a raw stream whose last header declares xmlns:x."""
    raw = await xt.Raw.open(srv)
    if await raw.open_stream() is None or not await raw.starttls():
        return None, None
    if await raw.open_stream() is None or not await raw.auth_plain(user, password):
        return None, None
    raw.set_mark()
    await raw.send("<stream:stream to='%s' xmlns='jabber:client' "
                   "xmlns:stream='http://etherx.jabber.org/streams' "
                   "xmlns:x='urn:example:x' version='1.0'>" % srv.host)
    if not await raw.read_until(r'</stream:features>'):
        return None, None
    jid = await raw.bind('raw')
    await raw.send('<presence/>')
    return raw, jid


async def main():
    srv = xt.Server(conf={'hibernate_after': 1})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')

    alice = await xt.login_ok(srv, 'alice', 'alice-pw')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw')
    carol, carol_jid = await raw_login_with_prefix(srv, 'carol', 'carol-pw')
    xt.ok(carol_jid is not None, 'carol logs in on a stream that declares xmlns:x')

    # hibernate_after: 1 and a sweep of a tenth of the sessions (at least
    # one) per second: all three are quiet long enough within a few seconds.
    conns = tags(srv, alice.jid, bob.jid, carol_jid)
    xt.ok(None not in conns and len(set(conns)) == 3,
          'the three streams are three connections in the log (%s)' % conns)
    got = await wait_naps(srv, conns, 1)
    xt.ok(all(v >= 1 for v in got.values()),
          'each of the three quiet streams gave its parser back (%s)' % got)

    alice.send(bob.jid, 'after a nap')
    m = await bob.message(body='after a nap')
    xt.ok(m is not None, 'a hibernated sender and receiver: the message arrives')
    bob.send(alice.jid, 'and back')
    m = await alice.message(body='and back')
    xt.ok(m is not None, 'and the reply arrives')

    # The prefix carol's stream header declared still resolves after her
    # stream woke up with a new parser.
    await carol.send("<message to='%s' type='chat'><body>prefixed</body>"
                     "<x:data>kept</x:data></message>" % alice.jid)
    m = await alice.message(body='prefixed')
    xt.ok(m is not None, 'carol\'s message using the header\'s prefix arrives')
    data = m.xml.find('{urn:example:x}data') if m is not None else None
    xt.is_(data.text if data is not None else None, 'kept',
           'its x:data element is in urn:example:x')
    xt.unlike(carol.text, r'<stream:error>', 'carol\'s stream had no error')

    # Quiet again: they hibernate a second time and still work (the
    # parsers now come from the worker's pool of reset parsers).
    got = await wait_naps(srv, conns, 2)
    xt.ok(all(v >= 2 for v in got.values()), 'each of them hibernates again (%s)' % got)
    for i in range(3):
        alice.send(bob.jid, 'round %d' % i)
    got = []
    for i in range(3):
        m = await bob.message(pred=lambda m: m['body'].startswith('round '))
        got.append(m['body'] if m else None)
    xt.is_(got, ['round 0', 'round 1', 'round 2'], 'three more arrive in order')
    carol.set_mark()
    await carol.send("<iq type='get' id='v1' to='%s'><query xmlns='jabber:iq:version'/></iq>"
                     % srv.host)
    xt.ok(await carol.read_until(r"id=['\"]v1['\"]") is not None,
          'carol\'s IQ after the second nap is answered')

    # hibernate_after: 0 turns it off.
    srv2 = xt.Server(name='t0220-never', conf={'hibernate_after': 0})
    srv2.register('dave', 'dave-pw')
    dave = await xt.login_ok(srv2, 'dave', 'dave-pw')
    await asyncio.sleep(3)
    xt.is_(sum(naps(srv2).values()), 0,
           'with hibernate_after: 0 no parser is given back')

    carol.close()
    await xt.disconnect_all(alice, bob, dave)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')
    xt.is_(srv2.stop(), 0, 'the second xmppd exits 0 on SIGTERM')


xt.run(main)
