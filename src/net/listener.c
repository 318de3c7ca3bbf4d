/*
 * listener.c - listening sockets and the per-IP connection counts.
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
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"
#include "net/listener.h"

struct lsock {
	int fd;
	unsigned worker;
	struct conf_listen l;        /* copied: outlives configuration reloads */
	struct evconnlistener *ev;
};

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
			nsocks++;
		}
	return 0;
}

static void
accept_cb(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *sa,
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
	fn(worker_get(s->worker), fd, sa, (socklen_t)salen, &s->l);
}

static void
accept_error_cb(struct evconnlistener *ev, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends: log and go on; the listener stays armed. */
	log_error("listener", "accept: %s", evutil_socket_error_to_string(e));
}

int
listener_start_all(void)
{
	for (size_t i = 0; i < nsocks; i++) {
		struct lsock *s = &socks[i];

		s->ev = evconnlistener_new(worker_base(worker_get(s->worker)), accept_cb, s,
		    LEV_OPT_CLOSE_ON_FREE, -1, s->fd);
		if (s->ev == NULL)
			return -1;
		evconnlistener_set_error_cb(s->ev, accept_error_cb);
	}
	return 0;
}

void
listener_free_all(void)
{
	for (size_t i = 0; i < nsocks; i++) {
		if (socks[i].ev != NULL)
			evconnlistener_free(socks[i].ev);
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
