/*
 * clock.c - see clock.h.
 */
#include "config.h"

#include <time.h>

#include "core/clock.h"

static time_t start_time;

uint64_t
clock_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
clock_set_start_time(time_t t)
{
	__atomic_store_n(&start_time, t, __ATOMIC_RELAXED);
}

time_t
clock_start_time(void)
{
	return __atomic_load_n(&start_time, __ATOMIC_RELAXED);
}
