/*
 * fuzz-jid.c - libFuzzer target for jid_parse.
 *
 * Besides crashes it checks what callers rely on: a parsed jid's strings
 * agree with each other, copies are equal, and parsing the prepared form
 * again gives the same jid (stored JIDs must compare equal to themselves
 * when they come back over the wire). The ASCII shortcut in jid.c is
 * compared with libidn on the same input.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stringprep.h>

#include "xmpp/jid.h"

static void
check(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
compare_libidn(const uint8_t *data, size_t size)
{
	char in[256], lib[1100];
	char *ours;
	int rc;

	if (size == 0 || size >= sizeof(in))
		return;
	for (size_t i = 0; i < size; i++)
		if (data[i] == 0 || data[i] >= 0x80)
			return;
	memcpy(in, data, size);
	in[size] = '\0';

	strcpy(lib, in);
	rc = stringprep_xmpp_nodeprep(lib, sizeof(lib));
	ours = jid_nodeprep(in, size);
	check((rc == STRINGPREP_OK) == (ours != NULL));
	check(ours == NULL || strcmp(ours, lib) == 0);
	free(ours);

	strcpy(lib, in);
	rc = stringprep_xmpp_resourceprep(lib, sizeof(lib));
	ours = jid_resourceprep(in, size);
	check((rc == STRINGPREP_OK) == (ours != NULL));
	check(ours == NULL || strcmp(ours, lib) == 0);
	free(ours);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *error = NULL;
	jid j, again, c, b;

	compare_libidn(data, size);
	if (jid_parse(&j, (const char *)data, size, &error) == -1) {
		check(error != NULL && j.mem == NULL && j.domain == NULL);
		return 0;
	}
	check(j.domain != NULL && *j.domain != '\0');
	check(strlen(j.domain) <= JID_PART_MAX);
	check(j.node == NULL || (*j.node != '\0' &&
	    strlen(j.node) <= JID_PART_MAX));
	check(j.resource == NULL || (*j.resource != '\0' &&
	    strlen(j.resource) <= JID_PART_MAX));
	check(j.resource != NULL || j.full == j.bare);

	check(jid_parse(&again, j.full, strlen(j.full), &error) == 0);
	check(strcmp(again.full, j.full) == 0);
	check(strcmp(again.domain, j.domain) == 0);
	check((again.node == NULL) == (j.node == NULL));
	check((again.resource == NULL) == (j.resource == NULL));
	jid_free(&again);

	check(jid_make(&again, j.node, j.domain, j.resource, &error) == 0);
	check(strcmp(again.full, j.full) == 0);
	jid_free(&again);

	check(jid_copy(&c, &j) == 0);
	check(strcmp(c.full, j.full) == 0 && strcmp(c.bare, j.bare) == 0);
	check(jid_bare_of(&b, &j) == 0);
	check(b.resource == NULL && strcmp(b.full, j.bare) == 0);
	jid_free(&b);
	jid_free(&c);
	jid_free(&j);
	return 0;
}
