/*
 * mod_featurefold - stream features from a module, for
 * t/integration/t0810-hooks.py. The c2s_stream_features fold adds, each
 * time the server sends <stream:features/>, one <stage/> saying what the
 * hook was told (tls, authenticated, host), so the test sees the fold ran
 * at that stage with the right arguments; a second handler, restricted to
 * the host of option only_host, adds <only-host/>. Two static features
 * (xmppd_stream_feature) are registered too: <static-pre/> for before
 * authentication, <static-post/> for after it.
 */
#include <xmppd.h>

#define NS_FF "urn:xmppd:test:featurefold"

static const struct xmppd_option options[] = {
	{ "only_host", XMPPD_OPT_STRING, NULL, 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

static enum xmppd_result
stage(void *args, void *ud)
{
	struct xmppd_features_args *a = args;
	xmppd_elem *e = xmppd_elem_add_child(a->features, NS_FF, "stage");

	xmppd_elem_set_attr(e, "tls", a->tls ? "1" : "0");
	xmppd_elem_set_attr(e, "authenticated", a->authenticated ? "1" : "0");
	xmppd_elem_set_attr(e, "host", a->host != NULL ? a->host : "");
	return XMPPD_CONTINUE;
}

static enum xmppd_result
only_host(void *args, void *ud)
{
	struct xmppd_features_args *a = args;

	(void)xmppd_elem_add_child(a->features, NS_FF, "only-host");
	return XMPPD_CONTINUE;
}

static int
load(xmppd_ctx *ctx)
{
	const char *host = xmppd_opt_string(ctx, "only_host");
	xmppd_elem *pre = xmppd_elem_new(NS_FF, "static-pre");
	xmppd_elem *post = xmppd_elem_new(NS_FF, "static-post");
	int rc = 0;

	if (xmppd_stream_feature(ctx, pre, 0) < 0 || xmppd_stream_feature(ctx, post, 1) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_C2S_STREAM_FEATURES, NULL, 50, stage, NULL) < 0 ||
	    (host != NULL &&
	    xmppd_hook_add(ctx, XMPPD_HOOK_C2S_STREAM_FEATURES, host, 50, only_host, NULL) < 0))
		rc = -1;
	xmppd_elem_unref(pre);
	xmppd_elem_unref(post);
	return rc;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_featurefold",
	.version = "1.0",
	.options = options,
	.load = load,
};
