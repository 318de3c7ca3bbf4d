/*
 * mam_text.h - the words of a text for the archive's full-text index
 * (XEP-0431).
 *
 * STAND-IN: a local stand-in for the full-text module's own mam_text.h
 * and mam_text.c (same API), dropped when those are merged.
 */
#ifndef MAM_TEXT_H
#define MAM_TEXT_H

#include <stddef.h>

#define MAM_WORD_MAX 64

/* Calls fn for each distinct word of text (UTF-8), folded case- and
 * accent-insensitively (NFKD, combining marks dropped, case-folded, NFC);
 * words are runs of letters and digits cut to MAM_WORD_MAX bytes; at most
 * max_words. Returns how many were given. The same folding serves a
 * query's terms. */
size_t mam_text_words(const char *text, size_t len, size_t max_words,
    void (*fn)(const char *w, size_t wlen, void *ud), void *ud);

#endif
