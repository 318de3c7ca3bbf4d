/*
 * api.c - the admin HTTP API (ctl/api.h, doc/admin.md "Admin HTTP API").
 *
 * POST /api/NAME with a JSON object: NAME is an xmppctl command, its
 * sub-command joined with '_' (module_list), or a module's command
 * (muc_list runs "muc list"). Arguments are named ({"user": ...}) or
 * positional ({"args": [...]}). The answer is {"result": ...} or
 * {"error": "..."} with the HTTP status saying why.
 *
 * A request is checked on its worker: method, bearer token, body size,
 * media type, JSON. It is then held (http_req_hold) and a job goes to the
 * main thread, which checks Basic credentials (the password's key
 * derivation and the store read stay off the worker), the access rule and
 * runs the command as the control socket does (ctl_run), then posts the
 * answer back to the worker. The job belongs to whoever holds it in the
 * round trip; the pending list lets api_free reclaim jobs a shutdown
 * stranded in a queue.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth/account.h"
#include "core/acl.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/worker.h"
#include "ctl/api.h"
#include "ctl/ctl.h"
#include "http/http.h"
#include "http/metrics_http.h"
#include "xmpp/jid.h"

/* Bigger bodies get 413 (the listener's http_max_body_size may be larger:
 * it bounds every route). */
#define API_MAX_BODY (64 * 1024)
#define API_MAX_NAME 64
#define API_MAX_AUTH 1024
#define API_ACCESS_RULE "api_access"
#define API_ADMIN_ACL "admins"
/* Failed authentications per client address: past API_FAIL_MAX within
 * API_FAIL_WINDOW seconds, credentials are not even checked (401) until
 * the window has passed. */
#define API_FAIL_SLOTS 256
#define API_FAIL_MAX 20
#define API_FAIL_WINDOW 60

enum api_auth { AUTH_TOKEN, AUTH_BASIC };

struct api_job {
	struct api_job *next, *prev;  /* pending, under jobs_lock */
	/* Worker side. */
	struct http_req *r;           /* NULL once the connection dropped */
	struct worker *w;
	/* In: what the main thread needs (it never touches r). */
	enum api_auth auth;
	char *user, *password;        /* Basic */
	struct sockaddr_storage client;
	char *name;
	int argc;                     /* after the command words */
	char *argv[CTL_MAX_ARGS];
	/* Out. */
	int status;
	char *body;                   /* JSON text */
	int stop_after;
};

static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct api_job *jobs;
static int api_owner;             /* the route's owner tag */

/* ---------------------------------------------------------------- */
/* Commands.                                                          */

/* The contract's built-in names (CONTRACT.md, "Admin API"), the xmppctl
 * words they run, and their named arguments in order. */
static const struct api_cmd {
	const char *name;
	const char *words[2];
	const char *params[3];
} api_cmds[] = {
	{ "status", { "status" }, { NULL } },
	{ "register", { "register" }, { "user", "host", "password" } },
	{ "unregister", { "unregister" }, { "user", "host" } },
	{ "passwd", { "passwd" }, { "user", "host", "password" } },
	{ "users", { "users" }, { "host" } },
	{ "connected", { "connected" }, { NULL } },
	{ "kick", { "kick" }, { "jid" } },
	{ "module_list", { "module", "list" }, { NULL } },
	{ "module_load", { "module", "load" }, { "name" } },
	{ "module_unload", { "module", "unload" }, { "name" } },
	{ "module_reload", { "module", "reload" }, { "name" } },
	{ "s2s", { "s2s" }, { NULL } },
	{ "components", { "components" }, { NULL } },
	{ "metrics", { "metrics" }, { NULL } },
	{ "reload", { "reload" }, { NULL } },
	{ "stop", { "stop" }, { NULL } },
};

static const struct api_cmd *
find_cmd(const char *name)
{
	for (size_t i = 0; i < sizeof(api_cmds) / sizeof(api_cmds[0]); i++)
		if (strcmp(api_cmds[i].name, name) == 0)
			return &api_cmds[i];
	return NULL;
}

/* A built-in xmppctl word: never a module command's first word. The
 * control socket's own (api-token) cannot be named (NAME has no '-'). */
static int
builtin_word(const char *w, size_t len)
{
	for (size_t i = 0; i < sizeof(api_cmds) / sizeof(api_cmds[0]); i++)
		if (strlen(api_cmds[i].words[0]) == len && strncmp(api_cmds[i].words[0], w, len) == 0)
			return 1;
	return 0;
}

/* ---------------------------------------------------------------- */
/* Failed attempts per address.                                       */

static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fail_slot {
	unsigned char addr[16];
	time_t since;
	unsigned n;
} fails[API_FAIL_SLOTS];

static void
addr_key(const struct sockaddr *sa, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET)
		memcpy(key, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
}

static struct fail_slot *
fail_slot(const unsigned char key[16])
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return &fails[h % API_FAIL_SLOTS];
}

/* 1 if addr has failed too often lately. */
static int
fail_blocked(const struct sockaddr *sa)
{
	unsigned char key[16];
	struct fail_slot *s;
	int blocked;

	addr_key(sa, key);
	pthread_mutex_lock(&fail_lock);
	s = fail_slot(key);
	blocked = memcmp(s->addr, key, 16) == 0 && s->n >= API_FAIL_MAX &&
	    time(NULL) - s->since < API_FAIL_WINDOW;
	pthread_mutex_unlock(&fail_lock);
	return blocked;
}

static void
fail_note(const struct sockaddr *sa)
{
	unsigned char key[16];
	struct fail_slot *s;
	time_t now = time(NULL);

	addr_key(sa, key);
	pthread_mutex_lock(&fail_lock);
	s = fail_slot(key);
	/* A colliding address takes the slot over: the bound is per slot,
	 * good enough against one address hammering. */
	if (memcmp(s->addr, key, 16) != 0 || now - s->since >= API_FAIL_WINDOW) {
		memcpy(s->addr, key, 16);
		s->since = now;
		s->n = 0;
	}
	s->n++;
	pthread_mutex_unlock(&fail_lock);
}

/* ---------------------------------------------------------------- */
/* Credentials.                                                       */

/*
 * Splits "Basic base64(user:password)" (RFC 7617 2) into malloc'd parts.
 * 0, or -1 if it is not that.
 */
static int
parse_basic(const char *v, char **user_r, char **pass_r)
{
	size_t len = strlen(v), pad = 0;
	unsigned char *raw;
	char *colon;
	int n;

	*user_r = *pass_r = NULL;
	if (len == 0 || len > API_MAX_AUTH || len % 4 != 0)
		return -1;
	if ((raw = malloc(len / 4 * 3 + 1)) == NULL)
		return -1;
	n = EVP_DecodeBlock(raw, (const unsigned char *)v, (int)len);
	if (n < 0) {
		free(raw);
		return -1;
	}
	/* EVP_DecodeBlock counts the padding's zero bytes too. */
	while (pad < 2 && len > pad && v[len - 1 - pad] == '=')
		pad++;
	n -= (int)pad;
	raw[n] = '\0';
	colon = memchr(raw, ':', (size_t)n);
	if (colon == NULL || memchr(raw, '\0', (size_t)n) != NULL) {
		OPENSSL_cleanse(raw, (size_t)n);
		free(raw);
		return -1;
	}
	*colon = '\0';
	*user_r = strdup((char *)raw);
	*pass_r = strdup(colon + 1);
	OPENSSL_cleanse(raw, (size_t)n);
	free(raw);
	if (*user_r == NULL || *pass_r == NULL) {
		free(*user_r);
		free(*pass_r);
		*user_r = *pass_r = NULL;
		return -1;
	}
	return 0;
}

static void
free_secret(char **s)
{
	if (*s != NULL) {
		OPENSSL_cleanse(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

/*
 * Checks Basic credentials: 200 (an account the access rule allows), 401
 * (no such account or a wrong password), 403 (a valid account not
 * allowed). The access rule api_access decides if configured; else the
 * acl admins.
 */
static int
check_basic(const char *user, const char *password, const struct sockaddr *client)
{
	struct conf *c;
	const char *err;
	jid j;
	int ok, status;

	if (jid_parse(&j, user, strlen(user), &err) < 0)
		return 401;
	c = conf_current();
	if (j.node == NULL || j.resource != NULL || !conf_is_local_host(c, j.domain) ||
	    *password == '\0' || account_check_password(j.node, j.domain, password) != 1) {
		status = 401;
	} else {
		if (access_rule_exists(c, API_ACCESS_RULE))
			ok = access_check(c, API_ACCESS_RULE, &j, client);
		else
			ok = acl_match(c, API_ADMIN_ACL, &j, client);
		status = ok ? 200 : 403;
	}
	conf_unref(c);
	jid_free(&j);
	return status;
}

/* The token after "Bearer " (RFC 6750 2.1), or NULL. */
static const char *
bearer(const char *v)
{
	if (strncasecmp(v, "Bearer ", 7) != 0)
		return NULL;
	v += 7;
	while (*v == ' ')
		v++;
	return v;
}

static const char *
basic(const char *v)
{
	if (strncasecmp(v, "Basic ", 6) != 0)
		return NULL;
	v += 6;
	while (*v == ' ')
		v++;
	return v;
}

int
api_request_authorized(struct http_req *r)
{
	const char *v = http_req_header(r, "Authorization"), *t;
	char *user, *pass;
	int status;

	if (v == NULL || fail_blocked(http_req_client(r)))
		return 0;
	if ((t = bearer(v)) != NULL)
		status = api_token_check(t, strlen(t)) ? 200 : 401;
	else if ((t = basic(v)) != NULL && parse_basic(t, &user, &pass) == 0) {
		status = check_basic(user, pass, http_req_client(r));
		free(user);
		free_secret(&pass);
	} else
		status = 401;
	if (status == 401)
		fail_note(http_req_client(r));
	return status == 200;
}

/* ---------------------------------------------------------------- */
/* Answers.                                                           */

/* What a client sent, fit for one log line: printable ASCII, at most
 * 80 bytes. */
static const char *
loggable(const char *s, char buf[84])
{
	size_t i;

	for (i = 0; s[i] != '\0' && i < 80; i++)
		buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	if (s[i] != '\0')
		buf[i++] = '+';
	buf[i] = '\0';
	return buf;
}

static char *
error_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
error_json(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *o;
	char *s;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = json_pack("{s:s}", "error", msg);
	s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

static void
respond_json(struct http_req *r, int status, const char *body)
{
	char headers[256];

	/* RFC 9110 15.5.2: a 401 carries a challenge; 15.5.6: a 405 the
	 * methods allowed. Answers hold account data: not cached. */
	snprintf(headers, sizeof(headers), "Cache-Control: no-store\r\n%s%s",
	    status == 401 ? "WWW-Authenticate: Basic realm=\"xmppd\"\r\n" : "",
	    status == 405 ? "Allow: POST\r\n" : "");
	if (body == NULL) {
		static const char oom[] = "{\"error\":\"out of memory\"}";

		http_respond(r, 500, "application/json", oom, sizeof(oom) - 1, headers);
		return;
	}
	http_respond(r, status, "application/json", body, strlen(body), headers);
}

static void
respond_error(struct http_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
respond_error(struct http_req *r, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	char *body;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	body = error_json("%s", msg);
	{
		char b1[84], b2[84], b3[84];

		log_info("api", "%s %s: %d %s", loggable(http_req_method(r), b1),
		    loggable(http_req_path(r), b2), status, loggable(msg, b3));
	}
	respond_json(r, status, body);
	free(body);
}

/* ---------------------------------------------------------------- */
/* Jobs.                                                              */

static void
job_free(struct api_job *j)
{
	free(j->user);
	free_secret(&j->password);
	free(j->name);
	for (int i = 0; i < j->argc; i++)
		free(j->argv[i]);
	free(j->body);
	free(j);
}

static void
job_unlink(struct api_job *j)
{
	pthread_mutex_lock(&jobs_lock);
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		jobs = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	pthread_mutex_unlock(&jobs_lock);
}

static void
stop_task(struct worker *w, void *a, uint64_t b)
{
	log_notice("api", "stop requested through the admin API");
	ctl_request_stop();
}

/* On the request's worker: answers (if the client is still there). */
static void
answer_task(struct worker *w, void *a, uint64_t b)
{
	struct api_job *j = a;

	if (j->r != NULL)
		respond_json(j->r, j->status, j->body);
	else
		log_debug("api", "/api/%s: the client left before the answer", j->name);
	/* `stop` answers first, then stops. */
	if (j->stop_after)
		main_post(stop_task, NULL, 0);
	job_unlink(j);
	job_free(j);
}

/* The client went away while the job was out: answer nobody. */
static void
req_gone(struct http_req *r, void *arg)
{
	struct api_job *j = arg;

	j->r = NULL;
}

/* Hands the job back to its worker: the main thread must not touch it
 * after this. */
static void
finish(struct api_job *j, int status, char *body)
{
	j->status = status;
	j->body = body;
	worker_post(j->w, answer_task, j, 0);
}

/* Runs argv[0..argc) through ctl_run; 0, or -1 if there is no such
 * command (nothing ran). */
static int
run_words(struct api_job *j, char **argv, int argc)
{
	struct ctl_call call = { 1, NULL, 0, 0 };
	struct evbuffer *out = evbuffer_new();
	const char *text;
	size_t len;
	json_t *o;

	if (out == NULL) {
		finish(j, 500, error_json("out of memory"));
		return 0;
	}
	ctl_run(&call, argc, argv, out);
	if (call.unknown) {
		evbuffer_free(out);
		json_decref(call.json);
		return -1;
	}
	len = evbuffer_get_length(out);
	text = (const char *)evbuffer_pullup(out, -1);
	if (len >= 4 && strncmp(text, "ERR ", 4) == 0) {
		/* One line: the reason. */
		const char *nl = memchr(text, '\n', len);
		int n = (int)((nl != NULL ? (size_t)(nl - text) : len) - 4);

		char *msg = strndup(text + 4, (size_t)n);
		char b[84];

		log_info("api", "/api/%s: 400 %s", j->name, msg != NULL ? loggable(msg, b) : "");
		free(msg);
		finish(j, 400, error_json("%.*s", n, text + 4));
	} else {
		json_t *res;

		if (call.json != NULL)
			res = call.json;
		else if (len > 3)
			res = json_stringn(text + 3, len - 3);
		else
			res = json_null();
		o = json_object();
		if (o != NULL && res != NULL)
			json_object_set_new(o, "result", res);
		else
			json_decref(res);
		j->stop_after = call.stop_after;
		log_info("api", "/api/%s: 200", j->name);
		/* The job is the worker's once finished. */
		finish(j, 200, o != NULL && res != NULL ? json_dumps(o, JSON_COMPACT) : NULL);
		json_decref(o);
	}
	evbuffer_free(out);
	return 0;
}

/* On the main thread: authenticates (Basic), authorizes, runs. */
static void
run_task(struct worker *w, void *a, uint64_t b)
{
	struct api_job *j = a;
	const struct api_cmd *cmd = find_cmd(j->name);
	char *argv[CTL_MAX_ARGS + 2];
	int argc = 0;
	const char *us;

	if (j->auth == AUTH_BASIC) {
		char lb[84];
		int st = fail_blocked((struct sockaddr *)&j->client) ? 401 :
		    check_basic(j->user, j->password, (struct sockaddr *)&j->client);

		free_secret(&j->password);
		if (st == 401) {
			fail_note((struct sockaddr *)&j->client);
			log_info("api", "/api/%s: 401 for '%s'", j->name, loggable(j->user, lb));
			finish(j, 401, error_json("wrong user name or password"));
			return;
		}
		if (st == 403) {
			struct conf *c = conf_current();
			int rule = access_rule_exists(c, API_ACCESS_RULE);

			conf_unref(c);
			log_info("api", "/api/%s: 403 for '%s'", j->name, loggable(j->user, lb));
			/* Say what decided: the rule, or the acl without one. */
			finish(j, 403, error_json("%s is not allowed to use the admin API "
			    "(%s %s)", j->user, rule ? "access rule" : "not in the acl",
			    rule ? API_ACCESS_RULE : API_ADMIN_ACL));
			return;
		}
	}
	if (cmd != NULL) {
		for (int i = 0; i < 2 && cmd->words[i] != NULL; i++)
			argv[argc++] = (char *)cmd->words[i];
		for (int i = 0; i < j->argc; i++)
			argv[argc++] = j->argv[i];
		if (run_words(j, argv, argc) == 0)
			return;
	} else {
		/* A module's command (xmppd_ctl_register): its whole name,
		 * else its first word and a sub-command (upload_list). A
		 * built-in word is only reachable through api_cmds. */
		if (builtin_word(j->name, strlen(j->name)))
			goto none;
		argv[argc++] = j->name;
		for (int i = 0; i < j->argc; i++)
			argv[argc++] = j->argv[i];
		if (run_words(j, argv, argc) == 0)
			return;
		us = strchr(j->name, '_');
		if (us != NULL && us[1] != '\0' && !builtin_word(j->name, (size_t)(us - j->name))) {
			char *word = strndup(j->name, (size_t)(us - j->name));

			if (word == NULL) {
				finish(j, 500, error_json("out of memory"));
				return;
			}
			argc = 0;
			argv[argc++] = word;
			argv[argc++] = (char *)us + 1;
			for (int i = 0; i < j->argc; i++)
				argv[argc++] = j->argv[i];
			if (run_words(j, argv, argc) == 0) {
				free(word);
				return;
			}
			free(word);
		}
	}
none:
	finish(j, 404, error_json("no such command '%s'", j->name));
}

/* ---------------------------------------------------------------- */
/* The handler (the request's worker).                                */

/* An argument from JSON: a string or an integer. (A string cannot hold
 * a NUL: json_loadb refuses "\u0000" without JSON_ALLOW_NUL.) */
static char *
arg_string(json_t *v)
{
	char buf[32];

	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
		return strdup(buf);
	}
	return NULL;
}

/* Fills j->argv from the body; 0, or -1 after answering 400. */
static int
take_args(struct http_req *r, struct api_job *j, json_t *root)
{
	const struct api_cmd *cmd = find_cmd(j->name);
	json_t *args = json_object_get(root, "args");
	size_t max = CTL_MAX_ARGS - 2, i;
	json_t *v;

	if (args != NULL) {
		if (!json_is_array(args)) {
			respond_error(r, 400, "\"args\" must be an array of strings");
			return -1;
		}
		if (json_array_size(args) > max) {
			respond_error(r, 400, "too many arguments (at most %zu)", max);
			return -1;
		}
		json_array_foreach(args, i, v) {
			if ((j->argv[j->argc] = arg_string(v)) == NULL) {
				respond_error(r, 400, "argument %zu is not a string", i + 1);
				return -1;
			}
			j->argc++;
		}
		return 0;
	}
	/* Named arguments: the built-in commands' (others take "args"). */
	for (i = 0; cmd != NULL && i < 3 && cmd->params[i] != NULL; i++) {
		v = json_object_get(root, cmd->params[i]);
		if (v == NULL) {
			respond_error(r, 400, "missing argument \"%s\"", cmd->params[i]);
			return -1;
		}
		if ((j->argv[j->argc] = arg_string(v)) == NULL) {
			respond_error(r, 400, "argument \"%s\" is not a string", cmd->params[i]);
			return -1;
		}
		j->argc++;
	}
	return 0;
}

/* "application/json", with parameters or not (RFC 8259 11). */
static int
is_json_type(const char *ct)
{
	size_t n = strlen("application/json");

	if (ct == NULL || strncasecmp(ct, "application/json", n) != 0)
		return 0;
	return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t';
}

static void
api_handler(struct http_req *r, void *arg)
{
	const char *path = http_req_path(r), *name = path + strlen("/api/");
	const char *auth = http_req_header(r, "Authorization"), *t;
	const struct sockaddr *client = http_req_client(r);
	struct api_job *j = NULL;
	json_t *root = NULL;
	json_error_t jerr;
	const char *body;
	size_t len, nlen = strlen(name);

	if (strcmp(http_req_method(r), "POST") != 0) {
		respond_error(r, 405, "use POST");
		return;
	}
	if (nlen == 0 || nlen > API_MAX_NAME || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_")
	    != nlen) {
		respond_error(r, 404, "no such command");
		return;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL || (j->name = strdup(name)) == NULL) {
		respond_error(r, 500, "out of memory");
		goto out;
	}
	/* Credentials (RFC 9110 11.6.2): a token now, a password on the
	 * main thread. */
	if (auth == NULL) {
		respond_error(r, 401, "credentials required (Basic or Bearer)");
		goto out;
	}
	if (fail_blocked(client)) {
		respond_error(r, 401, "too many failed attempts from this address; try later");
		goto out;
	}
	if ((t = bearer(auth)) != NULL) {
		if (!api_token_check(t, strlen(t))) {
			fail_note(client);
			respond_error(r, 401, "invalid token");
			goto out;
		}
		j->auth = AUTH_TOKEN;
	} else if ((t = basic(auth)) != NULL && parse_basic(t, &j->user, &j->password) == 0) {
		j->auth = AUTH_BASIC;
	} else {
		fail_note(client);
		respond_error(r, 401, "credentials required (Basic or Bearer)");
		goto out;
	}
	body = http_req_body(r, &len);
	/* RFC 9110 15.5.14 (413) and 15.5.16 (415). */
	if (len > API_MAX_BODY) {
		respond_error(r, 413, "the body is over %d bytes", API_MAX_BODY);
		goto out;
	}
	if (len > 0 && !is_json_type(http_req_header(r, "Content-Type"))) {
		respond_error(r, 415, "the body must be application/json");
		goto out;
	}
	/* No body at all: no arguments. */
	root = len > 0 ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : json_object();
	if (root == NULL) {
		respond_error(r, 400, "invalid JSON: %s (line %d, column %d)", jerr.text,
		    jerr.line, jerr.column);
		goto out;
	}
	if (!json_is_object(root)) {
		respond_error(r, 400, "the body must be a JSON object");
		goto out;
	}
	if (take_args(r, j, root) < 0)
		goto out;
	json_decref(root);
	memcpy(&j->client, client, client->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	j->r = r;
	j->w = http_req_worker(r);
	pthread_mutex_lock(&jobs_lock);
	j->next = jobs;
	if (jobs != NULL)
		jobs->prev = j;
	jobs = j;
	pthread_mutex_unlock(&jobs_lock);
	http_req_hold(r, req_gone, j);
	main_post(run_task, j, 0);
	return;
out:
	json_decref(root);
	if (j != NULL)
		job_free(j);
}

int
api_init(void)
{
	/* /metrics takes the same credentials from an address that
	 * metrics_access refuses (doc/admin.md, "Metrics"). */
	http_metrics_set_auth(api_request_authorized);
	return http_route_add("/api/", api_handler, NULL, &api_owner);
}

void
api_free(void)
{
	struct api_job *j;

	/* http_free dropped the route. */
	pthread_mutex_lock(&jobs_lock);
	while ((j = jobs) != NULL) {
		jobs = j->next;
		job_free(j);
	}
	pthread_mutex_unlock(&jobs_lock);
}
