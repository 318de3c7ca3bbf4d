/*
 * fuzz-mamtext.c - libFuzzer target for modules/mam_text.c, the folding
 * of the archive's full-text index (XEP-0431).
 *
 * Besides crashes it checks what mod_mam relies on: every word is valid
 * UTF-8 of 1 to MAM_WORD_MAX bytes, NUL-terminated, given once, and no
 * more than max_words of them (the first input byte chooses max_words);
 * and folding is idempotent: a word folded again is that one word, so a
 * query's term, folded the same way, finds it (mam_text.h).
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <unistr.h>

#include "modules/mam_text.h"

#define MAX_KEEP 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int cond)
{
	if (!cond)
		abort();
}

struct seen {
	size_t n;
	char w[MAX_KEEP][MAM_WORD_MAX + 1];
};

static void
again(const char *w, size_t wlen, void *ud)
{
	char *out = ud;

	check(out[0] == '\0');
	memcpy(out, w, wlen + 1);
}

static void
one(const char *w, size_t wlen, void *ud)
{
	struct seen *s = ud;
	char re[MAM_WORD_MAX + 1] = "";

	check(wlen >= 1 && wlen <= MAM_WORD_MAX);
	check(strlen(w) == wlen);
	check(u8_check((const uint8_t *)w, wlen) == NULL);
	for (size_t i = 0; i < s->n && i < MAX_KEEP; i++)
		check(strcmp(s->w[i], w) != 0);
	if (s->n < MAX_KEEP)
		memcpy(s->w[s->n], w, wlen + 1);
	s->n++;
	check(mam_text_words(w, wlen, 10, again, re) == 1);
	check(strcmp(re, w) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen *s;
	size_t max, r;

	if (size == 0)
		return 0;
	max = data[0] == 0xff ? SIZE_MAX : data[0];
	s = calloc(1, sizeof(*s));
	check(s != NULL);
	r = mam_text_words((const char *)data + 1, size - 1, max, one, s);
	check(r == s->n);
	check(r <= max);
	free(s);
	return 0;
}
