/*
 * mod_discofold - an account item from the disco_items fold, for
 * t/integration/t1540-im-gaps.py: every account lists one item (as a PEP
 * service would list its nodes), <item jid='ACCOUNT' node='discofold'/>,
 * so the test sees to whom mod_disco shows an account's items (XEP-0030
 * 8: the account and those with a presence subscription to it).
 */
#include <xmppd.h>

static enum xmppd_result
items(void *args, void *ud)
{
	struct xmppd_disco_args *a = args;
	xmppd_elem *it;

	if (a->node != NULL || xmppd_jid_node(a->to) == NULL)
		return XMPPD_CONTINUE;
	it = xmppd_elem_add_child(a->query, "http://jabber.org/protocol/disco#items", "item");
	xmppd_elem_set_attr(it, "jid", xmppd_jid_bare(a->to));
	xmppd_elem_set_attr(it, "node", "discofold");
	return XMPPD_CONTINUE;
}

static int
load(xmppd_ctx *ctx)
{
	return xmppd_hook_add(ctx, XMPPD_HOOK_DISCO_ITEMS, NULL, 50, items, NULL);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_discofold",
	.version = "1.0",
	.load = load,
};
