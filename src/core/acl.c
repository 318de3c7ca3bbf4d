/*
 * acl.c - matching acls, evaluating access rules, and the token buckets of
 * shapers, over the sections acl_conf.c reads (acl, access_rules, shaper).
 *
 * Nothing here allocates or writes to the configuration, so any thread may
 * call these on a struct conf it holds a reference to. Sharing a compiled
 * regex_t is fine: XSH 2.9.1 does not list regexec() among the functions
 * that need not be thread-safe, and glibc locks the pattern while matching.
 */
#include "config.h"

#include <netinet/in.h>
#include <regex.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>


#include "core/acl.h"
#include "core/conf.h"
#include "xmpp/jid.h"

/* ------------------------------------------------------------------ */
/* Acls                                                                */
/* ------------------------------------------------------------------ */

static const struct conf_acl *
acl_find(const struct conf *c, const char *name)
{
	for (size_t i = 0; i < c->nacls; i++)
		if (strcmp(c->acls[i].name, name) == 0)
			return &c->acls[i];
	return NULL;
}

/* addr as 16 bytes, IPv4 in its IPv4-mapped form (RFC 4291 2.5.5.2), as
 * acl_conf.c stores networks. Returns 0, or -1 for another family. */
static int
addr_bytes(const struct sockaddr *sa, unsigned char out[16])
{
	if (sa->sa_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		return 0;
	}
	if (sa->sa_family == AF_INET) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		return 0;
	}
	return -1;
}

static int
prefix_match(const unsigned char *a, const unsigned char *net, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;

	if (memcmp(a, net, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[full] ^ net[full]) & (0xffu << (8 - rest)) & 0xffu) == 0;
}

static int
matcher_match(const struct conf *c, const struct conf_acl_matcher *m,
    const jid *user, const struct sockaddr *addr)
{
	unsigned char a[16];

	switch (m->kind) {
	case CONF_ACL_USER:
		if (user == NULL || user->node == NULL)
			return 0;
		/* A value without '@' is a node on any of our hosts. */
		if (strchr(m->value, '@') == NULL)
			return strcmp(user->node, m->value) == 0 &&
			    conf_is_local_host(c, user->domain);
		return strcmp(user->bare, m->value) == 0;
	case CONF_ACL_SERVER:
		return user != NULL && strcmp(user->domain, m->value) == 0;
	case CONF_ACL_RESOURCE:
		return user != NULL && user->resource != NULL &&
		    strcmp(user->resource, m->value) == 0;
	case CONF_ACL_USER_REGEXP:
		return user != NULL && user->node != NULL &&
		    conf_is_local_host(c, user->domain) &&
		    regexec(m->compiled, user->node, 0, NULL, 0) == 0;
	case CONF_ACL_SERVER_REGEXP:
		return user != NULL &&
		    regexec(m->compiled, user->domain, 0, NULL, 0) == 0;
	case CONF_ACL_IP:
		return addr != NULL && addr_bytes(addr, a) == 0 &&
		    prefix_match(a, m->addr, m->prefix);
	}
	return 0;
}

int
acl_match(const struct conf *c, const char *name, const jid *user,
    const struct sockaddr *addr)
{
	const struct conf_acl *acl;

	if (c == NULL || name == NULL)
		return 0;
	if (strcmp(name, "all") == 0)
		return 1;
	if (strcmp(name, "none") == 0 || (acl = acl_find(c, name)) == NULL)
		return 0;
	for (size_t i = 0; i < acl->n; i++)
		if (matcher_match(c, &acl->m[i], user, addr))
			return 1;
	return 0;
}

int
acl_net_match(const struct conf_net *nets, size_t n, const struct sockaddr *addr)
{
	unsigned char a[16];

	if (addr == NULL || addr_bytes(addr, a) < 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (prefix_match(a, nets[i].addr, nets[i].prefix))
			return 1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Access rules                                                        */
/* ------------------------------------------------------------------ */

/*
 * A NULL rule is an unset option (c2s_access): everyone,
 * as if it were "all" (conf.h). Callers pass the option as it is.
 */
int
access_check(const struct conf *c, const char *rule, const jid *user,
    const struct sockaddr *addr)
{
	if (rule == NULL)
		return 1;
	if (c == NULL)
		return 0;
	if (strcmp(rule, "all") == 0)
		return 1;
	if (strcmp(rule, "none") == 0)
		return 0;
	for (size_t i = 0; i < c->naccess_rules; i++) {
		const struct conf_access_rule *ar = &c->access_rules[i];

		if (strcmp(ar->name, rule) != 0)
			continue;
		for (size_t j = 0; j < ar->n; j++)
			if (acl_match(c, ar->r[j].acl, user, addr))
				return ar->r[j].allow;
		return 0;
	}
	return 0;
}

int
access_rule_exists(const struct conf *c, const char *name)
{
	if (strcmp(name, "all") == 0 || strcmp(name, "none") == 0)
		return 1;
	for (size_t i = 0; c != NULL && i < c->naccess_rules; i++)
		if (strcmp(c->access_rules[i].name, name) == 0)
			return 1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Shapers                                                             */
/* ------------------------------------------------------------------ */

const struct conf_shaper *
shaper_find(const struct conf *c, const char *name)
{
	if (c == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < c->nshapers; i++)
		if (strcmp(c->shapers[i].name, name) == 0)
			return &c->shapers[i];
	return NULL;
}

void
shaper_bucket_init(struct shaper_bucket *b, const struct conf_shaper *sh, uint64_t now_ms)
{
	b->rate = sh->rate > 0 ? sh->rate : 1;
	b->burst = sh->burst > 0 ? sh->burst : b->rate;
	b->level = (int64_t)(b->rate < b->burst ? b->rate : b->burst);
	b->last_ms = now_ms;
}

uint64_t
shaper_bucket_allow(struct shaper_bucket *b, uint64_t now_ms)
{
	if (now_ms > b->last_ms) {
		/* Whole bytes only; the time of a fraction is kept for the
		 * next refill, so a slow rate still refills when asked
		 * often. */
		uint64_t ms = now_ms - b->last_ms;
		uint64_t add = ms > UINT64_MAX / b->rate ? UINT64_MAX : b->rate * ms / 1000;

		if (add > 0) {
			if (add >= b->burst + (uint64_t)(b->level < 0 ? -b->level : 0) ||
			    (int64_t)add < 0) {
				b->level = (int64_t)b->burst;
				b->last_ms = now_ms;
			} else {
				b->level += (int64_t)add;
				if (b->level > (int64_t)b->burst)
					b->level = (int64_t)b->burst;
				b->last_ms += add * 1000 / b->rate;
				if (b->level == (int64_t)b->burst)
					b->last_ms = now_ms;
			}
		}
	}
	return b->level > 0 ? (uint64_t)b->level : 0;
}

void
shaper_bucket_take(struct shaper_bucket *b, uint64_t n)
{
	b->level -= n > (uint64_t)INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)n;
}

unsigned
shaper_bucket_wait_ms(const struct shaper_bucket *b)
{
	/* Until the level is above 0 again: the debt and one byte. */
	uint64_t need = (uint64_t)(b->level < 0 ? -b->level : 0) + 1;
	uint64_t ms = (need * 1000 + b->rate - 1) / b->rate;

	return ms < 1 ? 1 : ms > 60000 ? 60000 : (unsigned)ms;
}
