/*
 * fuzz-conf.c - libFuzzer target for the configuration reader (libyaml
 * and core/conf.c): whatever an operator's file holds.
 *
 * Besides crashes, leaks and hangs it checks what xmppd relies on: a file
 * is either accepted, with at least one host and every listener on a
 * port, or refused with a one-line message that starts with the file's
 * name and a line number ("xmppd.yml:12: ..."), which is what the
 * operator is shown (DESIGN.md, "Configuration").
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "c2s/c2s.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "net/listener.h"
#include "net/tls.h"
#include "s2s/s2s.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.yml"

static void
check(int cond)
{
	if (!cond)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int registered;
	const char *err = NULL;
	struct conf *c;

	/* Every key the daemon knows (src/xmppd.c registers the same). */
	if (!registered) {
		check(conf_section_register(&tls_conf_section) == 0);
		check(conf_section_register(&auth_conf_section) == 0);
		check(conf_section_register(&c2s_conf_section) == 0);
		check(conf_section_register(&s2s_conf_section) == 0);
		check(conf_section_register(&listen_conf_section) == 0);
		registered = 1;
	}
	/* Real files are small; a large one only makes runs slow. */
	if (size > 64 * 1024)
		return 0;
	c = conf_parse(NAME, (const char *)data, size, &err);
	if (c == NULL) {
		const char *p;

		check(err != NULL);
		p = err + strlen(NAME ":");
		check(strncmp(err, NAME ":", strlen(NAME ":")) == 0);
		check(*p >= '0' && *p <= '9');
		while (*p >= '0' && *p <= '9')
			p++;
		check(*p == ':');
		check(strchr(err, '\n') == NULL);
		return 0;
	}
	check(c->nhosts >= 1 && c->hosts[0] != NULL && *c->hosts[0] != '\0');
	for (size_t i = 0; i < c->nlisten; i++)
		check(c->listen[i].port != 0);
	conf_unref(c);
	return 0;
}
