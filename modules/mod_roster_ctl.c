/*
 * mod_roster_ctl.c - what mod_roster does for the main thread: xmppctl
 * roster, and an account's removal (remove_user).
 *
 * Control commands run on the main thread, and so does remove_user when
 * xmppctl unregister removes an account; the asynchronous store answers
 * only on a worker. So the main thread hands the work to worker 0 (a job,
 * run from a timer there: xmppd_timer_add called off a worker puts it on
 * worker 0) and waits for it to finish, at most CTL_WAIT_S seconds; the
 * job uses the same roster changes as the roster IQ (mod_roster.c). The
 * main thread may wait: it is no worker, and no worker ever waits for it.
 * Jobs run in the order they were posted, whatever order their timers
 * fire in.
 *
 * remove_user (XEP-0077 3.2): the contacts are told, as if the user had
 * removed every item (RFC 6121 2.5.2), before the core deletes the rows.
 * From xmppctl (the main thread) a job reads them from the store first;
 * on a worker (in-band removal, mod_register) nothing can be read before
 * the core's delete, so the contacts come from the cache of the user's
 * sessions (mod_roster_cache.c), which the removing session has loaded.
 *
 * Choices:
 *  - `xmppctl roster add` makes the subscription "both" at once, like
 *    ejabberd's add_rosteritem, and also writes the mirror item in the
 *    contact's roster when the contact is a local account, so that both
 *    sides agree and presence flows both ways (ejabberd writes only the
 *    user's side); `roster remove` is the user removing the item (RFC 6121
 *    2.5.2: unsubscribe and unsubscribed go to the contact).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmppd.h>

#include "mod_roster.h"
#include "strfmt.h"

#define CTL_WAIT_S 10
#define CTL_USAGE "roster list USER HOST | roster add USER HOST CONTACT [NAME [GROUP]] | " \
	"roster remove USER HOST CONTACT"

/* ---------------------------------------------------------------- */
/* Jobs: work for a worker, waited for or not.                        */

struct job {
	struct job *next;
	struct roster *r;
	void (*run)(struct job *j);     /* on worker 0; ends with job_finish */
	int waited;                     /* the main thread waits for it */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int finished, abandoned;
	int rc;
	char *out;                      /* for the waiter */
	/* The work. */
	xmppd_jid *user, *contact;
	char *name, *group;
	int local;
	xmppd_elem *st;
	size_t plen;
	FILE *f;
	char *buf;
	size_t len;
	struct contacts to, from, pending;
};

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static struct job *queue, **queue_tail = &queue;

static struct job *
job_new(struct roster *r, void (*run)(struct job *j), int waited)
{
	struct job *j = calloc(1, sizeof(*j));
	pthread_condattr_t ca;

	if (j == NULL)
		return NULL;
	j->r = r;
	j->run = run;
	j->waited = waited;
	if (waited) {
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_mutex_init(&j->mu, NULL);
		pthread_cond_init(&j->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	return j;
}

static void
job_free(struct job *j)
{
	if (j->waited) {
		pthread_mutex_destroy(&j->mu);
		pthread_cond_destroy(&j->cv);
	}
	if (j->f != NULL)
		fclose(j->f);
	free(j->buf);
	free(j->out);
	free(j->name);
	free(j->group);
	xmppd_jid_free(j->user);
	xmppd_jid_free(j->contact);
	xmppd_elem_unref(j->st);
	roster_contacts_free(&j->to);
	roster_contacts_free(&j->from);
	roster_contacts_free(&j->pending);
	free(j);
}

/* The job is done (out taken): its waiter learns it, or it goes. */
static void
job_finish(struct job *j, int rc, char *out)
{
	int gone;

	if (!j->waited) {
		free(out);
		job_free(j);
		return;
	}
	pthread_mutex_lock(&j->mu);
	j->rc = rc;
	j->out = out;
	j->finished = 1;
	gone = j->abandoned;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	if (gone)
		job_free(j);
}

/* Every job posted so far, in order; the queue is empty after. */
static struct job *
queue_take_all(void)
{
	struct job *j;

	pthread_mutex_lock(&queue_lock);
	j = queue;
	queue = NULL;
	queue_tail = &queue;
	pthread_mutex_unlock(&queue_lock);
	return j;
}

/* On worker 0: every job posted so far, in order. */
static uint64_t
jobs_timer(void *ud)
{
	struct job *j, *next;

	for (j = queue_take_all(); j != NULL; j = next) {
		next = j->next;
		j->run(j);
	}
	return 0;
}

/* 0, or -1 (j was not posted). */
static int
job_post(struct job *j)
{
	struct job **pp;
	int taken = 0;

	pthread_mutex_lock(&queue_lock);
	j->next = NULL;
	*queue_tail = j;
	queue_tail = &j->next;
	pthread_mutex_unlock(&queue_lock);
	if (xmppd_timer_add(j->r->ctx, 0, jobs_timer, NULL) != NULL)
		return 0;
	/* Take it back if it is still queued (else an earlier timer runs
	 * it). */
	pthread_mutex_lock(&queue_lock);
	for (pp = &queue; *pp != NULL && *pp != j; pp = &(*pp)->next)
		;
	if (*pp == j) {
		*pp = j->next;
		if (queue_tail == &j->next)
			queue_tail = pp;
		taken = 1;
	}
	pthread_mutex_unlock(&queue_lock);
	return taken ? -1 : 0;
}

/* The main thread: posts j and waits for it. Returns its rc with its
 * output in *out_r, and frees j (or leaves it to the worker when it took
 * too long). */
static int
job_run_wait(struct job *j, char **out_r)
{
	struct timespec ts;
	int rc = 0, finished;

	*out_r = NULL;
	if (job_post(j) < 0) {
		job_free(j);
		*out_r = strfmt("cannot hand the work to a worker");
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += CTL_WAIT_S;
	pthread_mutex_lock(&j->mu);
	while (!j->finished && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&j->cv, &j->mu, &ts);
	finished = j->finished;
	if (!finished)
		j->abandoned = 1;
	pthread_mutex_unlock(&j->mu);
	if (!finished) {
		*out_r = strfmt("no answer from the store within %d seconds", CTL_WAIT_S);
		return -1;
	}
	rc = j->rc;
	*out_r = j->out;
	j->out = NULL;
	job_free(j);
	return rc;
}

static void
run_route(struct job *j)
{
	xmppd_route(j->st);
	job_finish(j, 0, NULL);
}

int
roster_route_on_worker(struct roster *r, xmppd_elem *st_take)
{
	struct job *j = job_new(r, run_route, 0);

	if (j == NULL) {
		xmppd_elem_unref(st_take);
		return -1;
	}
	j->st = st_take;
	if (job_post(j) < 0) {
		job_free(j);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* xmppctl roster.                                                    */

/* Names and groups are the client's text: no TAB or newline gets out. */
static void
put_field(FILE *f, const char *s)
{
	fputc('\t', f);
	for (; s != NULL && *s != '\0'; s++)
		fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

static int
list_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	static const char *const subs[] = { "none", "to", "from", "both" };
	struct job *j = ud;
	struct item it;

	if (klen <= j->plen + 1 || roster_item_decode(val, vlen, &it) < 0)
		return 0;
	if (!(it.flags & F_GONE)) {
		fputs((const char *)key + j->plen, j->f);
		put_field(j->f, subs[it.flags & 3]);
		put_field(j->f, (it.flags & F_ASK) ? "subscribe" : "");
		put_field(j->f, it.name);
		for (size_t i = 0; i < it.ngroups; i++)
			put_field(j->f, it.groups[i]);
		fputc('\n', j->f);
	}
	roster_item_free(&it);
	return 0;
}

static void
list_done(int status, void *ud)
{
	struct job *j = ud;
	int bad = fclose(j->f) != 0;
	char *buf = j->buf;

	/* j is the waiter's once finished: nothing touches it after. */
	j->f = NULL;
	j->buf = NULL;
	if (status != XMPPD_STORE_OK || bad) {
		free(buf);
		job_finish(j, -1, strfmt("cannot read the roster of %s", xmppd_jid_bare(j->user)));
		return;
	}
	job_finish(j, 0, buf);
}

/* One line per item: JID, subscription, ask, name, then the groups, TAB
 * separated. */
static void
run_list(struct job *j)
{
	char p[KEY_MAX];

	if ((j->plen = roster_key(p, j->user, NULL)) == 0 ||
	    (j->f = open_memstream(&j->buf, &j->len)) == NULL ||
	    xmppd_store_ascan(j->r->ctx, T_ROSTER, p, j->plen, list_row, list_done, j) < 0)
		job_finish(j, -1, strfmt("cannot read the roster of %s", xmppd_jid_bare(j->user)));
}

static char *
add_failed(struct job *j, const char *cond)
{
	return strfmt("cannot add %s to the roster of %s: %s", xmppd_jid_bare(j->contact),
	    xmppd_jid_bare(j->user), cond != NULL && strcmp(cond, "resource-constraint") == 0 ?
	    "the roster is full" : "store error");
}

/* Both items written: each side's presence to the other. */
static void
add_done(int rc, const char *cond, void *arg)
{
	struct job *j = arg;

	if (rc < 0) {
		job_finish(j, -1, add_failed(j, cond));
		return;
	}
	(void)xmppd_user_presences(j->user, roster_forward, (void *)xmppd_jid_bare(j->contact));
	if (j->local)
		(void)xmppd_user_presences(j->contact, roster_forward,
		    (void *)xmppd_jid_bare(j->user));
	job_finish(j, 0, strfmt("%s added to the roster of %s (subscription both)\n",
	    xmppd_jid_bare(j->contact), xmppd_jid_bare(j->user)));
}

/* The user's item written: the mirror item in a local contact's roster. */
static void
add_mirror(int rc, const char *cond, void *arg)
{
	struct job *j = arg;

	if (rc < 0 || !j->local) {
		add_done(rc, cond, j);
		return;
	}
	if (roster_item_update(j->r, j->contact, xmppd_jid_bare(j->user), NULL, NULL, 0, 1, 1,
	    add_done, j) < 0)
		add_done(-1, NULL, j);
}

/* Subscription "both" at once (ejabberd's add_rosteritem), in both rosters
 * when the contact is local. */
static void
run_add(struct job *j)
{
	if (roster_item_update(j->r, j->user, xmppd_jid_bare(j->contact), j->name, &j->group,
	    j->group != NULL, 1, 1, add_mirror, j) < 0)
		add_done(-1, NULL, j);
}

static void
remove_done(int rc, const char *cond, void *arg)
{
	struct job *j = arg;

	if (rc == 0)
		job_finish(j, 0, strfmt("%s removed from the roster of %s\n",
		    xmppd_jid_bare(j->contact), xmppd_jid_bare(j->user)));
	else if (cond != NULL && strcmp(cond, "item-not-found") == 0)
		job_finish(j, -1, strfmt("%s is not in the roster of %s", xmppd_jid_bare(j->contact),
		    xmppd_jid_bare(j->user)));
	else
		job_finish(j, -1, strfmt("cannot change the roster of %s", xmppd_jid_bare(j->user)));
}

static void
run_remove(struct job *j)
{
	if (roster_item_remove(j->r, j->user, xmppd_jid_bare(j->contact), remove_done, j) < 0)
		remove_done(-1, NULL, j);
}

static int
roster_ctl(int argc, char **argv, char **out_r, void *ud)
{
	struct roster *r = ud;
	const char *cmd = argc > 1 ? argv[1] : "";
	xmppd_jid *user = NULL, *contact = NULL;
	char *node = NULL, k[KEY_MAX];
	struct job *j;
	int rc = -1;

	if (!((strcmp(cmd, "list") == 0 && argc == 4) ||
	    (strcmp(cmd, "add") == 0 && argc >= 5 && argc <= 7) ||
	    (strcmp(cmd, "remove") == 0 && argc == 5))) {
		*out_r = strfmt("usage: xmppctl %s", CTL_USAGE);
		return -1;
	}
	if ((node = xmppd_nodeprep(argv[2])) == NULL ||
	    (user = xmppd_jid_make(node, argv[3], NULL)) == NULL) {
		*out_r = strfmt("invalid user name '%s' or host '%s'", argv[2], argv[3]);
		goto out;
	}
	if (!xmppd_is_local_host(xmppd_jid_domain(user))) {
		*out_r = strfmt("host '%s' is not served here", argv[3]);
		goto out;
	}
	if (!xmppd_user_exists(xmppd_jid_node(user), xmppd_jid_domain(user))) {
		*out_r = strfmt("no such account %s", xmppd_jid_bare(user));
		goto out;
	}
	if (argc >= 5 && ((contact = xmppd_jid_parse(argv[4])) == NULL ||
	    xmppd_jid_resource(contact) != NULL || roster_key(k, user,
	    xmppd_jid_bare(contact)) == 0 || (xmppd_jid_node(contact) != NULL &&
	    roster_key(k, contact, xmppd_jid_bare(user)) == 0))) {
		*out_r = strfmt("invalid contact '%s' (a bare JID, not too long)", argv[4]);
		goto out;
	}
	if (argc > 5 && strlen(argv[5]) > (size_t)r->max_name) {
		*out_r = strfmt("the name or group is empty or too long");
		goto out;
	}
	if (argc > 6 && (*argv[6] == '\0' || strlen(argv[6]) > (size_t)r->max_group)) {
		*out_r = strfmt("the name or group is empty or too long");
		goto out;
	}
	if ((j = job_new(r, strcmp(cmd, "list") == 0 ? run_list : strcmp(cmd, "add") == 0 ?
	    run_add : run_remove, 1)) == NULL)
		goto out;
	j->user = user;
	j->contact = contact;
	user = contact = NULL;
	if (j->contact != NULL)
		j->local = xmppd_jid_node(j->contact) != NULL &&
		    xmppd_is_local_host(xmppd_jid_domain(j->contact)) &&
		    xmppd_user_exists(xmppd_jid_node(j->contact), xmppd_jid_domain(j->contact)) &&
		    strcmp(xmppd_jid_bare(j->contact), xmppd_jid_bare(j->user)) != 0;
	if ((argc > 5 && (j->name = strdup(argv[5])) == NULL) ||
	    (argc > 6 && (j->group = strdup(argv[6])) == NULL)) {
		job_free(j);
		goto out;
	}
	rc = job_run_wait(j, out_r);
out:
	free(node);
	xmppd_jid_free(user);
	xmppd_jid_free(contact);
	return rc;
}

/* ---------------------------------------------------------------- */
/* remove_user.                                                       */

/* XEP-0077 3.2, RFC 6121 2.5.2: as if the user had removed every item. */
static void
tell_contacts(const xmppd_jid *user, const struct contacts *to, const struct contacts *from,
    const struct contacts *pending)
{
	for (size_t i = 0; i < to->n; i++)
		roster_send(user, to->v[i], "unsubscribe");
	for (size_t i = 0; i < from->n; i++)
		roster_send(user, from->v[i], "unsubscribed");
	for (size_t i = 0; i < pending->n; i++)
		roster_send(user, pending->v[i], "unsubscribed");
}

static int
removal_item(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct job *j = ud;
	const char *contact = (const char *)key + j->plen;
	int f = roster_record_flags(val, vlen);

	if (klen <= j->plen + 1 || f < 0 || (f & F_GONE))
		return 0;
	if (((f & (F_TO | F_ASK)) && roster_contacts_add(&j->to, contact) < 0) ||
	    ((f & F_FROM) && roster_contacts_add(&j->from, contact) < 0))
		return 1;
	return 0;
}

static int
removal_request(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct job *j = ud;

	if (klen > j->plen + 1 && roster_contacts_add(&j->pending, (const char *)key + j->plen) < 0)
		return 1;
	return 0;
}

static void
removal_read(int status, void *ud)
{
	struct job *j = ud;

	if (status != XMPPD_STORE_OK)
		xmppd_log(j->r->ctx, XMPPD_LOG_WARNING, "%s: cannot read the roster: the contacts "
		    "are not told of the removal", xmppd_jid_bare(j->user));
	else
		tell_contacts(j->user, &j->to, &j->from, &j->pending);
	job_finish(j, 0, NULL);
}

static void
removal_items_read(int status, void *ud)
{
	struct job *j = ud;
	char p[KEY_MAX];

	if (status != XMPPD_STORE_OK ||
	    xmppd_store_ascan(j->r->ctx, T_PENDING, p, roster_key(p, j->user, NULL),
	    removal_request, removal_read, j) < 0)
		removal_read(status != XMPPD_STORE_OK ? status : XMPPD_STORE_ERROR, j);
}

static void
run_removal(struct job *j)
{
	char p[KEY_MAX];

	if ((j->plen = roster_key(p, j->user, NULL)) == 0 ||
	    xmppd_store_ascan(j->r->ctx, T_ROSTER, p, j->plen, removal_item,
	    removal_items_read, j) < 0)
		removal_read(XMPPD_STORE_ERROR, j);
}

/*
 * The account is about to go (remove_user runs before the core deletes it
 * and, in the same transaction, its rows of our user tables): its contacts
 * are told.
 */
static enum xmppd_result
on_remove_user(void *args, void *ud)
{
	struct roster *r = ud;
	struct xmppd_user_args *ua = args;
	struct contacts to, from, pending;
	xmppd_jid *user = xmppd_jid_make(ua->node, ua->host, NULL);
	struct job *j;
	char *out;

	if (user == NULL)
		return XMPPD_CONTINUE;
	if (roster_on_main(r)) {
		if ((j = job_new(r, run_removal, 1)) == NULL) {
			xmppd_jid_free(user);
			return XMPPD_CONTINUE;
		}
		j->user = user;
		if (job_run_wait(j, &out) < 0)
			xmppd_log(r->ctx, XMPPD_LOG_WARNING, "%s@%s: contacts not told of the "
			    "removal: %s", ua->node, ua->host, out != NULL ? out : "?");
		free(out);
		return XMPPD_CONTINUE;
	}
	if (cache_contacts_of(xmppd_jid_bare(user), F_TO | F_ASK, 0, &to) < 0) {
		xmppd_log(r->ctx, XMPPD_LOG_WARNING, "%s: no roster in memory: the contacts are "
		    "not told of the removal", xmppd_jid_bare(user));
		xmppd_jid_free(user);
		return XMPPD_CONTINUE;
	}
	if (cache_contacts_of(xmppd_jid_bare(user), F_FROM, 0, &from) == 0) {
		if (cache_contacts_of(xmppd_jid_bare(user), 0, 1, &pending) == 0) {
			tell_contacts(user, &to, &from, &pending);
			roster_contacts_free(&pending);
		}
		roster_contacts_free(&from);
	}
	roster_contacts_free(&to);
	xmppd_jid_free(user);
	return XMPPD_CONTINUE;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

int
roster_ctl_load(struct roster *r)
{
	return xmppd_hook_add(r->ctx, XMPPD_HOOK_REMOVE_USER, NULL, PRIORITY, on_remove_user,
	    r) < 0 || xmppd_ctl_register(r->ctx, "roster", CTL_USAGE, roster_ctl, r) < 0 ? -1 : 0;
}

void
roster_ctl_unload(void)
{
	struct job *j, *next;

	/* Their timers were dropped with the module's: nobody waits for
	 * them (a waiter would be the main thread, which is unloading). */
	for (j = queue_take_all(); j != NULL; j = next) {
		next = j->next;
		job_free(j);
	}
}
