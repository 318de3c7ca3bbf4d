/*
 * mod_roster_cache.c - the contacts of every user with a session, in
 * memory: for each contact the subscription state (F_STATE of the item, 0
 * for none) and whether a request from it is pending.
 *
 * Presence must be decided as it passes, and hooks cannot wait for the
 * store: the broadcast of a user's presence (RFC 6121 4.2.2, 4.4.2, 4.5.2),
 * the probes at login (4.2.2) and directed presence (4.6) read the
 * subscribers from here, and so does an account's removal on a worker
 * (XEP-0077 3.2: the contacts are told; the core deletes the rows right
 * after remove_user, so nothing can be read from the store later).
 *
 * One entry per user with a session on any worker (module-wide, under a
 * mutex, as mod_vcard's photo cache: changes to a user's roster complete
 * on whichever worker made them). Each session holds a reference through
 * its slot, and so does a load in flight. An entry is loaded when a
 * session opens: that stream reads nothing more until the load has
 * completed (RFC 6120 10.1), so its initial presence finds the contacts.
 *
 * Every change (roster_change_*) and every load takes a number from
 * roster_seq_next in a step of its batch: steps run under the store's
 * write lock, so the numbers give the order in which the store saw them,
 * whatever order their callbacks run in. A change that completes is
 * applied to the contact unless the contact holds a newer one; a load
 * replaces what is older than it and keeps what is newer. Contacts whose
 * item went keep their number (flags 0) until a newer load drops them.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "mod_roster.h"

#define BUCKETS 1024

struct rcontact {
	char *jid;                  /* bare */
	unsigned flags;             /* F_STATE; 0: no item */
	int pin;                    /* a request from it is pending */
	uint64_t seq;               /* the change (or load) this comes from */
};

struct rentry {
	struct rentry *next;
	unsigned refs;
	int loaded;
	uint64_t load_seq;          /* the newest load applied */
	struct rcontact *v;         /* sorted by jid */
	size_t n, cap;
	char bare[];
};

static struct rentry *entries[BUCKETS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t seq;

uint64_t
roster_seq_next(void)
{
	return __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
}

static struct rentry **
bucket(const char *bare)
{
	unsigned h = 5381;

	for (const unsigned char *p = (const unsigned char *)bare; *p != '\0'; p++)
		h = h * 33 + *p;
	return &entries[h % BUCKETS];
}

/* With cache_lock held. */
static struct rentry *
find(const char *bare)
{
	struct rentry *e;

	for (e = *bucket(bare); e != NULL && strcmp(e->bare, bare) != 0; e = e->next)
		;
	return e;
}

static void
contacts_clear(struct rcontact *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].jid);
	free(v);
}

struct rentry *
cache_ref(const char *bare)
{
	struct rentry *e;

	pthread_mutex_lock(&cache_lock);
	if ((e = find(bare)) == NULL && (e = calloc(1, sizeof(*e) + strlen(bare) + 1)) != NULL) {
		strcpy(e->bare, bare);
		e->next = *bucket(bare);
		*bucket(bare) = e;
	}
	if (e != NULL)
		e->refs++;
	pthread_mutex_unlock(&cache_lock);
	return e;
}

void
cache_unref(struct rentry *e)
{
	struct rentry **pp;

	if (e == NULL)
		return;
	pthread_mutex_lock(&cache_lock);
	if (--e->refs == 0) {
		for (pp = bucket(e->bare); *pp != e; pp = &(*pp)->next)
			;
		*pp = e->next;
		contacts_clear(e->v, e->n);
		free(e);
	}
	pthread_mutex_unlock(&cache_lock);
}

/* With cache_lock held: the index of jid in e, or where it would go. */
static size_t
slot_of(const struct rentry *e, const char *jid, int *found_r)
{
	size_t lo = 0, hi = e->n;

	*found_r = 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(e->v[mid].jid, jid);

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

/* With cache_lock held. -1: no memory. */
static int
upsert(struct rentry *e, const char *jid, unsigned flags, int pin, uint64_t s)
{
	int found;
	size_t i = slot_of(e, jid, &found);
	char *dup;

	if (!found) {
		if (e->n == e->cap) {
			size_t cap = e->cap ? e->cap * 2 : 16;
			struct rcontact *v = realloc(e->v, cap * sizeof(*v));

			if (v == NULL)
				return -1;
			e->v = v;
			e->cap = cap;
		}
		if ((dup = strdup(jid)) == NULL)
			return -1;
		memmove(e->v + i + 1, e->v + i, (e->n - i) * sizeof(*e->v));
		e->v[i].jid = dup;
		e->n++;
	}
	e->v[i].flags = flags;
	e->v[i].pin = pin;
	e->v[i].seq = s;
	return 0;
}

void
cache_apply(const char *bare, const char *contact, unsigned flags, int pin, uint64_t s)
{
	struct rentry *e;
	int found;
	size_t i;

	pthread_mutex_lock(&cache_lock);
	if ((e = find(bare)) != NULL) {
		i = slot_of(e, contact, &found);
		/* Older than what the contact, or the load, has: already seen. */
		if (s > (found ? e->v[i].seq : e->loaded ? e->load_seq : 0) &&
		    upsert(e, contact, flags, pin, s) < 0) {
			/* Out of memory: rather unknown than wrong. */
			e->loaded = 0;
		}
	}
	pthread_mutex_unlock(&cache_lock);
}

int
cache_loaded(struct rentry *e)
{
	int loaded;

	pthread_mutex_lock(&cache_lock);
	loaded = e->loaded;
	pthread_mutex_unlock(&cache_lock);
	return loaded;
}

int
cache_contacts(struct rentry *e, unsigned want, int pending, struct contacts *c)
{
	int rc = 0;

	memset(c, 0, sizeof(*c));
	pthread_mutex_lock(&cache_lock);
	if (!e->loaded)
		rc = -1;
	for (size_t i = 0; rc == 0 && i < e->n; i++)
		if (((e->v[i].flags & want) || (pending && e->v[i].pin)) &&
		    roster_contacts_add(c, e->v[i].jid) < 0)
			rc = -1;
	pthread_mutex_unlock(&cache_lock);
	if (rc < 0)
		roster_contacts_free(c);
	return rc;
}

int
cache_contacts_of(const char *bare, unsigned want, int pending, struct contacts *c)
{
	struct rentry *e = cache_ref(bare);
	int rc;

	if (e == NULL) {
		memset(c, 0, sizeof(*c));
		return -1;
	}
	rc = cache_contacts(e, want, pending, c);
	cache_unref(e);
	return rc;
}

int
cache_state(struct rentry *e, const char *contact, unsigned *flags_r, int *pin_r)
{
	int found, rc = -1;
	size_t i;

	*flags_r = 0;
	*pin_r = 0;
	pthread_mutex_lock(&cache_lock);
	if (e->loaded) {
		i = slot_of(e, contact, &found);
		*flags_r = found ? e->v[i].flags : 0;
		*pin_r = found && e->v[i].pin;
		rc = 0;
	}
	pthread_mutex_unlock(&cache_lock);
	return rc;
}

int
cache_flags(struct rentry *e, const char *contact, unsigned *flags_r)
{
	int pin;

	return cache_state(e, contact, flags_r, &pin);
}

void
cache_free_all(void)
{
	struct rentry *e, *next;

	pthread_mutex_lock(&cache_lock);
	for (size_t i = 0; i < BUCKETS; i++) {
		for (e = entries[i]; e != NULL; e = next) {
			next = e->next;
			contacts_clear(e->v, e->n);
			free(e);
		}
		entries[i] = NULL;
	}
	pthread_mutex_unlock(&cache_lock);
}

/* ---------------------------------------------------------------- */
/* Loading an entry: one batch (its steps number it and copy the rows). */

struct cload {
	struct rentry *e;           /* a reference */
	void (*fn)(struct rentry *e, int ok, void *arg);
	void *arg;
	uint64_t seq;
	size_t plen;
	struct rcontact *v;         /* items, then requests, as read */
	size_t n, cap;
};

static int
load_add(struct cload *l, const char *jid, unsigned flags, int pin)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct rcontact *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	if ((l->v[l->n].jid = strdup(jid)) == NULL)
		return -1;
	l->v[l->n].flags = flags;
	l->v[l->n].pin = pin;
	l->v[l->n++].seq = l->seq;
	return 0;
}

/* Step, first: the load's place among the changes. */
static int
load_number(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	((struct cload *)ud)->seq = roster_seq_next();
	return 0;
}

static int
load_item(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
    void *ud)
{
	struct cload *l = ud;
	int f = roster_record_flags(val, vlen);

	if (klen <= l->plen + 1 || f < 0 || (f & F_GONE))
		return 0;
	return load_add(l, (const char *)key + l->plen, ((unsigned)f & F_STATE) | F_ITEM, 0);
}

static int
load_request(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
    void *ud)
{
	struct cload *l = ud;

	if (klen <= l->plen + 1)
		return 0;
	return load_add(l, (const char *)key + l->plen, 0, 1);
}

static int
rcontact_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rcontact *)a)->jid, ((const struct rcontact *)b)->jid);
}

/* The index of jid among the first n of v (sorted), or n. */
static size_t
sorted_find(const struct rcontact *v, size_t n, const char *jid)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(v[mid].jid, jid);

		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return n;
}

/* The rows as e's contacts (sorted, an item and a request of one contact
 * merged), the newer changes e holds kept. With cache_lock held. */
static int
load_apply(struct rentry *e, struct cload *l)
{
	size_t n = 0, sorted;

	/* Room for all of e first: nothing below can fail. */
	if (l->cap < l->n + e->n) {
		struct rcontact *v = realloc(l->v, (l->n + e->n) * sizeof(*v));

		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = l->n + e->n;
	}
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), rcontact_cmp);
	for (size_t i = 0; i < l->n; i++) {
		if (n > 0 && strcmp(l->v[n - 1].jid, l->v[i].jid) == 0) {
			l->v[n - 1].flags |= l->v[i].flags;
			l->v[n - 1].pin |= l->v[i].pin;
			free(l->v[i].jid);
			continue;
		}
		l->v[n++] = l->v[i];
	}
	l->n = sorted = n;
	/* What e holds from changes after the load stays; the rest goes. */
	for (size_t i = 0; i < e->n; i++) {
		struct rcontact *c = &e->v[i];
		size_t j;

		if (c->seq <= l->seq)
			continue;
		if ((j = sorted_find(l->v, sorted, c->jid)) < sorted) {
			l->v[j].flags = c->flags;
			l->v[j].pin = c->pin;
			l->v[j].seq = c->seq;
			continue;
		}
		l->v[l->n++] = *c;
		c->jid = NULL;          /* moved */
	}
	if (l->n > sorted)
		qsort(l->v, l->n, sizeof(*l->v), rcontact_cmp);
	contacts_clear(e->v, e->n);
	e->v = l->v;
	e->n = l->n;
	e->cap = l->cap;
	l->v = NULL;
	l->n = l->cap = 0;
	e->loaded = 1;
	e->load_seq = l->seq;
	return 0;
}

static void
load_done(int status, void *ud)
{
	struct cload *l = ud;
	struct rentry *e = l->e;
	int ok;

	pthread_mutex_lock(&cache_lock);
	/* A load older than the one applied brings nothing new. */
	if (status == XMPPD_STORE_OK && (!e->loaded || l->seq > e->load_seq) &&
	    load_apply(e, l) < 0)
		e->loaded = 0;
	ok = e->loaded;
	pthread_mutex_unlock(&cache_lock);
	if (l->fn != NULL)
		l->fn(e, ok, l->arg);
	contacts_clear(l->v, l->n);
	cache_unref(e);
	free(l);
}

int
cache_load(struct roster *r, struct rentry *e, void (*fn)(struct rentry *e, int ok, void *arg),
    void *arg)
{
	xmppd_jid *user = xmppd_jid_parse(e->bare);
	char p[KEY_MAX], mk[KEY_MAX];
	struct cload *l = calloc(1, sizeof(*l));
	size_t ml = 0;
	xmppd_batch *b = NULL;

	if (l == NULL || user == NULL || (l->plen = roster_key(p, user, NULL)) == 0 ||
	    (ml = roster_key(mk, user, "")) == 0 || (b = xmppd_batch_new(r->ctx)) == NULL) {
		xmppd_jid_free(user);
		free(l);
		return -1;
	}
	xmppd_jid_free(user);
	l->fn = fn;
	l->arg = arg;
	pthread_mutex_lock(&cache_lock);
	e->refs++;
	pthread_mutex_unlock(&cache_lock);
	l->e = e;
	/* A batch, not plain reads, so that its steps run under the write
	 * lock and its number is in the order of the changes. */
	(void)xmppd_batch_get(b, T_ROSTER, mk, ml, load_number, l);
	(void)xmppd_batch_scan(b, T_ROSTER, p, l->plen, load_item, l);
	(void)xmppd_batch_scan(b, T_PENDING, p, l->plen, load_request, l);
	if (xmppd_batch_submit(b, load_done, l) < 0) {
		cache_unref(e);
		free(l);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* The roster query (ABI 1.4): answered from the cache.               */

static struct roster *query_roster;

/* The user's state with contact as XMPPD_SUB_* bits (RFC 6121 2.1.2.5:
 * to, from, both; ask='subscribe' is Pending Out; a request stored from
 * the contact is Pending In, 3.1.3). */
static int
sub_bits(struct rentry *e, const char *contact)
{
	unsigned f;
	int pin, sub = XMPPD_SUB_NONE;

	if (cache_state(e, contact, &f, &pin) < 0)
		return -1;
	if (f & F_TO)
		sub |= XMPPD_SUB_TO;
	if (f & F_FROM)
		sub |= XMPPD_SUB_FROM;
	if (f & F_ITEM)
		sub |= XMPPD_SUB_IN_ROSTER;
	if (f & F_ASK)
		sub |= XMPPD_SUB_PENDING_OUT;
	if (pin)
		sub |= XMPPD_SUB_PENDING_IN;
	return sub;
}

/* A query waiting for the user's roster to be read. */
struct rquery {
	xmppd_roster_sub_fn done;
	void *done_ud;
	char contact[];
};

static void
query_loaded(struct rentry *e, int ok, void *arg)
{
	struct rquery *q = arg;

	/* A store that failed: unknown, which the ABI says with < 0. */
	q->done(ok ? sub_bits(e, q->contact) : -1, q->done_ud);
	free(q);
}

/*
 * The user's entry answers at once when a session of the user keeps it
 * loaded (and current: changes are applied as they complete); otherwise
 * the roster is read from the store first, as the presence code does for
 * an entry that is not loaded, and the entry goes again with the last
 * reference.
 */
static void
provide(const xmppd_jid *user, const xmppd_jid *contact, xmppd_roster_sub_fn done,
    void *done_ud)
{
	struct rentry *e = cache_ref(xmppd_jid_bare(user));
	const char *cb = xmppd_jid_bare(contact);
	struct rquery *q;

	if (e == NULL) {
		done(-1, done_ud);
		return;
	}
	if (cache_loaded(e)) {
		done(sub_bits(e, cb), done_ud);
		cache_unref(e);
		return;
	}
	if ((q = malloc(sizeof(*q) + strlen(cb) + 1)) == NULL) {
		done(-1, done_ud);
		cache_unref(e);
		return;
	}
	q->done = done;
	q->done_ud = done_ud;
	strcpy(q->contact, cb);
	/* The load holds its own reference to e until query_loaded ran. */
	if (cache_load(query_roster, e, query_loaded, q) < 0) {
		free(q);
		done(-1, done_ud);
	}
	cache_unref(e);
}

int
roster_query_load(struct roster *r)
{
	query_roster = r;
	return xmppd_roster_provide(r->ctx, provide);
}
