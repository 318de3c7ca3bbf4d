/*
 * muc_room.c - rooms and their occupants: the per-worker room tables,
 * affiliations and reserved nicknames, the occupant and session tables,
 * presence items and their broadcast (XEP-0045 7.2.3), the message rate,
 * destroy (10.9). muc_presence.c and muc_message.c act on what is here.
 *
 * Everything here runs on the room's worker (muc.h), so nothing is
 * locked. A temporary room nobody is in goes; a persistent one is in
 * the store (muc_store.c).
 */
#define _GNU_SOURCE             /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "muc.h"

#define ROOM_BUCKETS 1024


struct muc_table {
	struct muc_room *b[ROOM_BUCKETS];
};

static uint32_t
hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static struct muc_table *
my_table(void)
{
	int w = xmppd_worker_id();

	if (w < 0 || (unsigned)w >= muc_module.nworkers)
		return NULL;
	return &muc_module.tables[w];
}

int
muc_rooms_init(void)
{
	muc_module.nworkers = xmppd_worker_count();
	if (muc_module.nworkers == 0)
		muc_module.nworkers = 1;
	muc_module.tables = calloc(muc_module.nworkers, sizeof(*muc_module.tables));
	return muc_module.tables == NULL ? -1 : 0;
}

/* ---------------------------------------------------------------- */
/* Names.                                                             */

static const char *const role_names[] = { "none", "visitor", "participant", "moderator" };
static const char *const aff_names[] = { "none", "member", "admin", "owner" };

const char *
muc_role_name(int role)
{
	return role >= 0 && role <= MUC_ROLE_MODERATOR ? role_names[role] : "none";
}

const char *
muc_aff_name(int aff)
{
	if (aff == MUC_AFF_OUTCAST)
		return "outcast";
	return aff >= 0 && aff <= MUC_AFF_OWNER ? aff_names[aff] : "none";
}

int
muc_role_parse(const char *s)
{
	for (int i = 0; i <= MUC_ROLE_MODERATOR; i++)
		if (muc_is(s, role_names[i]))
			return i;
	return -2;
}

int
muc_aff_parse(const char *s)
{
	if (muc_is(s, "outcast"))
		return MUC_AFF_OUTCAST;
	for (int i = 0; i <= MUC_AFF_OWNER; i++)
		if (muc_is(s, aff_names[i]))
			return i;
	return -2;
}

/* ---------------------------------------------------------------- */
/* Rooms.                                                             */

struct muc_room *
muc_room_find(const char *jid)
{
	struct muc_table *t = my_table();
	struct muc_room *r;

	if (t == NULL)
		return NULL;
	for (r = t->b[hash_str(jid) % ROOM_BUCKETS]; r != NULL; r = r->hnext)
		if (strcmp(r->jid, jid) == 0)
			return r;
	return NULL;
}

static void
config_free(struct muc_config *c)
{
	free(c->name);
	free(c->desc);
	free(c->secret);
	memset(c, 0, sizeof(*c));
}

static struct muc_room *
room_new(const char *jid, const char *service)
{
	struct muc_table *t = my_table();
	struct muc_room *r;
	uint32_t b;

	if (t == NULL || (r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->jid = strdup(jid);
	r->service = strdup(service);
	/* XEP-0045 10.1.3: the defaults an instant room gets. */
	r->cfg.name = strdup("");
	r->cfg.desc = strdup("");
	r->cfg.secret = strdup("");
	r->cfg.public = 1;
	r->cfg.allowpm = MUC_PM_ANYONE;
	r->cfg.archiving = 1;
	r->cfg.maxusers = muc_module.max_users;
	r->join_tokens = (double)muc_module.join_burst;
	r->join_at = xmppd_now_ms();
	if (muc_module.history_size > 0)
		r->hist = calloc((size_t)muc_module.history_size, sizeof(*r->hist));
	if (r->jid == NULL || r->service == NULL || r->cfg.name == NULL || r->cfg.desc == NULL ||
	    r->cfg.secret == NULL || (muc_module.history_size > 0 && r->hist == NULL)) {
		free(r->jid);
		free(r->service);
		free(r->hist);
		config_free(&r->cfg);
		free(r);
		return NULL;
	}
	b = hash_str(jid) % ROOM_BUCKETS;
	r->hnext = t->b[b];
	t->b[b] = r;
	return r;
}

static void
room_free(struct muc_room *r)
{
	muc_queue_free(r);
	for (size_t i = 0; i < MUC_INVITES_KEPT; i++) {
		free(r->invites[i].invitee);
		free(r->invites[i].inviter);
	}
	for (size_t i = 0; i < MUC_IQS_KEPT; i++) {
		free(r->iqs[i].id);
		free(r->iqs[i].orig_id);
		free(r->iqs[i].asker);
		free(r->iqs[i].target);
		free(r->iqs[i].target_nick);
	}
	if (r->creator != NULL) {
		muc_creator_release(r->creator);
		free(r->creator);
	}
	while (r->occ_head != NULL)
		muc_occ_remove(r, r->occ_head);
	for (size_t i = 0; i < r->naffs; i++) {
		free(r->affs[i].jid);
		free(r->affs[i].reason);
		free(r->affs[i].nick);
	}
	free(r->affs);
	muc_mention_free(r);
	for (size_t i = 0; i < r->hist_len; i++)
		xmppd_elem_unref(r->hist[(r->hist_start + i) % (size_t)muc_module.history_size].msg);
	free(r->hist);
	xmppd_elem_unref(r->subject);
	config_free(&r->cfg);
	free(r->jid);
	free(r->service);
	free(r);
}

static void
room_unlink(struct muc_room *r)
{
	struct muc_table *t = my_table();
	struct muc_room **pp;

	if (t == NULL)
		return;
	for (pp = &t->b[hash_str(r->jid) % ROOM_BUCKETS]; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == r) {
			*pp = r->hnext;
			return;
		}
}

void
muc_rooms_free(void)
{
	struct muc_room *r, *nx;

	if (muc_module.tables == NULL)
		return;
	for (unsigned w = 0; w < muc_module.nworkers; w++)
		for (size_t b = 0; b < ROOM_BUCKETS; b++)
			for (r = muc_module.tables[w].b[b]; r != NULL; r = nx) {
				nx = r->hnext;
				room_free(r);
			}
	free(muc_module.tables);
	muc_module.tables = NULL;
}

struct muc_room *
muc_room_new(const char *jid, const char *service)
{
	return room_new(jid, service);
}

void
muc_rooms_foreach_local(void (*fn)(struct muc_room *r, void *ud), void *ud)
{
	struct muc_table *t = my_table();

	if (t == NULL)
		return;
	for (size_t b = 0; b < ROOM_BUCKETS; b++)
		for (struct muc_room *r = t->b[b]; r != NULL; r = r->hnext)
			fn(r, ud);
}

struct muc_room *
muc_room_placeholder(const char *jid, const char *service)
{
	struct muc_room *r = room_new(jid, service);

	if (r != NULL)
		r->loading = 1;
	return r;
}

void
muc_room_drop(struct muc_room *r)
{
	room_unlink(r);
	room_free(r);
}

void
muc_room_gc(struct muc_room *r)
{
	/* XEP-0045 10.1.1 / 9.?: a temporary room goes with its last
	 * occupant. */
	if (r->nocc == 0 && !r->cfg.persistent && !r->loading) {
		muc_mam_forget(r->jid);
		room_unlink(r);
		room_free(r);
	}
}

/* ---------------------------------------------------------------- */
/* Affiliations.                                                      */

int
muc_aff_of(const struct muc_room *r, const char *bare)
{
	for (size_t i = 0; i < r->naffs; i++)
		if (strcmp(r->affs[i].jid, bare) == 0)
			return r->affs[i].aff;
	return MUC_AFF_NONE;
}

int
muc_aff_set(struct muc_room *r, const char *bare, int aff, const char *reason)
{
	struct muc_aff_entry *na;
	size_t i;

	/* Occupants keep a copy (presence items read it for each): an
	 * affiliation change is rare, a broadcast is not. */
	for (struct muc_occ *o = r->occ_head; o != NULL; o = o->next)
		if (strcmp(o->bare, bare) == 0)
			o->aff = aff;
	r->aff_gen++;
	if (aff < MUC_AFF_MEMBER && muc_aff_of(r, bare) >= MUC_AFF_MEMBER)
		muc_mention_member_gone(r, bare);
	for (i = 0; i < r->naffs; i++)
		if (strcmp(r->affs[i].jid, bare) == 0)
			break;
	if (aff == MUC_AFF_NONE) {
		if (i < r->naffs) {
			free(r->affs[i].jid);
			free(r->affs[i].reason);
			free(r->affs[i].nick);
			r->affs[i] = r->affs[--r->naffs];
		}
		return 0;
	}
	if (i == r->naffs) {
		if ((na = realloc(r->affs, (r->naffs + 1) * sizeof(*na))) == NULL)
			return -1;
		r->affs = na;
		if ((r->affs[i].jid = strdup(bare)) == NULL)
			return -1;
		r->affs[i].reason = NULL;
		r->affs[i].nick = NULL;
		r->affs[i].mention_all = 0;
		r->naffs++;
	}
	r->affs[i].aff = aff;
	free(r->affs[i].reason);
	r->affs[i].reason = reason != NULL && *reason ? strdup(reason) : NULL;
	return 0;
}

const char *
muc_nick_holder(const struct muc_room *r, const char *nick)
{
	for (size_t i = 0; i < r->naffs; i++)
		if (r->affs[i].nick != NULL && strcmp(r->affs[i].nick, nick) == 0)
			return r->affs[i].jid;
	return NULL;
}

const char *
muc_nick_of(const struct muc_room *r, const char *bare)
{
	for (size_t i = 0; i < r->naffs; i++)
		if (strcmp(r->affs[i].jid, bare) == 0)
			return r->affs[i].nick;
	return NULL;
}

int
muc_nick_reserve(struct muc_room *r, const char *bare, const char *nick)
{
	for (size_t i = 0; i < r->naffs; i++)
		if (strcmp(r->affs[i].jid, bare) == 0) {
			char *n = nick != NULL ? strdup(nick) : NULL;

			if (nick != NULL && n == NULL)
				return -1;
			free(r->affs[i].nick);
			r->affs[i].nick = n;
			r->aff_gen++;
			return 0;
		}
	return -1;
}

/* XEP-0045 5.1.2: the default role of each affiliation. */
int
muc_default_role(const struct muc_room *r, int aff)
{
	if (aff >= MUC_AFF_ADMIN)
		return MUC_ROLE_MODERATOR;
	if (aff == MUC_AFF_MEMBER)
		return MUC_ROLE_PARTICIPANT;
	return r->cfg.moderated ? MUC_ROLE_VISITOR : MUC_ROLE_PARTICIPANT;
}

/* ---------------------------------------------------------------- */
/* Occupants.                                                         */

struct muc_occ *
muc_occ_find(struct muc_room *r, const char *nick)
{
	struct muc_occ *o;

	for (o = r->by_nick[hash_str(nick) % MUC_OCC_BUCKETS]; o != NULL; o = o->nnext)
		if (strcmp(o->nick, nick) == 0)
			return o;
	return NULL;
}

struct muc_sess *
muc_sess_find(struct muc_room *r, const char *full)
{
	struct muc_sess *s;

	for (s = r->by_full[hash_str(full) % MUC_OCC_BUCKETS]; s != NULL; s = s->fnext)
		if (strcmp(xmppd_jid_full(s->full), full) == 0)
			return s;
	return NULL;
}

void
muc_nick_link(struct muc_room *r, struct muc_occ *o)
{
	uint32_t b = hash_str(o->nick) % MUC_OCC_BUCKETS;

	o->nnext = r->by_nick[b];
	r->by_nick[b] = o;
}

void
muc_nick_unlink(struct muc_room *r, struct muc_occ *o)
{
	struct muc_occ **pp;

	for (pp = &r->by_nick[hash_str(o->nick) % MUC_OCC_BUCKETS]; *pp != NULL;
	    pp = &(*pp)->nnext)
		if (*pp == o) {
			*pp = o->nnext;
			return;
		}
}

/* XEP-0421 3: an id stable for one real bare JID in one room, unique
 * to it: base64 of HMAC-SHA256(the module's key, room JID NUL bare JID),
 * once per occupant (not per stanza). */
static void
occ_id_make(const struct muc_room *r, struct muc_occ *o)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	size_t rl = strlen(r->jid), bl = strlen(o->bare);
	char *in = malloc(rl + 1 + bl);

	o->occ_id[0] = '\0';
	if (in == NULL)
		return;
	memcpy(in, r->jid, rl + 1);
	memcpy(in + rl + 1, o->bare, bl);
	if (HMAC(EVP_sha256(), muc_module.occ_secret, (int)muc_module.occ_secret_len,
	    (const unsigned char *)in, rl + 1 + bl, mac, &len) != NULL && len == 32)
		(void)EVP_EncodeBlock((unsigned char *)o->occ_id, mac, (int)len);
	free(in);
}

void
muc_occ_id_strip(xmppd_elem *st)
{
	xmppd_elem *c, *next;

	for (c = xmppd_elem_first_child(st); c != NULL; c = next) {
		next = xmppd_elem_next_sibling(c);
		if (muc_is(xmppd_elem_ns(c), NS_OCCUPANT_ID) &&
		    muc_is(xmppd_elem_name(c), "occupant-id"))
			xmppd_elem_remove_child(st, c);
	}
}

void
muc_occ_id_add(const struct muc_occ *o, xmppd_elem *st)
{
	muc_occ_id_strip(st);
	if (o->occ_id[0] != '\0')
		xmppd_elem_set_attr(xmppd_elem_add_child(st, NS_OCCUPANT_ID, "occupant-id"),
		    "id", o->occ_id);
}

struct muc_occ *
muc_occ_new(struct muc_room *r, const char *nick, const char *bare, int role, int aff)
{
	struct muc_occ *o = calloc(1, sizeof(*o));

	if (o == NULL || (o->nick = strdup(nick)) == NULL || (o->bare = strdup(bare)) == NULL) {
		if (o != NULL)
			free(o->nick);
		free(o);
		return NULL;
	}
	o->role = role;
	o->aff = aff;
	occ_id_make(r, o);
	muc_nick_link(r, o);
	o->prev = r->occ_tail;
	if (r->occ_tail != NULL)
		r->occ_tail->next = o;
	else
		r->occ_head = o;
	r->occ_tail = o;
	r->nocc++;
	return o;
}

struct muc_sess *
muc_sess_add(struct muc_room *r, struct muc_occ *o, const xmppd_jid *full, xmppd_elem *presence)
{
	struct muc_sess *s = calloc(1, sizeof(*s));
	uint32_t b;

	if (s == NULL || (s->full = xmppd_jid_copy(full)) == NULL) {
		free(s);
		return NULL;
	}
	s->occ = o;
	s->presence = xmppd_elem_ref(presence);
	s->tokens = (double)muc_module.msg_burst;
	s->at = xmppd_now_ms();
	s->next = o->sess;
	o->sess = s;
	o->nsess++;
	b = hash_str(xmppd_jid_full(full)) % MUC_OCC_BUCKETS;
	s->fnext = r->by_full[b];
	r->by_full[b] = s;
	return s;
}

void
muc_sess_remove(struct muc_room *r, struct muc_sess *s)
{
	struct muc_occ *o = s->occ;
	struct muc_sess **pp;

	for (pp = &r->by_full[hash_str(xmppd_jid_full(s->full)) % MUC_OCC_BUCKETS];
	    *pp != NULL; pp = &(*pp)->fnext)
		if (*pp == s) {
			*pp = s->fnext;
			break;
		}
	for (pp = &o->sess; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	o->nsess--;
	xmppd_jid_free(s->full);
	xmppd_elem_unref(s->presence);
	free(s);
}

void
muc_occ_remove(struct muc_room *r, struct muc_occ *o)
{
	while (o->sess != NULL)
		muc_sess_remove(r, o->sess);
	muc_nick_unlink(r, o);
	if (o->prev != NULL)
		o->prev->next = o->next;
	else
		r->occ_head = o->next;
	if (o->next != NULL)
		o->next->prev = o->prev;
	else
		r->occ_tail = o->prev;
	r->nocc--;
	free(o->nick);
	free(o->bare);
	free(o);
}

/* ---------------------------------------------------------------- */
/* Sending.                                                           */

char *
muc_occ_jid(const struct muc_room *r, const char *nick)
{
	char *s;

	return asprintf(&s, "%s/%s", r->jid, nick) < 0 ? NULL : s;
}

/* A copy of st to one real JID. */
void
muc_send_copy(const xmppd_elem *st, const xmppd_jid *to)
{
	xmppd_elem *c = xmppd_elem_copy(st);

	if (c == NULL)
		return;
	xmppd_elem_set_attr(c, "to", xmppd_jid_full(to));
	xmppd_route(c);
	xmppd_elem_unref(c);
}

void
muc_broadcast(struct muc_room *r, const xmppd_elem *msg)
{
	for (struct muc_occ *o = r->occ_head; o != NULL; o = o->next)
		for (struct muc_sess *s = o->sess; s != NULL; s = s->next)
			muc_send_copy(msg, s->full);
}

static void
add_status(xmppd_elem *x, int code)
{
	char buf[8];

	snprintf(buf, sizeof(buf), "%d", code);
	xmppd_elem_set_attr(xmppd_elem_add_child(x, NS_MUC_USER, "status"), "code", buf);
}

/*
 * o's presence as one kind of recipient sees it (XEP-0045 7.2.3): the
 * presence its newest session sent (minus the MUC elements), from its
 * occupant JID, with the muc#user item: the real JID when with_jid.
 */
xmppd_elem *
muc_occ_presence(struct muc_room *r, struct muc_occ *o, int unavailable, int with_jid,
    const int *codes, size_t ncodes, const char *reason, const char *actor,
    const char *new_nick)
{
	xmppd_elem *p = xmppd_elem_new(NULL, "presence"), *x, *item, *c;
	char *from = muc_occ_jid(r, o->nick);

	if (from == NULL) {
		xmppd_elem_unref(p);
		return NULL;
	}
	xmppd_elem_set_attr(p, "from", from);
	free(from);
	if (unavailable) {
		xmppd_elem_set_attr(p, "type", "unavailable");
		/* XEP-0045 7.14 (the custom exit message): a session that
		 * leaves with <status/> has it passed to everyone. Only the
		 * exit's own: a kick or ban carries the last available
		 * presence, whose status is not about leaving. */
		if (o->sess != NULL && o->sess->presence != NULL &&
		    muc_is(xmppd_stanza_type(o->sess->presence), "unavailable"))
			for (c = xmppd_elem_first_child(o->sess->presence); c != NULL;
			    c = xmppd_elem_next_sibling(c))
				if (xmppd_elem_ns(c) == NULL && muc_is(xmppd_elem_name(c), "status"))
					xmppd_elem_append_copy(p, c);
	} else if (o->sess != NULL && o->sess->presence != NULL)
		for (c = xmppd_elem_first_child(o->sess->presence); c != NULL;
		    c = xmppd_elem_next_sibling(c))
			if (!(muc_is(xmppd_elem_name(c), "x") && xmppd_elem_ns(c) != NULL &&
			    strncmp(xmppd_elem_ns(c), NS_MUC, strlen(NS_MUC)) == 0))
				xmppd_elem_append_copy(p, c);
	x = xmppd_elem_add_child(p, NS_MUC_USER, "x");
	item = xmppd_elem_add_child(x, NS_MUC_USER, "item");
	xmppd_elem_set_attr(item, "affiliation", muc_aff_name(o->aff));
	xmppd_elem_set_attr(item, "role", unavailable ? "none" : muc_role_name(o->role));
	if (with_jid && o->sess != NULL)
		xmppd_elem_set_attr(item, "jid", xmppd_jid_full(o->sess->full));
	if (new_nick != NULL)
		xmppd_elem_set_attr(item, "nick", new_nick);
	if (actor != NULL)
		xmppd_elem_set_attr(xmppd_elem_add_child(item, NS_MUC_USER, "actor"), "nick", actor);
	if (reason != NULL && *reason) {
		c = xmppd_elem_add_child(item, NS_MUC_USER, "reason");
		xmppd_elem_add_text(c, reason, strlen(reason));
	}
	for (size_t i = 0; i < ncodes; i++)
		add_status(x, codes[i]);
	muc_occ_id_add(o, p);                   /* XEP-0421 4 */
	return p;
}

/* Whether q sees real JIDs (XEP-0045 5.1.1 / muc#roomconfig_whois). */
int
muc_sees_jids(const struct muc_room *r, const struct muc_occ *q)
{
	return r->cfg.whois_anyone || q->role == MUC_ROLE_MODERATOR;
}

/*
 * XEP-0045 7.2.3, 7.6, 7.14, 8.2, 9.1: o's presence to everyone. Three
 * stanzas at most are built (with the real JID, without it, and o's
 * own with 110: 7.2.2), and copied per session only to set 'to'.
 */
void
muc_broadcast_presence_nick(struct muc_room *r, struct muc_occ *o, int unavailable,
    const int *codes, size_t ncodes, const char *reason, const char *actor,
    const char *new_nick, const int *self_codes, size_t nself)
{
	xmppd_elem *with = NULL, *without = NULL, *self;
	int all[16];
	size_t n = 0;

	for (size_t i = 0; i < ncodes && n < 15; i++)
		all[n++] = codes[i];
	for (size_t i = 0; i < nself && n < 15; i++)
		all[n++] = self_codes[i];
	all[n++] = 110;
	self = muc_occ_presence(r, o, unavailable, 1, all, n, reason, actor, new_nick);
	for (struct muc_occ *q = r->occ_head; q != NULL; q = q->next) {
		const xmppd_elem *p;

		if (q == o) {
			p = self;
		} else if (muc_sees_jids(r, q)) {
			if (with == NULL)
				with = muc_occ_presence(r, o, unavailable, 1, codes, ncodes, reason,
				    actor, new_nick);
			p = with;
		} else {
			if (without == NULL)
				without = muc_occ_presence(r, o, unavailable, 0, codes, ncodes,
				    reason, actor, new_nick);
			p = without;
		}
		if (p == NULL)
			continue;
		for (struct muc_sess *s = q->sess; s != NULL; s = s->next)
			muc_send_copy(p, s->full);
	}
	xmppd_elem_unref(self);
	xmppd_elem_unref(with);
	xmppd_elem_unref(without);
}

void
muc_broadcast_presence(struct muc_room *r, struct muc_occ *o, int unavailable,
    const int *codes, size_t ncodes, const char *reason, const char *actor)
{
	muc_broadcast_presence_nick(r, o, unavailable, codes, ncodes, reason, actor, NULL, NULL, 0);
}

/* ---------------------------------------------------------------- */
/* The message rate.                                                  */

/* A token bucket per session: 1 when it may send now. */
int
muc_rate_take(struct muc_sess *s)
{
	uint64_t now = xmppd_now_ms();
	double cap = (double)muc_module.msg_burst;

	s->tokens += (double)(now - s->at) * (double)muc_module.msg_rate / 1000.0;
	if (s->tokens > cap)
		s->tokens = cap;
	s->at = now;
	if (s->tokens < 1.0)
		return 0;
	s->tokens -= 1.0;
	return 1;
}

/* The same bucket for a room's joins: per room, on its worker, so that
 * a flood of joins in one room leaves the others alone. */
int
muc_join_take(struct muc_room *r)
{
	uint64_t now = xmppd_now_ms();
	double cap = (double)muc_module.join_burst;

	r->join_tokens += (double)(now - r->join_at) * (double)muc_module.join_rate / 1000.0;
	if (r->join_tokens > cap)
		r->join_tokens = cap;
	r->join_at = now;
	if (r->join_tokens < 1.0)
		return 0;
	r->join_tokens -= 1.0;
	return 1;
}

void
muc_room_destroy(struct muc_room *r, const char *alt, const char *reason)
{
	/* 10.9: every occupant is told, with the alternate venue. */
	for (struct muc_occ *o = r->occ_head; o != NULL; o = o->next) {
		xmppd_elem *p = muc_occ_presence(r, o, 1, 1, NULL, 0, NULL, NULL, NULL), *x, *d;

		if (p == NULL)
			continue;
		x = xmppd_elem_child(p, NS_MUC_USER, "x");
		d = xmppd_elem_add_child(x, NS_MUC_USER, "destroy");
		if (alt != NULL)
			xmppd_elem_set_attr(d, "jid", alt);
		if (reason != NULL && *reason)
			xmppd_elem_add_text(xmppd_elem_add_child(d, NS_MUC_USER, "reason"), reason,
			    strlen(reason));
		for (struct muc_sess *s = o->sess; s != NULL; s = s->next)
			muc_send_copy(p, s->full);
		xmppd_elem_unref(p);
	}
	if (r->cfg.persistent)
		muc_room_forget(r->jid);
	muc_mam_forget(r->jid);
	room_unlink(r);
	room_free(r);
}
