/*
 * listener.h - listening sockets: one per (listener, worker) with
 * SO_REUSEPORT, so that the kernel spreads connections over the workers and
 * no accept lock is shared.
 *
 * listener_bind_all runs as root before privileges are dropped;
 * listener_start_all attaches the sockets to the workers' event bases.
 * On a listener with proxy_protocol the handler is called only once the
 * PROXY header is in, with the client's address (net/proxy.h).
 */
#ifndef XMPPD_LISTENER_H
#define XMPPD_LISTENER_H

#include <sys/socket.h>
#include <time.h>

#include <event2/listener.h>

#include "core/conf.h"

struct worker;

/* Takes a connection accepted on worker w (called on w's thread); fd is
 * the handler's to close. */
typedef void (*listener_accept_fn)(struct worker *w, int fd, const struct sockaddr *sa,
    socklen_t salen, const struct conf_listen *l);
/* Each transport registers the handler of its kind of listener at start-up
 * (c2s_init, s2s_init), before listener_start_all. */
void listener_set_handler(enum conf_listen_module kind, listener_accept_fn fn);

struct event_base;

int listener_bind_all(const struct conf *c, unsigned nworkers, const char **error_r);
int listener_start_all(void);
/* Stops accepting (on shutdown); call from the main thread after the
 * workers have exited, or from each worker for its own. */
void listener_free_all(void);

/* An evconnlistener on fd (a listening socket, closed by listener_close)
 * that calls cb(ev, fd, addr, len, arg) for each connection and, when
 * accept(2) fails (EMFILE, ENFILE, ENOBUFS, ENOMEM...), stops accepting
 * for a moment instead of retrying at once, and logs that at most once per
 * interval, naming it by name ("c2s 192.0.2.1:5222"). Returns NULL on
 * failure, fd left open. Used by the listeners above and the control
 * socket; one listener belongs to the thread of base. */
struct listener;
struct listener *listener_open(struct event_base *base, int fd, evconnlistener_cb cb,
    void *arg, const char *name);
void listener_close(struct listener **lp);

/* The process's accept pauses so far, for xmppctl status. */
struct listener_stats {
	unsigned long pauses;           /* failed accepts (each pauses its listener) */
	time_t last;                    /* of the last one; 0 if none */
	int last_errno;                 /* its error */
	unsigned paused_now;            /* listeners paused at this moment */
	unsigned listeners;             /* listeners open */
};
void listener_stats_get(struct listener_stats *st_r);

/* Connections per IP address (max_connections_per_ip). */
unsigned ipcount_inc(const struct sockaddr *sa);
void ipcount_dec(const struct sockaddr *sa);

/* "192.0.2.1:5222" / "[2001:db8::1]:5222" */
void sockaddr_format(const struct sockaddr *sa, char *buf, size_t len);

/*
 * An external component's domain (XEP-0114) in c: the `hosts` entry of
 * the `module: component` listener that serves it, or NULL. If l_r is not
 * NULL it gets that listener. A domain is on one listener at most
 * (listener_conf.c refuses it twice). Any thread; c is the caller's.
 */
const struct conf_component_host *conf_component_find(const struct conf *c,
    const char *domain, const struct conf_listen **l_r);

/* The listen section of xmppd.yml (listener_conf.c), registered with
 * conf_section_register (core/conf_keys.h) by the composition root. */
struct conf_section;
extern const struct conf_section listen_conf_section;

#endif
