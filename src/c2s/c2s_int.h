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
 *   c2s_sm.c       stream management (XEP-0198): acks, the unacknowledged
 *                  queue, detached sessions, resumption; c2s_send
 *   smq.c          the counters and queue of stream management
 *
 * A connection is a session of the router's (router/session.h) and an XML
 * stream (stream/xstream.h); it lives on one worker and is touched only
 * there.
 */
#ifndef XMPPD_C2S_INT_H
#define XMPPD_C2S_INT_H

#include <stddef.h>

#include "auth/sasl.h"
#include "core/metrics.h"
#include "router/session.h"
#include "stream/xstream.h"
#include "xml/xml.h"

struct c2s_sm;
struct conf;
struct conf_listen;
struct hold;
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
	/* Stream management (c2s_sm.c; doc/architecture.md, "What a
	 * detached session is"). Without its connection (gone: the xstream
	 * freed, xs.closing set so nothing is written) a c2s lives on as a
	 * detached session (sm set, resumable), a session that moved to a
	 * new connection on another worker (moved: it forwards what is
	 * delivered to it until the new one has taken over), or a
	 * connection whose <resume/> is being answered (resuming). */
	unsigned sm_count : 1;         /* the element being handled counts for h */
	unsigned gone : 1;
	unsigned moved : 1;
	unsigned released : 1;         /* moved, and the new session has taken over */
	unsigned resuming : 1;
	unsigned keep : 1;             /* we close the connection; the session stays */
	struct c2s_sm *sm;             /* once <enable/>d */
	xml_elem *presence;            /* sm_durable: the last available presence (c2s_smd.c) */
	unsigned fwd_worker;           /* moved: where the session went */
	uint64_t fwd_sid;
	struct c2s *gprev, *gnext;     /* gone: in the worker's list */

	unsigned auth_failures;
	unsigned char mtransport;      /* enum metrics_transport */
	unsigned mcounted : 1;         /* counted in xmppd_sessions */
	const char *delayed_failure;   /* SASL condition to send after the delay */
	char *host;                    /* the domain the client asked for */
	char *node;                    /* authenticated account */
	char tag[24];                  /* "c2s#12" for logs */
};

#define C2S(x) ((struct c2s *)((char *)(x) - offsetof(struct c2s, xs)))

/* The ABI's session is the router's (router/session.h). */
#define SESSION(c) ((xmppd_session *)&(c)->s)

/* A stanza (or any element) to the client; counted and queued once
 * stream management is on (c2s_sm.c). */
void c2s_send(struct c2s *c, const xml_elem *e);

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
/* The session counts in xmppd_sessions{transport} (on: bound) or not. */
void c2s_metrics_session(struct c2s *c, int on);
/* The session is over: frees c (stream, session, stream management). */
void c2s_destroy(struct c2s *c);
extern const struct session_ops c2s_session_ops;

/* c2s_sm.c */
int c2s_sm_init(unsigned nworkers);
void c2s_sm_free_all(void);
/* Adds <sm/> to the features after authentication (XEP-0198 2). */
void c2s_sm_features(struct c2s *c, xml_elem *features);
/* An element in urn:xmpp:sm:3 from an authenticated client. */
void c2s_sm_element(struct c2s *c, xml_elem *e);
/* The stanza last handled is done (xstream class.element_done). */
void c2s_sm_element_done(struct c2s *c);
/* The connection is over: 1 if c stays (detached, moved, resuming), 0 if
 * the caller destroys it. */
int c2s_sm_conn_end(struct c2s *c, enum conn_end how);
/* Closing: 1 if the session stays (nothing is to end). */
int c2s_sm_closing(struct c2s *c);
/* The sink's close for a c2s without its connection: 1 if handled. */
int c2s_sm_close(struct c2s *c);
/* From c2s_destroy, after session_end: unacknowledged stanzas go back to
 * the router (XEP-0198 4), the id and the timer go. */
void c2s_sm_end(struct c2s *c);
/* Main thread, at shutdown: ends every session without a connection. */
void c2s_sm_shutdown(void);
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
/* c2s_smd.c: the session's own presence changed (p: available, NULL:
 * unavailable); kept for its durable state row. */
void c2s_sm_presence(struct c2s *c, xml_elem *p);

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
