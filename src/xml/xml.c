/*
 * xml.c - element trees, their arena, builder and serializer.
 *
 * Every node, attribute array and string of a tree lives in chunks owned by
 * the root: the root and a first chunk are one malloc, later chunks grow
 * geometrically, so a parsed stanza costs a handful of allocations and
 * freeing it is a walk over the chunk list. Elements know their parent so
 * that traversals (serialize, size, copy) are iterative: a peer controls the
 * depth of what we parse and must not control our stack depth.
 *
 * Allocation failure aborts: the builder API has no way to report it, and a
 * half-built stanza would be worse than no server.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "xml/xml.h"

/* ------------------------------------------------------------------------
 * Types
 */

struct xml_node {
	struct xml_node *next;
	int is_text;
};

struct xml_text_node {
	struct xml_node node;
	size_t len;
	char *s;			/* NUL-terminated */
};

struct xml_attr {
	const char *name;
	const char *value;
};

struct xml_tree;

struct xmppd_elem {
	struct xml_node node;		/* must stay first: nodes are cast */
	struct xml_tree *tree;
	xml_elem *parent;		/* NULL for the root */
	const char *ns;
	const char *name;
	struct xml_attr *attrs;
	unsigned nattrs, cattrs;
	struct xml_node *first, *last;
	const char *text;		/* xml_text cache */
};

struct xml_chunk {
	struct xml_chunk *next;
};

struct xml_tree {
	struct xmppd_elem root;		/* must stay first */
	unsigned refs;
	unsigned char lock;		/* xml_text's slow path only */
	char *cur, *end;		/* free space of the current chunk */
	struct xml_chunk *chunks;	/* chunks after the embedded one */
	size_t grow;			/* size of the next chunk */
};

/* Namespaces in XML 1.0 3: reserved, never declared. */
#define XML_NS_XMLNS	"http://www.w3.org/2000/xmlns/"

#define ARENA_ALIGN	_Alignof(void *)
#define FIRST_CHUNK	(2048 - sizeof(struct xml_tree))
#define MAX_CHUNK	(64 * 1024)

/* ------------------------------------------------------------------------
 * Arena
 */

static void *
xmalloc(size_t n)
{
	void *p;

	if ((p = malloc(n)) == NULL)
		abort();
	return p;
}

static size_t
align_up(size_t n, size_t a)
{
	return (n + a - 1) & ~(a - 1);
}

static struct xml_tree *
tree_new(size_t first)
{
	struct xml_tree *t;
	size_t hdr = align_up(sizeof(*t), ARENA_ALIGN);

	if (first > SIZE_MAX - hdr)
		abort();
	t = xmalloc(hdr + first);
	memset(t, 0, sizeof(*t));
	t->refs = 1;
	t->cur = (char *)t + hdr;
	t->end = t->cur + first;
	t->grow = 2048;
	return t;
}

static void
tree_free(struct xml_tree *t)
{
	struct xml_chunk *c, *next;

	for (c = t->chunks; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(t);
}

static void *
arena_alloc(struct xml_tree *t, size_t size, size_t align)
{
	struct xml_chunk *c;
	size_t hdr = align_up(sizeof(*c), ARENA_ALIGN), csize;
	uintptr_t p;
	char *mem;

	p = ((uintptr_t)t->cur + align - 1) & ~(uintptr_t)(align - 1);
	if (p <= (uintptr_t)t->end && size <= (uintptr_t)t->end - p) {
		t->cur = (char *)p + size;
		return (void *)p;
	}
	if (size > SIZE_MAX / 2 - hdr)
		abort();
	/*
	 * A big object gets a chunk of its own so that the free tail of the
	 * current chunk stays usable for the small ones that follow.
	 */
	if (size > t->grow / 4) {
		c = xmalloc(hdr + size);
		c->next = t->chunks;
		t->chunks = c;
		return (char *)c + hdr;
	}
	csize = t->grow;
	if (t->grow < MAX_CHUNK)
		t->grow *= 2;
	c = xmalloc(hdr + csize);
	c->next = t->chunks;
	t->chunks = c;
	mem = (char *)c + hdr;
	t->cur = mem + size;
	t->end = mem + csize;
	return mem;
}

static char *
arena_strndup(struct xml_tree *t, const char *s, size_t len)
{
	char *p = arena_alloc(t, len + 1, 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

static char *
arena_strdup(struct xml_tree *t, const char *s)
{
	return arena_strndup(t, s, strlen(s));
}

/* Grows the most recent allocation in place when the chunk has room. */
static int
arena_extend(struct xml_tree *t, char *p, size_t oldsize, size_t newsize)
{
	if (p + oldsize != t->cur || newsize < oldsize ||
	    newsize - oldsize > (size_t)(t->end - t->cur))
		return -1;
	t->cur = p + newsize;
	return 0;
}

/* ------------------------------------------------------------------------
 * Builder
 */

static void
elem_init(xml_elem *e, struct xml_tree *t, xml_elem *parent, const char *ns,
    const char *name)
{
	memset(e, 0, sizeof(*e));
	e->tree = t;
	e->parent = parent;
	/* Children usually share their parent's namespace: share the string. */
	if (ns == NULL)
		e->ns = NULL;
	else if (parent != NULL && parent->ns != NULL &&
	    strcmp(parent->ns, ns) == 0)
		e->ns = parent->ns;
	else
		e->ns = arena_strdup(t, ns);
	e->name = arena_strdup(t, name != NULL ? name : "");
}

xml_elem *
xml_elem_new(const char *ns, const char *name)
{
	struct xml_tree *t = tree_new(FIRST_CHUNK);

	elem_init(&t->root, t, NULL, ns, name);
	return &t->root;
}

static void
append_node(xml_elem *parent, struct xml_node *n)
{
	n->next = NULL;
	if (parent->last != NULL)
		parent->last->next = n;
	else
		parent->first = n;
	parent->last = n;
}

xml_elem *
xml_elem_add_child(xml_elem *parent, const char *ns, const char *name)
{
	xml_elem *e;

	e = arena_alloc(parent->tree, sizeof(*e), ARENA_ALIGN);
	elem_init(e, parent->tree, parent, ns, name);
	append_node(parent, &e->node);
	return e;
}

void
xml_elem_add_text(xml_elem *parent, const char *text, size_t len)
{
	struct xml_tree *t = parent->tree;
	struct xml_text_node *tn;
	char *s;

	if (len == 0)
		return;
	parent->text = NULL;
	/*
	 * Adjacent runs are merged so that an element holding only text has
	 * exactly one text node and xml_text needs no allocation.
	 */
	if (parent->last != NULL && parent->last->is_text) {
		tn = (struct xml_text_node *)parent->last;
		if (len > SIZE_MAX / 2 - tn->len)
			abort();
		if (arena_extend(t, tn->s, tn->len + 1, tn->len + len + 1) == 0) {
			memcpy(tn->s + tn->len, text, len);
		} else {
			s = arena_alloc(t, tn->len + len + 1, 1);
			memcpy(s, tn->s, tn->len);
			memcpy(s + tn->len, text, len);
			tn->s = s;
		}
		tn->len += len;
		tn->s[tn->len] = '\0';
		return;
	}
	tn = arena_alloc(t, sizeof(*tn), ARENA_ALIGN);
	tn->node.is_text = 1;
	tn->len = len;
	tn->s = arena_strndup(t, text, len);
	append_node(parent, &tn->node);
}

void
xml_attr_set(xml_elem *e, const char *name, const char *value)
{
	struct xml_tree *t = e->tree;
	struct xml_attr *na;
	unsigned i, n;

	for (i = 0; i < e->nattrs; i++)
		if (strcmp(e->attrs[i].name, name) == 0)
			break;
	if (value == NULL) {
		if (i == e->nattrs)
			return;
		memmove(&e->attrs[i], &e->attrs[i + 1],
		    (e->nattrs - i - 1) * sizeof(*e->attrs));
		e->nattrs--;
		return;
	}
	if (i < e->nattrs) {
		e->attrs[i].value = arena_strdup(t, value);
		return;
	}
	if (e->nattrs == e->cattrs) {
		n = e->cattrs ? e->cattrs * 2 : 4;
		na = arena_alloc(t, n * sizeof(*na), ARENA_ALIGN);
		if (e->nattrs)
			memcpy(na, e->attrs, e->nattrs * sizeof(*na));
		e->attrs = na;
		e->cattrs = n;
	}
	e->attrs[e->nattrs].name = arena_strdup(t, name);
	e->attrs[e->nattrs].value = arena_strdup(t, value);
	e->nattrs++;
}

void
xml_elem_remove_child(xml_elem *parent, xml_elem *child)
{
	struct xml_node **pp, *prev = NULL;

	for (pp = &parent->first; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
		if (*pp != &child->node)
			continue;
		*pp = child->node.next;
		if (parent->last == &child->node)
			parent->last = prev;
		child->node.next = NULL;
		/* Text on either side may now be adjacent: drop the cache. */
		parent->text = NULL;
		return;
	}
}

/* ------------------------------------------------------------------------
 * Reference counting
 */

xml_elem *
xml_elem_ref(xml_elem *root)
{
	if (root != NULL)
		__atomic_add_fetch(&root->tree->refs, 1, __ATOMIC_RELAXED);
	return root;
}

void
xml_elem_unref(xml_elem *root)
{
	struct xml_tree *t;

	if (root == NULL)
		return;
	t = root->tree;
	/* Release pairs with the acquire so the freeing thread sees all writes. */
	if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
		tree_free(t);
}

/* ------------------------------------------------------------------------
 * Accessors
 */

const char *
xml_elem_name(const xml_elem *e)
{
	return e->name;
}

const char *
xml_elem_ns(const xml_elem *e)
{
	return e->ns;
}

const char *
xml_attr_get(const xml_elem *e, const char *name)
{
	unsigned i;

	for (i = 0; i < e->nattrs; i++)
		if (strcmp(e->attrs[i].name, name) == 0)
			return e->attrs[i].value;
	return NULL;
}

int
xml_attr_at(const xml_elem *e, unsigned i, const char **name_r,
    const char **value_r)
{
	if (i >= e->nattrs)
		return -1;
	if (name_r != NULL)
		*name_r = e->attrs[i].name;
	if (value_r != NULL)
		*value_r = e->attrs[i].value;
	return 0;
}

static int
ns_match(const char *want, const char *have)
{
	if (want == NULL || have == NULL)
		return want == have;
	return want == have || strcmp(want, have) == 0;
}

xml_elem *
xml_child(const xml_elem *e, const char *ns, const char *name)
{
	struct xml_node *n;
	xml_elem *c;

	for (n = e->first; n != NULL; n = n->next) {
		if (n->is_text)
			continue;
		c = (xml_elem *)n;
		if (ns_match(ns, c->ns) &&
		    (name == NULL || strcmp(c->name, name) == 0))
			return c;
	}
	return NULL;
}

static xml_elem *
next_elem(struct xml_node *n)
{
	for (; n != NULL; n = n->next)
		if (!n->is_text)
			return (xml_elem *)n;
	return NULL;
}

xml_elem *
xml_first_child(const xml_elem *e)
{
	return next_elem(e->first);
}

xml_elem *
xml_next_sibling(const xml_elem *e)
{
	return next_elem(e->node.next);
}

static void
tree_lock(struct xml_tree *t)
{
	while (__atomic_test_and_set(&t->lock, __ATOMIC_ACQUIRE))
		;
}

static void
tree_unlock(struct xml_tree *t)
{
	__atomic_clear(&t->lock, __ATOMIC_RELEASE);
}

const char *
xml_text(xml_elem *e)
{
	struct xml_node *n;
	struct xml_text_node *tn, *only = NULL;
	const char *cached;
	size_t len = 0, runs = 0;
	char *s, *p;

	for (n = e->first; n != NULL; n = n->next) {
		if (!n->is_text)
			continue;
		only = (struct xml_text_node *)n;
		len += only->len;
		runs++;
	}
	if (runs == 0)
		return "";
	if (runs == 1)
		return only->s;

	/*
	 * Mixed content needs an allocation. Routed stanzas are shared
	 * between threads and read concurrently, so the arena is locked here
	 * (the only place a reader writes to a tree).
	 */
	cached = __atomic_load_n(&e->text, __ATOMIC_ACQUIRE);
	if (cached != NULL)
		return cached;
	tree_lock(e->tree);
	if ((cached = e->text) == NULL) {
		s = p = arena_alloc(e->tree, len + 1, 1);
		for (n = e->first; n != NULL; n = n->next) {
			if (!n->is_text)
				continue;
			tn = (struct xml_text_node *)n;
			memcpy(p, tn->s, tn->len);
			p += tn->len;
		}
		*p = '\0';
		cached = s;
		__atomic_store_n(&e->text, cached, __ATOMIC_RELEASE);
	}
	tree_unlock(e->tree);
	return cached;
}

const char *
xml_child_text(xml_elem *e, const char *ns, const char *name)
{
	xml_elem *c = xml_child(e, ns, name);

	return c != NULL ? xml_text(c) : NULL;
}

/* ------------------------------------------------------------------------
 * Copy
 */

/*
 * Upper bound of the arena bytes a copy of e's subtree takes, so that a copy
 * is one malloc.
 */
static size_t
copy_size(const xml_elem *top)
{
	const xml_elem *e = top;
	const struct xml_node *n;
	size_t sz = 0, a = ARENA_ALIGN;
	unsigned i;

	for (;;) {
		sz += align_up(sizeof(*e), a) + a;
		if (e->ns != NULL)
			sz += strlen(e->ns) + 1;
		sz += strlen(e->name) + 1;
		if (e->nattrs > 0)
			sz += align_up(e->nattrs * sizeof(*e->attrs), a) + a;
		for (i = 0; i < e->nattrs; i++)
			sz += strlen(e->attrs[i].name) + 1 +
			    strlen(e->attrs[i].value) + 1;
		n = e->first;
		for (;;) {
			for (; n != NULL && n->is_text; n = n->next) {
				sz += align_up(sizeof(struct xml_text_node), a) +
				    a + ((const struct xml_text_node *)n)->len + 1;
			}
			if (n != NULL) {
				e = (const xml_elem *)n;
				break;
			}
			if (e == top)
				return sz;
			n = e->node.next;
			e = e->parent;
		}
	}
}

static void
copy_into(xml_elem *d, const xml_elem *s)
{
	struct xml_tree *t = d->tree;
	unsigned i;

	if (s->nattrs == 0)
		return;
	d->attrs = arena_alloc(t, s->nattrs * sizeof(*d->attrs), ARENA_ALIGN);
	d->cattrs = d->nattrs = s->nattrs;
	for (i = 0; i < s->nattrs; i++) {
		d->attrs[i].name = arena_strdup(t, s->attrs[i].name);
		d->attrs[i].value = arena_strdup(t, s->attrs[i].value);
	}
}

/* Fills d (already named like top) with top's attributes, text and
 * children, in document order. */
static void
copy_tree(xml_elem *d, const xml_elem *top)
{
	const xml_elem *e = top;
	const struct xml_node *n;
	const struct xml_text_node *tn;

	for (;;) {
		copy_into(d, e);
		n = e->first;
		for (;;) {
			for (; n != NULL && n->is_text; n = n->next) {
				tn = (const struct xml_text_node *)n;
				xml_elem_add_text(d, tn->s, tn->len);
			}
			if (n != NULL) {
				e = (const xml_elem *)n;
				d = xml_elem_add_child(d, e->ns, e->name);
				break;
			}
			if (e == top)
				return;
			n = e->node.next;
			e = e->parent;
			d = d->parent;
		}
	}
}

xml_elem *
xml_elem_copy(const xml_elem *top)
{
	struct xml_tree *t = tree_new(copy_size(top));
	xml_elem *d = &t->root;

	elem_init(d, t, NULL, top->ns, top->name);
	copy_tree(d, top);
	return d;
}

xml_elem *
xml_elem_append_copy(xml_elem *parent, const xml_elem *src)
{
	xml_elem *d = xml_elem_add_child(parent, src->ns, src->name);

	copy_tree(d, src);
	return d;
}

/* ------------------------------------------------------------------------
 * Serializer
 *
 * One traversal serves xml_elem_size, xml_to_string and xml_serialize, so
 * the size is the serialized length by construction. Output to an evbuffer
 * is gathered in a stack buffer and added in runs.
 */

struct sink {
	size_t count;
	char *mem;			/* xml_to_string target, or NULL */
	struct evbuffer *evb;		/* xml_serialize target, or NULL */
	size_t blen;
	int failed;
	int qualify;			/* the top element declares its namespace */
	char buf[4096];
};

static void
sink_flush(struct sink *k)
{
	if (k->blen > 0 && evbuffer_add(k->evb, k->buf, k->blen) == -1)
		k->failed = 1;
	k->blen = 0;
}

static void
sink_add(struct sink *k, const char *p, size_t n)
{
	if (k->mem != NULL)
		memcpy(k->mem + k->count, p, n);
	k->count += n;
	if (k->evb == NULL)
		return;
	if (n > sizeof(k->buf) - k->blen) {
		sink_flush(k);
		if (n > sizeof(k->buf) / 2) {
			if (evbuffer_add(k->evb, p, n) == -1)
				k->failed = 1;
			return;
		}
	}
	memcpy(k->buf + k->blen, p, n);
	k->blen += n;
}

static void
sink_str(struct sink *k, const char *s)
{
	sink_add(k, s, strlen(s));
}

#define sink_lit(k, s) sink_add((k), (s), sizeof(s) - 1)

/*
 * Replacements, indexed by byte. Text escapes '>' too (the header promises
 * it and it keeps "]]>" out); attribute values escape both quotes and the
 * whitespace a parser would otherwise normalize to a space (XML 1.0 3.3.3),
 * and text escapes CR, which a parser would turn into LF (XML 1.0 2.11).
 */
static const char *const esc_text[256] = {
	['&'] = "&amp;", ['<'] = "&lt;", ['>'] = "&gt;", ['\r'] = "&#13;",
};
static const char *const esc_attr[256] = {
	['&'] = "&amp;", ['<'] = "&lt;", ['>'] = "&gt;", ['\''] = "&apos;",
	['"'] = "&quot;", ['\t'] = "&#9;", ['\n'] = "&#10;", ['\r'] = "&#13;",
};

static void
sink_escaped(struct sink *k, const char *s, size_t len,
    const char *const table[256])
{
	const char *run = s, *end = s + len, *r;

	for (; s < end; s++) {
		if ((r = table[(unsigned char)*s]) == NULL)
			continue;
		if (s > run)
			sink_add(k, run, s - run);
		sink_str(k, r);
		run = s + 1;
	}
	if (s > run)
		sink_add(k, run, s - run);
}

/*
 * The prefix an element is written with, or NULL. The XML namespace has its
 * own, which may not be declared as a default (Namespaces in XML 1.0 3).
 * The stream-namespace elements that travel at depth 1 (<stream:features/>,
 * <stream:error/>) use the "stream" prefix every stream header declares,
 * as peers traditionally expect (RFC 6120 4.8.5).
 */
static const char *
elem_prefix(const xml_elem *e, const xml_elem *top)
{
	if (e->ns == NULL)
		return NULL;
	if (strcmp(e->ns, XML_NS_XML) == 0)
		return "xml:";
	if (e == top && strcmp(e->ns, XML_NS_STREAM) == 0)
		return "stream:";
	return NULL;
}

/* The default namespace in scope inside e. */
static const char *
scope_ns(const xml_elem *e, const xml_elem *top, const char *dns)
{
	for (;;) {
		if (elem_prefix(e, top) == NULL)
			return e->ns != NULL ? e->ns : dns;
		if (e == top)
			return dns;
		e = e->parent;
	}
}

static void
sink_name(struct sink *k, const xml_elem *e, const xml_elem *top)
{
	const char *prefix = elem_prefix(e, top);

	if (prefix != NULL)
		sink_str(k, prefix);
	sink_str(k, e->name);
}

/* Splits "{uri}local"; local names cannot contain '}', URIs might. */
static int
split_clark(const char *name, const char **uri_r, size_t *urilen_r,
    const char **local_r)
{
	const char *close;

	if (name[0] != '{' || (close = strrchr(name, '}')) == NULL)
		return -1;
	*uri_r = name + 1;
	*urilen_r = close - name - 1;
	*local_r = close + 1;
	return 0;
}

static void
sink_prefix(struct sink *k, unsigned i)
{
	char tmp[16];
	size_t n = sizeof(tmp);

	do {
		tmp[--n] = '0' + i % 10;
		i /= 10;
	} while (i > 0);
	tmp[--n] = 'a';
	sink_add(k, tmp + n, sizeof(tmp) - n);
}

static void
sink_attrs(struct sink *k, const xml_elem *e)
{
	const char *uri, *local, *u2, *l2;
	size_t ulen, u2len;
	unsigned i, j;

	for (i = 0; i < e->nattrs; i++) {
		const char *name = e->attrs[i].name;

		/* Namespaces are carried by elements, never by attributes. */
		if (strcmp(name, "xmlns") == 0 ||
		    strncmp(name, "xmlns:", 6) == 0 ||
		    strncmp(name, "{" XML_NS_XMLNS "}",
		    sizeof(XML_NS_XMLNS) + 1) == 0)
			continue;
		sink_lit(k, " ");
		if (split_clark(name, &uri, &ulen, &local) == -1) {
			sink_str(k, name);
		} else if (ulen == sizeof(XML_NS_XML) - 1 &&
		    memcmp(uri, XML_NS_XML, ulen) == 0) {
			sink_lit(k, "xml:");
			sink_str(k, local);
		} else {
			/*
			 * A generated prefix per distinct URI on this element,
			 * named after the first attribute that uses it.
			 */
			for (j = 0; j < i; j++) {
				if (split_clark(e->attrs[j].name, &u2, &u2len,
				    &l2) == 0 && u2len == ulen &&
				    memcmp(u2, uri, ulen) == 0)
					break;
			}
			if (j == i) {
				sink_lit(k, "xmlns:");
				sink_prefix(k, i);
				sink_lit(k, "='");
				sink_escaped(k, uri, ulen, esc_attr);
				sink_lit(k, "' ");
			}
			sink_prefix(k, j);
			sink_lit(k, ":");
			sink_str(k, local);
		}
		sink_lit(k, "='");
		sink_escaped(k, e->attrs[i].value, strlen(e->attrs[i].value),
		    esc_attr);
		sink_lit(k, "'");
	}
}

static void
sink_open(struct sink *k, const xml_elem *e, const xml_elem *top,
    const char *dns)
{
	const char *outer, *mine;

	sink_lit(k, "<");
	sink_name(k, e, top);
	outer = e == top ? (k->qualify ? NULL : dns) : scope_ns(e->parent, top, dns);
	mine = scope_ns(e, top, dns);
	/*
	 * With no default_ns (logging), NULL-namespace elements are written
	 * without a declaration: there is nothing truthful to declare.
	 */
	if (elem_prefix(e, top) == NULL && mine != NULL &&
	    !ns_match(outer, mine)) {
		sink_lit(k, " xmlns='");
		sink_escaped(k, mine, strlen(mine), esc_attr);
		sink_lit(k, "'");
	}
	sink_attrs(k, e);
}

static void
sink_close(struct sink *k, const xml_elem *e, const xml_elem *top)
{
	sink_lit(k, "</");
	sink_name(k, e, top);
	sink_lit(k, ">");
}

static void
sink_tree(struct sink *k, const xml_elem *top, const char *dns)
{
	const xml_elem *e = top;
	const struct xml_node *n;
	const struct xml_text_node *tn;

	for (;;) {
		sink_open(k, e, top, dns);
		if (e->first == NULL) {
			sink_lit(k, "/>");
			if (e == top)
				return;
			n = e->node.next;
			e = e->parent;
		} else {
			sink_lit(k, ">");
			n = e->first;
		}
		/* Emit text and close finished elements up to the next child. */
		for (;;) {
			for (; n != NULL && n->is_text; n = n->next) {
				tn = (const struct xml_text_node *)n;
				sink_escaped(k, tn->s, tn->len, esc_text);
			}
			if (n != NULL) {
				e = (const xml_elem *)n;
				break;
			}
			sink_close(k, e, top);
			if (e == top)
				return;
			n = e->node.next;
			e = e->parent;
		}
	}
}

size_t
xml_elem_size(const xml_elem *e, const char *default_ns)
{
	struct sink k;

	k.count = 0;
	k.mem = NULL;
	k.evb = NULL;
	k.qualify = 0;
	sink_tree(&k, e, default_ns);
	return k.count;
}

static int
serialize(const xml_elem *e, const char *default_ns, struct evbuffer *out, int qualify)
{
	struct sink k;

	k.count = 0;
	k.mem = NULL;
	k.evb = out;
	k.blen = 0;
	k.failed = 0;
	k.qualify = qualify;
	sink_tree(&k, e, default_ns);
	sink_flush(&k);
	return k.failed ? -1 : 0;
}

int
xml_serialize(const xml_elem *e, const char *default_ns, struct evbuffer *out)
{
	return serialize(e, default_ns, out, 0);
}

int
xml_serialize_qualified(const xml_elem *e, const char *default_ns, struct evbuffer *out)
{
	return serialize(e, default_ns, out, 1);
}

char *
xml_to_string(const xml_elem *e, const char *default_ns, size_t *len_r)
{
	struct sink k;
	size_t len = xml_elem_size(e, default_ns);

	k.count = 0;
	k.mem = xmalloc(len + 1);
	k.evb = NULL;
	k.qualify = 0;
	sink_tree(&k, e, default_ns);
	k.mem[len] = '\0';
	if (len_r != NULL)
		*len_r = len;
	return k.mem;
}

void
xml_escape_attr(struct evbuffer *out, const char *s)
{
	struct sink k;

	k.count = 0;
	k.mem = NULL;
	k.evb = out;
	k.blen = 0;
	k.failed = 0;
	k.qualify = 0;
	sink_escaped(&k, s, strlen(s), esc_attr);
	sink_flush(&k);
}
