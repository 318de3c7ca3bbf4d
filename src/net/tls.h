/*
 * tls.h - TLS contexts (OpenSSL) for c2s and s2s: server side, and client
 * side for outgoing s2s streams.
 *
 * One SSL_CTX per certificate file; SNI picks the one whose certificate
 * names the requested host, the first file is the default. The set is
 * replaced whole on reload: connections keep the SSL_CTX they started with
 * (OpenSSL counts references), new ones get the new set.
 */
#ifndef XMPPD_TLS_H
#define XMPPD_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

struct conf;
struct evbuffer;

/* Loads every certfile of c; on failure the running set is unchanged and
 * *error_r says which file and why (static buffer, main thread). */
int tls_load(const struct conf *c, const char **error_r);
void tls_free(void);
/* A new server-side SSL for a connection, or NULL (no certificate). alpn
 * is the protocol accepted by ALPN ("xmpp-client"), or NULL. */
SSL *tls_new_server(const char *alpn);
/* For an incoming s2s stream: tls_new_server that also asks the peer for
 * its certificate (checked afterwards with tls_peer_verified). */
SSL *tls_new_s2s_server(const char *alpn);
/*
 * A client-side SSL for an outgoing s2s stream from local to peer: the
 * certificate whose names cover local (else the first), SNI peer, ALPN
 * alpn (or NULL), peers verified against ca_file (or the system's CAs).
 */
SSL *tls_new_client(const char *local, const char *peer, const char *alpn);
/* 1 if the peer's certificate chains to a trusted CA and names domain
 * (RFC 6125 6.4); else 0 and *why_r says why (static). */
int tls_peer_verified(SSL *ssl, const char *domain, const char **why_r);
/* "TLSv1.3" and the like. */
const char *tls_version(SSL *ssl);

/*
 * Channel binding data for SCRAM -PLUS. type is "tls-exporter" (RFC 9266,
 * TLS 1.3 only) or "tls-unique" (RFC 5929); NULL asks for the one that fits
 * the TLS version (exporter on 1.3, unique on 1.2), which is the one
 * advertised, and *type_r says which. Returns the data length or -1.
 *
 * tls-unique is also given on TLS 1.3, where RFC 9266 replaced it, because
 * deployed clients (slixmpp 1.8, older nbxmpp) still send it there; the
 * first Finished message is still bound to the handshake, so a man in the
 * middle is still caught. doc/architecture.md, "Channel binding".
 */
int tls_channel_binding(SSL *ssl, const char *type, const char **type_r,
    unsigned char *out, size_t outlen);

/*
 * Between <proceed/> and the peer's first TLS record (RFC 6120 5.4.2.3):
 * whitespace is skipped, a leniency (5.3.3 forbids whitespace there, and
 * Go clients send a newline after <starttls/>). Any other byte is not TLS:
 * plain text that a peer did not wait with, or that was injected to be
 * read as if it had come through TLS (CVE-2011-0411). It must reach
 * neither TLS nor the parser of the new stream: the connection ends.
 */
enum tls_gate {
	TLS_GATE_WAIT,      /* nothing but whitespace so far (skipped) */
	TLS_GATE_RECORD,    /* a TLS record starts here: hand over to TLS */
	TLS_GATE_REFUSE,    /* a byte that cannot start a TLS record */
	TLS_GATE_CLOSED     /* end of file or a socket error */
};

/* Drains the whitespace at the start of in and says what follows. */
enum tls_gate tls_gate_buffer(struct evbuffer *in);
/* The same on a non-blocking socket with nothing read yet: the
 * whitespace is read and dropped, the record is only peeked at, so that
 * an SSL on the socket reads it whole. */
enum tls_gate tls_gate_socket(int fd);

/* The TLS section of xmppd.yml (tls_conf.c: certfiles, ca_file,
 * tls_min_version), registered with conf_section_register
 * (core/conf_keys.h) by the composition root. */
struct conf_section;
extern const struct conf_section tls_conf_section;

#endif
