#!/usr/bin/python3
"""t0950-store-async: the asynchronous store against a backend that answers
later, and the order of a stream's stanzas.

The servers run with store_test_delay_ms (a test-only key): every store
operation of the asynchronous API completes DELAY_MS late, from a timer,
as a backend across a network would. RFC 6120 10.1 has the server process
a stream's stanzas in the order it received them, so a stanza's store work
must have completed before the stream's next stanza is handled: each check
below sends, in one write, a stanza that does store work and one that
depends on it, and looks at what the client sees.

- mod_private: a set, then a get of the same element: the get returns what
  the set stored, and answers after it.
- A set, then a ping (answered without the store): the ping's answer comes
  after the set's, and not before the set's store work had time to finish.
- A set and a message, then the client closes at once: the message is
  still delivered (the input that waited is handled before the stream
  goes).
- mod_vcard: a vCard with a photo, then available presence: the user's
  other resource gets the presence with the new photo's hash (XEP-0153 3.1).
- Unloading mod_private while a set is pending: the set completes and is
  answered before the module goes (hooks/xmppd.h: unload waits for a
  module's store work).
- Federation: a vCard get and a ping from another server on one s2s stream:
  the answers come back in that order.
"""

import base64
import hashlib
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

DELAY_MS = 400
# A loaded machine may fire the timer a little early in our clock's eyes.
AT_LEAST = DELAY_MS / 1000.0 * 0.8
NS_PRIVATE = 'jabber:iq:private'
NS_PING = 'urn:xmpp:ping'
NS_VCARD = 'vcard-temp'
NS_UPDATE = 'vcard-temp:x:update'
IMAGE = bytes(range(256)) * 2 + b'\x89PNG t0950'
IMAGE_HASH = hashlib.sha1(IMAGE).hexdigest()


def private_set(iq_id, text):
    return ("<iq type='set' id='%s'><query xmlns='%s'><prefs xmlns='test:prefs'>%s</prefs>"
            "</query></iq>" % (iq_id, NS_PRIVATE, text))


def private_get(iq_id):
    return ("<iq type='get' id='%s'><query xmlns='%s'><prefs xmlns='test:prefs'/></query></iq>"
            % (iq_id, NS_PRIVATE))


def ping(iq_id, to):
    return "<iq type='get' id='%s' to='%s'><ping xmlns='%s'/></iq>" % (iq_id, to, NS_PING)


def reply_rx(iq_id):
    """An IQ reply with this id, whole (empty or with content)."""
    return (r"<iq\b[^>]*\bid=['\"]%s['\"][^>]*?(?:/>|>.*?</iq>)" % re.escape(iq_id))


def reply(raw, iq_id):
    """(position, type, element) of the reply to iq_id in what raw received
    since its mark, or (None, None, None)."""
    m = re.search(reply_rx(iq_id), raw.since_mark(), re.S)
    if not m:
        return None, None, None
    try:
        e = xt.ET.fromstring("<w xmlns='jabber:client'>%s</w>" % m.group(0))[0]
    except xt.ET.ParseError:
        return m.start(), None, None
    return m.start(), e.get('type'), e


async def wait_reply(raw, iq_id, timeout=10):
    """Waits for the reply to iq_id; returns the time it was seen."""
    await raw.read_until(reply_rx(iq_id), timeout)
    return time.monotonic()


async def c2s_checks(srv):
    raw = await xt.Raw.open(srv)
    await raw.login('alice', 'alice-pw', 'raw')
    # The initial presence comes back once mod_vcard has loaded the photo
    # hash (the login's own store work): from here on the stream is idle.
    await raw.read_until(r'<presence\b', 10)

    # A set and a get of the same element in one write.
    raw.set_mark()
    sent = time.monotonic()
    await raw.send(private_set('s1', 'first') + private_get('g1'))
    t_s1 = await wait_reply(raw, 's1')
    await wait_reply(raw, 'g1')
    pos_s1, type_s1, _ = reply(raw, 's1')
    pos_g1, type_g1, e = reply(raw, 'g1')
    xt.is_(type_s1, 'result', 'private: the set is stored') or xt.diag(raw.since_mark()[-800:])
    xt.ok(t_s1 - sent >= AT_LEAST,
          'its result comes no sooner than the delay (%.3f s): the backend answers later'
          % (t_s1 - sent))
    text = e.findtext('{%s}query/{test:prefs}prefs' % NS_PRIVATE) if e is not None else None
    xt.is_((type_g1, text), ('result', 'first'),
           'the get sent with it in one write returns what the set stored')
    xt.ok(pos_s1 is not None and pos_g1 is not None and pos_s1 < pos_g1,
          'and is answered after the set')

    # A set, then a stanza that needs no store: it still waits its turn.
    raw.set_mark()
    sent = time.monotonic()
    await raw.send(private_set('s2', 'second') + ping('p2', srv.host))
    t_p2 = await wait_reply(raw, 'p2')
    await wait_reply(raw, 's2')
    pos_s2, type_s2, _ = reply(raw, 's2')
    pos_p2, type_p2, _ = reply(raw, 'p2')
    xt.is_((type_s2, type_p2), ('result', 'result'), 'a set and a ping in one write: both answered')
    xt.ok(pos_s2 is not None and pos_p2 is not None and pos_s2 < pos_p2,
          "RFC 6120 10.1: the ping is answered after the set's store work completed") or \
        xt.diag(raw.since_mark()[-800:])
    xt.ok(t_p2 - sent >= AT_LEAST,
          'the ping waited for it (%.3f s, the delay is %.3f s)' % (t_p2 - sent, DELAY_MS / 1000.0))

    # The stream goes on afterwards: a get alone.
    raw.set_mark()
    await raw.send(private_get('g3'))
    await wait_reply(raw, 'g3')
    _, type_g3, e = reply(raw, 'g3')
    text = e.findtext('{%s}query/{test:prefs}prefs' % NS_PRIVATE) if e is not None else None
    xt.is_((type_g3, text), ('result', 'second'), 'the stream reads on: a later get sees the second set')
    raw.close()

    # A client that sends and closes at once: what it sent after a stanza
    # with store work pending is still handled, in order.
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b')
    quick = await xt.Raw.open(srv)
    await quick.login('alice', 'alice-pw', 'quick')
    await quick.read_until(r'<presence\b', 10)
    await quick.send(private_set('s4', 'third') +
                     "<message to='%s' type='chat'><body>after-set</body></message>"
                     "</stream:stream>" % bob.jid)
    quick.close()
    m = await bob.message(body='after-set', timeout=10)
    xt.ok(m is not None, 'a client that closes right after a set and a message: the message '
          'still arrives')
    await bob.disconnect()

    # XEP-0153: a vCard with a photo, then available presence, in one
    # write from alice/desk; alice/phone must get that presence with the
    # new photo's hash: mod_vcard learns it when the set has completed.
    phone = await xt.login_ok(srv, 'alice', 'alice-pw', resource='phone')
    desk = await xt.Raw.open(srv)
    desk_jid = await desk.login('alice', 'alice-pw', 'desk')
    desk.set_mark()
    b64 = base64.b64encode(IMAGE).decode()
    await desk.send("<iq type='set' id='v1'><vCard xmlns='%s'><FN>Alice</FN><PHOTO>"
                    "<TYPE>image/png</TYPE><BINVAL>%s</BINVAL></PHOTO></vCard></iq>"
                    "<presence><status>after-vcard</status></presence>" % (NS_VCARD, b64))
    p = await phone.presence(frm=desk_jid, pred=lambda p: p['status'] == 'after-vcard', timeout=10)
    got = [(x.findtext('{%s}photo' % NS_UPDATE) or '')
           for x in p.xml.findall('{%s}x' % NS_UPDATE)] if p is not None else None
    xt.is_(got, [IMAGE_HASH],
           "vCard set then presence in one write: the other resource sees the new photo's hash")
    await wait_reply(desk, 'v1')
    xt.is_(reply(desk, 'v1')[1], 'result', 'and the vCard set was answered with a result')
    desk.close()
    await phone.disconnect()

    # Unloading a module whose store work is pending waits for it: the
    # set's callback runs (its reply arrives) before the code goes.
    raw = await xt.Raw.open(srv)
    await raw.login('alice', 'alice-pw', 'unload')
    await raw.read_until(r'<presence\b', 10)
    raw.set_mark()
    await raw.send(private_set('s5', 'before-unload'))
    await xt.asyncio.sleep(0.1)         # read and submitted; DELAY_MS to go
    code, out, err = await srv.actl('module', 'unload', 'mod_private')
    xt.is_(code, 0, 'xmppctl module unload mod_private, with a set pending') or xt.diag(out + err)
    await wait_reply(raw, 's5')
    xt.is_(reply(raw, 's5')[1], 'result',
           'the pending set still completes and is answered') or xt.diag(raw.since_mark()[-500:])
    code, out, err = await srv.actl('module', 'load', 'mod_private')
    raw.set_mark()
    await raw.send(private_get('g5'))
    await wait_reply(raw, 'g5')
    _, type_g5, e = reply(raw, 'g5')
    text = e.findtext('{%s}query/{test:prefs}prefs' % NS_PRIVATE) if e is not None else None
    xt.is_((code, type_g5, text), (0, 'result', 'before-unload'),
           'loaded again: what it stored is there')
    raw.close()


async def s2s_checks():
    d = xt.scratch_dir('t0950-certs')
    xt.make_ca(d, 'ca')
    a, b = xt.federated_pair(d, 'ca', 't0950', conf={'store_test_delay_ms': DELAY_MS},
                             modules={'b.test': {'mod_vcard': {}, 'mod_ping': {'send_pings': False}}})
    a.register('alice', 'alice-pw')
    b.register('bob', 'bob-pw')
    raw = await xt.Raw.open(a)
    await raw.login('alice', 'alice-pw', 'r')
    # Both go to b.test on the same s2s stream: the vCard get reads the
    # store on b.test, the ping does not.
    for round_ in ('link-up', 'link-there'):
        vg, sp = 'vg-' + round_, 'sp-' + round_
        raw.set_mark()
        await raw.send("<iq type='get' id='%s' to='bob@b.test'><vCard xmlns='%s'/></iq>%s"
                       % (vg, NS_VCARD, ping(sp, 'b.test')))
        await wait_reply(raw, vg, timeout=15)
        await wait_reply(raw, sp, timeout=15)
        pos_v, type_v, e = reply(raw, vg)
        pos_p, type_p, _ = reply(raw, sp)
        cond = None
        if e is not None and type_v == 'error':
            err = e.find('{jabber:client}error')
            cond = err[0].tag.split('}')[1] if err is not None and len(err) else None
        # Another user's missing vCard: service-unavailable (XEP-0054 3.3).
        xt.is_((type_v, cond, type_p), ('error', 'service-unavailable', 'result'),
               '%s: bob has no vCard on b.test (service-unavailable), the ping is answered'
               % round_) or \
            xt.diag(raw.since_mark()[-800:])
        xt.ok(pos_v is not None and pos_p is not None and pos_v < pos_p,
              '%s: on the s2s stream too, the ping is handled after the vCard get completed'
              % round_)
    raw.close()


async def main():
    srv = xt.Server(workers=2, conf={'store_test_delay_ms': DELAY_MS},
                    modules={'mod_private': {}, 'mod_vcard': {},
                             'mod_ping': {'send_pings': False}})
    srv.register('alice', 'alice-pw')
    srv.register('bob', 'bob-pw')
    await c2s_checks(srv)
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')
    await s2s_checks()


if __name__ == '__main__':
    xt.run(main)
