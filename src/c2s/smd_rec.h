/*
 * smd_rec.h - the rows of durable stream management (sm_durable,
 * doc/architecture.md "Resumption across a restart"): the encoding of a
 * session's resumption state and of the keys of its queued stanzas. Pure
 * functions, no store access (c2s_smd.c does that).
 *
 * Table "sm_state", key: the resumption id (one store_key part). Value,
 * version 1, integers big-endian:
 *   u8 1 | u32 h_in | u64 acked | u32 max | u64 deadline_ms |
 *   u8 available | u32 priority (two's complement) |
 *   then host, node, full JID, presence: each u32 length + bytes
 *   (presence of length 0: none).
 * Table "sm_queue", key: id part + u64 seq (store_key_add_u64, so rows
 * sort in sending order). Value: u8 1 | the stanza as text (jabber:client
 * the default namespace). seq counts every stanza the session sent (64
 * bits: it does not wrap as XEP-0198's h does); rows acked+1 .. exist.
 */
#ifndef XMPPD_C2S_SMD_REC_H
#define XMPPD_C2S_SMD_REC_H

#include <stddef.h>
#include <stdint.h>

#define SMD_REC_VERSION 1
#define SMD_STATE_TABLE "sm_state"
#define SMD_QUEUE_TABLE "sm_queue"

struct smd_state {
	uint32_t h_in;          /* the client's stanzas handled (committed) */
	uint64_t acked;         /* our stanzas the client acknowledged */
	uint32_t max;           /* s a detached session waits (XEP-0198 5) */
	uint64_t deadline_ms;   /* wall clock: detached until; 0: attached */
	int available;          /* RFC 6121 4.2 */
	int priority;
	char *host, *node, *full;
	char *presence;         /* the last available presence, or NULL */
};

/* A malloc'd row for s (*len_r bytes), or NULL when out of memory. */
void *smd_state_encode(const struct smd_state *s, size_t *len_r);
/* Fills s (strings malloc'd: smd_state_clear frees them) from a row; -1
 * if it is not a well-formed version 1 row (s then holds nothing). */
int smd_state_decode(const void *val, size_t len, struct smd_state *s);
void smd_state_clear(struct smd_state *s);

#endif
