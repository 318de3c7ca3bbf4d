/*
 * mam_ctl.c - xmppctl archive (count, purge, expiry) of mod_mam.
 *
 * Control commands run on the main thread, where the asynchronous store
 * does not answer; they use the synchronous xmppd_store_* (allowed there)
 * in bounded transactions: a purge deletes PURGE_CHUNK messages (and
 * their index rows) per transaction, committing between them, so that the
 * workers' group commits wait for one chunk at most.
 *
 * The retention purge (archive_expiry, or a user's own from xmppctl archive
 * expiry) is mam_purge.c.
 */
#define _GNU_SOURCE             /* vasprintf */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "mam.h"
#include "strfmt.h"

#define CTL_USAGE "archive count USER@HOST | archive purge USER@HOST [BEFORE-DATE] | " \
	"archive expiry USER@HOST SECONDS|default"
#define PURGE_CHUNK 1000

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
		*out_r = strfmt("usage: %s", CTL_USAGE);
		goto out;
	}
	host = xmppd_jid_domain(user);
	bare = xmppd_jid_bare(user);
	if (!xmppd_user_exists(node, host)) {
		*out_r = strfmt("%s: no such account", bare);
		goto out;
	}
	if ((plen = mam_user_prefix(prefix, host, node)) == 0) {
		*out_r = strfmt("%s: too long", bare);
		goto out;
	}
	if (strcmp(sub, "count") == 0 && argc == 3) {
		struct counter c = { plen, 0 };
		xmppd_txn *txn = xmppd_store_begin(0);

		if (txn == NULL || xmppd_store_scan(txn, MAM_TABLE, prefix, plen, count_row, &c) < 0) {
			xmppd_store_abort(txn);
			*out_r = strfmt("%s: the store failed", bare);
			goto out;
		}
		xmppd_store_abort(txn);
		*out_r = strfmt("%lu\n", c.n);
		rc = 0;
	} else if (strcmp(sub, "purge") == 0 && (argc == 3 || argc == 4)) {
		int64_t before = 0;
		long n;

		if (argc == 4 && mam_date_parse(argv[3], &before) < 0) {
			*out_r = strfmt("%s: not a date (XEP-0082, e.g. 2024-01-31T00:00:00Z)", argv[3]);
			goto out;
		}
		n = argc == 4 ? purge_before(host, node, prefix, plen, (uint64_t)before) :
		    purge_all(host, node, prefix, plen);
		if (n < 0) {
			*out_r = strfmt("%s: the store failed", bare);
			goto out;
		}
		*out_r = strfmt("%ld\n", n);
		rc = 0;
	} else if (strcmp(sub, "expiry") == 0 && argc == 4) {
		int64_t e = -1;
		char *end;

		if (strcmp(argv[3], "default") != 0) {
			long long v = strtoll(argv[3], &end, 10);

			if (*argv[3] < '0' || *argv[3] > '9' || *end != '\0' || v < 0 ||
			    v > 20LL * 365 * 86400) {
				*out_r = strfmt("%s: seconds (0 keeps for ever) or default", argv[3]);
				goto out;
			}
			e = v;
		}
		if (set_expiry(bare, prefix, plen, e) < 0) {
			*out_r = strfmt("%s: the store failed", bare);
			goto out;
		}
		*out_r = strfmt("%s: %lld\n", bare, (long long)mam_expiry_of(bare));
		rc = 0;
	} else
		*out_r = strfmt("usage: %s", CTL_USAGE);
out:
	xmppd_jid_free(user);
	return rc;
}

int
mam_ctl_register(xmppd_ctx *ctx)
{
	return xmppd_ctl_register(ctx, "archive", CTL_USAGE, archive_ctl, NULL);
}
