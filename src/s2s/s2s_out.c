/*
 * s2s_out.c - outgoing links (we are the initiating server) and verify
 * streams (we ask an authoritative server about a dialback key).
 *
 * A link: resolve (s2s_hosts, else DNS SRV then A/AAAA: s2s_dns.c), connect
 * to each address of each target in turn, open the stream, STARTTLS
 * (RFC 6120 5), then SASL EXTERNAL with our certificate (RFC 6120 6,
 * XEP-0178 3) or, failing that and where allowed, dialback (XEP-0220).
 * The receiving server must present a certificate that verifies for its
 * domain, unless dialback is allowed (receiving_server_ok).
 * Stanzas wait in a bounded queue meanwhile; when the link fails they are
 * bounced with remote-server-not-found, or remote-server-timeout when it
 * ran out of time (RFC 6120 8.3.3.15, 8.3.3.16).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/util.h>
#include <openssl/evp.h>

#include "core/conf.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/worker.h"
#include "net/listener.h"
#include "net/tls.h"
#include "router/router.h"
#include "s2s/s2s_int.h"
#include "xmpp/ns.h"
#include "xmpp/stanza.h"

static void try_target(struct s2s_conn *c);
static void try_connect(struct s2s_conn *c);

/* ---------------------------------------------------------------- */
/* The link table: the worker's list, searched by pair.               */

static struct s2s_conn *
find_link(struct s2s_worker *sw, const char *local, const char *remote)
{
	/* A linear search: a worker holds few links (one per remote domain
	 * its pairs hash to), and it runs once per stanza at most. */
	for (struct s2s_conn *c = s2s_first(sw); c != NULL; c = s2s_next(c))
		if (c->kind == S2S_OUT && c->in_table && !c->xs.closing &&
		    strcmp(c->local, local) == 0 && strcmp(c->remote, remote) == 0)
			return c;
	return NULL;
}

static void
bounce_queue(struct s2s_conn *c, const char *condition)
{
	xml_elem **q = c->queue;
	size_t n = c->qlen;

	c->queue = NULL;
	c->qlen = c->qcap = 0;
	for (size_t i = 0; i < n; i++) {
		router_bounce(q[i], condition, NULL);
		xml_elem_unref(q[i]);
	}
	free(q);
}

static void
verify_answer_all(struct s2s_conn *c, const char *type, const char *condition)
{
	for (size_t i = 0; i < c->nvreq; i++)
		if (c->vreq[i].in_id != 0) {
			s2s_in_verified(c->sw, c->vreq[i].in_id, c->local, c->remote, type,
			    condition);
			c->vreq[i].in_id = 0;
		}
}

void
s2s_out_fail(struct s2s_conn *c, const char *condition, const char *why)
{
	if (c->in_table || c->qlen > 0)
		log_info(c->tag, "link %s -> %s failed (%s): %zu stanza(s) bounced with %s",
		    c->local, c->remote, why ? why : "?", c->qlen, condition);
	c->in_table = 0;
	bounce_queue(c, condition);
	if (c->kind == S2S_VERIFY)
		verify_answer_all(c, "error", condition);
}

void
s2s_out_closed(struct s2s_conn *c)
{
	c->in_table = 0;
	if (c->qlen > 0)
		bounce_queue(c, c->fail_condition ? c->fail_condition : "remote-server-not-found");
	if (c->kind == S2S_VERIFY)
		verify_answer_all(c, "error", "remote-server-not-found");
}

static void
fail_and_close(struct s2s_conn *c, const char *condition, const char *why)
{
	s2s_out_fail(c, condition, why);
	if (conn_is_up(c->xs.conn))
		xstream_error(&c->xs, "undefined-condition", why);
	else
		xstream_close(&c->xs);
}

static void
send_on_link(struct s2s_conn *c, xml_elem *st)
{
	if (hooks_any(XMPPD_HOOK_S2S_SEND_PACKET)) {
		const char *f = xml_attr_get(st, "from"), *t = xml_attr_get(st, "to");
		const char *err;
		jid jf, jt;
		enum xmppd_result r = XMPPD_CONTINUE;

		if (f != NULL && t != NULL && jid_parse(&jf, f, strlen(f), &err) == 0) {
			if (jid_parse(&jt, t, strlen(t), &err) == 0) {
				struct xmppd_packet_args pa = { st, &jf, &jt, NULL };

				r = hooks_run(XMPPD_HOOK_S2S_SEND_PACKET, c->local, &pa);
				jid_free(&jt);
			}
			jid_free(&jf);
		}
		if (r != XMPPD_CONTINUE)
			return;
	}
	s2s_send_stanza(c, st);
}

/* ---------------------------------------------------------------- */
/* Creating a link, resolving, connecting.                           */

static void
targets_cb(struct s2s_worker *sw, uint64_t id, struct s2s_target *t, size_t n)
{
	struct s2s_conn *c = s2s_find(sw, id);

	if (c == NULL || c->xs.closing) {
		s2s_targets_free(t, n);
		return;
	}
	if (n == 0) {
		fail_and_close(c, "remote-server-not-found", "no address for the domain");
		return;
	}
	c->targets = t;
	c->ntargets = n;
	c->cur_target = 0;
	try_target(c);
}

static struct s2s_conn *
out_new(struct worker *w, enum s2s_kind kind, const char *local, const char *remote)
{
	struct s2s_conn *c = s2s_conn_new(w, kind);

	if (c == NULL)
		return NULL;
	if ((c->local = strdup(local)) == NULL || (c->remote = strdup(remote)) == NULL) {
		s2s_free(c);
		return NULL;
	}
	c->state = ST_RESOLVING;
	c->in_table = kind == S2S_OUT;
	/* From now until authenticated (or the verify answer). */
	xstream_set_timer(&c->xs, c->conf->s2s_connect_timeout);
	log_debug(c->tag, "opening %s -> %s", local, remote);
	return c;
}

static void
out_start(struct s2s_conn *c)
{
	const struct conf_s2s_host *pin = conf_s2s_host(c->conf, c->remote);

	if (pin != NULL) {
		/* s2s_hosts: no DNS at all. */
		c->targets = calloc(1, sizeof(*c->targets));
		if (c->targets == NULL || (c->targets[0].host = strdup(pin->host)) == NULL) {
			fail_and_close(c, "remote-server-not-found", "out of memory");
			return;
		}
		c->targets[0].port = pin->port;
		c->ntargets = 1;
		try_target(c);
		return;
	}
	s2s_dns_targets(c->sw, c->conf, c->id, c->remote, targets_cb);
}

struct addr_ticket {
	struct s2s_worker *sw;
	uint64_t id;
};

static void
addr_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct addr_ticket *t = arg;
	struct s2s_conn *c = s2s_find(t->sw, t->id);

	free(t);
	if (c == NULL || c->xs.closing) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	if (result != 0 || res == NULL) {
		log_info(c->tag, "%s: %s", c->targets[c->cur_target].host,
		    evutil_gai_strerror(result));
		c->cur_target++;
		try_target(c);
		return;
	}
	c->addrs = c->cur_addr = res;
	try_connect(c);
}

/* The next target (RFC 6120 3.2.1 step 8: on failure, the next SRV record). */
static void
try_target(struct s2s_conn *c)
{
	struct evutil_addrinfo hints;
	struct evdns_base *dns;
	struct addr_ticket *t;
	char port[8];

	if (c->cur_target >= c->ntargets) {
		fail_and_close(c, "remote-server-not-found", "cannot connect to any address");
		return;
	}
	dns = s2s_dns(c->sw, c->conf);
	t = malloc(sizeof(*t));
	if (dns == NULL || t == NULL) {
		free(t);
		fail_and_close(c, "remote-server-not-found", "no resolver");
		return;
	}
	t->sw = c->sw;
	t->id = c->id;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	snprintf(port, sizeof(port), "%u", c->targets[c->cur_target].port);
	c->state = ST_RESOLVING;
	/* A and AAAA (RFC 6120 3.2.1 step 5), /etc/hosts first; the
	 * callback may run before this returns: c is not touched after. */
	(void)evdns_getaddrinfo(dns, c->targets[c->cur_target].host, port, &hints, addr_cb, t);
}

static void
try_connect(struct s2s_conn *c)
{
	for (; c->cur_addr != NULL; c->cur_addr = c->cur_addr->ai_next) {
		const struct s2s_target *tg = &c->targets[c->cur_target];
		SSL *ssl = NULL;

		/* XEP-0368: TLS first, ALPN xmpp-server, SNI the domain. */
		if (tg->direct_tls &&
		    (ssl = tls_new_client(c->local, c->remote, "xmpp-server")) == NULL)
			continue;
		sockaddr_format(c->cur_addr->ai_addr, c->addr, sizeof(c->addr));
		s2s_start_tick(c);
		c->state = ST_CONNECTING;
		log_debug(c->tag, "connecting to %s (%s)%s", c->addr, tg->host,
		    tg->direct_tls ? " with direct TLS" : "");
		if (xstream_connect(&c->xs, c->cur_addr->ai_addr,
		    (socklen_t)c->cur_addr->ai_addrlen, ssl) == 0)
			return;
		log_info(c->tag, "connect to %s: %s", c->addr,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	}
	evutil_freeaddrinfo(c->addrs);
	c->addrs = NULL;
	c->cur_target++;
	try_target(c);
}

/* The connection to c->addr failed before it was up (stream/conn.h has
 * dropped the socket): the next address. */
void
s2s_out_conn_failed(struct s2s_conn *c, const char *why)
{
	log_info(c->tag, "cannot connect to %s: %s", c->addr, why);
	c->addr[0] = '\0';
	if (c->cur_addr != NULL)
		c->cur_addr = c->cur_addr->ai_next;
	try_connect(c);
}

void
s2s_out_connected(struct s2s_conn *c)
{
	log_info(c->tag, "connected to %s for %s -> %s", c->addr, c->local, c->remote);
	c->state = ST_NEGOTIATING;
	s2s_update_listing(c);
	/* RFC 6120 4.7.1, 4.7.2: from our domain, to theirs. */
	xstream_send_header(&c->xs, c->local, c->remote);
}

void
s2s_out_route(struct worker *w, xml_elem *st, const char *local, const char *remote)
{
	struct s2s_worker *sw = s2s_worker_of(w);
	struct s2s_conn *c = find_link(sw, local, remote);
	struct conf *k = conf_current();
	int fresh = 0, allowed = s2s_remote_allowed(k, remote, NULL);

	conf_unref(k);
	if (!allowed) {
		/* s2s_access refuses the domain both ways, as ejabberd's
		 * does: we neither accept its streams nor send to it
		 * (RFC 6120 8.3.3.4). */
		router_bounce(st, "forbidden", "federation with this domain is not allowed");
		return;
	}
	if (c == NULL) {
		if (s2s_stopping(sw) || (c = out_new(w, S2S_OUT, local, remote)) == NULL) {
			router_bounce(st, "remote-server-not-found", NULL);
			return;
		}
		fresh = 1;
	}
	if (c->state == ST_ESTABLISHED) {
		send_on_link(c, st);
		return;
	}
	if (c->qlen >= c->conf->s2s_max_queue) {
		router_bounce(st, "resource-constraint", "too many stanzas waiting for the link");
		return;
	}
	if (c->qlen == c->qcap) {
		size_t n = c->qcap ? c->qcap * 2 : 16;
		xml_elem **q = realloc(c->queue, n * sizeof(*q));

		if (q == NULL) {
			router_bounce(st, "resource-constraint", NULL);
			return;
		}
		c->queue = q;
		c->qcap = n;
	}
	c->queue[c->qlen++] = xml_elem_ref(st);
	if (fresh)
		out_start(c);
}

/* ---------------------------------------------------------------- */
/* Negotiation.                                                       */

static void
established(struct s2s_conn *c, const char *auth)
{
	xml_elem **q = c->queue;
	size_t n = c->qlen;

	c->auth = auth;
	c->state = ST_ESTABLISHED;
	xstream_cancel_timer(&c->xs);
	s2s_update_listing(c);
	log_info(c->tag, "link %s -> %s established (%s, %s)", c->local, c->remote, auth,
	    c->xs.tls ? tls_version(xstream_ssl(&c->xs)) : "no TLS");
	c->queue = NULL;
	c->qlen = c->qcap = 0;
	for (size_t i = 0; i < n; i++) {
		if (!c->xs.closing)
			send_on_link(c, q[i]);
		else
			router_bounce(q[i], "remote-server-not-found", NULL);
		xml_elem_unref(q[i]);
	}
	free(q);
}

static void
send_db_result(struct s2s_conn *c)
{
	char key[65];

	if (c->xs.id[0] == '\0') {
		fail_and_close(c, "remote-server-not-found", "the peer gave no stream id");
		return;
	}
	/* XEP-0220 2.1.1: the key, from our domain to theirs. */
	dialback_key(c->conf, c->remote, c->local, c->xs.id, key);
	s2s_write(c, "<db:result from='");
	xstream_escape(&c->xs, c->local);
	s2s_write(c, "' to='");
	xstream_escape(&c->xs, c->remote);
	s2s_write(c, "'>%s</db:result>", key);
}

static void
send_db_verify(struct s2s_conn *c)
{
	/* XEP-0220 2.3.1: the receiving server asks the authoritative one. */
	for (size_t i = 0; i < c->nvreq; i++) {
		if (c->vreq[i].sent)
			continue;
		s2s_write(c, "<db:verify from='");
		xstream_escape(&c->xs, c->local);
		s2s_write(c, "' to='");
		xstream_escape(&c->xs, c->remote);
		s2s_write(c, "' id='");
		xstream_escape(&c->xs, c->vreq[i].id);
		s2s_write(c, "'>");
		xstream_escape(&c->xs, c->vreq[i].key);
		s2s_write(c, "</db:verify>");
		c->vreq[i].sent = 1;
	}
}

static int
offers_mechanism(xml_elem *features, const char *mech)
{
	xml_elem *m = xml_child(features, NS_SASL, "mechanisms");

	for (xml_elem *x = m ? xml_first_child(m) : NULL; x != NULL; x = xml_next_sibling(x))
		if (strcmp(xml_elem_name(x), "mechanism") == 0 && strcmp(xml_text(x), mech) == 0)
			return 1;
	return 0;
}

/*
 * Whether we may authenticate to this receiving server at all. Its
 * certificate is what authenticates it to us (RFC 6120 13.7.2, RFC 6125
 * 6.4, XEP-0178 3); SASL EXTERNAL and dialback (XEP-0220 1) only prove our
 * own domain to it, and a server that answers <success/> to anything would
 * otherwise get our users' stanzas. Without a certificate that verifies
 * for the remote domain, only DNS (or the s2s_hosts pin) says this is the
 * domain's server: the weak model dialback rests on (XEP-0220 1),
 * accepted only where s2s_dialback allows it, as Prosody does unless
 * s2s_secure_auth is set.
 */
static int
receiving_server_ok(struct s2s_conn *c)
{
	const char *why = "no TLS";
	char reason[256];

	c->peer_verified = c->xs.tls && tls_peer_verified(xstream_ssl(&c->xs), c->remote, &why);
	if (c->peer_verified)
		return 1;
	if (c->conf->s2s_dialback) {
		log_info(c->tag, "certificate of %s not verified (%s): dialback is allowed, "
		    "so its identity rests on DNS", c->remote, why);
		return 1;
	}
	snprintf(reason, sizeof(reason), "certificate of %s not verified (%s) and dialback "
	    "is off: not authenticating to it", c->remote, why);
	fail_and_close(c, "remote-server-not-found", reason);
	return 0;
}

/* After TLS (or without it, where allowed): how to authenticate. */
static void
authenticate(struct s2s_conn *c, xml_elem *features)
{
	if (c->kind == S2S_VERIFY) {
		send_db_verify(c);
		return;
	}
	if (!receiving_server_ok(c))
		return;
	/* XEP-0178 3: EXTERNAL when offered over TLS; the authorization
	 * identity is our domain. */
	if (c->xs.tls && !c->tried_external && features != NULL &&
	    offers_mechanism(features, "EXTERNAL")) {
		int n = (int)strlen(c->local);
		unsigned char *b64 = malloc((size_t)(4 * ((n + 2) / 3) + 1));

		if (b64 == NULL) {
			fail_and_close(c, "remote-server-not-found", "out of memory");
			return;
		}
		EVP_EncodeBlock(b64, (const unsigned char *)c->local, n);
		s2s_write(c, "<auth xmlns='" NS_SASL "' mechanism='EXTERNAL'>%s</auth>",
		    (const char *)b64);
		free(b64);
		c->tried_external = 1;
		return;
	}
	if (c->conf->s2s_dialback) {
		send_db_result(c);
		return;
	}
	fail_and_close(c, "remote-server-not-found",
	    "the peer does not accept our certificate and dialback is off");
}

void
s2s_out_stream_start(struct s2s_conn *c, const struct xstream_header *h)
{
	/* Its id is in c->xs.id (stream/xstream.h). */
	if (h->ns == NULL || strcmp(h->ns, NS_SERVER) != 0) {
		fail_and_close(c, "remote-server-not-found", "not a server stream");
		return;
	}
	if (!h->version1) {
		/* RFC 6120 4.7.5: a pre-1.0 peer sends no features; only
		 * dialback is possible, and no TLS. */
		if (!c->xs.tls && c->conf->s2s_use_starttls == CONF_S2S_TLS_REQUIRED) {
			fail_and_close(c, "remote-server-not-found", "the peer cannot do TLS");
			return;
		}
		authenticate(c, NULL);
	}
}

void
s2s_out_element(struct s2s_conn *c, xml_elem *e)
{
	const char *ns = xml_elem_ns(e), *name = xml_elem_name(e);

	if (ns != NULL && strcmp(ns, XML_NS_STREAM) == 0 && strcmp(name, "features") == 0) {
		if (c->state == ST_ESTABLISHED)
			return;
		if (c->sasl_done) {
			/* RFC 6120 6.4.6: the stream restarted after SASL. Our
			 * certificate authenticated us; the peer is authenticated
			 * by certificate only if its own verified (see
			 * receiving_server_ok), which xmppctl s2s must not
			 * overstate. */
			established(c, c->peer_verified ? "external" : "external-unverified");
			return;
		}
		if (!c->xs.tls && c->conf->s2s_use_starttls != CONF_S2S_TLS_FALSE &&
		    xml_child(e, NS_TLS, "starttls") != NULL) {
			s2s_write(c, "<starttls xmlns='" NS_TLS "'/>");
			return;
		}
		if (!c->xs.tls && c->conf->s2s_use_starttls == CONF_S2S_TLS_REQUIRED) {
			/* s2s_use_starttls: required (RFC 6120 5.3.1). */
			fail_and_close(c, "remote-server-not-found", "the peer does not offer TLS");
			return;
		}
		authenticate(c, e);
		return;
	}
	if (ns != NULL && strcmp(ns, NS_TLS) == 0) {
		if (strcmp(name, "proceed") == 0) {
			SSL *ssl = tls_new_client(c->local, c->remote, NULL);

			if (ssl == NULL) {
				/* The peer reads TLS now: nothing more to say
				 * in the clear. */
				s2s_out_fail(c, "remote-server-not-found", "no TLS context");
				xstream_close(&c->xs);
				return;
			}
			/* RFC 6120 5.4.2.3: TLS from the next byte; our new
			 * stream header goes over it (on_tls_installed). */
			xstream_starttls(&c->xs, ssl, 1);
			return;
		}
		fail_and_close(c, "remote-server-not-found", "STARTTLS failed");
		return;
	}
	if (ns != NULL && strcmp(ns, NS_SASL) == 0) {
		if (strcmp(name, "success") == 0) {
			/* RFC 6120 6.4.6: a new stream, no features needed but
			 * the stream restart itself. */
			c->sasl_done = 1;
			xstream_restart(&c->xs);
			xstream_send_header(&c->xs, c->local, c->remote);
			return;
		}
		if (strcmp(name, "failure") == 0) {
			xml_elem *cond = xml_first_child(e);

			log_info(c->tag, "SASL EXTERNAL refused (%s)%s",
			    cond ? xml_elem_name(cond) : "?",
			    c->conf->s2s_dialback ? ": trying dialback" : "");
			if (c->conf->s2s_dialback)
				send_db_result(c);
			else
				fail_and_close(c, "remote-server-not-found", "SASL EXTERNAL refused");
			return;
		}
		return;
	}
	if (ns != NULL && strcmp(ns, NS_DIALBACK) == 0) {
		const char *type = xml_attr_get(e, "type");
		const char *from = xml_attr_get(e, "from"), *to = xml_attr_get(e, "to");

		if (type == NULL || from == NULL || to == NULL ||
		    strcmp(from, c->remote) != 0 || strcmp(to, c->local) != 0) {
			log_info(c->tag, "ignoring a dialback answer for another pair");
			return;
		}
		if (strcmp(name, "result") == 0 && c->kind == S2S_OUT) {
			/* XEP-0220 2.4: the receiving server's verdict. */
			if (strcmp(type, "valid") == 0)
				established(c, "dialback");
			else
				fail_and_close(c, "remote-server-not-found", strcmp(type,
				    "invalid") == 0 ? "dialback key refused" : "dialback error");
			return;
		}
		if (strcmp(name, "verify") == 0 && c->kind == S2S_VERIFY) {
			const char *id = xml_attr_get(e, "id");
			int left = 0;

			for (size_t i = 0; i < c->nvreq; i++) {
				if (c->vreq[i].in_id != 0 && id != NULL &&
				    strcmp(c->vreq[i].id, id) == 0) {
					s2s_in_verified(c->sw, c->vreq[i].in_id, c->local,
					    c->remote, type, NULL);
					c->vreq[i].in_id = 0;
				}
				left += c->vreq[i].in_id != 0;
			}
			if (left == 0) {
				xstream_cancel_timer(&c->xs);
				xstream_end(&c->xs);
			}
			return;
		}
		return;
	}
	/* RFC 6120 4.5: our outgoing stream carries nothing back but
	 * negotiation. */
	log_info(c->tag, "ignoring <%s/> on an outgoing stream", name);
}

/* ---------------------------------------------------------------- */
/* Verify streams.                                                    */

void
s2s_verify_start(struct worker *w, uint64_t in_id, const char *local, const char *remote,
    const char *id, const char *key)
{
	struct s2s_conn *c = out_new(w, S2S_VERIFY, local, remote);

	if (c == NULL || (c->vreq = calloc(1, sizeof(*c->vreq))) == NULL ||
	    (c->vreq[0].id = strdup(id)) == NULL || (c->vreq[0].key = strdup(key)) == NULL) {
		s2s_in_verified(s2s_worker_of(w), in_id, local, remote, "error",
		    "internal-server-error");
		if (c != NULL) {
			if (c->vreq != NULL)
				free(c->vreq[0].id);
			free(c->vreq);
			c->vreq = NULL;
			s2s_free(c);
		}
		return;
	}
	c->vreq[0].in_id = in_id;
	c->nvreq = 1;
	out_start(c);
}
