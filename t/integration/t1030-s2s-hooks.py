#!/usr/bin/python3
"""t1030-s2s-hooks: the s2s_send_packet and s2s_receive_packet hooks
(doc/hooks.md), seen through a test module on two federated xmppd.

t/modules/mod_s2shooks.c, compiled here against hooks/xmppd.h, records
every call of both hooks (which host's registration ran, the stanza's
kind, id, from and to) and lists them with `xmppctl s2shooks`; it drops a
message whose body asks it to. Each message below has its own id, and
each check looks at the lines for that id only: s2s_send_packet must run
once on the sending server, for the sender's domain, and s2s_receive_packet
once on the receiving one, for the recipient's domain; a DROP from either
hook keeps the message from its recipient.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

def hook_lines(srv, mid):
    """The `xmppctl s2shooks` lines of srv for stanza id mid, as tuples
    (hook, host, kind, from, to)."""
    code, out, err = srv.ctl('s2shooks')
    if code != 0:
        xt.diag('xmppctl s2shooks on %s failed (%r): %s' % (srv.host, code, err))
        return None
    lines = [l.split('\t') for l in out.splitlines() if l.strip()]
    return [(l[0], l[1], l[2], l[4], l[5]) for l in lines if len(l) == 6 and l[3] == mid]


def send(c, to, body, mid):
    m = c.xmpp.make_message(mto=to, mbody=body, mtype='chat')
    m['id'] = mid
    m.send()


async def main():
    d = xt.scratch_dir('t1030-certs')
    xt.make_ca(d, 'ca')
    moddir = d / 'modules'
    moddir.mkdir()
    xt.build_test_module(moddir, 'mod_s2shooks')

    a, b = xt.federated_pair(d, 'ca', 't1030', modules={
        'a.test': {'mod_s2shooks': {'hosts': ['a.test']}},
        'b.test': {'mod_s2shooks': {'hosts': ['b.test']}}},
        conf={'module_dir': str(moddir)})
    a.register('alice', 'alice-pw')
    b.register('bob', 'bob-pw')
    alice = await xt.login_ok(a, 'alice', resource='r')
    bob = await xt.login_ok(b, 'bob', resource='r')

    # The first message waits for the link (it is sent when the link is
    # up); the second goes straight onto it.
    for mid, body in (('m-first', 'first, queued'), ('m-second', 'second, direct')):
        send(alice, 'bob@b.test', body, mid)
        m = await bob.message(pred=lambda m: m['id'] == mid, timeout=10)
        xt.is_(m and m['body'], body, '%s: alice -> bob arrives' % mid)
        want = ('message', 'alice@a.test/r', 'bob@b.test')
        xt.is_(hook_lines(a, mid), [('send', 'a.test') + want],
               '%s: s2s_send_packet ran once on a.test, for a.test, with it' % mid)
        xt.is_(hook_lines(b, mid), [('receive', 'b.test') + want],
               '%s: s2s_receive_packet ran once on b.test, for b.test, with it' % mid)

    # The other way: the hooks of the other link and stream.
    send(bob, 'alice@a.test/r', 'and back', 'm-back')
    m = await alice.message(pred=lambda m: m['id'] == 'm-back', timeout=10)
    xt.is_(m and m['body'], 'and back', 'm-back: bob -> alice arrives')
    want = ('message', 'bob@b.test/r', 'alice@a.test/r')
    xt.is_(hook_lines(b, 'm-back'), [('send', 'b.test') + want],
           'm-back: s2s_send_packet ran on b.test, for b.test')
    xt.is_(hook_lines(a, 'm-back'), [('receive', 'a.test') + want],
           'm-back: s2s_receive_packet ran on a.test, for a.test')

    # DROP from s2s_send_packet: the stanza does not leave a.test. The
    # message after it shows the link still works, and since a link keeps
    # the order of its stanzas, that the dropped one is not merely late.
    for hook, mid in (('send', 'm-drop-send'), ('receive', 'm-drop-receive')):
        send(alice, 'bob@b.test', 'drop at s2s_%s_packet' % hook, mid)
        send(alice, 'bob@b.test', 'after %s' % mid, mid + '-after')
        m = await bob.message(pred=lambda m: m['id'] == mid + '-after', timeout=10)
        xt.ok(m is not None, '%s: the message after it arrives' % mid)
        m = await bob.message(pred=lambda m: m['id'] == mid, timeout=0.5)
        xt.ok(m is None, '%s: DROP from s2s_%s_packet: bob does not get it' % (mid, hook))
        want = ('message', 'alice@a.test/r', 'bob@b.test')
        xt.is_(hook_lines(a, mid), [('send', 'a.test') + want],
               '%s: s2s_send_packet ran on a.test' % mid)
        xt.is_(hook_lines(b, mid), [('receive', 'b.test') + want] if hook == 'receive' else [],
               '%s: s2s_receive_packet on b.test %s' % (
                   mid, 'ran' if hook == 'receive' else 'did not run: it never left a.test'))

    await xt.disconnect_all(alice, bob)
    xt.is_(a.stop(), 0, 'a exits 0')
    xt.is_(b.stop(), 0, 'b exits 0')


xt.run(main, timeout=60)
