#!/usr/bin/python3
"""t1820-jingle: setting up a call through the server: XEP-0353 Jingle
Message Initiation, then a XEP-0166 Jingle session (RTP, XEP-0167, over
ICE-UDP, XEP-0176), with the carbons (XEP-0280) and the archive (XEP-0313)
that XEP-0353's business rules rely on ("Participants MUST use XEP-0280
and XEP-0313 to make sure all devices ... receive all messages").

alice has two resources, a1 and a2; bob two, b1 and b2; all four enable
carbons and are available at the same priority, so a message to a bare
JID reaches both resources (RFC 6121 8.5.2.1.1). The server relays
everything; what is checked is what each client gets:

  - b1 proposes (type chat, <store/> hint) to alice's bare JID: a1 and a2
    get it as sent, with the <description/>; b2 gets a <sent/> carbon;
    nobody gets a <received/> copy of it (each resource of alice has the
    original) and b1 gets nothing back;
  - a1 rings and then proceeds to bob's bare JID: b1 and b2 get each;
    a2 gets <sent/> carbons of both, so it stops ringing;
  - the Jingle IQs between the two full JIDs (session-initiate from b1,
    session-accept, transport-info, session-terminate) reach only the
    addressed resource, unchanged (sid, action, payload types,
    candidates), and their results come back; a session-initiate to a
    resource of alice that is not online gets service-unavailable
    (RFC 6121 8.5.3.2.3); <finish/> both ways;
  - a second call proposed by a legacy client without a type (normal, no
    body) is carbon-copied all the same, and a2's <reject/> reaches b1,
    b2 and (carbon) a1;
  - alice's and bob's archives hold the JMI messages of both calls, in
    order, and no Jingle IQ.
"""

import asyncio
import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

ET = xt.ET
NS_JMI = 'urn:xmpp:jingle-message:0'
NS_JINGLE = 'urn:xmpp:jingle:1'
NS_RTP = 'urn:xmpp:jingle:apps:rtp:1'
NS_ICE = 'urn:xmpp:jingle:transports:ice-udp:1'
NS_C = 'urn:xmpp:carbons:2'
NS_FWD = 'urn:xmpp:forward:0'
NS_MAM = 'urn:xmpp:mam:2'
MSG = '{jabber:client}message'
STORE = "<store xmlns='urn:xmpp:hints'/>"
WAIT = 5


class Party:
    """A slixmpp client that answers Jingle IQs with a result and keeps
    them for the test."""

    def __init__(self, name, c):
        self.name = name
        self.c = c
        self.jid = str(c.jid)
        self.jingles = xt.Mailbox()
        c.xmpp.register_handler(Callback(
            'jingle-' + name, MatchXPath('{jabber:client}iq/{%s}jingle' % NS_JINGLE),
            self._jingle))

    def _jingle(self, iq):
        if iq['type'] != 'set':
            return
        self.jingles.put(iq.xml)
        iq.reply(clear=True).send()     # XEP-0166 6.3.2: ack first

    async def msg(self, pred, timeout=WAIT):
        m = await self.c.messages.get(lambda m: pred(m.xml), timeout)
        return m.xml if m is not None else None

    def pending(self, pred):
        return [m.xml for m in self.c.messages.items if pred(m.xml)]

    def send(self, xml):
        self.c.send_raw(xml)


def jmi(el, kind, sid):
    """el's <kind xmlns=jingle-message:0 id=sid/>, or None."""
    if el is None:
        return None
    j = el.find('{%s}%s' % (NS_JMI, kind))
    return j if j is not None and j.get('id') == sid else None


def carbon(el, which, kind, sid):
    """The forwarded message of a <which/> carbon carrying the JMI element, or None."""
    if el is None:
        return None
    fwd = el.find('{%s}%s/{%s}forwarded' % (NS_C, which, NS_FWD))
    m = fwd.find(MSG) if fwd is not None else None
    return m if jmi(m, kind, sid) is not None else None


def is_carbon(el):
    return el.find('{%s}sent' % NS_C) is not None or el.find('{%s}received' % NS_C) is not None


def jmi_message(to, kind, sid, mtype='chat', inner=''):
    t = " type='%s'" % mtype if mtype else ''
    return ("<message to='%s'%s id='%s'><%s xmlns='%s' id='%s'>%s</%s>%s</message>"
            % (to, t, xt.new_id('m'), kind, NS_JMI, sid, inner, kind, STORE))


def jingle(action, sid, initiator, inner=''):
    return ("<jingle xmlns='%s' action='%s' sid='%s' initiator='%s'>%s</jingle>"
            % (NS_JINGLE, action, sid, initiator, inner))


CONTENT = ("<content creator='initiator' name='voice'>"
           "<description xmlns='%s' media='audio'>"
           "<payload-type id='111' name='opus' clockrate='48000' channels='2'/>"
           "<payload-type id='0' name='PCMU' clockrate='8000'/></description>"
           "<transport xmlns='%s' ufrag='8hhy' pwd='asd88fgpdd777uzjYhagZg'>"
           "<candidate component='1' foundation='1' generation='0' id='el0747fg11' "
           "ip='10.0.1.1' network='1' port='8998' priority='2130706431' protocol='udp' "
           "type='host'/>"
           "<candidate component='1' foundation='2' generation='0' id='y3s2b30v3r' "
           "ip='192.0.2.3' network='1' port='45664' priority='1694498815' protocol='udp' "
           "rel-addr='10.0.1.1' rel-port='8998' type='relay'/>"
           "</transport></content>") % (NS_RTP, NS_ICE)


async def jingle_iq(frm, to, action, sid, initiator, inner=''):
    """frm sends the Jingle IQ to `to` (a Party): (the type of the answer
    frm got, the IQ as `to` got it, or None)."""
    r = await frm.c.iq('set', to.jid, jingle(action, sid, initiator, inner))
    got = await to.jingles.get(lambda x: x.find('{%s}jingle' % NS_JINGLE).get('action') ==
                               action and x.find('{%s}jingle' % NS_JINGLE).get('sid') == sid,
                               timeout=WAIT)
    return (r['type'] if r is not None else None), got


async def sentinel(frm, to_jid, receivers):
    """frm sends a chat message with a body to to_jid; returns once every
    receiver has it (the stanzas routed before it from frm have arrived)."""
    body = 'sentinel-%s' % uuid.uuid4()
    frm.send("<message to='%s' type='chat'><body>%s</body></message>" % (to_jid, body))
    ok = True
    for p in receivers:
        ok = await p.msg(lambda m: m.findtext('{jabber:client}body') == body) is not None and ok
    return ok


async def main():
    srv = xt.Server(workers=2, modules={'mod_disco': {}, 'mod_carbons': {}, 'mod_mam': {}})
    srv.register('alice', 'alice-pw')
    srv.register('bob', 'bob-pw')
    alice_bare, bob_bare = srv.jid('alice'), srv.jid('bob')
    a1 = Party('a1', await xt.login_ok(srv, 'alice', resource='a1'))
    a2 = Party('a2', await xt.login_ok(srv, 'alice', resource='a2'))
    b1 = Party('b1', await xt.login_ok(srv, 'bob', resource='b1'))
    b2 = Party('b2', await xt.login_ok(srv, 'bob', resource='b2'))
    for p in (a1, a2, b1, b2):
        r = await p.c.iq('set', None, "<enable xmlns='%s'/>" % NS_C)
        if r is None or r['type'] != 'result':
            raise xt.HarnessError('%s: carbons enable failed: %s' % (p.name, r))

    # -- XEP-0353 3.1: the proposal --------------------------------------------
    sid = str(uuid.uuid4())
    b1.send(jmi_message(alice_bare, 'propose', sid,
                        inner="<description xmlns='%s' media='audio'/>" % NS_RTP))
    for p in (a1, a2):
        m = await p.msg(lambda m: jmi(m, 'propose', sid) is not None and not is_carbon(m))
        xt.ok(m is not None and m.get('from') == b1.jid and m.get('type') == 'chat',
              '%s gets the propose, from b1, type chat' % p.name)
        d = jmi(m, 'propose', sid)
        desc = d.find('{%s}description' % NS_RTP) if d is not None else None
        xt.ok(desc is not None and desc.get('media') == 'audio',
              '%s: the propose has its <description media="audio"/>' % p.name)
    m = await b2.msg(lambda m: carbon(m, 'sent', 'propose', sid) is not None)
    fw = carbon(m, 'sent', 'propose', sid)
    xt.ok(fw is not None and m.get('from') == bob_bare and fw.get('from') == b1.jid and
          fw.get('to') == alice_bare, "b2 gets a <sent/> carbon of b1's propose")
    # Nothing else: once a sentinel from b1 has reached alice's resources
    # and b1 itself, a copy made while the propose was routed would be in.
    xt.ok(await sentinel(b1, alice_bare, (a1, a2)), 'sentinel to alice arrives')
    xt.ok(await sentinel(b1, b1.jid, (b1,)), 'sentinel to b1 itself arrives')
    xt.is_(len(a1.pending(lambda m: carbon(m, 'received', 'propose', sid) is not None)) +
           len(a2.pending(lambda m: carbon(m, 'received', 'propose', sid) is not None)), 0,
           'no <received/> copy of the propose for alice (both have the original)')
    xt.is_(len(b1.pending(lambda m: jmi(m, 'propose', sid) is not None or
                          carbon(m, 'sent', 'propose', sid) is not None)), 0,
           'b1 gets nothing of its own propose back')

    # -- 3.2 ringing, 3.3 proceed -------------------------------------------------
    for kind in ('ringing', 'proceed'):
        a1.send(jmi_message(bob_bare, kind, sid))
        for p in (b1, b2):
            m = await p.msg(lambda m: jmi(m, kind, sid) is not None and not is_carbon(m))
            xt.ok(m is not None and m.get('from') == a1.jid,
                  '%s gets the %s from a1' % (p.name, kind))
        m = await a2.msg(lambda m: carbon(m, 'sent', kind, sid) is not None)
        fw = carbon(m, 'sent', kind, sid)
        xt.ok(fw is not None and fw.get('from') == a1.jid and fw.get('to') == bob_bare,
              'a2 gets a <sent/> carbon of the %s' % kind)

    # -- XEP-0166: the session, between the two full JIDs -------------------------
    rtype, got = await jingle_iq(b1, a1, 'session-initiate', sid, b1.jid, CONTENT)
    xt.is_(rtype, 'result', 'session-initiate: b1 gets a1\'s result')
    j = got.find('{%s}jingle' % NS_JINGLE) if got is not None else None
    xt.ok(got is not None and got.get('from') == b1.jid and j.get('initiator') == b1.jid,
          'a1 gets session-initiate from b1')
    pts = [p.get('name') for p in got.iter('{%s}payload-type' % NS_RTP)] if got is not None else []
    cands = [(c.get('ip'), c.get('port'), c.get('type'))
             for c in got.iter('{%s}candidate' % NS_ICE)] if got is not None else []
    tr = got.find('.//{%s}transport' % NS_ICE) if got is not None else None
    xt.ok(pts == ['opus', 'PCMU'] and cands == [('10.0.1.1', '8998', 'host'),
          ('192.0.2.3', '45664', 'relay')] and tr is not None and tr.get('ufrag') == '8hhy',
          'session-initiate arrives unchanged: payload types, ICE credentials, candidates') or \
        xt.diag(pts, cands)
    # The same to a resource that is not there: RFC 6121 8.5.3.2.3.
    r = await b1.c.iq('set', alice_bare + '/gone', jingle('session-initiate', sid, b1.jid, CONTENT))
    xt.is_(r['error']['condition'] if r is not None and r['type'] == 'error' else r,
           'service-unavailable', 'session-initiate to an absent resource: service-unavailable')

    rtype, got = await jingle_iq(a1, b1, 'session-accept', sid, b1.jid,
                                 CONTENT.replace("creator='initiator'", "creator='initiator'"))
    xt.ok(rtype == 'result' and got is not None and got.get('from') == a1.jid,
          'session-accept: a1 -> b1, acknowledged')
    rtype, got = await jingle_iq(b1, a1, 'transport-info', sid, b1.jid,
                                 "<content creator='initiator' name='voice'><transport "
                                 "xmlns='%s' ufrag='8hhy' pwd='asd88fgpdd777uzjYhagZg'>"
                                 "<candidate component='1' foundation='3' generation='0' "
                                 "id='zz1' ip='127.0.0.1' network='0' port='3478' "
                                 "priority='1' protocol='udp' type='relay'/></transport>"
                                 "</content>" % NS_ICE)
    c = got.find('.//{%s}candidate' % NS_ICE) if got is not None else None
    xt.ok(rtype == 'result' and c is not None and c.get('id') == 'zz1',
          'transport-info: a relayed candidate reaches a1, acknowledged')
    rtype, got = await jingle_iq(b1, a1, 'session-terminate', sid, b1.jid,
                                 "<reason><success/></reason>")
    reason = got.find('{%s}jingle/{%s}reason/{%s}success' % (NS_JINGLE, NS_JINGLE, NS_JINGLE)) \
        if got is not None else None
    xt.ok(rtype == 'result' and reason is not None, 'session-terminate with <success/>, acked')
    xt.is_(sum(len(p.jingles.items) for p in (a2, b2)), 0,
           'no Jingle IQ reached a2 or b2 (only the addressed resources)')

    # -- XEP-0353 3.6 finish, both ways --------------------------------------------
    fin = "<reason xmlns='%s'><success/></reason>" % NS_JINGLE
    b1.send(jmi_message(alice_bare, 'finish', sid, inner=fin))
    a1.send(jmi_message(bob_bare, 'finish', sid, inner=fin))
    m1 = await a2.msg(lambda m: jmi(m, 'finish', sid) is not None and not is_carbon(m))
    m2 = await b2.msg(lambda m: jmi(m, 'finish', sid) is not None and not is_carbon(m))
    xt.ok(m1 is not None and m2 is not None, "each side's <finish/> reaches the other's devices")

    # -- A second call, from a client that leaves out the type -------------------
    sid2 = str(uuid.uuid4())
    b1.send(jmi_message(alice_bare, 'propose', sid2, mtype=None,
                        inner="<description xmlns='%s' media='video'/>" % NS_RTP))
    got = [await p.msg(lambda m: jmi(m, 'propose', sid2) is not None and not is_carbon(m))
           for p in (a1, a2)]
    xt.ok(all(g is not None for g in got), 'a propose without a type reaches a1 and a2')
    m = await b2.msg(lambda m: carbon(m, 'sent', 'propose', sid2) is not None)
    xt.ok(m is not None, 'b2 gets a <sent/> carbon of it (a normal message without a body)')
    a2.send(jmi_message(bob_bare, 'reject', sid2, mtype=None,
                        inner="<reason xmlns='%s'><busy/></reason>" % NS_JINGLE))
    for p in (b1, b2):
        m = await p.msg(lambda m: jmi(m, 'reject', sid2) is not None and not is_carbon(m))
        xt.ok(m is not None and m.get('from') == a2.jid, '%s gets the reject from a2' % p.name)
    m = await a1.msg(lambda m: carbon(m, 'sent', 'reject', sid2) is not None)
    xt.ok(m is not None, "a1 gets a <sent/> carbon of a2's reject (it stops ringing)")

    # -- XEP-0313: the archives ----------------------------------------------------
    expect = [('in', 'propose', sid), ('out', 'ringing', sid), ('out', 'proceed', sid),
              ('in', 'finish', sid), ('out', 'finish', sid), ('in', 'propose', sid2),
              ('out', 'reject', sid2)]
    for who, me in ((a1, alice_bare), (b1, bob_bare)):
        outcome, fin_el, results = await xt.mam_query(who.c)
        seen = []
        for r in results:
            m = r['msg']
            if m is None:
                continue
            kinds = [c.tag.split('}')[1] for c in m if c.tag.startswith('{%s}' % NS_JMI)]
            if not kinds:
                continue
            k = kinds[0]
            d = 'out' if (m.get('from') or '').split('/')[0] == me else 'in'
            seen.append((d, k, m.find('{%s}%s' % (NS_JMI, k)).get('id')))
        want = expect if who is a1 else [('out' if d == 'in' else 'in', k, s)
                                         for d, k, s in expect]
        # finish: both were sent at once; their order in the archive is
        # the order the server got them, which the test does not fix.
        xt.is_(sorted(seen[:3]) == sorted(want[:3]) and seen[:3] == want[:3] and
               sorted(seen[3:5]) == sorted(want[3:5]) and seen[5:] == want[5:], True,
               "%s's archive: the JMI messages of both calls, in order" % me) or \
            xt.diag(seen, want)
        xt.ok(fin_el is not None and all(r['msg'] is None or
                                         r['msg'].find('{%s}jingle' % NS_JINGLE) is None
                                         for r in results),
              "%s's archive: complete, no Jingle IQ in it" % me)

    await xt.disconnect_all(a1.c, a2.c, b1.c, b2.c)


xt.run(main, timeout=120)
