#!/usr/bin/python3
"""t1530-push: XEP-0357 push notifications (mod_push).

The app server is a test component (XEP-0114, slixmpp's ComponentXMPP) that
records every publish it gets and answers it with a result, or with an
error for the nodes it is told to refuse. What is checked is what it sees:
the notification's addressing, its summary form (XEP-0357 7, 11.3.1), the
publish-options, the <encrypted/> flag, and which registrations get one:

  - a phone whose stream-management session is detached (its TCP
    connection dropped without </stream:stream>, XEP-0198 5) is woken,
    also while the user's laptop is online and gets the message;
  - its count goes on while it sleeps and starts again once it resumes;
  - a session whose acks are overdue (a raw stream that never answers
    <r/>, longer than push_ack_timeout) is woken;
  - a session online and answering its acks (slixmpp's XEP-0198) is not;
  - an account with no session at all is, for a message and for a
    subscription request; an encrypted (OMEMO) message is flagged and
    carries no body; a body-less chat state wakes nobody;
  - an error answer disables the registration (no more notifications, its
    row gone from the store, and still none after a restart);
  - disable with a node removes that one only, without a node all of the
    app server's;
  - registrations survive a restart; with push_include_body the body is
    sent;
  - at most push_rate_limit per window, the count carried by the next one.

Where the check is that nothing comes, a sentinel follows: a message from
the same sender to an account whose registration always notifies. The
sender's stanzas are routed in order from its worker, so once the
sentinel's notification is in, one for the message before it would be too.
"""

import asyncio
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from slixmpp.componentxmpp import ComponentXMPP  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

NS_PUSH = 'urn:xmpp:push:0'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_XDATA = 'jabber:x:data'
NS_ACCEPT = 'jabber:component:accept'
NS_SM = 'urn:xmpp:sm:3'
NS_INFO = 'http://jabber.org/protocol/disco#info'
APP = 'push.xmppd.test'
SECRET = 'push-secret'
USERS = ('alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace')
ACK_TIMEOUT = 3         # push_ack_timeout, seconds
RATE, WINDOW = 3, 4     # phase 2: push_rate_limit, push_rate_window

PUBLISH_OPTIONS = ("<x xmlns='jabber:x:data' type='submit'>"
                   "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options"
                   "</value></field><field var='secret'><value>s3cr3t-42</value></field></x>")
OMEMO = ("<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1001'>"
         "<key rid='2002'>a2V5</key><iv>aXY=</iv></header><payload>cGF5bG9hZA==</payload>"
         "</encrypted><body>I sent you an OMEMO encrypted message but your client "
         "doesn't seem to support that.</body>")


# -- the app server ------------------------------------------------------------

def parse_notification(iq):
    """What a publish carries: node, from, the summary fields, the
    <encrypted/> flag, the publish-options fields (None if absent)."""
    x = iq.xml
    d = {'from': str(iq['from']), 'type': iq['type'], 'node': None, 'fields': None,
         'encrypted': False, 'options': None}
    pub = x.find('{%s}pubsub/{%s}publish' % (NS_PUBSUB, NS_PUBSUB))
    if pub is None:
        return d
    d['node'] = pub.get('node')
    n = pub.find('{%s}item/{%s}notification' % (NS_PUBSUB, NS_PUSH))
    if n is not None:
        form = n.find('{%s}x' % NS_XDATA)
        if form is not None:
            d['fields'] = {f.get('var'): f.findtext('{%s}value' % NS_XDATA)
                           for f in form.findall('{%s}field' % NS_XDATA)}
        d['encrypted'] = n.find('{%s}encrypted' % NS_PUSH) is not None
    po = x.find('{%s}pubsub/{%s}publish-options/{%s}x' % (NS_PUBSUB, NS_PUBSUB, NS_XDATA))
    if po is not None:
        d['options'] = {f.get('var'): f.findtext('{%s}value' % NS_XDATA)
                        for f in po.findall('{%s}field' % NS_XDATA)}
    return d


class AppServer:
    """A component that records every IQ and answers it: a result, or
    the error refuse[node] gives, (type, condition) (XEP-0357 7.1)."""

    def __init__(self, srv, port):
        self.x = x = ComponentXMPP(APP, SECRET, srv.ip, port)
        self.notes = xt.Mailbox()
        self.refuse = {}
        self.started = asyncio.get_running_loop().create_future()
        self.closed = asyncio.Event()
        x.add_event_handler('session_start', lambda _: self.started.done() or
                            self.started.set_result(True))
        x.add_event_handler('disconnected', lambda *_: self.closed.set())
        x.register_handler(Callback('push-iq', MatchXPath('{%s}iq' % NS_ACCEPT), self._iq))

    def _iq(self, iq):
        if iq['type'] not in ('get', 'set'):
            return
        d = parse_notification(iq)
        self.notes.put(d)
        if d['node'] in self.refuse:
            etype, cond = self.refuse[d['node']]
            self.x.make_iq_error(iq['id'], type=etype, condition=cond,
                                 ito=iq['from'], ifrom=iq['to']).send()
        else:
            self.x.make_iq_result(iq['id'], ito=iq['from'], ifrom=iq['to']).send()

    async def connect(self):
        self.x.connect()
        try:
            return await asyncio.wait_for(asyncio.shield(self.started), 10)
        except asyncio.TimeoutError:
            return False

    async def note(self, node, timeout=8):
        return await self.notes.get(lambda d: d['node'] == node, timeout)

    def drop(self, node):
        self.notes.items = [d for d in self.notes.items if d['node'] != node]

    def of(self, node):
        return [d for d in self.notes.items if d['node'] == node]

    async def disconnect(self):
        self.x.disconnect(wait=1)
        try:
            await asyncio.wait_for(self.closed.wait(), 5)
        except asyncio.TimeoutError:
            self.x.abort()


# -- clients ---------------------------------------------------------------------

def enable_xml(node, form='', verb='enable'):
    n = " node='%s'" % node if node is not None else ''
    return "<%s xmlns='%s' jid='%s'%s>%s</%s>" % (verb, NS_PUSH, APP, n, form, verb)


async def enable(c, node, form=''):
    """XEP-0357 5 from a slixmpp client: True on a result."""
    r = await c.iq('set', None, enable_xml(node, form))
    return r is not None and r['type'] == 'result'


async def disable(c, node):
    r = await c.iq('set', None, enable_xml(node, verb='disable'))
    return r is not None and r['type'] == 'result'


async def raw_enable(r, node, form=''):
    """The same on a raw stream: True on a result."""
    iq_id = xt.new_id('en')
    r.set_mark()
    await r.send("<iq type='set' id='%s'>%s</iq>" % (iq_id, enable_xml(node, form)))
    m = await r.read_until(r"<iq\b[^>]*\bid=['\"]%s['\"][^>]*>" % iq_id, 5)
    return m is not None and 'result' in m.group(0)


async def sm_session(srv, user, resource):
    """A raw session with stream management and resumption on, available:
    (raw, full jid, previd)."""
    r = await xt.sm_authed(srv, user)
    jid = await r.bind(resource)
    en = await xt.sm_enable(r)
    if jid is None or en is None or not en.startswith('<enabled'):
        raise xt.HarnessError('raw: no SM session for %s: %r' % (user, r.text[-400:]))
    await r.send('<presence/>')
    if not await r.read_until(r'<presence\b[^>]*/>'):
        raise xt.HarnessError('raw: no presence echo for %s' % user)
    r.set_mark()
    return r, jid, xt.sm_elems(en)[0].get('id')


def cut(r):
    """Drops the TCP connection at once (a reset): no </stream:stream>."""
    s = r.writer.get_extra_info('socket')
    if s is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    r.writer.transport.abort()


async def registered_offline(srv, user, *nodes):
    """user enables nodes from a session that then ends: the account has
    registrations and no session."""
    c = await xt.login_ok(srv, user, resource='gone')
    good = [await enable(c, n) for n in nodes]
    await c.disconnect()
    if not all(good):
        raise xt.HarnessError('%s could not enable %s' % (user, nodes))


def push_rows(srv, user):
    """The (app, node) of user's rows in the store (mdb_dump)."""
    return sorted(xt.key_parts(k)[2:4] for k, _ in xt.store_rows(srv, 'mod_push')
                  if xt.key_parts(k)[:2] == (srv.host, user))


async def rows_settle(srv, user, pred, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        rows = push_rows(srv, user)
        if pred(rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


def error_condition(r):
    return r['error']['condition'] if r is not None and r['type'] == 'error' else None


def summary(d):
    return (d or {}).get('fields') or {}


# -- the test ----------------------------------------------------------------------

async def main():
    xt.plan(48)
    mods = {'mod_disco': {}, 'mod_roster': {}, 'mod_offline': {},
            'mod_push': {'push_ack_timeout': ACK_TIMEOUT, 'push_rate_limit': 100}}
    srv = xt.Server(workers=2, modules=mods, start=False,
                    conf={'sm_ack_after': 1})
    port = xt.free_ports(srv.ip, 1)[0]
    srv.conf['listen'].append({'port': port, 'ip': srv.ip, 'module': 'component',
                               'hosts': {APP: {'password': SECRET}}})
    srv.write_config()
    srv.start()
    for u in USERS:
        srv.register(u, u + '-pw')
    app = AppServer(srv, port)
    if not await app.connect():
        raise xt.HarnessError('the app server component did not connect')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    alice_bare, carol, dave = srv.jid('alice'), srv.jid('carol'), srv.jid('dave')

    # XEP-0357 4.1: the account advertises push.
    r = await bob.iq('get', srv.jid('bob'), "<query xmlns='%s'/>" % NS_INFO)
    feats = [f.get('var') for f in r.xml.iter('{%s}feature' % NS_INFO)] if r is not None else []
    xt.ok(NS_PUSH in feats, 'disco#info of an account lists urn:xmpp:push:0') or xt.diag(feats)

    # The sentinel: dave has a registration and no session.
    await registered_offline(srv, 'dave', 'dave')

    async def quiet(node, why):
        """Nothing for node, shown by the sentinel's arriving after."""
        body = xt.new_id('sentinel')
        bob.send(dave, body)
        s = await app.note('dave')
        got = app.of(node)
        ok = xt.ok(s is not None and not got, why)
        if not ok:
            xt.diag('sentinel %s; for %s: %r' % ('came' if s else 'did not come', node, got))
        app.drop(node)
        return ok

    # -- A phone with stream management detaches ------------------------------
    phone, phone_jid, previd = await sm_session(srv, 'alice', 'phone')
    xt.ok(await raw_enable(phone, 'alice-phone', PUBLISH_OPTIONS),
          'enable with a publish-options form: result (XEP-0357 5)')
    # Everything the server sent it is acknowledged before the cut, so
    # that the resumption below replays only what came while detached.
    start = phone.text.index('/>', phone.text.index('<enabled')) + 2
    h = len(xt.sm_stanzas(phone.text[start:]))
    await phone.send("<a xmlns='%s' h='%d'/>" % (NS_SM, h))
    await asyncio.sleep(0.2)
    cut(phone)
    await asyncio.sleep(1.0)            # the server sees the reset: detached
    bob.send(alice_bare, 'hello-1')
    d = await app.note('alice-phone')
    f = summary(d)
    xt.ok(d is not None, 'a message to a detached session: the app server gets a notification')
    xt.is_((d or {}).get('from'), alice_bare, "published from the user's bare JID (XEP-0357 7)")
    xt.is_(f.get('FORM_TYPE'), 'urn:xmpp:push:summary', 'with the summary form')
    xt.is_(f.get('message-count'), '1', 'message-count 1')
    xt.is_(f.get('last-message-sender'), str(bob.jid), "last-message-sender: bob's JID")
    xt.ok('last-message-body' not in f, 'no last-message-body by default') or xt.diag(f)
    xt.is_(((d or {}).get('options') or {}).get('secret'), 's3cr3t-42',
           'the publish-options form given at enable comes along (XEP-0357 7)')

    laptop = await xt.login_ok(srv, 'alice', resource='laptop')
    # Available once its presence is handled (RFC 6121 4.2.2: the echo).
    await laptop.presence(frm=laptop.jid)
    bob.send(alice_bare, 'hello-2')
    got_laptop = await laptop.message(body='hello-2')
    d = await app.note('alice-phone')
    xt.ok(got_laptop is not None and d is not None,
          'the laptop online gets the message, and the detached phone is woken all the same')
    xt.is_(summary(d).get('message-count'), '2', 'message-count 2: counted since it slept')

    # -- The phone resumes, then stops answering acks --------------------------
    phone, ans = await xt.sm_resume(srv, 'alice', previd, h)
    xt.ok(ans is not None and ans.startswith('<resumed'), 'the phone resumes') or xt.diag(ans)
    # The replay asks for an ack at once (sm_ack_after 1); it goes unanswered.
    asked = await phone.read_until(r"<r xmlns='%s'/>" % NS_SM, 5)
    await asyncio.sleep(ACK_TIMEOUT + 1.5)
    bob.send(alice_bare, 'hello-3')
    d = await app.note('alice-phone')
    xt.ok(asked is not None and d is not None,
          'acks unanswered for more than push_ack_timeout: notified')
    xt.is_(summary(d).get('message-count'), '1', 'message-count starts again after the resumption')

    # -- Online and answering acks: no notification -----------------------------
    tablet = xt.Client(srv, 'alice', 'alice-pw', resource='tablet')
    tablet.xmpp.register_plugin('xep_0198')
    sm_on = asyncio.Event()
    tablet.xmpp.add_event_handler('sm_enabled', lambda _: sm_on.set())
    await tablet.connect()
    try:
        await asyncio.wait_for(sm_on.wait(), 5)
    except asyncio.TimeoutError:
        pass
    xt.ok(tablet.ok and sm_on.is_set() and await enable(tablet, 'alice-tablet'),
          'a slixmpp client with stream management enables push')
    bob.send(tablet.jid, 'hello-4')
    got = await tablet.message(body='hello-4')
    await quiet('alice-tablet', 'a session online answering its acks is not notified')
    xt.ok(got is not None, '(it got the message itself)')

    # -- No session at all --------------------------------------------------------
    await registered_offline(srv, 'carol', 'carol')
    bob.send(carol, 'to-carol')
    d = await app.note('carol')
    xt.ok(d is not None, 'an account with no session: notified')
    xt.is_(summary(d).get('last-message-sender'), str(bob.jid), 'last-message-sender is the sender')
    bob.send_raw("<presence to='%s' type='subscribe'/>" % carol)
    d = await app.note('carol')
    xt.ok(d is not None, 'a subscription request: notified')
    xt.is_(summary(d).get('pending-subscription-count'), '1', 'pending-subscription-count 1')
    bob.send_raw("<message to='%s' type='chat' id='%s'>%s</message>" % (carol, xt.new_id(), OMEMO))
    d = await app.note('carol')
    xt.ok(d is not None and d['encrypted'], 'an OMEMO message: notified, flagged <encrypted/>') or \
        xt.diag(d)
    xt.ok('last-message-body' not in summary(d), 'and no body')
    bob.send_raw("<message to='%s' type='chat'><composing "
                 "xmlns='http://jabber.org/protocol/chatstates'/></message>" % carol)
    await quiet('carol', 'a standalone chat state wakes nobody')

    # -- The app server refuses: the registration goes -------------------------
    await registered_offline(srv, 'erin', 'erin-bad')
    app.refuse['erin-bad'] = ('cancel', 'item-not-found')
    xt.is_(push_rows(srv, 'erin'), [(APP, 'erin-bad')], "erin's registration is in the store")
    bob.send(srv.jid('erin'), 'e1')
    d = await app.note('erin-bad')
    xt.ok(d is not None, 'a notification to a node the app server refuses')
    rows = await rows_settle(srv, 'erin', lambda rows: not rows)
    xt.is_(rows, [], 'its error answer removes the row from the store (XEP-0357 7.1)')
    bob.send(srv.jid('erin'), 'e2')
    await quiet('erin-bad', 'and no further notification goes there')
    # An error of type wait is transient (RFC 6120 8.3.2; XEP-0357 7.1 lets
    # a server keep such a registration).
    await registered_offline(srv, 'erin', 'erin-busy')
    app.refuse['erin-busy'] = ('wait', 'resource-constraint')
    bob.send(srv.jid('erin'), 'e-busy-1')
    first = await app.note('erin-busy')
    rows = await rows_settle(srv, 'erin', lambda rows: not rows, timeout=1.5)
    bob.send(srv.jid('erin'), 'e-busy-2')
    again = await app.note('erin-busy')
    xt.ok(first is not None and rows == [(APP, 'erin-busy')] and again is not None,
          'an error of type wait keeps the registration: still stored, notified again') or \
        xt.diag(first, rows, again)
    del app.refuse['erin-busy']

    # -- disable ---------------------------------------------------------------------
    fr = await xt.login_ok(srv, 'frank', resource='f')
    xt.ok(await enable(fr, 'frank-1') and await enable(fr, 'frank-2') and
          await disable(fr, 'frank-1'), 'frank enables two nodes and disables one')
    await fr.disconnect()
    bob.send(srv.jid('frank'), 'f1')
    d = await app.note('frank-2')
    xt.ok(d is not None, 'disable with a node keeps the other node (XEP-0357 6)')
    await quiet('frank-1', 'and the disabled node gets nothing')
    fr = await xt.login_ok(srv, 'frank', resource='f')
    xt.ok(await disable(fr, None), 'disable without a node: result')
    await fr.disconnect()
    app.drop('frank-2')
    bob.send(srv.jid('frank'), 'f2')
    await quiet('frank-2', 'disable without a node removes every node of that app server')
    xt.is_(push_rows(srv, 'frank'), [], 'and their rows')

    # -- What enable refuses --------------------------------------------------------
    fr = await xt.login_ok(srv, 'frank', resource='f')
    r = await fr.iq('set', None, "<enable xmlns='%s' node='x'/>" % NS_PUSH)
    xt.is_(error_condition(r), 'bad-request', "enable without 'jid': bad-request (XEP-0357 5)")
    oks = [await enable(fr, 'frank-m%d' % i) for i in range(10)]
    r = await fr.iq('set', None, enable_xml('frank-m10'))
    xt.ok(all(oks) and error_condition(r) == 'resource-constraint',
          'an 11th registration (push_max_registrations 10): resource-constraint') or \
        xt.diag(oks, error_condition(r))
    xt.ok(await enable(fr, 'frank-m3'), 'enabling one it has again still works at the limit')
    if not await disable(fr, None):
        raise xt.HarnessError('frank cannot disable')
    await fr.disconnect()

    # -- A restart: registrations survive; with push_include_body ---------------
    await xt.disconnect_all(bob, laptop, tablet)
    phone.close()
    await app.disconnect()
    srv.conf['modules']['mod_push'] = {'push_ack_timeout': ACK_TIMEOUT, 'push_include_body': True,
                                       'push_rate_limit': RATE, 'push_rate_window': WINDOW}
    srv.write_config()
    xt.is_(await srv.astop(), 0, 'xmppd stops')
    srv.start()
    app = AppServer(srv, port)
    app.refuse['erin-bad'] = ('cancel', 'item-not-found')
    if not await app.connect():
        raise xt.HarnessError('the app server component did not connect again')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    bob.send(carol, 'after-restart')
    d = await app.note('carol')
    xt.ok(d is not None, 'after a restart, the registration of a user offline still notifies')
    xt.is_(summary(d).get('last-message-body'), 'after-restart',
           'push_include_body: the body is sent')
    bob.send_raw("<message to='%s' type='chat' id='%s'>%s</message>" % (carol, xt.new_id(), OMEMO))
    d = await app.note('carol')
    xt.ok(d is not None and d['encrypted'] and 'last-message-body' not in summary(d),
          'an encrypted message: flagged, and no body even with push_include_body') or xt.diag(d)
    bob.send(srv.jid('erin'), 'e3')
    await quiet('erin-bad', 'the registration the app server refused is still gone after a restart')

    # -- Rate limit ----------------------------------------------------------------------
    await registered_offline(srv, 'grace', 'grace')
    t0 = time.monotonic()
    for i in range(1, 7):
        bob.send(srv.jid('grace'), 'r%d' % i)
    first = [await app.note('grace') for _ in range(RATE)]
    xt.is_([summary(d).get('message-count') for d in first], ['1', '2', '3'],
           'a burst of 6: the first %d notified, counts 1 to 3' % RATE)
    extra = await app.note('grace', timeout=1.5)
    xt.ok(extra is None and time.monotonic() - t0 < WINDOW,
          'at most push_rate_limit (%d) within push_rate_window' % RATE) or xt.diag(extra)
    await asyncio.sleep(max(0, WINDOW + 0.5 - (time.monotonic() - t0)))
    bob.send(srv.jid('grace'), 'r7')
    d = await app.note('grace')
    xt.is_(summary(d).get('message-count'), '7',
           'the next one after the window carries the count of those held back')
    xt.is_(summary(d).get('last-message-body'), 'r7', 'and the last message')

    await bob.disconnect()
    await app.disconnect()
    xt.is_(await srv.astop(), 0, 'xmppd stops cleanly')


xt.run(main, timeout=170)
