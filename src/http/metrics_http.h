/*
 * metrics_http.h - the Prometheus endpoint, GET /metrics on the HTTP
 * listener (metrics_http.c; doc/admin.md, "Metrics").
 */
#ifndef XMPPD_HTTP_METRICS_HTTP_H
#define XMPPD_HTTP_METRICS_HTTP_H

/* Registers the /metrics route; after http_init. 0 or -1. */
int http_metrics_init(void);

#endif
