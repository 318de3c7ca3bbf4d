#!/usr/bin/python3
"""t1800-upload: XEP-0363 HTTP File Upload (mod_http_upload) on
upload.HOST: disco (3), slixmpp's xep_0363 upload_file end to end, slot
requests (4) and their errors (5: file-too-large with max-file-size, the
per-user quota, a user of another host), the PUT's checks (6, 9.1: wrong
size, wrong type, forged signature, expired URL, a second PUT), the GET's
headers (9.3: type, length, disposition, CSP, nosniff, CORS) with HEAD,
Range and the preflight, hostile paths, a restart, xmppctl upload
list|purge, the purge of expired slots, and a 64 MiB file up and down
while xmppd's resident memory stays far below its size."""

import asyncio
import hashlib
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS = 'urn:xmpp:http:upload:0'
STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
HOST = 'xmppd.test'
SVC = 'upload.' + HOST
MAX = 100 * 1024 * 1024
QUOTA = 150 * 1024 * 1024
BIG = 64 * 1024 * 1024


async def curl(*args, data=None):
    """Runs curl; returns (status, headers of the last response (lowercase
    names), body bytes). data: bytes for the request body (stdin)."""
    with tempfile.TemporaryDirectory() as d:
        hf, bf = os.path.join(d, 'h'), os.path.join(d, 'b')
        cmd = ['curl', '-s', '--path-as-is', '-D', hf, '-o', bf, '--max-time', '60']
        if data is not None:
            cmd += ['--data-binary', '@-']
        p = await asyncio.create_subprocess_exec(
            *(cmd + list(args)), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await p.communicate(data)
        status, headers = None, {}
        if os.path.exists(hf):
            for ln in open(hf, 'rb').read().decode('latin-1').split('\r\n'):
                if ln.startswith('HTTP/'):
                    status, headers = int(ln.split()[1]), {}
                elif ':' in ln:
                    k, v = ln.split(':', 1)
                    headers[k.strip().lower()] = v.strip()
        body = open(bf, 'rb').read() if os.path.exists(bf) else b''
        return status, headers, body


def slot_of(r):
    """(put url, get url) of a slot reply, or (None, None)."""
    if r is None or r['type'] != 'result':
        return None, None
    s = r.xml.find('{%s}slot' % NS)
    if s is None:
        return None, None
    p, g = s.find('{%s}put' % NS), s.find('{%s}get' % NS)
    return (p.get('url') if p is not None else None, g.get('url') if g is not None else None)


async def request_slot(c, filename, size, ctype=None):
    attrs = "filename='%s' size='%d'" % (filename, size)
    if ctype:
        attrs += " content-type='%s'" % ctype
    return await c.iq('get', SVC, "<request xmlns='%s' %s/>" % (NS, attrs))


def vmrss_kib(pid):
    try:
        for ln in open('/proc/%d/status' % pid):
            if ln.startswith('VmRSS:'):
                return int(ln.split()[1])
    except OSError:
        pass
    return 0


async def watch_rss(pid, proc_task):
    """The highest VmRSS (KiB) seen while proc_task runs."""
    peak = vmrss_kib(pid)
    while not proc_task.done():
        peak = max(peak, vmrss_kib(pid))
        await asyncio.sleep(0.02)
    return peak


async def main():
    srv = xt.Server(workers=2, hosts=(HOST, 'other.test'), start=False, modules={
        'mod_disco': {}, 'mod_roster': {},
        'mod_http_upload': {'put_ttl': 4, 'purge_interval': 1, 'user_quota': QUOTA,
                            'max_file_size': MAX}})
    hp, hsp = xt.free_ports(srv.ip, 2)
    base = 'http://%s:%d' % (srv.ip, hp)
    srv.conf['listen'] += [{'port': hp, 'ip': srv.ip, 'module': 'http'},
                           {'port': hsp, 'ip': srv.ip, 'module': 'http', 'tls': True}]
    srv.conf['modules']['mod_http_upload']['base_url'] = base
    srv.write_config()
    srv.start()
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    srv.register('olga', 'olga-pw', host='other.test')
    # An account of the same name on the service's host: olga@other.test
    # is still not its user.
    srv.register('olga', 'olga-pw')
    alice = await xt.login_ok(srv, 'alice')
    bob = await xt.login_ok(srv, 'bob')
    carol = await xt.login_ok(srv, 'carol')
    olga = await xt.login_ok(srv, 'olga', host='other.test')

    # -- 3: discovery ---------------------------------------------------------
    r = await alice.iq('get', SVC, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    di = '{http://jabber.org/protocol/disco#info}'
    ids = [] if r is None else [(i.get('category'), i.get('type'))
                                for i in r.xml.iter(di + 'identity')]
    feats = [] if r is None else [f.get('var') for f in r.xml.iter(di + 'feature')]
    fields = {} if r is None else {
        f.get('var'): [v.text for v in f.iter('{jabber:x:data}value')]
        for f in r.xml.iter('{jabber:x:data}field')}
    xt.ok(('store', 'file') in ids and NS in feats and fields.get('FORM_TYPE') == [NS] and
          fields.get('max-file-size') == [str(MAX)],
          '3: upload.HOST is store/file with %s and max-file-size %d' % (NS, MAX)) \
        or xt.diag(str(r))

    # -- slixmpp's client, end to end -------------------------------------------
    alice.xmpp.register_plugin('xep_0363')
    # slixmpp 1.8.3's own discovery (get_info_from_domain) fails under
    # Python 3.11 (it hands coroutines to asyncio.wait): the service is
    # given, as a client configured with it would (discovery is checked
    # above).
    alice.xmpp['xep_0363'].upload_service = SVC
    data = os.urandom(5000)
    with tempfile.NamedTemporaryFile(suffix='.txt') as f:
        f.write(data)
        f.flush()
        try:
            url = await alice.xmpp['xep_0363'].upload_file(
                f.name, content_type='text/plain', timeout=10)
        except Exception as e:  # noqa: BLE001
            url = None
            xt.diag('upload_file: %r' % e)
        fname = os.path.basename(f.name)
    xt.ok(url is not None and re.fullmatch(
        re.escape(base) + r'/upload/[0-9a-f]{32}/' + re.escape(fname), url or ''),
        'slixmpp upload_file: the GET URL is BASE/upload/SLOTID(128 bits hex)/NAME') \
        or xt.diag(url)
    st, h, body = await curl(url or base + '/upload/x')
    xt.ok(st == 200 and body == data, 'the GET returns the uploaded bytes')
    xt.is_((h.get('content-type'), h.get('content-length'), h.get('content-disposition'),
            h.get('content-security-policy'), h.get('x-content-type-options'),
            h.get('access-control-allow-origin'), h.get('accept-ranges')),
           ('text/plain', '5000', "attachment; filename*=UTF-8''" + fname,
            "default-src 'none'", 'nosniff', '*', 'bytes'),
           "9.3: the GET's Content-Type, Content-Length, Content-Disposition (attachment), "
           'CSP, nosniff, CORS, Accept-Ranges')

    # -- HEAD and Range (RFC 9110 14) -----------------------------------------------
    st, h, _ = await curl('-I', url or base)
    path = (url or base + '/x').split(str(hp), 1)[1]
    rd, wr = await asyncio.open_connection(srv.ip, hp)
    wr.write(('HEAD %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n'
              % (path, srv.ip)).encode())
    raw = await asyncio.wait_for(rd.read(-1), 5)
    wr.close()
    xt.ok(st == 200 and h.get('content-length') == '5000' and raw.endswith(b'\r\n\r\n') and
          h.get('content-type') == 'text/plain', 'HEAD: the headers of the GET, no body') \
        or xt.diag(st, h, raw[-40:])
    st, h, body = await curl('-H', 'Range: bytes=10-19', url or base)
    xt.is_((st, h.get('content-range'), h.get('content-length'), body),
           (206, 'bytes 10-19/5000', '10', data[10:20]), 'Range bytes=10-19: 206 with the ten')
    st, h, body = await curl('-H', 'Range: bytes=-7', url or base)
    xt.is_((st, h.get('content-range'), body), (206, 'bytes 4993-4999/5000', data[-7:]),
           'Range bytes=-7: the last seven bytes')
    st, h, body = await curl('-H', 'Range: bytes=4990-', url or base)
    xt.is_((st, h.get('content-range'), body), (206, 'bytes 4990-4999/5000', data[4990:]),
           'Range bytes=4990-: to the end')
    st, h, body = await curl('-H', 'Range: bytes=6000-7000', url or base)
    xt.is_((st, h.get('content-range')), (416, 'bytes */5000'),
           'an unsatisfiable Range: 416 with Content-Range bytes */SIZE')
    st, h, body = await curl('-H', 'Range: bytes=20-10', url or base)
    xt.is_((st, len(body)), (200, 5000), 'an invalid Range (last < first) is ignored: 200')

    # -- CORS preflight ----------------------------------------------------------------
    st, h, _ = await curl('-X', 'OPTIONS', '-H', 'Origin: https://web.example',
                          '-H', 'Access-Control-Request-Method: PUT',
                          '-H', 'Access-Control-Request-Headers: content-type',
                          base + '/upload/')
    xt.ok(st == 204 and h.get('access-control-allow-origin') == '*' and
          'PUT' in h.get('access-control-allow-methods', '') and
          'content-type' in h.get('access-control-allow-headers', '').lower(),
          'CORS: the preflight of a PUT with Content-Type is allowed') or xt.diag(st, h)

    # -- a slot by hand, an image: inline ------------------------------------------------
    png = b'\x89PNG\r\n\x1a\n' + os.urandom(300)
    put, get = slot_of(await request_slot(bob, 'my pic é.png', len(png), 'image/png'))
    get_png = get
    xt.ok(put is not None and put.startswith(get + '?v=') and
          get.endswith('/my%20pic%20%C3%A9.png'),
          '4: a slot: a PUT URL (GET URL + signature) and a GET URL, the name percent-encoded') \
        or xt.diag(put, get)
    st, h, _ = await curl('-X', 'PUT', '-H', 'Content-Type: image/png', put or base, data=png)
    xt.is_(st, 201, 'the PUT stores the file: 201')
    st, h, body = await curl(get or base)
    xt.is_((st, body == png, h.get('content-type'), h.get('content-disposition')),
           (200, True, 'image/png', "inline; filename*=UTF-8''my%20pic%20%C3%A9.png"),
           '9.3: an image is served inline, its name in filename* (RFC 8187)')
    st, _, _ = await curl('-X', 'PUT', '-H', 'Content-Type: image/png', put or base, data=png)
    xt.is_(st, 409, 'a second PUT to a used slot: 409')

    # -- 5: slot errors --------------------------------------------------------------------
    r = await request_slot(alice, 'huge.bin', MAX + 1)
    err = r.xml.find('{jabber:client}error') if r is not None else None
    ftl = err.find('{%s}file-too-large' % NS) if err is not None else None
    mx = ftl.find('{%s}max-file-size' % NS) if ftl is not None else None
    xt.ok(r is not None and r['type'] == 'error' and r['error']['condition'] == 'not-acceptable'
          and mx is not None and mx.text == str(MAX),
          '5: over max_file_size: not-acceptable with <file-too-large><max-file-size>') \
        or xt.diag(str(r))
    r1 = await request_slot(carol, 'a.bin', 90 * 1024 * 1024)
    r2 = await request_slot(carol, 'b.bin', 90 * 1024 * 1024)
    xt.is_((xt.iq_outcome(r1), xt.iq_outcome(r2)), ('result', 'error:resource-constraint'),
           'user_quota: a slot that would pass the quota (pending slots count) is refused')
    r = await request_slot(olga, 'x.txt', 10)
    xt.is_(xt.iq_outcome(r), 'error:forbidden', 'a user of another host: forbidden')
    for bad, what in (("filename='../etc/passwd' size='10'", 'a path as file name'),
                      ("filename='a.txt' size='-1'", 'a negative size'),
                      ("filename='a.txt' size='0'", 'a zero size'),
                      ("filename='%s' size='10'" % ('n' * 256), 'a 256-byte file name'),
                      ("size='10'", 'no file name'),
                      ("filename='a.txt' size='99999999999999999999999'", 'a size past 64 bits'),
                      ("filename='a.txt' size='10' content-type='text/html&#13;&#10;X: y'",
                       'a content type with a line break')):
        r = await alice.iq('get', SVC, "<request xmlns='%s' %s/>" % (NS, bad))
        xt.is_(xt.iq_outcome(r), 'error:bad-request', '5: %s: bad-request' % what)

    # -- 6 and 9.1: the PUT's checks --------------------------------------------------------
    body100 = os.urandom(100)
    put, get = slot_of(await request_slot(alice, 'doc.txt', 100, 'text/plain'))
    st, _, _ = await curl('-X', 'PUT', '-H', 'Content-Type: text/plain', put or base,
                          data=body100[:50])
    xt.is_(st, 400, 'a PUT shorter than the slot: 400')
    st, _, _ = await curl('-X', 'PUT', '-H', 'Content-Type: text/plain', put or base,
                          data=body100 + b'x' * 50)
    xt.is_(st, 413, 'a PUT larger than the slot: 413')
    st, _, _ = await curl('-X', 'PUT', '-H', 'Content-Type: image/png', put or base, data=body100)
    xt.is_(st, 415, 'a PUT with another Content-Type: 415')
    forged = (put or 'x')[:-1] + ('0' if (put or 'x')[-1] != '0' else '1')
    st, _, _ = await curl('-X', 'PUT', '-H', 'Content-Type: text/plain', forged, data=body100)
    xt.is_(st, 403, 'a forged signature: 403')
    longer = re.sub(r'v=(\d+)', lambda m: 'v=%d' % (int(m.group(1)) + 3600), put or '')
    st, _, _ = await curl('-X', 'PUT', '-H', 'Content-Type: text/plain', longer, data=body100)
    xt.is_(st, 403, 'a stretched expiry (signature no longer matches): 403')
    # A PUT cut half-way (the client goes): its partial file is removed.
    ppath = (put or base + '/x').split(str(hp), 1)[1]
    rd, wr = await asyncio.open_connection(srv.ip, hp)
    wr.write(('PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n'
              'Content-Length: 100\r\n\r\n' % (ppath, srv.ip)).encode() + body100[:60])
    await wr.drain()
    await asyncio.sleep(0.5)
    sdir = os.path.join(srv.spool, 'upload', (get or '//').split('/')[-2])
    during = sorted(os.listdir(sdir)) if os.path.isdir(sdir) else []
    wr.close()
    await asyncio.sleep(0.5)
    after = sorted(os.listdir(sdir)) if os.path.isdir(sdir) else []
    xt.is_((during, after), (['file.part', 'meta'], ['meta']),
           'a PUT cut half-way: its partial file is removed')
    st, _, _ = await curl(get or base)
    xt.is_(st, 404, 'refused and cut PUTs leave nothing to GET')
    st, _, _ = await curl('-X', 'PUT', '-H', 'Content-Type: text/plain', put or base,
                          data=body100)
    st2, _, b2 = await curl(get or base)
    xt.is_((st, st2, b2 == body100), (201, 200, True),
           'after refused PUTs the slot still takes the right one')

    # -- hostile paths ----------------------------------------------------------------------
    sid = (get or '//').split('/')[-2]
    for path, want in (('/upload/../../../etc/passwd', 400),
                       ('/upload/%2e%2e/%2e%2e/etc/passwd', 400),
                       ('/upload/%s/..%%2fmeta' % sid, 400),
                       ('/upload/%s/doc.txt%%00' % sid, 400),
                       ('/upload/%s\\..\\meta' % sid, 400),
                       ('/upload//etc/passwd', 400),
                       ('/upload/secret', 404),
                       ('/upload/%s/meta' % sid, 404),
                       ('/upload/%s/file' % sid, 404),
                       ('/upload/%s' % sid, 404)):
        st, _, body = await curl(base + path)
        xt.ok(st == want and b'xmppd-upload' not in body,
              'hostile GET %s: %d, nothing of the spool' % (path, want)) or xt.diag(st, body[:80])

    # -- Expect: 100-continue (RFC 9110 10.1.1), raw --------------------------------------------
    put, get = slot_of(await request_slot(bob, 'cont.txt', 20, 'text/plain'))
    ppath = (put or base + '/x').split(str(hp), 1)[1]
    rd, wr = await asyncio.open_connection(srv.ip, hp)
    wr.write(('PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n'
              'Content-Length: 20\r\nExpect: 100-continue\r\n\r\n' % (ppath, srv.ip)).encode())
    try:
        interim = await asyncio.wait_for(rd.readuntil(b'\r\n\r\n'), 3)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError):
        interim = b''
    wr.write(b'x' * 20)
    try:
        final = await asyncio.wait_for(rd.readuntil(b'\r\n\r\n'), 3)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError):
        final = b''
    wr.close()
    xt.ok(interim.startswith(b'HTTP/1.1 100 ') and final.startswith(b'HTTP/1.1 201 '),
          'Expect: 100-continue: 100 before the body, then 201') or xt.diag(interim, final)
    rd, wr = await asyncio.open_connection(srv.ip, hp)
    wr.write(('PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n'
              'Content-Length: 30\r\nExpect: 100-continue\r\n\r\n' % (ppath, srv.ip)).encode())
    try:
        first = await asyncio.wait_for(rd.read(-1), 3)
    except asyncio.TimeoutError:
        first = b'(no close)'
    wr.close()
    xt.ok(first.startswith(b'HTTP/1.1 409 ') and b'100 Continue' not in first,
          'a PUT refused from its head gets the refusal, no 100, and the connection closes') \
        or xt.diag(first[:80])
    # Keep-alive: two GETs of a file on one connection, answered in order.
    gpath = (get or base + '/x').split(str(hp), 1)[1]
    rd, wr = await asyncio.open_connection(srv.ip, hp)
    wr.write(('GET %s HTTP/1.1\r\nHost: h\r\nRange: bytes=0-4\r\n\r\n'
              'GET %s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'
              % (gpath, gpath)).encode())
    try:
        both = await asyncio.wait_for(rd.read(-1), 5)
    except asyncio.TimeoutError:
        both = b''
    wr.close()
    xt.ok(both.count(b'HTTP/1.1 ') == 2 and b'HTTP/1.1 206 ' in both and
          both.endswith(b'\r\n\r\n' + b'x' * 20) and b'xxxxxHTTP/1.1 200 ' in both,
          'two GETs of a file on one kept-alive connection: 206 then 200, in order') \
        or xt.diag(both[-200:])

    # -- a large file: streamed, not buffered --------------------------------------------------
    with tempfile.NamedTemporaryFile(dir=str(srv.dir)) as big:
        big.truncate(BIG)         # sparse: zeros
        big.flush()
        put, get = slot_of(await request_slot(alice, 'big.bin', BIG, 'application/octet-stream'))
        base_rss = vmrss_kib(srv.pid)
        task = asyncio.ensure_future(curl('-T', big.name, '-H',
                                          'Content-Type: application/octet-stream', put or base))
        peak = await watch_rss(srv.pid, task)
        st, _, _ = task.result()
        xt.is_(st, 201, 'a 64 MiB PUT (with Expect: 100-continue) is stored')
        xt.ok(peak - base_rss < 24 * 1024,
              'during the 64 MiB PUT xmppd grew %d KiB (limit 24 MiB): the body is streamed'
              % (peak - base_rss))
        base_rss = vmrss_kib(srv.pid)
        task = asyncio.ensure_future(curl(get or base))
        peak = await watch_rss(srv.pid, task)
        st, h, body = task.result()
        xt.ok(st == 200 and len(body) == BIG and
              hashlib.sha256(body).digest() == hashlib.sha256(b'\0' * BIG).digest(),
              'the 64 MiB GET returns the file')
        xt.ok(peak - base_rss < 24 * 1024,
              'during the 64 MiB GET xmppd grew %d KiB (limit 24 MiB): the file is streamed'
              % (peak - base_rss))
        # The same over TLS (the output queue is written in records). Its
        # memory is not asserted: OpenSSL frees and remakes its write
        # buffer per record (SSL_MODE_RELEASE_BUFFERS, net/tls.c), which
        # the sanitizer build's quarantine turns into growth that a
        # plain build does not have (with ASAN_OPTIONS=quarantine_size_mb=1
        # it grows about 1.5 MiB).
        tget = (get or base).replace(base, 'https://%s:%d' % (srv.ip, hsp))
        base_rss = vmrss_kib(srv.pid)
        task = asyncio.ensure_future(curl('-k', tget))
        peak = await watch_rss(srv.pid, task)
        st, h, body = task.result()
        xt.note('64 MiB GET over TLS: xmppd grew %d KiB' % (peak - base_rss))
        xt.ok(st == 200 and len(body) == BIG and body.count(0) == BIG,
              'the 64 MiB GET over TLS returns the whole file')
        st, h, body = await curl('-k', '-H', 'Range: bytes=1000000-1999999', tget)
        xt.is_((st, h.get('content-range'), len(body)),
               (206, 'bytes 1000000-1999999/%d' % BIG, 1000000), 'a Range over TLS: 206')
    r = await request_slot(bob, 'more.txt', 10, 'text/plain')
    xt.is_(xt.iq_outcome(r), 'result', 'another user is unaffected: bob still gets slots')

    # -- expiry: a slot whose PUT URL expired ----------------------------------------------------
    put_exp, get_exp = slot_of(await request_slot(bob, 'late.txt', 10, 'text/plain'))
    exp_id = (get_exp or '//').split('/')[-2]
    # carol keeps a file and lets a 90 MiB slot lapse: its bytes leave her
    # quota when it goes, her file's stay.
    srv.ctl('upload', 'purge', 'carol@' + HOST)
    kput, kget = slot_of(await request_slot(carol, 'keep.txt', 5, 'text/plain'))
    st_k, _, _ = await curl('-X', 'PUT', '-H', 'Content-Type: text/plain', kput or base,
                            data=b'kept!')
    c1 = await request_slot(carol, 'c1.bin', 90 * 1024 * 1024)
    c2 = await request_slot(carol, 'c2.bin', 90 * 1024 * 1024)
    xt.is_((st_k, xt.iq_outcome(c1), xt.iq_outcome(c2)),
           (201, 'result', 'error:resource-constraint'),
           'carol: a stored file, a 90 MiB slot, and a second one over the quota')
    await asyncio.sleep(5)
    st, _, _ = await curl('-X', 'PUT', '-H', 'Content-Type: text/plain', put_exp or base,
                          data=b'0123456789')
    xt.is_(st, 403, '9.1: an expired PUT URL (put_ttl 4 s): 403')
    rc, out, _ = srv.ctl('upload', 'list')
    xt.ok(rc == 0 and exp_id in out, 'the expired slot is kept for put_ttl more') or xt.diag(out)
    await asyncio.sleep(5)
    rc, out, _ = srv.ctl('upload', 'list')
    xt.ok(rc == 0 and exp_id not in out and sid in out,
          'the purge timer removed the expired pending slot, kept the stored files') \
        or xt.diag(out)
    c3 = await request_slot(carol, 'c3.bin', 90 * 1024 * 1024)
    st_k, _, body_k = await curl(kget or base)
    xt.is_((xt.iq_outcome(c3), st_k, body_k), ('result', 200, b'kept!'),
           "the lapsed slot's bytes left carol's quota: 90 MiB again, her file still there")

    # -- unload during an upload: the body is cut, the unload does not wait ----------------------
    put_u, get_u = slot_of(await request_slot(bob, 'unload.txt', 100, 'text/plain'))
    upath = (put_u or base + '/x').split(str(hp), 1)[1]
    rd, wr = await asyncio.open_connection(srv.ip, hp)
    wr.write(('PUT %s HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n'
              'Content-Length: 100\r\n\r\n' % upath).encode() + b'y' * 40)
    await wr.drain()
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    rc, out, err = srv.ctl('module', 'unload', 'mod_http_upload')
    took = time.monotonic() - t0
    try:
        cut = await asyncio.wait_for(rd.read(-1), 5)
    except asyncio.TimeoutError:
        cut = b''
    wr.close()
    udir = os.path.join(srv.spool, 'upload', (get_u or '//').split('/')[-2])
    left = sorted(os.listdir(udir)) if os.path.isdir(udir) else None
    xt.ok(rc == 0 and took < 5 and cut.startswith(b'HTTP/1.1 503 ') and left == ['meta'],
          'module unload during a PUT: the upload is cut (503, partial file removed), the '
          'unload is done in %.1f s' % took) or xt.diag(rc, out, err, cut[:60], left)
    rc, out, err = srv.ctl('module', 'load', 'mod_http_upload')
    st, _, body = await curl(url or base)
    xt.ok(rc == 0 and st == 200 and body == data,
          'loaded again, the module serves the stored files') or xt.diag(rc, out, err, st)

    # -- restart: files and slots survive --------------------------------------------------------
    srv.restart()
    st, _, body = await curl(url or base)
    xt.ok(st == 200 and body == data, 'after a restart the file is served again')

    # -- xmppctl upload list | purge ----------------------------------------------------------------
    rc, out, _ = srv.ctl('upload', 'list', 'alice@' + HOST)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    xt.ok(rc == 0 and len(lines) == 3 and all(' alice@%s ' % HOST in ln for ln in lines) and
          any(ln.endswith(' stored doc.txt') for ln in lines),
          'upload list alice@HOST: her three files, with owner, state and name') or xt.diag(out)
    rc, out, _ = srv.ctl('upload', 'purge', 'alice@' + HOST)
    xt.ok(rc == 0 and out.strip() == '3 files removed', 'upload purge alice@HOST: 3 removed') \
        or xt.diag(out)
    st, _, _ = await curl(url or base)
    xt.is_(st, 404, "alice's files are gone")
    rc, out, _ = srv.ctl('upload', 'list')
    xt.ok(rc == 0 and 'bob@' + HOST in out and 'alice@' not in out,
          "bob's files are still listed") or xt.diag(out)
    # An account deleted takes its files (ejabberd's remove_user does the same).
    await xt.disconnect_all(carol)
    carol = await xt.login_ok(srv, 'carol')    # the restart closed her stream
    cput, cget = slot_of(await request_slot(carol, 'note.txt', 5, 'text/plain'))
    st, _, _ = await curl('-X', 'PUT', '-H', 'Content-Type: text/plain', cput or base,
                          data=b'carol')
    st2, _, body = await curl(cget or base)
    urc, uout, uerr = srv.ctl('unregister', 'carol', HOST)
    st3, _, _ = await curl(cget or base)
    lrc, lout, _ = srv.ctl('upload', 'list')
    xt.ok((st, st2, body, urc, st3) == (201, 200, b'carol', 0, 404) and
          'carol@' not in lout and 'bob@' + HOST in lout,
          "xmppctl unregister carol: her file answers 404 and is no longer listed; bob's stay") \
        or xt.diag(st, st2, body, urc, uout, uerr, st3, lout)
    # Her quota went with her files: a new carol has all of it again.
    await xt.disconnect_all(carol)
    srv.register('carol', 'carol-pw')
    carol = await xt.login_ok(srv, 'carol')
    r = await request_slot(carol, 'big.bin', 90 * 1024 * 1024)
    xt.is_(xt.iq_outcome(r), 'result', 'a new carol gets a 90 MiB slot: the quota counts '
           'only what is held')
    # expire_after: stored files older than it go with the purge timer.
    png_url = [ln.split() for ln in out.splitlines() if 'image/png' in ln]
    srv.stop()
    srv.conf['modules']['mod_http_upload']['expire_after'] = 2
    srv.write_config()
    srv.start()
    await asyncio.sleep(3.5)
    rc, out, _ = srv.ctl('upload', 'list')
    xt.ok(rc == 0 and png_url and png_url[0][0] not in out,
          'expire_after 2 s: the purge timer removed bob\'s stored image') or xt.diag(out)
    st, _, _ = await curl(get_png or base)
    xt.is_(st, 404, 'the expired file is no longer served')
    rc, out, _ = srv.ctl('upload', 'purge', 'older-than', '0')
    rc2, out2, _ = srv.ctl('upload', 'list')
    xt.ok(rc == 0 and re.fullmatch(r'\d+ files removed', out.strip()) and out2.strip() == '',
          'upload purge older-than 0 removes the rest') or xt.diag(out, out2)
    rc, out, err = srv.ctl('upload', 'purge', 'older-than', 'soon')
    xt.ok(rc != 0, 'upload purge with a bad argument fails') or xt.diag(out, err)

    await xt.disconnect_all(alice, bob, carol, olga)


xt.run(main, timeout=240)
