/*
 * metrics_http.c - GET /metrics on the HTTP listener: the server's
 * counters, gauges and hook latency histograms for Prometheus
 * (doc/admin.md, "Metrics").
 *
 * Two formats: the Prometheus text format 0.0.4 by default, and
 * OpenMetrics 1.0.0 when the Accept header prefers
 * application/openmetrics-text (OpenMetrics 1.0 "Protocol Negotiation":
 * a counter family is named without its _total suffix, the exposition
 * ends with "# EOF"). Who may read it: the access rule metrics_access,
 * evaluated on the client's address; without one, loopback clients only.
 *
 * The scrape runs on an HTTP worker and never blocks: counters are summed
 * from the per-thread blocks (core/metrics.h), gauges read from atomics or
 * under short locks (inboxes, the s2s list), the store's size from LMDB's
 * meta page, the process figures from getrusage and /proc/self.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "core/acl.h"
#include "core/conf.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "hooks/xmppd.h"
#include "http/http.h"
#include "http/metrics_http.h"
#include "router/sm.h"
#include "store/store.h"

#define CT_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define CT_OPENMETRICS "application/openmetrics-text; version=1.0.0; charset=utf-8"
#define ACCESS_RULE "metrics_access"

/* The le labels of the hook histograms, in the shortest form that reads
 * back as metrics_hist_bounds (the same in both formats, so that a series
 * keeps its labels when a scraper switches format). */
static const char *const le_text[METRICS_HIST_BUCKETS] = {
	"1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
	"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0",
};

struct out {
	struct evbuffer *b;
	int om;                     /* OpenMetrics */
};

/* ---------------------------------------------------------------- */
/* Writing families and samples.                                      */

/*
 * A family's HELP and TYPE lines. name is the sample name; for a counter
 * it ends in _total, which OpenMetrics leaves out of the family name
 * (OpenMetrics 1.0, "Counter"). type "info" (a sample name ending in
 * _info, value 1) is OpenMetrics' Info type, a gauge in the text format
 * 0.0.4, which has no such type.
 */
static void
family(struct out *o, const char *name, const char *type, const char *help)
{
	size_t len = strlen(name);

	if (o->om && strcmp(type, "counter") == 0 && len > 6 &&
	    strcmp(name + len - 6, "_total") == 0)
		len -= 6;
	if (strcmp(type, "info") == 0) {
		if (!o->om)
			type = "gauge";
		else if (len > 5 && strcmp(name + len - 5, "_info") == 0)
			len -= 5;
	}
	evbuffer_add_printf(o->b, "# HELP %.*s %s\n# TYPE %.*s %s\n", (int)len, name, help,
	    (int)len, name, type);
}

static void
sample_u(struct out *o, const char *name, const char *labels, unsigned long long v)
{
	evbuffer_add_printf(o->b, "%s%s%s%s %llu\n", name, labels ? "{" : "", labels ? labels : "",
	    labels ? "}" : "", v);
}

static void
sample_i(struct out *o, const char *name, const char *labels, long long v)
{
	evbuffer_add_printf(o->b, "%s%s%s%s %lld\n", name, labels ? "{" : "", labels ? labels : "",
	    labels ? "}" : "", v);
}

static void
sample_f(struct out *o, const char *name, const char *labels, double v)
{
	evbuffer_add_printf(o->b, "%s%s%s%s %.9g\n", name, labels ? "{" : "", labels ? labels : "",
	    labels ? "}" : "", v);
}

/* A label value, escaped as both formats want (backslash, double quote,
 * line feed). */
static void
label_escape(char *buf, size_t size, const char *s)
{
	size_t n = 0;

	for (; *s != '\0' && n + 3 < size; s++) {
		if (*s == '\\' || *s == '"') {
			buf[n++] = '\\';
			buf[n++] = *s;
		} else if (*s == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
		} else {
			buf[n++] = *s;
		}
	}
	buf[n] = '\0';
}

/* ---------------------------------------------------------------- */
/* The server's figures.                                              */

static void
counters(struct out *o)
{
	static const char *const kinds[] = { "message", "presence", "iq" };
	static const char *const outcomes[] = { "delivered", "offline", "bounced" };
	char l[64];

	family(o, "xmppd_logins_total", "counter",
	    "Client authentications that succeeded (SASL success).");
	sample_u(o, "xmppd_logins_total", NULL, metrics_get(METRIC_LOGINS));
	family(o, "xmppd_auth_failures_total", "counter",
	    "Client authentications that failed (SASL failure).");
	sample_u(o, "xmppd_auth_failures_total", NULL, metrics_get(METRIC_AUTH_FAILURES));

	family(o, "xmppd_stanzas_in_total", "counter",
	    "Stanzas received from clients and servers, by kind.");
	for (int i = 0; i < 3; i++) {
		snprintf(l, sizeof(l), "kind=\"%s\"", kinds[i]);
		sample_u(o, "xmppd_stanzas_in_total", l,
		    metrics_get((enum metrics_counter)(METRIC_STANZAS_IN_MESSAGE + i)));
	}
	family(o, "xmppd_stanzas_out_total", "counter",
	    "Stanzas sent to clients and servers, by kind.");
	for (int i = 0; i < 3; i++) {
		snprintf(l, sizeof(l), "kind=\"%s\"", kinds[i]);
		sample_u(o, "xmppd_stanzas_out_total", l,
		    metrics_get((enum metrics_counter)(METRIC_STANZAS_OUT_MESSAGE + i)));
	}
	family(o, "xmppd_routed_total", "counter",
	    "Stanzas for local users by outcome: delivered to a session, stored offline, "
	    "or bounced with an error.");
	for (int i = 0; i < 3; i++) {
		snprintf(l, sizeof(l), "outcome=\"%s\"", outcomes[i]);
		sample_u(o, "xmppd_routed_total", l,
		    metrics_get((enum metrics_counter)(METRIC_ROUTED_DELIVERED + i)));
	}
}

/* The store's tables, collected in one read transaction so that the two
 * families describe the same moment. */
struct tables {
	unsigned n;
	struct { char name[2 * 64 + 1]; uint64_t bytes, entries; } t[64];
};

static void
table_one(const char *name, uint64_t bytes, uint64_t entries, void *arg)
{
	struct tables *ts = arg;

	if (ts->n == sizeof(ts->t) / sizeof(ts->t[0]))
		return;
	label_escape(ts->t[ts->n].name, sizeof(ts->t[0].name), name);
	ts->t[ts->n].bytes = bytes;
	ts->t[ts->n].entries = entries;
	ts->n++;
}

/*
 * Per table: the message archive is table="mam" (with mam_with, mam_ft:
 * modules/mam.h), offline messages "mod_offline", and so on: how an
 * operator sees what grows.
 */
static void
table_sizes(struct out *o)
{
	struct tables ts;
	char l[160];

	ts.n = 0;
	if (store_table_stats(table_one, &ts) < 0 || ts.n == 0)
		return;
	family(o, "xmppd_store_table_size_bytes", "gauge",
	    "Bytes of the pages of each store table (the archive is table=\"mam\").");
	for (unsigned i = 0; i < ts.n; i++) {
		snprintf(l, sizeof(l), "table=\"%s\"", ts.t[i].name);
		sample_u(o, "xmppd_store_table_size_bytes", l, ts.t[i].bytes);
	}
	family(o, "xmppd_store_table_entries", "gauge",
	    "Records in each store table (the archive's messages are table=\"mam\").");
	for (unsigned i = 0; i < ts.n; i++) {
		snprintf(l, sizeof(l), "table=\"%s\"", ts.t[i].name);
		sample_u(o, "xmppd_store_table_entries", l, ts.t[i].entries);
	}
}

static void
gauges(struct out *o)
{
	static const char *const transports[] = { "tcp", "websocket", "bosh" };
	uint64_t used, map;
	char l[64], build[384], bl[512];
	long long v;

	family(o, "xmppd_sessions", "gauge", "Bound client sessions, by transport.");
	for (int i = 0; i < 3; i++) {
		snprintf(l, sizeof(l), "transport=\"%s\"", transports[i]);
		v = (long long)(int64_t)metrics_get((enum metrics_counter)(METRIC_SESSIONS_TCP + i));
		sample_i(o, "xmppd_sessions", l, v < 0 ? 0 : v);
	}
	family(o, "xmppd_sm_sessions", "gauge",
	    "Resources in the session manager (all transports, detached ones included).");
	sample_u(o, "xmppd_sm_sessions", NULL, sm_session_count());

	family(o, "xmppd_connections", "gauge", "Open connections, by kind.");
	sample_u(o, "xmppd_connections", "kind=\"c2s\"",
	    metrics_source(METRICS_SRC_C2S_CONNECTIONS));
	sample_u(o, "xmppd_connections", "kind=\"s2s\"",
	    metrics_source(METRICS_SRC_S2S_CONNECTIONS));
	sample_u(o, "xmppd_connections", "kind=\"http\"", http_connection_count());
	sample_u(o, "xmppd_connections", "kind=\"component\"",
	    metrics_source(METRICS_SRC_COMPONENT_CONNECTIONS));

	family(o, "xmppd_s2s_links", "gauge",
	    "Authenticated server-to-server streams (incoming and outgoing).");
	sample_u(o, "xmppd_s2s_links", NULL, metrics_source(METRICS_SRC_S2S_LINKS));

	family(o, "xmppd_worker_queue_depth", "gauge",
	    "Tasks waiting in each worker thread's inbox.");
	for (unsigned i = 0; i < worker_count(); i++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", i);
		sample_u(o, "xmppd_worker_queue_depth", l, worker_queue_depth(i));
	}

	if (store_size(&used, &map) == 0) {
		family(o, "xmppd_store_size_bytes", "gauge",
		    "Bytes of the LMDB store in use (pages up to the last one written).");
		sample_u(o, "xmppd_store_size_bytes", NULL, used);
		family(o, "xmppd_store_map_size_bytes", "gauge",
		    "The LMDB map size: the most the store may grow to (store_map_size).");
		sample_u(o, "xmppd_store_map_size_bytes", NULL, map);
	}

	table_sizes(o);

	/* The build is xmppd --version's line (commit, date, configure
	 * options: configure.ac XMPPD_BUILD). */
	family(o, "xmppd_build_info", "info",
	    "Always 1: the version, the build (commit, date, configure options) and the "
	    "module ABI.");
	label_escape(build, sizeof(build), XMPPD_BUILD);
	snprintf(bl, sizeof(bl), "version=\"%s\",build=\"%s\",abi=\"%d.%d\"",
	    PACKAGE_VERSION, build, XMPPD_ABI_MAJOR, XMPPD_ABI_MINOR);
	sample_u(o, "xmppd_build_info", bl, 1);
}

static void
hook_histograms(struct out *o)
{
	unsigned n = metrics_hook_slots();
	char mod[160], l[320];

	family(o, "xmppd_hook_duration_seconds", "histogram",
	    "Time a module's hook handler took, by hook and module (nested hooks included).");
	for (unsigned i = 0; i < n; i++) {
		struct metrics_hist h;
		const char *module, *hook;
		unsigned hid;
		uint64_t cum = 0;
		int len;

		metrics_hook_slot_get(i, &hid, &module, &h);
		hook = metrics_hook_name(hid);
		label_escape(mod, sizeof(mod), module);
		for (unsigned k = 0; k <= METRICS_HIST_BUCKETS; k++) {
			cum += h.bucket[k];
			len = snprintf(l, sizeof(l), "hook=\"%s\",module=\"%s\",le=\"%s\"", hook, mod,
			    k < METRICS_HIST_BUCKETS ? le_text[k] : "+Inf");
			if (len > 0)
				sample_u(o, "xmppd_hook_duration_seconds_bucket", l, cum);
		}
		snprintf(l, sizeof(l), "hook=\"%s\",module=\"%s\"", hook, mod);
		sample_f(o, "xmppd_hook_duration_seconds_sum", l, (double)h.sum_ns / 1e9);
		/* The +Inf bucket and the count are the same sum: printed
		 * from cum so that they agree within one scrape. */
		sample_u(o, "xmppd_hook_duration_seconds_count", l, cum);
	}
}

/* process_* as the Prometheus client libraries name them ("Process
 * metrics" in the client guidelines). */
static void
process(struct out *o)
{
	struct rusage ru;
	struct rlimit rl;
	long page = sysconf(_SC_PAGESIZE);
	unsigned long vsz = 0, rss = 0;
	FILE *f;
	DIR *d;

	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		family(o, "process_cpu_seconds_total", "counter",
		    "Total user and system CPU time spent in seconds.");
		sample_f(o, "process_cpu_seconds_total", NULL,
		    (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	}
	/* A few bytes from procfs, never a disk. */
	if ((f = fopen("/proc/self/statm", "r")) != NULL) {
		if (fscanf(f, "%lu %lu", &vsz, &rss) == 2 && page > 0) {
			family(o, "process_resident_memory_bytes", "gauge",
			    "Resident memory size in bytes.");
			sample_u(o, "process_resident_memory_bytes", NULL,
			    (unsigned long long)rss * (unsigned long long)page);
			family(o, "process_virtual_memory_bytes", "gauge",
			    "Virtual memory size in bytes.");
			sample_u(o, "process_virtual_memory_bytes", NULL,
			    (unsigned long long)vsz * (unsigned long long)page);
		}
		fclose(f);
	}
	if ((d = opendir("/proc/self/fd")) != NULL) {
		unsigned long n = 0;
		struct dirent *e;

		while ((e = readdir(d)) != NULL)
			n += e->d_name[0] != '.';
		closedir(d);
		family(o, "process_open_fds", "gauge", "Number of open file descriptors.");
		/* Less the one opendir held. */
		sample_u(o, "process_open_fds", NULL, n > 0 ? n - 1 : 0);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		family(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
		sample_u(o, "process_max_fds", NULL, (unsigned long long)rl.rlim_cur);
	}
	family(o, "process_start_time_seconds", "gauge",
	    "Start time of the process since unix epoch in seconds.");
	sample_f(o, "process_start_time_seconds", NULL, metrics_start_time());
}

/* ---------------------------------------------------------------- */
/* The request.                                                       */

/* The q of one media range's parameters ("; q=0.5; version=1.0.0"); 1
 * when absent, 0 when malformed (RFC 9110 12.4.2). */
static double
accept_q(const char *params, size_t len)
{
	const char *p = params, *end = params + len;

	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *q = p;

		while (q < end && (*q == ' ' || *q == '\t' || *q == ';'))
			q++;
		if (end - q >= 2 && (q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
			char num[8];
			size_t n = 0;
			char *e;
			double v;

			for (q += 2; q < end && n < sizeof(num) - 1 && *q != ';' && *q != ' '; q++)
				num[n++] = *q;
			num[n] = '\0';
			v = strtod(num, &e);
			return e == num || *e != '\0' || v < 0 || v > 1 ? 0 : v;
		}
		if (semi == NULL)
			break;
		p = semi + 1;
	}
	return 1;
}

/*
 * 1 if the Accept header prefers OpenMetrics: its best q for
 * application/openmetrics-text is above 0 and not below that of the text
 * format (text/plain, text/ *, * / *). Prometheus sends
 * "application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*\/\*;q=0.1".
 */
static int
wants_openmetrics(const char *accept)
{
	double om = 0, text = 0;
	const char *p = accept;

	if (accept == NULL)
		return 0;
	while (*p != '\0') {
		const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
		const char *semi, *t = p;
		size_t tlen;
		double q;

		while (t < end && (*t == ' ' || *t == '\t'))
			t++;
		semi = memchr(t, ';', (size_t)(end - t));
		tlen = (size_t)((semi ? semi : end) - t);
		while (tlen > 0 && (t[tlen - 1] == ' ' || t[tlen - 1] == '\t'))
			tlen--;
		q = semi ? accept_q(semi, (size_t)(end - semi)) : 1;
		if (tlen == 28 && strncasecmp(t, "application/openmetrics-text", 28) == 0) {
			if (q > om)
				om = q;
		} else if ((tlen == 10 && strncasecmp(t, "text/plain", 10) == 0) ||
		    (tlen == 6 && strncasecmp(t, "text/*", 6) == 0) ||
		    (tlen == 3 && strncmp(t, "*/*", 3) == 0)) {
			if (q > text)
				text = q;
		}
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return om > 0 && om >= text;
}

/* 127.0.0.0/8, ::1, or an IPv4-mapped loopback address. */
static int
is_loopback(const struct sockaddr *sa)
{
	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		if (IN6_IS_ADDR_LOOPBACK(a))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return 0;
}

/* ctl/api.c's check of admin credentials (a layer above: it sets it). */
static int (*credentials_ok)(struct http_req *);

void
http_metrics_set_auth(int (*fn)(struct http_req *))
{
	__atomic_store_n(&credentials_ok, fn, __ATOMIC_RELEASE);
}

static int
allowed(struct http_req *r)
{
	const struct conf *c = http_req_conf(r);
	const struct sockaddr *peer = http_req_client(r);

	if (c != NULL && access_rule_exists(c, ACCESS_RULE))
		return access_check(c, ACCESS_RULE, NULL, peer);
	return is_loopback(peer);
}

void
metrics_render(struct evbuffer *b, int openmetrics)
{
	struct out o = { b, openmetrics };

	gauges(&o);
	counters(&o);
	hook_histograms(&o);
	process(&o);
	if (o.om)
		evbuffer_add(o.b, "# EOF\n", 6);
}

static void
metrics_get_cb(struct http_req *r, void *arg)
{
	const char *m = http_req_method(r);
	struct out o;

	(void)arg;
	if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
		http_respond(r, 405, "text/plain; charset=utf-8", "GET or HEAD only\n", 17,
		    "Allow: GET, HEAD\r\n");
		return;
	}
	if (!allowed(r)) {
		int (*ok)(struct http_req *) = __atomic_load_n(&credentials_ok, __ATOMIC_ACQUIRE);

		/* Or an administrator's credentials, as for /api/ (a
		 * Prometheus scrape_config's authorization or basic_auth). */
		if (http_req_header(r, "Authorization") == NULL || ok == NULL) {
			http_error(r, 403, "metrics_access denies this address");
			return;
		}
		if (!ok(r)) {
			http_respond(r, 401, "text/plain; charset=utf-8", "wrong credentials\n", 18,
			    "WWW-Authenticate: Basic realm=\"xmppd\"\r\n");
			return;
		}
	}
	o.om = wants_openmetrics(http_req_header(r, "Accept"));
	if ((o.b = evbuffer_new()) == NULL) {
		http_error(r, 500, "out of memory");
		return;
	}
	metrics_render(o.b, o.om);
	/* Vary: a cache must not answer one format's request with the
	 * other's (RFC 9110 12.5.5). */
	http_respond(r, 200, o.om ? CT_OPENMETRICS : CT_TEXT,
	    (const char *)evbuffer_pullup(o.b, -1), evbuffer_get_length(o.b),
	    "Vary: Accept\r\nCache-Control: no-store\r\n");
	evbuffer_free(o.b);
}

int
http_metrics_init(void)
{
	return http_route_add("/metrics", metrics_get_cb, NULL, NULL);
}
