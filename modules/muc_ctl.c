/*
 * muc_ctl.c - what looks at rooms across workers: the service's
 * disco#items (XEP-0045 6.3, with RSM, XEP-0059) and `xmppctl muc`.
 *
 * Rooms live on their own workers, so a listing visits each worker: a
 * task is posted (xmppd_entity_post) to a key that each worker owns
 * (found at load), reads that worker's room table, and adds what it
 * found to a shared collection under the collection's own mutex; the
 * last worker to finish completes the listing. For disco#items it then
 * scans the store for persistent rooms not in memory and replies (IQ
 * replies may come from any thread). Control commands run on the main
 * thread: they post to the room's worker (or to every worker) and wait
 * for the answer, at most CTL_WAIT_S seconds.
 */
#define _GNU_SOURCE             /* asprintf, open_memstream */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "muc.h"
#include "strfmt.h"

#define CTL_USAGE "muc list SERVICE | muc occupants ROOM | muc create ROOM OWNER | " \
	"muc destroy ROOM [REASON]"
#define CTL_WAIT_S 10
#define NS_RSM "http://jabber.org/protocol/rsm"

static char **worker_keys;      /* one key per worker, owned by it */
static unsigned nworker_keys;

struct entry {
	char *jid;
	char *name;
	long nocc;                  /* -1: from the store (not in memory) */
	int persistent;
};

struct collect {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;
	unsigned pending;
	char *service;
	int public_only;
	struct entry *v;
	size_t n, cap;
	int failed;
	int finished;
	int abandoned;              /* the control command stopped waiting */
	/* disco#items */
	xmppd_elem *iq;
	long max;                   /* RSM: -1 none */
	char *after;
};

static int
entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->jid, y->jid);

	/* For one JID, the one in memory (nocc >= 0) first. */
	return c != 0 ? c : (y->nocc >= 0) - (x->nocc >= 0);
}

static void
collect_release(struct collect *c)
{
	int last;

	pthread_mutex_lock(&c->mu);
	last = --c->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (!last)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].jid);
		free(c->v[i].name);
	}
	free(c->v);
	free(c->service);
	free(c->after);
	xmppd_elem_unref(c->iq);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

static struct collect *
collect_new(const char *service, int public_only)
{
	struct collect *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;

	if (c == NULL)
		return NULL;
	if (service != NULL && (c->service = strdup(service)) == NULL) {
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	c->refs = 1;
	c->public_only = public_only;
	c->max = -1;
	return c;
}

/* Under c->mu. */
static void
add_entry(struct collect *c, const char *jid, const char *name, long nocc, int persistent)
{
	struct entry *nv;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;

		if ((nv = realloc(c->v, cap * sizeof(*nv))) == NULL) {
			c->failed = 1;
			return;
		}
		c->v = nv;
		c->cap = cap;
	}
	c->v[c->n].jid = strdup(jid);
	c->v[c->n].name = strdup(name != NULL ? name : "");
	c->v[c->n].nocc = nocc;
	c->v[c->n].persistent = persistent;
	if (c->v[c->n].jid == NULL || c->v[c->n].name == NULL) {
		free(c->v[c->n].jid);
		free(c->v[c->n].name);
		c->failed = 1;
		return;
	}
	c->n++;
}

static void
collect_room(struct muc_room *r, void *ud)
{
	struct collect *c = ud;

	if (r->loading || (c->service != NULL && strcmp(r->service, c->service) != 0))
		return;
	/* 6.3: only public rooms, and not one still locked (10.1.1). */
	if (c->public_only && (!r->cfg.public || r->locked))
		return;
	add_entry(c, r->jid, r->cfg.name, (long)r->nocc, r->cfg.persistent);
}

/* ---------------------------------------------------------------- */
/* disco#items of the service.                                        */

static void
items_reply(struct collect *c)
{
	xmppd_elem *q = xmppd_elem_new(NS_DISCO_ITEMS, "query"), *set, *e;
	size_t i = 0, n = 0, first = 0, count = 0;
	char buf[24];

	if (c->failed) {
		xmppd_elem_unref(q);
		xmppd_iq_error(c->iq, "internal-server-error", NULL);
		return;
	}
	qsort(c->v, c->n, sizeof(*c->v), entry_cmp);
	/* One per JID (the one in memory first). */
	for (size_t k = 0; k < c->n; k++)
		if (k == 0 || strcmp(c->v[k].jid, c->v[count - 1].jid) != 0) {
			struct entry t = c->v[count];

			c->v[count] = c->v[k];
			c->v[k] = t;
			count++;
		}
	if (c->after != NULL)
		while (i < count && strcmp(c->v[i].jid, c->after) <= 0)
			i++;
	first = i;
	for (; i < count && (c->max < 0 || (long)n < c->max); i++, n++) {
		e = xmppd_elem_add_child(q, NS_DISCO_ITEMS, "item");
		xmppd_elem_set_attr(e, "jid", c->v[i].jid);
		if (*c->v[i].name)
			xmppd_elem_set_attr(e, "name", c->v[i].name);
	}
	if (c->max >= 0 || c->after != NULL) {
		/* XEP-0059 2.1 */
		set = xmppd_elem_add_child(q, NS_RSM, "set");
		if (n > 0) {
			e = xmppd_elem_add_child(set, NS_RSM, "first");
			xmppd_elem_set_attr(e, "index", (snprintf(buf, sizeof(buf), "%zu", first),
			    buf));
			xmppd_elem_add_text(e, c->v[first].jid, strlen(c->v[first].jid));
			xmppd_elem_add_text(xmppd_elem_add_child(set, NS_RSM, "last"),
			    c->v[first + n - 1].jid, strlen(c->v[first + n - 1].jid));
		}
		snprintf(buf, sizeof(buf), "%zu", count);
		xmppd_elem_add_text(xmppd_elem_add_child(set, NS_RSM, "count"), buf, strlen(buf));
	}
	xmppd_iq_reply(c->iq, q);
}

static int
store_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct collect *c = ud;
	const char *k = key, *v = val, *node;
	size_t slen = strlen(c->service) + 1;
	xmppd_elem *x, *cf;
	char *jid;

	if (klen <= slen || k[klen - 1] != '\0' || vlen < 2 || v[0] != 1)
		return 0;
	node = k + slen;
	if ((x = xmppd_elem_parse(v + 1, vlen - 1)) == NULL)
		return 0;
	cf = xmppd_elem_child(x, "urn:xmppd:muc:1", "config");
	if (cf != NULL && !muc_is(xmppd_elem_attr(cf, "public"), "0") &&
	    asprintf(&jid, "%s@%s", node, c->service) >= 0) {
		add_entry(c, jid, xmppd_elem_attr(cf, "name"), -1, 1);
		free(jid);
	}
	xmppd_elem_unref(x);
	return 0;
}

static void
store_done(int status, void *ud)
{
	struct collect *c = ud;

	if (status != XMPPD_STORE_OK)
		c->failed = 1;
	items_reply(c);
	collect_release(c);
}

/* On the last worker: the store's persistent rooms, then the reply. */
static void
items_collected(struct collect *c)
{
	char pfx[512];
	size_t plen = muc_store_service_prefix(pfx, sizeof(pfx), c->service);

	if (plen == 0 || xmppd_store_ascan(muc_module.ctx, MUC_T_ROOMS, pfx, plen, store_row,
	    store_done, c) < 0)
		store_done(XMPPD_STORE_ERROR, c);
}

/* One worker's part (rooms: it may read its table), or a post that
 * failed (no rooms); the last one runs the end. */
static void
collect_one(struct collect *c, int rooms)
{
	int last;

	pthread_mutex_lock(&c->mu);
	if (rooms)
		muc_rooms_foreach_local(collect_room, c);
	else
		c->failed = 1;
	last = --c->pending == 0;
	if (last && c->iq == NULL) {
		c->finished = 1;
		pthread_cond_signal(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	if (last && c->iq != NULL)
		items_collected(c);     /* takes this post's reference */
	else
		collect_release(c);
}

static void
collect_task(void *ud)
{
	collect_one(ud, 1);
}

/* Posts to every worker, each with a reference; the last one to finish
 * runs the end. */
static void
collect_post(struct collect *c)
{
	c->pending = nworker_keys;
	c->refs += (int)nworker_keys;
	for (unsigned w = 0; w < nworker_keys; w++)
		if (xmppd_entity_post(muc_module.ctx, worker_keys[w], collect_task, c) < 0)
			collect_one(c, 0);
}

void
muc_service_items(xmppd_elem *iq, const char *service, xmppd_elem *q)
{
	struct collect *c = collect_new(service, 1);
	xmppd_elem *set = xmppd_elem_child(q, NS_RSM, "set");
	const char *v;

	if (c == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	c->iq = xmppd_elem_ref(iq);
	if (set != NULL) {
		if ((v = xmppd_elem_child_text(set, NS_RSM, "max")) != NULL && *v)
			c->max = strtol(v, NULL, 10) < 0 ? 0 : strtol(v, NULL, 10);
		if ((v = xmppd_elem_child_text(set, NS_RSM, "after")) != NULL && *v)
			c->after = strdup(v);
	}
	collect_post(c);
	collect_release(c);
}

/* ---------------------------------------------------------------- */
/* xmppctl muc (the main thread).                                     */

/* Waits for c->finished (set by the worker under c->mu). 0, or -1 on
 * timeout. */
static int
wait_finished(struct collect *c)
{
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += CTL_WAIT_S;
	pthread_mutex_lock(&c->mu);
	while (!c->finished && rc == 0)
		if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT)
			rc = -1;
	if (c->finished)
		rc = 0;
	pthread_mutex_unlock(&c->mu);
	return rc;
}

struct store_listing {
	struct collect *c;
	size_t slen;
};

static int
ctl_store_row(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct store_listing *l = ud;
	const char *k = key;
	char *jid;

	(void)val;
	(void)vlen;
	if (klen <= l->slen || k[klen - 1] != '\0')
		return 0;
	if (asprintf(&jid, "%s@%s", k + l->slen, l->c->service) >= 0) {
		pthread_mutex_lock(&l->c->mu);
		add_entry(l->c, jid, NULL, -1, 1);
		pthread_mutex_unlock(&l->c->mu);
		free(jid);
	}
	return 0;
}

static int
ctl_list(const char *service, char **out_r)
{
	struct collect *c = collect_new(service, 0);
	struct store_listing l;
	char pfx[512], *text = NULL;
	size_t len = 0, plen;
	xmppd_txn *t;
	FILE *f;

	if (c == NULL) {
		*out_r = strfmt("no memory");
		return -1;
	}
	collect_post(c);
	if (wait_finished(c) < 0 || c->failed) {
		collect_release(c);
		*out_r = strfmt("no answer from every worker within %d s", CTL_WAIT_S);
		return -1;
	}
	/* Persistent rooms not in memory: the synchronous store, allowed
	 * on the main thread (as xmppctl pubsub reads it). */
	l.c = c;
	l.slen = strlen(service) + 1;
	plen = muc_store_service_prefix(pfx, sizeof(pfx), service);
	if (plen > 0 && (t = xmppd_store_begin(0)) != NULL) {
		(void)xmppd_store_scan(t, MUC_T_ROOMS, pfx, plen, ctl_store_row, &l);
		xmppd_store_abort(t);
	}
	pthread_mutex_lock(&c->mu);
	qsort(c->v, c->n, sizeof(*c->v), entry_cmp);
	if ((f = open_memstream(&text, &len)) != NULL) {
		for (size_t i = 0; i < c->n; i++) {
			if (i > 0 && strcmp(c->v[i].jid, c->v[i - 1].jid) == 0)
				continue;
			fprintf(f, "%s\t%ld\t%s\n", c->v[i].jid, c->v[i].nocc < 0 ? 0 :
			    c->v[i].nocc, c->v[i].persistent ? "persistent" : "temporary");
		}
		fclose(f);
	}
	pthread_mutex_unlock(&c->mu);
	collect_release(c);
	*out_r = text;
	return text != NULL ? 0 : -1;
}

/* One room's task: the room's worker does op and writes the output. */
struct room_task {
	struct collect *c;          /* the wait (mu, cv, finished, refs) */
	char op;                    /* 'o' occupants, 'd' destroy, 'c' create */
	char *room, *arg;
	char *out;
	int rc;
};

static void
room_task_run(void *ud)
{
	struct room_task *t = ud;
	struct collect *c = t->c;
	struct muc_room *r = muc_room_find(t->room);
	int abandoned;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	if (r != NULL && r->loading)
		r = NULL;
	t->rc = 0;
	switch (t->op) {
	case 'o':
		if ((f = open_memstream(&text, &len)) == NULL)
			break;
		for (struct muc_occ *o = r != NULL ? r->occ_head : NULL; o != NULL; o = o->next)
			for (struct muc_sess *s = o->sess; s != NULL; s = s->next)
				fprintf(f, "%s\t%s\t%s\t%s\n", o->nick, muc_role_name(o->role),
				    muc_aff_name(muc_aff_of(r, o->bare)), xmppd_jid_full(s->full));
		fclose(f);
		t->out = text;
		break;
	case 'd':
		if (r != NULL)
			muc_room_destroy(r, NULL, t->arg);
		else {
			muc_room_forget(t->room);
			muc_mam_forget(t->room);
		}
		t->out = strfmt("destroyed %s\n", t->room);
		break;
	case 'c': {
		xmppd_jid *j = xmppd_jid_parse(t->room);

		if (r != NULL) {
			t->rc = -1;
			t->out = strfmt("%s exists", t->room);
		} else if (j == NULL || (r = muc_room_new(t->room, xmppd_jid_domain(j))) == NULL ||
		    muc_aff_set(r, t->arg, MUC_AFF_OWNER, NULL) < 0) {
			t->rc = -1;
			t->out = strfmt("cannot create %s", t->room);
		} else {
			/* 10.1: made by the administrator, configured (not
			 * locked) and persistent. */
			r->cfg.persistent = 1;
			muc_room_save(r);
			t->out = strfmt("created %s\n", t->room);
		}
		xmppd_jid_free(j);
		break;
	}
	}
	pthread_mutex_lock(&c->mu);
	c->finished = 1;
	abandoned = c->abandoned;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	/* The waiter gave up: t is this task's to free. */
	if (abandoned) {
		free(t->room);
		free(t->arg);
		free(t->out);
		free(t);
	}
	collect_release(c);
}

/* Whether the store has a record for room (the synchronous store, on
 * the main thread). */
static int
stored(const xmppd_jid *room)
{
	char key[512];
	size_t klen = xmppd_store_key(key, sizeof(key), xmppd_jid_domain(room),
	    xmppd_jid_node(room), (char *)NULL);
	const void *v;
	size_t vlen;
	xmppd_txn *t;
	int rc = 0;

	if (klen == 0 || (t = xmppd_store_begin(0)) == NULL)
		return 0;
	rc = xmppd_store_get(t, MUC_T_ROOMS, key, klen, &v, &vlen) == 0;
	xmppd_store_abort(t);
	return rc;
}

static int
ctl_room(char op, const char *room, const char *arg, char **out_r)
{
	xmppd_jid *j = xmppd_jid_parse(room), *aj = NULL;
	struct room_task *t = NULL;
	int rc = -1, in_store;

	if (j == NULL || xmppd_jid_node(j) == NULL || xmppd_jid_resource(j) != NULL ||
	    muc_our_service(xmppd_jid_domain(j)) == NULL) {
		*out_r = strfmt("%s is not a room of a MUC service here", room);
		goto out;
	}
	if (op == 'c' && (arg == NULL || (aj = xmppd_jid_parse(arg)) == NULL ||
	    xmppd_jid_node(aj) == NULL)) {
		*out_r = strfmt("usage: %s", CTL_USAGE);
		goto out;
	}
	in_store = stored(j);
	if (op == 'c' && in_store) {
		*out_r = strfmt("%s exists", xmppd_jid_bare(j));
		goto out;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL || (t->c = collect_new(NULL, 0)) == NULL ||
	    (t->room = strdup(xmppd_jid_bare(j))) == NULL ||
	    (arg != NULL && (t->arg = strdup(aj != NULL ? xmppd_jid_bare(aj) : arg)) == NULL)) {
		*out_r = strfmt("no memory");
		goto out;
	}
	t->op = op;
	t->c->refs = 2;
	if (xmppd_entity_post(muc_module.ctx, t->room, room_task_run, t) < 0) {
		t->c->refs = 1;
		*out_r = strfmt("the module is unloading");
		goto out;
	}
	if (wait_finished(t->c) < 0) {
		pthread_mutex_lock(&t->c->mu);
		t->c->abandoned = !t->c->finished;
		pthread_mutex_unlock(&t->c->mu);
		if (t->c->abandoned) {
			/* The task still runs later: it frees t. */
			*out_r = strfmt("no answer within %d s", CTL_WAIT_S);
			collect_release(t->c);
			t = NULL;
			goto out;
		}
	}
	rc = t->rc;
	*out_r = t->out;
	t->out = NULL;
out:
	if (t != NULL) {
		if (t->c != NULL)
			collect_release(t->c);
		free(t->room);
		free(t->arg);
		free(t->out);
		free(t);
	}
	xmppd_jid_free(j);
	xmppd_jid_free(aj);
	return rc;
}

static int
muc_ctl(int argc, char **argv, char **out_r, void *ud)
{
	(void)ud;
	*out_r = NULL;
	if (argc == 3 && muc_is(argv[1], "list")) {
		if (muc_our_service(argv[2]) == NULL) {
			*out_r = strfmt("%s is not a MUC service here", argv[2]);
			return -1;
		}
		return ctl_list(argv[2], out_r);
	}
	if (argc == 3 && muc_is(argv[1], "occupants"))
		return ctl_room('o', argv[2], NULL, out_r);
	if (argc == 4 && muc_is(argv[1], "create"))
		return ctl_room('c', argv[2], argv[3], out_r);
	if ((argc == 3 || argc == 4) && muc_is(argv[1], "destroy"))
		return ctl_room('d', argv[2], argc == 4 ? argv[3] : NULL, out_r);
	*out_r = strfmt("usage: %s", CTL_USAGE);
	return -1;
}

/* ---------------------------------------------------------------- */
/* Shutdown (XEP-0045 12: status 332).                                */

static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cv = PTHREAD_COND_INITIALIZER;
static unsigned stop_pending;

/* Each occupant hears that it is out of the room: its own unavailable
 * presence with 332 (the service is shutting down) and 110. One stanza
 * per occupant to its sessions: the others are told the same thing at
 * the same moment, so nobody gets everybody's exit. */
static void
stop_room(struct muc_room *r, void *ud)
{
	static const int codes[] = { 332, 110 };

	(void)ud;
	for (struct muc_occ *o = r->occ_head; o != NULL; o = o->next) {
		xmppd_elem *p = muc_occ_presence(r, o, 1, 1, codes, 2, NULL, NULL, NULL);

		if (p == NULL)
			continue;
		for (struct muc_sess *s = o->sess; s != NULL; s = s->next)
			muc_send_copy(p, s->full);
		xmppd_elem_unref(p);
	}
}

static void
stop_task(void *ud)
{
	(void)ud;
	muc_rooms_foreach_local(stop_room, NULL);
	pthread_mutex_lock(&stop_mu);
	if (--stop_pending == 0)
		pthread_cond_signal(&stop_cv);
	pthread_mutex_unlock(&stop_mu);
}

/* server_stopping, on the main thread before any stream closes: every
 * worker tells its rooms' occupants; waits for them (2 s at most), so
 * that the presences are queued before the streams' shutdown. */
static enum xmppd_result
stopping(void *args, void *ud)
{
	struct timespec until;
	unsigned posted = 0;

	(void)args;
	(void)ud;
	__atomic_store_n(&muc_module.stopping, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&stop_mu);
	stop_pending = nworker_keys;
	pthread_mutex_unlock(&stop_mu);
	for (unsigned w = 0; w < nworker_keys; w++)
		if (xmppd_entity_post(muc_module.ctx, worker_keys[w], stop_task, NULL) == 0)
			posted++;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 2;
	pthread_mutex_lock(&stop_mu);
	stop_pending -= nworker_keys - posted;
	while (stop_pending > 0 && pthread_cond_timedwait(&stop_cv, &stop_mu, &until) == 0)
		;
	pthread_mutex_unlock(&stop_mu);
	return XMPPD_CONTINUE;
}

int
muc_ctl_init(xmppd_ctx *ctx)
{
	unsigned n = xmppd_worker_count();

	if (n == 0)
		n = 1;
	if ((worker_keys = calloc(n, sizeof(*worker_keys))) == NULL)
		return -1;
	nworker_keys = n;
	/* A key each worker owns: placement is fixed for the process. */
	for (unsigned k = 0, found = 0; found < n && k < 100000; k++) {
		char key[32];
		unsigned w;

		snprintf(key, sizeof(key), "mod_muc/%u", k);
		w = xmppd_entity_worker(key);
		if (w < n && worker_keys[w] == NULL) {
			if ((worker_keys[w] = strdup(key)) == NULL)
				return -1;
			found++;
		}
	}
	for (unsigned w = 0; w < n; w++)
		if (worker_keys[w] == NULL) {
			xmppd_log(ctx, XMPPD_LOG_ERROR, "no key for worker %u", w);
			return -1;
		}
	if (xmppd_hook_add(ctx, XMPPD_HOOK_SERVER_STOPPING, NULL, 0, stopping, NULL) < 0)
		return -1;
	return xmppd_ctl_register(ctx, "muc", CTL_USAGE, muc_ctl, NULL);
}

void
muc_ctl_free(void)
{
	for (unsigned w = 0; w < nworker_keys; w++)
		free(worker_keys[w]);
	free(worker_keys);
	worker_keys = NULL;
	nworker_keys = 0;
}
