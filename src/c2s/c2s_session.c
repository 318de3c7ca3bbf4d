/*
 * c2s_session.c - a client session once authenticated: resource binding
 * (RFC 6120 7), the checks and 'from' stamping of every stanza it sends
 * (RFC 6120 8.1.2.1), its own presence (RFC 6121 4.2, 4.5), subscription
 * requests from the bare JID (RFC 6121 3.1.2), and the IQs a module
 * answers before authentication (XEP-0077).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "c2s/c2s_int.h"
#include "core/log.h"
#include "core/registry.h"
#include "router/router.h"
#include "router/session.h"
#include "router/sm.h"
#include "stream/xstream.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"
#include "xmpp/stanza.h"

void
c2s_reply_iq_error(struct c2s *c, xml_elem *iq, const char *condition)
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
void
c2s_bind(struct c2s *c, xml_elem *iq, xml_elem *bind)
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
		c2s_reply_iq_error(c, iq, "bad-request");
		return;
	}
	session_bind(&c->s);
	c2s_metrics_session(c, 1);
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

/* RFC 6120 8.3.3.8: a 'to' that is not a JID. */
static void
reply_jid_malformed(struct c2s *c, xml_elem *st)
{
	xml_elem *r = stanza_error_reply(st, "jid-malformed", NULL);

	if (r != NULL) {
		xml_attr_set(r, "from", NULL);
		c2s_send(c, r);
		xml_elem_unref(r);
	}
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
		c2s_sm_presence(c, p);
		sm_presence_to_own_resources(p, &c->s.jid, c->s.sid, !was);
		/* RFC 6121 4.2.2, 4.4.2: including the resource that sent it. */
		c2s_send(c, p);
	} else if (strcmp(type, "unavailable") == 0) {
		c->s.available = 0;
		sm_set_presence(&c->s.jid, c->s.sid, 0, 0, NULL);
		c2s_sm_presence(c, NULL);
		if (was) {
			sm_presence_to_own_resources(p, &c->s.jid, c->s.sid, 0);
			c2s_send(c, p);     /* RFC 6121 4.5.2 */
		}
	}
	/* Other types without 'to' have no meaning and are dropped. */
}

void
c2s_handle_stanza(struct c2s *c, xml_elem *st)
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
	metrics_stanza(0, kind);
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
			reply_jid_malformed(c, st);
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
			c2s_reply_iq_error(c, st, "bad-request");
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
		reply_jid_malformed(c, st);
		return;
	}
	if (kind == STANZA_IQ && strcmp(type, "set") == 0 &&
	    (to == NULL || (jto.node == NULL && jto.resource == NULL &&
	    strcmp(jto.domain, c->host) == 0)) &&
	    xml_child(st, NS_SESSION, "session") != NULL) {
		/* The legacy session IQ, to the server or without 'to':
		 * nothing to establish any more, but old clients and tsung
		 * wait for the result. */
		xml_elem *r = stanza_iq_result(st);

		if (to == NULL)
			xml_attr_set(r, "from", NULL);
		c2s_send(c, r);
		xml_elem_unref(r);
		jid_free(&jto);
		return;
	}
	router_route(st, &c->s.jid, &jto);
	jid_free(&jto);
}

int
c2s_preauth_iq(struct c2s *c, xml_elem *iq)
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
