/*
 * fuzz-stream.c - libFuzzer target for the stream parser and serializer.
 *
 * The first byte says where to split the rest into two feeds. The same input
 * is also fed whole, and both runs must report the same events, except that
 * the split run may not have reported an error yet: input that cannot end
 * the token expat holds is held back, and an error in it waits for more.
 * Every element is serialized, its size checked, copied, and parsed back
 * from its serialization, which must be a fixed point. An element named
 * <r/> restarts the stream and <s/> stops it, to exercise the consumed-bytes
 * accounting. Limits are small so that they are reached.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml/xml.h"
#include "xml/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct run {
	xml_stream *s;
	char *log;
	size_t len, cap;
	int errors, ended, stopped;
};

static const struct xml_stream_limits limits = { 512, 6, 4 };

static void
log_add(struct run *r, const char *p, size_t n)
{
	if (r->len + n + 1 > r->cap) {
		r->cap = (r->len + n + 1) * 2;
		if ((r->log = realloc(r->log, r->cap)) == NULL)
			abort();
	}
	memcpy(r->log + r->len, p, n);
	r->len += n;
	r->log[r->len] = '\0';
}

static void
log_str(struct run *r, const char *s)
{
	log_add(r, s, strlen(s));
}

/* No callback may follow an error or the end of the stream. */
static void
check_live(struct run *r)
{
	if (r->errors != 0 || r->ended || r->stopped)
		abort();
}

static void
on_start(void *ud, const char *ns, const char **attrs)
{
	struct run *r = ud;

	check_live(r);
	log_str(r, "start ");
	log_str(r, ns ? ns : "-");
	for (; attrs[0] != NULL; attrs += 2) {
		log_str(r, " ");
		log_str(r, attrs[0]);
		log_str(r, "=");
		log_str(r, attrs[1]);
	}
	log_str(r, "\n");
}

/* Receives the one stanza check_fixed_point parses. */
static void
reparse_element(void *ud, xml_elem *e)
{
	char **out = ud;

	if (*out != NULL)
		abort();
	*out = xml_to_string(e, "jabber:client", NULL);
	xml_elem_unref(e);
}

static void
reparse_error(void *ud, const char *cond, const char *text)
{
	abort();
}

/* Parses s as the only stanza of a stream: it must serialize to itself. */
static void
check_fixed_point(const char *s, size_t len)
{
	static const char hdr[] = "<stream:stream xmlns='jabber:client' "
	    "xmlns:stream='http://etherx.jabber.org/streams'>";
	struct xml_stream_cb cb = {
		.element = reparse_element,
		.error = reparse_error,
	};
	struct xml_stream_limits big = { 1 << 20, 1000, 1000 };
	char *again = NULL;
	xml_stream *st;
	size_t used;

	if ((st = xml_stream_new(&cb, &again, &big)) == NULL)
		abort();
	if (xml_stream_feed(st, hdr, sizeof(hdr) - 1, &used) != 0 ||
	    xml_stream_feed(st, s, len, &used) != 0 || again == NULL ||
	    strcmp(again, s) != 0)
		abort();
	free(again);
	xml_stream_free(&st);
}

static void
on_element(void *ud, xml_elem *e)
{
	struct run *r = ud;
	xml_elem *c;
	char *s, *s2;
	size_t len, len2;

	check_live(r);
	s = xml_to_string(e, "jabber:client", &len);
	if (strlen(s) != len || xml_elem_size(e, "jabber:client") != len)
		abort();
	c = xml_elem_copy(e);
	s2 = xml_to_string(c, "jabber:client", &len2);
	if (len2 != len || memcmp(s, s2, len) != 0)
		abort();
	(void)xml_text(c);
	(void)xml_text(c);
	xml_elem_unref(c);
	free(s2);
	check_fixed_point(s, len);

	log_str(r, "elem ");
	log_add(r, s, len);
	log_str(r, "\n");
	free(s);

	if (strcmp(xml_elem_name(e), "r") == 0) {
		log_str(r, "restart\n");
		xml_stream_restart(r->s);
	} else if (strcmp(xml_elem_name(e), "s") == 0) {
		log_str(r, "stop\n");
		xml_stream_stop(r->s);
		r->stopped = 1;
	}
	xml_elem_unref(e);
}

static void
on_end(void *ud)
{
	struct run *r = ud;

	check_live(r);
	r->ended = 1;
	log_str(r, "end\n");
}

static void
on_error(void *ud, const char *cond, const char *text)
{
	struct run *r = ud;

	check_live(r);
	r->errors++;
	log_str(r, "error\n");
}

static const struct xml_stream_cb cbs = {
	.stream_start = on_start,
	.element = on_element,
	.stream_end = on_end,
	.error = on_error,
};

/* Feeds as a connection would: the rest again after a restart. */
static void
feed(struct run *r, const char *p, size_t n)
{
	size_t used;

	while (n > 0 && !r->stopped) {
		if (xml_stream_feed(r->s, p, n, &used) == -1) {
			if (used != 0)
				abort();
			return;
		}
		if (used > n || (used < n && used == 0 && !r->stopped))
			abort();
		p += used;
		n -= used;
	}
}

static char *
run(const char *data, size_t size, size_t cut)
{
	struct run r = { 0 };

	if ((r.s = xml_stream_new(&cbs, &r, &limits)) == NULL)
		abort();
	feed(&r, data, cut);
	/* The split run also hibernates between its pieces: a parser freed
	 * and remade must change nothing the whole run sees. */
	if (cut < size)
		(void)xml_stream_hibernate(r.s);
	feed(&r, data + cut, size - cut);
	if (r.errors > 1)
		abort();
	xml_stream_free(&r.s);
	if (r.log == NULL && (r.log = strdup("")) == NULL)
		abort();
	return r.log;
}

int
LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
	const char *data = (const char *)buf + 1;
	char *a, *b;
	size_t cut, la, lb;

	if (size == 0)
		return 0;
	size--;
	cut = buf[0] < size ? buf[0] : size;
	a = run(data, size, cut);
	b = run(data, size, size);
	la = strlen(a);
	lb = strlen(b);
	if (strcmp(a, b) != 0 && !(lb == la + 6 && memcmp(a, b, la) == 0 &&
	    strcmp(b + la, "error\n") == 0)) {
		fprintf(stderr, "split at %zu:\n%s\nwhole:\n%s\n", cut, a, b);
		abort();
	}
	free(a);
	free(b);
	return 0;
}
