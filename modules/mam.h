/*
 * mam.h - what the files of mod_mam (XEP-0313 Message Archive Management,
 * XEP-0359 stanza ids, XEP-0441 preferences, XEP-0431 full-text search)
 * share.
 *
 *   mam_store.c   ids, keys, records, dates: pure functions (t/unit/t-mam.c)
 *   mod_mam.c     the descriptor, archiving (hooks), preferences, disco
 *   mam_iq.c      the IQs to an account: who may ask, preferences
 *   mam_query.c   the query, form, metadata IQs and their paging; the
 *                 index keys of a row
 *   mam_purge.c   the retention purge
 *   mam_ctl.c     xmppctl archive
 *
 * mam_store.c, mam_text.c, mam_query.c and mam_purge.c are compiled into
 * mod_muc as well, for the rooms' archives (muc_mam.c): a module that
 * links them defines mam_ctx, mam_arch (its tables) and mam_expiry_of.
 * Each module has its own copy (modules are loaded with their symbols
 * local), so the two archives share code, not state.
 *
 * Tables (user tables: each key starts with xmppd_store_key(host, node),
 * so an archive goes with its account):
 *   mam        (host, node) + id8         -> a record (below)
 *   mam_with   (host, node, with-bare) + id8 -> empty: the 'with' index
 *   mam_ft     (host, node, word) + id8   -> empty: the full-text index
 *   mam_prefs  (host, node)               -> the user's preferences
 * id8 is the message's id, 8 bytes big-endian, so one user's rows are one
 * key range in archive order.
 */
#ifndef MAM_H
#define MAM_H

#include <stddef.h>
#include <stdint.h>

#include <xmppd.h>

#define MAM_TABLE "mam"
#define MAM_TABLE_WITH "mam_with"
#define MAM_TABLE_FT "mam_ft"
#define MAM_TABLE_PREFS "mam_prefs"

#define NS_MAM "urn:xmpp:mam:2"
#define NS_MAM_EXT "urn:xmpp:mam:2#extended"
#define NS_SID "urn:xmpp:sid:0"
#define NS_FULLTEXT "urn:xmpp:fulltext:0"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DELAY "urn:xmpp:delay"
#define NS_RSM "http://jabber.org/protocol/rsm"
#define NS_XDATA "jabber:x:data"
#define NS_HINTS "urn:xmpp:hints"
#define NS_CARBONS "urn:xmpp:carbons:2"

#define MAM_KEY_MAX 512         /* LMDB's key limit is 511 bytes */
#define MAM_ID_LEN 8
#define MAM_ID_TEXT 16          /* printed: 16 lowercase hex digits */
#define MAM_REC_VERSION 1
#define MAM_PREFS_VERSION 1
/* Words of one message put in the full-text index. */
#define MAM_FT_WORDS 256
/* Ids one full-text term may contribute to a query (a bound on the work
 * of one query: a term matching more messages gives partial results). */
#define MAM_FT_CANDIDATES 10000

enum mam_dir { MAM_DIR_IN = 0, MAM_DIR_OUT = 1 };
/* MAM_UNSET: the module's default_mode (a user whose retention only was
 * set). */
enum mam_default { MAM_ALWAYS = 0, MAM_NEVER = 1, MAM_ROSTER = 2, MAM_UNSET = 3 };

/* ---------------------------------------------------------------- */
/* mam_store.c                                                        */

/* The next id: microseconds since the epoch (now_us), or one more than
 * the last id given if that is not later, so that ids are strictly
 * increasing across the server (an atomic compare-and-swap). */
uint64_t mam_id_next(uint64_t now_us);
/* The wall clock in microseconds since the epoch. */
uint64_t mam_now_us(void);
/* id as 16 lowercase hex digits and a NUL (buf of MAM_ID_TEXT + 1). */
void mam_id_format(uint64_t id, char *buf);
/* 0 and *id_r for exactly 16 lowercase hex digits; -1 otherwise. */
int mam_id_parse(const char *s, uint64_t *id_r);
void mam_put_id(unsigned char *p, uint64_t id);
uint64_t mam_get_id(const unsigned char *p);

/* xmppd_store_key(host, node) into buf (MAM_KEY_MAX), leaving room for an
 * id; 0 if it does not fit. */
size_t mam_user_prefix(char *buf, const char *host, const char *node);
/* xmppd_store_key(host, node, part) (with 'with' or a word); 0 if too
 * long. */
size_t mam_part_prefix(char *buf, const char *host, const char *node, const char *part);

/* A record: version, time (us), direction, the other party's bare and
 * full JID, the message as text. */
struct mam_rec {
	uint64_t ts_us;
	int dir;
	const char *with_bare;      /* into the value */
	const char *with_full;
	const char *msg;            /* not NUL-terminated */
	size_t msg_len;
};
/* A malloc'd value and its length in *len_r, or NULL (no memory). */
unsigned char *mam_rec_encode(const struct mam_rec *r, size_t *len_r);
/* 0 and r pointing into val, or -1 (not a record of a version we know). */
int mam_rec_decode(const void *val, size_t vlen, struct mam_rec *r);

/* XEP-0082 DateTime (CCYY-MM-DDThh:mm:ss[.sss](Z|+-hh:mm)) to
 * microseconds since the epoch: 0 or -1. */
int mam_date_parse(const char *s, int64_t *us_r);
/* us as XEP-0082 DateTime in UTC with microseconds (buf of 32). */
void mam_date_format(uint64_t us, char *buf, size_t size);

/* Preferences (XEP-0441) and the retention override of one user. */
struct mam_prefs {
	int def;                    /* enum mam_default */
	int64_t expiry;             /* seconds; -1: the module's archive_expiry */
	char **always, **never;     /* bare or full JIDs */
	size_t n_always, n_never;
};
unsigned char *mam_prefs_encode(const struct mam_prefs *p, size_t *len_r);
/* 0 and *p (malloc'd lists: mam_prefs_clear), or -1. */
int mam_prefs_decode(const void *val, size_t vlen, struct mam_prefs *p);
void mam_prefs_clear(struct mam_prefs *p);
/* The rule for contact (a prepared JID: bare, and full or NULL): 1
 * archive, 0 not, -1 it depends on the roster (default 'roster' and no
 * list names it); module_default stands for MAM_UNSET. XEP-0441 3: a list entry wins over the default, and
 * 'never' wins over 'always' when both name it. */
int mam_prefs_rule(const struct mam_prefs *p, int module_default, const char *bare,
    const char *full);

/* ---------------------------------------------------------------- */
/* What the module linking the shared files defines.                  */

struct mam_archive {
	/* The tables: rows, the 'with' index, the full-text index (keys as
	 * above, with the owner's host and node). */
	const char *table, *table_with, *table_ft;
	/* 'with' of a record is indexed and matched by its full JID (a room's
	 * occupant JID, XEP-0313 6.1.2) instead of its bare JID. */
	int with_full;
	/* NULL, or called on each archived message before it goes out in a
	 * result, with the query's shape (mam_query_set): what the asker
	 * may see of it. */
	void (*shape)(xmppd_elem *msg, int shape);
	/* Results are routed (a room's askers may be on other servers), not
	 * delivered to a local resource without routing (an account's own
	 * sessions: no filter_packet, so no archiving of them). */
	int route_results;
};
extern const struct mam_archive mam_arch;
extern xmppd_ctx *mam_ctx;
/* The expiry in seconds that applies to the archive of bare (0: keep
 * forever). */
int64_t mam_expiry_of(const char *bare);

/* ---------------------------------------------------------------- */
/* mod_mam.c                                                          */

/* The preferences of user bare (a deep copy into *p, or the defaults
 * when the user has none): 0, or -1 out of memory. Any thread. */
int mam_prefs_get(const char *bare, struct mam_prefs *p);
/* The same, with MAM_UNSET kept (to change only the retention). */
int mam_prefs_get_raw(const char *bare, struct mam_prefs *p);
/* Replaces the cached preferences of bare with p (taken and cleared;
 * NULL: drops them). Any thread. */
void mam_prefs_cache_put(const char *bare, struct mam_prefs *p);

/* ---------------------------------------------------------------- */
/* mam_query.c                                                        */

/* The words of a message's text for the full-text index (its <body/>),
 * folded (mam_text.h). */
void mam_words_of(xmppd_elem *st, void (*fn)(const char *w, size_t wlen, void *ud),
    void *ud);
/* Calls fn with every index key (mam_with, mam_ft) of the record val of
 * the message id in the archive of host, node: what goes with the row. */
void mam_index_keys(const char *host, const char *node, uint64_t id, const void *val,
    size_t vlen, void (*fn)(const char *table, const void *key, size_t klen, void *ud),
    void *ud);
/* XEP-0313 4: the query of iq (payload its <query/>) by from to the
 * archive of to (node@host: a user, or a room), answered to from;
 * shape goes to mam_arch.shape. */
void mam_query_set(xmppd_elem *iq, xmppd_elem *payload, const xmppd_jid *from,
    const xmppd_jid *to, int shape);
/* XEP-0313 4.1.5: the search form. */
void mam_form_get(xmppd_elem *iq);
/* XEP-0313 7 (#extended): the first and last message of to's archive. */
void mam_metadata_get(xmppd_elem *iq, const xmppd_jid *to);

/* ---------------------------------------------------------------- */
/* mam_iq.c                                                           */

enum xmppd_result mam_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to,
    void *ud);

/* ---------------------------------------------------------------- */
/* mam_ctl.c                                                          */

int mam_ctl_register(xmppd_ctx *ctx);

/* ---------------------------------------------------------------- */
/* mam_purge.c                                                        */

/* The purge timer (on worker 0; option purge_interval). 0 or -1. */
int mam_purge_start(xmppd_ctx *ctx);
/* Splits a key of a user table into host and node (into buffers of
 * MAM_KEY_MAX); the length of the user's prefix, or 0. */
size_t mam_key_user(const void *key, size_t klen, char *host, char *node);

#endif
