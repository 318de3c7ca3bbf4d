/*
 * t-smd.c - the state row of durable stream management (sm_durable,
 * src/c2s/smd_rec.c): a round trip keeps every field (counters past 2^32,
 * a negative priority, a missing presence), and rows that are truncated,
 * of another version, with trailing bytes or without a JID are refused
 * rather than restored as a half session. Also xml_parse_elem, which
 * turns a queued stanza's text back into the stanza.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "c2s/smd_rec.h"
#include "xml/stream.h"
#include "xml/xml.h"

static struct smd_state
sample(void)
{
	struct smd_state s = {
		.h_in = 4000000000u,
		.acked = (1ULL << 32) + 7,     /* the 64-bit count goes past h's wrap */
		.max = 300,
		.deadline_ms = 1700000000123ULL,
		.available = 1,
		.priority = -5,
		.host = "xmppd.test",
		.node = "bob",
		.full = "bob@xmppd.test/res",
		.presence = "<presence><show>away</show></presence>",
	};

	return s;
}

static void
test_round_trip(void **state)
{
	struct smd_state s = sample(), d;
	size_t len;
	void *row = smd_state_encode(&s, &len);

	(void)state;
	assert_non_null(row);
	assert_int_equal(smd_state_decode(row, len, &d), 0);
	assert_int_equal(d.h_in, s.h_in);
	assert_true(d.acked == s.acked);
	assert_int_equal(d.max, 300);
	assert_true(d.deadline_ms == s.deadline_ms);
	assert_int_equal(d.available, 1);
	assert_int_equal(d.priority, -5);
	assert_string_equal(d.host, "xmppd.test");
	assert_string_equal(d.node, "bob");
	assert_string_equal(d.full, "bob@xmppd.test/res");
	assert_string_equal(d.presence, s.presence);
	smd_state_clear(&d);
	free(row);
}

static void
test_no_presence(void **state)
{
	struct smd_state s = sample(), d;
	size_t len;
	void *row;

	(void)state;
	s.presence = NULL;
	s.available = 0;
	s.deadline_ms = 0;
	row = smd_state_encode(&s, &len);
	assert_non_null(row);
	assert_int_equal(smd_state_decode(row, len, &d), 0);
	assert_null(d.presence);
	assert_int_equal(d.available, 0);
	assert_true(d.deadline_ms == 0);
	smd_state_clear(&d);
	free(row);
}

static void
test_refused(void **state)
{
	struct smd_state s = sample(), d;
	size_t len;
	unsigned char *row = smd_state_encode(&s, &len), *longer;

	(void)state;
	assert_non_null(row);
	/* Every truncation. */
	for (size_t n = 0; n < len; n++)
		assert_int_equal(smd_state_decode(row, n, &d), -1);
	/* Trailing bytes. */
	longer = malloc(len + 1);
	memcpy(longer, row, len);
	longer[len] = 0;
	assert_int_equal(smd_state_decode(longer, len + 1, &d), -1);
	free(longer);
	/* Another version. */
	row[0] = 2;
	assert_int_equal(smd_state_decode(row, len, &d), -1);
	free(row);
	/* No full JID. */
	s.full = NULL;
	row = smd_state_encode(&s, &len);
	assert_int_equal(smd_state_decode(row, len, &d), -1);
	assert_null(d.host);
	free(row);
}

static void
test_parse_elem(void **state)
{
	xml_elem *m = xml_elem_new(NULL, "message"), *b, *p;
	char *text;
	size_t len;

	(void)state;
	xml_attr_set(m, "to", "bob@xmppd.test/res");
	b = xml_elem_add_child(m, NULL, "body");
	xml_elem_add_text(b, "a < b & 'c'", 11);
	(void)xml_elem_add_child(m, "urn:xmpp:receipts", "request");
	text = xml_to_string(m, "jabber:client", &len);
	p = xml_parse_elem(text, len, "jabber:client");
	assert_non_null(p);
	assert_null(xml_elem_ns(p));
	assert_string_equal(xml_attr_get(p, "to"), "bob@xmppd.test/res");
	assert_string_equal(xml_child_text(p, NULL, "body"), "a < b & 'c'");
	assert_non_null(xml_child(p, "urn:xmpp:receipts", "request"));
	xml_elem_unref(p);
	assert_null(xml_parse_elem(text, len - 1, "jabber:client"));
	assert_null(xml_parse_elem("<message>", 9, "jabber:client"));
	free(text);
	xml_elem_unref(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_no_presence),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_parse_elem),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
