/*
 * stanza.c - stanza kinds, types and error replies.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "xml/xml.h"
#include "xmpp/ns.h"
#include "xmpp/stanza.h"

enum stanza_kind
stanza_kind(const xml_elem *e)
{
	const char *name;

	if (xml_elem_ns(e) != NULL)
		return STANZA_OTHER;
	name = xml_elem_name(e);
	if (strcmp(name, "message") == 0)
		return STANZA_MESSAGE;
	if (strcmp(name, "presence") == 0)
		return STANZA_PRESENCE;
	if (strcmp(name, "iq") == 0)
		return STANZA_IQ;
	return STANZA_OTHER;
}

const char *
stanza_type(const xml_elem *e)
{
	const char *t = xml_attr_get(e, "type");

	if (t != NULL)
		return t;
	switch (stanza_kind(e)) {
	case STANZA_MESSAGE:
		return "normal";           /* RFC 6121 5.2.2 */
	case STANZA_PRESENCE:
		return "available";        /* RFC 6121 4.7.1 */
	default:
		return NULL;
	}
}

/* RFC 6120 8.3.3: the type each defined condition is usually sent with. */
static const struct {
	const char *cond;
	const char *type;
} error_types[] = {
	{ "bad-request", "modify" },
	{ "conflict", "cancel" },
	{ "feature-not-implemented", "cancel" },
	{ "forbidden", "auth" },
	{ "gone", "cancel" },
	{ "internal-server-error", "cancel" },
	{ "item-not-found", "cancel" },
	{ "jid-malformed", "modify" },
	{ "not-acceptable", "modify" },
	{ "not-allowed", "cancel" },
	{ "not-authorized", "auth" },
	{ "policy-violation", "modify" },
	{ "recipient-unavailable", "wait" },
	{ "redirect", "modify" },
	{ "registration-required", "auth" },
	{ "remote-server-not-found", "cancel" },
	{ "remote-server-timeout", "wait" },
	{ "resource-constraint", "wait" },
	{ "service-unavailable", "cancel" },
	{ "subscription-required", "auth" },
	{ "undefined-condition", "cancel" },
	{ "unexpected-request", "wait" },
};

const char *
stanza_error_type(const char *condition)
{
	for (size_t i = 0; i < sizeof(error_types) / sizeof(error_types[0]); i++)
		if (strcmp(error_types[i].cond, condition) == 0)
			return error_types[i].type;
	return "cancel";
}

static void
swap_addresses(xml_elem *copy, const xml_elem *st)
{
	const char *to = xml_attr_get(st, "to");
	const char *from = xml_attr_get(st, "from");

	xml_attr_set(copy, "to", from);
	xml_attr_set(copy, "from", to);
}

xml_elem *
stanza_error_reply(const xml_elem *st, const char *condition, const char *text)
{
	const char *type = xml_attr_get(st, "type");
	xml_elem *r, *err, *c;

	/* RFC 6120 8.3.1: never answer an error with an error; an IQ result
	 * is not answered either. */
	if (type != NULL && (strcmp(type, "error") == 0 ||
	    (stanza_kind(st) == STANZA_IQ && strcmp(type, "result") == 0)))
		return NULL;
	r = xml_elem_copy(st);
	swap_addresses(r, st);
	xml_attr_set(r, "type", "error");
	err = xml_elem_add_child(r, NULL, "error");
	xml_attr_set(err, "type", stanza_error_type(condition));
	(void)xml_elem_add_child(err, NS_STANZAS, condition);
	if (text != NULL) {
		c = xml_elem_add_child(err, NS_STANZAS, "text");
		xml_elem_add_text(c, text, strlen(text));
	}
	return r;
}

xml_elem *
stanza_iq_result(const xml_elem *iq)
{
	xml_elem *r = xml_elem_new(NULL, "iq");
	const char *id = xml_attr_get(iq, "id");

	xml_attr_set(r, "type", "result");
	if (id != NULL)
		xml_attr_set(r, "id", id);
	swap_addresses(r, iq);
	return r;
}

int
stanza_priority(xml_elem *p)
{
	const char *s = xml_child_text(p, NULL, "priority");
	char *end;
	long v;

	if (s == NULL)
		return 0;
	v = strtol(s, &end, 10);
	/* RFC 6121 4.7.2.3: an integer from -128 to +127. */
	if (end == s || v < -128 || v > 127)
		return 0;
	return (int)v;
}
