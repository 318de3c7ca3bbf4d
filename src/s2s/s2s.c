/*
 * s2s.c - what incoming, outgoing and verify streams share above the
 * stream layer (stream/xstream.h): the set of connections, the stream
 * class (peer stream errors, the negotiation deadline, closing), idle
 * timeout and keepalive, the entry points (accept, route), shutdown and
 * the listing for `xmppctl s2s`. The protocol lives in s2s_in.c and
 * s2s_out.c.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "core/acl.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/placement.h"
#include "core/worker.h"
#include "net/listener.h"
#include "net/tls.h"
#include "router/router.h"
#include "s2s/s2s.h"
#include "s2s/s2s_int.h"
#include "xmpp/ns.h"

#define S2S_SHUTDOWN_MAX_MS 2000

#define S2S(x) ((struct s2s_conn *)((char *)(x) - offsetof(struct s2s_conn, xs)))

static struct s2s_worker *sworkers;
static unsigned nsworkers;
/* Every s2s stream, per worker (stream/conn.h). */
static struct conn_set *s2s_set;

/* Every connection, for xmppctl s2s (main thread) to walk. */
static pthread_mutex_t glock = PTHREAD_MUTEX_INITIALIZER;
static struct s2s_conn *glist;

static void tick_cb(evutil_socket_t fd, short what, void *arg);
static void on_stream_start(struct xstream *xs, const struct xstream_header *h);
static void on_element(struct xstream *xs, xml_elem *e);
static void on_end(struct xstream *xs, enum conn_end how, const char *why);
static void on_stream_end(struct xstream *xs);
static void on_parse_error(struct xstream *xs, const char *condition, const char *text);
static void on_closing(struct xstream *xs);
static void on_header_first(struct xstream *xs);
static int on_timeout(struct xstream *xs);
static void on_connected(struct xstream *xs);
static void on_tls_installed(struct xstream *xs);
static void on_shutdown(struct xstream *xs);

/* RFC 6120 4.7; the dialback prefix is declared on every stream
 * (XEP-0220 2.1.2). An incoming stream's header carries our id. */
static const struct xstream_class s2s_class = {
	.ns = NS_SERVER,
	.decls = " xmlns:db='" NS_DIALBACK "'",
	.stream_start = on_stream_start,
	.element = on_element,
	.end = on_end,
	.stream_end = on_stream_end,
	.parse_error = on_parse_error,
	.closing = on_closing,
	.header_first = on_header_first,
	.timeout = on_timeout,
	.connected = on_connected,
	.tls_installed = on_tls_installed,
	.shutdown = on_shutdown,
};

int
s2s_init(unsigned nworkers)
{
	sworkers = calloc(nworkers, sizeof(*sworkers));
	s2s_set = conn_set_new(nworkers);
	if (sworkers == NULL || s2s_set == NULL)
		return -1;
	nsworkers = nworkers;
	listener_set_handler(CONF_LISTEN_S2S, s2s_accept);
	router_set_remote(s2s_route);
	for (unsigned i = 0; i < nworkers; i++) {
		sworkers[i].id = i;
		sworkers[i].next_id = ((uint64_t)i << 56) + 1;
	}
	dialback_init();
	return 0;
}

struct s2s_worker *
s2s_worker_of(struct worker *w)
{
	return &sworkers[worker_id(w)];
}

/* Created on the worker's thread the first time it resolves: an evdns
 * base is not shared between threads (it is not thread-safe without
 * locking, and each worker has its own event base). */
struct evdns_base *
s2s_dns(struct s2s_worker *sw, const struct conf *conf)
{
	const char *rc = conf->s2s_resolv_conf != NULL ? conf->s2s_resolv_conf :
	    "/etc/resolv.conf";
	int r;

	if (sw->dns != NULL)
		return sw->dns;
	sw->dns = evdns_base_new(worker_base(worker_get(sw->id)),
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (sw->dns == NULL)
		return NULL;
	/* Nameservers from the file (none is no default 127.0.0.1: an
	 * s2s_hosts-only set-up makes no DNS traffic); /etc/hosts is
	 * honoured by evdns_getaddrinfo. */
	r = evdns_base_resolv_conf_parse(sw->dns,
	    DNS_OPTIONS_ALL | DNS_OPTION_NAMESERVERS_NO_DEFAULT, rc);
	if (r != 0)
		log_warning("s2s", "%s: cannot read the nameservers (evdns error %d)", rc, r);
	(void)evdns_base_load_hosts(sw->dns, NULL);
	(void)evdns_base_set_option(sw->dns, "timeout:", "3");
	(void)evdns_base_set_option(sw->dns, "attempts:", "2");
	return sw->dns;
}

int
s2s_is_local_domain(const struct conf *c, const char *domain)
{
	size_t dl;

	if (domain == NULL)
		return 0;
	if (conf_is_local_host(c, domain))
		return 1;
	/* An external component's domain is served here too (XEP-0114). */
	if (conf_component_find(c, domain, NULL) != NULL)
		return 1;
	dl = strlen(domain);
	for (size_t i = 0; i < c->nhosts; i++) {
		size_t hl = strlen(c->hosts[i]);

		if (dl > hl + 1 && domain[dl - hl - 1] == '.' &&
		    strcmp(domain + dl - hl, c->hosts[i]) == 0)
			return 1;
	}
	return 0;
}

/* s2s_access, evaluated with the remote domain as a server JID. */
int
s2s_remote_allowed(const struct conf *c, const char *domain, const struct sockaddr *sa)
{
	const char *err;
	jid j;
	int ok;

	if (c->s2s_access == NULL)
		return 1;
	if (jid_make(&j, NULL, domain, NULL, &err) < 0)
		return 0;
	ok = access_check(c, c->s2s_access, &j, sa);
	jid_free(&j);
	return ok;
}

/* ---------------------------------------------------------------- */
/* Registry.                                                          */

struct s2s_conn *
s2s_conn_new(struct worker *w, enum s2s_kind kind)
{
	struct s2s_worker *sw = s2s_worker_of(w);
	struct s2s_conn *c = calloc(1, sizeof(*c));
	static const char *const kinds[] = { "in", "out", "verify" };
	struct xstream_params p;

	if (c == NULL)
		return NULL;
	c->w = w;
	c->sw = sw;
	c->kind = kind;
	c->id = sw->next_id++;
	c->conf = conf_current();
	snprintf(c->tag, sizeof(c->tag), "s2s-%s#%u.%llu", kinds[kind], sw->id,
	    (unsigned long long)(c->id & 0xffffffffffffffULL));
	p.limits.max_stanza_size = 524288;   /* RFC 6120 13.12: at least 10000 */
	p.limits.max_depth = c->conf->max_xml_depth;
	p.limits.max_attrs = c->conf->max_xml_attrs;
	p.max_send_queue = c->conf->max_send_queue;
	p.initiating = kind != S2S_IN;
	p.last_input_ms = &c->last_io_ms;
	if (xstream_init(&c->xs, &s2s_class, s2s_set, w, c->tag, &p) < 0 ||
	    (c->tick = event_new(worker_base(w), -1, EV_PERSIST, tick_cb, c)) == NULL) {
		xstream_free(&c->xs);
		conf_unref(c->conf);
		free(c);
		return NULL;
	}
	c->last_stanza_ms = c->last_io_ms = clock_now_ms();
	pthread_mutex_lock(&glock);
	c->gnext = glist;
	if (glist != NULL)
		glist->gprev = c;
	glist = c;
	pthread_mutex_unlock(&glock);
	return c;
}

struct s2s_conn *
s2s_first(struct s2s_worker *sw)
{
	struct conn *k = conn_set_first(s2s_set, worker_get(sw->id));

	return k != NULL ? S2S(xstream_of(k)) : NULL;
}

struct s2s_conn *
s2s_next(const struct s2s_conn *c)
{
	struct conn *k = conn_next(c->xs.conn);

	return k != NULL ? S2S(xstream_of(k)) : NULL;
}

struct s2s_conn *
s2s_find(struct s2s_worker *sw, uint64_t id)
{
	for (struct s2s_conn *c = s2s_first(sw); c != NULL; c = s2s_next(c))
		if (c->id == id)
			return c;
	return NULL;
}

int
s2s_stopping(const struct s2s_worker *sw)
{
	return conn_set_stopped(s2s_set, worker_get(sw->id));
}

void
s2s_start_tick(struct s2s_conn *c)
{
	unsigned p;

	/* The tick: often enough for the shortest of the idle timeout, the
	 * keepalive interval and its timeout. */
	p = c->conf->s2s_keepalive_timeout;
	if (c->conf->s2s_keepalive > 0 && c->conf->s2s_keepalive < p)
		p = c->conf->s2s_keepalive;
	if (c->conf->s2s_idle_timeout > 0 && c->conf->s2s_idle_timeout < p)
		p = c->conf->s2s_idle_timeout;
	{
		struct timeval tv = { p > 1 ? p / 2 : 0, p > 1 ? 0 : 500000 };

		event_add(c->tick, &tv);
	}
}

void
s2s_glock(void)
{
	pthread_mutex_lock(&glock);
}

void
s2s_gunlock(void)
{
	pthread_mutex_unlock(&glock);
}

/* What xmppctl shows: copied under the lock, since it reads from the main
 * thread. */
void
s2s_update_listing(struct s2s_conn *c)
{
	SSL *ssl = xstream_ssl(&c->xs);

	pthread_mutex_lock(&glock);
	if (ssl != NULL && c->xs.tls)
		snprintf(c->tlsver, sizeof(c->tlsver), "%s", tls_version(ssl));
	pthread_mutex_unlock(&glock);
}

/* ---------------------------------------------------------------- */
/* Output.                                                            */

void
s2s_write(struct s2s_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	xstream_vprintf(&c->xs, fmt, ap);
	va_end(ap);
	c->last_io_ms = clock_now_ms();
}

void
s2s_send_stanza(struct s2s_conn *c, xml_elem *st)
{
	if (c->xs.closing)
		return;
	/* NULL-namespace elements are written unqualified: jabber:server
	 * here (xml.h). Past max_send_queue: <resource-constraint/>. */
	xstream_send(&c->xs, st);
	metrics_stanza(1, stanza_kind(st));
	__atomic_add_fetch(&c->n_out, 1, __ATOMIC_RELAXED);
	c->last_stanza_ms = c->last_io_ms = clock_now_ms();
}

/* ---------------------------------------------------------------- */
/* Closing.                                                           */

/* The stream starts closing (its last bytes go with the lingering close,
 * stream/conn.h): a link's queue is bounced, a verify stream's questions
 * answered. */
static void
on_closing(struct xstream *xs)
{
	struct s2s_conn *c = S2S(xs);

	if (c->kind != S2S_IN)
		s2s_out_closed(c);
	event_del(c->tick);
}

void
s2s_free(struct s2s_conn *c)
{
	if (c->kind != S2S_IN)
		s2s_out_closed(c);
	pthread_mutex_lock(&glock);
	if (c->gprev != NULL)
		c->gprev->gnext = c->gnext;
	else
		glist = c->gnext;
	if (c->gnext != NULL)
		c->gnext->gprev = c->gprev;
	pthread_mutex_unlock(&glock);
	event_free(c->tick);
	xstream_free(&c->xs);
	for (size_t i = 0; i < c->npairs; i++) {
		free(c->pairs[i].local);
		free(c->pairs[i].remote);
	}
	free(c->pairs);
	for (size_t i = 0; i < c->qlen; i++)
		xml_elem_unref(c->queue[i]);
	free(c->queue);
	for (size_t i = 0; i < c->nvreq; i++) {
		free(c->vreq[i].id);
		free(c->vreq[i].key);
	}
	free(c->vreq);
	s2s_targets_free(c->targets, c->ntargets);
	if (c->addrs != NULL)
		evutil_freeaddrinfo(c->addrs);
	free(c->local);
	free(c->remote);
	conf_unref(c->conf);
	log_debug(c->tag, "closed");
	free(c);
}

/* ---------------------------------------------------------------- */
/* The stream's events.                                               */

static void
on_end(struct xstream *xs, enum conn_end how, const char *why)
{
	struct s2s_conn *c = S2S(xs);

	if (how == CONN_END_CONNECT_FAILED) {
		/* The next address or target. */
		s2s_out_conn_failed(c, why);
		return;
	}
	if (!c->xs.closing && c->kind != S2S_IN && c->state != ST_ESTABLISHED)
		s2s_out_fail(c, "remote-server-not-found", why);
	s2s_free(c);
}

static void
on_connected(struct xstream *xs)
{
	s2s_out_connected(S2S(xs));
}

/* After STARTTLS the initiating side opens the new stream over TLS
 * (RFC 6120 5.4.3.3). */
static void
on_tls_installed(struct xstream *xs)
{
	struct s2s_conn *c = S2S(xs);

	if (c->kind != S2S_IN)
		xstream_send_header(&c->xs, c->local, c->remote);
}

static void
on_header_first(struct xstream *xs)
{
	struct s2s_conn *c = S2S(xs);

	xstream_send_header(&c->xs, c->local, NULL);
}

/* The negotiation deadline. */
static int
on_timeout(struct xstream *xs)
{
	struct s2s_conn *c = S2S(xs);

	if (c->kind == S2S_IN)
		return c->npairs > 0;   /* 0: <connection-timeout/> */
	if (c->state != ST_ESTABLISHED) {
		s2s_out_fail(c, "remote-server-timeout", "timed out");
		if (conn_is_up(c->xs.conn))
			xstream_error(&c->xs, "connection-timeout", NULL);
		else
			xstream_close(&c->xs);
	}
	return 1;
}

/*
 * Idle links close (and reopen on demand); a link that has been quiet for
 * s2s_keepalive gets a whitespace ping (RFC 6120 4.6.1), and if the ping
 * has not left our send queue (kernel's included: unacknowledged bytes)
 * s2s_keepalive_timeout later, the peer is gone.
 */
static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct s2s_conn *c = arg;
	const struct conf *k = c->conf;
	uint64_t now = clock_now_ms();

	if (c->xs.closing || !conn_is_up(c->xs.conn) || c->state != ST_ESTABLISHED)
		return;
	if (c->ka_sent) {
		if (conn_queued(c->xs.conn) == 0 && conn_unacked(c->xs.conn) == 0) {
			c->ka_sent = 0;
		} else if (now - c->ka_sent_ms >= (uint64_t)k->s2s_keepalive_timeout * 1000) {
			log_info(c->tag, "peer %s does not acknowledge: closing", c->addr);
			if (c->kind == S2S_OUT)
				s2s_out_closed(c);
			s2s_free(c);
			return;
		}
	}
	/* The initiating side closes an idle link; the receiving side
	 * waits twice as long, so that a stanza the initiating side sends
	 * as the receiving side closes is not lost (streams are
	 * unidirectional, RFC 6120 4.5: only the initiator sends). */
	if (k->s2s_idle_timeout > 0 && now - c->last_stanza_ms >=
	    (uint64_t)k->s2s_idle_timeout * (c->kind == S2S_IN ? 2000 : 1000)) {
		log_info(c->tag, "idle for %u s: closing", k->s2s_idle_timeout);
		xstream_end(&c->xs);
		return;
	}
	if (k->s2s_keepalive > 0 && !c->ka_sent &&
	    now - c->last_io_ms >= (uint64_t)k->s2s_keepalive * 1000) {
		s2s_write(c, " ");
		c->ka_sent = 1;
		c->ka_sent_ms = now;
	}
}

static void
on_stream_start(struct xstream *xs, const struct xstream_header *h)
{
	struct s2s_conn *c = S2S(xs);

	if (c->kind == S2S_IN)
		s2s_in_stream_start(c, h);
	else
		s2s_out_stream_start(c, h);
}

static void
on_element(struct xstream *xs, xml_elem *e)
{
	struct s2s_conn *c = S2S(xs);
	const char *ns = xml_elem_ns(e);

	if (ns != NULL && strcmp(ns, XML_NS_STREAM) == 0 &&
	    strcmp(xml_elem_name(e), "error") == 0) {
		xml_elem *cond = xml_first_child(e);

		log_info(c->tag, "peer sent stream error <%s/>",
		    cond != NULL ? xml_elem_name(cond) : "?");
		if (c->kind != S2S_IN && c->state != ST_ESTABLISHED)
			s2s_out_fail(c, "remote-server-not-found", "stream error");
		xstream_close(&c->xs);
		return;
	}
	if (c->kind == S2S_IN)
		s2s_in_element(c, e);
	else
		s2s_out_element(c, e);
}

/* The peer's </stream:stream>, before we answer it and close. */
static void
on_stream_end(struct xstream *xs)
{
	struct s2s_conn *c = S2S(xs);

	if (c->kind != S2S_IN && c->state != ST_ESTABLISHED)
		s2s_out_fail(c, "remote-server-not-found", "stream closed");
}

static void
on_parse_error(struct xstream *xs, const char *condition, const char *text)
{
	struct s2s_conn *c = S2S(xs);

	if (c->kind != S2S_IN && c->state != ST_ESTABLISHED)
		s2s_out_fail(c, "remote-server-not-found", text);
}

/* ---------------------------------------------------------------- */
/* Entry points.                                                      */

void
s2s_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conf_listen *l)
{
	struct conn_accept_opts o = { NULL, NULL, 0 };
	struct s2s_conn *c;

	if (conn_set_stopped(s2s_set, w) || (c = s2s_conn_new(w, S2S_IN)) == NULL) {
		close(fd);
		return;
	}
	sockaddr_format(sa, c->addr, sizeof(c->addr));
	if (l->tls) {
		/* XEP-0368: TLS from the first byte, ALPN "xmpp-server". */
		o.ssl = tls_new_s2s_server("xmpp-server");
		if (o.ssl == NULL) {
			log_error(c->tag, "direct TLS listener but no certificate");
			close(fd);
			s2s_free(c);
			return;
		}
	}
	c->state = ST_NEGOTIATING;
	log_debug(c->tag, "connection from %s%s", c->addr, l->tls ? " (direct TLS)" : "");
	s2s_start_tick(c);
	if (xstream_accept(&c->xs, fd, sa, salen, &o, c->conf->max_connections_per_ip,
	    c->conf->negotiation_timeout) < 0)
		s2s_free(c);
}

struct route_task {
	xml_elem *st;
	char *local, *remote;
};

static void
route_task(struct worker *w, void *a, uint64_t b)
{
	struct route_task *t = a;

	s2s_out_route(w, t->st, t->local, t->remote);
	xml_elem_unref(t->st);
	free(t->local);
	free(t->remote);
	free(t);
}

void
s2s_route(xml_elem *st, const jid *from, const jid *to)
{
	struct route_task *t;
	struct conf *c;
	int ok;

	if (from == NULL || from->domain == NULL) {
		log_info("s2s", "dropped a stanza to %s without a sender", to->domain);
		return;
	}
	c = conf_current();
	ok = s2s_is_local_domain(c, from->domain);
	conf_unref(c);
	if (!ok) {
		/* We only speak for our own domains (RFC 6120 13.1). */
		log_info("s2s", "dropped a stanza from %s to %s: not a local domain",
		    from->domain, to->domain);
		return;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL || (t->local = strdup(from->domain)) == NULL ||
	    (t->remote = strdup(to->domain)) == NULL) {
		if (t != NULL)
			free(t->local);
		free(t);
		return;
	}
	t->st = xml_elem_ref(st);
	/* The link of a pair is an entity of its own (core/placement.h). */
	worker_post(worker_get(placement_of_pair(from->domain, to->domain)), route_task, t, 0);
}

/* ---------------------------------------------------------------- */
/* Listing, shutdown.                                                 */

void
s2s_list(struct evbuffer *out)
{
	static const char *const states[] = { "resolving", "connecting", "negotiating",
	    "established" };

	pthread_mutex_lock(&glock);
	for (struct s2s_conn *c = glist; c != NULL; c = c->gnext) {
		unsigned long in = __atomic_load_n(&c->n_in, __ATOMIC_RELAXED);
		unsigned long o = __atomic_load_n(&c->n_out, __ATOMIC_RELAXED);
		const char *tv = c->tlsver[0] ? c->tlsver : "-";

		if (c->kind == S2S_IN) {
			if (c->npairs == 0)
				evbuffer_add_printf(out, "in\t%s\t%s\t-\t%s\t%lu\t%lu\t%s\t%s\n",
				    c->local ? c->local : "-", c->remote ? c->remote : "-", tv,
				    in, o, c->xs.closing ? "closing" : states[c->state], c->addr);
			for (size_t i = 0; i < c->npairs; i++)
				evbuffer_add_printf(out, "in\t%s\t%s\t%s\t%s\t%lu\t%lu\t%s\t%s\n",
				    c->pairs[i].local, c->pairs[i].remote, c->pairs[i].auth, tv,
				    in, o, c->xs.closing ? "closing" : "established", c->addr);
		} else {
			evbuffer_add_printf(out, "%s\t%s\t%s\t%s\t%s\t%lu\t%lu\t%s\t%s\n",
			    c->kind == S2S_OUT ? "out" : "verify", c->local, c->remote,
			    c->auth ? c->auth : "-", tv, in, o,
			    c->xs.closing ? "closing" : states[c->state],
			    c->addr[0] ? c->addr : "-");
		}
	}
	pthread_mutex_unlock(&glock);
}

unsigned long
s2s_connection_count(void)
{
	return conn_set_count(s2s_set);
}

unsigned long
s2s_link_count(void)
{
	unsigned long n = 0;

	pthread_mutex_lock(&glock);
	for (struct s2s_conn *c = glist; c != NULL; c = c->gnext)
		if (!c->xs.closing && ((c->kind == S2S_IN && c->npairs > 0) ||
		    (c->kind == S2S_OUT && c->state == ST_ESTABLISHED)))
			n++;
	pthread_mutex_unlock(&glock);
	return n;
}

/* Before the <system-shutdown/>: a link that is not up bounces its queue. */
static void
on_shutdown(struct xstream *xs)
{
	struct s2s_conn *c = S2S(xs);

	if (c->kind != S2S_IN && c->state != ST_ESTABLISHED)
		s2s_out_fail(c, "remote-server-not-found", "server shutting down");
}

void
s2s_shutdown_all(void)
{
	/* Streams close after their last bytes went out (lingering close),
	 * before c2s shutdown lets the workers stop. */
	xstream_shutdown_all(s2s_set, S2S_SHUTDOWN_MAX_MS);
}

void
s2s_free_all(void)
{
	for (unsigned i = 0; i < nsworkers; i++) {
		struct s2s_worker *sw = &sworkers[i];
		struct s2s_conn *c;

		while ((c = s2s_first(sw)) != NULL)
			s2s_free(c);
		s2s_dns_free_all(sw);
		if (sw->dns != NULL)
			evdns_base_free(sw->dns, 1);
		sw->dns = NULL;
	}
	conn_set_free(&s2s_set);
	free(sworkers);
	sworkers = NULL;
	nsworkers = 0;
}
