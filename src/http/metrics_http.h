/*
 * metrics_http.h - the Prometheus endpoint, GET /metrics on the HTTP
 * listener (metrics_http.c; doc/admin.md, "Metrics").
 */
#ifndef XMPPD_HTTP_METRICS_HTTP_H
#define XMPPD_HTTP_METRICS_HTTP_H

struct evbuffer;
struct http_req;

/* Registers the /metrics route; after http_init. 0 or -1. */
int http_metrics_init(void);

/*
 * fn(r) is 1 when r carries an administrator's credentials (ctl/api.c,
 * api_request_authorized): a client that metrics_access refuses is let in
 * with them, and gets 401 with wrong ones. Set once at start-up.
 */
void http_metrics_set_auth(int (*fn)(struct http_req *));

/* Appends what GET /metrics answers: the text format 0.0.4, or OpenMetrics
 * (with its # EOF) when openmetrics. Any thread: every figure is read
 * atomically. Also xmppctl metrics (ctl/ctl.c). */
void metrics_render(struct evbuffer *b, int openmetrics);

#endif
