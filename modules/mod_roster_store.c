/*
 * mod_roster_store.c - mod_roster's records (the tables are described in
 * mod_roster.c) and the changes to one roster item, each one batch of the
 * asynchronous store: it reads the user's version counter, the item and
 * the contact's pending request, then a step (decide) works out the change
 * and appends its writes, so that the read, the decision and the write are
 * one atomic unit whichever worker makes it (a roster set on the user's,
 * an inbound subscription on the sender's). Once it has completed the
 * cache (mod_roster_cache.c) learns the new state, then the caller's done
 * runs: pushes and answers follow a durable write.
 *
 * Also the item updates and removals of the roster IQ and xmppctl
 * (roster_item_update, roster_item_remove).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <xmppd.h>

#include "mod_roster.h"

#define META_LEN 29
#define STORED_STANZA_MAX 4096          /* a stored subscribe / unavailable */

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

int
roster_item_decode(const void *val, size_t len, struct item *it)
{
	const unsigned char *v = val;
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

int
roster_record_flags(const void *val, size_t len)
{
	const unsigned char *v = val;

	return len < 14 || v[0] != REC_VERSION ? -1 : v[1];
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

void
roster_meta_decode(const void *val, size_t vl, struct meta *m)
{
	const unsigned char *v = val;

	memset(m, 0, sizeof(*m));
	if (v == NULL || vl != META_LEN || v[0] != REC_VERSION) {
		if (getrandom(&m->epoch, sizeof(m->epoch), 0) != sizeof(m->epoch))
			m->epoch = (uint32_t)xmppd_now_ms();
		return;
	}
	m->epoch = (uint32_t)get_be(v + 1, 4);
	m->ver = get_be(v + 5, 8);
	m->floor = get_be(v + 13, 8);
	m->nitems = (uint32_t)get_be(v + 21, 4);
	m->ntomb = (uint32_t)get_be(v + 25, 4);
}

static int
meta_put(xmppd_batch *b, const xmppd_jid *user, const struct meta *m)
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
	return kl == 0 ? -1 : xmppd_batch_put(b, T_ROSTER, k, kl, v, sizeof(v));
}

char *
roster_stanza_record(const xmppd_elem *st, size_t *len_r)
{
	size_t len;
	char *s = xmppd_elem_to_string(st, &len), *v;

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
		return NULL;
	}
	v[0] = REC_VERSION;
	memcpy(v + 1, s, len);
	free(s);
	*len_r = len + 1;
	return v;
}

xmppd_elem *
roster_stanza_parse(const void *val, size_t vlen)
{
	const char *v = val;

	if (vlen < 2 || v[0] != REC_VERSION)
		return NULL;
	return xmppd_elem_parse(v + 1, vlen - 1);
}

int
roster_contacts_add(struct contacts *c, const char *jid)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		char **n = realloc(c->v, cap * sizeof(*n));

		if (n == NULL)
			return -1;
		c->v = n;
		c->cap = cap;
	}
	if ((c->v[c->n] = strdup(jid)) == NULL)
		return -1;
	c->n++;
	return 0;
}

void
roster_contacts_free(struct contacts *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i]);
	free(c->v);
	memset(c, 0, sizeof(*c));
}

xmppd_jid *
roster_bare(const xmppd_jid *j)
{
	return xmppd_jid_make(xmppd_jid_node(j), xmppd_jid_domain(j), NULL);
}

/* ---------------------------------------------------------------- */
/* Changes to one item: one batch each.                               */

struct rchange *
roster_change_new(struct roster *r, const xmppd_jid *user, const char *contact)
{
	struct rchange *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->r = r;
	if ((c->user = roster_bare(user)) == NULL || (c->contact = strdup(contact)) == NULL) {
		xmppd_jid_free(c->user);
		free(c);
		return NULL;
	}
	return c;
}

static void
change_free(struct rchange *c)
{
	roster_item_free(&c->it);
	xmppd_jid_free(c->user);
	free(c->contact);
	free(c);
}

/* Steps, in this order: the pending requests counted, the version
 * counter, the item, the contact's pending request, then decide. */
static int
count_row(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
    void *ud)
{
	((struct rchange *)ud)->npending++;
	return 0;
}

static int
meta_step(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	roster_meta_decode(status == XMPPD_STORE_OK ? val : NULL, vlen, &((struct rchange *)ud)->m);
	return 0;
}

static int
item_step(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	struct rchange *c = ud;

	c->old = 0;
	if (status == XMPPD_STORE_OK && roster_item_decode(val, vlen, &c->it) == 0)
		c->old = (c->it.flags & F_GONE) ? 2 : 1;
	c->live = c->old == 1;
	return 0;
}

static int
pending_step(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	struct rchange *c = ud;

	c->pin = status == XMPPD_STORE_OK;
	c->seq = roster_seq_next();
	return c->decide(c, b);
}

static void
change_done(int status, void *ud)
{
	struct rchange *c = ud;

	/* Durable: what presence decides from memory follows. */
	if (status == XMPPD_STORE_OK && c->changed)
		cache_apply(xmppd_jid_bare(c->user), c->contact,
		    c->live ? (c->it.flags & F_STATE) | F_ITEM : 0, c->pin, c->seq);
	c->done(c, status);
	change_free(c);
}

int
roster_change_submit(struct rchange *c, int count_pending)
{
	char k[KEY_MAX], mk[KEY_MAX], p[KEY_MAX];
	size_t kl = roster_key(k, c->user, c->contact), ml = roster_key(mk, c->user, "");
	size_t pl = roster_key(p, c->user, NULL);
	xmppd_batch *b;

	if (kl == 0 || ml == 0 || pl == 0 || (b = xmppd_batch_new(c->r->ctx)) == NULL) {
		change_free(c);
		return -1;
	}
	/* A failed call fails the batch when submitted. */
	if (count_pending)
		(void)xmppd_batch_scan(b, T_PENDING, p, pl, count_row, c);
	(void)xmppd_batch_get(b, T_ROSTER, mk, ml, meta_step, c);
	(void)xmppd_batch_get(b, T_ROSTER, k, kl, item_step, c);
	(void)xmppd_batch_get(b, T_PENDING, k, kl, pending_step, c);
	if (xmppd_batch_submit(b, change_done, c) < 0) {
		change_free(c);
		return -1;
	}
	return 0;
}

/* Step: every tombstone of the user goes (the scan sees the batch's
 * earlier delete of the item being removed). */
static int
tomb_row(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
    void *ud)
{
	struct rchange *c = ud;
	char p[KEY_MAX];
	size_t plen = roster_key(p, c->user, NULL);

	if (klen <= plen + 1 || vlen < 2 || !(((const unsigned char *)val)[1] & F_GONE))
		return 0;
	return xmppd_batch_del(b, T_ROSTER, key, klen) < 0 ? -1 : 0;
}

int
roster_change_write(struct rchange *c, xmppd_batch *b)
{
	struct meta *m = &c->m;
	int live = !(c->it.flags & F_GONE), rc;
	char k[KEY_MAX], p[KEY_MAX];
	size_t kl = roster_key(k, c->user, c->contact), pl = roster_key(p, c->user, NULL), vl;
	unsigned char *v;

	if (kl == 0 || pl == 0)
		return -1;
	c->changed = 1;
	c->live = live;
	c->it.ver = ++m->ver;
	if (c->old == 1 && !live && m->nitems > 0)
		m->nitems--;
	if (c->old != 1 && live)
		m->nitems++;
	if (c->old == 2 && live && m->ntomb > 0)
		m->ntomb--;
	if (c->old != 2 && !live)
		m->ntomb++;
	if (!live && m->ntomb > (uint64_t)c->r->max_items) {
		/* XEP-0237: older versions then get the full roster. */
		if (xmppd_batch_del(b, T_ROSTER, k, kl) < 0 ||
		    xmppd_batch_scan(b, T_ROSTER, p, pl, tomb_row, c) < 0)
			return -1;
		m->ntomb = 0;
		m->floor = m->ver;
		return meta_put(b, c->user, m);
	}
	if ((v = item_encode(&c->it, &vl)) == NULL)
		return -1;
	rc = xmppd_batch_put(b, T_ROSTER, k, kl, v, vl);
	free(v);
	return rc < 0 ? -1 : meta_put(b, c->user, m);
}

int
roster_change_pending(struct rchange *c, xmppd_batch *b, const xmppd_elem *st)
{
	char k[KEY_MAX], *v;
	size_t kl = roster_key(k, c->user, c->contact), vl;
	int rc;

	if (kl == 0)
		return -1;
	c->changed = 1;
	c->pin = st != NULL;
	if (st == NULL)
		return xmppd_batch_del(b, T_PENDING, k, kl);
	if ((v = roster_stanza_record(st, &vl)) == NULL)
		return -1;
	rc = xmppd_batch_put(b, T_PENDING, k, kl, v, vl);
	free(v);
	return rc;
}

/* ---------------------------------------------------------------- */
/* Items changed by the roster IQ and xmppctl.                        */

struct update {
	char *name;
	char **groups;
	size_t ngroups;
	int keep, both;
	roster_result_fn fn;
	void *arg;
};

static void
update_free(struct update *u)
{
	for (size_t i = 0; i < u->ngroups; i++)
		free(u->groups[i]);
	free(u->groups);
	free(u->name);
	free(u);
}

/* Step: the new name and groups; a new item must fit. */
static int
update_decide(struct rchange *c, xmppd_batch *b)
{
	struct update *u = c->ud;
	struct item *it = &c->it;

	if (c->old != 1) {
		roster_item_free(it);
		if (c->m.nitems >= (uint64_t)c->r->max_items) {
			c->cond = "resource-constraint";
			return -1;
		}
	}
	if (!u->keep || u->name != NULL) {
		free(it->name);
		if ((it->name = u->name != NULL ? strdup(u->name) : NULL) == NULL && u->name != NULL)
			return -1;
	}
	if (!u->keep || u->ngroups > 0) {
		for (size_t i = 0; i < it->ngroups; i++)
			free(it->groups[i]);
		free(it->groups);
		it->groups = NULL;
		it->ngroups = 0;
		if (u->ngroups > 0 && (it->groups = calloc(u->ngroups, sizeof(char *))) == NULL)
			return -1;
		for (; it->ngroups < u->ngroups; it->ngroups++)
			if ((it->groups[it->ngroups] = strdup(u->groups[it->ngroups])) == NULL)
				return -1;
	}
	if (u->both)
		it->flags = F_TO | F_FROM;
	if (roster_change_write(c, b) < 0 ||
	    (u->both && c->pin && roster_change_pending(c, b, NULL) < 0))
		return -1;
	return 0;
}

static const char *
failure(struct rchange *c, int status, const char *what)
{
	if (status == XMPPD_STORE_ABORTED && c->cond != NULL)
		return c->cond;
	xmppd_log(c->r->ctx, XMPPD_LOG_ERROR, "%s: cannot %s the roster item %s (store status %d)",
	    xmppd_jid_bare(c->user), what, c->contact, status);
	return "internal-server-error";
}

/* RFC 6121 2.3.2: the push, then the result. */
static void
update_done(struct rchange *c, int status)
{
	struct update *u = c->ud;

	if (status == XMPPD_STORE_OK) {
		roster_push(c->user, c->contact, &c->it, c->m.epoch);
		u->fn(0, NULL, u->arg);
	} else {
		u->fn(-1, failure(c, status, "update"), u->arg);
	}
	update_free(u);
}

int
roster_item_update(struct roster *r, const xmppd_jid *user, const char *contact,
    const char *name, char *const *groups, size_t ngroups, int keep, int both,
    roster_result_fn fn, void *arg)
{
	struct update *u = calloc(1, sizeof(*u));
	struct rchange *c;

	if (u == NULL)
		return -1;
	u->keep = keep;
	u->both = both;
	u->fn = fn;
	u->arg = arg;
	if ((name != NULL && (u->name = strdup(name)) == NULL) ||
	    (ngroups > 0 && (u->groups = calloc(ngroups, sizeof(char *))) == NULL))
		goto err;
	for (; u->ngroups < ngroups; u->ngroups++)
		if ((u->groups[u->ngroups] = strdup(groups[u->ngroups])) == NULL)
			goto err;
	if ((c = roster_change_new(r, user, contact)) == NULL)
		goto err;
	c->decide = update_decide;
	c->done = update_done;
	c->ud = u;
	if (roster_change_submit(c, 0) < 0)
		goto err;
	return 0;
err:
	update_free(u);
	return -1;
}

struct removal {
	unsigned old;               /* the item's flags before */
	int pin;                    /* a request was pending */
	roster_result_fn fn;
	void *arg;
};

static int
remove_decide(struct rchange *c, xmppd_batch *b)
{
	struct removal *rm = c->ud;

	if (c->old != 1) {
		c->cond = "item-not-found";     /* 2.5.3 */
		return -1;
	}
	rm->old = c->it.flags;
	rm->pin = c->pin;
	roster_item_free(&c->it);
	c->it.flags = F_GONE;
	if (roster_change_write(c, b) < 0 || (c->pin && roster_change_pending(c, b, NULL) < 0))
		return -1;
	return 0;
}

static void
remove_done(struct rchange *c, int status)
{
	struct removal *rm = c->ud;

	if (status != XMPPD_STORE_OK) {
		rm->fn(-1, failure(c, status, "remove"), rm->arg);
		free(rm);
		return;
	}
	rm->fn(0, NULL, rm->arg);
	roster_push(c->user, c->contact, &c->it, c->m.epoch);
	if (rm->old & F_FROM)
		(void)xmppd_user_presences(c->user, roster_unavailable, c->contact);
	if (rm->old & (F_TO | F_ASK))
		roster_send(c->user, c->contact, "unsubscribe");
	if ((rm->old & F_FROM) || rm->pin)
		roster_send(c->user, c->contact, "unsubscribed");
	free(rm);
}

int
roster_item_remove(struct roster *r, const xmppd_jid *user, const char *contact,
    roster_result_fn fn, void *arg)
{
	struct removal *rm = calloc(1, sizeof(*rm));
	struct rchange *c;

	if (rm == NULL || (c = roster_change_new(r, user, contact)) == NULL) {
		free(rm);
		return -1;
	}
	rm->fn = fn;
	rm->arg = arg;
	c->decide = remove_decide;
	c->done = remove_done;
	c->ud = rm;
	if (roster_change_submit(c, 0) < 0) {
		free(rm);
		return -1;
	}
	return 0;
}
