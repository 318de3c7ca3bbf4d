/*
 * c2s.h - client-to-server streams (RFC 6120): negotiation (STARTTLS, SASL,
 * resource binding) and the stanza exchange of a bound session.
 *
 * Each connection lives on the worker that accepted it. Other threads reach
 * a session only through c2s_deliver / c2s_kick, which post to that worker.
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

/* Writes st to session sid on worker (any thread; refs st as needed). If
 * the session is gone, a message is re-routed to the bare JID once. */
void c2s_deliver(unsigned worker, uint64_t sid, xml_elem *st);
/* Closes session sid with a stream error (any thread). */
void c2s_kick(unsigned worker, uint64_t sid, const char *condition, const char *text);
/* Closes every stream with <system-shutdown/>; each worker's loop exits
 * when its last connection is gone (bounded by a timer). Main thread. */
void c2s_shutdown_all(void);
/* Number of open connections (all states), all workers. */
unsigned long c2s_connection_count(void);

/* Frees the data every local session hangs on module slot (module unload;
 * on worker w). */
void c2s_clear_slot(struct worker *w, int slot);

/* If iq is the pre-authentication IQ being handled on this thread, writes
 * reply to its stream and returns 1 (XMPPD_IQ_STREAM). */
int c2s_preauth_reply(const xml_elem *iq, const xml_elem *reply);
/* The client address of that IQ's stream, or NULL. */
const struct sockaddr *c2s_preauth_addr(const xml_elem *iq);

#endif
