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
	free(r->drop_jid);
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

void
ps_node_clear(struct ps_node *n)
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
	n->naffs = n->nsubs = n->subs_cap = n->nitems = n->items_cap = 0;
	n->last_len = 0;
	n->exists = 0;
}

static void
node_free(struct ps_node *n)
{
	ps_node_clear(n);
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

/* A forgotten node: what it held is gone from the store (the account's
 * rows were removed), so it holds nothing either (no subscribers, no last
 * item); the requests queued behind find no node, and it is freed when
 * they are done (drain). */
static void
forget_node(struct ps_node *n)
{
	ps_node_clear(n);
	ps_config_default(engine_mod, &n->cfg, n->kind);
	n->forgotten = 0;
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
			if (strcmp(n->service, service) == 0 && !n->busy && n->qhead == NULL &&
			    n->state == PS_READY) {
				*pp = n->hnext;
				node_free(n);
			} else {
				/* Running, queued or loading: cleared when its
				 * current request ends (drain), then freed. */
				if (strcmp(n->service, service) == 0)
					n->forgotten = 1;
				pp = &n->hnext;
			}
		}
}

/* Nodes stay in memory while used; the store has them all, so one idle
 * for a while goes (its last payload with it) and memory follows the
 * nodes in use, not every node ever touched. */
void
ps_engine_sweep(struct ps_mod *m, uint64_t idle_ms)
{
	struct ps_table *t = my_table(m);
	uint64_t now = xmppd_now_ms();
	struct ps_node *n, **pp;

	if (t == NULL)
		return;
	for (size_t b = 0; b < NBUCKETS; b++)
		for (pp = &t->b[b]; (n = *pp) != NULL;) {
			if (!n->busy && n->qhead == NULL && n->state == PS_READY &&
			    now - n->used_ms >= idle_ms) {
				*pp = n->hnext;
				node_free(n);
			} else {
				pp = &n->hnext;
			}
		}
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

int
ps_items_push(struct ps_node *n, uint64_t seq, const char *id)
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
	if (ps_items_push(n, ps_key_seq(key, klen), id) < 0 || set_last(n, xml, xlen) < 0) {
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
	struct ps_sub s;
	char pfx[PS_KEY_MAX];
	size_t plen = ps_key_node(pfx, n->service, n->name);

	if (klen < plen + 2 || k[klen - 1] != '\0')
		return 0;
	jid = k + plen;
	if (ps_sub_parse(&s, jid, val, vlen) < 0)
		return 0;
	if (ps_sub_room(n) < 0) {
		free(s.jid);
		n->load_status = -1;
		return 1;
	}
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
	if (xmppd_store_ascan(m->ctx, ps_table(n->service, T_SUBS), pfx, plen, load_sub_row,
	    load_subs_done, n) < 0)
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
	n->used_ms = xmppd_now_ms();
	/* Bounded: a client that pipelines requests to a node whose head
	 * request waits (the store, a roster) does not grow the queue
	 * without end. Past max_queued_requests, resource-constraint (type
	 * wait, RFC 6120 8.3.3.18: retry later) at once. */
	if (r->m->max_queued_requests > 0 && n->nqueued >= (size_t)r->m->max_queued_requests) {
		ps_error(r, "resource-constraint", NULL, NULL);
		return;
	}
	n->nqueued++;
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
		if (n->forgotten) {
			forget_node(n);
			continue;
		}
		n->qhead = r->next;
		if (n->qhead == NULL)
			n->qtail = NULL;
		n->nqueued--;
		r->next = NULL;
		n->busy = 1;
		r->n = n;
		if (n->load_status < 0)
			ps_error(r, "internal-server-error", NULL, NULL);
		else
			ps_dispatch(r);
	}
	n->draining = 0;
	if (!n->busy && n->forgotten)
		forget_node(n);
	/* A node that does not exist (or failed to load) is not kept. */
	if (!n->busy && n->qhead == NULL && (!n->exists || n->load_status < 0)) {
		t = my_table(engine_mod);
		if (t != NULL)
			node_unlink(t, n);
		node_free(n);
	}
}

