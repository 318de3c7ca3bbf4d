/*
 * mod_s2shooks - a module for t/integration/t1030-s2s-hooks.py: it shows
 * that s2s_send_packet runs for a stanza leaving on an s2s link and
 * s2s_receive_packet for one arriving on an s2s stream, each with that
 * stanza, for the right host, on the right server.
 *
 * Both hooks are registered once per host of the option `hosts`, with the
 * host as the handler's data, so a line says which host's registration
 * ran (doc/hooks.md: the host matched is the local domain of the link for
 * s2s_send_packet, the recipient's domain for s2s_receive_packet). Every
 * call is recorded and listed by `xmppctl s2shooks`, one line each,
 * TAB-separated:
 *
 *     send|receive  host  kind  id  from  to
 *
 * A message whose body is "drop at s2s_send_packet" (or "... receive")
 * is dropped by that hook (XMPPD_DROP), to show that the result counts.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#define MAX_LINES 512
#define LINE_MAX_ 512

static const struct xmppd_option options[] = {
	{ "hosts", XMPPD_OPT_STRING_LIST, NULL, 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

/* The record: hooks run on every worker, xmppctl on the main thread. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *lines[MAX_LINES];
static size_t nlines;

static void
record(const char *what, const char *host, struct xmppd_packet_args *a)
{
	const char *kind = xmppd_stanza_kind(a->stanza), *id = xmppd_elem_attr(a->stanza, "id");
	char *line = malloc(LINE_MAX_);

	if (line == NULL)
		return;
	snprintf(line, LINE_MAX_, "%s\t%s\t%s\t%s\t%s\t%s", what, host, kind ? kind : "-",
	    id ? id : "-", a->from ? xmppd_jid_full(a->from) : "-",
	    a->to ? xmppd_jid_full(a->to) : "-");
	pthread_mutex_lock(&lock);
	if (nlines < MAX_LINES) {
		lines[nlines++] = line;
		line = NULL;
	}
	pthread_mutex_unlock(&lock);
	free(line);
}

static enum xmppd_result
on_hook(const char *what, void *args, void *ud)
{
	struct xmppd_packet_args *a = args;
	const char *body = xmppd_elem_child_text(a->stanza, NULL, "body");
	char drop[64];

	record(what, ud, a);
	snprintf(drop, sizeof(drop), "drop at s2s_%s_packet", what);
	return body != NULL && strcmp(body, drop) == 0 ? XMPPD_DROP : XMPPD_CONTINUE;
}

static enum xmppd_result
on_send(void *args, void *ud)
{
	return on_hook("send", args, ud);
}

static enum xmppd_result
on_receive(void *args, void *ud)
{
	return on_hook("receive", args, ud);
}

static int
list_ctl(int argc, char **argv, char **out_r, void *ud)
{
	size_t len = 1;
	char *out;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nlines; i++)
		len += strlen(lines[i]) + 1;
	out = malloc(len);
	if (out != NULL) {
		out[0] = '\0';
		for (size_t i = 0; i < nlines; i++) {
			strcat(out, lines[i]);
			strcat(out, "\n");
		}
	}
	pthread_mutex_unlock(&lock);
	*out_r = out;
	return 0;
}

static int
load(xmppd_ctx *ctx)
{
	size_t n = xmppd_opt_list_len(ctx, "hosts");

	for (size_t i = 0; i < n; i++) {
		/* The option's strings live as long as the module. */
		void *host = (void *)xmppd_opt_list_at(ctx, "hosts", i);

		if (xmppd_hook_add(ctx, XMPPD_HOOK_S2S_SEND_PACKET, host, 50, on_send, host) < 0 ||
		    xmppd_hook_add(ctx, XMPPD_HOOK_S2S_RECEIVE_PACKET, host, 50, on_receive,
		    host) < 0)
			return -1;
	}
	return xmppd_ctl_register(ctx, "s2shooks", "s2shooks", list_ctl, NULL);
}

static void
unload(xmppd_ctx *ctx)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nlines; i++)
		free(lines[i]);
	nlines = 0;
	pthread_mutex_unlock(&lock);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_s2shooks",
	.version = "1.0",
	.options = options,
	.load = load,
	.unload = unload,
};
