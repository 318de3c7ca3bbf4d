/*
 * acl.h - access control lists, access rules and shapers, as configured
 * (conf.h: acl, access_rules, shaper; doc/configuration.md).
 *
 * All functions read an immutable struct conf and are safe from any thread.
 */
#ifndef XMPPD_ACL_H
#define XMPPD_ACL_H

#include <stdint.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>

#include "core/conf.h"
#include "xmpp/jid.h"

/* 1 if the acl called name matches the user (may be NULL when only an
 * address is known) or the address (may be NULL); 0 if not or no such acl.
 * "all" matches everything, "none" nothing. */
int acl_match(const struct conf *c, const char *name, const jid *user,
    const struct sockaddr *addr);

/* 1 if addr is in one of nets[0..n) (trusted_proxies), else 0. */
int acl_net_match(const struct conf_net *nets, size_t n, const struct sockaddr *addr);

/*
 * Evaluates the access rule called rule: its entries in order, the first
 * whose acl matches decides. Returns 1 (allow) or 0 (deny). No entry
 * matching denies. The rules "all" (allow everyone) and "none" (deny
 * everyone) exist without being configured; an unknown rule denies. A NULL
 * rule (c2s_access not set) allows.
 */
int access_check(const struct conf *c, const char *rule, const jid *user,
    const struct sockaddr *addr);

/* 1 if c defines the access rule called name, or it is "all" or "none":
 * for the sections that name one (c2s_access, s2s_access). */
int access_rule_exists(const struct conf *c, const char *name);

/* Finds the named shaper; NULL if none (unlimited). */
const struct conf_shaper *shaper_find(const struct conf *c, const char *name);
/*
 * A connection's shaper: a token bucket on what is read from it (writes
 * are not limited), doc/configuration.md "Shapers". It holds up to
 * sh->burst bytes, refills at sh->rate bytes a second and starts with one
 * second's worth (at most the burst). A read may take more than the bucket
 * holds (a TLS record is read whole): the bucket is in debt then, and
 * nothing is read until the debt is refilled. Times are clock_now_ms().
 * The stream layer keeps one per shaped connection (stream/conn.c).
 */
struct shaper_bucket {
	int64_t level;              /* bytes that may be read; < 0: in debt */
	uint64_t rate, burst;
	uint64_t last_ms;           /* refilled up to here */
};
void shaper_bucket_init(struct shaper_bucket *b, const struct conf_shaper *sh,
    uint64_t now_ms);
/* Refills to now_ms and says how many bytes may be read now (0: none). */
uint64_t shaper_bucket_allow(struct shaper_bucket *b, uint64_t now_ms);
/* n bytes were read (after shaper_bucket_allow; may leave it in debt). */
void shaper_bucket_take(struct shaper_bucket *b, uint64_t n);
/* Milliseconds until something may be read again (at least 1). */
unsigned shaper_bucket_wait_ms(const struct shaper_bucket *b);

struct conf_section;

/* The acl, access_rules and shaper sections of xmppd.yml (acl_conf.c),
 * built into the loader. */
extern const struct conf_section acl_conf_section;

#endif
