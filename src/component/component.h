/*
 * component.h - external components (XEP-0114, the jabber:component:accept
 * protocol): a gateway or a bot connects to a `module: component`
 * listener, names the domain it serves in its stream header, proves the
 * shared secret with <handshake/>, and from then on every stanza for that
 * domain (and any JID at it) is routed to it, and it may send from any
 * JID at its domain (doc/architecture.md, "External components").
 *
 * A component's stream lives on the worker that accepted it. The routing
 * table (domain -> worker and connection) is shared, under a lock; the
 * router reaches it through component_route, registered at start-up
 * (router_set_component), and a stanza is posted to the component's
 * worker, where the connection is looked up again (it may have gone:
 * the stanza then bounces with <service-unavailable/>).
 */
#ifndef XMPPD_COMPONENT_H
#define XMPPD_COMPONENT_H

#include <sys/socket.h>

#include "xml/xml.h"
#include "xmpp/jid.h"

struct conf_listen;
struct evbuffer;
struct worker;

#define NS_COMPONENT_ACCEPT "jabber:component:accept"
/* SHA-1 in hex. */
#define COMPONENT_DIGEST_LEN 40

/* After worker_init: the set of component streams, the listener handler
 * and the router's component route. 0 or -1. */
int component_init(unsigned nworkers);
/* A connection accepted on a component listener (listener.c). */
void component_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conf_listen *l);
/* The router's route for component domains (router/router.h): 1 if to's
 * domain is a configured component's (delivered, or bounced with
 * <service-unavailable/> when it is not connected), 0 if not. Any
 * thread; the caller keeps its reference. */
int component_route(xml_elem *st, const jid *from, const jid *to);
/* Main thread: <system-shutdown/> to every component stream (bounded). */
void component_shutdown_all(void);
/* After the workers have stopped. */
void component_free_all(void);
/* `xmppctl components`: one line per connected component: domain,
 * connected since (UTC), address. Any thread. */
void component_list(struct evbuffer *out);
/* Open component streams (the xmppd_connections gauge). Any thread. */
unsigned long component_connection_count(void);

/* handshake.c: hex(SHA1(stream_id secret)), lower case (XEP-0114 3). */
void component_handshake_digest(const char *stream_id, const char *secret,
    char out[COMPONENT_DIGEST_LEN + 1]);
/* 1 if given (the <handshake/>'s character data, surrounding whitespace
 * ignored, hex digits of either case) is that digest, compared in
 * constant time; 0 if not. */
int component_handshake_ok(const char *stream_id, const char *secret, const char *given);

#endif
