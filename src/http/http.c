/*
 * http.c - the HTTP/1.1 listener (http.h).
 *
 * One struct http_conn per connection, on its worker. Input goes to
 * http-parser until a request is complete; the parser is paused there, the
 * request is routed and handled, and once it is answered (at once, or
 * later from a held request) the parser goes on with what the client
 * pipelined. Limits (doc/configuration.md, "HTTP"): the request head
 * (request line and headers) and the body have a size bound each; a
 * request must be complete within http_request_timeout of its first byte
 * and a kept-alive connection may idle http_idle_timeout between requests
 * (a slowloris that trickles a header is cut at the first bound, not kept
 * alive by every byte); connections per address are the core's
 * max_connections_per_ip, requests per address a token bucket per address
 * (http_max_requests_per_ip a second, twice that as a burst). Each limit is
 * answered with its status (431, 413, 408, 503, 429) and ends only that
 * connection.
 */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <http_parser.h>

#include "core/acl.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/http.h"
#include "net/listener.h"
#include "net/proxy.h"
#include "net/tls.h"
#include "stream/conn.h"

#define MAX_HEADERS 64           /* header lines per request */

/* ---------------------------------------------------------------- */
/* Routes.                                                            */

struct route {
	char *path;
	size_t len;
	int prefix;                  /* path ends in '/': a prefix */
	http_handler_fn fn;
	void *arg;
	const void *owner;
};

struct routes {
	size_t n;
	struct routes *retired;      /* older tables, freed at exit */
	struct route r[];
};

static struct routes *routes;    /* atomic pointer; written by the main thread */

static void
routes_free(struct routes *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->r[i].path);
	free(t);
}

/* A copy of old (each table owns its path strings) with room for extra. */
static struct routes *
routes_copy(const struct routes *old, size_t extra)
{
	size_t n = old != NULL ? old->n : 0;
	struct routes *t = calloc(1, sizeof(*t) + (n + extra) * sizeof(t->r[0]));

	if (t == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		t->r[i] = old->r[i];
		if ((t->r[i].path = strdup(old->r[i].path)) == NULL) {
			t->n = i;
			routes_free(t);
			return NULL;
		}
	}
	t->n = n;
	return t;
}

static void
routes_publish(struct routes *t)
{
	struct routes *old = __atomic_load_n(&routes, __ATOMIC_ACQUIRE);

	/* Workers may still read the old table: it is kept until exit
	 * (tables change only when a module loads or unloads). */
	t->retired = old;
	__atomic_store_n(&routes, t, __ATOMIC_RELEASE);
}

int
http_route_add(const char *path, http_handler_fn fn, void *arg, const void *owner)
{
	struct routes *old = __atomic_load_n(&routes, __ATOMIC_ACQUIRE), *t;
	struct route *r;

	if (path == NULL || path[0] != '/')
		return -1;
	for (size_t i = 0; old != NULL && i < old->n; i++)
		if (strcmp(old->r[i].path, path) == 0)
			return -1;
	if ((t = routes_copy(old, 1)) == NULL)
		return -1;
	r = &t->r[t->n];
	if ((r->path = strdup(path)) == NULL) {
		free(t);
		return -1;
	}
	r->len = strlen(path);
	r->prefix = path[r->len - 1] == '/';
	r->fn = fn;
	r->arg = arg;
	r->owner = owner;
	t->n++;
	routes_publish(t);
	return 0;
}

unsigned
http_route_remove(const void *owner)
{
	struct routes *old = __atomic_load_n(&routes, __ATOMIC_ACQUIRE), *t;
	unsigned removed = 0;

	if (old == NULL || (t = routes_copy(old, 0)) == NULL)
		return 0;
	for (size_t i = 0, j = 0; i < t->n; i++) {
		if (t->r[i].owner == owner) {
			free(t->r[i].path);
			removed++;
		} else {
			t->r[j++] = t->r[i];
		}
	}
	t->n -= removed;
	if (removed == 0) {
		routes_free(t);
		return 0;
	}
	routes_publish(t);
	return removed;
}

/* The route for path: an exact one first, else the longest prefix. */
static const struct route *
route_find(const char *path)
{
	const struct routes *t = __atomic_load_n(&routes, __ATOMIC_ACQUIRE);
	const struct route *best = NULL;

	for (size_t i = 0; t != NULL && i < t->n; i++) {
		const struct route *r = &t->r[i];

		if (!r->prefix) {
			if (strcmp(path, r->path) == 0)
				return r;
		} else if (strncmp(path, r->path, r->len) == 0 &&
		    (best == NULL || r->len > best->len)) {
			best = r;
		}
	}
	return best;
}

int
http_route_exists(const char *path)
{
	return route_find(path) != NULL;
}

/* ---------------------------------------------------------------- */
/* Requests per address: a token bucket each, in a table of fixed size   */
/* shared by the workers (one mutex, one lock per request). An address  */
/* whose slot another took starts full again: the table bounds memory,  */
/* not precision.                                                       */

#define RATE_SLOTS 4096

struct rate_slot {
	struct sockaddr_storage sa;
	struct shaper_bucket b;
	int used;
};

static struct rate_slot rate_slots[RATE_SLOTS];
static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t
addr_key(const struct sockaddr *sa, const void **p_r)
{
	if (sa->sa_family == AF_INET) {
		*p_r = &((const struct sockaddr_in *)sa)->sin_addr;
		return 4;
	}
	if (sa->sa_family == AF_INET6) {
		*p_r = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return 16;
	}
	*p_r = NULL;
	return 0;
}

static int
same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
	const void *pa, *pb;
	size_t na = addr_key(a, &pa), nb = addr_key(b, &pb);

	return na > 0 && na == nb && memcmp(pa, pb, na) == 0;
}

/* 1 if a request from sa is within its rate (per second; 0: no limit). */
static int
rate_allow(const struct sockaddr *sa, unsigned rate)
{
	const void *p;
	size_t n = addr_key(sa, &p);
	uint64_t h = 1469598103934665603ULL, now = clock_now_ms();
	struct rate_slot *s;
	int ok;

	if (rate == 0 || n == 0)
		return 1;
	for (size_t i = 0; i < n; i++)
		h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ULL;
	s = &rate_slots[h % RATE_SLOTS];
	pthread_mutex_lock(&rate_lock);
	if (!s->used || !same_addr((struct sockaddr *)&s->sa, sa)) {
		struct conf_shaper sh = { NULL, rate, 2 * (uint64_t)rate, 0 };

		shaper_bucket_init(&s->b, &sh, now);
		s->b.level = (int64_t)s->b.burst;    /* a new address may burst at once */
		memcpy(&s->sa, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) :
		    sizeof(struct sockaddr_in6));
		s->used = 1;
	}
	ok = shaper_bucket_allow(&s->b, now) >= 1;
	if (ok)
		shaper_bucket_take(&s->b, 1);
	pthread_mutex_unlock(&rate_lock);
	return ok;
}

/* ---------------------------------------------------------------- */
/* Connections and requests.                                          */

struct http_header {
	char *name, *value;
};

struct http_req {
	struct http_conn *hc;
	char method[16];
	char *url;                    /* in hc->head */
	char *path, *query;
	struct http_header h[MAX_HEADERS];
	unsigned nh;
	struct evbuffer *body;
	char *host;
	char *base_url;
	struct sockaddr_storage client;
	void (*gone)(struct http_req *r, void *arg);
	void *gone_arg;
	unsigned held : 1;
	unsigned keep_alive : 1;
	unsigned answered : 1;
};

struct http_conn {
	struct conn *c;
	struct worker *w;
	struct conf *conf;
	const struct conf_listen *l;
	http_parser p;
	/* The head being parsed: url and headers, NUL-separated. */
	char *head;
	size_t hlen, hcap;
	int in_value;                 /* the last callback was a value */
	struct http_req *req;         /* parsed or being parsed */
	unsigned busy : 1;            /* a complete request is being handled */
	unsigned too_big : 2;         /* the head (1) or body (2) went over its bound */
	unsigned closing : 1;
	unsigned started : 1;         /* the current request's first byte came */
	unsigned paused : 1;          /* input came while busy: not read until done */
	char tag[24];
};

static struct conn_set *http_set;
/* The request a handler is running for: answering, holding or taking it
 * clears this, so that one left unanswered is told (500). */
static __thread struct http_req *in_handler;
static __thread unsigned long http_serial;   /* for the log tags */
static unsigned long taken;       /* connections handed over (atomic) */

static void hc_input(void *arg);
static void hc_timeout(void *arg);
static void hc_end(void *arg, enum conn_end how, const char *why);
static void hc_tls_installed(void *arg) { (void)arg; }

static const struct conn_ops hc_ops = {
	hc_input, NULL, hc_tls_installed, NULL, hc_timeout, hc_end,
};

static void
req_free(struct http_req *r)
{
	if (r == NULL)
		return;
	if (r->body != NULL)
		evbuffer_free(r->body);
	free(r->host);
	free(r->base_url);
	free(r);
}

static void
hc_free(struct http_conn *hc)
{
	struct http_req *r = hc->req;

	hc->req = NULL;
	if (r != NULL && r->held && r->gone != NULL)
		r->gone(r, r->gone_arg);
	req_free(r);
	conn_free(&hc->c);
	free(hc->head);
	conf_unref(hc->conf);
	free(hc);
}

/* The time left for what comes now: a request under way, or idling. */
static void
arm_timer(struct http_conn *hc)
{
	conn_set_timer(hc->c, 1000U * (hc->started ? hc->conf->http_request_timeout :
	    hc->conf->http_idle_timeout));
}

static const char *
status_text(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* Writes a whole response on hc (no request needed: limits answered
 * before one is complete). */
static void
write_response(struct http_conn *hc, int status, const char *ctype, const char *body,
    size_t len, const char *headers, int keep, int head_only)
{
	struct evbuffer *out = conn_out(hc->c);
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: xmppd\r\n",
	    status, status_text(status), date);
	/* RFC 9110 8.6: a 304 has no content, and a Content-Length would
	 * have to be that of the 200 it stands for. */
	if (status != 304)
		evbuffer_add_printf(out, "Content-Length: %zu\r\n", len);
	if (ctype != NULL)
		evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
	if (!keep)
		evbuffer_add(out, "Connection: close\r\n", 19);
	if (headers != NULL)
		evbuffer_add(out, headers, strlen(headers));
	evbuffer_add(out, "\r\n", 2);
	if (len > 0 && !head_only)
		evbuffer_add(out, body, len);
}

/* A limit or a bad request before a request was routed: answer, close. */
static void
refuse(struct http_conn *hc, int status, const char *text, const char *headers)
{
	char body[256];
	int n;

	if (hc->closing)
		return;
	n = snprintf(body, sizeof(body), "%s\n", text);
	log_info(hc->tag, "%d %s", status, text);
	write_response(hc, status, "text/plain; charset=utf-8", body, (size_t)n, headers, 0, 0);
	hc->closing = 1;
	conn_close(hc->c);
}

/* ---- http-parser callbacks ---- */

static int
head_add(struct http_conn *hc, const char *p, size_t n, int terminate)
{
	size_t need = hc->hlen + n + 1;

	if (need > hc->conf->http_max_header_size) {
		hc->too_big = 1;
		return -1;
	}
	if (need > hc->hcap) {
		size_t cap = hc->hcap > 0 ? hc->hcap * 2 : 1024;
		char *h;

		while (cap < need)
			cap *= 2;
		if (cap > hc->conf->http_max_header_size + 1)
			cap = hc->conf->http_max_header_size + 1;
		if ((h = realloc(hc->head, cap)) == NULL)
			return -1;
		/* Pointers into the head are set when it is complete. */
		hc->head = h;
		hc->hcap = cap;
	}
	memcpy(hc->head + hc->hlen, p, n);
	hc->hlen += n;
	if (terminate)
		hc->head[hc->hlen++] = '\0';
	return 0;
}

static int
on_message_begin(http_parser *p)
{
	struct http_conn *hc = p->data;

	hc->hlen = 0;
	hc->in_value = 0;
	req_free(hc->req);
	if ((hc->req = calloc(1, sizeof(*hc->req))) == NULL)
		return -1;
	hc->req->hc = hc;
	return 0;
}

/*
 * The head is kept as NUL-terminated pieces: url, then name, value, name,
 * value...; a callback may come in several parts (the input's chunks), so
 * a piece is closed when the next kind of piece begins.
 */
static int
on_url(http_parser *p, const char *at, size_t n)
{
	return head_add(p->data, at, n, 0);
}

static int
on_header_field(http_parser *p, const char *at, size_t n)
{
	struct http_conn *hc = p->data;

	/* The url or the last value ends here. */
	if (hc->req->nh == 0 && !hc->in_value && hc->hlen > 0 &&
	    memchr(hc->head, '\0', hc->hlen) == NULL) {
		if (head_add(hc, "", 0, 1) < 0)
			return -1;
	}
	if (hc->in_value) {
		if (head_add(hc, "", 0, 1) < 0)
			return -1;
		hc->in_value = 0;
		if (++hc->req->nh >= MAX_HEADERS) {
			hc->too_big = 1;
			return -1;
		}
	}
	return head_add(hc, at, n, 0);
}

static int
on_header_value(http_parser *p, const char *at, size_t n)
{
	struct http_conn *hc = p->data;

	if (!hc->in_value) {
		if (head_add(hc, "", 0, 1) < 0)
			return -1;
		hc->in_value = 1;
	}
	return head_add(hc, at, n, 0);
}

/* Splits the head into the request's url and headers. */
static int
head_split(struct http_conn *hc)
{
	struct http_req *r = hc->req;
	char *s, *end;
	unsigned n = 0;

	if (head_add(hc, "", 0, 1) < 0)
		return -1;
	if (hc->in_value)
		r->nh++;
	s = hc->head;
	end = hc->head + hc->hlen;
	r->url = s;
	s += strlen(s) + 1;
	while (n < r->nh && s < end) {
		r->h[n].name = s;
		s += strlen(s) + 1;
		if (s >= end)
			return -1;
		r->h[n].value = s;
		s += strlen(s) + 1;
		n++;
	}
	r->nh = n;
	return 0;
}

static int
on_headers_complete(http_parser *p)
{
	struct http_conn *hc = p->data;
	struct http_req *r = hc->req;
	const char *host;

	if (head_split(hc) < 0)
		return -1;
	snprintf(r->method, sizeof(r->method), "%s", http_method_str(p->method));
	r->path = r->url;
	if ((r->query = strchr(r->url, '?')) != NULL)
		*r->query++ = '\0';
	if (strchr(r->path, '#') != NULL)
		*strchr(r->path, '#') = '\0';
	if ((host = http_req_header(r, "Host")) != NULL) {
		size_t len;

		/* "[::1]:5280", "example.org:5280", "Example.org" */
		if (host[0] == '[')
			len = strcspn(host, "]") + (strchr(host, ']') != NULL);
		else
			len = strcspn(host, ":");
		if ((r->host = strndup(host, len)) == NULL)
			return -1;
		for (char *c = r->host; *c != '\0'; c++)
			*c = (char)tolower((unsigned char)*c);
	}
	/* RFC 9110 8.6: a declared body over the bound is refused before
	 * it is read. */
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > hc->conf->http_max_body_size) {
		hc->too_big = 2;
		return -1;
	}
	r->keep_alive = http_should_keep_alive(p) != 0;
	return 0;
}

static int
on_body(http_parser *p, const char *at, size_t n)
{
	struct http_conn *hc = p->data;
	struct http_req *r = hc->req;

	if (r->body == NULL && (r->body = evbuffer_new()) == NULL)
		return -1;
	if (evbuffer_get_length(r->body) + n > hc->conf->http_max_body_size) {
		hc->too_big = 2;
		return -1;
	}
	return evbuffer_add(r->body, at, n);
}

static int
on_message_complete(http_parser *p)
{
	struct http_conn *hc = p->data;

	hc->busy = 1;
	/* One request at a time: the rest waits (pipelining). */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/*
 * The client's address: the socket's peer (or the PROXY header's, which
 * the listener has put there), or, when that peer is one of
 * trusted_proxies, what X-Forwarded-For says (net/proxy.h: from the right,
 * the first address that is not a trusted proxy). Several X-Forwarded-For
 * lines are one list (RFC 9110 5.3). -1 if a trusted proxy's header is
 * malformed.
 */
static int
find_client(struct http_conn *hc, struct http_req *r)
{
	const struct sockaddr *peer = conn_peer(hc->c);
	const struct conf *c = hc->conf;
	char xff[2048];
	size_t n = 0;

	memset(&r->client, 0, sizeof(r->client));
	if (peer == NULL)
		return 0;
	memcpy(&r->client, peer, peer->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	if (c->ntrusted_proxies == 0)
		return 0;
	xff[0] = '\0';
	for (unsigned i = 0; i < r->nh; i++) {
		if (strcasecmp(r->h[i].name, "X-Forwarded-For") != 0)
			continue;
		n += (size_t)snprintf(xff + n, n < sizeof(xff) ? sizeof(xff) - n : 0, "%s%s",
		    n > 0 ? ", " : "", r->h[i].value);
		if (n >= sizeof(xff))
			return -1;
	}
	if (n == 0)
		return 0;
	return proxy_xff_client(xff, peer, c->trusted_proxies, c->ntrusted_proxies,
	    &r->client) < 0 ? -1 : 0;
}

static void
dispatch(struct http_conn *hc)
{
	struct http_req *r = hc->req;
	const struct route *rt;

	conn_cancel_timer(hc->c);
	/* After an Upgrade request the parser cannot go on: a refused
	 * upgrade closes the connection. */
	if (hc->p.upgrade)
		r->keep_alive = 0;
	if (find_client(hc, r) < 0) {
		http_error(r, 400, "malformed X-Forwarded-For from a trusted proxy");
		return;
	}
	if (!rate_allow((struct sockaddr *)&r->client, hc->conf->http_max_requests_per_ip)) {
		refuse(hc, 429, "too many requests from your address", "Retry-After: 1\r\n");
		return;
	}
	if ((rt = route_find(r->path)) == NULL) {
		http_error(r, 404, "not found");
		return;
	}
	log_debug(hc->tag, "%s %s", r->method, r->path);
	in_handler = r;
	rt->fn(r, rt->arg);
	if (in_handler == r) {
		in_handler = NULL;
		http_error(r, 500, "the handler did not answer");
	}
	in_handler = NULL;
}

/* Parses what the client sent, one request at a time. */
static void
hc_input(void *arg)
{
	struct http_conn *hc = arg;
	struct conn *c = hc->c;
	const char *p;
	size_t len;

	if (hc->busy && !hc->closing) {
		/* A request is being handled (held) and the client sends
		 * more: it waits unread, in the socket, not in our memory. */
		conn_pause(c);
		hc->paused = 1;
		return;
	}
	while (!hc->busy && !hc->closing && conn_peek(c, &p, &len) == 0) {
		size_t n;
		enum http_errno err;

		if (!hc->started) {
			hc->started = 1;
			arm_timer(hc);
		}
		n = http_parser_execute(&hc->p, &settings, p, len);
		err = HTTP_PARSER_ERRNO(&hc->p);
		if (err == HPE_PAUSED) {
			/* on_message_complete paused after this byte. */
			conn_drain(c, n);
			http_parser_pause(&hc->p, 0);
			dispatch(hc);
			return;          /* hc may be gone or taken */
		}
		if (err != HPE_OK || (hc->p.upgrade && !hc->busy)) {
			conn_drain(c, len);
			if (hc->too_big == 2)
				refuse(hc, 413, "request body too large", NULL);
			else if (hc->too_big == 1)
				refuse(hc, 431, "request header too large", NULL);
			else
				refuse(hc, 400, http_errno_description(err), NULL);
			return;
		}
		conn_drain(c, n);
		if (hc->p.upgrade) {
			/* Upgrade requests stop the parser after the head;
			 * on_message_complete ran (busy). */
			dispatch(hc);
			return;
		}
	}
}

static void
hc_timeout(void *arg)
{
	struct http_conn *hc = arg;

	if (hc->busy)
		return;          /* a held request: its handler has the time */
	if (hc->started)
		refuse(hc, 408, "request not complete in time", NULL);
	else {
		hc->closing = 1;
		conn_close(hc->c);
	}
}

static void
hc_end(void *arg, enum conn_end how, const char *why)
{
	struct http_conn *hc = arg;

	(void)how;
	log_debug(hc->tag, "closed (%s)", why != NULL ? why : "");
	hc_free(hc);
}

/* The request is answered: the next one may come. */
static void
req_done(struct http_req *r)
{
	struct http_conn *hc = r->hc;
	int keep = r->keep_alive && !hc->closing;

	hc->busy = 0;
	hc->started = 0;
	req_free(r);
	hc->req = NULL;
	if (!keep) {
		hc->closing = 1;
		conn_close(hc->c);
		return;
	}
	arm_timer(hc);
	/* Pipelined bytes are already buffered: the loop hands them on
	 * (conn_resume calls input() from the loop). */
	if (hc->paused || conn_input_pending(hc->c)) {
		hc->paused = 0;
		conn_pause(hc->c);
		conn_resume(hc->c);
	}
}

static void
http_accept(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conf_listen *l)
{
	struct conn_accept_opts o = { NULL, NULL, 1 };
	struct http_conn *hc;
	unsigned n;

	if (conn_set_stopped(http_set, w) || (hc = calloc(1, sizeof(*hc))) == NULL) {
		close(fd);
		return;
	}
	hc->w = w;
	hc->l = l;
	hc->conf = conf_current();
	snprintf(hc->tag, sizeof(hc->tag), "http#%u.%lu", worker_id(w), ++http_serial);
	http_parser_init(&hc->p, HTTP_REQUEST);
	hc->p.data = hc;
	if ((hc->c = conn_new(http_set, w, &hc_ops, hc, hc->tag)) == NULL)
		goto fail;
	if (l->shaper != NULL)
		o.shaper = shaper_find(hc->conf, l->shaper);
	if (l->tls && (o.ssl = tls_new_server("http/1.1")) == NULL) {
		log_error(hc->tag, "HTTPS listener but no certificate");
		goto fail;
	}
	if (conn_accept(hc->c, fd, sa, salen, &o, &n) < 0) {
		fd = -1;
		goto fail;
	}
	if (hc->conf->max_connections_per_ip > 0 && n > hc->conf->max_connections_per_ip) {
		refuse(hc, 503, "too many connections from your address", "Retry-After: 10\r\n");
		return;
	}
	arm_timer(hc);
	return;
fail:
	if (fd >= 0)
		close(fd);
	hc_free(hc);
}

int
http_init(unsigned nworkers)
{
	if ((http_set = conn_set_new(nworkers)) == NULL)
		return -1;
	listener_set_handler(CONF_LISTEN_HTTP, http_accept);
	return http_hostmeta_init();
}

static void
shutdown_task(struct worker *w, void *a, uint64_t b)
{
	(void)a;
	(void)b;
	conn_set_stop(http_set, w);
	for (struct conn *c = conn_set_first(http_set, w), *next; c != NULL; c = next) {
		struct http_conn *hc = conn_arg(c);

		next = conn_next(c);
		if (!hc->closing) {
			hc->closing = 1;
			conn_close(c);
		}
	}
}

/* What is left after the grace: freed on its worker (nothing will call
 * back: the workers stop next). */
static void
end_task(struct worker *w, void *a, uint64_t b)
{
	(void)a;
	(void)b;
	for (struct conn *c = conn_set_first(http_set, w), *next; c != NULL; c = next) {
		next = conn_next(c);
		hc_free(conn_arg(c));
	}
}

void
http_shutdown(unsigned max_ms)
{
	uint64_t until = clock_now_ms() + max_ms;

	if (http_set == NULL)
		return;
	for (unsigned i = 0; i < worker_count(); i++)
		worker_post(worker_get(i), shutdown_task, NULL, 0);
	while (conn_set_count(http_set) > 0 && clock_now_ms() < until)
		usleep(20000);
	if (conn_set_count(http_set) == 0)
		return;
	for (unsigned i = 0; i < worker_count(); i++)
		worker_post(worker_get(i), end_task, NULL, 0);
	until = clock_now_ms() + 1000;
	while (conn_set_count(http_set) > 0 && clock_now_ms() < until)
		usleep(5000);
}

void
http_free(void)
{
	struct routes *t = __atomic_load_n(&routes, __ATOMIC_ACQUIRE);

	while (t != NULL) {
		struct routes *older = t->retired;

		routes_free(t);
		t = older;
	}
	routes = NULL;
	memset(rate_slots, 0, sizeof(rate_slots));
	conn_set_free(&http_set);
}

unsigned long
http_connection_count(void)
{
	return conn_set_count(http_set);
}

/* ---------------------------------------------------------------- */
/* The request's accessors.                                           */

const char *
http_req_method(const struct http_req *r)
{
	return r->method;
}

const char *
http_req_path(const struct http_req *r)
{
	return r->path;
}

const char *
http_req_query(const struct http_req *r)
{
	return r->query;
}

const char *
http_req_header(const struct http_req *r, const char *name)
{
	for (unsigned i = 0; i < r->nh; i++)
		if (strcasecmp(r->h[i].name, name) == 0)
			return r->h[i].value;
	return NULL;
}

const char *
http_req_body(const struct http_req *r, size_t *len_r)
{
	if (r->body == NULL) {
		*len_r = 0;
		return "";
	}
	*len_r = evbuffer_get_length(r->body);
	return (const char *)evbuffer_pullup(r->body, -1);
}

const struct sockaddr *
http_req_client(const struct http_req *r)
{
	return (const struct sockaddr *)&r->client;
}

int
http_req_secure(const struct http_req *r)
{
	return conn_ssl(r->hc->c) != NULL || r->hc->l->secure;
}

const char *
http_req_host(const struct http_req *r)
{
	return r->host;
}

const struct conf *
http_req_conf(const struct http_req *r)
{
	return r->hc->conf;
}

const struct conf_listen *
http_req_listener(const struct http_req *r)
{
	return r->hc->l;
}

struct worker *
http_req_worker(const struct http_req *r)
{
	return r->hc->w;
}

const char *
http_req_base_url(struct http_req *r)
{
	const char *host = http_req_header(r, "Host");
	size_t n;

	if (r->hc->conf->public_base_url != NULL)
		return r->hc->conf->public_base_url;
	if (r->base_url != NULL)
		return r->base_url;
	/* The Host header as the client gave it (with its port), if it
	 * is a plain authority: nothing that could break out of a URL. */
	if (host == NULL || host[0] == '\0' || (n = strlen(host)) > 255 ||
	    strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != n)
		return NULL;
	if (asprintf(&r->base_url, "%s://%s", http_req_secure(r) ? "https" : "http", host) < 0) {
		r->base_url = NULL;
		return NULL;
	}
	return r->base_url;
}

/* ---------------------------------------------------------------- */
/* Answers.                                                           */

void
http_respond(struct http_req *r, int status, const char *content_type, const char *body,
    size_t len, const char *headers)
{
	struct http_conn *hc = r->hc;

	if (r->answered)
		return;
	r->answered = 1;
	if (in_handler == r)
		in_handler = NULL;
	/* RFC 9110 9.3.2: HEAD gets the headers of GET, no content. */
	write_response(hc, status, content_type, body, len, headers,
	    r->keep_alive && !hc->closing, strcmp(r->method, "HEAD") == 0);
	req_done(r);
}

void
http_error(struct http_req *r, int status, const char *text)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "%s\n", text);

	http_respond(r, status, "text/plain; charset=utf-8", body, (size_t)n, NULL);
}

const char *
http_cors(const struct http_req *r, const char *methods)
{
	static __thread char buf[256];

	if (http_req_header(r, "Origin") == NULL)
		return "";
	snprintf(buf, sizeof(buf), "Access-Control-Allow-Origin: *\r\n"
	    "Access-Control-Allow-Methods: %s\r\n"
	    "Access-Control-Allow-Headers: Content-Type\r\n"
	    "Access-Control-Max-Age: 86400\r\n", methods);
	return buf;
}

void
http_req_hold(struct http_req *r, void (*gone)(struct http_req *r, void *arg), void *arg)
{
	if (in_handler == r)
		in_handler = NULL;
	r->held = 1;
	r->gone = gone;
	r->gone_arg = arg;
}

void
http_req_write(struct http_req *r, const char *s, size_t len)
{
	evbuffer_add(conn_out(r->hc->c), s, len);
}

struct conn *
http_req_take(struct http_req *r)
{
	struct http_conn *hc = r->hc;
	struct conn *c = hc->c;

	if (in_handler == r)
		in_handler = NULL;
	conn_cancel_timer(c);
	if (hc->paused)
		conn_resume(c);
	hc->c = NULL;
	hc->req = NULL;
	req_free(r);
	__atomic_add_fetch(&taken, 1, __ATOMIC_RELAXED);
	/* The caller conn_moves c at once, before anything calls back. */
	free(hc->head);
	conf_unref(hc->conf);
	free(hc);
	return c;
}
