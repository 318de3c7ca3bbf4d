/*
 * mod_blocking - XEP-0191: Blocking Command.
 *
 * A user keeps a list of blocked JIDs (urn:xmpp:blocking): <blocklist/>
 * reads it, <block/> and <unblock/> change it, and every change is pushed
 * to the user's resources that have read the list (XEP-0191 3.3, 3.4, 3.5).
 *
 * Storage: table mod_blocking, key "host NUL node NUL jid NUL" (the jid as
 * prepared by the JID parser), value one version byte. A user's list is one
 * key range. The store is used through the asynchronous API (ABI 1.2): a
 * get answers from its scan's callback, a block or unblock is one batch
 * answered from its done callback (deferred IQ replies).
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
 * The hooks decide as the stanza passes, so the lists they read are in
 * memory: a cache per worker (no locks), one entry per account.
 *  - A session's account is loaded when the session opens: the stream
 *    holds its next stanza (the initial presence) until the load has
 *    completed (RFC 6120 10.1). The entry is shared by the account's
 *    sessions on the worker, and becomes idle when the last one ends.
 *  - filter_packet runs on the sender's thread, where the recipient may
 *    have no session. A missing entry is loaded there on first need: the
 *    hook returns STOP, keeps the stanza, and decides when the load has
 *    completed (bounce, drop, or route it on); the sender's stream waits
 *    meanwhile, so its order is kept. Idle entries stay, a bounded number
 *    per worker, least recently used first out.
 *  - Freshness across workers: a counter per account (hashed, module-wide,
 *    atomic) grows when a change of the account's list completes (and when
 *    the account is created or removed). An entry remembers the count it
 *    was loaded at; filter_packet uses an entry only while the count is
 *    unchanged, and loads it again otherwise. The worker that made the
 *    change installs the new list itself, before the IQ result and the
 *    pushes go out.
 *  - user_send_packet cannot wait (the client stream goes on with the
 *    stanza after it): it uses the sender's entry as it is, and starts a
 *    reload when it is out of date (the stream's next stanza waits for
 *    it). What makes the entry current there in time is the push: on the
 *    way to a session of the account on another worker (user_receive_packet)
 *    the change is applied to that worker's entry, before the resource can
 *    see it. So a resource that has seen the push of a block cannot reach
 *    the blocked JID any more.
 *  - Store errors count as "not blocked" (the store logs them; refusing all
 *    traffic would be worse), as does a list a hook needs where the
 *    asynchronous store cannot be used (xmppd_route from the main thread).
 *
 * Presence on block and unblock (XEP-0191 3.3, 3.4), once the change is
 * durable, the result sent and the pushes out, for each JID newly blocked
 * or unblocked that has a node (a contact), after the roster query (ABI
 * 1.4) has said what the user and the contact share:
 *  - block, the contact receiving the user's presence (subscription from
 *    or both, RFC 6121 2.1.2.5): unavailable presence from each available
 *    resource of the user to the blocked JID (3.3), past this module's own
 *    filter, which would drop it; and, as nothing from the contact reaches
 *    the user any more, the user's available resources get unavailable
 *    presence from the contact's resources they were seeing (subscription
 *    to or both): each available resource of a local contact (or only the
 *    blocked one, for a full JID), the blocked JID itself for a remote
 *    contact, whose resources this server does not know;
 *  - unblock (3.4): the user's current presence, from each available
 *    resource, to the unblocked JID (from or both), and a probe from the
 *    user's bare JID to the contact (to or both, RFC 6121 4.3) so that the
 *    contact's presence, hidden by the unavailable presence above, comes
 *    back. These are routed as usual: a JID still blocked by another item
 *    gets nothing.
 * Domain items (and domain/resource) name no contact: the roster query is
 * per contact and the ABI does not list a roster, so they change no
 * presence.
 */
#include <pthread.h>
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
/* filter_packet: before the filters that change stanzas, so that a
 * stanza held for a load has been seen by no other filter yet, and is
 * seen by each once when it is routed on (doc/hooks.md: 0-9 is access
 * control). */
#define FILTER_PRIORITY 5

#define CACHE_BUCKETS 1024
#define IDLE_MAX 4096           /* idle entries per worker */
#define EPOCHS 16384            /* change counters, by account hash */
#define MAX_PASSES 3            /* loads one held stanza may wait for */

static const struct xmppd_option options[] = {
	/* Bounds what one account may store. */
	{ "max_items", XMPPD_OPT_INT, "1000", 1, 100000 },
	{ NULL, 0, NULL, 0, 0 },
};

struct blocking {
	xmppd_ctx *ctx;
	long max_items;
	int slot;               /* session slot: struct sslot */
};

/* Set at load, read-only afterwards (a module is loaded once). */
static struct blocking state;

/* ---------------------------------------------------------------- */
/* Lists in memory.                                                   */

/* The items of a list, in key order (strcmp order: the key's bytes). */
struct list {
	char **v;
	size_t n, cap;
};

static void
list_clear(struct list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* Where item is or would go. */
static size_t
list_pos(const struct list *l, const char *item, int *found_r)
{
	size_t lo = 0, hi = l->n;

	*found_r = 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(l->v[mid], item);

		if (c == 0) {
			*found_r = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* 0, or -1 for no memory. */
static int
list_add(struct list *l, const char *item, size_t len)
{
	char *s, **v;
	size_t at;
	int found;

	if ((s = strndup(item, len)) == NULL)
		return -1;
	at = list_pos(l, s, &found);
	if (found) {
		free(s);
		return 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap != 0 ? 2 * l->cap : 8;

		if ((v = realloc(l->v, cap * sizeof(*v))) == NULL) {
			free(s);
			return -1;
		}
		l->v = v;
		l->cap = cap;
	}
	memmove(l->v + at + 1, l->v + at, (l->n - at) * sizeof(*l->v));
	l->v[at] = s;
	l->n++;
	return 0;
}

static void
list_del(struct list *l, const char *item)
{
	int found;
	size_t at = list_pos(l, item, &found);

	if (!found)
		return;
	free(l->v[at]);
	memmove(l->v + at, l->v + at + 1, (l->n - at - 1) * sizeof(*l->v));
	l->n--;
}

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
list_blocks(const struct list *l, const xmppd_jid *who)
{
	if (xmppd_jid_domain(who) == NULL)
		return 0;
	for (size_t i = 0; i < l->n; i++)
		if (item_matches(l->v[i], strlen(l->v[i]), who))
			return 1;
	return 0;
}

/* A row of the account's key range into l: keys are written
 * NUL-terminated, anything else is not ours. */
static int
list_row(struct list *l, size_t plen, const void *key, size_t klen)
{
	if (klen <= plen + 1 || ((const char *)key)[klen - 1] != '\0')
		return 0;
	return list_add(l, (const char *)key + plen, klen - plen - 1);
}

/* ---------------------------------------------------------------- */
/* Change counters (module-wide, any thread).                         */

static uint64_t epochs[EPOCHS];

static unsigned
hash_of(const char *s)
{
	unsigned h = 5381;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		h = h * 33 + *p;
	return h;
}

static uint64_t
epoch_now(unsigned h)
{
	return __atomic_load_n(&epochs[h % EPOCHS], __ATOMIC_ACQUIRE);
}

/* A change of the account's list is durable: every entry loaded before it
 * is out of date. Returns the new count. */
static uint64_t
epoch_bump(unsigned h)
{
	return __atomic_add_fetch(&epochs[h % EPOCHS], 1, __ATOMIC_ACQ_REL);
}

/* ---------------------------------------------------------------- */
/* The per-worker cache.                                              */

/* A stanza filter_packet keeps until a list it needs is loaded. */
struct waiter {
	struct waiter *next;
	xmppd_elem *st;             /* a reference */
	xmppd_jid *from, *to;
	uint64_t seq;               /* the load it waits for */
	unsigned passes;
};

struct cache;

struct entry {
	struct entry *next;         /* hash chain */
	struct entry *older, *newer;    /* the idle list, while pins == 0 */
	struct cache *cache;
	unsigned hash;
	/* Sessions (their slots), loads in flight, a flush running: an
	 * entry with pins is never evicted. */
	unsigned pins;
	int valid;                  /* list was loaded (or written) once */
	uint64_t epoch;             /* the count list is current for */
	uint64_t seq_started, seq_done;     /* loads, in submission order */
	uint64_t last_epoch;        /* the count at the last load's start */
	struct list list;
	struct waiter *wait_head, **wait_tail;
	size_t node_len;            /* bare is node@host */
	char bare[];
};

struct cache {
	struct cache *next;         /* every cache, for unload */
	struct entry *buckets[CACHE_BUCKETS];
	struct entry *oldest, *newest;  /* idle entries */
	size_t nidle;
};

/* Every cache made, freed by unload (after every worker has left the
 * module's code and every load has completed). */
static struct cache *caches;
static pthread_mutex_t caches_lock = PTHREAD_MUTEX_INITIALIZER;
/* This thread's cache, valid while its generation is the module's (a
 * module loaded again in a process that kept it mapped starts afresh). */
static unsigned long generation;
static _Thread_local struct cache *tls_cache;
static _Thread_local unsigned long tls_generation;
/* The stanza a load's callback is routing on: decided already. */
static _Thread_local const xmppd_elem *rerouting;

static struct cache *
cache_here(void)
{
	struct cache *c;

	if (tls_cache != NULL && tls_generation == generation)
		return tls_cache;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	pthread_mutex_lock(&caches_lock);
	c->next = caches;
	caches = c;
	pthread_mutex_unlock(&caches_lock);
	tls_cache = c;
	tls_generation = generation;
	return c;
}

static void
idle_unlink(struct entry *e)
{
	struct cache *c = e->cache;

	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	e->older = e->newer = NULL;
	c->nidle--;
}

static void
idle_push(struct entry *e)
{
	struct cache *c = e->cache;

	e->newer = NULL;
	e->older = c->newest;
	if (c->newest != NULL)
		c->newest->newer = e;
	else
		c->oldest = e;
	c->newest = e;
	c->nidle++;
}

static void waiter_free(struct waiter *w);

/* Evicted (idle: no waiters), or at unload. */
static void
entry_free(struct entry *e)
{
	struct entry **pp;
	struct waiter *w;

	for (pp = &e->cache->buckets[e->hash % CACHE_BUCKETS]; *pp != e; pp = &(*pp)->next)
		;
	*pp = e->next;
	while ((w = e->wait_head) != NULL) {
		e->wait_head = w->next;
		waiter_free(w);
	}
	list_clear(&e->list);
	free(e);
}

/* Keeps the idle list bounded; the entry just used is the newest. */
static void
idle_trim(struct cache *c)
{
	while (c->nidle > IDLE_MAX) {
		struct entry *e = c->oldest;

		idle_unlink(e);
		entry_free(e);
	}
}

static void
pin(struct entry *e)
{
	if (e->pins++ == 0)
		idle_unlink(e);
}

static void
unpin(struct entry *e)
{
	if (--e->pins == 0) {
		idle_push(e);
		idle_trim(e->cache);
	}
}

/* This worker's entry for the account bare (node@host, prepared), made if
 * needed (idle, not loaded); NULL if there is no memory. */
static struct entry *
entry_get(const char *bare, size_t node_len, int create)
{
	struct cache *c = cache_here();
	unsigned h = hash_of(bare);
	struct entry *e;

	if (c == NULL)
		return NULL;
	for (e = c->buckets[h % CACHE_BUCKETS]; e != NULL; e = e->next)
		if (e->hash == h && strcmp(e->bare, bare) == 0) {
			if (e->pins == 0) {         /* used: the newest idle */
				idle_unlink(e);
				idle_push(e);
			}
			return e;
		}
	if (!create || (e = calloc(1, sizeof(*e) + strlen(bare) + 1)) == NULL)
		return NULL;
	strcpy(e->bare, bare);
	e->node_len = node_len;
	e->hash = h;
	e->cache = c;
	e->wait_tail = &e->wait_head;
	e->next = c->buckets[h % CACHE_BUCKETS];
	c->buckets[h % CACHE_BUCKETS] = e;
	idle_push(e);
	idle_trim(c);
	return e;
}

/* The entry of the local account j belongs to (its bare JID); NULL for a
 * JID of no local account, or no memory. */
static struct entry *
entry_for(const xmppd_jid *j)
{
	const char *node = xmppd_jid_node(j), *bare = xmppd_jid_bare(j);
	struct entry *e;

	if (node == NULL)
		return NULL;
	if ((e = entry_get(bare, strlen(node), 0)) != NULL)
		return e;
	/* Only on a miss: entries are made for local accounts alone. */
	if (!xmppd_is_local_host(xmppd_jid_domain(j)))
		return NULL;
	return entry_get(bare, strlen(node), 1);
}

/* The list is what the store holds, as far as any worker has said. */
static int
fresh(const struct entry *e)
{
	return e->valid && e->epoch == epoch_now(e->hash);
}

/* A load started since the last change is still in flight. */
static int
load_pending(const struct entry *e)
{
	return e->seq_started > e->seq_done && e->last_epoch == epoch_now(e->hash);
}

static size_t
account_prefix(char *buf, size_t size, const struct entry *e)
{
	char node[KEY_MAX];

	if (e->node_len >= sizeof(node))
		return 0;
	memcpy(node, e->bare, e->node_len);
	node[e->node_len] = '\0';
	return xmppd_store_key(buf, size, e->bare + e->node_len + 1, node, (char *)NULL);
}

/* ---------------------------------------------------------------- */
/* Deciding.                                                          */

enum verdict {
	PASS,
	BLOCKED_IN,             /* from is on to's list */
	BLOCKED_OUT,            /* presence from a user to a JID the user blocked */
	WAIT,                   /* a list is not loaded: *need_r */
};

enum mode {
	M_FRESH,                /* filter_packet: only a current list will do */
	M_LOADED,               /* after a load: any list loaded */
	M_FORCE,                /* anything (not loaded: nothing blocked) */
};

static int
same_user(const xmppd_jid *a, const xmppd_jid *b)
{
	return xmppd_jid_node(a) != NULL && xmppd_jid_node(b) != NULL &&
	    strcmp(xmppd_jid_bare(a), xmppd_jid_bare(b)) == 0;
}

static int
usable(const struct entry *e, enum mode m)
{
	return m == M_FORCE || (m == M_LOADED ? e->valid : fresh(e));
}

/* Inbound, for everything routed (XEP-0191 3.3); and presence the server
 * routes on a user's behalf to a JID that user blocked. */
static enum verdict
decide(const xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to, enum mode m,
    struct entry **need_r)
{
	const char *kind = xmppd_stanza_kind(st);
	struct entry *e;
	int presence;

	if (kind == NULL || from == NULL || to == NULL || xmppd_jid_domain(from) == NULL ||
	    same_user(from, to))
		return PASS;
	presence = strcmp(kind, "presence") == 0;
	if (xmppd_jid_node(to) == NULL && (!presence || xmppd_jid_node(from) == NULL))
		return PASS;
	if ((e = entry_for(to)) != NULL) {
		if (!usable(e, m)) {
			*need_r = e;
			return WAIT;
		}
		if (list_blocks(&e->list, from))
			return BLOCKED_IN;
	}
	if (presence && (e = entry_for(from)) != NULL) {
		if (!usable(e, m)) {
			*need_r = e;
			return WAIT;
		}
		if (list_blocks(&e->list, to))
			return BLOCKED_OUT;
	}
	return PASS;
}

/* What a verdict does to a stanza; 1 if it goes on. */
static int
act(enum verdict v, const xmppd_elem *st)
{
	if (v == PASS)
		return 1;
	/* Presence either way is dropped silently; messages and IQ get/set
	 * from a blocked entity get <service-unavailable/>; errors and IQ
	 * results are dropped (xmppd_bounce never answers them). */
	if (v == BLOCKED_IN && strcmp(xmppd_stanza_kind(st), "presence") != 0)
		xmppd_bounce(st, "service-unavailable", NULL);
	return 0;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

struct load {
	struct entry *e;
	uint64_t seq;
	uint64_t epoch;             /* the count when the scan was submitted */
	size_t plen;
	struct list list;
	int bad;                    /* no memory: list is incomplete */
	xmppd_elem *iq;             /* a <blocklist/> get to answer, or NULL */
};

static void flush(struct entry *e);

static int
load_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct load *l = ud;

	if (list_row(&l->list, l->plen, key, klen) < 0)
		l->bad = 1;
	return 0;
}

/* XEP-0191 3.2: the list in key order, which is the order of the store. */
static void
answer_get(struct load *l, int status)
{
	xmppd_elem *bl;

	if (status != XMPPD_STORE_OK || l->bad) {
		xmppd_iq_error(l->iq, "internal-server-error", NULL);
		return;
	}
	bl = xmppd_elem_new(NS_BLOCKING, "blocklist");
	for (size_t i = 0; i < l->list.n; i++)
		xmppd_elem_set_attr(xmppd_elem_add_child(bl, NS_BLOCKING, "item"), "jid",
		    l->list.v[i]);
	xmppd_iq_reply(l->iq, bl);
}

static void
load_done(int status, void *ud)
{
	struct load *l = ud;
	struct entry *e = l->e;

	if (l->iq != NULL) {
		answer_get(l, status);
		xmppd_elem_unref(l->iq);
	}
	if (status == XMPPD_STORE_OK && !l->bad) {
		/* Loads of one worker complete in order and see what was
		 * written before them: this list is never older than the
		 * entry's. An entry made current since (by a change that
		 * completed here) keeps its count. */
		list_clear(&e->list);
		e->list = l->list;
		memset(&l->list, 0, sizeof(l->list));
		if (!fresh(e))
			e->epoch = l->epoch;
		e->valid = 1;
	} else {
		xmppd_log(state.ctx, XMPPD_LOG_ERROR, "cannot read the blocklist of %s",
		    e->bare);
	}
	e->seq_done = l->seq;
	list_clear(&l->list);
	free(l);
	flush(e);
	unpin(e);
}

/* Starts reading e's list (and answering iq with it, if not NULL). 0, or
 * -1 if the store cannot be used here or there is no memory. */
static int
load_start(struct entry *e, xmppd_elem *iq)
{
	char prefix[KEY_MAX];
	struct load *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return -1;
	if ((l->plen = account_prefix(prefix, sizeof(prefix), e)) == 0) {
		free(l);
		return -1;
	}
	l->e = e;
	/* Read before the scan is submitted: a change that completes after
	 * this makes the result out of date. */
	l->epoch = epoch_now(e->hash);
	l->seq = e->seq_started + 1;
	l->iq = iq != NULL ? xmppd_elem_ref(iq) : NULL;
	pin(e);
	if (xmppd_store_ascan(state.ctx, TABLE, prefix, l->plen, load_row, load_done, l) < 0) {
		xmppd_elem_unref(l->iq);
		free(l);
		unpin(e);
		return -1;
	}
	e->seq_started = l->seq;
	e->last_epoch = l->epoch;
	return 0;
}

static void
waiter_free(struct waiter *w)
{
	xmppd_elem_unref(w->st);
	xmppd_jid_free(w->from);
	xmppd_jid_free(w->to);
	free(w);
}

/* w waits for e's list: a load in flight since the last change, or a new
 * one. 0, or -1 (nothing can be loaded: decide without it). */
static int
wait_on(struct entry *e, struct waiter *w)
{
	if (!load_pending(e) && load_start(e, NULL) < 0)
		return -1;
	w->seq = e->seq_started;
	w->next = NULL;
	*e->wait_tail = w;
	e->wait_tail = &w->next;
	return 0;
}

/* The routed stanza once more, past this filter (decided). A stanza with
 * no 'to' was routed to the account (RFC 6120 10.3): name it. */
static void
route_on(struct waiter *w)
{
	const xmppd_elem *prev = rerouting;
	xmppd_elem *st = w->st;

	if (xmppd_elem_attr(st, "to") == NULL) {
		st = xmppd_elem_copy(w->st);
		xmppd_elem_set_attr(st, "to", xmppd_jid_full(w->to));
	} else {
		st = xmppd_elem_ref(st);
	}
	rerouting = st;
	xmppd_route(st);
	rerouting = prev;
	xmppd_elem_unref(st);
}

/* A held stanza, after a load: decided, or waiting for another list. */
static void
resolve(struct waiter *w)
{
	struct entry *need = NULL;
	enum verdict v;

	v = decide(w->st, w->from, w->to, w->passes < MAX_PASSES ? M_LOADED : M_FORCE, &need);
	if (v == WAIT) {
		w->passes++;
		if (wait_on(need, w) == 0)
			return;
		v = decide(w->st, w->from, w->to, M_FORCE, &need);
	}
	if (act(v, w->st))
		route_on(w);
	waiter_free(w);
}

/* The stanzas that waited for loads up to e->seq_done, in the order they
 * came. Routing them runs hooks, ours included: e stays pinned. */
static void
flush(struct entry *e)
{
	struct waiter *w, *todo = NULL, **tail = &todo;

	pin(e);
	while ((w = e->wait_head) != NULL && w->seq <= e->seq_done) {
		if ((e->wait_head = w->next) == NULL)
			e->wait_tail = &e->wait_head;
		w->next = NULL;
		*tail = w;
		tail = &w->next;
	}
	while ((w = todo) != NULL) {
		todo = w->next;
		resolve(w);
	}
	unpin(e);
}

/* ---------------------------------------------------------------- */
/* Sessions.                                                          */

/* What a session's slot holds: its account's entry (pinned). */
struct sslot {
	struct entry *e;
	int interested;         /* the resource read the list (XEP-0191 3.3) */
};

static void
sslot_free(void *data)
{
	struct sslot *sl = data;

	if (sl->e != NULL)
		unpin(sl->e);
	free(sl);
}

/* The session's slot, made if needed: its entry pinned, and loaded unless
 * current. Started here, during the handling of the stanza that opened
 * the session (the bind), the load holds the stream's next stanza. */
static struct sslot *
adopt(xmppd_session *s)
{
	const xmppd_jid *jid = xmppd_session_jid(s);
	struct sslot *sl = xmppd_session_get(s, state.slot);

	if (sl != NULL)
		return sl;
	if (jid == NULL || xmppd_jid_node(jid) == NULL || (sl = calloc(1, sizeof(*sl))) == NULL)
		return NULL;
	if ((sl->e = entry_for(jid)) != NULL) {
		pin(sl->e);
		/* A load already in flight may belong to another stream: this
		 * one waits only for its own. */
		if (!fresh(sl->e))
			(void)load_start(sl->e, NULL);
	}
	xmppd_session_set(s, state.slot, sl, sslot_free);
	return sl;
}

static enum xmppd_result
session_opened(void *args, void *ud)
{
	(void)adopt(((struct xmppd_session_args *)args)->session);
	return XMPPD_CONTINUE;
}

/* Loaded while users are online: their sessions are adopted on their
 * workers (a timer on each, once). */
static void
adopt_one(xmppd_session *s, void *ud)
{
	(void)adopt(s);
}

static uint64_t
adopt_sweep(void *ud)
{
	xmppd_session_foreach_local(adopt_one, ud);
	return 0;
}

/* Accounts made or removed: whatever a worker holds for the name is out
 * of date (a new account starts with no list). */
static enum xmppd_result
user_changed(void *args, void *ud)
{
	struct xmppd_user_args *ua = args;
	char bare[KEY_MAX];

	if (ua->node != NULL && ua->host != NULL &&
	    (size_t)snprintf(bare, sizeof(bare), "%s@%s", ua->node, ua->host) < sizeof(bare))
		(void)epoch_bump(hash_of(bare));
	return XMPPD_CONTINUE;
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
 * read the list, and applies it to their worker's entry). */
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

/* XEP-0191 3.2: answered from the scan's callback, which also makes this
 * worker's entry current. */
static void
get_list(xmppd_elem *iq, const xmppd_jid *user)
{
	struct entry *e = entry_for(user);

	if (e == NULL || load_start(e, iq) < 0)
		xmppd_iq_error(iq, "internal-server-error", NULL);
}

/* A block or unblock in flight: the IQ (a reference: the reply is
 * deferred) and what its steps found. */
struct change {
	xmppd_elem *iq;
	xmppd_jid *user;
	xmppd_jid **v;
	size_t n;
	int block;
	long have, max_items;
	size_t plen;
	struct list before;         /* the list before the batch */
	struct list after;          /* the list once the batch is written */
	int bad;                    /* no memory for after */
	const char *cond, *why;     /* why a step failed the batch */
};

static void
change_free(struct change *ch)
{
	xmppd_elem_unref(ch->iq);
	xmppd_jid_free(ch->user);
	free_items(ch->v, ch->n);
	list_clear(&ch->before);
	list_clear(&ch->after);
	free(ch);
}

/* Step: every item the account holds (the scan comes first), kept to
 * know what the change blocks or unblocks. */
static int
count_row(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
    void *ud)
{
	struct change *ch = ud;

	ch->have++;
	if (list_row(&ch->before, ch->plen, key, klen) < 0)
		ch->bad = 1;
	return 0;
}

/* Step, before each put: a new item must fit (max_items;
 * resource-constraint, RFC 6120 8.3.3.18). It sees the batch's earlier
 * puts, so an item given twice counts once. */
static int
check_new(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	struct change *ch = ud;

	if (status == XMPPD_STORE_OK)
		return 0;
	if (ch->have >= ch->max_items) {
		ch->cond = "resource-constraint";
		ch->why = "the blocklist is full";
		return -1;
	}
	ch->have++;
	return 0;
}

/* Step, last: the list as the batch leaves it, for this worker's entry. */
static int
after_row(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
    void *ud)
{
	struct change *ch = ud;

	if (list_row(&ch->after, ch->plen, key, klen) < 0)
		ch->bad = 1;
	return 0;
}

/* ---------------------------------------------------------------- */
/* Presence on block and unblock (XEP-0191 3.3, 3.4).                 */

/* What one JID blocked or unblocked does to presence, once the roster
 * has answered. */
struct pjob {
	xmppd_jid *user;            /* bare */
	xmppd_jid *item;            /* the JID blocked or unblocked */
	xmppd_jid *contact;         /* its bare JID */
	int block;
};

static void
pjob_free(struct pjob *j)
{
	xmppd_jid_free(j->user);
	xmppd_jid_free(j->item);
	xmppd_jid_free(j->contact);
	free(j);
}

/* Routes st past this module's filter (it was decided: 3.3 says it goes
 * to the JID just blocked). */
static void
route_past_filter(xmppd_elem *st)
{
	const xmppd_elem *prev = rerouting;

	rerouting = st;
	xmppd_route(st);
	rerouting = prev;
}

/* 3.3: unavailable from the user's resource p is the presence of, to the
 * blocked JID. */
static void
unavailable_to_item(const xmppd_elem *p, void *ud)
{
	struct pjob *j = ud;
	const char *from = xmppd_elem_attr(p, "from");
	xmppd_elem *u;

	if (from == NULL)
		return;
	u = xmppd_elem_new(NULL, "presence");
	xmppd_elem_set_attr(u, "type", "unavailable");
	xmppd_elem_set_attr(u, "from", from);
	xmppd_elem_set_attr(u, "to", xmppd_jid_full(j->item));
	route_past_filter(u);
	xmppd_elem_unref(u);
}

/* The user's resources stop seeing the contact's resource from. */
static void
unavailable_from(struct pjob *j, const char *from)
{
	xmppd_elem *u = xmppd_elem_new(NULL, "presence");

	xmppd_elem_set_attr(u, "type", "unavailable");
	xmppd_elem_set_attr(u, "from", from);
	(void)xmppd_send_to_resources(j->user, u, 1);
	xmppd_elem_unref(u);
}

/* A local contact's available resource p: blocked (the whole contact, or
 * this very resource)? Then the user's resources see it go. */
static void
contact_resource_gone(const xmppd_elem *p, void *ud)
{
	struct pjob *j = ud;
	const char *from = xmppd_elem_attr(p, "from");

	if (from == NULL || (xmppd_jid_resource(j->item) != NULL &&
	    strcmp(from, xmppd_jid_full(j->item)) != 0))
		return;
	unavailable_from(j, from);
}

/* 3.4: the user's current presence p (a resource's), to the JID
 * unblocked. */
static void
presence_to_item(const xmppd_elem *p, void *ud)
{
	struct pjob *j = ud;
	xmppd_elem *c = xmppd_elem_copy(p);

	xmppd_elem_set_attr(c, "to", xmppd_jid_full(j->item));
	xmppd_route(c);
	xmppd_elem_unref(c);
}

static void
pjob_sub(int sub, void *ud)
{
	struct pjob *j = ud;
	xmppd_elem *probe;

	/* No roster (or it could not be read): nobody is known to share
	 * presence with the user, so nothing is sent. */
	if (sub < 0) {
		pjob_free(j);
		return;
	}
	if (j->block) {
		if (sub & XMPPD_SUB_FROM)
			(void)xmppd_user_presences(j->user, unavailable_to_item, j);
		if (sub & XMPPD_SUB_TO) {
			if (xmppd_is_local_host(xmppd_jid_domain(j->contact)))
				(void)xmppd_user_presences(j->contact, contact_resource_gone, j);
			else
				unavailable_from(j, xmppd_jid_full(j->item));
		}
	} else {
		if (sub & XMPPD_SUB_FROM)
			(void)xmppd_user_presences(j->user, presence_to_item, j);
		if (sub & XMPPD_SUB_TO) {
			/* RFC 6121 4.3.1: from the bare JID, to the bare JID. */
			probe = xmppd_elem_new(NULL, "presence");
			xmppd_elem_set_attr(probe, "type", "probe");
			xmppd_elem_set_attr(probe, "from", xmppd_jid_bare(j->user));
			xmppd_elem_set_attr(probe, "to", xmppd_jid_bare(j->contact));
			xmppd_route(probe);
			xmppd_elem_unref(probe);
		}
	}
	pjob_free(j);
}

/* Starts what blocking (or unblocking) item does to presence. */
static void
presence_effects(const xmppd_jid *user, const char *item, int block)
{
	struct pjob *j;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return;
	j->block = block;
	if ((j->user = xmppd_jid_copy(user)) == NULL ||
	    (j->item = xmppd_jid_parse(item)) == NULL || xmppd_jid_node(j->item) == NULL ||
	    same_user(j->item, user) ||
	    (j->contact = xmppd_jid_make(xmppd_jid_node(j->item), xmppd_jid_domain(j->item),
	    NULL)) == NULL) {
		pjob_free(j);
		return;
	}
	if (xmppd_roster_subscription(state.ctx, user, j->contact, pjob_sub, j) < 0) {
		xmppd_log(state.ctx, XMPPD_LOG_WARNING, "%s: cannot ask the roster about %s",
		    xmppd_jid_bare(user), item);
		pjob_free(j);
	}
}

/* What the change blocked or unblocked: the items not blocked before
 * (block), or blocked before and not after (unblock, all of them for an
 * empty <unblock/>, 3.5). */
static void
change_presence(struct change *ch)
{
	const struct list *was = &ch->before, *now = &ch->after;
	int found;

	if (ch->bad)
		return;                 /* no memory for the lists */
	for (size_t i = 0; i < was->n && !ch->block; i++) {
		(void)list_pos(now, was->v[i], &found);
		if (!found)
			presence_effects(ch->user, was->v[i], 0);
	}
	for (size_t i = 0; i < ch->n && ch->block; i++) {
		(void)list_pos(was, xmppd_jid_full(ch->v[i]), &found);
		if (!found)
			presence_effects(ch->user, xmppd_jid_full(ch->v[i]), 1);
	}
}

/* The batch has completed. Durable: this worker's entry gets the new list
 * and the other workers' entries are out of date, before the result and
 * the pushes go out (routing them may run the hooks that read it). */
static void
change_done(int status, void *ud)
{
	struct change *ch = ud;
	struct entry *e;

	if (status != XMPPD_STORE_OK) {
		if (status == XMPPD_STORE_ABORTED && ch->cond != NULL) {
			xmppd_iq_error(ch->iq, ch->cond, ch->why);
		} else {
			xmppd_log(state.ctx, XMPPD_LOG_ERROR, "cannot store the blocklist of %s",
			    xmppd_jid_bare(ch->user));
			xmppd_iq_error(ch->iq, "internal-server-error", NULL);
		}
		change_free(ch);
		return;
	}
	/* Before the lists move into the entry; the roster's answers, and so
	 * the presence, come after the result and the pushes (never before
	 * xmppd_roster_subscription returns). */
	change_presence(ch);
	e = entry_for(ch->user);
	if (e != NULL && !ch->bad) {
		/* Current if no other change completed since it was. */
		int was_fresh = fresh(e);
		uint64_t now = epoch_bump(e->hash);

		list_clear(&e->list);
		e->list = ch->after;
		memset(&ch->after, 0, sizeof(ch->after));
		e->valid = 1;
		if (was_fresh && now == e->epoch + 1)
			e->epoch = now;
	} else {
		(void)epoch_bump(hash_of(xmppd_jid_bare(ch->user)));
		if (e != NULL)
			e->valid = 0;       /* no memory for the list: load it again */
	}
	xmppd_iq_reply(ch->iq, NULL);
	push(ch->user, ch->block ? "block" : "unblock", ch->v, ch->n);
	change_free(ch);
}

/* XEP-0191 3.3 (block) and 3.4, 3.5 (unblock, unblock all): one batch,
 * all or nothing, answered when it has completed. */
static void
change_list(struct blocking *b, xmppd_elem *iq, xmppd_elem *el, const xmppd_jid *user,
    int block)
{
	const char *host = xmppd_jid_domain(user), *node = xmppd_jid_node(user);
	const char *cond = NULL;
	static const unsigned char value = VALUE_VERSION;
	char key[KEY_MAX], prefix[KEY_MAX];
	struct change *ch;
	xmppd_batch *batch;
	xmppd_jid **v;
	size_t n, klen, plen;

	if ((v = parse_items(el, &n, &cond)) == NULL) {
		xmppd_iq_error(iq, cond, NULL);
		return;
	}
	if (block && n == 0) {
		free_items(v, n);
		xmppd_iq_error(iq, "bad-request", "no item to block");
		return;
	}
	/* What can be refused without the store is, at once: the store's
	 * key limit, not the protocol's. */
	for (size_t i = 0; block && i < n; i++)
		if (xmppd_store_key(key, sizeof(key), host, node, xmppd_jid_full(v[i]),
		    (char *)NULL) == 0) {
			free_items(v, n);
			xmppd_iq_error(iq, "not-acceptable", "JID too long to store");
			return;
		}
	plen = xmppd_store_key(prefix, sizeof(prefix), host, node, (char *)NULL);
	if (plen == 0 || (ch = calloc(1, sizeof(*ch))) == NULL) {
		free_items(v, n);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	ch->v = v;
	ch->n = n;
	ch->block = block;
	ch->plen = plen;
	ch->max_items = b->max_items;
	if ((ch->user = xmppd_jid_copy(user)) == NULL ||
	    (batch = xmppd_batch_new(b->ctx)) == NULL) {
		change_free(ch);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	/* A failure to add an op fails the batch when submitted (ERROR or
	 * INVALID), so the calls are not checked one by one. */
	if (block) {
		(void)xmppd_batch_scan(batch, TABLE, prefix, plen, count_row, ch);
		for (size_t i = 0; i < n; i++) {
			klen = xmppd_store_key(key, sizeof(key), host, node, xmppd_jid_full(v[i]),
			    (char *)NULL);
			(void)xmppd_batch_get(batch, TABLE, key, klen, check_new, ch);
			(void)xmppd_batch_put(batch, TABLE, key, klen, &value, 1);
		}
	} else if (n == 0) {
		(void)xmppd_batch_scan(batch, TABLE, prefix, plen, count_row, ch);
		(void)xmppd_batch_del_prefix(batch, TABLE, prefix, plen);
	} else {
		(void)xmppd_batch_scan(batch, TABLE, prefix, plen, count_row, ch);
		for (size_t i = 0; i < n; i++) {
			klen = xmppd_store_key(key, sizeof(key), host, node, xmppd_jid_full(v[i]),
			    (char *)NULL);
			/* Too long to be a key: it was never stored. */
			if (klen > 0)
				(void)xmppd_batch_del(batch, TABLE, key, klen);
		}
	}
	(void)xmppd_batch_scan(batch, TABLE, prefix, plen, after_row, ch);
	ch->iq = xmppd_elem_ref(iq);
	if (xmppd_batch_submit(batch, change_done, ch) < 0) {
		change_free(ch);
		xmppd_iq_error(iq, "internal-server-error", NULL);
	}
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
		get_list(iq, user);
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
is_type(const xmppd_elem *st, const char *type)
{
	const char *t = xmppd_stanza_type(st);

	return t != NULL && strcmp(t, type) == 0;
}

/* Everything routed. A list not loaded (or out of date) here: the stanza
 * waits for the load (STOP) and is decided from its callback. */
static enum xmppd_result
on_filter(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	struct entry *need = NULL;
	struct waiter *w;
	enum verdict v;

	if (pa->stanza == rerouting)
		return XMPPD_CONTINUE;
	if ((v = decide(pa->stanza, pa->from, pa->to, M_FRESH, &need)) != WAIT)
		return act(v, pa->stanza) ? XMPPD_CONTINUE : XMPPD_DROP;
	if ((w = calloc(1, sizeof(*w))) == NULL ||
	    (w->from = xmppd_jid_copy(pa->from)) == NULL ||
	    (w->to = xmppd_jid_copy(pa->to)) == NULL) {
		if (w != NULL)
			xmppd_jid_free(w->from);
		free(w);
		v = decide(pa->stanza, pa->from, pa->to, M_FORCE, &need);
		return act(v, pa->stanza) ? XMPPD_CONTINUE : XMPPD_DROP;
	}
	w->st = xmppd_elem_ref(pa->stanza);
	if (wait_on(need, w) == 0)
		return XMPPD_STOP;
	/* No store here (the main thread): what is in memory decides. */
	v = decide(pa->stanza, pa->from, pa->to, M_FORCE, &need);
	waiter_free(w);
	return act(v, pa->stanza) ? XMPPD_CONTINUE : XMPPD_DROP;
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

/* Outbound from a client; also notes which resources read the list. The
 * sender's list is in memory (loaded when the session opened). */
static enum xmppd_result
on_send(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	const char *kind = xmppd_stanza_kind(pa->stanza);
	const xmppd_jid *me = pa->from;
	struct sslot *sl;
	struct entry *e;
	xmppd_elem *q;

	if (kind == NULL || me == NULL || pa->session == NULL ||
	    (sl = adopt(pa->session)) == NULL)
		return XMPPD_CONTINUE;
	if (strcmp(kind, "iq") == 0 && is_type(pa->stanza, "get") &&
	    (pa->to == NULL || same_user(pa->to, me)) &&
	    (q = xmppd_elem_first_child(pa->stanza)) != NULL &&
	    xmppd_elem_ns(q) != NULL && strcmp(xmppd_elem_ns(q), NS_BLOCKING) == 0 &&
	    strcmp(xmppd_elem_name(q), "blocklist") == 0)
		sl->interested = 1;
	if (pa->to == NULL || same_user(pa->to, me) || (e = sl->e) == NULL)
		return XMPPD_CONTINUE;
	/* Out of date (changed on another worker): this stanza is decided
	 * with what is here, the next ones after a reload. */
	if (!fresh(e) && !load_pending(e))
		(void)load_start(e, NULL);
	if (!list_blocks(&e->list, pa->to))
		return XMPPD_CONTINUE;
	if (!is_type(pa->stanza, "error") &&
	    !(strcmp(kind, "iq") == 0 && is_type(pa->stanza, "result")))
		refuse_blocked(pa->session, pa->stanza);
	return XMPPD_DROP;
}

/* A push on its way to a session of the account on this worker: the
 * change, applied here unless this worker's entry is current already (the
 * worker that made the change installed the whole new list). */
static void
apply_push(struct entry *e, xmppd_elem *q)
{
	int block = strcmp(xmppd_elem_name(q), "block") == 0, any = 0;
	xmppd_elem *c;

	if (fresh(e))
		return;
	for (c = xmppd_elem_first_child(q); c != NULL; c = xmppd_elem_next_sibling(c)) {
		const char *jid = xmppd_elem_attr(c, "jid");

		if (jid == NULL)
			continue;
		any = 1;
		if (block)
			(void)list_add(&e->list, jid, strlen(jid));
		else
			list_del(&e->list, jid);
	}
	if (!block && !any)
		list_clear(&e->list);       /* XEP-0191 3.5: unblock all */
	if (!load_pending(e))
		(void)load_start(e, NULL);
}

/* Pushes go only to the resources that read the list (XEP-0191 3.3). A
 * push is the one IQ set with a blocking payload from the user's own bare
 * JID: a client's stanzas always carry its full JID. */
static enum xmppd_result
on_receive(void *args, void *ud)
{
	struct blocking *b = ud;
	struct xmppd_packet_args *pa = args;
	const char *kind = xmppd_stanza_kind(pa->stanza), *from, *ns, *name;
	struct sslot *sl;
	xmppd_elem *q;

	if (pa->session == NULL || kind == NULL || strcmp(kind, "iq") != 0 ||
	    !is_type(pa->stanza, "set") ||
	    (q = xmppd_elem_first_child(pa->stanza)) == NULL ||
	    (ns = xmppd_elem_ns(q)) == NULL || strcmp(ns, NS_BLOCKING) != 0 ||
	    (from = xmppd_elem_attr(pa->stanza, "from")) == NULL ||
	    strcmp(from, xmppd_jid_bare(xmppd_session_jid(pa->session))) != 0)
		return XMPPD_CONTINUE;
	name = xmppd_elem_name(q);
	sl = xmppd_session_get(pa->session, b->slot);
	if (sl != NULL && sl->e != NULL && (strcmp(name, "block") == 0 ||
	    strcmp(name, "unblock") == 0))
		apply_push(sl->e, q);
	return sl != NULL && sl->interested ? XMPPD_CONTINUE : XMPPD_DROP;
}

/* ---------------------------------------------------------------- */
/* Loading the module.                                                */

static int
load(xmppd_ctx *ctx)
{
	struct blocking *b = &state;

	b->ctx = ctx;
	b->max_items = xmppd_opt_int(ctx, "max_items");
	generation++;
	if ((b->slot = xmppd_session_slot(ctx)) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "no session slot left");
		return -1;
	}
	if (xmppd_iq_register(ctx, NULL, NS_BLOCKING, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_ACCOUNT, blocking_iq, b) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_SM_SESSION_OPENED, NULL, PRIORITY, session_opened,
	    b) < 0 ||
	    xmppd_timer_add_every_worker(ctx, 1, adopt_sweep, b) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_FILTER_PACKET, NULL, FILTER_PRIORITY, on_filter,
	    b) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_USER_SEND_PACKET, NULL, PRIORITY, on_send, b) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_USER_RECEIVE_PACKET, NULL, PRIORITY, on_receive, b) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_REGISTER_USER, NULL, PRIORITY, user_changed, b) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_REMOVE_USER, NULL, PRIORITY, user_changed, b) < 0 ||
	    xmppd_store_user_table(ctx, TABLE) < 0 ||
	    xmppd_disco_feature(ctx, NS_BLOCKING) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot register handlers");
		return -1;
	}
	return 0;
}

/* The sessions' slots were freed and every load has completed (and its
 * held stanzas were decided) before this: what is left is idle. */
static void
unload(xmppd_ctx *ctx)
{
	struct cache *c, *next;

	pthread_mutex_lock(&caches_lock);
	for (c = caches; c != NULL; c = next) {
		next = c->next;
		for (size_t i = 0; i < CACHE_BUCKETS; i++)
			while (c->buckets[i] != NULL)
				entry_free(c->buckets[i]);
		free(c);
	}
	caches = NULL;
	pthread_mutex_unlock(&caches_lock);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.4: the roster query */
	.name = "mod_blocking",
	.version = "1.0",
	.options = options,
	.load = load,
	.unload = unload,
};
