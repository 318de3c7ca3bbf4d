/*
 * http.h - the HTTP/1.1 listener (`listen` with `module: http`): requests
 * parsed with http-parser on a conn (stream/conn.h: TLS, shaper, per-IP
 * count), routed by path to handlers that transports and modules
 * register, answered with keep-alive, within limits (doc/configuration.md,
 * "HTTP"). Why not evhttp: doc/architecture.md, "The HTTP listener".
 *
 * A request lives on its connection's worker and is handled there; a
 * handler answers at once (http_respond) or later (http_req_hold, for a
 * long poll), or takes the connection over (http_req_take, WebSocket).
 * One request per connection is handled at a time (pipelined requests
 * wait in the input, in order: RFC 9112 9.3.2).
 */
#ifndef XMPPD_HTTP_HTTP_H
#define XMPPD_HTTP_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct conf;
struct conf_listen;
struct conn;
struct http_req;
struct worker;

/* A handler: answers r, holds it or takes its connection. */
typedef void (*http_handler_fn)(struct http_req *r, void *arg);

/*
 * Routes requests whose path is path (exact), or starts with path when it
 * ends in '/', to fn on the request's worker. Main thread, any time
 * (modules register at load): the table is replaced whole and the old one
 * retired after a quiescent point by the caller (http_route_remove), as
 * the registries are. 0, or -1 (the path is taken, or out of memory).
 */
int http_route_add(const char *path, http_handler_fn fn, void *arg, const void *owner);
/*
 * The same for a route whose request bodies are streamed (ABI 1.8): a
 * request with a body reaches fn after its head, before its body is read,
 * and fn either answers at once (a refusal: the body is not read and the
 * connection closes after the answer) or takes the body with
 * http_req_stream. Requests without a body reach fn when complete, as
 * on other routes. http_max_body_size does not apply: the handler bounds
 * the body.
 */
int http_route_add_stream(const char *path, http_handler_fn fn, void *arg, const void *owner);
/* Removes the routes owner added; returns how many. Main thread. */
unsigned http_route_remove(const void *owner);
/* Cuts the bodies being streamed to owner's routes (their abort runs, the
 * client gets 503), on every worker, from tasks posted now: call
 * worker_sync_all after it. Main thread (a module unloads). */
void http_abort_owner(const void *owner);
/* 1 if a handler serves path. */
int http_route_exists(const char *path);
/* XEP-0156 host-meta (hostmeta.c); http_init registers it. */
int http_hostmeta_init(void);

/* Sets the HTTP listener up (its accept handler); before the workers run.
 * 0 or -1. */
int http_init(unsigned nworkers);
void http_shutdown(unsigned max_ms);
void http_free(void);
/* Open HTTP connections (not counting those taken over). */
unsigned long http_connection_count(void);

/* ---------------------------------------------------------------- */
/* The request (valid until it is answered, or its connection drops).   */

const char *http_req_method(const struct http_req *r);   /* "GET" */
const char *http_req_path(const struct http_req *r);     /* "/http-bind", decoded no further */
const char *http_req_query(const struct http_req *r);    /* after '?', or NULL */
/* A header's value (the first, for a repeated one), name case-blind. */
const char *http_req_header(const struct http_req *r, const char *name);
const char *http_req_body(const struct http_req *r, size_t *len_r);
/* The client: the socket's peer, or the address a trusted proxy gave
 * (PROXY protocol, X-Forwarded-For from trusted_proxies). */
const struct sockaddr *http_req_client(const struct http_req *r);
/* The request came over TLS, or the listener says `secure: true`. */
int http_req_secure(const struct http_req *r);
/* The Host header's name without the port, lowercased; or NULL. */
const char *http_req_host(const struct http_req *r);
const struct conf *http_req_conf(const struct http_req *r);
const struct conf_listen *http_req_listener(const struct http_req *r);
struct worker *http_req_worker(const struct http_req *r);
/* The URL base ("https://chat.example.org:5443") for URLs handed out for
 * this request: public_base_url if set, else the request's scheme and
 * Host. NULL when there is neither. */
const char *http_req_base_url(struct http_req *r);

/* ---------------------------------------------------------------- */
/* Answers.                                                           */

/*
 * The response: status, a content type (or NULL), the body, and extra
 * header lines ("Name: value\r\n" each, or NULL). CORS headers are the
 * handler's (http_cors). Date, Content-Length, Connection and, for errors,
 * a text body are added. The request is over.
 */
void http_respond(struct http_req *r, int status, const char *content_type, const char *body,
    size_t len, const char *headers);
/* An error answer with a one-line text body. */
void http_error(struct http_req *r, int status, const char *text);
/* The CORS headers of a public endpoint (BOSH, host-meta): any origin,
 * the methods given; "" when the request has no Origin. */
const char *http_cors(const struct http_req *r, const char *methods);

/* The handler answers later: r stays valid until http_respond, or until
 * its connection drops, when gone(r, arg) is called (r then freed). */
void http_req_hold(struct http_req *r, void (*gone)(struct http_req *r, void *arg), void *arg);

/*
 * Takes the connection over after headers (e.g. a 101 answer) were
 * written with http_req_write: the HTTP layer forgets it; what the client
 * sent after the request is left in the conn's input. The caller conn_moves
 * it to its own set and ops at once.
 */
struct conn *http_req_take(struct http_req *r);
void http_req_write(struct http_req *r, const char *s, size_t len);

/* ---------------------------------------------------------------- */
/* Streamed bodies and file answers (ABI 1.8).                        */

/* What a handler does with a streamed body; every call on r's worker. */
struct http_body_ops {
	/* The next piece of the body: 0 to go on, or a status (4xx, 5xx)
	 * that refuses the request (answered with it; the connection
	 * closes; abort follows). */
	int (*chunk)(struct http_req *r, const char *p, size_t n, void *arg);
	/* The whole body came: answer r now (http_respond). */
	void (*end)(struct http_req *r, void *arg);
	/* r goes without end (a chunk refused it, a limit, the client went):
	 * clean up. The last call with r, which must not be answered. */
	void (*abort)(struct http_req *r, void *arg);
};
/*
 * The handler takes r's body: chunk for each piece as it is read (never
 * more than the input buffer at once), then end, or abort. Answers
 * "100 Continue" to a client that waits for it (RFC 9110 10.1.1). On a
 * request that was complete when the handler ran (no body), chunk runs
 * once for what was buffered (if any) and end at once. ops and arg must
 * live until end or abort.
 */
void http_req_stream(struct http_req *r, const struct http_body_ops *ops, void *arg);
/*
 * Answers r (a GET or HEAD) with the file open on fd (taken: closed when
 * sent) of size bytes: 200, or for a GET with a Range of one range 206
 * with Content-Range, or 416 with Content-Range: bytes * /SIZE (RFC 9110
 * 14). Accept-Ranges and Content-Length are added to headers. The file
 * is read as the client takes it, at most FILE_HIGH ahead (http.c).
 */
void http_respond_file(struct http_req *r, int fd, uint64_t size, const char *content_type,
    const char *headers);

#endif
