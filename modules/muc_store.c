/*
 * muc_store.c - persistent rooms in the store (asynchronous API only).
 *
 * Table mod_muc_rooms: key(service, room) -> a version byte (1) and the
 * room as XML: <room><config .../><aff jid= aff= reason=/>...
 * <subject>the subject message</subject></room>. A persistent room's
 * record is written whenever its configuration, affiliations or subject
 * change, and deleted when it is destroyed or made temporary.
 *
 * Table mod_muc_hist: key(service, room) and a big-endian 64-bit number
 * -> a version byte (1) and <h at='unix time'>the message</h>: a
 * persistent room's last history_size groupchat messages, so that the
 * history on join (XEP-0045 7.2.15) survives a restart with its
 * original times (the XEP-0203 stamps). Each message is one put (and
 * the delete of the one history_size older) in a batch; the entries are
 * read back, newest first and at most history_size, when the room loads;
 * they go with the room (destroyed, or made temporary).
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
#define T_HIST MUC_T_HIST
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

char *
muc_rec_encode(xmppd_elem *e, unsigned version, size_t *len_r)
{
	size_t len = 0;
	char *xml = xmppd_elem_to_string(e, &len), *out;

	xmppd_elem_unref(e);
	if (xml == NULL || (out = malloc(len + 1)) == NULL) {
		free(xml);
		return NULL;
	}
	out[0] = (char)version;
	memcpy(out + 1, xml, len);
	free(xml);
	*len_r = len + 1;
	return out;
}

static char *
record(const struct muc_room *r, size_t *len_r)
{
	xmppd_elem *x = xmppd_elem_new("urn:xmppd:muc:1", "room"), *c, *a;

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
	/* Counted against max_rooms_per_user after a restart too. */
	if (r->creator != NULL)
		xmppd_elem_set_attr(c, "creator", r->creator);
	set_num(c, "archiving", r->cfg.archiving);
	for (size_t i = 0; i < r->naffs; i++) {
		a = xmppd_elem_add_child(x, "urn:xmppd:muc:1", "aff");
		xmppd_elem_set_attr(a, "jid", r->affs[i].jid);
		xmppd_elem_set_attr(a, "aff", muc_aff_name(r->affs[i].aff));
		if (r->affs[i].reason != NULL)
			xmppd_elem_set_attr(a, "reason", r->affs[i].reason);
		if (r->affs[i].nick != NULL)
			xmppd_elem_set_attr(a, "nick", r->affs[i].nick);
		if (r->affs[i].mention_all)
			set_num(a, "mentions", 1);
	}
	if (r->subject != NULL)
		xmppd_elem_append_copy(xmppd_elem_add_child(x, "urn:xmppd:muc:1", "subject"),
		    r->subject);
	return muc_rec_encode(x, REC_VERSION, len_r);
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
	/* Counted at load (muc_store_count_creators): released when the
	 * room goes, as a room made since the start is. */
	if (r->creator == NULL && xmppd_elem_attr(c, "creator") != NULL &&
	    (r->creator = strdup(xmppd_elem_attr(c, "creator"))) == NULL)
		goto out;
	r->cfg.archiving = num(c, "archiving", 1) != 0;
	for (e = xmppd_elem_first_child(x); e != NULL; e = xmppd_elem_next_sibling(e)) {
		int aff;

		if (muc_is(xmppd_elem_name(e), "aff") && xmppd_elem_attr(e, "jid") != NULL &&
		    (aff = muc_aff_parse(xmppd_elem_attr(e, "aff"))) != -2 &&
		    (muc_aff_set(r, xmppd_elem_attr(e, "jid"), aff,
		    xmppd_elem_attr(e, "reason")) < 0 || (xmppd_elem_attr(e, "nick") != NULL &&
		    muc_nick_reserve(r, xmppd_elem_attr(e, "jid"), xmppd_elem_attr(e, "nick")) < 0)))
			goto out;
		if (muc_is(xmppd_elem_name(e), "aff") && num(e, "mentions", 0) != 0)
			for (size_t i = 0; i < r->naffs; i++)
				if (strcmp(r->affs[i].jid, xmppd_elem_attr(e, "jid")) == 0)
					r->affs[i].mention_all = 1;
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
	} else if (xmppd_batch_del(b, T_ROOMS, key, klen) < 0 ||
	    xmppd_batch_del_prefix(b, T_HIST, key, klen) < 0) {
		xmppd_batch_free(b);
		return;
	}
	if ((jid = strdup(r->jid)) == NULL) {
		xmppd_batch_free(b);
		return;
	}
	if (xmppd_batch_submit(b, save_done, jid) < 0)
		free(jid);
	/* Made temporary: only persistent rooms keep missed mentions
	 * (muc_mention.c), and a later room of that name must not find
	 * these. */
	if (!r->cfg.persistent)
		muc_mention_room_gone(r->jid);
}

void
muc_room_forget(const char *room_jid)
{
	char key[512];
	size_t klen = room_key(key, sizeof(key), room_jid);
	xmppd_batch *b;

	if (klen == 0 || (b = xmppd_batch_new(muc_module.ctx)) == NULL)
		return;
	if (xmppd_batch_del(b, T_ROOMS, key, klen) < 0 ||
	    xmppd_batch_del_prefix(b, T_HIST, key, klen) < 0) {
		xmppd_batch_free(b);
		return;
	}
	(void)xmppd_batch_submit(b, NULL, NULL);
	muc_mention_room_gone(room_jid);
}

/* ---------------------------------------------------------------- */
/* History.                                                           */

static size_t
hist_key(char *buf, size_t size, const char *room_jid, uint64_t seq)
{
	size_t n = room_key(buf, size, room_jid);

	if (n == 0 || n + 8 > size)
		return 0;
	for (int i = 7; i >= 0; i--)
		buf[n++] = (char)(seq >> (i * 8));
	return n;
}

/* Puts h as row seq; with del_old, the row that fell out of the ring
 * goes in the same batch. */
static void
hist_put(struct muc_room *r, const struct muc_hist *h, int del_old)
{
	char key[520];
	size_t klen, len = 0;
	xmppd_elem *e;
	xmppd_batch *b;
	char *val;

	if (muc_module.history_size == 0 ||
	    (klen = hist_key(key, sizeof(key), r->jid, h->seq)) == 0)
		return;
	e = xmppd_elem_new("urn:xmppd:muc:1", "h");
	set_num(e, "at", (long)h->at);
	xmppd_elem_append_copy(e, h->msg);
	if ((val = muc_rec_encode(e, REC_VERSION, &len)) == NULL)
		return;
	if ((b = xmppd_batch_new(muc_module.ctx)) == NULL) {
		free(val);
		return;
	}
	if (xmppd_batch_put(b, T_HIST, key, klen, val, len) < 0) {
		free(val);
		xmppd_batch_free(b);
		return;
	}
	free(val);
	if (del_old && h->seq >= (uint64_t)muc_module.history_size &&
	    (klen = hist_key(key, sizeof(key), r->jid,
	    h->seq - (uint64_t)muc_module.history_size)) > 0)
		(void)xmppd_batch_del(b, T_HIST, key, klen);
	(void)xmppd_batch_submit(b, NULL, NULL);
}

void
muc_hist_save(struct muc_room *r, struct muc_hist *h)
{
	h->seq = r->hist_seq++;
	hist_put(r, h, 1);
}

void
muc_hist_rewrite(struct muc_room *r, const struct muc_hist *h)
{
	if (r->cfg.persistent && h->seq != UINT64_MAX)
		hist_put(r, h, 0);
}

/* A stored entry, newest first (a reverse range): into the ring from
 * its start; hist_done puts them in order. */
static int
hist_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct muc_room *r = ud;
	const unsigned char *k = key;
	const char *v = val;
	xmppd_elem *x, *m;
	uint64_t seq = 0;

	if (klen < 8 || r->hist_len >= (size_t)muc_module.history_size)
		return 1;
	for (size_t i = klen - 8; i < klen; i++)
		seq = seq << 8 | k[i];
	if (seq + 1 > r->hist_seq)
		r->hist_seq = seq + 1;
	if (vlen < 2 || v[0] != REC_VERSION || (x = xmppd_elem_parse(v + 1, vlen - 1)) == NULL)
		return 0;
	if ((m = xmppd_elem_first_child(x)) != NULL) {
		struct muc_hist *h = &r->hist[r->hist_len++];

		h->msg = xmppd_elem_copy(m);
		h->at = (time_t)num(x, "at", 0);
		h->chars = 0;
		h->seq = seq;
		if (h->msg == NULL)
			r->hist_len--;
	}
	xmppd_elem_unref(x);
	return 0;
}

/* ---------------------------------------------------------------- */
/* Rooms per user across restarts.                                    */

/* max_rooms_per_user counts the rooms a user made that exist: the
 * persistent ones of the store too, counted once at load, on one worker
 * (a task: the store's asynchronous API runs on workers), one scan per
 * service; creating a room waits for the end (muc_creator_take). */
static unsigned creator_scans;

static int
creator_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	const char *v = val;
	xmppd_elem *x, *c;

	(void)ud;
	(void)key;
	(void)klen;
	if (vlen < 2 || v[0] != REC_VERSION || (x = xmppd_elem_parse(v + 1, vlen - 1)) == NULL)
		return 0;
	if ((c = xmppd_elem_child(x, "urn:xmppd:muc:1", "config")) != NULL &&
	    xmppd_elem_attr(c, "creator") != NULL)
		muc_creator_seed(xmppd_elem_attr(c, "creator"));
	xmppd_elem_unref(x);
	return 0;
}

static void
creator_done(int status, void *ud)
{
	(void)ud;
	if (status != XMPPD_STORE_OK)
		xmppd_log(muc_module.ctx, XMPPD_LOG_ERROR,
		    "cannot count the stored rooms' creators");
	if (--creator_scans == 0)
		muc_creators_ready();
}

static void
count_task(void *ud)
{
	char pfx[512];
	size_t plen;

	(void)ud;
	creator_scans = (unsigned)muc_module.nservices + 1;
	for (size_t i = 0; i < muc_module.nservices; i++) {
		plen = muc_store_service_prefix(pfx, sizeof(pfx), muc_module.services[i]);
		if (plen == 0 || xmppd_store_ascan(muc_module.ctx, T_ROOMS, pfx, plen, creator_row,
		    creator_done, NULL) < 0)
			creator_done(XMPPD_STORE_ERROR, NULL);
	}
	creator_done(XMPPD_STORE_OK, NULL);     /* the task's own share */
}

int
muc_store_count_creators(void)
{
	if (muc_module.max_rooms_per_user == 0 || muc_module.nservices == 0) {
		muc_creators_ready();
		return 0;
	}
	return xmppd_entity_post(muc_module.ctx, muc_module.services[0], count_task, NULL);
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

/* Runs what waited for the room's loading (r is NULL: no room). */
static void
run_queue(struct muc_queued *q, int failed)
{
	struct muc_queued *nx;

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

static void
hist_done(int status, void *ud)
{
	struct muc_room *r = ud;
	struct muc_queued *q = r->queue;

	if (status != XMPPD_STORE_OK)
		xmppd_log(muc_module.ctx, XMPPD_LOG_ERROR, "cannot load the history of %s",
		    r->jid);
	/* Newest first into the ring: reversed into arrival order. */
	for (size_t i = 0; i < r->hist_len / 2; i++) {
		struct muc_hist t = r->hist[i];

		r->hist[i] = r->hist[r->hist_len - 1 - i];
		r->hist[r->hist_len - 1 - i] = t;
	}
	r->hist_start = 0;
	r->queue = r->queue_tail = NULL;
	r->loading = 0;
	run_queue(q, 0);
}

static void
loaded(int status, const void *val, size_t vlen, void *ud)
{
	struct muc_room *r = ud;
	struct muc_queued *q = r->queue;
	char key[512];
	size_t klen;
	int failed = 0;

	if (status == XMPPD_STORE_OK && parse(r, val, vlen) == 0) {
		/* The history next; stanzas keep waiting for it. */
		klen = room_key(key, sizeof(key), r->jid);
		if (muc_module.history_size > 0 && klen > 0 &&
		    xmppd_store_arange(muc_module.ctx, T_HIST, key, klen, NULL, 0, 1,
		    (size_t)muc_module.history_size, hist_row, hist_done, r) == 0)
			return;
		r->queue = r->queue_tail = NULL;
		r->loading = 0;
	} else {
		r->queue = r->queue_tail = NULL;
		if (status != XMPPD_STORE_NOT_FOUND) {
			xmppd_log(muc_module.ctx, XMPPD_LOG_ERROR, "cannot load room %s", r->jid);
			failed = 1;
		}
		/* No room: the queue runs without one (a join makes it). */
		muc_room_drop(r);
	}
	run_queue(q, failed);
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
