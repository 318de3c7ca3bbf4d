/*
 * component.c - external components (XEP-0114): the jabber:component:accept
 * stream on a `module: component` listener, the handshake, the routing
 * table the router consults, delivery on the component's worker, the
 * checks on what a component sends, the listing and shutdown.
 *
 * A stream: the component's header names its domain in 'to' (XEP-0114 3);
 * we answer with our header (from that domain, a fresh id, no version);
 * it sends <handshake>hex(SHA1(id secret))</handshake>; an empty
 * <handshake/> says yes. A wrong digest is <not-authorized/>, a domain not
 * configured on this listener <host-unknown/>, a domain that already has
 * a component <conflict/> (the first one stays: Prosody's default,
 * "kick_new"). The negotiation deadline is the one c2s has.
 *
 * Once through, the domain is in the routing table (domain -> worker,
 * connection id) until the stream starts closing; component_route (the
 * router's, any thread) posts a reference to the stanza to that worker,
 * where the connection is looked up again by id. A domain that is
 * configured but has no component connected answers
 * <service-unavailable/> (RFC 6120 8.3; nothing for errors, IQ results
 * and unavailable presence).
 */
#include "config.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "component/component.h"
#include "core/acl.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"
#include "net/listener.h"
#include "net/tls.h"
#include "router/router.h"
#include "stream/xstream.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"
#include "xmpp/stanza.h"

#define COMPONENT_SHUTDOWN_MAX_MS 2000

struct comp {
	struct xstream xs;             /* the stream (stream/xstream.h) */
	struct worker *w;
	struct conf *conf;             /* the configuration it started with */
	const struct conf_listen *l;   /* the listener it came on (listener.c's copy) */
	uint64_t id;                   /* unique server-wide: worker in the top byte */
	uint64_t last_input_ms;        /* the stream layer's: the peer's last bytes */
	char *domain;                  /* the header's 'to', prepared */
	unsigned authenticated : 1;    /* the handshake went through */
	unsigned routed : 1;           /* its domain is in the routing table */
	char addr[64];
	char tag[48];                  /* "component#0.3" for logs */
};

#define COMP(x) ((struct comp *)((char *)(x) - offsetof(struct comp, xs)))

/* Every component stream, per worker (stream/conn.h). */
static struct conn_set *comp_set;
static uint64_t *next_id;             /* per worker */

/* The routing table: connected components. Few entries; taken only for
 * stanzas to a configured component domain, and by xmppctl. */
struct route {
	char *domain;
	unsigned worker;
	uint64_t id;
	time_t since;
	char addr[64];
};
static pthread_mutex_t rlock = PTHREAD_MUTEX_INITIALIZER;
static struct route *routes;
static size_t nroutes, routes_cap;

static void on_stream_start(struct xstream *xs, const struct xstream_header *h);
static void on_element(struct xstream *xs, xml_elem *e);
static void on_end(struct xstream *xs, enum conn_end how, const char *why);
static void on_closing(struct xstream *xs);
static int on_timeout(struct xstream *xs);

/* XEP-0114 3: the jabber:component:accept namespace, and a header
 * without 'version' (the protocol has no stream features). */
static const struct xstream_class comp_class = {
	.ns = NS_COMPONENT_ACCEPT,
	.no_version = 1,
	.stream_start = on_stream_start,
	.element = on_element,
	.end = on_end,
	.closing = on_closing,
	.timeout = on_timeout,
};

/* ---------------------------------------------------------------- */
/* The routing table.                                                 */

/* 0, or -1 if the domain has a component already (or out of memory). */
static int
route_claim(struct comp *k)
{
	struct route *r;
	int rc = -1;

	pthread_mutex_lock(&rlock);
	for (size_t i = 0; i < nroutes; i++)
		if (strcmp(routes[i].domain, k->domain) == 0)
			goto out;
	if (nroutes == routes_cap) {
		size_t cap = routes_cap ? routes_cap * 2 : 8;

		if ((r = realloc(routes, cap * sizeof(*r))) == NULL)
			goto out;
		routes = r;
		routes_cap = cap;
	}
	r = &routes[nroutes];
	if ((r->domain = strdup(k->domain)) == NULL)
		goto out;
	r->worker = worker_id(k->w);
	r->id = k->id;
	r->since = time(NULL);
	snprintf(r->addr, sizeof(r->addr), "%s", k->addr);
	nroutes++;
	rc = 0;
out:
	pthread_mutex_unlock(&rlock);
	return rc;
}

static void
route_release(struct comp *k)
{
	if (!k->routed)
		return;
	k->routed = 0;
	pthread_mutex_lock(&rlock);
	for (size_t i = 0; i < nroutes; i++)
		if (routes[i].id == k->id && strcmp(routes[i].domain, k->domain) == 0) {
			free(routes[i].domain);
			routes[i] = routes[--nroutes];
			break;
		}
	pthread_mutex_unlock(&rlock);
}

/* 0 and where domain's component is, or -1 if none is connected. */
static int
route_lookup(const char *domain, unsigned *worker_r, uint64_t *id_r)
{
	int rc = -1;

	pthread_mutex_lock(&rlock);
	for (size_t i = 0; i < nroutes; i++)
		if (strcmp(routes[i].domain, domain) == 0) {
			*worker_r = routes[i].worker;
			*id_r = routes[i].id;
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&rlock);
	return rc;
}

unsigned long
component_connection_count(void)
{
	return conn_set_count(comp_set);
}

void
component_list(struct evbuffer *out)
{
	pthread_mutex_lock(&rlock);
	for (size_t i = 0; i < nroutes; i++) {
		struct tm tm;
		char since[32];

		gmtime_r(&routes[i].since, &tm);
		strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
		evbuffer_add_printf(out, "%s\t%s\t%s\n", routes[i].domain, since, routes[i].addr);
	}
	pthread_mutex_unlock(&rlock);
}

/* ---------------------------------------------------------------- */
/* Delivery to a component.                                           */

/* A stanza for a domain whose component is not there (RFC 6120 8.3):
 * router_bounce sends nothing for errors and IQ results; unavailable
 * presence is not answered either (nothing to tell its sender). */
static void
bounce_unavailable(xml_elem *st)
{
	const char *type = xml_attr_get(st, "type");

	if (stanza_kind(st) == STANZA_PRESENCE && type != NULL &&
	    strcmp(type, "unavailable") == 0)
		return;
	router_bounce(st, "service-unavailable", "the component is not connected");
}

static struct comp *
comp_find(struct worker *w, uint64_t id)
{
	for (struct conn *c = conn_set_first(comp_set, w); c != NULL; c = conn_next(c)) {
		struct comp *k = COMP(xstream_of(c));

		if (k->id == id)
			return k;
	}
	return NULL;
}

/* On the component's worker: the connection may have gone since the
 * routing table named it. */
static void
deliver_local(struct worker *w, uint64_t id, xml_elem *st)
{
	struct comp *k = comp_find(w, id);

	if (k == NULL || !k->authenticated || k->xs.closing) {
		bounce_unavailable(st);
		return;
	}
	xstream_send(&k->xs, st);
}

static void
deliver_task(struct worker *w, void *a, uint64_t id)
{
	xml_elem *st = a;

	deliver_local(w, id, st);
	xml_elem_unref(st);
}

int
component_route(xml_elem *st, const jid *from, const jid *to)
{
	struct worker *self;
	unsigned worker;
	uint64_t id;

	(void)from;
	/* Per stanza: the thread's cached configuration, no lock. */
	if (conf_component_find(conf_local(), to->domain, NULL) == NULL)
		return 0;
	if (route_lookup(to->domain, &worker, &id) < 0) {
		bounce_unavailable(st);
		return 1;
	}
	self = worker_self();
	if (self != NULL && worker_id(self) == worker)
		deliver_local(self, id, st);
	else
		worker_post(worker_get(worker), deliver_task, xml_elem_ref(st), id);
	return 1;
}

/* ---------------------------------------------------------------- */
/* Life cycle.                                                        */

int
component_init(unsigned nworkers)
{
	comp_set = conn_set_new(nworkers);
	next_id = calloc(nworkers, sizeof(*next_id));
	if (comp_set == NULL || next_id == NULL)
		return -1;
	for (unsigned i = 0; i < nworkers; i++)
		next_id[i] = ((uint64_t)i << 56) + 1;
	listener_set_handler(CONF_LISTEN_COMPONENT, component_accept);
	router_set_component(component_route);
	return 0;
}

static void
comp_free(struct comp *k)
{
	route_release(k);
	xstream_free(&k->xs);
	free(k->domain);
	conf_unref(k->conf);
	log_debug(k->tag, "closed");
	free(k);
}

void
component_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conf_listen *l)
{
	struct conn_accept_opts o = { NULL, NULL, 1 };
	struct xstream_params p;
	struct comp *k;

	if (conn_set_stopped(comp_set, w) || (k = calloc(1, sizeof(*k))) == NULL) {
		close(fd);
		return;
	}
	k->w = w;
	k->l = l;
	k->conf = conf_current();
	k->id = next_id[worker_id(w)]++;
	sockaddr_format(sa, k->addr, sizeof(k->addr));
	snprintf(k->tag, sizeof(k->tag), "component#%u.%llu", worker_id(w),
	    (unsigned long long)(k->id & 0xffffffffffffffULL));
	p.limits.max_stanza_size = l->max_stanza_size;
	p.limits.max_depth = k->conf->max_xml_depth;
	p.limits.max_attrs = k->conf->max_xml_attrs;
	p.max_send_queue = k->conf->max_send_queue;
	p.initiating = 0;
	p.last_input_ms = &k->last_input_ms;
	if (xstream_init(&k->xs, &comp_class, comp_set, w, k->tag, &p) < 0) {
		close(fd);
		conf_unref(k->conf);
		free(k);
		return;
	}
	if (l->shaper != NULL)
		o.shaper = shaper_find(k->conf, l->shaper);
	if (l->tls) {
		/* TLS from the first byte (XEP-0114 has no STARTTLS). */
		o.ssl = tls_new_server(NULL);
		if (o.ssl == NULL) {
			log_error(k->tag, "direct TLS listener but no certificate");
			close(fd);
			comp_free(k);
			return;
		}
	}
	log_debug(k->tag, "connection from %s%s", k->addr, l->tls ? " (direct TLS)" : "");
	/* The negotiation deadline is c2s's (RFC 6120 4.9.3.4). */
	if (xstream_accept(&k->xs, fd, sa, salen, &o, k->conf->max_connections_per_ip,
	    k->conf->negotiation_timeout) < 0)
		comp_free(k);
}

static void
on_end(struct xstream *xs, enum conn_end how, const char *why)
{
	(void)how;
	(void)why;
	comp_free(COMP(xs));
}

/* The stream starts closing: its domain is free again, and stanzas for
 * it bounce from now on. */
static void
on_closing(struct xstream *xs)
{
	struct comp *k = COMP(xs);

	if (k->routed)
		log_info(k->tag, "component %s disconnected", k->domain);
	route_release(k);
}

/* The negotiation deadline: <connection-timeout/> unless the handshake
 * went through. */
static int
on_timeout(struct xstream *xs)
{
	return COMP(xs)->authenticated;
}

void
component_shutdown_all(void)
{
	xstream_shutdown_all(comp_set, COMPONENT_SHUTDOWN_MAX_MS);
}

void
component_free_all(void)
{
	conn_set_free(&comp_set);
	free(next_id);
	next_id = NULL;
	pthread_mutex_lock(&rlock);
	for (size_t i = 0; i < nroutes; i++)
		free(routes[i].domain);
	free(routes);
	routes = NULL;
	nroutes = routes_cap = 0;
	pthread_mutex_unlock(&rlock);
}

/* ---------------------------------------------------------------- */
/* The stream.                                                        */

/* The secret of k's domain if the running configuration has that domain
 * on the listener k came on; else NULL. */
static const char *
listener_secret(const struct comp *k)
{
	const struct conf_listen *l;
	const struct conf_component_host *h = conf_component_find(conf_local(), k->domain, &l);

	if (h == NULL || l->port != k->l->port || strcmp(l->ip, k->l->ip) != 0)
		return NULL;
	return h->password;
}

static void
on_stream_start(struct xstream *xs, const struct xstream_header *h)
{
	struct comp *k = COMP(xs);
	char *dom = h->to != NULL && *h->to != '\0' ? jid_nameprep(h->to, strlen(h->to)) : NULL;
	int known;

	free(k->domain);
	k->domain = dom;
	known = dom != NULL && listener_secret(k) != NULL;
	/* XEP-0114 3: from is the component's domain; a fresh id. */
	xstream_send_header(xs, known ? k->domain : NULL, NULL);
	/* RFC 6120 4.8.1 / 4.9.3.10. */
	if (h->ns == NULL || strcmp(h->ns, NS_COMPONENT_ACCEPT) != 0) {
		xstream_error(xs, "invalid-namespace", NULL);
		return;
	}
	if (h->to == NULL) {
		/* 4.9.3.14 (Prosody says the same): the domain is required. */
		xstream_error(xs, "improper-addressing", "a component names its domain in 'to'");
		return;
	}
	if (!known) {
		/* 4.9.3.6: no such component here. */
		log_info(k->tag, "%s asked for unknown component domain %s", k->addr, h->to);
		xstream_error(xs, "host-unknown", "no such component domain here");
		return;
	}
}

/* XEP-0114 3: <handshake>hex(SHA1(id secret))</handshake>. */
static void
handshake(struct comp *k, xml_elem *e)
{
	const char *secret = listener_secret(k);

	if (secret == NULL) {
		/* A reload took the domain away since the header. */
		xstream_error(&k->xs, "host-unknown", "no such component domain here");
		return;
	}
	if (xml_first_child(e) != NULL || !component_handshake_ok(k->xs.id, secret, xml_text(e))) {
		log_info(k->tag, "component %s from %s: wrong handshake", k->domain, k->addr);
		xstream_error(&k->xs, "not-authorized", "the handshake does not match the secret");
		return;
	}
	if (route_claim(k) < 0) {
		/* One component per domain; the first one stays (Prosody's
		 * default). RFC 6120 4.9.3.3. */
		log_info(k->tag, "component %s from %s refused: already connected", k->domain,
		    k->addr);
		xstream_error(&k->xs, "conflict", "a component for this domain is connected");
		return;
	}
	k->routed = 1;
	k->authenticated = 1;
	xstream_cancel_timer(&k->xs);
	xstream_puts(&k->xs, "<handshake/>");
	log_info(k->tag, "component %s connected from %s", k->domain, k->addr);
}

/* A stanza error back to the component (RFC 6120 8.3). */
static void
reply_error(struct comp *k, xml_elem *st, const char *condition, const char *text)
{
	xml_elem *r = stanza_error_reply(st, condition, text);

	if (r != NULL) {
		xml_attr_set(r, "from", NULL);
		xstream_send(&k->xs, r);
		xml_elem_unref(r);
	}
}

/*
 * A stanza from the component. Its 'from' must be at its domain
 * (XEP-0114 3: it may send from any JID there): a missing one or one at
 * another domain ends the stream with <invalid-from/> (RFC 6120 4.9.3.9;
 * Prosody's validate_from_addresses and ejabberd's check_from do the
 * same). A missing 'to' is a <bad-request/> (Prosody), a malformed one
 * <jid-malformed/>. Then it is routed like any other stanza.
 */
static void
handle_stanza(struct comp *k, xml_elem *st)
{
	const char *from = xml_attr_get(st, "from"), *to = xml_attr_get(st, "to"), *err;
	jid jfrom, jto;

	if (xml_elem_ns(st) != NULL || stanza_kind(st) == STANZA_OTHER) {
		/* 4.9.3.22. */
		xstream_error(&k->xs, "unsupported-stanza-type", NULL);
		return;
	}
	if (from == NULL || jid_parse(&jfrom, from, strlen(from), &err) < 0) {
		xstream_error(&k->xs, "invalid-from", from == NULL ? "a stanza without 'from'" :
		    "a 'from' that is not a JID");
		return;
	}
	if (strcmp(jfrom.domain, k->domain) != 0) {
		log_info(k->tag, "component %s sent from %s: closing", k->domain, jfrom.full);
		jid_free(&jfrom);
		xstream_error(&k->xs, "invalid-from", "a 'from' outside the component's domain");
		return;
	}
	if (to == NULL) {
		jid_free(&jfrom);
		reply_error(k, st, "bad-request", "a component's stanza needs a 'to'");
		return;
	}
	if (jid_parse(&jto, to, strlen(to), &err) < 0) {
		jid_free(&jfrom);
		reply_error(k, st, "jid-malformed", NULL);
		return;
	}
	router_route(st, &jfrom, &jto);
	jid_free(&jfrom);
	jid_free(&jto);
}

static void
on_element(struct xstream *xs, xml_elem *e)
{
	struct comp *k = COMP(xs);
	const char *ns = xml_elem_ns(e);

	if (ns != NULL && strcmp(ns, XML_NS_STREAM) == 0 &&
	    strcmp(xml_elem_name(e), "error") == 0) {
		xml_elem *cond = xml_first_child(e);

		log_info(k->tag, "component sent stream error <%s/>",
		    cond != NULL ? xml_elem_name(cond) : "?");
		xstream_close(xs);
		return;
	}
	if (!k->authenticated) {
		if (ns == NULL && strcmp(xml_elem_name(e), "handshake") == 0) {
			handshake(k, e);
			return;
		}
		/* RFC 6120 4.9.3.12: nothing before the handshake. */
		xstream_error(xs, "not-authorized", "handshake first");
		return;
	}
	handle_stanza(k, e);
}
