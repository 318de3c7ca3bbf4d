/*
 * mod_timerstorm - a module whose timers make timers, for
 * t/integration/t0800-modules.py: on every worker a timer ticks each
 * millisecond and starts a one-shot timer on every worker, 50 ms out. A
 * timer made for another worker is started there by a task, so one can
 * be on its way while the module is unloaded; if it survived the unload
 * it would run code that dlclose has unmapped. Each tick sleeps 2 ms
 * first (no real module may block its worker; this one does, so that a
 * worker is likely to be inside a tick when the unload removes the other
 * worker's timers, and to send that worker a new one right after).
 */
#include <stdint.h>
#include <unistd.h>

#include <xmppd.h>

static xmppd_ctx *module_ctx;

static uint64_t
child(void *ud)
{
	return 0;                       /* once */
}

static uint64_t
tick(void *ud)
{
	usleep(2000);
	(void)xmppd_timer_add_every_worker(module_ctx, 50, child, NULL);
	return 1;
}

static int
load(xmppd_ctx *ctx)
{
	module_ctx = ctx;
	return xmppd_timer_add_every_worker(ctx, 1, tick, NULL);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_timerstorm",
	.version = "1.0",
	.load = load,
};
