#!/usr/bin/python3
"""t1730-muc-register: registering with a room (XEP-0045 7.10) and
reserved nicknames: the muc#register form, a registration makes a member
with that nickname, <registered/> afterwards, the reserved nickname
discovered (7.12, node x-roomuser-item), nobody else joins or registers
with it (conflict), it survives a restart of a persistent room, a banned
user may not register, and cancelling frees it."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

HOST = 'xmppd.test'
SVC = 'conference.' + HOST
MUC = 'http://jabber.org/protocol/muc'
USER = MUC + '#user'
ADMIN = MUC + '#admin'
OWNER = MUC + '#owner'
XDATA = 'jabber:x:data'
STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'


def cond_of(st):
    """The error condition of a stanza, or its type when not an error."""
    if st is None:
        return 'timeout'
    if st['type'] != 'error':
        return st['type'] or 'available'
    e = st.xml.find('{jabber:client}error')
    if e is not None:
        for c in e:
            if c.tag.startswith('{%s}' % STANZAS) and not c.tag.endswith('}text'):
                return c.tag.split('}')[1]
    return 'error'


def ux(st):
    return None if st is None else st.xml.find('{%s}x' % USER)


def codes(st):
    x = ux(st)
    return set() if x is None else {s.get('code') for s in x.findall('{%s}status' % USER)}


def item(st):
    x = ux(st)
    it = None if x is None else x.find('{%s}item' % USER)
    return {} if it is None else dict(it.attrib)


async def join(c, room, nick, inner='', timeout=3):
    """Joins; returns the self-presence (110) or the error presence."""
    to = '%s@%s/%s' % (room, SVC, nick)
    c.send_raw("<presence to='%s'><x xmlns='%s'>%s</x></presence>" % (to, MUC, inner))
    return await c.presence(lambda p: str(p['from']) == to and (
        p['type'] == 'error' or ('110' in codes(p) and p['type'] != 'unavailable')),
        timeout=timeout)


async def pres_from(c, room, nick, pred=None, timeout=3):
    frm = '%s@%s/%s' % (room, SVC, nick)
    return await c.presence(lambda p: str(p['from']) == frm and (pred is None or pred(p)),
                            timeout=timeout)


def groupchat(c, room, body=None, subject=None):
    inner = ('<body>%s</body>' % body if body is not None else '') + \
        ('<subject>%s</subject>' % subject if subject is not None else '')
    c.send_raw("<message to='%s@%s' type='groupchat'>%s</message>" % (room, SVC, inner))


async def gc_msg(c, room, nick, body=None, timeout=3):
    frm = '%s@%s/%s' % (room, SVC, nick)
    return await c.message(lambda m: str(m['from']) == frm and m['type'] in (
        'groupchat', 'error') and (body is None or m['body'] == body), timeout=timeout)


async def error_msg(c, timeout=3):
    return await c.message(lambda m: m['type'] == 'error', timeout=timeout)


def submit(fields=()):
    fs = "<field var='FORM_TYPE'><value>%s#roomconfig</value></field>" % MUC if fields else ''
    for var, val in fields:
        vals = val if isinstance(val, list) else [val]
        fs += "<field var='muc#roomconfig_%s'>%s</field>" % (
            var, ''.join('<value>%s</value>' % v for v in vals))
    return "<query xmlns='%s'><x xmlns='%s' type='submit'>%s</x></query>" % (OWNER, XDATA, fs)


async def configure(c, room, fields=()):
    return await c.iq('set', '%s@%s' % (room, SVC), submit(fields))


async def create(c, room, nick, fields=()):
    p = await join(c, room, nick)
    r = await configure(c, room, fields)
    return p, r


async def admin(c, room, items, itype='set'):
    return await c.iq(itype, '%s@%s' % (room, SVC),
                      "<query xmlns='%s'>%s</query>" % (ADMIN, items))


def form_vars(r, ns):
    x = None if r is None else r.xml.find('{%s}query/{%s}x' % (ns, XDATA))
    if x is None:
        return {}
    out = {}
    for f in x.findall('{%s}field' % XDATA):
        out[f.get('var')] = [v.text or '' for v in f.findall('{%s}value' % XDATA)]
    return out


REG = 'jabber:iq:register'
DINFO = 'http://jabber.org/protocol/disco#info'


def reg_form(nick=None):
    f = "<field var='FORM_TYPE'><value>%s#register</value></field>" % MUC
    if nick is not None:
        f += "<field var='muc#register_roomnick'><value>%s</value></field>" % nick
    return "<query xmlns='%s'><x xmlns='%s' type='submit'>%s</x></query>" % (REG, XDATA, f)


async def register(c, room, nick=None):
    return await c.iq('set', '%s@%s' % (room, SVC), reg_form(nick))


async def main():
    srv = xt.Server(workers=2, modules={'mod_muc': {}})
    for u in ('alice', 'bob', 'carol', 'eve'):
        srv.register(u, u + '-pw')
    alice = await xt.login_ok(srv, 'alice', resource='a')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    eve = await xt.login_ok(srv, 'eve', resource='e')
    room = 'club@' + SVC
    await create(alice, 'club', 'alice', [('persistentroom', '1')])

    r = await bob.iq('get', room, "<query xmlns='%s'/>" % REG)
    fv = form_vars(r, REG)
    xt.ok(fv.get('FORM_TYPE') == [MUC + '#register'] and 'muc#register_roomnick' in fv,
          '7.10: the registration form with muc#register_roomnick') or xt.diag(str(r))
    r = await register(bob, 'club', 'bobby')
    xt.is_(cond_of(r), 'result', '7.10: bob registers as bobby')
    r = await admin(alice, 'club', "<item affiliation='member'/>", 'get')
    its = [] if r is None else r.xml.findall('{%s}query/{%s}item' % (ADMIN, ADMIN))
    xt.is_([i.get('jid') for i in its], [bob.jid.bare], '7.10: a registered user is a member')
    r = await bob.iq('get', room, "<query xmlns='%s'/>" % REG)
    q = None if r is None else r.xml.find('{%s}query' % REG)
    xt.ok(q is not None and q.find('{%s}registered' % REG) is not None and
          q.findtext('{%s}username' % REG) == 'bobby',
          '7.10: asked again: <registered/> with the nickname') or xt.diag(str(r))
    r = await bob.iq('get', room, "<query xmlns='%s' node='x-roomuser-item'/>" % DINFO)
    i = None if r is None else r.xml.find('{%s}query/{%s}identity' % (DINFO, DINFO))
    xt.ok(i is not None and i.get('name') == 'bobby', '7.12: the reserved nickname discovered')
    p = await join(carol, 'club', 'bobby')
    xt.is_(cond_of(p), 'conflict', '7.2.9: another user joining with it: conflict')
    r = await register(carol, 'club', 'bobby')
    xt.is_(cond_of(r), 'conflict', '7.10: another user registering it: conflict')
    r = await register(carol, 'club')
    xt.is_(cond_of(r), 'not-acceptable', '7.10: no nickname: not-acceptable')
    p = await join(bob, 'club', 'bobby')
    xt.ok(p is not None and p['type'] != 'error' and item(p).get('affiliation') == 'member',
          'bob joins with his nickname, a member')
    r = await admin(alice, 'club', "<item jid='%s' affiliation='outcast'/>" % eve.jid.bare)
    r = await register(eve, 'club', 'evil')
    xt.is_(cond_of(r), 'forbidden', '7.10: a banned user may not register')

    await xt.disconnect_all(alice, bob, carol, eve)
    xt.is_(srv.restart(), 0, 'xmppd restarts')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    carol = await xt.login_ok(srv, 'carol', resource='c')
    p = await join(carol, 'club', 'bobby')
    xt.is_(cond_of(p), 'conflict', 'the reservation survived the restart')
    r = await bob.iq('set', room, "<query xmlns='%s'><remove/></query>" % REG)
    xt.is_(cond_of(r), 'result', 'bob cancels his registration')
    p = await join(carol, 'club', 'bobby')
    xt.ok(p is not None and p['type'] != 'error', 'the nickname is free again')

    await xt.disconnect_all(bob, carol)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')


xt.run(main, timeout=90)
