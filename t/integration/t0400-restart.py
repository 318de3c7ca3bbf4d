#!/usr/bin/python3
"""t0400-restart: accounts live in the spool and survive restarts."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402


async def main():
    srv = xt.Server()
    srv.register('alice', 'alice-pw')
    srv.register('bob', 'bob-pw')

    c = await xt.login(srv, 'alice', 'alice-pw', resource='before')
    xt.ok(c.ok, 'alice logs in before the restart') or xt.diag(c.describe())

    # A clean stop: the open stream is told why (RFC 6120 4.9.3.19).
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')
    xt.ok(await c.wait_closed(3), 'alice\'s stream was closed by the shutdown')
    xt.is_(c.stream_error, 'system-shutdown', 'alice received <system-shutdown/>')
    code, out, err = srv.ctl('status')
    xt.is_(code, 3, 'xmppctl status exits 3 while xmppd is down') or xt.diag(out, err)

    srv.start()
    code, out, err = srv.ctl('users', srv.host)
    xt.is_(sorted(out.split()), [srv.jid('alice'), srv.jid('bob')],
           'after the restart xmppctl users lists alice and bob')
    for user in ('alice', 'bob'):
        c = await xt.login(srv, user, user + '-pw')
        xt.ok(c.ok, '%s logs in after the restart' % user) or xt.diag(c.describe())
        await c.disconnect()
    c = await xt.login(srv, 'alice', 'bob-pw')
    xt.is_(c.auth_failure, 'not-authorized', 'a wrong password still fails after the restart')
    await c.disconnect()

    # A password change is durable too.
    code, out, err = srv.ctl('passwd', 'bob', srv.host, 'bob-new')
    xt.is_(code, 0, 'xmppctl passwd bob') or xt.diag(err)
    xt.is_(srv.restart(), 0, 'xmppd exits 0 on SIGTERM (second stop)')
    c = await xt.login(srv, 'bob', 'bob-new')
    xt.ok(c.ok, 'bob logs in with the changed password after a restart') or xt.diag(c.describe())
    await c.disconnect()

    # An unclean stop: an account whose registration was acknowledged is
    # still there after SIGKILL (and a stale pidfile does not stop start-up).
    srv.register('carol', 'carol-pw')
    srv.kill9()
    srv.start()
    c = await xt.login(srv, 'carol', 'carol-pw')
    xt.ok(c.ok, 'carol (registered just before SIGKILL) logs in after the restart') or \
        xt.diag(c.describe())
    await c.disconnect()

    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM (last stop)')


xt.run(main)
