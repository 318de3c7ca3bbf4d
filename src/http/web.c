/*
 * web.c - the admin page (/admin/) and the Converse.js web chat (/chat) on
 * the HTTP listener (web.h). Both are files read at start-up (static.h);
 * the chat page itself is written per request, as its WebSocket URL and
 * default domain come from the request (http_req_base_url, the Host).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/conf.h"
#include "core/conf_keys.h"
#include "core/log.h"
#include "http/http.h"
#include "http/static.h"
#include "http/web.h"

#ifndef XMPPD_WWW_DIR
#define XMPPD_WWW_DIR "/usr/local/share/xmppd/www"
#endif
#ifndef XMPPD_CONVERSEJS_DIR
#define XMPPD_CONVERSEJS_DIR "/usr/local/share/xmppd/conversejs"
#endif

#define C(field) offsetof(struct conf, field)

static const struct conf_key web_keys[] = {
	{ "admin_page",      conf_key_bool, C(admin_page), 0, 0 },
	{ "admin_page_dir",  conf_key_path, C(admin_page_dir), 0, 0 },
	{ "web_chat",        conf_key_bool, C(web_chat), 0, 0 },
	{ "conversejs_path", conf_key_path, C(conversejs_path), 0, 0 },
};

static void
web_defaults(struct conf *c)
{
	c->admin_page = 1;
	c->web_chat = 1;
}

const struct conf_section web_conf_section = {
	.name = "web",
	.keys = web_keys,
	.nkeys = CONF_NKEYS(web_keys),
	.defaults = web_defaults,
};

/* NULL when the route is there but its files could not be read (503). */
static struct http_static *admin_files, *chat_files;

/*
 * The admin page only talks to its own origin (/api/, /metrics); it may not
 * be framed (clickjacking an administrator) and its files are what they say
 * they are. Revalidated on every load (no-cache) so that an upgrade shows.
 */
#define ADMIN_HEADERS \
	"Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; " \
	"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; " \
	"form-action 'self'\r\n" \
	"X-Frame-Options: DENY\r\n" \
	"X-Content-Type-Options: nosniff\r\n" \
	"Referrer-Policy: no-referrer\r\n"

/*
 * Converse.js loads chunks, emojis, sounds and a WebAssembly module (OMEMO)
 * from its dist/ and talks WebSocket to us; it sets inline styles. Only
 * our scripts run, and the page may not be framed.
 */
#define CHAT_HEADERS \
	"Content-Security-Policy: default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; " \
	"style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: https:; " \
	"media-src 'self' data: blob: https:; connect-src 'self' ws: wss:; " \
	"frame-ancestors 'none'; base-uri 'self'\r\n" \
	"X-Frame-Options: DENY\r\n" \
	"X-Content-Type-Options: nosniff\r\n" \
	"Referrer-Policy: no-referrer\r\n"

/* ---------------------------------------------------------------- */
/* /admin                                                             */

static void
admin_request(struct http_req *r, void *arg)
{
	(void)arg;
	if (strcmp(http_req_path(r), "/admin") == 0) {
		http_respond(r, 301, "text/plain; charset=utf-8", "moved\n", 6,
		    "Location: /admin/\r\n");
		return;
	}
	if (admin_files == NULL) {
		http_error(r, 503, "the admin page is not installed (admin_page_dir, "
		    "see doc/admin.md, Web admin)");
		return;
	}
	http_static_handler(r, admin_files);
}

/* ---------------------------------------------------------------- */
/* /chat                                                              */

/* Reads the configuration the page carries and starts Converse.js (an ES
 * module, as converse.min.js is since version 11, run after it); a
 * file of its own, as the page's policy runs no inline script. */
static const char chat_init_js[] =
    "/* xmppd web chat: starts Converse.js with the settings of the page. */\n"
    "(function () {\n"
    "  'use strict';\n"
    "  var el = document.getElementById('xmppd-chat-config');\n"
    "  converse.initialize(JSON.parse(el.textContent));\n"
    "})();\n";

/* The settings for this request (Converse.js's configuration options). */
static char *
chat_settings(struct http_req *r, const char *base)
{
	const struct conf *c = http_req_conf(r);
	const char *host = http_req_host(r);
	char ws[700], assets[700];
	json_t *o;
	char *s;

	if (host == NULL || !conf_is_local_host(c, host))
		host = c->hosts[0];
	/* RFC 7395 3.1: the WebSocket of this listener, ws:// or wss:// as
	 * the page came. */
	if (strncmp(base, "https://", 8) == 0)
		snprintf(ws, sizeof(ws), "wss://%s/xmpp-websocket", base + 8);
	else if (strncmp(base, "http://", 7) == 0)
		snprintf(ws, sizeof(ws), "ws://%s/xmpp-websocket", base + 7);
	else
		return NULL;
	snprintf(assets, sizeof(assets), "%s/chat/dist/", base);
	o = json_pack("{s:s, s:s, s:s, s:b, s:s, s:b, s:b, s:s, s:s, s:b, s:b}",
	    "websocket_url", ws,
	    "assets_path", assets,
	    "view_mode", "fullscreen",
	    "auto_login", 0,
	    "default_domain", host,
	    "discover_connection_methods", 0,
	    "allow_non_roster_messaging", 1,
	    "i18n", "en",
	    "loglevel", "warn",
	    "play_sounds", 0,
	    "show_controlbox_by_default", 1);
	if (o == NULL)
		return NULL;
	/* Escaped '/': no "</script>" can end the element early. */
	s = json_dumps(o, JSON_COMPACT | JSON_ESCAPE_SLASH);
	json_decref(o);
	return s;
}

static void
chat_page(struct http_req *r)
{
	const char *base = http_req_base_url(r);
	char *settings, *page;
	int n;

	if (base == NULL) {
		http_error(r, 400, "no usable Host header");
		return;
	}
	if ((settings = chat_settings(r, base)) == NULL) {
		http_error(r, 500, "out of memory");
		return;
	}
	/* base is a plain authority (http_req_base_url) or a public_base_url
	 * checked for quotes and angle brackets: safe in an attribute. */
	n = asprintf(&page,
	    "<!DOCTYPE html>\n"
	    "<html lang=\"en\">\n"
	    "<head>\n"
	    "<meta charset=\"utf-8\">\n"
	    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
	    "<title>Chat</title>\n"
	    "<link rel=\"stylesheet\" type=\"text/css\" href=\"%s/chat/dist/converse.min.css\">\n"
	    "<script type=\"application/json\" id=\"xmppd-chat-config\">%s</script>\n"
	    "<script type=\"module\" src=\"%s/chat/dist/converse.min.js\"></script>\n"
	    "<script type=\"module\" src=\"%s/chat/init.js\"></script>\n"
	    "</head>\n"
	    "<body class=\"converse-fullscreen\">\n"
	    "<noscript>This chat needs JavaScript.</noscript>\n"
	    "</body>\n"
	    "</html>\n", base, settings, base, base);
	free(settings);
	if (n < 0) {
		http_error(r, 500, "out of memory");
		return;
	}
	http_respond(r, 200, "text/html; charset=utf-8", page, (size_t)n,
	    CHAT_HEADERS "Cache-Control: no-store\r\n");
	free(page);
}

static void
chat_request(struct http_req *r, void *arg)
{
	const char *path = http_req_path(r), *method = http_req_method(r);

	(void)arg;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		http_respond(r, 405, "text/plain; charset=utf-8", "GET or HEAD only\n", 17,
		    "Allow: GET, HEAD\r\n");
		return;
	}
	if (chat_files == NULL) {
		http_error(r, 503, "the web chat is not available: Converse.js is not installed "
		    "(build with npm, or set conversejs_path; see doc/admin.md, Web chat)");
		return;
	}
	if (strcmp(path, "/chat") == 0 || strcmp(path, "/chat/") == 0)
		chat_page(r);
	else if (strcmp(path, "/chat/init.js") == 0)
		http_respond(r, 200, "text/javascript; charset=utf-8", chat_init_js,
		    sizeof(chat_init_js) - 1, "X-Content-Type-Options: nosniff\r\n"
		    "Cache-Control: no-cache\r\n");
	else if (strncmp(path, "/chat/dist/", 11) == 0)
		http_static_handler(r, chat_files);
	else
		http_error(r, 404, "not found");
}

/* ---------------------------------------------------------------- */

int
web_init(const struct conf *c)
{
	const char *err, *dir;

	if (c->admin_page) {
		dir = c->admin_page_dir != NULL ? c->admin_page_dir : XMPPD_WWW_DIR "/admin";
		admin_files = http_static_load(dir, "/admin/", "no-cache", ADMIN_HEADERS, &err);
		if (admin_files == NULL)
			log_warning("web", "admin page: %s; /admin/ answers 503", err);
		if (http_route_add("/admin", admin_request, NULL, NULL) < 0 ||
		    http_route_add("/admin/", admin_request, NULL, NULL) < 0)
			return -1;
	}
	if (c->web_chat) {
		size_t len, bytes;

		dir = c->conversejs_path != NULL ? c->conversejs_path : XMPPD_CONVERSEJS_DIR;
		/* The dist/ files do not change under a version (their names
		 * do not carry a hash, so a day, not a year). */
		chat_files = http_static_load(dir, "/chat/dist/", "public, max-age=86400",
		    "X-Content-Type-Options: nosniff\r\n", &err);
		if (chat_files != NULL && http_static_get(chat_files, "converse.min.js", &len) == NULL) {
			http_static_free(&chat_files);
			err = "no converse.min.js there";
		}
		if (chat_files == NULL)
			log_warning("web", "web chat: %s; /chat answers 503", err);
		else
			log_info("web", "web chat: Converse.js from %s (%zu files, %zu bytes)", dir,
			    http_static_count(chat_files, &bytes), bytes);
		if (http_route_add("/chat", chat_request, NULL, NULL) < 0 ||
		    http_route_add("/chat/", chat_request, NULL, NULL) < 0)
			return -1;
	}
	return 0;
}

void
web_free(void)
{
	http_static_free(&admin_files);
	http_static_free(&chat_files);
}
