/*
 * muc_room.c - rooms and their occupants (XEP-0045 7): the per-worker
 * room tables, join, leave, nickname change, presence broadcast,
 * groupchat and private messages, history, subject, invitations.
 *
 * Everything here runs on the room's worker (muc.h), so nothing is
 * locked. Rooms live in memory; a room nobody is in goes.
 */
#define _GNU_SOURCE             /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "muc.h"

#define ROOM_BUCKETS 1024
/* Invitations one message may carry (7.8.2): each is a message out. */
#define MAX_INVITES 10

static int rate_take(struct muc_sess *s);

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
	r->cfg.maxusers = muc_module.max_users;
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

static void
nick_link(struct muc_room *r, struct muc_occ *o)
{
	uint32_t b = hash_str(o->nick) % MUC_OCC_BUCKETS;

	o->nnext = r->by_nick[b];
	r->by_nick[b] = o;
}

static void
nick_unlink(struct muc_room *r, struct muc_occ *o)
{
	struct muc_occ **pp;

	for (pp = &r->by_nick[hash_str(o->nick) % MUC_OCC_BUCKETS]; *pp != NULL;
	    pp = &(*pp)->nnext)
		if (*pp == o) {
			*pp = o->nnext;
			return;
		}
}

static struct muc_occ *
occ_new(struct muc_room *r, const char *nick, const char *bare, int role, int aff)
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
	nick_link(r, o);
	o->prev = r->occ_tail;
	if (r->occ_tail != NULL)
		r->occ_tail->next = o;
	else
		r->occ_head = o;
	r->occ_tail = o;
	r->nocc++;
	return o;
}

static struct muc_sess *
sess_add(struct muc_room *r, struct muc_occ *o, const xmppd_jid *full, xmppd_elem *presence)
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

static void
sess_remove(struct muc_room *r, struct muc_sess *s)
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
		sess_remove(r, o->sess);
	nick_unlink(r, o);
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

static char *
occ_jid(const struct muc_room *r, const char *nick)
{
	char *s;

	return asprintf(&s, "%s/%s", r->jid, nick) < 0 ? NULL : s;
}

/* A copy of st to one real JID. */
static void
send_copy(const xmppd_elem *st, const xmppd_jid *to)
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
			send_copy(msg, s->full);
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
static xmppd_elem *
occ_presence(struct muc_room *r, struct muc_occ *o, int unavailable, int with_jid,
    const int *codes, size_t ncodes, const char *reason, const char *actor,
    const char *new_nick)
{
	xmppd_elem *p = xmppd_elem_new(NULL, "presence"), *x, *item, *c;
	char *from = occ_jid(r, o->nick);

	if (from == NULL) {
		xmppd_elem_unref(p);
		return NULL;
	}
	xmppd_elem_set_attr(p, "from", from);
	free(from);
	if (unavailable)
		xmppd_elem_set_attr(p, "type", "unavailable");
	else if (o->sess != NULL && o->sess->presence != NULL)
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
	return p;
}

/* Whether q sees real JIDs (XEP-0045 5.1.1 / muc#roomconfig_whois). */
static int
sees_jids(const struct muc_room *r, const struct muc_occ *q)
{
	return r->cfg.whois_anyone || q->role == MUC_ROLE_MODERATOR;
}

/*
 * XEP-0045 7.2.3, 7.6, 7.14, 8.2, 9.1: o's presence to everyone. Three
 * stanzas at most are built (with the real JID, without it, and o's
 * own with 110: 7.2.2), and copied per session only to set 'to'.
 */
static void
broadcast_presence_nick(struct muc_room *r, struct muc_occ *o, int unavailable,
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
	self = occ_presence(r, o, unavailable, 1, all, n, reason, actor, new_nick);
	for (struct muc_occ *q = r->occ_head; q != NULL; q = q->next) {
		const xmppd_elem *p;

		if (q == o) {
			p = self;
		} else if (sees_jids(r, q)) {
			if (with == NULL)
				with = occ_presence(r, o, unavailable, 1, codes, ncodes, reason,
				    actor, new_nick);
			p = with;
		} else {
			if (without == NULL)
				without = occ_presence(r, o, unavailable, 0, codes, ncodes,
				    reason, actor, new_nick);
			p = without;
		}
		if (p == NULL)
			continue;
		for (struct muc_sess *s = q->sess; s != NULL; s = s->next)
			send_copy(p, s->full);
	}
	xmppd_elem_unref(self);
	xmppd_elem_unref(with);
	xmppd_elem_unref(without);
}

void
muc_broadcast_presence(struct muc_room *r, struct muc_occ *o, int unavailable,
    const int *codes, size_t ncodes, const char *reason, const char *actor)
{
	broadcast_presence_nick(r, o, unavailable, codes, ncodes, reason, actor, NULL, NULL, 0);
}

/* ---------------------------------------------------------------- */
/* Joining (XEP-0045 7.2).                                            */

static void
send_delayed(struct muc_room *r, const xmppd_elem *msg, time_t at, const xmppd_jid *to)
{
	xmppd_elem *c = xmppd_elem_copy(msg), *d;
	char stamp[32];
	struct tm tm;

	if (c == NULL)
		return;
	/* 7.2.15: history carries XEP-0203 delayed delivery. */
	gmtime_r(&at, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	d = xmppd_elem_add_child(c, NS_DELAY, "delay");
	xmppd_elem_set_attr(d, "from", r->jid);
	xmppd_elem_set_attr(d, "stamp", stamp);
	xmppd_elem_set_attr(c, "to", xmppd_jid_full(to));
	xmppd_route(c);
	xmppd_elem_unref(c);
}

static long
attr_long(const xmppd_elem *e, const char *name, long dflt)
{
	const char *v = e != NULL ? xmppd_elem_attr(e, name) : NULL;
	char *end;
	long n;

	if (v == NULL)
		return dflt;
	n = strtol(v, &end, 10);
	return end == v || *end != '\0' || n < 0 ? dflt : n;
}

static time_t
parse_stamp(const char *s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || (end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
		return 0;
	return timegm(&tm);
}

/* 7.2.15: the history, as the <history/> of the join limits it. */
static void
send_history(struct muc_room *r, xmppd_elem *hist, const xmppd_jid *to)
{
	long maxstanzas = attr_long(hist, "maxstanzas", -1);
	long maxchars = attr_long(hist, "maxchars", -1);
	long seconds = attr_long(hist, "seconds", -1);
	time_t since = hist != NULL ? parse_stamp(xmppd_elem_attr(hist, "since")) : 0;
	time_t now = time(NULL);
	size_t first = r->hist_len, chars = 0, n = 0;

	if (r->hist_len == 0 || maxstanzas == 0 || maxchars == 0)
		return;
	/* From the newest back, while within every limit. */
	while (first > 0) {
		struct muc_hist *h = &r->hist[(r->hist_start + first - 1) %
		    (size_t)muc_module.history_size];

		if (maxstanzas >= 0 && n + 1 > (size_t)maxstanzas)
			break;
		if (maxchars >= 0 && h->chars == 0) {
			/* 7.2.15: maxchars counts the XML; measured when a
			 * joiner first asks, not for every message. */
			size_t len = 0;
			char *text = xmppd_elem_to_string(h->msg, &len);

			free(text);
			h->chars = len > 0 ? len : 1;
		}
		if (maxchars >= 0 && chars + h->chars > (size_t)maxchars)
			break;
		if (seconds >= 0 && now - h->at > seconds)
			break;
		if (since != 0 && h->at < since)
			break;
		chars += h->chars;
		n++;
		first--;
	}
	for (size_t i = first; i < r->hist_len; i++) {
		struct muc_hist *h = &r->hist[(r->hist_start + i) % (size_t)muc_module.history_size];

		send_delayed(r, h->msg, h->at, to);
	}
}

static void
hist_add(struct muc_room *r, xmppd_elem *msg)
{
	size_t cap = (size_t)muc_module.history_size;
	struct muc_hist *h;

	if (cap == 0)
		return;
	if (r->hist_len == cap) {
		h = &r->hist[r->hist_start];
		xmppd_elem_unref(h->msg);
		r->hist_start = (r->hist_start + 1) % cap;
		r->hist_len--;
	}
	h = &r->hist[(r->hist_start + r->hist_len) % cap];
	h->msg = xmppd_elem_ref(msg);
	h->at = time(NULL);
	h->chars = 0;             /* not measured yet */
	r->hist_len++;
}

/* 7.2.16: the subject goes last, an empty one when none was set. */
static void
send_subject(struct muc_room *r, const xmppd_jid *to)
{
	xmppd_elem *m;

	if (r->subject != NULL) {
		send_copy(r->subject, to);
		return;
	}
	m = xmppd_elem_new(NULL, "message");
	xmppd_elem_set_attr(m, "from", r->jid);
	xmppd_elem_set_attr(m, "type", "groupchat");
	xmppd_elem_add_child(m, NULL, "subject");
	send_copy(m, to);
	xmppd_elem_unref(m);
}

/* 7.2.3: every other occupant's presence to a new session. */
static void
send_occupants(struct muc_room *r, struct muc_occ *self, const xmppd_jid *to)
{
	int with = sees_jids(r, self);

	for (struct muc_occ *q = r->occ_head; q != NULL; q = q->next) {
		xmppd_elem *p;

		if (q == self)
			continue;
		if ((p = occ_presence(r, q, 0, with, NULL, 0, NULL, NULL, NULL)) != NULL) {
			send_copy(p, to);
			xmppd_elem_unref(p);
		}
	}
}

static void
join(struct muc_room *r, xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to)
{
	const char *bare = xmppd_jid_bare(from), *nick = xmppd_jid_resource(to), *holder;
	xmppd_elem *mx = xmppd_elem_child(st, NS_MUC, "x");
	struct muc_occ *o = NULL;
	struct muc_sess *s;
	int created = 0, aff, self[4];
	size_t nself = 0;

	if (strlen(nick) > (size_t)muc_module.max_nick) {
		muc_error(st, "not-acceptable", "nickname too long");
		return;
	}
	if (r == NULL) {
		/* 10.1.1: a new room, locked until its owner configures it;
		 * its creator is its owner. */
		if (!muc_may_create(from)) {
			muc_error(st, "not-allowed", "you may not create rooms here");
			return;
		}
		if (muc_creator_take(bare) < 0) {
			muc_error(st, "policy-violation", "you have made too many rooms");
			return;
		}
		if ((r = room_new(xmppd_jid_bare(to), xmppd_jid_domain(to))) == NULL ||
		    (r->creator = strdup(bare)) == NULL ||
		    muc_aff_set(r, bare, MUC_AFF_OWNER, NULL) < 0) {
			if (r == NULL)
				muc_creator_release(bare);
			else if (r->creator == NULL)
				muc_creator_release(bare);
			if (r != NULL)
				muc_room_gc(r);
			muc_error(st, "internal-server-error", NULL);
			return;
		}
		r->locked = 1;
		created = 1;
	}
	aff = muc_aff_of(r, bare);
	if (!created) {
		/* 10.1.1: a locked room is not there for anyone but its owner. */
		if (r->locked && aff != MUC_AFF_OWNER) {
			muc_error(st, "item-not-found", "the room is locked");
			return;
		}
		/* 7.2.7 */
		if (aff == MUC_AFF_OUTCAST) {
			muc_error(st, "forbidden", "you are banned from this room");
			return;
		}
		o = muc_occ_find(r, nick);
		/* 7.2.9: a nickname another user reserved (7.10). */
		if ((holder = muc_nick_holder(r, nick)) != NULL && strcmp(holder, bare) != 0) {
			muc_error(st, "conflict", "that nickname is reserved");
			return;
		}
		/* 7.2.9: one nickname, one user (who may have several
		 * sessions in it). */
		if (o != NULL && strcmp(o->bare, bare) != 0) {
			muc_error(st, "conflict", "that nickname is in use");
			return;
		}
		if (o == NULL) {
			/* 7.2.6 */
			if (r->cfg.membersonly && aff < MUC_AFF_MEMBER) {
				muc_error(st, "registration-required",
				    "the room is for members only");
				return;
			}
			/* 7.2.5 */
			if (r->cfg.password_protected && aff < MUC_AFF_OWNER &&
			    !muc_is(mx != NULL ? xmppd_elem_child_text(mx, NS_MUC, "password") :
			    NULL, r->cfg.secret)) {
				muc_error(st, "not-authorized", "a password is required");
				return;
			}
			/* 7.2.10: admins and owners get in past the limit. */
			if (aff < MUC_AFF_ADMIN && (long)r->nocc >= (r->cfg.maxusers > 0 ?
			    r->cfg.maxusers : muc_module.max_users)) {
				muc_error(st, "service-unavailable", "the room is full");
				return;
			}
		}
	}
	if (o == NULL && (o = occ_new(r, nick, bare, muc_default_role(r, aff), aff)) == NULL) {
		muc_room_gc(r);
		muc_error(st, "internal-server-error", NULL);
		return;
	}
	if ((s = sess_add(r, o, from, st)) == NULL) {
		if (o->nsess == 0)
			muc_occ_remove(r, o);
		muc_room_gc(r);
		muc_error(st, "internal-server-error", NULL);
		return;
	}
	send_occupants(r, o, from);
	/* 7.2.2, 7.2.3: 100 (non-anonymous), 170 (logged), 201 (new). */
	if (r->cfg.whois_anyone)
		self[nself++] = 100;
	if (r->cfg.logging)
		self[nself++] = 170;
	if (created)
		self[nself++] = 201;
	broadcast_presence_nick(r, o, 0, NULL, 0, NULL, NULL, NULL, self, nself);
	/* 7.2.15, 7.2.16: the history, then the subject, to every joiner
	 * (the creator of a new room too: clients wait for the subject). */
	send_history(r, mx != NULL ? xmppd_elem_child(mx, NS_MUC, "history") : NULL, from);
	send_subject(r, from);
}

/* 7.14: a session leaves; the occupant goes with its last session. */
static void
leave(struct muc_room *r, struct muc_sess *s, xmppd_elem *st)
{
	struct muc_occ *o = s->occ;
	const char *status = xmppd_elem_child_text(st, NULL, "status");

	if (o->nsess > 1) {
		/* Its other sessions stay: only this one hears it left. */
		int code = 110;
		xmppd_elem *p = occ_presence(r, o, 1, 1, &code, 1, NULL, NULL, NULL);

		if (p != NULL) {
			send_copy(p, s->full);
			xmppd_elem_unref(p);
		}
		sess_remove(r, s);
		return;
	}
	(void)status;
	xmppd_elem_unref(s->presence);
	s->presence = xmppd_elem_ref(st);
	broadcast_presence_nick(r, o, 1, NULL, 0, NULL, NULL, NULL, NULL, 0);
	muc_occ_remove(r, o);
	muc_room_gc(r);
}

/* 7.6: a new nickname for every session of the occupant. */
static void
change_nick(struct muc_room *r, struct muc_sess *s, xmppd_elem *st, const char *nick)
{
	struct muc_occ *o = s->occ, *other = muc_occ_find(r, nick);
	int code = 303;
	char *nn;

	if (strlen(nick) > (size_t)muc_module.max_nick) {
		muc_error(st, "not-acceptable", "nickname too long");
		return;
	}
	/* 7.6.2; 7.10: nor one another user reserved. */
	if (other != NULL || (muc_nick_holder(r, nick) != NULL &&
	    strcmp(muc_nick_holder(r, nick), o->bare) != 0)) {
		muc_error(st, "conflict", "that nickname is in use");
		return;
	}
	if ((nn = strdup(nick)) == NULL) {
		muc_error(st, "internal-server-error", NULL);
		return;
	}
	broadcast_presence_nick(r, o, 1, &code, 1, NULL, NULL, nick, NULL, 0);
	nick_unlink(r, o);
	free(o->nick);
	o->nick = nn;
	nick_link(r, o);
	xmppd_elem_unref(s->presence);
	s->presence = xmppd_elem_ref(st);
	muc_broadcast_presence(r, o, 0, NULL, 0, NULL, NULL);
}

void
muc_presence(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to)
{
	const char *type = xmppd_stanza_type(st), *nick = xmppd_jid_resource(to);
	struct muc_room *r = muc_room_find(xmppd_jid_bare(to));
	struct muc_sess *s = r != NULL ? muc_sess_find(r, xmppd_jid_full(from)) : NULL;

	if (muc_is(type, "unavailable") || muc_is(type, "error")) {
		/* A bounce from the occupant's server ends its session too. */
		if (s != NULL)
			leave(r, s, st);
		return;
	}
	if (!muc_is(type, "available"))
		return;
	if (xmppd_jid_resource(from) == NULL) {
		muc_error(st, "bad-request", "a full JID is needed");
		return;
	}
	/* 7.2.1: no nickname. */
	if (nick == NULL || *nick == '\0') {
		muc_error(st, "jid-malformed", "a nickname is required");
		return;
	}
	if (s == NULL) {
		join(r, st, from, to);
		return;
	}
	/* Each goes to every occupant: the message rate bounds them too. */
	if (!rate_take(s)) {
		muc_error(st, muc_module.rate_error, "too many presence changes");
		return;
	}
	if (strcmp(s->occ->nick, nick) != 0) {
		change_nick(r, s, st, nick);
		return;
	}
	/* 7.7: a change of availability, broadcast. */
	xmppd_elem_unref(s->presence);
	s->presence = xmppd_elem_ref(st);
	/* The occupant's presence is its newest session's. */
	if (s->occ->sess != s) {
		struct muc_sess **pp;

		for (pp = &s->occ->sess; *pp != s; pp = &(*pp)->next)
			;
		*pp = s->next;
		s->next = s->occ->sess;
		s->occ->sess = s;
	}
	muc_broadcast_presence(r, s->occ, 0, NULL, 0, NULL, NULL);
}

/* ---------------------------------------------------------------- */
/* Messages (XEP-0045 7.4, 7.5, 7.8, 8.1).                            */

/* A token bucket per session: 1 when it may send now. */
static int
rate_take(struct muc_sess *s)
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

/* A copy of st from the occupant's JID with no 'to', for broadcast. */
static xmppd_elem *
from_occupant(struct muc_room *r, const xmppd_elem *st, const char *nick)
{
	xmppd_elem *m = xmppd_elem_copy(st);
	char *from = occ_jid(r, nick);

	if (m == NULL || from == NULL) {
		xmppd_elem_unref(m);
		free(from);
		return NULL;
	}
	xmppd_elem_set_attr(m, "from", from);
	xmppd_elem_set_attr(m, "to", NULL);
	free(from);
	return m;
}

static void
groupchat(struct muc_room *r, struct muc_sess *s, xmppd_elem *st)
{
	struct muc_occ *o = s->occ;
	xmppd_elem *subj = xmppd_elem_child(st, NULL, "subject");
	xmppd_elem *body = xmppd_elem_child(st, NULL, "body");
	xmppd_elem *m;

	/* 7.4: a visitor of a moderated room has no voice. */
	if (o->role < MUC_ROLE_PARTICIPANT) {
		muc_error(st, "forbidden", "you have no voice in this room");
		return;
	}
	if (subj != NULL && body == NULL) {
		/* 8.1: who may change the subject. */
		if (!r->cfg.changesubject && o->role != MUC_ROLE_MODERATOR) {
			muc_error(st, "forbidden", "you may not change the subject");
			return;
		}
		if (strlen(xmppd_elem_text(subj)) > (size_t)muc_module.max_subject) {
			muc_error(st, "not-acceptable", "the subject is too long");
			return;
		}
	}
	if ((m = from_occupant(r, st, o->nick)) == NULL) {
		muc_error(st, "internal-server-error", NULL);
		return;
	}
	if (subj != NULL && body == NULL) {
		xmppd_elem_unref(r->subject);
		r->subject = xmppd_elem_ref(m);
		if (r->cfg.persistent)
			muc_room_save(r);
	} else if (body != NULL) {
		hist_add(r, m);
	}
	muc_broadcast(r, m);
	xmppd_elem_unref(m);
}

/* 7.5: a private message to an occupant (every session of it). */
static void
private_message(struct muc_room *r, struct muc_sess *s, xmppd_elem *st, const char *nick)
{
	struct muc_occ *o = s->occ, *t;
	int pm = r->cfg.allowpm;
	xmppd_elem *m;

	if (muc_is(xmppd_stanza_type(st), "groupchat")) {
		muc_error(st, "bad-request", "a groupchat goes to the room");
		return;
	}
	if (pm == MUC_PM_NONE || (pm == MUC_PM_PARTICIPANTS && o->role < MUC_ROLE_PARTICIPANT) ||
	    (pm == MUC_PM_MODERATORS && o->role < MUC_ROLE_MODERATOR)) {
		muc_error(st, "forbidden", "private messages are not allowed here");
		return;
	}
	if ((t = muc_occ_find(r, nick)) == NULL) {
		muc_error(st, "item-not-found", "no such occupant");
		return;
	}
	if ((m = from_occupant(r, st, o->nick)) == NULL) {
		muc_error(st, "internal-server-error", NULL);
		return;
	}
	if (xmppd_elem_child(m, NS_MUC_USER, "x") == NULL)
		xmppd_elem_add_child(m, NS_MUC_USER, "x");
	for (struct muc_sess *ts = t->sess; ts != NULL; ts = ts->next)
		send_copy(m, ts->full);
	xmppd_elem_unref(m);
}

/* 7.8.2 mediated invitations, 7.8.3 declines. */
static void
invitation(struct muc_room *r, struct muc_sess *s, xmppd_elem *st, xmppd_elem *x)
{
	xmppd_elem *e;
	int n = 0;

	for (e = xmppd_elem_first_child(x); e != NULL && n < MAX_INVITES;
	    e = xmppd_elem_next_sibling(e)) {
		const char *to = xmppd_elem_attr(e, "to"), *reason;
		int invite = muc_is(xmppd_elem_name(e), "invite");
		xmppd_jid *tj;
		xmppd_elem *m, *mx, *ie;

		if (!invite && !muc_is(xmppd_elem_name(e), "decline"))
			continue;
		n++;
		if (to == NULL || (tj = xmppd_jid_parse(to)) == NULL) {
			muc_error(st, "jid-malformed", NULL);
			return;
		}
		if (invite) {
			int aff = s != NULL ? muc_aff_of(r, s->occ->bare) : MUC_AFF_NONE;

			/* 7.8.2: in a members-only room only admins invite,
			 * unless occupants may (allowinvites). */
			if (s == NULL || (r->cfg.membersonly && !r->cfg.allowinvites &&
			    aff < MUC_AFF_ADMIN)) {
				xmppd_jid_free(tj);
				muc_error(st, "forbidden", "you may not invite to this room");
				return;
			}
			if (r->cfg.membersonly && muc_aff_of(r, xmppd_jid_bare(tj)) == MUC_AFF_NONE &&
			    muc_aff_set(r, xmppd_jid_bare(tj), MUC_AFF_MEMBER, NULL) == 0 &&
			    r->cfg.persistent)
				muc_room_save(r);
		}
		m = xmppd_elem_new(NULL, "message");
		xmppd_elem_set_attr(m, "from", r->jid);
		xmppd_elem_set_attr(m, "to", xmppd_jid_full(tj));
		mx = xmppd_elem_add_child(m, NS_MUC_USER, "x");
		ie = xmppd_elem_add_child(mx, NS_MUC_USER, invite ? "invite" : "decline");
		xmppd_elem_set_attr(ie, "from", invite ? xmppd_jid_bare(s->full) :
		    xmppd_elem_attr(st, "from"));
		if ((reason = xmppd_elem_child_text(e, NS_MUC_USER, "reason")) != NULL && *reason) {
			xmppd_elem *re = xmppd_elem_add_child(ie, NS_MUC_USER, "reason");

			xmppd_elem_add_text(re, reason, strlen(reason));
		}
		if (invite && r->cfg.password_protected) {
			xmppd_elem *pe = xmppd_elem_add_child(mx, NS_MUC_USER, "password");

			xmppd_elem_add_text(pe, r->cfg.secret, strlen(r->cfg.secret));
		}
		xmppd_route(m);
		xmppd_elem_unref(m);
		xmppd_jid_free(tj);
	}
}

/* ---------------------------------------------------------------- */
/* Voice requests (XEP-0045 8.6).                                     */

#define NS_MUC_REQUEST NS_MUC "#request"

static const char *
form_value(xmppd_elem *x, const char *var)
{
	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL; f = xmppd_elem_next_sibling(f))
		if (muc_is(xmppd_elem_name(f), "field") && muc_is(xmppd_elem_attr(f, "var"), var)) {
			xmppd_elem *v = xmppd_elem_child(f, NS_XDATA, "value");

			return v != NULL ? xmppd_elem_text(v) : "";
		}
	return NULL;
}

static void
req_field(xmppd_elem *x, const char *var, const char *type, const char *label,
    const char *value)
{
	xmppd_elem *f = xmppd_elem_add_child(x, NS_XDATA, "field");

	xmppd_elem_set_attr(f, "var", var);
	xmppd_elem_set_attr(f, "type", type);
	if (label != NULL)
		xmppd_elem_set_attr(f, "label", label);
	xmppd_elem_add_text(xmppd_elem_add_child(f, NS_XDATA, "value"), value, strlen(value));
}

/* 1 when st was a voice request or a moderator's answer to one. */
static int
voice_request(struct muc_room *r, struct muc_sess *s, xmppd_elem *st)
{
	xmppd_elem *x = xmppd_elem_child(st, NS_XDATA, "x"), *m, *fx;
	const char *allow, *nick;
	struct muc_occ *o;

	if (x == NULL || !muc_is(xmppd_elem_attr(x, "type"), "submit") ||
	    !muc_is(form_value(x, "FORM_TYPE"), NS_MUC_REQUEST))
		return 0;
	allow = form_value(x, "muc#request_allow");
	if (allow != NULL) {
		/* 8.6: a moderator's approval grants voice. */
		if (s->occ->role != MUC_ROLE_MODERATOR) {
			muc_error(st, "forbidden", "only moderators approve voice requests");
			return 1;
		}
		nick = form_value(x, "muc#roomnick");
		if ((muc_is(allow, "true") || muc_is(allow, "1")) && nick != NULL &&
		    (o = muc_occ_find(r, nick)) != NULL && o->role == MUC_ROLE_VISITOR) {
			o->role = MUC_ROLE_PARTICIPANT;
			muc_broadcast_presence(r, o, 0, NULL, 0, NULL, s->occ->nick);
		}
		return 1;
	}
	if (!muc_is(form_value(x, "muc#role"), "participant"))
		return 0;
	/* Only a visitor asks; the request goes to every moderator. */
	if (s->occ->role != MUC_ROLE_VISITOR)
		return 1;
	m = xmppd_elem_new(NULL, "message");
	xmppd_elem_set_attr(m, "from", r->jid);
	fx = xmppd_elem_add_child(m, NS_XDATA, "x");
	xmppd_elem_set_attr(fx, "type", "form");
	xmppd_elem_add_text(xmppd_elem_add_child(fx, NS_XDATA, "title"), "Voice request", 13);
	req_field(fx, "FORM_TYPE", "hidden", NULL, NS_MUC_REQUEST);
	req_field(fx, "muc#role", "list-single", "Requested role", "participant");
	req_field(fx, "muc#jid", "jid-single", "User ID", xmppd_jid_full(s->full));
	req_field(fx, "muc#roomnick", "text-single", "Room nickname", s->occ->nick);
	req_field(fx, "muc#request_allow", "boolean", "Grant voice?", "false");
	for (o = r->occ_head; o != NULL; o = o->next)
		if (o->role == MUC_ROLE_MODERATOR)
			for (struct muc_sess *ms = o->sess; ms != NULL; ms = ms->next)
				send_copy(m, ms->full);
	xmppd_elem_unref(m);
	return 1;
}

void
muc_message(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to)
{
	const char *type = xmppd_stanza_type(st), *nick = xmppd_jid_resource(to);
	struct muc_room *r = muc_room_find(xmppd_jid_bare(to));
	struct muc_sess *s;
	xmppd_elem *x;

	if (muc_is(type, "error"))
		return;
	if (r == NULL || (r->locked && muc_aff_of(r, xmppd_jid_bare(from)) != MUC_AFF_OWNER)) {
		muc_error(st, "item-not-found", "no such room");
		return;
	}
	s = muc_sess_find(r, xmppd_jid_full(from));
	x = xmppd_elem_child(st, NS_MUC_USER, "x");
	if (s != NULL && !rate_take(s)) {
		muc_error(st, muc_module.rate_error, "too many messages");
		return;
	}
	/* 7.8.3: a decline comes from a non-occupant. */
	if (nick == NULL && x != NULL && !muc_is(type, "groupchat") &&
	    (xmppd_elem_child(x, NS_MUC_USER, "decline") != NULL ||
	    (s != NULL && xmppd_elem_child(x, NS_MUC_USER, "invite") != NULL))) {
		if (xmppd_elem_child(x, NS_MUC_USER, "invite") != NULL && s == NULL) {
			muc_error(st, "not-acceptable", "only occupants invite");
			return;
		}
		invitation(r, s, st, x);
		return;
	}
	/* 7.4, 7.5: only occupants send to the room or its occupants. */
	if (s == NULL) {
		muc_error(st, "not-acceptable", "you are not in the room");
		return;
	}
	if (nick != NULL)
		private_message(r, s, st, nick);
	else if (!muc_is(type, "groupchat") && voice_request(r, s, st))
		return;
	else if (muc_is(type, "groupchat"))
		groupchat(r, s, st);
	else
		muc_error(st, "bad-request", "send groupchat messages to the room");
}

void
muc_room_destroy(struct muc_room *r, const char *alt, const char *reason)
{
	/* 10.9: every occupant is told, with the alternate venue. */
	for (struct muc_occ *o = r->occ_head; o != NULL; o = o->next) {
		xmppd_elem *p = occ_presence(r, o, 1, 1, NULL, 0, NULL, NULL, NULL), *x, *d;

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
			send_copy(p, s->full);
		xmppd_elem_unref(p);
	}
	if (r->cfg.persistent)
		muc_room_forget(r->jid);
	room_unlink(r);
	room_free(r);
}
