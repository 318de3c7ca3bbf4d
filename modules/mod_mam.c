/*
 * mod_mam - XEP-0313 Message Archive Management (urn:xmpp:mam:2 and
 * #extended), XEP-0359 stanza ids, XEP-0441 archiving preferences,
 * XEP-0431 full-text search; the files are listed in mam.h.
 *
 * Archiving points (doc/hooks.md "Priority bands"):
 *  - user_send_packet, 60: a message a local client sends goes into the
 *    SENDER's archive (direction sent, the other party its 'to');
 *  - filter_packet, 60: a message routed to a local account goes into the
 *    RECIPIENT's archive (direction received, the other party its 'from'),
 *    and the routed stanza is replaced by a copy carrying
 *    <stanza-id xmlns='urn:xmpp:sid:0' by=ACCOUNT id=ID/> (XEP-0359 3).
 *    For every message routed to a local account, archived or not, any
 *    stanza-id whose 'by' is that account's bare JID goes first: it can
 *    only be a forgery (XEP-0359 3, Security Considerations). Others'
 *    stanza-ids and <origin-id/> stay.
 * A message to oneself (the 'to' has the sender's bare JID) is archived
 * once, as received. Messages to accounts that do not exist are not
 * archived.
 *
 * What is archived (XEP-0313 6.1.1, which asks for chat and normal
 * messages with a body and allows other non-conversation messages):
 *  - type chat or normal (an unknown type counts as normal, RFC 6121
 *    5.2.2) with a <body/> or a <subject/>, or with a payload clients
 *    need in the history of every device: XEP-0184 receipts (requests and
 *    <received/>), XEP-0333 chat markers (how read state syncs between
 *    devices), an encrypted payload (XEP-0384 OMEMO, XEP-0380), invitations
 *    (XEP-0249, XEP-0045 mediated) and call setup (XEP-0353);
 *  - XEP-0334 hints: <no-store/> and <no-permanent-store/> exclude it,
 *    <store/> includes any chat or normal message (a lone chat state too);
 *  - never: errors, groupchat (a room keeps its own archive), headline,
 *    standalone chat states (XEP-0085: ephemeral), and what the server
 *    made for a client: a MAM <result/>, a carbon copy (XEP-0280 <sent/>
 *    or <received/>; mod_carbons delivers its copies with xmppd_deliver,
 *    which does not run filter_packet, so a message is archived once
 *    whatever the number of copies).
 * Then the owner's preferences (XEP-0441) decide per contact; with
 * default 'roster' and no list naming the contact, the roster query
 * (xmppd_roster_subscription) does, while the sending stream waits: a
 * received message is held (the hook STOPs it) and routed again from the
 * answer's callback, passing this hook untouched.
 *
 * A received message that is archived is routed once its batch has
 * completed (again from the callback), so a client never sees a
 * stanza-id the archive does not have yet.
 *
 * Durability (DESIGN.md "Data layer"): the row, its 'with' index row and
 * its full-text rows are one batch, submitted from the hook, so the
 * stream that sent the message handles nothing more until the batch is
 * committed (group commit): a stream-management <a/> never covers a
 * message that is not archived (t1511).
 *
 * Preferences are read on every archived message, so the module keeps
 * every user's preferences in memory (only users who set some, or whose
 * retention was set with xmppctl, have any), read from the store once at
 * load and updated with each change; a change is committed before it is
 * answered. On several nodes each node would need the others' changes:
 * not handled (one node today).
 */
#define _GNU_SOURCE             /* tdestroy */
#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "mam.h"
#include "mam_text.h"

#define NS_RECEIPTS "urn:xmpp:receipts"
#define NS_MARKERS "urn:xmpp:chat-markers:0"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"

static const struct xmppd_option options[] = {
	/* Seconds a message is kept (0: for ever); xmppctl archive expiry
	 * sets it per user. */
	{ "archive_expiry", XMPPD_OPT_INT, "0", 0, 20L * 365 * 86400 },
	/* The largest page a query gets (XEP-0313 4.1.4: a larger <max/>
	 * is capped, not refused). */
	{ "mam_max_page", XMPPD_OPT_INT, "250", 1, 10000 },
	/* XEP-0441: the default of a user who has not set one. */
	{ "default_mode", XMPPD_OPT_STRING, "always", 0, 0 },
	/* Seconds between two runs of the retention purge. */
	{ "purge_interval", XMPPD_OPT_INT, "600", 1, 86400 },
	{ NULL, 0, NULL, 0, 0 },
};

xmppd_ctx *mam_ctx;
/* The users' archives (mam.h: user tables). */
const struct mam_archive mam_arch = { MAM_TABLE, MAM_TABLE_WITH, MAM_TABLE_FT, 0, NULL,
    0 };
static int default_mode = MAM_ALWAYS;

/* ---------------------------------------------------------------- */
/* Preferences in memory.                                             */

struct pentry {
	char *bare;
	struct mam_prefs p;
};

static pthread_rwlock_t prefs_lock = PTHREAD_RWLOCK_INITIALIZER;
static void *prefs_tree;

static int
pentry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pentry *)a)->bare, ((const struct pentry *)b)->bare);
}

static void
pentry_free(void *e)
{
	struct pentry *pe = e;

	mam_prefs_clear(&pe->p);
	free(pe->bare);
	free(pe);
}

static struct pentry *
pentry_find(const char *bare)
{
	struct pentry key = { (char *)bare, { 0 } };
	void *found = tfind(&key, &prefs_tree, pentry_cmp);

	return found != NULL ? *(struct pentry **)found : NULL;
}

static int
list_copy(char ***dst, size_t *dn, char **src, size_t n)
{
	*dst = NULL;
	*dn = 0;
	if (n == 0)
		return 0;
	if ((*dst = calloc(n, sizeof(**dst))) == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (((*dst)[i] = strdup(src[i])) == NULL)
			return -1;
		(*dn)++;
	}
	return 0;
}

static int
prefs_get(const char *bare, struct mam_prefs *p, int raw)
{
	struct pentry *pe;
	int r = 0;

	memset(p, 0, sizeof(*p));
	p->def = raw ? MAM_UNSET : default_mode;
	p->expiry = -1;
	pthread_rwlock_rdlock(&prefs_lock);
	if ((pe = pentry_find(bare)) != NULL) {
		p->def = pe->p.def == MAM_UNSET && !raw ? default_mode : pe->p.def;
		p->expiry = pe->p.expiry;
		if (list_copy(&p->always, &p->n_always, pe->p.always, pe->p.n_always) < 0 ||
		    list_copy(&p->never, &p->n_never, pe->p.never, pe->p.n_never) < 0)
			r = -1;
	}
	pthread_rwlock_unlock(&prefs_lock);
	if (r < 0)
		mam_prefs_clear(p);
	return r;
}

int
mam_prefs_get(const char *bare, struct mam_prefs *p)
{
	return prefs_get(bare, p, 0);
}

int
mam_prefs_get_raw(const char *bare, struct mam_prefs *p)
{
	return prefs_get(bare, p, 1);
}

void
mam_prefs_cache_put(const char *bare, struct mam_prefs *p)
{
	struct pentry *pe, *old;

	pthread_rwlock_wrlock(&prefs_lock);
	if ((old = pentry_find(bare)) != NULL) {
		tdelete(old, &prefs_tree, pentry_cmp);
		pentry_free(old);
	}
	if (p != NULL) {
		if ((pe = calloc(1, sizeof(*pe))) == NULL || (pe->bare = strdup(bare)) == NULL ||
		    tsearch(pe, &prefs_tree, pentry_cmp) == NULL) {
			xmppd_log(mam_ctx, XMPPD_LOG_ERROR, "%s: out of memory keeping the "
			    "archiving preferences; the defaults apply until a restart", bare);
			if (pe != NULL)
				free(pe->bare);
			free(pe);
			mam_prefs_clear(p);
		} else {
			pe->p = *p;
			memset(p, 0, sizeof(*p));
		}
	}
	pthread_rwlock_unlock(&prefs_lock);
}

int64_t
mam_expiry_of(const char *bare)
{
	struct pentry *pe;
	int64_t e = -1;

	pthread_rwlock_rdlock(&prefs_lock);
	if ((pe = pentry_find(bare)) != NULL)
		e = pe->p.expiry;
	pthread_rwlock_unlock(&prefs_lock);
	return e >= 0 ? e : xmppd_opt_int(mam_ctx, "archive_expiry");
}

/* 1 if user's preferences let the message with contact be archived, 0
 * if not, -1 if the roster decides (default='roster' and neither list
 * names the contact, XEP-0441 2). */
static int
prefs_allow(const char *user, const xmppd_jid *contact)
{
	const char *cbare = xmppd_jid_bare(contact);
	const char *cfull = xmppd_jid_resource(contact) != NULL ? xmppd_jid_full(contact) : NULL;
	struct pentry *pe;
	int rule;

	pthread_rwlock_rdlock(&prefs_lock);
	if ((pe = pentry_find(user)) != NULL)
		rule = mam_prefs_rule(&pe->p, default_mode, cbare, cfull);
	else
		rule = default_mode == MAM_ALWAYS ? 1 : default_mode == MAM_NEVER ? 0 : -1;
	pthread_rwlock_unlock(&prefs_lock);
	return rule;
}

/* What the roster query says for 'roster': archived if the contact is in
 * the user's roster; with no roster module loaded (sub < 0), archived as
 * with 'always' (losing history is worse than keeping it). */
static int
roster_allows(int sub)
{
	return sub < 0 || (sub & XMPPD_SUB_IN_ROSTER) != 0;
}

/* At load (main thread; the synchronous store is allowed there). */
static int
prefs_load_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	char host[MAM_KEY_MAX], node[MAM_KEY_MAX], bare[2 * MAM_KEY_MAX];
	struct mam_prefs p;
	size_t plen = mam_key_user(key, klen, host, node);

	if (plen == 0 || plen != klen || mam_prefs_decode(val, vlen, &p) < 0) {
		xmppd_log(mam_ctx, XMPPD_LOG_WARNING, "an unreadable row in %s: ignored",
		    MAM_TABLE_PREFS);
		return 0;
	}
	snprintf(bare, sizeof(bare), "%s@%s", node, host);
	mam_prefs_cache_put(bare, &p);
	(*(size_t *)ud)++;
	return 0;
}

static int
prefs_load(void)
{
	xmppd_txn *txn = xmppd_store_begin(0);
	size_t n = 0;
	int r;

	if (txn == NULL)
		return -1;
	r = xmppd_store_scan(txn, MAM_TABLE_PREFS, "", 0, prefs_load_row, &n);
	xmppd_store_abort(txn);
	if (r < 0)
		return -1;
	xmppd_log(mam_ctx, XMPPD_LOG_DEBUG, "archiving preferences of %zu users", n);
	return 0;
}

/* ---------------------------------------------------------------- */
/* What is archived.                                                  */

static int
is_ns(const char *ns, const char *want)
{
	return ns != NULL && strcmp(ns, want) == 0;
}

/* XEP-0313 6.1.1 and XEP-0334 (the rules at the top). */
static int
archivable(const xmppd_elem *st)
{
	const char *type = xmppd_stanza_type(st);
	int worth = 0, store_hint = 0;

	if (type != NULL && (strcmp(type, "error") == 0 || strcmp(type, "groupchat") == 0 ||
	    strcmp(type, "headline") == 0))
		return 0;
	for (xmppd_elem *c = xmppd_elem_first_child(st); c != NULL;
	    c = xmppd_elem_next_sibling(c)) {
		const char *ns = xmppd_elem_ns(c), *name = xmppd_elem_name(c);

		if (is_ns(ns, NS_HINTS)) {
			if (strcmp(name, "no-store") == 0 || strcmp(name, "no-permanent-store") == 0)
				return 0;
			if (strcmp(name, "store") == 0)
				store_hint = 1;
		} else if ((is_ns(ns, NS_MAM) && strcmp(name, "result") == 0) ||
		    (is_ns(ns, NS_CARBONS) && (strcmp(name, "sent") == 0 ||
		    strcmp(name, "received") == 0)))
			return 0;       /* made by a server for a client */
		else if (ns == NULL && (strcmp(name, "body") == 0 || strcmp(name, "subject") == 0))
			worth = 1;
		else if (is_ns(ns, NS_RECEIPTS) || is_ns(ns, NS_MARKERS) ||
		    is_ns(ns, "eu.siacs.conversations.axolotl") || is_ns(ns, "urn:xmpp:omemo:2") ||
		    is_ns(ns, "urn:xmpp:eme:0") || is_ns(ns, "jabber:x:conference") ||
		    is_ns(ns, "http://jabber.org/protocol/muc#user") ||
		    is_ns(ns, "urn:xmpp:jingle-message:0") || is_ns(ns, "urn:xmpp:jingle-message:1"))
			worth = 1;
	}
	return worth || store_hint;
}

static int
is_message(const xmppd_elem *st)
{
	const char *kind = xmppd_stanza_kind(st);

	return kind != NULL && strcmp(kind, "message") == 0;
}

static void
batch_put_empty(const char *table, const void *key, size_t klen, void *ud)
{
	(void)xmppd_batch_put(ud, table, key, klen, "", 0);
}

/* The copy being routed again from our callbacks (this worker's). */
static __thread const xmppd_elem *reinjecting;

struct archived {
	char bare[2 * MAM_KEY_MAX];
	uint64_t id;
	xmppd_elem *route;          /* routed once archived, or NULL */
};

/* Routes st again: filter passes it untouched. */
static void
reroute(xmppd_elem *st)
{
	reinjecting = st;
	xmppd_route(st);
	reinjecting = NULL;
}

static void
archived(int status, void *ud)
{
	struct archived *a = ud;
	char idt[MAM_ID_TEXT + 1];

	mam_id_format(a->id, idt);
	if (status != XMPPD_STORE_OK)
		xmppd_log(mam_ctx, XMPPD_LOG_ERROR, "%s: message %s could not be archived "
		    "(store status %d)", a->bare, idt, status);
	if (a->route != NULL) {
		/* Delivered even so: a message is not lost for its archive. */
		reroute(a->route);
		xmppd_elem_unref(a->route);
	}
	free(a);
}

/*
 * One batch: the row, its 'with' row, its full-text rows. The stream
 * that sent the message waits for it (the hook started it). route (a
 * reference, taken when 0 is returned) is routed once the batch has
 * completed. 0, or -1: nothing submitted (route is the caller's).
 */
static int
archive(const char *host, const char *node, uint64_t id, int dir, const xmppd_jid *with,
    const xmppd_elem *msg, xmppd_elem *route)
{
	struct mam_rec r = { 0 };
	char key[MAM_KEY_MAX];
	unsigned char *val = NULL;
	struct archived *a = NULL;
	xmppd_batch *b = NULL;
	size_t klen, vlen;
	char *text;

	if ((text = xmppd_elem_to_string(msg, &r.msg_len)) == NULL)
		goto fail;
	r.ts_us = id;
	r.dir = dir;
	r.with_bare = xmppd_jid_bare(with);
	r.with_full = xmppd_jid_full(with);
	r.msg = text;
	if ((klen = mam_user_prefix(key, host, node)) == 0 ||
	    (val = mam_rec_encode(&r, &vlen)) == NULL || (a = calloc(1, sizeof(*a))) == NULL ||
	    (b = xmppd_batch_new(mam_ctx)) == NULL)
		goto fail;
	snprintf(a->bare, sizeof(a->bare), "%s@%s", node, host);
	a->id = id;
	a->route = route;
	mam_put_id((unsigned char *)key + klen, id);
	(void)xmppd_batch_put(b, MAM_TABLE, key, klen + MAM_ID_LEN, val, vlen);
	mam_index_keys(host, node, id, val, vlen, batch_put_empty, b);
	free(text);
	free(val);
	if (xmppd_batch_submit(b, archived, a) < 0) {
		/* Not on a worker (a module routing from the main thread). */
		xmppd_log(mam_ctx, XMPPD_LOG_WARNING, "%s@%s: a message routed off the workers "
		    "is not archived", node, host);
		free(a);
		return -1;
	}
	return 0;
fail:
	xmppd_log(mam_ctx, XMPPD_LOG_ERROR, "%s@%s: out of memory archiving a message", node,
	    host);
	free(text);
	free(val);
	free(a);
	xmppd_batch_free(b);
	return -1;
}

/* A message waiting for the roster's answer ('roster' preferences). */
struct roster_wait {
	xmppd_elem *st;             /* the message (sent), the copy (received) */
	xmppd_jid *user, *contact;
};

static void
roster_wait_free(struct roster_wait *r)
{
	xmppd_elem_unref(r->st);
	xmppd_jid_free(r->user);
	xmppd_jid_free(r->contact);
	free(r);
}

static void
roster_out(int sub, void *ud)
{
	struct roster_wait *r = ud;

	if (roster_allows(sub))
		(void)archive(xmppd_jid_domain(r->user), xmppd_jid_node(r->user),
		    mam_id_next(mam_now_us()), MAM_DIR_OUT, r->contact, r->st, NULL);
	roster_wait_free(r);
}

/* A message a local client sends: into the sender's archive. */
static enum xmppd_result
user_send(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	const xmppd_jid *from = pa->from, *to = pa->to;
	struct roster_wait *r;
	int rule;

	if (pa->session == NULL || to == NULL || xmppd_jid_domain(to) == NULL ||
	    xmppd_jid_node(from) == NULL || !is_message(pa->stanza))
		return XMPPD_CONTINUE;
	/* To oneself: archived once, when routed to the account. */
	if (strcmp(xmppd_jid_bare(to), xmppd_jid_bare(from)) == 0)
		return XMPPD_CONTINUE;
	if (!archivable(pa->stanza) || (rule = prefs_allow(xmppd_jid_bare(from), to)) == 0)
		return XMPPD_CONTINUE;
	if (rule < 0 && (r = calloc(1, sizeof(*r))) != NULL) {
		/* The sending stream waits for the answer and the batch. */
		r->st = xmppd_elem_ref(pa->stanza);
		r->user = xmppd_jid_copy(from);
		r->contact = xmppd_jid_copy(to);
		if (r->user != NULL && r->contact != NULL &&
		    xmppd_roster_subscription(mam_ctx, from, to, roster_out, r) == 0)
			return XMPPD_CONTINUE;
		roster_wait_free(r);
	}
	(void)archive(xmppd_jid_domain(from), xmppd_jid_node(from), mam_id_next(mam_now_us()),
	    MAM_DIR_OUT, to, pa->stanza, NULL);
	return XMPPD_CONTINUE;
}

/* XEP-0359 3: a stanza-id claiming to be by the account itself. */
static int
forged_sid(const xmppd_elem *c, const char *bare)
{
	const char *by;
	xmppd_jid *j;
	int r;

	if (!is_ns(xmppd_elem_ns(c), NS_SID) || strcmp(xmppd_elem_name(c), "stanza-id") != 0)
		return 0;
	if ((by = xmppd_elem_attr(c, "by")) == NULL)
		return 0;
	if ((j = xmppd_jid_parse(by)) == NULL)
		return strcmp(by, bare) == 0;
	r = xmppd_jid_resource(j) == NULL && strcmp(xmppd_jid_bare(j), bare) == 0;
	xmppd_jid_free(j);
	return r;
}

/* The copy being routed again from roster_in (this worker's). */
/*
 * Archives copy (a received message) in the archive of to and gives it
 * its stanza-id; the copy is routed when the row is committed, so what a
 * client gets with a stanza-id is in the archive already (a query it
 * makes at once finds it; a crash cannot leave it with an id the
 * archive lacks). 1: the copy is taken (routed later); 0: it is the
 * caller's to route now.
 */
static int
archive_in(xmppd_elem *copy, const xmppd_jid *to, const xmppd_jid *from)
{
	char idt[MAM_ID_TEXT + 1];
	uint64_t id = mam_id_next(mam_now_us());
	xmppd_elem *sid;
	int later;

	later = archive(xmppd_jid_domain(to), xmppd_jid_node(to), id, MAM_DIR_IN, from, copy,
	    copy) == 0;
	mam_id_format(id, idt);
	sid = xmppd_elem_add_child(copy, NS_SID, "stanza-id");
	xmppd_elem_set_attr(sid, "by", xmppd_jid_bare(to));
	xmppd_elem_set_attr(sid, "id", idt);
	return later;
}

static void
roster_in(int sub, void *ud)
{
	struct roster_wait *r = ud;

	if (!roster_allows(sub) || archive_in(r->st, r->user, r->contact) == 0)
		reroute(r->st);
	else
		r->st = NULL;           /* archive_in took it */
	roster_wait_free(r);
}

/* A message routed to a local account: forged ids go, and into the
 * recipient's archive with a stanza-id. */
static enum xmppd_result
filter(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	const xmppd_jid *to = pa->to, *from = pa->from;
	const char *bare, *node;
	xmppd_elem *copy, *c, *next;
	struct roster_wait *r;
	int forged = 0, arch;

	if (to == NULL || (node = xmppd_jid_node(to)) == NULL || !is_message(pa->stanza) ||
	    !xmppd_is_local_host(xmppd_jid_domain(to)))
		return XMPPD_CONTINUE;
	bare = xmppd_jid_bare(to);
	for (c = xmppd_elem_first_child(pa->stanza); c != NULL && !forged;
	    c = xmppd_elem_next_sibling(c))
		forged = forged_sid(c, bare);
	/* Our own copy, routed again from our callbacks. (A module that holds
	 * a message which passed the filters routes it with
	 * xmppd_route_filtered: mod_offline's taken-back messages do not come
	 * here a second time.) */
	if (pa->stanza == reinjecting)
		return XMPPD_CONTINUE;
	arch = from != NULL && xmppd_jid_domain(from) != NULL && archivable(pa->stanza) &&
	    xmppd_user_exists(node, xmppd_jid_domain(to)) ? prefs_allow(bare, from) : 0;
	if (!forged && !arch)
		return XMPPD_CONTINUE;
	if ((copy = xmppd_elem_copy(pa->stanza)) == NULL) {
		xmppd_log(mam_ctx, XMPPD_LOG_ERROR, "out of memory: a message to %s dropped", bare);
		return XMPPD_DROP;      /* not with a forged id */
	}
	for (c = xmppd_elem_first_child(copy); c != NULL; c = next) {
		next = xmppd_elem_next_sibling(c);
		if (forged_sid(c, bare))
			xmppd_elem_remove_child(copy, c);
	}
	if (arch < 0 && (r = calloc(1, sizeof(*r))) != NULL) {
		/*
		 * 'roster': the copy waits for the roster's answer, then is
		 * routed from its callback, which passes this hook untouched
		 * (reinjecting); the sending stream waits meanwhile, so its
		 * stanzas stay in order (RFC 6120 10.1).
		 */
		r->st = copy;
		r->user = xmppd_jid_copy(to);
		r->contact = xmppd_jid_copy(from);
		if (r->user != NULL && r->contact != NULL &&
		    xmppd_roster_subscription(mam_ctx, to, from, roster_in, r) == 0)
			return XMPPD_STOP;  /* routed from roster_in */
		r->st = NULL;
		roster_wait_free(r);
	}
	if (arch && archive_in(copy, to, from))
		return XMPPD_STOP;      /* routed once archived */
	pa->stanza = copy;          /* the core drops the original */
	return XMPPD_CONTINUE;
}

/* The account's preferences go with it (the core deletes the rows). */
static enum xmppd_result
user_gone(void *args, void *ud)
{
	struct xmppd_user_args *ua = args;
	char bare[2 * MAM_KEY_MAX];

	snprintf(bare, sizeof(bare), "%s@%s", ua->node, ua->host);
	mam_prefs_cache_put(bare, NULL);
	return XMPPD_CONTINUE;
}

/* ---------------------------------------------------------------- */

static int
read_options(xmppd_ctx *ctx)
{
	const char *m = xmppd_opt_string(ctx, "default_mode");

	if (m == NULL || strcmp(m, "always") == 0)
		default_mode = MAM_ALWAYS;
	else if (strcmp(m, "never") == 0)
		default_mode = MAM_NEVER;
	else if (strcmp(m, "roster") == 0)
		default_mode = MAM_ROSTER;
	else {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "default_mode: '%s' is none of always, never, "
		    "roster (XEP-0441)", m);
		return -1;
	}
	return 0;
}

static int
load(xmppd_ctx *ctx)
{
	static const char *const tables[] = { MAM_TABLE, MAM_TABLE_WITH, MAM_TABLE_FT,
	    MAM_TABLE_PREFS };

	mam_ctx = ctx;
	if (read_options(ctx) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
		if (xmppd_store_user_table(ctx, tables[i]) < 0)
			return -1;
	if (prefs_load() < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot read the archiving preferences");
		return -1;
	}
	if (xmppd_hook_add(ctx, XMPPD_HOOK_USER_SEND_PACKET, NULL, 60, user_send, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_FILTER_PACKET, NULL, 60, filter, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_REMOVE_USER, NULL, 50, user_gone, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_REGISTER_USER, NULL, 50, user_gone, NULL) < 0 ||
	    xmppd_iq_register(ctx, NULL, NS_MAM, XMPPD_IQ_GET | XMPPD_IQ_SET, XMPPD_IQ_ACCOUNT,
	    mam_iq, NULL) < 0 ||
	    xmppd_disco_account_feature(ctx, NS_MAM) < 0 ||
	    xmppd_disco_account_feature(ctx, NS_MAM_EXT) < 0 ||
	    xmppd_disco_account_feature(ctx, NS_SID) < 0 ||
	    xmppd_disco_account_feature(ctx, NS_FULLTEXT) < 0 ||
	    mam_ctl_register(ctx) < 0 || mam_purge_start(ctx) < 0)
		return -1;
	return 0;
}

static int
reload(xmppd_ctx *ctx)
{
	return read_options(ctx);
}

static void
unload(xmppd_ctx *ctx)
{
	pthread_rwlock_wrlock(&prefs_lock);
	tdestroy(prefs_tree, pentry_free);
	prefs_tree = NULL;
	pthread_rwlock_unlock(&prefs_lock);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.4: xmppd_store_arange, xmppd_deliver */
	.name = "mod_mam",
	.version = "1.0",
	.options = options,
	.load = load,
	.reload = reload,
	.unload = unload,
};
