/*
 * s2s.h - federation: server-to-server streams (RFC 6120, XEP-0220,
 * XEP-0178, XEP-0368). doc/federation.md says how it works.
 *
 * Outgoing: one link per (local domain, remote domain) pair, owned by the
 * worker the pair hashes to; stanzas for it are posted there, queued while
 * the link resolves, connects, negotiates TLS and authenticates (SASL
 * EXTERNAL, else dialback), and bounced when it fails. Incoming: streams
 * accepted on s2s listeners live on the accepting worker, authenticate
 * domain pairs and hand checked stanzas to the router.
 */
#ifndef XMPPD_S2S_H
#define XMPPD_S2S_H

#include <sys/socket.h>

#include "xml/xml.h"
#include "xmpp/jid.h"

struct conf_listen;
struct evbuffer;
struct worker;

/* After worker_init: per-worker state. 0 or -1. */
int s2s_init(unsigned nworkers);
/* Sends st (to a domain that is not ours) over the link for its pair.
 * Any thread; the caller keeps its reference. */
void s2s_route(xml_elem *st, const jid *from, const jid *to);
/* A connection accepted on an s2s listener (listener.c). */
void s2s_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conf_listen *l);
/* Main thread, before c2s shutdown: every stream gets <system-shutdown/>;
 * returns once they are closed (bounded). */
void s2s_shutdown_all(void);
/* After the workers have stopped. */
void s2s_free_all(void);
/* `xmppctl s2s`: one line per link and authenticated domain pair. Any
 * thread. */
void s2s_list(struct evbuffer *out);
unsigned long s2s_connection_count(void);
/* Authenticated streams: incoming ones with a verified domain pair and
 * established outgoing links (the xmppd_s2s_links gauge). Any thread. */
unsigned long s2s_link_count(void);

/* The federation section of xmppd.yml (s2s_conf.c: the s2s_* keys),
 * registered with conf_section_register (core/conf_keys.h) by the
 * composition root. */
struct conf_section;
extern const struct conf_section s2s_conf_section;

#endif
