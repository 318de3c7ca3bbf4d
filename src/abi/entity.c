/*
 * entity.c - entities without a connection and the services modules
 * provide to each other (hooks/xmppd.h, ABI 1.5):
 *
 *  - xmppd_entity_post: run a module's function on the worker that owns
 *    an entity (core/placement.c), as its stanzas are;
 *  - xmppd_caps_has_feature: entity capabilities (XEP-0115), answered by
 *    the module that keeps them (xmppd_caps_provide);
 *  - xmppd_pubsub_request: a module's request to a pubsub node, answered
 *    by the module that keeps nodes (xmppd_pubsub_provide) from the node's
 *    worker and handed back to the asker's;
 *  - xmppd_push_notify (ABI 1.7): push notifications (XEP-0357) for a
 *    message that concerns an account, sent by the module that keeps
 *    registrations (xmppd_push_provide).
 *
 * Posted functions and pubsub requests count against the module's store
 * work, so its unload waits for them (module.c, store_quiesce).
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "abi/module.h"
#include "core/astore.h"
#include "core/log.h"
#include "core/placement.h"
#include "core/worker.h"
#include "hooks/xmppd.h"
#include "xml/xml.h"
#include "xmpp/jid.h"

static pthread_mutex_t prov_lock = PTHREAD_MUTEX_INITIALIZER;
static xmppd_ctx *caps_owner, *pubsub_owner, *push_owner;
static xmppd_caps_provider_fn caps_provider;
static xmppd_pubsub_provider_fn pubsub_provider;
static xmppd_push_provider_fn push_provider;

/* ---------------------------------------------------------------- */
/* Workers and entities                                               */

XMPPD_API int
xmppd_worker_id(void)
{
	struct worker *w = worker_self();

	return w != NULL ? (int)worker_id(w) : -1;
}

XMPPD_API unsigned
xmppd_worker_count(void)
{
	return worker_count();
}

XMPPD_API unsigned
xmppd_entity_worker(const char *key)
{
	return key != NULL ? placement_worker(key, strlen(key)) : 0;
}

struct epost {
	xmppd_entity_fn fn;
	void *ud;
	xmppd_ctx *ctx;
};

static void
epost_task(struct worker *w, void *a, uint64_t b)
{
	struct epost *p = a;
	xmppd_ctx *ctx = p->ctx;

	(void)w;
	(void)b;
	p->fn(p->ud);
	free(p);
	__atomic_sub_fetch(&module_store_owner(ctx)->pending, 1, __ATOMIC_RELEASE);
}

XMPPD_API int
xmppd_entity_post(xmppd_ctx *ctx, const char *key, xmppd_entity_fn fn, void *ud)
{
	struct epost *p;

	if (ctx == NULL || key == NULL || fn == NULL || module_unloading(ctx) ||
	    (p = malloc(sizeof(*p))) == NULL)
		return -1;
	p->fn = fn;
	p->ud = ud;
	p->ctx = ctx;
	__atomic_add_fetch(&module_store_owner(ctx)->pending, 1, __ATOMIC_RELAXED);
	worker_post(worker_get(placement_worker(key, strlen(key))), epost_task, p, 0);
	return 0;
}

/* ---------------------------------------------------------------- */
/* Providers                                                          */

static int
provide(xmppd_ctx *ctx, xmppd_ctx **owner, void *fnp, void *fn, const char *what)
{
	if (ctx == NULL || fn == NULL)
		return -1;
	pthread_mutex_lock(&prov_lock);
	if (*owner != NULL && *owner != ctx) {
		pthread_mutex_unlock(&prov_lock);
		log_error("module", "%s: %s are provided by %s already", module_name_of(ctx),
		    what, module_name_of(*owner));
		return -1;
	}
	*owner = ctx;
	__atomic_store_n((void **)fnp, fn, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&prov_lock);
	return 0;
}

XMPPD_API int
xmppd_caps_provide(xmppd_ctx *ctx, xmppd_caps_provider_fn fn)
{
	return provide(ctx, &caps_owner, &caps_provider, (void *)fn, "entity capabilities");
}

XMPPD_API int
xmppd_pubsub_provide(xmppd_ctx *ctx, xmppd_pubsub_provider_fn fn)
{
	return provide(ctx, &pubsub_owner, &pubsub_provider, (void *)fn, "pubsub nodes");
}

XMPPD_API int
xmppd_push_provide(xmppd_ctx *ctx, xmppd_push_provider_fn fn)
{
	return provide(ctx, &push_owner, &push_provider, (void *)fn, "push notifications");
}

void
entity_forget_owner(xmppd_ctx *ctx)
{
	/* The loader then waits for every worker to pass a quiescent
	 * point, so no call through the old pointer is still running when
	 * the module is unmapped. */
	pthread_mutex_lock(&prov_lock);
	if (caps_owner == ctx) {
		caps_owner = NULL;
		__atomic_store_n(&caps_provider, NULL, __ATOMIC_RELEASE);
	}
	if (pubsub_owner == ctx) {
		pubsub_owner = NULL;
		__atomic_store_n(&pubsub_provider, NULL, __ATOMIC_RELEASE);
	}
	if (push_owner == ctx) {
		push_owner = NULL;
		__atomic_store_n(&push_provider, NULL, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&prov_lock);
}

XMPPD_API int
xmppd_caps_has_feature(const xmppd_jid *full, const char *feature)
{
	xmppd_caps_provider_fn p = __atomic_load_n(&caps_provider, __ATOMIC_ACQUIRE);

	if (p == NULL || full == NULL || feature == NULL)
		return -1;
	return p(full, feature);
}

XMPPD_API int
xmppd_push_notify(xmppd_ctx *ctx, const xmppd_jid *user, const xmppd_elem *msg)
{
	xmppd_push_provider_fn p = __atomic_load_n(&push_provider, __ATOMIC_ACQUIRE);

	if (p == NULL || ctx == NULL || user == NULL || msg == NULL)
		return -1;
	return p(user, msg);
}

/* ---------------------------------------------------------------- */
/* Pubsub requests                                                    */

struct preq {
	xmppd_pubsub_fn fn;
	void *ud;
	xmppd_ctx *ctx;
	struct worker *w;
	int failed;                 /* condition holds the error's */
	char condition[48];         /* RFC 6120 conditions are shorter */
	xml_elem *result;           /* a copy, or NULL */
	int answered;
};

static void
preq_task(struct worker *w, void *a, uint64_t b)
{
	struct preq *q = a;
	xmppd_ctx *ctx = q->ctx;

	(void)w;
	(void)b;
	q->fn(q->failed ? q->condition : NULL, (const xmppd_elem *)q->result, q->ud);
	xml_elem_unref(q->result);
	free(q);
	__atomic_sub_fetch(&module_store_owner(ctx)->pending, 1, __ATOMIC_RELEASE);
}

static void
preq_done(const char *condition, const xmppd_elem *result, void *ud)
{
	struct preq *q = ud;

	if (__atomic_exchange_n(&q->answered, 1, __ATOMIC_ACQ_REL)) {
		log_error("module", "a pubsub provider answered a request twice");
		return;
	}
	if (condition != NULL) {
		q->failed = 1;
		if (strlen(condition) >= sizeof(q->condition))
			condition = "undefined-condition";
		memcpy(q->condition, condition, strlen(condition) + 1);
	}
	if (result != NULL && (q->result = xml_elem_copy((const xml_elem *)result)) == NULL &&
	    !q->failed) {
		/* No memory for the result: a failure, not an empty success. */
		q->failed = 1;
		memcpy(q->condition, "resource-constraint", sizeof("resource-constraint"));
	}
	/* Always posted, so never before xmppd_pubsub_request returns. */
	worker_post(q->w, preq_task, q, 0);
}

XMPPD_API int
xmppd_pubsub_request(xmppd_ctx *ctx, const xmppd_jid *actor, const xmppd_jid *service,
    int set, const xmppd_elem *request, xmppd_pubsub_fn fn, void *ud)
{
	struct worker *w = worker_self();
	xmppd_pubsub_provider_fn p = __atomic_load_n(&pubsub_provider, __ATOMIC_ACQUIRE);
	struct preq *q;

	if (w == NULL || ctx == NULL || service == NULL || request == NULL || fn == NULL ||
	    module_unloading(ctx) || (q = calloc(1, sizeof(*q))) == NULL)
		return -1;
	q->fn = fn;
	q->ud = ud;
	q->ctx = ctx;
	q->w = w;
	__atomic_add_fetch(&module_store_owner(ctx)->pending, 1, __ATOMIC_RELAXED);
	if (p == NULL)
		preq_done("service-unavailable", NULL, q);
	else
		p(actor, service, set, request, preq_done, q);
	return 0;
}
