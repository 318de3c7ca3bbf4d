/*
 * mod_carbons - XEP-0280: Message Carbons (urn:xmpp:carbons:2), with the
 * recommended rules of its section 6.1 (urn:xmpp:carbons:rules:0).
 *
 * Enabling (XEP-0280 4, 5): a client's <iq type='set'><enable/></iq> (or
 * <disable/>), without 'to' or to its own bare JID or server, is taken in
 * user_send_packet, where the session is known: the module sets or clears
 * XMPPD_RES_CARBONS in the session table, so every worker sees it through
 * xmppd_user_resources() and it survives a stream-management resumption
 * (the flags belong to the session, not to its connection). Such an IQ
 * addressed to anybody else reaches the IQ handler below and is refused.
 *
 * Sent copies (XEP-0280 8): user_send_packet, priority 70. An eligible
 * message a client sends goes, wrapped in <sent/><forwarded/> (XEP-0297),
 * to every other carbons-enabled resource of the sender.
 *
 * Received copies (XEP-0280 7): filter_packet, priority 70, after mod_mam
 * (60) has put its <stanza-id/> on the message. For an eligible message to
 * a local account the module works out which resources the session manager
 * delivers the original to (RFC 6121 8.5.2, 8.5.3, as src/router/sm.c does)
 * and sends a <received/> copy to every carbons-enabled resource that is
 * not one of them, and not the sending resource.
 *
 * The copies are handed to one resource each with xmppd_deliver(): no
 * routing, so filter_packet does not run for them (they are not archived
 * or pushed again).
 *
 * State: none of the module's own. The flags live in the session table.
 */
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_CARBONS_RULES "urn:xmpp:carbons:rules:0"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_HINTS "urn:xmpp:hints"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"

/* Handlers run with the bands of doc/hooks.md: after mod_mam (60). */
#define CARBONS_PRIORITY 70

/* Resources with carbons on kept on the stack before the heap is used. */
#define LOCAL_TARGETS 8

enum direction {
	DIR_SENT,               /* a local client sends it */
	DIR_RECEIVED,           /* it is routed to a local account */
};

/* ---------------------------------------------------------------- */
/* Which messages are copied (XEP-0280 6.1).                          */

/* What one child element of a message says about copying it. */
enum mark {
	MARK_NEVER,             /* the message is not copied, whatever else it has */
	MARK_PRIVATE,           /* <private/>: not copied, and see eligible() */
	MARK_IM,                /* an instant-messaging payload: copied without a body */
	MARK_BODY,
	MARK_MUC_USER,          /* <x xmlns=muc#user/>: see eligible() */
};

static const struct rule {
	const char *ns;
	const char *name;       /* NULL: any element of ns */
	enum mark mark;
} rules[] = {
	/* XEP-0280 7: the sender asked for no copies, with <private/> and
	 * the XEP-0334 <no-copy/> hint (each is honoured alone). */
	{ NS_CARBONS, "private", MARK_PRIVATE },
	{ NS_HINTS, "no-copy", MARK_NEVER },
	/* What the server generates for a client is never copied: a carbon
	 * itself (XEP-0280 7, 8), a MAM result (XEP-0313 4.2), a push
	 * notification (XEP-0357 5) or any other pubsub event. */
	{ NS_CARBONS, "sent", MARK_NEVER },
	{ NS_CARBONS, "received", MARK_NEVER },
	{ "urn:xmpp:mam:2", "result", MARK_NEVER },
	{ "urn:xmpp:push:0", NULL, MARK_NEVER },
	{ "http://jabber.org/protocol/pubsub#event", "event", MARK_NEVER },
	/* XEP-0280 6.1: IM payloads that are copied without a body: XEP-0184
	 * receipts, XEP-0085 chat states, XEP-0333 markers, and XEP-0249
	 * direct MUC invitations. */
	{ "urn:xmpp:receipts", NULL, MARK_IM },
	{ "http://jabber.org/protocol/chatstates", NULL, MARK_IM },
	{ "urn:xmpp:chat-markers:0", NULL, MARK_IM },
	{ "jabber:x:conference", "x", MARK_IM },
	/* XEP-0353 5 (business rules): call set-up messages (propose,
	 * ringing, proceed, reject, retract, finish) "MUST use XEP-0280" to
	 * reach every device, so they are copied whatever their type; a
	 * client that leaves the type out (normal, no body) would otherwise
	 * leave its other devices ringing. :1 is the namespace of versions
	 * 0.4-0.5. */
	{ "urn:xmpp:jingle-message:0", NULL, MARK_IM },
	{ "urn:xmpp:jingle-message:1", NULL, MARK_IM },
	/* XEP-0045: a mediated invitation, or a private message between a
	 * user and a room occupant. */
	{ NS_MUC_USER, "x", MARK_MUC_USER },
	/* RFC 6121 5.2.3. */
	{ NULL, "body", MARK_BODY },
};

static int
ns_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static const struct rule *
rule_of(const xmppd_elem *e)
{
	const char *ns = xmppd_elem_ns(e), *name = xmppd_elem_name(e);

	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (ns_equal(rules[i].ns, ns) &&
		    (rules[i].name == NULL || strcmp(rules[i].name, name) == 0))
			return &rules[i];
	return NULL;
}

/*
 * XEP-0280 6.1, all of it: 1 if msg is copied when it travels in
 * direction dir. *has_private_r tells whether it carries <private/>
 * (section 7: removed before delivery to a local recipient).
 */
static int
eligible(const xmppd_elem *msg, enum direction dir, int *has_private_r)
{
	const char *type = xmppd_stanza_type(msg);
	int body = 0, im = 0, muc_pm = 0, never = 0;

	*has_private_r = 0;
	for (xmppd_elem *c = xmppd_elem_first_child(msg); c != NULL;
	    c = xmppd_elem_next_sibling(c)) {
		const struct rule *r = rule_of(c);

		if (r == NULL)
			continue;
		switch (r->mark) {
		case MARK_PRIVATE:
			*has_private_r = 1;
			/* FALLTHROUGH */
		case MARK_NEVER:
			never = 1;
			break;
		case MARK_IM:
			im = 1;
			break;
		case MARK_BODY:
			body = 1;
			break;
		case MARK_MUC_USER:
			/* A mediated invitation (XEP-0045 7.8.2) is copied like
			 * a direct one; otherwise the <x/> marks a private
			 * message with an occupant. */
			if (xmppd_elem_child(c, NS_MUC_USER, "invite") != NULL)
				im = 1;
			else
				muc_pm = 1;
			break;
		}
	}
	if (never)
		return 0;
	/* 6.1: groupchat is never copied (the room sends it to every joined
	 * client); headline is for alerts, not for conversations (RFC 6121
	 * 5.2.2). */
	if (strcmp(type, "groupchat") == 0 || strcmp(type, "headline") == 0)
		return 0;
	/* 6.1: a private message from an occupant is not copied (the room
	 * sends it to every client joined with that nick); one a user sends
	 * to an occupant is. */
	if (muc_pm && dir == DIR_RECEIVED)
		return 0;
	/* 6.1: chat; errors (to the messages copied, which are all the
	 * server sees of a conversation); normal (and unknown types, RFC
	 * 6121 5.2.2) with a body; any type with an IM payload. */
	if (strcmp(type, "chat") == 0 || strcmp(type, "error") == 0 || im)
		return 1;
	return body;
}

/* ---------------------------------------------------------------- */
/* Copies.                                                            */

/* XEP-0280 7, 8: from the user's bare JID to one resource, the type of
 * the original, the original in <which><forwarded/> (XEP-0297 3). */
static void
send_copy(const xmppd_elem *orig, const char *which, const char *bare, const char *full)
{
	xmppd_jid *to = xmppd_jid_parse(full);
	xmppd_elem *m, *w, *f;
	const char *type = xmppd_elem_attr(orig, "type");

	if (to == NULL)
		return;
	m = xmppd_elem_new(NULL, "message");
	xmppd_elem_set_attr(m, "from", bare);
	xmppd_elem_set_attr(m, "to", full);
	if (type != NULL)
		xmppd_elem_set_attr(m, "type", type);
	w = xmppd_elem_add_child(m, NS_CARBONS, which);
	f = xmppd_elem_add_child(w, NS_FORWARD, "forwarded");
	xmppd_elem_append_copy(f, orig);
	(void)xmppd_deliver(to, m);
	xmppd_elem_unref(m);
	xmppd_jid_free(to);
}

/* A carbons-enabled resource, as xmppd_user_resources reported it. */
struct target {
	char *full;             /* malloc'd */
	const char *resource;   /* inside full */
	int available;
	int priority;
};

/* What one xmppd_user_resources call learns about an account. */
struct census {
	const char *addressed;  /* the resource the message is sent to, or NULL */
	int addressed_bound;
	int top;                /* highest non-negative available priority, -1: none */
	struct target local[LOCAL_TARGETS], *t;
	size_t n, cap;
	int oom;
};

static void
census_init(struct census *c, const char *addressed)
{
	memset(c, 0, sizeof(*c));
	c->addressed = addressed;
	c->top = -1;
	c->t = c->local;
	c->cap = LOCAL_TARGETS;
}

static void
census_free(struct census *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->t[i].full);
	if (c->t != c->local)
		free(c->t);
}

/* Cheap for resources without carbons: a flag test, a comparison. */
static void
census_add(const struct xmppd_resource *r, void *ud)
{
	struct census *c = ud;
	struct target *t;

	if (c->addressed != NULL && strcmp(r->resource, c->addressed) == 0)
		c->addressed_bound = 1;
	if (r->available && r->priority >= 0 && r->priority > c->top)
		c->top = r->priority;
	if (!(r->flags & XMPPD_RES_CARBONS))
		return;
	if (c->n == c->cap) {
		size_t cap = c->cap * 2;
		struct target *v = malloc(cap * sizeof(*v));

		if (v == NULL) {
			c->oom = 1;
			return;
		}
		memcpy(v, c->t, c->n * sizeof(*v));
		if (c->t != c->local)
			free(c->t);
		c->t = v;
		c->cap = cap;
	}
	t = &c->t[c->n];
	if ((t->full = strdup(r->full)) == NULL) {
		c->oom = 1;
		return;
	}
	t->resource = t->full + (r->resource - r->full);
	t->available = r->available;
	t->priority = r->priority;
	c->n++;
}

/* ---------------------------------------------------------------- */
/* Enable and disable (XEP-0280 4, 5).                                */

/*
 * Answers a client's IQ from the account: with no 'to' the server
 * answers on the account's behalf (RFC 6120 10.3.3), from its bare JID as
 * in XEP-0280 4, example 2.
 */
static void
answer(const xmppd_elem *iq, const xmppd_jid *self, const char *condition)
{
	const char *to = xmppd_elem_attr(iq, "to");
	xmppd_elem *q = xmppd_elem_new(NULL, "iq");
	xmppd_elem *payload = xmppd_elem_first_child(iq);

	xmppd_elem_set_attr(q, "id", xmppd_elem_attr(iq, "id"));
	xmppd_elem_set_attr(q, "type", xmppd_elem_attr(iq, "type"));
	xmppd_elem_set_attr(q, "from", xmppd_jid_full(self));
	xmppd_elem_set_attr(q, "to", to != NULL ? to : xmppd_jid_bare(self));
	if (condition != NULL) {
		if (payload != NULL)
			xmppd_elem_append_copy(q, payload);
		xmppd_iq_error(q, condition, NULL);
	} else {
		xmppd_iq_reply(q, NULL);
	}
	xmppd_elem_unref(q);
}

/* No 'to', the account's bare JID, or its server: the client's own
 * carbons (XEP-0280 4, example 1 has no 'to'). */
static int
to_self(const xmppd_jid *to, const xmppd_jid *self)
{
	if (to == NULL)
		return 1;
	if (xmppd_jid_resource(to) != NULL ||
	    strcmp(xmppd_jid_domain(to), xmppd_jid_domain(self)) != 0)
		return 0;
	return xmppd_jid_node(to) == NULL || strcmp(xmppd_jid_node(to), xmppd_jid_node(self)) == 0;
}

static enum xmppd_result
client_iq(struct xmppd_packet_args *a)
{
	xmppd_elem *req;
	const char *type = xmppd_elem_attr(a->stanza, "type");
	int on;

	if ((req = xmppd_elem_child(a->stanza, NS_CARBONS, "enable")) != NULL)
		on = 1;
	else if ((req = xmppd_elem_child(a->stanza, NS_CARBONS, "disable")) != NULL)
		on = 0;
	else
		return XMPPD_CONTINUE;
	/* Another entity's: routed there (and refused by carbons_iq if it is
	 * another account here). Without an id or a type the core answers
	 * bad-request (RFC 6120 8.2.3). */
	if (!to_self(a->to, a->from) || xmppd_elem_attr(a->stanza, "id") == NULL ||
	    type == NULL)
		return XMPPD_CONTINUE;
	if (strcmp(type, "set") == 0) {
		/* XEP-0280 10.1: enabling twice, or disabling when off, is
		 * answered with a result too. */
		xmppd_session_set_flags(a->session, XMPPD_RES_CARBONS, on ? XMPPD_RES_CARBONS : 0);
		answer(a->stanza, a->from, NULL);
		return XMPPD_STOP;
	}
	if (strcmp(type, "get") == 0) {
		/* XEP-0280 4, 5 define a set only. */
		answer(a->stanza, a->from, "bad-request");
		return XMPPD_STOP;
	}
	return XMPPD_CONTINUE;      /* a result or an error: not ours */
}

/*
 * An enable or disable that reached an account's bare JID or the server
 * from anybody but the account's own clients (those are taken in
 * user_send_packet): XEP-0280 4.1, 5.1, not-allowed (a client not hosted
 * here, or another client's carbons).
 */
static enum xmppd_result
carbons_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	(void)from;
	(void)to;
	(void)ud;
	xmppd_iq_error(iq, "not-allowed", NULL);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Hooks.                                                             */

/* user_send_packet: enable/disable, and sent copies (XEP-0280 8). */
static enum xmppd_result
on_send(void *args, void *ud)
{
	struct xmppd_packet_args *a = args;
	const char *kind = xmppd_stanza_kind(a->stanza);
	const char *self;
	struct census c;
	int priv;

	(void)ud;
	if (kind == NULL)
		return XMPPD_CONTINUE;
	if (strcmp(kind, "iq") == 0)
		return client_iq(a);
	if (strcmp(kind, "message") != 0)
		return XMPPD_CONTINUE;
	/* To the user's own account (no 'to' is the same, RFC 6120 10.3.1):
	 * filter_packet makes the copies, as <received/>, to the resources
	 * that are neither the sender nor the one addressed. */
	if (a->to == NULL || (xmppd_jid_node(a->to) != NULL &&
	    strcmp(xmppd_jid_bare(a->to), xmppd_jid_bare(a->from)) == 0))
		return XMPPD_CONTINUE;
	if (!eligible(a->stanza, DIR_SENT, &priv))
		return XMPPD_CONTINUE;
	census_init(&c, NULL);
	(void)xmppd_user_resources(a->from, census_add, &c);
	self = xmppd_jid_full(a->from);
	/* XEP-0280 8: every carbons-enabled resource but the sender,
	 * whether the sender has carbons on or not. */
	for (size_t i = 0; i < c.n; i++)
		if (strcmp(c.t[i].full, self) != 0)
			send_copy(a->stanza, "sent", xmppd_jid_bare(a->from), c.t[i].full);
	census_free(&c);
	return XMPPD_CONTINUE;
}

/* XEP-0280 7: a copy of the message without <private/>. */
static xmppd_elem *
without_private(const xmppd_elem *msg)
{
	xmppd_elem *copy = xmppd_elem_copy(msg), *c, *next;

	for (c = xmppd_elem_first_child(copy); c != NULL; c = next) {
		next = xmppd_elem_next_sibling(c);
		if (ns_equal(xmppd_elem_ns(c), NS_CARBONS) &&
		    strcmp(xmppd_elem_name(c), "private") == 0)
			xmppd_elem_remove_child(copy, c);
	}
	return copy;
}

/*
 * Whether the session manager hands the original to target (RFC 6121
 * 8.5.2.1.1: to a bare JID, the available resources with the highest
 * non-negative priority; 8.5.3.1: to a bound full JID, that resource).
 */
static int
gets_original(const struct census *c, const struct target *t)
{
	if (c->addressed_bound)
		return strcmp(t->resource, c->addressed) == 0;
	return t->available && c->top >= 0 && t->priority == c->top;
}

/* filter_packet: received copies (XEP-0280 7) and <private/> removal. */
static enum xmppd_result
on_route(void *args, void *ud)
{
	struct xmppd_packet_args *a = args;
	const char *kind = xmppd_stanza_kind(a->stanza), *type, *from_full = NULL;
	const char *node, *domain;
	struct census c;
	int copy, priv;

	(void)ud;
	if (kind == NULL || strcmp(kind, "message") != 0 || a->to == NULL)
		return XMPPD_CONTINUE;
	node = xmppd_jid_node(a->to);
	domain = xmppd_jid_domain(a->to);
	if (node == NULL || domain == NULL || !xmppd_is_local_host(domain))
		return XMPPD_CONTINUE;
	copy = eligible(a->stanza, DIR_RECEIVED, &priv);
	/* XEP-0280 7: the receiving server SHOULD remove <private/> before
	 * delivering (eligible() has already said no copies). */
	if (priv)
		a->stanza = without_private(a->stanza);
	if (!copy)
		return XMPPD_CONTINUE;
	type = xmppd_stanza_type(a->stanza);
	census_init(&c, xmppd_jid_resource(a->to));
	/* One look at the session table. Resources bound also mean the
	 * account exists for the session manager (src/router/sm.c,
	 * user_exists), so no store read is needed: without any, there is
	 * nobody to copy to. */
	(void)xmppd_user_resources(a->to, census_add, &c);
	if (c.n == 0)
		goto out;
	/* Where the session manager does not deliver the original at all, no
	 * copies either: an error to a bare JID or to a resource not bound
	 * (RFC 6121 8.5.2.1.1, 8.5.3.2.1: ignored), any other message but
	 * chat to a resource not bound (bounced). A chat to a resource not
	 * bound goes to the bare JID (8.5.3.2.1). */
	if (!c.addressed_bound && (strcmp(type, "error") == 0 ||
	    (c.addressed != NULL && strcmp(type, "chat") != 0)))
		goto out;
	/* A user writing to their own account: not back to the sender. */
	if (xmppd_jid_node(a->from) != NULL &&
	    strcmp(xmppd_jid_bare(a->from), xmppd_jid_bare(a->to)) == 0)
		from_full = xmppd_jid_full(a->from);
	for (size_t i = 0; i < c.n; i++) {
		const struct target *t = &c.t[i];

		if (gets_original(&c, t) || (from_full != NULL && strcmp(t->full, from_full) == 0))
			continue;
		send_copy(a->stanza, "received", xmppd_jid_bare(a->to), t->full);
	}
out:
	census_free(&c);
	return XMPPD_CONTINUE;
}

/* ---------------------------------------------------------------- */
/* Module.                                                            */

static int
carbons_load(xmppd_ctx *ctx)
{
	/* XEP-0280 3; rules:0 because every rule of 6.1 is kept. */
	if (xmppd_disco_feature(ctx, NS_CARBONS) < 0 ||
	    xmppd_disco_feature(ctx, NS_CARBONS_RULES) < 0 ||
	    xmppd_iq_register(ctx, NULL, NS_CARBONS, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_SERVER | XMPPD_IQ_ACCOUNT, carbons_iq, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_USER_SEND_PACKET, NULL, CARBONS_PRIORITY,
	    on_send, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_FILTER_PACKET, NULL, CARBONS_PRIORITY,
	    on_route, NULL) < 0)
		return -1;
	return 0;
}

static void
carbons_unload(xmppd_ctx *ctx)
{
	(void)ctx;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_carbons",
	.version = "1.0",
	.depends = NULL,
	.options = NULL,
	.load = carbons_load,
	.unload = carbons_unload,
};
