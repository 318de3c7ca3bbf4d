/*
 * mod_entityprobe - a test module (t1600-entity-abi) for ABI 1.5's
 * entities and providers, driven by IQs to the server:
 *
 *   <post xmlns='urn:xmppd:test:entity' key='K'/>   (get)
 *     xmppd_entity_post(K): the reply, sent from the posted function,
 *     says on which worker it ran, which one xmppd_entity_worker(K)
 *     names, and whether the call had returned before it ran:
 *     <post worker='W' owner='O' returned='1' order='N'/>. Several posts
 *     of one key from one IQ run in order (order counts them).
 *   <pubsub xmlns='urn:xmppd:test:entity'/>        (get)
 *     xmppd_pubsub_request with a <pubsub/> payload: the reply carries
 *     the condition (or 'none') and the result's first child name, and
 *     whether the callback ran on the asking worker after the call
 *     returned: <pubsub condition='C' result='R' same='1' returned='1'/>.
 *   <caps xmlns='urn:xmppd:test:entity' feature='F'/>  (get)
 *     <caps has='N'/>: xmppd_caps_has_feature(sender, F).
 *   <hooked xmlns='urn:xmppd:test:entity'/>          (get)
 *     what caps_presence last ran with for the sender's resource:
 *     <hooked runs='N' to='BARE or -' available='0|1' has='H'/>, H being
 *     xmppd_caps_has_feature(from, "urn:xmpp:test:node+notify") during
 *     the run; runs counts the runs for that resource.
 *   <pubsub xmlns='urn:xmppd:test:entity' service='S' [set='1'] [as='me']>
 *     REQUEST</pubsub>                               (get; t1620)
 *     xmppd_pubsub_request(REQUEST) to S as the server (or the sender):
 *     the reply as above, with the provider's result (or its error's
 *     application element) copied in.
 *   <event xmlns='urn:xmppd:test:entity'/>           (get; t1620)
 *     what pubsub_event last ran with: <event kind='K' node='N' item='I'
 *     publisher='P or -' payload='name of the item's first child or -'
 *     owner='1' runs='R'/>, owner saying it ran on the worker
 *     xmppd_entity_worker names for SERVICE/NODE.
 *
 * With option `provide: true` it is the pubsub provider (answering from
 * another worker, through xmppd_entity_post, with <pubsub><echo/></pubsub>
 * or, for a request with a <fail/> child, item-not-found) and the caps
 * provider (a feature "yes" is 1, "no" 0, else -1).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#define NS "urn:xmppd:test:entity"
#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define POSTS 4

static const struct xmppd_option options[] = {
	{ "provide", XMPPD_OPT_BOOL, "false", 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

static xmppd_ctx *module_ctx;

/* caps_presence runs, by resource (t1610 has about thirty). */
#define HOOKED_MAX 64
static pthread_mutex_t hooked_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hooked {
	char from[256], to[256];
	int runs, available, has;
} hooked[HOOKED_MAX];

static struct {
	int kind, owner, runs;
	char node[128], item[128], publisher[128], payload[64];
} pevent;

static enum xmppd_result
on_pubsub_event(void *args, void *ud)
{
	struct xmppd_pubsub_event_args *a = args;
	const xmppd_elem *first = a->item != NULL ? xmppd_elem_first_child(a->item) : NULL;
	char key[512];

	(void)ud;
	snprintf(key, sizeof(key), "%s/%s", xmppd_jid_bare(a->service), a->node);
	pthread_mutex_lock(&hooked_lock);
	pevent.kind = a->kind;
	pevent.owner = (int)xmppd_entity_worker(key) == xmppd_worker_id();
	pevent.runs++;
	snprintf(pevent.node, sizeof(pevent.node), "%s", a->node);
	snprintf(pevent.item, sizeof(pevent.item), "%s", a->item_id ? a->item_id : "-");
	snprintf(pevent.publisher, sizeof(pevent.publisher), "%s",
	    a->publisher ? xmppd_jid_bare(a->publisher) : "-");
	snprintf(pevent.payload, sizeof(pevent.payload), "%s",
	    first != NULL ? xmppd_elem_name(first) : "-");
	pthread_mutex_unlock(&hooked_lock);
	return XMPPD_CONTINUE;
}

static enum xmppd_result
on_caps_presence(void *args, void *ud)
{
	struct xmppd_caps_presence_args *a = args;
	const char *from = xmppd_jid_full(a->from);
	int has = xmppd_caps_has_feature(a->from, "urn:xmpp:test:node+notify");

	(void)ud;
	pthread_mutex_lock(&hooked_lock);
	for (int i = 0; i < HOOKED_MAX; i++) {
		struct hooked *h = &hooked[i];

		if (h->from[0] != '\0' && strcmp(h->from, from) != 0)
			continue;
		if (strlen(from) >= sizeof(h->from))
			break;
		memcpy(h->from, from, strlen(from) + 1);
		snprintf(h->to, sizeof(h->to), "%s", a->to != NULL ? xmppd_jid_bare(a->to) : "-");
		h->runs++;
		h->available = a->available;
		h->has = has;
		break;
	}
	pthread_mutex_unlock(&hooked_lock);
	return XMPPD_CONTINUE;
}

/* ---- xmppd_entity_post ---- */

struct post {
	xmppd_elem *iq;             /* a reference */
	char key[256];
	int returned;               /* set after xmppd_entity_post returned */
	int ran;                    /* how many of the POSTS ran */
	int order_ok;
	int worker;
};

struct post_one {
	struct post *p;
	int n;
};

static void
post_run(void *ud)
{
	struct post_one *o = ud;
	struct post *p = o->p;
	char buf[32];

	if (o->n != p->ran)
		p->order_ok = 0;
	if (p->ran == 0)
		p->worker = xmppd_worker_id();
	else if (p->worker != xmppd_worker_id())
		p->order_ok = 0;
	p->ran++;
	if (p->ran == POSTS) {
		xmppd_elem *r = xmppd_elem_new(NS, "post");

		snprintf(buf, sizeof(buf), "%d", p->worker);
		xmppd_elem_set_attr(r, "worker", buf);
		snprintf(buf, sizeof(buf), "%u", xmppd_entity_worker(p->key));
		xmppd_elem_set_attr(r, "owner", buf);
		xmppd_elem_set_attr(r, "returned", p->returned ? "1" : "0");
		xmppd_elem_set_attr(r, "order", p->order_ok ? "1" : "0");
		xmppd_iq_reply(p->iq, r);
		xmppd_elem_unref(p->iq);
		free(p);
	}
	free(o);
}

static void
do_post(xmppd_elem *iq, const char *key)
{
	struct post *p = calloc(1, sizeof(*p));

	if (p == NULL || strlen(key) >= sizeof(p->key)) {
		free(p);
		xmppd_iq_error(iq, "bad-request", NULL);
		return;
	}
	memcpy(p->key, key, strlen(key) + 1);
	p->iq = xmppd_elem_ref(iq);
	p->order_ok = 1;
	for (int i = 0; i < POSTS; i++) {
		struct post_one *o = malloc(sizeof(*o));

		if (o == NULL)
			abort();
		o->p = p;
		o->n = i;
		if (xmppd_entity_post(module_ctx, key, post_run, o) < 0)
			abort();
		/* Read by post_run on the owning worker: written before the
		 * next post's release, so the first run sees it unless it ran
		 * before the call returned. */
		if (i == 0)
			__atomic_store_n(&p->returned, 1, __ATOMIC_RELEASE);
	}
}

/* ---- xmppd_pubsub_request ---- */

struct preq {
	xmppd_elem *iq;
	int worker;
	int returned;
};

static void
pubsub_done(const char *condition, const xmppd_elem *result, void *ud)
{
	struct preq *q = ud;
	xmppd_elem *r = xmppd_elem_new(NS, "pubsub");
	/* A result: its first child; an error: the application element. */
	xmppd_elem *first = result == NULL ? NULL : condition != NULL ? (xmppd_elem *)result :
	    xmppd_elem_first_child(result);

	xmppd_elem_set_attr(r, "condition", condition != NULL ? condition : "none");
	xmppd_elem_set_attr(r, "result", first != NULL ? xmppd_elem_name(first) :
	    result != NULL ? "empty" : "none");
	xmppd_elem_set_attr(r, "same", q->worker == xmppd_worker_id() ? "1" : "0");
	xmppd_elem_set_attr(r, "returned", q->returned ? "1" : "0");
	/* t1620: the provider's whole answer. */
	if (result != NULL)
		xmppd_elem_append_copy(r, result);
	xmppd_iq_reply(q->iq, r);
	xmppd_elem_unref(q->iq);
	free(q);
}

static void
do_pubsub(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, xmppd_elem *probe)
{
	struct preq *q = calloc(1, sizeof(*q));
	xmppd_elem *req, *given = xmppd_elem_first_child(probe);
	const char *service = xmppd_elem_attr(probe, "service");
	xmppd_jid *sj = service != NULL ? xmppd_jid_parse(service) : NULL;
	int set = xmppd_elem_attr(probe, "set") != NULL;

	/* t1620: a request element given in the probe, for service, as the
	 * server (actor NULL) or as the sender (as='me'). */
	if (given != NULL) {
		req = xmppd_elem_copy(given);
	} else {
		req = xmppd_elem_new(NS_PUBSUB, "pubsub");
		if (xmppd_elem_attr(probe, "fail") != NULL)
			(void)xmppd_elem_add_child(req, NULL, "fail");
	}
	q->iq = xmppd_elem_ref(iq);
	q->worker = xmppd_worker_id();
	if (xmppd_pubsub_request(module_ctx, given != NULL &&
	    xmppd_elem_attr(probe, "as") == NULL ? NULL : from, sj != NULL ? sj : to, set, req,
	    pubsub_done, q) < 0) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		xmppd_elem_unref(q->iq);
		free(q);
	} else {
		q->returned = 1;
	}
	xmppd_jid_free(sj);
	xmppd_elem_unref(req);
}

/* ---- the providers ---- */

struct answer {
	xmppd_pubsub_fn done;
	void *ud;
	int fail;
};

static void
answer_run(void *ud)
{
	struct answer *a = ud;

	if (a->fail) {
		xmppd_elem *cond = xmppd_elem_new(NS_PUBSUB "#errors", "item-not-found");

		a->done("item-not-found", cond, a->ud);
		xmppd_elem_unref(cond);
	} else {
		xmppd_elem *r = xmppd_elem_new(NS_PUBSUB, "pubsub");

		(void)xmppd_elem_add_child(r, NULL, "echo");
		a->done(NULL, r, a->ud);
		xmppd_elem_unref(r);
	}
	free(a);
}

static void
pubsub_provider(const xmppd_jid *actor, const xmppd_jid *service, int set,
    const xmppd_elem *request, xmppd_pubsub_fn done, void *done_ud)
{
	struct answer *a = malloc(sizeof(*a));

	(void)actor;
	(void)set;
	(void)service;
	if (a == NULL) {
		done("resource-constraint", NULL, done_ud);
		return;
	}
	a->done = done;
	a->ud = done_ud;
	a->fail = xmppd_elem_child(request, NULL, "fail") != NULL;
	/* From the worker of another entity than the asker's, as a node's
	 * would answer; the core hands the answer back to the asker. */
	if (xmppd_entity_post(module_ctx, "probe-node", answer_run, a) < 0)
		answer_run(a);
}

static int
caps_provider(const xmppd_jid *full, const char *feature)
{
	(void)full;
	return strcmp(feature, "yes") == 0 ? 1 : strcmp(feature, "no") == 0 ? 0 : -1;
}

/* ---- the IQs ---- */

static enum xmppd_result
probe_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_elem *q = xmppd_elem_first_child(iq);
	const char *name = xmppd_elem_name(q);
	char buf[16];

	(void)ud;
	if (strcmp(name, "post") == 0 && xmppd_elem_attr(q, "key") != NULL) {
		do_post(iq, xmppd_elem_attr(q, "key"));
	} else if (strcmp(name, "pubsub") == 0) {
		do_pubsub(iq, from, to, q);
	} else if (strcmp(name, "caps") == 0 && xmppd_elem_attr(q, "feature") != NULL) {
		xmppd_elem *r = xmppd_elem_new(NS, "caps");

		snprintf(buf, sizeof(buf), "%d",
		    xmppd_caps_has_feature(from, xmppd_elem_attr(q, "feature")));
		xmppd_elem_set_attr(r, "has", buf);
		xmppd_iq_reply(iq, r);
	} else if (strcmp(name, "event") == 0) {
		xmppd_elem *r = xmppd_elem_new(NS, "event");

		pthread_mutex_lock(&hooked_lock);
		snprintf(buf, sizeof(buf), "%d", pevent.kind);
		xmppd_elem_set_attr(r, "kind", buf);
		xmppd_elem_set_attr(r, "node", pevent.node);
		xmppd_elem_set_attr(r, "item", pevent.item);
		xmppd_elem_set_attr(r, "publisher", pevent.publisher);
		xmppd_elem_set_attr(r, "payload", pevent.payload);
		xmppd_elem_set_attr(r, "owner", pevent.owner ? "1" : "0");
		snprintf(buf, sizeof(buf), "%d", pevent.runs);
		xmppd_elem_set_attr(r, "runs", buf);
		pthread_mutex_unlock(&hooked_lock);
		xmppd_iq_reply(iq, r);
	} else if (strcmp(name, "hooked") == 0) {
		xmppd_elem *r = xmppd_elem_new(NS, "hooked");
		struct hooked h = { "", "-", 0, 0, 0 };

		pthread_mutex_lock(&hooked_lock);
		for (int i = 0; i < HOOKED_MAX; i++)
			if (strcmp(hooked[i].from, xmppd_jid_full(from)) == 0)
				h = hooked[i];
		pthread_mutex_unlock(&hooked_lock);
		snprintf(buf, sizeof(buf), "%d", h.runs);
		xmppd_elem_set_attr(r, "runs", buf);
		xmppd_elem_set_attr(r, "to", h.to);
		xmppd_elem_set_attr(r, "available", h.available ? "1" : "0");
		snprintf(buf, sizeof(buf), "%d", h.has);
		xmppd_elem_set_attr(r, "has", buf);
		xmppd_iq_reply(iq, r);
	} else {
		xmppd_iq_error(iq, "bad-request", NULL);
	}
	return XMPPD_STOP;
}

static int
load(xmppd_ctx *ctx)
{
	module_ctx = ctx;
	if (xmppd_opt_bool(ctx, "provide") &&
	    (xmppd_pubsub_provide(ctx, pubsub_provider) < 0 ||
	    xmppd_caps_provide(ctx, caps_provider) < 0))
		return -1;
	if (xmppd_hook_add(ctx, XMPPD_HOOK_CAPS_PRESENCE, NULL, 50, on_caps_presence, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_PUBSUB_EVENT, NULL, 50, on_pubsub_event, NULL) < 0)
		return -1;
	return xmppd_iq_register(ctx, NULL, NS, XMPPD_IQ_GET, XMPPD_IQ_SERVER, probe_iq, NULL);
}

static void
unload(xmppd_ctx *ctx)
{
	(void)ctx;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_entityprobe",
	.version = "1.0",
	.options = options,
	.load = load,
	.unload = unload,
};
