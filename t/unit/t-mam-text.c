/*
 * t-mam-text.c - the folding of the archive's full-text index
 * (modules/mam_text.c; XEP-0431 search, issue 13 point 4): case- and
 * accent-insensitive words, separators, the cut at MAM_WORD_MAX, bytes
 * that are not UTF-8, max_words and repeats.
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

#include "modules/mam_text.h"

#define MAX_GOT 4096

/* The words given, in order. */
struct got {
	size_t n;
	char *w[MAX_GOT];
};

static void
collect(const char *w, size_t wlen, void *ud)
{
	struct got *g = ud;

	assert_true(wlen > 0);
	assert_true(wlen <= MAM_WORD_MAX);
	/* mam_text.h: NUL-terminated too. */
	assert_int_equal(strlen(w), wlen);
	assert_true(g->n < MAX_GOT);
	g->w[g->n] = malloc(wlen + 1);
	assert_non_null(g->w[g->n]);
	memcpy(g->w[g->n], w, wlen + 1);
	g->n++;
}

static void
got_free(struct got *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->w[i]);
	g->n = 0;
}

static size_t
words_n(struct got *g, const char *text, size_t len, size_t max)
{
	size_t r;

	g->n = 0;
	r = mam_text_words(text, len, max, collect, g);
	assert_int_equal(r, g->n);
	return r;
}

/* Asserts that text gives exactly the words of the NULL-terminated list,
 * in that order; prints what it got when not. */
static void
expect(const char *text, const char *const *want)
{
	struct got g;
	size_t nwant = 0, i;
	int ok;

	while (want[nwant] != NULL)
		nwant++;
	words_n(&g, text, strlen(text), 1000);
	ok = g.n == nwant;
	for (i = 0; ok && i < nwant; i++)
		ok = strcmp(g.w[i], want[i]) == 0;
	if (!ok) {
		print_message("# text: %s\n", text);
		for (i = 0; i < g.n; i++)
			print_message("# got: [%s]\n", g.w[i]);
		for (i = 0; i < nwant; i++)
			print_message("# want: [%s]\n", want[i]);
	}
	got_free(&g);
	assert_true(ok);
}

#define EXPECT(text, ...) do { \
		const char *const want_[] = { __VA_ARGS__, NULL }; \
		expect((text), want_); \
	} while (0)

/* Accents go (combining marks dropped after NFKD), whether the text has
 * them precomposed or as combining characters. */
static void
test_accents(void **state)
{
	(void)state;
	EXPECT("Caf\xc3\xa9", "cafe");                  /* Café, U+00E9 */
	EXPECT("CAF\xc3\x89", "cafe");                  /* CAFÉ, U+00C9 */
	EXPECT("cafe\xcc\x81", "cafe");                 /* e + U+0301 */
	EXPECT("CAFE\xcc\x81 na\xc3\xafve r\xc3\xa9sum\xc3\xa9",
	    "cafe", "naive", "resume");
	/* Vietnamese: two marks on one letter. */
	EXPECT("Ti\xe1\xba\xbfng Vi\xe1\xbb\x87t", "tieng", "viet");
}

/* Full case folding (Unicode CaseFolding.txt, status F): one letter may
 * fold into two. */
static void
test_case_folding(void **state)
{
	(void)state;
	EXPECT("Stra\xc3\x9f" "e", "strasse");            /* Straße */
	EXPECT("STRASSE", "strasse");
	EXPECT("\xe1\xba\x9e", "ss");                   /* capital sharp s U+1E9E */
	EXPECT("HeLLo WORLD", "hello", "world");
	/* İ (U+0130): NFKD gives I + U+0307; without the dot it folds to i. */
	EXPECT("\xc4\xb0stanbul", "istanbul");
	/* Compatibility decomposition: the ligature fi (U+FB01). */
	EXPECT("\xef\xac\x81le", "file");
}

/* Greek and Cyrillic: capitals, the tonos and final sigma (ς and Σ both
 * fold to σ), ё without its diaeresis. */
static void
test_greek_cyrillic(void **state)
{
	(void)state;
	/* ΚΑΛΗΜΈΡΑ and καλημέρα */
	EXPECT("\xce\x9a\xce\x91\xce\x9b\xce\x97\xce\x9c\xce\x88\xce\xa1\xce\x91",
	    "\xce\xba\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xb5\xcf\x81\xce\xb1");
	EXPECT("\xce\xba\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1",
	    "\xce\xba\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xb5\xcf\x81\xce\xb1");
	/* ΟΔΟΣ and οδός: οδοσ */
	EXPECT("\xce\x9f\xce\x94\xce\x9f\xce\xa3 \xce\xbf\xce\xb4\xcf\x8c\xcf\x82",
	    "\xce\xbf\xce\xb4\xce\xbf\xcf\x83");
	/* ПРИВЕТ Мир -> привет, мир */
	EXPECT("\xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2 \xd0\x9c\xd0\xb8\xd1\x80",
	    "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
	    "\xd0\xbc\xd0\xb8\xd1\x80");
	/* Ёлка -> елка */
	EXPECT("\xd0\x81\xd0\xbb\xd0\xba\xd0\xb0",
	    "\xd0\xb5\xd0\xbb\xd0\xba\xd0\xb0");
}

/* Digits are word characters (general category N), alone or with
 * letters; fullwidth and superscript digits decompose (NFKD) to ASCII. */
static void
test_digits(void **state)
{
	(void)state;
	EXPECT("abc123 456 7-8", "abc123", "456", "7", "8");
	EXPECT("\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93", "123");  /* １２３ */
	EXPECT("x\xc2\xb2", "x2");                      /* x² */
	/* Arabic-Indic digits stay what they are. */
	EXPECT("\xd9\xa3\xd9\xa4", "\xd9\xa3\xd9\xa4");
}

/* Punctuation, spaces, symbols and emoji (with skin-tone modifiers,
 * variation selectors and ZWJ sequences) separate words. */
static void
test_separators(void **state)
{
	(void)state;
	EXPECT("hello,world!foo?bar.baz", "hello", "world", "foo", "bar", "baz");
	EXPECT("  \t\r\n(a) [b] {c} \"d\" 'e' <f> &g; @h #i $j %k",
	    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k");
	EXPECT("foo\xf0\x9f\x98\x80" "bar", "foo", "bar");   /* U+1F600 */
	EXPECT("a\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd" "b", "a", "b"); /* thumbs up, skin tone */
	EXPECT("x\xe2\x9d\xa4\xef\xb8\x8fy", "x", "y");       /* heart + VS16 */
	/* man, ZWJ, woman: nothing of it is a word. */
	EXPECT("p\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9q", "p", "q");
	EXPECT("\xf0\x9f\x98\x80\xf0\x9f\x98\x80", NULL);
	/* No-break space, em dash, ideographic space and full stop. */
	EXPECT("a\xc2\xa0" "b\xe2\x80\x94" "c\xe3\x80\x80" "d\xe3\x80\x82" "e",
	    "a", "b", "c", "d", "e");
}

/* CJK: a run of ideographs or kana is one word (there are no spaces);
 * Hangul comes back composed (NFKD splits a syllable into jamo, NFC puts
 * it together again). */
static void
test_cjk(void **state)
{
	(void)state;
	/* 東京タワー (the long vowel mark ー is a letter, Lm) */
	EXPECT("\xe6\x9d\xb1\xe4\xba\xac\xe3\x82\xbf\xe3\x83\xaf\xe3\x83\xbc",
	    "\xe6\x9d\xb1\xe4\xba\xac\xe3\x82\xbf\xe3\x83\xaf\xe3\x83\xbc");
	/* 日本語、テキスト: the ideographic comma separates. */
	EXPECT("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x80\x81"
	    "\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88",
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	    "\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88");
	/* 한국어 */
	EXPECT("\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 ok",
	    "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4", "ok");
	/* Halfwidth katakana ｶ (U+FF76) is カ after NFKD. */
	EXPECT("\xef\xbd\xb6", "\xe3\x82\xab");
}

/* Asserts s is valid UTF-8 and a prefix of full, at most MAM_WORD_MAX
 * bytes long and as long as whole characters of full allow. */
static void
assert_cut(const char *s, const char *full, size_t charlen)
{
	size_t n = strlen(s);

	assert_true(n <= MAM_WORD_MAX);
	assert_true(n > MAM_WORD_MAX - charlen);
	assert_memory_equal(s, full, n);
	/* Ends on a character boundary of full. */
	assert_true(((unsigned char)full[n] & 0xc0) != 0x80);
}

static void
test_long_word(void **state)
{
	char text[1024], folded[1024];
	struct got g;
	size_t n;

	(void)state;
	/* 200 ASCII letters. */
	memset(text, 'A', 200);
	text[200] = '\0';
	memset(folded, 'a', 200);
	folded[200] = '\0';
	assert_int_equal(words_n(&g, text, 200, 10), 1);
	assert_int_equal(strlen(g.w[0]), MAM_WORD_MAX);
	assert_cut(g.w[0], folded, 1);
	got_free(&g);

	/* 'a' and 199 ж (2 bytes): 1 + 31 * 2 = 63 bytes; the 32nd ж does not
	 * fit, and the 'b' after them is not glued on. */
	n = 0;
	text[n] = 'a';
	folded[n++] = 'a';
	for (int i = 0; i < 199; i++) {
		memcpy(text + n, "\xd0\x96", 2);        /* Ж */
		memcpy(folded + n, "\xd0\xb6", 2);      /* ж */
		n += 2;
	}
	text[n] = 'b';
	folded[n++] = 'b';
	text[n] = folded[n] = '\0';
	assert_int_equal(words_n(&g, text, n, 10), 1);
	assert_int_equal(strlen(g.w[0]), 63);
	assert_cut(g.w[0], folded, 2);
	got_free(&g);

	/* 200 ideographs of 3 bytes: 21 of them, 63 bytes. */
	n = 0;
	for (int i = 0; i < 200; i++) {
		memcpy(text + n, "\xe8\xaa\x9e", 3);
		n += 3;
	}
	text[n] = '\0';
	assert_int_equal(words_n(&g, text, n, 10), 1);
	assert_int_equal(strlen(g.w[0]), 63);
	assert_cut(g.w[0], text, 3);
	got_free(&g);

	/* 200 é with combining accents (3 bytes each in the text, 1 once
	 * folded): 64 e, then the next word. */
	n = 0;
	for (int i = 0; i < 200; i++) {
		memcpy(text + n, "E\xcc\x81", 3);
		n += 3;
	}
	memcpy(text + n, " next", 6);
	n += 5;
	memset(folded, 'e', 200);
	folded[200] = '\0';
	assert_int_equal(words_n(&g, text, n, 10), 2);
	assert_cut(g.w[0], folded, 1);
	assert_string_equal(g.w[1], "next");
	got_free(&g);
}

/* A run of letters longer than a chunk (mam_text.c reads the text a few
 * KiB at a time) is still one word; words across a long text are all
 * found, each once. */
static void
test_long_text(void **state)
{
	size_t cap = 1 << 20, n = 0;
	char *text = malloc(cap);
	struct got g;

	(void)state;
	assert_non_null(text);
	/* 3000 ж with no separator: 6000 bytes, one word of 32 ж. */
	for (int i = 0; i < 3000; i++) {
		memcpy(text + n, "\xd0\xb6", 2);
		n += 2;
	}
	assert_int_equal(words_n(&g, text, n, 10), 1);
	assert_int_equal(strlen(g.w[0]), 64);
	got_free(&g);

	/* 1000 distinct words (with an accent, so not ASCII), repeated
	 * ten times, over about 100 KiB. */
	n = 0;
	for (int r = 0; r < 10; r++)
		for (int i = 0; i < 1000; i++)
			n += (size_t)snprintf(text + n, cap - n, "W\xc3\xa9rd%d ", i);
	assert_int_equal(words_n(&g, text, n, 100000), 1000);
	for (int i = 0; i < 1000; i++) {
		char want[32];

		snprintf(want, sizeof(want), "werd%d", i);
		assert_string_equal(g.w[i], want);
	}
	got_free(&g);
	free(text);
}

/* Bytes that are not UTF-8 (RFC 3629 3: overlong forms, surrogates, stray
 * continuation bytes, a sequence cut short) separate words. */
static void
test_invalid_utf8(void **state)
{
	char buf[512];
	struct got g;
	uint32_t x = 12345;

	(void)state;
	EXPECT("ab\xff" "cd", "ab", "cd");
	EXPECT("ab\xc0\xaf" "cd", "ab", "cd");          /* overlong '/' */
	EXPECT("ab\xed\xa0\x80" "cd", "ab", "cd");      /* U+D800 */
	EXPECT("ab\x80\x80" "cd", "ab", "cd");
	EXPECT("caf\xc3", "caf");                       /* cut short */
	EXPECT("caf\xc3\xa9\xe2\x82", "cafe");
	EXPECT("\xf8\x88\x80\x80\x80", NULL);           /* 5-byte form */
	/* Random bytes: no crash, every word within bounds (collect checks). */
	for (int r = 0; r < 2000; r++) {
		size_t len = 1 + r % sizeof(buf);

		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			buf[i] = (char)(x >> 16);
		}
		words_n(&g, buf, len, 1000);
		got_free(&g);
	}
}

static void
test_empty(void **state)
{
	struct got g;

	(void)state;
	assert_int_equal(words_n(&g, "", 0, 10), 0);
	assert_int_equal(words_n(&g, NULL, 0, 10), 0);
	assert_int_equal(words_n(&g, " ,.!", 4, 10), 0);
	/* Only combining marks. */
	assert_int_equal(words_n(&g, "\xcc\x81\xcc\x81", 4, 10), 0);
	/* len is honoured: no NUL needed, nothing read past it. */
	assert_int_equal(words_n(&g, "abc def", 3, 10), 1);
	assert_string_equal(g.w[0], "abc");
	got_free(&g);
}

static void
test_max_words(void **state)
{
	struct got g;

	(void)state;
	assert_int_equal(words_n(&g, "a b c d e", 9, 3), 3);
	assert_string_equal(g.w[0], "a");
	assert_string_equal(g.w[1], "b");
	assert_string_equal(g.w[2], "c");
	got_free(&g);
	/* A repeat does not count against max_words. */
	assert_int_equal(words_n(&g, "a a A \xc3\xa1 b c", 12, 2), 2);
	assert_string_equal(g.w[0], "a");
	assert_string_equal(g.w[1], "b");
	got_free(&g);
	assert_int_equal(words_n(&g, "a b", 3, 0), 0);
}

static void
test_repeats(void **state)
{
	(void)state;
	EXPECT("Hello hello HELLO h\xc3\xa9llo he\xcc\x81llo", "hello");
	EXPECT("a b a c b", "a", "b", "c");
	/* Distinct after the cut: two long words with the same first 64
	 * bytes are one word. */
	{
		char text[300];

		memset(text, 'q', sizeof(text));
		text[100] = ' ';
		text[299] = '\0';
		text[298] = 'z';
		EXPECT(text,
		    "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq");
	}
}

/* An all-ASCII chunk is folded by hand (mam_text.c); it must give what
 * libunistring gives: the same text with one accented word added (which
 * sends the chunk through libunistring) gives the same words and that
 * one. */
static void
test_ascii_path(void **state)
{
	static const char ascii[] =
	    "Hello, World! 42 foo_bar BAZ-qux x1Y2z3 ~`^|\\/+=*";

	(void)state;
	EXPECT(ascii, "hello", "world", "42", "foo", "bar", "baz", "qux",
	    "x1y2z3");
	EXPECT("Hello, World! 42 foo_bar BAZ-qux x1Y2z3 ~`^|\\/+=* \xc3\xa9t\xc3\xa9",
	    "hello", "world", "42", "foo", "bar", "baz", "qux", "x1y2z3", "ete");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accents),
		cmocka_unit_test(test_case_folding),
		cmocka_unit_test(test_greek_cyrillic),
		cmocka_unit_test(test_digits),
		cmocka_unit_test(test_separators),
		cmocka_unit_test(test_cjk),
		cmocka_unit_test(test_long_word),
		cmocka_unit_test(test_long_text),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_max_words),
		cmocka_unit_test(test_repeats),
		cmocka_unit_test(test_ascii_path),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
