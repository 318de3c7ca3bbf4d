/*
 * mod_ping - XEP-0199: XMPP Ping, both ways.
 *
 * Client to server (XEP-0199 4.2): a ping to the server, or to the
 * account's bare JID (answered on its behalf, RFC 6121 8.5.2.1.3), gets an
 * empty result.
 *
 * Server to client (XEP-0199 4.1): a timer on every worker walks that
 * worker's sessions; one that has sent nothing for ping_interval seconds
 * gets a ping from the server's JID. The answer (a result, or an error:
 * either proves the stream alive, XEP-0199 4.1) is taken out of the
 * client's traffic in user_send_packet and goes no further. A session that
 * neither answers nor sends anything else within ping_ack_timeout seconds
 * is closed with <connection-timeout/> (RFC 6120 4.9.3.4). Input of any
 * kind counts as a sign of life (it is what xmppd_session_idle_ms
 * measures), so a client busy sending does not get pinged at all.
 *
 * State: one struct pstate per pinged session, in a session slot, touched
 * only on the session's worker (the timer and the hook both run there).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#define NS_PING "urn:xmpp:ping"
#define PING_ID_PREFIX "xmppd-ping-"

struct pconf {
	uint64_t interval_ms;
	uint64_t timeout_ms;
	uint64_t sweep_ms;          /* how often each worker looks */
	int slot;
	uint64_t seq;               /* ping ids; atomic */
};

/* The last ping sent to a session. */
struct pstate {
	char id[40];
	uint64_t sent_ms;           /* 0: answered (or overtaken by input) */
};

/* Module-wide: one mod_ping is loaded at a time (the loader refuses a
 * second), and load fills this before anything can read it. */
static struct pconf conf;

static const struct xmppd_option options[] = {
	/* Seconds without input before the server pings. */
	{ "ping_interval", XMPPD_OPT_INT, "60", 1, 86400 },
	/* Seconds the client has to answer. */
	{ "ping_ack_timeout", XMPPD_OPT_INT, "32", 1, 3600 },
	{ "send_pings", XMPPD_OPT_BOOL, "true", 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

/* ---------------------------------------------------------------- */
/* Client to server.                                                  */

/* XEP-0199 4.2; to a bare JID the server answers for the account
 * (RFC 6121 8.5.2.1.3). */
static enum xmppd_result
ping_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_elem *req = xmppd_elem_first_child(iq);
	const char *type = xmppd_elem_attr(iq, "type");

	if (type == NULL || strcmp(type, "get") != 0) {
		xmppd_iq_error(iq, "not-allowed", NULL);   /* XEP-0199 3: get only */
		return XMPPD_STOP;
	}
	if (req == NULL || strcmp(xmppd_elem_name(req), "ping") != 0) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return XMPPD_STOP;
	}
	xmppd_iq_reply(iq, NULL);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Server to client.                                                  */

static void
send_ping(xmppd_session *s, struct pconf *pc, struct pstate *ps, uint64_t now)
{
	const xmppd_jid *j = xmppd_session_jid(s);
	uint64_t n = __atomic_fetch_add(&pc->seq, 1, __ATOMIC_RELAXED);
	xmppd_elem *iq = xmppd_elem_new(NULL, "iq");

	snprintf(ps->id, sizeof(ps->id), PING_ID_PREFIX "%llx", (unsigned long long)n);
	ps->sent_ms = now != 0 ? now : 1;
	/* XEP-0199 4.1, example 1: from the server's JID to the full JID. */
	xmppd_elem_set_attr(iq, "type", "get");
	xmppd_elem_set_attr(iq, "id", ps->id);
	xmppd_elem_set_attr(iq, "from", xmppd_jid_domain(j));
	xmppd_elem_set_attr(iq, "to", xmppd_jid_full(j));
	xmppd_elem_add_child(iq, NS_PING, "ping");
	xmppd_session_send(s, iq);
	xmppd_elem_unref(iq);
}

static void
sweep_one(xmppd_session *s, void *ud)
{
	struct pconf *pc = ud;
	struct pstate *ps = xmppd_session_get(s, pc->slot);
	uint64_t now = xmppd_now_ms(), idle = xmppd_session_idle_ms(s);

	if (ps != NULL && ps->sent_ms != 0) {
		uint64_t waited = now > ps->sent_ms ? now - ps->sent_ms : 0;

		/* Input since the ping went out: the stream works. */
		if (idle < waited) {
			ps->sent_ms = 0;
		} else if (waited >= pc->timeout_ms) {
			xmppd_session_close(s, "connection-timeout", "no answer to a ping");
			return;
		} else {
			return;     /* still waiting for the answer */
		}
	}
	if (idle < pc->interval_ms)
		return;
	if (ps == NULL) {
		if ((ps = calloc(1, sizeof(*ps))) == NULL)
			return;
		xmppd_session_set(s, pc->slot, ps, free);
	}
	send_ping(s, pc, ps, now);
}

static uint64_t
sweep(void *ud)
{
	struct pconf *pc = ud;

	xmppd_session_foreach_local(sweep_one, pc);
	return pc->sweep_ms;
}

/* The client's answer to our ping: it is for the server and ends here.
 * Matched on the id (and an address that is the server, or none), so a
 * client cannot make us swallow anything but answers to its own pings. */
static enum xmppd_result
client_send(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	struct pconf *pc = ud;
	struct pstate *ps;
	const char *kind, *type, *id;

	if (pa->session == NULL || (ps = xmppd_session_get(pa->session, pc->slot)) == NULL ||
	    ps->id[0] == '\0')
		return XMPPD_CONTINUE;
	kind = xmppd_stanza_kind(pa->stanza);
	if (kind == NULL || strcmp(kind, "iq") != 0)
		return XMPPD_CONTINUE;
	type = xmppd_elem_attr(pa->stanza, "type");
	id = xmppd_elem_attr(pa->stanza, "id");
	if (type == NULL || id == NULL || strcmp(id, ps->id) != 0 ||
	    (strcmp(type, "result") != 0 && strcmp(type, "error") != 0))
		return XMPPD_CONTINUE;
	if (pa->to != NULL && (xmppd_jid_node(pa->to) != NULL ||
	    strcmp(xmppd_jid_domain(pa->to), xmppd_jid_domain(pa->from)) != 0))
		return XMPPD_CONTINUE;
	ps->sent_ms = 0;
	ps->id[0] = '\0';
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Module.                                                            */

static int
load(xmppd_ctx *ctx)
{
	struct pconf *pc = &conf;
	uint64_t shortest;

	/* Everything is set before the first registration, and read-only
	 * from then on (but for the atomic seq). */
	pc->interval_ms = (uint64_t)xmppd_opt_int(ctx, "ping_interval") * 1000;
	pc->timeout_ms = (uint64_t)xmppd_opt_int(ctx, "ping_ack_timeout") * 1000;
	/* A quarter of the shorter period, within [250 ms, 5 s]: a ping
	 * or a close comes at most that late. */
	shortest = pc->interval_ms < pc->timeout_ms ? pc->interval_ms : pc->timeout_ms;
	pc->sweep_ms = shortest / 4;
	if (pc->sweep_ms < 250)
		pc->sweep_ms = 250;
	if (pc->sweep_ms > 5000)
		pc->sweep_ms = 5000;
	pc->slot = -1;
	if (xmppd_opt_bool(ctx, "send_pings") && (pc->slot = xmppd_session_slot(ctx)) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "no session slot left");
		return -1;
	}

	if (xmppd_iq_register(ctx, NULL, NS_PING, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_SERVER | XMPPD_IQ_ACCOUNT, ping_iq, pc) < 0 ||
	    xmppd_disco_feature(ctx, NS_PING) < 0 ||
	    xmppd_disco_account_feature(ctx, NS_PING) < 0)
		goto err;
	if (pc->slot < 0)
		return 0;
	if (xmppd_hook_add(ctx, XMPPD_HOOK_USER_SEND_PACKET, NULL, 10, client_send, pc) < 0 ||
	    xmppd_timer_add_every_worker(ctx, pc->sweep_ms, sweep, pc) < 0)
		goto err;
	return 0;
err:
	/* The core takes back whatever was registered. */
	xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot register the ping handlers");
	return -1;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_ping",
	.version = "1.0",
	.options = options,
	.load = load,
};
