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
 * Results are built by parsing the stored text into the reply rather than
 * with xmppd_iq_reply, whose copy keeps either the text or the children of
 * an element but not both: private XML is the client's, and comes back as
 * it was stored, mixed content included.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#define NS_PRIVATE "jabber:iq:private"
#define TABLE "mod_private"
/* XEP-0049 2.3: a get names one namespace; a few elements are plenty. */
#define MAX_GET 16

static const struct xmppd_option options[] = {
	/* The largest element stored, serialized, in bytes. */
	{ "max_size", XMPPD_OPT_INT, "65536", 256, 16777216 },
	/* How many elements one account may keep. */
	{ "max_items", XMPPD_OPT_INT, "100", 1, 100000 },
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

static size_t
elem_key(char *buf, size_t size, const xmppd_jid *user, const xmppd_elem *e)
{
	return xmppd_store_key(buf, size, xmppd_jid_domain(user), xmppd_jid_node(user),
	    xmppd_elem_ns(e), xmppd_elem_name(e), (const char *)NULL);
}

static int
count_one(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	(*(long *)ud)++;
	return 0;
}

/* ---------------------------------------------------------------- */

static void
private_set(xmppd_ctx *ctx, xmppd_elem *iq, xmppd_elem *query, const xmppd_jid *user)
{
	size_t max_size = (size_t)xmppd_opt_int(ctx, "max_size"), klen, plen, len, vlen;
	long items = 0, max_items = xmppd_opt_int(ctx, "max_items");
	const char *cond = NULL, *why = NULL;
	char key[512], prefix[512], *text;
	const void *val;
	xmppd_elem *c;
	xmppd_txn *txn;
	int r;

	plen = xmppd_store_key(prefix, sizeof(prefix), xmppd_jid_domain(user),
	    xmppd_jid_node(user), (const char *)NULL);
	if (plen == 0 || (txn = xmppd_store_begin(1)) == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	if (xmppd_store_scan(txn, TABLE, prefix, plen, count_one, &items) < 0)
		cond = "internal-server-error";
	/* All or nothing: the transaction commits only if every one fits. */
	for (c = xmppd_elem_first_child(query); cond == NULL && c != NULL;
	    c = xmppd_elem_next_sibling(c)) {
		if ((klen = elem_key(key, sizeof(key), user, c)) == 0) {
			cond = "not-acceptable";
			why = "the namespace and name are too long";
			break;
		}
		if ((text = xmppd_elem_to_string(c, &len)) == NULL) {
			cond = "internal-server-error";
			break;
		}
		if (len > max_size) {
			cond = "not-acceptable";
			why = "the element is too large";
		} else if ((r = xmppd_store_get(txn, TABLE, key, klen, &val, &vlen)) < 0) {
			cond = "internal-server-error";
		} else if (r == 1 && items >= max_items) {
			cond = "resource-constraint";
			why = "too many stored elements";
		} else if (xmppd_store_put(txn, TABLE, key, klen, text, len) < 0) {
			cond = "internal-server-error";
		} else if (r == 1) {
			items++;
		}
		free(text);
	}
	if (cond != NULL) {
		xmppd_store_abort(txn);
		xmppd_iq_error(iq, cond, why);
		return;
	}
	if (xmppd_store_commit(txn) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot store private XML of %s",
		    xmppd_jid_bare(user));
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	xmppd_iq_reply(iq, NULL);
}

/* Writes what is stored for e, or an empty e (XEP-0049 2.3), to out. */
static int
write_one(FILE *out, xmppd_txn *txn, const xmppd_jid *user, const xmppd_elem *e)
{
	char key[512], *text;
	size_t klen = elem_key(key, sizeof(key), user, e), len;
	const void *val;
	xmppd_elem *empty;

	if (klen != 0 && xmppd_store_get(txn, TABLE, key, klen, &val, &len) == 0)
		return fwrite(val, 1, len, out) == len ? 0 : -1;
	empty = xmppd_elem_new(xmppd_elem_ns(e), xmppd_elem_name(e));
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
private_get(xmppd_elem *iq, xmppd_elem *query, const xmppd_jid *user)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	xmppd_txn *txn = xmppd_store_begin(0);
	xmppd_elem *c, *r = NULL;
	int bad = out == NULL || txn == NULL;

	if (!bad)
		fputs("<iq type='result'><query xmlns='" NS_PRIVATE "'>", out);
	for (c = xmppd_elem_first_child(query); !bad && c != NULL; c = xmppd_elem_next_sibling(c))
		bad = write_one(out, txn, user, c) < 0;
	xmppd_store_abort(txn);
	if (out != NULL) {
		fputs("</query></iq>", out);
		bad |= fclose(out) != 0;
	}
	if (!bad && (r = xmppd_elem_parse(text, len)) != NULL) {
		/* As stanza_iq_result does: the addresses swapped. */
		xmppd_elem_set_attr(r, "id", xmppd_elem_attr(iq, "id"));
		xmppd_elem_set_attr(r, "to", xmppd_elem_attr(iq, "from"));
		xmppd_elem_set_attr(r, "from", xmppd_elem_attr(iq, "to"));
		xmppd_route(r);
		xmppd_elem_unref(r);
	} else {
		xmppd_iq_error(iq, "internal-server-error", NULL);
	}
	free(text);
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
		private_get(iq, query, to);
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
	    xmppd_disco_account_feature(ctx, NS_PRIVATE) < 0)
		return -1;
	return 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_private",
	.version = "1.0",
	.options = options,
	.load = load,
};
