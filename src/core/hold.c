/*
 * hold.c - holding a stream while its stanza's store work is pending
 * (hold.h).
 */
#include "config.h"

#include <stdlib.h>

#include "core/hold.h"

struct hold {
	unsigned count;
	int detached;
	void (*resume)(void *ud);
	void *ud;
};

static __thread struct hold *current;

struct hold *
hold_new(void (*resume)(void *ud), void *ud)
{
	struct hold *h = calloc(1, sizeof(*h));

	if (h != NULL) {
		h->resume = resume;
		h->ud = ud;
	}
	return h;
}

void
hold_detach(struct hold *h)
{
	if (h == NULL)
		return;
	if (current == h)
		current = NULL;
	if (h->count == 0)
		free(h);
	else
		h->detached = 1;
}

struct hold *
hold_enter(struct hold *h)
{
	struct hold *prev = current;

	current = h;
	return prev;
}

void
hold_leave(struct hold *previous)
{
	current = previous;
}

int
hold_busy(const struct hold *h)
{
	return h != NULL && h->count > 0;
}

struct hold *
hold_take(void)
{
	if (current != NULL)
		current->count++;
	return current;
}

void
hold_release(struct hold *h)
{
	if (h == NULL || --h->count > 0)
		return;
	if (h->detached)
		free(h);
	else if (h->resume != NULL)
		h->resume(h->ud);
}
