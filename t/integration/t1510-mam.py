#!/usr/bin/python3
"""t1510-mam: Message Archive Management (XEP-0313, mod_mam) with stanza ids
(XEP-0359), preferences (XEP-0441) and full-text search (XEP-0431): what a
client gets back from its archive and what the store holds.

A few hundred messages between alice and bob (both directions, some while
bob is offline) paged both ways with RSM (XEP-0059): <before/> for the
newest page, back with <before>ID, forward with <after>ID, <flip-page/>,
complete='true' exactly at the ends; the filters with (bare and full),
start, end, before-id, after-id, ids; full text; the stanza-id on the
delivered message is the archive's id, a forged one is removed, others and
origin-id kept; hints and what is not archived; preferences; hostile
queries; metadata; xmppctl archive count/purge/expiry; retention; the
archive goes with the account."""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_MAM = xt.NS_MAM
NS_SID = xt.NS_SID
MAX_PAGE = 40
N_LIVE = 60             # each way, bob online
N_OFFLINE = 30          # alice to bob, bob offline


def sids(m):
    """[(by, id)] of the <stanza-id/> elements of a received message."""
    return [(e.get('by'), e.get('id')) for e in m.xml.findall('{%s}stanza-id' % NS_SID)]


def sid_by(m, by):
    got = [i for b, i in sids(m) if b == by]
    return got[0] if len(got) == 1 else None


async def walk(c, step, backward, flip=False, fields=None):
    """Pages through c's whole archive: (the bodies in chronological
    order, the ids likewise, [complete flag of each page], pages, first
    error)."""
    pages, bodies, ids, completes = [], [], [], []
    cursor = ''
    for _ in range(100):
        if backward:
            rsm = '<max>%d</max>%s' % (step, '<before>%s</before>' % cursor if cursor
                                       else '<before/>')
        else:
            rsm = '<max>%d</max>%s' % (step, '<after>%s</after>' % cursor if cursor else '')
        out, fin, res = await xt.mam_query(c, fields=fields, rsm=rsm,
                                           extra='<flip-page/>' if flip else '')
        if out != 'result' or fin is None:
            return bodies, ids, completes, pages, out
        complete, first, last = xt.mam_fin(fin)
        page_ids = [r['id'] for r in res]
        pages.append((page_ids, first, last))
        page_bodies = [r['body'] for r in res]
        if flip:
            page_bodies.reverse()
            page_ids = list(reversed(page_ids))
        if backward:
            bodies[:0] = page_bodies
            ids[:0] = page_ids
        else:
            bodies += page_bodies
            ids += page_ids
        completes.append(complete)
        if complete or not res:
            break
        cursor = first if backward else last
    return bodies, ids, completes, pages, None


async def main():
    srv = xt.Server(workers=2, modules={
        'mod_mam': {'mam_max_page': MAX_PAGE}, 'mod_offline': {}, 'mod_disco': {},
        'mod_roster': {}})
    for u in ('alice', 'bob', 'carol', 'dave', 'erin', 'frank'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='phone')
    bob = await xt.login_ok(srv, 'bob', resource='laptop')
    bob_bare, alice_bare = srv.jid('bob'), srv.jid('alice')

    # -- Disco (XEP-0313 8, XEP-0359 6, XEP-0431 3) ------------------------------
    r = await bob.iq('get', bob_bare, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    feats = set(f.get('var') for f in r.xml.iter('{http://jabber.org/protocol/disco#info}feature')) \
        if r is not None else set()
    xt.ok({'urn:xmpp:mam:2', 'urn:xmpp:mam:2#extended', 'urn:xmpp:sid:0',
           'urn:xmpp:fulltext:0'} <= feats,
          'the account advertises mam:2, mam:2#extended, sid:0 and fulltext:0')

    # -- A conversation, in a known order ----------------------------------------
    bob_log = []            # bodies in bob's archive, in order
    got_sid = {}            # body -> the stanza-id by bob on what bob got
    missing_sid = 0
    for i in range(N_LIVE):
        body = 'a2b-%d' % i
        alice.send(bob.jid, body)
        m = await bob.message(body=body)
        if m is None or sid_by(m, bob_bare) is None:
            missing_sid += 1
        else:
            got_sid[body] = sid_by(m, bob_bare)
        bob_log.append(body)
        body = 'b2a-%d' % i
        bob.send(alice.jid, body)
        m = await alice.message(body=body)
        if m is not None and sid_by(m, alice_bare) is not None:
            got_sid['alice:' + body] = sid_by(m, alice_bare)
        bob_log.append(body)
    xt.is_(missing_sid, 0, 'each message bob gets carries one <stanza-id by=bob> (XEP-0359 3)')
    xt.is_(len([k for k in got_sid if k.startswith('alice:')]), N_LIVE,
           'and each alice gets one by alice')

    # Bob offline: the messages are archived and stored offline.
    await bob.disconnect()
    for i in range(N_OFFLINE):
        xt.send_message_id(alice, bob_bare, 'off-%d' % i)
        bob_log.append('off-%d' % i)
    await asyncio.sleep(0.5)
    bob = await xt.login_ok(srv, 'bob', resource='laptop')
    offline_sids = []
    for i in range(N_OFFLINE):
        m = await bob.message(body='off-%d' % i)
        offline_sids.append(sid_by(m, bob_bare) if m is not None else None)
        if m is not None and sid_by(m, bob_bare) is not None:
            got_sid['off-%d' % i] = sid_by(m, bob_bare)
    xt.ok(all(offline_sids), 'the offline copies carry the stanza-id too (so a MAM client '
          'can drop what it already synced)')

    # -- The store ----------------------------------------------------------------
    rows = xt.mam_rows(srv, 'bob')
    xt.is_([r['body'] for r in rows], bob_log,
           "bob's archive in the store: every message both ways, in order")
    xt.is_(sorted(set((r['dir'], r['with']) for r in rows)),
           [('in', alice_bare), ('out', alice_bare)],
           'received rows with alice as the other party, sent rows likewise')
    arows = xt.mam_rows(srv, 'alice')
    xt.is_(len(arows), 2 * N_LIVE + N_OFFLINE, "alice's archive has her side of it")

    # -- A basic query: everything, with <before/>: the newest page ---------------
    out, fin, res = await xt.mam_query(bob, rsm='<max>10</max><before/>')
    xt.is_(out, 'result', 'a query is answered with a result')
    xt.is_([r['body'] for r in res], bob_log[-10:],
           '<before/> gives the newest page, in chronological order (XEP-0313 4.3.2)')
    xt.ok(all(r['from'] == bob_bare for r in res), 'results come from the archive (bob@)')
    xt.is_(xt.mam_fin(fin)[0], False, 'and that page is not complete')
    xt.is_([got_sid.get(r['body']) for r in res], [r['id'] for r in res],
           'the result ids are the stanza-ids the messages were delivered with')
    fwd = res[-1]['msg'] if res else None
    xt.is_((fwd.get('from'), fwd.get('to')) if fwd is not None else None,
           (str(alice.jid), bob_bare), 'the forwarded message is the original (from, to)')
    xt.ok(res and res[0]['stamp'] is not None, 'with a <delay/> stamp')

    # -- Paging (XEP-0059, XEP-0313 4.3) ----------------------------------------
    back, back_ids, back_c, back_pages, err = await walk(bob, 17, backward=True)
    xt.is_(back, bob_log, 'walking back from <before/> with <before>FIRST</before> gives '
           'the whole archive, in order')
    xt.is_(back_c, [False] * (len(back_c) - 1) + [True],
           "complete='true' on the oldest page only")
    fwd_b, fwd_ids, fwd_c, fwd_pages, err = await walk(bob, 23, backward=False)
    xt.is_(fwd_b, bob_log, 'walking forward with <after>LAST</after> gives it too')
    xt.is_(fwd_c, [False] * (len(fwd_c) - 1) + [True], "complete='true' on the newest page only")
    xt.is_(fwd_ids, back_ids, 'with the same ids both ways')
    xt.ok(all(p[0] and p[1] == p[0][0] and p[2] == p[0][-1] for p in fwd_pages),
          '<first/> and <last/> are the first and last id of each page')
    xt.is_(len(set(fwd_ids)), len(fwd_ids), 'every id once')
    flip_b, flip_ids, flip_c, flip_pages, err = await walk(bob, 23, backward=False, flip=True)
    xt.ok(flip_b == bob_log and all(p[0] == list(reversed(q[0]))
                                    for p, q in zip(flip_pages, fwd_pages)),
          '<flip-page/>: the same pages, each sent newest first (XEP-0313 4.3.3)')
    # An exact fit: the page that ends at the archive's end is complete.
    n_all = len(bob_log)
    out, fin, res = await xt.mam_query(bob, rsm='<max>10</max><after>%s</after>'
                                       % fwd_ids[n_all - 11])
    xt.is_(([r['body'] for r in res], xt.mam_fin(fin)[0] if fin is not None else None),
           (bob_log[-10:], True), "a page of exactly the last 10 is complete='true'")
    out, fin, res = await xt.mam_query(bob, rsm='<max>10</max><after>%s</after>'
                                       % fwd_ids[n_all - 12])
    xt.is_(xt.mam_fin(fin)[0] if fin is not None else None, False,
           'one more and it is not')
    out, fin, res = await xt.mam_query(bob, rsm='<max>0</max>')
    xt.is_((out, len(res)), ('result', 0), '<max>0</max>: no results')

    # -- Filters (XEP-0313 4.1) -------------------------------------------------
    carol1 = await xt.login_ok(srv, 'carol', resource='r1')
    carol2 = await xt.login_ok(srv, 'carol', resource='r2')
    for c, body in ((carol1, 'c1-a'), (carol2, 'c2-a'), (carol1, 'c1-b')):
        c.send(bob.jid, body)
        await bob.message(body=body)
        bob_log.append(body)
    bob.send(carol2.jid, 'to-c2')
    await carol2.message(body='to-c2')
    bob_log.append('to-c2')
    out, fin, res = await xt.mam_query(bob, [('with', srv.jid('carol'))])
    xt.is_([r['body'] for r in res], ['c1-a', 'c2-a', 'c1-b', 'to-c2'],
           'with=carol (bare): every message to and from any of her resources')
    xt.is_(xt.mam_fin(fin)[0], True, 'complete')
    out, fin, res = await xt.mam_query(bob, [('with', str(carol2.jid))])
    xt.is_([r['body'] for r in res], ['c2-a', 'to-c2'],
           'with=carol/r2 (full): only that resource, both directions')
    out, fin, res = await xt.mam_query(bob, [('with', alice_bare)], rsm='<max>5</max><before/>')
    xt.is_([r['body'] for r in res], [b for b in bob_log if not b.startswith(('c1', 'c2', 'to-c'))][-5:],
           "with=alice and <before/>: alice's newest five")
    out, fin, res = await xt.mam_query(bob, [('with', alice_bare)],
                                       rsm='<max>5</max><before>%s</before>' % res[0]['id'])
    xt.is_(len(res), 5, 'and the five before them')
    # Times: a message's stamp as start and end takes it in (>=, <=).
    ids_by_body = dict(zip(bob_log, fwd_ids))
    out, fin, allres = await xt.mam_query(bob, rsm='<max>%d</max>' % MAX_PAGE)
    k, m = allres[5], allres[12]
    out, fin, res = await xt.mam_query(bob, [('start', k['stamp']), ('end', m['stamp'])])
    xt.is_([r['body'] for r in res], [r['body'] for r in allres[5:13]],
           'start and end: the messages stamped in between, both ends included')
    out, fin, res = await xt.mam_query(bob, [('after-id', k['id']), ('before-id', m['id'])])
    xt.is_([r['body'] for r in res], [r['body'] for r in allres[6:12]],
           'after-id and before-id: the messages strictly between')
    out, fin, res = await xt.mam_query(bob, [('ids', [m['id'], k['id']])])
    xt.is_([r['body'] for r in res], [k['body'], m['body']], 'ids: exactly those, in order')
    out, fin, res = await xt.mam_query(bob, [('start', '2000-01-01T00:00:00Z'),
                                             ('end', '2000-12-31T23:59:59.999+02:00')])
    xt.is_((out, len(res), xt.mam_fin(fin)[0]), ('result', 0, True),
           'a time range before the archive: nothing, complete')

    # -- Full text (XEP-0431) ---------------------------------------------------
    for body in ('Café au lait', 'the cafeteria is open', 'CAFÉ NOIR tonight',
                 'nothing here', 'noir et blanc'):
        alice.send(bob.jid, body)
        await bob.message(body=body)
        bob_log.append(body)

    async def search(text, var='{urn:xmpp:fulltext:0}fulltext', more=()):
        out, fin, res = await xt.mam_query(bob, [(var, text)] + list(more))
        return out, sorted(r['body'] for r in res)

    xt.is_(await search('cafe'), ('result', sorted(['Café au lait', 'the cafeteria is open',
                                                     'CAFÉ NOIR tonight'])),
           "'cafe' finds Café, CAFÉ and the cafeteria (accents, case, word prefix)")
    xt.is_(await search('CAF'), ('result', sorted(['Café au lait', 'the cafeteria is open',
                                                    'CAFÉ NOIR tonight'])),
           "'CAF' finds the same")
    xt.is_(await search('noir café'), ('result', ['CAFÉ NOIR tonight']),
           'two terms: the messages with both')
    xt.is_(await search('lait', var='withtext'), ('result', ['Café au lait']),
           "ejabberd's withtext field")
    xt.is_(await search('zebra'), ('result', []), 'a word nobody wrote: nothing')
    xt.is_(await search('noir', more=[('with', srv.jid('carol'))]), ('result', []),
           'full text and with together')
    out, fin, res = await xt.mam_query(bob, [('{urn:xmpp:fulltext:0}fulltext', 'cafe')],
                                       rsm='<max>2</max><before/>')
    xt.is_(([r['body'] for r in res], xt.mam_fin(fin)[0]),
           (['the cafeteria is open', 'CAFÉ NOIR tonight'], False),
           'full-text results page like any other')

    await xt.disconnect_all(alice, bob, carol1, carol2)
    srv.teardown()


xt.run(main)
