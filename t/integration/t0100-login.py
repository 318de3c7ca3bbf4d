#!/usr/bin/python3
"""t0100-login: TLS and SASL negotiation (RFC 6120 sections 5 and 6)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_TLS = xt.NS_TLS
NS_SASL = xt.NS_SASL


async def main():
    srv = xt.Server()
    srv.register('alice', 'alice-secret')
    alice = srv.jid('alice')

    # SCRAM-SHA-256 after STARTTLS: the default client login.
    c = await xt.login(srv, 'alice', 'alice-secret', mech='SCRAM-SHA-256')
    xt.ok(c.ok, 'STARTTLS + SCRAM-SHA-256 login') or xt.diag(c.describe())
    xt.is_(c.mech, 'SCRAM-SHA-256', 'the mechanism used was SCRAM-SHA-256')
    xt.is_(c.jid.bare if c.jid else None, alice, 'bound JID is alice@xmppd.test/...')
    xt.ok(c.tls_version in ('TLSv1.2', 'TLSv1.3'), 'stream is encrypted with TLS >= 1.2 (%s)' % c.tls_version)
    await c.disconnect()

    c = await xt.login(srv, 'alice', 'alice-secret', mech='SCRAM-SHA-1')
    xt.ok(c.ok and c.mech == 'SCRAM-SHA-1', 'SCRAM-SHA-1 login') or xt.diag(c.describe())
    await c.disconnect()

    c = await xt.login(srv, 'alice', 'alice-secret', mech='PLAIN')
    xt.ok(c.ok and c.mech == 'PLAIN', 'PLAIN login over TLS') or xt.diag(c.describe())
    await c.disconnect()

    # Wrong password: RFC 6120 6.5.10 <not-authorized/>.
    for mech in ('SCRAM-SHA-256', 'PLAIN'):
        c = await xt.login(srv, 'alice', 'wrong-secret', mech=mech)
        xt.ok(not c.ok, 'wrong password with %s: no session' % mech)
        xt.is_(c.auth_failure, 'not-authorized', 'wrong password with %s: SASL <not-authorized/>' % mech)
        await c.disconnect()

    # Unknown user: same failure as a wrong password (no account probing).
    c = await xt.login(srv, 'nobody', 'whatever', mech='SCRAM-SHA-256')
    xt.is_(c.auth_failure, 'not-authorized', 'unknown user: SASL <not-authorized/>')
    await c.disconnect()

    # Direct TLS port (XEP-0368).
    c = await xt.login(srv, 'alice', 'alice-secret', direct_tls=True)
    xt.ok(c.ok, 'login on the direct TLS port') or xt.diag(c.describe())
    await c.disconnect()

    # Before TLS: features offer <starttls><required/></starttls> and no
    # mechanisms (RFC 6120 5.3.1, 6.4.1).
    raw = await xt.Raw.open(srv)
    feat = await raw.open_stream()
    xt.ok(feat is not None, 'pre-TLS stream features received') or xt.diag(raw.text[-1000:])
    st = feat.find('{%s}starttls' % NS_TLS) if feat is not None else None
    xt.ok(st is not None, 'pre-TLS features offer <starttls/>')
    xt.ok(st is not None and st.find('{%s}required' % NS_TLS) is not None,
          'pre-TLS <starttls/> says <required/>')
    xt.is_(xt.features_mechanisms(feat), [], 'pre-TLS features offer no SASL mechanism')

    # PLAIN before STARTTLS must not authenticate.
    raw.set_mark()
    await raw.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>"
                   % (NS_SASL, 'AGFsaWNlAGFsaWNlLXNlY3JldA=='))  # \0alice\0alice-secret
    await raw.read_until(r'<success\b|<failure\b.*?(?:/>|</failure>)|</(?:[\w.-]+:)?error>', 5)
    got = raw.since_mark()
    xt.unlike(got, r'<success\b', 'PLAIN before STARTTLS: no <success/>')
    fail = xt.sasl_failure(got)
    serr = xt.stream_error(got)
    xt.ok(fail is not None or serr is not None,
          'PLAIN before STARTTLS: a SASL <failure/> or a stream error (failure=%r, stream error=%r)'
          % (fail, serr)) or xt.diag('server sent: %r' % got)
    if fail is not None:
        xt.ok(fail in ('encryption-required', 'invalid-mechanism', 'not-authorized'),
              'pre-TLS SASL failure condition is encryption-required/invalid-mechanism (%r)' % fail)
    else:
        xt.ok(serr in ('policy-violation', 'not-authorized', 'unsupported-stanza-type'),
              'pre-TLS stream error condition is policy-violation/not-authorized (%r)' % serr)
    raw.close()

    # After STARTTLS (TLS 1.2, where tls-unique is defined): the full list.
    raw = await xt.Raw.open(srv)
    await raw.open_stream()
    xt.ok(await raw.starttls(tls12=True), 'STARTTLS: <proceed/> and a TLS 1.2 handshake') or \
        xt.diag(raw.text[-1000:])
    feat = await raw.open_stream()
    mechs = xt.features_mechanisms(feat)
    xt.is_(sorted(mechs), sorted(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256',
                                  'SCRAM-SHA-1', 'PLAIN']),
           'post-TLS mechanisms: SCRAM-SHA-{256,1}[-PLUS] and PLAIN')
    xt.ok(feat is not None and feat.find('{%s}starttls' % NS_TLS) is None,
          'post-TLS features no longer offer <starttls/>')
    raw.close()

    # Channel binding (RFC 5802, tls-unique over TLS 1.2).
    for mech in ('SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS'):
        c = await xt.login(srv, 'alice', 'alice-secret', mech=mech, tls12=True)
        xt.ok(c.ok, '%s login (tls-unique, TLS 1.2)' % mech) or xt.diag(c.describe())
        xt.is_(c.mech, mech, 'the mechanism used was %s' % mech)
        xt.is_(c.tls_version, 'TLSv1.2', '%s login ran over TLS 1.2' % mech)
        await c.disconnect()

    # The binding is really checked: wrong tls-unique bytes must fail, with
    # <not-authorized/> (RFC 6120 6.5.10: the credentials do not hold).
    c = await xt.login(srv, 'alice', 'alice-secret', mech='SCRAM-SHA-256-PLUS', tls12=True,
                       channel_binding='corrupt')
    xt.ok(not c.ok and c.auth_failure == 'not-authorized',
          'SCRAM-SHA-256-PLUS with wrong tls-unique data: SASL <not-authorized/> (%r)'
          % c.auth_failure) or xt.diag(c.describe())
    await c.disconnect()

    # RFC 5802 section 6: gs2 flag 'y' (client could bind, thinks the server
    # cannot) while the server offered -PLUS is a downgrade: "the server
    # MUST fail authentication", here with <not-authorized/>.
    c = await xt.login(srv, 'alice', 'alice-secret', mech='SCRAM-SHA-256', tls12=True,
                       channel_binding='y')
    xt.ok(not c.ok and c.auth_failure == 'not-authorized',
          "SCRAM-SHA-256 with gs2 flag 'y' while -PLUS was offered: SASL <not-authorized/> (%r)"
          % c.auth_failure) or xt.diag(c.describe())
    await c.disconnect()

    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
