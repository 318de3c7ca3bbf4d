/*
 * http_conf.c - the HTTP listener's keys of xmppd.yml: its limits, the
 * public base URL and WebSocket's allowed origins and keepalive
 * (doc/configuration.md, "HTTP"). Registered with the loader by the
 * composition root (src/xmppd.c).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "core/conf.h"
#include "core/conf_keys.h"
#include "http/http_conf.h"

#define C(field) offsetof(struct conf, field)

static conf_key_fn key_base_url, key_origins;

static const struct conf_key http_keys[] = {
	{ "http_max_header_size",     conf_key_size, C(http_max_header_size), 1024, CONF_MIB },
	{ "http_max_body_size",       conf_key_size, C(http_max_body_size), 1024, CONF_GIB },
	{ "http_request_timeout",     conf_key_uint, C(http_request_timeout), 1, 3600 },
	{ "http_idle_timeout",        conf_key_uint, C(http_idle_timeout), 1, 86400 },
	{ "http_max_requests_per_ip", conf_key_uint, C(http_max_requests_per_ip), 0, 1000000 },
	{ "public_base_url",          key_base_url,  C(public_base_url), 0, 0 },
	{ "websocket_origins",        key_origins,   0, 0, 0 },
	{ "websocket_ping_interval",  conf_key_uint, C(websocket_ping_interval), 0, 86400 },
	/* BOSH (XEP-0124): the client's wait, inactivity and pause are
	 * capped by these (section 7.1). */
	{ "bosh_max_wait",            conf_key_uint, C(bosh_max_wait), 1, 3600 },
	{ "bosh_max_inactivity",      conf_key_uint, C(bosh_max_inactivity), 2, 3600 },
	{ "bosh_max_pause",           conf_key_uint, C(bosh_max_pause), 0, 86400 },
};

static void
http_defaults(struct conf *c)
{
	c->http_max_header_size = 8 * CONF_KIB;
	c->http_max_body_size = CONF_MIB;
	c->http_request_timeout = 10;
	c->http_idle_timeout = 60;
	c->http_max_requests_per_ip = 100;
	c->websocket_ping_interval = 60;
	c->bosh_max_wait = 60;
	c->bosh_max_inactivity = 60;   /* Prosody's bosh_max_inactivity */
	c->bosh_max_pause = 120;
}

/* "https://host[:port][/path]" (or http://, for a listener behind a TLS
 * proxy that rewrites nothing): kept without a trailing '/'. */
static int
key_base_url(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	char **out = CONF_FIELD(char *, base, k);
	const char *rest;
	size_t n;

	if (conf_get_string(l, k->name, val, out) < 0)
		return -1;
	if (strncmp(*out, "https://", 8) == 0)
		rest = *out + 8;
	else if (strncmp(*out, "http://", 7) == 0)
		rest = *out + 7;
	else
		return conf_fail(l, val, "'public_base_url' expects an http:// or https:// URL");
	n = strcspn(rest, "/");
	if (n == 0 || !conf_host_shape_ok(rest, strcspn(rest, ":/")) ||
	    strpbrk(*out, " '\"<>\\") != NULL)
		return conf_fail(l, val, "'public_base_url' expects a URL with a host name");
	n = strlen(*out);
	while (n > 0 && (*out)[n - 1] == '/')
		(*out)[--n] = '\0';
	return 0;
}

/* A list of origins ("https://chat.example.org"), compared as written. */
static int
key_origins(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	yaml_node_item_t *it;
	size_t n;

	(void)k;
	(void)base;
	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_SEQUENCE_NODE)
		return conf_fail(l, val, "'websocket_origins' expects a list of origins");
	n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
	if (n > 0 && (c->websocket_origins = calloc(n, sizeof(char *))) == NULL)
		return conf_fail(l, val, "out of memory");
	for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(l->doc, *it);
		char **o = &c->websocket_origins[c->nwebsocket_origins];

		if (conf_get_string(l, "websocket_origins", e, o) < 0)
			return -1;
		c->nwebsocket_origins++;
	}
	return 0;
}

const struct conf_section http_conf_section = {
	.name = "http",
	.keys = http_keys,
	.nkeys = CONF_NKEYS(http_keys),
	.defaults = http_defaults,
};
