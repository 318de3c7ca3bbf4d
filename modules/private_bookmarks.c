/*
 * private_bookmarks.c - mod_private's half of XEP-0402 5.3: one list of
 * bookmarks whichever way a client keeps it.
 *
 * Three places hold a user's bookmarks:
 *  - the XEP-0048 <storage xmlns='storage:bookmarks'/> element in XEP-0049
 *    private storage (this module's table), what old clients use;
 *  - the same element as item "current" of the storage:bookmarks PEP node
 *    (XEP-0048 3.1, XEP-0223);
 *  - one item per room, its id the room's JID, in the urn:xmpp:bookmarks:1
 *    PEP node (XEP-0402 3), what current clients use.
 * A change to any of them is carried to the other two, through the pubsub
 * ABI (xmppd_pubsub_request, acting as the server, and the pubsub_event
 * hook), so the account advertises urn:xmpp:bookmarks:1#compat (private
 * storage in step) and #compat-pep (the storage:bookmarks node in step).
 *
 *   private set        -> storage:bookmarks item, urn:xmpp:bookmarks:1 diff
 *   storage:bookmarks  -> private element, urn:xmpp:bookmarks:1 diff
 *   bookmarks:1 event  -> the list rebuilt from its items, written to the
 *                         private element and the storage:bookmarks item
 *
 * The diff publishes the rooms that are new or changed and retracts the
 * ones that went (with notify, XEP-0402 3.3), so clients of the new kind
 * see one notification per room. What the server publishes has no
 * publisher in pubsub_event (NULL): those events are its own echo and
 * are not carried further, which ends the loop.
 *
 * XEP-0048 <url/> bookmarks have no XEP-0402 form (it dropped them): a
 * list rebuilt from urn:xmpp:bookmarks:1 keeps the <url/> elements the
 * private element had. Children of a XEP-0048 <conference/> other than
 * <nick/> and <password/> travel in XEP-0402's <extensions/> and back.
 *
 * Concurrent edits from two clients through two of the places are not
 * merged: the last change to reach a place wins there, as with one place.
 * A list is at most MAX_ROOMS rooms; beyond that the rest is not copied
 * (logged).
 */
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "mod_private.h"

#define NS_BM1 "storage:bookmarks"
#define NS_BM2 "urn:xmpp:bookmarks:1"
#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_DATA "jabber:x:data"
#define NS_PUBLISH_OPTIONS "http://jabber.org/protocol/pubsub#publish-options"
#define MAX_ROOMS 256

static int
is(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void
field(xmppd_elem *x, const char *var, const char *value, const char *type)
{
	xmppd_elem *f = xmppd_elem_add_child(x, NS_DATA, "field"), *v;

	xmppd_elem_set_attr(f, "var", var);
	if (type != NULL)
		xmppd_elem_set_attr(f, "type", type);
	v = xmppd_elem_add_child(f, NS_DATA, "value");
	xmppd_elem_add_text(v, value, strlen(value));
}

/*
 * <pubsub><publish node=NODE><item id=ID>payload</item></publish> with the
 * publish-options XEP-0402 3.2 and XEP-0223 2 ask for: the items persist,
 * only the owner reads them, and for bookmarks:1 every room is kept and
 * none is pushed as "last item" (clients fetch the list).
 */
static xmppd_elem *
publish_request(const char *node, const char *id, const xmppd_elem *payload)
{
	xmppd_elem *ps = xmppd_elem_new(NS_PUBSUB, "pubsub"), *p, *item, *x;

	p = xmppd_elem_add_child(ps, NS_PUBSUB, "publish");
	xmppd_elem_set_attr(p, "node", node);
	item = xmppd_elem_add_child(p, NS_PUBSUB, "item");
	xmppd_elem_set_attr(item, "id", id);
	xmppd_elem_append_copy(item, payload);
	p = xmppd_elem_add_child(ps, NS_PUBSUB, "publish-options");
	x = xmppd_elem_add_child(p, NS_DATA, "x");
	xmppd_elem_set_attr(x, "type", "submit");
	field(x, "FORM_TYPE", NS_PUBLISH_OPTIONS, "hidden");
	field(x, "pubsub#persist_items", "true", NULL);
	field(x, "pubsub#access_model", "whitelist", NULL);
	if (strcmp(node, NS_BM2) == 0) {
		field(x, "pubsub#max_items", "max", NULL);
		field(x, "pubsub#send_last_published_item", "never", NULL);
	}
	return ps;
}

/* What the server's own requests came to: only failures are news. */
static void
logged(const char *condition, const xmppd_elem *result, void *ud)
{
	(void)result;
	if (condition != NULL)
		xmppd_log(ud, strcmp(condition, "service-unavailable") == 0 ? XMPPD_LOG_DEBUG :
		    XMPPD_LOG_WARNING, "bookmarks: a pubsub request failed: %s",
		    condition);
}

static void
request(xmppd_ctx *ctx, const xmppd_jid *user, int set, xmppd_elem *req,
    xmppd_pubsub_fn fn, void *ud)
{
	if (xmppd_pubsub_request(ctx, NULL, user, set, req, fn, ud) < 0 && fn != logged)
		fn("internal-server-error", NULL, ud);
	xmppd_elem_unref(req);
}

/* ---------------------------------------------------------------- */
/* XEP-0048 <conference/> <-> XEP-0402 <conference/>.                */

static int
truthy(const char *v)
{
	return is(v, "true") || is(v, "1");
}

/* The XEP-0402 payload of one XEP-0048 conference (jid aside). */
static xmppd_elem *
to_bm2(xmppd_elem *old)
{
	xmppd_elem *c = xmppd_elem_new(NS_BM2, "conference"), *ch, *ext = NULL, *e;
	const char *name = xmppd_elem_attr(old, "name");

	if (name != NULL)
		xmppd_elem_set_attr(c, "name", name);
	if (truthy(xmppd_elem_attr(old, "autojoin")))
		xmppd_elem_set_attr(c, "autojoin", "true");
	for (ch = xmppd_elem_first_child(old); ch != NULL; ch = xmppd_elem_next_sibling(ch)) {
		const char *ns = xmppd_elem_ns(ch), *n = xmppd_elem_name(ch), *t;

		if (is(ns, NS_BM1) && (is(n, "nick") || is(n, "password"))) {
			t = xmppd_elem_text(ch);
			e = xmppd_elem_add_child(c, NS_BM2, n);
			xmppd_elem_add_text(e, t, strlen(t));
		} else {
			if (ext == NULL)
				ext = xmppd_elem_add_child(c, NS_BM2, "extensions");
			xmppd_elem_append_copy(ext, ch);
		}
	}
	return c;
}

/* The XEP-0048 conference for room jid with XEP-0402 payload bm2. */
static void
add_bm1(xmppd_elem *storage, const char *jid, xmppd_elem *bm2)
{
	xmppd_elem *c = xmppd_elem_add_child(storage, NS_BM1, "conference"), *ch, *e, *x;
	const char *name = xmppd_elem_attr(bm2, "name");

	xmppd_elem_set_attr(c, "jid", jid);
	if (name != NULL)
		xmppd_elem_set_attr(c, "name", name);
	xmppd_elem_set_attr(c, "autojoin",
	    truthy(xmppd_elem_attr(bm2, "autojoin")) ? "true" : "false");
	for (ch = xmppd_elem_first_child(bm2); ch != NULL; ch = xmppd_elem_next_sibling(ch)) {
		const char *n = xmppd_elem_name(ch), *t;

		if (!is(xmppd_elem_ns(ch), NS_BM2))
			continue;
		if (is(n, "nick") || is(n, "password")) {
			t = xmppd_elem_text(ch);
			e = xmppd_elem_add_child(c, NS_BM1, n);
			xmppd_elem_add_text(e, t, strlen(t));
		} else if (is(n, "extensions")) {
			for (x = xmppd_elem_first_child(ch); x != NULL; x = xmppd_elem_next_sibling(x))
				xmppd_elem_append_copy(c, x);
		}
	}
}

static int
same_elem(const xmppd_elem *a, const xmppd_elem *b)
{
	char *x = xmppd_elem_to_string(a, NULL), *y = xmppd_elem_to_string(b, NULL);
	int same = x != NULL && y != NULL && strcmp(x, y) == 0;

	free(x);
	free(y);
	return same;
}

/* ---------------------------------------------------------------- */
/* A XEP-0048 list into urn:xmpp:bookmarks:1: publish what is new or  */
/* changed, retract what went.                                        */

struct diff {
	xmppd_ctx *ctx;
	xmppd_jid *user;
	xmppd_elem *storage;        /* the XEP-0048 list (a copy) */
};

static void
diff_free(struct diff *d)
{
	xmppd_jid_free(d->user);
	xmppd_elem_unref(d->storage);
	free(d);
}

static const xmppd_elem *
find_item(const xmppd_elem *items, const char *id)
{
	xmppd_elem *i;

	for (i = xmppd_elem_first_child(items); i != NULL; i = xmppd_elem_next_sibling(i))
		if (is(xmppd_elem_name(i), "item") && is(xmppd_elem_attr(i, "id"), id))
			return i;
	return NULL;
}

static int
in_list(xmppd_elem *storage, const char *jid)
{
	xmppd_elem *c;

	for (c = xmppd_elem_first_child(storage); c != NULL; c = xmppd_elem_next_sibling(c))
		if (is(xmppd_elem_ns(c), NS_BM1) && is(xmppd_elem_name(c), "conference") &&
		    is(xmppd_elem_attr(c, "jid"), jid))
			return 1;
	return 0;
}

static void
retract(xmppd_ctx *ctx, const xmppd_jid *user, const char *id)
{
	xmppd_elem *ps = xmppd_elem_new(NS_PUBSUB, "pubsub"), *r, *item;

	r = xmppd_elem_add_child(ps, NS_PUBSUB, "retract");
	xmppd_elem_set_attr(r, "node", NS_BM2);
	xmppd_elem_set_attr(r, "notify", "true");
	item = xmppd_elem_add_child(r, NS_PUBSUB, "item");
	xmppd_elem_set_attr(item, "id", id);
	request(ctx, user, 1, ps, logged, ctx);
}

static void
diff_got(const char *condition, const xmppd_elem *result, void *ud)
{
	struct diff *d = ud;
	const xmppd_elem *items = NULL, *have;
	xmppd_elem *c, *i;
	int n = 0;

	/* No node yet (item-not-found) is an empty list. */
	if (condition != NULL && strcmp(condition, "item-not-found") != 0) {
		xmppd_log(d->ctx, XMPPD_LOG_WARNING, "bookmarks: %s: reading %s: %s",
		    xmppd_jid_bare(d->user), NS_BM2, condition);
		diff_free(d);
		return;
	}
	if (condition == NULL && result != NULL)
		items = xmppd_elem_child(result, NS_PUBSUB, "items");
	for (c = xmppd_elem_first_child(d->storage); c != NULL; c = xmppd_elem_next_sibling(c)) {
		const char *jid = xmppd_elem_attr(c, "jid");
		xmppd_elem *bm2;

		if (!is(xmppd_elem_ns(c), NS_BM1) || !is(xmppd_elem_name(c), "conference") ||
		    jid == NULL || *jid == '\0')
			continue;
		if (++n > MAX_ROOMS) {
			xmppd_log(d->ctx, XMPPD_LOG_WARNING,
			    "bookmarks: %s: more than %d rooms, the rest not copied",
			    xmppd_jid_bare(d->user), MAX_ROOMS);
			break;
		}
		bm2 = to_bm2(c);
		have = items != NULL ? find_item(items, jid) : NULL;
		if (have == NULL || xmppd_elem_first_child(have) == NULL ||
		    !same_elem(xmppd_elem_first_child(have), bm2))
			request(d->ctx, d->user, 1, publish_request(NS_BM2, jid, bm2), logged,
			    d->ctx);
		xmppd_elem_unref(bm2);
	}
	for (i = items != NULL ? xmppd_elem_first_child(items) : NULL; i != NULL;
	    i = xmppd_elem_next_sibling(i)) {
		const char *id = xmppd_elem_attr(i, "id");

		if (is(xmppd_elem_name(i), "item") && id != NULL && !in_list(d->storage, id))
			retract(d->ctx, d->user, id);
	}
	diff_free(d);
}

static void
to_bookmarks2(xmppd_ctx *ctx, const xmppd_jid *user, const xmppd_elem *storage)
{
	struct diff *d = calloc(1, sizeof(*d));
	xmppd_elem *ps, *items;

	if (d == NULL || (d->user = xmppd_jid_make(xmppd_jid_node(user),
	    xmppd_jid_domain(user), NULL)) == NULL) {
		free(d);
		return;
	}
	d->ctx = ctx;
	d->storage = xmppd_elem_copy(storage);
	ps = xmppd_elem_new(NS_PUBSUB, "pubsub");
	items = xmppd_elem_add_child(ps, NS_PUBSUB, "items");
	xmppd_elem_set_attr(items, "node", NS_BM2);
	request(ctx, d->user, 0, ps, diff_got, d);
}

/* ---------------------------------------------------------------- */
/* urn:xmpp:bookmarks:1 into the XEP-0048 list (private element and    */
/* storage:bookmarks item).                                           */

struct rebuild {
	xmppd_ctx *ctx;
	xmppd_jid *user;
	xmppd_elem *storage;        /* built from the items */
};

static void
rebuild_free(struct rebuild *r)
{
	xmppd_jid_free(r->user);
	xmppd_elem_unref(r->storage);
	free(r);
}

static void
rebuild_stored(int status, void *ud)
{
	struct rebuild *r = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(r->ctx, XMPPD_LOG_WARNING, "bookmarks: %s: private storage not updated",
		    xmppd_jid_bare(r->user));
	rebuild_free(r);
}

/* The private element as it was: its <url/> bookmarks are kept. */
static void
rebuild_old(int status, const void *val, size_t vlen, void *ud)
{
	struct rebuild *r = ud;
	xmppd_elem *old = status == XMPPD_STORE_OK ? xmppd_elem_parse(val, vlen) : NULL, *c;
	xmppd_batch *b;
	char key[512], *text;
	size_t klen, len;

	for (c = old != NULL ? xmppd_elem_first_child(old) : NULL; c != NULL;
	    c = xmppd_elem_next_sibling(c))
		if (is(xmppd_elem_ns(c), NS_BM1) && is(xmppd_elem_name(c), "url"))
			xmppd_elem_append_copy(r->storage, c);
	xmppd_elem_unref(old);
	/* The storage:bookmarks node first, then the private element. */
	request(r->ctx, r->user, 1, publish_request(NS_BM1, "current", r->storage), logged,
	    r->ctx);
	klen = private_key(key, sizeof(key), r->user, r->storage);
	text = xmppd_elem_to_string(r->storage, &len);
	if (klen == 0 || text == NULL || len > private_max_size(r->ctx) ||
	    (b = xmppd_batch_new(r->ctx)) == NULL) {
		free(text);
		xmppd_log(r->ctx, XMPPD_LOG_WARNING, "bookmarks: %s: list not kept in private "
		    "storage", xmppd_jid_bare(r->user));
		rebuild_free(r);
		return;
	}
	(void)xmppd_batch_put(b, PRIVATE_TABLE, key, klen, text, len);
	free(text);
	if (xmppd_batch_submit(b, rebuild_stored, r) < 0)
		rebuild_free(r);
}

static void
rebuild_got(const char *condition, const xmppd_elem *result, void *ud)
{
	struct rebuild *r = ud;
	const xmppd_elem *items;
	xmppd_elem *i;
	char key[512];
	size_t klen;
	int n = 0;

	if (condition != NULL && strcmp(condition, "item-not-found") != 0) {
		rebuild_free(r);
		return;
	}
	items = condition == NULL && result != NULL ?
	    xmppd_elem_child(result, NS_PUBSUB, "items") : NULL;
	for (i = items != NULL ? xmppd_elem_first_child(items) : NULL; i != NULL && n < MAX_ROOMS;
	    i = xmppd_elem_next_sibling(i)) {
		xmppd_elem *bm2 = xmppd_elem_child(i, NS_BM2, "conference");
		const char *id = xmppd_elem_attr(i, "id");

		if (is(xmppd_elem_name(i), "item") && id != NULL && bm2 != NULL) {
			add_bm1(r->storage, id, bm2);
			n++;
		}
	}
	klen = private_key(key, sizeof(key), r->user, r->storage);
	if (klen == 0 || xmppd_store_aget(r->ctx, PRIVATE_TABLE, key, klen, rebuild_old, r) < 0)
		rebuild_free(r);
}

static void
from_bookmarks2(xmppd_ctx *ctx, const xmppd_jid *user)
{
	struct rebuild *r = calloc(1, sizeof(*r));
	xmppd_elem *ps, *items;

	if (r == NULL || (r->user = xmppd_jid_copy(user)) == NULL) {
		free(r);
		return;
	}
	r->ctx = ctx;
	r->storage = xmppd_elem_new(NS_BM1, "storage");
	ps = xmppd_elem_new(NS_PUBSUB, "pubsub");
	items = xmppd_elem_add_child(ps, NS_PUBSUB, "items");
	xmppd_elem_set_attr(items, "node", NS_BM2);
	request(ctx, r->user, 0, ps, rebuild_got, r);
}

/* ---------------------------------------------------------------- */
/* The storage:bookmarks item into the private element.               */

struct keep {
	xmppd_ctx *ctx;
	char *who;
};

static void
kept(int status, void *ud)
{
	struct keep *k = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(k->ctx, XMPPD_LOG_WARNING, "bookmarks: %s: private storage not updated",
		    k->who);
	free(k->who);
	free(k);
}

static void
keep_private(xmppd_ctx *ctx, const xmppd_jid *user, const xmppd_elem *storage)
{
	char key[512], *text;
	size_t klen = private_key(key, sizeof(key), user, storage), len;
	struct keep *k;
	xmppd_batch *b;

	text = xmppd_elem_to_string(storage, &len);
	if (klen == 0 || text == NULL || len > private_max_size(ctx) ||
	    (k = calloc(1, sizeof(*k))) == NULL) {
		free(text);
		return;
	}
	k->ctx = ctx;
	if ((k->who = strdup(xmppd_jid_bare(user))) == NULL || (b = xmppd_batch_new(ctx)) == NULL) {
		free(k->who);
		free(k);
		free(text);
		return;
	}
	(void)xmppd_batch_put(b, PRIVATE_TABLE, key, klen, text, len);
	free(text);
	if (xmppd_batch_submit(b, kept, k) < 0) {
		free(k->who);
		free(k);
	}
}

/* ---------------------------------------------------------------- */
/* The entry points.                                                  */

void
bookmarks_private_set(xmppd_ctx *ctx, const xmppd_jid *user, const xmppd_elem *storage)
{
	request(ctx, user, 1, publish_request(NS_BM1, "current", storage), logged, ctx);
	to_bookmarks2(ctx, user, storage);
}

static enum xmppd_result
on_event(void *args, void *ud)
{
	struct xmppd_pubsub_event_args *a = args;
	xmppd_elem *storage;

	/* The server's own publishes are the echo of a change already
	 * carried; PEP nodes only (an account's bare JID), and only the
	 * account's own changes: another entity given a publisher
	 * affiliation on the node (XEP-0060 8.9) must not rewrite the
	 * account's private storage (XEP-0049). */
	if (a->publisher == NULL || a->service == NULL || xmppd_jid_node(a->service) == NULL ||
	    a->node == NULL ||
	    strcmp(xmppd_jid_bare(a->publisher), xmppd_jid_bare(a->service)) != 0)
		return XMPPD_CONTINUE;
	if (strcmp(a->node, NS_BM2) == 0) {
		from_bookmarks2(ud, a->service);
	} else if (strcmp(a->node, NS_BM1) == 0 && a->kind == XMPPD_PUBSUB_PUBLISHED &&
	    a->item != NULL &&
	    (storage = xmppd_elem_child(a->item, NS_BM1, "storage")) != NULL) {
		keep_private(ud, a->service, storage);
		to_bookmarks2(ud, a->service, storage);
	}
	return XMPPD_CONTINUE;
}

int
bookmarks_load(xmppd_ctx *ctx)
{
	if (!xmppd_opt_bool(ctx, "bookmarks_sync"))
		return 0;
	if (xmppd_hook_add(ctx, XMPPD_HOOK_PUBSUB_EVENT, NULL, 50, on_event, ctx) < 0 ||
	    xmppd_disco_account_feature(ctx, NS_BM2 "#compat") < 0 ||
	    xmppd_disco_account_feature(ctx, NS_BM2 "#compat-pep") < 0)
		return -1;
	return 0;
}
