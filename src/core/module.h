/*
 * module.h - the core side of the module ABI (hooks/xmppd.h): loading and
 * unloading .so modules, and the registries they fill (hooks, IQ handlers,
 * service domains, disco features and identities, stream features, timers,
 * session slots).
 *
 * Registries are immutable arrays swapped atomically: workers read them
 * without a lock; the main thread (load, unload) builds a new array,
 * publishes it, and frees the old one only after worker_sync_all(), when
 * no worker can still be walking it.
 */
#ifndef XMPPD_MODULE_H
#define XMPPD_MODULE_H

#include <stddef.h>

#include "core/conf.h"
#include "hooks/xmppd.h"
#include "xml/xml.h"
#include "xmpp/jid.h"

/* Loads every module of c, in dependency order; all or nothing. Main
 * thread. 0, or -1 with a message in err. */
int module_load_all(const struct conf *c, char *err, size_t errlen);
/* After a configuration reload: loads added modules, unloads removed
 * ones, passes new options to the others. */
int module_apply_conf(const struct conf *c, char *err, size_t errlen);
/* xmppctl module load|unload|reload. */
int module_load_one(const struct conf *c, const char *name, char *err, size_t errlen);
int module_unload_one(const char *name, char *err, size_t errlen);
int module_reload_one(const struct conf *c, const char *name, char *err, size_t errlen);
void module_unload_all(void);
void module_foreach(void (*fn)(void *ud, const char *name, const char *version,
    const char *path), void *ud);

/* Hooks: the first non-CONTINUE result, or CONTINUE. */
enum xmppd_result hooks_run(enum xmppd_hook hook, const char *host, void *args);
/* filter_packet: like hooks_run, and when a handler replaces
 * pa->stanza, the reference it replaced is dropped (pa->stanza must hold a
 * reference the caller owns on entry, and does on return). */
enum xmppd_result hooks_run_filter(const char *host, struct xmppd_packet_args *pa);
/* Checks the modules of c without loading them: each file opens, its ABI
 * fits, its options are valid, its dependencies are listed. 0, or -1 with
 * the first problem in err (file:line for options). */
int module_check_conf(const struct conf *c, char *err, size_t errlen);
/* Cheap test before building a hook's arguments. */
int hooks_any(enum xmppd_hook hook);

/* IQ get/set to the server (to has no node) or an account: 1 if a module
 * took it. */
int module_iq_dispatch(xml_elem *iq, const jid *from, const jid *to);
/* The same for an IQ on a stream before authentication (XMPPD_IQ_STREAM). */
int module_iq_dispatch_stream(xml_elem *iq, const jid *to);
/* 1 if to's domain is a service domain (the stanza was handed to it). */
int module_service_route(xml_elem *st, const jid *from, const jid *to);
/* xmppctl commands added by modules: 1 if name is one (output and result
 * in *out_r / the return through rc_r), 0 if not. Main thread. */
int module_ctl_run(int argc, char **argv, int *rc_r, char **out_r);
/* Appends the registered stream features to features. */
void module_stream_features(xml_elem *features, int authenticated);

/* Session slots, kept by c2s in an array of this many entries. */
#define MODULE_MAX_SLOTS 32
struct module_slot {
	void *data;
	void (*free_fn)(void *);
};

/* Used by api.c: the option values and registries of a context. */
struct xmppd_ctx;
const struct conf *module_conf_of(xmppd_ctx *ctx);

#endif
