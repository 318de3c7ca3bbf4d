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

#include "core/conf.h"

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
	char err[1024];
	struct conf *c;

	/* Real files are small; a large one only makes runs slow. */
	if (size > 64 * 1024)
		return 0;
	err[0] = 'x';
	c = conf_parse(NAME, (const char *)data, size, err, sizeof(err));
	if (c == NULL) {
		const char *p = err + strlen(NAME ":");

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
