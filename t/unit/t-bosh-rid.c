/*
 * t-bosh-rid.c - the BOSH rid window (c2s/bosh_rid.c, XEP-0124 14.2 and
 * 14.3): which rids are processed, wait, are answered again, or end the
 * session, at the window's edges, for windows of one and several
 * requests, and near the largest rid (2^53 - 1, XEP-0124 7.1).
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "c2s/bosh_rid.h"

static void
test_next(void **state)
{
	(void)state;
	assert_int_equal(bosh_rid_classify(1000, 1000, 2), BOSH_RID_NEXT);
	assert_int_equal(bosh_rid_classify(1000, 1000, 1), BOSH_RID_NEXT);
}

static void
test_early_within_window(void **state)
{
	(void)state;
	/* requests = 2: one request may be open beyond the next one. */
	assert_int_equal(bosh_rid_classify(1001, 1000, 2), BOSH_RID_EARLY);
	assert_int_equal(bosh_rid_classify(1002, 1000, 2), BOSH_RID_BEYOND);
	/* requests = 5: up to four ahead wait. */
	assert_int_equal(bosh_rid_classify(1004, 1000, 5), BOSH_RID_EARLY);
	assert_int_equal(bosh_rid_classify(1005, 1000, 5), BOSH_RID_BEYOND);
	/* requests = 1: nothing may come early. */
	assert_int_equal(bosh_rid_classify(1001, 1000, 1), BOSH_RID_BEYOND);
}

static void
test_repeat(void **state)
{
	(void)state;
	/* The last 'requests' answered (next - 1 back to next - requests). */
	assert_int_equal(bosh_rid_classify(999, 1000, 2), BOSH_RID_REPEAT);
	assert_int_equal(bosh_rid_classify(998, 1000, 2), BOSH_RID_REPEAT);
	assert_int_equal(bosh_rid_classify(997, 1000, 2), BOSH_RID_OLD);
	assert_int_equal(bosh_rid_classify(999, 1000, 1), BOSH_RID_REPEAT);
	assert_int_equal(bosh_rid_classify(998, 1000, 1), BOSH_RID_OLD);
	assert_int_equal(bosh_rid_classify(0, 1000, 5), BOSH_RID_OLD);
}

static void
test_edges(void **state)
{
	const uint64_t max = (1ULL << 53) - 1;

	(void)state;
	assert_int_equal(bosh_rid_classify(max, max - 1, 2), BOSH_RID_EARLY);
	assert_int_equal(bosh_rid_classify(max, max, 2), BOSH_RID_NEXT);
	assert_int_equal(bosh_rid_classify(UINT64_MAX, 1, 2), BOSH_RID_BEYOND);
	assert_int_equal(bosh_rid_classify(0, UINT64_MAX, 2), BOSH_RID_OLD);
	/* A window of 0 is taken as 1. */
	assert_int_equal(bosh_rid_classify(1001, 1000, 0), BOSH_RID_BEYOND);
	assert_int_equal(bosh_rid_classify(999, 1000, 0), BOSH_RID_REPEAT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_next),
		cmocka_unit_test(test_early_within_window),
		cmocka_unit_test(test_repeat),
		cmocka_unit_test(test_edges),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
