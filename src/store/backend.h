/*
 * backend.h - what the asynchronous store (core/astore.h) asks of a store
 * backend: LMDB today (store/lmdb_backend.c, over store.h), PostgreSQL
 * later, behind the same interface.
 *
 * The asynchronous layer hands a backend a group of requests at a time:
 * everything one worker submitted during one loop iteration, in submission
 * order. A request is a read (one get or one scan, whose results the
 * backend copies into the request) or a batch (an ordered list of writes
 * and reads, all or nothing). The backend
 *
 *  - gives the requests their effects in order: a request sees what every
 *    request before it in the group (and in earlier groups of the same
 *    thread) wrote;
 *  - runs each batch atomically and independently of its neighbours: a
 *    batch that fails leaves nothing behind and does not fail the others
 *    (LMDB: one write transaction per group, a nested one per batch: group
 *    commit);
 *  - calls a batch's step function for every value one of its get or scan
 *    ops reads, while the batch runs, so that the submitter may add ops to
 *    the batch or fail it;
 *  - sets every request's status and then calls g->complete(g) once, on
 *    the thread that called run: before run returns (LMDB) or later from
 *    an event of base (a backend that answers later, or LMDB with a test
 *    delay). A batch has succeeded only once it is durable.
 *
 * Statuses are those of the module ABI (enum xmppd_store_status). The
 * submitter allocates requests and ops (it may embed them in larger
 * structs); the backend only reads them, and writes status and rows.
 */
#ifndef XMPPD_STORE_BACKEND_H
#define XMPPD_STORE_BACKEND_H

#include <stddef.h>

struct event_base;

enum store_status {
	STORE_OK = 0,
	STORE_NOT_FOUND = 1,        /* get: no such key */
	STORE_ERROR = -1,           /* the backend failed: a batch left nothing */
	STORE_INVALID = -2,         /* refused when built (table name, key size) */
	STORE_ABORTED = -3,         /* a step asked to fail the batch */
};

enum store_op_kind {
	STORE_OP_GET,
	STORE_OP_SCAN,              /* every key starting with key[0..klen) */
	STORE_OP_PUT,
	STORE_OP_DEL,               /* an absent key is no error */
	STORE_OP_DEL_PREFIX,
	/* Keys starting with key[0..klen) from val[0..vlen) (inclusive;
	 * vlen 0: the first key, or the last when reverse), forward or
	 * backward, at most limit rows (0: all). A read only. */
	STORE_OP_RANGE,
};

struct store_op {
	struct store_op *next;
	enum store_op_kind kind;
	const char *table;
	const void *key;            /* the key, or the prefix of a scan */
	size_t klen;
	const void *val;            /* put; a range's start key */
	size_t vlen;
	unsigned reverse : 1;       /* a range: backward */
	size_t limit;               /* a range: most rows, 0 all */
};

struct store_req;

/*
 * A batch's step: called for a get op with status STORE_OK and the value or
 * STORE_NOT_FOUND, and for a scan op with STORE_OK and each row in key
 * order. Pointers are valid during the call only. It may append ops to r
 * (they run after those already there). It returns 0 to go on, > 0 to skip
 * the rest of a scan, < 0 to fail the batch (STORE_ABORTED).
 */
typedef int (*store_step_fn)(struct store_req *r, struct store_op *op, int status,
    const void *key, size_t klen, const void *val, size_t vlen);

struct store_req {
	struct store_req *next;     /* in its group, in submission order */
	int batch;                  /* 1: a batch; 0: a read of one op */
	struct store_op *ops, **tail;
	store_step_fn step;         /* a batch's */
	/* Set by the backend. A request handed over with a status other
	 * than STORE_OK (refused when built) is not run and keeps it. */
	int status;
	/* A read's results: records of (size_t klen, size_t vlen, key,
	 * value), unaligned; a get's one record has klen 0. */
	char *rows;
	size_t rows_len, rows_cap, nrows;
};

struct store_group {
	struct store_req *reqs;
	void (*complete)(struct store_group *g);
	void *ud;                   /* the submitter's */
};

struct store_backend {
	const char *name;
	/* Starts g (see the top of this file). base: the calling thread's
	 * event loop, for completions that come later. */
	void (*run)(struct store_backend *b, struct store_group *g, struct event_base *base);
	/* The calling thread's loop is ending: complete now every group it
	 * started that has not completed. */
	void (*drain)(struct store_backend *b);
	void (*free)(struct store_backend *b);
};

/*
 * The LMDB backend over store.h (the store must be open). It does the work
 * of a group at once, in one write transaction (a read one when the group
 * only reads). delay_ms > 0 is for tests only (store_test_delay_ms): every
 * group completes that much later, from a timer, as a backend across a
 * network would.
 */
struct store_backend *store_lmdb_backend(unsigned delay_ms);

/* Appends a row to a read's results. 0 or -1 (out of memory). */
int store_req_add_row(struct store_req *r, const void *key, size_t klen, const void *val,
    size_t vlen);
/* The row at *off (0 first), advancing *off; 0, or -1 after the last. */
int store_req_next_row(const struct store_req *r, size_t *off, const void **key_r,
    size_t *klen_r, const void **val_r, size_t *vlen_r);

#endif
