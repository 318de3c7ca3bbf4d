/*
 * ws.c - WebSocket framing on a conn with wslay's event API (ws.h).
 *
 * wslay pulls the peer's bytes through recv_cb from the conn's input and
 * pushes frames through send_cb into the conn's output queue, which always
 * takes everything (the queue is bounded by the owner, max_send_queue), so
 * wslay never holds a frame half sent and the order of our messages and
 * its control frames (pong, close) is the order they were queued in.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <wslay/wslay.h>

#include "stream/conn.h"
#include "stream/ws.h"

struct ws {
	wslay_event_context_ptr ctx;
	struct conn *c;
	const struct ws_ops *ops;
	void *arg;
	const char *why;               /* the protocol error seen, if any */
	unsigned close_queued : 1;
};

static ssize_t
recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
	struct ws *ws = ud;
	const char *p;
	size_t n;

	(void)flags;
	if (conn_peek(ws->c, &p, &n) < 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (n > len)
		n = len;
	memcpy(buf, p, n);
	conn_drain(ws->c, n);
	return (ssize_t)n;
}

static ssize_t
send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct ws *ws = ud;

	(void)ctx;
	(void)flags;
	if (evbuffer_add(conn_out(ws->c), data, len) < 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return (ssize_t)len;
}

static void
msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud)
{
	struct ws *ws = ud;

	(void)ctx;
	if (arg->opcode == WSLAY_TEXT_FRAME) {
		ws->ops->message(ws->arg, (const char *)arg->msg, arg->msg_length);
	} else if (arg->opcode == WSLAY_BINARY_FRAME) {
		/* RFC 7395 3.2: the xmpp subprotocol is text; 1003 is "cannot
		 * accept this type of data" (RFC 6455 7.4.1). */
		ws->why = "a binary message";
		ws_close(ws, WSLAY_CODE_UNSUPPORTED_DATA);
	}
	/* Pings are answered by wslay; pongs only count as input (the
	 * owner's last input time); a close frame is answered by wslay. */
}

static const struct wslay_event_callbacks callbacks = {
	recv_cb, send_cb, NULL, NULL, NULL, NULL, msg_cb,
};

struct ws *
ws_new(struct conn *c, size_t max_msg, const struct ws_ops *ops, void *arg)
{
	struct ws *ws = calloc(1, sizeof(*ws));

	if (ws == NULL)
		return NULL;
	if (wslay_event_context_server_init(&ws->ctx, &callbacks, ws) != 0) {
		free(ws);
		return NULL;
	}
	ws->c = c;
	ws->ops = ops;
	ws->arg = arg;
	/* RFC 7395 3.3.3 / our max_stanza_size: the whole message, not each
	 * frame (buffering stays on, so wslay counts the reassembled length
	 * and refuses with 1009 before it buffers past it). */
	wslay_event_config_set_max_recv_msg_length(ws->ctx, max_msg);
	return ws;
}

void
ws_free(struct ws **wsp)
{
	struct ws *ws = *wsp;

	if (ws == NULL)
		return;
	wslay_event_context_free(ws->ctx);
	free(ws);
	*wsp = NULL;
}

static void
pump(struct ws *ws)
{
	if (wslay_event_want_write(ws->ctx))
		(void)wslay_event_send(ws->ctx);
}

int
ws_read(struct ws *ws, const char **why_r)
{
	int r;

	if (!wslay_event_get_read_enabled(ws->ctx)) {
		/* Closed for reading: what comes now is dropped. */
		const char *p;
		size_t n;

		while (conn_peek(ws->c, &p, &n) == 0)
			conn_drain(ws->c, n);
		return wslay_event_get_close_received(ws->ctx) ? 1 : -1;
	}
	r = wslay_event_recv(ws->ctx);
	pump(ws);
	if (ws->close_queued == 0 && wslay_event_get_close_sent(ws->ctx))
		ws->close_queued = 1;
	if (r != 0) {
		*why_r = r == WSLAY_ERR_NOMEM ? "out of memory" : "a WebSocket protocol error";
		return -1;
	}
	if (!wslay_event_get_read_enabled(ws->ctx)) {
		if (wslay_event_get_close_received(ws->ctx))
			return 1;
		/* wslay refused a frame (too big: 1009; bad framing: 1002)
		 * and queued its close. */
		*why_r = ws->why != NULL ? ws->why : "a message over the size limit or a bad frame";
		return -1;
	}
	if (ws->why != NULL) {
		*why_r = ws->why;
		return -1;
	}
	return 0;
}

void
ws_send(struct ws *ws, const char *p, size_t len)
{
	struct wslay_event_msg m = { WSLAY_TEXT_FRAME, (const uint8_t *)p, len };

	if (ws->close_queued)
		return;
	if (wslay_event_queue_msg(ws->ctx, &m) == 0)
		pump(ws);
}

void
ws_ping(struct ws *ws)
{
	struct wslay_event_msg m = { WSLAY_PING, (const uint8_t *)"", 0 };

	if (ws->close_queued)
		return;
	if (wslay_event_queue_msg(ws->ctx, &m) == 0)
		pump(ws);
}

void
ws_close(struct ws *ws, uint16_t code)
{
	if (ws->close_queued)
		return;
	ws->close_queued = 1;
	if (wslay_event_queue_close(ws->ctx, code, NULL, 0) == 0)
		pump(ws);
}

int
ws_close_sent(const struct ws *ws)
{
	return ws->close_queued;
}
