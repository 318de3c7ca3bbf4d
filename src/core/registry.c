/*
 * registry.c - the module tables and their readers (registry.h).
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/registry.h"

static struct reg_list *lists[REG__COUNT];
/* Arrays replaced but maybe still read by a worker; freed after a sync. */
static void **retired;
static size_t nretired;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

static struct reg_list *
list_get(enum reg_kind k)
{
	return __atomic_load_n(&lists[k], __ATOMIC_ACQUIRE);
}

static void
retire(void *p)
{
	void **v;

	if (p == NULL)
		return;
	v = realloc(retired, (nretired + 1) * sizeof(*v));
	if (v == NULL)
		fatal("out of memory in the module registry");
	retired = v;
	retired[nretired++] = p;
}

/* After worker_sync_all(): nobody reads the retired arrays. */
void
registry_reclaim(void)
{
	pthread_mutex_lock(&reg_lock);
	for (size_t i = 0; i < nretired; i++)
		free(retired[i]);
	free(retired);
	retired = NULL;
	nretired = 0;
	pthread_mutex_unlock(&reg_lock);
}

int
registry_add(enum reg_kind k, const struct reg *r)
{
	struct reg_list *old, *n;
	size_t i, at;

	pthread_mutex_lock(&reg_lock);
	old = lists[k];
	n = malloc(sizeof(*n) + ((old ? old->n : 0) + 1) * sizeof(struct reg));
	if (n == NULL) {
		pthread_mutex_unlock(&reg_lock);
		return -1;
	}
	n->n = (old ? old->n : 0) + 1;
	/* Sorted by priority, stable: equal priorities keep load order. */
	for (at = 0; old != NULL && at < old->n && old->e[at].prio <= r->prio; at++)
		;
	for (i = 0; i < at; i++)
		n->e[i] = old->e[i];
	n->e[at] = *r;
	for (i = at; old != NULL && i < old->n; i++)
		n->e[i + 1] = old->e[i];
	__atomic_store_n(&lists[k], n, __ATOMIC_RELEASE);
	retire(old);
	pthread_mutex_unlock(&reg_lock);
	return 0;
}

void
registry_remove_owner(const void *owner)
{
	pthread_mutex_lock(&reg_lock);
	for (int k = 0; k < REG__COUNT; k++) {
		struct reg_list *old = lists[k], *n;
		size_t keep = 0;

		if (old == NULL)
			continue;
		for (size_t i = 0; i < old->n; i++)
			keep += old->e[i].owner != owner;
		if (keep == old->n)
			continue;
		n = NULL;
		if (keep > 0) {
			n = malloc(sizeof(*n) + keep * sizeof(struct reg));
			if (n == NULL)
				fatal("out of memory in the module registry");
			n->n = 0;
			for (size_t i = 0; i < old->n; i++)
				if (old->e[i].owner != owner)
					n->e[n->n++] = old->e[i];
		}
		__atomic_store_n(&lists[k], n, __ATOMIC_RELEASE);
		retire(old);
	}
	pthread_mutex_unlock(&reg_lock);
}

static int
host_matches(const char *want, const char *host)
{
	return want == NULL || (host != NULL && strcmp(want, host) == 0);
}

enum xmppd_result
hooks_run(enum xmppd_hook hook, const char *host, void *args)
{
	struct reg_list *l;
	uint64_t t0, t1;

	if ((unsigned)hook >= XMPPD_HOOK__COUNT)
		return XMPPD_CONTINUE;
	l = list_get((enum reg_kind)hook);
	if (l == NULL)
		return XMPPD_CONTINUE;
	/* One clock read per handler run, plus one (metrics.h). */
	t0 = metrics_now_ns();
	for (size_t i = 0; i < l->n; i++) {
		enum xmppd_result r;

		if (!host_matches(l->e[i].host, host))
			continue;
		r = ((xmppd_hook_fn)l->e[i].fn)(args, l->e[i].ud);
		t1 = metrics_now_ns();
		metrics_hook_time(l->e[i].stat, t1 - t0);
		t0 = t1;
		if (r != XMPPD_CONTINUE)
			return r;
	}
	return XMPPD_CONTINUE;
}

enum xmppd_result
hooks_run_filter(const char *host, struct xmppd_packet_args *pa)
{
	struct reg_list *l = list_get((enum reg_kind)XMPPD_HOOK_FILTER_PACKET);
	uint64_t t0, t1;

	if (l == NULL)
		return XMPPD_CONTINUE;
	t0 = metrics_now_ns();
	for (size_t i = 0; i < l->n; i++) {
		xml_elem *before = pa->stanza;
		enum xmppd_result r;

		if (!host_matches(l->e[i].host, host))
			continue;
		r = ((xmppd_hook_fn)l->e[i].fn)(pa, l->e[i].ud);
		t1 = metrics_now_ns();
		metrics_hook_time(l->e[i].stat, t1 - t0);
		t0 = t1;
		/* A handler that replaced the stanza handed us a new
		 * reference; the one it replaced is ours to drop, so that a
		 * chain of filters leaks nothing. */
		if (pa->stanza != before)
			xml_elem_unref(before);
		if (r != XMPPD_CONTINUE)
			return r;
	}
	return XMPPD_CONTINUE;
}

int
hooks_any(enum xmppd_hook hook)
{
	return (unsigned)hook < XMPPD_HOOK__COUNT && list_get((enum reg_kind)hook) != NULL;
}

static int
iq_dispatch(xml_elem *iq, const jid *from, const jid *to, unsigned scope)
{
	struct reg_list *l = list_get(REG_IQ);
	const char *type = xml_attr_get(iq, "type");
	xml_elem *payload = xml_first_child(iq);
	unsigned t;
	const char *ns;
	enum xmppd_result res;
	uint64_t t0;

	if (l == NULL || type == NULL || payload == NULL ||
	    (ns = xml_elem_ns(payload)) == NULL)
		return 0;
	t = strcmp(type, "get") == 0 ? XMPPD_IQ_GET : strcmp(type, "set") == 0 ? XMPPD_IQ_SET : 0;
	for (size_t i = 0; i < l->n; i++) {
		struct reg *r = &l->e[i];

		if (!(r->types & t) || !(r->scopes & scope) || strcmp(r->s1, ns) != 0 ||
		    !host_matches(r->host, to->domain))
			continue;
		t0 = metrics_now_ns();
		res = ((xmppd_iq_fn)r->fn)(iq, from, to, r->ud);
		metrics_hook_time(r->stat, metrics_now_ns() - t0);
		if (res != XMPPD_CONTINUE)
			return 1;
	}
	return 0;
}

int
registry_iq_dispatch(xml_elem *iq, const jid *from, const jid *to)
{
	return iq_dispatch(iq, from, to, to->node != NULL ? XMPPD_IQ_ACCOUNT : XMPPD_IQ_SERVER);
}

int
registry_iq_dispatch_stream(xml_elem *iq, const jid *to)
{
	return iq_dispatch(iq, NULL, to, XMPPD_IQ_STREAM);
}

const struct reg *
registry_service_find(const char *domain)
{
	struct reg_list *l = list_get(REG_SERVICE);

	for (size_t i = 0; l != NULL && i < l->n; i++)
		if (strcmp(l->e[i].s1, domain) == 0)
			return &l->e[i];
	return NULL;
}

void
registry_stream_features(xml_elem *features, int authenticated)
{
	struct reg_list *l = list_get(REG_STREAM_FEATURE);

	for (size_t i = 0; l != NULL && i < l->n; i++)
		if (l->e[i].authenticated == authenticated)
			(void)xml_elem_append_copy(features, l->e[i].el);
}

int
registry_ctl_run(int argc, char **argv, int *rc_r, char **out_r)
{
	struct reg_list *l = list_get(REG_CTL);

	*out_r = NULL;
	for (size_t i = 0; l != NULL && i < l->n; i++)
		if (strcmp(l->e[i].s1, argv[0]) == 0) {
			*rc_r = ((xmppd_ctl_fn)l->e[i].fn)(argc, argv, out_r, l->e[i].ud);
			if (*rc_r < 0 && *out_r == NULL)
				*out_r = strdup(l->e[i].s2);
			return 1;
		}
	return 0;
}

const struct reg_list *
registry_list(enum reg_kind k)
{
	return list_get(k);
}
