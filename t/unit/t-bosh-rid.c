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

struct rid_case {
	uint64_t rid, next;
	unsigned requests;
	enum bosh_rid want;
};

/* Runs a table of cases; every one must classify as listed. */
static void
run_cases(const struct rid_case *cases, int n)
{
	int wrong = 0;

	for (int i = 0; i < n; i++) {
		enum bosh_rid got = bosh_rid_classify(cases[i].rid, cases[i].next,
		    cases[i].requests);

		if (got != cases[i].want) {
			print_error("case %d: rid %llu next %llu requests %u: %d, want %d\n", i,
			    (unsigned long long)cases[i].rid, (unsigned long long)cases[i].next,
			    cases[i].requests, (int)got, (int)cases[i].want);
			wrong++;
		}
	}
	assert_int_equal(wrong, 0);
}

static void
test_next(void **state)
{
	static const struct rid_case cases[] = {
		{ 1000, 1000, 2, BOSH_RID_NEXT },
		{ 1000, 1000, 1, BOSH_RID_NEXT },
	};

	(void)state;
	run_cases(cases, (int)(sizeof(cases) / sizeof(cases[0])));
}

static void
test_early_within_window(void **state)
{
	static const struct rid_case cases[] = {
		/* requests = 2: one request may be open beyond the next one. */
		{ 1001, 1000, 2, BOSH_RID_EARLY },
		{ 1002, 1000, 2, BOSH_RID_BEYOND },
		/* requests = 5: up to four ahead wait. */
		{ 1004, 1000, 5, BOSH_RID_EARLY },
		{ 1005, 1000, 5, BOSH_RID_BEYOND },
		/* requests = 1: nothing may come early. */
		{ 1001, 1000, 1, BOSH_RID_BEYOND },
	};

	(void)state;
	run_cases(cases, (int)(sizeof(cases) / sizeof(cases[0])));
}

static void
test_repeat(void **state)
{
	static const struct rid_case cases[] = {
		/* The last 'requests' answered (next - 1 back to next - requests). */
		{ 999, 1000, 2, BOSH_RID_REPEAT },
		{ 998, 1000, 2, BOSH_RID_REPEAT },
		{ 997, 1000, 2, BOSH_RID_OLD },
		{ 999, 1000, 1, BOSH_RID_REPEAT },
		{ 998, 1000, 1, BOSH_RID_OLD },
		{ 0, 1000, 5, BOSH_RID_OLD },
	};

	(void)state;
	run_cases(cases, (int)(sizeof(cases) / sizeof(cases[0])));
}

static void
test_edges(void **state)
{
	static const struct rid_case cases[] = {
		{ (1ULL << 53) - 1, (1ULL << 53) - 2, 2, BOSH_RID_EARLY },
		{ (1ULL << 53) - 1, (1ULL << 53) - 1, 2, BOSH_RID_NEXT },
		{ UINT64_MAX, 1, 2, BOSH_RID_BEYOND },
		{ 0, UINT64_MAX, 2, BOSH_RID_OLD },
		/* A window of 0 is taken as 1. */
		{ 1001, 1000, 0, BOSH_RID_BEYOND },
		{ 999, 1000, 0, BOSH_RID_REPEAT },
	};

	(void)state;
	run_cases(cases, (int)(sizeof(cases) / sizeof(cases[0])));
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
