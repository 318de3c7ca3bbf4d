/*
 * fuzz-sasl.c - libFuzzer target for the server side of SASL (auth/sasl.c
 * over libgsasl): what a client sends in <auth/> and <response/>.
 *
 * Input: byte 0 picks the mechanism (including ones we do not offer) and
 * whether a TLS session is present; byte 1 says whether the steps are
 * base64-encoded here (so the fuzzer reaches the mechanisms' parsers) or
 * passed as they are (to reach the base64 decoding). The rest is split at
 * each '\n' into at most 8 client messages.
 *
 * The store holds one account, user@localhost with password "pencil". The
 * TLS session is a connection-less SSL object: it makes PLAIN and the
 * -PLUS mechanisms available, and its channel binding cannot be computed
 * (there was no handshake), so every -PLUS exchange must fail. Checked
 * besides crashes: a failure always names an RFC 6120 6.5 condition, a
 * success names the one account, and PLAIN succeeds only with its
 * password.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsasl.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "auth/account.h"
#include "auth/sasl.h"
#include "store/store.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static SSL_CTX *ctx;
static SSL *ssl;

static const char *const mechs[] = {
	"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS",
	"SCRAM-SHA-256-PLUS", "DIGEST-MD5", "EXTERNAL", "",
};

static const char *const conditions[] = {
	"aborted", "account-disabled", "credentials-expired", "encryption-required",
	"incorrect-encoding", "invalid-authzid", "invalid-mechanism", "malformed-request",
	"mechanism-too-weak", "not-authorized", "temporary-auth-failure",
};

static void
check(int cond)
{
	if (!cond)
		abort();
}

static int
is_condition(const char *c)
{
	if (c == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(conditions) / sizeof(conditions[0]); i++)
		if (strcmp(c, conditions[i]) == 0)
			return 1;
	return 0;
}

static void
cleanup(void)
{
	sasl_free();
	store_close();
	SSL_free(ssl);
	SSL_CTX_free(ctx);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[] = "/tmp/fuzz-sasl-XXXXXX";
	const char *error = NULL;

	(void)argc;
	(void)argv;
	if (mkdtemp(dir) == NULL || store_open(dir, 64 << 20, &error) != 0 ||
	    sasl_init(&error) != 0) {
		fprintf(stderr, "fuzz-sasl: set-up: %s\n", error ? error : "mkdtemp");
		exit(1);
	}
	/* PLAIN derives the key on every attempt: keep that cheap here. */
	account_set_iterations(16);
	if (account_create("user", "localhost", "pencil", &error) != 0) {
		fprintf(stderr, "fuzz-sasl: account: %s\n", error);
		exit(1);
	}
	/* LMDB has the files open: the directory can go now. */
	{
		char path[64];

		snprintf(path, sizeof(path), "%s/data.mdb", dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/lock.mdb", dir);
		unlink(path);
		rmdir(dir);
	}
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL || (ssl = SSL_new(ctx)) == NULL) {
		fprintf(stderr, "fuzz-sasl: no SSL object\n");
		exit(1);
	}
	atexit(cleanup);
	return 0;
}

/* The PLAIN message (RFC 4616) is authzid NUL authcid NUL passwd; the
 * password is compared after SASLprep (RFC 4616 2, RFC 4013), as the
 * server does: "penc" U+FE0F "il" is "pencil" (B.1 maps the variation
 * selector to nothing). */
static int
plain_has_password(const unsigned char *msg, size_t len, const char *password)
{
	const unsigned char *p = memchr(msg, '\0', len);
	char *given, *prepped = NULL;
	size_t n;
	int rc, same;

	if (p == NULL || (p = memchr(p + 1, '\0', len - (size_t)(p + 1 - msg))) == NULL)
		return 0;
	p++;
	n = (size_t)(msg + len - p);
	if (memchr(p, '\0', n) != NULL || (given = malloc(n + 1)) == NULL)
		return 0;
	memcpy(given, p, n);
	given[n] = '\0';
	same = gsasl_saslprep(given, GSASL_ALLOW_UNASSIGNED, &prepped, &rc) == GSASL_OK &&
	    strcmp(prepped, password) == 0;
	gsasl_free(prepped);
	free(given);
	return same;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *mech, *condition = NULL;
	const uint8_t *p, *end;
	int encode, tls, plain_ok = 0;
	sasl_session *s;

	if (size < 2 || size > 8192)
		return 0;
	mech = mechs[data[0] % (sizeof(mechs) / sizeof(mechs[0]))];
	tls = (data[0] & 0x80) != 0;
	encode = (data[1] & 1) != 0;
	p = data + 2;
	end = data + size;

	s = sasl_start(mech, "localhost", tls ? ssl : NULL, tls, 1, &condition);
	if (s == NULL) {
		check(is_condition(condition));
		return 0;
	}
	check(strcmp(sasl_mechanism(s), mech) == 0);
	for (int step = 0; step < 8; step++) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl != NULL ? nl : end) - p);
		char *in, *out = NULL;
		enum sasl_result r;

		if (encode) {
			in = malloc(4 * (n / 3 + 1) + 1);
			check(in != NULL);
			EVP_EncodeBlock((unsigned char *)in, p, (int)n);
			/* PLAIN may get an empty initial response first
			 * (RFC 6120 6.4.2): the message that succeeds is the
			 * one to check. */
			if (strcmp(mech, "PLAIN") == 0)
				plain_ok = plain_has_password(p, n, "pencil");
		} else {
			in = strndup((const char *)p, n);
			check(in != NULL);
		}
		condition = NULL;
		r = sasl_step(s, in, &out, &condition);
		free(in);
		if (r == SASL_FAILURE) {
			check(out == NULL && is_condition(condition));
			break;
		}
		check(out != NULL);
		free(out);
		if (r == SASL_SUCCESS) {
			check(sasl_node(s) != NULL && strcmp(sasl_node(s), "user") == 0);
			/* No handshake, no channel binding: -PLUS cannot succeed. */
			check(strstr(mech, "-PLUS") == NULL);
			if (strcmp(mech, "PLAIN") == 0)
				check(encode ? plain_ok : 1);
			break;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	sasl_end(&s);
	check(s == NULL);
	return 0;
}
