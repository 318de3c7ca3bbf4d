/*
 * pubsub_store.c - keys and records of mod_pubsub's tables (pubsub.h).
 *
 * Node record: '1', the creator's bare JID, NUL, then
 *   <n xmlns='urn:xmppd:pubsub:1' access=... max=...><a j=JID v=AFF/>...</n>
 * Subscription: '2', state, NUL, subid, NUL, options: one letter per
 *   option that is not the default ("d": pubsub#deliver false). The
 *   version '1' ('1', state, NUL, subid) is read as default options.
 * Item: '1', publisher NUL, id NUL, the <item/> as XML.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pubsub.h"

#define NS_REC "urn:xmppd:pubsub:1"
#define VERSION '1'

int
ps_is_pep(const char *service)
{
	return strchr(service, '@') != NULL;
}

const char *
ps_table(const char *service, const char *table)
{
	if (!ps_is_pep(service))
		return table;
	return strcmp(table, T_NODES) == 0 ? T_PEP_NODES : strcmp(table, T_SUBS) == 0 ?
	    T_PEP_SUBS : T_PEP_ITEMS;
}

/* A PEP key starts with xmppd_store_key(host, user) of the account (user
 * tables); a service's with xmppd_store_key(service). */
static size_t
key3(char *buf, const char *service, const char *a, const char *b)
{
	const char *at = strchr(service, '@');
	char user[PS_KEY_MAX];

	if (at == NULL)
		return xmppd_store_key(buf, PS_KEY_MAX, service, a, b, (const char *)NULL);
	if ((size_t)(at - service) >= sizeof(user))
		return 0;
	memcpy(user, service, (size_t)(at - service));
	user[at - service] = '\0';
	return xmppd_store_key(buf, PS_KEY_MAX, at + 1, user, a, b, (const char *)NULL);
}

size_t
ps_key_service(char *buf, const char *service)
{
	return key3(buf, service, NULL, NULL);
}

size_t
ps_key_node(char *buf, const char *service, const char *node)
{
	return key3(buf, service, node, NULL);
}

size_t
ps_key_sub(char *buf, const char *service, const char *node, const char *jid)
{
	return key3(buf, service, node, jid);
}

size_t
ps_key_item(char *buf, const char *service, const char *node, uint64_t seq)
{
	size_t n = ps_key_node(buf, service, node);

	if (n == 0 || n + 8 > PS_KEY_MAX - 1)
		return 0;
	for (int i = 0; i < 8; i++)
		buf[n + i] = (char)(seq >> (56 - 8 * i));
	return n + 8;
}

uint64_t
ps_key_seq(const void *key, size_t klen)
{
	const unsigned char *p = (const unsigned char *)key + klen - 8;
	uint64_t s = 0;

	for (int i = 0; i < 8; i++)
		s = s << 8 | p[i];
	return s;
}

static void
set_long(xmppd_elem *e, const char *name, long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%ld", v);
	xmppd_elem_set_attr(e, name, buf);
}

static long
get_long(xmppd_elem *e, const char *name, long dflt)
{
	const char *s = xmppd_elem_attr(e, name);

	return s != NULL ? strtol(s, NULL, 10) : dflt;
}

/* Prefixes a serialized element with the version and a string. */
static char *
with_header(const char *head, const char *xml, size_t xlen, size_t *len_r)
{
	size_t hl = strlen(head);
	char *v = malloc(1 + hl + 1 + xlen);

	if (v == NULL)
		return NULL;
	v[0] = VERSION;
	memcpy(v + 1, head, hl + 1);
	memcpy(v + 2 + hl, xml, xlen);
	*len_r = 2 + hl + xlen;
	return v;
}

char *
ps_node_record(const struct ps_node *n, size_t *len_r)
{
	xmppd_elem *e = xmppd_elem_new(NS_REC, "n"), *a;
	const struct ps_config *c = &n->cfg;
	char *xml, *v;
	size_t xlen;

	set_long(e, "access", c->access);
	set_long(e, "pub", c->publish_model);
	set_long(e, "max", c->max_items);
	set_long(e, "persist", c->persist_items);
	set_long(e, "payloads", c->deliver_payloads);
	set_long(e, "notifs", c->deliver_notifications);
	set_long(e, "nconfig", c->notify_config);
	set_long(e, "ndelete", c->notify_delete);
	set_long(e, "nretract", c->notify_retract);
	set_long(e, "nsub", c->notify_sub);
	set_long(e, "last", c->send_last);
	set_long(e, "headline", c->headline);
	set_long(e, "maxsize", c->max_payload_size);
	if (c->title != NULL)
		xmppd_elem_set_attr(e, "title", c->title);
	if (c->description != NULL)
		xmppd_elem_set_attr(e, "desc", c->description);
	if (c->payload_type != NULL)
		xmppd_elem_set_attr(e, "type", c->payload_type);
	for (size_t i = 0; i < n->naffs; i++) {
		a = xmppd_elem_add_child(e, NS_REC, "a");
		xmppd_elem_set_attr(a, "j", n->affs[i].jid);
		set_long(a, "v", n->affs[i].aff);
	}
	xml = xmppd_elem_to_string(e, &xlen);
	xmppd_elem_unref(e);
	if (xml == NULL)
		return NULL;
	v = with_header(n->creator != NULL ? n->creator : "", xml, xlen, len_r);
	free(xml);
	return v;
}

int
ps_node_record_creator(const void *val, size_t vlen, char *buf, size_t size)
{
	const char *p = val;
	size_t hl;

	if (vlen < 2 || p[0] != VERSION || memchr(p + 1, '\0', vlen - 1) == NULL)
		return -1;
	hl = strlen(p + 1);
	if (hl + 1 > size)
		return -1;
	memcpy(buf, p + 1, hl + 1);
	return 0;
}

static int
dup_attr(xmppd_elem *e, const char *name, char **dst)
{
	const char *s = xmppd_elem_attr(e, name);

	*dst = NULL;
	return s != NULL && (*dst = strdup(s)) == NULL ? -1 : 0;
}

char *
ps_node_record_affs(const struct ps_node *n, const struct ps_aff_entry *affs, size_t naffs,
    size_t *len_r)
{
	struct ps_node t = *n;

	t.affs = (struct ps_aff_entry *)affs;
	t.naffs = naffs;
	return ps_node_record(&t, len_r);
}

int
ps_node_parse(struct ps_mod *m, struct ps_node *n, const void *val, size_t vlen)
{
	const char *p = val, *xml;
	struct ps_config *c = &n->cfg;
	xmppd_elem *e, *a;
	size_t hl, na = 0;

	if (vlen < 2 || p[0] != VERSION || memchr(p + 1, '\0', vlen - 1) == NULL)
		return -1;
	hl = strlen(p + 1);
	xml = p + 2 + hl;
	if ((e = xmppd_elem_parse(xml, vlen - 2 - hl)) == NULL)
		return -1;
	if ((n->creator = strdup(p + 1)) == NULL)
		goto err;
	ps_config_default(m, c, n->kind);
	c->access = (int)get_long(e, "access", c->access);
	c->publish_model = (int)get_long(e, "pub", c->publish_model);
	c->max_items = get_long(e, "max", c->max_items);
	c->persist_items = (int)get_long(e, "persist", c->persist_items);
	c->deliver_payloads = (int)get_long(e, "payloads", c->deliver_payloads);
	c->deliver_notifications = (int)get_long(e, "notifs", c->deliver_notifications);
	c->notify_config = (int)get_long(e, "nconfig", c->notify_config);
	c->notify_delete = (int)get_long(e, "ndelete", c->notify_delete);
	c->notify_retract = (int)get_long(e, "nretract", c->notify_retract);
	c->notify_sub = (int)get_long(e, "nsub", c->notify_sub);
	c->send_last = (int)get_long(e, "last", c->send_last);
	c->headline = (int)get_long(e, "headline", c->headline);
	c->max_payload_size = get_long(e, "maxsize", c->max_payload_size);
	if (c->access < 0 || c->access > PS_AUTHORIZE || c->publish_model < 0 ||
	    c->publish_model > PS_PUB_OPEN || c->send_last < 0 ||
	    c->send_last > PS_LAST_ON_SUB_AND_PRESENCE)
		goto err;
	if (dup_attr(e, "title", &c->title) < 0 || dup_attr(e, "desc", &c->description) < 0 ||
	    dup_attr(e, "type", &c->payload_type) < 0)
		goto err;
	for (a = xmppd_elem_first_child(e); a != NULL; a = xmppd_elem_next_sibling(a))
		na++;
	if (na > 0 && (n->affs = calloc(na, sizeof(*n->affs))) == NULL)
		goto err;
	for (a = xmppd_elem_first_child(e); a != NULL; a = xmppd_elem_next_sibling(a)) {
		long v = get_long(a, "v", -1);
		const char *j = xmppd_elem_attr(a, "j");

		if (j == NULL || v < PS_AFF_NONE || v > PS_AFF_OUTCAST)
			continue;
		if ((n->affs[n->naffs].jid = strdup(j)) == NULL)
			goto err;
		n->affs[n->naffs++].aff = (int)v;
	}
	xmppd_elem_unref(e);
	return 0;
err:
	xmppd_elem_unref(e);
	return -1;
}

char *
ps_sub_record(const struct ps_sub *s, size_t *len_r)
{
	size_t il = strlen(s->subid);
	char *v = malloc(3 + il + 1 + 1);

	if (v == NULL)
		return NULL;
	v[0] = '2';
	v[1] = (char)('0' + s->state);
	v[2] = '\0';
	memcpy(v + 3, s->subid, il);
	v[3 + il] = '\0';
	*len_r = 4 + il;
	if (s->no_deliver)
		v[(*len_r)++] = 'd';
	return v;
}

int
ps_sub_parse(struct ps_sub *s, const char *jid, const void *val, size_t vlen)
{
	const char *p = val, *opts = NULL;
	size_t il;

	if (vlen < 3 || (p[0] != VERSION && p[0] != '2') || p[2] != '\0' || p[1] < '0' ||
	    p[1] > '0' + PS_SUB_SUBSCRIBED)
		return -1;
	il = vlen - 3;
	if (p[0] == '2') {
		const char *nul = memchr(p + 3, '\0', vlen - 3);

		if (nul == NULL)
			return -1;
		il = (size_t)(nul - (p + 3));
		opts = nul + 1;
	}
	if (il >= sizeof(s->subid))
		return -1;
	memset(s, 0, sizeof(*s));
	s->state = p[1] - '0';
	memcpy(s->subid, p + 3, il);
	for (; opts != NULL && opts < p + vlen; opts++)
		if (*opts == 'd')
			s->no_deliver = 1;
	return (s->jid = strdup(jid)) == NULL ? -1 : 0;
}

char *
ps_item_record(const char *publisher, const char *id, const char *xml, size_t xlen,
    size_t *len_r)
{
	size_t pl = strlen(publisher), il = strlen(id);
	char *v = malloc(1 + pl + 1 + il + 1 + xlen);

	if (v == NULL)
		return NULL;
	v[0] = VERSION;
	memcpy(v + 1, publisher, pl + 1);
	memcpy(v + 2 + pl, id, il + 1);
	memcpy(v + 3 + pl + il, xml, xlen);
	*len_r = 3 + pl + il + xlen;
	return v;
}

int
ps_item_parse(const void *val, size_t vlen, const char **publisher_r, const char **id_r,
    const char **xml_r, size_t *xlen_r)
{
	const char *p = val, *id, *end = p + vlen;

	if (vlen < 3 || p[0] != VERSION || memchr(p + 1, '\0', vlen - 1) == NULL)
		return -1;
	*publisher_r = p + 1;
	id = p + 2 + strlen(p + 1);
	if (id >= end || memchr(id, '\0', (size_t)(end - id)) == NULL)
		return -1;
	*id_r = id;
	*xml_r = id + strlen(id) + 1;
	*xlen_r = (size_t)(end - *xml_r);
	return 0;
}
