/*
 * s2s_conf.c - the federation keys of xmppd.yml, s2s_* (doc/federation.md):
 * STARTTLS and dialback policy, who may federate, pinned addresses, the
 * links' timers and queue, the resolver's nameservers. Registered with the
 * loader by the composition root (src/xmppd.c).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "core/acl.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "s2s/s2s.h"

static conf_key_fn key_s2s_starttls, key_s2s_hosts;

#define C(field) offsetof(struct conf, field)

/* s2s_access names an access rule, checked in s2s_check_refs. */
static const struct conf_key s2s_keys[] = {
	{ "s2s_use_starttls",      key_s2s_starttls,  C(s2s_use_starttls), 0, 0 },
	{ "s2s_dialback",          conf_key_bool,     C(s2s_dialback), 0, 0 },
	{ "s2s_secret",            conf_key_string,   C(s2s_secret), 0, 0 },
	{ "s2s_access",            conf_key_string,   C(s2s_access), 0, 0 },
	{ "s2s_hosts",             key_s2s_hosts,     0, 0, 0 },
	{ "s2s_idle_timeout",      conf_key_uint,     C(s2s_idle_timeout), 0, 86400 },
	{ "s2s_keepalive",         conf_key_uint,     C(s2s_keepalive), 0, 86400 },
	{ "s2s_keepalive_timeout", conf_key_uint,     C(s2s_keepalive_timeout), 1, 3600 },
	{ "s2s_connect_timeout",   conf_key_uint,     C(s2s_connect_timeout), 1, 3600 },
	{ "s2s_max_queue",         conf_key_uint,     C(s2s_max_queue), 1, 1000000 },
	{ "s2s_resolv_conf",       conf_key_path,     C(s2s_resolv_conf), 0, 0 },
};

static void
s2s_defaults(struct conf *c)
{
	c->s2s_use_starttls = CONF_S2S_TLS_REQUIRED;
	c->s2s_dialback = 1;
	c->s2s_idle_timeout = 600;
	c->s2s_keepalive = 60;
	c->s2s_keepalive_timeout = 30;
	c->s2s_connect_timeout = 30;
	c->s2s_max_queue = 1000;
}

/* s2s_use_starttls: false | optional | required (ejabberd's values). */
static int
key_s2s_starttls(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	static const char *const words[] = { "false", "no", "optional", "required", "true", NULL };
	static const int values[] = { CONF_S2S_TLS_FALSE, CONF_S2S_TLS_FALSE, CONF_S2S_TLS_OPTIONAL,
	    CONF_S2S_TLS_REQUIRED, CONF_S2S_TLS_REQUIRED };

	static const char expected[] = "'s2s_use_starttls' expects false, optional or required";

	/* Unquoted only: "false" in quotes is not YAML's false. */
	if (conf_check_tag(l, val) < 0)
		return -1;
	if (conf_plain(val) == NULL)
		return conf_fail(l, val, "%s", expected);
	return conf_get_word(l, val, words, values, expected, CONF_FIELD(int, base, k));
}

/*
 * s2s_hosts: DOMAIN: "HOST:PORT" (or "HOST", port 5269; "[::1]:5269" for an
 * IPv6 address). Pins a remote domain to an address instead of DNS.
 */
static int
key_s2s_hosts(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	size_t n;

	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_MAPPING_NODE)
		return conf_fail(l, val, "'s2s_hosts' expects a mapping of domain: \"host:port\"");
	if ((n = conf_npairs(val)) > 0 && (c->s2s_hosts = calloc(n, sizeof(*c->s2s_hosts))) == NULL)
		return conf_fail(l, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start;
	    p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		unsigned long long port = 5269;
		struct conf_s2s_host *h;
		const char *name, *s, *colon, *end, *hs;
		char buf[80], *dom;
		size_t len, hlen;

		if ((name = conf_key_name(l, kn, "a domain name")) == NULL)
			return -1;
		if ((dom = conf_prep_domain(name, strlen(name))) == NULL)
			return conf_fail(l, kn, "'s2s_hosts' key '%s' is not a valid domain name",
			    conf_shown(name, strlen(name), buf, sizeof(buf)));
		for (size_t i = 0; i < c->ns2s_hosts; i++)
			if (strcmp(c->s2s_hosts[i].domain, dom) == 0) {
				free(dom);
				return conf_fail(l, kn, "'s2s_hosts' has '%s' twice (first on "
				    "line %d)", conf_shown(name, strlen(name), buf, sizeof(buf)),
				    c->s2s_hosts[i].line);
			}
		h = &c->s2s_hosts[c->ns2s_hosts++];
		h->domain = dom;
		h->line = conf_line(kn);
		if (conf_check_tag(l, vn) < 0)
			return -1;
		if ((s = conf_scalar(vn, &len)) == NULL || len == 0)
			return conf_fail(l, vn, "'s2s_hosts' expects \"host:port\" for '%s'",
			    conf_shown(name, strlen(name), buf, sizeof(buf)));
		if (s[0] == '[') {
			const char *rb = strchr(s, ']');

			if (rb == NULL || (rb[1] != '\0' && rb[1] != ':'))
				return conf_fail(l, vn, "'%s': expected \"[IPv6 address]:port\"",
				    conf_shown(s, len, buf, sizeof(buf)));
			hs = s;
			hlen = (size_t)(rb - s + 1);
			colon = rb[1] == ':' ? rb + 1 : NULL;
		} else {
			colon = strchr(s, ':');
			if (colon != NULL && strrchr(s, ':') != colon)
				return conf_fail(l, vn, "'%s': write an IPv6 address as "
				    "\"[address]:port\"", conf_shown(s, len, buf, sizeof(buf)));
			hs = s;
			hlen = colon != NULL ? (size_t)(colon - s) : len;
		}
		if (!conf_host_shape_ok(hs, hlen))
			return conf_fail(l, vn, "'%s' is not a host name or address",
			    conf_shown(s, len, buf, sizeof(buf)));
		h->host = hs[0] == '[' ? strndup(hs + 1, hlen - 2) : strndup(hs, hlen);
		if (h->host == NULL)
			return conf_fail(l, vn, "out of memory");
		if (colon != NULL && (conf_ull(colon + 1, &port, &end) < 0 || *end != '\0' ||
		    port < 1 || port > 65535))
			return conf_fail(l, vn, "'%s': the port must be a number from 1 to 65535",
			    conf_shown(s, len, buf, sizeof(buf)));
		h->port = (uint16_t)port;
	}
	return 0;
}

/* The access rule may be defined after s2s_access. */
static int
s2s_check_refs(struct conf_loader *l)
{
	const char *rule = l->c->s2s_access;
	char buf[80];

	if (rule != NULL && !access_rule_exists(l->c, rule))
		return conf_fail_at(l, conf_value_line(l, "s2s_access"), "'s2s_access' "
		    "refers to undefined access rule '%s'",
		    conf_shown(rule, strlen(rule), buf, sizeof(buf)));
	return 0;
}

const struct conf_section s2s_conf_section = {
	.name = "s2s",
	.keys = s2s_keys,
	.nkeys = CONF_NKEYS(s2s_keys),
	.defaults = s2s_defaults,
	.check_refs = s2s_check_refs,
};
