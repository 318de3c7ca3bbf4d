/*
 * api.c - the functions of hooks/xmppd.h that wrap core units: elements,
 * JIDs, routing, sessions' neighbours, store, accounts, access.
 *
 * xmppd_elem is the core's element type and xmppd_jid the core's jid (the
 * public header only names them), so these are thin.
 */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "abi/module.h"
#include "auth/account.h"
#include "core/acl.h"
#include "core/astore.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/registry.h"
#include "router/router.h"
#include "router/session.h"
#include "router/sm.h"
#include "router/users.h"
#include "store/backend.h"
#include "store/store.h"
#include "xml/stream.h"
#include "xml/xml.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"
#include "xmpp/stanza.h"

/* ---------------------------------------------------------------- */
/* Elements.                                                          */

XMPPD_API xmppd_elem *
xmppd_elem_new(const char *ns, const char *name)
{
	return xml_elem_new(ns, name);
}

XMPPD_API xmppd_elem *
xmppd_elem_add_child(xmppd_elem *parent, const char *ns, const char *name)
{
	return xml_elem_add_child(parent, ns, name);
}

XMPPD_API void
xmppd_elem_add_text(xmppd_elem *parent, const char *text, size_t len)
{
	xml_elem_add_text(parent, text, len);
}

XMPPD_API void
xmppd_elem_set_attr(xmppd_elem *e, const char *name, const char *value)
{
	xml_attr_set(e, name, value);
}

XMPPD_API void
xmppd_elem_append_copy(xmppd_elem *parent, const xmppd_elem *child)
{
	(void)xml_elem_append_copy(parent, child);
}

XMPPD_API void
xmppd_elem_remove_child(xmppd_elem *parent, xmppd_elem *child)
{
	xml_elem_remove_child(parent, child);
}

XMPPD_API xmppd_elem *
xmppd_elem_copy(const xmppd_elem *e)
{
	return xml_elem_copy(e);
}

XMPPD_API xmppd_elem *
xmppd_elem_ref(xmppd_elem *root)
{
	return xml_elem_ref(root);
}

XMPPD_API void
xmppd_elem_unref(xmppd_elem *root)
{
	xml_elem_unref(root);
}

XMPPD_API const char *
xmppd_elem_name(const xmppd_elem *e)
{
	return xml_elem_name(e);
}

XMPPD_API const char *
xmppd_elem_ns(const xmppd_elem *e)
{
	return xml_elem_ns(e);
}

XMPPD_API const char *
xmppd_elem_attr(const xmppd_elem *e, const char *name)
{
	return xml_attr_get(e, name);
}

XMPPD_API xmppd_elem *
xmppd_elem_child(const xmppd_elem *e, const char *ns, const char *name)
{
	return xml_child(e, ns, name);
}

XMPPD_API xmppd_elem *
xmppd_elem_first_child(const xmppd_elem *e)
{
	return xml_first_child(e);
}

XMPPD_API xmppd_elem *
xmppd_elem_next_sibling(const xmppd_elem *e)
{
	return xml_next_sibling(e);
}

XMPPD_API const char *
xmppd_elem_text(xmppd_elem *e)
{
	return xml_text(e);
}

XMPPD_API const char *
xmppd_elem_child_text(xmppd_elem *e, const char *ns, const char *name)
{
	return xml_child_text(e, ns, name);
}

XMPPD_API char *
xmppd_elem_to_string(const xmppd_elem *e, size_t *len_r)
{
	return xml_to_string(e, NS_CLIENT, len_r);
}

XMPPD_API xmppd_elem *
xmppd_elem_parse(const char *text, size_t len)
{
	return xml_parse_elem(text, len, NS_CLIENT);
}

XMPPD_API xmppd_elem *
xmppd_stanza_error(const xmppd_elem *st, const char *condition, const char *text)
{
	return stanza_error_reply(st, condition, text);
}

XMPPD_API const char *
xmppd_stanza_kind(const xmppd_elem *st)
{
	switch (stanza_kind(st)) {
	case STANZA_MESSAGE:
		return "message";
	case STANZA_PRESENCE:
		return "presence";
	case STANZA_IQ:
		return "iq";
	default:
		return NULL;
	}
}

XMPPD_API const char *
xmppd_stanza_type(const xmppd_elem *st)
{
	return stanza_type(st);
}

XMPPD_API int
xmppd_presence_priority(xmppd_elem *presence)
{
	return stanza_priority(presence);
}

/* ---------------------------------------------------------------- */
/* JIDs.                                                              */

static xmppd_jid *
jid_box(jid *tmp, int rc)
{
	jid *j;

	if (rc < 0 || (j = malloc(sizeof(*j))) == NULL) {
		if (rc == 0)
			jid_free(tmp);
		return NULL;
	}
	*j = *tmp;
	return j;
}

XMPPD_API xmppd_jid *
xmppd_jid_parse(const char *s)
{
	const char *e;
	jid t;

	if (s == NULL)
		return NULL;
	return jid_box(&t, jid_parse(&t, s, strlen(s), &e));
}

XMPPD_API xmppd_jid *
xmppd_jid_make(const char *node, const char *domain, const char *resource)
{
	const char *e;
	jid t;

	return jid_box(&t, jid_make(&t, node, domain, resource, &e));
}

XMPPD_API xmppd_jid *
xmppd_jid_copy(const xmppd_jid *src)
{
	jid t;

	return jid_box(&t, jid_copy(&t, src));
}

XMPPD_API void
xmppd_jid_free(xmppd_jid *j)
{
	if (j == NULL)
		return;
	jid_free(j);
	free(j);
}

XMPPD_API const char *xmppd_jid_node(const xmppd_jid *j) { return j->node; }
XMPPD_API const char *xmppd_jid_domain(const xmppd_jid *j) { return j->domain; }
XMPPD_API const char *xmppd_jid_resource(const xmppd_jid *j) { return j->resource; }
XMPPD_API const char *xmppd_jid_bare(const xmppd_jid *j) { return j->bare; }
XMPPD_API const char *xmppd_jid_full(const xmppd_jid *j) { return j->full; }

XMPPD_API char *
xmppd_nodeprep(const char *s)
{
	return s != NULL ? jid_nodeprep(s, strlen(s)) : NULL;
}

/* ---------------------------------------------------------------- */
/* Routing.                                                           */

static void
route_parsed(xmppd_elem *st, int filter)
{
	const char *to = xml_attr_get(st, "to"), *from = xml_attr_get(st, "from"), *e;
	jid jto, jfrom;

	if (to == NULL || jid_parse(&jto, to, strlen(to), &e) < 0)
		return;
	if (from == NULL || jid_parse(&jfrom, from, strlen(from), &e) < 0)
		memset(&jfrom, 0, sizeof(jfrom));
	if (filter)
		router_route(st, &jfrom, &jto);
	else
		router_route_filtered(st, &jfrom, &jto);
	jid_free(&jto);
	jid_free(&jfrom);
}

XMPPD_API void
xmppd_route(xmppd_elem *st)
{
	route_parsed(st, 1);
}

XMPPD_API void
xmppd_route_filtered(xmppd_elem *st)
{
	route_parsed(st, 0);
}

XMPPD_API void
xmppd_bounce(const xmppd_elem *st, const char *condition, const char *text)
{
	router_bounce((xml_elem *)st, condition, text);
}

XMPPD_API void
xmppd_iq_reply(const xmppd_elem *iq, xmppd_elem *payload)
{
	xml_elem *r = stanza_iq_result(iq);

	if (payload != NULL) {
		xmppd_elem_append_copy(r, payload);
		xml_elem_unref(payload);
	}
	if (!session_preauth_reply(iq, r))
		xmppd_route(r);
	xml_elem_unref(r);
}

XMPPD_API void
xmppd_iq_error(const xmppd_elem *iq, const char *condition, const char *text)
{
	xml_elem *r;

	if (session_preauth_addr(iq) == NULL) {
		router_bounce((xml_elem *)iq, condition, text);
		return;
	}
	if ((r = stanza_error_reply(iq, condition, text)) != NULL) {
		(void)session_preauth_reply(iq, r);
		xml_elem_unref(r);
	}
}

XMPPD_API const struct sockaddr *
xmppd_iq_stream_addr(const xmppd_elem *iq)
{
	return session_preauth_addr(iq);
}

XMPPD_API size_t
xmppd_user_presences(const xmppd_jid *bare, void (*fn)(const xmppd_elem *presence, void *ud),
    void *ud)
{
	return sm_user_presences(bare, fn, ud);
}

XMPPD_API size_t
xmppd_send_to_resources(const xmppd_jid *bare, const xmppd_elem *st, int available_only)
{
	return sm_send_to_resources(bare, st, available_only);
}

struct resources_call {
	void (*fn)(const struct xmppd_resource *r, void *ud);
	void *ud;
};

static void
resource_cb(const struct sm_resource *r, void *ud)
{
	struct resources_call *rc = ud;
	struct xmppd_resource x = {
		.resource = r->resource, .full = r->full, .available = r->available,
		.priority = r->priority, .flags = r->flags, .ack_wait_since_ms = r->ack_wait_ms,
	};

	rc->fn(&x, rc->ud);
}

XMPPD_API size_t
xmppd_user_resources(const xmppd_jid *bare, void (*fn)(const struct xmppd_resource *r,
    void *ud), void *ud)
{
	struct resources_call rc = { fn, ud };

	if (bare == NULL || fn == NULL)
		return 0;
	return sm_resources(bare, resource_cb, &rc);
}

XMPPD_API int
xmppd_deliver(const xmppd_jid *full, const xmppd_elem *st)
{
	struct sm_target t;

	if (full == NULL || full->resource == NULL || st == NULL || sm_find(full, &t, 1) < 1)
		return 0;
	/* A copy for one resource: dropped if the session has just gone. */
	session_deliver_copy(t.worker, t.sid, (xml_elem *)st);
	return 1;
}

XMPPD_API int
xmppd_is_local_host(const char *domain)
{
	struct conf *c = conf_current();
	int r = c != NULL && conf_is_local_host(c, domain);

	conf_unref(c);
	return r;
}

XMPPD_API size_t
xmppd_host_foreach(void (*fn)(const char *host, void *ud), void *ud)
{
	struct conf *c = conf_current();
	size_t n = c != NULL ? c->nhosts : 0;

	for (size_t i = 0; i < n && fn != NULL; i++)
		fn(c->hosts[i], ud);
	conf_unref(c);
	return n;
}

/* ---------------------------------------------------------------- */
/* Store: asynchronous (core/astore.c).                               */

_Static_assert((int)XMPPD_STORE_OK == (int)STORE_OK &&
    (int)XMPPD_STORE_NOT_FOUND == (int)STORE_NOT_FOUND &&
    (int)XMPPD_STORE_ERROR == (int)STORE_ERROR &&
    (int)XMPPD_STORE_INVALID == (int)STORE_INVALID &&
    (int)XMPPD_STORE_ABORTED == (int)STORE_ABORTED, "store statuses are the ABI's");

XMPPD_API int
xmppd_store_aget(xmppd_ctx *ctx, const char *table, const void *key, size_t klen,
    xmppd_store_get_fn fn, void *ud)
{
	return astore_get(module_store_owner(ctx), table, key, klen, fn, ud);
}

XMPPD_API int
xmppd_store_ascan(xmppd_ctx *ctx, const char *table, const void *prefix, size_t plen,
    xmppd_scan_fn row, xmppd_store_done_fn done, void *ud)
{
	return astore_scan(module_store_owner(ctx), table, prefix, plen, row, done, ud);
}

XMPPD_API int
xmppd_store_arange(xmppd_ctx *ctx, const char *table, const void *prefix, size_t plen,
    const void *start, size_t slen, int reverse, size_t limit, xmppd_scan_fn row,
    xmppd_store_done_fn done, void *ud)
{
	return astore_range(module_store_owner(ctx), table, prefix, plen, start, slen, reverse,
	    limit, row, done, ud);
}

XMPPD_API xmppd_batch *
xmppd_batch_new(xmppd_ctx *ctx)
{
	return astore_batch_new(module_store_owner(ctx));
}

XMPPD_API int
xmppd_batch_put(xmppd_batch *b, const char *table, const void *key, size_t klen,
    const void *val, size_t vlen)
{
	return astore_batch_put(b, table, key, klen, val, vlen);
}

XMPPD_API int
xmppd_batch_del(xmppd_batch *b, const char *table, const void *key, size_t klen)
{
	return astore_batch_del(b, table, key, klen);
}

XMPPD_API int
xmppd_batch_del_prefix(xmppd_batch *b, const char *table, const void *prefix, size_t plen)
{
	return astore_batch_del_prefix(b, table, prefix, plen);
}

XMPPD_API int
xmppd_batch_get(xmppd_batch *b, const char *table, const void *key, size_t klen,
    xmppd_batch_get_fn fn, void *ud)
{
	return astore_batch_get(b, table, key, klen, fn, ud);
}

XMPPD_API int
xmppd_batch_scan(xmppd_batch *b, const char *table, const void *prefix, size_t plen,
    xmppd_batch_row_fn fn, void *ud)
{
	return astore_batch_scan(b, table, prefix, plen, fn, ud);
}

XMPPD_API int
xmppd_batch_submit(xmppd_batch *b, xmppd_store_done_fn done, void *ud)
{
	return astore_batch_submit(b, done, ud);
}

XMPPD_API void
xmppd_batch_free(xmppd_batch *b)
{
	astore_batch_free(b);
}

/* ---------------------------------------------------------------- */
/* Store: synchronous (deprecated for modules).                       */

XMPPD_API xmppd_txn *
xmppd_store_begin(int write)
{
	return (xmppd_txn *)store_begin(write);
}

XMPPD_API int
xmppd_store_commit(xmppd_txn *txn)
{
	return store_commit((store_txn *)txn);
}

XMPPD_API void
xmppd_store_abort(xmppd_txn *txn)
{
	store_abort((store_txn *)txn);
}

XMPPD_API int
xmppd_store_get(xmppd_txn *txn, const char *table, const void *key, size_t klen,
    const void **val_r, size_t *vlen_r)
{
	return store_get((store_txn *)txn, table, key, klen, val_r, vlen_r);
}

XMPPD_API int
xmppd_store_put(xmppd_txn *txn, const char *table, const void *key, size_t klen,
    const void *val, size_t vlen)
{
	return store_put((store_txn *)txn, table, key, klen, val, vlen);
}

XMPPD_API int
xmppd_store_del(xmppd_txn *txn, const char *table, const void *key, size_t klen)
{
	return store_del((store_txn *)txn, table, key, klen);
}

XMPPD_API int
xmppd_store_scan(xmppd_txn *txn, const char *table, const void *prefix, size_t plen,
    xmppd_scan_fn fn, void *ud)
{
	return store_scan((store_txn *)txn, table, prefix, plen, fn, ud);
}

XMPPD_API long
xmppd_store_del_prefix(xmppd_txn *txn, const char *table, const void *prefix, size_t plen)
{
	return store_del_prefix((store_txn *)txn, table, prefix, plen);
}

XMPPD_API int
xmppd_store_user_table(xmppd_ctx *ctx, const char *table)
{
	const char *err;

	if (users_register_table(table, &err) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot declare user table %s: %s",
		    table ? table : "(null)", err);
		return -1;
	}
	return 0;
}

XMPPD_API size_t
xmppd_store_key(char *buf, size_t size, ...)
{
	va_list ap;
	const char *part;
	size_t len = 0;

	va_start(ap, size);
	while ((part = va_arg(ap, const char *)) != NULL) {
		size_t l = strlen(part);

		if (len + l + 1 > size || len + l + 1 > 511) {
			va_end(ap);
			return 0;
		}
		memcpy(buf + len, part, l + 1);
		len += l + 1;
	}
	va_end(ap);
	return len;
}

/* ---------------------------------------------------------------- */
/* Accounts and access.                                               */

XMPPD_API int
xmppd_user_exists(const char *node, const char *host)
{
	return account_exists(node, host) == 1;
}

XMPPD_API int
xmppd_user_create(const char *node, const char *host, const char *password,
    const char **error_r)
{
	return users_create(node, host, password, error_r);
}

XMPPD_API int
xmppd_user_set_password(const char *node, const char *host, const char *password,
    const char **error_r)
{
	return account_set_password(node, host, password, error_r);
}

XMPPD_API int
xmppd_user_remove(const char *node, const char *host, const char **error_r)
{
	return users_remove(node, host, error_r);
}

XMPPD_API int
xmppd_user_check_password(const char *node, const char *host, const char *password)
{
	return account_check_password(node, host, password) == 1;
}

XMPPD_API int
xmppd_access_check(const char *rule, const xmppd_jid *user, const struct sockaddr *addr)
{
	struct conf *c = conf_current();
	int r = access_check(c, rule, user, addr);

	conf_unref(c);
	return r;
}

XMPPD_API int
xmppd_acl_match(const char *acl, const xmppd_jid *user, const struct sockaddr *addr)
{
	struct conf *c = conf_current();
	int r = acl_match(c, acl, user, addr);

	conf_unref(c);
	return r;
}

struct user_foreach {
	void (*fn)(const char *node, void *ud);
	void *ud;
};

static void
user_foreach_one(void *ud, const char *node)
{
	struct user_foreach *f = ud;

	f->fn(node, f->ud);
}

XMPPD_API long
xmppd_user_foreach(const char *host, void (*fn)(const char *node, void *ud), void *ud)
{
	struct user_foreach f = { fn, ud };

	if (host == NULL || fn == NULL)
		return -1;
	return account_list(host, user_foreach_one, &f);
}

struct sessions_foreach {
	const char *host;
	void (*fn)(const char *full, int available, void *ud);
	void *ud;
	size_t n;
};

static void
sessions_foreach_one(void *ud, const char *full, unsigned worker, const char *addr,
    int priority, int available)
{
	struct sessions_foreach *f = ud;
	const char *at = strchr(full, '@'), *dom = at != NULL ? at + 1 : full;
	size_t hl;

	(void)worker;
	(void)addr;
	(void)priority;
	if (f->host != NULL) {
		hl = strlen(f->host);
		if (strncmp(dom, f->host, hl) != 0 || dom[hl] != '/')
			return;
	}
	f->n++;
	f->fn(full, available, f->ud);
}

XMPPD_API size_t
xmppd_sessions_foreach(const char *host, void (*fn)(const char *full, int available,
    void *ud), void *ud)
{
	struct sessions_foreach f = { host, fn, ud, 0 };

	if (fn == NULL)
		return 0;
	sm_foreach(sessions_foreach_one, &f);
	return f.n;
}

XMPPD_API size_t
xmppd_user_kick(const xmppd_jid *j, const char *condition, const char *text)
{
	struct sm_target buf[64], *t = buf;
	size_t n;

	if (j == NULL || condition == NULL)
		return 0;
	n = sm_find(j, t, 64);
	/* More resources than the stack holds: ask again with room for all
	 * (a few more may have bound meanwhile; they are left alone). */
	if (n > 64) {
		size_t max = n;

		if ((t = calloc(max, sizeof(*t))) == NULL) {
			t = buf;
			n = 64;
		} else if ((n = sm_find(j, t, max)) > max) {
			n = max;
		}
	}
	for (size_t i = 0; i < n; i++)
		session_kick(t[i].worker, t[i].sid, condition, text);
	if (t != buf)
		free(t);
	return n;
}

/* ---------------------------------------------------------------- */
/* The server.                                                        */

XMPPD_API const char *
xmppd_version(void)
{
	return PACKAGE_VERSION;
}

XMPPD_API int64_t
xmppd_start_time(void)
{
	return (int64_t)clock_start_time();
}

XMPPD_API uint64_t
xmppd_now_ms(void)
{
	return clock_now_ms();
}
