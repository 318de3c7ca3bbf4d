/*
 * mod_time - XEP-0202: Entity Time.
 *
 * Answers urn:xmpp:time queries to the server with the time in UTC and the
 * offset of the server's local time zone, both in the formats of XEP-0082.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmppd.h>

#define NS_TIME "urn:xmpp:time"

static void
add(xmppd_elem *t, const char *name, const char *text)
{
	xmppd_elem *e = xmppd_elem_add_child(t, NS_TIME, name);

	xmppd_elem_add_text(e, text, strlen(text));
}

/* XEP-0082 3 (TZD): "+hh:mm" or "-hh:mm"; UTC itself is "+00:00" here, as
 * in the examples of XEP-0202 (the 'Z' form is for <utc/>). */
static void
format_tzo(char *buf, size_t size, long gmtoff)
{
	char sign = gmtoff < 0 ? '-' : '+';
	long a = labs(gmtoff);

	snprintf(buf, size, "%c%02ld:%02ld", sign, (a / 3600) % 100, (a / 60) % 60);
}

/* XEP-0202 2, 3: <tzo/> and <utc/>, both required in a result. */
static enum xmppd_result
time_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_elem *req = xmppd_elem_first_child(iq), *t;
	const char *type = xmppd_elem_attr(iq, "type");
	char tzo[16], utc[32];
	struct tm local, gm;
	time_t now;

	if (type == NULL || strcmp(type, "get") != 0) {
		xmppd_iq_error(iq, "not-allowed", NULL);   /* the time is not settable */
		return XMPPD_STOP;
	}
	if (req == NULL || strcmp(xmppd_elem_name(req), "time") != 0) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return XMPPD_STOP;
	}
	now = time(NULL);
	if (localtime_r(&now, &local) == NULL || gmtime_r(&now, &gm) == NULL ||
	    strftime(utc, sizeof(utc), "%Y-%m-%dT%H:%M:%SZ", &gm) == 0) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return XMPPD_STOP;
	}
	format_tzo(tzo, sizeof(tzo), local.tm_gmtoff);
	t = xmppd_elem_new(NS_TIME, "time");
	add(t, "tzo", tzo);
	add(t, "utc", utc);     /* XEP-0082 3.2 DateTime, in UTC: 'Z' */
	xmppd_iq_reply(iq, t);
	return XMPPD_STOP;
}

static int
load(xmppd_ctx *ctx)
{
	if (xmppd_iq_register(ctx, NULL, NS_TIME, XMPPD_IQ_GET | XMPPD_IQ_SET, XMPPD_IQ_SERVER,
	    time_iq, ctx) < 0)
		return -1;
	return xmppd_disco_feature(ctx, NS_TIME);     /* XEP-0202 4 */
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_time",
	.version = "1.0",
	.load = load,
};
