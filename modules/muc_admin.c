/*
 * muc_admin.c - IQs to a room (XEP-0045 6, 8, 9, 10): disco#info with
 * the muc#roominfo form, the owner's configuration form (muc#owner,
 * 10.1-10.2), destroy (10.9), roles and affiliations with their lists
 * (muc#admin, 8.2-8.5, 9.1-9.8, 10.3-10.7). On the room's worker.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"

/* ---------------------------------------------------------------- */
/* Forms.                                                             */

static xmppd_elem *
field(xmppd_elem *x, const char *var, const char *type, const char *label, const char *value)
{
	xmppd_elem *f = xmppd_elem_add_child(x, NS_XDATA, "field");

	xmppd_elem_set_attr(f, "var", var);
	if (type != NULL)
		xmppd_elem_set_attr(f, "type", type);
	if (label != NULL)
		xmppd_elem_set_attr(f, "label", label);
	if (value != NULL)
		xmppd_elem_add_text(xmppd_elem_add_child(f, NS_XDATA, "value"), value,
		    strlen(value));
	return f;
}

static void
option(xmppd_elem *f, const char *label, const char *value)
{
	xmppd_elem *o = xmppd_elem_add_child(f, NS_XDATA, "option");

	xmppd_elem_set_attr(o, "label", label);
	xmppd_elem_add_text(xmppd_elem_add_child(o, NS_XDATA, "value"), value, strlen(value));
}

static const char *
b(int v)
{
	return v ? "1" : "0";
}

static const char *const pm_names[] = { "anyone", "participants", "moderators", "none" };

static void
jid_list(struct muc_room *r, xmppd_elem *f, int aff)
{
	for (size_t i = 0; i < r->naffs; i++)
		if (r->affs[i].aff == aff)
			xmppd_elem_add_text(xmppd_elem_add_child(f, NS_XDATA, "value"),
			    r->affs[i].jid, strlen(r->affs[i].jid));
}

/* XEP-0045 10.2: the muc#roomconfig form (15.5.3 field registry). */
static xmppd_elem *
config_form(struct muc_room *r)
{
	xmppd_elem *q = xmppd_elem_new(NS_MUC_OWNER, "query"), *x, *f;
	char buf[32];

	x = xmppd_elem_add_child(q, NS_XDATA, "x");
	xmppd_elem_set_attr(x, "type", "form");
	xmppd_elem_add_text(xmppd_elem_add_child(x, NS_XDATA, "title"), "Room configuration", 18);
	field(x, "FORM_TYPE", "hidden", NULL, NS_MUC_ROOMCONFIG);
	field(x, "muc#roomconfig_roomname", "text-single", "Name", r->cfg.name);
	field(x, "muc#roomconfig_roomdesc", "text-single", "Description", r->cfg.desc);
	field(x, "muc#roomconfig_persistentroom", "boolean", "Persistent", b(r->cfg.persistent));
	field(x, "muc#roomconfig_publicroom", "boolean", "Public", b(r->cfg.public));
	field(x, "muc#roomconfig_membersonly", "boolean", "Members only",
	    b(r->cfg.membersonly));
	field(x, "muc#roomconfig_moderatedroom", "boolean", "Moderated", b(r->cfg.moderated));
	field(x, "muc#roomconfig_passwordprotectedroom", "boolean", "Password protected",
	    b(r->cfg.password_protected));
	field(x, "muc#roomconfig_roomsecret", "text-private", "Password", r->cfg.secret);
	f = field(x, "muc#roomconfig_whois", "list-single", "Who sees real JIDs",
	    r->cfg.whois_anyone ? "anyone" : "moderators");
	option(f, "Moderators", "moderators");
	option(f, "Anyone", "anyone");
	snprintf(buf, sizeof(buf), "%ld", r->cfg.maxusers);
	field(x, "muc#roomconfig_maxusers", "text-single", "Maximum occupants", buf);
	field(x, "muc#roomconfig_changesubject", "boolean", "Occupants may change the subject",
	    b(r->cfg.changesubject));
	field(x, "muc#roomconfig_allowinvites", "boolean", "Occupants may invite",
	    b(r->cfg.allowinvites));
	f = field(x, "muc#roomconfig_allowpm", "list-single", "Who may send private messages",
	    pm_names[r->cfg.allowpm]);
	for (int i = 0; i < 4; i++)
		option(f, pm_names[i], pm_names[i]);
	field(x, "muc#roomconfig_enablelogging", "boolean", "Logged", b(r->cfg.logging));
	field(x, "muc#roomconfig_enablearchiving", "boolean", "Archived (XEP-0313)",
	    b(r->cfg.archiving));
	f = field(x, "muc#roomconfig_roomadmins", "jid-multi", "Admins", NULL);
	jid_list(r, f, MUC_AFF_ADMIN);
	f = field(x, "muc#roomconfig_roomowners", "jid-multi", "Owners", NULL);
	jid_list(r, f, MUC_AFF_OWNER);
	return q;
}

static int
parse_bool(const char *v, int *out)
{
	if (muc_is(v, "1") || muc_is(v, "true"))
		*out = 1;
	else if (muc_is(v, "0") || muc_is(v, "false"))
		*out = 0;
	else
		return -1;
	return 0;
}

static const char *
fvalue(xmppd_elem *f)
{
	xmppd_elem *v = xmppd_elem_child(f, NS_XDATA, "value");

	return v != NULL ? xmppd_elem_text(v) : "";
}

/*
 * XEP-0045 10.2 (and 15.5.3): muc#roomconfig_roomowners and
 * muc#roomconfig_roomadmins are the full lists: a submitted list makes
 * exactly those JIDs owners (admins), and those of the room's owners
 * (admins) it leaves out lose the affiliation (10.4, 10.7: to none, or
 * to admin when listed as admins). The bare JIDs of both lists are
 * gathered first (bounded), so that nothing changes when one does not
 * parse or when the room would be left without an owner (10.4:
 * conflict).
 */
#define MAX_FORM_JIDS 256

struct aff_lists {
	int has_owners, has_admins;
	char *owners[MAX_FORM_JIDS], *admins[MAX_FORM_JIDS];
	size_t nowners, nadmins;
};

static void
aff_lists_free(struct aff_lists *l)
{
	for (size_t i = 0; i < l->nowners; i++)
		free(l->owners[i]);
	for (size_t i = 0; i < l->nadmins; i++)
		free(l->admins[i]);
	memset(l, 0, sizeof(*l));
}

static int
in_list(char *const *v, size_t n, const char *bare)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], bare) == 0)
			return 1;
	return 0;
}

/* A list field's bare JIDs (duplicates once): -1 for one that does not
 * parse, or too many. */
static int
gather_jids(xmppd_elem *f, char **v, size_t *n)
{
	for (xmppd_elem *e = xmppd_elem_first_child(f); e != NULL; e = xmppd_elem_next_sibling(e)) {
		xmppd_jid *j;
		int rc = 0;

		if (!muc_is(xmppd_elem_name(e), "value"))
			continue;
		if ((j = xmppd_jid_parse(xmppd_elem_text(e))) == NULL)
			return -1;
		if (!in_list(v, *n, xmppd_jid_bare(j))) {
			if (*n == MAX_FORM_JIDS || (v[*n] = strdup(xmppd_jid_bare(j))) == NULL)
				rc = -1;
			else
				(*n)++;
		}
		xmppd_jid_free(j);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* The affiliation bare gets from the lists (old: its current one). */
static int
listed_aff(const struct aff_lists *l, const char *bare, int old)
{
	if (in_list(l->owners, l->nowners, bare))
		return MUC_AFF_OWNER;
	if (in_list(l->admins, l->nadmins, bare))
		return MUC_AFF_ADMIN;
	if ((old == MUC_AFF_OWNER && l->has_owners) || (old == MUC_AFF_ADMIN && l->has_admins))
		return MUC_AFF_NONE;
	return old;
}

/* The owners the room would have: at least one, or the lists are
 * refused. */
static size_t
owners_after(const struct muc_room *r, const struct aff_lists *l)
{
	size_t n = l->nowners;

	for (size_t i = 0; i < r->naffs; i++)
		if (r->affs[i].aff == MUC_AFF_OWNER && !in_list(l->owners, l->nowners,
		    r->affs[i].jid) && listed_aff(l, r->affs[i].jid, MUC_AFF_OWNER) ==
		    MUC_AFF_OWNER)
			n++;
	return n;
}

/* One changed affiliation, and its occupants' presence as set_aff
 * sends it (10.3-10.7; 9.4: 321 out of a members-only room). */
static void
aff_change(struct muc_room *r, const char *bare, int aff)
{
	struct muc_occ *o, *nx;
	int old = muc_aff_of(r, bare), code = 321;

	if (old == aff || muc_aff_set(r, bare, aff, NULL) < 0)
		return;
	for (o = r->occ_head; o != NULL; o = nx) {
		nx = o->next;
		if (strcmp(o->bare, bare) != 0)
			continue;
		if (r->cfg.membersonly && aff == MUC_AFF_NONE) {
			muc_broadcast_presence(r, o, 1, &code, 1, NULL, NULL);
			muc_occ_remove(r, o);
			continue;
		}
		o->role = muc_default_role(r, aff) > o->role || aff >= MUC_AFF_ADMIN ||
		    old >= MUC_AFF_ADMIN ? muc_default_role(r, aff) : o->role;
		muc_broadcast_presence(r, o, 0, NULL, 0, NULL, NULL);
	}
}

static void
aff_lists_apply(struct muc_room *r, const struct aff_lists *l)
{
	char *drop[MAX_FORM_JIDS * 2];
	size_t ndrop = 0;

	/* Those who leave a list first (collected: aff_change edits the
	 * table), then those listed. */
	for (size_t i = 0; i < r->naffs && ndrop < MAX_FORM_JIDS * 2; i++)
		if ((r->affs[i].aff == MUC_AFF_OWNER || r->affs[i].aff == MUC_AFF_ADMIN) &&
		    listed_aff(l, r->affs[i].jid, r->affs[i].aff) == MUC_AFF_NONE &&
		    (drop[ndrop] = strdup(r->affs[i].jid)) != NULL)
			ndrop++;
	for (size_t i = 0; i < ndrop; i++) {
		aff_change(r, drop[i], MUC_AFF_NONE);
		free(drop[i]);
	}
	for (size_t i = 0; i < l->nowners; i++)
		aff_change(r, l->owners[i], MUC_AFF_OWNER);
	for (size_t i = 0; i < l->nadmins; i++)
		if (!in_list(l->owners, l->nowners, l->admins[i]))
			aff_change(r, l->admins[i], MUC_AFF_ADMIN);
}

#define MAX_CONFIG_TEXT 1024

static int
set_str(char **dst, const char *v)
{
	char *c;

	/* Kept in the room's record: bounded. */
	if (strlen(v) > MAX_CONFIG_TEXT)
		return -1;
	c = strdup(v);

	if (c == NULL)
		return -1;
	free(*dst);
	*dst = c;
	return 0;
}

/*
 * 10.2: applies a submitted form to a copy of the configuration first,
 * so that a bad value changes nothing. 0, or -1 with bad-request.
 */
static int
config_apply(struct muc_room *r, xmppd_elem *x, int *members_only_now)
{
	struct muc_config c = r->cfg;
	struct aff_lists lists;
	int ok = 0, bad = 0, rc = -1;
	char *end;

	c.name = c.desc = c.secret = NULL;
	memset(&lists, 0, sizeof(lists));
	if (set_str(&c.name, r->cfg.name) < 0 || set_str(&c.desc, r->cfg.desc) < 0 ||
	    set_str(&c.secret, r->cfg.secret) < 0)
		goto bad;
	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL; f = xmppd_elem_next_sibling(f)) {
		const char *var = xmppd_elem_attr(f, "var"), *v;

		if (!muc_is(xmppd_elem_name(f), "field") || var == NULL)
			continue;
		v = fvalue(f);
		if (muc_is(var, "FORM_TYPE"))
			ok = ok || muc_is(v, NS_MUC_ROOMCONFIG);
		else if (muc_is(var, "muc#roomconfig_roomname"))
			ok = set_str(&c.name, v) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_roomdesc"))
			ok = set_str(&c.desc, v) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_roomsecret"))
			ok = set_str(&c.secret, v) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_persistentroom"))
			ok = parse_bool(v, &c.persistent) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_publicroom"))
			ok = parse_bool(v, &c.public) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_membersonly"))
			ok = parse_bool(v, &c.membersonly) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_moderatedroom"))
			ok = parse_bool(v, &c.moderated) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_passwordprotectedroom"))
			ok = parse_bool(v, &c.password_protected) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_changesubject"))
			ok = parse_bool(v, &c.changesubject) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_allowinvites"))
			ok = parse_bool(v, &c.allowinvites) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_enablelogging"))
			ok = parse_bool(v, &c.logging) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_enablearchiving"))
			ok = parse_bool(v, &c.archiving) == 0 ? ok : (bad = 1, ok);
		else if (muc_is(var, "muc#roomconfig_whois")) {
			if (muc_is(v, "anyone"))
				c.whois_anyone = 1;
			else if (muc_is(v, "moderators"))
				c.whois_anyone = 0;
			else
				bad = 1;
		} else if (muc_is(var, "muc#roomconfig_allowpm")) {
			int i;

			for (i = 0; i < 4 && !muc_is(v, pm_names[i]); i++)
				;
			if (i == 4)
				bad = 1;
			else
				c.allowpm = i;
		} else if (muc_is(var, "muc#roomconfig_maxusers")) {
			long n = strtol(v, &end, 10);

			/* The service's cap bounds it (XEP-0045 leaves it
			 * to the service). */
			if (end == v || *end != '\0' || n < 1 || n > muc_module.max_users)
				bad = 1;
			else
				c.maxusers = n;
		}
	}
	if (!ok || bad)
		goto bad;
	/* The owners and admins lists, checked before anything changes. */
	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL; f = xmppd_elem_next_sibling(f)) {
		if (!muc_is(xmppd_elem_name(f), "field"))
			continue;
		if (muc_is(xmppd_elem_attr(f, "var"), "muc#roomconfig_roomowners")) {
			lists.has_owners = 1;
			if (gather_jids(f, lists.owners, &lists.nowners) < 0)
				goto bad;
		} else if (muc_is(xmppd_elem_attr(f, "var"), "muc#roomconfig_roomadmins")) {
			lists.has_admins = 1;
			if (gather_jids(f, lists.admins, &lists.nadmins) < 0)
				goto bad;
		}
	}
	/* 10.4: never without an owner (as set_aff). */
	if (owners_after(r, &lists) == 0) {
		rc = -2;
		goto bad;
	}
	*members_only_now = c.membersonly && !r->cfg.membersonly;
	free(r->cfg.name);
	free(r->cfg.desc);
	free(r->cfg.secret);
	r->cfg = c;
	aff_lists_apply(r, &lists);
	aff_lists_free(&lists);
	return 0;
bad:
	aff_lists_free(&lists);
	free(c.name);
	free(c.desc);
	free(c.secret);
	return rc;
}

/* ---------------------------------------------------------------- */
/* Disco (XEP-0045 6.4).                                              */

static void
feature(xmppd_elem *q, const char *var)
{
	xmppd_elem_set_attr(xmppd_elem_add_child(q, NS_DISCO_INFO, "feature"), "var", var);
}

void
muc_room_disco_info(struct muc_room *r, xmppd_elem *iq)
{
	xmppd_elem *q = xmppd_elem_new(NS_DISCO_INFO, "query"), *e, *x;
	char buf[32];

	e = xmppd_elem_add_child(q, NS_DISCO_INFO, "identity");
	xmppd_elem_set_attr(e, "category", "conference");
	xmppd_elem_set_attr(e, "type", "text");
	xmppd_elem_set_attr(e, "name", *r->cfg.name ? r->cfg.name : r->jid);
	feature(q, NS_MUC);
	feature(q, "jabber:iq:register");
	feature(q, NS_MUC "#self-ping-optimization");    /* XEP-0410 4 */
	feature(q, NS_OCCUPANT_ID);                      /* XEP-0421 2 */
	feature(q, NS_SID);                              /* XEP-0359 6 */
	/* Missed mentions are kept in members-only rooms (muc_mention.c). */
	if (r->cfg.membersonly)
		feature(q, NS_MUC_MENTIONS);
	muc_mam_features(r, q);
	feature(q, r->cfg.public ? "muc_public" : "muc_hidden");
	feature(q, r->cfg.persistent ? "muc_persistent" : "muc_temporary");
	feature(q, r->cfg.membersonly ? "muc_membersonly" : "muc_open");
	feature(q, r->cfg.moderated ? "muc_moderated" : "muc_unmoderated");
	feature(q, r->cfg.password_protected ? "muc_passwordprotected" : "muc_unsecured");
	feature(q, r->cfg.whois_anyone ? "muc_nonanonymous" : "muc_semianonymous");
	x = xmppd_elem_add_child(q, NS_XDATA, "x");
	xmppd_elem_set_attr(x, "type", "result");
	field(x, "FORM_TYPE", "hidden", NULL, NS_MUC_ROOMINFO);
	field(x, "muc#roominfo_description", NULL, "Description", r->cfg.desc);
	snprintf(buf, sizeof(buf), "%zu", r->nocc);
	field(x, "muc#roominfo_occupants", NULL, "Occupants", buf);
	field(x, "muc#roomconfig_changesubject", NULL, "Occupants may change the subject",
	    b(r->cfg.changesubject));
	if (r->subject != NULL)
		field(x, "muc#roominfo_subject", NULL, "Subject",
		    xmppd_elem_child_text(r->subject, NULL, "subject"));
	xmppd_iq_reply(iq, q);
}

/* ---------------------------------------------------------------- */
/* Owner (XEP-0045 10).                                               */

static void
config_changed(struct muc_room *r, int members_only_now, int was_whois_anyone,
    int was_logging)
{
	xmppd_elem *m = xmppd_elem_new(NULL, "message"), *x;
	char code[8];

	/* 10.2.1: status 104 tells occupants the configuration changed. */
	xmppd_elem_set_attr(m, "from", r->jid);
	xmppd_elem_set_attr(m, "type", "groupchat");
	x = xmppd_elem_add_child(m, NS_MUC_USER, "x");
	snprintf(code, sizeof(code), "%d", 104);
	xmppd_elem_set_attr(xmppd_elem_add_child(x, NS_MUC_USER, "status"), "code", code);
	/* 10.2.1: and what changed about privacy: 170/171 logging on/off,
	 * 172/173 now non-anonymous/semi-anonymous. */
	if (r->cfg.logging != was_logging) {
		snprintf(code, sizeof(code), "%d", r->cfg.logging ? 170 : 171);
		xmppd_elem_set_attr(xmppd_elem_add_child(x, NS_MUC_USER, "status"), "code", code);
	}
	if (r->cfg.whois_anyone != was_whois_anyone) {
		snprintf(code, sizeof(code), "%d", r->cfg.whois_anyone ? 172 : 173);
		xmppd_elem_set_attr(xmppd_elem_add_child(x, NS_MUC_USER, "status"), "code", code);
	}
	muc_broadcast(r, m);
	xmppd_elem_unref(m);
	/* 9.? / 10.2: a room made members-only removes non-members (322). */
	if (members_only_now) {
		struct muc_occ *o, *nx;
		int c = 322;

		for (o = r->occ_head; o != NULL; o = nx) {
			nx = o->next;
			if (o->aff < MUC_AFF_MEMBER) {
				muc_broadcast_presence(r, o, 1, &c, 1, NULL, NULL);
				muc_occ_remove(r, o);
			}
		}
	}
}

static void
owner_iq(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *from, int set)
{
	xmppd_elem *x, *d;
	int members_only_now = 0, was_locked = r->locked, was_persistent = r->cfg.persistent;
	int was_whois = r->cfg.whois_anyone, was_logging = r->cfg.logging, rc;

	if (muc_aff_of(r, xmppd_jid_bare(from)) != MUC_AFF_OWNER) {
		xmppd_iq_error(iq, "forbidden", "only owners configure the room");
		return;
	}
	if (!set) {
		xmppd_iq_reply(iq, config_form(r));
		return;
	}
	if ((d = xmppd_elem_child(q, NS_MUC_OWNER, "destroy")) != NULL) {
		const char *alt = xmppd_elem_attr(d, "jid");

		/* 10.9 */
		muc_room_destroy(r, alt, xmppd_elem_child_text(d, NS_MUC_OWNER, "reason"));
		xmppd_iq_reply(iq, NULL);
		return;
	}
	if ((x = xmppd_elem_child(q, NS_XDATA, "x")) == NULL) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return;
	}
	if (muc_is(xmppd_elem_attr(x, "type"), "cancel")) {
		/* 10.1.3: cancelling a new room's configuration destroys it. */
		xmppd_iq_reply(iq, NULL);
		if (r->locked)
			muc_room_destroy(r, NULL, NULL);
		return;
	}
	if (!muc_is(xmppd_elem_attr(x, "type"), "submit")) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return;
	}
	/* 10.1.2: an empty submit makes an instant room. */
	if (xmppd_elem_child(x, NS_XDATA, "field") != NULL &&
	    (rc = config_apply(r, x, &members_only_now)) < 0) {
		if (rc == -2)
			xmppd_iq_error(iq, "conflict", "the room needs an owner");
		else
			xmppd_iq_error(iq, "bad-request", "a field has a bad value");
		return;
	}
	r->locked = 0;
	if (r->cfg.persistent || was_persistent)
		muc_room_save(r);
	xmppd_iq_reply(iq, NULL);
	if (!was_locked)
		config_changed(r, members_only_now, was_whois, was_logging);
	muc_room_gc(r);
}

/* ---------------------------------------------------------------- */
/* Admin (XEP-0045 8, 9, 10.3-10.7).                                  */

/* The lists of 8.5 (voice), 9.5 (members), 9.8 (moderators), 10.5
 * (owners), 10.8 (admins), 9.3 (outcasts). */
static void
admin_list(struct muc_room *r, xmppd_elem *iq, xmppd_elem *item, int actor_aff,
    int actor_role)
{
	const char *as = xmppd_elem_attr(item, "affiliation"), *rs = xmppd_elem_attr(item, "role");
	xmppd_elem *res = xmppd_elem_new(NS_MUC_ADMIN, "query"), *e;

	if (as != NULL) {
		int aff = muc_aff_parse(as);

		if (aff == -2 || aff == MUC_AFF_NONE) {
			xmppd_elem_unref(res);
			xmppd_iq_error(iq, "bad-request", NULL);
			return;
		}
		/* 7.11: an occupant may get the member list "if allowed in
		 * accordance with room configuration": here, an occupant
		 * with voice in a non-anonymous room, where the list shows
		 * no real JID the room hides (Prosody's default roles for
		 * muc#roomconfig_getmemberlist are the same two). Other
		 * lists, and the member list elsewhere, are for admins. */
		if (actor_aff < MUC_AFF_ADMIN && !(aff == MUC_AFF_MEMBER &&
		    r->cfg.whois_anyone && actor_role >= MUC_ROLE_PARTICIPANT)) {
			xmppd_elem_unref(res);
			xmppd_iq_error(iq, "forbidden", NULL);
			return;
		}
		for (size_t i = 0; i < r->naffs; i++)
			if (r->affs[i].aff == aff) {
				e = xmppd_elem_add_child(res, NS_MUC_ADMIN, "item");
				xmppd_elem_set_attr(e, "affiliation", as);
				xmppd_elem_set_attr(e, "jid", r->affs[i].jid);
				if (r->affs[i].reason != NULL)
					xmppd_elem_add_text(xmppd_elem_add_child(e, NS_MUC_ADMIN,
					    "reason"), r->affs[i].reason, strlen(r->affs[i].reason));
			}
	} else {
		int role = muc_role_parse(rs);

		if (role < MUC_ROLE_VISITOR) {
			xmppd_elem_unref(res);
			xmppd_iq_error(iq, "bad-request", NULL);
			return;
		}
		if (actor_role < MUC_ROLE_MODERATOR) {
			xmppd_elem_unref(res);
			xmppd_iq_error(iq, "forbidden", NULL);
			return;
		}
		for (struct muc_occ *o = r->occ_head; o != NULL; o = o->next)
			if (o->role == role) {
				e = xmppd_elem_add_child(res, NS_MUC_ADMIN, "item");
				xmppd_elem_set_attr(e, "affiliation", muc_aff_name(o->aff));
				xmppd_elem_set_attr(e, "role", rs);
				xmppd_elem_set_attr(e, "nick", o->nick);
				if (o->sess != NULL)
					xmppd_elem_set_attr(e, "jid", xmppd_jid_full(o->sess->full));
			}
	}
	xmppd_iq_reply(iq, res);
}

/* A role change by a moderator (8.2 kick, 8.3/8.4 voice, 9.6/9.7
 * moderator). NULL, or the error condition. */
static const char *
set_role(struct muc_room *r, struct muc_occ *actor, int actor_aff, xmppd_elem *item)
{
	const char *nick = xmppd_elem_attr(item, "nick");
	const char *reason = xmppd_elem_child_text(item, NS_MUC_ADMIN, "reason");
	int role = muc_role_parse(xmppd_elem_attr(item, "role")), taff;
	struct muc_occ *o;

	if (nick == NULL || role < 0)
		return "bad-request";
	if (actor == NULL || actor->role != MUC_ROLE_MODERATOR)
		return "forbidden";
	if ((o = muc_occ_find(r, nick)) == NULL)
		return "item-not-found";
	taff = muc_aff_of(r, o->bare);
	/* 8.2: nobody kicks or silences an admin or owner; 9.7: only
	 * admins change who moderates. */
	if ((role < MUC_ROLE_PARTICIPANT || role < o->role) && taff >= MUC_AFF_ADMIN)
		return "not-allowed";
	if ((role == MUC_ROLE_MODERATOR || o->role == MUC_ROLE_MODERATOR) &&
	    actor_aff < MUC_AFF_ADMIN)
		return "not-allowed";
	if (role == MUC_ROLE_NONE) {
		int code = 307;

		muc_broadcast_presence(r, o, 1, &code, 1, reason, actor->nick);
		muc_occ_remove(r, o);
		return NULL;
	}
	o->role = role;
	muc_broadcast_presence(r, o, 0, NULL, 0, reason, actor->nick);
	return NULL;
}

/* An affiliation change (9.1 ban, 9.3 member, 10.3 owner, 10.6 admin). */
static const char *
set_aff(struct muc_room *r, struct muc_occ *actor, int actor_aff, xmppd_elem *item)
{
	const char *js = xmppd_elem_attr(item, "jid"), *nick = xmppd_elem_attr(item, "nick");
	const char *reason = xmppd_elem_child_text(item, NS_MUC_ADMIN, "reason");
	int aff = muc_aff_parse(xmppd_elem_attr(item, "affiliation")), old, owners = 0;
	struct muc_occ *o, *nx;
	xmppd_jid *j;
	char *bare, *actor_nick;

	if (aff == -2)
		return "bad-request";
	if (js == NULL && nick != NULL && (o = muc_occ_find(r, nick)) != NULL)
		js = o->bare;
	if (js == NULL || (j = xmppd_jid_parse(js)) == NULL)
		return "bad-request";
	bare = strdup(xmppd_jid_bare(j));
	xmppd_jid_free(j);
	if (bare == NULL)
		return "internal-server-error";
	old = muc_aff_of(r, bare);
	/* 9.1, 10.3, 10.6: admins manage members and outcasts below
	 * them; owners everything. */
	if (actor_aff < MUC_AFF_ADMIN || (actor_aff == MUC_AFF_ADMIN &&
	    (aff >= MUC_AFF_ADMIN || old >= MUC_AFF_ADMIN))) {
		free(bare);
		return actor_aff < MUC_AFF_ADMIN ? "forbidden" : "not-allowed";
	}
	for (size_t i = 0; i < r->naffs; i++)
		owners += r->affs[i].aff == MUC_AFF_OWNER;
	/* 10.4: the last owner stays. */
	if (old == MUC_AFF_OWNER && aff != MUC_AFF_OWNER && owners <= 1) {
		free(bare);
		return "conflict";
	}
	if (muc_aff_set(r, bare, aff, aff == MUC_AFF_OUTCAST ? reason : NULL) < 0) {
		free(bare);
		return "internal-server-error";
	}
	/* The actor may be among those it bans (an owner, one of several):
	 * its nick is copied before any occupant goes. */
	actor_nick = actor != NULL ? strdup(actor->nick) : NULL;
	for (o = r->occ_head; o != NULL; o = nx) {
		nx = o->next;
		if (strcmp(o->bare, bare) != 0)
			continue;
		if (aff == MUC_AFF_OUTCAST || (r->cfg.membersonly && aff == MUC_AFF_NONE)) {
			/* 9.1: 301 banned; 9.4: 321 removed from a
			 * members-only room. */
			int code = aff == MUC_AFF_OUTCAST ? 301 : 321;

			muc_broadcast_presence(r, o, 1, &code, 1, reason, actor_nick);
			muc_occ_remove(r, o);
		} else {
			o->role = muc_default_role(r, aff) > o->role || aff >= MUC_AFF_ADMIN ||
			    old >= MUC_AFF_ADMIN ? muc_default_role(r, aff) : o->role;
			muc_broadcast_presence(r, o, 0, NULL, 0, reason, NULL);
		}
	}
	free(actor_nick);
	free(bare);
	return NULL;
}

static void
admin_iq(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *from, int set)
{
	struct muc_sess *s = muc_sess_find(r, xmppd_jid_full(from));
	struct muc_occ *actor = s != NULL ? s->occ : NULL;
	int actor_aff = muc_aff_of(r, xmppd_jid_bare(from));
	xmppd_elem *item = xmppd_elem_child(q, NS_MUC_ADMIN, "item");
	const char *err = NULL;

	if (item == NULL) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return;
	}
	if (!set) {
		admin_list(r, iq, item, actor_aff, actor != NULL ? actor->role : MUC_ROLE_NONE);
		return;
	}
	/* Items apply in order; the first that fails stops (earlier ones
	 * stay: the XEP does not ask for atomic lists). */
	for (; item != NULL && err == NULL; item = xmppd_elem_next_sibling(item)) {
		if (!muc_is(xmppd_elem_name(item), "item"))
			continue;
		/* An item may have removed the actor (kicked itself). */
		s = muc_sess_find(r, xmppd_jid_full(from));
		actor = s != NULL ? s->occ : NULL;
		if (xmppd_elem_attr(item, "affiliation") != NULL)
			err = set_aff(r, actor, actor_aff, item);
		else if (xmppd_elem_attr(item, "role") != NULL)
			err = set_role(r, actor, actor_aff, item);
		else
			err = "bad-request";
	}
	if (err != NULL)
		xmppd_iq_error(iq, err, NULL);
	else
		xmppd_iq_reply(iq, NULL);
	/* Earlier items may have changed affiliations even on an error. */
	if (r->cfg.persistent)
		muc_room_save(r);
	muc_room_gc(r);
}

/* ---------------------------------------------------------------- */
/* Registration (XEP-0045 7.10) and the reserved nickname (7.12).     */

#define NS_REGISTER "jabber:iq:register"
#define NS_MUC_REGISTER NS_MUC "#register"

static void
register_iq(struct muc_room *r, xmppd_elem *iq, xmppd_elem *q, const xmppd_jid *from,
    int set)
{
	const char *bare = xmppd_jid_bare(from), *nick, *holder;
	int aff = muc_aff_of(r, bare);
	xmppd_elem *res, *x, *f;
	struct muc_occ *occ;

	if (aff == MUC_AFF_OUTCAST) {
		xmppd_iq_error(iq, "forbidden", NULL);
		return;
	}
	/* A members-only room's members are whom its admins chose:
	 * registering (which makes a member, 7.10) would let anyone in.
	 * There only those with an affiliation register (to reserve a
	 * nickname); others get registration-required, as Prosody answers
	 * (the XEP's 9.9 approval by admins is not done). */
	if (r->cfg.membersonly && aff == MUC_AFF_NONE) {
		xmppd_iq_error(iq, "registration-required", "members only: ask an admin");
		return;
	}
	if (!set) {
		res = xmppd_elem_new(NS_REGISTER, "query");
		if ((nick = muc_nick_of(r, bare)) != NULL) {
			/* 7.10: already registered. */
			xmppd_elem_add_child(res, NS_REGISTER, "registered");
			xmppd_elem_add_text(xmppd_elem_add_child(res, NS_REGISTER, "username"), nick,
			    strlen(nick));
		} else {
			xmppd_elem_add_text(xmppd_elem_add_child(res, NS_REGISTER, "instructions"),
			    "Reserve a nickname in this room.", 32);
			x = xmppd_elem_add_child(res, NS_XDATA, "x");
			xmppd_elem_set_attr(x, "type", "form");
			field(x, "FORM_TYPE", "hidden", NULL, NS_MUC_REGISTER);
			f = field(x, "muc#register_roomnick", "text-single", "Nickname", NULL);
			xmppd_elem_add_child(f, NS_XDATA, "required");
		}
		xmppd_iq_reply(iq, res);
		return;
	}
	if (xmppd_elem_child(q, NS_REGISTER, "remove") != NULL) {
		/* Cancelling: the reservation goes, and membership with it
		 * for a member (admins and owners stay). */
		if (aff == MUC_AFF_MEMBER)
			(void)muc_aff_set(r, bare, MUC_AFF_NONE, NULL);
		else
			(void)muc_nick_reserve(r, bare, NULL);
		if (r->cfg.persistent)
			muc_room_save(r);
		xmppd_iq_reply(iq, NULL);
		return;
	}
	x = xmppd_elem_child(q, NS_XDATA, "x");
	nick = NULL;
	if (x != NULL && muc_is(xmppd_elem_attr(x, "type"), "submit"))
		for (f = xmppd_elem_first_child(x); f != NULL; f = xmppd_elem_next_sibling(f))
			if (muc_is(xmppd_elem_attr(f, "var"), "muc#register_roomnick"))
				nick = fvalue(f);
	if (nick == NULL || *nick == '\0' || strlen(nick) > (size_t)muc_module.max_nick) {
		/* 7.10: the nickname is required. */
		xmppd_iq_error(iq, "not-acceptable", "a nickname is required");
		return;
	}
	holder = muc_nick_holder(r, nick);
	occ = muc_occ_find(r, nick);
	if ((holder != NULL && strcmp(holder, bare) != 0) ||
	    (occ != NULL && strcmp(occ->bare, bare) != 0)) {
		xmppd_iq_error(iq, "conflict", "that nickname is taken");
		return;
	}
	/* Registration is granted at once: the user becomes a member
	 * (the XEP lets a room ask its admins first; this one does not). */
	if ((aff == MUC_AFF_NONE && muc_aff_set(r, bare, MUC_AFF_MEMBER, NULL) < 0) ||
	    muc_nick_reserve(r, bare, nick) < 0) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	if (r->cfg.persistent)
		muc_room_save(r);
	xmppd_iq_reply(iq, NULL);
	for (struct muc_occ *o = r->occ_head; o != NULL; o = o->next)
		if (aff == MUC_AFF_NONE && strcmp(o->bare, bare) == 0)
			muc_broadcast_presence(r, o, 0, NULL, 0, NULL, NULL);
}

/* 7.12: disco#info on node x-roomuser-item names the user's reserved
 * nickname (or nothing). */
static void
reserved_nick_info(struct muc_room *r, xmppd_elem *iq, const xmppd_jid *from)
{
	xmppd_elem *q = xmppd_elem_new(NS_DISCO_INFO, "query"), *e;
	const char *nick = muc_nick_of(r, xmppd_jid_bare(from));

	xmppd_elem_set_attr(q, "node", "x-roomuser-item");
	if (nick != NULL) {
		e = xmppd_elem_add_child(q, NS_DISCO_INFO, "identity");
		xmppd_elem_set_attr(e, "category", "conference");
		xmppd_elem_set_attr(e, "type", "text");
		xmppd_elem_set_attr(e, "name", nick);
	}
	xmppd_iq_reply(iq, q);
}

/* 6.5: a public room lists its occupants' room JIDs (nicknames only);
 * a hidden one lists them to its occupants alone. */
static void
room_items(struct muc_room *r, xmppd_elem *iq, const xmppd_jid *from)
{
	xmppd_elem *q = xmppd_elem_new(NS_DISCO_ITEMS, "query");

	if (r->cfg.public || muc_sess_find(r, xmppd_jid_full(from)) != NULL)
		for (struct muc_occ *o = r->occ_head; o != NULL; o = o->next) {
			char *j = muc_occ_jid(r, o->nick);

			if (j != NULL)
				xmppd_elem_set_attr(xmppd_elem_add_child(q, NS_DISCO_ITEMS, "item"),
				    "jid", j);
			free(j);
		}
	xmppd_iq_reply(iq, q);
}

/* ---------------------------------------------------------------- */
/* IQs between occupants.                                             */

static void
iq_slot_free(struct muc_room *r, size_t i)
{
	free(r->iqs[i].id);
	free(r->iqs[i].orig_id);
	free(r->iqs[i].asker);
	free(r->iqs[i].target);
	free(r->iqs[i].target_nick);
	memset(&r->iqs[i], 0, sizeof(r->iqs[i]));
}

/*
 * An IQ from an occupant to another's room JID goes to that occupant's
 * newest session (a vcard-temp query to its bare JID: vCards are the
 * account's), from the asker's room JID and with an id the room makes;
 * the answer comes back to the room and is returned the same way. The
 * room keeps the last MUC_IQS_KEPT such IQs (an older one's answer is
 * dropped), so nothing grows without bound.
 */
static void
relay_iq(struct muc_room *r, xmppd_elem *iq, const xmppd_jid *from, const char *nick)
{
	struct muc_sess *s = muc_sess_find(r, xmppd_jid_full(from));
	struct muc_occ *t = muc_occ_find(r, nick);
	xmppd_elem *q = xmppd_elem_first_child(iq), *c;
	char id[40], *asker_jid;
	const char *target;
	size_t i;

	/* Only occupants ask occupants (as for private messages, 7.5); a
	 * non-occupant's disco query gets bad-request (6.6). */
	if (s == NULL) {
		const char *qns = q != NULL ? xmppd_elem_ns(q) : NULL;

		xmppd_iq_error(iq, muc_is(qns, NS_DISCO_INFO) || muc_is(qns, NS_DISCO_ITEMS) ?
		    "bad-request" : "not-acceptable", "you are not in the room");
		return;
	}
	if (t == NULL || t->sess == NULL) {
		xmppd_iq_error(iq, "item-not-found", "no such occupant");
		return;
	}
	if (!muc_rate_take(s)) {
		xmppd_iq_error(iq, muc_module.rate_error, "too many requests");
		return;
	}
	target = q != NULL && muc_is(xmppd_elem_ns(q), "vcard-temp") ? t->bare :
	    xmppd_jid_full(t->sess->full);
	snprintf(id, sizeof(id), "muc%llx", (unsigned long long)++r->iq_seq);
	if ((asker_jid = muc_occ_jid(r, s->occ->nick)) == NULL ||
	    (c = xmppd_elem_copy(iq)) == NULL) {
		free(asker_jid);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	i = r->iq_next++ % MUC_IQS_KEPT;
	iq_slot_free(r, i);
	r->iqs[i].id = strdup(id);
	r->iqs[i].orig_id = strdup(xmppd_elem_attr(iq, "id") != NULL ? xmppd_elem_attr(iq, "id") :
	    "");
	r->iqs[i].asker = strdup(xmppd_jid_full(from));
	r->iqs[i].target = strdup(target);
	r->iqs[i].target_nick = strdup(t->nick);
	xmppd_elem_set_attr(c, "from", asker_jid);
	xmppd_elem_set_attr(c, "to", target);
	xmppd_elem_set_attr(c, "id", id);
	xmppd_route(c);
	xmppd_elem_unref(c);
	free(asker_jid);
}

void
muc_iq_answer(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to)
{
	struct muc_room *r = muc_room_find(xmppd_jid_bare(to));
	const char *id = xmppd_elem_attr(iq, "id");
	xmppd_elem *c;
	char *from_jid;
	size_t i;

	if (r == NULL || id == NULL)
		return;
	for (i = 0; i < MUC_IQS_KEPT; i++)
		if (r->iqs[i].id != NULL && strcmp(r->iqs[i].id, id) == 0)
			break;
	/* Only the entity it went to answers it. */
	if (i == MUC_IQS_KEPT || r->iqs[i].target == NULL ||
	    (strcmp(r->iqs[i].target, xmppd_jid_full(from)) != 0 &&
	    strcmp(r->iqs[i].target, xmppd_jid_bare(from)) != 0))
		return;
	if ((from_jid = muc_occ_jid(r, r->iqs[i].target_nick)) != NULL &&
	    (c = xmppd_elem_copy(iq)) != NULL) {
		xmppd_elem_set_attr(c, "from", from_jid);
		xmppd_elem_set_attr(c, "to", r->iqs[i].asker);
		xmppd_elem_set_attr(c, "id", r->iqs[i].orig_id);
		xmppd_route(c);
		xmppd_elem_unref(c);
	}
	free(from_jid);
	iq_slot_free(r, i);
}

/* XEP-0410 4: a ping from an occupant's real full JID to its own
 * occupant JID is answered by the room (not relayed to the client): a
 * result while that session is joined under that nick; not-acceptable
 * (cancel, XEP-0410 3) when the sender is not an occupant. 1 when
 * answered; 0: not a self-ping (a joined occupant pinging another nick:
 * relayed as any IQ, item-not-found for a nick nobody has, XEP-0410 3). */
static int
self_ping(struct muc_room *r, xmppd_elem *iq, const xmppd_jid *from, const char *nick)
{
	struct muc_sess *s = muc_sess_find(r, xmppd_jid_full(from));
	xmppd_elem *e, *c, *err = NULL;

	if (s != NULL && strcmp(s->occ->nick, nick) == 0) {
		xmppd_iq_reply(iq, NULL);
		return 1;
	}
	if (s != NULL)
		return 0;
	if ((e = xmppd_stanza_error(iq, "not-acceptable", NULL)) == NULL)
		return 1;
	for (c = xmppd_elem_first_child(e); c != NULL; c = xmppd_elem_next_sibling(c))
		if (xmppd_elem_ns(c) == NULL && strcmp(xmppd_elem_name(c), "error") == 0)
			err = c;
	if (err != NULL)
		xmppd_elem_set_attr(err, "type", "cancel");
	xmppd_route(e);
	xmppd_elem_unref(e);
	return 1;
}

void
muc_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to)
{
	struct muc_room *r = muc_room_find(xmppd_jid_bare(to));
	xmppd_elem *q = xmppd_elem_first_child(iq);
	int set = muc_is(xmppd_stanza_type(iq), "set");
	const char *ns = q != NULL ? xmppd_elem_ns(q) : NULL;

	if (xmppd_jid_resource(to) != NULL) {
		if (r == NULL || r->loading || r->locked)
			xmppd_iq_error(iq, "item-not-found", NULL);
		else if (set || !muc_is(ns, NS_PING) ||
		    !self_ping(r, iq, from, xmppd_jid_resource(to)))
			relay_iq(r, iq, from, xmppd_jid_resource(to));
		return;
	}
	if (r == NULL || (r->locked && muc_aff_of(r, xmppd_jid_bare(from)) != MUC_AFF_OWNER)) {
		xmppd_iq_error(iq, "item-not-found", NULL);
		return;
	}
	if (muc_is(ns, NS_DISCO_INFO) && !set && muc_is(xmppd_elem_attr(q, "node"),
	    "x-roomuser-item"))
		reserved_nick_info(r, iq, from);
	else if (muc_is(ns, NS_DISCO_INFO) && !set && xmppd_elem_attr(q, "node") != NULL)
		xmppd_iq_error(iq, "item-not-found", NULL);
	else if (muc_is(ns, NS_DISCO_INFO) && !set)
		muc_room_disco_info(r, iq);
	else if (muc_is(ns, NS_REGISTER))
		register_iq(r, iq, q, from, set);
	else if (muc_is(ns, NS_DISCO_ITEMS) && !set)
		room_items(r, iq, from);
	else if (muc_is(ns, NS_MUC_OWNER))
		owner_iq(r, iq, q, from, set);
	else if (muc_is(ns, NS_MUC_ADMIN))
		admin_iq(r, iq, q, from, set);
	else if (muc_is(ns, NS_MUC_MENTIONS))
		muc_mention_iq(r, iq, q, from, set);
	else if (muc_mam_iq(r, iq, q, from, to, set))
		;
	else
		xmppd_iq_error(iq, "service-unavailable", NULL);
}
