/*
 * mod_claimdomain - claims the service domain CLAIM_DOMAIN (a -D define)
 * and fails to load if the core refuses it, for
 * t/integration/t1100-component.py: a module may not take an external
 * component's domain. Built under the name CLAIM_NAME.
 */
#include <xmppd.h>

#ifndef CLAIM_DOMAIN
#define CLAIM_DOMAIN "claimed.invalid"
#endif
#ifndef CLAIM_NAME
#define CLAIM_NAME "mod_claimdomain"
#endif

static void
swallow(xmppd_elem *stanza, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
}

static int
load(xmppd_ctx *ctx)
{
	return xmppd_service_register(ctx, CLAIM_DOMAIN, swallow, NULL);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = CLAIM_NAME,
	.version = "1.0",
	.load = load,
};
