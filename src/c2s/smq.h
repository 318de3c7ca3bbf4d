/*
 * smq.h - the counters and the queue of unacknowledged stanzas of one
 * direction of stream management (XEP-0198 4): what the server sent and
 * the client has not acknowledged yet.
 *
 * Counters are 32-bit and wrap (XEP-0198 4: "h" is an unsigned integer
 * mod 2^32): the queue holds the stanzas numbered acked+1 .. sent, so its
 * length is sent - acked in unsigned arithmetic, across the wrap too. The
 * queue holds a reference on each stanza (xml_elem_ref); smq_free drops
 * them.
 *
 * Plain data, no locks: it belongs to one session and is touched on its
 * worker (and moved whole with the session, c2s_sm.c).
 */
#ifndef XMPPD_C2S_SMQ_H
#define XMPPD_C2S_SMQ_H

#include <stdint.h>

#include "xml/xml.h"

struct smq {
	xml_elem **v;          /* ring of cap slots */
	uint32_t cap;
	uint32_t head;         /* slot of the oldest unacknowledged stanza */
	uint32_t sent;         /* number of the last stanza sent (h, mod 2^32) */
	uint32_t acked;        /* the peer's last h */
};

/* An empty queue whose counters start at zero (XEP-0198 3: on
 * <enabled/>). */
void smq_init(struct smq *q);
/* Drops every stanza and the ring. */
void smq_free(struct smq *q);
/* Stanzas sent and not acknowledged. */
uint32_t smq_len(const struct smq *q);
/* Counts e as sent and keeps a reference; -1 if the queue already holds
 * max stanzas (nothing done: the caller ends the stream), or when out of
 * memory. */
int smq_push(struct smq *q, xml_elem *e, uint32_t max);
/* The peer has handled h stanzas: those up to h leave the queue. -1 if h
 * is more than was sent (XEP-0198 4, <handled-count-too-high/>), the
 * queue unchanged. An h that goes back (below acked, mod 2^32, i.e. more
 * than the queue holds ahead) is too high as well. */
int smq_ack(struct smq *q, uint32_t h);
/* The i-th unacknowledged stanza, oldest first (i < smq_len), borrowed. */
xml_elem *smq_at(const struct smq *q, uint32_t i);
/* Takes the oldest unacknowledged stanza out (the caller owns the
 * reference), or NULL when empty; counts it as acknowledged. */
xml_elem *smq_take(struct smq *q);

#endif
