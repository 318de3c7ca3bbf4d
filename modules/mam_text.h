/*
 * mam_text.h - the words of a message body, folded for the archive's
 * full-text index (XEP-0431, urn:xmpp:fulltext:0; issue 13 point 4).
 *
 * One folding serves both sides: the words stored for an archived message
 * and the terms of a query, so a search is case- and accent-insensitive
 * ("CAFÉ", "cafe" and "café" written with a combining accent all give
 * "cafe"; "Straße" gives "strasse").
 *
 * Folding, in this order (GNU libunistring, no hand-written tables):
 * compatibility decomposition (NFKD, Unicode UAX #15), combining marks
 * (general category M) dropped, full case folding (Unicode 3.13,
 * CaseFolding.txt), then canonical composition (NFC, which puts Hangul
 * syllables back together). A word is a run of letters and numbers
 * (general categories L and N) of the folded text; everything else
 * (spaces, punctuation, symbols such as emoji, controls, and bytes that are
 * not UTF-8) separates words. A word longer than MAM_WORD_MAX bytes is cut
 * to at most MAM_WORD_MAX bytes at a character boundary.
 *
 * Text of any length is read in chunks of a few KiB: memory stays bounded
 * (a few tens of KiB of stack, plus a table of the distinct words given so
 * far, which max_words bounds). It is compiled into the module that uses it
 * (mod_mam) and sees only libunistring.
 */
#ifndef XMPPD_MAM_TEXT_H
#define XMPPD_MAM_TEXT_H

#include <stddef.h>

#define MAM_WORD_MAX 64

/* Calls fn for each distinct word of text (UTF-8), folded case- and
 * accent-insensitively (NFKD, combining marks dropped, case-folded, NFC);
 * words are runs of letters and digits cut to MAM_WORD_MAX bytes (at a
 * character boundary); at most max_words. Returns how many were given.
 * The same folding serves a query's terms.
 *
 * w is borrowed for the call only; it is also NUL-terminated. A word that
 * repeats is given once, at its first place. */
size_t mam_text_words(const char *text, size_t len, size_t max_words,
    void (*fn)(const char *w, size_t wlen, void *ud), void *ud);

#endif
