/*
 * t-stream-layer.c - the stream layer (src/stream/: conn.h, xstream.h)
 * without a network: an XML stream on one end of an in-process socket
 * pair (conn_pair, AF_UNIX), driven and read from the other end through a
 * bufferevent, as a peer would see it; the stream's conn does the same
 * I/O on it as on a TCP socket.
 *
 * One worker is made (worker_init) but its thread is never started: the
 * test runs the worker's event base itself, on the main thread, so that a
 * check sees everything a loop iteration did (the output is written at
 * the end of each iteration). The owner of the stream is a small class
 * of our own ("jabber:client", xml:lang 'en'), which records what it is
 * told (headers, elements, closing, the end) and answers a header with
 * ours, <starttls/> with <proceed/> and TLS, <auth/> with a restart.
 *
 * What is checked: the header we answer with (RFC 6120 4.7), a stanza
 * split anywhere arriving as one element, the restart (4.3.3), every
 * stream error's bytes and the header that comes first when none was
 * sent (4.9.1.2), the end tag (4.4), the negotiation deadline, the
 * send-queue bound (<resource-constraint/>), the lingering close (our
 * side shut down after the last bytes, input dropped, then the end),
 * pause and resume, the hold of a stanza's store work (RFC 6120 10.1:
 * nothing after it is handled before that work is done, even if the peer
 * has closed meanwhile), and STARTTLS's rule: whitespace before the first TLS
 * record is skipped, anything else closes the connection unread
 * (net/tls.h, CVE-2011-0411).
 */
#include "config.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/hold.h"
#include "core/log.h"
#include "core/worker.h"
#include "stream/conn.h"
#include "stream/xstream.h"
#include "xml/xml.h"
#include "xmpp/ns.h"

#define HDR_IN "<?xml version='1.0'?><stream:stream xmlns='jabber:client' " \
	"xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
#define ERR(cond) "<stream:error><" cond " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
#define TEXT(t) "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>" t "</text>"
#define ERR_END "</stream:error></stream:stream>"
#define MAX_ELEMS 32
#define WAIT_MS 5000            /* the longest a check waits (the grace is 2 s) */

static struct event_base *base;
static struct conn_set *set;
static SSL_CTX *server_ctx, *client_ctx;

/* ------------------------------------------------------------------ */
/* The owner of the stream                                             */
/* ------------------------------------------------------------------ */

struct tst {
	struct xstream xs;
	uint64_t last_input_ms;
	struct bufferevent *peer;     /* the other end */
	struct evbuffer *got;         /* everything the peer received */
	int peer_eof;                 /* the peer saw the end of our side */
	int freed;                    /* class.end came and xs was freed */
	enum conn_end how;
	int starts;                   /* stream headers the owner was given */
	char to[64], ns[64];
	int version1;
	int answer;                   /* answer a header with ours */
	char *elems[MAX_ELEMS];       /* the elements, serialized */
	int nelems;
	int closings;                 /* class.closing calls */
	int tls_installed;
	struct hold *work;            /* "store work" <hold/> started */
};

#define TST(x) ((struct tst *)((char *)(x) - offsetof(struct tst, xs)))

/* The test's streams, freed by teardown if a failed check left them. */
static struct tst *live[4];

static void
on_start(struct xstream *xs, const struct xstream_header *h)
{
	struct tst *t = TST(xs);

	t->starts++;
	snprintf(t->to, sizeof(t->to), "%s", h->to != NULL ? h->to : "");
	snprintf(t->ns, sizeof(t->ns), "%s", h->ns != NULL ? h->ns : "");
	t->version1 = h->version1;
	if (t->answer)
		xstream_send_header(xs, "example.com", NULL);
}

static void
on_element(struct xstream *xs, xml_elem *e)
{
	struct tst *t = TST(xs);
	const char *ns = xml_elem_ns(e);

	if (t->nelems < MAX_ELEMS)
		t->elems[t->nelems++] = xml_to_string(e, NS_CLIENT, NULL);
	if (ns != NULL && strcmp(ns, NS_TLS) == 0 && strcmp(xml_elem_name(e), "starttls") == 0) {
		xstream_puts(xs, "<proceed xmlns='" NS_TLS "'/>");
		xstream_starttls(xs, SSL_new(server_ctx), 0);
	} else if (strcmp(xml_elem_name(e), "hold") == 0) {
		/* As an asynchronous store operation does (core/astore.c). */
		t->work = hold_take();
		assert_non_null(t->work);
	} else if (strcmp(xml_elem_name(e), "auth") == 0) {
		/* As after SASL (RFC 6120 6.4.6). */
		xstream_puts(xs, "<success/>");
		xstream_restart(xs);
	}
}

static void
on_end(struct xstream *xs, enum conn_end how, const char *why)
{
	struct tst *t = TST(xs);

	t->how = how;
	t->freed = 1;
	xstream_free(xs);
}

static void
on_closing(struct xstream *xs)
{
	TST(xs)->closings++;
}

static void
on_tls(struct xstream *xs)
{
	TST(xs)->tls_installed++;
}

static const struct xstream_class test_class = {
	.ns = NS_CLIENT,
	.lang = "en",
	.stream_start = on_start,
	.element = on_element,
	.end = on_end,
	.closing = on_closing,
	.tls_installed = on_tls,
};

static void
peer_read_cb(struct bufferevent *bev, void *arg)
{
	struct tst *t = arg;

	evbuffer_add_buffer(t->got, bufferevent_get_input(bev));
}

static void
peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct tst *t = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		t->peer_eof = 1;
}

/* A stream on one end of a pair, the test at the other; sends are bounded
 * at max_send_queue bytes. */
static struct tst *
tst_new(size_t max_send_queue)
{
	struct tst *t = calloc(1, sizeof(*t));
	struct xstream_params p;
	int fd;

	assert_non_null(t);
	p.limits.max_stanza_size = 65536;
	p.limits.max_depth = 32;
	p.limits.max_attrs = 64;
	p.max_send_queue = max_send_queue;
	p.initiating = 0;
	p.last_input_ms = &t->last_input_ms;
	assert_int_equal(xstream_init(&t->xs, &test_class, set, worker_get(0), "test", &p), 0);
	assert_int_equal(conn_pair(t->xs.conn, &fd), 0);
	t->peer = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(t->peer);
	t->got = evbuffer_new();
	t->answer = 1;
	bufferevent_setcb(t->peer, peer_read_cb, NULL, peer_event_cb, t);
	bufferevent_enable(t->peer, EV_READ | EV_WRITE);
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i] == NULL) {
			live[i] = t;
			return t;
		}
	fail_msg("too many streams at once");
	return NULL;
}

static void
tst_release(struct tst *t)
{
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i] == t)
			live[i] = NULL;
	if (t->work != NULL) {
		struct hold *w = t->work;

		t->work = NULL;
		hold_release(w);
	}
	if (!t->freed)
		xstream_free(&t->xs);
	bufferevent_free(t->peer);
	evbuffer_free(t->got);
	for (int i = 0; i < t->nelems; i++)
		free(t->elems[i]);
	free(t);
}

/* The end of a test: its stream is gone, and the set is empty. */
static void
tst_free(struct tst *t)
{
	tst_release(t);
	assert_int_equal(conn_set_count(set), 0);
}

static int
teardown(void **state)
{
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i] != NULL)
			tst_release(live[i]);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Driving the loop                                                    */
/* ------------------------------------------------------------------ */

/* Runs the loop until nothing is left to do now (deferred callbacks,
 * the end-of-iteration flush, the pair's transfers). */
static void
settle(void)
{
	for (int i = 0; i < 20; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs the loop until *flag is set, WAIT_MS at most; returns *flag. */
static int
wait_for(const int *flag)
{
	uint64_t end = now_ms() + WAIT_MS;
	struct timespec ts = { 0, 5 * 1000 * 1000 };

	while (!*flag && now_ms() < end) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (!*flag)
			nanosleep(&ts, NULL);
	}
	return *flag;
}

static void
peer_send(struct tst *t, const char *s)
{
	bufferevent_write(t->peer, s, strlen(s));
	settle();
}

/* The peer's end of the stream: what it wrote goes, then its EOF
 * (shutdown of its side, as a TCP peer's FIN). */
static void
peer_finish(struct tst *t)
{
	settle();
	assert_int_equal(evbuffer_get_length(bufferevent_get_output(t->peer)), 0);
	assert_int_equal(shutdown(bufferevent_getfd(t->peer), SHUT_WR), 0);
	settle();
}

/* What the peer received so far, as a string (consumed). */
static char *
peer_got(struct tst *t)
{
	size_t n = evbuffer_get_length(t->got);
	char *s = malloc(n + 1);

	assert_non_null(s);
	evbuffer_remove(t->got, s, n);
	s[n] = '\0';
	return s;
}

#define expect_got(t, want) do {                                            \
	char *got_ = peer_got(t);                                            \
	if (strcmp(got_, (want)) != 0)                                       \
		fail_msg("line %d: the peer got\n  %s\nexpected\n  %s", __LINE__,  \
		    got_, (want));                                           \
	free(got_);                                                          \
} while (0)

/* Our header as the test class writes it, with its id checked and cut
 * out: "<...id='ID' from=...>" becomes "<...id='*' from=...>". Returns
 * the id (caller frees) or fails. */
static char *
cut_id(char *s)
{
	char *p = strstr(s, " id='"), *q, *id;
	size_t n;

	if (p == NULL)
		fail_msg("no id in %s", s);
	p += 5;
	q = strchr(p, '\'');
	assert_non_null(q);
	n = (size_t)(q - p);
	/* RFC 6120 4.7.3: unpredictable; 128 random bits, in hex. */
	assert_int_equal(n, 32);
	assert_int_equal(strspn(p, "0123456789abcdef"), 32);
	id = strndup(p, n);
	memmove(p + 1, q, strlen(q) + 1);
	*p = '*';
	return id;
}

#define HDR_OUT "<?xml version='1.0'?><stream:stream xmlns='jabber:client' " \
	"xmlns:stream='http://etherx.jabber.org/streams' id='*' from='example.com' " \
	"version='1.0' xml:lang='en'>"
#define HDR_OUT_BARE "<?xml version='1.0'?><stream:stream xmlns='jabber:client' " \
	"xmlns:stream='http://etherx.jabber.org/streams' id='*' version='1.0' xml:lang='en'>"

/* The peer's bytes so far must be our header then rest; returns the id. */
static char *
expect_header_then(struct tst *t, const char *hdr, const char *rest, int line)
{
	char *got = peer_got(t), *id;
	size_t hl = strlen(hdr);

	id = cut_id(got);
	if (strncmp(got, hdr, hl) != 0 || strcmp(got + hl, rest) != 0)
		fail_msg("line %d: the peer got\n  %s\nexpected\n  %s%s", line, got, hdr, rest);
	free(got);
	return id;
}

/* ------------------------------------------------------------------ */
/* Framing                                                             */
/* ------------------------------------------------------------------ */

/* RFC 6120 4.7: the header is answered with ours, a new id each time. */
static void
test_header(void **state)
{
	struct tst *t = tst_new(1 << 20);
	char *id1, *id2;

	/* In pieces, split inside the tag. */
	peer_send(t, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream=");
	assert_int_equal(t->starts, 0);
	peer_send(t, "'http://etherx.jabber.org/streams' to='example.com' version='1.0'>");
	assert_int_equal(t->starts, 1);
	assert_string_equal(t->to, "example.com");
	assert_string_equal(t->ns, "jabber:client");
	assert_int_equal(t->version1, 1);
	assert_int_equal(t->xs.header_sent, 1);
	id1 = expect_header_then(t, HDR_OUT, "", __LINE__);
	assert_string_equal(id1, t->xs.id);

	/* A restart (<auth/> in the test class): the next header gets a
	 * new stream and a new id. */
	peer_send(t, "<auth/>" "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
	    "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='0.9'>");
	assert_int_equal(t->starts, 2);
	assert_int_equal(t->version1, 0);     /* 4.7.5: not 1.0 */
	id2 = expect_header_then(t, "<success/>" HDR_OUT, "", __LINE__);
	assert_string_not_equal(id1, id2);
	free(id1);
	free(id2);
	tst_free(t);
}

/* A depth-1 element arrives whole, however its bytes were split, and only
 * once it is complete. */
static void
test_element(void **state)
{
	struct tst *t = tst_new(1 << 20);

	peer_send(t, HDR_IN);
	peer_send(t, "<message to='juliet@example.com'><bo");
	assert_int_equal(t->nelems, 0);
	peer_send(t, "dy>wherefore</body></mess");
	assert_int_equal(t->nelems, 0);
	peer_send(t, "age> <presence/>");
	assert_int_equal(t->nelems, 2);
	assert_string_equal(t->elems[0],
	    "<message to='juliet@example.com'><body>wherefore</body></message>");
	assert_string_equal(t->elems[1], "<presence/>");
	assert_true(t->last_input_ms > 0);
	tst_free(t);
}

/* Paused, the stream reads nothing; resumed, what came meanwhile is
 * handled from the loop, in order (the auth failure delay, a stanza's
 * store work). */
static void
test_pause(void **state)
{
	struct tst *t = tst_new(1 << 20);

	peer_send(t, HDR_IN);
	xstream_pause(&t->xs);
	xstream_pause(&t->xs);
	peer_send(t, "<message id='1'/><message id='2'/>");
	assert_int_equal(t->nelems, 0);
	xstream_resume(&t->xs);
	settle();
	assert_int_equal(t->nelems, 0);       /* paused twice, resumed once */
	xstream_resume(&t->xs);
	assert_int_equal(t->nelems, 0);       /* not from inside resume */
	settle();
	assert_int_equal(t->nelems, 2);
	assert_string_equal(t->elems[1], "<message id='2'/>");
	tst_free(t);
}

/* RFC 6120 10.1: while an element's store work is pending nothing after
 * it is handled, from the same read or a later one; then all of it, in
 * order. */
static void
test_hold(void **state)
{
	struct tst *t = tst_new(1 << 20);
	struct hold *w;

	peer_send(t, HDR_IN "<hold/><message id='1'/>");
	assert_int_equal(t->nelems, 1);
	peer_send(t, "<message id='2'/>");
	assert_int_equal(t->nelems, 1);
	w = t->work;
	t->work = NULL;
	hold_release(w);
	settle();
	assert_int_equal(t->nelems, 3);
	assert_string_equal(t->elems[1], "<message id='1'/>");
	assert_string_equal(t->elems[2], "<message id='2'/>");
	peer_send(t, "<message id='3'/>");
	assert_int_equal(t->nelems, 4);
	tst_free(t);
}

/* A peer that closes while held still has what it sent before handled;
 * the stream ends after that. */
static void
test_hold_peer_eof(void **state)
{
	struct tst *t = tst_new(1 << 20);
	struct hold *w;

	peer_send(t, HDR_IN "<hold/><message id='last'/>");
	peer_finish(t);
	settle();
	assert_int_equal(t->nelems, 1);
	assert_false(t->freed);
	w = t->work;
	t->work = NULL;
	hold_release(w);
	assert_int_equal(t->nelems, 2);
	assert_string_equal(t->elems[1], "<message id='last'/>");
	/* The EOF, read once the stream reads again (or seen before). */
	assert_true(wait_for(&t->freed));
	assert_int_equal(t->nelems, 2);
	assert_int_equal(t->how, CONN_END_EOF);
	tst_free(t);
}

/* ------------------------------------------------------------------ */
/* Stream errors, the end, the lingering close                        */
/* ------------------------------------------------------------------ */

/* RFC 6120 4.9.1.2: an error before our header is preceded by one. */
static void
test_error_before_header(void **state)
{
	struct tst *t = tst_new(1 << 20);
	char *id;

	xstream_error(&t->xs, "host-unknown", NULL);
	settle();
	id = expect_header_then(t, HDR_OUT_BARE, ERR("host-unknown") ERR_END, __LINE__);
	free(id);
	assert_int_equal(t->closings, 1);
	/* Nothing is written after the end of the stream. */
	xstream_puts(&t->xs, "<late/>");
	xstream_error(&t->xs, "conflict", NULL);
	settle();
	expect_got(t, "");
	assert_int_equal(t->closings, 1);
	tst_free(t);
}

/* After our header: the error alone, its text escaped; then our side is
 * shut down (the peer sees EOF), what the peer still sends is dropped,
 * and the stream ends when the peer closes (the lingering close). */
static void
test_error_and_linger(void **state)
{
	struct tst *t = tst_new(1 << 20);
	char *id;

	peer_send(t, HDR_IN);
	id = expect_header_then(t, HDR_OUT, "", __LINE__);
	free(id);
	xstream_error(&t->xs, "policy-violation", "<too> many & more");
	settle();
	expect_got(t, ERR("policy-violation") TEXT("&lt;too&gt; many &amp; more") ERR_END);
	assert_true(wait_for(&t->peer_eof));
	assert_false(t->freed);
	peer_send(t, "<message>dropped</message>");
	assert_int_equal(t->nelems, 0);
	assert_false(t->freed);
	peer_finish(t);
	assert_true(wait_for(&t->freed));
	assert_int_equal(t->how, CONN_END_EOF);
	tst_free(t);
}

/* A peer that never closes is not waited for past the grace. */
static void
test_linger_grace(void **state)
{
	struct tst *t = tst_new(1 << 20);

	peer_send(t, HDR_IN);
	xstream_close(&t->xs);
	assert_true(wait_for(&t->freed));
	assert_int_equal(t->how, CONN_END_CLOSED);
	assert_true(t->peer_eof);
	tst_free(t);
}

/* RFC 6120 4.4: </stream:stream> is answered with ours, then the close. */
static void
test_end_tag(void **state)
{
	struct tst *t = tst_new(1 << 20);
	char *id;

	peer_send(t, HDR_IN);
	peer_send(t, "<presence/></stream:stream><message>after the end</message>");
	id = expect_header_then(t, HDR_OUT, "</stream:stream>", __LINE__);
	free(id);
	assert_int_equal(t->nelems, 1);
	assert_int_equal(t->closings, 1);
	assert_true(wait_for(&t->peer_eof));
	tst_free(t);
}

/* What the parser refuses ends the stream with its condition (RFC 6120
 * 4.9.3, 11.1), our header first if the peer's never came. */
static void
test_parse_errors(void **state)
{
	static const struct {
		const char *in, *condition;
	} cases[] = {
		{ "<?xml version='1.0'?><!DOCTYPE x>", "restricted-xml" },
		{ HDR_IN "<message><body></message>", "not-well-formed" },
		{ HDR_IN "<!-- a comment -->", "restricted-xml" },
		{ "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
		  "xmlns:stream='urn:not-streams'>", "invalid-namespace" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tst *t = tst_new(1 << 20);
		char *got, *p;

		t->answer = 0;        /* only xstream writes */
		peer_send(t, cases[i].in);
		got = peer_got(t);
		p = strstr(got, "<stream:error>");
		if (p == NULL || strncmp(got, "<?xml version='1.0'?><stream:stream ", 36) != 0)
			fail_msg("case %zu: the peer got %s", i, got);
		if (strncmp(p + 15, cases[i].condition, strlen(cases[i].condition)) != 0)
			fail_msg("case %zu: <%s/> expected, the peer got %s", i,
			    cases[i].condition, p);
		if (strcmp(got + strlen(got) - strlen(ERR_END), ERR_END) != 0)
			fail_msg("case %zu: not the end of the stream: %s", i, got);
		free(got);
		assert_int_equal(t->closings, 1);
		tst_free(t);
	}
}

/* The negotiation deadline: <connection-timeout/> when it passes. */
static void
test_deadline(void **state)
{
	struct tst *t = tst_new(1 << 20);
	char *id;

	peer_send(t, HDR_IN);
	xstream_set_timer_ms(&t->xs, 30);
	xstream_cancel_timer(&t->xs);
	xstream_set_timer_ms(&t->xs, 50);
	assert_true(wait_for(&t->closings));
	settle();
	id = expect_header_then(t, HDR_OUT, ERR("connection-timeout")
	    TEXT("negotiation took too long") ERR_END, __LINE__);
	free(id);
	tst_free(t);
}

/* A peer that reads nothing is cut off once max_send_queue bytes wait
 * for it; one that reads is not. */
static void
test_send_queue(void **state)
{
	struct tst *t = tst_new(4096);
	xml_elem *m = xml_elem_new(NULL, "message");
	xml_elem *body = xml_elem_add_child(m, NULL, "body");
	char text[1001];
	char *got;
	int sent;

	memset(text, 'x', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	xml_elem_add_text(body, text, strlen(text));
	peer_send(t, HDR_IN);
	evbuffer_drain(t->got, evbuffer_get_length(t->got));

	/* Read as it comes: 20 kB go through a 4 kB bound. */
	for (int i = 0; i < 20; i++) {
		xstream_send(&t->xs, m);
		settle();
	}
	assert_int_equal(t->closings, 0);
	assert_int_equal(evbuffer_get_length(t->got), 20 * (strlen(text) + 32));
	evbuffer_drain(t->got, evbuffer_get_length(t->got));

	/* Not read: the message that takes the queue past 4096 bytes is
	 * the last; the error follows it. The socket pair's own buffers
	 * (conn_pair keeps them small) take a few messages first. */
	bufferevent_disable(t->peer, EV_READ);
	for (sent = 0; sent < 40 && t->closings == 0; sent++) {
		xstream_send(&t->xs, m);
		settle();
	}
	assert_int_equal(t->closings, 1);
	assert_true(sent >= (int)(4096 / (strlen(text) + 32)) + 1);
	assert_true(sent < 40);
	xstream_send(&t->xs, m);       /* closing: not written */
	bufferevent_enable(t->peer, EV_READ);
	settle();
	got = peer_got(t);
	assert_int_equal(strlen(got), sent * (strlen(text) + 32) +
	    strlen(ERR("resource-constraint") TEXT("send queue full") ERR_END));
	assert_string_equal(got + sent * (strlen(text) + 32),
	    ERR("resource-constraint") TEXT("send queue full") ERR_END);
	free(got);
	xml_elem_unref(m);
	tst_free(t);
}

/* ------------------------------------------------------------------ */
/* STARTTLS                                                            */
/* ------------------------------------------------------------------ */

/* A TLS client at the peer's end, on memory BIOs. */
struct tls_peer {
	SSL *ssl;
	BIO *rb, *wb;             /* bytes from the server, to the server */
};

static void
tls_peer_new(struct tls_peer *p)
{
	p->ssl = SSL_new(client_ctx);
	p->rb = BIO_new(BIO_s_mem());
	p->wb = BIO_new(BIO_s_mem());
	assert_non_null(p->ssl);
	SSL_set_bio(p->ssl, p->rb, p->wb);
	SSL_set_connect_state(p->ssl);
}

/* Moves what the client wrote to the stream, and what the stream wrote
 * (t->got) to the client. */
static void
tls_pump(struct tst *t, struct tls_peer *p)
{
	char buf[16384];
	int n;

	while ((n = BIO_read(p->wb, buf, sizeof(buf))) > 0)
		bufferevent_write(t->peer, buf, (size_t)n);
	settle();
	while ((n = evbuffer_remove(t->got, buf, sizeof(buf))) > 0)
		BIO_write(p->rb, buf, n);
}

/* Whitespace before the ClientHello is skipped (Go clients send a newline
 * after <starttls/>); TLS then carries a new stream. */
static void
test_starttls(void **state)
{
	struct tst *t = tst_new(1 << 20);
	struct tls_peer p;
	char buf[4096], *id;
	int n;

	peer_send(t, HDR_IN);
	id = expect_header_then(t, HDR_OUT, "", __LINE__);
	free(id);
	peer_send(t, "<starttls xmlns='" NS_TLS "'/>");
	expect_got(t, "<proceed xmlns='" NS_TLS "'/>");
	assert_true(conn_tls_waiting(t->xs.conn));
	assert_int_equal(t->tls_installed, 0);
	assert_false(t->xs.tls);

	peer_send(t, " \r\n\t");
	tls_peer_new(&p);
	for (int i = 0; i < 10 && !SSL_is_init_finished(p.ssl); i++) {
		ERR_clear_error();
		(void)SSL_do_handshake(p.ssl);
		tls_pump(t, &p);
	}
	assert_true(SSL_is_init_finished(p.ssl));
	assert_false(conn_tls_waiting(t->xs.conn));
	assert_int_equal(t->tls_installed, 1);
	assert_true(t->xs.tls);
	assert_int_equal(t->closings, 0);

	/* The new stream, through TLS (RFC 6120 5.4.3.3). */
	assert_int_equal(SSL_write(p.ssl, HDR_IN, (int)strlen(HDR_IN)), (int)strlen(HDR_IN));
	tls_pump(t, &p);
	tls_pump(t, &p);
	assert_int_equal(t->starts, 2);
	n = SSL_read(p.ssl, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "<stream:stream xmlns='jabber:client'"));
	assert_non_null(xstream_ssl(&t->xs));
	SSL_free(p.ssl);
	tst_free(t);
}

/* Anything but a TLS record after <proceed/> closes without a word, and
 * the plain text reaches neither TLS nor the parser (CVE-2011-0411):
 * sent after <proceed/>, or in the same chunk as <starttls/>. */
static void
test_starttls_injection(void **state)
{
	static const char *const after[] = {
		" <message to='victim@example.com'>injected</message>",
		"\n\x01",
	};

	for (size_t i = 0; i < 3; i++) {
		struct tst *t = tst_new(1 << 20);
		char *id;

		peer_send(t, HDR_IN);
		id = expect_header_then(t, HDR_OUT, "", __LINE__);
		free(id);
		if (i < 2) {
			peer_send(t, "<starttls xmlns='" NS_TLS "'/>");
			expect_got(t, "<proceed xmlns='" NS_TLS "'/>");
			peer_send(t, after[i]);
		} else {
			peer_send(t, "<starttls xmlns='" NS_TLS "'/><message>injected</message>");
			expect_got(t, "<proceed xmlns='" NS_TLS "'/>");
		}
		/* Only <starttls/> was an element; nothing more was said. */
		assert_int_equal(t->nelems, 1);
		assert_int_equal(t->closings, 1);
		assert_int_equal(t->tls_installed, 0);
		assert_null(xstream_ssl(&t->xs));
		assert_true(wait_for(&t->peer_eof));
		expect_got(t, "");
		tst_free(t);
	}
}

/* ------------------------------------------------------------------ */

/* A self-signed certificate for the server side of STARTTLS. */
static int
make_tls(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;

	if (key == NULL || x == NULL)
		return -1;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"example.com",
	    -1, -1, 0);
	X509_set_issuer_name(x, name);
	if (X509_sign(x, key, EVP_sha256()) == 0)
		return -1;
	server_ctx = SSL_CTX_new(TLS_server_method());
	client_ctx = SSL_CTX_new(TLS_client_method());
	if (server_ctx == NULL || client_ctx == NULL ||
	    SSL_CTX_use_certificate(server_ctx, x) != 1 ||
	    SSL_CTX_use_PrivateKey(server_ctx, key) != 1)
		return -1;
	SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
	X509_free(x);
	EVP_PKEY_free(key);
	return 0;
}

static int
group_setup(void **state)
{
	const char *err;

	log_set_level(LOG_LVL_WARNING);
	if (worker_init(1, &err) < 0) {
		fprintf(stderr, "worker_init: %s\n", err);
		return -1;
	}
	base = worker_base(worker_get(0));
	set = conn_set_new(1);
	return set != NULL && make_tls() == 0 ? 0 : -1;
}

static int
group_teardown(void **state)
{
	conn_set_free(&set);
	worker_free_all();
	SSL_CTX_free(server_ctx);
	SSL_CTX_free(client_ctx);
	xml_stream_pool_free();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_header, teardown),
		cmocka_unit_test_teardown(test_element, teardown),
		cmocka_unit_test_teardown(test_pause, teardown),
		cmocka_unit_test_teardown(test_hold, teardown),
		cmocka_unit_test_teardown(test_hold_peer_eof, teardown),
		cmocka_unit_test_teardown(test_error_before_header, teardown),
		cmocka_unit_test_teardown(test_error_and_linger, teardown),
		cmocka_unit_test_teardown(test_linger_grace, teardown),
		cmocka_unit_test_teardown(test_end_tag, teardown),
		cmocka_unit_test_teardown(test_parse_errors, teardown),
		cmocka_unit_test_teardown(test_deadline, teardown),
		cmocka_unit_test_teardown(test_send_queue, teardown),
		cmocka_unit_test_teardown(test_starttls, teardown),
		cmocka_unit_test_teardown(test_starttls_injection, teardown),
	};

	/* A write to a peer that has gone fails with EPIPE, as in the
	 * daemon (src/xmppd.c). */
	signal(SIGPIPE, SIG_IGN);
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
