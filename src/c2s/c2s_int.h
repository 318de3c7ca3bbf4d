/*
 * c2s_int.h - what the files of src/c2s/ share: the client connection and
 * its helpers. Not for use outside src/c2s/.
 *
 *   c2s.c          accept, life cycle, the stream header and features, what
 *                  each negotiation state accepts, the sink, shutdown
 *   c2s_auth.c     STARTTLS, SASL (its failure delay and attempt limit),
 *                  c2s_access
 *   c2s_session.c  resource binding, the checks and stamping of a bound
 *                  session's stanzas, its own presence, pre-authentication
 *                  IQs
 *
 * A connection is a session of the router's (router/session.h) and an XML
 * stream (stream/xstream.h); it lives on one worker and is touched only
 * there.
 */
#ifndef XMPPD_C2S_INT_H
#define XMPPD_C2S_INT_H

#include <stddef.h>

#include "auth/sasl.h"
#include "router/session.h"
#include "stream/xstream.h"
#include "xml/xml.h"

struct conf;
struct conf_listen;
struct worker;

struct c2s {
	struct session s;              /* what the router knows (first: the sink's argument) */
	struct xstream xs;             /* the stream (stream/xstream.h) */
	struct worker *w;
	struct conf *conf;             /* the configuration it started with */
	const struct conf_listen *l;
	sasl_session *sasl;

	unsigned authenticated : 1;
	unsigned ws : 1;               /* framed: WebSocket (RFC 7395) or BOSH (XEP-0206) */

	unsigned auth_failures;
	const char *delayed_failure;   /* SASL condition to send after the delay */
	char *host;                    /* the domain the client asked for */
	char *node;                    /* authenticated account */
	char tag[24];                  /* "c2s#12" for logs */
};

#define C2S(x) ((struct c2s *)((char *)(x) - offsetof(struct c2s, xs)))

/* The ABI's session is the router's (router/session.h). */
#define SESSION(c) ((xmppd_session *)&(c)->s)

static inline void
c2s_send(struct c2s *c, const xml_elem *e)
{
	xstream_send(&c->xs, e);
}

static inline void
c2s_writes(struct c2s *c, const char *s)
{
	xstream_puts(&c->xs, s);
}

static inline void
c2s_stream_error(struct c2s *c, const char *condition, const char *text)
{
	xstream_error(&c->xs, condition, text);
}

/* c2s.c */
/* A client stream in framed mode on another framing than WebSocket (BOSH,
 * c2s/bosh.c), on worker w (the caller's thread), for a client at sa;
 * secure: the HTTP request came over TLS (or a listener that says so).
 * The stream is fed through xstream_frame_in. NULL when out of memory. */
struct xstream *c2s_new_framed(struct worker *w, const struct conf_listen *l,
    const struct sockaddr *sa, socklen_t salen, int secure, const struct xstream_framer *f,
    void *farg, const char *kind);

/* bosh.c */
/* Registers /http-bind (XEP-0124, XEP-0206). 0 or -1. */
int c2s_bosh_init(unsigned nworkers);
void c2s_bosh_free(void);

/* c2s_auth.c */
/* <starttls/>: <proceed/> and TLS (RFC 6120 5.4.2.3). */
void c2s_start_tls(struct c2s *c);
/* A SASL element (<auth/>, <response/>, <abort/>) before authentication. */
void c2s_handle_sasl(struct c2s *c, xml_elem *e);
/* The delay after a failed authentication is over: the failure goes out
 * and the stream reads again (or ends, after too many). */
void c2s_auth_delay_over(struct c2s *c);

/* c2s_session.c */
/* An IQ error reply to iq (RFC 6120 8.3). */
void c2s_reply_iq_error(struct c2s *c, xml_elem *iq, const char *condition);
/* RFC 6120 7: <bind/> in iq. */
void c2s_bind(struct c2s *c, xml_elem *iq, xml_elem *bind);
/* A stanza of a bound session: checked, stamped, routed. */
void c2s_handle_stanza(struct c2s *c, xml_elem *st);
/* An IQ a module answers before authentication (XEP-0077): 1 if one
 * did. */
int c2s_preauth_iq(struct c2s *c, xml_elem *iq);

#endif
