/*
 * handshake.c - the XEP-0114 handshake digest, a pure function (unit
 * tested in t/unit/t-component.c).
 */
#include "config.h"

#include <ctype.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "component/component.h"

void
component_handshake_digest(const char *stream_id, const char *secret,
    char out[COMPONENT_DIGEST_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	/* XEP-0114 3: SHA1(concat(sid, password)), in hex. */
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, stream_id, strlen(stream_id)) != 1 ||
	    EVP_DigestUpdate(ctx, secret, strlen(secret)) != 1 ||
	    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen * 2 != COMPONENT_DIGEST_LEN) {
		/* No digest: one no hex string can match. */
		EVP_MD_CTX_free(ctx);
		memset(out, 'x', COMPONENT_DIGEST_LEN);
		out[COMPONENT_DIGEST_LEN] = '\0';
		return;
	}
	EVP_MD_CTX_free(ctx);
	for (size_t i = 0; i < mdlen; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[COMPONENT_DIGEST_LEN] = '\0';
	OPENSSL_cleanse(md, sizeof(md));
}

int
component_handshake_ok(const char *stream_id, const char *secret, const char *given)
{
	char want[COMPONENT_DIGEST_LEN + 1], got[COMPONENT_DIGEST_LEN];
	size_t len, start = 0;
	int ok;

	if (stream_id == NULL || secret == NULL || given == NULL)
		return 0;
	/* Whitespace around the character data is not part of it. */
	len = strlen(given);
	while (start < len && isspace((unsigned char)given[start]))
		start++;
	while (len > start && isspace((unsigned char)given[len - 1]))
		len--;
	/* The length of a SHA-1 digest in hex is no secret. */
	if (len - start != COMPONENT_DIGEST_LEN)
		return 0;
	/* Hex digits compare without regard to case (Prosody and ejabberd
	 * do the same); in constant time, so that the time taken does not
	 * tell how much of a guess was right. */
	for (size_t i = 0; i < COMPONENT_DIGEST_LEN; i++)
		got[i] = (char)tolower((unsigned char)given[start + i]);
	component_handshake_digest(stream_id, secret, want);
	ok = CRYPTO_memcmp(want, got, COMPONENT_DIGEST_LEN) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}
