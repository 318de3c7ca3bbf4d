/*
 * mod_pubsub - XEP-0060 Publish-Subscribe: the service front end on
 * pubsub.DOMAIN, the provider of xmppd_pubsub_request (ABI 1.5) and
 * `xmppctl pubsub`. The nodes themselves are the engine's
 * (pubsub_engine.c; pubsub.h has the design).
 *
 * A stanza to the service arrives on the worker its domain hashes to;
 * everything that names a node is handed to the node's worker (its key:
 * "SERVICE/NODE") and answered from there. What names no node is
 * answered here: disco#info of the service, disco#items of the service
 * and the user's subscriptions and affiliations across nodes (XEP-0060
 * 5.6, 5.7), which read the store's node directory (table
 * mod_pubsub_nodes, one row per node, by service) rather than any shared
 * memory, and <default/> (8.3).
 *
 * Publish shaping (a flood from one user): a token bucket per user, per
 * worker, of publish_rate per second with room for publish_burst. The
 * service's publishes all arrive on one worker, so a user's bucket is
 * one; a publish past it gets publish_excess (resource-constraint, type
 * wait, by default; or policy-violation). Others' buckets are untouched.
 */
#define _GNU_SOURCE             /* asprintf */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmppd.h>

#include "pubsub.h"
#include "service_domains.h"
#include "strfmt.h"

#define CTL_USAGE "pubsub nodes SERVICE|USER@HOST | pubsub items SERVICE|USER@HOST NODE | " \
	"pubsub delete SERVICE|USER@HOST NODE"
#define CTL_WAIT_S 10
#define SHAPER_SLOTS 1024

static const struct xmppd_option options[] = {
	/* The server hosts that get a service (the module ABI has no list
	 * of the hosts): each gets host_prefix + host. */
	{ "hosts", XMPPD_OPT_STRING_LIST, NULL, 0, 0 },
	{ "host_prefix", XMPPD_OPT_STRING, "pubsub.", 0, 0 },
	/* The disco#info identity's name. */
	{ "name", XMPPD_OPT_STRING, "Publish-Subscribe", 0, 0 },
	/* Who may create nodes: "local" (users of this server's hosts) or
	 * an access rule of the configuration. */
	{ "access_create", XMPPD_OPT_STRING, "local", 0, 0 },
	/* The largest item, serialized, in bytes (ejabberd's
	 * max_payload_size is 250000). */
	{ "max_item_size", XMPPD_OPT_INT, "250000", 64, 16777216 },
	/* The cap of pubsub#max_items (also what "max" means). */
	{ "max_items_per_node", XMPPD_OPT_INT, "1000", 1, 1000000 },
	{ "default_max_items", XMPPD_OPT_INT, "100", 0, 1000000 },
	/* 0: no limit. */
	{ "max_nodes_per_user", XMPPD_OPT_INT, "100", 0, 10000000 },
	{ "max_nodes", XMPPD_OPT_INT, "10000", 0, 100000000 },
	/* PEP nodes of one account, made by create or by the first publish
	 * (auto-create); max_nodes and max_nodes_per_user are the service's. */
	{ "max_pep_nodes", XMPPD_OPT_INT, "100", 0, 10000000 },
	{ "max_subscriptions_per_node", XMPPD_OPT_INT, "10000", 0, 10000000 },
	/* Of one bare JID (its full JIDs) on one node, 0: no limit. */
	{ "max_subscriptions_per_jid", XMPPD_OPT_INT, "16", 0, 10000000 },
	/* Affiliations of one node (the owner's 8.9.2 set), 0: no limit. */
	{ "max_affiliations_per_node", XMPPD_OPT_INT, "1000", 0, 10000000 },
	/* Payload bytes of one <items/> answer (at least one item is given):
	 * past them the answer is truncated with an RSM <set/>. */
	{ "max_items_page_bytes", XMPPD_OPT_INT, "1048576", 0, 1073741824 },
	{ "max_queued_requests", XMPPD_OPT_INT, "1000", 0, 10000000 },
	/* Publishes per second per user, and the burst allowed. */
	{ "publish_rate", XMPPD_OPT_INT, "10", 1, 100000 },
	{ "publish_burst", XMPPD_OPT_INT, "50", 1, 1000000 },
	{ "publish_excess", XMPPD_OPT_STRING, "resource-constraint", 0, 0 },
	/* Seconds a node unused stays in memory (it is read again from the
	 * store when next asked for). */
	{ "node_idle_timeout", XMPPD_OPT_INT, "600", 1, 86400 },
	{ NULL, 0, NULL, 0, 0 },
};

struct ps_mod ps_module;

static int
is(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static const char *
our_service(const char *domain)
{
	for (size_t i = 0; i < ps_module.nservices; i++)
		if (is(ps_module.services[i], domain))
			return ps_module.services[i];
	return NULL;
}

int
ps_may_create(struct ps_mod *m, const xmppd_jid *actor)
{
	if (is(m->access_create, "local"))
		return xmppd_jid_node(actor) != NULL && xmppd_is_local_host(xmppd_jid_domain(actor));
	return xmppd_access_check(m->access_create, actor, NULL);
}

/* ---------------------------------------------------------------- */
/* The publish shaper: per worker, per user.                          */

struct bucket {
	uint64_t h;
	double tokens;
	uint64_t at;
};

static struct bucket *buckets;  /* SHAPER_SLOTS per worker */

uint64_t
ps_hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h | 1;
}

/* 1 when the user may publish now (and a token is taken). */
static int
shaper_take(const xmppd_jid *actor)
{
	int w = xmppd_worker_id();
	uint64_t h, now = xmppd_now_ms();
	struct bucket *b, *slot = NULL;
	double cap = (double)ps_module.shaper_burst;

	if (actor == NULL || w < 0 || (unsigned)w >= ps_module.nworkers)
		return 1;
	h = ps_hash_str(xmppd_jid_bare(actor));
	/* Four slots per user: its own, or one whose bucket has refilled
	 * (an idle user's), or the first. */
	for (int i = 0; i < 4; i++) {
		b = &buckets[(size_t)w * SHAPER_SLOTS + (h + (uint64_t)i) % SHAPER_SLOTS];
		if (b->h == h) {
			slot = b;
			break;
		}
		if (slot == NULL && (b->h == 0 || b->tokens + (double)(now - b->at) *
		    (double)ps_module.shaper_rate / 1000.0 >= cap))
			slot = b;
	}
	if (slot == NULL)
		slot = &buckets[(size_t)w * SHAPER_SLOTS + h % SHAPER_SLOTS];
	if (slot->h != h) {
		slot->h = h;
		slot->tokens = cap;
		slot->at = now;
	}
	slot->tokens += (double)(now - slot->at) * (double)ps_module.shaper_rate / 1000.0;
	if (slot->tokens > cap)
		slot->tokens = cap;
	slot->at = now;
	if (slot->tokens < 1.0)
		return 0;
	slot->tokens -= 1.0;
	return 1;
}

/* ---------------------------------------------------------------- */
/* Requests that name no node.                                        */

void
ps_service_features(xmppd_elem *q)
{
	static const char *const feats[] = {
		NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PUBSUB, NS_RSM,
		NS_PUBSUB "#access-authorize", NS_PUBSUB "#access-open",
		NS_PUBSUB "#access-presence", NS_PUBSUB "#access-roster",
		NS_PUBSUB "#access-whitelist", NS_PUBSUB "#config-node",
		NS_PUBSUB "#create-and-configure", NS_PUBSUB "#create-nodes",
		NS_PUBSUB "#delete-items", NS_PUBSUB "#delete-nodes",
		NS_PUBSUB "#instant-nodes", NS_PUBSUB "#item-ids",
		NS_PUBSUB "#last-published", NS_PUBSUB "#manage-subscriptions",
		NS_PUBSUB "#member-affiliation", NS_PUBSUB "#meta-data",
		NS_PUBSUB "#modify-affiliations", NS_PUBSUB "#outcast-affiliation",
		NS_PUBSUB "#persistent-items", NS_PUBSUB "#publish",
		NS_PUBSUB "#publish-options", NS_PUBSUB "#publisher-affiliation",
		NS_PUBSUB "#purge-nodes", NS_PUBSUB "#retract-items",
		NS_PUBSUB "#retrieve-affiliations", NS_PUBSUB "#retrieve-default",
		NS_PUBSUB "#retrieve-default-sub",
		NS_PUBSUB "#retrieve-items", NS_PUBSUB "#retrieve-subscriptions",
		NS_PUBSUB "#subscribe", NS_PUBSUB "#subscription-notifications",
		NS_PUBSUB "#subscription-options",
	};

	for (size_t i = 0; i < sizeof(feats) / sizeof(feats[0]); i++)
		xmppd_elem_set_attr(xmppd_elem_add_child(q, NS_DISCO_INFO, "feature"), "var",
		    feats[i]);
}

struct scan {
	struct ps_req *r;
	xmppd_elem *res, *list;
	size_t plen;
	int bad;
};

static struct scan *
scan_new(struct ps_req *r, xmppd_elem *res, xmppd_elem *list)
{
	struct scan *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		xmppd_elem_unref(res);
		ps_error(r, "internal-server-error", NULL, NULL);
		return NULL;
	}
	s->r = r;
	s->res = res;
	s->list = list;
	return s;
}

static void
scan_done(int status, void *ud)
{
	struct scan *s = ud;
	struct ps_req *r = s->r;
	xmppd_elem *res = s->res;

	free(s);
	if (status != XMPPD_STORE_OK) {
		xmppd_elem_unref(res);
		ps_error(r, "internal-server-error", NULL, NULL);
	} else {
		ps_reply(r, res);
	}
}

/* The node name in a key (service NUL node NUL ...), or NULL. */
static const char *
key_node(const void *key, size_t klen, size_t plen)
{
	const char *k = key;

	if (klen <= plen || memchr(k + plen, '\0', klen - plen) == NULL)
		return NULL;
	return k + plen;
}

/* XEP-0060 5.2: the service's nodes (a flat service). */
static int
disco_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct scan *s = ud;
	const char *node = key_node(key, klen, s->plen);
	xmppd_elem *it;

	(void)val;
	(void)vlen;
	if (node == NULL)
		return 0;
	it = xmppd_elem_add_child(s->list, NS_DISCO_ITEMS, "item");
	xmppd_elem_set_attr(it, "jid", s->r->service);
	xmppd_elem_set_attr(it, "node", node);
	return 0;
}

/* XEP-0060 5.6: the actor's subscriptions on the service. */
static int
subs_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct scan *s = ud;
	const char *node = key_node(key, klen, s->plen), *jid;
	struct ps_sub sub;
	xmppd_jid *j;
	xmppd_elem *e;

	if (node == NULL || s->r->actor == NULL)
		return 0;
	jid = node + strlen(node) + 1;
	if ((size_t)(jid - (const char *)key) >= klen || (j = xmppd_jid_parse(jid)) == NULL)
		return 0;
	if (strcmp(xmppd_jid_bare(j), xmppd_jid_bare(s->r->actor)) == 0 &&
	    ps_sub_parse(&sub, jid, val, vlen) == 0) {
		e = xmppd_elem_add_child(s->list, NS_PUBSUB, "subscription");
		xmppd_elem_set_attr(e, "node", node);
		xmppd_elem_set_attr(e, "jid", jid);
		xmppd_elem_set_attr(e, "subscription", ps_sub_name(sub.state));
		xmppd_elem_set_attr(e, "subid", sub.subid);
		free(sub.jid);
	}
	xmppd_jid_free(j);
	return 0;
}

/* XEP-0060 5.7: the actor's affiliations on the service. */
static int
affs_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct scan *s = ud;
	const char *node = key_node(key, klen, s->plen);
	struct ps_node n;
	xmppd_elem *e;

	if (node == NULL || s->r->actor == NULL)
		return 0;
	memset(&n, 0, sizeof(n));
	if (ps_node_parse(&ps_module, &n, val, vlen) == 0)
		for (size_t i = 0; i < n.naffs; i++)
			if (strcmp(n.affs[i].jid, xmppd_jid_bare(s->r->actor)) == 0) {
				e = xmppd_elem_add_child(s->list, NS_PUBSUB, "affiliation");
				xmppd_elem_set_attr(e, "node", node);
				xmppd_elem_set_attr(e, "affiliation", ps_aff_name(n.affs[i].aff));
			}
	for (size_t i = 0; i < n.naffs; i++)
		free(n.affs[i].jid);
	free(n.affs);
	free(n.creator);
	ps_config_free(&n.cfg);
	return 0;
}

/* what: 'd' disco#items, 's' subscriptions, 'a' affiliations. */
static void
service_scan(struct ps_req *r, int what)
{
	xmppd_elem *res, *list;
	char pfx[PS_KEY_MAX];
	struct scan *s;
	xmppd_scan_fn row;

	if (what == 'd') {
		res = list = xmppd_elem_new(NS_DISCO_ITEMS, "query");
		row = disco_row;
	} else {
		res = xmppd_elem_new(NS_PUBSUB, "pubsub");
		list = xmppd_elem_add_child(res, NS_PUBSUB, what == 's' ? "subscriptions" :
		    "affiliations");
		row = what == 's' ? subs_row : affs_row;
	}
	if ((s = scan_new(r, res, list)) == NULL)
		return;
	s->plen = ps_key_service(pfx, r->service);
	if (xmppd_store_ascan(ps_module.ctx, ps_table(r->service, what == 's' ? T_SUBS : T_NODES),
	    pfx, s->plen, row, scan_done, s) < 0)
		scan_done(XMPPD_STORE_ERROR, s);
}

/* ---------------------------------------------------------------- */
/* One request: from an IQ or a module.                               */

/* An answer before any node is involved: a request made for it alone. */
static void
fail_new(const xmppd_elem *iq, xmppd_pubsub_fn done, void *done_ud, const char *cond,
    const char *app)
{
	struct ps_req *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		if (done != NULL)
			done("internal-server-error", NULL, done_ud);
		else
			xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	r->iq = iq != NULL ? xmppd_elem_ref((xmppd_elem *)iq) : NULL;
	r->done = done;
	r->done_ud = done_ud;
	ps_error(r, cond, app, NULL);
}

static void
start(struct ps_req *r)
{
	if (ps_submit(r) < 0)
		ps_error(r, "internal-server-error", NULL, NULL);
}

/* A <pubsub/> or <pubsub#owner/> request for service. */
void
ps_handle_pubsub(const xmppd_jid *actor, const char *service, int set, const xmppd_elem *payload,
    const xmppd_elem *iq, xmppd_pubsub_fn done, void *done_ud)
{
	const char *ns = xmppd_elem_ns(payload), *name, *node;
	xmppd_elem *a = NULL, *c;
	int owner = is(ns, NS_PUBSUB_OWNER);
	char instant[32];
	struct ps_req *r;
	int what = 0;

	if (!owner && !is(ns, NS_PUBSUB)) {
		fail_new(iq, done, done_ud, "service-unavailable", NULL);
		return;
	}
	if ((a = xmppd_elem_child(payload, NS_PUBSUB, "create")) == NULL)
		for (c = xmppd_elem_first_child(payload); c != NULL;
		    c = xmppd_elem_next_sibling(c))
			if (!is(xmppd_elem_name(c), "publish-options") &&
			    !is(xmppd_elem_name(c), "set") && !is(xmppd_elem_name(c), "options")) {
				a = c;
				break;
			}
	if (a == NULL)
		a = xmppd_elem_child(payload, ns, "options");
	if (a == NULL) {
		fail_new(iq, done, done_ud, "bad-request", NULL);
		return;
	}
	name = xmppd_elem_name(a);
	node = xmppd_elem_attr(a, "node");
	if (node != NULL && *node == '\0')
		node = NULL;
	if (owner && is(name, "default")) {
		/* 8.3: the default configuration. */
		struct ps_config cfg;
		xmppd_elem *res = xmppd_elem_new(NS_PUBSUB_OWNER, "pubsub"), *d;

		ps_config_default(&ps_module, &cfg, ps_is_pep(service) ? PS_PEP : PS_SERVICE);
		d = xmppd_elem_add_child(res, NS_PUBSUB_OWNER, "default");
		ps_config_form(&cfg, d, NS_PUBSUB "#node_config", "form");
		if ((r = ps_req_new(&ps_module, actor, service, NULL, set, NULL)) == NULL) {
			xmppd_elem_unref(res);
			fail_new(iq, done, done_ud, "internal-server-error", NULL);
			return;
		}
		r->iq = iq != NULL ? xmppd_elem_ref((xmppd_elem *)iq) : NULL;
		r->done = done;
		r->done_ud = done_ud;
		ps_reply(r, res);
		return;
	}
	if (!owner && is(name, "default") && node == NULL && !set) {
		/* XEP-0060 6.4.1: <default/> without a node, the service's
		 * default subscription options (a result form, 6.4.2). */
		xmppd_elem *res = xmppd_elem_new(NS_PUBSUB, "pubsub");

		ps_subopts_form(NULL, xmppd_elem_add_child(res, NS_PUBSUB, "default"), "result");
		if ((r = ps_req_new(&ps_module, actor, service, NULL, set, NULL)) == NULL) {
			xmppd_elem_unref(res);
			fail_new(iq, done, done_ud, "internal-server-error", NULL);
			return;
		}
		r->iq = iq != NULL ? xmppd_elem_ref((xmppd_elem *)iq) : NULL;
		r->done = done;
		r->done_ud = done_ud;
		ps_reply(r, res);
		return;
	}
	if (!owner && is(name, "create") && node == NULL && set) {
		/* 8.1.2: an instant node, named by the service. */
		ps_random_id(instant);
		node = instant;
	}
	if (node == NULL && !owner && !set && (is(name, "subscriptions") ||
	    is(name, "affiliations")))
		what = is(name, "subscriptions") ? 's' : 'a';
	if (node == NULL && what == 0) {
		/* 7.1.3.?, 6.5.9.?: a request that needs a node. */
		fail_new(iq, done, done_ud, "bad-request", "nodeid-required");
		return;
	}
	if (node != NULL && strlen(node) > PS_NODE_NAME_MAX) {
		fail_new(iq, done, done_ud, "not-acceptable", NULL);
		return;
	}
	if (!owner && is(name, "publish") && set && !shaper_take(actor)) {
		fail_new(iq, done, done_ud, ps_module.shaper_error, NULL);
		return;
	}
	if ((r = ps_req_new(&ps_module, actor, service, node, set, payload)) == NULL) {
		fail_new(iq, done, done_ud, "internal-server-error", NULL);
		return;
	}
	r->iq = iq != NULL ? xmppd_elem_ref((xmppd_elem *)iq) : NULL;
	r->done = done;
	r->done_ud = done_ud;
	if (what != 0)
		service_scan(r, what);
	else
		start(r);
}

/* ---------------------------------------------------------------- */
/* The service domain.                                                */

static void
disco(xmppd_elem *iq, const xmppd_jid *from, const char *service, xmppd_elem *q, int items)
{
	const char *node = xmppd_elem_attr(q, "node");
	struct ps_req *r;
	xmppd_elem *res, *id;

	if (node == NULL && !items) {
		res = xmppd_elem_new(NS_DISCO_INFO, "query");
		id = xmppd_elem_add_child(res, NS_DISCO_INFO, "identity");
		xmppd_elem_set_attr(id, "category", "pubsub");
		xmppd_elem_set_attr(id, "type", "service");
		xmppd_elem_set_attr(id, "name", ps_module.name);
		ps_service_features(res);
		xmppd_iq_reply(iq, res);
		return;
	}
	if (node != NULL && strlen(node) > PS_NODE_NAME_MAX) {
		xmppd_iq_error(iq, "item-not-found", NULL);
		return;
	}
	if ((r = ps_req_new(&ps_module, from, service, node, 0, q)) == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	r->iq = xmppd_elem_ref(iq);
	r->disco = items ? 2 : 1;
	if (node == NULL)
		service_scan(r, 'd');
	else
		start(r);
}

/* 8.6.2: an owner's answer to a subscription request. */
static void
authorization(xmppd_elem *msg, const xmppd_jid *from, const char *service)
{
	xmppd_elem *x = xmppd_elem_child(msg, NS_XDATA, "x");
	const char *node;
	struct ps_req *r;

	if (x == NULL || !is(xmppd_elem_attr(x, "type"), "submit") ||
	    !is(ps_form_type(x), NS_PUBSUB "#subscribe_authorization"))
		return;
	node = ps_form_value(x, "pubsub#node");
	if (node == NULL || *node == '\0' || strlen(node) > PS_NODE_NAME_MAX)
		return;
	if ((r = ps_req_new(&ps_module, from, service, node, 1, x)) == NULL)
		return;
	r->iq = xmppd_elem_ref(msg);
	r->authorize = 1;
	start(r);
}

static void
service_stanza(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	const char *kind = xmppd_stanza_kind(st), *type = xmppd_stanza_type(st);
	const char *service = our_service(xmppd_jid_domain(to));
	xmppd_elem *q;

	(void)ud;
	if (service == NULL || from == NULL)
		return;
	if (is(kind, "message")) {
		if (!is(type, "error") && xmppd_jid_node(to) == NULL)
			authorization(st, from, service);
		return;
	}
	if (!is(kind, "iq") || !(is(type, "get") || is(type, "set")))
		return;
	/* Only the service's own JID is an entity here. */
	if (xmppd_jid_node(to) != NULL || xmppd_jid_resource(to) != NULL ||
	    (q = xmppd_elem_first_child(st)) == NULL) {
		xmppd_iq_error(st, "service-unavailable", NULL);
		return;
	}
	if (is(xmppd_elem_ns(q), NS_DISCO_INFO) && is(type, "get"))
		disco(st, from, service, q, 0);
	else if (is(xmppd_elem_ns(q), NS_DISCO_ITEMS) && is(type, "get"))
		disco(st, from, service, q, 1);
	else if (is(xmppd_elem_name(q), "pubsub") && (is(xmppd_elem_ns(q), NS_PUBSUB) ||
	    is(xmppd_elem_ns(q), NS_PUBSUB_OWNER)))
		ps_handle_pubsub(from, service, is(type, "set"), q, st, NULL, NULL);
	else
		xmppd_iq_error(st, "service-unavailable", NULL);
}

/* ---------------------------------------------------------------- */
/* The ABI provider (xmppd_pubsub_request).                           */

static void
provider(const xmppd_jid *actor, const xmppd_jid *service, int set, const xmppd_elem *request,
    xmppd_pubsub_fn done, void *done_ud)
{
	const char *s = service != NULL ? our_service(xmppd_jid_bare(service)) : NULL;

	/* PEP: a local account's bare JID. */
	if (s == NULL && service != NULL && xmppd_jid_node(service) != NULL &&
	    xmppd_is_local_host(xmppd_jid_domain(service)))
		s = xmppd_jid_bare(service);
	if (s == NULL || request == NULL || !is(xmppd_elem_name(request), "pubsub")) {
		done("service-unavailable", NULL, done_ud);
		return;
	}
	ps_handle_pubsub(actor, s, set, request, NULL, done, done_ud);
}

/* ---------------------------------------------------------------- */
/* xmppctl pubsub (the main thread).                                  */

struct listing {
	FILE *out;
	size_t plen;
	int items;
};

static int
list_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct listing *l = ud;
	const char *node, *pub, *id, *xml;
	size_t xlen;

	if (!l->items) {
		if ((node = key_node(key, klen, l->plen)) != NULL)
			fprintf(l->out, "%s\n", node);
	} else if (ps_item_parse(val, vlen, &pub, &id, &xml, &xlen) == 0) {
		fprintf(l->out, "%s\t%s\t%zu\n", id, *pub ? pub : "-", xlen);
	}
	return 0;
}

/* Reads with the synchronous store (allowed on the main thread, where
 * the asynchronous one does not answer): one read transaction. */
static int
ctl_list(const char *service, const char *node, char **out_r)
{
	struct listing l = { NULL, 0, node != NULL };
	char pfx[PS_KEY_MAX], *text = NULL;
	size_t len = 0;
	xmppd_txn *t;
	int rc;

	l.plen = node != NULL ? ps_key_node(pfx, service, node) :
	    ps_key_service(pfx, service);
	if (l.plen == 0 || (t = xmppd_store_begin(0)) == NULL) {
		*out_r = strfmt("cannot read the store");
		return -1;
	}
	if ((l.out = open_memstream(&text, &len)) == NULL) {
		xmppd_store_abort(t);
		*out_r = strfmt("no memory");
		return -1;
	}
	rc = xmppd_store_scan(t, ps_table(service, node != NULL ? T_ITEMS : T_NODES), pfx, l.plen,
	    list_row, &l);
	xmppd_store_abort(t);
	fclose(l.out);
	if (rc < 0) {
		free(text);
		*out_r = strfmt("cannot read the store");
		return -1;
	}
	*out_r = text;
	return 0;
}

/* A delete waited for: the node's worker runs it through the engine. */
struct ctl_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int finished, refs;
	char *cond;
};

static void
ctl_release(struct ctl_wait *w)
{
	int last;

	pthread_mutex_lock(&w->mu);
	last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (last) {
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		free(w->cond);
		free(w);
	}
}

static void
ctl_done(const char *condition, const xmppd_elem *result, void *ud)
{
	struct ctl_wait *w = ud;

	(void)result;
	pthread_mutex_lock(&w->mu);
	w->cond = condition != NULL ? strdup(condition) : NULL;
	w->finished = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	ctl_release(w);
}

static int
ctl_delete(const char *service, const char *node, char **out_r)
{
	xmppd_elem *p = xmppd_elem_new(NS_PUBSUB_OWNER, "pubsub");
	struct ctl_wait *w = calloc(1, sizeof(*w));
	pthread_condattr_t ca;
	struct timespec ts;
	struct ps_req *r;
	int rc = -1;

	xmppd_elem_set_attr(xmppd_elem_add_child(p, NS_PUBSUB_OWNER, "delete"), "node", node);
	r = w != NULL ? ps_req_new(&ps_module, NULL, service, node, 1, p) : NULL;
	xmppd_elem_unref(p);
	if (r == NULL) {
		free(w);
		*out_r = strfmt("no memory");
		return -1;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	w->refs = 2;
	r->done = ctl_done;
	r->done_ud = w;
	if (ps_submit(r) < 0) {
		r->done = NULL;
		ps_req_free(r);
		w->refs = 1;
		ctl_release(w);
		*out_r = strfmt("the module is unloading");
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += CTL_WAIT_S;
	pthread_mutex_lock(&w->mu);
	while (!w->finished)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
			break;
	if (!w->finished)
		*out_r = strfmt("no answer within %d s", CTL_WAIT_S);
	else if (w->cond != NULL)
		*out_r = strfmt("%s", is(w->cond, "item-not-found") ? "no such node" : w->cond);
	else
		rc = 0, *out_r = strfmt("deleted %s on %s\n", node, service);
	pthread_mutex_unlock(&w->mu);
	ctl_release(w);
	return rc;
}

static int
pubsub_ctl(int argc, char **argv, char **out_r, void *ud)
{
	(void)ud;
	*out_r = NULL;
	/* A service domain, or an account's bare JID (its PEP nodes). */
	if (argc >= 3 && our_service(argv[2]) == NULL && !(ps_is_pep(argv[2]) &&
	    xmppd_is_local_host(strchr(argv[2], '@') + 1))) {
		*out_r = strfmt("%s is not a pubsub service here", argv[2]);
		return -1;
	}
	if (argc == 3 && is(argv[1], "nodes"))
		return ctl_list(argv[2], NULL, out_r);
	if (argc == 4 && is(argv[1], "items"))
		return ctl_list(argv[2], argv[3], out_r);
	if (argc == 4 && is(argv[1], "delete"))
		return ctl_delete(argv[2], argv[3], out_r);
	*out_r = strfmt("usage: %s", CTL_USAGE);
	return -1;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static uint64_t
sweep(void *ud)
{
	uint64_t idle = (uint64_t)xmppd_opt_int(ps_module.ctx, "node_idle_timeout") * 1000;

	(void)ud;
	ps_engine_sweep(&ps_module, idle);
	return idle / 4 > 1000 ? idle / 4 : 1000;
}

static void
free_services(void)
{
	service_domains_free(ps_module.services, ps_module.nservices);
	ps_module.services = NULL;
	ps_module.nservices = 0;
}

static void
unload(xmppd_ctx *ctx)
{
	(void)ctx;
	ps_engine_free(&ps_module);
	ps_pep_free();
	free(buckets);
	buckets = NULL;
	free_services();
}

static int
load(xmppd_ctx *ctx)
{
	const char *prefix = xmppd_opt_string(ctx, "host_prefix");

	memset(&ps_module, 0, sizeof(ps_module));
	ps_module.ctx = ctx;
	ps_module.name = xmppd_opt_string(ctx, "name");
	ps_module.access_create = xmppd_opt_string(ctx, "access_create");
	ps_module.max_item_size = xmppd_opt_int(ctx, "max_item_size");
	ps_module.max_items_per_node = xmppd_opt_int(ctx, "max_items_per_node");
	ps_module.default_max_items = xmppd_opt_int(ctx, "default_max_items");
	ps_module.max_nodes_per_user = xmppd_opt_int(ctx, "max_nodes_per_user");
	ps_module.max_nodes = xmppd_opt_int(ctx, "max_nodes");
	ps_module.max_pep_nodes = xmppd_opt_int(ctx, "max_pep_nodes");
	ps_module.max_subscriptions_per_node = xmppd_opt_int(ctx, "max_subscriptions_per_node");
	ps_module.max_subscriptions_per_jid = xmppd_opt_int(ctx, "max_subscriptions_per_jid");
	ps_module.max_affiliations_per_node = xmppd_opt_int(ctx, "max_affiliations_per_node");
	ps_module.max_items_page_bytes = xmppd_opt_int(ctx, "max_items_page_bytes");
	ps_module.max_queued_requests = xmppd_opt_int(ctx, "max_queued_requests");
	ps_module.shaper_rate = xmppd_opt_int(ctx, "publish_rate");
	ps_module.shaper_burst = xmppd_opt_int(ctx, "publish_burst");
	ps_module.shaper_error = xmppd_opt_string(ctx, "publish_excess");
	if (ps_module.default_max_items > ps_module.max_items_per_node) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "default_max_items is above max_items_per_node");
		return -1;
	}
	if (!is(ps_module.shaper_error, "resource-constraint") &&
	    !is(ps_module.shaper_error, "policy-violation")) {
		xmppd_log(ctx, XMPPD_LOG_ERROR,
		    "publish_excess must be resource-constraint or policy-violation");
		return -1;
	}
	/* Without the option, every host the configuration serves. */
	if (service_domains(ctx, prefix, &ps_module.services, &ps_module.nservices) < 0)
		return -1;
	if (ps_engine_init(&ps_module) < 0 ||
	    (buckets = calloc((size_t)ps_module.nworkers * SHAPER_SLOTS, sizeof(*buckets))) == NULL)
		goto err;
	for (size_t i = 0; i < ps_module.nservices; i++)
		if (xmppd_service_register(ctx, ps_module.services[i], service_stanza, NULL) < 0)
			goto err;
	if (ps_pep_load(ctx) < 0 || xmppd_pubsub_provide(ctx, provider) < 0 ||
	    xmppd_timer_add_every_worker(ctx, (uint64_t)xmppd_opt_int(ctx, "node_idle_timeout") *
	    250, sweep, NULL) < 0 ||
	    xmppd_ctl_register(ctx, "pubsub", CTL_USAGE, pubsub_ctl, NULL) < 0)
		goto err;
	xmppd_set_data(ctx, &ps_module);
	return 0;
err:
	unload(ctx);
	return -1;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.6: the hosts to serve */
	.name = "mod_pubsub",
	.version = "1.0",
	.options = options,
	.load = load,
	.unload = unload,
};
