/*
 * account.h - accounts in the "accounts" table: SCRAM secrets only.
 *
 * Key: host NUL node NUL (both prepared). Value (version 1):
 *   u8 version = 1
 *   u32 iterations (big-endian)
 *   u8 salt_len, salt[salt_len]        (raw bytes, 16 by default)
 *   SHA-1:   StoredKey[20] ServerKey[20]
 *   SHA-256: StoredKey[32] ServerKey[32]
 *   u64 created (unix seconds, big-endian)
 * The password itself is never stored (RFC 5802 5, RFC 7677).
 */
#ifndef XMPPD_ACCOUNT_H
#define XMPPD_ACCOUNT_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

enum account_hash { ACCOUNT_SHA1 = 0, ACCOUNT_SHA256 = 1 };

struct account_scram {
	uint32_t iterations;
	size_t salt_len;
	unsigned char salt[64];
	unsigned char stored_key[32];   /* 20 bytes used for SHA-1 */
	unsigned char server_key[32];
	size_t key_len;                 /* 20 or 32 */
};

/* Iterations used for new secrets (default 4096, RFC 7677 4). */
void account_set_iterations(uint32_t iterations);

/* node and host must be prepared already (jid_nodeprep/jid_nameprep).
 * Return 0, or -1 with *error_r ("exists", "not found", or a storage
 * error). */
int account_create(const char *node, const char *host, const char *password,
    const char **error_r);
int account_set_password(const char *node, const char *host, const char *password,
    const char **error_r);
int account_delete(const char *node, const char *host, const char **error_r);
/* The same inside the caller's write transaction (router/users.c deletes
 * the account and its data in one). */
int account_delete_in(store_txn *txn, const char *node, const char *host,
    const char **error_r);
/* 1 if the account exists, 0 if not, -1 on error. */
int account_exists(const char *node, const char *host);
/* 0 and the secrets, 1 if no such account, -1 on error. */
int account_get_scram(const char *node, const char *host, enum account_hash hash,
    struct account_scram *out);
/* PLAIN: derives the SHA-256 StoredKey from password with the stored salt
 * and iterations and compares in constant time. 1 = match, 0 = no match or
 * no account, -1 on error. */
int account_check_password(const char *node, const char *host, const char *password);
/* Calls fn(ud, node) for each account of host in order; returns the count
 * or -1. */
long account_list(const char *host, void (*fn)(void *ud, const char *node), void *ud);

/* Internal, exposed for the tests: the SCRAM StoredKey and ServerKey
 * (RFC 5802 3) of password (SASLprepped first), key_len bytes each (20 or
 * 32). Returns 0, or -1 if the password fails SASLprep or on error. */
int account_derive(enum account_hash hash, const char *password,
    uint32_t iterations, const unsigned char *salt, size_t salt_len,
    unsigned char *stored_r, unsigned char *server_r);

#endif
