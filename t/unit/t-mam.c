/*
 * t-mam.c - the archive's ids, records, dates and preferences
 * (modules/mam_store.c, compiled into mod_mam): ids strictly increasing
 * and printed fixed-width so that text order is number order, parsed
 * back only from exactly that form (XEP-0313 4.1.3: anything else is
 * item-not-found); records and preferences round-trip and refuse what is
 * not theirs; XEP-0082 dates; the XEP-0441 rules.
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

#include "mam.h"

/* The ABI's key encoding (hooks/xmppd.h: each string followed by a NUL,
 * at most 511 bytes), which the daemon provides to modules. */
size_t
xmppd_store_key(char *buf, size_t size, ...)
{
	va_list ap;
	const char *s;
	size_t n = 0, l;

	va_start(ap, size);
	while ((s = va_arg(ap, const char *)) != NULL) {
		l = strlen(s) + 1;
		if (n + l > size || n + l > 511) {
			va_end(ap);
			return 0;
		}
		memcpy(buf + n, s, l);
		n += l;
	}
	va_end(ap);
	return n;
}

static void
test_ids(void **state)
{
	char a[MAM_ID_TEXT + 1], b[MAM_ID_TEXT + 1];
	uint64_t x = mam_id_next(1000), y = mam_id_next(1000), z = mam_id_next(5), v;

	/* Same microsecond, or a clock going back: still increasing. */
	assert_true(x >= 1000);
	assert_true(y == x + 1);
	assert_true(z == y + 1);
	assert_true(mam_id_next(y + 100) == y + 100);
	mam_id_format(0x00061a2b3c4d5e6fULL, a);
	assert_string_equal(a, "00061a2b3c4d5e6f");
	assert_int_equal(mam_id_parse(a, &v), 0);
	assert_true(v == 0x00061a2b3c4d5e6fULL);
	mam_id_format(0x00061a2b3c4d5e70ULL, b);
	assert_true(strcmp(a, b) < 0);
	mam_id_format(UINT64_MAX, a);
	assert_int_equal(mam_id_parse(a, &v), 0);
	assert_true(v == UINT64_MAX);
	/* Only exactly 16 lowercase hex digits. */
	assert_int_equal(mam_id_parse("00061A2B3C4D5E6F", &v), -1);
	assert_int_equal(mam_id_parse("00061a2b3c4d5e6", &v), -1);
	assert_int_equal(mam_id_parse("00061a2b3c4d5e6f0", &v), -1);
	assert_int_equal(mam_id_parse("00061a2b3c4d5e6g", &v), -1);
	assert_int_equal(mam_id_parse("", &v), -1);
	assert_int_equal(mam_id_parse(NULL, &v), -1);
}

static void
test_keys(void **state)
{
	char buf[MAM_KEY_MAX], host[MAM_KEY_MAX], node[MAM_KEY_MAX];
	unsigned char id[MAM_ID_LEN];
	size_t n = mam_user_prefix(buf, "example.org", "alice");

	assert_int_equal(n, strlen("example.org") + 1 + strlen("alice") + 1);
	assert_memory_equal(buf, "example.org\0alice\0", n);
	mam_put_id(id, 0x0102030405060708ULL);
	assert_memory_equal(id, "\1\2\3\4\5\6\7\10", MAM_ID_LEN);
	assert_true(mam_get_id(id) == 0x0102030405060708ULL);
	memcpy(buf + n, id, MAM_ID_LEN);
	assert_int_equal(mam_key_user(buf, n + MAM_ID_LEN, host, node), n);
	assert_string_equal(host, "example.org");
	assert_string_equal(node, "alice");
	assert_int_equal(mam_key_user("\0alice\0", 7, host, node), 0);
	assert_int_equal(mam_key_user("example.org", 11, host, node), 0);
	n = mam_part_prefix(buf, "example.org", "alice", "cafe");
	assert_memory_equal(buf, "example.org\0alice\0cafe\0", n);
}

static void
test_records(void **state)
{
	static const char msg[] = "<message to='a@b'><body>hi</body></message>";
	struct mam_rec r = { 1234567, MAM_DIR_OUT, "bob@b", "bob@b/phone", msg, sizeof(msg) - 1 };
	struct mam_rec d;
	unsigned char *v;
	size_t len;

	assert_non_null(v = mam_rec_encode(&r, &len));
	assert_int_equal(v[0], MAM_REC_VERSION);
	assert_int_equal(mam_rec_decode(v, len, &d), 0);
	assert_true(d.ts_us == 1234567);
	assert_int_equal(d.dir, MAM_DIR_OUT);
	assert_string_equal(d.with_bare, "bob@b");
	assert_string_equal(d.with_full, "bob@b/phone");
	assert_int_equal(d.msg_len, sizeof(msg) - 1);
	assert_memory_equal(d.msg, msg, d.msg_len);
	/* Not ours: another version, a direction we do not know, cut short. */
	v[0] = 2;
	assert_int_equal(mam_rec_decode(v, len, &d), -1);
	v[0] = MAM_REC_VERSION;
	v[9] = 7;
	assert_int_equal(mam_rec_decode(v, len, &d), -1);
	v[9] = MAM_DIR_OUT;
	assert_int_equal(mam_rec_decode(v, 14, &d), -1);
	free(v);
}

static void
test_dates(void **state)
{
	char buf[40];
	int64_t us;

	assert_int_equal(mam_date_parse("1970-01-01T00:00:00Z", &us), 0);
	assert_true(us == 0);
	assert_int_equal(mam_date_parse("2010-06-07T00:00:00Z", &us), 0);
	assert_true(us == 1275868800LL * 1000000);
	assert_int_equal(mam_date_parse("2010-06-07T02:30:00.5+02:30", &us), 0);
	assert_true(us == 1275868800LL * 1000000 + 500000);
	assert_int_equal(mam_date_parse("2010-06-07T00:00:00.1234567Z", &us), 0);
	assert_true(us == 1275868800LL * 1000000 + 123456);
	assert_int_equal(mam_date_parse("2024-02-29T12:00:00Z", &us), 0);
	mam_date_format(1275868800ULL * 1000000 + 42, buf, sizeof(buf));
	assert_string_equal(buf, "2010-06-07T00:00:00.000042Z");
	assert_int_equal(mam_date_parse(buf, &us), 0);
	assert_true(us == 1275868800LL * 1000000 + 42);
	/* XEP-0082: a zone is required; no impossible dates. */
	assert_int_equal(mam_date_parse("2010-06-07T00:00:00", &us), -1);
	assert_int_equal(mam_date_parse("2010-06-07", &us), -1);
	assert_int_equal(mam_date_parse("2023-02-29T00:00:00Z", &us), -1);
	assert_int_equal(mam_date_parse("2024-02-30T00:00:00Z", &us), -1);
	assert_int_equal(mam_date_parse("2024-13-01T00:00:00Z", &us), -1);
	assert_int_equal(mam_date_parse("2024-01-01T24:00:00Z", &us), -1);
	assert_int_equal(mam_date_parse("2024-01-01T00:00:00.Z", &us), -1);
	assert_int_equal(mam_date_parse("2024-01-01T00:00:00Zjunk", &us), -1);
	assert_int_equal(mam_date_parse("yesterday", &us), -1);
	assert_int_equal(mam_date_parse("1969-12-31T23:59:59Z", &us), -1);
}

static void
test_prefs(void **state)
{
	char *always[] = { "romeo@montague.lit" }, *never[] = { "tybalt@capulet.lit",
	    "romeo@montague.lit/orchard" };
	struct mam_prefs p = { MAM_ROSTER, 86400, always, never, 1, 2 }, d;
	unsigned char *v;
	size_t len;

	assert_non_null(v = mam_prefs_encode(&p, &len));
	assert_int_equal(mam_prefs_decode(v, len, &d), 0);
	assert_int_equal(d.def, MAM_ROSTER);
	assert_true(d.expiry == 86400);
	assert_int_equal(d.n_always, 1);
	assert_int_equal(d.n_never, 2);
	assert_string_equal(d.always[0], "romeo@montague.lit");
	assert_string_equal(d.never[1], "romeo@montague.lit/orchard");
	/* XEP-0441: never wins over always; a bare JID covers every
	 * resource, a full JID only its own; then the default. */
	assert_int_equal(mam_prefs_rule(&d, MAM_ALWAYS, "romeo@montague.lit",
	    "romeo@montague.lit/orchard"), 0);
	assert_int_equal(mam_prefs_rule(&d, MAM_ALWAYS, "romeo@montague.lit",
	    "romeo@montague.lit/hall"), 1);
	assert_int_equal(mam_prefs_rule(&d, MAM_ALWAYS, "tybalt@capulet.lit", NULL), 0);
	assert_int_equal(mam_prefs_rule(&d, MAM_ALWAYS, "nurse@capulet.lit", NULL), -1);
	d.def = MAM_UNSET;
	assert_int_equal(mam_prefs_rule(&d, MAM_NEVER, "nurse@capulet.lit", NULL), 0);
	assert_int_equal(mam_prefs_rule(&d, MAM_ALWAYS, "nurse@capulet.lit", NULL), 1);
	mam_prefs_clear(&d);
	free(v);
	p.expiry = -1;
	p.n_always = p.n_never = 0;
	assert_non_null(v = mam_prefs_encode(&p, &len));
	assert_int_equal(mam_prefs_decode(v, len, &d), 0);
	assert_true(d.expiry == -1);
	mam_prefs_clear(&d);
	v[1] = 9;
	assert_int_equal(mam_prefs_decode(v, len, &d), -1);
	free(v);
	assert_int_equal(mam_prefs_decode("\1\0\0\0\0\0\0\0\0\0" "xbad\n", 15, &d), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_prefs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
