/*
 * adhoc_admin.c - XEP-0133: Service Administration, as ad-hoc commands
 * of mod_adhoc, for the accounts of the host the command is sent to.
 *
 * Every form carries the hidden FORM_TYPE http://jabber.org/protocol/admin
 * (XEP-0133 3). Account operations go through the ABI's account calls
 * (the core's users_create / users_remove: register_user and remove_user
 * run, the account's rows of every user table go with it, its sessions
 * are closed), as mod_register does; they are bounded store work.
 *
 * A failure the admin can correct (an account that exists, passwords that
 * differ, a JID of another host) completes the command with a note of
 * type error (XEP-0050 3.5); protocol errors are stanza errors.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "adhoc.h"

#define A(x) "http://jabber.org/protocol/admin#" x
#define NOTE_MAX 1024
#define MAX_JIDS 100            /* accountjids in one submission */

/* ---------------------------------------------------------------- */
/* Helpers.                                                           */

/* The node of jid text s if it names an account of host, else NULL
 * (malloc'd). */
static char *
account_of(const char *s, const char *host)
{
	xmppd_jid *j = s != NULL ? xmppd_jid_parse(s) : NULL;
	char *node = NULL;

	if (j != NULL && xmppd_jid_node(j) != NULL && xmppd_jid_resource(j) == NULL &&
	    strcmp(xmppd_jid_domain(j), host) == 0)
		node = strdup(xmppd_jid_node(j));
	xmppd_jid_free(j);
	return node;
}

static xmppd_elem *
admin_form(const char *title, const char *instructions)
{
	xmppd_elem *x = form_new("form", title, NS_ADMIN), *i;

	if (instructions != NULL) {
		i = xmppd_elem_add_child(x, NS_XDATA, "instructions");
		xmppd_elem_add_text(i, instructions, strlen(instructions));
	}
	return x;
}

/* Appends "what s" to a note, bounded. */
static void
note_add(char *note, const char *what, const char *s)
{
	size_t l = strlen(note);

	if (l < NOTE_MAX - 1)
		snprintf(note + l, NOTE_MAX - l, "%s%s %s", l > 0 ? "; " : "", what, s);
}

/* Calls fn(r, node, jid text, note) for each value of the jid-multi field
 * var (at most MAX_JIDS); a value that is not an account of the host goes
 * into the note. Returns how many values there were. */
static size_t
each_account(struct adhoc_req *r, xmppd_elem *x, const char *var,
    void (*fn)(struct adhoc_req *r, const char *node, const char *jid, char *note),
    char *note)
{
	xmppd_elem *f = form_get_field(x, var);
	size_t n = 0;

	if (f == NULL)
		return 0;
	for (xmppd_elem *v = xmppd_elem_first_child(f); v != NULL && n < MAX_JIDS;
	    v = xmppd_elem_next_sibling(v)) {
		const char *t;
		char *node;

		if (strcmp(xmppd_elem_name(v), "value") != 0)
			continue;
		n++;
		t = xmppd_elem_text(v);
		if ((node = account_of(t, r->host)) == NULL) {
			note_add(note, "not an account of this host:", t);
			continue;
		}
		fn(r, node, t, note);
		free(node);
	}
	return n;
}

static void
done_note(struct adhoc_req *r, const char *note, const char *ok_text)
{
	if (note[0] != '\0')
		adhoc_done(r, "error", note, NULL);
	else
		adhoc_done(r, "info", ok_text, NULL);
}

/* The end of a command on the accounts of the field accountjids: fn on
 * each, then ok_text, or the note of what failed. */
static void
run_on_accounts(struct adhoc_req *r, xmppd_elem *x,
    void (*fn)(struct adhoc_req *r, const char *node, const char *jid, char *note),
    const char *ok_text)
{
	char note[NOTE_MAX] = "";

	if (each_account(r, x, "accountjids", fn, note) == 0)
		adhoc_done(r, "error", "No Jabber ID given", NULL);
	else
		done_note(r, note, ok_text);
}

/* ---------------------------------------------------------------- */
/* 4.1 Add User.                                                      */

static void
add_user_form(struct adhoc_req *r)
{
	xmppd_elem *x = admin_form("Adding a User", "Fill out this form to add a user.");

	form_field(x, "accountjid", "jid-single", "The Jabber ID for the account to be added",
	    NULL, 1);
	form_field(x, "password", "text-private", "The password for this account", NULL, 1);
	form_field(x, "password-verify", "text-private", "Retype password", NULL, 1);
	adhoc_form(r, x);
}

static void
add_user_run(struct adhoc_req *r, xmppd_elem *x)
{
	const char *pw = form_get(x, "password"), *pw2 = form_get(x, "password-verify");
	const char *err = NULL;
	char *node = account_of(form_get(x, "accountjid"), r->host);

	if (node == NULL)
		adhoc_done(r, "error", "The Jabber ID is not one of this host's", NULL);
	else if (pw == NULL || *pw == '\0')
		adhoc_done(r, "error", "The password is empty", NULL);
	else if (pw2 != NULL && strcmp(pw, pw2) != 0)
		adhoc_done(r, "error", "The passwords do not match", NULL);
	else if (xmppd_user_create(node, r->host, pw, &err) < 0)
		adhoc_done(r, "error", err != NULL && strcmp(err, "exists") == 0 ?
		    "The account already exists" : "The account could not be created", NULL);
	else {
		xmppd_log(r->ctx, XMPPD_LOG_NOTICE, "%s added %s@%s", xmppd_jid_bare(r->from),
		    node, r->host);
		adhoc_done(r, "info", "The account was added", NULL);
	}
	free(node);
}

/* ---------------------------------------------------------------- */
/* 4.2 Delete User.                                                   */

static void
accounts_form(struct adhoc_req *r, const char *title, const char *label)
{
	xmppd_elem *x = admin_form(title, NULL);

	form_field(x, "accountjids", "jid-multi", label, NULL, 1);
	adhoc_form(r, x);
}

static void
delete_user_form(struct adhoc_req *r)
{
	accounts_form(r, "Deleting a User", "The Jabber ID(s) to delete");
}

static void
delete_one(struct adhoc_req *r, const char *node, const char *jid, char *note)
{
	const char *err = NULL;

	if (xmppd_user_remove(node, r->host, &err) < 0)
		note_add(note, err != NULL && strcmp(err, "not found") == 0 ?
		    "no such account:" : "could not delete", jid);
	else
		xmppd_log(r->ctx, XMPPD_LOG_NOTICE, "%s deleted %s@%s", xmppd_jid_bare(r->from),
		    node, r->host);
}

static void
delete_user_run(struct adhoc_req *r, xmppd_elem *x)
{
	run_on_accounts(r, x, delete_one, "The accounts were deleted");
}

/* ---------------------------------------------------------------- */
/* 4.7 Change User Password.                                          */

static void
passwd_form(struct adhoc_req *r)
{
	xmppd_elem *x = admin_form("Changing a User Password",
	    "Fill out this form to change a user's password.");

	form_field(x, "accountjid", "jid-single", "The Jabber ID for this account", NULL, 1);
	form_field(x, "password", "text-private", "The password for this account", NULL, 1);
	adhoc_form(r, x);
}

static void
passwd_run(struct adhoc_req *r, xmppd_elem *x)
{
	const char *pw = form_get(x, "password"), *err = NULL;
	char *node = account_of(form_get(x, "accountjid"), r->host);

	if (node == NULL)
		adhoc_done(r, "error", "The Jabber ID is not one of this host's", NULL);
	else if (pw == NULL || *pw == '\0')
		adhoc_done(r, "error", "The password is empty", NULL);
	else if (xmppd_user_set_password(node, r->host, pw, &err) < 0)
		adhoc_done(r, "error", err != NULL && strcmp(err, "not found") == 0 ?
		    "No such account" : "The password could not be changed", NULL);
	else
		adhoc_done(r, "info", "The password was changed", NULL);
	free(node);
}

/* ---------------------------------------------------------------- */
/* 4.13 - 4.16 Numbers and lists of users.                            */

struct online {
	char **v;
	size_t n, cap;
	int available_only;
};

/* Under the session table's lock: copy only. */
static void
online_one(const char *full, int available, void *ud)
{
	struct online *o = ud;
	const char *slash = strchr(full, '/');
	size_t l = slash != NULL ? (size_t)(slash - full) : strlen(full);

	if (o->available_only && !available)
		return;
	if (o->n == o->cap) {
		size_t cap = o->cap ? 2 * o->cap : 64;
		char **v = realloc(o->v, cap * sizeof(*v));

		if (v == NULL)
			return;
		o->v = v;
		o->cap = cap;
	}
	if ((o->v[o->n] = strndup(full, l)) != NULL)
		o->n++;
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The bare JIDs with a session on host, sorted, each once. */
static void
online_users(const char *host, struct online *o)
{
	size_t k = 0;

	(void)xmppd_sessions_foreach(host, online_one, o);
	if (o->n == 0)
		return;
	qsort(o->v, o->n, sizeof(*o->v), str_cmp);
	for (size_t i = 0; i < o->n; i++) {
		if (k > 0 && strcmp(o->v[k - 1], o->v[i]) == 0) {
			free(o->v[i]);
			continue;
		}
		o->v[k++] = o->v[i];
	}
	o->n = k;
}

static void
online_free(struct online *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->v[i]);
	free(o->v);
}

static void
number_result(struct adhoc_req *r, const char *var, const char *label, long n)
{
	xmppd_elem *x = form_new("result", NULL, NS_ADMIN);
	char num[32];

	snprintf(num, sizeof(num), "%ld", n);
	form_field(x, var, NULL, label, num, 0);
	adhoc_done(r, NULL, NULL, x);
}

static void
online_num_run(struct adhoc_req *r, xmppd_elem *x)
{
	struct online o = { 0 };

	(void)x;
	online_users(r->host, &o);
	number_result(r, "onlineusersnum", "The number of online users", (long)o.n);
	online_free(&o);
}

static void
count_one(const char *node, void *ud)
{
	(void)node;
	++*(long *)ud;
}

static void
registered_num_run(struct adhoc_req *r, xmppd_elem *x)
{
	long n = 0;

	(void)x;
	if (xmppd_user_foreach(r->host, count_one, &n) < 0)
		adhoc_fail(r, "internal-server-error", NULL);
	else
		number_result(r, "registeredusersnum", "The number of registered users", n);
}

static void
online_list_form(struct adhoc_req *r)
{
	static const char *const max[] = { "25", "50", "75", "100", "150", "200", "none", NULL };
	xmppd_elem *x = admin_form("Requesting List of Online Users", NULL), *f;

	f = form_field(x, "max_items", "list-single", "Maximum number of items to report", "25",
	    0);
	for (size_t i = 0; max[i] != NULL; i++)
		form_field_option(f, NULL, max[i]);
	adhoc_form(r, x);
}

/* max_items of a list form: 0 with *lim_r (-1: no limit), or -1. */
static int
max_items(xmppd_elem *x, long *lim_r)
{
	const char *max = form_get(x, "max_items");
	char *end;

	*lim_r = -1;
	/* XEP-0133 4.15: 'none' (Prosody: 'all', or nothing) is no limit. */
	if (max == NULL || *max == '\0' || strcmp(max, "none") == 0 || strcmp(max, "all") == 0)
		return 0;
	*lim_r = strtol(max, &end, 10);
	return *end != '\0' || *lim_r < 0 ? -1 : 0;
}

struct reglist {
	xmppd_elem *field;
	const char *host;
	long left;                  /* -1: no limit */
};

static void
reg_one(const char *node, void *ud)
{
	struct reglist *l = ud;
	char jid[1100];

	if (l->left == 0)
		return;
	if (l->left > 0)
		l->left--;
	snprintf(jid, sizeof(jid), "%s@%s", node, l->host);
	form_field_value(l->field, jid);
}

/* XEP-0133 4.16. */
static void
registered_list_run(struct adhoc_req *r, xmppd_elem *x)
{
	struct reglist l = { NULL, r->host, -1 };
	xmppd_elem *res;

	if (max_items(x, &l.left) < 0) {
		adhoc_fail(r, "bad-request", "bad-payload");
		return;
	}
	res = form_new("result", NULL, NS_ADMIN);
	l.field = form_field(res, "registereduserjids", "jid-multi",
	    "The list of all users", NULL, 0);
	if (xmppd_user_foreach(r->host, reg_one, &l) < 0) {
		xmppd_elem_unref(res);
		adhoc_fail(r, "internal-server-error", NULL);
		return;
	}
	adhoc_done(r, NULL, NULL, res);
}

static void
registered_list_form(struct adhoc_req *r)
{
	static const char *const max[] = { "25", "50", "75", "100", "150", "200", "none", NULL };
	xmppd_elem *x = admin_form("Requesting List of Registered Users", NULL), *f;

	f = form_field(x, "max_items", "list-single", "Maximum number of items to report", "25",
	    0);
	for (size_t i = 0; max[i] != NULL; i++)
		form_field_option(f, NULL, max[i]);
	adhoc_form(r, x);
}

static void
online_list_run(struct adhoc_req *r, xmppd_elem *x)
{
	struct online o = { 0 };
	xmppd_elem *res, *f;
	long lim;

	if (max_items(x, &lim) < 0) {
		adhoc_fail(r, "bad-request", "bad-payload");
		return;
	}
	online_users(r->host, &o);
	res = form_new("result", NULL, NS_ADMIN);
	f = form_field(res, "onlineuserjids", "jid-multi", "The list of all online users", NULL,
	    0);
	for (size_t i = 0; i < o.n && (lim < 0 || (long)i < lim); i++)
		form_field_value(f, o.v[i]);
	online_free(&o);
	adhoc_done(r, NULL, NULL, res);
}

/* ---------------------------------------------------------------- */
/* 4.3 Disable User, 4.5 End User Session.                            */

/*
 * The core has no disabled state for an account: as ejabberd's
 * ban_account does, disabling replaces the password with a random one
 * nobody knows and closes the account's sessions, so every later login
 * fails with not-authorized (RFC 6120 6.5.10). change-user-password
 * enables the account again.
 */
static void
disable_user_form(struct adhoc_req *r)
{
	accounts_form(r, "Disabling a User", "The Jabber ID(s) to disable");
}

static void
disable_one(struct adhoc_req *r, const char *node, const char *jid, char *note)
{
	unsigned char rnd[24];
	char pw[2 * sizeof(rnd) + 1];
	const char *err = NULL;
	xmppd_jid *j;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		note_add(note, "could not disable", jid);
		return;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(pw + 2 * i, 3, "%02x", rnd[i]);
	if (xmppd_user_set_password(node, r->host, pw, &err) < 0) {
		note_add(note, err != NULL && strcmp(err, "not found") == 0 ?
		    "no such account:" : "could not disable", jid);
		return;
	}
	if ((j = xmppd_jid_make(node, r->host, NULL)) != NULL) {
		(void)xmppd_user_kick(j, "policy-violation", "account disabled by an administrator");
		xmppd_jid_free(j);
	}
	xmppd_log(r->ctx, XMPPD_LOG_NOTICE, "%s disabled %s@%s", xmppd_jid_bare(r->from), node,
	    r->host);
}

static void
disable_user_run(struct adhoc_req *r, xmppd_elem *x)
{
	run_on_accounts(r, x, disable_one, "The accounts were disabled");
}

static void
end_session_form(struct adhoc_req *r)
{
	accounts_form(r, "Ending a User Session",
	    "The Jabber ID(s) for which to end sessions (a bare JID: every session)");
}

static void
end_session_run(struct adhoc_req *r, xmppd_elem *x)
{
	xmppd_elem *f = form_get_field(x, "accountjids");
	char note[NOTE_MAX] = "";
	size_t n = 0;

	for (xmppd_elem *v = f != NULL ? xmppd_elem_first_child(f) : NULL; v != NULL &&
	    n < MAX_JIDS; v = xmppd_elem_next_sibling(v)) {
		const char *t;
		xmppd_jid *j;

		if (strcmp(xmppd_elem_name(v), "value") != 0)
			continue;
		n++;
		t = xmppd_elem_text(v);
		/* XEP-0133 4.5: a bare JID ends all its sessions, a full
		 * JID that one. */
		j = xmppd_jid_parse(t);
		if (j == NULL || xmppd_jid_node(j) == NULL ||
		    strcmp(xmppd_jid_domain(j), r->host) != 0)
			note_add(note, "not an account of this host:", t);
		else if (xmppd_user_kick(j, "policy-violation",
		    "session ended by an administrator") == 0)
			note_add(note, "no session:", t);
		xmppd_jid_free(j);
	}
	if (n == 0)
		adhoc_done(r, "error", "No Jabber ID given", NULL);
	else
		done_note(r, note, "The sessions were ended");
}

/* ---------------------------------------------------------------- */
/* 4.8 Get User Roster.                                               */

static void
roster_form(struct adhoc_req *r)
{
	xmppd_elem *x = admin_form("Getting a User's Roster", NULL);

	form_field(x, "accountjids", "jid-single", "The Jabber ID for which to retrieve roster",
	    NULL, 1);
	adhoc_form(r, x);
}

/* Requests whose roster get is out: xmppd_iq_request drops those still
 * waiting when the module unloads, without calling back. */
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
static struct adhoc_req *pending;

static void
pending_add(struct adhoc_req *r)
{
	pthread_mutex_lock(&pending_lock);
	r->prev = NULL;
	r->next = pending;
	if (pending != NULL)
		pending->prev = r;
	pending = r;
	pthread_mutex_unlock(&pending_lock);
}

static void
pending_remove(struct adhoc_req *r)
{
	pthread_mutex_lock(&pending_lock);
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		pending = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	pthread_mutex_unlock(&pending_lock);
}

void
adhoc_admin_unload(void)
{
	pthread_mutex_lock(&pending_lock);
	while (pending != NULL) {
		struct adhoc_req *r = pending;

		pending = r->next;
		adhoc_req_free(r);
	}
	pthread_mutex_unlock(&pending_lock);
}

/* The account's own roster get, answered by the roster module. */
static void
roster_got(const xmppd_elem *reply, void *ud)
{
	struct adhoc_req *r = ud;
	const char *jid = r->data;
	xmppd_elem *q, *x;

	pending_remove(r);

	if (reply == NULL || strcmp(xmppd_stanza_type(reply), "result") != 0 ||
	    (q = xmppd_elem_child(reply, "jabber:iq:roster", "query")) == NULL) {
		adhoc_done(r, "error", reply == NULL ? "The roster did not come" :
		    "The roster could not be read", NULL);
		return;
	}
	/* XEP-0133 4.8: the roster travels inside the result form. */
	x = form_new("result", NULL, NS_ADMIN);
	form_field(x, "accountjids", "jid-single", NULL, jid, 0);
	xmppd_elem_append_copy(x, q);
	adhoc_done(r, NULL, NULL, x);
}

static void
roster_run(struct adhoc_req *r, xmppd_elem *x)
{
	const char *given = form_get(x, "accountjids");
	char *node, bare[1100];

	/* XEP-0133 4.8 names the field accountjids; Prosody's form says
	 * accountjid. Both are taken. */
	if (given == NULL)
		given = form_get(x, "accountjid");
	node = account_of(given, r->host);
	xmppd_elem *iq;

	if (node == NULL) {
		adhoc_done(r, "error", "The Jabber ID is not one of this host's", NULL);
		return;
	}
	if (!xmppd_user_exists(node, r->host)) {
		free(node);
		adhoc_done(r, "error", "No such account", NULL);
		return;
	}
	snprintf(bare, sizeof(bare), "%s@%s", node, r->host);
	free(node);
	free(r->data);
	if ((r->data = strdup(bare)) == NULL || (iq = xmppd_elem_new(NULL, "iq")) == NULL) {
		adhoc_fail(r, "internal-server-error", NULL);
		return;
	}
	xmppd_elem_set_attr(iq, "type", "get");
	xmppd_elem_set_attr(iq, "from", bare);
	xmppd_elem_set_attr(iq, "to", bare);
	xmppd_elem_add_child(iq, "jabber:iq:roster", "query");
	/* The callback never runs before this returns (xmppd.h). */
	pending_add(r);
	if (xmppd_iq_request(r->ctx, iq, 10000, roster_got, r) < 0) {
		pending_remove(r);
		adhoc_fail(r, "internal-server-error", NULL);
	}
}

/* ---------------------------------------------------------------- */
/* 4.20 Announcement, 4.21 - 4.23 Message of the Day.                 */

struct sendlist {
	char **v;
	size_t n, cap;
};

/* Under the session table's lock: copy only. */
static void
send_one(const char *full, int available, void *ud)
{
	struct sendlist *l = ud;

	if (!available)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		char **v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			return;
		l->v = v;
		l->cap = cap;
	}
	if ((l->v[l->n] = strdup(full)) != NULL)
		l->n++;
}

static xmppd_elem *
server_message(const char *host, const char *type, const char *subject, const char *body)
{
	xmppd_elem *msg = xmppd_elem_new(NULL, "message"), *e;

	xmppd_elem_set_attr(msg, "from", host);
	xmppd_elem_set_attr(msg, "type", type);
	if (subject != NULL && *subject != '\0') {
		e = xmppd_elem_add_child(msg, NULL, "subject");
		xmppd_elem_add_text(e, subject, strlen(subject));
	}
	e = xmppd_elem_add_child(msg, NULL, "body");
	xmppd_elem_add_text(e, body, strlen(body));
	return msg;
}

/* To every available session of host; returns how many. */
static size_t
broadcast(const char *host, const char *type, const char *subject, const char *body)
{
	struct sendlist l = { 0 };
	xmppd_elem *msg = server_message(host, type, subject, body);

	(void)xmppd_sessions_foreach(host, send_one, &l);
	for (size_t i = 0; i < l.n; i++) {
		xmppd_elem *c = xmppd_elem_copy(msg);

		xmppd_elem_set_attr(c, "to", l.v[i]);
		xmppd_route(c);
		xmppd_elem_unref(c);
		free(l.v[i]);
	}
	free(l.v);
	xmppd_elem_unref(msg);
	return l.n;
}

static void
message_form(struct adhoc_req *r, const char *title, const char *subject, const char *body)
{
	xmppd_elem *x = admin_form(title, NULL), *f;

	form_field(x, "subject", "text-single", "Subject", subject, 0);
	f = form_field(x, "announcement", "text-multi", "Message", NULL, 1);
	/* XEP-0004 3.3: one value per line. */
	for (const char *p = body; p != NULL && *p != '\0';) {
		const char *nl = strchr(p, '\n');
		size_t l = nl != NULL ? (size_t)(nl - p) : strlen(p);
		char *line = strndup(p, l);

		if (line != NULL)
			form_field_value(f, line);
		free(line);
		p = nl != NULL ? nl + 1 : NULL;
	}
	adhoc_form(r, x);
}

static void
announce_form(struct adhoc_req *r)
{
	message_form(r, "Making an Announcement", NULL, NULL);
}

static void
announce_run(struct adhoc_req *r, xmppd_elem *x)
{
	char *body = form_get_multi(x, "announcement");
	char note[64];
	size_t n;

	if (body == NULL || *body == '\0') {
		free(body);
		adhoc_done(r, "error", "The announcement is empty", NULL);
		return;
	}
	/* A headline: for the online, not stored offline (RFC 6121 5.2.2). */
	n = broadcast(r->host, "headline", form_get(x, "subject"), body);
	free(body);
	snprintf(note, sizeof(note), "Sent to %zu session(s)", n);
	adhoc_done(r, "info", note, NULL);
}

/* The MOTD record, key (host, "motd"): version 1, subject NUL, body NUL. */
static size_t
motd_key(char *buf, size_t size, const char *host)
{
	return xmppd_store_key(buf, size, host, "motd", (char *)NULL);
}

struct motd_set {
	struct adhoc_req *r;
	char *subject, *body;
	int send;                   /* set-motd: to the online too */
};

static void
motd_stored(int status, void *ud)
{
	struct motd_set *ms = ud;

	if (status != XMPPD_STORE_OK)
		adhoc_fail(ms->r, "internal-server-error", NULL);
	else {
		if (ms->send)
			(void)broadcast(ms->r->host, "normal", ms->subject, ms->body);
		adhoc_done(ms->r, "info", ms->body == NULL ? "The message of the day was deleted" :
		    "The message of the day was set", NULL);
	}
	free(ms->subject);
	free(ms->body);
	free(ms);
}

/* Stores (body not NULL) or deletes the MOTD; ends r. */
static void
motd_write(struct adhoc_req *r, const char *subject, char *body_take, int send)
{
	struct motd_set *ms = calloc(1, sizeof(*ms));
	xmppd_batch *b = xmppd_batch_new(r->ctx);
	char key[512];
	size_t kl = motd_key(key, sizeof(key), r->host);

	if (ms == NULL || b == NULL || kl == 0 ||
	    (subject != NULL && (ms->subject = strdup(subject)) == NULL)) {
		free(body_take);
		if (ms != NULL)
			free(ms->subject);
		free(ms);
		xmppd_batch_free(b);
		adhoc_fail(r, "internal-server-error", NULL);
		return;
	}
	ms->r = r;
	ms->body = body_take;
	ms->send = send;
	if (body_take != NULL) {
		size_t sl = subject != NULL ? strlen(subject) : 0, bl = strlen(body_take);
		char *val = malloc(1 + sl + 1 + bl + 1);

		if (val == NULL) {
			xmppd_batch_free(b);
			motd_stored(XMPPD_STORE_ERROR, ms);
			return;
		}
		val[0] = 1;
		memcpy(val + 1, sl > 0 ? subject : "", sl + 1);
		memcpy(val + 2 + sl, body_take, bl + 1);
		(void)xmppd_batch_put(b, T_ADHOC, key, kl, val, sl + bl + 3);
		free(val);
	} else {
		(void)xmppd_batch_del(b, T_ADHOC, key, kl);
	}
	if (xmppd_batch_submit(b, motd_stored, ms) < 0)
		motd_stored(XMPPD_STORE_ERROR, ms);
}

/* Splits a stored record: 0 with the two strings (pointers into val),
 * or -1 if it is not one. */
static int
motd_decode(const void *val, size_t vlen, const char **subject_r, const char **body_r)
{
	const char *v = val, *nul;

	if (vlen < 3 || v[0] != 1 || v[vlen - 1] != '\0' ||
	    (nul = memchr(v + 1, '\0', vlen - 1)) == NULL || nul == v + vlen - 1)
		return -1;
	*subject_r = v + 1;
	*body_r = nul + 1;
	return 0;
}

static void
set_motd_form(struct adhoc_req *r)
{
	message_form(r, "Setting the Message of the Day", NULL, NULL);
}

static void
motd_run(struct adhoc_req *r, xmppd_elem *x, int send)
{
	char *body = form_get_multi(x, "announcement");

	if (body == NULL || *body == '\0') {
		free(body);
		adhoc_done(r, "error", "The message is empty", NULL);
		return;
	}
	motd_write(r, form_get(x, "subject"), body, send);
}

/* ejabberd's motd: stored for the next logins, and sent to the online. */
static void
set_motd_run(struct adhoc_req *r, xmppd_elem *x)
{
	motd_run(r, x, 1);
}

/* ejabberd's motd/update: stored only. */
static void
edit_motd_run(struct adhoc_req *r, xmppd_elem *x)
{
	motd_run(r, x, 0);
}

static void
edit_motd_got(int status, const void *val, size_t vlen, void *ud)
{
	struct adhoc_req *r = ud;
	const char *subject = NULL, *body = NULL;

	if (status == XMPPD_STORE_OK && motd_decode(val, vlen, &subject, &body) < 0)
		status = XMPPD_STORE_ERROR;
	if (status != XMPPD_STORE_OK && status != XMPPD_STORE_NOT_FOUND) {
		adhoc_fail(r, "internal-server-error", NULL);
		return;
	}
	/* XEP-0133 4.22: the form holds the current message. */
	message_form(r, "Editing the Message of the Day", subject, body);
}

static void
edit_motd_form(struct adhoc_req *r)
{
	char key[512];
	size_t kl = motd_key(key, sizeof(key), r->host);

	if (kl == 0 || xmppd_store_aget(r->ctx, T_ADHOC, key, kl, edit_motd_got, r) < 0)
		adhoc_fail(r, "internal-server-error", NULL);
}

static void
delete_motd_run(struct adhoc_req *r, xmppd_elem *x)
{
	(void)x;
	motd_write(r, NULL, NULL, 0);
}

/* At login: the MOTD once per session, when it first becomes available. */

static int motd_slot = -1;

struct motd_to {
	xmppd_jid *to;
	char *host;
};

static void
motd_got(int status, const void *val, size_t vlen, void *ud)
{
	struct motd_to *mt = ud;
	const char *subject, *body;

	if (status == XMPPD_STORE_OK && motd_decode(val, vlen, &subject, &body) == 0) {
		/* As ejabberd: type normal, from the server's domain. */
		xmppd_elem *msg = server_message(mt->host, "normal", subject, body);

		xmppd_elem_set_attr(msg, "to", xmppd_jid_full(mt->to));
		xmppd_route(msg);
		xmppd_elem_unref(msg);
	}
	xmppd_jid_free(mt->to);
	free(mt->host);
	free(mt);
}

static enum xmppd_result
motd_presence(void *args, void *ud)
{
	struct xmppd_packet_args *a = args;
	xmppd_ctx *ctx = ud;
	const char *type;
	struct motd_to *mt;
	char key[512];
	size_t kl;

	/* No 'to': the client's own availability (doc/hooks.md). */
	if (a->session == NULL || motd_slot < 0 || a->to != NULL)
		return XMPPD_CONTINUE;
	/* RFC 6121 4.2: available presence has no type. */
	type = xmppd_elem_attr(a->stanza, "type");
	if (type != NULL || xmppd_session_get(a->session, motd_slot) != NULL)
		return XMPPD_CONTINUE;
	xmppd_session_set(a->session, motd_slot, (void *)1, NULL);
	if ((mt = calloc(1, sizeof(*mt))) == NULL ||
	    (mt->to = xmppd_jid_copy(xmppd_session_jid(a->session))) == NULL ||
	    (mt->host = strdup(xmppd_jid_domain(mt->to))) == NULL ||
	    (kl = motd_key(key, sizeof(key), mt->host)) == 0 ||
	    xmppd_store_aget(ctx, T_ADHOC, key, kl, motd_got, mt) < 0) {
		if (mt != NULL) {
			xmppd_jid_free(mt->to);
			free(mt->host);
		}
		free(mt);
	}
	return XMPPD_CONTINUE;
}

/* ---------------------------------------------------------------- */
/* The table.                                                         */

const struct adhoc_cmd adhoc_admin_cmds[] = {
	{ A("add-user"), "Add a User", 1, add_user_form, add_user_run },
	{ A("delete-user"), "Delete a User", 1, delete_user_form, delete_user_run },
	{ A("change-user-password"), "Change User Password", 1, passwd_form, passwd_run },
	{ A("get-registered-users-num"), "Get Number of Registered Users", 1, NULL,
	    registered_num_run },
	{ A("get-registered-users-list"), "Get List of Registered Users", 1,
	    registered_list_form, registered_list_run },
	{ A("get-online-users-num"), "Get Number of Online Users", 1, NULL, online_num_run },
	{ A("get-online-users-list"), "Get List of Online Users", 1, online_list_form,
	    online_list_run },
	{ A("disable-user"), "Disable a User", 1, disable_user_form, disable_user_run },
	{ A("end-user-session"), "End User Session", 1, end_session_form, end_session_run },
	{ A("get-user-roster"), "Get User Roster", 1, roster_form, roster_run },
	{ A("announce"), "Send Announcement to Online Users", 1, announce_form, announce_run },
	{ A("set-motd"), "Set Message of the Day", 1, set_motd_form, set_motd_run },
	{ A("edit-motd"), "Edit Message of the Day", 1, edit_motd_form, edit_motd_run },
	{ A("delete-motd"), "Delete Message of the Day", 1, NULL, delete_motd_run },
};
const size_t adhoc_admin_ncmds = sizeof(adhoc_admin_cmds) / sizeof(adhoc_admin_cmds[0]);

int
adhoc_admin_load(xmppd_ctx *ctx)
{
	if ((motd_slot = xmppd_session_slot(ctx)) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "no session slot left");
		return -1;
	}
	return xmppd_hook_add(ctx, XMPPD_HOOK_PRESENCE_OUT, NULL, 60, motd_presence, ctx);
}
