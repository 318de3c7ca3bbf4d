/*
 * mod_adhoc - XEP-0050: Ad-Hoc Commands, with the XEP-0133 service
 * administration commands (adhoc_admin.c) and Prosody's ping command.
 *
 * Commands are offered by the server's own JID. disco#items on the node
 * http://jabber.org/protocol/commands lists those the requester may run
 * (XEP-0050 2.2): ping for every local user, the admin ones only for the
 * accounts the `admins` acl names (or the access rule of the option
 * `access`). disco#info on a command's node answers with its identity
 * (2.3); a node the requester may not run does not exist for him.
 *
 * Execution (XEP-0050 3): an execute without a session starts one; a
 * command that needs input answers status='executing' with a sessionid
 * and a form whose one action is 'complete'; the submission (action
 * complete or execute, or none, with the sessionid and the filled form)
 * runs it and answers status='completed', with a note and a result
 * form; cancel ends the session with status='canceled'. A command that
 * needs no input completes at once. An execute that already carries a
 * submitted form runs at once too (scripts). Errors (4.6): bad-request
 * with <bad-action/>, <malformed-action/> or <bad-sessionid/>, forbidden
 * for a command the requester may not run, item-not-found for a node that
 * is not a command.
 *
 * Sessions are module-wide (a requester's IQs may be handled on more than
 * one worker), in a table under a mutex: at most max_sessions_per_user
 * per requester's bare JID and 4096 in all, each forgotten after
 * session_timeout seconds without a step.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "adhoc.h"

#define MAX_SESSIONS 4096
#define NODE_PING "ping"

struct asession {
	char id[40];
	char *owner;                    /* full JID */
	char *bare;
	const struct adhoc_cmd *cmd;
	uint64_t expires_ms;
};

static struct {
	xmppd_ctx *ctx;
	const char *access;             /* access rule, or NULL: the acl 'admins' */
	uint64_t timeout_ms;
	long per_user;
	pthread_mutex_t lock;
	struct asession v[MAX_SESSIONS];
	size_t n;
} m = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const struct xmppd_option options[] = {
	/* Who may run the admin commands: an access rule; unset, the
	 * accounts of the acl 'admins'. */
	{ "access", XMPPD_OPT_STRING, NULL, 0, 0 },
	/* Seconds a multi-stage command waits for its next step. */
	{ "session_timeout", XMPPD_OPT_INT, "600", 1, 86400 },
	{ "max_sessions_per_user", XMPPD_OPT_INT, "10", 1, 1000 },
	{ NULL, 0, NULL, 0, 0 },
};

static void ping_run(struct adhoc_req *r, xmppd_elem *x);

static const struct adhoc_cmd ping_cmd = { NODE_PING, "Ping", 0, NULL, ping_run };

/* ---------------------------------------------------------------- */
/* Who may run what.                                                  */

int
adhoc_is_admin(const xmppd_jid *jid)
{
	if (jid == NULL || xmppd_jid_node(jid) == NULL)
		return 0;
	if (m.access != NULL)
		return xmppd_access_check(m.access, jid, NULL);
	return xmppd_acl_match("admins", jid, NULL);
}

static int
may_run(const struct adhoc_cmd *c, const xmppd_jid *from)
{
	if (from == NULL || xmppd_jid_node(from) == NULL ||
	    !xmppd_is_local_host(xmppd_jid_domain(from)))
		return 0;
	return !c->admin || adhoc_is_admin(from);
}

static const struct adhoc_cmd *
find_cmd(const char *node)
{
	if (node == NULL)
		return NULL;
	if (strcmp(node, NODE_PING) == 0)
		return &ping_cmd;
	for (size_t i = 0; i < adhoc_admin_ncmds; i++)
		if (strcmp(adhoc_admin_cmds[i].node, node) == 0)
			return &adhoc_admin_cmds[i];
	return NULL;
}

/* ---------------------------------------------------------------- */
/* Sessions (under m.lock).                                           */

static void
session_drop(size_t i)
{
	free(m.v[i].owner);
	free(m.v[i].bare);
	m.v[i] = m.v[--m.n];
}

static void
sessions_expire(uint64_t now)
{
	for (size_t i = 0; i < m.n;)
		if (m.v[i].expires_ms <= now)
			session_drop(i);
		else
			i++;
}

/* A new session for r: 0 with r->sessionid set, or -1 (too many). */
static int
session_new(struct adhoc_req *r)
{
	unsigned char rnd[16];
	uint64_t now = xmppd_now_ms();
	const char *bare = xmppd_jid_bare(r->from);
	struct asession *s;
	long mine = 0;
	int rc = -1;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -1;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(r->sessionid + 2 * i, 3, "%02x", rnd[i]);
	pthread_mutex_lock(&m.lock);
	sessions_expire(now);
	for (size_t i = 0; i < m.n; i++)
		if (strcmp(m.v[i].bare, bare) == 0)
			mine++;
	if (mine >= m.per_user || m.n >= MAX_SESSIONS)
		goto out;
	s = &m.v[m.n];
	memset(s, 0, sizeof(*s));
	memcpy(s->id, r->sessionid, sizeof(s->id));
	s->owner = strdup(xmppd_jid_full(r->from));
	s->bare = strdup(bare);
	if (s->owner == NULL || s->bare == NULL) {
		free(s->owner);
		free(s->bare);
		goto out;
	}
	s->cmd = r->cmd;
	s->expires_ms = now + m.timeout_ms;
	m.n++;
	rc = 0;
out:
	pthread_mutex_unlock(&m.lock);
	if (rc < 0)
		r->sessionid[0] = '\0';
	return rc;
}

/* Takes the session id of from for cmd out of the table: 0, or -1 if
 * there is none (unknown, expired, another requester's or command's). */
static int
session_take(const char *id, const xmppd_jid *from, const struct adhoc_cmd *cmd)
{
	int rc = -1;

	pthread_mutex_lock(&m.lock);
	sessions_expire(xmppd_now_ms());
	for (size_t i = 0; i < m.n; i++)
		if (strcmp(m.v[i].id, id) == 0) {
			/* XEP-0050 4.4: a session belongs to the full JID
			 * that started it. */
			if (m.v[i].cmd == cmd && strcmp(m.v[i].owner, xmppd_jid_full(from)) == 0) {
				session_drop(i);
				rc = 0;
			}
			break;
		}
	pthread_mutex_unlock(&m.lock);
	return rc;
}

static void
session_forget(const char *id)
{
	pthread_mutex_lock(&m.lock);
	for (size_t i = 0; i < m.n; i++)
		if (strcmp(m.v[i].id, id) == 0) {
			session_drop(i);
			break;
		}
	pthread_mutex_unlock(&m.lock);
}

/* ---------------------------------------------------------------- */
/* Answers.                                                           */

void
adhoc_req_free(struct adhoc_req *r)
{
	xmppd_elem_unref(r->iq);
	xmppd_jid_free(r->from);
	free(r->host);
	free(r->data);
	free(r);
}

static xmppd_elem *
command_elem(struct adhoc_req *r, const char *status)
{
	xmppd_elem *c = xmppd_elem_new(NS_COMMANDS, "command");

	xmppd_elem_set_attr(c, "node", r->cmd->node);
	if (r->sessionid[0] != '\0')
		xmppd_elem_set_attr(c, "sessionid", r->sessionid);
	xmppd_elem_set_attr(c, "status", status);
	return c;
}

void
adhoc_form(struct adhoc_req *r, xmppd_elem *x_take)
{
	xmppd_elem *c, *a;

	if (r->sessionid[0] == '\0' && session_new(r) < 0) {
		xmppd_elem_unref(x_take);
		/* XEP-0050 4.6 has no condition for it; RFC 6120 8.3.3.18. */
		xmppd_iq_error(r->iq, "resource-constraint", "too many command sessions");
		adhoc_req_free(r);
		return;
	}
	c = command_elem(r, "executing");
	/* XEP-0050 3.4: a single stage, whose one action is complete. */
	a = xmppd_elem_add_child(c, NS_COMMANDS, "actions");
	xmppd_elem_set_attr(a, "execute", "complete");
	xmppd_elem_add_child(a, NS_COMMANDS, "complete");
	xmppd_elem_append_copy(c, x_take);
	xmppd_elem_unref(x_take);
	xmppd_iq_reply(r->iq, c);
	adhoc_req_free(r);
}

void
adhoc_done(struct adhoc_req *r, const char *note_type, const char *note,
    xmppd_elem *payload_take)
{
	xmppd_elem *c;

	if (r->sessionid[0] != '\0')
		session_forget(r->sessionid);
	c = command_elem(r, "completed");
	/* XEP-0050 3.5: a note of type info, warn or error. */
	if (note != NULL) {
		xmppd_elem *n = xmppd_elem_add_child(c, NS_COMMANDS, "note");

		xmppd_elem_set_attr(n, "type", note_type != NULL ? note_type : "info");
		xmppd_elem_add_text(n, note, strlen(note));
	}
	if (payload_take != NULL) {
		xmppd_elem_append_copy(c, payload_take);
		xmppd_elem_unref(payload_take);
	}
	xmppd_iq_reply(r->iq, c);
	adhoc_req_free(r);
}

/* An error with an XEP-0050 4.6 application condition. */
static void
error_app(const xmppd_elem *iq, const char *condition, const char *app)
{
	xmppd_elem *e = xmppd_stanza_error(iq, condition, NULL), *err;

	if (e == NULL)
		return;
	if (app != NULL && (err = xmppd_elem_child(e, NULL, "error")) != NULL)
		xmppd_elem_add_child(err, NS_COMMANDS, app);
	xmppd_route(e);
	xmppd_elem_unref(e);
}

void
adhoc_fail(struct adhoc_req *r, const char *condition, const char *app)
{
	if (r->sessionid[0] != '\0')
		session_forget(r->sessionid);
	if (app != NULL)
		error_app(r->iq, condition, app);
	else
		xmppd_iq_error(r->iq, condition, NULL);
	adhoc_req_free(r);
}

/* ---------------------------------------------------------------- */
/* The ping command (Prosody's mod_adhoc).                            */

static void
ping_run(struct adhoc_req *r, xmppd_elem *x)
{
	(void)x;
	adhoc_done(r, "info", "Pong", NULL);
}

/* ---------------------------------------------------------------- */
/* The IQ.                                                            */

static const char *const actions[] = { "execute", "cancel", "prev", "next", "complete", NULL };

static enum xmppd_result
command_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_elem *cmd = xmppd_elem_child(iq, NS_COMMANDS, "command"), *x;
	const char *node, *action, *sid;
	const struct adhoc_cmd *c;
	struct adhoc_req *r;
	size_t i;

	(void)ud;
	if (cmd == NULL) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return XMPPD_STOP;
	}
	node = xmppd_elem_attr(cmd, "node");
	action = xmppd_elem_attr(cmd, "action");
	sid = xmppd_elem_attr(cmd, "sessionid");
	if ((c = find_cmd(node)) == NULL) {
		xmppd_iq_error(iq, "item-not-found", NULL);
		return XMPPD_STOP;
	}
	if (!may_run(c, from)) {
		/* XEP-0050 4.6; XEP-0133 2: admins only. */
		xmppd_iq_error(iq, "forbidden", NULL);
		return XMPPD_STOP;
	}
	if (action == NULL)
		action = "execute";
	for (i = 0; actions[i] != NULL && strcmp(actions[i], action) != 0; i++)
		;
	if (actions[i] == NULL) {
		error_app(iq, "bad-request", "malformed-action");
		return XMPPD_STOP;
	}
	x = xmppd_elem_child(cmd, NS_XDATA, "x");
	if (sid == NULL && strcmp(action, "execute") != 0) {
		/* Only execute starts a session (XEP-0050 3.1). */
		error_app(iq, "bad-request", "bad-sessionid");
		return XMPPD_STOP;
	}
	if (sid != NULL && session_take(sid, from, c) < 0) {
		error_app(iq, "bad-request", "bad-sessionid");
		return XMPPD_STOP;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL || (r->from = xmppd_jid_copy(from)) == NULL ||
	    (r->host = strdup(xmppd_jid_domain(to))) == NULL) {
		if (r != NULL)
			xmppd_jid_free(r->from);
		free(r);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return XMPPD_STOP;
	}
	r->ctx = m.ctx;
	r->iq = xmppd_elem_ref(iq);
	r->cmd = c;
	if (sid != NULL) {
		/* The session was taken: it ends with this step. */
		if (strcmp(action, "cancel") == 0) {
			/* XEP-0050 3.4.3. */
			xmppd_elem *e;

			snprintf(r->sessionid, sizeof(r->sessionid), "%s", sid);
			e = command_elem(r, "canceled");
			xmppd_iq_reply(iq, e);
			adhoc_req_free(r);
			return XMPPD_STOP;
		}
		if (strcmp(action, "prev") == 0 || strcmp(action, "next") == 0) {
			/* The one stage offers only complete (4.6). */
			error_app(iq, "bad-request", "bad-action");
			adhoc_req_free(r);
			return XMPPD_STOP;
		}
		if (!form_is_submit(x)) {
			error_app(iq, "bad-request", "bad-payload");
			adhoc_req_free(r);
			return XMPPD_STOP;
		}
		snprintf(r->sessionid, sizeof(r->sessionid), "%.39s", sid);
		c->run(r, x);
		return XMPPD_STOP;
	}
	if (c->form == NULL || form_is_submit(x))
		c->run(r, form_is_submit(x) ? x : NULL);
	else
		c->form(r);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Service discovery.                                                 */

static void
disco_item(xmppd_elem *q, const char *host, const struct adhoc_cmd *c)
{
	xmppd_elem *it = xmppd_elem_add_child(q, "http://jabber.org/protocol/disco#items", "item");

	xmppd_elem_set_attr(it, "jid", host);
	xmppd_elem_set_attr(it, "node", c->node);
	xmppd_elem_set_attr(it, "name", c->name);
}

/* XEP-0050 2.2: the commands the requester may run. */
static enum xmppd_result
disco_items(void *args, void *ud)
{
	struct xmppd_disco_args *a = args;
	const char *host = xmppd_jid_domain(a->to);

	(void)ud;
	if (xmppd_jid_node(a->to) != NULL || a->node == NULL || strcmp(a->node, NS_COMMANDS) != 0)
		return XMPPD_CONTINUE;
	if (may_run(&ping_cmd, a->from))
		disco_item(a->query, host, &ping_cmd);
	for (size_t i = 0; i < adhoc_admin_ncmds; i++)
		if (may_run(&adhoc_admin_cmds[i], a->from))
			disco_item(a->query, host, &adhoc_admin_cmds[i]);
	return XMPPD_STOP;
}

static void
info_add(xmppd_elem *q, const char *category, const char *type, const char *name,
    const char *const *features)
{
	xmppd_elem *id = xmppd_elem_add_child(q, "http://jabber.org/protocol/disco#info",
	    "identity");

	xmppd_elem_set_attr(id, "category", category);
	xmppd_elem_set_attr(id, "type", type);
	if (name != NULL)
		xmppd_elem_set_attr(id, "name", name);
	for (; *features != NULL; features++) {
		xmppd_elem *f = xmppd_elem_add_child(q, "http://jabber.org/protocol/disco#info",
		    "feature");

		xmppd_elem_set_attr(f, "var", *features);
	}
}

/* XEP-0050 2.3 (and 2.2's node itself). */
static enum xmppd_result
disco_info(void *args, void *ud)
{
	static const char *const fs[] = { NS_COMMANDS, NS_XDATA, NULL };
	static const char *const none[] = { NULL };
	struct xmppd_disco_args *a = args;
	const struct adhoc_cmd *c;

	(void)ud;
	if (xmppd_jid_node(a->to) != NULL || a->node == NULL)
		return XMPPD_CONTINUE;
	if (strcmp(a->node, NS_COMMANDS) == 0) {
		info_add(a->query, "automation", "command-list", "Commands", none);
		return XMPPD_STOP;
	}
	if ((c = find_cmd(a->node)) == NULL || !may_run(c, a->from))
		return XMPPD_CONTINUE;
	info_add(a->query, "automation", "command-node", c->name, fs);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static int
load(xmppd_ctx *ctx)
{
	m.ctx = ctx;
	m.access = xmppd_opt_string(ctx, "access");
	m.timeout_ms = (uint64_t)xmppd_opt_int(ctx, "session_timeout") * 1000;
	m.per_user = xmppd_opt_int(ctx, "max_sessions_per_user");
	if (xmppd_iq_register(ctx, NULL, NS_COMMANDS, XMPPD_IQ_SET, XMPPD_IQ_SERVER, command_iq,
	    NULL) < 0 ||
	    xmppd_disco_feature(ctx, NS_COMMANDS) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_DISCO_ITEMS, NULL, 50, disco_items, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_DISCO_INFO, NULL, 50, disco_info, NULL) < 0 ||
	    adhoc_admin_load(ctx) < 0)
		return -1;
	return 0;
}

static void
unload(xmppd_ctx *ctx)
{
	(void)ctx;
	adhoc_admin_unload();
	pthread_mutex_lock(&m.lock);
	while (m.n > 0)
		session_drop(m.n - 1);
	pthread_mutex_unlock(&m.lock);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_adhoc",
	.version = "1.0",
	.options = options,
	.load = load,
	.unload = unload,
};
