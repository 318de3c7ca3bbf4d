#!/usr/bin/python3
"""t0710-ping: XEP-0199 (mod_ping) both ways: clients ping the server and
their own bare JID; the server pings idle clients and closes those that do
not answer with <connection-timeout/>."""

import asyncio
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_PING = 'urn:xmpp:ping'
PING = "<ping xmlns='%s'/>" % NS_PING
# One <iq/> the server wrote (self-closing or not).
IQ_RX = r'<iq\b[^>]*?(?:/>|>.*?</iq>)'


def parse_iq(text):
    try:
        return xt.ET.fromstring(text)
    except xt.ET.ParseError:
        return None


async def next_iq(raw, timeout):
    """The next <iq/> after raw's mark (the mark moves past it), or None."""
    m = await raw.read_until(IQ_RX, timeout)
    if m is None:
        return None, None
    raw.mark += m.end()
    return parse_iq(m.group(0)), m.group(0)


def is_ping(iq):
    return (iq is not None and iq.get('type') == 'get' and
            iq.find('{%s}ping' % NS_PING) is not None)


async def answer_pings(raw, seconds, reply='result'):
    """Reads for `seconds`, answering every server ping with a result (or
    an error); returns (pings seen, anything else seen)."""
    pings, other = [], []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or raw.closed:
            break
        iq, text = await next_iq(raw, left)
        if iq is None:
            if text is not None:
                other.append(text)
            continue
        if not is_ping(iq):
            other.append(text)
            continue
        pings.append(iq)
        if reply == 'result':
            await raw.send("<iq type='result' id='%s' to='%s'/>" % (iq.get('id'), iq.get('from')))
        else:
            await raw.send("<iq type='error' id='%s' to='%s'><ping xmlns='%s'/>"
                           "<error type='cancel'><service-unavailable "
                           "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                           % (iq.get('id'), iq.get('from'), NS_PING))
    return pings, other


async def main():
    srv = xt.Server(workers=2, modules={'mod_ping': {'ping_interval': 1, 'ping_ack_timeout': 1}})
    for u in ('alice', 'bob', 'carol', 'dave'):
        srv.register(u, u + '-pw')

    # Client to server (XEP-0199 4.2), and to one's own bare JID.
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='a')
    r = await alice.iq('get', srv.host, PING)
    xt.is_(r['type'] if r is not None else None, 'result', 'ping to the server: a result')
    xt.is_(len(r.xml) if r is not None else None, 0, 'the result is empty')
    xt.is_(str(r['from']) if r is not None else None, srv.host, 'it comes from the server')
    r = await alice.iq('get', srv.jid('alice'), PING)
    xt.is_(r['type'] if r is not None else None, 'result', 'ping to her own bare JID: a result')
    xt.is_(str(r['from']) if r is not None else None, srv.jid('alice'),
           'it comes from her bare JID')
    r = await alice.iq('set', srv.host, PING)
    xt.is_(r['error']['condition'] if r is not None else None, 'not-allowed',
           'a ping of type set: not-allowed')

    # Server to client (XEP-0199 4.1): a raw client that answers stays.
    bob = await xt.Raw.open(srv)
    bob_jid = await bob.login('bob', 'bob-pw', resource='raw')
    carol = await xt.Raw.open(srv)
    carol_jid = await carol.login('carol', 'carol-pw', resource='err')
    dave = await xt.Raw.open(srv)
    await dave.login('dave', 'dave-pw', resource='mute')
    dave_start = time.monotonic()

    (pings, other), (cpings, _), dave_closed = await asyncio.gather(
        answer_pings(bob, 4), answer_pings(carol, 4, reply='error'),
        dave.read_until_close(8))

    xt.ok(len(pings) >= 2, 'an idle client answering pings got several in 4 s (%d)' % len(pings))
    p = pings[0] if pings else None
    xt.is_(p.get('from') if p is not None else None, srv.host, 'a ping comes from the server')
    xt.is_(p.get('to') if p is not None else None, bob_jid, 'to the full JID')
    ids = [q.get('id') for q in pings]
    xt.ok(all(ids) and len(set(ids)) == len(ids), 'every ping has an id of its own') or xt.diag(ids)
    xt.is_(other, [], 'the answers were not bounced back or routed anywhere')
    xt.ok(not bob.closed, 'the client answering with results is still connected after 4 s')
    xt.ok(len(cpings) >= 2 and not carol.closed,
          'a client answering with errors (XEP-0199 4.1) is kept as well (%d pings)' % len(cpings))

    # One that never answers: closed with <connection-timeout/>.
    t = (dave.closed_at - dave_start) if dave.closed_at else None
    xt.ok(dave_closed, 'a client that ignores pings is disconnected')
    xt.is_(xt.stream_error(dave.since_mark()), 'connection-timeout',
           'with <connection-timeout/>') or xt.diag(dave.since_mark()[-1000:])
    xt.like(dave.since_mark(), r'<ping xmlns=.%s.' % re.escape(NS_PING),
            'it had been pinged first')
    xt.ok(t is not None and 1.5 <= t <= 6,
          'about interval + timeout (2 s) after it went quiet (%s s)' % (t and round(t, 2)))
    dave.close()

    # The slixmpp client (which answers by itself) is still there.
    r = await alice.iq('get', srv.host, PING)
    xt.is_(r['type'] if r is not None else None, 'result',
           'the slixmpp client idle meanwhile is still connected')
    sessions = await srv.wait_connected(lambda s: xt.session_of(s, bob_jid) and
                                        xt.session_of(s, carol_jid))
    xt.ok(xt.session_of(sessions, bob_jid) and xt.session_of(sessions, carol_jid),
          'xmppctl connected still lists both answering raw clients')
    bob.close()
    carol.close()
    await xt.disconnect_all(alice)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')

    # send_pings: false - the server answers pings but sends none.
    srv2 = xt.Server(workers=2, modules={'mod_ping': {'send_pings': False, 'ping_interval': 1,
                                                      'ping_ack_timeout': 1}})
    srv2.register('erin', 'erin-pw')
    erin = await xt.Raw.open(srv2)
    await erin.login('erin', 'erin-pw', resource='quiet')
    closed = await erin.read_until_close(3.5)
    xt.ok(not closed, 'with send_pings false an idle client is not disconnected')
    xt.unlike(erin.since_mark(), 'urn:xmpp:ping', 'and is not pinged')
    erin.set_mark()
    await erin.send("<iq type='get' id='c1' to='%s'>%s</iq>" % (srv2.host, PING))
    iq, text = await next_iq(erin, 5)
    xt.ok(iq is not None and iq.get('type') == 'result' and iq.get('id') == 'c1',
          'its own ping is still answered') or xt.diag(text)
    erin.close()
    xt.is_(srv2.stop(), 0, 'the second xmppd exits 0 on SIGTERM')


xt.run(main)
