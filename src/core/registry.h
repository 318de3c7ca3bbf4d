/*
 * registry.h - the tables modules fill through the ABI (hooks/xmppd.h):
 * hooks, IQ handlers, service domains, disco features and identities,
 * stream features and control commands, and the code that reads them on
 * the hot path (hooks_run, IQ dispatch).
 *
 * Each table is an immutable array swapped atomically: workers read it
 * without a lock; a writer (the main thread, loading or unloading a module)
 * builds a new array, publishes it and retires the old one, which
 * registry_reclaim frees after worker_sync_all(), when no worker can still
 * be walking it. Every entry carries an opaque owner (the module's
 * context, abi/module.c), so that unloading removes exactly what one
 * module put in (Redis' module.c).
 */
#ifndef XMPPD_REGISTRY_H
#define XMPPD_REGISTRY_H

#include <stddef.h>

#include "hooks/xmppd.h"
#include "xml/xml.h"
#include "xmpp/jid.h"

enum reg_kind {
	/* 0 .. XMPPD_HOOK__COUNT-1: hooks */
	REG_IQ = XMPPD_HOOK__COUNT,
	REG_SERVICE,
	REG_DISCO_FEATURE,
	REG_DISCO_ACCOUNT_FEATURE,
	REG_DISCO_IDENTITY,
	REG_STREAM_FEATURE,
	REG_CTL,
	REG__COUNT
};

struct reg {
	const void *owner;
	int prio;
	const char *host;           /* NULL = every host */
	const char *s1, *s2, *s3;   /* ns / domain / category, type, name */
	unsigned types, scopes;
	int authenticated;
	xml_elem *el;
	void *fn;
	void *ud;
	int stat;                   /* hooks: metrics_hook_slot, 0 = not timed */
};

struct reg_list {
	size_t n;
	struct reg e[];
};

/* The current table of kind k (NULL when empty); valid until the caller's
 * worker next passes a quiescent point. */
const struct reg_list *registry_list(enum reg_kind k);
/* Adds r (copied; its strings must outlive it: the owner's). Sorted by
 * priority, stable. 0 or -1. Any thread, serialised by a lock. */
int registry_add(enum reg_kind k, const struct reg *r);
/* Removes every entry of owner from every table. */
void registry_remove_owner(const void *owner);
/* Frees the arrays retired since the last call. Call only after
 * worker_sync_all(). */
void registry_reclaim(void);

/* Session slots (xmppd_session_slot): every session keeps this many,
 * allocated on first use. */
#define MODULE_MAX_SLOTS 32
struct module_slot {
	void *data;
	void (*free_fn)(void *);
};

/* Hooks: the first non-CONTINUE result, or CONTINUE. */
enum xmppd_result hooks_run(enum xmppd_hook hook, const char *host, void *args);
/* filter_packet: like hooks_run, and when a handler replaces pa->stanza,
 * the reference it replaced is dropped (pa->stanza must hold a reference
 * the caller owns on entry, and does on return). */
enum xmppd_result hooks_run_filter(const char *host, struct xmppd_packet_args *pa);
/* Cheap test before building a hook's arguments. */
int hooks_any(enum xmppd_hook hook);

/* IQ get/set to the server (to has no node) or an account: 1 if a module
 * took it. */
int registry_iq_dispatch(xml_elem *iq, const jid *from, const jid *to);
/* The same for an IQ on a stream before authentication (XMPPD_IQ_STREAM). */
int registry_iq_dispatch_stream(xml_elem *iq, const jid *to);
/* The registered service domain (prepared), or NULL. */
const struct reg *registry_service_find(const char *domain);
/* Appends the registered stream features to features. */
void registry_stream_features(xml_elem *features, int authenticated);
/* xmppctl commands added by modules: 1 if argv[0] is one (result in
 * *rc_r, output in *out_r, malloc'd or NULL), 0 if not. Main thread. */
int registry_ctl_run(int argc, char **argv, int *rc_r, char **out_r);

#endif
