#!/usr/bin/python3
"""t1835-contact-addresses: XEP-0157 contact addresses (mod_disco's option
contact). The server's disco#info carries a result form of FORM_TYPE
http://jabber.org/network/serverinfo with one list-multi field per kind
configured, holding its URIs in order; an account's disco#info does not;
without the option there is no form; an unknown kind, a value that is not
a URI or an option that is not a mapping stop the server from starting
with a message that says why."""

import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

H = 'xmppd.test'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_X = 'jabber:x:data'
NS_SI = 'http://jabber.org/network/serverinfo'

CONTACT = {
    'abuse': ['mailto:abuse@xmppd.test', 'xmpp:abuse@xmppd.test'],
    'admin': 'xmpp:root@xmppd.test',
    'security': ['https://xmppd.test/security.txt'],
}


def serverinfo(reply):
    """{var: (type, [values])} of the serverinfo forms in a disco#info
    reply, and how many such forms there were."""
    if reply is None or reply['type'] != 'result':
        return None, 0
    q = reply.xml.find('{%s}query' % NS_INFO)
    found, n = {}, 0
    for x in q.findall('{%s}x' % NS_X):
        fl = {f.get('var'): (f.get('type'), [v.text for v in f.findall('{%s}value' % NS_X)])
              for f in x.findall('{%s}field' % NS_X)}
        if fl.get('FORM_TYPE', (None, []))[1] == [NS_SI]:
            n += 1
            found = fl
            found['_type'] = x.get('type')
    return found, n


async def refused(contact, why):
    """Starts a server with contact; returns (its exit status, its log).
    The listeners may accept a moment before the modules load, so wait
    for the exit rather than for start() to fail."""
    srv = xt.Server(name='t1835-bad-%s' % why.split()[0], start=False,
                    modules={'mod_disco': {'contact': contact}})
    try:
        srv.start()
    except xt.HarnessError:
        pass
    code = await srv.await_exit(10)
    log = srv.log()
    if code is None:
        await srv.astop()
    elif code == 1:
        # The refusal is what is tested: not a failure of the teardown.
        srv.exits = [(c, h) for c, h in srv.exits if c != 1]
    return code, log


async def main():
    srv = xt.Server(workers=2, modules={'mod_disco': {'contact': CONTACT}, 'mod_roster': {}})
    srv.register('bob', 'bob-pw')
    bob = await xt.login_ok(srv, 'bob', resource='b')

    r = await bob.iq('get', H, "<query xmlns='%s'/>" % NS_INFO)
    f, n = serverinfo(r)
    xt.is_(n, 1, 'the server\'s disco#info carries one serverinfo form')
    xt.is_(f.get('_type') if f else None, 'result', 'of type result')
    xt.is_(f.get('FORM_TYPE', (None,))[0] if f else None, 'hidden', 'FORM_TYPE is hidden')
    xt.is_(f.get('abuse-addresses') if f else None,
           ('list-multi', CONTACT['abuse']), 'abuse-addresses: both URIs, in order')
    xt.is_(f.get('admin-addresses') if f else None,
           ('list-multi', [CONTACT['admin']]), 'admin-addresses: the one string')
    xt.is_(f.get('security-addresses') if f else None,
           ('list-multi', CONTACT['security']), 'security-addresses')
    xt.ok(f is not None and 'sales-addresses' not in f and 'support-addresses' not in f,
          'kinds not configured have no field')
    q = r.xml.find('{%s}query' % NS_INFO) if r is not None else None
    xt.ok(q is not None and q.find("{%s}identity[@category='server']" % NS_INFO) is not None
          and q.find("{%s}feature[@var='%s']" % (NS_INFO, NS_INFO)) is not None,
          'the identity and features are still there')

    r = await bob.iq('get', 'bob@' + H, "<query xmlns='%s'/>" % NS_INFO)
    f, n = serverinfo(r)
    xt.ok(r is not None and r['type'] == 'result' and n == 0,
          'an account\'s disco#info has no serverinfo form')
    r = await bob.iq('get', H, "<query xmlns='%s' node='x'/>" % NS_INFO)
    f, n = serverinfo(r)
    xt.is_(n, 0, 'nor a node of the server')
    await xt.disconnect_all(bob)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')

    plain = xt.Server(name='t1835-plain', modules={'mod_disco': {}})
    plain.register('bob', 'bob-pw')
    bob = await xt.login_ok(plain, 'bob')
    r = await bob.iq('get', H, "<query xmlns='%s'/>" % NS_INFO)
    f, n = serverinfo(r)
    xt.ok(r is not None and r['type'] == 'result' and n == 0,
          'without the option: no serverinfo form')
    await xt.disconnect_all(bob)
    await plain.astop()

    code, log = await refused({'abuse': ['mailto:a@b'], 'complaints': 'mailto:c@d'},
                              'unknown kind')
    xt.ok(code == 1 and "unknown kind 'complaints'" in log,
          'an unknown kind stops the start, named') or xt.diag(log[-800:])
    code, log = await refused({'admin': ['root at example']}, 'not a uri')
    xt.ok(code == 1 and "'root at example' is not a URI" in log,
          'a value without a scheme is refused') or xt.diag(log[-800:])
    code, log = await refused(['mailto:a@b'], 'list not map')
    xt.ok(code == 1 and 'expects a mapping' in log,
          'a list where a mapping belongs is refused') or xt.diag(log[-800:])


xt.run(main, timeout=90)
