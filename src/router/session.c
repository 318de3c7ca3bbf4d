/*
 * session.c - the per-worker table of client sessions, delivery to them
 * through their sink, and the life cycle the router sees (session.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/registry.h"
#include "core/worker.h"
#include "net/listener.h"
#include "router/session.h"
#include "router/sm.h"
#include "xmpp/stanza.h"

struct session_worker {
	struct session **buckets;       /* by sid */
	size_t nbuckets, count;
	struct session *list;
	uint64_t next_sid;
};

static struct session_worker *sworkers;
static unsigned nsworkers;

static struct session_worker *
sw_of(struct worker *w)
{
	return &sworkers[worker_id(w)];
}

int
session_init(unsigned nworkers)
{
	sworkers = calloc(nworkers, sizeof(*sworkers));
	if (sworkers == NULL)
		return -1;
	nsworkers = nworkers;
	for (unsigned i = 0; i < nworkers; i++) {
		sworkers[i].nbuckets = 1024;
		sworkers[i].buckets = calloc(sworkers[i].nbuckets, sizeof(struct session *));
		if (sworkers[i].buckets == NULL)
			return -1;
		/* The worker number in the top byte keeps ids unique
		 * server-wide. */
		sworkers[i].next_sid = ((uint64_t)i << 56) + 1;
	}
	return 0;
}

void
session_free_all(void)
{
	for (unsigned i = 0; i < nsworkers; i++)
		free(sworkers[i].buckets);
	free(sworkers);
	sworkers = NULL;
	nsworkers = 0;
}

/* ---------------------------------------------------------------- */
/* The table.                                                         */

static void
grow(struct session_worker *sw)
{
	size_t n = sw->nbuckets * 2;
	struct session **v = calloc(n, sizeof(*v));

	if (v == NULL)
		return;     /* longer chains, still correct */
	for (size_t i = 0; i < sw->nbuckets; i++) {
		struct session *x = sw->buckets[i], *next;

		for (; x != NULL; x = next) {
			next = x->hnext;
			x->hnext = v[x->sid & (n - 1)];
			v[x->sid & (n - 1)] = x;
		}
	}
	free(sw->buckets);
	sw->buckets = v;
	sw->nbuckets = n;
}

void
session_add(struct session *s, struct worker *w, const struct session_ops *ops,
    const struct sockaddr *sa, socklen_t salen)
{
	struct session_worker *sw = sw_of(w);
	size_t b;

	s->ops = ops;
	s->w = w;
	s->sid = sw->next_sid++;
	if (sa != NULL) {
		memcpy(&s->sa, sa, salen < sizeof(s->sa) ? salen : sizeof(s->sa));
		sockaddr_format(sa, s->addr, sizeof(s->addr));
	}
	if (sw->count >= sw->nbuckets)
		grow(sw);
	b = s->sid & (sw->nbuckets - 1);
	s->hnext = sw->buckets[b];
	sw->buckets[b] = s;
	s->prev = NULL;
	s->next = sw->list;
	if (sw->list != NULL)
		sw->list->prev = s;
	sw->list = s;
	sw->count++;
}

static void
free_slots(struct session *s)
{
	if (s->slots == NULL)
		return;
	for (int i = 0; i < MODULE_MAX_SLOTS; i++)
		if (s->slots[i].data != NULL && s->slots[i].free_fn != NULL)
			s->slots[i].free_fn(s->slots[i].data);
	free(s->slots);
	s->slots = NULL;
}

void
session_remove(struct session *s)
{
	struct session_worker *sw = sw_of(s->w);
	struct session **pp = &sw->buckets[s->sid & (sw->nbuckets - 1)];

	session_end(s);
	for (; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == s) {
			*pp = s->hnext;
			break;
		}
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		sw->list = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	sw->count--;
	free_slots(s);
	jid_free(&s->jid);
}

struct session *
session_find(struct worker *w, uint64_t sid)
{
	struct session_worker *sw = sw_of(w);
	struct session *s = sw->buckets[sid & (sw->nbuckets - 1)];

	for (; s != NULL; s = s->hnext)
		if (s->sid == sid)
			return s;
	return NULL;
}

/* ---------------------------------------------------------------- */
/* Life cycle.                                                        */

void
session_bind(struct session *s)
{
	struct sm_target old;

	if (sm_bind(&s->jid, s->sid, worker_id(s->w), s->addr, &old) == 1) {
		log_info("session", "%s replaces an older session", s->jid.full);
		session_kick(old.worker, old.sid, "conflict", "replaced by a new connection");
	}
	s->bound = 1;
}

void
session_opened(struct session *s)
{
	if (s->bound && hooks_any(XMPPD_HOOK_SM_SESSION_OPENED)) {
		struct xmppd_session_args sa = { (xmppd_session *)s };

		(void)hooks_run(XMPPD_HOOK_SM_SESSION_OPENED, s->jid.domain, &sa);
	}
}

void
session_end(struct session *s)
{
	if (!s->bound)
		return;
	if (hooks_any(XMPPD_HOOK_SM_SESSION_CLOSED)) {
		struct xmppd_session_args sa = { (xmppd_session *)s };

		(void)hooks_run(XMPPD_HOOK_SM_SESSION_CLOSED, s->jid.domain, &sa);
	}
	if (s->available) {
		xml_elem *p = xml_elem_new(NULL, "presence");

		xml_attr_set(p, "type", "unavailable");
		xml_attr_set(p, "from", s->jid.full);
		sm_set_presence(&s->jid, s->sid, 0, 0, NULL);
		sm_presence_to_own_resources(p, &s->jid, s->sid, 0);
		xml_elem_unref(p);
		s->available = 0;
	}
	sm_unbind(&s->jid, s->sid);
	s->bound = 0;
}

/* ---------------------------------------------------------------- */
/* Delivery and kicks, from any thread.                               */

static void deliver_task(struct worker *w, void *a, uint64_t sid);
static void deliver_copy_task(struct worker *w, void *a, uint64_t sid);

/* copy: st went to several sessions (a headline, a tie of priorities) and
 * this is one of the copies. */
static void
deliver_local(struct worker *w, uint64_t sid, xml_elem *st, int copy)
{
	struct session *s = session_find(w, sid);

	if (s != NULL && s->bound && !s->closing) {
		if (hooks_any(XMPPD_HOOK_USER_RECEIVE_PACKET) ||
		    (stanza_kind(st) == STANZA_PRESENCE && hooks_any(XMPPD_HOOK_PRESENCE_IN))) {
			struct xmppd_packet_args pa = { st, NULL, &s->jid, (xmppd_session *)s };

			if (hooks_run(XMPPD_HOOK_USER_RECEIVE_PACKET, s->jid.domain, &pa) !=
			    XMPPD_CONTINUE)
				return;
			if (stanza_kind(st) == STANZA_PRESENCE &&
			    hooks_run(XMPPD_HOOK_PRESENCE_IN, s->jid.domain, &pa) != XMPPD_CONTINUE)
				return;
		}
		s->ops->send(s, st);
		return;
	}
	if (s != NULL && s->bound) {
		/* Closing, and still in the session table: we are inside its
		 * own session_end (a hook routed this here). Routing again now
		 * would pick it again; try once more when session_end is over
		 * and the session is out of the table. */
		worker_post(w, copy ? deliver_copy_task : deliver_task, xml_elem_ref(st), sid);
		return;
	}
	/* The session went away between the lookup and now, and is out of
	 * the session table: a message is routed again, which finds the
	 * resource gone (RFC 6121 8.5.3.2: a full JID is treated as the bare
	 * one) or, for a bare JID, the resources that remain or offline
	 * storage (8.5.2). Dropping it here lost a message sent to a bare JID
	 * just as the user's only session closed (seen in t1020). A copy of
	 * a message that went to several resources is dropped instead: the
	 * others have theirs, and routed again it would reach them twice.
	 * An IQ get or set (always to one full JID) is routed again too, so
	 * that its sender gets the answer RFC 6120 8.2.3 promises
	 * (8.5.3.2.3: <service-unavailable/>). */
	if ((stanza_kind(st) == STANZA_MESSAGE && !copy) || (stanza_kind(st) == STANZA_IQ &&
	    (strcmp(stanza_type(st) ? stanza_type(st) : "", "get") == 0 ||
	    strcmp(stanza_type(st) ? stanza_type(st) : "", "set") == 0))) {
		const char *to = xml_attr_get(st, "to"), *from = xml_attr_get(st, "from");
		const char *e;
		jid jto, jfrom;

		if (to == NULL || jid_parse(&jto, to, strlen(to), &e) < 0)
			return;
		if (from == NULL || jid_parse(&jfrom, from, strlen(from), &e) < 0)
			memset(&jfrom, 0, sizeof(jfrom));
		log_debug("session", "session %llx gone: %s to %s routed again",
		    (unsigned long long)sid, xml_elem_name(st), to);
		sm_route(st, &jfrom, &jto);
		jid_free(&jto);
		jid_free(&jfrom);
	}
}

static void
deliver_task(struct worker *w, void *a, uint64_t sid)
{
	xml_elem *st = a;

	deliver_local(w, sid, st, 0);
	xml_elem_unref(st);
}

static void
deliver_copy_task(struct worker *w, void *a, uint64_t sid)
{
	xml_elem *st = a;

	deliver_local(w, sid, st, 1);
	xml_elem_unref(st);
}

static void
deliver(unsigned worker, uint64_t sid, xml_elem *st, int copy)
{
	struct worker *self = worker_self();

	if (self != NULL && worker_id(self) == worker) {
		deliver_local(self, sid, st, copy);
		return;
	}
	worker_post(worker_get(worker), copy ? deliver_copy_task : deliver_task,
	    xml_elem_ref(st), sid);
}

void
session_deliver(unsigned worker, uint64_t sid, xml_elem *st)
{
	deliver(worker, sid, st, 0);
}

void
session_deliver_copy(unsigned worker, uint64_t sid, xml_elem *st)
{
	deliver(worker, sid, st, 1);
}

struct kick {
	const char *condition;
	const char *text;
};

static void
kick_task(struct worker *w, void *a, uint64_t sid)
{
	struct kick *k = a;
	struct session *s = session_find(w, sid);

	if (s != NULL && !s->closing) {
		/* The table entry may already belong to the new session with
		 * the same full JID: leave it alone. */
		if (strcmp(k->condition, "conflict") == 0) {
			s->bound = 0;
			s->available = 0;
		}
		s->ops->close(s, k->condition, k->text);
	}
	free(k);
}

void
session_kick(unsigned worker, uint64_t sid, const char *condition, const char *text)
{
	struct kick *k = malloc(sizeof(*k));

	if (k == NULL)
		return;
	k->condition = condition;
	k->text = text;
	worker_post(worker_get(worker), kick_task, k, sid);
}

/* ---------------------------------------------------------------- */
/* Walks.                                                             */

void
session_foreach_local(void (*fn)(struct session *s, void *ud), void *ud)
{
	struct worker *w = worker_self();
	struct session *s, *next;

	if (w == NULL)
		return;
	for (s = sw_of(w)->list; s != NULL; s = next) {
		next = s->next;
		if (s->bound && !s->closing)
			fn(s, ud);
	}
}

void
session_clear_slot(struct worker *w, int slot)
{
	for (struct session *s = sw_of(w)->list; s != NULL; s = s->next) {
		if (s->slots == NULL || s->slots[slot].data == NULL)
			continue;
		if (s->slots[slot].free_fn != NULL)
			s->slots[slot].free_fn(s->slots[slot].data);
		s->slots[slot].data = NULL;
		s->slots[slot].free_fn = NULL;
	}
}

/* ---------------------------------------------------------------- */
/* The pre-authentication IQ.                                         */

static __thread struct session *preauth_session;
static __thread const xml_elem *preauth_iq;

void
session_preauth_begin(struct session *s, const xml_elem *iq)
{
	preauth_session = s;
	preauth_iq = iq;
}

void
session_preauth_end(void)
{
	preauth_session = NULL;
	preauth_iq = NULL;
}

int
session_preauth_reply(const xml_elem *iq, const xml_elem *reply)
{
	if (preauth_session == NULL || iq != preauth_iq)
		return 0;
	if (!preauth_session->closing)
		preauth_session->ops->send(preauth_session, reply);
	return 1;
}

const struct sockaddr *
session_preauth_addr(const xml_elem *iq)
{
	if (preauth_session == NULL || iq != preauth_iq)
		return NULL;
	return (const struct sockaddr *)&preauth_session->sa;
}
