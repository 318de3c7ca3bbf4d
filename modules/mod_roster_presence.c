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
 * user come to roster_in_subscription, on the sender's worker (a client's
 * or a server stream's). Both hooks return STOP at once and finish from
 * the change's completion (mod_roster.c, roster_change_*): pushes,
 * answers, and for inbound presence to deliver, the stanza routed again,
 * which this module then lets through to the core's delivery (the
 * available resources with non-negative priority, RFC 6121 3.1.3,
 * 8.5.2.1.2). The sending stream reads nothing more meanwhile, so its
 * next stanza sees the change (RFC 6120 10.1).
 *
 * Presence cannot wait for the store: the subscribers a presence goes to,
 * and the contacts probed at login, come from mod_roster_cache.c, loaded
 * when the session opens (its stream holds the initial presence until
 * then) and kept up to date as changes complete. Should an entry not be
 * loaded (a failed load, a module loaded while users are online), the
 * presence waits for a new load, which holds the stream in the same way.
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
 *    stamped with XEP-0203 delay. A probe the store cannot answer gets
 *    nothing (unsubscribed would cancel a subscription that may exist).
 *  - Probes for a new session go out with its broadcast; the answers of
 *    local contacts come from the completion of a store read, after the
 *    core has recorded the session's availability.
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
#define PENDING_MAX 64                  /* requests delivered again at a time */

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

/* A session's slot: did it read the roster, whom did it send directed
 * presence (RFC 6121 4.6), and its user's cache entry (a reference).
 * Touched only on the session's worker; id finds it again from a
 * callback. */
struct sess {
	int interested;
	uint64_t id;
	struct rentry *ce;
	size_t ndirected;
	char *directed[DIRECTED_MAX];
};

/* The stanza this thread is delivering again (on_in_subscription lets it
 * through to the core). */
static __thread const xmppd_elem *passing;

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
same_attr(const xmppd_elem *a, const xmppd_elem *b, const char *name)
{
	const char *x = xmppd_elem_attr(a, name), *y = xmppd_elem_attr(b, name);

	return x == y || (x != NULL && y != NULL && strcmp(x, y) == 0);
}

/* Inbound subscription presence the roster has taken in: routed again,
 * for the core to deliver (a filter may have replaced the stanza on the
 * way: the same addresses and type are it). */
static void
deliver_in(xmppd_elem *st)
{
	const xmppd_elem *prev = passing;

	passing = st;
	xmppd_route(st);
	passing = prev;
}

static int
is_passing(const xmppd_elem *st)
{
	return passing != NULL && (st == passing || (same_attr(st, passing, "type") &&
	    same_attr(st, passing, "from") && same_attr(st, passing, "to")));
}

/* ---------------------------------------------------------------- */
/* Subscriptions (RFC 6121 3, Appendix A).                            */

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

/* A subscription stanza in flight (a change of the user's item for the
 * contact). */
struct subop {
	xmppd_elem *st;             /* a reference */
	int out;
	enum sub_type ty;
	unsigned act;
};

/* Step: Appendix A on what the store holds, and the writes it needs. */
static int
sub_decide(struct rchange *c, xmppd_batch *b)
{
	struct subop *so = c->ud;
	int live = c->old == 1, pin_to;
	unsigned f, nf;

	if (!live)
		roster_item_free(&c->it);
	f = live ? c->it.flags : 0;
	so->act = transition(so->out, so->ty, f, c->pin, &nf, &pin_to);
	if (nf != f) {
		if (!live && c->m.nitems >= (uint64_t)c->r->max_items) {
			so->act = A_FULL;
			return 0;       /* nothing written */
		}
		c->it.flags = nf;
		if (roster_change_write(c, b) < 0)
			return -1;
		so->act |= A_PUSH;
	}
	if (pin_to < 0 && c->pin && roster_change_pending(c, b, NULL) < 0)
		return -1;
	/* A stranger's requests are kept up to max_items; past that they
	 * are still delivered to whoever is online, not stored. */
	if (pin_to > 0 && c->npending < (size_t)c->r->max_items &&
	    roster_change_pending(c, b, so->st) < 0)
		return -1;
	return 0;
}

/* Durable (or failed): what the change makes the module send. */
static void
sub_done(struct rchange *c, int status)
{
	struct subop *so = c->ud;
	unsigned act = so->act;

	if (status != XMPPD_STORE_OK) {
		xmppd_log(c->r->ctx, XMPPD_LOG_ERROR, "%s: cannot update the roster item %s",
		    xmppd_jid_bare(c->user), c->contact);
		act = A_ERROR;
	}
	if (so->out) {
		if (act & A_FULL)
			xmppd_bounce(so->st, "resource-constraint", "the roster is full");
		if (act & A_ERROR)
			xmppd_bounce(so->st, "internal-server-error", NULL);
		if (act & A_PUSH)
			roster_push(c->user, c->contact, &c->it, c->m.epoch);
		if (act & A_SEND_UNAVAILABLE)
			(void)xmppd_user_presences(c->user, roster_unavailable, c->contact);
		if (act & A_PASS)
			roster_forward(so->st, c->contact);
		if (act & A_SEND_PRESENCE)
			(void)xmppd_user_presences(c->user, roster_forward, c->contact);
	} else {
		if (act & A_PUSH)
			roster_push(c->user, c->contact, &c->it, c->m.epoch);
		if (act & A_REPLY_SUBSCRIBED)
			roster_send(c->user, c->contact, "subscribed");
		if (act & A_REPLY_UNSUBSCRIBED)
			roster_send(c->user, c->contact, "unsubscribed");
		if (act & A_SEND_PRESENCE)
			(void)xmppd_user_presences(c->user, roster_forward, c->contact);
		if (act & A_SEND_UNAVAILABLE)
			(void)xmppd_user_presences(c->user, roster_unavailable, c->contact);
		/* What the core would have done had the hook said CONTINUE. */
		if (act & (A_PASS | A_ERROR))
			deliver_in(so->st);
	}
	xmppd_elem_unref(so->st);
	free(so);
}

/* Starts the change st makes to user's item for contact. 0, or -1 when it
 * could not be started. */
static int
sub_start(struct roster *r, const xmppd_jid *user, const char *contact, int out,
    enum sub_type ty, xmppd_elem *st)
{
	struct subop *so = calloc(1, sizeof(*so));
	struct rchange *c;

	if (so == NULL || (c = roster_change_new(r, user, contact)) == NULL) {
		free(so);
		return -1;
	}
	so->st = xmppd_elem_ref(st);
	so->out = out;
	so->ty = ty;
	c->decide = sub_decide;
	c->done = sub_done;
	c->ud = so;
	/* An inbound request is stored only if the user has room. */
	if (roster_change_submit(c, !out && ty == S_SUBSCRIBE) < 0) {
		xmppd_elem_unref(so->st);
		free(so);
		return -1;
	}
	return 0;
}

/* What a client sends (the core has set 'from' to its bare JID). */
static enum xmppd_result
on_out_subscription(void *args, void *ud)
{
	struct roster *r = ud;
	struct xmppd_packet_args *pa = args;
	int ty = sub_type(xmppd_elem_attr(pa->stanza, "type"));
	xmppd_jid *contact;
	char k[KEY_MAX];

	if (ty < 0 || pa->from == NULL || pa->to == NULL || xmppd_jid_node(pa->from) == NULL ||
	    (contact = roster_bare(pa->to)) == NULL)
		return XMPPD_CONTINUE;
	if (strcmp(xmppd_jid_bare(contact), xmppd_jid_bare(pa->from)) == 0) {
		/* Subscribing to oneself means nothing. */
	} else if (roster_key(k, pa->from, xmppd_jid_bare(contact)) == 0) {
		xmppd_bounce(pa->stanza, "not-acceptable", "JID too long to store");
	} else if (sub_start(r, pa->from, xmppd_jid_bare(contact), 1, (enum sub_type)ty,
	    pa->stanza) < 0) {
		xmppd_bounce(pa->stanza, "internal-server-error", NULL);
	}
	xmppd_jid_free(contact);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Probes (RFC 6121 4.3).                                             */

struct probe {
	struct roster *r;
	xmppd_jid *user;            /* bare */
	char *contact;              /* the prober's bare JID */
	char *to;                   /* the prober's address */
};

static void
probe_free(struct probe *pr)
{
	xmppd_jid_free(pr->user);
	free(pr->contact);
	free(pr->to);
	free(pr);
}

/* No resource available: the last unavailable presence. */
static void
probe_last(int status, const void *val, size_t vlen, void *ud)
{
	struct probe *pr = ud;
	xmppd_elem *last = status == XMPPD_STORE_OK ? roster_stanza_parse(val, vlen) : NULL;

	if (last != NULL)
		roster_forward(last, pr->to);
	else
		roster_send(pr->user, pr->to, "unavailable");
	xmppd_elem_unref(last);
	probe_free(pr);
}

/* 4.3.2: the prober's item read; subscribed to the user's presence? */
static void
probe_item(int status, const void *val, size_t vlen, void *ud)
{
	struct probe *pr = ud;
	char k[KEY_MAX];
	size_t kl;
	int f;

	if (status != XMPPD_STORE_OK && status != XMPPD_STORE_NOT_FOUND) {
		xmppd_log(pr->r->ctx, XMPPD_LOG_WARNING, "%s: cannot answer a probe from %s",
		    xmppd_jid_bare(pr->user), pr->contact);
		probe_free(pr);
		return;
	}
	f = status == XMPPD_STORE_OK ? roster_record_flags(val, vlen) : -1;
	if (f < 0 || (f & (F_FROM | F_GONE)) != F_FROM) {
		roster_send(pr->user, pr->contact, "unsubscribed");
		probe_free(pr);
		return;
	}
	if (xmppd_user_presences(pr->user, roster_forward, pr->to) > 0) {
		probe_free(pr);
		return;
	}
	if ((kl = roster_key(k, pr->user, NULL)) == 0 ||
	    xmppd_store_aget(pr->r->ctx, T_LAST, k, kl, probe_last, pr) < 0)
		probe_last(XMPPD_STORE_ERROR, NULL, 0, pr);
}

/* A probe from contact (the prober's address is to). */
static void
probe_start(struct roster *r, const xmppd_jid *user, const char *contact, const char *to)
{
	struct probe *pr = calloc(1, sizeof(*pr));
	char k[KEY_MAX];
	size_t kl;

	if (pr == NULL || (pr->user = xmppd_jid_copy(user)) == NULL ||
	    (pr->contact = strdup(contact)) == NULL || (pr->to = strdup(to)) == NULL) {
		if (pr != NULL)
			probe_free(pr);
		return;
	}
	pr->r = r;
	/* A JID too long for a key has no item: not subscribed. */
	if ((kl = roster_key(k, user, contact)) == 0) {
		probe_item(XMPPD_STORE_NOT_FOUND, NULL, 0, pr);
		return;
	}
	if (xmppd_store_aget(r->ctx, T_ROSTER, k, kl, probe_item, pr) < 0)
		probe_item(XMPPD_STORE_ERROR, NULL, 0, pr);
}

/* Subscription presence and probes to a local user (the core's
 * roster_in_subscription, on the sender's thread). */
static enum xmppd_result
on_in_subscription(void *args, void *ud)
{
	struct roster *r = ud;
	struct xmppd_packet_args *pa = args;
	const char *type = xmppd_elem_attr(pa->stanza, "type");
	int ty = sub_type(type);
	xmppd_jid *user, *contact;
	enum xmppd_result res = XMPPD_STOP;
	char k[KEY_MAX];

	if (pa->to == NULL || xmppd_jid_node(pa->to) == NULL || type == NULL ||
	    (ty < 0 && strcmp(type, "probe") != 0) || is_passing(pa->stanza))
		return XMPPD_CONTINUE;
	if (pa->from == NULL || xmppd_jid_domain(pa->from) == NULL)
		return XMPPD_STOP;
	if (roster_on_main(r)) {
		/* Routed by a control command: the store answers on a worker
		 * only, so the stanza is routed again from one. */
		return roster_route_on_worker(r, xmppd_elem_ref(pa->stanza)) < 0 ?
		    XMPPD_CONTINUE : XMPPD_STOP;
	}
	if ((user = roster_bare(pa->to)) == NULL)
		return XMPPD_CONTINUE;
	if ((contact = roster_bare(pa->from)) == NULL) {
		xmppd_jid_free(user);
		return XMPPD_STOP;
	}
	if (strcmp(xmppd_jid_bare(contact), xmppd_jid_bare(user)) == 0) {
		/* The user's own: nothing to do with a roster. */
	} else if (ty >= 0 && roster_key(k, user, xmppd_jid_bare(contact)) == 0) {
		/* A JID too long to keep a state for: delivered as it is. */
		res = XMPPD_CONTINUE;
	} else if (ty < 0) {
		probe_start(r, user, xmppd_jid_bare(contact), xmppd_jid_full(pa->from));
	} else if (sub_start(r, user, xmppd_jid_bare(contact), 0, (enum sub_type)ty,
	    pa->stanza) < 0) {
		res = XMPPD_CONTINUE;   /* as after a store error: delivered */
	}
	xmppd_jid_free(contact);
	xmppd_jid_free(user);
	return res;
}

/* ---------------------------------------------------------------- */
/* Sessions.                                                          */

static void
sess_free(void *data)
{
	struct sess *ss = data;

	for (size_t i = 0; i < ss->ndirected; i++)
		free(ss->directed[i]);
	cache_unref(ss->ce);
	free(ss);
}

/* With create, a new slot also takes the user's cache entry and loads it
 * (the stream that opened the session waits for that). */
static struct sess *
sess_of(struct roster *r, xmppd_session *s, int create)
{
	static uint64_t ids;
	struct sess *ss = xmppd_session_get(s, r->slot);
	const xmppd_jid *jid = xmppd_session_jid(s);
	xmppd_jid *user;

	if (ss != NULL || !create || jid == NULL || xmppd_jid_node(jid) == NULL ||
	    (ss = calloc(1, sizeof(*ss))) == NULL)
		return ss;
	ss->id = __atomic_add_fetch(&ids, 1, __ATOMIC_RELAXED);
	if ((user = roster_bare(jid)) != NULL) {
		ss->ce = cache_ref(xmppd_jid_bare(user));
		xmppd_jid_free(user);
	}
	xmppd_session_set(s, r->slot, ss, sess_free);
	if (ss->ce != NULL && cache_load(r, ss->ce, NULL, NULL) < 0)
		xmppd_log(r->ctx, XMPPD_LOG_WARNING, "%s: cannot load the roster",
		    xmppd_jid_full(jid));
	return ss;
}

static enum xmppd_result
on_session_opened(void *args, void *ud)
{
	(void)sess_of(ud, ((struct xmppd_session_args *)args)->session, 1);
	return XMPPD_CONTINUE;
}

/* Loaded while users are online: their sessions are adopted on their
 * workers (a timer on each, once). */
static void
adopt_one(xmppd_session *s, void *ud)
{
	(void)sess_of(ud, s, 1);
}

static uint64_t
adopt_sweep(void *ud)
{
	xmppd_session_foreach_local(adopt_one, ud);
	return 0;
}

struct find {
	struct roster *r;
	uint64_t id;
	xmppd_session *s;
};

static void
find_one(xmppd_session *s, void *ud)
{
	struct find *f = ud;
	struct sess *ss = xmppd_session_get(s, f->r->slot);

	if (ss != NULL && ss->id == f->id)
		f->s = s;
}

/* The session whose slot has id, on this worker; NULL if it has gone. */
static xmppd_session *
sess_find(struct roster *r, uint64_t id)
{
	struct find f = { r, id, NULL };

	xmppd_session_foreach_local(find_one, &f);
	return f.s;
}

/* ---------------------------------------------------------------- */
/* Presence (RFC 6121 4).                                             */

enum { W_BROADCAST = 1, W_PROBES = 2 };

/* Presence to send once the user's contacts are known. */
struct later {
	struct roster *r;
	xmppd_jid *user;
	xmppd_elem *p;              /* a reference */
	unsigned what;
};

/* RFC 6121 4.2.2, 4.4.2, 4.5.2: p to every contact with a subscription to
 * the user's presence; 4.2.2: probes, from the bare JID, to the contacts
 * the user is subscribed to. */
static void
send_now(struct rentry *e, const xmppd_jid *user, const xmppd_elem *p, unsigned what)
{
	struct contacts c;

	if ((what & W_BROADCAST) && cache_contacts(e, F_FROM, 0, &c) == 0) {
		for (size_t i = 0; i < c.n; i++)
			roster_forward(p, c.v[i]);
		roster_contacts_free(&c);
	}
	if ((what & W_PROBES) && cache_contacts(e, F_TO, 0, &c) == 0) {
		for (size_t i = 0; i < c.n; i++)
			roster_send(user, c.v[i], "probe");
		roster_contacts_free(&c);
	}
}

static void
later_free(struct later *l)
{
	xmppd_jid_free(l->user);
	xmppd_elem_unref(l->p);
	free(l);
}

static void
later_run(struct rentry *e, int ok, void *arg)
{
	struct later *l = arg;

	if (ok)
		send_now(e, l->user, l->p, l->what);
	else
		xmppd_log(l->r->ctx, XMPPD_LOG_WARNING, "%s: no roster: presence not broadcast",
		    xmppd_jid_bare(l->user));
	later_free(l);
}

/* What p makes the module send to the contacts of user (e: the user's
 * entry, a reference taken): now, or after a load of e. */
static void
to_contacts(struct roster *r, struct rentry *e, const xmppd_jid *user, const xmppd_elem *p,
    unsigned what)
{
	struct later *l;

	if (e == NULL)
		return;
	if (cache_loaded(e)) {
		send_now(e, user, p, what);
		cache_unref(e);
		return;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL || (l->user = xmppd_jid_copy(user)) == NULL) {
		free(l);
		cache_unref(e);
		return;
	}
	l->r = r;
	l->p = xmppd_elem_ref((xmppd_elem *)p);
	l->what = what;
	if (cache_load(r, e, later_run, l) < 0)
		later_run(e, 0, l);
	cache_unref(e);
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
directed_note(struct roster *r, xmppd_session *s, const xmppd_jid *to, const char *type)
{
	struct sess *ss = sess_of(r, s, type == NULL);
	const char *full = xmppd_jid_full(to);
	xmppd_jid *tb;
	unsigned flags = 0;
	size_t i;

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
	/* Not loaded: noted (at worst a subscriber gets unavailable twice). */
	if (ss->ce == NULL || cache_flags(ss->ce, xmppd_jid_bare(tb), &flags) < 0)
		flags = 0;
	xmppd_jid_free(tb);
	if (!(flags & F_FROM) && (ss->directed[ss->ndirected] = strdup(full)) != NULL)
		ss->ndirected++;
}

struct last {
	struct roster *r;
	char bare[];
};

static void
last_stored(int status, void *ud)
{
	struct last *l = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(l->r->ctx, XMPPD_LOG_WARNING, "%s: cannot store the last presence",
		    l->bare);
	free(l);
}

/* Kept for probes while no resource is available (4.3.2), stamped with
 * when it was sent (XEP-0203). */
static void
last_store(struct roster *r, const xmppd_jid *user, const xmppd_elem *p)
{
	char k[KEY_MAX], stamp[32], *v;
	size_t kl = roster_key(k, user, NULL), vl;
	xmppd_elem *c, *d;
	time_t now = time(NULL);
	struct tm tm;
	xmppd_batch *b;
	struct last *l;

	/* A removed account's sessions end after remove_user ran (and the
	 * core deleted this row with the roster): their unavailable
	 * presence must not store it again (XEP-0077 3.2). */
	if (kl == 0 || !xmppd_user_exists(xmppd_jid_node(user), xmppd_jid_domain(user)))
		return;
	c = xmppd_elem_copy(p);
	xmppd_elem_set_attr(c, "to", NULL);
	if (gmtime_r(&now, &tm) != NULL &&
	    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0) {
		d = xmppd_elem_add_child(c, NS_DELAY, "delay");
		xmppd_elem_set_attr(d, "from", xmppd_jid_domain(user));
		xmppd_elem_set_attr(d, "stamp", stamp);
	}
	v = roster_stanza_record(c, &vl);
	xmppd_elem_unref(c);
	if (v == NULL || (l = malloc(sizeof(*l) + strlen(xmppd_jid_bare(user)) + 1)) == NULL) {
		free(v);
		return;
	}
	l->r = r;
	strcpy(l->bare, xmppd_jid_bare(user));
	if ((b = xmppd_batch_new(r->ctx)) == NULL) {
		last_stored(XMPPD_STORE_ERROR, l);
	} else {
		(void)xmppd_batch_put(b, T_LAST, k, kl, v, vl);
		if (xmppd_batch_submit(b, last_stored, l) < 0)
			last_stored(XMPPD_STORE_ERROR, l);
	}
	free(v);
}

/* RFC 6121 3.1.3: requests still unanswered, to the session that just
 * became available (at most PENDING_MAX at a time: the rest come next
 * time). */
struct redeliver {
	struct roster *r;
	uint64_t id;                /* the session's slot */
	xmppd_elem *v[PENDING_MAX];
	size_t n;
};

static int
pending_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct redeliver *rd = ud;

	if ((rd->v[rd->n] = roster_stanza_parse(val, vlen)) != NULL)
		rd->n++;
	return rd->n == PENDING_MAX;
}

static void
pending_done(int status, void *ud)
{
	struct redeliver *rd = ud;
	xmppd_session *s = status == XMPPD_STORE_OK ? sess_find(rd->r, rd->id) : NULL;

	for (size_t i = 0; i < rd->n; i++) {
		if (s != NULL)
			xmppd_session_send(s, rd->v[i]);
		xmppd_elem_unref(rd->v[i]);
	}
	free(rd);
}

static void
pending_redeliver(struct roster *r, struct sess *ss, const xmppd_jid *user)
{
	char p[KEY_MAX];
	size_t plen = roster_key(p, user, NULL);
	struct redeliver *rd;

	if (ss == NULL || plen == 0 || (rd = calloc(1, sizeof(*rd))) == NULL)
		return;
	rd->r = r;
	rd->id = ss->id;
	if (xmppd_store_ascan(r->ctx, T_PENDING, p, plen, pending_row, pending_done, rd) < 0)
		free(rd);
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
	struct sess *ss;
	xmppd_jid *user;

	if (s == NULL || (type != NULL && strcmp(type, "unavailable") != 0) ||
	    (user = roster_bare(xmppd_session_jid(s))) == NULL)
		return XMPPD_CONTINUE;
	ss = sess_of(r, s, 1);
	if (pa->to != NULL) {
		if (strcmp(xmppd_jid_bare(pa->to), xmppd_jid_bare(user)) != 0)
			directed_note(r, s, pa->to, type);
	} else if (type == NULL) {
		int initial = !xmppd_session_available(s);

		to_contacts(r, cache_ref(xmppd_jid_bare(user)), user, pa->stanza,
		    W_BROADCAST | (initial ? W_PROBES : 0));
		if (initial && xmppd_presence_priority(pa->stanza) >= 0)
			pending_redeliver(r, ss, user);
	} else {
		if (xmppd_session_available(s)) {
			to_contacts(r, cache_ref(xmppd_jid_bare(user)), user, pa->stanza, W_BROADCAST);
			last_store(r, user, pa->stanza);
		}
		directed_flush(ss, pa->stanza);
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
		to_contacts(r, cache_ref(xmppd_jid_bare(user)), user, p, W_BROADCAST);
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
	    xmppd_hook_add(r->ctx, XMPPD_HOOK_SM_SESSION_OPENED, NULL, PRIORITY,
	    on_session_opened, r) < 0 ||
	    xmppd_hook_add(r->ctx, XMPPD_HOOK_SM_SESSION_CLOSED, NULL, PRIORITY,
	    on_session_closed, r) < 0 ||
	    xmppd_hook_add(r->ctx, XMPPD_HOOK_USER_SEND_PACKET, NULL, PRIORITY, on_send, r) < 0 ||
	    xmppd_hook_add(r->ctx, XMPPD_HOOK_USER_RECEIVE_PACKET, NULL, PRIORITY, on_receive,
	    r) < 0 ||
	    xmppd_timer_add_every_worker(r->ctx, 1, adopt_sweep, r) < 0 ? -1 : 0;
}
