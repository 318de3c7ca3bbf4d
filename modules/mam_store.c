/*
 * mam_store.c - the archive's ids, keys, records and dates (mam.h): pure
 * functions, tested by t/unit/t-mam.c.
 *
 * Ids (XEP-0313 5.2, XEP-0359 2): 64-bit, the microseconds since the
 * epoch at which the message was archived, bumped by one when two
 * messages would get the same (an atomic compare-and-swap over the
 * process), so that they are unique and strictly increasing across the
 * server, and one user's archive is in id order = time order. An id is
 * also a time: 'start' and 'end' map to id bounds. Printed as 16
 * lowercase hex digits (fixed width, so the text sorts as the number).
 * After a restart the clock has moved on; a clock set back by more than
 * the time the server was down could give an id again, which would
 * replace that row: keep the clock right (NTP).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mam.h"

static _Atomic uint64_t last_id;

uint64_t
mam_id_next(uint64_t now_us)
{
	uint64_t prev = atomic_load(&last_id), next;

	do
		next = now_us > prev ? now_us : prev + 1;
	while (!atomic_compare_exchange_weak(&last_id, &prev, next));
	return next;
}

uint64_t
mam_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void
mam_id_format(uint64_t id, char *buf)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = MAM_ID_TEXT - 1; i >= 0; i--, id >>= 4)
		buf[i] = hex[id & 0xf];
	buf[MAM_ID_TEXT] = '\0';
}

int
mam_id_parse(const char *s, uint64_t *id_r)
{
	uint64_t v = 0;
	int i;

	if (s == NULL)
		return -1;
	for (i = 0; i < MAM_ID_TEXT; i++) {
		char c = s[i];

		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return -1;
	}
	if (s[i] != '\0')
		return -1;
	*id_r = v;
	return 0;
}

void
mam_put_id(unsigned char *p, uint64_t id)
{
	for (int i = MAM_ID_LEN - 1; i >= 0; i--, id >>= 8)
		p[i] = (unsigned char)(id & 0xff);
}

uint64_t
mam_get_id(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < MAM_ID_LEN; i++)
		v = v << 8 | p[i];
	return v;
}

size_t
mam_user_prefix(char *buf, const char *host, const char *node)
{
	size_t n = xmppd_store_key(buf, MAM_KEY_MAX, host, node, (char *)NULL);

	return n == 0 || n + MAM_ID_LEN >= MAM_KEY_MAX ? 0 : n;
}

size_t
mam_part_prefix(char *buf, const char *host, const char *node, const char *part)
{
	size_t n = xmppd_store_key(buf, MAM_KEY_MAX, host, node, part, (char *)NULL);

	return n == 0 || n + MAM_ID_LEN >= MAM_KEY_MAX ? 0 : n;
}

/* ---------------------------------------------------------------- */
/* Records.                                                           */

/*
 * Version 1: the version byte, the time (8 bytes big-endian, us), the
 * direction (1 byte: 0 received, 1 sent), the other party's bare JID and
 * full JID each followed by a NUL, then the message as text (the rest).
 */
#define REC_HEAD (1 + 8 + 1)

unsigned char *
mam_rec_encode(const struct mam_rec *r, size_t *len_r)
{
	size_t lb = strlen(r->with_bare), lf = strlen(r->with_full);
	size_t len = REC_HEAD + lb + 1 + lf + 1 + r->msg_len;
	unsigned char *v = malloc(len), *p;

	if (v == NULL)
		return NULL;
	v[0] = MAM_REC_VERSION;
	mam_put_id(v + 1, r->ts_us);
	v[9] = (unsigned char)r->dir;
	p = v + REC_HEAD;
	memcpy(p, r->with_bare, lb + 1);
	p += lb + 1;
	memcpy(p, r->with_full, lf + 1);
	p += lf + 1;
	memcpy(p, r->msg, r->msg_len);
	*len_r = len;
	return v;
}

int
mam_rec_decode(const void *val, size_t vlen, struct mam_rec *r)
{
	const unsigned char *v = val, *p, *end = v + vlen, *nul;

	if (vlen < REC_HEAD + 2 || v[0] != MAM_REC_VERSION || v[9] > MAM_DIR_OUT)
		return -1;
	r->ts_us = mam_get_id(v + 1);
	r->dir = v[9];
	p = v + REC_HEAD;
	if ((nul = memchr(p, '\0', (size_t)(end - p))) == NULL)
		return -1;
	r->with_bare = (const char *)p;
	p = nul + 1;
	if ((nul = memchr(p, '\0', (size_t)(end - p))) == NULL)
		return -1;
	r->with_full = (const char *)p;
	p = nul + 1;
	r->msg = (const char *)p;
	r->msg_len = (size_t)(end - p);
	return 0;
}

/* ---------------------------------------------------------------- */
/* Dates (XEP-0082 3.2).                                              */

static int
digits(const char **s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++, (*s)++) {
		if (**s < '0' || **s > '9')
			return -1;
		*v = *v * 10 + (**s - '0');
	}
	return 0;
}

int
mam_date_parse(const char *s, int64_t *us_r)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int64_t frac = 0, scale = 100000;
	struct tm tm;
	time_t t;

	if (s == NULL || digits(&s, 4, &y) < 0 || *s++ != '-' || digits(&s, 2, &mo) < 0 ||
	    *s++ != '-' || digits(&s, 2, &d) < 0 || *s++ != 'T' || digits(&s, 2, &h) < 0 ||
	    *s++ != ':' || digits(&s, 2, &mi) < 0 || *s++ != ':' || digits(&s, 2, &sec) < 0)
		return -1;
	if (*s == '.') {
		s++;
		if (*s < '0' || *s > '9')
			return -1;
		for (; *s >= '0' && *s <= '9'; s++) {
			frac += (*s - '0') * scale;
			scale /= 10;        /* digits past microseconds are dropped */
		}
	}
	if (*s == 'Z')
		s++;
	else if (*s == '+' || *s == '-') {
		sign = *s++ == '+' ? 1 : -1;
		if (digits(&s, 2, &oh) < 0 || *s++ != ':' || digits(&s, 2, &om) < 0 ||
		    oh > 23 || om > 59)
			return -1;
	} else
		return -1;
	if (*s != '\0' || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    h > 23 || mi > 59 || sec > 60)
		return -1;
	if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	t -= sign * (oh * 3600 + om * 60);
	if (t < 0)
		return -1;
	*us_r = (int64_t)t * 1000000 + frac;
	return 0;
}

void
mam_date_format(uint64_t us, char *buf, size_t size)
{
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;
	char base[32];

	gmtime_r(&t, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%06uZ", base, (unsigned)(us % 1000000u));
}

/* ---------------------------------------------------------------- */
/* Preferences.                                                       */

/*
 * Version 1: the version byte, the default (1 byte), the expiry (8 bytes
 * big-endian, two's complement: -1 the module's), then one line per JID,
 * "+JID\n" always, "-JID\n" never (a prepared JID has no control
 * characters: RFC 6122 / stringprep prohibit them).
 */
#define PREFS_HEAD (1 + 1 + 8)

unsigned char *
mam_prefs_encode(const struct mam_prefs *p, size_t *len_r)
{
	size_t len = PREFS_HEAD, i;
	unsigned char *v, *q;

	for (i = 0; i < p->n_always; i++)
		len += strlen(p->always[i]) + 2;
	for (i = 0; i < p->n_never; i++)
		len += strlen(p->never[i]) + 2;
	if ((v = malloc(len)) == NULL)
		return NULL;
	v[0] = MAM_PREFS_VERSION;
	v[1] = (unsigned char)p->def;
	mam_put_id(v + 2, (uint64_t)p->expiry);
	q = v + PREFS_HEAD;
	for (int list = 0; list < 2; list++) {
		char **jids = list == 0 ? p->always : p->never;
		size_t n = list == 0 ? p->n_always : p->n_never;

		for (i = 0; i < n; i++) {
			size_t l = strlen(jids[i]);

			*q++ = list == 0 ? '+' : '-';
			memcpy(q, jids[i], l);
			q += l;
			*q++ = '\n';
		}
	}
	*len_r = len;
	return v;
}

static int
list_add(char ***list, size_t *n, const char *s, size_t len)
{
	char **v = realloc(*list, (*n + 1) * sizeof(**list));

	if (v == NULL)
		return -1;
	*list = v;
	if ((v[*n] = strndup(s, len)) == NULL)
		return -1;
	(*n)++;
	return 0;
}

int
mam_prefs_decode(const void *val, size_t vlen, struct mam_prefs *p)
{
	const unsigned char *v = val, *q, *end = v + vlen, *nl;

	memset(p, 0, sizeof(*p));
	if (vlen < PREFS_HEAD || v[0] != MAM_PREFS_VERSION || v[1] > MAM_UNSET)
		return -1;
	p->def = v[1];
	p->expiry = (int64_t)mam_get_id(v + 2);
	for (q = v + PREFS_HEAD; q < end; q = nl + 1) {
		if ((nl = memchr(q, '\n', (size_t)(end - q))) == NULL || nl - q < 2 ||
		    (*q != '+' && *q != '-'))
			goto bad;
		if (list_add(*q == '+' ? &p->always : &p->never, *q == '+' ? &p->n_always :
		    &p->n_never, (const char *)q + 1, (size_t)(nl - q - 1)) < 0)
			goto bad;
	}
	return 0;
bad:
	mam_prefs_clear(p);
	return -1;
}

void
mam_prefs_clear(struct mam_prefs *p)
{
	for (size_t i = 0; i < p->n_always; i++)
		free(p->always[i]);
	for (size_t i = 0; i < p->n_never; i++)
		free(p->never[i]);
	free(p->always);
	free(p->never);
	p->always = p->never = NULL;
	p->n_always = p->n_never = 0;
}

/* XEP-0441 3 (as XEP-0313 had it): a bare JID in a list matches the
 * contact's every resource, a full JID only that one. */
static int
listed(char **list, size_t n, const char *bare, const char *full)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], bare) == 0 || (full != NULL && strcmp(list[i], full) == 0))
			return 1;
	return 0;
}

int
mam_prefs_rule(const struct mam_prefs *p, int module_default, const char *bare,
    const char *full)
{
	if (listed(p->never, p->n_never, bare, full))
		return 0;
	if (listed(p->always, p->n_always, bare, full))
		return 1;
	switch (p->def == MAM_UNSET ? module_default : p->def) {
	case MAM_NEVER:
		return 0;
	case MAM_ROSTER:
		return -1;
	default:
		return 1;
	}
}

size_t
mam_key_user(const void *key, size_t klen, char *host, char *node)
{
	const char *k = key, *e1, *e2;

	if ((e1 = memchr(k, '\0', klen)) == NULL || e1 == k)
		return 0;
	if ((e2 = memchr(e1 + 1, '\0', klen - (size_t)(e1 + 1 - k))) == NULL || e2 == e1 + 1)
		return 0;
	memcpy(host, k, (size_t)(e1 - k) + 1);
	memcpy(node, e1 + 1, (size_t)(e2 - e1));
	return (size_t)(e2 + 1 - k);
}
