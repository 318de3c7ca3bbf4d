/*
 * mod_roster_presence.c - the presence half of mod_roster (see
 * mod_roster.c for the storage): subscriptions (RFC 6121 3 and Appendix A,
 * pre-approval 3.4), probes (4.3), the broadcast of a user's presence to the
 * contacts (4.2, 4.4, 4.5) and directed presence (4.6).
 *
 * Subscription stanzas follow RFC 6121 Appendix A in both directions. The
 * core stamps the bare JID on what a client sends and runs
 * roster_out_subscription: the user's roster is updated and the module
 * routes its own copy, to the contact's bare JID (or nothing, where A.2
 * says not to route). Inbound subscription presence and probes to a local
 * user come to roster_in_subscription: a stanza to deliver is handed back
 * to the core (CONTINUE), which gives it to the available resources with
 * non-negative priority (RFC 6121 3.1.3, 8.5.2.1.2).
 *
 * Choices where the RFC leaves room:
 *  - A pending request (Pending In) is kept in mod_roster_pending, not as
 *    a roster item, and delivered again at each initial presence with
 *    non-negative priority until it is answered.
 *  - An inbound unsubscribe from an entity with no subscription to the
 *    user is answered with unsubscribed (as ejabberd does), so that a
 *    contact whose server is out of step learns the real state; an
 *    unsubscribe that ends a subscription is not answered (a late answer
 *    would cancel a new request the contact may have sent meanwhile).
 *  - A probe from an entity without a subscription is answered with
 *    unsubscribed (4.3.2), never with presence; with no resource
 *    available, a subscribed prober gets the last unavailable presence,
 *    stamped with XEP-0203 delay.
 *  - Probes for a new session are sent from a zero-delay timer: the core
 *    records the session's availability only after presence_out, and the
 *    answers of local contacts arrive synchronously, so the new session
 *    would otherwise miss them.
 *  - Subscription presence to oneself is dropped.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmppd.h>

#include "mod_roster.h"

#define NS_DELAY "urn:xmpp:delay"
#define DIRECTED_MAX 64                 /* directed presence kept per session */

/* What a subscription stanza makes the module do once it is stored. */
enum {
	A_PASS = 1,             /* out: route it; in: deliver it */
	A_PUSH = 2,
	A_REPLY_SUBSCRIBED = 4,
	A_REPLY_UNSUBSCRIBED = 8,
	A_SEND_PRESENCE = 16,   /* the user's presence to the contact */
	A_SEND_UNAVAILABLE = 32,
	A_FULL = 64,
	A_ERROR = 128,
};

enum sub_type { S_SUBSCRIBE, S_SUBSCRIBED, S_UNSUBSCRIBE, S_UNSUBSCRIBED };

/* A session's slot: did it read the roster, and whom did it send directed
 * presence (RFC 6121 4.6). Touched only on the session's worker. */
struct sess {
	int interested;
	size_t ndirected;
	char *directed[DIRECTED_MAX];
};

/* ---------------------------------------------------------------- */
/* Helpers.                                                           */

static int
count_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	(*(size_t *)ud)++;
	return 0;
}

static int
sub_type(const char *type)
{
	static const char *const names[] = { "subscribe", "subscribed", "unsubscribe",
		"unsubscribed" };

	for (int i = 0; type != NULL && i < 4; i++)
		if (strcmp(type, names[i]) == 0)
			return i;
	return -1;
}

/* ---------------------------------------------------------------- */
/* Presence the module sends.                                         */

void
roster_send(const xmppd_jid *user, const char *to, const char *type)
{
	xmppd_elem *p = xmppd_elem_new(NULL, "presence");

	xmppd_elem_set_attr(p, "type", type);
	xmppd_elem_set_attr(p, "from", xmppd_jid_bare(user));
	xmppd_elem_set_attr(p, "to", to);
	xmppd_route(p);
	xmppd_elem_unref(p);
}

/* A copy of p to ud ('to' changed). */
void
roster_forward(const xmppd_elem *p, void *ud)
{
	xmppd_elem *c = xmppd_elem_copy(p);

	xmppd_elem_set_attr(c, "to", ud);
	xmppd_route(c);
	xmppd_elem_unref(c);
}

/* Unavailable from the resource p is the presence of, to ud. */
void
roster_unavailable(const xmppd_elem *p, void *ud)
{
	xmppd_elem *u = xmppd_elem_new(NULL, "presence");

	xmppd_elem_set_attr(u, "type", "unavailable");
	xmppd_elem_set_attr(u, "from", xmppd_elem_attr(p, "from"));
	xmppd_elem_set_attr(u, "to", ud);
	xmppd_route(u);
	xmppd_elem_unref(u);
}

static int
contacts_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct contacts *c = ud;
	const unsigned char *v = val;

	if (klen <= c->plen + 1 || (c->want != 0 && (vlen < 2 || v[0] != REC_VERSION ||
	    (v[1] & F_GONE) || !(v[1] & c->want))))
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		char **n = realloc(c->v, cap * sizeof(*n));

		if (n == NULL)
			return -1;
		c->v = n;
		c->cap = cap;
	}
	if ((c->v[c->n] = strdup((const char *)key + c->plen)) == NULL)
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
}

/* The contacts whose item has one of the flags in want; want 0: every
 * contact with a record in table. */
void
roster_contacts(const char *table, const xmppd_jid *user, unsigned want, struct contacts *c)
{
	char p[KEY_MAX];
	xmppd_txn *t;

	memset(c, 0, sizeof(*c));
	c->want = want;
	if ((c->plen = roster_key(p, user, NULL)) == 0 || (t = xmppd_store_begin(0)) == NULL)
		return;
	(void)xmppd_store_scan(t, table, p, c->plen, contacts_cb, c);
	xmppd_store_abort(t);
}

/* ---------------------------------------------------------------- */
/* Subscriptions (RFC 6121 3, Appendix A).                            */

struct sub {
	const xmppd_jid *user;  /* bare */
	const char *contact;    /* bare */
	struct item it;         /* the item after the change, for the push */
	uint32_t epoch;
	unsigned act;
};

/* The state changes of Appendix A (A.2 outbound, A.3 inbound) and of
 * pre-approval (3.4). f is the item's flags, pin whether a request from
 * the contact is pending. Sets *nf, *pin_r (-1 drop, 0 keep, 1 store) and
 * returns the actions. */
static unsigned
transition(int out, enum sub_type ty, unsigned f, int pin, unsigned *nf, int *pin_r)
{
	*nf = f;
	*pin_r = 0;
	if (out) {
		switch (ty) {
		case S_SUBSCRIBE:       /* A.2.1: always routed */
			if (!(f & (F_TO | F_ASK)))
				*nf |= F_ASK;
			return A_PASS;
		case S_UNSUBSCRIBE:     /* A.2.2: always routed */
			*nf &= ~(F_TO | F_ASK);
			return A_PASS;
		case S_SUBSCRIBED:      /* A.2.3 */
			if (f & F_FROM)
				return 0;
			if (!pin) {
				*nf |= F_APPROVED;      /* 3.4.1: pre-approval */
				return 0;
			}
			*nf = (f | F_FROM) & ~F_APPROVED;
			*pin_r = -1;
			/* 3.1.5: then the user's presence to the contact. */
			return A_PASS | A_SEND_PRESENCE;
		case S_UNSUBSCRIBED:    /* A.2.4; 3.2.2 */
			*nf &= ~F_APPROVED;     /* 3.4: also cancels a pre-approval */
			if (!(f & F_FROM) && !pin)
				return 0;
			*nf &= ~F_FROM;
			*pin_r = -1;
			return A_PASS | ((f & F_FROM) ? A_SEND_UNAVAILABLE : 0);
		}
		return 0;
	}
	switch (ty) {
	case S_SUBSCRIBE:               /* A.3.1, 3.1.3 */
		if (f & F_FROM)
			return A_REPLY_SUBSCRIBED;
		if (f & F_APPROVED) {   /* 3.4.2 */
			*nf = (f | F_FROM) & ~F_APPROVED;
			*pin_r = -1;
			return A_REPLY_SUBSCRIBED | A_SEND_PRESENCE;
		}
		if (pin)
			return 0;
		*pin_r = 1;
		return A_PASS;
	case S_UNSUBSCRIBE:             /* A.3.2, 3.3.3 */
		if (!(f & F_FROM) && !pin)
			return A_REPLY_UNSUBSCRIBED;
		*nf &= ~F_FROM;
		*pin_r = -1;
		return A_PASS | ((f & F_FROM) ? A_SEND_UNAVAILABLE : 0);
	case S_SUBSCRIBED:              /* A.3.3, 3.1.6 */
		if (!(f & F_ASK))
			return 0;
		*nf = (f | F_TO) & ~F_ASK;
		return A_PASS;
	case S_UNSUBSCRIBED:            /* A.3.4, 3.2.3 */
		if (!(f & (F_TO | F_ASK)))
			return 0;
		*nf &= ~(F_TO | F_ASK);
		return A_PASS;
	}
	return 0;
}

/* Applies a subscription stanza st to the user's roster, in one write
 * transaction committed before anything is routed. */
static void
sub_apply(struct roster *r, struct sub *s, int out, enum sub_type ty, const xmppd_elem *st)
{
	char k[KEY_MAX], p[KEY_MAX];
	size_t kl = roster_key(k, s->user, s->contact), npending = 0;
	struct meta m;
	xmppd_txn *t = xmppd_store_begin(1);
	int rc, pin, live, pin_to;
	unsigned f, nf;

	memset(&s->it, 0, sizeof(s->it));
	if (t == NULL || kl == 0 || roster_meta_get(t, s->user, &m) < 0 ||
	    (rc = roster_item_get(t, s->user, s->contact, &s->it)) < 0 ||
	    (pin = roster_pending_get(t, s->user, s->contact)) < 0)
		goto err;
	s->epoch = m.epoch;
	pin = pin == 0;
	live = rc == 0 && !(s->it.flags & F_GONE);
	if (!live)
		roster_item_free(&s->it);
	f = live ? s->it.flags : 0;
	s->act = transition(out, ty, f, pin, &nf, &pin_to);
	if (nf != f) {
		if (!live && m.nitems >= (uint64_t)r->max_items) {
			s->act = A_FULL;
			xmppd_store_abort(t);
			return;
		}
		s->it.flags = nf;
		if (roster_item_store(r, t, s->user, s->contact, &m, &s->it,
		    rc != 0 ? 0 : live ? 1 : 2) < 0)
			goto err;
		s->act |= A_PUSH;
	}
	if (pin_to < 0 && pin && roster_pending_del(t, s->user, s->contact) < 0)
		goto err;
	/* A stranger's requests are kept up to max_items; past that they
	 * are still delivered to whoever is online, not stored. */
	if (pin_to > 0 && (xmppd_store_scan(t, T_PENDING, p, roster_key(p, s->user, NULL),
	    count_cb, &npending) < 0 || (npending < (size_t)r->max_items &&
	    roster_stanza_put(t, T_PENDING, k, kl, st) < 0)))
		goto err;
	if (xmppd_store_commit(t) < 0) {
		t = NULL;
		goto err;
	}
	return;
err:
	xmppd_store_abort(t);
	roster_item_free(&s->it);
	xmppd_log(r->ctx, XMPPD_LOG_ERROR, "%s: cannot update the roster item %s",
	    xmppd_jid_bare(s->user), s->contact);
	s->act = A_ERROR;
}

/* What a client sends (the core has set 'from' to its bare JID). */
static enum xmppd_result
on_out_subscription(void *args, void *ud)
{
	struct roster *r = ud;
	struct xmppd_packet_args *pa = args;
	int ty = sub_type(xmppd_elem_attr(pa->stanza, "type"));
	struct sub s = { pa->from, NULL, { 0 }, 0, 0 };
	xmppd_jid *contact;
	char k[KEY_MAX];

	if (ty < 0 || pa->from == NULL || pa->to == NULL || xmppd_jid_node(pa->from) == NULL ||
	    (contact = roster_bare(pa->to)) == NULL)
		return XMPPD_CONTINUE;
	s.contact = xmppd_jid_bare(contact);
	if (strcmp(s.contact, xmppd_jid_bare(pa->from)) == 0) {
		/* Subscribing to oneself means nothing. */
		xmppd_jid_free(contact);
		return XMPPD_STOP;
	}
	if (roster_key(k, s.user, s.contact) == 0) {
		xmppd_bounce(pa->stanza, "not-acceptable", "JID too long to store");
		xmppd_jid_free(contact);
		return XMPPD_STOP;
	}
	sub_apply(r, &s, 1, (enum sub_type)ty, pa->stanza);
	if (s.act & A_FULL)
		xmppd_bounce(pa->stanza, "resource-constraint", "the roster is full");
	if (s.act & A_ERROR)
		xmppd_bounce(pa->stanza, "internal-server-error", NULL);
	if (s.act & A_PUSH)
		roster_push(s.user, s.contact, &s.it, s.epoch);
	if (s.act & A_SEND_UNAVAILABLE)
		(void)xmppd_user_presences(s.user, roster_unavailable, (void *)s.contact);
	if (s.act & A_PASS)
		roster_forward(pa->stanza, (void *)s.contact);
	if (s.act & A_SEND_PRESENCE)
		(void)xmppd_user_presences(s.user, roster_forward, (void *)s.contact);
	roster_item_free(&s.it);
	xmppd_jid_free(contact);
	return XMPPD_STOP;
}

/* RFC 6121 4.3.2: a probe from contact (the prober's address is to). */
static void
answer_probe(const xmppd_jid *user, const char *contact, const char *to)
{
	char k[KEY_MAX];
	size_t kl, vl;
	const void *v;
	struct item it;
	xmppd_elem *last = NULL;
	xmppd_txn *t = xmppd_store_begin(0);
	int subscribed;

	if (t == NULL)
		return;
	subscribed = roster_item_get(t, user, contact, &it) == 0 &&
	    (it.flags & (F_FROM | F_GONE)) == F_FROM;
	roster_item_free(&it);
	if (subscribed && (kl = roster_key(k, user, NULL)) > 0 &&
	    xmppd_store_get(t, T_LAST, k, kl, &v, &vl) == 0)
		last = roster_stanza_parse(v, vl);
	xmppd_store_abort(t);
	if (!subscribed) {
		roster_send(user, contact, "unsubscribed");
	} else if (xmppd_user_presences(user, roster_forward, (void *)to) == 0) {
		/* No resource available: the last unavailable presence. */
		if (last != NULL)
			roster_forward(last, (void *)to);
		else
			roster_send(user, to, "unavailable");
	}
	xmppd_elem_unref(last);
}

/* Subscription presence and probes to a local user (the core's
 * roster_in_subscription). CONTINUE hands a stanza to deliver back to the
 * core (available resources with non-negative priority). */
static enum xmppd_result
on_in_subscription(void *args, void *ud)
{
	struct roster *r = ud;
	struct xmppd_packet_args *pa = args;
	const char *type = xmppd_elem_attr(pa->stanza, "type");
	int ty = sub_type(type);
	struct sub s = { NULL, NULL, { 0 }, 0, 0 };
	xmppd_jid *user, *contact;
	enum xmppd_result res = XMPPD_STOP;
	char k[KEY_MAX];

	if (pa->to == NULL || xmppd_jid_node(pa->to) == NULL || type == NULL ||
	    (ty < 0 && strcmp(type, "probe") != 0))
		return XMPPD_CONTINUE;
	if (pa->from == NULL || xmppd_jid_domain(pa->from) == NULL)
		return XMPPD_STOP;
	if ((user = roster_bare(pa->to)) == NULL)
		return XMPPD_CONTINUE;
	if ((contact = roster_bare(pa->from)) == NULL) {
		xmppd_jid_free(user);
		return XMPPD_STOP;
	}
	s.user = user;
	s.contact = xmppd_jid_bare(contact);
	if (strcmp(s.contact, xmppd_jid_bare(user)) == 0) {
		/* The user's own: nothing to do with a roster. */
	} else if (ty >= 0 && roster_key(k, user, s.contact) == 0) {
		/* A JID too long to keep a state for: delivered as it is. */
		res = XMPPD_CONTINUE;
	} else if (ty < 0) {
		answer_probe(user, s.contact, xmppd_jid_full(pa->from));
	} else {
		sub_apply(r, &s, 0, (enum sub_type)ty, pa->stanza);
		if (s.act & A_PUSH)
			roster_push(user, s.contact, &s.it, s.epoch);
		if (s.act & A_REPLY_SUBSCRIBED)
			roster_send(user, s.contact, "subscribed");
		if (s.act & A_REPLY_UNSUBSCRIBED)
			roster_send(user, s.contact, "unsubscribed");
		if (s.act & A_SEND_PRESENCE)
			(void)xmppd_user_presences(user, roster_forward, (void *)s.contact);
		if (s.act & A_SEND_UNAVAILABLE)
			(void)xmppd_user_presences(user, roster_unavailable, (void *)s.contact);
		if (s.act & (A_PASS | A_ERROR))
			res = XMPPD_CONTINUE;
		roster_item_free(&s.it);
	}
	xmppd_jid_free(contact);
	xmppd_jid_free(user);
	return res;
}

/* ---------------------------------------------------------------- */
/* Presence (RFC 6121 4).                                             */

/* RFC 6121 4.2.2, 4.4.2, 4.5.2: p to every contact with a subscription to
 * the user's presence. */
static void
broadcast(const xmppd_jid *user, const xmppd_elem *p)
{
	struct contacts c;

	roster_contacts(T_ROSTER, user, F_FROM, &c);
	for (size_t i = 0; i < c.n; i++)
		roster_forward(p, c.v[i]);
	roster_contacts_free(&c);
}

static void
sess_free(void *data)
{
	struct sess *ss = data;

	for (size_t i = 0; i < ss->ndirected; i++)
		free(ss->directed[i]);
	free(ss);
}

static struct sess *
sess_of(struct roster *r, xmppd_session *s, int create)
{
	struct sess *ss = xmppd_session_get(s, r->slot);

	if (ss == NULL && create && (ss = calloc(1, sizeof(*ss))) != NULL)
		xmppd_session_set(s, r->slot, ss, sess_free);
	return ss;
}

/* 4.6.3: unavailable (p, re-addressed) to whoever got directed presence. */
static void
directed_flush(struct sess *ss, const xmppd_elem *p)
{
	for (size_t i = 0; ss != NULL && i < ss->ndirected; i++) {
		roster_forward(p, ss->directed[i]);
		free(ss->directed[i]);
	}
	if (ss != NULL)
		ss->ndirected = 0;
}

/* 4.6.2: directed presence to an entity without a subscription is noted,
 * so that it learns when the session goes away. */
static void
directed_note(struct roster *r, xmppd_session *s, const xmppd_jid *user, const xmppd_jid *to,
    const char *type)
{
	struct sess *ss = sess_of(r, s, type == NULL);
	const char *full = xmppd_jid_full(to);
	xmppd_jid *tb;
	struct item it;
	xmppd_txn *t;
	size_t i;
	int from = 0;

	if (ss == NULL)
		return;
	for (i = 0; i < ss->ndirected && strcmp(ss->directed[i], full) != 0; i++)
		;
	if (type != NULL) {             /* unavailable: forget it */
		if (i < ss->ndirected) {
			free(ss->directed[i]);
			ss->directed[i] = ss->directed[--ss->ndirected];
		}
		return;
	}
	if (i < ss->ndirected || ss->ndirected == DIRECTED_MAX || (tb = roster_bare(to)) == NULL)
		return;
	if ((t = xmppd_store_begin(0)) != NULL) {
		from = roster_item_get(t, user, xmppd_jid_bare(tb), &it) == 0 &&
		    (it.flags & (F_FROM | F_GONE)) == F_FROM;
		roster_item_free(&it);
		xmppd_store_abort(t);
	}
	xmppd_jid_free(tb);
	if (!from && (ss->directed[ss->ndirected] = strdup(full)) != NULL)
		ss->ndirected++;
}

/* Kept for probes while no resource is available (4.3.2), stamped with
 * when it was sent (XEP-0203). */
static void
last_store(struct roster *r, const xmppd_jid *user, const xmppd_elem *p)
{
	char k[KEY_MAX], stamp[32];
	size_t kl = roster_key(k, user, NULL);
	xmppd_elem *c, *d;
	time_t now = time(NULL);
	struct tm tm;
	xmppd_txn *t;

	/* A removed account's sessions end after remove_user ran (and
	 * deleted this row with the roster): their unavailable presence
	 * must not store it again (XEP-0077 3.2). */
	if (!xmppd_user_exists(xmppd_jid_node(user), xmppd_jid_domain(user)))
		return;
	c = xmppd_elem_copy(p);
	xmppd_elem_set_attr(c, "to", NULL);
	if (gmtime_r(&now, &tm) != NULL &&
	    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0) {
		d = xmppd_elem_add_child(c, NS_DELAY, "delay");
		xmppd_elem_set_attr(d, "from", xmppd_jid_domain(user));
		xmppd_elem_set_attr(d, "stamp", stamp);
	}
	t = kl > 0 ? xmppd_store_begin(1) : NULL;
	if (t != NULL && roster_stanza_put(t, T_LAST, k, kl, c) < 0) {
		xmppd_store_abort(t);
		t = NULL;
	}
	if (t == NULL || xmppd_store_commit(t) < 0)
		xmppd_log(r->ctx, XMPPD_LOG_WARNING, "%s: cannot store the last presence",
		    xmppd_jid_bare(user));
	xmppd_elem_unref(c);
}

struct pending_list {
	xmppd_elem *v[64];
	size_t n;
};

static int
pending_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct pending_list *pl = ud;

	if ((pl->v[pl->n] = roster_stanza_parse(val, vlen)) != NULL)
		pl->n++;
	return pl->n == 64;
}

/* RFC 6121 3.1.3: requests still unanswered, to the session that just
 * became available (at most 64 at a time: the rest come next time). */
static void
pending_redeliver(xmppd_session *s, const xmppd_jid *user)
{
	char p[KEY_MAX];
	size_t plen = roster_key(p, user, NULL);
	struct pending_list pl;
	xmppd_txn *t;

	pl.n = 0;
	if (plen == 0 || (t = xmppd_store_begin(0)) == NULL)
		return;
	(void)xmppd_store_scan(t, T_PENDING, p, plen, pending_cb, &pl);
	xmppd_store_abort(t);
	for (size_t i = 0; i < pl.n; i++) {
		xmppd_session_send(s, pl.v[i]);
		xmppd_elem_unref(pl.v[i]);
	}
}

/* RFC 6121 4.2.2: probes to the contacts the user is subscribed to, from
 * the bare JID; run just after the initial presence was recorded. */
static uint64_t
probe_timer(void *ud)
{
	xmppd_jid *user = ud;
	struct contacts c;

	roster_contacts(T_ROSTER, user, F_TO, &c);
	for (size_t i = 0; i < c.n; i++)
		roster_send(user, c.v[i], "probe");
	roster_contacts_free(&c);
	xmppd_jid_free(user);
	return 0;
}

/* A client's presence. Without 'to' it is broadcast (4.2, 4.4, 4.5); the
 * core runs this before it records the new state, so the session's
 * availability still says whether this is the initial presence. */
static enum xmppd_result
on_presence_out(void *args, void *ud)
{
	struct roster *r = ud;
	struct xmppd_packet_args *pa = args;
	const char *type = xmppd_elem_attr(pa->stanza, "type");
	xmppd_session *s = pa->session;
	xmppd_jid *user, *probe_user;

	if (s == NULL || (type != NULL && strcmp(type, "unavailable") != 0) ||
	    (user = roster_bare(xmppd_session_jid(s))) == NULL)
		return XMPPD_CONTINUE;
	if (pa->to != NULL) {
		if (strcmp(xmppd_jid_bare(pa->to), xmppd_jid_bare(user)) != 0)
			directed_note(r, s, user, pa->to, type);
	} else if (type == NULL) {
		int initial = !xmppd_session_available(s);

		broadcast(user, pa->stanza);
		if (initial && xmppd_presence_priority(pa->stanza) >= 0)
			pending_redeliver(s, user);
		if (initial && (probe_user = xmppd_jid_copy(user)) != NULL &&
		    xmppd_timer_add(r->ctx, 0, probe_timer, probe_user) == NULL)
			(void)probe_timer(probe_user);
	} else {
		if (xmppd_session_available(s)) {
			broadcast(user, pa->stanza);
			last_store(r, user, pa->stanza);
		}
		directed_flush(sess_of(r, s, 0), pa->stanza);
	}
	xmppd_jid_free(user);
	return XMPPD_CONTINUE;
}

/* 4.5.2: a session that ends while available (or whose connection just
 * dropped) goes unavailable for its contacts too. */
static enum xmppd_result
on_session_closed(void *args, void *ud)
{
	struct roster *r = ud;
	xmppd_session *s = ((struct xmppd_session_args *)args)->session;
	struct sess *ss = sess_of(r, s, 0);
	xmppd_jid *user;
	xmppd_elem *p;

	if ((!xmppd_session_available(s) && (ss == NULL || ss->ndirected == 0)) ||
	    (user = roster_bare(xmppd_session_jid(s))) == NULL)
		return XMPPD_CONTINUE;
	p = xmppd_elem_new(NULL, "presence");
	xmppd_elem_set_attr(p, "type", "unavailable");
	xmppd_elem_set_attr(p, "from", xmppd_jid_full(xmppd_session_jid(s)));
	if (xmppd_session_available(s)) {
		broadcast(user, p);
		last_store(r, user, p);
	}
	directed_flush(ss, p);
	xmppd_elem_unref(p);
	xmppd_jid_free(user);
	return XMPPD_CONTINUE;
}

static int
is_roster_iq(const xmppd_elem *st, const char *type)
{
	const char *kind = xmppd_stanza_kind(st), *t = xmppd_elem_attr(st, "type"), *ns;
	xmppd_elem *q;

	return kind != NULL && strcmp(kind, "iq") == 0 && t != NULL && strcmp(t, type) == 0 &&
	    (q = xmppd_elem_first_child(st)) != NULL && (ns = xmppd_elem_ns(q)) != NULL &&
	    strcmp(ns, NS_ROSTER) == 0;
}

/* RFC 6121 2.2: a resource that asks for the roster is interested. */
static enum xmppd_result
on_send(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	struct sess *ss;

	if (pa->session != NULL && is_roster_iq(pa->stanza, "get") &&
	    (pa->to == NULL || (xmppd_jid_node(pa->to) != NULL &&
	    strcmp(xmppd_jid_bare(pa->to), xmppd_jid_bare(xmppd_session_jid(pa->session))) == 0)) &&
	    (ss = sess_of(ud, pa->session, 1)) != NULL)
		ss->interested = 1;
	return XMPPD_CONTINUE;
}

/* Pushes (IQ sets from the user's own bare JID: a client's stanzas carry
 * its full JID) go only to interested resources. */
static enum xmppd_result
on_receive(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	struct sess *ss;
	const char *from;

	if (pa->session == NULL || !is_roster_iq(pa->stanza, "set") ||
	    (from = xmppd_elem_attr(pa->stanza, "from")) == NULL ||
	    strcmp(from, xmppd_jid_bare(xmppd_session_jid(pa->session))) != 0)
		return XMPPD_CONTINUE;
	ss = sess_of(ud, pa->session, 0);
	return ss != NULL && ss->interested ? XMPPD_CONTINUE : XMPPD_DROP;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

int
roster_presence_load(struct roster *r)
{
	return xmppd_hook_add(r->ctx, XMPPD_HOOK_ROSTER_OUT_SUBSCRIPTION, NULL, PRIORITY,
	    on_out_subscription, r) < 0 ||
	    xmppd_hook_add(r->ctx, XMPPD_HOOK_ROSTER_IN_SUBSCRIPTION, NULL, PRIORITY,
	    on_in_subscription, r) < 0 ||
	    xmppd_hook_add(r->ctx, XMPPD_HOOK_PRESENCE_OUT, NULL, PRIORITY, on_presence_out,
	    r) < 0 ||
	    xmppd_hook_add(r->ctx, XMPPD_HOOK_SM_SESSION_CLOSED, NULL, PRIORITY,
	    on_session_closed, r) < 0 ||
	    xmppd_hook_add(r->ctx, XMPPD_HOOK_USER_SEND_PACKET, NULL, PRIORITY, on_send, r) < 0 ||
	    xmppd_hook_add(r->ctx, XMPPD_HOOK_USER_RECEIVE_PACKET, NULL, PRIORITY, on_receive,
	    r) < 0 ? -1 : 0;
}
