/*
 * auth_conf.c - the SASL keys of xmppd.yml: the PBKDF2 iterations of new
 * SCRAM secrets (account.c) and whether PLAIN is offered over TLS
 * (sasl.c). Registered with the loader by the composition root
 * (src/xmppd.c).
 */
#include "config.h"

#include <yaml.h>

#include "auth/sasl.h"
#include "core/conf.h"
#include "core/conf_keys.h"

#define C(field) offsetof(struct conf, field)

static const struct conf_key auth_keys[] = {
	{ "scram_iterations",      conf_key_uint,     C(scram_iterations), 4096, 1000000 },
	{ "allow_plain",           conf_key_bool,     C(allow_plain), 0, 0 },
};

static void
auth_defaults(struct conf *c)
{
	c->scram_iterations = 4096;
	c->allow_plain = 1;
}

const struct conf_section auth_conf_section = {
	.name = "auth",
	.keys = auth_keys,
	.nkeys = CONF_NKEYS(auth_keys),
	.defaults = auth_defaults,
};
