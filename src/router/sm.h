/*
 * sm.h - the session manager: the shared table of bound resources and the
 * RFC 6121 8.5 delivery rules for local addresses.
 *
 * The table is sharded by bare JID, each shard with its own mutex, and holds
 * for every bound resource the owning worker, the session id, presence state
 * and the last presence. Connections themselves stay on their worker; the
 * table only tells where to post a stanza (c2s_deliver).
 */
#ifndef XMPPD_SM_H
#define XMPPD_SM_H

#include <stddef.h>
#include <stdint.h>

#include "xml/xml.h"
#include "xmpp/jid.h"

struct sm_target {
	uint64_t sid;
	unsigned worker;
};

int sm_init(void);
void sm_free(void);

/*
 * Registers the bound resource full (RFC 6120 7). If it is already bound,
 * the previous session is returned in *old_r and 1 is returned: the caller
 * closes it with a <conflict/> stream error (RFC 6120 7.7.2.2, "override").
 */
int sm_bind(const jid *full, uint64_t sid, unsigned worker, const char *addr,
    struct sm_target *old_r);
/*
 * The resource full of session old_sid now belongs to session sid on
 * worker: stream management resumed it on another connection (XEP-0198 5),
 * so its presence and priority stay. 0, or -1 if the resource is no longer
 * old_sid's (a bind replaced it meanwhile).
 */
int sm_move(const jid *full, uint64_t old_sid, uint64_t sid, unsigned worker, const char *addr);
/* Removes the resource if it still belongs to sid. */
void sm_unbind(const jid *full, uint64_t sid);
/* Records presence: available with priority, and the presence stanza
 * (referenced), or unavailable (presence may be NULL). */
void sm_set_presence(const jid *full, uint64_t sid, int available, int priority,
    xml_elem *presence);

/* Routes st to the local address to (RFC 6121 8.5). from is the sender. */
void sm_route(xml_elem *st, const jid *from, const jid *to);

/* Sends st to every available resource of the user of full other than
 * full itself, and returns to full's session the last presence of each of
 * them (RFC 6121 4.2.2, 4.4.2: a user's resources see each other). */
void sm_presence_to_own_resources(xml_elem *st, const jid *full, uint64_t sid, int initial);

/* Sessions of a bare JID (all) or full JID (one): up to max; returns the
 * number found (which may exceed max). */
size_t sm_find(const jid *j, struct sm_target *out, size_t max);
size_t sm_session_count(void);

/* fn for the last presence of every available resource of bare. */
size_t sm_user_presences(const jid *bare, void (*fn)(const xml_elem *p, void *ud), void *ud);
/* A copy of st, 'to' set to each resource, to every session (or every
 * available one) of bare. Returns how many. */
size_t sm_send_to_resources(const jid *bare, const xml_elem *st, int available_only);

/* A resource's flags (XMPPD_RES_*): the bits of mask set to value's. */
void sm_set_flags(const jid *full, uint64_t sid, unsigned mask, unsigned value);
unsigned sm_flags(const jid *full, uint64_t sid);
/* Our oldest unanswered <r/> to it went at since_ms (0: none). */
void sm_set_ack_wait(const jid *full, uint64_t sid, uint64_t since_ms);

/* A copy of what the table has of one resource (xmppd_resource). */
struct sm_resource {
	const char *resource;       /* into full */
	char full[3 * 1024 + 4];
	uint64_t sid;
	unsigned worker;
	int available, priority;
	unsigned flags;
	uint64_t ack_wait_ms;
};
typedef void (*sm_resource_fn)(const struct sm_resource *r, void *ud);
/* fn for each bound resource of bare, outside the lock. Returns how many. */
size_t sm_resources(const jid *bare, sm_resource_fn fn, void *ud);

typedef void (*sm_foreach_fn)(void *ud, const char *full, unsigned worker,
    const char *addr, int priority, int available);
void sm_foreach(sm_foreach_fn fn, void *ud);

#endif
