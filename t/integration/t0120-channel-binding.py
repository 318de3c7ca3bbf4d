#!/usr/bin/python3
"""t0120-channel-binding: SCRAM -PLUS with tls-exporter (TLS 1.3) and
tls-unique (TLS 1.2), direct TLS with ALPN, and the XEP-0440 advertisement.

slixmpp knows only tls-unique, and Python's ssl module cannot compute
tls-exporter, so these logins use t/tools/xmpp-login (OpenSSL + libgsasl).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

TOOL = os.path.join(os.environ.get('top_builddir', xt.TOP_BUILDDIR), 't', 'tools', 'xmpp-login')


def login(srv, user, password, *args, port=None):
    cmd = [TOOL, '--ip', srv.ip, '--port', str(port or srv.c2s_port), '--domain', srv.host,
           '--ca', srv.ca_file, '--user', user, '--password', password] + list(args)
    p = xt.run_tool(cmd)
    return p.returncode, p.stdout.strip(), p.stderr.strip()


async def main():
    srv = xt.Server()
    srv.register('alice', 'alice-pw')
    jid = srv.jid('alice', 'test')

    rc, out, err = login(srv, 'alice', 'alice-pw', '--mech', 'SCRAM-SHA-256-PLUS')
    xt.is_(rc, 0, 'SCRAM-SHA-256-PLUS over TLS 1.3 logs in') or xt.diag(out, err)
    xt.like(out, r'tls=TLSv1\.3 mech=SCRAM-SHA-256-PLUS cb=tls-exporter .*jid=%s$' % jid,
            'it bound with tls-exporter on TLS 1.3 and got its JID')

    rc, out, err = login(srv, 'alice', 'alice-pw', '--mech', 'SCRAM-SHA-1-PLUS',
                         '--cb', 'tls-unique', '--tls12')
    xt.is_(rc, 0, 'SCRAM-SHA-1-PLUS over TLS 1.2 logs in') or xt.diag(out, err)
    xt.like(out, r'tls=TLSv1\.2 mech=SCRAM-SHA-1-PLUS cb=tls-unique ',
            'it bound with tls-unique on TLS 1.2')

    # RFC 9266 defines tls-exporter for TLS 1.3 only.
    rc, out, err = login(srv, 'alice', 'alice-pw', '--mech', 'SCRAM-SHA-256-PLUS',
                         '--cb', 'tls-exporter', '--tls12')
    xt.ok(rc != 0 and 'not-authorized' in out,
          'tls-exporter on TLS 1.2 is refused with not-authorized') or xt.diag(out, err)

    # The tls-exporter binding is really compared (RFC 5802 6, RFC 9266 2):
    # data that is not this connection's (what a client behind a TLS-
    # terminating attacker would send) fails authentication. The SCRAM
    # proof covers the sent data, so only the comparison can catch it.
    # RFC 6120 6.5.10: <not-authorized/> (the credentials do not hold on
    # this channel; Prosody says <malformed-request/>, but the request is
    # well-formed).
    # After the failure the stream is still unauthenticated: a bind on it
    # is refused with <not-authorized/> (RFC 6120 4.9.3.12), so no session.
    rc, out, err = login(srv, 'alice', 'alice-pw', '--mech', 'SCRAM-SHA-256-PLUS',
                         '--corrupt-cb', '--bind-after-failure')
    xt.is_((rc, out), (1, 'FAIL SASL failure not-authorized; bind after it: stream error not-authorized'),
           'a corrupted tls-exporter binding on TLS 1.3: SASL <not-authorized/>, and no session') \
        or xt.diag(err)
    xt.is_(err, 'trying tls=TLSv1.3 mech=SCRAM-SHA-256-PLUS cb=tls-exporter (corrupted)',
           'that was tls-exporter on TLS 1.3')
    rc, out, err = login(srv, 'alice', 'alice-pw', '--mech', 'SCRAM-SHA-1-PLUS', '--corrupt-cb')
    xt.is_((rc, out), (1, 'FAIL SASL failure not-authorized'),
           'the same with SCRAM-SHA-1-PLUS') or xt.diag(err)

    rc, out, err = login(srv, 'alice', 'wrong', '--mech', 'SCRAM-SHA-256-PLUS')
    xt.ok(rc != 0 and 'not-authorized' in out, 'a wrong password with -PLUS: not-authorized') \
        or xt.diag(out, err)

    # XEP-0368: direct TLS on its own port, ALPN xmpp-client.
    rc, out, err = login(srv, 'alice', 'alice-pw', '--mech', 'SCRAM-SHA-256-PLUS',
                         '--direct-tls', port=srv.tls_port)
    xt.is_(rc, 0, 'direct TLS login works') or xt.diag(out, err)
    xt.like(out, r'alpn=xmpp-client ', 'the server selected ALPN xmpp-client')

    # What the features say after STARTTLS with TLS 1.3 (XEP-0440).
    r = await xt.Raw.open(srv)
    await r.open_stream()
    ok = await r.starttls()
    xt.ok(ok, 'raw STARTTLS works')
    await r.open_stream()
    got = r.since_mark()
    r.close()
    xt.like(got, r"<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding "
            r"type='tls-exporter'/>", 'XEP-0440 advertises tls-exporter on TLS 1.3')
    xt.like(got, r'<mechanism>SCRAM-SHA-256-PLUS</mechanism><mechanism>SCRAM-SHA-1-PLUS'
            r'</mechanism><mechanism>SCRAM-SHA-256</mechanism>', '-PLUS is offered first')

    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
