/*
 * api_token.c - bearer tokens for the admin HTTP API (ctl/api.h).
 *
 * A token is 32 random bytes, base64url without padding, shown once by
 * `xmppctl api-token create`. Only its SHA-256 is kept, in the store's
 * "api_tokens" table, and in memory for the workers that check requests.
 *
 * Key: id (u64, big-endian). Value (version 1):
 *   u8 version = 1, digest[32] (SHA-256 of the token's text),
 *   u64 created (unix seconds, big-endian), comment (the rest, UTF-8).
 */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "core/log.h"
#include "ctl/api.h"
#include "store/store.h"

#define TABLE "api_tokens"
#define TOKEN_BYTES 32
#define COMMENT_MAX 200
/* A presented token longer than this cannot be one of ours. */
#define TOKEN_TEXT_MAX 128

struct token {
	uint64_t id;
	unsigned char digest[SHA256_DIGEST_LENGTH];
	uint64_t created;
	char *comment;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct token *tokens;
static size_t ntokens, cap;
static uint64_t next_id = 1;

static void
put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)(v & 0xff);
}

static uint64_t
get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Under lock (or before the workers run). */
static int
add_token(uint64_t id, const unsigned char *digest, uint64_t created, const char *comment,
    size_t clen)
{
	struct token *t;

	if (ntokens == cap) {
		size_t ncap = cap ? cap * 2 : 8;

		if ((t = realloc(tokens, ncap * sizeof(*t))) == NULL)
			return -1;
		tokens = t;
		cap = ncap;
	}
	t = &tokens[ntokens];
	if ((t->comment = strndup(comment, clen)) == NULL)
		return -1;
	t->id = id;
	memcpy(t->digest, digest, sizeof(t->digest));
	t->created = created;
	ntokens++;
	if (id >= next_id)
		next_id = id + 1;
	return 0;
}

static int
load_one(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	const unsigned char *v = val;

	if (klen != 8 || vlen < 1 + SHA256_DIGEST_LENGTH + 8 || v[0] != 1) {
		log_warning("api", "api_tokens: a record of an unknown format is ignored");
		return 0;
	}
	return add_token(get_u64(key), v + 1, get_u64(v + 1 + SHA256_DIGEST_LENGTH),
	    (const char *)v + 1 + SHA256_DIGEST_LENGTH + 8,
	    vlen - 1 - SHA256_DIGEST_LENGTH - 8) < 0 ? -1 : 0;
}

int
api_token_init(void)
{
	store_txn *txn = store_begin(0);
	int rc;

	if (txn == NULL)
		return -1;
	rc = store_scan(txn, TABLE, "", 0, load_one, NULL);
	store_abort(txn);
	if (rc == 0 && ntokens > 0)
		log_info("api", "%zu API token(s)", ntokens);
	return rc == 0 ? 0 : -1;
}

void
api_token_free(void)
{
	for (size_t i = 0; i < ntokens; i++)
		free(tokens[i].comment);
	free(tokens);
	tokens = NULL;
	ntokens = cap = 0;
	next_id = 1;
}

int
api_token_check(const char *token, size_t len)
{
	unsigned char d[SHA256_DIGEST_LENGTH];
	int found = 0;

	if (len == 0 || len > TOKEN_TEXT_MAX)
		return 0;
	SHA256((const unsigned char *)token, len, d);
	pthread_mutex_lock(&lock);
	/* Every digest is compared, each in constant time. */
	for (size_t i = 0; i < ntokens; i++)
		found |= CRYPTO_memcmp(tokens[i].digest, d, sizeof(d)) == 0;
	pthread_mutex_unlock(&lock);
	OPENSSL_cleanse(d, sizeof(d));
	return found;
}

/* 32 random bytes, base64url without padding (RFC 4648 5): 43 chars. */
static int
new_token(char out[64])
{
	unsigned char raw[TOKEN_BYTES];
	int n;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	n = EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
	OPENSSL_cleanse(raw, sizeof(raw));
	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (int i = 0; i < n; i++)
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	return 0;
}

static void
create(const char *comment, struct evbuffer *out)
{
	unsigned char key[8], val[1 + SHA256_DIGEST_LENGTH + 8 + COMMENT_MAX];
	size_t clen = strlen(comment);
	uint64_t id, now = (uint64_t)time(NULL);
	char tok[64];
	store_txn *txn;

	if (clen > COMMENT_MAX) {
		evbuffer_add_printf(out, "ERR the comment is longer than %d bytes\n", COMMENT_MAX);
		return;
	}
	if (strpbrk(comment, "\t\n\r") != NULL) {
		evbuffer_add_printf(out, "ERR the comment has a tab or a line break\n");
		return;
	}
	if (new_token(tok) < 0) {
		evbuffer_add_printf(out, "ERR no random bytes\n");
		return;
	}
	val[0] = 1;
	SHA256((const unsigned char *)tok, strlen(tok), val + 1);
	put_u64(val + 1 + SHA256_DIGEST_LENGTH, now);
	memcpy(val + 1 + SHA256_DIGEST_LENGTH + 8, comment, clen);
	/* Ids grow (main thread only writes them). */
	id = next_id;
	put_u64(key, id);
	txn = store_begin(1);
	if (txn == NULL || store_put(txn, TABLE, key, sizeof(key), val,
	    1 + SHA256_DIGEST_LENGTH + 8 + clen) < 0) {
		store_abort(txn);
		evbuffer_add_printf(out, "ERR cannot store the token\n");
		goto out;
	}
	/* store_commit frees txn either way. */
	if (store_commit(txn) < 0) {
		evbuffer_add_printf(out, "ERR cannot store the token\n");
		goto out;
	}
	pthread_mutex_lock(&lock);
	if (add_token(id, val + 1, now, comment, clen) < 0) {
		pthread_mutex_unlock(&lock);
		evbuffer_add_printf(out, "ERR out of memory (the token is stored: restart "
		    "or revoke %llu)\n", (unsigned long long)id);
		goto out;
	}
	pthread_mutex_unlock(&lock);
	log_notice("api", "API token %llu created (%s)", (unsigned long long)id, comment);
	/* Shown this once: only its digest is kept. */
	evbuffer_add_printf(out, "OK\n%s\n", tok);
out:
	OPENSSL_cleanse(tok, sizeof(tok));
}

static void
list(struct evbuffer *out)
{
	evbuffer_add_printf(out, "OK\n");
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < ntokens; i++) {
		time_t t = (time_t)tokens[i].created;
		struct tm tm;
		char when[32];

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		evbuffer_add_printf(out, "%llu\t%s\t%s\n", (unsigned long long)tokens[i].id,
		    when, tokens[i].comment);
	}
	pthread_mutex_unlock(&lock);
}

static void
revoke(const char *arg, struct evbuffer *out)
{
	unsigned char key[8];
	unsigned long long id;
	char *end;
	store_txn *txn;
	int rc;

	id = strtoull(arg, &end, 10);
	if (*arg < '0' || *arg > '9' || *end != '\0') {
		evbuffer_add_printf(out, "ERR '%s' is not a token id (see api-token list)\n", arg);
		return;
	}
	put_u64(key, id);
	txn = store_begin(1);
	if (txn == NULL || (rc = store_del(txn, TABLE, key, sizeof(key))) < 0) {
		store_abort(txn);
		evbuffer_add_printf(out, "ERR cannot revoke the token\n");
		return;
	}
	if (rc == 1) {
		store_abort(txn);
		evbuffer_add_printf(out, "ERR no token %llu\n", id);
		return;
	}
	if (store_commit(txn) < 0) {
		evbuffer_add_printf(out, "ERR cannot revoke the token\n");
		return;
	}
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < ntokens; i++)
		if (tokens[i].id == id) {
			free(tokens[i].comment);
			/* Kept in creation order, for api-token list. */
			memmove(&tokens[i], &tokens[i + 1], (ntokens - i - 1) * sizeof(*tokens));
			ntokens--;
			break;
		}
	pthread_mutex_unlock(&lock);
	log_notice("api", "API token %llu revoked", id);
	evbuffer_add_printf(out, "OK\nrevoked %llu\n", id);
}

void
api_token_ctl(int argc, char **argv, struct evbuffer *out)
{
	const char *sub = argc > 1 ? argv[1] : "";

	if (strcmp(sub, "create") == 0 && argc <= 3)
		create(argc == 3 ? argv[2] : "", out);
	else if (strcmp(sub, "list") == 0 && argc == 2)
		list(out);
	else if (strcmp(sub, "revoke") == 0 && argc == 3)
		revoke(argv[2], out);
	else
		evbuffer_add_printf(out, "ERR usage: api-token create [COMMENT] | api-token list | "
		    "api-token revoke ID\n");
}
