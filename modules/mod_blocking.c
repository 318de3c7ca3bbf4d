/*
 * mod_blocking - XEP-0191: Blocking Command.
 *
 * A user keeps a list of blocked JIDs (urn:xmpp:blocking): <blocklist/>
 * reads it, <block/> and <unblock/> change it, and every change is pushed
 * to the user's resources that have read the list (XEP-0191 3.3, 3.4, 3.5).
 *
 * Storage: table mod_blocking, key "host NUL node NUL jid NUL" (the jid as
 * prepared by the JID parser), value one version byte. A user's list is one
 * key range, so "is X blocked by U" is a single cursor walk over U's
 * entries (one store lookup per stanza; an empty list costs one seek).
 *
 * Enforcement, both ways:
 *  - inbound (filter_packet, so it covers every stanza routed to the user,
 *    whether delivered, answered by the server for the bare JID or
 *    handled by an offline store): a stanza from a blocked entity is not
 *    delivered; a message or an IQ get/set is answered with
 *    <service-unavailable/>, anything else is dropped silently
 *    (XEP-0191 3.3), so the user looks offline to the blocked entity.
 *  - outbound (user_send_packet): a stanza the user's client sends to a
 *    blocked JID is not routed and comes back with <not-acceptable/> and
 *    <blocked xmlns='urn:xmpp:blocking:errors'/> (XEP-0191 3.3); errors and
 *    IQ results are dropped without an answer (RFC 6120 8.3.1). Presence
 *    the server routes on the user's behalf is checked in filter_packet
 *    and dropped silently.
 * A user's own resources are never blocked from each other (XEP-0191 5).
 *
 * Not done: the unavailable presence XEP-0191 3.3 asks to send to a newly
 * blocked JID (and the current presence on unblock, 3.4) needs to know who
 * may see the user's presence, which is roster data the module ABI does not
 * expose yet.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#define NS_BLOCKING "urn:xmpp:blocking"
#define NS_BLOCKING_ERRORS "urn:xmpp:blocking:errors"
#define TABLE "mod_blocking"
#define KEY_MAX 512             /* LMDB's key limit is 511 bytes */
#define VALUE_VERSION 1
#define PRIORITY 50

static const struct xmppd_option options[] = {
	/* Bounds what one account may store. */
	{ "max_items", XMPPD_OPT_INT, "1000", 1, 100000 },
	{ NULL, 0, NULL, 0, 0 },
};

struct blocking {
	xmppd_ctx *ctx;
	long max_items;
	int slot;               /* session slot: the resource read the list */
};

/* Set at load, read-only afterwards (a module is loaded once). */
static struct blocking state;

/* What the session slot holds once a resource has read the blocklist. */
static const char interested = 1;

/* ---------------------------------------------------------------- */
/* The list in the store.                                             */

struct match {
	const xmppd_jid *who;
	size_t plen;
};

/*
 * XEP-0191 6 (the XEP-0016 order): an item matches its exact full JID, a
 * bare JID any of its resources, domain/resource only that resource at
 * the domain, and a domain the domain itself, everything at it and its
 * subdomains.
 */
static int
item_matches(const char *item, size_t ilen, const xmppd_jid *j)
{
	const char *node = xmppd_jid_node(j), *domain = xmppd_jid_domain(j);
	const char *res = xmppd_jid_resource(j);
	size_t dlen = strlen(domain);

	if (strcmp(item, xmppd_jid_full(j)) == 0)
		return 1;
	if (node != NULL && strcmp(item, xmppd_jid_bare(j)) == 0)
		return 1;
	if (node != NULL && res != NULL && ilen > dlen && memcmp(item, domain, dlen) == 0 &&
	    item[dlen] == '/' && strcmp(item + dlen + 1, res) == 0)
		return 1;
	if (strchr(item, '@') != NULL || strchr(item, '/') != NULL)
		return 0;
	/* A domain item: the domain or a subdomain of it. */
	return (ilen == dlen && memcmp(item, domain, dlen) == 0) ||
	    (dlen > ilen && domain[dlen - ilen - 1] == '.' &&
	    memcmp(domain + dlen - ilen, item, ilen) == 0);
}

static int
match_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct match *m = ud;
	const char *item = (const char *)key + m->plen;

	/* Keys are written NUL-terminated; anything else is not ours. */
	if (klen <= m->plen + 1 || ((const char *)key)[klen - 1] != '\0')
		return 0;
	return item_matches(item, klen - m->plen - 1, m->who);
}

/* 1 if who is on the blocklist of node@host. Store errors count as "not
 * blocked": the store logs them, and refusing all traffic would be worse. */
static int
list_has(xmppd_txn *txn, const char *host, const char *node, const xmppd_jid *who)
{
	char prefix[KEY_MAX];
	struct match m = { who, 0 };

	if (host == NULL || node == NULL || xmppd_jid_domain(who) == NULL)
		return 0;
	if ((m.plen = xmppd_store_key(prefix, sizeof(prefix), host, node, (char *)NULL)) == 0)
		return 0;
	return xmppd_store_scan(txn, TABLE, prefix, m.plen, match_cb, &m) == 1;
}

static int
count_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	(*(long *)ud)++;
	return 0;
}

struct list_build {
	xmppd_elem *list;
	size_t plen;
};

static int
list_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct list_build *lb = ud;
	xmppd_elem *item;

	if (klen <= lb->plen + 1 || ((const char *)key)[klen - 1] != '\0')
		return 0;
	item = xmppd_elem_add_child(lb->list, NS_BLOCKING, "item");
	xmppd_elem_set_attr(item, "jid", (const char *)key + lb->plen);
	return 0;
}

/* ---------------------------------------------------------------- */
/* The IQs.                                                           */

/*
 * The <item jid=''/> children of el, parsed: a new array of n JIDs (n may
 * be 0), or NULL with *cond_r set. The whole request is refused if one item
 * is bad, so that a block or unblock is all or nothing.
 */
static xmppd_jid **
parse_items(xmppd_elem *el, size_t *n_r, const char **cond_r)
{
	xmppd_jid **v;
	xmppd_elem *c;
	size_t n = 0;

	*n_r = 0;
	for (c = xmppd_elem_first_child(el); c != NULL; c = xmppd_elem_next_sibling(c))
		n++;
	if ((v = calloc(n + 1, sizeof(*v))) == NULL) {
		*cond_r = "resource-constraint";
		return NULL;
	}
	n = 0;
	for (c = xmppd_elem_first_child(el); c != NULL; c = xmppd_elem_next_sibling(c)) {
		const char *ns = xmppd_elem_ns(c), *jid;

		/* Unknown children are ignored, as the schema's extension
		 * points would be. */
		if (ns == NULL || strcmp(ns, NS_BLOCKING) != 0 ||
		    strcmp(xmppd_elem_name(c), "item") != 0)
			continue;
		if ((jid = xmppd_elem_attr(c, "jid")) == NULL) {
			*cond_r = "bad-request";
			goto err;
		}
		if ((v[n] = xmppd_jid_parse(jid)) == NULL) {
			*cond_r = "jid-malformed";
			goto err;
		}
		n++;
	}
	*n_r = n;
	return v;
err:
	for (size_t i = 0; i < n; i++)
		xmppd_jid_free(v[i]);
	free(v);
	return NULL;
}

static void
free_items(xmppd_jid **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		xmppd_jid_free(v[i]);
	free(v);
}

/* XEP-0191 3.3, 3.4, 3.5: the change, as an IQ set from the bare JID, to
 * the user's resources (the receive hook keeps it from those that never
 * read the list). */
static void
push(const xmppd_jid *user, const char *what, xmppd_jid **v, size_t n)
{
	static uint64_t seq;
	xmppd_elem *iq = xmppd_elem_new(NULL, "iq"), *el;
	char id[32];

	snprintf(id, sizeof(id), "block-push-%llu",
	    (unsigned long long)__atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	xmppd_elem_set_attr(iq, "type", "set");
	xmppd_elem_set_attr(iq, "id", id);
	xmppd_elem_set_attr(iq, "from", xmppd_jid_bare(user));
	el = xmppd_elem_add_child(iq, NS_BLOCKING, what);
	for (size_t i = 0; i < n; i++)
		xmppd_elem_set_attr(xmppd_elem_add_child(el, NS_BLOCKING, "item"), "jid",
		    xmppd_jid_full(v[i]));
	(void)xmppd_send_to_resources(user, iq, 0);
	xmppd_elem_unref(iq);
}

/* XEP-0191 3.2. */
static void
get_list(struct blocking *b, xmppd_elem *iq, const xmppd_jid *user)
{
	char prefix[KEY_MAX];
	struct list_build lb;
	xmppd_txn *txn;
	int rc;

	lb.plen = xmppd_store_key(prefix, sizeof(prefix), xmppd_jid_domain(user),
	    xmppd_jid_node(user), (char *)NULL);
	if (lb.plen == 0 || (txn = xmppd_store_begin(0)) == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	lb.list = xmppd_elem_new(NS_BLOCKING, "blocklist");
	rc = xmppd_store_scan(txn, TABLE, prefix, lb.plen, list_cb, &lb);
	xmppd_store_abort(txn);
	if (rc < 0) {
		xmppd_elem_unref(lb.list);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	xmppd_iq_reply(iq, lb.list);
}

/* XEP-0191 3.3 (block) and 3.4, 3.5 (unblock, unblock all). The write is
 * committed before anything is routed: routing may read the store. */
static void
change_list(struct blocking *b, xmppd_elem *iq, xmppd_elem *el, const xmppd_jid *user,
    int block)
{
	const char *host = xmppd_jid_domain(user), *node = xmppd_jid_node(user);
	const char *cond = NULL;
	static const unsigned char value = VALUE_VERSION;
	char key[KEY_MAX];
	xmppd_jid **v;
	xmppd_txn *txn;
	size_t n, klen;
	long have = 0, added = 0;

	if ((v = parse_items(el, &n, &cond)) == NULL) {
		xmppd_iq_error(iq, cond, NULL);
		return;
	}
	if (block && n == 0) {
		free_items(v, n);
		xmppd_iq_error(iq, "bad-request", "no item to block");
		return;
	}
	if ((txn = xmppd_store_begin(1)) == NULL) {
		free_items(v, n);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	if (!block && n == 0) {
		klen = xmppd_store_key(key, sizeof(key), host, node, (char *)NULL);
		if (klen == 0 || xmppd_store_del_prefix(txn, TABLE, key, klen) < 0)
			cond = "internal-server-error";
	}
	if (block && (klen = xmppd_store_key(key, sizeof(key), host, node, (char *)NULL)) > 0 &&
	    xmppd_store_scan(txn, TABLE, key, klen, count_cb, &have) < 0)
		cond = "internal-server-error";
	for (size_t i = 0; cond == NULL && i < n; i++) {
		const void *val;
		size_t vlen;
		int rc;

		klen = xmppd_store_key(key, sizeof(key), host, node, xmppd_jid_full(v[i]),
		    (char *)NULL);
		if (klen == 0) {
			/* The store's key limit, not the protocol's. */
			cond = block ? "not-acceptable" : NULL;
			continue;
		}
		if (!block) {
			if (xmppd_store_del(txn, TABLE, key, klen) < 0)
				cond = "internal-server-error";
			continue;
		}
		if ((rc = xmppd_store_get(txn, TABLE, key, klen, &val, &vlen)) < 0) {
			cond = "internal-server-error";
		} else if (rc == 1) {
			if (have + added >= b->max_items)
				cond = "resource-constraint";
			else if (xmppd_store_put(txn, TABLE, key, klen, &value, 1) < 0)
				cond = "internal-server-error";
			added++;
		}
	}
	if (cond != NULL) {
		xmppd_store_abort(txn);
		free_items(v, n);
		xmppd_iq_error(iq, cond, strcmp(cond, "resource-constraint") == 0 ?
		    "the blocklist is full" : strcmp(cond, "not-acceptable") == 0 ?
		    "JID too long to store" : NULL);
		return;
	}
	if (xmppd_store_commit(txn) < 0) {
		free_items(v, n);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	xmppd_iq_reply(iq, NULL);
	push(user, block ? "block" : "unblock", v, n);
	free_items(v, n);
}

static enum xmppd_result
blocking_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	struct blocking *b = ud;
	xmppd_elem *el = xmppd_elem_first_child(iq);
	const char *name = xmppd_elem_name(el);
	int set = strcmp(xmppd_stanza_type(iq), "set") == 0;
	xmppd_jid *user;

	/* XEP-0191 3.2-3.5: sent with no 'to', so to the user's own bare
	 * JID; nobody else reads or changes a user's list. */
	if (from == NULL || xmppd_jid_node(from) == NULL || xmppd_jid_node(to) == NULL ||
	    strcmp(xmppd_jid_bare(from), xmppd_jid_bare(to)) != 0) {
		xmppd_iq_error(iq, "forbidden", "another user's blocklist");
		return XMPPD_STOP;
	}
	if ((user = xmppd_jid_make(xmppd_jid_node(to), xmppd_jid_domain(to), NULL)) == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return XMPPD_STOP;
	}
	if (!set && strcmp(name, "blocklist") == 0)
		get_list(b, iq, user);
	else if (set && strcmp(name, "block") == 0)
		change_list(b, iq, el, user, 1);
	else if (set && strcmp(name, "unblock") == 0)
		change_list(b, iq, el, user, 0);
	else
		xmppd_iq_error(iq, "bad-request", NULL);
	xmppd_jid_free(user);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Enforcement.                                                       */

static int
same_user(const xmppd_jid *a, const xmppd_jid *b)
{
	return xmppd_jid_node(a) != NULL && xmppd_jid_node(b) != NULL &&
	    strcmp(xmppd_jid_bare(a), xmppd_jid_bare(b)) == 0;
}

static int
is_type(const xmppd_elem *st, const char *type)
{
	const char *t = xmppd_stanza_type(st);

	return t != NULL && strcmp(t, type) == 0;
}

/* Inbound, for everything routed (XEP-0191 3.3); and presence the server
 * routes on a user's behalf to a JID that user blocked. */
static enum xmppd_result
on_filter(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	const xmppd_jid *from = pa->from, *to = pa->to;
	const char *kind = xmppd_stanza_kind(pa->stanza);
	int in = 0, out = 0;
	xmppd_txn *txn;

	if (kind == NULL || from == NULL || to == NULL || xmppd_jid_domain(from) == NULL ||
	    same_user(from, to))
		return XMPPD_CONTINUE;
	if (xmppd_jid_node(to) == NULL &&
	    (strcmp(kind, "presence") != 0 || xmppd_jid_node(from) == NULL))
		return XMPPD_CONTINUE;
	if ((txn = xmppd_store_begin(0)) == NULL)
		return XMPPD_CONTINUE;
	in = list_has(txn, xmppd_jid_domain(to), xmppd_jid_node(to), from);
	if (!in && strcmp(kind, "presence") == 0)
		out = list_has(txn, xmppd_jid_domain(from), xmppd_jid_node(from), to);
	xmppd_store_abort(txn);
	if (out || (in && strcmp(kind, "presence") == 0))
		return XMPPD_DROP;
	if (!in)
		return XMPPD_CONTINUE;
	/* Messages and IQ get/set get <service-unavailable/>; errors and
	 * IQ results are dropped (xmppd_bounce never answers them). */
	xmppd_bounce(pa->stanza, "service-unavailable", NULL);
	return XMPPD_DROP;
}

/* XEP-0191 3.3: the stanza back to the client, not-acceptable + blocked. */
static void
refuse_blocked(xmppd_session *s, const xmppd_elem *st)
{
	xmppd_elem *r = xmppd_stanza_error(st, "not-acceptable", NULL), *c, *err = NULL;

	if (r == NULL)
		return;
	/* The reply's own <error/> is its last one (the original stanza's
	 * children come first). */
	for (c = xmppd_elem_first_child(r); c != NULL; c = xmppd_elem_next_sibling(c))
		if (xmppd_elem_ns(c) == NULL && strcmp(xmppd_elem_name(c), "error") == 0)
			err = c;
	if (err != NULL)
		(void)xmppd_elem_add_child(err, NS_BLOCKING_ERRORS, "blocked");
	xmppd_session_send(s, r);
	xmppd_elem_unref(r);
}

/* Outbound from a client; also notes which resources read the list. */
static enum xmppd_result
on_send(void *args, void *ud)
{
	struct blocking *b = ud;
	struct xmppd_packet_args *pa = args;
	const char *kind = xmppd_stanza_kind(pa->stanza);
	const xmppd_jid *me = pa->from;
	xmppd_txn *txn;
	xmppd_elem *q;
	int blocked;

	if (kind == NULL || me == NULL || pa->session == NULL)
		return XMPPD_CONTINUE;
	if (strcmp(kind, "iq") == 0 && is_type(pa->stanza, "get") &&
	    (pa->to == NULL || same_user(pa->to, me)) &&
	    (q = xmppd_elem_first_child(pa->stanza)) != NULL &&
	    xmppd_elem_ns(q) != NULL && strcmp(xmppd_elem_ns(q), NS_BLOCKING) == 0 &&
	    strcmp(xmppd_elem_name(q), "blocklist") == 0)
		xmppd_session_set(pa->session, b->slot, (void *)&interested, NULL);
	if (pa->to == NULL || same_user(pa->to, me))
		return XMPPD_CONTINUE;
	if ((txn = xmppd_store_begin(0)) == NULL)
		return XMPPD_CONTINUE;
	blocked = list_has(txn, xmppd_jid_domain(me), xmppd_jid_node(me), pa->to);
	xmppd_store_abort(txn);
	if (!blocked)
		return XMPPD_CONTINUE;
	if (!is_type(pa->stanza, "error") &&
	    !(strcmp(kind, "iq") == 0 && is_type(pa->stanza, "result")))
		refuse_blocked(pa->session, pa->stanza);
	return XMPPD_DROP;
}

/* Pushes go only to the resources that read the list (XEP-0191 3.3). A
 * push is the one IQ set with a blocking payload from the user's own bare
 * JID: a client's stanzas always carry its full JID. */
static enum xmppd_result
on_receive(void *args, void *ud)
{
	struct blocking *b = ud;
	struct xmppd_packet_args *pa = args;
	const char *kind = xmppd_stanza_kind(pa->stanza), *from, *ns;
	xmppd_elem *q;

	if (pa->session == NULL || kind == NULL || strcmp(kind, "iq") != 0 ||
	    !is_type(pa->stanza, "set") ||
	    (q = xmppd_elem_first_child(pa->stanza)) == NULL ||
	    (ns = xmppd_elem_ns(q)) == NULL || strcmp(ns, NS_BLOCKING) != 0 ||
	    (from = xmppd_elem_attr(pa->stanza, "from")) == NULL ||
	    strcmp(from, xmppd_jid_bare(xmppd_session_jid(pa->session))) != 0)
		return XMPPD_CONTINUE;
	return xmppd_session_get(pa->session, b->slot) != NULL ? XMPPD_CONTINUE : XMPPD_DROP;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static int
load(xmppd_ctx *ctx)
{
	struct blocking *b = &state;
	xmppd_txn *txn;
	const void *val;
	size_t vlen;

	b->ctx = ctx;
	b->max_items = xmppd_opt_int(ctx, "max_items");
	if ((b->slot = xmppd_session_slot(ctx)) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "no session slot left");
		return -1;
	}
	/* Create the table now, so that no read transaction on a worker
	 * has to. */
	if ((txn = xmppd_store_begin(1)) == NULL) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot open table %s", TABLE);
		return -1;
	}
	if (xmppd_store_get(txn, TABLE, "", 1, &val, &vlen) < 0) {
		xmppd_store_abort(txn);
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot open table %s", TABLE);
		return -1;
	}
	if (xmppd_store_commit(txn) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot create table %s", TABLE);
		return -1;
	}
	if (xmppd_iq_register(ctx, NULL, NS_BLOCKING, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_ACCOUNT, blocking_iq, b) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_FILTER_PACKET, NULL, PRIORITY, on_filter, b) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_USER_SEND_PACKET, NULL, PRIORITY, on_send, b) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_USER_RECEIVE_PACKET, NULL, PRIORITY, on_receive, b) < 0 ||
	    xmppd_store_user_table(ctx, TABLE) < 0 ||
	    xmppd_disco_feature(ctx, NS_BLOCKING) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot register handlers");
		return -1;
	}
	return 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_blocking",
	.version = "1.0",
	.options = options,
	.load = load,
};
