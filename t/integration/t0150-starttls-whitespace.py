#!/usr/bin/python3
"""t0150-starttls-whitespace: what may come between <proceed/> and TLS.

RFC 6120 5.4.2.3: after <proceed/> both sides speak TLS from the next byte.
A client that sends its first TLS record with <starttls/> (without waiting
for <proceed/>) has TLS set up on the record already buffered: a broken
one fails the handshake at once, and the connection is closed while xmppd
goes on (it once freed the connection under its own feet there). The same
on an incoming s2s stream.
"""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

STARTTLS = "<starttls xmlns='%s'/>" % xt.NS_TLS
BROKEN = b'\x16\x03\x01\x00\x05hello'     # a handshake record, but not a message


def s2s_header(frm, to):
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            "xmlns:stream='http://etherx.jabber.org/streams' "
            "xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>" % (frm, to))


async def main():
    srv = xt.Server(hosts=['s.test'], start=False)
    srv.s2s_port = xt.free_ports(srv.ip, 1)[0]
    srv.conf['listen'].append({'port': srv.s2s_port, 'ip': srv.ip, 'module': 's2s'})
    srv.write_config()
    srv.start()
    srv.register('alice', 'alice-pw')

    # A TLS record that is not a valid one, with <starttls/>.
    raw = await xt.raw_exchange(srv, [STARTTLS.encode() + BROKEN], header=True, timeout=5)
    xt.ok(raw.closed, 'a broken TLS record with <starttls/>: the connection is closed') or \
        xt.diag(raw.close_reason, raw.data[-200:])
    r, w = await asyncio.wait_for(asyncio.open_connection(srv.ip, srv.s2s_port), 5)
    raw = xt.Raw(srv, r, w, time.monotonic())
    await raw.send(s2s_header('peer.test', srv.host))
    await raw.read_until(r'</stream:features>', 5)
    await raw.send(STARTTLS.encode() + BROKEN)
    closed = await raw.read_until_close(5)
    raw.close()
    xt.ok(closed, 's2s in, a broken TLS record with <starttls/>: the connection is closed') or \
        xt.diag(raw.close_reason, raw.data[-200:])
    c = await xt.login(srv, 'alice', 'alice-pw', resource='after')
    xt.ok(c.ok, 'xmppd still serves logins') or xt.diag(c.describe())
    await xt.disconnect_all(c)
    await srv.astop()


xt.run(main)
