/*
 * router.h - route(): every stanza goes through here (doc/architecture.md,
 * "How a stanza travels").
 *
 * router_route dispatches by the domain of 'to': a service domain goes to
 * its module (service.c), a local host to the session manager (sm.h), an
 * external component's domain to the component route (router_set_component),
 * anything else to the remote route s2s registered (router_set_remote).
 * The caller keeps its reference to st; the router takes its own where it
 * keeps one.
 */
#ifndef XMPPD_ROUTER_H
#define XMPPD_ROUTER_H

#include "xml/xml.h"
#include "xmpp/jid.h"

void router_route(xml_elem *st, const jid *from, const jid *to);

/* Stanzas for a domain that is neither local nor a service go to fn
 * (s2s_route, registered by s2s_init; RFC 6120 10.4). Any thread; fn keeps
 * its own reference if it needs one. Without one they bounce. */
typedef void (*router_remote_fn)(xml_elem *st, const jid *from, const jid *to);
void router_set_remote(router_remote_fn fn);
/* Stanzas for an external component's domain (XEP-0114) go to fn
 * (component_route, registered by component_init), which returns 1 if
 * to's domain is a component's (the stanza was delivered or bounced) and
 * 0 if not. Any thread. */
typedef int (*router_component_fn)(xml_elem *st, const jid *from, const jid *to);
void router_set_component(router_component_fn fn);
/* IQ results and errors addressed to the server or to a bare JID (which
 * nobody handles: RFC 6121 8.5.2.1.3) go to fn first (the answers to the
 * requests modules send, abi/request.c); it returns 1 if it took the
 * reply. Any thread. */
typedef int (*router_iq_reply_fn)(xml_elem *iq, const jid *from);
void router_set_iq_reply(router_iq_reply_fn fn);
/* The same after filter_packet has run. */
void router_route_filtered(xml_elem *st, const jid *from, const jid *to);
/* service.c: 1 if to's domain is a registered service domain (the stanza
 * was handed to it, on the worker that owns the addressee). */
int router_service_route(xml_elem *st, const jid *from, const jid *to);

/* Answers st with an error of condition (RFC 6120 8.3), routed back to its
 * sender. Nothing is sent for errors and IQ results. */
void router_bounce(xml_elem *st, const char *condition, const char *text);

/* IQ get/set addressed to the server or handled on behalf of an account
 * (RFC 6121 8.5.2.1.3): to the modules' IQ handlers (core/registry.h), or
 * answered <service-unavailable/>. Results and errors end here. */
void router_iq_handle(xml_elem *iq, const jid *from, const jid *to);

#endif
