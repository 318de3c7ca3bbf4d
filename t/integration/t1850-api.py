#!/usr/bin/python3
"""t1850-api: the admin HTTP API (POST /api/COMMAND, doc/admin.md "Admin
HTTP API"): every built-in command and a module's, with their typed JSON
results checked against what happens (an account registered through it
logs in, a kicked session drops, the s2s link to another xmppd is listed);
Basic auth of an admin, a token from `xmppctl api-token` and its
revocation; and the refusals: no or wrong credentials (401 with
WWW-Authenticate), a valid non-admin account (403), an unknown command
(404), GET (405 with Allow), a wrong media type (415), bad JSON and bad
arguments (400), a body over 64 KiB (413), too many failures from one
address. A client stays connected and unaffected throughout; `stop`
answers before the server stops."""

import asyncio
import base64
import hashlib
import http.client
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

MODULES = {'mod_disco': {}, 'mod_roster': {}, 'mod_ping': {}}


def basic(user, password):
    return 'Basic ' + base64.b64encode(('%s:%s' % (user, password)).encode()).decode()


# The reason phrase last seen for each status.
hdrs_reason = {}


def request(ip, port, name, body=None, auth=None, method='POST', ctype='application/json',
         raw=None, source=None, path=None):
    """One request; (status, headers with lowercased names, body parsed as
    JSON, or the raw bytes if it is not JSON)."""
    conn = http.client.HTTPConnection(ip, port, timeout=30,
                                      source_address=(source, 0) if source else None)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {'Host': 'a.test'}
    if ctype is not None and data is not None:
        headers['Content-Type'] = ctype
    if auth is not None:
        headers['Authorization'] = auth
    try:
        conn.request(method, path or '/api/' + name, body=data, headers=headers)
        r = conn.getresponse()
        hdrs_reason[r.status] = r.reason
        text = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return r.status, hdrs, parsed
    except (OSError, http.client.HTTPException) as e:
        return None, {}, str(e)
    finally:
        conn.close()


async def api(*args, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: request(*args, **kw))


def error_of(res):
    """The "error" string of a refusal, or None."""
    st, h, b = res
    return b.get('error') if isinstance(b, dict) and isinstance(b.get('error'), str) else None


async def main():
    d = xt.scratch_dir('t1850-certs')
    xt.make_ca(d, 'ca1')
    a, b = xt.federated_pair(d, 'ca1', 't1850', start=False,
                             modules={'a.test': MODULES, 'b.test': MODULES})
    hp = xt.free_ports(a.ip, 1)[0]
    a.conf['listen'] += [{'port': hp, 'ip': a.ip, 'module': 'http'}]
    a.conf['acl'] = {'admins': {'user': ['admin@a.test', 'slow@a.test']}}
    for s in (a, b):
        s.write_config()
        s.start()
    ip = a.ip
    for u in ('admin', 'alice', 'mallory'):
        a.register(u, u + '-pw')
    b.register('bob', 'bob-pw')
    ADMIN = basic('admin@a.test', 'admin-pw')

    # A user who stays connected through everything below.
    alice = await xt.login_ok(a, 'alice', 'alice-pw', resource='desk')
    bob = await xt.login_ok(b, 'bob', 'bob-pw')
    alice.send('bob@b.test', 'hello over s2s')
    m = await bob.message(body='hello over s2s', timeout=10)
    xt.ok(m is not None, 'set-up: a message from a.test reaches b.test (s2s link up)')

    # --- Tokens: created with xmppctl, shown once, listed without it.
    code, out, err = a.ctl('api-token', 'create', 'web admin')
    tok = out.strip()
    xt.ok(code == 0 and re.fullmatch(r'[A-Za-z0-9_-]{43}', tok) is not None,
          'xmppctl api-token create prints a 43-character base64url token') or xt.diag(code, out, err)
    code, out, err = a.ctl('api-token', 'list')
    rows = [ln.split('\t') for ln in out.splitlines() if ln]
    xt.ok(code == 0 and len(rows) == 1 and rows[0][0] == '1' and rows[0][2] == 'web admin'
          and re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', rows[0][1]) is not None
          and tok not in out,
          'api-token list: id, creation time, comment, and never the token') or xt.diag(out, err)
    BEARER = 'Bearer ' + tok
    rows = xt.store_rows(a, 'api_tokens')
    xt.ok(len(rows) == 1 and rows[0][0] == (1).to_bytes(8, 'big')
          and rows[0][1][0] == 1 and rows[0][1][1:33] == hashlib.sha256(tok.encode()).digest()
          and rows[0][1].endswith(b'web admin') and tok.encode() not in rows[0][1],
          'the store keeps the token\'s SHA-256, not the token (api_tokens, key 1)') or xt.diag(rows)

    # --- status (typed), with the token.
    st, h, body = await api(ip, hp, 'status', {}, auth=BEARER)
    code, out, err = a.ctl('status')
    ver = re.match(r'running xmppd (\S+),', out)
    res = body.get('result') if isinstance(body, dict) else None
    xt.ok(st == 200 and h.get('content-type', '').startswith('application/json')
          and isinstance(res, dict) and ver is not None and res.get('version') == ver.group(1)
          and isinstance(res.get('build'), str) and isinstance(res.get('uptime'), int)
          and res.get('sessions') == 1 and isinstance(res.get('workers'), int),
          'status with a bearer token: 200, {"result": {version, build, uptime, sessions: 1, ...}}') \
        or xt.diag(st, h, body, out)
    st, h, body = await api(ip, hp, 'status', auth=BEARER)
    xt.ok(st == 200 and isinstance(body.get('result'), dict),
          'a request without a body runs the command without arguments') or xt.diag(st, body)

    # --- register, users, passwd (Basic auth as an admin).
    st, h, body = await api(ip, hp, 'register', {'user': 'carol', 'host': 'a.test',
                                                 'password': 'carol-pw'}, auth=ADMIN)
    xt.ok(st == 200 and body == {'result': 'registered carol@a.test\n'},
          'register as admin (Basic): 200 {"result": "registered carol@a.test\\n"}') \
        or xt.diag(st, body)
    st, h, body = await api(ip, hp, 'register', {'user': 'carol', 'host': 'a.test',
                                                 'password': 'x'}, auth=ADMIN)
    xt.ok(st == 400 and 'already exists' in (error_of((st, h, body)) or ''),
          'register an existing account: 400 {"error": "... already exists"}') or xt.diag(st, body)
    st, h, body = await api(ip, hp, 'users', {'host': 'a.test'}, auth=ADMIN)
    xt.is_(body.get('result') if st == 200 else (st, body),
           ['admin', 'alice', 'carol', 'mallory'], 'users: the localparts, carol among them')
    st, h, body = await api(ip, hp, 'passwd', {'user': 'carol', 'host': 'a.test',
                                               'password': 'carol-new'}, auth=ADMIN)
    xt.ok(st == 200 and body == {'result': 'password changed for carol@a.test\n'},
          'passwd: 200') or xt.diag(st, body)
    c = await xt.login(a, 'carol', 'carol-pw')
    xt.is_(c.auth_failure, 'not-authorized', 'after passwd the old password fails')
    await c.disconnect()
    carol = await xt.login(a, 'carol', 'carol-new', resource='phone')
    xt.ok(carol.ok, 'after passwd carol logs in with the new password') or xt.diag(carol.describe())

    # --- connected (typed), kick.
    st, h, body = await api(ip, hp, 'connected', {}, auth=ADMIN)
    res = body.get('result') if st == 200 else None
    byjid = {s.get('jid'): s for s in res or [] if isinstance(s, dict)}
    sa = byjid.get('alice@a.test/desk', {})
    xt.ok(set(byjid) == {'alice@a.test/desk', 'carol@a.test/phone'}
          and isinstance(sa.get('worker'), int) and sa.get('address', '').startswith('127.')
          and sa.get('priority') == 0,
          'connected: [{"jid", "worker", "address", "priority"}] for alice and carol') \
        or xt.diag(st, body)
    st, h, body = await api(ip, hp, 'kick', {'jid': 'carol@a.test/phone'}, auth=ADMIN)
    xt.ok(st == 200 and body == {'result': 'kicked carol@a.test/phone\n'}, 'kick: 200') \
        or xt.diag(st, body)
    xt.ok(await carol.wait_closed(5), 'kick: carol\'s stream is closed')
    st, h, body = await api(ip, hp, 'connected', {}, auth=ADMIN)
    xt.is_([s['jid'] for s in body.get('result', [])] if st == 200 else (st, body),
           ['alice@a.test/desk'], 'connected after the kick lists alice only')
    st, h, body = await api(ip, hp, 'kick', {'jid': 'carol@a.test/phone'}, auth=ADMIN)
    xt.ok(st == 400 and 'no session' in (error_of((st, h, body)) or ''),
          'kick a JID without a session: 400 with the reason') or xt.diag(st, body)

    # --- metrics: the text of GET /metrics, for the web admin's charts.
    st, h, body = await api(ip, hp, 'metrics', {}, auth=ADMIN)
    txt = body.get('result') if st == 200 and isinstance(body, dict) else None
    xt.ok(isinstance(txt, str) and
          re.search(r'(?m)^xmppd_sessions\{transport="tcp"\} \d+$', txt) and
          re.search(r'(?m)^process_resident_memory_bytes \d+$', txt) and
          '# TYPE xmppd_stanzas_in_total counter' in txt,
          'metrics: {"result": the Prometheus text format (sessions, stanzas, RSS)}') \
        or xt.diag(st, str(body)[:500])

    st, h, body = await api(ip, hp, 'module_list', {}, auth=ADMIN)
    mods = {m.get('name'): m for m in body.get('result', [])} if st == 200 else {}
    xt.ok(set(mods) == {'mod_disco', 'mod_roster', 'mod_ping'}
          and mods['mod_ping'].get('path', '').endswith('/mod_ping.so')
          and isinstance(mods['mod_ping'].get('version'), str),
          'module_list: [{"name", "version", "path"}] of the loaded modules') or xt.diag(st, body)
    st, h, body = await api(ip, hp, 'module_reload', {'name': 'mod_ping'}, auth=ADMIN)
    xt.ok(st == 200 and body == {'result': 'reloaded mod_ping\n'}, 'module_reload mod_ping: 200') \
        or xt.diag(st, body)
    st, h, body = await api(ip, hp, 'module_unload', {'name': 'mod_nosuch'}, auth=ADMIN)
    xt.ok(st == 400 and error_of((st, h, body)), 'module_unload of a module not loaded: 400') \
        or xt.diag(st, body)
    st, h, body = await api(ip, hp, 'roster_add', {'args': ['alice', 'a.test', 'bob@b.test', 'Bob']},
                            auth=ADMIN)
    xt.ok(st == 200, 'a module\'s command (roster add) with {"args": [...]}: 200') or xt.diag(st, body)
    st, h, body = await api(ip, hp, 'roster_list', {'args': ['alice', 'a.test']}, auth=ADMIN)
    code, out, err = a.ctl('roster', 'list', 'alice', 'a.test')
    xt.ok(st == 200 and body == {'result': out} and 'bob@b.test' in out,
          'roster_list: {"result": the text xmppctl prints}') or xt.diag(st, body, out)

    # --- s2s (typed), components (no output: null).
    st, h, body = await api(ip, hp, 's2s', {}, auth=ADMIN)
    links = body.get('result') if st == 200 else None
    out_link = [l for l in links or [] if l.get('direction') == 'out' and l.get('remote') == 'b.test']
    xt.ok(len(out_link) == 1 and out_link[0].get('local') == 'a.test'
          and out_link[0].get('state') == 'established'
          and isinstance(out_link[0].get('stanzas_out'), int) and out_link[0]['stanzas_out'] >= 1,
          's2s: [{"direction": "out", "local": "a.test", "remote": "b.test", "state": '
          '"established", "stanzas_out": N, ...}]') or xt.diag(st, body)
    st, h, body = await api(ip, hp, 'components', {}, auth=ADMIN)
    xt.ok(st == 200 and body == {'result': None}, 'components with none connected: {"result": null}') \
        or xt.diag(st, body)
    st, h, body = await api(ip, hp, 'reload', {}, auth=ADMIN)
    xt.ok(st == 200 and body == {'result': 'configuration reloaded\n'}, 'reload: 200') \
        or xt.diag(st, body)

    # --- positional arguments, unregister.
    st, h, body = await api(ip, hp, 'register', {'args': ['dave', 'a.test', 'dave-pw']}, auth=ADMIN)
    xt.ok(st == 200 and body == {'result': 'registered dave@a.test\n'},
          'register with {"args": [user, host, password]}: 200') or xt.diag(st, body)
    st, h, body = await api(ip, hp, 'unregister', {'user': 'carol', 'host': 'a.test'}, auth=ADMIN)
    xt.ok(st == 200 and body == {'result': 'unregistered carol@a.test\n'}, 'unregister: 200') \
        or xt.diag(st, body)
    st, h, body = await api(ip, hp, 'users', {'host': 'a.test'}, auth=ADMIN)
    xt.is_(body.get('result') if st == 200 else (st, body), ['admin', 'alice', 'dave', 'mallory'],
           'users after unregister carol, register dave')

    # --- Refusals.
    def is_401(res):
        st, h, b = res
        return st == 401 and h.get('www-authenticate') == 'Basic realm="xmppd"' \
            and error_of(res) is not None
    res = await api(ip, hp, 'status', {})
    xt.ok(is_401(res), 'no credentials: 401, WWW-Authenticate: Basic realm="xmppd", {"error"}') \
        or xt.diag(res)
    res = await api(ip, hp, 'status', {}, auth=basic('admin@a.test', 'wrong'))
    xt.ok(is_401(res), 'an admin with a wrong password: 401') or xt.diag(res)
    res = await api(ip, hp, 'status', {}, auth=basic('nobody@a.test', 'x'))
    xt.ok(is_401(res), 'an account that does not exist: 401') or xt.diag(res)
    res = await api(ip, hp, 'status', {}, auth='Basic !!not-base64!!')
    xt.ok(is_401(res), 'malformed Basic credentials: 401') or xt.diag(res)
    res = await api(ip, hp, 'register', {'user': 'eve', 'host': 'a.test', 'password': 'x'},
                    auth=basic('mallory@a.test', 'mallory-pw'))
    xt.ok(res[0] == 403 and error_of(res) == 'mallory@a.test is not allowed to use the admin '
          'API (not in the acl admins)',
          'a valid account outside the admins acl: 403 {"error"} that names the acl') \
        or xt.diag(res)
    res = await api(ip, hp, 'users', {'host': 'a.test'}, auth=ADMIN)
    xt.ok(res[0] == 200 and 'eve' not in res[2]['result'], 'the refused register did nothing') \
        or xt.diag(res)
    # A configured api_access rule decides instead of the acl admins.
    a.conf['acl']['ops'] = {'user': ['mallory@a.test']}
    a.conf['access_rules'] = {'api_access': [{'allow': 'ops'}]}
    a.write_config()
    code, out, err = a.ctl('reload')
    res = await api(ip, hp, 'status', {}, auth=basic('mallory@a.test', 'mallory-pw'))
    res2 = await api(ip, hp, 'status', {}, auth=ADMIN)
    xt.ok(code == 0 and res[0] == 200 and res2[0] == 403 and
          (error_of(res2) or '').endswith('(access rule api_access)'),
          'api_access: [allow: ops] lets mallory (in ops) in and keeps admin out (403, '
          'naming the rule)') \
        or xt.diag(code, err, res, res2)
    del a.conf['acl']['ops']
    del a.conf['access_rules']
    a.write_config()
    code, out, err = a.ctl('reload')
    res = await api(ip, hp, 'status', {}, auth=ADMIN)
    xt.ok(code == 0 and res[0] == 200, 'without the rule again, admin is let in') or xt.diag(err, res)
    res = await api(ip, hp, 'status', {}, auth='Bearer ' + tok[:-1] + ('A' if tok[-1] != 'A' else 'B'))
    xt.ok(is_401(res), 'a wrong token: 401') or xt.diag(res)
    res = await api(ip, hp, 'nosuch', {}, auth=ADMIN)
    xt.ok(res[0] == 404 and error_of(res) is not None, 'an unknown command: 404 {"error"}') \
        or xt.diag(res)
    res = await api(ip, hp, 'module', {'args': ['list']}, auth=ADMIN)
    xt.ok(res[0] == 404, 'a built-in word that is not an API name (module): 404') or xt.diag(res)
    res = await api(ip, hp, 'status', auth=ADMIN, method='GET')
    xt.ok(res[0] == 405 and res[1].get('allow') == 'POST' and error_of(res) is not None,
          'GET: 405, Allow: POST, {"error"}') or xt.diag(res)
    res = await api(ip, hp, 'status', raw=b'{}', ctype='text/plain', auth=ADMIN)
    xt.ok(res[0] == 415 and error_of(res) is not None, 'Content-Type text/plain: 415') \
        or xt.diag(res)
    res = await api(ip, hp, 'status', raw=b'{}', ctype='application/json; charset=utf-8',
                    auth=ADMIN)
    xt.is_(res[0], 200, 'application/json with a charset parameter is accepted')
    res = await api(ip, hp, 'users', raw=b'{"host": "a.te', auth=ADMIN)
    xt.ok(res[0] == 400 and (error_of(res) or '').startswith('invalid JSON'),
          'malformed JSON: 400 {"error": "invalid JSON: ..."}') or xt.diag(res)
    res = await api(ip, hp, 'users', raw=b'["a.test"]', auth=ADMIN)
    xt.ok(res[0] == 400 and error_of(res) == 'the body must be a JSON object',
          'a JSON array instead of an object: 400 "the body must be a JSON object"') or xt.diag(res)
    res = await api(ip, hp, 'users', raw=b'[' * 60000, auth=ADMIN)
    xt.ok(res[0] == 400 and (error_of(res) or '').startswith('invalid JSON'),
          '60000 nested arrays: 400 (the parser\'s depth bound)') or xt.diag(res)
    res = await api(ip, hp, 'users', raw=b'{"host": "a.\xff\xfe"}', auth=ADMIN)
    xt.ok(res[0] == 400 and (error_of(res) or '').startswith('invalid JSON'),
          'invalid UTF-8: 400') or xt.diag(res)
    res = await api(ip, hp, 'status', {}, auth='Basic ' + 'QUFB' * 400)
    xt.ok(is_401(res), 'a 1600-byte Basic credential: 401') or xt.diag(res)
    res = await api(ip, hp, 'users', raw=b'{"host": "a.test", "host": "b.test"}', auth=ADMIN)
    xt.is_(res[0], 400, 'a key given twice: 400')
    res = await api(ip, hp, 'register', {'user': 'eve'}, auth=ADMIN)
    xt.ok(res[0] == 400 and 'host' in (error_of(res) or ''), 'a missing named argument: 400 naming it') \
        or xt.diag(res)
    res = await api(ip, hp, 'users', {'host': ['a.test']}, auth=ADMIN)
    xt.is_(res[0], 400, 'an argument that is not a string: 400')
    res = await api(ip, hp, 'users', {'host': 'a.test\u0000x'}, auth=ADMIN)
    xt.ok(res[0] == 400 and (error_of(res) or '').startswith('invalid JSON'),
          'an argument with a NUL character (\\u0000): 400') or xt.diag(res)
    res = await api(ip, hp, 'users', {'args': ['x'] * 40}, auth=ADMIN)
    xt.is_(res[0], 400, 'too many positional arguments: 400')
    res = await api(ip, hp, 'users', {'args': []}, auth=ADMIN)
    xt.ok(res[0] == 400 and 'usage' in (error_of(res) or ''), 'wrong argument count: 400 with the usage') \
        or xt.diag(res)
    res = await api(ip, hp, 'users', raw=b'{"host": "' + b'x' * 70000 + b'"}', auth=ADMIN)
    xt.ok(res[0] == 413 and error_of(res) is not None, 'a 70 KB body (over 64 KiB): 413 {"error"}') \
        or xt.diag(res[0], res[1])

    # --- Clients that leave before their answer: the main thread works
    # through the jobs one by one (each a key derivation, made slow here
    # with many iterations), the later ones find nobody.
    a.conf['scram_iterations'] = 200000
    a.write_config()
    a.ctl('reload')
    a.register('slow', 'slow-pw')
    a.conf['scram_iterations'] = 4096
    a.write_config()
    a.ctl('reload')
    req = ('POST /api/users HTTP/1.1\r\nHost: a.test\r\nAuthorization: %s\r\n'
           'Content-Type: application/json\r\nContent-Length: 18\r\n\r\n{"host": "a.test"}'
           % basic('slow@a.test', 'slow-pw')).encode()
    conns = []
    for i in range(8):
        r, w = await asyncio.open_connection(ip, hp)
        w.write(req)
        conns.append(w)
    await asyncio.gather(*(w.drain() for w in conns))
    await asyncio.sleep(0.1)
    for w in conns:
        w.transport.abort()
    for _ in range(50):
        if 'the client left before the answer' in a.log():
            break
        await asyncio.sleep(0.1)
    xt.ok('the client left before the answer' in a.log(),
          'jobs whose client left are dropped on their worker (log)')
    res = await api(ip, hp, 'status', {}, auth=ADMIN)
    xt.is_(res[0], 200, 'and the API answers the next request')

    # --- Revocation.
    code, out, err = a.ctl('api-token', 'revoke', '1')
    xt.ok(code == 0, 'api-token revoke 1') or xt.diag(out, err)
    res = await api(ip, hp, 'status', {}, auth=BEARER)
    xt.ok(is_401(res), 'the revoked token: 401') or xt.diag(res)
    code, out, err = a.ctl('api-token', 'list')
    xt.ok(code == 0 and out == '', 'api-token list is empty after the revocation') or xt.diag(out)
    code, out, err = a.ctl('api-token', 'revoke', '1')
    xt.ok(code == 1 and 'no token 1' in err, 'revoking it again fails: no token 1') or xt.diag(code, err)
    code, out, err = a.ctl('api-token', 'create')
    tok2 = out.strip()
    res = await api(ip, hp, 'status', {}, auth='Bearer ' + tok2)
    xt.ok(code == 0 and res[0] == 200, 'a second token (no comment) works') or xt.diag(out, res)
    code, out, err = a.ctl('api-token', 'list')
    xt.ok(out.startswith('2\t'), 'it has the next id (2)') or xt.diag(out)

    # --- Failed attempts from one address are bounded.
    other = xt.pick_loopback_ip(exclude=(a.ip, b.ip))
    for i in range(20):
        res = await api(ip, hp, 'status', {}, auth='Bearer wrong%d' % i, source=other)
    res = await api(ip, hp, 'status', {}, auth=ADMIN, source=other)
    xt.ok(is_401(res) and 'too many' in error_of(res),
          'after 20 failures from one address even right credentials get 401 from it') or xt.diag(res)
    res = await api(ip, hp, 'status', {}, auth=ADMIN)
    xt.is_(res[0], 200, 'other addresses are not affected')

    xt.is_({k: hdrs_reason.get(k) for k in (400, 401, 403, 404, 405, 413, 415)},
           {400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
            405: 'Method Not Allowed', 413: 'Content Too Large', 415: 'Unsupported Media Type'},
           'each refusal has its reason phrase (RFC 9110 15)')

    # alice was there all along.
    xt.ok(not alice.closed.is_set(), 'alice\'s session stayed up throughout')
    alice.send('bob@b.test', 'still here')
    m = await bob.message(body='still here', timeout=10)
    xt.ok(m is not None, 'and her messages still reach bob')

    # --- stop: answered, then the server stops.
    res = await api(ip, hp, 'stop', {}, auth=ADMIN)
    xt.ok(res[0] == 200 and res[2] == {'result': 'stopping\n'}, 'stop: 200 {"result": "stopping\\n"}') \
        or xt.diag(res)
    code = await a.await_exit(15)
    xt.is_(code, 0, 'and then xmppd exits with status 0')

    # Tokens are in the store: they outlive a restart, revocations too.
    a.start()
    res = await api(ip, hp, 'status', {}, auth='Bearer ' + tok2)
    xt.is_(res[0], 200, 'after a restart the second token still works')
    res = await api(ip, hp, 'status', {}, auth=BEARER)
    xt.ok(is_401(res), 'and the revoked one is still refused') or xt.diag(res)
    await xt.disconnect_all(alice, bob)
    for s in (a, b):
        s.teardown()


xt.run(main)
