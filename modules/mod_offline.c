/*
 * mod_offline - XEP-0160: Best Practices for Handling Offline Messages.
 *
 * A message the core could not deliver (offline_message: a normal, chat or
 * unknown-type message to a user with no available resource of
 * non-negative priority, RFC 6121 8.5.2.2.1) is stored, a copy stamped with
 * <delay xmlns='urn:xmpp:delay' from='DOMAIN' stamp='...'/> (XEP-0203,
 * XEP-0160 2), and delivered in order to the next resource that sends
 * non-negative available presence (XEP-0160 2 step 5), then deleted:
 * its initial presence, or a change from a negative priority to a
 * non-negative one; a negative priority gets nothing (RFC 6121 8.5.2.1.1).
 * Stored messages pass the user_receive_packet hook like live ones.
 * One message is as large as the c2s max_stanza_size lets it be; the
 * quotas below bound what one account can hold.
 *
 * Storage: table mod_offline, key "host NUL node NUL" and a big-endian
 * 64-bit sequence number, so one user's messages are one key range in
 * arrival order; value the stamped stanza as text. The next number is one
 * past the last key (a store scans the range, which also counts the
 * quota), so nothing else has to be kept in step.
 *
 * What is stored (XEP-0160 3, RFC 6121 8.5.2.2.1, 5.2.2):
 *  - normal, chat and unknown types (treated as normal), if they carry
 *    anything besides chat states (XEP-0085), <thread/> and processing
 *    hints (XEP-0334): a standalone chat state is dropped silently
 *    (XEP-0160 3 "SHOULD NOT be stored", XEP-0085 "MAY refuse to deliver
 *    standalone notifications"); a receipt (XEP-0184) or any other
 *    payload is stored;
 *  - <no-store xmlns='urn:xmpp:hints'/>: not stored, so the core answers
 *    service-unavailable (RFC 6121 8.5.2.2.1: store or bounce); <store/>
 *    makes even a lone chat state worth storing (XEP-0334);
 *  - groupchat: left to the core, which bounces it; headline and error:
 *    dropped (the core does not even ask for those).
 * Quota: max_messages and max_bytes (the stored text) per user; a full
 * store answers <service-unavailable/> as XEP-0160 2 step 3 says (ejabberd
 * uses resource-constraint; the XEP's word is followed here).
 *
 * Durability: a message is only acknowledged (STOP) once its write
 * transaction committed, so it survives kill -9. Delivery is "deliver,
 * then delete": the messages are written to the session, then removed in
 * one transaction; a crash in between gives a duplicate at the next login,
 * never a loss. "Delivered" means queued on the client's stream: if the
 * stream is closed while they are written (its send queue overflowing),
 * only the messages queued before that are deleted.
 *
 * Races handled: a per-user lock (striped) makes concurrent logins of one
 * user take the messages once; a message stored while the user was
 * becoming available is caught by a second pass after the presence is
 * recorded, or, if stored later still, taken back and routed live by its
 * sender's worker. Such a late message may arrive after newer live ones.
 */
#define _GNU_SOURCE             /* PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmppd.h>

#define TABLE "mod_offline"
#define KEY_MAX 512             /* LMDB's key limit is 511 bytes */
#define SEQ_LEN 8
#define NS_DELAY "urn:xmpp:delay"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_HINTS "urn:xmpp:hints"
#define FEATURE "msgoffline"    /* XEP-0160 5 */
#define NSTRIPES 64

static uint64_t second_pass(void *ud);

static const struct xmppd_option options[] = {
	/* XEP-0160 2: what one account may have waiting. */
	{ "max_messages", XMPPD_OPT_INT, "1000", 1, 100000 },
	/* Bytes of stored text per account; the default equals the c2s
	 * max_send_queue default, so one login can take the whole backlog. */
	{ "max_bytes", XMPPD_OPT_INT, "1048576", 1024, 1L << 30 },
	{ NULL, 0, NULL, 0, 0 },
};

/* Set at load, read-only afterwards. */
static xmppd_ctx *module_ctx;
static int slot = -1;

/* One user's flush and the taking back of a late message exclude each
 * other; users are spread over the stripes by a hash of their key.
 * Recursive: a hook run while a flush writes could route a message that
 * comes back here on the same thread. */
static pthread_mutex_t stripes[NSTRIPES] = {
	[0 ... NSTRIPES - 1] = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP
};

/* Per session (its worker only). */
struct sess {
	int closed;             /* the session ended (possibly while we wrote) */
	int second_pass;        /* a pass is due once the presence is recorded */
};

/* ---------------------------------------------------------------- */
/* Keys.                                                              */

static size_t
user_prefix(char *buf, const char *host, const char *node)
{
	size_t n = xmppd_store_key(buf, KEY_MAX, host, node, (char *)NULL);

	return n == 0 || n + SEQ_LEN >= KEY_MAX ? 0 : n;
}

static void
put_seq(unsigned char *p, uint64_t seq)
{
	for (int i = SEQ_LEN - 1; i >= 0; i--, seq >>= 8)
		p[i] = (unsigned char)(seq & 0xff);
}

static uint64_t
get_seq(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < SEQ_LEN; i++)
		v = v << 8 | p[i];
	return v;
}

static pthread_mutex_t *
stripe_of(const char *prefix, size_t plen)
{
	uint32_t h = 2166136261u;       /* FNV-1a */

	for (size_t i = 0; i < plen; i++)
		h = (h ^ (unsigned char)prefix[i]) * 16777619u;
	return &stripes[h % NSTRIPES];
}

/* ---------------------------------------------------------------- */
/* Storing.                                                           */

enum worth { WORTH_STORING, NOT_WORTH, ASKED_NOT_TO };

/* XEP-0160 3 / XEP-0085: only a chat state (with its thread and hints) is
 * not worth keeping; XEP-0334 no-store asks us not to, store to keep it. */
static enum worth
worth(const xmppd_elem *st)
{
	enum worth w = NOT_WORTH;

	for (xmppd_elem *c = xmppd_elem_first_child(st); c != NULL;
	    c = xmppd_elem_next_sibling(c)) {
		const char *ns = xmppd_elem_ns(c), *name = xmppd_elem_name(c);

		if (ns != NULL && strcmp(ns, NS_HINTS) == 0) {
			if (strcmp(name, "no-store") == 0)
				return ASKED_NOT_TO;
			if (strcmp(name, "store") == 0)
				w = WORTH_STORING;
			continue;
		}
		if ((ns == NULL && strcmp(name, "thread") == 0) ||
		    (ns != NULL && strcmp(ns, NS_CHATSTATES) == 0))
			continue;
		w = WORTH_STORING;
	}
	return w;
}

/* XEP-0082 dateTime in UTC with milliseconds. */
static void
stamp_now(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char base[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03ldZ", base, ts.tv_nsec / 1000000);
}

/* A copy of st with our XEP-0203 delay; a delay in the sender's stanza
 * claiming to come from this server is a forgery and goes. */
static xmppd_elem *
stamped_copy(const xmppd_elem *st, const char *domain)
{
	xmppd_elem *copy = xmppd_elem_copy(st), *c, *next, *d;
	char stamp[64];

	if (copy == NULL)
		return NULL;
	for (c = xmppd_elem_first_child(copy); c != NULL; c = next) {
		const char *ns = xmppd_elem_ns(c), *from = xmppd_elem_attr(c, "from");

		next = xmppd_elem_next_sibling(c);
		if (ns != NULL && strcmp(ns, NS_DELAY) == 0 && strcmp(xmppd_elem_name(c), "delay") == 0 &&
		    from != NULL && strcmp(from, domain) == 0)
			xmppd_elem_remove_child(copy, c);
	}
	stamp_now(stamp, sizeof(stamp));
	d = xmppd_elem_add_child(copy, NS_DELAY, "delay");
	xmppd_elem_set_attr(d, "from", domain);
	xmppd_elem_set_attr(d, "stamp", stamp);
	xmppd_elem_add_text(d, "Offline Storage", strlen("Offline Storage"));
	return copy;
}

struct tally {
	size_t plen;
	uint64_t n, bytes, next;
};

static int
tally_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct tally *t = ud;
	uint64_t seq;

	if (klen != t->plen + SEQ_LEN)
		return 0;
	seq = get_seq((const unsigned char *)key + t->plen);
	t->n++;
	t->bytes += vlen;
	if (seq >= t->next)
		t->next = seq + 1;
	return 0;
}

/* 0 stored (committed) with its key in key/klen_r, 1 over quota, -1 error. */
static int
store_message(const char *prefix, size_t plen, const char *text, size_t len,
    char *key, size_t *klen_r)
{
	struct tally t = { plen, 0, 0, 0 };
	xmppd_txn *txn = xmppd_store_begin(1);

	if (txn == NULL)
		return -1;
	if (xmppd_store_scan(txn, TABLE, prefix, plen, tally_cb, &t) < 0)
		goto err;
	if (t.n + 1 > (uint64_t)xmppd_opt_int(module_ctx, "max_messages") ||
	    t.bytes + len > (uint64_t)xmppd_opt_int(module_ctx, "max_bytes")) {
		xmppd_store_abort(txn);
		return 1;
	}
	memcpy(key, prefix, plen);
	put_seq((unsigned char *)key + plen, t.next);
	*klen_r = plen + SEQ_LEN;
	if (xmppd_store_put(txn, TABLE, key, *klen_r, text, len) < 0)
		goto err;
	return xmppd_store_commit(txn) == 0 ? 0 : -1;
err:
	xmppd_store_abort(txn);
	return -1;
}

static void
nonneg_cb(const xmppd_elem *presence, void *ud)
{
	const char *s = xmppd_elem_child_text((xmppd_elem *)presence, NULL, "priority");
	char *end;
	long v = 0;

	/* As the core reads it (RFC 6121 4.7.2.3): bad values count as 0. */
	if (s != NULL) {
		v = strtol(s, &end, 10);
		if (end == s || v < -128 || v > 127)
			v = 0;
	}
	if (v >= 0)
		*(int *)ud = 1;
}

/*
 * The user may have become available between the core's look-up and our
 * commit, after that resource's flush: take the message back (unless a
 * flush got it meanwhile) and route it live.
 */
static void
catch_late(xmppd_elem *st, const char *node, const char *host, const char *key,
    size_t klen, const char *text, size_t len)
{
	xmppd_jid *bare = xmppd_jid_make(node, host, NULL);
	pthread_mutex_t *m = stripe_of(key, klen - SEQ_LEN);
	const void *val;
	size_t vlen;
	int online = 0, taken = 0;
	xmppd_txn *txn;

	if (bare == NULL)
		return;
	(void)xmppd_user_presences(bare, nonneg_cb, &online);
	xmppd_jid_free(bare);
	if (!online)
		return;
	pthread_mutex_lock(m);
	if ((txn = xmppd_store_begin(1)) != NULL) {
		/* Keys are reused once a queue empties: compare the text. */
		if (xmppd_store_get(txn, TABLE, key, klen, &val, &vlen) == 0 && vlen == len &&
		    memcmp(val, text, len) == 0 && xmppd_store_del(txn, TABLE, key, klen) == 0)
			taken = xmppd_store_commit(txn) == 0;
		else
			xmppd_store_abort(txn);
	}
	pthread_mutex_unlock(m);
	if (taken)
		xmppd_route(st);
}

static enum xmppd_result
offline_message(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	const char *kind = xmppd_stanza_kind(pa->stanza);
	const char *type = xmppd_elem_attr(pa->stanza, "type");
	const char *node, *host;
	char prefix[KEY_MAX], key[KEY_MAX], *text;
	size_t plen, len, klen = 0;
	xmppd_elem *copy;
	int r;

	if (kind == NULL || strcmp(kind, "message") != 0 || pa->to == NULL ||
	    (node = xmppd_jid_node(pa->to)) == NULL)
		return XMPPD_CONTINUE;
	host = xmppd_jid_domain(pa->to);
	/* RFC 6121 8.5.2.2.1: groupchat is bounced (by the core), headline
	 * and error are ignored; anything else is normal (5.2.2). */
	if (type != NULL && strcmp(type, "groupchat") == 0)
		return XMPPD_CONTINUE;
	if (type != NULL && (strcmp(type, "headline") == 0 || strcmp(type, "error") == 0))
		return XMPPD_DROP;
	switch (worth(pa->stanza)) {
	case NOT_WORTH:
		return XMPPD_DROP;
	case ASKED_NOT_TO:
		return XMPPD_CONTINUE;
	case WORTH_STORING:
		break;
	}
	if ((plen = user_prefix(prefix, host, node)) == 0)
		return XMPPD_CONTINUE;
	if ((copy = stamped_copy(pa->stanza, host)) == NULL)
		return XMPPD_CONTINUE;
	text = xmppd_elem_to_string(copy, &len);
	xmppd_elem_unref(copy);
	if (text == NULL)
		return XMPPD_CONTINUE;
	r = store_message(prefix, plen, text, len, key, &klen);
	if (r != 0) {
		/* CONTINUE: the core answers service-unavailable (XEP-0160 2
		 * for a full store; for a failed one the sender must not
		 * believe it was kept). */
		if (r < 0)
			xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s@%s: cannot store a message",
			    node, host);
		else
			xmppd_log(module_ctx, XMPPD_LOG_INFO, "%s@%s: offline store full", node,
			    host);
		free(text);
		return XMPPD_CONTINUE;
	}
	catch_late(pa->stanza, node, host, key, klen, text, len);
	free(text);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Delivery.                                                          */

struct item {
	uint64_t seq;
	char *text;
	size_t len;
};

struct collect {
	size_t plen;
	struct item *v;
	size_t n, cap;
	int failed;
};

static int
collect_cb(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct collect *c = ud;
	struct item *it;

	if (klen != c->plen + SEQ_LEN)
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct item *v = realloc(c->v, cap * sizeof(*v));

		if (v == NULL)
			goto fail;
		c->v = v;
		c->cap = cap;
	}
	it = &c->v[c->n];
	if ((it->text = malloc(vlen + 1)) == NULL)
		goto fail;
	memcpy(it->text, val, vlen);
	it->text[vlen] = '\0';
	it->len = vlen;
	it->seq = get_seq((const unsigned char *)key + c->plen);
	c->n++;
	return 0;
fail:
	/* Deliver what fits; the rest waits for the next login. */
	c->failed = 1;
	return 1;
}

/*
 * Sends the user's stored messages to s in order, then deletes those that
 * were written before the stream closed (deliver, then delete).
 */
static void
flush(xmppd_session *s, struct sess *ss)
{
	const xmppd_jid *j = xmppd_session_jid(s);
	const char *node = xmppd_jid_node(j), *host = xmppd_jid_domain(j);
	struct collect c = { 0, NULL, 0, 0, 0 };
	char key[KEY_MAX];
	size_t plen, usable, done = 0;
	pthread_mutex_t *m;
	xmppd_txn *txn;
	int deleted = 0;

	if (node == NULL || (plen = user_prefix(key, host, node)) == 0)
		return;
	c.plen = plen;
	m = stripe_of(key, plen);
	pthread_mutex_lock(m);
	if ((txn = xmppd_store_begin(0)) == NULL) {
		pthread_mutex_unlock(m);
		return;
	}
	usable = xmppd_store_scan(txn, TABLE, key, plen, collect_cb, &c) < 0 ? 0 : c.n;
	xmppd_store_abort(txn);
	if (c.failed)
		xmppd_log(module_ctx, XMPPD_LOG_WARNING, "%s@%s: out of memory reading the "
		    "offline messages; %zu now, the rest later", node, host, c.n);
	/* No store transaction is open while we write: a hook the writing
	 * runs (a stream closed on overflow runs session_closed) may well
	 * open one of its own. */
	for (; done < usable && !ss->closed; done++) {
		xmppd_elem *el = xmppd_elem_parse(c.v[done].text, c.v[done].len);
		struct xmppd_packet_args pa = { el, NULL, j, s };

		if (el == NULL) {
			xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s@%s: offline message %llu "
			    "unreadable, dropped", node, host, (unsigned long long)c.v[done].seq);
			continue;
		}
		/* Filters of delivered stanzas apply to stored ones too. */
		if (xmppd_hook_run(XMPPD_HOOK_USER_RECEIVE_PACKET, host, &pa) == XMPPD_CONTINUE)
			xmppd_session_send(s, el);
		xmppd_elem_unref(el);
	}
	/* Written (or closed while this one was queued): delete them all in
	 * one transaction. */
	if (done > 0 && (txn = xmppd_store_begin(1)) != NULL) {
		int bad = 0;

		for (size_t i = 0; i < done && !bad; i++) {
			put_seq((unsigned char *)key + plen, c.v[i].seq);
			bad = xmppd_store_del(txn, TABLE, key, plen + SEQ_LEN) < 0;
		}
		if (bad)
			xmppd_store_abort(txn);
		else
			deleted = xmppd_store_commit(txn) == 0;
	}
	if (done > 0 && !deleted)
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s@%s: cannot delete %zu delivered "
		    "offline messages; they will come again", node, host, done);
	pthread_mutex_unlock(m);
	for (size_t i = 0; i < c.n; i++)
		free(c.v[i].text);
	free(c.v);
}

/*
 * The user's own presence, before the core records it. XEP-0160 2 step 5:
 * the resource that next sends non-negative available presence gets the
 * messages: the initial presence, or an available resource whose priority
 * goes from negative to non-negative (it was not eligible before, RFC 6121
 * 8.5.2.1.1). A negative priority gets nothing.
 */
static enum xmppd_result
presence_out(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	xmppd_session *s = pa->session;
	struct sess *ss;

	if (s == NULL || xmppd_elem_attr(pa->stanza, "to") != NULL ||
	    xmppd_elem_attr(pa->stanza, "type") != NULL)
		return XMPPD_CONTINUE;
	if (xmppd_presence_priority(pa->stanza) < 0)
		return XMPPD_CONTINUE;
	if (xmppd_session_available(s) && xmppd_session_priority(s) >= 0)
		return XMPPD_CONTINUE;  /* eligible already: had them */
	if ((ss = xmppd_session_get(s, slot)) == NULL) {
		if ((ss = calloc(1, sizeof(*ss))) == NULL) {
			xmppd_log(module_ctx, XMPPD_LOG_ERROR, "out of memory");
			return XMPPD_CONTINUE;
		}
		xmppd_session_set(s, slot, ss, free);
	}
	if (ss->closed)
		return XMPPD_CONTINUE;
	flush(s, ss);
	if (ss->closed)
		return XMPPD_DROP;      /* nobody left to be available */
	/* Messages stored between our read and the core recording this
	 * presence would wait for the next login: look again just after. */
	ss->second_pass = 1;
	if (xmppd_timer_add(module_ctx, 0, second_pass, NULL) == NULL)
		xmppd_log(module_ctx, XMPPD_LOG_WARNING, "cannot schedule the second pass");
	return XMPPD_CONTINUE;
}

static void
second_pass_one(xmppd_session *s, void *ud)
{
	struct sess *ss = xmppd_session_get(s, slot);

	if (ss == NULL || !ss->second_pass)
		return;
	ss->second_pass = 0;
	if (!ss->closed && xmppd_session_available(s) && xmppd_session_priority(s) >= 0)
		flush(s, ss);
}

static uint64_t
second_pass(void *ud)
{
	xmppd_session_foreach_local(second_pass_one, NULL);
	return 0;
}

static enum xmppd_result
session_closed(void *args, void *ud)
{
	struct xmppd_session_args *sa = args;
	struct sess *ss = xmppd_session_get(sa->session, slot);

	if (ss != NULL)
		ss->closed = 1;
	return XMPPD_CONTINUE;
}

/* ---------------------------------------------------------------- */

static int
load(xmppd_ctx *ctx)
{
	module_ctx = ctx;
	if ((slot = xmppd_session_slot(ctx)) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "no session slot left");
		return -1;
	}
	/* Late in presence_out, so that a module refusing the presence has
	 * had its say before the messages go out. */
	if (xmppd_hook_add(ctx, XMPPD_HOOK_OFFLINE_MESSAGE, NULL, 50, offline_message, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_PRESENCE_OUT, NULL, 80, presence_out, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_SM_SESSION_CLOSED, NULL, 50, session_closed, NULL) < 0 ||
	    xmppd_store_user_table(ctx, TABLE) < 0 ||
	    xmppd_disco_feature(ctx, FEATURE) < 0)
		return -1;
	return 0;
}

/* Options are read where they are used: nothing to redo. */
static int
reload(xmppd_ctx *ctx)
{
	return 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_offline",
	.version = "1.0",
	.options = options,
	.load = load,
	.reload = reload,
};
