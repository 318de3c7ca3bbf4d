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
/* A connection's shaper: libevent's token bucket with sh's rate and burst
 * on reads (the bytes on the wire), writes unlimited. The caller frees it
 * with ev_token_bucket_cfg_free; NULL if out of memory. */
struct ev_token_bucket_cfg *shaper_bucket_cfg(const struct conf_shaper *sh);

struct conf_section;

/* The acl, access_rules and shaper sections of xmppd.yml (acl_conf.c),
 * built into the loader. */
extern const struct conf_section acl_conf_section;

#endif
