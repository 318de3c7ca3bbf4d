/*
 * mam_text_stub.c - STAND-IN for mam_text.c (the full-text module's), so
 * that mod_mam builds and its tests run before that is merged; dropped
 * then. libunistring does the Unicode work.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "mam_text.h"

struct seen {
	char w[MAM_WORD_MAX];
	size_t len;
};

static size_t
flush(const uint8_t *w, size_t wlen, struct seen *seen, size_t n, size_t max,
    void (*fn)(const char *, size_t, void *), void *ud)
{
	size_t len = 0, cut;
	uint8_t *nfc;

	if (wlen == 0 || n >= max)
		return n;
	if ((nfc = u8_normalize(UNINORM_NFC, w, wlen, NULL, &len)) == NULL)
		return n;
	cut = len > MAM_WORD_MAX ? MAM_WORD_MAX : len;
	while (cut > 0 && cut < len && (nfc[cut] & 0xc0) == 0x80)
		cut--;                  /* not inside a character */
	for (size_t i = 0; i < n; i++)
		if (seen[i].len == cut && memcmp(seen[i].w, nfc, cut) == 0) {
			free(nfc);
			return n;
		}
	memcpy(seen[n].w, nfc, cut);
	seen[n].len = cut;
	fn((const char *)nfc, cut, ud);
	free(nfc);
	return n + 1;
}

size_t
mam_text_words(const char *text, size_t len, size_t max_words,
    void (*fn)(const char *w, size_t wlen, void *ud), void *ud)
{
	size_t flen = 0, n = 0, wlen = 0;
	uint8_t *fold, *word;
	const uint8_t *p, *end;
	struct seen *seen;
	ucs4_t uc;
	int l;

	if (len == 0 || max_words == 0)
		return 0;
	fold = u8_casefold((const uint8_t *)text, len, NULL, UNINORM_NFKD, NULL, &flen);
	if (fold == NULL)
		return 0;
	seen = calloc(max_words, sizeof(*seen));
	word = malloc(flen);
	if (seen == NULL || word == NULL) {
		free(seen);
		free(word);
		free(fold);
		return 0;
	}
	for (p = fold, end = fold + flen; p < end; p += l) {
		if ((l = u8_mbtouc(&uc, p, (size_t)(end - p))) <= 0)
			break;
		if (uc_is_general_category(uc, UC_CATEGORY_M))
			continue;           /* accents go */
		if (uc_is_general_category(uc, UC_CATEGORY_L) ||
		    uc_is_general_category(uc, UC_CATEGORY_N)) {
			memcpy(word + wlen, p, (size_t)l);
			wlen += (size_t)l;
			continue;
		}
		n = flush(word, wlen, seen, n, max_words, fn, ud);
		wlen = 0;
	}
	n = flush(word, wlen, seen, n, max_words, fn, ud);
	free(seen);
	free(word);
	free(fold);
	return n;
}
