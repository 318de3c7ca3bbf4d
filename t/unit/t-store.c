/*
 * t-store.c - the LMDB layer (src/store/store.c) and the accounts on top of
 * it (src/auth/account.c), in a scratch directory of their own.
 */
#include "config.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1		/* memmem, nftw */
#endif
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/account.h"
#include "core/log.h"
#include "store/store.h"

static char scratch[64];
static char dbdir[128];

/* ----------------------------------------------------------------- setup */

static int
rm_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

static int
group_setup(void **state)
{
	const char *error = NULL;

	strcpy(scratch, "/tmp/t-store.XXXXXX");
	if (mkdtemp(scratch) == NULL)
		return -1;
	/* A directory that does not exist yet: store_open creates it. */
	snprintf(dbdir, sizeof(dbdir), "%s/spool", scratch);
	log_set_level(LOG_LVL_WARNING);
	if (store_open(dbdir, 0, &error) != 0) {
		fprintf(stderr, "store_open: %s\n", error);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	store_close();
	return nftw(scratch, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

/* --------------------------------------------------------------- helpers */

static void
put(const char *table, const char *key, const char *val)
{
	store_txn *txn = store_begin(1);

	assert_non_null(txn);
	assert_int_equal(store_put(txn, table, key, strlen(key), val,
	    strlen(val)), 0);
	assert_int_equal(store_commit(txn), 0);
}

/* 0 and the value compared with want, or 1 if absent. */
static int
get(store_txn *txn, const char *table, const char *key, const char *want)
{
	const void *val;
	size_t vlen;
	int rc;

	rc = store_get(txn, table, key, strlen(key), &val, &vlen);
	if (rc == 0 && want != NULL) {
		assert_int_equal(vlen, strlen(want));
		assert_memory_equal(val, want, vlen);
	}
	return rc;
}

static int
get1(const char *table, const char *key, const char *want)
{
	store_txn *txn = store_begin(0);
	int rc;

	assert_non_null(txn);
	rc = get(txn, table, key, want);
	store_abort(txn);
	return rc;
}

/* ----------------------------------------------------------------- store */

static void
test_round_trip(void **state)
{
	store_txn *txn;

	assert_true(store_is_open());
	put("t_basic", "k1", "v1");
	put("t_basic", "k2", "v2");
	assert_int_equal(get1("t_basic", "k1", "v1"), 0);
	assert_int_equal(get1("t_basic", "k2", "v2"), 0);
	assert_int_equal(get1("t_basic", "nope", NULL), 1);
	/* A table nobody wrote to reads as empty. */
	assert_int_equal(get1("t_never", "k1", NULL), 1);

	put("t_basic", "k1", "v1 again");
	assert_int_equal(get1("t_basic", "k1", "v1 again"), 0);

	txn = store_begin(1);
	assert_non_null(txn);
	assert_int_equal(store_del(txn, "t_basic", "k1", 2), 0);
	assert_int_equal(store_del(txn, "t_basic", "k1", 2), 1);
	assert_int_equal(store_del(txn, "t_basic", "zz", 2), 1);
	/* The transaction sees its own writes. */
	assert_int_equal(get(txn, "t_basic", "k1", NULL), 1);
	assert_int_equal(store_commit(txn), 0);
	assert_int_equal(get1("t_basic", "k1", NULL), 1);
	assert_int_equal(get1("t_basic", "k2", "v2"), 0);

	/* Binary keys and values, NUL bytes included. */
	txn = store_begin(1);
	assert_int_equal(store_put(txn, "t_basic", "\0\1\0", 3, "\0\0", 2), 0);
	assert_int_equal(store_commit(txn), 0);
	{
		const void *v;
		size_t vl;

		txn = store_begin(0);
		assert_int_equal(store_get(txn, "t_basic", "\0\1\0", 3, &v,
		    &vl), 0);
		assert_int_equal(vl, 2);
		assert_memory_equal(v, "\0\0", 2);
		assert_int_equal(store_get(txn, "t_basic", "\0\1", 2, &v,
		    &vl), 1);
		store_abort(txn);
	}
}

static void
test_abort(void **state)
{
	store_txn *txn;

	put("t_abort", "keep", "1");
	txn = store_begin(1);
	assert_int_equal(store_put(txn, "t_abort", "gone", 4, "x", 1), 0);
	assert_int_equal(store_del(txn, "t_abort", "keep", 4), 0);
	store_abort(txn);
	assert_int_equal(get1("t_abort", "gone", NULL), 1);
	assert_int_equal(get1("t_abort", "keep", "1"), 0);
	store_abort(NULL);
}

static void
test_errors(void **state)
{
	store_txn *txn;
	const void *v;
	size_t vl;
	char big[600];

	txn = store_begin(0);
	assert_non_null(txn);
	/* Writes need a write transaction. */
	assert_int_equal(store_put(txn, "t_err", "k", 1, "v", 1), -1);
	assert_int_equal(store_del(txn, "t_err", "k", 1), -1);
	assert_int_equal(store_del_prefix(txn, "t_err", "k", 1), -1);
	/* Table names are 1..64 bytes. */
	assert_int_equal(store_get(txn, "", "k", 1, &v, &vl), -1);
	memset(big, 'n', 65);
	big[65] = '\0';
	assert_int_equal(store_get(txn, big, "k", 1, &v, &vl), -1);
	store_abort(txn);

	/* LMDB refuses empty keys and keys over 511 bytes. */
	memset(big, 'k', sizeof(big));
	txn = store_begin(1);
	assert_int_equal(store_put(txn, "t_err", big, 0, "v", 1), -1);
	assert_int_equal(store_put(txn, "t_err", big, 512, "v", 1), -1);
	assert_int_equal(store_put(txn, "t_err", big, 511, "v", 1), 0);
	assert_int_equal(store_commit(txn), 0);
}

struct scan_ctx {
	char seen[32][16];
	int n;
	int stop_after;
};

static int
scan_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct scan_ctx *ctx = ud;

	assert_true(ctx->n < 32);
	assert_true(klen < 16);
	memcpy(ctx->seen[ctx->n], key, klen);
	ctx->seen[ctx->n][klen] = '\0';
	/* Every value is its key upper-cased in the first byte. */
	assert_int_equal(vlen, klen);
	assert_int_equal(((const char *)val)[0], ctx->seen[ctx->n][0] - 32);
	ctx->n++;
	if (ctx->stop_after != 0 && ctx->n == ctx->stop_after)
		return 42;
	return 0;
}

static void
test_scan(void **state)
{
	static const char *keys[] = {
		"b/3", "a/1", "b/1", "c/1", "b/2", "b", "ba/1", "b/10",
	};
	struct scan_ctx ctx;
	store_txn *txn;

	txn = store_begin(1);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char v[16];

		strcpy(v, keys[i]);
		v[0] -= 32;
		assert_int_equal(store_put(txn, "t_scan", keys[i],
		    strlen(keys[i]), v, strlen(v)), 0);
	}
	assert_int_equal(store_commit(txn), 0);

	txn = store_begin(0);
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(store_scan(txn, "t_scan", "b/", 2, scan_cb, &ctx), 0);
	assert_int_equal(ctx.n, 4);
	assert_string_equal(ctx.seen[0], "b/1");
	assert_string_equal(ctx.seen[1], "b/10");
	assert_string_equal(ctx.seen[2], "b/2");
	assert_string_equal(ctx.seen[3], "b/3");

	/* fn's non-zero return stops the scan and is passed back. */
	memset(&ctx, 0, sizeof(ctx));
	ctx.stop_after = 2;
	assert_int_equal(store_scan(txn, "t_scan", "b/", 2, scan_cb, &ctx), 42);
	assert_int_equal(ctx.n, 2);

	/* An empty prefix is every key, in order. */
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(store_scan(txn, "t_scan", "", 0, scan_cb, &ctx), 0);
	assert_int_equal(ctx.n, 8);
	assert_string_equal(ctx.seen[0], "a/1");
	assert_string_equal(ctx.seen[7], "c/1");

	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(store_scan(txn, "t_scan", "d", 1, scan_cb, &ctx), 0);
	assert_int_equal(store_scan(txn, "t_scan", "0", 1, scan_cb, &ctx), 0);
	assert_int_equal(store_scan(txn, "t_scan_none", "b", 1, scan_cb,
	    &ctx), 0);
	assert_int_equal(ctx.n, 0);
	store_abort(txn);
}

static int
count_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	(*(int *)ud)++;
	return 0;
}

/* store_range: a start inside, before or after the prefix's keys, both
 * directions (the archive's pages, XEP-0313). Keys: b/1 b/10 b/2 b/3 under
 * "b/", with "b" and "ba/1" around them. */
static void
test_range(void **state)
{
	static const struct {
		const char *start;
		int reverse;
		const char *want;           /* the keys seen, space-separated */
	} cases[] = {
		{ "", 0, "b/1 b/10 b/2 b/3" },
		{ "", 1, "b/3 b/2 b/10 b/1" },
		{ "b/10", 0, "b/10 b/2 b/3" },
		{ "b/10", 1, "b/10 b/1" },
		{ "b/15", 0, "b/2 b/3" },     /* not a key: the next */
		{ "b/15", 1, "b/10 b/1" },    /* the one before */
		{ "b/4", 1, "b/3 b/2 b/10 b/1" },
		{ "b/4", 0, "" },
		{ "b/0", 1, "" },
		{ "a", 0, "b/1 b/10 b/2 b/3" },   /* before the prefix */
		{ "a", 1, "" },
		{ "c", 1, "b/3 b/2 b/10 b/1" },   /* after it */
		{ "c", 0, "" },
		{ "b", 0, "b/1 b/10 b/2 b/3" },   /* a shorter start: before */
	};
	store_txn *txn = store_begin(0);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scan_ctx ctx;
		char got[128] = "";

		memset(&ctx, 0, sizeof(ctx));
		assert_int_equal(store_range(txn, "t_scan", "b/", 2, cases[i].start,
		    strlen(cases[i].start), cases[i].reverse, scan_cb, &ctx), 0);
		for (int k = 0; k < ctx.n; k++) {
			if (k > 0)
				strcat(got, " ");
			strcat(got, ctx.seen[k]);
		}
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("range from '%s'%s: '%s', want '%s'", cases[i].start,
			    cases[i].reverse ? " reverse" : "", got, cases[i].want);
	}
	/* The last key of a prefix ending in 0xff bytes: the table's end. */
	{
		struct scan_ctx ctx;

		memset(&ctx, 0, sizeof(ctx));
		assert_int_equal(store_range(txn, "t_scan", "", 0, "", 0, 1, scan_cb, &ctx), 0);
		assert_int_equal(ctx.n, 8);
		assert_string_equal(ctx.seen[0], "c/1");
	}
	store_abort(txn);
}

static void
test_del_prefix(void **state)
{
	store_txn *txn;
	char key[32];
	int n;

	/* Enough keys to span many pages. */
	txn = store_begin(1);
	for (int i = 0; i < 3000; i++) {
		n = snprintf(key, sizeof(key), "user/%05d", i);
		assert_int_equal(store_put(txn, "t_delp", key, (size_t)n,
		    "0123456789abcdef0123456789abcdef", 32), 0);
	}
	assert_int_equal(store_put(txn, "t_delp", "user", 4, "x", 1), 0);
	assert_int_equal(store_put(txn, "t_delp", "user0", 5, "x", 1), 0);
	assert_int_equal(store_put(txn, "t_delp", "usez", 4, "x", 1), 0);
	assert_int_equal(store_commit(txn), 0);

	txn = store_begin(1);
	assert_int_equal(store_del_prefix(txn, "t_delp", "user/", 5), 3000);
	assert_int_equal(store_del_prefix(txn, "t_delp", "user/", 5), 0);
	assert_int_equal(store_commit(txn), 0);

	txn = store_begin(0);
	n = 0;
	assert_int_equal(store_scan(txn, "t_delp", "", 0, count_cb, &n), 0);
	assert_int_equal(n, 3);
	store_abort(txn);
	assert_int_equal(get1("t_delp", "user0", "x"), 0);

	txn = store_begin(1);
	assert_int_equal(store_del_prefix(txn, "t_delp", "", 0), 3);
	store_abort(txn);
	assert_int_equal(get1("t_delp", "usez", "x"), 0);
}

static void
test_keys(void **state)
{
	struct store_key a, b, c;
	store_txn *txn;
	char part[600];
	size_t len;

	store_key_init(&a);
	assert_int_equal(store_key_add(&a, "a"), 0);
	assert_int_equal(store_key_add(&a, "bc"), 0);
	store_key_init(&b);
	assert_int_equal(store_key_add(&b, "ab"), 0);
	assert_int_equal(store_key_add(&b, "c"), 0);
	assert_int_equal(a.len, 5);
	assert_int_equal(b.len, 5);
	assert_memory_equal(a.buf, "a\0bc\0", 5);
	assert_memory_not_equal(a.buf, b.buf, 5);

	txn = store_begin(1);
	assert_int_equal(store_put(txn, "t_keys", a.buf, a.len, "A", 1), 0);
	assert_int_equal(store_put(txn, "t_keys", b.buf, b.len, "B", 1), 0);
	assert_int_equal(store_commit(txn), 0);
	assert_int_equal(get1("t_keys", "a", NULL), 1);
	{
		const void *v;
		size_t vl;
		int n = 0;

		txn = store_begin(0);
		assert_int_equal(store_get(txn, "t_keys", a.buf, a.len, &v,
		    &vl), 0);
		assert_memory_equal(v, "A", 1);
		assert_int_equal(store_get(txn, "t_keys", b.buf, b.len, &v,
		    &vl), 0);
		assert_memory_equal(v, "B", 1);
		/* "a" NUL is a prefix of the first key only. */
		assert_int_equal(store_scan(txn, "t_keys", "a", 2, count_cb,
		    &n), 0);
		assert_int_equal(n, 1);
		store_abort(txn);
	}

	/* u64 parts are big-endian: byte order is numeric order. */
	store_key_init(&a);
	store_key_add(&a, "h");
	assert_int_equal(store_key_add_u64(&a, 0x0102030405060708ULL), 0);
	assert_int_equal(a.len, 10);
	assert_memory_equal(a.buf, "h\0\1\2\3\4\5\6\7\x08", 10);
	store_key_init(&b);
	store_key_add_u64(&b, 255);
	store_key_init(&c);
	store_key_add_u64(&c, 256);
	assert_true(memcmp(b.buf, c.buf, 8) < 0);

	/* 511 bytes is the most LMDB takes; a part that would pass it is
	 * refused and leaves the key as it was. */
	store_key_init(&a);
	memset(part, 'x', sizeof(part));
	part[509] = '\0';
	assert_int_equal(store_key_add(&a, part), 0);
	assert_int_equal(a.len, 510);
	assert_int_equal(store_key_add(&a, "y"), -1);
	assert_int_equal(store_key_add_u64(&a, 1), -1);
	assert_int_equal(a.len, 510);
	assert_int_equal(store_key_add(&a, ""), 0);
	assert_int_equal(a.len, 511);
	len = a.len;
	assert_int_equal(store_key_add(&a, ""), -1);
	assert_int_equal(a.len, len);
	txn = store_begin(1);
	assert_int_equal(store_put(txn, "t_keys", a.buf, a.len, "L", 1), 0);
	assert_int_equal(store_commit(txn), 0);
}

/* A read transaction older than a table sees it empty, as its snapshot
 * holds it; a newer one sees the data. */
static void
test_table_newer_than_reader(void **state)
{
	store_txn *old, *txn;
	int n = 0;

	old = store_begin(0);
	assert_non_null(old);
	put("t_late", "k", "v");
	assert_int_equal(get(old, "t_late", "k", NULL), 1);
	assert_int_equal(store_scan(old, "t_late", "", 0, count_cb, &n), 0);
	assert_int_equal(n, 0);
	store_abort(old);
	assert_int_equal(get1("t_late", "k", "v"), 0);

	/* Same with a table first named by the old reader itself: it is
	 * created on the spot, in a write transaction of its own. */
	old = store_begin(0);
	assert_int_equal(get(old, "t_late2", "k", NULL), 1);
	put("t_late2", "k", "v");
	assert_int_equal(get(old, "t_late2", "k", NULL), 1);
	store_abort(old);
	assert_int_equal(get1("t_late2", "k", "v"), 0);

	/* A table created in a write transaction that aborts is dropped
	 * with it, and can be created again. */
	txn = store_begin(1);
	assert_int_equal(store_put(txn, "t_ghost", "k", 1, "v", 1), 0);
	assert_int_equal(get(txn, "t_ghost", "k", "v"), 0);
	store_abort(txn);
	assert_int_equal(get1("t_ghost", "k", NULL), 1);
	put("t_ghost", "k", "w");
	assert_int_equal(get1("t_ghost", "k", "w"), 0);
}

/*
 * One thread holds a write transaction and opens a new table in it while
 * another thread's reader needs a different new table (and so waits for
 * the writer lock). Neither may wait for the other. Then many threads
 * open, write and read shared tables at once.
 *
 * The writer goes on only once the reader is seen asleep in the kernel (a
 * futex wait, /proc/self/task/TID/syscall) for a while after it said it
 * was about to read: nothing but the writer lock that the writer holds
 * can keep it there, so the second table is opened while the reader
 * waits for that lock, whatever the machine's load. A deadlock (the two
 * waiting for each other) ends the run through alarm(2) rather than
 * hanging it.
 */
struct writer_arg {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stage;
	pid_t reader_tid;
};

static void
deadlock_alarm(int sig)
{
	static const char msg[] = "t-store: test_threads: no progress for 60 s: "
	    "the writer and the reader wait for each other\n";

	(void)sig;
	(void)write(2, msg, sizeof(msg) - 1);
	_exit(1);
}

/*
 * 1 if thread tid is blocked in a futex wait (the system call number
 * /proc shows for a thread asleep in a system call), 0 if not, -1 if /proc
 * cannot tell.
 */
static int
thread_in_futex(pid_t tid)
{
	char path[64], buf[64];
	FILE *f;
	long nr;
	int r = -1;

	snprintf(path, sizeof(path), "/proc/self/task/%ld/syscall", (long)tid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) != NULL)
		r = sscanf(buf, "%ld", &nr) == 1 && nr == SYS_futex;
	fclose(f);
	return r;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

static int
stage_of(struct writer_arg *w)
{
	int stage;

	pthread_mutex_lock(&w->lock);
	stage = w->stage;
	pthread_mutex_unlock(&w->lock);
	return stage;
}

/* Waits (at most 30 s) until the reader has been in a futex wait for 50
 * ms without a break. 1 when seen; 0, with the reason printed, if not. */
static int
wait_blocked(struct writer_arg *w)
{
	int seen = 0;

	for (int i = 0; i < 30000; i++) {
		int r = thread_in_futex(w->reader_tid);

		if (stage_of(w) == 3) {
			print_message("# the reader read a new table without "
			    "waiting for the writer lock\n");
			return 0;
		}
		if (r < 0) {
			print_message("# cannot read /proc/self/task/%ld/syscall\n",
			    (long)w->reader_tid);
			return 0;
		}
		seen = r ? seen + 1 : 0;
		if (seen == 50)
			return 1;
		sleep_ms(1);
	}
	print_message("# the reader never waited for the writer lock\n");
	return 0;
}

static void *
reader_thread(void *p)
{
	struct writer_arg *w = p;
	store_txn *txn;
	int rc;

	pthread_mutex_lock(&w->lock);
	while (w->stage < 1)
		pthread_cond_wait(&w->cond, &w->lock);
	w->reader_tid = (pid_t)syscall(SYS_gettid);
	w->stage = 2;           /* about to read: nothing left to wait for */
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	txn = store_begin(0);
	rc = get(txn, "t_thr_b", "k", NULL);	/* waits for the writer */
	store_abort(txn);
	pthread_mutex_lock(&w->lock);
	w->stage = 3;
	pthread_mutex_unlock(&w->lock);
	return (void *)(intptr_t)rc;
}

#define STRESS_THREADS	8
#define STRESS_TABLES	6
#define STRESS_ROUNDS	40

static void *
stress_thread(void *p)
{
	int id = (int)(intptr_t)p;
	char table[32], key[32], val[32];
	int bad = 0;

	for (int r = 0; r < STRESS_ROUNDS; r++) {
		store_txn *txn;
		const void *v;
		size_t vl;
		int rc;

		snprintf(table, sizeof(table), "t_stress%d",
		    (id + r) % STRESS_TABLES);
		snprintf(key, sizeof(key), "%d/%d", id, r);
		snprintf(val, sizeof(val), "v%d", r);
		if ((r + id) % 2 == 0) {
			/* Read first: the table may be new to us. */
			txn = store_begin(0);
			rc = store_get(txn, table, key, strlen(key), &v, &vl);
			store_abort(txn);
			bad += rc != 1;
		}
		txn = store_begin(1);
		bad += store_put(txn, table, key, strlen(key), val,
		    strlen(val)) != 0;
		bad += store_commit(txn) != 0;
		txn = store_begin(0);
		rc = store_get(txn, table, key, strlen(key), &v, &vl);
		bad += rc != 0 || vl != strlen(val) ||
		    memcmp(v, val, vl) != 0;
		store_abort(txn);
	}
	return (void *)(intptr_t)bad;
}

static void
test_threads(void **state)
{
	struct writer_arg w = { PTHREAD_MUTEX_INITIALIZER,
	    PTHREAD_COND_INITIALIZER, 0, 0 };
	pthread_t th[STRESS_THREADS];
	int want[STRESS_TABLES] = { 0 };
	store_txn *txn;
	void *ret;
	int blocked;

	assert_int_equal(pthread_create(&th[0], NULL, reader_thread, &w), 0);
	txn = store_begin(1);
	assert_non_null(txn);
	assert_int_equal(store_put(txn, "t_thr_a", "k", 1, "v", 1), 0);
	signal(SIGALRM, deadlock_alarm);
	alarm(60);
	pthread_mutex_lock(&w.lock);
	w.stage = 1;
	pthread_cond_signal(&w.cond);
	while (w.stage < 2)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	/* The reader waits for the writer lock this thread holds. (Checked
	 * after the commit, so that a failure leaves no transaction open.) */
	blocked = wait_blocked(&w);
	assert_int_equal(store_put(txn, "t_thr_a2", "k", 1, "v", 1), 0);
	assert_int_equal(store_commit(txn), 0);
	assert_int_equal(pthread_join(th[0], &ret), 0);
	alarm(0);
	signal(SIGALRM, SIG_DFL);
	assert_true(blocked);
	assert_int_equal((intptr_t)ret, 1);
	assert_int_equal(get1("t_thr_a2", "k", "v"), 0);

	for (int i = 0; i < STRESS_THREADS; i++)
		for (int r = 0; r < STRESS_ROUNDS; r++)
			want[(i + r) % STRESS_TABLES]++;
	for (int i = 0; i < STRESS_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, stress_thread,
		    (void *)(intptr_t)i), 0);
	for (int i = 0; i < STRESS_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_int_equal((intptr_t)ret, 0);
	}
	for (int t = 0; t < STRESS_TABLES; t++) {
		char table[32];
		int n = 0;

		snprintf(table, sizeof(table), "t_stress%d", t);
		txn = store_begin(0);
		assert_int_equal(store_scan(txn, table, "", 0, count_cb, &n),
		    0);
		store_abort(txn);
		assert_int_equal(n, want[t]);
	}
}

static void
test_reopen(void **state)
{
	const char *error = NULL;

	put("t_reopen", "durable", "yes");
	store_close();
	assert_false(store_is_open());
	assert_null(store_begin(0));
	assert_int_equal(store_open(dbdir, 0, &error), 0);
	assert_int_equal(store_open(dbdir, 0, &error), -1);	/* twice */
	assert_true(store_is_open());
	assert_int_equal(get1("t_reopen", "durable", "yes"), 0);
	assert_int_equal(get1("t_basic", "k2", "v2"), 0);
	assert_int_equal(get1("t_reopen", "other", NULL), 1);
}

/* -------------------------------------------------------------- accounts */

struct list_ctx {
	char names[8][32];
	int n;
};

static void
list_cb(void *ud, const char *node)
{
	struct list_ctx *ctx = ud;

	assert_true(ctx->n < 8);
	snprintf(ctx->names[ctx->n++], 32, "%s", node);
}

static void
test_accounts(void **state)
{
	const char *error = NULL;
	struct list_ctx ctx;

	assert_int_equal(account_exists("juliet", "example.com"), 0);
	assert_int_equal(account_create("juliet", "example.com", "r0meo",
	    &error), 0);
	assert_int_equal(account_exists("juliet", "example.com"), 1);
	assert_int_equal(account_exists("juliet", "example.net"), 0);
	assert_int_equal(account_exists("julie", "example.com"), 0);

	error = NULL;
	assert_int_equal(account_create("juliet", "example.com", "other",
	    &error), -1);
	assert_string_equal(error, "exists");

	assert_int_equal(account_check_password("juliet", "example.com",
	    "r0meo"), 1);
	assert_int_equal(account_check_password("juliet", "example.com",
	    "r0meo "), 0);
	assert_int_equal(account_check_password("juliet", "example.com",
	    "other"), 0);
	assert_int_equal(account_check_password("juliet", "example.com", ""),
	    0);
	assert_int_equal(account_check_password("nobody", "example.com",
	    "r0meo"), 0);
	/* SASLprep (RFC 4013) maps SOFT HYPHEN to nothing, and refuses
	 * control characters. */
	assert_int_equal(account_check_password("juliet", "example.com",
	    "r0\xc2\xadmeo"), 1);
	assert_int_equal(account_check_password("juliet", "example.com",
	    "r0meo\x01"), 0);

	assert_int_equal(account_set_password("juliet", "example.com",
	    "n3w", &error), 0);
	assert_int_equal(account_check_password("juliet", "example.com",
	    "r0meo"), 0);
	assert_int_equal(account_check_password("juliet", "example.com",
	    "n3w"), 1);
	error = NULL;
	assert_int_equal(account_set_password("nobody", "example.com", "x",
	    &error), -1);
	assert_string_equal(error, "not found");
	assert_int_equal(account_exists("nobody", "example.com"), 0);

	assert_int_equal(account_create("romeo", "example.com", "j",
	    &error), 0);
	assert_int_equal(account_create("benvolio", "example.com", "j",
	    &error), 0);
	assert_int_equal(account_create("tybalt", "example.net", "j",
	    &error), 0);
	/* "example.co" must not list "example.com"'s accounts. */
	assert_int_equal(account_create("x", "example.co", "j", &error), 0);
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(account_list("example.com", list_cb, &ctx), 3);
	assert_string_equal(ctx.names[0], "benvolio");
	assert_string_equal(ctx.names[1], "juliet");
	assert_string_equal(ctx.names[2], "romeo");
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(account_list("example.org", list_cb, &ctx), 0);

	assert_int_equal(account_delete("romeo", "example.com", &error), 0);
	assert_int_equal(account_exists("romeo", "example.com"), 0);
	assert_int_equal(account_check_password("romeo", "example.com", "j"),
	    0);
	error = NULL;
	assert_int_equal(account_delete("romeo", "example.com", &error), -1);
	assert_string_equal(error, "not found");

	/* Refused before the store is touched. */
	assert_int_equal(account_create("", "example.com", "x", &error), -1);
	assert_int_equal(account_create("a", "example.com", "", &error), -1);
	assert_int_equal(account_create("a", "example.com", "bad\x01",
	    &error), -1);
	assert_int_equal(account_exists("a", "example.com"), 0);
}

static void
test_account_record(void **state)
{
	static const char password[] = "correct horse battery staple 7f3a";
	const char *error = NULL;
	struct account_scram s1, s256;
	unsigned char stored[32], server[32];
	struct store_key k;
	store_txn *txn;
	const unsigned char *val;
	size_t vlen;
	char path[256];
	FILE *fp;
	char *file;
	long fsize;

	assert_int_equal(account_create("mercutio", "example.com", password,
	    &error), 0);

	/* The layout of account.h, version 1. */
	store_key_init(&k);
	store_key_add(&k, "example.com");
	store_key_add(&k, "mercutio");
	txn = store_begin(0);
	assert_int_equal(store_get(txn, "accounts", k.buf, k.len,
	    (const void **)&val, &vlen), 0);
	assert_int_equal(vlen, 1 + 4 + 1 + 16 + 40 + 64 + 8);
	assert_int_equal(val[0], 1);
	assert_memory_equal(val + 1, "\0\0\x10\0", 4);	/* 4096 */
	assert_int_equal(val[5], 16);
	assert_null(memmem(val, vlen, password, strlen(password)));
	assert_null(memmem(val, vlen, "correct", 7));

	assert_int_equal(account_get_scram("mercutio", "example.com",
	    ACCOUNT_SHA1, &s1), 0);
	assert_int_equal(account_get_scram("mercutio", "example.com",
	    ACCOUNT_SHA256, &s256), 0);
	assert_int_equal(s1.key_len, 20);
	assert_int_equal(s256.key_len, 32);
	assert_int_equal(s1.iterations, 4096);
	assert_int_equal(s1.salt_len, 16);
	assert_memory_equal(s1.salt, val + 6, 16);
	assert_memory_equal(s256.salt, val + 6, 16);
	assert_memory_equal(s1.stored_key, val + 22, 20);
	assert_memory_equal(s1.server_key, val + 42, 20);
	assert_memory_equal(s256.stored_key, val + 62, 32);
	assert_memory_equal(s256.server_key, val + 94, 32);
	store_abort(txn);

	/* The stored secrets are the ones the password derives to. */
	assert_int_equal(account_derive(ACCOUNT_SHA1, password, 4096, s1.salt,
	    s1.salt_len, stored, server), 0);
	assert_memory_equal(stored, s1.stored_key, 20);
	assert_memory_equal(server, s1.server_key, 20);
	assert_int_equal(account_derive(ACCOUNT_SHA256, password, 4096,
	    s256.salt, s256.salt_len, stored, server), 0);
	assert_memory_equal(stored, s256.stored_key, 32);
	assert_memory_equal(server, s256.server_key, 32);
	assert_int_equal(account_get_scram("nobody", "example.com",
	    ACCOUNT_SHA256, &s256), 1);

	/* A fresh salt per account and per password change. */
	assert_int_equal(account_create("mercutio2", "example.com", password,
	    &error), 0);
	assert_int_equal(account_get_scram("mercutio2", "example.com",
	    ACCOUNT_SHA256, &s256), 0);
	assert_memory_not_equal(s256.salt, s1.salt, 16);

	/* Nor anywhere in the database file. */
	snprintf(path, sizeof(path), "%s/data.mdb", dbdir);
	assert_non_null(fp = fopen(path, "rb"));
	fseek(fp, 0, SEEK_END);
	fsize = ftell(fp);
	rewind(fp);
	assert_non_null(file = malloc((size_t)fsize));
	assert_int_equal(fread(file, 1, (size_t)fsize, fp), (size_t)fsize);
	fclose(fp);
	assert_non_null(memmem(file, (size_t)fsize, "mercutio", 8));
	assert_null(memmem(file, (size_t)fsize, password, strlen(password)));
	free(file);
}

/* ------------------------------------------------------------------ SCRAM */

static size_t
b64dec(const char *in, unsigned char *out)
{
	size_t len = strlen(in);
	int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);

	assert_true(n >= 0);
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	while (len > 0 && in[--len] == '=')
		n--;
	return (size_t)n;
}

/*
 * Checks one exchange of RFC 5802 5 from the server's side with the
 * secrets account_derive produces: the client's proof verifies against
 * StoredKey, and ServerSignature is the one the RFC sends.
 */
static void
check_scram_vector(enum account_hash hash, const char *salt_b64,
    const char *auth_message, const char *proof_b64, const char *v_b64)
{
	const EVP_MD *md = hash == ACCOUNT_SHA1 ? EVP_sha1() : EVP_sha256();
	size_t len = hash == ACCOUNT_SHA1 ? 20 : 32;
	unsigned char salt[64], stored[32], server[32], proof[64], v[64];
	unsigned char sig[EVP_MAX_MD_SIZE], client_key[32], h[EVP_MAX_MD_SIZE];
	unsigned int siglen, hlen;
	size_t salt_len;

	salt_len = b64dec(salt_b64, salt);
	assert_int_equal(account_derive(hash, "pencil", 4096, salt, salt_len,
	    stored, server), 0);

	/* ServerSignature := HMAC(ServerKey, AuthMessage) */
	assert_int_equal(b64dec(v_b64, v), len);
	assert_non_null(HMAC(md, server, (int)len,
	    (const unsigned char *)auth_message, strlen(auth_message), sig,
	    &siglen));
	assert_int_equal(siglen, len);
	assert_memory_equal(sig, v, len);

	/* ClientKey := ClientProof XOR HMAC(StoredKey, AuthMessage);
	 * H(ClientKey) must be StoredKey. */
	assert_int_equal(b64dec(proof_b64, proof), len);
	assert_non_null(HMAC(md, stored, (int)len,
	    (const unsigned char *)auth_message, strlen(auth_message), sig,
	    &siglen));
	for (size_t i = 0; i < len; i++)
		client_key[i] = proof[i] ^ sig[i];
	assert_int_equal(EVP_Digest(client_key, len, h, &hlen, md, NULL), 1);
	assert_int_equal(hlen, len);
	assert_memory_equal(h, stored, len);
}

/* RFC 7677 3. */
static void
test_scram_sha256_vector(void **state)
{
	check_scram_vector(ACCOUNT_SHA256, "W22ZaJ0SNY7soEsUEjb6gQ==",
	    "n=user,r=rOprNGfwEbeRWgbNEkqO,"
	    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
	    "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
	    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
	    "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	    "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

/* RFC 5802 5. */
static void
test_scram_sha1_vector(void **state)
{
	check_scram_vector(ACCOUNT_SHA1, "QSXCR+Q6sek8bf92",
	    "n=user,r=fyko+d2lbbFgONRv9qkxdawL,"
	    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
	    "s=QSXCR+Q6sek8bf92,i=4096,"
	    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
	    "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
	    "rmF9pqV8S7suAoZWja4dJRkFsKQ=");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_abort),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_scan),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_del_prefix),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_table_newer_than_reader),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_reopen),
		cmocka_unit_test(test_accounts),
		cmocka_unit_test(test_account_record),
		cmocka_unit_test(test_scram_sha256_vector),
		cmocka_unit_test(test_scram_sha1_vector),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
