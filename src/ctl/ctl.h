/*
 * ctl.h - the control socket (a Unix socket, mode 0600) that xmppctl talks
 * to, served on the main thread.
 *
 * Protocol: the client sends its arguments as netstrings ("5:hello,")
 * followed by a newline; the server answers "OK\n" or "ERR message\n",
 * then the output, and closes. doc/admin.md lists the commands.
 */
#ifndef XMPPD_CTL_H
#define XMPPD_CTL_H

#include <stddef.h>

struct event_base;
struct evbuffer;

/* What only the daemon's main() can do, handed to the control socket when
 * it starts (the composition root, src/xmppd.c). */
struct ctl_daemon {
	/* Reloads the configuration file and certificates; 0, or -1 with
	 * the reason in *error_r (the running configuration is unchanged).
	 * The message is the daemon's, valid until the next reload or module
	 * command (main thread). */
	int (*reload)(const char **error_r);
	/* Starts an orderly shutdown. */
	void (*request_stop)(void);
};

int ctl_listen(struct event_base *base, const char *path, const struct ctl_daemon *daemon,
    const char **error_r);
void ctl_close(void);

/* Shared with xmppctl: parses netstrings from buf (len bytes). Returns the
 * number of arguments (args point into a copy in *mem_r, which the caller
 * frees), 0 if the request is not complete yet, -1 if malformed. */
int ctl_parse_request(const char *buf, size_t len, char ***args_r, char **mem_r);

/*
 * Runs one command (argv[0] and its arguments) on the main thread and
 * writes its answer to out: "OK\n" and the output, or "ERR message\n".
 * The control socket and the admin HTTP API (ctl/api.c) share it.
 */
struct ctl_call {
	int want_json;      /* in: also build the typed result */
	void *json;         /* out: json_t * (a new reference) for status, users,
	                     * connected, module list and s2s when want_json;
	                     * else NULL */
	int unknown;        /* out: no such command */
	int stop_after;     /* out: call ctl_request_stop once answered */
};
void ctl_run(struct ctl_call *call, int argc, char **argv, struct evbuffer *out);
/* The daemon's orderly shutdown (ctl_daemon.request_stop). */
void ctl_request_stop(void);

#define CTL_MAX_REQUEST 65536
#define CTL_MAX_ARGS 16

#endif
