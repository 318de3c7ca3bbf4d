/*
 * placement.c - see placement.h.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "core/placement.h"
#include "core/worker.h"

/* FNV-1a, 32 bits: cheap, and spreads domain names and JIDs well enough
 * over a handful of workers. */
static uint32_t
fnv1a(uint32_t h, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

#define FNV_BASIS 2166136261u

unsigned
placement_worker(const char *key, size_t len)
{
	unsigned n = worker_count();

	return n > 1 ? (unsigned)(fnv1a(FNV_BASIS, key, len) % n) : 0;
}

unsigned
placement_of(const jid *j)
{
	return placement_worker(j->bare, strlen(j->bare));
}

unsigned
placement_of_pair(const char *local, const char *remote)
{
	unsigned n = worker_count();
	uint32_t h = fnv1a(FNV_BASIS, local, strlen(local));

	h = fnv1a(h, " ", 1);
	h = fnv1a(h, remote, strlen(remote));
	return n > 1 ? (unsigned)(h % n) : 0;
}
