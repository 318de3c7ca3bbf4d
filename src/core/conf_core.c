/*
 * conf_core.c - the core's own section of xmppd.yml: the domains served,
 * the process (workers, spool, user, pidfile, control socket), logging, the
 * limits every stream has whatever its transport, and the modules to load.
 *
 * Logging stays here rather than beside log.c: the log family sits below
 * every floor (store/ logs too) and is configured by main (apply_runtime).
 * The shared stream limits are read by c2s and s2s alike; they move to the
 * stream layer when there is one (doc/architecture.md, "Where configuration
 * keys live"). The modules section only records names and option trees:
 * the loader (abi/module.c) knows each module's options and checks them.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <yaml.h>

#include "core/conf.h"
#include "core/conf_keys.h"
#include "core/log.h"

static conf_key_fn key_hosts, key_loglevel, key_log, key_modules;

#define C(field) offsetof(struct conf, field)

static const struct conf_key core_keys[] = {
	{ "hosts",                 key_hosts,         0, 0, 0 },
	{ "loglevel",              key_loglevel,      C(loglevel), 0, 0 },
	{ "log",                   key_log,           C(log), 0, 0 },
	{ "workers",               conf_key_uint,     C(workers), 0, 1024 },
	{ "spool_dir",             conf_key_path,     C(spool_dir), 0, 0 },
	{ "store_map_size",        conf_key_size,     C(store_map_size), CONF_MIB, SIZE_MAX },
	{ "store_test_delay_ms",   conf_key_uint,     C(store_test_delay_ms), 0, 60000 },
	{ "store_commit_window_ms", conf_key_uint,    C(store_commit_window_ms), 0, 100 },
	{ "user",                  conf_key_string,   C(user), 0, 0 },
	{ "pidfile",               conf_key_path,     C(pidfile), 0, 0 },
	{ "ctl_socket",            conf_key_path,     C(ctl_socket), 0, 0 },
	/* Limits of every stream, client or server (doc/configuration.md). */
	{ "negotiation_timeout",   conf_key_uint,     C(negotiation_timeout), 1, 3600 },
	{ "max_xml_depth",         conf_key_uint,     C(max_xml_depth), 4, 1024 },
	{ "max_xml_attrs",         conf_key_uint,     C(max_xml_attrs), 4, 1024 },
	{ "max_connections_per_ip", conf_key_uint,    C(max_connections_per_ip), 0, 1000000 },
	{ "max_send_queue",        conf_key_size,     C(max_send_queue), 16 * CONF_KIB, CONF_GIB },
	{ "module_dir",            conf_key_path,     C(module_dir), 0, 0 },
	{ "modules",               key_modules,       0, 0, 0 },
};

static void
core_defaults(struct conf *c)
{
	c->loglevel = LOG_LVL_INFO;
	c->workers = 0;
	c->store_map_size = CONF_GIB;
	c->negotiation_timeout = 30;
	c->max_xml_depth = 32;
	c->max_xml_attrs = 64;
	c->max_connections_per_ip = 100;
	c->max_send_queue = CONF_MIB;
}

/* ------------------------------------------------------------------ */
/* Hosts and logging                                                   */
/* ------------------------------------------------------------------ */

static int
key_hosts(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	yaml_node_item_t *it;
	size_t n;

	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_SEQUENCE_NODE ||
	    val->data.sequence.items.top == val->data.sequence.items.start)
		return conf_fail(l, val, "'hosts' expects a list of at least one domain name");
	n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
	if ((c->hosts = calloc(n, sizeof(*c->hosts))) == NULL)
		return conf_fail(l, val, "out of memory");
	for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(l->doc, *it);
		char buf[80], *host;
		const char *s;
		size_t len;

		if (conf_check_tag(l, e) < 0)
			return -1;
		if ((s = conf_scalar(e, &len)) == NULL)
			return conf_fail(l, e, "'hosts' expects a list of domain names");
		if ((host = conf_prep_domain(s, len)) == NULL)
			return conf_fail(l, e, "'hosts' entry '%s' is not a valid domain name",
			    conf_shown(s, len, buf, sizeof(buf)));
		for (size_t i = 0; i < c->nhosts; i++) {
			if (strcmp(c->hosts[i], host) == 0) {
				conf_fail(l, e, "host '%s' is listed twice",
				    conf_shown(host, strlen(host), buf, sizeof(buf)));
				free(host);
				return -1;
			}
		}
		c->hosts[c->nhosts++] = host;
	}
	return 0;
}

static int
key_loglevel(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	size_t len;
	const char *s;
	int lvl;

	if (conf_check_tag(l, val) < 0)
		return -1;
	s = conf_scalar(val, &len);
	if (s == NULL || (lvl = log_level_parse(s)) < 0)
		return conf_fail(l, val, "'loglevel' expects one of error, warning, "
		    "notice, info, debug");
	*CONF_FIELD(int, base, k) = lvl;
	return 0;
}

/* "stderr" and "syslog" are targets; anything else is a file path. */
static int
key_log(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	char **out = CONF_FIELD(char *, base, k);
	size_t len;
	const char *s = conf_scalar(val, &len);

	if (s != NULL && (strcmp(s, "stderr") == 0 || strcmp(s, "syslog") == 0)) {
		if (conf_check_tag(l, val) < 0)
			return -1;
		if ((*out = strdup(s)) == NULL)
			return conf_fail(l, val, "out of memory");
		return 0;
	}
	if (s == NULL || len == 0)
		return conf_fail(l, val, "'log' expects stderr, syslog or a file path");
	return conf_get_path(l, k->name, val, out);
}

/* ------------------------------------------------------------------ */
/* Modules                                                             */
/* ------------------------------------------------------------------ */

/*
 * Aliases let a small file describe a huge tree (each level of "billion
 * laughs" multiplies the last), and libyaml lets an alias name the
 * collection it sits in, which would make a loop. Both limits are far
 * beyond any real module's options.
 */
#define CONF_NODE_DEPTH_MAX 32
#define CONF_NODES_MAX 100000

/*
 * Copies a YAML node into a conf_node tree. Scalars keep their text as
 * written: the module that reads an option knows its type. On failure
 * *out holds what was built so far, for the caller to free.
 */
static int
build_node(struct conf_loader *l, yaml_node_t *yn, int depth, struct conf_node **out)
{
	struct conf_node *n;
	size_t len, cnt;
	const char *s;

	*out = NULL;
	if (conf_check_tag(l, yn) < 0)
		return -1;
	if (depth > CONF_NODE_DEPTH_MAX)
		return conf_fail(l, yn, "module options are nested deeper than %d levels",
		    CONF_NODE_DEPTH_MAX);
	if (++l->nnodes > CONF_NODES_MAX)
		return conf_fail(l, yn, "module options hold more than %d values",
		    CONF_NODES_MAX);
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return conf_fail(l, yn, "out of memory");
	*out = n;
	n->line = conf_line(yn);
	switch (yn->type) {
	case YAML_SCALAR_NODE:
		n->type = CONF_NODE_SCALAR;
		if ((s = conf_scalar(yn, &len)) == NULL)
			return conf_fail(l, yn, "option values may not contain NUL characters");
		if ((n->scalar = strdup(s)) == NULL)
			return conf_fail(l, yn, "out of memory");
		return 0;
	case YAML_SEQUENCE_NODE:
		n->type = CONF_NODE_SEQ;
		if ((cnt = conf_nitems(yn)) > 0 &&
		    (n->items = calloc(cnt, sizeof(*n->items))) == NULL)
			return conf_fail(l, yn, "out of memory");
		for (yaml_node_item_t *it = yn->data.sequence.items.start;
		    it < yn->data.sequence.items.top; it++) {
			yaml_node_t *e = yaml_document_get_node(l->doc, *it);

			if (build_node(l, e, depth + 1, &n->items[n->n++]) < 0)
				return -1;
		}
		return 0;
	case YAML_MAPPING_NODE:
		n->type = CONF_NODE_MAP;
		if ((cnt = conf_npairs(yn)) > 0 &&
		    ((n->keys = calloc(cnt, sizeof(*n->keys))) == NULL ||
		    (n->items = calloc(cnt, sizeof(*n->items))) == NULL))
			return conf_fail(l, yn, "out of memory");
		for (yaml_node_pair_t *p = yn->data.mapping.pairs.start;
		    p < yn->data.mapping.pairs.top; p++) {
			yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
			yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
			char buf[80];
			int first;

			if ((s = conf_key_name(l, kn, "an option name")) == NULL)
				return -1;
			if ((first = conf_earlier_key(l, yn, p, s)) != 0)
				return conf_fail(l, kn, "'%s' is set twice (first on line %d)",
				    conf_shown(s, strlen(s), buf, sizeof(buf)), first);
			if ((n->keys[n->n] = strdup(s)) == NULL)
				return conf_fail(l, kn, "out of memory");
			if (build_node(l, vn, depth + 1, &n->items[n->n++]) < 0)
				return -1;
		}
		return 0;
	default:
		return conf_fail(l, yn, "unexpected YAML node");
	}
}

/* mod_[a-z0-9_]+: the name is also the file name mod_NAME.so. */
static int
module_name_ok(const char *s)
{
	if (strncmp(s, "mod_", 4) != 0 || s[4] == '\0')
		return 0;
	for (s += 4; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

/* Option names are not checked here: the module loader knows each
 * module's options and reports with the lines kept in the tree. */
static int
key_modules(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	size_t n;

	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_MAPPING_NODE)
		return conf_fail(l, val, "'modules' expects a mapping");
	if ((n = conf_npairs(val)) > 0 && (c->modules = calloc(n, sizeof(*c->modules))) == NULL)
		return conf_fail(l, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start;
	    p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		struct conf_module *m;
		const char *name;
		char buf[80];

		if ((name = conf_key_name(l, kn, "a module name")) == NULL)
			return -1;
		if (!module_name_ok(name))
			return conf_fail(l, kn, "'%s' is not a module name: expected mod_ "
			    "followed by lowercase letters, digits and '_'",
			    conf_shown(name, strlen(name), buf, sizeof(buf)));
		for (size_t i = 0; i < c->nmodules; i++)
			if (strcmp(c->modules[i].name, name) == 0)
				return conf_fail(l, kn, "module '%s' is listed twice (first "
				    "on line %d)", name, c->modules[i].line);
		m = &c->modules[c->nmodules++];
		m->line = conf_line(kn);
		if ((m->name = strdup(name)) == NULL)
			return conf_fail(l, kn, "out of memory");
		if (conf_check_tag(l, vn) < 0)
			return -1;
		if (conf_is_null(vn)) {
			if ((m->opts = calloc(1, sizeof(*m->opts))) == NULL)
				return conf_fail(l, vn, "out of memory");
			m->opts->type = CONF_NODE_MAP;
			m->opts->line = m->line;
			continue;
		}
		if (vn->type != YAML_MAPPING_NODE)
			return conf_fail(l, vn, "module '%s' expects a mapping of options "
			    "(or nothing)", name);
		if (build_node(l, vn, 0, &m->opts) < 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

/* Required keys and the defaults derived from others. */
static int
core_check(struct conf_loader *l)
{
	struct conf *c = l->c;
	struct sockaddr_un sun;
	int line;

	if (c->nhosts == 0)
		return conf_fail(l, l->root, "'hosts' is required: the domains this "
		    "server is for");
	if (c->log == NULL && (c->log = strdup("stderr")) == NULL)
		return conf_fail(l, l->root, "out of memory");
	if (c->spool_dir == NULL && (c->spool_dir = conf_resolve_path(l->dir, "spool")) == NULL)
		return conf_fail(l, l->root, "out of memory");
	line = conf_value_line(l, "ctl_socket");
	if (c->ctl_socket == NULL) {
		if ((c->ctl_socket = conf_resolve_path(c->spool_dir, "xmppd.ctl")) == NULL)
			return conf_fail(l, l->root, "out of memory");
		line = conf_value_line(l, "spool_dir");
	}
	if (strlen(c->ctl_socket) >= sizeof(sun.sun_path))
		return conf_fail_at(l, line ? line : 1,
		    "'ctl_socket' path is longer than a Unix socket allows "
		    "(%zu bytes); set 'ctl_socket' to a shorter path",
		    sizeof(sun.sun_path) - 1);
	return 0;
}

const struct conf_section conf_core_section = {
	.name = "core",
	.keys = core_keys,
	.nkeys = CONF_NKEYS(core_keys),
	.defaults = core_defaults,
	.check = core_check,
};
