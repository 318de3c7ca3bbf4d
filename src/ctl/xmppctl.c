/*
 * xmppctl.c - the administration tool: sends one command to a running
 * xmppd over its control socket and prints the answer.
 *
 * Exit status: 0 done, 1 the server refused (message on stderr), 2 usage,
 * 3 the server is not running.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <yaml.h>
#include "ctl/ctl.h"

static const struct {
	const char *name;
	int nargs;
	const char *args;
	const char *help;
} commands[] = {
	{ "status", 0, "", "is the server running, and how busy" },
	{ "register", 3, "USER HOST PASSWORD", "create an account" },
	{ "unregister", 2, "USER HOST", "delete an account and close its sessions" },
	{ "passwd", 3, "USER HOST PASSWORD", "set an account's password" },
	{ "users", 1, "HOST", "list the accounts of HOST" },
	{ "connected", 0, "", "list sessions: JID, worker, address, priority" },
	{ "kick", 1, "JID", "close the session of a full JID, or all of a bare JID" },
	{ "s2s", 0, "", "list server links: direction, domains, auth, TLS, stanzas in/out" },
	{ "components", 0, "", "list connected external components: domain, since, address" },
	{ "metrics", 0, "", "print the Prometheus metrics, as GET /metrics serves them" },
	{ "reload", 0, "", "reload the configuration and certificates" },
	{ "module", -1, "list | load|unload|reload NAME", "list or change loaded modules" },
	{ "stop", 0, "", "close every stream and stop the server" },
	{ "api-token", -1, "create [COMMENT] | list | revoke ID",
	    "admin HTTP API tokens (create prints the token once)" },
};

/*
 * Finds the control socket in the configuration file: ctl_socket, or
 * <spool_dir>/xmppd.ctl, relative paths taken from the file's directory,
 * as conf.c does. Only the top-level keys before the first YAML error are
 * looked at: an administrator must reach the server (to be told why a
 * reload is refused, say) precisely when the file has become broken.
 */
static char *
find_socket(const char *config)
{
	yaml_parser_t p;
	yaml_event_t ev;
	FILE *f = fopen(config, "r");
	char *sock = NULL, *spool = NULL, *key = NULL, *res = NULL, *dir, *slash;
	int depth = 0, done = 0;

	if (f == NULL) {
		fprintf(stderr, "xmppctl: %s: %s\n", config, strerror(errno));
		return NULL;
	}
	yaml_parser_initialize(&p);
	yaml_parser_set_input_file(&p, f);
	while (!done && yaml_parser_parse(&p, &ev)) {
		switch (ev.type) {
		case YAML_MAPPING_START_EVENT:
		case YAML_SEQUENCE_START_EVENT:
			depth++;
			if (depth > 1) {
				free(key);
				key = NULL;
			}
			break;
		case YAML_MAPPING_END_EVENT:
		case YAML_SEQUENCE_END_EVENT:
			depth--;
			break;
		case YAML_SCALAR_EVENT:
			if (depth != 1)
				break;
			if (key == NULL) {
				key = strdup((const char *)ev.data.scalar.value);
			} else {
				char **dst = strcmp(key, "ctl_socket") == 0 ? &sock :
				    strcmp(key, "spool_dir") == 0 ? &spool : NULL;

				if (dst != NULL) {
					free(*dst);
					*dst = strdup((const char *)ev.data.scalar.value);
				}
				free(key);
				key = NULL;
			}
			break;
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	fclose(f);
	free(key);

	dir = strdup(config);
	slash = strrchr(dir, '/');
	if (slash != NULL)
		*slash = '\0';
	else
		strcpy(dir, ".");
	if (sock == NULL) {
		const char *sp = spool != NULL ? spool : "spool";

		if (asprintf(&sock, "%s/xmppd.ctl", sp) < 0)
			sock = NULL;
	}
	if (sock != NULL && sock[0] != '/') {
		if (asprintf(&res, "%s/%s", dir, sock) < 0)
			res = NULL;
		free(sock);
	} else {
		res = sock;
	}
	free(dir);
	free(spool);
	return res;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: xmppctl [-c CONFIG | -s SOCKET] COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %-20s %s\n", commands[i].name, commands[i].args,
		    commands[i].help);
	fprintf(f, "\nModules add commands of their own (e.g. roster with mod_roster).\n"
	    "The control socket is read from the configuration (default %s).\n",
	    SYSCONFDIR "/xmppd/xmppd.yml");
}

static int
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *sock = NULL;
	char *sockpath = NULL, *req = NULL, buf[4096];
	struct sockaddr_un sun;
	size_t reqlen = 0, i, got = 0, cap = 0;
	char *reply = NULL, *nl;
	int ch, fd = -1, rc;

	while ((ch = getopt_long(argc, argv, "+c:s:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'V':
			printf("xmppctl %s\nbuild: %s\n", PACKAGE_VERSION, XMPPD_BUILD);
			return 0;
		case 'c':
			config = optarg;
			break;
		case 's':
			sock = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, argv[optind]) == 0)
			break;
	/* A command not built in may be one a module adds (xmppctl roster
	 * ...): the server decides. */
	if (i < sizeof(commands) / sizeof(commands[0]) &&
	    (commands[i].nargs >= 0 ? argc - optind - 1 != commands[i].nargs :
	    argc - optind - 1 < 1 || argc - optind - 1 > 2)) {
		fprintf(stderr, "usage: xmppctl %s %s\n", commands[i].name, commands[i].args);
		return 2;
	}

	if (sock == NULL) {
		if (config == NULL)
			config = getenv("XMPPD_CONFIG");
		if (config == NULL)
			config = SYSCONFDIR "/xmppd/xmppd.yml";
		if ((sockpath = find_socket(config)) == NULL)
			return 2;
		sock = sockpath;
	}

	/* The request: netstrings and a newline (ctl.h). */
	for (int a = optind; a < argc; a++) {
		size_t l = strlen(argv[a]);
		char *r = realloc(req, reqlen + l + 32);

		if (r == NULL) {
			free(req);
			free(sockpath);
			return 1;
		}
		req = r;
		reqlen += (size_t)sprintf(req + reqlen, "%zu:", l);
		memcpy(req + reqlen, argv[a], l);
		reqlen += l;
		req[reqlen++] = ',';
	}
	req[reqlen++] = '\n';

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(sock) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "xmppctl: socket path too long: %s\n", sock);
		return 2;
	}
	strcpy(sun.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;

		if (e == ENOENT || e == ECONNREFUSED) {
			if (strcmp(argv[optind], "status") == 0)
				printf("not running (no server on %s)\n", sock);
			else
				fprintf(stderr, "xmppctl: xmppd is not running (no server on %s)\n",
				    sock);
			rc = 3;
		} else {
			fprintf(stderr, "xmppctl: %s: %s\n", sock, strerror(e));
			rc = e == EACCES ? 4 : 1;
		}
		goto out;
	}
	if (write_all(fd, req, reqlen) < 0) {
		fprintf(stderr, "xmppctl: %s: %s\n", sock, strerror(errno));
		rc = 1;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (got + (size_t)n + 1 > cap) {
			char *r;

			cap = (got + (size_t)n + 1) * 2;
			if ((r = realloc(reply, cap)) == NULL) {
				rc = 1;
				goto out;
			}
			reply = r;
		}
		memcpy(reply + got, buf, (size_t)n);
		got += (size_t)n;
	}
	if (reply == NULL) {
		fprintf(stderr, "xmppctl: no answer from the server\n");
		rc = 1;
		goto out;
	}
	reply[got] = '\0';
	nl = strchr(reply, '\n');
	if (strncmp(reply, "OK\n", 3) == 0) {
		fputs(reply + 3, stdout);
		rc = 0;
	} else if (strncmp(reply, "ERR ", 4) == 0 && nl != NULL) {
		*nl = '\0';
		fprintf(stderr, "xmppctl: %s\n", reply + 4);
		rc = 1;
	} else {
		fprintf(stderr, "xmppctl: unexpected answer from the server\n");
		rc = 1;
	}
out:
	if (fd >= 0)
		close(fd);
	free(reply);
	free(req);
	free(sockpath);
	return rc;
}
