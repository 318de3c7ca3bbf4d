/*
 * conn.c - byte connections (conn.h): the socket and TLS on it, input
 * through a per-worker read buffer, output batched per loop iteration,
 * the shaper's token bucket, lingering close, per-IP counts, per-worker
 * lists.
 *
 * The I/O is this file's own, on two events per socket (read, persistent
 * while reading is wanted; write, armed only while the socket is full or a
 * connect or handshake waits for it); no bufferevent:
 *
 *  - Input is read into the worker's buffer (16 KiB, one per worker and
 *    set) and handed to the owner from there (conn_peek): no evbuffer
 *    chain is allocated per read. Only what the owner leaves unread (its
 *    stream is held or paused, or STARTTLS took over) is copied into the
 *    connection's own buffer (c->in, made on first need).
 *  - TLS is OpenSSL directly on the socket with read-ahead (net/tls.c):
 *    one read(2) per burst of records instead of two per record (header,
 *    then body). SSL_read hands out a record at a time, so the loop reads
 *    until OpenSSL has nothing buffered or the round's budget is spent; a
 *    budget spent with records still buffered goes on from the loop (the
 *    socket will not become readable for them).
 *  - Output queued during a loop iteration goes to the socket once at its
 *    end (flush_cb): the stanzas for one peer become one TLS record and one
 *    write. What the socket does not take stays in c->out and the write
 *    event is armed; OpenSSL's retry rule (a write that wanted to block is
 *    retried with the same bytes) holds because nothing is drained until
 *    SSL_write took it (c->retry).
 *  - A shaper (core/acl.h) limits what is read, in plaintext bytes: a
 *    connection whose bucket is empty stops reading and a timer resumes it;
 *    records OpenSSL has buffered are read from that timer too, not from a
 *    socket event that will not come (the reason libevent's rate limit on
 *    an OpenSSL bufferevent stranded data, t0610).
 *
 * Callbacks may free the connection (conn.h): every call into the owner is
 * made inside a frame (frame_push/frame_pop) that conn_free marks, so that
 * nothing touches a freed conn afterwards.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/acl.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/worker.h"
#include "net/listener.h"
#include "net/tls.h"
#include "stream/conn.h"

#define SWEEP_TICK_MS 1000      /* the sweep runs this often */
#define SWEEP_ROUND 10          /* and visits 1/10 of the connections each time */
#define READ_BUF 16384          /* the worker's read buffer: one TLS record */
#define READ_ROUNDS 16          /* reads per connection per event (256 KiB) */
#define TLS_CHUNK 16384         /* one SSL_write: at most one record */
/*
 * Lingering close: closing a socket with unread input makes the kernel
 * send a reset, and a reset makes the peer drop what we wrote last (the
 * stream error that says why). So a closing connection keeps reading and
 * discarding, waits until its output has gone, shuts its side down and
 * waits for the peer's EOF; each wait at most this long (nginx's
 * lingering close).
 */
#define LINGER_GRACE_MS 2000

/* A call into the owner, which may free the connection. */
struct frame {
	struct conn *c;
	struct frame *up;
	int gone;
};

/* The calls into owners on this thread, innermost first: per thread, not
 * per set, so that a conn that moves to another set inside a call
 * (conn_move: an HTTP connection upgraded to WebSocket) is still found. */
static __thread struct frame *frames;

struct conn_worker {
	struct conn_set *set;
	struct conn *list;
	size_t count;
	int stopped;
	struct event *flush_ev;        /* made active when output is queued */
	struct conn *dirty;            /* connections with output in c->out */
	struct event *sweep_ev;
	struct conn *sweep;            /* where the sweep goes on */
	char *rbuf;                    /* READ_BUF bytes: what was just read */
};

struct conn_set {
	unsigned nworkers;
	unsigned long count;           /* atomic */
	void (*sweep_fn)(void *arg);
	struct conn_worker *w;
};

struct conn {
	struct conn *prev, *next;      /* in the worker's list */
	struct conn *dnext;            /* in the worker's list of output to flush */
	struct conn_worker *cw;
	struct worker *w;
	const struct conn_ops *ops;
	void *arg;
	const char *tag;
	int fd;                        /* -1: no socket (yet) */
	struct event *rev;             /* EV_READ | EV_PERSIST, added while reading */
	struct event *wev;             /* EV_WRITE, armed while waiting for the socket */
	SSL *ssl;                      /* ours, from accept, connect or STARTTLS */
	struct event *timer;           /* the owner's, then the lingering close's */
	struct evbuffer *in;           /* read and left unread by the owner (lazy) */
	const char *rp;                /* during input(): the worker buffer's rest */
	size_t rlen;
	struct evbuffer *out;          /* queued and not yet taken by the socket */
	size_t retry;                  /* SSL_write wanted to block with these bytes */
	struct shaper_bucket *bucket;  /* shaped connections only */
	struct event *shape_ev;        /* the bucket is empty: reading resumes then */
	const char *failed;            /* a write failed: end() from the loop */

	unsigned outgoing : 1;
	unsigned connecting : 1;       /* outgoing: connect(2) in progress */
	unsigned connected : 1;        /* outgoing: TCP (and direct TLS) is up */
	unsigned tls_io : 1;           /* the SSL reads and writes the socket */
	unsigned tls_on : 1;           /* TLS carries the connection (tls_installed told) */
	unsigned handshake : 1;        /* the TLS handshake is not done */
	unsigned hello_sent : 1;       /* client: our ClientHello is out */
	unsigned gate : 1;             /* STARTTLS: the peer's first record not seen yet */
	unsigned tls_client : 1;       /* STARTTLS as the client */
	unsigned prefix : 1;           /* the SSL reads a memory BIO first (STARTTLS) */
	unsigned tls_flush : 1;        /* STARTTLS waits for the plain output to go */
	unsigned read_wants_write : 1; /* SSL_read wanted the socket writable */
	unsigned write_wants_read : 1; /* SSL_write wanted it readable */
	unsigned wait_write : 1;       /* wev is armed */
	unsigned reading : 1;          /* rev is added */
	unsigned shaped_wait : 1;      /* the bucket is empty: shape_ev is armed */
	unsigned dirty : 1;            /* in the worker's flush list */
	unsigned closing : 1;
	unsigned half_closed : 1;      /* closing: our side is shut down */
	unsigned paused : 1;
	unsigned counted_ip : 1;
	struct sockaddr_storage sa;    /* accepted: the peer's address */
};

static void read_cb(evutil_socket_t fd, short what, void *arg);
static void write_cb(evutil_socket_t fd, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void flush_cb(evutil_socket_t fd, short what, void *arg);
static void conn_flush(struct conn *c);
static void link_conn(struct conn *c, struct conn_worker *cw);
static void tls_install(struct conn *c);
static int tls_prefix(struct conn *c, const void *p, size_t n);

static void
frame_push(struct conn *c, struct frame *f)
{
	f->c = c;
	f->gone = 0;
	f->up = frames;
	frames = f;
}

/* 1 if the frame's connection is still there. */
static int
frame_pop(struct conn_worker *cw, struct frame *f)
{
	(void)cw;
	frames = f->up;
	return !f->gone;
}

/* Calls end() of the owner (which frees c, or connects it again). */
static void
end_conn(struct conn *c, enum conn_end how, const char *why)
{
	c->ops->end(c->arg, how, why);
}

/* ---------------------------------------------------------------- */
/* Sets.                                                              */

/*
 * The sweep (conn_set_sweep): a tenth of each worker's connections every
 * second, so that streams that went quiet together are not all visited
 * (for example hibernated, and woken) at once: a sweep of the whole list
 * every 90 s freed thousands of parsers in one go and showed as a latency
 * spike when they were all remade (doc/performance.md).
 */
static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn_worker *cw = arg;
	size_t n = cw->count / SWEEP_ROUND + 1;
	struct conn *c, *next;

	for (c = cw->sweep != NULL ? cw->sweep : cw->list; c != NULL && n > 0; c = next, n--) {
		next = c->next;
		if (!c->closing)
			cw->set->sweep_fn(c->arg);
	}
	cw->sweep = c;
}

struct conn_set *
conn_set_new(unsigned nworkers)
{
	struct conn_set *set = calloc(1, sizeof(*set));

	if (set == NULL || (set->w = calloc(nworkers, sizeof(*set->w))) == NULL) {
		free(set);
		return NULL;
	}
	set->nworkers = nworkers;
	for (unsigned i = 0; i < nworkers; i++) {
		set->w[i].set = set;
		/* Made before the worker thread runs: its base is unlocked. */
		set->w[i].flush_ev = event_new(worker_base(worker_get(i)), -1, 0, flush_cb,
		    &set->w[i]);
		set->w[i].rbuf = malloc(READ_BUF);
		if (set->w[i].flush_ev == NULL || set->w[i].rbuf == NULL) {
			conn_set_free(&set);
			return NULL;
		}
	}
	return set;
}

int
conn_set_sweep(struct conn_set *set, void (*fn)(void *arg))
{
	struct timeval tv = { SWEEP_TICK_MS / 1000, (SWEEP_TICK_MS % 1000) * 1000 };

	set->sweep_fn = fn;
	for (unsigned i = 0; i < set->nworkers; i++) {
		struct conn_worker *cw = &set->w[i];

		cw->sweep_ev = event_new(worker_base(worker_get(i)), -1, EV_PERSIST, sweep_cb, cw);
		if (cw->sweep_ev == NULL || event_add(cw->sweep_ev, &tv) < 0)
			return -1;
	}
	return 0;
}

void
conn_set_free(struct conn_set **setp)
{
	struct conn_set *set = *setp;

	if (set == NULL)
		return;
	for (unsigned i = 0; i < set->nworkers; i++) {
		if (set->w[i].flush_ev != NULL)
			event_free(set->w[i].flush_ev);
		if (set->w[i].sweep_ev != NULL)
			event_free(set->w[i].sweep_ev);
		free(set->w[i].rbuf);
	}
	free(set->w);
	free(set);
	*setp = NULL;
}

unsigned long
conn_set_count(const struct conn_set *set)
{
	return set != NULL ? __atomic_load_n(&set->count, __ATOMIC_RELAXED) : 0;
}

struct conn *
conn_set_first(const struct conn_set *set, const struct worker *w)
{
	return set->w[worker_id(w)].list;
}

struct conn *
conn_next(const struct conn *c)
{
	return c->next;
}

void
conn_set_stop(struct conn_set *set, const struct worker *w)
{
	set->w[worker_id(w)].stopped = 1;
}

int
conn_set_stopped(const struct conn_set *set, const struct worker *w)
{
	return set->w[worker_id(w)].stopped;
}

/* ---------------------------------------------------------------- */
/* Life cycle.                                                        */

struct conn *
conn_new(struct conn_set *set, struct worker *w, const struct conn_ops *ops, void *arg,
    const char *tag)
{
	struct conn_worker *cw = &set->w[worker_id(w)];
	struct conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->w = w;
	c->cw = cw;
	c->ops = ops;
	c->arg = arg;
	c->tag = tag;
	c->fd = -1;
	c->out = evbuffer_new();
	c->timer = evtimer_new(worker_base(w), timer_cb, c);
	if (c->out == NULL || c->timer == NULL) {
		if (c->out != NULL)
			evbuffer_free(c->out);
		if (c->timer != NULL)
			event_free(c->timer);
		free(c);
		return NULL;
	}
	link_conn(c, cw);
	return c;
}

void *
conn_arg(const struct conn *c)
{
	return c->arg;
}

static void undirty(struct conn *c);
static void set_dirty(struct conn *c);

static void
unlink_conn(struct conn *c)
{
	struct conn_worker *cw = c->cw;

	if (cw->sweep == c)
		cw->sweep = c->next;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		cw->list = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	cw->count--;
	__atomic_sub_fetch(&cw->set->count, 1, __ATOMIC_RELAXED);
}

static void
link_conn(struct conn *c, struct conn_worker *cw)
{
	c->cw = cw;
	c->next = cw->list;
	if (cw->list != NULL)
		cw->list->prev = c;
	cw->list = c;
	cw->count++;
	__atomic_add_fetch(&cw->set->count, 1, __ATOMIC_RELAXED);
}

void
conn_move(struct conn *c, struct conn_set *set, const struct conn_ops *ops, void *arg,
    const char *tag)
{
	int dirty = c->dirty;

	undirty(c);
	unlink_conn(c);
	link_conn(c, &set->w[worker_id(c->w)]);
	c->ops = ops;
	c->arg = arg;
	c->tag = tag;
	if (dirty)
		set_dirty(c);
}

static void
undirty(struct conn *c)
{
	struct conn **pp;

	if (!c->dirty)
		return;
	for (pp = &c->cw->dirty; *pp != NULL; pp = &(*pp)->dnext)
		if (*pp == c) {
			*pp = c->dnext;
			break;
		}
	c->dirty = 0;
}

/* The socket, its events and the SSL go (the conn stays). */
static void
release_socket(struct conn *c)
{
	if (c->rev != NULL)
		event_free(c->rev);
	if (c->wev != NULL)
		event_free(c->wev);
	c->rev = c->wev = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	c->ssl = NULL;
	c->tls_io = c->tls_on = c->handshake = c->gate = c->prefix = 0;
	c->connecting = c->connected = c->reading = c->wait_write = 0;
	c->read_wants_write = c->write_wants_read = c->tls_flush = 0;
	c->retry = 0;
}

void
conn_free(struct conn **cp)
{
	struct conn *c = *cp;

	if (c == NULL)
		return;
	for (struct frame *f = frames; f != NULL; f = f->up)
		if (f->c == c)
			f->gone = 1;
	undirty(c);
	unlink_conn(c);
	if (c->counted_ip)
		ipcount_dec((struct sockaddr *)&c->sa);
	event_free(c->timer);
	release_socket(c);
	if (c->shape_ev != NULL)
		event_free(c->shape_ev);
	free(c->bucket);
	if (c->in != NULL)
		evbuffer_free(c->in);
	evbuffer_free(c->out);
	free(c);
	*cp = NULL;
}

/* Reading is wanted unless paused, and always while closing (to discard),
 * during a handshake or the STARTTLS gate, and while a write waits for
 * it; never while connecting, while the bucket is empty, or while
 * STARTTLS waits for the plain output to go (the peer's first record
 * stays in the socket for the gate; the socket is watched level-
 * triggered, so an event that cannot read would come back at once). */
static void
update_events(struct conn *c)
{
	int want;

	if (c->rev == NULL)
		return;
	want = !c->connecting && !c->shaped_wait && c->failed == NULL &&
	    (c->closing || (!c->tls_flush &&
	    (c->handshake || c->write_wants_read || !c->paused)));
	if (want && !c->reading) {
		if (event_add(c->rev, NULL) == 0)
			c->reading = 1;
	} else if (!want && c->reading) {
		event_del(c->rev);
		c->reading = 0;
	}
}

static void
wait_write(struct conn *c)
{
	if (!c->wait_write && c->wev != NULL && event_add(c->wev, NULL) == 0)
		c->wait_write = 1;
}

/* Goes on from the loop: read_cb runs for this connection next. */
static void
kick_read(struct conn *c)
{
	if (c->rev != NULL)
		event_active(c->rev, EV_READ, 0);
}

/* fd (non-blocking) under c, with its events. 0 or -1. */
static int
attach_socket(struct conn *c, int fd)
{
	struct event_base *base = worker_base(c->w);

	c->fd = fd;
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, c);
	c->wev = event_new(base, fd, EV_WRITE, write_cb, c);
	if (c->rev == NULL || c->wev == NULL)
		return -1;
	update_events(c);
	return 0;
}

/* The SSL on the socket, as the client or the server. */
static int
tls_on_socket(struct conn *c, int client)
{
	if (!c->prefix && SSL_set_fd(c->ssl, c->fd) != 1)
		return -1;
	if (client)
		SSL_set_connect_state(c->ssl);
	else
		SSL_set_accept_state(c->ssl);
	/* conn_flush retries with the same bytes from c->out, which may
	 * have moved (evbuffer_pullup), and takes partial writes. */
	SSL_set_mode(c->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
	/* Read-ahead: one read(2) takes what the socket has, records and
	 * all, instead of a record's header and then its body. */
	SSL_set_read_ahead(c->ssl, 1);
	c->tls_io = 1;
	c->handshake = 1;
	c->hello_sent = !client;
	return 0;
}

int
conn_accept(struct conn *c, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conn_accept_opts *o, unsigned *per_ip_r)
{
	(void)evutil_make_socket_nonblocking(fd);
	if (o->nodelay) {
		/* Stanzas are small and latency matters: Nagle's algorithm
		 * with the peer's delayed ACK holds a stanza for ~40 ms. */
		int one = 1;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (o->shaper != NULL) {
		c->bucket = malloc(sizeof(*c->bucket));
		c->shape_ev = evtimer_new(worker_base(c->w), read_cb, c);
		if (c->bucket == NULL || c->shape_ev == NULL) {
			if (o->ssl != NULL)
				SSL_free(o->ssl);
			close(fd);
			return -1;
		}
		shaper_bucket_init(c->bucket, o->shaper, clock_now_ms());
	}
	c->ssl = o->ssl;
	if (attach_socket(c, fd) < 0 || (c->ssl != NULL && tls_on_socket(c, 0) < 0)) {
		release_socket(c);      /* closes fd, frees the SSL */
		return -1;
	}
	/* Direct TLS (XEP-0368): TLS from the first byte. */
	c->tls_on = c->ssl != NULL;
	memcpy(&c->sa, sa, salen < sizeof(c->sa) ? salen : sizeof(c->sa));
	*per_ip_r = ipcount_inc(sa);
	c->counted_ip = 1;
	return 0;
}

int
conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t salen, SSL *ssl)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || (connect(fd, sa, salen) < 0 && errno != EINPROGRESS)) {
		if (fd >= 0)
			close(fd);
		if (ssl != NULL)
			SSL_free(ssl);
		return -1;
	}
	c->outgoing = 1;
	c->connecting = 1;
	c->ssl = ssl;
	if (attach_socket(c, fd) < 0) {
		release_socket(c);
		return -1;
	}
	/* SNI and ALPN are the SSL's (tls_new_client). */
	c->tls_on = ssl != NULL;
	wait_write(c);                  /* the connect's outcome */
	return 0;
}

int
conn_pair(struct conn *c, int *peer_r)
{
	int sv[2];
	int small = 4096;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	/* Small kernel buffers: a peer that does not read is felt soon. */
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	(void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	if (attach_socket(c, sv[0]) < 0) {
		release_socket(c);
		close(sv[1]);
		return -1;
	}
	*peer_r = sv[1];
	return 0;
}

int
conn_is_up(const struct conn *c)
{
	return c->fd >= 0 && (!c->outgoing || c->connected);
}

const struct sockaddr *
conn_peer(const struct conn *c)
{
	return c->counted_ip ? (const struct sockaddr *)&c->sa : NULL;
}

/* ---------------------------------------------------------------- */
/* TLS.                                                               */

/* What an SSL call that failed with err (its return r) means: 0 for the
 * end of the stream (the peer's close_notify, or an EOF without one: a
 * phone that lost its network), -1 for an error (*why_r). */
static int
tls_failure(struct conn *c, int err, int r, const char **why_r)
{
	unsigned long e = ERR_peek_error();

	ERR_clear_error();
	if (err == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (err == SSL_ERROR_SYSCALL) {
		if (e == 0 && (r == 0 || errno == 0))
			return 0;
		*why_r = evutil_socket_error_to_string(errno);
		return -1;
	}
	if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
		return 0;
	*why_r = e != 0 && ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e) :
	    "TLS error";
	log_debug(c->tag, "TLS: %s", *why_r);
	return -1;
}

/* The SSL has read all the bytes of its memory BIO (those that came with
 * <starttls/>, or none: a STARTTLS client's until the gate passes) and
 * the gate is open: the socket from now on. 1 if so (try again), else 0. */
static int
prefix_done(struct conn *c)
{
	BIO *sock;

	if (!c->prefix || c->gate || BIO_ctrl_pending(SSL_get_rbio(c->ssl)) > 0)
		return 0;
	if ((sock = BIO_new_socket(c->fd, BIO_NOCLOSE)) == NULL)
		return 0;
	SSL_set0_rbio(c->ssl, sock);    /* frees the memory BIO */
	c->prefix = 0;
	return 1;
}

/* Not TLS after <proceed/>: the owner closes without a word (RFC 6120
 * 5.4.3.2); what came is dropped, and the lingering close drops the rest. */
static void
refuse_tls(struct conn *c)
{
	log_info(c->tag, "STARTTLS: not a TLS record after <proceed/>: closing");
	if (c->in != NULL)
		evbuffer_drain(c->in, evbuffer_get_length(c->in));
	c->rlen = 0;
	c->gate = 0;
	c->handshake = 0;
	c->tls_io = 0;                  /* the lingering close reads in the clear */
	c->ops->tls_refused(c->arg);
}

enum step { STEP_DONE, STEP_WAIT, STEP_FAILED, STEP_EOF, STEP_REFUSED };

/*
 * One step of the handshake. After STARTTLS the peer's first bytes are
 * looked at before OpenSSL reads them (net/tls.h: whitespace is skipped,
 * anything that cannot start a record refuses); on the client side once
 * our ClientHello is out.
 */
static enum step
handshake_step(struct conn *c, const char **why_r)
{
	int r, err;

	for (;;) {
		if (c->gate && c->hello_sent) {
			switch (tls_gate_socket(c->fd)) {
			case TLS_GATE_WAIT:
				return STEP_WAIT;
			case TLS_GATE_RECORD:
				c->gate = 0;
				break;
			case TLS_GATE_REFUSE:
				return STEP_REFUSED;
			case TLS_GATE_CLOSED:
				*why_r = "closed by peer before TLS";
				return STEP_EOF;
			}
		}
		ERR_clear_error();
		r = SSL_do_handshake(c->ssl);
		c->hello_sent = 1;
		if (r == 1) {
			c->handshake = 0;
			log_debug(c->tag, "TLS established: %s", tls_version(c->ssl));
			return STEP_DONE;
		}
		err = SSL_get_error(c->ssl, r);
		if (err == SSL_ERROR_WANT_READ) {
			if (prefix_done(c))
				continue;
			ERR_clear_error();
			return STEP_WAIT;
		}
		if (err == SSL_ERROR_WANT_WRITE) {
			ERR_clear_error();
			wait_write(c);
			return STEP_WAIT;
		}
		return tls_failure(c, err, r, why_r) == 0 ? STEP_EOF : STEP_FAILED;
	}
}

/*
 * Drives the handshake; 1 when it is done and c is still there (the
 * output waiting for it has been handed over and reading goes on from the
 * loop), 0 if not (waiting, or c ended: nothing more with it).
 */
static int
handshake(struct conn *c)
{
	struct conn_worker *cw = c->cw;
	const char *why = NULL;
	struct frame f;
	int gated = c->gate;
	enum step s = handshake_step(c, &why);

	if (s == STEP_REFUSED) {
		refuse_tls(c);
		return 0;
	}
	if (s == STEP_EOF || s == STEP_FAILED) {
		if (why == NULL)
			why = "closed by peer";
		if (c->outgoing && !c->connected && !c->closing) {
			/* The owner may try the next address. */
			release_socket(c);
			end_conn(c, CONN_END_CONNECT_FAILED, why);
			return 0;
		}
		log_debug(c->tag, "connection %s", why);
		end_conn(c, s == STEP_EOF ? CONN_END_EOF : CONN_END_ERROR, why);
		return 0;
	}
	if (gated && !c->gate) {
		/* The peer's first record came: from here on its bytes come
		 * through TLS (the owner restarts its stream). */
		c->tls_on = 1;
		frame_push(c, &f);
		c->ops->tls_installed(c->arg);
		if (!frame_pop(cw, &f))
			return 0;
	}
	if (s == STEP_WAIT || c->handshake)
		return 0;
	update_events(c);
	if (c->outgoing && !c->connected) {
		c->connected = 1;
		if (!c->closing) {
			frame_push(c, &f);
			c->ops->connected(c->arg);
			if (!frame_pop(cw, &f))
				return 0;
		}
	}
	conn_flush(c);
	/* TLS 1.3: the peer's next bytes may have come with its Finished
	 * and be buffered in the SSL already. */
	kick_read(c);
	return 1;
}

/*
 * STARTTLS (RFC 6120 5.4.3). What the owner left unread (the bytes after
 * <starttls/> or <proceed/>) is looked at first: whitespace is dropped,
 * anything that cannot start a TLS record refuses (CVE-2011-0411), and a
 * record (a client that did not wait for <proceed/>: it should, 5.4.2.3)
 * is given to the SSL through a memory BIO before the socket.
 */
void
conn_starttls(struct conn *c, SSL *ssl, int client)
{
	size_t n;

	c->ssl = ssl;
	c->tls_client = client;
	if (c->rlen > 0) {
		if (c->in == NULL && (c->in = evbuffer_new()) == NULL) {
			c->rlen = 0;
			end_conn(c, CONN_END_ERROR, "out of memory");
			return;
		}
		evbuffer_add(c->in, c->rp, c->rlen);
		c->rlen = 0;
	}
	if (c->in != NULL && (n = evbuffer_get_length(c->in)) > 0) {
		switch (tls_gate_buffer(c->in)) {
		case TLS_GATE_WAIT:
			break;                  /* whitespace only, dropped */
		case TLS_GATE_RECORD:
			if (client) {
				/* A server does not write TLS first. */
				refuse_tls(c);
				return;
			} else {
				unsigned char *p;

				n = evbuffer_get_length(c->in);
				p = evbuffer_pullup(c->in, (ev_ssize_t)n);
				if (p == NULL || tls_prefix(c, p, n) < 0) {
					end_conn(c, CONN_END_ERROR, "out of memory");
					return;
				}
				evbuffer_drain(c->in, n);
				break;
			}
		default:
			refuse_tls(c);
			return;
		}
	}
	c->tls_flush = 1;
	update_events(c);
	/* What is queued (<proceed/>, or the stream that sent <starttls/>)
	 * goes out in the clear first; then TLS. */
	conn_flush(c);
	if (c->tls_flush && c->failed == NULL && evbuffer_get_length(c->out) == 0)
		tls_install(c);
}

/* The SSL reads a memory BIO with p (n bytes, maybe none) and writes the
 * socket. 0 or -1. */
static int
tls_prefix(struct conn *c, const void *p, size_t n)
{
	BIO *mem = BIO_new(BIO_s_mem());
	BIO *sock = BIO_new_socket(c->fd, BIO_NOCLOSE);

	if (mem == NULL || sock == NULL || (n > 0 && BIO_write(mem, p, (int)n) != (int)n)) {
		BIO_free(mem);
		BIO_free(sock);
		return -1;
	}
	BIO_set_mem_eof_return(mem, -1);        /* empty: "try again" */
	SSL_set_bio(c->ssl, mem, sock);
	c->prefix = 1;
	return 0;
}

/* The plain output is out: TLS on the socket. May end c. */
static void
tls_install(struct conn *c)
{
	c->tls_flush = 0;
	/* A client writes its ClientHello at once, and OpenSSL reads right
	 * after it: from an empty memory BIO until the gate has seen the
	 * server's first record (the server may answer within that call,
	 * whitespace and all). */
	if ((c->tls_client && !c->prefix && tls_prefix(c, NULL, 0) < 0) ||
	    tls_on_socket(c, c->tls_client) < 0) {
		end_conn(c, CONN_END_ERROR, "out of memory");
		return;
	}
	/* Until the peer's first record: nothing is written (the peer reads
	 * TLS, RFC 6120 5.4.2.3) and nothing is read but through the gate.
	 * Its bytes were in the memory BIO already: TLS from now on. */
	c->gate = c->tls_client || !c->prefix;
	log_debug(c->tag, "STARTTLS: TLS on the socket%s", c->bucket != NULL ? " (shaped)" : "");
	update_events(c);
	if (!c->gate) {
		struct conn_worker *cw = c->cw;
		struct frame f;

		c->tls_on = 1;
		frame_push(c, &f);
		c->ops->tls_installed(c->arg);
		if (!frame_pop(cw, &f))
			return;
	}
	/* The client's ClientHello; a server's record, if it is there. */
	(void)handshake(c);
}

int
conn_tls_waiting(const struct conn *c)
{
	return c->tls_flush || (c->gate && !c->tls_client);
}

SSL *
conn_ssl(const struct conn *c)
{
	return c->tls_on ? c->ssl : NULL;
}

/* ---------------------------------------------------------------- */
/* Input.                                                             */

enum { R_AGAIN = 0, R_EOF = -1, R_ERR = -2 };

/* Up to len bytes from the connection: > 0, or R_AGAIN, R_EOF, R_ERR
 * (*why_r). */
static ssize_t
do_read(struct conn *c, char *buf, size_t len, const char **why_r)
{
	if (c->tls_io && !c->handshake) {
		for (;;) {
			int n, err;

			ERR_clear_error();
			n = SSL_read(c->ssl, buf, (int)len);
			if (n > 0)
				return n;
			err = SSL_get_error(c->ssl, n);
			if (err == SSL_ERROR_WANT_READ) {
				if (prefix_done(c))
					continue;
				ERR_clear_error();
				return R_AGAIN;
			}
			if (err == SSL_ERROR_WANT_WRITE) {
				ERR_clear_error();
				c->read_wants_write = 1;
				wait_write(c);
				return R_AGAIN;
			}
			return tls_failure(c, err, n, why_r) == 0 ? R_EOF : R_ERR;
		}
	}
	for (;;) {
		ssize_t n = read(c->fd, buf, len);

		if (n > 0)
			return n;
		if (n == 0)
			return R_EOF;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return R_AGAIN;
		*why_r = evutil_socket_error_to_string(errno);
		return R_ERR;
	}
}

static void
read_failed(struct conn *c, ssize_t r, const char *why)
{
	if (r == R_EOF)
		why = "closed by peer";
	log_debug(c->tag, "connection %s", why);
	end_conn(c, r == R_EOF ? CONN_END_EOF : CONN_END_ERROR, why);
}

/* The bucket is empty: reading resumes when it has refilled. */
static void
shape_wait(struct conn *c)
{
	struct timeval tv;
	unsigned ms = shaper_bucket_wait_ms(c->bucket);

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	c->shaped_wait = 1;
	update_events(c);
	evtimer_add(c->shape_ev, &tv);
}

/* Hands what the owner left unread to c->in. */
static int
keep_rest(struct conn *c)
{
	if (c->rlen == 0)
		return 0;
	if (c->in == NULL && (c->in = evbuffer_new()) == NULL)
		return -1;
	if (evbuffer_add(c->in, c->rp, c->rlen) < 0)
		return -1;
	c->rlen = 0;
	return 0;
}

/* Reads and hands over, READ_ROUNDS reads at most. */
static void
input(struct conn *c)
{
	struct conn_worker *cw = c->cw;
	struct frame f;
	int round;

	if (c->in != NULL && evbuffer_get_length(c->in) > 0) {
		/* What was left unread comes first (resumed). */
		frame_push(c, &f);
		c->ops->input(c->arg);
		if (!frame_pop(cw, &f))
			return;
	}
	for (round = 0; round < READ_ROUNDS; round++) {
		size_t allow = READ_BUF;
		const char *why = NULL;
		ssize_t n;

		if (c->paused || c->closing || c->handshake || c->tls_flush || c->fd < 0)
			return;
		if (c->bucket != NULL) {
			uint64_t a = shaper_bucket_allow(c->bucket, clock_now_ms());

			if (a == 0) {
				shape_wait(c);
				return;
			}
			if (a < allow)
				allow = (size_t)a;
		}
		n = do_read(c, cw->rbuf, allow, &why);
		if (n == R_AGAIN)
			return;
		if (n < 0) {
			read_failed(c, n, why);
			return;
		}
		if (c->bucket != NULL)
			shaper_bucket_take(c->bucket, (uint64_t)n);
		if (c->in != NULL && evbuffer_get_length(c->in) > 0) {
			if (evbuffer_add(c->in, cw->rbuf, (size_t)n) < 0) {
				end_conn(c, CONN_END_ERROR, "out of memory");
				return;
			}
		} else {
			c->rp = cw->rbuf;
			c->rlen = (size_t)n;
		}
		frame_push(c, &f);
		c->ops->input(c->arg);
		if (!frame_pop(cw, &f))
			return;
		if (keep_rest(c) < 0) {
			end_conn(c, CONN_END_ERROR, "out of memory");
			return;
		}
		c->rp = NULL;
		/* Plain: the socket is drained (it is watched level-
		 * triggered anyway). TLS: go on only for records OpenSSL
		 * has read ahead; for the socket, its next event (one
		 * read(2) per burst, not a second one that says EAGAIN). */
		if (c->tls_io ? !SSL_has_pending(c->ssl) : (size_t)n < allow)
			return;
	}
	/* The budget is spent: the rest from the loop, after the others. */
	kick_read(c);
}

/* Closing: what comes is read and dropped; the peer's EOF ends it. */
static void
discard(struct conn *c)
{
	for (int round = 0; round < READ_ROUNDS; round++) {
		const char *why = NULL;
		ssize_t n;

		if (c->tls_io && c->handshake) {
			/* Not worth finishing: read as it comes. */
			c->tls_io = 0;
		}
		n = do_read(c, c->cw->rbuf, READ_BUF, &why);
		if (n == R_AGAIN)
			return;
		if (n < 0) {
			read_failed(c, n, why);
			return;
		}
	}
	kick_read(c);
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->shaped_wait && (what & EV_TIMEOUT)) {
		/* shape_ev: the bucket has refilled. */
		c->shaped_wait = 0;
		update_events(c);
	}
	if (c->failed != NULL) {
		const char *why = c->failed;

		c->failed = NULL;
		log_debug(c->tag, "connection %s", why);
		end_conn(c, CONN_END_ERROR, why);
		return;
	}
	if (c->fd < 0)
		return;
	if (c->closing) {
		discard(c);
		return;
	}
	if (c->tls_flush)
		return;
	if (c->handshake) {
		/* Done: reading goes on from kick_read. */
		(void)handshake(c);
		return;
	}
	if (c->write_wants_read) {
		c->write_wants_read = 0;
		update_events(c);
		conn_flush(c);
	}
	input(c);
}

int
conn_peek(struct conn *c, const char **p_r, size_t *len_r)
{
	struct evbuffer_iovec v;

	if (c->in != NULL && evbuffer_get_length(c->in) > 0 &&
	    evbuffer_peek(c->in, -1, NULL, &v, 1) >= 1 && v.iov_len > 0) {
		*p_r = v.iov_base;
		*len_r = v.iov_len;
		return 0;
	}
	if (c->rlen == 0)
		return -1;
	*p_r = c->rp;
	*len_r = c->rlen;
	return 0;
}

void
conn_drain(struct conn *c, size_t len)
{
	if (c->in != NULL && evbuffer_get_length(c->in) > 0) {
		evbuffer_drain(c->in, len);
		return;
	}
	if (len > c->rlen)
		len = c->rlen;
	c->rp += len;
	c->rlen -= len;
}

int
conn_input_pending(const struct conn *c)
{
	return c->rlen > 0 || (c->in != NULL && evbuffer_get_length(c->in) > 0) ||
	    (c->tls_io && !c->handshake && SSL_has_pending(c->ssl));
}

void
conn_pause(struct conn *c)
{
	c->paused = 1;
	update_events(c);
}

void
conn_resume(struct conn *c)
{
	if (!c->paused)
		return;
	c->paused = 0;
	update_events(c);
	/* What came while paused is buffered (here, or in the SSL) and the
	 * socket may not become readable again for it: the read callback,
	 * from the loop (never from inside the caller). */
	if (!c->closing && conn_input_pending(c))
		kick_read(c);
}

/* ---------------------------------------------------------------- */
/* Output.                                                            */

/* A write failed: the owner hears of it from the loop (conn_flush runs
 * inside the owner's calls too, where end() may not come). */
static void
write_failed(struct conn *c, const char *why)
{
	c->failed = why;
	evbuffer_drain(c->out, evbuffer_get_length(c->out));
	c->retry = 0;
	update_events(c);
	kick_read(c);
}

static void
write_tls(struct conn *c)
{
	size_t len;

	while ((len = evbuffer_get_length(c->out)) > 0) {
		size_t n = c->retry > 0 ? c->retry : len < TLS_CHUNK ? len : TLS_CHUNK;
		unsigned char *p = evbuffer_pullup(c->out, (ev_ssize_t)n);
		const char *why = "TLS error";
		int r, err;

		if (p == NULL) {
			write_failed(c, "out of memory");
			return;
		}
		ERR_clear_error();
		r = SSL_write(c->ssl, p, (int)n);
		if (r > 0) {
			c->retry = 0;
			evbuffer_drain(c->out, (size_t)r);
			continue;
		}
		err = SSL_get_error(c->ssl, r);
		if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
			ERR_clear_error();
			c->retry = n;
			if (err == SSL_ERROR_WANT_WRITE) {
				log_debug(c->tag, "socket full: %zu bytes wait for it", len);
				wait_write(c);
			} else {
				c->write_wants_read = 1;
				update_events(c);
			}
			return;
		}
		(void)tls_failure(c, err, r, &why);
		write_failed(c, why);
		return;
	}
}

static void
write_plain(struct conn *c)
{
	while (evbuffer_get_length(c->out) > 0) {
		int r = evbuffer_write(c->out, c->fd);

		if (r > 0)
			continue;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			log_debug(c->tag, "socket full: %zu bytes wait for it",
			    evbuffer_get_length(c->out));
			wait_write(c);
			return;
		}
		write_failed(c, r < 0 ? evutil_socket_error_to_string(errno) : "write failed");
		return;
	}
}

/* Closing and the output has gone: our side is shut down (after TLS's
 * close_notify, RFC 8446 6.1), and the peer's EOF awaited. */
static void
half_close(struct conn *c)
{
	struct timeval tv = { LINGER_GRACE_MS / 1000, (LINGER_GRACE_MS % 1000) * 1000 };

	c->half_closed = 1;
	if (c->tls_io && !c->handshake) {
		ERR_clear_error();
		(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	if (c->fd >= 0)
		(void)shutdown(c->fd, SHUT_WR);
	evtimer_del(c->timer);
	evtimer_add(c->timer, &tv);
}

static void
conn_flush(struct conn *c)
{
	if (evbuffer_get_length(c->out) > 0) {
		if (c->fd < 0) {
			/* Nowhere to go (an outgoing connection between two
			 * attempts): dropped. */
			evbuffer_drain(c->out, evbuffer_get_length(c->out));
		} else if (c->connecting || c->wait_write || c->write_wants_read ||
		    c->failed != NULL || (c->tls_io && c->handshake) ||
		    (c->gate && !c->tls_flush)) {
			return;         /* the socket's events go on */
		} else if (c->tls_io) {
			write_tls(c);
		} else {
			write_plain(c);
		}
	}
	if (c->closing && !c->half_closed && evbuffer_get_length(c->out) == 0 &&
	    c->failed == NULL)
		half_close(c);
}

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	c->wait_write = 0;
	if (c->connecting) {
		struct conn_worker *cw = c->cw;
		struct frame f;
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		c->connecting = 0;
		if (err != 0) {
			release_socket(c);
			end_conn(c, c->closing ? CONN_END_CLOSED : CONN_END_CONNECT_FAILED,
			    evutil_socket_error_to_string(err));
			return;
		}
		update_events(c);
		if (c->ssl != NULL) {
			/* Direct TLS: connected once the handshake is done. */
			if (tls_on_socket(c, 1) < 0) {
				release_socket(c);
				end_conn(c, CONN_END_CONNECT_FAILED, "out of memory");
				return;
			}
			(void)handshake(c);
			return;
		}
		c->connected = 1;
		if (!c->closing) {
			frame_push(c, &f);
			c->ops->connected(c->arg);
			if (!frame_pop(cw, &f))
				return;
		}
		conn_flush(c);
		return;
	}
	if (c->tls_io && c->handshake && !c->closing) {
		(void)handshake(c);
		return;
	}
	if (c->read_wants_write) {
		c->read_wants_write = 0;
		kick_read(c);
	}
	if (c->tls_flush) {
		conn_flush(c);
		if (c->tls_flush && c->failed == NULL && evbuffer_get_length(c->out) == 0)
			tls_install(c);
		return;
	}
	conn_flush(c);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn_worker *cw = arg;
	struct conn *c;

	while ((c = cw->dirty) != NULL) {
		cw->dirty = c->dnext;
		c->dnext = NULL;
		c->dirty = 0;
		conn_flush(c);
	}
}

static void
set_dirty(struct conn *c)
{
	if (!c->dirty) {
		c->dirty = 1;
		c->dnext = c->cw->dirty;
		if (c->cw->dirty == NULL)
			event_active(c->cw->flush_ev, EV_WRITE, 0);
		c->cw->dirty = c;
	}
}

struct evbuffer *
conn_out(struct conn *c)
{
	set_dirty(c);
	return c->out;
}

void
conn_write(struct conn *c, const char *s, size_t len)
{
	evbuffer_add(conn_out(c), s, len);
}

size_t
conn_queued(const struct conn *c)
{
	return evbuffer_get_length(c->out);
}

unsigned
conn_unacked(const struct conn *c)
{
	int n = 0;

	if (c->fd >= 0)
		(void)ioctl(c->fd, SIOCOUTQ, &n);
	return n > 0 ? (unsigned)n : 0;
}

/* ---------------------------------------------------------------- */
/* Timer, closing.                                                    */

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->closing) {
		/* The output did not go, or the peer's EOF did not come, in
		 * time; or there was nothing to say goodbye on. */
		end_conn(c, CONN_END_CLOSED, NULL);
		return;
	}
	c->ops->timeout(c->arg);
}

void
conn_set_timer(struct conn *c, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (c->closing)
		return;
	evtimer_del(c->timer);
	evtimer_add(c->timer, &tv);
}

void
conn_cancel_timer(struct conn *c)
{
	if (!c->closing)
		evtimer_del(c->timer);
}

void
conn_close(struct conn *c)
{
	struct timeval tv = { LINGER_GRACE_MS / 1000, (LINGER_GRACE_MS % 1000) * 1000 };

	if (c->closing)
		return;
	c->closing = 1;
	evtimer_del(c->timer);
	if (!conn_is_up(c) || c->failed != NULL) {
		/* Nothing to say goodbye on: ended from the loop. */
		c->half_closed = 1;
		tv.tv_sec = tv.tv_usec = 0;
		evtimer_add(c->timer, &tv);
		return;
	}
	if (c->handshake || c->gate || c->tls_flush) {
		/* Mid-handshake, or between <proceed/> and TLS: what is
		 * queued cannot go (RFC 6120 5.4.3.2: the TCP connection is
		 * just closed). */
		evbuffer_drain(c->out, evbuffer_get_length(c->out));
		c->retry = 0;
		c->gate = c->tls_flush = 0;
		c->tls_io = 0;
	}
	if (c->shaped_wait) {
		evtimer_del(c->shape_ev);
		c->shaped_wait = 0;
	}
	/* Our last bytes (a stream error) must reach the peer; the grace
	 * bounds the wait for them, then for the peer's EOF. */
	evtimer_add(c->timer, &tv);
	update_events(c);
	conn_flush(c);
}

int
conn_closing(const struct conn *c)
{
	return c->closing;
}
