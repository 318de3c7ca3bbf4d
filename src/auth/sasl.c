/*
 * sasl.c - the libgsasl server callback and the XMPP side of SASL.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsasl.h>
#include <stringprep.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "auth/account.h"
#include "auth/sasl.h"
#include "core/log.h"
#include "net/tls.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"

struct sasl_session {
	Gsasl_session *gs;
	const char *mech;
	enum account_hash hash;
	int plus;
	SSL *ssl;
	char *host;
	char *node;                    /* prepared, once known */
	int looked_up;
	int exists;
	int steps;                     /* gsasl_step64 calls so far */
	struct account_scram scram;
};

static Gsasl *gsasl_ctx;
/* Key for the made-up salts of accounts that do not exist, so that a
 * SCRAM exchange does not tell whether a user exists (RFC 5802 9). */
static unsigned char fake_key[32];

static const struct {
	const char *name;
	enum account_hash hash;
	int plus;
} mechs[] = {
	{ "SCRAM-SHA-256-PLUS", ACCOUNT_SHA256, 1 },
	{ "SCRAM-SHA-1-PLUS", ACCOUNT_SHA1, 1 },
	{ "SCRAM-SHA-256", ACCOUNT_SHA256, 0 },
	{ "SCRAM-SHA-1", ACCOUNT_SHA1, 0 },
	{ "PLAIN", ACCOUNT_SHA256, 0 },
};

static void
lookup(struct sasl_session *s, Gsasl_session *gs)
{
	const char *authid;
	int r;

	if (s->looked_up)
		return;
	s->looked_up = 1;
	authid = gsasl_property_fast(gs, GSASL_AUTHID);
	if (authid == NULL)
		return;
	s->node = jid_nodeprep(authid, strlen(authid));
	r = s->node != NULL ? account_get_scram(s->node, s->host, s->hash, &s->scram) : 1;
	s->exists = r == 0;
	if (!s->exists) {
		/* Same shape as a real account: a salt derived from the name
		 * (stable across attempts) and keys nobody can match. */
		unsigned int len = 0;
		unsigned char mac[32];
		char msg[2048];

		snprintf(msg, sizeof(msg), "%s@%s", authid, s->host);
		HMAC(EVP_sha256(), fake_key, sizeof(fake_key), (unsigned char *)msg,
		    strlen(msg), mac, &len);
		s->scram.iterations = 4096;
		s->scram.salt_len = 16;
		memcpy(s->scram.salt, mac, 16);
		s->scram.key_len = s->hash == ACCOUNT_SHA1 ? 20 : 32;
		RAND_bytes(s->scram.stored_key, sizeof(s->scram.stored_key));
		RAND_bytes(s->scram.server_key, sizeof(s->scram.server_key));
	}
}

static int
sasl_callback(Gsasl *ctx, Gsasl_session *gs, Gsasl_property prop)
{
	struct sasl_session *s = gsasl_session_hook_get(gs);
	char buf[128];
	char *b64 = NULL;
	size_t b64len;
	unsigned char cb[64];
	const char *cbtype;
	int n, rc = GSASL_NO_CALLBACK;

	if (s == NULL)
		return GSASL_NO_CALLBACK;
	switch (prop) {
	case GSASL_SCRAM_ITER:
		lookup(s, gs);
		snprintf(buf, sizeof(buf), "%u", s->scram.iterations);
		rc = gsasl_property_set(gs, prop, buf);
		break;
	case GSASL_SCRAM_SALT:
		lookup(s, gs);
		if (gsasl_base64_to((const char *)s->scram.salt, s->scram.salt_len,
		    &b64, &b64len) == GSASL_OK)
			rc = gsasl_property_set(gs, prop, b64);
		break;
	case GSASL_SCRAM_STOREDKEY:
	case GSASL_SCRAM_SERVERKEY:
		/* gsasl.h calls these hex-encoded, but libgsasl 2.2's SCRAM
		 * server decodes them as base64 (checked against it: hex
		 * fails every exchange). */
		lookup(s, gs);
		if (gsasl_base64_to((const char *)(prop == GSASL_SCRAM_STOREDKEY ?
		    s->scram.stored_key : s->scram.server_key), s->scram.key_len,
		    &b64, &b64len) == GSASL_OK)
			rc = gsasl_property_set(gs, prop, b64);
		break;
	case GSASL_CB_TLS_UNIQUE:
	case GSASL_CB_TLS_EXPORTER:
		/* tls-exporter exists on TLS 1.3 only; asking for it on 1.2
		 * fails the exchange, as it must (tls.h on tls-unique). */
		if (s->ssl == NULL)
			break;
		n = tls_channel_binding(s->ssl, prop == GSASL_CB_TLS_UNIQUE ?
		    "tls-unique" : "tls-exporter", &cbtype, cb, sizeof(cb));
		if (n < 0)
			break;
		if (gsasl_base64_to((const char *)cb, (size_t)n, &b64, &b64len) == GSASL_OK)
			rc = gsasl_property_set(gs, prop, b64);
		break;
	case GSASL_VALIDATE_SIMPLE: {
		/* PLAIN (RFC 4616), checked against the stored SCRAM
		 * secrets. */
		const char *authid = gsasl_property_fast(gs, GSASL_AUTHID);
		const char *password = gsasl_property_fast(gs, GSASL_PASSWORD);

		rc = GSASL_AUTHENTICATION_ERROR;
		if (authid == NULL || password == NULL)
			break;
		free(s->node);
		s->node = jid_nodeprep(authid, strlen(authid));
		if (s->node != NULL && account_check_password(s->node, s->host, password) == 1)
			rc = GSASL_OK;
		break;
	}
	default:
		break;
	}
	free(b64);
	return rc;
}

int
sasl_init(const char **error_r)
{
	int rc = gsasl_init(&gsasl_ctx);

	if (rc != GSASL_OK) {
		*error_r = gsasl_strerror(rc);
		return -1;
	}
	gsasl_callback_set(gsasl_ctx, sasl_callback);
	if (RAND_bytes(fake_key, sizeof(fake_key)) != 1) {
		*error_r = "no randomness";
		return -1;
	}
	return 0;
}

void
sasl_free(void)
{
	if (gsasl_ctx != NULL)
		gsasl_done(gsasl_ctx);
	gsasl_ctx = NULL;
}

void
sasl_add_features(xml_elem *features, SSL *ssl, int secure, int allow_plain)
{
	xml_elem *m = xml_elem_add_child(features, NS_SASL, "mechanisms");
	unsigned char cb[64];
	const char *cbtype = NULL;
	int have_cb = ssl != NULL && tls_channel_binding(ssl, NULL, &cbtype, cb, sizeof(cb)) > 0;

	for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
		xml_elem *e;

		if (mechs[i].plus && !have_cb)
			continue;
		/* RFC 6120 13.8.3 (and our default): PLAIN never in the clear. */
		if (strcmp(mechs[i].name, "PLAIN") == 0 && (!secure || !allow_plain))
			continue;
		e = xml_elem_add_child(m, NS_SASL, "mechanism");
		xml_elem_add_text(e, mechs[i].name, strlen(mechs[i].name));
	}
	if (have_cb) {
		/* XEP-0440: which channel binding the -PLUS variants use. */
		xml_elem *b = xml_elem_add_child(features, NS_SASL_CB, "sasl-channel-binding");
		xml_elem *t = xml_elem_add_child(b, NS_SASL_CB, "channel-binding");

		xml_attr_set(t, "type", cbtype);
	}
}

sasl_session *
sasl_start(const char *mech, const char *host, SSL *ssl, int secure, int allow_plain,
    const char **condition_r)
{
	struct sasl_session *s;
	size_t i;

	for (i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
		if (strcmp(mechs[i].name, mech) == 0)
			break;
	if (i == sizeof(mechs) / sizeof(mechs[0])) {
		*condition_r = "invalid-mechanism";
		return NULL;
	}
	if (strcmp(mech, "PLAIN") == 0 && (!secure || !allow_plain)) {
		*condition_r = !secure ? "encryption-required" : "invalid-mechanism";
		return NULL;
	}
	if (mechs[i].plus && ssl == NULL) {
		*condition_r = "invalid-mechanism";
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->host = strdup(host)) == NULL) {
		free(s);
		*condition_r = "temporary-auth-failure";
		return NULL;
	}
	s->mech = mechs[i].name;
	s->hash = mechs[i].hash;
	s->plus = mechs[i].plus;
	s->ssl = ssl;
	if (gsasl_server_start(gsasl_ctx, mech, &s->gs) != GSASL_OK) {
		free(s->host);
		free(s);
		*condition_r = "invalid-mechanism";
		return NULL;
	}
	gsasl_session_hook_set(s->gs, s);
	return s;
}

/*
 * The SCRAM client-first message in base64 (RFC 5802 7): 0 if its
 * username is not empty after SASLprep (RFC 4013), -1 if it is. libgsasl
 * 2.2 leaks the prepared name when it is empty (a name of characters
 * SASLprep maps to nothing, "n=\xef\xb8\x8f": fuzz-sasl found it), so such
 * a message is refused before libgsasl sees it. Anything else (not
 * base64, no "n=") is left to libgsasl, which refuses it.
 */
static int
scram_first_ok(const char *in64)
{
	unsigned char buf[6144];
	char name[512], *prepped = NULL;
	size_t n = strlen(in64), len, i, j;
	const char *p, *end;
	int rc, dec;

	if (n == 0 || n > 4 * ((sizeof(buf) - 1) / 3) || n % 4 != 0)
		return 0;
	if ((dec = EVP_DecodeBlock(buf, (const unsigned char *)in64, (int)n)) < 0)
		return 0;
	len = (size_t)dec - (in64[n - 1] == '=') - (n > 1 && in64[n - 2] == '=');
	end = (const char *)buf + len;
	/* gs2-header: cbind-flag "," [authzid] "," */
	p = memchr(buf, ',', len);
	if (p == NULL || (p = memchr(p + 1, ',', (size_t)(end - p - 1))) == NULL)
		return 0;
	p++;
	if (end - p < 2 || p[0] != 'n' || p[1] != '=')
		return 0;
	p += 2;
	for (i = 0, j = 0; p + i < end && p[i] != ',' && j + 1 < sizeof(name); i++) {
		/* saslname: "=2C" is ',', "=3D" is '=' */
		if (p[i] == '=' && p + i + 2 < end && p[i + 1] == '2' && p[i + 2] == 'C') {
			name[j++] = ',';
			i += 2;
		} else if (p[i] == '=' && p + i + 2 < end && p[i + 1] == '3' && p[i + 2] == 'D') {
			name[j++] = '=';
			i += 2;
		} else if (p[i] == '\0') {
			return 0;
		} else {
			name[j++] = p[i];
		}
	}
	name[j] = '\0';
	rc = stringprep_profile(name, &prepped, "SASLprep", 0);
	if (rc != STRINGPREP_OK) {
		free(prepped);
		return 0;
	}
	rc = prepped[0] == '\0' ? -1 : 0;
	free(prepped);
	return rc;
}

enum sasl_result
sasl_step(sasl_session *s, const char *in, char **out_r, const char **condition_r)
{
	char *out = NULL;
	int rc;

	*out_r = NULL;
	/* RFC 6120 6.4.2: "=" stands for an empty response. */
	if (strcmp(in, "=") == 0)
		in = "";
	if (s->steps++ == 0 && strncmp(s->mech, "SCRAM", 5) == 0 && scram_first_ok(in) < 0) {
		/* RFC 5802 7: an empty username is not one. */
		*condition_r = "malformed-request";
		return SASL_FAILURE;
	}
	rc = gsasl_step64(s->gs, in, &out);
	switch (rc) {
	case GSASL_NEEDS_MORE:
		*out_r = out != NULL ? out : strdup("");
		return SASL_CONTINUE;
	case GSASL_OK:
		/* A SCRAM proof can only match real secrets, but say no
		 * to a made-up account explicitly all the same. */
		if (s->node == NULL || (strncmp(s->mech, "SCRAM", 5) == 0 && !s->exists)) {
			free(out);
			*condition_r = "not-authorized";
			return SASL_FAILURE;
		}
		{
			/* RFC 6120 6.4.6: an authzid must be the account's
			 * own bare JID. */
			const char *authzid = gsasl_property_fast(s->gs, GSASL_AUTHZID);
			const char *authid = gsasl_property_fast(s->gs, GSASL_AUTHID);

			/* libgsasl 2.2's PLAIN reports the authid as authzid
			 * when the client sent none; that is no request to act
			 * as anyone else. */
			if (authzid != NULL && *authzid != '\0' &&
			    (authid == NULL || strcmp(authzid, authid) != 0)) {
				char bare[2100];
				jid j;
				const char *e;
				int ok = 0;

				snprintf(bare, sizeof(bare), "%s@%s", s->node, s->host);
				if (jid_parse(&j, authzid, strlen(authzid), &e) == 0) {
					ok = strcmp(j.full, bare) == 0;
					jid_free(&j);
				}
				if (!ok) {
					free(out);
					*condition_r = "invalid-authzid";
					return SASL_FAILURE;
				}
			}
		}
		*out_r = out != NULL ? out : strdup("");
		return SASL_SUCCESS;
	case GSASL_BASE64_ERROR:
		*condition_r = "incorrect-encoding";
		break;
	case GSASL_MECHANISM_PARSE_ERROR:
		*condition_r = "malformed-request";
		break;
	default:
		log_debug("sasl", "%s: %s", s->mech, gsasl_strerror(rc));
		*condition_r = "not-authorized";
		break;
	}
	free(out);
	return SASL_FAILURE;
}

const char *
sasl_node(sasl_session *s)
{
	return s->node;
}

const char *
sasl_mechanism(sasl_session *s)
{
	return s->mech;
}

void
sasl_end(sasl_session **sp)
{
	struct sasl_session *s = *sp;

	if (s == NULL)
		return;
	gsasl_finish(s->gs);
	OPENSSL_cleanse(&s->scram, sizeof(s->scram));
	free(s->node);
	free(s->host);
	free(s);
	*sp = NULL;
}
