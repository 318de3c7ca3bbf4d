/*
 * jid.h - JID parsing and preparation (RFC 7622, with the stringprep
 * profiles of RFC 6122 that deployed servers use: nodeprep, nameprep,
 * resourceprep, through libidn).
 *
 * A jid owns one allocation holding all its strings; free it with jid_free.
 * Every string in a parsed jid is prepared (normalized): compare JIDs with
 * strcmp on these.
 */
#ifndef XMPPD_JID_H
#define XMPPD_JID_H

#include <stddef.h>

/* RFC 7622 3.1: each part is 1 to 1023 bytes once prepared. */
#define JID_PART_MAX 1023

typedef struct xmppd_jid {
	char *node;       /* NULL if none */
	char *domain;     /* never NULL in a valid jid */
	char *resource;   /* NULL if none */
	char *bare;       /* "node@domain" or "domain" */
	char *full;       /* "node@domain/resource", or bare if no resource */
	void *mem;        /* the single allocation (private) */
} jid;

/*
 * Parses and prepares s (len bytes, need not be NUL-terminated). Returns 0,
 * or -1 with *error_r set to a static description; *out is then zeroed.
 * Rejects: empty parts, parts over JID_PART_MAX after preparation, bytes that
 * are not UTF-8, characters a profile prohibits, a trailing dot is removed
 * from the domain (RFC 7622 3.2).
 */
int jid_parse(jid *out, const char *s, size_t len, const char **error_r);
/* Builds from parts (node and resource may be NULL), preparing each. */
int jid_make(jid *out, const char *node, const char *domain, const char *resource,
    const char **error_r);
/* Copies src into out. */
int jid_copy(jid *out, const jid *src);
/* The same jid without its resource. */
int jid_bare_of(jid *out, const jid *src);
void jid_free(jid *j);

/* Prepares one part into a malloc'd string, or NULL if invalid. */
char *jid_nodeprep(const char *s, size_t len);
char *jid_nameprep(const char *s, size_t len);
char *jid_resourceprep(const char *s, size_t len);

#endif
