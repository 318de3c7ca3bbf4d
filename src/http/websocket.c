/*
 * websocket.c - the WebSocket opening handshake (websocket.h).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "core/conf.h"
#include "core/log.h"
#include "http/http.h"
#include "http/websocket.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   /* RFC 6455 1.3 */

int
http_ws_accept_key(const char *key, char out[29])
{
	unsigned char raw[20], dec[20], md[SHA_DIGEST_LENGTH];
	char buf[64 + sizeof(WS_GUID)];
	size_t n = strlen(key);

	/* 4.2.1 5: a base64-encoded 16-byte value (24 characters). */
	if (n != 24 || EVP_DecodeBlock(dec, (const unsigned char *)key, 24) != 18 ||
	    key[22] != '=' || key[23] != '=')
		return -1;
	snprintf(buf, sizeof(buf), "%s" WS_GUID, key);
	SHA1((const unsigned char *)buf, strlen(buf), md);
	memcpy(raw, md, sizeof(raw));
	EVP_EncodeBlock((unsigned char *)out, raw, 20);
	return 0;
}

/* 1 if the comma-separated list has token (case-blind). */
static int
has_token(const char *list, const char *token)
{
	size_t tl = strlen(token);

	while (list != NULL && *list != '\0') {
		size_t n;

		list += strspn(list, " \t,");
		n = strcspn(list, ",");
		while (n > 0 && (list[n - 1] == ' ' || list[n - 1] == '\t'))
			n--;
		if (n == tl && strncasecmp(list, token, tl) == 0)
			return 1;
		list = strchr(list, ',');
	}
	return 0;
}

static int
origin_allowed(const struct conf *c, const char *origin)
{
	/* No list: any origin. XMPP over WebSocket authenticates with SASL
	 * inside the stream, so a page from another origin gains nothing a
	 * script could not do with its own connection (no cookie, no
	 * ambient credential): the list is for operators who want it. */
	if (c->nwebsocket_origins == 0)
		return 1;
	if (origin == NULL)
		return 1;      /* not a browser (RFC 6455 4.2.1 8: browsers send it) */
	for (size_t i = 0; i < c->nwebsocket_origins; i++)
		if (strcmp(c->websocket_origins[i], "*") == 0 ||
		    strcasecmp(c->websocket_origins[i], origin) == 0)
			return 1;
	return 0;
}

struct conn *
http_ws_accept(struct http_req *r, const char *subprotocol)
{
	const char *upgrade = http_req_header(r, "Upgrade");
	const char *connection = http_req_header(r, "Connection");
	const char *key = http_req_header(r, "Sec-WebSocket-Key");
	const char *version = http_req_header(r, "Sec-WebSocket-Version");
	const char *protocols = http_req_header(r, "Sec-WebSocket-Protocol");
	char accept[29], head[256];

	if (strcmp(http_req_method(r), "GET") != 0) {
		http_respond(r, 405, "text/plain; charset=utf-8", "WebSocket only\n", 15,
		    "Allow: GET\r\n");
		return NULL;
	}
	/* RFC 6455 4.2.1 3, 4: a plain GET is told what this is. */
	if (upgrade == NULL || strcasecmp(upgrade, "websocket") != 0 ||
	    !has_token(connection, "upgrade")) {
		http_respond(r, 426, "text/plain; charset=utf-8",
		    "this is a WebSocket endpoint (RFC 7395)\n", 40,
		    "Upgrade: websocket\r\nConnection: Upgrade\r\n");
		return NULL;
	}
	/* 4.2.2 4: the versions we speak. */
	if (version == NULL || strcmp(version, "13") != 0) {
		http_respond(r, 426, "text/plain; charset=utf-8", "WebSocket version 13 only\n", 26,
		    "Sec-WebSocket-Version: 13\r\n");
		return NULL;
	}
	if (key == NULL || http_ws_accept_key(key, accept) < 0) {
		http_error(r, 400, "bad Sec-WebSocket-Key");
		return NULL;
	}
	if (!origin_allowed(http_req_conf(r), http_req_header(r, "Origin"))) {
		http_error(r, 403, "origin not allowed");
		return NULL;
	}
	/* RFC 7395 3.2: the client offers "xmpp"; a server that would not
	 * speak it must not complete the handshake with it. */
	if (subprotocol != NULL && !has_token(protocols, subprotocol)) {
		http_error(r, 400, "the xmpp WebSocket subprotocol is required (RFC 7395)");
		return NULL;
	}
	snprintf(head, sizeof(head), "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n", accept,
	    subprotocol != NULL ? "Sec-WebSocket-Protocol: " : "",
	    subprotocol != NULL ? subprotocol : "", subprotocol != NULL ? "\r\n" : "");
	http_req_write(r, head, strlen(head));
	return http_req_take(r);
}
