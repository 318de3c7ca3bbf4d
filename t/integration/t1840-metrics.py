#!/usr/bin/python3
"""t1840-metrics: GET /metrics on the HTTP listener. After real logins (one
over TCP, one over WebSocket), a failed login, messages delivered, stored
offline and bounced, the counters and gauges say so; promtool accepts the
text format 0.0.4; Accept: application/openmetrics-text gets OpenMetrics
1.0.0 (counter families without _total, # EOF); only GET and HEAD; the
access rule metrics_access (default: loopback clients only) answers 403;
and the Grafana dashboard in tools/grafana parses and charts only metrics
the server exposes."""

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
import xmppdtest as xt  # noqa: E402
from xt_transports import Bosh, ws_login, ws_message  # noqa: E402

CT_TEXT = 'text/plain; version=0.0.4; charset=utf-8'
CT_OM = 'application/openmetrics-text; version=1.0.0; charset=utf-8'
# What Prometheus 2.x sends when it may negotiate OpenMetrics.
PROM_ACCEPT = ('application/openmetrics-text;version=1.0.0,application/openmetrics-text;'
               'version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1')
DASHBOARD = os.path.join(HERE, '..', '..', 'tools', 'grafana', 'xmppd-dashboard.json')

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(body):
    """{(name, frozenset(labels)): value} of a text exposition; raises on
    a line that is neither a comment nor a sample."""
    out = {}
    for ln in body.splitlines():
        if ln.startswith('#') or ln == '':
            continue
        m = SAMPLE.match(ln)
        if m is None:
            raise ValueError('not a sample line: %r' % ln)
        labels = frozenset(LABEL.findall(m.group(3) or ''))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def fetch(url, method='GET', headers=None, timeout=5):
    """(status, headers (lowercased names), body text)."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, \
                r.read().decode('utf-8')
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, \
            e.read().decode('utf-8', 'replace')


async def afetch(*a, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fetch(*a, **kw))


def promtool(body):
    """(exit status, its output) of promtool check metrics on body."""
    p = subprocess.run(['promtool', 'check', 'metrics'], input=body.encode(),
                       capture_output=True, timeout=30)
    return p.returncode, (p.stdout + p.stderr).decode('utf-8', 'replace')


def check_openmetrics(body):
    """The problems of an OpenMetrics 1.0 exposition, as far as this test
    checks: # EOF last, counter families named without _total and their
    samples with it, histogram samples _bucket/_sum/_count, every sample
    in a family declared before it, no family twice."""
    problems = []
    lines = body.split('\n')
    if lines[-1] != '' or lines[-2] != '# EOF':
        problems.append('does not end with "# EOF\\n"')
    types, seen, current = {}, set(), None
    for ln in lines[:-2]:
        if ln == '':
            problems.append('an empty line')
            continue
        if ln.startswith('# TYPE '):
            _, _, name, typ = ln.split(' ', 3)
            if name in types:
                problems.append('family %s twice' % name)
            types[name] = typ
            current = name
            if typ == 'counter' and name.endswith('_total'):
                problems.append('counter family %s ends in _total' % name)
            continue
        if ln.startswith('# HELP '):
            continue
        if ln.startswith('#'):
            problems.append('unknown comment %r' % ln)
            continue
        m = SAMPLE.match(ln)
        if m is None:
            problems.append('bad line %r' % ln)
            continue
        name = m.group(1)
        typ = types.get(current)
        allowed = {'counter': (current + '_total', current + '_created'),
                   'gauge': (current,),
                   'info': (current + '_info',),
                   'histogram': (current + '_bucket', current + '_sum', current + '_count',
                                 current + '_created')}.get(typ, ())
        if name not in allowed:
            problems.append('sample %s not of family %s (%s)' % (name, current, typ))
        seen.add(current)
    return problems


def dashboard_metrics(path):
    """(the dashboard, the metric names its panels' expressions name)."""
    with open(path, encoding='utf-8') as f:
        d = json.load(f)
    names = set()
    funcs = {'rate', 'irate', 'increase', 'sum', 'by', 'without', 'histogram_quantile',
             'avg', 'max', 'min', 'count', 'le', 'on', 'ignoring', 'group_left',
             'deriv', 'delta', 'time', 'topk', 'bottomk', 'label_replace', 'clamp_min',
             'vector', 'scalar', 'and', 'or', 'unless', 'offset', 'bool'}
    exprs = []

    def walk(panels):
        for p in panels:
            for t in p.get('targets', []):
                if 'expr' in t:
                    exprs.append(t['expr'])
            walk(p.get('panels', []))
    walk(d.get('panels', []))
    for e in exprs:
        # Drop label matchers, strings, durations and numbers; what is
        # left that looks like an identifier and is no function or
        # keyword is a metric name.
        e2 = re.sub(r'\{[^}]*\}', '', e)
        e2 = re.sub(r'"[^"]*"', '', e2)
        e2 = re.sub(r'\[[^\]]*\]', '', e2)
        e2 = re.sub(r'\((?:[a-z_]+(?:, *[a-z_]+)*)\)', lambda m: '()' if re.search(
            r'\b(by|without)\s*$', e2[:m.start()]) else m.group(0), e2)
        for tok in re.findall(r'[a-zA-Z_:][a-zA-Z0-9_:]*', e2):
            if tok not in funcs:
                names.add(tok)
    return d, exprs, names


def family_names(samples):
    """Sample names and their histogram base names."""
    names = {n for n, _ in samples}
    for n in list(names):
        for suf in ('_bucket', '_sum', '_count'):
            if n.endswith(suf):
                names.add(n[:-len(suf)])
    return names


async def main():
    srv = xt.Server(workers=2, start=False,
                    modules={'mod_offline': {}, 'mod_ping': {}, 'mod_mam': {}})
    hp, = xt.free_ports(srv.ip, 1)
    # secure: the WebSocket login uses PLAIN (the listener is taken as
    # behind TLS).
    srv.conf['listen'] += [{'port': hp, 'ip': srv.ip, 'module': 'http', 'secure': True}]
    srv.write_config()
    srv.start()
    url = 'http://%s:%d/metrics' % (srv.ip, hp)
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')

    st, h, body = await afetch(url)
    xt.is_((st, h.get('content-type')), (200, CT_TEXT),
           'GET /metrics from loopback: 200, the text format 0.0.4 by default')
    m0 = parse(body)
    xt.is_(val(m0, 'xmppd_sessions', transport='tcp'), 0.0, 'no session yet')

    alice = await xt.login_ok(srv, 'alice', 'alice-pw', resource='tcp')
    ws, bob = await ws_login(srv, hp, 'bob', 'ws')
    bad = await xt.login(srv, 'carol', 'wrong-password')
    xt.ok(not bad.ok and bad.auth_failure is not None, 'carol with a wrong password fails')
    await xt.disconnect_all(bad)

    # Three messages alice -> bob (WebSocket), one message to carol
    # (offline: mod_offline stores it) and one to nobody (bounced).
    n = 3
    for i in range(n):
        alice.send(bob, 'hello %d' % i)
    got = [await ws_message(ws, 'hello %d' % i) for i in range(n)]
    xt.ok(all(got), 'bob got the three messages over WebSocket')
    # An IQ a module handles (mod_ping, XEP-0199).
    pong = await alice.iq('get', srv.host, "<ping xmlns='urn:xmpp:ping'/>")
    xt.ok(pong is not None and pong['type'] == 'result', 'mod_ping answered a ping')
    alice.send('carol@' + srv.host, 'for later')
    alice.send('nobody@' + srv.host, 'into the void')
    err = await alice.message(mtype='error', timeout=5)
    xt.ok(err is not None, 'the message to nobody bounced with an error')
    # The offline store completes asynchronously: poll briefly.
    for _ in range(50):
        st, h, body = await afetch(url)
        m1 = parse(body)
        if (val(m1, 'xmppd_routed_total', outcome='offline') or 0) >= 1 and \
                (val(m1, 'xmppd_store_table_entries', table='mam') or 0) >= 2 * n:
            break
        await asyncio.sleep(0.1)

    def delta(name, **labels):
        return (val(m1, name, **labels) or 0) - (val(m0, name, **labels) or 0)

    xt.is_((val(m1, 'xmppd_sessions', transport='tcp'),
            val(m1, 'xmppd_sessions', transport='websocket'),
            val(m1, 'xmppd_sessions', transport='bosh')), (1.0, 1.0, 0.0),
           'xmppd_sessions: one over TCP, one over WebSocket, none over BOSH')
    xt.is_(delta('xmppd_logins_total'), 2.0, 'xmppd_logins_total grew by the two logins')
    xt.is_(delta('xmppd_auth_failures_total'), 1.0,
           'xmppd_auth_failures_total grew by the failed login')
    xt.is_(delta('xmppd_stanzas_in_total', kind='message'), float(n + 2),
           'xmppd_stanzas_in_total{kind="message"} grew by the five messages alice sent')
    xt.ok(delta('xmppd_stanzas_in_total', kind='presence') >= 2,
          'xmppd_stanzas_in_total{kind="presence"}: both initial presences')
    xt.ok(delta('xmppd_stanzas_out_total', kind='message') >= n + 1,
          'xmppd_stanzas_out_total{kind="message"}: the three delivered and the bounce '
          '(%s)' % delta('xmppd_stanzas_out_total', kind='message'))
    xt.ok(delta('xmppd_routed_total', outcome='delivered') >= n,
          'xmppd_routed_total{outcome="delivered"} counts the three deliveries')
    xt.is_(delta('xmppd_routed_total', outcome='offline'), 1.0,
           'xmppd_routed_total{outcome="offline"}: the message stored for carol')
    xt.is_(delta('xmppd_routed_total', outcome='bounced'), 1.0,
           'xmppd_routed_total{outcome="bounced"}: the message to nobody')
    xt.ok((val(m1, 'xmppd_connections', kind='c2s') or 0) >= 2 and
          (val(m1, 'xmppd_connections', kind='http') or 0) >= 1 and
          val(m1, 'xmppd_connections', kind='s2s') == 0.0 and
          val(m1, 'xmppd_connections', kind='component') == 0.0,
          'xmppd_connections by kind: c2s, http (this scrape), no s2s, no component')
    xt.is_(val(m1, 'xmppd_s2s_links'), 0.0, 'xmppd_s2s_links: none')
    xt.ok(val(m1, 'xmppd_worker_queue_depth', worker='0') is not None and
          val(m1, 'xmppd_worker_queue_depth', worker='1') is not None,
          'xmppd_worker_queue_depth for both workers')
    xt.ok((val(m1, 'xmppd_store_size_bytes') or 0) > 0, 'xmppd_store_size_bytes > 0')
    rss = val(m1, 'process_resident_memory_bytes') or 0
    xt.ok(rss > 1 << 20, 'process_resident_memory_bytes is above 1 MiB (%d)' % rss)
    xt.ok((val(m1, 'process_cpu_seconds_total') or 0) > 0, 'process_cpu_seconds_total > 0')
    start = val(m1, 'process_start_time_seconds') or 0
    xt.ok(abs(time.time() - start) < 120, 'process_start_time_seconds is about now')
    xt.ok((val(m1, 'process_open_fds') or 0) > 5, 'process_open_fds')
    # mod_offline's offline_message handler ran once and was timed.
    cnt = val(m1, 'xmppd_hook_duration_seconds_count', hook='offline_message',
              module='mod_offline') or 0
    inf = val(m1, 'xmppd_hook_duration_seconds_bucket', hook='offline_message',
              module='mod_offline', le='+Inf')
    xt.ok(cnt >= 1 and inf == cnt,
          'xmppd_hook_duration_seconds{hook="offline_message",module="mod_offline"} counted '
          'the stored message (count %s, +Inf %s)' % (cnt, inf))
    # Buckets are cumulative.
    les = sorted((float(dict(lb)['le']), v) for (nm, lb), v in m1.items()
                 if nm == 'xmppd_hook_duration_seconds_bucket' and
                 dict(lb).get('hook') == 'offline_message')
    xt.ok(les and all(les[i][1] <= les[i + 1][1] for i in range(len(les) - 1)),
          'the histogram buckets are cumulative')
    icnt = val(m1, 'xmppd_hook_duration_seconds_count', hook='iq_handler', module='mod_ping')
    xt.ok(icnt is not None and icnt >= 1,
          'xmppd_hook_duration_seconds{hook="iq_handler",module="mod_ping"} timed the ping '
          '(%s)' % icnt)
    bi = [(dict(lb), v) for (nm, lb), v in m1.items() if nm == 'xmppd_build_info']
    ver = subprocess.run([xt.XMPPD, '--version'], capture_output=True, text=True).stdout
    want = re.search(r'(?m)^build: (.*)$', ver)
    xt.ok(len(bi) == 1 and bi[0][1] == 1.0 and 'xmppd ' + bi[0][0].get('version', '?') in ver and
          want and bi[0][0].get('build') == want.group(1) and
          re.match(r'^\d+\.\d+$', bi[0][0].get('abi', '')),
          'xmppd_build_info{version,build,abi} 1: the build of xmppd --version (%r)' % bi) \
        or xt.diag(ver)

    # The archive and the store: mod_mam keeps each of the three messages
    # in alice's and in bob's archive (table mam), mod_offline carol's.
    xt.ok(delta('xmppd_store_table_entries', table='mam') >= 2 * n and
          (val(m1, 'xmppd_store_table_size_bytes', table='mam') or 0) > 0 and
          delta('xmppd_store_table_entries', table='mod_offline') == 1 and
          (val(m1, 'xmppd_store_size_bytes') or 0) >=
          sum(v for (nm, lb), v in m1.items() if nm == 'xmppd_store_table_size_bytes'),
          'xmppd_store_table_entries/size_bytes{table}: the archive (mam) grew by the '
          'messages of both sides, the offline table by one; within the store size') \
        or xt.diag({k: v for k, v in m1.items() if k[0].startswith('xmppd_store')})
    rc, out = promtool(body)
    xt.is_((rc, out.strip()), (0, ''), 'promtool check metrics: no problem')
    # xmppctl metrics: the same exposition, for a shell (and POST
    # /api/metrics, t1850).
    rc, out, err = await srv.actl('metrics')
    mc = parse(out) if rc == 0 else {}
    xt.ok(rc == 0 and set(nm for nm, _ in mc) == set(nm for nm, _ in m1) and
          val(mc, 'xmppd_sessions', transport='websocket') == 1.0,
          'xmppctl metrics prints the families of GET /metrics, with their values') \
        or xt.diag(rc, out[:500], err)
    rc2, pout = promtool(out)
    xt.is_((rc2, pout.strip()), (0, ''), 'promtool check metrics accepts xmppctl metrics')

    # A third session, over BOSH; then all three end and the gauge goes
    # back to zero.
    bosh = Bosh(srv, hp)
    await bosh.create(wait=2, hold=1)
    await bosh.login('carol', 'bosh')
    m2 = parse((await afetch(url))[2])
    xt.is_((val(m2, 'xmppd_sessions', transport='bosh'),
            (val(m2, 'xmppd_logins_total') or 0) - (val(m1, 'xmppd_logins_total') or 0)),
           (1.0, 1.0), 'a BOSH login: xmppd_sessions{transport="bosh"} 1, one more login')
    await bosh.request(type='terminate')
    ws.close()
    await xt.disconnect_all(alice)
    for _ in range(50):
        m3 = parse((await afetch(url))[2])
        gone = tuple(val(m3, 'xmppd_sessions', transport=t) for t in ('tcp', 'websocket', 'bosh'))
        if gone == (0.0, 0.0, 0.0):
            break
        await asyncio.sleep(0.1)
    xt.is_(gone, (0.0, 0.0, 0.0), 'the three sessions ended: xmppd_sessions back to 0 '
           '(tcp, websocket, bosh)')

    # OpenMetrics.
    for acc in ('application/openmetrics-text; version=1.0.0', PROM_ACCEPT):
        st, h, om = await afetch(url, headers={'Accept': acc})
        xt.is_((st, h.get('content-type'), om.endswith('\n# EOF\n')), (200, CT_OM, True),
               'Accept %r: OpenMetrics 1.0.0, ending in # EOF' % acc[:40])
    xt.is_(check_openmetrics(om), [], 'the OpenMetrics exposition is well formed')
    xt.like(om, r'(?m)^# TYPE xmppd_logins counter$\n(?:.*\n)*?^xmppd_logins_total \d+$',
            'OpenMetrics: the counter family xmppd_logins, its sample xmppd_logins_total')
    xt.like(om, r'(?m)^# TYPE xmppd_build info$\n^xmppd_build_info\{version="[^"]+",build="[^"]+",abi="[^"]+"\} 1$',
            'OpenMetrics: xmppd_build is an info family')
    xt.like(om, r'(?m)^# TYPE xmppd_hook_duration_seconds histogram$',
            'OpenMetrics: the hook latency histogram')
    xt.is_(h.get('vary'), 'Accept', 'Vary: Accept')
    st, h, body2 = await afetch(url, headers={
        'Accept': 'text/plain;version=0.0.4,application/openmetrics-text;q=0.5'})
    xt.is_((st, h.get('content-type'), '# EOF' in body2), (200, CT_TEXT, False),
           'text/plain preferred over OpenMetrics: the text format')
    st, h, body2 = await afetch(url, headers={'Accept': 'application/openmetrics-text;q=0'})
    xt.is_(h.get('content-type'), CT_TEXT, 'OpenMetrics with q=0: the text format')

    # Methods.
    st, h, b = await afetch(url, method='HEAD')
    xt.is_((st, h.get('content-type'), b), (200, CT_TEXT, ''), 'HEAD: 200, headers, no body')
    st, h, b = await afetch(url, method='POST', headers={'Content-Type': 'text/plain'})
    xt.is_((st, h.get('allow')), (405, 'GET, HEAD'), 'POST: 405 with Allow: GET, HEAD')

    # Access. A client that is not on loopback (its address given by a
    # trusted proxy) is refused by default.
    srv.conf['trusted_proxies'] = ['127.0.0.0/8']
    srv.write_config()
    srv.ctl('reload')
    st, _, _ = await afetch(url, headers={'X-Forwarded-For': '192.0.2.7'})
    xt.is_(st, 403, 'default rule: a client at 192.0.2.7 (via a trusted proxy) gets 403')
    st, _, _ = await afetch(url)
    xt.is_(st, 200, 'default rule: loopback still gets 200')
    # A rule that allows that network and nothing else.
    srv.conf['acl'] = {'monitoring': {'ip': '192.0.2.0/24'}}
    srv.conf['access_rules'] = {'metrics_access': [{'allow': 'monitoring'}]}
    srv.write_config()
    srv.ctl('reload')
    st, _, _ = await afetch(url, headers={'X-Forwarded-For': '192.0.2.7'})
    xt.is_(st, 200, 'metrics_access allowing 192.0.2.0/24: 192.0.2.7 gets 200')
    st, h, b = await afetch(url)
    xt.is_(st, 403, 'metrics_access without loopback: a loopback client gets 403')
    srv.conf['access_rules'] = {'metrics_access': [{'deny': 'all'}]}
    srv.write_config()
    srv.ctl('reload')
    st, _, _ = await afetch(url, headers={'X-Forwarded-For': '192.0.2.7'})
    xt.is_(st, 403, 'metrics_access denying all: 403')
    # An administrator's credentials open it from anywhere (Prometheus's
    # scrape_config authorization: an API token), wrong ones get 401.
    rc, tok, err = srv.ctl('api-token', 'create', 'prometheus')
    tok = tok.strip()
    st, h, b = await afetch(url, headers={'X-Forwarded-For': '192.0.2.7',
                                          'Authorization': 'Bearer ' + tok})
    xt.ok(rc == 0 and st == 200 and 'xmppd_sessions{' in b,
          'metrics_access denying all, an API token (Bearer): 200 with the metrics') \
        or xt.diag(rc, err, st, b[:200])
    bad = tok[:-1] + ('A' if tok[-1:] != 'A' else 'B')
    st, h, b = await afetch(url, headers={'X-Forwarded-For': '192.0.2.7',
                                          'Authorization': 'Bearer ' + bad})
    xt.is_((st, h.get('www-authenticate')), (401, 'Basic realm="xmppd"'),
           'a wrong token: 401 with WWW-Authenticate')
    st, h, b = await afetch(url, headers={'X-Forwarded-For': '192.0.2.7',
                                          'Authorization': 'Basic ' +
                                          base64.b64encode(b'alice@xmppd.test:alice-pw').decode()})
    xt.is_(st, 401, 'a user who is no administrator (Basic): 401')

    # The dashboard.
    try:
        d, exprs, names = dashboard_metrics(DASHBOARD)
        parsed = True
    except (OSError, ValueError) as e:
        xt.diag('dashboard: %s' % e)
        d, exprs, names, parsed = {}, [], set(), False
    xt.ok(parsed, 'tools/grafana/xmppd-dashboard.json parses as JSON')
    xt.ok(any(v.get('type') == 'datasource' and v.get('query') == 'prometheus'
              for v in d.get('templating', {}).get('list', [])),
          'the dashboard has a Prometheus datasource variable')
    xt.ok(len(exprs) >= 9, 'the dashboard has at least nine queries (%d)' % len(exprs))
    exposed = family_names(m1)
    missing = sorted(names - exposed)
    xt.is_(missing, [], 'every metric the dashboard queries is exposed by the server')
    for want in ('xmppd_sessions', 'xmppd_stanzas_in_total', 'xmppd_routed_total',
                 'xmppd_auth_failures_total', 'xmppd_hook_duration_seconds_bucket',
                 'xmppd_s2s_links', 'xmppd_worker_queue_depth', 'process_cpu_seconds_total',
                 'process_resident_memory_bytes'):
        xt.ok(want in names, 'the dashboard charts %s' % want)

    srv.stop()
    await federation()


async def federation():
    """Two federating servers: the link counts on both sides, and the
    stanzas that cross it in and out."""
    d = xt.scratch_dir('t1840-certs')
    xt.make_ca(d, 'ca1')
    a, b = xt.federated_pair(d, 'ca1', 't1840', start=False)
    urls = {}
    for s in (a, b):
        p, = xt.free_ports(s.ip, 1)
        s.conf['listen'] += [{'port': p, 'ip': s.ip, 'module': 'http'}]
        s.write_config()
        s.start()
        urls[s] = 'http://%s:%d/metrics' % (s.ip, p)
    a.register('alice', 'alice-pw')
    b.register('bob', 'bob-pw')
    alice = await xt.login_ok(a, 'alice', resource='desk')
    bob = await xt.login_ok(b, 'bob', resource='phone')
    before = {}
    for s in (a, b):
        before[s] = parse((await afetch(urls[s]))[2])
    alice.send(bob.jid, 'over the link')
    xt.ok(await bob.message(body='over the link', timeout=15) is not None,
          'federation: bob@b.test got alice\'s message')
    await xt.wait_links(a, lambda ls: xt.s2s_link(ls, 'out', 'a.test', 'b.test'), timeout=5)
    after = {s: parse((await afetch(urls[s]))[2]) for s in (a, b)}

    def delta(s, name, **labels):
        return (val(after[s], name, **labels) or 0) - (val(before[s], name, **labels) or 0)

    xt.ok((val(after[a], 'xmppd_s2s_links') or 0) >= 1 and
          (val(after[b], 'xmppd_s2s_links') or 0) >= 1,
          'xmppd_s2s_links: the link counts on both servers (%s, %s)'
          % (val(after[a], 'xmppd_s2s_links'), val(after[b], 'xmppd_s2s_links')))
    xt.ok((val(after[a], 'xmppd_connections', kind='s2s') or 0) >= 1,
          'xmppd_connections{kind="s2s"} on a.test')
    xt.is_(delta(b, 'xmppd_stanzas_in_total', kind='message'), 1.0,
           'b.test: xmppd_stanzas_in_total{kind="message"} counts the message from the link')
    xt.ok(delta(a, 'xmppd_stanzas_out_total', kind='message') >= 1,
          'a.test: xmppd_stanzas_out_total{kind="message"} counts it going out on the link')
    xt.is_(delta(b, 'xmppd_routed_total', outcome='delivered'), 1.0,
           'b.test: delivered to bob')
    await xt.disconnect_all(alice, bob)


xt.run(main)
