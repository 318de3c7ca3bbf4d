/*
 * sasl.h - SASL (RFC 6120 6, RFC 4422) through libgsasl, against the SCRAM
 * secrets of auth/account.h.
 *
 * Mechanisms, strongest first: SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS (only
 * over TLS, with tls-exporter on TLS 1.3 and tls-unique on TLS 1.2),
 * SCRAM-SHA-256, SCRAM-SHA-1, and PLAIN only over TLS.
 */
#ifndef XMPPD_SASL_H
#define XMPPD_SASL_H

#include <openssl/ssl.h>

#include "xml/xml.h"

typedef struct sasl_session sasl_session;

enum sasl_result { SASL_CONTINUE, SASL_SUCCESS, SASL_FAILURE };

int sasl_init(const char **error_r);
void sasl_free(void);

/* Adds <mechanisms/> (and XEP-0440 <sasl-channel-binding/>) to features.
 * ssl is the stream's TLS session or NULL (channel binding); secure says
 * the stream is encrypted (TLS on it, or on the HTTP connection or proxy
 * a WebSocket or BOSH session came through): PLAIN only then. */
void sasl_add_features(xml_elem *features, SSL *ssl, int secure, int allow_plain);

/*
 * Starts mech for an account on host (allow_plain as above). Returns NULL
 * with *condition_r set
 * to the RFC 6120 6.5 failure condition ("invalid-mechanism",
 * "encryption-required").
 */
sasl_session *sasl_start(const char *mech, const char *host, SSL *ssl, int secure,
    int allow_plain, const char **condition_r);
/*
 * One step. in is the base64 text of <auth/> or <response/> ("" for none,
 * "=" for empty). *out_r (malloc'd base64, "" if empty) is the challenge or
 * the additional data of success. On failure *condition_r is the 6.5
 * condition.
 */
enum sasl_result sasl_step(sasl_session *s, const char *in, char **out_r,
    const char **condition_r);
/* After SASL_SUCCESS: the authenticated account's prepared node. */
const char *sasl_node(sasl_session *s);
const char *sasl_mechanism(sasl_session *s);
void sasl_end(sasl_session **s);

/* The SASL section of xmppd.yml (auth_conf.c: scram_iterations,
 * allow_plain), registered with conf_section_register (core/conf_keys.h)
 * by the composition root. */
struct conf_section;
extern const struct conf_section auth_conf_section;

#endif
