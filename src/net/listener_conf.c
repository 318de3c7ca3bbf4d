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

static conf_key_fn key_listen, key_ip, key_module, key_component_hosts;

static const struct conf_key top_keys[] = {
	{ "listen",                key_listen,        0, 0, 0 },
};

#define L(field) offsetof(struct conf_listen, field)

/* Indexes into listen_keys, for the required keys and derived defaults. */
enum { LK_PORT, LK_IP, LK_MODULE, LK_TLS, LK_STARTTLS, LK_MAX_STANZA, LK_SHAPER, LK_SECURE,
	LK_PROXY_PROTOCOL, LK_HOSTS };

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
	/* module: component only (below, "External components"). */
	{ "hosts",             key_component_hosts, 0, 0, 0 },
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
	static const char *const words[] = { "c2s", "s2s", "http", "component", NULL };
	static const int values[] = { CONF_LISTEN_C2S, CONF_LISTEN_S2S, CONF_LISTEN_HTTP,
		CONF_LISTEN_COMPONENT };
	int v;

	if (conf_get_word(l, val, words, values, "'module' expects c2s, s2s, http or component",
	    &v) < 0)
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

/* ---------------------------------------------------------------- */
/* External components (XEP-0114): module: component, hosts.          */

/*
 * hosts: { DOMAIN: { password: SECRET }, ... }, ejabberd_service's shape.
 * Each domain is prepared; its password is required and not empty.
 */
static int
key_component_hosts(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val,
    void *base)
{
	static const struct conf_key host_keys[] = {
		{ "password", conf_key_string, offsetof(struct conf_component_host, password), 0, 0 },
	};
	struct conf_listen *li = base;
	char buf[80];
	size_t n;

	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_MAPPING_NODE || (n = conf_npairs(val)) == 0)
		return conf_fail(l, val, "'hosts' of a listener expects a mapping of "
		    "component domain: {password: SECRET}");
	if ((li->components = calloc(n, sizeof(*li->components))) == NULL)
		return conf_fail(l, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start;
	    p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		struct conf_component_host *h;
		int seen[1] = { 0 };
		const char *name;
		char *dom;

		if ((name = conf_key_name(l, kn, "a component domain")) == NULL)
			return -1;
		if ((dom = conf_prep_domain(name, strlen(name))) == NULL)
			return conf_fail(l, kn, "'hosts' key '%s' is not a valid domain name",
			    conf_shown(name, strlen(name), buf, sizeof(buf)));
		for (size_t i = 0; i < li->ncomponents; i++)
			if (strcmp(li->components[i].domain, dom) == 0) {
				free(dom);
				return conf_fail(l, kn, "'hosts' has '%s' twice (first on line %d)",
				    conf_shown(name, strlen(name), buf, sizeof(buf)),
				    li->components[i].line);
			}
		h = &li->components[li->ncomponents++];
		h->domain = dom;
		h->line = conf_line(kn);
		if (conf_check_tag(l, vn) < 0)
			return -1;
		if (vn->type != YAML_MAPPING_NODE)
			return conf_fail(l, vn, "component '%s' expects {password: SECRET}", dom);
		if (conf_read_map(l, vn, host_keys, CONF_NKEYS(host_keys), h, seen) < 0)
			return -1;
		if (h->password == NULL || h->password[0] == '\0')
			return conf_fail(l, vn, "component '%s' needs a non-empty 'password'", dom);
	}
	return 0;
}

/* What a component listener needs and what only it may have. */
static int
component_listener_check(struct conf_loader *l, yaml_node_t *e, struct conf_listen *li,
    const int *seen)
{
	if (li->module != CONF_LISTEN_COMPONENT) {
		if (seen[LK_HOSTS])
			return conf_fail_at(l, seen[LK_HOSTS], "'hosts' is only for a listener "
			    "with 'module: component'");
		return 0;
	}
	if (!seen[LK_HOSTS])
		return conf_fail(l, e, "a 'module: component' listener needs 'hosts' "
		    "(component domain: {password: SECRET})");
	/* XEP-0114 has no STARTTLS: the stream is in the clear, or direct
	 * TLS with 'tls: true'. */
	if (seen[LK_STARTTLS] && li->starttls_required)
		return conf_fail_at(l, seen[LK_STARTTLS], "'starttls_required' does not apply "
		    "to a component listener (XEP-0114 has no STARTTLS; use 'tls: true')");
	li->starttls_required = 0;
	return 0;
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
		li->max_stanza_size = li->module == CONF_LISTEN_C2S || li->module == CONF_LISTEN_HTTP ?
		    262144 : 524288;
	if (li->module == CONF_LISTEN_HTTP) {
		/* TLS from the first byte or none: no STARTTLS in HTTP. */
		if (seen[LK_STARTTLS])
			return conf_fail_at(l, seen[LK_STARTTLS], "'starttls_required' is for "
			    "c2s and s2s listeners; an http listener has 'tls' or 'secure'");
		li->starttls_required = 0;
	} else if (seen[LK_SECURE]) {
		return conf_fail_at(l, seen[LK_SECURE], "'secure' is for http listeners");
	}
	return component_listener_check(l, e, li, seen);
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

/*
 * A component domain is the component's alone: not one of our hosts
 * (their stanzas go to the session manager), and on one listener only.
 * (A module's service domain is refused when the module claims it,
 * xmppd_service_register.)
 */
static int
component_domains_check(struct conf_loader *l)
{
	const struct conf *c = l->c;

	for (size_t i = 0; i < c->nlisten; i++)
		for (size_t j = 0; j < c->listen[i].ncomponents; j++) {
			const struct conf_component_host *h = &c->listen[i].components[j];

			if (conf_is_local_host(c, h->domain))
				return conf_fail_at(l, h->line, "component domain '%s' is one of "
				    "'hosts'", h->domain);
			for (size_t k = 0; k < i; k++)
				for (size_t m = 0; m < c->listen[k].ncomponents; m++)
					if (strcmp(c->listen[k].components[m].domain,
					    h->domain) == 0)
						return conf_fail_at(l, h->line, "component "
						    "domain '%s' is already on the listener on "
						    "line %d", h->domain, c->listen[k].line);
		}
	return 0;
}

const struct conf_component_host *
conf_component_find(const struct conf *c, const char *domain, const struct conf_listen **l_r)
{
	if (domain == NULL)
		return NULL;
	for (size_t i = 0; i < c->nlisten; i++)
		for (size_t j = 0; j < c->listen[i].ncomponents; j++)
			if (strcmp(c->listen[i].components[j].domain, domain) == 0) {
				if (l_r != NULL)
					*l_r = &c->listen[i];
				return &c->listen[i].components[j];
			}
	return NULL;
}

/* What a listener needs from the rest of the file. */
static int
listen_check(struct conf_loader *l)
{
	const struct conf *c = l->c;

	if (component_domains_check(l) < 0)
		return -1;
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
