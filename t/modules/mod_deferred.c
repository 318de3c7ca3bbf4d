/*
 * mod_deferred - deferred IQ replies, for t/integration/t0810-hooks.py.
 *
 * An IQ get <query xmlns='urn:xmppd:test:deferred' how='timer|thread'
 * ms='N'/> to the server is taken (STOP) without an answer: the handler
 * keeps a reference to the iq (hooks/xmppd.h, xmppd_iq_register) and
 *  - how='timer': a timer on the handler's worker answers after N ms;
 *  - how='thread': the module's own thread answers after N ms (replies
 *    may be given from any thread).
 * The result carries <answered how=... waited=MS/>, MS measured by the
 * module. `xmppctl deferred` prints "pending P answered A".
 *
 * On unload the module's thread is stopped and joined (no thread of the
 * module may outlive unload, doc/modules.md), and every IQ still pending
 * is answered service-unavailable (RFC 6120 8.3.1: a get always gets a
 * reply); the core has dropped the module's timers by then, so none of
 * them can answer a second time.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmppd.h>

#define NS_DEF "urn:xmppd:test:deferred"

struct pending {
	struct pending *next;
	xmppd_elem *iq;
	int by_thread;
	uint64_t start, due;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pending *pending;     /* under lock */
static unsigned long npending, nanswered;
static int stopping;
static pthread_t thread;
static int thread_started;
static xmppd_ctx *module_ctx;

/* Unlinks p if it is still pending: whoever does answers it. */
static int
take(struct pending *p)
{
	int found = 0;

	pthread_mutex_lock(&lock);
	for (struct pending **pp = &pending; *pp != NULL; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			npending--;
			found = 1;
			break;
		}
	pthread_mutex_unlock(&lock);
	return found;
}

static void
answer(struct pending *p)
{
	xmppd_elem *q = xmppd_elem_new(NS_DEF, "query");
	xmppd_elem *a = xmppd_elem_add_child(q, NS_DEF, "answered");
	char waited[32];

	snprintf(waited, sizeof(waited), "%llu",
	    (unsigned long long)(xmppd_now_ms() - p->start));
	xmppd_elem_set_attr(a, "how", p->by_thread ? "thread" : "timer");
	xmppd_elem_set_attr(a, "waited", waited);
	xmppd_iq_reply(p->iq, q);
	xmppd_elem_unref(p->iq);
	free(p);
	pthread_mutex_lock(&lock);
	nanswered++;
	pthread_mutex_unlock(&lock);
}

static uint64_t
fire(void *ud)
{
	struct pending *p = ud;

	if (take(p))
		answer(p);
	return 0;
}

static void *
run(void *arg)
{
	struct timespec tick = { 0, 10 * 1000 * 1000 };

	for (;;) {
		struct pending *p = NULL;
		uint64_t now = xmppd_now_ms();

		pthread_mutex_lock(&lock);
		if (stopping) {
			pthread_mutex_unlock(&lock);
			return NULL;
		}
		for (struct pending **pp = &pending; *pp != NULL; pp = &(*pp)->next)
			if ((*pp)->by_thread && (*pp)->due <= now) {
				p = *pp;
				*pp = p->next;
				npending--;
				break;
			}
		pthread_mutex_unlock(&lock);
		if (p != NULL)
			answer(p);
		else
			nanosleep(&tick, NULL);
	}
}

static enum xmppd_result
on_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_elem *q = xmppd_elem_first_child(iq);
	const char *how = xmppd_elem_attr(q, "how"), *ms = xmppd_elem_attr(q, "ms");
	long delay = ms != NULL ? strtol(ms, NULL, 10) : 200;
	struct pending *p;

	if (how == NULL || (strcmp(how, "timer") != 0 && strcmp(how, "thread") != 0) ||
	    delay < 1 || delay > 60000) {
		xmppd_iq_error(iq, "bad-request", "how='timer|thread' ms='1..60000'");
		return XMPPD_STOP;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		xmppd_iq_error(iq, "resource-constraint", NULL);
		return XMPPD_STOP;
	}
	p->iq = xmppd_elem_ref(iq);
	p->by_thread = strcmp(how, "thread") == 0;
	p->start = xmppd_now_ms();
	p->due = p->start + (uint64_t)delay;
	pthread_mutex_lock(&lock);
	p->next = pending;
	pending = p;
	npending++;
	pthread_mutex_unlock(&lock);
	if (!p->by_thread && xmppd_timer_add(module_ctx, (uint64_t)delay, fire, p) == NULL &&
	    take(p)) {
		xmppd_iq_error(iq, "internal-server-error", "no timer");
		xmppd_elem_unref(p->iq);
		free(p);
	}
	return XMPPD_STOP;
}

static int
stats(int argc, char **argv, char **out_r, void *ud)
{
	char buf[128];

	pthread_mutex_lock(&lock);
	snprintf(buf, sizeof(buf), "pending %lu answered %lu\n", npending, nanswered);
	pthread_mutex_unlock(&lock);
	*out_r = strdup(buf);
	return 0;
}

static int
load(xmppd_ctx *ctx)
{
	module_ctx = ctx;
	pending = NULL;
	npending = nanswered = 0;
	stopping = 0;
	if (pthread_create(&thread, NULL, run, NULL) != 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot start the thread");
		return -1;
	}
	thread_started = 1;
	if (xmppd_iq_register(ctx, NULL, NS_DEF, XMPPD_IQ_GET, XMPPD_IQ_SERVER, on_iq,
	    NULL) < 0 || xmppd_ctl_register(ctx, "deferred", "deferred", stats, NULL) < 0) {
		/* unload is not called after a failed load: stop the thread. */
		pthread_mutex_lock(&lock);
		stopping = 1;
		pthread_mutex_unlock(&lock);
		pthread_join(thread, NULL);
		thread_started = 0;
		return -1;
	}
	return 0;
}

static void
unload(xmppd_ctx *ctx)
{
	struct pending *left;

	pthread_mutex_lock(&lock);
	stopping = 1;
	pthread_mutex_unlock(&lock);
	if (thread_started)
		pthread_join(thread, NULL);
	thread_started = 0;
	pthread_mutex_lock(&lock);
	left = pending;
	pending = NULL;
	npending = 0;
	pthread_mutex_unlock(&lock);
	while (left != NULL) {
		struct pending *p = left;

		left = p->next;
		xmppd_iq_error(p->iq, "service-unavailable", "mod_deferred was unloaded");
		xmppd_elem_unref(p->iq);
		free(p);
	}
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_deferred",
	.version = "1.0",
	.load = load,
	.unload = unload,
};
