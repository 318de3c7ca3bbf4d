/*
 * smq.c - stream management's unacknowledged queue and counters (smq.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "c2s/smq.h"

void
smq_init(struct smq *q)
{
	memset(q, 0, sizeof(*q));
}

void
smq_free(struct smq *q)
{
	xml_elem *e;

	while ((e = smq_take(q)) != NULL)
		xml_elem_unref(e);
	free(q->v);
	q->v = NULL;
	q->cap = 0;
}

uint32_t
smq_len(const struct smq *q)
{
	return q->sent - q->acked;
}

static int
grow(struct smq *q)
{
	uint32_t n = q->cap ? q->cap * 2 : 16, len = smq_len(q);
	xml_elem **v = calloc(n, sizeof(*v));

	if (v == NULL)
		return -1;
	for (uint32_t i = 0; i < len; i++)
		v[i] = q->v[(q->head + i) % q->cap];
	free(q->v);
	q->v = v;
	q->cap = n;
	q->head = 0;
	return 0;
}

int
smq_push(struct smq *q, xml_elem *e, uint32_t max)
{
	uint32_t len = smq_len(q);

	if (len >= max || (len == q->cap && grow(q) < 0))
		return -1;
	q->v[(q->head + len) % q->cap] = xml_elem_ref(e);
	q->sent++;
	return 0;
}

int
smq_ack(struct smq *q, uint32_t h)
{
	uint32_t n = h - q->acked;

	if (n > smq_len(q))
		return -1;
	while (n-- > 0)
		xml_elem_unref(smq_take(q));
	return 0;
}

xml_elem *
smq_at(const struct smq *q, uint32_t i)
{
	return i < smq_len(q) ? q->v[(q->head + i) % q->cap] : NULL;
}

xml_elem *
smq_take(struct smq *q)
{
	xml_elem *e;

	if (smq_len(q) == 0)
		return NULL;
	e = q->v[q->head];
	q->v[q->head] = NULL;
	q->head = (q->head + 1) % q->cap;
	q->acked++;
	return e;
}
