/*
 * ws.h - WebSocket framing (RFC 6455) on a conn, server side, with wslay:
 * what an xstream in framed mode (RFC 7395, XMPP over WebSocket) reads and
 * writes through. The opening handshake is HTTP's (http/websocket.c); this
 * is everything after it.
 *
 * wslay reassembles fragmented messages, unmasks the client's frames,
 * answers pings and the closing handshake, and refuses a message over the
 * size given (close code 1009, RFC 6455 7.4.1), counted on the whole
 * reassembled message, not per frame (RFC 7395 3.3.3 via max_stanza_size).
 * Messages go out unfragmented, each as one text frame.
 *
 * Lives on the conn's worker; touched only there.
 */
#ifndef XMPPD_STREAM_WS_H
#define XMPPD_STREAM_WS_H

#include <stddef.h>
#include <stdint.h>

struct conn;
struct ws;

struct ws_ops {
	/* A complete text message (binary ones are refused: RFC 7395 3.2
	 * says text). p is valid during the call only. */
	void (*message)(void *arg, const char *p, size_t len);
};

/* A WebSocket on c (its input and output queue) with messages up to
 * max_msg bytes. NULL when out of memory. */
struct ws *ws_new(struct conn *c, size_t max_msg, const struct ws_ops *ops, void *arg);
void ws_free(struct ws **wsp);

/*
 * Reads what c has buffered through the framing: message() for each
 * complete one, pongs and the close reply queued. Returns 0, 1 when the
 * peer's close frame has come (nothing more will), or -1 on a protocol
 * error (a close frame with the reason is queued: the owner closes the
 * conn once it has gone). *why_r says what went wrong.
 */
int ws_read(struct ws *ws, const char **why_r);
/* One text message. */
void ws_send(struct ws *ws, const char *p, size_t len);
/* A ping (keepalive, RFC 6455 5.5.2). */
void ws_ping(struct ws *ws);
/* Our close frame with code (1000 normal, 1001 going away, 1008 policy,
 * 1009 too big; RFC 6455 7.4.1); idempotent. */
void ws_close(struct ws *ws, uint16_t code);
/* Our close frame is out (or queued on the conn). */
int ws_close_sent(const struct ws *ws);

#endif
