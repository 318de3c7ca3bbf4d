/*
 * lmdb_backend.c - the LMDB backend of the asynchronous store
 * (store/backend.h) over store.h.
 *
 * Group commit (DESIGN.md, "Data layer"): a group (what one worker
 * submitted in one loop iteration) runs in one LMDB write transaction,
 * committed (fsync) once; each batch in it runs in a nested transaction, so
 * that a batch that fails is undone alone and its neighbours still commit.
 * Reads in a group with batches run in the parent transaction, after the
 * batches before them and before those after them, and are copied out: the
 * callbacks run after the commit, when the transaction is gone. A group
 * with no batch runs in a read transaction and takes no writer lock.
 *
 * If the parent's commit fails, nothing of the group is on disk: every
 * request of it fails with STORE_ERROR, reads included (they may have seen
 * writes that were undone).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/log.h"
#include "store/backend.h"
#include "store/store.h"

struct lmdb_backend {
	struct store_backend b;
	unsigned delay_ms;
};

/* A group completing later (delay_ms), on the thread that ran it. */
struct delayed {
	struct delayed *next;
	struct event *ev;
	struct store_group *g;
};

static __thread struct delayed *delayed_list;

/* ----------------------------------------------------------------- rows */

int
store_req_add_row(struct store_req *r, const void *key, size_t klen, const void *val,
    size_t vlen)
{
	size_t need = 2 * sizeof(size_t) + klen + vlen;
	char *p;

	if (need > SIZE_MAX - r->rows_len)
		return -1;
	if (r->rows_len + need > r->rows_cap) {
		size_t cap = r->rows_cap != 0 ? r->rows_cap : 256;

		while (cap < r->rows_len + need)
			cap *= 2;
		if ((p = realloc(r->rows, cap)) == NULL)
			return -1;
		r->rows = p;
		r->rows_cap = cap;
	}
	p = r->rows + r->rows_len;
	memcpy(p, &klen, sizeof(klen));
	memcpy(p + sizeof(klen), &vlen, sizeof(vlen));
	if (klen > 0)
		memcpy(p + 2 * sizeof(size_t), key, klen);
	if (vlen > 0)
		memcpy(p + 2 * sizeof(size_t) + klen, val, vlen);
	r->rows_len += need;
	r->nrows++;
	return 0;
}

int
store_req_next_row(const struct store_req *r, size_t *off, const void **key_r,
    size_t *klen_r, const void **val_r, size_t *vlen_r)
{
	const char *p;

	if (*off >= r->rows_len)
		return -1;
	p = r->rows + *off;
	memcpy(klen_r, p, sizeof(size_t));
	memcpy(vlen_r, p + sizeof(size_t), sizeof(size_t));
	*key_r = p + 2 * sizeof(size_t);
	*val_r = p + 2 * sizeof(size_t) + *klen_r;
	*off += 2 * sizeof(size_t) + *klen_r + *vlen_r;
	return 0;
}

static void
rows_clear(struct store_req *r)
{
	free(r->rows);
	r->rows = NULL;
	r->rows_len = r->rows_cap = r->nrows = 0;
}

/* ------------------------------------------------------------- running */

struct scan_state {
	struct store_req *r;
	struct store_op *op;
	int copy;                   /* a read: copy the rows */
	int failed;                 /* the step said < 0, or no memory */
	size_t left;                /* a range: rows still wanted (0: no limit) */
};

static int
scan_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct scan_state *ss = ud;
	int rc;

	if (ss->copy) {
		if (store_req_add_row(ss->r, key, klen, val, vlen) < 0) {
			ss->failed = 1;
			return 1;
		}
		return ss->left > 0 && --ss->left == 0;
	}
	rc = ss->r->step(ss->r, ss->op, STORE_OK, key, klen, val, vlen);
	if (rc < 0)
		ss->failed = 1;
	return rc != 0;
}

/* A read (one op), its results copied. */
static int
run_read(store_txn *txn, struct store_req *r)
{
	struct store_op *op = r->ops;
	struct scan_state ss = { r, op, 1, 0, 0 };
	const void *val;
	size_t vlen;
	int rc;

	if (op == NULL)
		return STORE_INVALID;
	switch (op->kind) {
	case STORE_OP_GET:
		rc = store_get(txn, op->table, op->key, op->klen, &val, &vlen);
		if (rc < 0)
			return STORE_ERROR;
		if (rc == 1)
			return STORE_NOT_FOUND;
		return store_req_add_row(r, NULL, 0, val, vlen) == 0 ? STORE_OK : STORE_ERROR;
	case STORE_OP_SCAN:
		if (store_scan(txn, op->table, op->key, op->klen, scan_row, &ss) < 0 || ss.failed)
			return STORE_ERROR;
		return STORE_OK;
	case STORE_OP_RANGE:
		ss.left = op->limit;
		if (store_range(txn, op->table, op->key, op->klen, op->val, op->vlen, op->reverse,
		    scan_row, &ss) < 0 || ss.failed)
			return STORE_ERROR;
		return STORE_OK;
	default:
		return STORE_INVALID;
	}
}

/* A batch's ops, in order, including those its steps append. */
static int
run_batch(store_txn *txn, struct store_req *r)
{
	for (struct store_op *op = r->ops; op != NULL; op = op->next) {
		struct scan_state ss = { r, op, 0, 0, 0 };
		const void *val = NULL;
		size_t vlen = 0;
		int rc;

		switch (op->kind) {
		case STORE_OP_PUT:
			if (store_put(txn, op->table, op->key, op->klen, op->val, op->vlen) < 0)
				return STORE_ERROR;
			break;
		case STORE_OP_DEL:
			if (store_del(txn, op->table, op->key, op->klen) < 0)
				return STORE_ERROR;
			break;
		case STORE_OP_DEL_PREFIX:
			if (store_del_prefix(txn, op->table, op->key, op->klen) < 0)
				return STORE_ERROR;
			break;
		case STORE_OP_GET:
			if ((rc = store_get(txn, op->table, op->key, op->klen, &val, &vlen)) < 0)
				return STORE_ERROR;
			if (r->step(r, op, rc == 0 ? STORE_OK : STORE_NOT_FOUND, op->key, op->klen,
			    val, vlen) < 0)
				return STORE_ABORTED;
			break;
		case STORE_OP_SCAN:
			if (store_scan(txn, op->table, op->key, op->klen, scan_row, &ss) < 0)
				return STORE_ERROR;
			if (ss.failed)
				return STORE_ABORTED;
			break;
		case STORE_OP_RANGE:
			return STORE_INVALID;   /* reads only (xmppd_store_arange) */
		}
	}
	return STORE_OK;
}

static void
fail_all(struct store_group *g)
{
	for (struct store_req *r = g->reqs; r != NULL; r = r->next)
		if (r->status == STORE_OK || r->status == STORE_NOT_FOUND) {
			r->status = STORE_ERROR;
			rows_clear(r);
		}
}

static void
run_group(struct store_group *g)
{
	store_txn *parent, *child;
	struct store_req *r;
	int write = 0;

	for (r = g->reqs; r != NULL; r = r->next)
		if (r->batch && r->status == STORE_OK)
			write = 1;
	if ((parent = store_begin(write)) == NULL) {
		fail_all(g);
		return;
	}
	for (r = g->reqs; r != NULL; r = r->next) {
		if (r->status != STORE_OK)
			continue;               /* refused when built */
		if (!r->batch) {
			r->status = run_read(parent, r);
			continue;
		}
		if ((child = store_begin_nested(parent)) == NULL) {
			r->status = STORE_ERROR;
			continue;
		}
		r->status = run_batch(child, r);
		if (r->status != STORE_OK)
			store_abort(child);     /* this batch only */
		else if (store_commit(child) < 0)
			r->status = STORE_ERROR;
	}
	if (!write) {
		store_abort(parent);
	} else if (store_commit(parent) < 0) {
		log_error("store", "group commit failed: every request of the group fails");
		fail_all(g);
	}
}

/* ------------------------------------------------------------ the delay */

static void
delayed_unlink(struct delayed *d)
{
	for (struct delayed **pp = &delayed_list; *pp != NULL; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
}

static void
delayed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct delayed *d = arg;
	struct store_group *g = d->g;

	delayed_unlink(d);
	event_free(d->ev);
	free(d);
	g->complete(g);
}

static void
lmdb_run(struct store_backend *b, struct store_group *g, struct event_base *base)
{
	struct lmdb_backend *lb = (struct lmdb_backend *)b;
	struct delayed *d;

	run_group(g);
	if (lb->delay_ms > 0 && (d = calloc(1, sizeof(*d))) != NULL) {
		struct timeval tv = { lb->delay_ms / 1000, (lb->delay_ms % 1000) * 1000 };

		d->g = g;
		if ((d->ev = evtimer_new(base, delayed_cb, d)) != NULL &&
		    evtimer_add(d->ev, &tv) == 0) {
			d->next = delayed_list;
			delayed_list = d;
			return;
		}
		if (d->ev != NULL)
			event_free(d->ev);
		free(d);
	}
	g->complete(g);
}

static void
lmdb_drain(struct store_backend *b)
{
	struct delayed *d, *last;

	/* Oldest first: the list is newest first. */
	while (delayed_list != NULL) {
		for (last = delayed_list; last->next != NULL; last = last->next)
			;
		d = last;
		delayed_cb(-1, 0, d);
	}
}

static void
lmdb_free(struct store_backend *b)
{
	free(b);
}

struct store_backend *
store_lmdb_backend(unsigned delay_ms)
{
	struct lmdb_backend *lb = calloc(1, sizeof(*lb));

	if (lb == NULL)
		return NULL;
	lb->b.name = "lmdb";
	lb->b.run = lmdb_run;
	lb->b.drain = lmdb_drain;
	lb->b.free = lmdb_free;
	lb->delay_ms = delay_ms;
	return &lb->b;
}
