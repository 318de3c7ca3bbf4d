/*
 * listener_conf.c - the listen section of xmppd.yml: one entry per socket
 * to bind (doc/configuration.md, "Listeners"), read for listener.c.
 * Registered with the loader by the composition root (src/xmppd.c).
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <yaml.h>

#include "core/acl.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "net/listener.h"

static conf_key_fn key_listen, key_ip, key_module;

static const struct conf_key top_keys[] = {
	{ "listen",                key_listen,        0, 0, 0 },
};

#define L(field) offsetof(struct conf_listen, field)

/* Indexes into listen_keys, for the required keys and derived defaults. */
enum { LK_PORT, LK_IP, LK_MODULE, LK_TLS, LK_STARTTLS, LK_MAX_STANZA, LK_SHAPER, LK_SECURE,
	LK_PROXY_PROTOCOL };

/* RFC 6120 13.12 (4): a server must accept stanzas of at least 10000 bytes. */
static const struct conf_key listen_keys[] = {
	{ "port",              conf_key_port,   L(port), 1, 65535 },
	{ "ip",                key_ip,          L(ip), 0, 0 },
	{ "module",            key_module,      L(module), 0, 0 },
	{ "tls",               conf_key_bool,   L(tls), 0, 0 },
	{ "starttls_required", conf_key_bool,   L(starttls_required), 0, 0 },
	{ "max_stanza_size",   conf_key_size,   L(max_stanza_size), 10000, 64 * CONF_MIB },
	{ "shaper",            conf_key_string, L(shaper), 0, 0 },
	/* module: http only: a plain listener behind a TLS-terminating
	 * proxy counts as encrypted (Prosody's consider_bosh_secure). */
	{ "secure",            conf_key_bool,   L(secure), 0, 0 },
	/* Behind a proxy (net/proxy.h): a PROXY header starts every
	 * connection; listen_check_refs wants trusted_proxies with it. */
	{ "proxy_protocol",    conf_key_bool,   L(proxy_protocol), 0, 0 },
};

static int
key_ip(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	char **out = CONF_FIELD(char *, base, k);
	struct in6_addr a6;
	struct in_addr a4;

	if (conf_get_string(l, k->name, val, out) < 0)
		return -1;
	if (inet_pton(AF_INET6, *out, &a6) != 1 && inet_pton(AF_INET, *out, &a4) != 1)
		return conf_fail(l, val, "'ip' expects an IPv4 or IPv6 address, "
		    "such as \"::\" or \"127.0.0.1\"");
	return 0;
}

static int
key_module(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	static const char *const words[] = { "c2s", "s2s", "http", NULL };
	static const int values[] = { CONF_LISTEN_C2S, CONF_LISTEN_S2S, CONF_LISTEN_HTTP };
	int v;

	if (conf_get_word(l, val, words, values, "'module' expects c2s, s2s or http", &v) < 0)
		return -1;
	*CONF_FIELD(enum conf_listen_module, base, k) = (enum conf_listen_module)v;
	return 0;
}

static int
is_any_addr(int af, const unsigned char *a)
{
	static const unsigned char zero[16];

	return memcmp(a, zero, af == AF_INET ? 4 : 16) == 0;
}

/*
 * Two listeners collide if they share a port and their addresses overlap:
 * equal, or one is the IPv6 wildcard (dual-stack, it takes IPv4 too), or one
 * is 0.0.0.0 and the other IPv4. With SO_REUSEPORT such a pair would bind
 * and split connections between them instead of failing.
 */
static int
listen_overlap(const struct conf_listen *a, const struct conf_listen *b)
{
	unsigned char aa[16], ab[16];
	int fa, fb;

	if (a->port != b->port)
		return 0;
	fa = inet_pton(AF_INET6, a->ip, aa) == 1 ? AF_INET6 : AF_INET;
	fb = inet_pton(AF_INET6, b->ip, ab) == 1 ? AF_INET6 : AF_INET;
	if (fa == AF_INET)
		(void)inet_pton(AF_INET, a->ip, aa);
	if (fb == AF_INET)
		(void)inet_pton(AF_INET, b->ip, ab);
	if ((fa == AF_INET6 && is_any_addr(fa, aa)) ||
	    (fb == AF_INET6 && is_any_addr(fb, ab)))
		return 1;
	if (fa != fb)
		return 0;
	if (is_any_addr(fa, aa) || is_any_addr(fb, ab))
		return 1;
	return memcmp(aa, ab, fa == AF_INET ? 4 : 16) == 0;
}

static int
parse_listener(struct conf_loader *l, yaml_node_t *e, struct conf_listen *li)
{
	int seen[CONF_NKEYS(listen_keys)] = { 0 };

	li->line = conf_line(e);
	li->starttls_required = 1;
	if (conf_check_tag(l, e) < 0)
		return -1;
	if (e->type != YAML_MAPPING_NODE)
		return conf_fail(l, e, "'listen' entry expects a mapping with 'port' "
		    "and 'module'");
	if (conf_read_map(l, e, listen_keys, CONF_NKEYS(listen_keys), li, seen) < 0)
		return -1;
	if (!seen[LK_PORT])
		return conf_fail(l, e, "'listen' entry needs 'port'");
	if (!seen[LK_MODULE])
		return conf_fail(l, e, "'listen' entry needs 'module'");
	if (li->ip == NULL && (li->ip = strdup("::")) == NULL)
		return conf_fail(l, e, "out of memory");
	if (!seen[LK_MAX_STANZA])
		li->max_stanza_size = li->module == CONF_LISTEN_S2S ? 524288 : 262144;
	if (li->module == CONF_LISTEN_HTTP) {
		/* TLS from the first byte or none: no STARTTLS in HTTP. */
		if (seen[LK_STARTTLS])
			return conf_fail_at(l, seen[LK_STARTTLS], "'starttls_required' is for "
			    "c2s and s2s listeners; an http listener has 'tls' or 'secure'");
		li->starttls_required = 0;
	} else if (seen[LK_SECURE]) {
		return conf_fail_at(l, seen[LK_SECURE], "'secure' is for http listeners");
	}
	return 0;
}

static int
key_listen(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	yaml_node_item_t *it;
	size_t n;

	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_SEQUENCE_NODE)
		return conf_fail(l, val, "'listen' expects a list of listeners");
	n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
	if (n > 0 && (c->listen = calloc(n, sizeof(*c->listen))) == NULL)
		return conf_fail(l, val, "out of memory");
	for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(l->doc, *it);
		struct conf_listen *li = &c->listen[c->nlisten++];

		if (parse_listener(l, e, li) < 0)
			return -1;
		for (size_t i = 0; i + 1 < c->nlisten; i++)
			if (listen_overlap(&c->listen[i], li))
				return conf_fail(l, e, "port %u on '%s' is already used by "
				    "the listener on line %d", li->port, li->ip,
				    c->listen[i].line);
	}
	return 0;
}

/* What a listener needs from the rest of the file. */
static int
listen_check(struct conf_loader *l)
{
	const struct conf *c = l->c;

	for (size_t i = 0; i < c->nlisten; i++) {
		const struct conf_listen *li = &c->listen[i];
		int line;

		/* A listener that must speak TLS cannot start without a
		 * certificate: say so now rather than at the first client. */
		if ((li->tls || li->starttls_required) && c->ncertfiles == 0)
			return conf_fail_at(l, li->line, "listener on port %u needs TLS "
			    "but no 'certfiles' are set", li->port);
		/* A full-size stanza must fit in the queue to a reader. */
		if (li->max_stanza_size > c->max_send_queue) {
			line = conf_value_line(l, "max_send_queue");
			return conf_fail_at(l, line ? line : li->line,
			    "'max_send_queue' (%zu) is smaller than 'max_stanza_size' "
			    "(%zu) of the listener on line %d",
			    c->max_send_queue, li->max_stanza_size, li->line);
		}
	}
	return 0;
}

/* A listener's shaper, which the shaper section may define further down. */
static int
listen_check_refs(struct conf_loader *l)
{
	const struct conf *c = l->c;
	char buf[80];

	for (size_t i = 0; i < c->nlisten; i++) {
		const struct conf_listen *li = &c->listen[i];

		/* PROXY protocol: a header is believed only from a trusted
		 * proxy; with none, every connection would be refused. */
		if (li->proxy_protocol && c->ntrusted_proxies == 0)
			return conf_fail_at(l, li->line, "listener on port %u has "
			    "'proxy_protocol' but 'trusted_proxies' is empty: every "
			    "connection would be refused", li->port);
		if (li->shaper == NULL || strcmp(li->shaper, "none") == 0)
			continue;
		if (shaper_find(c, li->shaper) == NULL)
			return conf_fail_at(l, li->line, "listener on port %u refers to "
			    "undefined shaper '%s'", li->port,
			    conf_shown(li->shaper, strlen(li->shaper), buf, sizeof(buf)));
	}
	return 0;
}

const struct conf_section listen_conf_section = {
	.name = "listen",
	.keys = top_keys,
	.nkeys = CONF_NKEYS(top_keys),
	.check = listen_check,
	.check_refs = listen_check_refs,
};
