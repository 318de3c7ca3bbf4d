/*
 * c2s.c - client streams: RFC 6120 negotiation and the bound session.
 *
 * A connection goes through: stream header -> (STARTTLS -> TLS handshake ->
 * header) -> SASL -> header -> resource binding -> session. Everything runs
 * on the worker that accepted the socket. A connection is never freed
 * inside an expat callback: errors set it closing, and it is freed from a
 * libevent callback once its output has drained (or a timer says the peer
 * is not reading).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "auth/sasl.h"
#include "c2s/c2s.h"
#include "core/acl.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/hold.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/worker.h"
#include "net/linger.h"
#include "net/listener.h"
#include "net/tls.h"
#include "router/router.h"
#include "router/session.h"
#include "router/sm.h"
#include "xml/stream.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"
#include "xmpp/stanza.h"

#define C2S_SHUTDOWN_MAX_MS 3000
#define C2S_SWEEP_TICK_MS 1000      /* the idle sweep runs this often */
#define C2S_SWEEP_ROUND 10          /* and visits 1/10 of the sessions each time */

struct c2s_worker;

struct c2s {
	struct session s;              /* what the router knows (first: the sink's argument) */
	struct c2s *prev, *next;       /* in the worker's list */
	struct c2s *dnext;             /* in the worker's list of output to flush */
	struct worker *w;
	struct c2s_worker *cw;
	struct conf *conf;             /* the configuration it started with */
	const struct conf_listen *l;
	struct bufferevent *bev;
	SSL *ssl;
	xml_stream *xs;
	sasl_session *sasl;
	struct event *timer;           /* negotiation timeout, auth delay, close */
	struct event *tls_gate;        /* watches the socket while tls_wait (start_tls) */
	struct ev_token_bucket_cfg *shaper;  /* listen: shaper (or NULL) */
	struct evbuffer *out;          /* output of this loop iteration (c2s_flush) */
	struct hold *hold;             /* a stanza's store work pending: read nothing */

	unsigned tls : 1;              /* TLS is up */
	unsigned starttls_pending : 1;
	unsigned tls_wait : 1;         /* <proceed/> sent, no TLS record yet (c->ssl is ours) */
	unsigned header_sent : 1;
	unsigned authenticated : 1;
	unsigned paused : 1;           /* reading stopped: auth failure delay */
	unsigned counted_ip : 1;
	unsigned direct : 1;           /* TLS on the socket, handshake done: c2s_flush writes */
	unsigned dirty : 1;            /* in the worker's flush list */
	unsigned held_off : 1;         /* reading stopped while held */
	unsigned peer_eof : 1;         /* the peer closed with input waiting for the hold */

	unsigned auth_failures;
	struct linger_state linger;          /* while closing (net/linger.h) */
	const char *delayed_failure;   /* SASL condition to send after the delay */
	char *host;                    /* the domain the client asked for */
	char *node;                    /* authenticated account */
	char stream_id[20];
	char tag[24];                  /* "c2s#12" for logs */
};

struct c2s_worker {
	size_t count;
	struct c2s *list;
	int shutting_down;
	struct event *shutdown_timer;
	struct event *idle_timer;
	struct c2s *sweep;             /* where the idle sweep goes on */
	struct event *flush_ev;        /* made active when output is queued */
	struct c2s *dirty;             /* connections with output in c->out */
};

/* The ABI's session is the router's (router/session.h). */
#define SESSION(c) ((xmppd_session *)&(c)->s)

static struct c2s_worker *cworkers;
static unsigned ncworkers;
static unsigned long nconnections;   /* atomic */

static void c2s_close(struct c2s *c);
static void c2s_free(struct c2s *c);
static void c2s_stream_error(struct c2s *c, const char *condition, const char *text);
static void c2s_read_cb(struct bufferevent *bev, void *arg);
static void c2s_resume(void *arg);
static void c2s_write_cb(struct bufferevent *bev, void *arg);
static void c2s_event_cb(struct bufferevent *bev, short what, void *arg);
static void c2s_timer_cb(evutil_socket_t fd, short what, void *arg);
static void tls_gate_cb(evutil_socket_t fd, short what, void *arg);
static void flush_cb(evutil_socket_t fd, short what, void *arg);
static void on_stream_start(void *ud, const char *ns, const char **attrs);
static void on_element(void *ud, xml_elem *e);
static void on_stream_end(void *ud);
static void on_stream_error(void *ud, const char *condition, const char *text);

static const struct xml_stream_cb stream_cb = {
	on_stream_start, on_element, on_stream_end, on_stream_error,
};

static void c2s_send(struct c2s *c, const xml_elem *e);

/* The sink the router delivers through (router/session.h). */
static void
sink_send(struct session *s, const xml_elem *st)
{
	c2s_send((struct c2s *)s, st);
}

static void
sink_close(struct session *s, const char *condition, const char *text)
{
	c2s_stream_error((struct c2s *)s, condition, text);
}

static const struct session_ops c2s_session_ops = { sink_send, sink_close };

/* ---------------------------------------------------------------- */
/* The per-worker registry of connections.                            */

/*
 * Streams quiet for hibernate_after seconds give their XML parser back
 * (xml_stream_hibernate); their next bytes take one again. The sweep visits
 * a tenth of the worker's sessions every second, so a stream hibernates
 * between hibernate_after and hibernate_after + 10 s of quiet, and streams
 * that went quiet together do not all hibernate (and wake) at once: a sweep
 * of the whole list every 90 s freed thousands of parsers in one go and
 * showed as a latency spike when they were all remade
 * (doc/performance.md).
 */
static void
idle_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct c2s_worker *cw = arg;
	uint64_t after = (uint64_t)conf_local()->hibernate_after * 1000;
	uint64_t now = clock_now_ms();
	size_t n = cw->count / C2S_SWEEP_ROUND + 1;
	struct c2s *c;

	if (after == 0)
		return;
	for (c = cw->sweep != NULL ? cw->sweep : cw->list; c != NULL && n > 0; c = c->next, n--)
		if (!c->s.closing && now - c->s.last_input_ms >= after &&
		    xml_stream_hibernate(c->xs))
			log_debug(c->tag, "idle: parser given back");
	cw->sweep = c;
}

int
c2s_init(unsigned nworkers)
{
	cworkers = calloc(nworkers, sizeof(*cworkers));
	if (cworkers == NULL)
		return -1;
	ncworkers = nworkers;
	listener_set_handler(CONF_LISTEN_C2S, c2s_accept);
	for (unsigned i = 0; i < nworkers; i++) {
		/* Made before the worker thread runs: its base is unlocked. */
		cworkers[i].idle_timer = event_new(worker_base(worker_get(i)), -1, EV_PERSIST,
		    idle_sweep_cb, &cworkers[i]);
		cworkers[i].flush_ev = event_new(worker_base(worker_get(i)), -1, 0,
		    flush_cb, &cworkers[i]);
		if (cworkers[i].flush_ev == NULL)
			return -1;
		if (cworkers[i].idle_timer != NULL) {
			struct timeval tv = { C2S_SWEEP_TICK_MS / 1000, 0 };

			event_add(cworkers[i].idle_timer, &tv);
		}
	}
	return 0;
}

static void
list_add(struct c2s_worker *cw, struct c2s *c)
{
	c->next = cw->list;
	if (cw->list != NULL)
		cw->list->prev = c;
	cw->list = c;
	cw->count++;
}

static void
list_del(struct c2s_worker *cw, struct c2s *c)
{
	if (cw->sweep == c)
		cw->sweep = c->next;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		cw->list = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	cw->count--;
}

/* ---------------------------------------------------------------- */
/* Output.                                                            */

/*
 * Output. Everything a connection sends is queued in c->out during a loop
 * iteration and handed over once at its end (flush_cb): several stanzas for
 * one client become one TLS record and one write. When the bufferevent has
 * nothing waiting and TLS runs on the socket, c2s_flush writes with
 * SSL_write itself: a bufferevent would arm EV_WRITE (epoll_ctl), wait a
 * loop iteration for writability and disarm it again (epoll_ctl), two
 * system calls per delivered stanza (doc/performance.md). Only what the
 * socket does not take goes to the bufferevent, which then waits for
 * EV_WRITE as usual. OpenSSL's retry rule (a write that wanted to block is
 * retried with the same bytes) holds: the bytes are not drained, so they
 * lead the bufferevent's output, which libevent writes next; the SSL has
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER and ENABLE_PARTIAL_WRITE (set when
 * c->direct is, c2s_event_cb). t0230 drives this hand-over.
 */
static void
write_direct(struct c2s *c)
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
c2s_flush(struct c2s *c)
{
	struct evbuffer *bout;

	if (c->out == NULL || c->bev == NULL || evbuffer_get_length(c->out) == 0)
		return;
	bout = bufferevent_get_output(c->bev);
	if (c->direct && evbuffer_get_length(bout) == 0)
		write_direct(c);
	if (evbuffer_get_length(c->out) > 0)
		evbuffer_add_buffer(bout, c->out);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct c2s_worker *cw = arg;
	struct c2s *c;

	while ((c = cw->dirty) != NULL) {
		cw->dirty = c->dnext;
		c->dnext = NULL;
		c->dirty = 0;
		c2s_flush(c);
	}
}

/* The buffer to queue output in; the connection is flushed at the end of
 * this loop iteration. */
static struct evbuffer *
c2s_out(struct c2s *c)
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

static void
undirty(struct c2s *c)
{
	struct c2s **pp;

	if (!c->dirty)
		return;
	for (pp = &c->cw->dirty; *pp != NULL; pp = &(*pp)->dnext)
		if (*pp == c) {
			*pp = c->dnext;
			break;
		}
	c->dirty = 0;
}

static int
send_queue_full(struct c2s *c)
{
	struct bufferevent *u = bufferevent_get_underlying(c->bev);
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev)) +
	    evbuffer_get_length(c->out);

	if (u != NULL)
		n += evbuffer_get_length(bufferevent_get_output(u));
	return n > c->conf->max_send_queue;
}

static void
c2s_write(struct c2s *c, const char *s, size_t len)
{
	evbuffer_add(c2s_out(c), s, len);
}

static void
c2s_writes(struct c2s *c, const char *s)
{
	c2s_write(c, s, strlen(s));
}

static void
c2s_send(struct c2s *c, const xml_elem *e)
{
	if (c->s.closing)
		return;
	xml_serialize(e, NS_CLIENT, c2s_out(c));
	/* A reader that does not keep up is cut off rather than allowed to
	 * pin the server's memory. */
	if (send_queue_full(c))
		c2s_stream_error(c, "resource-constraint", "send queue full");
}

static void
new_stream_id(struct c2s *c)
{
	unsigned char r[8];
	static const char digits[] = "0123456789abcdef";

	RAND_bytes(r, sizeof(r));
	for (int i = 0; i < 8; i++) {
		c->stream_id[2 * i] = digits[r[i] >> 4];
		c->stream_id[2 * i + 1] = digits[r[i] & 15];
	}
	c->stream_id[16] = '\0';
}

static void
send_header(struct c2s *c, const char *peer_from)
{
	struct evbuffer *out = c2s_out(c);
	const char *host = c->host != NULL ? c->host : c->conf->hosts[0];

	new_stream_id(c);
	/* RFC 6120 4.7: from = our domain, to = the client's 'from' if it
	 * gave one, a fresh id, version 1.0. */
	evbuffer_add_printf(out, "<?xml version='1.0'?><stream:stream xmlns='" NS_CLIENT
	    "' xmlns:stream='" XML_NS_STREAM "' id='%s' from='", c->stream_id);
	xml_escape_attr(out, host);
	if (peer_from != NULL) {
		evbuffer_add_printf(out, "' to='");
		xml_escape_attr(out, peer_from);
	}
	evbuffer_add_printf(out, "' version='1.0' xml:lang='en'>");
	c->header_sent = 1;
}

/* RFC 6120 4.9: the error, then the end of the stream, then close. */
static void
c2s_stream_error(struct c2s *c, const char *condition, const char *text)
{
	struct evbuffer *out;

	if (c->s.closing)
		return;
	if (c->tls_wait) {
		/* After <proceed/> the plain stream is over and the client
		 * reads TLS (RFC 6120 5.4.2.3): no stream error, the TCP
		 * connection is closed (5.4.3.2). */
		log_info(c->tag, "closing before TLS: <%s/>%s%s", condition,
		    text ? ": " : "", text ? text : "");
		c2s_close(c);
		return;
	}
	if (!c->header_sent)
		send_header(c, NULL);   /* 4.9.1.2: a header comes first */
	out = c2s_out(c);
	evbuffer_add_printf(out, "<stream:error><%s xmlns='" NS_STREAMS "'/>", condition);
	if (text != NULL) {
		evbuffer_add_printf(out, "<text xmlns='" NS_STREAMS "'>");
		xml_escape_attr(out, text);
		evbuffer_add_printf(out, "</text>");
	}
	evbuffer_add_printf(out, "</stream:error></stream:stream>");
	log_info(c->tag, "stream error <%s/>%s%s", condition, text ? ": " : "",
	    text ? text : "");
	c2s_close(c);
}

/* ---------------------------------------------------------------- */
/* Life cycle.                                                        */

/*
 * A socket bufferevent read through the listener's shaper and, when the
 * connection is TLS (c->ssl), an OpenSSL filter over it. A shaped
 * connection keeps TLS in a filter because libevent's token bucket on a
 * bufferevent_openssl_socket_new() strands data: when the bucket runs dry
 * mid-record, the rest of the record waits in OpenSSL's buffer and the
 * socket never becomes readable again to fetch it (t0610). The filter
 * shapes the bytes on the wire instead. NULL on failure; the caller still
 * owns fd and c->ssl then.
 */
static struct bufferevent *
shaped_bev(struct c2s *c, struct event_base *base, int fd)
{
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

void
c2s_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conf_listen *l)
{
	struct c2s_worker *cw = &cworkers[worker_id(w)];
	struct event_base *base = worker_base(w);
	struct xml_stream_limits lim;
	struct c2s *c;
	unsigned n;

	if (cw->shutting_down) {
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	c->w = w;
	c->cw = cw;
	if ((c->out = evbuffer_new()) == NULL) {
		close(fd);
		free(c);
		return;
	}
	c->l = l;
	c->conf = conf_current();
	c->hold = hold_new(c2s_resume, c);
	/* In the router's table from now on: a session that is not bound
	 * yet is only ever answered (pre-authentication IQs). */
	session_add(&c->s, w, &c2s_session_ops, sa, salen);
	c->s.last_input_ms = clock_now_ms();
	snprintf(c->tag, sizeof(c->tag), "c2s#%u.%llu", worker_id(w),
	    (unsigned long long)(c->s.sid & 0xffffffffffffffULL));
	evutil_make_socket_nonblocking(fd);
	{
		/* Stanzas are small and latency matters: Nagle's algorithm
		 * with the peer's delayed ACK holds a stanza for ~40 ms. */
		int one = 1;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}

	if (l->shaper != NULL) {
		const struct conf_shaper *sh = shaper_find(c->conf, l->shaper);

		/* The listener's shaper (acl.h). */
		if (sh != NULL)
			c->shaper = shaper_bucket_cfg(sh);
	}
	if (l->tls) {
		/* XEP-0368: TLS from the first byte, ALPN "xmpp-client". */
		c->ssl = tls_new_server("xmpp-client");
		if (c->ssl == NULL) {
			log_error(c->tag, "direct TLS listener but no certificate");
			goto fail;
		}
		c->tls = 1;
	}
	if (c->ssl != NULL && c->shaper == NULL) {
		c->bev = bufferevent_openssl_socket_new(base, fd, c->ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	} else {
		/* Plain, or TLS under a shaper: see shaped_bev(). */
		c->bev = shaped_bev(c, base, fd);
	}
	if (c->bev == NULL)
		goto fail;
	lim.max_stanza_size = l->max_stanza_size;
	lim.max_depth = c->conf->max_xml_depth;
	lim.max_attrs = c->conf->max_xml_attrs;
	c->xs = xml_stream_new(&stream_cb, c, &lim);
	c->timer = evtimer_new(base, c2s_timer_cb, c);
	list_add(cw, c);
	__atomic_add_fetch(&nconnections, 1, __ATOMIC_RELAXED);
	bufferevent_setcb(c->bev, c2s_read_cb, NULL, c2s_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	log_debug(c->tag, "connection from %s%s", c->s.addr, l->tls ? " (direct TLS)" : "");

	n = ipcount_inc(sa);
	c->counted_ip = 1;
	if (c->conf->max_connections_per_ip > 0 && n > c->conf->max_connections_per_ip) {
		c2s_stream_error(c, "policy-violation", "too many connections from your address");
		return;
	}
	/* RFC 6120 4.9.3.4 / our limit: negotiation must end in time. */
	{
		struct timeval tv = { c->conf->negotiation_timeout, 0 };

		evtimer_add(c->timer, &tv);
	}
	return;
fail:
	session_remove(&c->s);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->shaper != NULL)
		ev_token_bucket_cfg_free(c->shaper);
	close(fd);
	conf_unref(c->conf);
	hold_detach(c->hold);
	evbuffer_free(c->out);
	free(c);
}

static void
c2s_close(struct c2s *c)
{
	if (c->s.closing)
		return;
	c->s.closing = 1;
	if (c->tls_gate != NULL) {
		/* The lingering close reads the socket from now on. */
		event_free(c->tls_gate);
		c->tls_gate = NULL;
	}
	session_end(&c->s);
	c2s_flush(c);
	/* A lingering close: our last bytes (the stream error) must reach
	 * the peer (net/linger.h). */
	linger_start(&c->linger, c->bev, c->timer, c2s_write_cb, c2s_event_cb, c);
}

static void
c2s_free(struct c2s *c)
{
	struct c2s_worker *cw = c->cw;

	/* The session's end first: its hooks may still send to it. */
	session_remove(&c->s);
	list_del(cw, c);
	undirty(c);
	if (c->counted_ip)
		ipcount_dec((struct sockaddr *)&c->s.sa);
	event_free(c->timer);
	if (c->tls_gate != NULL)
		event_free(c->tls_gate);
	/* Frees the SSL, the STARTTLS filter's underlying bufferevent and
	 * closes the socket (BEV_OPT_CLOSE_ON_FREE). */
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	/* An SSL not layered on yet (tls_wait) is not the bufferevent's. */
	if (c->tls_wait && c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->shaper != NULL)
		ev_token_bucket_cfg_free(c->shaper);
	if (c->out != NULL)
		evbuffer_free(c->out);
	xml_stream_free(&c->xs);
	/* Store work still pending completes without us. */
	hold_detach(c->hold);
	sasl_end(&c->sasl);
	free(c->host);
	free(c->node);
	conf_unref(c->conf);
	log_debug(c->tag, "closed");
	free(c);
	__atomic_sub_fetch(&nconnections, 1, __ATOMIC_RELAXED);
	if (cw->shutting_down && cw->count == 0)
		event_base_loopexit(worker_base(worker_get((unsigned)(cw - cworkers))), NULL);
}

static void
c2s_write_cb(struct bufferevent *bev, void *arg)
{
	struct c2s *c = arg;

	if (c->s.closing)
		linger_check(&c->linger, c->bev, c->timer);
}

static void
c2s_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct c2s *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		/* c->tls was set when the TLS layer was put in place: with
		 * TLS 1.3 the client's next stream header comes in the same
		 * flight as its Finished and is read before this event. */
		log_debug(c->tag, "TLS established: %s", tls_version(c->ssl));
		/* From now on c2s_flush may write with SSL_write itself, unless
		 * TLS is a filter over another bufferevent. */
		c->direct = bufferevent_get_underlying(c->bev) == NULL;
		if (c->direct)
			SSL_set_mode(c->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			    SSL_MODE_ENABLE_PARTIAL_WRITE);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		/* What the client sent before it closed is still handled, in
		 * order, once the stanza it waits for is done (c2s_resume). */
		if ((what & BEV_EVENT_EOF) && !c->s.closing && hold_busy(c->hold) &&
		    evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
			log_debug(c->tag, "closed by peer: handling what it sent first");
			c->peer_eof = 1;
			return;
		}
		if (what & BEV_EVENT_ERROR)
			log_debug(c->tag, "connection error: %s",
			    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		else
			log_debug(c->tag, "connection closed by peer");
		c2s_free(c);
	}
}

static void
c2s_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct c2s *c = arg;

	if (c->s.closing) {
		if (linger_timer(&c->linger, c->bev, c->timer))
			c2s_free(c);
		return;
	}
	if (c->paused && c->delayed_failure != NULL) {
		/* The delay after a failed authentication is over. */
		struct evbuffer *out = c2s_out(c);

		evbuffer_add_printf(out, "<failure xmlns='" NS_SASL "'><%s/></failure>",
		    c->delayed_failure);
		c->delayed_failure = NULL;
		c->paused = 0;
		if (c->auth_failures >= c->conf->max_auth_attempts) {
			/* RFC 6120 6.4.5: too many retries. */
			c2s_stream_error(c, "policy-violation", "too many authentication failures");
			return;
		}
		{
			struct timeval tv = { c->conf->negotiation_timeout, 0 };

			evtimer_add(c->timer, &tv);
		}
		bufferevent_enable(c->bev, EV_READ);
		c2s_read_cb(c->bev, c);
		return;
	}
	if (!c->s.bound)
		c2s_stream_error(c, "connection-timeout", "negotiation took too long");
}

/* ---------------------------------------------------------------- */
/* Input.                                                             */

/* Writes the plain output buffer to the socket now. 0 if all of it went
 * (the usual case: <proceed/> is a few dozen bytes), -1 if not. */
static int
flush_plain(struct c2s *c)
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

/*
 * STARTTLS (RFC 6120 5.4). After <proceed/> the next bytes must be the
 * client's first TLS record; whitespace before it is skipped and anything
 * else ends the connection unread (net/tls.h: the STARTTLS injection
 * class, CVE-2011-0411). start_tls looks at what came with <starttls/>,
 * then tls_gate_cb watches the socket, without reading it, until the
 * record shows; layer_tls puts TLS on.
 */

/* Not TLS after <proceed/>: closed without a word (RFC 6120 5.4.3.2);
 * the lingering close discards what the client sent. */
static void
refuse_tls(struct c2s *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	log_info(c->tag, "STARTTLS: not a TLS record after <proceed/>: closing");
	evbuffer_drain(in, evbuffer_get_length(in));
	c2s_close(c);
}

/* The first TLS record is next: in the plain input, or still in the
 * socket. Frees c if the handshake fails at once; the caller must not
 * touch c afterwards. */
static void
layer_tls(struct c2s *c)
{
	struct bufferevent *filter;

	/* The usual case: the client sent nothing with <starttls/> and
	 * <proceed/> is out (it is a few dozen bytes). Then TLS runs
	 * directly on the socket: no filter layered over a plain
	 * bufferevent, one copy less each way and less memory per session. */
	if (c->shaper == NULL && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
	    flush_plain(c) == 0) {
		int fd = bufferevent_getfd(c->bev);

		bufferevent_setfd(c->bev, -1);          /* keep the socket open */
		bufferevent_free(c->bev);
		c->tls_wait = 0;
		c->bev = bufferevent_openssl_socket_new(worker_base(c->w), fd, c->ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		if (c->bev == NULL) {
			/* Out of memory: drop this connection only. */
			SSL_free(c->ssl);
			c->ssl = NULL;
			close(fd);
			c2s_free(c);
			return;
		}
		c->tls = 1;
		c->header_sent = 0;
		log_debug(c->tag, "STARTTLS: TLS directly on the socket");
		bufferevent_setcb(c->bev, c2s_read_cb, NULL, c2s_event_cb, c);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		return;
	}
	/* Otherwise: <proceed/> is in the plain output buffer and is flushed
	 * before the filter's first TLS record; the record the client sent
	 * with <starttls/>, if any, is in the underlying input for the
	 * filter to read. */
	filter = bufferevent_openssl_filter_new(worker_base(c->w), c->bev, c->ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (filter == NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
		c2s_stream_error(c, "internal-server-error", NULL);
		return;
	}
	c->tls_wait = 0;
	c->bev = filter;
	log_debug(c->tag, "STARTTLS: TLS in a filter over the plain bufferevent%s",
	    c->shaper != NULL ? " (shaped)" : "");
	/* Everything read from here on has come through TLS. */
	c->tls = 1;
	c->header_sent = 0;
	bufferevent_setcb(c->bev, c2s_read_cb, NULL, c2s_event_cb, c);
	/* Last: the handshake runs on a buffered record in here, and a
	 * broken one frees c (c2s_event_cb). */
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
start_tls(struct c2s *c)
{
	c->starttls_pending = 0;
	/* <proceed/> goes out in the clear: into the plain bufferevent now,
	 * before TLS is layered on. */
	c2s_flush(c);
	c->ssl = tls_new_server(NULL);
	if (c->ssl == NULL) {
		c2s_stream_error(c, "internal-server-error", "no certificate");
		return;
	}
	c->tls_wait = 1;
	switch (tls_gate_buffer(bufferevent_get_input(c->bev))) {
	case TLS_GATE_RECORD:
		/* The client did not wait for <proceed/> (it should, RFC
		 * 6120 5.4.2.3), but it is TLS. */
		layer_tls(c);
		return;
	case TLS_GATE_REFUSE:
		refuse_tls(c);
		return;
	default:
		break;
	}
	/* Nothing, or only whitespace (now dropped), came with <starttls/>:
	 * the socket is watched, not read, until the first record shows. */
	bufferevent_disable(c->bev, EV_READ);
	c->tls_gate = event_new(worker_base(c->w), bufferevent_getfd(c->bev),
	    EV_READ | EV_PERSIST, tls_gate_cb, c);
	if (c->tls_gate == NULL || event_add(c->tls_gate, NULL) < 0)
		c2s_close(c);
}

static void
tls_gate_cb(evutil_socket_t fd, short what, void *arg)
{
	struct c2s *c = arg;

	switch (tls_gate_socket(fd)) {
	case TLS_GATE_WAIT:
		return;
	case TLS_GATE_RECORD:
		event_free(c->tls_gate);
		c->tls_gate = NULL;
		layer_tls(c);
		return;
	case TLS_GATE_REFUSE:
		refuse_tls(c);
		return;
	case TLS_GATE_CLOSED:
		log_debug(c->tag, "connection closed by peer before TLS");
		c2s_free(c);
		return;
	}
}

static void
c2s_read_cb(struct bufferevent *bev, void *arg)
{
	struct c2s *c = arg;
	struct evbuffer *in = bufferevent_get_input(c->bev);

	c->s.last_input_ms = clock_now_ms();
	/* RFC 6120 10.1: while the last stanza's store work is pending,
	 * nothing more is processed, nor read (c2s_resume goes on). */
	if (hold_busy(c->hold) && !c->held_off && !c->s.closing) {
		c->held_off = 1;
		bufferevent_disable(c->bev, EV_READ);
	}
	while (!c->s.closing && !c->paused && !hold_busy(c->hold) &&
	    evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		size_t consumed = 0;
		int r;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		if (log_enabled(LOG_LVL_DEBUG))
			log_debug(c->tag, "<<< %.*s", (int)(v.iov_len > 2000 ? 2000 : v.iov_len),
			    (const char *)v.iov_base);
		r = xml_stream_feed(c->xs, v.iov_base, v.iov_len, &consumed);
		evbuffer_drain(in, consumed);
		if (r < 0) {
			/* The error callback has closed the stream; an ended
			 * stream without error is closed here. */
			if (!c->s.closing)
				c2s_close(c);
			break;
		}
		if (c->starttls_pending) {
			start_tls(c);
			return;
		}
	}
}

/* The store work of the stanza that held the stream has completed. */
static void
c2s_resume(void *arg)
{
	struct c2s *c = arg;

	if (c->peer_eof) {
		/* Nothing more will come: the rest of the input, then out. */
		c2s_read_cb(c->bev, c);
		if (!hold_busy(c->hold))
			c2s_free(c);
		return;
	}
	if (c->s.closing)
		return;
	if (c->held_off) {
		c->held_off = 0;
		bufferevent_enable(c->bev, EV_READ);
	}
	c2s_read_cb(c->bev, c);
}

static void
on_stream_start(void *ud, const char *ns, const char **attrs)
{
	struct c2s *c = ud;
	const char *to = NULL, *version = NULL, *from = NULL;
	xml_elem *features;
	char *host;

	for (size_t i = 0; attrs[i] != NULL; i += 2) {
		if (strcmp(attrs[i], "to") == 0)
			to = attrs[i + 1];
		else if (strcmp(attrs[i], "version") == 0)
			version = attrs[i + 1];
		else if (strcmp(attrs[i], "from") == 0)
			from = attrs[i + 1];
	}
	if (to != NULL && (host = jid_nameprep(to, strlen(to))) != NULL) {
		if (conf_is_local_host(c->conf, host)) {
			free(c->host);
			c->host = host;
		} else {
			free(host);
		}
	}
	send_header(c, NULL);
	(void)from;
	/* RFC 6120 4.8.1: the content namespace must be jabber:client. */
	if (ns == NULL || strcmp(ns, NS_CLIENT) != 0) {
		c2s_stream_error(c, "invalid-namespace", NULL);
		return;
	}
	/* 4.7.5: we speak 1.0; a missing or lower major version is refused. */
	if (version == NULL || strtol(version, NULL, 10) < 1) {
		c2s_stream_error(c, "unsupported-version", NULL);
		return;
	}
	/* 4.9.3.6: a domain we do not serve (also after a restart: the
	 * client must keep asking for the same host). */
	if (to == NULL || c->host == NULL) {
		c2s_stream_error(c, "host-unknown", NULL);
		return;
	}

	features = xml_elem_new(XML_NS_STREAM, "features");
	if (!c->tls) {
		xml_elem *st = xml_elem_add_child(features, NS_TLS, "starttls");

		if (c->l->starttls_required)
			(void)xml_elem_add_child(st, NS_TLS, "required");
		else
			sasl_add_features(features, NULL, 0);
	} else if (!c->authenticated) {
		sasl_add_features(features, c->ssl, c->conf->allow_plain);
	} else {
		xml_elem *s;

		(void)xml_elem_add_child(features, NS_BIND, "bind");
		/* RFC 3921 3 session establishment, kept as an optional
		 * no-op for old clients (draft-cridland-xmpp-session). */
		s = xml_elem_add_child(features, NS_SESSION, "session");
		(void)xml_elem_add_child(s, NS_SESSION, "optional");
	}
	/* Module features: the registered ones (before authentication only
	 * on an encrypted stream), then the fold hook. */
	if (c->authenticated || c->tls)
		registry_stream_features(features, c->authenticated);
	if (hooks_any(XMPPD_HOOK_C2S_STREAM_FEATURES)) {
		struct xmppd_features_args fa = { features, c->host, c->tls, c->authenticated };

		(void)hooks_run(XMPPD_HOOK_C2S_STREAM_FEATURES, c->host, &fa);
	}
	/* The features element is written with the stream prefix. */
	{
		struct evbuffer *out = c2s_out(c);
		xml_elem *child;

		evbuffer_add_printf(out, "<stream:features>");
		for (child = xml_first_child(features); child != NULL;
		    child = xml_next_sibling(child))
			xml_serialize(child, NS_CLIENT, out);
		evbuffer_add_printf(out, "</stream:features>");
	}
	xml_elem_unref(features);
}

static void
on_stream_end(void *ud)
{
	struct c2s *c = ud;

	/* RFC 6120 4.4: answer the closing tag with ours and close. */
	if (!c->s.closing) {
		c2s_writes(c, "</stream:stream>");
		c2s_close(c);
	}
}

static void
on_stream_error(void *ud, const char *condition, const char *text)
{
	c2s_stream_error(ud, condition, text);
}

static void
sasl_failure(struct c2s *c, const char *condition)
{
	struct timeval tv;

	sasl_end(&c->sasl);
	c->auth_failures++;
	log_info(c->tag, "authentication failed (%s) from %s", condition, c->s.addr);
	/* A delay before the answer slows password guessing; the stream
	 * reads nothing meanwhile. */
	c->delayed_failure = condition;
	c->paused = 1;
	bufferevent_disable(c->bev, EV_READ);
	tv.tv_sec = c->conf->auth_failure_delay_ms / 1000;
	tv.tv_usec = (c->conf->auth_failure_delay_ms % 1000) * 1000;
	evtimer_del(c->timer);
	evtimer_add(c->timer, &tv);
}

static void
sasl_exchange(struct c2s *c, const char *in)
{
	const char *cond = NULL;
	char *out = NULL;
	struct evbuffer *ob = c2s_out(c);

	switch (sasl_step(c->sasl, in, &out, &cond)) {
	case SASL_CONTINUE:
		/* RFC 6120 6.4.2: an empty challenge is "=". */
		evbuffer_add_printf(ob, "<challenge xmlns='" NS_SASL "'>%s</challenge>",
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
		log_info(c->tag, "%s@%s authenticated with %s from %s", c->node, c->host,
		    sasl_mechanism(c->sasl), c->s.addr);
		/* 6.4.6: additional data with success (SCRAM's v=...). */
		if (*out)
			evbuffer_add_printf(ob, "<success xmlns='" NS_SASL "'>%s</success>", out);
		else
			evbuffer_add_printf(ob, "<success xmlns='" NS_SASL "'/>");
		sasl_end(&c->sasl);
		/* 6.4.6: the client opens a new stream over the same TLS. */
		c->header_sent = 0;
		xml_stream_restart(c->xs);
		break;
	case SASL_FAILURE:
		sasl_failure(c, cond);
		break;
	}
	free(out);
}

static void
handle_sasl(struct c2s *c, xml_elem *e)
{
	const char *name = xml_elem_name(e);
	const char *cond;

	if (strcmp(name, "auth") == 0) {
		const char *mech = xml_attr_get(e, "mechanism");

		if (c->sasl != NULL)
			sasl_end(&c->sasl);
		/* STARTTLS is mandatory-to-negotiate here: nothing but it
		 * is accepted first (RFC 6120 5.3.1). */
		if (!c->tls && c->l->starttls_required) {
			c2s_writes(c, "<failure xmlns='" NS_SASL "'><encryption-required/></failure>");
			return;
		}
		if (mech == NULL) {
			sasl_failure(c, "invalid-mechanism");
			return;
		}
		c->sasl = sasl_start(mech, c->host, c->tls ? c->ssl : NULL,
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

static void
reply_iq_error(struct c2s *c, xml_elem *iq, const char *condition)
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
static void
handle_bind(struct c2s *c, xml_elem *iq, xml_elem *bind)
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
		reply_iq_error(c, iq, "bad-request");
		return;
	}
	session_bind(&c->s);
	evtimer_del(c->timer);
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
		sm_presence_to_own_resources(p, &c->s.jid, c->s.sid, !was);
		/* RFC 6121 4.2.2, 4.4.2: including the resource that sent it. */
		c2s_send(c, p);
	} else if (strcmp(type, "unavailable") == 0) {
		c->s.available = 0;
		sm_set_presence(&c->s.jid, c->s.sid, 0, 0, NULL);
		if (was) {
			sm_presence_to_own_resources(p, &c->s.jid, c->s.sid, 0);
			c2s_send(c, p);     /* RFC 6121 4.5.2 */
		}
	}
	/* Other types without 'to' have no meaning and are dropped. */
}

static void
handle_stanza(struct c2s *c, xml_elem *st)
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
			xml_elem *r2 = stanza_error_reply(st, "jid-malformed", NULL);

			if (r2 != NULL) {
				xml_attr_set(r2, "from", NULL);
				c2s_send(c, r2);
				xml_elem_unref(r2);
			}
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
			reply_iq_error(c, st, "bad-request");
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
		/* 8.3.3.8. */
		xml_elem *r = stanza_error_reply(st, "jid-malformed", NULL);

		if (r != NULL) {
			xml_attr_set(r, "from", NULL);
			c2s_send(c, r);
			xml_elem_unref(r);
		}
		return;
	}
	if (kind == STANZA_IQ && jto.node == NULL && jto.resource == NULL &&
	    strcmp(jto.domain, c->host) == 0 && strcmp(type, "set") == 0 &&
	    xml_child(st, NS_SESSION, "session") != NULL) {
		/* The legacy session IQ: nothing to establish any more, but
		 * old clients and tsung wait for the result. */
		xml_elem *r = stanza_iq_result(st);

		c2s_send(c, r);
		xml_elem_unref(r);
		jid_free(&jto);
		return;
	}
	if (kind == STANZA_IQ && to == NULL && strcmp(type, "set") == 0 &&
	    xml_child(st, NS_SESSION, "session") != NULL) {
		xml_elem *r = stanza_iq_result(st);

		xml_attr_set(r, "from", NULL);
		c2s_send(c, r);
		xml_elem_unref(r);
		jid_free(&jto);
		return;
	}
	router_route(st, &c->s.jid, &jto);
	jid_free(&jto);
}

static int
handle_preauth_iq(struct c2s *c, xml_elem *iq)
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

static void
on_element(void *ud, xml_elem *e)
{
	struct c2s *c = ud;
	const char *ns = xml_elem_ns(e);
	/* Store work the handlers start counts against this stream. */
	struct hold *prev = hold_enter(c->hold);

	if (c->s.closing)
		goto out;
	if (!c->tls && ns != NULL && strcmp(ns, NS_TLS) == 0 &&
	    strcmp(xml_elem_name(e), "starttls") == 0 && !c->authenticated) {
		/* RFC 6120 5.4.2.3: proceed, then TLS on the next byte. */
		c2s_writes(c, "<proceed xmlns='" NS_TLS "'/>");
		c->starttls_pending = 1;
		xml_stream_restart(c->xs);
		goto out;
	}
	if (!c->authenticated) {
		if (ns != NULL && strcmp(ns, NS_SASL) == 0) {
			handle_sasl(c, e);
			goto out;
		}
		/* IQs a module handles before authentication (XEP-0077), once
		 * the stream is encrypted. */
		if (c->tls && stanza_kind(e) == STANZA_IQ && c->sasl == NULL &&
		    handle_preauth_iq(c, e))
			goto out;
		/* 4.9.3.12: nothing else before authentication. */
		c2s_stream_error(c, "not-authorized", NULL);
		goto out;
	}
	if (!c->s.bound) {
		xml_elem *bind;
		const char *type = xml_attr_get(e, "type");

		if (stanza_kind(e) == STANZA_IQ && type != NULL && strcmp(type, "set") == 0 &&
		    (bind = xml_child(e, NS_BIND, "bind")) != NULL) {
			handle_bind(c, e, bind);
			goto out;
		}
		if (stanza_kind(e) == STANZA_IQ) {
			/* RFC 6120 7.1: nothing to route before binding. */
			reply_iq_error(c, e, "not-authorized");
			goto out;
		}
		c2s_stream_error(c, "not-authorized", "bind a resource first");
		goto out;
	}
	handle_stanza(c, e);
out:
	hold_leave(prev);
	/* RFC 6120 10.1: the next stanza waits until this one's store work
	 * has completed (a roster set, then presence). */
	if (hold_busy(c->hold))
		xml_stream_pause(c->xs);
	xml_elem_unref(e);
}

/* ---------------------------------------------------------------- */
/* Shutdown.                                                          */

static void
shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct c2s_worker *cw = arg;

	/* Peers that do not read their last bytes are not waited for. */
	while (cw->list != NULL)
		c2s_free(cw->list);
	event_base_loopexit(worker_base(worker_get((unsigned)(cw - cworkers))), NULL);
}

static void
shutdown_task(struct worker *w, void *a, uint64_t b)
{
	struct c2s_worker *cw = &cworkers[worker_id(w)];
	struct timeval tv = { C2S_SHUTDOWN_MAX_MS / 1000, (C2S_SHUTDOWN_MAX_MS % 1000) * 1000 };
	struct c2s *c, *next;

	cw->shutting_down = 1;
	for (c = cw->list; c != NULL; c = next) {
		next = c->next;
		c2s_stream_error(c, "system-shutdown", NULL);
	}
	if (cw->count == 0) {
		event_base_loopexit(worker_base(w), NULL);
		return;
	}
	cw->shutdown_timer = evtimer_new(worker_base(w), shutdown_timeout_cb, cw);
	evtimer_add(cw->shutdown_timer, &tv);
}

void
c2s_shutdown_all(void)
{
	worker_post_all(shutdown_task, NULL, 0);
}

unsigned long
c2s_connection_count(void)
{
	return __atomic_load_n(&nconnections, __ATOMIC_RELAXED);
}

void
c2s_free_all(void)
{
	for (unsigned i = 0; i < ncworkers; i++) {
		if (cworkers[i].shutdown_timer != NULL)
			event_free(cworkers[i].shutdown_timer);
		if (cworkers[i].idle_timer != NULL)
			event_free(cworkers[i].idle_timer);
		if (cworkers[i].flush_ev != NULL)
			event_free(cworkers[i].flush_ev);
	}
	free(cworkers);
	cworkers = NULL;
}
