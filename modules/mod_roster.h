/*
 * mod_roster.h - what the files of mod_roster share; internal to the
 * module. Declarations are grouped by the file that defines them:
 *
 *  - mod_roster.c: roster pushes, the roster IQ (RFC 6121 2, XEP-0237),
 *    loading;
 *  - mod_roster_store.c: the store records, and the changes to one
 *    roster item (one batch each) with the item updates and removals of
 *    the roster IQ and xmppctl;
 *  - mod_roster_cache.c: every online user's contacts and subscription
 *    states in memory, for what presence must decide at once;
 *  - mod_roster_presence.c: presence: subscriptions (RFC 6121 3), probes,
 *    broadcast and directed presence (4), the session hooks;
 *  - mod_roster_ctl.c: work the main thread hands to a worker (the store
 *    answers only there), xmppctl roster, and remove_user.
 *
 * Results are owned as in xmppd.h: roster_item_free frees an item,
 * roster_contacts_free a contact list, roster_bare returns a new JID.
 */
#ifndef MOD_ROSTER_H
#define MOD_ROSTER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <xmppd.h>

#define NS_ROSTER "jabber:iq:roster"
#define T_ROSTER "mod_roster"
#define T_PENDING "mod_roster_pending"
#define T_LAST "mod_roster_last"
#define KEY_MAX 512                     /* LMDB's key limit is 511 bytes */
#define REC_VERSION 1
#define PRIORITY 50

/* Subscription state of an item (RFC 6121 2.1.2.5, 3.4); F_GONE marks a
 * tombstone (a removed item, kept for XEP-0237). */
enum { F_TO = 1, F_FROM = 2, F_ASK = 4, F_APPROVED = 8, F_GONE = 16 };
#define F_STATE (F_TO | F_FROM | F_ASK | F_APPROVED)
/* In mod_roster_cache.c only: the contact has a (live) item, whatever
 * its state (an item with subscription none has no F_STATE bit). */
#define F_ITEM 32

struct roster {
	xmppd_ctx *ctx;
	long max_items, max_name, max_group, max_groups;
	int slot;               /* struct sess, mod_roster_presence.c */
	pthread_t main_thread;  /* load's: control commands run there */
};

struct item {
	unsigned flags;
	uint64_t ver;
	char *name;
	char **groups;
	size_t ngroups;
};

struct meta {
	uint32_t epoch;
	uint64_t ver, floor;    /* floor: the oldest version served incrementally */
	uint32_t nitems, ntomb;
};

/* A list of contacts (bare JIDs). */
struct contacts {
	char **v;
	size_t n, cap;
};

/* ---------------------------------------------------------------- */
/* mod_roster.c. */

/* 1 on the main thread (where load and control commands run), 0 on a
 * worker. */
int roster_on_main(const struct roster *r);
void roster_push(const xmppd_jid *user, const char *contact, const struct item *it,
    uint32_t epoch);

/* ---------------------------------------------------------------- */
/* mod_roster_store.c: records. Keys are "host NUL node NUL [contact NUL]". */

size_t roster_key(char *buf, const xmppd_jid *user, const char *contact);
int roster_item_decode(const void *val, size_t len, struct item *it);
void roster_item_free(struct item *it);
/* The flags of an item record; -1 if it is not one. */
int roster_record_flags(const void *val, size_t len);
/* A stanza as a record (malloc'd), or NULL; one too big to keep is
 * replaced by its bare bones (type, from, to). */
char *roster_stanza_record(const xmppd_elem *st, size_t *len_r);
xmppd_elem *roster_stanza_parse(const void *val, size_t vlen);
int roster_contacts_add(struct contacts *c, const char *jid);
void roster_contacts_free(struct contacts *c);
xmppd_jid *roster_bare(const xmppd_jid *j);
/* The user's version counter from its record (val NULL: none stored; a
 * roster without one starts at 0 with a fresh epoch). */
void roster_meta_decode(const void *val, size_t len, struct meta *m);

/* mod_roster_store.c: a change to one item of a user's roster, as one batch:
 * it reads the roster version, the item and whether a request from the
 * contact is pending, then decide (a step of the batch) changes c->it and
 * appends the writes with roster_change_write / roster_change_pending.
 * Once the batch has completed, the cache learns the new state and done
 * runs (status as xmppd_store_done_fn); then c is freed. */
struct rchange {
	struct roster *r;
	xmppd_jid *user;            /* bare */
	char *contact;              /* bare */
	struct meta m;
	struct item it;             /* as stored, then as written */
	int old;                    /* 0 absent, 1 live, 2 tombstone */
	int live;                   /* a live item is there once written */
	int pin;                    /* a request from the contact is pending */
	size_t npending;            /* count_pending: the user's pending requests */
	int changed;                /* the item or the request was written */
	uint64_t seq;               /* mod_roster_cache.c's order of changes */
	const char *cond;           /* why decide failed the batch */
	int (*decide)(struct rchange *c, xmppd_batch *b);
	void (*done)(struct rchange *c, int status);
	void *ud;
};
/* NULL: no memory. */
struct rchange *roster_change_new(struct roster *r, const xmppd_jid *user,
    const char *contact);
/* Takes c: 0, or -1 (not on a worker, or no memory: nothing runs, c is
 * freed). */
int roster_change_submit(struct rchange *c, int count_pending);
/* From decide: c->it as the contact's item at the next roster version
 * (XEP-0237); a removal (F_GONE) leaves a tombstone, or purges them all
 * once there are more than max_items. 0 or -1. */
int roster_change_write(struct rchange *c, xmppd_batch *b);
/* From decide: the pending request stored (st) or dropped (NULL). */
int roster_change_pending(struct rchange *c, xmppd_batch *b, const xmppd_elem *st);

/* mod_roster_store.c: roster items changed for the roster IQ and xmppctl. fn
 * runs once the change has completed: rc 0, or -1 with the stanza error
 * condition. 0 when submitted, -1 when not (fn does not run). */
typedef void (*roster_result_fn)(int rc, const char *cond, void *arg);
/* The name and groups of contact's item, creating it if needed. keep:
 * leave name (NULL) or groups (ngroups 0) as they are; both: make the
 * subscription "both" (xmppctl roster add). Pushed, then fn. */
int roster_item_update(struct roster *r, const xmppd_jid *user, const char *contact,
    const char *name, char *const *groups, size_t ngroups, int keep, int both,
    roster_result_fn fn, void *arg);
/* RFC 6121 2.5: removes contact; fn, then the push, then 2.5.2:
 * unsubscribe and unsubscribed to the contact. */
int roster_item_remove(struct roster *r, const xmppd_jid *user, const char *contact,
    roster_result_fn fn, void *arg);

/* ---------------------------------------------------------------- */
/* mod_roster_cache.c: the contacts of users with a session, with their
 * subscription states (F_STATE, 0 for no item) and whether a request
 * from them is pending. Module-wide, under a mutex. */

struct rentry;
/* The next number in the order changes are made in the store: call it
 * only from a step of a batch (steps run one at a time, under the store's
 * write lock). */
uint64_t roster_seq_next(void);
/* The entry of bare, made if needed, with a reference. NULL: no memory. */
struct rentry *cache_ref(const char *bare);
void cache_unref(struct rentry *e);
/* Reads e from the store; then fn(e, ok, arg) (ok: e is loaded), if fn is
 * not NULL. 0, or -1 (not on a worker, no memory: fn does not run). */
int cache_load(struct roster *r, struct rentry *e,
    void (*fn)(struct rentry *e, int ok, void *arg), void *arg);
int cache_loaded(struct rentry *e);
/* The contacts whose state has one of the flags in want, and with
 * pending, also those with a request pending; -1 if e is not loaded. */
int cache_contacts(struct rentry *e, unsigned want, int pending, struct contacts *c);
/* The same for bare's entry; -1 if there is none loaded. */
int cache_contacts_of(const char *bare, unsigned want, int pending, struct contacts *c);
/* contact's state in *flags_r; -1 if e is not loaded. */
int cache_flags(struct rentry *e, const char *contact, unsigned *flags_r);
/* cache_flags, and whether a request from contact is pending. */
int cache_state(struct rentry *e, const char *contact, unsigned *flags_r, int *pin_r);
/* A change (numbered seq) has completed: contact's state and request. */
void cache_apply(const char *bare, const char *contact, unsigned flags, int pin,
    uint64_t seq);
/* Unload: frees whatever is left. */
void cache_free_all(void);
/* Registers the provider of the roster query (xmppd_roster_subscription,
 * ABI 1.4), answered from the cache. 0 or -1. */
int roster_query_load(struct roster *r);

/* ---------------------------------------------------------------- */
/* mod_roster_presence.c. */

void roster_send(const xmppd_jid *user, const char *to, const char *type);
void roster_forward(const xmppd_elem *p, void *to);
void roster_unavailable(const xmppd_elem *p, void *to);
/* Registers the presence and session hooks. 0 or -1. */
int roster_presence_load(struct roster *r);

/* ---------------------------------------------------------------- */
/* mod_roster_ctl.c. */

/* Routes st again from a worker (taken: a reference). 0 or -1. */
int roster_route_on_worker(struct roster *r, xmppd_elem *st_take);
/* Registers xmppctl roster and remove_user. 0 or -1. */
int roster_ctl_load(struct roster *r);
/* Unload: drops work never run. */
void roster_ctl_unload(void);

#endif
