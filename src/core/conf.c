/*
 * conf.c - reads xmppd.yml (libyaml document API) into an immutable
 * struct conf, and keeps the running one.
 *
 * The loader is strict: every key is known, every value has the type and
 * range doc/configuration.md gives it, nothing is set twice, and the first
 * problem found is reported as "FILE:LINE: what was expected" so that
 * `xmppd --check-config` and a refused reload can say exactly what to fix.
 *
 * This file is the generic part: reading the file, walking its top-level
 * mapping over the sections that own the keys (conf_keys.h; each section's
 * table sits beside the code that uses its keys), references and the swap
 * of the running configuration.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "core/acl.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "core/log.h"

/* A configuration file is small; this only stops a mistaken path to a huge
 * file from being read into memory. */
#define CONF_FILE_MAX (4u * 1024 * 1024)

/* The message of a failed load, per thread (conf.h). */
#define CONF_ERROR_MAX 1024
static __thread char conf_error[CONF_ERROR_MAX];

static void conf_free(struct conf *c);

/* ------------------------------------------------------------------ */
/* Sections                                                            */
/* ------------------------------------------------------------------ */

/* Enough for every subsystem; conf_section_register says when not. */
#define CONF_SECTIONS_MAX 16

/* The core's own first, then what the composition root registers. */
static const struct conf_section *sections[CONF_SECTIONS_MAX] = {
	&conf_core_section,
	&acl_conf_section,
};
static size_t nsections = 2;

static const struct conf_key *
find_key(const struct conf_section *const *secs, size_t nsecs, const char *name,
    size_t *index_r)
{
	size_t base = 0;

	for (size_t s = 0; s < nsecs; s++) {
		for (size_t i = 0; i < secs[s]->nkeys; i++)
			if (strcmp(secs[s]->keys[i].name, name) == 0) {
				if (index_r != NULL)
					*index_r = base + i;
				return &secs[s]->keys[i];
			}
		base += secs[s]->nkeys;
	}
	return NULL;
}

int
conf_section_register(const struct conf_section *s)
{
	for (size_t i = 0; i < nsections; i++)
		if (sections[i] == s)
			return 0;
	if (nsections == CONF_SECTIONS_MAX)
		return -1;
	for (size_t i = 0; i < s->nkeys; i++)
		if (find_key(sections, nsections, s->keys[i].name, NULL) != NULL)
			return -1;
	sections[nsections++] = s;
	return 0;
}

int
conf_value_line(const struct conf_loader *l, const char *name)
{
	size_t i;

	if (find_key(l->sections, l->nsections, name, &i) == NULL)
		return 0;
	return l->seen[i].value;
}

/*
 * The top level: each key goes to the handler of the section that owns it.
 * A key no section has (or whose section nobody registered) is unknown.
 */
static int
read_top(struct conf_loader *l)
{
	yaml_node_t *map = l->root;

	for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
	    p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		const struct conf_key *k;
		const char *name;
		size_t len, i;
		char buf[80];

		if (conf_check_tag(l, kn) < 0)
			return -1;
		if ((name = conf_scalar(kn, &len)) == NULL)
			return conf_fail(l, kn, "expected a key name");
		if ((k = find_key(l->sections, l->nsections, name, &i)) == NULL)
			return conf_fail(l, kn, "unknown key '%s'",
			    conf_shown(name, len, buf, sizeof(buf)));
		if (l->seen[i].key)
			return conf_fail(l, kn, "'%s' is set twice (first on line %d)",
			    k->name, l->seen[i].key);
		l->seen[i].key = conf_line(kn);
		l->seen[i].value = conf_line(vn);
		if (k->parse(l, k, vn, l->c) < 0)
			return -1;
	}
	return 0;
}

/* Checks that need the whole file, section by section: first what each
 * needs of the rest, then the names that point across sections. */
static int
finish(struct conf_loader *l)
{
	for (size_t s = 0; s < l->nsections; s++)
		if (l->sections[s]->check != NULL && l->sections[s]->check(l) < 0)
			return -1;
	for (size_t s = 0; s < l->nsections; s++)
		if (l->sections[s]->check_refs != NULL && l->sections[s]->check_refs(l) < 0)
			return -1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */
/* ------------------------------------------------------------------ */

/* Reads the whole file: libyaml reader errors give a byte offset. */
static char *
read_file(const char *path, size_t *len_r)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		goto err;
	if (fstat(fd, &st) < 0)
		goto err;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		snprintf(conf_error, sizeof(conf_error), "%s: not a regular file", path);
		goto err_msg;
	}
	if ((size_t)st.st_size > CONF_FILE_MAX) {
		snprintf(conf_error, sizeof(conf_error), "%s: larger than %u bytes", path,
		    CONF_FILE_MAX);
		goto err_msg;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
		goto err;
	while (n < (size_t)st.st_size) {
		r = read(fd, buf + n, (size_t)st.st_size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto err;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*len_r = n;
	return buf;
err:
	snprintf(conf_error, sizeof(conf_error), "%s: %s", path, strerror(errno));
err_msg:
	free(buf);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int
yaml_failure(struct conf_loader *l, const yaml_parser_t *p, const char *buf, size_t len)
{
	int line;

	if (p->error == YAML_MEMORY_ERROR)
		return conf_fail_at(l, 1, "out of memory");
	if (p->error == YAML_READER_ERROR) {
		line = 1;
		for (size_t i = 0; i < p->problem_offset && i < len; i++)
			line += buf[i] == '\n';
		return conf_fail_at(l, line, "%s", p->problem ? p->problem : "unreadable input");
	}
	line = (int)p->problem_mark.line + 1;
	if (p->context != NULL)
		return conf_fail_at(l, line, "%s (%s started on line %d)",
		    p->problem ? p->problem : "YAML syntax error", p->context,
		    (int)p->context_mark.line + 1);
	return conf_fail_at(l, line, "%s", p->problem ? p->problem : "YAML syntax error");
}

/* The absolute directory of path, without symbolic links. */
static char *
file_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *d, *r;

	if (slash == NULL)
		return realpath(".", NULL);
	if (slash == path)
		return strdup("/");
	if ((d = strndup(path, (size_t)(slash - path))) == NULL)
		return NULL;
	r = realpath(d, NULL);
	free(d);
	return r;
}

struct conf *
conf_load(const char *path, const char **error_r)
{
	struct conf *c;
	char *buf;
	size_t len;

	conf_error[0] = '\0';
	if ((buf = read_file(path, &len)) == NULL) {
		if (error_r != NULL)
			*error_r = conf_error;
		return NULL;
	}
	c = conf_parse(path, buf, len, error_r);
	free(buf);
	return c;
}

struct conf *
conf_parse(const char *path, const char *buf, size_t len, const char **error_r)
{
	struct conf_loader l = {
		.file = path, .errbuf = conf_error, .errlen = sizeof(conf_error),
		.sections = sections, .nsections = nsections,
	};
	yaml_document_t doc, extra;
	int have_doc = 0, have_extra = 0, parser_init = 0;
	yaml_parser_t parser;
	yaml_node_t *root;
	struct conf *c = NULL;
	const char *base;
	size_t nkeys = 0;

	conf_error[0] = '\0';
	if ((l.dir = file_dir(path)) == NULL) {
		snprintf(conf_error, sizeof(conf_error), "%s: %s", path, strerror(errno));
		goto err;
	}
	for (size_t s = 0; s < l.nsections; s++)
		nkeys += l.sections[s]->nkeys;
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (l.seen = calloc(nkeys, sizeof(*l.seen))) == NULL) {
		snprintf(conf_error, sizeof(conf_error), "%s: out of memory", path);
		goto err;
	}
	c->refcount = 1;
	for (size_t s = 0; s < l.nsections; s++)
		if (l.sections[s]->defaults != NULL)
			l.sections[s]->defaults(c);
	l.c = c;
	base = strrchr(path, '/');
	base = base != NULL ? base + 1 : path;
	if ((c->path = conf_resolve_path(l.dir, base)) == NULL) {
		snprintf(conf_error, sizeof(conf_error), "%s: out of memory", path);
		goto err;
	}

	if (!yaml_parser_initialize(&parser)) {
		snprintf(conf_error, sizeof(conf_error), "%s: out of memory", path);
		goto err;
	}
	parser_init = 1;
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		yaml_failure(&l, &parser, buf, len);
		goto err;
	}
	have_doc = 1;
	l.doc = &doc;
	if ((root = yaml_document_get_root_node(&doc)) == NULL) {
		conf_fail_at(&l, 1, "the file is empty; expected a mapping with at "
		    "least 'hosts'");
		goto err;
	}
	/* A second document would be silently ignored: refuse it. */
	if (!yaml_parser_load(&parser, &extra)) {
		yaml_failure(&l, &parser, buf, len);
		goto err;
	}
	have_extra = 1;
	if (yaml_document_get_root_node(&extra) != NULL) {
		conf_fail(&l, yaml_document_get_root_node(&extra),
		    "only one YAML document is allowed in the file");
		goto err;
	}
	if (conf_check_tag(&l, root) < 0)
		goto err;
	if (root->type != YAML_MAPPING_NODE) {
		conf_fail(&l, root, "expected a mapping of keys at the top level");
		goto err;
	}
	l.root = root;
	if (read_top(&l) < 0)
		goto err;
	if (finish(&l) < 0)
		goto err;

	yaml_document_delete(&extra);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	free(l.seen);
	free(l.dir);
	return c;
err:
	if (have_extra)
		yaml_document_delete(&extra);
	if (have_doc)
		yaml_document_delete(&doc);
	if (parser_init)
		yaml_parser_delete(&parser);
	conf_free(c);
	free(l.seen);
	free(l.dir);
	if (error_r != NULL)
		*error_r = conf_error;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* References and the running configuration                            */
/* ------------------------------------------------------------------ */

static void
conf_free(struct conf *c)
{
	size_t i, j;

	if (c == NULL)
		return;
	free(c->path);
	for (i = 0; i < c->nhosts; i++)
		free(c->hosts[i]);
	free(c->hosts);
	for (i = 0; i < c->ncertfiles; i++)
		free(c->certfiles[i]);
	free(c->certfiles);
	free(c->ca_file);
	free(c->log);
	free(c->spool_dir);
	free(c->user);
	free(c->pidfile);
	free(c->ctl_socket);
	for (i = 0; i < c->nlisten; i++) {
		free(c->listen[i].ip);
		free(c->listen[i].shaper);
		for (j = 0; j < c->listen[i].ncomponents; j++) {
			free(c->listen[i].components[j].domain);
			free(c->listen[i].components[j].password);
		}
		free(c->listen[i].components);
	}
	free(c->listen);
	free(c->module_dir);
	for (i = 0; i < c->nmodules; i++) {
		free(c->modules[i].name);
		conf_node_free(c->modules[i].opts);
	}
	free(c->modules);
	for (i = 0; i < c->nacls; i++) {
		for (j = 0; j < c->acls[i].n; j++) {
			struct conf_acl_matcher *m = &c->acls[i].m[j];

			if (m->compiled != NULL) {
				regfree(m->compiled);
				free(m->compiled);
			}
			free(m->value);
		}
		free(c->acls[i].m);
		free(c->acls[i].name);
	}
	free(c->acls);
	for (i = 0; i < c->naccess_rules; i++) {
		for (j = 0; j < c->access_rules[i].n; j++)
			free(c->access_rules[i].r[j].acl);
		free(c->access_rules[i].r);
		free(c->access_rules[i].name);
	}
	free(c->access_rules);
	for (i = 0; i < c->nshapers; i++)
		free(c->shapers[i].name);
	free(c->shapers);
	free(c->c2s_access);
	free(c->public_base_url);
	free(c->admin_page_dir);
	free(c->conversejs_path);
	for (i = 0; i < c->nwebsocket_origins; i++)
		free(c->websocket_origins[i]);
	free(c->websocket_origins);
	free(c->trusted_proxies);
	free(c->s2s_secret);
	free(c->s2s_access);
	for (i = 0; i < c->ns2s_hosts; i++) {
		free(c->s2s_hosts[i].domain);
		free(c->s2s_hosts[i].host);
	}
	free(c->s2s_hosts);
	free(c->s2s_resolv_conf);
	free(c);
}

struct conf *
conf_ref(struct conf *c)
{
	if (c != NULL)
		__atomic_add_fetch(&c->refcount, 1, __ATOMIC_RELAXED);
	return c;
}

void
conf_unref(struct conf *c)
{
	if (c != NULL && __atomic_sub_fetch(&c->refcount, 1, __ATOMIC_ACQ_REL) == 0)
		conf_free(c);
}

static pthread_mutex_t conf_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conf *conf_running;

struct conf *
conf_current(void)
{
	struct conf *c;

	pthread_mutex_lock(&conf_lock);
	c = conf_ref(conf_running);
	pthread_mutex_unlock(&conf_lock);
	return c;
}

/* Bumped by every swap: threads compare it with the one they cached. */
static unsigned long conf_generation;
static __thread struct conf *conf_cached;
static __thread unsigned long conf_cached_gen;
/*
 * The main thread and the workers drop their cached reference with
 * conf_local_release. Other threads route too: a module's own thread may
 * answer a deferred IQ (xmppd_iq_reply is "any thread", hooks/xmppd.h),
 * which reaches conf_local through router_route_filtered, and never calls
 * conf_local_release. The key's destructor drops such a thread's reference
 * when it exits; without it, each one leaked a whole configuration.
 */
static pthread_key_t conf_cached_key;
static pthread_once_t conf_cached_once = PTHREAD_ONCE_INIT;

static void
conf_cached_drop(void *c)
{
	conf_unref(c);
}

static void
conf_cached_key_init(void)
{
	if (pthread_key_create(&conf_cached_key, conf_cached_drop) != 0)
		fatal("cannot create the configuration cache key");
}

void
conf_swap(struct conf *c)
{
	struct conf *old;

	pthread_mutex_lock(&conf_lock);
	old = conf_running;
	conf_running = c;
	__atomic_add_fetch(&conf_generation, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&conf_lock);
	conf_unref(old);
}

const struct conf *
conf_local(void)
{
	unsigned long g = __atomic_load_n(&conf_generation, __ATOMIC_ACQUIRE);

	if (conf_cached == NULL || conf_cached_gen != g) {
		conf_unref(conf_cached);
		conf_cached = conf_current();
		conf_cached_gen = g;
		pthread_once(&conf_cached_once, conf_cached_key_init);
		(void)pthread_setspecific(conf_cached_key, conf_cached);
	}
	return conf_cached;
}

void
conf_local_release(void)
{
	conf_unref(conf_cached);
	conf_cached = NULL;
	pthread_once(&conf_cached_once, conf_cached_key_init);
	(void)pthread_setspecific(conf_cached_key, NULL);
}

const struct conf_s2s_host *
conf_s2s_host(const struct conf *c, const char *domain)
{
	for (size_t i = 0; c != NULL && domain != NULL && i < c->ns2s_hosts; i++)
		if (strcmp(c->s2s_hosts[i].domain, domain) == 0)
			return &c->s2s_hosts[i];
	return NULL;
}

/* host must be prepared already, as every domain of a parsed jid is. */
int
conf_is_local_host(const struct conf *c, const char *host)
{
	if (c == NULL || host == NULL)
		return 0;
	for (size_t i = 0; i < c->nhosts; i++)
		if (strcmp(c->hosts[i], host) == 0)
			return 1;
	return 0;
}

/* Module options are compared on reload and kept by the loader. */
int
conf_node_equal(const struct conf_node *a, const struct conf_node *b)
{
	if (a == NULL || b == NULL)
		return (a == NULL || a->n == 0) && (b == NULL || b->n == 0);
	if (a->type != b->type || a->n != b->n)
		return 0;
	if (a->type == CONF_NODE_SCALAR)
		return strcmp(a->scalar, b->scalar) == 0;
	for (size_t i = 0; i < a->n; i++) {
		if (a->type == CONF_NODE_MAP && strcmp(a->keys[i], b->keys[i]) != 0)
			return 0;
		if (!conf_node_equal(a->items[i], b->items[i]))
			return 0;
	}
	return 1;
}

struct conf_node *
conf_node_dup(const struct conf_node *n)
{
	struct conf_node *d;

	if (n == NULL || (d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	d->type = n->type;
	d->line = n->line;
	d->scalar = n->scalar ? strdup(n->scalar) : NULL;
	d->n = n->n;
	if (n->n > 0) {
		d->items = calloc(n->n, sizeof(*d->items));
		if (n->keys != NULL)
			d->keys = calloc(n->n, sizeof(*d->keys));
		for (size_t i = 0; i < n->n; i++) {
			d->items[i] = conf_node_dup(n->items[i]);
			if (n->keys != NULL)
				d->keys[i] = strdup(n->keys[i]);
		}
	}
	return d;
}

void
conf_node_free(struct conf_node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->n; i++) {
		if (n->keys != NULL)
			free(n->keys[i]);
		conf_node_free(n->items[i]);
	}
	free(n->keys);
	free(n->items);
	free(n->scalar);
	free(n);
}
