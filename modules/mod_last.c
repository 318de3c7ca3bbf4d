/*
 * mod_last - XEP-0012: Last Activity.
 *
 * To the server: its uptime (XEP-0012 5). To an account's bare JID: 0 if
 * the account has an available resource, else the seconds since its last
 * logout and the status of its last unavailable presence (XEP-0012 3).
 *
 * What is kept: per account, in the table mod_last, the time of the last
 * logout and that status ("SECONDS\nSTATUS"); per session, in a slot, the
 * status of its last unavailable presence and whether it is counted as
 * available; module-wide, under a mutex, how many available sessions each
 * bare JID has (the ABI cannot ask whether a user is online elsewhere).
 *
 * The store is used through the asynchronous API (ABI 1.2): the logout is
 * one batch, submitted when the session ends; a query is answered from its
 * read's callback (a deferred reply).
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
	char *status;           /* of the last unavailable presence, or NULL */
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
	struct sess *s = p;

	free(s->status);
	free(s);
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

/* The user's own presence (no 'to', RFC 6121 4.2, 4.5): availability, and
 * the status of an unavailable one (XEP-0012 3). */
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
	free(s->status);
	s->status = NULL;
	if (type == NULL) {
		set_counted(pa->session, s, 1);
		return XMPPD_CONTINUE;
	}
	status = xmppd_elem_child_text(pa->stanza, NULL, "status");
	if (status != NULL && *status != '\0')
		s->status = status_dup(status);
	set_counted(pa->session, s, 0);
	return XMPPD_CONTINUE;
}

static size_t
user_key(char *buf, size_t size, const char *node, const char *host)
{
	return xmppd_store_key(buf, size, host, node, (const char *)NULL);
}

/* A logout being written: for the log, if it fails. */
struct logout {
	xmppd_ctx *ctx;
	char bare[];
};

static void
logout_stored(int status, void *ud)
{
	struct logout *l = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(l->ctx, XMPPD_LOG_ERROR, "cannot store the last logout of %s", l->bare);
	free(l);
}

/* XEP-0012 3: remember when the user logged out, and with which status. */
static enum xmppd_result
session_closed(void *args, void *ud)
{
	xmppd_ctx *ctx = ud;
	xmppd_session *session = ((struct xmppd_session_args *)args)->session;
	const xmppd_jid *jid = xmppd_session_jid(session);
	const char *bare = xmppd_jid_bare(jid);
	struct sess *s = xmppd_session_get(session, slot);
	const char *status = s != NULL && s->status != NULL ? s->status : "";
	struct logout *l = NULL;
	xmppd_batch *b = NULL;
	char key[512], *val = NULL;
	size_t klen;
	int n;

	if (s != NULL)
		set_counted(session, s, 0);
	/* A removed account's sessions end after remove_user ran: write
	 * nothing for it then. */
	if (!xmppd_user_exists(xmppd_jid_node(jid), xmppd_jid_domain(jid)))
		return XMPPD_CONTINUE;
	klen = user_key(key, sizeof(key), xmppd_jid_node(jid), xmppd_jid_domain(jid));
	n = klen == 0 ? -1 : asprintf(&val, "%lld\n%s", (long long)time(NULL), status);
	if (n < 0 || (l = malloc(sizeof(*l) + strlen(bare) + 1)) == NULL ||
	    (b = xmppd_batch_new(ctx)) == NULL) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot store the last logout of %s", bare);
		free(l);
		if (n >= 0)
			free(val);
		return XMPPD_CONTINUE;
	}
	l->ctx = ctx;
	strcpy(l->bare, bare);
	/* The batch copies the value; a failed put fails it (done says why). */
	(void)xmppd_batch_put(b, TABLE, key, klen, val, (size_t)n);
	free(val);
	if (xmppd_batch_submit(b, logout_stored, l) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot store the last logout of %s", bare);
		free(l);
	}
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

static enum xmppd_result
last_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_ctx *ctx = ud;
	const char *fbare = xmppd_jid_bare(from), *tbare = xmppd_jid_bare(to);
	char key[512];
	size_t klen;

	if (xmppd_jid_node(to) == NULL) {
		/* XEP-0012 5: the server's uptime. */
		reply_seconds(iq, (long long)(time(NULL) - xmppd_start_time()), NULL);
		return XMPPD_STOP;
	}
	/*
	 * XEP-0012 3, 8: only those allowed to see the user's presence may
	 * learn it. TODO: allow the user's presence subscribers once rosters
	 * exist (the roster issue); until then only the user's own resources.
	 */
	if (fbare == NULL || tbare == NULL || strcmp(fbare, tbare) != 0) {
		xmppd_iq_error(iq, "forbidden", NULL);
		return XMPPD_STOP;
	}
	/* XEP-0012 3: an available resource means "active now". */
	if (online_is(tbare)) {
		reply_seconds(iq, 0, NULL);
		return XMPPD_STOP;
	}
	klen = user_key(key, sizeof(key), xmppd_jid_node(to), xmppd_jid_domain(to));
	if (klen == 0 || xmppd_store_aget(ctx, TABLE, key, klen, last_got,
	    xmppd_elem_ref(iq)) < 0) {
		if (klen != 0)
			xmppd_elem_unref(iq);
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
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.2: the asynchronous store */
	.name = "mod_last",
	.version = "1.0",
	.load = load,
	.unload = unload,
};
