/*
 * ctl.c - the control socket server (main thread).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "auth/account.h"
#include "c2s/c2s.h"
#include "core/clock.h"
#include "component/component.h"
#include "core/conf.h"
#include "core/log.h"
#include "abi/module.h"
#include "core/registry.h"
#include "core/worker.h"
#include "ctl/api.h"
#include "ctl/ctl.h"
#include "http/metrics_http.h"
#include "net/listener.h"
#include "router/session.h"
#include "router/sm.h"
#include "router/users.h"
#include "s2s/s2s.h"
#include "xmpp/jid.h"

static struct listener *ctl_listener;
static const struct ctl_daemon *daemon_ops;
static char *ctl_path;

struct ctl_conn {
	struct bufferevent *bev;
	struct ctl_call call;
};

static void
reply_ok(struct evbuffer *out)
{
	evbuffer_add_printf(out, "OK\n");
}

static void
reply_err(struct evbuffer *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
reply_err(struct evbuffer *out, const char *fmt, ...)
{
	va_list ap;

	evbuffer_add_printf(out, "ERR ");
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add_printf(out, "\n");
}

/* Prepares USER and HOST and checks that HOST is served here. */
static int
account_args(struct evbuffer *out, const char *user, const char *host,
    char **node_r, char **domain_r)
{
	struct conf *c;
	int local;

	*node_r = jid_nodeprep(user, strlen(user));
	*domain_r = jid_nameprep(host, strlen(host));
	if (*node_r == NULL) {
		reply_err(out, "invalid user name '%s'", user);
		goto bad;
	}
	if (*domain_r == NULL) {
		reply_err(out, "invalid host name '%s'", host);
		goto bad;
	}
	c = conf_current();
	local = conf_is_local_host(c, *domain_r);
	conf_unref(c);
	if (!local) {
		reply_err(out, "host '%s' is not served here (see 'hosts' in the configuration)",
		    host);
		goto bad;
	}
	return 0;
bad:
	free(*node_r);
	free(*domain_r);
	*node_r = *domain_r = NULL;
	return -1;
}

/* Closes every session of j (bare: all resources). Returns how many. */
static size_t
kick_jid(const jid *j, const char *condition, const char *text)
{
	struct sm_target t[64];
	size_t n = sm_find(j, t, 64);

	for (size_t i = 0; i < n && i < 64; i++)
		session_kick(t[i].worker, t[i].sid, condition, text);
	return n;
}

/*
 * The listing commands produce rows once: each row goes to the text that
 * xmppctl prints and, for the admin HTTP API (ctl/api.c), to a JSON array
 * (json, NULL when the caller wants text only).
 */
struct list_ctx {
	struct evbuffer *out;
	const char *host;
	json_t *json;
};

static void
list_user(void *ud, const char *node)
{
	struct list_ctx *l = ud;

	evbuffer_add_printf(l->out, "%s@%s\n", node, l->host);
	if (l->json != NULL)
		json_array_append_new(l->json, json_string(node));
}

static void
list_session(void *ud, const char *full, unsigned worker, const char *addr, int priority,
    int available)
{
	struct list_ctx *l = ud;

	evbuffer_add_printf(l->out, "%s\t%u\t%s\t%d\n", full, worker, addr, priority);
	if (l->json != NULL)
		json_array_append_new(l->json, json_pack("{s:s, s:I, s:s, s:I, s:b}",
		    "jid", full, "worker", (json_int_t)worker, "address", addr,
		    "priority", (json_int_t)priority, "available", available));
}

static void
list_module(void *ud, const char *name, const char *version, const char *path)
{
	struct list_ctx *l = ud;

	evbuffer_add_printf(l->out, "%s\t%s\t%s\n", name, version, path);
	if (l->json != NULL)
		json_array_append_new(l->json, json_pack("{s:s, s:s, s:s}", "name", name,
		    "version", version, "path", path));
}

/* A field of a text row: NULL for "-" (none). */
static json_t *
field_json(const char *s)
{
	return strcmp(s, "-") == 0 ? json_null() : json_string(s);
}

/*
 * s2s links as JSON, from the rows s2s_list printed (doc/federation.md:
 * direction, local, remote, auth, TLS, stanzas in, out, state, address),
 * so that the two never disagree.
 */
static json_t *
s2s_rows_json(struct evbuffer *rows)
{
	static const char *const names[] = { "direction", "local", "remote", "auth", "tls",
	    "stanzas_in", "stanzas_out", "state", "address" };
	json_t *arr = json_array();
	char *line;

	while ((line = evbuffer_readln(rows, NULL, EVBUFFER_EOL_LF)) != NULL) {
		json_t *o = json_object();
		char *save = NULL, *f = strtok_r(line, "\t", &save);

		for (size_t i = 0; f != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
			if (i == 5 || i == 6)
				json_object_set_new(o, names[i], json_integer(strtoll(f, NULL, 10)));
			else
				json_object_set_new(o, names[i], field_json(f));
			f = strtok_r(NULL, "\t", &save);
		}
		json_array_append_new(arr, o);
		free(line);
	}
	return arr;
}

static int
nargs_ok(struct evbuffer *out, int argc, int want, const char *usage)
{
	if (argc == want)
		return 1;
	reply_err(out, "usage: %s", usage);
	return 0;
}

void
ctl_run(struct ctl_call *call, int argc, char **argv, struct evbuffer *out)
{
	const char *cmd = argv[0];
	const char *err;
	char *node = NULL, *host = NULL;

	call->json = NULL;
	call->unknown = 0;
	if (strcmp(cmd, "status") == 0) {
		struct listener_stats ls;
		long long up = (long long)(time(NULL) - clock_start_time());

		reply_ok(out);
		evbuffer_add_printf(out, "running xmppd %s, up %lld s, %u workers, "
		    "%zu sessions, %lu connections\n", PACKAGE_VERSION, up, worker_count(),
		    sm_session_count(), c2s_connection_count());
		/* Failed accepts, out of descriptors above all (net/listener.h). */
		listener_stats_get(&ls);
		if (call->want_json)
			call->json = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			    "version", PACKAGE_VERSION, "build", XMPPD_BUILD,
			    "uptime", (json_int_t)up, "workers", (json_int_t)worker_count(),
			    "sessions", (json_int_t)sm_session_count(),
			    "connections", (json_int_t)c2s_connection_count(),
			    "s2s_connections", (json_int_t)s2s_connection_count(),
			    "accept_pauses", (json_int_t)ls.pauses,
			    "accept_paused_now", (json_int_t)ls.paused_now);
		if (ls.last == 0)
			evbuffer_add_printf(out, "accept pauses: 0, last never, "
			    "paused now: %u of %u sockets\n", ls.paused_now, ls.listeners);
		else
			evbuffer_add_printf(out, "accept pauses: %lu, last %lld s ago (%s), "
			    "paused now: %u of %u sockets\n", ls.pauses,
			    (long long)(time(NULL) - ls.last), strerror(ls.last_errno),
			    ls.paused_now, ls.listeners);
		evbuffer_add_printf(out, "build: %s\n", XMPPD_BUILD);
	} else if (strcmp(cmd, "register") == 0) {
		if (!nargs_ok(out, argc, 4, "register USER HOST PASSWORD") ||
		    account_args(out, argv[1], argv[2], &node, &host) < 0)
			return;
		if (*argv[3] == '\0')
			reply_err(out, "the password is empty");
		/* Through the module API, so that register_user runs. */
		else if (users_create(node, host, argv[3], &err) < 0)
			reply_err(out, "cannot register %s@%s: %s", node, host,
			    strcmp(err, "exists") == 0 ? "the account already exists" : err);
		else {
			reply_ok(out);
			evbuffer_add_printf(out, "registered %s@%s\n", node, host);
			log_notice("ctl", "registered %s@%s", node, host);
		}
	} else if (strcmp(cmd, "unregister") == 0) {
		if (!nargs_ok(out, argc, 3, "unregister USER HOST") ||
		    account_args(out, argv[1], argv[2], &node, &host) < 0)
			return;
		/* users_remove runs remove_user, deletes the account with
		 * every module's data for it, and closes its sessions. */
		if (users_remove(node, host, &err) < 0) {
			reply_err(out, "cannot unregister %s@%s: %s", node, host,
			    strcmp(err, "not found") == 0 ? "no such account" : err);
		} else {
			reply_ok(out);
			evbuffer_add_printf(out, "unregistered %s@%s\n", node, host);
			log_notice("ctl", "unregistered %s@%s", node, host);
		}
	} else if (strcmp(cmd, "passwd") == 0) {
		if (!nargs_ok(out, argc, 4, "passwd USER HOST PASSWORD") ||
		    account_args(out, argv[1], argv[2], &node, &host) < 0)
			return;
		if (*argv[3] == '\0')
			reply_err(out, "the password is empty");
		else if (account_set_password(node, host, argv[3], &err) < 0)
			reply_err(out, "cannot change the password of %s@%s: %s", node, host,
			    strcmp(err, "not found") == 0 ? "no such account" : err);
		else {
			reply_ok(out);
			evbuffer_add_printf(out, "password changed for %s@%s\n", node, host);
		}
	} else if (strcmp(cmd, "users") == 0) {
		struct evbuffer *body = evbuffer_new();
		long n;

		if (!nargs_ok(out, argc, 2, "users HOST")) {
			evbuffer_free(body);
			return;
		}
		host = jid_nameprep(argv[1], strlen(argv[1]));
		if (host != NULL) {
			struct list_ctx l = { body, host, call->want_json ? json_array() : NULL };

			n = account_list(host, list_user, &l);
			call->json = l.json;
		} else {
			n = -1;
		}
		if (n < 0) {
			reply_err(out, "cannot list the users of '%s'", argv[1]);
			json_decref(call->json);
			call->json = NULL;
		} else {
			reply_ok(out);
			evbuffer_add_buffer(out, body);
		}
		evbuffer_free(body);
	} else if (strcmp(cmd, "connected") == 0) {
		if (!nargs_ok(out, argc, 1, "connected"))
			return;
		struct list_ctx l = { out, NULL, call->want_json ? json_array() : NULL };

		reply_ok(out);
		sm_foreach(list_session, &l);
		call->json = l.json;
	} else if (strcmp(cmd, "kick") == 0) {
		jid j;

		if (!nargs_ok(out, argc, 2, "kick JID"))
			return;
		if (jid_parse(&j, argv[1], strlen(argv[1]), &err) < 0) {
			reply_err(out, "invalid JID '%s': %s", argv[1], err);
			return;
		}
		if (kick_jid(&j, "policy-violation", "kicked by an administrator") == 0) {
			reply_err(out, "%s has no session", j.full);
		} else {
			reply_ok(out);
			evbuffer_add_printf(out, "kicked %s\n", j.full);
		}
		jid_free(&j);
	} else if (strcmp(cmd, "module") == 0) {
		const char *sub = argc > 1 ? argv[1] : "";
		struct conf *c;
		int rc;

		if (strcmp(sub, "list") == 0 && argc == 2) {
			struct list_ctx l = { out, NULL, call->want_json ? json_array() : NULL };

			reply_ok(out);
			module_foreach(list_module, &l);
			call->json = l.json;
			return;
		}
		if (argc != 3 || (strcmp(sub, "load") != 0 && strcmp(sub, "unload") != 0 &&
		    strcmp(sub, "reload") != 0)) {
			reply_err(out, "usage: module list | module load|unload|reload NAME");
			return;
		}
		/* Options come from the running configuration's 'modules'. */
		c = conf_current();
		if (strcmp(sub, "load") == 0)
			rc = module_load_one(c, argv[2], &err);
		else if (strcmp(sub, "unload") == 0)
			rc = module_unload_one(argv[2], &err);
		else
			rc = module_reload_one(c, argv[2], &err);
		conf_unref(c);
		if (rc < 0) {
			reply_err(out, "module %s %s: %s", sub, argv[2], err);
		} else {
			reply_ok(out);
			evbuffer_add_printf(out, "%sed %s\n", sub, argv[2]);
		}
	} else if (strcmp(cmd, "s2s") == 0) {
		if (!nargs_ok(out, argc, 1, "s2s"))
			return;
		/* doc/federation.md: direction, local, remote, auth, TLS,
		 * stanzas in, out, state, address. */
		reply_ok(out);
		if (call->want_json) {
			struct evbuffer *rows = evbuffer_new();

			s2s_list(rows);
			evbuffer_add(out, evbuffer_pullup(rows, -1), evbuffer_get_length(rows));
			call->json = s2s_rows_json(rows);
			evbuffer_free(rows);
		} else {
			s2s_list(out);
		}
	} else if (strcmp(cmd, "components") == 0) {
		if (!nargs_ok(out, argc, 1, "components"))
			return;
		/* doc/admin.md: domain, connected since, address. */
		reply_ok(out);
		component_list(out);
	} else if (strcmp(cmd, "metrics") == 0) {
		if (!nargs_ok(out, argc, 1, "metrics"))
			return;
		/* doc/admin.md "Metrics": the text format of GET /metrics,
		 * for a shell and for the web admin page's charts (POST
		 * /api/metrics), which sign in as an administrator rather
		 * than pass metrics_access. */
		reply_ok(out);
		metrics_render(out, 0);
	} else if (strcmp(cmd, "reload") == 0) {
		if (!nargs_ok(out, argc, 1, "reload"))
			return;
		if (daemon_ops->reload(&err) < 0)
			reply_err(out, "reload refused, the running configuration is kept: %s",
			    err);
		else {
			reply_ok(out);
			evbuffer_add_printf(out, "configuration reloaded\n");
		}
	} else if (strcmp(cmd, "stop") == 0) {
		if (!nargs_ok(out, argc, 1, "stop"))
			return;
		reply_ok(out);
		evbuffer_add_printf(out, "stopping\n");
		call->stop_after = 1;
	} else if (strcmp(cmd, "api-token") == 0) {
		/* Local only: the HTTP API does not offer it (ctl/api.c). */
		api_token_ctl(argc, argv, out);
	} else {
		char *mout = NULL;
		int rc;

		/* Commands that modules add (xmppd_ctl_register). */
		if (registry_ctl_run(argc, argv, &rc, &mout)) {
			if (rc < 0)
				reply_err(out, "%s", mout != NULL ? mout : "failed");
			else {
				reply_ok(out);
				if (mout != NULL)
					evbuffer_add(out, mout, strlen(mout));
			}
			free(mout);
		} else {
			call->unknown = 1;
			reply_err(out, "unknown command '%s' (see xmppctl --help)", cmd);
		}
	}
	free(node);
	free(host);
}

static void
ctl_free(struct ctl_conn *cc)
{
	int stop = cc->call.stop_after;

	bufferevent_free(cc->bev);
	free(cc);
	if (stop)
		daemon_ops->request_stop();
}

static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
	ctl_free(arg);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		ctl_free(arg);
}

static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *cc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer *out = bufferevent_get_output(bev);
	size_t len = evbuffer_get_length(in);
	char **args, *mem;
	int n;

	n = ctl_parse_request((const char *)evbuffer_pullup(in, -1), len, &args, &mem);
	if (n == 0)
		return;
	bufferevent_disable(bev, EV_READ);
	if (n < 0)
		reply_err(out, "malformed request");
	else
		ctl_run(&cc->call, n, args, out);
	free(args);
	free(mem);
	/* Close once the answer is out. */
	bufferevent_setcb(bev, NULL, ctl_write_cb, ctl_event_cb, cc);
}

static void
ctl_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct ctl_conn *cc = calloc(1, sizeof(*cc));

	if (cc == NULL) {
		close(fd);
		return;
	}
	cc->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(cc->bev, ctl_read_cb, NULL, ctl_event_cb, cc);
	bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
}

void
ctl_request_stop(void)
{
	daemon_ops->request_stop();
}

int
ctl_listen(struct event_base *base, const char *path, const struct ctl_daemon *daemon,
    const char **error_r)
{
	daemon_ops = daemon;
	struct sockaddr_un sun;
	int fd, probe;
	mode_t old;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		*error_r = "path too long";
		return -1;
	}
	strcpy(sun.sun_path, path);
	/* A socket file left by a crash is removed; one that answers
	 * belongs to a running server, which we must not steal from. */
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0) {
		if (connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			close(probe);
			*error_r = "another xmppd is running (its control socket answers)";
			return -1;
		}
		close(probe);
	}
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*error_r = strerror(errno);
		return -1;
	}
	old = umask(0077);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 64) < 0) {
		umask(old);
		*error_r = strerror(errno);
		close(fd);
		return -1;
	}
	umask(old);
	/* Owner only: the socket can create accounts and stop the server. */
	(void)chmod(path, 0600);
	/* Paused like the other listeners when accept fails (EMFILE). */
	ctl_listener = listener_open(base, fd, ctl_accept_cb, NULL, "control socket");
	if (ctl_listener == NULL) {
		*error_r = "cannot listen";
		close(fd);
		return -1;
	}
	ctl_path = strdup(path);
	return 0;
}

void
ctl_close(void)
{
	listener_close(&ctl_listener);
	if (ctl_path != NULL)
		unlink(ctl_path);
	free(ctl_path);
	ctl_path = NULL;
}
