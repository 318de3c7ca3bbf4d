/*
 * module.h - the module loader (hooks/xmppd.h): loading and unloading .so
 * modules, their contexts, options, timers and session slots. What the
 * modules register goes into the tables of core/registry.h.
 */
#ifndef XMPPD_ABI_MODULE_H
#define XMPPD_ABI_MODULE_H

#include <stddef.h>

#include "core/conf.h"
#include "hooks/xmppd.h"
#include "xml/xml.h"
#include "xmpp/jid.h"

/*
 * Functions returning 0, or -1 with a message in *error_r (error_r must
 * not be NULL). Main thread only: the message is in a buffer of this
 * file's, valid until the next module_* call; copy it to keep it longer.
 */
/* Loads every module of c, in dependency order; all or nothing. */
int module_load_all(const struct conf *c, const char **error_r);
/* After a configuration reload: loads added modules, unloads removed
 * ones, passes new options to the others. On -1 the others were still
 * applied; the message is the last failure's. */
int module_apply_conf(const struct conf *c, const char **error_r);
/* xmppctl module load|unload|reload. */
int module_load_one(const struct conf *c, const char *name, const char **error_r);
int module_unload_one(const char *name, const char **error_r);
int module_reload_one(const struct conf *c, const char *name, const char **error_r);
void module_unload_all(void);
void module_foreach(void (*fn)(void *ud, const char *name, const char *version,
    const char *path), void *ud);

/* Checks the modules of c without loading them: each file opens, its ABI
 * fits, its options are valid, its dependencies are listed. 0, or -1 with
 * the first problem in *error_r (file:line for options), as above. */
int module_check_conf(const struct conf *c, const char **error_r);
/* Used by api.c: the option values and registries of a context. */
struct xmppd_ctx;
const struct conf *module_conf_of(xmppd_ctx *ctx);
/* What the asynchronous store counts the module's pending work in. */
struct astore_owner *module_store_owner(xmppd_ctx *ctx);
const char *module_name_of(xmppd_ctx *ctx);
/* Its unload has begun (no new work is accepted). */
int module_unloading(xmppd_ctx *ctx);

/* request.c: IQ requests and the roster query (ABI 1.4). */
void request_init(void);
/* ctx unloads: its waiting requests are dropped, its roster provider
 * removed. */
void request_forget_owner(xmppd_ctx *ctx);
/* entity.c (ABI 1.5): ctx unloads: its caps and pubsub providers go. */
void entity_forget_owner(xmppd_ctx *ctx);

#endif
