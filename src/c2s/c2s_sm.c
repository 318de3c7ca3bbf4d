/*
 * c2s_sm.c - stream management (XEP-0198, urn:xmpp:sm:3) on a client
 * stream: acks in both directions, the queue of what the client has not
 * acknowledged, sessions that outlive their connection (detached), and
 * resumption on a new connection, on whatever worker that is.
 *
 * Everything here works on struct c2s and its xstream, never on a socket,
 * so a WebSocket session (a c2s whose xstream is framed) gets the same.
 *
 * A c2s whose connection is gone (c->gone) lives on in one of three
 * states (doc/architecture.md, "What a detached session is"):
 *   detached  the stream was not closed cleanly (XEP-0198 7) and
 *             resumption was granted: still bound, routable, with its
 *             presence; what is delivered to it is queued; after `max`
 *             seconds it ends as any session does;
 *   moved     a <resume/> on another worker took it: it forwards what is
 *             still delivered to it until the new connection has taken
 *             over the session table entry (released), then goes;
 *   resuming  a new connection whose <resume/> is being answered by the
 *             old session's worker.
 *
 * Resumption moves the session's state (bound JID, presence, priority,
 * module slots, counters, queue, id) to the new connection's worker;
 * connections never change worker (doc/architecture.md, "Threads").
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "c2s/c2s_int.h"
#include "c2s/c2s_sm_int.h"
#include "c2s/smq.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/hold.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/worker.h"
#include "router/router.h"
#include "router/session.h"
#include "router/sm.h"
#include "stream/xstream.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"
#include "xmpp/stanza.h"


/* ---------------------------------------------------------------- */
/* Resumption ids: id -> (worker, sid), any thread.                   */

struct smid {
	struct smid *next;
	unsigned worker;
	uint64_t sid;
	char id[SM_ID_LEN + 1];
};

#define SMID_BUCKETS 256

static pthread_mutex_t smid_lock = PTHREAD_MUTEX_INITIALIZER;
static struct smid *smid_buckets[SMID_BUCKETS];

/* Ids are random hex: their first two digits spread them. */
static struct smid **
smid_bucket(const char *id)
{
	unsigned b = 0;

	for (int i = 0; i < 2 && id[i] != '\0'; i++)
		b = b * 16 + (unsigned)(id[i] <= '9' ? id[i] - '0' : (id[i] | 32) - 'a' + 10);
	return &smid_buckets[b % SMID_BUCKETS];
}

static void
smid_set(const char *id, unsigned worker, uint64_t sid)
{
	struct smid **pp, *x;

	pthread_mutex_lock(&smid_lock);
	pp = smid_bucket(id);
	for (x = *pp; x != NULL && strcmp(x->id, id) != 0; x = x->next)
		;
	if (x == NULL && (x = calloc(1, sizeof(*x))) != NULL) {
		snprintf(x->id, sizeof(x->id), "%s", id);
		x->next = *pp;
		*pp = x;
	}
	if (x != NULL) {
		x->worker = worker;
		x->sid = sid;
	}
	pthread_mutex_unlock(&smid_lock);
}

void
c2s_sm_id_set(const char *id, unsigned worker, uint64_t sid)
{
	smid_set(id, worker, sid);
}

static int
smid_find(const char *id, unsigned *worker_r, uint64_t *sid_r)
{
	int rc = -1;

	pthread_mutex_lock(&smid_lock);
	for (struct smid *x = *smid_bucket(id); x != NULL; x = x->next)
		if (strcmp(x->id, id) == 0) {
			*worker_r = x->worker;
			*sid_r = x->sid;
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&smid_lock);
	return rc;
}

/* Only if it is still sid's (a resumed session has another). */
static void
smid_del(const char *id, uint64_t sid)
{
	struct smid **pp, *x;

	pthread_mutex_lock(&smid_lock);
	for (pp = smid_bucket(id); (x = *pp) != NULL; pp = &x->next)
		if (strcmp(x->id, id) == 0) {
			if (x->sid == sid) {
				*pp = x->next;
				free(x);
			}
			break;
		}
	pthread_mutex_unlock(&smid_lock);
}

/* ---------------------------------------------------------------- */
/* Sessions without a connection, per worker (for shutdown).          */

static struct c2s **gone_heads;
static unsigned ngone_heads;

int
c2s_sm_init(unsigned nworkers)
{
	gone_heads = calloc(nworkers, sizeof(*gone_heads));
	ngone_heads = nworkers;
	return gone_heads != NULL ? 0 : -1;
}

void
c2s_sm_free_all(void)
{
	for (unsigned i = 0; i < SMID_BUCKETS; i++) {
		struct smid *x, *next;

		for (x = smid_buckets[i]; x != NULL; x = next) {
			next = x->next;
			free(x);
		}
		smid_buckets[i] = NULL;
	}
	free(gone_heads);
	gone_heads = NULL;
	ngone_heads = 0;
}

static void
gone_link(struct c2s *c)
{
	struct c2s **head = &gone_heads[worker_id(c->w)];

	c->gprev = NULL;
	c->gnext = *head;
	if (*head != NULL)
		(*head)->gprev = c;
	*head = c;
}

void
c2s_sm_gone_link(struct c2s *c)
{
	gone_link(c);
}

static void
gone_unlink(struct c2s *c)
{
	if (!c->gone)
		return;
	if (c->gprev != NULL)
		c->gprev->gnext = c->gnext;
	else
		gone_heads[worker_id(c->w)] = c->gnext;
	if (c->gnext != NULL)
		c->gnext->gprev = c->gprev;
	c->gprev = c->gnext = NULL;
}

static void
shutdown_task(struct worker *w, void *a, uint64_t b)
{
	struct c2s *c;

	while ((c = gone_heads[worker_id(w)]) != NULL) {
		if (c->moved) {
			/* The session is the new connection's. */
			c->s.bound = 0;
			c->s.available = 0;
		}
		c2s_destroy(c);
	}
}

void
c2s_sm_shutdown(void)
{
	if (gone_heads == NULL)
		return;
	worker_post_all(shutdown_task, NULL, 0);
	worker_sync_all();
}

/* ---------------------------------------------------------------- */
/* Writing.                                                           */

static void
send_failed(struct c2s *c, const char *condition)
{
	/* XEP-0198 3, 5: <failed/> with a stanza error condition. */
	xstream_printf(&c->xs, "<failed xmlns='" NS_SM "'><%s xmlns='" NS_STANZAS "'/></failed>",
	    condition);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg);

static void
arm(struct c2s *c, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (c->sm->timer == NULL &&
	    (c->sm->timer = evtimer_new(worker_base(c->w), timer_cb, c)) == NULL)
		return;
	evtimer_add(c->sm->timer, &tv);
}

void
c2s_sm_arm(struct c2s *c, unsigned ms)
{
	arm(c, ms);
}

static int
armed(struct c2s *c)
{
	return c->sm->timer != NULL && evtimer_pending(c->sm->timer, NULL);
}

static void
disarm(struct c2s_sm *sm)
{
	if (sm->timer != NULL) {
		event_free(sm->timer);
		sm->timer = NULL;
	}
}

/* What modules see of the stream (xmppd_user_resources: push decides by
 * it): an unanswered <r/> since when, on a change only. */
static void
ack_wait_changed(struct c2s *c, int pending)
{
	if (c->sm->r_pending != (unsigned)pending && c->s.bound)
		sm_set_ack_wait(&c->s.jid, c->s.sid, pending ? c->sm->r_at_ms : 0);
	c->sm->r_pending = pending != 0;
}

/* XEP-0198 4: a request for an ack. */
static void
send_r(struct c2s *c)
{
	xstream_puts(&c->xs, "<r xmlns='" NS_SM "'/>");
	c->sm->since_r = 0;
	if (!c->sm->r_pending)
		c->sm->r_at_ms = clock_now_ms();
	ack_wait_changed(c, 1);
	arm(c, c->conf->sm_ack_timeout * 1000);
}

/* The forwarding of a moved session: written on the new one's worker,
 * as its sink would (the receive hooks have run on the old one). */
static void
forward_task(struct worker *w, void *a, uint64_t sid)
{
	xml_elem *st = a;
	struct session *s = session_find(w, sid);

	if (s != NULL && s->ops == &c2s_session_ops && s->bound && !s->closing) {
		c2s_send((struct c2s *)s, st);
	} else if (stanza_kind(st) == STANZA_MESSAGE) {
		/* Gone meanwhile: routed again, as router/session.c does. */
		const char *to = xml_attr_get(st, "to"), *from = xml_attr_get(st, "from");
		const char *e;
		jid jto, jfrom;

		if (to != NULL && jid_parse(&jto, to, strlen(to), &e) == 0) {
			if (from == NULL || jid_parse(&jfrom, from, strlen(from), &e) < 0)
				memset(&jfrom, 0, sizeof(jfrom));
			sm_route(st, &jfrom, &jto);
			jid_free(&jto);
			jid_free(&jfrom);
		}
	}
	xml_elem_unref(st);
}

void
c2s_send(struct c2s *c, const xml_elem *e)
{
	struct c2s_sm *sm = c->sm;
	xml_elem *st = (xml_elem *)e;   /* referenced, never changed */

	if (c->moved) {
		worker_post(worker_get(c->fwd_worker), forward_task, xml_elem_ref(st), c->fwd_sid);
		return;
	}
	metrics_stanza(1, stanza_kind(e));
	if (sm == NULL || stanza_kind(e) == STANZA_OTHER) {
		xstream_send(&c->xs, e);
		return;
	}
	/* XEP-0198 4: every stanza sent counts, and stays queued until
	 * acknowledged; past sm_max_ack_queue the session ends, as
	 * ejabberd's max_ack_queue does (the stanza is kept: it goes back
	 * to the router with the rest). */
	if (smq_push(&sm->out, st, UINT32_MAX) < 0) {
		log_error(c->tag, "out of memory for the unacknowledged queue");
		return;
	}
	if (smq_len(&sm->out) > c->conf->sm_max_ack_queue) {
		if (c->gone) {
			log_info(c->tag, "detached session: too many stanzas queued, ending it");
			arm(c, 0);
		} else {
			if (!sm->durable)
				xstream_send(&c->xs, e);
			xstream_error(&c->xs, "policy-violation", "too many unacknowledged stanzas");
		}
		return;
	}
	if (sm->durable) {
		/* Written once its row is committed (c2s_smd.c): a client
		 * never acknowledges a stanza a restart would forget. */
		c2s_smd_queued(c, st);
		return;
	}
	if (c->gone || c->xs.closing)
		return;
	xstream_send(&c->xs, e);
	c2s_sm_wrote(c);
}

void
c2s_sm_wrote(struct c2s *c)
{
	struct c2s_sm *sm = c->sm;

	/* Acks are asked for after sm_ack_after stanzas, and after
	 * sm_ack_interval seconds for any stanza still unacknowledged. */
	if (++sm->since_r >= c->conf->sm_ack_after && !sm->r_pending)
		send_r(c);
	else if (!armed(c))
		arm(c, c->conf->sm_ack_interval * 1000);
}

/* ---------------------------------------------------------------- */
/* Enable, acks.                                                      */

static uint32_t
parse_u32(const char *s, int *ok)
{
	char *end;
	unsigned long long v;

	*ok = 0;
	if (s == NULL || *s < '0' || *s > '9')
		return 0;
	v = strtoull(s, &end, 10);
	if (*end != '\0' || v > UINT32_MAX)
		return 0;
	*ok = 1;
	return (uint32_t)v;
}

static void
new_id(char *buf)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char r[SM_ID_BYTES];

	RAND_bytes(r, sizeof(r));
	for (size_t i = 0; i < sizeof(r); i++) {
		buf[2 * i] = digits[r[i] >> 4];
		buf[2 * i + 1] = digits[r[i] & 15];
	}
	buf[SM_ID_LEN] = '\0';
}

void
c2s_sm_features(struct c2s *c, xml_elem *features)
{
	/* XEP-0198 2: offered with the bind feature; <enable/> is taken
	 * after binding, <resume/> before. */
	(void)xml_elem_add_child(features, NS_SM, "sm");
}

static void
enable(struct c2s *c, xml_elem *e)
{
	const char *resume = xml_attr_get(e, "resume");
	struct c2s_sm *sm;
	int ok;
	uint32_t want = parse_u32(xml_attr_get(e, "max"), &ok);

	/* XEP-0198 3: only after resource binding, and once. */
	if (!c->s.bound || c->sm != NULL) {
		send_failed(c, "unexpected-request");
		return;
	}
	if ((sm = calloc(1, sizeof(*sm))) == NULL) {
		send_failed(c, "resource-constraint");
		return;
	}
	smq_init(&sm->out);
	c->sm = sm;
	if (resume != NULL && (strcmp(resume, "true") == 0 || strcmp(resume, "1") == 0) &&
	    c->conf->sm_max_resume > 0) {
		/* The client's 'max' is a preference; ours, sm_max_resume,
		 * caps it (XEP-0198 5). */
		sm->resume = 1;
		sm->max = ok && want > 0 && want < c->conf->sm_max_resume ? want :
		    c->conf->sm_max_resume;
		new_id(sm->id);
		smid_set(sm->id, worker_id(c->w), c->s.sid);
		/* sm_durable: the state goes to the store from now on. */
		sm->durable = c->conf->sm_durable != 0;
		c2s_smd_state(c);
		xstream_printf(&c->xs, "<enabled xmlns='" NS_SM "' id='%s' resume='true' max='%u'/>",
		    sm->id, sm->max);
	} else {
		xstream_puts(&c->xs, "<enabled xmlns='" NS_SM "'/>");
	}
	sm_set_flags(&c->s.jid, c->s.sid, XMPPD_RES_SM, XMPPD_RES_SM);
	log_debug(c->tag, "stream management on%s", sm->resume ? ", resumable" : "");
}

/* XEP-0198 4: the client's <a h/>. */
static void
handle_a(struct c2s *c, xml_elem *e)
{
	struct c2s_sm *sm = c->sm;
	int ok;
	uint32_t h = parse_u32(xml_attr_get(e, "h"), &ok), before = sm->out.acked;
	char app[160];

	if (!ok) {
		xstream_error(&c->xs, "bad-format", "<a/> needs a numeric 'h'");
		return;
	}
	if (smq_ack(&sm->out, h) < 0) {
		/* XEP-0198 4: more than we sent is <undefined-condition/>
		 * with <handled-count-too-high/>. */
		snprintf(app, sizeof(app), "<handled-count-too-high xmlns='" NS_SM
		    "' h='%u' send-count='%u'/>", h, sm->out.sent);
		xstream_error_app(&c->xs, "undefined-condition", app,
		    "You acknowledged more stanzas than we sent");
		return;
	}
	if (sm->durable) {
		uint64_t old = sm->acked64;

		sm->acked64 += (uint32_t)(sm->out.acked - before);
		c2s_smd_acked(c, old);
	}
	ack_wait_changed(c, 0);
	if (smq_len(&sm->out) > 0)
		arm(c, c->conf->sm_ack_interval * 1000);
	else if (sm->timer != NULL)
		evtimer_del(sm->timer);
}

void
c2s_sm_element_done(struct c2s *c)
{
	/* XEP-0198 4 and doc/architecture.md: a stanza is handled once the
	 * store work it caused is committed, so an <a/> never covers a
	 * message that a crash could still lose. */
	if (c->sm_count && c->sm != NULL && c->sm->durable)
		c2s_smd_handled(c);       /* counted once its state row is committed */
	else if (c->sm_count && c->sm != NULL)
		c->sm->h_in++;
	c->sm_count = 0;
}

/* ---------------------------------------------------------------- */
/* The end of a session: XEP-0198 4's unacknowledged stanzas.         */

/*
 * Unacknowledged messages and carbons (XEP-0280, mod_carbons): a carbon
 * copy (<sent/> or <received/>) is not handed back - its original went to
 * the resource it was for - and neither is a message the user's other
 * available resources got as carbons (any resource with carbons enabled:
 * they had a <received/> copy), which routed again to the bare JID would
 * reach them a second time. Everything else goes to the bare JID (another
 * resource, else offline storage). An archived message (XEP-0313) is handed
 * back like any other: a client without the archive still finds it offline
 * (doc/modules.md, "mod_mam and offline storage").
 */
#define NS_CARBONS "urn:xmpp:carbons:2"

static void
carbons_on(const struct sm_resource *r, void *ud)
{
	int *n = ud;

	if (r->available && (r->flags & XMPPD_RES_CARBONS))
		(*n)++;
}

static int
delivered_elsewhere(struct c2s *c, const xml_elem *st)
{
	const char *type = stanza_type(st);
	jid bare;
	const char *e;
	int n = 0;

	if (xml_child(st, NS_CARBONS, "sent") != NULL || xml_child(st, NS_CARBONS, "received") != NULL)
		return 1;
	/* XEP-0280 6.1: what carbons copy; mod_carbons has the full rules,
	 * this is their common case (chat, or normal with a body). */
	if (type == NULL)
		type = "normal";            /* RFC 6121 5.2.2 */
	if (strcmp(type, "chat") != 0 && !(strcmp(type, "normal") == 0 &&
	    xml_child(st, NULL, "body") != NULL))
		return 0;
	if (xml_child(st, NS_CARBONS, "private") != NULL)
		return 0;
	if (c->s.jid.node == NULL || jid_make(&bare, c->s.jid.node, c->s.jid.domain, NULL, &e) < 0)
		return 0;
	(void)sm_resources(&bare, carbons_on, &n);
	jid_free(&bare);
	return n > 0;
}

/* XEP-0198 4: "in the same way as a stanza sent to an unavailable
 * resource": a message goes to the bare JID (another resource, else
 * offline storage, RFC 6121 8.5.2), an IQ get or set is answered with an
 * error, presence and the rest are dropped. The session is out of the
 * session table by now, so nothing comes back here. */
static void
hand_back(struct c2s *c, xml_elem *st)
{
	enum stanza_kind kind = stanza_kind(st);
	const char *type = stanza_type(st);
	const char *from = xml_attr_get(st, "from"), *e;
	jid jfrom, bare;
	xml_elem *copy;

	if (type == NULL)
		type = "";
	if (kind == STANZA_IQ && (strcmp(type, "get") == 0 || strcmp(type, "set") == 0)) {
		router_bounce(st, "service-unavailable", NULL);
		return;
	}
	if (kind != STANZA_MESSAGE || strcmp(type, "error") == 0 ||
	    strcmp(type, "groupchat") == 0 || delivered_elsewhere(c, st))
		return;
	if (c->s.jid.bare == NULL || jid_make(&bare, c->s.jid.node, c->s.jid.domain, NULL, &e) < 0)
		return;
	if (from == NULL || jid_parse(&jfrom, from, strlen(from), &e) < 0)
		memset(&jfrom, 0, sizeof(jfrom));
	copy = xml_elem_copy(st);
	xml_attr_set(copy, "to", bare.bare);
	log_debug(c->tag, "unacknowledged message from %s goes to %s", from ? from : "?",
	    bare.bare);
	sm_route(copy, &jfrom, &bare);
	xml_elem_unref(copy);
	jid_free(&jfrom);
	jid_free(&bare);
}

static void
sm_dispose(struct c2s *c, struct c2s_sm *sm)
{
	xml_elem *st;

	disarm(sm);
	while ((st = smq_take(&sm->out)) != NULL) {
		hand_back(c, st);
		xml_elem_unref(st);
	}
	smq_free(&sm->out);
	if (sm->resume)
		smid_del(sm->id, c->s.sid);
	c2s_smd_forget(sm);
	free(sm);
}

void
c2s_sm_end(struct c2s *c)
{
	xml_elem_unref(c->presence);
	c->presence = NULL;
	gone_unlink(c);
	c->gone = 0;
	if (c->sm != NULL) {
		struct c2s_sm *sm = c->sm;

		c->sm = NULL;
		sm_dispose(c, sm);
	}
}

/* ---------------------------------------------------------------- */
/* Connections that end; detached sessions.                           */

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct c2s *c = arg;
	struct c2s_sm *sm = c->sm;

	if (c->gone) {
		/* XEP-0198 5: 'max' is over (or the queue overflowed). */
		log_info(c->tag, "detached session %s ends", c->s.jid.full ? c->s.jid.full : "");
		c2s_destroy(c);
		return;
	}
	if (c->xs.closing)
		return;
	if (sm->r_pending && clock_now_ms() - sm->r_at_ms >= c->conf->sm_ack_timeout * 1000ULL) {
		/* No <a/> for our <r/>: the connection is taken for dead. A
		 * resumable session stays, detached (XEP-0198 5). */
		log_info(c->tag, "no ack in %u s: connection dead", c->conf->sm_ack_timeout);
		if (sm->resume) {
			c->keep = 1;
			xstream_close(&c->xs);
		} else {
			xstream_error(&c->xs, "connection-timeout", "no answer to an ack request");
		}
		return;
	}
	if (sm->r_pending)
		arm(c, c->conf->sm_ack_timeout * 1000);
	else if (smq_len(&sm->out) > 0)
		send_r(c);
}

int
c2s_sm_closing(struct c2s *c)
{
	return c->moved || c->keep;
}

int
c2s_sm_conn_end(struct c2s *c, enum conn_end how)
{
	/* XEP-0198 7: a stream that ends without </stream:stream> or a
	 * stream error is unfinished, and the session is kept for the
	 * client to resume; a closed one is over. c->xs.closing: we sent
	 * the end tag or an error, or answered the client's end tag. */
	int detach = c->sm != NULL && c->sm->resume && c->s.bound && !c->s.closing &&
	    (!c->xs.closing || c->keep) && how != CONN_END_CONNECT_FAILED;

	if (!detach && !c->moved && !c->resuming)
		return 0;
	xstream_free(&c->xs);
	c->xs.closing = 1;      /* nothing is written any more */
	c->keep = 0;
	if (c->moved && c->released)
		return 0;
	c->gone = 1;
	gone_link(c);
	if (detach && !c->moved) {
		ack_wait_changed(c, 0);
		sm_set_flags(&c->s.jid, c->s.sid, XMPPD_RES_DETACHED, XMPPD_RES_DETACHED);
		arm(c, c->sm->max * 1000);
		c->sm->deadline_ms = c2s_smd_wall_ms() + c->sm->max * 1000ULL;
		c2s_smd_state(c);
		log_info(c->tag, "%s detached for %u s (%s)", c->s.jid.full, c->sm->max,
		    how == CONN_END_EOF ? "closed by the client" : "connection lost");
	}
	return 1;
}

int
c2s_sm_close(struct c2s *c)
{
	if (c->moved)
		return 1;          /* the session lives on elsewhere */
	if (!c->gone)
		return 0;
	if (!c->resuming)
		c2s_destroy(c);
	return 1;
}

/* ---------------------------------------------------------------- */
/* Resumption (XEP-0198 5).                                           */

struct resume {
	char id[SM_ID_LEN + 1];
	uint32_t h;
	char *node, *host;          /* the new stream's account */
	unsigned worker;            /* the new stream's session */
	uint64_t sid;
	struct hold *hold;          /* holds the new stream until answered */
	/* The answer. */
	const char *condition;      /* NULL: resumed */
	uint32_t send_count;
	unsigned old_worker;
	uint64_t old_sid;
	jid jid;
	int available, priority;
	xml_elem *presence;         /* sm_durable: the last available presence */
	struct module_slot *slots;
	struct c2s_sm *sm;
};

static void
resume_free(struct resume *r)
{
	free(r->node);
	free(r->host);
	xml_elem_unref(r->presence);
	jid_free(&r->jid);
	free(r);
}

/* On the old session's worker, when the new one has taken over. */
static void
release_task(struct worker *w, void *a, uint64_t sid)
{
	struct session *s = session_find(w, sid);
	struct c2s *c = (struct c2s *)s;

	if (s == NULL || s->ops != &c2s_session_ops || !c->moved)
		return;
	/* Its table entry is the new session's: nothing of it ends. */
	c->s.bound = 0;
	c->s.available = 0;
	c->released = 1;
	if (c->gone)
		c2s_destroy(c);
}

static void
answer_task(struct worker *w, void *a, uint64_t sid)
{
	struct resume *r = a;
	struct session *s = session_find(w, sid);
	struct c2s *c = s != NULL && s->ops == &c2s_session_ops ? (struct c2s *)s : NULL;
	struct c2s_sm *sm = r->sm;

	if (c != NULL)
		c->resuming = 0;
	if (r->condition != NULL) {
		if (c != NULL && c->gone) {
			c2s_destroy(c);
		} else if (c != NULL && strcmp(r->condition, "handled-count-too-high") == 0) {
			xstream_printf(&c->xs, "<failed xmlns='" NS_SM "' h='%u'><undefined-condition"
			    " xmlns='" NS_STANZAS "'/><handled-count-too-high xmlns='" NS_SM "' h='%u'"
			    " send-count='%u'/></failed>", c->sm != NULL ? c->sm->h_in : 0, r->h,
			    r->send_count);
		} else if (c != NULL) {
			send_failed(c, r->condition);
		}
		goto out;
	}
	if (c == NULL) {
		/* Cannot happen (a resuming c2s waits for its answer) but at
		 * shutdown: the state goes as a session's end would send it. */
		struct c2s tmp;

		memset(&tmp, 0, sizeof(tmp));
		tmp.s.jid = r->jid;
		sm_unbind(&r->jid, r->old_sid);
		sm_dispose(&tmp, sm);
		worker_post(worker_get(r->old_worker), release_task, NULL, r->old_sid);
		goto out;
	}
	/* The session is this connection's from now on. */
	jid_free(&c->s.jid);
	c->s.jid = r->jid;
	memset(&r->jid, 0, sizeof(r->jid));
	c->s.available = r->available != 0;
	c->s.priority = r->priority;
	xml_elem_unref(c->presence);
	c->presence = r->presence;
	r->presence = NULL;
	if (c->s.slots == NULL) {
		c->s.slots = r->slots;
	} else if (r->slots != NULL) {
		/* Cannot happen: a stream that has not bound has no slots. */
		free(r->slots);
	}
	c->sm = sm;
	sm->r_pending = 0;
	sm->since_r = 0;
	if (sm_move(&c->s.jid, r->old_sid, c->s.sid, worker_id(w), c->s.addr) < 0) {
		/* A bind of the same resource replaced it meanwhile. */
		log_info(c->tag, "resumption of %s lost to a new bind", c->s.jid.full);
		c->sm = NULL;
		c->s.available = 0;
		sm_dispose(c, sm);
		if (c->gone)
			c2s_destroy(c);
		else
			send_failed(c, "item-not-found");
		worker_post(worker_get(r->old_worker), release_task, NULL, r->old_sid);
		goto out;
	}
	c->s.bound = 1;
	c2s_metrics_session(c, 1);
	smid_set(sm->id, worker_id(w), c->s.sid);
	sm_set_flags(&c->s.jid, c->s.sid, XMPPD_RES_DETACHED, c->gone ? XMPPD_RES_DETACHED : 0);
	sm_set_ack_wait(&c->s.jid, c->s.sid, 0);
	if (sm->durable) {
		/* Everything of the old worker's is committed by now
		 * (takeover_task): what is queued is replayed below. */
		sm->h_in = sm->h_pending;
		sm->a_wanted = 0;
		sm->committed64 = sm->wire64 = sm->acked64 + smq_len(&sm->out);
		sm->deadline_ms = c->gone ? c2s_smd_wall_ms() + sm->max * 1000ULL : 0;
		c2s_smd_state(c);
	}
	worker_post(worker_get(r->old_worker), release_task, NULL, r->old_sid);
	log_info(c->tag, "resumed %s (h %u, %u to replay)", c->s.jid.full, sm->h_in,
	    smq_len(&sm->out));
	if (c->gone) {
		/* The new connection went too: detached again. */
		arm(c, sm->max * 1000);
		goto out;
	}
	xstream_cancel_timer(&c->xs);
	/* XEP-0198 5: <resumed/> with our h, then exactly what the client
	 * has not acknowledged, in order, once. */
	xstream_printf(&c->xs, "<resumed xmlns='" NS_SM "' h='%u' previd='%s'/>", sm->h_in, sm->id);
	for (uint32_t i = 0; i < smq_len(&sm->out); i++)
		xstream_send(&c->xs, smq_at(&sm->out, i));
	if (smq_len(&sm->out) > 0)
		send_r(c);
	/* Modules learn of it after the replay (XEP-0352 5.2: mod_csi then
	 * treats the new stream as active and flushes what it held). */
	if (hooks_any(XMPPD_HOOK_SM_SESSION_RESUMED)) {
		struct xmppd_session_args sa = { (xmppd_session *)&c->s };

		(void)hooks_run(XMPPD_HOOK_SM_SESSION_RESUMED, c->s.jid.domain, &sa);
	}
out:
	hold_release(r->hold);
	resume_free(r);
}

static void
fail(struct resume *r, const char *condition)
{
	r->condition = condition;
	worker_post(worker_get(r->worker), answer_task, r, r->sid);
}

static void
post_answer(void *a)
{
	struct resume *r = a;

	worker_post(worker_get(r->worker), answer_task, r, r->sid);
}

/* On the old session's worker. */
static void
takeover_task(struct worker *w, void *a, uint64_t sid)
{
	struct resume *r = a;
	struct session *s = session_find(w, sid);
	struct c2s *c = s != NULL && s->ops == &c2s_session_ops ? (struct c2s *)s : NULL;
	struct c2s_sm *sm;
	uint32_t before;

	if (c == NULL || (sm = c->sm) == NULL || !sm->resume || c->moved || !c->s.bound ||
	    c->s.closing || strcmp(sm->id, r->id) != 0) {
		fail(r, "item-not-found");
		return;
	}
	/* XEP-0198 10: only the account that enabled it may resume it;
	 * anyone else is told it does not exist. */
	if (c->node == NULL || strcmp(c->node, r->node) != 0 || strcmp(c->host, r->host) != 0) {
		log_info(c->tag, "resumption of %s refused to %s@%s", c->s.jid.full, r->node,
		    r->host);
		fail(r, "item-not-found");
		return;
	}
	before = sm->out.acked;
	if (smq_ack(&sm->out, r->h) < 0) {
		r->send_count = sm->out.sent;
		fail(r, "handled-count-too-high");
		return;
	}
	if (sm->durable) {
		uint64_t old = sm->acked64;

		sm->acked64 += (uint32_t)(sm->out.acked - before);
		c2s_smd_acked(c, old);
	}
	/* Everything the session is goes to the new connection. */
	disarm(sm);
	r->sm = sm;
	c->sm = NULL;
	if (jid_copy(&r->jid, &c->s.jid) < 0) {
		c->sm = sm;
		fail(r, "resource-constraint");
		return;
	}
	r->available = c->s.available;
	r->priority = c->s.priority;
	r->presence = c->presence;
	c->presence = NULL;
	r->slots = c->s.slots;
	c->s.slots = NULL;
	r->old_worker = worker_id(w);
	r->old_sid = sid;
	c->moved = 1;
	c->fwd_worker = r->worker;
	c->fwd_sid = r->sid;
	if (!c->gone) {
		/* Still attached (its TCP connection not yet seen dead): the
		 * new one wins, as in Prosody and ejabberd. */
		log_info(c->tag, "%s resumed on another connection", c->s.jid.full);
		xstream_error(&c->xs, "conflict", "the session was resumed on another connection");
	}
	if (sm->durable) {
		/* The answer waits for everything this worker queued for the
		 * session to be committed: the new connection replays the
		 * queue at once. */
		c2s_smd_after_commit(post_answer, r);
		return;
	}
	worker_post(worker_get(r->worker), answer_task, r, r->sid);
}

static void
resume(struct c2s *c, xml_elem *e)
{
	const char *previd = xml_attr_get(e, "previd");
	int ok;
	uint32_t h = parse_u32(xml_attr_get(e, "h"), &ok);
	struct resume *r;
	unsigned worker;
	uint64_t sid;

	/* XEP-0198 5: before binding, once. */
	if (c->s.bound || c->sm != NULL || c->resuming) {
		send_failed(c, "unexpected-request");
		return;
	}
	if (previd == NULL || !ok) {
		send_failed(c, "bad-request");
		return;
	}
	if (strlen(previd) != SM_ID_LEN || smid_find(previd, &worker, &sid) < 0 ||
	    worker >= worker_count()) {
		/* Unknown, or expired (its entry went with the session). */
		send_failed(c, "item-not-found");
		return;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL || (r->node = strdup(c->node)) == NULL ||
	    (r->host = strdup(c->host)) == NULL) {
		if (r != NULL)
			resume_free(r);
		send_failed(c, "resource-constraint");
		return;
	}
	snprintf(r->id, sizeof(r->id), "%s", previd);
	r->h = h;
	r->worker = worker_id(c->w);
	r->sid = c->s.sid;
	/* Nothing more of this stream is handled until the answer. */
	r->hold = hold_take();
	c->resuming = 1;
	worker_post(worker_get(worker), takeover_task, r, sid);
}

void
c2s_sm_element(struct c2s *c, xml_elem *e)
{
	const char *name = xml_elem_name(e);

	if (strcmp(name, "enable") == 0) {
		enable(c, e);
	} else if (strcmp(name, "resume") == 0) {
		resume(c, e);
	} else if (strcmp(name, "r") == 0) {
		/* XEP-0198 4: answered at once with what is handled. */
		if (c->sm != NULL && c->sm->durable && c->sm->h_in != c->sm->h_pending)
			c->sm->a_wanted = 1;    /* answered once committed (c2s_smd.c) */
		else if (c->sm != NULL)
			xstream_printf(&c->xs, "<a xmlns='" NS_SM "' h='%u'/>", c->sm->h_in);
	} else if (strcmp(name, "a") == 0) {
		if (c->sm != NULL)
			handle_a(c, e);
	} else {
		log_debug(c->tag, "ignored <%s xmlns='" NS_SM "'/>", name);
	}
}
