#!/usr/bin/python3
"""t1500-carbons: mod_carbons, XEP-0280 Message Carbons (urn:xmpp:carbons:2)
with the rules of its section 6.1 (urn:xmpp:carbons:rules:0).

alice has three resources: a1 (priority 10) and a2 (priority 5) enable
carbons, a3 (priority 1) does not; bob is her contact. a2 is a raw stream
with stream management (XEP-0198) on, so that it can be cut and resumed;
the others are slixmpp clients. The server runs two workers, so resources
land on both.

For each message the test sends, every party's stanzas about it (the
original, a <sent/> or a <received/> copy with it forwarded inside) are
collected until a sentinel, sent after it by the same sender to each party,
has arrived: a copy that should not exist would have come before the
sentinel (the sender's stanzas are handled in order, and the copies are
handed out while the message is routed). So "gets nothing" is a bounded
wait, not a sleep.

Checked: enable and disable (with no 'to', to the bare JID, to the server;
twice; a get; another account's attempt), disco#info, received copies of
messages to the bare JID (only the resources that do not get the original)
and to a full JID (never a copy to the one addressed), sent copies (never
to the sender), messages to one's own account (never back to the sender,
never twice), every rule of 6.1 (chat, normal with and without a body,
receipts, chat states, markers, errors, groupchat, headline, XEP-0249 and
mediated invitations, private messages with a room occupant both ways,
<private/>, <no-copy/>, and what the server itself generates: carbons, MAM
results, push notifications), <private/> removed before delivery (section
7), the copies' addressing and their forwarded original, and the flag kept
across a stream-management resumption of a2."""

import asyncio
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

ET = xt.ET
NS_C = 'urn:xmpp:carbons:2'
NS_RULES = 'urn:xmpp:carbons:rules:0'
NS_FWD = 'urn:xmpp:forward:0'
NS_SM = 'urn:xmpp:sm:3'
NS_DISCO = 'http://jabber.org/protocol/disco#info'
NS_MUC_USER = 'http://jabber.org/protocol/muc#user'
MSG = '{jabber:client}message'
ENABLE = "<enable xmlns='%s'/>" % NS_C
DISABLE = "<disable xmlns='%s'/>" % NS_C


# -- parties -------------------------------------------------------------------

class Slix:
    """A slixmpp client as a party: send raw XML, take messages (as
    ElementTree elements) by predicate."""

    def __init__(self, name, client):
        self.name = name
        self.c = client
        self.jid = str(client.jid)

    async def send(self, xml):
        self.c.send_raw(xml)

    async def get(self, pred, timeout):
        m = await self.c.messages.get(lambda m: pred(m.xml), timeout)
        return m.xml if m is not None else None

    async def iq(self, itype, payload, to=None):
        """(type, condition, from) of the answer."""
        r = await self.c.iq(itype, to, payload)
        if r is None:
            return None
        cond = r['error']['condition'] if r['type'] == 'error' else None
        return (r['type'], cond, str(r['from']) if r['from'] else None)


class RawInbox:
    """The top-level elements of a raw stream, parsed as they arrive from
    offset start of its data; counts the stanzas (XEP-0198 h, from h0) and
    answers the server's <r/>."""

    def __init__(self, raw, start, h0=0):
        self.raw = raw
        self.fed = start
        self.h = h0
        self.items = []
        self.depth = 0
        self.acks = 0
        self.p = ET.XMLPullParser(events=('start', 'end'))
        self.p.feed(b"<x xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")

    def pump(self):
        new = self.raw.data[self.fed:]
        self.fed += len(new)
        if new:
            self.p.feed(new)
        for ev, el in self.p.read_events():
            if ev == 'start':
                self.depth += 1
                continue
            self.depth -= 1
            if self.depth != 1:
                continue
            if el.tag == '{%s}r' % NS_SM:
                self.acks += 1
            elif el.tag.split('}')[1] in ('message', 'presence', 'iq') and \
                    el.tag.startswith('{jabber:client}'):
                self.h += 1
                self.items.append(el)

    async def get(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            if self.acks:
                self.acks = 0
                await self.raw.send("<a xmlns='%s' h='%d'/>" % (NS_SM, self.h))
            for i, el in enumerate(self.items):
                if pred(el):
                    return self.items.pop(i)
            left = deadline - time.monotonic()
            if left <= 0 or self.raw.closed:
                return None
            await self.raw._read_some(min(left, 1.0))


class Raw:
    """a2: a raw stream with stream management on, as a party."""

    def __init__(self, name, raw, jid, inbox):
        self.name = name
        self.raw = raw
        self.jid = jid
        self.inbox = inbox

    async def send(self, xml):
        await self.raw.send(xml)

    async def get(self, pred, timeout):
        return await self.inbox.get(pred, timeout)

    async def iq(self, itype, payload, to=None):
        iid = xt.new_id('iq')
        await self.send("<iq type='%s' id='%s'%s>%s</iq>" % (
            itype, iid, " to='%s'" % to if to else '', payload))
        r = await self.get(lambda e: e.tag == '{jabber:client}iq' and e.get('id') == iid, 5)
        if r is None:
            return None
        cond = None
        err = r.find('{jabber:client}error')
        if err is not None:
            cond = next((c.tag.split('}')[1] for c in err
                         if c.tag.startswith('{%s}' % xt.NS_STANZAS_ERR)), None)
        return (r.get('type'), cond, r.get('from'))


async def raw_party(srv, resource, priority):
    """alice/resource on a raw stream with stream management (resumable)
    on, available with priority: (Raw party, previd)."""
    r = await xt.sm_authed(srv, 'alice')
    jid = await r.bind(resource)
    en = await xt.sm_enable(r)
    if jid is None or en is None or not en.startswith('<enabled'):
        raise xt.HarnessError('raw: no SM session: %r' % r.text[-400:])
    previd = xt.sm_elems(en)[0].get('id')
    inbox = RawInbox(r, r.mark)
    await r.send('<presence><priority>%d</priority></presence>' % priority)
    return Raw('a2', r, jid, inbox), previd


def cut(r):
    """Drops a raw TCP connection at once (a reset), as a phone losing its
    network does."""
    s = r.writer.get_extra_info('socket')
    if s is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    r.writer.transport.abort()


# -- what a party got ------------------------------------------------------------

def unwrap(el):
    """(kind, message): ('sent' or 'received', the forwarded original) for
    a carbon copy (XEP-0280 7, 8: <sent|received><forwarded><message/>),
    else ('original', el) (also for a message with an empty <sent/>)."""
    for which in ('sent', 'received'):
        w = el.find('{%s}%s' % (NS_C, which))
        f = w.find('{%s}forwarded' % NS_FWD) if w is not None else None
        inner = f.find(MSG) if f is not None else None
        if inner is not None:
            return which, inner
    return 'original', el


def about(mid):
    """Matches a message that is, or forwards, the message with id mid."""
    def pred(el):
        if el.tag != MSG:
            return False
        _, inner = unwrap(el)
        return inner is not None and inner.get('id') == mid
    return pred


class World:
    def __init__(self, srv, parties):
        self.srv = srv
        self.parties = parties          # name -> party
        self.alice = srv.jid('alice')
        self.copies = []                # (party, copy element) of the last run

    async def settle(self, sender):
        """sender sends a headline (never copied) to every party; returns
        once each has it."""
        sid = xt.new_id('sentinel')
        for p in self.parties.values():
            await sender.send("<message type='headline' to='%s' id='%s-%s'/>" % (p.jid, sid, p.name))
        for p in self.parties.values():
            want = '%s-%s' % (sid, p.name)
            got = await p.get(lambda e, w=want: e.tag == MSG and e.get('id') == w, 10)
            if got is None:
                raise xt.HarnessError('the sentinel did not reach %s' % p.name)

    async def run(self, sender, to, body=None, mtype='chat', extra=''):
        """sender sends a message (mtype None: no type attribute); returns
        {party: sorted kinds of what it got about it}, the message id and
        the copies' elements."""
        mid = xt.new_id('m')
        t = " type='%s'" % mtype if mtype is not None else ''
        b = '<body>%s</body>' % body if body is not None else ''
        to_attr = " to='%s'" % to if to is not None else ''
        await sender.send("<message%s id='%s'%s>%s%s</message>" % (to_attr, mid, t, b, extra))
        await self.settle(sender)
        got, copies = {}, []
        for name, p in self.parties.items():
            kinds = []
            while True:
                el = await p.get(about(mid), 0)
                if el is None:
                    break
                kind, inner = unwrap(el)
                kinds.append(kind)
                if kind != 'original':
                    copies.append((p, el, inner))
            got[name] = sorted(kinds)
        self.copies = copies
        return got, mid

    async def case(self, name, sender, to, expect, body='hello', mtype='chat', extra=''):
        """One message; expect: {party: [kinds]} for those that get
        something (all others: nothing)."""
        got, mid = await self.run(sender, to, body, mtype, extra)
        want = {n: sorted(expect.get(n, [])) for n in self.parties}
        xt.is_(got, want, name)
        if self.copies:
            # XEP-0280 7, 8: from the user's bare JID, to the resource
            # that gets it, the type of the original; XEP-0297: the
            # original inside, from the sender's full JID.
            bad = [(p.name, el.get('from'), el.get('to'), el.get('type'),
                    inner.get('from') if inner is not None else None,
                    inner.findtext('{jabber:client}body') if inner is not None else None)
                   for p, el, inner in self.copies
                   if (el.get('from'), el.get('to'), el.get('type')) != (self.alice, p.jid, mtype)
                   or inner is None or inner.get('from') != sender.jid
                   or inner.findtext('{jabber:client}body') != body]
            xt.is_(bad, [], '%s: copies from %s to the resource, type kept, the '
                   'original inside from %s' % (name, self.alice, sender.jid))
        return got


# -- the test ------------------------------------------------------------------

async def main():
    srv = xt.Server(workers=2, modules={'mod_disco': {}, 'mod_carbons': {}})
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    alice = srv.jid('alice')

    a1 = Slix('a1', await xt.login_ok(srv, 'alice', resource='a1', priority=10))
    a2, previd = await raw_party(srv, 'a2', 5)
    a3 = Slix('a3', await xt.login_ok(srv, 'alice', resource='a3', priority=1))
    bob = Slix('bob', await xt.login_ok(srv, 'bob', resource='b'))
    w = World(srv, {'a1': a1, 'a2': a2, 'a3': a3, 'bob': bob})
    # The session manager knows every priority once a1 has seen them.
    for p in (a2, a3):
        if await a1.c.presence(frm=p.jid, timeout=10) is None:
            raise xt.HarnessError('no presence of %s' % p.jid)

    # -- Discovery and enabling (XEP-0280 3, 4, 5) -----------------------------
    r = await a1.c.iq('get', srv.host, "<query xmlns='%s'/>" % NS_DISCO)
    feats = [f.get('var') for f in r.xml.iter('{%s}feature' % NS_DISCO)] if r is not None else []
    xt.ok(NS_C in feats and NS_RULES in feats,
          'disco#info of the server lists urn:xmpp:carbons:2 and urn:xmpp:carbons:rules:0') \
        or xt.diag(feats)

    xt.is_(await a1.iq('set', ENABLE), ('result', None, alice),
           'a1 enables carbons (no to): a result from the bare JID (XEP-0280 4)')
    xt.is_(await a1.iq('set', ENABLE), ('result', None, alice),
           'enabling again: a result too (XEP-0280 10.1)')
    xt.is_(await a2.iq('set', ENABLE), ('result', None, alice), 'a2 enables carbons')
    xt.is_((await a1.iq('get', ENABLE))[:2], ('error', 'bad-request'),
           'a get of <enable/>: bad-request (only set is defined)')
    xt.is_(await bob.iq('set', ENABLE, to=alice), ('error', 'not-allowed', alice),
           "bob's enable to alice's bare JID: not-allowed (XEP-0280 4.1, 5.1)")

    # -- To the bare JID (XEP-0280 7; RFC 6121 8.5.2.1.1) ----------------------
    await w.case('bob -> alice (bare), chat: a1 (top priority) the original, a2 a '
                 '<received/> copy, a3 (carbons off) nothing', bob, alice,
                 {'a1': ['original'], 'a2': ['received']})
    await w.case('normal with a body: copied', bob, alice,
                 {'a1': ['original'], 'a2': ['received']}, mtype=None)
    await w.case('normal without a body: not copied', bob, alice,
                 {'a1': ['original']}, body=None, mtype=None,
                 extra="<thread>t1</thread>")
    await w.case('headline: not copied', bob, alice + '/a1', {'a1': ['original']}, mtype='headline')

    # -- IM payloads without a body (6.1) ---------------------------------------
    for what, extra in (
            ('a XEP-0184 receipt', "<received xmlns='urn:xmpp:receipts' id='r1'/>"),
            ('a XEP-0085 chat state', "<composing xmlns='http://jabber.org/protocol/chatstates'/>"),
            ('a XEP-0333 marker', "<displayed xmlns='urn:xmpp:chat-markers:0' id='r1'/>"),
            ('a XEP-0249 invitation', "<x xmlns='jabber:x:conference' jid='room@conference.example'/>"),
            ('a mediated invitation (XEP-0045 7.8.2)',
             "<x xmlns='%s'><invite from='%s'/></x>" % (NS_MUC_USER, srv.jid('bob')))):
        await w.case('normal without a body carrying %s: copied' % what, bob, alice,
                     {'a1': ['original'], 'a2': ['received']}, body=None, mtype=None, extra=extra)

    # -- To a full JID (RFC 6121 8.5.3) ------------------------------------------
    await w.case('bob -> alice/a1: a1 the original only, a2 a copy', bob, alice + '/a1',
                 {'a1': ['original'], 'a2': ['received']})
    await w.case('bob -> alice/a2 (not the top priority): a2 the original only, never a '
                 'copy too; a1 a copy', bob, a2.jid, {'a2': ['original'], 'a1': ['received']})
    await w.case('bob -> alice/gone, chat (delivered as to the bare JID): a1 the original, '
                 'a2 a copy', bob, alice + '/gone', {'a1': ['original'], 'a2': ['received']})
    await w.case('bob -> alice/gone, normal (bounced): no copies', bob, alice + '/gone',
                 {'bob': ['original']}, mtype=None)

    # -- Errors, groupchat (6.1) ----------------------------------------------
    err = ("<error type='cancel'><service-unavailable xmlns='%s'/></error>" % xt.NS_STANZAS_ERR)
    # Without a body, so that only the rule for errors copies them.
    await w.case('an error (no body) to alice/a1: copied', bob, alice + '/a1',
                 {'a1': ['original'], 'a2': ['received']}, body=None, mtype='error', extra=err)
    await w.case('an error to the bare JID (ignored, RFC 6121 8.5.2.1.1): no copies', bob, alice,
                 {}, body=None, mtype='error', extra=err)
    await w.case('groupchat (to alice/a1): not copied', bob, alice + '/a1',
                 {'a1': ['original']}, mtype='groupchat')
    await w.case('alice/a1 -> bob, groupchat: no <sent/> copy', a1, bob.jid,
                 {'bob': ['original']}, mtype='groupchat')

    # -- Private messages with a room occupant (6.1) -----------------------------
    # The rule keys on the muc#user <x/> that XEP-0045 7.5 puts on such
    # messages (not on the sender's address), so bob plays the occupant.
    await w.case('a private message from an occupant (chat with muc#user <x/>): not copied',
                 bob, alice + '/a1', {'a1': ['original']}, extra="<x xmlns='%s'/>" % NS_MUC_USER)
    await w.case('alice/a1 -> an occupant (chat with muc#user <x/>): a2 gets <sent/>',
                 a1, bob.jid, {'bob': ['original'], 'a2': ['sent']},
                 extra="<x xmlns='%s'/>" % NS_MUC_USER)

    # -- Sent copies (XEP-0280 8) ---------------------------------------------------
    await w.case('alice/a1 -> bob, chat: bob the original, a2 <sent/>, a1 and a3 nothing',
                 a1, bob.jid, {'bob': ['original'], 'a2': ['sent']})
    await w.case('alice/a2 -> bob (bare), chat: a1 <sent/>, a2 nothing', a2, srv.jid('bob'),
                 {'bob': ['original'], 'a1': ['sent']})
    await w.case('alice/a1 -> bob, a chat marker without a body: a2 <sent/>', a1, bob.jid,
                 {'bob': ['original'], 'a2': ['sent']}, body=None, mtype=None,
                 extra="<received xmlns='urn:xmpp:chat-markers:0' id='x'/>")
    await w.case('alice/a1 -> bob, normal without a body: no <sent/>', a1, bob.jid,
                 {'bob': ['original']}, body=None, mtype=None, extra='<thread>t2</thread>')

    # -- Messages to one's own account ------------------------------------------
    await w.case('alice/a2 -> alice (bare): a1 the original, no copy back to a2', a2, alice,
                 {'a1': ['original']})
    await w.case('alice/a2 without to (to the account, RFC 6120 10.3.1): the same', a2, None,
                 {'a1': ['original']})
    await w.case('alice/a2 -> alice/a1: a1 the original only (no <sent/> too), a2 nothing',
                 a2, alice + '/a1', {'a1': ['original']})

    # -- <private/> and <no-copy/> (XEP-0280 7, XEP-0334) -----------------------
    priv = "<private xmlns='%s'/>" % NS_C
    await w.case('bob -> alice with <private/>: not copied', bob, alice,
                 {'a1': ['original']}, extra=priv)
    await w.case('bob -> alice with <no-copy/>: not copied', bob, alice,
                 {'a1': ['original']}, extra="<no-copy xmlns='urn:xmpp:hints'/>")
    await w.case('alice/a1 -> bob with <private/>: no <sent/>', a1, bob.jid,
                 {'bob': ['original']}, extra=priv)
    await w.case('alice/a1 -> bob with <no-copy/>: no <sent/>', a1, bob.jid,
                 {'bob': ['original']}, extra="<no-copy xmlns='urn:xmpp:hints'/>")
    # The receiving server removes <private/> (XEP-0280 7).
    mid = xt.send_message_id(a1.c, bob.jid, 'secret', extra=priv)
    m = await bob.c.message(pred=lambda m: m['id'] == mid)
    xt.is_(m.xml.find('{%s}private' % NS_C) is None if m is not None else None, True,
           'bob gets it without <private/> (XEP-0280 7)')
    await w.settle(a1)

    # -- What the server generates is never copied --------------------------------
    for what, extra in (
            ('a carbon (<received/>)', "<received xmlns='%s'/>" % NS_C),
            ('a carbon (<sent/>)', "<sent xmlns='%s'/>" % NS_C),
            ('a MAM result (XEP-0313)', "<result xmlns='urn:xmpp:mam:2' id='x'/>"),
            ('a push notification (XEP-0357)', "<notification xmlns='urn:xmpp:push:0'/>"),
            ('a pubsub event', "<event xmlns='http://jabber.org/protocol/pubsub#event'/>")):
        await w.case('a chat carrying %s: not copied' % what, bob, alice,
                     {'a1': ['original']}, extra=extra)

    # -- Enabling with a 'to' ---------------------------------------------------
    xt.is_(await a3.iq('set', ENABLE, to=alice), ('result', None, alice),
           'a3 enables carbons, to its bare JID')
    await w.case('a3 now gets copies too', bob, alice,
                 {'a1': ['original'], 'a2': ['received'], 'a3': ['received']})
    xt.is_(await a3.iq('set', DISABLE, to=srv.host), ('result', None, srv.host),
           'a3 disables carbons, to the server')
    await w.case('and gets none again', bob, alice, {'a1': ['original'], 'a2': ['received']})

    # -- A stream-management resumption keeps the flag -------------------------------
    a2.inbox.pump()
    h = a2.inbox.h
    cut(a2.raw)
    await asyncio.sleep(0.5)
    gone_mid = xt.send_message_id(bob.c, alice, 'while a2 is away')
    if await a1.c.message(pred=lambda m: m['id'] == gone_mid) is None:
        raise xt.HarnessError('a1 did not get the message sent while a2 was away')
    r2, ans = await xt.sm_resume(srv, 'alice', previd, h)
    xt.ok(ans is not None and ans.startswith('<resumed'), 'a2 resumes its session (%s)' % ans)
    start = r2.data.find(b'<resumed')
    start = r2.data.find(b'>', start) + 1
    a2.raw, a2.inbox = r2, RawInbox(r2, start, h)
    el = await a2.get(about(gone_mid), 5)
    xt.is_(unwrap(el)[0] if el is not None else None, 'received',
           'the copy made while a2 was detached is replayed')
    await w.case('after the resumption a2 still gets copies (the flag is kept)', bob, alice,
                 {'a1': ['original'], 'a2': ['received']})
    await w.case('and <sent/> copies', a1, bob.jid, {'bob': ['original'], 'a2': ['sent']})

    # -- Disabling (XEP-0280 5) -------------------------------------------------
    xt.is_(await a2.iq('set', DISABLE), ('result', None, alice), 'a2 disables carbons')
    await w.case('then a2 gets no copies', bob, alice, {'a1': ['original']})
    await w.case('no <sent/> copies either', a1, bob.jid, {'bob': ['original']})
    xt.is_(await a2.iq('set', DISABLE), ('result', None, alice),
           'disabling again: a result too (XEP-0280 10.1)')

    # -- Unacknowledged messages and carbons (src/c2s/c2s_sm.c) -------------------
    # When a session with stream management ends, what the client had not
    # acknowledged is handed back to the bare JID (XEP-0198 4), except a
    # message the user's other resources already got as a carbon: routed
    # again it would reach them a second time. a2 gets a message it never
    # acknowledges, its connection drops, and a new a2 replaces the
    # detached session (its end hands the queue back). With a1's carbons
    # off (the control), a1 then gets the message; with them on, a1 had a
    # <received/> copy and gets nothing more.
    async def hand_back(label, expect_again):
        nonlocal a2
        mid = xt.send_message_id(bob.c, alice + '/a2', label)
        # a2's stream reads it, but never answers an <r/> for it.
        deadline = time.monotonic() + 10
        while a2.raw.data.find(mid.encode()) < 0 and time.monotonic() < deadline:
            await a2.raw._read_some(0.5)
        first = await a1.get(about(mid), 5)
        cut(a2.raw)
        await asyncio.sleep(0.5)
        new_a2 = await xt.login_ok(srv, 'alice', resource='a2', priority=5)
        again = await a1.get(lambda el: el.tag == MSG and el.get('id') == mid and
                             unwrap(el)[0] == 'original', 3)
        return first, again, new_a2

    xt.is_(await a1.iq('set', DISABLE), ('result', None, alice), 'a1 disables carbons')
    first, again, new_a2 = await hand_back('handed back', True)
    xt.is_((first, again is not None), (None, True),
           'carbons off: a1 gets the message a2 left unacknowledged, handed back (XEP-0198 4)')
    await xt.disconnect_all(new_a2)
    a2, previd = await raw_party(srv, 'a2', 5)
    xt.is_(await a1.iq('set', ENABLE), ('result', None, alice), 'a1 enables carbons again')
    first, again, new_a2 = await hand_back('not twice', False)
    xt.is_((unwrap(first)[0] if first is not None else None, again),
           ('received', None),
           'carbons on: a1 had a <received/> copy and the handed-back original does not '
           'reach it a second time')
    await xt.disconnect_all(a1.c, a3.c, bob.c, new_a2)


xt.run(main)
