/*
 * mod_disco - XEP-0030: Service Discovery.
 *
 * Answers disco#info and disco#items for the server's own JID and, on an
 * account's behalf, for its bare JID (RFC 6121 8.5.2.1.3). What is listed
 * comes from the registries every module fills at load
 * (xmppd_disco_feature, xmppd_disco_account_feature, xmppd_disco_identity,
 * xmppd_service_register), then from the disco_info / disco_items fold
 * hooks, which run with args->to the entity asked about (a node part means
 * an account) and args->node the node or NULL.
 *
 * Nodes: mod_disco knows none itself. A query with a node is answered from
 * the fold hook alone; if no handler added anything and none returned STOP
 * (which means "this node is mine, even if it is empty"), the node does not
 * exist: item-not-found (XEP-0030 3.2, 4.2, 7).
 *
 * Accounts (XEP-0030 8, the server answering for the account, RFC 6121
 * 8.5.2.1.3): the account itself, a local server domain (trusted), and
 * the entities authorized to receive the account's presence (a
 * subscription from or both, RFC 6121 2.1.2.5, learnt through the roster
 * query of ABI 1.4) get the answer: disco#info the account identity
 * (account/registered) and features, disco#items what the fold hook adds
 * (items other than resources, such as PEP nodes; no resource is ever
 * listed). Anyone else gets service-unavailable to disco#info (8, rule
 * 1.2: MUST) and an empty result to disco#items, with or without a node
 * (rule 2.2: empty rather than telling which nodes exist), as do all
 * requesters but the account and the server when no module provides
 * rosters. An account that does not exist is answered by the core
 * (service-unavailable, RFC 6121 8.5.1; rule 1.1 for disco#info, where
 * rule 2.1 would have an empty disco#items result).
 *
 * Contact addresses (XEP-0157): the option contact maps the kinds abuse,
 * admin, feedback, sales, security and support to lists of URIs; the
 * server's disco#info then carries them in an extended form (XEP-0128)
 * of FORM_TYPE http://jabber.org/network/serverinfo, one list-multi field
 * KIND-addresses per kind configured.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

#define NS_XDATA "jabber:x:data"
#define NS_SERVERINFO "http://jabber.org/network/serverinfo"

/* Set at load, read-only afterwards. */
static xmppd_ctx *module_ctx;

static const struct xmppd_option options[] = {
	/* XEP-0157: kind -> URIs (mailto:, xmpp:, https:...). */
	{ "contact", XMPPD_OPT_MAP, NULL, 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

/* XEP-0157 3: the registered kinds, as in the field names. */
static const char *const contact_kinds[] = {
	"abuse", "admin", "feedback", "sales", "security", "support", NULL,
};

/* Keys of the children already in a reply, to drop repeats. */
struct seen {
	char **keys;
	size_t n, cap;
};

/* ---------------------------------------------------------------- */
/* Building replies.                                                  */

static void
add_feature(const char *ns, void *ud)
{
	xmppd_elem *f = xmppd_elem_add_child(ud, NS_DISCO_INFO, "feature");

	xmppd_elem_set_attr(f, "var", ns);
}

static void
add_identity(const char *category, const char *type, const char *name, void *ud)
{
	xmppd_elem *id = xmppd_elem_add_child(ud, NS_DISCO_INFO, "identity");

	xmppd_elem_set_attr(id, "category", category);
	xmppd_elem_set_attr(id, "type", type);
	if (name != NULL)
		xmppd_elem_set_attr(id, "name", name);
}

static void
add_xdata_field(xmppd_elem *x, const char *var, const char *type, const char *value)
{
	xmppd_elem *f = xmppd_elem_add_child(x, NS_XDATA, "field"), *v;

	xmppd_elem_set_attr(f, "var", var);
	if (type != NULL)
		xmppd_elem_set_attr(f, "type", type);
	if (value != NULL) {
		v = xmppd_elem_add_child(f, NS_XDATA, "value");
		xmppd_elem_add_text(v, value, strlen(value));
	}
}

/* XEP-0157 3, XEP-0128: the contact addresses of the configuration as a
 * result form in the server's disco#info; nothing when none is set. */
static void
add_contacts(xmppd_elem *q)
{
	size_t n = xmppd_opt_map_len(module_ctx, "contact");
	xmppd_elem *x;

	if (n == 0)
		return;
	x = xmppd_elem_add_child(q, NS_XDATA, "x");
	xmppd_elem_set_attr(x, "type", "result");
	add_xdata_field(x, "FORM_TYPE", "hidden", NS_SERVERINFO);
	for (size_t i = 0; i < n; i++) {
		char var[64];
		xmppd_elem *f;

		snprintf(var, sizeof(var), "%s-addresses",
		    xmppd_opt_map_key(module_ctx, "contact", i));
		add_xdata_field(x, var, "list-multi", NULL);
		/* The field just added is the last child. */
		for (f = xmppd_elem_first_child(x); xmppd_elem_next_sibling(f) != NULL;
		    f = xmppd_elem_next_sibling(f))
			;
		for (size_t j = 0; j < xmppd_opt_map_list_len(module_ctx, "contact", i); j++) {
			const char *uri = xmppd_opt_map_list_at(module_ctx, "contact", i, j);
			xmppd_elem *v = xmppd_elem_add_child(f, NS_XDATA, "value");

			xmppd_elem_add_text(v, uri, strlen(uri));
		}
	}
}

/* At load: the kinds are XEP-0157's, each URI has a scheme. */
static int
contacts_check(xmppd_ctx *ctx)
{
	for (size_t i = 0; i < xmppd_opt_map_len(ctx, "contact"); i++) {
		const char *kind = xmppd_opt_map_key(ctx, "contact", i);
		size_t k;

		for (k = 0; contact_kinds[k] != NULL && strcmp(contact_kinds[k], kind) != 0; k++)
			;
		if (contact_kinds[k] == NULL) {
			xmppd_log(ctx, XMPPD_LOG_ERROR, "contact: unknown kind '%s': expected "
			    "abuse, admin, feedback, sales, security or support", kind);
			return -1;
		}
		for (size_t j = 0; j < xmppd_opt_map_list_len(ctx, "contact", i); j++) {
			const char *uri = xmppd_opt_map_list_at(ctx, "contact", i, j);
			size_t sl = strspn(uri, "abcdefghijklmnopqrstuvwxyz"
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");

			/* RFC 3986 3.1: scheme ":" ... */
			if (sl == 0 || uri[sl] != ':' || uri[sl + 1] == '\0') {
				xmppd_log(ctx, XMPPD_LOG_ERROR, "contact: %s: '%s' is not a URI "
				    "(mailto:..., xmpp:..., https://...)", kind, uri);
				return -1;
			}
		}
	}
	return 0;
}

/*
 * The first local host that domain is a subdomain of (NULL if none):
 * "conference.a.example" belongs to "a.example" when that is served here.
 * Returns a pointer into domain.
 */
static const char *
parent_host(const char *domain)
{
	for (const char *p = strchr(domain, '.'); p != NULL; p = strchr(p + 1, '.'))
		if (p[1] != '\0' && xmppd_is_local_host(p + 1))
			return p + 1;
	return NULL;
}

struct items_ctx {
	xmppd_elem *query;
	const char *host;
};

/* XEP-0030 4.1: one item per service domain. A service that is a
 * subdomain of one of our hosts is listed under that host only (ejabberd
 * does the same); one under no local host is listed under every host. */
static void
add_service(const char *domain, void *ud)
{
	struct items_ctx *ic = ud;
	const char *parent = parent_host(domain);
	xmppd_elem *it;

	if (parent != NULL && strcmp(parent, ic->host) != 0)
		return;
	it = xmppd_elem_add_child(ic->query, NS_DISCO_ITEMS, "item");
	xmppd_elem_set_attr(it, "jid", domain);
}

/* What makes two children of a reply the same: a feature's var
 * (XEP-0030 3.1: each feature once), an identity's category, type and
 * xml:lang (3.1: no two with those equal), an item's jid and node. NULL
 * for anything else, which is left alone. */
static char *
child_key(const xmppd_elem *c, const char *ns)
{
	const char *name = xmppd_elem_name(c), *cns = xmppd_elem_ns(c);
	const char *a = NULL, *b = "", *d = "";
	char *key;
	size_t len;

	if (cns == NULL || strcmp(cns, ns) != 0)
		return NULL;
	if (strcmp(name, "feature") == 0) {
		a = xmppd_elem_attr(c, "var");
	} else if (strcmp(name, "identity") == 0) {
		a = xmppd_elem_attr(c, "category");
		b = xmppd_elem_attr(c, "type");
		d = xmppd_elem_attr(c, "xml:lang");
	} else if (strcmp(name, "item") == 0) {
		a = xmppd_elem_attr(c, "jid");
		d = xmppd_elem_attr(c, "node");
	}
	if (a == NULL)
		return NULL;
	b = b != NULL ? b : "";
	d = d != NULL ? d : "";
	/* \001 cannot occur in XML 1.0 text, so the key is unambiguous. */
	len = strlen(name) + strlen(a) + strlen(b) + strlen(d) + 4;
	if ((key = malloc(len)) != NULL)
		snprintf(key, len, "%s\001%s\001%s\001%s", name, a, b, d);
	return key;
}

static int
seen_add(struct seen *s, char *key_take)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->keys[i], key_take) == 0) {
			free(key_take);
			return 1;
		}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		char **v = realloc(s->keys, cap * sizeof(*v));

		if (v == NULL) {
			free(key_take);
			return 0;       /* keep the child: a repeat beats a loss */
		}
		s->keys = v;
		s->cap = cap;
	}
	s->keys[s->n++] = key_take;
	return 0;
}

/* Removes repeated features, identities and items, keeping the first:
 * several modules may register the same feature, and hook handlers may add
 * what the registries already gave. */
static void
dedup(xmppd_elem *query, const char *ns)
{
	struct seen s = { NULL, 0, 0 };
	xmppd_elem *c, *next;

	for (c = xmppd_elem_first_child(query); c != NULL; c = next) {
		char *key = child_key(c, ns);

		next = xmppd_elem_next_sibling(c);
		if (key != NULL && seen_add(&s, key))
			xmppd_elem_remove_child(query, c);
	}
	for (size_t i = 0; i < s.n; i++)
		free(s.keys[i]);
	free(s.keys);
}

/* ---------------------------------------------------------------- */
/* Handlers.                                                          */

/* Common checks; returns the node asked for ("" = none) or NULL after
 * answering the IQ with an error. */
static const char *
check_request(xmppd_elem *iq)
{
	xmppd_elem *req = xmppd_elem_first_child(iq);
	const char *type = xmppd_elem_attr(iq, "type"), *node;

	/* XEP-0030 defines get only; set is understood but refused (as
	 * ejabberd does). */
	if (type == NULL || strcmp(type, "get") != 0) {
		xmppd_iq_error(iq, "not-allowed", NULL);
		return NULL;
	}
	if (req == NULL || strcmp(xmppd_elem_name(req), "query") != 0) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return NULL;
	}
	/* An empty node attribute is taken as no node. */
	node = xmppd_elem_attr(req, "node");
	return node != NULL ? node : "";
}

/* Runs the fold hook; returns 0 to reply with query, or -1 after
 * answering item-not-found for a node nobody knows (query is freed). */
static int
fold(enum xmppd_hook hook, xmppd_elem *iq, xmppd_elem *query, const xmppd_jid *from,
    const xmppd_jid *to, const char *node)
{
	struct xmppd_disco_args a = { query, from, to, *node != '\0' ? node : NULL };
	enum xmppd_result r = xmppd_hook_run(hook, xmppd_jid_domain(to), &a);

	if (*node != '\0' && r == XMPPD_CONTINUE && xmppd_elem_first_child(query) == NULL) {
		xmppd_elem_unref(query);
		xmppd_iq_error(iq, "item-not-found", NULL);  /* XEP-0030 3.2, 4.2 */
		return -1;
	}
	return 0;
}

static xmppd_elem *
new_query(const char *ns, const char *node)
{
	xmppd_elem *q = xmppd_elem_new(ns, "query");

	/* XEP-0030 3.2: the reply mirrors the node it answers for. */
	if (*node != '\0')
		xmppd_elem_set_attr(q, "node", node);
	return q;
}

/* XEP-0030 3.1: the answer, for an entity allowed to have it. */
static void
info_answer(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, const char *node)
{
	int account = xmppd_jid_node(to) != NULL;
	xmppd_elem *q;

	q = new_query(NS_DISCO_INFO, node);
	if (*node == '\0') {
		if (account) {
			add_identity("account", "registered", NULL, q);
		} else {
			add_identity("server", "im", "xmppd", q);
			xmppd_disco_foreach_identity(add_identity, q);
		}
		/* The server answers both disco namespaces for itself and, on
		 * their behalf, for accounts. */
		add_feature(NS_DISCO_INFO, q);
		add_feature(NS_DISCO_ITEMS, q);
		xmppd_disco_foreach_feature(account, add_feature, q);
		if (!account)
			add_contacts(q);
	}
	if (fold(XMPPD_HOOK_DISCO_INFO, iq, q, from, to, node) < 0)
		return;
	dedup(q, NS_DISCO_INFO);
	xmppd_iq_reply(iq, q);
}

/* XEP-0030 4.1: the answer, for an entity allowed to have it. */
static void
items_answer(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, const char *node)
{
	xmppd_elem *q = new_query(NS_DISCO_ITEMS, node);

	if (*node == '\0' && xmppd_jid_node(to) == NULL) {
		struct items_ctx ic = { q, xmppd_jid_domain(to) };

		xmppd_service_foreach(add_service, &ic);
	}
	if (fold(XMPPD_HOOK_DISCO_ITEMS, iq, q, from, to, node) < 0)
		return;
	dedup(q, NS_DISCO_ITEMS);
	xmppd_iq_reply(iq, q);
}

/* What an entity not allowed to see the account gets (XEP-0030 8). */
static void
refuse(xmppd_elem *iq, int items, const char *node)
{
	if (items)
		xmppd_iq_reply(iq, new_query(NS_DISCO_ITEMS, node));  /* rule 2.2 */
	else
		xmppd_iq_error(iq, "service-unavailable", NULL);       /* rule 1.2 */
}

/* A query about an account from another entity, waiting for the roster. */
struct ask {
	xmppd_elem *iq;             /* a reference */
	xmppd_jid *from, *to;
	int items;
	char node[];
};

static void
ask_free(struct ask *a)
{
	xmppd_elem_unref(a->iq);
	xmppd_jid_free(a->from);
	xmppd_jid_free(a->to);
	free(a);
}

static void
sub_known(int sub, void *ud)
{
	struct ask *a = ud;

	/* XEP-0030 8: authorized to receive the account's presence (from
	 * or both); no roster (sub < 0): nobody is. */
	if (sub < 0 || !(sub & XMPPD_SUB_FROM))
		refuse(a->iq, a->items, a->node);
	else if (a->items)
		items_answer(a->iq, a->from, a->to, a->node);
	else
		info_answer(a->iq, a->from, a->to, a->node);
	ask_free(a);
}

/* The account itself, or a server domain of ours (XEP-0030 8: "otherwise
 * trusted"). */
static int
trusted(const xmppd_jid *from, const xmppd_jid *to)
{
	if (from == NULL || xmppd_jid_domain(from) == NULL)
		return 0;
	if (xmppd_jid_node(from) == NULL)
		return xmppd_jid_resource(from) == NULL && xmppd_is_local_host(xmppd_jid_domain(from));
	return strcmp(xmppd_jid_bare(from), xmppd_jid_bare(to)) == 0;
}

/* XEP-0030 3.1 and 4.1; for an account, RFC 6121 8.5.2.1.3 and XEP-0030 8. */
static enum xmppd_result
disco_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, int items)
{
	const char *node = check_request(iq);
	struct ask *a;

	if (node == NULL)
		return XMPPD_STOP;
	if (xmppd_jid_node(to) == NULL || trusted(from, to)) {
		if (items)
			items_answer(iq, from, to, node);
		else
			info_answer(iq, from, to, node);
		return XMPPD_STOP;
	}
	if ((a = calloc(1, sizeof(*a) + strlen(node) + 1)) == NULL ||
	    (a->from = xmppd_jid_copy(from)) == NULL || (a->to = xmppd_jid_copy(to)) == NULL) {
		if (a != NULL)
			xmppd_jid_free(a->from);
		free(a);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return XMPPD_STOP;
	}
	a->iq = xmppd_elem_ref(iq);
	a->items = items;
	strcpy(a->node, node);
	if (xmppd_roster_subscription(module_ctx, to, from, sub_known, a) < 0) {
		ask_free(a);
		xmppd_iq_error(iq, "internal-server-error", NULL);
	}
	return XMPPD_STOP;
}

static enum xmppd_result
info_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	return disco_iq(iq, from, to, 0);
}

static enum xmppd_result
items_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	return disco_iq(iq, from, to, 1);
}

/* ---------------------------------------------------------------- */
/* Module.                                                            */

static int
load(xmppd_ctx *ctx)
{
	const unsigned types = XMPPD_IQ_GET | XMPPD_IQ_SET;
	const unsigned scopes = XMPPD_IQ_SERVER | XMPPD_IQ_ACCOUNT;

	module_ctx = ctx;
	if (contacts_check(ctx) < 0)
		return -1;
	if (xmppd_iq_register(ctx, NULL, NS_DISCO_INFO, types, scopes, info_iq, ctx) < 0 ||
	    xmppd_iq_register(ctx, NULL, NS_DISCO_ITEMS, types, scopes, items_iq, ctx) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot register the disco IQ handlers");
		return -1;
	}
	return 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.8: the contact map */
	.name = "mod_disco",
	.version = "1.0",
	.options = options,
	.load = load,
};
