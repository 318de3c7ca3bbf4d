/*
 * mod_rosterfold - a module that folds into roster_get, for
 * t/integration/t0810-hooks.py: every full roster result (RFC 6121 2.1.3)
 * that mod_roster sends carries, after the user's own items, one item this
 * module adds (a shared contact, as a shared-roster module would). Its
 * name names the user the fold was run for, so the test sees that the
 * hook was handed the right account.
 */
#include <stdio.h>

#include <xmppd.h>

#define NS_ROSTER "jabber:iq:roster"

static enum xmppd_result
fold(void *args, void *ud)
{
	struct xmppd_roster_args *a = args;
	xmppd_elem *item, *group;
	char jid[1024], name[1100];

	snprintf(jid, sizeof(jid), "helpdesk@%s", xmppd_jid_domain(a->user));
	snprintf(name, sizeof(name), "Helpdesk for %s", xmppd_jid_bare(a->user));
	item = xmppd_elem_add_child(a->query, NS_ROSTER, "item");
	xmppd_elem_set_attr(item, "jid", jid);
	xmppd_elem_set_attr(item, "name", name);
	xmppd_elem_set_attr(item, "subscription", "both");
	group = xmppd_elem_add_child(item, NS_ROSTER, "group");
	xmppd_elem_add_text(group, "Shared", 6);
	/* A fold: let the others add theirs. */
	return XMPPD_CONTINUE;
}

static int
load(xmppd_ctx *ctx)
{
	return xmppd_hook_add(ctx, XMPPD_HOOK_ROSTER_GET, NULL, 50, fold, NULL);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_rosterfold",
	.version = "1.0",
	.load = load,
};
