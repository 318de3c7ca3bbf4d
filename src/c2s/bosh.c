/*
 * bosh.c - BOSH (XEP-0124) carrying XMPP (XEP-0206) at /http-bind: a
 * client session over a series of HTTP requests.
 *
 * A BOSH session is a c2s connection (c2s_new_framed) whose xstream runs in
 * framed mode with this file as its framer: every child of a request's
 * <body/> is one message in (a restart is an <open/>, a terminate a
 * <close/>), every element the stream writes is one message out, queued
 * here until a request is there to carry it. So SASL, binding, the roster
 * and every module work unchanged.
 *
 * A session lives on the worker that created it; its sid starts with that
 * worker's number. A request that comes in on another worker is copied and
 * posted there (worker_post); the answer is posted back to the request's
 * worker, where a handle (struct bosh_req) says whether its connection is
 * still there (http_req_hold's gone callback clears it). Nothing but the
 * inboxes is shared.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s/bosh_rid.h"
#include "c2s/c2s_int.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/http.h"
#include "net/listener.h"
#include "stream/xstream.h"
#include "xml/stream.h"
#include "xml/xml.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"

#define NS_HTTPBIND "http://jabber.org/protocol/httpbind"
#define NS_XBOSH "urn:xmpp:xbosh"
#define BOSH_MAX_HOLD 4           /* the most 'hold' we grant (XEP-0124 7.1) */
#define BOSH_MAX_REQUESTS (BOSH_MAX_HOLD + 1)
#define BOSH_POLLING 2            /* s between polls (XEP-0124 7.1 'polling') */
#define BOSH_CORS "POST, OPTIONS"

/* A request, on its own worker: answered there once the session is done
 * with it. r is NULL once its connection has gone. */
struct bosh_req {
	struct http_req *r;
	struct worker *w;
};

/* An answer on its way to the request's worker. */
struct bosh_answer {
	struct bosh_req *h;
	int status;
	size_t len;
	char body[];
};

/* A request on its way to the session's worker. */
struct bosh_task {
	struct bosh_req *h;
	const struct conf_listen *l;
	struct sockaddr_storage sa;
	int secure;
	size_t len;
	char body[];
};

/* A request of a session, held or waiting for an earlier rid. */
struct bosh_slot {
	struct bosh_req *h;
	uint64_t rid;
	uint64_t deadline_ms;         /* held: answered empty then */
	xml_elem *body;               /* waiting for its turn: the body, else NULL */
};

struct bosh_cached {
	uint64_t rid;
	char *body;                   /* the response as sent, or NULL */
	size_t len;
};

struct bosh {
	struct bosh *next;            /* in the worker's list */
	struct worker *w;
	struct xstream *xs;           /* the c2s stream; NULL once it closed */
	char sid[40];
	char authid[65];
	char *host;
	unsigned wait, hold, requests, inactivity, maxpause;
	uint64_t next_rid;            /* the rid to process next */
	uint64_t idle_since_ms;       /* no request held since then */
	uint64_t inactivity_ms;       /* the current allowance (a pause raises it) */
	struct bosh_slot held[BOSH_MAX_REQUESTS];
	unsigned nheld;
	struct bosh_slot early[BOSH_MAX_REQUESTS]; /* rids after a gap */
	unsigned nearly;
	struct bosh_cached cache[BOSH_MAX_REQUESTS]; /* the last 'requests' answers */
	struct evbuffer *out;         /* elements for the client */
	struct event *timer;          /* the earliest wait or the inactivity */
	struct event *flush;          /* output is waiting for a held request */
	const char *condition;        /* terminate condition, or NULL */
	unsigned ended : 1;           /* the stream is over: answers are terminate */
	unsigned creating : 1;        /* inside the creation request */
};

/* Each worker's sessions (touched only on that worker). */
static struct bosh **bosh_lists;
static unsigned bosh_nworkers;

static void bosh_request(struct http_req *r, void *arg);
static void framer_send(void *arg, const char *p, size_t len);
static void framer_close(void *arg);
static size_t framer_queued(void *arg);

static const struct xstream_framer bosh_framer = { framer_send, framer_close, framer_queued };

int
c2s_bosh_init(unsigned nworkers)
{
	bosh_lists = calloc(nworkers, sizeof(*bosh_lists));
	if (bosh_lists == NULL)
		return -1;
	bosh_nworkers = nworkers;
	return http_route_add("/http-bind", bosh_request, NULL, NULL);
}

/* After the workers have stopped: the sessions left (ended by the
 * shutdown, or never asked again) and the requests they held. */
void
c2s_bosh_free(void)
{
	for (unsigned i = 0; bosh_lists != NULL && i < bosh_nworkers; i++) {
		struct bosh *b, *next;

		for (b = bosh_lists[i]; b != NULL; b = next) {
			next = b->next;
			for (unsigned j = 0; j < b->nheld; j++)
				free(b->held[j].h);
			for (unsigned j = 0; j < b->nearly; j++) {
				free(b->early[j].h);
				xml_elem_unref(b->early[j].body);
			}
			for (unsigned j = 0; j < BOSH_MAX_REQUESTS; j++)
				free(b->cache[j].body);
			if (b->xs != NULL)
				b->xs->framer_arg = NULL;
			evbuffer_free(b->out);
			event_free(b->timer);
			event_free(b->flush);
			free(b->host);
			free(b);
		}
	}
	free(bosh_lists);
	bosh_lists = NULL;
}

/* ---------------------------------------------------------------- */
/* Answers, on the request's worker.                                  */

static void
answer_task(struct worker *w, void *a, uint64_t b)
{
	struct bosh_answer *ans = a;
	struct bosh_req *h = ans->h;

	(void)w;
	(void)b;
	if (h->r != NULL) {
		char headers[512];

		snprintf(headers, sizeof(headers), "Cache-Control: no-store\r\n%s",
		    http_cors(h->r, BOSH_CORS));
		http_respond(h->r, ans->status, "text/xml; charset=utf-8", ans->body, ans->len,
		    headers);
	}
	free(h);
	free(ans);
}

/* Sends the answer to h's worker (queued even when it is this one: the
 * request is answered from the loop, never inside the session's code). */
static void
answer(struct bosh_req *h, int status, const char *body, size_t len)
{
	struct bosh_answer *ans = malloc(sizeof(*ans) + len + 1);

	if (ans == NULL) {
		/* The request is left to its connection's timeouts. */
		return;
	}
	ans->h = h;
	ans->status = status;
	ans->len = len;
	memcpy(ans->body, body, len);
	ans->body[len] = '\0';
	worker_post(h->w, answer_task, ans, 0);
}

/* XEP-0124 17: a terminate with condition (no session, or the end). */
static void
answer_terminate(struct bosh_req *h, int status, const char *condition)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "<body xmlns='" NS_HTTPBIND "' type='terminate'%s%s%s/>",
	    condition != NULL ? " condition='" : "", condition != NULL ? condition : "",
	    condition != NULL ? "'" : "");

	answer(h, status, body, (size_t)n);
}

static void
req_gone(struct http_req *r, void *arg)
{
	struct bosh_req *h = arg;

	(void)r;
	h->r = NULL;
}

/* ---------------------------------------------------------------- */
/* The session: its list, its answers, its timer.                     */

static struct bosh *
bosh_find(struct worker *w, const char *sid)
{
	for (struct bosh *b = bosh_lists[worker_id(w)]; b != NULL; b = b->next)
		if (strcmp(b->sid, sid) == 0)
			return b;
	return NULL;
}

static void
bosh_free(struct bosh *b)
{
	struct bosh **pp;

	for (pp = &bosh_lists[worker_id(b->w)]; *pp != NULL; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	/* Every request still here gets its answer: the session is gone. */
	for (unsigned i = 0; i < b->nheld; i++)
		answer_terminate(b->held[i].h, 200, b->condition);
	for (unsigned i = 0; i < b->nearly; i++) {
		answer_terminate(b->early[i].h, 200, "item-not-found");
		xml_elem_unref(b->early[i].body);
	}
	for (unsigned i = 0; i < BOSH_MAX_REQUESTS; i++)
		free(b->cache[i].body);
	if (b->xs != NULL) {
		struct xstream *xs = b->xs;

		/* The stream ends with the session (framer_close clears
		 * b->xs; nothing of b is touched after). */
		b->xs = NULL;
		xs->framer_arg = NULL;
		xstream_close(xs);
	}
	evbuffer_free(b->out);
	event_free(b->timer);
	event_free(b->flush);
	free(b->host);
	log_debug(b->sid, "BOSH session over");
	free(b);
}

/* The response body for rid: what is queued, terminate once the stream
 * has ended; kept for a repeated rid (XEP-0124 14.3). */
static void
respond(struct bosh *b, struct bosh_req *h, uint64_t rid, const char *attrs)
{
	struct evbuffer *out = evbuffer_new();
	struct bosh_cached *k = &b->cache[rid % b->requests];
	size_t n;

	if (out == NULL) {
		answer_terminate(h, 500, "internal-server-error");
		return;
	}
	evbuffer_add_printf(out, "<body xmlns='" NS_HTTPBIND "' xmlns:stream='" XML_NS_STREAM "'%s",
	    attrs != NULL ? attrs : "");
	if (b->ended)
		evbuffer_add_printf(out, " type='terminate'%s%s%s", b->condition ? " condition='" : "",
		    b->condition ? b->condition : "", b->condition ? "'" : "");
	if (evbuffer_get_length(b->out) == 0) {
		evbuffer_add(out, "/>", 2);
	} else {
		evbuffer_add(out, ">", 1);
		evbuffer_add_buffer(out, b->out);
		evbuffer_add(out, "</body>", 7);
	}
	n = evbuffer_get_length(out);
	free(k->body);
	k->rid = rid;
	k->len = n;
	k->body = malloc(n);
	if (k->body != NULL)
		memcpy(k->body, evbuffer_pullup(out, -1), n);
	answer(h, 200, (const char *)evbuffer_pullup(out, -1), n);
	evbuffer_free(out);
}

static void
rearm(struct bosh *b)
{
	uint64_t now = clock_now_ms(), at;
	struct timeval tv;

	if (b->nheld > 0) {
		at = b->held[0].deadline_ms;
		for (unsigned i = 1; i < b->nheld; i++)
			if (b->held[i].deadline_ms < at)
				at = b->held[i].deadline_ms;
	} else {
		/* XEP-0124 7.1 'inactivity': counted from the last answer
		 * while no request is held. */
		at = b->idle_since_ms + b->inactivity_ms;
	}
	at = at > now ? at - now : 0;
	tv.tv_sec = (time_t)(at / 1000);
	tv.tv_usec = (suseconds_t)((at % 1000) * 1000);
	evtimer_add(b->timer, &tv);
}

/* Answers the oldest held request with what is queued. */
static void
answer_oldest(struct bosh *b)
{
	struct bosh_slot s = b->held[0];

	memmove(&b->held[0], &b->held[1], (b->nheld - 1) * sizeof(b->held[0]));
	b->nheld--;
	if (b->nheld == 0)
		b->idle_since_ms = clock_now_ms();
	respond(b, s.h, s.rid, NULL);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bosh *b = arg;

	(void)fd;
	(void)what;
	if (b->ended) {
		/* Everything held hears the end: the first with what was
		 * left to say. */
		while (b->nheld > 0)
			answer_oldest(b);
		rearm(b);
		return;
	}
	if (b->nheld > 0 && evbuffer_get_length(b->out) > 0)
		answer_oldest(b);
	rearm(b);
}

static void
schedule_flush(struct bosh *b)
{
	/* At the end of this loop iteration: everything the stream writes
	 * for one stanza (a bind result and more) goes in one answer. */
	if (!b->creating)
		event_active(b->flush, 0, 0);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bosh *b = arg;
	uint64_t now = clock_now_ms();

	(void)fd;
	(void)what;
	if (b->nheld == 0) {
		if (now >= b->idle_since_ms + b->inactivity_ms) {
			/* XEP-0124 7.1: the client is gone; its session ends
			 * as a dropped connection does (unavailable presence,
			 * RFC 6121 4.5.3.2). */
			log_info(b->sid, "BOSH session inactive for %" PRIu64 " ms: ending it",
			    now - b->idle_since_ms);
			b->condition = "item-not-found";
			bosh_free(b);
			return;
		}
	} else {
		/* XEP-0124 7.1 'wait': a held request with nothing to
		 * carry is answered empty in time. */
		for (unsigned i = 0; i < b->nheld; i++)
			if (b->held[i].deadline_ms <= now + 5) {
				struct bosh_slot s = b->held[i];

				memmove(&b->held[i], &b->held[i + 1],
				    (b->nheld - i - 1) * sizeof(b->held[0]));
				b->nheld--;
				i--;
				if (b->nheld == 0)
					b->idle_since_ms = now;
				respond(b, s.h, s.rid, NULL);
			}
	}
	rearm(b);
}

/* ---------------------------------------------------------------- */
/* The framer: the stream's side.                                     */

static void
framer_send(void *arg, const char *p, size_t len)
{
	struct bosh *b = arg;

	if (b == NULL || b->ended)
		return;
	if (len >= 5 && memcmp(p, "<open", 5) == 0) {
		/* XEP-0206 5: the stream header's attributes are the
		 * session response's; only its id is kept (authid). */
		snprintf(b->authid, sizeof(b->authid), "%s", b->xs->id);
		return;
	}
	if (len >= 6 && memcmp(p, "<close", 6) == 0) {
		/* XEP-0206 7: the end of the stream is a terminate. */
		b->ended = 1;
		schedule_flush(b);
		return;
	}
	if (len >= 13 && memcmp(p, "<stream:error", 13) == 0)
		/* XEP-0206 7: a stream error goes in a terminate body
		 * with condition remote-stream-error. */
		b->condition = "remote-stream-error";
	evbuffer_add(b->out, p, len);
	schedule_flush(b);
}

static void
framer_close(void *arg)
{
	struct bosh *b = arg;

	if (b == NULL)
		return;
	/* The c2s connection frees the stream once it has ended: not
	 * touched from here on. */
	b->xs = NULL;
	b->ended = 1;
	schedule_flush(b);
}

static size_t
framer_queued(void *arg)
{
	struct bosh *b = arg;

	return b != NULL ? evbuffer_get_length(b->out) : 0;
}

/* ---------------------------------------------------------------- */
/* Requests, on the session's worker.                                 */

/* The <body/> of a request: parsed as the only element of a stream. */
struct parse {
	xml_elem *body;
	int error;
};

static void
p_start(void *ud, const char *ns, const char **attrs)
{
	(void)ud;
	(void)ns;
	(void)attrs;
}

static void
p_element(void *ud, xml_elem *e)
{
	struct parse *ps = ud;

	if (ps->body != NULL) {
		ps->error = 1;
		xml_elem_unref(e);
		return;
	}
	ps->body = e;
}

static void
p_end(void *ud)
{
	(void)ud;
}

static void
p_error(void *ud, const char *condition, const char *text)
{
	struct parse *ps = ud;

	(void)condition;
	(void)text;
	ps->error = 1;
}

static const struct xml_stream_cb parse_cb = { p_start, p_element, p_end, p_error };

/* The body element, or NULL for malformed XML or not a BOSH <body/>
 * (XEP-0124 17: bad-request). */
static xml_elem *
parse_body(const char *p, size_t len, const struct conf_listen *l)
{
	static const char head[] = "<stream:stream xmlns:stream='" XML_NS_STREAM "'>";
	static const char tail[] = "</stream:stream>";
	const struct conf *conf = conf_local();
	struct xml_stream_limits lim = { l->max_stanza_size, conf->max_xml_depth + 1,
	    conf->max_xml_attrs };
	struct parse ps = { NULL, 0 };
	xml_stream *xp = xml_stream_new(&parse_cb, &ps, &lim);
	size_t used;

	if (xp == NULL)
		return NULL;
	if (xml_stream_feed(xp, head, sizeof(head) - 1, &used) < 0 ||
	    xml_stream_feed(xp, p, len, &used) < 0 ||
	    xml_stream_feed(xp, tail, sizeof(tail) - 1, &used) < 0)
		ps.error = 1;
	xml_stream_free(&xp);
	if (ps.body != NULL && (ps.error || xml_elem_ns(ps.body) == NULL ||
	    strcmp(xml_elem_ns(ps.body), NS_HTTPBIND) != 0 ||
	    strcmp(xml_elem_name(ps.body), "body") != 0)) {
		xml_elem_unref(ps.body);
		ps.body = NULL;
	}
	return ps.body;
}

static unsigned
attr_uint(const xml_elem *e, const char *name, unsigned dflt)
{
	const char *v = xml_attr_get(e, name);
	char *end;
	unsigned long n;

	if (v == NULL)
		return dflt;
	n = strtoul(v, &end, 10);
	return end != v && *end == '\0' && n < 1000000 ? (unsigned)n : dflt;
}

/* 0 and the rid, or -1 (absent or not a number: XEP-0124 7.1, at most
 * 2^53). */
static int
body_rid(const xml_elem *e, uint64_t *rid_r)
{
	const char *v = xml_attr_get(e, "rid");
	char *end;

	if (v == NULL || *v < '0' || *v > '9')
		return -1;
	*rid_r = strtoull(v, &end, 10);
	return *end == '\0' && *rid_r < (1ULL << 53) ? 0 : -1;
}

/* Feeds the body's children (and its restart or terminate) to the stream. */
static void
feed_body(struct bosh *b, xml_elem *body)
{
	struct evbuffer *m = evbuffer_new();
	const char *restart = xml_attr_get(body, "{" NS_XBOSH "}restart");
	const char *type = xml_attr_get(body, "type");

	if (m == NULL || b->xs == NULL) {
		if (m != NULL)
			evbuffer_free(m);
		return;
	}
	if (restart != NULL && strcmp(restart, "true") == 0) {
		/* XEP-0206 5: a restart is a new stream header, to the same
		 * host. */
		evbuffer_add_printf(m, "<open xmlns='" NS_FRAMING "' to='");
		xml_escape_attr(m, b->host);
		evbuffer_add_printf(m, "' version='1.0'/>");
		xstream_frame_in(b->xs, (const char *)evbuffer_pullup(m, -1),
		    evbuffer_get_length(m));
		evbuffer_drain(m, evbuffer_get_length(m));
	}
	for (xml_elem *c = xml_first_child(body); c != NULL; c = xml_next_sibling(c)) {
		/* Each child one message, fully qualified (XEP-0206 8:
		 * stanzas declare jabber:client). */
		xml_serialize_qualified(c, NULL, m);
		xstream_frame_in(b->xs, (const char *)evbuffer_pullup(m, -1),
		    evbuffer_get_length(m));
		evbuffer_drain(m, evbuffer_get_length(m));
	}
	if (type != NULL && strcmp(type, "terminate") == 0)
		/* XEP-0124 12: the client ends the session. */
		xstream_frame_in(b->xs, "<close xmlns='" NS_FRAMING "'/>", sizeof(NS_FRAMING) + 15);
	evbuffer_free(m);
	xstream_frames_fed(b->xs);
}

/* A request whose turn has come (rids in order, XEP-0124 14.2). */
static void
process(struct bosh *b, struct bosh_req *h, uint64_t rid, xml_elem *body)
{
	const char *type = xml_attr_get(body, "type");
	unsigned pause = attr_uint(body, "pause", 0);

	b->next_rid = rid + 1;
	feed_body(b, body);
	if (type != NULL && strcmp(type, "terminate") == 0 && !b->ended) {
		/* The stream's </close> has ended it, or will. */
		b->ended = 1;
	}
	if (pause > 0 && pause <= b->maxpause) {
		/* XEP-0124 10: every held request is answered now; the
		 * session waits pause seconds for the next one. */
		b->inactivity_ms = (uint64_t)pause * 1000;
		while (b->nheld > 0)
			answer_oldest(b);
		b->idle_since_ms = clock_now_ms();
		respond(b, h, rid, NULL);
		rearm(b);
		return;
	}
	b->inactivity_ms = (uint64_t)b->inactivity * 1000;
	b->held[b->nheld].h = h;
	b->held[b->nheld].rid = rid;
	b->held[b->nheld].deadline_ms = clock_now_ms() + (uint64_t)b->wait * 1000;
	b->held[b->nheld].body = NULL;
	b->nheld++;
	/* XEP-0124 11: at most 'hold' requests are held; the oldest is
	 * answered when one more comes. */
	while (b->nheld > b->hold)
		answer_oldest(b);
	if (evbuffer_get_length(b->out) > 0 || b->ended)
		schedule_flush(b);
	rearm(b);
}

/* XEP-0124 14.3: a request the session cannot take ends it. */
static void
end_item_not_found(struct bosh *b, struct bosh_req *h)
{
	answer_terminate(h, 200, "item-not-found");
	b->condition = "item-not-found";
	bosh_free(b);
}

/* A request for session b (on its worker). */
static void
session_request(struct bosh *b, struct bosh_req *h, xml_elem *body)
{
	uint64_t rid;

	if (body_rid(body, &rid) < 0) {
		answer_terminate(h, 400, "bad-request");
		return;
	}
	switch (bosh_rid_classify(rid, b->next_rid, b->requests)) {
	case BOSH_RID_REPEAT: {
		struct bosh_cached *k = &b->cache[rid % b->requests];

		/* XEP-0124 14.3: a repeated rid gets the same answer, while
		 * it is one of the last 'requests'. */
		if (k->body != NULL && k->rid == rid) {
			answer(h, 200, k->body, k->len);
			return;
		}
	}
		/* FALLTHROUGH */
	case BOSH_RID_OLD:
		for (unsigned i = 0; i < b->nheld; i++)
			if (b->held[i].rid == rid) {
				/* Still held: the client gave up on it; the new
				 * request takes its place. */
				answer_terminate(b->held[i].h, 200, "item-not-found");
				b->held[i].h = h;
				return;
			}
		end_item_not_found(b, h);
		return;
	case BOSH_RID_BEYOND:
		/* XEP-0124 14.3: beyond the window the session is over. */
		end_item_not_found(b, h);
		return;
	case BOSH_RID_EARLY:
		if (b->ended) {
			end_item_not_found(b, h);
			return;
		}
		/* XEP-0124 14.2: it waits for the ones before it. */
		for (unsigned i = 0; i < b->nearly; i++)
			if (b->early[i].rid == rid) {
				answer_terminate(h, 200, "item-not-found");
				return;
			}
		b->early[b->nearly].h = h;
		b->early[b->nearly].rid = rid;
		b->early[b->nearly].body = xml_elem_ref(body);
		b->nearly++;
		return;
	case BOSH_RID_NEXT:
		if (b->ended) {
			end_item_not_found(b, h);
			return;
		}
		break;
	}
	process(b, h, rid, body);
	/* Then those that waited for it, in order. */
	for (;;) {
		unsigned i;

		for (i = 0; i < b->nearly && b->early[i].rid != b->next_rid; i++)
			;
		if (i == b->nearly || b->ended)
			break;
		{
			struct bosh_slot s = b->early[i];

			b->early[i] = b->early[--b->nearly];
			process(b, s.h, s.rid, s.body);
			xml_elem_unref(s.body);
		}
	}
}

/* XEP-0124 7.1 'ver': the lower of the client's and ours (1.11). */
static const char *
ver_lower(const char *ver)
{
	unsigned major, minor;

	if (ver == NULL || sscanf(ver, "%u.%u", &major, &minor) != 2 || strspn(ver, "0123456789.") !=
	    strlen(ver) || major > 1 || (major == 1 && minor >= 11))
		return "1.11";
	return ver;
}

/* XEP-0124 7.1, XEP-0206 4: a new session. */
static void
create_session(struct worker *w, struct bosh_task *t, xml_elem *body)
{
	const struct conf *conf = conf_local();
	const char *to = xml_attr_get(body, "to");
	const char *ver = xml_attr_get(body, "ver");
	unsigned char rnd[16];
	struct evbuffer *attrs;
	struct bosh *b;
	uint64_t rid;
	char *host;

	if (body_rid(body, &rid) < 0 || to == NULL) {
		answer_terminate(t->h, 400, "bad-request");
		return;
	}
	if ((host = jid_nameprep(to, strlen(to))) == NULL || !conf_is_local_host(conf, host)) {
		free(host);
		answer_terminate(t->h, 200, "host-unknown");
		return;
	}
	b = calloc(1, sizeof(*b));
	if (b == NULL || (b->out = evbuffer_new()) == NULL ||
	    (b->timer = evtimer_new(worker_base(w), timer_cb, b)) == NULL ||
	    (b->flush = event_new(worker_base(w), -1, 0, flush_cb, b)) == NULL) {
		free(host);
		goto fail;
	}
	b->w = w;
	b->host = host;
	/* The worker first: a request on another worker finds it. */
	RAND_bytes(rnd, sizeof(rnd));
	snprintf(b->sid, sizeof(b->sid), "%02x", worker_id(w));
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(b->sid + 2 + 2 * i, 3, "%02x", rnd[i]);
	/* XEP-0124 7.1: ours are at most the client's. */
	b->wait = attr_uint(body, "wait", conf->bosh_max_wait);
	if (b->wait > conf->bosh_max_wait)
		b->wait = conf->bosh_max_wait;
	b->hold = attr_uint(body, "hold", 1);
	if (b->hold > BOSH_MAX_HOLD)
		b->hold = BOSH_MAX_HOLD;
	b->requests = b->hold + 1;
	b->inactivity = conf->bosh_max_inactivity;
	b->maxpause = conf->bosh_max_pause;
	b->inactivity_ms = (uint64_t)b->inactivity * 1000;
	b->idle_since_ms = clock_now_ms();
	b->next_rid = rid + 1;
	b->creating = 1;
	b->xs = c2s_new_framed(w, t->l, (struct sockaddr *)&t->sa,
	    t->sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
	    t->secure, &bosh_framer, b, "bosh");
	if (b->xs == NULL)
		goto fail;
	b->next = bosh_lists[worker_id(w)];
	bosh_lists[worker_id(w)] = b;
	log_debug(b->sid, "BOSH session for %s", host);
	{
		struct xstream *xs = b->xs;
		char open[512];
		int n = snprintf(open, sizeof(open), "<open xmlns='" NS_FRAMING "' to='%s'"
		    " version='1.0'/>", host);

		/* XEP-0206 4: the session starts the stream; its header and
		 * features come back at once. */
		xstream_frame_in(xs, open, (size_t)n);
		xstream_frames_fed(xs);
	}
	b->creating = 0;
	attrs = evbuffer_new();
	if (attrs == NULL) {
		bosh_free(b);
		answer_terminate(t->h, 500, "internal-server-error");
		return;
	}
	/* XEP-0124 7.1 and XEP-0206 4: the session's parameters. */
	evbuffer_add_printf(attrs, " sid='%s' wait='%u' hold='%u' requests='%u' inactivity='%u'"
	    " polling='%u' maxpause='%u' ver='%s' from='%s' authid='%s' secure='%s'"
	    " xmlns:xmpp='" NS_XBOSH "' xmpp:version='1.0' xmpp:restartlogic='true'",
	    b->sid, b->wait, b->hold, b->requests, b->inactivity, BOSH_POLLING, b->maxpause,
	    ver_lower(ver), host, b->authid,
	    t->secure ? "true" : "false");
	evbuffer_add(attrs, "", 1);
	respond(b, t->h, rid, (const char *)evbuffer_pullup(attrs, -1));
	evbuffer_free(attrs);
	rearm(b);
	if (b->ended)
		schedule_flush(b);
	return;
fail:
	if (b != NULL) {
		if (b->out != NULL)
			evbuffer_free(b->out);
		if (b->timer != NULL)
			event_free(b->timer);
		if (b->flush != NULL)
			event_free(b->flush);
		free(b->host);
		free(b);
	}
	answer_terminate(t->h, 503, "internal-server-error");
}

/* A request on the session's worker (posted from the request's, or the
 * same). */
static void
request_task(struct worker *w, void *a, uint64_t unused)
{
	struct bosh_task *t = a;
	xml_elem *body = parse_body(t->body, t->len, t->l);
	const char *sid;
	struct bosh *b;

	(void)unused;
	if (body == NULL) {
		/* XEP-0124 17: not a <body/> we can read. */
		answer_terminate(t->h, 400, "bad-request");
		goto out;
	}
	sid = xml_attr_get(body, "sid");
	if (sid == NULL)
		create_session(w, t, body);
	else if ((b = bosh_find(w, sid)) == NULL)
		/* XEP-0124 17.3 (19: HTTP 404 for old clients). */
		answer_terminate(t->h, 200, "item-not-found");
	else
		session_request(b, t->h, body);
	xml_elem_unref(body);
out:
	free(t);
}

/* The sid's worker: its first two hex digits; NULL if there is none. */
static struct worker *
sid_worker(const char *p, size_t len)
{
	const char *s = memmem(p, len, "sid=", 4);
	unsigned id;
	char q;

	if (s == NULL || (size_t)(s - p) + 8 > len)
		return NULL;
	q = s[4];
	if ((q != '\'' && q != '"') || sscanf(s + 5, "%2x", &id) != 1 || id >= bosh_nworkers)
		return NULL;
	return worker_get(id);
}

/* /http-bind on the request's worker. */
static void
bosh_request(struct http_req *r, void *arg)
{
	const char *method = http_req_method(r);
	struct bosh_task *t;
	struct bosh_req *h;
	struct worker *to;
	const char *p;
	size_t len;

	(void)arg;
	if (strcmp(method, "OPTIONS") == 0) {
		/* A browser's CORS preflight (a POST with text/xml). */
		http_respond(r, 200, "text/plain; charset=utf-8", "", 0, http_cors(r, BOSH_CORS));
		return;
	}
	if (strcmp(method, "POST") != 0) {
		http_respond(r, 405, "text/plain; charset=utf-8", "BOSH takes POST\n", 16,
		    "Allow: POST, OPTIONS\r\n");
		return;
	}
	p = http_req_body(r, &len);
	if (p == NULL)
		len = 0;
	/* The whole body is bounded by http_max_body_size (the HTTP layer)
	 * and by the listener's max_stanza_size (the parser). */
	t = malloc(sizeof(*t) + len + 1);
	h = malloc(sizeof(*h));
	if (t == NULL || h == NULL) {
		free(t);
		free(h);
		http_error(r, 503, "out of memory");
		return;
	}
	h->r = r;
	h->w = http_req_worker(r);
	t->h = h;
	t->l = http_req_listener(r);
	memset(&t->sa, 0, sizeof(t->sa));
	memcpy(&t->sa, http_req_client(r), http_req_client(r)->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	t->secure = http_req_secure(r);
	t->len = len;
	if (len > 0)
		memcpy(t->body, p, len);
	t->body[len] = '\0';
	http_req_hold(r, req_gone, h);
	/* A new session lives here; an existing one where its sid says. */
	to = sid_worker(t->body, len);
	worker_post(to != NULL ? to : h->w, request_task, t, 0);
}
