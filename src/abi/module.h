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

/* Checks the modules of c without loading them: each file opens, its ABI
 * fits, its options are valid, its dependencies are listed. 0, or -1 with
 * the first problem in err (file:line for options). */
int module_check_conf(const struct conf *c, char *err, size_t errlen);
/* Used by api.c: the option values and registries of a context. */
struct xmppd_ctx;
const struct conf *module_conf_of(xmppd_ctx *ctx);
/* What the asynchronous store counts the module's pending work in. */
struct astore_owner *module_store_owner(xmppd_ctx *ctx);

#endif
