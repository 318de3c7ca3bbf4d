/*
 * t-acl.c - the modules, acl, access_rules and shaper sections: what the
 * loader keeps of them, every mistake reported with its file and line,
 * and acl_match / access_check / shaper_find over what was loaded.
 *
 * A shaper's token bucket is shaper_bucket_* (acl.c), which the stream
 * layer keeps on each shaped connection (stream/conn.c); test_shaper_bucket
 * drives one from a loaded shaper on a clock of its own and checks rate,
 * burst and debt against what doc/configuration.md promises.
 *
 * Each test works in its own scratch directory under $TMPDIR (or /tmp).
 */
#include "config.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "c2s/c2s.h"
#include "core/acl.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "net/listener.h"
#include "net/tls.h"
#include "xmpp/jid.h"

struct scratch {
	char dir[256];
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
	snprintf(t, sizeof(t), "%s/t-acl.XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(t));
	assert_non_null(realpath(t, real));
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
write_temp(const char *dir, const char *text, char *path, size_t len)
{
	size_t n = 0, tlen = strlen(text);
	int fd;

	snprintf(path, len, "%s/xmppd-XXXXXX.yml", dir);
	fd = mkstemps(path, 4);
	assert_true(fd >= 0);
	while (n < tlen) {
		ssize_t r = write(fd, text + n, tlen - n);

		assert_true(r > 0);
		n += (size_t)r;
	}
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

/* Loads text, which must fail with "PATH:line: msg". */
static void
load_bad(struct scratch *s, const char *text, int line, const char *msg)
{
	char path[PATH_MAX], want[PATH_MAX + 600];
	const char *err = "(not set)";
	struct conf *c;

	write_temp(s->dir, text, path, sizeof(path));
	c = conf_load(path, &err);
	snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
	if (c != NULL || strcmp(err, want) != 0)
		print_error("file:\n%s\n", text);
	unlink(path);
	if (c != NULL) {
		conf_unref(c);
		fail_msg("loaded, but should not have");
	}
	assert_string_equal(err, want);
}

static jid *
mkjid(const char *s)
{
	jid *j = calloc(1, sizeof(*j));
	const char *err;

	assert_non_null(j);
	assert_int_equal(jid_parse(j, s, strlen(s), &err), 0);
	return j;
}

static void
freejid(jid *j)
{
	jid_free(j);
	free(j);
}

/* An address for acl_match: "192.0.2.1" gives AF_INET, anything with a
 * colon AF_INET6. */
static const struct sockaddr *
mkaddr(struct sockaddr_storage *ss, const char *ip)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	return (const struct sockaddr *)ss;
}

static int
match_user(const struct conf *c, const char *acl, const char *user)
{
	jid *j = mkjid(user);
	int r = acl_match(c, acl, j, NULL);

	freejid(j);
	return r;
}

static int
match_ip(const struct conf *c, const char *acl, const char *ip)
{
	struct sockaddr_storage ss;

	return acl_match(c, acl, NULL, mkaddr(&ss, ip));
}

static int
check(const struct conf *c, const char *rule, const char *user, const char *ip)
{
	struct sockaddr_storage ss;
	jid *j = user != NULL ? mkjid(user) : NULL;
	int r = access_check(c, rule, j, ip != NULL ? mkaddr(&ss, ip) : NULL);

	if (j != NULL)
		freejid(j);
	return r;
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */
/* ------------------------------------------------------------------ */

#define H "hosts: [localhost]\n"

static const char full_file[] =
    "hosts: [localhost, Example.ORG]\n"                          /* 1 */
    "certfiles: [a.pem]\n"
    "module_dir: ../lib/xmppd\n"
    "modules:\n"
    "  mod_ping:\n"                                              /* 5 */
    "    interval: 60\n"
    "    action: \"kill\"\n"
    "  mod_disco:\n"
    "  mod_roster: {}\n"
    "  mod_muc_2:\n"                                             /* 10 */
    "    hosts:\n"
    "      - conference.localhost\n"
    "      - rooms.localhost\n"
    "    default_room:\n"
    "      persistent: true\n"                                   /* 15 */
    "      max_users: 200\n"
    "acl:\n"
    "  admin:\n"
    "    user:\n"
    "      - \"Admin@LocalHost\"\n"                              /* 20 */
    "      - root\n"
    "  friends:\n"
    "    server: Example.ORG.\n"
    "    resource: phone\n"
    "  lan:\n"                                                   /* 25 */
    "    ip: [\"192.0.2.0/24\", \"2001:db8::/32\", \"10.1.2.3\"]\n"
    "  bots:\n"
    "    user_regexp: \"^bot[0-9]+$\"\n"
    "    server_regexp: \"\\\\.example\\\\.net$\"\n"
    "  empty: {}\n"                                              /* 30 */
    "access_rules:\n"
    "  c2s:\n"
    "    - deny: bots\n"
    "    - allow: all\n"
    "  configure:\n"                                             /* 35 */
    "    allow: admin\n"
    "  register:\n"
    "    - allow: lan\n"
    "  nobody: []\n"
    "shaper:\n"                                                  /* 40 */
    "  normal: 1000\n"
    "  fast: {rate: 50000, burst_size: 200000}\n"
    "  burst_default: {rate: 7}\n"
    "c2s_access: c2s\n"
    "# in-band registration: mod_register's own 'access' option\n" /* 45 */
    "listen:\n"
    "  - port: 5222\n"
    "    module: c2s\n"
    "    shaper: normal\n"
    "  - port: 5269\n"                                           /* 50 */
    "    module: s2s\n"
    "    shaper: none\n";

static void
test_sections(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s, full_file);
	const struct conf_acl *a;
	char want[PATH_MAX];

	/* module_dir is a path, relative to the file. */
	snprintf(want, sizeof(want), "%.*s/lib/xmppd",
	    (int)(strrchr(s->dir, '/') - s->dir), s->dir);
	assert_string_equal(c->module_dir, want);

	/* Modules, in file order. */
	assert_int_equal(c->nmodules, 4);
	assert_string_equal(c->modules[0].name, "mod_ping");
	assert_int_equal(c->modules[0].line, 5);
	assert_string_equal(c->modules[1].name, "mod_disco");
	assert_int_equal(c->modules[1].line, 8);
	assert_int_equal(c->modules[1].opts->type, CONF_NODE_MAP);
	assert_int_equal(c->modules[1].opts->n, 0);
	assert_string_equal(c->modules[2].name, "mod_roster");
	assert_int_equal(c->modules[2].opts->type, CONF_NODE_MAP);
	assert_int_equal(c->modules[2].opts->n, 0);
	assert_string_equal(c->modules[3].name, "mod_muc_2");

	/* Acls: values prepared, networks in IPv6 form. */
	assert_int_equal(c->nacls, 5);
	a = &c->acls[0];
	assert_string_equal(a->name, "admin");
	assert_int_equal(a->line, 18);
	assert_int_equal(a->n, 2);
	assert_int_equal(a->m[0].kind, CONF_ACL_USER);
	assert_string_equal(a->m[0].value, "admin@localhost");
	assert_int_equal(a->m[0].line, 20);
	assert_string_equal(a->m[1].value, "root");
	assert_int_equal(a->m[1].line, 21);
	a = &c->acls[1];
	assert_int_equal(a->n, 2);
	assert_int_equal(a->m[0].kind, CONF_ACL_SERVER);
	assert_string_equal(a->m[0].value, "example.org");
	assert_int_equal(a->m[1].kind, CONF_ACL_RESOURCE);
	assert_string_equal(a->m[1].value, "phone");
	a = &c->acls[2];
	assert_int_equal(a->n, 3);
	{
		static const unsigned char net4[16] = { [10] = 0xff, [11] = 0xff,
			192, 0, 2, 0 };
		static const unsigned char net6[16] = { 0x20, 0x01, 0x0d, 0xb8 };
		static const unsigned char host4[16] = { [10] = 0xff, [11] = 0xff,
			10, 1, 2, 3 };

		assert_int_equal(a->m[0].kind, CONF_ACL_IP);
		assert_string_equal(a->m[0].value, "192.0.2.0/24");
		assert_memory_equal(a->m[0].addr, net4, 16);
		assert_int_equal(a->m[0].prefix, 120);
		assert_memory_equal(a->m[1].addr, net6, 16);
		assert_int_equal(a->m[1].prefix, 32);
		assert_memory_equal(a->m[2].addr, host4, 16);
		assert_int_equal(a->m[2].prefix, 128);
	}
	a = &c->acls[3];
	assert_int_equal(a->m[0].kind, CONF_ACL_USER_REGEXP);
	assert_non_null(a->m[0].compiled);
	assert_string_equal(a->m[0].value, "^bot[0-9]+$");
	assert_int_equal(a->m[1].kind, CONF_ACL_SERVER_REGEXP);
	assert_non_null(a->m[1].compiled);
	assert_string_equal(a->m[1].value, "\\.example\\.net$");
	assert_string_equal(c->acls[4].name, "empty");
	assert_int_equal(c->acls[4].n, 0);

	/* Access rules, in order; the short form is one entry. */
	assert_int_equal(c->naccess_rules, 4);
	assert_string_equal(c->access_rules[0].name, "c2s");
	assert_int_equal(c->access_rules[0].line, 32);
	assert_int_equal(c->access_rules[0].n, 2);
	assert_int_equal(c->access_rules[0].r[0].allow, 0);
	assert_string_equal(c->access_rules[0].r[0].acl, "bots");
	assert_int_equal(c->access_rules[0].r[1].allow, 1);
	assert_string_equal(c->access_rules[0].r[1].acl, "all");
	assert_int_equal(c->access_rules[1].n, 1);
	assert_int_equal(c->access_rules[1].r[0].allow, 1);
	assert_string_equal(c->access_rules[1].r[0].acl, "admin");
	assert_int_equal(c->access_rules[3].n, 0);

	/* Shapers: burst defaults to the rate. */
	assert_int_equal(c->nshapers, 3);
	assert_string_equal(c->shapers[0].name, "normal");
	assert_int_equal(c->shapers[0].rate, 1000);
	assert_int_equal(c->shapers[0].burst, 1000);
	assert_int_equal(c->shapers[0].line, 41);
	assert_int_equal(c->shapers[1].rate, 50000);
	assert_int_equal(c->shapers[1].burst, 200000);
	assert_int_equal(c->shapers[2].rate, 7);
	assert_int_equal(c->shapers[2].burst, 7);

	assert_string_equal(c->c2s_access, "c2s");
	assert_string_equal(c->listen[0].shaper, "normal");
	assert_string_equal(c->listen[1].shaper, "none");
	conf_unref(c);
}

static void
test_defaults(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s, H);

	assert_null(c->module_dir);
	assert_int_equal(c->nmodules, 0);
	assert_null(c->modules);
	assert_int_equal(c->nacls, 0);
	assert_int_equal(c->naccess_rules, 0);
	assert_int_equal(c->nshapers, 0);
	assert_null(c->c2s_access);
	conf_unref(c);

	/* Empty sections, and rules naming only the built-in acls. */
	c = load_text(s, H "modules: {}\nacl: {}\nshaper: {}\n"
	    "access_rules: {open: {allow: all}, closed: [{deny: none}]}\n"
	    "c2s_access: all\n");
	assert_int_equal(c->nmodules, 0);
	assert_int_equal(c->naccess_rules, 2);
	assert_string_equal(c->c2s_access, "all");
	conf_unref(c);

	/* Order does not matter: rules may come before their acls. */
	c = load_text(s, H "access_rules:\n  r: {allow: late}\n"
	    "c2s_access: r\nacl:\n  late: {server: localhost}\n");
	assert_int_equal(c->naccess_rules, 1);
	assert_int_equal(c->nacls, 1);
	conf_unref(c);
}

/* Module options: every node keeps its type, its text and its line. */
static void
test_module_tree(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s, full_file);
	const struct conf_node *o, *n;

	o = c->modules[0].opts;
	assert_int_equal(o->type, CONF_NODE_MAP);
	assert_int_equal(o->n, 2);
	assert_string_equal(o->keys[0], "interval");
	assert_int_equal(o->items[0]->type, CONF_NODE_SCALAR);
	assert_string_equal(o->items[0]->scalar, "60");
	assert_int_equal(o->items[0]->line, 6);
	assert_string_equal(o->keys[1], "action");
	assert_string_equal(o->items[1]->scalar, "kill");
	assert_int_equal(o->items[1]->line, 7);

	o = c->modules[3].opts;
	assert_int_equal(o->type, CONF_NODE_MAP);
	assert_int_equal(o->line, 11);
	assert_int_equal(o->n, 2);
	assert_string_equal(o->keys[0], "hosts");
	n = o->items[0];
	assert_int_equal(n->type, CONF_NODE_SEQ);
	assert_int_equal(n->n, 2);
	assert_null(n->keys);
	assert_int_equal(n->items[0]->type, CONF_NODE_SCALAR);
	assert_string_equal(n->items[0]->scalar, "conference.localhost");
	assert_int_equal(n->items[0]->line, 12);
	assert_string_equal(n->items[1]->scalar, "rooms.localhost");
	assert_int_equal(n->items[1]->line, 13);
	assert_string_equal(o->keys[1], "default_room");
	n = o->items[1];
	assert_int_equal(n->type, CONF_NODE_MAP);
	assert_int_equal(n->line, 15);
	assert_string_equal(n->keys[0], "persistent");
	assert_string_equal(n->items[0]->scalar, "true");
	assert_string_equal(n->keys[1], "max_users");
	assert_string_equal(n->items[1]->scalar, "200");
	assert_int_equal(n->items[1]->line, 16);
	conf_unref(c);

	/* Flow style, nulls and aliases are kept as written. */
	c = load_text(s, H "modules:\n"
	    "  mod_a: {list: [1, [2, 3], {k: v}], nothing: , anchor: &x [a]}\n"
	    "  mod_b:\n    again: *x\n");
	o = c->modules[0].opts;
	assert_int_equal(o->n, 3);
	n = o->items[0];
	assert_int_equal(n->type, CONF_NODE_SEQ);
	assert_int_equal(n->n, 3);
	assert_int_equal(n->items[1]->type, CONF_NODE_SEQ);
	assert_string_equal(n->items[1]->items[1]->scalar, "3");
	assert_int_equal(n->items[2]->type, CONF_NODE_MAP);
	assert_string_equal(n->items[2]->keys[0], "k");
	assert_int_equal(o->items[1]->type, CONF_NODE_SCALAR);
	assert_string_equal(o->items[1]->scalar, "");
	n = c->modules[1].opts->items[0];
	assert_int_equal(n->type, CONF_NODE_SEQ);
	assert_string_equal(n->items[0]->scalar, "a");
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

#define CF "certfiles: [a.pem]\n"

static const struct bad bad_files[] = {
	/* modules */
	{ H "modules: [mod_a]\n", 2, "'modules' expects a mapping" },
	{ H "modules:\n", 2, "'modules' expects a mapping" },
	{ H "modules:\n  roster: {}\n", 3, "'roster' is not a module name: "
	  "expected mod_ followed by lowercase letters, digits and '_'" },
	{ H "modules:\n  mod_Roster: {}\n", 3, "'mod_Roster' is not a module "
	  "name: expected mod_ followed by lowercase letters, digits and '_'" },
	{ H "modules:\n  mod_: {}\n", 3, "'mod_' is not a module name: "
	  "expected mod_ followed by lowercase letters, digits and '_'" },
	{ H "modules:\n  \"mod_a/../x\": {}\n", 3, "'mod_a/../x' is not a module "
	  "name: expected mod_ followed by lowercase letters, digits and '_'" },
	{ H "modules:\n  [mod_a]: {}\n", 3, "expected a module name" },
	{ H "modules:\n  mod_a: {}\n  mod_b:\n  mod_a: {x: 1}\n", 5,
	  "module 'mod_a' is listed twice (first on line 3)" },
	{ H "modules:\n  mod_a: [x]\n", 3,
	  "module 'mod_a' expects a mapping of options (or nothing)" },
	{ H "modules:\n  mod_a: yes\n", 3,
	  "module 'mod_a' expects a mapping of options (or nothing)" },
	{ H "modules:\n  mod_a:\n    x: 1\n    y: 2\n    x: 3\n", 6,
	  "'x' is set twice (first on line 4)" },
	{ H "modules:\n  mod_a:\n    x: !!int 1\n", 4,
	  "unsupported YAML tag 'tag:yaml.org,2002:int'" },
	{ H "modules:\n  mod_a:\n    [x]: 1\n", 4, "expected an option name" },
	{ H "modules:\n  mod_a: &a {x: *a}\n", 3,
	  "module options are nested deeper than 32 levels" },
	{ H "module_dir: \"\"\n", 2, "'module_dir' expects a non-empty string" },
	/* acl */
	{ H "acl: [admin]\n", 2, "'acl' expects a mapping" },
	{ H "acl:\n  admin:\n    usr: alice\n", 4, "unknown acl kind 'usr': expected "
	  "user, server, ip, user_regexp, server_regexp or resource" },
	{ H "acl:\n  all: {user: alice}\n", 3,
	  "'all' is a built-in acl and cannot be defined" },
	{ H "acl:\n  none: {user: alice}\n", 3,
	  "'none' is a built-in acl and cannot be defined" },
	{ H "acl:\n  a: {user: x}\n  b: {user: y}\n  a: {user: z}\n", 5,
	  "acl 'a' is defined twice (first on line 3)" },
	{ H "acl:\n  a: [alice]\n", 3, "acl 'a' expects a mapping of kinds to "
	  "values, such as {user: \"admin@example.org\"}" },
	{ H "acl:\n  a:\n", 3, "acl 'a' expects a mapping of kinds to "
	  "values, such as {user: \"admin@example.org\"}" },
	{ H "acl:\n  a:\n    user: x\n    user: y\n", 5,
	  "'user' is set twice (first on line 4)" },
	{ H "acl:\n  a:\n    user: {x: y}\n", 4,
	  "'user' expects a string or a list of strings" },
	{ H "acl:\n  a:\n    server:\n      - a.example\n      - \"\"\n", 6,
	  "'server' expects a string or a list of strings" },
	{ H "acl:\n  a:\n    user:\n", 4,
	  "'user' expects a string or a list of strings" },
	{ H "acl:\n  a:\n    user: \"a@b@c\"\n", 4, "'a@b@c' is not a user: "
	  "expected node@domain, or a node alone for that user on every host" },
	{ H "acl:\n  a:\n    user: \"@example.org\"\n", 4, "'@example.org' is not "
	  "a user: expected node@domain, or a node alone for that user on every host" },
	{ H "acl:\n  a:\n    user: \"alice@\"\n", 4, "'alice@' is not a user: "
	  "expected node@domain, or a node alone for that user on every host" },
	{ H "acl:\n  a:\n    user: \"a/b\"\n", 4, "'a/b' is not a user: "
	  "expected node@domain, or a node alone for that user on every host" },
	{ H "acl:\n  a:\n    server: \"a b\"\n", 4,
	  "'a b' is not a valid domain name" },
	{ H "acl:\n  a:\n    ip: \"192.0.2.0/33\"\n", 4,
	  "'192.0.2.0/33' has a bad prefix length: expected 0 to 32" },
	{ H "acl:\n  a:\n    ip: \"2001:db8::/129\"\n", 4,
	  "'2001:db8::/129' has a bad prefix length: expected 0 to 128" },
	{ H "acl:\n  a:\n    ip: \"10.0.0.0/\"\n", 4,
	  "'10.0.0.0/' has a bad prefix length: expected 0 to 32" },
	{ H "acl:\n  a:\n    ip: \"10.0.0.0/-8\"\n", 4,
	  "'10.0.0.0/-8' has a bad prefix length: expected 0 to 32" },
	{ H "acl:\n  a:\n    ip: \"10.0.0.0/8x\"\n", 4,
	  "'10.0.0.0/8x' has a bad prefix length: expected 0 to 32" },
	{ H "acl:\n  a:\n    ip:\n      - 10.0.0.0/8\n      - 10.0.0/8\n", 6,
	  "'10.0.0/8' is not an IP address or network, such as "
	  "\"192.0.2.0/24\" or \"2001:db8::/32\"" },
	{ H "acl:\n  a:\n    ip: localhost\n", 4, "'localhost' is not an IP "
	  "address or network, such as \"192.0.2.0/24\" or \"2001:db8::/32\"" },
	{ H "acl:\n  a:\n    ip: \"/24\"\n", 4, "'/24' is not an IP "
	  "address or network, such as \"192.0.2.0/24\" or \"2001:db8::/32\"" },
	/* access_rules */
	{ H "access_rules: [r]\n", 2, "'access_rules' expects a mapping" },
	{ H "access_rules:\n  r:\n    - allow: admin\n", 4,
	  "access rule 'r' refers to undefined acl 'admin'" },
	{ H "acl: {admin: {user: root}}\naccess_rules:\n  r:\n"
	  "    - allow: admin\n    - deny: blocked\n", 6,
	  "access rule 'r' refers to undefined acl 'blocked'" },
	{ H "access_rules:\n  r: {deny: nobody}\n", 3,
	  "access rule 'r' refers to undefined acl 'nobody'" },
	{ H "access_rules:\n  all: {allow: all}\n", 3,
	  "'all' is a built-in access rule and cannot be defined" },
	{ H "access_rules:\n  none: [{deny: all}]\n", 3,
	  "'none' is a built-in access rule and cannot be defined" },
	{ H "access_rules:\n  r: [{allow: all}]\n  r: [{deny: all}]\n", 4,
	  "access rule 'r' is defined twice (first on line 3)" },
	{ H "access_rules:\n  r: allow\n", 3, "access rule 'r' expects a list of "
	  "entries, each {allow: ACL} or {deny: ACL}" },
	{ H "access_rules:\n  r:\n    - allow\n", 4, "access rule 'r' expects a "
	  "list of entries, each {allow: ACL} or {deny: ACL}" },
	{ H "access_rules:\n  r:\n    - {allow: a, deny: b}\n", 4, "access rule "
	  "'r' expects a list of entries, each {allow: ACL} or {deny: ACL}" },
	{ H "access_rules:\n  r:\n    allow: all\n    allow: none\n", 5,
	  "'allow' is set twice (first on line 4)" },
	{ H "access_rules:\n  r: {}\n", 3, "access rule 'r' expects a list of "
	  "entries, each {allow: ACL} or {deny: ACL}" },
	{ H "access_rules:\n  r:\n    allow: all\n    maybe: all\n", 5,
	  "unknown key 'maybe' in access rule 'r': expected allow or deny" },
	{ H "access_rules:\n  r:\n    - alow: all\n", 4, "unknown key 'alow' in "
	  "access rule 'r': expected allow or deny" },
	{ H "access_rules:\n  r:\n    - allow: [a, b]\n", 4,
	  "'allow' expects an acl name" },
	{ H "access_rules:\n  r:\n    - deny:\n", 4, "'deny' expects an acl name" },
	{ H "c2s_access: local\n", 2,
	  "'c2s_access' refers to undefined access rule 'local'" },
	{ H "access_rules: {r: {allow: all}}\nregister_access: \"R\"\n", 3,
	  "unknown key 'register_access'" },
	{ H "c2s_access: [all]\n", 2, "'c2s_access' expects a non-empty string" },
	/* shaper */
	{ H "shaper: [normal]\n", 2, "'shaper' expects a mapping" },
	{ H "shaper:\n  normal: 0\n", 3, "shaper 'normal' expects a rate in bytes "
	  "per second from 1 to 1099511627776, or {rate: N, burst_size: M}" },
	{ H "shaper:\n  normal: fast\n", 3, "shaper 'normal' expects a rate in "
	  "bytes per second from 1 to 1099511627776, or {rate: N, burst_size: M}" },
	{ H "shaper:\n  normal: \"1000\"\n", 3, "shaper 'normal' expects a rate in "
	  "bytes per second from 1 to 1099511627776, or {rate: N, burst_size: M}" },
	{ H "shaper:\n  normal: [1000]\n", 3, "shaper 'normal' expects a rate in "
	  "bytes per second from 1 to 1099511627776, or {rate: N, burst_size: M}" },
	{ H "shaper:\n  fast: {burst_size: 10}\n", 3, "shaper 'fast' needs 'rate'" },
	{ H "shaper:\n  fast: {rate: 10, burst: 10}\n", 3, "unknown key 'burst'" },
	{ H "shaper:\n  fast: {rate: 10, burst_size: 0}\n", 3,
	  "'burst_size' expects a whole number from 1 to 1099511627776" },
	{ H "shaper:\n  fast:\n    rate: 10\n    rate: 20\n", 5,
	  "'rate' is set twice (first on line 4)" },
	{ H "shaper:\n  none: 10\n", 3,
	  "'none' is the built-in absence of a shaper and cannot be defined" },
	{ H "shaper:\n  a: 1\n  a: 2\n", 4,
	  "shaper 'a' is defined twice (first on line 3)" },
	{ H CF "shaper: {normal: 1000}\nlisten:\n  - port: 5222\n    module: c2s\n"
	  "    shaper: fast\n", 5,
	  "listener on port 5222 refers to undefined shaper 'fast'" },
	{ H CF "listen:\n  - {port: 5269, module: s2s, shaper: normal}\n", 4,
	  "listener on port 5269 refers to undefined shaper 'normal'" },
};

static void
test_errors(void **state)
{
	struct scratch *s = *state;

	for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++)
		load_bad(s, bad_files[i].yaml, bad_files[i].line, bad_files[i].msg);
}

/* The message carries the C library's own words for a bad pattern. */
static void
test_regexp_errors(void **state)
{
	static const char *const pats[] = { "a(", "[z-a]", "x{2,1}" };
	static const char *const kinds[] = { "user_regexp", "server_regexp" };
	struct scratch *s = *state;

	for (size_t k = 0; k < 2; k++) {
		for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
			char yaml[256], msg[256], ebuf[160];
			regex_t re;
			int rc = regcomp(&re, pats[i], REG_EXTENDED | REG_NOSUB);

			assert_int_not_equal(rc, 0);
			regerror(rc, &re, ebuf, sizeof(ebuf));
			snprintf(yaml, sizeof(yaml), H "acl:\n  a:\n    %s:\n"
			    "      - \"^ok$\"\n      - \"%s\"\n", kinds[k], pats[i]);
			snprintf(msg, sizeof(msg), "'%s' is not a valid regular "
			    "expression: %s", pats[i], ebuf);
			load_bad(s, yaml, 6, msg);
		}
	}
}

/* Aliases may not blow a small file up into a huge option tree. The line
 * is that of the node repeated past the limit. */
static void
test_alias_bomb(void **state)
{
	struct scratch *s = *state;

	load_bad(s, H "modules:\n  mod_a:\n"
	    "    a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	    "    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
	    "    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
	    "    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
	    "    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
	    "    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
	    4, "module options hold more than 100000 values");
}

/* ------------------------------------------------------------------ */
/* acl_match                                                           */
/* ------------------------------------------------------------------ */

static void
test_acl_user_server(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s, full_file);
	jid *j;

	/* user: node@domain, prepared on both sides. */
	assert_true(match_user(c, "admin", "admin@localhost"));
	assert_true(match_user(c, "admin", "ADMIN@LocalHost/desk"));
	assert_false(match_user(c, "admin", "admin@example.org"));
	assert_false(match_user(c, "admin", "admin2@localhost"));
	/* user: a bare node is that node on any local host, and only there. */
	assert_true(match_user(c, "admin", "root@localhost"));
	assert_true(match_user(c, "admin", "Root@example.org/x"));
	assert_false(match_user(c, "admin", "root@example.net"));
	assert_false(match_user(c, "admin", "localhost"));
	/* server, and resource (in the same acl: either matches). */
	assert_true(match_user(c, "friends", "bob@example.org"));
	assert_true(match_user(c, "friends", "example.org"));
	assert_false(match_user(c, "friends", "bob@example.net"));
	assert_true(match_user(c, "friends", "bob@example.net/phone"));
	assert_false(match_user(c, "friends", "bob@example.net/Phone"));
	assert_false(match_user(c, "friends", "bob@example.net/phone2"));
	/* An acl of nothing, and no user at all. */
	assert_false(match_user(c, "empty", "bob@example.org"));
	assert_false(acl_match(c, "admin", NULL, NULL));
	assert_false(acl_match(c, "friends", NULL, NULL));

	/* Built-in and unknown names. */
	j = mkjid("admin@localhost");
	assert_true(acl_match(c, "all", j, NULL));
	assert_true(acl_match(c, "all", NULL, NULL));
	assert_false(acl_match(c, "none", j, NULL));
	assert_false(acl_match(c, "nosuch", j, NULL));
	assert_false(acl_match(c, NULL, j, NULL));
	assert_false(acl_match(c, "Admin", j, NULL));
	freejid(j);
	conf_unref(c);
}

static void
test_acl_regexp(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s, full_file);

	/* user_regexp: on the node, local hosts only. */
	assert_true(match_user(c, "bots", "bot1@localhost"));
	assert_true(match_user(c, "bots", "bot42@example.org/r"));
	assert_false(match_user(c, "bots", "bot@localhost"));
	assert_false(match_user(c, "bots", "robot1@localhost"));
	assert_false(match_user(c, "bots", "bot1x@localhost"));
	assert_false(match_user(c, "bots", "bot1@remote.org"));
	assert_false(match_user(c, "bots", "localhost"));
	/* server_regexp: on the domain, any domain. */
	assert_true(match_user(c, "bots", "anyone@chat.example.net"));
	assert_true(match_user(c, "bots", "chat.example.net"));
	assert_false(match_user(c, "bots", "anyone@example.net"));
	assert_false(match_user(c, "bots", "anyone@chat.examplexnet"));
	conf_unref(c);
}

static void
test_acl_ip(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s, H "acl:\n"
	    "  lan: {ip: [\"192.0.2.0/24\", \"2001:db8::/32\", \"10.1.2.3\"]}\n"
	    "  odd: {ip: [\"198.51.100.77/27\", \"2001:db8:0:8000::/49\"]}\n"
	    "  mapped: {ip: \"::ffff:203.0.113.0/120\"}\n"
	    "  v4all: {ip: \"0.0.0.0/0\"}\n"
	    "  every: {ip: \"::/0\"}\n"
	    "  loop6: {ip: \"::1\"}\n");
	struct sockaddr_storage ss;
	jid *j;

	/* IPv4 from an IPv4 socket, and the same in IPv4-mapped form. */
	assert_true(match_ip(c, "lan", "192.0.2.1"));
	assert_true(match_ip(c, "lan", "192.0.2.255"));
	assert_true(match_ip(c, "lan", "::ffff:192.0.2.7"));
	assert_false(match_ip(c, "lan", "192.0.3.1"));
	assert_false(match_ip(c, "lan", "::ffff:192.0.3.1"));
	/* Not mapped: ::192.0.2.1 (deprecated compatible form) is not v4. */
	assert_false(match_ip(c, "lan", "::192.0.2.1"));
	assert_true(match_ip(c, "lan", "10.1.2.3"));
	assert_false(match_ip(c, "lan", "10.1.2.4"));
	assert_true(match_ip(c, "lan", "2001:db8:ffff::1"));
	assert_false(match_ip(c, "lan", "2001:db9::1"));
	/* Prefixes that do not end on a byte; host bits were cleared. */
	assert_true(match_ip(c, "odd", "198.51.100.64"));
	assert_true(match_ip(c, "odd", "198.51.100.95"));
	assert_false(match_ip(c, "odd", "198.51.100.96"));
	assert_false(match_ip(c, "odd", "198.51.100.63"));
	assert_true(match_ip(c, "odd", "2001:db8:0:8000::1"));
	assert_true(match_ip(c, "odd", "2001:db8:0:ffff::1"));
	assert_false(match_ip(c, "odd", "2001:db8:0:7fff::1"));
	/* A network written in IPv6 form takes IPv4 sockets too. */
	assert_true(match_ip(c, "mapped", "203.0.113.9"));
	assert_false(match_ip(c, "mapped", "203.0.114.9"));
	/* 0.0.0.0/0 is every IPv4 address and no IPv6 one; ::/0 everything. */
	assert_true(match_ip(c, "v4all", "8.8.8.8"));
	assert_true(match_ip(c, "v4all", "::ffff:8.8.8.8"));
	assert_false(match_ip(c, "v4all", "2001:db8::1"));
	assert_true(match_ip(c, "every", "2001:db8::1"));
	assert_true(match_ip(c, "every", "8.8.8.8"));
	assert_true(match_ip(c, "loop6", "::1"));
	assert_false(match_ip(c, "loop6", "::2"));
	assert_false(match_ip(c, "loop6", "127.0.0.1"));

	/* No address, another family, or only a user: no match. */
	assert_false(acl_match(c, "every", NULL, NULL));
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	assert_false(acl_match(c, "every", NULL, (struct sockaddr *)&ss));
	j = mkjid("a@localhost");
	assert_false(acl_match(c, "every", j, NULL));
	assert_true(acl_match(c, "every", j, mkaddr(&ss, "192.0.2.1")));
	freejid(j);
	conf_unref(c);
}

/* ------------------------------------------------------------------ */
/* access_check                                                        */
/* ------------------------------------------------------------------ */

static void
test_access(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s, H
	    "acl:\n"
	    "  admin: {user: admin@localhost}\n"
	    "  blocked: {user: [spammer, admin@localhost]}\n"
	    "  lan: {ip: \"192.0.2.0/24\"}\n"
	    "access_rules:\n"
	    "  c2s:\n"                       /* deny first: blocked admin loses */
	    "    - deny: blocked\n"
	    "    - allow: all\n"
	    "  admin_first:\n"               /* allow first: admin wins */
	    "    - allow: admin\n"
	    "    - deny: blocked\n"
	    "    - allow: all\n"
	    "  lan_only: {allow: lan}\n"
	    "  short:\n"                    /* ejabberd's short form, in order */
	    "    deny: blocked\n"
	    "    allow: all\n"
	    "  nobody: [{deny: all}, {allow: all}]\n"
	    "  empty: []\n"
	    "  via_none: [{allow: none}]\n");

	assert_true(check(c, "c2s", "alice@localhost", NULL));
	assert_false(check(c, "c2s", "spammer@localhost", NULL));
	assert_false(check(c, "c2s", "admin@localhost", NULL));
	assert_true(check(c, "c2s", "spammer@remote.org", NULL));
	assert_true(check(c, "c2s", NULL, NULL));

	assert_true(check(c, "admin_first", "admin@localhost", NULL));
	assert_false(check(c, "admin_first", "spammer@localhost", NULL));
	assert_true(check(c, "admin_first", "bob@localhost", NULL));

	assert_false(check(c, "short", "spammer@localhost", NULL));
	assert_true(check(c, "short", "bob@localhost", NULL));
	assert_int_equal(c->access_rules[3].n, 2);
	assert_int_equal(c->access_rules[3].r[0].allow, 0);
	assert_int_equal(c->access_rules[3].r[1].allow, 1);

	/* No entry matching denies. */
	assert_true(check(c, "lan_only", "bob@localhost", "192.0.2.9"));
	assert_true(check(c, "lan_only", NULL, "::ffff:192.0.2.9"));
	assert_false(check(c, "lan_only", "bob@localhost", "198.51.100.1"));
	assert_false(check(c, "lan_only", "bob@localhost", NULL));
	assert_false(check(c, "empty", "bob@localhost", "192.0.2.9"));
	assert_false(check(c, "via_none", "bob@localhost", NULL));
	assert_false(check(c, "nobody", "admin@localhost", "192.0.2.9"));

	/* Built-in rules, unknown rules, and an unset option. */
	assert_true(check(c, "all", NULL, NULL));
	assert_true(check(c, "all", "x@y", "192.0.2.1"));
	assert_false(check(c, "none", "admin@localhost", NULL));
	assert_false(check(c, "nosuch", "admin@localhost", NULL));
	assert_false(check(c, "C2S", "alice@localhost", NULL));
	assert_true(check(c, c->c2s_access, "alice@localhost", NULL));
	assert_true(access_check(c, NULL, NULL, NULL));
	conf_unref(c);
}

/* ------------------------------------------------------------------ */
/* Shapers                                                             */
/* ------------------------------------------------------------------ */

static void
test_shaper(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s, H "shaper:\n  normal: 1000\n"
	    "  fast: {rate: 100, burst_size: 1000}\n  slow: 3\n");
	const struct conf_shaper *sh;

	assert_null(shaper_find(c, "nosuch"));
	assert_null(shaper_find(c, "none"));
	assert_null(shaper_find(c, NULL));
	sh = shaper_find(c, "normal");
	assert_non_null(sh);
	assert_int_equal(sh->rate, 1000);

	assert_int_equal(sh->burst, 1000);
	sh = shaper_find(c, "fast");
	assert_non_null(sh);
	assert_int_equal(sh->rate, 100);
	assert_int_equal(sh->burst, 1000);
	conf_unref(c);
}

/*
 * doc/configuration.md: the bucket holds up to burst_size bytes (a rate
 * alone: one second's worth) and refills at rate bytes per second; a read
 * larger than what it holds leaves it in debt, and the connection is not
 * read again until the debt is refilled. shaper_bucket_* (acl.c), which
 * stream/conn.c keeps per shaped connection, on a clock given here.
 */
static void
test_shaper_bucket(void **state)
{
	struct scratch *s = *state;
	struct conf *c = load_text(s, H "shaper:\n  fast: {rate: 1000, burst_size: 2500}\n"
	    "  plain: 700\n  slow: 7\n");
	struct shaper_bucket fast, plain, slow;
	uint64_t t0 = 5000, t;
	unsigned got;

	shaper_bucket_init(&fast, shaper_find(c, "fast"), t0);
	shaper_bucket_init(&plain, shaper_find(c, "plain"), t0);
	shaper_bucket_init(&slow, shaper_find(c, "slow"), t0);

	/* A new connection may read one second's worth at once (the model
	 * starts at the rate), not the burst: that builds up while idle. */
	assert_int_equal(shaper_bucket_allow(&fast, t0), 1000);
	assert_int_equal(shaper_bucket_allow(&plain, t0), 700);

	/* Half a second refills half the rate. */
	assert_int_equal(shaper_bucket_allow(&fast, t0 + 500), 1500);
	/* Idle for three seconds: the bucket is full, and full is the burst
	 * (2500), or one second's worth (700) for a rate alone. */
	assert_int_equal(shaper_bucket_allow(&fast, t0 + 3000), 2500);
	assert_int_equal(shaper_bucket_allow(&plain, t0 + 3000), 700);
	assert_int_equal(shaper_bucket_allow(&fast, t0 + 60000), 2500);

	/* 2900 bytes read out of 2500: 400 in debt, and nothing may be read
	 * until it is refilled: 401 ms for 400 bytes and one more. */
	t = t0 + 60000;
	shaper_bucket_take(&fast, 2900);
	assert_int_equal(shaper_bucket_allow(&fast, t), 0);
	assert_int_equal(shaper_bucket_wait_ms(&fast), 401);
	assert_int_equal(shaper_bucket_allow(&fast, t + 400), 0);
	assert_int_equal(shaper_bucket_allow(&fast, t + 401), 1);
	/* Each second adds the rate (1000): 600 a second after the debt. */
	assert_int_equal(shaper_bucket_allow(&fast, t + 1000), 600);

	/* A slow rate still refills when asked every few milliseconds:
	 * fractions of a byte are not lost (7 bytes/s: one every 143 ms). */
	shaper_bucket_take(&slow, 7);
	assert_int_equal(shaper_bucket_allow(&slow, t0), 0);
	got = 0;
	for (t = t0; t <= t0 + 2000; t += 10) {
		uint64_t a = shaper_bucket_allow(&slow, t);

		shaper_bucket_take(&slow, a);
		got += (unsigned)a;
	}
	assert_int_equal(got, 14);
	conf_unref(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_module_tree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_regexp_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alias_bomb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acl_user_server, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acl_regexp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acl_ip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_access, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shaper, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shaper_bucket, setup, teardown),
	};

	/* The sections these files use besides the core's: as the daemon
	 * does (src/xmppd.c), before the first load. */
	if (conf_section_register(&tls_conf_section) < 0 ||
	    conf_section_register(&c2s_conf_section) < 0 ||
	    conf_section_register(&listen_conf_section) < 0)
		return 1;
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
