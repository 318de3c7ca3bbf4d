#!/usr/bin/python3
"""t0620-operations: logging to a file (reopened on SIGHUP), the pidfile,
dropping privileges to `user`, and whitespace keepalives."""

import asyncio
import os
import pwd
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402


def uid_of(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('Uid:'):
                return [int(x) for x in line.split()[1:]]
    return None


async def main():
    # 1. log: a file, reopened on SIGHUP (logrotate moves it away first).
    srv = xt.Server(conf={'log': 'xmppd-file.log', 'loglevel': 'info'})
    path = str(srv.dir / 'xmppd-file.log')
    srv.register('alice', 'alice-pw')
    c = await xt.login(srv, 'alice')
    xt.ok(c.ok, 'login with logging to a file') or xt.diag(c.describe())
    with open(path) as f:
        text = f.read()
    xt.like(text, r'\[info\] c2s#\S+: alice@xmppd\.test authenticated with SCRAM-SHA-256',
            'the log file names the login, with level and connection')
    xt.unlike(text, r'\[debug\]', 'loglevel info keeps debug lines out')

    # 2. The pidfile holds the server's pid.
    with open(str(srv.dir / 'xmppd.pid')) as f:
        xt.is_(int(f.read().strip()), srv.proc.pid, 'the pidfile holds the pid')

    os.rename(path, path + '.1')
    srv.signal(xt.signal.SIGHUP)
    # Wait until the server says, in the new file, that it reloaded (a
    # loaded machine takes longer than any fixed sleep).
    for _ in range(200):
        if os.path.exists(path):
            with open(path) as f:
                if 'configuration reloaded' in f.read():
                    break
        await asyncio.sleep(0.05)
    await c.disconnect()
    xt.ok(os.path.exists(path), 'after SIGHUP a new log file is opened')
    c = await xt.login(srv, 'alice')
    text = ''
    for _ in range(100):
        with open(path) as f:
            text = f.read()
        if 'authenticated' in text:
            break
        await asyncio.sleep(0.05)
    xt.like(text, r'alice@xmppd\.test authenticated', 'the next login is logged to the new file')

    # 2b. SIGHUP reloads certificates: new connections get the new one.
    def served_cert():
        import socket
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection((srv.ip, srv.tls_port), timeout=5) as sock:
            with ctx.wrap_socket(sock, server_hostname=srv.host) as tls:
                return tls.getpeercert(binary_form=True)
    before = served_cert()
    newdir = srv.dir / 'newcert'
    newdir.mkdir()
    newca, newpem = xt.make_certs(newdir, srv.hosts)
    with open(newpem) as f:
        pem = f.read()
    with open(srv.cert_file, 'w') as f:
        f.write(pem)
    srv.ca_file = newca     # clients from now on trust the new CA
    srv.__dict__.pop('_ssl_contexts', None)

    def reload_count():
        with open(path) as f:   # this server logs to its file
            return f.read().count('configuration reloaded')
    n0 = reload_count()
    srv.signal(xt.signal.SIGHUP)
    reloaded = False
    for _ in range(100):
        if reload_count() > n0:
            reloaded = True
            break
        await asyncio.sleep(0.05)
    after = served_cert()
    xt.ok(reloaded and before != after and after is not None,
          'after SIGHUP new connections get the new certificate')

    # 3. Whitespace keepalives between stanzas are fine (RFC 6120 4.6.1).
    r = await xt.Raw.open(srv)
    await r.login('alice', 'alice-pw', 'ws')
    for _ in range(5):
        await r.send('  \n ')
        await asyncio.sleep(0.1)
    r.set_mark()
    await r.send("<iq type='get' id='ka1'><ping xmlns='urn:xmpp:ping'/></iq>")
    m = await r.read_until(r"<iq[^>]*id='ka1'", 3)
    xt.ok(m is not None and not r.closed, 'after whitespace keepalives the stream still works')
    r.close()
    await c.disconnect()
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')
    xt.ok(not os.path.exists(str(srv.dir / 'xmppd.pid')), 'the pidfile is removed at exit')

    # 4. user: the daemon drops root after binding its ports.
    if os.geteuid() != 0:
        xt.skip('not root: the privilege drop cannot be tested')
    else:
        nobody = pwd.getpwnam('nobody')
        srv2 = xt.Server(name='t0620-user', conf={'user': 'nobody'}, start=False)
        # The scratch directory must be reachable by the user.
        p = srv2.dir
        while str(p) != '/':
            os.chmod(str(p), os.stat(str(p)).st_mode | 0o011)
            p = p.parent
        os.chmod(srv2.cert_file, 0o644)
        srv2.start()
        srv2.register('bob', 'bob-pw')
        uids = uid_of(srv2.proc.pid)
        xt.is_(uids, [nobody.pw_uid] * 4, 'xmppd runs as nobody (real, effective, saved, fs uid)')
        st = os.stat(str(srv2.dir / 'spool' / 'data.mdb'))
        xt.is_(st.st_uid, nobody.pw_uid, 'the spool belongs to nobody')
        c = await xt.login(srv2, 'bob')
        xt.ok(c.ok, 'logins work after the privilege drop') or xt.diag(c.describe())
        await c.disconnect()
        xt.is_(srv2.stop(), 0, 'xmppd (as nobody) exits 0 on SIGTERM')


xt.run(main)
