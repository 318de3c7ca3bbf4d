/*
 * pubsub_subs.c - the engine's operations about who sees a node: access
 * models (XEP-0060 4.5), subscribe, unsubscribe and authorization (6.1,
 * 6.2, 8.6), items (6.5, with XEP-0059), the owner's and the entity's
 * affiliations and subscriptions (8.8, 8.9, 5.6, 5.7), disco of a node
 * (5.3-5.5), and the dispatch of a request to its operation.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "pubsub.h"

static int
is(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* ---------------------------------------------------------------- */
/* Access (XEP-0060 4.5): who may subscribe and retrieve items.       */

/* The node's owner whose roster decides (presence, roster): the first
 * owner that is a local account. */
static const char *
roster_owner(const struct ps_node *n)
{
	for (size_t i = 0; i < n->naffs; i++)
		if (n->affs[i].aff == PS_AFF_OWNER && strchr(n->affs[i].jid, '@') != NULL &&
		    xmppd_is_local_host(strchr(n->affs[i].jid, '@') + 1))
			return n->affs[i].jid;
	return NULL;
}


struct access_wait {
	struct ps_req *r;
	access_fn next;
};

static void
access_denied(struct ps_req *r, int model)
{
	/* 6.1.3.2, 6.1.3.3, 6.1.3.4 (and 6.5.9 for items). */
	if (model == PS_PRESENCE)
		ps_error(r, "not-authorized", "presence-subscription-required", NULL);
	else if (model == PS_ROSTER)
		ps_error(r, "not-authorized", "not-in-roster-group", NULL);
	else
		ps_error(r, "not-allowed", "closed-node", NULL);
}

static void
roster_answer(int sub, void *ud)
{
	struct access_wait *w = ud;
	struct ps_req *r = w->r;
	access_fn next = w->next;
	int model = r->n->cfg.access;

	free(w);
	/* presence: the contact sees the owner's presence (from or both);
	 * roster: the contact is in the owner's roster (groups are not
	 * known through the ABI: any group counts). */
	if (sub >= 0 && (model == PS_PRESENCE ? (sub & XMPPD_SUB_FROM) != 0 :
	    (sub & XMPPD_SUB_IN_ROSTER) != 0))
		next(r);
	else
		access_denied(r, model);
}

/* Runs next(r) when the actor may see the node, else answers the error.
 * for_items: retrieval (authorize needs a subscription). */
void
ps_check_access(struct ps_req *r, access_fn next, int for_items)
{
	struct ps_node *n = r->n;
	int aff = ps_aff_of(n, r->actor);
	const char *owner;
	struct access_wait *w;
	xmppd_jid *oj;
	struct ps_sub *s;

	if (aff == PS_AFF_OUTCAST) {
		ps_error(r, "forbidden", NULL, NULL);             /* 6.1.3.8 */
		return;
	}
	if (aff == PS_AFF_OWNER || aff == PS_AFF_PUBLISHER || aff == PS_AFF_MEMBER) {
		next(r);
		return;
	}
	switch (n->cfg.access) {
	case PS_OPEN:
		next(r);
		return;
	case PS_WHITELIST:
		access_denied(r, PS_WHITELIST);
		return;
	case PS_AUTHORIZE:
		if (!for_items) {
			next(r);
			return;
		}
		s = ps_sub_of_actor(n, r->actor);
		if (s != NULL && s->state == PS_SUB_SUBSCRIBED)
			next(r);
		else if (s != NULL && s->state == PS_SUB_PENDING)
			ps_error(r, "not-authorized", "pending-subscription", NULL);  /* 6.5.9.? */
		else
			ps_error(r, "not-authorized", "not-subscribed", NULL);
		return;
	default:
		break;
	}
	if ((owner = roster_owner(n)) == NULL || (oj = xmppd_jid_parse(owner)) == NULL) {
		access_denied(r, n->cfg.access);
		return;
	}
	if ((w = malloc(sizeof(*w))) == NULL) {
		xmppd_jid_free(oj);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	w->r = r;
	w->next = next;
	if (xmppd_roster_subscription(r->m->ctx, oj, r->actor, roster_answer, w) < 0) {
		free(w);
		access_denied(r, n->cfg.access);
	}
	xmppd_jid_free(oj);
}

/* ---------------------------------------------------------------- */
/* subscribe (6.1), unsubscribe (6.2), authorization (8.6)            */

struct op_sub {
	struct ps_sub sub;
	int is_new;
	int with_options;           /* 6.3.7: <options/> came with <subscribe/> */
	int remove;
	xmppd_elem *action;
};

static void
op_sub_free(void *op)
{
	free(((struct op_sub *)op)->sub.jid);
}

static xmppd_elem *
subscription_elem(const char *ns, const struct ps_node *n, const struct ps_sub *s)
{
	xmppd_elem *e = xmppd_elem_new(ns, "subscription");

	xmppd_elem_set_attr(e, "node", n->name);
	xmppd_elem_set_attr(e, "jid", s->jid);
	xmppd_elem_set_attr(e, "subscription", ps_sub_name(s->state));
	if (s->state != PS_SUB_NONE)
		xmppd_elem_set_attr(e, "subid", s->subid);
	return e;
}

/* pubsub#notify_sub (XEP-0060 16.4.4 node_config): the owners hear of a
 * subscription's change, as the event's <subscription/>. */
static void
tell_owners(const struct ps_node *n, const char *jid, int state, const char *subid)
{
	struct ps_sub s = { (char *)jid, state, { 0 }, 0 };
	xmppd_elem *msg, *ev, *e;

	if (!n->cfg.notify_sub)
		return;
	snprintf(s.subid, sizeof(s.subid), "%s", subid);
	msg = ps_event_message(n, &ev);
	e = subscription_elem(NS_PUBSUB_EVENT, n, &s);
	xmppd_elem_append_copy(ev, e);
	xmppd_elem_unref(e);
	for (size_t i = 0; i < n->naffs; i++)
		if (n->affs[i].aff == PS_AFF_OWNER)
			ps_send_to(msg, n->affs[i].jid);
	xmppd_elem_unref(msg);
}

/* XEP-0060 6.1.7: the last published item to a new subscriber. */
void
ps_send_last_item(const struct ps_node *n, const char *to)
{
	xmppd_elem *msg, *ev, *items, *item, *it, *payload;

	if (n->last_xml == NULL || n->cfg.send_last == PS_LAST_NEVER)
		return;
	if ((item = xmppd_elem_parse(n->last_xml, n->last_len)) == NULL)
		return;
	msg = ps_event_message(n, &ev);
	items = xmppd_elem_add_child(ev, NS_PUBSUB_EVENT, "items");
	xmppd_elem_set_attr(items, "node", n->name);
	it = xmppd_elem_add_child(items, NS_PUBSUB_EVENT, "item");
	xmppd_elem_set_attr(it, "id", xmppd_elem_attr(item, "id"));
	if (n->cfg.deliver_payloads && (payload = xmppd_elem_first_child(item)) != NULL)
		xmppd_elem_append_copy(it, payload);
	ps_send_to(msg, to);
	xmppd_elem_unref(msg);
	xmppd_elem_unref(item);
}

/* XEP-0060 8.6.1: the subscription authorization form, to each owner. */
static void
ask_owners(const struct ps_node *n, const struct ps_sub *s)
{
	xmppd_elem *msg = xmppd_elem_new(NULL, "message"), *x, *f, *v;
	const char *vals[][3] = {
		{ "FORM_TYPE", "hidden", NS_PUBSUB "#subscribe_authorization" },
		{ "pubsub#subid", "hidden", s->subid },
		{ "pubsub#node", "text-single", n->name },
		{ "pubsub#subscriber_jid", "jid-single", s->jid },
		{ "pubsub#allow", "boolean", "false" },
	};

	xmppd_elem_set_attr(msg, "from", n->service);
	x = xmppd_elem_add_child(msg, NS_XDATA, "x");
	xmppd_elem_set_attr(x, "type", "form");
	xmppd_elem_add_text(xmppd_elem_add_child(x, NS_XDATA, "title"),
	    "PubSub subscriber request", 25);
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		f = xmppd_elem_add_child(x, NS_XDATA, "field");
		xmppd_elem_set_attr(f, "var", vals[i][0]);
		xmppd_elem_set_attr(f, "type", vals[i][1]);
		v = xmppd_elem_add_child(f, NS_XDATA, "value");
		xmppd_elem_add_text(v, vals[i][2], strlen(vals[i][2]));
	}
	for (size_t i = 0; i < n->naffs; i++)
		if (n->affs[i].aff == PS_AFF_OWNER)
			ps_send_to(msg, n->affs[i].jid);
	xmppd_elem_unref(msg);
}

static void
sub_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_sub *o = r->op;
	struct ps_node *n = r->n;
	struct ps_sub *s;
	xmppd_elem *res;

	if (status != XMPPD_STORE_OK) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	if (o->is_new) {
		if (ps_sub_room(n) < 0) {
			ps_error(r, "internal-server-error", NULL, NULL);
			return;
		}
		n->subs[n->nsubs++] = o->sub;
		o->sub.jid = NULL;      /* the node's now */
		s = &n->subs[n->nsubs - 1];
	} else {
		s = ps_sub_find(n, o->sub.jid);
		if (s != NULL)
			s->state = o->sub.state;
	}
	if (s == NULL) {
		ps_reply(r, NULL);
		return;
	}
	res = ps_result(NS_PUBSUB);
	{
		xmppd_elem *e = subscription_elem(NS_PUBSUB, n, s), *op;

		/* 6.1.5: options may be configured, not required. */
		if (s->state != PS_SUB_NONE)
			(void)xmppd_elem_add_child(e, NS_PUBSUB, "subscribe-options");
		xmppd_elem_append_copy(res, e);
		xmppd_elem_unref(e);
		/* 6.3.7: subscribed and configured, the options as a result
		 * form (in an <options/> without node or jid, as asked). */
		if (o->with_options) {
			op = xmppd_elem_add_child(res, NS_PUBSUB, "options");
			ps_subopts_form(s, op, "result");
		}
	}
	/* 6.1.7, unless pubsub#deliver is off (16.4.2). */
	if (s->state == PS_SUB_SUBSCRIBED && !s->no_deliver)
		ps_send_last_item(n, s->jid);
	else if (s->state == PS_SUB_PENDING)
		ask_owners(n, s);
	tell_owners(n, s->jid, s->state, s->subid);
	ps_reply(r, res);
}

static int
sub_write(struct ps_req *r, const struct ps_sub *s, int remove, xmppd_store_done_fn done)
{
	struct ps_node *n = r->n;
	char key[PS_KEY_MAX], *rec = NULL;
	size_t klen = ps_key_sub(key, n->service, n->name, s->jid), vlen = 0;
	xmppd_batch *b;

	if (klen == 0 || (b = xmppd_batch_new(r->m->ctx)) == NULL)
		return -1;
	if (remove) {
		(void)xmppd_batch_del(b, ps_table(n->service, T_SUBS), key, klen);
	} else {
		if ((rec = ps_sub_record(s, &vlen)) == NULL) {
			xmppd_batch_free(b);
			return -1;
		}
		(void)xmppd_batch_put(b, ps_table(n->service, T_SUBS), key, klen, rec, vlen);
		free(rec);
	}
	if (xmppd_batch_submit(b, done, r) < 0)
		done(XMPPD_STORE_ERROR, r);
	return 0;
}

static void
subscribe_allowed(struct ps_req *r)
{
	struct op_sub *o = r->op;
	struct ps_node *n = r->n;
	struct ps_sub *s = ps_sub_find(n, o->sub.jid);
	int aff = ps_aff_of(n, r->actor);

	if (s != NULL) {
		/* 6.1.6: already subscribed (or pending): the same answer. */
		xmppd_elem *res = ps_result(NS_PUBSUB), *e = subscription_elem(NS_PUBSUB, n, s);

		(void)xmppd_elem_add_child(e, NS_PUBSUB, "subscribe-options");
		xmppd_elem_append_copy(res, e);
		xmppd_elem_unref(e);
		ps_reply(r, res);
		return;
	}
	/* Limit: subscriptions of a node (XEP-0060 6.1.3.? leaves the
	 * condition to the service: policy-violation with
	 * too-many-subscriptions, as 6.1.3.? names it). */
	if (r->m->max_subscriptions_per_node > 0 &&
	    (long)n->nsubs >= r->m->max_subscriptions_per_node) {
		ps_error(r, "policy-violation", "too-many-subscriptions", NULL);
		return;
	}
	/* And of one bare JID (its full JIDs): alice/r1 .. alice/r10000
	 * would fill the node otherwise. The same error (XEP-0060 6.1.3:
	 * the service's policy). */
	if (r->m->max_subscriptions_per_jid > 0 &&
	    (long)ps_subs_of_bare(n, o->sub.jid) >= r->m->max_subscriptions_per_jid) {
		ps_error(r, "policy-violation", "too-many-subscriptions", NULL);
		return;
	}
	o->is_new = 1;
	ps_random_id(o->sub.subid);
	/* 6.1.2 / 8.6: authorize makes it pending until an owner decides. */
	o->sub.state = n->cfg.access == PS_AUTHORIZE && aff != PS_AFF_OWNER &&
	    aff != PS_AFF_PUBLISHER && aff != PS_AFF_MEMBER ? PS_SUB_PENDING : PS_SUB_SUBSCRIBED;
	if (sub_write(r, &o->sub, 0, sub_done) < 0) {
		ps_error(r, "internal-server-error", NULL, NULL);
	}
}

/* Whether jid (the subscription's) is the actor's: its bare JID, or one
 * of its full JIDs. 6.1.3.1: invalid-jid otherwise. */
static int
jid_is_actor(const struct ps_req *r, const xmppd_jid *j)
{
	return r->actor == NULL || strcmp(xmppd_jid_bare(j), xmppd_jid_bare(r->actor)) == 0;
}

static void
op_subscribe(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_sub *o;
	xmppd_elem *opts, *x;
	xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(action, "jid") ?
	    xmppd_elem_attr(action, "jid") : "");

	if (j == NULL || !jid_is_actor(r, j)) {
		xmppd_jid_free(j);
		ps_error(r, "bad-request", "invalid-jid", NULL);  /* 6.1.3.1 */
		return;
	}
	if (!n->exists) {
		xmppd_jid_free(j);
		ps_error(r, "item-not-found", NULL, NULL);        /* 6.1.3.12 */
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL || (o->sub.jid = strdup(xmppd_jid_full(j))) == NULL) {
		free(o);
		xmppd_jid_free(j);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	xmppd_jid_free(j);
	r->op = o;
	r->op_free = op_sub_free;
	/* 6.3.7: subscribe and set the options in one request; the form is
	 * checked before anything (6.3.6: invalid-options). The <options/>
	 * takes node and jid from <subscribe/>: with its own, bad-request. */
	if ((opts = xmppd_elem_child(r->payload, NS_PUBSUB, "options")) != NULL) {
		if (xmppd_elem_attr(opts, "node") != NULL || xmppd_elem_attr(opts, "jid") != NULL) {
			ps_error(r, "bad-request", NULL, NULL);
			return;
		}
		x = xmppd_elem_child(opts, NS_XDATA, "x");
		if (x == NULL || ps_subopts_apply(&o->sub, x) < 0) {
			ps_error(r, "bad-request", "invalid-options", NULL);
			return;
		}
		o->with_options = 1;
	}
	ps_check_access(r, subscribe_allowed, 0);
}

static void
unsub_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_sub *o = r->op;
	struct ps_sub *s;

	if (status == XMPPD_STORE_OK && (s = ps_sub_find(r->n, o->sub.jid)) != NULL) {
		tell_owners(r->n, s->jid, PS_SUB_NONE, s->subid);
		ps_sub_remove(r->n, s);
	}
	if (status != XMPPD_STORE_OK)
		ps_error(r, "internal-server-error", NULL, NULL);
	else
		ps_reply(r, NULL);
}

static void
op_unsubscribe(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_sub *o;
	struct ps_sub *s;
	const char *subid = xmppd_elem_attr(action, "subid");
	xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(action, "jid") ?
	    xmppd_elem_attr(action, "jid") : "");

	if (j == NULL) {
		ps_error(r, "bad-request", "invalid-jid", NULL);
		return;
	}
	if (!jid_is_actor(r, j) && ps_aff_of(n, r->actor) != PS_AFF_OWNER) {
		/* 6.2.3.3: another entity's subscription: insufficient privileges. */
		xmppd_jid_free(j);
		ps_error(r, "forbidden", NULL, NULL);
		return;
	}
	if (!n->exists) {
		xmppd_jid_free(j);
		ps_error(r, "item-not-found", NULL, NULL);        /* 6.2.3.4 */
		return;
	}
	s = ps_sub_find(n, xmppd_jid_full(j));
	xmppd_jid_free(j);
	if (s == NULL) {
		ps_error(r, "unexpected-request", "not-subscribed", NULL);        /* 6.2.3.2 */
		return;
	}
	if (subid != NULL && strcmp(subid, s->subid) != 0) {
		ps_error(r, "not-acceptable", "invalid-subid", NULL);     /* 6.2.3.5 */
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL || (o->sub.jid = strdup(s->jid)) == NULL) {
		free(o);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	r->op_free = op_sub_free;
	if (sub_write(r, s, 1, unsub_done) < 0) {
		ps_error(r, "internal-server-error", NULL, NULL);
	}
}

static void
authz_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_sub *o = r->op;
	struct ps_node *n = r->n;
	struct ps_sub *s;
	xmppd_elem *msg, *ev, *e;

	if (status != XMPPD_STORE_OK || (s = ps_sub_find(n, o->sub.jid)) == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	/* 8.6.2: the subscriber learns the decision. */
	msg = ps_event_message(n, &ev);
	xmppd_elem_set_attr(msg, "type", NULL);
	s->state = o->remove ? PS_SUB_NONE : PS_SUB_SUBSCRIBED;
	e = subscription_elem(NS_PUBSUB_EVENT, n, s);
	xmppd_elem_append_copy(ev, e);
	xmppd_elem_unref(e);
	ps_send_to(msg, s->jid);
	xmppd_elem_unref(msg);
	if (o->remove)
		ps_sub_remove(n, s);
	else if (!s->no_deliver)
		ps_send_last_item(n, o->sub.jid);
	ps_reply(r, NULL);
}

/* 8.6.2: an owner's answer (the submitted form is the payload). */
static void
op_authorize(struct ps_req *r)
{
	struct ps_node *n = r->n;
	const char *subscriber = ps_form_value(r->payload, "pubsub#subscriber_jid");
	const char *allow = ps_form_value(r->payload, "pubsub#allow");
	struct op_sub *o;
	struct ps_sub *s;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);
		return;
	}
	if (ps_aff_of(n, r->actor) != PS_AFF_OWNER) {
		ps_error(r, "forbidden", NULL, NULL);
		return;
	}
	if (subscriber == NULL || (s = ps_sub_find(n, subscriber)) == NULL ||
	    s->state != PS_SUB_PENDING) {
		ps_error(r, "unexpected-request", NULL, NULL);
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL || (o->sub.jid = strdup(s->jid)) == NULL) {
		free(o);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	r->op_free = op_sub_free;
	o->remove = !(is(allow, "1") || is(allow, "true"));
	o->sub = (struct ps_sub){ o->sub.jid, PS_SUB_SUBSCRIBED, { 0 }, s->no_deliver };
	memcpy(o->sub.subid, s->subid, sizeof(o->sub.subid));
	if (sub_write(r, &o->sub, o->remove, authz_done) < 0) {
		ps_error(r, "internal-server-error", NULL, NULL);
	}
}

/* ---------------------------------------------------------------- */
/* Subscription options (6.3) and their defaults (6.4)                */

static void
options_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_sub *o = r->op;
	struct ps_sub *s;

	if (status != XMPPD_STORE_OK || (s = ps_sub_find(r->n, o->sub.jid)) == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	s->no_deliver = o->sub.no_deliver;
	ps_reply(r, NULL);                      /* 6.3.5 */
}

static void
op_options(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	const char *jid = xmppd_elem_attr(action, "jid");
	const char *subid = xmppd_elem_attr(action, "subid");
	struct op_sub *o;
	struct ps_sub *s;
	xmppd_elem *res, *op, *x;
	xmppd_jid *j;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);        /* 6.3.4 */
		return;
	}
	if (jid == NULL || *jid == '\0') {
		ps_error(r, "bad-request", "jid-required", NULL); /* 6.3.4 */
		return;
	}
	if ((j = xmppd_jid_parse(jid)) == NULL) {
		ps_error(r, "bad-request", "invalid-jid", NULL);
		return;
	}
	/* 6.3.4: another entity's options: forbidden (an owner may). */
	if (!jid_is_actor(r, j) && ps_aff_of(n, r->actor) != PS_AFF_OWNER) {
		xmppd_jid_free(j);
		ps_error(r, "forbidden", NULL, NULL);
		return;
	}
	s = ps_sub_find(n, xmppd_jid_full(j));
	xmppd_jid_free(j);
	if (s == NULL) {
		ps_error(r, "unexpected-request", "not-subscribed", NULL);        /* 6.3.4 */
		return;
	}
	/* One subscription per JID: subid-required never arises; a subid
	 * that is not its own is invalid-subid (6.3.4). */
	if (subid != NULL && strcmp(subid, s->subid) != 0) {
		ps_error(r, "not-acceptable", "invalid-subid", NULL);
		return;
	}
	if (!r->set) {
		/* 6.3.2: the form with the current values. */
		res = ps_result(NS_PUBSUB);
		op = xmppd_elem_add_child(res, NS_PUBSUB, "options");
		xmppd_elem_set_attr(op, "node", n->name);
		xmppd_elem_set_attr(op, "jid", s->jid);
		if (s->state != PS_SUB_NONE)
			xmppd_elem_set_attr(op, "subid", s->subid);
		ps_subopts_form(s, op, "form");
		ps_reply(r, res);
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL || (o->sub.jid = strdup(s->jid)) == NULL) {
		free(o);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	r->op_free = op_sub_free;
	o->sub.state = s->state;
	o->sub.no_deliver = s->no_deliver;
	memcpy(o->sub.subid, s->subid, sizeof(o->sub.subid));
	/* 6.3.5 submit; 6.3.6: a bad form or value is invalid-options. */
	if ((x = xmppd_elem_child(action, NS_XDATA, "x")) == NULL ||
	    ps_subopts_apply(&o->sub, x) < 0) {
		ps_error(r, "bad-request", "invalid-options", NULL);
		return;
	}
	if (sub_write(r, &o->sub, 0, options_done) < 0)
		ps_error(r, "internal-server-error", NULL, NULL);
}

/* 6.4: the default subscription options of a node (a result form, as
 * 6.4.2 shows). */
static void
op_default(struct ps_req *r)
{
	xmppd_elem *res, *d;

	if (!r->n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);        /* as 6.3.4 */
		return;
	}
	res = ps_result(NS_PUBSUB);
	d = xmppd_elem_add_child(res, NS_PUBSUB, "default");
	xmppd_elem_set_attr(d, "node", r->n->name);
	ps_subopts_form(NULL, d, "result");
	ps_reply(r, res);
}

/* ---------------------------------------------------------------- */
/* items (6.5)                                                        */

struct op_items {
	size_t *want;               /* indexes into n->items, in answer order */
	size_t nwant, left;
	size_t next;                /* the next of want to read */
	size_t bytes, got;          /* the answer so far: payload bytes, items */
	xmppd_elem *res, *items;
	int bad, truncated, by_id;
	size_t count, first_index;
	int rsm;
};

/* Reads in flight for one <items/> answer: the next window is asked for
 * when one completes, so that an answer stops at max_items_page_bytes
 * without reading the rest. */
#define ITEMS_WINDOW 16

static void
op_items_free(void *op)
{
	struct op_items *o = op;

	free(o->want);
	xmppd_elem_unref(o->res);
}

static void
items_finish(struct ps_req *r)
{
	struct op_items *o = r->op;
	struct ps_node *n = r->n;
	xmppd_elem *set, *e;
	char buf[32];

	free(o->want);
	o->want = NULL;
	if (o->bad) {
		/* op_items_free drops o->res (and o->items with it). */
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	/* XEP-0060 6.5.7: the service may truncate the result, saying so
	 * with a XEP-0059 <set/> (first, last, count) the client pages on
	 * from. */
	if (o->truncated)
		o->rsm = 1;
	/* XEP-0059 2.x: the page's first and last ids and the count. */
	if (o->rsm) {
		set = xmppd_elem_add_child(o->res, NS_RSM, "set");
		e = xmppd_elem_first_child(o->items);
		if (e != NULL) {
			xmppd_elem *f = xmppd_elem_add_child(set, NS_RSM, "first"), *l;
			xmppd_elem *last = e, *nx;

			snprintf(buf, sizeof(buf), "%zu", o->first_index);
			if (!o->by_id)
				xmppd_elem_set_attr(f, "index", buf);
			xmppd_elem_add_text(f, xmppd_elem_attr(e, "id"),
			    strlen(xmppd_elem_attr(e, "id")));
			while ((nx = xmppd_elem_next_sibling(last)) != NULL)
				last = nx;
			l = xmppd_elem_add_child(set, NS_RSM, "last");
			xmppd_elem_add_text(l, xmppd_elem_attr(last, "id"),
			    strlen(xmppd_elem_attr(last, "id")));
		}
		snprintf(buf, sizeof(buf), "%zu", n->nitems);
		xmppd_elem_add_text(xmppd_elem_add_child(set, NS_RSM, "count"), buf, strlen(buf));
	}
	e = o->res;
	o->res = NULL;
	ps_reply(r, e);
}

static void items_read(struct ps_req *r);

static void
item_got(int status, const void *val, size_t vlen, void *ud)
{
	struct ps_req *r = ud;
	struct op_items *o = r->op;
	const char *pub, *id, *xml;
	xmppd_elem *it;
	size_t xlen;

	if (o->truncated || o->bad) {
		/* Past the budget (or failed): the rest of the window is dropped. */
	} else if (status == XMPPD_STORE_OK && ps_item_parse(val, vlen, &pub, &id, &xml, &xlen) == 0 &&
	    (it = xmppd_elem_parse(xml, xlen)) != NULL) {
		/* max_items_page_bytes: at least one item, then while the
		 * payloads fit. */
		if (o->got > 0 && r->m->max_items_page_bytes > 0 &&
		    o->bytes + xlen > (size_t)r->m->max_items_page_bytes) {
			o->truncated = 1;
		} else {
			xmppd_elem_append_copy(o->items, it);
			o->bytes += xlen;
			o->got++;
		}
		xmppd_elem_unref(it);
	} else if (status != XMPPD_STORE_NOT_FOUND) {
		o->bad = 1;
	}
	if (--o->left == 0) {
		if (o->truncated || o->bad || o->next == o->nwant)
			items_finish(r);
		else
			items_read(r);
	}
}

static void
items_allowed(struct ps_req *r)
{
	struct op_items *o = r->op;

	if (o->nwant == 0) {
		items_finish(r);
		return;
	}
	items_read(r);
}

/* The next window of reads. Reads complete in submission order: the
 * answer keeps the order. */
static void
items_read(struct ps_req *r)
{
	struct op_items *o = r->op;
	struct ps_node *n = r->n;
	char key[PS_KEY_MAX];
	size_t klen, i, end = o->next + ITEMS_WINDOW < o->nwant ? o->next + ITEMS_WINDOW : o->nwant;

	o->left = end - o->next;
	for (i = o->next; i < end; i++) {
		o->next = i + 1;
		klen = ps_key_item(key, n->service, n->name, n->items[o->want[i]].seq);
		if (xmppd_store_aget(r->m->ctx, ps_table(n->service, T_ITEMS), key, klen, item_got, r) < 0) {
			o->bad = 1;
			o->left -= end - i;
			if (o->left == 0)
				items_finish(r);
			return;
		}
	}
}

static long
parse_count(const char *s)
{
	char *end;
	long v;

	if (s == NULL)
		return -1;
	v = strtol(s, &end, 10);
	return *s == '\0' || *end != '\0' || v < 0 ? -2 : v;
}

static void
op_items(struct ps_req *r, xmppd_elem *action)
{
	struct ps_node *n = r->n;
	struct op_items *o;
	xmppd_elem *c, *set = xmppd_elem_child(r->payload, NS_RSM, "set");
	long max = parse_count(xmppd_elem_attr(action, "max_items")), rmax = -1;
	size_t start = 0, end, k;
	ssize_t idx;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);        /* 6.5.9.11 */
		return;
	}
	if (max == -2) {
		ps_error(r, "bad-request", NULL, NULL);
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL ||
	    (o->want = calloc(n->nitems + 1, sizeof(*o->want))) == NULL) {
		free(o);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	r->op_free = op_items_free;
	o->res = ps_result(NS_PUBSUB);
	o->items = xmppd_elem_add_child(o->res, NS_PUBSUB, "items");
	xmppd_elem_set_attr(o->items, "node", n->name);
	/* 6.5.8: particular items, in the order asked. */
	for (c = xmppd_elem_first_child(action); c != NULL; c = xmppd_elem_next_sibling(c))
		if (is(xmppd_elem_name(c), "item") && xmppd_elem_attr(c, "id") != NULL) {
			if ((idx = ps_item_index(n, xmppd_elem_attr(c, "id"))) >= 0 &&
			    o->nwant < n->nitems)
				o->want[o->nwant++] = (size_t)idx;
			o->rsm = -1;
			o->by_id = 1;
		}
	if (o->rsm == -1) {
		o->rsm = 0;
		ps_check_access(r, items_allowed, 1);
		return;
	}
	/* The result set is newest first (6.5.7: max_items the N most
	 * recent); position p is n->items[nitems - 1 - p]. XEP-0059 pages
	 * it: <max/>, <after/> (the page after that id), <before/> (the page
	 * before it; empty: the last page), <index/>. */
	end = n->nitems;
	if (set != NULL) {
		const char *after = xmppd_elem_child_text(set, NS_RSM, "after");
		xmppd_elem *before = xmppd_elem_child(set, NS_RSM, "before");
		long index = parse_count(xmppd_elem_child_text(set, NS_RSM, "index"));

		o->rsm = 1;
		rmax = parse_count(xmppd_elem_child_text(set, NS_RSM, "max"));
		if (rmax == -2 || index == -2) {
			ps_error(r, "bad-request", NULL, NULL);
			return;
		}
		if (xmppd_elem_child(set, NS_RSM, "after") != NULL) {
			if ((idx = ps_item_index(n, after)) < 0) {
				ps_error(r, "item-not-found", NULL, NULL);  /* XEP-0059 2.6 */
				return;
			}
			start = n->nitems - (size_t)idx;
		} else if (before != NULL) {
			const char *b = xmppd_elem_text(before);

			if (*b != '\0') {
				if ((idx = ps_item_index(n, b)) < 0) {
					ps_error(r, "item-not-found", NULL, NULL);
					return;
				}
				end = n->nitems - 1 - (size_t)idx;
			}
			if (rmax >= 0 && end > (size_t)rmax)
				start = end - (size_t)rmax;
		} else if (index >= 0) {
			start = (size_t)index < n->nitems ? (size_t)index : n->nitems;
		}
	}
	if (max >= 0 && start + (size_t)max < end)
		end = start + (size_t)max;
	if (rmax >= 0 && start + (size_t)rmax < end)
		end = start + (size_t)rmax;
	if (!n->cfg.persist_items)
		start = end = 0;
	o->first_index = start;
	for (k = start; k < end; k++)
		o->want[o->nwant++] = n->nitems - 1 - k;
	ps_check_access(r, items_allowed, 1);
}

/* ---------------------------------------------------------------- */
/* Owner: affiliations (8.9) and subscriptions (8.8); the entity's     */
/* own for one node (5.6, 5.7 with a node).                           */

/* What an owner's set changes, applied once its batch is durable (as
 * config_done and publish_done do): a failed batch leaves the node as
 * it was. */
struct op_sets {
	struct ps_aff_entry *affs;  /* affiliations: the new list */
	size_t naffs;
	char *gone;                 /* gone[i]: n->subs[i] is removed */
	int *state;                 /* subscriptions: n->subs[i]'s new state, or -1 */
	struct ps_sub *added;       /* subscriptions: the new ones */
	size_t nadded;
};

static void
op_sets_free(void *op)
{
	struct op_sets *o = op;

	for (size_t i = 0; i < o->naffs; i++)
		free(o->affs[i].jid);
	free(o->affs);
	free(o->gone);
	free(o->state);
	for (size_t i = 0; i < o->nadded; i++)
		free(o->added[i].jid);
	free(o->added);
}

/* Removes the subscriptions marked gone (told with notify, 8.8.4). */
static void
drop_gone(struct ps_node *n, const char *gone, int notify)
{
	size_t w = 0;

	for (size_t i = 0; i < n->nsubs; i++) {
		if (!gone[i]) {
			n->subs[w++] = n->subs[i];
			continue;
		}
		if (notify)
			ps_sub_revoked(n, &n->subs[i]);
		free(n->subs[i].jid);
	}
	n->nsubs = w;
}

static void
aff_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_sets *o = r->op;
	struct ps_node *n = r->n;

	if (status != XMPPD_STORE_OK) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	for (size_t i = 0; i < n->naffs; i++)
		free(n->affs[i].jid);
	free(n->affs);
	n->affs = o->affs;
	n->naffs = o->naffs;
	o->affs = NULL;
	o->naffs = 0;
	drop_gone(n, o->gone, 1);
	ps_reply(r, NULL);
}

static void
subs_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_sets *o = r->op;
	struct ps_node *n = r->n;

	if (status != XMPPD_STORE_OK) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	for (size_t i = 0; i < n->nsubs; i++)
		if (o->state[i] >= 0)
			n->subs[i].state = o->state[i];
	drop_gone(n, o->gone, 0);
	for (size_t i = 0; i < o->nadded; i++) {
		if (o->added[i].jid == NULL)
			continue;       /* added, then set to none */
		if (ps_sub_room(n) < 0)
			break;
		n->subs[n->nsubs++] = o->added[i];
		o->added[i].jid = NULL;
	}
	ps_reply(r, NULL);
}

static int
grants(int aff)
{
	return aff == PS_AFF_OWNER || aff == PS_AFF_PUBLISHER || aff == PS_AFF_MEMBER;
}

/* Whether an affiliation changed from was to now takes the JID's
 * subscriptions away: it became an outcast (4.1), or on a whitelist node
 * it no longer grants access (4.5). */
static int
drops_subs(const struct ps_node *n, int now, int was)
{
	if (now == PS_AFF_OUTCAST)
		return was != PS_AFF_OUTCAST;
	return n->cfg.access == PS_WHITELIST && grants(was) && !grants(now);
}

static void
op_affiliations(struct ps_req *r, xmppd_elem *action, int owner_ns)
{
	struct ps_node *n = r->n;
	xmppd_elem *res, *list, *a, *c;
	struct ps_aff_entry *na;
	int *was;
	size_t owners = 0, cnt = 0, kept = 0, newout = 0;
	const char *cond = NULL;
	xmppd_batch *b = NULL;
	char key[PS_KEY_MAX], *rec;
	size_t vlen;
	struct op_sets *o;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);
		return;
	}
	if (!owner_ns) {
		/* 5.7 with a node: the actor's own affiliation. */
		int aff = ps_aff_of(n, r->actor);

		res = ps_result(NS_PUBSUB);
		list = xmppd_elem_add_child(res, NS_PUBSUB, "affiliations");
		if (aff != PS_AFF_NONE) {
			a = xmppd_elem_add_child(list, NS_PUBSUB, "affiliation");
			xmppd_elem_set_attr(a, "node", n->name);
			xmppd_elem_set_attr(a, "affiliation", ps_aff_name(aff));
		}
		ps_reply(r, res);
		return;
	}
	if (ps_aff_of(n, r->actor) != PS_AFF_OWNER) {
		ps_error(r, "forbidden", NULL, NULL);     /* 8.9.1.3, 8.9.2.5 */
		return;
	}
	if (!r->set) {
		res = ps_result(NS_PUBSUB_OWNER);
		list = xmppd_elem_add_child(res, NS_PUBSUB_OWNER, "affiliations");
		xmppd_elem_set_attr(list, "node", n->name);
		for (size_t i = 0; i < n->naffs; i++) {
			a = xmppd_elem_add_child(list, NS_PUBSUB_OWNER, "affiliation");
			xmppd_elem_set_attr(a, "jid", n->affs[i].jid);
			xmppd_elem_set_attr(a, "affiliation", ps_aff_name(n->affs[i].aff));
		}
		ps_reply(r, res);
		return;
	}
	/* 8.9.2: validate all, then apply to a new list. */
	for (c = xmppd_elem_first_child(action); c != NULL; c = xmppd_elem_next_sibling(c)) {
		xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(c, "jid") ?
		    xmppd_elem_attr(c, "jid") : "");
		int ok = j != NULL && ps_aff_parse(xmppd_elem_attr(c, "affiliation")) >= 0;

		xmppd_jid_free(j);
		if (!ok) {
			ps_error(r, "bad-request", NULL, NULL);
			return;
		}
		cnt++;
	}
	if ((na = calloc(n->naffs + cnt + 1, sizeof(*na))) == NULL ||
	    (was = calloc(n->naffs + cnt + 1, sizeof(*was))) == NULL) {
		free(na);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	size_t nn = 0;

	/* was[k]: the entry's affiliation before this request. */
	for (size_t i = 0; i < n->naffs; i++) {
		was[nn] = n->affs[i].aff;
		na[nn++] = (struct ps_aff_entry){ strdup(n->affs[i].jid), n->affs[i].aff };
	}
	for (c = xmppd_elem_first_child(action); c != NULL; c = xmppd_elem_next_sibling(c)) {
		xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(c, "jid"));
		int v = ps_aff_parse(xmppd_elem_attr(c, "affiliation"));
		size_t k;

		for (k = 0; k < nn; k++)
			if (na[k].jid != NULL && strcmp(na[k].jid, xmppd_jid_bare(j)) == 0)
				break;
		if (k == nn) {
			was[nn] = PS_AFF_NONE;
			na[nn++] = (struct ps_aff_entry){ strdup(xmppd_jid_bare(j)), v };
		} else {
			na[k].aff = v;
		}
		xmppd_jid_free(j);
	}
	for (size_t k = 0; k < nn; k++) {
		owners += na[k].aff == PS_AFF_OWNER;
		kept += na[k].aff != PS_AFF_NONE;
		newout += na[k].jid != NULL && drops_subs(n, na[k].aff, was[k]);
	}
	/* 8.9.2.4: the last owner stays. max_affiliations_per_node: XEP-0060
	 * 8.9.2 names no error for a service limit; policy-violation (RFC
	 * 6120 8.3.3.12), nothing changed. */
	if (owners == 0)
		cond = "not-acceptable";
	else if (r->m->max_affiliations_per_node > 0 &&
	    kept > (size_t)r->m->max_affiliations_per_node)
		cond = "policy-violation";
	else if ((b = xmppd_batch_new(r->m->ctx)) == NULL)
		cond = "internal-server-error";
	if (cond != NULL) {
		for (size_t k = 0; k < nn; k++)
			free(na[k].jid);
		free(na);
		free(was);
		ps_error(r, cond, NULL, NULL);
		return;
	}
	/* Drop the 'none' entries; outcasts lose their subscriptions
	 * (8.9.2.4 / 4.1). The new list and the subscriptions to remove are
	 * kept in r->op: the node changes in aff_done, once the batch is
	 * durable (nothing changes if it fails). */
	if ((o = calloc(1, sizeof(*o))) == NULL ||
	    (o->gone = calloc(n->nsubs + 1, 1)) == NULL) {
		free(o);
		for (size_t k = 0; k < nn; k++)
			free(na[k].jid);
		free(na);
		free(was);
		xmppd_batch_free(b);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	r->op_free = op_sets_free;
	/* Only the JIDs this request made outcasts, or on a whitelist node
	 * took out of it (XEP-0060 4.5): one pass over the subscriptions
	 * (the others were stripped before). */
	if (newout > 0) {
		for (size_t s = 0; s < n->nsubs; s++) {
			const char *sj = n->subs[s].jid;
			size_t bl = strcspn(sj, "/"), k;

			for (k = 0; k < nn; k++)
				if (na[k].jid != NULL && drops_subs(n, na[k].aff, was[k]) &&
				    strlen(na[k].jid) == bl && strncmp(na[k].jid, sj, bl) == 0)
					break;
			if (k < nn) {
				(void)xmppd_batch_del(b, ps_table(n->service, T_SUBS), key,
				    ps_key_sub(key, n->service, n->name, sj));
				o->gone[s] = 1;
			}
		}
	}
	free(was);
	o->affs = na;
	for (size_t k = 0; k < nn; k++) {
		if (na[k].jid == NULL || na[k].aff == PS_AFF_NONE) {
			free(na[k].jid);
			continue;
		}
		na[o->naffs++] = na[k];
	}
	if ((rec = ps_node_record_affs(n, o->affs, o->naffs, &vlen)) == NULL) {
		xmppd_batch_free(b);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	(void)xmppd_batch_put(b, ps_table(n->service, T_NODES), key,
	    ps_key_node(key, n->service, n->name), rec, vlen);
	free(rec);
	if (xmppd_batch_submit(b, aff_done, r) < 0)
		aff_done(XMPPD_STORE_ERROR, r);
}

static void
op_subscriptions(struct ps_req *r, xmppd_elem *action, int owner_ns)
{
	struct ps_node *n = r->n;
	xmppd_elem *res, *list, *c, *e;
	xmppd_batch *b;
	char key[PS_KEY_MAX], *rec;
	size_t vlen, added = 0;
	struct op_sets *o;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);
		return;
	}
	if (!owner_ns) {
		/* 5.6 with a node: the actor's subscriptions to it. */
		res = ps_result(NS_PUBSUB);
		list = xmppd_elem_add_child(res, NS_PUBSUB, "subscriptions");
		for (size_t i = 0; i < n->nsubs; i++) {
			xmppd_jid *sj = xmppd_jid_parse(n->subs[i].jid);

			if (sj != NULL && r->actor != NULL &&
			    strcmp(xmppd_jid_bare(sj), xmppd_jid_bare(r->actor)) == 0) {
				e = subscription_elem(NS_PUBSUB, n, &n->subs[i]);
				xmppd_elem_append_copy(list, e);
				xmppd_elem_unref(e);
			}
			xmppd_jid_free(sj);
		}
		ps_reply(r, res);
		return;
	}
	if (ps_aff_of(n, r->actor) != PS_AFF_OWNER) {
		ps_error(r, "forbidden", NULL, NULL);     /* 8.8.1.3, 8.8.2.3 */
		return;
	}
	if (!r->set) {
		res = ps_result(NS_PUBSUB_OWNER);
		list = xmppd_elem_add_child(res, NS_PUBSUB_OWNER, "subscriptions");
		xmppd_elem_set_attr(list, "node", n->name);
		for (size_t i = 0; i < n->nsubs; i++) {
			e = xmppd_elem_add_child(list, NS_PUBSUB_OWNER, "subscription");
			xmppd_elem_set_attr(e, "jid", n->subs[i].jid);
			xmppd_elem_set_attr(e, "subscription", ps_sub_name(n->subs[i].state));
			xmppd_elem_set_attr(e, "subid", n->subs[i].subid);
		}
		ps_reply(r, res);
		return;
	}
	/* 8.8.2: validate all first. */
	for (c = xmppd_elem_first_child(action); c != NULL; c = xmppd_elem_next_sibling(c)) {
		xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(c, "jid") ?
		    xmppd_elem_attr(c, "jid") : "");
		const char *st = xmppd_elem_attr(c, "subscription");
		int ok = j != NULL && (is(st, "none") || is(st, "subscribed") || is(st, "pending"));

		if (ok && !is(st, "none") && ps_sub_find(n, xmppd_jid_full(j)) == NULL)
			added++;
		xmppd_jid_free(j);
		if (!ok) {
			ps_error(r, "bad-request", NULL, NULL);
			return;
		}
	}
	/* max_subscriptions_per_node holds for the owner's set too (the
	 * error of a subscribe past it, 6.1.3); nothing is changed. */
	if (r->m->max_subscriptions_per_node > 0 &&
	    n->nsubs + added > (size_t)r->m->max_subscriptions_per_node) {
		ps_error(r, "policy-violation", "too-many-subscriptions", NULL);
		return;
	}
	if ((b = xmppd_batch_new(r->m->ctx)) == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	/* The changes go to r->op, in the request's order (a JID named twice:
	 * the last entry counts); the node changes in subs_done. */
	if ((o = calloc(1, sizeof(*o))) == NULL ||
	    (o->gone = calloc(n->nsubs + 1, 1)) == NULL ||
	    (o->state = calloc(n->nsubs + 1, sizeof(*o->state))) == NULL ||
	    (o->added = calloc(added + 1, sizeof(*o->added))) == NULL) {
		if (o != NULL)
			op_sets_free(o);
		free(o);
		xmppd_batch_free(b);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	r->op_free = op_sets_free;
	for (size_t i = 0; i < n->nsubs; i++)
		o->state[i] = -1;
	for (c = xmppd_elem_first_child(action); c != NULL; c = xmppd_elem_next_sibling(c)) {
		xmppd_jid *j = xmppd_jid_parse(xmppd_elem_attr(c, "jid"));
		const char *st = xmppd_elem_attr(c, "subscription"), *fj = xmppd_jid_full(j);
		struct ps_sub *s = ps_sub_find(n, fj), *a = NULL, tmp;
		size_t klen = ps_key_sub(key, n->service, n->name, fj), ai;

		for (ai = 0; ai < o->nadded; ai++)
			if (o->added[ai].jid != NULL && strcmp(o->added[ai].jid, fj) == 0) {
				a = &o->added[ai];
				break;
			}
		if (is(st, "none")) {
			if (s != NULL) {
				o->gone[s - n->subs] = 1;
				(void)xmppd_batch_del(b, ps_table(n->service, T_SUBS), key, klen);
			} else if (a != NULL) {
				free(a->jid);
				a->jid = NULL;
				(void)xmppd_batch_del(b, ps_table(n->service, T_SUBS), key, klen);
			}
			xmppd_jid_free(j);
			continue;
		}
		if (s != NULL) {
			o->gone[s - n->subs] = 0;
			o->state[s - n->subs] = is(st, "pending") ? PS_SUB_PENDING : PS_SUB_SUBSCRIBED;
			tmp = *s;
			tmp.state = o->state[s - n->subs];
			a = &tmp;
		} else if (a == NULL && o->nadded < added) {
			a = &o->added[o->nadded];
			memset(a, 0, sizeof(*a));
			if ((a->jid = strdup(fj)) != NULL)
				o->nadded++;
			ps_random_id(a->subid);
		}
		if (a != NULL && a->jid != NULL) {
			if (a != &tmp)
				a->state = is(st, "pending") ? PS_SUB_PENDING : PS_SUB_SUBSCRIBED;
			if ((rec = ps_sub_record(a, &vlen)) != NULL)
				(void)xmppd_batch_put(b, ps_table(n->service, T_SUBS), key, klen, rec, vlen);
			free(rec);
		}
		xmppd_jid_free(j);
	}
	if (xmppd_batch_submit(b, subs_done, r) < 0)
		subs_done(XMPPD_STORE_ERROR, r);
}

/* ---------------------------------------------------------------- */
/* disco on a node (XEP-0060 5.3, 5.4, 5.5)                           */

static void
disco_items_allowed(struct ps_req *r)
{
	struct ps_node *n = r->n;
	xmppd_elem *q = xmppd_elem_new(NS_DISCO_ITEMS, "query"), *it;

	xmppd_elem_set_attr(q, "node", n->name);
	for (size_t i = n->nitems; i-- > 0;) {
		it = xmppd_elem_add_child(q, NS_DISCO_ITEMS, "item");
		xmppd_elem_set_attr(it, "jid", n->service);
		xmppd_elem_set_attr(it, "name", n->items[i].id);
	}
	ps_reply(r, q);
}

static void
op_disco(struct ps_req *r)
{
	struct ps_node *n = r->n;
	xmppd_elem *q, *id;

	if (!n->exists) {
		ps_error(r, "item-not-found", NULL, NULL);
		return;
	}
	if (r->disco == 2) {
		ps_check_access(r, disco_items_allowed, 1);
		return;
	}
	q = xmppd_elem_new(NS_DISCO_INFO, "query");
	xmppd_elem_set_attr(q, "node", n->name);
	id = xmppd_elem_add_child(q, NS_DISCO_INFO, "identity");
	xmppd_elem_set_attr(id, "category", "pubsub");
	xmppd_elem_set_attr(id, "type", "leaf");
	xmppd_elem_set_attr(xmppd_elem_add_child(q, NS_DISCO_INFO, "feature"), "var", NS_PUBSUB);
	ps_meta_form(n, q);
	ps_reply(r, q);
}

static void
sendlast_allowed(struct ps_req *r)
{
	ps_send_last_item(r->n, xmppd_jid_full(r->actor_full));
	ps_reply(r, NULL);
}

int
ps_affs_grant(const struct ps_aff_entry *affs, size_t naffs, const char *jid)
{
	size_t bl = strcspn(jid, "/");

	for (size_t i = 0; i < naffs; i++)
		if (strlen(affs[i].jid) == bl && strncmp(affs[i].jid, jid, bl) == 0)
			return affs[i].aff == PS_AFF_OWNER || affs[i].aff == PS_AFF_PUBLISHER ||
			    affs[i].aff == PS_AFF_MEMBER;
	return 0;
}

void
ps_sub_revoked(const struct ps_node *n, const struct ps_sub *s)
{
	struct ps_sub none = *s;
	xmppd_elem *msg, *ev, *e;

	none.state = PS_SUB_NONE;
	msg = ps_event_message(n, &ev);
	xmppd_elem_set_attr(msg, "type", NULL);
	e = subscription_elem(NS_PUBSUB_EVENT, n, &none);
	xmppd_elem_append_copy(ev, e);
	xmppd_elem_unref(e);
	ps_send_to(msg, s->jid);
	xmppd_elem_unref(msg);
	tell_owners(n, s->jid, PS_SUB_NONE, s->subid);
}

/* ---------------------------------------------------------------- */
/* The access model became presence or roster (configure): each        */
/* subscriber's roster state is asked again, one at a time (bounded by */
/* max_subscriptions_per_node); those that no longer qualify go.       */

struct op_recheck {
	char **jids;                /* the subscriptions, as the request began */
	size_t n, next;
	char *gone;                 /* gone[i]: jids[i] no longer qualifies */
	xmppd_jid *owner;
};

static void
op_recheck_free(void *op)
{
	struct op_recheck *o = op;

	for (size_t i = 0; i < o->n; i++)
		free(o->jids[i]);
	free(o->jids);
	free(o->gone);
	xmppd_jid_free(o->owner);
}

static void
recheck_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_recheck *o = r->op;
	struct ps_node *n = r->n;
	struct ps_sub *s;

	if (status != XMPPD_STORE_OK) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	for (size_t i = 0; i < o->n; i++)
		if (o->gone[i] && (s = ps_sub_find(n, o->jids[i])) != NULL) {
			ps_sub_revoked(n, s);
			ps_sub_remove(n, s);
		}
	ps_reply(r, NULL);
}

static void recheck_next(struct ps_req *r);

static void
recheck_answer(int sub, void *ud)
{
	struct ps_req *r = ud;
	struct op_recheck *o = r->op;
	int model = r->n->cfg.access;

	/* As roster_answer: presence needs from or both; roster, an item. */
	if (!(sub >= 0 && (model == PS_PRESENCE ? (sub & XMPPD_SUB_FROM) != 0 :
	    (sub & XMPPD_SUB_IN_ROSTER) != 0)))
		o->gone[o->next] = 1;
	o->next++;
	recheck_next(r);
}

static void
recheck_next(struct ps_req *r)
{
	struct op_recheck *o = r->op;
	struct ps_node *n = r->n;
	xmppd_batch *b;
	xmppd_jid *j;
	char key[PS_KEY_MAX];
	size_t ngone = 0;

	while (o->next < o->n) {
		if (ps_affs_grant(n->affs, n->naffs, o->jids[o->next]) ||
		    (j = xmppd_jid_parse(o->jids[o->next])) == NULL) {
			o->next++;
			continue;
		}
		if (o->owner != NULL &&
		    xmppd_roster_subscription(r->m->ctx, o->owner, j, recheck_answer, r) == 0) {
			xmppd_jid_free(j);
			return;
		}
		xmppd_jid_free(j);
		o->gone[o->next++] = 1;  /* no roster to ask: no access (as subscribing) */
	}
	for (size_t i = 0; i < o->n; i++)
		ngone += o->gone[i];
	if (ngone == 0) {
		ps_reply(r, NULL);
		return;
	}
	if ((b = xmppd_batch_new(r->m->ctx)) == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	for (size_t i = 0; i < o->n; i++)
		if (o->gone[i])
			(void)xmppd_batch_del(b, ps_table(n->service, T_SUBS), key,
			    ps_key_sub(key, n->service, n->name, o->jids[i]));
	if (xmppd_batch_submit(b, recheck_done, r) < 0)
		recheck_done(XMPPD_STORE_ERROR, r);
}

static void
op_recheck(struct ps_req *r)
{
	struct ps_node *n = r->n;
	struct op_recheck *o;
	const char *owner;

	if (!n->exists || (n->cfg.access != PS_PRESENCE && n->cfg.access != PS_ROSTER)) {
		ps_reply(r, NULL);      /* configured again meanwhile */
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	r->op_free = op_recheck_free;
	if ((o->jids = calloc(n->nsubs + 1, sizeof(*o->jids))) == NULL ||
	    (o->gone = calloc(n->nsubs + 1, 1)) == NULL) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	for (size_t i = 0; i < n->nsubs; i++)
		if ((o->jids[o->n] = strdup(n->subs[i].jid)) != NULL)
			o->n++;
	if ((owner = roster_owner(n)) != NULL)
		o->owner = xmppd_jid_parse(owner);
	recheck_next(r);
}

/* ---------------------------------------------------------------- */
/* A removed account's rights (ps_drop_account): r->drop_jid.         */

struct op_drop {
	struct ps_aff_entry *affs;  /* the node's affiliations without it */
	size_t naffs;
};

static void
op_drop_free(void *op)
{
	struct op_drop *o = op;

	for (size_t i = 0; i < o->naffs; i++)
		free(o->affs[i].jid);
	free(o->affs);
}

/* Whether jid (bare or full) is of the bare JID bare. */
static int
of_bare(const char *jid, const char *bare)
{
	size_t bl = strcspn(jid, "/");

	return strlen(bare) == bl && strncmp(jid, bare, bl) == 0;
}

static void
drop_done(int status, void *ud)
{
	struct ps_req *r = ud;
	struct op_drop *o = r->op;
	struct ps_node *n = r->n;
	size_t w = 0;

	if (status != XMPPD_STORE_OK) {
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	/* Durable: the node's memory follows. */
	for (size_t i = 0; i < n->nsubs; i++) {
		if (of_bare(n->subs[i].jid, r->drop_jid)) {
			tell_owners(n, n->subs[i].jid, PS_SUB_NONE, n->subs[i].subid);
			free(n->subs[i].jid);
		} else {
			n->subs[w++] = n->subs[i];
		}
	}
	n->nsubs = w;
	for (size_t i = 0; i < n->naffs; i++)
		free(n->affs[i].jid);
	free(n->affs);
	n->affs = o->affs;
	n->naffs = o->naffs;
	o->affs = NULL;
	o->naffs = 0;
	ps_reply(r, NULL);
}

/* The account r->drop_jid was removed: its subscriptions (bare and full
 * JIDs) and its affiliation on this node go, so that an account made
 * again with the name inherits nothing (XEP-0060 4.1: affiliations and
 * subscriptions are of the JID). A service node it was the only owner of
 * is deleted, its subscribers told (8.4.2). */
static void
op_drop(struct ps_req *r)
{
	struct ps_node *n = r->n;
	struct op_drop *o;
	xmppd_batch *b;
	xmppd_elem *d;
	char key[PS_KEY_MAX], *rec;
	size_t vlen, nsubs = 0, others = 0;
	int aff = PS_AFF_NONE;

	if (!n->exists) {
		ps_reply(r, NULL);
		return;
	}
	for (size_t i = 0; i < n->naffs; i++) {
		if (strcmp(n->affs[i].jid, r->drop_jid) == 0)
			aff = n->affs[i].aff;
		else if (n->affs[i].aff == PS_AFF_OWNER)
			others++;
	}
	if (aff == PS_AFF_OWNER && others == 0 && n->kind == PS_SERVICE) {
		d = xmppd_elem_new(NS_PUBSUB_OWNER, "delete");
		ps_op_delete(r, d, 0);  /* the server is owner (r->actor NULL) */
		xmppd_elem_unref(d);
		return;
	}
	for (size_t i = 0; i < n->nsubs; i++)
		nsubs += of_bare(n->subs[i].jid, r->drop_jid);
	if (aff == PS_AFF_NONE && nsubs == 0) {
		ps_reply(r, NULL);
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL || (b = xmppd_batch_new(r->m->ctx)) == NULL) {
		free(o);
		ps_error(r, "internal-server-error", NULL, NULL);
		return;
	}
	r->op = o;
	r->op_free = op_drop_free;
	if ((o->affs = calloc(n->naffs + 1, sizeof(*o->affs))) == NULL)
		goto fail;
	for (size_t i = 0; i < n->naffs; i++) {
		if (strcmp(n->affs[i].jid, r->drop_jid) == 0)
			continue;
		if ((o->affs[o->naffs].jid = strdup(n->affs[i].jid)) == NULL)
			goto fail;
		o->affs[o->naffs++].aff = n->affs[i].aff;
	}
	for (size_t i = 0; i < n->nsubs; i++)
		if (of_bare(n->subs[i].jid, r->drop_jid))
			(void)xmppd_batch_del(b, ps_table(n->service, T_SUBS), key,
			    ps_key_sub(key, n->service, n->name, n->subs[i].jid));
	if (aff != PS_AFF_NONE) {
		if ((rec = ps_node_record_affs(n, o->affs, o->naffs, &vlen)) == NULL)
			goto fail;
		(void)xmppd_batch_put(b, ps_table(n->service, T_NODES), key,
		    ps_key_node(key, n->service, n->name), rec, vlen);
		free(rec);
	}
	if (xmppd_batch_submit(b, drop_done, r) < 0)
		drop_done(XMPPD_STORE_ERROR, r);
	return;
fail:
	xmppd_batch_free(b);
	ps_error(r, "internal-server-error", NULL, NULL);
}

/* ---------------------------------------------------------------- */
/* Dispatch                                                           */

/* The action: <create> when there is one (its <configure> is its form),
 * else the first child that is not an options form or an RSM set; a lone
 * <options> is the action (6.3). */
static xmppd_elem *
action_of(xmppd_elem *p)
{
	xmppd_elem *c, *opts = NULL;

	if ((c = xmppd_elem_child(p, NS_PUBSUB, "create")) != NULL)
		return c;
	for (c = xmppd_elem_first_child(p); c != NULL; c = xmppd_elem_next_sibling(c)) {
		if (is(xmppd_elem_name(c), "options")) {
			opts = c;
			continue;
		}
		if (!is(xmppd_elem_name(c), "publish-options") && !is(xmppd_elem_name(c), "set"))
			return c;
	}
	return opts;
}

void
ps_dispatch(struct ps_req *r)
{
	xmppd_elem *a;
	const char *name, *ns;
	int owner;

	if (r->drop_jid != NULL) {
		op_drop(r);
		return;
	}
	if (r->recheck) {
		op_recheck(r);
		return;
	}
	if (r->disco) {
		op_disco(r);
		return;
	}
	if (r->authorize) {
		op_authorize(r);
		return;
	}
	if (r->sendlast) {
		/* XEP-0163 4.3.2: a contact's resource became available with
		 * NODE+notify: the last item, if the contact may see it. */
		if (!r->n->exists || r->n->cfg.send_last == PS_LAST_NEVER)
			ps_reply(r, NULL);
		else
			ps_check_access(r, sendlast_allowed, 1);
		return;
	}
	ns = xmppd_elem_ns(r->payload);
	owner = is(ns, NS_PUBSUB_OWNER);
	a = action_of(r->payload);
	name = a != NULL ? xmppd_elem_name(a) : "";
	if (!owner) {
		if (is(name, "create") && r->set)
			ps_op_create(r, a);
		else if (is(name, "publish") && r->set)
			ps_op_publish(r, a);
		else if (is(name, "retract") && r->set)
			ps_op_retract(r, a);
		else if (is(name, "subscribe") && r->set)
			op_subscribe(r, a);
		else if (is(name, "unsubscribe") && r->set)
			op_unsubscribe(r, a);
		else if (is(name, "items") && !r->set)
			op_items(r, a);
		else if (is(name, "subscriptions") && !r->set)
			op_subscriptions(r, a, 0);
		else if (is(name, "affiliations") && !r->set)
			op_affiliations(r, a, 0);
		else if (is(name, "options"))
			op_options(r, a);
		else if (is(name, "default") && !r->set)
			op_default(r);
		else
			ps_error(r, "bad-request", NULL, NULL);
		return;
	}
	if (is(name, "configure"))
		ps_op_configure(r, a);
	else if (is(name, "delete") && r->set)
		ps_op_delete(r, a, 0);
	else if (is(name, "purge") && r->set)
		ps_op_delete(r, a, 1);
	else if (is(name, "affiliations"))
		op_affiliations(r, a, 1);
	else if (is(name, "subscriptions"))
		op_subscriptions(r, a, 1);
	else
		ps_error(r, "bad-request", NULL, NULL);
}
