/*
 * tls.c - TLS server contexts, SNI, ALPN and channel bindings.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/conf.h"
#include "core/log.h"
#include "net/tls.h"

struct tls_ctx {
	SSL_CTX *ctx;
	SSL_CTX *client;         /* the same certificate for outgoing s2s */
	char **names;            /* DNS names of the certificate */
	size_t nnames;
};

struct tls_set {
	struct tls_ctx *v;
	size_t n;
	SSL_CTX *anon_client;    /* outgoing s2s when there is no certificate */
};

static struct tls_set *current;
static pthread_rwlock_t tls_lock = PTHREAD_RWLOCK_INITIALIZER;
static int alpn_index = -1;

static void
set_free(struct tls_set *s)
{
	if (s == NULL)
		return;
	SSL_CTX_free(s->anon_client);
	for (size_t i = 0; i < s->n; i++) {
		SSL_CTX_free(s->v[i].ctx);
		SSL_CTX_free(s->v[i].client);
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

/* The handshake goes on whatever the chain; SSL_get_verify_result says
 * afterwards what it was, and s2s decides (tls_peer_verified). */
static int
accept_any_cb(int ok, X509_STORE_CTX *x)
{
	return 1;
}

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

/*
 * The chain we send with our certificate is settled once, when the
 * certificate is loaded: the intermediates in the certificate file, or
 * else what the CA store offers. Left to OpenSSL's automatic chain
 * building, a certificate file without intermediates makes every handshake
 * look its issuer up in the CA store, and with the default paths that is a
 * scan of the /etc/ssl/certs directory: 16 % of the server's CPU per login
 * in tools/bench (doc/performance.md). Call after the CA store is set.
 */
static void
own_chain_once(SSL_CTX *ctx)
{
	STACK_OF(X509) *chain = NULL;

	(void)SSL_CTX_get0_chain_certs(ctx, &chain);
	if (chain == NULL || sk_X509_num(chain) == 0)
		(void)SSL_CTX_build_cert_chain(ctx, SSL_BUILD_CHAIN_FLAG_NO_ROOT |
		    SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR);
	ERR_clear_error();
	SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
}

/*
 * A client context for outgoing s2s streams: the certificate of certfile
 * (NULL: none) for the peer to authenticate us (SASL EXTERNAL, XEP-0178),
 * and the CAs that verify the peer's (RFC 6120 13.7.2). Verification
 * failures do not stop the handshake: s2s then decides, going on only
 * where the configuration allows dialback (doc/federation.md).
 */
static SSL_CTX *
client_ctx(const struct conf *c, const char *certfile, const char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		*error_r = ssl_error(certfile ? certfile : "TLS", "cannot create a client context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, c->tls_min_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (certfile != NULL && (SSL_CTX_use_certificate_chain_file(ctx, certfile) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, certfile, SSL_FILETYPE_PEM) != 1)) {
		*error_r = ssl_error(certfile, "cannot read the certificate for s2s");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (c->ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, c->ca_file, NULL) != 1 :
	    SSL_CTX_set_default_verify_paths(ctx) != 1) {
		*error_r = ssl_error(c->ca_file ? c->ca_file : "default CA paths",
		    "cannot read the CA file");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (certfile != NULL)
		own_chain_once(ctx);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_cb);
	return ctx;
}

/*
 * libevent 2.1 makes the BIO method of its OpenSSL filter bufferevents on
 * first use, without a lock, and publishes it before setting its callbacks
 * (bufferevent_openssl.c, BIO_s_bufferevent). Two workers starting their
 * first filter at once (STARTTLS on s2s, a shaped c2s listener) race: one
 * method leaks (LeakSanitizer saw it in t1040, one run in five) and the
 * other worker may use a method whose callbacks are not set yet. One
 * throwaway filter, made here on the main thread before any worker runs,
 * makes the method once.
 */
static void
warm_openssl_filter(SSL_CTX *ctx)
{
	struct event_base *base = event_base_new();
	struct bufferevent *under = base != NULL ? bufferevent_socket_new(base, -1,
	    BEV_OPT_CLOSE_ON_FREE) : NULL;
	SSL *ssl = under != NULL ? SSL_new(ctx) : NULL;
	struct bufferevent *f = ssl != NULL ? bufferevent_openssl_filter_new(base, under, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE) : NULL;

	if (f != NULL) {
		bufferevent_free(f);    /* frees ssl and under too */
	} else {
		SSL_free(ssl);
		if (under != NULL)
			bufferevent_free(under);
	}
	if (base != NULL)
		event_base_free(base);
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
		/* TLS 1.3: one session ticket after the handshake, not
		 * OpenSSL's two (each is a serialized, encrypted copy of the
		 * session; ~4 % of a login's CPU). An XMPP client resumes one
		 * stream at a time (RFC 8446 4.6.1 leaves the number to us). */
		(void)SSL_CTX_set_num_tickets(ctx, 1);
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
		/* Peers' certificates (s2s) are checked against the system's
		 * CAs when no ca_file is set. */
		if (c->ca_file == NULL)
			(void)SSL_CTX_set_default_verify_paths(ctx);
		own_chain_once(ctx);
		if ((t->client = client_ctx(c, f, error_r)) == NULL)
			goto err;
	}
	if ((s->anon_client = client_ctx(c, NULL, error_r)) == NULL)
		goto err;
	if (current == NULL)
		warm_openssl_filter(s->anon_client);
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

SSL *
tls_new_s2s_server(const char *alpn)
{
	SSL *ssl = tls_new_server(alpn);

	if (ssl == NULL)
		return NULL;
	/* Ask the initiating server for its certificate (RFC 6120 13.7.2.2,
	 * XEP-0178 3). A server that asks needs a session id context. */
	SSL_set_verify(ssl, SSL_VERIFY_PEER, accept_any_cb);
	SSL_set_session_id_context(ssl, (const unsigned char *)"xmppd-s2s", 9);
	return ssl;
}

SSL *
tls_new_client(const char *local, const char *peer, const char *alpn)
{
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;

	pthread_rwlock_rdlock(&tls_lock);
	if (current != NULL) {
		/* The certificate that names our domain (virtual hosting);
		 * else the first; else none. */
		for (size_t i = 0; ctx == NULL && i < current->n; i++)
			for (size_t k = 0; k < current->v[i].nnames; k++)
				if (name_matches(current->v[i].names[k], local)) {
					ctx = current->v[i].client;
					break;
				}
		if (ctx == NULL)
			ctx = current->n > 0 ? current->v[0].client : current->anon_client;
		ssl = SSL_new(ctx);
	}
	pthread_rwlock_unlock(&tls_lock);
	if (ssl == NULL)
		return NULL;
	/* RFC 6120 13.7.2.1 / XEP-0368: SNI is the peer's domain. */
	(void)SSL_set_tlsext_host_name(ssl, peer);
	if (alpn != NULL) {
		unsigned char proto[32];
		size_t n = strlen(alpn);

		if (n < sizeof(proto)) {
			proto[0] = (unsigned char)n;
			memcpy(proto + 1, alpn, n);
			(void)SSL_set_alpn_protos(ssl, proto, (unsigned)n + 1);
		}
	}
	return ssl;
}

int
tls_peer_verified(SSL *ssl, const char *domain, const char **why_r)
{
	X509 *cert;
	long v;
	int ok;

	if (ssl == NULL) {
		*why_r = "no TLS";
		return 0;
	}
	cert = SSL_get1_peer_certificate(ssl);
	if (cert == NULL) {
		*why_r = "no certificate";
		return 0;
	}
	v = SSL_get_verify_result(ssl);
	if (v != X509_V_OK) {
		X509_free(cert);
		*why_r = X509_verify_cert_error_string(v);
		return 0;
	}
	/* RFC 6125 6.4 (DNS-ID, a wildcard for the leftmost label only,
	 * 6.4.3) and 6.4.4 (CN only without a DNS SAN): what OpenSSL's
	 * host check does. XmppAddr and SRV-IDs (RFC 6120 13.7.1.2) are not
	 * looked at; deployed certificates carry DNS-IDs. */
	ok = X509_check_host(cert, domain, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
	    NULL) == 1;
	X509_free(cert);
	if (!ok)
		*why_r = "the certificate does not name the domain";
	return ok;
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

/* ---------------------------------------------------------------- */
/* After <proceed/> (tls.h).                                          */

/* XML 1.0 2.3, production S. */
static int
is_xml_space(unsigned char b)
{
	return b == ' ' || b == '\t' || b == '\r' || b == '\n';
}

/* The first byte of a record is its content type (RFC 8446 5.1):
 * handshake (22) for a ClientHello or ServerHello, alert (21) for a
 * server that refuses our ClientHello. Neither is a byte of XML text. */
static enum tls_gate
first_byte(unsigned char b)
{
	return b == 22 || b == 21 ? TLS_GATE_RECORD : TLS_GATE_REFUSE;
}

enum tls_gate
tls_gate_buffer(struct evbuffer *in)
{
	unsigned char b;

	while (evbuffer_copyout(in, &b, 1) == 1) {
		if (!is_xml_space(b))
			return first_byte(b);
		evbuffer_drain(in, 1);
	}
	return TLS_GATE_WAIT;
}

enum tls_gate
tls_gate_socket(int fd)
{
	unsigned char buf[64];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK);
		size_t k = 0;

		if (n == 0)
			return TLS_GATE_CLOSED;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ?
			    TLS_GATE_WAIT : TLS_GATE_CLOSED;
		while (k < (size_t)n && is_xml_space(buf[k]))
			k++;
		/* What was peeked is there: this read takes exactly the
		 * whitespace. */
		if (k > 0 && recv(fd, buf, k, 0) != (ssize_t)k)
			return TLS_GATE_CLOSED;
		if (k < (size_t)n)
			return first_byte(buf[k]);
	}
}
