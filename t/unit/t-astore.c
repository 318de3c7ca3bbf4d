/*
 * t-astore.c - the asynchronous store (src/core/astore.c) on LMDB
 * (src/store/lmdb_backend.c), run on a real worker's event loop: ordering
 * of completions, callbacks never before the call returns and always on the
 * worker, group commit with nested transactions (a failing batch does not
 * fail its neighbours), atomicity, reads inside a batch that see its own
 * writes, errors, stream holds (core/hold.c), owners' counts, and the test
 * delay (store_test_delay_ms) that makes LMDB answer later.
 *
 * Each scenario runs on worker 0 and writes what happens into a log; the
 * last completion signals the main thread, which checks the log (cmocka's
 * assertions must run on the main thread).
 */
#include "config.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1		/* nftw */
#endif
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>

#include "core/astore.h"
#include "core/clock.h"
#include "core/hold.h"
#include "core/log.h"
#include "core/worker.h"
#include "store/backend.h"
#include "store/store.h"

/* Small, so that one value can fill it (a backend error). */
#define MAP_SIZE	((size_t)1 << 20)
#define DELAY_MS	200

static char scratch[64];
static char dbdir[128];

/* ------------------------------------------------------------- the log */

static char logbuf[8192];
static size_t loglen;
static pthread_t worker_thread;
static int wrong_thread;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int finished;
static struct astore_owner owner;

static void __attribute__((format(printf, 1, 2)))
say(const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!pthread_equal(pthread_self(), worker_thread))
		wrong_thread = 1;
	va_start(ap, fmt);
	n = vsnprintf(logbuf + loglen, sizeof(logbuf) - loglen, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(logbuf) - loglen)
		loglen += (size_t)n;
}

static void
finish(void)
{
	pthread_mutex_lock(&mu);
	finished = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static const char *
status_name(int st)
{
	switch (st) {
	case XMPPD_STORE_OK: return "OK";
	case XMPPD_STORE_NOT_FOUND: return "NOT_FOUND";
	case XMPPD_STORE_ERROR: return "ERROR";
	case XMPPD_STORE_INVALID: return "INVALID";
	case XMPPD_STORE_ABORTED: return "ABORTED";
	default: return "?";
	}
}

static void (*scenario)(void);

static void
scenario_task(struct worker *w, void *a, uint64_t b)
{
	worker_thread = pthread_self();
	scenario();
}

/*
 * The owner's count of operations under way, once it has come down to 0:
 * an operation's callback runs (and may call finish()) before the count
 * is taken down (core/astore.c, complete: "Last"), so the main thread
 * may look a moment too early. Bounded: 2 s.
 */
static unsigned long
pending_settled(void)
{
	unsigned long n;

	for (int i = 0; (n = astore_pending(&owner)) != 0 && i < 2000; i++)
		usleep(1000);
	return n;
}

/* Runs fn on worker 0 and waits (bounded) for finish(). */
static void
run_on_worker(void (*fn)(void))
{
	struct timespec until;
	int rc = 0;

	loglen = 0;
	logbuf[0] = '\0';
	wrong_thread = 0;
	finished = 0;
	scenario = fn;
	worker_post(worker_get(0), scenario_task, NULL, 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20;
	pthread_mutex_lock(&mu);
	while (!finished && rc == 0)
		rc = pthread_cond_timedwait(&cv, &mu, &until);
	pthread_mutex_unlock(&mu);
	assert_true(finished);
	assert_false(wrong_thread);
}

/* ----------------------------------------------- a backend that counts */

/* The LMDB backend, counting the groups it is handed: what one worker
 * submitted in one loop iteration must come as one group. */
struct counting {
	struct store_backend b;
	struct store_backend *inner;
	unsigned groups, reqs;
	/* reverse: hold two groups back and complete the later one first,
	 * as a backend with several connections may. */
	int reverse;
	struct store_group *held[2];
	void (*complete[2])(struct store_group *g);
	unsigned nheld;
};

static struct counting *counting;

static void
c_held(struct store_group *g)
{
}

static void
c_release(evutil_socket_t fd, short what, void *arg)
{
	struct counting *c = counting;

	event_free(arg);
	c->complete[1](c->held[1]);
	c->complete[0](c->held[0]);
	c->nheld = 0;
}

static void
c_run(struct store_backend *b, struct store_group *g, struct event_base *base)
{
	struct counting *c = (struct counting *)b;

	c->groups++;
	for (struct store_req *r = g->reqs; r != NULL; r = r->next)
		c->reqs++;
	if (c->reverse && c->nheld < 2) {
		c->held[c->nheld] = g;
		c->complete[c->nheld++] = g->complete;
		g->complete = c_held;
		if (c->nheld == 2) {
			struct timeval tv = { 0, 10 * 1000 };

			evtimer_add(evtimer_new(base, c_release, event_self_cbarg()), &tv);
		}
	}
	c->inner->run(c->inner, g, base);
}

static void
c_drain(struct store_backend *b)
{
	struct counting *c = (struct counting *)b;

	c->inner->drain(c->inner);
}

static void
c_free(struct store_backend *b)
{
	struct counting *c = (struct counting *)b;

	c->inner->free(c->inner);
	free(c);
	counting = NULL;
}

/* ----------------------------------------------------------------- setup */

static int
rm_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

static int
start(unsigned delay_ms)
{
	const char *error = NULL;

	strcpy(scratch, "/tmp/t-astore.XXXXXX");
	if (mkdtemp(scratch) == NULL)
		return -1;
	snprintf(dbdir, sizeof(dbdir), "%s/spool", scratch);
	log_set_level(LOG_LVL_WARNING);
	if (store_open(dbdir, MAP_SIZE, &error) != 0) {
		fprintf(stderr, "store_open: %s\n", error);
		return -1;
	}
	if ((counting = calloc(1, sizeof(*counting))) == NULL ||
	    (counting->inner = store_lmdb_backend(delay_ms)) == NULL)
		return -1;
	counting->b.name = "counting";
	counting->b.run = c_run;
	counting->b.drain = c_drain;
	counting->b.free = c_free;
	if (astore_init(&counting->b) < 0 || worker_init(1, &error) < 0 ||
	    worker_start_all() < 0)
		return -1;
	return 0;
}

static void
stop(void)
{
	worker_exit_all();
	worker_join_all();
	worker_free_all();
	astore_free();
	store_close();
	nftw(scratch, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

static int
setup_now(void **state)
{
	return start(0);
}

static int
setup_delay(void **state)
{
	return start(DELAY_MS);
}

static int
teardown(void **state)
{
	stop();
	return 0;
}

/* --------------------------------------------------------------- helpers */

static void
got(int status, const void *val, size_t vlen, void *ud)
{
	say("%s=%s", (const char *)ud, status_name(status));
	if (status == XMPPD_STORE_OK)
		say(":%.*s", (int)vlen, (const char *)val);
	say(" ");
}

static void
done(int status, void *ud)
{
	say("%s=%s ", (const char *)ud, status_name(status));
}

static void
last(int status, const void *val, size_t vlen, void *ud)
{
	got(status, val, vlen, ud);
	finish();
}

static int
row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	say("[%.*s:%.*s]", (int)klen, (const char *)key, (int)vlen, (const char *)val);
	return 0;
}

static void
aget(const char *table, const char *key, xmppd_store_get_fn fn, const char *tag)
{
	if (astore_get(&owner, table, key, strlen(key), fn, (void *)tag) < 0)
		say("aget-refused ");
}

static xmppd_batch *
batch_put(const char *table, const char *key, const char *val)
{
	xmppd_batch *b = astore_batch_new(&owner);

	if (b == NULL || astore_batch_put(b, table, key, strlen(key), val, strlen(val)) < 0)
		say("put-refused ");
	return b;
}

static void
submit(xmppd_batch *b, const char *tag)
{
	if (astore_batch_submit(b, done, (void *)tag) < 0)
		say("submit-refused ");
}

/* ------------------------------------------------------------- ordering */

/* One iteration: writes and reads take effect and complete in submission
 * order; the reads see the batches before them and not those after. */
static void
order_scenario(void)
{
	counting->groups = counting->reqs = 0;
	submit(batch_put("t", "k", "1"), "b1");
	aget("t", "k", got, "g1");
	submit(batch_put("t", "k", "2"), "b2");
	aget("t", "k", got, "g2");
	submit(batch_put("t", "k2", "x"), "b3");
	if (astore_scan(&owner, "t", "k", 1, row, done, "scan") < 0)
		say("scan-refused ");
	aget("t", "nope", last, "g3");
	say("returned ");
}

static void
test_order(void **state)
{
	run_on_worker(order_scenario);
	assert_string_equal(logbuf, "returned b1=OK g1=OK:1 b2=OK g2=OK:2 b3=OK "
	    "[k:2][k2:x]scan=OK g3=NOT_FOUND ");
	/* Group commit: the seven requests of one iteration, one group. */
	assert_int_equal(counting->groups, 1);
	assert_int_equal(counting->reqs, 7);
	assert_int_equal(pending_settled(), 0);
}

/* A callback's own submissions go after everything submitted before, in
 * a later group; callbacks never run inside the call. */
static int in_call;

static void chain_b(int status, const void *val, size_t vlen, void *ud);

static void
chain_a(int status, const void *val, size_t vlen, void *ud)
{
	got(status, val, vlen, ud);
	if (in_call)
		say("EARLY ");
	in_call = 1;
	aget("t", "k", chain_b, "c2");
	in_call = 0;
	say("a-returned ");
}

static void
chain_b(int status, const void *val, size_t vlen, void *ud)
{
	if (in_call)
		say("EARLY ");
	got(status, val, vlen, ud);
	finish();
}

static void
batch_early(int status, void *ud)
{
	if (in_call)
		say("EARLY ");
	done(status, ud);
}

static int
scan_early(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	if (in_call)
		say("EARLY ");
	return 1;       /* one row is enough */
}

static void
chain_scenario(void)
{
	xmppd_batch *b = batch_put("t", "k", "3");

	counting->groups = 0;
	in_call = 1;
	aget("t", "k", chain_a, "c1");
	in_call = 0;
	in_call = 1;
	if (astore_batch_submit(b, batch_early, "b") < 0)
		say("submit-refused ");
	in_call = 0;
	in_call = 1;
	if (astore_scan(&owner, "t", "", 0, scan_early, done, "s") < 0)
		say("scan-refused ");
	in_call = 0;
	say("returned ");
}

static void
test_never_before_return(void **state)
{
	run_on_worker(chain_scenario);
	/* c1 was submitted before b: it does not see b's write. */
	assert_string_equal(logbuf, "returned c1=NOT_FOUND a-returned b=OK s=OK c2=OK:3 ");
	assert_int_equal(counting->groups, 2);
}

/* ---------------------------------------------------- group commit, errors */

static int
fail_step(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	return -1;
}

static void
neighbours_scenario(void)
{
	static char big[2 * 1024 * 1024];
	xmppd_batch *b;

	counting->groups = counting->reqs = 0;
	memset(big, 'x', sizeof(big));
	submit(batch_put("n", "n1", "one"), "b1");
	/* A step fails it: its put is undone. */
	b = batch_put("n", "n2", "two");
	if (astore_batch_get(b, "n", "n2", 2, fail_step, NULL) < 0)
		say("get-refused ");
	submit(b, "b2");
	submit(batch_put("n", "n3", "three"), "b3");
	/* The backend fails it: more than the map holds (MDB_MAP_FULL in
	 * its nested transaction). */
	b = batch_put("n", "n4a", "small");
	if (astore_batch_put(b, "n", "n4", 2, big, sizeof(big)) < 0)
		say("put-refused ");
	submit(b, "b4");
	submit(batch_put("n", "n5", "five"), "b5");
	aget("n", "n1", got, "n1");
	aget("n", "n2", got, "n2");
	aget("n", "n3", got, "n3");
	aget("n", "n4a", got, "n4a");
	aget("n", "n5", last, "n5");
}

static void
test_neighbours(void **state)
{
	store_txn *txn;
	const void *v;
	size_t vlen;

	run_on_worker(neighbours_scenario);
	assert_string_equal(logbuf, "b1=OK b2=ABORTED b3=OK b4=ERROR b5=OK "
	    "n1=OK:one n2=NOT_FOUND n3=OK:three n4a=NOT_FOUND n5=OK:five ");
	assert_int_equal(counting->groups, 1);
	/* Durable, as another reader sees it. */
	txn = store_begin(0);
	assert_non_null(txn);
	assert_int_equal(store_get(txn, "n", "n5", 2, &v, &vlen), 0);
	assert_memory_equal(v, "five", 4);
	assert_int_equal(store_get(txn, "n", "n4a", 3, &v, &vlen), 1);
	store_abort(txn);
}

/* ------------------------------------------------- inside a batch, atomic */

static int
step_get(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	if (!pthread_equal(pthread_self(), worker_thread))
		wrong_thread = 1;
	say("%s=%s", (const char *)ud, status_name(status));
	if (status == XMPPD_STORE_OK)
		say(":%.*s", (int)vlen, (const char *)val);
	say(" ");
	return 0;
}

static int
step_row(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
	say("[%.*s:%.*s]", (int)klen, (const char *)key, (int)vlen, (const char *)val);
	return 0;
}

/* A step that extends its batch: appends a put, then the batch fails or
 * not as ud says. */
static int
step_extend(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	const char *key = ud;

	if (astore_batch_put(b, "a", key, strlen(key), "added", 5) < 0)
		say("append-refused ");
	return 0;
}

static int
step_stop_scan(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
    void *ud)
{
	say("<%.*s>", (int)klen, (const char *)key);
	return 1;
}

static void
inside_scenario(void)
{
	xmppd_batch *b = astore_batch_new(&owner);

	astore_batch_put(b, "a", "x", 1, "v1", 2);
	astore_batch_get(b, "a", "x", 1, step_get, "s1");
	astore_batch_put(b, "a", "x", 1, "v2", 2);
	astore_batch_put(b, "a", "y", 1, "w", 1);
	astore_batch_get(b, "a", "x", 1, step_get, "s2");
	astore_batch_scan(b, "a", "", 0, step_row, NULL);
	astore_batch_del(b, "a", "x", 1);
	astore_batch_get(b, "a", "x", 1, step_get, "s3");
	astore_batch_get(b, "a", "x", 1, step_extend, "z");
	astore_batch_scan(b, "a", "", 0, step_stop_scan, NULL);
	submit(b, "b1");

	/* All or nothing: two puts and a delete, then a failing step. */
	b = astore_batch_new(&owner);
	astore_batch_put(b, "a", "p", 1, "1", 1);
	astore_batch_put(b, "a", "q", 1, "2", 1);
	astore_batch_del(b, "a", "y", 1);
	astore_batch_get(b, "a", "p", 1, fail_step, NULL);
	astore_batch_put(b, "a", "r", 1, "3", 1);
	submit(b, "b2");
	/* del_prefix, and a scan after it in the same batch. */
	b = astore_batch_new(&owner);
	astore_batch_put(b, "d", "u1", 2, "a", 1);
	astore_batch_put(b, "d", "u2", 2, "b", 1);
	astore_batch_put(b, "d", "v1", 2, "c", 1);
	astore_batch_del_prefix(b, "d", "u", 1);
	astore_batch_scan(b, "d", "", 0, step_row, NULL);
	submit(b, "b3");
	if (astore_scan(&owner, "a", "", 0, row, done, "scan") < 0)
		say("scan-refused ");
	aget("a", "y", last, "y");
}

static void
test_inside_batch(void **state)
{
	run_on_worker(inside_scenario);
	assert_string_equal(logbuf,
	    /* b1's steps, as it runs: each read sees the writes before it */
	    "s1=OK:v1 s2=OK:v2 [x:v2][y:w]s3=NOT_FOUND <y>"
	    /* b3's scan after its del_prefix */
	    "[v1:c]"
	    "b1=OK b2=ABORTED b3=OK "
	    /* b1's appended put is there, nothing of b2 */
	    "[y:w][z:added]scan=OK y=OK:w ");
}

/* A backend that completes a later group first: the callbacks still run
 * in submission order. */
static void
later_group(evutil_socket_t fd, short what, void *arg)
{
	event_free(arg);
	aget("t", "k", last, "g2");
	say("submitted-g2 ");
}

static void
reverse_scenario(void)
{
	struct timeval tv = { 0, 10 * 1000 };

	counting->reverse = 1;
	counting->groups = 0;
	submit(batch_put("t", "k", "r"), "b1");
	evtimer_add(evtimer_new(worker_base(worker_self()), later_group, event_self_cbarg()), &tv);
}

static void
test_reverse_backend(void **state)
{
	run_on_worker(reverse_scenario);
	assert_string_equal(logbuf, "submitted-g2 b1=OK g2=OK:r ");
	assert_int_equal(counting->groups, 2);
	counting->reverse = 0;
}

/* --------------------------------------------------------------- errors */

static void
invalid_scenario(void)
{
	char longkey[600];
	xmppd_batch *b;

	memset(longkey, 'k', sizeof(longkey));
	if (astore_get(&owner, "", "k", 1, got, "empty-table") < 0)
		say("refused ");
	if (astore_get(&owner, "i", longkey, sizeof(longkey), got, "long-key") < 0)
		say("refused ");
	if (astore_get(&owner, "i", "k", 0, got, "no-key") < 0)
		say("refused ");
	/* One bad op: the batch fails whole and writes nothing. */
	b = batch_put("i", "ok", "1");
	if (astore_batch_put(b, "i", longkey, sizeof(longkey), "v", 1) == 0)
		say("long-put-accepted ");
	submit(b, "bad-batch");
	aget("i", "ok", last, "ok");
}

static void
test_invalid(void **state)
{
	run_on_worker(invalid_scenario);
	assert_string_equal(logbuf, "empty-table=INVALID long-key=INVALID no-key=INVALID "
	    "bad-batch=INVALID ok=NOT_FOUND ");
}

static void *
main_thread_call(void *arg)
{
	return (void *)(intptr_t)astore_get(&owner, "t", "k", 1, got, "main");
}

static void
test_not_on_worker(void **state)
{
	xmppd_batch *b = astore_batch_new(&owner);

	/* From a thread that is no worker nothing runs: -1. */
	assert_int_equal((intptr_t)main_thread_call(NULL), -1);
	assert_non_null(b);
	assert_int_equal(astore_batch_put(b, "t", "k", 1, "v", 1), 0);
	assert_int_equal(astore_batch_submit(b, done, "main"), -1);
	assert_int_equal(astore_pending(&owner), 0);
}

/* ---------------------------------------------------------------- holds */

static struct hold *hold;

static void
hold_resume(void *ud)
{
	say("resume(%s) ", hold_busy(hold) ? "busy" : "free");
	hold_detach(hold);
	hold = NULL;
	aget("t", "k", last, "after");
}

static void
hold_chain(int status, void *ud)
{
	done(status, ud);
	/* Still this stanza's work: it keeps the stream held. */
	aget("t", "k", got, "chained");
	say("pending=%lu ", astore_pending(&owner));
}

static void
hold_scenario(void)
{
	struct hold *prev;

	hold = hold_new(hold_resume, NULL);
	/* An operation outside the hold does not count against it. */
	aget("t", "k", got, "outside");
	prev = hold_enter(hold);
	aget("t", "k", got, "g");
	if (astore_batch_submit(batch_put("t", "k", "4"), hold_chain, "b") < 0)
		say("submit-refused ");
	hold_leave(prev);
	say("held=%d pending=%lu ", hold_busy(hold), astore_pending(&owner));
}

static void
test_hold(void **state)
{
	run_on_worker(hold_scenario);
	assert_string_equal(logbuf, "held=1 pending=3 outside=NOT_FOUND g=NOT_FOUND b=OK pending=2 "
	    "chained=OK:4 resume(free) after=OK:4 ");
	assert_int_equal(pending_settled(), 0);
}

/* A stream that ends with work pending: its hold goes when the work
 * completes, and resume does not run. */
static void
detach_done(int status, void *ud)
{
	done(status, ud);
	aget("t", "k", last, "end");
}

static void
never_resume(void *ud)
{
	say("RESUMED ");
}

static void
detach_scenario(void)
{
	struct hold *h = hold_new(never_resume, NULL), *prev = hold_enter(h);

	if (astore_batch_submit(batch_put("t", "k", "5"), detach_done, "b") < 0)
		say("submit-refused ");
	hold_leave(prev);
	hold_detach(h);
}

static void
test_hold_detach(void **state)
{
	run_on_worker(detach_scenario);
	assert_string_equal(logbuf, "b=OK end=OK:5 ");
}

/* ------------------------------------------------- a backend that answers later */

static uint64_t t0;

static void
timed(int status, const void *val, size_t vlen, void *ud)
{
	uint64_t ms = clock_now_ms() - t0;

	got(status, val, vlen, ud);
	/* Margins for a loaded machine: late, but not before the delay. */
	say("%s ", ms >= DELAY_MS - 10 ? "late" : "EARLY");
}

static void
delay_batch_done(int status, void *ud)
{
	uint64_t ms = clock_now_ms() - t0;

	done(status, ud);
	say("%s ", ms >= DELAY_MS - 10 ? "late" : "EARLY");
}

/* The last completion of the scenario: the test reads the log once it
 * has come (not at the one before it, which raced with it). */
static void
delay_batch_last(int status, void *ud)
{
	delay_batch_done(status, ud);
	finish();
}

/* A second group, from a timer a little later: its completion comes
 * after the first group's, whatever the timers do. */
static void
second_group(evutil_socket_t fd, short what, void *arg)
{
	event_free(arg);
	aget("t", "k", timed, "g3");
	if (astore_batch_submit(batch_put("t", "k", "7"), delay_batch_last, "b3") < 0)
		say("submit-refused ");
}

static void
delay_scenario(void)
{
	struct event *ev = evtimer_new(worker_base(worker_self()), second_group,
	    event_self_cbarg());
	struct timeval tv = { 0, 20 * 1000 };
	struct hold *h = hold_new(never_resume, NULL), *prev;

	t0 = clock_now_ms();
	evtimer_add(ev, &tv);
	prev = hold_enter(h);
	if (astore_batch_submit(batch_put("t", "k", "6"), delay_batch_done, "b1") < 0)
		say("submit-refused ");
	hold_leave(prev);
	aget("t", "k", timed, "g1");
	/* Held as long as the backend has not answered. */
	say("held=%d ", hold_busy(h));
	hold_detach(h);
}

static void
test_delay(void **state)
{
	run_on_worker(delay_scenario);
	assert_string_equal(logbuf, "held=1 b1=OK late g1=OK:6 late g3=OK:6 late b3=OK late ");
	assert_int_equal(counting->groups, 2);
}

/* store_commit_window_ms: work submitted within the window after a group
 * was handed over waits for the window's end and goes as one group (one
 * commit for several loop iterations' work). */
#define WINDOW_MS 150

static void
window_late(int status, void *ud)
{
	uint64_t ms = clock_now_ms() - t0;

	done(status, ud);
	say("%s ", ms >= WINDOW_MS - 20 ? "waited" : "EARLY");
}

static void
window_last(int status, void *ud)
{
	window_late(status, ud);
	astore_set_commit_window(0);
	finish();
}

static void
window_third(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_free(arg);
	/* Another loop iteration, still within the window: the same group. */
	if (astore_batch_submit(batch_put("t", "w", "3"), window_last, "w3") < 0)
		say("submit-refused ");
}

static void
window_first_done(int status, void *ud)
{
	struct event *ev = evtimer_new(worker_base(worker_self()), window_third,
	    event_self_cbarg());
	struct timeval tv = { 0, 20 * 1000 };

	done(status, ud);
	t0 = clock_now_ms();
	if (astore_batch_submit(batch_put("t", "w", "2"), window_late, "w2") < 0)
		say("submit-refused ");
	evtimer_add(ev, &tv);
}

static void
window_scenario(void)
{
	astore_set_commit_window(WINDOW_MS);
	counting->groups = 0;
	/* Nothing committed for longer than the window: at once. */
	if (astore_batch_submit(batch_put("t", "w", "1"), window_first_done, "w1") < 0)
		say("submit-refused ");
}

static void
test_commit_window(void **state)
{
	run_on_worker(window_scenario);
	assert_string_equal(logbuf, "w1=OK w2=OK waited w3=OK waited ");
	assert_int_equal(counting->groups, 2);
}

/* Work pending when the worker's loop ends completes before the thread
 * exits (shutdown): nothing is lost, nothing leaks. */
static int drained;

static void
drain_got(int status, const void *val, size_t vlen, void *ud)
{
	if (status == XMPPD_STORE_OK && vlen == 1 && memcmp(val, "8", 1) == 0)
		drained++;
}

static void
drain_done(int status, void *ud)
{
	if (status == XMPPD_STORE_OK)
		drained++;
	/* Started during the drain: completes too. */
	if (astore_get(&owner, "t", "k", 1, drain_got, NULL) < 0)
		drained = -100;
}

static void
drain_scenario(void)
{
	xmppd_batch *b = batch_put("t", "k", "8");

	if (astore_batch_submit(b, drain_done, NULL) < 0)
		say("submit-refused ");
	worker_exit_all();
	finish();
}

static void
test_drain_on_exit(void **state)
{
	const char *error;

	drained = 0;
	run_on_worker(drain_scenario);
	worker_join_all();
	assert_int_equal(drained, 2);
	assert_int_equal(astore_pending(&owner), 0);
	/* Workers again, for the teardown. */
	worker_free_all();
	assert_int_equal(worker_init(1, &error), 0);
	assert_int_equal(worker_start_all(), 0);
}

int
main(void)
{
	/* Each test on a store and a worker of its own. */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_order, setup_now, teardown),
		cmocka_unit_test_setup_teardown(test_never_before_return, setup_now, teardown),
		cmocka_unit_test_setup_teardown(test_reverse_backend, setup_now, teardown),
		cmocka_unit_test_setup_teardown(test_neighbours, setup_now, teardown),
		cmocka_unit_test_setup_teardown(test_inside_batch, setup_now, teardown),
		cmocka_unit_test_setup_teardown(test_invalid, setup_now, teardown),
		cmocka_unit_test_setup_teardown(test_not_on_worker, setup_now, teardown),
		cmocka_unit_test_setup_teardown(test_hold, setup_now, teardown),
		cmocka_unit_test_setup_teardown(test_hold_detach, setup_now, teardown),
		cmocka_unit_test_setup_teardown(test_delay, setup_delay, teardown),
		cmocka_unit_test_setup_teardown(test_commit_window, setup_now, teardown),
		cmocka_unit_test_setup_teardown(test_drain_on_exit, setup_delay, teardown),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
