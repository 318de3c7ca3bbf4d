/*
 * clock.h - the two times the server keeps: a monotonic clock in
 * milliseconds for timeouts and idle times, and the wall-clock time the
 * daemon started (xmppctl status, XEP-0012 uptime).
 *
 * Any thread.
 */
#ifndef XMPPD_CLOCK_H
#define XMPPD_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t clock_now_ms(void);

/* Set once by main() at start-up; 0 before. */
void clock_set_start_time(time_t t);
time_t clock_start_time(void);

#endif
