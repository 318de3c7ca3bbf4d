/*
 * pubsub_form.c - node configuration: defaults, the pubsub#node_config
 * form (XEP-0060 8.2, 16.4.4), publish-options preconditions (7.1.5) and
 * the pubsub#meta-data form of disco#info on a node (5.4).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pubsub.h"

static int
is(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static const char *const access_names[] = { "open", "presence", "roster", "whitelist",
	"authorize" };
static const char *const aff_names[] = { "none", "owner", "publisher", "publish-only",
	"member", "outcast" };
static const char *const sub_names[] = { "none", "pending", "unconfigured", "subscribed" };
static const char *const pub_names[] = { "publishers", "subscribers", "open" };
static const char *const last_names[] = { "never", "on_sub", "on_sub_and_presence" };

const char *
ps_access_name(int a)
{
	return access_names[a];
}

const char *
ps_aff_name(int a)
{
	return aff_names[a];
}

const char *
ps_sub_name(int s)
{
	return sub_names[s];
}

static int
lookup(const char *const *names, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (is(names[i], s))
			return i;
	return -1;
}

int
ps_aff_parse(const char *s)
{
	return lookup(aff_names, 6, s);
}

void
ps_config_default(struct ps_mod *m, struct ps_config *c, int kind)
{
	memset(c, 0, sizeof(*c));
	/* XEP-0163 4.5: PEP nodes default to presence. */
	c->access = kind == PS_PEP ? PS_PRESENCE : PS_OPEN;
	c->publish_model = PS_PUB_PUBLISHERS;
	c->max_items = m->default_max_items;
	c->persist_items = 1;
	c->deliver_payloads = 1;
	c->deliver_notifications = 1;
	c->notify_config = 0;
	c->notify_delete = 1;
	c->notify_retract = 1;
	c->notify_sub = 0;
	c->send_last = PS_LAST_ON_SUB;
	c->headline = 1;
	c->max_payload_size = m->max_item_size;
}

void
ps_config_free(struct ps_config *c)
{
	free(c->title);
	free(c->description);
	free(c->payload_type);
	c->title = c->description = c->payload_type = NULL;
}

static int
dupstr(char **dst, const char *src)
{
	*dst = NULL;
	if (src == NULL)
		return 0;
	return (*dst = strdup(src)) == NULL ? -1 : 0;
}

int
ps_config_copy(struct ps_config *dst, const struct ps_config *src)
{
	*dst = *src;
	if (dupstr(&dst->title, src->title) < 0 ||
	    dupstr(&dst->description, src->description) < 0 ||
	    dupstr(&dst->payload_type, src->payload_type) < 0) {
		ps_config_free(dst);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* Forms.                                                             */

const char *
ps_form_value(xmppd_elem *x, const char *var)
{
	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL; f = xmppd_elem_next_sibling(f))
		if (is(xmppd_elem_name(f), "field") && is(xmppd_elem_attr(f, "var"), var))
			return xmppd_elem_child_text(f, NS_XDATA, "value");
	return NULL;
}

const char *
ps_form_type(xmppd_elem *x)
{
	return ps_form_value(x, "FORM_TYPE");
}

/* XEP-0004 3.3 boolean: "1"/"true", "0"/"false". 1, 0, or -1. */
static int
parse_bool(const char *s)
{
	if (is(s, "1") || is(s, "true"))
		return 1;
	if (is(s, "0") || is(s, "false"))
		return 0;
	return -1;
}

static int
parse_long(const char *s, long *v_r)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return -1;
	v = strtol(s, &end, 10);
	if (*end != '\0' || v < 0)
		return -1;
	*v_r = v;
	return 0;
}

/* The boolean fields and where they go. */
struct bfield {
	const char *var;
	size_t off;
};
static const struct bfield bfields[] = {
	{ "pubsub#persist_items", offsetof(struct ps_config, persist_items) },
	{ "pubsub#deliver_payloads", offsetof(struct ps_config, deliver_payloads) },
	{ "pubsub#deliver_notifications", offsetof(struct ps_config, deliver_notifications) },
	{ "pubsub#notify_config", offsetof(struct ps_config, notify_config) },
	{ "pubsub#notify_delete", offsetof(struct ps_config, notify_delete) },
	{ "pubsub#notify_retract", offsetof(struct ps_config, notify_retract) },
	{ "pubsub#notify_sub", offsetof(struct ps_config, notify_sub) },
};
#define NBFIELDS (sizeof(bfields) / sizeof(bfields[0]))

static int *
bfield(struct ps_config *c, size_t i)
{
	return (int *)((char *)c + bfields[i].off);
}

/* One field into c. 0, 1 (unknown var), -1 (a bad value). */
static int
apply_field(struct ps_mod *m, struct ps_config *c, const char *var, const char *v)
{
	long l;
	int i;

	for (size_t k = 0; k < NBFIELDS; k++)
		if (is(var, bfields[k].var)) {
			if ((i = parse_bool(v)) < 0)
				return -1;
			*bfield(c, k) = i;
			return 0;
		}
	if (is(var, "pubsub#access_model")) {
		if ((i = lookup(access_names, 5, v)) < 0)
			return -1;
		c->access = i;
	} else if (is(var, "pubsub#publish_model")) {
		if ((i = lookup(pub_names, 3, v)) < 0)
			return -1;
		c->publish_model = i;
	} else if (is(var, "pubsub#send_last_published_item")) {
		if ((i = lookup(last_names, 3, v)) < 0)
			return -1;
		c->send_last = i;
	} else if (is(var, "pubsub#notification_type")) {
		if (!is(v, "headline") && !is(v, "normal"))
			return -1;
		c->headline = is(v, "headline");
	} else if (is(var, "pubsub#max_items")) {
		/* XEP-0060 16.4.4: "max" is the largest the service allows. */
		if (is(v, "max"))
			c->max_items = PS_MAX_ITEMS_MAX;
		else if (parse_long(v, &l) < 0 || l > m->max_items_per_node)
			return -1;
		else
			c->max_items = l;
	} else if (is(var, "pubsub#max_payload_size")) {
		if (parse_long(v, &l) < 0 || l > m->max_item_size)
			return -1;
		c->max_payload_size = l;
	} else if (is(var, "pubsub#title") || is(var, "pubsub#description") ||
	    is(var, "pubsub#type")) {
		char **dst = is(var, "pubsub#title") ? &c->title :
		    is(var, "pubsub#description") ? &c->description : &c->payload_type;
		char *s = v != NULL && *v != '\0' ? strdup(v) : NULL;

		if (v != NULL && *v != '\0' && s == NULL)
			return -1;
		if (strlen(v != NULL ? v : "") > 1024) {
			free(s);
			return -1;
		}
		free(*dst);
		*dst = s;
	} else {
		return 1;
	}
	return 0;
}

int
ps_config_apply(struct ps_mod *m, struct ps_config *c, xmppd_elem *x,
    const char **cond_r, const char **why_r)
{
	const char *ft = ps_form_type(x), *t = xmppd_elem_attr(x, "type");

	/* XEP-0060 8.2.5: a cancel keeps the configuration. */
	if (is(t, "cancel"))
		return 0;
	if (!is(t, "submit") || (ft != NULL && !is(ft, NS_PUBSUB "#node_config"))) {
		*cond_r = "bad-request";
		*why_r = "not a pubsub#node_config submission";
		return -1;
	}
	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL;
	    f = xmppd_elem_next_sibling(f)) {
		const char *var = xmppd_elem_attr(f, "var");
		int r;

		if (!is(xmppd_elem_name(f), "field") || var == NULL || is(var, "FORM_TYPE"))
			continue;
		r = apply_field(m, c, var, xmppd_elem_child_text(f, NS_XDATA, "value"));
		if (r < 0) {
			/* XEP-0060 8.2.5.4: not-acceptable for a bad value. */
			*cond_r = "not-acceptable";
			*why_r = var;
			return -1;
		}
		/* Unknown fields are ignored, as XEP-0004 lets a receiver do
		 * (roster_groups_allowed, contact, ... are not kept). */
	}
	return 0;
}

int
ps_config_apply_fields(struct ps_mod *m, struct ps_config *c, xmppd_elem *x)
{
	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL;
	    f = xmppd_elem_next_sibling(f)) {
		const char *var = xmppd_elem_attr(f, "var");

		if (!is(xmppd_elem_name(f), "field") || var == NULL || is(var, "FORM_TYPE"))
			continue;
		if (apply_field(m, c, var, xmppd_elem_child_text(f, NS_XDATA, "value")) != 0)
			return -1;
	}
	return 0;
}

/* Normalised value of one field of c, or NULL when the field is not one
 * we keep. */
static const char *
field_value(const struct ps_config *c, const char *var, char *buf, size_t size)
{
	for (size_t k = 0; k < NBFIELDS; k++)
		if (is(var, bfields[k].var))
			return *bfield((struct ps_config *)c, k) ? "1" : "0";
	if (is(var, "pubsub#access_model"))
		return access_names[c->access];
	if (is(var, "pubsub#publish_model"))
		return pub_names[c->publish_model];
	if (is(var, "pubsub#send_last_published_item"))
		return last_names[c->send_last];
	if (is(var, "pubsub#notification_type"))
		return c->headline ? "headline" : "normal";
	if (is(var, "pubsub#max_items")) {
		if (c->max_items == PS_MAX_ITEMS_MAX)
			return "max";
		snprintf(buf, size, "%ld", c->max_items);
		return buf;
	}
	if (is(var, "pubsub#max_payload_size")) {
		snprintf(buf, size, "%ld", c->max_payload_size);
		return buf;
	}
	if (is(var, "pubsub#title"))
		return c->title != NULL ? c->title : "";
	if (is(var, "pubsub#description"))
		return c->description != NULL ? c->description : "";
	if (is(var, "pubsub#type"))
		return c->payload_type != NULL ? c->payload_type : "";
	return NULL;
}

int
ps_config_preconditions(struct ps_mod *m, const struct ps_config *c, xmppd_elem *x)
{
	const char *ft = ps_form_type(x);
	char buf[32];

	(void)m;
	if (!is(ft, NS_PUBSUB "#publish-options"))
		return -1;
	/* XEP-0060 7.1.5: every field must match the node's configuration;
	 * a field the service does not know is not met either. */
	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL;
	    f = xmppd_elem_next_sibling(f)) {
		const char *var = xmppd_elem_attr(f, "var"), *have, *want;
		int bw, bh;

		if (!is(xmppd_elem_name(f), "field") || var == NULL || is(var, "FORM_TYPE"))
			continue;
		if ((have = field_value(c, var, buf, sizeof(buf))) == NULL)
			return -1;
		want = xmppd_elem_child_text(f, NS_XDATA, "value");
		bw = parse_bool(want);
		bh = parse_bool(have);
		if (bw >= 0 && bh >= 0 && (is(have, "0") || is(have, "1")))
			if (bw == bh)
				continue;
		if (!is(have, want))
			return -1;
	}
	return 0;
}

static void
add_field(xmppd_elem *x, const char *var, const char *type, const char *label,
    const char *value)
{
	xmppd_elem *f = xmppd_elem_add_child(x, NS_XDATA, "field"), *v;

	xmppd_elem_set_attr(f, "var", var);
	if (type != NULL)
		xmppd_elem_set_attr(f, "type", type);
	if (label != NULL)
		xmppd_elem_set_attr(f, "label", label);
	v = xmppd_elem_add_child(f, NS_XDATA, "value");
	xmppd_elem_add_text(v, value, strlen(value));
}

static void
add_list(xmppd_elem *x, const char *var, const char *label, const char *value,
    const char *const *opts, int n)
{
	xmppd_elem *f, *o, *v;

	add_field(x, var, "list-single", label, value);
	/* The field is the last child: find it to add the options. */
	for (f = xmppd_elem_first_child(x); xmppd_elem_next_sibling(f) != NULL;
	    f = xmppd_elem_next_sibling(f))
		;
	for (int i = 0; i < n; i++) {
		o = xmppd_elem_add_child(f, NS_XDATA, "option");
		v = xmppd_elem_add_child(o, NS_XDATA, "value");
		xmppd_elem_add_text(v, opts[i], strlen(opts[i]));
	}
}

void
ps_config_form(const struct ps_config *c, xmppd_elem *parent, const char *form_type,
    const char *ftype)
{
	xmppd_elem *x = xmppd_elem_add_child(parent, NS_XDATA, "x");
	static const char *const notif[] = { "normal", "headline" };
	char buf[32];

	xmppd_elem_set_attr(x, "type", ftype);
	add_field(x, "FORM_TYPE", "hidden", NULL, form_type);
	add_field(x, "pubsub#title", "text-single", "A friendly name for the node",
	    field_value(c, "pubsub#title", buf, sizeof(buf)));
	add_field(x, "pubsub#description", "text-single", "A description of the node",
	    field_value(c, "pubsub#description", buf, sizeof(buf)));
	add_field(x, "pubsub#type", "text-single", "The type of node data",
	    field_value(c, "pubsub#type", buf, sizeof(buf)));
	add_list(x, "pubsub#access_model", "Who may subscribe and retrieve items",
	    access_names[c->access], access_names, 5);
	add_list(x, "pubsub#publish_model", "Who may publish",
	    pub_names[c->publish_model], pub_names, 3);
	for (size_t k = 0; k < NBFIELDS; k++)
		add_field(x, bfields[k].var, "boolean", NULL,
		    *bfield((struct ps_config *)c, k) ? "1" : "0");
	add_field(x, "pubsub#max_items", "text-single", "Max # of items to persist",
	    field_value(c, "pubsub#max_items", buf, sizeof(buf)));
	add_field(x, "pubsub#max_payload_size", "text-single", "Max payload size in bytes",
	    field_value(c, "pubsub#max_payload_size", buf, sizeof(buf)));
	add_list(x, "pubsub#send_last_published_item", "When to send the last published item",
	    last_names[c->send_last], last_names, 3);
	add_list(x, "pubsub#notification_type", "Message type of notifications",
	    c->headline ? "headline" : "normal", notif, 2);
}

void
ps_meta_form(const struct ps_node *n, xmppd_elem *parent)
{
	xmppd_elem *x = xmppd_elem_add_child(parent, NS_XDATA, "x");
	xmppd_elem *f;
	char buf[32];

	xmppd_elem_set_attr(x, "type", "result");
	add_field(x, "FORM_TYPE", "hidden", NULL, NS_PUBSUB "#meta-data");
	add_field(x, "pubsub#title", NULL, NULL, field_value(&n->cfg, "pubsub#title", buf,
	    sizeof(buf)));
	add_field(x, "pubsub#description", NULL, NULL, field_value(&n->cfg,
	    "pubsub#description", buf, sizeof(buf)));
	add_field(x, "pubsub#type", NULL, NULL, field_value(&n->cfg, "pubsub#type", buf,
	    sizeof(buf)));
	add_field(x, "pubsub#access_model", NULL, NULL, access_names[n->cfg.access]);
	add_field(x, "pubsub#publish_model", NULL, NULL, pub_names[n->cfg.publish_model]);
	if (n->creator != NULL && *n->creator != '\0')
		add_field(x, "pubsub#creator", "jid-single", NULL, n->creator);
	/* pubsub#owner: every owner (jid-multi). */
	f = xmppd_elem_add_child(x, NS_XDATA, "field");
	xmppd_elem_set_attr(f, "var", "pubsub#owner");
	xmppd_elem_set_attr(f, "type", "jid-multi");
	for (size_t i = 0; i < n->naffs; i++)
		if (n->affs[i].aff == PS_AFF_OWNER) {
			xmppd_elem *v = xmppd_elem_add_child(f, NS_XDATA, "value");

			xmppd_elem_add_text(v, n->affs[i].jid, strlen(n->affs[i].jid));
		}
	snprintf(buf, sizeof(buf), "%zu", n->nsubs);
	add_field(x, "pubsub#num_subscribers", NULL, NULL, buf);
}

/* ---------------------------------------------------------------- */
/* Subscription options (XEP-0060 6.3, the form of 16.4.2).           */

void
ps_subopts_form(const struct ps_sub *s, xmppd_elem *parent, const char *ftype)
{
	xmppd_elem *x = xmppd_elem_add_child(parent, NS_XDATA, "x");
	static const char *const types[] = { "items" };

	xmppd_elem_set_attr(x, "type", ftype);
	add_field(x, "FORM_TYPE", "hidden", NULL, NS_PUBSUB "#subscribe_options");
	add_field(x, "pubsub#deliver", "boolean", "Enable delivery?",
	    s != NULL && s->no_deliver ? "0" : "1");
	add_field(x, "pubsub#digest", "boolean",
	    "Receive digest notifications (approx. one per day)?", "0");
	add_field(x, "pubsub#include_body", "boolean",
	    "Receive message body in addition to payload?", "0");
	add_list(x, "pubsub#subscription_type", "Subscription type", "items", types, 1);
}

/* pubsub#show-values (list-multi): every value a presence state. */
static int
show_values_ok(xmppd_elem *f)
{
	static const char *const shows[] = { "chat", "online", "away", "xa", "dnd" };

	for (xmppd_elem *v = xmppd_elem_first_child(f); v != NULL; v = xmppd_elem_next_sibling(v))
		if (is(xmppd_elem_name(v), "value") && lookup(shows, 5, xmppd_elem_text(v)) < 0)
			return 0;
	return 1;
}

int
ps_subopts_apply(struct ps_sub *s, xmppd_elem *x)
{
	const char *ft = ps_form_type(x);
	int no_deliver = s->no_deliver;
	long l;

	/* XEP-0004 3.1: a cancel changes nothing; 6.3.6: anything else but
	 * a submission of this form is invalid-options. */
	if (is(xmppd_elem_attr(x, "type"), "cancel"))
		return 0;
	if (!is(xmppd_elem_attr(x, "type"), "submit") ||
	    (ft != NULL && !is(ft, NS_PUBSUB "#subscribe_options")))
		return -1;
	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL;
	    f = xmppd_elem_next_sibling(f)) {
		const char *var = xmppd_elem_attr(f, "var");
		const char *v = xmppd_elem_child_text(f, NS_XDATA, "value");
		int b;

		if (!is(xmppd_elem_name(f), "field") || var == NULL || is(var, "FORM_TYPE"))
			continue;
		if (is(var, "pubsub#deliver")) {
			if ((b = parse_bool(v)) < 0)
				return -1;
			no_deliver = !b;
		} else if (is(var, "pubsub#digest") || is(var, "pubsub#include_body")) {
			/* Neither digests nor bodies are made: only false. */
			if (parse_bool(v) != 0)
				return -1;
		} else if (is(var, "pubsub#digest_frequency")) {
			if (parse_long(v, &l) < 0)
				return -1;
		} else if (is(var, "pubsub#expire")) {
			/* Subscriptions do not expire: no value only. */
			if (v != NULL && *v != '\0')
				return -1;
		} else if (is(var, "pubsub#show-values")) {
			/* Accepted (6.3.7's own example sends it) but not
			 * kept: notifications are not filtered by presence,
			 * and the form offered has no such field. */
			if (!show_values_ok(f))
				return -1;
		} else if (is(var, "pubsub#subscription_type")) {
			/* Leaf nodes only: "nodes" is for collections. */
			if (!is(v, "items"))
				return -1;
		} else if (is(var, "pubsub#subscription_depth")) {
			if (!is(v, "1") && !is(v, "all"))
				return -1;
		}
		/* Other fields are ignored (XEP-0004), as ps_config_apply. */
	}
	s->no_deliver = no_deliver;
	return 0;
}
