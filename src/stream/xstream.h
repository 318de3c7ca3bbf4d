/*
 * xstream.h - an XML stream (RFC 6120 4) on a conn: what c2s and s2s
 * share above the bytes.
 *
 * It feeds the peer's bytes to the stream parser (xml/stream.h) and hands
 * the header and every depth-1 element to its owner; it writes our stream
 * header (RFC 6120 4.7) with a fresh stream id on the receiving side,
 * restarts the stream after STARTTLS and SASL (4.3.3), writes stream errors
 * (4.9: a header first if none was sent, the error, </stream:stream>, then
 * the lingering close), answers </stream:stream> with ours (4.4), bounds
 * the send queue (<resource-constraint/>), keeps the negotiation deadline,
 * holds the stream while the store work of its current stanza is pending
 * (core/hold.h, RFC 6120 10.1), gives idle parsers back (hibernation), and
 * shuts every stream of a set down with <system-shutdown/>.
 *
 * The owner embeds struct xstream in its connection object and describes
 * its kind of stream in a struct xstream_class (a static const table): the
 * content namespace, what its header declares, and the callbacks. The
 * callbacks run on the stream's worker, from the event loop; the owner
 * frees its object (xstream_free first) only in class.end, which is never
 * called from inside an expat callback.
 */
#ifndef XMPPD_STREAM_XSTREAM_H
#define XMPPD_STREAM_XSTREAM_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "stream/conn.h"
#include "xml/stream.h"
#include "xml/xml.h"

struct hold;
struct ws;
struct xstream_framer;
struct xstream;
struct worker;

/* The peer's stream header (RFC 6120 4.7), as read. */
struct xstream_header {
	const char *ns;               /* the content namespace it declared, or NULL */
	const char *to, *from, *id;   /* its attributes, or NULL */
	int version1;                 /* 'version' with a major of 1 or more (4.7.5) */
};

struct xstream_class {
	const char *ns;               /* the content namespace: "jabber:client" */
	const char *decls;            /* more declarations in our header (" xmlns:db='...'"), or NULL */
	const char *lang;             /* our header's xml:lang, or NULL */
	int no_version;               /* our header has no 'version' (XEP-0114 3: the
	                               * component protocol predates RFC 6120's 1.0) */

	/* The peer's stream header. */
	void (*stream_start)(struct xstream *xs, const struct xstream_header *h);
	/* A depth-1 element, borrowed (xml_elem_ref to keep it). Elements
	 * in the content namespace have ns NULL. Store work it starts holds
	 * the stream: nothing more is read or handled until that work has
	 * completed. */
	void (*element)(struct xstream *xs, xml_elem *e);
	/* The connection is over (conn.h, enum conn_end): the owner calls
	 * xstream_free and frees itself, or, for CONN_END_CONNECT_FAILED,
	 * may xstream_connect elsewhere. */
	void (*end)(struct xstream *xs, enum conn_end how, const char *why);

	/* Each of these may be NULL. */
	/* Before xstream answers the peer's </stream:stream> and closes. */
	void (*stream_end)(struct xstream *xs);
	/* Before the stream error for what the parser refused. */
	void (*parse_error)(struct xstream *xs, const char *condition, const char *text);
	/* The stream starts closing (once, before its last bytes go). */
	void (*closing)(struct xstream *xs);
	/* A stream error before our header: writes it (xstream_send_header);
	 * NULL writes one without 'from' and 'to'. */
	void (*header_first)(struct xstream *xs);
	/* The timer (xstream_set_timer) fired: 1 if handled, 0 for the
	 * default, <connection-timeout/> (the negotiation deadline). */
	int (*timeout)(struct xstream *xs);
	/* Outgoing: connected (write the header now). */
	void (*connected)(struct xstream *xs);
	/* After STARTTLS: TLS carries the stream; header_sent is 0 again. */
	void (*tls_installed)(struct xstream *xs);
	/* xstream_shutdown_all, before the <system-shutdown/>. */
	void (*shutdown)(struct xstream *xs);
	/* The element last handed to element() is done: everything it
	 * caused through the store has completed (right after element()
	 * when it started no store work, else when the hold is released).
	 * Stream management counts a stanza as handled here (XEP-0198 4). */
	void (*element_done)(struct xstream *xs);
};

struct xstream {
	const struct xstream_class *cls;
	struct conn *conn;
	xml_stream *xp;               /* the parser */
	const char *tag;              /* the owner's, for logs */
	uint64_t *last_input_ms;      /* the owner's: clock_now_ms of the peer's last bytes */
	size_t max_send_queue;        /* bytes queued before <resource-constraint/> */
	SSL *starttls;                /* TLS to put on after the current element */
	struct hold *hold;            /* the current stanza's store work (core/hold.h) */
	/* Framed mode (RFC 7395 over WebSocket, XEP-0206 over BOSH): each
	 * message one element, <open/> and <close/> for the stream tags. */
	const struct xstream_framer *framer; /* the framing, or NULL: a plain stream */
	void *framer_arg;
	struct ws *ws;                /* the WebSocket framer's, or NULL */
	struct evbuffer *wsin;        /* the peer's messages, as stream bytes */
	struct evbuffer *msg;         /* our message being written */
	uint64_t ping_ms;             /* when our last ping went, or 0 */
	unsigned starttls_client : 1;
	unsigned initiating : 1;      /* we opened the stream: id is the peer's */
	unsigned header_sent : 1;     /* our header of the current stream is out */
	unsigned closing : 1;         /* an end tag or error was sent: nothing more */
	unsigned tls : 1;             /* TLS is on (installed; maybe still handshaking) */
	unsigned held_off : 1;        /* reading paused while held */
	unsigned peer_eof : 1;        /* the peer closed with input waiting for the hold */
	unsigned done_pending : 1;    /* class.element_done waits for the hold */
	unsigned paused;              /* xstream_pause depth */
	char id[65];                  /* the stream id (4.7.3): ours, or the peer's */
};

/* What xstream_init makes a stream with. */
struct xstream_params {
	struct xml_stream_limits limits;
	size_t max_send_queue;
	int initiating;               /* we are the initiating entity (s2s out) */
	uint64_t *last_input_ms;      /* where the time of the peer's last bytes goes */
};

/* A stream with a conn (no socket yet) in set on worker w; tag must
 * outlive it. 0, or -1 when out of memory (nothing to free). */
int xstream_init(struct xstream *xs, const struct xstream_class *cls, struct conn_set *set,
    struct worker *w, const char *tag, const struct xstream_params *p);
/*
 * Framed mode (RFC 7395): a stream on c, a conn whose WebSocket opening
 * handshake is done (http/websocket.c), taken over from its owner into
 * set. The peer's <open/> is its stream header and <close/> its end tag;
 * every output call (xstream_send, _puts, _printf, a header, features, an
 * error) is one WebSocket message; messages are bounded by
 * p->limits.max_stanza_size as a whole (reassembled). 0, or -1 when out of
 * memory (c is left to its old owner).
 */
int xstream_init_ws(struct xstream *xs, const struct xstream_class *cls, struct conn_set *set,
    struct conn *c, const char *tag, const struct xstream_params *p);
/*
 * Framed mode on another framing (BOSH, XEP-0206): the stream has a conn
 * without a socket (its timer only) and every message in or out goes
 * through the framer. The framer gives the peer's messages with
 * xstream_frame_in (an <open/> in the framing namespace for a stream
 * header, as RFC 7395 3.3.2 has it) and then xstream_frames_fed.
 */
struct xstream_framer {
	/* One message of ours (a header as <open/>, features, a stanza, an
	 * error, <close/>); p is valid during the call only. */
	void (*send)(void *arg, const char *p, size_t len);
	/* The stream is closing: nothing more will be sent. */
	void (*close)(void *arg);
	/* Bytes queued for the peer (the max_send_queue bound). */
	size_t (*queued)(void *arg);
};
int xstream_init_framed(struct xstream *xs, const struct xstream_class *cls, struct conn_set *set,
    struct worker *w, const struct xstream_framer *f, void *farg, const char *tag,
    const struct xstream_params *p);
/* A message from the peer, queued for the parser; xstream_frames_fed
 * parses what is queued (at once, unless held or paused). */
void xstream_frame_in(struct xstream *xs, const char *p, size_t len);
void xstream_frames_fed(struct xstream *xs);
/* A WebSocket ping (keepalive, RFC 7395 3.7); nothing on a plain stream. */
void xstream_ping(struct xstream *xs);
/* Frees the conn and the parser (the object xs is in is the owner's). */
void xstream_free(struct xstream *xs);
struct xstream *xstream_of(struct conn *c);

/*
 * An accepted socket (conn_accept); over max_per_ip connections from its
 * address (0: no limit) it is closed at once with <policy-violation/>;
 * otherwise the negotiation deadline (seconds, RFC 6120 4.9.3.4) starts.
 * 0, or -1 (fd closed): the owner frees.
 */
int xstream_accept(struct xstream *xs, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conn_accept_opts *o, unsigned max_per_ip, unsigned deadline_s);
/* Outgoing: connects to sa, with TLS from the first byte if ssl (taken);
 * class.connected or class.end (CONN_END_CONNECT_FAILED) follows. 0, or
 * -1 if it failed at once (try the next address). */
int xstream_connect(struct xstream *xs, const struct sockaddr *sa, socklen_t salen, SSL *ssl);

/* Our stream header (RFC 6120 4.7): the content namespace, the class's
 * declarations, a new id on the receiving side, from and to if not NULL,
 * version 1.0 (unless the class says no_version) and the class's
 * xml:lang. */
void xstream_send_header(struct xstream *xs, const char *from, const char *to);
/* Serializes e (elements of the content namespace unqualified); a peer
 * that does not read (max_send_queue) gets <resource-constraint/>. */
void xstream_send(struct xstream *xs, const xml_elem *e);
/* <stream:features> with the children of features. */
void xstream_send_features(struct xstream *xs, const xml_elem *features);
void xstream_write(struct xstream *xs, const char *s, size_t len);
void xstream_puts(struct xstream *xs, const char *s);
void xstream_printf(struct xstream *xs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void xstream_vprintf(struct xstream *xs, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* s escaped for an attribute value or text. */
void xstream_escape(struct xstream *xs, const char *s);

/* RFC 6120 4.9: <stream:error><condition/><text/> (text may be NULL),
 * </stream:stream>, close. After <proceed/> and before TLS, the TCP
 * connection is closed without a word (5.4.3.2). */
void xstream_error(struct xstream *xs, const char *condition, const char *text);
/* The same with an application-specific condition (RFC 6120 4.9.4):
 * app is written as is after the defined condition (NULL: none). */
void xstream_error_app(struct xstream *xs, const char *condition, const char *app,
    const char *text);
/* </stream:stream> and close (RFC 6120 4.4). */
void xstream_end(struct xstream *xs);
/* Closes without another word: the lingering close (conn_close). */
void xstream_close(struct xstream *xs);
/* The peer opens a new stream next (RFC 6120 4.3.3: after SASL): its
 * bytes after the current element are its new header. */
void xstream_restart(struct xstream *xs);
/* From element(): TLS with ssl (taken), client or server side, goes on
 * after the current element (<proceed/> is out, or came); the stream
 * restarts over it (RFC 6120 5.4.3.3). */
void xstream_starttls(struct xstream *xs, SSL *ssl, int client);
/* The receiving side's answer to <starttls/> (RFC 6120 5.4.2), from
 * element(): with ssl (taken), <proceed/> and TLS after this element; with
 * NULL (no certificate, or STARTTLS not allowed), <failure/> and the end
 * of the stream (5.4.2.2). */
void xstream_proceed(struct xstream *xs, SSL *ssl);
/* TLS's SSL once it is on (channel binding, certificates), else NULL. */
SSL *xstream_ssl(const struct xstream *xs);

/* class.timeout after seconds (or ms), replacing an earlier time;
 * xstream_cancel_timer cancels (conn_set_timer). */
void xstream_set_timer(struct xstream *xs, unsigned seconds);
void xstream_set_timer_ms(struct xstream *xs, unsigned ms);
void xstream_cancel_timer(struct xstream *xs);
/* Reads no more input (the auth failure delay) until as many
 * xstream_resume; what is buffered is processed then, from the event
 * loop. (Store work holds a stream by itself: see class.element.) */
void xstream_pause(struct xstream *xs);
void xstream_resume(struct xstream *xs);

/* Main thread: every stream of set gets <system-shutdown/> (after the
 * class's shutdown hook), the set takes no new ones, and this returns
 * once they are all gone or max_ms has passed; those left then are ended
 * on their workers (class.end, CONN_END_CLOSED). */
void xstream_shutdown_all(struct conn_set *set, unsigned max_ms);
/* Streams of set quiet for conf hibernate_after seconds give their
 * parser back (xml_stream_hibernate). Before the workers run. 0 or -1. */
int xstream_hibernate_idle(struct conn_set *set);

#endif
