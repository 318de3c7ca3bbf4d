/*
 * acl_conf.c - the access control sections of xmppd.yml: acl, access_rules
 * and shaper (doc/configuration.md, "Access control"), read into the
 * struct conf that acl.c evaluates. A section of the core, built into the
 * loader.
 *
 * Other sections name access rules (c2s_access, s2s_access) and shapers
 * (a listener's shaper); they check those names with access_rule_exists
 * and shaper_find (acl.h) in their check_refs.
 */
#include "config.h"

#include <arpa/inet.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <yaml.h>

#include "core/acl.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "xmpp/jid.h"

static conf_key_fn key_acl, key_access_rules, key_shapers, key_trusted_proxies;

static const struct conf_key acl_keys[] = {
	{ "acl",                   key_acl,           0, 0, 0 },
	{ "access_rules",          key_access_rules,  0, 0, 0 },
	{ "shaper",                key_shapers,       0, 0, 0 },
	{ "trusted_proxies",       key_trusted_proxies, 0, 0, 0 },
};

/* Enough for any link; the limit only keeps the arithmetic in range. */
#define SHAPER_RATE_MAX (1ULL << 40)

enum { SK_RATE, SK_BURST };

static const struct conf_key shaper_keys[] = {
	{ "rate",       conf_key_u64, offsetof(struct conf_shaper, rate), 1, SHAPER_RATE_MAX },
	{ "burst_size", conf_key_u64, offsetof(struct conf_shaper, burst), 1, SHAPER_RATE_MAX },
};

/* ------------------------------------------------------------------ */

static const char *const acl_kind_names[] = {
	[CONF_ACL_USER] = "user",
	[CONF_ACL_SERVER] = "server",
	[CONF_ACL_IP] = "ip",
	[CONF_ACL_USER_REGEXP] = "user_regexp",
	[CONF_ACL_SERVER_REGEXP] = "server_regexp",
	[CONF_ACL_RESOURCE] = "resource",
};

/* "all" and "none" are built in, as acls and as access rules. */
static int
is_builtin(const char *name)
{
	return strcmp(name, "all") == 0 || strcmp(name, "none") == 0;
}

/*
 * An address or network: "192.0.2.1", "192.0.2.0/24", "2001:db8::/32".
 * IPv4 is kept in its IPv4-mapped IPv6 form (RFC 4291 2.5.5.2) so that one
 * comparison serves both families; bits past the prefix are cleared.
 * Returns 0, -1 if s is not an address, or -2 with *max_r set if the
 * prefix is out of range.
 */
static int
parse_network(const char *s, unsigned char addr[16], unsigned *prefix_r,
    unsigned *max_r)
{
	char buf[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/'), *end;
	size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	unsigned long long plen;
	struct in_addr a4;
	unsigned max, off;

	if (alen == 0 || alen >= sizeof(buf))
		return -1;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET6, buf, addr) == 1) {
		max = 128;
		off = 0;
	} else if (inet_pton(AF_INET, buf, &a4) == 1) {
		memset(addr, 0, 10);
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &a4, 4);
		max = 32;
		off = 96;
	} else {
		return -1;
	}
	plen = max;
	if (slash != NULL &&
	    (conf_ull(slash + 1, &plen, &end) < 0 || *end != '\0' || plen > max)) {
		*max_r = max;
		return -2;
	}
	*prefix_r = (unsigned)plen + off;
	for (unsigned bit = *prefix_r; bit < 128; bit++)
		addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
	return 0;
}

/* One value of an acl: e is a non-empty scalar. */
static int
parse_matcher(struct conf_loader *l, enum conf_acl_kind kind, yaml_node_t *e,
    struct conf_acl_matcher *m)
{
	size_t len;
	const char *s = conf_scalar(e, &len), *at;
	char buf[80], ebuf[160], *node, *dom;
	unsigned max;
	regex_t *re;
	int rc;

	m->kind = kind;
	m->line = conf_line(e);
	switch (kind) {
	case CONF_ACL_USER:
		/* nodeprep refuses '@' and '/', so a node ends at the first '@'. */
		at = memchr(s, '@', len);
		node = jid_nodeprep(s, at != NULL ? (size_t)(at - s) : len);
		dom = at != NULL ? conf_prep_domain(at + 1, len - (size_t)(at - s) - 1) : NULL;
		if (node == NULL || (at != NULL && dom == NULL)) {
			free(node);
			free(dom);
			return conf_fail(l, e, "'%s' is not a user: expected node@domain, or "
			    "a node alone for that user on every host",
			    conf_shown(s, len, buf, sizeof(buf)));
		}
		if (at == NULL) {
			m->value = node;
			return 0;
		}
		if (asprintf(&m->value, "%s@%s", node, dom) < 0)
			m->value = NULL;
		free(node);
		free(dom);
		break;
	case CONF_ACL_SERVER:
		if ((m->value = conf_prep_domain(s, len)) == NULL)
			return conf_fail(l, e, "'%s' is not a valid domain name",
			    conf_shown(s, len, buf, sizeof(buf)));
		return 0;
	case CONF_ACL_RESOURCE:
		if ((m->value = jid_resourceprep(s, len)) == NULL)
			return conf_fail(l, e, "'%s' is not a valid resource",
			    conf_shown(s, len, buf, sizeof(buf)));
		return 0;
	case CONF_ACL_IP:
		rc = parse_network(s, m->addr, &m->prefix, &max);
		if (rc == -1)
			return conf_fail(l, e, "'%s' is not an IP address or network, such "
			    "as \"192.0.2.0/24\" or \"2001:db8::/32\"",
			    conf_shown(s, len, buf, sizeof(buf)));
		if (rc == -2)
			return conf_fail(l, e, "'%s' has a bad prefix length: expected 0 to "
			    "%u", conf_shown(s, len, buf, sizeof(buf)), max);
		m->value = strdup(s);
		break;
	case CONF_ACL_USER_REGEXP:
	case CONF_ACL_SERVER_REGEXP:
		if ((re = calloc(1, sizeof(*re))) == NULL)
			return conf_fail(l, e, "out of memory");
		if ((rc = regcomp(re, s, REG_EXTENDED | REG_NOSUB)) != 0) {
			regerror(rc, re, ebuf, sizeof(ebuf));
			free(re);
			return conf_fail(l, e, "'%s' is not a valid regular expression: %s",
			    conf_shown(s, len, buf, sizeof(buf)), ebuf);
		}
		m->compiled = re;
		m->value = strdup(s);
		break;
	}
	if (m->value == NULL)
		return conf_fail(l, e, "out of memory");
	return 0;
}

/* kind: a string or a list of strings, appended to a->m. */
static int
parse_acl_kind(struct conf_loader *l, struct conf_acl *a, enum conf_acl_kind kind,
    yaml_node_t *val)
{
	const char *kname = acl_kind_names[kind];
	yaml_node_item_t one, *start, *top;
	struct conf_acl_matcher *m;
	size_t n;

	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type == YAML_SCALAR_NODE) {
		one = 0;        /* unused: val itself is the value */
		start = &one;
		top = start + 1;
	} else if (val->type == YAML_SEQUENCE_NODE) {
		start = val->data.sequence.items.start;
		top = val->data.sequence.items.top;
	} else {
		return conf_fail(l, val, "'%s' expects a string or a list of strings", kname);
	}
	n = (size_t)(top - start);
	if (n == 0)
		return 0;
	if ((m = realloc(a->m, (a->n + n) * sizeof(*a->m))) == NULL)
		return conf_fail(l, val, "out of memory");
	a->m = m;
	memset(a->m + a->n, 0, n * sizeof(*a->m));
	for (yaml_node_item_t *it = start; it < top; it++) {
		yaml_node_t *e = val->type == YAML_SCALAR_NODE ? val :
		    yaml_document_get_node(l->doc, *it);
		size_t len;

		if (conf_check_tag(l, e) < 0)
			return -1;
		if (conf_scalar(e, &len) == NULL || len == 0)
			return conf_fail(l, e, "'%s' expects a string or a list of strings",
			    kname);
		if (parse_matcher(l, kind, e, &a->m[a->n++]) < 0)
			return -1;
	}
	return 0;
}

static int
key_acl(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	size_t n;

	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_MAPPING_NODE)
		return conf_fail(l, val, "'acl' expects a mapping");
	if ((n = conf_npairs(val)) > 0 && (c->acls = calloc(n, sizeof(*c->acls))) == NULL)
		return conf_fail(l, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start;
	    p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		struct conf_acl *a;
		const char *name;
		char buf[80];

		if ((name = conf_key_name(l, kn, "an acl name")) == NULL)
			return -1;
		conf_shown(name, strlen(name), buf, sizeof(buf));
		if (is_builtin(name))
			return conf_fail(l, kn, "'%s' is a built-in acl and cannot be "
			    "defined", name);
		for (size_t i = 0; i < c->nacls; i++)
			if (strcmp(c->acls[i].name, name) == 0)
				return conf_fail(l, kn, "acl '%s' is defined twice (first on "
				    "line %d)", buf, c->acls[i].line);
		a = &c->acls[c->nacls++];
		a->line = conf_line(kn);
		if ((a->name = strdup(name)) == NULL)
			return conf_fail(l, kn, "out of memory");
		if (conf_check_tag(l, vn) < 0)
			return -1;
		if (vn->type != YAML_MAPPING_NODE)
			return conf_fail(l, vn, "acl '%s' expects a mapping of kinds to "
			    "values, such as {user: \"admin@example.org\"}", buf);
		for (yaml_node_pair_t *q = vn->data.mapping.pairs.start;
		    q < vn->data.mapping.pairs.top; q++) {
			yaml_node_t *kk = yaml_document_get_node(l->doc, q->key);
			yaml_node_t *kv = yaml_document_get_node(l->doc, q->value);
			const char *kind;
			size_t i;
			int first;

			if ((kind = conf_key_name(l, kk, "an acl kind")) == NULL)
				return -1;
			for (i = 0; i < CONF_NKEYS(acl_kind_names); i++)
				if (strcmp(kind, acl_kind_names[i]) == 0)
					break;
			if (i == CONF_NKEYS(acl_kind_names))
				return conf_fail(l, kk, "unknown acl kind '%s': expected user, "
				    "server, ip, user_regexp, server_regexp or resource",
				    conf_shown(kind, strlen(kind), buf, sizeof(buf)));
			if ((first = conf_earlier_key(l, vn, q, kind)) != 0)
				return conf_fail(l, kk, "'%s' is set twice (first on line %d)",
				    kind, first);
			if (parse_acl_kind(l, a, (enum conf_acl_kind)i, kv) < 0)
				return -1;
		}
	}
	return 0;
}

/* allow: ACL or deny: ACL, appended to rule r (the r-th access rule). */
static int
parse_rule_pair(struct conf_loader *l, size_t r, yaml_node_t *kn, yaml_node_t *vn)
{
	struct conf_access_rule *ar = &l->c->access_rules[r];
	const char *what, *acl;
	size_t len;
	char buf[80];
	void *grown;
	int allow;

	if ((what = conf_key_name(l, kn, "allow or deny")) == NULL)
		return -1;
	if (strcmp(what, "allow") == 0)
		allow = 1;
	else if (strcmp(what, "deny") == 0)
		allow = 0;
	else
		return conf_fail(l, kn, "unknown key '%s' in access rule '%s': expected "
		    "allow or deny", conf_shown(what, strlen(what), buf, sizeof(buf)),
		    ar->name);
	if (conf_check_tag(l, vn) < 0)
		return -1;
	if ((acl = conf_scalar(vn, &len)) == NULL || len == 0)
		return conf_fail(l, vn, "'%s' expects an acl name", what);

	if ((grown = realloc(ar->r, (ar->n + 1) * sizeof(*ar->r))) == NULL)
		return conf_fail(l, vn, "out of memory");
	ar->r = grown;
	ar->r[ar->n].allow = allow;
	ar->r[ar->n].line = conf_line(vn);
	if ((ar->r[ar->n].acl = strdup(acl)) == NULL)
		return conf_fail(l, vn, "out of memory");
	ar->n++;
	return 0;
}

/* One {allow: ACL} or {deny: ACL} in the list of rule r. */
static int
parse_rule_entry(struct conf_loader *l, size_t r, yaml_node_t *e)
{
	if (conf_check_tag(l, e) < 0)
		return -1;
	if (e->type != YAML_MAPPING_NODE || conf_npairs(e) != 1)
		return conf_fail(l, e, "access rule '%s' expects a list of entries, "
		    "each {allow: ACL} or {deny: ACL}", l->c->access_rules[r].name);
	return parse_rule_pair(l, r,
	    yaml_document_get_node(l->doc, e->data.mapping.pairs.start->key),
	    yaml_document_get_node(l->doc, e->data.mapping.pairs.start->value));
}

/*
 * NAME: [{allow: ACL}, {deny: ACL}, ...], or the short form of ejabberd's
 * own example file, NAME: {deny: ACL, allow: ACL}, read in file order (it
 * can say allow and deny once each; the list can say anything). Acl names
 * are checked in acl_check_refs, when every acl is known whatever the
 * order of the sections.
 */
static int
key_access_rules(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	size_t n;

	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_MAPPING_NODE)
		return conf_fail(l, val, "'access_rules' expects a mapping");
	if ((n = conf_npairs(val)) > 0 &&
	    (c->access_rules = calloc(n, sizeof(*c->access_rules))) == NULL)
		return conf_fail(l, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start;
	    p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		struct conf_access_rule *ar;
		const char *name;
		char buf[80];
		size_t r;

		if ((name = conf_key_name(l, kn, "an access rule name")) == NULL)
			return -1;
		conf_shown(name, strlen(name), buf, sizeof(buf));
		if (is_builtin(name))
			return conf_fail(l, kn, "'%s' is a built-in access rule and cannot "
			    "be defined", name);
		for (size_t i = 0; i < c->naccess_rules; i++)
			if (strcmp(c->access_rules[i].name, name) == 0)
				return conf_fail(l, kn, "access rule '%s' is defined twice "
				    "(first on line %d)", buf, c->access_rules[i].line);
		r = c->naccess_rules++;
		ar = &c->access_rules[r];
		ar->line = conf_line(kn);
		if ((ar->name = strdup(name)) == NULL)
			return conf_fail(l, kn, "out of memory");
		if (conf_check_tag(l, vn) < 0)
			return -1;
		if (vn->type == YAML_MAPPING_NODE) {
			for (yaml_node_pair_t *q = vn->data.mapping.pairs.start;
			    q < vn->data.mapping.pairs.top; q++) {
				yaml_node_t *qk = yaml_document_get_node(l->doc, q->key);
				int first;

				if (qk->type == YAML_SCALAR_NODE &&
				    (first = conf_earlier_key(l, vn, q,
				    (const char *)qk->data.scalar.value)) != 0)
					return conf_fail(l, qk, "'%s' is set twice (first on "
					    "line %d)", (const char *)qk->data.scalar.value,
					    first);
				if (parse_rule_pair(l, r, qk,
				    yaml_document_get_node(l->doc, q->value)) < 0)
					return -1;
			}
			if (conf_npairs(vn) == 0)
				return conf_fail(l, vn, "access rule '%s' expects a list of "
				    "entries, each {allow: ACL} or {deny: ACL}", buf);
			continue;
		}
		if (vn->type != YAML_SEQUENCE_NODE)
			return conf_fail(l, vn, "access rule '%s' expects a list of "
			    "entries, each {allow: ACL} or {deny: ACL}", buf);
		for (yaml_node_item_t *it = vn->data.sequence.items.start;
		    it < vn->data.sequence.items.top; it++)
			if (parse_rule_entry(l, r, yaml_document_get_node(l->doc, *it)) < 0)
				return -1;
	}
	return 0;
}

/*
 * NAME: RATE (bytes per second) or NAME: {rate: RATE, burst_size: BYTES}.
 * "none" is ejabberd's name for no shaper and is kept for that.
 */
static int
key_shapers(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	size_t n;

	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_MAPPING_NODE)
		return conf_fail(l, val, "'shaper' expects a mapping");
	if ((n = conf_npairs(val)) > 0 && (c->shapers = calloc(n, sizeof(*c->shapers))) == NULL)
		return conf_fail(l, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start;
	    p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		int seen[CONF_NKEYS(shaper_keys)] = { 0 };
		unsigned long long v;
		struct conf_shaper *sh;
		const char *name, *s, *end;
		char buf[80];

		if ((name = conf_key_name(l, kn, "a shaper name")) == NULL)
			return -1;
		conf_shown(name, strlen(name), buf, sizeof(buf));
		if (strcmp(name, "none") == 0)
			return conf_fail(l, kn, "'none' is the built-in absence of a shaper "
			    "and cannot be defined");
		for (size_t i = 0; i < c->nshapers; i++)
			if (strcmp(c->shapers[i].name, name) == 0)
				return conf_fail(l, kn, "shaper '%s' is defined twice (first "
				    "on line %d)", buf, c->shapers[i].line);
		sh = &c->shapers[c->nshapers++];
		sh->line = conf_line(kn);
		if ((sh->name = strdup(name)) == NULL)
			return conf_fail(l, kn, "out of memory");
		if (conf_check_tag(l, vn) < 0)
			return -1;
		if (vn->type == YAML_MAPPING_NODE) {
			if (conf_read_map(l, vn, shaper_keys, CONF_NKEYS(shaper_keys), sh, seen) < 0)
				return -1;
			if (!seen[SK_RATE])
				return conf_fail(l, vn, "shaper '%s' needs 'rate'", buf);
			if (!seen[SK_BURST])
				sh->burst = sh->rate;
			continue;
		}
		s = conf_plain(vn);
		if (s == NULL || conf_ull(s, &v, &end) < 0 || *end != '\0' ||
		    v < 1 || v > SHAPER_RATE_MAX)
			return conf_fail(l, vn, "shaper '%s' expects a rate in bytes per "
			    "second from 1 to %llu, or {rate: N, burst_size: M}", buf,
			    SHAPER_RATE_MAX);
		sh->rate = sh->burst = v;
	}
	return 0;
}

/*
 * trusted_proxies: [ADDRESS or NETWORK, ...], the proxies whose PROXY
 * header (a listener's proxy_protocol) or X-Forwarded-For is believed
 * (net/proxy.h). Default none; at most TRUSTED_PROXIES_MAX entries.
 */
#define TRUSTED_PROXIES_MAX 1024

static int
key_trusted_proxies(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val,
    void *base)
{
	struct conf *c = l->c;
	size_t n;

	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_SEQUENCE_NODE)
		return conf_fail(l, val, "'trusted_proxies' expects a list of addresses or "
		    "networks, such as [\"192.0.2.10\", \"2001:db8::/64\"]");
	if ((n = conf_nitems(val)) > TRUSTED_PROXIES_MAX)
		return conf_fail(l, val, "'trusted_proxies' has %zu entries: at most %d",
		    n, TRUSTED_PROXIES_MAX);
	if (n > 0 && (c->trusted_proxies = calloc(n, sizeof(*c->trusted_proxies))) == NULL)
		return conf_fail(l, val, "out of memory");
	for (yaml_node_item_t *it = val->data.sequence.items.start;
	    it < val->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(l->doc, *it);
		struct conf_net *net = &c->trusted_proxies[c->ntrusted_proxies];
		const char *s;
		size_t len;
		unsigned max;
		char buf[80];
		int rc;

		if (conf_check_tag(l, e) < 0)
			return -1;
		if ((s = conf_scalar(e, &len)) == NULL || len == 0)
			return conf_fail(l, e, "'trusted_proxies' expects a list of addresses "
			    "or networks");
		rc = parse_network(s, net->addr, &net->prefix, &max);
		if (rc == -1)
			return conf_fail(l, e, "'%s' is not an IP address or network, such "
			    "as \"192.0.2.10\" or \"2001:db8::/64\"",
			    conf_shown(s, len, buf, sizeof(buf)));
		if (rc == -2)
			return conf_fail(l, e, "'%s' has a bad prefix length: expected 0 to "
			    "%u", conf_shown(s, len, buf, sizeof(buf)), max);
		c->ntrusted_proxies++;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* References                                                          */
/* ------------------------------------------------------------------ */

/* The acls access rules name, which may be defined after the rules. */
static int
acl_check_refs(struct conf_loader *l)
{
	const struct conf *c = l->c;
	char buf[80], rbuf[80];

	for (size_t i = 0; i < c->naccess_rules; i++) {
		const struct conf_access_rule *ar = &c->access_rules[i];

		for (size_t e = 0; e < ar->n; e++) {
			const char *acl = ar->r[e].acl;
			size_t j;

			if (is_builtin(acl))
				continue;
			for (j = 0; j < c->nacls; j++)
				if (strcmp(c->acls[j].name, acl) == 0)
					break;
			if (j == c->nacls)
				return conf_fail_at(l, ar->r[e].line, "access rule '%s' refers "
				    "to undefined acl '%s'", conf_shown(ar->name,
				    strlen(ar->name), rbuf, sizeof(rbuf)),
				    conf_shown(acl, strlen(acl), buf, sizeof(buf)));
		}
	}
	return 0;
}

const struct conf_section acl_conf_section = {
	.name = "access control",
	.keys = acl_keys,
	.nkeys = CONF_NKEYS(acl_keys),
	.check_refs = acl_check_refs,
};
