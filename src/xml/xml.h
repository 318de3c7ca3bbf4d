/*
 * xml.h - element trees for stanzas, their builder and serializer.
 *
 * A tree is allocated from one arena owned by its root element: building or
 * parsing a stanza costs a handful of allocations, and freeing the root frees
 * everything. Roots are reference-counted with atomic operations because a
 * routed stanza crosses worker threads; a stanza is immutable once routed
 * (make a copy with xml_elem_copy to change one).
 *
 * Namespaces: every element carries its namespace URI, except that elements
 * in the stream's content namespace (jabber:client or jabber:server) carry
 * NULL, meaning "the default namespace of whatever stream this is written
 * to". A stanza parsed from an s2s stream can so be written to a c2s stream
 * unchanged. The serializer emits xmlns='...' only where an element's
 * namespace differs from its parent's.
 *
 * Attribute names: "type", "to", ...; "xml:lang" for the XML namespace; an
 * attribute in any other namespace is named "{uri}local".
 *
 * All strings returned are borrowed from the tree and live as long as it.
 */
#ifndef XMPPD_XML_H
#define XMPPD_XML_H

#include <stddef.h>

struct evbuffer;

typedef struct xmppd_elem xml_elem;

/* Builder. xml_elem_new creates a root (refcount 1) with its own arena. */
xml_elem *xml_elem_new(const char *ns, const char *name);
/* Adds a child element at the end, allocated in the root's arena. */
xml_elem *xml_elem_add_child(xml_elem *parent, const char *ns, const char *name);
/* Appends character data (not NUL-terminated, any length, unescaped). */
void xml_elem_add_text(xml_elem *parent, const char *text, size_t len);
/* Adds or replaces an attribute; value NULL removes it. */
void xml_attr_set(xml_elem *e, const char *name, const char *value);
/* Deep copy into a new root with refcount 1. */
xml_elem *xml_elem_copy(const xml_elem *e);
/* Appends a deep copy of src (from any tree) as the last child of parent;
 * returns the copy. */
xml_elem *xml_elem_append_copy(xml_elem *parent, const xml_elem *src);
/* Removes (and forgets) a child element; its memory stays in the arena. */
void xml_elem_remove_child(xml_elem *parent, xml_elem *child);

/* Reference counting, on roots only. unref frees at zero; NULL is allowed. */
xml_elem *xml_elem_ref(xml_elem *root);
void xml_elem_unref(xml_elem *root);

/* Accessors. */
const char *xml_elem_name(const xml_elem *e);
const char *xml_elem_ns(const xml_elem *e);          /* NULL = stream default */
const char *xml_attr_get(const xml_elem *e, const char *name);
/* Iterates attributes: i from 0 until it returns -1. */
int xml_attr_at(const xml_elem *e, unsigned i, const char **name_r, const char **value_r);
/* First child element with this name and namespace. ns NULL matches the
 * stream default namespace only; name NULL matches any name. */
xml_elem *xml_child(const xml_elem *e, const char *ns, const char *name);
/* Child elements in document order (text nodes are skipped). */
xml_elem *xml_first_child(const xml_elem *e);
xml_elem *xml_next_sibling(const xml_elem *e);
/* Concatenated character data of the direct children, NUL-terminated,
 * allocated in the arena (cached: repeated calls are cheap). "" if none. */
const char *xml_text(xml_elem *e);
/* Text of the first child element with this name/namespace, or NULL. */
const char *xml_child_text(xml_elem *e, const char *ns, const char *name);
/* Number of bytes the serialized form takes; counts the whole subtree. */
size_t xml_elem_size(const xml_elem *e, const char *default_ns);

/* Serializer. default_ns is the stream's content namespace that NULL stands
 * for ("jabber:client" on c2s). Escapes &, <, > in text and &, <, >, ', " in
 * attribute values; emits empty elements as <x/>. */
int xml_serialize(const xml_elem *e, const char *default_ns, struct evbuffer *out);
/* The same, with the top element declaring its namespace (default_ns for
 * NULL): a standalone element, as a WebSocket message carries one (RFC 7395
 * 3.3.3: every stanza fully qualified). */
int xml_serialize_qualified(const xml_elem *e, const char *default_ns, struct evbuffer *out);
/* The same into a malloc'd NUL-terminated string (tests, logging). */
char *xml_to_string(const xml_elem *e, const char *default_ns, size_t *len_r);
/* Escapes s for an attribute value into out. */
void xml_escape_attr(struct evbuffer *out, const char *s);

#define XML_NS_STREAM "http://etherx.jabber.org/streams"
#define XML_NS_XML "http://www.w3.org/XML/1998/namespace"

#endif
