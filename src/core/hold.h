/*
 * hold.h - a stream's stanzas in order while their store work is pending
 * (RFC 6120 10.1: the server processes a stream's stanzas in the order it
 * received them; doc/architecture.md, "The asynchronous store").
 *
 * A transport (c2s, s2s) gives each stream a hold and makes it current
 * around the handling of each input element (hold_enter / hold_leave).
 * Every asynchronous operation started meanwhile takes the current hold
 * (hold_take): a count on it, released when the operation's callback has
 * returned, and taken again by operations that callback starts, which are
 * still that stanza's work. While the count is above zero the stream is
 * held: its transport reads no further input. When it drops to zero the
 * transport's resume function runs (and reads on).
 *
 * All of it runs on the stream's worker: no locks.
 */
#ifndef XMPPD_HOLD_H
#define XMPPD_HOLD_H

struct hold;

/* A stream's hold; resume(ud) runs when its count drops to zero. NULL if
 * out of memory (the stream is then never held). */
struct hold *hold_new(void (*resume)(void *ud), void *ud);
/* The stream is gone: h is freed now, or when its last work completes
 * (resume no longer runs). NULL allowed. */
void hold_detach(struct hold *h);

/* Makes h current on this thread (NULL: none) and returns what was; give
 * that back to hold_leave. */
struct hold *hold_enter(struct hold *h);
void hold_leave(struct hold *previous);
/* Work is pending on h. */
int hold_busy(const struct hold *h);

/* For asynchronous operations: counts against the current hold and
 * returns it (NULL if none); release it once the operation's callback has
 * returned (NULL allowed). */
struct hold *hold_take(void);
void hold_release(struct hold *h);

#endif
