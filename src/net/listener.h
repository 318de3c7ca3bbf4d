/*
 * listener.h - listening sockets: one per (listener, worker) with
 * SO_REUSEPORT, so that the kernel spreads connections over the workers and
 * no accept lock is shared.
 *
 * listener_bind_all runs as root before privileges are dropped;
 * listener_start_all attaches the sockets to the workers' event bases.
 */
#ifndef XMPPD_LISTENER_H
#define XMPPD_LISTENER_H

#include <sys/socket.h>

#include "core/conf.h"

struct worker;

/* Takes a connection accepted on worker w (called on w's thread); fd is
 * the handler's to close. */
typedef void (*listener_accept_fn)(struct worker *w, int fd, const struct sockaddr *sa,
    socklen_t salen, const struct conf_listen *l);
/* Each transport registers the handler of its kind of listener at start-up
 * (c2s_init, s2s_init), before listener_start_all. */
void listener_set_handler(enum conf_listen_module kind, listener_accept_fn fn);

int listener_bind_all(const struct conf *c, unsigned nworkers, const char **error_r);
int listener_start_all(void);
/* Stops accepting (on shutdown); call from the main thread after the
 * workers have exited, or from each worker for its own. */
void listener_free_all(void);

/* Connections per IP address (max_connections_per_ip). */
unsigned ipcount_inc(const struct sockaddr *sa);
void ipcount_dec(const struct sockaddr *sa);

/* "192.0.2.1:5222" / "[2001:db8::1]:5222" */
void sockaddr_format(const struct sockaddr *sa, char *buf, size_t len);

#endif
