#!/usr/bin/python3
"""t0730-last: XEP-0012 Last Activity (mod_last): the server's uptime, a
user's last unavailable presence and its status, privacy, availability.
What contacts with a presence subscription see is in t1540."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_LAST = 'jabber:iq:last'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
QUERY = "<query xmlns='%s'/>" % NS_LAST


def last_of(r):
    """(seconds as int or None, text) of a jabber:iq:last result."""
    if r is None or r['type'] != 'result':
        return None, None
    q = r.xml.find('{%s}query' % NS_LAST)
    if q is None:
        return None, None
    try:
        return int(q.get('seconds')), q.text or ''
    except (TypeError, ValueError):
        return None, q.text or ''


def condition(r):
    return r['error']['condition'] if r is not None and r['type'] == 'error' else None


async def main():
    srv = xt.Server(workers=2, modules={'mod_last': {}, 'mod_disco': {}})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='desk')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b')

    # XEP-0012 5: to the server, its uptime, growing with time.
    r1 = await alice.iq('get', srv.host, QUERY)
    up1, text = last_of(r1)
    xt.ok(up1 is not None and 0 <= up1 < 120, 'server uptime is a small number of seconds (%r)' % up1) \
        or xt.diag(str(r1))
    xt.is_(text, '', 'the server answer carries no text')
    await asyncio.sleep(2.2)
    up2, _ = last_of(await bob.iq('get', srv.host, QUERY))
    xt.ok(up1 is not None and up2 is not None and up2 >= up1 + 2,
          'two seconds later the uptime grew by at least 2 (%r -> %r)' % (up1, up2))

    # XEP-0012 4: a user with an available resource is active now.
    r = await alice.iq('get', srv.jid('alice'), QUERY)
    xt.is_(last_of(r), (0, ''), 'alice online asks about herself: seconds 0, no status') \
        or xt.diag(str(r))

    # XEP-0012 4, 8: only those allowed to see the presence may ask (bob
    # has no subscription to alice's presence: no roster at all here).
    r = await bob.iq('get', srv.jid('alice'), QUERY)
    xt.is_(condition(r), 'forbidden', 'bob asking about alice (online) gets forbidden')
    xt.ok(r is not None and r.xml.find('{%s}query' % NS_LAST) is not None
          and r.xml.find('{%s}query' % NS_LAST).get('seconds') is None,
          'and the error reveals no seconds')

    # Never unavailable after being available: nothing to tell.
    carol = await xt.login_ok(srv, 'carol', 'carol-pw', resource='c', presence=False)
    r = await carol.iq('get', srv.jid('carol'), QUERY)
    xt.is_(condition(r), 'item-not-found', 'carol (never logged out) gets item-not-found')

    # Logging out with a status: the seconds count from then, and the status
    # of the last unavailable presence comes back.
    alice.xmpp.send_presence(ptype='unavailable', pstatus='Heading Home')
    await alice.disconnect()
    sessions = await srv.wait_connected(lambda s: not any(x['jid'].startswith(srv.jid('alice'))
                                                          for x in s))
    xt.ok(sessions is not None and not any(x['jid'].startswith(srv.jid('alice')) for x in sessions),
          'alice is gone from xmppctl connected')
    await asyncio.sleep(2.2)
    r = await bob.iq('get', srv.jid('alice'), QUERY)
    xt.is_(condition(r), 'forbidden', 'bob asking about alice (offline) still gets forbidden')
    alice2 = await xt.login_ok(srv, 'alice', 'alice-pw', resource='phone', presence=False)
    r = await alice2.iq('get', srv.jid('alice'), QUERY)
    secs, text = last_of(r)
    xt.ok(secs is not None and 2 <= secs < 60,
          'alice, back without presence, sees she logged out 2..60 s ago (%r)' % secs) or xt.diag(str(r))
    xt.is_(text, 'Heading Home', 'with the status of her unavailable presence')
    # No 'to' means her own account (RFC 6120 10.3).
    secs2, text2 = last_of(await alice2.iq('get', None, QUERY))
    xt.ok(secs2 is not None and secs2 >= secs and text2 == 'Heading Home',
          'the same answer with no to address (%r, %r)' % (secs2, text2))

    # Becoming available again makes her active now; a second resource of
    # hers sees 0 as well.
    alice2.xmpp.send_presence()
    await asyncio.sleep(0.3)
    xt.is_(last_of(await alice2.iq('get', srv.jid('alice'), QUERY)), (0, ''),
           'after her presence, alice is active now: seconds 0')
    # Unavailable again without closing the session: the last unavailable
    # presence is what counts (issue 13 point 8), from now, with its status.
    alice2.xmpp.send_presence(ptype='unavailable', pstatus='brb')
    await asyncio.sleep(0.3)
    secs3, text3 = last_of(await alice2.iq('get', srv.jid('alice'), QUERY))
    xt.ok(secs3 is not None and secs3 < 2 and text3 == 'brb',
          'unavailable but connected: counted from that presence, with its status (%r, %r)'
          % (secs3, text3))
    # A connection that drops later, the resource unavailable already: no
    # new unavailable presence, so the seconds still count from 'brb'.
    await asyncio.sleep(2.2)
    alice2.abort()
    await srv.wait_connected(lambda s: not any(x['jid'].startswith(srv.jid('alice')) for x in s))
    alice3 = await xt.login_ok(srv, 'alice', 'alice-pw', resource='tab', presence=False)
    secs4, text4 = last_of(await alice3.iq('get', srv.jid('alice'), QUERY))
    xt.ok(secs4 is not None and secs4 >= 2, 'after the drop of the unavailable resource the '
          'seconds still count from its unavailable presence (%r)' % secs4)
    xt.is_(text4, 'brb', 'and its status is that presence\'s')
    # A connection that drops while available: the server's unavailable
    # presence for it (RFC 6121 4.5.3) counts, and it has no status.
    alice3.xmpp.send_presence()
    await asyncio.sleep(0.3)
    alice3.abort()
    await srv.wait_connected(lambda s: not any(x['jid'].startswith(srv.jid('alice')) for x in s))
    alice3 = await xt.login_ok(srv, 'alice', 'alice-pw', resource='tab1', presence=False)
    secs4, text4 = last_of(await alice3.iq('get', srv.jid('alice'), QUERY))
    xt.ok(secs4 is not None and secs4 < 2, 'after the drop of an available resource it is '
          'recent (%r)' % secs4)
    xt.is_(text4, '', 'with no status')

    # A long status is cut (at a character boundary) before it is stored.
    alice3.xmpp.send_presence()
    alice3.xmpp.send_presence(ptype='unavailable', pstatus='\u00e9' * 3000)
    await alice3.disconnect()
    await srv.wait_connected(lambda s: not any(x['jid'].startswith(srv.jid('alice')) for x in s))
    alice3 = await xt.login_ok(srv, 'alice', 'alice-pw', resource='tab2', presence=False)
    _, text5 = last_of(await alice3.iq('get', srv.jid('alice'), QUERY))
    xt.ok(text5 is not None and 0 < len(text5.encode()) <= 1024 and set(text5) == {'\u00e9'},
          'a 6000-byte status comes back cut to at most 1024 bytes of whole characters (%r bytes)'
          % (len(text5.encode()) if text5 else None))

    # A hostile query: a set is not a thing for jabber:iq:last.
    r = await alice3.iq('set', srv.jid('alice'), QUERY)
    xt.is_(r['type'] if r is not None else None, 'error', 'a set of jabber:iq:last is an error')

    # Service discovery lists the feature for the server and for accounts.
    r = await bob.iq('get', srv.host, "<query xmlns='%s'/>" % NS_DISCO_INFO)
    xt.like(str(r), r"<feature var=.jabber:iq:last.", 'the server advertises jabber:iq:last')
    r = await bob.iq('get', srv.jid('bob'), "<query xmlns='%s'/>" % NS_DISCO_INFO)
    xt.like(str(r), r"<feature var=.jabber:iq:last.", 'an account advertises jabber:iq:last')

    # Deleting the account deletes its record (XEP-0077 3.2). Her session
    # still open then ends after remove_user ran, and its logout must not
    # write the record again. Seen in the spool by mdb_dump, after the
    # removal and before the name is registered again (mod_last also wipes
    # on register_user, which would hide a removal that left a row).
    carol.xmpp.send_presence()
    await carol.iq('get', srv.host, QUERY)
    await carol.disconnect()
    await srv.wait_connected(lambda s: not any(x['jid'].startswith(srv.jid('carol')) for x in s))
    xt.is_(sorted(xt.user_rows(srv, 'alice')), ['accounts', 'mod_last'],
           "before the removal the spool holds alice's account and last-logout rows")
    code, out, err = await srv.actl('unregister', 'alice', srv.host)
    xt.is_(code, 0, 'xmppctl unregister alice (online)') or xt.diag(out + err)
    xt.ok(await alice3.wait_closed(5), 'her open session is closed')
    sessions = await srv.wait_connected(
        lambda s: not any(x['jid'].startswith(srv.jid('alice')) for x in s))
    xt.ok(sessions is not None and not any(x['jid'].startswith(srv.jid('alice')) for x in sessions),
          'and gone from xmppctl connected')
    xt.is_(xt.user_rows(srv, 'alice'), {},
           'after the removal and the end of her session no row of alice is left in any table')
    xt.is_(sorted(xt.user_rows(srv, 'carol')), ['accounts', 'mod_last'],
           "carol's account and last-logout rows are untouched")
    srv.register('alice', 'alice-pw2')
    alice4 = await xt.login_ok(srv, 'alice', 'alice-pw2', resource='new', presence=False)
    r = await alice4.iq('get', srv.jid('alice'), QUERY)
    xt.is_(condition(r), 'item-not-found', 'a new alice under the old name has no last activity')

    # A session still open when the server stops ends with it: its logout
    # is written before the server exits (XEP-0012 3), and read after the
    # restart.
    bob.xmpp.send_presence(ptype='unavailable', pstatus='Gone with the server')
    await bob.iq('get', srv.host, QUERY)    # the presence is handled first (RFC 6120 10.1)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM with bob still connected')
    srv.start()
    await xt.disconnect_all(bob, alice4)
    bob2 = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b2', presence=False)
    r = await bob2.iq('get', srv.jid('bob'), QUERY)
    secs, text = last_of(r)
    xt.ok(secs is not None and 0 <= secs < 60 and text == 'Gone with the server',
          'after the restart bob sees the logout of the session the stop ended (%r, %r)'
          % (secs, text)) or xt.diag(str(r))

    await xt.disconnect_all(bob2)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
