/*
 * t-ws.c - WebSocket framing (stream/ws.c, over wslay) on one end of an
 * in-process socket pair (conn_pair), the other end written and read
 * here byte by byte as a client would.
 *
 * What is checked: a message in one frame and one in fragments with a
 * ping between them (RFC 6455 5.4, 5.5: control frames may come between
 * fragments; the ping is answered with its payload); the size bound is on
 * the reassembled message, not each frame (RFC 7395 3.3.3 via
 * max_stanza_size): fragments each under it but together over it close
 * with 1009, and so does one frame that declares a huge length, at its
 * first bytes (it is not buffered first); a binary message closes with 1003 (RFC
 * 7395 3.2: text only); an unmasked client frame closes with 1002 (RFC
 * 6455 5.1); what we send is one unmasked text frame, with the 16-bit
 * length form past 125 bytes; a close frame from the peer is answered and
 * reported.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "core/log.h"
#include "core/worker.h"
#include "stream/conn.h"
#include "stream/ws.h"

#define MAX_MSG 100

static struct event_base *base;
static struct conn_set *set;

struct tws {
	struct conn *c;
	struct ws *ws;
	int peer;
	char msgs[8][512];
	size_t lens[8];
	int nmsgs;
	int last;          /* ws_read's last result */
	const char *why;
	int ended;
};

static void
on_message(void *arg, const char *p, size_t len)
{
	struct tws *t = arg;

	if (t->nmsgs < 8 && len < sizeof(t->msgs[0])) {
		memcpy(t->msgs[t->nmsgs], p, len);
		t->lens[t->nmsgs++] = len;
	}
}

static const struct ws_ops wsops = { on_message };

static void
on_input(void *arg)
{
	struct tws *t = arg;

	t->why = NULL;
	t->last = ws_read(t->ws, &t->why);
}

static void
on_end(void *arg, enum conn_end how, const char *why)
{
	struct tws *t = arg;

	(void)how;
	(void)why;
	t->ended = 1;
}

static const struct conn_ops cops = { on_input, NULL, NULL, NULL, NULL, on_end };

static void
run(int ms)
{
	for (int i = 0; i < ms / 5; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(5000);
	}
	event_base_loop(base, EVLOOP_NONBLOCK);
}

static struct tws *
open_ws(void)
{
	struct tws *t = calloc(1, sizeof(*t));

	t->c = conn_new(set, worker_get(0), &cops, t, "ws-test");
	assert_non_null(t->c);
	assert_int_equal(conn_pair(t->c, &t->peer), 0);
	t->ws = ws_new(t->c, MAX_MSG, &wsops, t);
	assert_non_null(t->ws);
	return t;
}

static void
close_ws(struct tws *t)
{
	ws_free(&t->ws);
	conn_free(&t->c);
	close(t->peer);
	free(t);
}

/* A client frame: masked (RFC 6455 5.3) unless mask is 0. */
static void
send_frame(struct tws *t, int fin, int opcode, const void *payload, uint64_t len,
    uint64_t declared, int mask)
{
	unsigned char h[14], key[4] = { 0x11, 0x22, 0x33, 0x44 };
	size_t n = 0;

	h[n++] = (unsigned char)((fin ? 0x80 : 0) | opcode);
	if (declared < 126) {
		h[n++] = (unsigned char)((mask ? 0x80 : 0) | declared);
	} else if (declared < 65536) {
		h[n++] = (unsigned char)((mask ? 0x80 : 0) | 126);
		h[n++] = (unsigned char)(declared >> 8);
		h[n++] = (unsigned char)declared;
	} else {
		h[n++] = (unsigned char)((mask ? 0x80 : 0) | 127);
		for (int i = 7; i >= 0; i--)
			h[n++] = (unsigned char)(declared >> (8 * i));
	}
	if (mask) {
		memcpy(h + n, key, 4);
		n += 4;
	}
	assert_int_equal(write(t->peer, h, n), (ssize_t)n);
	if (len > 0) {
		unsigned char *b = malloc(len);

		for (uint64_t i = 0; i < len; i++)
			b[i] = ((const unsigned char *)payload)[i] ^ (mask ? key[i % 4] : 0);
		assert_int_equal(write(t->peer, b, len), (ssize_t)len);
		free(b);
	}
}

/* What the peer has received: n bytes or fewer. */
static size_t
peer_read(struct tws *t, unsigned char *buf, size_t n)
{
	ssize_t r = read(t->peer, buf, n);

	return r > 0 ? (size_t)r : 0;
}

/* The close code in the peer's input (a close frame: 0x88, len, code). */
static int
close_code_seen(struct tws *t)
{
	unsigned char buf[4096];
	size_t n = peer_read(t, buf, sizeof(buf));

	for (size_t i = 0; i + 3 < n; i++)
		if (buf[i] == 0x88 && buf[i + 1] >= 2)
			return buf[i + 2] << 8 | buf[i + 3];
	return -1;
}

static void
test_one_frame(void **state)
{
	struct tws *t = open_ws();

	(void)state;
	send_frame(t, 1, 1, "<presence/>", 11, 11, 1);
	run(50);
	assert_int_equal(t->nmsgs, 1);
	assert_int_equal(t->lens[0], 11);
	assert_memory_equal(t->msgs[0], "<presence/>", 11);
	assert_int_equal(t->last, 0);
	close_ws(t);
}

static void
test_fragments_and_ping(void **state)
{
	struct tws *t = open_ws();
	unsigned char buf[64];
	size_t n;

	(void)state;
	send_frame(t, 0, 1, "<message>", 9, 9, 1);
	send_frame(t, 1, 9, "hb", 2, 2, 1);               /* a ping between fragments */
	send_frame(t, 0, 0, "<body>hi</body>", 15, 15, 1);
	send_frame(t, 1, 0, "</message>", 10, 10, 1);
	run(50);
	assert_int_equal(t->nmsgs, 1);
	assert_int_equal(t->lens[0], 34);
	assert_memory_equal(t->msgs[0], "<message><body>hi</body></message>", 34);
	/* The pong carries the ping's payload, unmasked (RFC 6455 5.5.3). */
	n = peer_read(t, buf, sizeof(buf));
	assert_int_equal(n, 4);
	assert_int_equal(buf[0], 0x8a);
	assert_int_equal(buf[1], 2);
	assert_memory_equal(buf + 2, "hb", 2);
	close_ws(t);
}

static void
test_bound_on_whole_message(void **state)
{
	struct tws *t = open_ws();
	char part[60];

	(void)state;
	memset(part, 'x', sizeof(part));
	/* 60 + 60 > 100, each frame under it. */
	send_frame(t, 0, 1, part, 60, 60, 1);
	send_frame(t, 1, 0, part, 60, 60, 1);
	run(50);
	assert_int_equal(t->nmsgs, 0);
	assert_int_equal(t->last, -1);
	assert_int_equal(close_code_seen(t), 1009);
	close_ws(t);
}

static void
test_declared_huge(void **state)
{
	struct tws *t = open_ws();

	(void)state;
	/* A 1 GiB frame's header and its first bytes: refused on the
	 * declared length (wslay checks it with the first payload bytes),
	 * not after buffering it. */
	send_frame(t, 1, 1, "<message>", 9, 1ULL << 30, 1);
	run(50);
	assert_int_equal(t->last, -1);
	assert_int_equal(close_code_seen(t), 1009);
	close_ws(t);
}

static void
test_binary_refused(void **state)
{
	struct tws *t = open_ws();

	(void)state;
	send_frame(t, 1, 2, "<presence/>", 11, 11, 1);
	run(50);
	assert_int_equal(t->nmsgs, 0);
	assert_int_equal(t->last, -1);
	assert_int_equal(close_code_seen(t), 1003);
	close_ws(t);
}

static void
test_unmasked_refused(void **state)
{
	struct tws *t = open_ws();

	(void)state;
	send_frame(t, 1, 1, "<presence/>", 11, 11, 0);
	run(50);
	assert_int_equal(t->nmsgs, 0);
	assert_int_equal(t->last, -1);
	assert_int_equal(close_code_seen(t), 1002);
	close_ws(t);
}

static void
test_send_unmasked_text(void **state)
{
	struct tws *t = open_ws();
	char msg[200];
	unsigned char buf[512];
	size_t n;

	(void)state;
	memset(msg, 'm', sizeof(msg));
	ws_send(t->ws, msg, sizeof(msg));
	run(30);
	n = peer_read(t, buf, sizeof(buf));
	assert_int_equal(n, 4 + sizeof(msg));
	assert_int_equal(buf[0], 0x81);              /* FIN, text */
	assert_int_equal(buf[1], 126);               /* no mask bit, 16-bit length */
	assert_int_equal(buf[2] << 8 | buf[3], 200);
	assert_memory_equal(buf + 4, msg, sizeof(msg));
	close_ws(t);
}

static void
test_peer_close(void **state)
{
	struct tws *t = open_ws();
	unsigned char code[2] = { 0x03, 0xe8 };

	(void)state;
	send_frame(t, 1, 8, code, 2, 2, 1);
	run(50);
	assert_int_equal(t->last, 1);
	assert_int_equal(close_code_seen(t), 1000);
	assert_true(ws_close_sent(t->ws));
	close_ws(t);
}

int
main(void)
{
	const char *err = NULL;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_frame),
		cmocka_unit_test(test_fragments_and_ping),
		cmocka_unit_test(test_bound_on_whole_message),
		cmocka_unit_test(test_declared_huge),
		cmocka_unit_test(test_binary_refused),
		cmocka_unit_test(test_unmasked_refused),
		cmocka_unit_test(test_send_unmasked_text),
		cmocka_unit_test(test_peer_close),
	};
	int rc;

	log_set_level(LOG_LVL_ERROR);
	if (worker_init(1, &err) < 0) {
		fprintf(stderr, "worker_init: %s\n", err);
		return 1;
	}
	base = worker_base(worker_get(0));
	set = conn_set_new(1);
	cmocka_set_message_output(CM_OUTPUT_TAP);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	conn_set_free(&set);
	worker_free_all();
	return rc;
}
