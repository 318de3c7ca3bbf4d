#!/usr/bin/python3
"""t0000-sanitizers: a sanitizer run really has sanitizers.

Every integration test fails when a server's log, a tool's stderr or an
exit status shows a sanitizer report (t/lib/xmppdtest.py).  Those checks
mean something only if the binaries are instrumented and the scanner knows
the reports' formats, so this test runs first and asserts both:

- every program and module the suite runs references the AddressSanitizer
  and UndefinedBehaviorSanitizer runtimes;
- t/tools/san-probe, built with the same flags, does each bad thing once,
  and each one ends with a non-zero exit status and a report that
  xt.sanitizer_lines() finds; the clean run finds nothing.

It runs when the build was configured with --enable-sanitizers, and must
run (a failure, not a skip) when XMPPDTEST_REQUIRE_SANITIZERS=1, which
`tools/quickstart test` (and so CI) sets.
"""

import glob
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

BUILD = str(xt.TOP_BUILDDIR)


def programs():
    """What the suite runs of ours: the daemon, the control tool, the test
    tools, the unit tests, the fuzz targets' corpus replays and every
    module."""
    found = [xt.XMPPD, xt.XMPPCTL]
    found += [os.path.join(BUILD, 't', 'tools', n) for n in ('xmpp-login', 'san-probe')]
    found += sorted(p for p in glob.glob(os.path.join(BUILD, 't', 'unit', 't-*'))
                    if os.access(p, os.X_OK) and '.' not in os.path.basename(p))
    found += sorted(p for p in glob.glob(os.path.join(BUILD, 't', 'fuzz', 'replay-*'))
                    if os.access(p, os.X_OK) and '.' not in os.path.basename(p))
    found += sorted(glob.glob(os.path.join(xt.MODULE_DIR, 'mod_*.so')))
    return found


def undefined_symbols(path):
    r = subprocess.run(['nm', '-D', '--undefined-only', path], capture_output=True,
                       text=True, timeout=30)
    return r.stdout if r.returncode == 0 else ''


def main():
    configured = os.environ.get('XMPPD_SANITIZERS') == 'yes'
    required = os.environ.get('XMPPDTEST_REQUIRE_SANITIZERS') == '1'
    if not configured and not required:
        xt.skip('not a sanitizer build (./configure --enable-sanitizers)')
        xt.done()
    xt.ok(configured, 'the build was configured with --enable-sanitizers')

    progs = programs()
    missing = [p for p in progs if not os.path.exists(p)]
    xt.is_(missing, [], 'every program and module the suite runs is built')
    bare = []
    for p in progs:
        if p in missing:
            continue
        syms = undefined_symbols(p)
        if '__asan_init' not in syms or '__ubsan_handle_' not in syms:
            bare.append(p)
    xt.is_(bare, [], '%d programs and modules are built with ASan and UBSan'
           % (len(progs) - len(missing)))
    xt.ok(any(p.endswith('.so') for p in progs) and any('/t/unit/' in p for p in progs),
          'the modules and the unit tests are among them')

    # The runtime options the suite runs with (tools/quickstart sets them);
    # the probes see the same environment as xmppd.
    env = dict(os.environ)
    env.setdefault('ASAN_OPTIONS', 'detect_leaks=1:abort_on_error=0')
    env.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1')
    probe = os.path.join(BUILD, 't', 'tools', 'san-probe')
    for what, kind in (('heap-overflow', 'AddressSanitizer: heap-buffer-overflow'),
                       ('use-after-free', 'AddressSanitizer: heap-use-after-free'),
                       ('leak', 'LeakSanitizer: detected memory leaks'),
                       ('ubsan', 'runtime error: signed integer overflow')):
        r = xt.run_tool([probe, what], env=env)
        # The report is what this test is about: do not let the harness
        # count it as a tool's failure too.
        del xt._tool_reports[:]
        lines = xt.sanitizer_lines(r.stderr)
        xt.ok(r.returncode != 0 and lines and kind in r.stderr,
              '%s: a non-zero exit status and a report the scanner finds (%s)'
              % (what, kind)) or xt.diag('status %r, stderr:\n%s' % (r.returncode, r.stderr[-2000:]))
    r = xt.run_tool([probe, 'none'], env=env)
    xt.ok(r.returncode == 0 and not xt.sanitizer_lines(r.stderr),
          'a clean run: status 0 and nothing the scanner finds') or \
        xt.diag('status %r, stderr:\n%s' % (r.returncode, r.stderr[-2000:]))

    # Reports this machine cannot provoke on purpose, in the runtimes' own
    # words (compiler-rt's sanitizer_common and lsan sources).
    for text in ('==4242==AddressSanitizer CHECK failed: ../../../../src/libsanitizer/'
                 'asan/asan_allocator.cpp:188 "((res)) != (0)" (0x0, 0x0)',
                 '==4242==LeakSanitizer has encountered a fatal error.',
                 'AddressSanitizer:DEADLYSIGNAL',
                 '==4242==ERROR: UndefinedBehaviorSanitizer: SEGV on unknown address',
                 'SUMMARY: AddressSanitizer: 64 byte(s) leaked in 1 allocation(s).'):
        xt.ok(xt.sanitizer_lines('before\n' + text + '\nafter') == [text],
              'the scanner finds %r' % text[:60])
    xt.is_(xt.sanitizer_lines('c2s: runtime configuration reloaded\nAddressSanitizer is '
                              'not a word in our logs'), [],
           'and does not flag ordinary log lines')
    xt.done()


main()
