/*
 * session.h - a client session as the router sees it: one stream of an
 * account (or one still negotiating), on one worker, whatever carries it:
 * a TCP stream (c2s) today, WebSocket, BOSH or a stream-management session
 * that outlived its connection later.
 *
 * The transport embeds struct session in its connection object and fills
 * in the sink, struct session_ops: the session manager, the router and the
 * modules deliver to a session and end it through the sink, and never
 * name a transport (Prosody's session.send). This is the ABI's
 * xmppd_session.
 *
 * A session lives on one worker and is touched only on that worker's
 * thread. Other threads reach it by (worker, sid) with session_deliver and
 * session_kick, which post to the worker; the session may be gone by then,
 * and both cope.
 */
#ifndef XMPPD_SESSION_H
#define XMPPD_SESSION_H

#include <stdint.h>
#include <sys/socket.h>

#include "core/registry.h"
#include "xml/xml.h"
#include "xmpp/jid.h"

struct session;
struct worker;

/* The sink: what a transport does for the router. */
struct session_ops {
	/* Writes st to the client (the transport serializes it; st is
	 * borrowed). Not called on a closing session. */
	void (*send)(struct session *s, const xml_elem *st);
	/* Ends the session with a stream error (RFC 6120 4.9): condition,
	 * and text or NULL. */
	void (*close)(struct session *s, const char *condition, const char *text);
};

struct session {
	const struct session_ops *ops;
	struct session *hnext;          /* in the worker's sid hash */
	struct session *prev, *next;    /* in the worker's list */
	uint64_t sid;                   /* unique server-wide (worker in the top byte) */
	struct worker *w;
	jid jid;                        /* the bound full JID, once bound */
	unsigned bound : 1;             /* in the session manager's table */
	unsigned available : 1;         /* sent available presence (RFC 6121 4.2) */
	unsigned closing : 1;           /* ending: nothing more is sent to it */
	int priority;
	uint64_t last_input_ms;         /* clock_now_ms of the client's last bytes */
	struct module_slot *slots;      /* MODULE_MAX_SLOTS, allocated on first use */
	struct sockaddr_storage sa;     /* the client's address */
	char addr[64];                  /* and as text */
};

/* After worker_init: the per-worker tables. 0 or -1. */
int session_init(unsigned nworkers);
void session_free_all(void);

/* A new session on worker w, from w's thread: gives it its sid and puts it
 * in w's table, where session_deliver finds it. sa is copied. */
void session_add(struct session *s, struct worker *w, const struct session_ops *ops,
    const struct sockaddr *sa, socklen_t salen);
/* Ends what the router knows of s (session_end if it was bound) and takes
 * it out of the table; frees its module slots. The transport frees the
 * rest. */
void session_remove(struct session *s);
/* The session sid of worker w, or NULL (w's thread). */
struct session *session_find(struct worker *w, uint64_t sid);

/*
 * Binds s to its full JID s->jid (RFC 6120 7), set by the caller: enters
 * it in the session manager; an older session with the same full JID is
 * kicked with <conflict/> (7.7.2.2, the "override" policy).
 */
void session_bind(struct session *s);
/* Runs sm_session_opened for a bound session; the transport calls it once
 * the client has its bind result. */
void session_opened(struct session *s);
/* The end of a bound session (idempotent): sm_session_closed, unavailable
 * presence to the user's other resources if s was available (RFC 6121
 * 4.5.2, the server generates it), and out of the session manager. */
void session_end(struct session *s);

/* Any thread: delivers st to session sid on worker (user_receive_packet and
 * presence_in hooks first, then the sink). If the session is gone, a
 * message is routed again (RFC 6121 8.5.3.2, 8.5.2). st is referenced as
 * needed; the caller keeps its own. */
void session_deliver(unsigned worker, uint64_t sid, xml_elem *st);
/* The same for one of several copies of st (a stanza that went to more
 * than one resource): if the session is gone, this copy is dropped. */
void session_deliver_copy(unsigned worker, uint64_t sid, xml_elem *st);
/* Any thread: ends session sid with a stream error. condition and text
 * must be string constants (they are used on the other worker). */
void session_kick(unsigned worker, uint64_t sid, const char *condition, const char *text);

/* Calls fn for every bound, open session of the calling worker. */
void session_foreach_local(void (*fn)(struct session *s, void *ud), void *ud);
/* Frees slot on every session of w (module unload; w's thread). */
void session_clear_slot(struct worker *w, int slot);

/*
 * The IQ a module handles before authentication (XMPPD_IQ_STREAM) has no
 * address to answer to: while its handlers run, the transport names the
 * session it came on, and an answer to that IQ goes to it.
 */
void session_preauth_begin(struct session *s, const xml_elem *iq);
void session_preauth_end(void);
/* 1 if iq is the one being handled on this thread (reply written to its
 * session), 0 if not. */
int session_preauth_reply(const xml_elem *iq, const xml_elem *reply);
/* That session's client address, or NULL. */
const struct sockaddr *session_preauth_addr(const xml_elem *iq);

#endif
