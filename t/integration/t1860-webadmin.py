#!/usr/bin/python3
"""t1860-webadmin: the web admin page at /admin/ (www/admin, doc/admin.md
"Web admin") on a plain HTTP listener, served from the source tree.

Over HTTP: the page, its script and its style sheet with their types and
the page's security headers, no inline script or style (the policy would
block them), /admin redirected to /admin/. In headless Chromium, judged
by what the page shows and by what the server then does: a wrong password
and an account that is no admin get the API's refusal and no admin
content; the admin signs in and sees the server's version; lists, filters,
creates (the account logs in), re-passwords (the new password logs in, the
old one no longer) and deletes accounts; sees a slixmpp client's session
and kicks it (it is disconnected, another client is not); sees no s2s
link, then the one a message to another server opened; reloads a module (the result is shown, the server still answers);
watches the live metrics at a short interval (each chart gets samples, the
sessions shown are the server's, the rates are those of its counters). A
screenshot is kept. Signing out leaves no admin data in the page; so does
a poll refused because the password changed. No script error or policy
violation is logged.
"""

import asyncio
import base64
import http.client
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402
from xt_browser import CHROMEDRIVER, browser, browser_log, get, have_driver, screenshot, wait_for  # noqa: E402,E501

PAGE_DIR = xt.TOP_SRCDIR / 'www' / 'admin'
MODULES = {'mod_disco': {}, 'mod_roster': {}, 'mod_ping': {}}


def api(ip, port, name, body, user, password):
    """One API request as user; (status, parsed JSON)."""
    c = http.client.HTTPConnection(ip, port, timeout=10)
    auth = base64.b64encode(('%s:%s' % (user, password)).encode()).decode()
    c.request('POST', '/api/' + name, body=json.dumps(body).encode(),
              headers={'Content-Type': 'application/json', 'Authorization': 'Basic ' + auth})
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


async def main():
    if not have_driver():
        if xt.in_ci():
            xt.ok(False, 'chromium-driver is installed (CI=true: its absence is a failure)')
        else:
            xt.skip('chromium-driver is not installed (%s): skipped on this developer '
                    'machine; CI installs it and fails without it' % CHROMEDRIVER)
        return
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    # xmppd.test, with the page, federates with peer.test (for the s2s part).
    d = xt.scratch_dir('t1860-certs')
    xt.make_ca(d, 'ca1')
    srv, peer = xt.federated_pair(d, 'ca1', 't1860', hosts=('xmppd.test', 'peer.test'),
                                  modules={'xmppd.test': MODULES}, start=False)
    (hp,) = xt.free_ports(srv.ip, 1)
    srv.conf['listen'] += [{'port': hp, 'ip': srv.ip, 'module': 'http'}]
    srv.conf['admin_page_dir'] = str(PAGE_DIR)
    srv.conf['acl'] = {'admins': {'user': ['admin@xmppd.test']}}
    for s in (srv, peer):
        s.write_config()
        s.start()
    for u in ('admin', 'alice', 'bob', 'mallory'):
        srv.register(u, u + '-pw')
    peer.register('dave', 'dave-pw')
    ip = srv.ip
    base = 'http://%s:%d' % (ip, hp)

    # --- the files, over HTTP ---------------------------------------------
    st, h, body = get(ip, hp, '/admin/')
    csp = h.get('content-security-policy', '')
    xt.ok(st == 200 and h.get('content-type') == 'text/html; charset=utf-8'
          and body == (PAGE_DIR / 'index.html').read_bytes(),
          '/admin/ is index.html, as text/html') or xt.diag(st, h)
    xt.ok("default-src 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
          and "frame-ancestors 'none'" in csp and h.get('x-frame-options') == 'DENY'
          and h.get('x-content-type-options') == 'nosniff',
          'with its policy (own scripts and styles only), no framing, nosniff') or xt.diag(h)
    page = body.decode()
    inline = re.findall(r'<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=', page)
    xt.is_(inline, [], 'the page has no inline script, style or handler (the policy forbids them)')
    for name, ctype in (('admin.js', 'text/javascript; charset=utf-8'),
                        ('admin.css', 'text/css; charset=utf-8')):
        st, h, body = get(ip, hp, '/admin/' + name)
        xt.ok(st == 200 and h.get('content-type') == ctype
              and body == (PAGE_DIR / name).read_bytes(),
              '/admin/%s is served as %s' % (name, ctype.split(';')[0])) or xt.diag(st, h)
    st, h, body = get(ip, hp, '/admin')
    xt.is_((st, h.get('location')), (301, '/admin/'), '/admin redirects to /admin/')

    code, out, err = srv.ctl('status')
    m = re.match(r'running xmppd (\S+),', out)
    version = m.group(1) if m else None
    st, body = api(ip, hp, 'status', {}, 'admin@xmppd.test', 'admin-pw')
    xt.ok(version is not None and st == 200 and body['result']['version'] == version,
          'set-up: xmppctl status and the status API agree on the version (%s)' % version) \
        or xt.diag(out, err, st, body)

    # --- in Chromium -------------------------------------------------------
    alice = await xt.login_ok(srv, 'alice', resource='desk')
    bob = await xt.login_ok(srv, 'bob', resource='slix')
    dave = None
    drv = await asyncio.to_thread(browser)
    try:
        async def B(fn, *args):
            return await asyncio.to_thread(fn, *args)

        async def until(fn, timeout=10):
            return await asyncio.to_thread(wait_for, drv, fn, timeout)

        def by_id(i):
            return drv.find_element(By.ID, i)

        def text(i):
            return by_id(i).text

        def shown(i):
            return by_id(i).is_displayed()

        def rows(tbody, attr):
            return [r.get_attribute('data-' + attr)
                    for r in drv.find_elements(By.CSS_SELECTOR, '#%s tr' % tbody)
                    if r.is_displayed()]

        def row(tbody, attr, value):
            return drv.find_element(By.CSS_SELECTOR, '#%s tr[data-%s="%s"]' % (tbody, attr, value))

        def sign_in(jid, password):
            for i, v in (('signin-jid', jid), ('signin-password', password)):
                by_id(i).clear()
                by_id(i).send_keys(v)
            by_id('signin-submit').click()

        def type_into(i, value):
            by_id(i).clear()
            by_id(i).send_keys(value)

        await B(drv.get, base + '/admin/?interval=1')
        ok = await until(lambda d: shown('signin-form') and not shown('app'))
        xt.ok(ok, 'the page shows the sign-in form, and nothing else') \
            or xt.diag(browser_log(drv), drv.page_source[:2000])

        # A wrong password: the API's 401, no admin content.
        st, body = api(ip, hp, 'status', {}, 'admin@xmppd.test', 'wrong')
        await B(sign_in, 'admin@xmppd.test', 'wrong')
        err = await until(lambda d: shown('signin-error') and text('signin-error'))
        xt.ok(st == 401 and err and body['error'] in err and '401' in err,
              'a wrong password: the page shows the API\'s 401 text (%r)' % body.get('error')) \
            or xt.diag(st, body, err)
        xt.ok(not await B(shown, 'app') and await B(text, 'ov-version') == ''
              and await B(rows, 'users-rows', 'user') == [],
              'and no admin content')

        # An account of the server that is not an admin: the 403.
        st, body = api(ip, hp, 'status', {}, 'mallory@xmppd.test', 'mallory-pw')
        await B(sign_in, 'mallory@xmppd.test', 'mallory-pw')
        err = await until(lambda d: shown('signin-error') and body['error'] in text('signin-error')
                          and text('signin-error'))
        xt.ok(st == 403 and err and '403' in err and not await B(shown, 'app'),
              'a valid account that is no admin: the API\'s 403 text, no admin content') \
            or xt.diag(st, body, err)

        # The admin.
        await B(sign_in, 'admin@xmppd.test', 'admin-pw')
        v = await until(lambda d: shown('app') and not shown('signin-view') and text('ov-version'))
        xt.is_(v, version, 'the admin signs in: the overview shows the server\'s version')
        xt.ok(await B(text, 'signed-in-as') == 'admin@xmppd.test' and not await B(shown, 'signin-error'),
              'and who is signed in, without the earlier error')
        st, body = api(ip, hp, 'status', {}, 'admin@xmppd.test', 'admin-pw')
        got = await until(lambda d: (text('ov-build'), text('ov-workers')) if text('ov-build') else None)
        xt.is_(got, (body['result']['build'], str(body['result']['workers'])),
               'the overview shows the build and the workers of the status API')

        # --- users ---------------------------------------------------------
        got = await until(lambda d: rows('users-rows', 'user') == ['admin', 'alice', 'bob', 'mallory']
                          and by_id('users-host').get_attribute('value'))
        xt.is_(got, 'xmppd.test', 'users: the accounts of the admin\'s domain, listed')
        await B(type_into, 'users-search', 'ali')
        got = await until(lambda d: rows('users-rows', 'user') == ['alice'])
        xt.ok(got, 'searching "ali" shows alice, not bob') or xt.diag(await B(rows, 'users-rows', 'user'))
        await B(type_into, 'users-search', 'zzz')
        got = await until(lambda d: rows('users-rows', 'user') == [] and shown('users-empty'))
        xt.ok(got, 'a search nothing matches says so') or xt.diag(await B(rows, 'users-rows', 'user'))
        await B(lambda: by_id('users-search').send_keys(Keys.CONTROL, 'a', Keys.BACKSPACE))
        got = await until(lambda d: len(rows('users-rows', 'user')) == 4)
        xt.ok(got, 'an empty search shows them all again')

        await B(type_into, 'create-user', 'carol')
        await B(type_into, 'create-password', 'carol-pw1')
        await B(lambda: by_id('create-submit').click())
        got = await until(lambda d: 'carol' in rows('users-rows', 'user') and text('users-status'))
        xt.is_(got, 'registered carol@xmppd.test', 'create carol: the page says so and lists her')
        c = await xt.login(srv, 'carol', 'carol-pw1')
        xt.ok(c.ok, 'carol logs in with the password given on the page') or xt.diag(c.describe())
        await c.disconnect()

        def set_password(user, pw):
            r = row('users-rows', 'user', user)
            r.find_element(By.CSS_SELECTOR, '.user-passwd').click()
            r.find_element(By.CSS_SELECTOR, '.passwd-input').send_keys(pw)
            r.find_element(By.CSS_SELECTOR, '.passwd-set').click()
        await B(set_password, 'carol', 'carol-pw2')
        got = await until(lambda d: text('users-status') == 'password changed for carol@xmppd.test')
        xt.ok(got, 'change carol\'s password: the page says so') or xt.diag(await B(text, 'users-status'))
        c = await xt.login(srv, 'carol', 'carol-pw2')
        xt.ok(c.ok, 'the new password logs in') or xt.diag(c.describe())
        await c.disconnect()
        c = await xt.login(srv, 'carol', 'carol-pw1')
        xt.is_(c.auth_failure, 'not-authorized', 'the old one no longer does')
        await c.disconnect()

        def delete(user):
            r = row('users-rows', 'user', user)
            r.find_element(By.CSS_SELECTOR, '.user-delete').click()
            r.find_element(By.CSS_SELECTOR, '.delete-confirm').click()
        await B(delete, 'carol')
        got = await until(lambda d: 'carol' not in rows('users-rows', 'user') and text('users-status'))
        xt.is_(got, 'unregistered carol@xmppd.test', 'delete carol (confirmed): the page says so')
        xt.is_(await B(rows, 'users-rows', 'user'), ['admin', 'alice', 'bob', 'mallory'],
               'and she is no longer listed')
        c = await xt.login(srv, 'carol', 'carol-pw2')
        xt.is_(c.auth_failure, 'not-authorized', 'and she can no longer log in')
        await c.disconnect()

        # --- sessions ------------------------------------------------------
        await B(lambda: by_id('sessions-refresh').click())
        want = ['alice@xmppd.test/desk', 'bob@xmppd.test/slix']
        got = await until(lambda d: rows('sessions-rows', 'jid') == want)
        xt.ok(got, 'sessions: the two slixmpp clients, by full JID') \
            or xt.diag(await B(rows, 'sessions-rows', 'jid'))
        addr = await B(lambda: row('sessions-rows', 'jid', want[1]).find_elements(By.TAG_NAME, 'td')[1].text)
        xt.like(addr, r'^127\.', 'with the client\'s address')
        await B(lambda: row('sessions-rows', 'jid', want[1]).find_element(By.CSS_SELECTOR, '.session-kick').click())
        closed = await bob.wait_closed(5)
        xt.ok(closed and bob.stream_error == 'policy-violation',
              'Kick: the slixmpp client is disconnected (policy-violation)') or xt.diag(bob.describe())
        sessions = await srv.wait_connected(lambda ss: [s['jid'] for s in ss] == want[:1], 5)
        xt.is_([s['jid'] for s in sessions or []], want[:1],
               'the server lists alice\'s session only')
        xt.ok(not alice.closed.is_set(), 'alice stayed connected')
        got = await until(lambda d: rows('sessions-rows', 'jid') == want[:1] and text('sessions-status'))
        xt.is_(got, 'kicked bob@xmppd.test/slix', 'the page says so and lists alice only')

        # --- s2s -------------------------------------------------------------
        await B(lambda: by_id('s2s-refresh').click())
        got = await until(lambda d: shown('s2s-empty') and rows('s2s-rows', 'remote') == []
                          and text('s2s-empty'))
        xt.is_(got, 'No server-to-server links.', 's2s: no links, and the page says so')
        dave = await xt.login_ok(peer, 'dave')
        alice.send('dave@peer.test', 'over s2s')
        m = await dave.message(body='over s2s', timeout=10)
        links = await xt.wait_links(srv, lambda ls: xt.s2s_link(ls, 'out', 'xmppd.test', 'peer.test'))
        xt.ok(m is not None and xt.s2s_link(links, 'out', 'xmppd.test', 'peer.test'),
              'set-up: a message to peer.test opens an s2s link') or xt.diag(links)
        await B(lambda: by_id('s2s-refresh').click())

        def link_cells(d):
            r = row('s2s-rows', 'remote', 'peer.test')
            return [td.text for td in r.find_elements(By.TAG_NAME, 'td')]
        cells = await until(link_cells)
        xt.ok(cells and cells[:3] == ['out', 'xmppd.test', 'peer.test'] and cells[5] == 'established'
              and cells[4].startswith('TLS') and int(cells[7]) >= 1 and not await B(shown, 's2s-empty'),
              's2s: then the link: out, xmppd.test to peer.test, TLS, established, stanzas out') \
            or xt.diag(cells)
        st, body = api(ip, hp, 'status', {}, 'admin@xmppd.test', 'admin-pw')
        got = await until(lambda d: text('ov-s2s') == str(body['result']['s2s_connections']))
        xt.ok(got and body['result']['s2s_connections'] >= 1,
              'the overview\'s S2S figure follows the status API (%d)' % body['result']['s2s_connections']) \
            or xt.diag(await B(text, 'ov-s2s'), body)

        # --- modules -------------------------------------------------------
        got = await until(lambda d: sorted(rows('modules-rows', 'module')) == sorted(MODULES))
        xt.ok(got, 'modules: the loaded modules are listed') \
            or xt.diag(await B(rows, 'modules-rows', 'module'))
        await B(lambda: row('modules-rows', 'module', 'mod_roster').find_element(
            By.CSS_SELECTOR, '.module-reload').click())
        got = await until(lambda d: text('modules-status'))
        xt.is_(got, 'reloaded mod_roster', 'Reload mod_roster: the command\'s answer is shown')
        r = await alice.iq('get', None, "<query xmlns='jabber:iq:roster'/>")
        xt.ok(r is not None and r['type'] == 'result', 'and the server still answers a roster get') \
            or xt.diag(r)
        bob = await xt.login(srv, 'bob', resource='slix')
        xt.ok(bob.ok, 'and bob logs in again (the kick did not touch his account)') or xt.diag(bob.describe())

        # --- metrics -------------------------------------------------------
        def samples(name):
            return json.loads(by_id('chart-' + name).get_attribute('data-samples'))

        def snapshots():
            return drv.execute_script('return window.xmppdAdmin.snapshots')
        charts = ('sessions', 'stanzas', 'rss', 'cpu')
        before = await until(lambda d: snapshots()[-1])
        got = await until(lambda d: all(len(samples(n)) >= 2 for n in charts), 15)
        counts = await B(lambda: {n: len(samples(n)) for n in charts})
        xt.ok(got, 'metrics: each chart has 2 samples or more after a few polls') \
            or xt.diag(counts, await B(text, 'metrics-status'))
        ts = [p['t'] for p in await B(samples, 'sessions')]
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        xt.ok(await B(lambda: by_id('interval').get_attribute('value')) == '1'
              and gaps and all(500 <= g <= 2500 for g in gaps),
              '?interval=1 sets the interval shown, and the polls come about 1 s apart') \
            or xt.diag(gaps)
        n = len(await srv.aconnected() or [])
        got = await until(lambda d: text('metric-sessions-total') == str(n)
                          and samples('sessions')[-1]['total'] == n, 5)
        xt.ok(n == 2 and got, 'the sessions the page shows (%d) are the server\'s' % n) \
            or xt.diag(n, await B(text, 'metric-sessions-total'), await B(samples, 'sessions'))
        for i in range(10):
            alice.send(alice.jid, 'tick %d' % i)
        got = await until(lambda d: snapshots()[-1]['stanzasIn'] >= before['stanzasIn'] + 10
                          and any(p['t'] > before['t'] and p['in'] > 0 for p in samples('stanzas')), 5)
        xt.ok(got, 'ten messages sent: the page counts them and the stanza rate goes up') \
            or xt.diag(before, await B(snapshots), await B(samples, 'stanzas'))
        with open('/proc/%d/status' % srv.pid) as f:
            rss = int(re.search(r'VmRSS:\s+(\d+) kB', f.read()).group(1)) / 1024
        page_rss = (await B(samples, 'rss'))[-1]['rss']
        xt.ok(0.7 * rss <= page_rss <= 1.3 * rss,
              'the memory chart shows the process\'s RSS (%.1f MiB, /proc: %.1f)' % (page_rss, rss)) \
            or xt.diag(await B(samples, 'rss'))
        # The rates are the counters' differences over the polls' times,
        # and the counters those of the server's metrics.
        # One script, so that no poll comes between the three reads.
        snaps, st_pts, cpu_pts = await B(drv.execute_script, (
            "const s = (n) => JSON.parse(document.getElementById('chart-' + n).dataset.samples);"
            "return [window.xmppdAdmin.snapshots, s('stanzas'), s('cpu')];"))
        st, body = api(ip, hp, 'metrics', {}, 'admin@xmppd.test', 'admin-pw')
        now = {}
        for line in body['result'].splitlines():
            mm = re.match(r'(xmppd_stanzas_in_total|process_cpu_seconds_total)(\{[^}]*\})? (\S+)$', line)
            if mm:
                now[mm.group(1)] = now.get(mm.group(1), 0) + float(mm.group(3))

        def rates(key, scale):
            return {b['t']: (b[key] - a[key]) / (b['t'] - a['t']) * 1000 * scale
                    for a, b in zip(snaps, snaps[1:])}
        want_in, want_cpu = rates('stanzasIn', 1), rates('cpu', 100)
        xt.ok(len(snaps) >= 3 and snaps[-1]['stanzasIn'] <= now['xmppd_stanzas_in_total']
              and snaps[-1]['cpu'] <= now['process_cpu_seconds_total']
              and all(abs(p['in'] - want_in.get(p['t'], -1)) < 0.01 for p in st_pts)
              and all(abs(p['cpu'] - want_cpu.get(p['t'], -1)) < 0.01 for p in cpu_pts)
              and all(0 <= p['cpu'] <= 100 * os.cpu_count() for p in cpu_pts),
              'the stanza and CPU charts are the rates of the server\'s counters') \
            or xt.diag(snaps[-3:], st_pts[-3:], cpu_pts[-3:], now)

        # The screenshot, with data in every section.
        await B(lambda: by_id('sessions-refresh').click())
        await until(lambda d: len(rows('sessions-rows', 'jid')) == 2)
        hgt = await B(drv.execute_script, 'return document.documentElement.scrollHeight')
        await B(drv.set_window_size, 1280, min(int(hgt) + 140, 3000))
        await asyncio.sleep(1.2)  # a redraw at the new width
        await B(screenshot, drv, 't1860-webadmin')

        # Signing out leaves nothing behind.
        await B(lambda: by_id('signout').click())
        got = await until(lambda d: shown('signin-form') and not shown('app'))
        left = await B(drv.execute_script, "return document.getElementById('app').textContent")
        left = [w for w in ('alice', 'mallory', 'mod_roster', '127.0.0.1', version, 'kicked')
                if w in left]
        xt.ok(got and left == [] and await B(samples, 'sessions') == [],
              'Sign out: the form again, and no account, session, module, version or '
              'metric left in the page, hidden or not') or xt.diag(left)

        # The password changes under a signed-in page: the next poll is
        # refused and the page signs out, saying why.
        await B(sign_in, 'admin@xmppd.test', 'admin-pw')
        await until(lambda d: shown('app') and text('ov-version'))
        code, out, err = await srv.actl('passwd', 'admin', 'xmppd.test', 'admin-pw2')
        got = await until(lambda d: shown('signin-form') and not shown('app')
                          and text('signin-error'), 5)
        xt.is_(got, 'Signed out: wrong user name or password',
               'a password changed meanwhile: the next poll signs the page out, saying why')
        left = await B(drv.execute_script, "return document.getElementById('app').textContent")
        xt.ok(version not in left and 'alice' not in left, 'and takes the data away')

        log = browser_log(drv)
        bad = [m for m in log if 'Content Security Policy' in m or 'Uncaught' in m
               or 'Refused to' in m]
        xt.is_(bad, [], 'no script error or policy violation in the browser\'s log')
    finally:
        await asyncio.to_thread(drv.quit)
        await xt.disconnect_all(alice, bob, dave)
        srv.stop()
        peer.stop()


xt.run(main, timeout=90)
