/*
 * mod_needsdep - a module that depends on mod_version, for
 * t/integration/t0800-modules.py: refused when mod_version is not loaded,
 * loaded after it whatever the order of the file, and in the way of
 * unloading it.
 */
#include <xmppd.h>

static const char *const depends[] = { "mod_version", NULL };

static int
load(xmppd_ctx *ctx)
{
	return 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_needsdep",
	.version = "1.0",
	.depends = depends,
	.load = load,
};
