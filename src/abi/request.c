/*
 * request.c - what modules ask of others and hear back from later
 * (hooks/xmppd.h, ABI 1.4):
 *
 *  - xmppd_iq_request: an IQ a module sends (a push notification to an
 *    app server, XEP-0357) whose reply, or a timeout, comes back to it on
 *    the worker that sent it. The router hands us the results and errors
 *    addressed to the server or to a bare JID (router_set_iq_reply), which
 *    nobody else handles (RFC 6121 8.5.2.1.3); a reply is taken only when
 *    its id is one we gave out (random, so not guessable) and it comes
 *    from the address the request went to.
 *  - xmppd_roster_subscription: the subscription between a user and a
 *    contact, answered by the module that keeps rosters
 *    (xmppd_roster_provide).
 *
 * Both count against the asking module's store work (its unload waits for
 * them, as for the store: hooks/xmppd.h) and, the roster query, against
 * the stream that is being handled (core/hold.h), so that a stanza's
 * roster lookup keeps the stream's order.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "abi/module.h"
#include "core/astore.h"
#include "core/hold.h"
#include "core/log.h"
#include "core/worker.h"
#include "hooks/xmppd.h"
#include "router/router.h"
#include "xml/xml.h"
#include "xmpp/jid.h"

/* Bounds: requests waiting at once, and how long one may wait. */
#define REQ_MAX         100000
#define REQ_TIMEOUT_MAX 120000

/* ---------------------------------------------------------------- */
/* IQ requests                                                        */

struct req {
	struct req *next;           /* in its hash bucket */
	char id[48];
	char *to;                   /* the addressee, as the reply's from must be */
	struct worker *w;
	struct event *timer;        /* on w */
	xmppd_ctx *ctx;
	xmppd_iq_reply_fn fn;       /* NULL once its module unloads */
	void *ud;
	int taken;                  /* out of the table: a reply or the timer has it */
};

#define REQ_BUCKETS 4096

static pthread_mutex_t req_lock = PTHREAD_MUTEX_INITIALIZER;
static struct req *req_table[REQ_BUCKETS];
static size_t req_count;
static uint64_t req_seq;

static size_t
req_hash(const char *id)
{
	size_t h = 5381;

	for (; *id != '\0'; id++)
		h = h * 33 + (unsigned char)*id;
	return h % REQ_BUCKETS;
}

/* Takes the request id out of the table (req_lock held). */
static struct req *
req_unlink(const char *id)
{
	struct req **pp = &req_table[req_hash(id)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->id, id) == 0) {
			struct req *r = *pp;

			*pp = r->next;
			req_count--;
			r->taken = 1;
			return r;
		}
	return NULL;
}

static void
req_finish(struct req *r, const xml_elem *reply)
{
	xmppd_iq_reply_fn fn;
	xmppd_ctx *ctx = r->ctx;

	if (r->timer != NULL)
		event_free(r->timer);
	pthread_mutex_lock(&req_lock);
	fn = r->fn;
	pthread_mutex_unlock(&req_lock);
	if (fn != NULL)
		fn((const xmppd_elem *)reply, r->ud);
	free(r->to);
	free(r);
	/* Last: the module may be unmapped once this reaches 0. */
	__atomic_sub_fetch(&module_store_owner(ctx)->pending, 1, __ATOMIC_RELEASE);
}

static void
reply_task(struct worker *w, void *a, uint64_t b)
{
	struct req *r = a;
	xml_elem *reply = (xml_elem *)(uintptr_t)b;

	(void)w;
	req_finish(r, reply);
	xml_elem_unref(reply);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct req *r = arg, *mine;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&req_lock);
	mine = r->taken ? NULL : req_unlink(r->id);
	pthread_mutex_unlock(&req_lock);
	/* Else a reply took it and its task is on its way here. */
	if (mine != NULL)
		req_finish(r, NULL);
}

/* The router's: a result or error to the server or a bare JID. */
static int
iq_reply(xml_elem *iq, const jid *from)
{
	const char *id = xml_attr_get(iq, "id");
	struct req *r;

	if (id == NULL || strncmp(id, "xmppd-", 6) != 0)
		return 0;
	pthread_mutex_lock(&req_lock);
	r = req_unlink(id);
	if (r != NULL && (from == NULL || from->full == NULL || strcmp(from->full, r->to) != 0)) {
		/* Not from whom we asked (RFC 6120 8.1.2.1's spoofing): the
		 * request waits on. */
		struct req **pp = &req_table[req_hash(id)];

		r->taken = 0;
		r->next = *pp;
		*pp = r;
		req_count++;
		r = NULL;
	}
	pthread_mutex_unlock(&req_lock);
	if (r == NULL)
		return 0;
	worker_post(r->w, reply_task, r, (uint64_t)(uintptr_t)xml_elem_ref(iq));
	return 1;
}

XMPPD_API int
xmppd_iq_request(xmppd_ctx *ctx, xmppd_elem *iq_take, uint64_t timeout_ms,
    xmppd_iq_reply_fn fn, void *ud)
{
	xml_elem *iq = (xml_elem *)iq_take;
	struct worker *w = worker_self();
	const char *to = iq != NULL ? xml_attr_get(iq, "to") : NULL;
	const char *type = iq != NULL ? xml_attr_get(iq, "type") : NULL;
	const char *err;
	unsigned char rnd[8];
	struct req *r;
	jid jto;
	size_t h;

	if (w == NULL || ctx == NULL || fn == NULL || to == NULL || type == NULL ||
	    (strcmp(type, "get") != 0 && strcmp(type, "set") != 0) ||
	    xml_attr_get(iq, "from") == NULL || module_unloading(ctx) ||
	    jid_parse(&jto, to, strlen(to), &err) < 0) {
		xml_elem_unref(iq);
		return -1;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL || (r->to = strdup(jto.full)) == NULL ||
	    RAND_bytes(rnd, sizeof(rnd)) != 1) {
		jid_free(&jto);
		if (r != NULL)
			free(r->to);
		free(r);
		xml_elem_unref(iq);
		return -1;
	}
	jid_free(&jto);
	snprintf(r->id, sizeof(r->id), "xmppd-%llx-%02x%02x%02x%02x%02x%02x%02x%02x",
	    (unsigned long long)__atomic_add_fetch(&req_seq, 1, __ATOMIC_RELAXED),
	    rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	r->w = w;
	r->ctx = ctx;
	r->fn = fn;
	r->ud = ud;
	if (timeout_ms == 0 || timeout_ms > REQ_TIMEOUT_MAX)
		timeout_ms = REQ_TIMEOUT_MAX;
	if ((r->timer = evtimer_new(worker_base(w), timeout_cb, r)) == NULL) {
		free(r->to);
		free(r);
		xml_elem_unref(iq);
		return -1;
	}
	pthread_mutex_lock(&req_lock);
	if (req_count >= REQ_MAX) {
		pthread_mutex_unlock(&req_lock);
		log_warning("module", "%s: %u IQ requests are waiting; refused",
		    module_name_of(ctx), REQ_MAX);
		event_free(r->timer);
		free(r->to);
		free(r);
		xml_elem_unref(iq);
		return -1;
	}
	h = req_hash(r->id);
	r->next = req_table[h];
	req_table[h] = r;
	req_count++;
	pthread_mutex_unlock(&req_lock);
	__atomic_add_fetch(&module_store_owner(ctx)->pending, 1, __ATOMIC_RELAXED);
	{
		struct timeval tv = { (time_t)(timeout_ms / 1000),
		    (suseconds_t)(timeout_ms % 1000) * 1000 };

		evtimer_add(r->timer, &tv);
	}
	xml_attr_set(iq, "id", r->id);
	/* A reply that comes while this routes is posted to w: fn runs
	 * after we return. */
	xmppd_route((xmppd_elem *)iq);
	xml_elem_unref(iq);
	return 0;
}

/* ---------------------------------------------------------------- */
/* The roster query                                                   */

static xmppd_roster_provider_fn roster_provider;
static xmppd_ctx *roster_owner;

XMPPD_API int
xmppd_roster_provide(xmppd_ctx *ctx, xmppd_roster_provider_fn fn)
{
	if (ctx == NULL || fn == NULL)
		return -1;
	pthread_mutex_lock(&req_lock);
	if (roster_owner != NULL && roster_owner != ctx) {
		pthread_mutex_unlock(&req_lock);
		log_error("module", "%s: rosters are provided by %s already",
		    module_name_of(ctx), module_name_of(roster_owner));
		return -1;
	}
	roster_owner = ctx;
	__atomic_store_n(&roster_provider, fn, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&req_lock);
	return 0;
}

struct rquery {
	xmppd_roster_sub_fn fn;
	void *ud;
	xmppd_ctx *ctx;
	struct hold *hold;
	struct worker *w;
	int returned;               /* the provider has returned */
	int answered;               /* done was called */
	int sub;
};

static void
rquery_finish(struct rquery *q)
{
	struct hold *prev = hold_enter(q->hold);
	xmppd_ctx *ctx = q->ctx;

	/* Work fn starts is still the stanza's (core/hold.h). */
	q->fn(q->sub, q->ud);
	hold_leave(prev);
	hold_release(q->hold);
	free(q);
	__atomic_sub_fetch(&module_store_owner(ctx)->pending, 1, __ATOMIC_RELEASE);
}

static void
rquery_task(struct worker *w, void *a, uint64_t b)
{
	(void)w;
	(void)b;
	rquery_finish(a);
}

static void
rquery_done(int sub, void *ud)
{
	struct rquery *q = ud;

	if (q->answered) {
		log_error("module", "a roster provider answered a query twice");
		return;
	}
	q->answered = 1;
	q->sub = sub;
	/* Never before xmppd_roster_subscription has returned. */
	if (q->returned)
		rquery_finish(q);
}

XMPPD_API int
xmppd_roster_subscription(xmppd_ctx *ctx, const xmppd_jid *user, const xmppd_jid *contact,
    xmppd_roster_sub_fn fn, void *ud)
{
	struct worker *w = worker_self();
	xmppd_roster_provider_fn p = __atomic_load_n(&roster_provider, __ATOMIC_ACQUIRE);
	struct rquery *q;

	if (w == NULL || ctx == NULL || fn == NULL || user == NULL || contact == NULL ||
	    (q = calloc(1, sizeof(*q))) == NULL)
		return -1;
	q->fn = fn;
	q->ud = ud;
	q->ctx = ctx;
	q->w = w;
	q->hold = hold_take();
	__atomic_add_fetch(&module_store_owner(ctx)->pending, 1, __ATOMIC_RELAXED);
	if (p == NULL) {
		q->answered = 1;
		q->sub = -1;
	} else {
		jid ub, cb;

		/* Bare JIDs, whatever the caller passed. */
		if (jid_bare_of(&ub, (const jid *)user) < 0) {
			q->answered = 1;
			q->sub = -1;
		} else if (jid_bare_of(&cb, (const jid *)contact) < 0) {
			jid_free(&ub);
			q->answered = 1;
			q->sub = XMPPD_SUB_NONE;
		} else {
			p((const xmppd_jid *)&ub, (const xmppd_jid *)&cb, rquery_done, q);
			jid_free(&ub);
			jid_free(&cb);
		}
	}
	q->returned = 1;
	if (q->answered)
		worker_post(w, rquery_task, q, 0);
	return 0;
}

/* ---------------------------------------------------------------- */

void
request_init(void)
{
	router_set_iq_reply(iq_reply);
}

static void
cancel_task(struct worker *w, void *a, uint64_t b)
{
	(void)w;
	(void)b;
	req_finish(a, NULL);        /* fn is NULL: only freed */
}

void
request_forget_owner(xmppd_ctx *ctx)
{
	pthread_mutex_lock(&req_lock);
	for (size_t i = 0; i < REQ_BUCKETS; i++) {
		struct req **pp = &req_table[i];

		while (*pp != NULL) {
			struct req *r = *pp;

			if (r->ctx != ctx) {
				pp = &r->next;
				continue;
			}
			/* Out of the table (its timer then does nothing), and
			 * freed on its worker, so that the unload does not
			 * wait for its timeout. */
			*pp = r->next;
			req_count--;
			r->taken = 1;
			r->fn = NULL;
			worker_post(r->w, cancel_task, r, 0);
		}
	}
	/* Replies already on their way still reach the module: its unload
	 * waits for them (they count as its store work). */
	if (roster_owner == ctx) {
		roster_owner = NULL;
		__atomic_store_n(&roster_provider, NULL, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&req_lock);
}
