/*
 * pubsub_engine.c - the node engine of mod_pubsub, shared by its front
 * ends (pubsub.h).
 *
 * Each worker has a table of the nodes it owns. A request reaches the
 * node's worker (ps_submit: xmppd_entity_post on the node's key); there
 * the node is found, or made and loaded from the store (the record, then
 * its subscriptions, then its items' ids: only the newest payload is kept
 * in memory). Requests for one node queue on it and run one at a time,
 * in arrival order: while one waits for the store (a batch, a read, a
 * roster answer), the next waits behind it; so a load is never done
 * twice and nothing else sees a half-made change. Every change is one
 * batch; the answer, the pubsub_event hook and the notifications follow
 * its done callback (durable). A node that does not exist is forgotten
 * once its queue is empty.
 */
#define _GNU_SOURCE             /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

#include "pubsub.h"

#define NBUCKETS 1024

struct ps_table {
	struct ps_node *b[NBUCKETS];
};

static int
is(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void drain(struct ps_node *n);
/* Set at load, read-only afterwards. */
static struct ps_mod *engine_mod;
static void dispatch(struct ps_req *r);

/* ---------------------------------------------------------------- */
/* Requests and answers.                                              */

void
ps_random_id(char *buf)
{
	unsigned char r[8];

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		uint64_t t = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)buf ^ xmppd_now_ms();

		memcpy(r, &t, sizeof(r));
	}
	for (int i = 0; i < 8; i++)
		snprintf(buf + 2 * i, 3, "%02x", r[i]);
}

char *
ps_node_key(int kind, const char *service, const char *node)
{
	char *k;

	if (kind == PS_PEP)
		return strdup(service);
	if (asprintf(&k, "%s/%s", service, node != NULL ? node : "") < 0)
		return NULL;
	return k;
}

struct ps_req *
ps_req_new(struct ps_mod *m, const xmppd_jid *actor_full, const char *service,
    const char *node, int set, const xmppd_elem *payload)
{
	struct ps_req *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->m = m;
	r->set = set;
	if (actor_full != NULL && ((r->actor_full = xmppd_jid_copy(actor_full)) == NULL ||
	    (r->actor = xmppd_jid_parse(xmppd_jid_bare(actor_full))) == NULL))
		goto err;
	if ((r->service = strdup(service)) == NULL)
		goto err;
	if (node != NULL && (r->node = strdup(node)) == NULL)
		goto err;
	r->kind = ps_is_pep(service) ? PS_PEP : PS_SERVICE;
	if ((r->key = ps_node_key(r->kind, service, node)) == NULL)
		goto err;
	if (payload != NULL && (r->payload = xmppd_elem_copy(payload)) == NULL)
		goto err;
	return r;
err:
	ps_req_free(r);
	return NULL;
}

void
ps_req_free(struct ps_req *r)
{
	if (r == NULL)
		return;
	xmppd_jid_free(r->actor);
	xmppd_jid_free(r->actor_full);
	free(r->service);
	free(r->node);
	free(r->key);
	xmppd_elem_unref(r->payload);
	xmppd_elem_unref(r->iq);
	if (r->op != NULL && r->op_free != NULL)
		r->op_free(r->op);
	free(r->op);
	free(r);
}

/* The request is answered: its node runs the next one. */
static void
finish(struct ps_req *r)
{
	struct ps_node *n = r->n;

	ps_req_free(r);
	if (n != NULL) {
		n->busy = 0;
		drain(n);
	}
}

void
ps_reply(struct ps_req *r, xmppd_elem *payload)
{
	if (r->done != NULL) {
		r->done(NULL, payload, r->done_ud);
	} else if (r->iq != NULL && is(xmppd_stanza_kind(r->iq), "iq")) {
		xmppd_iq_reply(r->iq, payload);
		payload = NULL;
	}
	xmppd_elem_unref(payload);
	finish(r);
}

void
ps_error(struct ps_req *r, const char *cond, const char *app, const char *feature)
{
	xmppd_elem *a = NULL, *e, *err;

	if (app != NULL) {
		a = xmppd_elem_new(NS_PUBSUB_ERRORS, app);
		if (feature != NULL)
			xmppd_elem_set_attr(a, "feature", feature);
	}
	if (r->done != NULL) {
		r->done(cond, a, r->done_ud);
	} else if (r->iq != NULL) {
		/* XEP-0060 7.1.3 etc.: the stanza error with the pubsub#errors
		 * element beside the condition. */
		if ((e = xmppd_stanza_error(r->iq, cond, NULL)) != NULL) {
			if (a != NULL && (err = xmppd_elem_child(e, NULL, "error")) != NULL)
				xmppd_elem_append_copy(err, a);
			xmppd_route(e);
			xmppd_elem_unref(e);
		}
	}
	xmppd_elem_unref(a);
	finish(r);
}

/* ---------------------------------------------------------------- */
/* The per-worker node tables.                                        */

int
ps_engine_init(struct ps_mod *m)
{
	engine_mod = m;
	m->nworkers = xmppd_worker_count();
	if (m->nworkers == 0)
		m->nworkers = 1;
	m->tables = calloc(m->nworkers, sizeof(*m->tables));
	return m->tables == NULL ? -1 : 0;
}

static unsigned
hash2(const char *a, const char *b)
{
	uint32_t h = 2166136261u;

	for (; *a; a++)
		h = (h ^ (unsigned char)*a) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (; *b; b++)
		h = (h ^ (unsigned char)*b) * 16777619u;
	return h % NBUCKETS;
}

static void
node_clear(struct ps_node *n)
{
	for (size_t i = 0; i < n->naffs; i++)
		free(n->affs[i].jid);
	for (size_t i = 0; i < n->nsubs; i++)
		free(n->subs[i].jid);
	for (size_t i = 0; i < n->nitems; i++)
		free(n->items[i].id);
	free(n->affs);
	free(n->subs);
	free(n->items);
	free(n->last_xml);
	free(n->creator);
	ps_config_free(&n->cfg);
	n->affs = NULL;
	n->subs = NULL;
	n->items = NULL;
	n->last_xml = NULL;
	n->creator = NULL;
	n->naffs = n->nsubs = n->nitems = n->items_cap = 0;
	n->last_len = 0;
	n->exists = 0;
}

static void
node_free(struct ps_node *n)
{
	node_clear(n);
	free(n->service);
	free(n->name);
	free(n->key);
	free(n);
}

static struct ps_table *
my_table(struct ps_mod *m)
{
	int w = xmppd_worker_id();

	return w < 0 || (unsigned)w >= m->nworkers ? NULL : &m->tables[w];
}

static struct ps_node *
node_find(struct ps_table *t, const char *service, const char *name)
{
	struct ps_node *n;

	for (n = t->b[hash2(service, name)]; n != NULL; n = n->hnext)
		if (strcmp(n->service, service) == 0 && strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

static void
node_unlink(struct ps_table *t, struct ps_node *n)
{
	struct ps_node **pp = &t->b[hash2(n->service, n->name)];

	while (*pp != NULL && *pp != n)
		pp = &(*pp)->hnext;
	if (*pp == n)
		*pp = n->hnext;
}

void
ps_engine_free(struct ps_mod *m)
{
	struct ps_node *n, *nx;
	struct ps_req *r, *rn;

	if (m->tables == NULL)
		return;
	for (unsigned w = 0; w < m->nworkers; w++)
		for (size_t b = 0; b < NBUCKETS; b++)
			for (n = m->tables[w].b[b]; n != NULL; n = nx) {
				nx = n->hnext;
				for (r = n->qhead; r != NULL; r = rn) {
					rn = r->next;
					r->n = NULL;
					ps_error(r, "service-unavailable", NULL, NULL);
				}
				node_free(n);
			}
	free(m->tables);
	m->tables = NULL;
}

void
ps_forget_service(struct ps_mod *m, const char *service)
{
	struct ps_table *t = my_table(m);
	struct ps_node *n, **pp;

	if (t == NULL)
		return;
	for (size_t b = 0; b < NBUCKETS; b++)
		for (pp = &t->b[b]; (n = *pp) != NULL;) {
			/* One that is running finds out from the store. */
			if (strcmp(n->service, service) == 0 && !n->busy && n->qhead == NULL) {
				*pp = n->hnext;
				node_free(n);
			} else {
				pp = &n->hnext;
			}
		}
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static int
items_push(struct ps_node *n, uint64_t seq, const char *id)
{
	struct ps_item *ni;

	if (n->nitems == n->items_cap) {
		size_t cap = n->items_cap ? n->items_cap * 2 : 8;

		if ((ni = realloc(n->items, cap * sizeof(*ni))) == NULL)
			return -1;
		n->items = ni;
		n->items_cap = cap;
	}
	if ((n->items[n->nitems].id = strdup(id)) == NULL)
		return -1;
	n->items[n->nitems++].seq = seq;
	if (seq >= n->next_seq)
		n->next_seq = seq + 1;
	return 0;
}

static int
set_last(struct ps_node *n, const char *xml, size_t len)
{
	char *c = malloc(len + 1);

	if (c == NULL)
		return -1;
	memcpy(c, xml, len);
	c[len] = '\0';
	free(n->last_xml);
	n->last_xml = c;
	n->last_len = len;
	return 0;
}

static void
load_failed(struct ps_node *n)
{
	n->load_status = -1;
	n->state = PS_READY;
	drain(n);
}

static void
load_items_done(int status, void *ud)
{
	struct ps_node *n = ud;

	if (status != XMPPD_STORE_OK || n->load_status < 0) {
		load_failed(n);
		return;
	}
	n->state = PS_READY;
	drain(n);
}

static int
load_item_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct ps_node *n = ud;
	const char *pub, *id, *xml;
	size_t xlen;

	if (ps_item_parse(val, vlen, &pub, &id, &xml, &xlen) < 0)
		return 0;               /* a bad row is skipped */
	if (items_push(n, ps_key_seq(key, klen), id) < 0 || set_last(n, xml, xlen) < 0) {
		n->load_status = -1;
		return 1;
	}
	return 0;
}

static int
load_sub_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct ps_node *n = ud;
	const char *k = key, *jid;
	struct ps_sub s, *ns;
	char pfx[PS_KEY_MAX];
	size_t plen = ps_key_node(pfx, n->service, n->name);

	if (klen < plen + 2 || k[klen - 1] != '\0')
		return 0;
	jid = k + plen;
	if (ps_sub_parse(&s, jid, val, vlen) < 0)
		return 0;
	if ((ns = realloc(n->subs, (n->nsubs + 1) * sizeof(*ns))) == NULL) {
		free(s.jid);
		n->load_status = -1;
		return 1;
	}
	n->subs = ns;
	n->subs[n->nsubs++] = s;
	return 0;
}

static void
load_subs_done(int status, void *ud)
{
	struct ps_node *n = ud;
	char pfx[PS_KEY_MAX];
	size_t plen = ps_key_node(pfx, n->service, n->name);

	if (status != XMPPD_STORE_OK || n->load_status < 0 ||
	    xmppd_store_ascan(engine_mod->ctx, ps_table(n->service, T_ITEMS), pfx, plen,
	    load_item_row, load_items_done, n) < 0)
		load_failed(n);
}

static void
load_node_got(int status, const void *val, size_t vlen, void *ud)
{
	struct ps_node *n = ud;
	struct ps_mod *m = engine_mod;
	char pfx[PS_KEY_MAX];
	size_t plen;

	if (status == XMPPD_STORE_NOT_FOUND) {
		n->state = PS_READY;
		drain(n);
		return;
	}
	if (status != XMPPD_STORE_OK || ps_node_parse(m, n, val, vlen) < 0) {
		load_failed(n);
		return;
	}
	n->exists = 1;
	plen = ps_key_node(pfx, n->service, n->name);
	if (xmppd_store_ascan(m->ctx, ps_table(n->service, T_SUBS), pfx, plen, load_sub_row, load_subs_done,
	    n) < 0)
		load_failed(n);
}

/* ---------------------------------------------------------------- */
/* Running requests.                                                  */

static void
run_req(void *ud)
{
	struct ps_req *r = ud;
	struct ps_table *t = my_table(r->m);
	struct ps_node *n;
	char key[PS_KEY_MAX];
	size_t klen;

	if (t == NULL || r->node == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	if ((n = node_find(t, r->service, r->node)) == NULL) {
		klen = ps_key_node(key, r->service, r->node);
		if (klen == 0 || (n = calloc(1, sizeof(*n))) == NULL) {
			ps_error(r, klen == 0 ? "not-acceptable" : "internal-server-error", NULL,
			    NULL);
			return;
		}
		n->kind = r->kind;
		n->state = PS_LOADING;
		n->service = strdup(r->service);
		n->name = strdup(r->node);
		n->key = strdup(r->key);
		ps_config_default(r->m, &n->cfg, n->kind);
		if (n->service == NULL || n->name == NULL || n->key == NULL) {
			node_free(n);
			ps_error(r, "internal-server-error", NULL, NULL);
			return;
		}
		n->hnext = t->b[hash2(n->service, n->name)];
		t->b[hash2(n->service, n->name)] = n;
		if (xmppd_store_aget(r->m->ctx, ps_table(n->service, T_NODES), key, klen, load_node_got, n) < 0)
			n->load_status = -1, n->state = PS_READY;
	}
	r->next = NULL;
	if (n->qtail != NULL)
		n->qtail->next = r;
	else
		n->qhead = r;
	n->qtail = r;
	if (n->state == PS_READY)
		drain(n);
}

int
ps_submit(struct ps_req *r)
{
	return xmppd_entity_post(r->m->ctx, r->key, run_req, r);
}

static void
drain(struct ps_node *n)
{
	struct ps_req *r;
	struct ps_table *t;

	if (n->draining || n->state != PS_READY)
		return;
	n->draining = 1;
	while (!n->busy && (r = n->qhead) != NULL) {
		n->qhead = r->next;
		if (n->qhead == NULL)
			n->qtail = NULL;
		r->next = NULL;
		n->busy = 1;
		r->n = n;
		if (n->load_status < 0)
			ps_error(r, "internal-server-error", NULL, NULL);
		else
			dispatch(r);
	}
	n->draining = 0;
	/* A node that does not exist (or failed to load) is not kept. */
	if (!n->busy && n->qhead == NULL && (!n->exists || n->load_status < 0)) {
		t = my_table(engine_mod);
		if (t != NULL)
			node_unlink(t, n);
		node_free(n);
	}
}

/* ---------------------------------------------------------------- */
/* Helpers for the operations.                                        */

static int
aff_of(const struct ps_node *n, const xmppd_jid *actor)
{
	if (actor == NULL)
		return PS_AFF_OWNER;    /* the server */
	for (size_t i = 0; i < n->naffs; i++)
		if (strcmp(n->affs[i].jid, xmppd_jid_bare(actor)) == 0)
			return n->affs[i].aff;
	return PS_AFF_NONE;
}

static struct ps_sub *
sub_find(struct ps_node *n, const char *jid)
{
	for (size_t i = 0; i < n->nsubs; i++)
		if (strcmp(n->subs[i].jid, jid) == 0)
			return &n->subs[i];
	return NULL;
}

/* The actor's subscription (its bare or a full JID of it). */
static struct ps_sub *
sub_of_actor(struct ps_node *n, const xmppd_jid *actor)
{
	const char *bare = xmppd_jid_bare(actor);
	size_t bl = strlen(bare);

	for (size_t i = 0; i < n->nsubs; i++)
		if (strncmp(n->subs[i].jid, bare, bl) == 0 &&
		    (n->subs[i].jid[bl] == '\0' || n->subs[i].jid[bl] == '/'))
			return &n->subs[i];
	return NULL;
}

static void
sub_remove(struct ps_node *n, struct ps_sub *s)
{
	size_t i = (size_t)(s - n->subs);

	free(s->jid);
	memmove(&n->subs[i], &n->subs[i + 1], (n->nsubs - i - 1) * sizeof(*s));
	n->nsubs--;
}

static long
max_items(const struct ps_req *r, const struct ps_node *n)
{
	return n->cfg.max_items == PS_MAX_ITEMS_MAX ? r->m->max_items_per_node : n->cfg.max_items;
}

static ssize_t
item_index(const struct ps_node *n, const char *id)
{
	for (size_t i = 0; i < n->nitems; i++)
		if (strcmp(n->items[i].id, id) == 0)
			return (ssize_t)i;
	return -1;
}

static void
item_remove_at(struct ps_node *n, size_t i)
{
	free(n->items[i].id);
	memmove(&n->items[i], &n->items[i + 1], (n->nitems - i - 1) * sizeof(n->items[0]));
	n->nitems--;
}

static xmppd_elem *
pubsub_result(const char *ns)
{
	return xmppd_elem_new(ns, "pubsub");
}

static void
run_event(struct ps_req *r, int kind, const char *item_id, const xmppd_elem *item)
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
static xmppd_elem *
event_message(const struct ps_node *n, xmppd_elem **event_r)
{
	xmppd_elem *msg = xmppd_elem_new(NULL, "message");

	xmppd_elem_set_attr(msg, "from", n->service);
	if (n->cfg.headline)
		xmppd_elem_set_attr(msg, "type", "headline");
	*event_r = xmppd_elem_add_child(msg, NS_PUBSUB_EVENT, "event");
	return msg;
}

static void
send_to(const xmppd_elem *msg, const char *to)
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

/* To every subscriber in state subscribed (XEP-0060 7.1.2); the message
 * is copied with its 'to' set, nothing else changes per subscriber. PEP
 * (XEP-0163 4.3.1): also the account's own available resources, and the
 * contacts whose presence the account has and whose caps ask for
 * NODE+notify (ps_pep_interested). */
static void
notify_all(const struct ps_node *n, const xmppd_elem *msg)
{
	xmppd_jid *owner;

	if (!n->cfg.deliver_notifications)
		return;
	for (size_t i = 0; i < n->nsubs; i++)
		if (n->subs[i].state == PS_SUB_SUBSCRIBED && !is_account(n, n->subs[i].jid))
			send_to(msg, n->subs[i].jid);
	if (n->kind != PS_PEP || (owner = xmppd_jid_parse(n->service)) == NULL)
		return;
	(void)xmppd_send_to_resources(owner, msg, 1);
	xmppd_jid_free(owner);
	ps_pep_notify(engine_mod, n, msg);
}

/* PEP: the account itself (or the server). */
static int
pep_owner(const struct ps_req *r)
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

	if (status != XMPPD_STORE_OK) {
		ps_config_free(&o->cfg);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	ps_config_free(&n->cfg);
	n->cfg = o->cfg;
	n->exists = 1;
	/* XEP-0060 8.1.2: an instant node's name is given back. */
	if (xmppd_elem_attr(xmppd_elem_child(r->payload, NS_PUBSUB, "create"), "node") == NULL) {
		res = pubsub_result(NS_PUBSUB);
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
		node_clear(n);
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
	/* Limits: nodes of the service and of one user. XEP-0060 8.1.3 leaves
	 * the condition to the service: not-allowed with max-nodes-exceeded.
	 * Counted from the store: two creates racing on two workers may pass
	 * the limit by one. */
	if ((r->m->max_nodes > 0 && o->nodes >= r->m->max_nodes) ||
	    (r->actor != NULL && r->m->max_nodes_per_user > 0 &&
	    o->mine >= r->m->max_nodes_per_user)) {
		ps_config_free(&o->cfg);
		ps_error(r, "not-allowed", "max-nodes-exceeded", NULL);
		return;
	}
	create_write(r);
}

static void
op_create(struct ps_req *r, xmppd_elem *action)
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
	if (r->kind == PS_PEP ? !pep_owner(r) :
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
	if (xmppd_store_ascan(r->m->ctx, ps_table(r->service, T_NODES), pfx, plen, count_node_row, count_nodes_done,
	    r) < 0) {
		ps_config_free(&o->cfg);
		ps_error(r, "internal-server-error", NULL, NULL);
	}
}

/* ---------------------------------------------------------------- */
/* Writing the node record (configure, affiliations).                 */

struct op_write {
	struct ps_config cfg;       /* configure: the new settings */
	int have_cfg;
	int notify_config;
	xmppd_elem *result;
};

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
	/* XEP-0060 8.2.5.3: a configuration notification. */
	if (n->cfg.notify_config) {
		msg = event_message(n, &ev);
		c = xmppd_elem_add_child(ev, NS_PUBSUB_EVENT, "configuration");
		xmppd_elem_set_attr(c, "node", n->name);
		if (n->cfg.deliver_payloads)
			ps_config_form(&n->cfg, c, NS_PUBSUB "#node_config", "result");
		notify_all(n, msg);
		xmppd_elem_unref(msg);
	}
	ps_reply(r, NULL);
}

/* Writes n's record (with cfg in place of n->cfg when given) and the
 * given extra ops; done runs with r. */
static int
write_record(struct ps_req *r, const struct ps_config *cfg, xmppd_batch *b,
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

static void
op_configure(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_write *o;
	xmppd_elem *res, *c, *x;
	const char *cond = NULL, *why = NULL;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);
		return;
	}
	if (aff_of(n, r->actor) != PS_AFF_OWNER) {
		ps_error(r, "forbidden", NULL, NULL);     /* 8.2.3.2 */
		return;
	}
	if (!r->set) {
		/* 8.2.1 */
		res = pubsub_result(NS_PUBSUB_OWNER);
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
	if (write_record(r, &o->cfg, NULL, config_done) < 0) {
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
	run_event(r, o->purge ? XMPPD_PUBSUB_PURGED : XMPPD_PUBSUB_DELETED, NULL, NULL);
	/* 8.4.2 / 8.5.2: the subscribers are told. */
	if (o->purge ? n->cfg.notify_retract : n->cfg.notify_delete) {
		msg = event_message(n, &ev);
		d = xmppd_elem_add_child(ev, NS_PUBSUB_EVENT, o->purge ? "purge" : "delete");
		xmppd_elem_set_attr(d, "node", n->name);
		if (o->redirect != NULL)
			xmppd_elem_set_attr(xmppd_elem_add_child(d, NS_PUBSUB_EVENT, "redirect"),
			    "uri", o->redirect);
		notify_all(n, msg);
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
		node_clear(n);
		ps_config_default(r->m, &n->cfg, n->kind);
	}
	free(o->redirect);
	ps_reply(r, NULL);
}

static void
op_delete(struct ps_req *r, xmppd_elem *action, int purge)
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
	if (aff_of(n, r->actor) != PS_AFF_OWNER) {
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
			node_clear(n);
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
			item_remove_at(n, (size_t)o->replaced);
		for (size_t i = 0; i < o->trim && n->nitems > 0; i++)
			item_remove_at(n, 0);
		if (o->keep)
			(void)items_push(n, o->seq, o->id);
	}
	free(n->last_xml);
	n->last_xml = o->xml;
	n->last_len = o->xlen;
	o->xml = NULL;
	run_event(r, XMPPD_PUBSUB_PUBLISHED, o->id, o->item);
	/* 7.1.2: one message, copied per subscriber. */
	msg = event_message(n, &ev);
	items = xmppd_elem_add_child(ev, NS_PUBSUB_EVENT, "items");
	xmppd_elem_set_attr(items, "node", n->name);
	it = xmppd_elem_add_child(items, NS_PUBSUB_EVENT, "item");
	xmppd_elem_set_attr(it, "id", o->id);
	if (pub_by != NULL)
		xmppd_elem_set_attr(it, "publisher", pub_by);
	if (n->cfg.deliver_payloads && (payload = xmppd_elem_first_child(o->item)) != NULL)
		xmppd_elem_append_copy(it, payload);
	notify_all(n, msg);
	xmppd_elem_unref(msg);
	xmppd_elem_unref(o->item);
	res = pubsub_result(NS_PUBSUB);
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
		s = sub_of_actor((struct ps_node *)n, actor);
		return s != NULL && s->state == PS_SUB_SUBSCRIBED;
	default:
		return 0;
	}
}

static void
op_publish(struct ps_req *r, xmppd_elem *action)
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
		if (!pep_owner(r)) {
			ps_error(r, "item-not-found", NULL, NULL);        /* 7.1.3.3 */
			return;
		}
		node_clear(n);
		ps_config_default(r->m, &n->cfg, PS_PEP);
		if (x != NULL && ps_config_apply_fields(r->m, &n->cfg, x) < 0) {
			node_clear(n);
			ps_config_default(r->m, &n->cfg, n->kind);
			ps_error(r, "conflict", "precondition-not-met", NULL);
			return;
		}
		if ((n->creator = strdup(r->service)) == NULL ||
		    (n->affs = calloc(1, sizeof(*n->affs))) == NULL ||
		    (n->affs[0].jid = strdup(r->service)) == NULL) {
			node_clear(n);
			ps_config_default(r->m, &n->cfg, n->kind);
			ps_error(r, "internal-server-error", NULL, NULL);
			return;
		}
		n->affs[0].aff = PS_AFF_OWNER;
		n->naffs = 1;
		created = 1;
	}
	if (!may_publish(n, r->actor, aff_of(n, r->actor))) {
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
	o->replaced = item_index(n, o->id);
	if (o->replaced >= 0) {
		klen = ps_key_item(key, n->service, n->name, n->items[o->replaced].seq);
		(void)xmppd_batch_del(b, ps_table(n->service, T_ITEMS), key, klen);
	}
	/* The oldest go when the node is full (max_items). */
	max = max_items(r, n);
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
	if ((i = item_index(n, o->id)) >= 0) {
		int newest = (size_t)i == n->nitems - 1;

		item_remove_at(n, (size_t)i);
		if (newest) {
			free(n->last_xml);
			n->last_xml = NULL;
			n->last_len = 0;
		}
	}
	it = xmppd_elem_new(NS_PUBSUB, "item");
	xmppd_elem_set_attr(it, "id", o->id);
	run_event(r, XMPPD_PUBSUB_RETRACTED, o->id, it);
	xmppd_elem_unref(it);
	/* 7.2.2.1: notify_retract, or notify='true' on the request. */
	if (o->notify) {
		msg = event_message(n, &ev);
		items = xmppd_elem_add_child(ev, NS_PUBSUB_EVENT, "items");
		xmppd_elem_set_attr(items, "node", n->name);
		xmppd_elem_set_attr(xmppd_elem_add_child(items, NS_PUBSUB_EVENT, "retract"), "id",
		    o->id);
		notify_all(n, msg);
		xmppd_elem_unref(msg);
	}
	ps_reply(r, NULL);
}

static void
op_retract(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_retract *o;
	xmppd_elem *item = xmppd_elem_child(action, NS_PUBSUB, "item");
	const char *id = xmppd_elem_attr(item, "id"), *nt = xmppd_elem_attr(action, "notify");
	int aff = aff_of(n, r->actor);
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
	if ((i = item_index(n, id)) < 0) {
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

/* ---------------------------------------------------------------- */
/* Access (XEP-0060 4.5): who may subscribe and retrieve items.       */

/* The node's owner whose roster decides (presence, roster): the first
 * owner that is a local account. */
static const char *
roster_owner(const struct ps_node *n)
{
	for (size_t i = 0; i < n->naffs; i++)
		if (n->affs[i].aff == PS_AFF_OWNER && strchr(n->affs[i].jid, '@') != NULL &&
		    xmppd_is_local_host(strchr(n->affs[i].jid, '@') + 1))
			return n->affs[i].jid;
	return NULL;
}

typedef void (*access_fn)(struct ps_req *r);

struct access_wait {
	struct ps_req *r;
	access_fn next;
};

static void
access_denied(struct ps_req *r, int model)
{
	/* 6.1.3.2, 6.1.3.3, 6.1.3.4 (and 6.5.9 for items). */
	if (model == PS_PRESENCE)
		ps_error(r, "not-authorized", "presence-subscription-required", NULL);
	else if (model == PS_ROSTER)
		ps_error(r, "not-authorized", "not-in-roster-group", NULL);
	else
		ps_error(r, "not-allowed", "closed-node", NULL);
}

static void
roster_answer(int sub, void *ud)
{
	struct access_wait *w = ud;
	struct ps_req *r = w->r;
	access_fn next = w->next;
	int model = r->n->cfg.access;

	free(w);
	/* presence: the contact sees the owner's presence (from or both);
	 * roster: the contact is in the owner's roster (groups are not
	 * known through the ABI: any group counts). */
	if (sub >= 0 && (model == PS_PRESENCE ? (sub & XMPPD_SUB_FROM) != 0 :
	    (sub & XMPPD_SUB_IN_ROSTER) != 0))
		next(r);
	else
		access_denied(r, model);
}

/* Runs next(r) when the actor may see the node, else answers the error.
 * for_items: retrieval (authorize needs a subscription). */
static void
check_access(struct ps_req *r, access_fn next, int for_items)
{
	struct ps_node *n = r->n;
	int aff = aff_of(n, r->actor);
	const char *owner;
	struct access_wait *w;
	xmppd_jid *oj;
	struct ps_sub *s;

	if (aff == PS_AFF_OUTCAST) {
		ps_error(r, "forbidden", NULL, NULL);             /* 6.1.3.8 */
		return;
	}
	if (aff == PS_AFF_OWNER || aff == PS_AFF_PUBLISHER || aff == PS_AFF_MEMBER) {
		next(r);
		return;
	}
	switch (n->cfg.access) {
	case PS_OPEN:
		next(r);
		return;
	case PS_WHITELIST:
		access_denied(r, PS_WHITELIST);
		return;
	case PS_AUTHORIZE:
		if (!for_items) {
			next(r);
			return;
		}
		s = sub_of_actor(n, r->actor);
		if (s != NULL && s->state == PS_SUB_SUBSCRIBED)
			next(r);
		else if (s != NULL && s->state == PS_SUB_PENDING)
			ps_error(r, "not-authorized", "pending-subscription", NULL);  /* 6.5.9.? */
		else
			ps_error(r, "not-authorized", "not-subscribed", NULL);
		return;
	default:
		break;
	}
	if ((owner = roster_owner(n)) == NULL || (oj = xmppd_jid_parse(owner)) == NULL) {
		access_denied(r, n->cfg.access);
		return;
	}
	if ((w = malloc(sizeof(*w))) == NULL) {
		xmppd_jid_free(oj);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	w->r = r;
	w->next = next;
	if (xmppd_roster_subscription(r->m->ctx, oj, r->actor, roster_answer, w) < 0) {
		free(w);
		access_denied(r, n->cfg.access);
	}
	xmppd_jid_free(oj);
}

/* ---------------------------------------------------------------- */
/* subscribe (6.1), unsubscribe (6.2), authorization (8.6)            */

struct op_sub {
	struct ps_sub sub;
	int is_new;
	int remove;
	xmppd_elem *action;
};

static void
op_sub_free(void *op)
{
	free(((struct op_sub *)op)->sub.jid);
}

static xmppd_elem *
subscription_elem(const char *ns, const struct ps_node *n, const struct ps_sub *s)
{
	xmppd_elem *e = xmppd_elem_new(ns, "subscription");

	xmppd_elem_set_attr(e, "node", n->name);
	xmppd_elem_set_attr(e, "jid", s->jid);
	xmppd_elem_set_attr(e, "subscription", ps_sub_name(s->state));
	if (s->state != PS_SUB_NONE)
		xmppd_elem_set_attr(e, "subid", s->subid);
	return e;
}

/* XEP-0060 6.1.7: the last published item to a new subscriber. */
static void
send_last_item(const struct ps_node *n, const char *to)
{
	xmppd_elem *msg, *ev, *items, *item, *it, *payload;

	if (n->last_xml == NULL || n->cfg.send_last == PS_LAST_NEVER)
		return;
	if ((item = xmppd_elem_parse(n->last_xml, n->last_len)) == NULL)
		return;
	msg = event_message(n, &ev);
	items = xmppd_elem_add_child(ev, NS_PUBSUB_EVENT, "items");
	xmppd_elem_set_attr(items, "node", n->name);
	it = xmppd_elem_add_child(items, NS_PUBSUB_EVENT, "item");
	xmppd_elem_set_attr(it, "id", xmppd_elem_attr(item, "id"));
	if (n->cfg.deliver_payloads && (payload = xmppd_elem_first_child(item)) != NULL)
		xmppd_elem_append_copy(it, payload);
	send_to(msg, to);
	xmppd_elem_unref(msg);
	xmppd_elem_unref(item);
}

/* XEP-0060 8.6.1: the subscription authorization form, to each owner. */
static void
ask_owners(const struct ps_node *n, const struct ps_sub *s)
{
	xmppd_elem *msg = xmppd_elem_new(NULL, "message"), *x, *f, *v;
	const char *vals[][3] = {
		{ "FORM_TYPE", "hidden", NS_PUBSUB "#subscribe_authorization" },
		{ "pubsub#subid", "hidden", s->subid },
		{ "pubsub#node", "text-single", n->name },
		{ "pubsub#subscriber_jid", "jid-single", s->jid },
		{ "pubsub#allow", "boolean", "false" },
	};

	xmppd_elem_set_attr(msg, "from", n->service);
	x = xmppd_elem_add_child(msg, NS_XDATA, "x");
	xmppd_elem_set_attr(x, "type", "form");
	xmppd_elem_add_text(xmppd_elem_add_child(x, NS_XDATA, "title"),
	    "PubSub subscriber request", 25);
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		f = xmppd_elem_add_child(x, NS_XDATA, "field");
		xmppd_elem_set_attr(f, "var", vals[i][0]);
		xmppd_elem_set_attr(f, "type", vals[i][1]);
		v = xmppd_elem_add_child(f, NS_XDATA, "value");
		xmppd_elem_add_text(v, vals[i][2], strlen(vals[i][2]));
	}
	for (size_t i = 0; i < n->naffs; i++)
		if (n->affs[i].aff == PS_AFF_OWNER)
			send_to(msg, n->affs[i].jid);
	xmppd_elem_unref(msg);
}

static void
sub_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_sub *o = r->op;
	struct ps_node *n = r->n;
	struct ps_sub *s, *ns;
	xmppd_elem *res;

	if (status != XMPPD_STORE_OK) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	if (o->is_new) {
		if ((ns = realloc(n->subs, (n->nsubs + 1) * sizeof(*ns))) == NULL) {
			ps_error(r, "internal-server-error", NULL, NULL);
			return;
		}
		n->subs = ns;
		n->subs[n->nsubs++] = o->sub;
		o->sub.jid = NULL;      /* the node's now */
		s = &n->subs[n->nsubs - 1];
	} else {
		s = sub_find(n, o->sub.jid);
		if (s != NULL)
			s->state = o->sub.state;
	}
	if (s == NULL) {
		ps_reply(r, NULL);
		return;
	}
	res = pubsub_result(NS_PUBSUB);
	{
		xmppd_elem *e = subscription_elem(NS_PUBSUB, n, s);

		xmppd_elem_append_copy(res, e);
		xmppd_elem_unref(e);
	}
	if (s->state == PS_SUB_SUBSCRIBED)
		send_last_item(n, s->jid);
	else if (s->state == PS_SUB_PENDING)
		ask_owners(n, s);
	ps_reply(r, res);
}

static int
sub_write(struct ps_req *r, const struct ps_sub *s, int remove, xmppd_store_done_fn done)
{
	struct ps_node *n = r->n;
	char key[PS_KEY_MAX], *rec = NULL;
	size_t klen = ps_key_sub(key, n->service, n->name, s->jid), vlen = 0;
	xmppd_batch *b;

	if (klen == 0 || (b = xmppd_batch_new(r->m->ctx)) == NULL)
		return -1;
	if (remove) {
		(void)xmppd_batch_del(b, ps_table(n->service, T_SUBS), key, klen);
	} else {
		if ((rec = ps_sub_record(s, &vlen)) == NULL) {
			xmppd_batch_free(b);
			return -1;
		}
		(void)xmppd_batch_put(b, ps_table(n->service, T_SUBS), key, klen, rec, vlen);
		free(rec);
	}
	if (xmppd_batch_submit(b, done, r) < 0)
		done(XMPPD_STORE_ERROR, r);
	return 0;
}

static void
subscribe_allowed(struct ps_req *r)
{
	struct op_sub *o = r->op;
	struct ps_node *n = r->n;
	struct ps_sub *s = sub_find(n, o->sub.jid);
	int aff = aff_of(n, r->actor);

	if (s != NULL) {
		/* 6.1.6: already subscribed (or pending): the same answer. */
		xmppd_elem *res = pubsub_result(NS_PUBSUB), *e = subscription_elem(NS_PUBSUB, n, s);

		xmppd_elem_append_copy(res, e);
		xmppd_elem_unref(e);
		ps_reply(r, res);
		return;
	}
	/* Limit: subscriptions of a node (XEP-0060 6.1.3.? leaves the
	 * condition to the service: policy-violation with
	 * too-many-subscriptions, as 6.1.3.? names it). */
	if (r->m->max_subscriptions_per_node > 0 &&
	    (long)n->nsubs >= r->m->max_subscriptions_per_node) {
		ps_error(r, "policy-violation", "too-many-subscriptions", NULL);
		return;
	}
	o->is_new = 1;
	ps_random_id(o->sub.subid);
	/* 6.1.2 / 8.6: authorize makes it pending until an owner decides. */
	o->sub.state = n->cfg.access == PS_AUTHORIZE && aff != PS_AFF_OWNER &&
	    aff != PS_AFF_PUBLISHER && aff != PS_AFF_MEMBER ? PS_SUB_PENDING : PS_SUB_SUBSCRIBED;
	if (sub_write(r, &o->sub, 0, sub_done) < 0) {
		ps_error(r, "internal-server-error", NULL, NULL);
	}
}

/* Whether jid (the subscription's) is the actor's: its bare JID, or one
 * of its full JIDs. 6.1.3.1: invalid-jid otherwise. */
static int
jid_is_actor(const struct ps_req *r, const xmppd_jid *j)
{
	return r->actor == NULL || strcmp(xmppd_jid_bare(j), xmppd_jid_bare(r->actor)) == 0;
}

static void
op_subscribe(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_sub *o;
	xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(action, "jid") ?
	    xmppd_elem_attr(action, "jid") : "");

	if (j == NULL || !jid_is_actor(r, j)) {
		xmppd_jid_free(j);
		ps_error(r, "bad-request", "invalid-jid", NULL);  /* 6.1.3.1 */
		return;
	}
	if (!n->exists) {
		xmppd_jid_free(j);
		ps_error(r, "item-not-found", NULL, NULL);        /* 6.1.3.12 */
		return;
	}
	if (xmppd_elem_child(r->payload, NS_PUBSUB, "options") != NULL) {
		xmppd_jid_free(j);
		ps_error(r, "feature-not-implemented", "unsupported", "subscription-options");
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL || (o->sub.jid = strdup(xmppd_jid_full(j))) == NULL) {
		free(o);
		xmppd_jid_free(j);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	xmppd_jid_free(j);
	r->op = o;
	r->op_free = op_sub_free;
	check_access(r, subscribe_allowed, 0);
}

static void
unsub_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_sub *o = r->op;
	struct ps_sub *s;

	if (status == XMPPD_STORE_OK && (s = sub_find(r->n, o->sub.jid)) != NULL)
		sub_remove(r->n, s);
	if (status != XMPPD_STORE_OK)
		ps_error(r, "internal-server-error", NULL, NULL);
	else
		ps_reply(r, NULL);
}

static void
op_unsubscribe(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_sub *o;
	struct ps_sub *s;
	const char *subid = xmppd_elem_attr(action, "subid");
	xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(action, "jid") ?
	    xmppd_elem_attr(action, "jid") : "");

	if (j == NULL || (!jid_is_actor(r, j) && aff_of(n, r->actor) != PS_AFF_OWNER)) {
		xmppd_jid_free(j);
		ps_error(r, "bad-request", "invalid-jid", NULL);  /* 6.2.3.3 */
		return;
	}
	if (!n->exists) {
		xmppd_jid_free(j);
		ps_error(r, "item-not-found", NULL, NULL);        /* 6.2.3.4 */
		return;
	}
	s = sub_find(n, xmppd_jid_full(j));
	xmppd_jid_free(j);
	if (s == NULL) {
		ps_error(r, "unexpected-request", "not-subscribed", NULL);        /* 6.2.3.2 */
		return;
	}
	if (subid != NULL && strcmp(subid, s->subid) != 0) {
		ps_error(r, "not-acceptable", "invalid-subid", NULL);     /* 6.2.3.5 */
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL || (o->sub.jid = strdup(s->jid)) == NULL) {
		free(o);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	r->op_free = op_sub_free;
	if (sub_write(r, s, 1, unsub_done) < 0) {
		ps_error(r, "internal-server-error", NULL, NULL);
	}
}

static void
authz_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_sub *o = r->op;
	struct ps_node *n = r->n;
	struct ps_sub *s;
	xmppd_elem *msg, *ev, *e;

	if (status != XMPPD_STORE_OK || (s = sub_find(n, o->sub.jid)) == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	/* 8.6.2: the subscriber learns the decision. */
	msg = event_message(n, &ev);
	xmppd_elem_set_attr(msg, "type", NULL);
	s->state = o->remove ? PS_SUB_NONE : PS_SUB_SUBSCRIBED;
	e = subscription_elem(NS_PUBSUB_EVENT, n, s);
	xmppd_elem_append_copy(ev, e);
	xmppd_elem_unref(e);
	send_to(msg, s->jid);
	xmppd_elem_unref(msg);
	if (o->remove)
		sub_remove(n, s);
	else
		send_last_item(n, o->sub.jid);
	ps_reply(r, NULL);
}

/* 8.6.2: an owner's answer (the submitted form is the payload). */
static void
op_authorize(struct ps_req *r)
{
	struct ps_node *n = r->n;
	const char *subscriber = ps_form_value(r->payload, "pubsub#subscriber_jid");
	const char *allow = ps_form_value(r->payload, "pubsub#allow");
	struct op_sub *o;
	struct ps_sub *s;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);
		return;
	}
	if (aff_of(n, r->actor) != PS_AFF_OWNER) {
		ps_error(r, "forbidden", NULL, NULL);
		return;
	}
	if (subscriber == NULL || (s = sub_find(n, subscriber)) == NULL ||
	    s->state != PS_SUB_PENDING) {
		ps_error(r, "unexpected-request", NULL, NULL);
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL || (o->sub.jid = strdup(s->jid)) == NULL) {
		free(o);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	r->op_free = op_sub_free;
	o->remove = !(is(allow, "1") || is(allow, "true"));
	o->sub = (struct ps_sub){ o->sub.jid, PS_SUB_SUBSCRIBED, { 0 } };
	memcpy(o->sub.subid, s->subid, sizeof(o->sub.subid));
	if (sub_write(r, &o->sub, o->remove, authz_done) < 0) {
		ps_error(r, "internal-server-error", NULL, NULL);
	}
}

/* ---------------------------------------------------------------- */
/* items (6.5)                                                        */

struct op_items {
	size_t *want;               /* indexes into n->items, in answer order */
	size_t nwant, left;
	xmppd_elem *res, *items;
	int bad;
	size_t count, first_index;
	int rsm;
};

static void
op_items_free(void *op)
{
	struct op_items *o = op;

	free(o->want);
	xmppd_elem_unref(o->res);
}

static void
items_finish(struct ps_req *r)
{
	struct op_items *o = r->op;
	struct ps_node *n = r->n;
	xmppd_elem *set, *e;
	char buf[32];

	free(o->want);
	o->want = NULL;
	if (o->bad) {
		xmppd_elem_unref(o->res);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	/* XEP-0059 2.x: the page's first and last ids and the count. */
	if (o->rsm) {
		set = xmppd_elem_add_child(o->res, NS_RSM, "set");
		e = xmppd_elem_first_child(o->items);
		if (e != NULL) {
			xmppd_elem *f = xmppd_elem_add_child(set, NS_RSM, "first"), *l;
			xmppd_elem *last = e, *nx;

			snprintf(buf, sizeof(buf), "%zu", o->first_index);
			xmppd_elem_set_attr(f, "index", buf);
			xmppd_elem_add_text(f, xmppd_elem_attr(e, "id"),
			    strlen(xmppd_elem_attr(e, "id")));
			while ((nx = xmppd_elem_next_sibling(last)) != NULL)
				last = nx;
			l = xmppd_elem_add_child(set, NS_RSM, "last");
			xmppd_elem_add_text(l, xmppd_elem_attr(last, "id"),
			    strlen(xmppd_elem_attr(last, "id")));
		}
		snprintf(buf, sizeof(buf), "%zu", n->nitems);
		xmppd_elem_add_text(xmppd_elem_add_child(set, NS_RSM, "count"), buf, strlen(buf));
	}
	e = o->res;
	o->res = NULL;
	ps_reply(r, e);
}

static void
item_got(int status, const void *val, size_t vlen, void *ud)
{
	struct ps_req *r = ud;
	struct op_items *o = r->op;
	const char *pub, *id, *xml;
	xmppd_elem *it;
	size_t xlen;

	if (status == XMPPD_STORE_OK && ps_item_parse(val, vlen, &pub, &id, &xml, &xlen) == 0 &&
	    (it = xmppd_elem_parse(xml, xlen)) != NULL) {
		xmppd_elem_append_copy(o->items, it);
		xmppd_elem_unref(it);
	} else if (status != XMPPD_STORE_NOT_FOUND) {
		o->bad = 1;
	}
	if (--o->left == 0)
		items_finish(r);
}

static void
items_allowed(struct ps_req *r)
{
	struct op_items *o = r->op;
	struct ps_node *n = r->n;
	char key[PS_KEY_MAX];
	size_t klen, i;

	o->left = o->nwant;
	if (o->nwant == 0) {
		items_finish(r);
		return;
	}
	/* Reads complete in submission order: the answer keeps the order. */
	for (i = 0; i < o->nwant; i++) {
		klen = ps_key_item(key, n->service, n->name, n->items[o->want[i]].seq);
		if (xmppd_store_aget(r->m->ctx, ps_table(n->service, T_ITEMS), key, klen, item_got, r) < 0) {
			o->bad = 1;
			o->left -= o->nwant - i;
			if (o->left == 0)
				items_finish(r);
			return;
		}
	}
}

static long
parse_count(const char *s)
{
	char *end;
	long v;

	if (s == NULL)
		return -1;
	v = strtol(s, &end, 10);
	return *s == '\0' || *end != '\0' || v < 0 ? -2 : v;
}

static void
op_items(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_items *o;
	xmppd_elem *c, *set = xmppd_elem_child(r->payload, NS_RSM, "set");
	long max = parse_count(xmppd_elem_attr(action, "max_items")), rmax = -1;
	size_t start = 0, end, k;
	ssize_t idx;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);        /* 6.5.9.11 */
		return;
	}
	if (max == -2) {
		ps_error(r, "bad-request", NULL, NULL);
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL ||
	    (o->want = calloc(n->nitems + 1, sizeof(*o->want))) == NULL) {
		free(o);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	r->op_free = op_items_free;
	o->res = pubsub_result(NS_PUBSUB);
	o->items = xmppd_elem_add_child(o->res, NS_PUBSUB, "items");
	xmppd_elem_set_attr(o->items, "node", n->name);
	/* 6.5.8: particular items, in the order asked. */
	for (c = xmppd_elem_first_child(action); c != NULL; c = xmppd_elem_next_sibling(c))
		if (is(xmppd_elem_name(c), "item") && xmppd_elem_attr(c, "id") != NULL) {
			if ((idx = item_index(n, xmppd_elem_attr(c, "id"))) >= 0 &&
			    o->nwant < n->nitems)
				o->want[o->nwant++] = (size_t)idx;
			o->rsm = -1;
		}
	if (o->rsm == -1) {
		o->rsm = 0;
		check_access(r, items_allowed, 1);
		return;
	}
	/* The result set is newest first (6.5.7: max_items the N most
	 * recent); position p is n->items[nitems - 1 - p]. XEP-0059 pages
	 * it: <max/>, <after/> (the page after that id), <before/> (the page
	 * before it; empty: the last page), <index/>. */
	end = n->nitems;
	if (set != NULL) {
		const char *after = xmppd_elem_child_text(set, NS_RSM, "after");
		xmppd_elem *before = xmppd_elem_child(set, NS_RSM, "before");
		long index = parse_count(xmppd_elem_child_text(set, NS_RSM, "index"));

		o->rsm = 1;
		rmax = parse_count(xmppd_elem_child_text(set, NS_RSM, "max"));
		if (rmax == -2 || index == -2) {
			ps_error(r, "bad-request", NULL, NULL);
			return;
		}
		if (xmppd_elem_child(set, NS_RSM, "after") != NULL) {
			if ((idx = item_index(n, after)) < 0) {
				ps_error(r, "item-not-found", NULL, NULL);  /* XEP-0059 2.6 */
				return;
			}
			start = n->nitems - (size_t)idx;
		} else if (before != NULL) {
			const char *b = xmppd_elem_text(before);

			if (*b != '\0') {
				if ((idx = item_index(n, b)) < 0) {
					ps_error(r, "item-not-found", NULL, NULL);
					return;
				}
				end = n->nitems - 1 - (size_t)idx;
			}
			if (rmax >= 0 && end > (size_t)rmax)
				start = end - (size_t)rmax;
		} else if (index >= 0) {
			start = (size_t)index < n->nitems ? (size_t)index : n->nitems;
		}
	}
	if (max >= 0 && start + (size_t)max < end)
		end = start + (size_t)max;
	if (rmax >= 0 && start + (size_t)rmax < end)
		end = start + (size_t)rmax;
	if (!n->cfg.persist_items)
		start = end = 0;
	o->first_index = start;
	for (k = start; k < end; k++)
		o->want[o->nwant++] = n->nitems - 1 - k;
	check_access(r, items_allowed, 1);
}

/* ---------------------------------------------------------------- */
/* Owner: affiliations (8.9) and subscriptions (8.8); the entity's     */
/* own for one node (5.6, 5.7 with a node).                           */

static void
record_done(int status, void *ud)
{
	struct ps_req *r = ud;

	if (status != XMPPD_STORE_OK)
		ps_error(r, "internal-server-error", NULL, NULL);
	else
		ps_reply(r, NULL);
}

static void
op_affiliations(struct ps_req *r, xmppd_elem *action, int owner_ns)
{
	struct ps_node *n = r->n;
	xmppd_elem *res, *list, *a, *c;
	struct ps_aff_entry *na;
	size_t owners = 0, cnt = 0;
	xmppd_batch *b;
	char key[PS_KEY_MAX];

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);
		return;
	}
	if (!owner_ns) {
		/* 5.7 with a node: the actor's own affiliation. */
		int aff = aff_of(n, r->actor);

		res = pubsub_result(NS_PUBSUB);
		list = xmppd_elem_add_child(res, NS_PUBSUB, "affiliations");
		if (aff != PS_AFF_NONE) {
			a = xmppd_elem_add_child(list, NS_PUBSUB, "affiliation");
			xmppd_elem_set_attr(a, "node", n->name);
			xmppd_elem_set_attr(a, "affiliation", ps_aff_name(aff));
		}
		ps_reply(r, res);
		return;
	}
	if (aff_of(n, r->actor) != PS_AFF_OWNER) {
		ps_error(r, "forbidden", NULL, NULL);     /* 8.9.1.3, 8.9.2.5 */
		return;
	}
	if (!r->set) {
		res = pubsub_result(NS_PUBSUB_OWNER);
		list = xmppd_elem_add_child(res, NS_PUBSUB_OWNER, "affiliations");
		xmppd_elem_set_attr(list, "node", n->name);
		for (size_t i = 0; i < n->naffs; i++) {
			a = xmppd_elem_add_child(list, NS_PUBSUB_OWNER, "affiliation");
			xmppd_elem_set_attr(a, "jid", n->affs[i].jid);
			xmppd_elem_set_attr(a, "affiliation", ps_aff_name(n->affs[i].aff));
		}
		ps_reply(r, res);
		return;
	}
	/* 8.9.2: validate all, then apply to a new list. */
	for (c = xmppd_elem_first_child(action); c != NULL; c = xmppd_elem_next_sibling(c)) {
		xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(c, "jid") ?
		    xmppd_elem_attr(c, "jid") : "");
		int ok = j != NULL && ps_aff_parse(xmppd_elem_attr(c, "affiliation")) >= 0;

		xmppd_jid_free(j);
		if (!ok) {
			ps_error(r, "bad-request", NULL, NULL);
			return;
		}
		cnt++;
	}
	if ((na = calloc(n->naffs + cnt + 1, sizeof(*na))) == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	size_t nn = 0;

	for (size_t i = 0; i < n->naffs; i++)
		na[nn++] = (struct ps_aff_entry){ strdup(n->affs[i].jid), n->affs[i].aff };
	for (c = xmppd_elem_first_child(action); c != NULL; c = xmppd_elem_next_sibling(c)) {
		xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(c, "jid"));
		int v = ps_aff_parse(xmppd_elem_attr(c, "affiliation"));
		size_t k;

		for (k = 0; k < nn; k++)
			if (na[k].jid != NULL && strcmp(na[k].jid, xmppd_jid_bare(j)) == 0)
				break;
		if (k == nn)
			na[nn++] = (struct ps_aff_entry){ strdup(xmppd_jid_bare(j)), v };
		else
			na[k].aff = v;
		xmppd_jid_free(j);
	}
	for (size_t k = 0; k < nn; k++)
		owners += na[k].aff == PS_AFF_OWNER;
	/* 8.9.2.4: the last owner stays. */
	if (owners == 0) {
		for (size_t k = 0; k < nn; k++)
			free(na[k].jid);
		free(na);
		ps_error(r, "not-acceptable", NULL, NULL);
		return;
	}
	if ((b = xmppd_batch_new(r->m->ctx)) == NULL) {
		for (size_t k = 0; k < nn; k++)
			free(na[k].jid);
		free(na);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	/* Drop the 'none' entries; outcasts lose their subscriptions
	 * (8.9.2.4 / 4.1). Memory changes now: the node runs nothing else
	 * before the batch's end, and a failed batch is logged. */
	for (size_t i = 0; i < n->naffs; i++)
		free(n->affs[i].jid);
	free(n->affs);
	n->affs = na;
	n->naffs = 0;
	for (size_t k = 0; k < nn; k++) {
		if (na[k].jid == NULL || na[k].aff == PS_AFF_NONE) {
			free(na[k].jid);
			continue;
		}
		if (na[k].aff == PS_AFF_OUTCAST)
			for (size_t s = 0; s < n->nsubs;) {
				xmppd_jid *sj = xmppd_jid_parse(n->subs[s].jid);

				if (sj != NULL && strcmp(xmppd_jid_bare(sj), na[k].jid) == 0) {
					(void)xmppd_batch_del(b, ps_table(n->service, T_SUBS), key, ps_key_sub(key,
					    n->service, n->name, n->subs[s].jid));
					sub_remove(n, &n->subs[s]);
				} else {
					s++;
				}
				xmppd_jid_free(sj);
			}
		na[n->naffs++] = na[k];
	}
	if (write_record(r, NULL, b, record_done) < 0)
		ps_error(r, "internal-server-error", NULL, NULL);
}

static void
op_subscriptions(struct ps_req *r, xmppd_elem *action, int owner_ns)
{
	struct ps_node *n = r->n;
	xmppd_elem *res, *list, *c, *e;
	xmppd_batch *b;
	char key[PS_KEY_MAX], *rec;
	size_t vlen;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);
		return;
	}
	if (!owner_ns) {
		/* 5.6 with a node: the actor's subscriptions to it. */
		res = pubsub_result(NS_PUBSUB);
		list = xmppd_elem_add_child(res, NS_PUBSUB, "subscriptions");
		for (size_t i = 0; i < n->nsubs; i++) {
			xmppd_jid *sj = xmppd_jid_parse(n->subs[i].jid);

			if (sj != NULL && r->actor != NULL &&
			    strcmp(xmppd_jid_bare(sj), xmppd_jid_bare(r->actor)) == 0) {
				e = subscription_elem(NS_PUBSUB, n, &n->subs[i]);
				xmppd_elem_append_copy(list, e);
				xmppd_elem_unref(e);
			}
			xmppd_jid_free(sj);
		}
		ps_reply(r, res);
		return;
	}
	if (aff_of(n, r->actor) != PS_AFF_OWNER) {
		ps_error(r, "forbidden", NULL, NULL);     /* 8.8.1.3, 8.8.2.3 */
		return;
	}
	if (!r->set) {
		res = pubsub_result(NS_PUBSUB_OWNER);
		list = xmppd_elem_add_child(res, NS_PUBSUB_OWNER, "subscriptions");
		xmppd_elem_set_attr(list, "node", n->name);
		for (size_t i = 0; i < n->nsubs; i++) {
			e = xmppd_elem_add_child(list, NS_PUBSUB_OWNER, "subscription");
			xmppd_elem_set_attr(e, "jid", n->subs[i].jid);
			xmppd_elem_set_attr(e, "subscription", ps_sub_name(n->subs[i].state));
			xmppd_elem_set_attr(e, "subid", n->subs[i].subid);
		}
		ps_reply(r, res);
		return;
	}
	/* 8.8.2: validate all first. */
	for (c = xmppd_elem_first_child(action); c != NULL; c = xmppd_elem_next_sibling(c)) {
		xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(c, "jid") ?
		    xmppd_elem_attr(c, "jid") : "");
		const char *st = xmppd_elem_attr(c, "subscription");
		int ok = j != NULL && (is(st, "none") || is(st, "subscribed") || is(st, "pending"));

		xmppd_jid_free(j);
		if (!ok) {
			ps_error(r, "bad-request", NULL, NULL);
			return;
		}
	}
	if ((b = xmppd_batch_new(r->m->ctx)) == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	for (c = xmppd_elem_first_child(action); c != NULL; c = xmppd_elem_next_sibling(c)) {
		xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(c, "jid"));
		const char *st = xmppd_elem_attr(c, "subscription");
		struct ps_sub *s = sub_find(n, xmppd_jid_full(j)), *ns;
		size_t klen = ps_key_sub(key, n->service, n->name, xmppd_jid_full(j));

		if (is(st, "none")) {
			if (s != NULL) {
				(void)xmppd_batch_del(b, ps_table(n->service, T_SUBS), key, klen);
				sub_remove(n, s);
			}
		} else {
			if (s == NULL && (ns = realloc(n->subs, (n->nsubs + 1) *
			    sizeof(*ns))) != NULL) {
				n->subs = ns;
				s = &n->subs[n->nsubs++];
				memset(s, 0, sizeof(*s));
				s->jid = strdup(xmppd_jid_full(j));
				ps_random_id(s->subid);
			}
			if (s != NULL && s->jid != NULL) {
				s->state = is(st, "pending") ? PS_SUB_PENDING : PS_SUB_SUBSCRIBED;
				if ((rec = ps_sub_record(s, &vlen)) != NULL)
					(void)xmppd_batch_put(b, ps_table(n->service, T_SUBS), key, klen, rec, vlen);
				free(rec);
			}
		}
		xmppd_jid_free(j);
	}
	if (xmppd_batch_submit(b, record_done, r) < 0)
		record_done(XMPPD_STORE_ERROR, r);
}

/* ---------------------------------------------------------------- */
/* disco on a node (XEP-0060 5.3, 5.4, 5.5)                           */

static void
disco_items_allowed(struct ps_req *r)
{
	struct ps_node *n = r->n;
	xmppd_elem *q = xmppd_elem_new(NS_DISCO_ITEMS, "query"), *it;

	xmppd_elem_set_attr(q, "node", n->name);
	for (size_t i = n->nitems; i-- > 0;) {
		it = xmppd_elem_add_child(q, NS_DISCO_ITEMS, "item");
		xmppd_elem_set_attr(it, "jid", n->service);
		xmppd_elem_set_attr(it, "name", n->items[i].id);
	}
	ps_reply(r, q);
}

static void
op_disco(struct ps_req *r)
{
	struct ps_node *n = r->n;
	xmppd_elem *q, *id;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);
		return;
	}
	if (r->disco == 2) {
		check_access(r, disco_items_allowed, 1);
		return;
	}
	q = xmppd_elem_new(NS_DISCO_INFO, "query");
	xmppd_elem_set_attr(q, "node", n->name);
	id = xmppd_elem_add_child(q, NS_DISCO_INFO, "identity");
	xmppd_elem_set_attr(id, "category", "pubsub");
	xmppd_elem_set_attr(id, "type", "leaf");
	xmppd_elem_set_attr(xmppd_elem_add_child(q, NS_DISCO_INFO, "feature"), "var", NS_PUBSUB);
	ps_meta_form(n, q);
	ps_reply(r, q);
}

static void
sendlast_allowed(struct ps_req *r)
{
	send_last_item(r->n, xmppd_jid_full(r->actor_full));
	ps_reply(r, NULL);
}

/* ---------------------------------------------------------------- */
/* Dispatch                                                           */

/* The action: <create> when there is one (its <configure> is its form),
 * else the first child that is not an options form or an RSM set; a lone
 * <options> is the action (6.3). */
static xmppd_elem *
action_of(xmppd_elem *p)
{
	xmppd_elem *c, *opts = NULL;

	if ((c = xmppd_elem_child(p, NS_PUBSUB, "create")) != NULL)
		return c;
	for (c = xmppd_elem_first_child(p); c != NULL; c = xmppd_elem_next_sibling(c)) {
		if (is(xmppd_elem_name(c), "options")) {
			opts = c;
			continue;
		}
		if (!is(xmppd_elem_name(c), "publish-options") && !is(xmppd_elem_name(c), "set"))
			return c;
	}
	return opts;
}

static void
dispatch(struct ps_req *r)
{
	xmppd_elem *a;
	const char *name, *ns;
	int owner;

	if (r->disco) {
		op_disco(r);
		return;
	}
	if (r->authorize) {
		op_authorize(r);
		return;
	}
	if (r->sendlast) {
		/* XEP-0163 4.3.2: a contact's resource became available with
		 * NODE+notify: the last item, if the contact may see it. */
		if (!r->n->exists || r->n->cfg.send_last == PS_LAST_NEVER)
			ps_reply(r, NULL);
		else
			check_access(r, sendlast_allowed, 1);
		return;
	}
	ns = xmppd_elem_ns(r->payload);
	owner = is(ns, NS_PUBSUB_OWNER);
	a = action_of(r->payload);
	name = a != NULL ? xmppd_elem_name(a) : "";
	if (!owner) {
		if (is(name, "create") && r->set)
			op_create(r, a);
		else if (is(name, "publish") && r->set)
			op_publish(r, a);
		else if (is(name, "retract") && r->set)
			op_retract(r, a);
		else if (is(name, "subscribe") && r->set)
			op_subscribe(r, a);
		else if (is(name, "unsubscribe") && r->set)
			op_unsubscribe(r, a);
		else if (is(name, "items") && !r->set)
			op_items(r, a);
		else if (is(name, "subscriptions") && !r->set)
			op_subscriptions(r, a, 0);
		else if (is(name, "affiliations") && !r->set)
			op_affiliations(r, a, 0);
		else if (is(name, "options"))
			ps_error(r, "feature-not-implemented", "unsupported",
			    "subscription-options");
		else
			ps_error(r, "bad-request", NULL, NULL);
		return;
	}
	if (is(name, "configure"))
		op_configure(r, a);
	else if (is(name, "delete") && r->set)
		op_delete(r, a, 0);
	else if (is(name, "purge") && r->set)
		op_delete(r, a, 1);
	else if (is(name, "affiliations"))
		op_affiliations(r, a, 1);
	else if (is(name, "subscriptions"))
		op_subscriptions(r, a, 1);
	else
		ps_error(r, "bad-request", NULL, NULL);
}
