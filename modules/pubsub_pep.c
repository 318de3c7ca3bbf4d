/*
 * pubsub_pep.c - mod_pubsub's PEP front end (XEP-0163): the engine on
 * every account's bare JID.
 */
#define _GNU_SOURCE             /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "pubsub.h"

static int
is(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* ---------------------------------------------------------------- */
/* PEP (XEP-0163): the same engine, on every account's bare JID.      */

/*
 * An IQ to an account's bare JID runs on the sender's worker; the
 * engine hands it to the account's (all of an account's nodes live by
 * its bare JID). Notifications go to the subscribers, the account's
 * available resources and, for nodes open or presence-only, the contacts
 * whose presence reaches the account, who may see the account's presence
 * (subscription from or both, checked when they come), and whose caps
 * ask for NODE+notify (4.3.1). Those contacts are tracked per account on
 * the account's worker from caps_presence (mod_caps): when one becomes
 * available it also gets the last item of each such node (4.3.2).
 */
#define PEP_CONTACTS_MAX 1000
#define PEP_BUCKETS 1024

struct pep_account {
	struct pep_account *next;
	char *bare;
	char **contacts;            /* full JIDs */
	size_t n, cap;
};

static struct pep_account **pep_tables;  /* PEP_BUCKETS per worker */

static struct pep_account **
pep_slot(const char *bare)
{
	int w = xmppd_worker_id();

	if (w < 0 || (unsigned)w >= ps_module.nworkers || pep_tables == NULL)
		return NULL;
	return &pep_tables[(size_t)w * PEP_BUCKETS + ps_hash_str(bare) % PEP_BUCKETS];
}

static struct pep_account *
pep_account(const char *bare, int make)
{
	struct pep_account **slot = pep_slot(bare), *a;

	if (slot == NULL)
		return NULL;
	for (a = *slot; a != NULL; a = a->next)
		if (strcmp(a->bare, bare) == 0)
			return a;
	if (!make || (a = calloc(1, sizeof(*a))) == NULL)
		return NULL;
	if ((a->bare = strdup(bare)) == NULL) {
		free(a);
		return NULL;
	}
	a->next = *slot;
	*slot = a;
	return a;
}

static void
pep_account_free(struct pep_account *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->contacts[i]);
	free(a->contacts);
	free(a->bare);
	free(a);
}

/* The node's subscribers, hashed once per notification, so that a
 * contact subscribed (by its full or bare JID) is not sent it twice, in
 * O(contacts + subscribers). */
struct subset {
	const char **slot;
	size_t mask;
};

static int
subset_make(struct subset *set, const struct ps_node *n)
{
	size_t size = 8;

	set->slot = NULL;
	set->mask = 0;
	if (n->nsubs == 0)
		return 0;
	while (size < n->nsubs * 2)
		size *= 2;
	if ((set->slot = calloc(size, sizeof(*set->slot))) == NULL)
		return -1;
	set->mask = size - 1;
	for (size_t i = 0; i < n->nsubs; i++) {
		size_t h = ps_hash_str(n->subs[i].jid) & set->mask;

		if (n->subs[i].state != PS_SUB_SUBSCRIBED)
			continue;
		while (set->slot[h] != NULL)
			h = (h + 1) & set->mask;
		set->slot[h] = n->subs[i].jid;
	}
	return 0;
}

static int
subset_has(const struct subset *set, const char *jid)
{
	if (set->slot == NULL)
		return 0;
	for (size_t h = ps_hash_str(jid) & set->mask; set->slot[h] != NULL;
	    h = (h + 1) & set->mask)
		if (strcmp(set->slot[h], jid) == 0)
			return 1;
	return 0;
}

void
ps_pep_notify(struct ps_mod *m, const struct ps_node *n, const xmppd_elem *msg)
{
	struct pep_account *a = pep_account(n->service, 0);
	char feature[PS_NODE_NAME_MAX + 16];
	struct subset set;
	xmppd_jid *j;

	(void)m;
	if (a == NULL || a->n == 0 || (n->cfg.access != PS_OPEN && n->cfg.access != PS_PRESENCE))
		return;
	if (subset_make(&set, n) < 0)
		return;
	snprintf(feature, sizeof(feature), "%s+notify", n->name);
	for (size_t i = 0; i < a->n; i++) {
		if (subset_has(&set, a->contacts[i]) ||
		    (j = xmppd_jid_parse(a->contacts[i])) == NULL)
			continue;
		if (!subset_has(&set, xmppd_jid_bare(j)) &&
		    xmppd_caps_has_feature(j, feature) == 1) {
			xmppd_elem *c = xmppd_elem_copy(msg);

			xmppd_elem_set_attr(c, "to", a->contacts[i]);
			xmppd_route(c);
			xmppd_elem_unref(c);
		}
		xmppd_jid_free(j);
	}
	free(set.slot);
}

struct pep_presence {
	xmppd_jid *account, *contact;
	int available;
};

static void
pep_presence_free(struct pep_presence *p)
{
	xmppd_jid_free(p->account);
	xmppd_jid_free(p->contact);
	free(p);
}

/* 4.3.2: the last item of each node the contact's caps ask for. */
static int
pep_last_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct pep_presence *p = ud;
	char pfx[PS_KEY_MAX], feature[PS_NODE_NAME_MAX + 16];
	size_t plen = ps_key_service(pfx, xmppd_jid_bare(p->account));
	const char *k = key, *node;
	struct ps_req *r;

	(void)val;
	(void)vlen;
	if (klen <= plen || memchr(k + plen, '\0', klen - plen) == NULL)
		return 0;
	node = k + plen;
	snprintf(feature, sizeof(feature), "%s+notify", node);
	if (xmppd_caps_has_feature(p->contact, feature) != 1)
		return 0;
	if ((r = ps_req_new(&ps_module, p->contact, xmppd_jid_bare(p->account), node, 0, NULL)) == NULL)
		return 0;
	r->sendlast = 1;
	if (ps_submit(r) < 0)
		ps_req_free(r);
	return 0;
}

static void
pep_last_done(int status, void *ud)
{
	(void)status;
	pep_presence_free(ud);
}

static void
pep_roster_answer(int sub, void *ud)
{
	struct pep_presence *p = ud;
	struct pep_account *a;
	char pfx[PS_KEY_MAX], **nc;
	const char *full = xmppd_jid_full(p->contact);
	size_t plen;

	/* The contact must be allowed the account's presence (from, both). */
	if (sub < 0 || !(sub & XMPPD_SUB_FROM) ||
	    (a = pep_account(xmppd_jid_bare(p->account), 1)) == NULL) {
		pep_presence_free(p);
		return;
	}
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->contacts[i], full) == 0)
			goto known;
	if (a->n < PEP_CONTACTS_MAX) {
		if (a->n == a->cap) {
			size_t cap = a->cap ? a->cap * 2 : 4;

			if ((nc = realloc(a->contacts, cap * sizeof(*nc))) == NULL)
				goto known;
			a->contacts = nc;
			a->cap = cap;
		}
		if ((a->contacts[a->n] = strdup(full)) != NULL)
			a->n++;
	}
known:
	plen = ps_key_service(pfx, xmppd_jid_bare(p->account));
	if (xmppd_store_ascan(ps_module.ctx, T_PEP_NODES, pfx, plen, pep_last_row, pep_last_done,
	    p) < 0)
		pep_presence_free(p);
}

/* On the account's worker. */
static void
pep_presence_run(void *ud)
{
	struct pep_presence *p = ud;
	struct pep_account *a = pep_account(xmppd_jid_bare(p->account), 0);
	const char *full = xmppd_jid_full(p->contact);

	if (p->available) {
		/* Known already: a presence update, not a new resource. */
		for (size_t i = 0; a != NULL && i < a->n; i++)
			if (strcmp(a->contacts[i], full) == 0) {
				pep_presence_free(p);
				return;
			}
	} else {
		for (size_t i = 0; a != NULL && i < a->n; i++)
			if (strcmp(a->contacts[i], full) == 0) {
				free(a->contacts[i]);
				a->contacts[i] = a->contacts[--a->n];
				break;
			}
		pep_presence_free(p);
		return;
	}
	if (xmppd_roster_subscription(ps_module.ctx, p->account, p->contact, pep_roster_answer, p) < 0)
		pep_presence_free(p);
}

static enum xmppd_result
pep_caps_presence(void *args, void *ud)
{
	struct xmppd_caps_presence_args *a = args;
	struct pep_presence *p;

	(void)ud;
	/* A contact's resource, to a local account (its own resources get
	 * every notification anyway). */
	if (a->to == NULL || xmppd_jid_resource(a->from) == NULL ||
	    (p = calloc(1, sizeof(*p))) == NULL)
		return XMPPD_CONTINUE;
	p->account = xmppd_jid_parse(xmppd_jid_bare(a->to));
	p->contact = xmppd_jid_copy(a->from);
	p->available = a->available;
	if (p->account == NULL || p->contact == NULL ||
	    xmppd_entity_post(ps_module.ctx, xmppd_jid_bare(p->account), pep_presence_run, p) < 0)
		pep_presence_free(p);
	return XMPPD_CONTINUE;
}

/* A contact that may no longer see the account's presence: its
 * resources leave the account's list (on the account's worker). */
struct pep_drop {
	xmppd_jid *account;
	char *contact;              /* bare */
};

static void
pep_drop_run(void *ud)
{
	struct pep_drop *d = ud;
	struct pep_account *a = pep_account(xmppd_jid_bare(d->account), 0);
	size_t bl = strlen(d->contact);

	for (size_t i = 0; a != NULL && i < a->n;)
		if (strncmp(a->contacts[i], d->contact, bl) == 0 &&
		    (a->contacts[i][bl] == '\0' || a->contacts[i][bl] == '/')) {
			free(a->contacts[i]);
			a->contacts[i] = a->contacts[--a->n];
		} else {
			i++;
		}
	xmppd_jid_free(d->account);
	free(d->contact);
	free(d);
}

static void
pep_drop_post(const xmppd_jid *account, const xmppd_jid *contact)
{
	struct pep_drop *d;

	if (account == NULL || contact == NULL || (d = calloc(1, sizeof(*d))) == NULL)
		return;
	d->account = xmppd_jid_parse(xmppd_jid_bare(account));
	d->contact = strdup(xmppd_jid_bare(contact));
	if (d->account == NULL || d->contact == NULL ||
	    xmppd_entity_post(ps_module.ctx, xmppd_jid_bare(d->account), pep_drop_run, d) < 0) {
		xmppd_jid_free(d->account);
		free(d->contact);
		free(d);
	}
}

/* XEP-0163 4.3.1: presence-based notifications go to contacts allowed
 * the account's presence. The account revoking it (RFC 6121 3.2:
 * unsubscribed to the contact) or the contact cancelling it (3.3:
 * unsubscribe to the account) ends them. Before mod_roster (50), which
 * takes the stanza. */
static enum xmppd_result
pep_out_subscription(void *args, void *ud)
{
	struct xmppd_packet_args *a = args;

	(void)ud;
	if (is(xmppd_elem_attr(a->stanza, "type"), "unsubscribed"))
		pep_drop_post(a->from, a->to);
	return XMPPD_CONTINUE;
}

static enum xmppd_result
pep_in_subscription(void *args, void *ud)
{
	struct xmppd_packet_args *a = args;

	(void)ud;
	if (is(xmppd_elem_attr(a->stanza, "type"), "unsubscribe"))
		pep_drop_post(a->to, a->from);
	return XMPPD_CONTINUE;
}

/* RFC 6121 2.5: removing the roster item cancels both subscriptions
 * (mod_roster sends unsubscribed itself, not through the hook above). */
static enum xmppd_result
pep_user_send(void *args, void *ud)
{
	struct xmppd_packet_args *a = args;
	xmppd_elem *q, *it;

	(void)ud;
	if (a->to != NULL || !is(xmppd_elem_name(a->stanza), "iq") ||
	    !is(xmppd_elem_attr(a->stanza, "type"), "set") ||
	    (q = xmppd_elem_child(a->stanza, "jabber:iq:roster", "query")) == NULL)
		return XMPPD_CONTINUE;
	for (it = xmppd_elem_first_child(q); it != NULL; it = xmppd_elem_next_sibling(it))
		if (is(xmppd_elem_name(it), "item") && is(xmppd_elem_attr(it, "subscription"), "remove")) {
			xmppd_jid *c = xmppd_jid_parse(xmppd_elem_attr(it, "jid") ?
			    xmppd_elem_attr(it, "jid") : "");

			pep_drop_post(a->from, c);
			xmppd_jid_free(c);
		}
	return XMPPD_CONTINUE;
}

/* ---------------------------------------------------------------- */
/* A removed account's rights elsewhere (ps_drop_account).            */

/* The tables scanned, in turn; the PEP ones key by (host, user). */
static const struct {
	const char *table;
	int pep, nodes;
} drop_tables[] = {
	{ T_SUBS, 0, 0 }, { T_NODES, 0, 1 }, { T_PEP_SUBS, 1, 0 }, { T_PEP_NODES, 1, 1 },
};

struct drop_scan {
	struct ps_mod *m;
	char *bare;
	size_t stage;
	char **svc, **node;         /* the nodes to visit, once each */
	size_t n, cap;
};

static void drop_next(struct drop_scan *d);

static void
drop_scan_free(struct drop_scan *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->svc[i]);
		free(d->node[i]);
	}
	free(d->svc);
	free(d->node);
	free(d->bare);
	free(d);
}

/* Splits a key of NUL-ended parts: their count (at most max). */
static size_t
key_parts(const char *k, size_t klen, const char **part, size_t max)
{
	size_t np = 0, i = 0;

	while (i < klen && np < max) {
		const char *z = memchr(k + i, '\0', klen - i);

		if (z == NULL)
			break;
		part[np++] = k + i;
		i = (size_t)(z - k) + 1;
	}
	return i == klen ? np : 0;
}

static int
drop_add(struct drop_scan *d, const char *svc, const char *node)
{
	char **ns, **nn;

	if (strcmp(svc, d->bare) == 0)
		return 0;               /* its own PEP rows go with the account */
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->svc[i], svc) == 0 && strcmp(d->node[i], node) == 0)
			return 0;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;

		if ((ns = realloc(d->svc, cap * sizeof(*ns))) == NULL)
			return 1;
		d->svc = ns;
		if ((nn = realloc(d->node, cap * sizeof(*nn))) == NULL)
			return 1;
		d->node = nn;
		d->cap = cap;
	}
	if ((d->svc[d->n] = strdup(svc)) == NULL)
		return 1;
	if ((d->node[d->n] = strdup(node)) == NULL) {
		free(d->svc[d->n]);
		return 1;
	}
	d->n++;
	return 0;
}

static int
drop_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct drop_scan *d = ud;
	int pep = drop_tables[d->stage].pep, nodes = drop_tables[d->stage].nodes;
	const char *p[4], *jid;
	char svc[PS_KEY_MAX];
	size_t want = (size_t)(pep ? 3 : 2) + (nodes ? 0 : 1);
	struct ps_node t;
	int hit = 0;

	if (key_parts(key, klen, p, 4) != want)
		return 0;
	if (pep)
		snprintf(svc, sizeof(svc), "%s@%s", p[1], p[0]);
	else
		snprintf(svc, sizeof(svc), "%s", p[0]);
	if (!nodes) {
		jid = p[want - 1];
		if (strncmp(jid, d->bare, strlen(d->bare)) == 0 &&
		    (jid[strlen(d->bare)] == '\0' || jid[strlen(d->bare)] == '/'))
			return drop_add(d, svc, p[want - 2]);
		return 0;
	}
	/* A node record: is the account affiliated? (its JID in the
	 * record first: most are not) */
	if (memmem(val, vlen, d->bare, strlen(d->bare)) == NULL)
		return 0;
	memset(&t, 0, sizeof(t));
	t.kind = pep ? PS_PEP : PS_SERVICE;
	if (ps_node_parse(d->m, &t, val, vlen) == 0)
		for (size_t i = 0; i < t.naffs; i++)
			hit |= strcmp(t.affs[i].jid, d->bare) == 0;
	ps_node_clear(&t);
	return hit ? drop_add(d, svc, p[want - 1]) : 0;
}

static void
drop_ignore(const char *cond, const xmppd_elem *payload, void *ud)
{
	(void)payload;
	if (cond != NULL)
		xmppd_log(ps_module.ctx, XMPPD_LOG_WARNING, "pubsub: a removed account's rights "
		    "on %s: %s", (const char *)ud, cond);
}

static void
drop_scanned(int status, void *ud)
{
	struct drop_scan *d = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(d->m->ctx, XMPPD_LOG_WARNING, "pubsub: scanning %s for %s failed",
		    drop_tables[d->stage].table, d->bare);
	d->stage++;
	drop_next(d);
}

static void
drop_next(struct drop_scan *d)
{
	struct ps_req *r;

	while (d->stage < sizeof(drop_tables) / sizeof(drop_tables[0])) {
		if (xmppd_store_ascan(d->m->ctx, drop_tables[d->stage].table, "", 0, drop_row,
		    drop_scanned, d) == 0)
			return;
		d->stage++;
	}
	/* Each node on its worker, as a request of the server. */
	for (size_t i = 0; i < d->n; i++) {
		if ((r = ps_req_new(d->m, NULL, d->svc[i], d->node[i], 1, NULL)) == NULL ||
		    (r->drop_jid = strdup(d->bare)) == NULL) {
			ps_req_free(r);
			continue;
		}
		r->done = drop_ignore;
		r->done_ud = (void *)"a node";
		if (ps_submit(r) < 0)
			ps_req_free(r);
	}
	drop_scan_free(d);
}

void
ps_drop_account(struct ps_mod *m, const char *bare)
{
	struct drop_scan *d = calloc(1, sizeof(*d));

	if (d == NULL || (d->bare = strdup(bare)) == NULL) {
		free(d);
		return;
	}
	d->m = m;
	drop_next(d);
}

static void
pep_forget_run(void *ud)
{
	struct pep_account **slot, *a;
	char *bare = ud;

	ps_forget_service(&ps_module, bare);
	ps_drop_account(&ps_module, bare);
	if ((slot = pep_slot(bare)) != NULL)
		for (; (a = *slot) != NULL; slot = &a->next)
			if (strcmp(a->bare, bare) == 0) {
				*slot = a->next;
				pep_account_free(a);
				break;
			}
	free(bare);
}

/* The account's rows go with it (user tables); its nodes in memory too. */
static enum xmppd_result
pep_remove_user(void *args, void *ud)
{
	struct xmppd_user_args *u = args;
	char *bare;

	(void)ud;
	if (asprintf(&bare, "%s@%s", u->node, u->host) < 0)
		return XMPPD_CONTINUE;
	if (xmppd_entity_post(ps_module.ctx, bare, pep_forget_run, bare) < 0)
		free(bare);
	return XMPPD_CONTINUE;
}

static enum xmppd_result
pep_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_elem *q = xmppd_elem_first_child(iq);

	(void)ud;
	if (from == NULL || !is(xmppd_elem_name(q), "pubsub"))
		return XMPPD_CONTINUE;
	ps_handle_pubsub(from, xmppd_jid_bare(to), is(xmppd_elem_attr(iq, "type"), "set"), q, iq,
	    NULL, NULL);
	return XMPPD_STOP;
}

/* XEP-0163 6.1: the account is a PEP service. */
static enum xmppd_result
pep_disco_info(void *args, void *ud)
{
	struct xmppd_disco_args *a = args;
	xmppd_elem *id;

	(void)ud;
	if (xmppd_jid_node(a->to) == NULL || (a->node != NULL && *a->node != '\0'))
		return XMPPD_CONTINUE;
	id = xmppd_elem_add_child(a->query, NS_DISCO_INFO, "identity");
	xmppd_elem_set_attr(id, "category", "pubsub");
	xmppd_elem_set_attr(id, "type", "pep");
	return XMPPD_CONTINUE;
}

void
ps_pep_free(void)
{
	if (pep_tables == NULL)
		return;
	for (size_t i = 0; i < (size_t)ps_module.nworkers * PEP_BUCKETS; i++)
		while (pep_tables[i] != NULL) {
			struct pep_account *a = pep_tables[i];

			pep_tables[i] = a->next;
			pep_account_free(a);
		}
	free(pep_tables);
	pep_tables = NULL;
}

int
ps_pep_load(xmppd_ctx *ctx)
{
	static const char *const feats[] = {
		NS_PUBSUB, NS_PUBSUB "#publish", NS_PUBSUB "#auto-create",
		NS_PUBSUB "#publish-options", NS_PUBSUB "#retrieve-items",
		NS_PUBSUB "#retract-items", NS_PUBSUB "#delete-items", NS_PUBSUB "#subscribe",
		NS_PUBSUB "#access-presence", NS_PUBSUB "#persistent-items",
		NS_PUBSUB "#last-published", NS_PUBSUB "#config-node", NS_PUBSUB "#create-nodes",
		NS_PUBSUB "#delete-nodes", NS_PUBSUB "#purge-nodes", NS_PUBSUB "#filtered-notifications",
		NS_PUBSUB "#subscription-options",
	};

	if ((pep_tables = calloc((size_t)ps_module.nworkers * PEP_BUCKETS, sizeof(*pep_tables))) == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(feats) / sizeof(feats[0]); i++)
		if (xmppd_disco_account_feature(ctx, feats[i]) < 0)
			return -1;
	if (xmppd_store_user_table(ctx, T_PEP_NODES) < 0 ||
	    xmppd_store_user_table(ctx, T_PEP_SUBS) < 0 ||
	    xmppd_store_user_table(ctx, T_PEP_ITEMS) < 0 ||
	    xmppd_iq_register(ctx, NULL, NS_PUBSUB, XMPPD_IQ_GET | XMPPD_IQ_SET, XMPPD_IQ_ACCOUNT,
	    pep_iq, NULL) < 0 ||
	    xmppd_iq_register(ctx, NULL, NS_PUBSUB_OWNER, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_ACCOUNT, pep_iq, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_CAPS_PRESENCE, NULL, 50, pep_caps_presence, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_REMOVE_USER, NULL, 50, pep_remove_user, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_ROSTER_OUT_SUBSCRIPTION, NULL, 40, pep_out_subscription,
	    NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_ROSTER_IN_SUBSCRIPTION, NULL, 40, pep_in_subscription,
	    NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_USER_SEND_PACKET, NULL, 50, pep_user_send, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_DISCO_INFO, NULL, 50, pep_disco_info, NULL) < 0)
		return -1;
	return 0;
}
