/*
 * t-jid.c - JID parsing and preparation (src/xmpp/jid.c).
 *
 * The RFC 7622 3.5 and 3.6 examples are here, with the answers of the RFC
 * 6122 stringprep profiles that xmppd uses; where those differ from RFC
 * 7622's PRECIS rules the test says so.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <stringprep.h>

#include "xmpp/jid.h"

struct valid_case {
	const char *in;
	const char *node;	/* NULL if none */
	const char *domain;
	const char *resource;	/* NULL if none */
	const char *full;
};

static void
check_valid(const struct valid_case *c)
{
	const char *error = NULL;
	jid j;
	char bare[4096];

	if (jid_parse(&j, c->in, strlen(c->in), &error) != 0)
		fail_msg("\"%s\" refused: %s", c->in, error);
	if (c->node == NULL)
		assert_null(j.node);
	else
		assert_string_equal(j.node, c->node);
	assert_string_equal(j.domain, c->domain);
	if (c->resource == NULL)
		assert_null(j.resource);
	else
		assert_string_equal(j.resource, c->resource);
	assert_string_equal(j.full, c->full);
	snprintf(bare, sizeof(bare), "%s%s%s", c->node ? c->node : "",
	    c->node ? "@" : "", c->domain);
	assert_string_equal(j.bare, bare);
	if (c->resource == NULL)
		assert_ptr_equal(j.full, j.bare);
	jid_free(&j);
	assert_null(j.mem);
}

static void
check_invalid(const char *s, size_t len)
{
	const char *error = NULL;
	jid j;

	memset(&j, 0xa5, sizeof(j));
	if (jid_parse(&j, s, len, &error) == 0)
		fail_msg("\"%.*s\" accepted as %s", (int)len, s, j.full);
	assert_non_null(error);
	/* The header promises a zeroed jid on failure. */
	assert_null(j.node);
	assert_null(j.domain);
	assert_null(j.resource);
	assert_null(j.bare);
	assert_null(j.full);
	assert_null(j.mem);
}

#define INVALID(s) check_invalid((s), strlen(s))

/* RFC 7622 3.5, in order. */
static void
test_rfc7622_valid(void **state)
{
	static const struct valid_case cases[] = {
		{ "juliet@example.com", "juliet", "example.com", NULL,
		    "juliet@example.com" },
		{ "juliet@example.com/foo", "juliet", "example.com", "foo",
		    "juliet@example.com/foo" },
		{ "juliet@example.com/foo bar", "juliet", "example.com",
		    "foo bar", "juliet@example.com/foo bar" },
		{ "juliet@example.com/foo@bar", "juliet", "example.com",
		    "foo@bar", "juliet@example.com/foo@bar" },
		{ "foo\\20bar@example.com", "foo\\20bar", "example.com", NULL,
		    "foo\\20bar@example.com" },
		{ "fussball@example.com", "fussball", "example.com", NULL,
		    "fussball@example.com" },
		/* Nodeprep case-folds sharp s to "ss" (RFC 3454 B.2); under
		 * PRECIS it would stay distinct. */
		{ "fu\xc3\x9f" "ball@example.com", "fussball", "example.com",
		    NULL, "fussball@example.com" },
		{ "\xcf\x80@example.com", "\xcf\x80", "example.com", NULL,
		    "\xcf\x80@example.com" },
		/* Capital sigma, small sigma and final sigma all fold to
		 * small sigma under nodeprep (B.2); PRECIS keeps final
		 * sigma apart. */
		{ "\xce\xa3@example.com/foo", "\xcf\x83", "example.com", "foo",
		    "\xcf\x83@example.com/foo" },
		{ "\xcf\x83@example.com/foo", "\xcf\x83", "example.com", "foo",
		    "\xcf\x83@example.com/foo" },
		{ "\xcf\x82@example.com/foo", "\xcf\x83", "example.com", "foo",
		    "\xcf\x83@example.com/foo" },
		{ "king@example.com/\xe2\x99\x9a", "king", "example.com",
		    "\xe2\x99\x9a", "king@example.com/\xe2\x99\x9a" },
		{ "example.com", NULL, "example.com", NULL, "example.com" },
		{ "example.com/foobar", NULL, "example.com", "foobar",
		    "example.com/foobar" },
		{ "a.example.com/b@example.net", NULL, "a.example.com",
		    "b@example.net", "a.example.com/b@example.net" },
		/* Resourceprep does not fold case: the three sigmas stay
		 * three resources. */
		{ "\xcf\x80@example.com/\xce\xa3", "\xcf\x80", "example.com",
		    "\xce\xa3", "\xcf\x80@example.com/\xce\xa3" },
		{ "\xcf\x80@example.com/\xcf\x83", "\xcf\x80", "example.com",
		    "\xcf\x83", "\xcf\x80@example.com/\xcf\x83" },
		{ "\xcf\x80@example.com/\xcf\x82", "\xcf\x80", "example.com",
		    "\xcf\x82", "\xcf\x80@example.com/\xcf\x82" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_valid(&cases[i]);
}

/* RFC 7622 3.6: the examples stringprep refuses as well. */
static void
test_rfc7622_invalid(void **state)
{
	INVALID("\"juliet\"@example.com");
	INVALID("foo bar@example.com");
	INVALID("@example.com/");
	INVALID("juliet@");
	INVALID("/foobar");
}

/*
 * RFC 7622 3.6 examples that the RFC 6122 profiles accept. They are
 * accepted on purpose: the server must agree with its peers, which prepare
 * with stringprep, and refusing what they route would lose stanzas.
 */
static void
test_rfc7622_invalid_accepted_by_stringprep(void **state)
{
	static const struct valid_case cases[] = {
		/* Resourceprep allows U+0020 anywhere (RFC 6122 B). */
		{ "juliet@example.com/ foo", "juliet", "example.com", " foo",
		    "juliet@example.com/ foo" },
		/* ROMAN NUMERAL FOUR: case-folded to U+2173 (B.2), then
		 * NFKC turns it into "iv". */
		{ "henry\xe2\x85\xa3@example.com", "henryiv", "example.com",
		    NULL, "henryiv@example.com" },
		/* BLACK CHESS KING is a symbol, not a prohibited
		 * character, in nodeprep (RFC 6122 A.5). */
		{ "\xe2\x99\x9a@example.com", "\xe2\x99\x9a", "example.com",
		    NULL, "\xe2\x99\x9a@example.com" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_valid(&cases[i]);
}

static void
test_case_folding(void **state)
{
	static const struct valid_case cases[] = {
		{ "JULIET@EXAMPLE.COM", "juliet", "example.com", NULL,
		    "juliet@example.com" },
		{ "JuLiEt@Example.Com/BalCony", "juliet", "example.com",
		    "BalCony", "juliet@example.com/BalCony" },
		{ "B\xc3\x9c" "CHER.Example", NULL, "b\xc3\xbc" "cher.example",
		    NULL, "b\xc3\xbc" "cher.example" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_valid(&cases[i]);
}

static void
test_empty_parts(void **state)
{
	const char *error = NULL;
	jid j;

	assert_int_equal(jid_parse(&j, "", 0, &error), -1);
	assert_non_null(error);
	assert_int_equal(jid_parse(&j, NULL, 0, NULL), -1);
	INVALID("@example.com");
	INVALID("juliet@example.com/");
	INVALID("example.com/");
	INVALID("@");
	INVALID("/");
	INVALID("@/");
	/* Soft hyphen is mapped to nothing (RFC 3454 B.1): a localpart of
	 * nothing but soft hyphens is empty once prepared. */
	INVALID("\xc2\xad\xc2\xad@example.com");
}

/* RFC 7622 3.1: each part is 1..1023 bytes once prepared. */
static void
test_lengths(void **state)
{
	char buf[8192], part[2048];
	const char *error = NULL;
	jid j;
	int n;

	memset(part, 'a', 1024);
	part[1023] = '\0';
	n = snprintf(buf, sizeof(buf), "%s@example.com/%s", part, part);
	assert_int_equal(jid_parse(&j, buf, (size_t)n, &error), 0);
	assert_int_equal(strlen(j.node), 1023);
	assert_int_equal(strlen(j.resource), 1023);
	jid_free(&j);

	part[1023] = 'a';
	part[1024] = '\0';
	n = snprintf(buf, sizeof(buf), "%s@example.com", part);
	check_invalid(buf, (size_t)n);
	n = snprintf(buf, sizeof(buf), "juliet@example.com/%s", part);
	check_invalid(buf, (size_t)n);

	/* Preparation that grows a part past the limit: 512 sharp s become
	 * 1024 bytes of "ss". */
	for (n = 0; n < 512; n++)
		memcpy(part + 2 * n, "\xc3\x9f", 2);
	part[1024] = '\0';
	n = snprintf(buf, sizeof(buf), "%s@example.com", part);
	check_invalid(buf, (size_t)n);

	/* Domainpart: 15 labels of 63 bytes, then 30 + 32 (1023 bytes) or
	 * 31 + 32 (1024 bytes). */
	for (int extra = 30; extra <= 31; extra++) {
		char *p = buf;

		for (int i = 0; i < 15; i++) {
			memset(p, 'a' + i, 63);
			p += 63;
			*p++ = '.';
		}
		memset(p, 'x', (size_t)extra);
		p += extra;
		*p++ = '.';
		memset(p, 'y', 32);
		p += 32;
		*p = '\0';
		if (extra == 30) {
			assert_int_equal(p - buf, 1023);
			assert_int_equal(jid_parse(&j, buf, (size_t)(p - buf),
			    &error), 0);
			assert_int_equal(strlen(j.domain), 1023);
			jid_free(&j);
			/* A trailing dot is not counted. */
			*p++ = '.';
			assert_int_equal(jid_parse(&j, buf, (size_t)(p - buf),
			    &error), 0);
			assert_int_equal(strlen(j.domain), 1023);
			jid_free(&j);
		} else {
			assert_int_equal(p - buf, 1024);
			check_invalid(buf, (size_t)(p - buf));
		}
	}

	/* Labels: 63 bytes is the most DNS takes (RFC 1035 2.3.4). */
	memset(part, 'a', 64);
	strcpy(part + 63, ".example");
	assert_int_equal(jid_parse(&j, part, strlen(part), &error), 0);
	jid_free(&j);
	memset(part, 'a', 64);
	strcpy(part + 64, ".example");
	INVALID(part);
}

static void
test_utf8(void **state)
{
	INVALID("\xff@example.com");
	INVALID("juliet@example.com/\xc3");
	INVALID("juliet@example.com/\xc3(");
	INVALID("\xc0\xaf@example.com");		/* overlong '/' */
	INVALID("\xe0\x80\xaf@example.com");		/* overlong '/' */
	INVALID("juliet@\xed\xa0\x80.example");		/* surrogate */
	INVALID("juliet@example.com/\xf4\x90\x80\x80");	/* > U+10FFFF */
	INVALID("juliet@example.com/\xf8\x88\x80\x80\x80");
	INVALID("juliet@exa\x80mple.com");
	/* NUL inside the given length. */
	check_invalid("juliet\0x@example.com", 20);
	check_invalid("juliet@example.com/a\0b", 22);
	check_invalid("[::1\0x]", 7);
}

static void
test_domains(void **state)
{
	static const struct valid_case cases[] = {
		{ "example.com.", NULL, "example.com", NULL, "example.com" },
		{ "juliet@example.com./r", "juliet", "example.com", "r",
		    "juliet@example.com/r" },
		{ "127.0.0.1", NULL, "127.0.0.1", NULL, "127.0.0.1" },
		{ "juliet@[::1]/r", "juliet", "[::1]", "r",
		    "juliet@[::1]/r" },
		/* IPv6 literals are written in the RFC 5952 form so that
		 * strcmp compares them. */
		{ "[0:0:0:0:0:0:0:1]", NULL, "[::1]", NULL, "[::1]" },
		{ "[2001:DB8::A]", NULL, "[2001:db8::a]", NULL,
		    "[2001:db8::a]" },
		{ "localhost", NULL, "localhost", NULL, "localhost" },
		{ "xn--bcher-kva.example", NULL, "xn--bcher-kva.example", NULL,
		    "xn--bcher-kva.example" },
		{ "a-b.example", NULL, "a-b.example", NULL, "a-b.example" },
		/* IDNA2003 label separators (RFC 3490 3.1). */
		{ "example\xef\xbc\x8e" "com", NULL, "example.com", NULL,
		    "example.com" },
		{ "example\xe3\x80\x82" "com\xe3\x80\x82", NULL, "example.com",
		    NULL, "example.com" },
		/* The bidi rule holds per label (RFC 3491 6): a Hebrew
		 * label next to an ASCII one is fine. */
		{ "\xd7\x90\xd7\x91\xd7\x92.example", NULL,
		    "\xd7\x90\xd7\x91\xd7\x92.example", NULL,
		    "\xd7\x90\xd7\x91\xd7\x92.example" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_valid(&cases[i]);

	INVALID("example.com..");
	INVALID(".");
	INVALID("..");
	INVALID("a..example");
	INVALID(".example");
	INVALID("exa_mple.com");
	INVALID("exa mple.com");
	INVALID("juliet@@example.com");
	INVALID("-example.com");
	INVALID("example-.com");
	INVALID("123.456");
	INVALID("1.2.3.256");
	INVALID("[::1");
	INVALID("[]");
	INVALID("[zz::1]");
	INVALID("[::1]x");
	INVALID("[1.2.3.4]");
	INVALID("exa:mple.com");
	/* U+2024 ONE DOT LEADER becomes "." under NFKC: not a new label
	 * separator, and not a hostname character either. */
	INVALID("a\xe2\x80\xa4" "b.example");
	/*
	 * Unicode labels are measured in their A-label form: 22 CJK
	 * characters are 66 bytes of UTF-8 but "xn--" + 59 bytes of
	 * punycode, which fits; 23 are 4 + 62 bytes, which does not.
	 */
	for (int n = 22; n <= 23; n++) {
		char buf[512];
		char *p = buf;
		const char *error = NULL;
		jid j;

		for (int i = 0; i < n; i++) {
			unsigned int cp = 0x4e00 + 97 * (unsigned int)i;

			*p++ = (char)(0xe0 | (cp >> 12));
			*p++ = (char)(0x80 | ((cp >> 6) & 0x3f));
			*p++ = (char)(0x80 | (cp & 0x3f));
		}
		strcpy(p, ".example");
		if (n == 22) {
			assert_int_equal(jid_parse(&j, buf, strlen(buf),
			    &error), 0);
			jid_free(&j);
		} else
			INVALID(buf);
	}
}

/* jid_parse takes a length: the input need not end with NUL. */
static void
test_not_terminated(void **state)
{
	const char *s = "juliet@example.com/balconyXXXX";
	const char *error = NULL;
	jid j;

	assert_int_equal(jid_parse(&j, s, 26, &error), 0);
	assert_string_equal(j.full, "juliet@example.com/balcony");
	jid_free(&j);
	assert_int_equal(jid_parse(&j, s, 18, &error), 0);
	assert_string_equal(j.full, "juliet@example.com");
	jid_free(&j);
	/* Cut just after the '/': an empty resourcepart. */
	check_invalid(s, 19);
}

static void
test_make(void **state)
{
	const char *error = NULL;
	jid j;

	assert_int_equal(jid_make(&j, "Juliet", "Example.COM.", "Balcony",
	    &error), 0);
	assert_string_equal(j.node, "juliet");
	assert_string_equal(j.domain, "example.com");
	assert_string_equal(j.resource, "Balcony");
	assert_string_equal(j.bare, "juliet@example.com");
	assert_string_equal(j.full, "juliet@example.com/Balcony");
	jid_free(&j);

	assert_int_equal(jid_make(&j, NULL, "example.com", NULL, &error), 0);
	assert_null(j.node);
	assert_null(j.resource);
	assert_string_equal(j.full, "example.com");
	assert_ptr_equal(j.full, j.bare);
	jid_free(&j);

	assert_int_equal(jid_make(&j, NULL, "example.com", "r", &error), 0);
	assert_string_equal(j.full, "example.com/r");
	jid_free(&j);

	/* The parts are not split again: '@' and '/' in a resource are
	 * fine, in a localpart they are prohibited. */
	assert_int_equal(jid_make(&j, "a", "example.com", "b/c@d", &error), 0);
	assert_string_equal(j.full, "a@example.com/b/c@d");
	jid_free(&j);
	assert_int_equal(jid_make(&j, "a@b", "example.com", NULL, &error), -1);
	assert_null(j.mem);

	assert_int_equal(jid_make(&j, "", "example.com", NULL, &error), -1);
	assert_int_equal(jid_make(&j, "a", "", NULL, &error), -1);
	assert_int_equal(jid_make(&j, "a", NULL, NULL, &error), -1);
	assert_int_equal(jid_make(&j, "a", "example.com", "", &error), -1);
	assert_int_equal(jid_make(&j, "a b", "example.com", NULL, &error), -1);
	assert_null(j.mem);
}

static void
test_copy_and_bare(void **state)
{
	const char *error = NULL;
	jid j, c, b, bb;

	assert_int_equal(jid_parse(&j, "Romeo@Example.net/Orchard", 25,
	    &error), 0);
	assert_int_equal(jid_copy(&c, &j), 0);
	assert_ptr_not_equal(c.mem, j.mem);
	assert_string_equal(c.node, j.node);
	assert_string_equal(c.domain, j.domain);
	assert_string_equal(c.resource, j.resource);
	assert_string_equal(c.bare, j.bare);
	assert_string_equal(c.full, j.full);

	assert_int_equal(jid_bare_of(&b, &j), 0);
	assert_string_equal(b.node, "romeo");
	assert_string_equal(b.domain, "example.net");
	assert_null(b.resource);
	assert_string_equal(b.bare, "romeo@example.net");
	assert_ptr_equal(b.full, b.bare);

	/* The copies own their memory: freeing the original leaves them
	 * intact (ASan would see a use after free). */
	jid_free(&j);
	assert_string_equal(c.full, "romeo@example.net/Orchard");
	assert_int_equal(jid_bare_of(&bb, &b), 0);
	assert_string_equal(bb.full, "romeo@example.net");
	jid_free(&bb);
	jid_free(&b);

	assert_int_equal(jid_parse(&j, "example.net", 11, &error), 0);
	assert_int_equal(jid_copy(&b, &j), 0);
	assert_null(b.node);
	assert_null(b.resource);
	assert_string_equal(b.full, "example.net");
	jid_free(&b);
	jid_free(&j);
	jid_free(&c);
	jid_free(&c);		/* freeing twice is harmless */
	jid_free(NULL);

	/* An empty (failed) jid copies to a failure, not a crash. */
	memset(&j, 0, sizeof(j));
	assert_int_equal(jid_copy(&c, &j), -1);
	assert_int_equal(jid_bare_of(&c, &j), -1);
}

static void
test_prep_functions(void **state)
{
	char *s;

	s = jid_nodeprep("JuLiEt", 6);
	assert_non_null(s);
	assert_string_equal(s, "juliet");
	free(s);
	assert_null(jid_nodeprep("a@b", 3));
	assert_null(jid_nodeprep("", 0));
	assert_null(jid_nodeprep(NULL, 0));

	s = jid_nameprep("Example.COM.", 12);
	assert_non_null(s);
	assert_string_equal(s, "example.com");
	free(s);
	s = jid_nameprep("[::0001]", 8);
	assert_non_null(s);
	assert_string_equal(s, "[::1]");
	free(s);
	assert_null(jid_nameprep("a..b", 4));
	assert_null(jid_nameprep("a_b", 3));

	s = jid_resourceprep("Foo Bar", 7);
	assert_non_null(s);
	assert_string_equal(s, "Foo Bar");
	free(s);
	/* Only len bytes are read. */
	s = jid_resourceprep("abcdef", 3);
	assert_non_null(s);
	assert_string_equal(s, "abc");
	free(s);
	assert_null(jid_resourceprep("a\x01", 2));
}

/* What prepare() gives back, prepared again, stays the same: a stored JID
 * compares equal to itself when it comes back over the wire. */
static void
test_idempotent(void **state)
{
	static const char *inputs[] = {
		"fu\xc3\x9f" "ball@example.com/Fu\xc3\x9f" "ball",
		"henry\xe2\x85\xa3@EXAMPLE.com./\xe2\x85\xa3",
		"\xcf\x82@\xd7\x90\xd7\x91\xd7\x92.example/\xcf\x82",
		"[::FFFF:1.2.3.4]/x",
	};
	const char *error = NULL;
	jid a, b;

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		if (jid_parse(&a, inputs[i], strlen(inputs[i]), &error) != 0)
			fail_msg("\"%s\" refused: %s", inputs[i], error);
		assert_int_equal(jid_parse(&b, a.full, strlen(a.full),
		    &error), 0);
		assert_string_equal(a.full, b.full);
		jid_free(&a);
		jid_free(&b);
	}
}

/* jid.c prepares pure ASCII without libidn: it must agree with libidn on
 * every ASCII character, in every profile. */
static void
test_ascii_matches_libidn(void **state)
{
	for (int c = 1; c < 128; c++) {
		char in[4] = { 'X', (char)c, 'y', '\0' };
		char lib[16];
		char *ours;
		int rc;

		strcpy(lib, in);
		rc = stringprep_xmpp_nodeprep(lib, sizeof(lib));
		ours = jid_nodeprep(in, 3);
		if (rc == STRINGPREP_OK) {
			assert_non_null(ours);
			assert_string_equal(ours, lib);
		} else if (ours != NULL)
			fail_msg("nodeprep: 0x%02x accepted", c);
		free(ours);

		strcpy(lib, in);
		rc = stringprep_xmpp_resourceprep(lib, sizeof(lib));
		ours = jid_resourceprep(in, 3);
		if (rc == STRINGPREP_OK) {
			assert_non_null(ours);
			assert_string_equal(ours, lib);
		} else if (ours != NULL)
			fail_msg("resourceprep: 0x%02x accepted", c);
		free(ours);

		/* Nameprep allows all of ASCII; the hostname rules then
		 * keep letters, digits, '-' and the '.' between labels. */
		strcpy(lib, in);
		assert_int_equal(stringprep_nameprep(lib, sizeof(lib)),
		    STRINGPREP_OK);
		ours = jid_nameprep(in, 3);
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || c == '-' || c == '.') {
			assert_non_null(ours);
			assert_string_equal(ours, lib);
		} else
			assert_null(ours);
		free(ours);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7622_valid),
		cmocka_unit_test(test_rfc7622_invalid),
		cmocka_unit_test(test_rfc7622_invalid_accepted_by_stringprep),
		cmocka_unit_test(test_case_folding),
		cmocka_unit_test(test_empty_parts),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_domains),
		cmocka_unit_test(test_not_terminated),
		cmocka_unit_test(test_make),
		cmocka_unit_test(test_copy_and_bare),
		cmocka_unit_test(test_prep_functions),
		cmocka_unit_test(test_idempotent),
		cmocka_unit_test(test_ascii_matches_libidn),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
