#!/usr/bin/python3
"""t1830-adhoc: XEP-0050 ad-hoc commands with the XEP-0133 admin commands
(mod_adhoc). The command list in disco (slixmpp's xep_0050 plugin) for an
admin and for a plain user, disco#info of a command node, the ping
command, each admin command run with its form and its effect checked
from the outside (logins, counts, lists), a plain user refused with
forbidden, and the XEP-0050 4.6 errors: bad-sessionid, malformed-action,
a cancelled session, another resource's session, the session limit."""

import asyncio
import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

H = 'xmppd.test'
NS_CMD = 'http://jabber.org/protocol/commands'
NS_X = 'jabber:x:data'
NS_ADMIN = 'http://jabber.org/protocol/admin'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
ADMIN_NODES = ['add-user', 'delete-user', 'change-user-password',
               'get-registered-users-num', 'get-registered-users-list', 'get-online-users-num',
               'get-online-users-list', 'disable-user', 'end-user-session',
               'get-user-roster', 'announce', 'set-motd', 'edit-motd', 'delete-motd']


def A(n):
    return NS_ADMIN + '#' + n


def cmd_xml(node, action=None, sid=None, fields=None):
    c = ET.Element('{%s}command' % NS_CMD, node=node)
    if action:
        c.set('action', action)
    if sid:
        c.set('sessionid', sid)
    if fields is not None:
        x = ET.SubElement(c, '{%s}x' % NS_X, type='submit')
        f = ET.SubElement(x, '{%s}field' % NS_X, var='FORM_TYPE', type='hidden')
        ET.SubElement(f, '{%s}value' % NS_X).text = NS_ADMIN
        for k, v in fields.items():
            f = ET.SubElement(x, '{%s}field' % NS_X, var=k)
            for val in (v if isinstance(v, list) else [v]):
                ET.SubElement(f, '{%s}value' % NS_X).text = val
    return c


async def run(c, node, action=None, sid=None, fields=None):
    """The <command/> of the reply (result), or the reply itself (error)."""
    r = await c.iq('set', H, cmd_xml(node, action, sid, fields))
    if r is None:
        return None
    if r['type'] == 'error':
        return r
    return r.xml.find('{%s}command' % NS_CMD)


def err(r):
    """(condition, XEP-0050 application condition) of an error reply."""
    if r is None or not hasattr(r, 'xml') or r['type'] != 'error':
        return None
    e = r.xml.find('{jabber:client}error')
    cond = app = None
    for ch in e:
        ns, _, name = ch.tag[1:].partition('}')
        if ns == NS_STANZAS and name != 'text':
            cond = name
        elif ns == NS_CMD:
            app = name
    return cond, app


def note(cmd):
    n = cmd.find('{%s}note' % NS_CMD) if cmd is not None and not hasattr(cmd, 'xml') else None
    return (n.get('type'), n.text) if n is not None else None


def fields(x):
    return {f.get('var'): [v.text or '' for v in f.findall('{%s}value' % NS_X)]
            for f in x.findall('{%s}field' % NS_X)}


def form(cmd):
    return cmd.find('{%s}x' % NS_X) if cmd is not None and not hasattr(cmd, 'xml') else None


async def two_step(c, node, values):
    """Execute, then complete with values: (first reply, final reply)."""
    first = await run(c, node)
    sid = first.get('sessionid') if first is not None and not hasattr(first, 'xml') else None
    if sid is None:
        return first, None
    return first, await run(c, node, 'complete', sid, values)


async def main():
    srv = xt.Server(workers=2, modules={'mod_disco': {}, 'mod_roster': {},
                                        'mod_adhoc': {'max_sessions_per_user': 3}},
                    conf={'acl': {'admins': {'user': ['root@' + H]}}})
    for u in ('root', 'bob'):
        srv.register(u, u + '-pw')
    root = await xt.login_ok(srv, 'root', resource='r')
    bob = await xt.login_ok(srv, 'bob', resource='b')
    for c in (root, bob):
        c.xmpp.register_plugin('xep_0050')

    # -- discovery (XEP-0050 2.2, 2.3) ------------------------------------
    items = {}
    for name, c in (('root', root), ('bob', bob)):
        try:
            r = await c.xmpp.plugin['xep_0050'].get_commands(H, timeout=5)
            items[name] = [i[1] for i in r['disco_items']['items']]
        except Exception as e:
            items[name] = repr(e)
    xt.ok(isinstance(items['root'], list) and 'ping' in items['root'] and
          all(A(n) in items['root'] for n in ADMIN_NODES),
          'an admin sees ping and the admin commands in disco#items') or xt.diag(items['root'])
    xt.is_(items['bob'], ['ping'], 'a plain user sees only ping')

    r = await root.iq('get', H, "<query xmlns='http://jabber.org/protocol/disco#info' "
                      "node='%s'/>" % A('add-user'))
    ident = r.xml.find('.//{http://jabber.org/protocol/disco#info}identity') \
        if r is not None and r['type'] == 'result' else None
    feats = [f.get('var') for f in r.xml.iter('{http://jabber.org/protocol/disco#info}feature')] \
        if ident is not None else []
    xt.ok(ident is not None and ident.get('category') == 'automation' and
          ident.get('type') == 'command-node' and NS_CMD in feats,
          'disco#info on a command node: automation/command-node with the commands feature')
    r = await bob.iq('get', H, "<query xmlns='http://jabber.org/protocol/disco#info' "
                     "node='%s'/>" % A('add-user'))
    xt.is_(err(r), ('item-not-found', None), 'a plain user: the admin node does not exist')
    r = await root.iq('get', H, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    feats = [f.get('var') for f in r.xml.iter('{http://jabber.org/protocol/disco#info}feature')]
    xt.ok(NS_CMD in feats, 'the server advertises the commands feature')

    # -- ping (Prosody's command) -----------------------------------------
    try:
        r = await bob.xmpp.plugin['xep_0050'].send_command(H, 'ping', timeout=5)
        c = r.xml.find('{%s}command' % NS_CMD)
        got = (c.get('status'), note(c))
    except Exception as e:
        got = repr(e)
    xt.is_(got, ('completed', ('info', 'Pong')), 'ping through slixmpp: completed, Pong')

    # -- a plain user is refused ------------------------------------------
    r = await run(bob, A('add-user'))
    xt.is_(err(r), ('forbidden', None), 'a plain user executing add-user: forbidden')
    r = await run(bob, A('get-registered-users-num'))
    xt.is_(err(r), ('forbidden', None), 'a plain user executing a count: forbidden')
    r = await run(root, 'no-such-command')
    xt.is_(err(r), ('item-not-found', None), 'an unknown node: item-not-found')

    # -- add-user (XEP-0133 4.1) ------------------------------------------
    first = await run(root, A('add-user'))
    x = form(first)
    f = fields(x) if x is not None else {}
    acts = first.find('{%s}actions' % NS_CMD) if x is not None else None
    xt.ok(first is not None and first.get('status') == 'executing' and
          first.get('sessionid') and x is not None and x.get('type') == 'form' and
          f.get('FORM_TYPE') == [NS_ADMIN] and
          {'accountjid', 'password', 'password-verify'} <= set(f) and
          acts is not None and acts.get('execute') == 'complete' and
          acts.find('{%s}complete' % NS_CMD) is not None,
          'add-user: executing, a sessionid, the admin form with its fields, action complete')
    hidden = [fl for fl in x.findall('{%s}field' % NS_X) if fl.get('var') == 'FORM_TYPE'] \
        if x is not None else []
    xt.ok(hidden and hidden[0].get('type') == 'hidden', 'FORM_TYPE is a hidden field')
    r = await run(root, A('add-user'), 'complete', first.get('sessionid'),
                  {'accountjid': 'carol@' + H, 'password': 'c1', 'password-verify': 'c1'})
    xt.is_((r.get('status'), note(r)) if r is not None and not hasattr(r, 'xml') else r,
           ('completed', ('info', 'The account was added')), 'add-user completes')
    carol = await xt.login(srv, 'carol', 'c1', resource='c')
    xt.ok(carol.ok, 'the new account logs in') or xt.diag(carol.describe())
    _, r = await two_step(root, A('add-user'), {'accountjid': 'carol@' + H,
                                                'password': 'x', 'password-verify': 'x'})
    xt.is_(note(r), ('error', 'The account already exists'), 'add-user of an existing account')
    _, r = await two_step(root, A('add-user'), {'accountjid': 'dave@' + H,
                                                'password': 'x', 'password-verify': 'y'})
    xt.is_(note(r), ('error', 'The passwords do not match'), 'add-user: passwords differ')
    _, r = await two_step(root, A('add-user'), {'accountjid': 'dave@elsewhere.test',
                                                'password': 'x', 'password-verify': 'x'})
    xt.ok(note(r) is not None and note(r)[0] == 'error', 'add-user: another host is refused')
    d = await xt.login(srv, 'dave', 'x')
    xt.ok(not d.ok and d.auth_failure == 'not-authorized', 'no dave was created')
    await d.disconnect()

    # -- counts and lists (4.14 - 4.16) ------------------------------------
    r = await run(root, A('get-registered-users-num'))
    x = form(r)
    xt.ok(r is not None and not hasattr(r, 'xml') and r.get('status') == 'completed' and
          x is not None and x.get('type') == 'result' and
          fields(x).get('registeredusersnum') == ['3'] and
          fields(x).get('FORM_TYPE') == [NS_ADMIN],
          'registered users: 3 (root, bob, carol), at once, in a result form') \
        or xt.diag(ET.tostring(r) if r is not None and not hasattr(r, 'xml') else r)
    _, r = await two_step(root, A('get-registered-users-list'), {'max_items': 'none'})
    x = form(r)
    xt.is_(fields(x).get('registereduserjids') if x is not None else r,
           ['bob@' + H, 'carol@' + H, 'root@' + H], 'the registered list: every account')
    _, r = await two_step(root, A('get-registered-users-list'), {'max_items': '1'})
    x = form(r)
    xt.is_(fields(x).get('registereduserjids') if x is not None else r, ['bob@' + H],
           'max_items bounds it')
    r = await run(root, A('get-online-users-num'))
    x = form(r)
    xt.is_(fields(x).get('onlineusersnum') if x is not None else r, ['3'],
           'online users: 3')
    _, r = await two_step(root, A('get-online-users-list'), {'max_items': 'none'})
    x = form(r)
    xt.is_(sorted(fields(x).get('onlineuserjids', [])) if x is not None else r,
           ['bob@' + H, 'carol@' + H, 'root@' + H], 'the online list: the bare JIDs')
    _, r = await two_step(root, A('get-online-users-list'), {'max_items': 'all'})
    x = form(r)
    xt.is_(len(fields(x).get('onlineuserjids', [])) if x is not None else r, 3,
           'max_items all (Prosody\'s word) is no limit')
    _, r = await two_step(root, A('get-online-users-list'), {'max_items': 'many'})
    xt.is_(err(r), ('bad-request', 'bad-payload'), 'max_items not a number: bad-payload')
    _, r = await two_step(root, A('get-online-users-list'), {'max_items': '2'})
    x = form(r)
    xt.is_(len(fields(x).get('onlineuserjids', [])) if x is not None else r, 2,
           'max_items bounds the list')

    # -- change-user-password (4.7) -----------------------------------------
    _, r = await two_step(root, A('change-user-password'),
                          {'accountjid': 'carol@' + H, 'password': 'c2'})
    xt.is_(note(r), ('info', 'The password was changed'), 'change-user-password completes')
    c_old = await xt.login(srv, 'carol', 'c1', resource='c-old')
    xt.ok(not c_old.ok and c_old.auth_failure == 'not-authorized',
          'the old password is refused: not-authorized')
    await c_old.disconnect()
    c_new = await xt.login(srv, 'carol', 'c2', resource='c-new')
    xt.ok(c_new.ok, 'the new password logs in') or xt.diag(c_new.describe())
    await c_new.disconnect()

    # -- delete-user (4.2) --------------------------------------------------
    _, r = await two_step(root, A('delete-user'), {'accountjids': ['carol@' + H]})
    xt.is_(note(r), ('info', 'The accounts were deleted'), 'delete-user completes')
    xt.ok(await carol.wait_closed(5), 'the deleted account\'s session is closed')
    c2 = await xt.login(srv, 'carol', 'c2')
    xt.ok(not c2.ok and c2.auth_failure == 'not-authorized', 'the deleted account cannot log in')
    await c2.disconnect()
    _, r = await two_step(root, A('delete-user'), {'accountjids': ['nobody@' + H]})
    xt.ok(note(r) is not None and note(r)[0] == 'error' and 'nobody@' in note(r)[1],
          'delete-user of an unknown account: an error note naming it')
    r = await run(root, A('get-registered-users-num'))
    xt.is_(fields(form(r)).get('registeredusersnum') if form(r) is not None else r, ['2'],
           'registered users: 2 after the delete')

    # -- XEP-0050 4.6 errors -------------------------------------------------
    r = await run(root, A('change-user-password'), 'complete', 'not-a-session',
                  {'accountjid': 'bob@' + H, 'password': 'z'})
    xt.is_(err(r), ('bad-request', 'bad-sessionid'), 'an unknown sessionid: bad-sessionid')
    r = await run(root, A('add-user'), 'dance')
    xt.is_(err(r), ('bad-request', 'malformed-action'), 'an unknown action: malformed-action')
    r = await run(root, A('add-user'), 'complete')
    xt.is_(err(r), ('bad-request', 'bad-sessionid'), 'complete without a session: bad-sessionid')
    first = await run(root, A('change-user-password'))
    sid = first.get('sessionid')
    r = await run(root, A('change-user-password'), 'cancel', sid)
    xt.is_((r.get('status'), r.get('sessionid')) if r is not None and not hasattr(r, 'xml')
           else r, ('canceled', sid), 'cancel: status canceled')
    r = await run(root, A('change-user-password'), 'complete', sid,
                  {'accountjid': 'bob@' + H, 'password': 'z'})
    xt.is_(err(r), ('bad-request', 'bad-sessionid'), 'a cancelled session is gone')
    bz = await xt.login(srv, 'bob', 'z')
    xt.ok(not bz.ok, 'and the cancelled change did not happen')
    await bz.disconnect()
    first = await run(root, A('change-user-password'))
    root2 = await xt.login_ok(srv, 'root', resource='r2')
    r = await run(root2, A('change-user-password'), 'complete', first.get('sessionid'),
                  {'accountjid': 'bob@' + H, 'password': 'z'})
    xt.is_(err(r), ('bad-request', 'bad-sessionid'), 'another resource\'s session: bad-sessionid')
    r = await run(root, A('change-user-password'), 'complete', first.get('sessionid'))
    xt.is_(err(r), ('bad-request', 'bad-payload'), 'complete without the form: bad-payload')
    first = await run(root, A('change-user-password'))
    r = await run(root, A('change-user-password'), 'next', first.get('sessionid'),
                  {'accountjid': 'bob@' + H, 'password': 'z'})
    xt.is_(err(r), ('bad-request', 'bad-action'), 'next on a single stage: bad-action')
    # max_sessions_per_user: 3 (the one above ended with the bad action).
    sids = []
    for _ in range(3):
        r = await run(root, A('add-user'))
        sids.append(r.get('sessionid') if r is not None and not hasattr(r, 'xml') else None)
    r = await run(root2, A('add-user'))
    xt.ok(all(sids) and err(r) == ('resource-constraint', None),
          'a fourth open session of the account: resource-constraint') or xt.diag(err(r))
    # A one-shot execute with the form filled in.
    r = await run(root, A('change-user-password'), None, None,
                  {'accountjid': 'bob@' + H, 'password': 'b2'})
    xt.is_(note(r), ('info', 'The password was changed'),
           'execute carrying a submitted form runs at once, without a session')
    b2 = await xt.login(srv, 'bob', 'b2')
    xt.ok(b2.ok, 'and bob\'s password is b2')
    await b2.disconnect()

    for sid in sids:
        await run(root, A('add-user'), 'cancel', sid)

    # -- get-user-roster (4.8) ------------------------------------------------
    r = await bob.iq('set', None, "<query xmlns='jabber:iq:roster'><item jid='root@%s' "
                     "name='Root'><group>Admins</group></item></query>" % H)
    xt.ok(r is not None and r['type'] == 'result', 'bob puts root in his roster')
    _, r = await two_step(root, A('get-user-roster'), {'accountjids': 'bob@' + H})
    x = form(r)
    q = x.find('{jabber:iq:roster}query') if x is not None else None
    its = [(i.get('jid'), i.get('name'), [g.text for g in i.findall('{jabber:iq:roster}group')])
           for i in q.findall('{jabber:iq:roster}item')] if q is not None else r
    xt.is_(its, [('root@' + H, 'Root', ['Admins'])],
           'get-user-roster: bob\'s item inside the result form')
    xt.is_(fields(x).get('accountjids') if x is not None else None, ['bob@' + H],
           'with the account in accountjids')
    _, r = await two_step(root, A('get-user-roster'), {'accountjid': 'bob@' + H})
    x = form(r)
    q = x.find('{jabber:iq:roster}query') if x is not None else None
    xt.ok(q is not None and len(q.findall('{jabber:iq:roster}item')) == 1,
          'get-user-roster also takes Prosody\'s field name accountjid')
    _, r = await two_step(root, A('get-user-roster'), {'accountjids': 'nobody@' + H})
    xt.is_(note(r), ('error', 'No such account'), 'get-user-roster of no account')

    # -- announce (4.20) --------------------------------------------------------
    _, r = await two_step(root, A('announce'), {'subject': 'Maintenance',
                                                'announcement': ['Down at', 'noon']})
    xt.ok(note(r) is not None and note(r)[0] == 'info', 'announce completes')
    for who, c in (('bob', bob), ('root', root2)):
        m = await c.message(lambda m: m['type'] == 'headline', frm=H)
        xt.ok(m is not None and m['subject'] == 'Maintenance' and m['body'] == 'Down at\nnoon',
              'the announcement reaches %s: a headline from the server' % who) \
            or xt.diag(m)

    # -- MOTD (4.21 - 4.23) ------------------------------------------------------
    srv.register('eve', 'eve-pw')
    _, r = await two_step(root, A('set-motd'), {'subject': 'News',
                                                'announcement': ['line1', 'line2']})
    xt.is_(note(r), ('info', 'The message of the day was set'), 'set-motd completes')
    m = await bob.message(lambda m: m['body'] == 'line1\nline2', frm=H)
    xt.ok(m is not None and m['type'] == 'normal' and m['subject'] == 'News',
          'set-motd also reaches the online users (type normal)')
    eve = await xt.login_ok(srv, 'eve', resource='e1')
    m = await eve.message(frm=H)
    xt.ok(m is not None and m['type'] == 'normal' and m['subject'] == 'News' and
          m['body'] == 'line1\nline2', 'the MOTD comes at login, from the server') or xt.diag(m)
    eve.xmpp.send_presence(pstatus='away')
    m = await eve.message(frm=H, timeout=1.5)
    xt.ok(m is None, 'once per login: not again on a presence update')
    await eve.disconnect()
    first = await run(root, A('edit-motd'))
    f = fields(form(first)) if form(first) is not None else {}
    xt.ok(f.get('subject') == ['News'] and f.get('announcement') == ['line1', 'line2'],
          'edit-motd: the form holds the current message') or xt.diag(f)
    r = await run(root, A('edit-motd'), 'complete', first.get('sessionid'),
                  {'subject': 'News', 'announcement': ['edited']})
    xt.is_(note(r), ('info', 'The message of the day was set'), 'edit-motd completes')
    m = await bob.message(lambda m: m['body'] == 'edited', timeout=1.5)
    xt.ok(m is None, 'edit-motd is not sent to the online users')
    eve = await xt.login_ok(srv, 'eve', resource='e2')
    m = await eve.message(frm=H)
    xt.is_(m['body'] if m is not None else None, 'edited', 'the next login gets the edited MOTD')
    await eve.disconnect()
    r = await run(root, A('delete-motd'))
    xt.is_(note(r), ('info', 'The message of the day was deleted'),
           'delete-motd completes at once')
    eve = await xt.login_ok(srv, 'eve', resource='e3')
    m = await eve.message(frm=H, timeout=1.5)
    xt.ok(m is None, 'after delete-motd no MOTD at login') or xt.diag(m)

    # -- end-user-session (4.5) --------------------------------------------------
    bob2 = await xt.login_ok(srv, 'bob', 'b2', resource='x')
    _, r = await two_step(root, A('end-user-session'), {'accountjids': ['bob@%s/x' % H]})
    xt.is_(note(r), ('info', 'The sessions were ended'), 'end-user-session of a full JID')
    xt.ok(await bob2.wait_closed(5) and bob2.stream_error == 'policy-violation',
          'that session ends with a policy-violation stream error') or xt.diag(bob2.describe())
    xt.ok(await xt.roundtrip(root, bob), 'bob\'s other session stays')
    _, r = await two_step(root, A('end-user-session'), {'accountjids': ['bob@' + H]})
    xt.ok(await bob.wait_closed(5) and bob.stream_error == 'policy-violation',
          'a bare JID ends every session of the account')
    _, r = await two_step(root, A('end-user-session'), {'accountjids': ['bob@' + H]})
    xt.ok(note(r) is not None and note(r)[0] == 'error' and 'no session' in note(r)[1],
          'no session left: an error note')

    # -- disable-user (4.3) -------------------------------------------------------
    _, r = await two_step(root, A('disable-user'), {'accountjids': ['eve@' + H]})
    xt.is_(note(r), ('info', 'The accounts were disabled'), 'disable-user completes')
    xt.ok(await eve.wait_closed(5) and eve.stream_error == 'policy-violation',
          'the disabled account\'s session is closed')
    e = await xt.login(srv, 'eve', 'eve-pw')
    xt.ok(not e.ok and e.auth_failure == 'not-authorized',
          'the disabled account is refused: not-authorized') or xt.diag(e.describe())
    await e.disconnect()
    _, r = await two_step(root, A('change-user-password'),
                          {'accountjid': 'eve@' + H, 'password': 'eve-new'})
    e = await xt.login(srv, 'eve', 'eve-new')
    xt.ok(e.ok, 'a new password enables it again')
    await e.disconnect()

    await xt.disconnect_all(root, root2, bob, carol, bob2, eve)
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')

    # -- session_timeout -------------------------------------------------------
    srv2 = xt.Server(name='t1830-timeout', modules={'mod_adhoc': {'session_timeout': 1}},
                     conf={'acl': {'admins': {'user': ['root@' + H]}}})
    srv2.register('root', 'root-pw')
    root = await xt.login_ok(srv2, 'root')
    first = await run(root, A('change-user-password'))
    await asyncio.sleep(1.5)
    r = await run(root, A('change-user-password'), 'complete', first.get('sessionid'),
                  {'accountjid': 'root@' + H, 'password': 'z'})
    xt.is_(err(r), ('bad-request', 'bad-sessionid'), 'a session past session_timeout is gone')
    first = await run(root, A('change-user-password'))
    r = await run(root, A('change-user-password'), 'complete', first.get('sessionid'),
                  {'accountjid': 'root@' + H, 'password': 'root-pw'})
    xt.is_(note(r), ('info', 'The password was changed'), 'one within it completes')
    first = await run(root, A('change-user-password'))
    code, out, errs = await srv2.actl('module', 'reload', 'mod_adhoc')
    xt.is_(code, 0, 'xmppctl module reload mod_adhoc') or xt.diag(out, errs)
    r = await run(root, A('change-user-password'), 'complete', first.get('sessionid'),
                  {'accountjid': 'root@' + H, 'password': 'root-pw'})
    xt.is_(err(r), ('bad-request', 'bad-sessionid'), 'a reload forgets the open sessions')
    r = await run(root, A('get-registered-users-num'))
    xt.is_(fields(form(r)).get('registeredusersnum') if form(r) is not None else r, ['1'],
           'and the commands work after it')
    await xt.disconnect_all(root)
    xt.is_(await srv2.astop(), 0, 'the second xmppd exits 0')


xt.run(main, timeout=120)
