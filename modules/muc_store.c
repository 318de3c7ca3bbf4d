/*
 * muc_store.c - persistent rooms in the store (asynchronous API only).
 *
 * Table mod_muc_rooms: key(service, room) -> a version byte (1) and the
 * room as XML: <room><config .../><aff jid= aff= reason=/>...
 * <subject>the subject message</subject></room>. A persistent room's
 * record is written whenever its configuration, affiliations or subject
 * change, and deleted when it is destroyed or made temporary.
 *
 * Rooms load lazily, as mod_pubsub's nodes do: the first stanza for a
 * room not in memory makes a placeholder that is loading, and queues
 * there (with the stanzas that follow) until the store answers; then the
 * queue runs in arrival order against the loaded room, or, when there is
 * none, with no room (a join creates it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"

#define T_ROOMS MUC_T_ROOMS
#define REC_VERSION 1

struct muc_queued {
	struct muc_queued *next;
	xmppd_elem *st;
	xmppd_jid *from, *to;
};

static size_t
room_key(char *buf, size_t size, const char *jid)
{
	xmppd_jid *j = xmppd_jid_parse(jid);
	size_t n = 0;

	if (j != NULL && xmppd_jid_node(j) != NULL)
		n = xmppd_store_key(buf, size, xmppd_jid_domain(j), xmppd_jid_node(j),
		    (char *)NULL);
	xmppd_jid_free(j);
	return n;
}

size_t
muc_store_service_prefix(char *buf, size_t size, const char *service)
{
	return xmppd_store_key(buf, size, service, (char *)NULL);
}

static void
set_num(xmppd_elem *e, const char *name, long v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%ld", v);
	xmppd_elem_set_attr(e, name, buf);
}

static char *
record(const struct muc_room *r, size_t *len_r)
{
	xmppd_elem *x = xmppd_elem_new("urn:xmppd:muc:1", "room"), *c, *a;
	char *xml, *out;
	size_t len;

	c = xmppd_elem_add_child(x, "urn:xmppd:muc:1", "config");
	xmppd_elem_set_attr(c, "name", r->cfg.name);
	xmppd_elem_set_attr(c, "desc", r->cfg.desc);
	xmppd_elem_set_attr(c, "secret", r->cfg.secret);
	set_num(c, "public", r->cfg.public);
	set_num(c, "membersonly", r->cfg.membersonly);
	set_num(c, "moderated", r->cfg.moderated);
	set_num(c, "pw", r->cfg.password_protected);
	set_num(c, "whois", r->cfg.whois_anyone);
	set_num(c, "maxusers", r->cfg.maxusers);
	set_num(c, "changesubject", r->cfg.changesubject);
	set_num(c, "allowinvites", r->cfg.allowinvites);
	set_num(c, "allowpm", r->cfg.allowpm);
	set_num(c, "logging", r->cfg.logging);
	set_num(c, "archiving", r->cfg.archiving);
	for (size_t i = 0; i < r->naffs; i++) {
		a = xmppd_elem_add_child(x, "urn:xmppd:muc:1", "aff");
		xmppd_elem_set_attr(a, "jid", r->affs[i].jid);
		xmppd_elem_set_attr(a, "aff", muc_aff_name(r->affs[i].aff));
		if (r->affs[i].reason != NULL)
			xmppd_elem_set_attr(a, "reason", r->affs[i].reason);
		if (r->affs[i].nick != NULL)
			xmppd_elem_set_attr(a, "nick", r->affs[i].nick);
	}
	if (r->subject != NULL)
		xmppd_elem_append_copy(xmppd_elem_add_child(x, "urn:xmppd:muc:1", "subject"),
		    r->subject);
	xml = xmppd_elem_to_string(x, &len);
	xmppd_elem_unref(x);
	if (xml == NULL || (out = malloc(len + 1)) == NULL) {
		free(xml);
		return NULL;
	}
	out[0] = REC_VERSION;
	memcpy(out + 1, xml, len);
	free(xml);
	*len_r = len + 1;
	return out;
}

static long
num(xmppd_elem *e, const char *name, long dflt)
{
	const char *v = xmppd_elem_attr(e, name);

	return v != NULL ? strtol(v, NULL, 10) : dflt;
}

static int
dup_attr(char **dst, xmppd_elem *e, const char *name)
{
	const char *v = xmppd_elem_attr(e, name);
	char *c = strdup(v != NULL ? v : "");

	if (c == NULL)
		return -1;
	free(*dst);
	*dst = c;
	return 0;
}

/* Fills a room (made with the defaults) from its record. 0 or -1. */
static int
parse(struct muc_room *r, const void *val, size_t vlen)
{
	const char *v = val;
	xmppd_elem *x, *c, *e;
	int rc = -1;

	if (vlen < 2 || v[0] != REC_VERSION ||
	    (x = xmppd_elem_parse(v + 1, vlen - 1)) == NULL)
		return -1;
	if ((c = xmppd_elem_child(x, "urn:xmppd:muc:1", "config")) == NULL)
		goto out;
	if (dup_attr(&r->cfg.name, c, "name") < 0 || dup_attr(&r->cfg.desc, c, "desc") < 0 ||
	    dup_attr(&r->cfg.secret, c, "secret") < 0)
		goto out;
	r->cfg.persistent = 1;
	r->cfg.public = num(c, "public", 1) != 0;
	r->cfg.membersonly = num(c, "membersonly", 0) != 0;
	r->cfg.moderated = num(c, "moderated", 0) != 0;
	r->cfg.password_protected = num(c, "pw", 0) != 0;
	r->cfg.whois_anyone = num(c, "whois", 0) != 0;
	r->cfg.maxusers = num(c, "maxusers", muc_module.max_users);
	if (r->cfg.maxusers < 1 || r->cfg.maxusers > muc_module.max_users)
		r->cfg.maxusers = muc_module.max_users;
	r->cfg.changesubject = num(c, "changesubject", 0) != 0;
	r->cfg.allowinvites = num(c, "allowinvites", 0) != 0;
	r->cfg.allowpm = (int)num(c, "allowpm", MUC_PM_ANYONE);
	if (r->cfg.allowpm < MUC_PM_ANYONE || r->cfg.allowpm > MUC_PM_NONE)
		r->cfg.allowpm = MUC_PM_ANYONE;
	r->cfg.logging = num(c, "logging", 0) != 0;
	r->cfg.archiving = num(c, "archiving", 1) != 0;
	for (e = xmppd_elem_first_child(x); e != NULL; e = xmppd_elem_next_sibling(e)) {
		int aff;

		if (muc_is(xmppd_elem_name(e), "aff") && xmppd_elem_attr(e, "jid") != NULL &&
		    (aff = muc_aff_parse(xmppd_elem_attr(e, "aff"))) != -2 &&
		    (muc_aff_set(r, xmppd_elem_attr(e, "jid"), aff,
		    xmppd_elem_attr(e, "reason")) < 0 || (xmppd_elem_attr(e, "nick") != NULL &&
		    muc_nick_reserve(r, xmppd_elem_attr(e, "jid"), xmppd_elem_attr(e, "nick")) < 0)))
			goto out;
		if (muc_is(xmppd_elem_name(e), "subject") && xmppd_elem_first_child(e) != NULL) {
			xmppd_elem_unref(r->subject);
			r->subject = xmppd_elem_copy(xmppd_elem_first_child(e));
		}
	}
	rc = 0;
out:
	xmppd_elem_unref(x);
	return rc;
}

static void
save_done(int status, void *ud)
{
	char *jid = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(muc_module.ctx, XMPPD_LOG_ERROR, "cannot save room %s", jid);
	free(jid);
}

void
muc_room_save(struct muc_room *r)
{
	char key[512];
	size_t klen = room_key(key, sizeof(key), r->jid), vlen = 0;
	xmppd_batch *b;
	char *val = NULL, *jid;

	if (klen == 0 || (b = xmppd_batch_new(muc_module.ctx)) == NULL)
		return;
	if (r->cfg.persistent) {
		if ((val = record(r, &vlen)) == NULL ||
		    xmppd_batch_put(b, T_ROOMS, key, klen, val, vlen) < 0) {
			free(val);
			xmppd_batch_free(b);
			return;
		}
		free(val);
	} else if (xmppd_batch_del(b, T_ROOMS, key, klen) < 0) {
		xmppd_batch_free(b);
		return;
	}
	if ((jid = strdup(r->jid)) == NULL) {
		xmppd_batch_free(b);
		return;
	}
	if (xmppd_batch_submit(b, save_done, jid) < 0)
		free(jid);
}

void
muc_room_forget(const char *room_jid)
{
	char key[512];
	size_t klen = room_key(key, sizeof(key), room_jid);
	xmppd_batch *b;

	if (klen == 0 || (b = xmppd_batch_new(muc_module.ctx)) == NULL)
		return;
	if (xmppd_batch_del(b, T_ROOMS, key, klen) < 0) {
		xmppd_batch_free(b);
		return;
	}
	(void)xmppd_batch_submit(b, NULL, NULL);
}

/* ---------------------------------------------------------------- */
/* Lazy loading.                                                      */

void
muc_queue_free(struct muc_room *r)
{
	struct muc_queued *q, *nx;

	for (q = r->queue; q != NULL; q = nx) {
		nx = q->next;
		xmppd_elem_unref(q->st);
		xmppd_jid_free(q->from);
		xmppd_jid_free(q->to);
		free(q);
	}
	r->queue = r->queue_tail = NULL;
}

static void
loaded(int status, const void *val, size_t vlen, void *ud)
{
	struct muc_room *r = ud;
	struct muc_queued *q = r->queue, *nx;

	int failed = 0;

	r->queue = r->queue_tail = NULL;
	if (status == XMPPD_STORE_OK && parse(r, val, vlen) == 0) {
		r->loading = 0;
	} else {
		if (status != XMPPD_STORE_NOT_FOUND) {
			xmppd_log(muc_module.ctx, XMPPD_LOG_ERROR, "cannot load room %s", r->jid);
			failed = 1;
		}
		/* No room: the queue runs without one (a join makes it). */
		muc_room_drop(r);
	}
	for (; q != NULL; q = nx) {
		nx = q->next;
		if (failed)
			muc_error(q->st, "internal-server-error", NULL);
		else
			muc_dispatch(q->st, q->from, q->to);
		xmppd_elem_unref(q->st);
		xmppd_jid_free(q->from);
		xmppd_jid_free(q->to);
		free(q);
	}
}

/* 1 when st was queued behind the room's loading (or started it). */
int
muc_gate(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to)
{
	struct muc_room *r = muc_room_find(xmppd_jid_bare(to));
	struct muc_queued *q;
	char key[512];
	size_t klen;
	int fresh = 0;

	if (r != NULL && !r->loading)
		return 0;
	if (r == NULL) {
		klen = room_key(key, sizeof(key), xmppd_jid_bare(to));
		if (klen == 0 || (r = muc_room_placeholder(xmppd_jid_bare(to),
		    xmppd_jid_domain(to))) == NULL)
			return 0;
		fresh = 1;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL || (q->from = xmppd_jid_copy(from)) == NULL ||
	    (q->to = xmppd_jid_copy(to)) == NULL) {
		if (q != NULL)
			xmppd_jid_free(q->from);
		free(q);
		if (fresh)
			muc_room_drop(r);
		muc_error(st, "internal-server-error", NULL);
		return 1;
	}
	q->st = xmppd_elem_ref(st);
	if (r->queue_tail != NULL)
		r->queue_tail->next = q;
	else
		r->queue = q;
	r->queue_tail = q;
	if (fresh && xmppd_store_aget(muc_module.ctx, T_ROOMS, key, klen, loaded, r) < 0)
		loaded(XMPPD_STORE_ERROR, NULL, 0, r);
	return 1;
}
