#!/usr/bin/python3
"""t1880-packaging: `xmppd --version` and `xmppctl --version` print the
version and, on a second line, the build (the commit from git describe
when built in a git tree, the date, the configure options)."""

import os
import re
import subprocess
import sys

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
    xt.done()


main()
