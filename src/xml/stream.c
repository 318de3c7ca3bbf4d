/*
 * stream.c - incremental XMPP stream parser on top of expat.
 *
 * expat does the XML; this file builds a tree per depth-1 element, enforces
 * the RFC 6120 restrictions and the limits, and keeps the byte accounting
 * that lets a callback restart or stop the stream at an exact position.
 *
 * Byte positions are expat's (XML_GetCurrentByteIndex, counted from the
 * start of the current parser). "boundary" is where the bytes that count
 * towards max_stanza_size begin: the start of the prolog, then the end of
 * the stream header, of each depth-1 element and of each whitespace run
 * between them. Anything fed past the boundary that expat has not reported
 * yet is a tag or text still being buffered, and counts: that is how a huge
 * start tag is refused before it is complete.
 *
 * expat 2.5 scans a token it holds incomplete again from its start on every
 * XML_Parse call, so a large tag fed a byte at a time costs quadratic time
 * (CVE-2023-52425). expat 2.6's cure, reparse deferral, holds back bytes
 * whose events a callback needs right away (a stanza's last '>'), and makes
 * restart and stop positions unknowable, so it is off. Instead this file
 * holds back input itself while expat holds an incomplete token, the input
 * is smaller than that token and a small scanner is sure it cannot end it:
 * the bytes that end a tag are never held, so no event is delayed and every
 * callback's event ends in the chunk being fed.
 */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <expat.h>

#include "xml/stream.h"

/*
 * Names arrive as "uri local". XML_ParserCreateNS makes expat refuse a
 * namespace URI containing the separator, and a space cannot occur in a
 * name, so the last space always splits correctly.
 */
#define NS_SEP		' '

/*
 * Input is handed to expat in slices so that the limits are checked, and
 * expat's buffer bounded, even when the caller passes a huge chunk.
 */
#define FEED_SLICE	8192

#define DEF_STANZA	65536
#define DEF_DEPTH	32
#define DEF_ATTRS	64

enum xs_state {
	XS_OPEN,
	XS_STOPPED,		/* xml_stream_stop: nothing more until restart */
	XS_ENDED,		/* </stream:stream> seen */
	XS_FAILED,		/* error reported */
};

enum xs_pending {
	XS_NONE,
	XS_STOP,
	XS_RESTART,
	XS_PAUSE,
};

/* States of the scanner that decides what may be held back (see feed). */
enum {
	LX_START,		/* nothing seen of the token yet */
	LX_LT,			/* "<" */
	LX_TAG,			/* start tag, outside attribute values */
	LX_APOS,		/* inside '...' */
	LX_QUOT,		/* inside "..." */
	LX_BANG,		/* "<!" */
	LX_BANG_DASH,		/* "<!-" */
	LX_COMMENT,		/* "<!--", lex_n trailing dashes */
	LX_PI,			/* "<?", lex_n 1 after a '?' */
	LX_ANY,			/* anything else: every '>' may end it */
};

struct xml_stream {
	XML_Parser p;
	struct xml_stream_cb cb;
	void *ud;
	struct xml_stream_limits lim;

	enum xs_state state;
	enum xs_pending pending;	/* asked for by a callback */
	int in_parse;

	char *content_ns;		/* default ns of <stream:stream> */
	unsigned depth;			/* 1 inside <stream:stream> */
	long long fed;			/* bytes given to this parser */
	long long boundary;
	long long event_end;		/* end of the event being reported */
	long long seen;			/* end of the last event expat reported */

	char *hold;			/* accepted, not yet given to expat */
	size_t hlen, hcap;
	int lex;			/* scanner state of expat's partial token */
	unsigned lex_n;

	xml_elem **stack;		/* open elements of the stanza */
	unsigned nstack, cstack;

	char *text;			/* character data not yet in the tree */
	size_t tlen, tcap;
	char *scratch;			/* splitting names */
	size_t scap;

	/* Hibernation (xml_stream_hibernate): the parser freed between
	 * stanzas, and what it takes to make a new one that is in the same
	 * place: the root's namespace declarations. */
	int asleep;
	int waking;			/* replaying the header: no callback */
	int held_big;			/* the parser held > POOL_HELD_MAX unparsed */
	char *decls;			/* " xmlns:p='uri'" for each prefix */
	size_t dlen, dcap;
};

static int parser_open(xml_stream *);
static void stream_fail(xml_stream *, const char *, const char *);

/*
 * Parsers are reused, per thread. A login restarts its stream three times
 * and a hibernated stream (xml_stream_hibernate) wakes with a parser it
 * takes from here instead of creating one: XML_ParserReset keeps what the
 * parser has allocated (its buffer, tag and binding free lists, pools), so
 * a reused parser neither mallocs nor grows again. What a pool holds is
 * bounded (POOL_MAX per thread); a thread's pool is freed when it exits.
 */
#define POOL_MAX	256

/*
 * expat's input buffer keeps the size it grew to, and it grows to hold an
 * incomplete token (a long attribute value, up to max_stanza_size). A
 * parser that ever held more than this unparsed is freed, not pooled, so
 * the pool stays small (~10 KiB a parser) whatever peers send.
 */
#define POOL_HELD_MAX	16384

struct parser_pool {
	XML_Parser p[POOL_MAX];
	unsigned n;
	unsigned long salt;		/* expat's hash salt, random per thread */
};

static __thread struct parser_pool *pool;
static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void
pool_free(void *arg)
{
	struct parser_pool *pp = arg;

	while (pp->n > 0)
		XML_ParserFree(pp->p[--pp->n]);
	free(pp);
	pool = NULL;
}

static void
pool_key_make(void)
{
	(void)pthread_key_create(&pool_key, pool_free);
}

static void
pool_make(void)
{
	(void)pthread_once(&pool_once, pool_key_make);
	if ((pool = calloc(1, sizeof(*pool))) == NULL)
		return;
	if (pthread_setspecific(pool_key, pool) != 0) {
		free(pool);
		pool = NULL;
		return;
	}
	/* Without a salt set, expat asks the kernel for one every time a
	 * parser (or a reset one) starts: a system call per stream restart
	 * and per wake from hibernation. One secret salt per thread keeps
	 * the hash tables unpredictable to a peer just as well. */
	if (getrandom(&pool->salt, sizeof(pool->salt), 0) != sizeof(pool->salt))
		pool->salt = 0;             /* expat makes its own */
}

static XML_Parser
parser_get(void)
{
	XML_Parser p;

	if (pool == NULL)
		pool_make();
	/* RFC 6120 11.6: UTF-8 whatever the declaration says. A pooled
	 * parser was reset to the same encoding; the namespace mode and
	 * separator survive XML_ParserReset. */
	if (pool != NULL && pool->n > 0)
		p = pool->p[--pool->n];
	else if ((p = XML_ParserCreateNS("UTF-8", NS_SEP)) == NULL)
		return NULL;
	if (pool != NULL && pool->salt != 0)
		(void)XML_SetHashSalt(p, pool->salt);
	return p;
}

static void
parser_put(XML_Parser p, int big)
{
	if (!big && pool == NULL)
		pool_make();
	if (!big && pool != NULL && pool->n < POOL_MAX && XML_ParserReset(p, "UTF-8"))
		pool->p[pool->n++] = p;
	else
		XML_ParserFree(p);
}

unsigned
xml_stream_pool_size(void)
{
	return pool != NULL ? pool->n : 0;
}

void
xml_stream_pool_free(void)
{
	if (pool != NULL) {
		(void)pthread_setspecific(pool_key, NULL);
		pool_free(pool);
	}
}

/* ------------------------------------------------------------------------
 * Helpers
 */

static int
grow(char **buf, size_t *cap, size_t need)
{
	size_t n;
	char *p;

	if (need <= *cap)
		return 0;
	n = *cap ? *cap : 256;
	while (n < need) {
		if (n > SIZE_MAX / 2)
			return -1;
		n *= 2;
	}
	if ((p = realloc(*buf, n)) == NULL)
		return -1;
	*buf = p;
	*cap = n;
	return 0;
}

/* Where the event being reported ends; every handler calls this first. */
static long long
event_end(xml_stream *s)
{
	long long end = (long long)XML_GetCurrentByteIndex(s->p) +
	    XML_GetCurrentByteCount(s->p);

	if (end > s->seen)
		s->seen = end;
	return end;
}

static int
over_size(xml_stream *s, long long end)
{
	return s->lim.max_stanza_size != 0 && end > s->boundary &&
	    (unsigned long long)(end - s->boundary) > s->lim.max_stanza_size;
}

static int
is_ws(const char *p, size_t len)
{
	for (; len > 0; p++, len--)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			return 0;
	return 1;
}

/*
 * Splits an expat name into namespace and local name; *ns_r points into
 * s->scratch. No namespace comes back as "".
 */
static int
split_name(xml_stream *s, const char *name, const char **ns_r,
    const char **local_r)
{
	const char *sep = strrchr(name, NS_SEP);
	size_t n;

	if (sep == NULL) {
		*ns_r = "";
		*local_r = name;
		return 0;
	}
	n = sep - name;
	if (grow(&s->scratch, &s->scap, n + 1) == -1)
		return -1;
	memcpy(s->scratch, name, n);
	s->scratch[n] = '\0';
	*ns_r = s->scratch;
	*local_r = sep + 1;
	return 0;
}

/*
 * Attribute names as xml.h spells them: "local", "xml:local" or
 * "{uri}local". Returns a pointer into s->scratch or name itself.
 */
static const char *
attr_name(xml_stream *s, const char *name)
{
	const char *sep = strrchr(name, NS_SEP);
	size_t ulen, llen;

	if (sep == NULL)
		return name;
	ulen = sep - name;
	llen = strlen(sep + 1);
	if (grow(&s->scratch, &s->scap, ulen + llen + 5) == -1)
		return NULL;
	if (ulen == sizeof(XML_NS_XML) - 1 &&
	    memcmp(name, XML_NS_XML, ulen) == 0) {
		memcpy(s->scratch, "xml:", 4);
		memcpy(s->scratch + 4, sep + 1, llen + 1);
	} else {
		s->scratch[0] = '{';
		memcpy(s->scratch + 1, name, ulen);
		s->scratch[ulen + 1] = '}';
		memcpy(s->scratch + ulen + 2, sep + 1, llen + 1);
	}
	return s->scratch;
}

static int
set_attrs(xml_stream *s, xml_elem *e, const char **atts)
{
	const char *name;

	for (; atts[0] != NULL; atts += 2) {
		if ((name = attr_name(s, atts[0])) == NULL)
			return -1;
		xml_attr_set(e, name, atts[1]);
	}
	return 0;
}

static unsigned
count_attrs(const char **atts)
{
	unsigned n = 0;

	for (; atts[0] != NULL; atts += 2)
		n++;
	return n;
}

/* Moves pending character data into the innermost open element. */
static void
flush_text(xml_stream *s)
{
	if (s->tlen > 0 && s->nstack > 0)
		xml_elem_add_text(s->stack[s->nstack - 1], s->text, s->tlen);
	s->tlen = 0;
}

static void
drop_stanza(xml_stream *s)
{
	if (s->nstack > 0)
		xml_elem_unref(s->stack[0]);
	s->nstack = 0;
	s->tlen = 0;
}

/* True while expat events must be ignored. */
static int
halted(xml_stream *s)
{
	return s->state != XS_OPEN || s->pending != XS_NONE;
}

/* ------------------------------------------------------------------------
 * expat handlers
 */

static void
on_stream_start(xml_stream *s, const char *name, const char **atts)
{
	const char **list = NULL;
	xml_elem *hdr = NULL;
	const char *an, *av;
	unsigned i, n;

	/* RFC 6120 4.8.1 */
	if (strncmp(name, XML_NS_STREAM, sizeof(XML_NS_STREAM) - 1) != 0 ||
	    strcmp(name + sizeof(XML_NS_STREAM) - 1, " stream") != 0) {
		stream_fail(s, "invalid-namespace",
		    "the root element is not <stream:stream>");
		return;
	}
	/* RFC 6120 4.8.2 */
	if (s->content_ns != NULL && strcmp(s->content_ns, XML_NS_STREAM) == 0) {
		stream_fail(s, "invalid-namespace",
		    "the content namespace is the stream namespace");
		return;
	}

	/* Names are rewritten one at a time in scratch: keep them in a tree. */
	hdr = xml_elem_new(XML_NS_STREAM, "stream");
	if (set_attrs(s, hdr, atts) == -1)
		goto oom;
	for (n = 0; xml_attr_at(hdr, n, NULL, NULL) == 0; n++)
		;
	if ((list = calloc(2 * n + 1, sizeof(*list))) == NULL)
		goto oom;
	for (i = 0; xml_attr_at(hdr, i, &an, &av) == 0; i++) {
		list[2 * i] = an;
		list[2 * i + 1] = av;
	}

	s->depth = 1;
	s->boundary = s->event_end = event_end(s);
	if (s->cb.stream_start != NULL && !s->waking)
		s->cb.stream_start(s->ud, s->content_ns, list);
	free(list);
	xml_elem_unref(hdr);
	return;
oom:
	free(list);
	xml_elem_unref(hdr);
	stream_fail(s, "resource-constraint", "out of memory");
}

static void XMLCALL
on_start(void *ud, const char *name, const char **atts)
{
	xml_stream *s = ud;
	const char *ns, *local;
	xml_elem *e, **st;
	long long end;
	unsigned n;

	if (halted(s))
		return;
	end = event_end(s);
	if (s->lim.max_attrs != 0 && count_attrs(atts) > s->lim.max_attrs) {
		stream_fail(s, "policy-violation", "too many attributes");
		return;
	}
	if (s->depth == 0) {
		if (over_size(s, end)) {
			stream_fail(s, "policy-violation",
			    "stream header too large");
			return;
		}
		on_stream_start(s, name, atts);
		return;
	}
	if (s->depth == 1)
		s->boundary = XML_GetCurrentByteIndex(s->p);
	if (s->lim.max_depth != 0 && s->depth + 1 > s->lim.max_depth) {
		stream_fail(s, "policy-violation", "elements nested too deep");
		return;
	}
	if (over_size(s, end)) {
		stream_fail(s, "policy-violation", "stanza too large");
		return;
	}
	if (s->nstack == s->cstack) {
		n = s->cstack ? s->cstack * 2 : 16;
		if ((st = realloc(s->stack, n * sizeof(*st))) == NULL)
			goto oom;
		s->stack = st;
		s->cstack = n;
	}
	if (split_name(s, name, &ns, &local) == -1)
		goto oom;
	/* Elements in the content namespace are written NULL (xml.h). */
	if (s->content_ns != NULL && strcmp(ns, s->content_ns) == 0)
		ns = NULL;
	flush_text(s);
	if (s->nstack == 0)
		e = xml_elem_new(ns, local);
	else
		e = xml_elem_add_child(s->stack[s->nstack - 1], ns, local);
	s->stack[s->nstack++] = e;
	s->depth++;
	if (set_attrs(s, e, atts) == -1)
		goto oom;
	return;
oom:
	stream_fail(s, "resource-constraint", "out of memory");
}

static void XMLCALL
on_end(void *ud, const char *name)
{
	xml_stream *s = ud;
	long long end;
	xml_elem *e;

	if (halted(s))
		return;
	end = event_end(s);
	if (s->depth == 1) {
		s->depth = 0;
		s->state = XS_ENDED;
		XML_StopParser(s->p, XML_FALSE);
		s->event_end = end;
		if (s->cb.stream_end != NULL)
			s->cb.stream_end(s->ud);
		return;
	}
	if (over_size(s, end)) {
		stream_fail(s, "policy-violation", "stanza too large");
		return;
	}
	flush_text(s);
	s->nstack--;
	s->depth--;
	if (s->depth > 1)
		return;
	e = s->stack[0];
	s->boundary = s->event_end = end;
	if (s->cb.element != NULL)
		s->cb.element(s->ud, e);
	else
		xml_elem_unref(e);
}

static void XMLCALL
on_text(void *ud, const char *p, int len)
{
	xml_stream *s = ud;
	long long end;

	if (halted(s) || len <= 0)
		return;
	end = event_end(s);
	if (s->depth <= 1) {
		/* Keepalives between stanzas count towards nothing. */
		if (is_ws(p, len)) {
			s->boundary = end;
			return;
		}
		/* RFC 6120 4.9.3.1: text is not a first-level child. */
		stream_fail(s, "bad-format", "text outside of a stanza");
		return;
	}
	if (over_size(s, end)) {
		stream_fail(s, "policy-violation", "stanza too large");
		return;
	}
	if (grow(&s->text, &s->tcap, s->tlen + len) == -1) {
		stream_fail(s, "resource-constraint", "out of memory");
		return;
	}
	memcpy(s->text + s->tlen, p, len);
	s->tlen += len;
}

/* Whitespace in the prolog reaches only the default handler. */
static void XMLCALL
on_default(void *ud, const char *p, int len)
{
	xml_stream *s = ud;
	long long end;

	if (halted(s))
		return;
	end = event_end(s);
	if (s->depth == 0 && len > 0 && is_ws(p, len))
		s->boundary = end;
}

static void XMLCALL
on_ns(void *ud, const char *prefix, const char *uri)
{
	xml_stream *s = ud;

	if (halted(s) || s->depth != 0)
		return;
	if (prefix != NULL) {
		size_t need;

		/* Kept to replay the header after hibernation. Only names
		 * and URIs expat has parsed go in, so quoting is safe once
		 * the URI's own quotes and '<' and '&' are escaped. */
		if (s->waking || strcmp(prefix, "stream") == 0 || uri == NULL)
			return;
		need = s->dlen + strlen(prefix) + 6 * strlen(uri) + 16;
		if (grow(&s->decls, &s->dcap, need) == -1) {
			stream_fail(s, "resource-constraint", "out of memory");
			return;
		}
		s->dlen += (size_t)snprintf(s->decls + s->dlen, s->dcap - s->dlen,
		    " xmlns:%s='", prefix);
		for (const char *u = uri; *u != '\0'; u++) {
			const char *e = *u == '\'' ? "&apos;" : *u == '<' ? "&lt;" :
			    *u == '&' ? "&amp;" : NULL;

			if (e != NULL) {
				memcpy(s->decls + s->dlen, e, strlen(e));
				s->dlen += strlen(e);
			} else {
				s->decls[s->dlen++] = *u;
			}
		}
		s->decls[s->dlen++] = '\'';
		s->decls[s->dlen] = '\0';
		return;
	}
	if (s->waking)
		return;
	free(s->content_ns);
	s->content_ns = NULL;
	if (uri != NULL && *uri != '\0' &&
	    (s->content_ns = strdup(uri)) == NULL)
		stream_fail(s, "resource-constraint", "out of memory");
}

static void XMLCALL
on_xmldecl(void *ud, const char *version, const char *encoding,
    int standalone)
{
	xml_stream *s = ud;

	if (halted(s))
		return;
	(void)event_end(s);
	/* RFC 6120 11.6 */
	if (encoding != NULL && strcasecmp(encoding, "UTF-8") != 0)
		stream_fail(s, "unsupported-encoding", "only UTF-8 is allowed");
}

/* RFC 6120 11.1 */
static void XMLCALL
on_doctype(void *ud, const char *name, const char *sysid, const char *pubid,
    int has_internal)
{
	stream_fail(ud, "restricted-xml", "DTDs are not allowed");
}

static void XMLCALL
on_entity(void *ud, const char *name, int is_param, const char *value,
    int value_len, const char *base, const char *sysid, const char *pubid,
    const char *notation)
{
	stream_fail(ud, "restricted-xml", "entity declarations are not allowed");
}

static void XMLCALL
on_pi(void *ud, const char *target, const char *data)
{
	stream_fail(ud, "restricted-xml",
	    "processing instructions are not allowed");
}

static void XMLCALL
on_comment(void *ud, const char *data)
{
	stream_fail(ud, "restricted-xml", "comments are not allowed");
}

/* ------------------------------------------------------------------------
 * Errors
 */

static void
stream_fail(xml_stream *s, const char *cond, const char *text)
{
	if (halted(s))
		return;
	s->state = XS_FAILED;
	drop_stanza(s);
	if (s->in_parse)
		XML_StopParser(s->p, XML_FALSE);
	if (s->cb.error != NULL)
		s->cb.error(s->ud, cond, text);
}

static const char *
expat_condition(enum XML_Error err)
{
	switch (err) {
	case XML_ERROR_NO_MEMORY:
		return "resource-constraint";
	case XML_ERROR_UNBOUND_PREFIX:
		/* RFC 6120 4.9.3.2 */
		return "bad-namespace-prefix";
	case XML_ERROR_UNKNOWN_ENCODING:
	case XML_ERROR_INCORRECT_ENCODING:
		/* RFC 6120 4.9.3.22 */
		return "unsupported-encoding";
	case XML_ERROR_UNDEFINED_ENTITY:
	case XML_ERROR_RECURSIVE_ENTITY_REF:
	case XML_ERROR_BINARY_ENTITY_REF:
	case XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF:
	case XML_ERROR_EXTERNAL_ENTITY_HANDLING:
	case XML_ERROR_ENTITY_DECLARED_IN_PE:
	case XML_ERROR_NOT_STANDALONE:
		/* RFC 6120 11.1: only the predefined entities are allowed. */
		return "restricted-xml";
	default:
		return "not-well-formed";
	}
}

/* ------------------------------------------------------------------------
 * Parser life cycle
 */

/*
 * Reparse deferral (expat 2.6, and backports such as Debian's 2.5) must be
 * off, see the top of this file. Weak, so that a library without it links.
 */
extern XML_Bool XML_SetReparseDeferralEnabled(XML_Parser, XML_Bool)
    __attribute__((weak));

static int
parser_open(xml_stream *s)
{
	XML_Parser p;

	if ((p = parser_get()) == NULL)
		return -1;
	XML_SetUserData(p, s);
	XML_SetElementHandler(p, on_start, on_end);
	XML_SetCharacterDataHandler(p, on_text);
	XML_SetDefaultHandlerExpand(p, on_default);
	XML_SetStartNamespaceDeclHandler(p, on_ns);
	XML_SetXmlDeclHandler(p, on_xmldecl);
	XML_SetStartDoctypeDeclHandler(p, on_doctype);
	XML_SetEntityDeclHandler(p, on_entity);
	XML_SetProcessingInstructionHandler(p, on_pi);
	XML_SetCommentHandler(p, on_comment);
	XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
	if (XML_SetReparseDeferralEnabled != NULL)
		XML_SetReparseDeferralEnabled(p, XML_FALSE);

	if (s->p != NULL)
		parser_put(s->p, s->held_big);
	s->p = p;
	s->held_big = 0;
	drop_stanza(s);
	free(s->content_ns);
	s->content_ns = NULL;
	s->depth = 0;
	s->fed = s->boundary = s->event_end = s->seen = 0;
	s->hlen = 0;
	s->lex = LX_START;
	s->state = XS_OPEN;
	s->pending = XS_NONE;
	s->asleep = 0;
	s->dlen = 0;
	return 0;
}

xml_stream *
xml_stream_new(const struct xml_stream_cb *cb, void *ud,
    const struct xml_stream_limits *limits)
{
	xml_stream *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->cb = *cb;
	s->ud = ud;
	xml_stream_set_limits(s, limits);
	if (parser_open(s) == -1) {
		free(s);
		return NULL;
	}
	return s;
}

void
xml_stream_free(xml_stream **sp)
{
	xml_stream *s = *sp;

	if (s == NULL)
		return;
	drop_stanza(s);
	if (s->p != NULL)
		parser_put(s->p, s->held_big);
	free(s->content_ns);
	free(s->stack);
	free(s->text);
	free(s->scratch);
	free(s->hold);
	free(s->decls);
	free(s);
	*sp = NULL;
}

int
xml_stream_hibernate(xml_stream *s)
{
	/* Only between stanzas, with nothing held anywhere: expat has
	 * reported every byte it was given (fed == seen), nothing is held
	 * back, no stanza or text is being built. */
	if (s->asleep || s->p == NULL || s->state != XS_OPEN || s->in_parse ||
	    s->pending != XS_NONE || s->depth != 1 || s->nstack > 0 || s->tlen > 0 ||
	    s->hlen > 0 || s->fed != s->seen)
		return 0;
	parser_put(s->p, s->held_big);
	s->p = NULL;
	s->held_big = 0;
	free(s->stack);
	free(s->text);
	free(s->scratch);
	free(s->hold);
	s->stack = NULL;
	s->text = s->scratch = s->hold = NULL;
	s->cstack = 0;
	s->tcap = s->scap = s->hcap = 0;
	s->asleep = 1;
	return 1;
}

/* A new parser put where the old one was: at depth 1 of a stream whose
 * header it is fed again, silently. */
static int
wake(xml_stream *s)
{
	char *ns = s->content_ns, *decls = s->decls;
	size_t dlen = s->dlen;
	char *hdr;
	int len, rc = -1;

	s->content_ns = NULL;
	s->decls = NULL;
	s->dlen = s->dcap = 0;
	if (parser_open(s) == -1)
		goto out;
	len = asprintf(&hdr, "<stream:stream xmlns:stream='" XML_NS_STREAM "'%s%s%s%s>",
	    ns != NULL ? " xmlns='" : "", ns != NULL ? ns : "", ns != NULL ? "'" : "",
	    decls != NULL ? decls : "");
	if (len < 0)
		goto out;
	s->waking = 1;
	s->fed = len;
	s->in_parse = 1;
	rc = XML_Parse(s->p, hdr, len, XML_FALSE) == XML_STATUS_OK && s->depth == 1 &&
	    s->state == XS_OPEN ? 0 : -1;
	s->in_parse = 0;
	s->waking = 0;
	/* The replayed header counts towards nothing. */
	s->seen = s->boundary = s->event_end = s->fed;
	free(hdr);
out:
	/* parser_open dropped them: the stream's own values stay. */
	free(s->content_ns);
	s->content_ns = ns;
	free(s->decls);
	s->decls = decls;
	s->dlen = dlen;
	s->dcap = decls != NULL ? dlen + 1 : 0;
	if (rc == -1)
		stream_fail(s, "resource-constraint", "out of memory");
	return rc;
}

int
xml_stream_set_content_ns(xml_stream *s, const char *ns)
{
	char *copy = strdup(ns);

	if (copy == NULL)
		return -1;
	free(s->content_ns);
	s->content_ns = copy;
	return 0;
}

void
xml_stream_set_limits(xml_stream *s, const struct xml_stream_limits *limits)
{
	if (limits != NULL) {
		s->lim = *limits;
	} else {
		s->lim.max_stanza_size = DEF_STANZA;
		s->lim.max_depth = DEF_DEPTH;
		s->lim.max_attrs = DEF_ATTRS;
	}
}

void
xml_stream_restart(xml_stream *s)
{
	if (s->state == XS_FAILED || s->state == XS_ENDED)
		return;
	if (s->in_parse) {
		s->pending = XS_RESTART;
		XML_StopParser(s->p, XML_FALSE);
		return;
	}
	if (parser_open(s) == -1) {
		s->state = XS_OPEN;
		stream_fail(s, "resource-constraint", "out of memory");
	}
}

void
xml_stream_stop(xml_stream *s)
{
	if (s->state != XS_OPEN)
		return;
	if (s->in_parse) {
		if (s->pending == XS_NONE)
			s->pending = XS_STOP;
		XML_StopParser(s->p, XML_FALSE);
		return;
	}
	s->state = XS_STOPPED;
}

void
xml_stream_pause(xml_stream *s)
{
	/* Only from a callback, and a restart or stop asked for already
	 * ends this feed anyway. */
	if (s->state != XS_OPEN || !s->in_parse || s->pending != XS_NONE)
		return;
	s->pending = XS_PAUSE;
	XML_StopParser(s->p, XML_FALSE);
}

/* ------------------------------------------------------------------------
 * Feeding
 */

/*
 * Advances the scanner over bytes that follow expat's partial token and
 * returns 1 if one of them may end it. It may say yes wrongly (a rescan),
 * never no wrongly: a '>' is ignored only inside a start tag's attribute
 * value, a comment before "--" or a PI before "?", where XML 1.0 says it
 * ends nothing. Character data is not held by expat, so it needs no case.
 */
static int
lex_scan(xml_stream *s, const char *p, size_t n)
{
	int ends = 0;
	unsigned char c;

	for (; n > 0; p++, n--) {
		c = *p;
		switch (s->lex) {
		case LX_START:
			s->lex = c == '<' ? LX_LT : LX_ANY;
			ends |= c == '>';
			break;
		case LX_LT:
			if (c == '!')
				s->lex = LX_BANG;
			else if (c == '?') {
				s->lex = LX_PI;
				s->lex_n = 0;
			} else if (c == '/' || c == '>') {
				s->lex = LX_ANY;
				ends |= c == '>';
			} else
				s->lex = LX_TAG;
			break;
		case LX_TAG:
			if (c == '\'')
				s->lex = LX_APOS;
			else if (c == '"')
				s->lex = LX_QUOT;
			else if (c == '>') {
				s->lex = LX_ANY;
				ends = 1;
			}
			break;
		case LX_APOS:
			if (c == '\'')
				s->lex = LX_TAG;
			break;
		case LX_QUOT:
			if (c == '"')
				s->lex = LX_TAG;
			break;
		case LX_BANG:
			s->lex = c == '-' ? LX_BANG_DASH : LX_ANY;
			ends |= c == '>';
			break;
		case LX_BANG_DASH:
			s->lex = c == '-' ? LX_COMMENT : LX_ANY;
			s->lex_n = 0;
			ends |= c == '>';
			break;
		case LX_COMMENT:
			if (c == '>' && s->lex_n >= 2) {
				s->lex = LX_ANY;
				ends = 1;
			}
			s->lex_n = c == '-' ? s->lex_n + 1 : 0;
			break;
		case LX_PI:
			if (c == '>' && s->lex_n) {
				s->lex = LX_ANY;
				ends = 1;
			}
			s->lex_n = c == '?';
			break;
		default:
			ends |= c == '>';
			break;
		}
	}
	return ends;
}

/*
 * Hands buf to expat; the caller's chunk starts at buf + k. Returns 0 to go
 * on, 1 when feed must return 0 now with *used_r bytes of the chunk
 * consumed (SIZE_MAX: all of it), -1 after an error.
 */
static int
parse_buf(xml_stream *s, const char *buf, size_t n, size_t k, size_t *used_r)
{
	long long start = s->fed, seen = s->seen;
	enum XML_Status st;
	enum xs_pending pending;
	size_t used;

	s->fed += n;
	s->in_parse = 1;
	st = XML_Parse(s->p, buf, (int)n, XML_FALSE);
	s->in_parse = 0;

	if (s->state == XS_FAILED)
		return -1;
	if (s->state == XS_ENDED) {
		/* Nothing after </stream:stream> means anything. */
		*used_r = SIZE_MAX;
		return 1;
	}
	if ((pending = s->pending) != XS_NONE) {
		used = 0;
		if (s->event_end > start + (long long)k)
			used = s->event_end - start - k;
		*used_r = used < n - k ? used : n - k;
		s->pending = XS_NONE;
		if (pending == XS_STOP) {
			s->state = XS_STOPPED;
		} else if (pending == XS_PAUSE) {
			/* The stopped parser cannot go on: it goes back to the
			 * pool and the next feed takes one put at depth 1, as
			 * after hibernation (wake). What expat had beyond the
			 * element is the caller's again. */
			parser_put(s->p, s->held_big);
			s->p = NULL;
			s->held_big = 0;
			s->asleep = 1;
		} else if (parser_open(s) == -1) {
			stream_fail(s, "resource-constraint", "out of memory");
			return -1;
		}
		return 1;
	}
	if (st == XML_STATUS_ERROR) {
		stream_fail(s, expat_condition(XML_GetErrorCode(s->p)),
		    XML_ErrorString(XML_GetErrorCode(s->p)));
		return -1;
	}

	if (s->fed - s->seen > POOL_HELD_MAX)
		s->held_big = 1;
	/*
	 * Scan the token expat now holds. Events end in the bytes just
	 * given; if none came, the scanner already covered them.
	 */
	if (s->seen >= start) {
		s->lex = LX_START;
		(void)lex_scan(s, buf + (s->seen - start), s->fed - s->seen);
	} else if (s->seen != seen)
		s->lex = LX_ANY;
	return 0;
}

int
xml_stream_feed(xml_stream *s, const char *data, size_t len,
    size_t *consumed_r)
{
	const char *nul, *p;
	size_t off = 0, n, used, k;
	long long partial;
	int rc, ends;

	if (consumed_r != NULL)
		*consumed_r = 0;
	/* Feeding from a callback would re-enter expat. */
	if (s->state != XS_OPEN || s->in_parse)
		return -1;
	if (s->asleep && len > 0 && wake(s) == -1)
		return -1;

	while (off < len) {
		n = len - off < FEED_SLICE ? len - off : FEED_SLICE;
		/*
		 * NUL is never XML (XML 1.0 2.2), and expat takes a NUL among
		 * the first bytes for UTF-16 even when told UTF-8 (RFC 6120
		 * 11.6). What precedes it is still parsed, so the events do
		 * not depend on how the input was split.
		 */
		if ((nul = memchr(data + off, '\0', n)) != NULL)
			n = nul - (data + off);

		/*
		 * Hold back what cannot end the token expat holds, while it
		 * is shorter than that token (see the top of this file).
		 */
		partial = s->fed - s->seen;
		ends = partial > 0 ? lex_scan(s, data + off, n) : 1;
		if (n > 0 && !ends &&
		    s->hlen + n < (unsigned long long)partial) {
			if (grow(&s->hold, &s->hcap, s->hlen + n) == -1) {
				stream_fail(s, "resource-constraint",
				    "out of memory");
				return -1;
			}
			memcpy(s->hold + s->hlen, data + off, n);
			s->hlen += n;
		} else if (n > 0 || s->hlen > 0) {
			p = data + off;
			k = 0;
			if (s->hlen > 0) {
				if (grow(&s->hold, &s->hcap, s->hlen + n) == -1) {
					stream_fail(s, "resource-constraint",
					    "out of memory");
					return -1;
				}
				memcpy(s->hold + s->hlen, p, n);
				p = s->hold;
				k = s->hlen;
				s->hlen = 0;
			}
			rc = parse_buf(s, p, k + n, k, &used);
			if (rc == -1)
				return -1;
			if (rc == 1) {
				if (consumed_r != NULL)
					*consumed_r = used == SIZE_MAX ? len :
					    off + used;
				return 0;
			}
		}
		if (nul != NULL) {
			stream_fail(s, "not-well-formed", "NUL character");
			return -1;
		}
		/* A tag or text not reported yet counts too. */
		if (over_size(s, s->fed + (long long)s->hlen)) {
			stream_fail(s, "policy-violation", s->depth == 0 ?
			    "stream header too large" : "stanza too large");
			return -1;
		}
		off += n;
	}
	if (consumed_r != NULL)
		*consumed_r = len;
	return 0;
}

/* ---------------------------------------------------------------- */
/* One element from text (xml_parse_elem).                           */

struct parse_one {
	xml_elem *got;
	int bad;
};

static void
one_start(void *ud, const char *ns, const char **attrs)
{
}

static void
one_elem(void *ud, xml_elem *e)
{
	struct parse_one *p = ud;

	if (p->got == NULL) {
		p->got = e;
	} else {
		xml_elem_unref(e);
	}
}

static void
one_end(void *ud)
{
}

static void
one_error(void *ud, const char *cond, const char *text)
{
	((struct parse_one *)ud)->bad = 1;
}

xml_elem *
xml_parse_elem(const char *text, size_t len, const char *ns)
{
	static const struct xml_stream_cb cb = { one_start, one_elem, one_end, one_error };
	/* Wrapped in a stream: the stream parser is the one place that
	 * turns bytes into trees. */
	struct xml_stream_limits lim = { len + 1024, 64, 256 };
	struct parse_one p = { NULL, 0 };
	xml_stream *xs;
	char head[256];
	int n;
	size_t used;

	n = snprintf(head, sizeof(head), "<stream:stream xmlns='%s' xmlns:stream='"
	    XML_NS_STREAM "'>", ns);
	if (n < 0 || (size_t)n >= sizeof(head) || (xs = xml_stream_new(&cb, &p, &lim)) == NULL)
		return NULL;
	if (xml_stream_feed(xs, head, (size_t)n, &used) < 0 ||
	    xml_stream_feed(xs, text, len, &used) < 0)
		p.bad = 1;
	xml_stream_free(&xs);
	if (p.bad || p.got == NULL) {
		xml_elem_unref(p.got);
		return NULL;
	}
	return p.got;
}
