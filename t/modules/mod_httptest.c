/*
 * mod_httptest - HTTP handlers through the module ABI (1.3), for
 * t/integration/t1400-http.py:
 *  - /test/echo and everything under /test/tree/ answer 200 with one
 *    line per thing the request told the handler: method, path, query,
 *    the X-Test header, the body's length, secure, the base URL and the
 *    client address family; an X-Echo header comes back;
 *  - /test/silent returns without answering (the core answers 500);
 *  - registering /xmpp-websocket (the core's) must fail: /test/claimed
 *    answers "refused" or "taken" accordingly.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <xmppd.h>

static int ws_claim;

static void
echo(xmppd_http_req *req, void *ud)
{
	char out[2048];
	size_t blen;
	const char *q = xmppd_http_query(req), *x = xmppd_http_header(req, "X-Test");
	const char *base = xmppd_http_base_url(req);
	const struct sockaddr *sa = xmppd_http_client(req);
	char addr[64] = "?";
	int n;

	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
	(void)xmppd_http_body(req, &blen);
	n = snprintf(out, sizeof(out), "method=%s\npath=%s\nquery=%s\nx-test=%s\nbody=%zu\n"
	    "secure=%d\nbase=%s\nfamily=%s\nclient=%s\nud=%s\n", xmppd_http_method(req), xmppd_http_path(req),
	    q ? q : "-", x ? x : "-", blen, xmppd_http_secure(req), base ? base : "-",
	    sa->sa_family == AF_INET ? "inet" : sa->sa_family == AF_INET6 ? "inet6" : "other",
	    addr, (const char *)ud);
	xmppd_http_respond(req, 200, "text/plain", out, (size_t)n, "X-Echo: yes\r\n");
}

static void
silent(xmppd_http_req *req, void *ud)
{
	(void)req;
	(void)ud;
}

static void
claimed(xmppd_http_req *req, void *ud)
{
	const char *s = ws_claim < 0 ? "refused\n" : "taken\n";

	(void)ud;
	xmppd_http_respond(req, 200, "text/plain", s, strlen(s), NULL);
}

static int
load(xmppd_ctx *ctx)
{
	static char tag[] = "echo";

	ws_claim = xmppd_http_register(ctx, "/xmpp-websocket", echo, tag);
	if (xmppd_http_register(ctx, "/test/echo", echo, tag) < 0 ||
	    xmppd_http_register(ctx, "/test/tree/", echo, tag) < 0 ||
	    xmppd_http_register(ctx, "/test/silent", silent, NULL) < 0 ||
	    xmppd_http_register(ctx, "/test/claimed", claimed, NULL) < 0)
		return -1;
	return 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_httptest",
	.version = "1.0",
	.load = load,
};
