/*
 * dialback.c - dialback keys (XEP-0185, as XEP-0220 2.1.1 recommends).
 *
 * A key is stateless: HMAC-SHA256 keyed with the hex SHA-256 of a secret,
 * over "Receiving Server ' ' Originating Server ' ' Stream ID". Any server
 * that knows the secret can tell whether a key is one we issued, so the
 * servers of a cluster must share one (`s2s_secret`); without it, a random
 * secret is drawn at every start, and keys issued before a restart no
 * longer verify (the peer then simply redoes dialback).
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "core/conf.h"
#include "core/log.h"
#include "s2s/s2s_int.h"

static char random_secret[65];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void
hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static void
draw_secret(void)
{
	unsigned char r[32];

	if (RAND_bytes(r, sizeof(r)) != 1)
		fatal("cannot draw the dialback secret");
	hex(r, sizeof(r), random_secret);
}

void
dialback_init(void)
{
	pthread_once(&once, draw_secret);
}

void
dialback_key(const struct conf *c, const char *receiving, const char *originating,
    const char *id, char out[65])
{
	const char *secret = c->s2s_secret != NULL ? c->s2s_secret : random_secret;
	unsigned char sh[32], mac[32];
	unsigned int maclen = sizeof(mac);
	char shhex[65];
	char *msg;
	size_t len;

	dialback_init();
	/* XEP-0185 2: the HMAC key is SHA256(Secret), written in hex as in
	 * its example. */
	EVP_Digest(secret, strlen(secret), sh, NULL, EVP_sha256(), NULL);
	hex(sh, sizeof(sh), shhex);
	len = strlen(receiving) + strlen(originating) + strlen(id) + 3;
	if ((msg = malloc(len)) == NULL) {
		out[0] = '\0';
		return;
	}
	snprintf(msg, len, "%s %s %s", receiving, originating, id);
	HMAC(EVP_sha256(), shhex, 64, (const unsigned char *)msg, strlen(msg), mac, &maclen);
	free(msg);
	hex(mac, sizeof(mac), out);
}

int
dialback_key_ok(const struct conf *c, const char *receiving, const char *originating,
    const char *id, const char *key)
{
	char want[65];

	dialback_key(c, receiving, originating, id, want);
	return strlen(key) == 64 && CRYPTO_memcmp(want, key, 64) == 0;
}
