/*
 * muc.h - mod_muc's units (XEP-0045 Multi-User Chat): mod_muc.c (the
 * service on conference.HOST, options, disco of the service, the rooms
 * per user table), muc_room.c (the per-worker room tables, occupants,
 * affiliations, presence broadcast, the message rate, destroy),
 * muc_presence.c (join, leave, nickname change, history, subject on
 * join), muc_message.c (groupchat, private messages, subject changes,
 * invitations, voice requests), muc_admin.c (the owner's configuration
 * form, roles and affiliations, registration, the room's disco),
 * muc_store.c (persistent rooms, lazy loading), muc_ctl.c (listings
 * across workers: disco#items of the service, xmppctl muc),
 * muc_mention.c (absent members' mentions: push and the missed list).
 *
 * A room is an entity: its bare JID (room@conference.HOST) names the
 * worker that owns it (xmppd_service_register hands a stanza to the
 * worker its bare 'to' hashes to, which is xmppd_entity_worker() of the
 * same string: core/placement.c), so a room's state is touched by one
 * worker only, without locks. Each worker has its own table of rooms.
 *
 * Occupants are hashed by nickname and their sessions by real full JID
 * in per-room tables, so that what a stanza does costs O(1) lookups
 * plus one pass over the occupants for a broadcast, which builds each
 * kind of stanza once and copies it per recipient only to set 'to'.
 */
#ifndef MUC_H
#define MUC_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <xmppd.h>

#define NS_MUC "http://jabber.org/protocol/muc"
#define NS_MUC_USER NS_MUC "#user"
#define NS_MUC_ADMIN NS_MUC "#admin"
#define NS_MUC_OWNER NS_MUC "#owner"
#define NS_MUC_ROOMCONFIG NS_MUC "#roomconfig"
#define NS_MUC_ROOMINFO NS_MUC "#roominfo"
#define NS_XDATA "jabber:x:data"
#define NS_DELAY "urn:xmpp:delay"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_PING "urn:xmpp:ping"
#define NS_OCCUPANT_ID "urn:xmpp:occupant-id:0"
#define NS_SID "urn:xmpp:sid:0"
/* base64 of a SHA-256 HMAC: 44 characters and the NUL. */
#define MUC_OCC_ID_LEN 45

#define MUC_NICK_MAX 256
#define MUC_OCC_BUCKETS 128
#define MUC_INVITES_KEPT 16
#define MUC_IQS_KEPT 32

/* XEP-0045 5.1 roles, 5.2 affiliations (ordered: higher is more). */
enum muc_role { MUC_ROLE_NONE, MUC_ROLE_VISITOR, MUC_ROLE_PARTICIPANT, MUC_ROLE_MODERATOR };
enum muc_aff { MUC_AFF_OUTCAST = -1, MUC_AFF_NONE = 0, MUC_AFF_MEMBER, MUC_AFF_ADMIN,
	MUC_AFF_OWNER };
/* muc#roomconfig_allowpm */
enum muc_pm { MUC_PM_ANYONE, MUC_PM_PARTICIPANTS, MUC_PM_MODERATORS, MUC_PM_NONE };

struct muc_config {
	char *name;
	char *desc;
	char *secret;               /* "" when none */
	int persistent;
	int public;
	int membersonly;
	int moderated;
	int password_protected;
	int whois_anyone;           /* else moderators only (semi-anonymous) */
	long maxusers;              /* 0: the service's cap */
	int changesubject;          /* occupants may change the subject */
	int allowinvites;
	int allowpm;                /* enum muc_pm */
	int logging;
	/* muc#roomconfig_enablearchiving (Prosody's field): the room keeps
	 * a XEP-0313 archive (muc_mam.c); on by default, as Prosody's
	 * muc_log_by_default. */
	int archiving;
};

/* One session (a real full JID) of an occupant: XEP-0045 allows one
 * occupant per real JID; several resources of one user under one
 * nickname share the occupant (as Prosody and ejabberd do). */
struct muc_sess {
	struct muc_sess *next;      /* the occupant's sessions */
	struct muc_sess *fnext;     /* the room's table by full JID */
	struct muc_occ *occ;
	xmppd_jid *full;
	xmppd_elem *presence;       /* the last presence it sent (a reference) */
	double tokens;              /* message rate (token bucket) */
	uint64_t at;
};

struct muc_occ {
	struct muc_occ *nnext;      /* the room's table by nickname */
	struct muc_occ *prev, *next;    /* the room's list, in join order */
	char *nick;
	char *bare;                 /* the real bare JID */
	int role;
	int aff;                    /* the room's affiliation of bare (a copy) */
	struct muc_sess *sess;
	size_t nsess;
	/* XEP-0421 3: the occupant id, computed once on join (muc_occ_id). */
	char occ_id[MUC_OCC_ID_LEN];
};

struct muc_aff_entry {
	char *jid;                  /* bare */
	int aff;
	char *reason;
	char *nick;                 /* reserved (7.10 registration), or NULL */
	int mention_all;            /* muc_mention.c: every message counts */
};

struct muc_hist {
	xmppd_elem *msg;            /* from room/nick, no 'to' */
	time_t at;
	size_t chars;
	uint64_t seq;               /* its row in mod_muc_hist (persistent rooms) */
};

struct muc_queued;

struct muc_room {
	struct muc_room *hnext;
	/* Loading from the store (muc_store.c): stanzas wait here. */
	int loading;
	struct muc_queued *queue, *queue_tail;
	char *jid;                  /* room@service */
	char *service;
	struct muc_config cfg;
	int locked;                 /* XEP-0045 10.1.1: until configured */
	struct muc_aff_entry *affs;
	size_t naffs;
	struct muc_occ *occ_head, *occ_tail;
	size_t nocc;
	struct muc_occ *by_nick[MUC_OCC_BUCKETS];
	struct muc_sess *by_full[MUC_OCC_BUCKETS];
	struct muc_hist *hist;      /* a ring of mod.history_size */
	size_t hist_start, hist_len;
	uint64_t hist_seq;          /* the next stored history entry's number */
	xmppd_elem *subject;        /* the last subject message (from room/nick) */
	char *creator;              /* counted against max_rooms_per_user, or NULL */
	/* The last invitations (7.8.2), so that a decline (7.8.3) goes to
	 * its inviter only: the room relays nothing to anyone else. */
	struct {
		char *invitee;      /* bare */
		char *inviter;      /* full */
	} invites[MUC_INVITES_KEPT];
	size_t invite_next;
	/* IQs relayed between occupants, waiting for their answer. */
	struct {
		char *id;           /* the id the room gave it */
		char *orig_id;
		char *asker;        /* real full JID */
		char *target;       /* the real JID it went to */
		char *target_nick;
	} iqs[MUC_IQS_KEPT];
	size_t iq_next;
	uint64_t iq_seq;
	/* Joins (new sessions) of users below admin: a token bucket of
	 * join_rate per second, join_burst deep (muc_join_take). */
	double join_tokens;
	uint64_t join_at;
	/* muc_mention.c: its index of the members, rebuilt when aff_gen
	 * (each change of affs) moves on. */
	struct muc_mention *mention;
	uint64_t aff_gen;
};

/* Module-wide settings, read-only after load. */
struct muc_mod {
	xmppd_ctx *ctx;
	char **services;
	size_t nservices;
	const char *name;
	const char *access_create;
	long history_size;
	long max_users;
	long max_subject;
	long max_nick;
	long msg_rate, msg_burst;
	long join_rate, join_burst;
	long max_rooms_per_user;
	const char *rate_error;
	struct muc_table *tables;   /* one per worker */
	/* XEP-0421 the HMAC key of occupant ids (occupant_id_secret, or
	 * random at load). */
	unsigned char occ_secret[64];
	size_t occ_secret_len;
	unsigned nworkers;
	long mention_keep;          /* missed mentions kept per member */
	/* Set by server_stopping (muc_ctl.c), read by every worker: the
	 * occupants were told (332), their exits are not broadcast. */
	int stopping;
};

extern struct muc_mod muc_module;

/* ---- mod_muc.c ---- */
int muc_is(const char *a, const char *b);
const char *muc_our_service(const char *domain);
int muc_may_create(const xmppd_jid *actor);
/* max_rooms_per_user: counts a room made by bare (0), or -1 when it has
 * as many as it may; release when the room goes. Any worker (a mutex). */
int muc_creator_take(const char *bare);
void muc_creator_release(const char *bare);
/* A stored room's creator counted at start (no limit applied); ready
 * once the store's rooms are all counted (take returns -2 before). */
void muc_creator_seed(const char *bare);
void muc_creators_ready(void);
void muc_creators_free(void);
/* The <error/>-carrying reply to st, routed. */
void muc_error(const xmppd_elem *st, const char *cond, const char *text);

/* ---- muc_room.c ---- */
int muc_rooms_init(void);
void muc_rooms_free(void);
/* The calling worker's room of that bare JID, or NULL. */
struct muc_room *muc_room_find(const char *jid);
void muc_room_destroy(struct muc_room *r, const char *alt, const char *reason);
void muc_presence(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to);
void muc_message(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to);
struct muc_sess *muc_sess_find(struct muc_room *r, const char *full);
struct muc_occ *muc_occ_find(struct muc_room *r, const char *nick);
int muc_aff_of(const struct muc_room *r, const char *bare);
int muc_aff_set(struct muc_room *r, const char *bare, int aff, const char *reason);
/* XEP-0045 7.10, 7.12: reserved nicknames, kept with an affiliation.
 * The bare JID that reserved nick, or NULL; bare's reserved nick, or
 * NULL; reserve (bare must have an affiliation): 0 or -1. */
const char *muc_nick_holder(const struct muc_room *r, const char *nick);
const char *muc_nick_of(const struct muc_room *r, const char *bare);
int muc_nick_reserve(struct muc_room *r, const char *bare, const char *nick);
/* Sends occ's current presence to every occupant (codes for all; self
 * codes added to its own sessions too); unavailable: its exit. */
void muc_broadcast_presence(struct muc_room *r, struct muc_occ *o, int unavailable,
    const int *codes, size_t ncodes, const char *reason, const char *actor);
void muc_occ_remove(struct muc_room *r, struct muc_occ *o);
/* A role for a new occupant of aff (XEP-0045 5.1.2). */
int muc_default_role(const struct muc_room *r, int aff);
/* Sends msg (from set, no 'to') to every session of every occupant. */
void muc_broadcast(struct muc_room *r, const xmppd_elem *msg);
/* Removes the room if nobody is in it and it is not persistent. */
void muc_room_gc(struct muc_room *r);
const char *muc_role_name(int role);
const char *muc_aff_name(int aff);
int muc_role_parse(const char *s);
int muc_aff_parse(const char *s);

/* A new room with the defaults (unlocked, no occupants, temporary). */
struct muc_room *muc_room_new(const char *jid, const char *service);
/* fn for every room of the calling worker (fn must not free any). */
void muc_rooms_foreach_local(void (*fn)(struct muc_room *r, void *ud), void *ud);
/* A placeholder room (loading) in the calling worker's table. */
struct muc_room *muc_room_placeholder(const char *jid, const char *service);
/* Unlinks and frees a room (what is queued on it is dropped). */
void muc_room_drop(struct muc_room *r);

/* Internals shared by muc_room.c, muc_presence.c, muc_message.c. */
char *muc_occ_jid(const struct muc_room *r, const char *nick);      /* malloc'd */
/* A copy of st (from set) to one real JID. */
void muc_send_copy(const xmppd_elem *st, const xmppd_jid *to);
/* o's presence as one kind of recipient sees it (new). */
xmppd_elem *muc_occ_presence(struct muc_room *r, struct muc_occ *o, int unavailable,
    int with_jid, const int *codes, size_t ncodes, const char *reason, const char *actor,
    const char *new_nick);
void muc_broadcast_presence_nick(struct muc_room *r, struct muc_occ *o, int unavailable,
    const int *codes, size_t ncodes, const char *reason, const char *actor,
    const char *new_nick, const int *self_codes, size_t nself);
int muc_sees_jids(const struct muc_room *r, const struct muc_occ *q);
/* The session's token bucket: 1 when it may send now. */
int muc_rate_take(struct muc_sess *s);
/* The room's join bucket: 1 when one more may join now. */
int muc_join_take(struct muc_room *r);
void muc_hist_add(struct muc_room *r, xmppd_elem *msg);
struct muc_occ *muc_occ_new(struct muc_room *r, const char *nick, const char *bare, int role,
    int aff);
struct muc_sess *muc_sess_add(struct muc_room *r, struct muc_occ *o, const xmppd_jid *full,
    xmppd_elem *presence);
void muc_sess_remove(struct muc_room *r, struct muc_sess *s);
void muc_nick_link(struct muc_room *r, struct muc_occ *o);
/* XEP-0421: adds o's <occupant-id/> to st; removes every occupant-id a
 * client put in st (XEP-0421 4). */
void muc_occ_id_add(const struct muc_occ *o, xmppd_elem *st);
void muc_occ_id_strip(xmppd_elem *st);
void muc_nick_unlink(struct muc_room *r, struct muc_occ *o);

/* ---- muc_store.c ---- */
/* Writes a persistent room's record, or deletes a temporary one's. */
void muc_room_save(struct muc_room *r);
void muc_room_forget(const char *room_jid);
void muc_queue_free(struct muc_room *r);
/* 1 when st waits for (or started) the room's loading; 0: go on. */
int muc_gate(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to);
size_t muc_store_service_prefix(char *buf, size_t size, const char *service);
/* Counts the stored rooms' creators (max_rooms_per_user), then
 * muc_creators_ready(). 0 or -1. */
int muc_store_count_creators(void);
/* A stored record: the version byte, then e as text (e is taken). A
 * malloc'd value and its length in *len_r, or NULL (no memory). */
char *muc_rec_encode(xmppd_elem *e, unsigned version, size_t *len_r);
#define MUC_T_ROOMS "mod_muc_rooms"
#define MUC_T_HIST "mod_muc_hist"
/* A persistent room's history entry into the store (h->seq given), the
 * one history_size older out. */
void muc_hist_save(struct muc_room *r, struct muc_hist *h);
/* Writes h again (its message was replaced: a moderation's tombstone). */
void muc_hist_rewrite(struct muc_room *r, const struct muc_hist *h);

/* ---- muc_mention.c ---- */
#define NS_MUC_MENTIONS "urn:xmppd:muc:mentions:0"
#define MUC_T_MENTIONS "mod_muc_mentions"
/* A groupchat message m the room broadcast (from room/nick): pushes and
 * keeps it for the absent members it concerns. */
void muc_mention_message(struct muc_room *r, const xmppd_elem *m);
/* An IQ of NS_MUC_MENTIONS to the room. */
void muc_mention_iq(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *from,
    int set);
void muc_mention_free(struct muc_room *r);
/* bare lost its affiliation (its list goes); the room went (every list). */
void muc_mention_member_gone(struct muc_room *r, const char *bare);
void muc_mention_room_gone(const char *room_jid);

/* ---- mod_muc.c (again) ---- */
/* Runs a stanza for a room (room@service[/nick]) that is in memory or
 * known to be absent. */
void muc_dispatch(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to);

/* ---- muc_ctl.c ---- */
int muc_ctl_init(xmppd_ctx *ctx);
void muc_ctl_free(void);
/* XEP-0045 6.3: the service's public rooms (with RSM), answered from
 * the last worker to have looked at its rooms. */
void muc_service_items(xmppd_elem *iq, const char *service, xmppd_elem *q);

/* ---- muc_admin.c ---- */
void muc_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to);
/* An IQ result or error to room/nick: the answer to a relayed IQ. */
void muc_iq_answer(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to);
void muc_room_disco_info(struct muc_room *r, xmppd_elem *iq);

/* ---- muc_mam.c ---- */
int muc_mam_init(xmppd_ctx *ctx);
/* XEP-0359 3.1: the id of the next message the room broadcasts (also
 * its archive id): into buf (17 bytes); the id. */
uint64_t muc_mam_next_id(char *buf);
/* Archives m (a groupchat broadcast with a body, id its stanza-id) sent
 * by s (NULL: by the room, a moderation's announcement), when the room
 * archives. */
void muc_mam_store(struct muc_room *r, const struct muc_sess *s, const xmppd_elem *m,
    uint64_t id);
/* The room's archive features for its disco#info. */
void muc_mam_features(const struct muc_room *r, xmppd_elem *q);
/* 1 when iq (payload q) is for the archive or moderation, answered. */
int muc_mam_iq(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *from,
    const xmppd_jid *to, int set);
/* Deletes the archive of a room that goes. */
void muc_mam_forget(const char *room_jid);

#endif
