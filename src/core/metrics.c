/*
 * metrics.c - per-thread counter blocks, hook latency slots, and the
 * sources the composition root gives (metrics.h).
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/metrics.h"
#include "hooks/xmppd.h"

const double metrics_hist_bounds[METRICS_HIST_BUCKETS] = {
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
};
/* The same bounds in nanoseconds, for the hot path. */
static const uint64_t bounds_ns[METRICS_HIST_BUCKETS] = {
	10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
	5000000, 10000000, 25000000, 50000000, 100000000, 250000000, 500000000,
	1000000000,
};

__thread struct metrics_block *metrics_tls;
struct metrics_block metrics_fallback;
static struct metrics_hist fallback_hist[METRICS_HOOK_SLOTS];

/* Every block, newest first; blocks are never freed before exit, so a
 * scrape walks the list without holding the lock past the head read. */
static struct metrics_block *blocks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

struct hook_slot {
	unsigned hook;
	char module[64];
};
static struct hook_slot slots[METRICS_HOOK_SLOTS];
static unsigned nslots;                /* read with acquire */

static unsigned long (*sources[METRICS_SRC__COUNT])(void);
static double start_time;

struct metrics_block *
metrics_block_new(void)
{
	struct metrics_block *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return &metrics_fallback;
	pthread_mutex_lock(&lock);
	b->next = blocks;
	__atomic_store_n(&blocks, b, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&lock);
	metrics_tls = b;
	return b;
}

static uint64_t
load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

uint64_t
metrics_get(enum metrics_counter c)
{
	uint64_t sum = load(&metrics_fallback.v[c]);

	for (struct metrics_block *b = __atomic_load_n(&blocks, __ATOMIC_ACQUIRE); b != NULL;
	    b = b->next)
		sum += load(&b->v[c]);
	return sum;
}

/* ---------------------------------------------------------------- */
/* Hook latency.                                                      */

int
metrics_hook_slot(unsigned hook, const char *module)
{
	const char *m = module != NULL ? module : "core";
	unsigned i;
	int r = 0;

	pthread_mutex_lock(&lock);
	for (i = 0; i < nslots; i++)
		if (slots[i].hook == hook && strcmp(slots[i].module, m) == 0)
			break;
	if (i < nslots) {
		r = (int)i + 1;
	} else if (nslots < METRICS_HOOK_SLOTS) {
		slots[nslots].hook = hook;
		snprintf(slots[nslots].module, sizeof(slots[nslots].module), "%s", m);
		__atomic_store_n(&nslots, nslots + 1, __ATOMIC_RELEASE);
		r = (int)nslots;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

uint64_t
metrics_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
hist_add(struct metrics_hist *h, uint64_t ns, int shared)
{
	unsigned i = 0;

	while (i < METRICS_HIST_BUCKETS && ns > bounds_ns[i])
		i++;
	if (shared) {
		__atomic_add_fetch(&h->bucket[i], 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&h->count, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&h->sum_ns, ns, __ATOMIC_RELAXED);
		return;
	}
	__atomic_store_n(&h->bucket[i], h->bucket[i] + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&h->count, h->count + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&h->sum_ns, h->sum_ns + ns, __ATOMIC_RELAXED);
}

void
metrics_hook_time(int slot, uint64_t ns)
{
	struct metrics_block *b;
	struct metrics_hist *h;

	if (slot <= 0 || slot > METRICS_HOOK_SLOTS)
		return;
	b = metrics_tls != NULL ? metrics_tls : metrics_block_new();
	if (b == &metrics_fallback) {
		hist_add(&fallback_hist[slot - 1], ns, 1);
		return;
	}
	if ((h = __atomic_load_n(&b->hist, __ATOMIC_RELAXED)) == NULL) {
		/* Once per thread; published for the scraper. */
		h = calloc(METRICS_HOOK_SLOTS, sizeof(*h));
		if (h == NULL) {
			hist_add(&fallback_hist[slot - 1], ns, 1);
			return;
		}
		__atomic_store_n(&b->hist, h, __ATOMIC_RELEASE);
	}
	hist_add(&h[slot - 1], ns, 0);
}

unsigned
metrics_hook_slots(void)
{
	return __atomic_load_n(&nslots, __ATOMIC_ACQUIRE);
}

static void
hist_sum(struct metrics_hist *sum, const struct metrics_hist *h)
{
	for (unsigned k = 0; k <= METRICS_HIST_BUCKETS; k++)
		sum->bucket[k] += load(&h->bucket[k]);
	sum->count += load(&h->count);
	sum->sum_ns += load(&h->sum_ns);
}

void
metrics_hook_slot_get(unsigned i, unsigned *hook_r, const char **module_r,
    struct metrics_hist *sum_r)
{
	memset(sum_r, 0, sizeof(*sum_r));
	*hook_r = slots[i].hook;
	*module_r = slots[i].module;
	hist_sum(sum_r, &fallback_hist[i]);
	for (struct metrics_block *b = __atomic_load_n(&blocks, __ATOMIC_ACQUIRE); b != NULL;
	    b = b->next) {
		const struct metrics_hist *h = __atomic_load_n(&b->hist, __ATOMIC_ACQUIRE);

		if (h != NULL)
			hist_sum(sum_r, &h[i]);
	}
}

const char *
metrics_hook_name(unsigned hook)
{
	/* doc/hooks.md; in the order of enum xmppd_hook. */
	static const char *const names[XMPPD_HOOK__COUNT] = {
		[XMPPD_HOOK_FILTER_PACKET] = "filter_packet",
		[XMPPD_HOOK_USER_SEND_PACKET] = "user_send_packet",
		[XMPPD_HOOK_USER_RECEIVE_PACKET] = "user_receive_packet",
		[XMPPD_HOOK_C2S_STREAM_FEATURES] = "c2s_stream_features",
		[XMPPD_HOOK_SM_SESSION_OPENED] = "sm_session_opened",
		[XMPPD_HOOK_SM_SESSION_CLOSED] = "sm_session_closed",
		[XMPPD_HOOK_OFFLINE_MESSAGE] = "offline_message",
		[XMPPD_HOOK_DISCO_INFO] = "disco_info",
		[XMPPD_HOOK_DISCO_ITEMS] = "disco_items",
		[XMPPD_HOOK_REGISTER_USER] = "register_user",
		[XMPPD_HOOK_REMOVE_USER] = "remove_user",
		[XMPPD_HOOK_PRESENCE_IN] = "presence_in",
		[XMPPD_HOOK_PRESENCE_OUT] = "presence_out",
		[XMPPD_HOOK_ROSTER_GET] = "roster_get",
		[XMPPD_HOOK_ROSTER_IN_SUBSCRIPTION] = "roster_in_subscription",
		[XMPPD_HOOK_ROSTER_OUT_SUBSCRIPTION] = "roster_out_subscription",
		[XMPPD_HOOK_S2S_SEND_PACKET] = "s2s_send_packet",
		[XMPPD_HOOK_S2S_RECEIVE_PACKET] = "s2s_receive_packet",
		[XMPPD_HOOK_C2S_NONZA] = "c2s_nonza",
		[XMPPD_HOOK_SM_SESSION_RESUMED] = "sm_session_resumed",
		[XMPPD_HOOK_PUBSUB_EVENT] = "pubsub_event",
		[XMPPD_HOOK_CAPS_PRESENCE] = "caps_presence",
		[XMPPD_HOOK_SERVER_STOPPING] = "server_stopping",
	};

	if (hook == METRICS_HOOK_IQ)
		return "iq_handler";
	if (hook < XMPPD_HOOK__COUNT && names[hook] != NULL)
		return names[hook];
	return "unknown";
}

/* ---------------------------------------------------------------- */
/* Sources, start time.                                               */

void
metrics_set_source(enum metrics_source s, unsigned long (*fn)(void))
{
	if ((unsigned)s < METRICS_SRC__COUNT)
		__atomic_store_n(&sources[s], fn, __ATOMIC_RELEASE);
}

unsigned long
metrics_source(enum metrics_source s)
{
	unsigned long (*fn)(void);

	if ((unsigned)s >= METRICS_SRC__COUNT)
		return 0;
	fn = __atomic_load_n(&sources[s], __ATOMIC_ACQUIRE);
	return fn != NULL ? fn() : 0;
}

double
metrics_start_time(void)
{
	return start_time;
}

void
metrics_init(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
metrics_free(void)
{
	struct metrics_block *b, *next;

	pthread_mutex_lock(&lock);
	for (b = blocks; b != NULL; b = next) {
		next = b->next;
		free(b->hist);
		free(b);
	}
	blocks = NULL;
	pthread_mutex_unlock(&lock);
	metrics_tls = NULL;
}
