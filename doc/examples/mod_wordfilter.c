/*
 * mod_wordfilter - an example xmppd module, built out of tree.
 *
 * Replaces configured words in the bodies of routed messages, and answers
 * a custom IQ with how many messages it has filtered. It shows the parts
 * most modules need: an option table, state that is read-only after load,
 * a filter_packet hook that copies a stanza to change it (routed stanzas
 * are immutable and shared between workers), atomic and per-worker
 * counters, an IQ handler and a disco feature.
 *
 *     cc $(pkg-config --cflags xmppd) -fPIC -shared -o mod_wordfilter.so mod_wordfilter.c
 *
 * xmppd.yml:
 *
 *     modules:
 *       mod_wordfilter:
 *         words: [darn, heck]
 *         replacement: "***"
 *
 * Words match whole words only, ASCII letters without regard to case
 * ("Darn!" matches darn, "darnation" does not); bytes of UTF-8 sequences
 * count as letters and must match exactly.
 *
 * The IQ (namespace urn:xmppd:example:wordfilter, type get, to the server):
 *
 *     <iq type='get' to='example.org' id='1'>
 *       <query xmlns='urn:xmppd:example:wordfilter'/>
 *     </iq>
 *
 * is answered with
 *
 *     <query xmlns='urn:xmppd:example:wordfilter'>
 *       <total>12</total>      messages filtered since the module loaded
 *       <worker>5</worker>     of those, on the worker that answers
 *     </query>
 *
 * The worker that answers is the one that owns the asking client's
 * connection, so a client sees the count of the worker it is on.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xmppd.h>

#define NS_WORDFILTER "urn:xmppd:example:wordfilter"

/* Band 10-39 of doc/hooks.md: rewriting runs after access checks (0-9)
 * and before features such as archiving (60-79) see the stanza. */
#define FILTER_PRIORITY 20

static enum xmppd_result filter_packet(void *args, void *ud);
static enum xmppd_result count_iq(xmppd_elem *iq, const xmppd_jid *from,
    const xmppd_jid *to, void *ud);

static const struct xmppd_option options[] = {
	{ "words", XMPPD_OPT_STRING_LIST, NULL, 0, 0 },
	{ "replacement", XMPPD_OPT_STRING, "***", 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

/*
 * Module state. Everything but the counter is written in load and only
 * read afterwards, so workers share it without a lock. It is freed in
 * unload, which the core calls only once no worker can be running this
 * module's code.
 */
struct wordfilter {
	char **words;           /* lower-cased copies of the option */
	size_t *lens;
	size_t nwords;
	char *replacement;
	unsigned long total;    /* atomic: every worker adds to it */
};

/* Per-worker state: a worker is one thread that never changes, so a
 * thread-local variable is a per-worker variable. No lock, no sharing. */
static _Thread_local unsigned long filtered_here;

/* ------------------------------------------------------------------ */
/* Matching                                                            */

static int
is_word_byte(unsigned char c)
{
	return isalnum(c) || c == '_' || c >= 0x80;
}

/* The configured word that starts at p (whole word), or -1. */
static long
word_at(const struct wordfilter *wf, const char *text, const char *p)
{
	if (p > text && is_word_byte((unsigned char)p[-1]))
		return -1;
	for (size_t i = 0; i < wf->nwords; i++) {
		size_t n = wf->lens[i];

		if (strncasecmp(p, wf->words[i], n) == 0 && !is_word_byte((unsigned char)p[n]))
			return (long)i;
	}
	return -1;
}

/* A malloc'd copy of text with the words replaced, or NULL if nothing
 * matched (or memory ran out: the text is then passed on unfiltered). */
static char *
replace_words(const struct wordfilter *wf, const char *text)
{
	size_t rlen = strlen(wf->replacement), cap = strlen(text) + 1, len = 0;
	char *out = NULL;
	int hit = 0;

	for (const char *p = text; *p != '\0';) {
		long w = word_at(wf, text, p);
		const char *add = w >= 0 ? wf->replacement : p;
		size_t n = w >= 0 ? rlen : 1;

		if (out == NULL || len + n + 1 > cap) {
			char *bigger;

			cap = cap * 2 + n;
			if ((bigger = realloc(out, cap)) == NULL) {
				free(out);
				return NULL;
			}
			out = bigger;
		}
		memcpy(out + len, add, n);
		len += n;
		p += w >= 0 ? wf->lens[w] : 1;
		hit |= w >= 0;
	}
	if (!hit) {
		free(out);
		return NULL;
	}
	out[len] = '\0';
	return out;
}

/* ------------------------------------------------------------------ */
/* The hook                                                            */

static int
is_body(const xmppd_elem *e)
{
	/* NULL: the stream's content namespace, where <body/> lives. */
	return xmppd_elem_ns(e) == NULL && strcmp(xmppd_elem_name(e), "body") == 0;
}

static int
has_word(const struct wordfilter *wf, const char *text)
{
	for (const char *p = text; *p != '\0'; p++)
		if (word_at(wf, text, p) >= 0)
			return 1;
	return 0;
}

/* A new copy of st whose bodies (one per xml:lang, RFC 6121 5.2.3) are
 * filtered. They move after the other children; their order is kept. */
static xmppd_elem *
filtered_copy(const struct wordfilter *wf, xmppd_elem *st)
{
	xmppd_elem *copy = xmppd_elem_copy(st), *c, *next;

	for (c = xmppd_elem_first_child(copy); c != NULL; c = next) {
		next = xmppd_elem_next_sibling(c);
		if (is_body(c))
			xmppd_elem_remove_child(copy, c);
	}
	for (c = xmppd_elem_first_child(st); c != NULL; c = xmppd_elem_next_sibling(c)) {
		const char *old = xmppd_elem_text(c), *lang;
		xmppd_elem *nb;
		char *text;

		if (!is_body(c))
			continue;
		text = replace_words(wf, old);
		nb = xmppd_elem_add_child(copy, NULL, "body");
		if ((lang = xmppd_elem_attr(c, "xml:lang")) != NULL)
			xmppd_elem_set_attr(nb, "xml:lang", lang);
		xmppd_elem_add_text(nb, text != NULL ? text : old, strlen(text != NULL ? text : old));
		free(text);
	}
	return copy;
}

/*
 * filter_packet runs on the worker that routes the stanza (the sender's),
 * for every stanza routed: bounces and IQ replies too. The stanza in args
 * may be shared (other workers can hold references to it), so it is never
 * changed: a copy is made and handed back in args->stanza.
 */
static enum xmppd_result
filter_packet(void *args, void *ud)
{
	struct xmppd_packet_args *a = args;
	struct wordfilter *wf = ud;
	const char *kind = xmppd_stanza_kind(a->stanza), *type;
	xmppd_elem *c;

	if (kind == NULL || strcmp(kind, "message") != 0)
		return XMPPD_CONTINUE;
	type = xmppd_stanza_type(a->stanza);
	if (type != NULL && strcmp(type, "error") == 0)
		return XMPPD_CONTINUE;
	for (c = xmppd_elem_first_child(a->stanza); c != NULL; c = xmppd_elem_next_sibling(c))
		if (is_body(c) && has_word(wf, xmppd_elem_text(c)))
			break;
	if (c == NULL)
		return XMPPD_CONTINUE;
	/* Hand our reference to the core (doc/hooks.md, filter_packet): it
	 * routes the copy, drops it after, and drops the original too. */
	a->stanza = filtered_copy(wf, a->stanza);
	__atomic_add_fetch(&wf->total, 1, __ATOMIC_RELAXED);
	filtered_here++;
	/* CONTINUE: later filters see the copy; STOP would drop it. */
	return XMPPD_CONTINUE;
}

/* ------------------------------------------------------------------ */
/* The IQ                                                              */

static void
add_count(xmppd_elem *q, const char *name, unsigned long n)
{
	char buf[32];
	xmppd_elem *e = xmppd_elem_add_child(q, NS_WORDFILTER, name);

	snprintf(buf, sizeof(buf), "%lu", n);
	xmppd_elem_add_text(e, buf, strlen(buf));
}

/* On the worker of the asking client's connection. */
static enum xmppd_result
count_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	struct wordfilter *wf = ud;
	xmppd_elem *q = xmppd_elem_new(NS_WORDFILTER, "query");

	add_count(q, "total", __atomic_load_n(&wf->total, __ATOMIC_RELAXED));
	add_count(q, "worker", filtered_here);
	xmppd_iq_reply(iq, q);          /* takes q */
	return XMPPD_STOP;
}

/* ------------------------------------------------------------------ */
/* Load and unload                                                     */

static void
wordfilter_free(struct wordfilter *wf)
{
	if (wf == NULL)
		return;
	for (size_t i = 0; i < wf->nwords; i++)
		free(wf->words[i]);
	free(wf->words);
	free(wf->lens);
	free(wf->replacement);
	free(wf);
}

static int
load(xmppd_ctx *ctx)
{
	size_t n = xmppd_opt_list_len(ctx, "words");
	struct wordfilter *wf = calloc(1, sizeof(*wf));

	/* Options are read here, once: the loader has checked their types
	 * and applied the defaults. */
	if (wf == NULL || (wf->words = calloc(n + 1, sizeof(*wf->words))) == NULL ||
	    (wf->lens = calloc(n + 1, sizeof(*wf->lens))) == NULL ||
	    (wf->replacement = strdup(xmppd_opt_string(ctx, "replacement"))) == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		const char *w = xmppd_opt_list_at(ctx, "words", i);

		if (*w == '\0')
			continue;
		if ((wf->words[wf->nwords] = strdup(w)) == NULL)
			goto fail;
		for (char *p = wf->words[wf->nwords]; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
		wf->lens[wf->nwords] = strlen(w);
		wf->nwords++;
	}
	if (wf->nwords == 0)
		xmppd_log(ctx, XMPPD_LOG_WARNING, "no 'words' configured: nothing will be filtered");
	xmppd_set_data(ctx, wf);
	/* If a registration fails, returning -1 is enough: the core takes
	 * back the others (all or nothing). Our own state is ours to free. */
	if (xmppd_hook_add(ctx, XMPPD_HOOK_FILTER_PACKET, NULL, FILTER_PRIORITY, filter_packet,
	    wf) < 0 ||
	    xmppd_iq_register(ctx, NULL, NS_WORDFILTER, XMPPD_IQ_GET, XMPPD_IQ_SERVER, count_iq,
	    wf) < 0 ||
	    xmppd_disco_feature(ctx, NS_WORDFILTER) < 0)
		goto fail;
	xmppd_log(ctx, XMPPD_LOG_INFO, "filtering %zu word(s)", wf->nwords);
	return 0;
fail:
	xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot set up (out of memory?)");
	xmppd_set_data(ctx, NULL);
	wordfilter_free(wf);
	return -1;
}

/* Every registration is gone and no worker runs our code any more. */
static void
unload(xmppd_ctx *ctx)
{
	wordfilter_free(xmppd_get_data(ctx));
	xmppd_set_data(ctx, NULL);
}

/*
 * No reload function: `xmppctl module reload` and a configuration reload
 * with changed options then unload the module and load it again, which is
 * always safe. A reload function runs while workers use the module; it
 * could not free the old word list, since the ABI has no way to wait for
 * the workers to let go of it (doc/modules.md, "Reload").
 */
XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_wordfilter",
	.version = "1.0",
	.depends = NULL,
	.options = options,
	.load = load,
	.unload = unload,
	.reload = NULL,
};
