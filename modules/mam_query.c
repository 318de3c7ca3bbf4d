/*
 * mam_query.c - the query of an archive (XEP-0313 4) with its form and
 * XEP-0059 paging, the search form, the archive metadata (#extended), and
 * the index keys that go with a row. Shared: mod_mam (a user's archive)
 * and mod_muc (a room's) compile it, each with its own mam_arch (mam.h);
 * who may ask is the caller's to decide (mam_iq.c, muc_mam.c).
 *
 * Results go to the asker's full JID with
 * xmppd_deliver (not routed: no filter_packet, so no archiving, carbons
 * or push of them), or routed for a room's archive (mam_arch.
 * route_results: its askers may be remote; mod_mam does not archive a
 * MAM result), each <message><result queryid id><forwarded>
 * <delay/> the message </forwarded></result></message>; then the IQ
 * result with <fin/> (xmppd_iq_reply, routed: it comes after them).
 *
 * A query is turned into an id range [lo, hi] (an id is a time:
 * 'start' and 'end' are bounds; after-id, before-id and RSM
 * <after/> <before/> are exclusive bounds that must name archived
 * messages) and a direction: backward when RSM <before/> is given (empty:
 * the newest page, XEP-0059 2.5), forward otherwise. Then one source gives
 * the page, reading only what the page needs (xmppd_store_arange with a
 * limit of max + 1: the one more says whether the page reaches the end
 * in that direction, which is when <fin complete='true'/> is given):
 *  - no filter but the range: the rows of table mam themselves;
 *  - 'with': the rows of mam_with for the bare JID, then a get of each
 *    message (a full JID: the records are checked for it, reading on in
 *    chunks, at most MAM_FT_CANDIDATES of them: beyond, the page is not
 *    complete);
 *  - full text (XEP-0431): each term's word-prefix read of mam_ft in the
 *    direction of paging (at most TERM_READ_MAX rows and MAM_FT_CANDIDATES
 *    ids a term: beyond, results may miss matches further in that
 *    direction and the page is not complete; for an exact word the newest
 *    page is its newest matches, for a prefix of several words the words
 *    are read one after the other), intersected, sorted by id, then gets
 *    as above;
 *  - 'ids': a get of each (at most mam_max_page of them); one that is not
 *    archived is item-not-found (XEP-0313 4.1.3).
 * RSM <count/> and index are not given (XEP-0313 4.1.4: optional), and a
 * query with <index/> is feature-not-implemented. Within the page,
 * results are in chronological order, or reversed with <flip-page/>
 * (#extended); <first/> and <last/> are the chronologically first and
 * last of the page either way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "mam.h"
#include "mam_text.h"

#define MAX_TERMS 8

struct hit {
	uint64_t id;
	unsigned char *val;
	size_t vlen;
};

struct idset {
	uint64_t *v;
	size_t n, cap;
	int capped;
};

struct query {
	xmppd_elem *iq;             /* a reference: the reply is deferred */
	xmppd_jid *asker;           /* full */
	char *bare, *host, *node, *queryid;
	char prefix[MAM_KEY_MAX];
	size_t plen;
	uint64_t lo, hi;            /* inclusive */
	int empty;                  /* lo > hi */
	xmppd_jid *with;
	char *terms[MAX_TERMS];
	size_t nterms;
	struct idset ids;           /* the 'ids' field */
	uint64_t must[4];           /* ids that must be archived */
	size_t nmust;
	int backward, flip;
	int shape;                  /* for mam_arch.shape */
	size_t max, want;
	const char *error;          /* the condition to answer, once known */
	/* The page, in paging order. */
	struct hit *hits;
	size_t nhits;
	int truncated;
	/* Candidates (the index sources), in paging order. */
	struct idset cand;
	size_t cpos, fpos;          /* next to get, next to complete */
	int src_done;
	uint64_t cursor;
	size_t examined;
	size_t pending;
	struct idset *term_ids;
};

static void source_next(struct query *q);
static void fetch(struct query *q);

/* ---------------------------------------------------------------- */
/* Small things.                                                      */

static int
idset_add(struct idset *s, uint64_t id)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = id;
	return 0;
}

static int
id_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorted, without duplicates. */
static void
idset_sort(struct idset *s)
{
	size_t i, j;

	if (s->n == 0)
		return;
	qsort(s->v, s->n, sizeof(*s->v), id_cmp);
	for (i = 1, j = 1; i < s->n; i++)
		if (s->v[i] != s->v[j - 1])
			s->v[j++] = s->v[i];
	s->n = j;
}

static void
query_free(struct query *q)
{
	if (q == NULL)
		return;
	xmppd_elem_unref(q->iq);
	xmppd_jid_free(q->asker);
	xmppd_jid_free(q->with);
	free(q->bare);
	free(q->host);
	free(q->node);
	free(q->queryid);
	for (size_t i = 0; i < q->nterms; i++)
		free(q->terms[i]);
	if (q->term_ids != NULL)
		for (size_t i = 0; i < q->nterms; i++)
			free(q->term_ids[i].v);
	free(q->term_ids);
	free(q->ids.v);
	free(q->cand.v);
	for (size_t i = 0; i < q->nhits; i++)
		free(q->hits[i].val);
	free(q->hits);
	free(q);
}

static void
fail(struct query *q, const char *condition, const char *text)
{
	xmppd_iq_error(q->iq, condition, text);
	query_free(q);
}

static int
in_range(const struct query *q, uint64_t id)
{
	return !q->empty && id >= q->lo && id <= q->hi;
}

static size_t
row_key(const struct query *q, char *key, uint64_t id)
{
	memcpy(key, q->prefix, q->plen);
	mam_put_id((unsigned char *)key + q->plen, id);
	return q->plen + MAM_ID_LEN;
}

/* Does the record pass the filters the index did not apply? */
static int
rec_matches(const struct query *q, const struct mam_rec *r)
{
	if (q->with == NULL)
		return 1;
	/* XEP-0313 6.1.2: in a room's archive, 'with' is an occupant JID. */
	if (mam_arch.with_full)
		return strcmp(r->with_full, xmppd_jid_full(q->with)) == 0;
	if (strcmp(r->with_bare, xmppd_jid_bare(q->with)) != 0)
		return 0;
	/* XEP-0313 4.1.1: a full JID matches that resource only. */
	return xmppd_jid_resource(q->with) == NULL ||
	    strcmp(r->with_full, xmppd_jid_full(q->with)) == 0;
}

static int
add_hit(struct query *q, uint64_t id, const void *val, size_t vlen)
{
	struct hit *h;

	if (q->nhits == 0 && (q->hits = calloc(q->want, sizeof(*q->hits))) == NULL)
		return -1;
	if (q->nhits >= q->want)
		return 0;
	h = &q->hits[q->nhits];
	if ((h->val = malloc(vlen ? vlen : 1)) == NULL)
		return -1;
	memcpy(h->val, val, vlen);
	h->vlen = vlen;
	h->id = id;
	q->nhits++;
	return 0;
}

/* ---------------------------------------------------------------- */
/* What goes with a row: its index keys.                              */

struct words {
	xmppd_batch *b;
	const char *host, *node;
	uint64_t id;
	void (*fn)(const char *table, const void *key, size_t klen, void *ud);
	void *ud;
};

void
mam_words_of(xmppd_elem *st, void (*fn)(const char *w, size_t wlen, void *ud), void *ud)
{
	xmppd_elem *body = xmppd_elem_child(st, NULL, "body");
	const char *text;

	if (body != NULL && *(text = xmppd_elem_text(body)) != '\0')
		(void)mam_text_words(text, strlen(text), MAM_FT_WORDS, fn, ud);
}

static void
word_key(const char *w, size_t wlen, void *ud)
{
	struct words *ws = ud;
	char word[MAM_WORD_MAX + 1], key[MAM_KEY_MAX];
	size_t klen;

	memcpy(word, w, wlen);
	word[wlen] = '\0';
	if ((klen = mam_part_prefix(key, ws->host, ws->node, word)) == 0)
		return;
	mam_put_id((unsigned char *)key + klen, ws->id);
	ws->fn(mam_arch.table_ft, key, klen + MAM_ID_LEN, ws->ud);
}

void
mam_index_keys(const char *host, const char *node, uint64_t id, const void *val,
    size_t vlen, void (*fn)(const char *table, const void *key, size_t klen, void *ud),
    void *ud)
{
	struct words ws = { NULL, host, node, id, fn, ud };
	char key[MAM_KEY_MAX];
	struct mam_rec r;
	xmppd_elem *st;
	size_t klen;

	if (mam_rec_decode(val, vlen, &r) < 0)
		return;
	if ((klen = mam_part_prefix(key, host, node, mam_arch.with_full ? r.with_full :
	    r.with_bare)) > 0) {
		mam_put_id((unsigned char *)key + klen, id);
		fn(mam_arch.table_with, key, klen + MAM_ID_LEN, ud);
	}
	if ((st = xmppd_elem_parse(r.msg, r.msg_len)) != NULL) {
		mam_words_of(st, word_key, &ws);
		xmppd_elem_unref(st);
	}
}

/* ---------------------------------------------------------------- */
/* The answer.                                                        */

static void
send_result(struct query *q, const struct hit *h)
{
	char idt[MAM_ID_TEXT + 1], stamp[40];
	xmppd_elem *msg, *res, *fwd, *d, *orig;
	struct mam_rec r;

	if (mam_rec_decode(h->val, h->vlen, &r) < 0 ||
	    (orig = xmppd_elem_parse(r.msg, r.msg_len)) == NULL) {
		xmppd_log(mam_ctx, XMPPD_LOG_ERROR, "%s: archived message unreadable, left out",
		    q->bare);
		return;
	}
	if (mam_arch.shape != NULL)
		mam_arch.shape(orig, q->shape);
	mam_id_format(h->id, idt);
	mam_date_format(r.ts_us, stamp, sizeof(stamp));
	msg = xmppd_elem_new(NULL, "message");
	xmppd_elem_set_attr(msg, "to", xmppd_jid_full(q->asker));
	xmppd_elem_set_attr(msg, "from", q->bare);
	xmppd_elem_set_attr(msg, "id", idt);
	res = xmppd_elem_add_child(msg, NS_MAM, "result");
	if (q->queryid != NULL)
		xmppd_elem_set_attr(res, "queryid", q->queryid);
	xmppd_elem_set_attr(res, "id", idt);
	fwd = xmppd_elem_add_child(res, NS_FORWARD, "forwarded");
	d = xmppd_elem_add_child(fwd, NS_DELAY, "delay");
	xmppd_elem_set_attr(d, "stamp", stamp);
	xmppd_elem_append_copy(fwd, orig);
	if (mam_arch.route_results)
		xmppd_route(msg);
	else
		(void)xmppd_deliver(q->asker, msg);
	xmppd_elem_unref(msg);
	xmppd_elem_unref(orig);
}

static void
finish(struct query *q)
{
	size_t n = q->nhits < q->max ? q->nhits : q->max, i;
	int complete = q->nhits <= q->max && !q->truncated;
	xmppd_elem *fin, *set, *e;
	char idt[MAM_ID_TEXT + 1];
	struct hit *chrono;

	if (q->error != NULL) {
		fail(q, q->error, NULL);
		return;
	}
	/* The page in chronological order. */
	chrono = q->hits;
	if (q->backward)
		for (i = 0; i < n / 2; i++) {
			struct hit t = chrono[i];

			chrono[i] = chrono[n - 1 - i];
			chrono[n - 1 - i] = t;
		}
	for (i = 0; i < n; i++)
		send_result(q, &chrono[q->flip ? n - 1 - i : i]);
	fin = xmppd_elem_new(NS_MAM, "fin");
	if (complete)
		xmppd_elem_set_attr(fin, "complete", "true");
	set = xmppd_elem_add_child(fin, NS_RSM, "set");
	if (n > 0) {
		mam_id_format(chrono[0].id, idt);
		e = xmppd_elem_add_child(set, NS_RSM, "first");
		xmppd_elem_add_text(e, idt, strlen(idt));
		mam_id_format(chrono[n - 1].id, idt);
		e = xmppd_elem_add_child(set, NS_RSM, "last");
		xmppd_elem_add_text(e, idt, strlen(idt));
	}
	xmppd_iq_reply(q->iq, fin);
	query_free(q);
}

/* ---------------------------------------------------------------- */
/* Sources.                                                           */

/* The plain source: the rows of mam in the range, in paging order. */
static int
plain_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct query *q = ud;
	uint64_t id;

	if (klen != q->plen + MAM_ID_LEN)
		return 0;
	id = mam_get_id((const unsigned char *)key + q->plen);
	if (!in_range(q, id))
		return 1;
	if (add_hit(q, id, val, vlen) < 0) {
		q->error = "resource-constraint";
		return 1;
	}
	return q->nhits >= q->want;
}

static void
plain_done(int status, void *ud)
{
	struct query *q = ud;

	if (status != XMPPD_STORE_OK)
		q->error = "internal-server-error";
	finish(q);
}

/* A get of a candidate: a hit if it passes the filters. */
static void
fetched(int status, const void *val, size_t vlen, void *ud)
{
	struct query *q = ud;
	/* Gets complete in the order they were made. */
	uint64_t id = q->cand.v[q->fpos++];
	struct mam_rec r;

	q->pending--;
	if (status == XMPPD_STORE_OK) {
		if (mam_rec_decode(val, vlen, &r) == 0 && rec_matches(q, &r) &&
		    q->nhits < q->want && add_hit(q, id, val, vlen) < 0)
			q->error = "resource-constraint";
	} else if (status == XMPPD_STORE_NOT_FOUND) {
		/* An index row without its message (purged meanwhile); for
		 * 'ids', XEP-0313 4.1.3. */
		if (q->ids.n > 0)
			q->error = "item-not-found";
	} else
		q->error = "internal-server-error";
	if (q->pending > 0)
		return;
	if (q->error != NULL || q->nhits >= q->want || (q->cpos == q->cand.n && q->src_done))
		finish(q);
	else if (q->cpos < q->cand.n)
		fetch(q);
	else
		source_next(q);
}

/* Gets for as many candidates as the page still needs. */
static void
fetch(struct query *q)
{
	char key[MAM_KEY_MAX];
	size_t need = q->want - q->nhits;

	while (q->pending < need && q->cpos < q->cand.n) {
		if (q->examined++ >= MAM_FT_CANDIDATES && q->ids.n == 0) {
			q->truncated = 1;
			q->cpos = q->cand.n;
			q->src_done = 1;
			break;
		}
		if (xmppd_store_aget(mam_ctx, mam_arch.table, key, row_key(q, key, q->cand.v[q->cpos]),
		    fetched, q) < 0) {
			q->error = "internal-server-error";
			break;
		}
		q->cpos++;
		q->pending++;
	}
	if (q->pending == 0)
		finish(q);
}

/* The 'with' source: a chunk of mam_with rows from the cursor. */
struct chunk {
	struct query *q;
	size_t before, limit;
};

static int
with_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct query *q = ((struct chunk *)ud)->q;
	size_t wplen = klen - MAM_ID_LEN;
	uint64_t id;

	if (klen < MAM_ID_LEN || ((const char *)key)[wplen - 1] != '\0')
		return 0;
	id = mam_get_id((const unsigned char *)key + wplen);
	if (!in_range(q, id)) {
		q->src_done = 1;
		return 1;
	}
	if (idset_add(&q->cand, id) < 0) {
		q->error = "resource-constraint";
		return 1;
	}
	if (q->backward) {
		if (id == 0)
			q->src_done = 1;
		else
			q->cursor = id - 1;
	} else {
		if (id == UINT64_MAX)
			q->src_done = 1;
		else
			q->cursor = id + 1;
	}
	return 0;
}

static void
with_done(int status, void *ud)
{
	struct chunk *c = ud;
	struct query *q = c->q;

	if (status != XMPPD_STORE_OK)
		q->error = "internal-server-error";
	if (q->cand.n - c->before < c->limit)
		q->src_done = 1;
	free(c);
	if (q->error != NULL) {
		finish(q);
		return;
	}
	fetch(q);
}

static void
with_next(struct query *q)
{
	char key[MAM_KEY_MAX], start[MAM_KEY_MAX];
	size_t klen;
	struct chunk *c;

	if ((klen = mam_part_prefix(key, q->host, q->node, mam_arch.with_full ?
	    xmppd_jid_full(q->with) : xmppd_jid_bare(q->with))) == 0) {
		finish(q);
		return;
	}
	if ((c = malloc(sizeof(*c))) == NULL) {
		q->error = "resource-constraint";
		finish(q);
		return;
	}
	memcpy(start, key, klen);
	mam_put_id((unsigned char *)start + klen, q->cursor);
	c->q = q;
	c->before = q->cand.n;
	/* A full JID filters the rows: read a few more at a time. */
	c->limit = q->want - q->nhits;
	if (!mam_arch.with_full && xmppd_jid_resource(q->with) != NULL && c->limit < 64)
		c->limit = 64;
	if (xmppd_store_arange(mam_ctx, mam_arch.table_with, key, klen, start, klen + MAM_ID_LEN,
	    q->backward, c->limit, with_row, with_done, c) < 0) {
		free(c);
		q->error = "internal-server-error";
		finish(q);
	}
}

static void
source_next(struct query *q)
{
	if (q->with != NULL && !q->src_done)
		with_next(q);
	else
		finish(q);
}

/* The full-text source: each term's prefix scan, then the ids all
 * terms have, in paging order. */
/* Rows of mam_ft read for one term at most: bounded reads (an ascan
 * would copy every row of a word found in a million messages), and in the
 * direction of paging, so that the newest page of a common word is made
 * of its newest matches. */
#define TERM_READ_MAX (2 * MAM_FT_CANDIDATES)

struct term_scan {
	struct query *q;
	size_t i;
	size_t tplen;
	size_t seen;                /* rows read */
};

static int
term_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct term_scan *t = ud;
	struct query *q = t->q;
	struct idset *s = &q->term_ids[t->i];
	uint64_t id;

	t->seen++;
	/* host NUL node NUL word NUL id8: the word goes on past the term. */
	if (klen < t->tplen + 1 + MAM_ID_LEN ||
	    ((const char *)key)[klen - MAM_ID_LEN - 1] != '\0')
		return 0;
	id = mam_get_id((const unsigned char *)key + klen - MAM_ID_LEN);
	if (!in_range(q, id))
		return 0;
	if (s->n >= MAM_FT_CANDIDATES) {
		s->capped = 1;
		return 1;
	}
	if (idset_add(s, id) < 0) {
		q->error = "resource-constraint";
		return 1;
	}
	return 0;
}

static void
terms_intersect(struct query *q)
{
	struct idset *a = &q->term_ids[0];
	size_t i, j, k, n;

	for (i = 0; i < q->nterms; i++) {
		idset_sort(&q->term_ids[i]);
		if (q->term_ids[i].capped)
			q->truncated = 1;
	}
	for (k = 1; k < q->nterms; k++) {
		struct idset *b = &q->term_ids[k];

		for (i = 0, j = 0, n = 0; i < a->n && j < b->n;) {
			if (a->v[i] < b->v[j])
				i++;
			else if (a->v[i] > b->v[j])
				j++;
			else {
				a->v[n++] = a->v[i];
				i++;
				j++;
			}
		}
		a->n = n;
	}
	q->cand = *a;
	memset(a, 0, sizeof(*a));
	if (q->backward)
		for (i = 0; i < q->cand.n / 2; i++) {
			uint64_t t = q->cand.v[i];

			q->cand.v[i] = q->cand.v[q->cand.n - 1 - i];
			q->cand.v[q->cand.n - 1 - i] = t;
		}
	q->src_done = 1;
}

static void
term_done(int status, void *ud)
{
	struct term_scan *t = ud;
	struct query *q = t->q;

	/* The read stopped at its bound: there may be more matches. */
	if (t->seen >= TERM_READ_MAX)
		q->term_ids[t->i].capped = 1;
	free(t);
	if (status != XMPPD_STORE_OK)
		q->error = "internal-server-error";
	if (--q->pending > 0)
		return;
	if (q->error != NULL) {
		finish(q);
		return;
	}
	terms_intersect(q);
	fetch(q);
}

static void
fulltext_start(struct query *q)
{
	char key[MAM_KEY_MAX];
	struct term_scan *t;

	if ((q->term_ids = calloc(q->nterms, sizeof(*q->term_ids))) == NULL) {
		fail(q, "resource-constraint", NULL);
		return;
	}
	for (size_t i = 0; i < q->nterms; i++) {
		size_t tl = strlen(q->terms[i]);

		/* The prefix is the word's start: no NUL after the term. */
		if (q->plen + tl >= MAM_KEY_MAX - MAM_ID_LEN || (t = calloc(1, sizeof(*t))) == NULL) {
			q->error = "resource-constraint";
			break;
		}
		memcpy(key, q->prefix, q->plen);
		memcpy(key + q->plen, q->terms[i], tl);
		t->q = q;
		t->i = i;
		t->tplen = q->plen + tl;
		if (xmppd_store_arange(mam_ctx, mam_arch.table_ft, key, t->tplen, NULL, 0, q->backward,
		    TERM_READ_MAX, term_row, term_done, t) < 0) {
			free(t);
			q->error = "internal-server-error";
			break;
		}
		q->pending++;
	}
	if (q->pending == 0)
		finish(q);
}

static void
source_start(struct query *q)
{
	char start[MAM_KEY_MAX];

	q->cursor = q->backward ? q->hi : q->lo;
	if (q->ids.n > 0) {
		struct idset *s = &q->ids;

		idset_sort(s);
		for (size_t i = 0; i < s->n; i++)
			if (in_range(q, s->v[i]) && idset_add(&q->cand, s->v[i]) < 0) {
				fail(q, "resource-constraint", NULL);
				return;
			}
		if (q->backward)
			for (size_t i = 0; i < q->cand.n / 2; i++) {
				uint64_t t = q->cand.v[i];

				q->cand.v[i] = q->cand.v[q->cand.n - 1 - i];
				q->cand.v[q->cand.n - 1 - i] = t;
			}
		q->src_done = 1;
		fetch(q);
	} else if (q->empty)
		finish(q);
	else if (q->nterms > 0)
		fulltext_start(q);
	else if (q->with != NULL)
		with_next(q);
	else if (xmppd_store_arange(mam_ctx, mam_arch.table, q->prefix, q->plen, start,
	    row_key(q, start, q->cursor), q->backward, q->want, plain_row, plain_done, q) < 0)
		fail(q, "internal-server-error", NULL);
}

/* The ids the query names must be archived (XEP-0313 4.1.3, 4.1.4). */
static void
must_got(int status, const void *val, size_t vlen, void *ud)
{
	struct query *q = ud;

	if (status == XMPPD_STORE_NOT_FOUND)
		q->error = "item-not-found";
	else if (status != XMPPD_STORE_OK)
		q->error = "internal-server-error";
	if (--q->pending > 0)
		return;
	if (q->error != NULL)
		finish(q);
	else
		source_start(q);
}

static void
query_start(struct query *q)
{
	char key[MAM_KEY_MAX];

	for (size_t i = 0; i < q->nmust; i++) {
		if (xmppd_store_aget(mam_ctx, mam_arch.table, key, row_key(q, key, q->must[i]), must_got,
		    q) < 0) {
			q->error = "internal-server-error";
			break;
		}
		q->pending++;
	}
	if (q->pending == 0) {
		if (q->error != NULL)
			finish(q);
		else
			source_start(q);
	}
}

/* ---------------------------------------------------------------- */
/* The form and RSM.                                                  */

static void
term_cb(const char *w, size_t wlen, void *ud)
{
	struct query *q = ud;

	if (q->nterms < MAX_TERMS && (q->terms[q->nterms] = strndup(w, wlen)) != NULL)
		q->nterms++;
}

static void
lower(struct query *q, uint64_t lo)
{
	if (lo > q->lo)
		q->lo = lo;
}

static void
upper(struct query *q, uint64_t hi)
{
	if (hi < q->hi)
		q->hi = hi;
}

/* An id the query names as a bound: it must be archived. */
static int
bound_id(struct query *q, const char *s, uint64_t *id_r)
{
	if (mam_id_parse(s, id_r) < 0 || q->nmust >= sizeof(q->must) / sizeof(q->must[0]))
		return -1;
	q->must[q->nmust++] = *id_r;
	return 0;
}

/* The first <value/> of a field, or NULL. */
static const char *
field_value(xmppd_elem *f)
{
	xmppd_elem *v = xmppd_elem_child(f, NS_XDATA, "value");

	return v != NULL ? xmppd_elem_text(v) : NULL;
}

/* 0, or -1 with *cond_r / *text_r. */
static int
parse_form(struct query *q, xmppd_elem *x, const char **cond_r, const char **text_r)
{
	const char *type = xmppd_elem_attr(x, "type");
	int64_t t;
	uint64_t id;

	*cond_r = "bad-request";
	if (type != NULL && strcmp(type, "submit") != 0) {
		*text_r = "the form must be of type submit";
		return -1;
	}
	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL; f = xmppd_elem_next_sibling(f)) {
		const char *var = xmppd_elem_attr(f, "var"), *v;

		if (!(xmppd_elem_ns(f) != NULL && strcmp(xmppd_elem_ns(f), NS_XDATA) == 0) ||
		    strcmp(xmppd_elem_name(f), "field") != 0)
			continue;
		if (var == NULL) {
			*text_r = "a field without var";
			return -1;
		}
		v = field_value(f);
		if (strcmp(var, "FORM_TYPE") == 0) {
			if (v == NULL || strcmp(v, NS_MAM) != 0) {
				*text_r = "FORM_TYPE is not urn:xmpp:mam:2";
				return -1;
			}
		} else if (strcmp(var, "with") == 0) {
			if (v == NULL || *v == '\0')
				continue;
			xmppd_jid_free(q->with);
			if ((q->with = xmppd_jid_parse(v)) == NULL) {
				*text_r = "with: not a JID";
				return -1;
			}
		} else if (strcmp(var, "start") == 0 || strcmp(var, "end") == 0) {
			if (v == NULL || *v == '\0')
				continue;
			if (mam_date_parse(v, &t) < 0) {
				*text_r = "start/end: not a XEP-0082 DateTime";
				return -1;
			}
			if (var[0] == 's')
				lower(q, (uint64_t)t);
			else
				upper(q, (uint64_t)t);
		} else if (strcmp(var, "after-id") == 0 || strcmp(var, "before-id") == 0) {
			if (v == NULL || *v == '\0')
				continue;
			/* XEP-0313 4.1.3: an id not in the archive. */
			if (bound_id(q, v, &id) < 0) {
				*cond_r = "item-not-found";
				*text_r = NULL;
				return -1;
			}
			if (var[0] == 'a')
				lower(q, id == UINT64_MAX ? id : id + 1);
			else if (id == 0)
				q->empty = 1;
			else
				upper(q, id - 1);
		} else if (strcmp(var, "ids") == 0) {
			for (xmppd_elem *e = xmppd_elem_first_child(f); e != NULL;
			    e = xmppd_elem_next_sibling(e)) {
				if (strcmp(xmppd_elem_name(e), "value") != 0)
					continue;
				if (mam_id_parse(xmppd_elem_text(e), &id) < 0) {
					*cond_r = "item-not-found";
					*text_r = NULL;
					return -1;
				}
				if (q->ids.n >= (size_t)xmppd_opt_int(mam_ctx, "mam_max_page")) {
					*cond_r = "policy-violation";
					*text_r = "more ids than a page holds";
					return -1;
				}
				if (idset_add(&q->ids, id) < 0) {
					*cond_r = "resource-constraint";
					return -1;
				}
			}
		} else if (strcmp(var, "{" NS_FULLTEXT "}fulltext") == 0 ||
		    strcmp(var, "withtext") == 0) {
			/* XEP-0431 2; withtext: ejabberd's older name. */
			if (v == NULL)
				continue;
			for (size_t i = 0; i < q->nterms; i++)
				free(q->terms[i]);
			q->nterms = 0;
			(void)mam_text_words(v, strlen(v), MAX_TERMS, term_cb, q);
			if (q->nterms == 0 && *v != '\0')
				q->empty = 1;   /* no word: nothing matches */
		} else {
			/* XEP-0313 4.1.5. */
			*cond_r = "feature-not-implemented";
			*text_r = "unknown field";
			return -1;
		}
	}
	return 0;
}

static int
parse_rsm(struct query *q, xmppd_elem *set, const char **cond_r, const char **text_r)
{
	uint64_t id;

	*cond_r = "bad-request";
	for (xmppd_elem *e = xmppd_elem_first_child(set); e != NULL; e = xmppd_elem_next_sibling(e)) {
		const char *name = xmppd_elem_name(e), *v = xmppd_elem_text(e);
		char *end;

		if (strcmp(name, "max") == 0) {
			unsigned long long m;

			if (*v < '0' || *v > '9' || (m = strtoull(v, &end, 10), *end != '\0')) {
				*text_r = "max: not a number";
				return -1;
			}
			/* XEP-0313 4.1.4: the server's limit applies. */
			q->max = m < q->max ? (size_t)m : q->max;
		} else if (strcmp(name, "after") == 0) {
			if (bound_id(q, v, &id) < 0) {
				*cond_r = "item-not-found";
				*text_r = NULL;
				return -1;
			}
			lower(q, id == UINT64_MAX ? id : id + 1);
		} else if (strcmp(name, "before") == 0) {
			/* XEP-0059 2.5: empty, the last page. */
			q->backward = 1;
			if (*v == '\0')
				continue;
			if (bound_id(q, v, &id) < 0) {
				*cond_r = "item-not-found";
				*text_r = NULL;
				return -1;
			}
			if (id == 0)
				q->empty = 1;
			else
				upper(q, id - 1);
		} else if (strcmp(name, "index") == 0) {
			*cond_r = "feature-not-implemented";
			*text_r = "RSM index is not supported";
			return -1;
		}
	}
	return 0;
}

void
mam_query_set(xmppd_elem *iq, xmppd_elem *payload, const xmppd_jid *from, const xmppd_jid *to,
    int shape)
{
	const char *cond = NULL, *text = NULL;
	struct query *q;

	if ((q = calloc(1, sizeof(*q))) == NULL) {
		xmppd_iq_error(iq, "resource-constraint", NULL);
		return;
	}
	q->iq = xmppd_elem_ref(iq);
	q->shape = shape;
	q->hi = UINT64_MAX;
	q->max = (size_t)xmppd_opt_int(mam_ctx, "mam_max_page");
	if ((q->asker = xmppd_jid_copy(from)) == NULL || (q->bare = strdup(xmppd_jid_bare(to))) == NULL ||
	    (q->host = strdup(xmppd_jid_domain(to))) == NULL ||
	    (q->node = strdup(xmppd_jid_node(to))) == NULL ||
	    (q->plen = mam_user_prefix(q->prefix, q->host, q->node)) == 0) {
		fail(q, "resource-constraint", NULL);
		return;
	}
	if (xmppd_elem_attr(payload, "queryid") != NULL &&
	    (q->queryid = strdup(xmppd_elem_attr(payload, "queryid"))) == NULL) {
		fail(q, "resource-constraint", NULL);
		return;
	}
	if (xmppd_elem_attr(payload, "node") != NULL) {
		/* XEP-0313 6.1.3: pubsub archives (XEP-0442) are not ours. */
		fail(q, "feature-not-implemented", "no pubsub archive here");
		return;
	}
	for (xmppd_elem *c = xmppd_elem_first_child(payload); c != NULL;
	    c = xmppd_elem_next_sibling(c)) {
		const char *ns = xmppd_elem_ns(c), *name = xmppd_elem_name(c);

		if (ns == NULL)
			continue;
		if (strcmp(ns, NS_XDATA) == 0 && strcmp(name, "x") == 0) {
			if (parse_form(q, c, &cond, &text) < 0)
				break;
		} else if (strcmp(ns, NS_RSM) == 0 && strcmp(name, "set") == 0) {
			if (parse_rsm(q, c, &cond, &text) < 0)
				break;
		} else if (strcmp(ns, NS_MAM) == 0 && strcmp(name, "flip-page") == 0)
			q->flip = 1;
		cond = NULL;
	}
	if (cond != NULL) {
		fail(q, cond, text);
		return;
	}
	if (q->lo > q->hi)
		q->empty = 1;
	q->want = q->max + 1;
	query_start(q);
}

/* XEP-0313 4.1.5: the fields we understand. */
void
mam_form_get(xmppd_elem *iq)
{
	static const char *const fields[][2] = {
		{ "with", "jid-single" }, { "start", "text-single" }, { "end", "text-single" },
		{ "before-id", "text-single" }, { "after-id", "text-single" },
		{ "ids", "list-multi" }, { "{" NS_FULLTEXT "}fulltext", "text-single" },
	};
	xmppd_elem *q = xmppd_elem_new(NS_MAM, "query"), *x, *f, *v;

	x = xmppd_elem_add_child(q, NS_XDATA, "x");
	xmppd_elem_set_attr(x, "type", "form");
	f = xmppd_elem_add_child(x, NS_XDATA, "field");
	xmppd_elem_set_attr(f, "var", "FORM_TYPE");
	xmppd_elem_set_attr(f, "type", "hidden");
	v = xmppd_elem_add_child(f, NS_XDATA, "value");
	xmppd_elem_add_text(v, NS_MAM, strlen(NS_MAM));
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		f = xmppd_elem_add_child(x, NS_XDATA, "field");
		xmppd_elem_set_attr(f, "var", fields[i][0]);
		xmppd_elem_set_attr(f, "type", fields[i][1]);
		if (strcmp(fields[i][0], "ids") == 0) {
			/* XEP-0313 4.1.5: an open list (XEP-0122). */
			v = xmppd_elem_add_child(f, "http://jabber.org/protocol/xdata-validate",
			    "validate");
			xmppd_elem_set_attr(v, "datatype", "xs:string");
			(void)xmppd_elem_add_child(v, "http://jabber.org/protocol/xdata-validate",
			    "open");
		}
	}
	xmppd_iq_reply(iq, q);
}

/* ---------------------------------------------------------------- */
/* Metadata (XEP-0313 7, #extended).                                  */

struct meta {
	xmppd_elem *iq;
	xmppd_elem *md;
	int pending, failed;
};

static int
meta_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct meta *m = ((void **)ud)[0];
	const char *which = ((void **)ud)[1];
	char idt[MAM_ID_TEXT + 1], stamp[40];
	struct mam_rec r;
	xmppd_elem *e;

	if (klen < MAM_ID_LEN || mam_rec_decode(val, vlen, &r) < 0)
		return 0;
	mam_id_format(mam_get_id((const unsigned char *)key + klen - MAM_ID_LEN), idt);
	mam_date_format(r.ts_us, stamp, sizeof(stamp));
	e = xmppd_elem_add_child(m->md, NS_MAM, which);
	xmppd_elem_set_attr(e, "id", idt);
	xmppd_elem_set_attr(e, "timestamp", stamp);
	return 1;
}

struct meta_call {
	void *pair[2];
};

static void
meta_done(int status, void *ud)
{
	struct meta_call *c = ud;
	struct meta *m = c->pair[0];

	free(c);
	if (status != XMPPD_STORE_OK)
		m->failed = 1;
	if (--m->pending > 0)
		return;
	if (m->failed) {
		xmppd_iq_error(m->iq, "internal-server-error", NULL);
		xmppd_elem_unref(m->md);
	} else {
		/* Both or neither: <end/> after <start/> (the scans ran in
		 * order), so a start without an end cannot happen. */
		xmppd_iq_reply(m->iq, m->md);
	}
	xmppd_elem_unref(m->iq);
	free(m);
}

void
mam_metadata_get(xmppd_elem *iq, const xmppd_jid *to)
{
	char prefix[MAM_KEY_MAX];
	size_t plen = mam_user_prefix(prefix, xmppd_jid_domain(to), xmppd_jid_node(to));
	struct meta *m = calloc(1, sizeof(*m));

	if (m == NULL || plen == 0) {
		free(m);
		xmppd_iq_error(iq, "resource-constraint", NULL);
		return;
	}
	m->iq = xmppd_elem_ref(iq);
	m->md = xmppd_elem_new(NS_MAM, "metadata");
	for (int rev = 0; rev < 2; rev++) {
		struct meta_call *c = malloc(sizeof(*c));

		if (c == NULL) {
			m->failed = 1;
			continue;
		}
		c->pair[0] = m;
		c->pair[1] = rev ? "end" : "start";
		if (xmppd_store_arange(mam_ctx, mam_arch.table, prefix, plen, NULL, 0, rev, 1, meta_row,
		    meta_done, c->pair) < 0) {
			free(c);
			m->failed = 1;
			continue;
		}
		m->pending++;
	}
	if (m->pending == 0) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		xmppd_elem_unref(m->md);
		xmppd_elem_unref(m->iq);
		free(m);
	}
}
