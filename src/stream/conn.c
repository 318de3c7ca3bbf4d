/*
 * conn.c - byte connections (conn.h): bufferevents, TLS, output batching,
 * lingering close, per-IP counts, per-worker lists.
 */
#include "config.h"

#include <limits.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/acl.h"
#include "core/log.h"
#include "core/worker.h"
#include "net/listener.h"
#include "net/tls.h"
#include "stream/conn.h"
#include "stream/linger.h"

#define SWEEP_TICK_MS 1000      /* the sweep runs this often */
#define SWEEP_ROUND 10          /* and visits 1/10 of the connections each time */

struct conn_worker {
	struct conn_set *set;
	struct conn *list;
	size_t count;
	int stopped;
	struct event *flush_ev;        /* made active when output is queued */
	struct conn *dirty;            /* connections with output in c->out */
	struct event *sweep_ev;
	struct conn *sweep;            /* where the sweep goes on */
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
	struct bufferevent *bev;       /* NULL: no socket (yet) */
	SSL *ssl;
	struct event *timer;           /* the owner's, then the lingering close's */
	struct event *tls_gate;        /* watches the socket while tls_wait (server side) */
	struct ev_token_bucket_cfg *shaper;
	struct evbuffer *out;          /* output of this loop iteration (conn_flush) */
	/* STARTTLS through a filter, until the peer's first record: the
	 * filter's callbacks on the plain bufferevent, which the gate wraps
	 * (starttls_filter). */
	void (*gate_read)(struct bufferevent *, void *);
	void (*gate_write)(struct bufferevent *, void *);
	void (*gate_event)(struct bufferevent *, short, void *);
	void *gate_arg;
	struct linger_state linger;    /* while closing (linger.h) */

	unsigned outgoing : 1;
	unsigned connected : 1;        /* outgoing: BEV_EVENT_CONNECTED came */
	unsigned tls_wait : 1;         /* STARTTLS: no TLS record from the peer yet */
	unsigned ssl_mine : 1;         /* c->ssl is not a bufferevent's (tls_wait on the socket) */
	unsigned tls_on : 1;           /* TLS carries the connection (tls_installed told) */
	unsigned direct : 1;           /* TLS on the socket, handshake done: conn_flush writes */
	unsigned dirty : 1;            /* in the worker's flush list */
	unsigned closing : 1;
	unsigned paused : 1;
	unsigned counted_ip : 1;
	struct sockaddr_storage sa;    /* accepted: the peer's address */
};

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void flush_cb(evutil_socket_t fd, short what, void *arg);
static void conn_flush(struct conn *c);

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
		if (set->w[i].flush_ev == NULL) {
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
	c->next = cw->list;
	if (cw->list != NULL)
		cw->list->prev = c;
	cw->list = c;
	cw->count++;
	__atomic_add_fetch(&set->count, 1, __ATOMIC_RELAXED);
	return c;
}

void *
conn_arg(const struct conn *c)
{
	return c->arg;
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

void
conn_free(struct conn **cp)
{
	struct conn *c = *cp;
	struct conn_worker *cw;

	if (c == NULL)
		return;
	cw = c->cw;
	if (cw->sweep == c)
		cw->sweep = c->next;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		cw->list = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	cw->count--;
	undirty(c);
	if (c->counted_ip)
		ipcount_dec((struct sockaddr *)&c->sa);
	event_free(c->timer);
	if (c->tls_gate != NULL)
		event_free(c->tls_gate);
	/* Frees the SSL, a filter's underlying bufferevent and closes the
	 * socket (BEV_OPT_CLOSE_ON_FREE). */
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	/* An SSL not layered on yet (tls_wait) is not the bufferevent's. */
	if (c->ssl_mine && c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->shaper != NULL)
		ev_token_bucket_cfg_free(c->shaper);
	evbuffer_free(c->out);
	__atomic_sub_fetch(&cw->set->count, 1, __ATOMIC_RELAXED);
	free(c);
	*cp = NULL;
}

static void
attach(struct conn *c, struct bufferevent *bev)
{
	c->bev = bev;
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
	bufferevent_enable(bev, c->paused ? EV_WRITE : EV_READ | EV_WRITE);
}

/*
 * A socket bufferevent read through the shaper and, when the connection is
 * TLS (c->ssl), an OpenSSL filter over it. A shaped connection keeps TLS
 * in a filter because libevent's token bucket on a
 * bufferevent_openssl_socket_new() strands data: when the bucket runs dry
 * mid-record, the rest of the record waits in OpenSSL's buffer and the
 * socket never becomes readable again to fetch it (t0610). The filter
 * shapes the bytes on the wire instead. NULL on failure; the caller still
 * owns fd and c->ssl then.
 */
static struct bufferevent *
shaped_bev(struct conn *c, int fd)
{
	struct event_base *base = worker_base(c->w);
	struct bufferevent *bev, *filter;

	bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL;
	if (c->shaper != NULL)
		bufferevent_set_rate_limit(bev, c->shaper);
	if (c->ssl == NULL)
		return bev;
	filter = bufferevent_openssl_filter_new(base, bev, c->ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (filter == NULL) {
		bufferevent_setfd(bev, -1);
		bufferevent_free(bev);
	}
	return filter;
}

int
conn_accept(struct conn *c, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conn_accept_opts *o, unsigned *per_ip_r)
{
	struct bufferevent *bev;

	evutil_make_socket_nonblocking(fd);
	if (o->nodelay) {
		/* Stanzas are small and latency matters: Nagle's algorithm
		 * with the peer's delayed ACK holds a stanza for ~40 ms. */
		int one = 1;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (o->shaper != NULL)
		c->shaper = shaper_bucket_cfg(o->shaper);
	c->ssl = o->ssl;
	c->tls_on = c->ssl != NULL;
	if (c->ssl != NULL && c->shaper == NULL)
		bev = bufferevent_openssl_socket_new(worker_base(c->w), fd, c->ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	else
		/* Plain, or TLS under a shaper: see shaped_bev(). */
		bev = shaped_bev(c, fd);
	if (bev == NULL) {
		if (c->ssl != NULL)
			SSL_free(c->ssl);
		c->ssl = NULL;
		c->tls_on = 0;
		close(fd);
		return -1;
	}
	attach(c, bev);
	memcpy(&c->sa, sa, salen < sizeof(c->sa) ? salen : sizeof(c->sa));
	*per_ip_r = ipcount_inc(sa);
	c->counted_ip = 1;
	return 0;
}

int
conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t salen, SSL *ssl)
{
	struct event_base *base = worker_base(c->w);
	struct bufferevent *bev;

	if (ssl != NULL)
		/* SNI and ALPN are the SSL's (tls_new_client). */
		bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
		    BEV_OPT_CLOSE_ON_FREE);
	else
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		if (ssl != NULL)
			SSL_free(ssl);
		return -1;
	}
	c->outgoing = 1;
	c->connected = 0;
	c->ssl = ssl;
	c->tls_on = ssl != NULL;
	attach(c, bev);
	if (bufferevent_socket_connect(bev, sa, (int)salen) == 0)
		return 0;
	bufferevent_free(bev);          /* and the SSL with it */
	c->bev = NULL;
	c->ssl = NULL;
	c->tls_on = 0;
	return -1;
}

int
conn_pair(struct conn *c, struct bufferevent **peer_r)
{
	struct bufferevent *pair[2];

	/* Deferred callbacks, as a socket's come from the loop. */
	if (bufferevent_pair_new(worker_base(c->w), BEV_OPT_DEFER_CALLBACKS, pair) < 0)
		return -1;
	attach(c, pair[0]);
	*peer_r = pair[1];
	return 0;
}

int
conn_is_up(const struct conn *c)
{
	return c->bev != NULL && (!c->outgoing || c->connected);
}

const struct sockaddr *
conn_peer(const struct conn *c)
{
	return c->counted_ip ? (const struct sockaddr *)&c->sa : NULL;
}

/* ---------------------------------------------------------------- */
/* Events.                                                            */

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	/* May free c (STARTTLS): nothing after this. */
	if (!c->paused)
		c->ops->input(c->arg);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->closing)
		linger_check(&c->linger, c->bev, c->timer);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (c->tls_on) {
			/* conn_starttls told the owner when the TLS layer was
			 * put in place: with TLS 1.3 the client's next stream
			 * header comes in the same flight as its Finished and
			 * is read before this event. */
			log_debug(c->tag, "TLS established: %s", tls_version(c->ssl));
			/* From now on conn_flush may write with SSL_write
			 * itself, unless TLS is a filter over another
			 * bufferevent. */
			c->direct = bufferevent_get_underlying(c->bev) == NULL;
			if (c->direct)
				SSL_set_mode(c->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				    SSL_MODE_ENABLE_PARTIAL_WRITE);
		}
		if (c->outgoing && !c->connected) {
			c->connected = 1;
			if (!c->closing)
				c->ops->connected(c->arg);
		}
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		const char *why = (what & BEV_EVENT_ERROR) ?
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()) : "closed by peer";

		if (c->outgoing && !c->connected && !c->closing) {
			/* The owner may try the next address. */
			bufferevent_free(c->bev);
			c->bev = NULL;
			c->ssl = NULL;
			c->tls_on = 0;
			c->direct = 0;
			c->ops->end(c->arg, CONN_END_CONNECT_FAILED, why);
			return;
		}
		log_debug(c->tag, "connection %s", why);
		c->ops->end(c->arg, (what & BEV_EVENT_ERROR) ? CONN_END_ERROR : CONN_END_EOF, why);
	}
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->closing) {
		if (linger_timer(&c->linger, c->bev, c->timer))
			c->ops->end(c->arg, CONN_END_CLOSED, NULL);
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

/* ---------------------------------------------------------------- */
/* Input.                                                             */

int
conn_peek(struct conn *c, const char **p_r, size_t *len_r)
{
	struct evbuffer_iovec v;

	if (c->bev == NULL || evbuffer_peek(bufferevent_get_input(c->bev), -1, NULL, &v, 1) < 1 ||
	    v.iov_len == 0)
		return -1;
	*p_r = v.iov_base;
	*len_r = v.iov_len;
	return 0;
}

void
conn_drain(struct conn *c, size_t len)
{
	if (c->bev != NULL)
		evbuffer_drain(bufferevent_get_input(c->bev), len);
}

int
conn_input_pending(const struct conn *c)
{
	return c->bev != NULL && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
}

void
conn_pause(struct conn *c)
{
	c->paused = 1;
	if (c->bev != NULL && !c->closing && !c->tls_wait)
		bufferevent_disable(c->bev, EV_READ);
}

void
conn_resume(struct conn *c)
{
	if (!c->paused)
		return;
	c->paused = 0;
	if (c->bev == NULL || c->closing || c->tls_wait)
		return;
	bufferevent_enable(c->bev, EV_READ);
	/* What came while paused is buffered already and the socket may not
	 * become readable again for it: the read callback, from the loop
	 * (never from inside the caller). */
	bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* ---------------------------------------------------------------- */
/* Output.                                                            */

/*
 * Output. Everything a connection sends is queued in c->out during a loop
 * iteration and handed over once at its end (flush_cb): several stanzas for
 * one peer become one TLS record and one write. When the bufferevent has
 * nothing waiting and TLS runs on the socket, conn_flush writes with
 * SSL_write itself: a bufferevent would arm EV_WRITE (epoll_ctl), wait a
 * loop iteration for writability and disarm it again (epoll_ctl), two
 * system calls per delivered stanza (doc/performance.md). Only what the
 * socket does not take goes to the bufferevent, which then waits for
 * EV_WRITE as usual. OpenSSL's retry rule (a write that wanted to block is
 * retried with the same bytes) holds: the bytes are not drained, so they
 * lead the bufferevent's output, which libevent writes next; the SSL has
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER and ENABLE_PARTIAL_WRITE (set when
 * c->direct is, event_cb). t0230 drives this hand-over.
 */
static void
write_direct(struct conn *c)
{
	while (evbuffer_get_length(c->out) > 0) {
		struct evbuffer_iovec v;
		int n;

		if (evbuffer_peek(c->out, -1, NULL, &v, 1) < 1)
			break;
		ERR_clear_error();
		n = SSL_write(c->ssl, v.iov_base, (int)(v.iov_len > INT_MAX ? INT_MAX : v.iov_len));
		if (n <= 0) {
			/* Would block, or failed: the bufferevent retries the
			 * same bytes and reports a failure through the event
			 * callback. */
			int err = SSL_get_error(c->ssl, n);

			ERR_clear_error();
			if (err == SSL_ERROR_WANT_WRITE)
				log_debug(c->tag, "socket full: %zu bytes go to the bufferevent",
				    evbuffer_get_length(c->out));
			break;
		}
		evbuffer_drain(c->out, (size_t)n);
	}
}

static void
conn_flush(struct conn *c)
{
	struct evbuffer *bout;

	if (evbuffer_get_length(c->out) == 0)
		return;
	if (c->bev == NULL) {
		/* Nowhere to go (an outgoing connection between two
		 * attempts): dropped. */
		evbuffer_drain(c->out, evbuffer_get_length(c->out));
		return;
	}
	bout = bufferevent_get_output(c->bev);
	if (c->direct && evbuffer_get_length(bout) == 0)
		write_direct(c);
	if (evbuffer_get_length(c->out) > 0)
		evbuffer_add_buffer(bout, c->out);
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

struct evbuffer *
conn_out(struct conn *c)
{
	if (!c->dirty) {
		c->dirty = 1;
		c->dnext = c->cw->dirty;
		if (c->cw->dirty == NULL)
			event_active(c->cw->flush_ev, EV_WRITE, 0);
		c->cw->dirty = c;
	}
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
	size_t n = evbuffer_get_length(c->out);
	struct bufferevent *u;

	if (c->bev == NULL)
		return n;
	n += evbuffer_get_length(bufferevent_get_output(c->bev));
	if ((u = bufferevent_get_underlying(c->bev)) != NULL)
		n += evbuffer_get_length(bufferevent_get_output(u));
	return n;
}

unsigned
conn_unacked(const struct conn *c)
{
	int n = 0, fd = c->bev != NULL ? bufferevent_getfd(c->bev) : -1;

	if (fd >= 0)
		(void)ioctl(fd, SIOCOUTQ, &n);
	return n > 0 ? (unsigned)n : 0;
}

/* ---------------------------------------------------------------- */
/* STARTTLS.                                                          */

/*
 * After <proceed/> the next bytes from the peer must be its first TLS
 * record (its ClientHello, or the answer to ours); whitespace before it is
 * skipped and anything else ends the connection unread (net/tls.h: the
 * STARTTLS injection class, CVE-2011-0411). On the server side TLS then
 * goes directly on the socket when it can (starttls_socket: the socket is
 * watched, not read, until the record shows); otherwise, and always on the
 * client side, TLS is a filter over the plain bufferevent and a gate
 * between the two looks at the peer's bytes before the filter does
 * (starttls_filter).
 */

/* Not TLS after <proceed/>: the owner closes without a word (RFC 6120
 * 5.4.3.2); what came is dropped, and the lingering close drops the rest. */
static void
refuse_tls(struct conn *c, struct bufferevent *plain)
{
	struct evbuffer *in = bufferevent_get_input(plain);

	log_info(c->tag, "STARTTLS: not a TLS record after <proceed/>: closing");
	evbuffer_drain(in, evbuffer_get_length(in));
	c->tls_wait = 0;
	c->ops->tls_refused(c->arg);
}

/* From now on the peer's bytes come through TLS: the owner restarts its
 * stream (and may write its new header). */
static void
tls_installed(struct conn *c)
{
	c->tls_on = 1;
	c->ops->tls_installed(c->arg);
}

static void
gate_read_cb(struct bufferevent *plain, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(plain);
	void (*filter_read)(struct bufferevent *, void *) = c->gate_read;
	void *filter_arg = c->gate_arg;

	if (c->closing) {
		/* Lingering: the filter has nothing to say any more. */
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	switch (tls_gate_buffer(in)) {
	case TLS_GATE_WAIT:
		return;
	case TLS_GATE_RECORD:
		/* The filter's own callbacks again, and the record for it. */
		c->tls_wait = 0;
		bufferevent_setcb(plain, c->gate_read, c->gate_write, c->gate_event, c->gate_arg);
		tls_installed(c);
		if (filter_read != NULL)
			filter_read(plain, filter_arg);
		return;
	default:
		refuse_tls(c, plain);
		return;
	}
}

static void
gate_write_cb(struct bufferevent *plain, void *arg)
{
	struct conn *c = arg;

	if (c->gate_write != NULL)
		c->gate_write(plain, c->gate_arg);
}

static void
gate_event_cb(struct bufferevent *plain, short what, void *arg)
{
	struct conn *c = arg;

	if (c->gate_event != NULL)
		c->gate_event(plain, what, c->gate_arg);
}

/* TLS as a filter over the plain bufferevent; the peer's record, if any,
 * is in the plain input for the filter to read. May free c. */
static void
starttls_filter(struct conn *c, int client, int wait)
{
	struct bufferevent *plain = c->bev, *filter;

	filter = bufferevent_openssl_filter_new(worker_base(c->w), plain, c->ssl,
	    client ? BUFFEREVENT_SSL_CONNECTING : BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (filter == NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
		c->ssl_mine = 0;
		c->tls_wait = 0;
		c->ops->end(c->arg, CONN_END_ERROR, "out of memory");
		return;
	}
	c->ssl_mine = 0;
	if (wait) {
		/* No record yet (whitespace, if any, was dropped): the gate
		 * looks at the peer's bytes before the filter does. */
		c->tls_wait = 1;
		bufferevent_getcb(plain, &c->gate_read, &c->gate_write, &c->gate_event,
		    &c->gate_arg);
		bufferevent_setcb(plain, gate_read_cb, gate_write_cb, gate_event_cb, c);
	} else {
		c->tls_wait = 0;
	}
	c->bev = filter;
	log_debug(c->tag, "STARTTLS: TLS in a filter over the plain bufferevent%s",
	    c->shaper != NULL ? " (shaped)" : "");
	bufferevent_setcb(filter, read_cb, write_cb, event_cb, c);
	/* The peer's record is there already: everything read from here
	 * on comes through TLS. Else the gate says so when it shows. */
	if (!wait)
		tls_installed(c);
	/* Last: the handshake runs on a buffered record in here, and a
	 * broken one ends c (event_cb). */
	bufferevent_enable(filter, c->paused ? EV_WRITE : EV_READ | EV_WRITE);
}

/* Writes the plain output buffer to the socket now. 0 if all of it went
 * (the usual case: <proceed/> is a few dozen bytes), -1 if not. */
static int
flush_plain(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	int r = 0;

	/* A socket bufferevent freezes the start of its output buffer so
	 * that only it drains it: unfreeze around our own write, or
	 * evbuffer_write always fails. */
	evbuffer_unfreeze(out, 1);
	while (r == 0 && evbuffer_get_length(out) > 0)
		if (evbuffer_write(out, bufferevent_getfd(c->bev)) <= 0)
			r = -1;
	evbuffer_freeze(out, 1);
	return r;
}

/* Server side, the first record is next in the socket: TLS directly on
 * it, no filter layered over a plain bufferevent (one copy less each way
 * and less memory per connection); or a filter when <proceed/> could not
 * be written at once. May free c. */
static void
starttls_socket(struct conn *c)
{
	int fd = bufferevent_getfd(c->bev);

	if (flush_plain(c) < 0) {
		starttls_filter(c, 0, 0);
		return;
	}
	bufferevent_setfd(c->bev, -1);          /* keep the socket open */
	bufferevent_free(c->bev);
	c->tls_wait = 0;
	c->ssl_mine = 0;
	c->bev = bufferevent_openssl_socket_new(worker_base(c->w), fd, c->ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		/* Out of memory: this connection only. */
		SSL_free(c->ssl);
		c->ssl = NULL;
		close(fd);
		c->ops->end(c->arg, CONN_END_ERROR, "out of memory");
		return;
	}
	log_debug(c->tag, "STARTTLS: TLS directly on the socket");
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	tls_installed(c);
	bufferevent_enable(c->bev, c->paused ? EV_WRITE : EV_READ | EV_WRITE);
}

static void
tls_gate_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	switch (tls_gate_socket(fd)) {
	case TLS_GATE_WAIT:
		return;
	case TLS_GATE_RECORD:
		event_free(c->tls_gate);
		c->tls_gate = NULL;
		starttls_socket(c);
		return;
	case TLS_GATE_REFUSE:
		refuse_tls(c, c->bev);
		return;
	case TLS_GATE_CLOSED:
		c->ops->end(c->arg, CONN_END_EOF, "closed by peer before TLS");
		return;
	}
}

void
conn_starttls(struct conn *c, SSL *ssl, int client)
{
	enum tls_gate first;
	int fd;

	/* What is queued (<proceed/>, or the stream that sent <starttls/>)
	 * goes out in the clear: into the plain bufferevent now. */
	conn_flush(c);
	c->ssl = ssl;
	c->ssl_mine = 1;
	first = tls_gate_buffer(bufferevent_get_input(c->bev));
	if (first == TLS_GATE_REFUSE) {
		refuse_tls(c, c->bev);
		return;
	}
	fd = bufferevent_getfd(c->bev);
	if (client || c->shaper != NULL || fd < 0 || first == TLS_GATE_RECORD) {
		/* The client writes first; a shaped socket keeps TLS in a
		 * filter (shaped_bev); a memory pair has no socket; and a
		 * server whose client did not wait for <proceed/> (it
		 * should, RFC 6120 5.4.2.3) has the record in the plain
		 * input already. */
		starttls_filter(c, client, first == TLS_GATE_WAIT);
		return;
	}
	/* Nothing, or only whitespace (now dropped), came with <starttls/>:
	 * the socket is watched, not read, until the first record shows. */
	c->tls_wait = 1;
	bufferevent_disable(c->bev, EV_READ);
	c->tls_gate = event_new(worker_base(c->w), fd, EV_READ | EV_PERSIST, tls_gate_cb, c);
	if (c->tls_gate == NULL || event_add(c->tls_gate, NULL) < 0)
		c->ops->tls_refused(c->arg);
}

int
conn_tls_waiting(const struct conn *c)
{
	return c->tls_wait;
}

SSL *
conn_ssl(const struct conn *c)
{
	return c->tls_on ? c->ssl : NULL;
}

/* ---------------------------------------------------------------- */
/* Closing.                                                           */

void
conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->tls_gate != NULL) {
		/* The lingering close reads the socket from now on. */
		event_free(c->tls_gate);
		c->tls_gate = NULL;
	}
	conn_flush(c);
	/* Our last bytes (a stream error) must reach the peer (linger.h);
	 * an outgoing connection that is not up has nothing to say goodbye
	 * on and is ended from the timer at once. */
	linger_start(&c->linger, conn_is_up(c) ? c->bev : NULL, c->timer, write_cb, event_cb, c);
}

int
conn_closing(const struct conn *c)
{
	return c->closing;
}
