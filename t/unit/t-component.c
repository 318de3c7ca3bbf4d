/*
 * t-component.c - the XEP-0114 handshake digest (component/handshake.c):
 * hex(SHA1(stream id + secret)) against known answers (computed with
 * Python's hashlib), and what component_handshake_ok accepts and refuses.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "component/component.h"

static void
test_digest_known_answers(void **state)
{
	char d[COMPONENT_DIGEST_LEN + 1];

	(void)state;
	/* XEP-0114 3: SHA1(concat(sid, password)) in hex, lower case. */
	component_handshake_digest("3BF96D32", "secret", d);
	assert_string_equal(d, "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136");
	component_handshake_digest("", "", d);
	assert_string_equal(d, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
	/* UTF-8 bytes as they are. */
	component_handshake_digest("id\xc3\xa9", "\xc3\xa9s3cr\xc3\xaat", d);
	assert_string_equal(d, "22da2fa7fd837831d71b98a3349437567a46bf8b");
}

static void
test_handshake_ok(void **state)
{
	(void)state;
	assert_int_equal(component_handshake_ok("3BF96D32", "secret",
	    "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"), 1);
	/* Hex of either case, whitespace around it. */
	assert_int_equal(component_handshake_ok("3BF96D32", "secret",
	    "B09EA9B3B7F586BE8A08D0A3DD7466F110AEB136"), 1);
	assert_int_equal(component_handshake_ok("3BF96D32", "secret",
	    "\n  b09ea9b3b7f586be8a08d0a3dd7466f110aeb136 \t"), 1);
}

static void
test_handshake_refused(void **state)
{
	(void)state;
	/* Another secret, another id. */
	assert_int_equal(component_handshake_ok("3BF96D32", "Secret",
	    "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"), 0);
	assert_int_equal(component_handshake_ok("3BF96D33", "secret",
	    "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"), 0);
	/* One digit off, at the end and at the start. */
	assert_int_equal(component_handshake_ok("3BF96D32", "secret",
	    "b09ea9b3b7f586be8a08d0a3dd7466f110aeb137"), 0);
	assert_int_equal(component_handshake_ok("3BF96D32", "secret",
	    "c09ea9b3b7f586be8a08d0a3dd7466f110aeb136"), 0);
	/* A prefix, a longer string, nothing, the secret itself. */
	assert_int_equal(component_handshake_ok("3BF96D32", "secret",
	    "b09ea9b3b7f586be8a08d0a3dd7466f110aeb13"), 0);
	assert_int_equal(component_handshake_ok("3BF96D32", "secret",
	    "b09ea9b3b7f586be8a08d0a3dd7466f110aeb1366"), 0);
	assert_int_equal(component_handshake_ok("3BF96D32", "secret", ""), 0);
	assert_int_equal(component_handshake_ok("3BF96D32", "secret", "secret"), 0);
	/* Whitespace inside is not ignored. */
	assert_int_equal(component_handshake_ok("3BF96D32", "secret",
	    "b09ea9b3b7f586be8a08 0a3dd7466f110aeb136"), 0);
	assert_int_equal(component_handshake_ok(NULL, "secret", "x"), 0);
	assert_int_equal(component_handshake_ok("3BF96D32", NULL, "x"), 0);
	assert_int_equal(component_handshake_ok("3BF96D32", "secret", NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest_known_answers),
		cmocka_unit_test(test_handshake_ok),
		cmocka_unit_test(test_handshake_refused),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
