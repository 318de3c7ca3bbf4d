/*
 * t-conf.c - the configuration loader: the shipped example loads, defaults
 * are applied, every kind of mistake is reported with its file and line,
 * relative paths follow the file, references free what they should, and a
 * key is known only if the section that owns it is registered.
 *
 * Each test works in its own scratch directory under $TMPDIR (or /tmp).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "auth/sasl.h"
#include "c2s/c2s.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "core/log.h"
#include "http/http_conf.h"
#include "http/web.h"
#include "net/listener.h"
#include "net/tls.h"
#include "s2s/s2s.h"

struct scratch {
	char dir[256];           /* realpath of the scratch directory */
};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static int
setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	struct scratch *s = calloc(1, sizeof(*s));
	char t[PATH_MAX], real[PATH_MAX];

	assert_non_null(s);
	snprintf(t, sizeof(t), "%s/t-conf.XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(t));
	assert_non_null(realpath(t, real));
	/* Short, so that default socket paths under it fit in sun_path. */
	assert_true(strlen(real) < sizeof(s->dir));
	strcpy(s->dir, real);
	*state = s;
	return 0;
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
teardown(void **state)
{
	struct scratch *s = *state;

	nftw(s->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(s);
	return 0;
}

static void
write_all(int fd, const char *text)
{
	size_t len = strlen(text), n = 0;

	while (n < len) {
		ssize_t r = write(fd, text + n, len - n);

		assert_true(r > 0);
		n += (size_t)r;
	}
}

/* Writes text to a new file dir/xmppd-XXXXXX.yml; its name goes to path. */
static void
write_temp(const char *dir, const char *text, char *path, size_t len)
{
	int fd;

	snprintf(path, len, "%s/xmppd-XXXXXX.yml", dir);
	fd = mkstemps(path, 4);
	assert_true(fd >= 0);
	write_all(fd, text);
	close(fd);
}

static void
write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	write_all(fd, text);
	close(fd);
}

static struct conf *
load_text(struct scratch *s, const char *text)
{
	char path[PATH_MAX];
	const char *err = NULL;
	struct conf *c;

	write_temp(s->dir, text, path, sizeof(path));
	c = conf_load(path, &err);
	if (c == NULL)
		print_error("unexpected error: %s\n", err);
	assert_non_null(c);
	unlink(path);
	return c;
}

static char *
join(const char *a, const char *b)
{
	char *r = malloc(strlen(a) + strlen(b) + 2);

	assert_non_null(r);
	sprintf(r, "%s/%s", a, b);
	return r;
}

/* ------------------------------------------------------------------ */
/* The shipped example                                                 */
/* ------------------------------------------------------------------ */

static void
test_example_loads(void **state)
{
	const char *srcdir = getenv("srcdir");
	char path[PATH_MAX], top[PATH_MAX];
	const char *err = NULL;
	char *want;
	struct conf *c;

	snprintf(path, sizeof(path), "%s/conf/xmppd.yml", srcdir ? srcdir : ".");
	c = conf_load(path, &err);
	if (c == NULL)
		print_error("%s\n", err);
	assert_non_null(c);
	assert_non_null(realpath(srcdir ? srcdir : ".", top));

	assert_int_equal(c->nhosts, 1);
	assert_string_equal(c->hosts[0], "localhost");
	assert_int_equal(c->loglevel, LOG_LVL_INFO);
	assert_string_equal(c->log, "stderr");

	want = join(top, "spool");
	assert_string_equal(c->spool_dir, want);
	free(want);
	want = join(top, "spool/xmppd.ctl");
	assert_string_equal(c->ctl_socket, want);
	free(want);
	want = join(top, "run/xmppd.pid");
	assert_string_equal(c->pidfile, want);
	free(want);
	assert_int_equal(c->ncertfiles, 1);
	want = join(top, "run/xmppd.pem");
	assert_string_equal(c->certfiles[0], want);
	free(want);
	want = join(top, "conf/xmppd.yml");
	assert_string_equal(c->path, want);
	free(want);

	assert_int_equal(c->nlisten, 3);
	assert_int_equal(c->listen[0].port, 5222);
	assert_string_equal(c->listen[0].ip, "::");
	assert_int_equal(c->listen[0].module, CONF_LISTEN_C2S);
	assert_int_equal(c->listen[0].tls, 0);
	assert_int_equal(c->listen[0].starttls_required, 1);
	assert_int_equal(c->listen[1].port, 5223);
	assert_int_equal(c->listen[1].module, CONF_LISTEN_C2S);
	assert_int_equal(c->listen[1].tls, 1);
	assert_int_equal(c->listen[1].max_stanza_size, 262144);
	/* HTTPS: WebSocket, BOSH, host-meta. */
	assert_int_equal(c->listen[2].port, 5443);
	assert_int_equal(c->listen[2].module, CONF_LISTEN_HTTP);
	assert_int_equal(c->listen[2].tls, 1);
	assert_int_equal(c->listen[2].starttls_required, 0);
	/* The quick start's web pages: the tree's www/admin, the
	 * Converse.js that make fetched into build/. */
	want = join(top, "www/admin");
	assert_string_equal(c->admin_page_dir, want);
	free(want);
	want = join(top, "build/conversejs/node_modules/converse.js/dist");
	assert_string_equal(c->conversejs_path, want);
	free(want);
	conf_unref(c);
}

/* ------------------------------------------------------------------ */
/* Defaults and values                                                 */
/* ------------------------------------------------------------------ */

static void
test_defaults(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s, "hosts: [example.org]\n");
	char *want;

	assert_int_equal(c->refcount, 1);
	assert_int_equal(c->nhosts, 1);
	assert_string_equal(c->hosts[0], "example.org");
	assert_int_equal(c->ncertfiles, 0);
	assert_null(c->certfiles);
	assert_null(c->ca_file);
	assert_int_equal(c->loglevel, LOG_LVL_INFO);
	assert_string_equal(c->log, "stderr");
	assert_int_equal(c->workers, 0);
	want = join(s->dir, "spool");
	assert_string_equal(c->spool_dir, want);
	free(want);
	want = join(s->dir, "spool/xmppd.ctl");
	assert_string_equal(c->ctl_socket, want);
	free(want);
	assert_int_equal(c->store_map_size, (size_t)1 << 30);
	assert_null(c->user);
	assert_null(c->pidfile);
	assert_int_equal(c->nlisten, 0);
	assert_int_equal(c->negotiation_timeout, 30);
	assert_int_equal(c->hibernate_after, 90);
	assert_int_equal(c->max_xml_depth, 32);
	assert_int_equal(c->max_xml_attrs, 64);
	assert_int_equal(c->max_connections_per_ip, 100);
	assert_int_equal(c->auth_failure_delay_ms, 1000);
	assert_int_equal(c->max_auth_attempts, 3);
	assert_int_equal(c->max_send_queue, 1 << 20);
	assert_int_equal(c->scram_iterations, 4096);
	assert_int_equal(c->tls_min_version, TLS1_2_VERSION);
	assert_int_equal(c->allow_plain, 1);
	/* Federation (doc/federation.md). */
	assert_int_equal(c->s2s_use_starttls, CONF_S2S_TLS_REQUIRED);
	assert_int_equal(c->s2s_dialback, 1);
	assert_null(c->s2s_secret);
	assert_null(c->s2s_access);
	assert_int_equal(c->ns2s_hosts, 0);
	assert_int_equal(c->s2s_idle_timeout, 600);
	assert_int_equal(c->s2s_keepalive, 60);
	assert_int_equal(c->s2s_keepalive_timeout, 30);
	assert_int_equal(c->s2s_connect_timeout, 30);
	assert_int_equal(c->s2s_max_queue, 1000);
	assert_null(c->s2s_resolv_conf);
	conf_unref(c);
}

static void
test_listener_defaults(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s,
	    "hosts: [example.org]\n"
	    "certfiles: [x.pem]\n"
	    "listen:\n"
	    "  - port: 5222\n"
	    "    module: c2s\n"
	    "  - {port: 5269, module: s2s}\n");

	assert_int_equal(c->nlisten, 2);
	assert_string_equal(c->listen[0].ip, "::");
	assert_int_equal(c->listen[0].tls, 0);
	assert_int_equal(c->listen[0].starttls_required, 1);
	assert_int_equal(c->listen[0].max_stanza_size, 262144);
	assert_null(c->listen[0].shaper);
	assert_int_equal(c->listen[0].line, 4);
	assert_int_equal(c->listen[1].module, CONF_LISTEN_S2S);
	assert_int_equal(c->listen[1].starttls_required, 1);
	assert_int_equal(c->listen[1].max_stanza_size, 524288);
	assert_int_equal(c->listen[1].line, 6);
	conf_unref(c);
}

static void
test_all_keys(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s,
	    "# every key, none at its default\n"
	    "hosts:\n"
	    "  - LocalHost.\n"
	    "  - \"Example.ORG\"\n"
	    "loglevel: debug\n"
	    "log: syslog\n"
	    "certfiles: [\"/etc/xmppd/a.pem\", b.pem]\n"
	    "ca_file: /etc/ssl/ca.pem\n"
	    "workers: 2\n"
	    "spool_dir: /var/lib/xmppd\n"
	    "store_map_size: 4G\n"
	    "user: xmppd\n"
	    "pidfile: /run/xmppd.pid\n"
	    "ctl_socket: /run/xmppd.ctl\n"
	    "listen:\n"
	    "  - port: 5222\n"
	    "    ip: 127.0.0.1\n"
	    "    module: c2s\n"
	    "    tls: no\n"
	    "    starttls_required: False\n"
	    "    max_stanza_size: 64K\n"
	    "    shaper: c2s_shaper\n"
	    "  - port: 5222\n"
	    "    ip: \"::1\"\n"
	    "    module: c2s\n"
	    "    tls: yes\n"
	    "negotiation_timeout: 10\n"
	    "hibernate_after: 0\n"
	    "max_xml_depth: 16\n"
	    "max_xml_attrs: 20\n"
	    "max_connections_per_ip: 0\n"
	    "auth_failure_delay_ms: 0\n"
	    "max_auth_attempts: 10\n"
	    "max_send_queue: 512k\n"
	    "scram_iterations: 10000\n"
	    "tls_min_version: 1.3\n"
	    "allow_plain: false\n"
	    "modules:\n"
	    "  mod_roster: {}\n"
	    "acl: {admin: {user: [\"admin@localhost\"]}}\n"
	    "access_rules: {}\n"
	    "shaper: {normal: 1000, c2s_shaper: 500}\n");
	char *want;

	assert_int_equal(c->nhosts, 2);
	assert_string_equal(c->hosts[0], "localhost");
	assert_string_equal(c->hosts[1], "example.org");
	assert_int_equal(c->loglevel, LOG_LVL_DEBUG);
	assert_string_equal(c->log, "syslog");
	assert_int_equal(c->ncertfiles, 2);
	assert_string_equal(c->certfiles[0], "/etc/xmppd/a.pem");
	want = join(s->dir, "b.pem");
	assert_string_equal(c->certfiles[1], want);
	free(want);
	assert_string_equal(c->ca_file, "/etc/ssl/ca.pem");
	assert_int_equal(c->workers, 2);
	assert_string_equal(c->spool_dir, "/var/lib/xmppd");
	assert_int_equal(c->store_map_size, (size_t)4 << 30);
	assert_string_equal(c->user, "xmppd");
	assert_string_equal(c->pidfile, "/run/xmppd.pid");
	assert_string_equal(c->ctl_socket, "/run/xmppd.ctl");
	assert_int_equal(c->nlisten, 2);
	assert_string_equal(c->listen[0].ip, "127.0.0.1");
	assert_int_equal(c->listen[0].tls, 0);
	assert_int_equal(c->listen[0].starttls_required, 0);
	assert_int_equal(c->listen[0].max_stanza_size, 65536);
	assert_string_equal(c->listen[0].shaper, "c2s_shaper");
	assert_string_equal(c->listen[1].ip, "::1");
	assert_int_equal(c->listen[1].tls, 1);
	assert_int_equal(c->negotiation_timeout, 10);
	assert_int_equal(c->hibernate_after, 0);
	assert_int_equal(c->max_xml_depth, 16);
	assert_int_equal(c->max_xml_attrs, 20);
	assert_int_equal(c->max_connections_per_ip, 0);
	assert_int_equal(c->auth_failure_delay_ms, 0);
	assert_int_equal(c->max_auth_attempts, 10);
	assert_int_equal(c->max_send_queue, 512 * 1024);
	assert_int_equal(c->scram_iterations, 10000);
	assert_int_equal(c->tls_min_version, TLS1_3_VERSION);
	assert_int_equal(c->allow_plain, 0);
	assert_true(conf_is_local_host(c, "localhost"));
	assert_true(conf_is_local_host(c, "example.org"));
	assert_false(conf_is_local_host(c, "Example.ORG"));
	assert_false(conf_is_local_host(c, "example.net"));
	assert_false(conf_is_local_host(c, NULL));
	assert_false(conf_is_local_host(NULL, "localhost"));
	conf_unref(c);
}

/* The s2s_* keys, none at its default (s2s/s2s_conf.c). */
static void
test_s2s_keys(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s,
	    "hosts: [localhost]\n"
	    "s2s_use_starttls: optional\n"
	    "s2s_dialback: false\n"
	    "s2s_secret: sekrit\n"
	    "s2s_access: federate\n"
	    "access_rules: {federate: [{allow: all}]}\n"
	    "s2s_hosts:\n"
	    "  example.net: \"127.0.0.2:5270\"\n"
	    "  Example.COM.: \"[::1]\"\n"
	    "s2s_idle_timeout: 0\n"
	    "s2s_keepalive: 5\n"
	    "s2s_keepalive_timeout: 7\n"
	    "s2s_connect_timeout: 9\n"
	    "s2s_max_queue: 10\n"
	    "s2s_resolv_conf: resolv.conf\n");
	const struct conf_s2s_host *h;
	char *want;

	assert_int_equal(c->s2s_use_starttls, CONF_S2S_TLS_OPTIONAL);
	assert_int_equal(c->s2s_dialback, 0);
	assert_string_equal(c->s2s_secret, "sekrit");
	assert_string_equal(c->s2s_access, "federate");
	assert_int_equal(c->ns2s_hosts, 2);
	assert_non_null(h = conf_s2s_host(c, "example.net"));
	assert_string_equal(h->host, "127.0.0.2");
	assert_int_equal(h->port, 5270);
	assert_int_equal(h->line, 8);
	assert_non_null(h = conf_s2s_host(c, "example.com"));
	assert_string_equal(h->host, "::1");
	assert_int_equal(h->port, 5269);
	assert_null(conf_s2s_host(c, "example.org"));
	assert_int_equal(c->s2s_idle_timeout, 0);
	assert_int_equal(c->s2s_keepalive, 5);
	assert_int_equal(c->s2s_keepalive_timeout, 7);
	assert_int_equal(c->s2s_connect_timeout, 9);
	assert_int_equal(c->s2s_max_queue, 10);
	want = join(s->dir, "resolv.conf");
	assert_string_equal(c->s2s_resolv_conf, want);
	free(want);
	conf_unref(c);

	c = load_text(s, "hosts: [localhost]\ns2s_use_starttls: false\n");
	assert_int_equal(c->s2s_use_starttls, CONF_S2S_TLS_FALSE);
	conf_unref(c);
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

struct bad {
	const char *yaml;
	int line;
	const char *msg;
};

#define H "hosts: [localhost]\n"
#define LONG20 "aaaaaaaaaaaaaaaaaaaa"

static const struct bad bad_files[] = {
	/* keys */
	{ H "hostz: [x]\n", 2, "unknown key 'hostz'" },
	{ H "s2s_dns_timeout: 5\n", 2, "unknown key 's2s_dns_timeout'" },
	{ H "workers: 1\nworkers: 2\n", 3, "'workers' is set twice (first on line 2)" },
	{ H "[a]: 1\n", 2, "expected a key name" },
	{ "workers: 2\n", 1, "'hosts' is required: the domains this server is for" },
	/* document shape */
	{ "", 1, "the file is empty; expected a mapping with at least 'hosts'" },
	{ "# only a comment\n", 1,
	  "the file is empty; expected a mapping with at least 'hosts'" },
	{ "- localhost\n", 1, "expected a mapping of keys at the top level" },
	{ H "---\nworkers: 1\n", 3, "only one YAML document is allowed in the file" },
	{ H "workers: !!int 4\n", 2, "unsupported YAML tag 'tag:yaml.org,2002:int'" },
	/* libyaml's own errors */
	{ H "  workers: 2\n", 2,
	  "did not find expected key (while parsing a block mapping started "
	  "on line 1)" },
	{ "hosts: [localhost\nworkers: 2\n", 2,
	  "did not find expected ',' or ']' (while parsing a flow sequence "
	  "started on line 1)" },
	{ H "workers: 2\n user: x\n", 3,
	  "mapping values are not allowed in this context" },
	{ H "workers: *nowhere\n", 2, "found undefined alias" },
	{ H "user: x\nuser2: \"\xff\"\n", 3, "invalid leading UTF-8 octet" },
	/* hosts */
	{ "hosts: []\n", 1, "'hosts' expects a list of at least one domain name" },
	{ "hosts: localhost\n", 1, "'hosts' expects a list of at least one domain name" },
	{ "hosts:\n  - [a]\n", 2, "'hosts' expects a list of domain names" },
	{ "hosts:\n  - example.org\n  - EXAMPLE.org.\n", 3,
	  "host 'example.org' is listed twice" },
	{ "hosts: [\"user@example.org\"]\n", 1,
	  "'hosts' entry 'user@example.org' is not a valid domain name" },
	{ "hosts: [\"example.org/r\"]\n", 1,
	  "'hosts' entry 'example.org/r' is not a valid domain name" },
	{ "hosts:\n  - \"\"\n", 2, "'hosts' entry '' is not a valid domain name" },
	{ "hosts:\n  - \"bad\\uFFFDhost\"\n", 2,
	  "'hosts' entry 'bad\xef\xbf\xbdhost' is not a valid domain name" },
	{ "hosts: [\"a\\nb\"]\n", 1, "'hosts' entry 'a?b' is not a valid domain name" },
	{ "hosts: [\"a b\"]\n", 1, "'hosts' entry 'a b' is not a valid domain name" },
	{ "hosts: [\"[::1\"]\n", 1, "'hosts' entry '[::1' is not a valid domain name" },
	{ "hosts: [\"[nope]\"]\n", 1, "'hosts' entry '[nope]' is not a valid domain name" },
	/* numbers, sizes, booleans, enumerations */
	{ H "workers: 2000\n", 2, "'workers' expects a whole number from 0 to 1024" },
	{ H "workers: \"4\"\n", 2, "'workers' expects a whole number from 0 to 1024" },
	{ H "workers: -1\n", 2, "'workers' expects a whole number from 0 to 1024" },
	{ H "workers: 0x10\n", 2, "'workers' expects a whole number from 0 to 1024" },
	{ H "workers:\n", 2, "'workers' expects a whole number from 0 to 1024" },
	{ H "workers: 99999999999999999999999\n", 2,
	  "'workers' expects a whole number from 0 to 1024" },
	{ H "max_auth_attempts: 0\n", 2,
	  "'max_auth_attempts' expects a whole number from 1 to 10" },
	{ H "scram_iterations: 1000\n", 2,
	  "'scram_iterations' expects a whole number from 4096 to 1000000" },
	{ H "negotiation_timeout: 0\n", 2,
	  "'negotiation_timeout' expects a whole number from 1 to 3600" },
	{ H "hibernate_after: 86401\n", 2,
	  "'hibernate_after' expects a whole number from 0 to 86400" },
	{ H "store_map_size: 512K\n", 2,
	  "'store_map_size' expects a size in bytes of at least 1M "
	  "(suffixes K, M, G allowed)" },
	{ H "store_map_size: 10X\n", 2,
	  "'store_map_size' expects a size in bytes of at least 1M "
	  "(suffixes K, M, G allowed)" },
	{ H "store_map_size: 1GB\n", 2,
	  "'store_map_size' expects a size in bytes of at least 1M "
	  "(suffixes K, M, G allowed)" },
	{ H "store_map_size: 99999999999999999G\n", 2,
	  "'store_map_size' expects a size in bytes of at least 1M "
	  "(suffixes K, M, G allowed)" },
	{ H "max_send_queue: 2G\n", 2,
	  "'max_send_queue' expects a size in bytes from 16K to 1G "
	  "(suffixes K, M, G allowed)" },
	{ H "allow_plain: maybe\n", 2, "'allow_plain' expects true or false" },
	{ H "allow_plain: \"true\"\n", 2, "'allow_plain' expects true or false" },
	{ H "allow_plain: 1\n", 2, "'allow_plain' expects true or false" },
	{ H "loglevel: loud\n", 2,
	  "'loglevel' expects one of error, warning, notice, info, debug" },
	{ H "tls_min_version: 1.1\n", 2, "'tls_min_version' expects \"1.2\" or \"1.3\"" },
	{ H "tls_min_version: 1.30\n", 2, "'tls_min_version' expects \"1.2\" or \"1.3\"" },
	/* strings and paths */
	{ H "user: \"\"\n", 2, "'user' expects a non-empty string" },
	{ H "user: \"a\\0b\"\n", 2, "'user' expects a non-empty string" },
	{ H "user: [a]\n", 2, "'user' expects a non-empty string" },
	{ H "pidfile: {a: b}\n", 2, "'pidfile' expects a non-empty string" },
	{ H "log: []\n", 2, "'log' expects stderr, syslog or a file path" },
	{ H "log: \"\"\n", 2, "'log' expects stderr, syslog or a file path" },
	{ H "certfiles: a.pem\n", 2, "'certfiles' expects a list of file paths" },
	{ H "certfiles:\n  - a.pem\n  - [b.pem]\n", 4,
	  "'certfiles' expects a list of file paths" },
	{ H "certfiles:\n  - a.pem\n  - ./a.pem\n", 4,
	  "certificate file '%DIR%/a.pem' is listed twice" },
	{ H "ctl_socket: /" LONG20 LONG20 LONG20 LONG20 LONG20 LONG20 "/x.ctl\n", 2,
	  "'ctl_socket' path is longer than a Unix socket allows (107 bytes); "
	  "set 'ctl_socket' to a shorter path" },
	{ H "spool_dir: /" LONG20 LONG20 LONG20 LONG20 LONG20 "\n", 2,
	  "'ctl_socket' path is longer than a Unix socket allows (107 bytes); "
	  "set 'ctl_socket' to a shorter path" },
	/* reserved maps */
	{ H "modules: [mod_roster]\n", 2, "'modules' expects a mapping" },
	{ H "acl:\n", 2, "'acl' expects a mapping" },
	{ H "shaper: fast\n", 2, "'shaper' expects a mapping" },
	/* listen */
	{ H "listen: {port: 5222}\n", 2, "'listen' expects a list of listeners" },
	{ H "listen:\n  - 5222\n", 3,
	  "'listen' entry expects a mapping with 'port' and 'module'" },
	{ H "listen:\n  - module: c2s\n    starttls_required: false\n", 3,
	  "'listen' entry needs 'port'" },
	{ H "listen:\n  - port: 5222\n    starttls_required: false\n", 3,
	  "'listen' entry needs 'module'" },
	{ H "listen:\n  - port: 5222\n    prot: 1\n", 4, "unknown key 'prot'" },
	{ H "listen:\n  - port: 5222\n    port: 5223\n", 4,
	  "'port' is set twice (first on line 3)" },
	{ H "listen:\n  - port: 70000\n", 3,
	  "'port' expects a whole number from 1 to 65535" },
	{ H "listen:\n  - port: 0\n", 3,
	  "'port' expects a whole number from 1 to 65535" },
	{ H "listen:\n  - {port: 5222, module: xmpp}\n", 3,
	  "'module' expects c2s, s2s, http or component" },
	{ H "listen:\n  - {port: 5222, module: c2s, ip: localhost}\n", 3,
	  "'ip' expects an IPv4 or IPv6 address, such as \"::\" or \"127.0.0.1\"" },
	{ H "listen:\n  - {port: 5222, module: c2s, tls: 1}\n", 3,
	  "'tls' expects true or false" },
	{ H "listen:\n  - {port: 5222, module: c2s, max_stanza_size: 9999}\n", 3,
	  "'max_stanza_size' expects a size in bytes from 10000 to 64M "
	  "(suffixes K, M, G allowed)" },
	{ H "listen:\n  - {port: 5222, module: c2s, shaper: \"\"}\n", 3,
	  "'shaper' expects a non-empty string" },
	{ H "listen:\n  - {port: 5222, module: c2s}\n", 3,
	  "listener on port 5222 needs TLS but no 'certfiles' are set" },
	{ H "listen:\n  - {port: 5223, module: c2s, tls: true, starttls_required: false}\n",
	  3, "listener on port 5223 needs TLS but no 'certfiles' are set" },
	{ H "listen:\n  - {port: 5269, module: s2s}\n", 3,
	  "listener on port 5269 needs TLS but no 'certfiles' are set" },
	{ H "certfiles: [a.pem]\nlisten:\n"
	  "  - {port: 5222, module: c2s}\n"
	  "  - {port: 5222, module: s2s}\n", 5,
	  "port 5222 on '::' is already used by the listener on line 4" },
	{ H "certfiles: [a.pem]\nlisten:\n"
	  "  - {port: 5222, module: c2s, ip: 127.0.0.1}\n"
	  "  - {port: 5222, module: c2s}\n", 5,
	  "port 5222 on '::' is already used by the listener on line 4" },
	{ H "certfiles: [a.pem]\nlisten:\n"
	  "  - {port: 5222, module: c2s, ip: \"0.0.0.0\"}\n"
	  "  - {port: 5222, module: c2s, ip: 127.0.0.1}\n", 5,
	  "port 5222 on '127.0.0.1' is already used by the listener on line 4" },
	{ H "certfiles: [a.pem]\nlisten:\n"
	  "  - {port: 5222, module: c2s, ip: \"::1\"}\n"
	  "  - {port: 5222, module: c2s, ip: \"0:0::1\"}\n", 5,
	  "port 5222 on '0:0::1' is already used by the listener on line 4" },
	{ H "certfiles: [a.pem]\nmax_send_queue: 256K\nlisten:\n"
	  "  - {port: 5269, module: s2s}\n", 3,
	  "'max_send_queue' (262144) is smaller than 'max_stanza_size' (524288) "
	  "of the listener on line 5" },
	/* federation */
	{ H "s2s_use_starttls: maybe\n", 2,
	  "'s2s_use_starttls' expects false, optional or required" },
	{ H "s2s_dialback: 2\n", 2, "'s2s_dialback' expects true or false" },
	{ H "s2s_max_queue: 0\n", 2,
	  "'s2s_max_queue' expects a whole number from 1 to 1000000" },
	{ H "s2s_dialback: yes\ns2s_dialback: no\n", 3,
	  "'s2s_dialback' is set twice (first on line 2)" },
	{ H "s2s_access:\n  nobody\n", 3,
	  "'s2s_access' refers to undefined access rule 'nobody'" },
	{ H "s2s_hosts: [a]\n", 2,
	  "'s2s_hosts' expects a mapping of domain: \"host:port\"" },
	{ H "s2s_hosts:\n  a.example: x\n  A.example: y\n", 4,
	  "'s2s_hosts' has 'A.example' twice (first on line 3)" },
	{ H "s2s_hosts:\n  a.example: \"::1:5269\"\n", 3,
	  "'::1:5269': write an IPv6 address as \"[address]:port\"" },
	{ H "s2s_hosts:\n  a.example: \"h:99999\"\n", 3,
	  "'h:99999': the port must be a number from 1 to 65535" },
	/* the first of two mistakes, in the order of the sections' checks */
	{ H "certfiles: [a.pem]\ns2s_access: nope\nlisten:\n"
	  "  - {port: 5222, module: c2s, shaper: fast}\n", 3,
	  "'s2s_access' refers to undefined access rule 'nope'" },
	{ H "listen:\n  - {port: 5222, module: c2s}\n"
	  "access_rules: {r: [{allow: noacl}]}\n", 3,
	  "listener on port 5222 needs TLS but no 'certfiles' are set" },
};

/* Replaces %DIR% in msg by dir. */
static void
expand(char *out, size_t len, const char *msg, const char *dir)
{
	const char *p = strstr(msg, "%DIR%");

	if (p == NULL)
		snprintf(out, len, "%s", msg);
	else
		snprintf(out, len, "%.*s%s%s", (int)(p - msg), msg, dir, p + 5);
}

static void
test_errors(void **state)
{
	struct scratch *s = *state;
	size_t i;

	for (i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
		char path[PATH_MAX], want[PATH_MAX + 1100], msg[1024];
		const char *err = "(not set)";
		struct conf *c;

		write_temp(s->dir, bad_files[i].yaml, path, sizeof(path));
		c = conf_load(path, &err);
		expand(msg, sizeof(msg), bad_files[i].msg, s->dir);
		snprintf(want, sizeof(want), "%s:%d: %s", path, bad_files[i].line, msg);
		if (c != NULL || strcmp(err, want) != 0)
			print_error("case %zu:\n%s\n", i, bad_files[i].yaml);
		assert_null(c);
		assert_string_equal(err, want);
		unlink(path);
	}
}

/* Another thread's load, for test_error_messages. */
struct other_load {
	const char *path;
	const char *err;
	char copy[512];
};

static void *
load_elsewhere(void *arg)
{
	struct other_load *o = arg;

	if (conf_load(o->path, &o->err) != NULL)
		abort();
	snprintf(o->copy, sizeof(o->copy), "%s", o->err);
	return NULL;
}

/*
 * The message is the calling thread's (conf.h): another thread's load does
 * not touch it, the same thread's next load replaces it. No error_r: still
 * refused. A message longer than the buffer is cut, never overflowed.
 */
static void
test_error_messages(void **state)
{
	struct scratch *s = *state;
	char a[PATH_MAX], b[PATH_MAX], want_a[PATH_MAX + 64], want_b[PATH_MAX + 64];
	char deep[PATH_MAX], full[PATH_MAX + 64];
	struct other_load o;
	const char *err = NULL, *err2 = NULL;
	pthread_t t;

	write_temp(s->dir, H "hostz: 1\n", a, sizeof(a));
	write_temp(s->dir, H "workers: x\n", b, sizeof(b));
	snprintf(want_a, sizeof(want_a), "%s:2: unknown key 'hostz'", a);
	snprintf(want_b, sizeof(want_b), "%s:2: 'workers' expects a whole number "
	    "from 0 to 1024", b);

	assert_null(conf_load(a, NULL));
	assert_null(conf_load(a, &err));
	assert_string_equal(err, want_a);
	o.path = b;
	assert_int_equal(pthread_create(&t, NULL, load_elsewhere, &o), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_string_equal(o.copy, want_b);
	assert_string_equal(err, want_a);           /* untouched by the other thread */
	assert_null(conf_load(b, &err2));
	assert_string_equal(err2, want_b);

	/* A path of some 1200 bytes: longer than the message buffer. */
	snprintf(deep, sizeof(deep), "%s", s->dir);
	for (int i = 0; i < 6; i++) {
		size_t n = strlen(deep);

		deep[n++] = '/';
		memset(deep + n, 'd', 200);
		deep[n + 200] = '\0';
		assert_int_equal(mkdir(deep, 0755), 0);
	}
	snprintf(full, sizeof(full), "%s/x.yml", deep);
	write_file(full, H "hostz: 1\n");
	assert_null(conf_load(full, &err));
	assert_true(strlen(err) > 1000);
	assert_true(strlen(err) < strlen(full));
	assert_memory_equal(err, full, strlen(err));
	unlink(full);
	unlink(a);
	unlink(b);
}

static void
test_unreadable(void **state)
{
	struct scratch *s = *state;
	char path[PATH_MAX], want[PATH_MAX + 64];
	const char *err = NULL;

	snprintf(path, sizeof(path), "%s/missing.yml", s->dir);
	assert_null(conf_load(path, &err));
	snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
	assert_string_equal(err, want);

	assert_null(conf_load(s->dir, &err));
	snprintf(want, sizeof(want), "%s: not a regular file", s->dir);
	assert_string_equal(err, want);
}

/* ------------------------------------------------------------------ */
/* Sections                                                            */
/* ------------------------------------------------------------------ */

/* Loads text, which must fail with "PATH:line: msg". */
static void
expect_error(struct scratch *s, const char *text, int line, const char *msg)
{
	char path[PATH_MAX], want[PATH_MAX + 600];
	const char *err = "(not set)";
	struct conf *c;

	write_temp(s->dir, text, path, sizeof(path));
	c = conf_load(path, &err);
	unlink(path);
	snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
	if (c != NULL) {
		conf_unref(c);
		fail_msg("loaded, but should not have:\n%s", text);
	}
	assert_string_equal(err, want);
}

/* A section of the test's own, registered as a subsystem's would be. */
static unsigned answer, answer_checks;

static int
key_answer(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	unsigned long long v;

	if (conf_get_uint(l, k->name, val, k->min, k->max, &v) < 0)
		return -1;
	answer = (unsigned)v;
	return 0;
}

static void
answer_defaults(struct conf *c)
{
	answer = 0;
}

static int
answer_check(struct conf_loader *l)
{
	answer_checks++;
	if (answer == 13)
		return conf_fail_at(l, conf_value_line(l, "t_answer"),
		    "'t_answer' may not be 13");
	return 0;
}

static const struct conf_key answer_keys[] = {
	{ "t_answer", key_answer, 0, 1, 100 },
};
static const struct conf_section answer_section = {
	.name = "t-conf", .keys = answer_keys, .nkeys = CONF_NKEYS(answer_keys),
	.defaults = answer_defaults, .check = answer_check,
};
/* Its key is the core's. */
static const struct conf_key clash_keys[] = {
	{ "workers", conf_key_uint, 0, 0, 1 },
};
static const struct conf_section clash_section = {
	.name = "clash", .keys = clash_keys, .nkeys = CONF_NKEYS(clash_keys),
};

/*
 * A key is known only once its section is registered; then its handler,
 * defaults and check run, with the loader's file:line messages. Keys are
 * unique across sections.
 */
static void
test_sections(void **state)
{
	struct scratch *s = *state;
	unsigned checks;
	struct conf *c;

	expect_error(s, H "t_answer: 42\n", 2, "unknown key 't_answer'");
	assert_int_equal(conf_section_register(&answer_section), 0);
	assert_int_equal(conf_section_register(&answer_section), 0);   /* no-op */
	assert_int_equal(conf_section_register(&clash_section), -1);

	checks = answer_checks;
	c = load_text(s, H "t_answer: 42\n");
	assert_int_equal(answer, 42);
	assert_int_equal(answer_checks, checks + 1);
	conf_unref(c);
	c = load_text(s, H "workers: 1\n");
	assert_int_equal(answer, 0);                            /* its default */
	assert_int_equal(c->workers, 1);                        /* the clash did not register */
	conf_unref(c);
	expect_error(s, H "t_answer: 0\n", 2, "'t_answer' expects a whole number from 1 to 100");
	expect_error(s, H "t_answer: 1\nt_answer: 2\n", 3,
	    "'t_answer' is set twice (first on line 2)");
	expect_error(s, H "t_answer:\n  13\n", 3, "'t_answer' may not be 13");
	answer = 0;
}

/* ------------------------------------------------------------------ */
/* Relative paths                                                      */
/* ------------------------------------------------------------------ */

static void
test_relative_paths(void **state)
{
	struct scratch *s = *state;
	char sub[512], path[PATH_MAX], cwd[PATH_MAX];
	const char *err = NULL;
	struct conf *c;
	char *want;
	int pass;

	snprintf(sub, sizeof(sub), "%s/etc", s->dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	snprintf(path, sizeof(path), "%s/xmppd.yml", sub);
	write_file(path,
	    "hosts: [localhost]\n"
	    "certfiles: [a.pem, ./b/c.pem, /abs/d.pem, ../e.pem, \"../../f.pem\"]\n"
	    "ca_file: ca.pem\n"
	    "spool_dir: ../spool\n"
	    "pidfile: ./../run/x.pid\n"
	    "log: logs/xmppd.log\n");
	assert_non_null(getcwd(cwd, sizeof(cwd)));

	/* Once by absolute path, once relative to the working directory:
	 * both give absolute paths under the file's directory. */
	for (pass = 0; pass < 2; pass++) {
		if (pass == 0) {
			c = conf_load(path, &err);
		} else {
			assert_int_equal(chdir(s->dir), 0);
			c = conf_load("etc/xmppd.yml", &err);
			assert_int_equal(chdir(cwd), 0);
		}
		if (c == NULL)
			print_error("%s\n", err);
		assert_non_null(c);
		assert_string_equal(c->path, path);
		assert_int_equal(c->ncertfiles, 5);
		want = join(sub, "a.pem");
		assert_string_equal(c->certfiles[0], want);
		free(want);
		want = join(sub, "b/c.pem");
		assert_string_equal(c->certfiles[1], want);
		free(want);
		assert_string_equal(c->certfiles[2], "/abs/d.pem");
		want = join(s->dir, "e.pem");
		assert_string_equal(c->certfiles[3], want);
		free(want);
		/* Two levels up from etc/ is the parent of the scratch dir. */
		{
			char *parent = strndup(s->dir,
			    (size_t)(strrchr(s->dir, '/') - s->dir));

			want = join(parent, "f.pem");
			free(parent);
		}
		assert_string_equal(c->certfiles[4], want);
		free(want);
		want = join(sub, "ca.pem");
		assert_string_equal(c->ca_file, want);
		free(want);
		want = join(s->dir, "spool");
		assert_string_equal(c->spool_dir, want);
		free(want);
		want = join(s->dir, "spool/xmppd.ctl");
		assert_string_equal(c->ctl_socket, want);
		free(want);
		want = join(s->dir, "run/x.pid");
		assert_string_equal(c->pidfile, want);
		free(want);
		want = join(sub, "logs/xmppd.log");
		assert_string_equal(c->log, want);
		free(want);
		conf_unref(c);
	}
}

/* ------------------------------------------------------------------ */
/* References and swapping                                             */
/* ------------------------------------------------------------------ */

static void
test_refcount_swap(void **state)
{
	struct scratch *s = *state;
	struct conf *a = load_text(s, "hosts: [a.example]\n");
	struct conf *b = load_text(s, "hosts: [b.example]\n");
	struct conf *cur, *held;

	assert_null(conf_current());
	conf_swap(a);                     /* takes our reference */
	cur = conf_current();
	assert_ptr_equal(cur, a);
	assert_int_equal(a->refcount, 2);
	assert_true(conf_is_local_host(cur, "a.example"));
	held = cur;                       /* like a connection keeping its conf */

	conf_swap(b);
	assert_int_equal(a->refcount, 1);
	cur = conf_current();
	assert_ptr_equal(cur, b);
	assert_true(conf_is_local_host(cur, "b.example"));
	assert_false(conf_is_local_host(cur, "a.example"));
	conf_unref(cur);

	/* The old one lives as long as someone holds it. */
	assert_true(conf_is_local_host(held, "a.example"));
	assert_ptr_equal(conf_ref(held), held);
	assert_int_equal(held->refcount, 2);
	conf_unref(held);
	conf_unref(held);                 /* freed here; ASan checks */

	conf_swap(NULL);                  /* frees b */
	assert_null(conf_current());
	assert_null(conf_ref(NULL));
	conf_unref(NULL);
}

static volatile int swapping;

static void *
reader(void *arg)
{
	while (__atomic_load_n(&swapping, __ATOMIC_ACQUIRE)) {
		struct conf *c = conf_current();

		/* cmocka's asserts are not for other threads. */
		if (c == NULL || c->nhosts != 1)
			abort();
		conf_unref(c);
	}
	return NULL;
}

static void
test_swap_threads(void **state)
{
	struct scratch *s = *state;
	struct conf *a = load_text(s, "hosts: [a.example]\n");
	struct conf *b = load_text(s, "hosts: [b.example]\n");
	pthread_t t[4];
	int i;

	conf_swap(conf_ref(a));
	swapping = 1;
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reader, NULL), 0);
	for (i = 0; i < 20000; i++)
		conf_swap(conf_ref(i % 2 ? a : b));
	__atomic_store_n(&swapping, 0, __ATOMIC_RELEASE);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	conf_swap(NULL);
	assert_int_equal(a->refcount, 1);
	assert_int_equal(b->refcount, 1);
	conf_unref(a);
	conf_unref(b);
}

/* conf_local: the thread's cached configuration follows swaps and drops
 * its reference on release (ASan would report a leak otherwise). */
static void
test_conf_local(void **state)
{
	struct scratch *s = *state;
	struct conf *a = load_text(s, "hosts: [a.example]\n");
	struct conf *b = load_text(s, "hosts: [b.example]\n");

	conf_swap(a);
	assert_ptr_equal(conf_local(), a);
	assert_ptr_equal(conf_local(), a);      /* no refresh without a swap */
	conf_swap(b);
	assert_ptr_equal(conf_local(), b);
	assert_true(conf_is_local_host(conf_local(), "b.example"));
	conf_local_release();
	conf_swap(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_example_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listener_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_s2s_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relative_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refcount_swap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swap_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conf_local, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sections, setup, teardown),
	};

	/* Every section the daemon registers (src/xmppd.c), in its order:
	 * the keys of one not registered are unknown. */
	if (conf_section_register(&tls_conf_section) < 0 ||
	    conf_section_register(&auth_conf_section) < 0 ||
	    conf_section_register(&c2s_conf_section) < 0 ||
	    conf_section_register(&s2s_conf_section) < 0 ||
	    conf_section_register(&listen_conf_section) < 0 ||
	    conf_section_register(&http_conf_section) < 0 ||
	    conf_section_register(&web_conf_section) < 0)
		return 1;
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
