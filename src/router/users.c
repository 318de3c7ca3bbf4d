/*
 * users.c - see users.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "auth/account.h"
#include "core/log.h"
#include "core/registry.h"
#include "router/session.h"
#include "router/sm.h"
#include "router/users.h"
#include "store/store.h"

/* The user tables: key = the table's name, value = a version byte. */
#define USER_TABLES "user_tables"
#define USER_TABLES_MAX 64

int
users_create(const char *node, const char *host, const char *password,
    const char **error_r)
{
	struct xmppd_user_args a = { node, host };

	if (account_create(node, host, password, error_r) < 0)
		return -1;
	(void)hooks_run(XMPPD_HOOK_REGISTER_USER, host, &a);
	return 0;
}

int
users_register_table(const char *table, const char **error_r)
{
	static const unsigned char v1 = 1;
	const void *val;
	size_t vlen;
	store_txn *txn = store_begin(0);
	int r;

	if (table == NULL || *table == '\0' || strlen(table) > 200) {
		*error_r = "not a table name";
		store_abort(txn);
		return -1;
	}
	/* Already known (every load after the first): no write. */
	r = txn != NULL ? store_get(txn, USER_TABLES, table, strlen(table), &val, &vlen) : -1;
	store_abort(txn);
	if (r == 0)
		return 0;
	if ((txn = store_begin(1)) == NULL ||
	    store_put(txn, USER_TABLES, table, strlen(table), &v1, 1) < 0) {
		store_abort(txn);
		*error_r = "storage error";
		return -1;
	}
	if (store_commit(txn) < 0) {
		*error_r = "storage error";
		return -1;
	}
	return 0;
}

struct tables {
	char *v[USER_TABLES_MAX];
	size_t n;
};

static int
collect_table(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct tables *t = ud;

	if (t->n == USER_TABLES_MAX)
		return 1;
	if ((t->v[t->n] = strndup(key, klen)) != NULL)
		t->n++;
	return 0;
}

/* Deletes the account and its rows in every user table, in one write
 * transaction. */
static int
delete_all(const char *node, const char *host, const char **error_r)
{
	struct tables t = { .n = 0 };
	struct store_key prefix;
	store_txn *txn;
	int rc = -1;

	store_key_init(&prefix);
	if (store_key_add(&prefix, host) < 0 || store_key_add(&prefix, node) < 0) {
		*error_r = "invalid account name";
		return -1;
	}
	if ((txn = store_begin(1)) == NULL) {
		*error_r = "storage error";
		return -1;
	}
	if (account_delete_in(txn, node, host, error_r) < 0)
		goto out;
	if (store_scan(txn, USER_TABLES, "", 0, collect_table, &t) < 0) {
		*error_r = "storage error";
		goto out;
	}
	for (size_t i = 0; i < t.n; i++)
		if (store_del_prefix(txn, t.v[i], prefix.buf, prefix.len) < 0) {
			log_error("users", "%s@%s: cannot delete the rows of table %s", node,
			    host, t.v[i]);
			*error_r = "storage error";
			goto out;
		}
	rc = store_commit(txn) < 0 ? -1 : 0;
	txn = NULL;
	if (rc < 0)
		*error_r = "storage error";
out:
	store_abort(txn);
	for (size_t i = 0; i < t.n; i++)
		free(t.v[i]);
	return rc;
}

int
users_remove(const char *node, const char *host, const char **error_r)
{
	struct xmppd_user_args a = { node, host };
	jid j;
	const char *e;

	if (account_exists(node, host) != 1) {
		*error_r = "not found";
		return -1;
	}
	/* Modules see the account's data a last time (mod_roster tells the
	 * contacts, XEP-0077 3.2); none of them deletes it itself. */
	(void)hooks_run(XMPPD_HOOK_REMOVE_USER, host, &a);
	if (delete_all(node, host, error_r) < 0)
		return -1;
	/* Then its sessions end; what their end writes is checked against
	 * the account, which is gone (doc/modules.md, "Accounts"). */
	if (jid_make(&j, node, host, NULL, &e) == 0) {
		struct sm_target t[64];
		size_t n = sm_find(&j, t, 64);

		for (size_t i = 0; i < n && i < 64; i++)
			session_kick(t[i].worker, t[i].sid, "not-authorized", "account removed");
		jid_free(&j);
	}
	return 0;
}
