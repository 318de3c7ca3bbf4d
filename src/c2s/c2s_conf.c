/*
 * c2s_conf.c - the client streams' keys of xmppd.yml: when a quiet
 * stream's parser goes, how failed logins are slowed and counted, and who
 * may log in (doc/configuration.md, "Limits" and "Access control").
 * Registered with the loader by the composition root (src/xmppd.c).
 */
#include "config.h"

#include <string.h>

#include <yaml.h>

#include "c2s/c2s.h"
#include "core/acl.h"
#include "core/conf.h"
#include "core/conf_keys.h"

#define C(field) offsetof(struct conf, field)

/* c2s_access names an access rule, checked in c2s_check_refs. (Modules
 * name their own rules in their options, e.g. mod_register's access.) */
static const struct conf_key c2s_keys[] = {
	{ "hibernate_after",       conf_key_uint,     C(hibernate_after), 0, 86400 },
	{ "auth_failure_delay_ms", conf_key_uint,     C(auth_failure_delay_ms), 0, 60000 },
	{ "max_auth_attempts",     conf_key_uint,     C(max_auth_attempts), 1, 10 },
	{ "c2s_access",            conf_key_string,   C(c2s_access), 0, 0 },
	/* Stream management (XEP-0198, c2s_sm.c). The names follow
	 * ejabberd's mod_stream_mgmt (max_resume_timeout, max_ack_queue,
	 * ack_timeout) with an sm_ prefix, since they are top-level keys. */
	{ "sm_max_resume",         conf_key_uint,     C(sm_max_resume), 0, 86400 },
	{ "sm_max_ack_queue",      conf_key_uint,     C(sm_max_ack_queue), 1, 1000000 },
	{ "sm_ack_after",          conf_key_uint,     C(sm_ack_after), 1, 1000000 },
	{ "sm_ack_interval",       conf_key_uint,     C(sm_ack_interval), 1, 3600 },
	{ "sm_ack_timeout",        conf_key_uint,     C(sm_ack_timeout), 1, 3600 },
	/* Resumption that survives a restart of the server (c2s_smd.c). */
	{ "sm_durable",            conf_key_bool,     C(sm_durable), 0, 0 },
};

static void
c2s_defaults(struct conf *c)
{
	c->hibernate_after = 90;
	c->auth_failure_delay_ms = 1000;
	c->max_auth_attempts = 3;
	c->sm_max_resume = 300;        /* Prosody's smacks_hibernation_time */
	c->sm_max_ack_queue = 5000;    /* ejabberd's max_ack_queue */
	c->sm_ack_after = 5;
	c->sm_ack_interval = 30;       /* Prosody's smacks_max_ack_delay */
	c->sm_ack_timeout = 60;        /* ejabberd's ack_timeout */
	c->sm_durable = 0;
}

/* The access rule may be defined after c2s_access. */
static int
c2s_check_refs(struct conf_loader *l)
{
	const char *rule = l->c->c2s_access;
	char buf[80];

	if (rule != NULL && !access_rule_exists(l->c, rule))
		return conf_fail_at(l, conf_value_line(l, "c2s_access"), "'c2s_access' "
		    "refers to undefined access rule '%s'",
		    conf_shown(rule, strlen(rule), buf, sizeof(buf)));
	return 0;
}

const struct conf_section c2s_conf_section = {
	.name = "c2s",
	.keys = c2s_keys,
	.nkeys = CONF_NKEYS(c2s_keys),
	.defaults = c2s_defaults,
	.check_refs = c2s_check_refs,
};
