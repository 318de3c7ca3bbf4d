/*
 * conf.c - reads xmppd.yml (libyaml document API) into an immutable
 * struct conf, and keeps the running one.
 *
 * The loader is strict: every key is known, every value has the type and
 * range doc/configuration.md gives it, nothing is set twice, and the first
 * problem found is reported as "FILE:LINE: what was expected" so that
 * `xmppd --check-config` and a refused reload can say exactly what to fix.
 * Numbers and booleans must be plain (unquoted) scalars: "5222" in quotes is
 * a string, as YAML says.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <yaml.h>

#include "core/conf.h"
#include "core/log.h"
#include "xmpp/jid.h"

/* A configuration file is small; this only stops a mistaken path to a huge
 * file from being read into memory. */
#define CONF_FILE_MAX (4u * 1024 * 1024)

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

struct loader;
struct conf_key;

typedef int conf_key_fn(struct loader *l, const struct conf_key *k,
    yaml_node_t *val, void *base);

/* One known key: its handler writes the value at base + offset. */
struct conf_key {
	const char *name;
	conf_key_fn *parse;
	size_t offset;
	unsigned long long min, max;
};

struct loader {
	const char *file;          /* as given, for messages */
	char *dir;                 /* absolute directory of the file */
	yaml_document_t *doc;
	struct conf *c;
	char *errbuf;
	size_t errlen;
	int line_ctl_socket;       /* where paths were set, for late checks */
	int line_spool_dir;
	int line_max_send_queue;
	int line_c2s_access;
	int line_s2s_access;
	size_t nnodes;             /* module option nodes built so far */
	/* Acl names used by access rules, checked once every acl is known. */
	struct acl_ref {
		size_t rule, entry;    /* into c->access_rules and its r[] */
		int line;
	} *refs;
	size_t nrefs;
};

static conf_key_fn key_hosts, key_certfiles, key_path, key_string, key_uint,
    key_size, key_bool, key_loglevel, key_log, key_tls_version, key_listen,
    key_port, key_ip, key_module, key_modules, key_acl, key_access_rules,
    key_shapers, key_access, key_u64, key_s2s_starttls, key_s2s_hosts, key_s2s_access;

static void conf_free(struct conf *c);

/* ------------------------------------------------------------------ */
/* Option tables                                                       */
/* ------------------------------------------------------------------ */

#define C(field) offsetof(struct conf, field)
#define L(field) offsetof(struct conf_listen, field)

static const struct conf_key top_keys[] = {
	{ "hosts",                 key_hosts,         0, 0, 0 },
	{ "loglevel",              key_loglevel,      C(loglevel), 0, 0 },
	{ "log",                   key_log,           C(log), 0, 0 },
	{ "certfiles",             key_certfiles,     0, 0, 0 },
	{ "ca_file",               key_path,          C(ca_file), 0, 0 },
	{ "workers",               key_uint,          C(workers), 0, 1024 },
	{ "spool_dir",             key_path,          C(spool_dir), 0, 0 },
	{ "store_map_size",        key_size,          C(store_map_size), MIB, SIZE_MAX },
	{ "store_test_delay_ms",   key_uint,          C(store_test_delay_ms), 0, 60000 },
	{ "user",                  key_string,        C(user), 0, 0 },
	{ "pidfile",               key_path,          C(pidfile), 0, 0 },
	{ "ctl_socket",            key_path,          C(ctl_socket), 0, 0 },
	{ "listen",                key_listen,        0, 0, 0 },
	{ "negotiation_timeout",   key_uint,          C(negotiation_timeout), 1, 3600 },
	{ "hibernate_after",       key_uint,          C(hibernate_after), 0, 86400 },
	{ "max_xml_depth",         key_uint,          C(max_xml_depth), 4, 1024 },
	{ "max_xml_attrs",         key_uint,          C(max_xml_attrs), 4, 1024 },
	{ "max_connections_per_ip", key_uint,         C(max_connections_per_ip), 0, 1000000 },
	{ "auth_failure_delay_ms", key_uint,          C(auth_failure_delay_ms), 0, 60000 },
	{ "max_auth_attempts",     key_uint,          C(max_auth_attempts), 1, 10 },
	{ "max_send_queue",        key_size,          C(max_send_queue), 16 * KIB, GIB },
	{ "scram_iterations",      key_uint,          C(scram_iterations), 4096, 1000000 },
	{ "tls_min_version",       key_tls_version,   C(tls_min_version), 0, 0 },
	{ "allow_plain",           key_bool,          C(allow_plain), 0, 0 },
	{ "module_dir",            key_path,          C(module_dir), 0, 0 },
	{ "modules",               key_modules,       0, 0, 0 },
	{ "acl",                   key_acl,           0, 0, 0 },
	{ "access_rules",          key_access_rules,  0, 0, 0 },
	{ "shaper",                key_shapers,       0, 0, 0 },
	{ "c2s_access",            key_access,        C(c2s_access), 0, 0 },
	{ "s2s_use_starttls",      key_s2s_starttls,  C(s2s_use_starttls), 0, 0 },
	{ "s2s_dialback",          key_bool,          C(s2s_dialback), 0, 0 },
	{ "s2s_secret",            key_string,        C(s2s_secret), 0, 0 },
	{ "s2s_access",            key_s2s_access,    C(s2s_access), 0, 0 },
	{ "s2s_hosts",             key_s2s_hosts,     0, 0, 0 },
	{ "s2s_idle_timeout",      key_uint,          C(s2s_idle_timeout), 0, 86400 },
	{ "s2s_keepalive",         key_uint,          C(s2s_keepalive), 0, 86400 },
	{ "s2s_keepalive_timeout", key_uint,          C(s2s_keepalive_timeout), 1, 3600 },
	{ "s2s_connect_timeout",   key_uint,          C(s2s_connect_timeout), 1, 3600 },
	{ "s2s_max_queue",         key_uint,          C(s2s_max_queue), 1, 1000000 },
	{ "s2s_resolv_conf",       key_path,          C(s2s_resolv_conf), 0, 0 },
};

/* Indexes into listen_keys, for the required keys and derived defaults. */
enum { LK_PORT, LK_IP, LK_MODULE, LK_TLS, LK_STARTTLS, LK_MAX_STANZA, LK_SHAPER };

/* RFC 6120 13.12 (4): a server must accept stanzas of at least 10000 bytes. */
static const struct conf_key listen_keys[] = {
	{ "port",              key_port,   L(port), 1, 65535 },
	{ "ip",                key_ip,     L(ip), 0, 0 },
	{ "module",            key_module, L(module), 0, 0 },
	{ "tls",               key_bool,   L(tls), 0, 0 },
	{ "starttls_required", key_bool,   L(starttls_required), 0, 0 },
	{ "max_stanza_size",   key_size,   L(max_stanza_size), 10000, 64 * MIB },
	{ "shaper",            key_string, L(shaper), 0, 0 },
};

/* Enough for any link; the limit only keeps the arithmetic in range. */
#define SHAPER_RATE_MAX (1ULL << 40)

enum { SK_RATE, SK_BURST };

static const struct conf_key shaper_keys[] = {
	{ "rate",       key_u64, offsetof(struct conf_shaper, rate), 1, SHAPER_RATE_MAX },
	{ "burst_size", key_u64, offsetof(struct conf_shaper, burst), 1, SHAPER_RATE_MAX },
};

#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

static int
node_line(const yaml_node_t *n)
{
	return n != NULL ? (int)n->start_mark.line + 1 : 1;
}

static int fail_at(struct loader *l, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes "FILE:LINE: message" and returns -1. */
static int
fail_at(struct loader *l, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (l->errbuf != NULL && l->errlen > 0)
		snprintf(l->errbuf, l->errlen, "%s:%d: %s", l->file, line, msg);
	return -1;
}

#define fail(l, node, ...) fail_at((l), node_line(node), __VA_ARGS__)

/*
 * Copies a value from the file into out for use in a message: control
 * characters become '?' so a message stays one line, and long values are cut.
 */
static const char *
shown(const char *s, size_t len, char *out, size_t outlen)
{
	size_t i, n = 0;

	for (i = 0; i < len && n + 4 < outlen; i++)
		out[n++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	if (i < len) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
	return out;
}

/* "1048576" -> "1M", for range messages. */
static const char *
fmt_size(unsigned long long v, char *buf, size_t len)
{
	if (v >= GIB && v % GIB == 0)
		snprintf(buf, len, "%lluG", v / GIB);
	else if (v >= MIB && v % MIB == 0)
		snprintf(buf, len, "%lluM", v / MIB);
	else if (v >= KIB && v % KIB == 0)
		snprintf(buf, len, "%lluK", v / KIB);
	else
		snprintf(buf, len, "%llu", v);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Scalars                                                             */
/* ------------------------------------------------------------------ */

/*
 * Explicit tags (!!int, !foo) are refused rather than half-understood; the
 * composer gives untagged nodes the default tag of their kind.
 */
static int
check_tag(struct loader *l, const yaml_node_t *n)
{
	const char *want;

	switch (n->type) {
	case YAML_SCALAR_NODE:   want = YAML_DEFAULT_SCALAR_TAG; break;
	case YAML_SEQUENCE_NODE: want = YAML_DEFAULT_SEQUENCE_TAG; break;
	case YAML_MAPPING_NODE:  want = YAML_DEFAULT_MAPPING_TAG; break;
	default:                 return 0;
	}
	if (n->tag != NULL && strcmp((const char *)n->tag, want) != 0) {
		char buf[64];

		return fail(l, n, "unsupported YAML tag '%s'",
		    shown((const char *)n->tag, strlen((const char *)n->tag),
		    buf, sizeof(buf)));
	}
	return 0;
}

/* The text of a scalar that may be any string (quoted or not). */
static const char *
scalar_text(yaml_node_t *n, size_t *len_r)
{
	if (n->type != YAML_SCALAR_NODE)
		return NULL;
	*len_r = n->data.scalar.length;
	/* A double-quoted "\0" would cut the string short: refuse it. */
	if (memchr(n->data.scalar.value, '\0', *len_r) != NULL)
		return NULL;
	return (const char *)n->data.scalar.value;
}

/* The text of a plain (unquoted) scalar: numbers and booleans. */
static const char *
plain_text(yaml_node_t *n)
{
	size_t len;
	const char *s = scalar_text(n, &len);

	if (s == NULL || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return NULL;
	return s;
}

static int
parse_string(struct loader *l, const char *name, yaml_node_t *n, char **out)
{
	size_t len;
	const char *s;

	if (check_tag(l, n) < 0)
		return -1;
	s = scalar_text(n, &len);
	if (s == NULL || len == 0)
		return fail(l, n, "'%s' expects a non-empty string", name);
	if ((*out = strdup(s)) == NULL)
		return fail(l, n, "out of memory");
	return 0;
}

/* Decimal digits only: no sign, no 0x, no separators. */
static int
parse_ull(const char *s, unsigned long long *v, const char **end_r)
{
	unsigned long long r = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (r > (ULLONG_MAX - (unsigned)(*s - '0')) / 10)
			return -1;
		r = r * 10 + (unsigned)(*s - '0');
	}
	*v = r;
	*end_r = s;
	return 0;
}

static int
parse_uint(struct loader *l, const char *name, yaml_node_t *n,
    unsigned long long min, unsigned long long max, unsigned long long *v)
{
	const char *s, *end;

	if (check_tag(l, n) < 0)
		return -1;
	s = plain_text(n);
	if (s == NULL || parse_ull(s, v, &end) < 0 || *end != '\0' ||
	    *v < min || *v > max)
		return fail(l, n, "'%s' expects a whole number from %llu to %llu",
		    name, min, max);
	return 0;
}

/* A byte count with an optional binary suffix: 512K, 64M, 1G. */
static int
parse_size(struct loader *l, const char *name, yaml_node_t *n,
    unsigned long long min, unsigned long long max, size_t *out)
{
	unsigned long long v, mul = 1;
	const char *s, *end;
	char a[32], b[32];
	int ok;

	if (check_tag(l, n) < 0)
		return -1;
	s = plain_text(n);
	ok = s != NULL && parse_ull(s, &v, &end) == 0;
	if (ok && *end != '\0') {
		switch (*end) {
		case 'K': case 'k': mul = KIB; break;
		case 'M': case 'm': mul = MIB; break;
		case 'G': case 'g': mul = GIB; break;
		default: ok = 0;
		}
		ok = ok && end[1] == '\0' && v <= ULLONG_MAX / mul;
	}
	if (ok) {
		v *= mul;
		ok = v >= min && v <= max && v <= SIZE_MAX;
	}
	if (!ok) {
		if (max >= SIZE_MAX)
			return fail(l, n, "'%s' expects a size in bytes of at least %s "
			    "(suffixes K, M, G allowed)", name,
			    fmt_size(min, a, sizeof(a)));
		return fail(l, n, "'%s' expects a size in bytes from %s to %s "
		    "(suffixes K, M, G allowed)", name,
		    fmt_size(min, a, sizeof(a)), fmt_size(max, b, sizeof(b)));
	}
	*out = (size_t)v;
	return 0;
}

static int
parse_bool(struct loader *l, const char *name, yaml_node_t *n, int *out)
{
	const char *s;

	if (check_tag(l, n) < 0)
		return -1;
	s = plain_text(n);
	if (s != NULL && (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0))
		*out = 1;
	else if (s != NULL && (strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0))
		*out = 0;
	else
		return fail(l, n, "'%s' expects true or false", name);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Paths                                                               */
/* ------------------------------------------------------------------ */

/*
 * Resolves p against the file's directory. dir comes from realpath(), so it
 * holds no symbolic link and leading "./" and "../" of p can be folded into
 * it textually; the rest of p is kept as written.
 */
static char *
resolve_path(const char *dir, const char *p)
{
	size_t dlen = strlen(dir);
	char *r;

	if (p[0] == '/')
		return strdup(p);
	for (;;) {
		if (p[0] == '.' && (p[1] == '/' || p[1] == '\0')) {
			p += p[1] == '/' ? 2 : 1;
		} else if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0')) {
			p += p[2] == '/' ? 3 : 2;
			while (dlen > 1 && dir[dlen - 1] != '/')
				dlen--;
			if (dlen > 1)
				dlen--;
		} else if (p[0] == '/') {
			p++;
		} else {
			break;
		}
	}
	if (*p == '\0')
		return strndup(dir, dlen);
	if ((r = malloc(dlen + strlen(p) + 2)) == NULL)
		return NULL;
	memcpy(r, dir, dlen);
	if (dlen == 0 || r[dlen - 1] != '/')
		r[dlen++] = '/';
	strcpy(r + dlen, p);
	return r;
}

static int
parse_path(struct loader *l, const char *name, yaml_node_t *n, char **out)
{
	char *s;

	if (parse_string(l, name, n, &s) < 0)
		return -1;
	*out = resolve_path(l->dir, s);
	free(s);
	if (*out == NULL)
		return fail(l, n, "out of memory");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Key handlers                                                        */
/* ------------------------------------------------------------------ */

#define FIELD(type, base, k) ((type *)(void *)((char *)(base) + (k)->offset))

static int
key_string(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	return parse_string(l, k->name, val, FIELD(char *, base, k));
}

static int
key_path(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	if (strcmp(k->name, "ctl_socket") == 0)
		l->line_ctl_socket = node_line(val);
	else if (strcmp(k->name, "spool_dir") == 0)
		l->line_spool_dir = node_line(val);
	return parse_path(l, k->name, val, FIELD(char *, base, k));
}

static int
key_uint(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	unsigned long long v;

	if (parse_uint(l, k->name, val, k->min, k->max, &v) < 0)
		return -1;
	*FIELD(unsigned, base, k) = (unsigned)v;
	return 0;
}

static int
key_port(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	unsigned long long v;

	if (parse_uint(l, k->name, val, k->min, k->max, &v) < 0)
		return -1;
	*FIELD(uint16_t, base, k) = (uint16_t)v;
	return 0;
}

static int
key_size(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	if (strcmp(k->name, "max_send_queue") == 0)
		l->line_max_send_queue = node_line(val);
	return parse_size(l, k->name, val, k->min, k->max, FIELD(size_t, base, k));
}

static int
key_bool(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	return parse_bool(l, k->name, val, FIELD(int, base, k));
}

static int
key_loglevel(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	size_t len;
	const char *s;
	int lvl;

	if (check_tag(l, val) < 0)
		return -1;
	s = scalar_text(val, &len);
	if (s == NULL || (lvl = log_level_parse(s)) < 0)
		return fail(l, val, "'loglevel' expects one of error, warning, "
		    "notice, info, debug");
	*FIELD(int, base, k) = lvl;
	return 0;
}

/* "stderr" and "syslog" are targets; anything else is a file path. */
static int
key_log(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	char **out = FIELD(char *, base, k);
	size_t len;
	const char *s = scalar_text(val, &len);

	if (s != NULL && (strcmp(s, "stderr") == 0 || strcmp(s, "syslog") == 0)) {
		if (check_tag(l, val) < 0)
			return -1;
		if ((*out = strdup(s)) == NULL)
			return fail(l, val, "out of memory");
		return 0;
	}
	if (s == NULL || len == 0)
		return fail(l, val, "'log' expects stderr, syslog or a file path");
	return parse_path(l, k->name, val, out);
}

static int
key_tls_version(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	size_t len;
	const char *s;

	if (check_tag(l, val) < 0)
		return -1;
	s = scalar_text(val, &len);
	if (s != NULL && strcmp(s, "1.2") == 0)
		*FIELD(int, base, k) = TLS1_2_VERSION;
	else if (s != NULL && strcmp(s, "1.3") == 0)
		*FIELD(int, base, k) = TLS1_3_VERSION;
	else
		return fail(l, val, "'tls_min_version' expects \"1.2\" or \"1.3\"");
	return 0;
}

/*
 * Nameprep lets ASCII through that no domain name holds ('@', '/', spaces,
 * control characters). RFC 7622 3.2 wants a domainpart that is a host name
 * or an IP literal: ASCII letters, digits, '-' and '.' (and '_', which
 * internal names use), "[IPv6]", or non-ASCII characters that nameprep and
 * IDNA judge.
 */
static int
host_shape_ok(const char *s, size_t len)
{
	struct in6_addr a6;
	char ip[INET6_ADDRSTRLEN + 1];

	if (len == 0)
		return 0;
	if (s[0] == '[') {
		if (len < 3 || s[len - 1] != ']' || len - 2 >= sizeof(ip))
			return 0;
		memcpy(ip, s + 1, len - 2);
		ip[len - 2] = '\0';
		return inet_pton(AF_INET6, ip, &a6) == 1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x80 || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_')
			continue;
		return 0;
	}
	return 1;
}

/* A domain name from the file, prepared; NULL if it is not one. */
static char *
prep_domain(const char *s, size_t len)
{
	char *host;

	/* RFC 7622 3.2: a trailing dot is not part of the domain. */
	if (len > 1 && s[len - 1] == '.')
		len--;
	host = host_shape_ok(s, len) ? jid_nameprep(s, len) : NULL;
	if (host != NULL && (*host == '\0' || strlen(host) > JID_PART_MAX)) {
		free(host);
		host = NULL;
	}
	return host;
}

static int
key_hosts(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	yaml_node_item_t *it;
	size_t n;

	if (check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_SEQUENCE_NODE ||
	    val->data.sequence.items.top == val->data.sequence.items.start)
		return fail(l, val, "'hosts' expects a list of at least one domain name");
	n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
	if ((c->hosts = calloc(n, sizeof(*c->hosts))) == NULL)
		return fail(l, val, "out of memory");
	for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(l->doc, *it);
		char buf[80], *host;
		const char *s;
		size_t len;

		if (check_tag(l, e) < 0)
			return -1;
		if ((s = scalar_text(e, &len)) == NULL)
			return fail(l, e, "'hosts' expects a list of domain names");
		if ((host = prep_domain(s, len)) == NULL)
			return fail(l, e, "'hosts' entry '%s' is not a valid domain name",
			    shown(s, len, buf, sizeof(buf)));
		for (size_t i = 0; i < c->nhosts; i++) {
			if (strcmp(c->hosts[i], host) == 0) {
				fail(l, e, "host '%s' is listed twice",
				    shown(host, strlen(host), buf, sizeof(buf)));
				free(host);
				return -1;
			}
		}
		c->hosts[c->nhosts++] = host;
	}
	return 0;
}

static int
key_certfiles(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	yaml_node_item_t *it;
	size_t n;

	if (check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_SEQUENCE_NODE)
		return fail(l, val, "'certfiles' expects a list of file paths");
	n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
	if (n > 0 && (c->certfiles = calloc(n, sizeof(*c->certfiles))) == NULL)
		return fail(l, val, "out of memory");
	for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(l->doc, *it);
		char *p;

		if (e->type != YAML_SCALAR_NODE)
			return fail(l, e, "'certfiles' expects a list of file paths");
		if (parse_path(l, "certfiles", e, &p) < 0)
			return -1;
		for (size_t i = 0; i < c->ncertfiles; i++) {
			if (strcmp(c->certfiles[i], p) == 0) {
				char buf[256];

				fail(l, e, "certificate file '%s' is listed twice",
				    shown(p, strlen(p), buf, sizeof(buf)));
				free(p);
				return -1;
			}
		}
		c->certfiles[c->ncertfiles++] = p;
	}
	return 0;
}

static int
key_ip(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	char **out = FIELD(char *, base, k);
	struct in6_addr a6;
	struct in_addr a4;

	if (parse_string(l, k->name, val, out) < 0)
		return -1;
	if (inet_pton(AF_INET6, *out, &a6) != 1 && inet_pton(AF_INET, *out, &a4) != 1)
		return fail(l, val, "'ip' expects an IPv4 or IPv6 address, "
		    "such as \"::\" or \"127.0.0.1\"");
	return 0;
}

static int
key_module(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	size_t len;
	const char *s;

	if (check_tag(l, val) < 0)
		return -1;
	s = scalar_text(val, &len);
	if (s != NULL && strcmp(s, "c2s") == 0)
		*FIELD(enum conf_listen_module, base, k) = CONF_LISTEN_C2S;
	else if (s != NULL && strcmp(s, "s2s") == 0)
		*FIELD(enum conf_listen_module, base, k) = CONF_LISTEN_S2S;
	else
		return fail(l, val, "'module' expects c2s or s2s");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Mappings                                                            */
/* ------------------------------------------------------------------ */

/*
 * Runs the handler of each key of map against base. seen[i] receives the
 * line where keys[i] was set (0 if absent).
 */
static int
parse_map(struct loader *l, yaml_node_t *map, const struct conf_key *keys,
    size_t nkeys, void *base, int *seen)
{
	yaml_node_pair_t *p;

	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		const char *name;
		size_t len, i;
		char buf[80];

		if (check_tag(l, kn) < 0)
			return -1;
		if ((name = scalar_text(kn, &len)) == NULL)
			return fail(l, kn, "expected a key name");
		for (i = 0; i < nkeys; i++)
			if (strcmp(name, keys[i].name) == 0)
				break;
		if (i == nkeys)
			return fail(l, kn, "unknown key '%s'",
			    shown(name, len, buf, sizeof(buf)));
		if (seen[i])
			return fail(l, kn, "'%s' is set twice (first on line %d)",
			    keys[i].name, seen[i]);
		seen[i] = node_line(kn);
		if (keys[i].parse(l, &keys[i], vn, base) < 0)
			return -1;
	}
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
parse_listener(struct loader *l, yaml_node_t *e, struct conf_listen *li)
{
	int seen[NKEYS(listen_keys)] = { 0 };

	li->line = node_line(e);
	li->starttls_required = 1;
	if (check_tag(l, e) < 0)
		return -1;
	if (e->type != YAML_MAPPING_NODE)
		return fail(l, e, "'listen' entry expects a mapping with 'port' "
		    "and 'module'");
	if (parse_map(l, e, listen_keys, NKEYS(listen_keys), li, seen) < 0)
		return -1;
	if (!seen[LK_PORT])
		return fail(l, e, "'listen' entry needs 'port'");
	if (!seen[LK_MODULE])
		return fail(l, e, "'listen' entry needs 'module'");
	if (li->ip == NULL && (li->ip = strdup("::")) == NULL)
		return fail(l, e, "out of memory");
	if (!seen[LK_MAX_STANZA])
		li->max_stanza_size = li->module == CONF_LISTEN_C2S ? 262144 : 524288;
	return 0;
}

static int
key_listen(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	yaml_node_item_t *it;
	size_t n;

	if (check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_SEQUENCE_NODE)
		return fail(l, val, "'listen' expects a list of listeners");
	n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
	if (n > 0 && (c->listen = calloc(n, sizeof(*c->listen))) == NULL)
		return fail(l, val, "out of memory");
	for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(l->doc, *it);
		struct conf_listen *li = &c->listen[c->nlisten++];

		if (parse_listener(l, e, li) < 0)
			return -1;
		for (size_t i = 0; i + 1 < c->nlisten; i++)
			if (listen_overlap(&c->listen[i], li))
				return fail(l, e, "port %u on '%s' is already used by "
				    "the listener on line %d", li->port, li->ip,
				    c->listen[i].line);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Shared by the sections below                                        */
/* ------------------------------------------------------------------ */

static size_t
nitems(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static size_t
npairs(const yaml_node_t *n)
{
	return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* A YAML null: nothing after the colon, "~" or "null", unquoted. */
static int
is_null(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	s = (const char *)n->data.scalar.value;
	return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	    strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/*
 * The name in the key of a mapping pair, which must be a non-empty string;
 * what is the kind of name for the message ("an acl name").
 */
static const char *
key_name(struct loader *l, yaml_node_t *kn, const char *what)
{
	size_t len;
	const char *s;

	if (check_tag(l, kn) < 0)
		return NULL;
	if ((s = scalar_text(kn, &len)) == NULL || len == 0) {
		fail(l, kn, "expected %s", what);
		return NULL;
	}
	return s;
}

/*
 * The line of an earlier key of map equal to name, or 0: YAML says keys
 * are unique, libyaml does not check.
 */
static int
earlier_key(struct loader *l, yaml_node_t *map, yaml_node_pair_t *upto,
    const char *name)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < upto; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);

		if (kn->type == YAML_SCALAR_NODE &&
		    strcmp((const char *)kn->data.scalar.value, name) == 0)
			return node_line(kn);
	}
	return 0;
}

static int
key_u64(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	unsigned long long v;

	if (parse_uint(l, k->name, val, k->min, k->max, &v) < 0)
		return -1;
	*FIELD(uint64_t, base, k) = v;
	return 0;
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

/*
 * Copies a YAML node into a conf_node tree. Scalars keep their text as
 * written: the module that reads an option knows its type. On failure
 * *out holds what was built so far, for the caller to free.
 */
static int
build_node(struct loader *l, yaml_node_t *yn, int depth, struct conf_node **out)
{
	struct conf_node *n;
	size_t len, cnt;
	const char *s;

	*out = NULL;
	if (check_tag(l, yn) < 0)
		return -1;
	if (depth > CONF_NODE_DEPTH_MAX)
		return fail(l, yn, "module options are nested deeper than %d levels",
		    CONF_NODE_DEPTH_MAX);
	if (++l->nnodes > CONF_NODES_MAX)
		return fail(l, yn, "module options hold more than %d values",
		    CONF_NODES_MAX);
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return fail(l, yn, "out of memory");
	*out = n;
	n->line = node_line(yn);
	switch (yn->type) {
	case YAML_SCALAR_NODE:
		n->type = CONF_NODE_SCALAR;
		if ((s = scalar_text(yn, &len)) == NULL)
			return fail(l, yn, "option values may not contain NUL characters");
		if ((n->scalar = strdup(s)) == NULL)
			return fail(l, yn, "out of memory");
		return 0;
	case YAML_SEQUENCE_NODE:
		n->type = CONF_NODE_SEQ;
		if ((cnt = nitems(yn)) > 0 &&
		    (n->items = calloc(cnt, sizeof(*n->items))) == NULL)
			return fail(l, yn, "out of memory");
		for (yaml_node_item_t *it = yn->data.sequence.items.start;
		    it < yn->data.sequence.items.top; it++) {
			yaml_node_t *e = yaml_document_get_node(l->doc, *it);

			if (build_node(l, e, depth + 1, &n->items[n->n++]) < 0)
				return -1;
		}
		return 0;
	case YAML_MAPPING_NODE:
		n->type = CONF_NODE_MAP;
		if ((cnt = npairs(yn)) > 0 &&
		    ((n->keys = calloc(cnt, sizeof(*n->keys))) == NULL ||
		    (n->items = calloc(cnt, sizeof(*n->items))) == NULL))
			return fail(l, yn, "out of memory");
		for (yaml_node_pair_t *p = yn->data.mapping.pairs.start;
		    p < yn->data.mapping.pairs.top; p++) {
			yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
			yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
			char buf[80];
			int first;

			if ((s = key_name(l, kn, "an option name")) == NULL)
				return -1;
			if ((first = earlier_key(l, yn, p, s)) != 0)
				return fail(l, kn, "'%s' is set twice (first on line %d)",
				    shown(s, strlen(s), buf, sizeof(buf)), first);
			if ((n->keys[n->n] = strdup(s)) == NULL)
				return fail(l, kn, "out of memory");
			if (build_node(l, vn, depth + 1, &n->items[n->n++]) < 0)
				return -1;
		}
		return 0;
	default:
		return fail(l, yn, "unexpected YAML node");
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
key_modules(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	size_t n;

	if (check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_MAPPING_NODE)
		return fail(l, val, "'modules' expects a mapping");
	if ((n = npairs(val)) > 0 && (c->modules = calloc(n, sizeof(*c->modules))) == NULL)
		return fail(l, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start;
	    p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		struct conf_module *m;
		const char *name;
		char buf[80];

		if ((name = key_name(l, kn, "a module name")) == NULL)
			return -1;
		if (!module_name_ok(name))
			return fail(l, kn, "'%s' is not a module name: expected mod_ "
			    "followed by lowercase letters, digits and '_'",
			    shown(name, strlen(name), buf, sizeof(buf)));
		for (size_t i = 0; i < c->nmodules; i++)
			if (strcmp(c->modules[i].name, name) == 0)
				return fail(l, kn, "module '%s' is listed twice (first "
				    "on line %d)", name, c->modules[i].line);
		m = &c->modules[c->nmodules++];
		m->line = node_line(kn);
		if ((m->name = strdup(name)) == NULL)
			return fail(l, kn, "out of memory");
		if (check_tag(l, vn) < 0)
			return -1;
		if (is_null(vn)) {
			if ((m->opts = calloc(1, sizeof(*m->opts))) == NULL)
				return fail(l, vn, "out of memory");
			m->opts->type = CONF_NODE_MAP;
			m->opts->line = m->line;
			continue;
		}
		if (vn->type != YAML_MAPPING_NODE)
			return fail(l, vn, "module '%s' expects a mapping of options "
			    "(or nothing)", name);
		if (build_node(l, vn, 0, &m->opts) < 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Access control                                                      */
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
	    (parse_ull(slash + 1, &plen, &end) < 0 || *end != '\0' || plen > max)) {
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
parse_matcher(struct loader *l, enum conf_acl_kind kind, yaml_node_t *e,
    struct conf_acl_matcher *m)
{
	size_t len;
	const char *s = scalar_text(e, &len), *at;
	char buf[80], ebuf[160], *node, *dom;
	unsigned max;
	regex_t *re;
	int rc;

	m->kind = kind;
	m->line = node_line(e);
	switch (kind) {
	case CONF_ACL_USER:
		/* nodeprep refuses '@' and '/', so a node ends at the first '@'. */
		at = memchr(s, '@', len);
		node = jid_nodeprep(s, at != NULL ? (size_t)(at - s) : len);
		dom = at != NULL ? prep_domain(at + 1, len - (size_t)(at - s) - 1) : NULL;
		if (node == NULL || (at != NULL && dom == NULL)) {
			free(node);
			free(dom);
			return fail(l, e, "'%s' is not a user: expected node@domain, or "
			    "a node alone for that user on every host",
			    shown(s, len, buf, sizeof(buf)));
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
		if ((m->value = prep_domain(s, len)) == NULL)
			return fail(l, e, "'%s' is not a valid domain name",
			    shown(s, len, buf, sizeof(buf)));
		return 0;
	case CONF_ACL_RESOURCE:
		if ((m->value = jid_resourceprep(s, len)) == NULL)
			return fail(l, e, "'%s' is not a valid resource",
			    shown(s, len, buf, sizeof(buf)));
		return 0;
	case CONF_ACL_IP:
		rc = parse_network(s, m->addr, &m->prefix, &max);
		if (rc == -1)
			return fail(l, e, "'%s' is not an IP address or network, such "
			    "as \"192.0.2.0/24\" or \"2001:db8::/32\"",
			    shown(s, len, buf, sizeof(buf)));
		if (rc == -2)
			return fail(l, e, "'%s' has a bad prefix length: expected 0 to "
			    "%u", shown(s, len, buf, sizeof(buf)), max);
		m->value = strdup(s);
		break;
	case CONF_ACL_USER_REGEXP:
	case CONF_ACL_SERVER_REGEXP:
		if ((re = calloc(1, sizeof(*re))) == NULL)
			return fail(l, e, "out of memory");
		if ((rc = regcomp(re, s, REG_EXTENDED | REG_NOSUB)) != 0) {
			regerror(rc, re, ebuf, sizeof(ebuf));
			free(re);
			return fail(l, e, "'%s' is not a valid regular expression: %s",
			    shown(s, len, buf, sizeof(buf)), ebuf);
		}
		m->compiled = re;
		m->value = strdup(s);
		break;
	}
	if (m->value == NULL)
		return fail(l, e, "out of memory");
	return 0;
}

/* kind: a string or a list of strings, appended to a->m. */
static int
parse_acl_kind(struct loader *l, struct conf_acl *a, enum conf_acl_kind kind,
    yaml_node_t *val)
{
	const char *kname = acl_kind_names[kind];
	yaml_node_item_t one, *start, *top;
	struct conf_acl_matcher *m;
	size_t n;

	if (check_tag(l, val) < 0)
		return -1;
	if (val->type == YAML_SCALAR_NODE) {
		one = 0;        /* unused: val itself is the value */
		start = &one;
		top = start + 1;
	} else if (val->type == YAML_SEQUENCE_NODE) {
		start = val->data.sequence.items.start;
		top = val->data.sequence.items.top;
	} else {
		return fail(l, val, "'%s' expects a string or a list of strings", kname);
	}
	n = (size_t)(top - start);
	if (n == 0)
		return 0;
	if ((m = realloc(a->m, (a->n + n) * sizeof(*a->m))) == NULL)
		return fail(l, val, "out of memory");
	a->m = m;
	memset(a->m + a->n, 0, n * sizeof(*a->m));
	for (yaml_node_item_t *it = start; it < top; it++) {
		yaml_node_t *e = val->type == YAML_SCALAR_NODE ? val :
		    yaml_document_get_node(l->doc, *it);
		size_t len;

		if (check_tag(l, e) < 0)
			return -1;
		if (scalar_text(e, &len) == NULL || len == 0)
			return fail(l, e, "'%s' expects a string or a list of strings",
			    kname);
		if (parse_matcher(l, kind, e, &a->m[a->n++]) < 0)
			return -1;
	}
	return 0;
}

static int
key_acl(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	size_t n;

	if (check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_MAPPING_NODE)
		return fail(l, val, "'acl' expects a mapping");
	if ((n = npairs(val)) > 0 && (c->acls = calloc(n, sizeof(*c->acls))) == NULL)
		return fail(l, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start;
	    p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		struct conf_acl *a;
		const char *name;
		char buf[80];

		if ((name = key_name(l, kn, "an acl name")) == NULL)
			return -1;
		shown(name, strlen(name), buf, sizeof(buf));
		if (is_builtin(name))
			return fail(l, kn, "'%s' is a built-in acl and cannot be "
			    "defined", name);
		for (size_t i = 0; i < c->nacls; i++)
			if (strcmp(c->acls[i].name, name) == 0)
				return fail(l, kn, "acl '%s' is defined twice (first on "
				    "line %d)", buf, c->acls[i].line);
		a = &c->acls[c->nacls++];
		a->line = node_line(kn);
		if ((a->name = strdup(name)) == NULL)
			return fail(l, kn, "out of memory");
		if (check_tag(l, vn) < 0)
			return -1;
		if (vn->type != YAML_MAPPING_NODE)
			return fail(l, vn, "acl '%s' expects a mapping of kinds to "
			    "values, such as {user: \"admin@example.org\"}", buf);
		for (yaml_node_pair_t *q = vn->data.mapping.pairs.start;
		    q < vn->data.mapping.pairs.top; q++) {
			yaml_node_t *kk = yaml_document_get_node(l->doc, q->key);
			yaml_node_t *kv = yaml_document_get_node(l->doc, q->value);
			const char *kind;
			size_t i;
			int first;

			if ((kind = key_name(l, kk, "an acl kind")) == NULL)
				return -1;
			for (i = 0; i < NKEYS(acl_kind_names); i++)
				if (strcmp(kind, acl_kind_names[i]) == 0)
					break;
			if (i == NKEYS(acl_kind_names))
				return fail(l, kk, "unknown acl kind '%s': expected user, "
				    "server, ip, user_regexp, server_regexp or resource",
				    shown(kind, strlen(kind), buf, sizeof(buf)));
			if ((first = earlier_key(l, vn, q, kind)) != 0)
				return fail(l, kk, "'%s' is set twice (first on line %d)",
				    kind, first);
			if (parse_acl_kind(l, a, (enum conf_acl_kind)i, kv) < 0)
				return -1;
		}
	}
	return 0;
}

/* allow: ACL or deny: ACL, appended to rule r (the r-th access rule). */
static int
parse_rule_pair(struct loader *l, size_t r, yaml_node_t *kn, yaml_node_t *vn)
{
	struct conf_access_rule *ar = &l->c->access_rules[r];
	struct acl_ref *refs;
	const char *what, *acl;
	size_t len;
	char buf[80];
	void *grown;
	int allow;

	if ((what = key_name(l, kn, "allow or deny")) == NULL)
		return -1;
	if (strcmp(what, "allow") == 0)
		allow = 1;
	else if (strcmp(what, "deny") == 0)
		allow = 0;
	else
		return fail(l, kn, "unknown key '%s' in access rule '%s': expected "
		    "allow or deny", shown(what, strlen(what), buf, sizeof(buf)),
		    ar->name);
	if (check_tag(l, vn) < 0)
		return -1;
	if ((acl = scalar_text(vn, &len)) == NULL || len == 0)
		return fail(l, vn, "'%s' expects an acl name", what);

	if ((grown = realloc(ar->r, (ar->n + 1) * sizeof(*ar->r))) == NULL)
		return fail(l, vn, "out of memory");
	ar->r = grown;
	ar->r[ar->n].allow = allow;
	if ((ar->r[ar->n].acl = strdup(acl)) == NULL)
		return fail(l, vn, "out of memory");
	ar->n++;
	if ((refs = realloc(l->refs, (l->nrefs + 1) * sizeof(*l->refs))) == NULL)
		return fail(l, vn, "out of memory");
	l->refs = refs;
	l->refs[l->nrefs++] = (struct acl_ref){ r, ar->n - 1, node_line(vn) };
	return 0;
}

/* One {allow: ACL} or {deny: ACL} in the list of rule r. */
static int
parse_rule_entry(struct loader *l, size_t r, yaml_node_t *e)
{
	if (check_tag(l, e) < 0)
		return -1;
	if (e->type != YAML_MAPPING_NODE || npairs(e) != 1)
		return fail(l, e, "access rule '%s' expects a list of entries, "
		    "each {allow: ACL} or {deny: ACL}", l->c->access_rules[r].name);
	return parse_rule_pair(l, r,
	    yaml_document_get_node(l->doc, e->data.mapping.pairs.start->key),
	    yaml_document_get_node(l->doc, e->data.mapping.pairs.start->value));
}

/*
 * NAME: [{allow: ACL}, {deny: ACL}, ...], or the short form of ejabberd's
 * own example file, NAME: {deny: ACL, allow: ACL}, read in file order (it
 * can say allow and deny once each; the list can say anything). Acl names
 * are checked in finish(), when every acl is known whatever the order of
 * the sections.
 */
static int
key_access_rules(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	size_t n;

	if (check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_MAPPING_NODE)
		return fail(l, val, "'access_rules' expects a mapping");
	if ((n = npairs(val)) > 0 &&
	    (c->access_rules = calloc(n, sizeof(*c->access_rules))) == NULL)
		return fail(l, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start;
	    p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		struct conf_access_rule *ar;
		const char *name;
		char buf[80];
		size_t r;

		if ((name = key_name(l, kn, "an access rule name")) == NULL)
			return -1;
		shown(name, strlen(name), buf, sizeof(buf));
		if (is_builtin(name))
			return fail(l, kn, "'%s' is a built-in access rule and cannot "
			    "be defined", name);
		for (size_t i = 0; i < c->naccess_rules; i++)
			if (strcmp(c->access_rules[i].name, name) == 0)
				return fail(l, kn, "access rule '%s' is defined twice "
				    "(first on line %d)", buf, c->access_rules[i].line);
		r = c->naccess_rules++;
		ar = &c->access_rules[r];
		ar->line = node_line(kn);
		if ((ar->name = strdup(name)) == NULL)
			return fail(l, kn, "out of memory");
		if (check_tag(l, vn) < 0)
			return -1;
		if (vn->type == YAML_MAPPING_NODE) {
			for (yaml_node_pair_t *q = vn->data.mapping.pairs.start;
			    q < vn->data.mapping.pairs.top; q++) {
				yaml_node_t *qk = yaml_document_get_node(l->doc, q->key);
				int first;

				if (qk->type == YAML_SCALAR_NODE &&
				    (first = earlier_key(l, vn, q,
				    (const char *)qk->data.scalar.value)) != 0)
					return fail(l, qk, "'%s' is set twice (first on "
					    "line %d)", (const char *)qk->data.scalar.value,
					    first);
				if (parse_rule_pair(l, r, qk,
				    yaml_document_get_node(l->doc, q->value)) < 0)
					return -1;
			}
			if (npairs(vn) == 0)
				return fail(l, vn, "access rule '%s' expects a list of "
				    "entries, each {allow: ACL} or {deny: ACL}", buf);
			continue;
		}
		if (vn->type != YAML_SEQUENCE_NODE)
			return fail(l, vn, "access rule '%s' expects a list of "
			    "entries, each {allow: ACL} or {deny: ACL}", buf);
		for (yaml_node_item_t *it = vn->data.sequence.items.start;
		    it < vn->data.sequence.items.top; it++)
			if (parse_rule_entry(l, r, yaml_document_get_node(l->doc, *it)) < 0)
				return -1;
	}
	return 0;
}

/* c2s_access: an access rule name, checked in finish(). (Modules name
 * their own rules in their options, e.g. mod_register's access.) */
static int
key_access(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	l->line_c2s_access = node_line(val);
	return parse_string(l, k->name, val, FIELD(char *, base, k));
}

/*
 * NAME: RATE (bytes per second) or NAME: {rate: RATE, burst_size: BYTES}.
 * "none" is ejabberd's name for no shaper and is kept for that.
 */
static int
key_shapers(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	size_t n;

	if (check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_MAPPING_NODE)
		return fail(l, val, "'shaper' expects a mapping");
	if ((n = npairs(val)) > 0 && (c->shapers = calloc(n, sizeof(*c->shapers))) == NULL)
		return fail(l, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start;
	    p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		int seen[NKEYS(shaper_keys)] = { 0 };
		unsigned long long v;
		struct conf_shaper *sh;
		const char *name, *s, *end;
		char buf[80];

		if ((name = key_name(l, kn, "a shaper name")) == NULL)
			return -1;
		shown(name, strlen(name), buf, sizeof(buf));
		if (strcmp(name, "none") == 0)
			return fail(l, kn, "'none' is the built-in absence of a shaper "
			    "and cannot be defined");
		for (size_t i = 0; i < c->nshapers; i++)
			if (strcmp(c->shapers[i].name, name) == 0)
				return fail(l, kn, "shaper '%s' is defined twice (first "
				    "on line %d)", buf, c->shapers[i].line);
		sh = &c->shapers[c->nshapers++];
		sh->line = node_line(kn);
		if ((sh->name = strdup(name)) == NULL)
			return fail(l, kn, "out of memory");
		if (check_tag(l, vn) < 0)
			return -1;
		if (vn->type == YAML_MAPPING_NODE) {
			if (parse_map(l, vn, shaper_keys, NKEYS(shaper_keys), sh, seen) < 0)
				return -1;
			if (!seen[SK_RATE])
				return fail(l, vn, "shaper '%s' needs 'rate'", buf);
			if (!seen[SK_BURST])
				sh->burst = sh->rate;
			continue;
		}
		s = plain_text(vn);
		if (s == NULL || parse_ull(s, &v, &end) < 0 || *end != '\0' ||
		    v < 1 || v > SHAPER_RATE_MAX)
			return fail(l, vn, "shaper '%s' expects a rate in bytes per "
			    "second from 1 to %llu, or {rate: N, burst_size: M}", buf,
			    SHAPER_RATE_MAX);
		sh->rate = sh->burst = v;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Federation (doc/federation.md)                                      */
/* ------------------------------------------------------------------ */

/* s2s_access: an access rule name, checked in check_references(). */
static int
key_s2s_access(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	l->line_s2s_access = node_line(val);
	return parse_string(l, k->name, val, FIELD(char *, base, k));
}

/* s2s_use_starttls: false | optional | required (ejabberd's values). */
static int
key_s2s_starttls(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	const char *s;

	if (check_tag(l, val) < 0)
		return -1;
	s = plain_text(val);
	if (s != NULL && (strcmp(s, "false") == 0 || strcmp(s, "no") == 0))
		*FIELD(int, base, k) = CONF_S2S_TLS_FALSE;
	else if (s != NULL && strcmp(s, "optional") == 0)
		*FIELD(int, base, k) = CONF_S2S_TLS_OPTIONAL;
	else if (s != NULL && (strcmp(s, "required") == 0 || strcmp(s, "true") == 0))
		*FIELD(int, base, k) = CONF_S2S_TLS_REQUIRED;
	else
		return fail(l, val, "'s2s_use_starttls' expects false, optional or required");
	return 0;
}

/*
 * s2s_hosts: DOMAIN: "HOST:PORT" (or "HOST", port 5269; "[::1]:5269" for an
 * IPv6 address). Pins a remote domain to an address instead of DNS.
 */
static int
key_s2s_hosts(struct loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	size_t n;

	if (check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_MAPPING_NODE)
		return fail(l, val, "'s2s_hosts' expects a mapping of domain: \"host:port\"");
	if ((n = npairs(val)) > 0 && (c->s2s_hosts = calloc(n, sizeof(*c->s2s_hosts))) == NULL)
		return fail(l, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start;
	    p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		unsigned long long port = 5269;
		struct conf_s2s_host *h;
		const char *name, *s, *colon, *end, *hs;
		char buf[80], *dom;
		size_t len, hlen;

		if ((name = key_name(l, kn, "a domain name")) == NULL)
			return -1;
		if ((dom = prep_domain(name, strlen(name))) == NULL)
			return fail(l, kn, "'s2s_hosts' key '%s' is not a valid domain name",
			    shown(name, strlen(name), buf, sizeof(buf)));
		for (size_t i = 0; i < c->ns2s_hosts; i++)
			if (strcmp(c->s2s_hosts[i].domain, dom) == 0) {
				free(dom);
				return fail(l, kn, "'s2s_hosts' has '%s' twice (first on "
				    "line %d)", shown(name, strlen(name), buf, sizeof(buf)),
				    c->s2s_hosts[i].line);
			}
		h = &c->s2s_hosts[c->ns2s_hosts++];
		h->domain = dom;
		h->line = node_line(kn);
		if (check_tag(l, vn) < 0)
			return -1;
		if ((s = scalar_text(vn, &len)) == NULL || len == 0)
			return fail(l, vn, "'s2s_hosts' expects \"host:port\" for '%s'",
			    shown(name, strlen(name), buf, sizeof(buf)));
		if (s[0] == '[') {
			const char *rb = strchr(s, ']');

			if (rb == NULL || (rb[1] != '\0' && rb[1] != ':'))
				return fail(l, vn, "'%s': expected \"[IPv6 address]:port\"",
				    shown(s, len, buf, sizeof(buf)));
			hs = s;
			hlen = (size_t)(rb - s + 1);
			colon = rb[1] == ':' ? rb + 1 : NULL;
		} else {
			colon = strchr(s, ':');
			if (colon != NULL && strrchr(s, ':') != colon)
				return fail(l, vn, "'%s': write an IPv6 address as "
				    "\"[address]:port\"", shown(s, len, buf, sizeof(buf)));
			hs = s;
			hlen = colon != NULL ? (size_t)(colon - s) : len;
		}
		if (!host_shape_ok(hs, hlen))
			return fail(l, vn, "'%s' is not a host name or address",
			    shown(s, len, buf, sizeof(buf)));
		h->host = hs[0] == '[' ? strndup(hs + 1, hlen - 2) : strndup(hs, hlen);
		if (h->host == NULL)
			return fail(l, vn, "out of memory");
		if (colon != NULL && (parse_ull(colon + 1, &port, &end) < 0 || *end != '\0' ||
		    port < 1 || port > 65535))
			return fail(l, vn, "'%s': the port must be a number from 1 to 65535",
			    shown(s, len, buf, sizeof(buf)));
		h->port = (uint16_t)port;
	}
	return 0;
}

/* Names used before their definition may have been read: checked last. */
static int
check_references(struct loader *l)
{
	struct conf *c = l->c;
	char buf[80], rbuf[80];
	size_t i, j;

	for (i = 0; i < l->nrefs; i++) {
		const struct conf_access_rule *ar = &c->access_rules[l->refs[i].rule];
		const char *acl = ar->r[l->refs[i].entry].acl;

		if (is_builtin(acl))
			continue;
		for (j = 0; j < c->nacls; j++)
			if (strcmp(c->acls[j].name, acl) == 0)
				break;
		if (j == c->nacls)
			return fail_at(l, l->refs[i].line, "access rule '%s' refers to "
			    "undefined acl '%s'", shown(ar->name, strlen(ar->name),
			    rbuf, sizeof(rbuf)), shown(acl, strlen(acl), buf, sizeof(buf)));
	}
	if (c->c2s_access != NULL && !is_builtin(c->c2s_access)) {
		const char *rule = c->c2s_access;

		for (j = 0; j < c->naccess_rules; j++)
			if (strcmp(c->access_rules[j].name, rule) == 0)
				break;
		if (j == c->naccess_rules)
			return fail_at(l, l->line_c2s_access, "'c2s_access' refers to "
			    "undefined access rule '%s'", shown(rule, strlen(rule), buf,
			    sizeof(buf)));
	}
	if (c->s2s_access != NULL && !is_builtin(c->s2s_access)) {
		for (j = 0; j < c->naccess_rules; j++)
			if (strcmp(c->access_rules[j].name, c->s2s_access) == 0)
				break;
		if (j == c->naccess_rules)
			return fail_at(l, l->line_s2s_access, "'s2s_access' refers to "
			    "undefined access rule '%s'", shown(c->s2s_access,
			    strlen(c->s2s_access), buf, sizeof(buf)));
	}
	for (i = 0; i < c->nlisten; i++) {
		const struct conf_listen *li = &c->listen[i];

		if (li->shaper == NULL || strcmp(li->shaper, "none") == 0)
			continue;
		for (j = 0; j < c->nshapers; j++)
			if (strcmp(c->shapers[j].name, li->shaper) == 0)
				break;
		if (j == c->nshapers)
			return fail_at(l, li->line, "listener on port %u refers to "
			    "undefined shaper '%s'", li->port,
			    shown(li->shaper, strlen(li->shaper), buf, sizeof(buf)));
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */
/* ------------------------------------------------------------------ */

static void
set_defaults(struct conf *c)
{
	c->refcount = 1;
	c->loglevel = LOG_LVL_INFO;
	c->workers = 0;
	c->store_map_size = GIB;
	c->negotiation_timeout = 30;
	c->hibernate_after = 90;
	c->max_xml_depth = 32;
	c->max_xml_attrs = 64;
	c->max_connections_per_ip = 100;
	c->auth_failure_delay_ms = 1000;
	c->max_auth_attempts = 3;
	c->max_send_queue = MIB;
	c->scram_iterations = 4096;
	c->tls_min_version = TLS1_2_VERSION;
	c->allow_plain = 1;
	c->s2s_use_starttls = CONF_S2S_TLS_REQUIRED;
	c->s2s_dialback = 1;
	c->s2s_idle_timeout = 600;
	c->s2s_keepalive = 60;
	c->s2s_keepalive_timeout = 30;
	c->s2s_connect_timeout = 30;
	c->s2s_max_queue = 1000;
}

/* Checks that need the whole file: required keys, derived defaults. */
static int
finish(struct loader *l, yaml_node_t *root)
{
	struct conf *c = l->c;
	struct sockaddr_un sun;

	if (c->nhosts == 0)
		return fail(l, root, "'hosts' is required: the domains this "
		    "server is for");
	if (c->log == NULL && (c->log = strdup("stderr")) == NULL)
		return fail(l, root, "out of memory");
	if (c->spool_dir == NULL && (c->spool_dir = resolve_path(l->dir, "spool")) == NULL)
		return fail(l, root, "out of memory");
	if (c->ctl_socket == NULL) {
		if ((c->ctl_socket = resolve_path(c->spool_dir, "xmppd.ctl")) == NULL)
			return fail(l, root, "out of memory");
		l->line_ctl_socket = l->line_spool_dir;
	}
	if (strlen(c->ctl_socket) >= sizeof(sun.sun_path))
		return fail_at(l, l->line_ctl_socket ? l->line_ctl_socket : 1,
		    "'ctl_socket' path is longer than a Unix socket allows "
		    "(%zu bytes); set 'ctl_socket' to a shorter path",
		    sizeof(sun.sun_path) - 1);
	for (size_t i = 0; i < c->nlisten; i++) {
		const struct conf_listen *li = &c->listen[i];

		/* A listener that must speak TLS cannot start without a
		 * certificate: say so now rather than at the first client. */
		if ((li->tls || li->starttls_required) && c->ncertfiles == 0)
			return fail_at(l, li->line, "listener on port %u needs TLS "
			    "but no 'certfiles' are set", li->port);
		/* A full-size stanza must fit in the queue to a reader. */
		if (li->max_stanza_size > c->max_send_queue)
			return fail_at(l, l->line_max_send_queue ?
			    l->line_max_send_queue : li->line,
			    "'max_send_queue' (%zu) is smaller than 'max_stanza_size' "
			    "(%zu) of the listener on line %d",
			    c->max_send_queue, li->max_stanza_size, li->line);
	}
	return check_references(l);
}

/* Reads the whole file: libyaml reader errors give a byte offset. */
static char *
read_file(const char *path, size_t *len_r, char *errbuf, size_t errlen)
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
		snprintf(errbuf, errlen, "%s: not a regular file", path);
		goto err_msg;
	}
	if ((size_t)st.st_size > CONF_FILE_MAX) {
		snprintf(errbuf, errlen, "%s: larger than %u bytes", path, CONF_FILE_MAX);
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
	snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
err_msg:
	free(buf);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int
yaml_failure(struct loader *l, const yaml_parser_t *p, const char *buf, size_t len)
{
	int line;

	if (p->error == YAML_MEMORY_ERROR)
		return fail_at(l, 1, "out of memory");
	if (p->error == YAML_READER_ERROR) {
		line = 1;
		for (size_t i = 0; i < p->problem_offset && i < len; i++)
			line += buf[i] == '\n';
		return fail_at(l, line, "%s", p->problem ? p->problem : "unreadable input");
	}
	line = (int)p->problem_mark.line + 1;
	if (p->context != NULL)
		return fail_at(l, line, "%s (%s started on line %d)",
		    p->problem ? p->problem : "YAML syntax error", p->context,
		    (int)p->context_mark.line + 1);
	return fail_at(l, line, "%s", p->problem ? p->problem : "YAML syntax error");
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
conf_load(const char *path, char *errbuf, size_t errlen)
{
	char dummy[1];
	struct conf *c;
	char *buf;
	size_t len;

	if (errbuf == NULL || errlen == 0) {
		errbuf = dummy;
		errlen = sizeof(dummy);
	}
	errbuf[0] = '\0';
	if ((buf = read_file(path, &len, errbuf, errlen)) == NULL)
		return NULL;
	c = conf_parse(path, buf, len, errbuf, errlen);
	free(buf);
	return c;
}

struct conf *
conf_parse(const char *path, const char *buf, size_t len, char *errbuf, size_t errlen)
{
	char dummy[1];
	struct loader l = { .file = path, .errbuf = errbuf, .errlen = errlen };
	int seen[NKEYS(top_keys)] = { 0 };
	yaml_document_t doc, extra;
	int have_doc = 0, have_extra = 0, parser_init = 0;
	yaml_parser_t parser;
	yaml_node_t *root;
	struct conf *c = NULL;
	const char *base;

	if (errbuf == NULL || errlen == 0) {
		l.errbuf = errbuf = dummy;
		l.errlen = errlen = sizeof(dummy);
	}
	errbuf[0] = '\0';
	if ((l.dir = file_dir(path)) == NULL) {
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		goto err;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(errbuf, errlen, "%s: out of memory", path);
		goto err;
	}
	set_defaults(c);
	l.c = c;
	base = strrchr(path, '/');
	base = base != NULL ? base + 1 : path;
	if ((c->path = resolve_path(l.dir, base)) == NULL) {
		snprintf(errbuf, errlen, "%s: out of memory", path);
		goto err;
	}

	if (!yaml_parser_initialize(&parser)) {
		snprintf(errbuf, errlen, "%s: out of memory", path);
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
		fail_at(&l, 1, "the file is empty; expected a mapping with at "
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
		fail(&l, yaml_document_get_root_node(&extra),
		    "only one YAML document is allowed in the file");
		goto err;
	}
	if (check_tag(&l, root) < 0)
		goto err;
	if (root->type != YAML_MAPPING_NODE) {
		fail(&l, root, "expected a mapping of keys at the top level");
		goto err;
	}
	if (parse_map(&l, root, top_keys, NKEYS(top_keys), c, seen) < 0)
		goto err;
	if (finish(&l, root) < 0)
		goto err;

	yaml_document_delete(&extra);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	free(l.refs);
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
	free(l.refs);
	free(l.dir);
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
