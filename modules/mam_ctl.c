/*
 * mam_ctl.c - xmppctl archive (count, purge, expiry), and the retention
 * purge.
 *
 * Control commands run on the main thread, where the asynchronous store
 * does not answer; they use the synchronous xmppd_store_* (allowed there)
 * in bounded transactions: a purge deletes PURGE_CHUNK messages (and
 * their index rows) per transaction, committing between them, so that the
 * workers' group commits wait for one chunk at most.
 *
 * Retention (archive_expiry, or a user's own from xmppctl archive
 * expiry): one walk over table mam at a time, on worker 0 (a timer), a
 * step per tick. A step looks up the next user with an archive (a range
 * read of one row from the walk's cursor); if that user's expiry is not 0
 * it reads up to PURGE_ROWS of the user's oldest messages (they are in id
 * = time order) and deletes those older than the expiry with their index
 * rows, in one batch; the user is done when a read finds fewer. A step
 * costs one read of PURGE_ROWS rows and one batch at most, so the purge
 * never holds a worker long; a walk starts purge_interval seconds after
 * the last one ended. Deleting old rows never meets new ones: new ids are
 * later than any cut-off.
 */
#define _GNU_SOURCE             /* vasprintf */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "mam.h"

#define CTL_USAGE "archive count USER@HOST | archive purge USER@HOST [BEFORE-DATE] | " \
	"archive expiry USER@HOST SECONDS|default"
#define PURGE_CHUNK 1000
#define PURGE_ROWS 500
#define PURGE_STEP_MS 20
#define PURGE_USERS_PER_STEP 100

static char *
msg(const char *fmt, ...) XMPPD_PRINTF(1, 2);

static char *
msg(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* ---------------------------------------------------------------- */
/* xmppctl archive.                                                   */

struct counter {
	size_t plen;
	unsigned long n;
};

static int
count_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct counter *c = ud;

	if (klen == c->plen + MAM_ID_LEN)
		c->n++;
	return 0;
}

struct chunk {
	size_t plen;
	uint64_t before;
	size_t n;
	char (*keys)[MAM_KEY_MAX];
	size_t *klens;
	unsigned char **vals;
	size_t *vlens;
};

static int
chunk_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct chunk *c = ud;

	if (klen != c->plen + MAM_ID_LEN)
		return 0;
	if (mam_get_id((const unsigned char *)key + c->plen) >= c->before)
		return 1;               /* in id = time order: the rest is newer */
	if ((c->vals[c->n] = malloc(vlen ? vlen : 1)) == NULL)
		return -1;
	memcpy(c->keys[c->n], key, klen);
	c->klens[c->n] = klen;
	memcpy(c->vals[c->n], val, vlen);
	c->vlens[c->n] = vlen;
	return ++c->n >= PURGE_CHUNK;
}

static void
txn_del(const char *table, const void *key, size_t klen, void *ud)
{
	(void)xmppd_store_del(ud, table, key, klen);
}

/* Deletes the messages of the user before `before` (us), chunk by
 * chunk. The number deleted, or -1. */
static long
purge_before(const char *host, const char *node, const char *prefix, size_t plen,
    uint64_t before)
{
	struct chunk c = { plen, before, 0, NULL, NULL, NULL, NULL };
	long total = 0;
	int r = 0;

	c.keys = malloc(PURGE_CHUNK * sizeof(*c.keys));
	c.klens = malloc(PURGE_CHUNK * sizeof(*c.klens));
	c.vals = calloc(PURGE_CHUNK, sizeof(*c.vals));
	c.vlens = malloc(PURGE_CHUNK * sizeof(*c.vlens));
	if (c.keys == NULL || c.klens == NULL || c.vals == NULL || c.vlens == NULL) {
		total = -1;
		goto out;
	}
	do {
		xmppd_txn *txn = xmppd_store_begin(1);

		c.n = 0;
		if (txn == NULL) {
			total = -1;
			break;
		}
		/* The scan only reads; the deletes follow it. */
		r = xmppd_store_scan(txn, MAM_TABLE, prefix, plen, chunk_row, &c);
		for (size_t i = 0; r >= 0 && i < c.n; i++) {
			uint64_t id = mam_get_id((unsigned char *)c.keys[i] + plen);

			if (xmppd_store_del(txn, MAM_TABLE, c.keys[i], c.klens[i]) < 0)
				r = -1;
			else
				mam_index_keys(host, node, id, c.vals[i], c.vlens[i], txn_del, txn);
		}
		for (size_t i = 0; i < c.n; i++) {
			free(c.vals[i]);
			c.vals[i] = NULL;
		}
		if (r < 0) {
			xmppd_store_abort(txn);
			total = -1;
			break;
		}
		if (xmppd_store_commit(txn) < 0) {
			total = -1;
			break;
		}
		total += (long)c.n;
	} while (c.n == PURGE_CHUNK);
out:
	free(c.keys);
	free(c.klens);
	free(c.vals);
	free(c.vlens);
	return total;
}

/* Everything of the user's archive (the preferences stay). */
static long
purge_all(const char *host, const char *node, const char *prefix, size_t plen)
{
	xmppd_txn *txn = xmppd_store_begin(1);
	long n;

	if (txn == NULL)
		return -1;
	if ((n = xmppd_store_del_prefix(txn, MAM_TABLE, prefix, plen)) < 0 ||
	    xmppd_store_del_prefix(txn, MAM_TABLE_WITH, prefix, plen) < 0 ||
	    xmppd_store_del_prefix(txn, MAM_TABLE_FT, prefix, plen) < 0) {
		xmppd_store_abort(txn);
		return -1;
	}
	return xmppd_store_commit(txn) < 0 ? -1 : n;
}

static int
set_expiry(const char *bare, const char *prefix, size_t plen, int64_t expiry)
{
	struct mam_prefs p;
	unsigned char *val;
	xmppd_txn *txn;
	size_t vlen;
	int r = -1;

	if (mam_prefs_get_raw(bare, &p) < 0)
		return -1;
	p.expiry = expiry;
	if ((val = mam_prefs_encode(&p, &vlen)) == NULL) {
		mam_prefs_clear(&p);
		return -1;
	}
	if ((txn = xmppd_store_begin(1)) != NULL) {
		if (xmppd_store_put(txn, MAM_TABLE_PREFS, prefix, plen, val, vlen) < 0)
			xmppd_store_abort(txn);
		else
			r = xmppd_store_commit(txn);
	}
	free(val);
	if (r == 0)
		mam_prefs_cache_put(bare, &p);
	else
		mam_prefs_clear(&p);
	return r;
}

static int
archive_ctl(int argc, char **argv, char **out_r, void *ud)
{
	char prefix[MAM_KEY_MAX];
	const char *sub = argc > 1 ? argv[1] : "", *node, *host, *bare;
	xmppd_jid *user = NULL;
	size_t plen;
	int rc = -1;

	*out_r = NULL;
	if (argc < 3 || (user = xmppd_jid_parse(argv[2])) == NULL ||
	    (node = xmppd_jid_node(user)) == NULL) {
		*out_r = msg("usage: %s", CTL_USAGE);
		goto out;
	}
	host = xmppd_jid_domain(user);
	bare = xmppd_jid_bare(user);
	if (!xmppd_user_exists(node, host)) {
		*out_r = msg("%s: no such account", bare);
		goto out;
	}
	if ((plen = mam_user_prefix(prefix, host, node)) == 0) {
		*out_r = msg("%s: too long", bare);
		goto out;
	}
	if (strcmp(sub, "count") == 0 && argc == 3) {
		struct counter c = { plen, 0 };
		xmppd_txn *txn = xmppd_store_begin(0);

		if (txn == NULL || xmppd_store_scan(txn, MAM_TABLE, prefix, plen, count_row, &c) < 0) {
			xmppd_store_abort(txn);
			*out_r = msg("%s: the store failed", bare);
			goto out;
		}
		xmppd_store_abort(txn);
		*out_r = msg("%lu\n", c.n);
		rc = 0;
	} else if (strcmp(sub, "purge") == 0 && (argc == 3 || argc == 4)) {
		int64_t before = 0;
		long n;

		if (argc == 4 && mam_date_parse(argv[3], &before) < 0) {
			*out_r = msg("%s: not a date (XEP-0082, e.g. 2024-01-31T00:00:00Z)", argv[3]);
			goto out;
		}
		n = argc == 4 ? purge_before(host, node, prefix, plen, (uint64_t)before) :
		    purge_all(host, node, prefix, plen);
		if (n < 0) {
			*out_r = msg("%s: the store failed", bare);
			goto out;
		}
		*out_r = msg("%ld\n", n);
		rc = 0;
	} else if (strcmp(sub, "expiry") == 0 && argc == 4) {
		int64_t e = -1;
		char *end;

		if (strcmp(argv[3], "default") != 0) {
			long long v = strtoll(argv[3], &end, 10);

			if (*argv[3] < '0' || *argv[3] > '9' || *end != '\0' || v < 0 ||
			    v > 20LL * 365 * 86400) {
				*out_r = msg("%s: seconds (0 keeps for ever) or default", argv[3]);
				goto out;
			}
			e = v;
		}
		if (set_expiry(bare, prefix, plen, e) < 0) {
			*out_r = msg("%s: the store failed", bare);
			goto out;
		}
		*out_r = msg("%s: %lld\n", bare, (long long)mam_expiry_of(bare));
		rc = 0;
	} else
		*out_r = msg("usage: %s", CTL_USAGE);
out:
	xmppd_jid_free(user);
	return rc;
}

int
mam_ctl_register(xmppd_ctx *ctx)
{
	return xmppd_ctl_register(ctx, "archive", CTL_USAGE, archive_ctl, NULL);
}

/* ---------------------------------------------------------------- */
/* The retention purge (worker 0 only: no locks).                     */

static struct {
	int busy;                   /* a step is running */
	int walking;
	uint64_t next_walk_ms;
	char cursor[MAM_KEY_MAX + MAM_ID_LEN + 1];
	size_t clen;
	unsigned users;             /* looked at in this step */
	/* The user being purged. */
	char host[MAM_KEY_MAX], node[MAM_KEY_MAX];
	char prefix[MAM_KEY_MAX];
	size_t plen;
	uint64_t cutoff;
	size_t found, deleted;
	int more;
	xmppd_batch *b;
} pw;

static void step_find(void);

static void
walk_end(void)
{
	pw.walking = 0;
	pw.busy = 0;
	pw.next_walk_ms = xmppd_now_ms() + (uint64_t)xmppd_opt_int(mam_ctx, "purge_interval") * 1000;
}

/* The cursor past every key of the current user. */
static void
skip_user(void)
{
	memcpy(pw.cursor, pw.prefix, pw.plen);
	memset(pw.cursor + pw.plen, 0xff, MAM_ID_LEN);
	pw.cursor[pw.plen + MAM_ID_LEN] = '\0';
	pw.clen = pw.plen + MAM_ID_LEN + 1;
}

static void
batch_del(const char *table, const void *key, size_t klen, void *ud)
{
	(void)xmppd_batch_del(ud, table, key, klen);
}

static int
old_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	uint64_t id;

	if (klen != pw.plen + MAM_ID_LEN)
		return 0;
	id = mam_get_id((const unsigned char *)key + pw.plen);
	if (id >= pw.cutoff) {
		pw.more = 0;
		return 1;
	}
	if (pw.b == NULL && (pw.b = xmppd_batch_new(mam_ctx)) == NULL)
		return 1;
	(void)xmppd_batch_del(pw.b, MAM_TABLE, key, klen);
	mam_index_keys(pw.host, pw.node, id, val, vlen, batch_del, pw.b);
	return ++pw.found >= PURGE_ROWS;
}

static void
purged(int status, void *ud)
{
	if (status != XMPPD_STORE_OK)
		xmppd_log(mam_ctx, XMPPD_LOG_ERROR, "%s@%s: the expiry purge failed (store status "
		    "%d); tried again on the next walk", pw.node, pw.host, status);
	else
		xmppd_log(mam_ctx, XMPPD_LOG_DEBUG, "%s@%s: %zu expired messages deleted",
		    pw.node, pw.host, pw.found);
	if (status != XMPPD_STORE_OK || !pw.more)
		skip_user();
	pw.busy = 0;                /* the next tick goes on */
}

static void
old_done(int status, void *ud)
{
	xmppd_batch *b = pw.b;

	pw.b = NULL;
	if (status != XMPPD_STORE_OK || b == NULL) {
		xmppd_batch_free(b);
		if (status != XMPPD_STORE_OK || pw.found == 0)
			pw.more = 0;
		purged(status, NULL);
		return;
	}
	if (pw.found < PURGE_ROWS)
		pw.more = 0;
	if (xmppd_batch_submit(b, purged, NULL) < 0)
		purged(XMPPD_STORE_ERROR, NULL);
}

/* The next user with an archive, from the cursor. */
static int
user_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	*(int *)ud = 1;
	if ((pw.plen = mam_key_user(key, klen, pw.host, pw.node)) == 0 || pw.plen >= MAM_KEY_MAX) {
		/* Not a key of ours: past it. */
		memcpy(pw.cursor, key, klen);
		pw.cursor[klen] = '\0';
		pw.clen = klen + 1;
		pw.plen = 0;
		return 1;
	}
	memcpy(pw.prefix, key, pw.plen);
	return 1;
}

static void
user_found(int status, void *ud)
{
	int *found = ud;
	char bare[2 * MAM_KEY_MAX];
	int64_t expiry;
	int any = *found;

	free(found);
	if (status != XMPPD_STORE_OK || !any) {
		walk_end();
		return;
	}
	if (pw.plen == 0) {
		step_find();
		return;
	}
	snprintf(bare, sizeof(bare), "%s@%s", pw.node, pw.host);
	if ((expiry = mam_expiry_of(bare)) <= 0) {
		skip_user();
		if (++pw.users >= PURGE_USERS_PER_STEP)
			pw.busy = 0;        /* the next tick goes on */
		else
			step_find();
		return;
	}
	pw.cutoff = mam_now_us() - (uint64_t)expiry * 1000000u;
	pw.found = 0;
	pw.more = 1;
	if (xmppd_store_arange(mam_ctx, MAM_TABLE, pw.prefix, pw.plen, NULL, 0, 0, PURGE_ROWS,
	    old_row, old_done, NULL) < 0)
		walk_end();
}

static void
step_find(void)
{
	int *found = calloc(1, sizeof(*found));

	if (found == NULL || xmppd_store_arange(mam_ctx, MAM_TABLE, "", 0, pw.cursor, pw.clen, 0,
	    1, user_row, user_found, found) < 0) {
		free(found);
		walk_end();
	}
}

static uint64_t
purge_tick(void *ud)
{
	uint64_t now = xmppd_now_ms();

	if (pw.busy)
		return PURGE_STEP_MS;
	if (!pw.walking) {
		if (now < pw.next_walk_ms)
			return pw.next_walk_ms - now;
		pw.walking = 1;
		pw.clen = 0;
	}
	pw.busy = 1;
	pw.users = 0;
	step_find();
	return PURGE_STEP_MS;
}

int
mam_purge_start(xmppd_ctx *ctx)
{
	memset(&pw, 0, sizeof(pw));
	pw.next_walk_ms = xmppd_now_ms() + (uint64_t)xmppd_opt_int(ctx, "purge_interval") * 1000;
	return xmppd_timer_add(ctx, (uint64_t)xmppd_opt_int(ctx, "purge_interval") * 1000,
	    purge_tick, NULL) == NULL ? -1 : 0;
}
