/*
 * mod_badabi - a module built for another module ABI, for
 * t/integration/t0800-modules.py: the loader must refuse it, naming both
 * versions. BADABI_MAJOR / BADABI_MINOR choose what it claims (by default
 * 99.0, a major this xmppd cannot have), BADABI_NAME its name (the file
 * must be BADABI_NAME.so). Built as mod_oldminor, for the same major and
 * minor 0, it must load.
 */
#include <xmppd.h>

#ifndef BADABI_MAJOR
#define BADABI_MAJOR 99
#endif
#ifndef BADABI_MINOR
#define BADABI_MINOR 0
#endif
#ifndef BADABI_NAME
#define BADABI_NAME "mod_badabi"
#endif

static int
load(xmppd_ctx *ctx)
{
	/* Reached only for a version this xmppd accepts (mod_oldminor):
	 * a refused module is not loaded. */
	xmppd_log(ctx, XMPPD_LOG_ERROR, "%s load() was called", BADABI_NAME);
	return 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = BADABI_MAJOR,
	.abi_minor = BADABI_MINOR,
	.name = BADABI_NAME,
	.version = "1.0",
	.load = load,
};
