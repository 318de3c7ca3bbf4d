/*
 * stanza.h - helpers for the three stanza kinds and their errors
 * (RFC 6120 8 and 8.3).
 *
 * Returned trees are new roots with refcount 1 owned by the caller.
 */
#ifndef XMPPD_STANZA_H
#define XMPPD_STANZA_H

#include "xml/xml.h"

enum stanza_kind {
	STANZA_MESSAGE,
	STANZA_PRESENCE,
	STANZA_IQ,
	STANZA_OTHER,       /* not a stanza: a negotiation or foreign element */
};

/* By name, for elements in the stream's content namespace (ns NULL). */
enum stanza_kind stanza_kind(const xml_elem *e);
/* The 'type' attribute or the RFC default ("normal" for messages,
 * "available" for presence without type, NULL for an IQ without one). */
const char *stanza_type(const xml_elem *e);

/* RFC 6121 4.7.2.3: a presence's <priority/>, an integer from -128 to
 * +127; 0 when absent or not such an integer. */
int stanza_priority(xml_elem *presence);

/* RFC 6120 8.3.2: the error type that goes with a defined condition. */
const char *stanza_error_type(const char *condition);

/*
 * Error reply to st (RFC 6120 8.3.1): a copy of st with 'to' and 'from'
 * swapped, type='error', and an <error/> child with condition (and text if
 * not NULL). Returns NULL if st is itself an error, or an IQ result (errors
 * are never answered, RFC 6120 8.3.1).
 */
xml_elem *stanza_error_reply(const xml_elem *st, const char *condition, const char *text);

/* IQ result (RFC 6120 8.2.3) to an IQ get/set: empty, with the same id and
 * 'to'/'from' swapped. The caller may add a child. */
xml_elem *stanza_iq_result(const xml_elem *iq);

#endif
