/*
 * c2s_auth.c - the encryption and authentication of a client stream:
 * STARTTLS (RFC 6120 5), SASL (RFC 6120 6) with the delay after a failed
 * attempt and the attempt limit, and the c2s_access rule.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "c2s/c2s_int.h"
#include "core/acl.h"
#include "core/conf.h"
#include "core/log.h"
#include "net/tls.h"
#include "stream/xstream.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"

/* RFC 6120 5.4.2.3: <proceed/>, then TLS from the next byte (the
 * whitespace rule and the hand-over are stream/conn.h's). */
void
c2s_start_tls(struct c2s *c)
{
	SSL *ssl = tls_new_server(NULL);

	if (ssl == NULL)
		log_error(c->tag, "STARTTLS: no certificate");
	/* Without one: <failure/>, and the stream ends (5.4.2.2). */
	xstream_proceed(&c->xs, ssl);
}

static void
sasl_failure(struct c2s *c, const char *condition)
{
	sasl_end(&c->sasl);
	c->auth_failures++;
	metrics_inc(METRIC_AUTH_FAILURES);
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
		metrics_inc(METRIC_LOGINS);
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

void
c2s_handle_sasl(struct c2s *c, xml_elem *e)
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
		c->sasl = sasl_start(mech, c->host, xstream_ssl(&c->xs), c->xs.tls,
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

/* The delay after a failed authentication is over. */
void
c2s_auth_delay_over(struct c2s *c)
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
