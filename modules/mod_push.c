/*
 * mod_push - XEP-0357: Push Notifications, the user's server's part.
 *
 * A client enables push with an app server (XEP-0357 5):
 *     <iq type='set'><enable xmlns='urn:xmpp:push:0' jid='APP' node='NODE'>
 *       [<x xmlns='jabber:x:data'> publish-options </x>]</enable></iq>
 * sent to nobody or to its own bare JID, and disables it with
 * <disable jid='APP' [node='NODE']/> (XEP-0357 6: with a node only that
 * registration goes, without one every registration with APP). When
 * something arrives that a sleeping device should know of, the server
 * publishes a notification to the registration's app server (XEP-0357 7).
 *
 * A registration belongs to the session that enabled it, as in Prosody's
 * mod_cloud_notify (the module Conversations, Monal and Siskin are built
 * against): it records that session's resource. Enabling from a
 * resource binds the registration (APP, NODE) to it; enabling the same
 * pair again from another resource moves it there and replaces its
 * publish-options (XEP-0357 5: "the last received request").
 *
 * When to notify. For each registration of the recipient account,
 * whatever the account's other resources do (a sleeping phone is woken
 * while the laptop is online), when:
 *  - no session is bound with its resource (the device is offline, or the
 *    account has no session at all), or
 *  - that session is detached: its connection dropped and stream
 *    management keeps it for a resumption (XEP-0198 5), or
 *  - its acks are overdue: an <r/> of ours has waited more than
 *    push_ack_timeout seconds for its <a/> (XEP-0198 4; the TCP
 *    connection of a suspended phone often stays up).
 * A session that is bound and answers its acks in time is awake: it is
 * not notified, and its count starts again from zero.
 *
 * What is worth a notification (XEP-0357 leaves it to the server; the
 * choices of mod_cloud_notify, less what would wake a phone needlessly):
 *  - a message of type chat or normal (or of an unknown type, which RFC
 *    6121 5.2.2 treats as normal) to a local account's bare or full JID
 *    carrying a non-empty <body/>, an end-to-end encrypted payload (OMEMO
 *    eu.siacs.conversations.axolotl, urn:xmpp:omemo:1 and :2, XEP-0027
 *    jabber:x:encrypted, XEP-0373 urn:xmpp:openpgp:0: clients may send
 *    them without a body), or a call proposal (XEP-0353 <propose/>: the
 *    phone must ring);
 *  - a subscription request (presence type subscribe, RFC 6121 3.1.3),
 *    counted in pending-subscription-count; taken in roster_in_subscription
 *    after the roster module, so only one it lets through to the user;
 *  - never: groupchat (a phone in busy rooms would be woken for every
 *    line; mod_cloud_notify pushes them when queued, we do not), headline
 *    and error messages, body-less messages (chat states, receipts,
 *    markers), and what the server makes for clients itself: carbons
 *    (XEP-0280 <received/>/<sent/>), MAM results (XEP-0313 <result/>),
 *    pubsub events, and our own notifications (IQs, never messages).
 *
 * The notification (XEP-0357 7), from the user's bare JID (as the XEP's
 * example, so that a push service may accept publishes from bare JIDs
 * only, XEP-0357 3.2):
 *     <iq type='set' from='USER' to='APP'><pubsub
 *       xmlns='http://jabber.org/protocol/pubsub'><publish node='NODE'>
 *       <item><notification xmlns='urn:xmpp:push:0'>
 *         <x xmlns='jabber:x:data' type='submit'> FORM_TYPE
 *           urn:xmpp:push:summary, message-count, pending-subscription-count
 *           (when there are some), last-message-sender (the sender's full
 *           JID), last-message-body (only with push_include_body, never
 *           for an encrypted message) </x>
 *         [<encrypted xmlns='urn:xmpp:push:0'/>]
 *       </notification></item></publish>
 *       [<publish-options> the form given at enable </publish-options>]
 *     </pubsub></iq>
 * Encrypted messages are flagged with an <encrypted/> child of the
 * notification (XEP-0357 7: "Other elements MAY be included"), so that an
 * app server can show "new encrypted message" without guessing from an
 * absent body; mod_cloud_notify marks them instead with a placeholder
 * last-message-body, which we never send for them (the fallback body of
 * an OMEMO message is not the message).
 *
 * message-count is the number of messages worth a notification since the
 * registration's session was last seen awake (it binds again, resumes, or
 * is found answering its acks when a message arrives), including those a
 * rate limit held back; pending-subscription-count the same for requests.
 *
 * Rate limit (XEP-0357 9 asks servers to mind the volume): at most
 * push_rate_limit notifications per push_rate_window seconds per
 * registration; what comes beyond is not sent but counted, so the next
 * notification allowed carries the count (and the last sender). Nothing
 * is sent later by itself: the first notifications have woken the device,
 * which fetches everything when it connects.
 *
 * Errors (XEP-0357 7.1): an error reply of the app server disables the
 * registration (memory and store), e.g. item-not-found or not-authorized
 * when the app was uninstalled. Two kinds are taken as transient and keep
 * it, as the XEP allows: errors of type wait (RFC 6120 8.3.2: "retry after
 * waiting"; mod_cloud_notify ignores them too) and remote-server-not-found
 * / remote-server-timeout (RFC 6120 8.3.3.16/17: our own server could not
 * reach the app server, which said nothing). A reply that never comes
 * (REPLY_TIMEOUT_MS) keeps it as well: a lost reply is not a refusal.
 *
 * Storage: the user table mod_push (removed with the account), key
 * xmppd_store_key(host, node, APP, NODE) (NODE "" when absent), value a
 * version byte (1), the resource and a NUL, then the publish-options form
 * as text (empty if none). Every registration is also kept in memory, in
 * a tree of the accounts that have any, under one lock, so that a message
 * to an account without registrations costs one look-up and no store
 * work (reading the store for each message would hold the sender's
 * stream for a read every time, hooks/xmppd.h "Stanza order"). Few
 * accounts have registrations (their devices' count), so memory stays
 * small. The tree is read from the store once, in load() (the main
 * thread, before any of our hooks run; the only synchronous store call
 * here), and every change is written with a batch and applied to memory
 * when the batch has completed, so memory never holds what the store
 * does not.
 *
 * For other modules (ABI 1.7, xmppd_push_provide): xmppd_push_notify wakes
 * an account for a message that concerns it without going to it (mod_muc:
 * a mention of a member absent from a members-only room). Every
 * registration is notified, asleep or not (no session of the account got
 * the message), counted and rate-limited as above, last-message-sender
 * the message's 'from' (the occupant JID room@service/nick); it does not
 * reset the counts.
 *
 * Threads: every hook runs on some worker; the tree, the counts and the
 * rate windows are under reg_lock. Notifications are built under it and
 * sent after it is released (sending routes, and routing runs this
 * module's filter again).
 */
#define _GNU_SOURCE             /* tdestroy */
#include <pthread.h>
#include <search.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#define TABLE "mod_push"
#define KEY_MAX 512             /* LMDB's key limit is 511 bytes */
#define REC_VERSION 1
#define NS_PUSH "urn:xmpp:push:0"
#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_XDATA "jabber:x:data"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define FORM_SUMMARY "urn:xmpp:push:summary"
/* The publish-options form a client gives is kept and sent with every
 * notification: bounded. */
#define OPTIONS_MAX 8192
/* How long an app server has to answer a publish (xmppd_iq_request's
 * bound is 120 s). */
#define REPLY_TIMEOUT_MS 30000

static const struct xmppd_option push_options[] = {
	/* Seconds an <r/> may wait for its <a/> before the session counts
	 * as asleep (XEP-0198 4). Below the core's sm_ack_timeout (60 s by
	 * default), which takes such a connection for dead. */
	{ "push_ack_timeout", XMPPD_OPT_INT, "30", 1, 3600 },
	/* Notifications per registration per push_rate_window seconds. */
	{ "push_rate_limit", XMPPD_OPT_INT, "10", 1, 1000 },
	{ "push_rate_window", XMPPD_OPT_INT, "60", 1, 86400 },
	/* The message's text goes to a third party (XEP-0357 9): off
	 * unless the operator wants it. */
	{ "push_include_body", XMPPD_OPT_BOOL, "false", 0, 0 },
	/* Registrations one account may hold (one per device and app). */
	{ "push_max_registrations", XMPPD_OPT_INT, "10", 1, 1000 },
	{ NULL, 0, NULL, 0, 0 },
};

/* Set at load, read-only afterwards. */
static xmppd_ctx *module_ctx;

/* ---------------------------------------------------------------- */
/* Registrations in memory.                                           */

struct reg {
	struct reg *next;
	uint64_t serial;            /* which enable made it (errors, removal) */
	char *app;                  /* the app server's JID */
	char *pnode;                /* the pubsub node, "" if none */
	char *resource;             /* the session it belongs to */
	char *options;              /* the publish-options form as text, or NULL */
	/* Since the session was last seen awake. */
	uint64_t messages, subscriptions;
	/* The times (ms) of the last ring_n notifications, a ring. */
	uint64_t *ring;
	unsigned ring_n, ring_i;
};

struct account {
	char *bare;                 /* the tree's key */
	struct reg *regs;
};

/* An IQ request in flight (its reply tells whether the registration
 * stays); listed so that unload frees those whose reply never came. */
struct pending {
	struct pending *prev, *next;
	char *bare, *app, *pnode;
	uint64_t serial;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static void *accounts;          /* tsearch tree of struct account */
static uint64_t next_serial = 1;
static struct pending *pendings;

static int
account_cmp(const void *a, const void *b)
{
	return strcmp(((const struct account *)a)->bare, ((const struct account *)b)->bare);
}

static void
reg_free(struct reg *r)
{
	if (r == NULL)
		return;
	free(r->app);
	free(r->pnode);
	free(r->resource);
	free(r->options);
	free(r->ring);
	free(r);
}

static void
account_free(void *p)
{
	struct account *a = p;
	struct reg *r;

	while ((r = a->regs) != NULL) {
		a->regs = r->next;
		reg_free(r);
	}
	free(a->bare);
	free(a);
}

/* reg_lock held. */
static struct account *
account_find(const char *bare)
{
	struct account key = { (char *)bare, NULL };
	void *found = tfind(&key, &accounts, account_cmp);

	return found != NULL ? *(struct account **)found : NULL;
}

/* reg_lock held. NULL: no memory. */
static struct account *
account_get(const char *bare)
{
	struct account *a = account_find(bare);
	void *slot;

	if (a != NULL)
		return a;
	if ((a = calloc(1, sizeof(*a))) == NULL || (a->bare = strdup(bare)) == NULL) {
		free(a);
		return NULL;
	}
	if ((slot = tsearch(a, &accounts, account_cmp)) == NULL || *(struct account **)slot != a) {
		free(a->bare);
		free(a);
		return NULL;
	}
	return a;
}

/* reg_lock held: the account goes once it has no registration left. */
static void
account_drop_if_empty(struct account *a)
{
	if (a->regs != NULL)
		return;
	tdelete(a, &accounts, account_cmp);
	account_free(a);
}

static struct reg **
reg_slot(struct account *a, const char *app, const char *pnode)
{
	struct reg **pp;

	for (pp = &a->regs; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->app, app) == 0 && strcmp((*pp)->pnode, pnode) == 0)
			break;
	return pp;
}

static size_t
reg_count(const struct account *a)
{
	size_t n = 0;

	for (const struct reg *r = a->regs; r != NULL; r = r->next)
		n++;
	return n;
}

/* A new registration (not yet in memory). */
static struct reg *
reg_new(const char *app, const char *pnode, const char *resource, const char *options,
    size_t olen)
{
	struct reg *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->app = strdup(app);
	r->pnode = strdup(pnode);
	r->resource = strdup(resource);
	if (olen > 0 && (r->options = malloc(olen + 1)) != NULL) {
		memcpy(r->options, options, olen);
		r->options[olen] = '\0';
	}
	if (r->app == NULL || r->pnode == NULL || r->resource == NULL ||
	    (olen > 0 && r->options == NULL)) {
		reg_free(r);
		return NULL;
	}
	return r;
}

/* reg_lock held: puts r in place of the registration with its (app,
 * pnode), if any, keeping nothing of the old one (a new enable is a new
 * device state). */
static void
reg_install(struct account *a, struct reg *r)
{
	struct reg **pp = reg_slot(a, r->app, r->pnode), *old = *pp;

	r->serial = next_serial++;
	r->next = old != NULL ? old->next : NULL;
	*pp = r;
	reg_free(old);
}

/* ---------------------------------------------------------------- */
/* Keys and records.                                                  */

static size_t
reg_key(char *buf, const char *host, const char *node, const char *app, const char *pnode)
{
	return xmppd_store_key(buf, KEY_MAX, host, node, app, pnode, (char *)NULL);
}

/* The record: version, resource NUL, options text. malloc'd. */
static char *
record_make(const char *resource, const char *options, size_t olen, size_t *len_r)
{
	size_t rl = strlen(resource), n = 1 + rl + 1 + olen;
	char *v = malloc(n);

	if (v == NULL)
		return NULL;
	v[0] = REC_VERSION;
	memcpy(v + 1, resource, rl + 1);
	if (olen > 0)
		memcpy(v + 1 + rl + 1, options, olen);
	*len_r = n;
	return v;
}

/* The parts of a key: exactly four NUL-terminated strings. */
static int
key_split(const char *key, size_t klen, const char *part[4])
{
	size_t off = 0;

	for (int i = 0; i < 4; i++) {
		const char *nul = memchr(key + off, '\0', klen - off);

		if (off >= klen || nul == NULL)
			return -1;
		part[i] = key + off;
		off = (size_t)(nul - key) + 1;
	}
	return off == klen ? 0 : -1;
}

/* Load: one row of the table into memory (reg_lock held by the caller). */
static int
load_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	const char *part[4], *v = val, *nul;
	size_t *n = ud;
	char bare[KEY_MAX * 2];
	struct account *a;
	struct reg *r;

	if (key_split(key, klen, part) < 0 || vlen < 2 || v[0] != REC_VERSION ||
	    (nul = memchr(v + 1, '\0', vlen - 1)) == NULL) {
		xmppd_log(module_ctx, XMPPD_LOG_WARNING, "an unreadable registration in %s is "
		    "ignored", TABLE);
		return 0;
	}
	snprintf(bare, sizeof(bare), "%s@%s", part[1], part[0]);
	if ((r = reg_new(part[2], part[3], v + 1, nul + 1, vlen - (size_t)(nul + 1 - v))) == NULL ||
	    (a = account_get(bare)) == NULL) {
		reg_free(r);
		return 1;               /* out of memory: load fails */
	}
	reg_install(a, r);
	(*n)++;
	return 0;
}

/* ---------------------------------------------------------------- */
/* Notifications.                                                     */

enum worth { NOT_WORTH, WORTH_PLAIN, WORTH_ENCRYPTED };

static int
is(const char *ns, const char *name, const char *want_ns, const char *want_name)
{
	return ns != NULL && strcmp(ns, want_ns) == 0 && strcmp(name, want_name) == 0;
}

/* Is this message worth waking a device for (the rules at the top)? */
static enum worth
message_worth(xmppd_elem *st, int mention)
{
	const char *type = xmppd_elem_attr(st, "type");
	enum worth w = NOT_WORTH;
	int encrypted = 0;

	/* A mention (xmppd_push_notify) is a groupchat its module chose. */
	if (!mention && type != NULL && (strcmp(type, "groupchat") == 0 ||
	    strcmp(type, "headline") == 0 || strcmp(type, "error") == 0))
		return NOT_WORTH;
	for (xmppd_elem *c = xmppd_elem_first_child(st); c != NULL;
	    c = xmppd_elem_next_sibling(c)) {
		const char *ns = xmppd_elem_ns(c), *name = xmppd_elem_name(c);

		if (ns == NULL) {
			if (strcmp(name, "body") == 0 && xmppd_elem_text(c)[0] != '\0')
				w = WORTH_PLAIN;
			continue;
		}
		/* What the server makes for clients: XEP-0280 copies,
		 * XEP-0313 results, pubsub (PEP) events. */
		if (strcmp(ns, "urn:xmpp:carbons:2") == 0 || strcmp(ns, "urn:xmpp:mam:2") == 0 ||
		    strcmp(ns, "http://jabber.org/protocol/pubsub#event") == 0)
			return NOT_WORTH;
		if (is(ns, name, "eu.siacs.conversations.axolotl", "encrypted") ||
		    is(ns, name, "urn:xmpp:omemo:1", "encrypted") ||
		    is(ns, name, "urn:xmpp:omemo:2", "encrypted") ||
		    is(ns, name, "jabber:x:encrypted", "x") ||
		    is(ns, name, "urn:xmpp:openpgp:0", "openpgp"))
			encrypted = 1;
		else if (is(ns, name, "urn:xmpp:jingle-message:0", "propose"))
			w = WORTH_PLAIN;
	}
	return encrypted ? WORTH_ENCRYPTED : w;
}

static void
form_field(xmppd_elem *x, const char *var, const char *type, const char *value)
{
	xmppd_elem *f = xmppd_elem_add_child(x, NS_XDATA, "field"), *v;

	xmppd_elem_set_attr(f, "var", var);
	if (type != NULL)
		xmppd_elem_set_attr(f, "type", type);
	v = xmppd_elem_add_child(f, NS_XDATA, "value");
	xmppd_elem_add_text(v, value, strlen(value));
}

/* The publish for r (reg_lock held: it reads r). body NULL: none (the
 * caller never gives one for an encrypted message). */
static xmppd_elem *
notification_make(const char *bare, const struct reg *r, const char *sender, const char *body,
    int encrypted)
{
	xmppd_elem *iq = xmppd_elem_new(NULL, "iq"), *ps, *pub, *item, *n, *x, *po, *form;
	char num[32];

	xmppd_elem_set_attr(iq, "type", "set");
	xmppd_elem_set_attr(iq, "from", bare);
	xmppd_elem_set_attr(iq, "to", r->app);
	ps = xmppd_elem_add_child(iq, NS_PUBSUB, "pubsub");
	pub = xmppd_elem_add_child(ps, NS_PUBSUB, "publish");
	if (r->pnode[0] != '\0')
		xmppd_elem_set_attr(pub, "node", r->pnode);
	item = xmppd_elem_add_child(pub, NS_PUBSUB, "item");
	n = xmppd_elem_add_child(item, NS_PUSH, "notification");
	/* XEP-0357 7 and 11.3.1: the summary form. */
	x = xmppd_elem_add_child(n, NS_XDATA, "x");
	xmppd_elem_set_attr(x, "type", "submit");
	form_field(x, "FORM_TYPE", "hidden", FORM_SUMMARY);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)r->messages);
	form_field(x, "message-count", NULL, num);
	if (r->subscriptions > 0) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)r->subscriptions);
		form_field(x, "pending-subscription-count", NULL, num);
	}
	if (sender != NULL)
		form_field(x, "last-message-sender", NULL, sender);
	if (body != NULL)
		form_field(x, "last-message-body", NULL, body);
	if (encrypted)
		(void)xmppd_elem_add_child(n, NS_PUSH, "encrypted");
	/* XEP-0357 7: the options given at enable, as publish-options. */
	if (r->options != NULL &&
	    (form = xmppd_elem_parse(r->options, strlen(r->options))) != NULL) {
		po = xmppd_elem_add_child(ps, NS_PUBSUB, "publish-options");
		xmppd_elem_append_copy(po, form);
		xmppd_elem_unref(form);
	}
	return iq;
}

/* reg_lock held: may r send one more now? Takes the slot if so. */
static int
rate_take(struct reg *r, uint64_t now)
{
	unsigned limit = (unsigned)xmppd_opt_int(module_ctx, "push_rate_limit");
	uint64_t window = (uint64_t)xmppd_opt_int(module_ctx, "push_rate_window") * 1000;

	if (r->ring_n != limit) {      /* first use, or a reload changed it */
		uint64_t *ring = calloc(limit, sizeof(*ring));

		if (ring == NULL)
			return 1;           /* better one too many than none */
		free(r->ring);
		r->ring = ring;
		r->ring_n = limit;
		r->ring_i = 0;
	}
	/* The slot holds the time of the limit-th notification back. */
	if (r->ring[r->ring_i] != 0 && now - r->ring[r->ring_i] < window)
		return 0;
	r->ring[r->ring_i] = now;
	r->ring_i = (r->ring_i + 1) % r->ring_n;
	return 1;
}

static void pushed(const xmppd_elem *reply, void *ud);

static void
pending_free(struct pending *p)
{
	free(p->bare);
	free(p->app);
	free(p->pnode);
	free(p);
}

/* reg_lock held. NULL: no memory (the notification then goes without
 * its reply being heard). */
static struct pending *
pending_new(const char *bare, const struct reg *r)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->bare = strdup(bare);
	p->app = strdup(r->app);
	p->pnode = strdup(r->pnode);
	p->serial = r->serial;
	if (p->bare == NULL || p->app == NULL || p->pnode == NULL) {
		pending_free(p);
		return NULL;
	}
	p->next = pendings;
	if (pendings != NULL)
		pendings->prev = p;
	pendings = p;
	return p;
}

/* reg_lock held. */
static void
pending_unlist(struct pending *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		pendings = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
}

/* A notification built under the lock, sent after it. */
struct outgoing {
	xmppd_elem *iq;
	struct pending *p;
};

static void
send_all(struct outgoing *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (out[i].p == NULL) {
			xmppd_route(out[i].iq);
			xmppd_elem_unref(out[i].iq);
			continue;
		}
		/* Not on a worker (a module routing from a control command):
		 * the publish goes, its reply is not heard. */
		if (xmppd_iq_request(module_ctx, xmppd_elem_ref(out[i].iq), REPLY_TIMEOUT_MS,
		    pushed, out[i].p) < 0) {
			pthread_mutex_lock(&reg_lock);
			pending_unlist(out[i].p);
			pthread_mutex_unlock(&reg_lock);
			pending_free(out[i].p);
			xmppd_route(out[i].iq);
		}
		xmppd_elem_unref(out[i].iq);
	}
}

/* What the session table says of the account's resources. */
struct res_list {
	struct res_seen {
		char *resource;
		unsigned flags;
		uint64_t ack_wait_since_ms;
	} *v;
	size_t n, cap;
	int nomem;
};

static void
res_collect(const struct xmppd_resource *r, void *ud)
{
	struct res_list *l = ud;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 8;
		struct res_seen *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL) {
			l->nomem = 1;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	if ((l->v[l->n].resource = strdup(r->resource)) == NULL) {
		l->nomem = 1;
		return;
	}
	l->v[l->n].flags = r->flags;
	l->v[l->n].ack_wait_since_ms = r->ack_wait_since_ms;
	l->n++;
}

static void
res_list_free(struct res_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].resource);
	free(l->v);
}

/* Does the session of resource sleep (the rules at the top)? */
static int
asleep(const struct res_list *l, const char *resource, uint64_t now)
{
	uint64_t ack_timeout = (uint64_t)xmppd_opt_int(module_ctx, "push_ack_timeout") * 1000;

	for (size_t i = 0; i < l->n; i++) {
		const struct res_seen *s = &l->v[i];

		if (strcmp(s->resource, resource) != 0)
			continue;
		if (s->flags & XMPPD_RES_DETACHED)
			return 1;       /* XEP-0198 5: no connection */
		return s->ack_wait_since_ms != 0 && now > s->ack_wait_since_ms &&
		    now - s->ack_wait_since_ms > ack_timeout;
	}
	return 1;                   /* not bound: offline */
}

/*
 * A message (subscription 0) or subscription request (1) for the local
 * account to, before the session manager delivers it: a detached
 * session is still detached, an offline account still offline. mention:
 * a message that concerns the account but does not go to it
 * (xmppd_push_notify): every registration is notified, awake or not, since
 * none of its sessions gets the message, and none is seen awake by it.
 * Returns how many notifications went.
 */
static int
notify(const xmppd_jid *to, xmppd_elem *st, int subscription, int mention)
{
	const char *bare, *sender, *body = NULL;
	struct res_list rl = { NULL, 0, 0, 0 };
	struct outgoing *out = NULL;
	size_t nout = 0, cap = 0;
	enum worth w = NOT_WORTH;
	struct account *a;
	uint64_t now;

	bare = xmppd_jid_bare(to);
	/* The hot path: one look-up for an account without registrations. */
	pthread_mutex_lock(&reg_lock);
	a = account_find(bare);
	pthread_mutex_unlock(&reg_lock);
	if (a == NULL || !xmppd_is_local_host(xmppd_jid_domain(to)))
		return 0;
	if (!subscription && (w = message_worth(st, mention)) == NOT_WORTH)
		return 0;
	sender = xmppd_elem_attr(st, "from");
	/* Never the body of an encrypted message: a fallback text. */
	if (w == WORTH_PLAIN && xmppd_opt_bool(module_ctx, "push_include_body")) {
		body = xmppd_elem_child_text(st, NULL, "body");
		if (body != NULL && body[0] == '\0')
			body = NULL;
	}
	if (!mention)
		(void)xmppd_user_resources(to, res_collect, &rl);
	if (rl.nomem) {
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: out of memory; no push", bare);
		res_list_free(&rl);
		return 0;
	}
	now = xmppd_now_ms();
	pthread_mutex_lock(&reg_lock);
	/* Found again: it may have gone while the lock was free. */
	for (struct reg *r = (a = account_find(bare)) != NULL ? a->regs : NULL; r != NULL;
	    r = r->next) {
		if (!mention && !asleep(&rl, r->resource, now)) {
			r->messages = r->subscriptions = 0;     /* awake */
			continue;
		}
		if (subscription)
			r->subscriptions++;
		else
			r->messages++;
		if (!rate_take(r, now))
			continue;       /* counted: the next one carries it */
		if (nout == cap) {
			size_t c = cap ? 2 * cap : 4;
			struct outgoing *v = realloc(out, c * sizeof(*v));

			if (v == NULL)
				break;
			out = v;
			cap = c;
		}
		out[nout].iq = notification_make(bare, r, subscription ? NULL : sender, body,
		    w == WORTH_ENCRYPTED);
		out[nout].p = pending_new(bare, r);
		nout++;
	}
	pthread_mutex_unlock(&reg_lock);
	res_list_free(&rl);
	send_all(out, nout);
	free(out);
	return (int)nout;
}

/* filter_packet: every message routed (the rules at the top say which
 * are worth it). */
static enum xmppd_result
filter(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	const char *kind = xmppd_stanza_kind(pa->stanza);

	if (kind != NULL && strcmp(kind, "message") == 0 && pa->to != NULL &&
	    xmppd_jid_node(pa->to) != NULL)
		(void)notify(pa->to, pa->stanza, 0, 0);
	return XMPPD_CONTINUE;
}

/*
 * roster_in_subscription, after the roster module (50): a subscription
 * request (RFC 6121 3.1.3) the user is to see. Not filter_packet: the
 * roster module routes such a request once on its way in and again, once
 * recorded, for delivery; the hook runs for the second pass only after
 * it, and not at all for a request it answers itself (a contact the user
 * approved already, 3.1.3), which no device needs to be woken for.
 */
static enum xmppd_result
in_subscription(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	const char *type = xmppd_elem_attr(pa->stanza, "type");

	if (type != NULL && strcmp(type, "subscribe") == 0 && pa->to != NULL &&
	    xmppd_jid_node(pa->to) != NULL)
		(void)notify(pa->to, pa->stanza, 1, 0);
	return XMPPD_CONTINUE;
}

/* xmppd_push_notify's provider (ABI 1.7): a message that concerns the
 * account user without going to it (a mention in a room it is not in). */
static int
provide_notify(const xmppd_jid *user, const xmppd_elem *msg)
{
	xmppd_jid *bare = xmppd_jid_parse(xmppd_jid_bare(user));
	int n = 0;

	if (bare != NULL && xmppd_jid_node(bare) != NULL)
		n = notify(bare, (xmppd_elem *)msg, 0, 1);
	xmppd_jid_free(bare);
	return n;
}

/* ---------------------------------------------------------------- */
/* The app server's answers.                                          */

static void
removed(int status, void *ud)
{
	char *what = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: cannot remove the registration from "
		    "the store; it comes back at the next start", what);
	free(what);
}

/* Deletes a registration's row (memory is done already). */
static void
store_remove(const char *bare, const char *app, const char *pnode)
{
	char key[KEY_MAX], *what = NULL;
	xmppd_jid *j = xmppd_jid_parse(bare);
	xmppd_batch *b = NULL;
	size_t klen;

	if (j == NULL || xmppd_jid_node(j) == NULL ||
	    (klen = reg_key(key, xmppd_jid_domain(j), xmppd_jid_node(j), app, pnode)) == 0 ||
	    asprintf(&what, "%s (%s, node '%s')", bare, app, pnode) < 0 ||
	    (b = xmppd_batch_new(module_ctx)) == NULL ||
	    xmppd_batch_del(b, TABLE, key, klen) < 0) {
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: cannot remove the registration for %s "
		    "from the store", bare, app);
		xmppd_batch_free(b);
		free(what);
		xmppd_jid_free(j);
		return;
	}
	xmppd_jid_free(j);
	if (xmppd_batch_submit(b, removed, what) < 0)
		removed(XMPPD_STORE_ERROR, what);
}

/* The <error/> of a reply. In the content namespace, or in one of the
 * stream namespaces written out: slixmpp's components send
 * <error xmlns='jabber:client'/> on a jabber:component:accept stream. */
static xmppd_elem *
error_child(const xmppd_elem *reply)
{
	for (xmppd_elem *c = xmppd_elem_first_child(reply); c != NULL;
	    c = xmppd_elem_next_sibling(c)) {
		const char *ns = xmppd_elem_ns(c);

		if (strcmp(xmppd_elem_name(c), "error") == 0 && (ns == NULL ||
		    strcmp(ns, "jabber:client") == 0 || strcmp(ns, "jabber:server") == 0 ||
		    strcmp(ns, "jabber:component:accept") == 0))
			return c;
	}
	return NULL;
}

/* Errors that say nothing of the registration (the rules at the top). */
static int
transient(const xmppd_elem *reply)
{
	xmppd_elem *e = error_child(reply);
	const char *type = e != NULL ? xmppd_elem_attr(e, "type") : NULL;

	if (e == NULL)
		return 0;
	if (type != NULL && strcmp(type, "wait") == 0)
		return 1;
	return xmppd_elem_child(e, NS_STANZAS, "remote-server-not-found") != NULL ||
	    xmppd_elem_child(e, NS_STANZAS, "remote-server-timeout") != NULL;
}

static void
pushed(const xmppd_elem *reply, void *ud)
{
	struct pending *p = ud;
	const char *type = reply != NULL ? xmppd_elem_attr(reply, "type") : NULL;
	int gone = 0;

	pthread_mutex_lock(&reg_lock);
	pending_unlist(p);
	/* XEP-0357 7.1: an error disables the pair (the one this publish
	 * went to: not a newer enable of the same pair). */
	if (type != NULL && strcmp(type, "error") == 0 && !transient(reply)) {
		struct account *a = account_find(p->bare);
		struct reg **pp = a != NULL ? reg_slot(a, p->app, p->pnode) : NULL, *r;

		if (pp != NULL && (r = *pp) != NULL && r->serial == p->serial) {
			*pp = r->next;
			reg_free(r);
			account_drop_if_empty(a);
			gone = 1;
		}
	}
	pthread_mutex_unlock(&reg_lock);
	if (gone) {
		xmppd_log(module_ctx, XMPPD_LOG_INFO, "%s: %s answered a notification with an "
		    "error; push to node '%s' disabled", p->bare, p->app, p->pnode);
		store_remove(p->bare, p->app, p->pnode);
	} else if (reply == NULL)
		xmppd_log(module_ctx, XMPPD_LOG_DEBUG, "%s: no answer from %s; the registration "
		    "stays", p->bare, p->app);
	pending_free(p);
}

/* ---------------------------------------------------------------- */
/* enable / disable (XEP-0357 5, 6).                                  */

/* An enable or disable being written. */
struct change {
	xmppd_elem *iq;             /* what the client sent, 'to' its bare JID */
	char *bare;
	struct reg *reg;            /* enable: to install */
	int disable;
	char *app, *pnode;          /* disable: pnode NULL = every node */
};

static void
change_free(struct change *c)
{
	xmppd_elem_unref(c->iq);
	free(c->bare);
	reg_free(c->reg);
	free(c->app);
	free(c->pnode);
	free(c);
}

static void
changed(int status, void *ud)
{
	struct change *c = ud;

	if (status != XMPPD_STORE_OK) {
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: cannot store a push %s",
		    c->bare, c->disable ? "disable" : "enable");
		xmppd_iq_error(c->iq, "internal-server-error", NULL);
		change_free(c);
		return;
	}
	pthread_mutex_lock(&reg_lock);
	if (!c->disable) {
		struct account *a = account_get(c->bare);

		if (a != NULL) {
			reg_install(a, c->reg);
			c->reg = NULL;
		}
	} else {
		struct account *a = account_find(c->bare);

		for (struct reg **pp = a != NULL ? &a->regs : NULL; pp != NULL && *pp != NULL;) {
			struct reg *r = *pp;

			if (strcmp(r->app, c->app) == 0 &&
			    (c->pnode == NULL || strcmp(r->pnode, c->pnode) == 0)) {
				*pp = r->next;
				reg_free(r);
			} else
				pp = &r->next;
		}
		if (a != NULL)
			account_drop_if_empty(a);
	}
	pthread_mutex_unlock(&reg_lock);
	if (c->reg != NULL) {
		/* Stored, but no memory to keep it: it works from the next
		 * start. Say so rather than pretend. */
		xmppd_iq_error(c->iq, "resource-constraint", NULL);
	} else
		xmppd_iq_reply(c->iq, NULL);
	change_free(c);
}

/* Step of a disable without a node: every row of the account with app. */
static int
disable_row(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
    void *ud)
{
	struct change *c = ud;
	const char *part[4];

	if (key_split(key, klen, part) == 0 && strcmp(part[2], c->app) == 0)
		return xmppd_batch_del(b, TABLE, key, klen) < 0 ? -1 : 0;
	return 0;
}

/* After a disable of (app, pnode: NULL every node) by s: does s keep a
 * registration? Its flag says so (XMPPD_RES_PUSH). */
static void
flags_after_disable(xmppd_session *s, const char *app, const char *pnode)
{
	const xmppd_jid *me = xmppd_session_jid(s);
	const char *res = xmppd_jid_resource(me);
	struct account *a;
	int has = 0;

	pthread_mutex_lock(&reg_lock);
	if ((a = account_find(xmppd_jid_bare(me))) != NULL)
		for (struct reg *r = a->regs; r != NULL; r = r->next)
			if (strcmp(r->resource, res) == 0 && (strcmp(r->app, app) != 0 ||
			    (pnode != NULL && strcmp(r->pnode, pnode) != 0)))
				has = 1;
	pthread_mutex_unlock(&reg_lock);
	xmppd_session_set_flags(s, XMPPD_RES_PUSH, has ? XMPPD_RES_PUSH : 0);
}

/* Handles an enable or disable the session sent; the reply comes from
 * changed() once the store has it. */
static void
enable_disable(xmppd_session *s, xmppd_elem *iq, xmppd_elem *el, int disable)
{
	const xmppd_jid *me = xmppd_session_jid(s);
	const char *host = xmppd_jid_domain(me), *node = xmppd_jid_node(me);
	const char *japp = xmppd_elem_attr(el, "jid"), *pnode = xmppd_elem_attr(el, "node");
	xmppd_elem *reply_to, *form;
	xmppd_jid *app = NULL;
	struct change *c = NULL;
	xmppd_batch *b = NULL;
	char key[KEY_MAX], prefix[KEY_MAX], *opts = NULL, *rec = NULL;
	size_t klen, plen, olen = 0, rlen;

	/* Answered from the bare JID it was addressed to (RFC 6120 10.3.3). */
	reply_to = xmppd_elem_copy(iq);
	xmppd_elem_set_attr(reply_to, "to", xmppd_jid_bare(me));
	/* XEP-0357 5, 6: 'jid' MUST be there. */
	if (japp == NULL || (app = xmppd_jid_parse(japp)) == NULL) {
		xmppd_iq_error(reply_to, "bad-request", japp == NULL ? "no 'jid'" : "a bad 'jid'");
		goto done;
	}
	/* Pushing to oneself would loop (mod_cloud_notify refuses it too). */
	if (!disable && strcmp(xmppd_jid_bare(app), xmppd_jid_bare(me)) == 0) {
		xmppd_iq_error(reply_to, "bad-request", "'jid' is the account itself");
		goto done;
	}
	if (pnode == NULL)
		pnode = "";
	if ((klen = reg_key(key, host, node, xmppd_jid_full(app), pnode)) == 0) {
		xmppd_iq_error(reply_to, "not-acceptable", "'jid' and 'node' are too long");
		goto done;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->bare = strdup(xmppd_jid_bare(me))) == NULL ||
	    (b = xmppd_batch_new(module_ctx)) == NULL)
		goto nomem;
	c->disable = disable;
	if (disable) {
		if ((c->app = strdup(xmppd_jid_full(app))) == NULL)
			goto nomem;
		if (xmppd_elem_attr(el, "node") != NULL) {
			/* XEP-0357 6: that pair only. */
			if ((c->pnode = strdup(pnode)) == NULL)
				goto nomem;
			(void)xmppd_batch_del(b, TABLE, key, klen);
		} else {
			/* Every node of that app server. */
			plen = xmppd_store_key(prefix, sizeof(prefix), host, node, (char *)NULL);
			(void)xmppd_batch_scan(b, TABLE, prefix, plen, disable_row, c);
		}
		flags_after_disable(s, c->app, c->pnode);
	} else {
		struct account *a;
		int full;

		if ((form = xmppd_elem_child(el, NS_XDATA, "x")) != NULL &&
		    (opts = xmppd_elem_to_string(form, &olen)) == NULL)
			goto nomem;
		if (olen > OPTIONS_MAX) {
			xmppd_iq_error(reply_to, "not-acceptable", "the publish-options form is "
			    "too large");
			goto done;
		}
		pthread_mutex_lock(&reg_lock);
		a = account_find(c->bare);
		full = a != NULL && *reg_slot(a, xmppd_jid_full(app), pnode) == NULL &&
		    reg_count(a) >= (size_t)xmppd_opt_int(module_ctx, "push_max_registrations");
		pthread_mutex_unlock(&reg_lock);
		if (full) {
			/* RFC 6120 8.3.3.18: a limit was reached. */
			xmppd_iq_error(reply_to, "resource-constraint", "too many push registrations");
			goto done;
		}
		if ((c->reg = reg_new(xmppd_jid_full(app), pnode, xmppd_jid_resource(me), opts,
		    olen)) == NULL ||
		    (rec = record_make(xmppd_jid_resource(me), opts, olen, &rlen)) == NULL)
			goto nomem;
		(void)xmppd_batch_put(b, TABLE, key, klen, rec, rlen);
		xmppd_session_set_flags(s, XMPPD_RES_PUSH, XMPPD_RES_PUSH);
	}
	c->iq = reply_to;
	reply_to = NULL;
	if (xmppd_batch_submit(b, changed, c) < 0) {
		b = NULL;
		reply_to = c->iq;
		c->iq = NULL;
		goto nomem;
	}
	b = NULL;
	c = NULL;
	goto done;
nomem:
	xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: out of memory for a push %s",
	    xmppd_jid_bare(me), disable ? "disable" : "enable");
	xmppd_iq_error(reply_to, "internal-server-error", NULL);
done:
	xmppd_batch_free(b);
	if (c != NULL)
		change_free(c);
	xmppd_elem_unref(reply_to);
	xmppd_jid_free(app);
	free(opts);
	free(rec);
}

/* user_send_packet: <iq type='set'> to nobody or to the sender's own bare
 * JID carrying <enable/> or <disable/> (XEP-0357 5, 6). In this hook, not
 * an IQ handler, because a registration belongs to the sending session. */
static enum xmppd_result
send_packet(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	const char *kind = xmppd_stanza_kind(pa->stanza), *type, *name;
	xmppd_elem *el;

	if (kind == NULL || strcmp(kind, "iq") != 0 || pa->session == NULL ||
	    (type = xmppd_elem_attr(pa->stanza, "type")) == NULL || strcmp(type, "set") != 0 ||
	    (el = xmppd_elem_first_child(pa->stanza)) == NULL ||
	    xmppd_elem_ns(el) == NULL || strcmp(xmppd_elem_ns(el), NS_PUSH) != 0)
		return XMPPD_CONTINUE;
	if (pa->to != NULL && (xmppd_jid_resource(pa->to) != NULL ||
	    strcmp(xmppd_jid_bare(pa->to), xmppd_jid_bare(pa->from)) != 0))
		return XMPPD_CONTINUE;  /* someone else's business */
	if (xmppd_elem_attr(pa->stanza, "id") == NULL)
		return XMPPD_CONTINUE;  /* the core answers bad-request */
	name = xmppd_elem_name(el);
	if (strcmp(name, "enable") == 0)
		enable_disable(pa->session, pa->stanza, el, 0);
	else if (strcmp(name, "disable") == 0)
		enable_disable(pa->session, pa->stanza, el, 1);
	else
		return XMPPD_CONTINUE;
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Sessions and accounts.                                             */

/* The session binds (again) or is resumed: it is awake, its counts start
 * over (message-count: since the session was last seen active). */
static enum xmppd_result
session_awake(void *args, void *ud)
{
	struct xmppd_session_args *sa = args;
	const xmppd_jid *j = xmppd_session_jid(sa->session);
	const char *res = xmppd_jid_resource(j);
	struct account *a;
	int has = 0;

	if (res == NULL)
		return XMPPD_CONTINUE;
	pthread_mutex_lock(&reg_lock);
	if ((a = account_find(xmppd_jid_bare(j))) != NULL)
		for (struct reg *r = a->regs; r != NULL; r = r->next)
			if (strcmp(r->resource, res) == 0) {
				r->messages = r->subscriptions = 0;
				has = 1;
			}
	pthread_mutex_unlock(&reg_lock);
	if (has)
		xmppd_session_set_flags(sa->session, XMPPD_RES_PUSH, XMPPD_RES_PUSH);
	return XMPPD_CONTINUE;
}

/* The account goes: its rows go with it (a user table), memory here. */
static enum xmppd_result
remove_user(void *args, void *ud)
{
	struct xmppd_user_args *ua = args;
	struct account *a;
	char *bare;

	if (asprintf(&bare, "%s@%s", ua->node, ua->host) < 0)
		return XMPPD_CONTINUE;
	pthread_mutex_lock(&reg_lock);
	if ((a = account_find(bare)) != NULL) {
		tdelete(a, &accounts, account_cmp);
		account_free(a);
	}
	pthread_mutex_unlock(&reg_lock);
	free(bare);
	return XMPPD_CONTINUE;
}

/* ---------------------------------------------------------------- */

/*
 * The registrations are read once, here: on the main thread, before any
 * hook of ours runs, so nothing waits for it (the synchronous store is
 * deprecated because it blocks a worker; there is none to block). A
 * failed read fails the load: running without them would silently stop
 * every device's notifications.
 */
static int
load_all(xmppd_ctx *ctx)
{
	xmppd_txn *txn = xmppd_store_begin(0);
	size_t n = 0;
	int r;

	if (txn == NULL) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot read %s", TABLE);
		return -1;
	}
	pthread_mutex_lock(&reg_lock);
	r = xmppd_store_scan(txn, TABLE, "", 0, load_row, &n);
	pthread_mutex_unlock(&reg_lock);
	xmppd_store_abort(txn);
	if (r != 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot read %s", TABLE);
		return -1;
	}
	xmppd_log(ctx, XMPPD_LOG_INFO, "%zu push registrations", n);
	return 0;
}

static int
load(xmppd_ctx *ctx)
{
	module_ctx = ctx;
	if (xmppd_store_user_table(ctx, TABLE) < 0 || load_all(ctx) < 0)
		return -1;
	/* doc/hooks.md bands: enable/disable at 50 with the other request
	 * handlers; notifications at 75 in filter_packet, after mod_mam (60)
	 * and mod_carbons (70), so the stanza seen is the final one. */
	if (xmppd_hook_add(ctx, XMPPD_HOOK_USER_SEND_PACKET, NULL, 50, send_packet, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_FILTER_PACKET, NULL, 75, filter, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_ROSTER_IN_SUBSCRIPTION, NULL, 75, in_subscription,
	    NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_SM_SESSION_OPENED, NULL, 50, session_awake, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_SM_SESSION_RESUMED, NULL, 50, session_awake, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_REMOVE_USER, NULL, 50, remove_user, NULL) < 0 ||
	    xmppd_disco_account_feature(ctx, NS_PUSH) < 0 ||  /* XEP-0357 4.1 */
	    xmppd_push_provide(ctx, provide_notify) < 0)
		return -1;
	return 0;
}

/* Options are read where they are used. */
static int
reload(xmppd_ctx *ctx)
{
	return 0;
}

/* No hook runs any more; requests still waiting were dropped by the core
 * (their callbacks will not run): free what they held. */
static void
unload(xmppd_ctx *ctx)
{
	struct pending *p;

	while ((p = pendings) != NULL) {
		pendings = p->next;
		pending_free(p);
	}
	tdestroy(accounts, account_free);
	accounts = NULL;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.7: xmppd_push_provide */
	.name = "mod_push",
	.version = "1.0",
	.options = push_options,
	.load = load,
	.reload = reload,
	.unload = unload,
};
