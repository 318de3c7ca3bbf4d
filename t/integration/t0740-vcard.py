#!/usr/bin/python3
"""t0740-vcard: XEP-0054 vcard-temp and XEP-0153 avatar hashes in presence
(mod_vcard)."""

import base64
import hashlib
import os
import sys
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import xmppdtest as xt  # noqa: E402

NS_VCARD = 'vcard-temp'
NS_UPDATE = 'vcard-temp:x:update'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
EMPTY = "<vCard xmlns='%s'/>" % NS_VCARD
MAX_SIZE = 65536

IMAGE = bytes(range(256)) * 3 + b'\x89PNG not really'
IMAGE_HASH = hashlib.sha1(IMAGE).hexdigest()


def b64_lines(data):
    """Base64 in 76-character lines, as RFC 2045 6.8 has it."""
    s = base64.b64encode(data).decode()
    return '\n'.join(s[i:i + 76] for i in range(0, len(s), 76))


def vcard(fn, desc='', photo=None):
    p = ''
    if photo is not None:
        p = '<PHOTO><TYPE>image/png</TYPE><BINVAL>\n%s\n</BINVAL></PHOTO>' % photo
    return ("<vCard xmlns='%s'><FN>%s</FN><N><FAMILY>Liddell</FAMILY><GIVEN>Alice</GIVEN></N>"
            "<DESC>%s</DESC>%s</vCard>" % (NS_VCARD, escape(fn), escape(desc), p))


def vcard_of(r):
    """The <vCard/> of a result, or None."""
    if r is None or r['type'] != 'result':
        return None
    return r.xml.find('{%s}vCard' % NS_VCARD)


def field(v, *path):
    e = v
    for p in path:
        e = e.find('{%s}%s' % (NS_VCARD, p)) if e is not None else None
    return e.text if e is not None else None


def condition(r):
    return r['error']['condition'] if r is not None and r['type'] == 'error' else None


def photos(p):
    """The photo texts of every vcard-temp:x:update child of a presence."""
    return [(x.findtext('{%s}photo' % NS_UPDATE) or '') for x in p.xml.findall('{%s}x' % NS_UPDATE)]


async def main():
    srv = xt.Server(workers=2, modules={'mod_vcard': {}, 'mod_disco': {}})
    for u in ('alice', 'bob', 'carol'):
        srv.register(u, u + '-pw')
    desk = await xt.login_ok(srv, 'alice', 'alice-pw', resource='desk')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b')

    # XEP-0054 3.1: nothing stored yet; her own get answers an empty
    # vCard, another user's get service-unavailable, the error of an
    # account that does not exist (3.3: the same in both cases).
    r = await desk.iq('get', None, EMPTY)
    v = vcard_of(r)
    xt.ok(v is not None and len(v) == 0 and not (v.text or '').strip(),
          'alice has no vCard yet: her own get answers an empty <vCard/>') or xt.diag(str(r))
    r = await desk.iq('get', srv.jid('alice'), EMPTY)
    v = vcard_of(r)
    xt.ok(v is not None and len(v) == 0, 'and so does her get to her own bare JID') or xt.diag(str(r))
    r = await bob.iq('get', srv.jid('alice'), EMPTY)
    xt.is_(condition(r), 'service-unavailable', "bob's get of alice's (none): service-unavailable")

    # 3.2: store one (no 'to'), with an avatar; 3.1: read it back.
    desc = 'Curiouser & curiouser <said> "Alice"'
    r = await desk.iq('set', None, vcard('Alice L.', desc, b64_lines(IMAGE)))
    xt.is_(r['type'] if r is not None else None, 'result', 'alice stores her vCard') or xt.diag(str(r))
    v = vcard_of(await desk.iq('get', None, EMPTY))
    xt.is_(field(v, 'FN'), 'Alice L.', 'her own get returns FN')
    xt.is_(field(v, 'N', 'GIVEN'), 'Alice', 'and nested N/GIVEN')
    xt.is_(field(v, 'DESC'), desc, 'and DESC with special characters intact')
    binval = field(v, 'PHOTO', 'BINVAL')
    xt.ok(binval is not None and base64.b64decode(''.join(binval.split())) == IMAGE,
          'and the PHOTO data decodes to the image')
    # A set to her own bare JID works as well.
    r = await desk.iq('set', srv.jid('alice'), vcard('Alice Liddell', desc, b64_lines(IMAGE)))
    xt.is_(r['type'] if r is not None else None, 'result', 'a set to her own bare JID is accepted')

    # 3.3: others read it at the bare JID.
    v = vcard_of(await bob.iq('get', srv.jid('alice'), EMPTY))
    xt.is_(field(v, 'FN'), 'Alice Liddell', "bob reads alice's vCard")
    r = await bob.iq('get', srv.jid('carol'), EMPTY)
    xt.is_(condition(r), 'service-unavailable', "carol's (none) gives bob service-unavailable")
    r = await bob.iq('get', srv.jid('nobody'), EMPTY)
    xt.is_(condition(r), 'service-unavailable', 'a vCard of a nonexistent user: service-unavailable, '
           'the same error')

    # 3.2: nobody writes another's vCard, nor the server's.
    r = await bob.iq('set', srv.jid('alice'), vcard('Mallory'))
    xt.is_(condition(r), 'forbidden', "bob setting alice's vCard: forbidden")
    r = await bob.iq('set', srv.host, vcard('Mallory'))
    xt.is_(condition(r), 'forbidden', "bob setting the server's vCard: forbidden")
    v = vcard_of(await bob.iq('get', srv.jid('alice'), EMPTY))
    xt.is_(field(v, 'FN'), 'Alice Liddell', "alice's vCard is unchanged")
    # The server's own vCard (XEP-0054 3.3 note): empty.
    v = vcard_of(await bob.iq('get', srv.host, EMPTY))
    xt.ok(v is not None and len(v) == 0, "the server's vCard is an empty <vCard/>")

    # Limits and junk.
    r = await desk.iq('set', None, vcard('Big', 'x' * (MAX_SIZE + 100)))
    xt.is_(condition(r), 'not-acceptable', 'a vCard over max_size: not-acceptable')
    r = await desk.iq('set', None, vcard('Bad', '', 'not*base64!'))
    xt.is_(condition(r), 'bad-request', 'a PHOTO/BINVAL that is not base64: bad-request')
    r = await desk.iq('set', None, vcard('Bad', '', 'QQ=A'))
    xt.is_(condition(r), 'bad-request', 'a PHOTO/BINVAL with padding inside: bad-request')
    r = await desk.iq('set', None, "<vcard xmlns='%s'/>" % NS_VCARD)
    xt.is_(condition(r), 'bad-request', 'a payload not named vCard: bad-request')
    v = vcard_of(await desk.iq('get', None, EMPTY))
    xt.is_(field(v, 'FN'), 'Alice Liddell', 'after the refusals her vCard is unchanged')

    # XEP-0153: the hash of the image in presence. Another resource of
    # alice's sees the broadcast, with a stale hash sent by the client
    # replaced.
    phone = await xt.login_ok(srv, 'alice', 'alice-pw', resource='phone')
    desk.send_raw("<presence><status>avatar-1</status>"
                  "<x xmlns='%s'><photo>0000000000000000000000000000000000000000</photo></x>"
                  "</presence>" % NS_UPDATE)
    p = await phone.presence(frm=desk.jid, pred=lambda p: p['status'] == 'avatar-1')
    xt.ok(p is not None, "alice/phone gets alice/desk's presence")
    xt.is_(photos(p) if p is not None else None, [IMAGE_HASH],
           'it carries exactly one update child, with the SHA-1 of the image')
    xt.is_(p['status'] if p is not None else None, 'avatar-1', 'and the rest of the presence')

    # A newly available resource learns the others' presence, hash included.
    tab = await xt.login_ok(srv, 'alice', 'alice-pw', resource='tab')
    p = await tab.presence(frm=desk.jid, pred=lambda p: p['status'] == 'avatar-1')
    xt.is_(photos(p) if p is not None else None, [IMAGE_HASH],
           "alice/tab, just online, gets alice/desk's presence with the hash")

    # Directed presence to another user.
    desk.send_raw("<presence to='%s'><status>directed</status></presence>" % bob.jid)
    p = await bob.presence(frm=desk.jid, pred=lambda p: p['status'] == 'directed')
    xt.ok(p is not None, 'bob gets directed presence from alice/desk')
    xt.is_(photos(p) if p is not None else None, [IMAGE_HASH], 'with the hash of her avatar')

    # Unavailable presence is left alone.
    desk.send_raw("<presence to='%s' type='unavailable'><status>bye-bob</status></presence>"
                  % bob.jid)
    p = await bob.presence(frm=desk.jid, pred=lambda p: p['status'] == 'bye-bob')
    xt.is_(photos(p) if p is not None else None, [], 'directed unavailable presence gets no hash')

    # Bob has no avatar: his presence is untouched.
    bob.send_raw("<presence to='%s'><status>from-bob</status></presence>" % desk.jid)
    p = await desk.presence(pred=lambda p: p['status'] == 'from-bob')
    xt.is_(photos(p) if p is not None else None, [], "bob's presence (no vCard) has no update child")

    # Service discovery.
    r = await bob.iq('get', srv.host, "<query xmlns='%s'/>" % NS_DISCO_INFO)
    xt.like(str(r), r"<feature var=.vcard-temp.", 'the server advertises vcard-temp')
    r = await desk.iq('get', srv.jid('alice'), "<query xmlns='%s'/>" % NS_DISCO_INFO)
    xt.like(str(r), r"<feature var=.vcard-temp.", 'an account advertises vcard-temp (to itself: '
            'XEP-0030 8 keeps it from those without a presence subscription)')

    # Everything survives a restart.
    await xt.disconnect_all(desk, phone, tab, bob)
    xt.is_(srv.restart(), 0, 'xmppd stops with 0 and starts again')
    desk = await xt.login_ok(srv, 'alice', 'alice-pw', resource='desk')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw', resource='b')
    v = vcard_of(await bob.iq('get', srv.jid('alice'), EMPTY))
    xt.is_(field(v, 'FN'), 'Alice Liddell', "after the restart bob reads alice's vCard")
    binval = field(v, 'PHOTO', 'BINVAL')
    xt.ok(binval is not None and base64.b64decode(''.join(binval.split())) == IMAGE,
          'with the photo')
    desk.send_raw("<presence to='%s'><status>after-restart</status></presence>" % bob.jid)
    p = await bob.presence(frm=desk.jid, pred=lambda p: p['status'] == 'after-restart')
    xt.is_(photos(p) if p is not None else None, [IMAGE_HASH], 'and the hash is still in her presence')

    # A vCard without a photo: the server stops adding the hash, and what
    # the client says (here an empty photo, XEP-0153 4.1.3) goes through.
    r = await desk.iq('set', None, vcard('Alice, no photo'))
    xt.is_(r['type'] if r is not None else None, 'result', 'alice stores a vCard without PHOTO')
    desk.send_raw("<presence to='%s'><status>no-photo</status><x xmlns='%s'><photo/></x></presence>"
                  % (bob.jid, NS_UPDATE))
    p = await bob.presence(frm=desk.jid, pred=lambda p: p['status'] == 'no-photo')
    xt.is_(photos(p) if p is not None else None, [''], "then her presence keeps the client's empty photo")

    # An empty vCard is published as it is (XEP-0054 3.2 replaces the
    # whole vCard): read back, by her and by others, it is an empty
    # <vCard/>, not an error (issue 13 point 8).
    r = await desk.iq('set', None, EMPTY)
    xt.is_(r['type'] if r is not None else None, 'result', 'alice stores an empty vCard')
    r = await bob.iq('get', srv.jid('alice'), EMPTY)
    v = vcard_of(r)
    xt.ok(v is not None and len(v) == 0, "bob reads alice's published empty vCard as an empty "
          "<vCard/>") or xt.diag(str(r))
    r = await desk.iq('get', None, EMPTY)
    v = vcard_of(r)
    xt.ok(v is not None and len(v) == 0, 'and so does alice') or xt.diag(str(r))
    desk.send_raw("<presence to='%s'><status>empty-vcard</status></presence>" % bob.jid)
    p = await bob.presence(frm=desk.jid, pred=lambda p: p['status'] == 'empty-vcard')
    xt.is_(photos(p) if p is not None else None, [], 'with no avatar hash in her presence')

    # The vCard goes with the account (XEP-0077 3.2: all information
    # associated with the entity). Seen in the spool by mdb_dump, after
    # the removal and before the name is registered again: the core
    # deletes the rows of every declared user table with the account
    # (xmppd_store_user_table).
    r = await bob.iq('set', None, vcard('Bob', '', b64_lines(IMAGE)))
    xt.is_(r['type'] if r is not None else None, 'result', 'bob stores a vCard with a photo')
    r = await desk.iq('set', None, vcard('Alice again', '', b64_lines(IMAGE)))
    xt.is_(r['type'] if r is not None else None, 'result', 'alice stores a vCard with a photo again')
    await bob.disconnect()
    rows = xt.user_rows(srv, 'bob')
    xt.is_(sorted(rows), ['accounts', 'mod_vcard', 'mod_vcard_photo'],
           "before the removal the spool holds bob's account, vCard and photo hash rows")
    code, out, err = await srv.actl('unregister', 'bob', srv.host)
    xt.is_(code, 0, 'xmppctl unregister bob') or xt.diag(out + err)
    xt.is_(xt.user_rows(srv, 'bob'), {}, 'after it no row of bob is left in any table')
    # Other users' data are theirs: alice's vCard stays.
    xt.is_(sorted(xt.user_rows(srv, 'alice')), ['accounts', 'mod_vcard', 'mod_vcard_photo'],
           "alice's account, vCard and photo hash rows are untouched")
    srv.register('bob', 'bob-pw2')
    r = await desk.iq('get', srv.jid('bob'), EMPTY)
    xt.is_(condition(r), 'service-unavailable', 'the new bob has no vCard: service-unavailable')
    bob = await xt.login_ok(srv, 'bob', 'bob-pw2', resource='b2')
    bob.send_raw("<presence to='%s'><status>new-bob</status></presence>" % desk.jid)
    p = await desk.presence(pred=lambda p: p['status'] == 'new-bob')
    xt.is_(photos(p) if p is not None else None, [], "and no avatar hash in the new bob's presence")

    await xt.disconnect_all(desk, bob)

    # The core keeps the list of user tables in the store, so a table is
    # purged with the account even while its module is not loaded: alice
    # is removed from a server running without mod_vcard.
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')
    srv.conf['modules'] = {'mod_disco': {}}
    srv.write_config()
    srv.start()
    xt.is_(sorted(xt.user_rows(srv, 'alice')), ['accounts', 'mod_vcard', 'mod_vcard_photo'],
           'restarted without mod_vcard: alice still has her vCard rows')
    code, out, err = await srv.actl('unregister', 'alice', srv.host)
    xt.is_(code, 0, 'xmppctl unregister alice') or xt.diag(out + err)
    xt.is_(xt.user_rows(srv, 'alice'), {},
           'and after it none of her rows is left, mod_vcard\'s included')
    xt.is_(srv.stop(), 0, 'xmppd exits 0 on SIGTERM')


xt.run(main)
