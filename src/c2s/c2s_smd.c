/*
 * c2s_smd.c - durable stream management (sm_durable): the resumption
 * state and the unacknowledged queue of each resumable session kept in
 * the store, so that a client resumes its session after kill -9 and a
 * restart of the server (doc/architecture.md, "Resumption across a
 * restart"; the rows are smd_rec.h's).
 *
 * Every change goes to the store as a batch of the asynchronous store
 * (core/astore.h), which commits everything a worker submitted in one loop
 * iteration as one transaction: rows are written as stanzas are queued,
 * removed as <a h/> covers them, all removed when the session ends.
 *
 * The rules on counting (XEP-0198 4, and issue 12 point 6: an
 * acknowledged stanza is never lost):
 *   - our stanza numbered n is written to the client only once its queue
 *     row is committed, so the client never counts (and acknowledges) a
 *     stanza that a restart would not know about; its row is submitted
 *     while the sender's stanza is being handled, so on the sender's
 *     worker the sender's own h waits for it too (core/hold.h);
 *   - the client's stanza counts in the h we tell it (<a/>, <resumed/>)
 *     only once the state row with that h is committed: an <r/> that comes
 *     before is answered after the commit. So a restarted server's h is
 *     never below one the client was told.
 *
 * At start-up (c2s_sm_restore, after the modules are loaded) each state
 * row becomes a detached session again (c2s_sm.c), on a worker chosen by
 * its id: bound, routable, with its presence, queue and counters, until it
 * is resumed or its deadline passes.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "c2s/c2s.h"
#include "c2s/c2s_int.h"
#include "c2s/c2s_sm_int.h"
#include "c2s/smd_rec.h"
#include "c2s/smq.h"
#include "core/astore.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"
#include "router/session.h"
#include "router/sm.h"
#include "store/store.h"
#include "stream/xstream.h"
#include "xml/stream.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"

enum smd_kind {
	SMD_OUT,        /* a queue row: write what is committed */
	SMD_IN,         /* a state row with h_pending: count it */
};

/* What a batch's completion is about: the session by sid (it may have
 * gone, or moved to another worker, by then). */
struct smd_cb {
	uint64_t sid;
	uint64_t seq;
	uint32_t h;
	enum smd_kind kind;
};

uint64_t
c2s_smd_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
c2s_sm_presence(struct c2s *c, xml_elem *p)
{
	if (!c->conf->sm_durable)
		return;
	xml_elem_unref(c->presence);
	c->presence = p != NULL ? xml_elem_ref(p) : NULL;
}

static int
key_id(struct store_key *k, const char *id)
{
	store_key_init(k);
	return store_key_add(k, id);
}

static int
key_row(struct store_key *k, const char *id, uint64_t seq)
{
	return key_id(k, id) < 0 || store_key_add_u64(k, seq) < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- */
/* Writing.                                                           */

static void
done_cb(int status, void *ud)
{
	struct smd_cb *cb = ud;
	struct worker *w = worker_self();
	struct session *s = w != NULL ? session_find(w, cb->sid) : NULL;
	struct c2s *c = s != NULL && s->ops == &c2s_session_ops ? (struct c2s *)s : NULL;
	struct c2s_sm *sm = c != NULL ? c->sm : NULL;

	if (status != XMPPD_STORE_OK)
		log_error(c != NULL ? c->tag : "c2s", "stream management state not stored "
		    "(store status %d): it would not survive a restart", status);
	/* A moved session's sm is the new connection's (c->sm NULL here). */
	if (sm == NULL || !sm->durable)
		goto out;
	if (cb->kind == SMD_OUT) {
		if (cb->seq > sm->committed64)
			sm->committed64 = cb->seq;
		c2s_smd_flush(c);
	} else if ((uint32_t)(cb->h - sm->h_in) <= (uint32_t)(sm->h_pending - sm->h_in)) {
		/* XEP-0198 4: h counts it now that it is committed. */
		sm->h_in = cb->h;
		if (sm->a_wanted && sm->h_in == sm->h_pending) {
			sm->a_wanted = 0;
			if (!c->gone && !c->xs.closing)
				xstream_printf(&c->xs, "<a xmlns='" NS_SM "' h='%u'/>", sm->h_in);
		}
	}
out:
	free(cb);
}

static int
put_state(xmppd_batch *b, struct c2s *c)
{
	struct c2s_sm *sm = c->sm;
	struct smd_state st;
	struct store_key k;
	char *presence = NULL;
	void *row;
	size_t len;
	int rc;

	memset(&st, 0, sizeof(st));
	st.h_in = sm->h_pending;
	st.acked = sm->acked64;
	st.max = sm->max;
	st.deadline_ms = sm->deadline_ms;
	st.available = c->s.available;
	st.priority = c->s.priority;
	st.host = c->host;
	st.node = c->node;
	st.full = c->s.jid.full;
	if (c->s.available && c->presence != NULL)
		st.presence = presence = xml_to_string(c->presence, NS_CLIENT, &len);
	row = smd_state_encode(&st, &len);
	free(presence);
	if (row == NULL || key_id(&k, sm->id) < 0) {
		free(row);
		return -1;
	}
	rc = astore_batch_put(b, SMD_STATE_TABLE, k.buf, k.len, row, len);
	free(row);
	return rc;
}

/* Submits b; cb (or NULL) is told when it is committed. */
static void
submit(struct c2s *c, xmppd_batch *b, struct smd_cb *cb)
{
	if (astore_batch_submit(b, cb != NULL ? done_cb : NULL, cb) < 0) {
		/* Not on a worker: nothing is stored; go on as if it were,
		 * rather than stall the session. */
		log_error(c->tag, "stream management state not submitted to the store");
		astore_batch_free(b);
		if (cb != NULL)
			done_cb(XMPPD_STORE_ERROR, cb);
	}
}

static struct smd_cb *
cb_new(struct c2s *c, enum smd_kind kind)
{
	struct smd_cb *cb = calloc(1, sizeof(*cb));

	if (cb != NULL) {
		cb->sid = c->s.sid;
		cb->kind = kind;
	}
	return cb;
}

void
c2s_smd_state(struct c2s *c)
{
	xmppd_batch *b;

	if (c->sm == NULL || !c->sm->durable)
		return;
	if ((b = astore_batch_new(NULL)) == NULL || put_state(b, c) < 0) {
		log_error(c->tag, "out of memory for the stream management state");
		astore_batch_free(b);
		return;
	}
	submit(c, b, NULL);
}

void
c2s_smd_queued(struct c2s *c, const xml_elem *st)
{
	struct c2s_sm *sm = c->sm;
	uint64_t seq = sm->acked64 + smq_len(&sm->out);
	struct smd_cb *cb = cb_new(c, SMD_OUT);
	xmppd_batch *b = astore_batch_new(NULL);
	struct store_key k;
	char *text = NULL, *row = NULL;
	size_t len = 0;

	if (cb == NULL || b == NULL || (text = xml_to_string(st, NS_CLIENT, &len)) == NULL ||
	    (row = malloc(len + 1)) == NULL || key_row(&k, sm->id, seq) < 0) {
		log_error(c->tag, "out of memory for a stream management queue row");
		free(text);
		free(row);
		astore_batch_free(b);
		/* Written without its row rather than not at all. */
		if (cb == NULL) {
			sm->committed64 = seq;
			c2s_smd_flush(c);
		} else {
			cb->seq = seq;
			done_cb(XMPPD_STORE_ERROR, cb);
		}
		return;
	}
	row[0] = SMD_REC_VERSION;
	memcpy(row + 1, text, len);
	free(text);
	(void)astore_batch_put(b, SMD_QUEUE_TABLE, k.buf, k.len, row, len + 1);
	free(row);
	cb->seq = seq;
	submit(c, b, cb);
}

void
c2s_smd_acked(struct c2s *c, uint64_t old_acked64)
{
	struct c2s_sm *sm = c->sm;
	xmppd_batch *b;
	struct store_key k;

	if (!sm->durable || sm->acked64 == old_acked64)
		return;
	if (sm->wire64 < sm->acked64)
		sm->wire64 = sm->acked64;
	if ((b = astore_batch_new(NULL)) == NULL)
		return;
	for (uint64_t seq = old_acked64 + 1; seq <= sm->acked64; seq++)
		if (key_row(&k, sm->id, seq) == 0)
			(void)astore_batch_del(b, SMD_QUEUE_TABLE, k.buf, k.len);
	if (put_state(b, c) < 0) {
		astore_batch_free(b);
		return;
	}
	submit(c, b, NULL);
}

void
c2s_smd_handled(struct c2s *c)
{
	struct c2s_sm *sm = c->sm;
	struct smd_cb *cb = cb_new(c, SMD_IN);
	xmppd_batch *b = astore_batch_new(NULL);

	sm->h_pending++;
	if (cb == NULL || b == NULL || put_state(b, c) < 0) {
		astore_batch_free(b);
		if (cb == NULL) {
			sm->h_in = sm->h_pending;
		} else {
			cb->h = sm->h_pending;
			done_cb(XMPPD_STORE_ERROR, cb);
		}
		return;
	}
	cb->h = sm->h_pending;
	submit(c, b, cb);
}

void
c2s_smd_forget(struct c2s_sm *sm)
{
	xmppd_batch *b;
	struct store_key k;

	if (!sm->durable || key_id(&k, sm->id) < 0 || (b = astore_batch_new(NULL)) == NULL)
		return;
	(void)astore_batch_del(b, SMD_STATE_TABLE, k.buf, k.len);
	(void)astore_batch_del_prefix(b, SMD_QUEUE_TABLE, k.buf, k.len);
	if (astore_batch_submit(b, NULL, NULL) < 0) {
		log_error("c2s", "the rows of stream management session %s stay in the store",
		    sm->id);
		astore_batch_free(b);
	}
}

void
c2s_smd_flush(struct c2s *c)
{
	struct c2s_sm *sm = c->sm;
	uint64_t end = sm->acked64 + smq_len(&sm->out);

	if (sm->wire64 < sm->acked64)
		sm->wire64 = sm->acked64;
	if (c->gone || c->xs.closing || c->moved) {
		/* Nobody to write to: a resumption replays the queue. */
		sm->wire64 = sm->committed64 < end ? sm->committed64 : end;
		return;
	}
	while (sm->wire64 < sm->committed64 && sm->wire64 < end) {
		xstream_send(&c->xs, smq_at(&sm->out, (uint32_t)(sm->wire64 - sm->acked64)));
		sm->wire64++;
		c2s_sm_wrote(c);
		if (c->xs.closing)
			break;
	}
}

struct after {
	void (*fn)(void *a);
	void *a;
};

static void
after_cb(int status, void *ud)
{
	struct after *x = ud;

	x->fn(x->a);
	free(x);
}

void
c2s_smd_after_commit(void (*fn)(void *a), void *a)
{
	/* An empty batch: the asynchronous store completes a worker's work
	 * in submission order, so when it does, everything before it is
	 * committed. */
	struct after *x = calloc(1, sizeof(*x));
	xmppd_batch *b = x != NULL ? astore_batch_new(NULL) : NULL;

	if (b == NULL) {
		free(x);
		fn(a);
		return;
	}
	x->fn = fn;
	x->a = a;
	if (astore_batch_submit(b, after_cb, x) < 0) {
		astore_batch_free(b);
		free(x);
		fn(a);
	}
}

/* ---------------------------------------------------------------- */
/* Start-up: the sessions a previous run left.                        */

struct restored {
	struct restored *next;
	char id[SM_ID_LEN + 1];
	struct smd_state st;
	xml_elem **q;
	uint32_t n, cap;
	uint64_t next_seq;     /* the seq the next row must have */
	int bad;
};

static int
queue_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct restored *r = ud;
	const unsigned char *kp = key;
	uint64_t seq = 0;
	xml_elem *e, **nq;

	if (klen < 8)
		return 0;
	for (size_t i = klen - 8; i < klen; i++)
		seq = seq << 8 | kp[i];
	if (seq <= r->st.acked)
		return 0;          /* acknowledged (cannot happen: deleted with the ack) */
	if (seq != r->next_seq || vlen < 1 || ((const char *)val)[0] != SMD_REC_VERSION ||
	    (e = xml_parse_elem((const char *)val + 1, vlen - 1, NS_CLIENT)) == NULL) {
		/* A gap or a row we cannot read: h would no longer match
		 * what the client counted, so the session is not restored. */
		r->bad = 1;
		return 1;
	}
	if (r->n == r->cap) {
		uint32_t cap = r->cap ? r->cap * 2 : 16;

		if ((nq = realloc(r->q, cap * sizeof(*nq))) == NULL) {
			xml_elem_unref(e);
			r->bad = 1;
			return 1;
		}
		r->q = nq;
		r->cap = cap;
	}
	r->q[r->n++] = e;
	r->next_seq++;
	return 0;
}

static void
restored_free(struct restored *r)
{
	for (uint32_t i = 0; i < r->n; i++)
		xml_elem_unref(r->q[i]);
	free(r->q);
	smd_state_clear(&r->st);
	free(r);
}

struct scan {
	struct restored *head;
	unsigned count, refused;
};

static int
state_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct scan *sc = ud;
	struct restored *r = calloc(1, sizeof(*r));

	/* The key is the id and its NUL (store_key_add). */
	if (r == NULL)
		return 1;
	if (klen != SM_ID_LEN + 1 || ((const char *)key)[SM_ID_LEN] != '\0' ||
	    smd_state_decode(val, vlen, &r->st) < 0) {
		sc->refused++;
		free(r);
		return 0;
	}
	memcpy(r->id, key, SM_ID_LEN);
	r->id[SM_ID_LEN] = '\0';
	r->next_seq = r->st.acked + 1;
	r->next = sc->head;
	sc->head = r;
	return 0;
}

/* On the worker that is to own it: the session as c2s_sm.c leaves a
 * detached one. */
static void
restore_task(struct worker *w, void *a, uint64_t b)
{
	struct restored *r = a;
	struct c2s *c = calloc(1, sizeof(*c));
	struct c2s_sm *sm = calloc(1, sizeof(*sm));
	uint64_t now = c2s_smd_wall_ms(), left_ms;
	const char *err;
	xml_elem *p = NULL;

	if (c == NULL || sm == NULL || (c->host = strdup(r->st.host)) == NULL ||
	    (c->node = strdup(r->st.node)) == NULL ||
	    jid_parse(&c->s.jid, r->st.full, strlen(r->st.full), &err) < 0 ||
	    c->s.jid.resource == NULL) {
		log_error("c2s", "stream management session %s cannot be restored", r->id);
		if (c != NULL) {
			free(c->host);
			free(c->node);
			jid_free(&c->s.jid);
		}
		free(c);
		free(sm);
		restored_free(r);
		return;
	}
	c->w = w;
	c->conf = conf_current();
	c->authenticated = 1;
	session_add(&c->s, w, &c2s_session_ops, NULL, 0);
	snprintf(c->s.addr, sizeof(c->s.addr), "restored");
	snprintf(c->tag, sizeof(c->tag), "c2s#%u.%llu", worker_id(w),
	    (unsigned long long)(c->s.sid & 0xffffffffffffffULL));
	/* No connection: nothing is ever written (c2s_sm.c). */
	c->xs.closing = 1;
	c->gone = 1;
	c2s_sm_gone_link(c);

	smq_init(&sm->out);
	sm->out.acked = sm->out.sent = (uint32_t)r->st.acked;
	for (uint32_t i = 0; i < r->n; i++)
		(void)smq_push(&sm->out, r->q[i], UINT32_MAX);
	sm->h_in = sm->h_pending = r->st.h_in;
	sm->resume = 1;
	sm->durable = 1;
	sm->max = r->st.max;
	sm->acked64 = r->st.acked;
	sm->committed64 = sm->wire64 = r->st.acked + r->n;
	memcpy(sm->id, r->id, sizeof(sm->id));
	c->sm = sm;

	/* Bound and routable again: what is sent to it is queued (XEP-0198
	 * 5), and with its presence its contacts see it as before the
	 * restart, until it is resumed or ends. */
	session_bind(&c->s);
	if (r->st.available) {
		if (r->st.presence != NULL)
			p = xml_parse_elem(r->st.presence, strlen(r->st.presence), NS_CLIENT);
		if (p == NULL) {
			p = xml_elem_new(NULL, "presence");
			xml_attr_set(p, "from", c->s.jid.full);
		}
		c->s.available = 1;
		c->s.priority = r->st.priority;
		sm_set_presence(&c->s.jid, c->s.sid, 1, c->s.priority, p);
		c->presence = p;
	}
	session_opened(&c->s);
	c2s_sm_id_set(sm->id, worker_id(w), c->s.sid);
	/* An attached session's connection died with the server: it is
	 * detached from now on, for max seconds. */
	if (r->st.deadline_ms == 0)
		sm->deadline_ms = now + sm->max * 1000ULL;
	else
		sm->deadline_ms = r->st.deadline_ms;
	left_ms = sm->deadline_ms > now ? sm->deadline_ms - now : 0;
	if (left_ms > 86400ULL * 1000)
		left_ms = 86400ULL * 1000;
	c2s_smd_state(c);
	log_info(c->tag, "%s restored, detached for %llu ms (h %u, %u queued)", c->s.jid.full,
	    (unsigned long long)left_ms, sm->h_in, smq_len(&sm->out));
	c2s_sm_arm(c, (unsigned)left_ms);
	restored_free(r);
}

int
c2s_sm_restore(void)
{
	struct scan sc = { NULL, 0, 0 };
	struct conf *conf = conf_current();
	int durable = conf->sm_durable;
	store_txn *t;
	struct restored *r, *next;

	conf_unref(conf);
	if (!durable) {
		/* Rows a durable run left are not for this one. */
		if ((t = store_begin(1)) == NULL)
			return -1;
		if (store_del_prefix(t, SMD_STATE_TABLE, "", 0) < 0 ||
		    store_del_prefix(t, SMD_QUEUE_TABLE, "", 0) < 0) {
			store_abort(t);
			return -1;
		}
		return store_commit(t);
	}
	if ((t = store_begin(0)) == NULL)
		return -1;
	if (store_scan(t, SMD_STATE_TABLE, "", 0, state_row, &sc) < 0) {
		store_abort(t);
		return -1;
	}
	for (r = sc.head; r != NULL; r = r->next) {
		struct store_key k;

		if (key_id(&k, r->id) == 0 &&
		    store_scan(t, SMD_QUEUE_TABLE, k.buf, k.len, queue_row, r) < 0)
			r->bad = 1;
	}
	store_abort(t);
	for (r = sc.head; r != NULL; r = next) {
		next = r->next;
		if (r->bad) {
			log_error("c2s", "stream management session %s has unreadable rows: "
			    "not restored", r->id);
			sc.refused++;
			restored_free(r);
			continue;
		}
		sc.count++;
		/* Ids are random: their first digits spread the sessions. */
		worker_post(worker_get((unsigned)strtoul((char[3]){ r->id[0], r->id[1], 0 },
		    NULL, 16) % worker_count()), restore_task, r, 0);
	}
	if (sc.count > 0 || sc.refused > 0)
		log_notice("c2s", "stream management: %u session(s) restored from the store, "
		    "%u refused", sc.count, sc.refused);
	worker_sync_all();
	return 0;
}
