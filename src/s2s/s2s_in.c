/*
 * s2s_in.c - incoming streams: we are the receiving server.
 *
 * Header (RFC 6120 4.7), features: STARTTLS (5.3.1: alone while it is
 * required), then SASL EXTERNAL when the peer's certificate verifies for
 * the domain it claims (XEP-0178 3) and dialback (XEP-0220 2.3: the
 * dialback feature with errors support). Each authenticated
 * (local, remote) pair is remembered; a stream may carry several
 * (XEP-0220 2.6, multiplexing). We also answer db:verify for the keys we
 * issued (we are then the authoritative server, XEP-0220 2.3.2).
 *
 * Every stanza is checked against the pairs (RFC 6120 8.1.1.2, 8.1.2.2,
 * 13.1): a 'from' in a domain the peer did not authenticate is
 * <invalid-from/>, a 'to' in a domain we do not serve is <host-unknown/>,
 * a missing address is <improper-addressing/>, anything before
 * authentication is <not-authorized/>.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/registry.h"
#include "core/worker.h"
#include "net/tls.h"
#include "router/router.h"
#include "s2s/s2s_int.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"
#include "xmpp/stanza.h"

static const struct s2s_pair *
find_pair(const struct s2s_conn *c, const char *local, const char *remote)
{
	for (size_t i = 0; i < c->npairs; i++)
		if (strcmp(c->pairs[i].local, local) == 0 && strcmp(c->pairs[i].remote, remote) == 0)
			return &c->pairs[i];
	return NULL;
}

static int
add_pair(struct s2s_conn *c, const char *local, const char *remote, const char *auth)
{
	struct s2s_pair *v;
	char *l, *r;

	if (find_pair(c, local, remote) != NULL)
		return 0;
	l = strdup(local);
	r = strdup(remote);
	/* xmppctl s2s reads the pairs from the main thread. */
	s2s_glock();
	v = realloc(c->pairs, (c->npairs + 1) * sizeof(*v));
	if (l == NULL || r == NULL || v == NULL) {
		s2s_gunlock();
		free(l);
		free(r);
		return -1;
	}
	c->pairs = v;
	v[c->npairs].local = l;
	v[c->npairs].remote = r;
	v[c->npairs].auth = auth;
	c->npairs++;
	s2s_gunlock();
	c->state = ST_ESTABLISHED;
	xstream_cancel_timer(&c->xs);
	s2s_update_listing(c);
	log_info(c->tag, "%s authenticated for %s by %s (%s)", remote, local, auth,
	    c->xs.tls ? tls_version(xstream_ssl(&c->xs)) : "no TLS");
	return 0;
}

static char *
prep_domain_attr(const char *s)
{
	return s != NULL && *s != '\0' ? jid_nameprep(s, strlen(s)) : NULL;
}

/* ---------------------------------------------------------------- */
/* Header and features.                                               */

static void
send_features(struct s2s_conn *c)
{
	int starttls_ok = c->conf->s2s_use_starttls != CONF_S2S_TLS_FALSE;
	int required = c->conf->s2s_use_starttls == CONF_S2S_TLS_REQUIRED;
	SSL *ssl = xstream_ssl(&c->xs);
	const char *why;

	s2s_write(c, "<stream:features>");
	if (!c->xs.tls && starttls_ok) {
		s2s_write(c, "<starttls xmlns='" NS_TLS "'>%s</starttls>",
		    required ? "<required/>" : "");
	}
	if (c->xs.tls || !required) {
		/* XEP-0178 3: EXTERNAL only when the certificate will do. */
		if (c->xs.tls && c->remote != NULL && find_pair(c, c->local, c->remote) == NULL &&
		    tls_peer_verified(ssl, c->remote, &why))
			s2s_write(c, "<mechanisms xmlns='" NS_SASL "'><mechanism>EXTERNAL"
			    "</mechanism></mechanisms>");
		else if (c->xs.tls && c->remote != NULL)
			log_debug(c->tag, "no EXTERNAL for %s: %s", c->remote,
			    ssl != NULL && tls_peer_verified(ssl, c->remote, &why) ?
			    "already authenticated" : why);
		if (c->conf->s2s_dialback)
			s2s_write(c, "<dialback xmlns='" NS_DIALBACK_FEAT "'><errors/></dialback>");
	}
	s2s_write(c, "</stream:features>");
}

void
s2s_in_stream_start(struct s2s_conn *c, const struct xstream_header *h)
{
	char *host;

	if ((host = prep_domain_attr(h->to)) != NULL) {
		if (c->local == NULL || strcmp(c->local, host) == 0) {
			s2s_glock();
			free(c->local);
			c->local = host;
			s2s_gunlock();
		} else {
			/* RFC 6120 4.3.3: a restart keeps the same 'to'. */
			free(host);
			xstream_error(&c->xs, "host-unknown", "the stream changed its 'to'");
			return;
		}
	}
	if ((host = prep_domain_attr(h->from)) != NULL) {
		s2s_glock();
		free(c->remote);
		c->remote = host;
		s2s_gunlock();
	}
	/* 4.7.1: from is the domain they asked for; to is theirs; a new id
	 * (4.7.3). */
	xstream_send_header(&c->xs, c->local != NULL && conf_is_local_host(c->conf, c->local) ?
	    c->local : c->conf->hosts[0], c->remote);
	s2s_update_listing(c);
	if (h->ns == NULL || strcmp(h->ns, NS_SERVER) != 0) {
		/* 4.8.1 / 4.9.3.10. */
		xstream_error(&c->xs, "invalid-namespace", NULL);
		return;
	}
	/* 4.9.3.6: a domain not served here. */
	if (c->local == NULL || !s2s_is_local_domain(c->conf, c->local)) {
		xstream_error(&c->xs, "host-unknown", NULL);
		return;
	}
	if (h->from != NULL && c->remote == NULL) {
		/* 4.9.3.9 (and 4.7.1): a 'from' that is not a domain. */
		xstream_error(&c->xs, "invalid-from", NULL);
		return;
	}
	c->version1 = h->version1;
	/* 4.7.5: no features to a pre-1.0 peer (dialback only). */
	if (c->version1)
		send_features(c);
}

/* ---------------------------------------------------------------- */
/* SASL EXTERNAL (XEP-0178 3; RFC 6120 6.4).                          */

static void
sasl_failure(struct s2s_conn *c, const char *condition, const char *why)
{
	log_info(c->tag, "SASL EXTERNAL from %s refused: %s", c->addr, why);
	s2s_write(c, "<failure xmlns='" NS_SASL "'><%s/></failure>", condition);
}

static void
handle_auth(struct s2s_conn *c, xml_elem *e)
{
	const char *mech = xml_attr_get(e, "mechanism");
	const char *text = xml_text(e), *why = NULL;
	char *authzid = NULL, *dom;
	size_t tl = strlen(text);

	if (mech == NULL || strcmp(mech, "EXTERNAL") != 0) {
		sasl_failure(c, "invalid-mechanism", "not EXTERNAL");
		return;
	}
	if (!c->xs.tls) {
		sasl_failure(c, "encryption-required", "no TLS");
		return;
	}
	if (tl > 0 && strcmp(text, "=") != 0) {
		/* RFC 6120 6.4.2: base64; the authorization identity. */
		unsigned char *buf = malloc(tl + 1);
		int n;

		if (buf == NULL || (n = EVP_DecodeBlock(buf, (const unsigned char *)text,
		    (int)tl)) < 0) {
			free(buf);
			sasl_failure(c, "incorrect-encoding", "bad base64");
			return;
		}
		/* EVP_DecodeBlock counts the padding's zero bytes. */
		while (tl > 0 && text[tl - 1] == '=' && n > 0) {
			n--;
			tl--;
		}
		buf[n] = '\0';
		if (strlen((char *)buf) != (size_t)n) {
			free(buf);
			sasl_failure(c, "incorrect-encoding", "NUL in the authorization identity");
			return;
		}
		authzid = (char *)buf;
	}
	dom = authzid != NULL ? prep_domain_attr(authzid) : (c->remote ? strdup(c->remote) : NULL);
	free(authzid);
	if (dom == NULL) {
		sasl_failure(c, "invalid-authzid", "no domain to authenticate");
		return;
	}
	if (c->remote != NULL && strcmp(dom, c->remote) != 0) {
		/* XEP-0178 3: the authorization identity is the stream's
		 * 'from'. */
		free(dom);
		sasl_failure(c, "invalid-authzid", "not the stream's 'from'");
		return;
	}
	if (!tls_peer_verified(xstream_ssl(&c->xs), dom, &why)) {
		free(dom);
		sasl_failure(c, "not-authorized", why);
		return;
	}
	if (!s2s_remote_allowed(c->conf, dom, conn_peer(c->xs.conn))) {
		free(dom);
		sasl_failure(c, "not-authorized", "s2s_access denies the domain");
		return;
	}
	if (c->remote == NULL) {
		s2s_glock();
		c->remote = strdup(dom);
		s2s_gunlock();
	}
	if (add_pair(c, c->local, dom, "external") < 0) {
		free(dom);
		sasl_failure(c, "temporary-auth-failure", "out of memory");
		return;
	}
	free(dom);
	s2s_write(c, "<success xmlns='" NS_SASL "'/>");
	/* 6.4.6: the initiating server restarts the stream. */
	xstream_restart(&c->xs);
}

/* ---------------------------------------------------------------- */
/* Dialback (XEP-0220).                                               */

static void
db_answer(struct s2s_conn *c, const char *what, const char *from, const char *to,
    const char *id, const char *type, const char *condition)
{
	s2s_write(c, "<db:%s from='", what);
	xstream_escape(&c->xs, from);
	s2s_write(c, "' to='");
	xstream_escape(&c->xs, to);
	if (id != NULL) {
		s2s_write(c, "' id='");
		xstream_escape(&c->xs, id);
	}
	s2s_write(c, "' type='%s'", type);
	if (condition == NULL) {
		s2s_write(c, "/>");
		return;
	}
	/* XEP-0220 2.4 (errors): a stanza-style error inside. */
	s2s_write(c, "><error type='%s'><%s xmlns='" NS_STANZAS "'/></error></db:%s>",
	    stanza_error_type(condition), condition, what);
}

/* <db:result from=X to=Y>key</db:result>: X wants to send to our Y. */
static void
handle_db_result(struct s2s_conn *c, xml_elem *e)
{
	char *from = prep_domain_attr(xml_attr_get(e, "from"));
	char *to = prep_domain_attr(xml_attr_get(e, "to"));
	const char *key = xml_text(e), *why;

	if (from == NULL || to == NULL) {
		xstream_error(&c->xs, "improper-addressing", "db:result needs 'from' and 'to'");
		goto out;
	}
	if (!s2s_is_local_domain(c->conf, to)) {
		/* XEP-0220 2.4: not a domain we serve. */
		db_answer(c, "result", to, from, NULL, "error", "item-not-found");
		goto out;
	}
	if (!c->conf->s2s_dialback) {
		db_answer(c, "result", to, from, NULL, "error", "policy-violation");
		goto out;
	}
	if (!s2s_remote_allowed(c->conf, from, conn_peer(c->xs.conn))) {
		log_info(c->tag, "%s refused by s2s_access", from);
		db_answer(c, "result", to, from, NULL, "error", "forbidden");
		goto out;
	}
	if (find_pair(c, to, from) != NULL) {
		db_answer(c, "result", to, from, NULL, "valid", NULL);
		goto out;
	}
	if (c->xs.tls && tls_peer_verified(xstream_ssl(&c->xs), from, &why)) {
		/* XEP-0344 2.4: the certificate already proves the domain;
		 * asking its authoritative server would add nothing. */
		if (add_pair(c, to, from, "dialback") == 0)
			db_answer(c, "result", to, from, NULL, "valid", NULL);
		goto out;
	}
	if (*key == '\0') {
		db_answer(c, "result", to, from, NULL, "error", "bad-request");
		goto out;
	}
	/* XEP-0220 2.3: ask the authoritative server of 'from'. */
	log_debug(c->tag, "verifying the dialback key of %s with its server", from);
	s2s_verify_start(c->w, c->id, to, from, c->xs.id, key);
out:
	free(from);
	free(to);
}

void
s2s_in_verified(struct s2s_worker *sw, uint64_t in_id, const char *local,
    const char *remote, const char *type, const char *condition)
{
	struct s2s_conn *c = s2s_find(sw, in_id);

	if (c == NULL || c->xs.closing)
		return;
	if (strcmp(type, "valid") == 0) {
		if (add_pair(c, local, remote, "dialback") < 0) {
			db_answer(c, "result", local, remote, NULL, "error", "internal-server-error");
			return;
		}
		db_answer(c, "result", local, remote, NULL, "valid", NULL);
	} else if (strcmp(type, "invalid") == 0) {
		log_info(c->tag, "dialback key of %s for %s is invalid", remote, local);
		db_answer(c, "result", local, remote, NULL, "invalid", NULL);
	} else {
		db_answer(c, "result", local, remote, NULL, "error",
		    condition != NULL ? condition : "remote-server-not-found");
	}
}

/* <db:verify from=B to=A id=ID>key</db:verify>: are we A, and is the key
 * one we issued to B on stream ID? (XEP-0220 2.3.2) */
static void
handle_db_verify(struct s2s_conn *c, xml_elem *e)
{
	char *from = prep_domain_attr(xml_attr_get(e, "from"));
	char *to = prep_domain_attr(xml_attr_get(e, "to"));
	const char *id = xml_attr_get(e, "id");

	if (from == NULL || to == NULL || id == NULL) {
		xstream_error(&c->xs, "improper-addressing", "db:verify needs 'from', 'to' and 'id'");
	} else if (!s2s_is_local_domain(c->conf, to)) {
		db_answer(c, "verify", to, from, id, "error", "item-not-found");
	} else {
		int ok = dialback_key_ok(c->conf, from, to, id, xml_text(e));

		log_debug(c->tag, "dialback key for %s -> %s is %s", to, from,
		    ok ? "valid" : "invalid");
		db_answer(c, "verify", to, from, id, ok ? "valid" : "invalid", NULL);
	}
	free(from);
	free(to);
}

/* ---------------------------------------------------------------- */
/* Stanzas.                                                           */

static void
handle_stanza(struct s2s_conn *c, xml_elem *st)
{
	const char *f = xml_attr_get(st, "from"), *t = xml_attr_get(st, "to"), *err;
	jid jf, jt;

	if (c->npairs == 0) {
		xstream_error(&c->xs, "not-authorized", "authenticate first");
		return;
	}
	/* RFC 6120 8.1.1.2, 8.1.2.2: both addresses are required. */
	if (f == NULL || t == NULL) {
		xstream_error(&c->xs, "improper-addressing", "'from' and 'to' are required");
		return;
	}
	if (jid_parse(&jf, f, strlen(f), &err) < 0) {
		xstream_error(&c->xs, "invalid-from", err);
		return;
	}
	if (jid_parse(&jt, t, strlen(t), &err) < 0) {
		jid_free(&jf);
		xstream_error(&c->xs, "improper-addressing", err);
		return;
	}
	if (!s2s_is_local_domain(c->conf, jt.domain)) {
		/* Not ours to route on (4.9.3.6). */
		xstream_error(&c->xs, "host-unknown", jt.domain);
		goto out;
	}
	if (find_pair(c, jt.domain, jf.domain) == NULL) {
		int known = 0;

		for (size_t i = 0; i < c->npairs; i++)
			known |= strcmp(c->pairs[i].remote, jf.domain) == 0;
		/* 4.9.3.9: a 'from' the peer did not authenticate; a known
		 * 'from' to a domain of ours it did not authenticate for
		 * (XEP-0220 2.6: each pair is authenticated). */
		xstream_error(&c->xs, known ? "not-authorized" : "invalid-from", f);
		goto out;
	}
	__atomic_add_fetch(&c->n_in, 1, __ATOMIC_RELAXED);
	metrics_stanza(0, stanza_kind(st));
	c->last_stanza_ms = clock_now_ms();
	if (stanza_kind(st) == STANZA_IQ && xml_attr_get(st, "id") == NULL) {
		router_bounce(st, "bad-request", NULL);
		goto out;
	}
	if (hooks_any(XMPPD_HOOK_S2S_RECEIVE_PACKET)) {
		struct xmppd_packet_args pa = { st, &jf, &jt, NULL };

		if (hooks_run(XMPPD_HOOK_S2S_RECEIVE_PACKET, jt.domain, &pa) != XMPPD_CONTINUE)
			goto out;
	}
	router_route(st, &jf, &jt);
out:
	jid_free(&jf);
	jid_free(&jt);
}

void
s2s_in_element(struct s2s_conn *c, xml_elem *e)
{
	const char *ns = xml_elem_ns(e), *name = xml_elem_name(e);
	int required = c->conf->s2s_use_starttls == CONF_S2S_TLS_REQUIRED;

	if (ns != NULL && strcmp(ns, NS_TLS) == 0 && strcmp(name, "starttls") == 0) {
		SSL *ssl = NULL;

		if (!c->xs.tls && c->conf->s2s_use_starttls != CONF_S2S_TLS_FALSE &&
		    (ssl = tls_new_s2s_server(NULL)) == NULL)
			log_error(c->tag, "STARTTLS: no certificate");
		/* RFC 6120 5.4.2.3: TLS from the next byte (stream/conn.h);
		 * without it, <failure/> and the end (5.4.2.2). */
		xstream_proceed(&c->xs, ssl);
		return;
	}
	if (ns != NULL && strcmp(ns, NS_DIALBACK) == 0 && strcmp(name, "verify") == 0 &&
	    xml_attr_get(e, "type") == NULL) {
		handle_db_verify(c, e);
		return;
	}
	if (!c->xs.tls && required) {
		/* RFC 6120 5.3.1: STARTTLS is mandatory-to-negotiate here. */
		xstream_error(&c->xs, "policy-violation", "STARTTLS is required");
		return;
	}
	if (ns != NULL && strcmp(ns, NS_SASL) == 0) {
		if (strcmp(name, "auth") == 0)
			handle_auth(c, e);
		else if (strcmp(name, "abort") == 0)
			s2s_write(c, "<failure xmlns='" NS_SASL "'><aborted/></failure>");
		else
			xstream_error(&c->xs, "unsupported-stanza-type", NULL);
		return;
	}
	if (ns != NULL && strcmp(ns, NS_DIALBACK) == 0 && strcmp(name, "result") == 0 &&
	    xml_attr_get(e, "type") == NULL) {
		handle_db_result(c, e);
		return;
	}
	if (ns == NULL && stanza_kind(e) != STANZA_OTHER) {
		handle_stanza(c, e);
		return;
	}
	xstream_error(&c->xs, "unsupported-stanza-type", name);
}
