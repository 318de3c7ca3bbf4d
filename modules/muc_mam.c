/*
 * muc_mam.c - a room's archive (XEP-0313 6.1.2, MUC archives) and
 * moderated retraction (XEP-0425, with XEP-0424 retraction). On the
 * room's worker (muc.h).
 *
 * The archive is mod_mam's code (mam.h: mam_query.c, mam_purge.c,
 * mam_store.c and mam_text.c are compiled into mod_muc too) over tables
 * of mod_muc's own, keyed by xmppd_store_key(service, room) + id8 as a
 * user's are by (host, node): the query, its paging, its results and the
 * retention purge are the user archive's, and either module works
 * without the other. The rows of a room go when the room does
 * (muc_mam_forget: destroyed, or a temporary room's last occupant left).
 *
 * What is archived: XEP-0313 6.1.2 asks for the groupchat messages the
 * room broadcasts; as Prosody's mod_muc_mam, those with a <body/> (not
 * subject changes, which the room keeps itself, nor private messages),
 * as they were broadcast (from room/nick, the room's <stanza-id/>, the
 * sender's occupant-id), when muc#roomconfig_enablearchiving is on (on by
 * default: Prosody's muc_log_by_default; ejabberd has its per-room 'mam'
 * option, off by default). muc#roomconfig_enablelogging (XEP-0045's
 * public logs) is another thing and does not decide it. The record's
 * 'with' is the sender's occupant JID, so that 'with' filters by it
 * (XEP-0313 6.1.2), and the archived copy carries the sender's real bare
 * JID in <x xmlns='muc#user'><item jid/></x>, removed from the results
 * of whoever may not see real JIDs (XEP-0045 5.1.1, XEP-0313 6.1.2: never
 * to a non-moderator of a semi-anonymous room).
 *
 * The id a message has in the archive is its XEP-0359 stanza-id (ids
 * from mam_id_next: microseconds, strictly increasing in mod_muc), so a
 * client pages from the stanza-id it saw. A message is broadcast without
 * waiting for its row (the room's next stanzas would wait behind it);
 * its batch is submitted first, and a query, which the room's worker
 * handles afterwards, is read after it.
 *
 * Moderation (XEP-0425 0.3, urn:xmpp:message-moderate:1, and 0.2,
 * urn:xmpp:message-moderate:0 in <apply-to xmlns='urn:xmpp:fasten:0'/>,
 * which clients still send): a moderator names a message by its
 * stanza-id; the archived row is replaced by a tombstone (XEP-0424 and
 * XEP-0425 tombstones: the message without its body, with <retracted/>
 * and who moderated it, in both versions' forms), the room's history for
 * joiners gets the tombstone too, then every occupant gets the
 * announcement (both versions' elements in one message) and the
 * moderator the IQ result.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"
#include "mam.h"

#define T_MAM "muc_mam"
#define T_MAM_WITH "muc_mam_with"
#define T_MAM_FT "muc_mam_ft"

#define NS_MODERATE1 "urn:xmpp:message-moderate:1"
#define NS_MODERATE0 "urn:xmpp:message-moderate:0"
#define NS_RETRACT1 "urn:xmpp:message-retract:1"
#define NS_RETRACT0 "urn:xmpp:message-retract:0"
#define NS_FASTEN "urn:xmpp:fasten:0"
/* The longest moderation reason kept, in bytes. */
#define REASON_MAX 1024

static void shape(xmppd_elem *msg, int see_jids);

xmppd_ctx *mam_ctx;
/* XEP-0313 6.1.2: 'with' is an occupant JID; results are routed (to
 * askers of any server). */
const struct mam_archive mam_arch = { T_MAM, T_MAM_WITH, T_MAM_FT, 1, shape, 1 };

int64_t
mam_expiry_of(const char *bare)
{
	(void)bare;
	return xmppd_opt_int(mam_ctx, "archive_expiry");
}

int
muc_mam_init(xmppd_ctx *ctx)
{
	mam_ctx = ctx;
	return mam_purge_start(ctx);
}

uint64_t
muc_mam_next_id(char *buf)
{
	uint64_t id = mam_id_next(mam_now_us());

	mam_id_format(id, buf);
	return id;
}

/* The room's archive prefix: (service, room). 0 if it does not fit. */
static size_t
room_prefix(char *buf, const char *room_jid, char *node, size_t nsize, const char **host_r)
{
	const char *at = strchr(room_jid, '@');

	if (at == NULL || (size_t)(at - room_jid) >= nsize)
		return 0;
	memcpy(node, room_jid, (size_t)(at - room_jid));
	node[at - room_jid] = '\0';
	*host_r = at + 1;
	return mam_user_prefix(buf, at + 1, node);
}

/* Removes every <x xmlns='muc#user'/> of msg. */
static void
strip_muc_user(xmppd_elem *msg)
{
	xmppd_elem *c, *next;

	for (c = xmppd_elem_first_child(msg); c != NULL; c = next) {
		next = xmppd_elem_next_sibling(c);
		if (muc_is(xmppd_elem_ns(c), NS_MUC_USER) && muc_is(xmppd_elem_name(c), "x"))
			xmppd_elem_remove_child(msg, c);
	}
}

/* mam_arch.shape: XEP-0313 6.1.2, the real JID only to those who may
 * see it. */
static void
shape(xmppd_elem *msg, int see_jids)
{
	if (!see_jids)
		strip_muc_user(msg);
}

static void
batch_put_empty(const char *table, const void *key, size_t klen, void *ud)
{
	(void)xmppd_batch_put(ud, table, key, klen, "", 0);
}

static void
batch_del(const char *table, const void *key, size_t klen, void *ud)
{
	(void)xmppd_batch_del(ud, table, key, klen);
}

static void
stored(int status, void *ud)
{
	char *jid = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(mam_ctx, XMPPD_LOG_ERROR, "%s: a message could not be archived (store "
		    "status %d)", jid, status);
	free(jid);
}

/* Puts into b the row of msg (from occupant JID with) and its index
 * rows. 0 or -1. */
static int
put_row(xmppd_batch *b, const char *host, const char *node, const char *prefix, size_t plen,
    uint64_t id, uint64_t ts, const char *room, const char *with, const xmppd_elem *msg)
{
	struct mam_rec rec = { 0 };
	char key[MAM_KEY_MAX];
	unsigned char *val;
	size_t vlen;
	char *text;

	if ((text = xmppd_elem_to_string(msg, &rec.msg_len)) == NULL)
		return -1;
	rec.ts_us = ts;
	rec.dir = MAM_DIR_IN;
	rec.with_bare = room;
	rec.with_full = with;
	rec.msg = text;
	val = mam_rec_encode(&rec, &vlen);
	free(text);
	if (val == NULL)
		return -1;
	memcpy(key, prefix, plen);
	mam_put_id((unsigned char *)key + plen, id);
	(void)xmppd_batch_put(b, T_MAM, key, plen + MAM_ID_LEN, val, vlen);
	mam_index_keys(host, node, id, val, vlen, batch_put_empty, b);
	free(val);
	return 0;
}

void
muc_mam_store(struct muc_room *r, const struct muc_sess *s, const xmppd_elem *m, uint64_t id)
{
	char prefix[MAM_KEY_MAX], node[MAM_KEY_MAX];
	const char *host;
	size_t plen;
	xmppd_elem *copy = NULL, *item;
	xmppd_batch *b = NULL;
	char *jid = NULL;

	if (!r->cfg.archiving)
		return;
	if ((plen = room_prefix(prefix, r->jid, node, sizeof(node), &host)) == 0)
		return;
	if ((copy = xmppd_elem_copy(m)) == NULL || (jid = strdup(r->jid)) == NULL ||
	    (b = xmppd_batch_new(mam_ctx)) == NULL)
		goto fail;
	/* The real JID (a sender's own muc#user x goes: it could lie);
	 * none for what the room itself says (s NULL). */
	strip_muc_user(copy);
	if (s != NULL) {
		item = xmppd_elem_add_child(xmppd_elem_add_child(copy, NS_MUC_USER, "x"),
		    NS_MUC_USER, "item");
		xmppd_elem_set_attr(item, "jid", s->occ->bare);
	}
	if (put_row(b, host, node, prefix, plen, id, id, r->jid, xmppd_elem_attr(m, "from"),
	    copy) < 0)
		goto fail;
	xmppd_elem_unref(copy);
	if (xmppd_batch_submit(b, stored, jid) < 0)
		free(jid);
	return;
fail:
	xmppd_log(mam_ctx, XMPPD_LOG_ERROR, "%s: out of memory archiving a message", r->jid);
	xmppd_elem_unref(copy);
	xmppd_batch_free(b);
	free(jid);
}

void
muc_mam_forget(const char *room_jid)
{
	static const char *const tables[] = { T_MAM, T_MAM_WITH, T_MAM_FT };
	char prefix[MAM_KEY_MAX], node[MAM_KEY_MAX];
	const char *host;
	size_t plen = room_prefix(prefix, room_jid, node, sizeof(node), &host);
	xmppd_batch *b;

	if (plen == 0 || (b = xmppd_batch_new(mam_ctx)) == NULL)
		return;
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
		(void)xmppd_batch_del_prefix(b, tables[i], prefix, plen);
	if (xmppd_batch_submit(b, NULL, NULL) < 0)
		xmppd_log(mam_ctx, XMPPD_LOG_WARNING, "%s: its archive could not be deleted",
		    room_jid);
}

void
muc_mam_features(const struct muc_room *r, xmppd_elem *q)
{
	static const char *const feats[] = { NS_MAM, NS_MAM_EXT, NS_MODERATE1, NS_MODERATE0,
	    NS_RETRACT1, NS_RETRACT0 };

	/* XEP-0313 6.1.2 (the room advertises its archive), XEP-0425 2. */
	if (!r->cfg.archiving)
		return;
	for (size_t i = 0; i < sizeof(feats) / sizeof(feats[0]); i++)
		xmppd_elem_set_attr(xmppd_elem_add_child(q, NS_DISCO_INFO, "feature"), "var",
		    feats[i]);
}

/* ---------------------------------------------------------------- */
/* Queries.                                                           */

static void
archive_iq(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *from,
    const xmppd_jid *to, int set)
{
	struct muc_sess *s = muc_sess_find(r, xmppd_jid_full(from));
	int aff = muc_aff_of(r, xmppd_jid_bare(from)), see;

	/* XEP-0313 6.1.2: who may read is who may join: never the banned,
	 * in a members-only room only members (or occupants, which a member
	 * removed meanwhile still is until kicked), in a password-protected
	 * one those who got in with the password or have an affiliation. */
	if (aff == MUC_AFF_OUTCAST || ((r->cfg.membersonly || r->cfg.password_protected) &&
	    aff < MUC_AFF_MEMBER && s == NULL)) {
		xmppd_iq_error(iq, "forbidden", NULL);
		return;
	}
	/* XEP-0045 5.1.1: real JIDs to all in a non-anonymous room, else to
	 * moderators (admins and owners are moderators whenever present). */
	see = r->cfg.whois_anyone || aff >= MUC_AFF_ADMIN ||
	    (s != NULL && s->occ->role == MUC_ROLE_MODERATOR);
	if (muc_is(xmppd_elem_name(q), "query")) {
		if (set)
			mam_query_set(iq, q, from, to, see);
		else
			mam_form_get(iq);
	} else if (muc_is(xmppd_elem_name(q), "metadata") && !set)
		mam_metadata_get(iq, to);
	else
		xmppd_iq_error(iq, "feature-not-implemented", NULL);
}

/* ---------------------------------------------------------------- */
/* Moderation (XEP-0425).                                             */

struct moderation {
	xmppd_elem *iq;             /* a reference */
	char *room;
	char *by;                   /* the moderator's occupant JID */
	char occ_id[MUC_OCC_ID_LEN];
	char *reason;               /* or NULL */
	uint64_t id;
	uint64_t ann_id;            /* the announcement's own archive id */
	char idt[MAM_ID_TEXT + 1];
	char prefix[MAM_KEY_MAX], node[MAM_KEY_MAX];
	const char *host;           /* into room */
	size_t plen;
	xmppd_elem *tomb;           /* the tombstone, once made */
};

static void
moderation_free(struct moderation *md)
{
	xmppd_elem_unref(md->iq);
	xmppd_elem_unref(md->tomb);
	free(md->room);
	free(md->by);
	free(md->reason);
	free(md);
}

/* The <moderated/> of a version under parent. */
static xmppd_elem *
moderated(struct moderation *md, xmppd_elem *parent, const char *ns)
{
	xmppd_elem *e = xmppd_elem_add_child(parent, ns, "moderated");

	xmppd_elem_set_attr(e, "by", md->by);
	return e;
}

static void
add_reason(struct moderation *md, xmppd_elem *parent, const char *ns)
{
	if (md->reason != NULL)
		xmppd_elem_add_text(xmppd_elem_add_child(parent, ns, "reason"), md->reason,
		    strlen(md->reason));
}

static void
occ_id(struct moderation *md, xmppd_elem *parent)
{
	if (md->occ_id[0] != '\0')
		xmppd_elem_set_attr(xmppd_elem_add_child(parent, NS_OCCUPANT_ID, "occupant-id"),
		    "id", md->occ_id);
}

/*
 * The tombstone of orig (XEP-0424 "Tombstones", XEP-0425 "Tombstones" of
 * 0.3 and of 0.2): the message with its envelope, stanza-id and
 * occupant-id, without its content, and
 *   <retracted xmlns=retract:1 stamp><moderated xmlns=moderate:1 by>
 *     <occupant-id/></moderated><reason/></retracted>
 *   <moderated xmlns=moderate:0 by stamp><retracted xmlns=retract:0
 *     stamp/><reason/></moderated>
 */
static xmppd_elem *
tombstone(struct moderation *md, const xmppd_elem *orig)
{
	xmppd_elem *t = xmppd_elem_copy(orig), *c, *next, *e, *m;
	char stamp[40];

	if (t == NULL)
		return NULL;
	for (c = xmppd_elem_first_child(t); c != NULL; c = next) {
		const char *ns = xmppd_elem_ns(c);

		next = xmppd_elem_next_sibling(c);
		if (!muc_is(ns, NS_SID) && !muc_is(ns, NS_OCCUPANT_ID) && !muc_is(ns, NS_MUC_USER))
			xmppd_elem_remove_child(t, c);
	}
	mam_date_format(mam_now_us(), stamp, sizeof(stamp));
	e = xmppd_elem_add_child(t, NS_RETRACT1, "retracted");
	xmppd_elem_set_attr(e, "stamp", stamp);
	occ_id(md, moderated(md, e, NS_MODERATE1));
	add_reason(md, e, NS_RETRACT1);
	m = moderated(md, t, NS_MODERATE0);
	xmppd_elem_set_attr(m, "stamp", stamp);
	xmppd_elem_set_attr(xmppd_elem_add_child(m, NS_RETRACT0, "retracted"), "stamp", stamp);
	add_reason(md, m, NS_MODERATE0);
	return t;
}

/* The announcement to every occupant (XEP-0425 0.3 and 0.2 both). */
static xmppd_elem *
announcement(struct moderation *md)
{
	xmppd_elem *a = xmppd_elem_new(NULL, "message"), *e, *m;
	char id[MAM_ID_TEXT + 1];

	md->ann_id = muc_mam_next_id(id);
	xmppd_elem_set_attr(a, "type", "groupchat");
	xmppd_elem_set_attr(a, "from", md->room);
	xmppd_elem_set_attr(a, "id", id);
	/* Archived as a message of its own (moderation_stored), so that a
	 * client that had the original and pages on from its last id learns
	 * of the retraction (XEP-0424 5: retractions are archived). */
	e = xmppd_elem_add_child(a, NS_SID, "stanza-id");
	xmppd_elem_set_attr(e, "id", id);
	xmppd_elem_set_attr(e, "by", md->room);
	e = xmppd_elem_add_child(a, NS_RETRACT1, "retract");
	xmppd_elem_set_attr(e, "id", md->idt);
	occ_id(md, moderated(md, e, NS_MODERATE1));
	add_reason(md, e, NS_RETRACT1);
	e = xmppd_elem_add_child(a, NS_FASTEN, "apply-to");
	xmppd_elem_set_attr(e, "id", md->idt);
	m = moderated(md, e, NS_MODERATE0);
	(void)xmppd_elem_add_child(m, NS_RETRACT0, "retract");
	add_reason(md, m, NS_MODERATE0);
	/* XEP-0334: clients keep it (a late client gets the tombstone). */
	(void)xmppd_elem_add_child(a, NS_HINTS, "store");
	return a;
}

/* The history for joiners: the tombstone in the message's place. */
static void
hist_replace(struct muc_room *r, struct moderation *md)
{
	for (size_t i = 0; i < r->hist_len; i++) {
		struct muc_hist *h = &r->hist[(r->hist_start + i) % (size_t)muc_module.history_size];
		xmppd_elem *sid;

		for (sid = xmppd_elem_first_child(h->msg); sid != NULL;
		    sid = xmppd_elem_next_sibling(sid))
			if (muc_is(xmppd_elem_ns(sid), NS_SID) && muc_is(xmppd_elem_name(sid),
			    "stanza-id") && muc_is(xmppd_elem_attr(sid, "by"), r->jid) &&
			    muc_is(xmppd_elem_attr(sid, "id"), md->idt))
				break;
		if (sid != NULL) {
			xmppd_elem *t = xmppd_elem_copy(md->tomb);

			if (t == NULL)
				return;
			strip_muc_user(t);
			xmppd_elem_unref(h->msg);
			h->msg = t;
			/* A persistent room's history is in the store too: the
			 * tombstone replaces the message there, or a restart
			 * would bring the retracted text back. */
			muc_hist_rewrite(r, h);
			return;
		}
	}
}

static void
moderation_stored(int status, void *ud)
{
	struct moderation *md = ud;
	struct muc_room *r;
	xmppd_elem *a;

	if (status != XMPPD_STORE_OK) {
		xmppd_iq_error(md->iq, "internal-server-error", NULL);
		moderation_free(md);
		return;
	}
	/* The room may have gone meanwhile: the archive is done even so. */
	if ((r = muc_room_find(md->room)) != NULL && !r->loading) {
		hist_replace(r, md);
		if ((a = announcement(md)) != NULL) {
			muc_mam_store(r, NULL, a, md->ann_id);
			muc_broadcast(r, a);
			xmppd_elem_unref(a);
		}
	}
	xmppd_iq_reply(md->iq, NULL);
	moderation_free(md);
}

static void
moderation_got(int status, const void *val, size_t vlen, void *ud)
{
	struct moderation *md = ud;
	struct mam_rec rec;
	xmppd_elem *orig = NULL;
	xmppd_batch *b = NULL;
	char key[MAM_KEY_MAX];

	/* XEP-0425 (error cases): no such message, item-not-found. */
	if (status == XMPPD_STORE_NOT_FOUND) {
		xmppd_iq_error(md->iq, "item-not-found", NULL);
		goto out;
	}
	if (status != XMPPD_STORE_OK || mam_rec_decode(val, vlen, &rec) < 0 ||
	    (orig = xmppd_elem_parse(rec.msg, rec.msg_len)) == NULL) {
		xmppd_iq_error(md->iq, "internal-server-error", NULL);
		goto out;
	}
	/* The room went while the row was read (its last occupant left, or
	 * it was destroyed): its archive was deleted, and a tombstone put
	 * now would come back in a later room of that name. */
	if (muc_room_find(md->room) == NULL) {
		xmppd_iq_error(md->iq, "item-not-found", "the room is gone");
		goto out;
	}
	if ((md->tomb = tombstone(md, orig)) == NULL || (b = xmppd_batch_new(mam_ctx)) == NULL) {
		xmppd_iq_error(md->iq, "resource-constraint", NULL);
		goto out;
	}
	/* The old index rows (its words) go; the row is replaced. */
	mam_index_keys(md->host, md->node, md->id, val, vlen, batch_del, b);
	memcpy(key, md->prefix, md->plen);
	mam_put_id((unsigned char *)key + md->plen, md->id);
	(void)xmppd_batch_del(b, T_MAM, key, md->plen + MAM_ID_LEN);
	if (put_row(b, md->host, md->node, md->prefix, md->plen, md->id, rec.ts_us, md->room,
	    rec.with_full, md->tomb) < 0) {
		xmppd_batch_free(b);
		xmppd_iq_error(md->iq, "resource-constraint", NULL);
		goto out;
	}
	xmppd_elem_unref(orig);
	if (xmppd_batch_submit(b, moderation_stored, md) < 0) {
		xmppd_iq_error(md->iq, "internal-server-error", NULL);
		moderation_free(md);
	}
	return;
out:
	xmppd_elem_unref(orig);
	moderation_free(md);
}

/*
 * XEP-0425 0.3: <moderate xmlns=moderate:1 id><retract xmlns=retract:1/>
 * <reason/></moderate>; 0.2: <apply-to xmlns=fasten:0 id><moderate
 * xmlns=moderate:0><retract xmlns=retract:0/><reason/></moderate>
 * </apply-to>.
 */
static void
moderate_iq(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *from, int set)
{
	struct muc_sess *s = muc_sess_find(r, xmppd_jid_full(from));
	xmppd_elem *mod = q, *retract;
	const char *id = xmppd_elem_attr(q, "id"), *rns = NS_RETRACT1, *mns = NS_MODERATE1;
	const char *reason;
	struct moderation *md;
	char key[MAM_KEY_MAX];

	if (muc_is(xmppd_elem_ns(q), NS_FASTEN)) {
		mod = xmppd_elem_child(q, NS_MODERATE0, "moderate");
		rns = NS_RETRACT0;
		mns = NS_MODERATE0;
	}
	if (!set || mod == NULL || id == NULL) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return;
	}
	/* XEP-0425: only a moderator, else forbidden. */
	if (s == NULL || s->occ->role != MUC_ROLE_MODERATOR) {
		xmppd_iq_error(iq, "forbidden", "only a moderator moderates");
		return;
	}
	/* Retraction is the one action defined. */
	if ((retract = xmppd_elem_child(mod, rns, "retract")) == NULL) {
		xmppd_iq_error(iq, "feature-not-implemented", "only retraction");
		return;
	}
	reason = xmppd_elem_child_text(mod, mns, "reason");
	if (reason != NULL && strlen(reason) > REASON_MAX) {
		xmppd_iq_error(iq, "not-acceptable", "the reason is too long");
		return;
	}
	if ((md = calloc(1, sizeof(*md))) == NULL) {
		xmppd_iq_error(iq, "resource-constraint", NULL);
		return;
	}
	md->iq = xmppd_elem_ref(iq);
	if ((md->room = strdup(r->jid)) == NULL || (md->by = muc_occ_jid(r, s->occ->nick)) == NULL ||
	    (reason != NULL && *reason != '\0' && (md->reason = strdup(reason)) == NULL) ||
	    (md->plen = room_prefix(md->prefix, md->room, md->node, sizeof(md->node),
	    &md->host)) == 0) {
		xmppd_iq_error(iq, "resource-constraint", NULL);
		moderation_free(md);
		return;
	}
	memcpy(md->occ_id, s->occ->occ_id, sizeof(md->occ_id));
	/* An id the room never gave (or not archived): item-not-found. */
	if (!r->cfg.archiving || mam_id_parse(id, &md->id) < 0) {
		xmppd_iq_error(iq, "item-not-found", NULL);
		moderation_free(md);
		return;
	}
	mam_id_format(md->id, md->idt);
	memcpy(key, md->prefix, md->plen);
	mam_put_id((unsigned char *)key + md->plen, md->id);
	if (xmppd_store_aget(mam_ctx, T_MAM, key, md->plen + MAM_ID_LEN, moderation_got, md) < 0) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		moderation_free(md);
	}
}

int
muc_mam_iq(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *from,
    const xmppd_jid *to, int set)
{
	const char *ns = q != NULL ? xmppd_elem_ns(q) : NULL;

	if (muc_is(ns, NS_MAM)) {
		/* Not advertised: as any IQ the room does not serve. */
		if (!r->cfg.archiving)
			xmppd_iq_error(iq, "service-unavailable", NULL);
		else
			archive_iq(r, iq, q, from, to, set);
		return 1;
	}
	if ((muc_is(ns, NS_MODERATE1) && muc_is(xmppd_elem_name(q), "moderate")) ||
	    (muc_is(ns, NS_FASTEN) && muc_is(xmppd_elem_name(q), "apply-to"))) {
		moderate_iq(r, iq, q, from, set);
		return 1;
	}
	return 0;
}
