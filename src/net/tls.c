/*
 * tls.c - TLS server contexts, SNI, ALPN and channel bindings.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/conf.h"
#include "core/log.h"
#include "net/tls.h"

struct tls_ctx {
	SSL_CTX *ctx;
	char **names;            /* DNS names of the certificate */
	size_t nnames;
};

struct tls_set {
	struct tls_ctx *v;
	size_t n;
};

static struct tls_set *current;
static pthread_rwlock_t tls_lock = PTHREAD_RWLOCK_INITIALIZER;
static int alpn_index = -1;

static void
set_free(struct tls_set *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		SSL_CTX_free(s->v[i].ctx);
		for (size_t k = 0; k < s->v[i].nnames; k++)
			free(s->v[i].names[k]);
		free(s->v[i].names);
	}
	free(s->v);
	free(s);
}

/* RFC 6125 6.4: a name matches exactly, or a "*." wildcard matches one
 * leftmost label. */
static int
name_matches(const char *pattern, const char *host)
{
	const char *dot;

	if (strcasecmp(pattern, host) == 0)
		return 1;
	if (strncmp(pattern, "*.", 2) != 0)
		return 0;
	dot = strchr(host, '.');
	return dot != NULL && dot != host && strcasecmp(pattern + 1, dot) == 0;
}

static SSL_CTX *
find_ctx(struct tls_set *s, const char *host)
{
	for (size_t i = 0; i < s->n; i++)
		for (size_t k = 0; k < s->v[i].nnames; k++)
			if (name_matches(s->v[i].names[k], host))
				return s->v[i].ctx;
	return NULL;
}

static int
sni_cb(SSL *ssl, int *al, void *arg)
{
	const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	SSL_CTX *ctx = NULL;

	if (host == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	pthread_rwlock_rdlock(&tls_lock);
	if (current != NULL)
		ctx = find_ctx(current, host);
	if (ctx != NULL && ctx != SSL_get_SSL_CTX(ssl))
		SSL_set_SSL_CTX(ssl, ctx);
	pthread_rwlock_unlock(&tls_lock);
	return SSL_TLSEXT_ERR_OK;
}

static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	const char *want = SSL_get_ex_data(ssl, alpn_index);
	unsigned char proto[32];
	size_t wl;

	if (want == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	wl = strlen(want);
	proto[0] = (unsigned char)wl;
	memcpy(proto + 1, want, wl);
	/* XEP-0368 4: a client that offers ALPN must offer our protocol;
	 * one that offers others only is refused. */
	if (SSL_select_next_proto((unsigned char **)out, outlen, proto, (unsigned)wl + 1,
	    in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	return SSL_TLSEXT_ERR_OK;
}

static int
collect_names(struct tls_ctx *t, X509 *cert)
{
	GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	int n = sans != NULL ? sk_GENERAL_NAME_num(sans) : 0;

	t->names = calloc((size_t)n + 1, sizeof(char *));
	if (t->names == NULL)
		return -1;
	for (int i = 0; i < n; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		const unsigned char *d;

		if (g->type != GEN_DNS)
			continue;
		d = ASN1_STRING_get0_data(g->d.dNSName);
		t->names[t->nnames++] = strndup((const char *)d,
		    (size_t)ASN1_STRING_length(g->d.dNSName));
	}
	GENERAL_NAMES_free(sans);
	if (t->nnames == 0) {
		/* RFC 6125 6.4.4: the CN only when there is no DNS SAN. */
		char cn[256];

		if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
		    NID_commonName, cn, sizeof(cn)) > 0)
			t->names[t->nnames++] = strdup(cn);
	}
	return 0;
}

static char errmsg[512];

static const char *
ssl_error(const char *file, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(errmsg, sizeof(errmsg), "%s: %s: %s", file, what, e ? buf : "unknown error");
	return errmsg;
}

int
tls_load(const struct conf *c, const char **error_r)
{
	struct tls_set *s, *old;

	if (alpn_index < 0)
		alpn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->v = calloc(c->ncertfiles + 1, sizeof(*s->v))) == NULL) {
		free(s);
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < c->ncertfiles; i++) {
		const char *f = c->certfiles[i];
		struct tls_ctx *t = &s->v[s->n];
		SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

		if (ctx == NULL) {
			*error_r = ssl_error(f, "cannot create a TLS context");
			goto err;
		}
		t->ctx = ctx;
		s->n++;
		SSL_CTX_set_min_proto_version(ctx, c->tls_min_version);
		/* Renegotiation has no use in XMPP and a history of attacks;
		 * idle connections give their buffers back (a million idle
		 * sessions is the goal). */
		SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
		if (SSL_CTX_use_certificate_chain_file(ctx, f) != 1) {
			*error_r = ssl_error(f, "cannot read the certificate chain");
			goto err;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, f, SSL_FILETYPE_PEM) != 1) {
			*error_r = ssl_error(f, "cannot read the private key");
			goto err;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			*error_r = ssl_error(f, "the private key does not match the certificate");
			goto err;
		}
		if (collect_names(t, SSL_CTX_get0_certificate(ctx)) < 0) {
			*error_r = "out of memory";
			goto err;
		}
		SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
		SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
		if (c->ca_file != NULL &&
		    SSL_CTX_load_verify_locations(ctx, c->ca_file, NULL) != 1) {
			*error_r = ssl_error(c->ca_file, "cannot read the CA file");
			goto err;
		}
	}
	for (size_t h = 0; h < c->nhosts; h++)
		if (s->n > 0 && find_ctx(s, c->hosts[h]) == NULL)
			log_warning("tls", "no certificate names host %s; the first "
			    "certificate will be used for it", c->hosts[h]);
	pthread_rwlock_wrlock(&tls_lock);
	old = current;
	current = s;
	pthread_rwlock_unlock(&tls_lock);
	set_free(old);
	return 0;
err:
	set_free(s);
	return -1;
}

void
tls_free(void)
{
	pthread_rwlock_wrlock(&tls_lock);
	set_free(current);
	current = NULL;
	pthread_rwlock_unlock(&tls_lock);
}

SSL *
tls_new_server(const char *alpn)
{
	SSL *ssl = NULL;

	pthread_rwlock_rdlock(&tls_lock);
	if (current != NULL && current->n > 0)
		ssl = SSL_new(current->v[0].ctx);
	pthread_rwlock_unlock(&tls_lock);
	if (ssl != NULL && alpn != NULL)
		SSL_set_ex_data(ssl, alpn_index, (void *)alpn);
	return ssl;
}

const char *
tls_version(SSL *ssl)
{
	return SSL_get_version(ssl);
}

int
tls_channel_binding(SSL *ssl, const char *type, const char **type_r,
    unsigned char *out, size_t outlen)
{
	size_t n;
	int v13 = SSL_version(ssl) >= TLS1_3_VERSION;

	if (type == NULL)
		type = v13 ? "tls-exporter" : "tls-unique";
	if (strcmp(type, "tls-exporter") == 0) {
		/* RFC 9266 2: 32 bytes, label "EXPORTER-Channel-Binding",
		 * empty context; defined for TLS 1.3 only. */
		if (!v13 || outlen < 32 || SSL_export_keying_material(ssl, out, 32,
		    "EXPORTER-Channel-Binding", 24, NULL, 0, 0) != 1)
			return -1;
		*type_r = "tls-exporter";
		return 32;
	}
	if (strcmp(type, "tls-unique") != 0)
		return -1;
	/* RFC 5929 3.1: the first Finished message of the most recent
	 * handshake: the client's on a full handshake, ours on a resumed
	 * one. */
	if (SSL_session_reused(ssl))
		n = SSL_get_finished(ssl, out, outlen);
	else
		n = SSL_get_peer_finished(ssl, out, outlen);
	if (n == 0 || n > outlen)
		return -1;
	*type_r = "tls-unique";
	return (int)n;
}
