#!/usr/bin/python3
"""t1795-muc-mention: offline members are not forgotten (mod_muc's
muc_mention.c with mod_push, XEP-0357).

A persistent members-only room; the app server is a test component (as in
t1530) that records every publish. What is checked is what it and the
members' clients see:

  - an absent member named by its reserved nickname in a body (as words,
    case-blind: "BOBBY!" names bobby, "bobbyx" does not), or by a XEP-0372
    reference to its bare JID or to its room JID, is notified, with the
    occupant JID as last-message-sender and the body;
  - a member who opted in (<settings all='true'/>) is notified for any
    message;
  - no notification for a joined member, a user without an affiliation,
    a member who is not mentioned;
  - the missed mentions are fetched from a new device (<forwarded/> with
    <delay/>, paged with max/after), bounded by mention_keep, cleared up
    to an id and entirely; non-members get forbidden;
  - nothing reaches the member's MAM archive or offline storage;
  - the opt-in and the lists survive a restart.

Where the check is that nothing comes, a sentinel follows: dave opted in,
so every message notifies him; the room handles messages in order and
sends a message's notifications before the next one's, so once dave's
for the next message is in, one for this message would be too.
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402
from xt_muc import SVC, admin, cond_of, create, join, MUC, XDATA  # noqa: E402

from slixmpp.componentxmpp import ComponentXMPP  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

NS_PUSH = 'urn:xmpp:push:0'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_ACCEPT = 'jabber:component:accept'
NS_MEN = 'urn:xmppd:muc:mentions:0'
NS_REF = 'urn:xmpp:reference:0'
NS_FWD = 'urn:xmpp:forward:0'
NS_REG = 'jabber:iq:register'
APP = 'push.xmppd.test'
SECRET = 'push-secret'
KEEP = 3
USERS = ('alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan')
ROOM = 'team@' + SVC


class AppServer:
    """A component that records every publish and answers a result."""

    def __init__(self, srv, port):
        self.x = x = ComponentXMPP(APP, SECRET, srv.ip, port)
        self.notes = xt.Mailbox()
        self.all = []
        self.started = asyncio.get_running_loop().create_future()
        self.closed = asyncio.Event()
        x.add_event_handler('session_start', lambda _: self.started.done() or
                            self.started.set_result(True))
        x.add_event_handler('disconnected', lambda *_: self.closed.set())
        x.register_handler(Callback('push-iq', MatchXPath('{%s}iq' % NS_ACCEPT), self._iq))

    def _iq(self, iq):
        if iq['type'] not in ('get', 'set'):
            return
        pub = iq.xml.find('{%s}pubsub/{%s}publish' % (NS_PUBSUB, NS_PUBSUB))
        d = {'from': str(iq['from']), 'node': None, 'fields': {}}
        if pub is not None:
            d['node'] = pub.get('node')
            form = pub.find('{%s}item/{%s}notification/{%s}x' % (NS_PUBSUB, NS_PUSH, XDATA))
            if form is not None:
                d['fields'] = {f.get('var'): f.findtext('{%s}value' % XDATA)
                               for f in form.findall('{%s}field' % XDATA)}
        self.notes.put(d)
        self.all.append(d)
        self.x.make_iq_result(iq['id'], ito=iq['from'], ifrom=iq['to']).send()

    async def connect(self):
        self.x.connect()
        try:
            return await asyncio.wait_for(asyncio.shield(self.started), 10)
        except asyncio.TimeoutError:
            return False

    async def note(self, node, body=None, timeout=5):
        return await self.notes.get(lambda d: d['node'] == node and (
            body is None or d['fields'].get('last-message-body') == body), timeout)

    def of(self, node):
        return [d for d in self.all if d['node'] == node]

    async def disconnect(self):
        self.x.disconnect(wait=1)
        try:
            await asyncio.wait_for(self.closed.wait(), 5)
        except asyncio.TimeoutError:
            self.x.abort()


async def enable(c, node):
    r = await c.iq('set', None, "<enable xmlns='%s' jid='%s' node='%s'/>" % (NS_PUSH, APP, node))
    return r is not None and r['type'] == 'result'


def say(c, body, extra=''):
    c.send_raw("<message to='%s' type='groupchat'><body>%s</body>%s</message>"
               % (ROOM, body, extra))


def ref(uri):
    return "<reference xmlns='%s' type='mention' uri='%s'/>" % (NS_REF, uri)


async def mentions(c, attrs=''):
    """(condition, complete, [{'id', 'body', 'from', 'stamp'}]) of a list get."""
    r = await c.iq('get', ROOM, "<list xmlns='%s'%s/>" % (NS_MEN, attrs))
    out = []
    q = None if r is None else r.xml.find('{%s}list' % NS_MEN)
    for m in ([] if q is None else q.findall('{%s}mention' % NS_MEN)):
        fw = m.find('{%s}forwarded' % NS_FWD)
        msg = None if fw is None else fw.find('{jabber:client}message')
        d = None if fw is None else fw.find('{urn:xmpp:delay}delay')
        out.append({'id': m.get('id'), 'from': None if msg is None else msg.get('from'),
                    'body': None if msg is None else msg.findtext('{jabber:client}body'),
                    'stamp': None if d is None else d.get('stamp')})
    return cond_of(r), None if q is None else q.get('complete'), out


async def main():
    xt.plan(42)
    mods = {'mod_disco': {}, 'mod_roster': {}, 'mod_offline': {}, 'mod_mam': {},
            'mod_muc': {'mention_keep': KEEP},
            'mod_push': {'push_include_body': True, 'push_rate_limit': 100}}
    srv = xt.Server(workers=2, modules=mods, start=False)
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
    alice = await xt.login_ok(srv, 'alice', resource='a')
    _, r = await create(alice, 'team', 'alice', [('persistentroom', '1'), ('membersonly', '1')])
    if cond_of(r) != 'result':
        raise xt.HarnessError('no room: %s' % r)
    for u in ('bob', 'carol', 'dave', 'erin', 'grace', 'ivan'):
        r = await admin(alice, 'team', "<item jid='%s' affiliation='member'/>" % srv.jid(u))
        if cond_of(r) != 'result':
            raise xt.HarnessError('%s is no member: %s' % (u, r))
    r = await admin(alice, 'team', "<item jid='%s' affiliation='outcast'/>" % srv.jid('heidi'))
    if cond_of(r) != 'result':
        raise xt.HarnessError('heidi is not banned: %s' % r)
    nicks = {'bob': 'bobby', 'carol': 'carol', 'dave': 'dave', 'erin': 'erin', 'grace': 'grace',
             'ivan': 'Ivan Petrov'}
    # Each one registers its nickname (XEP-0045 7.10) and push (XEP-0357 5),
    # then goes, but erin, who stays in the room.
    erin = None
    for u in ('bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'ivan'):
        c = await xt.login_ok(srv, u, resource='gone')
        if u in nicks:
            r = await c.iq('set', ROOM, "<query xmlns='%s'><x xmlns='%s' type='submit'>"
                           "<field var='FORM_TYPE'><value>%s#register</value></field>"
                           "<field var='muc#register_roomnick'><value>%s</value></field>"
                           "</x></query>" % (NS_REG, XDATA, MUC, nicks[u]))
            if cond_of(r) != 'result':
                raise xt.HarnessError('%s cannot register: %s' % (u, r))
        if not await enable(c, u):
            raise xt.HarnessError('%s cannot enable push' % u)
        if u == 'dave':
            r = await c.iq('set', ROOM, "<settings xmlns='%s' all='true'/>" % NS_MEN)
            xt.is_(cond_of(r), 'result', 'dave asks for every message')
            r = await c.iq('get', ROOM, "<settings xmlns='%s'/>" % NS_MEN)
            s = None if r is None else r.xml.find('{%s}settings' % NS_MEN)
            xt.is_(None if s is None else s.get('all'), 'true', 'and reads it back')
        if u == 'frank':
            r = await c.iq('set', ROOM, "<settings xmlns='%s' all='true'/>" % NS_MEN)
            xt.is_(cond_of(r), 'forbidden', 'a user without an affiliation has no settings')
            hc = await xt.login_ok(srv, 'heidi', resource='h')
            r = await hc.iq('get', ROOM, "<list xmlns='%s'/>" % NS_MEN)
            xt.is_(cond_of(r), 'forbidden', 'nor an outcast a list')
            await hc.disconnect()
        if u == 'erin':
            erin = c
            p = await join(erin, 'team', 'erin')
            if cond_of(p) == 'error' or p is None:
                raise xt.HarnessError('erin cannot join: %s' % p)
        else:
            await c.disconnect()
    occ = ROOM + '/alice'

    say(alice, 'hey bobby, look at this')
    d = await app.note('bob')
    f = (d or {}).get('fields', {})
    xt.ok(d is not None, 'an absent member named by its reserved nickname is notified')
    xt.is_(f.get('last-message-sender'), occ, 'the sender is the occupant JID')
    xt.is_(f.get('last-message-body'), 'hey bobby, look at this', 'with the body')
    d = await app.note('dave', 'hey bobby, look at this')
    xt.ok(d is not None, 'the member who opted in is notified of a message not naming him')

    say(alice, 'see that', ref('xmpp:' + srv.jid('carol')))
    d = await app.note('carol', 'see that')
    xt.ok(d is not None, 'XEP-0372: a reference to the bare JID notifies')
    say(alice, 'and that', ref('xmpp:%s/carol' % ROOM))
    d = await app.note('carol', 'and that')
    xt.ok(d is not None, 'XEP-0372: a reference to the room JID of a reserved nick notifies')

    # Not concerned: erin (joined), frank (no affiliation), grace (not
    # named), bob in "bobbyx".
    say(alice, 'erin, frank: hi bobbyx', ref('xmpp:' + srv.jid('frank')) +
        ref('xmpp:' + srv.jid('erin')))
    say(alice, 'x ' * 600 + 'bobby')
    say(alice, 'y' * 4100 + ' bobby')
    say(alice, 'bob, see')
    say(alice, 'ivan pet')
    say(alice, 'sentinel one')
    xt.ok(await app.note('dave', 'sentinel one') is not None, 'the sentinel comes')
    xt.is_(app.of('erin'), [], 'no notification for a joined member')
    xt.is_(app.of('frank'), [], 'none for a user without an affiliation')
    xt.is_(app.of('grace'), [], 'none for a member not mentioned')
    xt.is_(app.of('ivan'), [], '"ivan pet" does not name "Ivan Petrov"')
    xt.is_(len(app.of('bob')), 1, 'neither "bobbyx" nor "bob" names bobby, nor a name past 512 words or 4096 bytes')
    xt.is_(len(app.of('carol')), 2, 'carol only for her two references')

    say(alice, 'BOBBY!')
    d = await app.note('bob', 'BOBBY!')
    xt.ok(d is not None, 'the nickname is matched case-blind, as a word')
    say(alice, 'IVAN, petrov!')
    d = await app.note('ivan', 'IVAN, petrov!')
    xt.ok(d is not None, 'a nickname of two words is named by both in a row')

    # An open room: no mentions (members-only rooms only).
    await create(alice, 'lobby', 'alice', [('persistentroom', '1')])
    await admin(alice, 'lobby', "<item jid='%s' affiliation='member'/>" % srv.jid('grace'))
    alice.send_raw("<message to='lobby@%s' type='groupchat'><body>grace?</body>%s</message>"
                   % (SVC, ref('xmpp:' + srv.jid('grace'))))
    await alice.message(lambda m: m['body'] == 'grace?')
    await asyncio.sleep(1.5)
    xt.is_(app.of('grace'), [], 'nothing for a member of an open room (waited 1.5 s)')
    feats = {}
    for room in ('team', 'lobby'):
        r = await alice.iq('get', '%s@%s' % (room, SVC),
                           "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        feats[room] = [] if r is None else [f.get('var') for f in r.xml.iter(
            '{http://jabber.org/protocol/disco#info}feature')]
    xt.ok(NS_MEN in feats['team'] and NS_MEN not in feats['lobby'],
          'the members-only room announces %s, the open room does not' % NS_MEN) \
        or xt.diag(str(feats))

    # The missed list, from a new device.
    bob = await xt.login_ok(srv, 'bob', resource='new')
    cond, complete, out = await mentions(bob)
    xt.is_([m['body'] for m in out], ['hey bobby, look at this', 'BOBBY!'],
           "bob's new device fetches his missed mentions") or xt.diag(cond, out)
    xt.ok(all(m['from'] == occ and m['stamp'] for m in out) and complete == 'true',
          'each from the occupant JID with a delay, the list complete') or xt.diag(out)
    for i in range(3):
        say(alice, 'bobby %d' % i)
    await app.note('dave', 'bobby 2')
    cond, complete, out = await mentions(bob)
    xt.is_([m['body'] for m in out], ['bobby 0', 'bobby 1', 'bobby 2'],
           'the list keeps the last mention_keep') or xt.diag(out)
    cond, complete, page = await mentions(bob, " max='2'")
    xt.ok([m['body'] for m in page] == ['bobby 0', 'bobby 1'] and complete == 'false',
          'a page of max, not complete') or xt.diag(complete, page)
    cond, complete, page = await mentions(bob, " after='%s'" % (page[-1]['id'] if page else ''))
    xt.ok([m['body'] for m in page] == ['bobby 2'] and complete == 'true',
          'the page after an id') or xt.diag(cond, complete, page)
    r = await bob.iq('get', ROOM, "<list xmlns='%s' max='x'/>" % NS_MEN)
    xt.is_(cond_of(r), 'bad-request', 'a bad max: bad-request')
    r = await bob.iq('get', ROOM, "<list xmlns='%s' after='zz'/>" % NS_MEN)
    xt.is_(cond_of(r), 'bad-request', 'a bad after: bad-request')
    r = await bob.iq('set', ROOM, "<clear xmlns='%s' upto='0'/>" % NS_MEN)
    xt.is_(cond_of(r), 'bad-request', 'a bad upto: bad-request')
    fr = await xt.login_ok(srv, 'frank', resource='f')
    cond, _, _ = await mentions(fr)
    xt.is_(cond, 'forbidden', 'a user without an affiliation has no list')

    # Nothing in bob's archive or offline storage; a chat message is
    # archived (the control).
    alice.send(srv.jid('bob'), 'a chat message')
    await bob.message(body='a chat message')
    out_, fin, res = await xt.mam_query(bob)
    xt.ok(any(x['body'] == 'a chat message' for x in res) and
          not any(ROOM in (x['msg'].get('from') or '') for x in res if x['msg'] is not None),
          "the room's messages are not in bob's MAM archive") or xt.diag(res)
    xt.ok(not any(str(m['from']).startswith(ROOM) for m in bob.messages.items),
          'nor delivered from offline storage')

    r = await bob.iq('set', ROOM, "<clear xmlns='%s' upto='%s'/>" % (NS_MEN, out[0]['id']))
    xt.is_(cond_of(r), 'result', 'bob clears up to the first')
    cond, _, out = await mentions(bob)
    xt.is_([m['body'] for m in out], ['bobby 1', 'bobby 2'], 'the later ones stay')
    r = await bob.iq('set', ROOM, "<clear xmlns='%s'/>" % NS_MEN)
    cond, _, out = await mentions(bob)
    xt.ok(cond_of(r) == 'result' and out == [], 'clear without upto empties the list')
    await xt.disconnect_all(bob, fr)

    # A restart: the opt-in and carol's list stay.
    await xt.disconnect_all(alice, erin)
    await app.disconnect()
    xt.is_(await srv.astop(), 0, 'xmppd stops')
    srv.start()
    app = AppServer(srv, port)
    if not await app.connect():
        raise xt.HarnessError('the app server component did not connect again')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    p = await join(alice, 'team', 'alice')
    xt.ok(p is not None and p['type'] != 'error', 'alice joins again after the restart')
    say(alice, 'after the restart')
    xt.ok(await app.note('dave', 'after the restart') is not None,
          "dave's opt-in survived the restart")
    carol = await xt.login_ok(srv, 'carol', resource='new')
    cond, _, out = await mentions(carol)
    xt.is_([m['body'] for m in out], ['see that', 'and that'],
           "carol's list survived the restart") or xt.diag(cond, out)
    r = await carol.iq('set', ROOM, "<settings xmlns='%s' all='maybe'/>" % NS_MEN)
    xt.is_(cond_of(r), 'bad-request', 'a bad setting: bad-request')
    # A member removed loses the list.
    r = await admin(alice, 'team', "<item jid='%s' affiliation='none'/>" % srv.jid('carol'))
    cond, _, out = await mentions(carol)
    xt.is_(cond, 'forbidden', 'a member removed has no list any more')
    r = await admin(alice, 'team', "<item jid='%s' affiliation='member'/>" % srv.jid('carol'))
    cond, _, out = await mentions(carol)
    xt.ok(cond == 'result' and out == [], 'made a member again, her old list is gone') \
        or xt.diag(cond, out)
    await xt.disconnect_all(alice, carol)
    await app.disconnect()
    srv.stop()


xt.run(main)
