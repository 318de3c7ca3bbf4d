/*
 * s2s_int.h - what the files of src/s2s/ share: the connection object and
 * its helpers. Not for use outside src/s2s/.
 *
 * One struct serves the three kinds of stream: an incoming stream (we are
 * the receiving server), an outgoing link (we are the initiating server of
 * a local -> remote pair) and a verification stream (we ask the
 * authoritative server of a domain whether a dialback key is valid,
 * XEP-0220 2.3). Each is an XML stream (stream/xstream.h) on one worker,
 * in the set of s2s streams, and is freed only from a libevent callback,
 * never inside expat's.
 */
#ifndef XMPPD_S2S_INT_H
#define XMPPD_S2S_INT_H

#include <stdint.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "stream/xstream.h"
#include "xml/xml.h"

struct conf;
struct worker;
struct evdns_base;
struct srv_lookup;

#define NS_DIALBACK       "jabber:server:dialback"
#define NS_DIALBACK_FEAT  "urn:xmpp:features:dialback"

enum s2s_kind { S2S_IN, S2S_OUT, S2S_VERIFY };

enum s2s_state {
	ST_RESOLVING,      /* out: DNS */
	ST_CONNECTING,     /* out: TCP (and direct TLS) */
	ST_NEGOTIATING,    /* stream open, TLS / authentication under way */
	ST_ESTABLISHED,    /* out: authenticated; in: at least one pair */
};

/* An authenticated (local, remote) pair of an incoming stream. */
struct s2s_pair {
	char *local, *remote;
	const char *auth;            /* "external" or "dialback" */
};

/* A dialback key an incoming stream asked us to check with the
 * authoritative server (XEP-0220 2.3), carried by a verify stream. */
struct s2s_vreq {
	uint64_t in_id;              /* the incoming stream waiting for it */
	char *id, *key;              /* its stream id, the key */
	int sent;
};

/* Where to connect, from s2s_hosts or DNS (RFC 6120 3.2, XEP-0368). */
struct s2s_target {
	char *host;
	uint16_t port;
	int direct_tls;
};

struct s2s_worker;

struct s2s_conn {
	struct xstream xs;               /* the stream: bytes, TLS, parser, closing */
	struct s2s_conn *gprev, *gnext;  /* every connection, for xmppctl (glock) */
	uint64_t id;
	enum s2s_kind kind;
	enum s2s_state state;
	struct worker *w;
	struct s2s_worker *sw;
	struct conf *conf;
	struct event *tick;              /* idle close and keepalive */

	unsigned in_table : 1;           /* out: the link for its pair */
	unsigned tried_external : 1;
	unsigned sasl_done : 1;
	unsigned ka_sent : 1;
	unsigned version1 : 1;           /* in: the peer said version 1.0 */
	unsigned peer_verified : 1;      /* out: its certificate verified for remote */

	char *local, *remote;            /* out/verify: the pair; in: header to/from */
	const char *auth;                /* out: "external", "external-unverified", "dialback" */
	struct s2s_pair *pairs;          /* in */
	size_t npairs;
	xml_elem **queue;                /* out: waiting for the link */
	size_t qlen, qcap;
	struct s2s_vreq *vreq;           /* verify */
	size_t nvreq;

	/* out/verify: where to connect */
	struct s2s_target *targets;
	size_t ntargets, cur_target;
	struct evutil_addrinfo *addrs, *cur_addr;
	const char *fail_condition;      /* the bounce if every target fails */

	uint64_t last_stanza_ms;         /* idle timeout */
	uint64_t last_io_ms;             /* keepalive: the last bytes either way */
	uint64_t ka_sent_ms;
	unsigned long n_in, n_out;       /* stanzas; read by xmppctl (atomic) */
	char tlsver[16];
	char addr[64];
	char tag[48];
};

struct s2s_worker {
	unsigned id;
	uint64_t next_id;
	struct evdns_base *dns;
	struct srv_lookup *lookups;      /* SRV queries under way */
};

/* s2s.c: the worker of w, the connections, what s2s adds to the stream. */
struct s2s_worker *s2s_worker_of(struct worker *w);
struct s2s_conn *s2s_conn_new(struct worker *w, enum s2s_kind kind);
/* The worker's connections (newest first), and by id. */
struct s2s_conn *s2s_first(struct s2s_worker *sw);
struct s2s_conn *s2s_next(const struct s2s_conn *c);
struct s2s_conn *s2s_find(struct s2s_worker *sw, uint64_t id);
/* The server is shutting down: no new links on sw. */
int s2s_stopping(const struct s2s_worker *sw);
/* Starts the idle and keepalive tick (a socket is there now). */
void s2s_start_tick(struct s2s_conn *c);
/* Writes to the stream; counts as traffic for the keepalive. */
void s2s_write(struct s2s_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void s2s_send_stanza(struct s2s_conn *c, xml_elem *st);
void s2s_free(struct s2s_conn *c);
void s2s_update_listing(struct s2s_conn *c);
/* Held while changing what s2s_list reads (pairs, local, remote). */
void s2s_glock(void);
void s2s_gunlock(void);
struct evdns_base *s2s_dns(struct s2s_worker *sw, const struct conf *conf);
/* Our domain, or a subdomain of one (a service such as a MUC). */
int s2s_is_local_domain(const struct conf *c, const char *domain);
/* s2s_access allows the remote domain (sa: its address, or NULL). */
int s2s_remote_allowed(const struct conf *c, const char *domain, const struct sockaddr *sa);

/* s2s_in.c */
void s2s_in_stream_start(struct s2s_conn *c, const struct xstream_header *h);
void s2s_in_element(struct s2s_conn *c, xml_elem *e);
/* A verify stream's answer for an incoming stream's db:result. */
void s2s_in_verified(struct s2s_worker *sw, uint64_t in_id, const char *local,
    const char *remote, const char *type, const char *condition);

/* s2s_out.c */
void s2s_out_route(struct worker *w, xml_elem *st, const char *local, const char *remote);
void s2s_out_stream_start(struct s2s_conn *c, const struct xstream_header *h);
void s2s_out_element(struct s2s_conn *c, xml_elem *e);
void s2s_out_connected(struct s2s_conn *c);
void s2s_out_conn_failed(struct s2s_conn *c, const char *why);
/* Fails an outgoing link: bounces its queue with condition, forgets it. */
void s2s_out_fail(struct s2s_conn *c, const char *condition, const char *why);
void s2s_out_closed(struct s2s_conn *c);
/* Starts a verify stream from local to remote for an incoming stream. */
void s2s_verify_start(struct worker *w, uint64_t in_id, const char *local,
    const char *remote, const char *id, const char *key);

/* s2s_dns.c: the targets of a domain; cb gets them (n 0: not found) once. */
typedef void (*s2s_targets_fn)(struct s2s_worker *sw, uint64_t conn_id,
    struct s2s_target *t, size_t n);
void s2s_dns_targets(struct s2s_worker *sw, const struct conf *conf, uint64_t conn_id,
    const char *domain, s2s_targets_fn cb);
void s2s_dns_free_all(struct s2s_worker *sw);
void s2s_targets_free(struct s2s_target *t, size_t n);

/* dialback.c: XEP-0185 keys. */
void dialback_init(void);
/* key = HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' id), hex. */
void dialback_key(const struct conf *c, const char *receiving, const char *originating,
    const char *id, char out[65]);
int dialback_key_ok(const struct conf *c, const char *receiving, const char *originating,
    const char *id, const char *key);

#endif
