/*
 * metrics.h - the server's counters and latency histograms, read by the
 * Prometheus endpoint (http/metrics_http.c, doc/admin.md "Metrics").
 *
 * The hot path pays a few instructions and no lock: every thread that
 * counts gets its own block of counters on first use (allocated once,
 * kept until metrics_free), written only by that thread with relaxed
 * atomic stores, and a scrape sums the blocks of all threads with relaxed
 * loads. A gauge kept this way (sessions by transport) is a sum of +1 and
 * -1 that may be counted on different threads (a session resumed on
 * another worker): each block's share wraps, the sum is right.
 *
 * Hook latency: each (hook, module) pair registered gets a slot at
 * registration (main thread); hooks_run reads CLOCK_MONOTONIC once before
 * the chain and once after each handler, and adds the handler's time to
 * its slot's buckets in the thread's block.
 */
#ifndef XMPPD_METRICS_H
#define XMPPD_METRICS_H

#include <stdint.h>

#include "xmpp/stanza.h"

enum metrics_counter {
	METRIC_LOGINS,                 /* SASL successes of client streams */
	METRIC_AUTH_FAILURES,          /* SASL failures of client streams */
	METRIC_STANZAS_IN_MESSAGE,     /* from clients and servers, by kind */
	METRIC_STANZAS_IN_PRESENCE,
	METRIC_STANZAS_IN_IQ,
	METRIC_STANZAS_OUT_MESSAGE,    /* written to clients and servers */
	METRIC_STANZAS_OUT_PRESENCE,
	METRIC_STANZAS_OUT_IQ,
	METRIC_ROUTED_DELIVERED,       /* the session manager found a session */
	METRIC_ROUTED_OFFLINE,         /* an offline_message handler took it */
	METRIC_ROUTED_BOUNCED,         /* answered with an error (router_bounce) */
	/* Gauges kept as sums of +1/-1. */
	METRIC_SESSIONS_TCP,
	METRIC_SESSIONS_WEBSOCKET,
	METRIC_SESSIONS_BOSH,
	METRIC__COUNT
};

/* Transports, in the order of the METRIC_SESSIONS_* gauges. */
enum metrics_transport { METRICS_TCP, METRICS_WEBSOCKET, METRICS_BOSH };

/* Hook latency buckets (upper bounds, seconds): log scale 10 us .. 1 s. */
#define METRICS_HIST_BUCKETS 16
extern const double metrics_hist_bounds[METRICS_HIST_BUCKETS];
/* The pseudo hook id of IQ handlers (xmppd_iq_register): their time is
 * counted as hook "iq_handler". */
#define METRICS_HOOK_IQ 0x100u
/* Slots for (hook, module) pairs; pairs past this many are not timed. */
#define METRICS_HOOK_SLOTS 256

struct metrics_hist {
	uint64_t bucket[METRICS_HIST_BUCKETS + 1];  /* not cumulative; last: +Inf */
	uint64_t count;
	uint64_t sum_ns;
};

struct metrics_block {
	uint64_t v[METRIC__COUNT];
	struct metrics_hist *hist;      /* METRICS_HOOK_SLOTS, on first use */
	struct metrics_block *next;     /* in the list of all blocks */
};

/* The calling thread's block (NULL until it first counts). */
extern __thread struct metrics_block *metrics_tls;
/* Allocates the calling thread's block; never NULL (a shared fallback
 * block, counted with atomic adds, when out of memory). */
struct metrics_block *metrics_block_new(void);
extern struct metrics_block metrics_fallback;

static inline void
metrics_add(enum metrics_counter c, int64_t n)
{
	struct metrics_block *b = metrics_tls != NULL ? metrics_tls : metrics_block_new();

	if (b == &metrics_fallback)
		__atomic_add_fetch(&b->v[c], (uint64_t)n, __ATOMIC_RELAXED);
	else
		__atomic_store_n(&b->v[c], b->v[c] + (uint64_t)n, __ATOMIC_RELAXED);
}

static inline void
metrics_inc(enum metrics_counter c)
{
	metrics_add(c, 1);
}

/* A stanza in or out, by kind (nonzas are not counted). */
static inline void
metrics_stanza(int out, enum stanza_kind k)
{
	if (k == STANZA_MESSAGE)
		metrics_inc(out ? METRIC_STANZAS_OUT_MESSAGE : METRIC_STANZAS_IN_MESSAGE);
	else if (k == STANZA_PRESENCE)
		metrics_inc(out ? METRIC_STANZAS_OUT_PRESENCE : METRIC_STANZAS_IN_PRESENCE);
	else if (k == STANZA_IQ)
		metrics_inc(out ? METRIC_STANZAS_OUT_IQ : METRIC_STANZAS_IN_IQ);
}

/* The sum over all threads (a gauge's value: cast to int64_t). Any
 * thread. */
uint64_t metrics_get(enum metrics_counter c);

/* ---------------------------------------------------------------- */
/* Hook latency.                                                      */

/*
 * The slot of (hook, module) (module: the registering module's name, or
 * NULL for the core), created on first use: 1 + its index, or 0 when the
 * table is full. A module reloaded gets its old slot back, so that its
 * counts stay monotonic. Any thread (a lock; registration only).
 */
int metrics_hook_slot(unsigned hook, const char *module);
/* ns nanoseconds in slot (a metrics_hook_slot result; 0 is ignored). */
void metrics_hook_time(int slot, uint64_t ns);
/* Monotonic nanoseconds. */
uint64_t metrics_now_ns(void);
/* Slots in use; for each, its hook id and module name ("core" for the
 * core's), and the sum over all threads of its histogram. */
unsigned metrics_hook_slots(void);
void metrics_hook_slot_get(unsigned i, unsigned *hook_r, const char **module_r,
    struct metrics_hist *sum_r);
/* The hook's name as doc/hooks.md spells it ("user_send_packet"). */
const char *metrics_hook_name(unsigned hook);

/* ---------------------------------------------------------------- */
/* Values that higher floors know (connection counts, s2s links), given by
 * the composition root (xmppd.c) at start-up.                       */

enum metrics_source {
	METRICS_SRC_C2S_CONNECTIONS,
	METRICS_SRC_S2S_CONNECTIONS,
	METRICS_SRC_COMPONENT_CONNECTIONS,
	METRICS_SRC_S2S_LINKS,
	METRICS_SRC__COUNT
};
void metrics_set_source(enum metrics_source s, unsigned long (*fn)(void));
/* The source's value, or 0 if none was given. Any thread. */
unsigned long metrics_source(enum metrics_source s);

/* The process start (CLOCK_REALTIME, seconds), set by metrics_init. */
double metrics_start_time(void);
void metrics_init(void);
/* At exit, after every thread that counted is gone. */
void metrics_free(void);

#endif
