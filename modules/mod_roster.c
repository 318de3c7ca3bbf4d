/*
 * mod_roster - RFC 6121: the roster (2), presence subscriptions (3, with
 * pre-approval, 3.4), presence broadcast, probes and directed presence (4),
 * and XEP-0237 roster versioning.
 *
 * Storage (every record starts with a version byte):
 *  - mod_roster, key "host NUL node NUL contact NUL": one roster item (the
 *    subscription flags, the item's roster version, name, groups). A
 *    removed item stays as a tombstone so that an incremental roster get
 *    (XEP-0237) can announce the removal; when a user has more than
 *    max_items tombstones they are all dropped and clients older than that
 *    get the full roster. The key with an empty contact ("host NUL node
 *    NUL NUL") holds the user's roster version counter, a random epoch
 *    (so that a re-created account never matches a version cached for the
 *    old one) and the item and tombstone counts.
 *  - mod_roster_pending, same key: an inbound subscription request the
 *    user has not answered ("Pending In"), the stanza itself, delivered
 *    again at the user's next initial presence (RFC 6121 3.1.3). Pending In
 *    lives only here: it is not a roster item (RFC 6121 has no attribute
 *    for it), so a stranger's request does not grow the roster.
 *  - mod_roster_last, key "host NUL node NUL": the user's last unavailable
 *    presence, the answer to a probe when no resource is available (RFC
 *    6121 4.3.2).
 *
 * The store is used through the asynchronous API (ABI 1.2). Every change
 * to a roster item is one batch that reads the version counter, the item
 * and the pending request and writes the result (roster_change_*): a
 * roster set, a subscription state change on either side, xmppctl. Roster
 * IQs are answered from the completion callbacks (deferred replies), and
 * pushes go out once the change is durable. While that work is pending,
 * the stream that sent the stanza reads nothing more (RFC 6120 10.1), so a
 * client's next stanza sees the change.
 *
 * The module is five files (mod_roster.h says which does what): this one
 * loads it, sends the roster pushes and answers the roster IQ.
 *
 * Choices where the RFC leaves room (the presence ones are in
 * mod_roster_presence.c):
 *  - Roster items are bare JIDs; a set with a full JID is bad-request, a
 *    JID too long for a store key not-acceptable.
 *  - A roster at max_items refuses new items with resource-constraint.
 *  - An item's name and groups are replaced by a set; 'subscription'
 *    other than "remove", 'ask' and 'approved' in a set are ignored (RFC
 *    6121 2.1.2.1, 2.1.2.2, 2.1.2.5).
 *  - The version string is "EPOCH-COUNTER"; a version of another epoch,
 *    older than the tombstones kept, or not ours gets the full roster.
 *  - A store failure answers a roster get or set with
 *    internal-server-error (RFC 6120 8.3.3.6).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "mod_roster.h"

#define NS_ROSTERVER "urn:xmpp:features:rosterver"
#define NS_PREAPPROVAL "urn:xmpp:features:pre-approval"

static const struct xmppd_option options[] = {
	{ "max_items", XMPPD_OPT_INT, "1000", 1, 100000 },
	/* RFC 6121 2.3.3: server-configured limits (not-acceptable). */
	{ "max_name_length", XMPPD_OPT_INT, "1024", 1, 65535 },
	{ "max_group_length", XMPPD_OPT_INT, "1024", 1, 65535 },
	{ "max_groups", XMPPD_OPT_INT, "64", 1, 1000 },
	{ NULL, 0, NULL, 0, 0 },
};

/* Set at load, read-only afterwards. */
static struct roster state;

int
roster_on_main(const struct roster *r)
{
	return pthread_equal(pthread_self(), r->main_thread);
}

/* ---------------------------------------------------------------- */
/* Stanzas the module sends.                                          */

static void
ver_str(char *buf, size_t size, uint32_t epoch, uint64_t ver)
{
	snprintf(buf, size, "%08x-%llu", epoch, (unsigned long long)ver);
}

/* A version a client sent (XEP-0237 3): 1 and *ver_r if it is one of ours
 * for this epoch, 0 otherwise (the client then gets the full roster). */
static int
ver_parse(const char *s, uint32_t epoch, uint64_t *ver_r)
{
	char want[16];
	uint64_t v = 0;

	snprintf(want, sizeof(want), "%08x-", epoch);
	if (strncmp(s, want, 9) != 0 || s[9] == '\0')
		return 0;
	for (s += 9; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*ver_r = v;
	return 1;
}

/* RFC 6121 2.1.2: one <item/>; a tombstone is subscription='remove'. */
static void
item_xml(xmppd_elem *q, const char *contact, const struct item *it)
{
	static const char *const subs[] = { "none", "to", "from", "both" };
	xmppd_elem *e = xmppd_elem_add_child(q, NS_ROSTER, "item");
	int gone = it->flags & F_GONE;

	xmppd_elem_set_attr(e, "jid", contact);
	if (it->name != NULL && !gone)
		xmppd_elem_set_attr(e, "name", it->name);
	xmppd_elem_set_attr(e, "subscription", gone ? "remove" : subs[it->flags & 3]);
	if ((it->flags & F_ASK) && !gone)
		xmppd_elem_set_attr(e, "ask", "subscribe");
	if ((it->flags & F_APPROVED) && !gone)
		xmppd_elem_set_attr(e, "approved", "true");
	for (size_t i = 0; i < it->ngroups && !gone; i++)
		xmppd_elem_add_text(xmppd_elem_add_child(e, NS_ROSTER, "group"), it->groups[i],
		    strlen(it->groups[i]));
}

/* RFC 6121 2.1.6: a roster push, an IQ set from the user's bare JID. */
static xmppd_elem *
push_new(const xmppd_jid *user, const char *contact, const struct item *it, uint32_t epoch)
{
	static uint64_t seq;
	xmppd_elem *iq = xmppd_elem_new(NULL, "iq"), *q;
	char buf[48];

	snprintf(buf, sizeof(buf), "roster-push-%llu",
	    (unsigned long long)__atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	xmppd_elem_set_attr(iq, "type", "set");
	xmppd_elem_set_attr(iq, "id", buf);
	xmppd_elem_set_attr(iq, "from", xmppd_jid_bare(user));
	q = xmppd_elem_add_child(iq, NS_ROSTER, "query");
	ver_str(buf, sizeof(buf), epoch, it->ver);
	xmppd_elem_set_attr(q, "ver", buf);
	item_xml(q, contact, it);
	return iq;
}

/* To every resource; the receive hook keeps it from the ones that never
 * asked for the roster ("interested resources", RFC 6121 2.2). */
void
roster_push(const xmppd_jid *user, const char *contact, const struct item *it, uint32_t epoch)
{
	xmppd_elem *iq = push_new(user, contact, it, epoch);

	(void)xmppd_send_to_resources(user, iq, 0);
	xmppd_elem_unref(iq);
}

/* ---------------------------------------------------------------- */
/* The roster IQ (RFC 6121 2).                                        */

struct change {
	char *contact;
	struct item it;
};

/* A get in flight: the IQ (a reference, for the deferred reply) and
 * what the scan of the user's records found. */
struct rget {
	xmppd_elem *iq;
	xmppd_jid *user, *from;
	char *ver;
	size_t plen;
	struct meta m;
	int have_meta, bad;
	struct change *v;
	size_t n, cap;
};

static int
get_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct rget *g = ud;
	struct item it;

	if (klen == g->plen + 1) {      /* the version counter: contact "" */
		roster_meta_decode(val, vlen, &g->m);
		g->have_meta = 1;
		return 0;
	}
	if (klen <= g->plen + 1 || roster_item_decode(val, vlen, &it) < 0)
		return 0;
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 16;
		struct change *n = realloc(g->v, cap * sizeof(*n));

		if (n == NULL) {
			roster_item_free(&it);
			g->bad = 1;
			return 1;
		}
		g->v = n;
		g->cap = cap;
	}
	if ((g->v[g->n].contact = strdup((const char *)key + g->plen)) == NULL) {
		roster_item_free(&it);
		g->bad = 1;
		return 1;
	}
	g->v[g->n++].it = it;
	return 0;
}

static int
change_cmp(const void *a, const void *b)
{
	const struct change *x = a, *y = b;

	return x->it.ver < y->it.ver ? -1 : x->it.ver > y->it.ver;
}

static void
rget_free(struct rget *g)
{
	for (size_t i = 0; i < g->n; i++) {
		free(g->v[i].contact);
		roster_item_free(&g->v[i].it);
	}
	free(g->v);
	free(g->ver);
	xmppd_jid_free(g->user);
	xmppd_jid_free(g->from);
	xmppd_elem_unref(g->iq);
	free(g);
}

/* RFC 6121 2.1.3, 2.6.3; XEP-0237 3, 4: the deferred reply. */
static void
get_done(int status, void *ud)
{
	struct rget *g = ud;
	struct xmppd_roster_args ra;
	uint64_t since = 0;
	xmppd_elem *q;
	char vs[48];
	int incremental = 0;

	if (status != XMPPD_STORE_OK || g->bad) {
		xmppd_iq_error(g->iq, "internal-server-error", NULL);
		rget_free(g);
		return;
	}
	if (!g->have_meta)
		roster_meta_decode(NULL, 0, &g->m);
	if (g->ver != NULL && ver_parse(g->ver, g->m.epoch, &since) && since >= g->m.floor &&
	    since <= g->m.ver)
		incremental = 1;
	if (!incremental) {
		q = xmppd_elem_new(NS_ROSTER, "query");
		ver_str(vs, sizeof(vs), g->m.epoch, g->m.ver);
		xmppd_elem_set_attr(q, "ver", vs);
		for (size_t i = 0; i < g->n; i++)
			if (!(g->v[i].it.flags & F_GONE))
				item_xml(q, g->v[i].contact, &g->v[i].it);
		ra.query = q;
		ra.user = g->user;
		(void)xmppd_hook_run(XMPPD_HOOK_ROSTER_GET, xmppd_jid_domain(g->user), &ra);
		xmppd_iq_reply(g->iq, q);
		rget_free(g);
		return;
	}
	/* XEP-0237 4: an empty result, then what changed since, in order,
	 * as pushes to the requesting resource. */
	xmppd_iq_reply(g->iq, NULL);
	if (g->n > 1)
		qsort(g->v, g->n, sizeof(*g->v), change_cmp);
	for (size_t i = 0; i < g->n; i++) {
		xmppd_elem *push_iq;

		if (g->v[i].it.ver <= since)
			continue;
		push_iq = push_new(g->user, g->v[i].contact, &g->v[i].it, g->m.epoch);
		xmppd_elem_set_attr(push_iq, "to", xmppd_jid_full(g->from));
		xmppd_route(push_iq);
		xmppd_elem_unref(push_iq);
	}
	rget_free(g);
}

/* One scan reads the version counter and every item (the counter's key
 * sorts first). */
static void
iq_get(struct roster *r, xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *user,
    const char *ver)
{
	char p[KEY_MAX];
	struct rget *g = calloc(1, sizeof(*g));

	if (g == NULL || (g->plen = roster_key(p, user, NULL)) == 0 ||
	    (g->user = xmppd_jid_copy(user)) == NULL || (g->from = xmppd_jid_copy(from)) == NULL ||
	    (ver != NULL && (g->ver = strdup(ver)) == NULL)) {
		if (g != NULL)
			rget_free(g);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	g->iq = xmppd_elem_ref(iq);
	if (xmppd_store_ascan(r->ctx, T_ROSTER, p, g->plen, get_row, get_done, g) < 0) {
		rget_free(g);
		xmppd_iq_error(iq, "internal-server-error", NULL);
	}
}

/* A set's change has completed: the deferred reply. */
static void
set_result(int rc, const char *cond, void *arg)
{
	xmppd_elem *iq = arg;

	if (rc == 0)
		xmppd_iq_reply(iq, NULL);
	else
		xmppd_iq_error(iq, cond, strcmp(cond, "resource-constraint") == 0 ?
		    "the roster is full" : NULL);
	xmppd_elem_unref(iq);
}

/* RFC 6121 2.3, 2.4, 2.5; the checks of 2.3.3. */
static void
iq_set(struct roster *r, xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *user)
{
	xmppd_elem *item = NULL, *c;
	const char *jid, *name, *sub;
	char *groups[1000], k[KEY_MAX];
	size_t ngroups = 0;
	xmppd_jid *contact = NULL;
	int n = 0, rc;

	for (c = xmppd_elem_first_child(q); c != NULL; c = xmppd_elem_next_sibling(c), n++)
		item = c;
	if (n != 1 || xmppd_elem_ns(item) == NULL || strcmp(xmppd_elem_ns(item), NS_ROSTER) != 0 ||
	    strcmp(xmppd_elem_name(item), "item") != 0) {
		xmppd_iq_error(iq, "bad-request", "a roster set carries exactly one item");
		return;
	}
	if ((jid = xmppd_elem_attr(item, "jid")) == NULL) {
		xmppd_iq_error(iq, "bad-request", "the item has no jid");
		return;
	}
	if ((contact = xmppd_jid_parse(jid)) == NULL) {
		xmppd_iq_error(iq, "jid-malformed", NULL);
		return;
	}
	if (xmppd_jid_resource(contact) != NULL) {
		xmppd_iq_error(iq, "bad-request", "roster items are bare JIDs");
		goto out;
	}
	if (roster_key(k, user, xmppd_jid_bare(contact)) == 0) {
		/* The store's key limit, not the protocol's. */
		xmppd_iq_error(iq, "not-acceptable", "JID too long to store");
		goto out;
	}
	/* 2.1.2.5: only "remove" means something in a set; ask and
	 * approved come from presence, never from a set (2.1.2.1, 2.1.2.2). */
	sub = xmppd_elem_attr(item, "subscription");
	if (sub != NULL && strcmp(sub, "remove") == 0) {
		if (roster_item_remove(r, user, xmppd_jid_bare(contact), set_result,
		    xmppd_elem_ref(iq)) < 0) {
			xmppd_elem_unref(iq);
			xmppd_iq_error(iq, "internal-server-error", NULL);
		}
		goto out;
	}
	name = xmppd_elem_attr(item, "name");
	if (name != NULL && strlen(name) > (size_t)r->max_name) {
		xmppd_iq_error(iq, "not-acceptable", "the name is too long");
		goto out;
	}
	for (c = xmppd_elem_first_child(item); c != NULL; c = xmppd_elem_next_sibling(c)) {
		const char *g;

		if (xmppd_elem_ns(c) == NULL || strcmp(xmppd_elem_ns(c), NS_ROSTER) != 0 ||
		    strcmp(xmppd_elem_name(c), "group") != 0)
			continue;
		g = xmppd_elem_text(c);
		if (*g == '\0' || strlen(g) > (size_t)r->max_group) {
			xmppd_iq_error(iq, "not-acceptable", *g == '\0' ? "an empty group" :
			    "a group name is too long");
			goto out;
		}
		for (size_t i = 0; i < ngroups; i++)
			if (strcmp(groups[i], g) == 0) {
				xmppd_iq_error(iq, "bad-request", "a group given twice");
				goto out;
			}
		if (ngroups >= (size_t)r->max_groups) {
			xmppd_iq_error(iq, "not-acceptable", "too many groups");
			goto out;
		}
		groups[ngroups++] = (char *)g;
	}
	rc = roster_item_update(r, user, xmppd_jid_bare(contact), name, groups, ngroups, 0, 0,
	    set_result, xmppd_elem_ref(iq));
	if (rc < 0) {
		xmppd_elem_unref(iq);
		xmppd_iq_error(iq, "internal-server-error", NULL);
	}
out:
	xmppd_jid_free(contact);
}

static enum xmppd_result
roster_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	struct roster *r = ud;
	xmppd_elem *q = xmppd_elem_first_child(iq);
	int set = strcmp(xmppd_stanza_type(iq), "set") == 0;
	xmppd_jid *user;

	/* RFC 6121 2.1.5, 2.3.3: only the account itself reads or changes
	 * its roster. */
	if (from == NULL || xmppd_jid_node(from) == NULL || xmppd_jid_node(to) == NULL ||
	    strcmp(xmppd_jid_bare(from), xmppd_jid_bare(to)) != 0) {
		xmppd_iq_error(iq, set ? "forbidden" : "service-unavailable", NULL);
		return XMPPD_STOP;
	}
	if (strcmp(xmppd_elem_name(q), "query") != 0) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return XMPPD_STOP;
	}
	if ((user = roster_bare(to)) == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return XMPPD_STOP;
	}
	if (set)
		iq_set(r, iq, q, user);
	else
		iq_get(r, iq, from, user, xmppd_elem_attr(q, "ver"));
	xmppd_jid_free(user);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static int
feature(xmppd_ctx *ctx, const char *ns, const char *name)
{
	xmppd_elem *f = xmppd_elem_new(ns, name);
	int rc = xmppd_stream_feature(ctx, f, 1);

	xmppd_elem_unref(f);
	return rc;
}

static int
load(xmppd_ctx *ctx)
{
	struct roster *r = &state;

	r->ctx = ctx;
	r->main_thread = pthread_self();
	r->max_items = xmppd_opt_int(ctx, "max_items");
	r->max_name = xmppd_opt_int(ctx, "max_name_length");
	r->max_group = xmppd_opt_int(ctx, "max_group_length");
	r->max_groups = xmppd_opt_int(ctx, "max_groups");
	if ((r->slot = xmppd_session_slot(ctx)) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "no session slot left");
		return -1;
	}
	if (xmppd_iq_register(ctx, NULL, NS_ROSTER, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_ACCOUNT, roster_iq, r) < 0 || roster_presence_load(r) < 0 ||
	    roster_ctl_load(r) < 0 || roster_query_load(r) < 0 ||
	    xmppd_store_user_table(ctx, T_ROSTER) < 0 || xmppd_store_user_table(ctx, T_PENDING) < 0 ||
	    xmppd_store_user_table(ctx, T_LAST) < 0 ||
	    /* RFC 6121 2.6.1 (XEP-0237) and 3.4.1. */
	    feature(ctx, NS_ROSTERVER, "ver") < 0 || feature(ctx, NS_PREAPPROVAL, "sub") < 0 ||
	    xmppd_disco_account_feature(ctx, NS_ROSTER) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot register handlers");
		return -1;
	}
	return 0;
}

/* Every registration is gone, the sessions' slots are freed and the
 * store work submitted has completed. */
static void
unload(xmppd_ctx *ctx)
{
	roster_ctl_unload();
	cache_free_all();
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.4: the roster query */
	.name = "mod_roster",
	.version = "1.0",
	.options = options,
	.load = load,
	.unload = unload,
};
