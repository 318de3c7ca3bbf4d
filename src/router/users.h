/*
 * users.h - an account's life cycle as the server sees it: the account
 * (auth/account.h), the register_user / remove_user hooks, the data every
 * module keeps for it, and its sessions. xmppctl and the ABI (in-band
 * registration) both go through here (Prosody's usermanager).
 *
 * Any thread; they do store work and may block on LMDB's write lock for a
 * moment, as every store write does.
 */
#ifndef XMPPD_USERS_H
#define XMPPD_USERS_H

/* Creates node@host (both prepared) with password, then runs
 * register_user. 0, or -1 with *error_r ("exists", ...). */
int users_create(const char *node, const char *host, const char *password,
    const char **error_r);

/*
 * Removes node@host: runs remove_user first (modules read what they keep
 * for the account a last time and tell others: mod_roster unsubscribes the
 * contacts, XEP-0077 3.2), then deletes the account and, in the same
 * transaction, every row of it in each user table (users_register_table),
 * so that a crash leaves either all of it or none; then the account's
 * sessions are closed with <not-authorized/>. 0, or -1 with *error_r.
 */
int users_remove(const char *node, const char *host, const char **error_r);

/*
 * Declares table a user table: its keys start with the user's host and
 * node (xmppd_store_key(host, node, ...)), and users_remove deletes those
 * rows with the account. The declaration is kept in the store, so a table
 * is purged even while the module that made it is not loaded. 0 or -1.
 */
int users_register_table(const char *table, const char **error_r);

#endif
