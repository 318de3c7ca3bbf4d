"""
xmppdtest - the harness of xmppd's integration tests (t/integration/).

Each test file is a standalone script, in the manner of git's t/: it starts its
own xmppd in its own scratch directory, talks to it, and prints TAP.  Run one
with

    /usr/bin/python3 t/integration/t0100-login.py

or all of them with `prove -e /usr/bin/python3 t/integration/*.py`.  (Always
/usr/bin/python3: the harness uses Debian's python3-slixmpp.)

Environment:
    top_builddir     where xmppd and xmppctl were built (default: the repo)
    XMPPD, XMPPCTL   the binaries (default: $top_builddir/xmppd, .../xmppctl)
    XMPPDTEST_VERBOSE=1   slixmpp's debug log on stderr
    XMPPDTEST_KEEP=1      keep the scratch directory even on success

What a test sees:
    TAP         plan, ok, is_, like, diag, note, done (and run, which calls it)
    Server      a running xmppd with its own loopback address, ports,
                certificates, configuration and spool; ctl() runs xmppctl
    login()     a slixmpp client logged in (or the reason it is not)
    Raw         a byte-level connection for hostile input
Everything that waits is bounded in time.
"""

import asyncio
import base64
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS_STREAM = 'http://etherx.jabber.org/streams'
NS_STREAMS_ERR = 'urn:ietf:params:xml:ns:xmpp-streams'
NS_STANZAS_ERR = 'urn:ietf:params:xml:ns:xmpp-stanzas'
NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls'
NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl'
NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind'
NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session'
NS_CLIENT = 'jabber:client'

# What a sanitizer prints when it finds something, in every format the
# runtimes of gcc 12 and clang 14 use: "==N==ERROR: AddressSanitizer: ...",
# "==N==ERROR: LeakSanitizer: detected memory leaks", "FILE:LINE: runtime
# error: ..." (UBSan), "AddressSanitizer:DEADLYSIGNAL", "==N==AddressSanitizer
# CHECK failed: ..." (an internal check), "==N==LeakSanitizer has encountered
# a fatal error" (LSan could not run), and the closing "SUMMARY: ...".
SANITIZER_RE = re.compile(
    r'ERROR: (?:Address|Leak|UndefinedBehavior|Thread|Memory)Sanitizer'
    r'|(?:Address|Leak|UndefinedBehavior|Thread|Memory)Sanitizer(?::DEADLYSIGNAL| CHECK failed'
    r'| has encountered a fatal error)'
    r'|SUMMARY: (?:Address|Leak|UndefinedBehavior|Thread|Memory)Sanitizer'
    r'|\bruntime error: ')

HERE = Path(__file__).resolve().parent
TOP_SRCDIR = HERE.parent.parent
TOP_BUILDDIR = Path(os.environ.get('top_builddir') or TOP_SRCDIR).resolve()
# Where the modules built by make are (libtool puts them in .libs).
MODULE_DIR = os.environ.get('XMPPD_TEST_MODULE_DIR') or str(TOP_BUILDDIR / 'modules' / '.libs')
XMPPD = os.environ.get('XMPPD') or str(TOP_BUILDDIR / 'xmppd')
XMPPCTL = os.environ.get('XMPPCTL') or str(TOP_BUILDDIR / 'xmppctl')
TEST_NAME = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else 'test'
VERBOSE = os.environ.get('XMPPDTEST_VERBOSE', '') not in ('', '0')

logging.basicConfig(level=logging.DEBUG if VERBOSE else logging.CRITICAL,
                    format='%(asctime)s %(name)s %(levelname)s %(message)s')


class HarnessError(Exception):
    """A set-up step failed: the test cannot go on."""


# ---------------------------------------------------------------------------
# TAP
# ---------------------------------------------------------------------------

_tap = {'count': 0, 'failed': 0, 'plan': None, 'done': False}
_scratch_dirs = []
_servers = []
_tool_reports = []      # (command, stderr) of test tools with a sanitizer report


def _out(line):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


def plan(n):
    """Announces n tests up front (optional: done() prints the plan otherwise)."""
    _tap['plan'] = n
    _out('1..%d' % n)


def diag(*msg):
    """A diagnostic for a human: on stderr, so prove shows it."""
    text = ' '.join(str(m) for m in msg)
    for line in text.splitlines() or ['']:
        sys.stderr.write('# ' + line + '\n')
    sys.stderr.flush()


def note(*msg):
    """A comment in the TAP stream (stdout)."""
    text = ' '.join(str(m) for m in msg)
    for line in text.splitlines() or ['']:
        _out('# ' + line)


def ok(cond, name=''):
    _tap['count'] += 1
    n = _tap['count']
    name = str(name).replace('#', '\\#').replace('\n', ' ')
    if cond:
        _out('ok %d - %s' % (n, name))
    else:
        _tap['failed'] += 1
        _out('not ok %d - %s' % (n, name))
        diag('  Failed test %r' % name)
        script = os.path.abspath(sys.argv[0]) if sys.argv else None
        for frame in reversed(traceback.extract_stack()[:-1]):
            if os.path.abspath(frame.filename) == script:
                diag('  at %s line %d.' % (os.path.basename(frame.filename), frame.lineno))
                break
    return bool(cond)


def skip(why):
    """A TAP skip: the check cannot run here (and says why)."""
    _tap['count'] += 1
    _out('ok %d # skip %s' % (_tap['count'], str(why).replace('\n', ' ')))


def is_(got, expected, name=''):
    if not ok(got == expected, name):
        diag('         got: %r' % (got,))
        diag('    expected: %r' % (expected,))
        return False
    return True


def like(got, regex, name=''):
    """ok if regex (a str) is found in got (str or bytes)."""
    if isinstance(got, bytes):
        got = got.decode('utf-8', 'replace')
    found = got is not None and re.search(regex, got, re.S) is not None
    if not ok(found, name):
        diag('                  %r' % ((got or '')[:2000],))
        diag("    doesn't match %r" % regex)
        return False
    return True


def unlike(got, regex, name=''):
    if isinstance(got, bytes):
        got = got.decode('utf-8', 'replace')
    found = got is not None and re.search(regex, got, re.S) is not None
    if not ok(not found, name):
        diag('                  %r' % ((got or '')[:2000],))
        diag('          matches %r' % regex)
        return False
    return True


def failed():
    return _tap['failed']


# ---------------------------------------------------------------------------
# Sanitizer reports and exit statuses
#
# These are part of every test rather than tests of their own: a clean
# scan prints nothing, a report or a bad exit status is a failing test
# with the report as diagnostics.
# ---------------------------------------------------------------------------

def sanitizer_lines(text):
    """The lines of text (str or bytes) that are part of a sanitizer report."""
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    return [l for l in (text or '').splitlines() if SANITIZER_RE.search(l)]


def note_tool_output(what, stderr):
    """Records a test tool's stderr if it holds a sanitizer report; the
    test then fails at done()."""
    if sanitizer_lines(stderr):
        _tool_reports.append((what, stderr if isinstance(stderr, str)
                              else stderr.decode('utf-8', 'replace')))


def run_tool(cmd, **kw):
    """subprocess.run for the project's own programs (xmpp-login, xmppd
    in a one-off mode, ...): output captured as text, stdin closed, a
    timeout of 30 s unless given, and stderr scanned for sanitizer
    reports.  Returns the CompletedProcess."""
    kw.setdefault('capture_output', True)
    kw.setdefault('text', True)
    kw.setdefault('timeout', 30)
    kw.setdefault('stdin', subprocess.DEVNULL)
    r = subprocess.run([str(c) for c in cmd], **kw)
    note_tool_output(' '.join(str(c) for c in cmd), r.stderr or '')
    return r


def in_ci():
    """True when the suite runs in CI (CI=true, as .ci/run sets it)."""
    return os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')


def require_peer(what, *paths):
    """A test that needs a peer nobody here wrote (Prosody, ...) calls this
    before anything else.  If one of paths is not an executable, the test
    ends: in CI (CI=true) with a failure, because CI installs every peer
    and a missing one means the interop test silently stopped running;
    on a developer's machine with a skip that says so.  Returns only if
    they are all there."""
    missing = [p for p in paths if not os.access(p, os.X_OK)]
    if not missing:
        return
    if in_ci():
        ok(False, '%s is installed (CI=true: a missing peer is a failure): %s missing'
           % (what, ', '.join(missing)))
    else:
        skip('%s is not installed (%s): skipped on this developer machine; '
             'CI installs it and fails without it' % (what, ', '.join(missing)))
    done()


def check_tool_reports():
    if _tool_reports:
        ok(False, 'test tools ran without a sanitizer report')
        diag('%d run(s) with a report; the first, from `%s`:'
             % (len(_tool_reports), _tool_reports[0][0]))
        diag(_tool_reports[0][1][-3000:])
        del _tool_reports[:]


def done():
    """Prints the plan if none was given, cleans up, exits 0 or 1."""
    if _tap['done']:
        return
    _tap['done'] = True
    for s in list(_servers):
        s.teardown()
    check_tool_reports()
    if _tap['plan'] is None:
        _out('1..%d' % _tap['count'])
    elif _tap['plan'] != _tap['count']:
        diag('planned %d tests but ran %d' % (_tap['plan'], _tap['count']))
        _tap['failed'] += 1
    keep = _tap['failed'] or os.environ.get('XMPPDTEST_KEEP')
    for d in _scratch_dirs:
        if keep:
            diag('scratch directory kept: %s' % d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    if _tap['failed']:
        diag('failed %d test(s) of %d' % (_tap['failed'], _tap['count']))
    sys.exit(1 if _tap['failed'] else 0)


done_testing = done


def _loop_exception_handler(loop, context):
    # slixmpp leaves tasks behind when a connection dies mid-negotiation; a
    # test judges by what it observes, so these are only shown when asked.
    if VERBOSE:
        loop.default_exception_handler(context)


def run(main, timeout=150):
    """Runs `async def main()` under a bound, then done().

    An exception or a timeout is reported as a failing test, with the
    traceback as diagnostics, so a broken set-up never looks like a pass.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(_loop_exception_handler)
    try:
        loop.run_until_complete(asyncio.wait_for(main(), timeout))
    except asyncio.TimeoutError:
        ok(False, 'test script finished within %d s' % timeout)
    except HarnessError as e:
        ok(False, 'set-up: %s' % str(e).splitlines()[0])
        diag(str(e))
    except Exception:
        ok(False, 'test script raised no exception')
        diag(traceback.format_exc())
    finally:
        for s in list(_servers):
            s.teardown()
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=2))
        except Exception:
            pass
        loop.close()
    done()


# ---------------------------------------------------------------------------
# Scratch directories, addresses, ports
# ---------------------------------------------------------------------------

def scratch_dir(name=None):
    """A fresh directory t/tmp/<name>-<pid>[-n]/, removed by done() on success."""
    base = TOP_BUILDDIR / 't' / 'tmp'
    base.mkdir(parents=True, exist_ok=True)
    stem = '%s-%d' % (name or TEST_NAME, os.getpid())
    d = base / stem
    n = 1
    while d.exists():
        n += 1
        d = base / ('%s-%d' % (stem, n))
    d.mkdir()
    _scratch_dirs.append(d)
    return d


def pick_loopback_ip(exclude=()):
    """A random 127.0.0.X (X in 2..250) that can be bound."""
    for _ in range(100):
        ip = '127.0.0.%d' % random.randint(2, 250)
        if ip in exclude:
            continue
        s = socket.socket()
        try:
            s.bind((ip, 0))
            return ip
        except OSError:
            continue
        finally:
            s.close()
    raise HarnessError('no bindable 127.0.0.X address')


def free_ports(ip, n):
    """n distinct ports free on ip at the time of the call."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind((ip, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


# ---------------------------------------------------------------------------
# YAML (a small block-style writer: enough for xmppd.yml)
# ---------------------------------------------------------------------------

_PLAIN_RE = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]*\Z')
_YAML_WORDS = {'y', 'n', 'yes', 'no', 'true', 'false', 'on', 'off', 'null', '~'}


def _yaml_scalar(v):
    if v is True:
        return 'true'
    if v is False:
        return 'false'
    if v is None:
        return 'null'
    if isinstance(v, (int, float)):
        return str(v)
    v = str(v)
    if _PLAIN_RE.match(v) and v.lower() not in _YAML_WORDS:
        return v
    return json.dumps(v)


def to_yaml(d, indent=0):
    """Block-style YAML for a dict of scalars, lists and dicts."""
    pad = ' ' * indent
    lines = []
    for k, v in d.items():
        if isinstance(v, dict) and not v:
            lines.append('%s%s: {}' % (pad, k))
        elif isinstance(v, dict):
            lines.append('%s%s:' % (pad, k))
            lines.append(to_yaml(v, indent + 2))
        elif isinstance(v, (list, tuple)) and any(isinstance(i, dict) for i in v):
            lines.append('%s%s:' % (pad, k))
            for item in v:
                sub = to_yaml(item, indent + 4).splitlines()
                lines.append('%s  - %s' % (pad, sub[0].lstrip()))
                lines.extend(sub[1:])
        elif isinstance(v, (list, tuple)):
            lines.append('%s%s: [%s]' % (pad, k, ', '.join(_yaml_scalar(i) for i in v)))
        else:
            lines.append('%s%s: %s' % (pad, k, _yaml_scalar(v)))
    return '\n'.join(lines)


# ---------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------

def _openssl(args, cwd):
    r = subprocess.run(['openssl'] + args, cwd=cwd, capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        raise HarnessError('openssl %s failed:\n%s' % (' '.join(args), r.stderr))


def make_certs(d, hosts, key='ec'):
    """A test CA and a certificate for hosts (SAN DNS names), in d.

    Returns (ca.pem, server.pem); server.pem holds the certificate followed
    by its private key, as xmppd's certfiles expect.
    """
    d = Path(d)
    if key == 'rsa':
        newkey = ['-newkey', 'rsa:2048']
    else:
        newkey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']
    _openssl(['req', '-x509', '-nodes'] + newkey +
             ['-keyout', 'ca.key', '-out', 'ca.pem', '-days', '3',
              '-subj', '/CN=xmppd test CA',
              '-addext', 'basicConstraints=critical,CA:TRUE',
              '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], d)
    _openssl(['req', '-new', '-nodes'] + newkey +
             ['-keyout', 'server.key', '-out', 'server.csr',
              '-subj', '/CN=%s' % hosts[0]], d)
    (d / 'server.ext').write_text(
        'subjectAltName=%s\n'
        'basicConstraints=CA:FALSE\n'
        'keyUsage=critical,digitalSignature,keyEncipherment\n'
        'extendedKeyUsage=serverAuth,clientAuth\n'
        'subjectKeyIdentifier=hash\n'
        'authorityKeyIdentifier=keyid\n'
        % ','.join('DNS:%s' % h for h in hosts))
    _openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem',
              '-CAkey', 'ca.key', '-set_serial', str(random.randint(1, 2**62)),
              '-days', '3', '-out', 'server.crt', '-extfile', 'server.ext'], d)
    pem = (d / 'server.crt').read_text() + (d / 'server.key').read_text()
    (d / 'server.pem').write_text(pem)
    os.chmod(d / 'server.pem', 0o600)
    return str(d / 'ca.pem'), str(d / 'server.pem')


# For federation tests: one CA signing several servers' certificates.

def make_ca(d, name):
    d.mkdir(exist_ok=True)
    _openssl(['req', '-x509', '-nodes', '-newkey', 'ec', '-pkeyopt',
                 'ec_paramgen_curve:prime256v1', '-keyout', name + '.key',
                 '-out', name + '.pem', '-days', '3', '-subj', '/CN=%s' % name,
                 '-addext', 'basicConstraints=critical,CA:TRUE',
                 '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], d)
    return str(d / (name + '.pem'))


def make_cert(d, ca, host):
    """host's certificate and key in one PEM, signed by ca (a make_ca name)."""
    _openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt',
                 'ec_paramgen_curve:prime256v1', '-keyout', host + '.key',
                 '-out', host + '.csr', '-subj', '/CN=%s' % host], d)
    (d / (host + '.ext')).write_text(
        'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n'
        'keyUsage=critical,digitalSignature,keyEncipherment\n'
        'extendedKeyUsage=serverAuth,clientAuth\n' % host)
    _openssl(['x509', '-req', '-in', host + '.csr', '-CA', ca + '.pem',
                 '-CAkey', ca + '.key', '-set_serial', str(int(time.time() * 1000)),
                 '-days', '3', '-out', host + '.crt', '-extfile', host + '.ext'], d)
    pem = d / (host + '.pem')
    pem.write_text((d / (host + '.crt')).read_text() + (d / (host + '.key')).read_text())
    os.chmod(pem, 0o600)
    return str(pem)


# ---------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------

class Server:
    """One xmppd, in its own scratch directory, on its own 127.0.0.X.

    conf: keys merged over the defaults (a value of None drops the key);
    c2s / tls_listener: keys merged into the STARTTLS / direct-TLS listener;
    extra_conf: raw YAML appended to the file (keys not otherwise written).
    """

    def __init__(self, name=None, hosts=('xmppd.test',), workers=2,
                 extra_conf='', conf=None, c2s=None, tls_listener=None,
                 start=True, key='ec', modules=None):
        self.name = name or TEST_NAME
        self.hosts = list(hosts)
        self.host = self.hosts[0]
        self.dir = scratch_dir(self.name)
        self.ip = pick_loopback_ip()
        self.c2s_port, self.tls_port = free_ports(self.ip, 2)
        self.ca_file, self.cert_file = make_certs(self.dir, self.hosts, key)
        self.conf_path = str(self.dir / 'xmppd.yml')
        self.log_path = str(self.dir / 'xmppd.log')
        self.spool = str(self.dir / 'spool')
        os.makedirs(self.spool, exist_ok=True)
        self.conf = {
            'hosts': self.hosts,
            'loglevel': 'debug',
            'certfiles': [self.cert_file],
            'workers': workers,
            'spool_dir': self.spool,
            'pidfile': str(self.dir / 'xmppd.pid'),
            'ctl_socket': str(self.dir / 'xmppd.ctl'),
            'negotiation_timeout': 30,
            'max_xml_depth': 32,
            'max_connections_per_ip': 100,
            'auth_failure_delay_ms': 0,
            'max_auth_attempts': 3,
            'scram_iterations': 4096,
        }
        c2s_l = {'port': self.c2s_port, 'ip': self.ip, 'module': 'c2s',
                 'starttls_required': True, 'max_stanza_size': 262144}
        tls_l = {'port': self.tls_port, 'ip': self.ip, 'module': 'c2s',
                 'tls': True}
        if modules is not None:
            # modules: {name: {options}}; loaded from the build tree
            # (MODULE_DIR) unless the test says otherwise.
            self.conf['module_dir'] = MODULE_DIR
            self.conf['modules'] = modules
        c2s_l.update(c2s or {})
        tls_l.update(tls_listener or {})
        self.conf['listen'] = [c2s_l, tls_l]
        for k, v in (conf or {}).items():
            if v is None:
                self.conf.pop(k, None)
            else:
                self.conf[k] = v
        self.extra_conf = extra_conf
        self.write_config()
        self.proc = None
        self._torn_down = False
        # How each run of this server ended: (exit status, how) with how
        # 'term' (SIGTERM from stop), 'kill' (kill9() on purpose), 'hung'
        # (killed because SIGTERM did not end it) or 'exited' (it ended by
        # itself: xmppctl stop, a failed start, a crash).
        self.exits = []
        self.tool_sanitizer_reports = []
        _servers.append(self)
        if start:
            self.start()

    # -- configuration -----------------------------------------------------

    def config_text(self, conf=None, extra_conf=None):
        text = to_yaml(conf if conf is not None else self.conf) + '\n'
        extra = self.extra_conf if extra_conf is None else extra_conf
        if extra:
            text += extra.rstrip('\n') + '\n'
        return text

    def write_config(self, text=None, path=None):
        """Writes xmppd.yml (or text to path); returns the path."""
        path = path or self.conf_path
        with open(path, 'w') as f:
            f.write(text if text is not None else self.config_text())
        return path

    # -- process -----------------------------------------------------------

    def start(self, timeout=10, rlimit_nofile=None):
        """Starts xmppd and waits until the c2s port accepts connections.

        rlimit_nofile: run it with RLIMIT_NOFILE set to that many
        descriptors, soft and hard (xmppd raises its soft limit to the
        hard one at start-up, so both must be low)."""
        if not os.access(XMPPD, os.X_OK):
            raise HarnessError('%s is not an executable (set XMPPD or top_builddir)' % XMPPD)
        self._log_fh = open(self.log_path, 'ab')
        self._log_fh.write(('--- xmppd start %s ---\n' % time.strftime('%H:%M:%S')).encode())
        self._log_fh.flush()
        preexec = None
        if rlimit_nofile is not None:
            import resource

            def preexec():
                resource.setrlimit(resource.RLIMIT_NOFILE, (rlimit_nofile, rlimit_nofile))
        self.proc = subprocess.Popen([XMPPD, '-c', self.conf_path],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._log_fh, stderr=self._log_fh,
                                     cwd=str(self.dir), preexec_fn=preexec)
        self._reaped = False
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise HarnessError('xmppd exited with %s during start-up; log:\n%s'
                                   % (self.proc.returncode, self.log()[-3000:]))
            try:
                with socket.create_connection((self.ip, self.c2s_port), timeout=1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill9()
                raise HarnessError('xmppd did not accept on %s:%d within %d s; log:\n%s'
                                   % (self.ip, self.c2s_port, timeout, self.log()[-3000:]))
            time.sleep(0.05)
        # The control socket may come up a moment after the listeners.
        sock = self.conf.get('ctl_socket')
        if sock:
            until = min(deadline, time.monotonic() + 2)
            while not os.path.exists(sock) and time.monotonic() < until:
                time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _reap(self, timeout, how='exited'):
        if self.proc.returncode is not None and self._reaped:
            return self.proc.returncode
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._log_fh.close()
        self._reaped = True
        self.exits.append((code, how))
        return code

    @property
    def exit_codes(self):
        return [c for c, _ in self.exits]

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def stop(self, timeout=10):
        """SIGTERM, then waits; returns the exit code (None if it hung and
        had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self._reap(0)
        self.proc.send_signal(signal.SIGTERM)
        code = self._reap(timeout, 'term')
        if code is None:
            diag('xmppd did not exit within %d s of SIGTERM; killing it' % timeout)
            self.kill9('hung')
        return code

    async def astop(self, timeout=10):
        """stop() that keeps the event loop (and so the clients) running."""
        if self.proc is None:
            return None
        how = 'exited'
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            how = 'term'
        code = await self.await_exit(timeout, how)
        if code is None:
            diag('xmppd did not exit within %d s of SIGTERM; killing it' % timeout)
            self.kill9('hung')
        return code

    async def await_exit(self, timeout=10, how='exited'):
        """Waits (without blocking the loop) for the process to exit."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        return self._reap(0, how)

    def kill9(self, how='kill'):
        """SIGKILL, on purpose: the run's exit status is not held against
        the server at teardown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self._reap(10, how)

    def restart(self):
        """stop() then start(); returns stop()'s exit code."""
        code = self.stop()
        self.start()
        return code

    def log(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def teardown(self):
        """Stops a still-running server, then fails the test if any run of
        it ended with a status other than 0 (SIGKILL on purpose aside), or
        if its log or its xmppctl / --check-config runs hold a sanitizer
        report.  Nothing is printed when all is well: these checks are
        part of the test, not tests of their own."""
        if self._torn_down:
            return
        self._torn_down = True
        if self.proc is not None:
            if self.proc.poll() is None:
                self.stop()
            else:
                self._reap(0)
        bad = [(c, how) for c, how in self.exits if how != 'kill' and c != 0]
        if bad:
            ok(False, 'xmppd (%s) ended with status 0 each time' % self.dir.name)
            diag('how each run ended (status, how): %r' % (self.exits,))
            diag(self.log()[-3000:])
        text = self.log()
        hits = sanitizer_lines(text)
        if hits:
            ok(False, 'xmppd log (%s) has no sanitizer report' % self.dir.name)
            idx = text.find(hits[0])
            diag(text[max(0, idx - 200):idx + 4000])
        reps = self.tool_sanitizer_reports
        if reps:
            ok(False, 'xmppctl / --check-config runs had no sanitizer report')
            diag('%d run(s) with a report; the first, from `%s`:' % (len(reps), reps[0][0]))
            diag(reps[0][1][-3000:])
        if self in _servers:
            _servers.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    # -- xmppctl -----------------------------------------------------------

    def ctl(self, *args, timeout=15, config=True):
        """Runs xmppctl -c xmppd.yml ARGS; returns (exit code, stdout, stderr)."""
        cmd = [XMPPCTL] + (['-c', self.conf_path] if config else []) + [str(a) for a in args]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            return None, e.stdout or '', 'xmppctl timed out after %d s' % timeout
        except OSError as e:
            return None, '', 'cannot run %s: %s' % (XMPPCTL, e)
        self._note_sanitizer('xmppctl ' + ' '.join(str(a) for a in args), r.stderr)
        return r.returncode, r.stdout, r.stderr

    def check_config(self, path=None, timeout=15):
        """Runs xmppd --check-config -c PATH; returns (exit code, stdout+stderr)."""
        path = path or self.conf_path
        r = subprocess.run([XMPPD, '--check-config', '-c', path], capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        self._note_sanitizer('xmppd --check-config -c ' + path, r.stderr)
        return r.returncode, r.stdout + r.stderr

    def _note_sanitizer(self, what, stderr):
        if sanitizer_lines(stderr):
            self.tool_sanitizer_reports.append((what, stderr))

    async def actl(self, *args, timeout=15):
        """ctl() off the event loop, so clients keep running meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.ctl(*args, timeout=timeout))

    def register(self, user, password, host=None):
        """Creates an account; a failure stops the test (it is set-up)."""
        code, out, err = self.ctl('register', user, host or self.host, password)
        if code != 0:
            raise HarnessError('xmppctl register %s failed (%r): %s%s'
                               % (user, code, out, err))

    def connected(self, quiet=False):
        """`xmppctl connected` as a list of dicts (jid, worker, addr, priority);
        None if the command failed."""
        code, out, err = self.ctl('connected')
        if code != 0:
            self.connected_error = (code, err)
            if not quiet:
                diag('xmppctl connected failed (%r): %s' % (code, err))
            return None
        return parse_connected(out)

    async def aconnected(self, quiet=False):
        return await asyncio.get_running_loop().run_in_executor(None, self.connected, quiet)

    async def wait_connected(self, pred, timeout=5):
        """Polls `xmppctl connected` until pred(sessions) holds; returns the
        last listing (check pred again to know whether it held)."""
        deadline = time.monotonic() + timeout
        while True:
            sessions = await self.aconnected(quiet=True)
            if sessions is not None and pred(sessions):
                return sessions
            if time.monotonic() > deadline:
                if sessions is None:
                    diag('xmppctl connected failed (%r): %s' % self.connected_error)
                return sessions
            await asyncio.sleep(0.1)

    # -- helpers for clients ----------------------------------------------

    def jid(self, user, resource=None):
        return '%s@%s%s' % (user, self.host, '/' + resource if resource else '')

    def client_ssl_context(self, tls12=False):
        """A client context trusting only the test CA, hostname checked.
        Shared by the clients of this server (loading the system's CA
        bundle for each of 500 clients would cost seconds)."""
        cache = self.__dict__.setdefault('_ssl_contexts', {})
        if tls12 not in cache:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = True
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=self.ca_file)
            if tls12:
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            cache[tls12] = ctx
        return cache[tls12]


def parse_connected(text):
    sessions = []
    for line in text.splitlines():
        if not line.strip():
            continue
        f = line.split('\t')
        s = {'jid': f[0], 'worker': f[1] if len(f) > 1 else None,
             'addr': f[2] if len(f) > 2 else None,
             'priority': f[3] if len(f) > 3 else None, 'line': line}
        try:
            s['priority'] = int(s['priority'])
        except (TypeError, ValueError):
            pass
        sessions.append(s)
    return sessions


def session_of(sessions, full_jid):
    for s in sessions or ():
        if s['jid'] == str(full_jid):
            return s
    return None


# ---------------------------------------------------------------------------
# Clients (slixmpp)
# ---------------------------------------------------------------------------

class Mailbox:
    """Stanzas received, waited on by predicate, each taken once."""

    def __init__(self):
        self.items = []
        self._cond = asyncio.Condition()

    def put(self, item):
        async def _notify():
            async with self._cond:
                self._cond.notify_all()
        self.items.append(item)
        asyncio.ensure_future(_notify())

    def _take(self, pred):
        for i, item in enumerate(self.items):
            if pred is None or pred(item):
                return self.items.pop(i)
        return None

    async def get(self, pred=None, timeout=5):
        """The first stanza matching pred, or None after timeout seconds."""
        deadline = time.monotonic() + timeout
        async with self._cond:
            while True:
                item = self._take(pred)
                if item is not None:
                    return item
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    await asyncio.wait_for(self._cond.wait(), left)
                except asyncio.TimeoutError:
                    return self._take(pred)


class Client:
    """A slixmpp ClientXMPP and what happened to it.

    After login(): ok is True once session_start fired; otherwise error says
    why ('failed_auth', 'disconnected', 'stream_error', 'timeout', ...),
    auth_failure holds the SASL failure condition and stream_error the
    stream error condition, if any.
    """

    def __init__(self, server, user, password, host=None, resource=None,
                 priority=None, mech='SCRAM-SHA-256', tls12=False,
                 direct_tls=False, presence=True, channel_binding=None,
                 address=None):
        self.server = server
        self.host = host or server.host
        self.requested = '%s@%s%s' % (user, self.host, '/' + resource if resource else '')
        self.password = password
        self.priority = priority
        self.mech_requested = mech
        self.direct_tls = direct_tls
        self.initial_presence = presence
        self.address = address or (server.ip, server.tls_port if direct_tls else server.c2s_port)
        self.ok = False
        self.error = None
        self.auth_failure = None
        self.auth_failure_text = None
        self.stream_error = None
        self.stream_error_text = None
        self.mech = None
        self.offered_mechs = None
        self.tls_version = None
        self.jid = None
        self.messages = Mailbox()
        self.presences = Mailbox()
        self.closed = asyncio.Event()
        self._result = asyncio.get_running_loop().create_future()

        # slixmpp builds (and we then replace) a default SSL context per
        # client, which loads the system CA bundle: skip that cost.
        real_cdc = ssl.create_default_context
        ssl.create_default_context = lambda *a, **k: ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            x = slixmpp.ClientXMPP(self.requested, password)
        finally:
            ssl.create_default_context = real_cdc
        self.xmpp = x
        ctx = server.client_ssl_context(tls12)
        x.ssl_context = ctx
        x.get_ssl_context = lambda: ctx
        fm = x['feature_mechanisms']
        if mech:
            fm.use_mech = mech
        orig_cb = fm.sasl_callback

        def credentials(required, optional):
            r = orig_cb(required, optional)
            chosen = fm.mech.name if fm.mech else ''
            plus = chosen.endswith('-PLUS') or (mech or '').endswith('-PLUS')
            cb = r.get('channel_binding')
            if channel_binding == 'corrupt' and cb:
                r['channel_binding'] = bytes(b ^ 0x5a for b in cb)
            elif channel_binding == 'y':
                pass  # slixmpp sends gs2 flag 'y' for non-PLUS SCRAM over TLS
            elif not plus:
                # gs2 flag 'n': this client does not do channel binding.
                r.pop('channel_binding', None)
            return r
        fm.sasl_callback = credentials

        x.register_handler(Callback('xt-message', MatchXPath('{%s}message' % NS_CLIENT),
                                    self.messages.put))
        x.register_handler(Callback('xt-presence', MatchXPath('{%s}presence' % NS_CLIENT),
                                    self.presences.put))
        x.add_event_handler('session_start', self._on_session_start)
        x.add_event_handler('failed_auth', self._on_failed_auth)
        x.add_event_handler('failed_all_auth', self._on_failed_all_auth)
        x.add_event_handler('no_auth', lambda *_: self._fail('no_auth'))
        x.add_event_handler('auth_success', self._on_auth_success)
        x.add_event_handler('stream_error', self._on_stream_error)
        x.add_event_handler('disconnected', self._on_disconnected)
        x.add_event_handler('connection_failed', self._on_connection_failed)
        x.add_event_handler('ssl_invalid_chain', self._on_bad_chain)

    # -- events --------------------------------------------------------------

    def _fail(self, why):
        if not self._result.done():
            self.error = why
            self._result.set_result(False)

    def _on_session_start(self, _):
        self.jid = self.xmpp.boundjid
        sslobj = self.xmpp.socket if isinstance(self.xmpp.socket, ssl.SSLObject) else None
        if sslobj is not None:
            self.tls_version = sslobj.version()
        if self.initial_presence:
            if self.priority is not None:
                self.xmpp.send_presence(ppriority=self.priority)
            else:
                self.xmpp.send_presence()
        if not self._result.done():
            self.ok = True
            self._result.set_result(True)

    def _on_failed_all_auth(self, *_):
        self.offered_mechs = sorted(self.xmpp['feature_mechanisms'].mech_list)
        if self.auth_failure is None:
            self._fail('no_mechanism (offered: %s)' % ' '.join(self.offered_mechs))
        else:
            self._fail('failed_auth')

    def _on_failed_auth(self, stanza):
        self.auth_failure = stanza['condition']
        self.auth_failure_text = stanza['text']

    def _on_auth_success(self, _):
        fm = self.xmpp['feature_mechanisms']
        self.mech = fm.mech.name if fm.mech else None

    def _on_stream_error(self, err):
        self.stream_error = err['condition']
        self.stream_error_text = err['text']
        self._fail('stream_error')

    def _on_disconnected(self, reason):
        self.closed.set()
        self._fail('disconnected')

    def _on_connection_failed(self, e):
        self.xmpp.cancel_connection_attempt()
        self._fail('connection_failed: %s' % e)

    def _on_bad_chain(self, e):
        self._fail('tls: %s' % e)
        self.xmpp.abort()

    # -- actions -------------------------------------------------------------

    async def connect(self, timeout=10):
        self.xmpp.connect(self.address, use_ssl=self.direct_tls,
                          force_starttls=not self.direct_tls)
        try:
            await asyncio.wait_for(asyncio.shield(self._result), timeout)
        except asyncio.TimeoutError:
            self._fail('timeout')
            self.abort()
        return self.ok

    def describe(self):
        """One line on how the login ended, for diagnostics."""
        return ('%s: ok=%s error=%s auth_failure=%s(%s) stream_error=%s(%s) mech=%s jid=%s'
                % (self.requested, self.ok, self.error, self.auth_failure,
                   self.auth_failure_text, self.stream_error,
                   self.stream_error_text, self.mech, self.jid))

    def send(self, to, body, mtype='chat'):
        self.xmpp.send_message(mto=str(to), mbody=body, mtype=mtype)

    def send_raw(self, data):
        self.xmpp.send_raw(data)

    async def message(self, pred=None, timeout=5, body=None, frm=None, mtype=None):
        """The next message matching (pred, body, from, type), or None."""
        def match(m):
            if body is not None and m['body'] != body:
                return False
            if frm is not None and str(m['from']) != str(frm) and m['from'].bare != str(frm):
                return False
            if mtype is not None and m['type'] != mtype:
                return False
            return pred is None or pred(m)
        return await self.messages.get(match, timeout)

    async def presence(self, pred=None, timeout=5, frm=None):
        def match(p):
            if frm is not None and str(p['from']) != str(frm):
                return False
            return pred is None or pred(p)
        return await self.presences.get(match, timeout)

    async def iq(self, itype, to, payload, timeout=5):
        """Sends <iq type=itype to=to>payload</iq>; returns the reply stanza
        (result or error), or None on timeout."""
        iq = self.xmpp.Iq()
        iq['type'] = itype
        if to:
            iq['to'] = str(to)
        if payload is not None:
            iq.append(ET.fromstring(payload) if isinstance(payload, str) else payload)
        try:
            return await iq.send(timeout=timeout)
        except IqError as e:
            return e.iq
        except IqTimeout:
            return None

    async def wait_closed(self, timeout=5):
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def disconnect(self, timeout=3):
        if not self.closed.is_set():
            try:
                self.xmpp.disconnect(wait=min(timeout, 2))
            except Exception:
                pass
            if not await self.wait_closed(timeout):
                self.abort()

    def abort(self):
        try:
            self.xmpp.cancel_connection_attempt()
            self.xmpp.abort()
        except Exception:
            pass


async def login(server, user, password=None, host=None, resource=None,
                priority=None, mech='SCRAM-SHA-256', tls12=False,
                direct_tls=False, presence=True, channel_binding=None,
                timeout=10):
    """Connects a client (STARTTLS unless direct_tls) and waits for the
    session; returns the Client whether it succeeded (c.ok) or not.

    mech: the one SASL mechanism to use (None lets slixmpp pick);
    channel_binding: None (normal), 'y' (send gs2 flag 'y' with a
    non-PLUS SCRAM), 'corrupt' (wrong tls-unique data with -PLUS).
    """
    c = Client(server, user, password if password is not None else user + '-pw',
               host=host, resource=resource, priority=priority, mech=mech,
               tls12=tls12, direct_tls=direct_tls, presence=presence,
               channel_binding=channel_binding)
    await c.connect(timeout)
    return c


async def login_ok(server, user, password=None, **kw):
    """login() for set-up: raises HarnessError if it fails."""
    c = await login(server, user, password, **kw)
    if not c.ok:
        raise HarnessError('login failed: ' + c.describe())
    return c


async def disconnect_all(*clients):
    await asyncio.gather(*(c.disconnect() for c in clients if c is not None),
                         return_exceptions=True)


async def roundtrip(a, b, body=None, timeout=5):
    """a sends b a message (to b's full JID) and b must get it; returns True
    if it arrived with the right body and sender."""
    body = body or 'rt-%d' % random.randint(0, 10**9)
    a.send(b.jid, body)
    m = await b.message(body=body, timeout=timeout)
    return m is not None and str(m['from']) == str(a.jid)


# ---------------------------------------------------------------------------
# Raw connections
# ---------------------------------------------------------------------------

def stream_header(to='xmppd.test', decl=True):
    return (("<?xml version='1.0'?>" if decl else '') +
            "<stream:stream xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' "
            "to='%s' version='1.0'>" % to)


def stream_errors(data):
    """The stream error conditions (names) in what a server sent."""
    if isinstance(data, bytes):
        data = data.decode('utf-8', 'replace')
    m = re.search(r'<(?:[\w.-]+:)?error\b.*?(?:</(?:[\w.-]+:)?error>|\Z)', data, re.S)
    if not m:
        return []
    block = m.group(0)
    conds = re.findall(r'<([\w-]+)\s+xmlns=["\']%s["\']' % re.escape(NS_STREAMS_ERR), block)
    return [c for c in conds if c != 'text']


def stream_error(data):
    """The first stream error condition, or None."""
    e = stream_errors(data)
    return e[0] if e else None


def sasl_failure(data):
    """The condition of a SASL <failure/>, '' if it had none, None if absent."""
    if isinstance(data, bytes):
        data = data.decode('utf-8', 'replace')
    m = re.search(r'<failure\b[^>]*xmlns=["\']%s["\'][^>]*?(?:/>|>(.*?)</failure>)'
                  % re.escape(NS_SASL), data, re.S)
    if not m:
        return None
    inner = m.group(1) or ''
    c = re.findall(r'<([\w-]+)\b', inner)
    c = [x for x in c if x != 'text']
    return c[0] if c else ''


def parse_features(data):
    """The last <stream:features/> in data as an Element, or None."""
    if isinstance(data, bytes):
        data = data.decode('utf-8', 'replace')
    m = None
    for m in re.finditer(r'<(?:[\w.-]+:)?features\b(?:[^>]*/>|.*?</(?:[\w.-]+:)?features>)', data, re.S):
        pass
    if m is None:
        return None
    text = m.group(0)
    try:
        wrap = ET.fromstring("<w xmlns:stream='%s' xmlns='%s'>%s</w>" % (NS_STREAM, NS_CLIENT, text))
    except ET.ParseError:
        return None
    return wrap[0] if len(wrap) else None


def features_mechanisms(feat):
    """The SASL mechanism names offered in a features element."""
    if feat is None:
        return []
    mechs = feat.find('{%s}mechanisms' % NS_SASL)
    if mechs is None:
        return []
    return [(m.text or '').strip() for m in mechs.findall('{%s}mechanism' % NS_SASL)]


class Raw:
    """A byte-level client connection: send anything, see what comes back.

    data holds everything received; mark is where the current wait started
    (read_until looks only after it).
    """

    def __init__(self, server, reader, writer, started):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.data = b''
        self.mark = 0
        self.closed = False
        self.close_reason = None
        self.started = started
        self.closed_at = None

    @classmethod
    async def open(cls, server, port=None, tls=False, source_ip=None,
                   timeout=5, tls12=False):
        """Connects to the STARTTLS port (default) or any port; tls=True
        does TLS straight away (for the direct-TLS port)."""
        if port is None:
            port = server.tls_port if tls else server.c2s_port
        kw = {}
        if tls:
            kw['ssl'] = server.client_ssl_context(tls12)
            kw['server_hostname'] = server.host
        if source_ip:
            kw['local_addr'] = (source_ip, 0)
        started = time.monotonic()
        r, w = await asyncio.wait_for(
            asyncio.open_connection(server.ip, port, limit=1 << 22, **kw), timeout)
        return cls(server, r, w, started)

    @property
    def text(self):
        return self.data.decode('utf-8', 'replace')

    def since_mark(self):
        return self.data[self.mark:].decode('utf-8', 'replace')

    async def send(self, data, timeout=5):
        """Writes data; returns False if the peer had already gone."""
        if isinstance(data, str):
            data = data.encode('utf-8')
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), timeout)
            return True
        except (ConnectionError, OSError, asyncio.TimeoutError) as e:
            self.send_error = e
            return False

    async def _read_some(self, timeout):
        """Reads once; returns False on EOF/reset/timeout (timeout: None)."""
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        except asyncio.TimeoutError:
            return None
        except (ConnectionError, OSError, ssl.SSLError) as e:
            self._set_closed('error: %s' % e)
            return False
        if not chunk:
            self._set_closed('eof')
            return False
        self.data += chunk
        return True

    def _set_closed(self, why):
        if not self.closed:
            self.closed = True
            self.close_reason = why
            self.closed_at = time.monotonic()

    async def read_until(self, pattern, timeout=5):
        """Reads until regex pattern (str) matches what came after mark;
        returns the match or None (timeout or close)."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.S)
        while True:
            m = rx.search(self.since_mark())
            if m:
                return m
            if self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r = await self._read_some(left)
            if r is None:
                return rx.search(self.since_mark())

    async def read_until_close(self, timeout=10):
        """Reads until the server closes; True if it did within timeout."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if await self._read_some(left) is None:
                return self.closed
        return True

    def set_mark(self):
        self.mark = len(self.data)

    async def open_stream(self, to=None, timeout=5):
        """Sends a stream header; returns the features element (or None)."""
        self.set_mark()
        await self.send(stream_header(to or self.server.host))
        m = await self.read_until(r'</(?:[\w.-]+:)?features>|<(?:[\w.-]+:)?features\b[^>]*/>', timeout)
        if not m:
            return None
        return parse_features(self.since_mark())

    async def starttls(self, timeout=5, tls12=False):
        """<starttls/>, waits for <proceed/>, upgrades; True on success."""
        self.set_mark()
        await self.send("<starttls xmlns='%s'/>" % NS_TLS)
        if not await self.read_until(r'<proceed\b', timeout):
            return False
        ctx = self.server.client_ssl_context(tls12)
        await asyncio.wait_for(self.writer.start_tls(ctx, server_hostname=self.server.host), timeout)
        self.set_mark()
        return True

    async def auth_plain(self, user, password, timeout=5):
        """SASL PLAIN; returns True on <success/>."""
        self.set_mark()
        token = base64.b64encode(('\0%s\0%s' % (user, password)).encode()).decode()
        await self.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_SASL, token))
        m = await self.read_until(r'<success\b|<failure\b.*?(?:/>|</failure>)|</(?:[\w.-]+:)?error>', timeout)
        return bool(m) and m.group(0).startswith('<success')

    async def bind(self, resource=None, timeout=5):
        """Binds a resource; returns the full JID or None."""
        self.set_mark()
        res = '<resource>%s</resource>' % resource if resource else ''
        await self.send("<iq type='set' id='bind1'><bind xmlns='%s'>%s</bind></iq>" % (NS_BIND, res))
        m = await self.read_until(r'<jid>([^<]*)</jid>|type=["\']error["\']', timeout)
        return m.group(1) if m and m.group(1) else None

    async def login(self, user, password, resource=None, timeout=5):
        """The whole negotiation: STARTTLS, PLAIN, bind, initial presence.
        Returns the bound JID, or raises HarnessError."""
        if await self.open_stream(timeout=timeout) is None:
            raise HarnessError('raw: no stream features: %r' % self.text[-500:])
        if not await self.starttls(timeout=timeout):
            raise HarnessError('raw: STARTTLS failed: %r' % self.text[-500:])
        if await self.open_stream(timeout=timeout) is None:
            raise HarnessError('raw: no features after TLS')
        if not await self.auth_plain(user, password, timeout):
            raise HarnessError('raw: PLAIN failed: %r' % self.since_mark())
        if await self.open_stream(timeout=timeout) is None:
            raise HarnessError('raw: no features after SASL')
        jid = await self.bind(resource, timeout)
        if not jid:
            raise HarnessError('raw: bind failed: %r' % self.since_mark())
        await self.send('<presence/>')
        self.set_mark()
        return jid

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass


async def raw_exchange(server, chunks, tls=False, port=None, timeout=10,
                       source_ip=None, header=False, pause=0.0):
    """Opens a raw connection, sends each chunk (optionally after a stream
    header), then reads until the server closes or timeout.  Returns the Raw
    (data, closed, close_reason, closed_at - started)."""
    r = await Raw.open(server, port=port, tls=tls, source_ip=source_ip)
    if header:
        await r.send(stream_header(server.host))
    for c in chunks:
        if not await r.send(c):
            break
        if pause:
            await asyncio.sleep(pause)
    await r.read_until_close(timeout)
    r.close()
    return r


def elapsed(raw):
    """Seconds from connecting to the server's close (None if not closed)."""
    if raw.closed_at is None:
        return None
    return raw.closed_at - raw.started


# ---------------------------------------------------------------------------
# The spool as an independent reader sees it (mdb_dump, from lmdb-utils)
# ---------------------------------------------------------------------------
#
# What goes with an account is checked in the store itself, read by
# mdb_dump rather than through xmppd, so that the check shares none of the
# server's key code. LMDB lets another process read while xmppd runs; it
# sees the last committed transaction. A key is the store's encoding
# (src/store/store.h): parts each followed by a NUL byte, and everything
# kept for an account starts with "HOST NUL NODE NUL" (the account row
# itself is exactly that). A key that is not in that form (an empty first
# part: a table's own format marker) belongs to nobody.

MDB_DUMP = os.environ.get('MDB_DUMP') or 'mdb_dump'


def _mdb_dump(server, *args):
    cmd = [MDB_DUMP] + list(args) + [server.spool]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HarnessError('cannot run %s (lmdb-utils): %s' % (' '.join(cmd), e))
    if r.returncode != 0:
        raise HarnessError('%s failed (%d): %s' % (' '.join(cmd), r.returncode,
                                                   r.stderr.decode('utf-8', 'replace')))
    return r.stdout.decode('ascii', 'replace')


def store_tables(server):
    """The names of the tables (LMDB named databases) in server's spool."""
    return [t for t in _mdb_dump(server, '-l').splitlines() if t]


def store_rows(server, table):
    """[(key, value)] (bytes) of one table, in key order, as mdb_dump's
    hexadecimal "bytevalue" format gives them."""
    text = _mdb_dump(server, '-s', table)
    _, sep, body = text.partition('HEADER=END\n')
    if not sep:
        raise HarnessError('mdb_dump -s %s: no header in %r' % (table, text[:300]))
    data = []
    for line in body.splitlines():
        if line == 'DATA=END':
            break
        if not line.startswith(' '):
            raise HarnessError('mdb_dump -s %s: unexpected line %r' % (table, line[:200]))
        data.append(bytes.fromhex(line[1:]))
    else:
        raise HarnessError('mdb_dump -s %s: no DATA=END' % table)
    if len(data) % 2:
        raise HarnessError('mdb_dump -s %s: a key without a value' % table)
    return list(zip(data[0::2], data[1::2]))


def key_parts(key):
    """A key's NUL-terminated parts as strings; bytes that follow the last
    NUL (a binary suffix such as mod_offline's sequence number) come last,
    as bytes."""
    parts = key.split(b'\0')
    out = [p.decode('utf-8', 'replace') for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return tuple(out)


def user_rows(server, user, host=None, tables=None):
    """{table: [the rest of the key after HOST NUL NODE NUL, as bytes]} of
    every row of user@host in the spool, for every table (or only those
    given); tables where the user has no row are left out. The account row
    itself shows as {'accounts': [b'']}; key_parts() splits the rest."""
    prefix = ('%s\0%s\0' % (host or server.host, user)).encode('utf-8')
    found = {}
    for t in (store_tables(server) if tables is None else tables):
        rows = [k[len(prefix):] for k, _ in store_rows(server, t) if k.startswith(prefix)]
        if rows:
            found[t] = rows
    return found


# ---------------------------------------------------------------------------
# Test modules and worker placement (t0800-modules, t0810-hooks)
# ---------------------------------------------------------------------------

# The warnings the project builds with: test modules must pass them.
MODULE_WARN = ['-Wall', '-Wextra', '-Wno-unused-parameter', '-Wshadow', '-Wpointer-arith',
               '-Wstrict-prototypes', '-Wmissing-prototypes', '-Wformat=2', '-Werror']


def build_test_module(moddir, name, source=None, defines=()):
    """Compiles t/modules/<source or name>.c against hooks/xmppd.h alone
    into moddir/<name>.so; a failure stops the test (it is set-up)."""
    src = TOP_SRCDIR / 't' / 'modules' / ('%s.c' % (source or name))
    cmd = ([os.environ.get('CC') or 'cc', '-std=gnu11'] + MODULE_WARN +
           ['-I%s' % (TOP_SRCDIR / 'hooks'), '-fPIC', '-shared', '-fvisibility=hidden',
            '-pthread'] + list(defines) + ['-o', str(Path(moddir) / ('%s.so' % name)), str(src)])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise HarnessError('cannot compile %s:\n%s%s' % (src, r.stdout, r.stderr))


async def worker_of(server, client, timeout=5):
    """The worker (the column of `xmppctl connected`) of client's session,
    or None if it is not listed within timeout."""
    sessions = await server.wait_connected(lambda s: session_of(s, client.jid), timeout)
    return (session_of(sessions, client.jid) or {}).get('worker')


async def login_on_worker(server, user, password, want, resource, tries=20, seen=None,
                          **kw):
    """Logs user in (resources resource0, resource1, ...) until the session
    is on a worker w with want(w), at most tries times: connections are
    spread over the workers by the kernel, so this is how a test puts two
    clients on different workers. Returns (client, worker), or (None,
    last worker seen); the clients that landed elsewhere are disconnected.
    seen, a list, gets (full JID, worker) of every session opened."""
    w = None
    for i in range(tries):
        c = await login_ok(server, user, password, resource='%s%d' % (resource, i), **kw)
        w = await worker_of(server, c)
        if seen is not None:
            seen.append((str(c.jid), w))
        if w is not None and want(w):
            return c, w
        await c.disconnect()
    return None, w


# ---------------------------------------------------------------------------
# Stanzas matched by id (errors to the stanza that caused them)
# ---------------------------------------------------------------------------

def new_id(prefix='xt'):
    """A stanza id no other stanza of the test carries."""
    return '%s-%d' % (prefix, random.randint(0, 10**12))


def send_message_id(c, to, body=None, mtype='chat', sid=None, extra=''):
    """c sends <message id=...> to `to` (mtype None: no type attribute),
    with body and raw extra children; returns the id, which the server
    copies into any error it answers with (RFC 6120 8.3.1)."""
    sid = sid or new_id('m')
    t = " type='%s'" % mtype if mtype is not None else ''
    b = '<body>%s</body>' % _esc(body) if body is not None else ''
    c.send_raw("<message to='%s' id='%s'%s>%s%s</message>" % (_esc(str(to)), sid, t, b, extra))
    return sid


def send_presence_id(c, to, ptype=None, sid=None, extra=''):
    """c sends <presence id=... to=...> (ptype None: available); returns
    the id."""
    sid = sid or new_id('p')
    t = " type='%s'" % ptype if ptype is not None else ''
    to_attr = " to='%s'" % _esc(str(to)) if to is not None else ''
    c.send_raw("<presence id='%s'%s%s>%s</presence>" % (sid, to_attr, t, extra))
    return sid


async def error_for(c, sid, kind='message', timeout=5):
    """The error stanza (message or presence) c received with id sid, or
    None: the answer to that stanza, not whichever error came first."""
    box = c.messages if kind == 'message' else c.presences
    return await box.get(lambda s: s['id'] == sid and s['type'] == 'error', timeout)


def error_summary(st):
    """(type, defined condition, from) of a received stanza, None if none
    came: one value to compare, so one reply is one check."""
    if st is None:
        return None
    cond = st['error']['condition'] if st['type'] == 'error' else None
    return (st['type'], cond, str(st['from']))


def _esc(s):
    return (s.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
            .replace("'", '&apos;'))


# ---------------------------------------------------------------------------
# Federation (t10xx): `xmppctl s2s`, a DNS server of the test's own, and
# private network and mount namespaces
# ---------------------------------------------------------------------------

import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import fcntl  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402

S2S_LINK_KEYS = ('dir', 'local', 'remote', 'auth', 'tls', 'in', 'out', 'state', 'addr')


def s2s_links(srv):
    """`xmppctl s2s` as a list of dicts (keys S2S_LINK_KEYS), or None if
    the command failed."""
    code, out, err = srv.ctl('s2s')
    if code != 0:
        diag('xmppctl s2s failed (%r): %s' % (code, err))
        return None
    return [dict(zip(S2S_LINK_KEYS, line.split('\t'))) for line in out.splitlines()
            if line.strip()]


async def wait_links(srv, pred, timeout=5):
    """Polls `xmppctl s2s` until pred(links) holds; returns the last listing
    (check pred again to know whether it held)."""
    deadline = time.monotonic() + timeout
    while True:
        links = await asyncio.get_running_loop().run_in_executor(None, s2s_links, srv)
        if links is not None and pred(links):
            return links
        if time.monotonic() > deadline:
            return links
        await asyncio.sleep(0.2)


def federated_pair(d, ca, name, hosts=('a.test', 'b.test'), ca_file=None, conf=None,
                   modules=None, start=True):
    """Two xmppd (a, b), one per host, that federate with each other: each
    has an s2s listener on its own address, a certificate for its host
    signed by ca (a make_ca() name in directory d), ca_file (default: ca
    itself) to verify peers, and an s2s_hosts pin to the other. conf: keys
    for both; modules: {host: modules} (loaded from the build tree).
    Started unless start=False (then write_config() and start() are the
    caller's)."""
    pair = []
    for h in hosts:
        s = Server(name='%s-%s' % (name, h.split('.')[0]), hosts=[h], start=False,
                   modules=(modules or {}).get(h))
        s.s2s_port = free_ports(s.ip, 1)[0]
        s.ca_file = str(Path(d) / (ca + '.pem'))    # what the test's clients trust
        s.conf['listen'] += [{'port': s.s2s_port, 'ip': s.ip, 'module': 's2s'}]
        s.conf['ca_file'] = ca_file or s.ca_file
        pem = Path(d) / (h + '.pem')
        s.conf['certfiles'] = [str(pem) if pem.exists() else make_cert(Path(d), ca, h)]
        s.conf.update(conf or {})
        pair.append(s)
    a, b = pair
    a.conf['s2s_hosts'] = {b.host: '%s:%d' % (b.ip, b.s2s_port)}
    b.conf['s2s_hosts'] = {a.host: '%s:%d' % (a.ip, a.s2s_port)}
    if start:
        for s in pair:
            s.write_config()
            s.start()
    return a, b


def iq_outcome(r):
    """'result', 'error:CONDITION' or 'timeout' for a slixmpp IQ reply (as
    Client.iq returns it)."""
    if r is None:
        return 'timeout'
    if r['type'] == 'result':
        return 'result'
    return 'error:%s' % (r['error']['condition'] or '?')


def s2s_link(links, direction, local, remote, state='established'):
    """The first line of links for (direction, local, remote) in state (any
    state if None), or None."""
    for l in links or ():
        if l['dir'] == direction and l['local'] == local and l['remote'] == remote \
                and (state is None or l['state'] == state):
            return l
    return None


def _dns_name(name):
    out = b''
    for label in name.rstrip('.').split('.'):
        out += bytes([len(label)]) + label.encode()
    return out + b'\0'


class FakeDNS:
    """A DNS server on ip:port (UDP, RFC 1035 4.1) answering from dicts:
    srv: name -> [(priority, weight, port, target)] (RFC 2782),
    a: name -> [IPv4 address], aaaa: name -> [IPv6 address].
    A name it knows but without records of the type asked gets an empty
    answer (NODATA), any other name NXDOMAIN. queries lists every
    (name, qtype) asked, in order."""

    TYPES = {1: 'a', 28: 'aaaa', 33: 'srv'}

    def __init__(self, ip, srv=None, a=None, aaaa=None, port=53):
        self.srv, self.a, self.aaaa = dict(srv or {}), dict(a or {}), dict(aaaa or {})
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.settimeout(0.2)
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop:
            try:
                q, addr = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self.answer(q), addr)
            except Exception as e:  # a malformed query: no answer
                diag('fake DNS: %s' % e)

    def _rdata(self, qtype, rec):
        if qtype == 1:
            return socket.inet_pton(socket.AF_INET, rec)
        if qtype == 28:
            return socket.inet_pton(socket.AF_INET6, rec)
        prio, weight, port, target = rec
        return struct.pack('>HHH', prio, weight, port) + _dns_name(target)

    def answer(self, q):
        qid = q[:2]
        p, labels = 12, []
        while q[p]:
            labels.append(q[p + 1:p + 1 + q[p]].decode())
            p += 1 + q[p]
        qtype = struct.unpack('>H', q[p + 1:p + 3])[0]
        question = q[12:p + 5]
        name = '.'.join(labels).lower()
        self.queries.append((name, qtype))
        tables = (self.srv, self.a, self.aaaa)
        if not any(name in t for t in tables):
            return qid + b'\x81\x83' + b'\0\x01\0\0\0\0\0\0' + question   # NXDOMAIN
        kind = self.TYPES.get(qtype)
        recs = getattr(self, kind).get(name, []) if kind else []
        body = b''
        for rec in recs:
            rdata = self._rdata(qtype, rec)
            body += b'\xc0\x0c' + struct.pack('>HHIH', qtype, 1, 60, len(rdata)) + rdata
        return qid + b'\x81\x80' + struct.pack('>HHHH', 1, len(recs), 0, 0) + question + body

    def asked(self, name, qtype=None):
        """How many queries for name (of qtype, 1 A, 28 AAAA, 33 SRV)."""
        return sum(1 for n, t in self.queries if n == name and (qtype is None or t == qtype))

    def close(self):
        self.stop = True
        self.sock.close()


_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18


def _libc():
    return ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)


def set_link_up(ifname, up):
    """Brings a network interface of this namespace up or down
    (SIOCSIFFLAGS; needs CAP_NET_ADMIN there)."""
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack('16sH14x', ifname.encode(), 0)
        flags = struct.unpack('16sH14x', fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        flags = (flags | IFF_UP) if up else (flags & ~IFF_UP)
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack('16sH14x', ifname.encode(), flags))
    finally:
        s.close()


def private_namespaces():
    """Moves this test (and every process it starts afterwards) into new
    network and mount namespaces, as `unshare --net --mount` does: a
    loopback interface of its own (any 127.0.0.X, port 53 or 5269, free of
    other tests; it may be taken down), and mounts nobody else sees
    (bind_mount over /etc/hosts). Call it first, before any thread or
    socket exists. Needs root (CAP_SYS_ADMIN), as the tests that bind
    port 53 do; where root lacks it (a container), a user namespace in
    which the test is root does as well, if the system allows one."""
    libc = _libc()
    if libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWNET) != 0:
            raise HarnessError('unshare(CLONE_NEWNS | CLONE_NEWNET): %s, and with '
                               'CLONE_NEWUSER: %s (root is needed)'
                               % (os.strerror(e), os.strerror(ctypes.get_errno())))
        # Root inside, the same user outside (user_namespaces(7)).
        for f, text in (('setgroups', 'deny'), ('uid_map', '0 %d 1' % uid),
                        ('gid_map', '0 %d 1' % gid)):
            with open('/proc/self/' + f, 'w') as fh:
                fh.write(text)
    # Our mounts must not propagate back to the machine's namespace.
    if libc.mount(b'none', b'/', None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise HarnessError('mount --make-rprivate /: %s' % os.strerror(ctypes.get_errno()))
    set_link_up('lo', True)


def bind_mount(src, dst):
    """mount --bind src dst, in this test's private mount namespace."""
    if _libc().mount(str(src).encode(), str(dst).encode(), None, _MS_BIND, None) != 0:
        raise HarnessError('mount --bind %s %s: %s' % (src, dst, os.strerror(ctypes.get_errno())))


# ---------------------------------------------------------------------------
# A store that answers later (store_test_delay_ms)
# ---------------------------------------------------------------------------

# XMPPD_TEST_STORE_DELAY_MS=N runs every server a test starts with
# store_test_delay_ms: N (unless the test sets the key itself): each store
# operation of the asynchronous API then completes N ms late, as with a
# backend across a network, so that any test can be run that way
# (doc/testing.md).
STORE_DELAY_MS = os.environ.get('XMPPD_TEST_STORE_DELAY_MS')
if STORE_DELAY_MS:
    _server_init_undelayed = Server.__init__

    def _server_init_delayed(self, *args, **kw):
        conf = dict(kw.get('conf') or {})
        conf.setdefault('store_test_delay_ms', int(STORE_DELAY_MS))
        kw['conf'] = conf
        _server_init_undelayed(self, *args, **kw)

    Server.__init__ = _server_init_delayed


# ---------------------------------------------------------------------------
# Stream management over a raw stream (t1200-sm, t1210-sm-durable)
# ---------------------------------------------------------------------------

NS_SM = 'urn:xmpp:sm:3'


def sm_elems(text):
    """The complete top-level elements in text (a stretch of a c2s stream
    after its header), as ElementTree elements."""
    text = re.sub(r'<\?xml[^>]*\?>', '', text)
    text = re.sub(r'<stream:stream\b[^>]*>', '', text)
    text = text.replace('</stream:stream>', '')
    root = ET.fromstring("<x xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                         + text + '</x>')
    return list(root)


def sm_stanzas(text):
    return [e for e in sm_elems(text) if e.tag.startswith('{jabber:client}')
            and e.tag.split('}')[1] in ('message', 'presence', 'iq')]


def sm_bodies(text):
    return [e.findtext('{jabber:client}body') for e in sm_stanzas(text)
            if e.tag == '{jabber:client}message']


async def sm_authed(srv, user):
    """A raw stream authenticated as user (PLAIN, password USER-pw), read up
    to the features of the stream that follows SASL (their text in
    r.features; those after TLS in r.tls_features)."""
    r = await Raw.open(srv)
    if await r.open_stream() is None or not await r.starttls():
        raise HarnessError('raw: no TLS for %s' % user)
    if await r.open_stream() is None:
        raise HarnessError('raw: no features after TLS')
    r.tls_features = r.since_mark()
    if not await r.auth_plain(user, user + '-pw'):
        raise HarnessError('raw: PLAIN failed for %s' % user)
    r.set_mark()
    await r.send(stream_header(srv.host))
    if not await r.read_until(r'</stream:features>'):
        raise HarnessError('raw: no features after SASL')
    r.features = r.since_mark()
    r.set_mark()
    return r


async def sm_enable(r, max_=None):
    """<enable resume='true'/>: the answer's text (<enabled/> or
    <failed/>), or None."""
    r.set_mark()
    m = " max='%d'" % max_ if max_ is not None else ''
    await r.send("<enable xmlns='%s' resume='true'%s/>" % (NS_SM, m))
    got = await r.read_until(r'<enabled\b[^>]*/>|<failed\b.*?</failed>')
    r.set_mark()
    return got.group(0) if got else None


async def sm_ask_h(r, timeout=5):
    """<r/>: the server's h, or None."""
    r.set_mark()
    await r.send("<r xmlns='%s'/>" % NS_SM)
    m = await r.read_until(r"<a xmlns='%s' h='(\d+)'/>" % NS_SM, timeout)
    return int(m.group(1)) if m else None


async def sm_resume(srv, user, previd, h):
    """A new stream for user that resumes previd with h: (raw, the answer
    element's text or None)."""
    r = await sm_authed(srv, user)
    await r.send("<resume xmlns='%s' previd='%s' h='%d'/>" % (NS_SM, previd, h))
    m = await r.read_until(r'<resumed\b[^>]*/>|<failed\b[^>]*/>|<failed\b.*?</failed>')
    return r, (m.group(0) if m else None)


def sm_failed_condition(text):
    """The condition of a <failed/> answer, or None."""
    if text is None or not text.startswith('<failed'):
        return None
    kids = list(sm_elems(text)[0])
    return kids[0].tag.split('}')[1] if kids else None


# ---------------------------------------------------------------------------
# Message Archive Management (t1510-mam, t1511-mam-crash)
# ---------------------------------------------------------------------------
#
# mam_rows reads an archive as the store holds it (mdb_dump, independent
# of the server's code): table mam, key HOST NUL NODE NUL + the 8-byte
# big-endian id, value the record of modules/mam_store.c (version 1, the
# time in us, the direction, the other party's bare and full JID each
# NUL-terminated, the message's text). mam_query runs a query as a client
# sends it and collects the results it got.

NS_MAM = 'urn:xmpp:mam:2'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_FORWARD = 'urn:xmpp:forward:0'
NS_SID = 'urn:xmpp:sid:0'


def mam_rows(server, user, host=None):
    """[{'id': int, 'ts': us, 'dir': 'in'|'out', 'with': bare, 'with_full',
    'xml': the message text, 'body'}] of user's archive in key order."""
    if 'mam' not in store_tables(server):
        return []
    prefix = ('%s\0%s\0' % (host or server.host, user)).encode('utf-8')
    out = []
    for k, v in store_rows(server, 'mam'):
        if not k.startswith(prefix) or len(k) != len(prefix) + 8:
            continue
        if v[0] != 1:
            raise HarnessError('mam row of version %d' % v[0])
        ts = int.from_bytes(v[1:9], 'big')
        rest = v[10:]
        bare, full, text = rest.split(b'\0', 2)
        try:
            # The server writes the content namespace implicitly.
            el = ET.fromstring(text)
            body = el.findtext('body') or el.findtext('{jabber:client}body')
        except ET.ParseError:
            body = None
        out.append({'id': int.from_bytes(k[len(prefix):], 'big'), 'ts': ts,
                    'dir': 'out' if v[9] == 1 else 'in', 'with': bare.decode(),
                    'with_full': full.decode(), 'xml': text.decode('utf-8', 'replace'),
                    'body': body})
    return out


def mam_form(fields):
    """A submitted urn:xmpp:mam:2 form: fields is [(var, value or [values])]."""
    out = ["<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
           "<value>%s</value></field>" % NS_MAM]
    for var, val in fields:
        vals = val if isinstance(val, (list, tuple)) else [val]
        out.append("<field var='%s'>%s</field>" % (_esc(var), ''.join(
            '<value>%s</value>' % _esc(v) for v in vals)))
    return ''.join(out) + '</x>'


async def mam_query(c, fields=None, rsm=None, extra='', to=None, timeout=10):
    """c queries an archive (to: None = its own): returns (outcome, the
    <fin/> element or None, results) with outcome as iq_outcome gives it
    and results [{'id', 'body', 'msg' (the forwarded element), 'stamp',
    'from' (the result's from)}] in the order they came."""
    qid = new_id('q')
    form = mam_form(fields) if fields is not None else ''
    rs = "<set xmlns='%s'>%s</set>" % (NS_RSM, rsm) if rsm is not None else ''
    r = await c.iq('set', to, "<query xmlns='%s' queryid='%s'>%s%s%s</query>"
                   % (NS_MAM, qid, form, rs, extra), timeout=timeout)
    results = []
    while True:
        m = await c.messages.get(lambda m: m.xml.find('{%s}result' % NS_MAM) is not None,
                                 timeout=0)
        if m is None:
            break
        res = m.xml.find('{%s}result' % NS_MAM)
        if res.get('queryid') != qid:
            continue
        fwd = res.find('{%s}forwarded' % NS_FORWARD)
        msg = fwd.find('{jabber:client}message') if fwd is not None else None
        d = fwd.find('{urn:xmpp:delay}delay') if fwd is not None else None
        results.append({'id': res.get('id'), 'msg': msg, 'from': m.xml.get('from'),
                        'body': msg.findtext('{jabber:client}body') if msg is not None else None,
                        'stamp': d.get('stamp') if d is not None else None})
    fin = r.xml.find('{%s}fin' % NS_MAM) if r is not None and r['type'] == 'result' else None
    return iq_outcome(r), fin, results


def mam_fin(fin):
    """(complete, first, last) of a <fin/>."""
    if fin is None:
        return None
    s = fin.find('{%s}set' % NS_RSM)
    return (fin.get('complete') == 'true',
            s.findtext('{%s}first' % NS_RSM) if s is not None else None,
            s.findtext('{%s}last' % NS_RSM) if s is not None else None)
