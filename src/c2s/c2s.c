/*
 * c2s.c - client streams: accept, life cycle, the stream header and
 * features, what each negotiation state accepts, the sink, shutdown.
 *
 * A connection goes through: stream header -> (STARTTLS -> TLS handshake ->
 * header) -> SASL -> header -> resource binding -> session (c2s_int.h says
 * which file does what). Everything runs on the worker that accepted the
 * socket. The stream (its bytes, TLS, the parser, stream errors, the
 * lingering close) is stream/xstream.h's; src/c2s/ is what a client stream
 * says. A connection is freed only from the stream's end callback, never
 * inside an expat callback.
 */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/sasl.h"
#include "c2s/c2s.h"
#include "c2s/c2s_int.h"
#include "core/acl.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/worker.h"
#include "http/http.h"
#include "http/websocket.h"
#include "net/listener.h"
#include "net/tls.h"
#include "router/session.h"
#include "stream/xstream.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"
#include "xmpp/stanza.h"

#define C2S_SHUTDOWN_MAX_MS 3000

/* Every client stream, per worker (stream/conn.h). */
static struct conn_set *c2s_set;

static void on_stream_start(struct xstream *xs, const struct xstream_header *h);
static void on_element(struct xstream *xs, xml_elem *e);
static void on_end(struct xstream *xs, enum conn_end how, const char *why);
static void on_closing(struct xstream *xs);
static void on_header_first(struct xstream *xs);
static int on_timeout(struct xstream *xs);
static void c2s_ws_request(struct http_req *r, void *arg);
static void on_element_done(struct xstream *xs);

static const struct xstream_class c2s_class = {
	.ns = NS_CLIENT,
	.lang = "en",
	.stream_start = on_stream_start,
	.element = on_element,
	.end = on_end,
	.closing = on_closing,
	.header_first = on_header_first,
	.timeout = on_timeout,
	.element_done = on_element_done,
};

/* The sink the router delivers through (router/session.h). */
static void
sink_send(struct session *s, const xml_elem *st)
{
	c2s_send((struct c2s *)s, st);
}

static void
sink_close(struct session *s, const char *condition, const char *text)
{
	struct c2s *c = (struct c2s *)s;

	/* A session without its connection (stream management) ends
	 * there. */
	if (!c2s_sm_close(c))
		c2s_stream_error(c, condition, text);
}

const struct session_ops c2s_session_ops = { sink_send, sink_close };

/* ---------------------------------------------------------------- */
/* Life cycle.                                                        */

int
c2s_init(unsigned nworkers)
{
	c2s_set = conn_set_new(nworkers);
	if (c2s_set == NULL)
		return -1;
	if (c2s_sm_init(nworkers) < 0)
		return -1;
	listener_set_handler(CONF_LISTEN_C2S, c2s_accept);
	/* RFC 7395 on the HTTP listener. */
	if (http_route_add("/xmpp-websocket", c2s_ws_request, NULL, NULL) < 0)
		return -1;
	/* XEP-0206 on the HTTP listener. */
	if (c2s_bosh_init(nworkers) < 0)
		return -1;
	/* Idle streams give their XML parser back (doc/architecture.md,
	 * "Client streams"). */
	return xstream_hibernate_idle(c2s_set);
}

/*
 * A new client connection on worker w for a client at sa, in the router's
 * table from now on (a session that is not bound yet is only ever
 * answered: pre-authentication IQs), named "KIND#worker.serial" in logs;
 * *p gets the stream's parameters. NULL when out of memory.
 */
static struct c2s *
c2s_new(struct worker *w, const struct conf_listen *l, const struct sockaddr *sa,
    socklen_t salen, const char *kind, struct xstream_params *p)
{
	struct c2s *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->w = w;
	c->l = l;
	c->conf = conf_current();
	c->mtransport = strcmp(kind, "ws") == 0 ? METRICS_WEBSOCKET :
	    strcmp(kind, "bosh") == 0 ? METRICS_BOSH : METRICS_TCP;
	session_add(&c->s, w, &c2s_session_ops, sa, salen);
	snprintf(c->tag, sizeof(c->tag), "%s#%u.%llu", kind, worker_id(w),
	    (unsigned long long)(c->s.sid & 0xffffffffffffffULL));
	p->limits.max_stanza_size = l->max_stanza_size;
	p->limits.max_depth = c->conf->max_xml_depth;
	p->limits.max_attrs = c->conf->max_xml_attrs;
	p->max_send_queue = c->conf->max_send_queue;
	p->initiating = 0;
	p->last_input_ms = &c->s.last_input_ms;
	return c;
}

/* Undoes c2s_new when the stream could not be made. */
static void
c2s_new_failed(struct c2s *c)
{
	session_remove(&c->s);
	conf_unref(c->conf);
	free(c);
}

/* A framed stream (WebSocket, BOSH) is set up: wss:// or https://, or
 * plain behind a TLS proxy the listener trusts (secure: true), counts as
 * encrypted; negotiation has its deadline as on TCP. */
static void
c2s_framed_started(struct c2s *c, int secure, const char *kind)
{
	c->ws = 1;
	c->xs.tls = secure;
	log_debug(c->tag, "%s from %s%s", kind, c->s.addr, secure ? " (secure)" : "");
	xstream_set_timer(&c->xs, c->conf->negotiation_timeout);
}

void
c2s_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conf_listen *l)
{
	struct conn_accept_opts o = { NULL, NULL, 1 };
	struct xstream_params p;
	struct c2s *c;

	if (conn_set_stopped(c2s_set, w) || (c = c2s_new(w, l, sa, salen, "c2s", &p)) == NULL) {
		close(fd);
		return;
	}
	if (xstream_init(&c->xs, &c2s_class, c2s_set, w, c->tag, &p) < 0)
		goto fail;
	/* The listener's shaper (acl.h). */
	if (l->shaper != NULL)
		o.shaper = shaper_find(c->conf, l->shaper);
	if (l->tls) {
		/* XEP-0368: TLS from the first byte, ALPN "xmpp-client". */
		o.ssl = tls_new_server("xmpp-client");
		if (o.ssl == NULL) {
			log_error(c->tag, "direct TLS listener but no certificate");
			goto fail;
		}
	}
	log_debug(c->tag, "connection from %s%s", c->s.addr, l->tls ? " (direct TLS)" : "");
	if (xstream_accept(&c->xs, fd, sa, salen, &o, c->conf->max_connections_per_ip,
	    c->conf->negotiation_timeout) < 0) {
		fd = -1;
		goto fail;
	}
	return;
fail:
	if (fd >= 0)
		close(fd);
	xstream_free(&c->xs);
	c2s_new_failed(c);
}

/*
 * RFC 7395: a WebSocket at /xmpp-websocket is a client stream in framed
 * mode (stream/xstream.h) on the connection the HTTP listener hands over;
 * from then on it is a c2s connection like any other (SASL, bind, every
 * module, stream management), in c2s_set.
 */
static void
c2s_ws_request(struct http_req *r, void *arg)
{
	struct worker *w = http_req_worker(r);
	const struct conf_listen *l = http_req_listener(r);
	struct sockaddr_storage sa;
	int secure = http_req_secure(r);
	struct xstream_params p;
	struct conn *conn;
	struct c2s *c;

	(void)arg;
	memcpy(&sa, http_req_client(r), sizeof(sa));
	if (conn_set_stopped(c2s_set, w)) {
		http_error(r, 503, "shutting down");
		return;
	}
	if ((conn = http_ws_accept(r, "xmpp")) == NULL)
		return;
	if ((c = c2s_new(w, l, (struct sockaddr *)&sa, sa.ss_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in), "ws", &p)) == NULL) {
		conn_free(&conn);
		return;
	}
	if (xstream_init_ws(&c->xs, &c2s_class, c2s_set, conn, c->tag, &p) < 0) {
		conn_free(&conn);
		c2s_new_failed(c);
		return;
	}
	c2s_framed_started(c, secure, "WebSocket");
}

struct xstream *
c2s_new_framed(struct worker *w, const struct conf_listen *l, const struct sockaddr *sa,
    socklen_t salen, int secure, const struct xstream_framer *f, void *farg, const char *kind)
{
	struct xstream_params p;
	struct c2s *c;

	if (conn_set_stopped(c2s_set, w) || (c = c2s_new(w, l, sa, salen, kind, &p)) == NULL)
		return NULL;
	if (xstream_init_framed(&c->xs, &c2s_class, c2s_set, w, f, farg, c->tag, &p) < 0) {
		c2s_new_failed(c);
		return NULL;
	}
	c2s_framed_started(c, secure, kind);
	return &c->xs;
}

void
c2s_metrics_session(struct c2s *c, int on)
{
	if (c->mcounted == (on != 0))
		return;
	c->mcounted = on != 0;
	metrics_add((enum metrics_counter)(METRIC_SESSIONS_TCP + c->mtransport), on ? 1 : -1);
}

void
c2s_destroy(struct c2s *c)
{
	c2s_metrics_session(c, 0);
	/* The session's end first: its hooks may still send to it. Then
	 * what the client did not acknowledge goes back to the router
	 * (XEP-0198 4), which no longer finds this session. */
	session_end(&c->s);
	c2s_sm_end(c);
	session_remove(&c->s);
	xstream_free(&c->xs);
	sasl_end(&c->sasl);
	free(c->host);
	free(c->node);
	conf_unref(c->conf);
	log_debug(c->tag, "closed");
	free(c);
}

/* The stream is over (stream/xstream.h): the peer went, or our close is
 * done. */
static void
on_end(struct xstream *xs, enum conn_end how, const char *why)
{
	struct c2s *c = C2S(xs);

	/* A stream management session outlives its connection (c2s_sm.c). */
	if (c2s_sm_conn_end(c, how))
		return;
	c2s_destroy(c);
}

static void
on_element_done(struct xstream *xs)
{
	c2s_sm_element_done(C2S(xs));
}

/* The stream starts closing: nothing more is delivered to the session. */
static void
on_closing(struct xstream *xs)
{
	struct c2s *c = C2S(xs);

	if (c2s_sm_closing(c))
		return;
	c->s.closing = 1;
	session_end(&c->s);
}

/* RFC 6120 4.7: from = our domain, a fresh id, version 1.0. */
static void
send_header(struct c2s *c)
{
	xstream_send_header(&c->xs, c->host != NULL ? c->host : c->conf->hosts[0], NULL);
}

static void
on_header_first(struct xstream *xs)
{
	send_header(C2S(xs));
}

static int
on_timeout(struct xstream *xs)
{
	struct c2s *c = C2S(xs);

	if (c->delayed_failure != NULL) {
		c2s_auth_delay_over(c);
		return 1;
	}
	/* 0: the negotiation deadline, <connection-timeout/>. */
	return c->s.bound;
}

/* ---------------------------------------------------------------- */
/* Negotiation.                                                       */

static void
on_stream_start(struct xstream *xs, const struct xstream_header *h)
{
	struct c2s *c = C2S(xs);
	const char *to = h->to;
	xml_elem *features;
	char *host;

	if (to != NULL && (host = jid_nameprep(to, strlen(to))) != NULL) {
		if (conf_is_local_host(c->conf, host)) {
			free(c->host);
			c->host = host;
		} else {
			free(host);
		}
	}
	send_header(c);
	/* RFC 6120 4.8.1: the content namespace must be jabber:client. */
	if (h->ns == NULL || strcmp(h->ns, NS_CLIENT) != 0) {
		c2s_stream_error(c, "invalid-namespace", NULL);
		return;
	}
	/* 4.7.5: we speak 1.0; a missing or lower major version is refused. */
	if (!h->version1) {
		c2s_stream_error(c, "unsupported-version", NULL);
		return;
	}
	/* 4.9.3.6: a domain we do not serve (also after a restart: the
	 * client must keep asking for the same host). */
	if (to == NULL || c->host == NULL) {
		c2s_stream_error(c, "host-unknown", NULL);
		return;
	}

	features = xml_elem_new(XML_NS_STREAM, "features");
	if (c->authenticated) {
		xml_elem *s;

		/* After SASL (RFC 6120 6.4.6), whatever the transport: an
		 * unencrypted WebSocket or a TCP stream without required
		 * STARTTLS restarts here too. */
		(void)xml_elem_add_child(features, NS_BIND, "bind");
		/* RFC 3921 3 session establishment, kept as an optional
		 * no-op for old clients (draft-cridland-xmpp-session). */
		s = xml_elem_add_child(features, NS_SESSION, "session");
		(void)xml_elem_add_child(s, NS_SESSION, "optional");
		c2s_sm_features(c, features);
	} else if (!c->xs.tls && c->ws) {
		/* No STARTTLS in a WebSocket (RFC 7395 3.4: TLS is the
		 * HTTP connection's): an unencrypted one gets SCRAM only. */
		sasl_add_features(features, NULL, 0, 0);
	} else if (!c->xs.tls) {
		xml_elem *st = xml_elem_add_child(features, NS_TLS, "starttls");

		if (c->l->starttls_required)
			(void)xml_elem_add_child(st, NS_TLS, "required");
		else
			sasl_add_features(features, NULL, 0, 0);
	} else {
		sasl_add_features(features, xstream_ssl(&c->xs), c->xs.tls, c->conf->allow_plain);
	}
	/* Module features: the registered ones (before authentication only
	 * on an encrypted stream), then the fold hook. */
	if (c->authenticated || c->xs.tls)
		registry_stream_features(features, c->authenticated);
	if (hooks_any(XMPPD_HOOK_C2S_STREAM_FEATURES)) {
		struct xmppd_features_args fa = { features, c->host, c->xs.tls, c->authenticated };

		(void)hooks_run(XMPPD_HOOK_C2S_STREAM_FEATURES, c->host, &fa);
	}
	xstream_send_features(&c->xs, features);
	xml_elem_unref(features);
}

static void
on_element(struct xstream *xs, xml_elem *e)
{
	struct c2s *c = C2S(xs);
	const char *ns = xml_elem_ns(e);

	if (!c->xs.tls && !c->ws && ns != NULL && strcmp(ns, NS_TLS) == 0 &&
	    strcmp(xml_elem_name(e), "starttls") == 0 && !c->authenticated) {
		c2s_start_tls(c);
		return;
	}
	if (!c->authenticated) {
		if (ns != NULL && strcmp(ns, NS_SASL) == 0) {
			c2s_handle_sasl(c, e);
			return;
		}
		/* IQs a module handles before authentication (XEP-0077), once
		 * the stream is encrypted. */
		if (c->xs.tls && stanza_kind(e) == STANZA_IQ && c->sasl == NULL &&
		    c2s_preauth_iq(c, e))
			return;
		/* 4.9.3.12: nothing else before authentication. */
		c2s_stream_error(c, "not-authorized", NULL);
		return;
	}
	/* XEP-0198: enable, resume, r, a (c2s_sm.c says when each is
	 * allowed). */
	if (ns != NULL && strcmp(ns, NS_SM) == 0) {
		c2s_sm_element(c, e);
		return;
	}
	if (!c->s.bound) {
		xml_elem *bind;
		const char *type = xml_attr_get(e, "type");

		if (stanza_kind(e) == STANZA_IQ && type != NULL && strcmp(type, "set") == 0 &&
		    (bind = xml_child(e, NS_BIND, "bind")) != NULL) {
			c2s_bind(c, e, bind);
			return;
		}
		if (stanza_kind(e) == STANZA_IQ) {
			/* RFC 6120 7.1: nothing to route before binding. */
			c2s_reply_iq_error(c, e, "not-authorized");
			return;
		}
		c2s_stream_error(c, "not-authorized", "bind a resource first");
		return;
	}
	/* A nonza a module takes (XEP-0352 <active/>): not a stanza, so
	 * not counted in h; unknown ones are a stream error below. */
	if (stanza_kind(e) == STANZA_OTHER && hooks_any(XMPPD_HOOK_C2S_NONZA)) {
		struct xmppd_nonza_args na = { (xmppd_elem *)e, (xmppd_session *)&c->s };

		if (hooks_run(XMPPD_HOOK_C2S_NONZA, c->s.jid.domain, &na) != XMPPD_CONTINUE)
			return;
	}
	/* Counted in h once done (on_element_done, XEP-0198 4). */
	c->sm_count = c->sm != NULL;
	c2s_handle_stanza(c, e);
}

/* ---------------------------------------------------------------- */
/* Shutdown.                                                          */

void
c2s_shutdown_all(void)
{
	xstream_shutdown_all(c2s_set, C2S_SHUTDOWN_MAX_MS);
	/* Then the sessions that have no connection. */
	c2s_sm_shutdown();
}

unsigned long
c2s_connection_count(void)
{
	return conn_set_count(c2s_set);
}

void
c2s_free_all(void)
{
	c2s_bosh_free();
	conn_set_free(&c2s_set);
	c2s_sm_free_all();
}
