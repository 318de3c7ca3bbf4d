/*
 * xmppd.c - xmppd: start-up, privileges, signals, reload, shutdown.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ftw.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "auth/account.h"
#include "auth/sasl.h"
#include "c2s/c2s.h"
#include "component/component.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "core/log.h"
#include "core/metrics.h"
#include "abi/module.h"
#include "core/registry.h"
#include "core/astore.h"
#include "core/worker.h"
#include "ctl/api.h"
#include "ctl/ctl.h"
#include "http/http.h"
#include "http/http_conf.h"
#include "http/metrics_http.h"
#include "http/web.h"
#include "net/listener.h"
#include "net/tls.h"
#include "router/session.h"
#include "router/sm.h"
#include "s2s/s2s.h"
#include "store/backend.h"
#include "store/store.h"
#include "xml/stream.h"

static struct event_base *main_base;
static char *config_path;
static struct event *stop_ev;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: xmppd [-c FILE] [--check-config] [-V]\n"
	    "  -c, --config FILE   configuration file (default %s)\n"
	    "      --check-config  validate the configuration and exit\n"
	    "  -V, --version       print the version and exit\n",
	    SYSCONFDIR "/xmppd/xmppd.yml");
}

/*
 * The sections of xmppd.yml whose owners sit above the core (the core's
 * own are built into the loader). Before the first conf_load: a key of a
 * section not registered is refused as unknown. Sections are checked in
 * this order after the file is read, so the first of several mistakes is
 * reported in the order the checks always had (access rule names, then a
 * listener's shaper).
 */
static void
register_conf_sections(void)
{
	static const struct conf_section *const owned[] = {
		&tls_conf_section, &auth_conf_section, &c2s_conf_section,
		&s2s_conf_section, &listen_conf_section, &http_conf_section,
		&web_conf_section,
	};

	for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
		if (conf_section_register(owned[i]) < 0)
			fatal("configuration section '%s' cannot be registered", owned[i]->name);
}

static void
apply_runtime(const struct conf *c)
{
	const char *err;

	log_set_level((enum log_level)c->loglevel);
	if (log_open(c->log, &err) < 0)
		log_error("main", "cannot open log %s: %s; logging to stderr", c->log, err);
	account_set_iterations(c->scram_iterations);
}

/*
 * SIGHUP and xmppctl reload (the control socket's reload callback). Main
 * thread. 0, or -1 with the reason in *error_r: the message of the step
 * that refused (conf_load's, module_check_conf's or tls_load's buffer),
 * valid until the next reload or module command.
 */
static int
main_reload(const char **error_r)
{
	struct conf *n, *old;
	const char *err;

	n = conf_load(config_path, &err);
	if (n == NULL)
		goto refused;
	/* Modules too: a bad option or a missing file refuses the whole
	 * reload, like any other error in the file. */
	if (module_check_conf(n, &err) < 0 || tls_load(n, &err) < 0) {
		conf_unref(n);
		goto refused;
	}
	/* Modules follow the new file: added, removed, options changed. */
	if (module_apply_conf(n, &err) < 0)
		log_error("main", "reload: %s", err);
	old = conf_current();
	if (old->nlisten != n->nlisten || (n->workers != 0 && old->workers != n->workers) ||
	    strcmp(old->spool_dir, n->spool_dir) != 0)
		log_warning("main", "listen, workers and spool_dir changes take effect "
		    "at the next restart");
	conf_unref(old);
	apply_runtime(n);
	log_reopen();
	conf_swap(n);
	log_notice("main", "configuration reloaded from %s", config_path);
	return 0;
refused:
	log_error("main", "reload refused, keeping the running configuration: %s", err);
	*error_r = err;
	return -1;
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopexit(main_base, NULL);
}

static void main_request_stop(void);

static const struct ctl_daemon daemon_ops = { main_reload, main_request_stop };

static void
main_request_stop(void)
{
	event_active(stop_ev, EV_TIMEOUT, 0);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	const char *err;

	switch (sig) {
	case SIGHUP:
		(void)main_reload(&err);
		break;
	case SIGTERM:
	case SIGINT:
		log_notice("main", "signal %d: shutting down", (int)sig);
		main_request_stop();
		break;
	}
}

static uid_t chown_uid;
static gid_t chown_gid;

static int
chown_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (lchown(path, chown_uid, chown_gid) < 0)
		log_warning("main", "chown %s: %s", path, strerror(errno));
	return 0;
}

/* OpenBSD style: the sockets and files are open, root is no longer
 * needed. The spool is handed to the user so that a later start as that
 * user can use it. */
static void
drop_privileges(const struct conf *c)
{
	struct passwd *pw;

	if (c->user == NULL)
		return;
	if (geteuid() != 0) {
		log_warning("main", "not running as root: 'user: %s' ignored", c->user);
		return;
	}
	pw = getpwnam(c->user);
	if (pw == NULL)
		fatal("user %s does not exist", c->user);
	chown_uid = pw->pw_uid;
	chown_gid = pw->pw_gid;
	(void)nftw(c->spool_dir, chown_one, 16, FTW_PHYS);
	/* The control socket may live outside the spool. */
	if (lchown(c->ctl_socket, pw->pw_uid, pw->pw_gid) < 0)
		log_warning("main", "chown %s: %s", c->ctl_socket, strerror(errno));
	if (setgroups(1, &pw->pw_gid) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
		fatal("cannot drop privileges to %s: %s", c->user, strerror(errno));
	log_notice("main", "running as %s", c->user);
}

static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Written as root, before privileges go, and handed to the user so that
 * the daemon can remove it when it stops. */
static void
write_pidfile(const char *path, const struct conf *c)
{
	FILE *f = fopen(path, "w");
	struct passwd *pw;

	if (f == NULL) {
		log_error("main", "pidfile %s: %s", path, strerror(errno));
		return;
	}
	fprintf(f, "%ld\n", (long)getpid());
	fclose(f);
	if (c->user != NULL && geteuid() == 0 && (pw = getpwnam(c->user)) != NULL)
		(void)chown(path, pw->pw_uid, pw->pw_gid);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct event *sigs[4];
	int check_only = 0, ch;
	const char *err;
	struct conf *c;
	unsigned n;

	while ((ch = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			config_path = optarg;
			break;
		case 'C':
			check_only = 1;
			break;
		case 'V':
			printf("xmppd %s\nbuild: %s\n", PACKAGE_VERSION, XMPPD_BUILD);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (config_path == NULL)
		config_path = SYSCONFDIR "/xmppd/xmppd.yml";

	register_conf_sections();
	c = conf_load(config_path, &err);
	if (c == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (tls_load(c, &err) < 0) {
		fprintf(stderr, "%s: %s\n", config_path, err);
		conf_unref(c);
		tls_free();
		return 1;
	}
	if (check_only && module_check_conf(c, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		conf_unref(c);
		tls_free();
		return 1;
	}
	if (check_only) {
		printf("%s: configuration OK\n", config_path);
		conf_unref(c);
		tls_free();
		return 0;
	}
	conf_swap(conf_ref(c));
	apply_runtime(c);
	clock_set_start_time(time(NULL));
	metrics_init();
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);

	if (store_open(c->spool_dir, c->store_map_size, &err) < 0)
		fatal("cannot open the store in %s: %s", c->spool_dir, err);
	/* The asynchronous store, for modules (core/astore.h). */
	astore_set_commit_window(c->store_commit_window_ms);
	if (astore_init(store_lmdb_backend(c->store_test_delay_ms)) < 0)
		fatal("out of memory");
	if (c->store_test_delay_ms > 0)
		log_warning("main", "store_test_delay_ms: every store operation completes %u ms "
		    "late (for tests only)", c->store_test_delay_ms);
	/* Admin API tokens (xmppctl api-token), checked in memory. */
	if (api_token_init() < 0)
		fatal("cannot read the API tokens from the store");
	if (sasl_init(&err) < 0)
		fatal("SASL: %s", err);
	if (sm_init() < 0)
		fatal("cannot set up the session table");

	n = c->workers ? c->workers : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (n == 0)
		n = 1;
	/* The main thread's base is touched by event_active from the
	 * control code only on this thread, but libevent's locking is
	 * needed for the workers' use of event_active on it (stop). */
	evthread_use_pthreads();
	main_base = event_base_new();
	if (main_base == NULL || main_post_init(main_base) < 0)
		fatal("cannot create the main event base");
	if (worker_init(n, &err) < 0)
		fatal("workers: %s", err);
	if (session_init(n) < 0 || http_init(n) < 0 || c2s_init(n) < 0 || s2s_init(n) < 0 ||
	    component_init(n) < 0 || http_metrics_init() < 0 || api_init() < 0 ||
	    web_init(c) < 0)
		fatal("out of memory");
	/* What /metrics reads from the transports (core/metrics.h). */
	metrics_set_source(METRICS_SRC_C2S_CONNECTIONS, c2s_connection_count);
	metrics_set_source(METRICS_SRC_S2S_CONNECTIONS, s2s_connection_count);
	metrics_set_source(METRICS_SRC_COMPONENT_CONNECTIONS, component_connection_count);
	metrics_set_source(METRICS_SRC_S2S_LINKS, s2s_link_count);
	/* The control socket first: it refuses to start a second server
	 * on the same spool before that one could share our ports
	 * (SO_REUSEPORT would let it). */
	if (ctl_listen(main_base, c->ctl_socket, &daemon_ops, &err) < 0)
		fatal("control socket %s: %s", c->ctl_socket, err);
	if (listener_bind_all(c, n, &err) < 0)
		fatal("%s", err);
	stop_ev = event_new(main_base, -1, 0, stop_cb, NULL);
	sigs[0] = evsignal_new(main_base, SIGHUP, signal_cb, NULL);
	sigs[1] = evsignal_new(main_base, SIGTERM, signal_cb, NULL);
	sigs[2] = evsignal_new(main_base, SIGINT, signal_cb, NULL);
	for (int i = 0; i < 3; i++)
		event_add(sigs[i], NULL);
	if (c->pidfile != NULL)
		write_pidfile(c->pidfile, c);
	drop_privileges(c);
	if (listener_start_all() < 0)
		fatal("cannot attach the listeners");
	if (worker_start_all() < 0)
		fatal("cannot start the workers");
	/* All or nothing (the loader has unloaded what it loaded). */
	request_init();
	if (module_load_all(c, &err) < 0)
		fatal("modules: %s", err);
	/* Stream management sessions kept by sm_durable: detached again,
	 * once the modules that see them end are loaded. */
	if (c2s_sm_restore() < 0)
		log_error("main", "stream management sessions could not be restored");

	log_notice("main", "xmppd %s started: %u workers, %zu listeners, hosts:%s%s",
	    PACKAGE_VERSION, n, c->nlisten, c->hosts[0], c->nhosts > 1 ? " ..." : "");

	event_base_dispatch(main_base);

	/* Shutdown: every stream gets <system-shutdown/>; the workers exit
	 * when their connections are gone (bounded). */
	ctl_close();
	/* Modules say goodbye while every stream is still up (server_stopping:
	 * a handler may post to workers and wait, bounded, for them). */
	(void)hooks_run(XMPPD_HOOK_SERVER_STOPPING, NULL, NULL);
	/* Servers first: <system-shutdown/> on every s2s stream, bounded. */
	s2s_shutdown_all();
	/* Then external components (XEP-0114), like servers. */
	component_shutdown_all();
	c2s_shutdown_all();
	http_shutdown(1000);
	worker_exit_all();
	worker_join_all();
	/* Workers have stopped: nothing runs module code any more. */
	module_unload_all();
	listener_free_all();
	s2s_free_all();
	component_free_all();
	c2s_free_all();
	http_free();
	web_free();
	session_free_all();
	sm_free();
	worker_free_all();
	/* Admin API requests a shutdown left in a queue. */
	api_free();
	api_token_free();
	main_post_free();
	astore_free();
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	event_free(stop_ev);
	event_base_free(main_base);
	sasl_free();
	tls_free();
	store_close();
	xml_stream_pool_free();         /* the main thread's (module API parses) */
	metrics_free();
	if (c->pidfile != NULL)
		unlink(c->pidfile);
	log_notice("main", "stopped");
	conf_unref(c);
	conf_local_release();
	conf_swap(NULL);
	return 0;
}
