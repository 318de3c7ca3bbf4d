/*
 * mod_register - XEP-0077: In-Band Registration.
 *
 * Off unless listed in 'modules'. Three uses of jabber:iq:register:
 *  - before authentication, on an encrypted stream (XMPPD_IQ_STREAM): the
 *    registration form, and account creation (XEP-0077 3.1), subject to
 *    the access rule `access` (checked on the new JID and the client's
 *    address), a per-address rate limit and a minimum password length;
 *    the stream feature <register xmlns='http://jabber.org/features/
 *    iq-register'/> is offered unless `access` is "none" (XEP-0077 8);
 *  - from an authenticated user, to the server or to the user's own bare
 *    JID (no 'to'): the form with <registered/> (3.1), a password change
 *    (3.3), and cancellation with <remove/> (3.2), which answers, then
 *    removes the account (remove_user runs, the sessions are closed with
 *    a <not-authorized/> stream error).
 *
 * Choices where the XEP leaves room:
 *  - min_password_length defaults to 1 (a password must not be empty,
 *    XEP-0077 3.1 and 3.3, and nothing more, like ejabberd's default of no
 *    password_strength rule); it counts characters, not bytes. A deployment
 *    that wants more sets it.
 *  - The rate limit counts successful registrations per client address
 *    (IPv6 per full address), for the whole server rather than per worker:
 *    the kernel spreads one address's connections over the workers, so a
 *    per-worker count would multiply the limit by the number of workers.
 *    Registrations are rare, so the one mutex is not contended. Too many
 *    get <resource-constraint/> (type wait), as in ejabberd.
 *  - A password change must name the user's own account in <username/>
 *    (node or bare JID); another name gets <not-allowed/>.
 *  - Errors to a password change do not echo the request (XEP-0077 3.3).
 *    Errors before authentication do (they go back to the sender only,
 *    on its encrypted stream, as the examples of 3.1 show).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <xmppd.h>

#define NS_REGISTER "jabber:iq:register"
#define NS_FEATURE "http://jabber.org/features/iq-register"
#define MAX_PASSWORD 1023       /* bytes; SASLprep and PBKDF2 need a bound */
#define RATE_SLOTS 1024         /* addresses remembered by the rate limit */
#define INSTRUCTIONS "Choose a username and password to register with this server."

static const struct xmppd_option options[] = {
	/* Access rule for creating accounts (doc/configuration.md). */
	{ "access", XMPPD_OPT_STRING, "all", 0, 0 },
	/* Registrations per address per period; 0 means no limit. */
	{ "ip_rate_limit", XMPPD_OPT_INT, "1", 0, 1000000 },
	{ "ip_rate_period", XMPPD_OPT_INT, "60", 1, 86400 },
	{ "min_password_length", XMPPD_OPT_INT, "1", 1, MAX_PASSWORD },
	{ "allow_password_change", XMPPD_OPT_BOOL, "true", 0, 0 },
	{ "allow_cancel", XMPPD_OPT_BOOL, "true", 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

struct rate {
	unsigned char addr[16]; /* IPv4 as ::ffff:a.b.c.d */
	uint64_t since_ms;      /* start of the current period; 0 = free */
	long count;
};

/* Options are read at load and read-only afterwards (a module is loaded
 * once; changed options reload it). The rate table has its own lock. */
static struct {
	xmppd_ctx *ctx;
	char access[256];
	long rate_limit;
	uint64_t rate_period_ms;
	long min_password;
	int allow_change, allow_cancel;
	pthread_mutex_t lock;
	struct rate rates[RATE_SLOTS];
} reg;

/* ---------------------------------------------------------------- */
/* Rate limit.                                                        */

static int
addr_key(const struct sockaddr *sa, unsigned char out[16])
{
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET) {
		memcpy(out, v4mapped, 12);
		memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return 0;
	}
	return -1;
}

/*
 * Takes one registration from addr's allowance: 0, or -1 if it is used
 * up. The oldest entry makes room for a new address when the table is
 * full (an attacker with many addresses can only free the others' slots
 * early, not get more than the limit from one address at a time).
 */
static int
rate_take(const struct sockaddr *sa)
{
	unsigned char key[16];
	uint64_t now = xmppd_now_ms() + 1;      /* never 0: 0 marks a free slot */
	struct rate *r = NULL, *oldest = NULL;
	int rc = 0;

	if (reg.rate_limit == 0 || addr_key(sa, key) < 0)
		return 0;
	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < RATE_SLOTS && r == NULL; i++) {
		struct rate *e = &reg.rates[i];

		if (e->since_ms != 0 && memcmp(e->addr, key, 16) == 0)
			r = e;
		else if (oldest == NULL || e->since_ms < oldest->since_ms)
			oldest = e;
	}
	if (r == NULL) {
		r = oldest;
		memcpy(r->addr, key, 16);
		r->since_ms = now;
		r->count = 0;
	} else if (now - r->since_ms >= reg.rate_period_ms) {
		r->since_ms = now;
		r->count = 0;
	}
	if (r->count >= reg.rate_limit)
		rc = -1;
	else
		r->count++;
	pthread_mutex_unlock(&reg.lock);
	return rc;
}

/* Gives back what rate_take took, when the registration failed after. */
static void
rate_return(const struct sockaddr *sa)
{
	unsigned char key[16];

	if (reg.rate_limit == 0 || addr_key(sa, key) < 0)
		return;
	pthread_mutex_lock(&reg.lock);
	for (size_t i = 0; i < RATE_SLOTS; i++)
		if (reg.rates[i].since_ms != 0 && memcmp(reg.rates[i].addr, key, 16) == 0) {
			if (reg.rates[i].count > 0)
				reg.rates[i].count--;
			break;
		}
	pthread_mutex_unlock(&reg.lock);
}

/* ---------------------------------------------------------------- */
/* Helpers.                                                           */

static void
add_text(xmppd_elem *parent, const char *name, const char *text)
{
	xmppd_elem *e = xmppd_elem_add_child(parent, NS_REGISTER, name);

	if (text != NULL)
		xmppd_elem_add_text(e, text, strlen(text));
}

/* Characters, not bytes: a UTF-8 continuation byte does not count. */
static size_t
utf8_len(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* Why pw cannot be a password here, or NULL if it can. */
static const char *
password_problem(const char *pw)
{
	if (pw == NULL || *pw == '\0')
		return "a password is required";
	if (strlen(pw) > MAX_PASSWORD)
		return "the password is too long";
	if (utf8_len(pw) < (size_t)reg.min_password)
		return "the password is too short";
	return NULL;
}

/* An error reply without the request's payload (XEP-0077 3.3: a password
 * must not travel back). Only for routed IQs: a stream IQ's reply must be
 * made from the IQ itself. */
static void
error_no_echo(const xmppd_elem *iq, const char *condition, const char *text)
{
	xmppd_elem *bare = xmppd_elem_new(NULL, "iq");
	static const char *const attrs[] = { "id", "type", "from", "to", NULL };

	for (size_t i = 0; attrs[i] != NULL; i++)
		xmppd_elem_set_attr(bare, attrs[i], xmppd_elem_attr(iq, attrs[i]));
	xmppd_iq_error(bare, condition, text);
	xmppd_elem_unref(bare);
}

/* XEP-0077 3.1: the fields, filled in for a registered user. */
static void
send_form(const xmppd_elem *iq, const char *node)
{
	xmppd_elem *q = xmppd_elem_new(NS_REGISTER, "query");

	if (node != NULL)
		(void)xmppd_elem_add_child(q, NS_REGISTER, "registered");
	add_text(q, "instructions", node != NULL ?
	    "You are registered. Send a new password to change it, or remove to cancel."
	    : INSTRUCTIONS);
	add_text(q, "username", node);
	add_text(q, "password", NULL);
	xmppd_iq_reply(iq, q);
}

/* ---------------------------------------------------------------- */
/* Account creation (before authentication).                          */

static void
create_account(xmppd_elem *iq, xmppd_elem *q, const char *host)
{
	const char *user = xmppd_elem_child_text(q, NS_REGISTER, "username");
	const char *pw = xmppd_elem_child_text(q, NS_REGISTER, "password");
	const struct sockaddr *sa = xmppd_iq_stream_addr(iq);
	const char *problem, *err = NULL;
	char *node = NULL;
	xmppd_jid *j = NULL;
	char where[INET6_ADDRSTRLEN] = "?";

	if (sa != NULL && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, where,
		    sizeof(where));
	else if (sa != NULL && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, where,
		    sizeof(where));

	/* 3.1: every field of the form, none empty, else not-acceptable. */
	if (user == NULL || *user == '\0') {
		xmppd_iq_error(iq, "not-acceptable", "a username is required");
		return;
	}
	if ((problem = password_problem(pw)) != NULL) {
		xmppd_iq_error(iq, "not-acceptable", problem);
		return;
	}
	if ((node = xmppd_nodeprep(user)) == NULL || *node == '\0' ||
	    (j = xmppd_jid_make(node, host, NULL)) == NULL) {
		xmppd_iq_error(iq, "jid-malformed", "the username is not valid");
		goto out;
	}
	if (!xmppd_access_check(reg.access, j, sa)) {
		xmppd_log(reg.ctx, XMPPD_LOG_INFO, "registration of %s from %s denied by '%s'",
		    xmppd_jid_bare(j), where, reg.access);
		xmppd_iq_error(iq, "forbidden", "registration is not allowed");
		goto out;
	}
	/* Checked before the rate limit, so a taken name costs nothing;
	 * xmppd_user_create checks again under the store's lock. */
	if (xmppd_user_exists(node, host)) {
		xmppd_iq_error(iq, "conflict", NULL);
		goto out;
	}
	if (rate_take(sa) < 0) {
		xmppd_iq_error(iq, "resource-constraint",
		    "too many registrations from your address; try again later");
		goto out;
	}
	if (xmppd_user_create(node, host, pw, &err) < 0) {
		rate_return(sa);
		if (err != NULL && strcmp(err, "exists") == 0)
			xmppd_iq_error(iq, "conflict", NULL);
		else if (err != NULL && strstr(err, "password") != NULL)
			xmppd_iq_error(iq, "not-acceptable", err);
		else
			xmppd_iq_error(iq, "internal-server-error", NULL);
		goto out;
	}
	xmppd_log(reg.ctx, XMPPD_LOG_NOTICE, "registered %s from %s", xmppd_jid_bare(j), where);
	xmppd_iq_reply(iq, NULL);
out:
	xmppd_jid_free(j);
	free(node);
}

/* ---------------------------------------------------------------- */
/* Password change and cancellation (authenticated).                  */

/* 1 if name (a node, or a bare JID) is user's own account. */
static int
names_user(const char *name, const xmppd_jid *user)
{
	char *node;
	int same;

	if (strchr(name, '@') != NULL) {
		xmppd_jid *j = xmppd_jid_parse(name);

		same = j != NULL && xmppd_jid_resource(j) == NULL &&
		    strcmp(xmppd_jid_bare(j), xmppd_jid_bare(user)) == 0;
		xmppd_jid_free(j);
		return same;
	}
	node = xmppd_nodeprep(name);
	same = node != NULL && strcmp(node, xmppd_jid_node(user)) == 0;
	free(node);
	return same;
}

/* XEP-0077 3.3. */
static void
change_password(xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *user)
{
	const char *name = xmppd_elem_child_text(q, NS_REGISTER, "username");
	const char *pw = xmppd_elem_child_text(q, NS_REGISTER, "password");
	const char *problem, *err = NULL;

	if (name == NULL || pw == NULL) {
		error_no_echo(iq, "bad-request", "username and password are required");
		return;
	}
	if (!names_user(name, user)) {
		error_no_echo(iq, "not-allowed", "only your own password can be changed");
		return;
	}
	if (!reg.allow_change) {
		error_no_echo(iq, "not-allowed", "password changes are disabled");
		return;
	}
	/* An empty password keeps the old one (3.3). */
	if ((problem = password_problem(pw)) != NULL) {
		error_no_echo(iq, *pw == '\0' ? "bad-request" : "not-acceptable", problem);
		return;
	}
	if (xmppd_user_set_password(xmppd_jid_node(user), xmppd_jid_domain(user), pw,
	    &err) < 0) {
		error_no_echo(iq, err != NULL && strstr(err, "password") != NULL ?
		    "not-acceptable" : "internal-server-error",
		    err != NULL && strstr(err, "password") != NULL ? err : NULL);
		return;
	}
	xmppd_log(reg.ctx, XMPPD_LOG_NOTICE, "%s changed the password", xmppd_jid_bare(user));
	xmppd_iq_reply(iq, NULL);
}

/* XEP-0077 3.2: the answer first, then the removal, which closes the
 * user's streams (with <not-authorized/>, as 3.2 asks). */
static void
cancel(xmppd_elem *iq, xmppd_elem *q, xmppd_elem *remove, const xmppd_jid *user)
{
	const char *err = NULL;

	if (xmppd_elem_first_child(q) != remove || xmppd_elem_next_sibling(remove) != NULL) {
		xmppd_iq_error(iq, "bad-request", "remove must be alone");
		return;
	}
	if (!reg.allow_cancel) {
		xmppd_iq_error(iq, "not-allowed", "accounts cannot be removed in-band");
		return;
	}
	xmppd_iq_reply(iq, NULL);
	if (xmppd_user_remove(xmppd_jid_node(user), xmppd_jid_domain(user), &err) < 0)
		xmppd_log(reg.ctx, XMPPD_LOG_WARNING, "%s: cannot remove the account: %s",
		    xmppd_jid_bare(user), err != NULL ? err : "?");
	else
		xmppd_log(reg.ctx, XMPPD_LOG_NOTICE, "%s removed the account",
		    xmppd_jid_bare(user));
}

/* ---------------------------------------------------------------- */
/* The handler.                                                       */

static enum xmppd_result
register_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_elem *q = xmppd_elem_first_child(iq), *remove;
	int set = strcmp(xmppd_stanza_type(iq), "set") == 0;
	xmppd_jid *user;

	/* RFC 6120 8.2.3: one payload (the stream path does not check). */
	if (q == NULL || xmppd_elem_next_sibling(q) != NULL ||
	    strcmp(xmppd_elem_name(q), "query") != 0) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return XMPPD_STOP;
	}
	remove = xmppd_elem_child(q, NS_REGISTER, "remove");

	/* Before authentication: no 'from'. */
	if (from == NULL) {
		if (strcmp(reg.access, "none") == 0)
			/* 3.1: registration is not offered here. */
			xmppd_iq_error(iq, "service-unavailable", NULL);
		else if (!set)
			send_form(iq, NULL);
		else if (remove != NULL)
			/* 3.2: nothing to cancel without an account. */
			xmppd_iq_error(iq, "unexpected-request", "authenticate first");
		else
			create_account(iq, q, xmppd_jid_domain(to));
		return XMPPD_STOP;
	}

	/* Authenticated: about the sender's own account, at this host, sent
	 * to the server or to the sender's bare JID. */
	if (xmppd_jid_node(from) == NULL ||
	    strcmp(xmppd_jid_domain(from), xmppd_jid_domain(to)) != 0 ||
	    (xmppd_jid_node(to) != NULL && strcmp(xmppd_jid_node(to), xmppd_jid_node(from)) != 0)) {
		xmppd_iq_error(iq, "forbidden", "not your account");
		return XMPPD_STOP;
	}
	if ((user = xmppd_jid_make(xmppd_jid_node(from), xmppd_jid_domain(from), NULL)) == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return XMPPD_STOP;
	}
	if (!set)
		send_form(iq, xmppd_jid_node(user));
	else if (remove != NULL)
		cancel(iq, q, remove, user);
	else
		change_password(iq, q, user);
	xmppd_jid_free(user);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static int
load(xmppd_ctx *ctx)
{
	const char *access = xmppd_opt_string(ctx, "access");
	xmppd_elem *feature;
	int rc;

	reg.ctx = ctx;
	if (access == NULL || strlen(access) >= sizeof(reg.access)) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "access: expected a rule name");
		return -1;
	}
	strcpy(reg.access, access);
	reg.rate_limit = xmppd_opt_int(ctx, "ip_rate_limit");
	reg.rate_period_ms = (uint64_t)xmppd_opt_int(ctx, "ip_rate_period") * 1000;
	reg.min_password = xmppd_opt_int(ctx, "min_password_length");
	reg.allow_change = xmppd_opt_bool(ctx, "allow_password_change");
	reg.allow_cancel = xmppd_opt_bool(ctx, "allow_cancel");
	memset(reg.rates, 0, sizeof(reg.rates));
	if (pthread_mutex_init(&reg.lock, NULL) != 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot create a mutex");
		return -1;
	}

	if (xmppd_iq_register(ctx, NULL, NS_REGISTER, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_SERVER | XMPPD_IQ_ACCOUNT | XMPPD_IQ_STREAM, register_iq, NULL) < 0 ||
	    xmppd_disco_feature(ctx, NS_REGISTER) < 0)
		return -1;
	/* XEP-0077 8: offered before authentication (the core shows it on
	 * encrypted streams only), unless nobody may register. */
	if (strcmp(reg.access, "none") == 0)
		return 0;
	feature = xmppd_elem_new(NS_FEATURE, "register");
	rc = xmppd_stream_feature(ctx, feature, 0);
	xmppd_elem_unref(feature);
	return rc;
}

static void
unload(xmppd_ctx *ctx)
{
	pthread_mutex_destroy(&reg.lock);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_register",
	.version = "1.0",
	.options = options,
	.load = load,
	.unload = unload,
};
