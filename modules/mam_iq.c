/*
 * mam_iq.c - the IQs of urn:xmpp:mam:2 to an account (mod_mam): who may
 * ask, the preferences (XEP-0441); the query, its form and the metadata
 * are mam_query.c's (shared with mod_muc's room archives).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "mam.h"

#define MAX_PREFS_JIDS 1000

/* ---------------------------------------------------------------- */
/* Preferences (XEP-0441).                                            */

static const char *
mode_name(int def)
{
	return def == MAM_NEVER ? "never" : def == MAM_ROSTER ? "roster" : "always";
}

static xmppd_elem *
prefs_elem(const struct mam_prefs *p)
{
	xmppd_elem *e = xmppd_elem_new(NS_MAM, "prefs"), *l, *j;

	xmppd_elem_set_attr(e, "default", mode_name(p->def));
	for (int list = 0; list < 2; list++) {
		char **jids = list == 0 ? p->always : p->never;
		size_t n = list == 0 ? p->n_always : p->n_never;

		l = xmppd_elem_add_child(e, NS_MAM, list == 0 ? "always" : "never");
		for (size_t i = 0; i < n; i++) {
			j = xmppd_elem_add_child(l, NS_MAM, "jid");
			xmppd_elem_add_text(j, jids[i], strlen(jids[i]));
		}
	}
	return e;
}

static void
prefs_get(xmppd_elem *iq, const xmppd_jid *to)
{
	struct mam_prefs p;

	if (mam_prefs_get(xmppd_jid_bare(to), &p) < 0) {
		xmppd_iq_error(iq, "resource-constraint", NULL);
		return;
	}
	xmppd_iq_reply(iq, prefs_elem(&p));
	mam_prefs_clear(&p);
}

struct prefs_set {
	xmppd_elem *iq;
	char *bare;
	struct mam_prefs p;
};

static void
prefs_stored(int status, void *ud)
{
	struct prefs_set *ps = ud;

	if (status != XMPPD_STORE_OK) {
		xmppd_iq_error(ps->iq, "internal-server-error", NULL);
		mam_prefs_clear(&ps->p);
	} else {
		xmppd_iq_reply(ps->iq, prefs_elem(&ps->p));
		mam_prefs_cache_put(ps->bare, &ps->p);
	}
	xmppd_elem_unref(ps->iq);
	free(ps->bare);
	free(ps);
}

/* The JIDs of <always/> or <never/>, prepared. */
static int
prefs_list(xmppd_elem *l, char ***list, size_t *n, const char **cond_r)
{
	for (xmppd_elem *j = xmppd_elem_first_child(l); j != NULL; j = xmppd_elem_next_sibling(j)) {
		xmppd_jid *jid;
		char **v;

		if (strcmp(xmppd_elem_name(j), "jid") != 0)
			continue;
		if ((jid = xmppd_jid_parse(xmppd_elem_text(j))) == NULL) {
			*cond_r = "jid-malformed";
			return -1;
		}
		if (*n >= MAX_PREFS_JIDS || (v = realloc(*list, (*n + 1) * sizeof(*v))) == NULL) {
			xmppd_jid_free(jid);
			*cond_r = "resource-constraint";
			return -1;
		}
		*list = v;
		v[*n] = strdup(xmppd_jid_resource(jid) != NULL ? xmppd_jid_full(jid) :
		    xmppd_jid_bare(jid));
		xmppd_jid_free(jid);
		if (v[*n] == NULL) {
			*cond_r = "resource-constraint";
			return -1;
		}
		(*n)++;
	}
	return 0;
}

static void
prefs_set(xmppd_elem *iq, xmppd_elem *payload, const xmppd_jid *to)
{
	const char *def = xmppd_elem_attr(payload, "default"), *cond = "bad-request";
	struct prefs_set *ps = calloc(1, sizeof(*ps));
	struct mam_prefs old;
	char key[MAM_KEY_MAX];
	unsigned char *val = NULL;
	xmppd_batch *b = NULL;
	size_t klen, vlen;

	if (ps == NULL || (ps->bare = strdup(xmppd_jid_bare(to))) == NULL) {
		cond = "resource-constraint";
		goto err;
	}
	/* XEP-0441 2.2: default is required. */
	if (def == NULL)
		goto err;
	else if (strcmp(def, "always") == 0)
		ps->p.def = MAM_ALWAYS;
	else if (strcmp(def, "never") == 0)
		ps->p.def = MAM_NEVER;
	else if (strcmp(def, "roster") == 0)
		ps->p.def = MAM_ROSTER;
	else
		goto err;
	for (xmppd_elem *l = xmppd_elem_first_child(payload); l != NULL;
	    l = xmppd_elem_next_sibling(l)) {
		if (strcmp(xmppd_elem_name(l), "always") == 0) {
			if (prefs_list(l, &ps->p.always, &ps->p.n_always, &cond) < 0)
				goto err;
		} else if (strcmp(xmppd_elem_name(l), "never") == 0) {
			if (prefs_list(l, &ps->p.never, &ps->p.n_never, &cond) < 0)
				goto err;
		}
	}
	/* The retention set by xmppctl stays. */
	if (mam_prefs_get(ps->bare, &old) < 0) {
		cond = "resource-constraint";
		goto err;
	}
	ps->p.expiry = old.expiry;
	mam_prefs_clear(&old);
	if ((klen = mam_user_prefix(key, xmppd_jid_domain(to), xmppd_jid_node(to))) == 0 ||
	    (val = mam_prefs_encode(&ps->p, &vlen)) == NULL ||
	    (b = xmppd_batch_new(mam_ctx)) == NULL) {
		cond = "resource-constraint";
		goto err;
	}
	(void)xmppd_batch_put(b, MAM_TABLE_PREFS, key, klen, val, vlen);
	free(val);
	ps->iq = xmppd_elem_ref(iq);
	if (xmppd_batch_submit(b, prefs_stored, ps) < 0) {
		xmppd_elem_unref(ps->iq);
		b = NULL;
		cond = "internal-server-error";
		goto err;
	}
	return;
err:
	xmppd_batch_free(b);
	xmppd_iq_error(iq, cond, NULL);
	if (ps != NULL) {
		mam_prefs_clear(&ps->p);
		free(ps->bare);
		free(ps);
	}
}

/* ---------------------------------------------------------------- */

/* The payload of an IQ (its one child element). */
static xmppd_elem *
payload_of(xmppd_elem *iq)
{
	return xmppd_elem_first_child(iq);
}

enum xmppd_result
mam_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_elem *p = payload_of(iq);
	const char *type = xmppd_elem_attr(iq, "type"), *name;
	int set = type != NULL && strcmp(type, "set") == 0;

	if (p == NULL)
		return XMPPD_CONTINUE;
	name = xmppd_elem_name(p);
	/* XEP-0313 10.1: a user's archive is the user's alone. */
	if (from == NULL || xmppd_jid_node(from) == NULL || xmppd_jid_node(to) == NULL ||
	    strcmp(xmppd_jid_bare(from), xmppd_jid_bare(to)) != 0) {
		xmppd_iq_error(iq, "forbidden", NULL);
		return XMPPD_STOP;
	}
	if (strcmp(name, "query") == 0) {
		if (set)
			mam_query_set(iq, p, from, to, 0);
		else
			mam_form_get(iq);
	} else if (strcmp(name, "metadata") == 0 && !set)
		mam_metadata_get(iq, to);
	else if (strcmp(name, "prefs") == 0) {
		if (set)
			prefs_set(iq, p, to);
		else
			prefs_get(iq, to);
	} else
		xmppd_iq_error(iq, "feature-not-implemented", NULL);
	return XMPPD_STOP;
}
