/*
 * c2s.c - client streams: RFC 6120 negotiation and the bound session.
 *
 * A connection goes through: stream header -> (STARTTLS -> TLS handshake ->
 * header) -> SASL -> header -> resource binding -> session. Everything runs
 * on the worker that accepted the socket. The stream (its bytes, TLS, the
 * parser, stream errors, the lingering close) is stream/xstream.h's; this
 * file is what a client stream says. A connection is freed only from the
 * stream's end callback, never inside an expat callback.
 */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "auth/sasl.h"
#include "c2s/c2s.h"
#include "core/acl.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/worker.h"
#include "net/listener.h"
#include "net/tls.h"
#include "router/router.h"
#include "router/session.h"
#include "router/sm.h"
#include "stream/xstream.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"
#include "xmpp/stanza.h"

#define C2S_SHUTDOWN_MAX_MS 3000

struct c2s {
	struct session s;              /* what the router knows (first: the sink's argument) */
	struct xstream xs;             /* the stream (stream/xstream.h) */
	struct worker *w;
	struct conf *conf;             /* the configuration it started with */
	const struct conf_listen *l;
	sasl_session *sasl;

	unsigned authenticated : 1;

	unsigned auth_failures;
	const char *delayed_failure;   /* SASL condition to send after the delay */
	char *host;                    /* the domain the client asked for */
	char *node;                    /* authenticated account */
	char tag[24];                  /* "c2s#12" for logs */
};

#define C2S(x) ((struct c2s *)((char *)(x) - offsetof(struct c2s, xs)))

/* The ABI's session is the router's (router/session.h). */
#define SESSION(c) ((xmppd_session *)&(c)->s)

/* Every client stream, per worker (stream/conn.h). */
static struct conn_set *c2s_set;

static void on_stream_start(struct xstream *xs, const struct xstream_header *h);
static void on_element(struct xstream *xs, xml_elem *e);
static void on_end(struct xstream *xs, enum conn_end how, const char *why);
static void on_closing(struct xstream *xs);
static void on_header_first(struct xstream *xs);
static int on_timeout(struct xstream *xs);

static const struct xstream_class c2s_class = {
	.ns = NS_CLIENT,
	.lang = "en",
	.stream_start = on_stream_start,
	.element = on_element,
	.end = on_end,
	.closing = on_closing,
	.header_first = on_header_first,
	.timeout = on_timeout,
};

static void
c2s_send(struct c2s *c, const xml_elem *e)
{
	xstream_send(&c->xs, e);
}

static void
c2s_writes(struct c2s *c, const char *s)
{
	xstream_puts(&c->xs, s);
}

static void
c2s_stream_error(struct c2s *c, const char *condition, const char *text)
{
	xstream_error(&c->xs, condition, text);
}

/* The sink the router delivers through (router/session.h). */
static void
sink_send(struct session *s, const xml_elem *st)
{
	c2s_send((struct c2s *)s, st);
}

static void
sink_close(struct session *s, const char *condition, const char *text)
{
	c2s_stream_error((struct c2s *)s, condition, text);
}

static const struct session_ops c2s_session_ops = { sink_send, sink_close };

/* ---------------------------------------------------------------- */
/* Life cycle.                                                        */

int
c2s_init(unsigned nworkers)
{
	c2s_set = conn_set_new(nworkers);
	if (c2s_set == NULL)
		return -1;
	listener_set_handler(CONF_LISTEN_C2S, c2s_accept);
	/* Idle streams give their XML parser back (doc/architecture.md,
	 * "Client streams"). */
	return xstream_hibernate_idle(c2s_set);
}

void
c2s_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conf_listen *l)
{
	struct conn_accept_opts o = { NULL, NULL, 1 };
	struct xstream_params p;
	struct c2s *c;

	if (conn_set_stopped(c2s_set, w) || (c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	c->w = w;
	c->l = l;
	c->conf = conf_current();
	/* In the router's table from now on: a session that is not bound
	 * yet is only ever answered (pre-authentication IQs). */
	session_add(&c->s, w, &c2s_session_ops, sa, salen);
	snprintf(c->tag, sizeof(c->tag), "c2s#%u.%llu", worker_id(w),
	    (unsigned long long)(c->s.sid & 0xffffffffffffffULL));
	p.limits.max_stanza_size = l->max_stanza_size;
	p.limits.max_depth = c->conf->max_xml_depth;
	p.limits.max_attrs = c->conf->max_xml_attrs;
	p.max_send_queue = c->conf->max_send_queue;
	p.initiating = 0;
	p.last_input_ms = &c->s.last_input_ms;
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
	session_remove(&c->s);
	conf_unref(c->conf);
	free(c);
}

static void
c2s_free(struct c2s *c)
{
	/* The session's end first: its hooks may still send to it. */
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
	c2s_free(C2S(xs));
}

/* The stream starts closing: nothing more is delivered to the session. */
static void
on_closing(struct xstream *xs)
{
	struct c2s *c = C2S(xs);

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

/* The delay after a failed authentication is over. */
static void
auth_delay_over(struct c2s *c)
{
	xstream_printf(&c->xs, "<failure xmlns='" NS_SASL "'><%s/></failure>",
	    c->delayed_failure);
	c->delayed_failure = NULL;
	if (c->auth_failures >= c->conf->max_auth_attempts) {
		/* RFC 6120 6.4.5: too many retries. */
		c2s_stream_error(c, "policy-violation", "too many authentication failures");
		return;
	}
	xstream_set_timer(&c->xs, c->conf->negotiation_timeout);
	xstream_resume(&c->xs);
}

static int
on_timeout(struct xstream *xs)
{
	struct c2s *c = C2S(xs);

	if (c->delayed_failure != NULL) {
		auth_delay_over(c);
		return 1;
	}
	/* 0: the negotiation deadline, <connection-timeout/>. */
	return c->s.bound;
}

/* ---------------------------------------------------------------- */
/* Negotiation.                                                       */

/* RFC 6120 5.4.2.3: <proceed/>, then TLS from the next byte (the
 * whitespace rule and the hand-over are stream/conn.h's). */
static void
start_tls(struct c2s *c)
{
	SSL *ssl = tls_new_server(NULL);

	if (ssl == NULL) {
		/* 5.4.2.2: failure, and the stream ends. */
		log_error(c->tag, "STARTTLS: no certificate");
		c2s_writes(c, "<failure xmlns='" NS_TLS "'/></stream:stream>");
		xstream_close(&c->xs);
		return;
	}
	c2s_writes(c, "<proceed xmlns='" NS_TLS "'/>");
	xstream_starttls(&c->xs, ssl, 0);
}

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
	if (!c->xs.tls) {
		xml_elem *st = xml_elem_add_child(features, NS_TLS, "starttls");

		if (c->l->starttls_required)
			(void)xml_elem_add_child(st, NS_TLS, "required");
		else
			sasl_add_features(features, NULL, 0);
	} else if (!c->authenticated) {
		sasl_add_features(features, xstream_ssl(&c->xs), c->conf->allow_plain);
	} else {
		xml_elem *s;

		(void)xml_elem_add_child(features, NS_BIND, "bind");
		/* RFC 3921 3 session establishment, kept as an optional
		 * no-op for old clients (draft-cridland-xmpp-session). */
		s = xml_elem_add_child(features, NS_SESSION, "session");
		(void)xml_elem_add_child(s, NS_SESSION, "optional");
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
sasl_failure(struct c2s *c, const char *condition)
{
	sasl_end(&c->sasl);
	c->auth_failures++;
	log_info(c->tag, "authentication failed (%s) from %s", condition, c->s.addr);
	/* A delay before the answer slows password guessing; the stream
	 * reads nothing meanwhile. */
	c->delayed_failure = condition;
	xstream_pause(&c->xs);
	xstream_set_timer_ms(&c->xs, c->conf->auth_failure_delay_ms);
}

static void
sasl_exchange(struct c2s *c, const char *in)
{
	const char *cond = NULL;
	char *out = NULL;

	switch (sasl_step(c->sasl, in, &out, &cond)) {
	case SASL_CONTINUE:
		/* RFC 6120 6.4.2: an empty challenge is "=". */
		xstream_printf(&c->xs, "<challenge xmlns='" NS_SASL "'>%s</challenge>",
		    *out ? out : "=");
		break;
	case SASL_SUCCESS:
		if (c->conf->c2s_access != NULL) {
			jid who;
			const char *e;
			int allowed = 0;

			/* The configured access rule decides who may log in
			 * (doc/configuration.md, "Access control"). */
			if (jid_make(&who, sasl_node(c->sasl), c->host, NULL, &e) == 0) {
				allowed = access_check(c->conf, c->conf->c2s_access, &who,
				    (struct sockaddr *)&c->s.sa);
				jid_free(&who);
			}
			if (!allowed) {
				free(out);
				log_info(c->tag, "%s@%s is not allowed to log in (c2s_access)",
				    sasl_node(c->sasl), c->host);
				sasl_failure(c, "not-authorized");
				return;
			}
		}
		c->node = strdup(sasl_node(c->sasl));
		c->authenticated = 1;
		log_info(c->tag, "%s@%s authenticated with %s from %s", c->node, c->host,
		    sasl_mechanism(c->sasl), c->s.addr);
		/* 6.4.6: additional data with success (SCRAM's v=...). */
		if (*out)
			xstream_printf(&c->xs, "<success xmlns='" NS_SASL "'>%s</success>", out);
		else
			xstream_puts(&c->xs, "<success xmlns='" NS_SASL "'/>");
		sasl_end(&c->sasl);
		/* 6.4.6: the client opens a new stream over the same TLS. */
		xstream_restart(&c->xs);
		break;
	case SASL_FAILURE:
		sasl_failure(c, cond);
		break;
	}
	free(out);
}

static void
handle_sasl(struct c2s *c, xml_elem *e)
{
	const char *name = xml_elem_name(e);
	const char *cond;

	if (strcmp(name, "auth") == 0) {
		const char *mech = xml_attr_get(e, "mechanism");

		if (c->sasl != NULL)
			sasl_end(&c->sasl);
		/* STARTTLS is mandatory-to-negotiate here: nothing but it
		 * is accepted first (RFC 6120 5.3.1). */
		if (!c->xs.tls && c->l->starttls_required) {
			c2s_writes(c, "<failure xmlns='" NS_SASL "'><encryption-required/></failure>");
			return;
		}
		if (mech == NULL) {
			sasl_failure(c, "invalid-mechanism");
			return;
		}
		c->sasl = sasl_start(mech, c->host, xstream_ssl(&c->xs),
		    c->conf->allow_plain, &cond);
		if (c->sasl == NULL) {
			if (strcmp(cond, "encryption-required") == 0) {
				c2s_writes(c, "<failure xmlns='" NS_SASL "'><encryption-required/></failure>");
				return;
			}
			sasl_failure(c, cond);
			return;
		}
		sasl_exchange(c, xml_text(e));
	} else if (strcmp(name, "response") == 0) {
		if (c->sasl == NULL) {
			c2s_stream_error(c, "policy-violation", "response outside an exchange");
			return;
		}
		sasl_exchange(c, xml_text(e));
	} else if (strcmp(name, "abort") == 0) {
		/* 6.4.4. */
		sasl_end(&c->sasl);
		c2s_writes(c, "<failure xmlns='" NS_SASL "'><aborted/></failure>");
	} else {
		c2s_stream_error(c, "unsupported-stanza-type", NULL);
	}
}

static void
reply_iq_error(struct c2s *c, xml_elem *iq, const char *condition)
{
	xml_elem *r = stanza_error_reply(iq, condition, NULL);

	if (r != NULL) {
		c2s_send(c, r);
		xml_elem_unref(r);
	}
}

static void
random_resource(char *buf, size_t len)
{
	unsigned char r[8];
	static const char digits[] = "0123456789abcdef";

	RAND_bytes(r, sizeof(r));
	snprintf(buf, len, "xmppd-");
	for (int i = 0; i < 8 && 6 + 2 * i + 2 < (int)len; i++) {
		buf[6 + 2 * i] = digits[r[i] >> 4];
		buf[6 + 2 * i + 1] = digits[r[i] & 15];
		buf[6 + 2 * i + 2] = '\0';
	}
}

/* RFC 6120 7: resource binding. */
static void
handle_bind(struct c2s *c, xml_elem *iq, xml_elem *bind)
{
	const char *want = xml_child_text(bind, NS_BIND, "resource");
	const char *err;
	char gen[32];
	xml_elem *r, *b, *j;

	if (want == NULL || *want == '\0') {
		/* 7.6.1: the server generates one. */
		random_resource(gen, sizeof(gen));
		want = gen;
	}
	if (jid_make(&c->s.jid, c->node, c->host, want, &err) < 0) {
		/* 7.7.2.1: a resource resourceprep refuses. */
		reply_iq_error(c, iq, "bad-request");
		return;
	}
	session_bind(&c->s);
	xstream_cancel_timer(&c->xs);
	r = stanza_iq_result(iq);
	xml_attr_set(r, "from", NULL);
	xml_attr_set(r, "to", NULL);
	b = xml_elem_add_child(r, NS_BIND, "bind");
	j = xml_elem_add_child(b, NS_BIND, "jid");
	xml_elem_add_text(j, c->s.jid.full, strlen(c->s.jid.full));
	c2s_send(c, r);
	xml_elem_unref(r);
	log_info(c->tag, "bound %s", c->s.jid.full);
	/* After the client has its result: a hook may send it stanzas. */
	session_opened(&c->s);
}

/* Presence without 'to': the user's own availability (RFC 6121 4.2, 4.5). */
static void
handle_own_presence(struct c2s *c, xml_elem *p)
{
	const char *type = xml_attr_get(p, "type");
	int was = c->s.available;

	if (type == NULL) {
		c->s.available = 1;
		c->s.priority = stanza_priority(p);
		sm_set_presence(&c->s.jid, c->s.sid, 1, c->s.priority, p);
		sm_presence_to_own_resources(p, &c->s.jid, c->s.sid, !was);
		/* RFC 6121 4.2.2, 4.4.2: including the resource that sent it. */
		c2s_send(c, p);
	} else if (strcmp(type, "unavailable") == 0) {
		c->s.available = 0;
		sm_set_presence(&c->s.jid, c->s.sid, 0, 0, NULL);
		if (was) {
			sm_presence_to_own_resources(p, &c->s.jid, c->s.sid, 0);
			c2s_send(c, p);     /* RFC 6121 4.5.2 */
		}
	}
	/* Other types without 'to' have no meaning and are dropped. */
}

static void
handle_stanza(struct c2s *c, xml_elem *st)
{
	enum stanza_kind kind = stanza_kind(st);
	const char *to = xml_attr_get(st, "to");
	const char *from = xml_attr_get(st, "from");
	const char *type = xml_attr_get(st, "type");
	const char *err;
	jid jto;

	if (kind == STANZA_OTHER) {
		c2s_stream_error(c, "unsupported-stanza-type", NULL);
		return;
	}
	/* RFC 6120 8.1.2.1: a 'from' must be the client's own address; the
	 * server stamps the full JID either way. */
	if (from != NULL && strcmp(from, c->s.jid.full) != 0 && strcmp(from, c->s.jid.bare) != 0) {
		jid jf;
		int ok = 0;

		if (jid_parse(&jf, from, strlen(from), &err) == 0) {
			ok = strcmp(jf.full, c->s.jid.full) == 0 || strcmp(jf.full, c->s.jid.bare) == 0;
			jid_free(&jf);
		}
		if (!ok) {
			c2s_stream_error(c, "invalid-from", NULL);
			return;
		}
	}
	xml_attr_set(st, "from", c->s.jid.full);

	if (hooks_any(XMPPD_HOOK_USER_SEND_PACKET) ||
	    (kind == STANZA_PRESENCE && hooks_any(XMPPD_HOOK_PRESENCE_OUT))) {
		struct xmppd_packet_args pa = { st, &c->s.jid, NULL, SESSION(c) };
		jid pto;
		int have_to = to != NULL && jid_parse(&pto, to, strlen(to), &err) == 0;

		pa.to = have_to ? &pto : NULL;
		/* STOP or DROP: a module took the stanza (blocking, ...). */
		if (hooks_run(XMPPD_HOOK_USER_SEND_PACKET, c->s.jid.domain, &pa) != XMPPD_CONTINUE ||
		    (kind == STANZA_PRESENCE &&
		    hooks_run(XMPPD_HOOK_PRESENCE_OUT, c->s.jid.domain, &pa) != XMPPD_CONTINUE)) {
			if (have_to)
				jid_free(&pto);
			return;
		}
		if (have_to)
			jid_free(&pto);
	}

	if (kind == STANZA_PRESENCE && to != NULL && type != NULL &&
	    (strcmp(type, "subscribe") == 0 || strcmp(type, "subscribed") == 0 ||
	    strcmp(type, "unsubscribe") == 0 || strcmp(type, "unsubscribed") == 0)) {
		jid pto;
		enum xmppd_result r = XMPPD_CONTINUE;

		/* RFC 6121 3.1.2: a subscription request goes out from the
		 * bare JID; the roster module records it (STOP when it has
		 * routed its own copy). */
		xml_attr_set(st, "from", c->s.jid.bare);
		if (jid_parse(&pto, to, strlen(to), &err) < 0) {
			xml_elem *r2 = stanza_error_reply(st, "jid-malformed", NULL);

			if (r2 != NULL) {
				xml_attr_set(r2, "from", NULL);
				c2s_send(c, r2);
				xml_elem_unref(r2);
			}
			return;
		}
		if (hooks_any(XMPPD_HOOK_ROSTER_OUT_SUBSCRIPTION)) {
			jid jb;
			struct xmppd_packet_args pa = { st, &c->s.jid, &pto, SESSION(c) };

			if (jid_bare_of(&jb, &c->s.jid) == 0) {
				pa.from = &jb;
				r = hooks_run(XMPPD_HOOK_ROSTER_OUT_SUBSCRIPTION, c->s.jid.domain, &pa);
				jid_free(&jb);
			}
		}
		if (r == XMPPD_CONTINUE) {
			jid jb;

			if (jid_bare_of(&jb, &c->s.jid) == 0) {
				router_route(st, &jb, &pto);
				jid_free(&jb);
			}
		}
		jid_free(&pto);
		return;
	}

	if (kind == STANZA_IQ) {
		/* RFC 6120 8.2.3: id and a known type are required. */
		if (xml_attr_get(st, "id") == NULL || type == NULL ||
		    (strcmp(type, "get") != 0 && strcmp(type, "set") != 0 &&
		    strcmp(type, "result") != 0 && strcmp(type, "error") != 0)) {
			reply_iq_error(c, st, "bad-request");
			return;
		}
	}
	if (to == NULL) {
		if (kind == STANZA_PRESENCE) {
			handle_own_presence(c, st);
			return;
		}
		/* RFC 6120 10.3: handled as if addressed to the account. */
		if (jid_make(&jto, c->s.jid.node, c->s.jid.domain, NULL, &err) < 0)
			return;
	} else if (jid_parse(&jto, to, strlen(to), &err) < 0) {
		/* 8.3.3.8. */
		xml_elem *r = stanza_error_reply(st, "jid-malformed", NULL);

		if (r != NULL) {
			xml_attr_set(r, "from", NULL);
			c2s_send(c, r);
			xml_elem_unref(r);
		}
		return;
	}
	if (kind == STANZA_IQ && jto.node == NULL && jto.resource == NULL &&
	    strcmp(jto.domain, c->host) == 0 && strcmp(type, "set") == 0 &&
	    xml_child(st, NS_SESSION, "session") != NULL) {
		/* The legacy session IQ: nothing to establish any more, but
		 * old clients and tsung wait for the result. */
		xml_elem *r = stanza_iq_result(st);

		c2s_send(c, r);
		xml_elem_unref(r);
		jid_free(&jto);
		return;
	}
	if (kind == STANZA_IQ && to == NULL && strcmp(type, "set") == 0 &&
	    xml_child(st, NS_SESSION, "session") != NULL) {
		xml_elem *r = stanza_iq_result(st);

		xml_attr_set(r, "from", NULL);
		c2s_send(c, r);
		xml_elem_unref(r);
		jid_free(&jto);
		return;
	}
	router_route(st, &c->s.jid, &jto);
	jid_free(&jto);
}

static int
handle_preauth_iq(struct c2s *c, xml_elem *iq)
{
	const char *type = xml_attr_get(iq, "type");
	const char *err;
	jid host;
	int handled;

	/* An id and get/set (RFC 6120 8.2.3); 'to' and 'from' mean nothing
	 * before authentication. */
	if (xml_attr_get(iq, "id") == NULL || type == NULL ||
	    (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
		return 0;
	if (jid_make(&host, NULL, c->host, NULL, &err) < 0)
		return 0;
	xml_attr_set(iq, "to", NULL);
	xml_attr_set(iq, "from", NULL);
	/* A module's answer to it comes back to this session. */
	session_preauth_begin(&c->s, iq);
	handled = registry_iq_dispatch_stream(iq, &host);
	session_preauth_end();
	jid_free(&host);
	return handled;
}

static void
on_element(struct xstream *xs, xml_elem *e)
{
	struct c2s *c = C2S(xs);
	const char *ns = xml_elem_ns(e);

	if (!c->xs.tls && ns != NULL && strcmp(ns, NS_TLS) == 0 &&
	    strcmp(xml_elem_name(e), "starttls") == 0 && !c->authenticated) {
		start_tls(c);
		return;
	}
	if (!c->authenticated) {
		if (ns != NULL && strcmp(ns, NS_SASL) == 0) {
			handle_sasl(c, e);
			return;
		}
		/* IQs a module handles before authentication (XEP-0077), once
		 * the stream is encrypted. */
		if (c->xs.tls && stanza_kind(e) == STANZA_IQ && c->sasl == NULL &&
		    handle_preauth_iq(c, e))
			return;
		/* 4.9.3.12: nothing else before authentication. */
		c2s_stream_error(c, "not-authorized", NULL);
		return;
	}
	if (!c->s.bound) {
		xml_elem *bind;
		const char *type = xml_attr_get(e, "type");

		if (stanza_kind(e) == STANZA_IQ && type != NULL && strcmp(type, "set") == 0 &&
		    (bind = xml_child(e, NS_BIND, "bind")) != NULL) {
			handle_bind(c, e, bind);
			return;
		}
		if (stanza_kind(e) == STANZA_IQ) {
			/* RFC 6120 7.1: nothing to route before binding. */
			reply_iq_error(c, e, "not-authorized");
			return;
		}
		c2s_stream_error(c, "not-authorized", "bind a resource first");
		return;
	}
	handle_stanza(c, e);
}

/* ---------------------------------------------------------------- */
/* Shutdown.                                                          */

void
c2s_shutdown_all(void)
{
	xstream_shutdown_all(c2s_set, C2S_SHUTDOWN_MAX_MS);
}

unsigned long
c2s_connection_count(void)
{
	return conn_set_count(c2s_set);
}

void
c2s_free_all(void)
{
	conn_set_free(&c2s_set);
}
