#!/usr/bin/python3
"""t0600-xmppctl: the control tool, reload, and xmppd --check-config."""

import asyncio
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402


def local_addr(c):
    t = c.xmpp.transport
    s = t.get_extra_info('sockname') if t else None
    return '%s:%d' % (s[0], s[1]) if s else None


async def main():
    srv = xt.Server(workers=2)
    host = srv.host

    # status
    code, out, err = srv.ctl('status')
    xt.is_(code, 0, 'status exits 0 while running') or xt.diag(out, err)
    xt.like(out, r'\Arunning', 'status prints a line starting "running"')
    code, out, err = srv.ctl('-s', srv.conf['ctl_socket'], 'status', config=False)
    xt.ok(code == 0 and out.startswith('running'), 'status through -s SOCKET works') or xt.diag(out, err)

    # register
    code, out, err = srv.ctl('register', 'alice', host, 'alice-pw')
    xt.is_(code, 0, 'register alice exits 0') or xt.diag(out, err)
    code, out, err = srv.ctl('register', 'bob', host, 'bob-pw')
    xt.is_(code, 0, 'register bob exits 0') or xt.diag(out, err)
    code, out, err = srv.ctl('register', 'alice', host, 'other-pw')
    xt.ok(code not in (0, None), 'register alice again exits non-zero (%r)' % code)
    xt.like(err, r'(?i)exist|already|taken', 'register twice: stderr says the account exists')
    c = await xt.login(srv, 'alice', 'other-pw')
    xt.ok(not c.ok, 'the second register did not change alice\'s password')
    code, out, err = srv.ctl('register', 'carol', 'elsewhere.example', 'pw')
    xt.ok(code not in (0, None) and err.strip(), 'register on a host xmppd does not serve fails with a message') \
        or xt.diag(code, out, err)

    # users
    code, out, err = srv.ctl('users', host)
    xt.is_(code, 0, 'users exits 0')
    xt.is_(sorted(out.split('\n')[:-1] if out.endswith('\n') else out.split('\n')),
           [srv.jid('alice'), srv.jid('bob')], 'users prints one bare JID per line')

    # passwd
    code, out, err = srv.ctl('passwd', 'alice', host, 'alice-new')
    xt.is_(code, 0, 'passwd exits 0') or xt.diag(out, err)
    c = await xt.login(srv, 'alice', 'alice-pw')
    xt.is_(c.auth_failure, 'not-authorized', 'after passwd the old password fails')
    await c.disconnect()
    c = await xt.login(srv, 'alice', 'alice-new')
    xt.ok(c.ok, 'after passwd the new password works') or xt.diag(c.describe())
    await c.disconnect()
    code, out, err = srv.ctl('passwd', 'nobody', host, 'x')
    xt.ok(code not in (0, None) and err.strip(), 'passwd for a nonexistent account fails with a message') \
        or xt.diag(code, out, err)

    # connected
    a1 = await xt.login_ok(srv, 'alice', 'alice-new', resource='one', priority=3)
    a2 = await xt.login_ok(srv, 'alice', 'alice-new', resource='two')
    b1 = await xt.login_ok(srv, 'bob', 'bob-pw', resource='one', priority=-1)
    sessions = await srv.wait_connected(lambda s: (xt.session_of(s, a1.jid) or {}).get('priority') == 3
                                        and (xt.session_of(s, b1.jid) or {}).get('priority') == -1
                                        and xt.session_of(s, a2.jid))
    xt.is_(sorted(s['jid'] for s in sessions or []),
           sorted(str(c.jid) for c in (a1, a2, b1)), 'connected lists the three sessions')
    s = xt.session_of(sessions, a1.jid) or {}
    xt.is_(len(s.get('line', '').split('\t')), 4, 'a connected line has 4 TAB-separated fields')
    xt.ok(s.get('worker') in ('0', '1', '2'), 'connected: worker number (%r)' % s.get('worker'))
    xt.is_(s.get('addr'), local_addr(a1), 'connected: ip:port is the client\'s address')
    xt.is_(s.get('priority'), 3, 'connected: priority 3')
    xt.is_((xt.session_of(sessions, b1.jid) or {}).get('priority'), -1, 'connected: priority -1')

    # kick
    code, out, err = srv.ctl('kick', str(a1.jid))
    xt.is_(code, 0, 'kick full JID exits 0') or xt.diag(out, err)
    xt.ok(await a1.wait_closed(5), 'kick full JID: that client is disconnected')
    xt.ok(a2.xmpp.transport is not None and not a2.closed.is_set(),
          'kick full JID: the user\'s other session stays')
    xt.ok(await xt.roundtrip(b1, a2), 'the other session still gets messages')
    sessions = await srv.wait_connected(lambda s: not xt.session_of(s, a1.jid))
    xt.ok(not xt.session_of(sessions, a1.jid), 'connected no longer lists the kicked session')

    b2 = await xt.login_ok(srv, 'bob', 'bob-pw', resource='two')
    code, out, err = srv.ctl('kick', srv.jid('bob'))
    xt.is_(code, 0, 'kick bare JID exits 0') or xt.diag(out, err)
    closed = await asyncio.gather(b1.wait_closed(5), b2.wait_closed(5))
    xt.is_(closed, [True, True], 'kick bare JID: all of bob\'s sessions are disconnected')
    xt.ok(not a2.closed.is_set(), 'kick bob: alice\'s session stays')

    # unregister
    code, out, err = srv.ctl('unregister', 'bob', host)
    xt.is_(code, 0, 'unregister exits 0') or xt.diag(out, err)
    c = await xt.login(srv, 'bob', 'bob-pw')
    xt.ok(not c.ok, 'after unregister bob cannot log in')
    xt.is_(c.auth_failure, 'not-authorized', 'after unregister: SASL <not-authorized/>')
    code, out, err = srv.ctl('users', host)
    xt.is_(out.split(), [srv.jid('alice')], 'users no longer lists bob')
    code, out, err = srv.ctl('unregister', 'bob', host)
    xt.ok(code not in (0, None) and err.strip(), 'unregister of a nonexistent account fails with a message') \
        or xt.diag(code, out, err)

    # Unknown command: non-zero and a message.
    code, out, err = srv.ctl('frobnicate')
    xt.ok(code not in (0, None) and err.strip(), 'an unknown command exits non-zero with a message')

    # reload with a changed loglevel: it takes effect. Each login is
    # asserted, not assumed: a login that failed would log no [debug] line
    # either, and the server must say at info level that it bound it.
    async def a_login():
        """Logs alice in and out: (the session's full JID, or None if the
        login failed; [debug] lines; whether the server logged binding
        that JID at info level)."""
        pos = len(srv.log())
        c = await xt.login(srv, 'alice', 'alice-new')
        full = str(c.jid) if c.ok else None
        if full is None:
            xt.diag('login failed: ' + c.describe())
        await c.disconnect()
        await asyncio.sleep(0.2)
        text = srv.log()[pos:]
        bound = full is not None and re.search(r'\[info\] \S+ bound %s$' % re.escape(full),
                                               text, re.M) is not None
        return full, len(re.findall(r'\[debug\]', text)), bound

    full, before, bound = await a_login()
    xt.ok(full and bound and before > 0,
          'at loglevel debug a login (%s) is logged with [debug] lines (%d)' % (full, before))
    srv.conf['loglevel'] = 'info'
    srv.write_config()
    code, out, err = srv.ctl('reload')
    xt.is_(code, 0, 'reload (loglevel: info) exits 0') or xt.diag(out, err)
    code, out, err = srv.ctl('status')
    xt.ok(code == 0 and out.startswith('running'), 'still running after reload')
    full, after, bound = await a_login()
    xt.is_((full is not None, bound, after), (True, True, 0),
           'after reload to loglevel info a login succeeds, is logged at info, with no [debug] line')

    # SIGHUP reloads too.
    srv.conf['loglevel'] = 'debug'
    srv.write_config()
    reloads = srv.log().count('configuration reloaded')
    srv.signal(xt.signal.SIGHUP)
    # Wait for the server to say it reloaded (a loaded machine may take
    # longer than any fixed sleep).
    for _ in range(100):
        if srv.log().count('configuration reloaded') > reloads:
            break
        await asyncio.sleep(0.05)
    xt.ok(srv.running(), 'xmppd survives SIGHUP')
    full, again, bound = await a_login()
    xt.ok(full and bound and again > 0,
          'after SIGHUP with loglevel debug, a login logs [debug] lines again (%d)' % again)

    # reload with a broken file: refused, the old configuration stays.
    # xmppctl -c reads the file itself to find the socket, so it refuses
    # first; -s SOCKET makes the server read it.
    sock = srv.conf['ctl_socket']
    broken = srv.config_text() + 'workers: [unclosed\n'
    srv.write_config(broken)
    code, out, err = srv.ctl('reload')
    xt.ok(code not in (0, None) and err.strip(),
          'xmppctl -c BROKEN reload exits non-zero with a message (%r)' % code) or xt.diag(out, err)
    lines = srv.config_text().splitlines()
    wl = next(i for i, l in enumerate(lines) if l.startswith('workers:'))
    bad_value = '\n'.join(lines[:wl] + ['workers: lots'] + lines[wl + 1:]) + '\n'
    for what, text in (('a YAML syntax error', broken), ('"workers: lots"', bad_value)):
        # Each also says loglevel: info, which would switch debug off if taken.
        srv.write_config(text.replace('loglevel: debug', 'loglevel: info'))
        code, out, err = srv.ctl('-s', sock, 'reload', config=False)
        xt.ok(code not in (0, None), 'server-side reload of a file with %s exits non-zero (%r)'
              % (what, code)) or xt.diag(out, err)
        xt.ok(err.strip(), 'and says why on stderr') and xt.note('reload said: ' + err.strip())
        code, out, err = srv.ctl('-s', sock, 'status', config=False)
        xt.ok(code == 0 and out.startswith('running'), 'still running after the refused reload') \
            or xt.diag(code, out, err)
    full, n, bound = await a_login()
    xt.ok(full and bound and n > 0,
          'the old configuration (loglevel debug) is still in force: a login logs %d [debug] lines' % n)
    c = await xt.login(srv, 'alice', 'alice-new')
    xt.ok(c.ok, 'logins still work after the refused reloads') or xt.diag(c.describe())
    xt.ok(await xt.roundtrip(c, a2), 'and messages are still routed')
    await c.disconnect()
    srv.write_config()

    # xmppd --check-config
    code, text = srv.check_config(srv.conf_path)
    xt.is_(code, 0, '--check-config on the good file exits 0') or xt.diag(text)

    lines = srv.config_text().splitlines()
    bad1 = str(srv.dir / 'bad-key.yml')
    srv.write_config('\n'.join(lines + ['no_such_option: 1']) + '\n', bad1)
    code, text = srv.check_config(bad1)
    xt.is_(code, 1, '--check-config with an unknown key exits 1')
    xt.like(text, r'%s:%d:' % (re.escape(bad1), len(lines) + 1),
            '--check-config names FILE:LINE of the unknown key (line %d)' % (len(lines) + 1))

    bad2 = str(srv.dir / 'bad-value.yml')
    wl = next(i for i, l in enumerate(lines) if l.startswith('workers:'))
    srv.write_config('\n'.join(lines[:wl] + ['workers: lots'] + lines[wl + 1:]) + '\n', bad2)
    code, text = srv.check_config(bad2)
    xt.is_(code, 1, '--check-config with "workers: lots" exits 1')
    xt.like(text, r'%s:%d:' % (re.escape(bad2), wl + 1),
            '--check-config names FILE:LINE of the bad value (line %d)' % (wl + 1))

    bad3 = str(srv.dir / 'bad-syntax.yml')
    srv.write_config(broken, bad3)
    code, text = srv.check_config(bad3)
    xt.is_(code, 1, '--check-config with a YAML syntax error exits 1')
    xt.like(text, r'%s:\d+:' % re.escape(bad3), '--check-config names FILE:LINE of the syntax error')

    code, text = srv.check_config(str(srv.dir / 'missing.yml'))
    xt.ok(code not in (0, None) and text.strip(), '--check-config on a missing file fails with a message')

    # stop
    code, out, err = srv.ctl('stop')
    xt.is_(code, 0, 'stop exits 0') or xt.diag(out, err)
    xt.is_(await srv.await_exit(10), 0, 'after xmppctl stop, xmppd exits 0')
    xt.ok(await a2.wait_closed(3), 'the remaining client was disconnected')
    xt.is_(a2.stream_error, 'system-shutdown', 'with <system-shutdown/>')
    code, out, err = srv.ctl('status')
    xt.is_(code, 3, 'status exits 3 when xmppd is not running') or xt.diag(out, err)
    code, out, err = srv.ctl('users', host)
    xt.ok(code not in (0, None) and err.strip(), 'a command with xmppd down fails with a message')


xt.run(main)
