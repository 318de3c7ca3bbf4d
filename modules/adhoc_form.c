/*
 * adhoc_form.c - XEP-0004 data forms for mod_adhoc: building the forms a
 * command sends and reading the ones it gets back.
 */
#include <stdlib.h>
#include <string.h>

#include "adhoc.h"

/* Values longer than this are cut (a form field is not a file). */
#define MAX_MULTI 65536

xmppd_elem *
form_new(const char *type, const char *title, const char *form_type)
{
	xmppd_elem *x = xmppd_elem_new(NS_XDATA, "x");

	xmppd_elem_set_attr(x, "type", type);
	if (title != NULL) {
		xmppd_elem *t = xmppd_elem_add_child(x, NS_XDATA, "title");

		xmppd_elem_add_text(t, title, strlen(title));
	}
	/* XEP-0068 2: FORM_TYPE is a hidden field, first. */
	if (form_type != NULL)
		form_field(x, "FORM_TYPE", "hidden", NULL, form_type, 0);
	return x;
}

void
form_field_value(xmppd_elem *field, const char *value)
{
	xmppd_elem *v = xmppd_elem_add_child(field, NS_XDATA, "value");

	xmppd_elem_add_text(v, value, strlen(value));
}

void
form_field_option(xmppd_elem *field, const char *label, const char *value)
{
	xmppd_elem *o = xmppd_elem_add_child(field, NS_XDATA, "option");

	if (label != NULL)
		xmppd_elem_set_attr(o, "label", label);
	form_field_value(o, value);
}

xmppd_elem *
form_field(xmppd_elem *x, const char *var, const char *type, const char *label,
    const char *value, int required)
{
	xmppd_elem *f = xmppd_elem_add_child(x, NS_XDATA, "field");

	xmppd_elem_set_attr(f, "var", var);
	if (type != NULL)
		xmppd_elem_set_attr(f, "type", type);
	if (label != NULL)
		xmppd_elem_set_attr(f, "label", label);
	if (required)
		xmppd_elem_add_child(f, NS_XDATA, "required");
	if (value != NULL)
		form_field_value(f, value);
	return f;
}

int
form_is_submit(const xmppd_elem *x)
{
	const char *t;

	if (x == NULL)
		return 0;
	t = xmppd_elem_attr(x, "type");
	/* XEP-0004 3.1: a submission is type 'submit'. */
	return t != NULL && strcmp(t, "submit") == 0;
}

xmppd_elem *
form_get_field(xmppd_elem *x, const char *var)
{
	if (x == NULL)
		return NULL;
	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL; f = xmppd_elem_next_sibling(f)) {
		const char *v, *ns = xmppd_elem_ns(f);

		if (ns == NULL || strcmp(ns, NS_XDATA) != 0 ||
		    strcmp(xmppd_elem_name(f), "field") != 0)
			continue;
		v = xmppd_elem_attr(f, "var");
		if (v != NULL && strcmp(v, var) == 0)
			return f;
	}
	return NULL;
}

const char *
form_get(xmppd_elem *x, const char *var)
{
	xmppd_elem *f = form_get_field(x, var), *v;

	if (f == NULL || (v = xmppd_elem_child(f, NS_XDATA, "value")) == NULL)
		return NULL;
	return xmppd_elem_text(v);
}

char *
form_get_multi(xmppd_elem *x, const char *var)
{
	xmppd_elem *f = form_get_field(x, var);
	size_t len = 0;
	char *s;

	if (f == NULL)
		return NULL;
	if ((s = calloc(1, 1)) == NULL)
		return NULL;
	for (xmppd_elem *v = xmppd_elem_first_child(f); v != NULL; v = xmppd_elem_next_sibling(v)) {
		const char *t;
		size_t tl;
		char *n;

		if (strcmp(xmppd_elem_name(v), "value") != 0)
			continue;
		t = xmppd_elem_text(v);
		tl = strlen(t);
		if (len + tl + 2 > MAX_MULTI)
			break;
		if ((n = realloc(s, len + tl + 2)) == NULL)
			break;
		s = n;
		/* XEP-0004 3.3: text-multi lines are separate values. */
		if (len > 0)
			s[len++] = '\n';
		memcpy(s + len, t, tl);
		len += tl;
		s[len] = '\0';
	}
	return s;
}
