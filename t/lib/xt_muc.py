"""xt_muc - what the XEP-0045 tests (t17xx) share: the service's names
and the stanzas a client sends and looks for in a room."""

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
