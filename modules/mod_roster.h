/*
 * mod_roster.h - what the two files of mod_roster share; internal to the
 * module. mod_roster.c keeps the store records, answers the roster IQ
 * (RFC 6121 2, XEP-0237) and xmppctl roster; mod_roster_presence.c handles
 * presence: subscriptions (RFC 6121 3), probes, broadcast and directed
 * presence (4). Results are owned as in xmppd.h: roster_item_free frees an
 * item, roster_contacts_free a contact list, roster_bare returns a new JID.
 */
#ifndef MOD_ROSTER_H
#define MOD_ROSTER_H

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

struct roster {
	xmppd_ctx *ctx;
	long max_items, max_name, max_group, max_groups;
	int slot;               /* struct sess, mod_roster_presence.c */
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

struct contacts {
	char **v;
	size_t n, cap, plen;
	unsigned want;
};

/* mod_roster.c: records. Keys are "host NUL node NUL [contact NUL]". */
size_t roster_key(char *buf, const xmppd_jid *user, const char *contact);
int roster_meta_get(xmppd_txn *t, const xmppd_jid *user, struct meta *m);
int roster_item_get(xmppd_txn *t, const xmppd_jid *user, const char *contact,
    struct item *it);
int roster_item_store(struct roster *r, xmppd_txn *t, const xmppd_jid *user,
    const char *contact, struct meta *m, struct item *it, int old);
void roster_item_free(struct item *it);
int roster_pending_get(xmppd_txn *t, const xmppd_jid *user, const char *contact);
int roster_pending_del(xmppd_txn *t, const xmppd_jid *user, const char *contact);
int roster_stanza_put(xmppd_txn *t, const char *table, const char *k, size_t kl,
    const xmppd_elem *st);
xmppd_elem *roster_stanza_parse(const void *val, size_t vlen);
void roster_contacts(const char *table, const xmppd_jid *user, unsigned want,
    struct contacts *c);
void roster_contacts_free(struct contacts *c);

/* mod_roster.c: stanzas. */
void roster_push(const xmppd_jid *user, const char *contact, const struct item *it,
    uint32_t epoch);
void roster_send(const xmppd_jid *user, const char *to, const char *type);
void roster_forward(const xmppd_elem *p, void *to);
void roster_unavailable(const xmppd_elem *p, void *to);
xmppd_jid *roster_bare(const xmppd_jid *j);

/* mod_roster_presence.c: registers the presence hooks. 0 or -1. */
int roster_presence_load(struct roster *r);

#endif
