/*
 * mod_roster - RFC 6121: the roster (2), presence subscriptions (3, with
 * pre-approval, 3.4), presence broadcast, probes and directed presence (4),
 * and XEP-0237 roster versioning.
 *
 * Storage (every record starts with a version byte):
 *  - mod_roster, key "host NUL node NUL contact NUL": one roster item (the
 *    subscription flags, the item's roster version, name, groups). A
 *    removed item stays as a tombstone so that an incremental roster get
 *    (XEP-0237) can announce the removal; when a user has more than
 *    max_items tombstones they are all dropped and clients older than that
 *    get the full roster. The key with an empty contact ("host NUL node
 *    NUL NUL") holds the user's roster version counter, a random epoch
 *    (so that a re-created account never matches a version cached for the
 *    old one) and the item and tombstone counts.
 *  - mod_roster_pending, same key: an inbound subscription request the
 *    user has not answered ("Pending In"), the stanza itself, delivered
 *    again at the user's next initial presence (RFC 6121 3.1.3). Pending In
 *    lives only here: it is not a roster item (RFC 6121 has no attribute
 *    for it), so a stranger's request does not grow the roster.
 *  - mod_roster_last, key "host NUL node NUL": the user's last unavailable
 *    presence, the answer to a probe when no resource is available (RFC
 *    6121 4.3.2).
 *
 * The module is two files: this one keeps the records, answers the roster
 * IQ and xmppctl roster; mod_roster_presence.c handles presence
 * (subscriptions, probes, broadcast, directed presence). mod_roster.h is
 * what they share.
 *
 * Choices where the RFC leaves room (the presence ones are in
 * mod_roster_presence.c):
 *  - Roster items are bare JIDs; a set with a full JID is bad-request, a
 *    JID too long for a store key not-acceptable.
 *  - A roster at max_items refuses new items with resource-constraint.
 *  - An item's name and groups are replaced by a set; 'subscription'
 *    other than "remove", 'ask' and 'approved' in a set are ignored (RFC
 *    6121 2.1.2.1, 2.1.2.2, 2.1.2.5).
 *  - The version string is "EPOCH-COUNTER"; a version of another epoch,
 *    older than the tombstones kept, or not ours gets the full roster.
 *  - `xmppctl roster add` makes the subscription "both" at once, like
 *    ejabberd's add_rosteritem, and also writes the mirror item in the
 *    contact's roster when the contact is a local account, so that both
 *    sides agree and presence flows both ways (ejabberd writes only the
 *    user's side); `roster remove` is the user removing the item (RFC 6121
 *    2.5.2: unsubscribe and unsubscribed go to the contact).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <xmppd.h>

#include "mod_roster.h"

#define NS_ROSTERVER "urn:xmpp:features:rosterver"
#define NS_PREAPPROVAL "urn:xmpp:features:pre-approval"
#define META_LEN 29
#define STORED_STANZA_MAX 4096          /* a stored subscribe / unavailable */

static const struct xmppd_option options[] = {
	{ "max_items", XMPPD_OPT_INT, "1000", 1, 100000 },
	/* RFC 6121 2.3.3: server-configured limits (not-acceptable). */
	{ "max_name_length", XMPPD_OPT_INT, "1024", 1, 65535 },
	{ "max_group_length", XMPPD_OPT_INT, "1024", 1, 65535 },
	{ "max_groups", XMPPD_OPT_INT, "64", 1, 1000 },
	{ NULL, 0, NULL, 0, 0 },
};

/* Set at load, read-only afterwards. */
static struct roster state;

/* ---------------------------------------------------------------- */
/* Records.                                                           */

static void
put_be(unsigned char *p, uint64_t v, int n)
{
	while (n-- > 0) {
		p[n] = (unsigned char)v;
		v >>= 8;
	}
}

static uint64_t
get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

void
roster_item_free(struct item *it)
{
	for (size_t i = 0; i < it->ngroups; i++)
		free(it->groups[i]);
	free(it->groups);
	free(it->name);
	memset(it, 0, sizeof(*it));
}

/* version, flags, ver(8), name length(2), name, group count(2), then each
 * group as length(2) and bytes. */
static unsigned char *
item_encode(const struct item *it, size_t *len_r)
{
	size_t nlen = it->name != NULL ? strlen(it->name) : 0, len = 14 + nlen, off;
	unsigned char *v;

	if (nlen > 65535 || it->ngroups > 65535)
		return NULL;
	for (size_t i = 0; i < it->ngroups; i++) {
		if (strlen(it->groups[i]) > 65535)
			return NULL;
		len += 2 + strlen(it->groups[i]);
	}
	if ((v = malloc(len)) == NULL)
		return NULL;
	v[0] = REC_VERSION;
	v[1] = (unsigned char)it->flags;
	put_be(v + 2, it->ver, 8);
	put_be(v + 10, nlen, 2);
	memcpy(v + 12, it->name != NULL ? it->name : "", nlen);
	off = 12 + nlen;
	put_be(v + off, it->ngroups, 2);
	off += 2;
	for (size_t i = 0; i < it->ngroups; i++) {
		size_t gl = strlen(it->groups[i]);

		put_be(v + off, gl, 2);
		memcpy(v + off + 2, it->groups[i], gl);
		off += 2 + gl;
	}
	*len_r = len;
	return v;
}

static int
item_decode(const unsigned char *v, size_t len, struct item *it)
{
	size_t off, n;

	memset(it, 0, sizeof(*it));
	if (len < 14 || v[0] != REC_VERSION)
		return -1;
	it->flags = v[1];
	it->ver = get_be(v + 2, 8);
	n = get_be(v + 10, 2);
	if (12 + n + 2 > len)
		return -1;
	if (n > 0 && (it->name = strndup((const char *)v + 12, n)) == NULL)
		return -1;
	off = 12 + n;
	n = get_be(v + off, 2);
	off += 2;
	if (n > 0 && (it->groups = calloc(n, sizeof(char *))) == NULL)
		goto err;
	for (size_t i = 0; i < n; i++) {
		size_t gl;

		if (off + 2 > len || off + 2 + (gl = get_be(v + off, 2)) > len ||
		    (it->groups[i] = strndup((const char *)v + off + 2, gl)) == NULL)
			goto err;
		it->ngroups++;
		off += 2 + gl;
	}
	return 0;
err:
	roster_item_free(it);
	return -1;
}

/* Keys: "host NUL node NUL [contact NUL]". 0 if it does not fit. */
size_t
roster_key(char *buf, const xmppd_jid *user, const char *contact)
{
	if (contact == NULL)
		return xmppd_store_key(buf, KEY_MAX, xmppd_jid_domain(user), xmppd_jid_node(user),
		    NULL);
	return xmppd_store_key(buf, KEY_MAX, xmppd_jid_domain(user), xmppd_jid_node(user),
	    contact, NULL);
}

/* The user's version counter; a roster without one starts at 0 with a
 * fresh epoch. */
int
roster_meta_get(xmppd_txn *t, const xmppd_jid *user, struct meta *m)
{
	char k[KEY_MAX];
	size_t kl = roster_key(k, user, ""), vl;
	const unsigned char *v;
	int rc;

	memset(m, 0, sizeof(*m));
	if (kl == 0 || (rc = xmppd_store_get(t, T_ROSTER, k, kl, (const void **)&v, &vl)) < 0)
		return -1;
	if (rc == 1 || vl != META_LEN || v[0] != REC_VERSION) {
		if (getrandom(&m->epoch, sizeof(m->epoch), 0) != sizeof(m->epoch))
			m->epoch = (uint32_t)xmppd_now_ms();
		return 0;
	}
	m->epoch = (uint32_t)get_be(v + 1, 4);
	m->ver = get_be(v + 5, 8);
	m->floor = get_be(v + 13, 8);
	m->nitems = (uint32_t)get_be(v + 21, 4);
	m->ntomb = (uint32_t)get_be(v + 25, 4);
	return 0;
}

static int
meta_put(xmppd_txn *t, const xmppd_jid *user, const struct meta *m)
{
	char k[KEY_MAX];
	size_t kl = roster_key(k, user, "");
	unsigned char v[META_LEN];

	v[0] = REC_VERSION;
	put_be(v + 1, m->epoch, 4);
	put_be(v + 5, m->ver, 8);
	put_be(v + 13, m->floor, 8);
	put_be(v + 21, m->nitems, 4);
	put_be(v + 25, m->ntomb, 4);
	return kl == 0 ? -1 : xmppd_store_put(t, T_ROSTER, k, kl, v, sizeof(v));
}

/* 0 found (maybe a tombstone), 1 absent, -1 error. */
int
roster_item_get(xmppd_txn *t, const xmppd_jid *user, const char *contact, struct item *it)
{
	char k[KEY_MAX];
	size_t kl = roster_key(k, user, contact), vl;
	const void *v;
	int rc;

	memset(it, 0, sizeof(*it));
	if (kl == 0)
		return 1;
	if ((rc = xmppd_store_get(t, T_ROSTER, k, kl, &v, &vl)) != 0)
		return rc;
	return item_decode(v, vl, it) < 0 ? 1 : 0;
}

struct keys {
	char **v;
	size_t *len, n, cap, plen;
};

static int
tomb_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct keys *k = ud;

	if (klen <= k->plen + 1 || vlen < 2 || !(((const unsigned char *)val)[1] & F_GONE))
		return 0;
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 16;
		char **v = realloc(k->v, cap * sizeof(*v));
		size_t *l = v != NULL ? realloc(k->len, cap * sizeof(*l)) : NULL;

		if (v != NULL)
			k->v = v;
		if (l == NULL)
			return -1;
		k->len = l;
		k->cap = cap;
	}
	if ((k->v[k->n] = malloc(klen)) == NULL)
		return -1;
	memcpy(k->v[k->n], key, klen);
	k->len[k->n++] = klen;
	return 0;
}

/* Drops every tombstone of user (XEP-0237: older versions then get the
 * full roster). */
static int
tombs_purge(xmppd_txn *t, const xmppd_jid *user)
{
	char p[KEY_MAX];
	struct keys k = { NULL, NULL, 0, 0, roster_key(p, user, NULL) };
	int rc = k.plen == 0 ? -1 : xmppd_store_scan(t, T_ROSTER, p, k.plen, tomb_cb, &k);

	for (size_t i = 0; i < k.n; i++) {
		if (rc == 0 && xmppd_store_del(t, T_ROSTER, k.v[i], k.len[i]) < 0)
			rc = -1;
		free(k.v[i]);
	}
	free(k.v);
	free(k.len);
	return rc != 0 ? -1 : 0;
}

/*
 * Writes it as contact's item at the next roster version (XEP-0237),
 * keeping the counts in m; old: 0 absent, 1 live, 2 tombstone. A removal
 * (F_GONE) leaves a tombstone, or purges them all once there are more than
 * max_items.
 */
int
roster_item_store(struct roster *r, xmppd_txn *t, const xmppd_jid *user, const char *contact,
    struct meta *m, struct item *it, int old)
{
	int live = !(it->flags & F_GONE);
	char k[KEY_MAX];
	size_t kl = roster_key(k, user, contact), vl;
	unsigned char *v;
	int rc;

	if (kl == 0)
		return -1;
	it->ver = ++m->ver;
	if (old == 1 && !live && m->nitems > 0)
		m->nitems--;
	if (old != 1 && live)
		m->nitems++;
	if (old == 2 && live && m->ntomb > 0)
		m->ntomb--;
	if (old != 2 && !live)
		m->ntomb++;
	if (!live && m->ntomb > (uint64_t)r->max_items) {
		if (xmppd_store_del(t, T_ROSTER, k, kl) < 0 || tombs_purge(t, user) < 0)
			return -1;
		m->ntomb = 0;
		m->floor = m->ver;
		return meta_put(t, user, m);
	}
	if ((v = item_encode(it, &vl)) == NULL)
		return -1;
	rc = xmppd_store_put(t, T_ROSTER, k, kl, v, vl);
	free(v);
	return rc < 0 ? -1 : meta_put(t, user, m);
}

/* 0 present, 1 absent, -1 error. */
int
roster_pending_get(xmppd_txn *t, const xmppd_jid *user, const char *contact)
{
	char k[KEY_MAX];
	size_t kl = roster_key(k, user, contact), vl;
	const void *v;

	return kl == 0 ? 1 : xmppd_store_get(t, T_PENDING, k, kl, &v, &vl);
}

int
roster_pending_del(xmppd_txn *t, const xmppd_jid *user, const char *contact)
{
	char k[KEY_MAX];
	size_t kl = roster_key(k, user, contact);

	return kl == 0 || xmppd_store_del(t, T_PENDING, k, kl) >= 0 ? 0 : -1;
}

/* A stanza as a record; one too big to keep is replaced by its bare
 * bones (type, from, to). */
int
roster_stanza_put(xmppd_txn *t, const char *table, const char *k, size_t kl,
    const xmppd_elem *st)
{
	size_t len;
	char *s = xmppd_elem_to_string(st, &len), *v;
	int rc;

	if (s != NULL && len > STORED_STANZA_MAX) {
		xmppd_elem *min = xmppd_elem_new(NULL, "presence");
		static const char *const attrs[] = { "type", "from", "to" };

		for (size_t i = 0; i < 3; i++)
			xmppd_elem_set_attr(min, attrs[i], xmppd_elem_attr(st, attrs[i]));
		free(s);
		s = xmppd_elem_to_string(min, &len);
		xmppd_elem_unref(min);
	}
	if (s == NULL || (v = malloc(len + 1)) == NULL) {
		free(s);
		return -1;
	}
	v[0] = REC_VERSION;
	memcpy(v + 1, s, len);
	rc = xmppd_store_put(t, table, k, kl, v, len + 1);
	free(v);
	free(s);
	return rc;
}

xmppd_elem *
roster_stanza_parse(const void *val, size_t vlen)
{
	const char *v = val;

	if (vlen < 2 || v[0] != REC_VERSION)
		return NULL;
	return xmppd_elem_parse(v + 1, vlen - 1);
}

/* ---------------------------------------------------------------- */
/* Stanzas the module sends.                                          */

static void
ver_str(char *buf, size_t size, uint32_t epoch, uint64_t ver)
{
	snprintf(buf, size, "%08x-%llu", epoch, (unsigned long long)ver);
}

/* A version a client sent (XEP-0237 3): 1 and *ver_r if it is one of ours
 * for this epoch, 0 otherwise (the client then gets the full roster). */
static int
ver_parse(const char *s, uint32_t epoch, uint64_t *ver_r)
{
	char want[16];
	uint64_t v = 0;

	snprintf(want, sizeof(want), "%08x-", epoch);
	if (strncmp(s, want, 9) != 0 || s[9] == '\0')
		return 0;
	for (s += 9; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*ver_r = v;
	return 1;
}

/* RFC 6121 2.1.2: one <item/>; a tombstone is subscription='remove'. */
static void
item_xml(xmppd_elem *q, const char *contact, const struct item *it)
{
	static const char *const subs[] = { "none", "to", "from", "both" };
	xmppd_elem *e = xmppd_elem_add_child(q, NS_ROSTER, "item");
	int gone = it->flags & F_GONE;

	xmppd_elem_set_attr(e, "jid", contact);
	if (it->name != NULL && !gone)
		xmppd_elem_set_attr(e, "name", it->name);
	xmppd_elem_set_attr(e, "subscription", gone ? "remove" : subs[it->flags & 3]);
	if ((it->flags & F_ASK) && !gone)
		xmppd_elem_set_attr(e, "ask", "subscribe");
	if ((it->flags & F_APPROVED) && !gone)
		xmppd_elem_set_attr(e, "approved", "true");
	for (size_t i = 0; i < it->ngroups && !gone; i++)
		xmppd_elem_add_text(xmppd_elem_add_child(e, NS_ROSTER, "group"), it->groups[i],
		    strlen(it->groups[i]));
}

/* RFC 6121 2.1.6: a roster push, an IQ set from the user's bare JID. */
static xmppd_elem *
push_new(const xmppd_jid *user, const char *contact, const struct item *it, uint32_t epoch)
{
	static uint64_t seq;
	xmppd_elem *iq = xmppd_elem_new(NULL, "iq"), *q;
	char buf[48];

	snprintf(buf, sizeof(buf), "roster-push-%llu",
	    (unsigned long long)__atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	xmppd_elem_set_attr(iq, "type", "set");
	xmppd_elem_set_attr(iq, "id", buf);
	xmppd_elem_set_attr(iq, "from", xmppd_jid_bare(user));
	q = xmppd_elem_add_child(iq, NS_ROSTER, "query");
	ver_str(buf, sizeof(buf), epoch, it->ver);
	xmppd_elem_set_attr(q, "ver", buf);
	item_xml(q, contact, it);
	return iq;
}

/* To every resource; the receive hook keeps it from the ones that never
 * asked for the roster ("interested resources", RFC 6121 2.2). */
void
roster_push(const xmppd_jid *user, const char *contact, const struct item *it, uint32_t epoch)
{
	xmppd_elem *iq = push_new(user, contact, it, epoch);

	(void)xmppd_send_to_resources(user, iq, 0);
	xmppd_elem_unref(iq);
}

xmppd_jid *
roster_bare(const xmppd_jid *j)
{
	return xmppd_jid_make(xmppd_jid_node(j), xmppd_jid_domain(j), NULL);
}

/* ---------------------------------------------------------------- */
/* The roster IQ (RFC 6121 2).                                        */

struct full {
	xmppd_elem *q;
	size_t plen;
};

static int
full_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct full *f = ud;
	struct item it;

	if (klen <= f->plen + 1 || item_decode(val, vlen, &it) < 0)
		return 0;
	if (!(it.flags & F_GONE))
		item_xml(f->q, (const char *)key + f->plen, &it);
	roster_item_free(&it);
	return 0;
}

struct change {
	char *contact;
	struct item it;
};

struct changes {
	struct change *v;
	size_t n, cap, plen;
	uint64_t since;
};

static int
changes_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct changes *c = ud;
	struct item it;

	if (klen <= c->plen + 1 || item_decode(val, vlen, &it) < 0)
		return 0;
	if (it.ver <= c->since) {
		roster_item_free(&it);
		return 0;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct change *n = realloc(c->v, cap * sizeof(*n));

		if (n == NULL) {
			roster_item_free(&it);
			return -1;
		}
		c->v = n;
		c->cap = cap;
	}
	if ((c->v[c->n].contact = strdup((const char *)key + c->plen)) == NULL) {
		roster_item_free(&it);
		return -1;
	}
	c->v[c->n++].it = it;
	return 0;
}

static int
change_cmp(const void *a, const void *b)
{
	const struct change *x = a, *y = b;

	return x->it.ver < y->it.ver ? -1 : x->it.ver > y->it.ver;
}

/* RFC 6121 2.1.3, 2.6.3; XEP-0237 3, 4. */
static void
iq_get(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *user, const char *ver)
{
	char p[KEY_MAX], vs[48];
	struct meta m;
	struct full f = { NULL, roster_key(p, user, NULL) };
	struct changes c = { NULL, 0, 0, f.plen, 0 };
	struct xmppd_roster_args ra;
	xmppd_txn *t = xmppd_store_begin(0);
	int incremental = 0, rc = 0;

	if (t == NULL || f.plen == 0 || roster_meta_get(t, user, &m) < 0) {
		xmppd_store_abort(t);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	if (ver != NULL && ver_parse(ver, m.epoch, &c.since) && c.since >= m.floor &&
	    c.since <= m.ver)
		incremental = 1;
	if (incremental && c.since < m.ver)
		rc = xmppd_store_scan(t, T_ROSTER, p, f.plen, changes_cb, &c);
	else if (!incremental) {
		f.q = xmppd_elem_new(NS_ROSTER, "query");
		ver_str(vs, sizeof(vs), m.epoch, m.ver);
		xmppd_elem_set_attr(f.q, "ver", vs);
		rc = xmppd_store_scan(t, T_ROSTER, p, f.plen, full_cb, &f);
	}
	xmppd_store_abort(t);
	if (rc < 0) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		xmppd_elem_unref(f.q);
	} else if (!incremental) {
		ra.query = f.q;
		ra.user = user;
		(void)xmppd_hook_run(XMPPD_HOOK_ROSTER_GET, xmppd_jid_domain(user), &ra);
		xmppd_iq_reply(iq, f.q);
	} else {
		/* XEP-0237 4: an empty result, then what changed since, in
		 * order, as pushes to the requesting resource. */
		if (c.n > 1)
			qsort(c.v, c.n, sizeof(*c.v), change_cmp);
		xmppd_iq_reply(iq, NULL);
		for (size_t i = 0; i < c.n; i++) {
			xmppd_elem *push_iq = push_new(user, c.v[i].contact, &c.v[i].it, m.epoch);

			xmppd_elem_set_attr(push_iq, "to", xmppd_jid_full(from));
			xmppd_route(push_iq);
			xmppd_elem_unref(push_iq);
		}
	}
	for (size_t i = 0; i < c.n; i++) {
		free(c.v[i].contact);
		roster_item_free(&c.v[i].it);
	}
	free(c.v);
}

/*
 * Sets the name and groups of contact's item, creating it if needed.
 * keep: leave name (NULL) or groups (ngroups 0) as they are (xmppctl);
 * both: make the subscription "both" (xmppctl roster add). 0, or -1 with
 * the stanza error condition in *cond_r.
 */
static int
item_update(struct roster *r, const xmppd_jid *user, const char *contact, const char *name,
    char **groups, size_t ngroups, int keep, int both, const char **cond_r)
{
	struct meta m;
	struct item it = { 0 };
	xmppd_txn *t = xmppd_store_begin(1);
	int rc, live;

	*cond_r = "internal-server-error";
	if (t == NULL || roster_meta_get(t, user, &m) < 0 ||
	    (rc = roster_item_get(t, user, contact, &it)) < 0)
		goto err;
	live = rc == 0 && !(it.flags & F_GONE);
	if (!live) {
		roster_item_free(&it);
		if (m.nitems >= (uint64_t)r->max_items) {
			*cond_r = "resource-constraint";
			goto err;
		}
	}
	if (!keep || name != NULL) {
		free(it.name);
		if ((it.name = name != NULL ? strdup(name) : NULL) == NULL && name != NULL)
			goto err;
	}
	if (!keep || ngroups > 0) {
		for (size_t i = 0; i < it.ngroups; i++)
			free(it.groups[i]);
		free(it.groups);
		it.groups = NULL;
		it.ngroups = 0;
		if (ngroups > 0 && (it.groups = calloc(ngroups, sizeof(char *))) == NULL)
			goto err;
		for (; it.ngroups < ngroups; it.ngroups++)
			if ((it.groups[it.ngroups] = strdup(groups[it.ngroups])) == NULL)
				goto err;
	}
	if (both)
		it.flags = F_TO | F_FROM;
	if (roster_item_store(r, t, user, contact, &m, &it, rc != 0 ? 0 : live ? 1 : 2) < 0 ||
	    (both && roster_pending_del(t, user, contact) < 0))
		goto err;
	if (xmppd_store_commit(t) < 0) {
		t = NULL;
		goto err;
	}
	roster_push(user, contact, &it, m.epoch);
	roster_item_free(&it);
	return 0;
err:
	xmppd_store_abort(t);
	roster_item_free(&it);
	return -1;
}

/* RFC 6121 2.5: removes contact (iq answered when given; NULL from
 * xmppctl), then 2.5.2: unsubscribe and unsubscribed to the contact. */
static int
item_remove(struct roster *r, const xmppd_jid *user, const char *contact, xmppd_elem *iq,
    const char **cond_r)
{
	struct meta m;
	struct item it = { 0 };
	xmppd_txn *t = xmppd_store_begin(1);
	int rc, pin = 0;
	unsigned old;

	*cond_r = "internal-server-error";
	if (t == NULL || roster_meta_get(t, user, &m) < 0 ||
	    (rc = roster_item_get(t, user, contact, &it)) < 0 ||
	    (pin = roster_pending_get(t, user, contact)) < 0)
		goto err;
	pin = pin == 0;
	if (rc != 0 || (it.flags & F_GONE)) {
		*cond_r = "item-not-found";     /* 2.5.3 */
		goto err;
	}
	old = it.flags;
	roster_item_free(&it);
	it.flags = F_GONE;
	if (roster_item_store(r, t, user, contact, &m, &it, 1) < 0 ||
	    (pin && roster_pending_del(t, user, contact) < 0))
		goto err;
	if (xmppd_store_commit(t) < 0) {
		t = NULL;
		goto err;
	}
	if (iq != NULL)
		xmppd_iq_reply(iq, NULL);
	roster_push(user, contact, &it, m.epoch);
	if (old & F_FROM)
		(void)xmppd_user_presences(user, roster_unavailable, (void *)contact);
	if (old & (F_TO | F_ASK))
		roster_send(user, contact, "unsubscribe");
	if ((old & F_FROM) || pin)
		roster_send(user, contact, "unsubscribed");
	return 0;
err:
	xmppd_store_abort(t);
	roster_item_free(&it);
	return -1;
}

/* RFC 6121 2.3, 2.4, 2.5; the checks of 2.3.3. */
static void
iq_set(struct roster *r, xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *user)
{
	xmppd_elem *item = NULL, *c;
	const char *jid, *name, *sub, *cond = NULL;
	char *groups[1000], k[KEY_MAX];
	size_t ngroups = 0;
	xmppd_jid *contact = NULL;
	int n = 0;

	for (c = xmppd_elem_first_child(q); c != NULL; c = xmppd_elem_next_sibling(c), n++)
		item = c;
	if (n != 1 || xmppd_elem_ns(item) == NULL || strcmp(xmppd_elem_ns(item), NS_ROSTER) != 0 ||
	    strcmp(xmppd_elem_name(item), "item") != 0) {
		xmppd_iq_error(iq, "bad-request", "a roster set carries exactly one item");
		return;
	}
	if ((jid = xmppd_elem_attr(item, "jid")) == NULL) {
		xmppd_iq_error(iq, "bad-request", "the item has no jid");
		return;
	}
	if ((contact = xmppd_jid_parse(jid)) == NULL) {
		xmppd_iq_error(iq, "jid-malformed", NULL);
		return;
	}
	if (xmppd_jid_resource(contact) != NULL) {
		xmppd_iq_error(iq, "bad-request", "roster items are bare JIDs");
		goto out;
	}
	if (roster_key(k, user, xmppd_jid_bare(contact)) == 0) {
		/* The store's key limit, not the protocol's. */
		xmppd_iq_error(iq, "not-acceptable", "JID too long to store");
		goto out;
	}
	/* 2.1.2.5: only "remove" means something in a set; ask and
	 * approved come from presence, never from a set (2.1.2.1, 2.1.2.2). */
	sub = xmppd_elem_attr(item, "subscription");
	if (sub != NULL && strcmp(sub, "remove") == 0) {
		if (item_remove(r, user, xmppd_jid_bare(contact), iq, &cond) < 0)
			xmppd_iq_error(iq, cond, NULL);
		goto out;
	}
	name = xmppd_elem_attr(item, "name");
	if (name != NULL && strlen(name) > (size_t)r->max_name) {
		xmppd_iq_error(iq, "not-acceptable", "the name is too long");
		goto out;
	}
	for (c = xmppd_elem_first_child(item); c != NULL; c = xmppd_elem_next_sibling(c)) {
		const char *g;

		if (xmppd_elem_ns(c) == NULL || strcmp(xmppd_elem_ns(c), NS_ROSTER) != 0 ||
		    strcmp(xmppd_elem_name(c), "group") != 0)
			continue;
		g = xmppd_elem_text(c);
		if (*g == '\0' || strlen(g) > (size_t)r->max_group) {
			xmppd_iq_error(iq, "not-acceptable", *g == '\0' ? "an empty group" :
			    "a group name is too long");
			goto out;
		}
		for (size_t i = 0; i < ngroups; i++)
			if (strcmp(groups[i], g) == 0) {
				xmppd_iq_error(iq, "bad-request", "a group given twice");
				goto out;
			}
		if (ngroups >= (size_t)r->max_groups) {
			xmppd_iq_error(iq, "not-acceptable", "too many groups");
			goto out;
		}
		groups[ngroups++] = (char *)g;
	}
	if (item_update(r, user, xmppd_jid_bare(contact), name, groups, ngroups, 0, 0, &cond) < 0)
		xmppd_iq_error(iq, cond, strcmp(cond, "resource-constraint") == 0 ?
		    "the roster is full" : NULL);
	else
		xmppd_iq_reply(iq, NULL);
out:
	xmppd_jid_free(contact);
}

static enum xmppd_result
roster_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	struct roster *r = ud;
	xmppd_elem *q = xmppd_elem_first_child(iq);
	int set = strcmp(xmppd_stanza_type(iq), "set") == 0;
	xmppd_jid *user;

	/* RFC 6121 2.1.5, 2.3.3: only the account itself reads or changes
	 * its roster. */
	if (from == NULL || xmppd_jid_node(from) == NULL || xmppd_jid_node(to) == NULL ||
	    strcmp(xmppd_jid_bare(from), xmppd_jid_bare(to)) != 0) {
		xmppd_iq_error(iq, set ? "forbidden" : "service-unavailable", NULL);
		return XMPPD_STOP;
	}
	if (strcmp(xmppd_elem_name(q), "query") != 0) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return XMPPD_STOP;
	}
	if ((user = roster_bare(to)) == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return XMPPD_STOP;
	}
	if (set)
		iq_set(r, iq, q, user);
	else
		iq_get(iq, from, user, xmppd_elem_attr(q, "ver"));
	xmppd_jid_free(user);
	return XMPPD_STOP;
}

/*
 * The account is about to go (remove_user runs before the core deletes it
 * and, in the same transaction, its rows of our user tables): its contacts
 * are told, as if the user had removed every item (XEP-0077 3.2, RFC 6121
 * 2.5.2).
 */
static enum xmppd_result
on_remove_user(void *args, void *ud)
{
	struct xmppd_user_args *ua = args;
	xmppd_jid *user = xmppd_jid_make(ua->node, ua->host, NULL);
	struct contacts to, from, pending;

	if (user == NULL)
		goto out;
	roster_contacts(T_ROSTER, user, F_TO | F_ASK, &to);
	roster_contacts(T_ROSTER, user, F_FROM, &from);
	roster_contacts(T_PENDING, user, 0, &pending);
	for (size_t i = 0; i < to.n; i++)
		roster_send(user, to.v[i], "unsubscribe");
	for (size_t i = 0; i < from.n; i++)
		roster_send(user, from.v[i], "unsubscribed");
	for (size_t i = 0; i < pending.n; i++)
		roster_send(user, pending.v[i], "unsubscribed");
	roster_contacts_free(&to);
	roster_contacts_free(&from);
	roster_contacts_free(&pending);
out:
	xmppd_jid_free(user);
	return XMPPD_CONTINUE;
}

/* ---------------------------------------------------------------- */
/* xmppctl roster.                                                    */

#define CTL_USAGE "roster list USER HOST | roster add USER HOST CONTACT [NAME [GROUP]] | " \
	"roster remove USER HOST CONTACT"

static char *
msg(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (s = malloc((size_t)n + 1)) == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

struct list_out {
	FILE *f;
	size_t plen;
};

/* Names and groups are the client's text: no TAB or newline gets out. */
static void
put_field(FILE *f, const char *s)
{
	fputc('\t', f);
	for (; s != NULL && *s != '\0'; s++)
		fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

static int
list_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	static const char *const subs[] = { "none", "to", "from", "both" };
	struct list_out *lo = ud;
	struct item it;

	if (klen <= lo->plen + 1 || item_decode(val, vlen, &it) < 0)
		return 0;
	if (!(it.flags & F_GONE)) {
		fputs((const char *)key + lo->plen, lo->f);
		put_field(lo->f, subs[it.flags & 3]);
		put_field(lo->f, (it.flags & F_ASK) ? "subscribe" : "");
		put_field(lo->f, it.name);
		for (size_t i = 0; i < it.ngroups; i++)
			put_field(lo->f, it.groups[i]);
		fputc('\n', lo->f);
	}
	roster_item_free(&it);
	return 0;
}

/* One line per item: JID, subscription, ask, name, then the groups, TAB
 * separated. */
static int
ctl_list(const xmppd_jid *user, char **out_r)
{
	char p[KEY_MAX], *buf = NULL;
	size_t len = 0;
	struct list_out lo = { open_memstream(&buf, &len), roster_key(p, user, NULL) };
	xmppd_txn *t;
	int rc = -1;

	if (lo.f == NULL)
		return -1;
	if ((t = xmppd_store_begin(0)) != NULL) {
		rc = xmppd_store_scan(t, T_ROSTER, p, lo.plen, list_cb, &lo);
		xmppd_store_abort(t);
	}
	fclose(lo.f);
	if (rc < 0) {
		free(buf);
		*out_r = msg("cannot read the roster of %s", xmppd_jid_bare(user));
		return -1;
	}
	*out_r = buf;
	return 0;
}

/* Subscription "both" at once (ejabberd's add_rosteritem), in both rosters
 * when the contact is local, then each side's presence to the other. */
static int
ctl_add(struct roster *r, const xmppd_jid *user, const xmppd_jid *contact, int argc,
    char **argv, char **out_r)
{
	const char *name = argc > 5 ? argv[5] : NULL, *cond;
	char *group = argc > 6 ? argv[6] : NULL;
	int local = xmppd_jid_node(contact) != NULL &&
	    xmppd_is_local_host(xmppd_jid_domain(contact)) &&
	    xmppd_user_exists(xmppd_jid_node(contact), xmppd_jid_domain(contact)) &&
	    strcmp(xmppd_jid_bare(contact), xmppd_jid_bare(user)) != 0;

	if ((name != NULL && strlen(name) > (size_t)r->max_name) ||
	    (group != NULL && (*group == '\0' || strlen(group) > (size_t)r->max_group))) {
		*out_r = msg("the name or group is empty or too long");
		return -1;
	}
	if (item_update(r, user, xmppd_jid_bare(contact), name, &group, group != NULL, 1, 1,
	    &cond) < 0 || (local && item_update(r, contact, xmppd_jid_bare(user), NULL, NULL, 0,
	    1, 1, &cond) < 0)) {
		*out_r = msg("cannot add %s to the roster of %s: %s", xmppd_jid_bare(contact),
		    xmppd_jid_bare(user), strcmp(cond, "resource-constraint") == 0 ?
		    "the roster is full" : "store error");
		return -1;
	}
	(void)xmppd_user_presences(user, roster_forward, (void *)xmppd_jid_bare(contact));
	if (local)
		(void)xmppd_user_presences(contact, roster_forward, (void *)xmppd_jid_bare(user));
	*out_r = msg("%s added to the roster of %s (subscription both)\n",
	    xmppd_jid_bare(contact), xmppd_jid_bare(user));
	return 0;
}

static int
roster_ctl(int argc, char **argv, char **out_r, void *ud)
{
	struct roster *r = ud;
	const char *cmd = argc > 1 ? argv[1] : "", *cond;
	xmppd_jid *user = NULL, *contact = NULL;
	char *node = NULL, k[KEY_MAX];
	int rc = -1;

	if (!((strcmp(cmd, "list") == 0 && argc == 4) ||
	    (strcmp(cmd, "add") == 0 && argc >= 5 && argc <= 7) ||
	    (strcmp(cmd, "remove") == 0 && argc == 5))) {
		*out_r = msg("usage: xmppctl %s", CTL_USAGE);
		return -1;
	}
	if ((node = xmppd_nodeprep(argv[2])) == NULL ||
	    (user = xmppd_jid_make(node, argv[3], NULL)) == NULL) {
		*out_r = msg("invalid user name '%s' or host '%s'", argv[2], argv[3]);
		goto out;
	}
	if (!xmppd_is_local_host(xmppd_jid_domain(user))) {
		*out_r = msg("host '%s' is not served here", argv[3]);
		goto out;
	}
	if (!xmppd_user_exists(xmppd_jid_node(user), xmppd_jid_domain(user))) {
		*out_r = msg("no such account %s", xmppd_jid_bare(user));
		goto out;
	}
	if (argc >= 5 && ((contact = xmppd_jid_parse(argv[4])) == NULL ||
	    xmppd_jid_resource(contact) != NULL || roster_key(k, user,
	    xmppd_jid_bare(contact)) == 0 || (xmppd_jid_node(contact) != NULL &&
	    roster_key(k, contact, xmppd_jid_bare(user)) == 0))) {
		*out_r = msg("invalid contact '%s' (a bare JID, not too long)", argv[4]);
		goto out;
	}
	if (strcmp(cmd, "list") == 0) {
		rc = ctl_list(user, out_r);
	} else if (strcmp(cmd, "add") == 0) {
		rc = ctl_add(r, user, contact, argc, argv, out_r);
	} else if ((rc = item_remove(r, user, xmppd_jid_bare(contact), NULL, &cond)) < 0) {
		*out_r = msg("%s is not in the roster of %s", xmppd_jid_bare(contact),
		    xmppd_jid_bare(user));
		if (strcmp(cond, "item-not-found") != 0) {
			free(*out_r);
			*out_r = msg("cannot change the roster of %s", xmppd_jid_bare(user));
		}
	} else {
		*out_r = msg("%s removed from the roster of %s\n", xmppd_jid_bare(contact),
		    xmppd_jid_bare(user));
	}
out:
	free(node);
	xmppd_jid_free(user);
	xmppd_jid_free(contact);
	return rc;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static int
feature(xmppd_ctx *ctx, const char *ns, const char *name)
{
	xmppd_elem *f = xmppd_elem_new(ns, name);
	int rc = xmppd_stream_feature(ctx, f, 1);

	xmppd_elem_unref(f);
	return rc;
}

static int
load(xmppd_ctx *ctx)
{
	static const char *const tables[] = { T_ROSTER, T_PENDING, T_LAST };
	struct roster *r = &state;
	const void *val;
	size_t vlen;
	xmppd_txn *txn;

	r->ctx = ctx;
	r->max_items = xmppd_opt_int(ctx, "max_items");
	r->max_name = xmppd_opt_int(ctx, "max_name_length");
	r->max_group = xmppd_opt_int(ctx, "max_group_length");
	r->max_groups = xmppd_opt_int(ctx, "max_groups");
	if ((r->slot = xmppd_session_slot(ctx)) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "no session slot left");
		return -1;
	}
	/* Create the tables now, so that no read transaction on a worker
	 * has to. */
	if ((txn = xmppd_store_begin(1)) == NULL) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot open the store");
		return -1;
	}
	for (size_t i = 0; i < 3; i++)
		if (xmppd_store_get(txn, tables[i], "", 1, &val, &vlen) < 0) {
			xmppd_store_abort(txn);
			xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot open table %s", tables[i]);
			return -1;
		}
	if (xmppd_store_commit(txn) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot create the tables");
		return -1;
	}
	if (xmppd_iq_register(ctx, NULL, NS_ROSTER, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_ACCOUNT, roster_iq, r) < 0 || roster_presence_load(r) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_REMOVE_USER, NULL, PRIORITY, on_remove_user, r) < 0 ||
	    xmppd_store_user_table(ctx, T_ROSTER) < 0 || xmppd_store_user_table(ctx, T_PENDING) < 0 ||
	    xmppd_store_user_table(ctx, T_LAST) < 0 ||
	    /* RFC 6121 2.6.1 (XEP-0237) and 3.4.1. */
	    feature(ctx, NS_ROSTERVER, "ver") < 0 || feature(ctx, NS_PREAPPROVAL, "sub") < 0 ||
	    xmppd_disco_account_feature(ctx, NS_ROSTER) < 0 ||
	    xmppd_ctl_register(ctx, "roster", CTL_USAGE, roster_ctl, r) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot register handlers");
		return -1;
	}
	return 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_roster",
	.version = "1.0",
	.options = options,
	.load = load,
};

