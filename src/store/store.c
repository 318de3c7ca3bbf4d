/*
 * store.c - the LMDB data layer.
 *
 * One environment, one named database per table. Opening a named database
 * is the delicate part of LMDB (mdb_dbi_open(3)): the call must not run in
 * two transactions of the process at once, a handle opened in a
 * transaction is private to it until it commits, and a transaction only
 * sees the handles that were in the environment when it began. So:
 *
 * - store_open opens every table already on disk, before any other
 *   transaction exists;
 * - a table first used from a read transaction is created in a short
 *   write transaction of its own, committed under table_lock before the
 *   handle is published; the read transaction, which began earlier, sees
 *   the table as empty, which is what its snapshot holds;
 * - a table first used from a write transaction is created inside that
 *   transaction (a second write transaction would wait for the writer lock
 *   the thread already holds); the handle is published when it commits and
 *   dropped, as LMDB drops it, when it aborts.
 *
 * mdb_dbi_open runs only under table_lock, and only in write transactions
 * (after store_open), of which LMDB allows one at a time: that satisfies
 * both of its rules. table_lock is never held while waiting for LMDB's
 * writer lock, so the two cannot deadlock.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "core/log.h"
#include "store/store.h"

#define STORE_MAX_TABLES	64
#define STORE_TABLE_NAME_MAX	64
#define STORE_DEFAULT_MAP_SIZE	((size_t)1 << 30)
/* LMDB's default (and, as built by Debian, fixed) key limit. */
#define STORE_KEY_MAX		511

struct store_table {
	char name[STORE_TABLE_NAME_MAX + 1];
	MDB_dbi dbi;
};

/* A table created inside a write transaction, not yet published. */
struct store_pending {
	struct store_pending *next;
	struct store_table table;
};

struct store_txn {
	MDB_txn *txn;
	int write;
	struct store_pending *pending;
	struct store_txn *parent;      /* a nested transaction's */
};

static int	 table_name_ok(const char *);
static struct store_table *table_find(const char *);
static void	 table_publish(const char *, MDB_dbi);
static int	 table_dbi(store_txn *, const char *, MDB_dbi *, int *);
static int	 table_create_alone(const char *, MDB_dbi *);
static int	 open_existing_tables(void);
static int	 txn_visible(store_txn *, MDB_dbi);
static int	 has_prefix(const MDB_val *, const void *, size_t);

static MDB_env *env;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store_table tables[STORE_MAX_TABLES];
static size_t ntables;
/* Write transactions this thread holds: creating a table in a separate
 * write transaction then would wait for ourselves. */
static __thread int thread_writers;

/* ---------------------------------------------------------------- tables */

static int
table_name_ok(const char *name)
{
	size_t len;

	if (name == NULL)
		return 0;
	len = strlen(name);
	return len > 0 && len <= STORE_TABLE_NAME_MAX;
}

/* Called with table_lock held. */
static struct store_table *
table_find(const char *name)
{
	for (size_t i = 0; i < ntables; i++)
		if (strcmp(tables[i].name, name) == 0)
			return &tables[i];
	return NULL;
}

/* Called with table_lock held. Two threads may publish the same handle
 * (one created the table, the other found it after the commit). */
static void
table_publish(const char *name, MDB_dbi dbi)
{
	if (table_find(name) != NULL)
		return;
	if (ntables == STORE_MAX_TABLES) {
		/* mdb_env_set_maxdbs has the same limit, so LMDB would
		 * have refused the handle first. */
		log_error("store", "table %s: too many tables", name);
		return;
	}
	strcpy(tables[ntables].name, name);
	tables[ntables].dbi = dbi;
	ntables++;
}

/* Creates (or finds) a table in a write transaction of its own, for a
 * thread that holds no write transaction. */
static int
table_create_alone(const char *name, MDB_dbi *dbi_r)
{
	struct store_table *t;
	MDB_txn *txn;
	int rc;

	/* Waiting for the writer lock happens without table_lock. */
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0) {
		log_error("store", "table %s: begin: %s", name,
		    mdb_strerror(rc));
		return -1;
	}
	pthread_mutex_lock(&table_lock);
	if ((t = table_find(name)) != NULL) {
		*dbi_r = t->dbi;
		pthread_mutex_unlock(&table_lock);
		mdb_txn_abort(txn);
		return 0;
	}
	if ((rc = mdb_dbi_open(txn, name, MDB_CREATE, dbi_r)) != 0) {
		pthread_mutex_unlock(&table_lock);
		mdb_txn_abort(txn);
		log_error("store", "table %s: open: %s", name,
		    mdb_strerror(rc));
		return -1;
	}
	/* mdb_dbi_open(3): the transaction must end before another may
	 * call it, and the handle is only shared once committed. */
	if ((rc = mdb_txn_commit(txn)) != 0) {
		pthread_mutex_unlock(&table_lock);
		log_error("store", "table %s: commit: %s", name,
		    mdb_strerror(rc));
		return -1;
	}
	table_publish(name, *dbi_r);
	pthread_mutex_unlock(&table_lock);
	return 0;
}

/*
 * The handle for a table, creating the table if needed. *visible_r tells
 * whether txn can use it: a read transaction that began before the table
 * was created cannot, and must treat the table as empty.
 */
static int
table_dbi(store_txn *st, const char *name, MDB_dbi *dbi_r, int *visible_r)
{
	struct store_table *t;
	struct store_pending *p;
	int rc;

	*visible_r = 1;
	if (!table_name_ok(name)) {
		log_error("store", "invalid table name");
		return -1;
	}
	/* Tables created by this transaction or, nested, by its parents. */
	for (store_txn *anc = st; anc != NULL; anc = anc->parent)
		for (p = anc->pending; p != NULL; p = p->next)
			if (strcmp(p->table.name, name) == 0) {
				*dbi_r = p->table.dbi;
				return 0;
			}

	pthread_mutex_lock(&table_lock);
	if ((t = table_find(name)) != NULL) {
		*dbi_r = t->dbi;
		pthread_mutex_unlock(&table_lock);
		*visible_r = txn_visible(st, *dbi_r);
		return 0;
	}
	if (st->write) {
		if ((p = calloc(1, sizeof(*p))) == NULL) {
			pthread_mutex_unlock(&table_lock);
			log_error("store", "table %s: out of memory", name);
			return -1;
		}
		rc = mdb_dbi_open(st->txn, name, MDB_CREATE, dbi_r);
		pthread_mutex_unlock(&table_lock);
		if (rc != 0) {
			free(p);
			log_error("store", "table %s: open: %s", name,
			    mdb_strerror(rc));
			return -1;
		}
		strcpy(p->table.name, name);
		p->table.dbi = *dbi_r;
		p->next = st->pending;
		st->pending = p;
		return 0;
	}
	pthread_mutex_unlock(&table_lock);

	if (thread_writers > 0) {
		log_error("store", "table %s: first used from a read "
		    "transaction while this thread holds a write transaction",
		    name);
		return -1;
	}
	if (table_create_alone(name, dbi_r) == -1)
		return -1;
	*visible_r = txn_visible(st, *dbi_r);
	return 0;
}

/*
 * LMDB refuses (EINVAL) a handle newer than the transaction. Only a read
 * transaction can be in that state, and its snapshot then predates the
 * table: empty is the right answer. (A reader that begins during the very
 * commit that creates a table may see its pages but not its handle; it
 * reads the table as empty, as if it had begun a moment earlier.)
 */
static int
txn_visible(store_txn *st, MDB_dbi dbi)
{
	unsigned int flags;

	return mdb_dbi_flags(st->txn, dbi, &flags) == 0;
}

/* Before any other transaction exists: every table on disk gets its
 * handle now, so that no reader misses a table that has data. */
static int
open_existing_tables(void)
{
	char name[STORE_TABLE_NAME_MAX + 1];
	MDB_txn *txn;
	MDB_dbi main_dbi, dbi;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
		goto err;
	if ((rc = mdb_dbi_open(txn, NULL, 0, &main_dbi)) != 0 ||
	    (rc = mdb_cursor_open(txn, main_dbi, &cur)) != 0) {
		mdb_txn_abort(txn);
		goto err;
	}
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (k.mv_size == 0 || k.mv_size > STORE_TABLE_NAME_MAX ||
		    memchr(k.mv_data, '\0', k.mv_size) != NULL)
			continue;
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		/* Keys of the main database that are not tables are
		 * refused with MDB_INCOMPATIBLE; none are expected. */
		if ((rc = mdb_dbi_open(txn, name, 0, &dbi)) != 0) {
			log_warning("store", "main database key %s: %s", name,
			    mdb_strerror(rc));
			continue;
		}
		table_publish(name, dbi);
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		goto err;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto err;
	return 0;
err:
	log_error("store", "opening tables: %s", mdb_strerror(rc));
	ntables = 0;
	return -1;
}

/* ----------------------------------------------------------- environment */

int
store_open(const char *dir, size_t map_size, const char **error_r)
{
	int rc, dead;

	if (env != NULL) {
		*error_r = "store already open";
		return -1;
	}
	if (mkdir(dir, 0750) == -1 && errno != EEXIST) {
		*error_r = strerror(errno);
		log_error("store", "mkdir %s: %s", dir, *error_r);
		return -1;
	}
	if ((rc = mdb_env_create(&env)) != 0)
		goto err;
	if ((rc = mdb_env_set_maxdbs(env, STORE_MAX_TABLES)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, map_size != 0 ? map_size :
	    STORE_DEFAULT_MAP_SIZE)) != 0)
		goto err;
	/*
	 * MDB_NOTLS: reader slots belong to transactions, not threads, so
	 * a worker may hold several read transactions. No MDB_NOSYNC or
	 * MDB_NOMETASYNC: a commit is on disk when store_commit returns.
	 */
	if ((rc = mdb_env_open(env, dir, MDB_NOTLS, 0640)) != 0)
		goto err;
	/* Reader slots left by a crashed process would pin old pages. */
	if ((rc = mdb_reader_check(env, &dead)) != 0)
		goto err;
	if (dead > 0)
		log_notice("store", "cleared %d stale reader slot(s)", dead);
	if (open_existing_tables() == -1) {
		mdb_env_close(env);
		env = NULL;
		*error_r = "cannot open tables";
		return -1;
	}
	log_info("store", "opened %s (%zu table(s))", dir, ntables);
	return 0;
err:
	*error_r = mdb_strerror(rc);
	log_error("store", "%s: %s", dir, *error_r);
	if (env != NULL)
		mdb_env_close(env);
	env = NULL;
	return -1;
}

void
store_close(void)
{
	if (env == NULL)
		return;
	/* Closing the environment closes every handle. */
	mdb_env_close(env);
	env = NULL;
	pthread_mutex_lock(&table_lock);
	ntables = 0;
	pthread_mutex_unlock(&table_lock);
}

int
store_size(uint64_t *used_r, uint64_t *map_r)
{
	MDB_envinfo info;
	MDB_stat st;

	if (env == NULL || mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &st) != 0)
		return -1;
	*used_r = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	*map_r = info.me_mapsize;
	return 0;
}

int
store_table_stats(void (*fn)(const char *, uint64_t, uint64_t, void *), void *arg)
{
	struct store_table copy[STORE_MAX_TABLES];
	MDB_txn *txn;
	MDB_stat st;
	size_t n;

	if (env == NULL)
		return -1;
	pthread_mutex_lock(&table_lock);
	n = ntables;
	memcpy(copy, tables, n * sizeof(copy[0]));
	pthread_mutex_unlock(&table_lock);
	/* A reader never waits for the writer (MDB_NOTLS: any thread). */
	if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (mdb_stat(txn, copy[i].dbi, &st) == 0)
			fn(copy[i].name, ((uint64_t)st.ms_branch_pages + st.ms_leaf_pages +
			    st.ms_overflow_pages) * st.ms_psize, st.ms_entries, arg);
	mdb_txn_abort(txn);
	return 0;
}

int
store_is_open(void)
{
	return env != NULL;
}

/* ---------------------------------------------------------- transactions */

store_txn *
store_begin(int write)
{
	store_txn *st;
	int rc;

	if (env == NULL) {
		log_error("store", "begin: store not open");
		return NULL;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL) {
		log_error("store", "begin: out of memory");
		return NULL;
	}
	st->write = write != 0;
	if ((rc = mdb_txn_begin(env, NULL, write ? 0 : MDB_RDONLY,
	    &st->txn)) != 0) {
		log_error("store", "begin: %s", mdb_strerror(rc));
		free(st);
		return NULL;
	}
	if (st->write)
		thread_writers++;
	return st;
}

store_txn *
store_begin_nested(store_txn *parent)
{
	store_txn *st;
	int rc;

	if (parent == NULL || !parent->write) {
		log_error("store", "nested begin: no write transaction to nest in");
		return NULL;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL) {
		log_error("store", "nested begin: out of memory");
		return NULL;
	}
	st->write = 1;
	st->parent = parent;
	if ((rc = mdb_txn_begin(env, parent->txn, 0, &st->txn)) != 0) {
		log_error("store", "nested begin: %s", mdb_strerror(rc));
		free(st);
		return NULL;
	}
	thread_writers++;
	return st;
}

static void
txn_free(store_txn *st, int publish)
{
	struct store_pending *p, *next;

	if (publish && st->parent != NULL) {
		/* A nested commit: the tables it created are the parent's
		 * now (LMDB moved their handles there), published when the
		 * outermost transaction commits. */
		while ((p = st->pending) != NULL) {
			st->pending = p->next;
			p->next = st->parent->pending;
			st->parent->pending = p;
		}
	} else if (publish && st->pending != NULL) {
		pthread_mutex_lock(&table_lock);
		for (p = st->pending; p != NULL; p = p->next)
			table_publish(p->table.name, p->table.dbi);
		pthread_mutex_unlock(&table_lock);
	}
	for (p = st->pending; p != NULL; p = next) {
		next = p->next;
		free(p);
	}
	if (st->write)
		thread_writers--;
	free(st);
}

int
store_commit(store_txn *st)
{
	int rc;

	if (st == NULL)
		return -1;
	/* mdb_txn_commit frees the transaction whatever it returns. */
	if ((rc = mdb_txn_commit(st->txn)) != 0) {
		log_error("store", "commit: %s", mdb_strerror(rc));
		txn_free(st, 0);
		return -1;
	}
	txn_free(st, 1);
	return 0;
}

void
store_abort(store_txn *st)
{
	if (st == NULL)
		return;
	/* LMDB closes the handles this transaction opened. */
	mdb_txn_abort(st->txn);
	txn_free(st, 0);
}

/* ------------------------------------------------------------ operations */

int
store_get(store_txn *st, const char *table, const void *key, size_t klen,
    const void **val_r, size_t *vlen_r)
{
	MDB_dbi dbi;
	MDB_val k, v;
	int visible, rc;

	if (table_dbi(st, table, &dbi, &visible) == -1)
		return -1;
	if (!visible)
		return 1;
	k.mv_size = klen;
	k.mv_data = (void *)key;
	rc = mdb_get(st->txn, dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 1;
	if (rc != 0) {
		log_error("store", "get %s: %s", table, mdb_strerror(rc));
		return -1;
	}
	*val_r = v.mv_data;
	*vlen_r = v.mv_size;
	return 0;
}

int
store_put(store_txn *st, const char *table, const void *key, size_t klen,
    const void *val, size_t vlen)
{
	MDB_dbi dbi;
	MDB_val k, v;
	int visible, rc;

	if (!st->write) {
		log_error("store", "put %s: read-only transaction", table);
		return -1;
	}
	if (table_dbi(st, table, &dbi, &visible) == -1)
		return -1;
	k.mv_size = klen;
	k.mv_data = (void *)key;
	v.mv_size = vlen;
	v.mv_data = (void *)val;
	if ((rc = mdb_put(st->txn, dbi, &k, &v, 0)) != 0) {
		log_error("store", "put %s: %s", table, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

int
store_del(store_txn *st, const char *table, const void *key, size_t klen)
{
	MDB_dbi dbi;
	MDB_val k;
	int visible, rc;

	if (!st->write) {
		log_error("store", "del %s: read-only transaction", table);
		return -1;
	}
	if (table_dbi(st, table, &dbi, &visible) == -1)
		return -1;
	k.mv_size = klen;
	k.mv_data = (void *)key;
	rc = mdb_del(st->txn, dbi, &k, NULL);
	if (rc == MDB_NOTFOUND)
		return 1;
	if (rc != 0) {
		log_error("store", "del %s: %s", table, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

static int
has_prefix(const MDB_val *k, const void *prefix, size_t plen)
{
	return k->mv_size >= plen && memcmp(k->mv_data, prefix, plen) == 0;
}

int
store_scan(store_txn *st, const char *table, const void *prefix, size_t plen,
    store_scan_fn fn, void *ud)
{
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val k, v;
	int visible, rc, ret = 0;

	if (table_dbi(st, table, &dbi, &visible) == -1)
		return -1;
	if (!visible)
		return 0;
	if ((rc = mdb_cursor_open(st->txn, dbi, &cur)) != 0) {
		log_error("store", "scan %s: %s", table, mdb_strerror(rc));
		return -1;
	}
	k.mv_size = plen;
	k.mv_data = (void *)prefix;
	rc = mdb_cursor_get(cur, &k, &v, plen > 0 ? MDB_SET_RANGE : MDB_FIRST);
	while (rc == 0 && has_prefix(&k, prefix, plen)) {
		if ((ret = fn(ud, k.mv_data, k.mv_size, v.mv_data,
		    v.mv_size)) != 0)
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		log_error("store", "scan %s: %s", table, mdb_strerror(rc));
		return -1;
	}
	return ret;
}

/*
 * Positions cur at the last key starting with prefix (plen > 0): the key
 * before the prefix's successor (the prefix with its last byte below 0xff
 * incremented and what follows dropped), or the table's last key when the
 * prefix has no successor. MDB_NOTFOUND when there is none.
 */
static int
seek_last(MDB_cursor *cur, const void *prefix, size_t plen, MDB_val *k, MDB_val *v)
{
	unsigned char succ[STORE_KEY_MAX];
	size_t n = plen < sizeof(succ) ? plen : sizeof(succ);
	int rc;

	memcpy(succ, prefix, n);
	while (n > 0 && succ[n - 1] == 0xff)
		n--;
	if (n == 0)
		return mdb_cursor_get(cur, k, v, MDB_LAST);
	succ[n - 1]++;
	k->mv_size = n;
	k->mv_data = succ;
	rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
	if (rc == MDB_NOTFOUND)
		return mdb_cursor_get(cur, k, v, MDB_LAST);
	if (rc != 0)
		return rc;
	return mdb_cursor_get(cur, k, v, MDB_PREV);
}

int
store_range(store_txn *st, const char *table, const void *prefix, size_t plen,
    const void *start, size_t slen, int reverse, store_scan_fn fn, void *ud)
{
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val k, v;
	int visible, rc, cmp, ret = 0;

	if (!reverse && slen == 0)
		return store_scan(st, table, prefix, plen, fn, ud);
	if (plen > STORE_KEY_MAX || slen > STORE_KEY_MAX)
		return -1;
	if (table_dbi(st, table, &dbi, &visible) == -1)
		return -1;
	if (!visible)
		return 0;
	if ((rc = mdb_cursor_open(st->txn, dbi, &cur)) != 0) {
		log_error("store", "range %s: %s", table, mdb_strerror(rc));
		return -1;
	}
	/* Where start is: before the prefix's keys (cmp < 0), among them
	 * (0) or after them (> 0). */
	cmp = slen == 0 ? (reverse ? 1 : -1) : memcmp(start, prefix, slen < plen ? slen : plen);
	if (cmp == 0 && slen < plen)
		cmp = -1;                   /* a shorter start sorts first */
	if (cmp > 0) {
		/* Backward from the prefix's last key; forward: nothing. */
		rc = !reverse ? MDB_NOTFOUND : plen > 0 ? seek_last(cur, prefix, plen, &k, &v) :
		    mdb_cursor_get(cur, &k, &v, MDB_LAST);
	} else if (cmp < 0) {
		k.mv_size = plen;
		k.mv_data = (void *)prefix;
		rc = reverse ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v,
		    plen > 0 ? MDB_SET_RANGE : MDB_FIRST);
	} else {
		k.mv_size = slen;
		k.mv_data = (void *)start;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (reverse) {
			/* The last key <= start. */
			if (rc == MDB_NOTFOUND)
				rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
			else if (rc == 0 && (k.mv_size != slen ||
			    memcmp(k.mv_data, start, slen) != 0))
				rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
		}
	}
	while (rc == 0 && has_prefix(&k, prefix, plen)) {
		if ((ret = fn(ud, k.mv_data, k.mv_size, v.mv_data, v.mv_size)) != 0)
			break;
		rc = mdb_cursor_get(cur, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		log_error("store", "range %s: %s", table, mdb_strerror(rc));
		return -1;
	}
	return ret;
}

long
store_del_prefix(store_txn *st, const char *table, const void *prefix,
    size_t plen)
{
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val k, v;
	int visible, rc;
	long n = 0;

	if (!st->write) {
		log_error("store", "del %s: read-only transaction", table);
		return -1;
	}
	if (table_dbi(st, table, &dbi, &visible) == -1)
		return -1;
	if ((rc = mdb_cursor_open(st->txn, dbi, &cur)) != 0) {
		log_error("store", "del %s: %s", table, mdb_strerror(rc));
		return -1;
	}
	/* Seeking again after each delete, rather than relying on where
	 * mdb_cursor_del leaves the cursor, costs a log n per key and is
	 * obviously right. */
	for (;;) {
		k.mv_size = plen;
		k.mv_data = (void *)prefix;
		rc = mdb_cursor_get(cur, &k, &v,
		    plen > 0 ? MDB_SET_RANGE : MDB_FIRST);
		if (rc != 0 || !has_prefix(&k, prefix, plen))
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		n++;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		log_error("store", "del %s: %s", table, mdb_strerror(rc));
		return -1;
	}
	return n;
}

/* ------------------------------------------------------------------ keys */

void
store_key_init(struct store_key *k)
{
	k->len = 0;
}

int
store_key_add(struct store_key *k, const char *part)
{
	size_t len = strlen(part);

	/* The terminating NUL makes every part prefix-free: "a" + "bc"
	 * is "a\0bc\0", "ab" + "c" is "ab\0c\0". */
	if (k->len + len + 1 > STORE_KEY_MAX)
		return -1;
	memcpy(k->buf + k->len, part, len + 1);
	k->len += len + 1;
	return 0;
}

int
store_key_add_u64(struct store_key *k, uint64_t v)
{
	/* Fixed width needs no terminator, and big-endian bytes sort in
	 * numeric order under LMDB's memcmp ordering. */
	if (k->len + 8 > STORE_KEY_MAX)
		return -1;
	for (int i = 7; i >= 0; i--) {
		k->buf[k->len + (size_t)i] = (char)(v & 0xff);
		v >>= 8;
	}
	k->len += 8;
	return 0;
}
