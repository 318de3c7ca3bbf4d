/*
 * muc_presence.c - presence to a room (XEP-0045 7.2 joining, 7.6
 * nickname change, 7.7 availability, 7.14 leaving) and what a joiner
 * gets after its self-presence: the history (7.2.15) and the subject
 * (7.2.16). On the room's worker (muc.h).
 */
#define _GNU_SOURCE             /* timegm, strptime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "muc.h"

/* ---------------------------------------------------------------- */
/* Joining (XEP-0045 7.2).                                            */

static void
send_delayed(struct muc_room *r, const xmppd_elem *msg, time_t at, const xmppd_jid *to)
{
	xmppd_elem *c = xmppd_elem_copy(msg), *d;
	char stamp[32];
	struct tm tm;

	if (c == NULL)
		return;
	/* 7.2.15: history carries XEP-0203 delayed delivery. */
	gmtime_r(&at, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	d = xmppd_elem_add_child(c, NS_DELAY, "delay");
	xmppd_elem_set_attr(d, "from", r->jid);
	xmppd_elem_set_attr(d, "stamp", stamp);
	xmppd_elem_set_attr(c, "to", xmppd_jid_full(to));
	xmppd_route(c);
	xmppd_elem_unref(c);
}

static long
attr_long(const xmppd_elem *e, const char *name, long dflt)
{
	const char *v = e != NULL ? xmppd_elem_attr(e, name) : NULL;
	char *end;
	long n;

	if (v == NULL)
		return dflt;
	n = strtol(v, &end, 10);
	return end == v || *end != '\0' || n < 0 ? dflt : n;
}

static time_t
parse_stamp(const char *s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || (end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
		return 0;
	return timegm(&tm);
}

/* 7.2.15: the history, as the <history/> of the join limits it. */
static void
send_history(struct muc_room *r, xmppd_elem *hist, const xmppd_jid *to)
{
	long maxstanzas = attr_long(hist, "maxstanzas", -1);
	long maxchars = attr_long(hist, "maxchars", -1);
	long seconds = attr_long(hist, "seconds", -1);
	time_t since = hist != NULL ? parse_stamp(xmppd_elem_attr(hist, "since")) : 0;
	time_t now = time(NULL);
	size_t first = r->hist_len, chars = 0, n = 0;

	if (r->hist_len == 0 || maxstanzas == 0 || maxchars == 0)
		return;
	/* From the newest back, while within every limit. */
	while (first > 0) {
		struct muc_hist *h = &r->hist[(r->hist_start + first - 1) %
		    (size_t)muc_module.history_size];

		if (maxstanzas >= 0 && n + 1 > (size_t)maxstanzas)
			break;
		if (maxchars >= 0 && h->chars == 0) {
			/* 7.2.15: maxchars counts the XML; measured when a
			 * joiner first asks, not for every message. */
			size_t len = 0;
			char *text = xmppd_elem_to_string(h->msg, &len);

			free(text);
			h->chars = len > 0 ? len : 1;
		}
		if (maxchars >= 0 && chars + h->chars > (size_t)maxchars)
			break;
		if (seconds >= 0 && now - h->at > seconds)
			break;
		if (since != 0 && h->at < since)
			break;
		chars += h->chars;
		n++;
		first--;
	}
	for (size_t i = first; i < r->hist_len; i++) {
		struct muc_hist *h = &r->hist[(r->hist_start + i) % (size_t)muc_module.history_size];

		send_delayed(r, h->msg, h->at, to);
	}
}

void
muc_hist_add(struct muc_room *r, xmppd_elem *msg)
{
	size_t cap = (size_t)muc_module.history_size;
	struct muc_hist *h;

	if (cap == 0)
		return;
	if (r->hist_len == cap) {
		h = &r->hist[r->hist_start];
		xmppd_elem_unref(h->msg);
		r->hist_start = (r->hist_start + 1) % cap;
		r->hist_len--;
	}
	h = &r->hist[(r->hist_start + r->hist_len) % cap];
	h->msg = xmppd_elem_ref(msg);
	h->at = time(NULL);
	h->chars = 0;             /* not measured yet */
	h->seq = UINT64_MAX;      /* no row (until muc_hist_save) */
	r->hist_len++;
	if (r->cfg.persistent)
		muc_hist_save(r, h);
}

/* 7.2.16: the subject goes last, an empty one when none was set. */
static void
send_subject(struct muc_room *r, const xmppd_jid *to)
{
	xmppd_elem *m;

	if (r->subject != NULL) {
		muc_send_copy(r->subject, to);
		return;
	}
	m = xmppd_elem_new(NULL, "message");
	xmppd_elem_set_attr(m, "from", r->jid);
	xmppd_elem_set_attr(m, "type", "groupchat");
	xmppd_elem_add_child(m, NULL, "subject");
	muc_send_copy(m, to);
	xmppd_elem_unref(m);
}

/* 7.2.3: every other occupant's presence to a new session. */
static void
send_occupants(struct muc_room *r, struct muc_occ *self, const xmppd_jid *to)
{
	int with = muc_sees_jids(r, self);

	for (struct muc_occ *q = r->occ_head; q != NULL; q = q->next) {
		xmppd_elem *p;

		if (q == self)
			continue;
		if ((p = muc_occ_presence(r, q, 0, with, NULL, 0, NULL, NULL, NULL)) != NULL) {
			muc_send_copy(p, to);
			xmppd_elem_unref(p);
		}
	}
}

static void
join(struct muc_room *r, xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to)
{
	const char *bare = xmppd_jid_bare(from), *nick = xmppd_jid_resource(to), *holder;
	xmppd_elem *mx = xmppd_elem_child(st, NS_MUC, "x");
	struct muc_occ *o = NULL;
	struct muc_sess *s;
	int created = 0, aff, self[4], rc;
	size_t nself = 0;

	if (strlen(nick) > (size_t)muc_module.max_nick) {
		muc_error(st, "not-acceptable", "nickname too long");
		return;
	}
	if (r == NULL) {
		/* 10.1.1: a new room, locked until its owner configures it;
		 * its creator is its owner. */
		if (!muc_may_create(from)) {
			muc_error(st, "not-allowed", "you may not create rooms here");
			return;
		}
		if ((rc = muc_creator_take(bare)) == -2) {
			muc_error(st, "resource-constraint", "the service is starting");
			return;
		}
		if (rc < 0) {
			muc_error(st, "policy-violation", "you have made too many rooms");
			return;
		}
		if ((r = muc_room_new(xmppd_jid_bare(to), xmppd_jid_domain(to))) == NULL ||
		    (r->creator = strdup(bare)) == NULL ||
		    muc_aff_set(r, bare, MUC_AFF_OWNER, NULL) < 0) {
			if (r == NULL)
				muc_creator_release(bare);
			else if (r->creator == NULL)
				muc_creator_release(bare);
			if (r != NULL)
				muc_room_gc(r);
			muc_error(st, "internal-server-error", NULL);
			return;
		}
		r->locked = 1;
		created = 1;
	}
	aff = muc_aff_of(r, bare);
	if (!created) {
		/* 10.1.1: a locked room is not there for anyone but its owner. */
		if (r->locked && aff != MUC_AFF_OWNER) {
			muc_error(st, "item-not-found", "the room is locked");
			return;
		}
		/* 7.2.7 */
		if (aff == MUC_AFF_OUTCAST) {
			muc_error(st, "forbidden", "you are banned from this room");
			return;
		}
		o = muc_occ_find(r, nick);
		/* 7.2.9: a nickname another user reserved (7.10). */
		if ((holder = muc_nick_holder(r, nick)) != NULL && strcmp(holder, bare) != 0) {
			muc_error(st, "conflict", "that nickname is reserved");
			return;
		}
		/* 7.2.9: one nickname, one user (who may have several
		 * sessions in it). */
		if (o != NULL && strcmp(o->bare, bare) != 0) {
			muc_error(st, "conflict", "that nickname is in use");
			return;
		}
		if (o == NULL) {
			/* 7.2.6 */
			if (r->cfg.membersonly && aff < MUC_AFF_MEMBER) {
				muc_error(st, "registration-required",
				    "the room is for members only");
				return;
			}
			/* 7.2.5 */
			if (r->cfg.password_protected && aff < MUC_AFF_OWNER &&
			    !muc_is(mx != NULL ? xmppd_elem_child_text(mx, NS_MUC, "password") :
			    NULL, r->cfg.secret)) {
				muc_error(st, "not-authorized", "a password is required");
				return;
			}
			/* 7.2.10: admins and owners get in past the limit. */
			if (aff < MUC_AFF_ADMIN && (long)r->nocc >= (r->cfg.maxusers > 0 ?
			    r->cfg.maxusers : muc_module.max_users)) {
				muc_error(st, "service-unavailable", "the room is full");
				return;
			}
		}
		/* Joins are rate-limited per room (admins and owners get in
		 * anyway, as past maxusers). XEP-0045 7.2's error table has
		 * no rate condition; the message rate's is used (RFC 6120
		 * 8.3.3.18 resource-constraint, type wait, by default), as a
		 * join costs a broadcast to every occupant. */
		if (aff < MUC_AFF_ADMIN && !muc_join_take(r)) {
			muc_error(st, muc_module.rate_error, "too many joins, try again later");
			return;
		}
	}
	if (o == NULL && (o = muc_occ_new(r, nick, bare, muc_default_role(r, aff), aff)) == NULL) {
		muc_room_gc(r);
		muc_error(st, "internal-server-error", NULL);
		return;
	}
	if ((s = muc_sess_add(r, o, from, st)) == NULL) {
		if (o->nsess == 0)
			muc_occ_remove(r, o);
		muc_room_gc(r);
		muc_error(st, "internal-server-error", NULL);
		return;
	}
	send_occupants(r, o, from);
	/* 7.2.2, 7.2.3: 100 (non-anonymous), 170 (logged), 201 (new). */
	if (r->cfg.whois_anyone)
		self[nself++] = 100;
	if (r->cfg.logging)
		self[nself++] = 170;
	if (created)
		self[nself++] = 201;
	muc_broadcast_presence_nick(r, o, 0, NULL, 0, NULL, NULL, NULL, self, nself);
	/* 7.2.15, 7.2.16: the history, then the subject, to every joiner
	 * (the creator of a new room too: clients wait for the subject). */
	send_history(r, mx != NULL ? xmppd_elem_child(mx, NS_MUC, "history") : NULL, from);
	send_subject(r, from);
}

/* 7.14: a session leaves; the occupant goes with its last session. */
static void
leave(struct muc_room *r, struct muc_sess *s, xmppd_elem *st)
{
	struct muc_occ *o = s->occ;

	if (o->nsess > 1) {
		/* Its other sessions stay: only this one hears it left. */
		int code = 110;
		xmppd_elem *p = muc_occ_presence(r, o, 1, 1, &code, 1, NULL, NULL, NULL);

		if (p != NULL) {
			muc_send_copy(p, s->full);
			xmppd_elem_unref(p);
		}
		muc_sess_remove(r, s);
		return;
	}
	xmppd_elem_unref(s->presence);
	s->presence = xmppd_elem_ref(st);
	muc_broadcast_presence_nick(r, o, 1, NULL, 0, NULL, NULL, NULL, NULL, 0);
	muc_occ_remove(r, o);
	muc_room_gc(r);
}

/* 7.6: a new nickname for every session of the occupant. */
static void
change_nick(struct muc_room *r, struct muc_sess *s, xmppd_elem *st, const char *nick)
{
	struct muc_occ *o = s->occ, *other = muc_occ_find(r, nick);
	int code = 303;
	char *nn;

	if (strlen(nick) > (size_t)muc_module.max_nick) {
		muc_error(st, "not-acceptable", "nickname too long");
		return;
	}
	/* 7.6.2; 7.10: nor one another user reserved. */
	if (other != NULL || (muc_nick_holder(r, nick) != NULL &&
	    strcmp(muc_nick_holder(r, nick), o->bare) != 0)) {
		muc_error(st, "conflict", "that nickname is in use");
		return;
	}
	if ((nn = strdup(nick)) == NULL) {
		muc_error(st, "internal-server-error", NULL);
		return;
	}
	muc_broadcast_presence_nick(r, o, 1, &code, 1, NULL, NULL, nick, NULL, 0);
	muc_nick_unlink(r, o);
	free(o->nick);
	o->nick = nn;
	muc_nick_link(r, o);
	xmppd_elem_unref(s->presence);
	s->presence = xmppd_elem_ref(st);
	muc_broadcast_presence(r, o, 0, NULL, 0, NULL, NULL);
}

void
muc_presence(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to)
{
	const char *type = xmppd_stanza_type(st), *nick = xmppd_jid_resource(to);
	struct muc_room *r = muc_room_find(xmppd_jid_bare(to));
	struct muc_sess *s = r != NULL ? muc_sess_find(r, xmppd_jid_full(from)) : NULL;

	/* The server is stopping: every occupant got its 332 (muc_ctl.c),
	 * so the sessions' ends that follow are not broadcast (that would
	 * be every occupant's exit to every other, O(n^2) at the worst
	 * moment), and nobody joins. */
	if (__atomic_load_n(&muc_module.stopping, __ATOMIC_ACQUIRE)) {
		if (s != NULL && (muc_is(type, "unavailable") || muc_is(type, "error"))) {
			if (s->occ->nsess > 1) {
				muc_sess_remove(r, s);
			} else {
				muc_occ_remove(r, s->occ);
				muc_room_gc(r);
			}
		} else if (s == NULL && muc_is(type, "available")) {
			muc_error(st, "service-unavailable", "the service is shutting down");
		}
		return;
	}
	if (muc_is(type, "unavailable") || muc_is(type, "error")) {
		/* A bounce from the occupant's server ends its session too. */
		if (s != NULL)
			leave(r, s, st);
		return;
	}
	if (!muc_is(type, "available"))
		return;
	if (xmppd_jid_resource(from) == NULL) {
		muc_error(st, "bad-request", "a full JID is needed");
		return;
	}
	/* 7.2.1: no nickname. */
	if (nick == NULL || *nick == '\0') {
		muc_error(st, "jid-malformed", "a nickname is required");
		return;
	}
	if (s == NULL) {
		join(r, st, from, to);
		return;
	}
	/* Each goes to every occupant: the message rate bounds them too. */
	if (!muc_rate_take(s)) {
		muc_error(st, muc_module.rate_error, "too many presence changes");
		return;
	}
	if (strcmp(s->occ->nick, nick) != 0) {
		change_nick(r, s, st, nick);
		return;
	}
	/* 7.7: a change of availability, broadcast. */
	xmppd_elem_unref(s->presence);
	s->presence = xmppd_elem_ref(st);
	/* The occupant's presence is its newest session's. */
	if (s->occ->sess != s) {
		struct muc_sess **pp;

		for (pp = &s->occ->sess; *pp != s; pp = &(*pp)->next)
			;
		*pp = s->next;
		s->next = s->occ->sess;
		s->occ->sess = s;
	}
	muc_broadcast_presence(r, s->occ, 0, NULL, 0, NULL, NULL);
}

