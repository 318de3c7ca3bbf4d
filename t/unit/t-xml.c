/*
 * t-xml.c - element trees: builder, accessors, copy, refcount, serializer.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "xml/xml.h"
#include "xml/stream.h"

#define NS_CLIENT	"jabber:client"

/* Serializes with xml_to_string and checks the other two paths agree. */
static char *
ser(const xml_elem *e, const char *dns)
{
	struct evbuffer *b = evbuffer_new();
	size_t len, blen;
	char *s;

	s = xml_to_string(e, dns, &len);
	assert_int_equal(strlen(s), len);
	assert_int_equal(xml_elem_size(e, dns), len);
	assert_int_equal(xml_serialize(e, dns, b), 0);
	blen = evbuffer_get_length(b);
	assert_int_equal(blen, len);
	assert_memory_equal(evbuffer_pullup(b, -1), s, len);
	evbuffer_free(b);
	return s;
}

static void
assert_ser(const xml_elem *e, const char *dns, const char *want)
{
	char *s = ser(e, dns);

	assert_string_equal(s, want);
	free(s);
}

static xml_elem *
build_message(void)
{
	xml_elem *m, *c;

	m = xml_elem_new(NULL, "message");
	xml_attr_set(m, "to", "juliet@example.com/balcony");
	xml_attr_set(m, "type", "chat");
	xml_attr_set(m, "xml:lang", "en");
	c = xml_elem_add_child(m, NULL, "body");
	xml_elem_add_text(c, "Wherefore", 9);
	xml_elem_add_text(c, " art thou?", 10);
	c = xml_elem_add_child(m, "http://jabber.org/protocol/chatstates",
	    "active");
	c = xml_elem_add_child(m, NULL, "thread");
	xml_elem_add_text(c, "t1", 2);
	return m;
}

static const char message_xml[] =
    "<message to='juliet@example.com/balcony' type='chat' xml:lang='en'>"
    "<body>Wherefore art thou?</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/>"
    "<thread>t1</thread></message>";

static void
test_build_serialize(void **state)
{
	xml_elem *m = build_message();

	assert_ser(m, NS_CLIENT, message_xml);
	/* NULL stands for whatever the stream's namespace is. */
	assert_ser(m, "jabber:server",
	    "<message to='juliet@example.com/balcony' type='chat' "
	    "xml:lang='en'><body>Wherefore art thou?</body>"
	    "<active xmlns='http://jabber.org/protocol/chatstates'/>"
	    "<thread>t1</thread></message>");
	assert_string_equal(xml_elem_name(m), "message");
	assert_null(xml_elem_ns(m));
	xml_elem_unref(m);
}

/* Parser side of the round trip. */
struct rt {
	xml_elem *e;
	int errors;
};

static void
rt_element(void *ud, xml_elem *e)
{
	struct rt *r = ud;

	assert_null(r->e);
	r->e = e;
}

static void
rt_error(void *ud, const char *cond, const char *text)
{
	struct rt *r = ud;

	r->errors++;
}

static xml_elem *
parse_one(const char *stanza)
{
	static const char hdr[] = "<stream:stream xmlns='jabber:client' "
	    "xmlns:stream='http://etherx.jabber.org/streams'>";
	struct xml_stream_cb cb = { .element = rt_element, .error = rt_error };
	struct rt r = { 0 };
	xml_stream *s;
	size_t used;

	s = xml_stream_new(&cb, &r, NULL);
	assert_non_null(s);
	assert_int_equal(xml_stream_feed(s, hdr, strlen(hdr), &used), 0);
	assert_int_equal(xml_stream_feed(s, stanza, strlen(stanza), &used), 0);
	assert_int_equal(r.errors, 0);
	xml_stream_free(&s);
	assert_null(s);
	assert_non_null(r.e);
	return r.e;
}

static void
test_round_trip(void **state)
{
	static const char *const cases[] = {
		message_xml,
		"<iq type='get' id='a&apos;&quot;&lt;&gt;&amp;'>"
		    "<query xmlns='jabber:iq:roster'><item jid='a@b'/></query>"
		    "</iq>",
		"<message><body>a &amp; b &lt; c &gt; d ' \"</body>"
		    "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
		    "<body xmlns='http://www.w3.org/1999/xhtml'><p>x<b>y</b>z"
		    "</p></body></html></message>",
		"<presence xmlns:a0='urn:x' a0:y='1' xml:lang='de'/>",
		"<x xmlns='urn:a'><y xmlns='jabber:client'/></x>",
		"<message><e xmlns=''>no namespace</e></message>",
		"<message><xml:e><f/></xml:e></message>",
	};
	xml_elem *e, *e2;
	char *s, *s2;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		e = parse_one(cases[i]);
		s = ser(e, NS_CLIENT);
		assert_string_equal(s, cases[i]);
		/* And once more through the parser: a fixed point. */
		e2 = parse_one(s);
		s2 = ser(e2, NS_CLIENT);
		assert_string_equal(s2, s);
		free(s);
		free(s2);
		xml_elem_unref(e);
		xml_elem_unref(e2);
	}
}

static void
test_escaping(void **state)
{
	static const char nasty[] = "a&b<c>d'e\"f";
	struct evbuffer *b;
	xml_elem *e;
	size_t n;

	e = xml_elem_new(NULL, "x");
	xml_attr_set(e, "v", nasty);
	xml_elem_add_text(e, nasty, strlen(nasty));
	assert_ser(e, NS_CLIENT,
	    "<x v='a&amp;b&lt;c&gt;d&apos;e&quot;f'>"
	    "a&amp;b&lt;c&gt;d'e\"f</x>");
	/* Values keep what they were: escaping is on output only. */
	assert_string_equal(xml_attr_get(e, "v"), nasty);
	assert_string_equal(xml_text(e), nasty);
	xml_elem_unref(e);

	/* Whitespace a parser would normalize survives a round trip. */
	e = xml_elem_new(NULL, "x");
	xml_attr_set(e, "v", "1\t2\n3\r4");
	xml_elem_add_text(e, "a\r\nb", 4);
	assert_ser(e, NS_CLIENT,
	    "<x v='1&#9;2&#10;3&#13;4'>a&#13;\nb</x>");
	xml_elem_unref(e);

	b = evbuffer_new();
	xml_escape_attr(b, nasty);
	xml_escape_attr(b, "");
	xml_escape_attr(b, "plain");
	n = evbuffer_get_length(b);
	assert_int_equal(n, strlen("a&amp;b&lt;c&gt;d&apos;e&quot;fplain"));
	assert_memory_equal(evbuffer_pullup(b, -1),
	    "a&amp;b&lt;c&gt;d&apos;e&quot;fplain", n);
	evbuffer_free(b);
}

static void
test_namespaces(void **state)
{
	xml_elem *e, *c, *g;

	/* A root in the default namespace carries no declaration. */
	e = xml_elem_new(NULL, "iq");
	assert_ser(e, NS_CLIENT, "<iq/>");
	xml_elem_unref(e);

	/* Nor does one that names the default explicitly. */
	e = xml_elem_new(NS_CLIENT, "iq");
	assert_ser(e, NS_CLIENT, "<iq/>");
	assert_ser(e, "jabber:server", "<iq xmlns='jabber:client'/>");
	xml_elem_unref(e);

	e = xml_elem_new("urn:ietf:params:xml:ns:xmpp-tls", "starttls");
	assert_ser(e, NS_CLIENT,
	    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
	xml_elem_unref(e);

	/* Foreign child, then a grandchild back in the default. */
	e = xml_elem_new(NULL, "iq");
	c = xml_elem_add_child(e, "jabber:iq:roster", "query");
	g = xml_elem_add_child(c, "jabber:iq:roster", "item");
	g = xml_elem_add_child(c, NULL, "back");
	xml_elem_add_child(g, NULL, "deeper");
	xml_elem_add_child(g, "urn:other", "other");
	xml_elem_add_child(e, NULL, "sibling");
	assert_ser(e, NS_CLIENT,
	    "<iq><query xmlns='jabber:iq:roster'><item/>"
	    "<back xmlns='jabber:client'><deeper/>"
	    "<other xmlns='urn:other'/></back></query><sibling/></iq>");
	assert_ser(e, "jabber:server",
	    "<iq><query xmlns='jabber:iq:roster'><item/>"
	    "<back xmlns='jabber:server'><deeper/>"
	    "<other xmlns='urn:other'/></back></query><sibling/></iq>");
	xml_elem_unref(e);

	/* "" is no namespace at all. */
	e = xml_elem_new(NULL, "message");
	c = xml_elem_add_child(e, "", "x");
	xml_elem_add_child(c, "", "y");
	assert_ser(e, NS_CLIENT, "<message><x xmlns=''><y/></x></message>");
	xml_elem_unref(e);

	/* Depth-1 stream elements use the prefix the header declared. */
	e = xml_elem_new(XML_NS_STREAM, "features");
	c = xml_elem_add_child(e, "urn:ietf:params:xml:ns:xmpp-tls",
	    "starttls");
	xml_elem_add_child(c, "urn:ietf:params:xml:ns:xmpp-tls", "required");
	xml_elem_add_child(e, NULL, "x");
	assert_ser(e, NS_CLIENT,
	    "<stream:features><starttls "
	    "xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
	    "<x/></stream:features>");
	xml_elem_unref(e);

	/* The XML namespace is never a default: it has its prefix. */
	e = xml_elem_new(NULL, "message");
	c = xml_elem_add_child(e, XML_NS_XML, "odd");
	xml_elem_add_child(c, NULL, "in");
	xml_elem_add_child(c, "urn:q", "q");
	assert_ser(e, NS_CLIENT,
	    "<message><xml:odd><in/><q xmlns='urn:q'/></xml:odd></message>");
	xml_elem_unref(e);
	e = xml_elem_new(XML_NS_XML, "top");
	xml_elem_add_child(e, "urn:q", "q");
	assert_ser(e, NS_CLIENT, "<xml:top><q xmlns='urn:q'/></xml:top>");
	xml_elem_unref(e);

	/* Namespace URIs are attribute values: escaped. */
	e = xml_elem_new("urn:a'b", "x");
	assert_ser(e, NS_CLIENT, "<x xmlns='urn:a&apos;b'/>");
	xml_elem_unref(e);

	/* With no default at all (logging), NULL declares nothing. */
	e = xml_elem_new(NULL, "iq");
	xml_elem_add_child(e, "urn:q", "query");
	assert_ser(e, NULL, "<iq><query xmlns='urn:q'/></iq>");
	xml_elem_unref(e);
}

static void
test_attr_namespaces(void **state)
{
	xml_elem *e;
	const char *n, *v;

	e = xml_elem_new(NULL, "message");
	xml_attr_set(e, "xml:lang", "en");
	xml_attr_set(e, "{urn:x}a", "1");
	xml_attr_set(e, "plain", "2");
	xml_attr_set(e, "{urn:y}b", "3");
	xml_attr_set(e, "{urn:x}c", "4");
	xml_attr_set(e, "{" XML_NS_XML "}space", "preserve");
	/* Namespaces travel with elements; such attributes are dropped. */
	xml_attr_set(e, "xmlns", "urn:evil");
	xml_attr_set(e, "xmlns:p", "urn:evil");
	xml_attr_set(e, "{http://www.w3.org/2000/xmlns/}q", "urn:evil");
	assert_ser(e, NS_CLIENT,
	    "<message xml:lang='en' xmlns:a1='urn:x' a1:a='1' plain='2' "
	    "xmlns:a3='urn:y' a3:b='3' a1:c='4' xml:space='preserve'/>");
	assert_string_equal(xml_attr_get(e, "{urn:x}a"), "1");
	assert_string_equal(xml_attr_get(e, "xml:lang"), "en");
	assert_int_equal(xml_attr_at(e, 0, &n, &v), 0);
	assert_string_equal(n, "xml:lang");
	assert_string_equal(v, "en");
	xml_elem_unref(e);

	/* The parser spells them the same way. */
	e = parse_one("<message xml:lang='fr' xmlns:q='urn:q' q:z='9' "
	    "id='i'/>");
	assert_string_equal(xml_attr_get(e, "xml:lang"), "fr");
	assert_string_equal(xml_attr_get(e, "{urn:q}z"), "9");
	assert_string_equal(xml_attr_get(e, "id"), "i");
	assert_null(xml_attr_get(e, "z"));
	assert_ser(e, NS_CLIENT,
	    "<message xml:lang='fr' xmlns:a1='urn:q' a1:z='9' id='i'/>");
	xml_elem_unref(e);
}

static void
test_attrs(void **state)
{
	xml_elem *e;
	const char *n, *v;
	char name[16], val[16];
	unsigned i;

	e = xml_elem_new(NULL, "x");
	for (i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "a%u", i);
		snprintf(val, sizeof(val), "v%u", i);
		xml_attr_set(e, name, val);
	}
	xml_attr_set(e, "a3", "replaced");
	xml_attr_set(e, "a0", NULL);
	xml_attr_set(e, "missing", NULL);
	assert_null(xml_attr_get(e, "a0"));
	assert_string_equal(xml_attr_get(e, "a3"), "replaced");
	assert_string_equal(xml_attr_get(e, "a19"), "v19");
	for (i = 0; xml_attr_at(e, i, &n, &v) == 0; i++)
		;
	assert_int_equal(i, 19);
	assert_int_equal(xml_attr_at(e, 0, &n, &v), 0);
	assert_string_equal(n, "a1");
	assert_int_equal(xml_attr_at(e, 18, &n, &v), 0);
	assert_string_equal(n, "a19");
	assert_int_equal(xml_attr_at(e, 19, &n, &v), -1);
	xml_elem_unref(e);
}

static void
test_copy(void **state)
{
	xml_elem *m = build_message(), *c, *d;
	char *a, *b;

	xml_elem_add_text(m, "tail", 4);
	c = xml_elem_copy(m);
	a = ser(m, NS_CLIENT);
	b = ser(c, NS_CLIENT);
	assert_string_equal(a, b);
	free(b);

	/* Changing the copy leaves the original alone, and the reverse. */
	xml_attr_set(c, "type", "normal");
	xml_elem_add_child(c, NULL, "extra");
	xml_elem_unref(m);
	b = ser(c, NS_CLIENT);
	assert_string_not_equal(a, b);
	assert_string_equal(xml_attr_get(c, "type"), "normal");
	assert_string_equal(xml_child_text(c, NULL, "body"),
	    "Wherefore art thou?");
	free(a);
	free(b);

	/* A subtree copies into a new root of its own. */
	d = xml_elem_copy(xml_child(c, "http://jabber.org/protocol/chatstates",
	    NULL));
	xml_elem_unref(c);
	assert_ser(d, NS_CLIENT,
	    "<active xmlns='http://jabber.org/protocol/chatstates'/>");
	xml_elem_unref(d);
}

static void
test_refcount(void **state)
{
	xml_elem *m = build_message();

	assert_ptr_equal(xml_elem_ref(m), m);
	assert_ptr_equal(xml_elem_ref(m), m);
	xml_elem_unref(m);
	xml_elem_unref(m);
	/* Still alive: ASan would catch a use after free here. */
	assert_string_equal(xml_elem_name(m), "message");
	xml_elem_unref(m);
	xml_elem_unref(NULL);
	assert_null(xml_elem_ref(NULL));
}

static void
test_text(void **state)
{
	xml_elem *e, *c;
	const char *t1, *t2;

	e = xml_elem_new(NULL, "x");
	assert_string_equal(xml_text(e), "");
	xml_elem_add_text(e, "ab", 2);
	xml_elem_add_text(e, "", 0);
	xml_elem_add_text(e, "cd", 2);
	assert_string_equal(xml_text(e), "abcd");
	c = xml_elem_add_child(e, NULL, "y");
	xml_elem_add_text(c, "inner", 5);
	xml_elem_add_text(e, "ef", 2);
	/* Direct children only, and the cache hands out the same string. */
	t1 = xml_text(e);
	t2 = xml_text(e);
	assert_string_equal(t1, "abcdef");
	assert_ptr_equal(t1, t2);
	xml_elem_add_text(e, "g", 1);
	assert_string_equal(xml_text(e), "abcdefg");
	xml_elem_remove_child(e, c);
	assert_null(xml_first_child(e));
	assert_string_equal(xml_text(e), "abcdefg");
	assert_ser(e, NS_CLIENT, "<x>abcdefg</x>");
	xml_elem_unref(e);

	e = build_message();
	assert_string_equal(xml_child_text(e, NULL, "body"),
	    "Wherefore art thou?");
	assert_string_equal(xml_child_text(e, NULL, "thread"), "t1");
	assert_null(xml_child_text(e, NULL, "subject"));
	/* NULL matches the default namespace only. */
	assert_null(xml_child_text(e, NULL, "active"));
	assert_string_equal(xml_child_text(e,
	    "http://jabber.org/protocol/chatstates", "active"), "");
	assert_null(xml_child(e, "urn:nope", NULL));
	assert_string_equal(xml_elem_name(xml_child(e, NULL, NULL)), "body");
	xml_elem_unref(e);
}

static void
test_children(void **state)
{
	xml_elem *e, *a, *b, *c, *it;
	int n;

	e = xml_elem_new(NULL, "x");
	xml_elem_add_text(e, "t", 1);
	a = xml_elem_add_child(e, NULL, "a");
	xml_elem_add_text(e, "u", 1);
	b = xml_elem_add_child(e, NULL, "b");
	c = xml_elem_add_child(e, NULL, "c");
	xml_elem_add_text(e, "v", 1);
	assert_ptr_equal(xml_first_child(e), a);
	assert_ptr_equal(xml_next_sibling(a), b);
	assert_ptr_equal(xml_next_sibling(b), c);
	assert_null(xml_next_sibling(c));

	xml_elem_remove_child(e, b);
	assert_ptr_equal(xml_next_sibling(a), c);
	xml_elem_remove_child(e, a);
	xml_elem_remove_child(e, c);
	assert_null(xml_first_child(e));
	assert_ser(e, NS_CLIENT, "<x>tuv</x>");
	/* Adding after removing the last child keeps the list straight. */
	xml_elem_add_child(e, NULL, "d");
	xml_elem_add_child(e, NULL, "f");
	for (n = 0, it = xml_first_child(e); it; it = xml_next_sibling(it))
		n++;
	assert_int_equal(n, 2);
	assert_ser(e, NS_CLIENT, "<x>tuv<d/><f/></x>");
	xml_elem_unref(e);
}

/* Many nodes and big texts: chunk growth, dedicated big chunks. */
static void
test_big_tree(void **state)
{
	xml_elem *e, *c, *cp;
	char *big, *s, name[16];
	size_t n = 100000, len;
	unsigned i;

	big = malloc(n);
	memset(big, 'z', n);
	e = xml_elem_new(NULL, "x");
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "c%u", i);
		c = xml_elem_add_child(e, "urn:many", name);
		xml_attr_set(c, "i", name);
		xml_elem_add_text(c, name, strlen(name));
	}
	c = xml_elem_add_child(e, NULL, "big");
	for (i = 0; i < 10; i++)
		xml_elem_add_text(c, big, n / 10);
	assert_int_equal(strlen(xml_text(c)), n);
	assert_memory_equal(xml_text(c), big, n);

	cp = xml_elem_copy(e);
	s = ser(e, NS_CLIENT);
	len = strlen(s);
	assert_true(len > n);
	free(s);
	assert_int_equal(xml_elem_size(cp, NS_CLIENT), len);
	assert_string_equal(xml_child_text(cp, "urn:many", "c1999"), "c1999");
	xml_elem_unref(e);
	xml_elem_unref(cp);
	free(big);
}

/* Traversals are iterative: depth is not bounded by the C stack. */
static void
test_deep_tree(void **state)
{
	xml_elem *e, *c, *cp;
	unsigned i, depth = 200000;
	char *s;
	size_t len;

	e = c = xml_elem_new(NULL, "d");
	for (i = 0; i < depth; i++)
		c = xml_elem_add_child(c, i % 2 ? NULL : "urn:d", "d");
	xml_elem_add_text(c, "bottom", 6);
	cp = xml_elem_copy(e);
	s = xml_to_string(cp, NS_CLIENT, &len);
	assert_int_equal(len, xml_elem_size(e, NS_CLIENT));
	assert_non_null(strstr(s, ">bottom</d>"));
	assert_int_equal(strncmp(s, "<d><d xmlns='urn:d'><d xmlns='jabber:client'>",
	    45), 0);
	free(s);
	xml_elem_unref(e);
	xml_elem_unref(cp);
}

/* xml_elem_append_copy keeps attributes, namespaces and mixed content in
 * document order, and the copy belongs to the new tree. */
static void
test_append_copy(void **state)
{
	xml_elem *src = xml_elem_new(NULL, "message");
	xml_elem *body, *dst, *copy;
	char *a, *b;

	body = xml_elem_add_child(src, "http://www.w3.org/1999/xhtml", "body");
	xml_attr_set(body, "xml:lang", "en");
	xml_elem_add_text(body, "one ", 4);
	(void)xml_elem_add_child(body, "http://www.w3.org/1999/xhtml", "br");
	xml_elem_add_text(body, "two & <three>", 13);
	dst = xml_elem_new(NULL, "wrapper");
	copy = xml_elem_append_copy(dst, body);
	assert_ptr_equal(xml_first_child(dst), copy);
	xml_elem_unref(src);    /* the copy must not depend on the source */
	a = xml_to_string(copy, "jabber:client", NULL);
	b = xml_to_string(dst, "jabber:client", NULL);
	assert_string_equal(a, "<body xmlns='http://www.w3.org/1999/xhtml' xml:lang='en'>"
	    "one <br/>two &amp; &lt;three&gt;</body>");
	assert_string_equal(b, "<wrapper><body xmlns='http://www.w3.org/1999/xhtml' "
	    "xml:lang='en'>one <br/>two &amp; &lt;three&gt;</body></wrapper>");
	free(a);
	free(b);
	xml_elem_unref(dst);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_serialize),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_namespaces),
		cmocka_unit_test(test_attr_namespaces),
		cmocka_unit_test(test_attrs),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_children),
		cmocka_unit_test(test_big_tree),
		cmocka_unit_test(test_deep_tree),
		cmocka_unit_test(test_append_copy),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
