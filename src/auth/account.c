/*
 * account.c - accounts: SCRAM secrets in the "accounts" table.
 *
 * Only what RFC 5802 5.1 says a server needs is kept: salt, iteration
 * count, StoredKey and ServerKey, for SCRAM-SHA-1 and SCRAM-SHA-256 alike
 * (one salt, one count). The password and the SaltedPassword are never
 * stored and are wiped from memory after use.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gsasl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth/account.h"
#include "core/log.h"
#include "store/store.h"

#define ACCOUNT_TABLE		"accounts"
#define ACCOUNT_VERSION		1
#define ACCOUNT_SALT_LEN	16
/* RFC 7677 4: at least 4096. */
#define ACCOUNT_DEFAULT_ITER	4096

#define SHA1_LEN		20
#define SHA256_LEN		32
/* version, iterations, salt_len, salt, 2 x SHA-1, 2 x SHA-256, created */
#define RECORD_LEN(salt_len) \
	(1 + 4 + 1 + (salt_len) + 2 * SHA1_LEN + 2 * SHA256_LEN + 8)
#define RECORD_MAX		RECORD_LEN(255)

/* A record, decoded. */
struct account_rec {
	uint32_t iterations;
	size_t salt_len;
	unsigned char salt[255];
	unsigned char sha1_stored[SHA1_LEN], sha1_server[SHA1_LEN];
	unsigned char sha256_stored[SHA256_LEN], sha256_server[SHA256_LEN];
	uint64_t created;
};

static int	 derive(enum account_hash, const char *, uint32_t,
		    const unsigned char *, size_t, unsigned char *,
		    unsigned char *);
static int	 make_key(struct store_key *, const char *, const char *);
static int	 rec_new(struct account_rec *, const char *, uint64_t);
static size_t	 rec_encode(const struct account_rec *, unsigned char *);
static int	 rec_decode(struct account_rec *, const void *, size_t);
static int	 rec_load(const char *, const char *, struct account_rec *);
static int	 rec_write(const char *, const char *, const char *, int,
		    const char **);
static void	 put_be(unsigned char *, uint64_t, int);
static uint64_t	 get_be(const unsigned char *, int);

static uint32_t account_iterations = ACCOUNT_DEFAULT_ITER;

void
account_set_iterations(uint32_t iterations)
{
	if (iterations == 0)
		iterations = ACCOUNT_DEFAULT_ITER;
	if (iterations < ACCOUNT_DEFAULT_ITER)
		log_warning("account", "%u SCRAM iterations is below the "
		    "4096 RFC 7677 4 asks for", iterations);
	__atomic_store_n(&account_iterations, iterations, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- crypto */

/*
 * Returns a GSASL_* code so that callers can tell a password SASLprep
 * refuses (GSASL_SASLPREP_ERROR) from a failure.
 * gsasl_scram_secrets_from_password applies SASLprep (RFC 4013, as RFC
 * 5802 2.2 asks) before Hi().
 */
static int
derive(enum account_hash hash, const char *password, uint32_t iterations,
    const unsigned char *salt, size_t salt_len, unsigned char *stored_r,
    unsigned char *server_r)
{
	char salted[GSASL_HASH_MAX_SIZE], client[GSASL_HASH_MAX_SIZE];
	char server[GSASL_HASH_MAX_SIZE], stored[GSASL_HASH_MAX_SIZE];
	Gsasl_hash h = hash == ACCOUNT_SHA1 ? GSASL_HASH_SHA1 : GSASL_HASH_SHA256;
	size_t len = gsasl_hash_length(h);
	int rc;

	if (password == NULL || iterations == 0)
		return GSASL_AUTHENTICATION_ERROR;
	rc = gsasl_scram_secrets_from_password(h, password, iterations,
	    (const char *)salt, salt_len, salted, client, server, stored);
	if (rc == GSASL_OK) {
		memcpy(stored_r, stored, len);
		memcpy(server_r, server, len);
	}
	/* SaltedPassword and ClientKey are password equivalents. */
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client, sizeof(client));
	OPENSSL_cleanse(server, sizeof(server));
	OPENSSL_cleanse(stored, sizeof(stored));
	return rc;
}

int
account_derive(enum account_hash hash, const char *password,
    uint32_t iterations, const unsigned char *salt, size_t salt_len,
    unsigned char *stored_r, unsigned char *server_r)
{
	return derive(hash, password, iterations, salt, salt_len, stored_r,
	    server_r) == GSASL_OK ? 0 : -1;
}

/* --------------------------------------------------------------- records */

static void
put_be(unsigned char *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t
get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static int
make_key(struct store_key *k, const char *node, const char *host)
{
	if (node == NULL || host == NULL || *node == '\0' || *host == '\0')
		return -1;
	store_key_init(k);
	if (store_key_add(k, host) == -1 || store_key_add(k, node) == -1)
		return -1;
	return 0;
}

/* Fresh salt and secrets for password. Returns a GSASL_* code. */
static int
rec_new(struct account_rec *r, const char *password, uint64_t created)
{
	int rc;

	memset(r, 0, sizeof(*r));
	r->iterations = __atomic_load_n(&account_iterations, __ATOMIC_RELAXED);
	r->salt_len = ACCOUNT_SALT_LEN;
	r->created = created;
	if (RAND_bytes(r->salt, ACCOUNT_SALT_LEN) != 1) {
		log_error("account", "RAND_bytes failed");
		return GSASL_CRYPTO_ERROR;
	}
	if ((rc = derive(ACCOUNT_SHA1, password, r->iterations, r->salt,
	    r->salt_len, r->sha1_stored, r->sha1_server)) != GSASL_OK)
		return rc;
	return derive(ACCOUNT_SHA256, password, r->iterations, r->salt,
	    r->salt_len, r->sha256_stored, r->sha256_server);
}

static size_t
rec_encode(const struct account_rec *r, unsigned char *p)
{
	unsigned char *start = p;

	*p++ = ACCOUNT_VERSION;
	put_be(p, r->iterations, 4);
	p += 4;
	*p++ = (unsigned char)r->salt_len;
	memcpy(p, r->salt, r->salt_len);
	p += r->salt_len;
	memcpy(p, r->sha1_stored, SHA1_LEN);
	p += SHA1_LEN;
	memcpy(p, r->sha1_server, SHA1_LEN);
	p += SHA1_LEN;
	memcpy(p, r->sha256_stored, SHA256_LEN);
	p += SHA256_LEN;
	memcpy(p, r->sha256_server, SHA256_LEN);
	p += SHA256_LEN;
	put_be(p, r->created, 8);
	p += 8;
	return (size_t)(p - start);
}

static int
rec_decode(struct account_rec *r, const void *val, size_t len)
{
	const unsigned char *p = val;

	memset(r, 0, sizeof(*r));
	if (len < RECORD_LEN(0) || p[0] != ACCOUNT_VERSION)
		return -1;
	r->iterations = (uint32_t)get_be(p + 1, 4);
	r->salt_len = p[5];
	if (len != RECORD_LEN(r->salt_len) || r->iterations == 0)
		return -1;
	p += 6;
	memcpy(r->salt, p, r->salt_len);
	p += r->salt_len;
	memcpy(r->sha1_stored, p, SHA1_LEN);
	p += SHA1_LEN;
	memcpy(r->sha1_server, p, SHA1_LEN);
	p += SHA1_LEN;
	memcpy(r->sha256_stored, p, SHA256_LEN);
	p += SHA256_LEN;
	memcpy(r->sha256_server, p, SHA256_LEN);
	p += SHA256_LEN;
	r->created = get_be(p, 8);
	return 0;
}

/* 0 and the record, 1 if there is none, -1 on error. */
static int
rec_load(const char *node, const char *host, struct account_rec *r)
{
	struct store_key k;
	store_txn *txn;
	const void *val;
	size_t vlen;
	int rc;

	if (make_key(&k, node, host) == -1)
		return -1;
	if ((txn = store_begin(0)) == NULL)
		return -1;
	rc = store_get(txn, ACCOUNT_TABLE, k.buf, k.len, &val, &vlen);
	/* The value lives in the map only until the transaction ends. */
	if (rc == 0 && rec_decode(r, val, vlen) == -1) {
		log_error("account", "%s@%s: malformed record", node, host);
		rc = -1;
	}
	store_abort(txn);
	return rc;
}

/*
 * Writes new secrets for node@host. create: the account must not exist
 * yet ("exists"); otherwise it must ("not found"), and keeps its creation
 * time. The secrets are derived before the write transaction begins: Hi()
 * is slow by design and must not hold LMDB's writer lock.
 */
static int
rec_write(const char *node, const char *host, const char *password,
    int create, const char **error_r)
{
	unsigned char buf[RECORD_MAX];
	struct account_rec r, old;
	struct store_key k;
	store_txn *txn;
	const void *val;
	size_t vlen, len;
	int rc;

	if (make_key(&k, node, host) == -1) {
		*error_r = "invalid account name";
		return -1;
	}
	if (password == NULL || *password == '\0') {
		*error_r = "empty password";
		return -1;
	}
	if ((rc = rec_new(&r, password, (uint64_t)time(NULL))) != GSASL_OK) {
		*error_r = rc == GSASL_SASLPREP_ERROR ?
		    "password not allowed (SASLprep)" : "cannot derive secrets";
		return -1;
	}
	if ((txn = store_begin(1)) == NULL) {
		*error_r = "storage error";
		goto err;
	}
	rc = store_get(txn, ACCOUNT_TABLE, k.buf, k.len, &val, &vlen);
	if (rc == -1) {
		*error_r = "storage error";
		goto abort;
	}
	if (create && rc == 0) {
		*error_r = "exists";
		goto abort;
	}
	if (!create) {
		if (rc == 1) {
			*error_r = "not found";
			goto abort;
		}
		if (rec_decode(&old, val, vlen) == 0)
			r.created = old.created;
	}
	len = rec_encode(&r, buf);
	if (store_put(txn, ACCOUNT_TABLE, k.buf, k.len, buf, len) == -1) {
		*error_r = "storage error";
		goto abort;
	}
	if (store_commit(txn) == -1) {
		*error_r = "storage error";
		goto err;
	}
	OPENSSL_cleanse(&r, sizeof(r));
	return 0;
abort:
	store_abort(txn);
err:
	OPENSSL_cleanse(&r, sizeof(r));
	return -1;
}

/* -------------------------------------------------------------- accounts */

int
account_create(const char *node, const char *host, const char *password,
    const char **error_r)
{
	return rec_write(node, host, password, 1, error_r);
}

int
account_set_password(const char *node, const char *host, const char *password,
    const char **error_r)
{
	return rec_write(node, host, password, 0, error_r);
}

int
account_delete_in(store_txn *txn, const char *node, const char *host, const char **error_r)
{
	struct store_key k;
	int rc;

	if (make_key(&k, node, host) == -1) {
		*error_r = "invalid account name";
		return -1;
	}
	rc = store_del(txn, ACCOUNT_TABLE, k.buf, k.len);
	if (rc != 0) {
		*error_r = rc == 1 ? "not found" : "storage error";
		return -1;
	}
	return 0;
}

int
account_delete(const char *node, const char *host, const char **error_r)
{
	store_txn *txn;

	if ((txn = store_begin(1)) == NULL) {
		*error_r = "storage error";
		return -1;
	}
	if (account_delete_in(txn, node, host, error_r) < 0) {
		store_abort(txn);
		return -1;
	}
	if (store_commit(txn) == -1) {
		*error_r = "storage error";
		return -1;
	}
	return 0;
}

int
account_exists(const char *node, const char *host)
{
	struct account_rec r;
	int rc;

	rc = rec_load(node, host, &r);
	OPENSSL_cleanse(&r, sizeof(r));
	return rc == -1 ? -1 : rc == 0;
}

int
account_get_scram(const char *node, const char *host, enum account_hash hash,
    struct account_scram *out)
{
	struct account_rec r;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = rec_load(node, host, &r)) != 0)
		return rc;
	if (r.salt_len > sizeof(out->salt)) {
		log_error("account", "%s@%s: salt too long", node, host);
		OPENSSL_cleanse(&r, sizeof(r));
		return -1;
	}
	out->iterations = r.iterations;
	out->salt_len = r.salt_len;
	memcpy(out->salt, r.salt, r.salt_len);
	if (hash == ACCOUNT_SHA1) {
		out->key_len = SHA1_LEN;
		memcpy(out->stored_key, r.sha1_stored, SHA1_LEN);
		memcpy(out->server_key, r.sha1_server, SHA1_LEN);
	} else {
		out->key_len = SHA256_LEN;
		memcpy(out->stored_key, r.sha256_stored, SHA256_LEN);
		memcpy(out->server_key, r.sha256_server, SHA256_LEN);
	}
	OPENSSL_cleanse(&r, sizeof(r));
	return 0;
}

int
account_check_password(const char *node, const char *host, const char *password)
{
	static const unsigned char dummy_salt[ACCOUNT_SALT_LEN];
	unsigned char stored[SHA256_LEN], server[SHA256_LEN];
	struct account_rec r;
	int rc, ret;

	if (password == NULL)
		return 0;
	if ((rc = rec_load(node, host, &r)) == -1)
		return -1;
	if (rc == 1) {
		/* Derive anyway, so that the time taken does not tell
		 * which accounts exist. */
		(void)derive(ACCOUNT_SHA256, password,
		    __atomic_load_n(&account_iterations, __ATOMIC_RELAXED),
		    dummy_salt, sizeof(dummy_salt), stored, server);
		OPENSSL_cleanse(stored, sizeof(stored));
		OPENSSL_cleanse(server, sizeof(server));
		return 0;
	}
	rc = derive(ACCOUNT_SHA256, password, r.iterations, r.salt, r.salt_len,
	    stored, server);
	if (rc == GSASL_OK)
		ret = CRYPTO_memcmp(stored, r.sha256_stored, SHA256_LEN) == 0;
	else if (rc == GSASL_SASLPREP_ERROR)
		ret = 0;	/* could never have been set */
	else {
		log_error("account", "%s@%s: cannot derive: %s", node, host,
		    gsasl_strerror(rc));
		ret = -1;
	}
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(server, sizeof(server));
	OPENSSL_cleanse(&r, sizeof(r));
	return ret;
}

/* ----------------------------------------------------------------- lists */

struct list_ctx {
	char **names;
	size_t n, cap;
	int failed;
};

static int
list_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct list_ctx *ctx = ud;
	const char *k = key, *node, *end;
	char **nn;

	/* Key: host NUL node NUL. */
	node = memchr(k, '\0', klen);
	if (node == NULL)
		return 0;
	node++;
	end = memchr(node, '\0', klen - (size_t)(node - k));
	if (end == NULL || end == node)
		return 0;
	if (ctx->n == ctx->cap) {
		size_t cap = ctx->cap ? ctx->cap * 2 : 16;

		if ((nn = reallocarray(ctx->names, cap, sizeof(*nn))) == NULL)
			goto nomem;
		ctx->names = nn;
		ctx->cap = cap;
	}
	if ((ctx->names[ctx->n] = strndup(node, (size_t)(end - node))) == NULL)
		goto nomem;
	ctx->n++;
	return 0;
nomem:
	ctx->failed = 1;
	return 1;
}

long
account_list(const char *host, void (*fn)(void *ud, const char *node), void *ud)
{
	struct list_ctx ctx = { NULL, 0, 0, 0 };
	struct store_key k;
	store_txn *txn;
	int rc;

	store_key_init(&k);
	if (host == NULL || *host == '\0' || store_key_add(&k, host) == -1)
		return -1;
	if ((txn = store_begin(0)) == NULL)
		return -1;
	rc = store_scan(txn, ACCOUNT_TABLE, k.buf, k.len, list_cb, &ctx);
	store_abort(txn);
	if (rc == -1 || ctx.failed) {
		if (ctx.failed)
			log_error("account", "list %s: out of memory", host);
		for (size_t i = 0; i < ctx.n; i++)
			free(ctx.names[i]);
		free(ctx.names);
		return -1;
	}
	/* fn runs after the transaction ended, so it may use the store
	 * (even create or delete accounts) as it likes. */
	for (size_t i = 0; i < ctx.n; i++) {
		fn(ud, ctx.names[i]);
		free(ctx.names[i]);
	}
	free(ctx.names);
	return (long)ctx.n;
}
