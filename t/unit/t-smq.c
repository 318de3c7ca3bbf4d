/*
 * t-smq.c - stream management's counters and unacknowledged queue
 * (XEP-0198 4, src/c2s/smq.c): counting, acks, "h too high", the 32-bit
 * wrap, growth of the ring, and the replay order that resumption sends
 * (XEP-0198 5: exactly the unacknowledged stanzas, in order, once).
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "c2s/smq.h"
#include "xml/xml.h"

static xml_elem *
msg(unsigned n)
{
	xml_elem *m = xml_elem_new(NULL, "message");
	char id[16];

	snprintf(id, sizeof(id), "m%u", n);
	xml_attr_set(m, "id", id);
	return m;
}

static unsigned
id_of(const xml_elem *e)
{
	return (unsigned)strtoul(xml_attr_get(e, "id") + 1, NULL, 10);
}

/* Pushes n messages numbered from first; the queue holds the references. */
static void
push_n(struct smq *q, unsigned first, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		xml_elem *m = msg(first + i);

		assert_int_equal(smq_push(q, m, 1000000), 0);
		xml_elem_unref(m);
	}
}

static void
test_count_and_ack(void **state)
{
	struct smq q;

	(void)state;
	smq_init(&q);
	assert_int_equal(smq_len(&q), 0);
	/* <a h='0'/> on an empty queue is fine; h='1' is too high. */
	assert_int_equal(smq_ack(&q, 0), 0);
	assert_int_equal(smq_ack(&q, 1), -1);
	push_n(&q, 1, 5);
	assert_int_equal(q.sent, 5);
	assert_int_equal(smq_len(&q), 5);
	assert_int_equal(smq_ack(&q, 2), 0);
	assert_int_equal(smq_len(&q), 3);
	assert_int_equal(id_of(smq_at(&q, 0)), 3);
	/* The same h again changes nothing; more than was sent is refused
	 * and leaves the queue as it was. */
	assert_int_equal(smq_ack(&q, 2), 0);
	assert_int_equal(smq_ack(&q, 6), -1);
	assert_int_equal(smq_len(&q), 3);
	assert_int_equal(q.acked, 2);
	/* An h that goes back is as wrong (mod 2^32 it is far ahead). */
	assert_int_equal(smq_ack(&q, 1), -1);
	assert_int_equal(smq_ack(&q, 5), 0);
	assert_int_equal(smq_len(&q), 0);
	assert_null(smq_at(&q, 0));
	smq_free(&q);
}

static void
test_replay_order(void **state)
{
	struct smq q;

	(void)state;
	smq_init(&q);
	/* Enough to grow the ring several times, acked in uneven steps so
	 * that the head wraps inside the ring. */
	push_n(&q, 1, 10);
	assert_int_equal(smq_ack(&q, 7), 0);
	push_n(&q, 11, 100);
	assert_int_equal(smq_ack(&q, 50), 0);
	push_n(&q, 111, 3);
	/* What a resumption replays: 51 .. 113, in order, each once. */
	assert_int_equal(smq_len(&q), 63);
	for (uint32_t i = 0; i < smq_len(&q); i++)
		assert_int_equal(id_of(smq_at(&q, i)), 51 + i);
	/* And what a session's end hands back: the same, taken out. */
	for (unsigned want = 51; want <= 113; want++) {
		xml_elem *e = smq_take(&q);

		assert_non_null(e);
		assert_int_equal(id_of(e), want);
		xml_elem_unref(e);
	}
	assert_null(smq_take(&q));
	assert_int_equal(q.acked, 113);
	smq_free(&q);
}

static void
test_wrap(void **state)
{
	struct smq q;

	(void)state;
	/* XEP-0198 4: h wraps at 2^32. Counters just below it. */
	smq_init(&q);
	q.sent = q.acked = UINT32_MAX - 2;
	push_n(&q, 1, 6);
	assert_int_equal(q.sent, 3);
	assert_int_equal(smq_len(&q), 6);
	assert_int_equal(smq_ack(&q, UINT32_MAX), 0);     /* 2 acknowledged */
	assert_int_equal(smq_len(&q), 4);
	assert_int_equal(id_of(smq_at(&q, 0)), 3);
	assert_int_equal(smq_ack(&q, 4), -1);             /* past what was sent */
	assert_int_equal(smq_ack(&q, 1), 0);              /* across the wrap */
	assert_int_equal(smq_len(&q), 2);
	assert_int_equal(id_of(smq_at(&q, 0)), 5);
	assert_int_equal(smq_ack(&q, 3), 0);
	assert_int_equal(smq_len(&q), 0);
	smq_free(&q);
}

static void
test_bound(void **state)
{
	struct smq q;
	xml_elem *m = msg(1);

	(void)state;
	smq_init(&q);
	assert_int_equal(smq_push(&q, m, 2), 0);
	assert_int_equal(smq_push(&q, m, 2), 0);
	assert_int_equal(smq_push(&q, m, 2), -1);
	assert_int_equal(q.sent, 2);
	xml_elem_unref(m);
	/* smq_free drops the queue's references (ASan would see a leak). */
	smq_free(&q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_count_and_ack),
		cmocka_unit_test(test_replay_order),
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_bound),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
