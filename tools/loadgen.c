/*
 * loadgen.c - an XMPP client load generator for benchmarks (doc/performance.md).
 *
 * Opens N client connections to one server, each doing what a real client
 * does: stream header, STARTTLS, SASL (PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256),
 * resource binding, the legacy session IQ if the server requires it, and
 * initial presence. Then, if asked, it sends chat messages at a chosen
 * aggregate rate from random online users to random other online users,
 * each carrying its send time, and measures when they arrive.
 *
 * It reports logins/s, messages/s delivered, login and end-to-end latency
 * percentiles, and every error by kind, as text and as one JSON line
 * ("RESULT {...}") for tools/bench.
 *
 * Everything runs on one thread and one libevent base (the server under
 * test needs the other core). TLS is bufferevent_openssl straight on the
 * socket once <proceed/> has arrived; server output is parsed with xmppd's
 * own stream parser (xml/stream.h). SCRAM is computed here with OpenSSL:
 * SaltedPassword and the keys derived from it are cached per (hash,
 * password, salt, iterations), so PBKDF2 runs once per distinct account
 * secret, not once per login.
 *
 * Connections are spread over several 127.0.0.x source addresses (bind()
 * before connect(), with IP_BIND_ADDRESS_NO_PORT) so that more than one
 * address's worth of ephemeral ports can be used. Everything is bounded:
 * the number of connections, the time a login may take, the messaging
 * time, the drain time and the whole run (--max-time).
 *
 * With --websocket PATH every connection is XMPP over WebSocket (RFC 7395)
 * instead: the HTTP/1.1 upgrade (RFC 6455 4.1, subprotocol "xmpp"), then
 * one masked text frame per element, <open/> and <close/> in the framing
 * namespace instead of the stream tags, no STARTTLS (--ws-tls: TLS from
 * the first byte, wss://). The server's messages are unwrapped and fed to
 * the same stream parser, its <open/> as a stream header, its <close/> as
 * the end tag.
 *
 * With --wait-stdin the run pauses after the logins and after the
 * messages, printing "READY login {...}" / "READY chat {...}", until a
 * line arrives on standard input; end of input ends the run. That is how
 * tools/bench samples the server between phases.
 *
 * The archive (XEP-0313): --carbons enables Message Carbons (XEP-0280) on
 * every session after bind. --fill N, after the chat phases, has every
 * other session send N messages in all to the first account (a window of
 * --fill-window in flight), so that its archive holds N messages with a
 * few contacts; the stanza-id (XEP-0359) the server puts on a sample of
 * them is kept ("READY fill {...}"). --queries Q then times Q archive
 * queries of each kind from the first account, one at a time, from the
 * IQ sent to its result: the newest page (RSM <before/>, XEP-0059 2.5),
 * a page in the middle (<before>ID</before> with a kept stanza-id), the
 * newest page 'with' one contact, and a full-text page (XEP-0431) for a
 * rare and for a common word ("READY archive {...}").
 *
 * Publish-subscribe: --pubsub SERVICE (XEP-0060: one node, every other
 * session subscribed with its bare JID) or --pep (XEP-0163: every other
 * account a mutual contact of the first, with XEP-0115 caps asking for
 * avatar metadata notifications), set up after the other phases ("READY
 * pubsub-setup" / "READY pep-setup"); then the first session publishes at
 * --publish-rate and every notification's latency is measured from the
 * send time its item id carries ("READY pubsub" / "READY pep").
 *
 * Group chat: --muc ROOM (XEP-0045) has every session join ROOM, the
 * first one creating it as an instant room (10.1.2), the others at most
 * --setup-window joins in flight, each done when its own presence (status
 * 110) has come ("READY muc-setup"); then --muc-senders of them send one
 * groupchat message each every 1/--muc-rate seconds for --duration, and
 * every occupant counts the messages the room delivers and their latency
 * from the send time the body carries ("READY muc").
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "xml/stream.h"
#include "xmpp/ns.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_ERROR_KINDS	128
#define MAX_SOURCES	250
#define BODY_TAG	"lg "

#define NS_CARBONS	"urn:xmpp:carbons:2"         /* XEP-0280 */
#define NS_MAM		"urn:xmpp:mam:2"             /* XEP-0313 */
#define NS_RSM		"http://jabber.org/protocol/rsm"  /* XEP-0059 */
#define NS_SID		"urn:xmpp:sid:0"             /* XEP-0359 */
#define NS_XDATA	"jabber:x:data"              /* XEP-0004 */
#define FULLTEXT_VAR	"{urn:xmpp:fulltext:0}fulltext"  /* XEP-0431 */
/* The words of the fill messages the full-text queries look for: one in
 * every RARE_EVERY messages, and one in all of them. */
#define RARE_WORD	"needle"
#define RARE_EVERY	1000
#define COMMON_WORD	"archive"
#define MAX_KEPT_IDS	2048

#define NS_PUBSUB	"http://jabber.org/protocol/pubsub"        /* XEP-0060 */
#define NS_PUBSUB_EVENT	"http://jabber.org/protocol/pubsub#event"
#define NS_CAPS		"http://jabber.org/protocol/caps"          /* XEP-0115 */
#define NS_DISCO_INFO	"http://jabber.org/protocol/disco#info"    /* XEP-0030 */
#define NS_ROSTER	"jabber:iq:roster"
#define NS_AVATAR_META	"urn:xmpp:avatar:metadata"                 /* XEP-0084 */
#define NS_LG_ITEM	"urn:xmppd:loadgen:0"      /* the payload of --pubsub items */
#define NS_MUC		"http://jabber.org/protocol/muc"           /* XEP-0045 */
#define NS_MUC_USER	NS_MUC "#user"
#define NS_MUC_OWNER	NS_MUC "#owner"
/* What every session's caps say (XEP-0115): one identity and these
 * features, in the byte order of XEP-0115 5.1 step 4. */
#define CAPS_NODE	"urn:xmppd:loadgen"
#define CAPS_CATEGORY	"client"
#define CAPS_TYPE	"pc"
#define CAPS_NAME	"loadgen"
static const char *const caps_features[] = {
	NS_CAPS, NS_DISCO_INFO, NS_AVATAR_META "+notify",
};
#define PS_RING		4096     /* publish send times kept, by sequence number */

#define WS_NS_FRAMING	"urn:ietf:params:xml:ns:xmpp-framing"
#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   /* RFC 6455 1.3 */
#define WS_MAX_MESSAGE	(1 << 20)
/* What the parser is given for the server's <open/>: a stream header with
 * the prefixes the server's elements may use (RFC 7395 3.3.3: each one is
 * fully qualified anyway). */
#define WS_PARSER_HEADER "<stream:stream xmlns='jabber:client' " \
	"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"

/* ------------------------------------------------------------------
 * Options and state
 */

enum mech { MECH_AUTO, MECH_PLAIN, MECH_SCRAM_SHA1, MECH_SCRAM_SHA256 };
static const char *const mech_names[] = { "auto", "PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256" };

static struct {
	const char *server, *domain, *prefix, *password, *resource;
	int port;
	long users, first;
	long concurrency;
	double login_rate;          /* connection starts per second, 0 = no limit */
	enum mech mech;
	struct in_addr src[MAX_SOURCES];
	int nsrc;
	double rates[8];            /* aggregate messages per second, per chat phase */
	int nrates;
	double rate;                /* the one of the current chat phase */
	double duration;            /* seconds of messaging */
	double hold;                /* seconds to stay connected after the logins */
	double drain;               /* seconds to wait for messages in flight */
	double login_timeout;
	double max_time;
	int wait_stdin;
	int to_bare;
	int nagle;
	int quiet;
	unsigned long seed;
	const char *ws_path;        /* --websocket: RFC 7395 at this path */
	int ws_tls;                 /* --ws-tls: wss://, TLS from the first byte */
	int sm;                     /* --sm: stream management (XEP-0198) with resume */
	int carbons;                /* --carbons: XEP-0280 enable after bind */
	long fill;                  /* --fill: messages into the first account's archive */
	long fill_window;           /* at most this many of them in flight */
	long queries;               /* --queries: archive queries of each kind */
	long page;                  /* --page: RSM <max/> of each query */
	const char *pubsub;         /* --pubsub: the service's JID (XEP-0060) */
	const char *node;           /* --node: its node */
	int pep;                    /* --pep: PEP (XEP-0163) avatar fan-out */
	double publish_rate;        /* --publish-rate: items per second */
	long publishes;             /* --publishes: at most this many (0: --duration) */
	double setup_timeout;       /* --setup-timeout: subscriptions, rosters, caps */
	long setup_window;          /* --setup-window: of those in flight at once */
	long trace;                 /* --trace: print what this session receives (-1) */
	const char *muc;            /* --muc: the room's bare JID (XEP-0045) */
	long muc_senders;           /* --muc-senders: occupants that send (0: 1 per 100) */
	double muc_rate;            /* --muc-rate: messages per second per sender */
} opt = {
	.server = "127.0.0.1", .domain = "localhost", .prefix = "u",
	.password = "bench-pw", .resource = "lg", .port = 5222, .users = 100,
	.concurrency = 200, .mech = MECH_AUTO, .drain = 5, .login_timeout = 60,
	.max_time = 600, .seed = 1, .fill_window = 1000, .page = 50,
	.node = "bench", .publish_rate = 1, .setup_timeout = 120, .setup_window = 100,
	.trace = -1, .muc_rate = 1,
};

enum state {
	ST_CONNECTING,   /* TCP connect in progress */
	ST_UPGRADE,      /* WebSocket: GET sent, waiting for the 101 */
	ST_FEAT0,        /* header sent, waiting for features (STARTTLS) */
	ST_PROCEED,      /* <starttls/> sent */
	ST_FEAT1,        /* TLS up, header sent, waiting for mechanisms */
	ST_SASL,         /* <auth/> sent */
	ST_FEAT2,        /* authenticated, header sent, waiting for bind */
	ST_BIND,         /* bind IQ sent */
	ST_SESSION,      /* session IQ sent */
	ST_ONLINE,       /* presence sent */
	ST_CLOSING,      /* </stream:stream> sent */
	ST_DEAD,
};

struct scram_keys;

struct conn {
	long idx;                   /* account number; user = prefix + idx */
	enum state st;
	struct bufferevent *bev;
	xml_stream *xs;
	int fd;
	int online_pos;             /* index in online[], -1 if not online */
	int want_tls;               /* <proceed/> seen: switch after the feed */
	int need_session;
	int sm_on;                  /* <enabled/> came: stanzas from here on count */
	unsigned sm_h;              /* stanzas received since (XEP-0198 h) */
	enum mech mech;
	double t_start;
	char *scram_first_bare;     /* client-first-message-bare */
	unsigned char server_sig[32];
	size_t server_sig_len;
	int scram_sig_checked;
	char ws_key[25];            /* Sec-WebSocket-Key sent (base64 of 16 bytes) */
	char *wsmsg;                /* WebSocket message being reassembled */
	size_t wsmsg_len, wsmsg_cap;
};

struct error_kind {
	char name[80];
	unsigned long count;
};

struct samples {
	double *v;
	size_t n, cap;
};

static struct {
	struct event_base *base;
	SSL_CTX *ssl_ctx;
	struct sockaddr_in addr;
	struct conn *conns;
	struct conn **online;
	long nonline;
	long started, done_logins, ok_logins, failed_logins, in_flight;
	double t_first_start, t_last_login;
	struct samples login_lat, msg_lat;
	struct error_kind errors[MAX_ERROR_KINDS];
	int nerrors;
	unsigned long mech_used[4];
	/* messaging */
	int phase;                  /* 0 login, 1 hold/idle, 2 messaging, 3 drain, 4 closing,
	                               5 archive fill, 6 fill drain, 7 archive queries,
	                               8 pubsub setup, 9 publishing, 10 publish drain,
	                               11 muc joins, 12 groupchat, 13 groupchat drain */
	double t_msg_start, t_msg_end, t_drain_end;
	unsigned long sent, delivered, bounced, foreign;
	unsigned long stale;        /* arrived after the drain ended (not counted) */
	unsigned long seq;
	unsigned long phase_seq;    /* first sequence number of this chat phase */
	int rate_idx;
	struct event *tick, *stdin_ev, *deadline, *sigint_ev, *sigterm_ev;
	int waiting_stdin;
	int chat_reported;          /* later arrivals are not counted */
	double last_scan;
	int exit_code;
	double t0;
	struct rusage ru0;
	uint64_t rng;
	char json_login[4096], json_chat[4096];
	char json_fill[2048], json_archive[8192];
	unsigned long carbons_ok;
	int fill_started, queries_started;
} g;

/* The archive scenario (--fill, --queries). */
enum mam_kind { MQ_NEWEST, MQ_MIDDLE, MQ_WITH, MQ_FT_RARE, MQ_FT_COMMON, MQ_KINDS };
static const char *const mq_names[MQ_KINDS] = {
	"newest", "middle", "with", "fulltext_rare", "fulltext_common",
};

static struct {
	/* A sample of the stanza-ids of the fill messages, in arrival order. */
	char *ids[MAX_KEPT_IDS];
	size_t nids;
	unsigned long every, seen;
	unsigned long next_sender;
	/* The query in flight. */
	long round;
	int kind, in_flight;
	char qid[32];
	double t_sent;
	unsigned long results;
	/* Per kind. */
	struct samples lat[MQ_KINDS];
	unsigned long res_min[MQ_KINDS], res_max[MQ_KINDS], complete[MQ_KINDS],
	    errors[MQ_KINDS], skipped[MQ_KINDS];
} mam;

/* The publish-subscribe scenarios (--pubsub, --pep). */
static struct {
	int step, waiting, created, roster_got, reported, warmups;
	double t_setup0, t_step;
	long next, asked, answered, ok;   /* subscriptions (service), rosters (pep) */
	unsigned char *done, *notified;   /* per conns[] index */
	unsigned long *last_seq;          /* per conns[] index: the newest item seen */
	long nnotified;                   /* members that got a warm-up item */
	char ver[32];                     /* XEP-0115 ver of our caps */
	unsigned long disco_answered;
	unsigned long seq, phase_seq;     /* items published; the last before the phase */
	unsigned long published, acked, pub_errors, delivered, to_publisher, stale, foreign;
	unsigned long copies;             /* a second notification of one item */
	double t_pub_start, t_pub_end, t_drain_end;
	double sent_at[PS_RING];
	struct samples lat, ack_lat;
	char json_setup[1024], json_publish[2048];
} ps;

/* The group chat scenario (--muc). */
static struct {
	int step, waiting, created, reported;
	double t_setup0;
	unsigned char *joined;            /* per conns[] index: self-presence seen */
	long next, asked, njoined, join_errors;
	long *senders, nsenders;
	unsigned long seq, phase_seq, sent, delivered, stale, foreign, subjects, left;
	long expected_per_msg;            /* occupants when the messages began */
	double t_start, t_end, t_drain_end;
	struct samples lat;
	char json_setup[1024], json_msg[2048];
} muc;

static void conn_start(void);
static void conn_fail(struct conn *, const char *, ...) __attribute__((format(printf, 2, 3)));
static void conn_free(struct conn *);
static void login_done(struct conn *, int);
static void phase_next(void);
static void finish(void);

/* ------------------------------------------------------------------
 * Small utilities
 */

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: cheap, and reproducible with --seed. */
static uint64_t
rnd(void)
{
	g.rng ^= g.rng >> 12;
	g.rng ^= g.rng << 25;
	g.rng ^= g.rng >> 27;
	return g.rng * 2685821657736338717ULL;
}

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "loadgen: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

static void
samples_add(struct samples *s, double v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4096;
		double *nv = realloc(s->v, cap * sizeof(*nv));

		if (nv == NULL)
			return;   /* a lost sample is better than a lost run */
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = v;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples. */
static double
pct(const struct samples *s, double p)
{
	size_t k;

	if (s->n == 0)
		return NAN;
	k = (size_t)ceil(p / 100.0 * (double)s->n);
	if (k < 1)
		k = 1;
	return s->v[k - 1];
}

static void
count_error(const char *fmt, ...)
{
	char name[80];
	va_list ap;
	int i;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	for (i = 0; i < g.nerrors; i++)
		if (strcmp(g.errors[i].name, name) == 0) {
			g.errors[i].count++;
			return;
		}
	if (g.nerrors == MAX_ERROR_KINDS)
		i = MAX_ERROR_KINDS - 1, snprintf(g.errors[i].name, sizeof(g.errors[i].name), "other");
	else
		snprintf(g.errors[g.nerrors++].name, sizeof(g.errors[0].name), "%s", name);
	g.errors[i].count++;
}

static char *
b64_encode(const unsigned char *in, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out != NULL)
		EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

/* Returns the decoded length, or -1. out must hold 3/4 of strlen(in). */
static int
b64_decode(const char *in, unsigned char *out)
{
	size_t len = strlen(in);
	int n, pad = 0;

	if (len == 0 || (len == 1 && in[0] == '='))
		return 0;
	if (len % 4 != 0)
		return -1;
	n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n < 0)
		return -1;
	if (in[len - 1] == '=')
		pad++;
	if (in[len - 2] == '=')
		pad++;
	return n - pad;
}

static void ws_send(struct conn *, const char *, size_t);

/* One element to the server: as it is over TCP, one frame over WebSocket. */
static void
conn_write(struct conn *c, const char *s, size_t len)
{
	if (c->bev == NULL)
		return;
	if (opt.ws_path != NULL)
		ws_send(c, s, len);
	else
		bufferevent_write(c->bev, s, len);
}

static void
send_str(struct conn *c, const char *s)
{
	conn_write(c, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3)))
send_fmt(struct conn *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(buf))
		conn_write(c, buf, (size_t)n);
}

static void
user_name(const struct conn *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s%ld", opt.prefix, c->idx);
}

/* ------------------------------------------------------------------
 * SCRAM (RFC 5802, RFC 7677), client side, with a cache of the keys
 * derived from each distinct (hash, password, salt, iterations).
 */

struct scram_keys {
	struct scram_keys *next;
	int hash;                   /* MECH_SCRAM_SHA1 or MECH_SCRAM_SHA256 */
	unsigned iterations;
	size_t salt_len;
	unsigned char salt[128];
	char *password;
	size_t len;                 /* digest length */
	unsigned char client_key[32], stored_key[32], server_key[32];
};

#define SCRAM_BUCKETS 4096
static struct scram_keys *scram_cache[SCRAM_BUCKETS];
static unsigned long scram_derivations, scram_cache_hits;

static const EVP_MD *
scram_md(int hash)
{
	return hash == MECH_SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

static void
hmac(int hash, const unsigned char *key, size_t klen, const void *data, size_t dlen,
    unsigned char *out)
{
	unsigned int olen = 0;

	HMAC(scram_md(hash), key, (int)klen, data, dlen, out, &olen);
}

static const struct scram_keys *
scram_keys_get(int hash, const char *password, const unsigned char *salt, size_t salt_len,
    unsigned iterations)
{
	uint64_t h = 1469598103934665603ULL;
	struct scram_keys *k;
	unsigned char salted[32];
	size_t i;

	for (i = 0; i < salt_len; i++)
		h = (h ^ salt[i]) * 1099511628211ULL;
	for (i = 0; password[i] != '\0'; i++)
		h = (h ^ (unsigned char)password[i]) * 1099511628211ULL;
	h ^= (uint64_t)iterations * 31 + (uint64_t)hash;
	for (k = scram_cache[h % SCRAM_BUCKETS]; k != NULL; k = k->next)
		if (k->hash == hash && k->iterations == iterations && k->salt_len == salt_len &&
		    memcmp(k->salt, salt, salt_len) == 0 && strcmp(k->password, password) == 0) {
			scram_cache_hits++;
			return k;
		}
	if (salt_len > sizeof(k->salt) || (k = calloc(1, sizeof(*k))) == NULL)
		return NULL;
	k->hash = hash;
	k->iterations = iterations;
	k->salt_len = salt_len;
	memcpy(k->salt, salt, salt_len);
	k->password = strdup(password);
	k->len = (size_t)EVP_MD_get_size(scram_md(hash));
	/* Passwords here are ASCII, which SASLprep leaves as they are. */
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
	    (int)iterations, scram_md(hash), (int)k->len, salted) != 1) {
		free(k->password);
		free(k);
		return NULL;
	}
	hmac(hash, salted, k->len, "Client Key", 10, k->client_key);
	hmac(hash, salted, k->len, "Server Key", 10, k->server_key);
	if (hash == MECH_SCRAM_SHA1)
		SHA1(k->client_key, k->len, k->stored_key);
	else
		SHA256(k->client_key, k->len, k->stored_key);
	k->next = scram_cache[h % SCRAM_BUCKETS];
	scram_cache[h % SCRAM_BUCKETS] = k;
	scram_derivations++;
	return k;
}

static void
scram_start(struct conn *c)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char user[128], nonce[25], first[300], *b64;
	int i;

	user_name(c, user, sizeof(user));
	for (i = 0; i < 24; i++)
		nonce[i] = alphabet[rnd() % 64];
	nonce[24] = '\0';
	snprintf(first, sizeof(first), "n,,n=%s,r=%s", user, nonce);
	free(c->scram_first_bare);
	c->scram_first_bare = strdup(first + 3);
	b64 = b64_encode((unsigned char *)first, strlen(first));
	send_fmt(c, "<auth xmlns='" NS_SASL "' mechanism='%s'>%s</auth>",
	    mech_names[c->mech], b64 ? b64 : "");
	free(b64);
}

/* The server-first-message: answers with the client-final-message. */
static void
scram_step(struct conn *c, const char *challenge_b64)
{
	unsigned char msg[1024], salt[128], sig[32], proof[32];
	char final_wo[512], auth_msg[2048], *b64p, *b64f;
	const char *r = NULL, *s = NULL, *iter = NULL, *p;
	const struct scram_keys *k;
	char *dup, *tok, *save;
	int n, slen;
	size_t i;

	if (strlen(challenge_b64) > 4 * sizeof(msg) / 3 - 4 ||
	    (n = b64_decode(challenge_b64, msg)) <= 0) {
		conn_fail(c, "sasl:bad-challenge");
		return;
	}
	msg[n] = '\0';
	if (c->scram_sig_checked == 0 && strncmp((char *)msg, "v=", 2) == 0) {
		/* A server that sends the verifier in a challenge (RFC 6120
		 * 6.3.10 allows it) wants an empty response. */
		unsigned char v[64];
		int vl = b64_decode((char *)msg + 2, v);

		if (vl != (int)c->server_sig_len || memcmp(v, c->server_sig, (size_t)vl) != 0) {
			conn_fail(c, "sasl:bad-server-signature");
			return;
		}
		c->scram_sig_checked = 1;
		send_str(c, "<response xmlns='" NS_SASL "'/>");
		return;
	}
	dup = strdup((char *)msg);
	for (tok = strtok_r(dup, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (strncmp(tok, "r=", 2) == 0)
			r = tok + 2;
		else if (strncmp(tok, "s=", 2) == 0)
			s = tok + 2;
		else if (strncmp(tok, "i=", 2) == 0)
			iter = tok + 2;
	}
	p = strstr(c->scram_first_bare, ",r=");
	if (r == NULL || s == NULL || iter == NULL || p == NULL ||
	    strncmp(r, p + 3, strlen(p + 3)) != 0 || strlen(s) > 4 * sizeof(salt) / 3 - 4 ||
	    (slen = b64_decode(s, salt)) <= 0 || atol(iter) < 1) {
		free(dup);
		conn_fail(c, "sasl:bad-server-first");
		return;
	}
	k = scram_keys_get(c->mech, opt.password, salt, (size_t)slen, (unsigned)atol(iter));
	if (k == NULL) {
		free(dup);
		conn_fail(c, "sasl:pbkdf2-failed");
		return;
	}
	/* "biws" is base64("n,,"): no channel binding, no authzid. */
	snprintf(final_wo, sizeof(final_wo), "c=biws,r=%s", r);
	free(dup);
	snprintf(auth_msg, sizeof(auth_msg), "%s,%s,%s", c->scram_first_bare, (char *)msg, final_wo);
	hmac(c->mech, k->stored_key, k->len, auth_msg, strlen(auth_msg), sig);
	for (i = 0; i < k->len; i++)
		proof[i] = k->client_key[i] ^ sig[i];
	hmac(c->mech, k->server_key, k->len, auth_msg, strlen(auth_msg), c->server_sig);
	c->server_sig_len = k->len;
	b64p = b64_encode(proof, k->len);
	snprintf(auth_msg, sizeof(auth_msg), "%s,p=%s", final_wo, b64p ? b64p : "");
	free(b64p);
	b64f = b64_encode((unsigned char *)auth_msg, strlen(auth_msg));
	send_fmt(c, "<response xmlns='" NS_SASL "'>%s</response>", b64f ? b64f : "");
	free(b64f);
}

/* <success/>: checks the server signature if it came with it. */
static int
scram_success(struct conn *c, const char *data_b64)
{
	unsigned char msg[256], v[64];
	int n, vl;

	if (c->scram_sig_checked)
		return 0;
	if (strlen(data_b64) > 4 * sizeof(msg) / 3 - 4 || (n = b64_decode(data_b64, msg)) <= 2)
		return -1;
	msg[n] = '\0';
	if (strncmp((char *)msg, "v=", 2) != 0 || strlen((char *)msg + 2) > 4 * sizeof(v) / 3 - 4)
		return -1;
	vl = b64_decode((char *)msg + 2, v);
	if (vl != (int)c->server_sig_len || memcmp(v, c->server_sig, (size_t)vl) != 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------
 * Negotiation
 */

static void
send_header(struct conn *c)
{
	if (opt.ws_path != NULL) {
		/* RFC 7395 3.3.2: <open/> instead of the stream header, also
		 * after SASL (3.3.5). */
		send_fmt(c, "<open xmlns='" WS_NS_FRAMING "' to='%s' version='1.0'/>", opt.domain);
		return;
	}
	send_fmt(c, "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
	    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>", opt.domain);
}

static enum mech
choose_mech(xml_elem *features)
{
	xml_elem *m = xml_child(features, NS_SASL, "mechanisms"), *e;
	int have[4] = { 0 };

	if (m == NULL)
		return MECH_AUTO;
	for (e = xml_first_child(m); e != NULL; e = xml_next_sibling(e)) {
		const char *t = xml_text(e);
		int i;

		for (i = 1; i < 4; i++)
			if (strcmp(t, mech_names[i]) == 0)
				have[i] = 1;
	}
	if (opt.mech != MECH_AUTO)
		return have[opt.mech] ? opt.mech : MECH_AUTO;
	if (have[MECH_SCRAM_SHA256])
		return MECH_SCRAM_SHA256;
	if (have[MECH_SCRAM_SHA1])
		return MECH_SCRAM_SHA1;
	if (have[MECH_PLAIN])
		return MECH_PLAIN;
	return MECH_AUTO;
}

static void
start_auth(struct conn *c)
{
	if (c->mech == MECH_PLAIN) {
		char user[128], buf[400], *b64;
		size_t ul, pl;

		user_name(c, user, sizeof(user));
		ul = strlen(user);
		pl = strlen(opt.password);
		if (ul + pl + 2 > sizeof(buf)) {
			conn_fail(c, "config:credentials-too-long");
			return;
		}
		buf[0] = '\0';
		memcpy(buf + 1, user, ul + 1);
		memcpy(buf + 2 + ul, opt.password, pl);
		b64 = b64_encode((unsigned char *)buf, ul + pl + 2);
		send_fmt(c, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>%s</auth>", b64 ? b64 : "");
		free(b64);
	} else {
		scram_start(c);
	}
	c->st = ST_SASL;
}

static const char *
first_child_name(xml_elem *e, const char *skip)
{
	xml_elem *ch;

	for (ch = xml_first_child(e); ch != NULL; ch = xml_next_sibling(ch))
		if (skip == NULL || strcmp(xml_elem_name(ch), skip) != 0)
			return xml_elem_name(ch);
	return "none";
}

static void
go_online(struct conn *c)
{
	/* XEP-0198: acks are answered (<r/> -> <a h/>) from here on. */
	if (opt.sm)
		send_str(c, "<enable xmlns='" NS_SM "' resume='true'/>");
	/* XEP-0280 4: carbons on for this resource. */
	if (opt.carbons)
		send_str(c, "<iq type='set' id='carb1'><enable xmlns='" NS_CARBONS "'/></iq>");
	send_str(c, "<presence/>");
	c->st = ST_ONLINE;
	c->online_pos = (int)g.nonline;
	g.online[g.nonline++] = c;
	login_done(c, 1);
}

static void mam_result(xml_elem *);
static void fill_stanza_id(struct conn *, xml_elem *);
static void ps_event(struct conn *, xml_elem *, xml_elem *);
static int ps_iq(struct conn *, xml_elem *, const char *, const char *);
static void ps_presence(struct conn *, xml_elem *);
static void ps_roster_push(struct conn *, xml_elem *);
static void ps_disco_info(struct conn *, xml_elem *, const char *, const char *);
static void muc_message(struct conn *, xml_elem *);
static void muc_presence(struct conn *, xml_elem *);
static int muc_iq(struct conn *, xml_elem *, const char *, const char *);

static void
on_message(struct conn *c, xml_elem *e)
{
	const char *type = xml_attr_get(e, "type");
	const char *body;
	unsigned long seq;
	unsigned long long t;

	if (type != NULL && strcmp(type, "error") == 0) {
		xml_elem *err = xml_child(e, NULL, "error");

		count_error("message-error:%s", err ? first_child_name(err, "text") : "?");
		g.bounced++;
		return;
	}
	if (xml_child(e, NS_MAM, "result") != NULL) {
		mam_result(e);
		return;
	}
	if ((opt.pubsub != NULL || opt.pep) && xml_child(e, NS_PUBSUB_EVENT, "event") != NULL) {
		ps_event(c, e, xml_child(e, NS_PUBSUB_EVENT, "event"));
		return;
	}
	if (opt.muc != NULL && type != NULL && strcmp(type, "groupchat") == 0) {
		muc_message(c, e);
		return;
	}
	body = xml_child_text(e, NULL, "body");
	if (body == NULL || strncmp(body, BODY_TAG, 3) != 0 ||
	    sscanf(body + 3, "%lu %llu", &seq, &t) != 2) {
		g.foreign++;
		return;
	}
	if (g.chat_reported || seq <= g.phase_seq) {
		g.stale++;
		return;
	}
	g.delivered++;
	samples_add(&g.msg_lat, (double)(now_ns() - t) / 1e6);
	if (g.phase == 5 || g.phase == 6)
		fill_stanza_id(c, e);
}

static void mam_answer(xml_elem *, const char *);

static void
on_stanza(struct conn *c, xml_elem *e)
{
	const char *name = xml_elem_name(e), *type, *id, *ns = xml_elem_ns(e);

	if (ns != NULL && strcmp(ns, NS_SM) == 0) {
		char buf[64];

		if (strcmp(name, "enabled") == 0) {
			c->sm_on = 1;
		} else if (strcmp(name, "r") == 0 && c->sm_on) {
			snprintf(buf, sizeof(buf), "<a xmlns='" NS_SM "' h='%u'/>", c->sm_h);
			send_str(c, buf);
		} else if (strcmp(name, "failed") == 0) {
			conn_fail(c, "sm-failed:%s", first_child_name(e, "text"));
		}
		return;
	}
	if (c->sm_on)
		c->sm_h++;     /* a stanza (XEP-0198 4: message, presence, iq) */
	if (strcmp(name, "message") == 0) {
		on_message(c, e);
		return;
	}
	if (strcmp(name, "presence") == 0 && opt.pep) {
		ps_presence(c, e);
		return;
	}
	if (strcmp(name, "presence") == 0 && opt.muc != NULL) {
		muc_presence(c, e);
		return;
	}
	if (strcmp(name, "iq") != 0)
		return;     /* presence, our own or anyone's */
	type = xml_attr_get(e, "type");
	id = xml_attr_get(e, "id");
	if (id != NULL && type != NULL && strcmp(id, "carb1") == 0) {
		if (strcmp(type, "result") == 0) {
			g.carbons_ok++;
		} else {
			xml_elem *err = xml_child(e, NULL, "error");

			count_error("carbons-error:%s", err ? first_child_name(err, "text") : "?");
		}
		return;
	}
	if (id != NULL && mam.in_flight && strcmp(id, mam.qid) == 0) {
		mam_answer(e, type);
		return;
	}
	if (id != NULL && (opt.pubsub != NULL || opt.pep) && ps_iq(c, e, type, id))
		return;
	if (id != NULL && opt.muc != NULL && muc_iq(c, e, type, id))
		return;
	if (type != NULL && strcmp(type, "get") == 0 && xml_child(e, NS_DISCO_INFO, "query")) {
		ps_disco_info(c, xml_child(e, NS_DISCO_INFO, "query"), id, xml_attr_get(e, "from"));
		return;
	}
	if (type != NULL && strcmp(type, "set") == 0 && xml_child(e, NS_ROSTER, "query"))
		ps_roster_push(c, xml_child(e, NS_ROSTER, "query"));
	if (type != NULL && (strcmp(type, "get") == 0 || strcmp(type, "set") == 0)) {
		/* Pings and the like: answer, so that no server drops us for
		 * idleness. */
		char buf[200];
		const char *from = xml_attr_get(e, "from");

		if (id == NULL || strlen(id) > 64 || (from != NULL && strlen(from) > 100))
			return;
		snprintf(buf, sizeof(buf), "<iq type='result' id='%s'%s%s%s/>", id,
		    from ? " to='" : "", from ? from : "", from ? "'" : "");
		send_str(c, buf);
	}
}

/* A depth-1 element from the server. Never frees c: conn_fail marks it. */
static void
on_elem(void *ud, xml_elem *e)
{
	struct conn *c = ud;
	const char *name = xml_elem_name(e), *ns = xml_elem_ns(e);

	if (c->st == ST_DEAD || c->st == ST_CLOSING)
		goto out;
	if (opt.trace >= 0 && c - g.conns == opt.trace) {
		/* --trace K: what the server sends to session K, for debugging
		 * a scenario against a new server. */
		char *x = xml_to_string(e, "jabber:client", NULL);

		fprintf(stderr, "loadgen: trace %ld: %s\n", opt.trace, x ? x : "?");
		free(x);
	}
	if (ns != NULL && strcmp(ns, XML_NS_STREAM) == 0 && strcmp(name, "error") == 0) {
		conn_fail(c, "stream-error:%s", first_child_name(e, "text"));
		goto out;
	}
	switch (c->st) {
	case ST_FEAT0:
		if (strcmp(name, "features") != 0)
			break;
		if (xml_child(e, NS_TLS, "starttls") == NULL) {
			conn_fail(c, "login:no-starttls");
			break;
		}
		send_str(c, "<starttls xmlns='" NS_TLS "'/>");
		c->st = ST_PROCEED;
		goto out;
	case ST_PROCEED:
		if (strcmp(name, "proceed") != 0) {
			conn_fail(c, "login:starttls-refused");
			break;
		}
		xml_stream_restart(c->xs);
		c->want_tls = 1;
		goto out;
	case ST_FEAT1:
		if (strcmp(name, "features") != 0)
			break;
		c->mech = choose_mech(e);
		if (c->mech == MECH_AUTO) {
			conn_fail(c, "login:no-usable-mechanism");
			break;
		}
		start_auth(c);
		goto out;
	case ST_SASL:
		if (ns == NULL || strcmp(ns, NS_SASL) != 0)
			break;
		if (strcmp(name, "challenge") == 0 && c->mech != MECH_PLAIN) {
			scram_step(c, xml_text(e));
			goto out;
		}
		if (strcmp(name, "success") == 0) {
			if (c->mech != MECH_PLAIN && scram_success(c, xml_text(e)) < 0) {
				conn_fail(c, "sasl:bad-server-signature");
				goto out;
			}
			g.mech_used[c->mech]++;
			xml_stream_restart(c->xs);
			send_header(c);
			c->st = ST_FEAT2;
			goto out;
		}
		if (strcmp(name, "failure") == 0) {
			conn_fail(c, "sasl-failure:%s", first_child_name(e, "text"));
			goto out;
		}
		break;
	case ST_FEAT2:
		if (strcmp(name, "features") != 0)
			break;
		if (xml_child(e, NS_BIND, "bind") == NULL) {
			conn_fail(c, "login:no-bind");
			break;
		}
		{
			xml_elem *s = xml_child(e, NS_SESSION, "session");

			c->need_session = s != NULL && xml_child(s, NS_SESSION, "optional") == NULL;
		}
		send_fmt(c, "<iq type='set' id='bind1'><bind xmlns='" NS_BIND "'><resource>%s"
		    "</resource></bind></iq>", opt.resource);
		c->st = ST_BIND;
		goto out;
	case ST_BIND:
	case ST_SESSION:
		if (strcmp(name, "iq") != 0) {
			on_stanza(c, e);
			goto out;
		}
		{
			const char *type = xml_attr_get(e, "type");

			if (type == NULL || strcmp(type, "result") != 0) {
				xml_elem *err = xml_child(e, NULL, "error");

				conn_fail(c, "%s-error:%s", c->st == ST_BIND ? "bind" : "session",
				    err ? first_child_name(err, "text") : "?");
				goto out;
			}
		}
		if (c->st == ST_BIND && c->need_session) {
			send_str(c, "<iq type='set' id='sess1'><session xmlns='" NS_SESSION "'/></iq>");
			c->st = ST_SESSION;
			goto out;
		}
		go_online(c);
		goto out;
	case ST_ONLINE:
		on_stanza(c, e);
		goto out;
	default:
		break;
	}
	if (c->st != ST_DEAD)
		conn_fail(c, "unexpected:%s", name);
out:
	xml_elem_unref(e);
}

static void
on_stream_start(void *ud, const char *content_ns, const char **attrs)
{
}

static void
on_stream_end(void *ud)
{
	struct conn *c = ud;

	if (c->st != ST_CLOSING && c->st != ST_DEAD)
		conn_fail(c, "server-closed-stream:%s", c->st == ST_ONLINE ? "online" : "login");
	else if (c->st == ST_CLOSING)
		c->st = ST_DEAD;
}

static void
on_parse_error(void *ud, const char *cond, const char *text)
{
	struct conn *c = ud;

	if (c->st != ST_DEAD)
		conn_fail(c, "parse-error:%s", cond);
}

static const struct xml_stream_cb stream_cb = {
	on_stream_start, on_elem, on_stream_end, on_parse_error
};

/* ------------------------------------------------------------------
 * XMPP over WebSocket (RFC 7395), client side: the upgrade (RFC 6455 4.1)
 * and the framing (RFC 6455 5), written here: a client needs only text
 * frames out and a reassembly of the server's frames in.
 */

/* Stanzas carry their namespace over WebSocket (RFC 7395 3.3.3: no stream
 * header supplies a default): <message/>, <presence/> and <iq/> written
 * without an xmlns get xmlns='jabber:client'. */
static size_t
ws_qualify_at(const char *s, size_t len)
{
	static const char *const names[] = { "message", "presence", "iq" };
	const char *gt;
	size_t i, n;

	for (i = 0; i < 3; i++) {
		n = strlen(names[i]);
		if (len > n + 1 && s[0] == '<' && memcmp(s + 1, names[i], n) == 0 &&
		    (s[n + 1] == ' ' || s[n + 1] == '/' || s[n + 1] == '>'))
			break;
	}
	if (i == 3)
		return 0;
	gt = memchr(s, '>', len);
	if (gt == NULL)
		return 0;
	for (const char *p = s; p + 6 <= gt; p++)
		if (memcmp(p, "xmlns=", 6) == 0)
			return 0;
	return n + 1;
}

/* One message in one final text frame, masked as RFC 6455 5.3 requires of a
 * client. The masking key comes from the run's xorshift generator: it only
 * has to be unpredictable to scripts in a browser, and this is no browser. */
static void
ws_frame(struct conn *c, int opcode, const char *s, size_t len, size_t ins_at,
    const char *ins, size_t ins_len)
{
	unsigned char stackbuf[2048], *buf = stackbuf, mask[4];
	size_t total = len + ins_len, hl = 2, i, j;
	uint32_t m = (uint32_t)rnd();

	if (total + 14 > sizeof(stackbuf) && (buf = malloc(total + 14)) == NULL) {
		conn_fail(c, "ws:out-of-memory");
		return;
	}
	buf[0] = (unsigned char)(0x80 | opcode);    /* FIN */
	if (total < 126) {
		buf[1] = (unsigned char)(0x80 | total);
	} else if (total < 65536) {
		buf[1] = 0x80 | 126;
		buf[2] = (unsigned char)(total >> 8);
		buf[3] = (unsigned char)total;
		hl = 4;
	} else {
		buf[1] = 0x80 | 127;
		for (i = 0; i < 8; i++)
			buf[2 + i] = (unsigned char)((uint64_t)total >> (56 - 8 * i));
		hl = 10;
	}
	memcpy(mask, &m, 4);
	memcpy(buf + hl, mask, 4);
	hl += 4;
	/* The payload (with the namespace put in at ins_at), masked. */
	for (i = 0, j = 0; i < len; i++) {
		if (i == ins_at && ins_len > 0)
			for (size_t k = 0; k < ins_len; k++, j++)
				buf[hl + j] = (unsigned char)ins[k] ^ mask[j & 3];
		buf[hl + j] = (unsigned char)s[i] ^ mask[j & 3];
		j++;
	}
	bufferevent_write(c->bev, buf, hl + total);
	if (buf != stackbuf)
		free(buf);
}

static void
ws_send(struct conn *c, const char *s, size_t len)
{
	static const char ns[] = " xmlns='jabber:client'";
	size_t at = ws_qualify_at(s, len);

	if (at > 0)
		ws_frame(c, 1, s, len, at, ns, sizeof(ns) - 1);
	else
		ws_frame(c, 1, s, len, 0, NULL, 0);
}

static void
ws_accept_for(const char *key, char out[29])
{
	unsigned char d[SHA_DIGEST_LENGTH];
	char in[64];

	snprintf(in, sizeof(in), "%s%s", key, WS_GUID);
	SHA1((unsigned char *)in, strlen(in), d);
	EVP_EncodeBlock((unsigned char *)out, d, SHA_DIGEST_LENGTH);
}

/* RFC 6455 4.1: the opening handshake, with the xmpp subprotocol (RFC 7395
 * 3.1). */
static void
ws_upgrade(struct conn *c)
{
	unsigned char nonce[16];

	if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
		conn_fail(c, "ws:rand");
		return;
	}
	EVP_EncodeBlock((unsigned char *)c->ws_key, nonce, sizeof(nonce));
	evbuffer_add_printf(bufferevent_get_output(c->bev),
	    "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Protocol: xmpp\r\n\r\n", opt.ws_path, opt.domain, c->ws_key);
	c->st = ST_UPGRADE;
}

/* The server's response: 101, the right Sec-WebSocket-Accept, subprotocol
 * xmpp (RFC 6455 4.1, the client's checks; RFC 7395 3.1). 1 when done,
 * 0 when more is needed, -1 on failure. */
static int
ws_response(struct conn *c, struct evbuffer *in)
{
	struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	char *h, *line, *save, want[29];
	int accept_ok = 0, proto_ok = 0;
	size_t hl;

	if (end.pos < 0) {
		if (evbuffer_get_length(in) > 16384) {
			conn_fail(c, "ws:response-too-long");
			return -1;
		}
		return 0;
	}
	hl = (size_t)end.pos + 4;
	h = malloc(hl + 1);
	if (h == NULL) {
		conn_fail(c, "ws:out-of-memory");
		return -1;
	}
	evbuffer_remove(in, h, hl);
	h[hl] = '\0';
	if (strncmp(h, "HTTP/1.1 101", 12) != 0) {
		conn_fail(c, "ws:status-%.3s", strlen(h) >= 12 ? h + 9 : "?");
		free(h);
		return -1;
	}
	ws_accept_for(c->ws_key, want);
	for (line = strtok_r(h, "\r\n", &save); line != NULL; line = strtok_r(NULL, "\r\n", &save)) {
		char *colon = strchr(line, ':'), *v;

		if (colon == NULL)
			continue;
		*colon = '\0';
		for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
			;
		if (strcasecmp(line, "Sec-WebSocket-Accept") == 0)
			accept_ok = strcmp(v, want) == 0;
		else if (strcasecmp(line, "Sec-WebSocket-Protocol") == 0)
			proto_ok = strcmp(v, "xmpp") == 0;
	}
	free(h);
	if (!accept_ok || !proto_ok) {
		conn_fail(c, "ws:%s", !accept_ok ? "bad-accept" : "no-xmpp-subprotocol");
		return -1;
	}
	return 1;
}

/* Bytes to the parser, as read_cb does over TCP. */
static void
feed(struct conn *c, const char *p, size_t left)
{
	while (left > 0 && c->st != ST_DEAD) {
		size_t used = 0;

		if (xml_stream_feed(c->xs, p, left, &used) < 0 && c->st != ST_DEAD) {
			if (c->st == ST_CLOSING) {
				c->st = ST_DEAD;
				break;
			}
			conn_fail(c, "parse:feed-failed");
		}
		if (used == 0)
			used = left;   /* cannot happen; never loop */
		p += used;
		left -= used;
	}
}

/* One whole message from the server: RFC 7395 3.3.2's <open/> becomes a
 * stream header for the parser, 3.6's <close/> its end tag. */
static void
ws_message(struct conn *c, const char *p, size_t len)
{
	while (len > 0 && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++, len--;
	if (len > 6 && memcmp(p, "<open", 5) == 0 && (p[5] == ' ' || p[5] == '/'))
		feed(c, WS_PARSER_HEADER, sizeof(WS_PARSER_HEADER) - 1);
	else if (len > 7 && memcmp(p, "<close", 6) == 0 && (p[6] == ' ' || p[6] == '/'))
		feed(c, "</stream:stream>", 16);
	else
		feed(c, p, len);
}

/* The server's frames (RFC 6455 5.2): not masked (5.1), payload lengths in
 * 7, 16 or 64 bits, text messages possibly fragmented, pings answered. */
static void
ws_read(struct conn *c, struct evbuffer *in)
{
	if (c->st == ST_UPGRADE) {
		int r = ws_response(c, in);

		if (r <= 0)
			return;
		send_header(c);
		c->st = ST_FEAT1;       /* no STARTTLS over WebSocket */
	}
	while (c->st != ST_DEAD) {
		size_t avail = evbuffer_get_length(in), hl = 2;
		unsigned char *h;
		uint64_t plen;
		int fin, op;

		if (avail < 2)
			return;
		h = evbuffer_pullup(in, (ssize_t)(avail < 10 ? avail : 10));
		fin = h[0] & 0x80;
		op = h[0] & 0x0f;
		if ((h[0] & 0x70) != 0 || (h[1] & 0x80) != 0) {
			conn_fail(c, "ws:%s", (h[1] & 0x80) ? "masked-server-frame" : "rsv-bits");
			return;
		}
		plen = h[1] & 0x7f;
		if (plen == 126) {
			if (avail < 4)
				return;
			plen = (uint64_t)h[2] << 8 | h[3];
			hl = 4;
		} else if (plen == 127) {
			int i;

			if (avail < 10)
				return;
			for (i = 0, plen = 0; i < 8; i++)
				plen = plen << 8 | h[2 + i];
			hl = 10;
		}
		if (plen > WS_MAX_MESSAGE || c->wsmsg_len + plen > WS_MAX_MESSAGE) {
			conn_fail(c, "ws:message-too-big");
			return;
		}
		if (op >= 8 && (plen > 125 || !fin)) {
			conn_fail(c, "ws:bad-control-frame");
			return;
		}
		if (avail < hl + plen)
			return;
		evbuffer_drain(in, hl);
		if (op >= 8) {
			/* Control frames: at most 125 bytes, never fragmented (5.5). */
			char ctl[126];

			evbuffer_remove(in, ctl, (size_t)plen);
			if (op == 9) {
				ws_frame(c, 10, ctl, (size_t)plen, 0, NULL, 0);   /* pong (5.5.3) */
			} else if (op == 8) {
				if (c->st == ST_CLOSING) {
					c->st = ST_DEAD;
				} else {
					conn_fail(c, "ws:close-%u", plen >= 2 ?
					    ((unsigned char)ctl[0] << 8 | (unsigned char)ctl[1]) : 1005);
				}
				return;
			}
			continue;
		}
		if (op != 0 && op != 1) {
			conn_fail(c, "ws:opcode-%d", op);
			return;
		}
		if (c->wsmsg_len + plen + 1 > c->wsmsg_cap) {
			size_t cap = c->wsmsg_len + (size_t)plen + 1024;
			char *n = realloc(c->wsmsg, cap);

			if (n == NULL) {
				conn_fail(c, "ws:out-of-memory");
				return;
			}
			c->wsmsg = n;
			c->wsmsg_cap = cap;
		}
		evbuffer_remove(in, c->wsmsg + c->wsmsg_len, (size_t)plen);
		c->wsmsg_len += (size_t)plen;
		if (fin) {
			size_t len = c->wsmsg_len;

			c->wsmsg_len = 0;
			ws_message(c, c->wsmsg, len);
		}
	}
}

/* ------------------------------------------------------------------
 * Connections
 */

static void read_cb(struct bufferevent *, void *);
static void event_cb(struct bufferevent *, short, void *);

/* TLS on the connection's socket: after <proceed/>, or from the first
 * byte for wss://. 0, or -1 with c failed. */
static int
tls_wrap(struct conn *c)
{
	SSL *ssl = SSL_new(g.ssl_ctx);
	struct bufferevent *tls;

	c->want_tls = 0;
	if (ssl == NULL) {
		conn_fail(c, "tls:ssl-new");
		return -1;
	}
	SSL_set_tlsext_host_name(ssl, opt.domain);
	/* The plain bufferevent does not own the socket; nothing is left
	 * in it (the server waits for our ClientHello after <proceed/>). */
	bufferevent_free(c->bev);
	c->bev = NULL;
	tls = bufferevent_openssl_socket_new(g.base, c->fd, ssl, BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		conn_fail(c, "tls:bufferevent");
		return -1;
	}
	c->fd = -1;    /* owned by the bufferevent now */
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	c->bev = tls;
	bufferevent_setcb(tls, read_cb, NULL, event_cb, c);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
	return 0;
}

static void
switch_to_tls(struct conn *c)
{
	if (tls_wrap(c) < 0)
		return;
	send_header(c);
	c->st = ST_FEAT1;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[8];
	int n, i;

	if (opt.ws_path != NULL) {
		ws_read(c, in);
		if (c->st == ST_DEAD)
			conn_free(c);
		return;
	}
	while (c->st != ST_DEAD && evbuffer_get_length(in) > 0) {
		size_t total = 0;

		n = evbuffer_peek(in, -1, NULL, v, 8);
		if (n > 8)
			n = 8;
		for (i = 0; i < n && c->st != ST_DEAD; i++) {
			const char *p = v[i].iov_base;
			size_t left = v[i].iov_len;

			while (left > 0 && c->st != ST_DEAD) {
				size_t used = 0;

				if (xml_stream_feed(c->xs, p, left, &used) < 0 && c->st != ST_DEAD) {
					if (c->st == ST_CLOSING) {
						c->st = ST_DEAD;
						break;
					}
					conn_fail(c, "parse:feed-failed");
				}
				if (used == 0 && c->st != ST_DEAD)
					used = left;   /* cannot happen; never loop */
				p += used;
				left -= used;
				total += used;
				if (c->want_tls)
					break;
			}
			if (c->want_tls)
				break;
		}
		evbuffer_drain(in, total);
		if (c->want_tls) {
			if (evbuffer_get_length(in) > 0) {
				conn_fail(c, "tls:data-after-proceed");
				break;
			}
			switch_to_tls(c);
			return;
		}
	}
	if (c->st == ST_DEAD)
		conn_free(c);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (c->st == ST_CONNECTING && opt.ws_path != NULL) {
			/* The upgrade request waits in the TLS bufferevent for
			 * the handshake with --ws-tls. */
			if (opt.ws_tls && tls_wrap(c) < 0) {
				conn_free(c);
				return;
			}
			ws_upgrade(c);
		} else if (c->st == ST_CONNECTING) {
			send_header(c);
			c->st = ST_FEAT0;
		}
		return;
	}
	if (c->st == ST_CLOSING || c->st == ST_DEAD) {
		c->st = ST_DEAD;
		conn_free(c);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		conn_fail(c, "eof:%s", c->st == ST_ONLINE ? "online" : "login");
	} else if (what & BEV_EVENT_ERROR) {
		unsigned long e = bufferevent_get_openssl_error(bev);

		if (e != 0) {
			char buf[120];

			ERR_error_string_n(e, buf, sizeof(buf));
			conn_fail(c, "tls:%s", ERR_reason_error_string(e) ? ERR_reason_error_string(e) : buf);
		} else if (c->st == ST_CONNECTING) {
			conn_fail(c, "connect:%s", strerror(EVUTIL_SOCKET_ERROR()));
		} else {
			conn_fail(c, "socket:%s", strerror(EVUTIL_SOCKET_ERROR()));
		}
	} else {
		conn_fail(c, "event:%d", what);
	}
	conn_free(c);
}

static void
online_remove(struct conn *c)
{
	struct conn *last;

	if (c->online_pos < 0)
		return;
	last = g.online[--g.nonline];
	g.online[c->online_pos] = last;
	last->online_pos = c->online_pos;
	c->online_pos = -1;
}

static void
conn_fail(struct conn *c, const char *fmt, ...)
{
	char name[80];
	va_list ap;
	enum state was = c->st;

	if (was == ST_DEAD)
		return;
	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	count_error("%s", name);
	c->st = ST_DEAD;
	online_remove(c);
	if (was < ST_ONLINE)
		login_done(c, 0);
}

/* Frees what a connection holds; the slot stays (its index is the account). */
static void
conn_free(struct conn *c)
{
	online_remove(c);
	c->st = ST_DEAD;
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	xml_stream_free(&c->xs);
	free(c->scram_first_bare);
	c->scram_first_bare = NULL;
	free(c->wsmsg);
	c->wsmsg = NULL;
	c->wsmsg_len = c->wsmsg_cap = 0;
}

static void
conn_start(void)
{
	struct xml_stream_limits lim = { 1 << 20, 64, 64 };
	struct conn *c = &g.conns[g.started];
	struct sockaddr_in src = { 0 };
	int one = 1;

	c->idx = opt.first + g.started;
	c->online_pos = -1;
	c->fd = -1;
	c->t_start = now();
	if (g.started == 0)
		g.t_first_start = c->t_start;
	g.started++;
	g.in_flight++;
	c->xs = xml_stream_new(&stream_cb, c, &lim);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->xs == NULL || c->fd < 0) {
		conn_fail(c, "connect:%s", c->fd < 0 ? strerror(errno) : "parser");
		conn_free(c);
		return;
	}
	evutil_make_socket_nonblocking(c->fd);
	evutil_make_socket_closeonexec(c->fd);
	/* Each message is written when it is due: Nagle's algorithm would
	 * hold it back for an ACK and add tens of milliseconds to the
	 * latency measured, which is not the server's doing. */
	if (!opt.nagle)
		(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (opt.nsrc > 0) {
		src.sin_family = AF_INET;
		src.sin_addr = opt.src[(g.started - 1) % opt.nsrc];
		/* The port is chosen at connect() time, per 4-tuple. */
		(void)setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			conn_fail(c, "bind:%s", strerror(errno));
			conn_free(c);
			return;
		}
	}
	c->bev = bufferevent_socket_new(g.base, c->fd, 0);
	if (c->bev == NULL) {
		conn_fail(c, "connect:bufferevent");
		conn_free(c);
		return;
	}
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->st = ST_CONNECTING;
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&g.addr, sizeof(g.addr)) < 0) {
		conn_fail(c, "connect:%s", strerror(errno));
		conn_free(c);
	}
}

/* Starts connections while fewer than --concurrency logins are in flight
 * (and, with --login-rate, no faster than that). */
static void
start_more(void)
{
	double allowed = (double)opt.users;

	if (g.phase != 0)
		return;
	if (opt.login_rate > 0 && g.started > 0)
		allowed = 1 + (now() - g.t_first_start) * opt.login_rate;
	while (g.started < opt.users && g.in_flight < opt.concurrency && (double)g.started < allowed)
		conn_start();
}

static void
login_done(struct conn *c, int ok)
{
	double t = now();

	g.in_flight--;
	g.done_logins++;
	if (ok) {
		g.ok_logins++;
		g.t_last_login = t;
		samples_add(&g.login_lat, (t - c->t_start) * 1e3);
	} else {
		g.failed_logins++;
	}
	/* Not from inside a callback of c: start_more runs on the tick. */
}

/* ------------------------------------------------------------------
 * Messages
 */

static void
send_one(void)
{
	struct conn *from, *to;
	char buf[512], user[128];
	long a, b;

	if (g.nonline < 2)
		return;
	a = (long)(rnd() % (uint64_t)g.nonline);
	b = (long)(rnd() % (uint64_t)(g.nonline - 1));
	if (b >= a)
		b++;
	from = g.online[a];
	to = g.online[b];
	user_name(to, user, sizeof(user));
	g.seq++;
	snprintf(buf, sizeof(buf), "<message to='%s@%s%s%s' type='chat' id='m%lu'><body>"
	    BODY_TAG "%lu %llu</body></message>", user, opt.domain, opt.to_bare ? "" : "/",
	    opt.to_bare ? "" : opt.resource, g.seq, g.seq, (unsigned long long)now_ns());
	send_str(from, buf);
	g.sent++;
}

/* ------------------------------------------------------------------
 * The archive: filling the first account's, and querying it (XEP-0313)
 */

/* The first account: its archive is filled and queried. */
static struct conn *
archive_owner(void)
{
	struct conn *c = &g.conns[0];

	return opt.users > 0 && c->st == ST_ONLINE ? c : NULL;
}

static void
bare_of(const struct conn *c, char *buf, size_t len)
{
	char user[128];

	user_name(c, user, sizeof(user));
	snprintf(buf, len, "%s@%s", user, opt.domain);
}

/* One fill message to the owner from the next other session in turn, so
 * that each contact has an equal share of the archive. Every message has
 * COMMON_WORD, one in RARE_EVERY also RARE_WORD. */
static void
send_fill(struct conn *to)
{
	struct conn *from;
	char buf[600], bare[200];
	unsigned long n;

	do
		from = g.online[mam.next_sender++ % (unsigned long)g.nonline];
	while (from == to);
	bare_of(to, bare, sizeof(bare));
	g.seq++;
	n = g.seq - g.phase_seq;
	snprintf(buf, sizeof(buf), "<message to='%s/%s' type='chat' id='f%lu'><body>"
	    BODY_TAG "%lu %llu " COMMON_WORD " fill message number %lu topic t%lu%s</body></message>",
	    bare, opt.resource, g.seq, g.seq, (unsigned long long)now_ns(), n, n % 100,
	    n % RARE_EVERY == 0 ? " " RARE_WORD : "");
	send_str(from, buf);
	g.sent++;
}

/* A fill message arrived at c: keep a sample of the owner's stanza-ids
 * (XEP-0359 4: <stanza-id by=the owner's bare JID/>, the archive's id). */
static void
fill_stanza_id(struct conn *c, xml_elem *e)
{
	char bare[200];
	xml_elem *ch;

	if (c != archive_owner())
		return;
	bare_of(c, bare, sizeof(bare));
	for (ch = xml_first_child(e); ch != NULL; ch = xml_next_sibling(ch)) {
		const char *ns = xml_elem_ns(ch), *by, *id;

		if (ns == NULL || strcmp(ns, NS_SID) != 0 ||
		    strcmp(xml_elem_name(ch), "stanza-id") != 0)
			continue;
		by = xml_attr_get(ch, "by");
		id = xml_attr_get(ch, "id");
		if (by == NULL || id == NULL || strcmp(by, bare) != 0)
			continue;
		if (mam.seen++ % mam.every != 0 || mam.nids == MAX_KEPT_IDS)
			return;
		/* It goes back into a query as text: only ids that need no
		 * escaping are kept. */
		if (strlen(id) > 200 || strpbrk(id, "<>&'\"") != NULL) {
			count_error("fill:odd-stanza-id");
			return;
		}
		mam.ids[mam.nids++] = strdup(id);
		return;
	}
}

/* The next query: the kinds take turns, so that a disturbance of the
 * machine falls on all of them alike. */
static void
send_query(struct conn *c)
{
	char field[400] = "", form[700] = "", before[300] = "<before/>", buf[1600];
	char bare[200];
	int kind = (int)(mam.round % MQ_KINDS);

	switch (kind) {
	case MQ_MIDDLE:
		/* XEP-0059 2.5: the page before an id from the middle half of
		 * the fill. */
		if (mam.nids == 0) {
			mam.skipped[kind]++;
			mam.round++;
			return;
		}
		snprintf(before, sizeof(before), "<before>%s</before>",
		    mam.ids[mam.nids / 4 + rnd() % (mam.nids / 2 + 1)]);
		break;
	case MQ_WITH:
		/* XEP-0313 4.1.1: one contact, the second account. */
		bare_of(&g.conns[1], bare, sizeof(bare));
		snprintf(field, sizeof(field), "<field var='with'><value>%s</value></field>", bare);
		break;
	case MQ_FT_RARE:
	case MQ_FT_COMMON:
		/* XEP-0431 2. */
		snprintf(field, sizeof(field), "<field var='" FULLTEXT_VAR "'><value>%s</value></field>",
		    kind == MQ_FT_RARE ? RARE_WORD : COMMON_WORD);
		break;
	default:
		break;
	}
	if (field[0] != '\0')
		snprintf(form, sizeof(form), "<x xmlns='" NS_XDATA "' type='submit'>"
		    "<field var='FORM_TYPE' type='hidden'><value>" NS_MAM "</value></field>%s</x>",
		    field);
	snprintf(mam.qid, sizeof(mam.qid), "mq%ld", mam.round);
	snprintf(buf, sizeof(buf), "<iq type='set' id='%s'><query xmlns='" NS_MAM "' queryid='%s'>"
	    "%s<set xmlns='" NS_RSM "'><max>%ld</max>%s</set></query></iq>",
	    mam.qid, mam.qid, form, opt.page, before);
	mam.kind = kind;
	mam.results = 0;
	mam.in_flight = 1;
	mam.t_sent = now();
	send_str(c, buf);
}

/* A <message><result queryid/></message> (XEP-0313 5). */
static void
mam_result(xml_elem *e)
{
	xml_elem *r = xml_child(e, NS_MAM, "result");
	const char *qid = xml_attr_get(r, "queryid");

	if (!mam.in_flight || qid == NULL || strcmp(qid, mam.qid) != 0) {
		count_error("mam:stray-result");
		return;
	}
	mam.results++;
}

/* The IQ that ends the query in flight: its time is the figure. */
static void
mam_answer(xml_elem *e, const char *type)
{
	int k = mam.kind;

	if (type != NULL && strcmp(type, "result") == 0) {
		xml_elem *fin = xml_child(e, NS_MAM, "fin");
		const char *complete = fin ? xml_attr_get(fin, "complete") : NULL;

		samples_add(&mam.lat[k], (now() - mam.t_sent) * 1e3);
		if (mam.lat[k].n == 1 || mam.results < mam.res_min[k])
			mam.res_min[k] = mam.results;
		if (mam.results > mam.res_max[k])
			mam.res_max[k] = mam.results;
		if (complete != NULL && (strcmp(complete, "true") == 0 || strcmp(complete, "1") == 0))
			mam.complete[k]++;
		if (fin == NULL)
			count_error("mam:%s:no-fin", mq_names[k]);
	} else {
		xml_elem *err = xml_child(e, NULL, "error");

		mam.errors[k]++;
		count_error("mam-error:%s:%s", mq_names[k], err ? first_child_name(err, "text") : "?");
	}
	mam.in_flight = 0;
	mam.round++;
}

/* ------------------------------------------------------------------
 * Phases and reports
 */

static void
fmt_ms(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "null");
	else
		snprintf(buf, len, "%.3f", v);
}

static void
json_pct(char *out, size_t len, struct samples *s)
{
	char a[32], b[32], c[32], d[32];

	qsort(s->v, s->n, sizeof(double), cmp_double);
	fmt_ms(a, sizeof(a), pct(s, 50));
	fmt_ms(b, sizeof(b), pct(s, 90));
	fmt_ms(c, sizeof(c), pct(s, 99));
	fmt_ms(d, sizeof(d), s->n ? s->v[s->n - 1] : NAN);
	snprintf(out, len, "{\"n\":%zu,\"p50\":%s,\"p90\":%s,\"p99\":%s,\"max\":%s}", s->n, a, b, c, d);
}

static void
json_errors(char *out, size_t len)
{
	size_t used = 0;
	int i;

	used += (size_t)snprintf(out, len, "{");
	for (i = 0; i < g.nerrors && used < len; i++)
		used += (size_t)snprintf(out + used, len - used, "%s\"%s\":%lu", i ? "," : "",
		    g.errors[i].name, g.errors[i].count);
	if (used < len)
		snprintf(out + used, len - used, "}");
}

static double
gen_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec - g.ru0.ru_utime.tv_sec) +
	    (double)(ru.ru_utime.tv_usec - g.ru0.ru_utime.tv_usec) / 1e6 +
	    (double)(ru.ru_stime.tv_sec - g.ru0.ru_stime.tv_sec) +
	    (double)(ru.ru_stime.tv_usec - g.ru0.ru_stime.tv_usec) / 1e6;
}

static void
report_login(void)
{
	char lat[256], errs[2048];
	double secs = g.t_last_login > g.t_first_start ? g.t_last_login - g.t_first_start : 0;

	json_pct(lat, sizeof(lat), &g.login_lat);
	json_errors(errs, sizeof(errs));
	snprintf(g.json_login, sizeof(g.json_login),
	    "{\"connections\":%ld,\"online\":%ld,\"failed\":%ld,\"login_seconds\":%.3f,"
	    "\"logins_per_s\":%.1f,\"login_ms\":%s,\"mechs\":{\"PLAIN\":%lu,\"SCRAM-SHA-1\":%lu,"
	    "\"SCRAM-SHA-256\":%lu},\"pbkdf2_runs\":%lu,\"gen_cpu_s\":%.3f,\"errors\":%s}",
	    opt.users, g.ok_logins, g.failed_logins, secs, secs > 0 ? (double)g.ok_logins / secs : 0,
	    lat, g.mech_used[MECH_PLAIN], g.mech_used[MECH_SCRAM_SHA1],
	    g.mech_used[MECH_SCRAM_SHA256], scram_derivations, gen_cpu(), errs);
	if (!opt.quiet)
		fprintf(stderr, "loadgen: %ld/%ld logged in (%ld failed) in %.2f s: %.1f logins/s; "
		    "login latency ms p50 %.2f p90 %.2f p99 %.2f max %.2f\n",
		    g.ok_logins, opt.users, g.failed_logins, secs,
		    secs > 0 ? (double)g.ok_logins / secs : 0, pct(&g.login_lat, 50),
		    pct(&g.login_lat, 90), pct(&g.login_lat, 99),
		    g.login_lat.n ? g.login_lat.v[g.login_lat.n - 1] : NAN);
}

static void
report_chat(void)
{
	char lat[256];
	double secs = g.t_msg_end - g.t_msg_start;

	g.chat_reported = 1;
	json_pct(lat, sizeof(lat), &g.msg_lat);
	snprintf(g.json_chat, sizeof(g.json_chat),
	    "{\"rate\":%.1f,\"seconds\":%.3f,\"sent\":%lu,\"delivered\":%lu,\"bounced\":%lu,"
	    "\"lost\":%ld,\"sent_per_s\":%.1f,\"delivered_per_s\":%.1f,\"latency_ms\":%s,"
	    "\"online\":%ld,\"gen_cpu_s\":%.3f}",
	    opt.rate, secs, g.sent, g.delivered, g.bounced,
	    (long)g.sent - (long)g.delivered - (long)g.bounced,
	    secs > 0 ? (double)g.sent / secs : 0, secs > 0 ? (double)g.delivered / secs : 0,
	    lat, g.nonline, gen_cpu());
	if (!opt.quiet)
		fprintf(stderr, "loadgen: %lu sent in %.2f s (%.1f/s), %lu delivered, %lu bounced; "
		    "latency ms p50 %.2f p90 %.2f p99 %.2f max %.2f\n",
		    g.sent, secs, secs > 0 ? (double)g.sent / secs : 0, g.delivered, g.bounced,
		    pct(&g.msg_lat, 50), pct(&g.msg_lat, 90), pct(&g.msg_lat, 99),
		    g.msg_lat.n ? g.msg_lat.v[g.msg_lat.n - 1] : NAN);
}

static void
report_fill(void)
{
	char lat[256];
	double secs = g.t_msg_end - g.t_msg_start;

	g.chat_reported = 1;
	json_pct(lat, sizeof(lat), &g.msg_lat);
	snprintf(g.json_fill, sizeof(g.json_fill),
	    "{\"messages\":%ld,\"sent\":%lu,\"delivered\":%lu,\"bounced\":%lu,\"lost\":%ld,"
	    "\"seconds\":%.3f,\"delivered_per_s\":%.1f,\"latency_ms\":%s,\"stanza_ids\":%lu,"
	    "\"ids_kept\":%zu,\"gen_cpu_s\":%.3f}",
	    opt.fill, g.sent, g.delivered, g.bounced,
	    (long)g.sent - (long)g.delivered - (long)g.bounced, secs,
	    secs > 0 ? (double)g.delivered / secs : 0, lat, mam.seen, mam.nids, gen_cpu());
	if (!opt.quiet)
		fprintf(stderr, "loadgen: fill: %lu sent, %lu delivered in %.1f s (%.0f/s), "
		    "%lu stanza-ids\n", g.sent, g.delivered, secs,
		    secs > 0 ? (double)g.delivered / secs : 0, mam.seen);
}

static void
report_archive(void)
{
	size_t used = 0, len = sizeof(g.json_archive);
	char *out = g.json_archive;
	int k;

	used += (size_t)snprintf(out, len, "{\"page\":%ld,\"rounds\":%ld,\"kinds\":{",
	    opt.page, opt.queries);
	for (k = 0; k < MQ_KINDS && used < len; k++) {
		char lat[256];

		json_pct(lat, sizeof(lat), &mam.lat[k]);
		used += (size_t)snprintf(out + used, len - used,
		    "%s\"%s\":{\"latency_ms\":%s,\"results_min\":%lu,\"results_max\":%lu,"
		    "\"complete\":%lu,\"errors\":%lu,\"skipped\":%lu}", k ? "," : "", mq_names[k],
		    lat, mam.lat[k].n ? mam.res_min[k] : 0, mam.res_max[k], mam.complete[k],
		    mam.errors[k], mam.skipped[k]);
		if (!opt.quiet)
			fprintf(stderr, "loadgen: archive %s: %zu queries, ms p50 %.2f p99 %.2f, "
			    "%lu-%lu results, %lu errors\n", mq_names[k], mam.lat[k].n,
			    pct(&mam.lat[k], 50), pct(&mam.lat[k], 99),
			    mam.lat[k].n ? mam.res_min[k] : 0, mam.res_max[k], mam.errors[k]);
	}
	if (used < len)
		snprintf(out + used, len - used, "}}");
}

static void
wait_for_go(const char *what, const char *json)
{
	printf("READY %s %s\n", what, json);
	fflush(stdout);
	if (opt.wait_stdin) {
		g.waiting_stdin = 1;
		event_add(g.stdin_ev, NULL);
	} else {
		phase_next();
	}
}

static void
stdin_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[256];
	ssize_t n = read(0, buf, sizeof(buf));

	if (!g.waiting_stdin) {
		if (n <= 0)
			event_del(g.stdin_ev);
		return;
	}
	if (n <= 0 || (n >= 4 && strncmp(buf, "quit", 4) == 0)) {
		/* The runner went away or wants us to stop: end the run. */
		event_del(g.stdin_ev);
		g.waiting_stdin = 0;
		g.phase = 4;
		finish();
		return;
	}
	if (memchr(buf, '\n', (size_t)n) == NULL)
		return;
	event_del(g.stdin_ev);
	g.waiting_stdin = 0;
	phase_next();
}

/* ------------------------------------------------------------------
 * Publish-subscribe (XEP-0060) and PEP (XEP-0163): --pubsub, --pep
 *
 * The first session (conns[0]) publishes; every other session is a
 * subscriber (--pubsub SERVICE: subscribed to one node of the service with
 * its bare JID, XEP-0060 6.1) or a contact (--pep: a mutual presence
 * subscription with the first account, RFC 6121 3, made here with
 * subscribe/subscribed exchanges; then a presence with XEP-0115 caps that
 * advertise NS_AVATAR_META+notify, XEP-0163 4). Each published item's id
 * carries its sequence number and send time, so that each notification
 * (XEP-0060 7.1.2.1) gives one publish-to-notification latency.
 */

static uint64_t
hex_u64(const char *s)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 16; i++) {
		int ch = s[i], d = ch >= '0' && ch <= '9' ? ch - '0' :
		    ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;

		if (d < 0)
			return UINT64_MAX;
		v = v << 4 | (uint64_t)d;
	}
	return v;
}

/* The account index of a JID "PREFIX<n>@DOMAIN[/...]" as a conns[] index,
 * or -1. */
static long
conn_index_of(const char *jid)
{
	size_t pl = strlen(opt.prefix), dl = strlen(opt.domain);
	const char *p, *at;
	char *end;
	long n;

	if (jid == NULL || strncmp(jid, opt.prefix, pl) != 0)
		return -1;
	p = jid + pl;
	n = strtol(p, &end, 10);
	at = end;
	if (end == p || *at != '@' || strncmp(at + 1, opt.domain, dl) != 0 ||
	    (at[1 + dl] != '\0' && at[1 + dl] != '/'))
		return -1;
	n -= opt.first;
	return n >= 0 && n < opt.users ? n : -1;
}

/* XEP-0115 5.1: S is the identities, then the features, each sorted, each
 * followed by '<'; ver is base64(SHA-1(S)). CAPS_FEATURES is sorted. */
static void
caps_init(void)
{
	unsigned char d[SHA_DIGEST_LENGTH];
	char s[512];
	size_t i, n;

	n = (size_t)snprintf(s, sizeof(s), "%s/%s//%s<", CAPS_CATEGORY, CAPS_TYPE, CAPS_NAME);
	for (i = 0; i < sizeof(caps_features) / sizeof(caps_features[0]); i++)
		n += (size_t)snprintf(s + n, sizeof(s) - n, "%s<", caps_features[i]);
	SHA1((unsigned char *)s, n, d);
	EVP_EncodeBlock((unsigned char *)ps.ver, d, SHA_DIGEST_LENGTH);
}

/* An attribute value from the server to copy into a reply: short, and
 * nothing that would need escaping. */
static int
attr_ok(const char *v)
{
	return v == NULL || (strlen(v) <= 200 && strpbrk(v, "<>&'\"") == NULL);
}

/* disco#info (XEP-0030 3.1) of a session: what its caps say (XEP-0115
 * 6.2: the server asks for NODE#VER and checks the answer's hash). */
static void
ps_disco_info(struct conn *c, xml_elem *q, const char *id, const char *from)
{
	const char *node = xml_attr_get(q, "node");
	char buf[1200];
	size_t i, n;

	if (id == NULL || !attr_ok(id) || !attr_ok(from) || !attr_ok(node))
		return;
	n = (size_t)snprintf(buf, sizeof(buf), "<iq type='result' id='%s'%s%s%s><query xmlns='"
	    NS_DISCO_INFO "'%s%s%s><identity category='" CAPS_CATEGORY "' type='" CAPS_TYPE
	    "' name='" CAPS_NAME "'/>", id, from ? " to='" : "", from ? from : "",
	    from ? "'" : "", node ? " node='" : "", node ? node : "", node ? "'" : "");
	for (i = 0; i < sizeof(caps_features) / sizeof(caps_features[0]); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "<feature var='%s'/>",
		    caps_features[i]);
	snprintf(buf + n, sizeof(buf) - n, "</query></iq>");
	send_str(c, buf);
	ps.disco_answered++;
}

static struct conn *
ps_publisher(void)
{
	struct conn *c = &g.conns[0];

	return c->st == ST_ONLINE ? c : NULL;
}

/* One item: its id is the sequence number and the send time (ns), in hex,
 * 40 digits as a XEP-0084 item id (the SHA-1 of the image) has. */
static void
ps_publish(void)
{
	struct conn *c = ps_publisher();
	char buf[1024], id[48], bare[200];
	unsigned long long t;

	if (c == NULL) {
		count_error("pubsub:publisher-offline");
		return;
	}
	ps.seq++;
	t = (unsigned long long)now_ns();
	snprintf(id, sizeof(id), "%016lx%016llx00000000", ps.seq, t);
	ps.sent_at[ps.seq % PS_RING] = now();
	if (opt.pep) {
		/* XEP-0084 4.2 / XEP-0163 7: to the account's own PEP service
		 * (no 'to'); the node is auto-created with the default
		 * configuration at the first publish (XEP-0163 6.1). */
		snprintf(buf, sizeof(buf), "<iq type='set' id='psp%lu'><pubsub xmlns='" NS_PUBSUB
		    "'><publish node='" NS_AVATAR_META "'><item id='%s'><metadata xmlns='"
		    NS_AVATAR_META "'><info bytes='%lu' id='%s' height='64' width='64' "
		    "type='image/png'/></metadata></item></publish></pubsub></iq>",
		    ps.seq, id, 4000 + ps.seq % 1000, id);
	} else {
		/* XEP-0060 7.1.1. */
		bare_of(c, bare, sizeof(bare));
		snprintf(buf, sizeof(buf), "<iq type='set' id='psp%lu' to='%s'><pubsub xmlns='"
		    NS_PUBSUB "'><publish node='%s'><item id='%s'><entry xmlns='" NS_LG_ITEM
		    "'>" BODY_TAG "%lu %llu from %s</entry></item></publish></pubsub></iq>",
		    ps.seq, opt.pubsub, opt.node, id, ps.seq, t, bare);
	}
	send_str(c, buf);
	if (g.phase == 9)
		ps.published++;
}

/* A notification (XEP-0060 7.1.2.1, or a last item, 6.1.7): one per item. */
static void
ps_event(struct conn *c, xml_elem *msg, xml_elem *ev)
{
	xml_elem *items = xml_child(ev, NS_PUBSUB_EVENT, "items"), *it;
	const char *from = xml_attr_get(msg, "from");
	char owner[200];
	long i = c - g.conns;

	/* From the service, or the publisher's bare JID (XEP-0163 4.3.2). */
	bare_of(&g.conns[0], owner, sizeof(owner));
	if (items == NULL || from == NULL ||
	    strcmp(from, opt.pep ? owner : opt.pubsub) != 0) {
		ps.foreign++;
		return;
	}
	for (it = xml_first_child(items); it != NULL; it = xml_next_sibling(it)) {
		const char *id = xml_attr_get(it, "id");
		uint64_t seq, t;

		if (strcmp(xml_elem_name(it), "item") != 0)
			continue;
		if (id == NULL || strlen(id) != 40 || (seq = hex_u64(id)) == UINT64_MAX ||
		    (t = hex_u64(id + 16)) == UINT64_MAX) {
			ps.foreign++;
			continue;
		}
		if (i == 0) {
			ps.to_publisher++;
			continue;
		}
		if (g.phase == 8) {
			if (!ps.notified[i]) {
				ps.notified[i] = 1;
				ps.nnotified++;
			}
			continue;
		}
		if ((g.phase != 9 && g.phase != 10) || ps.reported || seq <= ps.phase_seq) {
			ps.stale++;
			continue;
		}
		/* One item notified twice to a session (a server that sends to
		 * the bare JID and to the full JID too): the first counts. The
		 * items of one publisher reach a session in order. */
		if (seq <= ps.last_seq[i]) {
			ps.copies++;
			continue;
		}
		ps.last_seq[i] = seq;
		ps.delivered++;
		samples_add(&ps.lat, (double)(now_ns() - t) / 1e6);
	}
}

/* The answers to our pubsub and roster IQs; 1 if e was one. */
static int
ps_iq(struct conn *c, xml_elem *e, const char *type, const char *id)
{
	int ok = type != NULL && strcmp(type, "result") == 0;
	xml_elem *err = xml_child(e, NULL, "error");
	const char *cond = err ? first_child_name(err, "text") : "?";

	if (strncmp(id, "ps", 2) != 0 || (type != NULL && (strcmp(type, "get") == 0 ||
	    strcmp(type, "set") == 0)))
		return 0;
	if (strcmp(id, "ps-create") == 0) {
		/* XEP-0060 8.1.2; conflict: the node is there already. */
		if (!ok && strcmp(cond, "conflict") != 0)
			count_error("pubsub-create-error:%s", cond);
		ps.created = ok ? 1 : -1;
	} else if (strcmp(id, "ps-roster") == 0) {
		if (!ok)
			count_error("roster-get-error:%s", cond);
		ps.roster_got = 1;
	} else if (strncmp(id, "pss", 3) == 0) {
		/* XEP-0060 6.1.2: subscribed, or 6.1.4 pending/unconfigured. */
		xml_elem *p = xml_child(e, NS_PUBSUB, "pubsub");
		xml_elem *s = p ? xml_child(p, NS_PUBSUB, "subscription") : NULL;
		const char *st = s ? xml_attr_get(s, "subscription") : NULL;

		ps.answered++;
		if (!ok)
			count_error("pubsub-subscribe-error:%s", cond);
		else if (st != NULL && strcmp(st, "subscribed") != 0)
			count_error("pubsub-subscribe:%s", st);
		else
			ps.ok++;
	} else if (strncmp(id, "psp", 3) == 0) {
		unsigned long seq = strtoul(id + 3, NULL, 10);

		if (!ok) {
			count_error("pubsub-publish-error:%s", cond);
			if (seq > ps.phase_seq)
				ps.pub_errors++;
		} else if (seq > ps.phase_seq && g.phase >= 9) {
			ps.acked++;
			if (ps.seq - seq < PS_RING)
				samples_add(&ps.ack_lat, (now() - ps.sent_at[seq % PS_RING]) * 1e3);
		}
	} else {
		return 0;
	}
	return 1;
}

/* A roster push (RFC 6121 2.1.6) to the first account: a contact whose
 * subscription is 'both' is done. The push is answered by the caller. */
static void
ps_roster_push(struct conn *c, xml_elem *q)
{
	xml_elem *it;

	if (c != &g.conns[0] || g.phase != 8)
		return;
	for (it = xml_first_child(q); it != NULL; it = xml_next_sibling(it)) {
		const char *sub = xml_attr_get(it, "subscription");
		long i = conn_index_of(xml_attr_get(it, "jid"));

		if (i > 0 && sub != NULL && strcmp(sub, "both") == 0 && !ps.done[i]) {
			ps.done[i] = 1;
			ps.ok++;
		}
	}
}

/* Subscription requests during the roster step (RFC 6121 3.1): the first
 * account approves its contacts', a contact approves the first account's
 * and asks for the same back. */
static void
ps_presence(struct conn *c, xml_elem *e)
{
	const char *type = xml_attr_get(e, "type"), *from = xml_attr_get(e, "from");
	char owner[200], bare[200];
	long i = c - g.conns, j;

	if (type == NULL || strcmp(type, "subscribe") != 0 || g.phase != 8 || !opt.pep)
		return;
	j = conn_index_of(from);
	if (j < 0)
		return;
	bare_of(&g.conns[j], bare, sizeof(bare));
	if (i == 0) {
		send_fmt(c, "<presence type='subscribed' to='%s'/>", bare);
	} else if (j == 0) {
		bare_of(&g.conns[0], owner, sizeof(owner));
		send_fmt(c, "<presence type='subscribed' to='%s'/><presence type='subscribe' to='%s'/>",
		    owner, owner);
	}
}

static void
ps_setup_start(double t)
{
	g.phase = 8;
	ps.step = 0;
	ps.next = 1;
	ps.t_setup0 = t;
	ps.done = calloc((size_t)opt.users, 1);
	ps.notified = calloc((size_t)opt.users, 1);
	ps.last_seq = calloc((size_t)opt.users, sizeof(*ps.last_seq));
	if (ps.done == NULL || ps.notified == NULL || ps.last_seq == NULL)
		die("out of memory");
}

static void
ps_report_setup(double t)
{
	snprintf(ps.json_setup, sizeof(ps.json_setup),
	    "{\"kind\":\"%s\",\"members\":%ld,\"asked\":%ld,\"ok\":%ld,\"caps_ver\":\"%s\","
	    "\"disco_answered\":%lu,\"warmups\":%d,\"ready\":%ld,\"seconds\":%.3f,"
	    "\"gen_cpu_s\":%.3f}",
	    opt.pep ? "pep" : "service", opt.users - 1, ps.asked, ps.ok, ps.ver,
	    ps.disco_answered, ps.warmups, ps.nnotified, t - ps.t_setup0, gen_cpu());
	if (!opt.quiet)
		fprintf(stderr, "loadgen: %s setup: %ld of %ld %s, %lu disco#info answered, "
		    "%ld ready after %d warm-up publishes, %.1f s\n", opt.pep ? "pep" : "pubsub",
		    ps.ok, opt.users - 1, opt.pep ? "rosters with both" : "subscribed",
		    ps.disco_answered, ps.nnotified, ps.warmups, t - ps.t_setup0);
	wait_for_go(opt.pep ? "pep-setup" : "pubsub-setup", ps.json_setup);
}

/* The setup steps, on the tick, each bounded by --setup-timeout as a whole.
 * Service: create the node, subscribe everyone (a window of --setup-window
 * IQs). PEP: the first account's roster, the subscriptions, caps presences.
 * Both: warm-up publishes until every member got a notification (the
 * server may learn caps, or finish subscriptions, asynchronously). */
static void
ps_setup_tick(double t)
{
	struct conn *owner = ps_publisher();
	char bare[200];

	if (ps.waiting)
		return;
	if (owner == NULL || t - ps.t_setup0 > opt.setup_timeout) {
		count_error(owner == NULL ? "pubsub:publisher-offline" : "timeout:pubsub-setup");
		ps.waiting = 1;
		ps_report_setup(t);
		return;
	}
	switch (ps.step) {
	case 0:
		if (opt.pep) {
			/* RFC 6121 2.1.3: an interested resource gets the pushes. */
			send_str(owner, "<iq type='get' id='ps-roster'><query xmlns='" NS_ROSTER
			    "'/></iq>");
		} else {
			/* XEP-0060 8.1.1, the default configuration (open access
			 * on the servers benchmarked, XEP-0060 4.5). */
			send_fmt(owner, "<iq type='set' id='ps-create' to='%s'><pubsub xmlns='"
			    NS_PUBSUB "'><create node='%s'/></pubsub></iq>", opt.pubsub, opt.node);
		}
		ps.step = 1;
		return;
	case 1:
		if ((opt.pep && ps.roster_got) || (!opt.pep && ps.created != 0))
			ps.step = 2;
		return;
	case 2:
		while (ps.next < opt.users && ps.asked - (opt.pep ? ps.ok : ps.answered) <
		    opt.setup_window) {
			struct conn *c = &g.conns[ps.next++];

			if (c->st != ST_ONLINE)
				continue;
			bare_of(c, bare, sizeof(bare));
			ps.asked++;
			if (opt.pep)
				send_fmt(owner, "<presence type='subscribe' to='%s'/>", bare);
			else
				/* XEP-0060 6.1.1: the bare JID, as a client does. */
				send_fmt(c, "<iq type='set' id='pss%ld' to='%s'><pubsub xmlns='"
				    NS_PUBSUB "'><subscribe node='%s' jid='%s'/></pubsub></iq>",
				    ps.next - 1, opt.pubsub, opt.node, bare);
		}
		if (ps.next >= opt.users && (opt.pep ? ps.ok : ps.answered) >= ps.asked) {
			if (opt.pep) {
				long i;

				/* XEP-0115 4: caps in the presence, broadcast
				 * to the first account now that it subscribes. */
				for (i = 1; i < opt.users; i++)
					if (ps.done[i] && g.conns[i].st == ST_ONLINE)
						send_fmt(&g.conns[i], "<presence><c xmlns='" NS_CAPS
						    "' hash='sha-1' node='" CAPS_NODE "' ver='%s'/>"
						    "</presence>", ps.ver);
			}
			ps.t_step = t;
			ps.step = 3;
		}
		return;
	case 3:
		/* A moment for the caps queries and their answers. */
		if (opt.pep && t - ps.t_step < (ps.disco_answered > 0 ? 1.0 : 5.0))
			return;
		ps.step = 4;
		/* fall through */
	case 4:
		/* A refused publish (no service, no PEP) will not change. */
		if (ps.nnotified >= ps.ok || ps.pub_errors > 0 ||
		    (ps.warmups >= 10 && t - ps.t_step > 5)) {
			ps.waiting = 1;
			ps_report_setup(t);
			return;
		}
		if (ps.warmups == 0 || (t - ps.t_step > 3 && ps.warmups < 10)) {
			ps.warmups++;
			ps.t_step = t;
			ps_publish();
		}
		return;
	default:
		return;
	}
}

static void
ps_report_publish(double t)
{
	char lat[256], ack[256];
	double secs = ps.t_pub_end - ps.t_pub_start;
	long expected = (long)ps.acked * ps.nnotified;

	ps.reported = 1;
	json_pct(lat, sizeof(lat), &ps.lat);
	json_pct(ack, sizeof(ack), &ps.ack_lat);
	snprintf(ps.json_publish, sizeof(ps.json_publish),
	    "{\"subscribers\":%ld,\"rate\":%.3f,\"seconds\":%.3f,\"published\":%lu,"
	    "\"acked\":%lu,\"publish_errors\":%lu,\"expected\":%ld,\"delivered\":%lu,"
	    "\"lost\":%ld,\"copies\":%lu,\"to_publisher\":%lu,\"stale\":%lu,\"foreign\":%lu,"
	    "\"delivered_per_s\":%.1f,\"latency_ms\":%s,\"ack_ms\":%s,\"gen_cpu_s\":%.3f}",
	    ps.nnotified, opt.publish_rate, secs, ps.published, ps.acked, ps.pub_errors,
	    expected, ps.delivered, expected - (long)ps.delivered, ps.copies, ps.to_publisher,
	    ps.stale,
	    ps.foreign, secs > 0 ? (double)ps.delivered / secs : 0, lat, ack, gen_cpu());
	if (!opt.quiet)
		fprintf(stderr, "loadgen: %lu published (%lu acked) to %ld members, %lu of %ld "
		    "notifications delivered; latency ms p50 %.2f p99 %.2f max %.2f\n",
		    ps.published, ps.acked, ps.nnotified, ps.delivered, expected,
		    pct(&ps.lat, 50), pct(&ps.lat, 99), ps.lat.n ? ps.lat.v[ps.lat.n - 1] : NAN);
	(void)t;
}

/* Publishing at --publish-rate for --duration, or until --publishes. */
static void
ps_publish_tick(double t)
{
	/* The first item at once, then one every 1/rate seconds. */
	double due = floor((t < ps.t_pub_end ? t - ps.t_pub_start : ps.t_pub_end -
	    ps.t_pub_start) * opt.publish_rate) + 1;

	if (g.phase == 9) {
		while ((double)ps.published < due &&
		    (opt.publishes == 0 || (long)ps.published < opt.publishes) && ps_publisher())
			ps_publish();
		if (t >= ps.t_pub_end || (opt.publishes > 0 && (long)ps.published >= opt.publishes) ||
		    ps_publisher() == NULL) {
			g.phase = 10;
			ps.t_pub_end = t < ps.t_pub_end ? t : ps.t_pub_end;
			ps.t_drain_end = t + opt.drain;
		}
		return;
	}
	if ((ps.acked + ps.pub_errors >= ps.published &&
	    (long)ps.delivered >= (long)ps.acked * ps.nnotified) || t >= ps.t_drain_end) {
		ps_report_publish(t);
		wait_for_go(opt.pep ? "pep" : "pubsub", ps.json_publish);
	}
}

/* ------------------------------------------------------------------
 * Group chat (XEP-0045): --muc ROOM
 *
 * Every session joins ROOM with the nickname n<account>, asking for no
 * history (7.2.1, 7.2.15: maxstanzas='0'); the first session's join
 * creates the room (status 201, 10.1.1), which it makes an instant room
 * with an empty submitted form (10.1.2) before anyone else joins, since
 * until then the room is locked. A join is done when the occupant's own
 * presence (status 110, 7.2.3) comes. Then --muc-senders occupants send
 * groupchat messages (7.4), each body carrying its sequence number and
 * send time; the room reflects each one to every occupant, the sender
 * included, so that one message is as many deliveries as there are
 * occupants.
 */

/* 1 if presence e carries a muc#user status with this code. */
static int
muc_status(xml_elem *e, const char *code)
{
	xml_elem *x = xml_child(e, NS_MUC_USER, "x"), *st;

	if (x == NULL)
		return 0;
	for (st = xml_first_child(x); st != NULL; st = xml_next_sibling(st)) {
		const char *v = xml_attr_get(st, "code");

		if (strcmp(xml_elem_name(st), "status") == 0 && v != NULL && strcmp(v, code) == 0)
			return 1;
	}
	return 0;
}

/* 1 if jid is ROOM or ROOM/nick. */
static int
muc_from_room(const char *jid)
{
	size_t n = strlen(opt.muc);

	return jid != NULL && strncmp(jid, opt.muc, n) == 0 && (jid[n] == '\0' || jid[n] == '/');
}

static void
muc_join(struct conn *c)
{
	char user[128];

	user_name(c, user, sizeof(user));
	send_fmt(c, "<presence to='%s/n%s'><x xmlns='" NS_MUC "'><history maxstanzas='0'/>"
	    "</x></presence>", opt.muc, user);
	muc.asked++;
}

static void
muc_presence(struct conn *c, xml_elem *e)
{
	const char *type = xml_attr_get(e, "type");
	long i = c - g.conns;

	if (!muc_from_room(xml_attr_get(e, "from")))
		return;
	if (type != NULL && strcmp(type, "error") == 0) {
		xml_elem *err = xml_child(e, NULL, "error");

		count_error("muc-join-error:%s", err ? first_child_name(err, "text") : "?");
		muc.join_errors++;
		return;
	}
	if (!muc_status(e, "110"))
		return;     /* another occupant's presence */
	if (type != NULL && strcmp(type, "unavailable") == 0) {
		/* Our occupant is out of the room (kicked, banned, shut down). */
		if (muc.joined[i]) {
			muc.joined[i] = 0;
			muc.njoined--;
			muc.left++;
			count_error("muc:self-unavailable");
		}
		return;
	}
	if (muc.joined[i])
		return;     /* a presence change of ours, reflected */
	muc.joined[i] = 1;
	muc.njoined++;
	if (i == 0 && muc_status(e, "201")) {
		/* 10.1.2: accept the default configuration (an instant room). */
		send_fmt(c, "<iq type='set' id='muc-cfg' to='%s'><query xmlns='" NS_MUC_OWNER
		    "'><x xmlns='jabber:x:data' type='submit'/></query></iq>", opt.muc);
		muc.created = 1;
	} else if (i == 0) {
		muc.created = 2;    /* the room was there: nothing to configure */
	}
}

static int
muc_iq(struct conn *c, xml_elem *e, const char *type, const char *id)
{
	if (strcmp(id, "muc-cfg") != 0 || type == NULL ||
	    (strcmp(type, "result") != 0 && strcmp(type, "error") != 0))
		return 0;
	if (strcmp(type, "error") == 0) {
		xml_elem *err = xml_child(e, NULL, "error");

		count_error("muc-config-error:%s", err ? first_child_name(err, "text") : "?");
	}
	muc.created = 2;
	return 1;
}

static void
muc_message(struct conn *c, xml_elem *e)
{
	const char *body;
	unsigned long seq;
	unsigned long long t;

	if (!muc_from_room(xml_attr_get(e, "from"))) {
		muc.foreign++;
		return;
	}
	body = xml_child_text(e, NULL, "body");
	if (body == NULL) {
		muc.subjects++;     /* the subject (7.2.15), or a room notice */
		return;
	}
	if (strncmp(body, BODY_TAG, 3) != 0 || sscanf(body + 3, "%lu %llu", &seq, &t) != 2) {
		muc.foreign++;
		return;
	}
	if ((g.phase != 12 && g.phase != 13) || muc.reported || seq <= muc.phase_seq) {
		muc.stale++;
		return;
	}
	muc.delivered++;
	samples_add(&muc.lat, (double)(now_ns() - t) / 1e6);
}

static void
muc_setup_start(double t)
{
	g.phase = 11;
	muc.t_setup0 = t;
	muc.next = 1;
	muc.joined = calloc((size_t)opt.users, 1);
	muc.senders = calloc((size_t)opt.users, sizeof(*muc.senders));
	if (muc.joined == NULL || muc.senders == NULL)
		die("out of memory");
}

static void
muc_report_setup(double t)
{
	snprintf(muc.json_setup, sizeof(muc.json_setup),
	    "{\"room\":\"%s\",\"users\":%ld,\"online\":%ld,\"asked\":%ld,\"joined\":%ld,"
	    "\"join_errors\":%ld,\"created\":%d,\"seconds\":%.3f,\"gen_cpu_s\":%.3f}",
	    opt.muc, opt.users, g.nonline, muc.asked, muc.njoined, muc.join_errors,
	    muc.created, t - muc.t_setup0, gen_cpu());
	if (!opt.quiet)
		fprintf(stderr, "loadgen: muc setup: %ld of %ld joined %s (%ld errors), %.1f s\n",
		    muc.njoined, opt.users, opt.muc, muc.join_errors, t - muc.t_setup0);
	muc.waiting = 1;
	wait_for_go("muc-setup", muc.json_setup);
}

/* The joins, on the tick: the first, the room's configuration, then the
 * others, at most --setup-window of them waiting for their own presence;
 * all bounded by --setup-timeout. */
static void
muc_setup_tick(double t)
{
	struct conn *first = &g.conns[0];

	if (muc.waiting)
		return;
	if (t - muc.t_setup0 > opt.setup_timeout) {
		count_error("timeout:muc-setup");
		muc_report_setup(t);
		return;
	}
	switch (muc.step) {
	case 0:
		if (first->st != ST_ONLINE) {
			count_error("muc:first-offline");
			muc_report_setup(t);
			return;
		}
		muc_join(first);
		muc.step = 1;
		return;
	case 1:
		if (muc.created == 2)
			muc.step = 2;
		else if (muc.join_errors > 0) {
			muc_report_setup(t);
		}
		return;
	case 2:
		while (muc.next < opt.users &&
		    muc.asked - muc.njoined - muc.join_errors - (long)muc.left < opt.setup_window) {
			struct conn *c = &g.conns[muc.next++];

			if (c->st == ST_ONLINE)
				muc_join(c);
		}
		if (muc.next >= opt.users &&
		    muc.njoined + muc.join_errors + (long)muc.left >= muc.asked)
			muc_report_setup(t);
		return;
	default:
		return;
	}
}

static void
muc_report(double t)
{
	char lat[256];
	double secs = muc.t_end - muc.t_start;
	long expected = (long)muc.sent * muc.expected_per_msg;

	muc.reported = 1;
	json_pct(lat, sizeof(lat), &muc.lat);
	snprintf(muc.json_msg, sizeof(muc.json_msg),
	    "{\"occupants\":%ld,\"senders\":%ld,\"rate_per_sender\":%.3f,\"seconds\":%.3f,"
	    "\"sent\":%lu,\"expected\":%ld,\"delivered\":%lu,\"lost\":%ld,\"bounced\":%lu,"
	    "\"stale\":%lu,\"foreign\":%lu,\"subjects\":%lu,\"left\":%lu,"
	    "\"delivered_per_s\":%.1f,\"latency_ms\":%s,\"gen_cpu_s\":%.3f}",
	    muc.expected_per_msg, muc.nsenders, opt.muc_rate, secs, muc.sent, expected,
	    muc.delivered, expected - (long)muc.delivered, g.bounced, muc.stale, muc.foreign,
	    muc.subjects, muc.left, secs > 0 ? (double)muc.delivered / secs : 0, lat, gen_cpu());
	if (!opt.quiet)
		fprintf(stderr, "loadgen: muc: %lu sent by %ld to %ld occupants, %lu of %ld "
		    "delivered; latency ms p50 %.2f p99 %.2f max %.2f\n", muc.sent, muc.nsenders,
		    muc.expected_per_msg, muc.delivered, expected, pct(&muc.lat, 50),
		    pct(&muc.lat, 99), muc.lat.n ? muc.lat.v[muc.lat.n - 1] : NAN);
	(void)t;
}

static void
muc_start(double t)
{
	long i, want = opt.muc_senders > 0 ? opt.muc_senders : (muc.njoined + 99) / 100;

	g.phase = 12;
	muc.phase_seq = muc.seq;
	muc.t_start = t;
	muc.t_end = t + opt.duration;
	muc.expected_per_msg = muc.njoined;
	g.bounced = 0;
	for (i = 0; i < opt.users && muc.nsenders < want; i++)
		if (muc.joined[i])
			muc.senders[muc.nsenders++] = i;
}

/* The senders in turn, so that each sends --muc-rate a second. */
static void
muc_send_tick(double t)
{
	if (g.phase == 12) {
		double due = (t < muc.t_end ? t - muc.t_start : opt.duration) * opt.muc_rate *
		    (double)muc.nsenders;

		while ((double)muc.sent < due && muc.nsenders > 0) {
			struct conn *c = &g.conns[muc.senders[muc.seq % (unsigned long)muc.nsenders]];
			char user[128];

			muc.seq++;
			if (c->st != ST_ONLINE || !muc.joined[c - g.conns]) {
				count_error("muc:sender-gone");
				continue;
			}
			user_name(c, user, sizeof(user));
			send_fmt(c, "<message type='groupchat' to='%s'><body>" BODY_TAG "%lu %llu from "
			    "%s</body></message>", opt.muc, muc.seq,
			    (unsigned long long)now_ns(), user);
			muc.sent++;
		}
		if (t >= muc.t_end) {
			g.phase = 13;
			muc.t_drain_end = t + opt.drain;
		}
		return;
	}
	if ((long)muc.delivered >= (long)muc.sent * muc.expected_per_msg || t >= muc.t_drain_end) {
		muc_report(t);
		wait_for_go("muc", muc.json_msg);
	}
}

/* Moves on from the phase that just ended. */
static void
phase_next(void)
{
	double t = now();

	switch (g.phase) {
	case 0:   /* logins done */
		g.phase = 1;
		if (opt.hold > 0) {
			g.t_msg_start = t + opt.hold;   /* the tick waits for it */
			return;
		}
		/* fall through */
	case 1:
	chat:
		if (g.rate_idx < opt.nrates && opt.rates[g.rate_idx] > 0 && opt.duration > 0) {
			opt.rate = opt.rates[g.rate_idx++];
			g.phase = 2;
			g.phase_seq = g.seq;
			g.sent = g.delivered = g.bounced = 0;
			g.msg_lat.n = 0;
			g.chat_reported = 0;
			g.t_msg_start = t;
			g.t_msg_end = t + opt.duration;
			return;
		}
		if (opt.fill > 0 && !g.fill_started) {
			g.fill_started = 1;
			g.phase = 5;
			g.phase_seq = g.seq;
			g.sent = g.delivered = g.bounced = 0;
			g.msg_lat.n = 0;
			g.chat_reported = 0;
			g.t_msg_start = t;
			mam.every = opt.fill / 1000 > 0 ? (unsigned long)(opt.fill / 1000) : 1;
			return;
		}
		if (opt.queries > 0 && !g.queries_started) {
			g.queries_started = 1;
			g.phase = 7;
			return;
		}
		if ((opt.pubsub != NULL || opt.pep) && ps.done == NULL) {
			ps_setup_start(t);
			return;
		}
		if (opt.muc != NULL && muc.joined == NULL) {
			muc_setup_start(t);
			return;
		}
		g.phase = 4;
		finish();
		return;
	case 3:   /* drained: the next rate, or the end */
	case 6:   /* the fill drained */
	case 7:   /* the queries done */
	case 10:  /* the notifications drained */
	case 13:  /* the groupchat messages drained */
		goto chat;
	case 11:  /* joined: the messages */
		muc_start(t);
		return;
	case 8:   /* set up: publish */
		g.phase = 9;
		ps.phase_seq = ps.seq;
		ps.pub_errors = 0;
		ps.t_pub_start = t;
		ps.t_pub_end = t + (opt.publishes > 0 && opt.publish_rate > 0 ?
		    (double)opt.publishes / opt.publish_rate + 1 : opt.duration);
		return;
	default:
		return;
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	double t = now();

	if (g.waiting_stdin)
		return;
	switch (g.phase) {
	case 0:
		start_more();
		/* The login deadline, checked twice a second. */
		if (t - g.last_scan > 0.5) {
			long i;

			g.last_scan = t;
			for (i = 0; i < g.started; i++) {
				struct conn *c = &g.conns[i];

				if (c->st < ST_ONLINE && t - c->t_start > opt.login_timeout) {
					conn_fail(c, "timeout:login");
					conn_free(c);
				}
			}
		}
		if (g.done_logins == opt.users) {
			report_login();
			wait_for_go("login", g.json_login);
		}
		return;
	case 1:
		if (opt.hold > 0 && t >= g.t_msg_start) {
			opt.hold = 0;
			phase_next();
		}
		return;
	case 2: {
		double due = (t < g.t_msg_end ? t - g.t_msg_start : opt.duration) * opt.rate;

		while ((double)g.sent < due && g.nonline >= 2)
			send_one();
		if (t >= g.t_msg_end) {
			g.phase = 3;
			g.t_drain_end = t + opt.drain;
		}
		return;
	}
	case 3:
		if (g.delivered + g.bounced >= g.sent || t >= g.t_drain_end) {
			g.t_msg_end = g.t_msg_end < t ? g.t_msg_end : t;
			report_chat();
			wait_for_go("chat", g.json_chat);
		}
		return;
	case 5: {
		struct conn *owner = archive_owner();

		if (owner == NULL || g.nonline < 2) {
			count_error("fill:%s", owner == NULL ? "owner-offline" : "no-sender");
			g.phase = 6;
			g.t_drain_end = t;
			return;
		}
		while ((long)g.sent < opt.fill &&
		    (long)(g.sent - g.delivered - g.bounced) < opt.fill_window)
			send_fill(owner);
		if ((long)g.sent >= opt.fill) {
			g.phase = 6;
			g.t_drain_end = t + opt.drain;
		}
		return;
	}
	case 6:
		if (g.delivered + g.bounced >= g.sent || t >= g.t_drain_end) {
			g.t_msg_end = t;
			report_fill();
			wait_for_go("fill", g.json_fill);
		}
		return;
	case 7: {
		struct conn *owner = archive_owner();

		if (mam.in_flight) {
			/* Bounded: an answer that does not come is an error. */
			if (t - mam.t_sent > 30) {
				count_error("timeout:mam-%s", mq_names[mam.kind]);
				mam.errors[mam.kind]++;
				mam.in_flight = 0;
				mam.round++;
			}
			return;
		}
		if (owner == NULL || mam.round >= opt.queries * MQ_KINDS) {
			if (owner == NULL)
				count_error("archive:owner-offline");
			report_archive();
			wait_for_go("archive", g.json_archive);
			return;
		}
		send_query(owner);
		return;
	}
	case 8:
		ps_setup_tick(t);
		return;
	case 9:
	case 10:
		ps_publish_tick(t);
		return;
	case 11:
		muc_setup_tick(t);
		return;
	case 12:
	case 13:
		muc_send_tick(t);
		return;
	default:
		return;
	}
}

static void
final_exit(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(g.base);
}

/* Ends the run: </stream:stream> everywhere, a second to let the servers
 * see it, then out of the loop. */
static void
finish(void)
{
	static int done;
	struct timeval tv = { 1, 0 };
	long i;

	if (done)
		return;
	done = 1;
	if (g.json_login[0] == '\0')
		report_login();
	for (i = 0; i < g.started; i++) {
		struct conn *c = &g.conns[i];

		if (c->st != ST_DEAD && c->bev != NULL) {
			online_remove(c);
			/* RFC 7395 3.6: <close/> instead of the end tag. */
			send_str(c, opt.ws_path != NULL ? "<close xmlns='" WS_NS_FRAMING "'/>" :
			    "</stream:stream>");
			c->st = ST_CLOSING;
		}
	}
	event_base_once(g.base, -1, EV_TIMEOUT, final_exit, NULL, &tv);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	count_error("timeout:max-time");
	fprintf(stderr, "loadgen: --max-time %.0f s reached, stopping\n", opt.max_time);
	g.exit_code = 3;
	if (g.phase == 2 || g.phase == 3) {
		g.t_msg_end = g.t_msg_end < now() ? g.t_msg_end : now();
		report_chat();
	}
	if (g.phase == 5 || g.phase == 6) {
		g.t_msg_end = now();
		report_fill();
	}
	if (g.phase == 7)
		report_archive();
	if (g.phase == 8 && !ps.waiting)
		ps_report_setup(now());
	if ((g.phase == 9 || g.phase == 10) && !ps.reported) {
		ps.t_pub_end = ps.t_pub_end < now() ? ps.t_pub_end : now();
		ps_report_publish(now());
	}
	if (g.phase == 11 && !muc.waiting)
		muc_report_setup(now());
	if ((g.phase == 12 || g.phase == 13) && !muc.reported) {
		muc.t_end = muc.t_end < now() ? muc.t_end : now();
		muc_report(now());
	}
	g.waiting_stdin = 0;
	g.phase = 4;
	finish();
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	count_error("signal:%d", (int)sig);
	g.exit_code = 3;
	g.waiting_stdin = 0;
	g.phase = 4;
	finish();
}

/* ------------------------------------------------------------------
 * main
 */

static void
parse_sources(const char *spec)
{
	/* "127.0.1.1" or "127.0.1.1-16" (the last byte ranges over 1..16) or
	 * a comma-separated list of either. */
	char *dup = strdup(spec), *tok, *save;

	for (tok = strtok_r(dup, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *dash = strchr(tok, '-');
		struct in_addr a;
		int lo, hi, i;

		if (dash != NULL)
			*dash = '\0';
		if (inet_pton(AF_INET, tok, &a) != 1)
			die("bad source address %s", tok);
		lo = (int)(ntohl(a.s_addr) & 0xff);
		hi = dash != NULL ? atoi(dash + 1) : lo;
		if (hi < lo || hi > 254)
			die("bad source range %s-%s", tok, dash + 1);
		for (i = lo; i <= hi; i++) {
			if (opt.nsrc == MAX_SOURCES)
				die("more than %d source addresses", MAX_SOURCES);
			opt.src[opt.nsrc].s_addr = htonl((ntohl(a.s_addr) & ~0xffu) | (unsigned)i);
			opt.nsrc++;
		}
	}
	free(dup);
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: loadgen [options]\n"
	    "  --server IP        server address (127.0.0.1)\n"
	    "  --port N           c2s port with STARTTLS (5222)\n"
	    "  --domain D         the XMPP domain (localhost)\n"
	    "  --users N          connections, one account each (100)\n"
	    "  --first K          first account number (0); accounts are PREFIX<K>..\n"
	    "  --prefix P         account name prefix (u)\n"
	    "  --password PW      the password of every account (bench-pw)\n"
	    "  --resource R       resource to bind (lg)\n"
	    "  --mech M           auto|PLAIN|SCRAM-SHA-1|SCRAM-SHA-256 (auto: best SCRAM)\n"
	    "  --concurrency C    logins in flight at once (200)\n"
	    "  --login-rate R     connections started per second (no limit)\n"
	    "  --login-timeout S  seconds one login may take (60)\n"
	    "  --source SPEC      source addresses: 127.0.1.1-16[,127.0.2.1-16]\n"
	    "  --hold S           stay connected S seconds after the logins (0)\n"
	    "  --rate R[,R2..]    aggregate chat messages per second (0: none); several\n"
	    "                     rates run one after the other, each for --duration\n"
	    "  --duration S       seconds of messaging (0)\n"
	    "  --drain S          seconds to wait for messages in flight (5)\n"
	    "  --to-bare          address messages to bare JIDs (default: full)\n"
	    "  --nagle            leave Nagle's algorithm on (default: TCP_NODELAY)\n"
	    "  --websocket PATH   XMPP over WebSocket (RFC 7395) at PATH on an HTTP\n"
	    "                     listener (--port), instead of a c2s stream\n"
	    "  --ws-tls           with --websocket: TLS from the first byte (wss://)\n"
	    "  --sm               stream management (XEP-0198): enable with resume, answer <r/>\n"
	    "  --carbons          enable Message Carbons (XEP-0280) after bind\n"
	    "  --fill N           after the chat phases, N messages from the other sessions\n"
	    "                     to the first account (its archive, XEP-0313)\n"
	    "  --fill-window W    at most W fill messages in flight (1000)\n"
	    "  --queries Q        then Q timed archive queries of each kind from the first\n"
	    "                     account: newest page, middle page, 'with', full text\n"
	    "  --page N           RSM <max/> of each query (50)\n"
	    "  --pubsub SERVICE   after the other phases: the first session creates --node on\n"
	    "                     the pubsub service SERVICE (XEP-0060), every other one\n"
	    "                     subscribes with its bare JID, then the first publishes\n"
	    "  --node NAME        the node (bench)\n"
	    "  --pep              instead: every other account becomes a mutual contact of the\n"
	    "                     first (presence subscriptions), sends caps (XEP-0115) with\n"
	    "                     avatar metadata+notify; the first publishes its avatar\n"
	    "                     metadata (XEP-0084) through PEP (XEP-0163)\n"
	    "  --publish-rate P   items published per second (1)\n"
	    "  --publishes K      publish K items (default: for --duration)\n"
	    "  --setup-timeout S  limit on the subscriptions, rosters and caps (120)\n"
	    "  --setup-window W   subscriptions in flight at once (100)\n"
	    "  --muc ROOM         after the other phases: every session joins ROOM (XEP-0045),\n"
	    "                     the first creating it; then groupchat messages for --duration\n"
	    "  --muc-senders K    occupants that send (default: one per 100)\n"
	    "  --muc-rate R       messages per second per sender (1)\n"
	    "  --trace K          print every element the server sends to session K\n"
	    "  --max-time S       hard limit on the whole run (600)\n"
	    "  --wait-stdin       pause after each phase until a line on stdin\n"
	    "  --seed N           random seed (1)\n"
	    "  --quiet            no progress lines on stderr\n");
	exit(2);
}

static void
raise_nofile(long need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if ((long)rl.rlim_cur < need + 64)
		fprintf(stderr, "loadgen: warning: open files limit %lu < %ld connections; "
		    "raise it (ulimit -n)\n", (unsigned long)rl.rlim_cur, need);
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "server", required_argument, NULL, 's' },
		{ "port", required_argument, NULL, 'p' },
		{ "domain", required_argument, NULL, 'd' },
		{ "users", required_argument, NULL, 'n' },
		{ "first", required_argument, NULL, 'f' },
		{ "prefix", required_argument, NULL, 'P' },
		{ "password", required_argument, NULL, 'w' },
		{ "resource", required_argument, NULL, 'R' },
		{ "mech", required_argument, NULL, 'm' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "login-rate", required_argument, NULL, 'L' },
		{ "login-timeout", required_argument, NULL, 'T' },
		{ "source", required_argument, NULL, 'S' },
		{ "hold", required_argument, NULL, 'H' },
		{ "rate", required_argument, NULL, 'r' },
		{ "duration", required_argument, NULL, 't' },
		{ "drain", required_argument, NULL, 'D' },
		{ "to-bare", no_argument, NULL, 'b' },
		{ "max-time", required_argument, NULL, 'M' },
		{ "wait-stdin", no_argument, NULL, 'W' },
		{ "seed", required_argument, NULL, 'e' },
		{ "nagle", no_argument, NULL, 'N' },
		{ "websocket", required_argument, NULL, 'X' },
		{ "ws-tls", no_argument, NULL, 'Y' },
		{ "sm", no_argument, NULL, 'K' },
		{ "carbons", no_argument, NULL, 'C' },
		{ "fill", required_argument, NULL, 'F' },
		{ "fill-window", required_argument, NULL, 'G' },
		{ "queries", required_argument, NULL, 'Q' },
		{ "page", required_argument, NULL, 'g' },
		{ "pubsub", required_argument, NULL, 1000 },
		{ "node", required_argument, NULL, 1001 },
		{ "pep", no_argument, NULL, 1002 },
		{ "publish-rate", required_argument, NULL, 1003 },
		{ "publishes", required_argument, NULL, 1004 },
		{ "setup-timeout", required_argument, NULL, 1005 },
		{ "setup-window", required_argument, NULL, 1006 },
		{ "trace", required_argument, NULL, 1007 },
		{ "muc", required_argument, NULL, 1008 },
		{ "muc-senders", required_argument, NULL, 1009 },
		{ "muc-rate", required_argument, NULL, 1010 },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct timeval tv;
	int ch, i;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 's': opt.server = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'd': opt.domain = optarg; break;
		case 'n': opt.users = atol(optarg); break;
		case 'f': opt.first = atol(optarg); break;
		case 'P': opt.prefix = optarg; break;
		case 'w': opt.password = optarg; break;
		case 'R': opt.resource = optarg; break;
		case 'm':
			for (i = 0; i < 4; i++)
				if (strcasecmp(optarg, mech_names[i]) == 0)
					opt.mech = (enum mech)i;
			if (strcasecmp(optarg, mech_names[opt.mech]) != 0)
				die("unknown mechanism %s", optarg);
			break;
		case 'c': opt.concurrency = atol(optarg); break;
		case 'L': opt.login_rate = atof(optarg); break;
		case 'T': opt.login_timeout = atof(optarg); break;
		case 'S': parse_sources(optarg); break;
		case 'H': opt.hold = atof(optarg); break;
		case 'r': {
			char *dup = strdup(optarg), *tok, *save;

			opt.nrates = 0;
			for (tok = strtok_r(dup, ",", &save); tok != NULL && opt.nrates < 8;
			    tok = strtok_r(NULL, ",", &save))
				opt.rates[opt.nrates++] = atof(tok);
			free(dup);
			break;
		}
		case 't': opt.duration = atof(optarg); break;
		case 'D': opt.drain = atof(optarg); break;
		case 'b': opt.to_bare = 1; break;
		case 'M': opt.max_time = atof(optarg); break;
		case 'W': opt.wait_stdin = 1; break;
		case 'e': opt.seed = strtoul(optarg, NULL, 10); break;
		case 'N': opt.nagle = 1; break;
		case 'X': opt.ws_path = optarg; break;
		case 'Y': opt.ws_tls = 1; break;
		case 'K': opt.sm = 1; break;
		case 'C': opt.carbons = 1; break;
		case 'F': opt.fill = atol(optarg); break;
		case 'G': opt.fill_window = atol(optarg); break;
		case 'Q': opt.queries = atol(optarg); break;
		case 'g': opt.page = atol(optarg); break;
		case 1000: opt.pubsub = optarg; break;
		case 1001: opt.node = optarg; break;
		case 1002: opt.pep = 1; break;
		case 1003: opt.publish_rate = atof(optarg); break;
		case 1004: opt.publishes = atol(optarg); break;
		case 1005: opt.setup_timeout = atof(optarg); break;
		case 1006: opt.setup_window = atol(optarg); break;
		case 1007: opt.trace = atol(optarg); break;
		case 1008: opt.muc = optarg; break;
		case 1009: opt.muc_senders = atol(optarg); break;
		case 1010: opt.muc_rate = atof(optarg); break;
		case 'q': opt.quiet = 1; break;
		default: usage();
		}
	}
	if (optind != argc || opt.users < 1 || opt.users > 2000000 || opt.concurrency < 1 ||
	    opt.port < 1 || opt.port > 65535 || opt.max_time <= 0 ||
	    (opt.ws_tls && opt.ws_path == NULL) || opt.fill < 0 || opt.fill_window < 1 ||
	    opt.queries < 0 || opt.page < 1 || opt.page > 100000 ||
	    ((opt.fill > 0 || opt.queries > 0) && opt.users < 2) ||
	    ((opt.pubsub != NULL || opt.pep) && (opt.users < 2 || (opt.pubsub && opt.pep) ||
	    opt.publish_rate <= 0 || opt.publishes < 0 || opt.setup_timeout <= 0 ||
	    opt.setup_window < 1 || !attr_ok(opt.node) || !attr_ok(opt.pubsub))) ||
	    (opt.muc != NULL && (opt.pubsub != NULL || opt.pep || !attr_ok(opt.muc) ||
	    strlen(opt.muc) > 200 || strchr(opt.muc, '/') != NULL || opt.muc_senders < 0 ||
	    opt.muc_rate <= 0 || opt.duration <= 0 || opt.setup_timeout <= 0 ||
	    opt.setup_window < 1)) ||
	    (opt.ws_path != NULL && (opt.ws_path[0] != '/' || strlen(opt.ws_path) > 256)))
		usage();
	g.rng = opt.seed * 0x9E3779B97F4A7C15ULL + 1;
	caps_init();
	g.addr.sin_family = AF_INET;
	g.addr.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.server, &g.addr.sin_addr) != 1)
		die("bad server address %s", opt.server);
	raise_nofile(opt.users);
	signal(SIGPIPE, SIG_IGN);

	g.ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (g.ssl_ctx == NULL)
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(g.ssl_ctx, TLS1_2_VERSION);
	/* The benchmark certificate is self-signed: the server's handshake
	 * cost is the same whether the client checks the chain or not. Every
	 * login is a full handshake, as a client's first login is. */
	SSL_CTX_set_verify(g.ssl_ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(g.ssl_ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(g.ssl_ctx, SSL_MODE_RELEASE_BUFFERS);

	g.conns = calloc((size_t)opt.users, sizeof(*g.conns));
	g.online = calloc((size_t)opt.users, sizeof(*g.online));
	if (g.conns == NULL || g.online == NULL)
		die("out of memory for %ld connections", opt.users);
	g.base = event_base_new();
	if (g.base == NULL)
		die("event_base_new failed");
	g.t0 = now();
	getrusage(RUSAGE_SELF, &g.ru0);

	g.tick = event_new(g.base, -1, EV_PERSIST, tick_cb, NULL);
	tv.tv_sec = 0;
	tv.tv_usec = 1000;
	event_add(g.tick, &tv);
	g.stdin_ev = event_new(g.base, 0, EV_READ | EV_PERSIST, stdin_cb, NULL);
	g.deadline = evtimer_new(g.base, deadline_cb, NULL);
	tv.tv_sec = (time_t)opt.max_time;
	tv.tv_usec = (suseconds_t)((opt.max_time - (double)tv.tv_sec) * 1e6);
	event_add(g.deadline, &tv);
	g.sigint_ev = evsignal_new(g.base, SIGINT, signal_cb, NULL);
	g.sigterm_ev = evsignal_new(g.base, SIGTERM, signal_cb, NULL);
	event_add(g.sigint_ev, NULL);
	event_add(g.sigterm_ev, NULL);

	start_more();
	event_base_dispatch(g.base);

	{
		char errs[2048];

		json_errors(errs, sizeof(errs));
		printf("RESULT {\"login\":%s,\"chat\":%s,\"fill\":%s,\"archive\":%s,"
		    "\"pubsub_setup\":%s,\"pubsub\":%s,\"muc_setup\":%s,\"muc\":%s,"
		    "\"carbons_enabled\":%lu,\"errors\":%s,\"wall_s\":%.3f,"
		    "\"gen_cpu_s\":%.3f,\"pbkdf2_runs\":%lu,\"pbkdf2_cache_hits\":%lu}\n",
		    g.json_login[0] ? g.json_login : "null", g.json_chat[0] ? g.json_chat : "null",
		    g.json_fill[0] ? g.json_fill : "null",
		    g.json_archive[0] ? g.json_archive : "null",
		    ps.json_setup[0] ? ps.json_setup : "null",
		    ps.json_publish[0] ? ps.json_publish : "null",
		    muc.json_setup[0] ? muc.json_setup : "null",
		    muc.json_msg[0] ? muc.json_msg : "null", g.carbons_ok,
		    errs, now() - g.t0, gen_cpu(), scram_derivations, scram_cache_hits);
		fflush(stdout);
		if (!opt.quiet)
			for (i = 0; i < g.nerrors; i++)
				fprintf(stderr, "loadgen: error %s: %lu\n", g.errors[i].name,
				    g.errors[i].count);
	}
	/* The process exits here: the kernel closes what is left faster than
	 * freeing 100,000 connections one by one. */
	return g.exit_code;
}
