/*
 * pubsub_ops.c - the engine's operations that change a node: create
 * (XEP-0060 8.1), configure (8.2), delete and purge (8.4, 8.5), publish
 * (7.1; XEP-0163 auto-create) and retract (7.2), and the helpers every
 * operation uses. Each runs on the node's worker as the head of its
 * queue (pubsub_engine.c) and ends with ps_reply or ps_error.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "pubsub.h"

static int
is(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* ---------------------------------------------------------------- */
/* Helpers for the operations.                                        */

int
ps_aff_of(const struct ps_node *n, const xmppd_jid *actor)
{
	if (actor == NULL)
		return PS_AFF_OWNER;    /* the server */
	for (size_t i = 0; i < n->naffs; i++)
		if (strcmp(n->affs[i].jid, xmppd_jid_bare(actor)) == 0)
			return n->affs[i].aff;
	return PS_AFF_NONE;
}

struct ps_sub *
ps_sub_find(struct ps_node *n, const char *jid)
{
	for (size_t i = 0; i < n->nsubs; i++)
		if (strcmp(n->subs[i].jid, jid) == 0)
			return &n->subs[i];
	return NULL;
}

/* The actor's subscription (its bare or a full JID of it). */
struct ps_sub *
ps_sub_of_actor(struct ps_node *n, const xmppd_jid *actor)
{
	const char *bare = xmppd_jid_bare(actor);
	size_t bl = strlen(bare);

	for (size_t i = 0; i < n->nsubs; i++)
		if (strncmp(n->subs[i].jid, bare, bl) == 0 &&
		    (n->subs[i].jid[bl] == '\0' || n->subs[i].jid[bl] == '/'))
			return &n->subs[i];
	return NULL;
}

void
ps_sub_remove(struct ps_node *n, struct ps_sub *s)
{
	size_t i = (size_t)(s - n->subs);

	free(s->jid);
	memmove(&n->subs[i], &n->subs[i + 1], (n->nsubs - i - 1) * sizeof(*s));
	n->nsubs--;
}

int
ps_sub_room(struct ps_node *n)
{
	struct ps_sub *ns;
	size_t cap;

	if (n->nsubs < n->subs_cap)
		return 0;
	cap = n->subs_cap < 8 ? 8 : n->subs_cap * 2;
	if ((ns = realloc(n->subs, cap * sizeof(*ns))) == NULL)
		return -1;
	n->subs = ns;
	n->subs_cap = cap;
	return 0;
}

size_t
ps_subs_of_bare(const struct ps_node *n, const char *jid)
{
	size_t bl = strcspn(jid, "/"), k = 0;

	for (size_t i = 0; i < n->nsubs; i++)
		if (strncmp(n->subs[i].jid, jid, bl) == 0 &&
		    (n->subs[i].jid[bl] == '\0' || n->subs[i].jid[bl] == '/'))
			k++;
	return k;
}

long
ps_max_items(const struct ps_req *r, const struct ps_node *n)
{
	return n->cfg.max_items == PS_MAX_ITEMS_MAX ? r->m->max_items_per_node : n->cfg.max_items;
}

ssize_t
ps_item_index(const struct ps_node *n, const char *id)
{
	for (size_t i = 0; i < n->nitems; i++)
		if (strcmp(n->items[i].id, id) == 0)
			return (ssize_t)i;
	return -1;
}

void
ps_item_remove_at(struct ps_node *n, size_t i)
{
	free(n->items[i].id);
	memmove(&n->items[i], &n->items[i + 1], (n->nitems - i - 1) * sizeof(n->items[0]));
	n->nitems--;
}

xmppd_elem *
ps_result(const char *ns)
{
	return xmppd_elem_new(ns, "pubsub");
}

void
ps_run_event(struct ps_req *r, int kind, const char *item_id, const xmppd_elem *item)
{
	struct xmppd_pubsub_event_args a;
	xmppd_jid *service = xmppd_jid_parse(r->service);

	if (service == NULL)
		return;
	a.kind = kind;
	a.service = service;
	a.node = r->node;
	a.item_id = item_id;
	a.item = item;
	a.publisher = r->actor;
	(void)xmppd_hook_run(XMPPD_HOOK_PUBSUB_EVENT, r->service, &a);
	xmppd_jid_free(service);
}

/* A notification message from the service, built once (XEP-0060 7.1.2):
 * <message from=SERVICE><event xmlns=#event/></message>; returns the
 * event element in *event_r. */
xmppd_elem *
ps_event_message(const struct ps_node *n, xmppd_elem **event_r)
{
	xmppd_elem *msg = xmppd_elem_new(NULL, "message");

	xmppd_elem_set_attr(msg, "from", n->service);
	if (n->cfg.headline)
		xmppd_elem_set_attr(msg, "type", "headline");
	*event_r = xmppd_elem_add_child(msg, NS_PUBSUB_EVENT, "event");
	return msg;
}

void
ps_send_to(const xmppd_elem *msg, const char *to)
{
	xmppd_elem *c = xmppd_elem_copy(msg);

	if (c == NULL)
		return;
	xmppd_elem_set_attr(c, "to", to);
	xmppd_route(c);
	xmppd_elem_unref(c);
}

/* Whether jid (bare or full) is the account of a PEP service. */
static int
is_account(const struct ps_node *n, const char *jid)
{
	size_t l = strlen(n->service);

	return n->kind == PS_PEP && strncmp(jid, n->service, l) == 0 &&
	    (jid[l] == '\0' || jid[l] == '/');
}

/* To every subscriber in state subscribed (XEP-0060 7.1.2) that did not
 * turn pubsub#deliver off (6.3, 16.4.2: parsed once, in struct ps_sub,
 * when the options were set); the message
 * is copied with its 'to' set, nothing else changes per subscriber. PEP
 * (XEP-0163 4.3.1): also the account's own available resources, and the
 * contacts whose presence the account has and whose caps ask for
 * NODE+notify (ps_pep_interested). */
void
ps_notify_all(const struct ps_node *n, const xmppd_elem *msg)
{
	xmppd_jid *owner;

	if (!n->cfg.deliver_notifications)
		return;
	for (size_t i = 0; i < n->nsubs; i++)
		if (n->subs[i].state == PS_SUB_SUBSCRIBED && !n->subs[i].no_deliver &&
		    !is_account(n, n->subs[i].jid))
			ps_send_to(msg, n->subs[i].jid);
	if (n->kind != PS_PEP || (owner = xmppd_jid_parse(n->service)) == NULL)
		return;
	(void)xmppd_send_to_resources(owner, msg, 1);
	xmppd_jid_free(owner);
	ps_pep_notify(NULL, n, msg);
}

/* PEP: the account itself (or the server). */
int
ps_pep_owner(const struct ps_req *r)
{
	return r->kind == PS_PEP && (r->actor == NULL ||
	    strcmp(xmppd_jid_bare(r->actor), r->service) == 0);
}

/* ---------------------------------------------------------------- */
/* create (XEP-0060 8.1)                                              */

struct op_create {
	long nodes, mine;
	char creator[PS_KEY_MAX];
	struct ps_config cfg;
	int have_cfg;
	xmppd_batch *b;
};

static void
create_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_create *o = r->op;
	struct ps_node *n = r->n;
	xmppd_elem *res = NULL;
	const char *name;

	if (status != XMPPD_STORE_OK) {
		/* create_write gave the node its creator and owner: the node
		 * does not exist, so a create queued behind this one must not
		 * find (or leak) them. */
		ps_node_clear(n);
		ps_config_default(r->m, &n->cfg, n->kind);
		ps_config_free(&o->cfg);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	ps_config_free(&n->cfg);
	n->cfg = o->cfg;
	n->exists = 1;
	/* XEP-0060 8.1.2: an instant node's name is given back, whenever the
	 * service chose it (no 'node', or node=''). */
	name = xmppd_elem_attr(xmppd_elem_child(r->payload, NS_PUBSUB, "create"), "node");
	if (name == NULL || *name == '\0') {
		res = ps_result(NS_PUBSUB);
		xmppd_elem_set_attr(xmppd_elem_add_child(res, NS_PUBSUB, "create"), "node",
		    n->name);
	}
	ps_reply(r, res);
}

static void
create_write(struct ps_req *r)
{
	struct op_create *o = r->op;
	struct ps_node *n = r->n;
	char key[PS_KEY_MAX], *rec;
	size_t klen, vlen;
	xmppd_batch *b;

	/* The record is written from a node made with the new settings. */
	n->creator = strdup(r->actor != NULL ? xmppd_jid_bare(r->actor) : "");
	if (r->actor != NULL && (n->affs = calloc(1, sizeof(*n->affs))) != NULL &&
	    (n->affs[0].jid = strdup(xmppd_jid_bare(r->actor))) != NULL) {
		n->affs[0].aff = PS_AFF_OWNER;
		n->naffs = 1;
	}
	{
		struct ps_config keep = n->cfg;

		n->cfg = o->cfg;
		rec = ps_node_record(n, &vlen);
		n->cfg = keep;
	}
	klen = ps_key_node(key, r->service, r->node);
	if (rec == NULL || n->creator == NULL || (b = xmppd_batch_new(r->m->ctx)) == NULL) {
		free(rec);
		ps_node_clear(n);
		ps_config_default(r->m, &n->cfg, n->kind);
		ps_config_free(&o->cfg);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	(void)xmppd_batch_put(b, ps_table(n->service, T_NODES), key, klen, rec, vlen);
	free(rec);
	if (xmppd_batch_submit(b, create_done, r) < 0)
		create_done(XMPPD_STORE_ERROR, r);
}

static int
count_node_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct ps_req *r = ud;
	struct op_create *o = r->op;
	char creator[PS_KEY_MAX];

	o->nodes++;
	if (ps_node_record_creator(val, vlen, creator, sizeof(creator)) == 0 &&
	    strcmp(creator, o->creator) == 0)
		o->mine++;
	return 0;
}

static void
count_nodes_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_create *o = r->op;

	if (status != XMPPD_STORE_OK) {
		ps_config_free(&o->cfg);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	/* Limits: nodes of the service and of one user; for PEP, the
	 * account's nodes (max_pep_nodes). XEP-0060 8.1.3 leaves the
	 * condition to the service: not-allowed with max-nodes-exceeded.
	 * Counted from the store: two creates racing on two workers may pass
	 * the limit by one. */
	if (r->kind == PS_PEP ? r->m->max_pep_nodes > 0 && o->nodes >= r->m->max_pep_nodes :
	    (r->m->max_nodes > 0 && o->nodes >= r->m->max_nodes) ||
	    (r->actor != NULL && r->m->max_nodes_per_user > 0 &&
	    o->mine >= r->m->max_nodes_per_user)) {
		ps_config_free(&o->cfg);
		ps_error(r, "not-allowed", "max-nodes-exceeded", NULL);
		return;
	}
	create_write(r);
}

void
ps_op_create(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_create *o;
	xmppd_elem *conf, *x;
	const char *cond = NULL, *why = NULL;
	char pfx[PS_KEY_MAX];
	size_t plen;

	(void)action;
	if (n->exists) {
		ps_error(r, "conflict", NULL, NULL);      /* 8.1.3.5 */
		return;
	}
	/* 8.1.3.1; XEP-0163: only the account makes its PEP nodes. */
	if (r->kind == PS_PEP ? !ps_pep_owner(r) :
	    r->actor != NULL && !ps_may_create(r->m, r->actor)) {
		ps_error(r, "forbidden", NULL, NULL);
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	ps_config_default(r->m, &o->cfg, n->kind);
	/* 8.1.3 create and configure: the form in <configure/>. */
	conf = xmppd_elem_child(r->payload, NS_PUBSUB, "configure");
	if (conf != NULL && (x = xmppd_elem_child(conf, NS_XDATA, "x")) != NULL &&
	    ps_config_apply(r->m, &o->cfg, x, &cond, &why) < 0) {
		ps_config_free(&o->cfg);
		ps_error(r, cond, NULL, NULL);
		return;
	}
	snprintf(o->creator, sizeof(o->creator), "%s",
	    r->actor != NULL ? xmppd_jid_bare(r->actor) : "");
	plen = ps_key_service(pfx, r->service);
	if (xmppd_store_ascan(r->m->ctx, ps_table(r->service, T_NODES), pfx, plen, count_node_row,
	    count_nodes_done, r) < 0) {
		ps_config_free(&o->cfg);
		ps_error(r, "internal-server-error", NULL, NULL);
	}
}

/* ---------------------------------------------------------------- */
/* Writing the node record (configure, affiliations).                 */

struct op_write {
	struct ps_config cfg;       /* configure: the new settings */
	size_t trim;                /* oldest items deleted: max_items lowered */
	int revoke;                 /* configure: became whitelist, the others' subscriptions go */
	int recheck;                /* configure: became presence or roster */
};

static void
recheck_ignore(const char *cond, const xmppd_elem *payload, void *ud)
{
	(void)payload;
	(void)ud;
	if (cond != NULL)
		xmppd_log(ps_module.ctx, XMPPD_LOG_WARNING,
		    "pubsub: re-checking the subscribers of a node: %s", cond);
}

static void
config_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_write *o = r->op;
	struct ps_node *n = r->n;
	xmppd_elem *msg, *ev, *c;

	if (status != XMPPD_STORE_OK) {
		ps_config_free(&o->cfg);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	ps_config_free(&n->cfg);
	n->cfg = o->cfg;
	/* XEP-0060 4.5: whitelist now, the subscribers without an
	 * affiliation that grants access are gone (the batch deleted them);
	 * each is told (8.8.4 state 'none'). */
	if (o->revoke) {
		size_t w = 0;

		for (size_t i = 0; i < n->nsubs; i++) {
			if (ps_affs_grant(n->affs, n->naffs, n->subs[i].jid)) {
				n->subs[w++] = n->subs[i];
				continue;
			}
			ps_sub_revoked(n, &n->subs[i]);
			free(n->subs[i].jid);
		}
		n->nsubs = w;
	}
	/* presence or roster now: each subscriber's roster state is asked
	 * again, by a request of the server queued on the node. */
	if (o->recheck && n->nsubs > 0) {
		struct ps_req *rc = ps_req_new(r->m, NULL, n->service, n->name, 1, NULL);

		if (rc != NULL) {
			rc->recheck = 1;
			rc->done = recheck_ignore;
			if (ps_submit(rc) < 0)
				ps_req_free(rc);
		}
	}
	for (size_t i = 0; i < o->trim && n->nitems > 0; i++)
		ps_item_remove_at(n, 0);
	if (o->trim > 0 && n->nitems == 0) {
		free(n->last_xml);
		n->last_xml = NULL;
		n->last_len = 0;
	}
	/* XEP-0060 8.2.5.3: a configuration notification. */
	if (n->cfg.notify_config) {
		msg = ps_event_message(n, &ev);
		c = xmppd_elem_add_child(ev, NS_PUBSUB_EVENT, "configuration");
		xmppd_elem_set_attr(c, "node", n->name);
		if (n->cfg.deliver_payloads)
			ps_config_form(&n->cfg, c, NS_PUBSUB "#node_config", "result");
		ps_notify_all(n, msg);
		xmppd_elem_unref(msg);
	}
	ps_reply(r, NULL);
}

/* Writes n's record (with cfg in place of n->cfg when given) and the
 * given extra ops; done runs with r. */
int
ps_write_record(struct ps_req *r, const struct ps_config *cfg, xmppd_batch *b,
    xmppd_store_done_fn done)
{
	struct ps_node *n = r->n;
	char key[PS_KEY_MAX], *rec;
	size_t klen, vlen;
	struct ps_config keep = n->cfg;

	if (cfg != NULL)
		n->cfg = *cfg;
	rec = ps_node_record(n, &vlen);
	n->cfg = keep;
	klen = ps_key_node(key, n->service, n->name);
	if (b == NULL)
		b = xmppd_batch_new(r->m->ctx);
	if (rec == NULL || b == NULL) {
		free(rec);
		xmppd_batch_free(b);
		return -1;
	}
	(void)xmppd_batch_put(b, ps_table(n->service, T_NODES), key, klen, rec, vlen);
	free(rec);
	if (xmppd_batch_submit(b, done, r) < 0)
		done(XMPPD_STORE_ERROR, r);
	return 0;
}

void
ps_op_configure(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_write *o;
	xmppd_elem *res, *c, *x;
	const char *cond = NULL, *why = NULL;
	char key[PS_KEY_MAX];
	xmppd_batch *b;
	long max;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);
		return;
	}
	if (ps_aff_of(n, r->actor) != PS_AFF_OWNER) {
		ps_error(r, "forbidden", NULL, NULL);     /* 8.2.3.2 */
		return;
	}
	if (!r->set) {
		/* 8.2.1 */
		res = ps_result(NS_PUBSUB_OWNER);
		c = xmppd_elem_add_child(res, NS_PUBSUB_OWNER, "configure");
		xmppd_elem_set_attr(c, "node", n->name);
		ps_config_form(&n->cfg, c, NS_PUBSUB "#node_config", "form");
		ps_reply(r, res);
		return;
	}
	if ((x = xmppd_elem_child(action, NS_XDATA, "x")) == NULL) {
		ps_error(r, "bad-request", NULL, NULL);
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL || ps_config_copy(&o->cfg, &n->cfg) < 0) {
		free(o);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	if (ps_config_apply(r->m, &o->cfg, x, &cond, &why) < 0) {
		ps_config_free(&o->cfg);
		ps_error(r, cond, NULL, NULL);
		return;
	}
	/* A lower max_items: the oldest items go in the same batch. */
	max = o->cfg.max_items == PS_MAX_ITEMS_MAX ? r->m->max_items_per_node : o->cfg.max_items;
	if ((b = xmppd_batch_new(r->m->ctx)) == NULL) {
		ps_config_free(&o->cfg);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	for (; n->cfg.persist_items && n->nitems - o->trim > (size_t)max; o->trim++)
		(void)xmppd_batch_del(b, ps_table(n->service, T_ITEMS), key,
		    ps_key_item(key, n->service, n->name, n->items[o->trim].seq));
	/* XEP-0060 4.5: access is not only checked at subscribe time: the
	 * subscriptions a new access model no longer allows go. To
	 * whitelist: those of JIDs without an affiliation that grants
	 * access, in this batch; to presence or roster: re-checked after
	 * (config_done). */
	if (o->cfg.access == PS_WHITELIST && n->cfg.access != PS_WHITELIST) {
		o->revoke = 1;
		for (size_t i = 0; i < n->nsubs; i++)
			if (!ps_affs_grant(n->affs, n->naffs, n->subs[i].jid))
				(void)xmppd_batch_del(b, ps_table(n->service, T_SUBS), key,
				    ps_key_sub(key, n->service, n->name, n->subs[i].jid));
	}
	o->recheck = (o->cfg.access == PS_PRESENCE || o->cfg.access == PS_ROSTER) &&
	    o->cfg.access != n->cfg.access;
	if (ps_write_record(r, &o->cfg, b, config_done) < 0) {
		ps_config_free(&o->cfg);
		ps_error(r, "internal-server-error", NULL, NULL);
	}
}

/* ---------------------------------------------------------------- */
/* delete (8.4) and purge (8.5)                                       */

struct op_delete {
	char *redirect;
	int purge;
};

static void
delete_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_delete *o = r->op;
	struct ps_node *n = r->n;
	xmppd_elem *msg, *ev, *d;

	if (status != XMPPD_STORE_OK) {
		free(o->redirect);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	ps_run_event(r, o->purge ? XMPPD_PUBSUB_PURGED : XMPPD_PUBSUB_DELETED, NULL, NULL);
	/* 8.4.2 / 8.5.2: the subscribers are told. */
	if (o->purge ? n->cfg.notify_retract : n->cfg.notify_delete) {
		msg = ps_event_message(n, &ev);
		d = xmppd_elem_add_child(ev, NS_PUBSUB_EVENT, o->purge ? "purge" : "delete");
		xmppd_elem_set_attr(d, "node", n->name);
		if (o->redirect != NULL)
			xmppd_elem_set_attr(xmppd_elem_add_child(d, NS_PUBSUB_EVENT, "redirect"),
			    "uri", o->redirect);
		ps_notify_all(n, msg);
		xmppd_elem_unref(msg);
	}
	if (o->purge) {
		for (size_t i = 0; i < n->nitems; i++)
			free(n->items[i].id);
		n->nitems = 0;
		free(n->last_xml);
		n->last_xml = NULL;
		n->last_len = 0;
	} else {
		ps_node_clear(n);
		ps_config_default(r->m, &n->cfg, n->kind);
	}
	free(o->redirect);
	ps_reply(r, NULL);
}

void
ps_op_delete(struct ps_req *r, xmppd_elem *action, int purge)
{
	struct ps_node *n = r->n;
	struct op_delete *o;
	xmppd_elem *red;
	char key[PS_KEY_MAX];
	size_t klen;
	xmppd_batch *b;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);        /* 8.4.3.2 */
		return;
	}
	if (ps_aff_of(n, r->actor) != PS_AFF_OWNER) {
		ps_error(r, "forbidden", NULL, NULL);             /* 8.4.3.1 */
		return;
	}
	/* 8.5.3.3: purge of a node that keeps no items. */
	if (purge && !n->cfg.persist_items) {
		ps_error(r, "feature-not-implemented", "unsupported", "persistent-items");
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL || (b = xmppd_batch_new(r->m->ctx)) == NULL) {
		free(o);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	o->purge = purge;
	red = purge ? NULL : xmppd_elem_child(action, NS_PUBSUB_OWNER, "redirect");
	if (red != NULL && xmppd_elem_attr(red, "uri") != NULL)
		o->redirect = strdup(xmppd_elem_attr(red, "uri"));
	klen = ps_key_node(key, n->service, n->name);
	(void)xmppd_batch_del_prefix(b, ps_table(n->service, T_ITEMS), key, klen);
	if (!purge) {
		(void)xmppd_batch_del_prefix(b, ps_table(n->service, T_SUBS), key, klen);
		(void)xmppd_batch_del(b, ps_table(n->service, T_NODES), key, klen);
	}
	if (xmppd_batch_submit(b, delete_done, r) < 0)
		delete_done(XMPPD_STORE_ERROR, r);
}

/* ---------------------------------------------------------------- */
/* publish (7.1)                                                      */

/* PEP auto-create: the account's nodes, counted from the store before
 * the first publish makes one (r->op is the count). */
static int
count_pep_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct ps_req *r = ud;

	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	(*(long *)r->op)++;
	return 0;
}

static void
count_pep_done(int status, void *ud)
{
	struct ps_req *r = ud;
	long count = *(long *)r->op;

	free(r->op);
	r->op = NULL;
	if (status != XMPPD_STORE_OK) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	/* As for create (XEP-0060 8.1.3): not-allowed, max-nodes-exceeded;
	 * racing auto-creates of one account may pass the limit by one. */
	if (count >= r->m->max_pep_nodes) {
		ps_error(r, "not-allowed", "max-nodes-exceeded", NULL);
		return;
	}
	r->pep_counted = 1;
	ps_op_publish(r, xmppd_elem_child(r->payload, NS_PUBSUB, "publish"));
}

struct op_publish {
	char id[PS_KEY_MAX];
	char *xml;                  /* the <item/> serialized */
	size_t xlen;
	uint64_t seq;
	ssize_t replaced;           /* index of the item of the same id */
	size_t trim;                /* oldest items deleted */
	int keep;                   /* the item is stored (max_items > 0) */
	int created;                /* PEP: the node is made by this publish */
	xmppd_elem *item;           /* the item as stored (with its id) */
};

static void
publish_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_publish *o = r->op;
	struct ps_node *n = r->n;
	xmppd_elem *res, *p, *msg, *ev, *items, *it, *payload;
	const char *pub_by = r->actor != NULL ? xmppd_jid_bare(r->actor) : NULL;

	if (status != XMPPD_STORE_OK) {
		free(o->xml);
		xmppd_elem_unref(o->item);
		if (o->created) {
			ps_node_clear(n);
			ps_config_default(r->m, &n->cfg, n->kind);
		}
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	if (o->created)
		n->exists = 1;
	if (n->cfg.persist_items) {
		/* Memory follows the batch: the old copy and the trimmed go. */
		if (o->replaced >= 0)
			ps_item_remove_at(n, (size_t)o->replaced);
		for (size_t i = 0; i < o->trim && n->nitems > 0; i++)
			ps_item_remove_at(n, 0);
		if (o->keep)
			(void)ps_items_push(n, o->seq, o->id);
	}
	free(n->last_xml);
	n->last_xml = o->xml;
	n->last_len = o->xlen;
	o->xml = NULL;
	ps_run_event(r, XMPPD_PUBSUB_PUBLISHED, o->id, o->item);
	/* 7.1.2: one message, copied per subscriber. */
	msg = ps_event_message(n, &ev);
	items = xmppd_elem_add_child(ev, NS_PUBSUB_EVENT, "items");
	xmppd_elem_set_attr(items, "node", n->name);
	it = xmppd_elem_add_child(items, NS_PUBSUB_EVENT, "item");
	xmppd_elem_set_attr(it, "id", o->id);
	if (pub_by != NULL)
		xmppd_elem_set_attr(it, "publisher", pub_by);
	if (n->cfg.deliver_payloads && (payload = xmppd_elem_first_child(o->item)) != NULL)
		xmppd_elem_append_copy(it, payload);
	ps_notify_all(n, msg);
	xmppd_elem_unref(msg);
	xmppd_elem_unref(o->item);
	res = ps_result(NS_PUBSUB);
	p = xmppd_elem_add_child(res, NS_PUBSUB, "publish");
	xmppd_elem_set_attr(p, "node", n->name);
	xmppd_elem_set_attr(xmppd_elem_add_child(p, NS_PUBSUB, "item"), "id", o->id);
	ps_reply(r, res);
}

static int
may_publish(const struct ps_node *n, const xmppd_jid *actor, int aff)
{
	struct ps_sub *s;

	if (aff == PS_AFF_OWNER || aff == PS_AFF_PUBLISHER || aff == PS_AFF_PUBLISH_ONLY)
		return 1;
	if (aff == PS_AFF_OUTCAST)
		return 0;
	switch (n->cfg.publish_model) {
	case PS_PUB_OPEN:
		return 1;
	case PS_PUB_SUBSCRIBERS:
		s = ps_sub_of_actor((struct ps_node *)n, actor);
		return s != NULL && s->state == PS_SUB_SUBSCRIBED;
	default:
		return 0;
	}
}

void
ps_op_publish(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_publish *o;
	xmppd_elem *item = NULL, *c, *po, *x, *payload = NULL;
	int nitems = 0, npayloads = 0, created = 0;
	char key[PS_KEY_MAX], *rec;
	size_t klen, vlen, total;
	xmppd_batch *b;
	long max;

	po = xmppd_elem_child(r->payload, NS_PUBSUB, "publish-options");
	x = po != NULL ? xmppd_elem_child(po, NS_XDATA, "x") : NULL;
	if (!n->exists) {
		/* XEP-0163 3 (XEP-0060 7.1.4): PEP makes the node on the
		 * account's first publish, with the publish-options as its
		 * configuration (7.1.5); written in the item's batch. */
		if (!ps_pep_owner(r)) {
			ps_error(r, "item-not-found", NULL, NULL);        /* 7.1.3.3 */
			return;
		}
		/* The account's node limit (max_pep_nodes), before any change. */
		if (r->m->max_pep_nodes > 0 && !r->pep_counted) {
			char pfx[PS_KEY_MAX];
			size_t plen = ps_key_service(pfx, r->service);

			if ((r->op = calloc(1, sizeof(long))) == NULL ||
			    xmppd_store_ascan(r->m->ctx, ps_table(r->service, T_NODES), pfx, plen,
			    count_pep_row, count_pep_done, r) < 0) {
				free(r->op);
				r->op = NULL;
				ps_error(r, "internal-server-error", NULL, NULL);
			}
			return;
		}
		ps_node_clear(n);
		ps_config_default(r->m, &n->cfg, PS_PEP);
		if (x != NULL && ps_config_apply_fields(r->m, &n->cfg, x) < 0) {
			ps_node_clear(n);
			ps_config_default(r->m, &n->cfg, n->kind);
			ps_error(r, "conflict", "precondition-not-met", NULL);
			return;
		}
		if ((n->creator = strdup(r->service)) == NULL ||
		    (n->affs = calloc(1, sizeof(*n->affs))) == NULL ||
		    (n->affs[0].jid = strdup(r->service)) == NULL) {
			ps_node_clear(n);
			ps_config_default(r->m, &n->cfg, n->kind);
			ps_error(r, "internal-server-error", NULL, NULL);
			return;
		}
		n->affs[0].aff = PS_AFF_OWNER;
		n->naffs = 1;
		created = 1;
	}
	if (!may_publish(n, r->actor, ps_aff_of(n, r->actor))) {
		ps_error(r, "forbidden", NULL, NULL);             /* 7.1.3.1 */
		return;
	}
	for (c = xmppd_elem_first_child(action); c != NULL; c = xmppd_elem_next_sibling(c))
		if (is(xmppd_elem_name(c), "item")) {
			item = c;
			nitems++;
		}
	if (item != NULL)
		for (c = xmppd_elem_first_child(item); c != NULL; c = xmppd_elem_next_sibling(c)) {
			payload = payload != NULL ? payload : c;
			npayloads++;
		}
	/* 7.1.3.6: what the configuration needs; 7.1.3.5: one payload. */
	if (nitems > 1 || npayloads > 1) {
		ps_error(r, "bad-request", "invalid-payload", NULL);
		return;
	}
	if (item == NULL && n->cfg.persist_items) {
		ps_error(r, "bad-request", "item-required", NULL);
		return;
	}
	if (payload == NULL && n->cfg.deliver_payloads) {
		ps_error(r, "bad-request", "payload-required", NULL);
		return;
	}
	if (item != NULL && payload != NULL && !n->cfg.persist_items && !n->cfg.deliver_payloads) {
		ps_error(r, "bad-request", "item-forbidden", NULL);
		return;
	}
	/* 7.1.5: publish-options are preconditions. */
	if (x != NULL && ps_config_preconditions(r->m, &n->cfg, x) < 0) {
		ps_error(r, "conflict", "precondition-not-met", NULL);
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	o->replaced = -1;
	/* 7.1.4: an id made by the service when the publisher gave none. */
	if (item != NULL && xmppd_elem_attr(item, "id") != NULL &&
	    *xmppd_elem_attr(item, "id") != '\0') {
		if (strlen(xmppd_elem_attr(item, "id")) > 256) {
			ps_error(r, "bad-request", "invalid-payload", NULL);
			return;
		}
		snprintf(o->id, sizeof(o->id), "%s", xmppd_elem_attr(item, "id"));
	} else {
		ps_random_id(o->id);
		snprintf(o->id + 16, sizeof(o->id) - 16, "%llx",
		    (unsigned long long)n->next_seq);
	}
	o->item = xmppd_elem_new(NS_PUBSUB, "item");
	xmppd_elem_set_attr(o->item, "id", o->id);
	if (payload != NULL)
		xmppd_elem_append_copy(o->item, payload);
	if ((o->xml = xmppd_elem_to_string(o->item, &o->xlen)) == NULL) {
		xmppd_elem_unref(o->item);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	/* 7.1.3.4: payload-too-big (the item as stored). */
	if ((long)o->xlen > n->cfg.max_payload_size || (long)o->xlen > r->m->max_item_size) {
		free(o->xml);
		xmppd_elem_unref(o->item);
		ps_error(r, "not-acceptable", "payload-too-big", NULL);
		return;
	}
	o->seq = n->next_seq++;
	o->created = created;
	if (!n->cfg.persist_items && !created) {
		publish_done(XMPPD_STORE_OK, r);
		return;
	}
	if ((b = xmppd_batch_new(r->m->ctx)) == NULL) {
		publish_done(XMPPD_STORE_ERROR, r);
		return;
	}
	if (created) {
		klen = ps_key_node(key, n->service, n->name);
		if ((rec = ps_node_record(n, &vlen)) == NULL) {
			xmppd_batch_free(b);
			publish_done(XMPPD_STORE_ERROR, r);
			return;
		}
		(void)xmppd_batch_put(b, ps_table(n->service, T_NODES), key, klen, rec, vlen);
		free(rec);
		if (!n->cfg.persist_items) {
			if (xmppd_batch_submit(b, publish_done, r) < 0)
				publish_done(XMPPD_STORE_ERROR, r);
			return;
		}
	}
	o->replaced = ps_item_index(n, o->id);
	if (o->replaced >= 0) {
		klen = ps_key_item(key, n->service, n->name, n->items[o->replaced].seq);
		(void)xmppd_batch_del(b, ps_table(n->service, T_ITEMS), key, klen);
	}
	/* The oldest go when the node is full (max_items). */
	max = ps_max_items(r, n);
	total = n->nitems - (o->replaced >= 0 ? 1 : 0) + 1;
	for (size_t i = 0; total > (size_t)(max > 0 ? max : 0) && i < n->nitems; i++) {
		if ((ssize_t)i == o->replaced)
			continue;
		klen = ps_key_item(key, n->service, n->name, n->items[i].seq);
		(void)xmppd_batch_del(b, ps_table(n->service, T_ITEMS), key, klen);
		total--;
		o->trim++;
	}
	o->keep = max > 0;
	if (max > 0) {
		klen = ps_key_item(key, n->service, n->name, o->seq);
		rec = ps_item_record(r->actor != NULL ? xmppd_jid_bare(r->actor) : "", o->id,
		    o->xml, o->xlen, &vlen);
		if (rec == NULL || klen == 0) {
			free(rec);
			xmppd_batch_free(b);
			publish_done(XMPPD_STORE_ERROR, r);
			return;
		}
		(void)xmppd_batch_put(b, ps_table(n->service, T_ITEMS), key, klen, rec, vlen);
		free(rec);
	}
	if (xmppd_batch_submit(b, publish_done, r) < 0)
		publish_done(XMPPD_STORE_ERROR, r);
}

/* ---------------------------------------------------------------- */
/* retract (7.2)                                                      */

struct op_retract {
	char id[PS_KEY_MAX];
	int notify;
};

static void
retract_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_retract *o = r->op;
	struct ps_node *n = r->n;
	xmppd_elem *msg, *ev, *items, *it;
	ssize_t i;

	if (status != XMPPD_STORE_OK) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	if ((i = ps_item_index(n, o->id)) >= 0) {
		int newest = (size_t)i == n->nitems - 1;

		ps_item_remove_at(n, (size_t)i);
		if (newest) {
			free(n->last_xml);
			n->last_xml = NULL;
			n->last_len = 0;
		}
	}
	it = xmppd_elem_new(NS_PUBSUB, "item");
	xmppd_elem_set_attr(it, "id", o->id);
	ps_run_event(r, XMPPD_PUBSUB_RETRACTED, o->id, it);
	xmppd_elem_unref(it);
	/* 7.2.2.1: notify_retract, or notify='true' on the request. */
	if (o->notify) {
		msg = ps_event_message(n, &ev);
		items = xmppd_elem_add_child(ev, NS_PUBSUB_EVENT, "items");
		xmppd_elem_set_attr(items, "node", n->name);
		xmppd_elem_set_attr(xmppd_elem_add_child(items, NS_PUBSUB_EVENT, "retract"), "id",
		    o->id);
		ps_notify_all(n, msg);
		xmppd_elem_unref(msg);
	}
	ps_reply(r, NULL);
}

void
ps_op_retract(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_retract *o;
	xmppd_elem *item = xmppd_elem_child(action, NS_PUBSUB, "item");
	const char *id = xmppd_elem_attr(item, "id"), *nt = xmppd_elem_attr(action, "notify");
	int aff = ps_aff_of(n, r->actor);
	char key[PS_KEY_MAX];
	xmppd_batch *b;
	ssize_t i;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);        /* 7.2.3.3 */
		return;
	}
	if (aff != PS_AFF_OWNER && aff != PS_AFF_PUBLISHER) {
		ps_error(r, "forbidden", NULL, NULL);             /* 7.2.3.1 */
		return;
	}
	if (id == NULL || *id == '\0') {
		ps_error(r, "bad-request", "item-required", NULL);        /* 7.2.3.4 */
		return;
	}
	if (!n->cfg.persist_items) {
		ps_error(r, "feature-not-implemented", "unsupported", "persistent-items");
		return;
	}
	if ((i = ps_item_index(n, id)) < 0) {
		ps_error(r, "item-not-found", NULL, NULL);        /* 7.2.3.3 */
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL || (b = xmppd_batch_new(r->m->ctx)) == NULL) {
		free(o);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	snprintf(o->id, sizeof(o->id), "%s", id);
	o->notify = n->cfg.notify_retract || is(nt, "true") || is(nt, "1");
	(void)xmppd_batch_del(b, ps_table(n->service, T_ITEMS), key, ps_key_item(key, n->service, n->name,
	    n->items[i].seq));
	if (xmppd_batch_submit(b, retract_done, r) < 0)
		retract_done(XMPPD_STORE_ERROR, r);
}

