/*
 * sm.c - session table and local delivery (RFC 6121 8.5).
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "auth/account.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/registry.h"
#include "router/router.h"
#include "router/session.h"
#include "router/sm.h"
#include "xmpp/stanza.h"

#define SM_SHARDS 64
#define SM_LOCAL_TARGETS 16

struct sm_res {
	char *resource;
	uint64_t sid;
	unsigned worker;
	int priority;
	int available;
	xml_elem *presence;        /* last available presence, or NULL */
	unsigned flags;            /* XMPPD_RES_* (hooks/xmppd.h) */
	uint64_t ack_wait_ms;      /* our unanswered <r/> went then; 0 none */
	char addr[64];
};

struct sm_user {
	struct sm_user *next;
	uint64_t hash;
	char *bare;
	struct sm_res *res;
	size_t nres, cap;
};

struct sm_shard {
	pthread_mutex_t lock;
	struct sm_user **buckets;
	size_t nbuckets, count;
};

static struct sm_shard shards[SM_SHARDS];
static uint64_t hash_seed;
static unsigned long nsessions;   /* atomic */

/* FNV-1a, seeded at start so that bare JIDs chosen by clients cannot be
 * lined up in one bucket from outside. */
static uint64_t
sm_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL ^ hash_seed;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

int
sm_init(void)
{
	if (RAND_bytes((unsigned char *)&hash_seed, sizeof(hash_seed)) != 1)
		return -1;
	for (size_t i = 0; i < SM_SHARDS; i++) {
		pthread_mutex_init(&shards[i].lock, NULL);
		shards[i].nbuckets = 64;
		shards[i].buckets = calloc(shards[i].nbuckets, sizeof(struct sm_user *));
		if (shards[i].buckets == NULL)
			return -1;
	}
	return 0;
}

static void
user_free(struct sm_user *u)
{
	for (size_t i = 0; i < u->nres; i++) {
		free(u->res[i].resource);
		xml_elem_unref(u->res[i].presence);
	}
	free(u->res);
	free(u->bare);
	free(u);
}

void
sm_free(void)
{
	for (size_t i = 0; i < SM_SHARDS; i++) {
		struct sm_shard *s = &shards[i];

		for (size_t b = 0; b < s->nbuckets; b++) {
			struct sm_user *u = s->buckets[b], *next;

			for (; u != NULL; u = next) {
				next = u->next;
				user_free(u);
			}
		}
		free(s->buckets);
		s->buckets = NULL;
		pthread_mutex_destroy(&s->lock);
	}
}

static struct sm_shard *
shard_of(uint64_t h)
{
	return &shards[h % SM_SHARDS];
}

/* Called with the shard locked. */
static struct sm_user *
user_find(struct sm_shard *s, uint64_t h, const char *bare)
{
	struct sm_user *u = s->buckets[(h / SM_SHARDS) & (s->nbuckets - 1)];

	for (; u != NULL; u = u->next)
		if (u->hash == h && strcmp(u->bare, bare) == 0)
			return u;
	return NULL;
}

static void
shard_grow(struct sm_shard *s)
{
	size_t n = s->nbuckets * 2;
	struct sm_user **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return;             /* keep the longer chains */
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct sm_user *u = s->buckets[i], *next;

		for (; u != NULL; u = next) {
			next = u->next;
			u->next = b[(u->hash / SM_SHARDS) & (n - 1)];
			b[(u->hash / SM_SHARDS) & (n - 1)] = u;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
}

static void
user_unlink(struct sm_shard *s, struct sm_user *u)
{
	struct sm_user **pp = &s->buckets[(u->hash / SM_SHARDS) & (s->nbuckets - 1)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if (*pp == u) {
			*pp = u->next;
			s->count--;
			return;
		}
}

static struct sm_res *
res_find(struct sm_user *u, const char *resource)
{
	for (size_t i = 0; i < u->nres; i++)
		if (strcmp(u->res[i].resource, resource) == 0)
			return &u->res[i];
	return NULL;
}

int
sm_bind(const jid *full, uint64_t sid, unsigned worker, const char *addr,
    struct sm_target *old_r)
{
	uint64_t h = sm_hash(full->bare);
	struct sm_shard *s = shard_of(h);
	struct sm_user *u;
	struct sm_res *r;
	int replaced = 0;

	pthread_mutex_lock(&s->lock);
	u = user_find(s, h, full->bare);
	if (u == NULL) {
		u = calloc(1, sizeof(*u));
		if (u == NULL || (u->bare = strdup(full->bare)) == NULL)
			fatal("out of memory in the session table");
		u->hash = h;
		if (s->count >= s->nbuckets)
			shard_grow(s);
		u->next = s->buckets[(h / SM_SHARDS) & (s->nbuckets - 1)];
		s->buckets[(h / SM_SHARDS) & (s->nbuckets - 1)] = u;
		s->count++;
	}
	r = res_find(u, full->resource);
	if (r != NULL) {
		/* RFC 6120 7.7.2.2: the new session wins; the old one is told
		 * <conflict/> by the caller. */
		old_r->sid = r->sid;
		old_r->worker = r->worker;
		replaced = 1;
		xml_elem_unref(r->presence);
		r->presence = NULL;
		r->available = 0;
		r->priority = 0;
		r->flags = 0;
		r->ack_wait_ms = 0;
	} else {
		if (u->nres == u->cap) {
			size_t cap = u->cap ? u->cap * 2 : 2;
			struct sm_res *v = realloc(u->res, cap * sizeof(*v));

			if (v == NULL)
				fatal("out of memory in the session table");
			u->res = v;
			u->cap = cap;
		}
		r = &u->res[u->nres++];
		memset(r, 0, sizeof(*r));
		if ((r->resource = strdup(full->resource)) == NULL)
			fatal("out of memory in the session table");
		__atomic_add_fetch(&nsessions, 1, __ATOMIC_RELAXED);
	}
	r->sid = sid;
	r->worker = worker;
	snprintf(r->addr, sizeof(r->addr), "%s", addr);
	pthread_mutex_unlock(&s->lock);
	return replaced;
}

int
sm_move(const jid *full, uint64_t old_sid, uint64_t sid, unsigned worker, const char *addr)
{
	uint64_t h = sm_hash(full->bare);
	struct sm_shard *s = shard_of(h);
	struct sm_user *u;
	struct sm_res *r;
	int rc = -1;

	pthread_mutex_lock(&s->lock);
	u = user_find(s, h, full->bare);
	if (u != NULL && (r = res_find(u, full->resource)) != NULL && r->sid == old_sid) {
		r->sid = sid;
		r->worker = worker;
		snprintf(r->addr, sizeof(r->addr), "%s", addr);
		rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void
sm_unbind(const jid *full, uint64_t sid)
{
	uint64_t h = sm_hash(full->bare);
	struct sm_shard *s = shard_of(h);
	struct sm_user *u;

	pthread_mutex_lock(&s->lock);
	u = user_find(s, h, full->bare);
	if (u != NULL) {
		for (size_t i = 0; i < u->nres; i++) {
			if (u->res[i].sid != sid || strcmp(u->res[i].resource, full->resource) != 0)
				continue;
			free(u->res[i].resource);
			xml_elem_unref(u->res[i].presence);
			u->res[i] = u->res[--u->nres];
			__atomic_sub_fetch(&nsessions, 1, __ATOMIC_RELAXED);
			break;
		}
		if (u->nres == 0) {
			user_unlink(s, u);
			user_free(u);
		}
	}
	pthread_mutex_unlock(&s->lock);
}

void
sm_set_presence(const jid *full, uint64_t sid, int available, int priority,
    xml_elem *presence)
{
	uint64_t h = sm_hash(full->bare);
	struct sm_shard *s = shard_of(h);
	struct sm_user *u;
	struct sm_res *r;
	/* A copy sized to the stanza, not the parse arena it came in (2 KiB):
	 * it stays for the whole session. Made before taking the lock. */
	xml_elem *copy = available && presence != NULL ? xml_elem_copy(presence) : NULL;
	xml_elem *old = copy;

	pthread_mutex_lock(&s->lock);
	u = user_find(s, h, full->bare);
	if (u != NULL && (r = res_find(u, full->resource)) != NULL && r->sid == sid) {
		r->available = available;
		r->priority = priority;
		old = r->presence;
		r->presence = copy;
	}
	pthread_mutex_unlock(&s->lock);
	xml_elem_unref(old);
}

/* The entry of resource full if it is still session sid's, with its
 * shard locked (the caller unlocks *s_r); else NULL, nothing locked. */
static struct sm_res *
res_lock(const jid *full, uint64_t sid, struct sm_shard **s_r)
{
	uint64_t h = sm_hash(full->bare);
	struct sm_shard *s = shard_of(h);
	struct sm_user *u;
	struct sm_res *r;

	pthread_mutex_lock(&s->lock);
	u = user_find(s, h, full->bare);
	if (u != NULL && (r = res_find(u, full->resource)) != NULL && r->sid == sid) {
		*s_r = s;
		return r;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

void
sm_set_flags(const jid *full, uint64_t sid, unsigned mask, unsigned value)
{
	struct sm_shard *s;
	struct sm_res *r = res_lock(full, sid, &s);

	if (r != NULL) {
		r->flags = (r->flags & ~mask) | (value & mask);
		pthread_mutex_unlock(&s->lock);
	}
}

unsigned
sm_flags(const jid *full, uint64_t sid)
{
	struct sm_shard *s;
	struct sm_res *r = res_lock(full, sid, &s);
	unsigned flags = 0;

	if (r != NULL) {
		flags = r->flags;
		pthread_mutex_unlock(&s->lock);
	}
	return flags;
}

void
sm_set_ack_wait(const jid *full, uint64_t sid, uint64_t since_ms)
{
	struct sm_shard *s;
	struct sm_res *r = res_lock(full, sid, &s);

	if (r != NULL) {
		r->ack_wait_ms = since_ms;
		pthread_mutex_unlock(&s->lock);
	}
}

size_t
sm_resources(const jid *bare, sm_resource_fn fn, void *ud)
{
	uint64_t h = sm_hash(bare->bare);
	struct sm_shard *s = shard_of(h);
	struct sm_user *u;
	struct sm_resource local[4], *v = local;
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	u = user_find(s, h, bare->bare);
	if (u != NULL && u->nres > sizeof(local) / sizeof(local[0]))
		v = calloc(u->nres, sizeof(*v));
	for (size_t i = 0; u != NULL && v != NULL && i < u->nres; i++) {
		struct sm_res *r = &u->res[i];

		snprintf(v[n].full, sizeof(v[n].full), "%s/%s", u->bare, r->resource);
		v[n].resource = v[n].full + strlen(u->bare) + 1;
		v[n].sid = r->sid;
		v[n].worker = r->worker;
		v[n].available = r->available;
		v[n].priority = r->priority;
		v[n].flags = r->flags;
		v[n].ack_wait_ms = r->ack_wait_ms;
		n++;
	}
	pthread_mutex_unlock(&s->lock);
	/* Outside the lock: fn may route. */
	for (size_t i = 0; i < n; i++)
		fn(&v[i], ud);
	if (v != local)
		free(v);
	return n;
}

size_t
sm_session_count(void)
{
	return __atomic_load_n(&nsessions, __ATOMIC_RELAXED);
}

/*
 * Collects the sessions of bare that pass the filter into out (up to max),
 * returning how many passed. mode:
 *   SEL_ALL        every bound resource
 *   SEL_AVAILABLE  available resources
 *   SEL_NONNEG     available with priority >= 0
 *   SEL_TOP        available with the highest non-negative priority
 */
enum sel { SEL_ALL, SEL_AVAILABLE, SEL_NONNEG, SEL_TOP };

static size_t
sm_select(const char *bare, const char *resource, enum sel mode,
    struct sm_target *out, size_t max, int *exists_r)
{
	uint64_t h = sm_hash(bare);
	struct sm_shard *s = shard_of(h);
	struct sm_user *u;
	size_t n = 0;
	int top = -129;

	pthread_mutex_lock(&s->lock);
	u = user_find(s, h, bare);
	if (exists_r != NULL)
		*exists_r = u != NULL;
	if (u != NULL && mode == SEL_TOP)
		for (size_t i = 0; i < u->nres; i++)
			if (u->res[i].available && u->res[i].priority >= 0 &&
			    u->res[i].priority > top)
				top = u->res[i].priority;
	for (size_t i = 0; u != NULL && i < u->nres; i++) {
		struct sm_res *r = &u->res[i];

		if (resource != NULL && strcmp(r->resource, resource) != 0)
			continue;
		switch (mode) {
		case SEL_ALL:
			break;
		case SEL_AVAILABLE:
			if (!r->available)
				continue;
			break;
		case SEL_NONNEG:
			if (!r->available || r->priority < 0)
				continue;
			break;
		case SEL_TOP:
			if (!r->available || r->priority != top)
				continue;
			break;
		}
		if (n < max)
			out[n] = (struct sm_target){ r->sid, r->worker };
		n++;
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t
sm_find(const jid *j, struct sm_target *out, size_t max)
{
	return sm_select(j->bare, j->resource, SEL_ALL, out, max, NULL);
}

/* Delivers st to the selected sessions of bare; returns how many. */
static size_t
deliver_selected(xml_elem *st, const char *bare, const char *resource, enum sel mode,
    uint64_t skip_sid)
{
	struct sm_target local[SM_LOCAL_TARGETS], *t = local;
	size_t n, got;

	n = sm_select(bare, resource, mode, local, SM_LOCAL_TARGETS, NULL);
	if (n > SM_LOCAL_TARGETS) {
		/* Rare: a user with more resources than fit on the stack. */
		t = calloc(n, sizeof(*t));
		if (t == NULL)
			return 0;
		got = sm_select(bare, resource, mode, t, n, NULL);
		n = got < n ? got : n;
	}
	got = 0;
	for (size_t i = 0; i < n; i++) {
		if (t[i].sid == skip_sid)
			continue;
		/* One of several: a copy that finds its session gone is not
		 * routed again (router/session.h). */
		if (n > 1)
			session_deliver_copy(t[i].worker, t[i].sid, st);
		else
			session_deliver(t[i].worker, t[i].sid, st);
		got++;
	}
	if (got > 0)
		metrics_inc(METRIC_ROUTED_DELIVERED);
	if (t != local)
		free(t);
	return got;
}

void
sm_presence_to_own_resources(xml_elem *st, const jid *full, uint64_t sid, int initial)
{
	uint64_t h = sm_hash(full->bare);
	struct sm_shard *s = shard_of(h);
	struct sm_user *u;
	xml_elem *others[SM_LOCAL_TARGETS];
	size_t nothers = 0;
	unsigned self_worker = 0;

	(void)deliver_selected(st, full->bare, NULL, SEL_AVAILABLE, sid);
	if (!initial)
		return;
	/* RFC 6121 4.4.2: a newly available resource learns the presence of
	 * the user's other available resources. */
	pthread_mutex_lock(&s->lock);
	u = user_find(s, h, full->bare);
	for (size_t i = 0; u != NULL && i < u->nres; i++) {
		if (u->res[i].sid == sid)
			self_worker = u->res[i].worker;
		else if (u->res[i].available && u->res[i].presence != NULL &&
		    nothers < SM_LOCAL_TARGETS)
			others[nothers++] = xml_elem_ref(u->res[i].presence);
	}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < nothers; i++) {
		session_deliver(self_worker, sid, others[i]);
		xml_elem_unref(others[i]);
	}
}

static int
user_exists(const jid *to)
{
	struct sm_target t;
	int exists = 0;

	(void)sm_select(to->bare, NULL, SEL_ALL, &t, 1, &exists);
	if (exists)
		return 1;
	return account_exists(to->node, to->domain) == 1;
}

static int
is_subscription(const char *type)
{
	return strcmp(type, "subscribe") == 0 || strcmp(type, "subscribed") == 0 ||
	    strcmp(type, "unsubscribe") == 0 || strcmp(type, "unsubscribed") == 0;
}

/* RFC 6121 8.5.2: to a bare JID. */
static void
route_bare(xml_elem *st, const jid *from, const jid *to, enum stanza_kind kind,
    const char *type)
{
	size_t n;

	switch (kind) {
	case STANZA_MESSAGE:
		/* 8.5.2.1.1 and 8.5.2.2.1. */
		if (strcmp(type, "error") == 0)
			return;
		if (strcmp(type, "groupchat") == 0) {
			router_bounce(st, "service-unavailable", NULL);
			return;
		}
		if (strcmp(type, "headline") == 0) {
			(void)deliver_selected(st, to->bare, NULL, SEL_NONNEG, 0);
			return;
		}
		/* normal, chat and unknown types (RFC 6121 5.2.2: treated
		 * as normal): the resources with the highest non-negative
		 * priority. */
		n = deliver_selected(st, to->bare, NULL, SEL_TOP, 0);
		if (n > 0)
			return;
		/* No resource to take it (8.5.2.2.1): offline storage
		 * belongs to a module (offline_message returns STOP once the
		 * message is stored); without one, the sender learns it was
		 * not delivered. */
		if (hooks_any(XMPPD_HOOK_OFFLINE_MESSAGE)) {
			struct xmppd_packet_args pa = { st, from, to, NULL };
			enum xmppd_result r = hooks_run(XMPPD_HOOK_OFFLINE_MESSAGE, to->domain, &pa);

			if (r != XMPPD_CONTINUE) {
				metrics_inc(METRIC_ROUTED_OFFLINE);
				return;
			}
		}
		router_bounce(st, "service-unavailable", NULL);
		return;
	case STANZA_PRESENCE:
		/* 8.5.2.1.2 / 8.5.2.2.2. Subscriptions and probes are the
		 * roster module's (RFC 6121 3, 4.3): STOP when it took one. */
		if ((is_subscription(type) || strcmp(type, "probe") == 0) &&
		    hooks_any(XMPPD_HOOK_ROSTER_IN_SUBSCRIPTION)) {
			struct xmppd_packet_args pa = { st, from, to, NULL };

			if (hooks_run(XMPPD_HOOK_ROSTER_IN_SUBSCRIPTION, to->domain, &pa) !=
			    XMPPD_CONTINUE)
				return;
		}
		if (strcmp(type, "probe") == 0)
			return;          /* no roster module: nobody answers */
		if (is_subscription(type)) {
			(void)deliver_selected(st, to->bare, NULL, SEL_NONNEG, 0);
			return;
		}
		if (strcmp(type, "error") == 0 || strcmp(type, "available") == 0 ||
		    strcmp(type, "unavailable") == 0)
			(void)deliver_selected(st, to->bare, NULL, SEL_AVAILABLE, 0);
		return;
	case STANZA_IQ:
		/* 8.5.2.1.3: handled by the server on the user's behalf. */
		router_iq_handle(st, from, to);
		return;
	default:
		return;
	}
}

void
sm_route(xml_elem *st, const jid *from, const jid *to)
{
	enum stanza_kind kind = stanza_kind(st);
	const char *type = stanza_type(st);

	if (type == NULL)
		type = "";
	if (to->node == NULL) {
		/* Addressed to the server itself (RFC 6120 10.5.1): IQs go
		 * to the handlers; a message to the server has no reader
		 * and presence to it is not for anyone. */
		if (kind == STANZA_IQ)
			router_iq_handle(st, from, to);
		else if (kind == STANZA_MESSAGE && strcmp(type, "error") != 0)
			router_bounce(st, "service-unavailable", NULL);
		return;
	}
	if (!user_exists(to)) {
		/* RFC 6121 8.5.1: IQs and messages are answered with
		 * service-unavailable, presence is ignored. */
		if (kind == STANZA_IQ || (kind == STANZA_MESSAGE &&
		    strcmp(type, "error") != 0))
			router_bounce(st, "service-unavailable", NULL);
		return;
	}
	if (to->resource == NULL) {
		route_bare(st, from, to, kind, type);
		return;
	}
	/* Subscription presence and probes concern the account, not a
	 * resource: handled as if sent to the bare JID (RFC 6121 3.1.3,
	 * 4.3.1), even when the resource is bound. */
	if (kind == STANZA_PRESENCE && (is_subscription(type) || strcmp(type, "probe") == 0)) {
		jid bare;

		if (jid_bare_of(&bare, to) == 0) {
			route_bare(st, from, &bare, kind, type);
			jid_free(&bare);
		}
		return;
	}
	/* RFC 6121 8.5.3.1: a full JID whose resource is bound gets
	 * everything, whatever its priority. */
	if (deliver_selected(st, to->bare, to->resource, SEL_ALL, 0) > 0)
		return;
	/* 8.5.3.2: no such resource. */
	switch (kind) {
	case STANZA_MESSAGE:
		/* 8.5.3.2.1: chat falls back to the bare JID; normal,
		 * groupchat and headline are bounced; errors dropped. */
		if (strcmp(type, "chat") == 0)
			route_bare(st, from, to, kind, type);
		else if (strcmp(type, "error") != 0)
			router_bounce(st, "service-unavailable", NULL);
		return;
	case STANZA_PRESENCE:
		/* 8.5.3.2.2: subscription-related presence is handled as if
		 * to the bare JID; the rest is ignored. */
		if (is_subscription(type) || strcmp(type, "probe") == 0) {
			jid bare;

			if (jid_bare_of(&bare, to) == 0) {
				route_bare(st, from, &bare, kind, type);
				jid_free(&bare);
			}
		}
		return;
	case STANZA_IQ:
		/* 8.5.3.2.3. */
		router_bounce(st, "service-unavailable", NULL);
		return;
	default:
		return;
	}
}

void
sm_foreach(sm_foreach_fn fn, void *ud)
{
	for (size_t i = 0; i < SM_SHARDS; i++) {
		struct sm_shard *s = &shards[i];

		pthread_mutex_lock(&s->lock);
		for (size_t b = 0; b < s->nbuckets; b++)
			for (struct sm_user *u = s->buckets[b]; u != NULL; u = u->next)
				for (size_t r = 0; r < u->nres; r++) {
					char full[3 * 1024 + 4];

					snprintf(full, sizeof(full), "%s/%s", u->bare,
					    u->res[r].resource);
					fn(ud, full, u->res[r].worker, u->res[r].addr,
					    u->res[r].priority, u->res[r].available);
				}
		pthread_mutex_unlock(&s->lock);
	}
}

size_t
sm_send_to_resources(const jid *bare, const xml_elem *st, int available_only)
{
	uint64_t h = sm_hash(bare->bare);
	struct sm_shard *s = shard_of(h);
	struct sm_user *u;
	struct {
		struct sm_target t;
		char full[3 * 1024 + 4];
	} *v = NULL;
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	u = user_find(s, h, bare->bare);
	if (u != NULL && (v = calloc(u->nres, sizeof(*v))) != NULL)
		for (size_t i = 0; i < u->nres; i++) {
			if (available_only && !u->res[i].available)
				continue;
			v[n].t = (struct sm_target){ u->res[i].sid, u->res[i].worker };
			snprintf(v[n].full, sizeof(v[n].full), "%s/%s", u->bare, u->res[i].resource);
			n++;
		}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		xml_elem *c = xml_elem_copy(st);

		xml_attr_set(c, "to", v[i].full);
		session_deliver(v[i].t.worker, v[i].t.sid, c);
		xml_elem_unref(c);
	}
	free(v);
	return n;
}

size_t
sm_user_presences(const jid *bare, void (*fn)(const xml_elem *p, void *ud), void *ud)
{
	uint64_t h = sm_hash(bare->bare);
	struct sm_shard *s = shard_of(h);
	struct sm_user *u;
	xml_elem *local[SM_LOCAL_TARGETS], **v = local;
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	u = user_find(s, h, bare->bare);
	if (u != NULL && u->nres > SM_LOCAL_TARGETS)
		v = calloc(u->nres, sizeof(*v));
	for (size_t i = 0; u != NULL && v != NULL && i < u->nres; i++)
		if (u->res[i].available && u->res[i].presence != NULL)
			v[n++] = xml_elem_ref(u->res[i].presence);
	pthread_mutex_unlock(&s->lock);
	/* Outside the lock: fn may route. */
	for (size_t i = 0; i < n; i++) {
		fn(v[i], ud);
		xml_elem_unref(v[i]);
	}
	if (v != local)
		free(v);
	return n;
}
