#!/usr/bin/python3
"""t1520-csi: client state indication (XEP-0352, mod_csi).

bob's phone is a raw stream with stream management, so that the test sees
exactly what it is sent and in which order; his contacts are raw streams
too. Checked: the <csi/> feature after authentication only; <inactive/>
and <active/> not counted in h; while inactive, presence updates held
with only the latest per full JID (4 kept of 200; 15 kept of a burst of
1005 from 5 contacts x 3 resources), flushed before a message with a body
and on <active/> (before the stanza that follows it); standalone chat
states held (thread, hints and ids are not payload; the latest per
sender; a received carbon of one too), while encrypted payloads, IQs,
presence errors and subscription requests go at once after what was held;
the held presence passes presence_in when flushed (the avatar hash of
mod_vcard); the XMPPD_RES_INACTIVE flag; a resumed stream starts active
and gets what was held (also while detached) after <resumed/>, counted
by stream management only when sent; an unknown nonza still ends the
stream with unsupported-stanza-type; a bounded queue (csi_queue_max 10:
flushed at 10, nothing lost) and its option's bounds. Leaks of what a
session held when it ended are found by the sanitizer run at teardown."""

import asyncio
import base64
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

HOST = 'xmppd.test'
NS_CSI = 'urn:xmpp:csi:0'
NS_SM = 'urn:xmpp:sm:3'
NS_CS = 'http://jabber.org/protocol/chatstates'
NS_CARBONS = 'urn:xmpp:carbons:2'
NS_FORWARD = 'urn:xmpp:forward:0'
NS_UPDATE = 'vcard-temp:x:update'
INACTIVE = "<inactive xmlns='%s'/>" % NS_CSI
ACTIVE = "<active xmlns='%s'/>" % NS_CSI
RES_INACTIVE = 0x2      # XMPPD_RES_INACTIVE (hooks/xmppd.h)
CONTACTS = ('alice', 'carol', 'dave', 'erin', 'frank')
STANZA_RE = r'<(?:presence|message|iq)\b'

IMAGE = bytes(range(256)) * 2 + b'csi avatar'
IMAGE_HASH = hashlib.sha1(IMAGE).hexdigest()


# -- reading bob's stream -------------------------------------------------------

def brief(e):
    """A received stanza as a tuple to compare: ('presence', from, type,
    status), ('message', from, body, chat states), ('carbon', original
    sender, chat states), ('iq', from, type, id)."""
    kind = e.tag.split('}')[1]
    frm = e.get('from')
    if kind == 'presence':
        return ('presence', frm, e.get('type'), e.findtext('{jabber:client}status'))
    if kind == 'message':
        rc = e.find('{%s}received' % NS_CARBONS)
        if rc is not None:
            inner = rc.find('{%s}forwarded/{jabber:client}message' % NS_FORWARD)
            if inner is not None:
                return ('carbon', inner.get('from'),
                        tuple(c.tag.split('}')[1] for c in inner if c.tag.startswith('{%s}' % NS_CS)))
        return ('message', frm, e.findtext('{jabber:client}body'),
                tuple(c.tag.split('}')[1] for c in e if c.tag.startswith('{%s}' % NS_CS)))
    return ('iq', frm, e.get('type'), e.get('id'))


async def upto(r, pattern, timeout=10):
    """Reads r until pattern (which must end a complete element) matches;
    the stanzas from the mark to there, as brief() tuples (None on timeout),
    and the mark moved past them."""
    m = await r.read_until(pattern, timeout)
    if m is None:
        xt.diag('timed out waiting for %r; got: %r' % (pattern, r.since_mark()[-1500:]))
        return None
    text = r.since_mark()[:m.end()]
    r.mark += len(text.encode('utf-8'))
    return [brief(e) for e in xt.sm_stanzas(text)]


async def quiet(r, seconds=1.5):
    """True if r is sent no stanza for that long (what is held stays held)."""
    m = await r.read_until(STANZA_RE, seconds)
    if m is not None:
        xt.diag('got: %r' % r.since_mark()[-800:])
    return m is None


def presence_done(jid):
    """A complete presence from jid."""
    return (r"<presence\b[^>]*from=['\"]%s['\"][^>]*(?:/>|>.*?</presence>)"
            % jid.replace('.', r'\.'))


def body_done(body):
    return r'<body>%s</body>.*?</message>' % body


def iq_done(sid):
    return r"<iq\b[^>]*id=['\"]%s['\"][^>]*(?:/>|>.*?</iq>)" % sid


def sm_count(text):
    return len(xt.sm_stanzas(text))


def cut(r):
    """Drops the TCP connection at once (a reset): no </stream:stream>."""
    s = r.writer.get_extra_info('socket')
    if s is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    r.writer.transport.abort()


# -- the others -------------------------------------------------------------------

async def peer(srv, user, resource):
    """A raw, available session of user."""
    r = await xt.Raw.open(srv)
    jid = await r.login(user, user + '-pw', resource)
    r.jid = jid
    return r


async def barrier(r):
    """An IQ round trip on r: everything r sent before it has been handled
    (RFC 6120 10.1), its deliveries queued to their sessions."""
    sid = xt.new_id('bar')
    await r.send("<iq type='get' id='%s' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % (sid, HOST))
    if await r.read_until(r"id=['\"]%s['\"]" % sid, 15) is None:
        raise xt.HarnessError('no answer to a barrier IQ on %s' % r.jid)
    r.set_mark()


async def status(r, text):
    await r.send('<presence><status>%s</status></presence>' % text)


async def flags_of(srv, full):
    code, out, err = await srv.actl('csiprobe', 'flags', full.split('/')[0])
    for line in out.splitlines():
        f = line.split()
        if len(f) == 2 and f[0] == full:
            return int(f[1], 16)
    xt.diag('csiprobe flags: %r %r %r' % (code, out, err))
    return None


def start_refused(srv, modules, timeout=30):
    """Runs xmppd on a configuration with modules, expecting it to exit:
    (exit code or None, what it logged)."""
    srv.conf['modules'] = modules
    srv.write_config()
    before = os.path.getsize(srv.log_path) if os.path.exists(srv.log_path) else 0
    with open(srv.log_path, 'ab') as log:
        p = subprocess.Popen([xt.XMPPD, '-c', srv.conf_path], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, cwd=str(srv.dir))
        try:
            code = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
            code = None
    with open(srv.log_path, 'rb') as f:
        f.seek(before)
        return code, f.read().decode('utf-8', 'replace')


# -- the test -----------------------------------------------------------------------

async def main_server(moddir):
    srv = xt.Server(workers=2, conf={'module_dir': str(moddir), 'sm_ack_after': 100000,
                                     'sm_ack_interval': 3600, 'sm_ack_timeout': 3600},
                    modules={'mod_roster': {}, 'mod_vcard': {}, 'mod_csi': {},
                             'mod_csiprobe': {}})
    for u in ('bob',) + CONTACTS + ('gina',):
        srv.register(u, u + '-pw')
    # Rosters first: a roster push is an IQ, which would flush.
    for c in CONTACTS:
        code, out, err = await srv.actl('roster', 'add', 'bob', HOST, srv.jid(c))
        if code != 0:
            raise xt.HarnessError('roster add %s: %s%s' % (c, out, err))

    # -- The feature (XEP-0352 4.1) ------------------------------------------------
    bob = await xt.sm_authed(srv, 'bob')
    xt.unlike(bob.tls_features, NS_CSI, 'no <csi/> before authentication')
    xt.like(bob.features, r"<csi xmlns='urn:xmpp:csi:0'/>", '<csi/> offered after authentication')
    phone = await bob.bind('phone')
    en = await xt.sm_enable(bob)
    if phone is None or en is None or not en.startswith('<enabled'):
        raise xt.HarnessError('no SM session for bob: %r' % bob.text[-500:])
    bob_id = xt.sm_elems(en)[0].get('id')
    enabled_at = len(bob.data)
    # An avatar, so that his own presence carries its hash (mod_vcard,
    # presence_in), then available.
    photo = base64.b64encode(IMAGE).decode()
    await bob.send("<iq type='set' id='vc1'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png"
                   "</TYPE><BINVAL>%s</BINVAL></PHOTO></vCard></iq><presence/>" % photo)
    if await upto(bob, presence_done(phone)) is None:
        raise xt.HarnessError('no presence echo for bob')

    peers = {}
    for c in CONTACTS:
        for i in (1, 2, 3):
            peers['%s%d' % (c[0], i)] = await peer(srv, c, '%s%d' % (c[0], i))
    for p in peers.values():
        if await upto(bob, presence_done(p.jid)) is None:
            raise xt.HarnessError("bob did not get %s's presence" % p.jid)
    a1, a2, a3, c1 = peers['a1'], peers['a2'], peers['a3'], peers['c1']

    # -- Not counted in h (XEP-0198 4, XEP-0352 4.2) -----------------------------------
    await bob.send(INACTIVE)
    xt.is_(await xt.sm_ask_h(bob), 2, "<r/> after <inactive/>: h='2' (the vCard set and the presence)")
    bob.set_mark()
    xt.is_((await flags_of(srv, phone) or 0) & RES_INACTIVE, RES_INACTIVE,
           'the resource has XMPPD_RES_INACTIVE')

    # -- Presence: the latest per full JID, flushed before a body (3.2) ----------------
    for p in (a1, a2, a3, c1):
        await p.send(''.join('<presence><status>%s-%d</status></presence>' % (p.jid, i)
                             for i in range(50)))
    for p in (a1, a2, a3, c1):
        await barrier(p)
    xt.ok(await quiet(bob), '200 presence updates while inactive: none arrives')
    await c1.send("<message to='%s' type='chat'><body>sentinel-1</body></message>" % phone)
    got = await upto(bob, body_done('sentinel-1'))
    latest = {('presence', p.jid, None, '%s-49' % p.jid) for p in (a1, a2, a3, c1)}
    xt.is_(got and got[-1], ('message', c1.jid, 'sentinel-1', ()), 'a message with a body goes at once')
    xt.is_(len(got or ()), 5, '... after 4 held presences, one per full JID')
    xt.is_(set((got or [None])[:-1]), latest, '... each the latest of its sender')

    # -- The burst: 1005 from 5 contacts x 3 resources keep 15; <active/> (5.1) -------
    for p in peers.values():
        await p.send(''.join('<presence><status>b-%s-%d</status></presence>' % (p.jid, i)
                             for i in range(67)))
    for p in peers.values():
        await barrier(p)
    xt.ok(await quiet(bob), 'a burst of 1005 presence updates: none arrives while inactive')
    await bob.send(ACTIVE + "<iq type='get' id='after-active' to='%s'>"
                   "<query xmlns='urn:xmppd:test:none'/></iq>" % HOST)
    got = await upto(bob, iq_done('after-active'))
    burst = {('presence', p.jid, None, 'b-%s-66' % p.jid) for p in peers.values()}
    xt.is_(len(got or ()), 16, '<active/>: 15 presences, then the answer to the next IQ')
    xt.is_(set((got or [None])[:-1]), burst, '... the latest of each of the 15 full JIDs')
    xt.is_((got or [('',)])[-1][0], 'iq', '... all before the IQ that followed <active/> (5.1)')
    xt.is_((await flags_of(srv, phone) or 0) & RES_INACTIVE, 0, 'XMPPD_RES_INACTIVE cleared')
    await status(c1, 'live')
    got = await upto(bob, presence_done(c1.jid))
    xt.is_(got, [('presence', c1.jid, None, 'live')], 'active again: a presence update goes at once')

    # -- Chat states (XEP-0085 5.5) ----------------------------------------------------
    await bob.send(INACTIVE)
    await barrier_of_raw(bob)
    await c1.send("<message to='%s' type='chat'><composing xmlns='%s'/></message>" % (phone, NS_CS))
    await barrier(c1)
    await a1.send("<message to='%s' type='chat'><composing xmlns='%s'/>"
                  "<no-store xmlns='urn:xmpp:hints'/></message>" % (phone, NS_CS))
    await barrier(a1)
    await c1.send("<message to='%s' type='chat'><paused xmlns='%s'/><thread>t1</thread>"
                  "<origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>" % (phone, NS_CS))
    await barrier(c1)
    code, out, err = await srv.actl('csiprobe', 'carbon', phone, peers['d1'].jid, 'composing')
    if code != 0 or 'delivered 1' not in out:
        raise xt.HarnessError('csiprobe carbon: %r %r %r' % (code, out, err))
    xt.ok(await quiet(bob), 'standalone chat states (with a hint, a thread, an origin-id) and '
          'a received carbon of one: held')
    await c1.send("<message to='%s' type='chat'><body>hello</body><active xmlns='%s'/></message>"
                  % (phone, NS_CS))
    got = await upto(bob, body_done('hello'))
    xt.is_(got, [('message', a1.jid, None, ('composing',)),
                 ('message', c1.jid, None, ('paused',)),
                 ('carbon', peers['d1'].jid, ('composing',)),
                 ('message', c1.jid, 'hello', ('active',))],
           'a body with a chat state goes at once, after the held ones: the latest per sender, '
           'in order of arrival')

    # -- What goes at once, after what is held ----------------------------------------
    # Each case holds one presence of carol's first.
    ver = xt.new_id('ver')
    cases = [
        ('OMEMO (eu.siacs.conversations.axolotl)',
         "<message to='%s' type='chat'><active xmlns='%s'/><encrypted "
         "xmlns='eu.siacs.conversations.axolotl'><header sid='7'><iv>AAAA</iv></header>"
         "</encrypted></message>" % (phone, NS_CS), ('message', a1.jid, None, ('active',))),
        ('OMEMO 2 (urn:xmpp:omemo:2)',
         "<message to='%s' type='chat'><active xmlns='%s'/><encrypted xmlns='urn:xmpp:omemo:2'>"
         "<header sid='7'/></encrypted></message>" % (phone, NS_CS),
         ('message', a1.jid, None, ('active',))),
        ('OpenPGP (urn:xmpp:openpgp:0)',
         "<message to='%s' type='chat'><active xmlns='%s'/><openpgp xmlns='urn:xmpp:openpgp:0'>"
         "AAAA</openpgp></message>" % (phone, NS_CS), ('message', a1.jid, None, ('active',))),
        ('jabber:x:encrypted',
         "<message to='%s' type='chat'><active xmlns='%s'/><x xmlns='jabber:x:encrypted'>"
         "AAAA</x></message>" % (phone, NS_CS), ('message', a1.jid, None, ('active',))),
        ('an IQ',
         "<iq type='get' id='%s' to='%s'><query xmlns='jabber:iq:version'/></iq>" % (ver, phone),
         ('iq', a1.jid, 'get', ver)),
        ('a presence error',
         "<presence type='error' to='%s'><error type='cancel'><service-unavailable "
         "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>" % phone,
         ('presence', a1.jid, 'error', None)),
    ]
    for k, (what, xml, expect) in enumerate(cases):
        await status(c1, 'held-%d' % k)
        await barrier(c1)
        # The ping's answer says carol's presence was handled, not that
        # the broadcast to bob (after mod_roster's asynchronous read of
        # her subscribers) has reached bob's worker: a1's stanza, from
        # another worker, could overtake it there, and then nothing is
        # held when it flushes (seen once in CI). A moment for the
        # broadcast to arrive; what the check asserts is unchanged.
        await asyncio.sleep(0.3)
        await a1.send(xml)
        pat = presence_done(a1.jid) if expect[0] == 'presence' else (
            iq_done(ver) if expect[0] == 'iq' else r'</message>')
        got = await upto(bob, pat)
        xt.is_(got, [('presence', c1.jid, None, 'held-%d' % k), expect],
               '%s goes at once, after the held presence' % what)
    gina = await peer(srv, 'gina', 'g1')
    await status(c1, 'held-sub')
    await barrier(c1)
    await gina.send("<presence type='subscribe' to='bob@%s'/>" % HOST)
    got = await upto(bob, presence_done('gina@' + HOST))
    xt.is_(got, [('presence', c1.jid, None, 'held-sub'), ('presence', 'gina@' + HOST, 'subscribe', None)],
           'a subscription request goes at once, after the held presence')

    # -- Held presence passes presence_in when flushed (mod_vcard's hash) ----------------
    laptop = await xt.sm_authed(srv, 'bob')
    laptop_jid = await laptop.bind('laptop')
    await laptop.send('<presence/>')
    await barrier_of_raw(laptop)
    xt.ok(await quiet(bob, 1.0), "bob's laptop comes online: its presence is held at the phone")
    await bob.send(ACTIVE)
    m = await bob.read_until(presence_done(laptop_jid), 10)
    text = m.group(0) if m else ''
    xt.like(text, r"<x xmlns='%s'><photo>%s</photo></x>" % (NS_UPDATE, IMAGE_HASH),
            'flushed, it carries the avatar hash presence_in adds')
    bob.set_mark()
    await laptop.send('</stream:stream>')
    await laptop.read_until_close(5)
    laptop.close()
    got = await upto(bob, presence_done(laptop_jid))
    xt.is_(got, [('presence', laptop_jid, 'unavailable', None)],
           'active again: its unavailable presence goes at once')

    # -- Resumption starts active (XEP-0352 5.2); what is held is counted when sent -------
    await bob.send(INACTIVE + "<iq type='get' id='count' to='%s'><query xmlns='urn:xmppd:test:none'/>"
                   "</iq>" % HOST)
    if await upto(bob, iq_done('count')) is None:
        raise xt.HarnessError('no answer to the count IQ')
    n = sm_count(bob.data[enabled_at:bob.mark].decode('utf-8'))
    await bob.send("<a xmlns='%s' h='%d'/>" % (NS_SM, n))
    await status(c1, 'before-cut')
    await barrier(c1)
    await asyncio.sleep(0.3)
    cut(bob)
    await asyncio.sleep(0.5)
    await status(a2, 'while-detached')
    await barrier(a2)
    rh, ans = await xt.sm_resume(srv, 'bob', bob_id, n + 1000)
    xt.like(ans or '', r"<handled-count-too-high xmlns='%s' h='%d' send-count='%d'/>"
            % (NS_SM, n + 1000, n), 'held stanzas are not counted as sent (send-count %d)' % n)
    rh.close()
    r2, ans = await xt.sm_resume(srv, 'bob', bob_id, n)
    xt.like(ans or '', r'<resumed\b', 'the detached inactive session is resumed')
    past_resumed(r2)
    got = await upto(r2, presence_done(a2.jid))
    xt.is_(got, [('presence', c1.jid, None, 'before-cut'),
                 ('presence', a2.jid, None, 'while-detached')],
           'after <resumed/>: what was held, also while detached, in order')
    flushed = len(got or [])
    xt.is_((await flags_of(srv, phone) or 0) & RES_INACTIVE, 0,
           'XMPPD_RES_INACTIVE cleared by the resumption')
    await status(c1, 'resumed-live')
    got = await upto(r2, presence_done(c1.jid))
    xt.is_(got, [('presence', c1.jid, None, 'resumed-live')], 'the resumed stream is active')
    sent = n + flushed + 1
    await r2.send("<a xmlns='%s' h='%d'/>" % (NS_SM, sent + 1))
    await r2.read_until_close(5)
    xt.like(r2.since_mark(), r"<handled-count-too-high xmlns='%s' h='%d' send-count='%d'/>"
            % (NS_SM, sent + 1, sent), 'the flushed stanzas were counted when sent (send-count %d)'
            % sent)

    # -- An unknown nonza is still a stream error (RFC 6120 4.9.3.22) -----------------
    for what, nonza in (('an unknown nonza', "<foo xmlns='urn:example:nonza'/>"),
                        ('an unknown element of urn:xmpp:csi:0', "<csi xmlns='%s'/>" % NS_CSI)):
        x = await xt.sm_authed(srv, 'bob')
        await x.bind('x')
        x.set_mark()
        await x.send(nonza)
        await x.read_until_close(5)
        xt.is_(xt.stream_error(x.since_mark()), 'unsupported-stanza-type',
               '%s: unsupported-stanza-type' % what)
        x.close()

    # -- A session that ends while it holds (the sanitizer run finds leaks) --------------
    gone = await xt.sm_authed(srv, 'bob')
    await gone.bind('gone')
    await gone.send('<presence/>' + INACTIVE)
    await barrier_of_raw(gone)
    await status(c1, 'held-at-end')
    await barrier(c1)
    await gone.send('</stream:stream>')
    await gone.read_until_close(5)
    gone.close()

    for p in list(peers.values()) + [gina]:
        p.close()
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')
    srv.teardown()


def past_resumed(r):
    """Moves r's mark past <resumed/>."""
    text = r.since_mark()
    i = text.find('<resumed')
    j = text.find('/>', i) + 2 if i >= 0 else 0
    r.mark += len(text[:j].encode('utf-8'))


async def barrier_of_raw(r):
    """barrier() for a stream that was not made by peer()."""
    r.jid = getattr(r, 'jid', 'raw')
    await barrier(r)


async def bound_server(moddir):
    # -- csi_queue_max: its bounds, then flushed when full, never dropped -------------
    srv = xt.Server(name='t1520-bound', workers=2, start=False,
                    conf={'module_dir': str(moddir)}, modules={})
    for bad in (0, 10001):
        code, log = start_refused(srv, {'mod_csi': {'csi_queue_max': bad}})
        xt.ok(code not in (0, None), 'csi_queue_max %d: xmppd refuses to start (%r)' % (bad, code))
        xt.like(log, r"mod_csi: 'csi_queue_max' expects a whole number from 1 to 10000",
                '... saying the bounds')
    srv.conf['modules'] = {'mod_csi': {'csi_queue_max': 10}}
    srv.write_config()
    srv.start()
    for u in ('bob', 's0', 's1', 's2'):
        srv.register(u, u + '-pw')
    bob = await xt.Raw.open(srv)
    phone = await bob.login('bob', 'bob-pw', 'phone')
    await upto(bob, presence_done(phone))
    senders = []
    for i in range(30):
        senders.append(await peer(srv, 's%d' % (i // 10), 'r%d' % (i % 10)))
    await bob.send(INACTIVE)
    await barrier_of_raw(bob)

    def directed(i):
        return ('presence', senders[i].jid, None, 'to-bob-%d' % i)

    async def send_directed(i):
        await senders[i].send("<presence to='%s'><status>to-bob-%d</status></presence>" % (phone, i))
        await barrier(senders[i])

    for i in range(9):
        await send_directed(i)
    xt.ok(await quiet(bob), 'csi_queue_max 10: 9 senders held')
    await send_directed(9)
    got = await upto(bob, presence_done(senders[9].jid))
    xt.is_(got, [directed(i) for i in range(10)], 'the 10th fills the queue: all 10 flushed, in order')
    for i in range(10, 30):
        await send_directed(i)
    got = await upto(bob, presence_done(senders[29].jid))
    xt.is_(got, [directed(i) for i in range(10, 30)],
           '20 more: flushed at 20 and 30; none of the 30 lost, none twice')
    await bob.send(ACTIVE + "<iq type='get' id='end' to='%s'><query xmlns='urn:xmppd:test:none'/>"
                   "</iq>" % HOST)
    got = await upto(bob, iq_done('end'))
    xt.is_([g[0] for g in got or []], ['iq'], '<active/>: nothing was left held')
    for s in senders:
        s.close()
    bob.close()
    xt.is_(await srv.astop(), 0, 'the second xmppd exits 0 on SIGTERM')
    srv.teardown()


async def main():
    scratch = xt.scratch_dir('t1520-build')
    moddir = scratch / 'modules'
    moddir.mkdir()
    for name in ('mod_csi', 'mod_roster', 'mod_vcard'):
        so = os.path.join(xt.MODULE_DIR, name + '.so')
        if not os.path.exists(so):
            raise xt.HarnessError('%s is missing (make, or set XMPPD_TEST_MODULE_DIR)' % so)
        shutil.copy(so, moddir / (name + '.so'))
    xt.build_test_module(moddir, 'mod_csiprobe')
    await main_server(moddir)
    await bound_server(moddir)


xt.run(main, timeout=300)
