/*
 * mod_last - XEP-0012: Last Activity.
 *
 * To the server: its uptime (XEP-0012 5). To an account's bare JID
 * (XEP-0012 4, answered by the server on the user's behalf): an empty
 * query with seconds='0' if the account has an available resource, else
 * the seconds since the user's last unavailable presence, with that
 * presence's status as its text.
 *
 * Who may ask (XEP-0012 4 and 8: only those allowed to see the user's
 * presence): the user's own resources, and contacts with a subscription
 * to the user's presence (RFC 6121 2.1.2.5: subscription from or both),
 * learnt from the roster module through the roster query (ABI 1.4).
 * Anyone else, and everyone but the user when no module provides
 * rosters, gets <forbidden/>.
 *
 * What is kept: per account, in the table mod_last, the time of the last
 * unavailable presence and its status ("SECONDS\nSTATUS"): written when
 * an available resource sends unavailable presence, and when a session
 * that is still available ends (the server's unavailable presence on its
 * behalf, RFC 6121 4.5.3, which has no status); per session, in a slot,
 * whether it is counted as available; module-wide, under a mutex, how many
 * available sessions each bare JID has.
 *
 * The store is used through the asynchronous API (ABI 1.2): a record is
 * one batch; a query is answered from its read's callback (a deferred
 * reply), after the roster query's answer.
 */
#define _GNU_SOURCE     /* asprintf, tdestroy */

#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmppd.h>

#define NS_LAST "jabber:iq:last"
#define TABLE "mod_last"
/* A status is the user's text; this much of it is kept. */
#define MAX_STATUS 1024

struct sess {
	int counted;            /* counted in the online table */
};

struct online {
	char *bare;
	unsigned n;             /* available sessions */
};

static int slot = -1;
static pthread_mutex_t online_lock = PTHREAD_MUTEX_INITIALIZER;
static void *online_root;

/* ---------------------------------------------------------------- */
/* Who is online (module-wide, guarded by online_lock).               */

static int
online_cmp(const void *a, const void *b)
{
	return strcmp(((const struct online *)a)->bare, ((const struct online *)b)->bare);
}

static void
online_free(void *p)
{
	struct online *o = p;

	free(o->bare);
	free(o);
}

/* Adds delta (+1 or -1) to bare's count. */
static void
online_add(const char *bare, int delta)
{
	struct online key = { (char *)bare, 0 }, *o, **found;

	pthread_mutex_lock(&online_lock);
	found = tfind(&key, &online_root, online_cmp);
	if (found != NULL) {
		o = *found;
		if (delta > 0)
			o->n++;
		else if (o->n > 0 && --o->n == 0) {
			tdelete(o, &online_root, online_cmp);
			online_free(o);
		}
	} else if (delta > 0 && (o = calloc(1, sizeof(*o))) != NULL) {
		if ((o->bare = strdup(bare)) == NULL ||
		    tsearch(o, &online_root, online_cmp) == NULL)
			online_free(o);
		else
			o->n = 1;
	}
	pthread_mutex_unlock(&online_lock);
}

static int
online_is(const char *bare)
{
	struct online key = { (char *)bare, 0 };
	int r;

	pthread_mutex_lock(&online_lock);
	r = tfind(&key, &online_root, online_cmp) != NULL;
	pthread_mutex_unlock(&online_lock);
	return r;
}

/* ---------------------------------------------------------------- */
/* Sessions.                                                          */

static void
sess_free(void *p)
{
	free(p);
}

static struct sess *
sess_get(xmppd_session *session)
{
	struct sess *s = xmppd_session_get(session, slot);

	if (s == NULL && (s = calloc(1, sizeof(*s))) != NULL)
		xmppd_session_set(session, slot, s, sess_free);
	return s;
}

static void
set_counted(xmppd_session *session, struct sess *s, int available)
{
	const char *bare = xmppd_jid_bare(xmppd_session_jid(session));

	if (available != s->counted) {
		online_add(bare, available ? 1 : -1);
		s->counted = available;
	}
}

/* A copy of at most MAX_STATUS bytes of text, cut at a character. */
static char *
status_dup(const char *text)
{
	size_t n = strlen(text);
	char *s;

	if (n > MAX_STATUS) {
		n = MAX_STATUS;
		while (n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
			n--;
	}
	if ((s = malloc(n + 1)) == NULL)
		return NULL;
	memcpy(s, text, n);
	s[n] = '\0';
	return s;
}

static size_t
user_key(char *buf, size_t size, const char *node, const char *host)
{
	return xmppd_store_key(buf, size, host, node, (const char *)NULL);
}

/* A record being written: for the log, if it fails. */
struct record {
	xmppd_ctx *ctx;
	char bare[];
};

static void
record_stored(int status, void *ud)
{
	struct record *l = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(l->ctx, XMPPD_LOG_ERROR, "cannot store the last activity of %s", l->bare);
	free(l);
}

/* XEP-0012 4: the user's unavailable presence now, with its status. */
static void
record_last(xmppd_ctx *ctx, const xmppd_jid *jid, const char *status)
{
	const char *bare = xmppd_jid_bare(jid);
	struct record *l = NULL;
	xmppd_batch *b = NULL;
	char key[512], *val = NULL, *text;
	size_t klen;
	int n;

	/* A removed account's sessions end after remove_user ran: write
	 * nothing for it then. */
	if (!xmppd_user_exists(xmppd_jid_node(jid), xmppd_jid_domain(jid)))
		return;
	if ((text = status_dup(status)) == NULL) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot store the last activity of %s", bare);
		return;
	}
	klen = user_key(key, sizeof(key), xmppd_jid_node(jid), xmppd_jid_domain(jid));
	n = klen == 0 ? -1 : asprintf(&val, "%lld\n%s", (long long)time(NULL), text);
	free(text);
	if (n < 0 || (l = malloc(sizeof(*l) + strlen(bare) + 1)) == NULL ||
	    (b = xmppd_batch_new(ctx)) == NULL) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot store the last activity of %s", bare);
		free(l);
		if (n >= 0)
			free(val);
		return;
	}
	l->ctx = ctx;
	strcpy(l->bare, bare);
	/* The batch copies the value; a failed put fails it (done says why). */
	(void)xmppd_batch_put(b, TABLE, key, klen, val, (size_t)n);
	free(val);
	if (xmppd_batch_submit(b, record_stored, l) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot store the last activity of %s", bare);
		free(l);
	}
}

/* The user's own presence (no 'to', RFC 6121 4.2, 4.4, 4.5): availability,
 * and XEP-0012 4: the time and status of an unavailable one from an
 * available resource (the one the contacts see). */
static enum xmppd_result
presence_out(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	const char *type = xmppd_elem_attr(pa->stanza, "type");
	const char *status;
	struct sess *s;

	if (pa->session == NULL || xmppd_elem_attr(pa->stanza, "to") != NULL)
		return XMPPD_CONTINUE;
	if (type != NULL && strcmp(type, "unavailable") != 0)
		return XMPPD_CONTINUE;
	if ((s = sess_get(pa->session)) == NULL)
		return XMPPD_CONTINUE;
	if (type == NULL) {
		set_counted(pa->session, s, 1);
		return XMPPD_CONTINUE;
	}
	if (s->counted) {
		status = xmppd_elem_child_text(pa->stanza, NULL, "status");
		record_last(ud, xmppd_session_jid(pa->session), status != NULL ? status : "");
	}
	set_counted(pa->session, s, 0);
	return XMPPD_CONTINUE;
}

/* A session that ends while available: the server sends unavailable
 * presence for it (RFC 6121 4.5.3), without a status. */
static enum xmppd_result
session_closed(void *args, void *ud)
{
	xmppd_session *session = ((struct xmppd_session_args *)args)->session;
	struct sess *s = xmppd_session_get(session, slot);

	if (s == NULL || !s->counted)
		return XMPPD_CONTINUE;
	set_counted(session, s, 0);
	record_last(ud, xmppd_session_jid(session), "");
	return XMPPD_CONTINUE;
}

/* Loading at run time: count the sessions that were available before
 * (one run on every worker, over its own sessions). */
static void
seed_one(xmppd_session *session, void *ud)
{
	struct sess *s;

	if (xmppd_session_get(session, slot) != NULL)
		return;         /* a hook has seen it since load */
	if ((s = sess_get(session)) != NULL)
		set_counted(session, s, xmppd_session_available(session) != 0);
}

static uint64_t
seed(void *ud)
{
	xmppd_session_foreach_local(seed_one, ud);
	return 0;
}

/* ---------------------------------------------------------------- */
/* The query.                                                         */

static void
reply_seconds(xmppd_elem *iq, long long seconds, const char *status)
{
	xmppd_elem *q = xmppd_elem_new(NS_LAST, "query");
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", seconds < 0 ? 0 : seconds);
	xmppd_elem_set_attr(q, "seconds", buf);
	if (status != NULL && *status != '\0')
		xmppd_elem_add_text(q, status, strlen(status));
	xmppd_iq_reply(iq, q);
}

/* The record's read has completed: the deferred reply. */
static void
last_got(int status, const void *val, size_t vlen, void *ud)
{
	xmppd_elem *iq = ud;
	char *text, *nl;

	if (status != XMPPD_STORE_OK) {
		/* Never logged out (or the store failed). */
		xmppd_iq_error(iq, status == XMPPD_STORE_NOT_FOUND ? "item-not-found" :
		    "internal-server-error", NULL);
	} else if ((text = strndup(val, vlen)) == NULL || (nl = strchr(text, '\n')) == NULL) {
		free(text);
		xmppd_iq_error(iq, "internal-server-error", NULL);
	} else {
		*nl = '\0';
		reply_seconds(iq, (long long)time(NULL) - strtoll(text, NULL, 10), nl + 1);
		free(text);
	}
	xmppd_elem_unref(iq);
}

/* The requester may see the user's presence: answer iq (taken: a
 * reference) about the account to. */
static void
last_allowed(xmppd_ctx *ctx, xmppd_elem *iq, const xmppd_jid *to)
{
	char key[512];
	size_t klen;

	/* XEP-0012 4: an available resource: seconds='0', no text. */
	if (online_is(xmppd_jid_bare(to))) {
		reply_seconds(iq, 0, NULL);
		xmppd_elem_unref(iq);
		return;
	}
	klen = user_key(key, sizeof(key), xmppd_jid_node(to), xmppd_jid_domain(to));
	/* last_got takes the reference. */
	if (klen == 0 || xmppd_store_aget(ctx, TABLE, key, klen, last_got, iq) < 0) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		xmppd_elem_unref(iq);
	}
}

/* A query from someone else than the user, waiting for the roster. */
struct ask {
	xmppd_ctx *ctx;
	xmppd_elem *iq;             /* a reference */
	xmppd_jid *to;              /* the account */
};

static void
sub_known(int sub, void *ud)
{
	struct ask *a = ud;

	/* XEP-0012 4, 8; RFC 6121 2.1.2.5: the contact must have a
	 * subscription to the user's presence (from or both). No roster
	 * (sub < 0): nobody but the user. */
	if (sub < 0 || !(sub & XMPPD_SUB_FROM)) {
		xmppd_iq_error(a->iq, "forbidden", NULL);
		xmppd_elem_unref(a->iq);
	} else {
		last_allowed(a->ctx, a->iq, a->to);
	}
	xmppd_jid_free(a->to);
	free(a);
}

static enum xmppd_result
last_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_ctx *ctx = ud;
	const char *fbare = xmppd_jid_bare(from), *tbare = xmppd_jid_bare(to);
	struct ask *a;

	if (xmppd_jid_node(to) == NULL) {
		/* XEP-0012 5: the server's uptime. */
		reply_seconds(iq, (long long)(time(NULL) - xmppd_start_time()), NULL);
		return XMPPD_STOP;
	}
	if (fbare == NULL || tbare == NULL || xmppd_jid_domain(from) == NULL) {
		xmppd_iq_error(iq, "forbidden", NULL);
		return XMPPD_STOP;
	}
	if (xmppd_jid_node(from) != NULL && strcmp(fbare, tbare) == 0) {
		last_allowed(ctx, xmppd_elem_ref(iq), to);
		return XMPPD_STOP;
	}
	if ((a = malloc(sizeof(*a))) == NULL || (a->to = xmppd_jid_copy(to)) == NULL) {
		free(a);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return XMPPD_STOP;
	}
	a->ctx = ctx;
	a->iq = xmppd_elem_ref(iq);
	if (xmppd_roster_subscription(ctx, to, from, sub_known, a) < 0) {
		xmppd_elem_unref(a->iq);
		xmppd_jid_free(a->to);
		free(a);
		xmppd_iq_error(iq, "internal-server-error", NULL);
	}
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */

static int
load(xmppd_ctx *ctx)
{
	if ((slot = xmppd_session_slot(ctx)) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "no session slot left");
		return -1;
	}
	if (xmppd_iq_register(ctx, NULL, NS_LAST, XMPPD_IQ_GET,
	    XMPPD_IQ_SERVER | XMPPD_IQ_ACCOUNT, last_iq, ctx) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_PRESENCE_OUT, NULL, 50, presence_out, ctx) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_SM_SESSION_CLOSED, NULL, 50, session_closed, ctx) < 0 ||
	    xmppd_store_user_table(ctx, TABLE) < 0 ||
	    xmppd_timer_add_every_worker(ctx, 1, seed, ctx) < 0 ||
	    xmppd_disco_feature(ctx, NS_LAST) < 0 ||
	    xmppd_disco_account_feature(ctx, NS_LAST) < 0)
		return -1;
	return 0;
}

static void
unload(xmppd_ctx *ctx)
{
	/* Every hook is gone and the slots were freed: drop the counts. */
	pthread_mutex_lock(&online_lock);
	tdestroy(online_root, online_free);
	online_root = NULL;
	pthread_mutex_unlock(&online_lock);
	slot = -1;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.4: the roster query */
	.name = "mod_last",
	.version = "1.0",
	.load = load,
	.unload = unload,
};
