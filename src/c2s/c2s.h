/*
 * c2s.h - client-to-server streams (RFC 6120): negotiation (STARTTLS, SASL,
 * resource binding) and the stanza exchange of a bound session.
 *
 * Each connection lives on the worker that accepted it and is a session of
 * the router's (router/session.h): other threads reach it only through
 * session_deliver / session_kick, which post to that worker.
 */
#ifndef XMPPD_C2S_H
#define XMPPD_C2S_H

#include <stdint.h>
#include <sys/socket.h>

#include "xml/xml.h"

struct worker;
struct conf_listen;

int c2s_init(unsigned nworkers);
void c2s_free_all(void);

/* A connection accepted on worker w (called on w's thread). */
void c2s_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conf_listen *l);

/* sm_durable (c2s_smd.c): the stream management sessions the store holds
 * become detached sessions again, on the workers; without sm_durable the
 * rows a durable run left are dropped. Main thread, once the workers run
 * and the modules are loaded. 0 or -1. */
int c2s_sm_restore(void);

/* Closes every stream with <system-shutdown/> and returns once they are
 * gone (bounded: those left are then freed). Main thread. */
void c2s_shutdown_all(void);
/* Number of open connections (all states), all workers. */
unsigned long c2s_connection_count(void);

/* The client streams' section of xmppd.yml (c2s_conf.c: hibernate_after,
 * auth_failure_delay_ms, max_auth_attempts, c2s_access), registered with
 * conf_section_register (core/conf_keys.h) by the composition root. */
struct conf_section;
extern const struct conf_section c2s_conf_section;

#endif
