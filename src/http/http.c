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
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <inttypes.h>

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
/* File answers (http_respond_file): read into FILE_BUFS buffers of
 * FILE_CHUNK each, made once per answer, that the output queue refers to
 * (no copy, no allocation per piece); a buffer is read again once the
 * socket took it. A large file never sits in memory and a slow reader
 * costs FILE_BUFS * FILE_CHUNK. */
#define FILE_CHUNK 65536
#define FILE_BUFS 2

struct file_bufs {
	int refs;                    /* the connection's, and one per buffer queued */
	unsigned busy;               /* bit i: buf[i] is in the output queue */
	size_t pre;                  /* bytes of head in buf[0] before the first piece */
	unsigned char buf[FILE_BUFS][FILE_CHUNK];
};

/* ---------------------------------------------------------------- */
/* Routes.                                                            */

struct route {
	char *path;
	size_t len;
	int prefix;                  /* path ends in '/': a prefix */
	int stream;                  /* bodies are streamed (http_route_add_stream) */
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

static int
route_add(const char *path, http_handler_fn fn, void *arg, const void *owner, int stream)
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
	r->stream = stream;
	t->n++;
	routes_publish(t);
	return 0;
}

int
http_route_add(const char *path, http_handler_fn fn, void *arg, const void *owner)
{
	return route_add(path, fn, arg, owner, 0);
}

int
http_route_add_stream(const char *path, http_handler_fn fn, void *arg, const void *owner)
{
	return route_add(path, fn, arg, owner, 1);
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
	/* A streamed body (http_req_stream). */
	const struct http_body_ops *bops;
	void *bops_arg;
	const void *owner;            /* the owner of the route that took it */
	unsigned held : 1;
	unsigned keep_alive : 1;
	unsigned answered : 1;
	unsigned at_head : 1;         /* handled after its head, the body unread */
	unsigned body_ended : 1;      /* bops->end (or abort) has run */
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
	unsigned head_pause : 1;      /* the parser stopped after a streamed request's head */
	unsigned file_done : 1;       /* the whole file is queued: the request ends next */
	unsigned file_failed : 1;     /* reading the file failed: the connection ends next */
	unsigned filling : 1;
	int stream_status;            /* what bops->chunk refused the body with */
	/* The file being sent (http_respond_file), or -1. */
	int file_fd;
	uint64_t file_off, file_left;
	struct evbuffer_cb_entry *file_cb;
	struct file_bufs *fb;
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
static void req_done(struct http_req *r);
static void hc_tls_installed(void *arg) { (void)arg; }

static const struct conn_ops hc_ops = {
	hc_input, NULL, hc_tls_installed, NULL, hc_timeout, hc_end,
};

static void
req_free(struct http_req *r)
{
	if (r == NULL)
		return;
	/* A streamed body that did not reach its end: the handler cleans
	 * up (a partial file is removed). */
	if (r->bops != NULL && !r->body_ended) {
		r->body_ended = 1;
		if (r->bops->abort != NULL)
			r->bops->abort(r, r->bops_arg);
	}
	if (r->body != NULL)
		evbuffer_free(r->body);
	free(r->host);
	free(r->base_url);
	free(r);
}

static void
fbuf_unref(struct file_bufs *fb)
{
	if (--fb->refs == 0)
		free(fb);
}

/* The output queue is done with a buffer (sent, or the queue freed). */
static void
fbuf_cleanup(const void *data, size_t len, void *extra)
{
	struct file_bufs *fb = extra;

	(void)len;
	for (unsigned i = 0; i < FILE_BUFS; i++)
		if (data == fb->buf[i])
			fb->busy &= ~(1u << i);
	fbuf_unref(fb);
}

static void
file_stop(struct http_conn *hc)
{
	if (hc->fb != NULL)
		fbuf_unref(hc->fb);
	hc->fb = NULL;
	if (hc->file_cb != NULL && hc->c != NULL)
		evbuffer_remove_cb_entry(conn_out(hc->c), hc->file_cb);
	hc->file_cb = NULL;
	if (hc->file_fd >= 0)
		close(hc->file_fd);
	hc->file_fd = -1;
}

static void
hc_free(struct http_conn *hc)
{
	struct http_req *r = hc->req;

	file_stop(hc);
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
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
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
	const struct route *rt;
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
	r->keep_alive = http_should_keep_alive(p) != 0;
	/* A route that streams bodies sees the head of a request with a
	 * body first, and bounds the body itself: the parser stops here
	 * (hc_input calls the handler) and goes on if it takes the body. */
	if ((rt = route_find(r->path)) != NULL && rt->stream && !p->upgrade &&
	    ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0))) {
		r->at_head = 1;
		hc->head_pause = 1;
		http_parser_pause(p, 1);
		return 0;
	}
	/* RFC 9110 8.6: a declared body over the bound is refused before
	 * it is read. */
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > hc->conf->http_max_body_size) {
		hc->too_big = 2;
		return -1;
	}
	return 0;
}

static int
on_body(http_parser *p, const char *at, size_t n)
{
	struct http_conn *hc = p->data;
	struct http_req *r = hc->req;

	if (r->bops != NULL) {
		int st = r->bops->chunk(r, at, n, r->bops_arg);

		if (st != 0) {
			hc->stream_status = st >= 400 && st <= 599 ? st : 500;
			return -1;
		}
		/* A body that keeps coming keeps its request alive: the
		 * bound is on silence, not on the transfer's length. */
		arm_timer(hc);
		return 0;
	}
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
	if (r->bops != NULL) {
		/* A streamed body is complete: its handler answers. */
		r->body_ended = 1;
		in_handler = r;
		r->bops->end(r, r->bops_arg);
		if (in_handler == r) {
			in_handler = NULL;
			http_error(r, 500, "the handler did not answer");
		}
		in_handler = NULL;
		return;
	}
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
	r->owner = rt->owner;
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
			/* on_message_complete paused after this byte, or
			 * on_headers_complete did (a streamed body). */
			conn_drain(c, n);
			http_parser_pause(&hc->p, 0);
			if (hc->head_pause) {
				hc->head_pause = 0;
				dispatch(hc);
				/* The handler took the body (the loop goes on
				 * with it) or answered (the connection closes). */
				if (hc->req != NULL && hc->req->bops != NULL && !hc->closing)
					arm_timer(hc);
				continue;
			}
			dispatch(hc);
			return;          /* hc may be gone or taken */
		}
		if (err != HPE_OK || (hc->p.upgrade && !hc->busy)) {
			conn_drain(c, len);
			if (hc->stream_status != 0 && hc->req != NULL) {
				int st = hc->stream_status;

				hc->stream_status = 0;
				hc->req->keep_alive = 0;
				http_error(hc->req, st, status_text(st));
				return;
			}
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

	if (hc->file_done && hc->req != NULL) {
		hc->file_done = 0;
		req_done(hc->req);
		return;
	}
	if (hc->file_fd >= 0 || hc->file_failed) {
		/* The file could not be read on, or the client stopped
		 * reading it for http_request_timeout: the answer cannot be
		 * finished, only cut. */
		log_info(hc->tag, "file answer %s", hc->file_failed ? "failed" : "stalled");
		file_stop(hc);
		hc->closing = 1;
		conn_close(hc->c);
		return;
	}
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
	hc->file_fd = -1;
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
	/* Answered before its body was read (RFC 9110 15.5: a refusal of
	 * the head): the body is not read, the connection closes. */
	if (r->at_head && r->bops == NULL)
		r->keep_alive = 0;
	if (r->bops != NULL && !r->body_ended)
		r->keep_alive = 0;
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

/* ---------------------------------------------------------------- */
/* Streamed bodies and file answers (ABI 1.8).                        */

void
http_req_stream(struct http_req *r, const struct http_body_ops *ops, void *arg)
{
	struct http_conn *hc = r->hc;
	const char *expect;

	if (in_handler == r)
		in_handler = NULL;
	r->bops = ops;
	r->bops_arg = arg;
	if (!r->at_head) {
		/* The request is complete already (no body, or a route that
		 * buffers): what came is one chunk, then the end. */
		size_t len = 0;
		const char *body = http_req_body(r, &len);
		int st = len > 0 ? ops->chunk(r, body, len, arg) : 0;

		if (st != 0) {
			http_error(r, st >= 400 && st <= 599 ? st : 500,
			    status_text(st >= 400 && st <= 599 ? st : 500));
			return;
		}
		r->body_ended = 1;
		in_handler = r;
		ops->end(r, arg);
		if (in_handler == r) {
			in_handler = NULL;
			http_error(r, 500, "the handler did not answer");
		}
		return;
	}
	/* RFC 9110 10.1.1: the client waits for this before it sends the
	 * body; a refusal (any final status) is sent instead of it. */
	if ((expect = http_req_header(r, "Expect")) != NULL &&
	    strcasecmp(expect, "100-continue") == 0 && hc->p.http_minor >= 1)
		evbuffer_add(conn_out(hc->c), "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

/* Reads the file into the buffers the output queue does not hold; at
 * its end, the request ends from the loop (conn_set_timer 0: not from
 * inside the conn's write). */
static void
file_fill(struct http_conn *hc)
{
	struct evbuffer *out = conn_out(hc->c);
	struct file_bufs *fb = hc->fb;

	hc->filling = 1;
	while (hc->file_fd >= 0 && hc->file_left > 0) {
		unsigned i = 0;
		size_t pre, want;
		ssize_t got;

		while (i < FILE_BUFS && (fb->busy & (1u << i)))
			i++;
		if (i == FILE_BUFS)
			break;
		pre = i == 0 ? fb->pre : 0;
		fb->pre = 0;
		want = hc->file_left < FILE_CHUNK - pre ? (size_t)hc->file_left : FILE_CHUNK - pre;
		/* A bounded read (of the page cache, mostly) on the worker:
		 * doc/architecture.md, "The HTTP listener". */
		got = pread(hc->file_fd, fb->buf[i] + pre, want, (off_t)hc->file_off);
		if (got <= 0) {
			hc->file_failed = 1;
			break;
		}
		fb->busy |= 1u << i;
		fb->refs++;
		if (evbuffer_add_reference(out, fb->buf[i], pre + (size_t)got, fbuf_cleanup,
		    fb) < 0) {
			fb->busy &= ~(1u << i);
			fb->refs--;
			hc->file_failed = 1;
			break;
		}
		hc->file_off += (uint64_t)got;
		hc->file_left -= (uint64_t)got;
	}
	hc->filling = 0;
	if (hc->file_failed || hc->file_left == 0) {
		file_stop(hc);
		if (!hc->file_failed)
			hc->file_done = 1;
		conn_set_timer(hc->c, 0);
	} else {
		conn_set_timer(hc->c, 1000U * hc->conf->http_request_timeout);
	}
}

static void
file_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct http_conn *hc = arg;

	(void)buf;
	if (info->n_deleted == 0 || hc->filling || hc->file_fd < 0 || hc->fb == NULL ||
	    hc->fb->busy == (1u << FILE_BUFS) - 1)
		return;
	file_fill(hc);
}

/* RFC 9110 14.1.2: one byte range of a representation of size bytes:
 * 1 and *from_r, *len_r; 0 to send it all (no Range, one we ignore: not
 * bytes, several ranges, malformed); -1 unsatisfiable (416). */
static int
parse_range(const char *h, uint64_t size, uint64_t *from_r, uint64_t *len_r)
{
	const char *s;
	char *end;
	uint64_t a, b;

	if (h == NULL || strncasecmp(h, "bytes=", 6) != 0)
		return 0;
	s = h + 6;
	while (*s == ' ' || *s == '\t')
		s++;
	if (strchr(s, ',') != NULL)
		return 0;            /* several ranges: a server MAY ignore them (14.2) */
	if (*s == '-') {
		/* A suffix: the last N bytes. */
		if (!isdigit((unsigned char)s[1]))
			return 0;
		errno = 0;
		b = strtoull(s + 1, &end, 10);
		if (errno != 0 || (*end != '\0' && *end != ' ' && *end != '\t'))
			return 0;
		if (b == 0 || size == 0)
			return -1;
		if (b > size)
			b = size;
		*from_r = size - b;
		*len_r = b;
		return 1;
	}
	if (!isdigit((unsigned char)*s))
		return 0;
	errno = 0;
	a = strtoull(s, &end, 10);
	if (errno != 0 || *end != '-')
		return 0;
	s = end + 1;
	if (*s == '\0' || *s == ' ' || *s == '\t') {
		b = UINT64_MAX;
	} else {
		if (!isdigit((unsigned char)*s))
			return 0;
		b = strtoull(s, &end, 10);
		if (errno != 0 || (*end != '\0' && *end != ' ' && *end != '\t'))
			return 0;
		if (b < a)
			return 0;    /* invalid: ignored (14.1.1) */
	}
	if (a >= size)
		return -1;
	if (b >= size)
		b = size - 1;
	*from_r = a;
	*len_r = b - a + 1;
	return 1;
}

void
http_respond_file(struct http_req *r, int fd, uint64_t size, const char *content_type,
    const char *headers)
{
	struct http_conn *hc = r->hc;
	int head = strcmp(r->method, "HEAD") == 0, keep, range = 0;
	uint64_t from = 0, len = size;
	char *hdr = NULL;

	if (r->answered) {
		close(fd);
		return;
	}
	/* RFC 9110 14.2: Range is defined for GET only; with an If-Range we
	 * cannot evaluate (no validators are sent), the whole file. */
	if (strcmp(r->method, "GET") == 0 && http_req_header(r, "If-Range") == NULL)
		range = parse_range(http_req_header(r, "Range"), size, &from, &len);
	if (range < 0) {
		/* RFC 9110 15.5.17: 416 says the current length. */
		if (asprintf(&hdr, "Content-Range: bytes */%" PRIu64 "\r\n%s", size,
		    headers != NULL ? headers : "") < 0)
			hdr = NULL;
		close(fd);
		http_respond(r, 416, "text/plain; charset=utf-8", "range not satisfiable\n", 22,
		    hdr != NULL ? hdr : headers);
		free(hdr);
		return;
	}
	if (range > 0) {
		if (asprintf(&hdr, "Accept-Ranges: bytes\r\nContent-Range: bytes %" PRIu64 "-%"
		    PRIu64 "/%" PRIu64 "\r\n%s", from, from + len - 1, size,
		    headers != NULL ? headers : "") < 0)
			hdr = NULL;
	} else if (asprintf(&hdr, "Accept-Ranges: bytes\r\n%s", headers != NULL ? headers : "") < 0) {
		hdr = NULL;
	}
	if (hdr == NULL) {
		close(fd);
		http_error(r, 500, "out of memory");
		return;
	}
	r->answered = 1;
	if (in_handler == r)
		in_handler = NULL;
	keep = r->keep_alive && !hc->closing;
	write_response(hc, range > 0 ? 206 : 200, content_type, NULL, (size_t)len, hdr, keep, 1);
	free(hdr);
	if (head || len == 0) {
		close(fd);
		req_done(r);
		return;
	}
	if ((hc->fb = calloc(1, sizeof(*hc->fb))) == NULL) {
		/* The head went: the connection cannot answer otherwise. */
		close(fd);
		hc->file_failed = 1;
		conn_set_timer(hc->c, 0);
		return;
	}
	hc->fb->refs = 1;
	/* The head goes in front of the first piece, in its buffer: every
	 * piece then starts where a TLS record does (conn.c writes records
	 * of 16 KiB, a divisor of FILE_CHUNK), so none is copied to make
	 * one contiguous. */
	{
		struct evbuffer *out = conn_out(hc->c);
		size_t q = evbuffer_get_length(out);

		if (q > 0 && q <= FILE_CHUNK / 4 &&
		    evbuffer_remove(out, hc->fb->buf[0], q) == (int)q)
			hc->fb->pre = q;
	}
	hc->file_fd = fd;
	hc->file_off = from;
	hc->file_left = len;
	hc->file_failed = 0;
	hc->file_done = 0;
	hc->file_cb = evbuffer_add_cb(conn_out(hc->c), file_cb, hc);
	file_fill(hc);
}

/* Cuts the bodies being streamed to owner's routes on this worker: their
 * handler's code is about to go (a module unloads). */
static void
abort_owner_task(struct worker *w, void *a, uint64_t b)
{
	(void)b;
	for (struct conn *c = conn_set_first(http_set, w), *next; c != NULL; c = next) {
		struct http_conn *hc = conn_arg(c);
		struct http_req *r = hc->req;

		next = conn_next(c);
		if (r == NULL || r->bops == NULL || r->body_ended || r->owner != a)
			continue;
		r->body_ended = 1;
		if (r->bops->abort != NULL)
			r->bops->abort(r, r->bops_arg);
		r->bops = NULL;
		refuse(hc, 503, "the service is going away", NULL);
	}
}

void
http_abort_owner(const void *owner)
{
	if (http_set != NULL)
		worker_post_all(abort_owner_task, (void *)owner, 0);
}
