/*
 * linger.c - lingering close of a stream (linger.h).
 */
#include "config.h"

#include <sys/socket.h>

#include <event2/buffer.h>

#include "stream/linger.h"

static void
arm(struct event *timer, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_del(timer);
	evtimer_add(timer, &tv);
}

static void
discard_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	evbuffer_drain(in, evbuffer_get_length(in));
}

void
linger_start(struct linger_state *l, struct bufferevent *bev, struct event *timer,
    bufferevent_data_cb writecb, bufferevent_event_cb eventcb, void *arg)
{
	if (bev == NULL) {
		l->half_closed = 1;
		arm(timer, 0);
		return;
	}
	bufferevent_setcb(bev, discard_read_cb, writecb, eventcb, arg);
	bufferevent_enable(bev, EV_READ);
	arm(timer, LINGER_POLL_MS);
}

void
linger_check(struct linger_state *l, struct bufferevent *bev, struct event *timer)
{
	struct bufferevent *u;
	size_t n;

	if (l->half_closed)
		return;
	if (bev != NULL) {
		/* Ours and, under a TLS filter, the socket's. */
		n = evbuffer_get_length(bufferevent_get_output(bev));
		if ((u = bufferevent_get_underlying(bev)) != NULL)
			n += evbuffer_get_length(bufferevent_get_output(u));
		if (n > 0)
			return;
		if (bufferevent_getfd(bev) >= 0)
			(void)shutdown(bufferevent_getfd(bev), SHUT_WR);
		else
			/* No socket (a bufferevent pair, in tests): the
			 * partner sees the end of the stream as EOF. */
			(void)bufferevent_flush(u != NULL ? u : bev, EV_WRITE, BEV_FINISHED);
	}
	l->half_closed = 1;
	/* From now on the timer only bounds the wait for EOF. */
	arm(timer, LINGER_GRACE_MS);
}

int
linger_timer(struct linger_state *l, struct bufferevent *bev, struct event *timer)
{
	if (l->half_closed || ++l->polls > LINGER_GRACE_MS / LINGER_POLL_MS)
		return 1;
	linger_check(l, bev, timer);
	if (!l->half_closed)
		arm(timer, LINGER_POLL_MS);
	return 0;
}
