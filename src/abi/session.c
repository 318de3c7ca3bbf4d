/*
 * session.c - the session functions of the module ABI (hooks/xmppd.h),
 * over the router's sessions (router/session.h): whatever transport
 * carries a session, a module sees the same xmppd_session.
 *
 * These run on the session's own worker (hooks/xmppd.h: "the session
 * functions may not" be called from any thread).
 */
#include "config.h"

#include <stdlib.h>

#include "core/clock.h"
#include "core/registry.h"
#include "hooks/xmppd.h"
#include "router/session.h"
#include "router/sm.h"

#define SESS(s) ((struct session *)(s))

XMPPD_API const xmppd_jid *
xmppd_session_jid(xmppd_session *s)
{
	return &SESS(s)->jid;
}

XMPPD_API int
xmppd_session_available(xmppd_session *s)
{
	return SESS(s)->available;
}

XMPPD_API int
xmppd_session_priority(xmppd_session *s)
{
	return SESS(s)->priority;
}

XMPPD_API const struct sockaddr *
xmppd_session_addr(xmppd_session *s)
{
	return (const struct sockaddr *)&SESS(s)->sa;
}

XMPPD_API uint64_t
xmppd_session_idle_ms(xmppd_session *s)
{
	uint64_t now = clock_now_ms();

	return now > SESS(s)->last_input_ms ? now - SESS(s)->last_input_ms : 0;
}

XMPPD_API void
xmppd_session_send(xmppd_session *s, const xmppd_elem *stanza)
{
	if (!SESS(s)->closing)
		SESS(s)->ops->send(SESS(s), stanza);
}

XMPPD_API void
xmppd_session_close(xmppd_session *s, const char *condition, const char *text)
{
	if (!SESS(s)->closing)
		SESS(s)->ops->close(SESS(s), condition, text);
}

XMPPD_API void
xmppd_session_set_flags(xmppd_session *s, unsigned mask, unsigned value)
{
	struct session *x = SESS(s);

	if (x->bound)
		sm_set_flags(&x->jid, x->sid, mask & 0xffffu, value);
}

XMPPD_API unsigned
xmppd_session_flags(xmppd_session *s)
{
	struct session *x = SESS(s);

	return x->bound ? sm_flags(&x->jid, x->sid) : 0;
}

XMPPD_API void *
xmppd_session_get(xmppd_session *s, int slot)
{
	struct session *x = SESS(s);

	if (slot < 0 || slot >= MODULE_MAX_SLOTS || x->slots == NULL)
		return NULL;
	return x->slots[slot].data;
}

XMPPD_API void
xmppd_session_set(xmppd_session *s, int slot, void *data, void (*free_fn)(void *))
{
	struct session *x = SESS(s);

	if (slot < 0 || slot >= MODULE_MAX_SLOTS)
		return;
	if (x->slots == NULL && (x->slots = calloc(MODULE_MAX_SLOTS, sizeof(*x->slots))) == NULL)
		return;
	if (x->slots[slot].data != NULL && x->slots[slot].free_fn != NULL &&
	    x->slots[slot].data != data)
		x->slots[slot].free_fn(x->slots[slot].data);
	x->slots[slot].data = data;
	x->slots[slot].free_fn = free_fn;
}

struct foreach {
	void (*fn)(xmppd_session *s, void *ud);
	void *ud;
};

static void
foreach_one(struct session *s, void *ud)
{
	struct foreach *f = ud;

	f->fn((xmppd_session *)s, f->ud);
}

XMPPD_API void
xmppd_session_foreach_local(void (*fn)(xmppd_session *s, void *ud), void *ud)
{
	struct foreach f = { fn, ud };

	session_foreach_local(foreach_one, &f);
}
