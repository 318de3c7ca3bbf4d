/*
 * linger.h - closing a stream so that its last bytes reach the peer.
 *
 * Closing a socket with unread input makes the kernel send a reset, and a
 * reset makes the peer drop what we wrote last: the stream error that says
 * why. So a closing stream keeps reading (and discarding), waits until its
 * output has drained, shuts its side down, and waits for the peer's EOF, at
 * most LINGER_GRACE_MS (nginx calls this a lingering close). Every
 * connection closes this way: conn.c calls it, nothing else does.
 */
#ifndef XMPPD_LINGER_H
#define XMPPD_LINGER_H

#include <event2/bufferevent.h>
#include <event2/event.h>

#define LINGER_GRACE_MS 2000
#define LINGER_POLL_MS 20

struct linger_state {
	unsigned half_closed : 1;   /* our side is shut down */
	unsigned polls;             /* output polls so far */
};

/* Starts the close: input is discarded from now on (the caller's write
 * and event callbacks stay), and the timer polls the output. bev may be
 * NULL (nothing to drain: the timer frees the connection at once). */
void linger_start(struct linger_state *l, struct bufferevent *bev, struct event *timer,
    bufferevent_data_cb writecb, bufferevent_event_cb eventcb, void *arg);
/* Call when output may have drained (write callback, timer). */
void linger_check(struct linger_state *l, struct bufferevent *bev, struct event *timer);
/* The timer fired during a close: 1 if the connection must be freed now. */
int linger_timer(struct linger_state *l, struct bufferevent *bev, struct event *timer);

#endif
