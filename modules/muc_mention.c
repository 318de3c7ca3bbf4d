/*
 * muc_mention.c - offline members are not forgotten: a groupchat message
 * in a members-only room that concerns an affiliated member (member,
 * admin or owner) who is not joined with any session wakes the member's
 * devices (XEP-0357, through xmppd_push_notify: mod_push) and is kept in
 * the member's list of missed mentions for that room, which its clients
 * fetch and clear with IQs to the room (namespace NS_MUC_MENTIONS,
 * doc/modules.md "mod_muc"). Nothing goes to the member's one-to-one
 * archive or offline storage: the room sends the member nothing.
 *
 * A message concerns a member when
 *  - its body names the member's reserved nickname (XEP-0045 7.10) as
 *    words: body and nickname are cut into words, the maximal runs of
 *    ASCII letters, digits, '_' and bytes >= 0x80 (so a non-ASCII letter
 *    is part of a word, and "@bob:", "bob's" and "(bob)" name bob); the
 *    nickname's words must appear consecutively in the body, compared
 *    with ASCII letters folded to lower case (other bytes exactly). A
 *    nickname without a word ("!!!") is never matched this way. Only the
 *    first SCAN_MAX bytes and WORDS_MAX words of a body are looked at;
 *  - or it carries a XEP-0372 3 reference of type mention whose uri is
 *    xmpp:BARE (the member's bare JID) or xmpp:ROOM/NICK (the room JID of
 *    the member's reserved nickname), at most REFS_MAX of them;
 *  - or the member asked for every message (the settings IQ).
 *
 * Cost per message: the room keeps an index of its members (rebuilt when
 * the affiliations or reserved nicknames change, r->aff_gen): a hash of
 * the reserved nicknames by their first word, a hash of the members by
 * bare JID, and the list of those who want every message. A message costs
 * one look-up per word of the bounded body and per reference; then, only
 * when somebody is concerned, one pass over the occupants to drop those
 * who are joined (what the broadcast costs already).
 *
 * The list (persistent rooms only; a temporary room pushes and keeps
 * nothing): table mod_muc_mentions, key (service, room, member, "h") ->
 * the next sequence number (16 hex digits), and (service, room, member,
 * "m", SEQ) -> a version byte (1) and the message as a XEP-0297
 * <forwarded/> with its XEP-0203 <delay/>. A mention is added by one batch
 * whose step reads the head, writes the row and the new head and deletes
 * the row mention_keep back, so a list never holds more than mention_keep
 * (rows above a bound that was lowered go as the list is cleared). The
 * list goes when the member loses its affiliation or the room is
 * destroyed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "muc.h"

#define T_MENTIONS MUC_T_MENTIONS
#define NS_REFERENCE "urn:xmpp:reference:0"
#define NS_FORWARD "urn:xmpp:forward:0"
#define REC_VERSION 1
#define SCAN_MAX 4096           /* bytes of a body looked at */
#define WORDS_MAX 512           /* words of a body looked at */
#define REFS_MAX 16             /* references of a message looked at */
#define NICK_WORDS_MAX 16       /* a longer nickname is not indexed */
#define PAGE_MAX 50             /* mentions in one answer */
#define KEY_MAX 512

struct nick_ent {
	struct nick_ent *next;
	size_t aff;                 /* index in r->affs */
	uint32_t hash;              /* of the first word, folded */
	size_t nwords;
	char *words;                /* folded, each NUL-terminated */
};

struct bare_ent {
	struct bare_ent *next;
	size_t aff;
	uint32_t hash;
};

struct muc_mention {
	uint64_t gen;               /* r->aff_gen it was built for */
	size_t nb;                  /* buckets of both hashes (a power of 2) */
	struct nick_ent **nicks;
	struct bare_ent **bares;
	size_t *all;                /* those who want every message */
	size_t nall;
	/* Per message: which affs are candidates already (stamp == serial). */
	uint64_t *stamp;
	uint64_t serial;
};

struct word {
	const char *s;
	size_t len;
};

/* ---------------------------------------------------------------- */
/* Words.                                                             */

static int
word_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '_' || c >= 0x80;
}

static unsigned char
fold(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* The words of s[0..len) (at most max; a word reaching the end of a
 * body cut at SCAN_MAX is dropped by the caller passing cut). */
static size_t
words_of(const char *s, size_t len, int cut, struct word *w, size_t max)
{
	size_t i = 0, n = 0;

	while (i < len && n < max) {
		size_t start;

		while (i < len && !word_char((unsigned char)s[i]))
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && word_char((unsigned char)s[i]))
			i++;
		if (i == len && cut)
			break;          /* it may go on past what we read */
		w[n].s = s + start;
		w[n].len = i - start;
		n++;
	}
	return n;
}

/* FNV-1a of a word, folded. */
static uint32_t
word_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++) {
		h ^= fold((unsigned char)s[i]);
		h *= 16777619u;
	}
	return h;
}

static uint32_t
str_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

/* Does the folded word f equal w? */
static int
word_eq(const char *f, const struct word *w)
{
	for (size_t i = 0; i < w->len; i++)
		if (f[i] == '\0' || (unsigned char)f[i] != fold((unsigned char)w->s[i]))
			return 0;
	return f[w->len] == '\0';
}

/* ---------------------------------------------------------------- */
/* The room's index of its members.                                   */

static void
index_clear(struct muc_mention *x)
{
	for (size_t i = 0; i < x->nb; i++) {
		struct nick_ent *n, *nn;
		struct bare_ent *b, *bn;

		for (n = x->nicks[i]; n != NULL; n = nn) {
			nn = n->next;
			free(n->words);
			free(n);
		}
		for (b = x->bares[i]; b != NULL; b = bn) {
			bn = b->next;
			free(b);
		}
	}
	free(x->nicks);
	free(x->bares);
	free(x->all);
	free(x->stamp);
	x->nicks = NULL;
	x->bares = NULL;
	x->all = x->stamp = NULL;
	x->nb = x->nall = 0;
}

void
muc_mention_free(struct muc_room *r)
{
	if (r->mention == NULL)
		return;
	index_clear(r->mention);
	free(r->mention);
	r->mention = NULL;
}

/* Adds aff i's reserved nickname. 0, or -1 (no memory). */
static int
index_nick(struct muc_mention *x, size_t i, const char *nick)
{
	struct word w[NICK_WORDS_MAX + 1];
	size_t n = words_of(nick, strlen(nick), 0, w, NICK_WORDS_MAX + 1), len = 0, at = 0;
	struct nick_ent *e;

	if (n == 0 || n > NICK_WORDS_MAX)
		return 0;
	for (size_t k = 0; k < n; k++)
		len += w[k].len + 1;
	if ((e = calloc(1, sizeof(*e))) == NULL || (e->words = malloc(len)) == NULL) {
		free(e);
		return -1;
	}
	for (size_t k = 0; k < n; k++) {
		for (size_t c = 0; c < w[k].len; c++)
			e->words[at++] = (char)fold((unsigned char)w[k].s[c]);
		e->words[at++] = '\0';
	}
	e->aff = i;
	e->nwords = n;
	e->hash = word_hash(w[0].s, w[0].len);
	e->next = x->nicks[e->hash & (x->nb - 1)];
	x->nicks[e->hash & (x->nb - 1)] = e;
	return 0;
}

/* The index for r's current affiliations, or NULL (no memory). */
static struct muc_mention *
index_get(struct muc_room *r)
{
	struct muc_mention *x = r->mention;
	size_t nb = 16;

	if (x != NULL && x->gen == r->aff_gen)
		return x;
	if (x == NULL && (x = r->mention = calloc(1, sizeof(*x))) == NULL)
		return NULL;
	index_clear(x);
	while (nb < r->naffs)
		nb <<= 1;
	x->nb = nb;
	if ((x->nicks = calloc(nb, sizeof(*x->nicks))) == NULL ||
	    (x->bares = calloc(nb, sizeof(*x->bares))) == NULL ||
	    (x->stamp = calloc(r->naffs + 1, sizeof(*x->stamp))) == NULL ||
	    (x->all = calloc(r->naffs + 1, sizeof(*x->all))) == NULL)
		goto fail;
	for (size_t i = 0; i < r->naffs; i++) {
		const struct muc_aff_entry *a = &r->affs[i];
		struct bare_ent *b;

		if (a->aff < MUC_AFF_MEMBER)
			continue;
		if ((b = calloc(1, sizeof(*b))) == NULL)
			goto fail;
		b->aff = i;
		b->hash = str_hash(a->jid);
		b->next = x->bares[b->hash & (nb - 1)];
		x->bares[b->hash & (nb - 1)] = b;
		if (a->nick != NULL && index_nick(x, i, a->nick) < 0)
			goto fail;
		if (a->mention_all)
			x->all[x->nall++] = i;
	}
	x->gen = r->aff_gen;
	x->serial = 0;
	return x;
fail:
	index_clear(x);
	x->gen = r->aff_gen - 1;    /* built again next time */
	return NULL;
}

/* The member (aff index) of bare, or -1. */
static long
member_of(const struct muc_room *r, const struct muc_mention *x, const char *bare)
{
	uint32_t h = str_hash(bare);

	for (const struct bare_ent *b = x->bares[h & (x->nb - 1)]; b != NULL; b = b->next)
		if (b->hash == h && strcmp(r->affs[b->aff].jid, bare) == 0)
			return (long)b->aff;
	return -1;
}

/* ---------------------------------------------------------------- */
/* A message.                                                         */

struct cands {
	size_t *v;
	size_t n, cap;
	int nomem;
};

static void
cand_add(struct muc_mention *x, struct cands *c, long i)
{
	if (i < 0 || x->stamp[i] == x->serial)
		return;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 8;
		size_t *v = realloc(c->v, cap * sizeof(*v));

		if (v == NULL) {
			c->nomem = 1;
			return;
		}
		c->v = v;
		c->cap = cap;
	}
	x->stamp[i] = x->serial;
	c->v[c->n++] = (size_t)i;
}

/* The reserved nicknames the body names (the rules at the top). */
static void
by_nick(struct muc_mention *x, struct cands *c, const char *body)
{
	static _Thread_local struct word w[WORDS_MAX];
	size_t len = strlen(body), n;

	n = words_of(body, len > SCAN_MAX ? SCAN_MAX : len, len > SCAN_MAX, w, WORDS_MAX);
	for (size_t i = 0; i < n; i++) {
		uint32_t h = word_hash(w[i].s, w[i].len);

		for (struct nick_ent *e = x->nicks[h & (x->nb - 1)]; e != NULL; e = e->next) {
			const char *f = e->words;
			size_t k;

			if (e->hash != h || i + e->nwords > n)
				continue;
			for (k = 0; k < e->nwords; k++, f += strlen(f) + 1)
				if (!word_eq(f, &w[i + k]))
					break;
			if (k == e->nwords)
				cand_add(x, c, (long)e->aff);
		}
	}
}

/* XEP-0372 3: <reference type='mention' uri='xmpp:...'/>. */
static void
by_reference(struct muc_room *r, struct muc_mention *x, struct cands *c, const xmppd_elem *m)
{
	int seen = 0;

	for (xmppd_elem *e = xmppd_elem_first_child(m); e != NULL && seen < REFS_MAX;
	    e = xmppd_elem_next_sibling(e)) {
		const char *uri = xmppd_elem_attr(e, "uri"), *holder;
		char buf[3 * 1024 + 4];
		xmppd_jid *j;
		size_t len;

		if (!muc_is(xmppd_elem_ns(e), NS_REFERENCE) || !muc_is(xmppd_elem_name(e),
		    "reference") || !muc_is(xmppd_elem_attr(e, "type"), "mention"))
			continue;
		seen++;
		/* RFC 5122: xmpp:JID, maybe with a query we do not need. */
		if (uri == NULL || strncmp(uri, "xmpp:", 5) != 0)
			continue;
		uri += 5;
		len = strcspn(uri, "?#");
		if (len == 0 || len >= sizeof(buf))
			continue;
		memcpy(buf, uri, len);
		buf[len] = '\0';
		if ((j = xmppd_jid_parse(buf)) == NULL)
			continue;
		if (xmppd_jid_resource(j) != NULL && strcmp(xmppd_jid_bare(j), r->jid) == 0) {
			if ((holder = muc_nick_holder(r, xmppd_jid_resource(j))) != NULL)
				cand_add(x, c, member_of(r, x, holder));
		} else if (xmppd_jid_resource(j) == NULL) {
			cand_add(x, c, member_of(r, x, xmppd_jid_bare(j)));
		}
		xmppd_jid_free(j);
	}
}

struct cand {
	const char *bare;
	int joined;
};

static int
cand_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cand *)a)->bare, ((const struct cand *)b)->bare);
}

struct add_job;

struct add_one {
	struct add_job *job;
	char head[KEY_MAX];
	size_t hlen;
	char prefix[KEY_MAX];       /* of the rows */
	size_t plen;
};

struct add_job {
	char *room;
	char *val;
	size_t vlen;
	size_t n;
	struct add_one one[];
};

/* (service, room node, member, kind) into buf: the length, or 0. */
static size_t
member_key(char *buf, const char *room, const char *bare, const char *kind)
{
	xmppd_jid *j = xmppd_jid_parse(room);
	size_t n = 0;

	if (j != NULL && xmppd_jid_node(j) != NULL)
		n = xmppd_store_key(buf, KEY_MAX, xmppd_jid_domain(j), xmppd_jid_node(j), bare,
		    kind, (char *)NULL);
	xmppd_jid_free(j);
	return n;
}

static size_t
row_key(char *buf, const char *prefix, size_t plen, uint64_t seq)
{
	if (plen + 17 > KEY_MAX)
		return 0;
	memcpy(buf, prefix, plen);
	snprintf(buf + plen, 17, "%016llx", (unsigned long long)seq);
	return plen + 16;
}

/* The sequence number a row's key ends with. */
static uint64_t
row_seq(const void *key, size_t klen)
{
	char num[17];

	if (klen < 16)
		return 0;
	memcpy(num, (const char *)key + klen - 16, 16);
	num[16] = '\0';
	return strtoull(num, NULL, 16);
}

/* The batch's step for one member: the next row, the new head, and the
 * row mention_keep back goes. */
static int
add_step(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	struct add_one *o = ud;
	uint64_t seq = 0, keep = (uint64_t)muc_module.mention_keep;
	char key[KEY_MAX], num[17];
	size_t klen;

	if (status == XMPPD_STORE_OK && vlen == 16)
		seq = row_seq(val, vlen);
	if ((klen = row_key(key, o->prefix, o->plen, seq)) == 0 ||
	    xmppd_batch_put(b, T_MENTIONS, key, klen, o->job->val, o->job->vlen) < 0)
		return -1;
	snprintf(num, sizeof(num), "%016llx", (unsigned long long)(seq + 1));
	if (xmppd_batch_put(b, T_MENTIONS, o->head, o->hlen, num, 16) < 0)
		return -1;
	if (seq >= keep && (klen = row_key(key, o->prefix, o->plen, seq - keep)) > 0 &&
	    xmppd_batch_del(b, T_MENTIONS, key, klen) < 0)
		return -1;
	return 0;
}

static void
add_done(int status, void *ud)
{
	struct add_job *job = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(muc_module.ctx, XMPPD_LOG_ERROR, "%s: cannot keep a mention", job->room);
	free(job->room);
	free(job->val);
	free(job);
}

/* The stored form: a version byte and the message in a XEP-0297
 * <forwarded/> with its XEP-0203 <delay/> (as XEP-0313 4.2 results). */
static char *
record(const xmppd_elem *m, size_t *len_r)
{
	xmppd_elem *f = xmppd_elem_new(NS_FORWARD, "forwarded"), *d;
	time_t now = time(NULL);
	char stamp[32];
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);  /* XEP-0082 */
	d = xmppd_elem_add_child(f, NS_DELAY, "delay");
	xmppd_elem_set_attr(d, "stamp", stamp);
	xmppd_elem_append_copy(f, m);
	return muc_rec_encode(f, REC_VERSION, len_r);
}

/* Keeps m in the lists of the members of absent[0..n). */
static void
keep(struct muc_room *r, const xmppd_elem *m, char **absent, size_t n)
{
	struct add_job *job = calloc(1, sizeof(*job) + n * sizeof(job->one[0]));
	xmppd_batch *b = NULL;

	if (job == NULL || (job->room = strdup(r->jid)) == NULL ||
	    (job->val = record(m, &job->vlen)) == NULL ||
	    (b = xmppd_batch_new(muc_module.ctx)) == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		struct add_one *o = &job->one[job->n];

		o->job = job;
		if ((o->hlen = member_key(o->head, r->jid, absent[i], "h")) == 0 ||
		    (o->plen = member_key(o->prefix, r->jid, absent[i], "m")) == 0 ||
		    o->plen + 17 > KEY_MAX)
			continue;       /* too long a key: nothing kept */
		if (xmppd_batch_get(b, T_MENTIONS, o->head, o->hlen, add_step, o) < 0)
			goto fail;
		job->n++;
	}
	if (job->n == 0)
		goto fail;
	if (xmppd_batch_submit(b, add_done, job) < 0) {
		b = NULL;               /* freed by the submit */
		goto fail;
	}
	return;
fail:
	xmppd_batch_free(b);
	if (job != NULL) {
		free(job->room);
		free(job->val);
	}
	free(job);
}

void
muc_mention_message(struct muc_room *r, const xmppd_elem *m)
{
	struct cands c = { NULL, 0, 0, 0 };
	struct muc_mention *x;
	const char *body;
	struct cand *cs = NULL;
	char **bares = NULL;
	size_t nabsent = 0;

	/* Members-only rooms: their members are who the room is for. */
	if (!r->cfg.membersonly || r->naffs == 0 || (x = index_get(r)) == NULL)
		return;
	x->serial++;
	body = xmppd_elem_child_text((xmppd_elem *)m, NULL, "body");
	if (body != NULL && *body)
		by_nick(x, &c, body);
	by_reference(r, x, &c, m);
	for (size_t i = 0; i < x->nall; i++)
		cand_add(x, &c, (long)x->all[i]);
	if (c.nomem)
		xmppd_log(muc_module.ctx, XMPPD_LOG_ERROR, "%s: out of memory for mentions",
		    r->jid);
	if (c.n == 0)
		goto out;
	/* Those joined with any session are not absent: one pass over the
	 * occupants, each looked up among the sorted candidates. */
	if ((cs = malloc(c.n * sizeof(*cs))) == NULL ||
	    (bares = malloc(c.n * sizeof(*bares))) == NULL)
		goto out;
	for (size_t i = 0; i < c.n; i++) {
		cs[i].bare = r->affs[c.v[i]].jid;
		cs[i].joined = 0;
	}
	qsort(cs, c.n, sizeof(*cs), cand_cmp);
	for (struct muc_occ *o = r->occ_head; o != NULL; o = o->next) {
		struct cand key = { o->bare, 0 }, *hit;

		if ((hit = bsearch(&key, cs, c.n, sizeof(*cs), cand_cmp)) != NULL)
			hit->joined = 1;
	}
	for (size_t i = 0; i < c.n; i++) {
		xmppd_jid *j;

		if (cs[i].joined)
			continue;
		bares[nabsent++] = (char *)cs[i].bare;
		if ((j = xmppd_jid_parse(cs[i].bare)) != NULL) {
			/* No push module, or no registration: the list still
			 * keeps it. */
			(void)xmppd_push_notify(muc_module.ctx, j, m);
			xmppd_jid_free(j);
		}
	}
	if (nabsent > 0 && r->cfg.persistent)
		keep(r, m, bares, nabsent);
out:
	free(cs);
	free(bares);
	free(c.v);
}

/* ---------------------------------------------------------------- */
/* The member's IQs (doc/modules.md, "mod_muc").                      */

struct fetch {
	xmppd_elem *iq;
	xmppd_elem *list;
	size_t n, max;
	int more;
};

static int
fetch_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct fetch *f = ud;
	const char *v = val;
	xmppd_elem *fw, *e;
	char id[17];

	if (f->n == f->max) {
		f->more = 1;
		return 1;
	}
	if (vlen < 2 || v[0] != REC_VERSION || (fw = xmppd_elem_parse(v + 1, vlen - 1)) == NULL)
		return 0;               /* not ours: skipped */
	e = xmppd_elem_add_child(f->list, NS_MUC_MENTIONS, "mention");
	snprintf(id, sizeof(id), "%016llx", (unsigned long long)row_seq(key, klen));
	xmppd_elem_set_attr(e, "id", id);
	xmppd_elem_append_copy(e, fw);
	xmppd_elem_unref(fw);
	f->n++;
	return 0;
}

static void
fetch_done(int status, void *ud)
{
	struct fetch *f = ud;

	if (status != XMPPD_STORE_OK) {
		xmppd_iq_error(f->iq, "internal-server-error", NULL);
		xmppd_elem_unref(f->list);
	} else {
		xmppd_elem_set_attr(f->list, "complete", f->more ? "false" : "true");
		xmppd_iq_reply(f->iq, f->list);
	}
	xmppd_elem_unref(f->iq);
	free(f);
}

static void
answered(int status, void *ud)
{
	xmppd_elem *iq = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_iq_error(iq, "internal-server-error", NULL);
	else
		xmppd_iq_reply(iq, NULL);
	xmppd_elem_unref(iq);
}

/* An id as given in <mention id=.../>: 16 hex digits. 0 or -1. */
static int
parse_id(const char *s, uint64_t *id_r)
{
	if (s == NULL || strlen(s) != 16 || strspn(s, "0123456789abcdef") != 16)
		return -1;
	*id_r = strtoull(s, NULL, 16);
	return 0;
}

static void
list_get(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, const char *bare)
{
	const char *max = xmppd_elem_attr(q, "max"), *after = xmppd_elem_attr(q, "after");
	char prefix[KEY_MAX], start[KEY_MAX];
	size_t plen = member_key(prefix, r->jid, bare, "m"), slen = 0;
	struct fetch *f;
	uint64_t id;
	long n = PAGE_MAX;

	if (max != NULL) {
		char *end;

		n = strtol(max, &end, 10);
		if (*max == '\0' || *end != '\0' || n < 1) {
			xmppd_iq_error(iq, "bad-request", "max is a positive number");
			return;
		}
		if (n > PAGE_MAX)
			n = PAGE_MAX;
	}
	if (after != NULL && (parse_id(after, &id) < 0 || id == UINT64_MAX)) {
		xmppd_iq_error(iq, "bad-request", "after is the id of a mention");
		return;
	}
	if (plen == 0) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	if (after != NULL)
		slen = row_key(start, prefix, plen, id + 1);
	if ((f = calloc(1, sizeof(*f))) == NULL) {
		xmppd_iq_error(iq, "resource-constraint", NULL);
		return;
	}
	f->iq = xmppd_elem_ref(iq);
	f->list = xmppd_elem_new(NS_MUC_MENTIONS, "list");
	f->max = (size_t)n;
	/* One more row than asked for tells whether there are more. */
	if (xmppd_store_arange(muc_module.ctx, T_MENTIONS, prefix, plen, start, slen, 0,
	    f->max + 1, fetch_row, fetch_done, f) < 0) {
		xmppd_elem_unref(f->list);
		xmppd_elem_unref(f->iq);
		free(f);
		xmppd_iq_error(iq, "internal-server-error", NULL);
	}
}

struct clear {
	xmppd_elem *iq;
	uint64_t upto;
};

static int
clear_row(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
    void *ud)
{
	const struct clear *c = ud;

	(void)val;
	(void)vlen;
	if (row_seq(key, klen) > c->upto)
		return 1;               /* in key order: the rest is newer */
	return xmppd_batch_del(b, T_MENTIONS, key, klen) < 0 ? -1 : 0;
}

static void
clear_done(int status, void *ud)
{
	struct clear *c = ud;

	answered(status, c->iq);    /* takes the reference */
	free(c);
}

/* Clears the list, or its mentions up to an id (those that came after
 * the client's fetch stay). */
static void
list_clear(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, const char *bare)
{
	const char *u = xmppd_elem_attr(q, "upto");
	char prefix[KEY_MAX];
	size_t plen = member_key(prefix, r->jid, bare, "m");
	struct clear *c;
	xmppd_batch *b;
	uint64_t upto = UINT64_MAX;

	if (u != NULL && parse_id(u, &upto) < 0) {
		xmppd_iq_error(iq, "bad-request", "upto is the id of a mention");
		return;
	}
	if (plen == 0 || (c = calloc(1, sizeof(*c))) == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	c->upto = upto;
	if ((b = xmppd_batch_new(muc_module.ctx)) == NULL ||
	    (u == NULL ? xmppd_batch_del_prefix(b, T_MENTIONS, prefix, plen) :
	    xmppd_batch_scan(b, T_MENTIONS, prefix, plen, clear_row, c)) < 0) {
		xmppd_batch_free(b);
		free(c);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	c->iq = xmppd_elem_ref(iq);
	if (xmppd_batch_submit(b, clear_done, c) < 0) {
		xmppd_elem_unref(c->iq);
		free(c);
		xmppd_iq_error(iq, "internal-server-error", NULL);
	}
}

static int
aff_index(const struct muc_room *r, const char *bare)
{
	for (size_t i = 0; i < r->naffs; i++)
		if (strcmp(r->affs[i].jid, bare) == 0)
			return (int)i;
	return -1;
}

/* <settings all='true|false'/>: every message counts, or mentions only. */
static void
settings(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, int i, int set)
{
	const char *all = xmppd_elem_attr(q, "all");
	xmppd_elem *res;
	int v;

	if (!set) {
		res = xmppd_elem_new(NS_MUC_MENTIONS, "settings");
		xmppd_elem_set_attr(res, "all", r->affs[i].mention_all ? "true" : "false");
		xmppd_iq_reply(iq, res);
		return;
	}
	/* XML Schema booleans, as XEP-0004 3.3 reads them. */
	if (muc_is(all, "true") || muc_is(all, "1")) {
		v = 1;
	} else if (muc_is(all, "false") || muc_is(all, "0")) {
		v = 0;
	} else {
		xmppd_iq_error(iq, "bad-request", "all is true or false");
		return;
	}
	/* Nothing changes: no index rebuild, no write of the room. */
	if (r->affs[i].mention_all == v) {
		xmppd_iq_reply(iq, NULL);
		return;
	}
	r->affs[i].mention_all = v;
	r->aff_gen++;
	if (r->cfg.persistent)
		muc_room_save(r);
	xmppd_iq_reply(iq, NULL);
}

void
muc_mention_iq(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *from,
    int set)
{
	const char *name = xmppd_elem_name(q), *bare = xmppd_jid_bare(from);
	int i = aff_index(r, bare);

	/* A member's own settings and list: nobody else's. */
	if (i < 0 || r->affs[i].aff < MUC_AFF_MEMBER) {
		xmppd_iq_error(iq, "forbidden", "only members have mentions here");
		return;
	}
	if (muc_is(name, "settings"))
		settings(r, iq, q, i, set);
	else if (muc_is(name, "list") && !set)
		list_get(r, iq, q, bare);
	else if (muc_is(name, "clear") && set)
		list_clear(r, iq, q, bare);
	else
		xmppd_iq_error(iq, "bad-request", NULL);
}

/* ---------------------------------------------------------------- */
/* Lists that go.                                                     */

static void
forget(const char *room, const char *bare)
{
	char key[KEY_MAX];
	xmppd_jid *j = xmppd_jid_parse(room);
	size_t klen = 0;
	xmppd_batch *b;

	if (j != NULL && xmppd_jid_node(j) != NULL)
		klen = bare != NULL ? xmppd_store_key(key, sizeof(key), xmppd_jid_domain(j),
		    xmppd_jid_node(j), bare, (char *)NULL) : xmppd_store_key(key, sizeof(key),
		    xmppd_jid_domain(j), xmppd_jid_node(j), (char *)NULL);
	xmppd_jid_free(j);
	if (klen == 0 || (b = xmppd_batch_new(muc_module.ctx)) == NULL)
		return;
	if (xmppd_batch_del_prefix(b, T_MENTIONS, key, klen) < 0) {
		xmppd_batch_free(b);
		return;
	}
	(void)xmppd_batch_submit(b, NULL, NULL);
}

void
muc_mention_member_gone(struct muc_room *r, const char *bare)
{
	forget(r->jid, bare);
}

void
muc_mention_room_gone(const char *room_jid)
{
	forget(room_jid, NULL);
}
