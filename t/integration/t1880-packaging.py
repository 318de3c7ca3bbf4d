#!/usr/bin/python3
"""t1880-packaging: `xmppd --version` and `xmppctl --version` print the
version and, on a second line, the build (the commit from git describe
when built in a git tree, the date, the configure options); `make install`
puts a systemd unit, a logrotate file and the example configuration
with the installation's paths and the web admin page's files, and `make
uninstall` removes the unit and the logrotate file."""

import os
import re
import subprocess
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402


def main():
    for prog, path in (('xmppd', xt.XMPPD), ('xmppctl', xt.XMPPCTL)):
        r = subprocess.run([str(path), '--version'], capture_output=True, text=True, timeout=10)
        lines = r.stdout.splitlines()
        xt.is_((r.returncode, len(lines)), (0, 2), '%s --version: two lines, exit 0' % prog) \
            or xt.diag(r.stdout, r.stderr)
        xt.like(lines[0] if lines else '', r'^%s \d+\.\d+\.\d+$' % prog,
                '%s --version: the name and version first' % prog)
        xt.like(lines[1] if len(lines) > 1 else '',
                r'^build: [^,]+, \d{4}-\d\d-\d\d, configure:', '%s --version: the build line' % prog)
    install_files()
    xt.done()


def install_files():
    # The rule `make install` runs for the data files (install-data-local),
    # into a DESTDIR with a prefix of our own: the paths in the installed
    # files must be those of this prefix, not the template's placeholders.
    dest = tempfile.mkdtemp(prefix='t1880-')
    prefix = '/opt/xmppd-t1880'
    try:
        make = ['make', '-s', '-C', str(xt.TOP_BUILDDIR), 'prefix=' + prefix, 'DESTDIR=' + dest]
        r = subprocess.run(make + ['install-data-local'], capture_output=True, text=True,
                           timeout=120)
        xt.is_(r.returncode, 0, 'make install-data-local exits 0') or xt.diag(r.stdout, r.stderr)
        unit = os.path.join(dest, prefix.lstrip('/'), 'lib/systemd/system/xmppd.service')
        rot = os.path.join(dest, prefix.lstrip('/'), 'etc/logrotate.d/xmppd')
        u = open(unit).read() if os.path.exists(unit) else ''
        lr = open(rot).read() if os.path.exists(rot) else ''
        xt.like(u, r'(?m)^ExecStart=%s/sbin/xmppd -c %s/etc/xmppd/xmppd.yml$' % (prefix, prefix),
                'the unit is installed under PREFIX/lib/systemd/system and runs PREFIX/sbin/xmppd')
        xt.like(u, r'(?m)^ReadWritePaths=-%s/var/lib/xmppd$' % prefix,
                'the unit may write the spool under PREFIX/var/lib/xmppd')
        left = [m for m in re.findall(r'@[a-z_]+@', u + lr)]
        xt.is_(left, [], 'no @placeholder@ is left in the unit or the logrotate file')
        xt.like(lr, r'(?m)^%s/var/log/xmppd/\*\.log \{$' % prefix,
                'the logrotate file rotates PREFIX/var/log/xmppd/*.log')
        xt.like(lr, r'(?s)postrotate.*HUP.*endscript',
                'after a rotation xmppd gets SIGHUP (it reopens its log file)')
        # The example configuration: the quick start's, with the paths of
        # the installation instead of the tree's.
        ex = os.path.join(dest, prefix.lstrip('/'), 'etc/xmppd/xmppd.yml.example')
        y = open(ex).read() if os.path.exists(ex) else ''
        want = {'module_dir': prefix + '/lib/xmppd', 'spool_dir': prefix + '/var/lib/xmppd',
                'admin_page_dir': prefix + '/share/xmppd/www/admin'}
        got = {k: (re.search(r'(?m)^%s: "([^"]*)"$' % k, y) or [None, None])[1] for k in want}
        cj = (re.search(r'(?m)^conversejs_path: "([^"]*)"$', y) or [None, ''])[1]
        live = [ln for ln in y.splitlines() if not ln.lstrip().startswith('#')]
        xt.ok(got == want and not [ln for ln in live if '"../' in ln] and
              (cj == prefix + '/share/xmppd/conversejs' or not cj.startswith('..')),
              'xmppd.yml.example names the installed modules, spool, admin page and '
              'Converse.js, no path of the tree') \
            or xt.diag(got, cj, [ln for ln in live if '"../' in ln])
        r = subprocess.run(make + ['install-dist_adminwwwDATA'], capture_output=True, text=True,
                           timeout=120)
        www = os.path.join(dest, prefix.lstrip('/'), 'share/xmppd/www/admin')
        xt.ok(r.returncode == 0 and all(
            os.path.exists(os.path.join(www, f)) and
            open(os.path.join(www, f), 'rb').read() ==
            open(os.path.join(str(xt.TOP_SRCDIR), 'www', 'admin', f), 'rb').read()
            for f in ('index.html', 'admin.js', 'admin.css')),
            'make install puts the web admin page under PREFIX/share/xmppd/www/admin') \
            or xt.diag(r.stdout, r.stderr)
        r = subprocess.run(make + ['uninstall-local'], capture_output=True, text=True,
                           timeout=120)
        xt.ok(r.returncode == 0 and not os.path.exists(unit) and not os.path.exists(rot),
              'make uninstall removes the unit and the logrotate file') or xt.diag(r.stderr)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


main()
