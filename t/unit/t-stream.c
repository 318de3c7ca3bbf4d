/*
 * t-stream.c - the XMPP stream parser: splitting, hostile input, limits,
 * restart and stop.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "xml/xml.h"
#include "xml/stream.h"

#define NS_CLIENT	"jabber:client"
#define HEADER \
	"<stream:stream xmlns='jabber:client' " \
	"xmlns:stream='http://etherx.jabber.org/streams' to='example.com' " \
	"version='1.0' xml:lang='en'>"

/* ------------------------------------------------------------------------
 * A recorder: every callback becomes a line of r->log.
 */

struct rec {
	xml_stream *s;
	char *log;
	size_t len, cap;
	int errors;
	char cond[64];
	const char *restart_at;		/* element name that restarts */
	const char *stop_at;		/* element name that stops */
	int stopped;
	size_t raise_to;		/* new max_stanza_size after a stanza */
};

static void __attribute__((format(printf, 2, 3)))
rec_printf(struct rec *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	if (r->len + n + 1 > r->cap) {
		r->cap = (r->len + n + 1) * 2;
		r->log = realloc(r->log, r->cap);
		assert_non_null(r->log);
	}
	va_start(ap, fmt);
	vsnprintf(r->log + r->len, n + 1, fmt, ap);
	va_end(ap);
	r->len += n;
}

static void
cb_start(void *ud, const char *content_ns, const char **attrs)
{
	struct rec *r = ud;

	assert_int_equal(r->errors, 0);
	rec_printf(r, "start ns=%s", content_ns ? content_ns : "(null)");
	for (; attrs[0] != NULL; attrs += 2)
		rec_printf(r, " %s=%s", attrs[0], attrs[1]);
	rec_printf(r, "\n");
}

static void
cb_element(void *ud, xml_elem *e)
{
	struct rec *r = ud;
	char *s;

	assert_int_equal(r->errors, 0);
	s = xml_to_string(e, NS_CLIENT, NULL);
	rec_printf(r, "elem %s%s\n", xml_elem_ns(e) ? "{ns} " : "", s);
	free(s);
	if (r->restart_at && strcmp(xml_elem_name(e), r->restart_at) == 0)
		xml_stream_restart(r->s);
	if (r->stop_at && strcmp(xml_elem_name(e), r->stop_at) == 0) {
		xml_stream_stop(r->s);
		r->stopped = 1;
	}
	if (r->raise_to) {
		struct xml_stream_limits l = { r->raise_to, 16, 16 };

		xml_stream_set_limits(r->s, &l);
	}
	xml_elem_unref(e);
}

static void
cb_end(void *ud)
{
	struct rec *r = ud;

	assert_int_equal(r->errors, 0);
	rec_printf(r, "end\n");
}

static void
cb_error(void *ud, const char *cond, const char *text)
{
	struct rec *r = ud;

	r->errors++;
	snprintf(r->cond, sizeof(r->cond), "%s", cond);
	rec_printf(r, "error %s\n", cond);
}

static const struct xml_stream_cb rec_cb = {
	.stream_start = cb_start,
	.element = cb_element,
	.stream_end = cb_end,
	.error = cb_error,
};

static const struct xml_stream_limits lim_default = { 65536, 16, 32 };

static void
rec_init(struct rec *r, const struct xml_stream_limits *lim)
{
	memset(r, 0, sizeof(*r));
	r->s = xml_stream_new(&rec_cb, r, lim ? lim : &lim_default);
	assert_non_null(r->s);
}

static void
rec_done(struct rec *r)
{
	xml_stream_free(&r->s);
	free(r->log);
}

/*
 * Feeds one piece as a connection would: after a restart the unconsumed
 * rest is fed again, after a stop it is dropped. Returns the last result.
 */
/* Set by the hibernation tests: free the parser after every feed. */
static int hibernate_always;
static unsigned hibernations;

static int
feed_piece(struct rec *r, const char *p, size_t n)
{
	size_t used;
	int rc = 0, rounds = 0;

	while (n > 0) {
		rc = xml_stream_feed(r->s, p, n, &used);
		if (hibernate_always && rc == 0)
			hibernations += (unsigned)xml_stream_hibernate(r->s);
		if (rc == -1)
			break;
		assert_true(used <= n);
		if (used == n)
			break;
		if (r->stopped)
			break;
		/* Short only after a restart, which consumes the element. */
		assert_true(used > 0);
		p += used;
		n -= used;
		assert_true(++rounds < 100000);
	}
	return rc;
}

/* Splits into [0, cut) and [cut, len). */
static char *
run_split(const struct xml_stream_limits *lim, const char *data, size_t len,
    size_t cut, const char *restart_at, int *errors_r)
{
	struct rec r;
	char *log;

	rec_init(&r, lim);
	r.restart_at = restart_at;
	if (feed_piece(&r, data, cut) == 0)
		feed_piece(&r, data + cut, len - cut);
	log = r.log ? r.log : strdup("");
	r.log = NULL;
	if (errors_r != NULL)
		*errors_r = r.errors;
	assert_true(r.errors <= 1);
	rec_done(&r);
	return log;
}

static char *
run_bytes(const struct xml_stream_limits *lim, const char *data, size_t len,
    const char *restart_at, int *errors_r)
{
	struct rec r;
	char *log;
	size_t i;

	rec_init(&r, lim);
	r.restart_at = restart_at;
	for (i = 0; i < len; i++)
		if (feed_piece(&r, data + i, 1) == -1)
			break;
	log = r.log ? r.log : strdup("");
	r.log = NULL;
	if (errors_r != NULL)
		*errors_r = r.errors;
	assert_true(r.errors <= 1);
	rec_done(&r);
	return log;
}

/* Every split and the byte-at-a-time feed give exactly `want`. */
static void
check_all_splits(const struct xml_stream_limits *lim, const char *data,
    size_t len, const char *restart_at, const char *want)
{
	char *log;
	size_t cut;

	for (cut = 0; cut <= len; cut++) {
		log = run_split(lim, data, len, cut, restart_at, NULL);
		if (strcmp(log, want) != 0)
			fail_msg("split at %zu:\n%s\nwanted:\n%s", cut, log,
			    want);
		free(log);
	}
	log = run_bytes(lim, data, len, restart_at, NULL);
	assert_string_equal(log, want);
	free(log);
}

/* Exactly one error, whole, split anywhere and byte at a time. */
static void
check_one_error(const char *name, const struct xml_stream_limits *lim,
    const char *data, size_t len, const char *cond, int every_split)
{
	char *log, *want;
	size_t cut, step;
	int errors;
	const char *e;

	log = run_split(lim, data, len, len, NULL, &errors);
	if (errors != 1 || (e = strstr(log, "error ")) == NULL ||
	    strncmp(e + 6, cond, strlen(cond)) != 0 || e[6 + strlen(cond)] !=
	    '\n' || e[7 + strlen(cond)] != '\0')
		fail_msg("%s: want %s, got:\n%s", name, cond, log);
	want = log;
	step = every_split ? 1 : len / 97 + 1;
	for (cut = 0; cut <= len; cut += step) {
		log = run_split(lim, data, len, cut, NULL, &errors);
		assert_int_equal(errors, 1);
		if (strcmp(log, want) != 0)
			fail_msg("%s: split at %zu:\n%s\nwanted:\n%s", name,
			    cut, log, want);
		free(log);
	}
	log = run_bytes(lim, data, len, NULL, &errors);
	assert_int_equal(errors, 1);
	assert_string_equal(log, want);
	free(log);
	free(want);
}

/* ------------------------------------------------------------------------
 * (1) A client session, split every way
 */

static const char session[] =
    "<?xml version='1.0'?>\n"
    HEADER
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    " \n\t "
    "<message to='juliet@example.com/balcony' type='chat' id='m1' "
    "xml:lang='en'><body>Wherefore art thou, Romeo? &amp; &lt;3 \xc3\xb1 "
    "&#x263A; <![CDATA[<raw>]]></body>"
    "<thread>e0ffe42b28561960c6b12b944a092794b9683a38</thread>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>\r\n"
    "<iq type='get' id=\"r1\"><query xmlns='jabber:iq:roster'/></iq>   "
    "<presence><show>away</show><status>zZz\r\nline2</status>"
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' "
    "ver='v'/><x xmlns='urn:x'><y xmlns='jabber:client'>back</y></x>"
    "</presence>\n"
    "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN"
    "</mechanism></mechanisms></stream:features>"
    " \n"
    "</stream:stream>";

static const char session_log[] =
    "start ns=jabber:client to=example.com version=1.0 xml:lang=en\n"
    "elem {ns} <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n"
    "elem <message to='juliet@example.com/balcony' type='chat' id='m1' "
    "xml:lang='en'><body>Wherefore art thou, Romeo? &amp; &lt;3 \xc3\xb1 "
    "\xe2\x98\xba &lt;raw&gt;</body>"
    "<thread>e0ffe42b28561960c6b12b944a092794b9683a38</thread>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>\n"
    "elem <iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>\n"
    "elem <presence><show>away</show><status>zZz\nline2</status>"
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' "
    "ver='v'/><x xmlns='urn:x'><y xmlns='jabber:client'>back</y></x>"
    "</presence>\n"
    "elem {ns} <stream:features><mechanisms "
    "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
    "</mechanisms></stream:features>\n"
    "end\n";

static void
test_session_splits(void **state)
{
	/* The <message/> is the largest stanza: 278 bytes. */
	struct xml_stream_limits fits = { 278, 5, 5 }, over = { 277, 5, 5 };

	check_all_splits(NULL, session, strlen(session), NULL, session_log);
	/* The stanza limit is exact, and the header and spaces don't count. */
	check_all_splits(&fits, session, strlen(session), NULL, session_log);
	check_one_error("one byte over", &over, session, strlen(session),
	    "policy-violation", 1);
}

/*
 * Hibernating after every feed (the parser freed whenever the stream is
 * between stanzas, a new one made on the next bytes) changes nothing a
 * callback sees, however the input is split; namespace prefixes declared on
 * the root (s2s's xmlns:db) still resolve after a wake-up.
 */
static void
test_hibernate(void **state)
{
	static const char s2s[] =
	    "<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
	    "xmlns:stream='http://etherx.jabber.org/streams' to='a.example' "
	    "version='1.0'> <db:result from='b.example' to='a.example'>k3y</db:result>"
	    "\n<message from='u@b.example' to='v@a.example'><body>hi</body></message>"
	    "</stream:stream>";
	char *want, *got;

	hibernate_always = 1;
	hibernations = 0;
	check_all_splits(NULL, session, strlen(session), NULL, session_log);
	assert_true(hibernations > 0);
	/* The s2s stream: the same log with and without hibernation. */
	hibernate_always = 0;
	want = run_bytes(NULL, s2s, strlen(s2s), NULL, NULL);
	assert_non_null(strstr(want, "jabber:server:dialback"));
	hibernate_always = 1;
	hibernations = 0;
	got = run_bytes(NULL, s2s, strlen(s2s), NULL, NULL);
	hibernate_always = 0;
	assert_true(hibernations > 0);
	assert_string_equal(got, want);
	free(want);
	free(got);
}

static void
test_session_tree(void **state)
{
	static const char s[] = HEADER
	    "<message xmlns='jabber:client'><x xmlns='urn:x'>"
	    "<y xmlns='jabber:client'/></x><body>hi</body></message>";
	struct rec r;
	size_t used;

	rec_init(&r, NULL);
	assert_int_equal(xml_stream_feed(r.s, s, strlen(s), &used), 0);
	assert_int_equal(used, strlen(s));
	assert_string_equal(r.log,
	    "start ns=jabber:client to=example.com version=1.0 xml:lang=en\n"
	    "elem <message><x xmlns='urn:x'><y xmlns='jabber:client'/></x>"
	    "<body>hi</body></message>\n");
	/* After the end, no more input. */
	assert_int_equal(xml_stream_feed(r.s, "</stream:stream>", 16, &used),
	    0);
	assert_int_equal(xml_stream_feed(r.s, " ", 1, &used), -1);
	assert_int_equal(used, 0);
	assert_int_equal(r.errors, 0);
	rec_done(&r);
}

static void
keep_element(void *ud, xml_elem *e)
{
	xml_elem **last = ud;

	xml_elem_unref(*last);
	*last = e;
}

/* The trees themselves, not only their serialization. */
static void
test_stanza_namespaces(void **state)
{
	static const char s1[] = HEADER "<message xmlns='jabber:client'>"
	    "<x xmlns='urn:x'><y xmlns='jabber:client'/><z/></x>"
	    "</message>";
	static const char s2[] = "<stream:stream "
	    "xmlns:stream='http://etherx.jabber.org/streams'><message/>";
	struct xml_stream_cb cb = { .element = keep_element };
	xml_elem *last = NULL, *x;
	xml_stream *st;
	size_t used;

	st = xml_stream_new(&cb, &last, NULL);
	assert_int_equal(xml_stream_feed(st, s1, strlen(s1), &used), 0);
	assert_non_null(last);
	assert_null(xml_elem_ns(last));
	x = xml_first_child(last);
	assert_string_equal(xml_elem_ns(x), "urn:x");
	assert_null(xml_elem_ns(xml_first_child(x)));
	assert_non_null(xml_child(x, NULL, "y"));
	assert_non_null(xml_child(x, "urn:x", "z"));
	assert_null(xml_child(x, NULL, "z"));
	xml_elem_unref(last);
	xml_stream_free(&st);

	/* No content namespace: stanzas are in no namespace (""). */
	last = NULL;
	st = xml_stream_new(&cb, &last, NULL);
	assert_int_equal(xml_stream_feed(st, s2, strlen(s2), &used), 0);
	assert_non_null(last);
	assert_string_equal(xml_elem_ns(last), "");
	xml_elem_unref(last);
	xml_stream_free(&st);
}

/*
 * Parsers are reused (a per-thread pool of reset parsers): what one stream
 * declared must not be visible to the next stream that gets its parser,
 * while a stream that hibernates and wakes keeps its own declarations.
 */
static void
test_parser_reuse(void **state)
{
	static const char with_prefix[] = "<stream:stream xmlns='jabber:client' "
	    "xmlns:stream='http://etherx.jabber.org/streams' xmlns:x='urn:a'>"
	    "<message><x:y/></message>";
	static const char without[] = HEADER "<message><x:y/></message>";
	struct rec r;

	for (int round = 0; round < 3; round++) {
		/* A stream that declares x: uses it, and is freed: its parser
		 * goes back to the pool. */
		rec_init(&r, NULL);
		assert_int_equal(feed_piece(&r, with_prefix, strlen(with_prefix)), 0);
		assert_int_equal(r.errors, 0);
		assert_non_null(strstr(r.log, "urn:a"));
		/* Hibernate and wake: the declaration is its own and stays. */
		assert_int_equal(xml_stream_hibernate(r.s), 1);
		assert_int_equal(feed_piece(&r, "<message><x:z/></message>", 25), 0);
		assert_int_equal(r.errors, 0);
		assert_non_null(strstr(r.log, "<z xmlns='urn:a'/>"));
		rec_done(&r);

		/* The next stream gets a reused parser and declared nothing:
		 * x: is unbound there, an error, not urn:a. */
		rec_init(&r, NULL);
		assert_int_equal(feed_piece(&r, without, strlen(without)), -1);
		assert_int_equal(r.errors, 1);
		assert_null(strstr(r.log, "urn:a"));
		rec_done(&r);
	}
	(void)state;
}

/*
 * The pool keeps reset parsers, but not one whose buffer grew to hold a
 * large incomplete token: a peer cannot make the pool hold megabytes.
 */
static void
test_pool_bounded(void **state)
{
	static const char start[] = HEADER "<message><x a='";
	char chunk[1024];
	struct rec r;

	xml_stream_pool_free();
	assert_int_equal(xml_stream_pool_size(), 0);

	/* An ordinary stream: its parser goes to the pool. */
	rec_init(&r, NULL);
	assert_int_equal(feed_piece(&r, HEADER "<message/>", strlen(HEADER "<message/>")), 0);
	rec_done(&r);
	assert_int_equal(xml_stream_pool_size(), 1);

	/* A 40 kB attribute value fed in pieces: expat holds it all,
	 * incomplete, and its buffer grows to match. That parser is freed. */
	rec_init(&r, NULL);
	assert_int_equal(xml_stream_pool_size(), 0);      /* it took the pooled one */
	assert_int_equal(feed_piece(&r, start, strlen(start)), 0);
	memset(chunk, 'v', sizeof(chunk));
	for (int i = 0; i < 40; i++)
		assert_int_equal(feed_piece(&r, chunk, sizeof(chunk)), 0);
	assert_int_equal(feed_piece(&r, "'/></message>", 13), 0);
	assert_int_equal(r.errors, 0);
	rec_done(&r);
	assert_int_equal(xml_stream_pool_size(), 0);
	(void)state;
}

/* ------------------------------------------------------------------------
 * (2) Hostile input
 */

struct hostile {
	const char *name;
	const char *data;
	const char *cond;
};

static const struct xml_stream_limits lim_small = { 1024, 8, 8 };

static void
test_hostile(void **state)
{
	static const struct hostile cases[] = {
		{ "billion laughs",
		    "<?xml version='1.0'?><!DOCTYPE lolz ["
		    "<!ENTITY lol 'lol'>"
		    "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
		    "<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>"
		    "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>"
		    "<!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>"
		    "<!ENTITY lol5 '&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;'>"
		    "<!ENTITY lol6 '&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;'>"
		    "<!ENTITY lol7 '&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;'>"
		    "<!ENTITY lol8 '&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;'>"
		    "<!ENTITY lol9 '&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;'>"
		    "]>" HEADER "<message><body>&lol9;</body></message>",
		    "restricted-xml" },
		{ "entity declaration",
		    "<!DOCTYPE stream:stream [<!ENTITY x 'y'>]>" HEADER,
		    "restricted-xml" },
		{ "external entity",
		    "<!DOCTYPE s SYSTEM 'file:///etc/passwd'>" HEADER,
		    "restricted-xml" },
		{ "bare entity declaration in content",
		    HEADER "<!ENTITY x 'y'>", "not-well-formed" },
		{ "entity reference", HEADER "<message>&x;</message>",
		    "restricted-xml" },
		{ "processing instruction",
		    HEADER "<?foo bar?><message/>", "restricted-xml" },
		{ "processing instruction in a stanza",
		    HEADER "<message><?foo?></message>", "restricted-xml" },
		{ "processing instruction before the header",
		    "<?xml version='1.0'?><?foo?>" HEADER, "restricted-xml" },
		{ "comment", HEADER "<message><!-- hi --></message>",
		    "restricted-xml" },
		{ "comment before the header", "<!-- hi -->" HEADER,
		    "restricted-xml" },
		{ "malformed", HEADER "<message><body></message>",
		    "not-well-formed" },
		{ "malformed attribute", HEADER "<message to=x/>",
		    "not-well-formed" },
		{ "bad character reference", HEADER "<message>&#0;</message>",
		    "not-well-formed" },
		{ "invalid UTF-8", HEADER "<message>\xc3\x28</message>",
		    "not-well-formed" },
		{ "junk before the header", "hello" HEADER,
		    "not-well-formed" },
		{ "unbound prefix", HEADER "<foo:message/>",
		    "bad-namespace-prefix" },
		{ "encoding", "<?xml version='1.0' encoding='ISO-8859-1'?>"
		    HEADER, "unsupported-encoding" },
		{ "text between stanzas", HEADER "hello<message/>",
		    "bad-format" },
		{ "wrong root", "<stream xmlns='jabber:client'>",
		    "invalid-namespace" },
		{ "wrong root name", "<stream:foo xmlns:stream="
		    "'http://etherx.jabber.org/streams'>", "invalid-namespace" },
		{ "wrong stream namespace", "<stream:stream xmlns:stream="
		    "'http://etherx.jabber.org/streamz' xmlns='jabber:client'>",
		    "invalid-namespace" },
		{ "html", "<html><body>", "invalid-namespace" },
		{ "content ns is the stream ns", "<stream:stream xmlns:stream="
		    "'http://etherx.jabber.org/streams' "
		    "xmlns='http://etherx.jabber.org/streams'>",
		    "invalid-namespace" },
		{ "too deep", HEADER "<a><b><c><d><e><f><g><h></h></g></f></e>"
		    "</d></c></b></a>", "policy-violation" },
		{ "too many attributes", HEADER "<message a='1' b='2' c='3' "
		    "d='4' e='5' f='6' g='7' h='8' i='9'/>",
		    "policy-violation" },
		{ "too many attributes in the header",
		    "<stream:stream xmlns:stream='http://etherx.jabber.org/"
		    "streams' a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' "
		    "i='9'>", "policy-violation" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		check_one_error(cases[i].name, &lim_small, cases[i].data,
		    strlen(cases[i].data), cases[i].cond, 1);
	}
}

/* NUL is not XML, and would let expat switch to UTF-16 (RFC 6120 11.6). */
static void
test_nul_and_utf16(void **state)
{
	static const char utf16le[] = "\xff\xfe<\0s\0:\0s\0";
	static const char utf16be[] = "\0<\0s\0:\0s";
	static const char bare16[] = "<\0s\0";
	static const char nul[] = HEADER "<message><body>a\0b</body></message>";
	static const char before[] = HEADER "<iq/><message>\0";
	char *log;
	int errors;

	check_one_error("utf-16le", &lim_small, utf16le, sizeof(utf16le) - 1,
	    "not-well-formed", 1);
	check_one_error("utf-16be", &lim_small, utf16be, sizeof(utf16be) - 1,
	    "not-well-formed", 1);
	check_one_error("utf-16 no bom", &lim_small, bare16,
	    sizeof(bare16) - 1, "not-well-formed", 1);
	check_one_error("nul", &lim_small, nul, sizeof(nul) - 1,
	    "not-well-formed", 1);
	/* What precedes the NUL is still parsed. */
	log = run_split(&lim_small, before, sizeof(before) - 1,
	    sizeof(before) - 1, NULL, &errors);
	assert_int_equal(errors, 1);
	assert_non_null(strstr(log, "elem <iq/>\nerror not-well-formed\n"));
	free(log);
}

static char *
repeat(const char *head, char c, size_t n, const char *tail, size_t *len_r)
{
	size_t h = strlen(head), t = strlen(tail);
	char *p = malloc(h + n + t + 1);

	assert_non_null(p);
	memcpy(p, head, h);
	memset(p + h, c, n);
	memcpy(p + h + n, tail, t + 1);
	*len_r = h + n + t;
	return p;
}

static void
test_stanza_size(void **state)
{
	static const struct {
		const char *head, *tail;
		char fill;
	} cases[] = {
		/* Still inside a start tag: expat has reported nothing. */
		{ HEADER "<message to='", "", 'a' },
		{ HEADER "<message to='", "'/>", 'a' },
		/* A text node with no closing tag yet. */
		{ HEADER "<message><body>", "", 'x' },
		{ HEADER "<message><body>", "</body></message>", 'x' },
		/* A huge element name. */
		{ HEADER "<m", "", 'm' },
		/* Many small children. */
		{ HEADER "<message>", "", ' ' },
		/* The stream header itself. */
		{ "<stream:stream xmlns:stream='http://etherx.jabber.org/"
		    "streams' to='", "'>", 'a' },
	};
	char *data;
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		data = repeat(cases[i].head, cases[i].fill, 5000,
		    cases[i].tail, &len);
		check_one_error(cases[i].head, &lim_small, data, len,
		    "policy-violation", 0);
		free(data);
	}

	/* A stanza of many elements, fed whole. */
	{
		size_t n = 0;
		char *p = malloc(100000);

		n += sprintf(p, "%s<message>", HEADER);
		for (i = 0; i < 3000; i++)
			n += sprintf(p + n, "<a/>");
		n += sprintf(p + n, "</message>");
		check_one_error("many elements", &lim_small, p, n,
		    "policy-violation", 0);
		free(p);
	}
}

static void
test_random_bytes(void **state)
{
	uint32_t x = 2463534242u;
	char buf[1024];
	char *log, *pre;
	size_t i, round, hl = strlen(HEADER);
	int errors;

	for (round = 0; round < 200; round++) {
		/* Half of the rounds start with a valid header. */
		memcpy(buf, HEADER, hl);
		for (i = (round % 2) ? hl : 0; i < sizeof(buf); i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			buf[i] = (char)x;
		}
		log = run_split(&lim_small, buf, sizeof(buf), round * 5 %
		    sizeof(buf), NULL, &errors);
		assert_int_equal(errors, 1);
		pre = run_bytes(&lim_small, buf, sizeof(buf), NULL, &errors);
		assert_int_equal(errors, 1);
		assert_string_equal(pre, log);
		free(log);
		free(pre);
	}
}

/* After an error: no more callbacks, every feed refused. */
static void
test_after_error(void **state)
{
	static const char bad[] = HEADER "<a><<<";
	struct rec r;
	size_t used;

	rec_init(&r, NULL);
	assert_int_equal(xml_stream_feed(r.s, bad, strlen(bad), &used), -1);
	assert_int_equal(r.errors, 1);
	assert_int_equal(xml_stream_feed(r.s, "<message/>", 10, &used), -1);
	assert_int_equal(used, 0);
	xml_stream_restart(r.s);
	assert_int_equal(xml_stream_feed(r.s, HEADER, strlen(HEADER), &used),
	    -1);
	assert_int_equal(r.errors, 1);
	rec_done(&r);
}

/* ------------------------------------------------------------------------
 * (3) restart and (4) stop
 */

static const char restart_data[] =
    HEADER
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    "<?xml version='1.0'?>"
    "<stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='b' version='1.0'>"
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>AGp1bGlldAByMG0zMA==</auth>"
    "<stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='c'>"
    "<message><body>x</body></message></stream:stream>";

static const char restart_log[] =
    "start ns=jabber:client to=example.com version=1.0 xml:lang=en\n"
    "elem {ns} <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n"
    "start ns=jabber:client to=b version=1.0\n"
    "elem {ns} <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    "AGp1bGlldAByMG0zMA==</auth>\n"
    "start ns=jabber:client to=c\n"
    "elem <message><body>x</body></message>\n"
    "end\n";

static void
restart_two_names(void *ud, xml_elem *e)
{
	struct rec *r = ud;
	const char *n = xml_elem_name(e);

	if (strcmp(n, "starttls") == 0 || strcmp(n, "auth") == 0)
		xml_stream_restart(r->s);
	cb_element(ud, e);
}

static void
test_restart(void **state)
{
	struct xml_stream_cb cb = rec_cb;
	const char *after;
	struct rec r;
	size_t used, len = strlen(restart_data), cut;
	char *want;

	/* Whole: the bytes after <starttls/> stay unconsumed. */
	rec_init(&r, NULL);
	r.restart_at = "starttls";
	assert_int_equal(xml_stream_feed(r.s, restart_data, len, &used), 0);
	after = strstr(restart_data, "<?xml");
	assert_int_equal(used, after - restart_data);
	assert_string_equal(r.log,
	    "start ns=jabber:client to=example.com version=1.0 xml:lang=en\n"
	    "elem {ns} <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n");
	/* The rest is a new stream, with its own XML declaration. */
	r.restart_at = NULL;
	assert_int_equal(xml_stream_feed(r.s, after, len - used, &used), 0);
	assert_int_equal(r.errors, 0);
	assert_non_null(strstr(r.log, "\nstart ns=jabber:client to=b "
	    "version=1.0\nelem {ns} <auth "));
	rec_done(&r);

	/* Every split, both restarts. */
	cb.element = restart_two_names;
	for (cut = 0; cut <= len; cut++) {
		rec_init(&r, NULL);
		xml_stream_free(&r.s);
		r.s = xml_stream_new(&cb, &r, &lim_default);
		if (feed_piece(&r, restart_data, cut) == 0)
			feed_piece(&r, restart_data + cut, len - cut);
		if (strcmp(r.log, restart_log) != 0)
			fail_msg("split at %zu:\n%s", cut, r.log);
		rec_done(&r);
	}
	rec_init(&r, NULL);
	xml_stream_free(&r.s);
	r.s = xml_stream_new(&cb, &r, &lim_default);
	for (cut = 0; cut < len; cut++)
		feed_piece(&r, restart_data + cut, 1);
	assert_string_equal(r.log, restart_log);
	rec_done(&r);

	/* Between feeds, a restart throws away a half-parsed stanza. */
	rec_init(&r, NULL);
	assert_int_equal(xml_stream_feed(r.s, HEADER "<message><bo",
	    strlen(HEADER) + 12, &used), 0);
	xml_stream_restart(r.s);
	want = HEADER "<iq/>";
	assert_int_equal(xml_stream_feed(r.s, want, strlen(want), &used), 0);
	assert_int_equal(r.errors, 0);
	assert_non_null(strstr(r.log, "elem <iq/>\n"));
	assert_null(strstr(r.log, "message"));
	rec_done(&r);
}

static void
start_stop(void *ud, const char *ns, const char **attrs)
{
	struct rec *r = ud;

	xml_stream_stop(r->s);
}

static void
test_stop(void **state)
{
	static const char data[] = HEADER "<a/>  <b>x</b><c/>";
	struct xml_stream_cb cb = rec_cb;
	struct rec r;
	size_t used;
	const char *after = strstr(data, "<c/>");

	cb.stream_start = start_stop;
	rec_init(&r, NULL);
	r.stop_at = "b";
	assert_int_equal(xml_stream_feed(r.s, data, strlen(data), &used), 0);
	assert_int_equal(used, after - data);
	assert_null(strstr(r.log, "elem <c/>"));
	assert_non_null(strstr(r.log, "elem <b>x</b>\n"));
	/* Stopped: the rest is refused until a restart. */
	assert_int_equal(xml_stream_feed(r.s, after, strlen(after), &used), -1);
	assert_int_equal(used, 0);
	assert_int_equal(r.errors, 0);
	xml_stream_restart(r.s);
	r.stop_at = NULL;
	assert_int_equal(xml_stream_feed(r.s, HEADER "<d/>",
	    strlen(HEADER) + 4, &used), 0);
	assert_non_null(strstr(r.log, "elem <d/>\n"));
	assert_int_equal(r.errors, 0);
	rec_done(&r);

	/* Stopping from stream_start leaves the first stanza unconsumed. */
	memset(&r, 0, sizeof(r));
	r.s = xml_stream_new(&cb, &r, NULL);
	assert_int_equal(xml_stream_feed(r.s, data, strlen(data), &used), 0);
	assert_int_equal(used, strlen(HEADER));
	assert_null(r.log);
	rec_done(&r);

	/* Between feeds, stop refuses what follows. */
	rec_init(&r, NULL);
	xml_stream_stop(r.s);
	assert_int_equal(xml_stream_feed(r.s, data, strlen(data), &used), -1);
	assert_null(r.log);
	rec_done(&r);
}

/* Pausing after every element (a stream whose stanzas have store work
 * pending, core/hold.h) gives the same events, however the input is split:
 * feed stops right after the element and the rest is fed again. A prefix
 * the header declared still works after the parser swap. */
static const char pause_data[] =
    "<stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' "
    "xmlns:db='jabber:server:dialback' to='example.com' version='1.0'>"
    "<a/>  <db:result to='x'>k</db:result><b>x<c/></b>"
    "<message><body>hi</body></message></stream:stream>";

static unsigned pauses;

static void
pause_every(void *ud, xml_elem *e)
{
	struct rec *r = ud;

	cb_element(ud, e);
	xml_stream_pause(r->s);
	pauses++;
}

static void
test_pause(void **state)
{
	struct xml_stream_cb cb = rec_cb;
	size_t len = strlen(pause_data), used, cut;
	const char *after;
	struct rec plain, r;

	rec_init(&plain, NULL);
	assert_int_equal(feed_piece(&plain, pause_data, len), 0);
	assert_int_equal(plain.errors, 0);
	assert_non_null(strstr(plain.log, "elem {ns} <result xmlns='jabber:server:dialback' "));

	/* One feed stops right after the first element. */
	cb.element = pause_every;
	memset(&r, 0, sizeof(r));
	r.s = xml_stream_new(&cb, &r, &lim_default);
	assert_int_equal(xml_stream_feed(r.s, pause_data, len, &used), 0);
	after = strstr(pause_data, "<a/>") + 4;
	assert_int_equal(used, after - pause_data);
	assert_null(strstr(r.log, "result"));
	/* Not a stop: the rest is accepted. */
	assert_int_equal(xml_stream_feed(r.s, after, len - used, &used), 0);
	assert_non_null(strstr(r.log, "result"));
	rec_done(&r);

	for (cut = 0; cut <= len; cut++) {
		memset(&r, 0, sizeof(r));
		r.s = xml_stream_new(&cb, &r, &lim_default);
		pauses = 0;
		if (feed_piece(&r, pause_data, cut) == 0)
			feed_piece(&r, pause_data + cut, len - cut);
		if (strcmp(r.log, plain.log) != 0)
			fail_msg("paused, split at %zu:\n%s\nwanted:\n%s", cut, r.log, plain.log);
		assert_int_equal(pauses, 4);
		rec_done(&r);
	}
	memset(&r, 0, sizeof(r));
	r.s = xml_stream_new(&cb, &r, &lim_default);
	for (cut = 0; cut < len; cut++)
		feed_piece(&r, pause_data + cut, 1);
	assert_string_equal(r.log, plain.log);
	rec_done(&r);

	/* Between feeds a pause does nothing. */
	rec_init(&r, NULL);
	xml_stream_pause(r.s);
	assert_int_equal(feed_piece(&r, pause_data, len), 0);
	assert_string_equal(r.log, plain.log);
	rec_done(&r);
	rec_done(&plain);
}

/* ------------------------------------------------------------------------
 * (5) whitespace, (6) XML declaration, limits
 */

static void
test_whitespace(void **state)
{
	static const struct xml_stream_limits lim = { 256, 8, 8 };
	char *data, *p, *log;
	size_t len = 0, i, ws = 10 * lim.max_stanza_size;
	int errors;

	data = malloc(8 * ws + 1024);
	p = data;
	/* Even before the header (after the declaration, XML 1.0 2.8). */
	p += sprintf(p, "<?xml version='1.0'?>");
	memset(p, '\n', ws);
	p += ws;
	p += sprintf(p, "%s", HEADER);
	for (i = 0; i < 3; i++) {
		memset(p, " \t\r\n"[i], ws);
		p += ws;
		p += sprintf(p, "<presence/>");
		memset(p, ' ', 17);
		p += 17;
		p += sprintf(p, "\r\n<message><body>hi</body></message>");
	}
	memset(p, ' ', ws);
	p += ws;
	p += sprintf(p, "</stream:stream>");
	len = p - data;

	log = run_split(&lim, data, len, len, NULL, &errors);
	assert_int_equal(errors, 0);
	assert_non_null(strstr(log, "end\n"));
	for (i = 0; i <= len; i += 997) {
		char *l2 = run_split(&lim, data, len, i, NULL, &errors);

		assert_int_equal(errors, 0);
		assert_string_equal(l2, log);
		free(l2);
	}
	{
		char *l2 = run_bytes(&lim, data, len, NULL, &errors);

		assert_int_equal(errors, 0);
		assert_string_equal(l2, log);
		free(l2);
	}
	free(log);

	/* Without a declaration, from the first byte. */
	memmove(data + ws, data + 21, len - 21);
	memset(data, ' ', ws);
	len += ws - 21;
	log = run_split(&lim, data, len, len, NULL, &errors);
	assert_int_equal(errors, 0);
	assert_non_null(strstr(log, "end\n"));
	free(log);
	log = run_bytes(&lim, data, len, NULL, &errors);
	assert_int_equal(errors, 0);
	assert_non_null(strstr(log, "end\n"));
	free(log);
	free(data);
}

static void
test_xml_declaration(void **state)
{
	static const char *const decls[] = {
		"<?xml version='1.0'?>",
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
		"<?xml version='1.0' encoding='utf-8' standalone='yes'?>\n",
		"\xef\xbb\xbf<?xml version='1.0'?>",
		"",
	};
	char buf[512];
	char *log;
	size_t i;

	for (i = 0; i < sizeof(decls) / sizeof(decls[0]); i++) {
		snprintf(buf, sizeof(buf), "%s%s<iq/>", decls[i], HEADER);
		log = run_split(NULL, buf, strlen(buf), 3, NULL, NULL);
		assert_string_equal(log,
		    "start ns=jabber:client to=example.com version=1.0 "
		    "xml:lang=en\nelem <iq/>\n");
		free(log);
	}
}

static void
test_set_limits(void **state)
{
	static const struct xml_stream_limits lim = { 200, 8, 8 };
	char *big, *data;
	size_t len, used;
	struct rec r;

	big = repeat("<message><body>", 'x', 500, "</body></message>", &len);
	data = malloc(strlen(HEADER) + 4 + len + 1);
	sprintf(data, "%s<a/>%s", HEADER, big);
	/* Raised by the callback of <a/>: the big stanza is fine. */
	rec_init(&r, &lim);
	r.raise_to = 4096;
	assert_int_equal(xml_stream_feed(r.s, data, strlen(data), &used), 0);
	assert_int_equal(r.errors, 0);
	assert_non_null(strstr(r.log, "xxxxx</body></message>\n"));
	rec_done(&r);
	/* Not raised: refused. */
	rec_init(&r, &lim);
	assert_int_equal(xml_stream_feed(r.s, data, strlen(data), &used), -1);
	assert_int_equal(r.errors, 1);
	assert_string_equal(r.cond, "policy-violation");
	rec_done(&r);
	free(big);
	free(data);
}

/*
 * expat rescans an incomplete token on every call (CVE-2023-52425): a big
 * tag fed a byte at a time must still cost linear time, and holding input
 * back must never delay the '>' that completes a stanza.
 */
static double
slow_feed(struct rec *r, const char *pre, char fill, size_t n,
    const char *post)
{
	clock_t t0 = clock();
	size_t i;

	for (; *pre != '\0'; pre++)
		assert_int_equal(feed_piece(r, pre, 1), 0);
	for (i = 0; i < n; i++)
		if (feed_piece(r, &fill, 1) == -1)
			break;
	for (; *post != '\0'; post++)
		if (feed_piece(r, post, 1) == -1)
			break;
	return (double)(clock() - t0) / CLOCKS_PER_SEC;
}

static void
test_slow_feed(void **state)
{
	static const struct xml_stream_limits lim = { 65536, 8, 8 };
	static const char tail[] = "<c/>";
	struct rec r;
	size_t used;
	double t;

	rec_init(&r, &lim);
	r.stop_at = "m";
	assert_int_equal(feed_piece(&r, HEADER, strlen(HEADER)), 0);
	t = slow_feed(&r, "<m a='", '>', 60000, "' b=\"");
	t += slow_feed(&r, "", '\'', 4000, "\"/");
	assert_null(strstr(r.log, "elem"));
	/* The last '>' alone completes the stanza: nothing waits. */
	assert_int_equal(xml_stream_feed(r.s, ">", 1, &used), 0);
	assert_int_equal(used, 1);
	assert_non_null(strstr(r.log, "elem <m a='&gt;&gt;&gt;"));
	assert_int_equal(r.errors, 0);
	rec_done(&r);

	/* Stopped right after it: the next bytes stay with the caller. */
	rec_init(&r, &lim);
	r.stop_at = "m";
	assert_int_equal(feed_piece(&r, HEADER, strlen(HEADER)), 0);
	t += slow_feed(&r, "<m a='", 'a', 60000, "'/");
	assert_int_equal(xml_stream_feed(r.s, ">" "<c/>", 5, &used), 0);
	assert_int_equal(used, 1);
	assert_int_equal(xml_stream_feed(r.s, tail, 4, &used), -1);
	assert_int_equal(r.errors, 0);
	rec_done(&r);

	/* A comment is refused once it is complete, not before. */
	rec_init(&r, &lim);
	assert_int_equal(feed_piece(&r, HEADER, strlen(HEADER)), 0);
	t += slow_feed(&r, "<m><!--", '>', 60000, "-");
	assert_int_equal(r.errors, 0);
	assert_int_equal(feed_piece(&r, "->", 2), -1);
	assert_int_equal(r.errors, 1);
	assert_string_equal(r.cond, "restricted-xml");
	rec_done(&r);

	/* Long names, text and spaces inside tags. */
	rec_init(&r, &lim);
	assert_int_equal(feed_piece(&r, HEADER, strlen(HEADER)), 0);
	t += slow_feed(&r, "<m", 'm', 12000, ">");
	t += slow_feed(&r, "<b ", ' ', 12000, ">");
	t += slow_feed(&r, "", '>', 12000, "</b>");
	t += slow_feed(&r, "</m", 'm', 12000, "");
	assert_null(strstr(r.log, "elem"));
	assert_int_equal(feed_piece(&r, ">", 1), 0);
	assert_non_null(strstr(r.log, "&gt;</b></mmm"));
	assert_int_equal(r.errors, 0);
	rec_done(&r);

	/* Quadratic would be minutes; linear is milliseconds. */
	assert_true(t < 3.0);
}

/* No callbacks at all, no limits passed: defaults, nothing leaks. */
static void
test_null_callbacks(void **state)
{
	static const char data[] = HEADER "<message><body>x</body>"
	    "</message><iq/>";
	struct xml_stream_cb cb = { 0 };
	xml_stream *s;
	size_t used;

	s = xml_stream_new(&cb, NULL, NULL);
	assert_int_equal(xml_stream_feed(s, data, strlen(data), &used), 0);
	assert_int_equal(xml_stream_feed(s, "<message><bo", 12, &used), 0);
	xml_stream_free(&s);
	xml_stream_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_splits),
		cmocka_unit_test(test_session_tree),
		cmocka_unit_test(test_hibernate),
		cmocka_unit_test(test_pause),
		cmocka_unit_test(test_stanza_namespaces),
		cmocka_unit_test(test_parser_reuse),
		cmocka_unit_test(test_pool_bounded),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_stanza_size),
		cmocka_unit_test(test_nul_and_utf16),
		cmocka_unit_test(test_random_bytes),
		cmocka_unit_test(test_after_error),
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_whitespace),
		cmocka_unit_test(test_xml_declaration),
		cmocka_unit_test(test_set_limits),
		cmocka_unit_test(test_slow_feed),
		cmocka_unit_test(test_null_callbacks),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	int failed = cmocka_run_group_tests(tests, NULL, NULL);

	xml_stream_pool_free();
	return failed;
}
