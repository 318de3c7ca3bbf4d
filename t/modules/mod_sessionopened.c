/*
 * mod_sessionopened - acts on sm_session_opened, for
 * t/integration/t0810-hooks.py. For each session bound it
 *  - writes the new session a headline message (xmppd_session_send)
 *    whose body is "opened FULLJID available=N", N being what
 *    xmppd_session_available said during the hook;
 *  - records the full JID and the thread the hook ran on.
 * An IQ get in urn:xmppd:test:sessionopened to the server lists what was
 * recorded, in order, each <session jid=.../> with same-thread='1' when it
 * was recorded on the thread answering the IQ (IQ handlers run on the
 * sender's worker), so a client tells whether the hook ran on its
 * session's worker.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#define NS_SO "urn:xmppd:test:sessionopened"

struct rec {
	struct rec *next;
	char *jid;
	unsigned thread;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rec *recs, **recs_tail = &recs;
static unsigned threads;
static _Thread_local unsigned thread_tag;

static unsigned
this_thread(void)
{
	if (thread_tag == 0)
		thread_tag = __atomic_add_fetch(&threads, 1, __ATOMIC_RELAXED);
	return thread_tag;
}

static enum xmppd_result
opened(void *args, void *ud)
{
	struct xmppd_session_args *a = args;
	const xmppd_jid *j = xmppd_session_jid(a->session);
	struct rec *r = calloc(1, sizeof(*r));
	xmppd_elem *m, *body;
	char text[1200];

	if (r == NULL || (r->jid = strdup(xmppd_jid_full(j))) == NULL) {
		free(r);
		return XMPPD_CONTINUE;
	}
	r->thread = this_thread();
	pthread_mutex_lock(&lock);
	*recs_tail = r;
	recs_tail = &r->next;
	pthread_mutex_unlock(&lock);

	m = xmppd_elem_new(NULL, "message");
	xmppd_elem_set_attr(m, "to", xmppd_jid_full(j));
	xmppd_elem_set_attr(m, "from", xmppd_jid_domain(j));
	xmppd_elem_set_attr(m, "type", "headline");
	body = xmppd_elem_add_child(m, NULL, "body");
	snprintf(text, sizeof(text), "opened %s available=%d", xmppd_jid_full(j),
	    xmppd_session_available(a->session));
	xmppd_elem_add_text(body, text, strlen(text));
	xmppd_session_send(a->session, m);
	xmppd_elem_unref(m);
	return XMPPD_CONTINUE;
}

static enum xmppd_result
list(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_elem *q = xmppd_elem_new(NS_SO, "query");
	unsigned me = this_thread();

	pthread_mutex_lock(&lock);
	for (struct rec *r = recs; r != NULL; r = r->next) {
		xmppd_elem *s = xmppd_elem_add_child(q, NS_SO, "session");

		xmppd_elem_set_attr(s, "jid", r->jid);
		xmppd_elem_set_attr(s, "same-thread", r->thread == me ? "1" : "0");
	}
	pthread_mutex_unlock(&lock);
	xmppd_iq_reply(iq, q);
	return XMPPD_STOP;
}

static int
load(xmppd_ctx *ctx)
{
	recs = NULL;
	recs_tail = &recs;
	if (xmppd_hook_add(ctx, XMPPD_HOOK_SM_SESSION_OPENED, NULL, 50, opened, NULL) < 0 ||
	    xmppd_iq_register(ctx, NULL, NS_SO, XMPPD_IQ_GET, XMPPD_IQ_SERVER, list, NULL) < 0)
		return -1;
	return 0;
}

static void
unload(xmppd_ctx *ctx)
{
	while (recs != NULL) {
		struct rec *r = recs;

		recs = r->next;
		free(r->jid);
		free(r);
	}
	recs_tail = &recs;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_sessionopened",
	.version = "1.0",
	.load = load,
	.unload = unload,
};
