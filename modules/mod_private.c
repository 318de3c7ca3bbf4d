/*
 * mod_private - XEP-0049: Private XML Storage.
 *
 * A user stores elements with <query xmlns='jabber:iq:private'/> sets to
 * their own account and reads them back with gets naming the element
 * wanted; nobody else may do either (XEP-0049 2.3, 4).
 *
 * Table mod_private: host NUL node NUL namespace NUL name NUL -> the
 * element as XML. Each element is at most max_size bytes, and an account
 * holds at most max_items of them.
 *
 * The store is used through the asynchronous API (ABI 1.2): a set is one
 * batch and a get one read per element; the IQ is answered from their
 * callbacks (a deferred reply). The reference conversion for other modules
 * (doc/modules.md, "The store").
 *
 * Results are built by parsing the stored text into the reply rather than
 * with xmppd_iq_reply, whose copy keeps either the text or the children of
 * an element but not both: private XML is the client's, and comes back as
 * it was stored, mixed content included.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "mod_private.h"

#define NS_PRIVATE "jabber:iq:private"
#define NS_BOOKMARKS "storage:bookmarks"
#define TABLE PRIVATE_TABLE
/* XEP-0049 2.3: a get names one namespace; a few elements are plenty. */
#define MAX_GET 16

static const struct xmppd_option options[] = {
	/* The largest element stored, serialized, in bytes. */
	{ "max_size", XMPPD_OPT_INT, "65536", 256, 16777216 },
	/* How many elements one account may keep. */
	{ "max_items", XMPPD_OPT_INT, "100", 1, 100000 },
	/* XEP-0402 5.3: XEP-0048 bookmarks kept in step with the
	 * urn:xmpp:bookmarks:1 and storage:bookmarks PEP nodes (mod_pubsub). */
	{ "bookmarks_sync", XMPPD_OPT_BOOL, "true", 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

static int
is(const char *a, const char *b)
{
	return a != NULL && strcmp(a, b) == 0;
}

/* XEP-0049 2.3: the stream namespaces and jabber:iq:private itself are
 * not storage namespaces (NULL is the stream's content namespace). */
static int
reserved(const char *ns)
{
	return ns == NULL || is(ns, "jabber:client") || is(ns, "jabber:server") ||
	    is(ns, NS_PRIVATE);
}

size_t
private_key(char *buf, size_t size, const xmppd_jid *user, const xmppd_elem *e)
{
	return xmppd_store_key(buf, size, xmppd_jid_domain(user), xmppd_jid_node(user),
	    xmppd_elem_ns(e), xmppd_elem_name(e), (const char *)NULL);
}
#define elem_key private_key

size_t
private_max_size(xmppd_ctx *ctx)
{
	return (size_t)xmppd_opt_int(ctx, "max_size");
}

/* ---------------------------------------------------------------- */
/* Set: one batch, answered when it has completed.                    */

/* A set in flight: the IQ (a reference: the reply is deferred, from the
 * batch's done callback) and what its steps found. */
struct pset {
	xmppd_ctx *ctx;
	xmppd_elem *iq;
	xmppd_jid *user;
	long items;                 /* elements the account holds */
	long max_items;
	const char *cond, *why;     /* why a step failed the batch */
};

/* Step: every element the account holds (the scan comes first). */
static int
count_row(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
    void *ud)
{
	((struct pset *)ud)->items++;
	return 0;
}

/* Step, before each put: a new name must fit (XEP-0049 leaves the limit
 * to the server; resource-constraint, RFC 6120 8.3.3.18). It sees the
 * batch's earlier puts, so a name given twice counts once. */
static int
check_new(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	struct pset *ps = ud;

	if (status == XMPPD_STORE_OK)
		return 0;               /* replaces what is stored */
	if (ps->items >= ps->max_items) {
		ps->cond = "resource-constraint";
		ps->why = "too many stored elements";
		return -1;
	}
	ps->items++;
	return 0;
}

static void
set_done(int status, void *ud)
{
	struct pset *ps = ud;

	if (status == XMPPD_STORE_OK) {
		xmppd_elem *q = xmppd_elem_first_child(ps->iq), *c;

		xmppd_iq_reply(ps->iq, NULL);
		/* XEP-0402 5.3: the bookmarks go on to the PEP nodes. */
		for (c = xmppd_elem_first_child(q); c != NULL && xmppd_opt_bool(ps->ctx,
		    "bookmarks_sync"); c = xmppd_elem_next_sibling(c))
			if (is(xmppd_elem_ns(c), NS_BOOKMARKS) && is(xmppd_elem_name(c), "storage"))
				bookmarks_private_set(ps->ctx, ps->user, c);
	} else if (status == XMPPD_STORE_ABORTED && ps->cond != NULL)
		xmppd_iq_error(ps->iq, ps->cond, ps->why);
	else
		xmppd_iq_error(ps->iq, "internal-server-error", NULL);
	xmppd_elem_unref(ps->iq);
	xmppd_jid_free(ps->user);
	free(ps);
}

static void
private_set(xmppd_ctx *ctx, xmppd_elem *iq, xmppd_elem *query, const xmppd_jid *user)
{
	size_t max_size = (size_t)xmppd_opt_int(ctx, "max_size"), klen, plen, len;
	char key[512], prefix[512], *text;
	struct pset *ps;
	xmppd_batch *b;
	xmppd_elem *c;

	/* What can be refused without the store is, at once. */
	for (c = xmppd_elem_first_child(query); c != NULL; c = xmppd_elem_next_sibling(c)) {
		if (elem_key(key, sizeof(key), user, c) == 0) {
			xmppd_iq_error(iq, "not-acceptable", "the namespace and name are too long");
			return;
		}
		if ((text = xmppd_elem_to_string(c, &len)) == NULL) {
			xmppd_iq_error(iq, "internal-server-error", NULL);
			return;
		}
		free(text);
		if (len > max_size) {
			xmppd_iq_error(iq, "not-acceptable", "the element is too large");
			return;
		}
	}
	plen = xmppd_store_key(prefix, sizeof(prefix), xmppd_jid_domain(user),
	    xmppd_jid_node(user), (const char *)NULL);
	if (plen == 0 || (ps = calloc(1, sizeof(*ps))) == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	if ((b = xmppd_batch_new(ctx)) == NULL) {
		free(ps);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	ps->max_items = xmppd_opt_int(ctx, "max_items");
	ps->ctx = ctx;
	if ((ps->user = xmppd_jid_make(xmppd_jid_node(user), xmppd_jid_domain(user),
	    NULL)) == NULL) {
		xmppd_batch_free(b);
		free(ps);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	/* All or nothing: the count, then for each element a check and the
	 * put, in one batch; a step that refuses fails all of it. */
	(void)xmppd_batch_scan(b, TABLE, prefix, plen, count_row, ps);
	for (c = xmppd_elem_first_child(query); c != NULL; c = xmppd_elem_next_sibling(c)) {
		klen = elem_key(key, sizeof(key), user, c);
		if ((text = xmppd_elem_to_string(c, &len)) == NULL) {
			xmppd_batch_free(b);
			xmppd_jid_free(ps->user);
			free(ps);
			xmppd_iq_error(iq, "internal-server-error", NULL);
			return;
		}
		/* A failure here fails the batch when submitted (ERROR). */
		(void)xmppd_batch_get(b, TABLE, key, klen, check_new, ps);
		(void)xmppd_batch_put(b, TABLE, key, klen, text, len);
		free(text);
	}
	ps->iq = xmppd_elem_ref(iq);
	if (xmppd_batch_submit(b, set_done, ps) < 0) {
		xmppd_elem_unref(ps->iq);
		xmppd_jid_free(ps->user);
		free(ps);
		xmppd_iq_error(iq, "internal-server-error", NULL);
	}
}

/* ---------------------------------------------------------------- */
/* Get: one read per element asked for, answered when the last one   */
/* has completed (they complete in the order they were made).         */

struct pget {
	xmppd_elem *iq;             /* a reference: the deferred reply */
	FILE *out;                  /* the reply, as text */
	char *text;
	size_t len;
	int bad;
	unsigned left;              /* reads not completed yet */
};

struct pone {
	struct pget *pg;
	const xmppd_elem *want;     /* in pg->iq's tree, which pg keeps */
	int nokey;                  /* too long to be a key: never stored */
};

/* Writes the stored element, or an empty one (XEP-0049 2.3), to out. */
static int
write_one(FILE *out, int status, const void *val, size_t vlen, const xmppd_elem *want)
{
	xmppd_elem *empty;
	size_t len;
	char *text;

	if (status == XMPPD_STORE_OK)
		return fwrite(val, 1, vlen, out) == vlen ? 0 : -1;
	if (status != XMPPD_STORE_NOT_FOUND)
		return -1;
	empty = xmppd_elem_new(xmppd_elem_ns(want), xmppd_elem_name(want));
	text = xmppd_elem_to_string(empty, &len);
	xmppd_elem_unref(empty);
	if (text == NULL || fwrite(text, 1, len, out) != len) {
		free(text);
		return -1;
	}
	free(text);
	return 0;
}

static void
get_finish(struct pget *pg)
{
	xmppd_elem *r = NULL;

	fputs("</query></iq>", pg->out);
	pg->bad |= fclose(pg->out) != 0;
	if (!pg->bad && (r = xmppd_elem_parse(pg->text, pg->len)) != NULL) {
		/* As stanza_iq_result does: the addresses swapped. */
		xmppd_elem_set_attr(r, "id", xmppd_elem_attr(pg->iq, "id"));
		xmppd_elem_set_attr(r, "to", xmppd_elem_attr(pg->iq, "from"));
		xmppd_elem_set_attr(r, "from", xmppd_elem_attr(pg->iq, "to"));
		xmppd_route(r);
		xmppd_elem_unref(r);
	} else {
		xmppd_iq_error(pg->iq, "internal-server-error", NULL);
	}
	xmppd_elem_unref(pg->iq);
	free(pg->text);
	free(pg);
}

static void
got_one(int status, const void *val, size_t vlen, void *ud)
{
	struct pone *po = ud;
	struct pget *pg = po->pg;

	if (po->nokey)
		status = XMPPD_STORE_NOT_FOUND;
	if (!pg->bad)
		pg->bad = write_one(pg->out, status, val, vlen, po->want) < 0;
	free(po);
	if (--pg->left == 0)
		get_finish(pg);
}

static void
private_get(xmppd_ctx *ctx, xmppd_elem *iq, xmppd_elem *query, const xmppd_jid *user)
{
	struct pget *pg = calloc(1, sizeof(*pg));
	struct pone *po;
	xmppd_elem *c;
	char key[512];
	size_t klen;

	if (pg == NULL || (pg->out = open_memstream(&pg->text, &pg->len)) == NULL) {
		free(pg);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	pg->iq = xmppd_elem_ref(iq);
	fputs("<iq type='result'><query xmlns='" NS_PRIVATE "'>", pg->out);
	/* No callback runs before the calls return: counting up here is
	 * safe. A key that does not fit cannot be stored: empty. */
	for (c = xmppd_elem_first_child(query); c != NULL && !pg->bad;
	    c = xmppd_elem_next_sibling(c)) {
		if ((po = calloc(1, sizeof(*po))) == NULL) {
			pg->bad = 1;
			break;
		}
		po->pg = pg;
		po->want = c;
		klen = elem_key(key, sizeof(key), user, c);
		po->nokey = klen == 0;
		pg->left++;
		/* A key that does not fit still takes its turn (INVALID). */
		if (xmppd_store_aget(ctx, TABLE, key, klen, got_one, po) < 0) {
			pg->left--;
			pg->bad = 1;
			free(po);
		}
	}
	if (pg->left == 0)
		get_finish(pg);
}

static enum xmppd_result
private_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_elem *query = xmppd_elem_first_child(iq), *c;
	const char *fbare = xmppd_jid_bare(from), *tbare = xmppd_jid_bare(to);
	int set = is(xmppd_elem_attr(iq, "type"), "set"), n = 0;

	if (!is(xmppd_elem_name(query), "query")) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return XMPPD_STOP;
	}
	/* XEP-0049 2.3, 4: the user's own account only. */
	if (xmppd_jid_node(to) == NULL || fbare == NULL || tbare == NULL ||
	    strcmp(fbare, tbare) != 0) {
		xmppd_iq_error(iq, "forbidden", NULL);
		return XMPPD_STOP;
	}
	for (c = xmppd_elem_first_child(query); c != NULL; c = xmppd_elem_next_sibling(c), n++)
		if (reserved(xmppd_elem_ns(c))) {
			xmppd_iq_error(iq, "not-acceptable", "reserved namespace");
			return XMPPD_STOP;
		}
	/* XEP-0049 2.3: a set must carry an element (not-acceptable); a get
	 * without one is "bad format", bad-request in RFC 6120 terms. */
	if (n == 0 || (!set && n > MAX_GET))
		xmppd_iq_error(iq, set ? "not-acceptable" : "bad-request", NULL);
	else if (set)
		private_set(ud, iq, query, to);
	else
		private_get(ud, iq, query, to);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static int
load(xmppd_ctx *ctx)
{
	if (xmppd_iq_register(ctx, NULL, NS_PRIVATE, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_SERVER | XMPPD_IQ_ACCOUNT, private_iq, ctx) < 0 ||
	    xmppd_store_user_table(ctx, TABLE) < 0 ||
	    xmppd_disco_account_feature(ctx, NS_PRIVATE) < 0 || bookmarks_load(ctx) < 0)
		return -1;
	return 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.2: the asynchronous store */
	.name = "mod_private",
	.version = "1.0",
	.options = options,
	.load = load,
};
