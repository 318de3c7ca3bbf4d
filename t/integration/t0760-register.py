#!/usr/bin/python3
"""t0760-register: mod_register, XEP-0077 In-Band Registration: account
creation before authentication (form, conflict, bad names and passwords,
the per-address rate limit, the access rule), and for an authenticated user
the form, a password change and cancellation."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_REG = 'jabber:iq:register'
NS_FEAT = 'http://jabber.org/features/iq-register'
NS_DISCO = 'http://jabber.org/protocol/disco#info'

_seq = [0]


def iq_xml(itype, payload, to=None):
    """An IQ with a fresh id; returns (id, xml)."""
    _seq[0] += 1
    idv = 'r%d' % _seq[0]
    return idv, "<iq type='%s' id='%s'%s>%s</iq>" % (
        itype, idv, " to='%s'" % to if to else '', payload)


async def raw_iq(r, itype, payload, to=None, timeout=5):
    """Sends an IQ on a Raw stream; returns (reply Element, reply text),
    (None, text seen) if none came."""
    idv, xml = iq_xml(itype, payload, to)
    r.set_mark()
    await r.send(xml)
    m = await r.read_until(r"<iq\b[^>]*?\bid=[\"']%s[\"'][^>]*?(?:/>|>.*?</iq>)" % idv, timeout)
    if not m:
        return None, r.since_mark()
    return xt.ET.fromstring(m.group(0)), m.group(0)


def cond(el):
    """The stanza error condition of an IQ Element, or None."""
    if el is None:
        return None
    err = el.find('error')
    if err is None:
        return None
    for c in err:
        if c.tag.startswith('{%s}' % xt.NS_STANZAS_ERR) and not c.tag.endswith('}text'):
            return c.tag.split('}')[1]
    return None


def summary(el):
    if el is None:
        return None
    return (el.get('type'), cond(el))


def query(user, pw):
    return ("<query xmlns='%s'><username>%s</username><password>%s</password></query>"
            % (NS_REG, user, pw))


async def preauth(srv, source_ip=None):
    """A stream through STARTTLS, not authenticated; returns (Raw, features)."""
    r = await xt.Raw.open(srv, source_ip=source_ip)
    if await r.open_stream() is None or not await r.starttls():
        raise xt.HarnessError('pre-auth stream: %r' % r.text[-300:])
    feat = await r.open_stream()
    return r, feat


async def register(srv, user, pw, source_ip=None):
    r, _ = await preauth(srv, source_ip)
    el, _ = await raw_iq(r, 'set', query(user, pw))
    r.close()
    return el


def other_ip(srv, *taken):
    return xt.pick_loopback_ip(exclude=(srv.ip,) + taken)


async def main():
    # With every module that keeps data per account, so that the
    # cancellation below is seen to remove all of it.
    srv = xt.Server(workers=2, modules={
        'mod_disco': {},
        'mod_register': {'ip_rate_limit': 2, 'ip_rate_period': 3600,
                         'min_password_length': 4},
        'mod_roster': {}, 'mod_offline': {}, 'mod_vcard': {}, 'mod_private': {},
        'mod_last': {}, 'mod_blocking': {}})
    for u in ('alice', 'bob'):
        srv.register(u, u + '-pw')
    ip_a = other_ip(srv)
    ip_b = other_ip(srv, ip_a)

    # -- Before authentication -------------------------------------------

    r = await xt.Raw.open(srv, source_ip=ip_a)
    feat = await r.open_stream()
    xt.ok(feat is not None and feat.find('{%s}register' % NS_FEAT) is None,
          'no register feature before TLS (only <starttls/> is offered)')
    await r.starttls()
    feat = await r.open_stream()
    xt.ok(feat is not None and feat.find('{%s}register' % NS_FEAT) is not None,
          'after STARTTLS the features offer <register/> (XEP-0077 8)')

    el, _ = await raw_iq(r, 'get', "<query xmlns='%s'/>" % NS_REG)
    q = el.find('{%s}query' % NS_REG) if el is not None else None
    xt.is_(el.get('type') if el is not None else None, 'result', 'form request: result')
    xt.ok(q is not None and q.find('{%s}username' % NS_REG) is not None and
          q.find('{%s}password' % NS_REG) is not None and
          q.find('{%s}registered' % NS_REG) is None,
          'the form has <username/> and <password/> and no <registered/>')

    el, _ = await raw_iq(r, 'set', query('carol', 'carol-pw'))
    xt.is_(summary(el), ('result', None), 'carol registers in-band')
    el, _ = await raw_iq(r, 'set', query('alice', 'whatever'))
    xt.is_(summary(el), ('error', 'conflict'), 'an existing name gets <conflict/>')
    el, _ = await raw_iq(r, 'set', query('bad@name', 'whatever'))
    xt.is_(summary(el), ('error', 'jid-malformed'), 'a name nodeprep refuses: <jid-malformed/>')
    el, _ = await raw_iq(r, 'set', query('dave', ''))
    xt.is_(summary(el), ('error', 'not-acceptable'), 'an empty password: <not-acceptable/>')
    el, _ = await raw_iq(r, 'set', query('dave', 'abc'))
    xt.is_(summary(el), ('error', 'not-acceptable'),
           'a password shorter than min_password_length: <not-acceptable/>')
    el, _ = await raw_iq(r, 'set', "<query xmlns='%s'><username>dave</username></query>" % NS_REG)
    xt.is_(summary(el), ('error', 'not-acceptable'), 'no password at all: <not-acceptable/>')
    el, _ = await raw_iq(r, 'set', "<query xmlns='%s'><remove/></query>" % NS_REG)
    xt.is_(summary(el), ('error', 'unexpected-request'),
           '<remove/> before authentication: <unexpected-request/>')
    r.close()

    c = await xt.login(srv, 'carol', 'carol-pw')
    xt.ok(c.ok, 'carol logs in with the password she registered') or xt.diag(c.describe())
    await c.disconnect()

    # Rate limit: 2 per address per hour; carol was the first from ip_a.
    el = await register(srv, 'dave', 'dave-pw', ip_a)
    xt.is_(summary(el), ('result', None), 'a second registration from the same address works')
    el = await register(srv, 'erin', 'erin-pw', ip_a)
    xt.is_(summary(el), ('error', 'resource-constraint'),
           'the third from the same address: <resource-constraint/>')
    el = await register(srv, 'erin', 'erin-pw', ip_b)
    xt.is_(summary(el), ('result', None), 'from another address erin registers')
    c = await xt.login(srv, 'erin', 'erin-pw')
    xt.ok(c.ok, 'erin logs in') or xt.diag(c.describe())
    await c.disconnect()

    # -- Authenticated ------------------------------------------------------

    a = await xt.Raw.open(srv)
    await a.login('alice', 'alice-pw', 'raw')
    el, _ = await raw_iq(a, 'get', "<query xmlns='%s'/>" % NS_REG, to=srv.host)
    q = el.find('{%s}query' % NS_REG) if el is not None else None
    xt.ok(q is not None and q.find('{%s}registered' % NS_REG) is not None,
          'an authenticated form request gets <registered/>')
    xt.is_(q.findtext('{%s}username' % NS_REG) if q is not None else None, 'alice',
           'and the username filled in')

    el, text = await raw_iq(a, 'set', query('bob', 'stolen-pw'), to=srv.host)
    xt.is_(summary(el), ('error', 'not-allowed'), "changing bob's password: <not-allowed/>")
    xt.unlike(text, 'stolen-pw', 'the error does not echo the password (XEP-0077 3.3)')
    el, _ = await raw_iq(a, 'set', query('alice', ''), to=srv.host)
    xt.is_(summary(el), ('error', 'bad-request'), 'an empty new password: <bad-request/>')
    el, _ = await raw_iq(a, 'get', "<query xmlns='%s'/>" % NS_REG, to=srv.jid('bob'))
    xt.is_(summary(el), ('error', 'forbidden'), "a request to bob's bare JID: <forbidden/>")

    el, _ = await raw_iq(a, 'set', query('alice', 'alice-new-pw'), to=srv.host)
    xt.is_(summary(el), ('result', None), 'alice changes her password')
    c = await xt.login(srv, 'alice', 'alice-pw')
    xt.ok(not c.ok and c.auth_failure == 'not-authorized',
          'the old password no longer works') or xt.diag(c.describe())
    await c.disconnect()
    c = await xt.login(srv, 'alice', 'alice-new-pw')
    xt.ok(c.ok, 'the new password works') or xt.diag(c.describe())
    await c.disconnect()
    c = await xt.login(srv, 'bob', 'bob-pw')
    xt.ok(c.ok, "bob's password is unchanged") or xt.diag(c.describe())
    await c.disconnect()

    disco, _ = await raw_iq(a, 'get', "<query xmlns='%s'/>" % NS_DISCO, to=srv.host)
    feats = [f.get('var') for f in disco.iter('{%s}feature' % NS_DISCO)] if disco is not None else []
    xt.ok(NS_REG in feats, 'disco#info of the server lists jabber:iq:register') or xt.diag(feats)
    a.close()

    # Cancellation: bob on two streams; <remove/> from one, with no 'to'.
    # Before it bob has a row in every table of the spool: a roster item
    # for alice (both ways) and the roster version, a pending request from
    # carol, the last presence kept for probes (b1 goes unavailable once),
    # an offline message (b1 unavailable, b2 at priority -1: RFC 6121
    # 8.5.2.1.1), a vCard with a photo, private XML, a blocklist item, and
    # the last logout of his earlier login. b2 is still available when the
    # removal ends its session.
    code, out, err = await srv.actl('roster', 'add', 'bob', srv.host, srv.jid('alice'))
    xt.is_(code, 0, 'bob and alice subscribed both ways') or xt.diag(out + err)
    b1 = await xt.Raw.open(srv)
    await b1.login('bob', 'bob-pw', 'one')
    el, _ = await raw_iq(b1, 'set', "<vCard xmlns='vcard-temp'><FN>Bob</FN><PHOTO><TYPE>image/png"
                         "</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO></vCard>")
    xt.is_(summary(el), ('result', None), 'bob stores a vCard with a photo')
    el, _ = await raw_iq(b1, 'set', "<query xmlns='jabber:iq:private'>"
                         "<prefs xmlns='test:prefs'>mine</prefs></query>")
    xt.is_(summary(el), ('result', None), 'bob stores private XML')
    el, _ = await raw_iq(b1, 'set', "<block xmlns='urn:xmpp:blocking'>"
                         "<item jid='spam@example.net'/></block>")
    xt.is_(summary(el), ('result', None), 'bob blocks spam@example.net')
    await b1.send("<presence type='unavailable'/>")
    el, _ = await raw_iq(b1, 'get', "<query xmlns='%s'/>" % NS_DISCO, to=srv.host)
    xt.is_(summary(el), ('result', None), 'bob/one goes unavailable (a round trip after it)')
    b2 = await xt.login_ok(srv, 'bob', 'bob-pw', resource='two', priority=-1)
    carol = await xt.login_ok(srv, 'carol', 'carol-pw', resource='c')
    carol.send_raw("<presence to='%s' type='subscribe'/>" % srv.jid('bob'))
    carol.send_raw("<message to='%s' type='chat'><body>for bob, later</body></message>"
                   % srv.jid('bob'))
    # A round trip: carol's stanzas before it have been routed (and stored).
    r = await carol.iq('get', srv.host, "<query xmlns='%s'/>" % NS_DISCO)
    xt.is_(r['type'] if r is not None else None, 'result', 'carol asks bob for a subscription '
           'and sends him a message')
    rows = xt.user_rows(srv, 'bob')
    # user_tables is the core's list of the tables it purges with an
    # account (xmppd_store_user_table): every module table, none of its
    # own rows are a user's. sm_state and sm_queue are the core's too
    # (sm_durable, XEP-0198): keyed by resumption id, a row lives only as
    # long as its resumable session (here none: the tables are opened
    # empty at start-up). api_tokens is the core's as well: the admin
    # API's tokens (xmppctl api-token) belong to the server, not an account.
    tables = [t for t in xt.store_tables(srv)
              if t not in ('user_tables', 'sm_state', 'sm_queue', 'api_tokens')]
    xt.is_(sorted(rows), sorted(tables),
           'before the cancellation bob has rows in every table of the spool (%s)'
           % ' '.join(tables))
    declared = sorted(k.decode() for k, _ in xt.store_rows(srv, 'user_tables'))
    xt.is_(declared, sorted(t for t in tables if t != 'accounts'),
           'every module table is declared a user table (the core purges them with the account)')
    el, _ = await raw_iq(b1, 'set', "<query xmlns='%s'><remove/><username>bob</username></query>"
                         % NS_REG)
    xt.is_(summary(el), ('error', 'bad-request'), '<remove/> with other fields: <bad-request/>')
    el, _ = await raw_iq(b1, 'set', "<query xmlns='%s'><remove/></query>" % NS_REG)
    xt.is_(summary(el), ('result', None), 'bob cancels his registration: result')
    closed = await b1.read_until_close(5)
    xt.ok(closed, "then bob's stream is closed")
    xt.is_(xt.stream_error(b1.since_mark()), 'not-authorized', 'with <not-authorized/>')
    xt.ok(await b2.wait_closed(5), "bob's other session is closed too")
    await srv.wait_connected(lambda s: not any(x['jid'].startswith(srv.jid('bob')) for x in s))
    # XEP-0077 3.2: all of it goes with the account. Seen in the spool by
    # mdb_dump, after the removal, its sessions' end, and before anything
    # registers the name again. Other users' rows that name bob (alice's and
    # carol's roster items for him) are theirs and stay, their
    # subscriptions cancelled: see t0900.
    xt.is_(xt.user_rows(srv, 'bob'), {},
           'after the cancellation no row of bob is left in any table')
    await carol.disconnect()
    c = await xt.login(srv, 'bob', 'bob-pw')
    xt.ok(not c.ok and c.auth_failure == 'not-authorized', 'bob can no longer log in') or \
        xt.diag(c.describe())
    await c.disconnect()
    code, out, err = await srv.actl('unregister', 'bob', srv.host)
    xt.ok(code != 0, 'xmppctl agrees the account is gone (%r %s)' % (code, err.strip()))
    b1.close()

    xt.like(srv.log(), r'registered carol@%s from' % re.escape(srv.host),
            'the server log records the registration')
    xt.is_(await srv.astop(), 0, 'xmppd exits 0')

    # -- The access rule ---------------------------------------------------

    ip_ok = xt.pick_loopback_ip()
    ruled = xt.Server(name='t0760-access', workers=2, conf={
        'acl': {'regnet': {'ip': ip_ok + '/32'}},
        'access_rules': {'register': [{'allow': 'regnet'}]},
    }, modules={'mod_register': {'access': 'register', 'ip_rate_limit': 0}})
    el = await register(ruled, 'frank', 'frank-pw', other_ip(ruled, ip_ok))
    xt.is_(summary(el), ('error', 'forbidden'), 'access rule: another address gets <forbidden/>')
    el = await register(ruled, 'frank', 'frank-pw', ip_ok)
    xt.is_(summary(el), ('result', None), 'access rule: the allowed address registers')
    for i in range(3):
        el = await register(ruled, 'frank%d' % i, 'frank-pw', ip_ok)
    xt.is_(summary(el), ('result', None), 'ip_rate_limit 0: no limit')
    xt.is_(await ruled.astop(), 0, 'xmppd exits 0')

    closed_srv = xt.Server(name='t0760-none', workers=2,
                           modules={'mod_register': {'access': 'none'}})
    r, feat = await preauth(closed_srv)
    xt.ok(feat is not None and feat.find('{%s}register' % NS_FEAT) is None,
          "access 'none': no <register/> feature")
    el, _ = await raw_iq(r, 'get', "<query xmlns='%s'/>" % NS_REG)
    xt.is_(summary(el), ('error', 'service-unavailable'),
           "access 'none': the form request gets <service-unavailable/> (XEP-0077 3.1)")
    r.close()
    xt.is_(await closed_srv.astop(), 0, 'xmppd exits 0')


xt.run(main)
