/*
 * service.c - stanzas for a service domain a module registered
 * (xmppd_service_register: conference.example.org, ...).
 *
 * A stanza for a service runs on the worker that owns its addressee
 * (core/placement.h: by the bare 'to'), so one entity's stanzas are
 * handled on one thread, in order.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "core/placement.h"
#include "core/registry.h"
#include "core/worker.h"
#include "router/router.h"

struct svc_task {
	xml_elem *st;
	jid from, to;
};

static void
svc_task_run(struct worker *w, void *a, uint64_t b)
{
	struct svc_task *t = a;
	const struct reg *r = registry_service_find(t->to.domain);

	/* The service may have gone between post and run. */
	if (r != NULL)
		((xmppd_service_fn)r->fn)(t->st, &t->from, &t->to, r->ud);
	else
		router_bounce(t->st, "service-unavailable", NULL);
	xml_elem_unref(t->st);
	jid_free(&t->from);
	jid_free(&t->to);
	free(t);
}

int
router_service_route(xml_elem *st, const jid *from, const jid *to)
{
	struct svc_task *t;

	if (registry_list(REG_SERVICE) == NULL || registry_service_find(to->domain) == NULL)
		return 0;
	t = calloc(1, sizeof(*t));
	if (t == NULL || jid_copy(&t->to, to) < 0) {
		free(t);
		return 1;
	}
	if (from->domain == NULL || jid_copy(&t->from, from) < 0)
		memset(&t->from, 0, sizeof(t->from));
	t->st = xml_elem_ref(st);
	worker_post(worker_get(placement_of(to)), svc_task_run, t, 0);
	return 1;
}
