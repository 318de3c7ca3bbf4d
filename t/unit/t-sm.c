/*
 * t-sm.c - the session manager's local delivery rules (RFC 6121 8.5,
 * src/router/sm.c) against fake sessions.
 *
 * No transport: each fake session is a struct session with a sink (struct
 * session_ops) that records every stanza written to it and every close.
 * Fake sessions are added, bound and given presence on their worker's
 * thread, as a transport does; stanzas are routed with sm_route from the
 * main thread (or from a worker, as c2s does), and the test then looks at
 * what each fake session received. Two workers, so that a delivery or a
 * bounce crosses threads. The store holds the accounts: an account without
 * sessions is a user with no available resource (8.5.2.2), no account at
 * all is no such user (8.5.1). No module is loaded: no offline storage, no
 * roster, no IQ handler.
 *
 * Users: romeo@example.com/orchard sends (priority 0, worker 0); juliet's
 * resources differ from test to test; mercutio has an account and never a
 * session; ghost has no account.
 */
#include "config.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1           /* nftw */
#endif
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/account.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"
#include "router/session.h"
#include "router/sm.h"
#include "store/store.h"
#include "xml/xml.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"

#define NWORKERS 2
#define MAX_FAKES 16
#define MAX_RECS 16
#define ROMEO "romeo@example.com/orchard"
#define GATE_TIMEOUT_S 10

static char scratch[128];

/* ------------------------------------------------------------------ */
/* The fake sink                                                       */
/* ------------------------------------------------------------------ */

struct rec {
	xml_elem *st;           /* a copy of what was sent */
	char *text;             /* and serialized, for the failure messages */
};

struct fake {
	struct session s;
	const char *node, *resource;
	unsigned worker;
	int available, priority;
	int bind_failed;
	int removed;
	/* Under rec_lock: written on the session's worker, read by the
	 * main thread after a worker_sync_all. */
	struct rec recs[MAX_RECS];
	size_t nrecs;
	size_t ncloses;
	const char *close_condition;
	/* A sink called from another thread than the session's worker
	 * (session.h: a session is touched only on its worker's thread). */
	size_t wrong_thread;
};

static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fake *fakes[MAX_FAKES];
static size_t nfakes;

static struct fake *
fake_of(struct session *s)
{
	return (struct fake *)((char *)s - offsetof(struct fake, s));
}

static void
fake_send(struct session *s, const xml_elem *st)
{
	struct fake *f = fake_of(s);

	pthread_mutex_lock(&rec_lock);
	if (worker_self() != s->w)
		f->wrong_thread++;
	if (f->nrecs < MAX_RECS) {
		f->recs[f->nrecs].st = xml_elem_copy(st);
		f->recs[f->nrecs].text = xml_to_string(st, "jabber:client", NULL);
	}
	f->nrecs++;
	pthread_mutex_unlock(&rec_lock);
}

static void
fake_close(struct session *s, const char *condition, const char *text)
{
	struct fake *f = fake_of(s);

	pthread_mutex_lock(&rec_lock);
	if (worker_self() != s->w)
		f->wrong_thread++;
	f->ncloses++;
	f->close_condition = condition;
	pthread_mutex_unlock(&rec_lock);
	/* As a transport does: nothing more is written to it. */
	s->closing = 1;
}

static const struct session_ops fake_ops = { fake_send, fake_close };

/* ------------------------------------------------------------------ */
/* Sessions on their workers                                           */
/* ------------------------------------------------------------------ */

/*
 * worker_sync_all returns once every worker has run what was queued for
 * it when the call began; a task run then may post again (a delivery to
 * a session on the other worker, a bounce routed back to the sender on
 * the first, a message routed again because its session went away). The
 * longest chain here is three posts: four syncs see it through.
 */
static void
settle(void)
{
	for (int i = 0; i < 4; i++)
		worker_sync_all();
}

static void
bind_task(struct worker *w, void *a, uint64_t b)
{
	struct fake *f = a;
	const char *err;

	session_add(&f->s, w, &fake_ops, NULL, 0);
	if (jid_make(&f->s.jid, f->node, "example.com", f->resource, &err) < 0) {
		f->bind_failed = 1;
		return;
	}
	session_bind(&f->s);
	if (f->available) {
		/* What c2s does with initial presence (RFC 6121 4.2). */
		xml_elem *p = xml_elem_new(NULL, "presence");
		xml_elem *prio = xml_elem_add_child(p, NULL, "priority");
		char buf[16];

		snprintf(buf, sizeof(buf), "%d", f->priority);
		xml_elem_add_text(prio, buf, strlen(buf));
		xml_attr_set(p, "from", f->s.jid.full);
		f->s.available = 1;
		f->s.priority = f->priority;
		sm_set_presence(&f->s.jid, f->s.sid, 1, f->priority, p);
		xml_elem_unref(p);
	}
}

/* A session for node/resource on worker, bound; available with priority
 * if available, else only connected (bound, no presence yet). Call
 * settle() before using it. */
static struct fake *
fake_new(const char *node, const char *resource, unsigned worker, int available,
    int priority)
{
	struct fake *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_true(nfakes < MAX_FAKES);
	f->node = node;
	f->resource = resource;
	f->worker = worker;
	f->available = available;
	f->priority = priority;
	fakes[nfakes++] = f;
	worker_post(worker_get(worker), bind_task, f, 0);
	return f;
}

static void
remove_task(struct worker *w, void *a, uint64_t b)
{
	struct fake *f = a;

	session_remove(&f->s);
	f->removed = 1;
}

static void
reset_recs(void)
{
	pthread_mutex_lock(&rec_lock);
	for (size_t i = 0; i < nfakes; i++) {
		struct fake *f = fakes[i];

		for (size_t j = 0; j < f->nrecs && j < MAX_RECS; j++) {
			xml_elem_unref(f->recs[j].st);
			free(f->recs[j].text);
		}
		f->nrecs = 0;
	}
	pthread_mutex_unlock(&rec_lock);
}

/* ------------------------------------------------------------------ */
/* Stanzas                                                             */
/* ------------------------------------------------------------------ */

static xml_elem *
stanza(const char *name, const char *type, const char *id, const char *from,
    const char *to)
{
	xml_elem *e = xml_elem_new(NULL, name);

	if (type != NULL)
		xml_attr_set(e, "type", type);
	if (id != NULL)
		xml_attr_set(e, "id", id);
	xml_attr_set(e, "from", from);
	xml_attr_set(e, "to", to);
	return e;
}

static xml_elem *
message(const char *type, const char *id, const char *from, const char *to)
{
	xml_elem *m = stanza("message", type, id, from, to);
	xml_elem *body = xml_elem_add_child(m, NULL, "body");

	xml_elem_add_text(body, id, strlen(id));
	return m;
}

/* An IQ with one payload in ns (RFC 6120 8.2.3), or none if ns is NULL. */
static xml_elem *
iq(const char *type, const char *id, const char *from, const char *to, const char *ns)
{
	xml_elem *q = stanza("iq", type, id, from, to);

	if (ns != NULL)
		(void)xml_elem_add_child(q, ns, "query");
	return q;
}

static xml_elem *
presence(const char *type, const char *from, const char *to)
{
	return stanza("presence", type, NULL, from, to);
}

static void
parse_jid(jid *j, const char *s)
{
	const char *err;

	assert_int_equal(jid_parse(j, s, strlen(s), &err), 0);
}

/* Routes st (taken) as the router does for a local 'to', from the main
 * thread, and waits for everything it causes. */
static void
route(xml_elem *st)
{
	jid from, to;

	parse_jid(&from, xml_attr_get(st, "from"));
	parse_jid(&to, xml_attr_get(st, "to"));
	sm_route(st, &from, &to);
	jid_free(&from);
	jid_free(&to);
	xml_elem_unref(st);
	settle();
}

struct route_req {
	xml_elem *st;
	jid from, to;
};

static void
route_task(struct worker *w, void *a, uint64_t b)
{
	struct route_req *r = a;

	sm_route(r->st, &r->from, &r->to);
	xml_elem_unref(r->st);
	jid_free(&r->from);
	jid_free(&r->to);
	free(r);
}

/* The same from a worker's thread, as c2s routes what its client sent. */
static void
route_on(unsigned worker, xml_elem *st)
{
	struct route_req *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	r->st = st;
	parse_jid(&r->from, xml_attr_get(st, "from"));
	parse_jid(&r->to, xml_attr_get(st, "to"));
	worker_post(worker_get(worker), route_task, r, 0);
	settle();
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

/*
 * The checks are macros around functions, so that a failure names the
 * line of the test that made it (cmocka would name the helper's), and
 * lists what every fake session received.
 */
static int check_line;

static size_t
total_recs(void)
{
	size_t n = 0;

	for (size_t i = 0; i < nfakes; i++)
		n += fakes[i]->nrecs;
	return n;
}

static void
check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
check(int ok, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (ok)
		return;
	for (size_t i = 0; i < nfakes; i++)
		for (size_t j = 0; j < fakes[i]->nrecs && j < MAX_RECS; j++)
			print_message("# %s@example.com/%s got %s\n", fakes[i]->node,
			    fakes[i]->resource, fakes[i]->recs[j].text);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail_msg("t-sm.c:%d: %s", check_line, msg);
}

static const char *
name_of(const struct fake *f)
{
	return f->s.jid.full != NULL ? f->s.jid.full : f->resource;
}

static void
check_attr(const xml_elem *e, const char *name, const char *want)
{
	const char *v = xml_attr_get(e, name);

	check(want == NULL ? v == NULL : v != NULL && strcmp(v, want) == 0,
	    "<%s/> has %s=%s%s%s, expected %s%s%s", xml_elem_name(e), name,
	    v ? "'" : "", v ? v : "(none)", v ? "'" : "", want ? "'" : "",
	    want ? want : "(none)", want ? "'" : "");
}

/* Exactly n stanzas were sent to all the fakes together. */
static void
check_total(size_t n)
{
	check(total_recs() == n, "%zu stanzas delivered in all, expected %zu",
	    total_recs(), n);
}

/* f got exactly one stanza: name, type (NULL: no type attribute) and id;
 * returned for further checks. */
static const xml_elem *
check_one(struct fake *f, const char *name, const char *type, const char *id)
{
	const xml_elem *st;

	check(f->nrecs == 1, "%s got %zu stanzas, expected one <%s/>", name_of(f),
	    f->nrecs, name);
	st = f->recs[0].st;
	check(strcmp(xml_elem_name(st), name) == 0 && xml_elem_ns(st) == NULL,
	    "%s got <%s/>, expected <%s/>", name_of(f), xml_elem_name(st), name);
	check_attr(st, "type", type);
	check_attr(st, "id", id);
	return st;
}

/* f got nothing. */
static void
check_none(struct fake *f)
{
	check(f->nrecs == 0, "%s got %zu stanzas, expected none", name_of(f), f->nrecs);
}

/*
 * f got exactly one stanza, an error answering the stanza name/id that
 * was sent to 'to' (RFC 6120 8.3.1: type='error', the same id, 'from' the
 * address the original was sent to; 8.3.2: an <error/> child with the
 * error type and the condition in the stanzas namespace).
 */
static void
check_error(struct fake *f, const char *name, const char *id, const char *to,
    const char *condition, const char *error_type)
{
	const xml_elem *st = check_one(f, name, "error", id);
	const xml_elem *err, *cond;

	check_attr(st, "from", to);
	check_attr(st, "to", f->s.jid.full);
	err = xml_child(st, NULL, "error");
	check(err != NULL, "no <error/> in the error");
	check_attr(err, "type", error_type);
	cond = xml_child(err, NS_STANZAS, NULL);
	check(cond != NULL, "no condition in <error/>");
	check(strcmp(xml_elem_name(cond), condition) == 0, "condition <%s/>, expected <%s/>",
	    xml_elem_name(cond), condition);
}

static void
check_all_bound(void)
{
	for (size_t i = 0; i < nfakes; i++) {
		if (fakes[i]->removed)
			continue;
		check(!fakes[i]->bind_failed && fakes[i]->s.bound, "%s is not bound",
		    name_of(fakes[i]));
	}
}

#define expect_attr(...) (check_line = __LINE__, check_attr(__VA_ARGS__))
#define expect_total(...) (check_line = __LINE__, check_total(__VA_ARGS__))
#define expect_one(...) (check_line = __LINE__, check_one(__VA_ARGS__))
#define expect_none(...) (check_line = __LINE__, check_none(__VA_ARGS__))
#define expect_error(...) (check_line = __LINE__, check_error(__VA_ARGS__))
#define expect_all_bound() (check_line = __LINE__, check_all_bound())

/* ------------------------------------------------------------------ */
/* Set-up                                                              */
/* ------------------------------------------------------------------ */

static int
rm_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

static int
group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR"), *err = NULL;
	char path[256], yml[512];
	struct conf *c;

	snprintf(scratch, sizeof(scratch), "%s/t-sm.XXXXXX",
	    tmp != NULL && *tmp ? tmp : "/tmp");
	if (mkdtemp(scratch) == NULL)
		return -1;
	log_set_level(LOG_LVL_WARNING);
	snprintf(path, sizeof(path), "%s/xmppd.yml", scratch);
	snprintf(yml, sizeof(yml),
	    "hosts:\n"
	    "  - example.com\n"
	    "workers: %d\n"
	    "loglevel: warning\n"
	    "spool_dir: spool\n", NWORKERS);
	c = conf_parse(path, yml, strlen(yml), &err);
	if (c == NULL) {
		fprintf(stderr, "conf_parse: %s\n", err);
		return -1;
	}
	conf_swap(c);
	c = conf_current();
	if (store_open(c->spool_dir, 0, &err) < 0) {
		fprintf(stderr, "store_open: %s\n", err);
		conf_unref(c);
		return -1;
	}
	if (worker_init(c->workers, &err) < 0) {
		fprintf(stderr, "worker_init: %s\n", err);
		conf_unref(c);
		return -1;
	}
	conf_unref(c);
	if (session_init(NWORKERS) < 0 || sm_init() < 0 || worker_start_all() < 0)
		return -1;
	/* Accounts: the session table is not the only place users exist. */
	if (account_create("romeo", "example.com", "r", &err) < 0 ||
	    account_create("juliet", "example.com", "j", &err) < 0 ||
	    account_create("mercutio", "example.com", "m", &err) < 0) {
		fprintf(stderr, "account_create: %s\n", err);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	/* As src/xmppd.c at shutdown, once the streams are gone. */
	worker_exit_all();
	worker_join_all();
	session_free_all();
	sm_free();
	worker_free_all();
	store_close();
	conf_local_release();
	conf_swap(NULL);
	return nftw(scratch, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

/* Every test starts with romeo online and nothing recorded. */
static struct fake *romeo;

static int
setup(void **state)
{
	romeo = fake_new("romeo", "orchard", 0, 1, 0);
	settle();
	return 0;
}

static int
teardown(void **state)
{
	size_t wrong = 0;

	for (size_t i = 0; i < nfakes; i++)
		if (!fakes[i]->removed)
			worker_post(fakes[i]->s.w, remove_task, fakes[i], 0);
	settle();
	reset_recs();
	for (size_t i = 0; i < nfakes; i++) {
		wrong += fakes[i]->wrong_thread;
		free(fakes[i]);
	}
	nfakes = 0;
	romeo = NULL;
	/* Every sink call ran on its session's worker. */
	assert_int_equal(wrong, 0);
	/* And every session left the table with its session_remove. */
	assert_int_equal(sm_session_count(), 0);
	return 0;
}

/* ------------------------------------------------------------------ */
/* RFC 6121 8.5.1: no such user                                        */
/* ------------------------------------------------------------------ */

static void
test_no_such_user(void **state)
{
	/* Messages: service-unavailable (the server may also ignore them;
	 * xmppd answers), to the bare and to a full JID. */
	route(message(NULL, "m1", ROMEO, "ghost@example.com"));
	expect_error(romeo, "message", "m1", "ghost@example.com", "service-unavailable",
	    "cancel");
	expect_total(1);
	reset_recs();
	route(message("chat", "m2", ROMEO, "ghost@example.com/home"));
	expect_error(romeo, "message", "m2", "ghost@example.com/home",
	    "service-unavailable", "cancel");
	expect_total(1);
	reset_recs();

	/* IQ: service-unavailable, MUST. */
	route(iq("get", "q1", ROMEO, "ghost@example.com", "jabber:iq:version"));
	expect_error(romeo, "iq", "q1", "ghost@example.com", "service-unavailable", "cancel");
	expect_total(1);
	reset_recs();

	/* Presence of any kind is ignored; errors and IQ results are never
	 * answered (RFC 6120 8.3.1). */
	route(presence(NULL, ROMEO, "ghost@example.com"));
	route(presence("unavailable", ROMEO, "ghost@example.com"));
	route(presence("subscribed", ROMEO, "ghost@example.com"));
	route(message("error", "m3", ROMEO, "ghost@example.com"));
	route(iq("result", "q2", ROMEO, "ghost@example.com", NULL));
	route(iq("error", "q3", ROMEO, "ghost@example.com/home", NULL));
	expect_total(0);
}

/* ------------------------------------------------------------------ */
/* RFC 6121 8.5.2.1: bare JID, available resources                     */
/* ------------------------------------------------------------------ */

static void
test_bare_normal_chat(void **state)
{
	/* Highest non-negative priority 5 on worker 1; a lower one and a
	 * negative one; one only connected (bound, no presence). */
	struct fake *balcony = fake_new("juliet", "balcony", 1, 1, 5);
	struct fake *chamber = fake_new("juliet", "chamber", 0, 1, 1);
	struct fake *tomb = fake_new("juliet", "tomb", 1, 1, -1);
	struct fake *hall = fake_new("juliet", "hall", 0, 0, 0);
	struct fake *window;
	const xml_elem *st;

	settle();
	expect_all_bound();

	/* 8.5.2.1.1: normal and chat go to the "most available" resource,
	 * which xmppd takes to be the one with the highest priority. */
	route(message(NULL, "n1", ROMEO, "juliet@example.com"));
	st = expect_one(balcony, "message", NULL, "n1");
	expect_attr(st, "from", ROMEO);
	expect_attr(st, "to", "juliet@example.com");
	assert_string_equal(xml_child_text((xml_elem *)st, NULL, "body"), "n1");
	expect_total(1);
	reset_recs();
	route(message("normal", "n2", ROMEO, "juliet@example.com"));
	(void)expect_one(balcony, "message", "normal", "n2");
	expect_total(1);
	reset_recs();
	route(message("chat", "c1", ROMEO, "juliet@example.com"));
	(void)expect_one(balcony, "message", "chat", "c1");
	expect_total(1);
	reset_recs();
	/* RFC 6121 5.2.2: an unknown type is treated as normal. */
	route(message("bogus", "b1", ROMEO, "juliet@example.com"));
	(void)expect_one(balcony, "message", "bogus", "b1");
	expect_total(1);
	reset_recs();

	/* A tie at the top: xmppd delivers to every resource of that
	 * priority (8.5.2.1.1 allows "the resource or resources"). */
	window = fake_new("juliet", "window", 0, 1, 5);
	settle();
	expect_all_bound();
	route(message("chat", "c2", ROMEO, "juliet@example.com"));
	(void)expect_one(balcony, "message", "chat", "c2");
	(void)expect_one(window, "message", "chat", "c2");
	expect_none(chamber);
	expect_none(tomb);
	expect_none(hall);
	expect_total(2);
}

static void
test_bare_headline_groupchat_error(void **state)
{
	struct fake *balcony = fake_new("juliet", "balcony", 1, 1, 5);
	struct fake *chamber = fake_new("juliet", "chamber", 0, 1, 0);
	struct fake *tomb = fake_new("juliet", "tomb", 1, 1, -1);
	struct fake *hall = fake_new("juliet", "hall", 0, 0, 0);

	settle();
	expect_all_bound();

	/* 8.5.2.1.1: headline to every non-negative available resource. */
	route(message("headline", "h1", ROMEO, "juliet@example.com"));
	(void)expect_one(balcony, "message", "headline", "h1");
	(void)expect_one(chamber, "message", "headline", "h1");
	expect_none(tomb);
	expect_none(hall);
	expect_total(2);
	reset_recs();

	/* groupchat to a bare JID: not delivered, an error
	 * (service-unavailable, the SHOULD). */
	route(message("groupchat", "g1", ROMEO, "juliet@example.com"));
	expect_error(romeo, "message", "g1", "juliet@example.com", "service-unavailable",
	    "cancel");
	expect_total(1);
	reset_recs();

	/* error: silently ignored. */
	route(message("error", "e1", ROMEO, "juliet@example.com"));
	expect_total(0);
}

static void
test_bare_only_negative(void **state)
{
	/* The only available resource has a negative priority, one more is
	 * only connected: as if none were available (8.5.2.1.1, last
	 * paragraph, and 8.5.2.2.1). */
	struct fake *tomb = fake_new("juliet", "tomb", 1, 1, -1);
	struct fake *hall = fake_new("juliet", "hall", 0, 0, 0);

	settle();
	expect_all_bound();
	route(message(NULL, "n1", ROMEO, "juliet@example.com"));
	expect_error(romeo, "message", "n1", "juliet@example.com", "service-unavailable",
	    "cancel");
	expect_total(1);
	reset_recs();
	route(message("chat", "c1", ROMEO, "juliet@example.com"));
	expect_error(romeo, "message", "c1", "juliet@example.com", "service-unavailable",
	    "cancel");
	expect_total(1);
	reset_recs();
	/* headline: silently ignored. */
	route(message("headline", "h1", ROMEO, "juliet@example.com"));
	expect_none(tomb);
	expect_none(hall);
	expect_total(0);
}

/* ------------------------------------------------------------------ */
/* RFC 6121 8.5.2.2: bare JID, no available resource                   */
/* ------------------------------------------------------------------ */

static void
test_bare_offline(void **state)
{
	/* mercutio has an account and no session. No offline storage
	 * module: normal and chat are answered with service-unavailable
	 * (8.5.2.2.1 (b)), as is groupchat; headline and error are
	 * ignored. */
	route(message(NULL, "n1", ROMEO, "mercutio@example.com"));
	expect_error(romeo, "message", "n1", "mercutio@example.com",
	    "service-unavailable", "cancel");
	expect_total(1);
	reset_recs();
	route(message("chat", "c1", ROMEO, "mercutio@example.com"));
	expect_error(romeo, "message", "c1", "mercutio@example.com",
	    "service-unavailable", "cancel");
	expect_total(1);
	reset_recs();
	route(message("groupchat", "g1", ROMEO, "mercutio@example.com"));
	expect_error(romeo, "message", "g1", "mercutio@example.com",
	    "service-unavailable", "cancel");
	expect_total(1);
	reset_recs();
	route(message("headline", "h1", ROMEO, "mercutio@example.com"));
	route(message("error", "e1", ROMEO, "mercutio@example.com"));
	/* 8.5.2.2.2: presence is not stored nor answered. */
	route(presence(NULL, ROMEO, "mercutio@example.com"));
	route(presence("unavailable", ROMEO, "mercutio@example.com"));
	expect_total(0);
	/* 8.5.2.2.3: an IQ is the server's to answer on the user's behalf;
	 * no handler here knows the namespace (RFC 6120 8.4). */
	route(iq("get", "q1", ROMEO, "mercutio@example.com", "urn:example:unknown"));
	expect_error(romeo, "iq", "q1", "mercutio@example.com", "service-unavailable",
	    "cancel");
	expect_total(1);
}

/* ------------------------------------------------------------------ */
/* RFC 6121 8.5.3: full JID                                            */
/* ------------------------------------------------------------------ */

static void
test_full_bound(void **state)
{
	/* 8.5.3.1: a bound resource gets what is addressed to it, whatever
	 * its priority, and even before it sent presence. */
	struct fake *balcony = fake_new("juliet", "balcony", 1, 1, 5);
	struct fake *tomb = fake_new("juliet", "tomb", 1, 1, -1);
	struct fake *hall = fake_new("juliet", "hall", 0, 0, 0);
	const char *types[] = { NULL, "chat", "headline", "groupchat" };

	settle();
	expect_all_bound();
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		const xml_elem *st;

		route(message(types[i], "m1", ROMEO, "juliet@example.com/tomb"));
		st = expect_one(tomb, "message", types[i], "m1");
		expect_attr(st, "to", "juliet@example.com/tomb");
		expect_total(1);
		reset_recs();
	}
	route(message("chat", "m2", ROMEO, "juliet@example.com/hall"));
	(void)expect_one(hall, "message", "chat", "m2");
	expect_total(1);
	reset_recs();

	route(iq("get", "q1", ROMEO, "juliet@example.com/tomb", "jabber:iq:version"));
	(void)expect_one(tomb, "iq", "get", "q1");
	expect_total(1);
	reset_recs();
	/* An IQ result goes to the resource that asked. */
	route(iq("result", "q2", ROMEO, "juliet@example.com/hall", NULL));
	(void)expect_one(hall, "iq", "result", "q2");
	expect_total(1);
	reset_recs();

	/* Directed presence. */
	route(presence(NULL, ROMEO, "juliet@example.com/tomb"));
	(void)expect_one(tomb, "presence", NULL, NULL);
	expect_none(balcony);
	expect_total(1);
}

static void
test_full_unbound(void **state)
{
	/* 8.5.3.2: juliet is online, but not as /gone. */
	struct fake *balcony = fake_new("juliet", "balcony", 1, 1, 5);
	struct fake *chamber = fake_new("juliet", "chamber", 0, 1, 0);
	struct fake *tomb = fake_new("juliet", "tomb", 1, 1, -1);
	const char *bounced[] = { NULL, "normal", "headline", "groupchat" };
	const xml_elem *st;

	settle();
	expect_all_bound();

	/* 8.5.3.2.1: chat is handled as if sent to the bare JID. */
	route(message("chat", "c1", ROMEO, "juliet@example.com/gone"));
	st = expect_one(balcony, "message", "chat", "c1");
	expect_attr(st, "to", "juliet@example.com/gone");
	expect_total(1);
	reset_recs();
	/* normal, headline and groupchat: service-unavailable. */
	for (size_t i = 0; i < sizeof(bounced) / sizeof(bounced[0]); i++) {
		route(message(bounced[i], "m1", ROMEO, "juliet@example.com/gone"));
		expect_error(romeo, "message", "m1", "juliet@example.com/gone",
		    "service-unavailable", "cancel");
		expect_total(1);
		reset_recs();
	}
	/* error: ignored. */
	route(message("error", "e1", ROMEO, "juliet@example.com/gone"));
	expect_total(0);

	/* 8.5.3.2.3: an IQ get or set, service-unavailable; a result or
	 * an error is not answered (RFC 6120 8.3.1). */
	route(iq("get", "q1", ROMEO, "juliet@example.com/gone", "jabber:iq:version"));
	expect_error(romeo, "iq", "q1", "juliet@example.com/gone", "service-unavailable",
	    "cancel");
	expect_total(1);
	reset_recs();
	route(iq("set", "q2", ROMEO, "juliet@example.com/gone", "urn:example:unknown"));
	expect_error(romeo, "iq", "q2", "juliet@example.com/gone", "service-unavailable",
	    "cancel");
	expect_total(1);
	reset_recs();
	route(iq("result", "q3", ROMEO, "juliet@example.com/gone", NULL));
	route(iq("error", "q4", ROMEO, "juliet@example.com/gone", NULL));
	expect_total(0);

	/* 8.5.3.2.2: presence without type or unavailable, ignored... */
	route(presence(NULL, ROMEO, "juliet@example.com/gone"));
	route(presence("unavailable", ROMEO, "juliet@example.com/gone"));
	expect_total(0);
	/* ...subscription-related presence handled as if to the bare JID:
	 * without a roster module, the available resources of
	 * non-negative priority get it. */
	route(presence("subscribe", ROMEO, "juliet@example.com/gone"));
	(void)expect_one(balcony, "presence", "subscribe", NULL);
	(void)expect_one(chamber, "presence", "subscribe", NULL);
	expect_none(tomb);
	expect_total(2);
}

/* ------------------------------------------------------------------ */
/* Presence and IQs to the bare JID                                    */
/* ------------------------------------------------------------------ */

static void
test_bare_presence(void **state)
{
	/* 8.5.2.1.2: presence broadcast to the bare JID reaches every
	 * available resource, negative priorities too, and not a resource
	 * that has not sent presence (RFC 6121 4.2.2). */
	struct fake *balcony = fake_new("juliet", "balcony", 1, 1, 5);
	struct fake *chamber = fake_new("juliet", "chamber", 0, 1, 0);
	struct fake *tomb = fake_new("juliet", "tomb", 1, 1, -1);
	struct fake *hall = fake_new("juliet", "hall", 0, 0, 0);
	const char *types[] = { NULL, "unavailable" };

	settle();
	expect_all_bound();
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		const xml_elem *st;

		route(presence(types[i], ROMEO, "juliet@example.com"));
		st = expect_one(balcony, "presence", types[i], NULL);
		expect_attr(st, "from", ROMEO);
		(void)expect_one(chamber, "presence", types[i], NULL);
		(void)expect_one(tomb, "presence", types[i], NULL);
		expect_none(hall);
		expect_total(3);
		reset_recs();
	}
	/* A probe is the roster module's to answer (RFC 6121 4.3); there is
	 * none: nobody gets it, nobody answers. */
	route(presence("probe", ROMEO, "juliet@example.com"));
	expect_total(0);
}

static void
test_bare_iq(void **state)
{
	/* 8.5.2.1.3: an IQ to the bare JID is answered by the server and
	 * never delivered to a resource. */
	struct fake *balcony = fake_new("juliet", "balcony", 1, 1, 5);

	settle();
	expect_all_bound();
	route(iq("get", "q1", ROMEO, "juliet@example.com", "urn:example:unknown"));
	expect_error(romeo, "iq", "q1", "juliet@example.com", "service-unavailable",
	    "cancel");
	expect_none(balcony);
	expect_total(1);
	reset_recs();
	/* RFC 6120 8.2.3: a get or set has exactly one payload. */
	route(iq("set", "q2", ROMEO, "juliet@example.com", NULL));
	expect_error(romeo, "iq", "q2", "juliet@example.com", "bad-request", "modify");
	expect_total(1);
	reset_recs();
	/* Results and errors to the bare JID end at the server. */
	route(iq("result", "q3", ROMEO, "juliet@example.com", NULL));
	route(iq("error", "q4", ROMEO, "juliet@example.com", NULL));
	expect_total(0);

	/* A message to the server itself has no reader (RFC 6120 10.5.1):
	 * an error. */
	route(message(NULL, "s1", ROMEO, "example.com"));
	expect_error(romeo, "message", "s1", "example.com", "service-unavailable", "cancel");
	expect_total(1);
}

/* ------------------------------------------------------------------ */
/* Across workers                                                      */
/* ------------------------------------------------------------------ */

static void
test_cross_worker(void **state)
{
	/* romeo on worker 0 and juliet on worker 1 route from their own
	 * workers, as c2s does: each delivery and each bounce crosses to
	 * the other thread (teardown checks that every sink call ran on
	 * its session's worker). */
	struct fake *balcony = fake_new("juliet", "balcony", 1, 1, 5);
	struct fake *benvolio = fake_new("romeo", "street", 1, 1, 0);
	const xml_elem *st;

	settle();
	expect_all_bound();
	route_on(0, message("chat", "x1", ROMEO, "juliet@example.com"));
	st = expect_one(balcony, "message", "chat", "x1");
	expect_attr(st, "from", ROMEO);
	expect_total(1);
	reset_recs();
	route_on(1, message("chat", "x2", "juliet@example.com/balcony", ROMEO));
	(void)expect_one(romeo, "message", "chat", "x2");
	expect_total(1);
	reset_recs();
	/* The bounce is made on worker 1 and goes back to worker 0. */
	route_on(0, message(NULL, "x3", ROMEO, "juliet@example.com/gone"));
	expect_error(romeo, "message", "x3", "juliet@example.com/gone",
	    "service-unavailable", "cancel");
	expect_total(1);
	reset_recs();
	/* And from worker 1 to a session on worker 0 and one on worker 1
	 * of the same user. */
	route_on(1, message("headline", "x4", "juliet@example.com/balcony",
	    "romeo@example.com"));
	(void)expect_one(romeo, "message", "headline", "x4");
	(void)expect_one(benvolio, "message", "headline", "x4");
	expect_total(2);
}

/* ------------------------------------------------------------------ */
/* A session that goes away with a stanza on its way                   */
/* ------------------------------------------------------------------ */

/* Holds a worker until the main thread opens it, then removes a session
 * on it: a stanza posted to that worker meanwhile runs after the
 * session is gone. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int entered, open;
	struct fake *victim;
};

static void
gate_task(struct worker *w, void *a, uint64_t b)
{
	struct gate *g = a;

	pthread_mutex_lock(&g->lock);
	g->entered = 1;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
	session_remove(&g->victim->s);
	g->victim->removed = 1;
}

static int
gate_wait(struct gate *g, int *flag)
{
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += GATE_TIMEOUT_S;
	pthread_mutex_lock(&g->lock);
	while (!*flag && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&g->cond, &g->lock, &ts);
	pthread_mutex_unlock(&g->lock);
	return *flag ? 0 : -1;
}

/* Sends st to juliet while her session victim is being removed: st is
 * looked up and posted to victim's worker, which removes victim before it
 * runs the delivery. */
static void
route_while_removing(struct fake *victim, xml_elem *st)
{
	struct gate *g = calloc(1, sizeof(*g));
	jid from, to;

	assert_non_null(g);
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->victim = victim;
	parse_jid(&from, xml_attr_get(st, "from"));
	parse_jid(&to, xml_attr_get(st, "to"));
	worker_post(victim->s.w, gate_task, g, 0);
	/* On a timeout the worker is stuck: g stays allocated for it. */
	assert_int_equal(gate_wait(g, &g->entered), 0);
	sm_route(st, &from, &to);
	jid_free(&from);
	jid_free(&to);
	xml_elem_unref(st);
	pthread_mutex_lock(&g->lock);
	g->open = 1;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	settle();
	assert_int_equal(victim->removed, 1);
	pthread_mutex_destroy(&g->lock);
	pthread_cond_destroy(&g->cond);
	free(g);
}

/* The one stanza named name among f's records (there may be others). */
static const xml_elem *
rec_named(struct fake *f, const char *name)
{
	const xml_elem *found = NULL;
	size_t n = 0;

	for (size_t i = 0; i < f->nrecs && i < MAX_RECS; i++)
		if (strcmp(xml_elem_name(f->recs[i].st), name) == 0) {
			found = f->recs[i].st;
			n++;
		}
	check(n == 1, "%s got %zu <%s/>, expected one", name_of(f), n, name);
	return found;
}

/* f was told that gone went unavailable (RFC 6121 4.5.2: the server
 * sends it for a session that ends without it). */
static void
check_gone(struct fake *f, const char *gone)
{
	const xml_elem *p = rec_named(f, "presence");

	check_attr(p, "type", "unavailable");
	check_attr(p, "from", gone);
}

#define expect_named(...) (check_line = __LINE__, rec_named(__VA_ARGS__))
#define expect_gone(...) (check_line = __LINE__, check_gone(__VA_ARGS__))

static void
test_removed_session(void **state)
{
	struct fake *balcony = fake_new("juliet", "balcony", 1, 1, 5);
	struct fake *chamber = fake_new("juliet", "chamber", 0, 1, 0);
	struct fake *tomb, *cell;
	const xml_elem *st;

	settle();
	expect_all_bound();

	/* To the bare JID: the message was on its way to balcony (the
	 * highest priority) when balcony went. Routed again, it reaches
	 * the resource that remains (8.5.2.1.1). */
	route_while_removing(balcony, message("chat", "r1", ROMEO, "juliet@example.com"));
	expect_none(balcony);
	st = expect_named(chamber, "message");
	expect_attr(st, "id", "r1");
	expect_attr(st, "from", ROMEO);
	expect_gone(chamber, "juliet@example.com/balcony");
	expect_total(2);
	reset_recs();

	/* To the full JID of a resource that goes: chat falls back to the
	 * bare JID (8.5.3.2.1), where chamber is left. */
	tomb = fake_new("juliet", "tomb", 1, 1, 3);
	settle();
	expect_all_bound();
	route_while_removing(tomb, message("chat", "r2", ROMEO, "juliet@example.com/tomb"));
	expect_none(tomb);
	st = expect_named(chamber, "message");
	expect_attr(st, "id", "r2");
	expect_gone(chamber, "juliet@example.com/tomb");
	expect_total(2);
	reset_recs();

	/* A normal message to a full JID that goes: service-unavailable
	 * (8.5.3.2.1), not the other resource. */
	cell = fake_new("juliet", "cell", 0, 1, 1);
	settle();
	expect_all_bound();
	route_while_removing(cell, message(NULL, "r3", ROMEO, "juliet@example.com/cell"));
	expect_error(romeo, "message", "r3", "juliet@example.com/cell",
	    "service-unavailable", "cancel");
	expect_none(cell);
	check_line = __LINE__;
	check(chamber->nrecs == 1, "chamber got %zu stanzas, expected 1", chamber->nrecs);
	expect_gone(chamber, "juliet@example.com/cell");
	expect_total(2);
	reset_recs();

	/* To the bare JID as its only session goes: no resource is left,
	 * no offline storage (8.5.2.2.1): service-unavailable. */
	route_while_removing(chamber, message(NULL, "r4", ROMEO, "juliet@example.com"));
	expect_error(romeo, "message", "r4", "juliet@example.com", "service-unavailable",
	    "cancel");
	expect_none(chamber);
	expect_total(1);
	reset_recs();

	/* An IQ get to a full JID whose session goes before it arrives is
	 * answered, not lost: service-unavailable (RFC 6121 8.5.3.2.3,
	 * RFC 6120 8.2.3: a get or set always gets an answer). */
	cell = fake_new("juliet", "cell", 0, 1, 1);
	settle();
	expect_all_bound();
	route_while_removing(cell, iq("get", "r5", ROMEO, "juliet@example.com/cell", "urn:x:t"));
	expect_error(romeo, "iq", "r5", "juliet@example.com/cell", "service-unavailable",
	    "cancel");
	expect_none(cell);
	expect_total(1);
	reset_recs();

	/* A headline to the bare JID goes to every non-negative resource
	 * (8.5.2.1.1); when one of them goes before its copy arrives, that
	 * copy is dropped: routed again it would reach the others a second
	 * time. */
	balcony = fake_new("juliet", "balcony", 1, 1, 5);
	chamber = fake_new("juliet", "chamber", 0, 1, 0);
	settle();
	expect_all_bound();
	route_while_removing(balcony, message("headline", "r6", ROMEO, "juliet@example.com"));
	expect_none(balcony);
	st = expect_named(chamber, "message");
	expect_attr(st, "id", "r6");
	expect_gone(chamber, "juliet@example.com/balcony");
	expect_total(2);
}

/* ------------------------------------------------------------------ */
/* A second session with the same full JID                             */
/* ------------------------------------------------------------------ */

static void
test_conflict(void **state)
{
	/* RFC 6120 7.7.2.2: the new session wins, the old one is closed
	 * with <conflict/> on its own worker, and what is addressed to the
	 * full JID goes to the new one. */
	struct fake *old = fake_new("juliet", "balcony", 0, 1, 5);
	struct fake *new;

	settle();
	expect_all_bound();
	new = fake_new("juliet", "balcony", 1, 1, 5);
	settle();
	assert_int_equal(new->s.bound, 1);
	assert_int_equal(old->ncloses, 1);
	assert_string_equal(old->close_condition, "conflict");
	assert_int_equal(new->ncloses, 0);
	assert_int_equal(sm_session_count(), 2);       /* romeo and juliet */
	route(message("chat", "k1", ROMEO, "juliet@example.com/balcony"));
	(void)expect_one(new, "message", "chat", "k1");
	expect_total(1);
	reset_recs();
	route(message("chat", "k2", ROMEO, "juliet@example.com"));
	(void)expect_one(new, "message", "chat", "k2");
	expect_none(old);
	expect_total(1);
}

/* ------------------------------------------------------------------ */

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_such_user, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bare_normal_chat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bare_headline_groupchat_error, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_bare_only_negative, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bare_offline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_unbound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bare_presence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bare_iq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cross_worker, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removed_session, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict, setup, teardown),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
