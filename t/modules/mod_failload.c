/*
 * mod_failload - a module whose load() registers one of each kind of
 * thing and then fails, for t/integration/t0800-modules.py: loading is all
 * or nothing, so none of it may stay behind. Each registration would be
 * noticed if it did: the IQ handler answers, the hook drops every message,
 * the service domain swallows what is sent to it, the timers would run
 * code that dlclose has unmapped.
 */
#include <stdint.h>

#include <xmppd.h>

#define NS_FAILLOAD "urn:xmppd:test:failload"

static enum xmppd_result
drop_all(void *args, void *ud)
{
	return XMPPD_DROP;
}

static enum xmppd_result
answer(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_iq_reply(iq, NULL);
	return XMPPD_STOP;
}

static void
swallow(xmppd_elem *stanza, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
}

static uint64_t
tick(void *ud)
{
	return 10;
}

static int
load(xmppd_ctx *ctx)
{
	xmppd_elem *feature = xmppd_elem_new(NS_FAILLOAD, "failload");

	(void)xmppd_iq_register(ctx, NULL, NS_FAILLOAD, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_SERVER | XMPPD_IQ_ACCOUNT, answer, NULL);
	(void)xmppd_hook_add(ctx, XMPPD_HOOK_FILTER_PACKET, NULL, 0, drop_all, NULL);
	(void)xmppd_hook_add(ctx, XMPPD_HOOK_USER_RECEIVE_PACKET, NULL, 0, drop_all, NULL);
	(void)xmppd_disco_feature(ctx, NS_FAILLOAD);
	(void)xmppd_stream_feature(ctx, feature, 1);
	xmppd_elem_unref(feature);
	(void)xmppd_session_slot(ctx);
	(void)xmppd_timer_add_every_worker(ctx, 10, tick, NULL);
	(void)xmppd_service_register(ctx, "failload.invalid", swallow, NULL);
	xmppd_log(ctx, XMPPD_LOG_ERROR, "failing on purpose after registering");
	return -1;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_failload",
	.version = "1.0",
	.load = load,
};
