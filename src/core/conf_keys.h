/*
 * conf_keys.h - the key-table machinery of the configuration loader, for
 * the subsystems that own a section of xmppd.yml (doc/architecture.md,
 * "Where configuration keys live").
 *
 * conf.c reads the file and walks its top-level mapping; each key belongs
 * to one section, a table of struct conf_key kept beside the code that
 * uses those keys. A section's handlers write into the struct conf being
 * built (conf.h keeps every field), and report the first problem as
 * "FILE:LINE: what was expected" with conf_fail. The core's own sections
 * (the daemon's keys, shared limits and modules; acl, access_rules and
 * shaper) are built in; a section whose owner sits on a higher floor is
 * registered by the composition root before the first conf_load
 * (conf_section_register), so that the core never calls up. A key of a
 * section nobody registered is an unknown key.
 *
 * Everything here runs on the thread that called conf_load/conf_parse,
 * during that call.
 */
#ifndef XMPPD_CONF_KEYS_H
#define XMPPD_CONF_KEYS_H

#include <stddef.h>

#include <yaml.h>

#include "core/conf.h"

#define CONF_KIB ((size_t)1024)
#define CONF_MIB (CONF_KIB * 1024)
#define CONF_GIB (CONF_MIB * 1024)

struct conf_key;
struct conf_section;

/* One load in progress. Handlers read the first group; the rest is the
 * loader's. */
struct conf_loader {
	const char *file;          /* as given, for messages */
	char *dir;                 /* absolute directory of the file */
	yaml_document_t *doc;
	yaml_node_t *root;         /* the top-level mapping */
	struct conf *c;            /* being built */

	char *errbuf;              /* the calling thread's message buffer */
	size_t errlen;
	size_t nnodes;             /* module option nodes built so far */
	const struct conf_section *const *sections;   /* those known at the start */
	size_t nsections;
	struct conf_seen {         /* per key of every section, in order */
		int key, value;        /* lines of the key and of its value; 0 unset */
	} *seen;
};

/*
 * A key's handler parses val and writes the result at base + k->offset
 * (CONF_FIELD); base is the struct conf for top-level keys, or what the
 * caller of conf_read_map passed. Returns 0, or -1 after conf_fail.
 */
typedef int conf_key_fn(struct conf_loader *l, const struct conf_key *k,
    yaml_node_t *val, void *base);

/* One known key. min and max bound numbers and sizes. */
struct conf_key {
	const char *name;
	conf_key_fn *parse;
	size_t offset;
	unsigned long long min, max;
};

#define CONF_FIELD(type, base, k) ((type *)(void *)((char *)(base) + (k)->offset))
#define CONF_NKEYS(t) (sizeof(t) / sizeof((t)[0]))

/*
 * The top-level keys a subsystem owns. The checks run after the whole file
 * is read, in two passes over the sections in order (built-in first, then
 * in registration order): every check, then every check_refs, for names
 * that point into another section (an access rule, a shaper), whose
 * definition may come later in the file. Each may be NULL.
 */
struct conf_section {
	const char *name;                          /* "s2s", for messages */
	const struct conf_key *keys;
	size_t nkeys;
	void (*defaults)(struct conf *c);          /* before the file is read */
	int (*check)(struct conf_loader *l);       /* required keys, derived defaults */
	int (*check_refs)(struct conf_loader *l);
};

/*
 * Makes a section's keys known to every later conf_load. Main thread, before
 * the first load (src/xmppd.c; the unit tests register what they test).
 * Registering a section again does nothing. Returns 0, or -1 (a programming
 * error) if one of its keys is already another section's or the table of
 * sections is full.
 */
int conf_section_register(const struct conf_section *s);

/* The core's own keys (conf_core.c): hosts, the process, logging, the
 * limits every stream shares, modules. Built in, like acl_conf_section. */
extern const struct conf_section conf_core_section;

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* The line a node starts on, counted from 1. */
int conf_line(const yaml_node_t *n);
/* Writes "FILE:LINE: message" as the load's error and returns -1. */
int conf_fail_at(struct conf_loader *l, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define conf_fail(l, node, ...) conf_fail_at((l), conf_line(node), __VA_ARGS__)
/* A value from the file made fit for a message, in out: control characters
 * become '?', a long value is cut with "...". Returns out. */
const char *conf_shown(const char *s, size_t len, char *out, size_t outlen);
/* The line of the value of the top-level key name, 0 if the file does not
 * set it: for checks that name where a setting was made. */
int conf_value_line(const struct conf_loader *l, const char *name);

/* ------------------------------------------------------------------ */
/* Nodes and scalars                                                   */
/* ------------------------------------------------------------------ */

/* Refuses an explicit YAML tag (!!int, !foo): 0 or -1. */
int conf_check_tag(struct conf_loader *l, const yaml_node_t *n);
/* A scalar's text (any style), NULL if n is not a scalar or holds a NUL. */
const char *conf_scalar(yaml_node_t *n, size_t *len_r);
/* The text of a plain (unquoted) scalar, for numbers and booleans. */
const char *conf_plain(yaml_node_t *n);
/* A YAML null: nothing after the colon, "~" or "null", unquoted. */
int conf_is_null(const yaml_node_t *n);
size_t conf_nitems(const yaml_node_t *seq);
size_t conf_npairs(const yaml_node_t *map);
/* The key of a mapping pair as a non-empty string; what names the kind of
 * name for the message ("an acl name"). NULL after conf_fail. */
const char *conf_key_name(struct conf_loader *l, yaml_node_t *kn, const char *what);
/* The line of a key of map before upto that equals name, or 0 (YAML keys
 * are unique; libyaml does not check). */
int conf_earlier_key(struct conf_loader *l, yaml_node_t *map, yaml_node_pair_t *upto,
    const char *name);
/* Decimal digits only, no sign: 0, or -1; *end_r after the digits. */
int conf_ull(const char *s, unsigned long long *v, const char **end_r);

/* Values, named name in messages. Each returns 0, or -1 after conf_fail. */
int conf_get_string(struct conf_loader *l, const char *name, yaml_node_t *n, char **out);
int conf_get_uint(struct conf_loader *l, const char *name, yaml_node_t *n,
    unsigned long long min, unsigned long long max, unsigned long long *v);
/* A byte count with an optional suffix K, M or G (binary). */
int conf_get_size(struct conf_loader *l, const char *name, yaml_node_t *n,
    unsigned long long min, unsigned long long max, size_t *out);
int conf_get_bool(struct conf_loader *l, const char *name, yaml_node_t *n, int *out);
/* One of a fixed set of words (a scalar, no tag): words[i] is a word
 * and values[i] what it stands for, words ends with NULL; *out gets the
 * value. expected is the message when it is none of them. */
int conf_get_word(struct conf_loader *l, yaml_node_t *n, const char *const *words,
    const int *values, const char *expected, int *out);
/* A string taken relative to the file's directory. */
int conf_get_path(struct conf_loader *l, const char *name, yaml_node_t *n, char **out);

/* p resolved against dir (an absolute directory without symbolic links);
 * malloc'd, NULL if out of memory. */
char *conf_resolve_path(const char *dir, const char *p);
/* 1 if s has the shape of a host name or "[IPv6]" (RFC 7622 3.2). */
int conf_host_shape_ok(const char *s, size_t len);
/* A domain name from the file, prepared (nameprep); malloc'd, NULL if it is
 * not one. */
char *conf_prep_domain(const char *s, size_t len);

/*
 * Runs the handler of each key of map (a mapping) against base: an unknown
 * key or one set twice is an error. seen[i] receives the line where keys[i]
 * was set (0 if absent).
 */
int conf_read_map(struct conf_loader *l, yaml_node_t *map, const struct conf_key *keys,
    size_t nkeys, void *base, int *seen);

/* Handlers for plain values: the field at k->offset is a char *
 * (string, path), unsigned (uint, bounded by min..max), uint64_t (u64),
 * uint16_t (port), size_t (size) or int (bool). */
conf_key_fn conf_key_string, conf_key_path, conf_key_uint, conf_key_u64, conf_key_port,
    conf_key_size, conf_key_bool;

#endif
