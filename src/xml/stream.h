/*
 * stream.h - incremental XMPP stream parser on top of expat.
 *
 * Fed the raw bytes of a stream in chunks of any size, it reports the stream
 * header, every depth-1 element (a stanza, or a negotiation element such as
 * <starttls/>) as a complete tree, and the end of the stream. The result is
 * the same however the input is split.
 *
 * Hostile input (RFC 6120 11.1, 4.9.3): a DOCTYPE, entity declaration,
 * processing instruction or comment ends the stream with "restricted-xml";
 * malformed XML with "not-well-formed"; a stanza over max_stanza_size bytes,
 * nesting deeper than max_depth or an element with more than max_attrs
 * attributes with "policy-violation"; a root element that is not
 * <stream:stream> in XML_NS_STREAM with "invalid-namespace". After an error
 * the parser accepts no more input.
 *
 * Bytes between stanzas (whitespace keepalives) count towards no limit.
 */
#ifndef XMPPD_XML_STREAM_H
#define XMPPD_XML_STREAM_H

#include <stddef.h>
#include "xml/xml.h"

typedef struct xml_stream xml_stream;

struct xml_stream_limits {
	size_t max_stanza_size;   /* bytes of one depth-1 element, with its tags */
	unsigned max_depth;       /* element depth counting <stream:stream> as 1 */
	unsigned max_attrs;       /* attributes per element */
};

struct xml_stream_cb {
	/* The <stream:stream> start tag. content_ns is the default namespace
	 * it declared ("jabber:client", "jabber:server", ...) or NULL. attrs
	 * is a NULL-terminated list of name, value pairs ("to", "from", "id",
	 * "version", "xml:lang"). */
	void (*stream_start)(void *ud, const char *content_ns, const char **attrs);
	/* A complete depth-1 element. Ownership passes to the callee (unref it
	 * when done). Elements in content_ns have ns NULL (see xml.h). */
	void (*element)(void *ud, xml_elem *e);
	/* </stream:stream>. */
	void (*stream_end)(void *ud);
	/* A stream error: condition is the RFC 6120 4.9.3 name
	 * ("not-well-formed", ...), text a human-readable detail. */
	void (*error)(void *ud, const char *condition, const char *text);
};

xml_stream *xml_stream_new(const struct xml_stream_cb *cb, void *ud,
    const struct xml_stream_limits *limits);
void xml_stream_free(xml_stream **s);

/*
 * Feeds len bytes. Returns 0 when the input was processed, -1 after a stream
 * error (reported through cb->error, once) or when the stream has ended.
 * *consumed_r is how many bytes were processed: less than len only when a
 * callback called xml_stream_restart, xml_stream_stop or xml_stream_pause;
 * the caller then feeds the rest (after a restart or a pause) or drops it
 * (after a stop).
 */
int xml_stream_feed(xml_stream *s, const char *data, size_t len, size_t *consumed_r);

/* From a callback or between feeds: the next bytes start a new stream
 * (RFC 6120 4.3.3, after STARTTLS and SASL). Processing of the current chunk
 * stops right after the current element. */
void xml_stream_restart(xml_stream *s);
/* From a callback: stop right after the current element; feed returns with
 * the bytes consumed so far. Used to hand the rest of the chunk elsewhere. */
void xml_stream_stop(xml_stream *s);
/* From an element callback: stop right after the current element; feed
 * returns 0 with the bytes consumed so far, and the stream stays open: the
 * caller keeps the rest and feeds it later (a stream whose stanza has work
 * pending, core/hold.h). Costs a parser swap, as a wake from hibernation. */
void xml_stream_pause(xml_stream *s);

/*
 * Gives back the expat parser (up to ~10 KiB with its buffers) of a stream
 * that sits between stanzas with nothing buffered; the next feed takes one
 * (from the thread's pool of reset parsers, or a new one) and puts it in
 * the same place by replaying the stream header without reporting it
 * again. Returns 1 if it gave the parser back, 0 if the stream is not at
 * such a point. For idle streams: a busy one would replay the header for
 * every stanza.
 */
int xml_stream_hibernate(xml_stream *s);

/* Frees the calling thread's pool of reset parsers (a thread's pool is
 * also freed when the thread exits). */
void xml_stream_pool_free(void);
/* Parsers in the calling thread's pool (for tests). */
unsigned xml_stream_pool_size(void);

/*
 * One element from its text (as xml_to_string wrote it, in content
 * namespace ns), through this parser and its limits: a new tree the caller
 * unrefs (the first, if there are several), or NULL if the text is not
 * well-formed.
 */
xml_elem *xml_parse_elem(const char *text, size_t len, const char *ns);

/* From stream_start: elements in ns are the stream's content (reported
 * with ns NULL) from now on, whatever the header declared. A WebSocket
 * stream's <open/> declares the framing namespace while its stanzas are
 * jabber:client (RFC 7395 3.3.2). 0, or -1 when out of memory. */
int xml_stream_set_content_ns(xml_stream *s, const char *ns);

/* Changes limits (for example a larger stanza size after authentication). */
void xml_stream_set_limits(xml_stream *s, const struct xml_stream_limits *limits);

#endif
