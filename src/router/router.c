/*
 * router.c - dispatch by destination domain, bounces, IQ handlers.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "core/conf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/registry.h"
#include "router/router.h"
#include "router/sm.h"
#include "xmpp/stanza.h"

/* Where stanzas for other servers go (s2s_route, registered by s2s). */
static router_remote_fn remote_fn;
/* Where stanzas for external components go (component_route). */
static router_component_fn component_fn;

void
router_set_remote(router_remote_fn fn)
{
	remote_fn = fn;
}

void
router_set_component(router_component_fn fn)
{
	component_fn = fn;
}

static router_iq_reply_fn iq_reply_fn;

void
router_set_iq_reply(router_iq_reply_fn fn)
{
	iq_reply_fn = fn;
}


void
router_route(xml_elem *st, const jid *from, const jid *to)
{
	if (hooks_any(XMPPD_HOOK_FILTER_PACKET)) {
		struct xmppd_packet_args pa = { xml_elem_ref(st), from, to, NULL };
		enum xmppd_result r = hooks_run_filter(to->domain, &pa);

		/* A filter may drop the stanza, or replace it (same
		 * addressing); either way pa.stanza is our reference. */
		if (r == XMPPD_CONTINUE)
			router_route_filtered(pa.stanza, from, to);
		xml_elem_unref(pa.stanza);
		return;
	}
	router_route_filtered(st, from, to);
}

void
router_route_filtered(xml_elem *st, const jid *from, const jid *to)
{
	if (router_service_route(st, from, to))
		return;
	/* Per stanza: the thread's cached configuration, no lock. */
	if (conf_is_local_host(conf_local(), to->domain)) {
		sm_route(st, from, to);
		return;
	}
	/* An external component's domain (XEP-0114), connected or not:
	 * after the local hosts, so that their stanzas pay nothing. */
	if (component_fn != NULL && component_fn(st, from, to))
		return;
	/* Any other domain is another server's (RFC 6120 10.4). */
	if (remote_fn != NULL)
		remote_fn(st, from, to);
	else
		router_bounce(st, "remote-server-not-found", "no federation here");
}

void
router_bounce(xml_elem *st, const char *condition, const char *text)
{
	xml_elem *err = stanza_error_reply(st, condition, text);
	const char *to, *from, *e;
	jid jto, jfrom;

	if (err == NULL)
		return;
	metrics_inc(METRIC_ROUTED_BOUNCED);
	to = xml_attr_get(err, "to");
	from = xml_attr_get(err, "from");
	if (to == NULL || jid_parse(&jto, to, strlen(to), &e) < 0) {
		xml_elem_unref(err);
		return;
	}
	if (from == NULL || jid_parse(&jfrom, from, strlen(from), &e) < 0)
		memset(&jfrom, 0, sizeof(jfrom));
	router_route(err, &jfrom, &jto);
	jid_free(&jto);
	jid_free(&jfrom);
	xml_elem_unref(err);
}

void
router_iq_handle(xml_elem *iq, const jid *from, const jid *to)
{
	const char *type = xml_attr_get(iq, "type");
	xml_elem *payload;

	/* Results and errors addressed to the server or to a bare JID end
	 * here (RFC 6121 8.5.2.1.3). */
	if (type == NULL || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0)) {
		if (iq_reply_fn != NULL && type != NULL && (strcmp(type, "result") == 0 ||
		    strcmp(type, "error") == 0))
			(void)iq_reply_fn(iq, from);
		return;
	}
	payload = xml_first_child(iq);
	/* RFC 6120 8.2.3: a get or set has exactly one payload. */
	if (payload == NULL || xml_next_sibling(payload) != NULL) {
		router_bounce(iq, "bad-request", NULL);
		return;
	}
	if (registry_iq_dispatch(iq, from, to))
		return;
	/* RFC 6120 8.4: a namespace nobody here understands. */
	router_bounce(iq, "service-unavailable", NULL);
}
