#!/usr/bin/python3
"""t0800-modules: the module system.

(a) the example module (doc/examples/) builds out of tree against the
    installed header and xmppd.pc alone, loads, filters, answers its IQ;
(b) xmppctl module list | load | unload | reload, and reload by a
    configuration change;
(c) loading and unloading under live traffic loses no message, between two
    users kept on different workers (checked with `xmppctl connected`
    before, during and after) so that the traffic crosses workers;
(d) refusals: another ABI, unknown and ill-typed options (file:line), a
    missing dependency, a module that is not there;
(e) a load() that fails leaves nothing behind.

Test modules are in t/modules/ and are compiled here with cc against
hooks/xmppd.h (xt.build_test_module); mod_version comes from the build tree
(modules/.libs, or XMPPD_TEST_MODULE_DIR).
"""

import asyncio
import glob
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_VERSION = 'jabber:iq:version'
NS_WF = 'urn:xmppd:example:wordfilter'
NS_FAILLOAD = 'urn:xmppd:test:failload'


def abi_version():
    """(major, minor) of the ABI, as hooks/xmppd.h says."""
    text = (xt.TOP_SRCDIR / 'hooks' / 'xmppd.h').read_text()
    return (int(re.search(r'#define XMPPD_ABI_MAJOR (\d+)', text).group(1)),
            int(re.search(r'#define XMPPD_ABI_MINOR (\d+)', text).group(1)))


ABI = abi_version()
ABI_S = '%d.%d' % ABI
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
TOP_SRCDIR = xt.TOP_SRCDIR
# The warnings the project builds with: the example must pass them.
WARN = xt.MODULE_WARN


def sh(cmd, env=None, cwd=None, timeout=120):
    """Runs cmd; returns (exit code, stdout + stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr


# ---------------------------------------------------------------------------
# Building the modules
# ---------------------------------------------------------------------------

def build_example(scratch, moddir):
    """Installs the header and xmppd.pc into a staging tree, builds
    doc/examples/ with its own Makefile against them, copies the module to
    moddir. Returns the .so path or None."""
    inst = scratch / 'inst'
    code, out = sh(['make', '-C', str(xt.TOP_BUILDDIR), 'install-xmppdincludeHEADERS',
                    'install-pkgconfigDATA', 'DESTDIR=%s' % inst])
    if not xt.is_(code, 0, '(a) make install-xmppdincludeHEADERS install-pkgconfigDATA'):
        xt.diag(out[-3000:])
        return None
    pcs = glob.glob(str(inst / '**' / 'pkgconfig' / 'xmppd.pc'), recursive=True)
    heads = glob.glob(str(inst / '**' / 'xmppd' / 'xmppd.h'), recursive=True)
    xt.ok(len(pcs) == 1 and len(heads) == 1, '(a) xmppd.pc and xmppd/xmppd.h are installed') \
        or xt.diag(pcs, heads)
    if not pcs:
        return None
    env = {'PKG_CONFIG_PATH': os.path.dirname(pcs[0]), 'PKG_CONFIG_SYSROOT_DIR': str(inst),
           'PKG_CONFIG_LIBDIR': os.path.dirname(pcs[0])}
    code, cflags = sh(['pkg-config', '--cflags', 'xmppd'], env=env)
    xt.ok(code == 0 and str(inst) in cflags and str(TOP_SRCDIR / 'hooks') not in cflags,
          '(a) pkg-config --cflags xmppd points into the staging tree: %s' % cflags.strip()) \
        or xt.diag(cflags)
    # Nothing but the example's two files and the staged header.
    src = scratch / 'example'
    src.mkdir()
    for f in ('mod_wordfilter.c', 'Makefile'):
        shutil.copy(TOP_SRCDIR / 'doc' / 'examples' / f, src / f)
    code, out = sh(['make', 'CFLAGS=-O2 -g ' + ' '.join(WARN)], env=env, cwd=str(src))
    if not xt.is_(code, 0, '(a) doc/examples/Makefile builds mod_wordfilter.so out of tree, '
                  'with -Werror'):
        xt.diag(out[-3000:])
        return None
    xt.like(out, re.escape('-I%s' % inst), '(a) the build used the staged header')
    shutil.copy(src / 'mod_wordfilter.so', moddir / 'mod_wordfilter.so')
    return moddir / 'mod_wordfilter.so'


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

outcome = xt.iq_outcome


async def version_iq(c, srv):
    return await c.iq('get', srv.host, "<query xmlns='%s'/>" % NS_VERSION)


def version_name(r):
    if r is None or r['type'] != 'result':
        return None
    e = r.xml.find('{%s}query/{%s}name' % (NS_VERSION, NS_VERSION))
    return e.text if e is not None else None


async def wf_counts(c, srv):
    """(total, worker) from mod_wordfilter's IQ, or the outcome string."""
    r = await c.iq('get', srv.host, "<query xmlns='%s'/>" % NS_WF)
    if r is None or r['type'] != 'result':
        return outcome(r)
    q = r.xml.find('{%s}query' % NS_WF)
    try:
        return (int(q.find('{%s}total' % NS_WF).text), int(q.find('{%s}worker' % NS_WF).text))
    except (AttributeError, TypeError, ValueError):
        return 'bad reply: %s' % r


def listed(out):
    """`xmppctl module list` as {name: (version, path)}."""
    mods = {}
    for line in out.splitlines():
        f = line.split('\t')
        if len(f) == 3:
            mods[f[0]] = (f[1], f[2])
    return mods


def yaml_line(text, key, after):
    """The 1-based line of the first `key:` after the line holding `after`."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if after in l)
    for i in range(start + 1, len(lines)):
        if re.match(r'\s*%s:' % re.escape(key), lines[i]):
            return i + 1
    raise xt.HarnessError('no %s: after %s in\n%s' % (key, after, text))


def sanitizer_hits(text):
    return xt.sanitizer_lines(text)


def start_refused(srv, modules, timeout=30):
    """Writes a configuration with modules and runs xmppd on it, expecting
    it to exit. Returns (exit code or None if it kept running, log text)."""
    srv.conf['modules'] = modules
    text = srv.config_text()
    srv.write_config(text)
    with open(srv.log_path, 'ab') as log:
        log.write(b'--- start expected to fail ---\n')
        log.flush()
        before = os.path.getsize(srv.log_path)
        p = subprocess.Popen([xt.XMPPD, '-c', srv.conf_path], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, cwd=str(srv.dir))
        try:
            code = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
            code = None
    with open(srv.log_path, 'rb') as f:
        f.seek(before)
        return code, f.read().decode('utf-8', 'replace'), text


# ---------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------

async def main():
    scratch = xt.scratch_dir('t0800-build')
    moddir = scratch / 'modules'
    moddir.mkdir()

    # (a) the example, built out of tree.
    wf_so = build_example(scratch, moddir)
    if wf_so is None:
        raise xt.HarnessError('the example module did not build; nothing else can be tested')
    version_so = os.path.join(xt.MODULE_DIR, 'mod_version.so')
    if not os.path.exists(version_so):
        raise xt.HarnessError('%s is missing (make modules/mod_version.la, or set '
                              'XMPPD_TEST_MODULE_DIR)' % version_so)
    shutil.copy(version_so, moddir / 'mod_version.so')
    xt.build_test_module(moddir, 'mod_badabi')
    xt.build_test_module(moddir, 'mod_badminor', 'mod_badabi',
                         ['-DBADABI_MAJOR=%d' % ABI[0], '-DBADABI_MINOR=%d' % (ABI[1] + 1),
                          '-DBADABI_NAME="mod_badminor"'])
    # Built for ABI 1.0, the first minor: it must load on any 1.x.
    xt.build_test_module(moddir, 'mod_oldminor', 'mod_badabi',
                         ['-DBADABI_MAJOR=%d' % ABI[0], '-DBADABI_MINOR=0',
                          '-DBADABI_NAME="mod_oldminor"'])
    xt.build_test_module(moddir, 'mod_failload')
    xt.build_test_module(moddir, 'mod_needsdep')
    xt.build_test_module(moddir, 'mod_timerstorm')

    srv = xt.Server(workers=2, conf={'module_dir': str(moddir)}, modules={
        'mod_version': {},
        'mod_wordfilter': {'words': ['darn', 'Heck'], 'replacement': '***'},
    })
    host = srv.host
    srv.register('alice', 'alice-pw')
    srv.register('bob', 'bob-pw')
    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='a')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b')
    xt.like(srv.log(), r'loaded mod_wordfilter 1\.0 from \S*mod_wordfilter\.so',
            '(a) the log says mod_wordfilter was loaded, and from where')

    cases = [('what the darn thing', 'what the *** thing'),
             ('DARN! heck, heck.', '***! ***, ***.'),
             ('darnation and Heckle stay', 'darnation and Heckle stay'),
             ('nothing to see', 'nothing to see')]
    for sent, want in cases:
        alice.send(bob.jid, sent)
        m = await bob.message(frm=alice.jid, timeout=5)
        xt.is_(m['body'] if m is not None else None, want,
               '(a) "%s" arrives as "%s"' % (sent, want))
    # A message with one body per language: each is filtered.
    alice.send_raw("<message to='%s' type='chat' id='ml'><body>darn it</body>"
                   "<body xml:lang='de'>verdammt, heck</body>"
                   "<thread>t1</thread></message>" % bob.jid)
    m = await bob.message(frm=alice.jid, timeout=5)
    bodies = sorted((b.get('{http://www.w3.org/XML/1998/namespace}lang') or '', b.text)
                    for b in (m.xml.findall('{jabber:client}body') if m is not None else []))
    xt.is_(bodies, [('', '*** it'), ('de', 'verdammt, ***')],
           '(a) every <body/> of a multi-language message is filtered, xml:lang kept')
    xt.is_(m['thread'] if m is not None else None, 't1', '(a) other children are kept')

    # The per-worker count: alice's messages were filtered on her worker.
    # A client on the other worker (connections are spread by the kernel:
    # log in until one lands there) sees 0 for it.
    sessions = await srv.wait_connected(lambda s: len(s) == 2)
    wa = (xt.session_of(sessions, alice.jid) or {}).get('worker')
    other, extra = None, []
    for i in range(12):
        c = await xt.login_ok(srv, 'bob', 'bob-pw', resource='w%d' % i)
        extra.append(c)
        sessions = await srv.wait_connected(lambda s: xt.session_of(s, c.jid))
        if (xt.session_of(sessions, c.jid) or {}).get('worker') not in (wa, None):
            other = c
            break
    xt.is_(await wf_counts(alice, srv), (3, 3),
           '(a) the custom IQ counts 3 filtered messages, all on alice\'s worker')
    if xt.ok(other is not None, '(a) a client landed on the other worker'):
        xt.is_(await wf_counts(other, srv), (3, 0),
               '(a) asked from the other worker: the same total, 0 on that worker')
    await xt.disconnect_all(*extra)
    r = await alice.iq('set', host, "<query xmlns='%s'/>" % NS_WF)
    xt.is_(outcome(r), 'error:service-unavailable',
           '(a) the custom IQ is registered for get only: a set is service-unavailable')

    # (b) xmppctl module ...
    code, out, err = srv.ctl('module', 'list')
    xt.is_(code, 0, '(b) module list exits 0') or xt.diag(out, err)
    mods = listed(out)
    xt.is_(sorted(mods), ['mod_version', 'mod_wordfilter'], '(b) module list shows both modules')
    xt.is_(mods.get('mod_version'), ('1.0', str(moddir / 'mod_version.so')),
           '(b) module list: version and path')
    xt.is_(version_name(await version_iq(alice, srv)), 'xmppd', '(b) mod_version answers')

    code, out, err = srv.ctl('module', 'unload', 'mod_version')
    xt.is_((code, out.strip()), (0, 'unloaded mod_version'), '(b) module unload mod_version') \
        or xt.diag(err)
    code, out, err = srv.ctl('module', 'list')
    xt.is_(sorted(listed(out)), ['mod_wordfilter'], '(b) module list no longer shows it')
    xt.is_(outcome(await version_iq(alice, srv)), 'error:service-unavailable',
           '(b) unloaded: the version IQ gets service-unavailable')
    code, out, err = srv.ctl('module', 'unload', 'mod_version')
    xt.ok(code == 1 and 'mod_version is not loaded' in err,
          '(b) unloading it again: "mod_version is not loaded"') or xt.diag(code, out, err)

    code, out, err = srv.ctl('module', 'load', 'mod_version')
    xt.is_((code, out.strip()), (0, 'loaded mod_version'), '(b) module load mod_version') \
        or xt.diag(err)
    xt.is_(version_name(await version_iq(alice, srv)), 'xmppd', '(b) loaded again: it answers')
    code, out, err = srv.ctl('module', 'load', 'mod_version')
    xt.ok(code == 1 and 'mod_version is already loaded' in err,
          '(b) loading it twice: "mod_version is already loaded"') or xt.diag(code, out, err)

    code, out, err = srv.ctl('module', 'reload', 'mod_version')
    xt.is_((code, out.strip()), (0, 'reloaded mod_version'), '(b) module reload mod_version') \
        or xt.diag(err)
    xt.is_(version_name(await version_iq(alice, srv)), 'xmppd', '(b) reloaded: it answers')
    code, out, err = srv.ctl('module', 'reload', 'mod_wordfilter')
    xt.is_(code, 0, '(b) module reload mod_wordfilter') or xt.diag(out, err)
    xt.is_(await wf_counts(alice, srv), (0, 0),
           '(b) mod_wordfilter has no reload(): reload is unload + load (counters start over)')

    # Options changed in the file reach the module on `xmppctl reload`.
    srv.conf['modules']['mod_version'] = {'name': 'renamed'}
    srv.conf['modules']['mod_wordfilter'] = {'words': ['darn'], 'replacement': '[censored]'}
    srv.write_config()
    code, out, err = srv.ctl('reload')
    xt.is_(code, 0, '(b) xmppctl reload with changed module options') or xt.diag(out, err)
    xt.is_(version_name(await version_iq(alice, srv)), 'renamed',
           '(b) mod_version runs with its new option (name: renamed)')
    alice.send(bob.jid, 'darn it')
    m = await bob.message(frm=alice.jid, timeout=5)
    xt.is_(m['body'] if m is not None else None, '[censored] it',
           '(b) mod_wordfilter runs with its new replacement')

    # Dependencies at run time.
    code, out, err = srv.ctl('module', 'load', 'mod_needsdep')
    xt.is_(code, 0, '(d) module load mod_needsdep, whose dependency is loaded') \
        or xt.diag(out, err)
    code, out, err = srv.ctl('module', 'unload', 'mod_version')
    xt.ok(code == 1 and 'mod_version is needed by mod_needsdep' in err,
          '(d) unloading a dependency is refused: "mod_version is needed by mod_needsdep"') \
        or xt.diag(code, out, err)
    code, out, err = srv.ctl('module', 'unload', 'mod_needsdep')
    xt.is_(code, 0, '(d) module unload mod_needsdep') or xt.diag(out, err)

    # (c) load and unload under live traffic, between two users on
    # different workers, so that every message crosses from one worker to
    # the other's inbox (DESIGN.md, "Threads"): bob logs in again until he
    # lands on the worker alice is not on. A connection never changes
    # worker; `xmppctl connected` says so before, during and after.
    wa, wb = await xt.worker_of(srv, alice), await xt.worker_of(srv, bob)
    if wa is not None and wb == wa:
        await bob.disconnect()
        bob, wb = await xt.login_on_worker(srv, 'bob', 'bob-pw', lambda w: w != wa, 'b')
    if not xt.ok(bob is not None and wa is not None and wb not in (None, wa),
                 '(c) alice (worker %s) and bob (worker %s) are on different workers'
                 % (wa, wb)):
        raise xt.HarnessError('bob did not land on the other worker in 20 logins')
    placements = []

    async def placement():
        s = await srv.aconnected(quiet=True)
        placements.append(((xt.session_of(s, alice.jid) or {}).get('worker'),
                           (xt.session_of(s, bob.jid) or {}).get('worker')))

    # alice sends every 50 ms (at least 200 messages) until the churn is
    # over, however long a loaded machine makes it take; each round notes
    # how many had been sent when it began and ended.
    sent, sent_done, churn_done = [0], asyncio.Event(), asyncio.Event()
    iq_outcomes, rounds = [], []

    async def sender():
        while sent[0] < 200 or not churn_done.is_set():
            i = sent[0]
            alice.send(bob.jid, 'live-%d %s' % (i, 'darn' if i % 2 else 'ok'))
            sent[0] += 1
            await asyncio.sleep(0.05)
        sent_done.set()

    async def asker():
        while not sent_done.is_set():
            iq_outcomes.append(outcome(await version_iq(bob, srv)))
            await asyncio.sleep(0.1)

    async def churn():
        fails = []
        for k in range(10):
            at_start = sent[0]
            for args in (('unload', 'mod_wordfilter'), ('unload', 'mod_version'),
                         ('load', 'mod_version'), ('load', 'mod_wordfilter')):
                code, out, err = await srv.actl('module', *args)
                if code != 0:
                    fails.append((k, args, code, out, err))
                await asyncio.sleep(0.15)
            rounds.append((at_start, sent[0]))
        return fails

    async def watcher():
        while not churn_done.is_set():
            await placement()
            await asyncio.sleep(0.3)

    await placement()
    n_before = len(placements)
    tasks = [asyncio.ensure_future(sender()), asyncio.ensure_future(asker()),
             asyncio.ensure_future(watcher())]
    await asyncio.sleep(0.2)
    fails = await churn()
    churn_done.set()
    await asyncio.gather(*tasks)
    total = sent[0]
    n_during = len(placements) - n_before
    xt.is_(fails, [], '(c) 10 rounds of unload/load of mod_wordfilter and mod_version '
           'under traffic all succeed')
    xt.ok(len(rounds) == 10 and all(b > a for a, b in rounds),
          '(c) messages were being sent during each of the 10 rounds (%d in all)' % total) \
        or xt.diag(rounds)
    await placement()
    xt.ok(n_during >= 3 and placements == [(wa, wb)] * len(placements),
          '(c) alice and bob stayed on workers %s and %s: before, %d times during the churn, '
          'and after' % (wa, wb, n_during)) or xt.diag(placements)

    deadline = time.monotonic() + 15
    seen, odd = [], []
    while len(seen) + len(odd) < total and time.monotonic() < deadline:
        m = await bob.message(frm=alice.jid, timeout=1)
        if m is None:
            continue
        g = re.fullmatch(r'live-(\d+) (ok|darn|\[censored\])', m['body'] or '')
        if g and (g.group(2) == 'ok') == (int(g.group(1)) % 2 == 0):
            seen.append(int(g.group(1)))
        else:
            odd.append(m['body'])
    xt.is_(sorted(seen), list(range(total)), '(c) all %d messages arrived, none lost' % total) \
        or xt.diag('missing: %s' % sorted(set(range(total)) - set(seen))[:50])
    xt.is_(seen, sorted(seen), '(c) and in the order sent')
    xt.is_(odd, [], '(c) no message arrived mangled')
    xt.ok(set(iq_outcomes) <= {'result', 'error:service-unavailable'} and iq_outcomes,
          '(c) %d version IQs meanwhile: each answered, or service-unavailable while unloaded'
          % len(iq_outcomes)) or xt.diag(iq_outcomes)
    xt.ok(srv.running(), '(c) xmppd is still running')
    xt.is_(sanitizer_hits(srv.log()), [], '(c) no sanitizer report in the log so far')
    xt.ok(await xt.roundtrip(alice, bob), '(c) messages still flow afterwards')
    code, out, err = srv.ctl('module', 'list')
    xt.is_(sorted(listed(out)), ['mod_version', 'mod_wordfilter'], '(c) both modules loaded')

    # (d) refusals at run time.
    code, out, err = srv.ctl('module', 'load', 'mod_nonexistent')
    xt.is_(code, 1, '(d) module load mod_nonexistent exits 1') or xt.diag(out, err)
    xt.like(err, r'mod_nonexistent.*%s.*(No such file|cannot open)'
            % re.escape(str(moddir / 'mod_nonexistent.so')),
            '(d) ... saying which file it could not open')
    code, out, err = srv.ctl('module', 'load', '../mod_version')
    xt.ok(code == 1 and 'is not a module name' in err,
          '(d) module load ../mod_version: "not a module name"') or xt.diag(code, out, err)
    code, out, err = srv.ctl('module', 'load', 'mod_badabi')
    xt.ok(code == 1 and 'mod_badabi: built for module ABI 99.0, this xmppd has ABI %s' % ABI_S in err,
          '(d) module load mod_badabi: "built for module ABI 99.0, this xmppd has ABI %s"' % ABI_S) \
        or xt.diag(code, out, err)
    xt.unlike(srv.log(), 'mod_badabi load\\(\\) was called', '(d) its load() never ran')
    code, out, err = srv.ctl('module', 'load', 'mod_badminor')
    newer = '%d.%d' % (ABI[0], ABI[1] + 1)
    xt.ok(code == 1 and 'built for module ABI %s, this xmppd has ABI %s' % (newer, ABI_S) in err,
          '(d) a newer ABI minor is refused too: "built for module ABI %s"' % newer) \
        or xt.diag(code, out, err)
    code, out, err = srv.ctl('module', 'load', 'mod_oldminor')
    xt.ok(code == 0 and 'mod_oldminor load() was called' in srv.log(),
          '(d) a module built for ABI %d.0 loads on %s (minors only add)' % (ABI[0], ABI_S)) \
        or xt.diag(code, out, err)
    code, out, err = srv.ctl('module', 'unload', 'mod_oldminor')
    xt.is_(code, 0, '(d) and unloads') or xt.diag(out, err)

    # (e) a failing load() leaves nothing behind.
    for attempt in range(3):
        code, out, err = srv.ctl('module', 'load', 'mod_failload')
        xt.ok(code == 1 and 'mod_failload: load failed (see the log)' in err,
              '(e) module load mod_failload fails (attempt %d)' % (attempt + 1)) \
            or xt.diag(code, out, err)
    xt.like(srv.log(), r'mod_failload.*failing on purpose', '(e) the log has the module\'s reason')
    code, out, err = srv.ctl('module', 'list')
    xt.ok('mod_failload' not in listed(out), '(e) module list does not show it')
    r = await alice.iq('get', host, "<query xmlns='%s'/>" % NS_FAILLOAD)
    xt.is_(outcome(r), 'error:service-unavailable',
           '(e) its IQ namespace answers service-unavailable')
    r = await alice.iq('get', bob.jid.bare, "<query xmlns='%s'/>" % NS_FAILLOAD)
    xt.is_(outcome(r), 'error:service-unavailable', '(e) ... to an account too')
    r = await alice.iq('get', 'failload.invalid', "<query xmlns='%s'/>" % NS_FAILLOAD)
    xt.is_(outcome(r), 'error:remote-server-not-found', '(e) its service domain is not claimed')
    xt.ok(await xt.roundtrip(alice, bob), '(e) its drop-everything hooks are gone: '
          'messages flow')
    await asyncio.sleep(0.3)       # its 10 ms timers would have fired by now
    xt.ok(srv.running(), '(e) xmppd still runs (its timers did not fire into unmapped code)')

    # (f) Unloading a module whose timers make timers on every worker: a
    # timer on its way to another worker when the unload begins is not
    # started there (it would run unmapped code 50 ms later).
    cycles = 0
    for cycle in range(12):
        code, out, err = srv.ctl('module', 'load', 'mod_timerstorm')
        if code != 0:
            xt.diag(code, out, err)
            break
        await asyncio.sleep(0.1)
        code, out, err = srv.ctl('module', 'unload', 'mod_timerstorm')
        if code != 0:
            xt.diag(code, out, err)
            break
        await asyncio.sleep(0.1)
        if not srv.running():
            break
        cycles += 1
    xt.is_(cycles, 12, '(f) mod_timerstorm loaded and unloaded 12 times, xmppd running after each')
    xt.ok(await xt.roundtrip(alice, bob), '(f) and messages flow')

    await xt.disconnect_all(alice, bob)
    code = await srv.astop()
    xt.is_(code, 0, 'xmppd exits 0 on SIGTERM, unloading its modules')
    srv.teardown()

    # (d) refusals at start: xmppd exits non-zero and says why.
    bad = xt.Server(name='t0800-refused', workers=2, start=False,
                    conf={'module_dir': str(moddir)}, modules={})

    code, log, _ = start_refused(bad, {'mod_version': {}, 'mod_badabi': {}})
    xt.ok(code not in (0, None), '(d) a module built for ABI 99: xmppd exits non-zero (%r)' % code)
    xt.like(log, r'mod_badabi: built for module ABI 99\.0, this xmppd has ABI %s' % re.escape(ABI_S),
            '(d) ... with "built for module ABI 99.0, this xmppd has ABI %s"' % ABI_S)

    code, log, text = start_refused(bad, {'mod_version': {'show_os': False, 'x': 1}})
    line = yaml_line(text, 'x', 'mod_version:')
    xt.ok(code not in (0, None), '(d) an unknown option: xmppd exits non-zero (%r)' % code)
    xt.like(log, r'(%s|%s):%d: mod_version: unknown option \'x\''
            % (re.escape(bad.conf_path), re.escape(os.path.realpath(bad.conf_path)), line),
            '(d) ... with "FILE:%d: mod_version: unknown option \'x\'"' % line)

    code, log, text = start_refused(bad, {'mod_version': {'show_os': 'maybe'}})
    line = yaml_line(text, 'show_os', 'mod_version:')
    xt.ok(code not in (0, None), '(d) an ill-typed option: xmppd exits non-zero (%r)' % code)
    xt.like(log, r'xmppd\.yml:%d: mod_version: \'show_os\' expects true or false' % line,
            '(d) ... with "FILE:%d: mod_version: \'show_os\' expects true or false"' % line)

    code, log, _ = start_refused(bad, {'mod_needsdep': {}})
    xt.ok(code not in (0, None), '(d) a missing dependency: xmppd exits non-zero (%r)' % code)
    xt.like(log, r'mod_needsdep needs mod_version, which is not loaded',
            '(d) ... with "mod_needsdep needs mod_version, which is not loaded"')

    code, log, _ = start_refused(bad, {'mod_version': {}, 'mod_failload': {}})
    xt.ok(code not in (0, None), '(e) a module whose load() fails: xmppd exits non-zero (%r)'
          % code)
    xt.like(log, r'mod_failload: load failed', '(e) ... with "mod_failload: load failed"')

    # Dependencies are loaded first, whatever the order of the file.
    bad.conf['modules'] = {'mod_needsdep': {}, 'mod_version': {}}
    bad.write_config()
    bad.start()
    code, out, err = bad.ctl('module', 'list')
    xt.is_(list(listed(out)), ['mod_version', 'mod_needsdep'],
           '(d) mod_needsdep listed before mod_version: loaded after it')
    xt.is_(bad.stop(), 0, 'that server exits 0')
    xt.is_(sanitizer_hits(bad.log()), [], 'no sanitizer report in the refused starts\' logs')


xt.run(main, timeout=300)
