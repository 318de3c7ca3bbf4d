/*
 * muc_message.c - messages to a room and its occupants (XEP-0045 7.4
 * groupchat, 7.5 private messages, 7.8 invitations and declines, 8.1
 * subject, 8.6 voice requests). On the room's worker (muc.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"

/* Invitations one message may carry (7.8.2): each is a message out. */
#define MAX_INVITES 10
/* The thread id a 7.9 <continue/> carries on (RFC 6121 5.2.5 sets no
 * bound; ids clients make are 32-64 characters). */
#define MAX_THREAD 256

/* ---------------------------------------------------------------- */
/* Messages (XEP-0045 7.4, 7.5, 7.8, 8.1).                            */

/* A copy of st from the occupant's JID with no 'to', for broadcast. */
static xmppd_elem *
from_occupant(struct muc_room *r, const xmppd_elem *st, const char *nick)
{
	xmppd_elem *m = xmppd_elem_copy(st);
	char *from = muc_occ_jid(r, nick);

	if (m == NULL || from == NULL) {
		xmppd_elem_unref(m);
		free(from);
		return NULL;
	}
	xmppd_elem_set_attr(m, "from", from);
	xmppd_elem_set_attr(m, "to", NULL);
	free(from);
	muc_occ_id_strip(m);                    /* XEP-0421 4 */
	return m;
}

/* XEP-0359 3.1: the room's <stanza-id/> on a message it broadcasts
 * (one id for all its recipients, and the message's id in the room's
 * archive: muc_mam_next_id), after removing any the sender put there in
 * the room's name. The id. */
static uint64_t
stanza_id(struct muc_room *r, xmppd_elem *m)
{
	xmppd_elem *c, *next, *e;
	char id[32];
	uint64_t n;

	for (c = xmppd_elem_first_child(m); c != NULL; c = next) {
		next = xmppd_elem_next_sibling(c);
		if (muc_is(xmppd_elem_ns(c), NS_SID) && muc_is(xmppd_elem_name(c), "stanza-id") &&
		    muc_is(xmppd_elem_attr(c, "by"), r->jid))
			xmppd_elem_remove_child(m, c);
	}
	n = muc_mam_next_id(id);
	e = xmppd_elem_add_child(m, NS_SID, "stanza-id");
	xmppd_elem_set_attr(e, "by", r->jid);
	xmppd_elem_set_attr(e, "id", id);
	return n;
}

static void
groupchat(struct muc_room *r, struct muc_sess *s, xmppd_elem *st)
{
	struct muc_occ *o = s->occ;
	xmppd_elem *subj = xmppd_elem_child(st, NULL, "subject");
	xmppd_elem *body = xmppd_elem_child(st, NULL, "body");
	xmppd_elem *m;
	uint64_t id;

	/* 7.4: a visitor of a moderated room has no voice. */
	if (o->role < MUC_ROLE_PARTICIPANT) {
		muc_error(st, "forbidden", "you have no voice in this room");
		return;
	}
	if (subj != NULL && body == NULL) {
		/* 8.1: who may change the subject. */
		if (!r->cfg.changesubject && o->role != MUC_ROLE_MODERATOR) {
			muc_error(st, "forbidden", "you may not change the subject");
			return;
		}
		if (strlen(xmppd_elem_text(subj)) > (size_t)muc_module.max_subject) {
			muc_error(st, "not-acceptable", "the subject is too long");
			return;
		}
	}
	if ((m = from_occupant(r, st, o->nick)) == NULL) {
		muc_error(st, "internal-server-error", NULL);
		return;
	}
	muc_occ_id_add(o, m);                   /* XEP-0421 4 */
	id = stanza_id(r, m);
	if (subj != NULL && body == NULL) {
		xmppd_elem_unref(r->subject);
		r->subject = xmppd_elem_ref(m);
		if (r->cfg.persistent)
			muc_room_save(r);
	} else if (body != NULL) {
		muc_hist_add(r, m);
		muc_mam_store(r, s, m, id);
	}
	muc_broadcast(r, m);
	if (body != NULL)
		muc_mention_message(r, m);
	xmppd_elem_unref(m);
}

/* 7.5: a private message to an occupant (every session of it). */
static void
private_message(struct muc_room *r, struct muc_sess *s, xmppd_elem *st, const char *nick)
{
	struct muc_occ *o = s->occ, *t;
	int pm = r->cfg.allowpm;
	xmppd_elem *m;

	if (muc_is(xmppd_stanza_type(st), "groupchat")) {
		muc_error(st, "bad-request", "a groupchat goes to the room");
		return;
	}
	if (pm == MUC_PM_NONE || (pm == MUC_PM_PARTICIPANTS && o->role < MUC_ROLE_PARTICIPANT) ||
	    (pm == MUC_PM_MODERATORS && o->role < MUC_ROLE_MODERATOR)) {
		muc_error(st, "forbidden", "private messages are not allowed here");
		return;
	}
	if ((t = muc_occ_find(r, nick)) == NULL) {
		muc_error(st, "item-not-found", "no such occupant");
		return;
	}
	if ((m = from_occupant(r, st, o->nick)) == NULL) {
		muc_error(st, "internal-server-error", NULL);
		return;
	}
	if (xmppd_elem_child(m, NS_MUC_USER, "x") == NULL)
		xmppd_elem_add_child(m, NS_MUC_USER, "x");
	/* XEP-0421 5: the occupant id goes on every message a room sends
	 * from an occupant, private ones too (from_occupant removed any the
	 * client put there). */
	muc_occ_id_add(o, m);
	for (struct muc_sess *ts = t->sess; ts != NULL; ts = ts->next)
		muc_send_copy(m, ts->full);
	xmppd_elem_unref(m);
}

static void
invite_note(struct muc_room *r, const char *invitee, const char *inviter)
{
	size_t i = r->invite_next++ % MUC_INVITES_KEPT;

	free(r->invites[i].invitee);
	free(r->invites[i].inviter);
	r->invites[i].invitee = strdup(invitee);
	r->invites[i].inviter = strdup(inviter);
}

/* 7.8.3: a decline goes to whoever invited the decliner, newest first;
 * without an invitation the room sends nothing (it is no relay). */
static void
decline(struct muc_room *r, xmppd_elem *st, xmppd_elem *e)
{
	xmppd_jid *from = xmppd_jid_parse(xmppd_elem_attr(st, "from"));
	const char *reason;
	xmppd_elem *m, *mx, *de;
	size_t i, k;

	for (k = 0; from != NULL && k < MUC_INVITES_KEPT; k++) {
		i = (r->invite_next + MUC_INVITES_KEPT - 1 - k) % MUC_INVITES_KEPT;
		if (r->invites[i].invitee != NULL && r->invites[i].inviter != NULL &&
		    strcmp(r->invites[i].invitee, xmppd_jid_bare(from)) == 0)
			break;
	}
	if (from == NULL || k == MUC_INVITES_KEPT) {
		xmppd_jid_free(from);
		muc_error(st, "not-acceptable", "no invitation to decline");
		return;
	}
	m = xmppd_elem_new(NULL, "message");
	xmppd_elem_set_attr(m, "from", r->jid);
	xmppd_elem_set_attr(m, "to", r->invites[i].inviter);
	mx = xmppd_elem_add_child(m, NS_MUC_USER, "x");
	de = xmppd_elem_add_child(mx, NS_MUC_USER, "decline");
	xmppd_elem_set_attr(de, "from", xmppd_jid_bare(from));
	if ((reason = xmppd_elem_child_text(e, NS_MUC_USER, "reason")) != NULL && *reason)
		xmppd_elem_add_text(xmppd_elem_add_child(de, NS_MUC_USER, "reason"), reason,
		    strlen(reason));
	xmppd_route(m);
	xmppd_elem_unref(m);
	free(r->invites[i].invitee);
	free(r->invites[i].inviter);
	r->invites[i].invitee = r->invites[i].inviter = NULL;
	xmppd_jid_free(from);
}

/* 7.8.2 mediated invitations, 7.8.3 declines. */
static void
invitation(struct muc_room *r, struct muc_sess *s, xmppd_elem *st, xmppd_elem *x)
{
	xmppd_elem *e;
	int n = 0;

	for (e = xmppd_elem_first_child(x); e != NULL && n < MAX_INVITES;
	    e = xmppd_elem_next_sibling(e)) {
		const char *to = xmppd_elem_attr(e, "to"), *reason;
		int invite = muc_is(xmppd_elem_name(e), "invite");
		xmppd_jid *tj;
		xmppd_elem *m, *mx, *ie, *ce;

		if (!invite && !muc_is(xmppd_elem_name(e), "decline"))
			continue;
		n++;
		if (!invite) {
			decline(r, st, e);
			return;
		}
		if (to == NULL || (tj = xmppd_jid_parse(to)) == NULL) {
			muc_error(st, "jid-malformed", NULL);
			return;
		}
		if (invite) {
			int aff = s != NULL ? muc_aff_of(r, s->occ->bare) : MUC_AFF_NONE;

			/* 7.8.2: in a members-only room only admins invite,
			 * unless occupants may (allowinvites). */
			if (s == NULL || (r->cfg.membersonly && !r->cfg.allowinvites &&
			    aff < MUC_AFF_ADMIN)) {
				xmppd_jid_free(tj);
				muc_error(st, "forbidden", "you may not invite to this room");
				return;
			}
			if (r->cfg.membersonly && muc_aff_of(r, xmppd_jid_bare(tj)) == MUC_AFF_NONE &&
			    muc_aff_set(r, xmppd_jid_bare(tj), MUC_AFF_MEMBER, NULL) == 0 &&
			    r->cfg.persistent)
				muc_room_save(r);
		}
		invite_note(r, xmppd_jid_bare(tj), xmppd_jid_full(s->full));
		m = xmppd_elem_new(NULL, "message");
		xmppd_elem_set_attr(m, "from", r->jid);
		xmppd_elem_set_attr(m, "to", xmppd_jid_full(tj));
		mx = xmppd_elem_add_child(m, NS_MUC_USER, "x");
		ie = xmppd_elem_add_child(mx, NS_MUC_USER, "invite");
		xmppd_elem_set_attr(ie, "from", xmppd_jid_bare(s->full));
		if ((reason = xmppd_elem_child_text(e, NS_MUC_USER, "reason")) != NULL && *reason) {
			xmppd_elem *re = xmppd_elem_add_child(ie, NS_MUC_USER, "reason");

			xmppd_elem_add_text(re, reason, strlen(reason));
		}
		/* 7.9: an invitation that turns a one-to-one chat into a
		 * conference carries <continue/>, with the chat's thread,
		 * on to the invitee (a thread id of any sane length). */
		if ((ce = xmppd_elem_child(e, NS_MUC_USER, "continue")) != NULL) {
			const char *th = xmppd_elem_attr(ce, "thread");
			xmppd_elem *cc = xmppd_elem_add_child(ie, NS_MUC_USER, "continue");

			if (th != NULL && strlen(th) <= MAX_THREAD)
				xmppd_elem_set_attr(cc, "thread", th);
		}
		if (r->cfg.password_protected) {
			xmppd_elem *pe = xmppd_elem_add_child(mx, NS_MUC_USER, "password");

			xmppd_elem_add_text(pe, r->cfg.secret, strlen(r->cfg.secret));
		}
		xmppd_route(m);
		xmppd_elem_unref(m);
		xmppd_jid_free(tj);
	}
}

/* ---------------------------------------------------------------- */
/* Voice requests (XEP-0045 8.6).                                     */

#define NS_MUC_REQUEST NS_MUC "#request"

static const char *
form_value(xmppd_elem *x, const char *var)
{
	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL; f = xmppd_elem_next_sibling(f))
		if (muc_is(xmppd_elem_name(f), "field") && muc_is(xmppd_elem_attr(f, "var"), var)) {
			xmppd_elem *v = xmppd_elem_child(f, NS_XDATA, "value");

			return v != NULL ? xmppd_elem_text(v) : "";
		}
	return NULL;
}

static void
req_field(xmppd_elem *x, const char *var, const char *type, const char *label,
    const char *value)
{
	xmppd_elem *f = xmppd_elem_add_child(x, NS_XDATA, "field");

	xmppd_elem_set_attr(f, "var", var);
	xmppd_elem_set_attr(f, "type", type);
	if (label != NULL)
		xmppd_elem_set_attr(f, "label", label);
	xmppd_elem_add_text(xmppd_elem_add_child(f, NS_XDATA, "value"), value, strlen(value));
}

/* 1 when st was a voice request or a moderator's answer to one. */
static int
voice_request(struct muc_room *r, struct muc_sess *s, xmppd_elem *st)
{
	xmppd_elem *x = xmppd_elem_child(st, NS_XDATA, "x"), *m, *fx;
	const char *allow, *nick;
	struct muc_occ *o;

	if (x == NULL || !muc_is(xmppd_elem_attr(x, "type"), "submit") ||
	    !muc_is(form_value(x, "FORM_TYPE"), NS_MUC_REQUEST))
		return 0;
	allow = form_value(x, "muc#request_allow");
	if (allow != NULL) {
		/* 8.6: a moderator's approval grants voice. */
		if (s->occ->role != MUC_ROLE_MODERATOR) {
			muc_error(st, "forbidden", "only moderators approve voice requests");
			return 1;
		}
		nick = form_value(x, "muc#roomnick");
		if ((muc_is(allow, "true") || muc_is(allow, "1")) && nick != NULL &&
		    (o = muc_occ_find(r, nick)) != NULL && o->role == MUC_ROLE_VISITOR) {
			o->role = MUC_ROLE_PARTICIPANT;
			muc_broadcast_presence(r, o, 0, NULL, 0, NULL, s->occ->nick);
		}
		return 1;
	}
	if (!muc_is(form_value(x, "muc#role"), "participant"))
		return 0;
	/* Only a visitor asks; the request goes to every moderator. */
	if (s->occ->role != MUC_ROLE_VISITOR)
		return 1;
	m = xmppd_elem_new(NULL, "message");
	xmppd_elem_set_attr(m, "from", r->jid);
	fx = xmppd_elem_add_child(m, NS_XDATA, "x");
	xmppd_elem_set_attr(fx, "type", "form");
	xmppd_elem_add_text(xmppd_elem_add_child(fx, NS_XDATA, "title"), "Voice request", 13);
	req_field(fx, "FORM_TYPE", "hidden", NULL, NS_MUC_REQUEST);
	req_field(fx, "muc#role", "list-single", "Requested role", "participant");
	req_field(fx, "muc#jid", "jid-single", "User ID", xmppd_jid_full(s->full));
	req_field(fx, "muc#roomnick", "text-single", "Room nickname", s->occ->nick);
	req_field(fx, "muc#request_allow", "boolean", "Grant voice?", "false");
	for (o = r->occ_head; o != NULL; o = o->next)
		if (o->role == MUC_ROLE_MODERATOR)
			for (struct muc_sess *ms = o->sess; ms != NULL; ms = ms->next)
				muc_send_copy(m, ms->full);
	xmppd_elem_unref(m);
	return 1;
}

void
muc_message(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to)
{
	const char *type = xmppd_stanza_type(st), *nick = xmppd_jid_resource(to);
	struct muc_room *r = muc_room_find(xmppd_jid_bare(to));
	struct muc_sess *s;
	xmppd_elem *x;

	if (muc_is(type, "error"))
		return;
	if (r == NULL || (r->locked && muc_aff_of(r, xmppd_jid_bare(from)) != MUC_AFF_OWNER)) {
		muc_error(st, "item-not-found", "no such room");
		return;
	}
	s = muc_sess_find(r, xmppd_jid_full(from));
	x = xmppd_elem_child(st, NS_MUC_USER, "x");
	if (s != NULL && !muc_rate_take(s)) {
		muc_error(st, muc_module.rate_error, "too many messages");
		return;
	}
	/* 7.8.3: a decline comes from a non-occupant. */
	if (nick == NULL && x != NULL && !muc_is(type, "groupchat") &&
	    (xmppd_elem_child(x, NS_MUC_USER, "decline") != NULL ||
	    (s != NULL && xmppd_elem_child(x, NS_MUC_USER, "invite") != NULL))) {
		if (xmppd_elem_child(x, NS_MUC_USER, "invite") != NULL && s == NULL) {
			muc_error(st, "not-acceptable", "only occupants invite");
			return;
		}
		invitation(r, s, st, x);
		return;
	}
	/* 7.4, 7.5: only occupants send to the room or its occupants. */
	if (s == NULL) {
		muc_error(st, "not-acceptable", "you are not in the room");
		return;
	}
	if (nick != NULL)
		private_message(r, s, st, nick);
	else if (!muc_is(type, "groupchat") && voice_request(r, s, st))
		return;
	else if (muc_is(type, "groupchat"))
		groupchat(r, s, st);
	else
		muc_error(st, "bad-request", "send groupchat messages to the room");
}

