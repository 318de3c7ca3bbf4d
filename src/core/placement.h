/*
 * placement.h - entity placement: which worker owns an entity that has no
 * connection of its own, and so where every stanza for it is handled
 * (DESIGN.md, "Threads"). Such entities are the addressees of a service
 * domain (a MUC room, a pubsub node: by their bare JID), the s2s link of a
 * (local, remote) domain pair, and an account's own entities (its PEP
 * nodes: by the account's bare JID).
 *
 * One function for all of them, so that the code that routes to an entity
 * never computes a worker itself: in a cluster this is where a node is
 * chosen first (rendezvous hashing over live nodes), and nothing that calls
 * it changes. The answer depends only on the key and the number of workers,
 * which is fixed for the life of the process.
 *
 * Any thread.
 */
#ifndef XMPPD_PLACEMENT_H
#define XMPPD_PLACEMENT_H

#include <stddef.h>

#include "xmpp/jid.h"

/* The worker (0 .. worker_count()-1) that owns the entity named key. */
unsigned placement_worker(const char *key, size_t len);
/* The worker of the entity at j's bare JID. */
unsigned placement_of(const jid *j);
/* The worker of the s2s link from local to remote. */
unsigned placement_of_pair(const char *local, const char *remote);

#endif
