#!/usr/bin/python3
"""t1511-mam-crash: an archived message is committed before the stream
management ack that covers it (XEP-0198 4, DESIGN.md "Data layer"; mod_mam
archives from the hooks in a batch the sending stream waits for).

alice and bob, raw streams with stream management, send each other
messages and ask <r/>; as soon as the server's <a h/> counts all of them,
xmppd is killed with SIGKILL. After the restart every one of those
messages is in the archive of both parties: in the store (read with
mdb_dump), and in what a query returns."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

N = 40


async def sm_session(srv, user, resource):
    r = await xt.sm_authed(srv, user)
    jid = await r.bind(resource)
    en = await xt.sm_enable(r)
    if jid is None or en is None or not en.startswith('<enabled'):
        raise xt.HarnessError('raw: no SM session for %s: %r' % (user, r.text[-400:]))
    await r.send('<presence/>')
    if not await r.read_until(r'<presence\b.*?(/>|</presence>)', 8):
        raise xt.HarnessError('raw: no presence echo for %s' % user)
    return r, jid


async def main():
    srv = xt.Server(workers=2, modules={'mod_mam': {}, 'mod_offline': {}})
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    ra, alice_jid = await sm_session(srv, 'alice', 'a')
    rb, bob_jid = await sm_session(srv, 'bob', 'b')

    # Both send at once, in one write each, then ask for the count.
    a_bodies = ['a2b-%d' % i for i in range(N)]
    b_bodies = ['b2a-%d' % i for i in range(N)]
    await asyncio.gather(
        ra.send(''.join("<message to='%s' type='chat'><body>%s</body></message>"
                        % (bob_jid, b) for b in a_bodies)),
        rb.send(''.join("<message to='%s' type='chat'><body>%s</body></message>"
                        % (alice_jid, b) for b in b_bodies)))
    ha, hb = await asyncio.gather(xt.sm_ask_h(ra, 15), xt.sm_ask_h(rb, 15))
    # The presence and the N messages of each (XEP-0198 4: h counts the
    # stanzas the server handled).
    xt.is_((ha, hb), (N + 1, N + 1), "the server's <a h/> covers every message each sent")

    # -- kill -9 as soon as the acks are in --------------------------------------
    srv.kill9()
    ra.close()
    rb.close()

    def bodies(user, direction):
        return [r['body'] for r in xt.mam_rows(srv, user) if r['dir'] == direction]

    xt.is_(bodies('alice', 'out'), a_bodies,
           "after kill -9 alice's archive holds every message she sent, in order")
    xt.is_(sorted(bodies('bob', 'in')), sorted(a_bodies),
           "and bob's archive every one of them, received")
    xt.is_(bodies('bob', 'out'), b_bodies, "bob's archive holds every message he sent")
    xt.is_(sorted(bodies('alice', 'in')), sorted(b_bodies),
           "and alice's every one of those, received")

    # -- After the restart, a query returns them ---------------------------------
    srv.start()
    bob = await xt.login_ok(srv, 'bob', resource='c')
    out, fin, res = await xt.mam_query(bob, rsm='<max>%d</max>' % (4 * N))
    xt.is_(out, 'result', 'after the restart bob queries his archive')
    xt.is_(sorted(r['body'] for r in res), sorted(a_bodies + b_bodies),
           'and gets every message of both directions back')
    xt.is_(xt.mam_fin(fin)[0] if fin is not None else None, True, 'in one complete page')
    await bob.disconnect()
    srv.teardown()


xt.run(main)
