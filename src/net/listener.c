/*
 * listener.c - listening sockets, the PROXY protocol header a
 * proxy_protocol listener reads before its transport has the connection,
 * and the per-IP connection counts.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "core/acl.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"
#include "net/listener.h"
#include "net/proxy.h"

struct pwait;

struct lsock {
	int fd;
	unsigned worker;
	struct conf_listen l;        /* copied: outlives configuration reloads */
	struct listener *lis;
	struct pwait *waiting;       /* proxy_protocol: connections before their header */
};

static void proxy_wait(struct lsock *s, int fd, const struct sockaddr *sa, socklen_t salen);
static void proxy_wait_free_all(struct lsock *s);
static void lsock_name(const struct lsock *s, char *buf, size_t len);

static struct lsock *socks;
static size_t nsocks;
/* What each kind of listener hands its connections to (registered by the
 * transport, nginx's ls->handler). */
static listener_accept_fn handlers[CONF_LISTEN__COUNT];

void
listener_set_handler(enum conf_listen_module kind, listener_accept_fn fn)
{
	if ((unsigned)kind < CONF_LISTEN__COUNT)
		handlers[kind] = fn;
}

void
sockaddr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], host, sizeof(host));
			snprintf(buf, len, "%s:%u", host, ntohs(s6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
			snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
		}
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
	} else {
		snprintf(buf, len, "unknown");
	}
}

static int
bind_one(const struct conf_listen *l, const char **error_r)
{
	static char err[512];
	struct sockaddr_storage ss;
	int len = sizeof(ss), fd, one = 1, zero = 0;
	char spec[300];

	if (strchr(l->ip, ':') != NULL)
		snprintf(spec, sizeof(spec), "[%s]:%u", l->ip, l->port);
	else
		snprintf(spec, sizeof(spec), "%s:%u", l->ip, l->port);
	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &len) < 0) {
		snprintf(err, sizeof(err), "listen: bad address %s", spec);
		*error_r = err;
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (struct sockaddr *)&ss, (socklen_t)len) < 0 || listen(fd, 4096) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, sizeof(err), "listen on %s: %s", spec, strerror(errno));
	*error_r = err;
	if (fd >= 0)
		close(fd);
	return -1;
}

int
listener_bind_all(const struct conf *c, unsigned nworkers, const char **error_r)
{
	socks = calloc(c->nlisten * nworkers, sizeof(*socks));
	if (socks == NULL && c->nlisten > 0) {
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < c->nlisten; i++)
		for (unsigned w = 0; w < nworkers; w++) {
			struct lsock *s = &socks[nsocks];

			s->fd = bind_one(&c->listen[i], error_r);
			if (s->fd < 0)
				return -1;
			s->worker = w;
			s->l = c->listen[i];
			s->l.ip = strdup(c->listen[i].ip);
			s->l.shaper = c->listen[i].shaper ? strdup(c->listen[i].shaper) : NULL;
			/* A component listener's domains and secrets are read
			 * from the running configuration (they follow a
			 * reload; conf_component_find). */
			s->l.components = NULL;
			s->l.ncomponents = 0;
			nsocks++;
		}
	return 0;
}

static void
sock_accept_cb(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct lsock *s = arg;
	listener_accept_fn fn = handlers[s->l.module];

	if (fn == NULL) {
		/* No transport registered for this kind: nothing can speak on
		 * the connection. */
		log_error("listener", "no handler for a %s listener", s->l.ip);
		close(fd);
		return;
	}
	if (s->l.proxy_protocol) {
		/* The header first; the handler gets the client's address. */
		proxy_wait(s, fd, sa, (socklen_t)salen);
		return;
	}
	fn(worker_get(s->worker), fd, sa, (socklen_t)salen, &s->l);
}

int
listener_start_all(void)
{
	for (size_t i = 0; i < nsocks; i++) {
		struct lsock *s = &socks[i];
		char name[320];

		lsock_name(s, name, sizeof(name));
		s->lis = listener_open(worker_base(worker_get(s->worker)), s->fd, sock_accept_cb,
		    s, name);
		if (s->lis == NULL)
			return -1;
	}
	return 0;
}

void
listener_free_all(void)
{
	for (size_t i = 0; i < nsocks; i++) {
		proxy_wait_free_all(&socks[i]);
		if (socks[i].lis != NULL)
			listener_close(&socks[i].lis);
		else if (socks[i].fd >= 0)
			close(socks[i].fd);
		free(socks[i].l.ip);
		free(socks[i].l.shaper);
	}
	free(socks);
	socks = NULL;
	nsocks = 0;
}

/*
 * PROXY protocol (a listener with proxy_protocol; net/proxy.h). The
 * connection's first bytes must be a PROXY header from a trusted proxy,
 * read here before the transport hears of the connection: before TLS on
 * a direct-TLS listener, before the per-IP count (which so counts the
 * client, not the proxy) and before the session's address is set. The
 * header is read without reading past it: each read peeks (MSG_PEEK),
 * proxy_parse says how much of what is there is header, and exactly that
 * much is taken; what follows it stays in the socket for the transport.
 * A connection that is not from a trusted proxy, sends something that is
 * not a header, or none within PROXY_WAIT_MAX_S (or the negotiation
 * timeout, if shorter) is closed without a word: nothing has been said
 * on it yet. Each wait is on the listener's worker, in its list.
 */
#define PROXY_WAIT_MAX_S 10
#define PROXY_REFUSED_LOG_INTERVAL 1    /* s: one line per worker, then a count */

struct pwait {
	struct pwait *prev, *next;
	struct lsock *s;
	int fd;
	struct sockaddr_storage sa;     /* the socket's peer: the proxy */
	socklen_t salen;
	struct event *rev, *timer;
	size_t have;                    /* header bytes taken so far */
	unsigned char buf[PROXY_HEADER_MAX];
};

/* For the log: "c2s 192.0.2.1:5222", "s2s [2001:db8::1]:5269". */
static void
lsock_name(const struct lsock *s, char *buf, size_t len)
{
	const char *kind = s->l.module == CONF_LISTEN_C2S ? "c2s" :
	    s->l.module == CONF_LISTEN_HTTP ? "http" :
	    s->l.module == CONF_LISTEN_COMPONENT ? "component" : "s2s";

	if (strchr(s->l.ip, ':') != NULL)
		snprintf(buf, len, "%s [%s]:%u", kind, s->l.ip, s->l.port);
	else
		snprintf(buf, len, "%s %s:%u", kind, s->l.ip, s->l.port);
}

static void
pwait_free(struct pwait *pw, int close_fd)
{
	struct lsock *s = pw->s;

	if (pw->prev != NULL)
		pw->prev->next = pw->next;
	else
		s->waiting = pw->next;
	if (pw->next != NULL)
		pw->next->prev = pw->prev;
	if (pw->rev != NULL)
		event_free(pw->rev);
	if (pw->timer != NULL)
		event_free(pw->timer);
	if (close_fd)
		close(pw->fd);
	free(pw);
}

static void
pwait_fail(struct pwait *pw, const char *why)
{
	char name[320], peer[80];

	lsock_name(pw->s, name, sizeof(name));
	sockaddr_format((struct sockaddr *)&pw->sa, peer, sizeof(peer));
	log_info("listener", "%s: connection from %s: %s: closed", name, peer, why);
	pwait_free(pw, 1);
}

/* The header is in: the transport takes the connection, with the
 * client's address unless the header keeps the proxy's (LOCAL, UNKNOWN). */
static void
pwait_done(struct pwait *pw, const struct proxy_result *r)
{
	struct lsock *s = pw->s;
	listener_accept_fn fn = handlers[s->l.module];
	struct sockaddr_storage sa;
	socklen_t salen;
	int fd = pw->fd;

	if (r->local) {
		sa = pw->sa;
		salen = pw->salen;
	} else {
		sa = r->src;
		salen = r->srclen;
	}
	if (log_enabled(LOG_LVL_DEBUG)) {
		char name[320], peer[80], client[80];

		lsock_name(s, name, sizeof(name));
		sockaddr_format((struct sockaddr *)&pw->sa, peer, sizeof(peer));
		sockaddr_format((struct sockaddr *)&sa, client, sizeof(client));
		log_debug("listener", "%s: PROXY v%d from %s: client %s%s", name, r->version,
		    peer, client, r->local ? " (the proxy's own)" : "");
	}
	pwait_free(pw, 0);
	if (fn == NULL) {
		close(fd);
		return;
	}
	fn(worker_get(s->worker), fd, (struct sockaddr *)&sa, salen, &s->l);
}

static void
pwait_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pwait *pw = arg;
	struct proxy_result r;
	enum proxy_status st;
	size_t take;
	ssize_t n;

	if (pw->have >= sizeof(pw->buf)) {
		pwait_fail(pw, "PROXY header too long");
		return;
	}
	n = recv(fd, pw->buf + pw->have, sizeof(pw->buf) - pw->have, MSG_PEEK);
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		pwait_fail(pw, strerror(errno));
		return;
	}
	if (n == 0) {
		pwait_fail(pw, "closed before its PROXY header");
		return;
	}
	st = proxy_parse(pw->buf, pw->have + (size_t)n, &r);
	if (st == PROXY_INVALID) {
		pwait_fail(pw, "not a valid PROXY header");
		return;
	}
	/* Incomplete: all of it is header. Complete: the header's rest. */
	take = st == PROXY_COMPLETE ? r.len - pw->have : (size_t)n;
	if (recv(fd, pw->buf + pw->have, take, 0) != (ssize_t)take) {
		pwait_fail(pw, "read failed");
		return;
	}
	pw->have += take;
	if (st == PROXY_COMPLETE)
		pwait_done(pw, &r);
}

static void
pwait_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	pwait_fail(arg, "no PROXY header in time");
}

/* The refusals of this worker's thread, logged at most once a second. */
static _Thread_local time_t refused_logged;
static _Thread_local unsigned long refused_unlogged;

static void
proxy_wait(struct lsock *s, int fd, const struct sockaddr *sa, socklen_t salen)
{
	const struct conf *c = conf_local();
	struct event_base *base = worker_base(worker_get(s->worker));
	unsigned secs = c->negotiation_timeout;
	struct timeval tv;
	struct pwait *pw;

	if (!acl_net_match(c->trusted_proxies, c->ntrusted_proxies, sa)) {
		time_t now = time(NULL);

		/* Only a trusted proxy may say who the client is. */
		refused_unlogged++;
		if (now - refused_logged >= PROXY_REFUSED_LOG_INTERVAL) {
			char name[320], peer[80];

			lsock_name(s, name, sizeof(name));
			sockaddr_format(sa, peer, sizeof(peer));
			log_notice("listener", "%s: connection from %s refused: not in "
			    "trusted_proxies (%lu refused since the last such line, this "
			    "one included)", name,
			    peer, refused_unlogged);
			refused_logged = now;
			refused_unlogged = 0;
		}
		close(fd);
		return;
	}
	if ((pw = calloc(1, sizeof(*pw))) == NULL) {
		close(fd);
		return;
	}
	pw->s = s;
	pw->fd = fd;
	memcpy(&pw->sa, sa, salen < sizeof(pw->sa) ? salen : sizeof(pw->sa));
	pw->salen = salen < sizeof(pw->sa) ? salen : sizeof(pw->sa);
	pw->next = s->waiting;
	if (s->waiting != NULL)
		s->waiting->prev = pw;
	s->waiting = pw;
	(void)evutil_make_socket_nonblocking(fd);
	if (secs == 0 || secs > PROXY_WAIT_MAX_S)
		secs = PROXY_WAIT_MAX_S;
	tv.tv_sec = secs;
	tv.tv_usec = 0;
	pw->rev = event_new(base, fd, EV_READ | EV_PERSIST, pwait_read_cb, pw);
	pw->timer = evtimer_new(base, pwait_timeout_cb, pw);
	if (pw->rev == NULL || pw->timer == NULL || event_add(pw->rev, NULL) < 0 ||
	    evtimer_add(pw->timer, &tv) < 0)
		pwait_free(pw, 1);
}

/* Shutdown: the connections still waiting for their header go. */
static void
proxy_wait_free_all(struct lsock *s)
{
	while (s->waiting != NULL)
		pwait_free(s->waiting, 1);
}

/*
 * Listeners that pause.  accept(2) fails with EMFILE or ENFILE when every
 * descriptor is in use (ENOBUFS or ENOMEM when the kernel is short of
 * memory); the connection stays in the backlog and the socket stays
 * readable, so a listener that only logs the error and goes on is called
 * again at once and spins at full CPU, writing a line each time.  As nginx
 * does (ngx_event_accept: ngx_disable_accept_events, then a retry after
 * accept_mutex_delay, 500 ms), the listener is disabled and a timer on its
 * own event base enables it again ACCEPT_PAUSE_MS later; what waits in the
 * backlog is accepted then, once descriptors are free.  Any other error is
 * treated alike: retrying at once cannot help either.  No spare descriptor
 * is kept in reserve: while every one is in use the control socket cannot
 * accept either, and answers once one is free.
 *
 * The counters are per process, under a mutex: they change only when an
 * accept fails, never on the path of a connection.
 */
#define ACCEPT_PAUSE_MS 500
#define ACCEPT_LOG_INTERVAL 10          /* seconds, at least, between lines */

struct listener {
	struct evconnlistener *ev;
	struct event *timer;            /* ends the pause */
	evconnlistener_cb cb;
	void *arg;
	int paused;                     /* under pause_lock */
	char name[352];
};

static pthread_mutex_t pause_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	unsigned long pauses;           /* failed accepts, each one a pause */
	unsigned long unlogged;         /* of those, not counted in a line yet */
	time_t last;                    /* of the last failure; 0: never */
	time_t logged;                  /* of the last log line; 0: never */
	int last_errno;
	unsigned paused_now;
	unsigned listeners;
} pstats;

static void
listener_accept_cb(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct listener *l = arg;

	l->cb(ev, fd, sa, salen, l->arg);
}

static void
listener_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	pthread_mutex_lock(&pause_lock);
	if (l->paused) {
		l->paused = 0;
		pstats.paused_now--;
	}
	pthread_mutex_unlock(&pause_lock);
	evconnlistener_enable(l->ev);
}

static void
listener_error_cb(struct evconnlistener *ev, void *arg)
{
	struct listener *l = arg;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 0, ACCEPT_PAUSE_MS * 1000 };
	time_t now = time(NULL);
	unsigned long n = 0;
	long period = 0;
	int report = 0;

	evconnlistener_disable(ev);
	evtimer_add(l->timer, &tv);
	pthread_mutex_lock(&pause_lock);
	if (!l->paused) {
		l->paused = 1;
		pstats.paused_now++;
	}
	pstats.pauses++;
	pstats.unlogged++;
	pstats.last = now;
	pstats.last_errno = e;
	if (pstats.logged == 0 || now - pstats.logged >= ACCEPT_LOG_INTERVAL) {
		report = 1;
		n = pstats.unlogged;
		period = pstats.logged == 0 ? 0 : (long)(now - pstats.logged);
		pstats.unlogged = 0;
		pstats.logged = now;
	}
	pthread_mutex_unlock(&pause_lock);
	if (!report)
		return;
	if (n == 1)
		log_error("listener", "accept on %s: %s: accepting paused, retried every %d ms "
		    "(this is logged at most every %d s)", l->name, strerror(e), ACCEPT_PAUSE_MS,
		    ACCEPT_LOG_INTERVAL);
	else
		log_error("listener", "accept on %s: %s: %lu accept attempts deferred in the "
		    "last %ld s", l->name, strerror(e), n, period);
}

struct listener *
listener_open(struct event_base *base, int fd, evconnlistener_cb cb, void *arg,
    const char *name)
{
	struct listener *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->cb = cb;
	l->arg = arg;
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->timer = evtimer_new(base, listener_resume_cb, l);
	if (l->timer == NULL)
		goto fail;
	l->ev = evconnlistener_new(base, listener_accept_cb, l, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (l->ev == NULL)
		goto fail;
	evconnlistener_set_error_cb(l->ev, listener_error_cb);
	pthread_mutex_lock(&pause_lock);
	pstats.listeners++;
	pthread_mutex_unlock(&pause_lock);
	return l;
fail:
	if (l->timer != NULL)
		event_free(l->timer);
	free(l);
	return NULL;
}

void
listener_close(struct listener **lp)
{
	struct listener *l = *lp;

	if (l == NULL)
		return;
	pthread_mutex_lock(&pause_lock);
	if (l->paused)
		pstats.paused_now--;
	pstats.listeners--;
	pthread_mutex_unlock(&pause_lock);
	event_free(l->timer);
	evconnlistener_free(l->ev);
	free(l);
	*lp = NULL;
}

void
listener_stats_get(struct listener_stats *st_r)
{
	pthread_mutex_lock(&pause_lock);
	st_r->pauses = pstats.pauses;
	st_r->last = pstats.last;
	st_r->last_errno = pstats.last_errno;
	st_r->paused_now = pstats.paused_now;
	st_r->listeners = pstats.listeners;
	pthread_mutex_unlock(&pause_lock);
}

/*
 * Per-IP counts: a small chained hash under one mutex, touched only on
 * accept and close.
 */
struct ipent {
	struct ipent *next;
	unsigned char addr[16];
	unsigned count;
};

#define IP_BUCKETS 4096
static struct ipent *ip_buckets[IP_BUCKETS];
static pthread_mutex_t ip_lock = PTHREAD_MUTEX_INITIALIZER;

static void
ip_key(const struct sockaddr *sa, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else if (sa->sa_family == AF_INET) {
		/* As an IPv4-mapped IPv6 address, the form dual-stack
		 * sockets report, so both count as one. */
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	}
}

static unsigned
ip_hash(const unsigned char key[16])
{
	unsigned h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h % IP_BUCKETS;
}

unsigned
ipcount_inc(const struct sockaddr *sa)
{
	unsigned char key[16];
	struct ipent *e;
	unsigned h, n;

	ip_key(sa, key);
	h = ip_hash(key);
	pthread_mutex_lock(&ip_lock);
	for (e = ip_buckets[h]; e != NULL; e = e->next)
		if (memcmp(e->addr, key, 16) == 0)
			break;
	if (e == NULL && (e = calloc(1, sizeof(*e))) != NULL) {
		memcpy(e->addr, key, 16);
		e->next = ip_buckets[h];
		ip_buckets[h] = e;
	}
	n = e != NULL ? ++e->count : 1;
	pthread_mutex_unlock(&ip_lock);
	return n;
}

void
ipcount_dec(const struct sockaddr *sa)
{
	unsigned char key[16];
	struct ipent **pp, *e;

	ip_key(sa, key);
	pthread_mutex_lock(&ip_lock);
	for (pp = &ip_buckets[ip_hash(key)]; (e = *pp) != NULL; pp = &e->next)
		if (memcmp(e->addr, key, 16) == 0) {
			if (--e->count == 0) {
				*pp = e->next;
				free(e);
			}
			break;
		}
	pthread_mutex_unlock(&ip_lock);
}
