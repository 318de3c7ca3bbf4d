/*
 * conn.h - a byte connection on one worker, the ground every transport
 * stands on (c2s, s2s; later WebSocket and BOSH).
 *
 * A conn is a socket (or, for tests, one end of an in-memory pair) with
 * what every stream needs around it: TLS on it (direct TLS from the first
 * byte, or STARTTLS after <proceed/> with the whitespace rule of net/tls.h),
 * the listener's shaper, input read into a per-worker buffer, an output
 * queue handed to the socket once per loop iteration, the send-queue
 * length, a lingering close, the per-IP count, one timer, and the
 * per-worker lists of a conn_set. Its owner never learns whether TLS is
 * under it, nor how the bytes move: every socket and SSL_* call is in
 * conn.c (Redis' ConnectionType), which does its own I/O on the socket
 * (no bufferevent; how, at the top of conn.c).
 *
 * A conn lives on the worker that made it and is touched only on that
 * worker's thread. Its owner fills in struct conn_ops; the callbacks come
 * from the event loop, never from inside a conn_* call except where said.
 * The owner frees the conn (conn_free) when conn_ops.end says so, and only
 * then or from its own callbacks; never from inside an expat callback.
 */
#ifndef XMPPD_STREAM_CONN_H
#define XMPPD_STREAM_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/tls.h"

struct conf_shaper;
struct evbuffer;
struct worker;
struct conn;
struct conn_set;

/* Why a connection is over (conn_ops.end). */
enum conn_end {
	CONN_END_EOF,             /* the peer closed its side */
	CONN_END_ERROR,           /* a socket or TLS error */
	CONN_END_CONNECT_FAILED,  /* outgoing: never connected; the conn has no socket
	                           * again and may conn_connect elsewhere */
	CONN_END_CLOSED,          /* conn_close is over (the last bytes went, the
	                           * peer's EOF came or the grace ran out), or the
	                           * server is shutting down */
};

struct conn_ops {
	/* Input is waiting: read it with conn_peek and conn_drain. Not
	 * called while paused or closing. */
	void (*input)(void *arg);
	/* Outgoing: the TCP connection (and direct TLS) is up. */
	void (*connected)(void *arg);
	/* After conn_starttls: TLS carries the connection now; everything
	 * read from here on came through it. May come from inside
	 * conn_starttls. */
	void (*tls_installed)(void *arg);
	/* After conn_starttls: the peer sent something that is not a TLS
	 * record (net/tls.h); it was dropped unread. The owner closes. */
	void (*tls_refused)(void *arg);
	/* conn_set_timer's time is up (never while closing). */
	void (*timeout)(void *arg);
	/* The connection is over: the owner calls conn_free (or, for
	 * CONN_END_CONNECT_FAILED, conn_connect again). why is a static
	 * string or NULL. */
	void (*end)(void *arg, enum conn_end how, const char *why);
};

/* ---------------------------------------------------------------- */
/* Sets: the connections of one kind, per worker.                     */

/* A set of connections with a list per worker; its events are made on
 * the workers' bases, so call it before the worker threads run. NULL
 * when out of memory. */
struct conn_set *conn_set_new(unsigned nworkers);
/* After the workers have stopped and every conn of the set is freed. */
void conn_set_free(struct conn_set **setp);
/* Open connections of the set, all workers (any thread). */
unsigned long conn_set_count(const struct conn_set *set);
/* Worker w's connections, newest first (w's thread). The next one may be
 * taken before freeing the current one. */
struct conn *conn_set_first(const struct conn_set *set, const struct worker *w);
struct conn *conn_next(const struct conn *c);
/* The set takes no more connections on w (shutdown); conn_set_stopped
 * says whether it was so marked. */
void conn_set_stop(struct conn_set *set, const struct worker *w);
int conn_set_stopped(const struct conn_set *set, const struct worker *w);
/* Every second, visits a tenth of each worker's connections with
 * fn(arg), so that a pass over all of them is spread over ten seconds.
 * Before the workers run. 0 or -1. */
int conn_set_sweep(struct conn_set *set, void (*fn)(void *arg));

/* ---------------------------------------------------------------- */
/* Life cycle.                                                        */

/* A connection with no socket yet, on worker w (w's thread), in set.
 * tag names it in logs ("c2s#0.12") and must outlive it. NULL when out
 * of memory. */
struct conn *conn_new(struct conn_set *set, struct worker *w, const struct conn_ops *ops,
    void *arg, const char *tag);
/* Frees everything: closes the socket, frees the SSL, leaves the set. */
void conn_free(struct conn **cp);
void *conn_arg(const struct conn *c);
/* Hands c (on this worker's thread) to another owner and set: an HTTP
 * connection upgraded to a WebSocket stream. May be called from inside
 * the old owner's callbacks; later callbacks go to ops with arg. */
void conn_move(struct conn *c, struct conn_set *set, const struct conn_ops *ops, void *arg,
    const char *tag);

struct conn_accept_opts {
	SSL *ssl;                       /* direct TLS (XEP-0368): taken; or NULL */
	const struct conf_shaper *shaper; /* the listener's (core/acl.h), or NULL */
	int nodelay;                    /* TCP_NODELAY */
};
/*
 * Puts an accepted socket fd (taken) under c and counts it for its
 * address sa; *per_ip_r is the number of connections from that address
 * now, this one included. 0, or -1 when out of memory (fd closed, the
 * SSL freed).
 */
int conn_accept(struct conn *c, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conn_accept_opts *o, unsigned *per_ip_r);
/* Connects c to sa, with TLS from the first byte if ssl (taken) is not
 * NULL; connected or end(CONN_END_CONNECT_FAILED) follows. 0, or -1 if it
 * failed at once (the SSL freed; try the next address). */
int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t salen, SSL *ssl);
/* Tests: c on one end of a socket pair (AF_UNIX, no per-IP count);
 * *peer_r is the other end's descriptor, non-blocking, the caller's to
 * close. 0 or -1. */
int conn_pair(struct conn *c, int *peer_r);

/* Has a socket and, outgoing, is connected: something written now will
 * be sent. */
int conn_is_up(const struct conn *c);
/* The peer's address (accepted connections), else NULL. */
const struct sockaddr *conn_peer(const struct conn *c);

/* ---------------------------------------------------------------- */
/* TLS.                                                               */

/*
 * STARTTLS (RFC 6120 5.4.3): what was queued goes out in the clear
 * (<proceed/>, or our <starttls/>'s stream), then TLS with ssl (taken) as
 * the client or the server. The peer's first bytes from now on must be a
 * TLS record: whitespace before it is skipped, anything else is dropped
 * unread and reported (tls_refused), the STARTTLS command injection class
 * (CVE-2011-0411, net/tls.h). tls_installed follows, at once or when the
 * record shows; until then conn_tls_waiting is 1 and nothing is read.
 * May call back, and end(), before it returns.
 */
void conn_starttls(struct conn *c, SSL *ssl, int client);
/* Between <proceed/> and the peer's first TLS record: nothing may be
 * written (the peer reads TLS now, RFC 6120 5.4.2.3). */
int conn_tls_waiting(const struct conn *c);
/* The connection's SSL once TLS is on (for channel binding, certificate
 * checks, the version), else NULL. */
SSL *conn_ssl(const struct conn *c);

/* ---------------------------------------------------------------- */
/* Input.                                                             */

/* The next contiguous input: 0 and *p_r, *len_r (len > 0), or -1 when
 * nothing is buffered. From input() (or anywhere while paused); what is
 * left undrained when input() returns is kept for the next call. */
int conn_peek(struct conn *c, const char **p_r, size_t *len_r);
void conn_drain(struct conn *c, size_t len);
/* Input is buffered (read from the socket, not yet drained). */
int conn_input_pending(const struct conn *c);
/* Stops reading; conn_resume reads again, and input() follows from the
 * event loop for what is already buffered. */
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);

/* ---------------------------------------------------------------- */
/* Output.                                                            */

/* The output queue: what is added to it is written at the end of this
 * loop iteration (several stanzas, one TLS record and one write). */
struct evbuffer *conn_out(struct conn *c);
void conn_write(struct conn *c, const char *s, size_t len);
/* Bytes written and not yet handed to the kernel. */
size_t conn_queued(const struct conn *c);
/* Bytes the kernel has sent and the peer not acknowledged, or queued in
 * the kernel (SIOCOUTQ); 0 without a socket. */
unsigned conn_unacked(const struct conn *c);

/* ---------------------------------------------------------------- */
/* Timer, closing.                                                    */

/* timeout() after ms milliseconds (0: from the next loop iteration),
 * replacing any earlier time; conn_cancel_timer cancels. Both are ignored
 * while closing (the timer is the lingering close's then). */
void conn_set_timer(struct conn *c, unsigned ms);
void conn_cancel_timer(struct conn *c);
/* A lingering close: what is queued goes, input is read and dropped,
 * our side is shut down (after TLS's close_notify) and the peer's EOF
 * awaited, each wait at most two seconds (conn.c, LINGER_GRACE_MS); then
 * end(CONN_END_EOF or CONN_END_CLOSED). Idempotent. */
void conn_close(struct conn *c);
int conn_closing(const struct conn *c);

#endif
