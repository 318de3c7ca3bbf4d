/*
 * mod_csiprobe - what t/integration/t1520-csi.py cannot see or do from a
 * client, as control commands:
 *
 *   xmppctl csiprobe flags BAREJID
 *       one line per bound resource: "FULLJID FLAGS" (hexadecimal), from
 *       xmppd_user_resources: the XMPPD_RES_INACTIVE bit mod_csi keeps.
 *   xmppctl csiprobe carbon FULLJID SENDER STATE
 *       delivers FULLJID a received carbon (XEP-0280 7) of a standalone
 *       chat state <STATE/> from SENDER, from the account's bare JID as
 *       mod_carbons would (a client cannot send from a bare JID), through
 *       xmppd_deliver (user_receive_packet runs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#define USAGE "csiprobe flags BAREJID | csiprobe carbon FULLJID SENDER STATE"

struct out {
	char *buf;
	size_t len;
};

static void
one(const struct xmppd_resource *r, void *ud)
{
	struct out *o = ud;
	char line[3200];
	int n = snprintf(line, sizeof(line), "%s %x\n", r->full, r->flags);
	char *b;

	if (n < 0 || (size_t)n >= sizeof(line) || (b = realloc(o->buf, o->len + n + 1)) == NULL)
		return;
	memcpy(b + o->len, line, (size_t)n + 1);
	o->buf = b;
	o->len += (size_t)n;
}

static int
flags(const char *bare, char **out_r)
{
	xmppd_jid *j = xmppd_jid_parse(bare);
	struct out o = { NULL, 0 };

	if (j == NULL) {
		*out_r = strdup("bad JID");
		return -1;
	}
	(void)xmppd_user_resources(j, one, &o);
	xmppd_jid_free(j);
	*out_r = o.buf != NULL ? o.buf : strdup("");
	return 0;
}

static int
carbon(const char *full, const char *sender, const char *state, char **out_r)
{
	xmppd_jid *to = xmppd_jid_parse(full);
	xmppd_elem *m, *fw, *inner;
	char text[32];
	int n;

	if (to == NULL || xmppd_jid_resource(to) == NULL) {
		xmppd_jid_free(to);
		*out_r = strdup("bad JID");
		return -1;
	}
	m = xmppd_elem_new(NULL, "message");
	xmppd_elem_set_attr(m, "from", xmppd_jid_bare(to));
	xmppd_elem_set_attr(m, "to", full);
	xmppd_elem_set_attr(m, "type", "chat");
	fw = xmppd_elem_add_child(xmppd_elem_add_child(m, "urn:xmpp:carbons:2", "received"),
	    "urn:xmpp:forward:0", "forwarded");
	inner = xmppd_elem_add_child(fw, NULL, "message");
	xmppd_elem_set_attr(inner, "from", sender);
	xmppd_elem_set_attr(inner, "to", xmppd_jid_bare(to));
	xmppd_elem_set_attr(inner, "type", "chat");
	(void)xmppd_elem_add_child(inner, "http://jabber.org/protocol/chatstates", state);
	n = xmppd_deliver(to, m);
	xmppd_elem_unref(m);
	xmppd_jid_free(to);
	snprintf(text, sizeof(text), "delivered %d\n", n);
	*out_r = strdup(text);
	return 0;
}

static int
probe(int argc, char **argv, char **out_r, void *ud)
{
	(void)ud;
	if (argc == 3 && strcmp(argv[1], "flags") == 0)
		return flags(argv[2], out_r);
	if (argc == 5 && strcmp(argv[1], "carbon") == 0)
		return carbon(argv[2], argv[3], argv[4], out_r);
	*out_r = strdup("usage: " USAGE);
	return -1;
}

static int
load(xmppd_ctx *ctx)
{
	return xmppd_ctl_register(ctx, "csiprobe", USAGE, probe, NULL);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_csiprobe",
	.version = "1.0",
	.load = load,
};
