/*
 * c2s_sm_int.h - what c2s_sm.c (stream management) and c2s_smd.c (its
 * durable rows, sm_durable) share. Not for use outside src/c2s/.
 */
#ifndef XMPPD_C2S_SM_INT_H
#define XMPPD_C2S_SM_INT_H

#include <stdint.h>

#include "c2s/c2s_int.h"
#include "c2s/smq.h"

#define SM_ID_BYTES 16
#define SM_ID_LEN (2 * SM_ID_BYTES)

struct event;

struct c2s_sm {
	struct smq out;            /* what we sent, not yet acknowledged */
	uint32_t h_in;             /* the client's stanzas handled (XEP-0198 4); durable:
	                            * as committed */
	unsigned resume : 1;       /* resumption granted (XEP-0198 5) */
	unsigned r_pending : 1;    /* our <r/> is unanswered */
	unsigned durable : 1;      /* its rows are in the store (c2s_smd.c) */
	unsigned a_wanted : 1;     /* durable: an <r/> waits for h_pending's commit */
	unsigned max;              /* s a detached session waits */
	unsigned since_r;          /* stanzas sent since our last <r/> */
	uint64_t r_at_ms;          /* when that <r/> went */
	struct event *timer;       /* attached: acks; detached: the end */
	char id[SM_ID_LEN + 1];    /* the resumption id ('previd') */
	/* Durable (c2s_smd.c): stanza numbers in 64 bits (the queue rows'
	 * keys; they do not wrap as h does). */
	uint32_t h_pending;        /* handled; its state row not committed yet */
	uint64_t acked64;          /* out.acked */
	uint64_t committed64;      /* the last queue row committed */
	uint64_t wire64;           /* the last stanza written to the client */
	uint64_t deadline_ms;      /* wall clock: detached until; 0 attached */
};

/* c2s_sm.c */
void c2s_sm_arm(struct c2s *c, unsigned ms);
void c2s_sm_gone_link(struct c2s *c);
void c2s_sm_id_set(const char *id, unsigned worker, uint64_t sid);
/* A stanza has just been written: asks for an ack when it is time
 * (sm_ack_after, sm_ack_interval). */
void c2s_sm_wrote(struct c2s *c);

/* c2s_smd.c: each call adds what changed to the store, in a batch of the
 * current loop iteration (core/astore.h groups them in one
 * transaction). No-ops unless sm->durable. */
/* <enabled/>, a detach, a resumption: the state row. */
void c2s_smd_state(struct c2s *c);
/* The stanza numbered sm->acked64 + smq_len was queued: its row; it is
 * written to the client once committed (c2s_smd_flush). */
void c2s_smd_queued(struct c2s *c, const xml_elem *st);
/* The client's h went from old_acked64 to sm->acked64: rows go. */
void c2s_smd_acked(struct c2s *c, uint64_t old_acked64);
/* A stanza of the client's is handled: h_pending++, counted in h_in once
 * committed. */
void c2s_smd_handled(struct c2s *c);
/* The session is over: its rows go. */
void c2s_smd_forget(struct c2s_sm *sm);
/* Writes the committed, unwritten stanzas. */
void c2s_smd_flush(struct c2s *c);
/* The wall clock in ms (the deadline of a detached session must mean the
 * same after a restart). */
uint64_t c2s_smd_wall_ms(void);
/* The takeover for a resumption is in the store: fn(a) then runs on this
 * worker, after every earlier store work of it. */
void c2s_smd_after_commit(void (*fn)(void *a), void *a);

#endif
