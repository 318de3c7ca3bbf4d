/*
 * astore.c - the asynchronous store (astore.h) over a backend.
 *
 * Each worker keeps, in submission order, every request not yet completed
 * (fifo) and the point from which they have not yet been handed to the
 * backend (unhanded). The first submission of a loop iteration makes the
 * worker's flush event active; libevent runs it after the callbacks already
 * active in that iteration (the reads of every ready connection), so that
 * everything they submitted goes to the backend as one group. Completions
 * are delivered from the head of the fifo only, so callbacks run in
 * submission order even when a backend finishes groups out of order, and
 * never inside the call that submitted (that call returned before the
 * event ran).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/astore.h"
#include "core/hold.h"
#include "core/log.h"
#include "core/clock.h"
#include "core/worker.h"
#include "store/backend.h"

/* store.c's limits: a table name, and a key (LMDB's). */
#define TABLE_MAX	64
#define KEY_MAX		511

enum areq_kind {
	AREQ_GET,
	AREQ_SCAN,
	AREQ_BATCH,
};

/* An op and its bytes: table NUL, key, value. */
struct aop {
	struct store_op op;
	xmppd_batch_get_fn get;
	xmppd_batch_row_fn row;
	void *ud;
	char data[];
};

struct xmppd_batch {
	struct store_req req;         /* first: the backend's view */
	struct xmppd_batch *fnext;    /* in the worker's fifo */
	enum areq_kind kind;
	struct astore_owner *owner;
	struct hold *hold;
	unsigned submitted : 1;
	unsigned completed : 1;       /* the backend has given its status */
	unsigned in_step : 1;         /* a step function of it is running */
	xmppd_store_get_fn get;
	xmppd_scan_fn row;
	xmppd_store_done_fn done;
	void *ud;
};

struct agroup {
	struct store_group g;
	struct astore_worker *aw;
};

struct astore_worker {
	struct event_base *base;
	struct event *flush_ev;
	struct xmppd_batch *head, *last;  /* fifo */
	struct xmppd_batch *unhanded;     /* first not given to the backend */
	int in_run;                       /* inside backend->run */
	uint64_t last_flush_ms;           /* clock_now_ms of the last group handed over */
	int delivering;
};

static struct store_backend *backend;
static unsigned commit_window_ms;

void
astore_set_commit_window(unsigned ms)
{
	commit_window_ms = ms;
}
static __thread struct astore_worker *self;

static void deliver(struct astore_worker *aw);
static void group_complete(struct store_group *g);

/* ------------------------------------------------------------ requests */

static int
table_ok(const char *table)
{
	size_t n;

	return table != NULL && (n = strlen(table)) > 0 && n <= TABLE_MAX;
}

static xmppd_batch *
req_new(struct astore_owner *o, enum areq_kind kind)
{
	xmppd_batch *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->kind = kind;
	b->owner = o;
	b->req.batch = kind == AREQ_BATCH;
	b->req.tail = &b->req.ops;
	b->req.status = STORE_OK;
	return b;
}

static void
req_free(xmppd_batch *b)
{
	struct store_op *op, *next;

	for (op = b->req.ops; op != NULL; op = next) {
		next = op->next;
		free(op);
	}
	free(b->req.rows);
	free(b);
}

/*
 * Appends an op. Outside a step, a bad argument or no memory makes the
 * whole batch fail when submitted (status INVALID or ERROR); inside one,
 * the batch is running, so only -1 tells the step.
 */
static struct aop *
op_add(xmppd_batch *b, enum store_op_kind kind, const char *table, const void *key,
    size_t klen, int key_required, const void *val, size_t vlen)
{
	size_t tlen;
	struct aop *a;

	if (b == NULL)
		return NULL;
	if (b->submitted && !b->in_step) {
		log_error("store", "a batch was changed after it was submitted");
		return NULL;
	}
	if (!table_ok(table) || klen > KEY_MAX || (key_required && klen == 0) ||
	    (klen > 0 && key == NULL) || (vlen > 0 && val == NULL)) {
		if (!b->submitted)
			b->req.status = STORE_INVALID;
		return NULL;
	}
	tlen = strlen(table);
	if (vlen > SIZE_MAX - sizeof(*a) - tlen - 1 - klen ||
	    (a = malloc(sizeof(*a) + tlen + 1 + klen + vlen)) == NULL) {
		if (!b->submitted && b->req.status == STORE_OK)
			b->req.status = STORE_ERROR;
		return NULL;
	}
	memset(a, 0, sizeof(*a));
	memcpy(a->data, table, tlen + 1);
	if (klen > 0)
		memcpy(a->data + tlen + 1, key, klen);
	if (vlen > 0)
		memcpy(a->data + tlen + 1 + klen, val, vlen);
	a->op.kind = kind;
	a->op.table = a->data;
	a->op.key = a->data + tlen + 1;
	a->op.klen = klen;
	a->op.val = a->data + tlen + 1 + klen;
	a->op.vlen = vlen;
	*b->req.tail = &a->op;
	b->req.tail = &a->op.next;
	return a;
}

/* A batch's step (store_step_fn): the module's function, with the
 * batch's hold current, so that work it starts counts against it. */
static int
step(struct store_req *r, struct store_op *op, int status, const void *key, size_t klen,
    const void *val, size_t vlen)
{
	xmppd_batch *b = (xmppd_batch *)r;
	struct aop *a = (struct aop *)op;
	struct hold *prev = hold_enter(b->hold);
	int rc = 0;

	b->in_step = 1;
	if (op->kind == STORE_OP_GET && a->get != NULL)
		rc = a->get(b, status, status == STORE_OK ? val : NULL,
		    status == STORE_OK ? vlen : 0, a->ud);
	else if (op->kind == STORE_OP_SCAN && a->row != NULL)
		rc = a->row(b, key, klen, val, vlen, a->ud);
	b->in_step = 0;
	hold_leave(prev);
	return rc;
}

/* ------------------------------------------------------------- workers */

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct astore_worker *aw = arg;
	struct agroup *ag;
	xmppd_batch *b;

	if (aw->unhanded == NULL)
		return;
	if ((ag = calloc(1, sizeof(*ag))) == NULL) {
		/* Try again in the next iteration rather than lose them. */
		log_error("store", "out of memory starting store work");
		event_active(aw->flush_ev, EV_TIMEOUT, 0);
		return;
	}
	ag->aw = aw;
	ag->g.ud = ag;
	ag->g.reqs = &aw->unhanded->req;
	for (b = aw->unhanded; b != NULL; b = b->fnext)
		b->req.next = b->fnext != NULL ? &b->fnext->req : NULL;
	aw->unhanded = NULL;
	aw->last_flush_ms = clock_now_ms();
	ag->g.complete = group_complete;
	aw->in_run = 1;
	backend->run(backend, &ag->g, aw->base);
	aw->in_run = 0;
	deliver(aw);
}

/* Called by the backend, once per group, on the worker that ran it. */
static void
group_complete(struct store_group *g)
{
	struct agroup *ag = g->ud;
	struct astore_worker *aw = ag->aw;

	for (struct store_req *r = g->reqs; r != NULL; r = r->next)
		((xmppd_batch *)r)->completed = 1;
	free(ag);
	if (!aw->in_run)
		deliver(aw);
}

static struct astore_worker *
worker_state(void)
{
	struct worker *w;

	if (self != NULL)
		return self;
	if (backend == NULL || (w = worker_self()) == NULL)
		return NULL;
	if ((self = calloc(1, sizeof(*self))) == NULL)
		return NULL;
	self->base = worker_base(w);
	/* Made by the worker itself: its base is not locked. */
	if ((self->flush_ev = event_new(self->base, -1, 0, flush_cb, self)) == NULL) {
		free(self);
		self = NULL;
	}
	return self;
}

/* Runs b's callbacks and frees it. */
static void
finish(xmppd_batch *b)
{
	struct hold *prev = hold_enter(b->hold), *h = b->hold;
	struct astore_owner *o = b->owner;
	int status = b->req.status;
	const void *k, *v;
	size_t kl, vl, off = 0;

	switch (b->kind) {
	case AREQ_GET:
		if (status == STORE_OK && store_req_next_row(&b->req, &off, &k, &kl, &v, &vl) == 0)
			b->get(STORE_OK, v, vl, b->ud);
		else
			b->get(status == STORE_OK ? STORE_ERROR : status, NULL, 0, b->ud);
		break;
	case AREQ_SCAN:
		if (status == STORE_OK)
			while (store_req_next_row(&b->req, &off, &k, &kl, &v, &vl) == 0 &&
			    b->row(b->ud, k, kl, v, vl) == 0)
				;
		if (b->done != NULL)
			b->done(status, b->ud);
		break;
	case AREQ_BATCH:
		if (b->done != NULL)
			b->done(status, b->ud);
		break;
	}
	hold_leave(prev);
	req_free(b);
	/* Last: an unload waiting for this may unmap the module now. */
	if (o != NULL)
		__atomic_sub_fetch(&o->pending, 1, __ATOMIC_RELEASE);
	hold_release(h);
}

static void
deliver(struct astore_worker *aw)
{
	xmppd_batch *b;

	if (aw->delivering)
		return;
	aw->delivering = 1;
	while ((b = aw->head) != NULL && b->completed) {
		aw->head = b->fnext;
		if (aw->head == NULL)
			aw->last = NULL;
		finish(b);
	}
	aw->delivering = 0;
}

static int
submit(xmppd_batch *b)
{
	struct astore_worker *aw = worker_state();

	if (aw == NULL) {
		log_error("store", "asynchronous store call outside a worker");
		req_free(b);
		return -1;
	}
	b->submitted = 1;
	b->hold = hold_take();
	if (b->owner != NULL)
		__atomic_add_fetch(&b->owner->pending, 1, __ATOMIC_RELAXED);
	if (aw->last != NULL)
		aw->last->fnext = b;
	else
		aw->head = b;
	aw->last = b;
	if (aw->unhanded == NULL) {
		uint64_t now = commit_window_ms > 0 ? clock_now_ms() : 0;

		aw->unhanded = b;
		if (commit_window_ms == 0 || now - aw->last_flush_ms >= commit_window_ms) {
			event_active(aw->flush_ev, EV_TIMEOUT, 0);
		} else {
			/* Committed a moment ago: what comes until the window
			 * ends joins this group (one commit, one sync, for
			 * all of it; doc/architecture.md). */
			uint64_t wait = aw->last_flush_ms + commit_window_ms - now;
			struct timeval tv = { 0, (suseconds_t)(wait * 1000) };

			event_add(aw->flush_ev, &tv);
		}
	}
	return 0;
}

/* The worker's loop has ended: complete everything (callbacks may start
 * more), then free the worker's state. */
static void
worker_exit(struct worker *w)
{
	struct astore_worker *aw = self;
	unsigned stuck = 0;

	if (aw == NULL)
		return;
	while (aw->head != NULL && stuck < 1000) {
		xmppd_batch *before = aw->head;

		if (aw->unhanded != NULL)
			flush_cb(-1, 0, aw);
		backend->drain(backend);
		deliver(aw);
		stuck = aw->head == before ? stuck + 1 : 0;
	}
	if (aw->head != NULL)
		log_error("store", "worker %u ends with store work that never completed",
		    worker_id(w));
	event_free(aw->flush_ev);
	free(aw);
	self = NULL;
}

/* ----------------------------------------------------------------- API */

int
astore_init(struct store_backend *b)
{
	if (b == NULL)
		return -1;
	backend = b;
	worker_set_exit_hook(worker_exit);
	return 0;
}

void
astore_free(void)
{
	if (backend != NULL)
		backend->free(backend);
	backend = NULL;
}

unsigned long
astore_pending(const struct astore_owner *o)
{
	return __atomic_load_n(&o->pending, __ATOMIC_ACQUIRE);
}

int
astore_get(struct astore_owner *o, const char *table, const void *key, size_t klen,
    xmppd_store_get_fn fn, void *ud)
{
	xmppd_batch *b;

	if (fn == NULL || (b = req_new(o, AREQ_GET)) == NULL)
		return -1;
	b->get = fn;
	b->ud = ud;
	(void)op_add(b, STORE_OP_GET, table, key, klen, 1, NULL, 0);
	return submit(b);
}

int
astore_scan(struct astore_owner *o, const char *table, const void *prefix, size_t plen,
    xmppd_scan_fn row, xmppd_store_done_fn done, void *ud)
{
	xmppd_batch *b;

	if (row == NULL || (b = req_new(o, AREQ_SCAN)) == NULL)
		return -1;
	b->row = row;
	b->done = done;
	b->ud = ud;
	(void)op_add(b, STORE_OP_SCAN, table, prefix, plen, 0, NULL, 0);
	return submit(b);
}

int
astore_range(struct astore_owner *o, const char *table, const void *prefix, size_t plen,
    const void *start, size_t slen, int reverse, size_t limit, xmppd_scan_fn row,
    xmppd_store_done_fn done, void *ud)
{
	xmppd_batch *b;
	struct aop *a;

	if (row == NULL || (b = req_new(o, AREQ_SCAN)) == NULL)
		return -1;
	b->row = row;
	b->done = done;
	b->ud = ud;
	if (slen > KEY_MAX)
		b->req.status = STORE_INVALID;
	else if ((a = op_add(b, STORE_OP_RANGE, table, prefix, plen, 0, start, slen)) != NULL) {
		a->op.reverse = reverse != 0;
		a->op.limit = limit;
	}
	return submit(b);
}

xmppd_batch *
astore_batch_new(struct astore_owner *o)
{
	return req_new(o, AREQ_BATCH);
}

int
astore_batch_put(xmppd_batch *b, const char *table, const void *key, size_t klen,
    const void *val, size_t vlen)
{
	return op_add(b, STORE_OP_PUT, table, key, klen, 1, val, vlen) != NULL ? 0 : -1;
}

int
astore_batch_del(xmppd_batch *b, const char *table, const void *key, size_t klen)
{
	return op_add(b, STORE_OP_DEL, table, key, klen, 1, NULL, 0) != NULL ? 0 : -1;
}

int
astore_batch_del_prefix(xmppd_batch *b, const char *table, const void *prefix, size_t plen)
{
	return op_add(b, STORE_OP_DEL_PREFIX, table, prefix, plen, 0, NULL, 0) != NULL ? 0 : -1;
}

int
astore_batch_get(xmppd_batch *b, const char *table, const void *key, size_t klen,
    xmppd_batch_get_fn fn, void *ud)
{
	struct aop *a = op_add(b, STORE_OP_GET, table, key, klen, 1, NULL, 0);

	if (a == NULL)
		return -1;
	a->get = fn;
	a->ud = ud;
	return 0;
}

int
astore_batch_scan(xmppd_batch *b, const char *table, const void *prefix, size_t plen,
    xmppd_batch_row_fn fn, void *ud)
{
	struct aop *a = op_add(b, STORE_OP_SCAN, table, prefix, plen, 0, NULL, 0);

	if (a == NULL)
		return -1;
	a->row = fn;
	a->ud = ud;
	return 0;
}

int
astore_batch_submit(xmppd_batch *b, xmppd_store_done_fn done, void *ud)
{
	if (b == NULL || b->kind != AREQ_BATCH || b->submitted)
		return -1;
	b->req.step = step;
	b->done = done;
	b->ud = ud;
	return submit(b);
}

void
astore_batch_free(xmppd_batch *b)
{
	if (b != NULL && !b->submitted)
		req_free(b);
}
