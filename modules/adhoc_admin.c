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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	char note[NOTE_MAX] = "";

	if (each_account(r, x, "accountjids", delete_one, note) == 0)
		adhoc_done(r, "error", "No Jabber ID given", NULL);
	else
		done_note(r, note, "The accounts were deleted");
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

static void
online_list_run(struct adhoc_req *r, xmppd_elem *x)
{
	const char *max = form_get(x, "max_items");
	struct online o = { 0 };
	xmppd_elem *res, *f;
	long lim = -1;

	/* XEP-0133 4.15: 'none' (or nothing) is no limit. */
	if (max != NULL && strcmp(max, "none") != 0 && *max != '\0') {
		char *end;

		lim = strtol(max, &end, 10);
		if (*end != '\0' || lim < 0) {
			adhoc_fail(r, "bad-request", "bad-payload");
			return;
		}
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
/* The table.                                                         */

const struct adhoc_cmd adhoc_admin_cmds[] = {
	{ A("add-user"), "Add a User", 1, add_user_form, add_user_run },
	{ A("delete-user"), "Delete a User", 1, delete_user_form, delete_user_run },
	{ A("change-user-password"), "Change User Password", 1, passwd_form, passwd_run },
	{ A("get-registered-users-num"), "Get Number of Registered Users", 1, NULL,
	    registered_num_run },
	{ A("get-online-users-num"), "Get Number of Online Users", 1, NULL, online_num_run },
	{ A("get-online-users-list"), "Get List of Online Users", 1, online_list_form,
	    online_list_run },
};
const size_t adhoc_admin_ncmds = sizeof(adhoc_admin_cmds) / sizeof(adhoc_admin_cmds[0]);

int
adhoc_admin_load(xmppd_ctx *ctx)
{
	(void)ctx;
	return 0;
}
