/*
 * mod_version - XEP-0092: Software Version.
 *
 * Answers jabber:iq:version queries to the server with the server's name
 * and version, and the operating system unless show_os is false.
 */
#include <string.h>
#include <sys/utsname.h>

#include <xmppd.h>

#define NS_VERSION "jabber:iq:version"

static const struct xmppd_option options[] = {
	/* XEP-0092 6: revealing the OS may help an attacker; off switch. */
	{ "show_os", XMPPD_OPT_BOOL, "true", 0, 0 },
	{ "name", XMPPD_OPT_STRING, "xmppd", 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

static void
add(xmppd_elem *q, const char *name, const char *text)
{
	xmppd_elem *e = xmppd_elem_add_child(q, NS_VERSION, name);

	xmppd_elem_add_text(e, text, strlen(text));
}

/* XEP-0092 2: the result carries name, version and optionally os. */
static enum xmppd_result
version_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_ctx *ctx = ud;
	xmppd_elem *q = xmppd_elem_new(NS_VERSION, "query");

	add(q, "name", xmppd_opt_string(ctx, "name"));
	add(q, "version", xmppd_version());
	if (xmppd_opt_bool(ctx, "show_os")) {
		struct utsname u;

		if (uname(&u) == 0)
			add(q, "os", u.sysname);
	}
	xmppd_iq_reply(iq, q);
	return XMPPD_STOP;
}

static int
load(xmppd_ctx *ctx)
{
	if (xmppd_iq_register(ctx, NULL, NS_VERSION, XMPPD_IQ_GET, XMPPD_IQ_SERVER,
	    version_iq, ctx) < 0)
		return -1;
	return xmppd_disco_feature(ctx, NS_VERSION);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_version",
	.version = "1.0",
	.options = options,
	.load = load,
};
