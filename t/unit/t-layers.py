#!/usr/bin/python3
"""t-layers: src/ keeps to its floors (tools/check-layers), and the check
fails when a lower floor includes a higher one."""

import os
import shutil
import subprocess
import sys
import tempfile

TOP = os.environ.get('top_srcdir') or os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
CHECK = os.path.join(TOP, 'tools', 'check-layers')
SRC = os.path.join(TOP, 'src')
n = 0
failed = 0


def ok(cond, name, diag=''):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print('%sok %d - %s' % ('' if cond else 'not ', n, name))
    if not cond and diag:
        for line in diag.splitlines():
            print('# ' + line)


def run(src):
    r = subprocess.run([sys.executable, CHECK, src], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def inject(path, after, line):
    with open(path) as f:
        text = f.read()
    assert after in text, (path, after)
    with open(path, 'w') as f:
        f.write(text.replace(after, after + '\n' + line, 1))


code, out = run(SRC)
ok(code == 0 and out == '', 'src/ has no upward include', out)

tmp = tempfile.mkdtemp(prefix='t-layers-')
try:
    copy = os.path.join(tmp, 'src')
    shutil.copytree(SRC, copy)
    # The session manager reaching up into a transport: the circle this
    # check exists to keep away.
    inject(os.path.join(copy, 'router', 'sm.c'), '#include "router/sm.h"', '#include "c2s/c2s.h"')
    code, out = run(copy)
    ok(code == 1 and 'sm.c' in out and 'router (floor 4) includes c2s/c2s.h (floor 5)' in out,
       'an upward include (router/sm.c -> c2s/c2s.h) makes it fail, naming the file', out)
    # core (floor 1) including the ABI facade (floor 6).
    shutil.rmtree(copy)
    shutil.copytree(SRC, copy)
    inject(os.path.join(copy, 'core', 'worker.c'), '#include "core/worker.h"', '#include "abi/module.h"')
    code, out = run(copy)
    ok(code == 1 and 'core (floor 1) includes abi/module.h (floor 6)' in out,
       'so does core/worker.c -> abi/module.h', out)
    # A new folder must be given a floor.
    shutil.rmtree(copy)
    shutil.copytree(SRC, copy)
    os.mkdir(os.path.join(copy, 'newfloor'))
    code, out = run(copy)
    ok(code == 2 and 'newfloor' in out, 'a folder without a floor is reported', out)
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print('1..%d' % n)
sys.exit(1 if failed else 0)
