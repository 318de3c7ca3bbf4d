/*
 * mam_text.c - folds text into the distinct words of the archive's
 * full-text index (mam_text.h says what a word is and why).
 *
 * The text is read in chunks of at most CHUNK bytes, cut where possible
 * after a space or a punctuation mark (nothing there composes with its
 * neighbours, so folding a chunk gives what folding the whole text would);
 * bytes that are not UTF-8 become spaces first, so libunistring only ever
 * sees valid input. A chunk that is all ASCII (the common case) is folded
 * by hand: NFKD, NFC and case folding of ASCII are the identity and
 * A-Z -> a-z, and only A-Z, a-z and 0-9 are letters or numbers. The word
 * being built lives across chunks, so a cut inside a long run of letters
 * does not split the word.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "mam_text.h"

/* Raw bytes folded at a time, and the room given to libunistring for a
 * chunk's decomposition and folding (it allocates when that is short:
 * NFKD can make text a few times longer). */
#define CHUNK 2048
#define FOLD_ROOM (3 * CHUNK)

/* The distinct words given so far: open addressing, grown by doubling
 * while fewer than max_words are in it. */
struct seen_slot {
	uint32_t hash;
	uint8_t len;                /* 0: free */
	char w[MAM_WORD_MAX];
};

#define SEEN_STACK 64

struct words {
	size_t max, count;
	void (*fn)(const char *w, size_t wlen, void *ud);
	void *ud;
	/* The word being built. */
	char w[MAM_WORD_MAX + 1];
	size_t wlen;
	int in_word;
	int full;                   /* cut at MAM_WORD_MAX: the rest of the run is dropped */
	int stop;                   /* max reached, or out of memory */
	struct seen_slot *seen;
	size_t cap;
	struct seen_slot stack_seen[SEEN_STACK];
};

static int
is_word(ucs4_t c)
{
	return uc_is_general_category_withtable(c,
	    UC_CATEGORY_MASK_L | UC_CATEGORY_MASK_N);
}

static int
is_mark(ucs4_t c)
{
	return uc_is_general_category_withtable(c, UC_CATEGORY_MASK_M);
}

/* After such a character a chunk may be cut: spaces and punctuation
 * decompose (NFKD) only into spaces and punctuation and compose with
 * nothing that follows. */
static int
is_cut(ucs4_t c)
{
	if (c < 0x80)
		return !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z'));
	return uc_is_general_category_withtable(c,
	    UC_CATEGORY_MASK_P | UC_CATEGORY_MASK_Z);
}

static uint32_t
fnv1a(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static struct seen_slot *
seen_find(struct seen_slot *t, size_t cap, uint32_t h, const char *w,
    size_t n)
{
	size_t i = h & (cap - 1);

	while (t[i].len != 0) {
		if (t[i].hash == h && t[i].len == n && memcmp(t[i].w, w, n) == 0)
			return &t[i];
		i = (i + 1) & (cap - 1);
	}
	return &t[i];
}

/* Doubles the table; -1 when out of memory. */
static int
seen_grow(struct words *ws)
{
	size_t cap = ws->cap * 2;
	struct seen_slot *t = calloc(cap, sizeof(*t));

	if (t == NULL)
		return -1;
	for (size_t i = 0; i < ws->cap; i++) {
		struct seen_slot *o = &ws->seen[i];

		if (o->len != 0)
			*seen_find(t, cap, o->hash, o->w, o->len) = *o;
	}
	if (ws->seen != ws->stack_seen)
		free(ws->seen);
	ws->seen = t;
	ws->cap = cap;
	return 0;
}

/* The word built so far is complete. */
static void
word_end(struct words *ws)
{
	struct seen_slot *s;
	uint32_t h;

	if (!ws->in_word || ws->stop) {
		ws->in_word = 0;
		return;
	}
	ws->in_word = 0;
	h = fnv1a(ws->w, ws->wlen);
	s = seen_find(ws->seen, ws->cap, h, ws->w, ws->wlen);
	if (s->len != 0)
		return;
	s->hash = h;
	s->len = (uint8_t)ws->wlen;
	memcpy(s->w, ws->w, ws->wlen);
	ws->w[ws->wlen] = '\0';
	ws->fn(ws->w, ws->wlen, ws->ud);
	if (++ws->count >= ws->max) {
		ws->stop = 1;
		return;
	}
	/* Keep the table at most half full (it is never full: the search
	 * above always ends on a free slot). */
	if (ws->count * 2 >= ws->cap && seen_grow(ws) < 0)
		ws->stop = 1;
}

/* Appends the n bytes of one character, or cuts the word (the rest of the
 * run is read and dropped) when it would pass MAM_WORD_MAX. */
static void
word_add(struct words *ws, const uint8_t *c, size_t n)
{
	if (!ws->in_word) {
		ws->in_word = 1;
		ws->full = 0;
		ws->wlen = 0;
	}
	if (ws->full)
		return;
	if (ws->wlen + n > MAM_WORD_MAX) {
		/* The word is cut before this character, and stays so: a
		 * shorter character further on must not be glued on. */
		ws->full = 1;
		return;
	}
	memcpy(ws->w + ws->wlen, c, n);
	ws->wlen += n;
}

/* Splits folded text (valid UTF-8, NFC) into words. A mark can only be
 * here if case folding made one; it belongs to the word it follows. */
static void
split_folded(struct words *ws, const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n && !ws->stop) {
		ucs4_t c;
		int k = u8_mbtouc_unsafe(&c, s + i, n - i);

		if (k <= 0)
			k = 1;
		if (is_word(c) || (ws->in_word && is_mark(c)))
			word_add(ws, s + i, (size_t)k);
		else
			word_end(ws);
		i += (size_t)k;
	}
}

/* An all-ASCII chunk: folding is A-Z -> a-z (see the top of the file). */
static void
split_ascii(struct words *ws, const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n && !ws->stop; i++) {
		uint8_t c = s[i];

		if (c >= 'A' && c <= 'Z') {
			c = (uint8_t)(c - 'A' + 'a');
			word_add(ws, &c, 1);
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			word_add(ws, &c, 1);
		} else {
			word_end(ws);
		}
	}
}

/* Drops the combining marks (general category M) of valid UTF-8 in place;
 * returns the new length. */
static size_t
drop_marks(uint8_t *s, size_t n)
{
	size_t i = 0, o = 0;

	while (i < n) {
		ucs4_t c;
		int k = u8_mbtouc_unsafe(&c, s + i, n - i);

		if (k <= 0)
			k = 1;
		if (!is_mark(c)) {
			memmove(s + o, s + i, (size_t)k);
			o += (size_t)k;
		}
		i += (size_t)k;
	}
	return o;
}

/* Folds one chunk of valid UTF-8 (mam_text.h, "Folding") and splits it.
 * Out of memory in libunistring: the rest of the text gives no words. */
static void
fold_chunk(struct words *ws, const uint8_t *s, size_t n)
{
	uint8_t room1[FOLD_ROOM], room2[FOLD_ROOM];
	uint8_t *d, *f;
	size_t dlen = sizeof(room1), flen = sizeof(room2);

	d = u8_normalize(UNINORM_NFKD, s, n, room1, &dlen);
	if (d == NULL) {
		ws->stop = 1;
		return;
	}
	dlen = drop_marks(d, dlen);
	if (dlen == 0) {
		/* Only marks: no words, but they end none either (a chunk
		 * cut inside a letter's accents). */
		if (d != room1)
			free(d);
		return;
	}
	/* Full case folding, and NFC of the result in the same call. */
	f = u8_casefold(d, dlen, NULL, UNINORM_NFC, room2, &flen);
	if (d != room1)
		free(d);
	if (f == NULL) {
		ws->stop = 1;
		return;
	}
	split_folded(ws, f, flen);
	if (f != room2)
		free(f);
}

size_t
mam_text_words(const char *text, size_t len, size_t max_words,
    void (*fn)(const char *w, size_t wlen, void *ud), void *ud)
{
	const uint8_t *t = (const uint8_t *)text;
	uint8_t chunk[CHUNK];
	struct words ws;
	size_t pos = 0;

	if (max_words == 0 || len == 0 || text == NULL)
		return 0;
	memset(&ws, 0, sizeof(ws));
	ws.max = max_words;
	ws.fn = fn;
	ws.ud = ud;
	ws.seen = ws.stack_seen;
	ws.cap = SEEN_STACK;

	while (pos < len && !ws.stop) {
		size_t i = pos, cut = 0, starter = 0, end;
		size_t n = 0;
		int ascii = 1;

		/* Where this chunk ends: after the last space or punctuation
		 * that fits, else before the last character that is not a
		 * mark (a letter and its accents stay together), else where
		 * the room ends. */
		while (i < len) {
			ucs4_t c;
			int k = u8_mbtoucr(&c, t + i, len - i);
			size_t adv = k > 0 ? (size_t)k : 1;

			if (i + adv - pos > CHUNK)
				break;
			if (k <= 0 || is_cut(c))
				cut = i + adv;
			else if (!is_mark(c))
				starter = i;
			i += adv;
		}
		if (i == len)
			end = len;
		else if (cut > pos)
			end = cut;
		else if (starter > pos)
			end = starter;
		else
			end = i;

		/* The chunk, with each byte that is not UTF-8 (RFC 3629 4)
		 * made a space: a separator. */
		for (i = pos; i < end;) {
			ucs4_t c;
			int k = u8_mbtoucr(&c, t + i, end - i);

			if (k <= 0) {
				chunk[n++] = ' ';
				i++;
				continue;
			}
			if (k > 1)
				ascii = 0;
			memcpy(chunk + n, t + i, (size_t)k);
			n += (size_t)k;
			i += (size_t)k;
		}
		if (ascii)
			split_ascii(&ws, chunk, n);
		else
			fold_chunk(&ws, chunk, n);
		pos = end;
	}
	word_end(&ws);
	if (ws.seen != ws.stack_seen)
		free(ws.seen);
	return ws.count;
}
