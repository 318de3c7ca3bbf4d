#!/usr/bin/python3
"""t1770-muc-mam: a room's XEP-0313 archive (6.1.2 MUC archives): every
groupchat message with a body, not subject changes nor private messages,
under the room, its archive id the XEP-0359 stanza-id the room gave;
the user archive's query: RSM pages forward and backward, flip-page,
complete, with (an occupant JID), start/end, after-id/before-id, ids;
who may read (anyone not banned in an open room; members and occupants
in a members-only room); the real JID only to moderators of a
semi-anonymous room; muc#roomconfig_enablearchiving; the archive
survives a restart, goes with a destroyed room, and the retention purge
(archive_expiry) empties it."""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from xt_muc import HOST, OWNER, SVC, USER, admin, configure, create, join  # noqa: E402

NS_MAM = xt.NS_MAM
NS_SID = xt.NS_SID
INFO = 'http://jabber.org/protocol/disco#info'
N = 15                  # messages from each of two occupants


def sid_by(m, by):
    got = [e.get('id') for e in m.xml.findall('{%s}stanza-id' % NS_SID) if e.get('by') == by]
    return got[0] if len(got) == 1 else None


def real_jid(res):
    """The muc#user item jid of a result's forwarded message, or None."""
    msg = res['msg']
    it = None if msg is None else msg.find('{%s}x/{%s}item' % (USER, USER))
    return None if it is None else it.get('jid')


def room_rows(srv, room):
    if 'muc_mam' not in xt.store_tables(srv):
        return []
    prefix = ('%s\0%s\0' % (SVC, room)).encode()
    return [k for k, v in xt.store_rows(srv, 'muc_mam') if k.startswith(prefix)]


async def poll(fn, pred, timeout=8):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if pred(v) or time.monotonic() > deadline:
            return v
        await asyncio.sleep(0.3)


async def walk(c, room, step, backward, flip=False, fields=None):
    """Pages through the room's archive: (ids in chronological order,
    [complete of each page], first error)."""
    ids, completes, cursor = [], [], ''
    for _ in range(50):
        if backward:
            rsm = '<max>%d</max>%s' % (step, '<before>%s</before>' % cursor if cursor
                                       else '<before/>')
        else:
            rsm = '<max>%d</max>%s' % (step, '<after>%s</after>' % cursor if cursor else '')
        out, fin, res = await xt.mam_query(c, fields=fields, rsm=rsm, to=room,
                                           extra='<flip-page/>' if flip else '')
        if out != 'result' or fin is None:
            return ids, completes, out
        complete, first, last = xt.mam_fin(fin)
        page = [r['id'] for r in res]
        if flip:
            page.reverse()
        if page and (page[0] != first or page[-1] != last):
            return ids, completes, 'first/last %s %s of %s' % (first, last, page)
        ids = page + ids if backward else ids + page
        completes.append(complete)
        if complete or not res:
            break
        cursor = first if backward else last
    return ids, completes, None


async def features(c, room):
    r = await c.iq('get', room, "<query xmlns='%s'/>" % INFO)
    return [] if r is None else [f.get('var') for f in r.xml.iter('{%s}feature' % INFO)]


async def main():
    srv = xt.Server(workers=2, modules={'mod_muc': {'purge_interval': 1}})
    for u in ('alice', 'bob', 'carol', 'dave', 'erin'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    dave = await xt.login_ok(srv, 'dave', resource='d')
    erin = await xt.login_ok(srv, 'erin', resource='e')
    room = 'arch@' + SVC
    await create(alice, 'arch', 'alice', [('persistentroom', '1')])
    await join(bob, 'arch', 'bob')

    feats = await features(bob, room)
    xt.ok(NS_MAM in feats and NS_MAM + '#extended' in feats,
          'XEP-0313 6.1.2: the room advertises urn:xmpp:mam:2 and #extended') or xt.diag(feats)

    # 2N messages, a subject change and a private message between them.
    sids, senders = [], []
    for i in range(2 * N):
        c, nick = (alice, 'alice') if i % 2 == 0 else (bob, 'bob')
        c.send_raw("<message to='%s' type='groupchat'><body>m%d</body></message>" % (room, i))
        m = await alice.message(lambda m, i=i: m['type'] == 'groupchat' and m['body'] == 'm%d' % i)
        sids.append(None if m is None else sid_by(m, room))
        senders.append(nick)
        if i == 5:
            alice.send_raw("<message to='%s' type='groupchat'><subject>topic</subject></message>"
                           % room)
            await alice.message(lambda m: m['subject'] == 'topic')
            alice.send_raw("<message to='%s/bob' type='chat'><body>pm</body></message>" % room)
            await bob.message(lambda m: m['body'] == 'pm')

    ids, completes, err = await walk(bob, room, 7, backward=False)
    xt.ok(err is None and ids == sids and None not in sids,
          'XEP-0313 6.1.2: the archive holds every groupchat body, not the subject nor the '
          'private message, each under the stanza-id it was broadcast with (forward pages)') \
        or xt.diag('%s %s %s' % (err, ids, sids))
    xt.ok(completes == [False] * (len(completes) - 1) + [True] and len(completes) == 5,
          'XEP-0313 4.3.2: complete=true on the last forward page only') or xt.diag(completes)
    ids, completes, err = await walk(bob, room, 7, backward=True)
    xt.ok(err is None and ids == sids and completes[-1] and not any(completes[:-1]),
          'backward from <before/>: the same ids, complete on the oldest page only') \
        or xt.diag('%s %s %s' % (err, ids, completes))
    ids, completes, err = await walk(bob, room, 7, backward=True, flip=True)
    xt.ok(err is None and ids == sids, 'flip-page: each page newest first, the same ids') \
        or xt.diag('%s %s' % (err, ids))

    out, fin, res = await xt.mam_query(bob, rsm='<max>3</max>', to=room)
    r0 = res[0] if res else {}
    fwd = r0.get('msg')
    xt.ok(out == 'result' and len(res) == 3 and r0.get('from') == room and
          fwd is not None and fwd.get('from') == room + '/alice' and r0.get('stamp') and
          r0.get('body') == 'm0',
          'results come from the room, each forwarding the message from room/nick with a '
          'delay') or xt.diag('%s %s' % (out, res))

    out, fin, res = await xt.mam_query(bob, fields=[('with', room + '/bob')], to=room)
    want = [s for s, n in zip(sids, senders) if n == 'bob']
    xt.ok(out == 'result' and [r['id'] for r in res] == want and xt.mam_fin(fin)[0],
          'XEP-0313 6.1.2: with=room/bob: only bob\'s messages, complete') \
        or xt.diag('%s %s' % (out, [r['id'] for r in res]))
    wkeys = [k for k, v in xt.store_rows(srv, 'muc_mam_with')
             if k.startswith(('%s\0arch\0' % SVC).encode())]
    xt.ok(len(wkeys) == 2 * N and
          sum(1 for k in wkeys if ('\0%s/bob\0' % room).encode() in k) == N,
          'the with index is by occupant JID: a with query reads only that occupant\'s rows') \
        or xt.diag(str(wkeys[:3]))

    out, fin, res = await xt.mam_query(bob, fields=[('after-id', sids[4]),
                                                    ('before-id', sids[10])], to=room)
    xt.ok(out == 'result' and [r['id'] for r in res] == sids[5:10],
          'after-id and before-id: the messages strictly between') \
        or xt.diag('%s %s' % (out, [r['id'] for r in res]))
    out, fin, res = await xt.mam_query(bob, fields=[('ids', [sids[3], sids[7]])], to=room)
    xt.ok(out == 'result' and [r['id'] for r in res] == [sids[3], sids[7]],
          'ids: exactly those') or xt.diag('%s %s' % (out, res))
    out, fin, allres = await xt.mam_query(bob, to=room)
    stamps = [r['stamp'] for r in allres]
    out, fin, res = await xt.mam_query(bob, fields=[('start', stamps[5]), ('end', stamps[9])],
                                       to=room)
    xt.ok(out == 'result' and [r['id'] for r in res] == sids[5:10],
          'start and end: the messages stamped in between, both ends included') \
        or xt.diag('%s %s' % (out, [r['id'] for r in res]))
    out, fin, res = await xt.mam_query(bob, fields=[('before-id', '00000000000000ff')], to=room)
    xt.is_(out, 'error:item-not-found', 'a before-id the room never gave: item-not-found')

    # Semi-anonymous (the default): real JIDs to moderators only.
    xt.ok(allres and all(real_jid(r) is None for r in allres),
          'XEP-0313 6.1.2, XEP-0045 5.1.1: a participant of a semi-anonymous room sees no '
          'real JID in the results') or xt.diag(str(allres[:1]))
    out, fin, res = await xt.mam_query(alice, to=room)
    xt.ok(out == 'result' and len(res) == 2 * N and
          [real_jid(r) for r in res] == ['%s@%s' % (n, HOST) for n in senders],
          'the owner (a moderator) sees each sender\'s real bare JID') \
        or xt.diag(str([real_jid(r) for r in res]))
    out, fin, res = await xt.mam_query(dave, rsm='<max>5</max>', to=room)
    xt.ok(out == 'result' and len(res) == 5 and all(real_jid(r) is None for r in res),
          'an open room: a non-occupant reads it, without real JIDs') \
        or xt.diag('%s %s' % (out, res))
    # A sender's own muc#user item does not pass for the real JID.
    bob.send_raw("<message to='%s' type='groupchat'><body>lie</body><x xmlns='%s'>"
                 "<item jid='mallory@evil.test'/></x></message>" % (room, USER))
    await alice.message(lambda m: m['body'] == 'lie')
    out, fin, res = await xt.mam_query(alice, rsm='<max>1</max><before/>', to=room)
    xt.ok(out == 'result' and len(res) == 1 and real_jid(res[0]) == 'bob@' + HOST,
          'a muc#user item the sender put in its message is replaced by its real JID') \
        or xt.diag(str(res))

    r = await admin(alice, 'arch', "<item affiliation='outcast' jid='erin@%s'/>" % HOST)
    out, fin, res = await xt.mam_query(erin, to=room)
    xt.ok(xt.iq_outcome(r) == 'result' and out == 'error:forbidden' and not res,
          'XEP-0313 6.1.2: a banned user may not read it (forbidden)') or xt.diag(out)

    r = await configure(alice, 'arch', [('passwordprotectedroom', '1'), ('roomsecret', 'pw')])
    out, fin, res = await xt.mam_query(dave, to=room)
    out2, fin, res2 = await xt.mam_query(bob, rsm='<max>1</max>', to=room)
    xt.ok(xt.iq_outcome(r) == 'result' and out == 'error:forbidden' and not res and
          out2 == 'result' and len(res2) == 1,
          'password-protected: who is not in the room and has no affiliation may not read '
          'it (an occupant may)') or xt.diag('%s %s' % (out, out2))
    await configure(alice, 'arch', [('passwordprotectedroom', '0')])

    r = await configure(alice, 'arch', [('membersonly', '1')])
    out, fin, res = await xt.mam_query(dave, to=room)
    xt.ok(xt.iq_outcome(r) == 'result' and out == 'error:forbidden' and not res,
          'members-only: a non-member who is not in the room: forbidden') or xt.diag(out)
    await admin(alice, 'arch', "<item affiliation='member' jid='dave@%s'/>" % HOST)
    out, fin, res = await xt.mam_query(dave, rsm='<max>2</max>', to=room)
    xt.ok(out == 'result' and len(res) == 2, 'members-only: a member reads it') \
        or xt.diag(out)

    r = await configure(alice, 'arch', [('enablearchiving', '0')])
    feats = await features(alice, room)
    out, fin, res = await xt.mam_query(alice, to=room)
    xt.ok(xt.iq_outcome(r) == 'result' and NS_MAM not in feats and
          out == 'error:service-unavailable',
          'muc#roomconfig_enablearchiving off: no mam feature, queries service-unavailable') \
        or xt.diag('%s %s' % (out, feats))
    alice.send_raw("<message to='%s' type='groupchat'><body>off</body></message>" % room)
    await bob.message(lambda m: m['body'] == 'off')
    await configure(alice, 'arch', [('enablearchiving', '1')])
    out, fin, res = await xt.mam_query(alice, rsm='<max>1</max><before/>', to=room)
    xt.ok(out == 'result' and res and res[0]['body'] == 'lie',
          'a message sent while archiving was off is not archived') or xt.diag(str(res))

    await xt.disconnect_all(alice, bob, dave, erin)
    xt.is_(srv.restart(), 0, 'xmppd restarts')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    dave = await xt.login_ok(srv, 'dave', resource='d')
    ids, completes, err = await walk(dave, room, 10, backward=False)
    xt.ok(err is None and ids[:2 * N] == sids and len(ids) == 2 * N + 1,
          'the archive survives a restart (a member pages through it)') \
        or xt.diag('%s %s' % (err, ids))

    await join(alice, 'arch', 'alice')
    r = await alice.iq('set', room, "<query xmlns='%s'><destroy/></query>" % OWNER)
    xt.is_(xt.iq_outcome(r), 'result', 'the owner destroys the room')
    rows = await poll(lambda: room_rows(srv, 'arch'), lambda v: not v)
    xt.is_(len(rows), 0, 'the destroyed room\'s archive rows are gone')

    # Retention: archive_expiry 2 s, purge every second.
    await xt.disconnect_all(alice, dave)
    srv.stop()
    srv.conf['modules']['mod_muc']['archive_expiry'] = 2
    srv.write_config()
    srv.start()
    alice = await xt.login_ok(srv, 'alice', resource='a')
    await create(alice, 'ret', 'alice', [('persistentroom', '1')])
    for i in range(3):
        alice.send_raw("<message to='ret@%s' type='groupchat'><body>r%d</body></message>"
                       % (SVC, i))
        await alice.message(lambda m, i=i: m['body'] == 'r%d' % i)
    rows = await poll(lambda: room_rows(srv, 'ret'), lambda v: len(v) == 3, timeout=3)
    xt.is_(len(rows), 3, 'the new room archives its messages')
    rows = await poll(lambda: room_rows(srv, 'ret'), lambda v: not v, timeout=15)
    out, fin, res = await xt.mam_query(alice, to='ret@' + SVC)
    xt.ok(not rows and out == 'result' and not res,
          'archive_expiry: the purge deletes the room\'s expired messages (within 15 s)') \
        or xt.diag('%d %s %s' % (len(rows), out, res))

    await xt.disconnect_all(alice)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=120)
