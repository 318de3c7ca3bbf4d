/*
 * mod_rosterprov - a test module (t1510): answers the roster query
 * (xmppd_roster_provide, ABI 1.4) from its option `pairs`, a list of
 * "USER CONTACT" bare JIDs: a listed pair is in the roster with
 * subscription both, any other is not. It answers on a timer, later than
 * the call, as a provider reading the store would.
 */
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

static const struct xmppd_option options[] = {
	{ "pairs", XMPPD_OPT_STRING_LIST, NULL, 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

static xmppd_ctx *module_ctx;

struct answer {
	xmppd_roster_sub_fn done;
	void *ud;
	int sub;
};

static uint64_t
answer_now(void *ud)
{
	struct answer *a = ud;

	a->done(a->sub, a->ud);
	free(a);
	return 0;
}

static void
provide(const xmppd_jid *user, const xmppd_jid *contact, xmppd_roster_sub_fn done,
    void *done_ud)
{
	size_t n = xmppd_opt_list_len(module_ctx, "pairs"), ul = strlen(xmppd_jid_bare(user));
	struct answer *a = malloc(sizeof(*a));
	int sub = XMPPD_SUB_NONE;

	for (size_t i = 0; i < n; i++) {
		const char *p = xmppd_opt_list_at(module_ctx, "pairs", i);

		if (strncmp(p, xmppd_jid_bare(user), ul) == 0 && p[ul] == ' ' &&
		    strcmp(p + ul + 1, xmppd_jid_bare(contact)) == 0)
			sub = XMPPD_SUB_BOTH | XMPPD_SUB_IN_ROSTER;
	}
	if (a == NULL) {
		done(sub, done_ud);
		return;
	}
	a->done = done;
	a->ud = done_ud;
	a->sub = sub;
	if (xmppd_timer_add(module_ctx, 5, answer_now, a) == NULL)
		answer_now(a);
}

static int
load(xmppd_ctx *ctx)
{
	module_ctx = ctx;
	return xmppd_roster_provide(ctx, provide);
}

static void
unload(xmppd_ctx *ctx)
{
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_rosterprov",
	.version = "1.0",
	.options = options,
	.load = load,
	.unload = unload,
};
