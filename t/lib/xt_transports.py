"""xt_transports - the clients of the HTTP transports and a component, for
the integration tests that speak them (t1100, t1410, t1420, t1430, t1840): a raw
WebSocket client (RFC 6455, RFC 7395 framing), a raw BOSH client (XEP-0124,
XEP-0206) and slixmpp's ComponentXMPP answering with echoes (XEP-0114)."""

import asyncio
import base64
import http.client
import os
import random
import re
import ssl
import struct
import time
import xml.etree.ElementTree as ET

from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.xmlstream import ET as SET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import xmppdtest as xt

FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing'
NS_BOSH = 'http://jabber.org/protocol/httpbind'
NS_XBOSH = 'urn:xmpp:xbosh'
NS_STREAM = 'http://etherx.jabber.org/streams'
NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl'
NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind'
NS_C = 'jabber:client'
NS_ACCEPT = 'jabber:component:accept'
NS_ECHO = 'urn:xmppd:test:echo'


class RawWS:
    """A WebSocket client written for this test: exact bytes both ways."""

    def __init__(self, reader, writer, status, headers):
        self.r, self.w = reader, writer
        self.status, self.headers = status, headers
        self.closed_code = None

    @classmethod
    async def connect(cls, ip, port, tls=False, protocol='xmpp', version='13',
                      key=None, origin=None, path='/xmpp-websocket'):
        ctx = None
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection(ip, port, ssl=ctx)
        key = key or base64.b64encode(os.urandom(16)).decode()
        req = ('GET %s HTTP/1.1\r\nHost: xmppd.test\r\nUpgrade: websocket\r\n'
               'Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: %s\r\n'
               'Sec-WebSocket-Version: %s\r\n' % (path, key, version))
        if protocol:
            req += 'Sec-WebSocket-Protocol: %s\r\n' % protocol
        if origin:
            req += 'Origin: %s\r\n' % origin
        writer.write((req + '\r\n').encode())
        head = await asyncio.wait_for(reader.readuntil(b'\r\n\r\n'), 5)
        lines = head.decode().split('\r\n')
        status = int(lines[0].split()[1])
        headers = {}
        for ln in lines[1:]:
            if ':' in ln:
                k, v = ln.split(':', 1)
                headers[k.strip().lower()] = v.strip()
        ws = cls(reader, writer, status, headers)
        ws.key = key
        return ws

    def frame(self, payload, opcode=1, fin=True):
        p = payload.encode() if isinstance(payload, str) else payload
        mask = os.urandom(4)
        b0 = (0x80 if fin else 0) | opcode
        n = len(p)
        if n < 126:
            hdr = struct.pack('!BB', b0, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack('!BBH', b0, 0x80 | 126, n)
        else:
            hdr = struct.pack('!BBQ', b0, 0x80 | 127, n)
        return hdr + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(p))

    def send(self, payload, opcode=1, fin=True):
        self.w.write(self.frame(payload, opcode, fin))

    async def recv(self, timeout=5):
        """(opcode, payload) of the next frame, or (None, None) at EOF or
        after timeout seconds."""
        try:
            b0, b1 = await asyncio.wait_for(self.r.readexactly(2), timeout)
            n = b1 & 0x7f
            if n == 126:
                n = struct.unpack('!H', await self.r.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack('!Q', await self.r.readexactly(8))[0]
            if b1 & 0x80:
                await self.r.readexactly(4)      # servers do not mask
            data = await self.r.readexactly(n)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return None, None
        op = b0 & 0x0f
        if op == 8:
            self.closed_code = struct.unpack('!H', data[:2])[0] if len(data) >= 2 else 0
        return op, data

    async def text(self, timeout=5):
        """The next text message (pings and pongs skipped), or None."""
        while True:
            op, data = await self.recv(timeout)
            if op is None or op == 8:
                return None
            if op == 1:
                return data.decode()

    async def open(self, to='xmppd.test', ns=FRAMING):
        self.send("<open xmlns='%s' to='%s' version='1.0'/>" % (ns, to))
        return await self.text(), await self.text()

    async def until_close(self, timeout=5):
        """Texts until the close frame: (texts, close code or None)."""
        texts = []
        while True:
            op, data = await self.recv(timeout)
            if op is None:
                return texts, None
            if op == 1:
                texts.append(data.decode())
            if op == 8:
                return texts, self.closed_code

    def close(self):
        try:
            self.w.close()
        except Exception:
            pass


class Bosh:
    """One BOSH session seen from the client: each request on its own HTTP
    connection (so that several can be open at once), run in a thread so
    that the slixmpp clients go on meanwhile."""

    def __init__(self, srv, port):
        self.srv, self.port = srv, port
        self.rid = random.randint(1 << 20, 1 << 30)
        self.sid = None
        self.last_raw = None

    def post_sync(self, data, method='POST', headers=None, timeout=30):
        c = http.client.HTTPConnection(self.srv.ip, self.port, timeout=timeout)
        try:
            h = {'Content-Type': 'text/xml; charset=utf-8'}
            h.update(headers or {})
            c.request(method, '/http-bind', body=data, headers=h)
            r = c.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            c.close()

    async def post(self, data, **kw):
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.post_sync(data, **kw))

    def body(self, children='', rid=None, **attrs):
        if rid is None:
            self.rid += 1
            rid = self.rid
        a = ''.join(" %s='%s'" % (k.replace('_', ':'), v) for k, v in attrs.items())
        if self.sid is not None:
            a += " sid='%s'" % self.sid
        return ("<body xmlns='%s' xmlns:xmpp='%s' rid='%d'%s>%s</body>"
                % (NS_BOSH, NS_XBOSH, rid, a, children)), rid

    async def request(self, children='', rid=None, **attrs):
        """(HTTP status, parsed <body/> or None, timing in s)."""
        data, _ = self.body(children, rid, **attrs)
        t0 = time.monotonic()
        st, hdrs, raw = await self.post(data.encode())
        self.last_raw, self.last_headers = raw, hdrs
        try:
            b = ET.fromstring(raw)
        except ET.ParseError:
            b = None
        return st, b, time.monotonic() - t0

    async def create(self, wait=10, hold=1, to=None):
        data = ("<body xmlns='%s' xmlns:xmpp='%s' rid='%d' wait='%d' hold='%d' to='%s'"
                " xml:lang='en' ver='1.6' xmpp:version='1.0' content='text/xml; charset=utf-8'/>"
                % (NS_BOSH, NS_XBOSH, self.rid, wait, hold, to or self.srv.host))
        st, hdrs, raw = await self.post(data.encode())
        self.last_raw, self.last_headers = raw, hdrs
        b = ET.fromstring(raw)
        self.sid = b.get('sid')
        return st, b

    async def login(self, user, resource):
        """PLAIN, restart, bind: the bound JID, or raises."""
        tok = base64.b64encode(('\0%s\0%s-pw' % (user, user)).encode()).decode()
        st, b, _ = await self.request("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_SASL, tok))
        if b is None or b.find('{%s}success' % NS_SASL) is None:
            raise xt.HarnessError('BOSH SASL failed: %r' % self.last_raw)
        st, b, _ = await self.request(xmpp_restart='true')
        if b is None or b.find('{%s}features/{%s}bind' % (NS_STREAM, NS_BIND)) is None:
            raise xt.HarnessError('BOSH restart: no bind feature: %r' % self.last_raw)
        st, b, _ = await self.request(
            "<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='%s'><resource>%s</resource>"
            "</bind></iq>" % (NS_BIND, resource))
        j = b.find('{%s}iq/{%s}bind/{%s}jid' % (NS_C, NS_BIND, NS_BIND)) if b is not None else None
        if j is None:
            raise xt.HarnessError('BOSH bind failed: %r' % self.last_raw)
        return j.text


class Component:
    """slixmpp's ComponentXMPP that answers every message with one back
    (from the address it was sent to) and every IQ get in NS_ECHO with a
    result carrying the same payload."""

    def __init__(self, srv, port, domain, secret):
        self.domain = domain
        self.x = x = ComponentXMPP(domain, secret, srv.ip, port)
        self.messages = xt.Mailbox()
        self.started = asyncio.get_running_loop().create_future()
        self.closed = asyncio.Event()
        self.stream_error = None
        x.add_event_handler('session_start', self._started)
        x.add_event_handler('disconnected', lambda *_: self.closed.set())
        x.add_event_handler('stream_error', self._stream_error)
        x.register_handler(Callback('t-msg', MatchXPath('{%s}message' % NS_ACCEPT),
                                    self._message))
        x.register_handler(Callback('t-iq', MatchXPath('{%s}iq/{%s}query' % (NS_ACCEPT, NS_ECHO)),
                                    self._iq))

    def _started(self, _):
        if not self.started.done():
            self.started.set_result(True)

    def _stream_error(self, err):
        self.stream_error = err['condition']
        if not self.started.done():
            self.started.set_result(False)

    def _message(self, m):
        self.messages.put(m)
        if m['type'] == 'error':
            return
        self.x.send_message(mto=m['from'], mfrom=m['to'], mbody='echo: ' + m['body'],
                            mtype=m['type'])

    def _iq(self, iq):
        if iq['type'] != 'get':
            return
        r = self.x.make_iq_result(iq['id'], ito=iq['from'], ifrom=iq['to'])
        q = SET.Element('{%s}query' % NS_ECHO)
        q.set('seen-from', str(iq['from']))
        r.append(q)
        r.send()

    async def connect(self, timeout=10):
        self.x.connect()
        try:
            return await asyncio.wait_for(asyncio.shield(self.started), timeout)
        except asyncio.TimeoutError:
            return False

    async def disconnect(self):
        self.x.disconnect(wait=1)
        try:
            await asyncio.wait_for(self.closed.wait(), 5)
        except asyncio.TimeoutError:
            self.x.abort()


# ---------------------------------------------------------------------------
# A WebSocket user (t1430, t1840)

def xml_esc(s):
    return s.replace('&', '&amp;').replace('<', '&lt;').replace("'", '&apos;')


async def ws_login(srv, port, user, resource):
    """RFC 7395 login with PLAIN (password USER-pw) over a RawWS, bound
    to resource, with initial presence: (ws, the bound JID)."""
    ws = await RawWS.connect(srv.ip, port)
    await ws.open()
    ws.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>"
            % base64.b64encode(('\0%s\0%s-pw' % (user, user)).encode()).decode())
    if not (await ws.text() or '').startswith('<success'):
        raise xt.HarnessError('WebSocket SASL failed')
    await ws.open()
    ws.send("<iq type='set' id='b1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:"
            "xml:ns:xmpp-bind'><resource>%s</resource></bind></iq>" % resource)
    t = await ws.text() or ''
    m = re.search(r'<jid>([^<]+)</jid>', t)
    if m is None:
        raise xt.HarnessError('WebSocket bind failed: %r' % t)
    ws.send("<presence xmlns='jabber:client'/>")
    return ws, m.group(1)


async def ws_message(ws, body, timeout=5):
    """The 'from' of the next WebSocket message with body, or None."""
    while True:
        t = await ws.text(timeout=timeout)
        if t is None:
            return None
        if t.startswith('<message') and '<body>%s</body>' % xml_esc(body) in t:
            m = re.search(r"from='([^']+)'", t)
            return m.group(1) if m else ''
