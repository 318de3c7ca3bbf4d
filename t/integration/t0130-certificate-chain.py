#!/usr/bin/python3
"""t0130-certificate-chain: the chain xmppd sends with its certificate.

The certificate is signed by an intermediate CA; clients trust only the
root. xmppd settles the chain once when it loads the certificate: the
intermediates in the certificate file, or else what its CA store (ca_file)
offers. A certificate file without the intermediate and a store without it
cannot be verified by such a client, which shows the check can fail."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402


def make_intermediate(d, root, name):
    """An intermediate CA signed by root (make_ca names)."""
    xt._openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt',
                 'ec_paramgen_curve:prime256v1', '-keyout', name + '.key',
                 '-out', name + '.csr', '-subj', '/CN=%s' % name], d)
    (d / (name + '.ext')).write_text(
        'basicConstraints=critical,CA:TRUE\n'
        'keyUsage=critical,keyCertSign,cRLSign\n')
    xt._openssl(['x509', '-req', '-in', name + '.csr', '-CA', root + '.pem',
                 '-CAkey', root + '.key', '-set_serial', '7',
                 '-days', '3', '-out', name + '.pem', '-extfile', name + '.ext'], d)
    return str(d / (name + '.pem'))


async def try_login(name, conf, root_pem):
    srv = xt.Server(name=name, conf=conf, start=False)
    srv.ca_file = root_pem             # the clients trust the root only
    srv.start()
    srv.register('alice', 'alice-pw')
    c = await xt.login(srv, 'alice', 'alice-pw')
    ok = c.ok
    await c.disconnect()
    code = srv.stop()
    return ok, c, code


async def main():
    d = xt.scratch_dir('t0130-pki')
    root_pem = xt.make_ca(d, 'root')
    make_intermediate(d, 'root', 'inter')
    leaf_pem = xt.make_cert(d, 'inter', 'xmppd.test')     # leaf + key, no chain

    # The intermediate in the certificate file (leaf, intermediate, key).
    with_chain = d / 'with-chain.pem'
    with_chain.write_text((d / 'xmppd.test.crt').read_text() +
                          (d / 'inter.pem').read_text() +
                          (d / 'xmppd.test.key').read_text())
    os.chmod(with_chain, 0o600)
    # A CA file with the intermediate and the root.
    bundle = d / 'bundle.pem'
    bundle.write_text((d / 'inter.pem').read_text() + (d / 'root.pem').read_text())

    ok, c, code = await try_login('t0130-file', {'certfiles': [str(with_chain)]}, root_pem)
    xt.ok(ok, 'intermediate in the certificate file: the client verifies the chain') or \
        xt.diag(c.describe())
    xt.is_(code, 0, 'xmppd exits 0')

    ok, c, code = await try_login('t0130-store', {'certfiles': [leaf_pem],
                                                  'ca_file': str(bundle)}, root_pem)
    xt.ok(ok, 'intermediate only in ca_file: xmppd sends it, the client verifies') or \
        xt.diag(c.describe())
    xt.is_(code, 0, 'xmppd exits 0')

    ok, c, code = await try_login('t0130-none', {'certfiles': [leaf_pem],
                                                 'ca_file': root_pem}, root_pem)
    xt.ok(not ok, 'intermediate nowhere: the client cannot verify, login fails')
    # And it fails for that reason: the chain xmppd sent ends at a
    # certificate whose issuer (the intermediate) the client does not have
    # (OpenSSL's X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY; RFC 5280 6.1
    # path validation needs every certificate up to a trust anchor).
    xt.like(c.error, r'CERTIFICATE_VERIFY_FAILED.*unable to get local issuer certificate',
            'intermediate nowhere: the TLS handshake fails certificate verification, '
            'unable to get the issuer certificate') or xt.diag(c.describe())
    xt.is_(code, 0, 'xmppd exits 0')


xt.run(main)
