/*
 * s2s.c - the stream machinery shared by incoming, outgoing and verify
 * streams: the per-worker registry, output, stream errors, STARTTLS,
 * lingering close, idle timeout and keepalive, shutdown and the listing
 * for `xmppctl s2s`. The protocol lives in s2s_in.c and s2s_out.c.
 */
#include "config.h"

#include <errno.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/rand.h>

#include "core/acl.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/hold.h"
#include "core/log.h"
#include "core/placement.h"
#include "core/worker.h"
#include "net/listener.h"
#include "net/tls.h"
#include "router/router.h"
#include "s2s/s2s.h"
#include "s2s/s2s_int.h"
#include "xmpp/ns.h"

#define S2S_SHUTDOWN_MAX_MS 2000

static struct s2s_worker *sworkers;
static unsigned nsworkers;
static unsigned long nconns;                /* atomic */

/* Every connection, for xmppctl s2s (main thread) to walk. */
static pthread_mutex_t glock = PTHREAD_MUTEX_INITIALIZER;
static struct s2s_conn *glist;

static void read_cb(struct bufferevent *bev, void *arg);
static void resume_cb(void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void tick_cb(evutil_socket_t fd, short what, void *arg);
static void on_stream_start(void *ud, const char *ns, const char **attrs);
static void on_element(void *ud, xml_elem *e);
static void on_stream_end(void *ud);
static void on_stream_error(void *ud, const char *condition, const char *text);

static const struct xml_stream_cb stream_cb = {
	on_stream_start, on_element, on_stream_end, on_stream_error,
};

int
s2s_init(unsigned nworkers)
{
	sworkers = calloc(nworkers, sizeof(*sworkers));
	if (sworkers == NULL)
		return -1;
	nsworkers = nworkers;
	listener_set_handler(CONF_LISTEN_S2S, s2s_accept);
	router_set_remote(s2s_route);
	for (unsigned i = 0; i < nworkers; i++) {
		sworkers[i].id = i;
		sworkers[i].next_id = ((uint64_t)i << 56) + 1;
	}
	dialback_init();
	return 0;
}

struct s2s_worker *
s2s_worker_of(struct worker *w)
{
	return &sworkers[worker_id(w)];
}

/* Created on the worker's thread the first time it resolves: an evdns
 * base is not shared between threads (it is not thread-safe without
 * locking, and each worker has its own event base). */
struct evdns_base *
s2s_dns(struct s2s_worker *sw, const struct conf *conf)
{
	const char *rc = conf->s2s_resolv_conf != NULL ? conf->s2s_resolv_conf :
	    "/etc/resolv.conf";
	int r;

	if (sw->dns != NULL)
		return sw->dns;
	sw->dns = evdns_base_new(worker_base(worker_get(sw->id)),
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (sw->dns == NULL)
		return NULL;
	/* Nameservers from the file (none is no default 127.0.0.1: an
	 * s2s_hosts-only set-up makes no DNS traffic); /etc/hosts is
	 * honoured by evdns_getaddrinfo. */
	r = evdns_base_resolv_conf_parse(sw->dns,
	    DNS_OPTIONS_ALL | DNS_OPTION_NAMESERVERS_NO_DEFAULT, rc);
	if (r != 0)
		log_warning("s2s", "%s: cannot read the nameservers (evdns error %d)", rc, r);
	(void)evdns_base_load_hosts(sw->dns, NULL);
	(void)evdns_base_set_option(sw->dns, "timeout:", "3");
	(void)evdns_base_set_option(sw->dns, "attempts:", "2");
	return sw->dns;
}

int
s2s_is_local_domain(const struct conf *c, const char *domain)
{
	size_t dl;

	if (domain == NULL)
		return 0;
	if (conf_is_local_host(c, domain))
		return 1;
	dl = strlen(domain);
	for (size_t i = 0; i < c->nhosts; i++) {
		size_t hl = strlen(c->hosts[i]);

		if (dl > hl + 1 && domain[dl - hl - 1] == '.' &&
		    strcmp(domain + dl - hl, c->hosts[i]) == 0)
			return 1;
	}
	return 0;
}

/* s2s_access, evaluated with the remote domain as a server JID. */
int
s2s_remote_allowed(const struct conf *c, const char *domain, const struct sockaddr *sa)
{
	const char *err;
	jid j;
	int ok;

	if (c->s2s_access == NULL)
		return 1;
	if (jid_make(&j, NULL, domain, NULL, &err) < 0)
		return 0;
	ok = access_check(c, c->s2s_access, &j, sa);
	jid_free(&j);
	return ok;
}

/* ---------------------------------------------------------------- */
/* Registry.                                                          */

struct s2s_conn *
s2s_conn_new(struct worker *w, enum s2s_kind kind)
{
	struct s2s_worker *sw = s2s_worker_of(w);
	struct event_base *base = worker_base(w);
	struct s2s_conn *c = calloc(1, sizeof(*c));
	static const char *const kinds[] = { "in", "out", "verify" };

	if (c == NULL)
		return NULL;
	c->w = w;
	c->sw = sw;
	c->kind = kind;
	c->id = sw->next_id++;
	c->conf = conf_current();
	c->timer = evtimer_new(base, timer_cb, c);
	c->tick = event_new(base, -1, EV_PERSIST, tick_cb, c);
	c->hold = hold_new(resume_cb, c);
	c->last_stanza_ms = c->last_io_ms = clock_now_ms();
	snprintf(c->tag, sizeof(c->tag), "s2s-%s#%u.%llu", kinds[kind], sw->id,
	    (unsigned long long)(c->id & 0xffffffffffffffULL));
	c->next = sw->list;
	if (sw->list != NULL)
		sw->list->prev = c;
	sw->list = c;
	sw->count++;
	pthread_mutex_lock(&glock);
	c->gnext = glist;
	if (glist != NULL)
		glist->gprev = c;
	glist = c;
	pthread_mutex_unlock(&glock);
	__atomic_add_fetch(&nconns, 1, __ATOMIC_RELAXED);
	return c;
}

struct s2s_conn *
s2s_find(struct s2s_worker *sw, uint64_t id)
{
	for (struct s2s_conn *c = sw->list; c != NULL; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

/* Starts reading and writing on bev with the stream parser. */
void
s2s_attach(struct s2s_conn *c, struct bufferevent *bev)
{
	struct xml_stream_limits lim;
	unsigned p;

	c->bev = bev;
	lim.max_stanza_size = 524288;   /* RFC 6120 13.12: at least 10000 */
	lim.max_depth = c->conf->max_xml_depth;
	lim.max_attrs = c->conf->max_xml_attrs;
	if (c->xs == NULL)
		c->xs = xml_stream_new(&stream_cb, c, &lim);
	bufferevent_setcb(bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	/* The tick: often enough for the shortest of the idle timeout, the
	 * keepalive interval and its timeout. */
	p = c->conf->s2s_keepalive_timeout;
	if (c->conf->s2s_keepalive > 0 && c->conf->s2s_keepalive < p)
		p = c->conf->s2s_keepalive;
	if (c->conf->s2s_idle_timeout > 0 && c->conf->s2s_idle_timeout < p)
		p = c->conf->s2s_idle_timeout;
	{
		struct timeval tv = { p > 1 ? p / 2 : 0, p > 1 ? 0 : 500000 };

		event_add(c->tick, &tv);
	}
}

void
s2s_set_deadline(struct s2s_conn *c, unsigned seconds)
{
	struct timeval tv = { seconds, 0 };

	evtimer_del(c->timer);
	evtimer_add(c->timer, &tv);
}

void
s2s_glock(void)
{
	pthread_mutex_lock(&glock);
}

void
s2s_gunlock(void)
{
	pthread_mutex_unlock(&glock);
}

/* What xmppctl shows: copied under the lock, since it reads from the main
 * thread. */
void
s2s_update_listing(struct s2s_conn *c)
{
	pthread_mutex_lock(&glock);
	if (c->ssl != NULL && c->tls)
		snprintf(c->tlsver, sizeof(c->tlsver), "%s", tls_version(c->ssl));
	pthread_mutex_unlock(&glock);
}

/* ---------------------------------------------------------------- */
/* Output.                                                            */

void
s2s_write(struct s2s_conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->bev == NULL)
		return;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
	c->last_io_ms = clock_now_ms();
}

void
s2s_write_escaped(struct s2s_conn *c, const char *s)
{
	xml_escape_attr(bufferevent_get_output(c->bev), s);
}

static size_t
pending_output(struct s2s_conn *c)
{
	struct bufferevent *u = bufferevent_get_underlying(c->bev);
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));

	if (u != NULL)
		n += evbuffer_get_length(bufferevent_get_output(u));
	return n;
}

void
s2s_send_stanza(struct s2s_conn *c, xml_elem *st)
{
	if (c->closing)
		return;
	/* NULL-namespace elements are written unqualified: jabber:server
	 * here (xml.h). */
	xml_serialize(st, NS_SERVER, bufferevent_get_output(c->bev));
	__atomic_add_fetch(&c->n_out, 1, __ATOMIC_RELAXED);
	c->last_stanza_ms = c->last_io_ms = clock_now_ms();
	if (pending_output(c) > c->conf->max_send_queue)
		s2s_stream_error(c, "resource-constraint", "send queue full");
}

void
s2s_new_stream_id(struct s2s_conn *c)
{
	unsigned char r[12];
	static const char digits[] = "0123456789abcdef";

	RAND_bytes(r, sizeof(r));
	for (int i = 0; i < 12; i++) {
		c->stream_id[2 * i] = digits[r[i] >> 4];
		c->stream_id[2 * i + 1] = digits[r[i] & 15];
	}
	c->stream_id[24] = '\0';
}

/* RFC 6120 4.7; the dialback prefix is declared on every stream
 * (XEP-0220 2.1.2). An incoming stream's header carries our id. */
void
s2s_send_header(struct s2s_conn *c, const char *from, const char *to)
{
	s2s_write(c, "<?xml version='1.0'?><stream:stream xmlns='" NS_SERVER
	    "' xmlns:stream='" XML_NS_STREAM "' xmlns:db='" NS_DIALBACK "'");
	if (c->kind == S2S_IN)
		s2s_write(c, " id='%s'", c->stream_id);
	if (from != NULL) {
		s2s_write(c, " from='");
		s2s_write_escaped(c, from);
		s2s_write(c, "'");
	}
	if (to != NULL) {
		s2s_write(c, " to='");
		s2s_write_escaped(c, to);
		s2s_write(c, "'");
	}
	s2s_write(c, " version='1.0'>");
	c->header_sent = 1;
}

/* RFC 6120 4.9: the error, the end of the stream, then close. */
void
s2s_stream_error(struct s2s_conn *c, const char *condition, const char *text)
{
	if (c->closing)
		return;
	if (c->bev != NULL && (c->kind == S2S_IN || c->connected)) {
		if (!c->header_sent) {
			if (c->kind == S2S_IN && c->stream_id[0] == '\0')
				s2s_new_stream_id(c);
			s2s_send_header(c, c->local, NULL);   /* 4.9.1.2 */
		}
		s2s_write(c, "<stream:error><%s xmlns='" NS_STREAMS "'/>", condition);
		if (text != NULL) {
			s2s_write(c, "<text xmlns='" NS_STREAMS "'>");
			s2s_write_escaped(c, text);
			s2s_write(c, "</text>");
		}
		s2s_write(c, "</stream:error></stream:stream>");
	}
	log_info(c->tag, "stream error <%s/>%s%s", condition, text ? ": " : "",
	    text ? text : "");
	s2s_close(c);
}

/* ---------------------------------------------------------------- */
/* Closing: as c2s.c, a lingering close (our last bytes reach the peer).  */

void
s2s_close(struct s2s_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->kind == S2S_OUT)
		s2s_out_closed(c);
	event_del(c->tick);
	/* A lingering close (net/linger.h); a link that never connected has
	 * nothing to say goodbye on and is freed from the timer at once. */
	linger_start(&c->linger, c->bev != NULL && (c->kind == S2S_IN || c->connected) ?
	    c->bev : NULL, c->timer, write_cb, event_cb, c);
}

void
s2s_free(struct s2s_conn *c)
{
	struct s2s_worker *sw = c->sw;

	if (c->kind == S2S_OUT)
		s2s_out_closed(c);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		sw->list = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	sw->count--;
	pthread_mutex_lock(&glock);
	if (c->gprev != NULL)
		c->gprev->gnext = c->gnext;
	else
		glist = c->gnext;
	if (c->gnext != NULL)
		c->gnext->gprev = c->gprev;
	pthread_mutex_unlock(&glock);
	if (c->counted_ip)
		ipcount_dec((struct sockaddr *)&c->sa);
	event_free(c->timer);
	event_free(c->tick);
	hold_detach(c->hold);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	else if (c->ssl != NULL)
		SSL_free(c->ssl);
	xml_stream_free(&c->xs);
	for (size_t i = 0; i < c->npairs; i++) {
		free(c->pairs[i].local);
		free(c->pairs[i].remote);
	}
	free(c->pairs);
	for (size_t i = 0; i < c->qlen; i++)
		xml_elem_unref(c->queue[i]);
	free(c->queue);
	for (size_t i = 0; i < c->nvreq; i++) {
		free(c->vreq[i].id);
		free(c->vreq[i].key);
	}
	free(c->vreq);
	s2s_targets_free(c->targets, c->ntargets);
	if (c->addrs != NULL)
		evutil_freeaddrinfo(c->addrs);
	free(c->local);
	free(c->remote);
	conf_unref(c->conf);
	log_debug(c->tag, "closed");
	free(c);
	__atomic_sub_fetch(&nconns, 1, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- */
/* Events.                                                            */

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct s2s_conn *c = arg;

	if (c->closing)
		linger_check(&c->linger, c->bev, c->timer);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct s2s_conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (c->tls)
			log_debug(c->tag, "TLS established: %s", tls_version(c->ssl));
		if (c->kind != S2S_IN && !c->connected && !c->closing) {
			c->connected = 1;
			s2s_out_connected(c);
		}
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		const char *why = (what & BEV_EVENT_ERROR) ?
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()) : "closed by peer";

		if (c->kind != S2S_IN && !c->connected && !c->closing) {
			/* The next address or target. */
			s2s_out_conn_failed(c, why);
			return;
		}
		/* What the peer sent before it closed is still handled, in
		 * order, once the stanza it waits for is done (resume_cb). */
		if ((what & BEV_EVENT_EOF) && !c->closing && hold_busy(c->hold) &&
		    evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
			c->peer_eof = 1;
			return;
		}
		log_debug(c->tag, "connection %s", why);
		if (!c->closing && c->kind != S2S_IN && c->state != ST_ESTABLISHED)
			s2s_out_fail(c, "remote-server-not-found", why);
		s2s_free(c);
	}
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct s2s_conn *c = arg;

	if (c->closing) {
		if (linger_timer(&c->linger, c->bev, c->timer))
			s2s_free(c);
		return;
	}
	/* The negotiation deadline. */
	if (c->kind == S2S_IN) {
		if (c->npairs == 0)
			s2s_stream_error(c, "connection-timeout", "negotiation took too long");
		return;
	}
	if (c->state != ST_ESTABLISHED) {
		s2s_out_fail(c, "remote-server-timeout", "timed out");
		if (c->connected)
			s2s_stream_error(c, "connection-timeout", NULL);
		else
			s2s_close(c);
	}
}

/*
 * Idle links close (and reopen on demand); a link that has been quiet for
 * s2s_keepalive gets a whitespace ping (RFC 6120 4.6.1), and if the ping
 * has not left our send queue (kernel's included: unacknowledged bytes)
 * s2s_keepalive_timeout later, the peer is gone.
 */
static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct s2s_conn *c = arg;
	const struct conf *k = c->conf;
	uint64_t now = clock_now_ms();

	if (c->closing || c->bev == NULL || c->state != ST_ESTABLISHED)
		return;
	if (c->ka_sent) {
		int unacked = 0, sfd = bufferevent_getfd(c->bev);

		if (sfd >= 0)
			(void)ioctl(sfd, SIOCOUTQ, &unacked);
		if (pending_output(c) == 0 && unacked == 0) {
			c->ka_sent = 0;
		} else if (now - c->ka_sent_ms >= (uint64_t)k->s2s_keepalive_timeout * 1000) {
			log_info(c->tag, "peer %s does not acknowledge: closing", c->addr);
			if (c->kind == S2S_OUT)
				s2s_out_closed(c);
			s2s_free(c);
			return;
		}
	}
	/* The initiating side closes an idle link; the receiving side
	 * waits twice as long, so that a stanza the initiating side sends
	 * as the receiving side closes is not lost (streams are
	 * unidirectional, RFC 6120 4.5: only the initiator sends). */
	if (k->s2s_idle_timeout > 0 && now - c->last_stanza_ms >=
	    (uint64_t)k->s2s_idle_timeout * (c->kind == S2S_IN ? 2000 : 1000)) {
		log_info(c->tag, "idle for %u s: closing", k->s2s_idle_timeout);
		s2s_write(c, "</stream:stream>");
		s2s_close(c);
		return;
	}
	if (k->s2s_keepalive > 0 && !c->ka_sent &&
	    now - c->last_io_ms >= (uint64_t)k->s2s_keepalive * 1000) {
		s2s_write(c, " ");
		c->ka_sent = 1;
		c->ka_sent_ms = now;
	}
}

/*
 * STARTTLS (RFC 6120 5.4), on either side: after <proceed/> the next
 * bytes from the peer must be its first TLS record (ClientHello, or our
 * ClientHello's answer); whitespace before it is skipped and anything
 * else ends the connection unread (net/tls.h: the STARTTLS injection
 * class, CVE-2011-0411). Until the record shows, the gate sits between
 * the plain bufferevent and the TLS filter: it wraps the filter's
 * callbacks on the plain bufferevent and hands over at the first record.
 */

/* Not TLS after <proceed/>: closed without a word, as a failed
 * handshake is (RFC 6120 5.4.3.2). Frees c. */
static void
refuse_tls(struct s2s_conn *c, struct bufferevent *plain)
{
	struct evbuffer *in = bufferevent_get_input(plain);

	evbuffer_drain(in, evbuffer_get_length(in));
	log_info(c->tag, "STARTTLS: not a TLS record after <proceed/>: closing");
	if (!c->closing && c->kind != S2S_IN && c->state != ST_ESTABLISHED)
		s2s_out_fail(c, "remote-server-not-found", "not TLS after <proceed/>");
	s2s_free(c);
}

static void
gate_read_cb(struct bufferevent *plain, void *arg)
{
	struct s2s_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(plain);
	bufferevent_data_cb filter_read = c->gate_read;
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
		bufferevent_setcb(plain, c->gate_read, c->gate_write, c->gate_event, c->gate_arg);
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
	struct s2s_conn *c = arg;

	if (c->gate_write != NULL)
		c->gate_write(plain, c->gate_arg);
}

static void
gate_event_cb(struct bufferevent *plain, short what, void *arg)
{
	struct s2s_conn *c = arg;

	if (c->gate_event != NULL)
		c->gate_event(plain, what, c->gate_arg);
}

/* Puts TLS over the plain socket after <proceed/> (RFC 6120 5.4.3); the
 * initiating side opens the new stream over it (5.4.3.3). May free c. */
void
s2s_start_tls(struct s2s_conn *c)
{
	int client = c->kind != S2S_IN;
	struct bufferevent *plain = c->bev, *filter;
	enum tls_gate first;

	c->starttls_pending = 0;
	first = tls_gate_buffer(bufferevent_get_input(plain));
	if (first == TLS_GATE_REFUSE) {
		refuse_tls(c, plain);
		return;
	}
	c->ssl = client ? tls_new_client(c->local, c->remote, NULL) : tls_new_s2s_server(NULL);
	if (c->ssl == NULL) {
		s2s_stream_error(c, "internal-server-error", "no TLS context");
		return;
	}
	filter = bufferevent_openssl_filter_new(worker_base(c->w), plain, c->ssl,
	    client ? BUFFEREVENT_SSL_CONNECTING : BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (filter == NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
		s2s_stream_error(c, "internal-server-error", NULL);
		return;
	}
	if (first == TLS_GATE_WAIT) {
		/* No record yet (whitespace, if any, is dropped): the gate
		 * looks at the peer's bytes before the filter does. */
		bufferevent_getcb(plain, &c->gate_read, &c->gate_write, &c->gate_event,
		    &c->gate_arg);
		bufferevent_setcb(plain, gate_read_cb, gate_write_cb, gate_event_cb, c);
	}
	c->bev = filter;
	c->tls = 1;
	c->header_sent = 0;
	if (client)
		s2s_send_header(c, c->local, c->remote);
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	/* Last: the handshake runs on a buffered record in here, and a
	 * broken one frees c (event_cb). */
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct s2s_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(c->bev);

	c->last_io_ms = clock_now_ms();
	/* RFC 6120 10.1: the stream's next stanza waits for the store work
	 * of the last one (resume_cb goes on). */
	if (hold_busy(c->hold) && !c->held_off && !c->closing) {
		c->held_off = 1;
		bufferevent_disable(c->bev, EV_READ);
	}
	while (!c->closing && !hold_busy(c->hold) && evbuffer_get_length(in) > 0) {
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
			if (!c->closing)
				s2s_close(c);
			break;
		}
		if (c->starttls_pending) {
			s2s_start_tls(c);
			return;
		}
	}
}

static void
resume_cb(void *arg)
{
	struct s2s_conn *c = arg;

	if (c->peer_eof) {
		read_cb(c->bev, c);
		if (!hold_busy(c->hold)) {
			if (!c->closing && c->kind != S2S_IN && c->state != ST_ESTABLISHED)
				s2s_out_fail(c, "remote-server-not-found", "closed by peer");
			s2s_free(c);
		}
		return;
	}
	if (c->closing || c->bev == NULL)
		return;
	if (c->held_off) {
		c->held_off = 0;
		bufferevent_enable(c->bev, EV_READ);
	}
	read_cb(c->bev, c);
}

static void
on_stream_start(void *ud, const char *ns, const char **attrs)
{
	struct s2s_conn *c = ud;

	if (c->kind == S2S_IN)
		s2s_in_stream_start(c, ns, attrs);
	else
		s2s_out_stream_start(c, ns, attrs);
}

static void
on_element(void *ud, xml_elem *e)
{
	struct s2s_conn *c = ud;
	const char *ns = xml_elem_ns(e);
	struct hold *prev = hold_enter(c->hold);

	if (c->closing)
		goto out;
	if (ns != NULL && strcmp(ns, XML_NS_STREAM) == 0 &&
	    strcmp(xml_elem_name(e), "error") == 0) {
		xml_elem *cond = xml_first_child(e);

		log_info(c->tag, "peer sent stream error <%s/>",
		    cond != NULL ? xml_elem_name(cond) : "?");
		if (c->kind != S2S_IN && c->state != ST_ESTABLISHED)
			s2s_out_fail(c, "remote-server-not-found", "stream error");
		s2s_close(c);
		goto out;
	}
	if (c->kind == S2S_IN)
		s2s_in_element(c, e);
	else
		s2s_out_element(c, e);
out:
	hold_leave(prev);
	if (hold_busy(c->hold))
		xml_stream_pause(c->xs);
	xml_elem_unref(e);
}

static void
on_stream_end(void *ud)
{
	struct s2s_conn *c = ud;

	/* RFC 6120 4.4: answer the closing tag with ours and close. */
	if (!c->closing) {
		if (c->kind != S2S_IN && c->state != ST_ESTABLISHED)
			s2s_out_fail(c, "remote-server-not-found", "stream closed");
		s2s_write(c, "</stream:stream>");
		s2s_close(c);
	}
}

static void
on_stream_error(void *ud, const char *condition, const char *text)
{
	struct s2s_conn *c = ud;

	if (c->kind != S2S_IN && c->state != ST_ESTABLISHED)
		s2s_out_fail(c, "remote-server-not-found", text);
	s2s_stream_error(c, condition, text);
}

/* ---------------------------------------------------------------- */
/* Entry points.                                                      */

void
s2s_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conf_listen *l)
{
	struct s2s_worker *sw = s2s_worker_of(w);
	struct bufferevent *bev;
	struct s2s_conn *c;
	unsigned n;

	if (sw->shutting_down || (c = s2s_conn_new(w, S2S_IN)) == NULL) {
		close(fd);
		return;
	}
	memcpy(&c->sa, sa, salen < sizeof(c->sa) ? salen : sizeof(c->sa));
	sockaddr_format(sa, c->addr, sizeof(c->addr));
	evutil_make_socket_nonblocking(fd);
	if (l->tls) {
		/* XEP-0368: TLS from the first byte, ALPN "xmpp-server". */
		c->ssl = tls_new_s2s_server("xmpp-server");
		if (c->ssl == NULL) {
			log_error(c->tag, "direct TLS listener but no certificate");
			close(fd);
			s2s_free(c);
			return;
		}
		bev = bufferevent_openssl_socket_new(worker_base(w), fd, c->ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		c->tls = 1;
	} else {
		bev = bufferevent_socket_new(worker_base(w), fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (bev == NULL) {
		close(fd);
		s2s_free(c);
		return;
	}
	c->state = ST_NEGOTIATING;
	s2s_attach(c, bev);
	log_debug(c->tag, "connection from %s%s", c->addr, l->tls ? " (direct TLS)" : "");
	n = ipcount_inc(sa);
	c->counted_ip = 1;
	if (c->conf->max_connections_per_ip > 0 && n > c->conf->max_connections_per_ip) {
		s2s_stream_error(c, "policy-violation", "too many connections from your address");
		return;
	}
	s2s_set_deadline(c, c->conf->negotiation_timeout);
}

struct route_task {
	xml_elem *st;
	char *local, *remote;
};

static void
route_task(struct worker *w, void *a, uint64_t b)
{
	struct route_task *t = a;

	s2s_out_route(w, t->st, t->local, t->remote);
	xml_elem_unref(t->st);
	free(t->local);
	free(t->remote);
	free(t);
}

void
s2s_route(xml_elem *st, const jid *from, const jid *to)
{
	struct route_task *t;
	struct conf *c;
	int ok;

	if (from == NULL || from->domain == NULL) {
		log_info("s2s", "dropped a stanza to %s without a sender", to->domain);
		return;
	}
	c = conf_current();
	ok = s2s_is_local_domain(c, from->domain);
	conf_unref(c);
	if (!ok) {
		/* We only speak for our own domains (RFC 6120 13.1). */
		log_info("s2s", "dropped a stanza from %s to %s: not a local domain",
		    from->domain, to->domain);
		return;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL || (t->local = strdup(from->domain)) == NULL ||
	    (t->remote = strdup(to->domain)) == NULL) {
		if (t != NULL)
			free(t->local);
		free(t);
		return;
	}
	t->st = xml_elem_ref(st);
	/* The link of a pair is an entity of its own (core/placement.h). */
	worker_post(worker_get(placement_of_pair(from->domain, to->domain)), route_task, t, 0);
}

/* ---------------------------------------------------------------- */
/* Listing, shutdown.                                                 */

void
s2s_list(struct evbuffer *out)
{
	static const char *const states[] = { "resolving", "connecting", "negotiating",
	    "established" };

	pthread_mutex_lock(&glock);
	for (struct s2s_conn *c = glist; c != NULL; c = c->gnext) {
		unsigned long in = __atomic_load_n(&c->n_in, __ATOMIC_RELAXED);
		unsigned long o = __atomic_load_n(&c->n_out, __ATOMIC_RELAXED);
		const char *tv = c->tlsver[0] ? c->tlsver : "-";

		if (c->kind == S2S_IN) {
			if (c->npairs == 0)
				evbuffer_add_printf(out, "in\t%s\t%s\t-\t%s\t%lu\t%lu\t%s\t%s\n",
				    c->local ? c->local : "-", c->remote ? c->remote : "-", tv,
				    in, o, c->closing ? "closing" : states[c->state], c->addr);
			for (size_t i = 0; i < c->npairs; i++)
				evbuffer_add_printf(out, "in\t%s\t%s\t%s\t%s\t%lu\t%lu\t%s\t%s\n",
				    c->pairs[i].local, c->pairs[i].remote, c->pairs[i].auth, tv,
				    in, o, c->closing ? "closing" : "established", c->addr);
		} else {
			evbuffer_add_printf(out, "%s\t%s\t%s\t%s\t%s\t%lu\t%lu\t%s\t%s\n",
			    c->kind == S2S_OUT ? "out" : "verify", c->local, c->remote,
			    c->auth ? c->auth : "-", tv, in, o,
			    c->closing ? "closing" : states[c->state],
			    c->addr[0] ? c->addr : "-");
		}
	}
	pthread_mutex_unlock(&glock);
}

unsigned long
s2s_connection_count(void)
{
	return __atomic_load_n(&nconns, __ATOMIC_RELAXED);
}

static void
shutdown_task(struct worker *w, void *a, uint64_t b)
{
	struct s2s_worker *sw = s2s_worker_of(w);
	struct s2s_conn *c, *next;

	sw->shutting_down = 1;
	for (c = sw->list; c != NULL; c = next) {
		next = c->next;
		if (c->kind != S2S_IN && c->state != ST_ESTABLISHED)
			s2s_out_fail(c, "remote-server-not-found", "server shutting down");
		s2s_stream_error(c, "system-shutdown", NULL);
	}
}

void
s2s_shutdown_all(void)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	if (sworkers == NULL)
		return;
	worker_post_all(shutdown_task, NULL, 0);
	/* Streams close after their last bytes went out (lingering close),
	 * before c2s shutdown lets the workers stop. */
	for (int i = 0; i < S2S_SHUTDOWN_MAX_MS / 20 && s2s_connection_count() > 0; i++)
		nanosleep(&ts, NULL);
}

void
s2s_free_all(void)
{
	for (unsigned i = 0; i < nsworkers; i++) {
		struct s2s_worker *sw = &sworkers[i];

		while (sw->list != NULL)
			s2s_free(sw->list);
		s2s_dns_free_all(sw);
		if (sw->dns != NULL)
			evdns_base_free(sw->dns, 1);
		sw->dns = NULL;
	}
	free(sworkers);
	sworkers = NULL;
	nsworkers = 0;
}
