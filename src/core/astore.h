/*
 * astore.h - the asynchronous store: what hooks/xmppd.h offers modules as
 * xmppd_store_aget, xmppd_store_ascan and xmppd_batch_* (the contract is
 * written there), over a backend (store/backend.h).
 *
 * Per worker: operations submitted during a loop iteration are queued and
 * handed to the backend as one group by an event made active on the first
 * submission (group commit: one write transaction per iteration, not per
 * stanza); completions are delivered on the same worker, in submission
 * order, whatever order the backend finishes in. Every operation counts
 * against the stream hold current when it was submitted (core/hold.h) and
 * against its owner (a module), whose unload waits until the count is 0.
 */
#ifndef XMPPD_ASTORE_H
#define XMPPD_ASTORE_H

#include <stddef.h>

#include "hooks/xmppd.h"

struct store_backend;

/* Who submitted: a module's context has one. */
struct astore_owner {
	unsigned long pending;      /* atomic: submitted, callback not yet returned */
};

/* Takes b. Main thread, before the workers start: the workers complete
 * what is pending when their loops end. 0 or -1. */
int astore_init(struct store_backend *b);
/* Group commit over a window (store_commit_window_ms): a worker hands the
 * backend a group at most once per ms milliseconds, so that under load
 * one commit covers the work of several loop iterations (0: every
 * iteration). Main thread, before astore_init. */
void astore_set_commit_window(unsigned ms);
/* After the workers have stopped. */
void astore_free(void);
/* Operations of o submitted whose callbacks have not returned yet. Any
 * thread. */
unsigned long astore_pending(const struct astore_owner *o);

/* The calls of hooks/xmppd.h, for a worker thread; o may be NULL (the
 * core's own work). -1 when not called on a worker (nothing will run). */
int astore_get(struct astore_owner *o, const char *table, const void *key, size_t klen,
    xmppd_store_get_fn fn, void *ud);
int astore_scan(struct astore_owner *o, const char *table, const void *prefix, size_t plen,
    xmppd_scan_fn row, xmppd_store_done_fn done, void *ud);
int astore_range(struct astore_owner *o, const char *table, const void *prefix, size_t plen,
    const void *start, size_t slen, int reverse, size_t limit, xmppd_scan_fn row,
    xmppd_store_done_fn done, void *ud);
xmppd_batch *astore_batch_new(struct astore_owner *o);
int astore_batch_put(xmppd_batch *b, const char *table, const void *key, size_t klen,
    const void *val, size_t vlen);
int astore_batch_del(xmppd_batch *b, const char *table, const void *key, size_t klen);
int astore_batch_del_prefix(xmppd_batch *b, const char *table, const void *prefix,
    size_t plen);
int astore_batch_get(xmppd_batch *b, const char *table, const void *key, size_t klen,
    xmppd_batch_get_fn fn, void *ud);
int astore_batch_scan(xmppd_batch *b, const char *table, const void *prefix, size_t plen,
    xmppd_batch_row_fn fn, void *ud);
int astore_batch_submit(xmppd_batch *b, xmppd_store_done_fn done, void *ud);
void astore_batch_free(xmppd_batch *b);

#endif
