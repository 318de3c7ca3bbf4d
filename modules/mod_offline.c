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
 *    anything besides chat states (XEP-0085), <thread/>, processing
 *    hints (XEP-0334) and XEP-0359 ids: a standalone chat state is
 *    dropped silently (XEP-0160 3 "SHOULD NOT be stored", XEP-0085 "MAY
 *    refuse to deliver standalone notifications"); a body with a chat
 *    state, a receipt (XEP-0184), a marker (XEP-0333) or any other
 *    payload is stored;
 *  - <no-store xmlns='urn:xmpp:hints'/>: not stored, so the core answers
 *    service-unavailable (RFC 6121 8.5.2.2.1: store or bounce), except a
 *    standalone chat state, dropped silently as without the hint;
 *    <store/> makes even a lone chat state worth storing;
 *    <no-permanent-store/> is stored (XEP-0334 3.3, 4.1: only archives
 *    and logs are ruled out);
 *  - groupchat: left to the core, which bounces it; headline and error:
 *    dropped (the core does not even ask for those).
 * Quota: max_messages and max_bytes (the stored text) per user; a full
 * store answers <service-unavailable/> as XEP-0160 2 step 3 says (ejabberd
 * uses resource-constraint; the XEP's word is followed here).
 *
 * The store is used through the asynchronous API (ABI 1.2).
 *
 * Storing: offline_message takes the message (STOP) and submits one batch:
 * a scan of the user's range counts the quota and finds the next number, a
 * step after it appends the put or, over quota, fails the batch. Its done
 * callback bounces the message with <service-unavailable/> if the batch
 * failed (full, or the store failed: the sender must not believe it was
 * kept). The sender's stream handles its next stanza only once the batch
 * has completed, so what follows a message on that stream comes after it
 * is durable (and survives kill -9).
 *
 * Delivery is "deliver, then delete": the presence starts a read of the
 * user's range; its rows are written to the session (through the
 * user_receive_packet hook, as live stanzas are), then those written are
 * deleted in one batch; a crash in between gives a duplicate at the next
 * login, never a loss. "Delivered" means queued on the client's stream: if
 * the stream is closed while they are written (its send queue
 * overflowing), only the messages queued before that are deleted. Live
 * messages that reach the session while its stored ones are being read
 * are held back and written after them, so that stored messages come
 * before later live ones (RFC 6120 10.1). The presence itself is recorded
 * (and echoed to the client, RFC 6121 4.2.2) at once, before the stored
 * messages arrive.
 *
 * Races handled: a claim per user (module-wide, in memory) makes a read,
 * its writes and its delete exclude any other delivery to the user, so
 * concurrent logins of one user take the messages once (the one that
 * finds the claim taken tries again shortly). The read runs after the
 * presence is recorded, so a message the core routes from then on goes
 * live; one routed before but stored after the read is taken back (under
 * the claim) by its sender's worker once stored and routed live. Such a
 * late message may arrive after newer live ones.
 */
#define _GNU_SOURCE             /* tdestroy */
#include <pthread.h>
#include <search.h>
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
#define NS_SID "urn:xmpp:sid:0"        /* XEP-0359: origin-id, stanza-id */
#define FEATURE "msgoffline"    /* XEP-0160 5 */
/* A delivery or a late message that finds the user's claim taken tries
 * again this often, and gives up after CLAIM_GIVE_UP_MS. */
#define CLAIM_RETRY_MS 10
#define CLAIM_GIVE_UP_MS 60000

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

/* ---------------------------------------------------------------- */
/* Claims.                                                            */

/*
 * A user's claim: held by a delivery from its read until its delete has
 * completed, or by the taking back of a late message, so that no message
 * is written twice. Module-wide (a user's sessions, and the senders of his
 * messages, are on any worker): the bare JIDs claimed, under claim_lock.
 */
static pthread_mutex_t claim_lock = PTHREAD_MUTEX_INITIALIZER;
static void *claims;

static int
claim_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* 1 taken, 0 another has it, -1 no memory. */
static int
claim_take(const char *bare)
{
	char *c;
	int r = 1;

	pthread_mutex_lock(&claim_lock);
	if (tfind(bare, &claims, claim_cmp) != NULL)
		r = 0;
	else if ((c = strdup(bare)) == NULL)
		r = -1;
	else if (tsearch(c, &claims, claim_cmp) == NULL) {
		free(c);
		r = -1;
	}
	pthread_mutex_unlock(&claim_lock);
	return r;
}

static void
claim_release(const char *bare)
{
	void *found;
	char *c;

	pthread_mutex_lock(&claim_lock);
	if ((found = tfind(bare, &claims, claim_cmp)) != NULL) {
		c = *(char **)found;
		tdelete(bare, &claims, claim_cmp);
		free(c);
	}
	pthread_mutex_unlock(&claim_lock);
}

/* For xmppd_user_presences: is one of the user's resources eligible
 * (RFC 6121 8.5.2.1.1: a non-negative priority)? */
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

/* ---------------------------------------------------------------- */
/* Storing.                                                           */

enum worth { WORTH_STORING, NOT_WORTH, ASKED_NOT_TO };

/*
 * XEP-0160 3 / XEP-0085 5.6: a standalone chat state (a chat state with
 * nothing but its thread, hints and XEP-0359 ids) is not worth keeping;
 * a chat state next to a body, or to any other payload (a XEP-0184
 * receipt, a XEP-0333 marker: state the sender's other devices and the
 * archive keep too), does not make the message less worth storing.
 * XEP-0334 4.2 no-store asks us not to store it: bounced like any
 * message not stored (RFC 6121 8.5.2.2.1), but a standalone chat state
 * with no-store goes silently, as it would without the hint; 4.4 store
 * makes even a standalone chat state worth it; 4.1 no-permanent-store
 * forbids archives and logs, not storage "as a normal part of delivery
 * (e.g. if the recipient is offline at the time of sending)" (3.3), so
 * it changes nothing here (it is MAM's).
 */
static enum worth
worth(const xmppd_elem *st)
{
	int payload = 0, no_store = 0, store = 0;

	for (xmppd_elem *c = xmppd_elem_first_child(st); c != NULL;
	    c = xmppd_elem_next_sibling(c)) {
		const char *ns = xmppd_elem_ns(c), *name = xmppd_elem_name(c);

		if (ns != NULL && strcmp(ns, NS_HINTS) == 0) {
			if (strcmp(name, "no-store") == 0)
				no_store = 1;
			else if (strcmp(name, "store") == 0)
				store = 1;
			continue;
		}
		if ((ns == NULL && strcmp(name, "thread") == 0) ||
		    (ns != NULL && (strcmp(ns, NS_CHATSTATES) == 0 || strcmp(ns, NS_SID) == 0)))
			continue;
		payload = 1;
	}
	if (no_store)
		return payload ? ASKED_NOT_TO : NOT_WORTH;
	return payload || store ? WORTH_STORING : NOT_WORTH;
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

/*
 * A message being stored: the message (a reference: the bounce, or the
 * taking back, comes from the batch's done callback), its text, and what
 * the batch's steps find.
 */
struct job {
	struct job *next;           /* in late_list */
	xmppd_elem *st;
	xmppd_jid *user;            /* the recipient's bare JID */
	char *text;
	size_t len;
	char key[KEY_MAX];          /* the user's prefix, then the message's key */
	size_t plen, klen;
	uint64_t n, bytes, next_seq;        /* the user's messages, and one past the last */
	uint64_t max_messages, max_bytes;
	int full;                   /* a step refused it: over quota */
	int taken;                  /* taken back */
	uint64_t since;             /* waiting for the user's claim since */
};

/* Late messages waiting for their user's claim (under claim_lock). */
static struct job *late_list;

static void
job_free(struct job *j)
{
	xmppd_elem_unref(j->st);
	xmppd_jid_free(j->user);
	free(j->text);
	free(j);
}

/* Step: every message the user has (the scan comes first). */
static int
tally_row(xmppd_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
    void *ud)
{
	struct job *j = ud;
	uint64_t seq;

	if (klen != j->plen + SEQ_LEN)
		return 0;
	seq = get_seq((const unsigned char *)key + j->plen);
	j->n++;
	j->bytes += vlen;
	if (seq >= j->next_seq)
		j->next_seq = seq + 1;
	return 0;
}

/* Step, after the scan: the quota (XEP-0160 2), then the put, appended
 * under the next number. */
static int
place(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	struct job *j = ud;

	if (j->n + 1 > j->max_messages || j->bytes + j->len > j->max_bytes) {
		j->full = 1;
		return -1;
	}
	put_seq((unsigned char *)j->key + j->plen, j->next_seq);
	j->klen = j->plen + SEQ_LEN;
	return xmppd_batch_put(b, TABLE, j->key, j->klen, j->text, j->len) < 0 ? -1 : 0;
}

/* Step: the message is still there (keys are reused once a queue
 * empties: compare the text), so it is taken. */
static int
take_back(xmppd_batch *b, int status, const void *val, size_t vlen, void *ud)
{
	struct job *j = ud;

	if (status != XMPPD_STORE_OK || vlen != j->len || memcmp(val, j->text, vlen) != 0)
		return 0;
	if (xmppd_batch_del(b, TABLE, j->key, j->klen) < 0)
		return -1;
	j->taken = 1;
	return 0;
}

static void
taken_back(int status, void *ud)
{
	struct job *j = ud;

	claim_release(xmppd_jid_bare(j->user));
	/* It passed filter_packet when it first came: not again (an
	 * archive, carbons and push have seen it). */
	if (status == XMPPD_STORE_OK && j->taken)
		xmppd_route_filtered(j->st);
	else if (status != XMPPD_STORE_OK)
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: cannot take back a late message; it "
		    "waits for the next login", xmppd_jid_bare(j->user));
	job_free(j);
}

/* 1: the user's claim is another's, try again; 0: done with j (taken
 * back, or left for the next login). */
static int
late_try(struct job *j)
{
	const char *bare = xmppd_jid_bare(j->user);
	xmppd_batch *b = NULL;
	int r = claim_take(bare);

	if (r == 0)
		return 1;
	if (r < 0 || (b = xmppd_batch_new(module_ctx)) == NULL) {
		if (r > 0)
			claim_release(bare);
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: out of memory taking back a late "
		    "message; it waits for the next login", bare);
		job_free(j);
		return 0;
	}
	(void)xmppd_batch_get(b, TABLE, j->key, j->klen, take_back, j);
	if (xmppd_batch_submit(b, taken_back, j) < 0) {
		claim_release(bare);
		job_free(j);
	}
	return 0;
}

static void
late_unlist(struct job *j)
{
	pthread_mutex_lock(&claim_lock);
	for (struct job **pp = &late_list; *pp != NULL; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	pthread_mutex_unlock(&claim_lock);
}

static void
late_list_add(struct job *j)
{
	pthread_mutex_lock(&claim_lock);
	j->next = late_list;
	late_list = j;
	pthread_mutex_unlock(&claim_lock);
}

/* Is the user still available, and is the claim free now? */
static uint64_t
late_retry(void *ud)
{
	struct job *j = ud;
	int online = 0;

	late_unlist(j);
	(void)xmppd_user_presences(j->user, nonneg_cb, &online);
	if (!online || xmppd_now_ms() - j->since > CLAIM_GIVE_UP_MS) {
		if (online)
			xmppd_log(module_ctx, XMPPD_LOG_WARNING, "%s: a late message waits for "
			    "the next login (the user's messages stayed claimed)",
			    xmppd_jid_bare(j->user));
		job_free(j);
		return 0;
	}
	if (late_try(j) == 0)
		return 0;
	late_list_add(j);
	return CLAIM_RETRY_MS;
}

/*
 * Stored. The user may have become available between the core's look-up
 * and the store's commit, after that resource's delivery read the store:
 * take the message back (unless a delivery got it meanwhile) and route it
 * live.
 */
static void
late_check(struct job *j)
{
	int online = 0;

	(void)xmppd_user_presences(j->user, nonneg_cb, &online);
	if (!online) {
		job_free(j);
		return;
	}
	if (late_try(j) == 0)
		return;
	j->since = xmppd_now_ms();
	late_list_add(j);
	if (xmppd_timer_add(module_ctx, CLAIM_RETRY_MS, late_retry, j) == NULL) {
		late_unlist(j);
		xmppd_log(module_ctx, XMPPD_LOG_WARNING, "%s: cannot schedule taking back a late "
		    "message; it waits for the next login", xmppd_jid_bare(j->user));
		job_free(j);
	}
}

static void
stored(int status, void *ud)
{
	struct job *j = ud;

	if (status == XMPPD_STORE_OK) {
		late_check(j);
		return;
	}
	if (status == XMPPD_STORE_ABORTED && j->full)
		xmppd_log(module_ctx, XMPPD_LOG_INFO, "%s: offline store full",
		    xmppd_jid_bare(j->user));
	else
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: cannot store a message",
		    xmppd_jid_bare(j->user));
	/* XEP-0160 2 step 3 for a full store; for a failed one, RFC 6121
	 * 8.5.2.2.1 (store or bounce): the sender must not believe it was
	 * kept. */
	xmppd_bounce(j->st, "service-unavailable", NULL);
	job_free(j);
}

static enum xmppd_result
offline_message(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	const char *kind = xmppd_stanza_kind(pa->stanza);
	const char *type = xmppd_elem_attr(pa->stanza, "type");
	const char *node, *host;
	xmppd_elem *copy;
	xmppd_batch *b;
	struct job *j;

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
	/* Whatever fails before the batch is submitted: CONTINUE, and the
	 * core answers service-unavailable. */
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return XMPPD_CONTINUE;
	if ((j->plen = user_prefix(j->key, host, node)) == 0 ||
	    (j->user = xmppd_jid_make(node, host, NULL)) == NULL ||
	    (copy = stamped_copy(pa->stanza, host)) == NULL) {
		job_free(j);
		return XMPPD_CONTINUE;
	}
	j->text = xmppd_elem_to_string(copy, &j->len);
	xmppd_elem_unref(copy);
	if (j->text == NULL || (b = xmppd_batch_new(module_ctx)) == NULL) {
		job_free(j);
		return XMPPD_CONTINUE;
	}
	j->max_messages = (uint64_t)xmppd_opt_int(module_ctx, "max_messages");
	j->max_bytes = (uint64_t)xmppd_opt_int(module_ctx, "max_bytes");
	/* One batch: the scan counts (its steps), then a get of the prefix
	 * itself, which no message has as its key, runs place after it. */
	(void)xmppd_batch_scan(b, TABLE, j->key, j->plen, tally_row, j);
	(void)xmppd_batch_get(b, TABLE, j->key, j->plen, place, j);
	j->st = xmppd_elem_ref(pa->stanza);
	if (xmppd_batch_submit(b, stored, j) < 0) {
		job_free(j);
		return XMPPD_CONTINUE;
	}
	return XMPPD_STOP;          /* taken: stored, or bounced from stored() */
}

/* ---------------------------------------------------------------- */
/* Delivery.                                                          */

/* A live message held back while the stored ones are read. */
struct held {
	struct held *next;
	xmppd_elem *st;
};

/*
 * Per session (its worker only). The slot holds a reference, and so does
 * a delivery in flight. A delivery's callbacks reach the session through
 * session, which the slot's free function clears: the core frees the slot
 * when the session ends, before the session goes (and on unload), so the
 * pointer is never used after the session has gone.
 */
struct sess {
	unsigned refs;
	xmppd_session *session;     /* NULL once the slot is freed */
	int closed;                 /* the session ended (possibly while we wrote) */
	int delivering;             /* from the presence until the stored ones are written */
	int waiting;                /* delivering, and the user's claim is another's */
	int writing;                /* our own writes pass user_receive_packet */
	uint64_t waiting_since;
	struct held *held, **held_tail;
};

/* A delivery in flight: the read of the user's range, then the delete of
 * what was written. It holds the user's claim. */
struct delivery {
	struct sess *ss;            /* a reference */
	char *bare;
	char key[KEY_MAX];          /* the user's prefix, then a message's key */
	size_t plen;
	uint64_t *seqs;             /* written (or unreadable): deleted after */
	size_t n, cap;
	int stopped;                /* out of memory: the rest waits */
};

static void
sess_unref(struct sess *ss)
{
	if (--ss->refs == 0)
		free(ss);
}

/*
 * The stored messages are written (or will not be): the live ones held
 * back meanwhile follow them. If the session went meanwhile, they are
 * routed again, as the core does with a message whose session went
 * (RFC 6121 8.5.3.2: to the resources left, or to offline storage).
 */
static void
delivery_end(struct sess *ss)
{
	struct held *h;

	ss->delivering = 0;
	while ((h = ss->held) != NULL) {
		ss->held = h->next;
		if (ss->session != NULL && !ss->closed)
			xmppd_session_send(ss->session, h->st);
		else
			xmppd_route_filtered(h->st);   /* filtered once already */
		xmppd_elem_unref(h->st);
		free(h);
	}
	ss->held_tail = &ss->held;
}

/* The session ended, or the module is unloading. */
static void
sess_slot_free(void *p)
{
	struct sess *ss = p;

	ss->session = NULL;
	ss->closed = 1;
	if (ss->waiting) {
		ss->waiting = 0;
		delivery_end(ss);
	}
	sess_unref(ss);
}

static struct sess *
sess_get(xmppd_session *s)
{
	struct sess *ss = xmppd_session_get(s, slot);

	if (ss == NULL && (ss = calloc(1, sizeof(*ss))) != NULL) {
		ss->refs = 1;
		ss->session = s;
		ss->held_tail = &ss->held;
		xmppd_session_set(s, slot, ss, sess_slot_free);
	}
	return ss;
}

static void
delivery_free(struct delivery *d)
{
	claim_release(d->bare);
	sess_unref(d->ss);
	free(d->bare);
	free(d->seqs);
	free(d);
}

/* A row of the read: written to the session, in order. */
static int
deliver_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct delivery *d = ud;
	struct sess *ss = d->ss;
	xmppd_session *s = ss->session;
	const xmppd_jid *j;
	xmppd_elem *el;

	if (klen != d->plen + SEQ_LEN)
		return 0;
	if (s == NULL || ss->closed)
		return 1;               /* the rest waits for the next login */
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		uint64_t *v = realloc(d->seqs, cap * sizeof(*v));

		if (v == NULL) {
			d->stopped = 1;
			return 1;
		}
		d->seqs = v;
		d->cap = cap;
	}
	d->seqs[d->n++] = get_seq((const unsigned char *)key + d->plen);
	if ((el = xmppd_elem_parse(val, vlen)) == NULL) {
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: offline message %llu unreadable, "
		    "dropped", d->bare, (unsigned long long)d->seqs[d->n - 1]);
		return 0;
	}
	j = xmppd_session_jid(s);
	{
		struct xmppd_packet_args pa = { el, NULL, j, s };

		/* Filters of delivered stanzas apply to stored ones too. */
		ss->writing = 1;
		if (xmppd_hook_run(XMPPD_HOOK_USER_RECEIVE_PACKET, xmppd_jid_domain(j), &pa) ==
		    XMPPD_CONTINUE)
			xmppd_session_send(s, el);
		ss->writing = 0;
	}
	xmppd_elem_unref(el);
	return 0;
}

static void
deleted(int status, void *ud)
{
	struct delivery *d = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: cannot delete %zu delivered "
		    "offline messages; they will come again", d->bare, d->n);
	delivery_free(d);
}

/* The read has completed, its rows written: the held live messages
 * follow, then what was written is deleted, in one batch. */
static void
read_done(int status, void *ud)
{
	struct delivery *d = ud;
	xmppd_batch *b;

	if (status != XMPPD_STORE_OK)
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: cannot read the offline messages",
		    d->bare);
	else if (d->stopped)
		xmppd_log(module_ctx, XMPPD_LOG_WARNING, "%s: out of memory delivering the "
		    "offline messages; %zu now, the rest later", d->bare, d->n);
	delivery_end(d->ss);
	if (d->n == 0) {
		delivery_free(d);
		return;
	}
	if ((b = xmppd_batch_new(module_ctx)) == NULL) {
		deleted(XMPPD_STORE_ERROR, d);
		return;
	}
	for (size_t i = 0; i < d->n; i++) {
		put_seq((unsigned char *)d->key + d->plen, d->seqs[i]);
		(void)xmppd_batch_del(b, TABLE, d->key, d->plen + SEQ_LEN);
	}
	if (xmppd_batch_submit(b, deleted, d) < 0)
		deleted(XMPPD_STORE_ERROR, d);
}

/* Starts the delivery to ss (delivering, its session there). 1: the
 * user's claim is another's, try again later; 0: started, or given up. */
static int
delivery_try(struct sess *ss)
{
	const xmppd_jid *j = xmppd_session_jid(ss->session);
	const char *node = xmppd_jid_node(j), *bare = xmppd_jid_bare(j);
	struct delivery *d = NULL;
	int r;

	if (node == NULL) {
		delivery_end(ss);
		return 0;
	}
	if ((r = claim_take(bare)) == 0)
		return 1;
	if (r < 0 || (d = calloc(1, sizeof(*d))) == NULL || (d->bare = strdup(bare)) == NULL ||
	    (d->plen = user_prefix(d->key, xmppd_jid_domain(j), node)) == 0) {
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "%s: cannot deliver the offline "
		    "messages now", bare);
		if (r > 0)
			claim_release(bare);
		if (d != NULL)
			free(d->bare);
		free(d);
		delivery_end(ss);
		return 0;
	}
	d->ss = ss;
	ss->refs++;
	if (xmppd_store_ascan(module_ctx, TABLE, d->key, d->plen, deliver_row, read_done, d) < 0) {
		delivery_free(d);
		delivery_end(ss);
	}
	return 0;
}

/* Sessions waiting for their user's claim (another resource's delivery)
 * try again; one that is no longer eligible gives up. */
static void
wait_one(xmppd_session *s, void *ud)
{
	struct sess *ss = xmppd_session_get(s, slot);

	if (ss == NULL || !ss->waiting)
		return;
	if (!xmppd_session_available(s) || xmppd_session_priority(s) < 0 ||
	    xmppd_now_ms() - ss->waiting_since > CLAIM_GIVE_UP_MS) {
		ss->waiting = 0;
		delivery_end(ss);
		return;
	}
	if (delivery_try(ss) == 0)
		ss->waiting = 0;
	else
		(*(unsigned *)ud)++;
}

static uint64_t
wait_sweep(void *ud)
{
	unsigned left = 0;

	xmppd_session_foreach_local(wait_one, &left);
	return left > 0 ? CLAIM_RETRY_MS : 0;
}

/*
 * The user's own presence, before the core records it. XEP-0160 2 step 5:
 * the resource that next sends non-negative available presence gets the
 * messages: the initial presence, or an available resource whose priority
 * goes from negative to non-negative (it was not eligible before, RFC 6121
 * 8.5.2.1.1). A negative priority gets nothing. The read starts now and
 * completes after the presence is recorded.
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
	if ((ss = sess_get(s)) == NULL) {
		xmppd_log(module_ctx, XMPPD_LOG_ERROR, "out of memory");
		return XMPPD_CONTINUE;
	}
	if (ss->closed || ss->delivering)
		return XMPPD_CONTINUE;
	ss->delivering = 1;
	if (delivery_try(ss) == 0)
		return XMPPD_CONTINUE;
	ss->waiting = 1;
	ss->waiting_since = xmppd_now_ms();
	if (xmppd_timer_add(module_ctx, CLAIM_RETRY_MS, wait_sweep, NULL) == NULL) {
		xmppd_log(module_ctx, XMPPD_LOG_WARNING, "%s: cannot schedule the delivery of "
		    "the offline messages", xmppd_jid_bare(xmppd_session_jid(s)));
		ss->waiting = 0;
		delivery_end(ss);
	}
	return XMPPD_CONTINUE;
}

/*
 * A live message to a session whose stored messages are still being read
 * waits for them (RFC 6120 10.1: it was sent after them). Last in the
 * hook, so that every filter has had its say: what is held back is what
 * would have been written.
 */
static enum xmppd_result
hold_live(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	const char *kind;
	struct sess *ss;
	struct held *h;

	if (pa->session == NULL || (ss = xmppd_session_get(pa->session, slot)) == NULL ||
	    !ss->delivering || ss->writing)
		return XMPPD_CONTINUE;
	kind = xmppd_stanza_kind(pa->stanza);
	if (kind == NULL || strcmp(kind, "message") != 0)
		return XMPPD_CONTINUE;
	if ((h = malloc(sizeof(*h))) == NULL)
		return XMPPD_CONTINUE;  /* out of order rather than lost */
	h->next = NULL;
	h->st = xmppd_elem_ref(pa->stanza);
	*ss->held_tail = h;
	ss->held_tail = &h->next;
	return XMPPD_STOP;
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
	 * had its say before the messages go out; last in
	 * user_receive_packet (hold_live). */
	if (xmppd_hook_add(ctx, XMPPD_HOOK_OFFLINE_MESSAGE, NULL, 50, offline_message, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_PRESENCE_OUT, NULL, 80, presence_out, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_USER_RECEIVE_PACKET, NULL, 1000, hold_live, NULL) < 0 ||
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

/* The store work has completed (the loader waited for it), so no claim
 * is held; the slots were freed and the timers removed: what waited for
 * a claim goes (it stays stored for the next login). */
static void
unload(xmppd_ctx *ctx)
{
	struct job *j;

	while ((j = late_list) != NULL) {
		late_list = j->next;
		job_free(j);
	}
	tdestroy(claims, free);
	claims = NULL;
	slot = -1;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.2: the asynchronous store */
	.name = "mod_offline",
	.version = "1.0",
	.options = options,
	.load = load,
	.reload = reload,
	.unload = unload,
};
