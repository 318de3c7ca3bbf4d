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
import shutil
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


async def poll(fn, pred, timeout=5):
    """fn() once pred holds of it, or its last value after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if pred(v) or time.monotonic() > deadline:
            return v
        await asyncio.sleep(0.2)


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
    # The roster query (xmppd_roster_subscription) answered by a test
    # module: bob has frank in his roster.
    moddir = xt.scratch_dir('t1510-build') / 'modules'
    moddir.mkdir()
    for name in ('mod_mam', 'mod_offline', 'mod_disco', 'mod_carbons'):
        shutil.copy(os.path.join(xt.MODULE_DIR, name + '.so'), moddir / (name + '.so'))
    xt.build_test_module(moddir, 'mod_rosterprov')
    srv = xt.Server(workers=2, conf={'module_dir': str(moddir)}, modules={
        'mod_mam': {'mam_max_page': MAX_PAGE, 'purge_interval': 1}, 'mod_offline': {},
        'mod_disco': {}, 'mod_carbons': {},
        'mod_rosterprov': {'pairs': ['bob@xmppd.test frank@xmppd.test']}})
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

    # -- Stanza ids (XEP-0359 3) -------------------------------------------------
    xt.send_message_id(alice, bob.jid, 'forged-1', extra=(
        "<stanza-id xmlns='urn:xmpp:sid:0' by='%s' id='forged'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='BOB@XMPPD.TEST' id='forged-too'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='other.example' id='keep-me'/>"
        "<origin-id xmlns='urn:xmpp:sid:0' id='orig-1'/>") % bob_bare)
    m = await bob.message(body='forged-1')
    bob_log.append('forged-1')
    got = sids(m) if m is not None else []
    mine = [i for b, i in got if b.lower() == bob_bare]
    xt.ok(len(mine) == 1 and mine[0] not in ('forged', 'forged-too'),
          "a stanza-id by=bob from alice is removed (also spelt BOB@XMPPD.TEST); bob's own "
          "is the one left")
    xt.ok(('other.example', 'keep-me') in got, "another entity's stanza-id is kept")
    origin = m.xml.find('{%s}origin-id' % NS_SID) if m is not None else None
    xt.is_(origin.get('id') if origin is not None else None, 'orig-1', 'origin-id is kept')
    out, fin, res = await xt.mam_query(bob, rsm='<max>1</max><before/>')
    xt.is_([r['id'] for r in res], mine[:1], 'and it is the id the archive has')
    xt.send_message_id(alice, bob.jid, 'forged-2', extra=(
        "<stanza-id xmlns='urn:xmpp:sid:0' by='%s' id='forged'/>"
        "<no-store xmlns='urn:xmpp:hints'/>") % bob_bare)
    m = await bob.message(body='forged-2')
    xt.is_(sids(m) if m is not None else None, [],
           'a message that is not archived loses the forged stanza-id too, and gets none')

    # -- What is archived (XEP-0313 6.1.1, XEP-0334 hints) -------------------------
    dave = await xt.login_ok(srv, 'dave', resource='d')
    cs = "xmlns='http://jabber.org/protocol/chatstates'"
    for sid, mtype, body, extra in (
            ('h-nostore', 'chat', 'x', "<no-store xmlns='urn:xmpp:hints'/>"),
            ('h-noperm', 'chat', 'x', "<no-permanent-store xmlns='urn:xmpp:hints'/>"),
            ('h-state', 'chat', None, '<active %s/>' % cs),
            ('h-store', 'chat', None, "<composing %s/><store xmlns='urn:xmpp:hints'/>" % cs),
            ('h-receipt', 'chat', None, "<received xmlns='urn:xmpp:receipts' id='r1'/>"),
            ('h-marker', 'chat', None, "<displayed xmlns='urn:xmpp:chat-markers:0' id='r1'/>"),
            ('h-headline', 'headline', 'news', ''),
            ('h-normal', None, 'plain normal', ''),
            ('h-fake', 'chat', 'fake', "<result xmlns='urn:xmpp:mam:2' id='x'/>"),
            ('h-body-state', 'chat', 'typing done', '<active %s/>' % cs)):
        xt.send_message_id(dave, bob.jid, body, mtype=mtype, sid=sid, extra=extra)
    xt.ok(await bob.message(body='typing done') is not None, 'bob gets what dave sent')
    out, fin, res = await xt.mam_query(bob, [('with', srv.jid('dave'))])
    xt.is_([r['msg'].get('id') for r in res if r['msg'] is not None],
           ['h-store', 'h-receipt', 'h-marker', 'h-normal', 'h-body-state'],
           'archived: a chat state with <store/>, a receipt, a marker, a normal message, a body '
           'with a chat state; not: no-store, no-permanent-store, a lone chat state, headline, '
           'a forged MAM result')

    # -- Preferences (XEP-0441) ---------------------------------------------------
    P = "<prefs xmlns='urn:xmpp:mam:2' default='%s'><always>%s</always><never>%s</never></prefs>"

    def prefs_of(r):
        p = r.xml.find('{%s}prefs' % NS_MAM) if r is not None else None
        if p is None:
            return None
        return (p.get('default'),
                [j.text for j in p.findall('{%s}always/{%s}jid' % (NS_MAM, NS_MAM))],
                [j.text for j in p.findall('{%s}never/{%s}jid' % (NS_MAM, NS_MAM))])

    r = await bob.iq('get', None, "<prefs xmlns='urn:xmpp:mam:2'/>")
    xt.is_(prefs_of(r), ('always', [], []), 'the default preferences: always, no lists')
    erin = await xt.login_ok(srv, 'erin', resource='e')
    frank = await xt.login_ok(srv, 'frank', resource='f')
    r = await bob.iq('set', None, P % ('always', '', '<jid>%s</jid>' % srv.jid('erin')))
    xt.is_(prefs_of(r), ('always', [], [srv.jid('erin')]), 'set: the answer has what was set')
    r = await bob.iq('get', None, "<prefs xmlns='urn:xmpp:mam:2'/>")
    xt.is_(prefs_of(r), ('always', [], [srv.jid('erin')]), 'and a get gives it back')

    async def exchange(frm, to, body):
        """frm sends to; (to got it with a stanza-id by to's account)."""
        frm.send(to.jid, body)
        m = await to.message(body=body)
        return m is not None and sid_by(m, to.jid.bare) is not None

    async def bob_with(user):
        out, fin, res = await xt.mam_query(bob, [('with', srv.jid(user))])
        return [r['body'] for r in res]

    xt.is_(await exchange(erin, bob, 'erin-1'), False, '<never/> erin: her message has no '
           'stanza-id by bob')
    xt.is_(await bob_with('erin'), [], "and is not in bob's archive")
    # erin's own row is committed before her stream goes on, not
    # necessarily before bob sees the message.
    xt.is_(await poll(lambda: [r['body'] for r in xt.mam_rows(srv, 'erin')],
                      lambda v: v == ['erin-1']), ['erin-1'],
           "but is in erin's own (her preferences)")
    r = await bob.iq('set', None, P % ('never', '<jid>%s</jid>' % srv.jid('erin'), ''))
    await exchange(frank, bob, 'frank-1')
    await exchange(erin, bob, 'erin-2')
    xt.is_((await bob_with('frank'), await bob_with('erin')), ([], ['erin-2']),
           "default never with <always/> erin: frank's message is not archived, erin's is")
    r = await bob.iq('set', None, P % ('roster', '', ''))
    xt.is_(prefs_of(r), ('roster', [], []), "default 'roster' is accepted")
    xt.is_(await exchange(frank, bob, 'frank-2'), True,
           "roster: frank (in bob's roster) gets his message archived, with a stanza-id")
    xt.is_(await exchange(erin, bob, 'erin-3'), False, 'erin (not in it) does not')
    await exchange(bob, frank, 'to-frank')
    await exchange(bob, erin, 'to-erin')
    xt.is_((await bob_with('frank'), await bob_with('erin')),
           (['frank-2', 'to-frank'], ['erin-2']),
           'both directions follow the roster')
    r = await bob.iq('set', None, "<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>")
    xt.is_(xt.iq_outcome(r), 'error:bad-request', 'default=sometimes: bad-request')
    r = await bob.iq('set', None, "<prefs xmlns='urn:xmpp:mam:2'><always/></prefs>")
    xt.is_(xt.iq_outcome(r), 'error:bad-request', 'no default: bad-request (XEP-0441 2.2)')
    r = await bob.iq('set', alice_bare, P % ('never', '', ''))
    xt.is_(xt.iq_outcome(r), 'error:forbidden', "alice's preferences are not bob's to set")
    r = await bob.iq('set', None, P % ('always', '', ''))

    # -- Hostile queries ----------------------------------------------------------
    out, fin, res = await xt.mam_query(bob, rsm='<max>1000000</max>')
    xt.is_((out, len(res), xt.mam_fin(fin)[0] if fin is not None else None),
           ('result', MAX_PAGE, False), '<max>1000000</max> is capped at mam_max_page, '
           'not an error (XEP-0313 4.3.1)')
    bad = '0000000000000001'
    for fields, rsm, extra, want, what in (
            ([], None, "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
             "<value>urn:xmpp:mam:1</value></field></x>", 'error:bad-request',
             'another FORM_TYPE'),
            ([('start', 'yesterday')], None, '', 'error:bad-request', 'a start that is no date'),
            ([('end', '2024-02-30T00:00:00Z')], None, '', 'error:bad-request',
             'an end on 30 February'),
            ([('with', '@@bad@')], None, '', 'error:bad-request', 'a with that is no JID'),
            ([('colour', 'red')], None, '', 'error:feature-not-implemented',
             'an unknown field (XEP-0313 4.1.5)'),
            ([('before-id', bad)], None, '', 'error:item-not-found',
             'a before-id not in the archive (4.1.3)'),
            ([('after-id', 'zzz')], None, '', 'error:item-not-found', 'an after-id that is no id'),
            ([('ids', [fwd_ids[0], bad])], None, '', 'error:item-not-found',
             'ids with one not in the archive'),
            (None, '<after>%s</after>' % bad, '', 'error:item-not-found',
             'an RSM <after/> not in the archive (4.3.2)'),
            (None, '<before>%s</before>' % bad, '', 'error:item-not-found',
             'an RSM <before/> not in the archive'),
            (None, '<max>lots</max>', '', 'error:bad-request', 'a max that is no number'),
            (None, '<index>3</index>', '', 'error:feature-not-implemented', 'an RSM index')):
        o, fin, res = await xt.mam_query(bob, fields if fields else None, rsm=rsm,
                                         extra=extra)
        xt.is_((o, len(res)), (want, 0), '%s: %s, no results' % (what, want))
    o, fin, res = await xt.mam_query(bob, to=alice_bare)
    xt.is_((o, len(res)), ('error:forbidden', 0), "bob querying alice's archive: forbidden "
           "(XEP-0313 10.1)")
    r = await bob.iq('get', None, "<query xmlns='urn:xmpp:mam:2'/>")
    x = r.xml.find('{urn:xmpp:mam:2}query/{jabber:x:data}x') if r is not None else None
    xt.is_(sorted(f.get('var') for f in x.findall('{jabber:x:data}field')) if x is not None else None,
           sorted(['FORM_TYPE', 'with', 'start', 'end', 'before-id', 'after-id', 'ids',
                   '{urn:xmpp:fulltext:0}fulltext']),
           'the search form lists the fields, full text too (XEP-0431 2)')

    # -- Metadata (XEP-0313 7) -----------------------------------------------------
    def meta(r):
        md = r.xml.find('{%s}metadata' % NS_MAM) if r is not None else None
        if md is None:
            return None
        return [(e.tag.split('}')[1], e.get('id'), e.get('timestamp') is not None) for e in md]

    out, fin, newest = await xt.mam_query(bob, rsm='<max>1</max><before/>')
    r = await bob.iq('get', None, "<metadata xmlns='urn:xmpp:mam:2'/>")
    xt.is_(meta(r), [('start', fwd_ids[0], True), ('end', newest[0]['id'], True)],
           'metadata: the first and last id with their times')
    srv.register('gina', 'gina-pw')
    gina = await xt.login_ok(srv, 'gina', resource='g')
    r = await gina.iq('get', None, "<metadata xmlns='urn:xmpp:mam:2'/>")
    xt.is_(meta(r), [], 'an empty archive: empty metadata')

    # -- Carbons (XEP-0280) are not archived again (XEP-0313 6.1.1) -------------
    phone = await xt.login_ok(srv, 'bob', resource='phone')
    r = await phone.iq('set', None, "<enable xmlns='urn:xmpp:carbons:2'/>")
    xt.is_(xt.iq_outcome(r), 'result', "bob's phone enables carbons")
    carbon = '{urn:xmpp:carbons:2}'
    alice.send(bob.jid, 'carbon-in')
    await bob.message(body='carbon-in')
    m_in = await phone.message(pred=lambda m: m.xml.find(carbon + 'received') is not None)
    bob.send(alice.jid, 'carbon-out')
    await alice.message(body='carbon-out')
    m_out = await phone.message(pred=lambda m: m.xml.find(carbon + 'sent') is not None)
    xt.ok(m_in is not None and m_out is not None, 'the phone gets a received and a sent copy')
    bodies = [r['body'] for r in xt.mam_rows(srv, 'bob')]
    xt.is_((bodies.count('carbon-in'), bodies.count('carbon-out')), (1, 1),
           "bob's archive has each message once, whatever the copies")
    await phone.disconnect()

    # -- xmppctl archive count / purge -------------------------------------------
    MAM_TABLES = ['mam', 'mam_with', 'mam_ft']
    total = len(xt.mam_rows(srv, 'bob'))
    code, out, err = await srv.actl('archive', 'count', bob_bare)
    xt.is_((code, out.strip()), (0, str(total)), 'xmppctl archive count: the rows bob has')
    code, out, err = await srv.actl('archive', 'count', 'nobody@' + srv.host)
    xt.ok(code != 0 and 'no such account' in err + out, 'count of an unknown account: an error')
    code, out, err = await srv.actl('archive', 'purge', bob_bare, 'last tuesday')
    xt.ok(code != 0 and 'not a date' in err + out, 'purge before a non-date: an error')
    out_, fin, res = await xt.mam_query(bob, rsm='<max>20</max>')
    cut = res[12]
    code, out, err = await srv.actl('archive', 'purge', bob_bare, cut['stamp'])
    xt.is_((code, out.strip()), (0, '12'), 'purge BEFORE: the 12 older messages go')
    out_, fin, res2 = await xt.mam_query(bob, rsm='<max>5</max>')
    xt.is_([r['id'] for r in res2], [r['id'] for r in res[12:17]],
           'the archive now starts at the message stamped BEFORE')
    rows = xt.user_rows(srv, 'bob', tables=MAM_TABLES)
    xt.is_(len(rows.get('mam_with', [])), total - 12, "their 'with' index rows went with them")
    code, out, err = await srv.actl('archive', 'purge', bob_bare)
    xt.is_((code, out.strip()), (0, str(total - 12)), 'purge without a date: all the rest')
    xt.is_(xt.user_rows(srv, 'bob', tables=MAM_TABLES), {},
           "bob has no row left in mam, mam_with or mam_ft")
    out_, fin, res = await xt.mam_query(bob)
    xt.is_((len(res), xt.mam_fin(fin)[0]), (0, True), 'and his query finds nothing')

    # -- Retention: a user's own expiry (xmppctl archive expiry) -----------------
    dave_rows = len(xt.mam_rows(srv, 'dave'))
    code, out, err = await srv.actl('archive', 'expiry', srv.jid('dave'), '1')
    xt.is_((code, out.strip()), (0, '%s: 1' % srv.jid('dave')), "xmppctl archive expiry dave 1")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and xt.user_rows(srv, 'dave', tables=MAM_TABLES):
        await asyncio.sleep(0.5)
    xt.ok(dave_rows > 0 and xt.user_rows(srv, 'dave', tables=MAM_TABLES) == {},
          "the purge timer deletes dave's rows and their index rows (within 15 s)")
    xt.ok(len(xt.mam_rows(srv, 'alice')) > 0, "others' archives keep theirs (expiry 0)")
    code, out, err = await srv.actl('archive', 'expiry', srv.jid('dave'), 'default')
    xt.is_((code, out.strip()), (0, '%s: 0' % srv.jid('dave')), "expiry default: back to 0")
    dave.send(bob.jid, 'dave-after')
    await bob.message(body='dave-after')
    await asyncio.sleep(2.5)
    xt.is_([r['body'] for r in xt.mam_rows(srv, 'dave')], ['dave-after'],
           'and the purge leaves his new messages alone')

    # -- The archive goes with the account -----------------------------------------
    await alice.disconnect()
    code, out, err = await srv.actl('unregister', 'alice', srv.host)
    xt.is_(code, 0, 'xmppctl unregister alice')
    xt.is_(xt.user_rows(srv, 'alice', tables=MAM_TABLES + ['mam_prefs']), {},
           "alice's archive rows are gone with her account")
    srv.register('alice', 'alice-pw')
    alice = await xt.login_ok(srv, 'alice', resource='phone')
    out_, fin, res = await xt.mam_query(alice)
    xt.is_((out_, len(res)), ('result', 0), 'registered again, alice starts with an empty archive')

    await xt.disconnect_all(alice, bob, carol1, carol2, dave, erin, frank, gina)
    srv.teardown()

    # -- Retention: archive_expiry -------------------------------------------------
    srv2 = xt.Server(name='t1510-expiry', workers=2, modules={
        'mod_mam': {'archive_expiry': 3, 'purge_interval': 1}})
    for u in ('alice', 'bob'):
        srv2.register(u, u + '-pw')
    a2 = await xt.login_ok(srv2, 'alice', resource='a')
    b2 = await xt.login_ok(srv2, 'bob', resource='b')
    for i in range(3):
        a2.send(b2.jid, 'soon gone %d' % i)
        await b2.message(body='soon gone %d' % i)
    had = len(xt.mam_rows(srv2, 'bob'))
    left = await poll(lambda: (xt.user_rows(srv2, 'bob', tables=MAM_TABLES),
                               xt.user_rows(srv2, 'alice', tables=MAM_TABLES)),
                      lambda v: v == ({}, {}), timeout=20)
    xt.ok(had == 3 and left == ({}, {}),
          'archive_expiry 3: the rows and their index rows are gone after the timer ran')
    await xt.disconnect_all(a2, b2)
    srv2.teardown()


xt.run(main)
