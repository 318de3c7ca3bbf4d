#!/usr/bin/python3
"""t1600-entity-abi: ABI 1.5's entities and providers, through the test
module mod_entityprobe (t/modules/mod_entityprobe.c).

Checked: xmppd_entity_post runs on the worker xmppd_entity_worker names
for the key (keys spread over both workers), several posts of one key run
in order on that worker, and a post to the caller's own worker runs after
the call returned; xmppd_pubsub_request with no provider answers
service-unavailable, on the asking worker, after the call returned; with
a provider that answers from another worker, the asker gets the result
(its first child) or the error condition on its own worker;
xmppd_caps_has_feature is -1 with no provider and the provider's answer
with one; unloading the provider makes the requests service-unavailable
again."""

import asyncio
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

HOST = 'xmppd.test'
NS = 'urn:xmppd:test:entity'
KEYS = ['key%d@%s' % (i, HOST) for i in range(12)]


def child(r, name):
    if r is None or r['type'] != 'result':
        return None
    return r.xml.find('{%s}%s' % (NS, name))


async def probe(c, payload):
    return await c.iq('get', HOST, payload)


async def pubsub_probe(c, fail=False):
    r = await probe(c, "<pubsub xmlns='%s'%s/>" % (NS, " fail='1'" if fail else ''))
    e = child(r, 'pubsub')
    return None if e is None else (e.get('condition'), e.get('result'), e.get('same'),
                                   e.get('returned'))


async def caps_probe(c, feature):
    e = child(await probe(c, "<caps xmlns='%s' feature='%s'/>" % (NS, feature)), 'caps')
    return None if e is None else e.get('has')


async def without_provider(moddir):
    srv = xt.Server(workers=2, conf={'module_dir': str(moddir)},
                    modules={'mod_entityprobe': {}})
    srv.register('alice', 'alice-pw')
    alice = await xt.login_ok(srv, 'alice', resource='one')
    mine = await xt.worker_of(srv, alice)
    owners, ran_on_owner, in_order, returned = set(), True, True, True
    for k in KEYS:
        e = child(await probe(alice, "<post xmlns='%s' key='%s'/>" % (NS, k)), 'post')
        if e is None:
            ran_on_owner = False
            continue
        owners.add(e.get('owner'))
        ran_on_owner = ran_on_owner and e.get('worker') == e.get('owner')
        in_order = in_order and e.get('order') == '1'
        if e.get('owner') == str(mine):
            returned = returned and e.get('returned') == '1'
    xt.is_(sorted(owners), ['0', '1'], 'the keys are spread over both workers')
    xt.ok(ran_on_owner, 'each posted function ran on the worker xmppd_entity_worker names')
    xt.ok(in_order, 'four posts of one key ran in order, on one worker')
    xt.ok(returned, 'a post to the caller\'s own worker ran after the call returned')
    xt.is_(await pubsub_probe(alice), ('service-unavailable', 'none', '1', '1'),
           'no pubsub provider: service-unavailable, on the asking worker, after the call')
    xt.is_(await caps_probe(alice, 'yes'), '-1', 'no caps provider: -1')
    await xt.disconnect_all(alice)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')
    srv.teardown()


async def with_provider(moddir):
    srv = xt.Server(workers=2, conf={'module_dir': str(moddir)},
                    modules={'mod_entityprobe': {'provide': True}})
    srv.register('alice', 'alice-pw')
    # The provider answers from the worker of 'probe-node'; askers on both
    # workers, so that one of them is answered from the other worker.
    seen = []
    c0, _ = await xt.login_on_worker(srv, 'alice', 'alice-pw', lambda w: w == '0', 'a',
                                     seen=seen)
    c1, _ = await xt.login_on_worker(srv, 'alice', 'alice-pw', lambda w: w == '1', 'b',
                                     seen=seen)
    xt.ok(c0 is not None and c1 is not None, 'clients on both workers')
    for i, c in enumerate((c0, c1)):
        if c is None:
            continue
        xt.is_(await pubsub_probe(c), ('none', 'echo', '1', '1'),
               'worker %d: the provider\'s result, handed back on the asking worker' % i)
        xt.is_(await pubsub_probe(c, fail=True), ('item-not-found', 'item-not-found', '1', '1'),
               'worker %d: the provider\'s error condition and its application element' % i)
    c = c0 or c1
    xt.is_(await caps_probe(c, 'yes'), '1', 'the caps provider answers 1')
    xt.is_(await caps_probe(c, 'no'), '0', 'and 0')
    xt.is_(await caps_probe(c, 'other'), '-1', 'and -1')
    # Unloading the module removes both providers (and its IQ handler:
    # the core answers service-unavailable).
    rc, out, err = srv.ctl('module', 'unload', 'mod_entityprobe')
    xt.is_(rc, 0, 'xmppctl module unload mod_entityprobe')
    r = await probe(c, "<caps xmlns='%s' feature='yes'/>" % NS)
    xt.is_(xt.iq_outcome(r), 'error:service-unavailable', 'unloaded: its IQ goes unanswered')
    rc, out, err = srv.ctl('module', 'load', 'mod_entityprobe')
    xt.is_(rc, 0, 'loaded again (the providers were free to take)')
    xt.is_(await caps_probe(c, 'yes'), '1', 'and it provides caps again')
    await xt.disconnect_all(*[x for x in (c0, c1) if x is not None])
    xt.is_(await srv.astop(), 0, 'xmppd exits 0 on SIGTERM')
    srv.teardown()


async def main():
    moddir = xt.scratch_dir('t1600-build') / 'modules'
    moddir.mkdir()
    xt.build_test_module(moddir, 'mod_entityprobe')
    await without_provider(moddir)
    await with_provider(moddir)


xt.run(main, timeout=200)
