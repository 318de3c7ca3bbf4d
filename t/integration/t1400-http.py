#!/usr/bin/python3
"""t1400-http: the HTTP listener (module: http): keep-alive and pipelining,
routing, its limits answered with their status while a chat on another
connection goes on, hostile input, and XEP-0156 host-meta."""

import asyncio
import json
import os
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402


async def connect(ip, port, tls=False, local=None):
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return await asyncio.open_connection(ip, port, ssl=ctx,
                                         local_addr=(local, 0) if local else None)


async def response(reader, timeout=5, is_head=False):
    """(status, headers, body) of the next response; (None, {}, b'') at
    EOF or timeout. is_head: the answer to a HEAD, whose body is not read."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b'\r\n\r\n'), timeout)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError,
            asyncio.LimitOverrunError):
        return None, {}, b''
    lines = head.decode('latin-1').split('\r\n')
    headers = {}
    for ln in lines[1:]:
        if ':' in ln:
            k, v = ln.split(':', 1)
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get('content-length', '0'))
    body = b''
    if n and not is_head:
        try:
            body = await asyncio.wait_for(reader.readexactly(n), timeout)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
    return int(lines[0].split()[1]), headers, body


async def request(ip, port, raw, tls=False, timeout=5):
    r, w = await connect(ip, port, tls)
    w.write(raw if isinstance(raw, bytes) else raw.encode())
    res = await response(r, timeout)
    w.close()
    return res


async def eof_within(reader, timeout):
    """True if the server closes (EOF) within timeout seconds."""
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout)
        while data:
            data = await asyncio.wait_for(reader.read(65536), timeout)
        return True
    except (asyncio.TimeoutError, ConnectionError):
        return False


async def chat_ok(alice, bob, tag):
    alice.send(bob.jid, 'chat during %s' % tag)
    m = await bob.message(body='chat during %s' % tag, timeout=5)
    return m is not None


async def main():
    moddir = xt.scratch_dir('t1400-modules')
    xt.build_test_module(moddir, 'mod_httptest')
    srv = xt.Server(workers=2, start=False, conf={'module_dir': str(moddir)}, modules={})
    hp, hsp = xt.free_ports(srv.ip, 2)
    srv.conf['listen'] += [
        {'port': hp, 'ip': srv.ip, 'module': 'http'},
        {'port': hsp, 'ip': srv.ip, 'module': 'http', 'tls': True},
    ]
    srv.conf.update({'trusted_proxies': ['127.0.0.1/32'],
                     'http_max_header_size': 2048, 'http_max_body_size': 4096,
                     'http_request_timeout': 2, 'http_idle_timeout': 3})
    srv.write_config()
    srv.start()
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw')

    # Keep-alive and pipelining (RFC 9112 9.3): two requests on one
    # connection, then two in one write, answered in order.
    r, w = await connect(srv.ip, hp)
    w.write(b'GET /.well-known/host-meta HTTP/1.1\r\nHost: xmppd.test\r\n\r\n')
    s1 = await response(r)
    w.write(b'GET /nothing-here HTTP/1.1\r\nHost: xmppd.test\r\n\r\n')
    s2 = await response(r)
    w.write(b'GET /a HTTP/1.1\r\nHost: xmppd.test\r\n\r\n'
            b'GET /.well-known/host-meta.json HTTP/1.1\r\nHost: xmppd.test\r\n\r\n')
    s3 = await response(r)
    s4 = await response(r)
    xt.is_((s1[0], s2[0], s3[0], s4[0], s4[1].get('content-type')),
           (200, 404, 404, 200, 'application/json'),
           'keep-alive: four requests on one connection (two pipelined), answered in order; '
           'an unknown path is 404')
    # The kept-alive connection idles out after http_idle_timeout (3 s;
    # longer than http_request_timeout, 2 s, so that the two differ).
    t0 = time.monotonic()
    idle_closed = await eof_within(r, 8)
    xt.ok(idle_closed and 2.5 <= time.monotonic() - t0 < 5.5,
          'an idle kept-alive connection is closed after http_idle_timeout (%.1f s)'
          % (time.monotonic() - t0))
    w.close()

    # HTTP/1.0 without keep-alive: answered, then closed.
    r, w = await connect(srv.ip, hp)
    w.write(b'GET /.well-known/host-meta HTTP/1.0\r\nHost: xmppd.test\r\n\r\n')
    st = await response(r)
    xt.ok(st[0] == 200 and await eof_within(r, 2), 'HTTP/1.0: answered and closed')
    w.close()

    # --- limits, each with its status, while the chat goes on -------------
    big = 'X-Filler: ' + 'a' * 3000 + '\r\n'
    st = await request(srv.ip, hp, 'GET / HTTP/1.1\r\nHost: xmppd.test\r\n' + big + '\r\n')
    xt.is_(st[0], 431, 'a request head over http_max_header_size (2 KiB): 431')
    xt.ok(await chat_ok(alice, bob, 'the oversized header'), 'the chat goes on (431)')

    st = await request(srv.ip, hp, 'POST /http-bind HTTP/1.1\r\nHost: xmppd.test\r\n'
                       'Content-Length: 1000000000\r\n\r\n')
    xt.is_(st[0], 413, 'a declared body over http_max_body_size: 413 before the body is sent')
    st = await request(srv.ip, hp, 'POST /x HTTP/1.1\r\nHost: xmppd.test\r\n'
                       'Transfer-Encoding: chunked\r\n\r\n' +
                       ('1000\r\n' + 'b' * 4096 + '\r\n') * 2 + '0\r\n\r\n')
    xt.is_(st[0], 413, 'a chunked body growing over http_max_body_size: 413')
    st = await request(srv.ip, hp, 'POST /x HTTP/1.1\r\nHost: xmppd.test\r\n'
                       'Content-Length: 100\r\n\r\n' + 'c' * 100)
    xt.is_(st[0], 404, 'a body under the bound is read and the request routed (404 here)')

    # Slowloris: a head trickled a byte at a time is cut at
    # http_request_timeout (2 s) from its first byte, not kept alive by
    # every byte (408).
    r, w = await connect(srv.ip, hp)
    w.write(b'GET / HTTP/1.1\r\nHost: xmppd.test\r\n')
    t0 = time.monotonic()
    status = None
    for i in range(60):
        w.write(b'X')
        try:
            line = await asyncio.wait_for(r.readline(), 0.25)
        except asyncio.TimeoutError:
            continue
        if line.startswith(b'HTTP/1.1 '):
            status = int(line.split()[1])
        break
    took = time.monotonic() - t0
    xt.ok(status == 408 and 1.5 <= took < 4.5,
          'slowloris: a trickled head gets 408 after http_request_timeout (%.1f s)' % took) \
        or xt.diag(status, took)
    w.close()
    xt.ok(await chat_ok(alice, bob, 'the slowloris'), 'the chat goes on (slowloris)')

    # Garbage: 400, and the connection closed.
    r, w = await connect(srv.ip, hp)
    w.write(b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n')
    st = await response(r)
    xt.ok(st[0] == 400 and await eof_within(r, 3), 'bytes that are not HTTP: 400, then closed')
    w.close()
    st = await request(srv.ip, hp, 'GET / HTTP/1.1\r\nHost: xmppd.test\r\n'
                       'Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello')
    xt.is_(st[0], 400, 'two Content-Length headers (request smuggling): 400')
    st = await request(srv.ip, hp, 'GET / HTTP/1.1\r\nHost: xmppd.test\r\n'
                       'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')
    xt.is_(st[0], 400, 'Content-Length with Transfer-Encoding: chunked: 400')
    many = ''.join('X-H%d: v\r\n' % i for i in range(80))
    st = await request(srv.ip, hp, 'GET / HTTP/1.1\r\nHost: xmppd.test\r\n' + many + '\r\n')
    xt.is_(st[0], 431, 'more than 64 header lines: 431')
    xt.ok(await chat_ok(alice, bob, 'the garbage'), 'the chat goes on (garbage)')

    # --- host-meta (XEP-0156) ---------------------------------------------
    st = await request(srv.ip, hsp, 'GET /.well-known/host-meta HTTP/1.1\r\n'
                       'Host: xmppd.test:%d\r\nOrigin: https://web.example\r\n\r\n' % hsp, tls=True)
    want = "<Link rel='urn:xmpp:alt-connections:websocket' href='wss://xmppd.test:%d/xmpp-websocket'/>" % hsp
    want_bosh = "<Link rel='urn:xmpp:alt-connections:xbosh' href='https://xmppd.test:%d/http-bind'/>" % hsp
    xt.ok(st[0] == 200 and st[1].get('content-type', '').startswith('application/xrd+xml') and
          want in st[2].decode() and want_bosh in st[2].decode() and
          st[1].get('access-control-allow-origin') == '*',
          'host-meta over HTTPS: the wss:// and https:// URLs of the host asked for, XRD, CORS') \
        or xt.diag(st)
    st = await request(srv.ip, hsp, 'GET /.well-known/host-meta.json HTTP/1.1\r\n'
                       'Host: xmppd.test:%d\r\n\r\n' % hsp, tls=True)
    try:
        links = json.loads(st[2])['links']
    except Exception:
        links = None
    xt.is_(links, [{'rel': 'urn:xmpp:alt-connections:xbosh',
                    'href': 'https://xmppd.test:%d/http-bind' % hsp},
                   {'rel': 'urn:xmpp:alt-connections:websocket',
                    'href': 'wss://xmppd.test:%d/xmpp-websocket' % hsp}],
           'host-meta.json lists the BOSH and WebSocket URLs (JRD)')
    xt.is_(st[1].get('access-control-allow-origin'), '*',
           'host-meta.json has the CORS header without an Origin too')
    st = await request(srv.ip, hp, 'GET /.well-known/host-meta HTTP/1.1\r\n'
                       'Host: xmppd.test\r\n\r\n')
    xt.ok(st[0] == 200 and 'Link' not in st[2].decode() and 'wss://' not in st[2].decode(),
          'host-meta over plain HTTP lists no link: only https:// and wss:// ones '
          '(XEP-0156 2.2, 3)') or xt.diag(st)
    st = await request(srv.ip, hsp, 'GET /.well-known/host-meta HTTP/1.1\r\n'
                       'Host: elsewhere.example\r\n\r\n', tls=True)
    xt.is_(st[0], 404, 'host-meta for a host not served here: 404')
    # HEAD, then a GET on the same connection: the GET's answer comes
    # right after the HEAD's head (RFC 9110 9.3.2: no content), where a
    # body would be; its Content-Length is the HEAD's.
    r, w = await connect(srv.ip, hsp, True)
    w.write(b'HEAD /.well-known/host-meta HTTP/1.1\r\nHost: xmppd.test\r\n\r\n'
            b'GET /.well-known/host-meta HTTP/1.1\r\nHost: xmppd.test\r\n\r\n')
    st = await response(r, is_head=True)
    try:
        nxt = await asyncio.wait_for(r.readexactly(13), 5)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        nxt = None
    w.close()
    xt.ok(st[0] == 200 and int(st[1].get('content-length', 0)) > 0 and
          nxt == b'HTTP/1.1 200 ',
          'HEAD: the headers of GET (Content-Length), no content') or xt.diag(st, nxt)

    # --- handlers from a module, through the ABI (1.3) ---------------------
    code, out, err = srv.ctl('module', 'load', 'mod_httptest')
    xt.is_(code, 0, 'xmppctl module load mod_httptest') or xt.diag(out, err)
    st = await request(srv.ip, hsp, 'POST /test/echo?a=1&b=2 HTTP/1.1\r\nHost: xmppd.test:%d\r\n'
                       'X-Test: hello\r\nContent-Length: 7\r\n\r\npayload' % hsp, tls=True)
    xt.is_((st[0], st[1].get('x-echo'), st[2].decode()),
           (200, 'yes', 'method=POST\npath=/test/echo\nquery=a=1&b=2\nx-test=hello\nbody=7\n'
            'secure=1\nbase=https://xmppd.test:%d\nfamily=inet\nclient=127.0.0.1\nud=echo\n' % hsp),
           "a module's handler gets the method, path, query, headers, body, "
           'secure, base URL and client, and its answer goes out')
    st = await request(srv.ip, hp, 'GET /test/tree/a/b HTTP/1.1\r\nHost: xmppd.test\r\n\r\n')
    xt.ok(st[0] == 200 and 'path=/test/tree/a/b\n' in st[2].decode() and 'secure=0' in st[2].decode(),
          'a path registered with a trailing / serves what is under it') or xt.diag(st)
    # X-Forwarded-For counts only from trusted_proxies (127.0.0.1 here):
    # from the right, the first address that is not a trusted proxy.
    st = await request(srv.ip, hp, 'GET /test/echo HTTP/1.1\r\nHost: xmppd.test\r\n'
                       'X-Forwarded-For: 203.0.113.50, 198.51.100.9\r\n'
                       'X-Forwarded-For: 127.0.0.1\r\n\r\n')
    xt.ok(st[0] == 200 and 'client=198.51.100.9\n' in st[2].decode(),
          'from a trusted proxy, X-Forwarded-For gives the client (the rightmost address '
          'that is not a trusted proxy, over two header lines)') or xt.diag(st)
    st = await request(srv.ip, hp, 'GET /test/echo HTTP/1.1\r\nHost: xmppd.test\r\n'
                       'X-Forwarded-For: 198.51.100.9 junk\r\n\r\n')
    xt.is_(st[0], 400, 'a malformed X-Forwarded-For from a trusted proxy: 400')
    st = await request(srv.ip, hp, 'GET /test/silent HTTP/1.1\r\nHost: xmppd.test\r\n\r\n')
    xt.is_(st[0], 500, 'a handler that returns without answering: 500 from the core')
    st = await request(srv.ip, hp, 'GET /test/claimed HTTP/1.1\r\nHost: xmppd.test\r\n\r\n')
    xt.is_(st[2], b'refused\n', "a module cannot take a core path (/xmpp-websocket)")
    code, out, err = srv.ctl('module', 'unload', 'mod_httptest')
    st = await request(srv.ip, hp, 'GET /test/echo HTTP/1.1\r\nHost: xmppd.test\r\n\r\n')
    xt.ok(code == 0 and st[0] == 404, "after the module's unload its path is 404") \
        or xt.diag(code, out, err, st[0])

    await xt.disconnect_all(alice, bob)
    srv.stop()

    # --- per-address limits and the public base URL (another server) ------
    srv2 = xt.Server(name='t1400-limits', workers=2, start=False)
    hp2, = xt.free_ports(srv2.ip, 1)
    srv2.conf['listen'] += [{'port': hp2, 'ip': srv2.ip, 'module': 'http', 'secure': True}]
    srv2.conf.update({'max_connections_per_ip': 4, 'http_max_requests_per_ip': 5,
                      'public_base_url': 'https://chat.example.org/'})
    srv2.write_config()
    srv2.start()
    # The harness's start-up probe (a c2s connection from the same
    # address) must be gone before counting.
    await srv2.wait_connected(lambda s: not s)
    await asyncio.sleep(0.5)
    # Five connections from one address with max_connections_per_ip 4:
    # one of them (the workers accept in their own order) is answered
    # 503 with Retry-After and closed; the other four are left alone.
    conns = []
    for i in range(5):
        conns.append(await connect(srv2.ip, hp2))
    got = await asyncio.gather(*(response(r, timeout=1) for r, w in conns))
    refused = [g for g in got if g[0] is not None]
    xt.ok(len(refused) == 1 and refused[0][0] == 503 and 'retry-after' in refused[0][1],
          'five connections from one address (max_connections_per_ip 4): one is answered '
          '503 with Retry-After, the others not') or xt.diag([g[0] for g in got])
    for r, w in conns:
        w.close()
    await asyncio.sleep(0.3)
    # 5 a second with a burst of 10: the 12 requests in a row cannot all pass.
    r, w = await connect(srv2.ip, hp2)
    statuses = []
    for i in range(12):
        w.write(b'GET /.well-known/host-meta HTTP/1.1\r\nHost: xmppd.test\r\n\r\n')
        st = await response(r)
        statuses.append(st[0])
        if st[0] != 200:
            break
    xt.ok(statuses[:10] == [200] * 10 and statuses[-1] == 429,
          'requests from one address over http_max_requests_per_ip (5/s, burst 10): 429') \
        or xt.diag(statuses)
    w.close()
    await asyncio.sleep(1.5)
    st = await request(srv2.ip, hp2, 'GET /.well-known/host-meta HTTP/1.1\r\nHost: xmppd.test\r\n\r\n')
    xt.ok(st[0] == 200 and "href='wss://chat.example.org/xmpp-websocket'" in st[2].decode(),
          'after a pause requests pass again; URLs use public_base_url') or xt.diag(st)
    # No trusted_proxies here: X-Forwarded-For changes nothing, and the
    # limit still sees the socket's address (it is spent again).
    r, w = await connect(srv2.ip, hp2)
    statuses = []
    for i in range(12):
        w.write(('GET /.well-known/host-meta HTTP/1.1\r\nHost: xmppd.test\r\n'
                 'X-Forwarded-For: 198.51.100.%d\r\n\r\n' % i).encode())
        st = await response(r)
        statuses.append(st[0])
        if st[0] != 200:
            break
    xt.ok(statuses[-1] == 429, 'X-Forwarded-For from an untrusted peer is ignored: '
          'a new address in every request does not escape the limit') or xt.diag(statuses)
    w.close()
    srv2.stop()


xt.run(main, timeout=200)
