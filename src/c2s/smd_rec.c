/*
 * smd_rec.c - the encoding of durable stream management's rows
 * (smd_rec.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "c2s/smd_rec.h"

static unsigned char *
put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
	return p + 4;
}

static unsigned char *
put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
	return p + 8;
}

static unsigned char *
put_str(unsigned char *p, const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	p = put_u32(p, (uint32_t)n);
	if (n > 0)
		memcpy(p, s, n);
	return p + n;
}

#define FIXED (1 + 4 + 8 + 4 + 8 + 1 + 4)

void *
smd_state_encode(const struct smd_state *s, size_t *len_r)
{
	const char *str[4] = { s->host, s->node, s->full, s->presence };
	size_t len = FIXED;
	unsigned char *buf, *p;

	for (int i = 0; i < 4; i++) {
		size_t n = str[i] != NULL ? strlen(str[i]) : 0;

		if (n > UINT32_MAX)
			return NULL;
		len += 4 + n;
	}
	if ((buf = malloc(len)) == NULL)
		return NULL;
	p = buf;
	*p++ = SMD_REC_VERSION;
	p = put_u32(p, s->h_in);
	p = put_u64(p, s->acked);
	p = put_u32(p, s->max);
	p = put_u64(p, s->deadline_ms);
	*p++ = s->available ? 1 : 0;
	p = put_u32(p, (uint32_t)s->priority);
	for (int i = 0; i < 4; i++)
		p = put_str(p, str[i]);
	*len_r = len;
	return buf;
}

struct rd {
	const unsigned char *p;
	size_t left;
	int bad;
};

static uint64_t
get_n(struct rd *r, int n)
{
	uint64_t v = 0;

	if (r->left < (size_t)n) {
		r->bad = 1;
		return 0;
	}
	for (int i = 0; i < n; i++)
		v = v << 8 | r->p[i];
	r->p += n;
	r->left -= (size_t)n;
	return v;
}

/* NULL for an empty string (and when bad). */
static char *
get_str(struct rd *r)
{
	uint64_t n = get_n(r, 4);
	char *s;

	if (r->bad || n == 0)
		return NULL;
	if (n > r->left || memchr(r->p, '\0', n) != NULL || (s = malloc(n + 1)) == NULL) {
		r->bad = 1;
		return NULL;
	}
	memcpy(s, r->p, n);
	s[n] = '\0';
	r->p += n;
	r->left -= n;
	return s;
}

int
smd_state_decode(const void *val, size_t len, struct smd_state *s)
{
	struct rd r = { val, len, 0 };

	memset(s, 0, sizeof(*s));
	if (get_n(&r, 1) != SMD_REC_VERSION)
		return -1;
	s->h_in = (uint32_t)get_n(&r, 4);
	s->acked = get_n(&r, 8);
	s->max = (uint32_t)get_n(&r, 4);
	s->deadline_ms = get_n(&r, 8);
	s->available = get_n(&r, 1) != 0;
	s->priority = (int)(int32_t)(uint32_t)get_n(&r, 4);
	s->host = get_str(&r);
	s->node = get_str(&r);
	s->full = get_str(&r);
	s->presence = get_str(&r);
	/* Host, node and full JID are required; nothing may follow. */
	if (r.bad || r.left != 0 || s->host == NULL || s->node == NULL || s->full == NULL) {
		smd_state_clear(s);
		return -1;
	}
	return 0;
}

void
smd_state_clear(struct smd_state *s)
{
	free(s->host);
	free(s->node);
	free(s->full);
	free(s->presence);
	memset(s, 0, sizeof(*s));
}
