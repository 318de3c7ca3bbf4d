#!/usr/bin/python3
"""t1870-webchat: the web chat at /chat (Converse.js from npm, fetched by
`make conversejs` into the build directory) on a plain HTTP listener.

Over HTTP: the page names the listener's own WebSocket and the host as the
default domain, with its security headers; the dist/ files are served with
their types, an ETag and 304 on revalidation, no traversal, no listing, GET
and HEAD only. In headless Chromium: a user fills Converse.js's login form,
opens the chat with a slixmpp client from the roster (xmppctl roster add),
sends a message that the slixmpp client receives, and sees the slixmpp
client's reply on the page. A screenshot is kept. Without Converse.js, /chat answers 503 with a clear text; with
`web_chat: false` it is not there (404).
"""

import asyncio
import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402
from xt_browser import browser, browser_log, get, have_driver, screenshot, wait_for  # noqa: E402

DIST = xt.TOP_BUILDDIR / 'conversejs' / 'node_modules' / 'converse.js' / 'dist'


async def main():
    if not (DIST / 'converse.min.js').exists():
        if shutil.which('npm') is None:
            xt.skip('npm is not installed and Converse.js was not fetched')
            return
        xt.ok(False, 'Converse.js is fetched into the build directory (make conversejs)')
        return
    if not have_driver():
        xt.ok(False, 'chromium-driver is installed (tools/quickstart TEST_PACKAGES)')
        return

    # The modules of conf/xmppd.yml that Converse.js uses at login.
    usual = ('mod_disco', 'mod_roster', 'mod_offline', 'mod_ping', 'mod_version',
             'mod_vcard', 'mod_private', 'mod_blocking', 'mod_carbons', 'mod_csi',
             'mod_mam', 'mod_caps', 'mod_pubsub')
    srv = xt.Server(workers=2, start=False, modules={m: {} for m in usual})
    (hp,) = xt.free_ports(srv.ip, 1)
    srv.conf['listen'] += [{'port': hp, 'ip': srv.ip, 'module': 'http'}]
    srv.conf['conversejs_path'] = str(DIST)
    srv.write_config()
    srv.start()
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    rc, out, err = srv.ctl('roster', 'add', 'alice', 'xmppd.test', 'bob@xmppd.test', 'Bob',
                           'Friends')
    if rc != 0:
        raise xt.HarnessError('xmppctl roster add: %s %s' % (out, err))
    base = 'http://%s:%d' % (srv.ip, hp)

    # --- the page, over HTTP ----------------------------------------------
    st, h, body = get(srv.ip, hp, '/chat')
    page = body.decode('utf-8', 'replace')
    xt.is_((st, h.get('content-type')), (200, 'text/html; charset=utf-8'), '/chat is an HTML page')
    m = re.search(r'<script type="application/json" id="xmppd-chat-config">(.*?)</script>', page)
    cfg = json.loads(m.group(1)) if m else {}
    xt.is_((cfg.get('websocket_url'), cfg.get('default_domain'), cfg.get('view_mode'),
            cfg.get('auto_login'), cfg.get('assets_path')),
           ('ws://%s:%d/xmpp-websocket' % (srv.ip, hp), 'xmppd.test', 'fullscreen', False,
            base + '/chat/dist/'),
           'the page starts Converse.js on this listener\'s WebSocket, for this host') \
        or xt.diag(page[:2000])
    xt.ok('/chat/dist/converse.min.js' in page and '/chat/init.js' in page and
          '/chat/dist/converse.min.css' in page, 'the page loads converse.min.js/.css and init.js')
    csp = h.get('content-security-policy', '')
    xt.ok("script-src 'self'" in csp and "frame-ancestors 'none'" in csp and
          h.get('x-frame-options') == 'DENY' and h.get('x-content-type-options') == 'nosniff',
          'the page has a CSP (scripts of its own origin only), no framing, nosniff') \
        or xt.diag(h)
    # The Host names the URLs: another name of ours, another base.
    st, h, body = get(srv.ip, hp, '/chat', headers={'Host': 'xmppd.test:%d' % hp})
    xt.like(body.decode(), r'"websocket_url":"ws:\\/\\/xmppd\.test:%d\\/xmpp-websocket"' % hp,
            'the WebSocket URL follows the Host the browser used ("/" escaped in the JSON)')
    st, h, body = get(srv.ip, hp, '/chat', headers={'Host': 'evil"><script>'})
    xt.is_(st, 400, 'a Host that is no plain authority gets 400, not a page built from it')

    # --- the dist/ files ----------------------------------------------------
    st, h, body = get(srv.ip, hp, '/chat/dist/converse.min.js')
    want = (DIST / 'converse.min.js').read_bytes()
    xt.is_((st, h.get('content-type'), body == want),
           (200, 'text/javascript; charset=utf-8', True), 'converse.min.js is served whole')
    etag = h.get('etag')
    xt.ok(etag is not None and h.get('last-modified') is not None and
          'max-age' in h.get('cache-control', ''), 'with an ETag, Last-Modified, Cache-Control') \
        or xt.diag(h)
    st, h2, body = get(srv.ip, hp, '/chat/dist/converse.min.js', headers={'If-None-Match': etag})
    xt.is_((st, body, 'content-length' in h2, h2.get('etag')), (304, b'', False, etag),
           'If-None-Match with its ETag: 304, no content (RFC 9110 13.1.2, 15.4.5)')
    st, h2, body = get(srv.ip, hp, '/chat/dist/converse.min.js',
                       headers={'If-Modified-Since': h['last-modified']})
    xt.is_(st, 304, 'If-Modified-Since its Last-Modified: 304')
    st, h2, body = get(srv.ip, hp, '/chat/dist/converse.min.js', method='HEAD')
    xt.is_((st, h2.get('content-length'), body), (200, str(len(want)), b''),
           'HEAD: the length of GET, no content')
    lazy = sorted(p.relative_to(DIST).as_posix() for p in (DIST / 'chunkjs').rglob('*.js'))[:1]
    lazy += ['emoji.json', 'converse.min.css']
    got = [get(srv.ip, hp, '/chat/dist/' + p)[:2] for p in lazy]
    xt.ok(all(s == 200 for s, _ in got) and got[-1][1].get('content-type', '').startswith('text/css')
          and got[-2][1].get('content-type') == 'application/json',
          'the assets Converse.js loads lazily are served (a locale chunk, emojis, the CSS)') \
        or xt.diag(lazy, got)
    for path, why in (('/chat/dist/%2e%2e/%2e%2e/xmppd.yml', 'escaped dot segments'),
                      ('/chat/dist/../../../../etc/passwd', 'dot segments'),
                      ('/chat/dist/chunkjs%2fconverse.min.js', 'an escaped slash'),
                      ('/chat/dist/', 'a directory without index.html (no listing)'),
                      ('/chat/dist/converse.min.js.map', 'a source map (not loaded)'),
                      ('/chat/nothing', 'a path that is nothing')):
        st, h2, body = get(srv.ip, hp, path)
        xt.is_(st, 404, '404 for %s' % why)
    st, h2, body = get(srv.ip, hp, '/chat', method='POST')
    xt.is_((st, h2.get('allow')), (405, 'GET, HEAD'), 'POST /chat: 405 with Allow')

    # --- a user in Chromium ---------------------------------------------
    bob = await xt.login_ok(srv, 'bob', resource='slix')
    drv = await asyncio.to_thread(browser)
    try:
        await asyncio.to_thread(drv.get, base + '/chat')
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        def form(d):
            u = d.find_elements(By.CSS_SELECTOR, 'converse-login-form input[name="jid"]')
            p = d.find_elements(By.CSS_SELECTOR, 'converse-login-form input[name="password"]')
            return (u[0], p[0]) if u and p and u[0].is_displayed() else None
        f = await asyncio.to_thread(wait_for, drv, form, 30)
        xt.ok(f is not None, 'Converse.js shows its login form') or \
            xt.diag(browser_log(drv), drv.page_source[:3000])
        if f is None:
            return

        def fill(d):
            f[0].send_keys('alice@xmppd.test')
            f[1].send_keys('alice-pw' + Keys.ENTER)
        await asyncio.to_thread(fill, drv)

        def logged_in(d):
            return not d.find_elements(By.CSS_SELECTOR, 'converse-login-form') and \
                d.find_elements(By.CSS_SELECTOR, 'converse-roster')
        ok = await asyncio.to_thread(wait_for, drv, logged_in, 30)
        def alice_on(ss):
            return any(x['jid'].startswith('alice@xmppd.test/') for x in ss or [])
        sess = await srv.wait_connected(alice_on, timeout=10)
        sess = alice_on(sess) and sess
        xt.ok(ok and sess, 'the user is logged in, over the WebSocket (xmppctl connected)') \
            or xt.diag(browser_log(drv), sess)

        # The user opens the chat from the roster (bob was added with
        # xmppctl roster add, both ways) and writes first: a message to
        # a page that is still starting is lost to Converse.js (its
        # message handlers are registered only once the presences are in).
        def contact(d):
            a = d.find_elements(By.CSS_SELECTOR, 'converse-roster a.open-chat[data-jid="bob@xmppd.test"]')
            return a[0] if a and a[0].is_displayed() else None
        a = await asyncio.to_thread(wait_for, drv, contact, 20)
        xt.ok(a is not None, 'the roster on the page lists bob (xmppctl roster add)') \
            or xt.diag(browser_log(drv), drv.page_source[:3000])
        if a is None:
            return
        await asyncio.to_thread(a.click)

        def textarea(d):
            t = d.find_elements(By.CSS_SELECTOR, 'converse-chats textarea.chat-textarea')
            return t[0] if t and t[0].is_displayed() else None
        ta = await asyncio.to_thread(wait_for, drv, textarea, 20)
        xt.ok(ta is not None, 'a click on bob opens the chat with him') \
            or xt.diag(browser_log(drv))
        if ta is None:
            return
        await asyncio.to_thread(ta.send_keys, 'hello bob, from the web chat' + Keys.ENTER)
        m = await bob.message(body='hello bob, from the web chat', timeout=10)
        xt.ok(m is not None and str(m['from']).startswith('alice@xmppd.test/'),
              'the slixmpp client receives the message typed on the page, from alice') \
            or xt.diag(browser_log(drv))
        bob.send('alice@xmppd.test', 'hi alice, slixmpp here')

        def reply(d):
            return any('hi alice, slixmpp here' in e.text for e in
                       d.find_elements(By.CSS_SELECTOR, 'converse-chats converse-chat-message, converse-chats .chat-msg'))
        seen = await asyncio.to_thread(wait_for, drv, reply, 15)
        xt.ok(seen, 'the reply of the slixmpp client shows on the page') \
            or xt.diag(browser_log(drv))
    finally:
        # For a person to look at, whatever happened above.
        await asyncio.to_thread(screenshot, drv, 't1870-webchat')
        await asyncio.to_thread(drv.quit)
        await xt.disconnect_all(bob)
        srv.stop()

    # --- without Converse.js, and switched off ---------------------------
    empty = srv.dir / 'empty'
    empty.mkdir()
    srv.conf['conversejs_path'] = str(empty)
    srv.write_config()
    srv.start()
    st, h, body = get(srv.ip, hp, '/chat')
    xt.ok(st == 503 and b'Converse.js is not installed' in body,
          'no Converse.js: /chat answers 503 and says why') or xt.diag(st, body)
    srv.stop()
    srv.conf['web_chat'] = False
    srv.write_config()
    srv.start()
    st, h, body = get(srv.ip, hp, '/chat')
    xt.is_(st, 404, 'web_chat: false: there is no /chat')
    srv.stop()


xt.run(main, timeout=240)
