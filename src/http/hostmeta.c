/*
 * hostmeta.c - XEP-0156 discovery on the HTTP listener:
 * /.well-known/host-meta (XRD, RFC 6415) and /.well-known/host-meta.json
 * (JRD) list the WebSocket and BOSH endpoints of the host the request
 * names, if those endpoints are served here, and only as https:// and
 * wss:// URLs (XEP-0156 2.2 and 3: a client must not be pointed at an
 * unencrypted transport). Public (CORS: any origin), as a page on another
 * origin looks them up.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "core/conf.h"
#include "http/http.h"

#define REL_WS "urn:xmpp:alt-connections:websocket"
#define REL_BOSH "urn:xmpp:alt-connections:xbosh"

struct link {
	const char *rel;
	char href[600];
};

/* The secure links of this request: 0 to 2. */
static size_t
links(struct http_req *r, struct link out[2])
{
	const char *base = http_req_base_url(r);
	size_t n = 0;

	if (base == NULL || strncmp(base, "https://", 8) != 0)
		return 0;
	if (http_route_exists("/http-bind")) {
		out[n].rel = REL_BOSH;
		snprintf(out[n].href, sizeof(out[n].href), "%s/http-bind", base);
		n++;
	}
	if (http_route_exists("/xmpp-websocket")) {
		out[n].rel = REL_WS;
		snprintf(out[n].href, sizeof(out[n].href), "wss://%s/xmpp-websocket", base + 8);
		n++;
	}
	return n;
}

static void
host_meta(struct http_req *r, void *arg)
{
	int json = arg != NULL;
	const char *host = http_req_host(r);
	const char *cors = http_cors(r, "GET");
	char headers[512];
	struct link l[2];
	size_t n;

	if (strcmp(http_req_method(r), "OPTIONS") == 0) {
		http_respond(r, 204, NULL, "", 0, cors);
		return;
	}
	if (strcmp(http_req_method(r), "GET") != 0 && strcmp(http_req_method(r), "HEAD") != 0) {
		http_respond(r, 405, "text/plain; charset=utf-8", "GET only\n", 9, "Allow: GET\r\n");
		return;
	}
	/* The host the request names must be one of ours. */
	if (host == NULL || !conf_is_local_host(http_req_conf(r), host)) {
		http_error(r, 404, "no such host here");
		return;
	}
	/* Any origin may read it, whether or not it sent Origin. */
	snprintf(headers, sizeof(headers), "%s", *cors != '\0' ? cors :
	    "Access-Control-Allow-Origin: *\r\n");
	n = links(r, l);
	if (json) {
		json_t *root = json_object(), *arr = json_array();
		char *s;

		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, json_pack("{s:s, s:s}", "rel", l[i].rel,
			    "href", l[i].href));
		json_object_set_new(root, "links", arr);
		s = json_dumps(root, JSON_INDENT(2));
		json_decref(root);
		if (s == NULL) {
			http_error(r, 500, "out of memory");
			return;
		}
		http_respond(r, 200, "application/json", s, strlen(s), headers);
		free(s);
	} else {
		struct evbuffer *b = evbuffer_new();

		if (b == NULL) {
			http_error(r, 500, "out of memory");
			return;
		}
		evbuffer_add_printf(b, "<?xml version='1.0' encoding='utf-8'?>\n"
		    "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n");
		/* The hrefs are our base URL (checked for quotes and angle
		 * brackets when configured, or a plain Host) and a path. */
		for (size_t i = 0; i < n; i++)
			evbuffer_add_printf(b, "  <Link rel='%s' href='%s'/>\n", l[i].rel, l[i].href);
		evbuffer_add_printf(b, "</XRD>\n");
		http_respond(r, 200, "application/xrd+xml; charset=utf-8",
		    (const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b), headers);
		evbuffer_free(b);
	}
}

int
http_hostmeta_init(void)
{
	static int json = 1;

	if (http_route_add("/.well-known/host-meta", host_meta, NULL, NULL) < 0 ||
	    http_route_add("/.well-known/host-meta.json", host_meta, &json, NULL) < 0)
		return -1;
	return 0;
}
