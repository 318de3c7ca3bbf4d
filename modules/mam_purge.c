/*
 * mam_purge.c - the retention purge of an archive (compiled into every
 * module that keeps one: mod_mam, the users' archives, and mod_muc, the
 * rooms'; the tables are mam_arch's, the expiry mam_expiry_of's).
 *
 * One walk over the archive's table at a time, on worker 0 (a timer), a
 * step per tick. A step looks up the next owner with an archive (a range
 * read of one row from the walk's cursor); if that owner's expiry is not 0
 * it reads up to PURGE_ROWS of the owner's oldest messages (they are in id
 * = time order) and deletes those older than the expiry with their index
 * rows, in one batch; the owner is done when a read finds fewer. A step
 * costs one read of PURGE_ROWS rows and one batch at most, so the purge
 * never holds a worker long; a walk starts purge_interval seconds after
 * the last one ended. Deleting old rows never meets new ones: new ids are
 * later than any cut-off.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "mam.h"

#define PURGE_ROWS 500
#define PURGE_STEP_MS 20
#define PURGE_USERS_PER_STEP 100

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
	(void)xmppd_batch_del(pw.b, mam_arch.table, key, klen);
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
	if (xmppd_store_arange(mam_ctx, mam_arch.table, pw.prefix, pw.plen, NULL, 0, 0, PURGE_ROWS,
	    old_row, old_done, NULL) < 0)
		walk_end();
}

static void
step_find(void)
{
	int *found = calloc(1, sizeof(*found));

	if (found == NULL || xmppd_store_arange(mam_ctx, mam_arch.table, "", 0, pw.cursor, pw.clen, 0,
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
