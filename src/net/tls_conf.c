/*
 * tls_conf.c - the TLS keys of xmppd.yml, read for tls.c: the certificate
 * files, the CA file for verifying peers, the lowest protocol version.
 * Registered with the loader by the composition root (src/xmppd.c).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>
#include <yaml.h>

#include "core/conf.h"
#include "core/conf_keys.h"
#include "net/tls.h"

static conf_key_fn key_certfiles, key_tls_version;

static const struct conf_key tls_keys[] = {
	{ "certfiles",             key_certfiles,     0, 0, 0 },
	{ "ca_file",               conf_key_path,     offsetof(struct conf, ca_file), 0, 0 },
	{ "tls_min_version",       key_tls_version,   offsetof(struct conf, tls_min_version), 0, 0 },
};

static void
tls_defaults(struct conf *c)
{
	c->tls_min_version = TLS1_2_VERSION;
}

static int
key_tls_version(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	static const char *const words[] = { "1.2", "1.3", NULL };
	static const int values[] = { TLS1_2_VERSION, TLS1_3_VERSION };

	return conf_get_word(l, val, words, values,
	    "'tls_min_version' expects \"1.2\" or \"1.3\"", CONF_FIELD(int, base, k));
}

static int
key_certfiles(struct conf_loader *l, const struct conf_key *k, yaml_node_t *val, void *base)
{
	struct conf *c = l->c;
	yaml_node_item_t *it;
	size_t n;

	if (conf_check_tag(l, val) < 0)
		return -1;
	if (val->type != YAML_SEQUENCE_NODE)
		return conf_fail(l, val, "'certfiles' expects a list of file paths");
	n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
	if (n > 0 && (c->certfiles = calloc(n, sizeof(*c->certfiles))) == NULL)
		return conf_fail(l, val, "out of memory");
	for (it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(l->doc, *it);
		char *p;

		if (e->type != YAML_SCALAR_NODE)
			return conf_fail(l, e, "'certfiles' expects a list of file paths");
		if (conf_get_path(l, "certfiles", e, &p) < 0)
			return -1;
		for (size_t i = 0; i < c->ncertfiles; i++) {
			if (strcmp(c->certfiles[i], p) == 0) {
				char buf[256];

				conf_fail(l, e, "certificate file '%s' is listed twice",
				    conf_shown(p, strlen(p), buf, sizeof(buf)));
				free(p);
				return -1;
			}
		}
		c->certfiles[c->ncertfiles++] = p;
	}
	return 0;
}

const struct conf_section tls_conf_section = {
	.name = "tls",
	.keys = tls_keys,
	.nkeys = CONF_NKEYS(tls_keys),
	.defaults = tls_defaults,
};
