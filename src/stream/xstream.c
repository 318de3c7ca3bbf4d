/*
 * xstream.c - XML streams on a conn (xstream.h): the read loop into the
 * parser, headers, stream errors, restarts, STARTTLS's hand-over, the
 * send-queue bound, hibernation and shutdown.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <openssl/rand.h>

#include "core/clock.h"
#include "core/conf.h"
#include "core/hold.h"
#include "core/log.h"
#include "core/worker.h"
#include "stream/conn.h"
#include "stream/ws.h"
#include "stream/xstream.h"
#include "xml/stream.h"
#include "xml/xml.h"
#include "xmpp/ns.h"

#define SHUTDOWN_POLL_MS 20
/* RFC 7395 3.3.1 */

static void xs_input(void *arg);
static void xs_resume(void *arg);
static void xs_connected(void *arg);
static void xs_tls_installed(void *arg);
static void xs_tls_refused(void *arg);
static void xs_timeout(void *arg);
static void xs_end(void *arg, enum conn_end how, const char *why);

static const struct conn_ops xs_conn_ops = {
	xs_input, xs_connected, xs_tls_installed, xs_tls_refused, xs_timeout, xs_end,
};

static void xs_stream_start(void *ud, const char *ns, const char **attrs);
static void xs_element(void *ud, xml_elem *e);
static void xs_stream_end(void *ud);
static void xs_parse_error(void *ud, const char *condition, const char *text);

static const struct xml_stream_cb xs_parser_cb = {
	xs_stream_start, xs_element, xs_stream_end, xs_parse_error,
};

/* ---------------------------------------------------------------- */
/* Life cycle.                                                        */

int
xstream_init(struct xstream *xs, const struct xstream_class *cls, struct conn_set *set,
    struct worker *w, const char *tag, const struct xstream_params *p)
{
	xs->cls = cls;
	xs->tag = tag;
	xs->last_input_ms = p->last_input_ms;
	xs->max_send_queue = p->max_send_queue;
	xs->initiating = p->initiating != 0;
	*xs->last_input_ms = clock_now_ms();
	xs->conn = conn_new(set, w, &xs_conn_ops, xs, tag);
	xs->xp = xml_stream_new(&xs_parser_cb, xs, &p->limits);
	/* NULL when out of memory: the stream is then never held. */
	xs->hold = hold_new(xs_resume, xs);
	if (xs->conn == NULL || xs->xp == NULL) {
		xstream_free(xs);
		return -1;
	}
	return 0;
}

static void xs_ws_message(void *arg, const char *p, size_t len);

static const struct ws_ops xs_ws_ops = { xs_ws_message };

/* The WebSocket framer: messages are text frames (stream/ws.h). */
static void
wsf_send(void *arg, const char *p, size_t len)
{
	struct xstream *xs = arg;

	ws_send(xs->ws, p, len);
}

static void
wsf_close(void *arg)
{
	struct xstream *xs = arg;

	/* RFC 7395 3.6.1: the server closes the WebSocket (RFC 6455
	 * 7.1.2) before the TCP connection. */
	ws_close(xs->ws, 1000);
}

static size_t
wsf_queued(void *arg)
{
	struct xstream *xs = arg;

	return conn_queued(xs->conn);
}

static const struct xstream_framer ws_framer = { wsf_send, wsf_close, wsf_queued };

int
xstream_init_ws(struct xstream *xs, const struct xstream_class *cls, struct conn_set *set,
    struct conn *c, const char *tag, const struct xstream_params *p)
{
	xs->cls = cls;
	xs->tag = tag;
	xs->last_input_ms = p->last_input_ms;
	xs->max_send_queue = p->max_send_queue;
	xs->initiating = 0;
	*xs->last_input_ms = clock_now_ms();
	xs->xp = xml_stream_new(&xs_parser_cb, xs, &p->limits);
	xs->hold = hold_new(xs_resume, xs);
	xs->ws = ws_new(c, p->limits.max_stanza_size, &xs_ws_ops, xs);
	xs->wsin = evbuffer_new();
	xs->msg = evbuffer_new();
	if (xs->xp == NULL || xs->ws == NULL || xs->wsin == NULL || xs->msg == NULL) {
		xstream_free(xs);
		return -1;
	}
	conn_move(c, set, &xs_conn_ops, xs, tag);
	xs->conn = c;
	xs->framer = &ws_framer;
	xs->framer_arg = xs;
	xs->tls = conn_ssl(c) != NULL;
	return 0;
}

int
xstream_init_framed(struct xstream *xs, const struct xstream_class *cls, struct conn_set *set,
    struct worker *w, const struct xstream_framer *f, void *farg, const char *tag,
    const struct xstream_params *p)
{
	if (xstream_init(xs, cls, set, w, tag, p) < 0)
		return -1;
	xs->wsin = evbuffer_new();
	xs->msg = evbuffer_new();
	if (xs->wsin == NULL || xs->msg == NULL) {
		xstream_free(xs);
		return -1;
	}
	xs->framer = f;
	xs->framer_arg = farg;
	return 0;
}

void
xstream_frame_in(struct xstream *xs, const char *p, size_t len)
{
	if (xs->framer != NULL && !xs->closing) {
		*xs->last_input_ms = clock_now_ms();
		xs_ws_message(xs, p, len);
	}
}

void
xstream_free(struct xstream *xs)
{
	ws_free(&xs->ws);
	if (xs->wsin != NULL)
		evbuffer_free(xs->wsin);
	if (xs->msg != NULL)
		evbuffer_free(xs->msg);
	xs->wsin = xs->msg = NULL;
	conn_free(&xs->conn);
	xml_stream_free(&xs->xp);
	/* Store work still pending completes without us. */
	hold_detach(xs->hold);
	xs->hold = NULL;
	if (xs->starttls != NULL) {
		SSL_free(xs->starttls);
		xs->starttls = NULL;
	}
}

struct xstream *
xstream_of(struct conn *c)
{
	return conn_arg(c);
}

int
xstream_accept(struct xstream *xs, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct conn_accept_opts *o, unsigned max_per_ip, unsigned deadline_s)
{
	unsigned n;

	if (conn_accept(xs->conn, fd, sa, salen, o, &n) < 0)
		return -1;
	xs->tls = o->ssl != NULL;
	if (max_per_ip > 0 && n > max_per_ip) {
		xstream_error(xs, "policy-violation", "too many connections from your address");
		return 0;
	}
	/* RFC 6120 4.9.3.4 / our limit: negotiation must end in time. */
	xstream_set_timer(xs, deadline_s);
	return 0;
}

int
xstream_connect(struct xstream *xs, const struct sockaddr *sa, socklen_t salen, SSL *ssl)
{
	xs->tls = 0;
	if (conn_connect(xs->conn, sa, salen, ssl) < 0)
		return -1;
	xs->tls = ssl != NULL;
	return 0;
}

/* ---------------------------------------------------------------- */
/* Input.                                                             */

/*
 * A peer's message (framed mode), appended to the parser's input as
 * stream bytes: RFC 7395 3.3.2's <open/> becomes a stream header (the
 * framing namespace stays its default: xs_stream_start checks it and sets
 * the content namespace), 3.6's <close/> the end tag, anything else goes
 * as it came (3.3.3: one stanza, fully qualified).
 */
static int
starts_with_tag(const char *p, size_t len, const char *name)
{
	size_t n = strlen(name);

	return len > n + 1 && p[0] == '<' && memcmp(p + 1, name, n) == 0 &&
	    (p[n + 1] == ' ' || p[n + 1] == '/' || p[n + 1] == '>' || p[n + 1] == '\t' ||
	    p[n + 1] == '\n' || p[n + 1] == '\r');
}

static void
xs_ws_message(void *arg, const char *p, size_t len)
{
	struct xstream *xs = arg;
	size_t end;

	while (len > 0 && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
		p++;
		len--;
	}
	end = len;
	while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t' || p[end - 1] == '\n' ||
	    p[end - 1] == '\r'))
		end--;
	if (starts_with_tag(p, end, "open")) {
		/* <open .../> (or <open ...></open>): its attributes go in a
		 * stream start tag that stays open. */
		size_t body = end;

		if (body >= 2 && memcmp(p + body - 2, "/>", 2) == 0)
			body -= 2;
		else if (body >= 8 && memcmp(p + body - 7, "</open>", 7) == 0 &&
		    memchr(p, '>', body - 7) == p + body - 8)
			body -= 8;
		else
			body = 0;
		if (body > 5) {
			evbuffer_add_printf(xs->wsin, "<stream:stream xmlns:stream='%s'", XML_NS_STREAM);
			evbuffer_add(xs->wsin, p + 5, body - 5);
			evbuffer_add(xs->wsin, ">", 1);
			return;
		}
	} else if (starts_with_tag(p, end, "close")) {
		evbuffer_add(xs->wsin, "</stream:stream>", 16);
		return;
	}
	evbuffer_add(xs->wsin, p, len);
}

/* Framed mode: feeds the parser from the peer's messages, reading more
 * frames when they are used up. */
static void
feed_ws(struct xstream *xs)
{
	const char *p;
	size_t len;

	while (!xs->closing && xs->paused == 0 && !hold_busy(xs->hold)) {
		struct evbuffer_iovec v;
		size_t consumed = 0;
		const char *why = NULL;
		int r;

		if (evbuffer_peek(xs->wsin, -1, NULL, &v, 1) >= 1 && v.iov_len > 0) {
			if (log_enabled(LOG_LVL_DEBUG))
				log_debug(xs->tag, "<<< %.*s",
				    (int)(v.iov_len > 2000 ? 2000 : v.iov_len), (char *)v.iov_base);
			r = xml_stream_feed(xs->xp, v.iov_base, v.iov_len, &consumed);
			evbuffer_drain(xs->wsin, consumed);
			if (r < 0) {
				if (!xs->closing)
					xstream_close(xs);
				break;
			}
			continue;
		}
		/* What the conn has read (not what OpenSSL still buffers: the
		 * conn reads that next, and calls again). */
		if (xs->ws == NULL || conn_peek(xs->conn, &p, &len) < 0)
			break;
		r = ws_read(xs->ws, &why);
		if (r == 1 && evbuffer_get_length(xs->wsin) == 0) {
			/* The peer's close frame (RFC 7395 3.6.1: after its
			 * <close/>, or instead of it): the stream is over. */
			xstream_close(xs);
			break;
		}
		if (r < 0) {
			log_info(xs->tag, "WebSocket closed: %s", why);
			xstream_close(xs);
			break;
		}
		/* wslay takes all it is given: no message yet means a frame
		 * is still coming. */
		if (evbuffer_get_length(xs->wsin) == 0)
			break;
	}
}

/* Feeds what is buffered to the parser, as long as the stream is open,
 * not paused and not held. 0, or -1 when STARTTLS took over: xs may be
 * gone then. */
static int
feed(struct xstream *xs)
{
	const char *p;
	size_t len;

	if (xs->framer != NULL) {
		feed_ws(xs);
		return 0;
	}

	while (!xs->closing && xs->paused == 0 && !hold_busy(xs->hold) &&
	    conn_peek(xs->conn, &p, &len) == 0) {
		size_t consumed = 0;
		int r;

		if (log_enabled(LOG_LVL_DEBUG))
			log_debug(xs->tag, "<<< %.*s", (int)(len > 2000 ? 2000 : len), p);
		r = xml_stream_feed(xs->xp, p, len, &consumed);
		conn_drain(xs->conn, consumed);
		if (r < 0) {
			/* The error callback has closed the stream; an ended
			 * stream without error is closed here. */
			if (!xs->closing)
				xstream_close(xs);
			break;
		}
		if (xs->starttls != NULL) {
			SSL *ssl = xs->starttls;

			/* The parser stopped after <starttls/> or <proceed/>:
			 * the rest is for TLS (or refused). May end xs. */
			xs->starttls = NULL;
			conn_starttls(xs->conn, ssl, xs->starttls_client);
			return -1;
		}
	}
	return 0;
}

void
xstream_frames_fed(struct xstream *xs)
{
	(void)feed(xs);
}

static void
xs_input(void *arg)
{
	struct xstream *xs = arg;

	*xs->last_input_ms = clock_now_ms();
	/* RFC 6120 10.1: while the last stanza's store work is pending,
	 * nothing more is handled, nor read (xs_resume goes on). */
	if (hold_busy(xs->hold) && !xs->held_off && !xs->closing) {
		xs->held_off = 1;
		xstream_pause(xs);
	}
	(void)feed(xs);
}

/* The store work of the stanza that held the stream has completed (from
 * the store's completion, never inside this stream's parser). */
static void
xs_resume(void *arg)
{
	struct xstream *xs = arg;

	if (xs->done_pending && !hold_busy(xs->hold)) {
		xs->done_pending = 0;
		if (xs->cls->element_done != NULL && !xs->closing)
			xs->cls->element_done(xs);
	}
	if (xs->held_off) {
		xs->held_off = 0;
		if (xs->peer_eof)
			xs->paused--;           /* nothing more comes from the socket */
		else
			xstream_resume(xs);
	}
	if (feed(xs) < 0)
		return;
	/* The peer has gone: once what it sent is handled, so is the
	 * stream. */
	if (xs->peer_eof && !hold_busy(xs->hold))
		xs->cls->end(xs, CONN_END_EOF, "closed by peer");
}

static void
xs_stream_start(void *ud, const char *ns, const char **attrs)
{
	struct xstream *xs = ud;
	struct xstream_header h = { ns, NULL, NULL, NULL, 0 };
	const char *version = NULL;

	if (xs->closing)
		return;
	for (size_t i = 0; attrs[i] != NULL; i += 2) {
		if (strcmp(attrs[i], "to") == 0)
			h.to = attrs[i + 1];
		else if (strcmp(attrs[i], "from") == 0)
			h.from = attrs[i + 1];
		else if (strcmp(attrs[i], "id") == 0)
			h.id = attrs[i + 1];
		else if (strcmp(attrs[i], "version") == 0)
			version = attrs[i + 1];
	}
	if (xs->framer != NULL) {
		/* RFC 7395 3.3.2: <open/> in the framing namespace; what it
		 * carries is the class's content (jabber:client). */
		if (ns == NULL || strcmp(ns, NS_FRAMING) != 0 ||
		    xml_stream_set_content_ns(xs->xp, xs->cls->ns) < 0) {
			xstream_error(xs, "invalid-namespace", "<open/> is not in the framing namespace");
			return;
		}
		h.ns = xs->cls->ns;
	}
	/* RFC 6120 4.7.5: no version, or a major below 1, is not 1.0. */
	h.version1 = version != NULL && strtol(version, NULL, 10) >= 1;
	if (xs->initiating)
		/* 4.7.3: the receiving entity's id. */
		snprintf(xs->id, sizeof(xs->id), "%s", h.id != NULL ? h.id : "");
	xs->cls->stream_start(xs, &h);
}

static void
xs_element(void *ud, xml_elem *e)
{
	struct xstream *xs = ud;
	/* Store work the handlers start counts against this stream. */
	struct hold *prev = hold_enter(xs->hold);

	if (!xs->closing)
		xs->cls->element(xs, e);
	hold_leave(prev);
	/* RFC 6120 10.1: the next stanza waits until this one's store work
	 * has completed (a roster set, then presence). */
	if (hold_busy(xs->hold)) {
		xml_stream_pause(xs->xp);
		xs->done_pending = 1;
	} else if (xs->cls->element_done != NULL && !xs->closing) {
		xs->cls->element_done(xs);
	}
	xml_elem_unref(e);
}

static void
xs_stream_end(void *ud)
{
	struct xstream *xs = ud;

	if (xs->closing)
		return;
	if (xs->cls->stream_end != NULL)
		xs->cls->stream_end(xs);
	/* RFC 6120 4.4: answer the closing tag with ours and close. */
	xstream_end(xs);
}

static void
xs_parse_error(void *ud, const char *condition, const char *text)
{
	struct xstream *xs = ud;

	if (xs->closing)
		return;
	if (xs->cls->parse_error != NULL)
		xs->cls->parse_error(xs, condition, text);
	xstream_error(xs, condition, text);
}

void
xstream_pause(struct xstream *xs)
{
	if (xs->paused++ == 0)
		conn_pause(xs->conn);
}

void
xstream_resume(struct xstream *xs)
{
	if (xs->paused > 0 && --xs->paused == 0)
		conn_resume(xs->conn);
}

/* ---------------------------------------------------------------- */
/* Events from the conn.                                              */

static void
xs_connected(void *arg)
{
	struct xstream *xs = arg;

	if (xs->cls->connected != NULL)
		xs->cls->connected(xs);
}

static void
xs_tls_installed(void *arg)
{
	struct xstream *xs = arg;

	/* Everything read from here on has come through TLS: a new stream
	 * (RFC 6120 5.4.3.3). */
	xs->tls = 1;
	xs->header_sent = 0;
	if (xs->cls->tls_installed != NULL)
		xs->cls->tls_installed(xs);
}

static void
xs_tls_refused(void *arg)
{
	xstream_close(arg);
}

static void
xs_timeout(void *arg)
{
	struct xstream *xs = arg;

	if (xs->cls->timeout == NULL || !xs->cls->timeout(xs))
		xstream_error(xs, "connection-timeout", "negotiation took too long");
}

static void
xs_end(void *arg, enum conn_end how, const char *why)
{
	struct xstream *xs = arg;

	if (how == CONN_END_CONNECT_FAILED)
		xs->tls = 0;
	if (how == CONN_END_EOF && !xs->closing && hold_busy(xs->hold) &&
	    conn_input_pending(xs->conn)) {
		/* What the peer sent before it closed is still handled, in
		 * order, once the stanza it waits for is done (xs_resume). */
		log_debug(xs->tag, "closed by peer: handling what it sent first");
		xs->peer_eof = 1;
		return;
	}
	xs->cls->end(xs, how, why);
}

/* ---------------------------------------------------------------- */
/* Output.                                                            */

/* Where output goes: the conn's queue, or (framed) the message being
 * written, which msg_end sends. */
static struct evbuffer *
out_buf(struct xstream *xs)
{
	return xs->framer != NULL ? xs->msg : conn_out(xs->conn);
}

static void
msg_end(struct xstream *xs)
{
	size_t n;

	if (xs->framer == NULL || (n = evbuffer_get_length(xs->msg)) == 0)
		return;
	xs->framer->send(xs->framer_arg, (const char *)evbuffer_pullup(xs->msg, -1), n);
	evbuffer_drain(xs->msg, n);
}

/* Nothing is written after the end of the stream (the error or end tag
 * that closed it went last). */
void
xstream_write(struct xstream *xs, const char *s, size_t len)
{
	if (xs->closing)
		return;
	if (xs->framer != NULL) {
		xs->framer->send(xs->framer_arg, s, len);
		return;
	}
	conn_write(xs->conn, s, len);
}

void
xstream_puts(struct xstream *xs, const char *s)
{
	xstream_write(xs, s, strlen(s));
}

void
xstream_printf(struct xstream *xs, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	xstream_vprintf(xs, fmt, ap);
	va_end(ap);
}

void
xstream_vprintf(struct xstream *xs, const char *fmt, va_list ap)
{
	if (xs->closing)
		return;
	evbuffer_add_vprintf(out_buf(xs), fmt, ap);
	msg_end(xs);
}

void
xstream_escape(struct xstream *xs, const char *s)
{
	/* Plain streams only: a message cannot be written in pieces. */
	if (!xs->closing && xs->framer == NULL)
		xml_escape_attr(conn_out(xs->conn), s);
}

void
xstream_ping(struct xstream *xs)
{
	if (xs->ws != NULL && !xs->closing)
		ws_ping(xs->ws);
}

/* RFC 6120 4.7.3: unique and unpredictable; 128 random bits. */
static void
new_id(struct xstream *xs)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char r[16];

	RAND_bytes(r, sizeof(r));
	for (size_t i = 0; i < sizeof(r); i++) {
		xs->id[2 * i] = digits[r[i] >> 4];
		xs->id[2 * i + 1] = digits[r[i] & 15];
	}
	xs->id[2 * sizeof(r)] = '\0';
}

void
xstream_send_header(struct xstream *xs, const char *from, const char *to)
{
	struct evbuffer *out;

	if (xs->closing)
		return;
	out = out_buf(xs);
	if (xs->framer != NULL)
		/* RFC 7395 3.3.2: <open/> in the framing namespace. */
		evbuffer_add(out, "<open xmlns='" NS_FRAMING "'", sizeof(NS_FRAMING) + 13);
	else
		evbuffer_add_printf(out, "<?xml version='1.0'?><stream:stream xmlns='%s' xmlns:stream='"
		    XML_NS_STREAM "'%s", xs->cls->ns, xs->cls->decls != NULL ? xs->cls->decls : "");
	if (!xs->initiating) {
		/* 4.7.3: the receiving entity gives every stream an id. */
		new_id(xs);
		evbuffer_add_printf(out, " id='%s'", xs->id);
	}
	if (from != NULL) {
		evbuffer_add(out, " from='", 7);
		xml_escape_attr(out, from);
		evbuffer_add(out, "'", 1);
	}
	if (to != NULL) {
		evbuffer_add(out, " to='", 5);
		xml_escape_attr(out, to);
		evbuffer_add(out, "'", 1);
	}
	if (!xs->cls->no_version)
		evbuffer_add(out, " version='1.0'", 14);
	if (xs->cls->lang != NULL)
		evbuffer_add_printf(out, " xml:lang='%s'", xs->cls->lang);
	if (xs->framer != NULL)
		evbuffer_add(out, "/>", 2);
	else
		evbuffer_add(out, ">", 1);
	msg_end(xs);
	xs->header_sent = 1;
}

void
xstream_send(struct xstream *xs, const xml_elem *e)
{
	if (xs->closing)
		return;
	if (xs->framer != NULL) {
		/* RFC 7395 3.3.3: each stanza one message, fully qualified. */
		xml_serialize_qualified(e, xs->cls->ns, xs->msg);
		msg_end(xs);
	} else {
		xml_serialize(e, xs->cls->ns, conn_out(xs->conn));
	}
	/* A reader that does not keep up is cut off rather than allowed to
	 * pin the server's memory. */
	if ((xs->framer != NULL ? xs->framer->queued(xs->framer_arg) : conn_queued(xs->conn)) >
	    xs->max_send_queue)
		xstream_error(xs, "resource-constraint", "send queue full");
}

void
xstream_send_features(struct xstream *xs, const xml_elem *features)
{
	struct evbuffer *out;

	if (xs->closing)
		return;
	out = out_buf(xs);
	/* Written with the stream prefix, as the header declared it; framed,
	 * the message declares it (RFC 7395 3.3.3). */
	if (xs->framer != NULL)
		evbuffer_add_printf(out, "<stream:features xmlns:stream='" XML_NS_STREAM
		    "' xmlns='%s'>", xs->cls->ns);
	else
		evbuffer_add(out, "<stream:features>", 17);
	for (xml_elem *child = xml_first_child(features); child != NULL;
	    child = xml_next_sibling(child))
		xml_serialize(child, xs->cls->ns, out);
	evbuffer_add(out, "</stream:features>", 18);
	msg_end(xs);
}

/* ---------------------------------------------------------------- */
/* Restarts, errors, closing.                                         */

void
xstream_restart(struct xstream *xs)
{
	xs->header_sent = 0;
	xml_stream_restart(xs->xp);
}

void
xstream_starttls(struct xstream *xs, SSL *ssl, int client)
{
	if (xs->starttls != NULL)
		SSL_free(xs->starttls);
	xs->starttls = ssl;
	xs->starttls_client = client != 0;
	/* RFC 6120 5.4.3.3: the stream restarts over TLS; nothing after
	 * this element is parsed as this stream. */
	xml_stream_restart(xs->xp);
}

void
xstream_proceed(struct xstream *xs, SSL *ssl)
{
	if (ssl == NULL) {
		xstream_puts(xs, "<failure xmlns='" NS_TLS "'/></stream:stream>");
		xstream_close(xs);
		return;
	}
	xstream_puts(xs, "<proceed xmlns='" NS_TLS "'/>");
	xstream_starttls(xs, ssl, 0);
}

SSL *
xstream_ssl(const struct xstream *xs)
{
	return conn_ssl(xs->conn);
}

void
xstream_error(struct xstream *xs, const char *condition, const char *text)
{
	xstream_error_app(xs, condition, NULL, text);
}

void
xstream_error_app(struct xstream *xs, const char *condition, const char *app,
    const char *text)
{
	struct evbuffer *out;

	if (xs->closing)
		return;
	if (conn_tls_waiting(xs->conn)) {
		/* After <proceed/> the plain stream is over and the peer
		 * reads TLS (RFC 6120 5.4.2.3): no stream error, the TCP
		 * connection is closed (5.4.3.2). */
		log_info(xs->tag, "closing before TLS: <%s/>%s%s", condition,
		    text ? ": " : "", text ? text : "");
		xstream_close(xs);
		return;
	}
	/* A framer without a socket of its own (BOSH) always has a way to
	 * the peer. */
	if (conn_is_up(xs->conn) || (xs->framer != NULL && xs->ws == NULL)) {
		if (!xs->header_sent) {
			/* 4.9.1.2: a header comes first. */
			if (xs->cls->header_first != NULL)
				xs->cls->header_first(xs);
			else
				xstream_send_header(xs, NULL, NULL);
		}
		out = out_buf(xs);
		evbuffer_add_printf(out, "<stream:error%s><%s xmlns='" NS_STREAMS "'/>",
		    xs->framer != NULL ? " xmlns:stream='" XML_NS_STREAM "'" : "", condition);
		if (app != NULL)
			evbuffer_add(out, app, strlen(app));
		if (text != NULL) {
			evbuffer_add_printf(out, "<text xmlns='" NS_STREAMS "'>");
			xml_escape_attr(out, text);
			evbuffer_add_printf(out, "</text>");
		}
		if (xs->framer != NULL) {
			/* RFC 7395 3.6: the error, then <close/>. */
			evbuffer_add_printf(out, "</stream:error>");
			msg_end(xs);
			evbuffer_add(out, "<close xmlns='" NS_FRAMING "'/>", sizeof(NS_FRAMING) + 16);
			msg_end(xs);
		} else {
			evbuffer_add_printf(out, "</stream:error></stream:stream>");
		}
	}
	log_info(xs->tag, "stream error <%s/>%s%s", condition, text ? ": " : "",
	    text ? text : "");
	xstream_close(xs);
}

void
xstream_end(struct xstream *xs)
{
	if (xs->closing)
		return;
	if (xs->framer != NULL)
		/* RFC 7395 3.6.1 */
		xstream_puts(xs, "<close xmlns='" NS_FRAMING "'/>");
	else
		xstream_puts(xs, "</stream:stream>");
	xstream_close(xs);
}

void
xstream_close(struct xstream *xs)
{
	if (xs->closing)
		return;
	xs->closing = 1;
	if (xs->cls->closing != NULL)
		xs->cls->closing(xs);
	/* The framing's close first (the WebSocket's closing handshake). */
	if (xs->framer != NULL)
		xs->framer->close(xs->framer_arg);
	conn_close(xs->conn);
}

void
xstream_set_timer(struct xstream *xs, unsigned seconds)
{
	conn_set_timer(xs->conn, seconds * 1000);
}

void
xstream_set_timer_ms(struct xstream *xs, unsigned ms)
{
	conn_set_timer(xs->conn, ms);
}

void
xstream_cancel_timer(struct xstream *xs)
{
	conn_cancel_timer(xs->conn);
}

/* ---------------------------------------------------------------- */
/* Every stream of a set.                                             */

static void
shutdown_task(struct worker *w, void *a, uint64_t b)
{
	struct conn_set *set = a;
	struct conn *k, *next;

	conn_set_stop(set, w);
	for (k = conn_set_first(set, w); k != NULL; k = next) {
		struct xstream *xs = conn_arg(k);

		next = conn_next(k);
		if (xs->closing)
			continue;
		if (xs->cls->shutdown != NULL)
			xs->cls->shutdown(xs);
		xstream_error(xs, "system-shutdown", NULL);
	}
}

static void
shutdown_end_task(struct worker *w, void *a, uint64_t b)
{
	struct conn_set *set = a;
	struct conn *k, *next;

	/* Peers that do not read their last bytes are not waited for. */
	for (k = conn_set_first(set, w); k != NULL; k = next) {
		struct xstream *xs = conn_arg(k);

		next = conn_next(k);
		xs->cls->end(xs, CONN_END_CLOSED, "shutting down");
	}
}

void
xstream_shutdown_all(struct conn_set *set, unsigned max_ms)
{
	struct timespec ts = { 0, SHUTDOWN_POLL_MS * 1000 * 1000 };

	if (set == NULL)
		return;
	worker_post_all(shutdown_task, set, 0);
	/* Streams close after their last bytes went out (the lingering
	 * close), bounded. */
	for (unsigned i = 0; i < max_ms / SHUTDOWN_POLL_MS && conn_set_count(set) > 0; i++)
		nanosleep(&ts, NULL);
	if (conn_set_count(set) > 0) {
		worker_post_all(shutdown_end_task, set, 0);
		worker_sync_all();
	}
}

/* The sweep's visit (conn_set_sweep): a stream quiet for hibernate_after
 * seconds gives its parser back; its next bytes take one again. */
static void
idle_visit(void *arg)
{
	struct xstream *xs = arg;
	const struct conf *conf = conf_local();
	uint64_t after = (uint64_t)conf->hibernate_after * 1000;
	uint64_t quiet = clock_now_ms() - *xs->last_input_ms;

	if (xs->closing)
		return;
	if (xs->ws != NULL && conf->websocket_ping_interval > 0) {
		/* RFC 7395 3.7: WebSocket pings, not whitespace, keep the
		 * connection alive; the pong is input. A peer that stays
		 * quiet for an interval after our ping is gone. The sweep
		 * visits each stream every ten seconds. */
		uint64_t ival = (uint64_t)conf->websocket_ping_interval * 1000;
		uint64_t now = clock_now_ms();

		if (xs->ping_ms != 0 && *xs->last_input_ms < xs->ping_ms && now - xs->ping_ms >= ival) {
			xstream_error(xs, "connection-timeout", "no answer to a WebSocket ping");
			return;
		}
		if (quiet >= ival && (xs->ping_ms == 0 || *xs->last_input_ms >= xs->ping_ms)) {
			xstream_ping(xs);
			xs->ping_ms = now;
		}
	}
	if (after == 0)
		return;
	if (clock_now_ms() - *xs->last_input_ms >= after && xml_stream_hibernate(xs->xp))
		log_debug(xs->tag, "idle: parser given back");
}

int
xstream_hibernate_idle(struct conn_set *set)
{
	return conn_set_sweep(set, idle_visit);
}
