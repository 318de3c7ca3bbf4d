/*
 * conf_keys.c - the key-table machinery (conf_keys.h): errors with file and
 * line, the typed scalars, paths relative to the file, domain names, and
 * mappings walked against a table of keys. Every section of xmppd.yml,
 * wherever its table lives, reads its values with these.
 *
 * Numbers and booleans must be plain (unquoted) scalars: "5222" in quotes
 * is a string, as YAML says.
 */
#include "config.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <yaml.h>

#include "core/conf.h"
#include "core/conf_keys.h"
#include "xmpp/jid.h"

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

int
conf_line(const yaml_node_t *n)
{
	return n != NULL ? (int)n->start_mark.line + 1 : 1;
}

/* Writes "FILE:LINE: message" and returns -1. */
int
conf_fail_at(struct conf_loader *l, int line, const char *fmt, ...)
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

/*
 * Copies a value from the file into out for use in a message: control
 * characters become '?' so a message stays one line, and long values are cut.
 */
const char *
conf_shown(const char *s, size_t len, char *out, size_t outlen)
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
	if (v >= CONF_GIB && v % CONF_GIB == 0)
		snprintf(buf, len, "%lluG", v / CONF_GIB);
	else if (v >= CONF_MIB && v % CONF_MIB == 0)
		snprintf(buf, len, "%lluM", v / CONF_MIB);
	else if (v >= CONF_KIB && v % CONF_KIB == 0)
		snprintf(buf, len, "%lluK", v / CONF_KIB);
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
int
conf_check_tag(struct conf_loader *l, const yaml_node_t *n)
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

		return conf_fail(l, n, "unsupported YAML tag '%s'",
		    conf_shown((const char *)n->tag, strlen((const char *)n->tag),
		    buf, sizeof(buf)));
	}
	return 0;
}

/* The text of a scalar that may be any string (quoted or not). */
const char *
conf_scalar(yaml_node_t *n, size_t *len_r)
{
	if (n->type != YAML_SCALAR_NODE)
		return NULL;
	*len_r = n->data.scalar.length;
	/* A double-quoted "\0" would cut the string short: refuse it. */
	if (memchr(n->data.scalar.value, '\0', *len_r) != NULL)
		return NULL;
	return (const char *)n->data.scalar.value;
}

int
conf_get_word(struct conf_loader *l, yaml_node_t *n, const char *const *words,
    const int *values, const char *expected, int *out)
{
	size_t len;
	const char *s;

	if (conf_check_tag(l, n) < 0)
		return -1;
	if ((s = conf_scalar(n, &len)) != NULL)
		for (size_t i = 0; words[i] != NULL; i++)
			if (strcmp(s, words[i]) == 0) {
				*out = values[i];
				return 0;
			}
	return conf_fail(l, n, "%s", expected);
}

/* The text of a plain (unquoted) scalar: numbers and booleans. */
const char *
conf_plain(yaml_node_t *n)
{
	size_t len;
	const char *s = conf_scalar(n, &len);

	if (s == NULL || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return NULL;
	return s;
}

int
conf_get_string(struct conf_loader *l, const char *name, yaml_node_t *n, char **out)
{
	size_t len;
	const char *s;

	if (conf_check_tag(l, n) < 0)
		return -1;
	s = conf_scalar(n, &len);
	if (s == NULL || len == 0)
		return conf_fail(l, n, "'%s' expects a non-empty string", name);
	if ((*out = strdup(s)) == NULL)
		return conf_fail(l, n, "out of memory");
	return 0;
}

/* Decimal digits only: no sign, no 0x, no separators. */
int
conf_ull(const char *s, unsigned long long *v, const char **end_r)
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

int
conf_get_uint(struct conf_loader *l, const char *name, yaml_node_t *n,
    unsigned long long min, unsigned long long max, unsigned long long *v)
{
	const char *s, *end;

	if (conf_check_tag(l, n) < 0)
		return -1;
	s = conf_plain(n);
	if (s == NULL || conf_ull(s, v, &end) < 0 || *end != '\0' ||
	    *v < min || *v > max)
		return conf_fail(l, n, "'%s' expects a whole number from %llu to %llu",
		    name, min, max);
	return 0;
}

/* A byte count with an optional binary suffix: 512K, 64M, 1G. */
int
conf_get_size(struct conf_loader *l, const char *name, yaml_node_t *n,
    unsigned long long min, unsigned long long max, size_t *out)
{
	unsigned long long v, mul = 1;
	const char *s, *end;
	char a[32], b[32];
	int ok;

	if (conf_check_tag(l, n) < 0)
		return -1;
	s = conf_plain(n);
	ok = s != NULL && conf_ull(s, &v, &end) == 0;
	if (ok && *end != '\0') {
		switch (*end) {
		case 'K': case 'k': mul = CONF_KIB; break;
		case 'M': case 'm': mul = CONF_MIB; break;
		case 'G': case 'g': mul = CONF_GIB; break;
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
			return conf_fail(l, n, "'%s' expects a size in bytes of at least %s "
			    "(suffixes K, M, G allowed)", name,
			    fmt_size(min, a, sizeof(a)));
		return conf_fail(l, n, "'%s' expects a size in bytes from %s to %s "
		    "(suffixes K, M, G allowed)", name,
		    fmt_size(min, a, sizeof(a)), fmt_size(max, b, sizeof(b)));
	}
	*out = (size_t)v;
	return 0;
}

int
conf_get_bool(struct conf_loader *l, const char *name, yaml_node_t *n, int *out)
{
	const char *s;

	if (conf_check_tag(l, n) < 0)
		return -1;
	s = conf_plain(n);
	if (s != NULL && (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0))
		*out = 1;
	else if (s != NULL && (strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0))
		*out = 0;
	else
		return conf_fail(l, n, "'%s' expects true or false", name);
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
char *
conf_resolve_path(const char *dir, const char *p)
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

int
conf_get_path(struct conf_loader *l, const char *name, yaml_node_t *n, char **out)
{
	char *s;

	if (conf_get_string(l, name, n, &s) < 0)
		return -1;
	*out = conf_resolve_path(l->dir, s);
	free(s);
	if (*out == NULL)
		return conf_fail(l, n, "out of memory");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Domain names                                                        */
/* ------------------------------------------------------------------ */

/*
 * Nameprep lets ASCII through that no domain name holds ('@', '/', spaces,
 * control characters). RFC 7622 3.2 wants a domainpart that is a host name
 * or an IP literal: ASCII letters, digits, '-' and '.' (and '_', which
 * internal names use), "[IPv6]", or non-ASCII characters that nameprep and
 * IDNA judge.
 */
int
conf_host_shape_ok(const char *s, size_t len)
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
char *
conf_prep_domain(const char *s, size_t len)
{
	char *host;

	/* RFC 7622 3.2: a trailing dot is not part of the domain. */
	if (len > 1 && s[len - 1] == '.')
		len--;
	host = conf_host_shape_ok(s, len) ? jid_nameprep(s, len) : NULL;
	if (host != NULL && (*host == '\0' || strlen(host) > JID_PART_MAX)) {
		free(host);
		host = NULL;
	}
	return host;
}

/* ------------------------------------------------------------------ */
/* Mapping and sequence helpers                                       */
/* ------------------------------------------------------------------ */

size_t
conf_nitems(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

size_t
conf_npairs(const yaml_node_t *n)
{
	return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* A YAML null: nothing after the colon, "~" or "null", unquoted. */
int
conf_is_null(const yaml_node_t *n)
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
const char *
conf_key_name(struct conf_loader *l, yaml_node_t *kn, const char *what)
{
	size_t len;
	const char *s;

	if (conf_check_tag(l, kn) < 0)
		return NULL;
	if ((s = conf_scalar(kn, &len)) == NULL || len == 0) {
		conf_fail(l, kn, "expected %s", what);
		return NULL;
	}
	return s;
}

/*
 * The line of an earlier key of map equal to name, or 0: YAML says keys
 * are unique, libyaml does not check.
 */
int
conf_earlier_key(struct conf_loader *l, yaml_node_t *map, yaml_node_pair_t *upto,
    const char *name)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < upto; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);

		if (kn->type == YAML_SCALAR_NODE &&
		    strcmp((const char *)kn->data.scalar.value, name) == 0)
			return conf_line(kn);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Mappings                                                            */
/* ------------------------------------------------------------------ */

/*
 * Runs the handler of each key of map against base. seen[i] receives the
 * line where keys[i] was set (0 if absent).
 */
int
conf_read_map(struct conf_loader *l, yaml_node_t *map, const struct conf_key *keys,
    size_t nkeys, void *base, int *seen)
{
	yaml_node_pair_t *p;

	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		const char *name;
		size_t len, i;
		char buf[80];

		if (conf_check_tag(l, kn) < 0)
			return -1;
		if ((name = conf_scalar(kn, &len)) == NULL)
			return conf_fail(l, kn, "expected a key name");
		for (i = 0; i < nkeys; i++)
			if (strcmp(name, keys[i].name) == 0)
				break;
		if (i == nkeys)
			return conf_fail(l, kn, "unknown key '%s'",
			    conf_shown(name, len, buf, sizeof(buf)));
		if (seen[i])
			return conf_fail(l, kn, "'%s' is set twice (first on line %d)",
			    keys[i].name, seen[i]);
		seen[i] = conf_line(kn);
		if (keys[i].parse(l, &keys[i], vn, base) < 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Key handlers                                                        */
/* ------------------------------------------------------------------ */

int
conf_key_string(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	return conf_get_string(l, k->name, val, CONF_FIELD(char *, base, k));
}

int
conf_key_path(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	return conf_get_path(l, k->name, val, CONF_FIELD(char *, base, k));
}

int
conf_key_uint(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	unsigned long long v;

	if (conf_get_uint(l, k->name, val, k->min, k->max, &v) < 0)
		return -1;
	*CONF_FIELD(unsigned, base, k) = (unsigned)v;
	return 0;
}

int
conf_key_port(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	unsigned long long v;

	if (conf_get_uint(l, k->name, val, k->min, k->max, &v) < 0)
		return -1;
	*CONF_FIELD(uint16_t, base, k) = (uint16_t)v;
	return 0;
}

int
conf_key_size(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	return conf_get_size(l, k->name, val, k->min, k->max, CONF_FIELD(size_t, base, k));
}

int
conf_key_bool(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	return conf_get_bool(l, k->name, val, CONF_FIELD(int, base, k));
}

int
conf_key_u64(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	unsigned long long v;

	if (conf_get_uint(l, k->name, val, k->min, k->max, &v) < 0)
		return -1;
	*CONF_FIELD(uint64_t, base, k) = v;
	return 0;
}
