/*
 * store.h - the LMDB data layer: one environment under spool_dir, one named
 * database per table.
 *
 * Keys are built by callers with store_key_* (unambiguous: each part is
 * followed by a NUL byte, so "a" + "bc" and "ab" + "c" differ). Values are
 * versioned records, a version byte first; the record layouts are the
 * callers' business (see auth/account.c).
 *
 * Transactions: any number of readers at once, one writer at a time (LMDB's
 * own lock). A write transaction is committed durably (fsync) before
 * store_commit returns. Transactions must not cross threads.
 */
#ifndef XMPPD_STORE_H
#define XMPPD_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct store_txn store_txn;

/* Opens (creating if needed) the environment in dir; map_size in bytes (0 =
 * default 1 GiB). Tables are opened on first use. */
int store_open(const char *dir, size_t map_size, const char **error_r);
void store_close(void);
int store_is_open(void);
/* The environment's pages in use and its map size, in bytes (the
 * xmppd_store_* gauges): read from LMDB's meta page, no transaction, any
 * thread. 0, or -1 when the store is not open. */
int store_size(uint64_t *used_r, uint64_t *map_r);
/* Calls fn(table, bytes, entries, arg) for each table the store has:
 * the bytes of its pages (branch, leaf, overflow) and its number of
 * records, in one read transaction. 0, or -1 when the store is not open. */
int store_table_stats(void (*fn)(const char *table, uint64_t bytes, uint64_t entries,
    void *arg), void *arg);

store_txn *store_begin(int write);
/* A transaction nested in a write transaction (LMDB's nested
 * transactions): what it writes becomes the parent's when it commits
 * (durable when the outermost one commits) and is undone when it aborts,
 * without touching the parent's other work. The parent must not be used
 * while the child is open. NULL on error. */
store_txn *store_begin_nested(store_txn *parent);
int store_commit(store_txn *txn);          /* 0 or -1; frees txn either way */
void store_abort(store_txn *txn);          /* frees txn; NULL allowed */

/* Returns 0 and the value (valid until the transaction ends), 1 if the key
 * is absent, -1 on error. */
int store_get(store_txn *txn, const char *table, const void *key, size_t klen,
    const void **val_r, size_t *vlen_r);
int store_put(store_txn *txn, const char *table, const void *key, size_t klen,
    const void *val, size_t vlen);
/* Returns 0 if deleted, 1 if absent, -1 on error. */
int store_del(store_txn *txn, const char *table, const void *key, size_t klen);

/* Calls fn for every key starting with prefix, in key order, until fn
 * returns non-zero (which is then returned). 0 after the last key, -1 on
 * error. */
typedef int (*store_scan_fn)(void *ud, const void *key, size_t klen,
    const void *val, size_t vlen);
int store_scan(store_txn *txn, const char *table, const void *prefix, size_t plen,
    store_scan_fn fn, void *ud);
/* The same over keys starting with prefix from start (inclusive; slen 0:
 * the first key, or the last when reverse), forward or backward in key
 * order. A start outside the prefix begins at the prefix's nearest end. */
int store_range(store_txn *txn, const char *table, const void *prefix, size_t plen,
    const void *start, size_t slen, int reverse, store_scan_fn fn, void *ud);
/* Deletes every key starting with prefix; returns how many, or -1. */
long store_del_prefix(store_txn *txn, const char *table, const void *prefix, size_t plen);

/* A key being built: parts are appended each followed by a NUL byte. */
struct store_key {
	size_t len;
	char buf[3 * 1024 + 64];
};
void store_key_init(struct store_key *k);
/* Returns -1 if the key would overflow LMDB's 511-byte key limit. */
int store_key_add(struct store_key *k, const char *part);
int store_key_add_u64(struct store_key *k, uint64_t v);  /* big-endian */

#endif
