/*
 * mod_csi - XEP-0352: Client State Indication.
 *
 * A client that is not in use (a phone with its screen off) says
 * <inactive/>; until it says <active/>, the server holds back what can
 * wait, so that the radio is not woken for every presence change
 * (XEP-0352 3.2). Modelled on Prosody's mod_csi_simple, with ejabberd's
 * mod_client_state's "only the latest per sender".
 *
 * The stream feature <csi xmlns='urn:xmpp:csi:0'/> is offered after
 * authentication (4.1). <active/> and <inactive/> are nonzas: they come
 * through c2s_nonza, so stream management does not count them (XEP-0198
 * 4 counts stanzas only), and anything else in a nonza is left to the
 * core (unsupported-stanza-type). A stream starts active (4.2).
 *
 * What is held while inactive (user_receive_packet, priority 80, so that
 * blocking and the other filters have had their say):
 *  - presence updates: presence without a type or of type unavailable
 *    (RFC 6121 4.7.1). Only the latest per sender, keyed by the full 'from'
 *    (a contact's resource, or a room occupant's JID): a contact with three
 *    devices keeps three, so none of them is lost on the client.
 *  - standalone chat states (XEP-0085 5.5 "standalone notification"): a
 *    message whose payload is a chat state and nothing else. A <body/> or
 *    a <subject/> (a room's subject ends a join), or any payload that is
 *    not in metadata_ns below, makes it a message to deliver: receipts,
 *    markers, invitations, and encrypted payloads (OMEMO's
 *    eu.siacs.conversations.axolotl and urn:xmpp:omemo:2, OpenPGP's
 *    urn:xmpp:openpgp:0, the legacy jabber:x:encrypted: what they carry
 *    cannot be known, so they are taken to matter). XEP-0334 hints say how
 *    a message may be stored or copied, not how soon it must arrive, so
 *    they are metadata here: a chat state marked <no-store/> is still held,
 *    and a body marked so still goes at once. Only the latest chat state
 *    per sender (full JID) is kept: it is the sender's current state in
 *    its conversation with this user (states per XEP-0085 thread collapse
 *    into the last one, which is what a client shows). A received carbon
 *    (XEP-0280) of a standalone chat state is one too, keyed by the
 *    original sender (as mod_csi_simple does); a sent carbon is the user's
 *    own other device at work and goes at once.
 * Everything else goes at once: messages with a body, IQs, errors of any
 * kind, subscription requests (presence of type subscribe, subscribed,
 * unsubscribe, unsubscribed). Before it goes, everything held is flushed,
 * so the client sees what it gets in the order it was sent (the radio is
 * woken anyway). IQs flush too: an IQ is a request the client answers now,
 * and holding a contact's presence behind its IQ would reorder that
 * contact's stanzas (RFC 6120 10.1).
 *
 * A flush writes each held stanza, in the order of its latest arrival,
 * with xmppd_session_send: through the session's sink (c2s_send), so
 * stream management counts and queues it like any stanza (XEP-0198 4), a
 * held stanza being counted when it is written, not when it was held. A
 * presence first passes presence_in, which the core would have run after
 * user_receive_packet (mod_vcard adds its avatar hash there).
 *
 * The queue is bounded by csi_queue_max held stanzas: reaching it flushes
 * (nothing is dropped). <active/> flushes (before anything the client
 * sends after it is handled: XEP-0352 5.1). A resumed stream starts active
 * (XEP-0352 5.2): what was held, also while the session was detached, is
 * flushed after <resumed/> and the replay. A session that ends drops what
 * it held: presence and chat states of a session that is gone matter to
 * nobody. So does unloading the module (the slot's free function has no
 * session to send to).
 *
 * State: one struct csi per session that said <inactive/> once, in a
 * session slot (it moves with a resumed session), touched only on the
 * session's worker. An active session costs one slot lookup per stanza.
 * The resource flag XMPPD_RES_INACTIVE tells other modules (mod_push) the
 * state, from any worker.
 */
#define _GNU_SOURCE             /* tdestroy */
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#define NS_CSI "urn:xmpp:csi:0"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_FORWARD "urn:xmpp:forward:0"

/* What a held stanza is, the first byte of its key. */
enum {
	HOLD_NONE = 0,
	HOLD_PRESENCE = 'p',
	HOLD_CHATSTATE = 'c',
};

/* One held stanza: the latest of its kind from its sender. */
struct held {
	struct held *prev, *next;   /* in order of arrival of the latest */
	xmppd_elem *st;             /* a reference */
	char key[];                 /* kind byte, then the sender's JID */
};

struct csi {
	int inactive;
	size_t n;
	void *index;                /* tsearch tree of struct held, by key */
	struct held *head, *tail;
};

static const struct xmppd_option options[] = {
	/* Held stanzas per session; reaching it flushes them. */
	{ "csi_queue_max", XMPPD_OPT_INT, "256", 1, 10000 },
	{ NULL, 0, NULL, 0, 0 },
};

/* Set at load, before any hook, and at reload (workers read it). */
static int slot = -1;
static long queue_max;

/* ---------------------------------------------------------------- */
/* What may wait.                                                     */

static int
is(const char *a, const char *b)
{
	return a != NULL && strcmp(a, b) == 0;
}

/* The content namespace: NULL in a tree, but spelt out inside a
 * forwarded message (XEP-0297) that came over s2s. */
static int
content_ns(const char *ns)
{
	return ns == NULL || is(ns, "jabber:client") || is(ns, "jabber:server");
}

/* Children that are not a payload: they say how to thread, store, copy or
 * date a message, not what it is. */
static int
metadata_ns(const char *ns)
{
	return is(ns, "urn:xmpp:hints") ||      /* XEP-0334 */
	    is(ns, "urn:xmpp:sid:0") ||         /* XEP-0359 origin-id, stanza-id */
	    is(ns, "urn:xmpp:delay") ||         /* XEP-0203 */
	    is(ns, "jabber:x:event");           /* XEP-0022, chat states' forerunner */
}

/* A message whose only payload is a chat state (XEP-0085 5.5). */
static int
standalone_chat_state(const xmppd_elem *m)
{
	int state = 0;

	for (xmppd_elem *c = xmppd_elem_first_child(m); c != NULL; c = xmppd_elem_next_sibling(c)) {
		const char *ns = xmppd_elem_ns(c);

		if (is(ns, NS_CHATSTATES))
			state = 1;
		else if (content_ns(ns) ? !is(xmppd_elem_name(c), "thread") : !metadata_ns(ns))
			return 0;       /* a body, a subject, an error, a payload */
	}
	return state;
}

/* A received carbon (XEP-0280 7) of a standalone chat state: the
 * original, or NULL. A carbon comes from the account's own bare JID
 * (XEP-0280 11); a wrapper from anyone else is not one. */
static const xmppd_elem *
carbon_of_chat_state(const xmppd_elem *m, xmppd_session *s)
{
	xmppd_elem *rc = NULL, *fw, *inner;

	if (!is(xmppd_elem_attr(m, "from"), xmppd_jid_bare(xmppd_session_jid(s))))
		return NULL;
	for (xmppd_elem *c = xmppd_elem_first_child(m); c != NULL; c = xmppd_elem_next_sibling(c)) {
		const char *ns = xmppd_elem_ns(c);

		if (is(ns, NS_CARBONS) && is(xmppd_elem_name(c), "received") && rc == NULL)
			rc = c;
		else if (!metadata_ns(ns))
			return NULL;
	}
	if (rc == NULL || (fw = xmppd_elem_child(rc, NS_FORWARD, "forwarded")) == NULL)
		return NULL;
	for (inner = xmppd_elem_first_child(fw); inner != NULL;
	    inner = xmppd_elem_next_sibling(inner))
		if (content_ns(xmppd_elem_ns(inner)) && is(xmppd_elem_name(inner), "message"))
			break;
	if (inner == NULL || is(xmppd_elem_attr(inner, "type"), "error") ||
	    xmppd_elem_attr(inner, "from") == NULL || !standalone_chat_state(inner))
		return NULL;
	return inner;
}

/* What st is to an inactive session: HOLD_PRESENCE or HOLD_CHATSTATE,
 * with the sender it is kept by in *from_r, or HOLD_NONE (it goes now). */
static int
classify(const xmppd_elem *st, xmppd_session *s, const char **from_r)
{
	const char *kind = xmppd_stanza_kind(st), *type = xmppd_stanza_type(st);
	const xmppd_elem *orig;

	if ((*from_r = xmppd_elem_attr(st, "from")) == NULL || kind == NULL)
		return HOLD_NONE;
	if (is(kind, "presence"))
		/* RFC 6121 4.7.1: availability; subscriptions (3), probes
		 * and errors go now. */
		return is(type, "available") || is(type, "unavailable") ? HOLD_PRESENCE : HOLD_NONE;
	if (!is(kind, "message") || is(type, "error"))
		return HOLD_NONE;
	if (standalone_chat_state(st))
		return HOLD_CHATSTATE;
	if ((orig = carbon_of_chat_state(st, s)) != NULL) {
		*from_r = xmppd_elem_attr(orig, "from");
		return HOLD_CHATSTATE;
	}
	return HOLD_NONE;
}

/* ---------------------------------------------------------------- */
/* The queue.                                                         */

static int
held_cmp(const void *a, const void *b)
{
	return strcmp(((const struct held *)a)->key, ((const struct held *)b)->key);
}

static void
unlink_held(struct csi *c, struct held *h)
{
	if (h->prev != NULL)
		h->prev->next = h->next;
	else
		c->head = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	else
		c->tail = h->prev;
}

static void
append_held(struct csi *c, struct held *h)
{
	h->next = NULL;
	h->prev = c->tail;
	if (c->tail != NULL)
		c->tail->next = h;
	else
		c->head = h;
	c->tail = h;
}

static void
no_free(void *p)
{
	(void)p;
}

/* Keeps st as the latest of its kind from its sender, at the end of the
 * order. 0, or -1 when out of memory (nothing changed). */
static int
hold(struct csi *c, int kind, const char *from, xmppd_elem *st)
{
	size_t flen = strlen(from);
	struct held *h = malloc(sizeof(*h) + flen + 2), **found;

	if (h == NULL)
		return -1;
	h->key[0] = (char)kind;
	memcpy(h->key + 1, from, flen + 1);
	if ((found = tsearch(h, &c->index, held_cmp)) == NULL) {
		free(h);
		return -1;
	}
	if (*found != h) {
		/* An older one from the same sender: replaced, and it moves
		 * to where the new one arrived. */
		free(h);
		h = *found;
		xmppd_elem_unref(h->st);
		unlink_held(c, h);
	} else {
		c->n++;
	}
	h->st = xmppd_elem_ref(st);
	append_held(c, h);
	return 0;
}

/* Takes everything held out of c (which the sends below may see freed, if
 * one ends the session) and writes it to s, in order. */
static void
flush(xmppd_session *s, struct csi *c)
{
	struct held *h = c->head, *next;
	const xmppd_jid *j = xmppd_session_jid(s);

	tdestroy(c->index, no_free);
	c->index = NULL;
	c->head = c->tail = NULL;
	c->n = 0;
	for (; h != NULL; h = next) {
		struct xmppd_packet_args pa = { h->st, NULL, j, s };

		next = h->next;
		/* As deliver_local would have: presence_in after
		 * user_receive_packet, then the sink. */
		if (!is(xmppd_stanza_kind(h->st), "presence") ||
		    xmppd_hook_run(XMPPD_HOOK_PRESENCE_IN, xmppd_jid_domain(j), &pa) ==
		    XMPPD_CONTINUE)
			xmppd_session_send(s, h->st);
		xmppd_elem_unref(h->st);
		free(h);
	}
}

/* The slot's free function: the session ended (or the module unloads). */
static void
csi_free(void *p)
{
	struct csi *c = p;
	struct held *h, *next;

	tdestroy(c->index, no_free);
	for (h = c->head; h != NULL; h = next) {
		next = h->next;
		xmppd_elem_unref(h->st);
		free(h);
	}
	free(c);
}

/* ---------------------------------------------------------------- */
/* Hooks.                                                             */

/* XEP-0352 4.2: <inactive/> and <active/>; no reply to either. */
static enum xmppd_result
on_nonza(void *args, void *ud)
{
	struct xmppd_nonza_args *na = args;
	const char *name = xmppd_elem_name(na->elem);
	struct csi *c;

	(void)ud;
	if (!is(xmppd_elem_ns(na->elem), NS_CSI))
		return XMPPD_CONTINUE;
	c = xmppd_session_get(na->session, slot);
	if (is(name, "inactive")) {
		if (c == NULL) {
			if ((c = calloc(1, sizeof(*c))) == NULL)
				return XMPPD_STOP;      /* stays active */
			xmppd_session_set(na->session, slot, c, csi_free);
		}
		c->inactive = 1;
		xmppd_session_set_flags(na->session, XMPPD_RES_INACTIVE, XMPPD_RES_INACTIVE);
		return XMPPD_STOP;
	}
	if (is(name, "active")) {
		xmppd_session_set_flags(na->session, XMPPD_RES_INACTIVE, 0);
		if (c != NULL && c->inactive) {
			c->inactive = 0;
			flush(na->session, c);
		}
		return XMPPD_STOP;
	}
	return XMPPD_CONTINUE;  /* not ours: unsupported-stanza-type */
}

static enum xmppd_result
on_receive(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	struct csi *c;
	const char *from;
	int kind;

	(void)ud;
	if (pa->session == NULL || (c = xmppd_session_get(pa->session, slot)) == NULL ||
	    !c->inactive)
		return XMPPD_CONTINUE;
	kind = classify(pa->stanza, pa->session, &from);
	if (kind == HOLD_NONE || hold(c, kind, from, pa->stanza) < 0) {
		/* It goes now, after what came before it. */
		flush(pa->session, c);
		return XMPPD_CONTINUE;
	}
	if (c->n >= (size_t)__atomic_load_n(&queue_max, __ATOMIC_RELAXED))
		flush(pa->session, c);  /* full: sent, never dropped */
	return XMPPD_STOP;
}

/* XEP-0352 5.2: a resumed stream (XEP-0198 5) starts active. */
static enum xmppd_result
on_resumed(void *args, void *ud)
{
	struct xmppd_session_args *sa = args;
	struct csi *c = xmppd_session_get(sa->session, slot);

	(void)ud;
	if (c == NULL)
		return XMPPD_CONTINUE;
	xmppd_session_set_flags(sa->session, XMPPD_RES_INACTIVE, 0);
	if (c->inactive) {
		c->inactive = 0;
		flush(sa->session, c);
	}
	return XMPPD_CONTINUE;
}

/* ---------------------------------------------------------------- */
/* Module.                                                            */

static int
reload(xmppd_ctx *ctx)
{
	__atomic_store_n(&queue_max, xmppd_opt_int(ctx, "csi_queue_max"), __ATOMIC_RELAXED);
	return 0;
}

static int
load(xmppd_ctx *ctx)
{
	xmppd_elem *feature;
	int rc;

	(void)reload(ctx);
	if ((slot = xmppd_session_slot(ctx)) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "no session slot left");
		return -1;
	}
	/* XEP-0352 4.1: after authentication. */
	feature = xmppd_elem_new(NS_CSI, "csi");
	rc = xmppd_stream_feature(ctx, feature, 1);
	xmppd_elem_unref(feature);
	if (rc < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_C2S_NONZA, NULL, 50, on_nonza, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_USER_RECEIVE_PACKET, NULL, 80, on_receive, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_SM_SESSION_RESUMED, NULL, 50, on_resumed, NULL) < 0) {
		/* The core takes back whatever was registered. */
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot register the CSI handlers");
		return -1;
	}
	return 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.4: c2s_nonza, sm_session_resumed */
	.name = "mod_csi",
	.version = "1.0",
	.options = options,
	.load = load,
	.reload = reload,
};
