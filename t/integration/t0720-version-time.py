#!/usr/bin/python3
"""t0720-version-time: XEP-0092 Software Version (mod_version, options
name and show_os) and XEP-0202 Entity Time (mod_time)."""

import calendar
import os
import platform
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_VERSION = 'jabber:iq:version'
NS_TIME = 'urn:xmpp:time'


def child_text(r, ns, parent, name):
    """Text of <parent><name/></parent> in ns in reply r, or None."""
    if r is None:
        return None
    p = r.xml.find('{%s}%s' % (ns, parent))
    if p is None:
        return None
    c = p.find('{%s}%s' % (ns, name))
    return c.text if c is not None else None


def local_tzo():
    """This machine's offset from UTC now, as XEP-0082 writes it."""
    off = time.localtime().tm_gmtoff
    sign = '-' if off < 0 else '+'
    off = abs(off)
    return '%s%02d:%02d' % (sign, off // 3600, off // 60 % 60)


async def main():
    srv = xt.Server(workers=2, modules={'mod_version': {'name': 'Test Server'},
                                        'mod_time': {}})
    srv.register('alice', 'alice-pw')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw')

    # XEP-0092 2.
    r = await alice.iq('get', srv.host, "<query xmlns='%s'/>" % NS_VERSION)
    xt.is_(r['type'] if r is not None else None, 'result', 'version query: a result')
    xt.is_(child_text(r, NS_VERSION, 'query', 'name'), 'Test Server',
           'the name is the one configured')
    v = child_text(r, NS_VERSION, 'query', 'version')
    xt.like(v or '', r'^\d+\.\d+', 'a version number is given (%s)' % v)
    xt.is_(child_text(r, NS_VERSION, 'query', 'os'), platform.system(),
           'the OS is shown by default')
    r = await alice.iq('set', srv.host, "<query xmlns='%s'/>" % NS_VERSION)
    xt.is_(r['type'] if r is not None else None, 'error', 'a version set is refused')

    # XEP-0202 2, 3.
    before = time.time()
    r = await alice.iq('get', srv.host, "<time xmlns='%s'/>" % NS_TIME)
    after = time.time()
    xt.is_(r['type'] if r is not None else None, 'result', 'time query: a result')
    tzo = child_text(r, NS_TIME, 'time', 'tzo')
    utc = child_text(r, NS_TIME, 'time', 'utc')
    xt.like(tzo or '', r'^[+-]\d\d:\d\d$', 'tzo is [+-]hh:mm (%s)' % tzo)
    xt.is_(tzo, local_tzo(), "tzo is the server's local offset")
    m = re.match(r'^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?Z$', utc or '')
    xt.ok(m is not None, 'utc is an XEP-0082 DateTime in UTC (%s)' % utc)
    t = calendar.timegm(tuple(int(x) for x in m.groups()) + (0, 0, 0)) if m else None
    xt.ok(t is not None and before - 5 <= t <= after + 5,
          'utc is within 5 s of now (%s)' % (t and round(t - before, 1)))
    r = await alice.iq('set', srv.host, "<time xmlns='%s'/>" % NS_TIME)
    xt.is_(r['error']['condition'] if r is not None else None, 'not-allowed',
           'a time set: not-allowed')
    r = await alice.iq('get', srv.host, "<now xmlns='%s'/>" % NS_TIME)
    xt.is_(r['error']['condition'] if r is not None else None, 'bad-request',
           'a time payload that is not <time/>: bad-request')
    await alice.disconnect()
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')

    # show_os: false (XEP-0092 6) hides the OS; name defaults to xmppd.
    srv2 = xt.Server(workers=2, modules={'mod_version': {'show_os': False}})
    srv2.register('bob', 'bob-pw')
    bob = await xt.login_ok(srv2, 'bob', 'bob-pw')
    r = await bob.iq('get', srv2.host, "<query xmlns='%s'/>" % NS_VERSION)
    xt.is_(r['type'] if r is not None else None, 'result', 'show_os false: still a result')
    xt.is_(child_text(r, NS_VERSION, 'query', 'name'), 'xmppd', 'the default name is xmppd')
    xt.ok(r is not None and r.xml.find('{%s}query/{%s}os' % (NS_VERSION, NS_VERSION)) is None,
          'no <os/> element') or xt.diag(str(r))
    xt.ok(child_text(r, NS_VERSION, 'query', 'version'), 'the version is still given')
    r = await bob.iq('get', srv2.host, "<time xmlns='%s'/>" % NS_TIME)
    xt.is_(r['error']['condition'] if r is not None else None, 'service-unavailable',
           'without mod_time, a time query: service-unavailable')
    await bob.disconnect()
    xt.is_(srv2.stop(), 0, 'the second xmppd exits 0 on SIGTERM')


xt.run(main)
