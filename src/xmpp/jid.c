/*
 * jid.c - JID parsing and preparation.
 *
 * The split follows RFC 7622 3.1; the parts are prepared with the RFC 6122
 * stringprep profiles (nodeprep, nameprep, resourceprep) through libidn,
 * which is what deployed servers compare with. Where that differs from the
 * PRECIS rules of RFC 7622 (e.g. "fußball" becomes "fussball", "henry\u2163"
 * becomes "henryiv"), the stringprep result wins: two servers must agree on
 * what a JID compares equal to, and stringprep is what the others do.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <punycode.h>
#include <stringprep.h>

#include "xmpp/jid.h"

/*
 * Raw bytes accepted per part before preparation. Preparation may shrink a
 * part (characters mapped to nothing, RFC 3454 B.1), so the 1023-byte limit
 * can only be applied afterwards; this bound keeps the work done on hostile
 * input proportionate while leaving room for any plausible mapping.
 */
#define JID_RAW_MAX	(4 * JID_PART_MAX)
#define JID_BUF_SIZE	(JID_RAW_MAX + 1)

/* RFC 1035 2.3.4, applied to the A-label form (RFC 5890 2.3.2.1). */
#define JID_LABEL_MAX	63

enum jid_part { PART_NODE, PART_DOMAIN, PART_RESOURCE };

static void	 set_error(const char **, const char *);
static int	 utf8_valid(const char *, size_t);
static int	 prep_ascii(enum jid_part, char *, const char *, size_t);
static int	 prep_profile(enum jid_part, char *, const char *, size_t,
		    size_t *, const char **);
static int	 prep_label(const char *, size_t, const char **);
static int	 prep_domain(char *, const char *, size_t, size_t *,
		    const char **);
static int	 prep_ipv6(char *, const char *, size_t, size_t *,
		    const char **);
static int	 jid_build(jid *, const char *, size_t, const char *, size_t,
		    const char *, size_t);
static char	*prep_dup(enum jid_part, const char *, size_t);

static void
set_error(const char **error_r, const char *error)
{
	if (error_r != NULL)
		*error_r = error;
}

/*
 * Strict UTF-8 (RFC 3629 4): no overlong forms, no surrogates, nothing
 * above U+10FFFF. NUL is refused too: the prepared parts are C strings,
 * and libidn would silently stop at the first NUL.
 */
static int
utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *end = p + len;

	while (p < end) {
		unsigned char c = *p;
		size_t n;
		unsigned char lo = 0x80, hi = 0xbf;

		if (c == 0)
			return 0;
		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1;
		else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else
			return 0;
		if ((size_t)(end - p) <= n)
			return 0;
		if (p[1] < lo || p[1] > hi)
			return 0;
		for (size_t i = 2; i <= n; i++)
			if (p[i] < 0x80 || p[i] > 0xbf)
				return 0;
		p += n + 1;
	}
	return 1;
}

/*
 * The profiles restricted to ASCII, which is what nearly every JID is:
 * libidn converts to UCS-4 and normalizes even then, at some cost on a
 * router's hot path. For ASCII the three profiles reduce to this (RFC 6122
 * A and B, RFC 3491): B.1 maps nothing in ASCII and NFKC changes nothing;
 * nodeprep and nameprep fold A-Z (B.2); nodeprep prohibits controls, space
 * (C.1.1, C.2.1) and "&'/:<>@; resourceprep prohibits controls; nameprep
 * prohibits nothing (the hostname rules come later). t-jid.c checks this
 * against libidn for every ASCII character.
 *
 * Returns 0 if s is not all ASCII. Otherwise 1, with buf holding the
 * result, or an empty string in buf if a character is prohibited.
 */
static int
prep_ascii(enum jid_part part, char *buf, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 0;
	if (len > JID_PART_MAX)
		return 1;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (part != PART_DOMAIN && (c < 0x20 || c == 0x7f))
			goto prohibited;
		if (part == PART_NODE && (c == ' ' ||
		    strchr("\"&'/:<>@", c) != NULL))
			goto prohibited;
		if (part != PART_RESOURCE && c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		buf[i] = c;
	}
	buf[len] = '\0';
	return 1;
prohibited:
	buf[0] = '\0';
	return 1;
}

/*
 * Runs one stringprep profile over s into buf (JID_BUF_SIZE bytes). The
 * output limit is applied by libidn itself through maxlen.
 */
static int
prep_profile(enum jid_part part, char *buf, const char *s, size_t len,
    size_t *len_r, const char **error_r)
{
	static const char *empty[] = {
		"empty localpart", "empty domainpart", "empty resourcepart" };
	static const char *toolong[] = {
		"localpart too long", "domainpart too long",
		"resourcepart too long" };
	static const char *badutf8[] = {
		"localpart is not UTF-8", "domainpart is not UTF-8",
		"resourcepart is not UTF-8" };
	static const char *prohibited[] = {
		"localpart contains a prohibited character",
		"domainpart contains a prohibited character",
		"resourcepart contains a prohibited character" };
	static const char *bidi[] = {
		"localpart breaks the bidi rule",
		"domainpart breaks the bidi rule",
		"resourcepart breaks the bidi rule" };
	static const char *failed[] = {
		"localpart preparation failed", "domainpart preparation failed",
		"resourcepart preparation failed" };
	const Stringprep_profile *profile;
	int rc;

	if (len == 0) {
		set_error(error_r, empty[part]);
		return -1;
	}
	if (len > JID_RAW_MAX) {
		set_error(error_r, toolong[part]);
		return -1;
	}
	if (!utf8_valid(s, len)) {
		set_error(error_r, badutf8[part]);
		return -1;
	}
	if (prep_ascii(part, buf, s, len)) {
		if (len > JID_PART_MAX) {
			set_error(error_r, toolong[part]);
			return -1;
		}
		if (buf[0] == '\0') {
			set_error(error_r, prohibited[part]);
			return -1;
		}
		*len_r = len;
		return 0;
	}
	switch (part) {
	case PART_NODE:
		profile = stringprep_xmpp_nodeprep;
		break;
	case PART_DOMAIN:
		profile = stringprep_nameprep;
		break;
	default:
		profile = stringprep_xmpp_resourceprep;
		break;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	/* Flags 0: unassigned code points allowed, as in queries (RFC 3454
	 * 7); every other deployed server prepares JIDs this way. */
	rc = stringprep(buf, JID_PART_MAX + 1, 0, profile);
	switch (rc) {
	case STRINGPREP_OK:
		break;
	case STRINGPREP_TOO_SMALL_BUFFER:
		set_error(error_r, toolong[part]);
		return -1;
	case STRINGPREP_CONTAINS_PROHIBITED:
	case STRINGPREP_CONTAINS_UNASSIGNED:
		set_error(error_r, prohibited[part]);
		return -1;
	case STRINGPREP_BIDI_BOTH_L_AND_RAL:
	case STRINGPREP_BIDI_LEADTRAIL_NOT_RAL:
	case STRINGPREP_BIDI_CONTAINS_PROHIBITED:
		set_error(error_r, bidi[part]);
		return -1;
	default:
		set_error(error_r, failed[part]);
		return -1;
	}
	*len_r = strlen(buf);
	/* Everything may have been mapped to nothing (RFC 3454 3.1). */
	if (*len_r == 0) {
		set_error(error_r, empty[part]);
		return -1;
	}
	return 0;
}

/*
 * Checks one nameprepped label. Labels are kept in their Unicode
 * form (RFC 7622 3.2: U-labels, not A-labels), but their length is
 * measured in the A-label form that DNS will see.
 */
static int
prep_label(const char *label, size_t len, const char **error_r)
{
	size_t i;
	int ascii = 1;
	uint32_t *ucs4;
	size_t ucs4len, acelen;
	char ace[JID_LABEL_MAX + 1];
	int rc;

	if (len == 0) {
		set_error(error_r, "empty label in domainpart");
		return -1;
	}
	/* RFC 1123 2.1, RFC 5891 4.2.3.1: letters, digits and hyphens,
	 * no hyphen at either end. Non-ASCII is nameprep's business. */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)label[i];

		if (c >= 0x80) {
			ascii = 0;
			continue;
		}
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-')
			continue;
		set_error(error_r, "character not allowed in a domain name");
		return -1;
	}
	if (label[0] == '-' || label[len - 1] == '-') {
		set_error(error_r, "domain label begins or ends with a hyphen");
		return -1;
	}
	if (ascii) {
		if (len > JID_LABEL_MAX) {
			set_error(error_r, "domain label too long");
			return -1;
		}
		return 0;
	}
	ucs4 = stringprep_utf8_to_ucs4(label, (ssize_t)len, &ucs4len);
	if (ucs4 == NULL) {
		set_error(error_r, "domainpart is not UTF-8");
		return -1;
	}
	/* "xn--" + punycode must fit in 63 bytes (RFC 3490 5). */
	acelen = JID_LABEL_MAX - 4;
	rc = punycode_encode(ucs4len, ucs4, NULL, &acelen, ace);
	free(ucs4);
	if (rc == PUNYCODE_BIG_OUTPUT) {
		set_error(error_r, "domain label too long");
		return -1;
	}
	if (rc != PUNYCODE_SUCCESS) {
		set_error(error_r, "domainpart preparation failed");
		return -1;
	}
	return 0;
}

/* RFC 7622 3.2: an IPv6 literal in brackets (RFC 3986 3.2.2). It is
 * written back in the canonical form of RFC 5952 so that strcmp works. */
static int
prep_ipv6(char *out, const char *s, size_t len, size_t *len_r,
    const char **error_r)
{
	char tmp[INET6_ADDRSTRLEN];
	struct in6_addr a;

	if (len < 3 || s[len - 1] != ']' || len - 2 >= sizeof(tmp)) {
		set_error(error_r, "invalid IPv6 literal in domainpart");
		return -1;
	}
	memcpy(tmp, s + 1, len - 2);
	tmp[len - 2] = '\0';
	if (inet_pton(AF_INET6, tmp, &a) != 1 ||
	    inet_ntop(AF_INET6, &a, tmp, sizeof(tmp)) == NULL) {
		set_error(error_r, "invalid IPv6 literal in domainpart");
		return -1;
	}
	*len_r = (size_t)snprintf(out, JID_PART_MAX + 1, "[%s]", tmp);
	return 0;
}

/*
 * RFC 7622 3.2 with the RFC 6122 profile: IDNA2003 label separators are
 * recognised, each label is nameprepped on its own (the bidi rule applies
 * per label, RFC 3491 6), one trailing dot is removed, and an all-numeric
 * name must be an IPv4 address. out must hold JID_BUF_SIZE bytes.
 */
static int
prep_domain(char *out, const char *s, size_t len, size_t *len_r,
    const char **error_r)
{
	char raw[JID_BUF_SIZE], label[JID_BUF_SIZE];
	size_t rlen = 0, olen = 0, i, start, llen;
	int numeric = 1;
	struct in_addr a4;

	if (len == 0) {
		set_error(error_r, "empty domainpart");
		return -1;
	}
	if (len > JID_RAW_MAX) {
		set_error(error_r, "domainpart too long");
		return -1;
	}
	if (!utf8_valid(s, len)) {
		set_error(error_r, "domainpart is not UTF-8");
		return -1;
	}
	if (s[0] == '[')
		return prep_ipv6(out, s, len, len_r, error_r);

	/* RFC 3490 3.1 (1): U+3002, U+FF0E and U+FF61 are dots too. */
	for (i = 0; i < len; i++) {
		if (i + 2 < len && ((memcmp(s + i, "\xe3\x80\x82", 3) == 0) ||
		    memcmp(s + i, "\xef\xbc\x8e", 3) == 0 ||
		    memcmp(s + i, "\xef\xbd\xa1", 3) == 0)) {
			raw[rlen++] = '.';
			i += 2;
		} else
			raw[rlen++] = s[i];
	}
	/* RFC 7622 3.2: a single trailing dot is not part of the name. */
	if (rlen > 0 && raw[rlen - 1] == '.')
		rlen--;
	if (rlen == 0) {
		set_error(error_r, "empty domainpart");
		return -1;
	}
	raw[rlen] = '\0';

	for (start = 0; start <= rlen; start = i + 1) {
		for (i = start; i < rlen && raw[i] != '.'; i++)
			;
		if (prep_profile(PART_DOMAIN, label, raw + start, i - start,
		    &llen, error_r) == -1) {
			if (i == start)
				set_error(error_r, "empty label in domainpart");
			return -1;
		}
		if (prep_label(label, llen, error_r) == -1)
			return -1;
		for (size_t j = 0; j < llen; j++)
			if (label[j] < '0' || label[j] > '9')
				numeric = 0;
		if (olen + (olen > 0) + llen > JID_PART_MAX) {
			set_error(error_r, "domainpart too long");
			return -1;
		}
		if (olen > 0)
			out[olen++] = '.';
		memcpy(out + olen, label, llen);
		olen += llen;
	}
	out[olen] = '\0';

	/* RFC 3696 2: a top-level label is never all-numeric, so such a
	 * name can only be an IPv4 address (RFC 7622 3.2). */
	if (numeric && inet_pton(AF_INET, out, &a4) != 1) {
		set_error(error_r, "invalid IPv4 address in domainpart");
		return -1;
	}
	*len_r = olen;
	return 0;
}

/*
 * Lays out the prepared parts in one allocation:
 * node NUL domain NUL resource NUL bare NUL [full NUL].
 */
static int
jid_build(jid *out, const char *node, size_t nlen, const char *domain,
    size_t dlen, const char *res, size_t rlen)
{
	size_t barelen, size;
	char *p;

	memset(out, 0, sizeof(*out));
	barelen = (node != NULL ? nlen + 1 : 0) + dlen;
	size = (node != NULL ? nlen + 1 : 0) + dlen + 1 + barelen + 1;
	if (res != NULL)
		size += rlen + 1 + barelen + 1 + rlen + 1;
	if ((p = malloc(size)) == NULL)
		return -1;
	out->mem = p;
	if (node != NULL) {
		out->node = p;
		memcpy(p, node, nlen);
		p[nlen] = '\0';
		p += nlen + 1;
	}
	out->domain = p;
	memcpy(p, domain, dlen);
	p[dlen] = '\0';
	p += dlen + 1;
	if (res != NULL) {
		out->resource = p;
		memcpy(p, res, rlen);
		p[rlen] = '\0';
		p += rlen + 1;
	}
	out->bare = p;
	if (node != NULL) {
		memcpy(p, node, nlen);
		p[nlen] = '@';
		p += nlen + 1;
	}
	memcpy(p, domain, dlen);
	p[dlen] = '\0';
	p += dlen + 1;
	if (res != NULL) {
		out->full = p;
		memcpy(p, out->bare, barelen);
		p[barelen] = '/';
		memcpy(p + barelen + 1, res, rlen);
		p[barelen + 1 + rlen] = '\0';
	} else
		out->full = out->bare;
	return 0;
}

int
jid_parse(jid *out, const char *s, size_t len, const char **error_r)
{
	char node[JID_BUF_SIZE], domain[JID_BUF_SIZE], res[JID_BUF_SIZE];
	const char *slash, *at, *dstart, *dend;
	size_t nlen = 0, dlen = 0, rlen = 0;
	int has_node, has_res;

	memset(out, 0, sizeof(*out));
	if (s == NULL || len == 0) {
		set_error(error_r, "empty JID");
		return -1;
	}
	/* RFC 7622 3.1: the resourcepart is everything after the first
	 * '/', the localpart everything before the first '@' preceding it. */
	slash = memchr(s, '/', len);
	dend = slash != NULL ? slash : s + len;
	at = memchr(s, '@', (size_t)(dend - s));
	dstart = at != NULL ? at + 1 : s;
	has_node = at != NULL;
	has_res = slash != NULL;

	if (has_node && prep_profile(PART_NODE, node, s, (size_t)(at - s),
	    &nlen, error_r) == -1)
		return -1;
	if (prep_domain(domain, dstart, (size_t)(dend - dstart), &dlen,
	    error_r) == -1)
		return -1;
	if (has_res && prep_profile(PART_RESOURCE, res, slash + 1,
	    len - (size_t)(slash + 1 - s), &rlen, error_r) == -1)
		return -1;
	if (jid_build(out, has_node ? node : NULL, nlen, domain, dlen,
	    has_res ? res : NULL, rlen) == -1) {
		set_error(error_r, "out of memory");
		return -1;
	}
	return 0;
}

int
jid_make(jid *out, const char *node, const char *domain, const char *resource,
    const char **error_r)
{
	char nbuf[JID_BUF_SIZE], dbuf[JID_BUF_SIZE], rbuf[JID_BUF_SIZE];
	size_t nlen = 0, dlen = 0, rlen = 0;

	memset(out, 0, sizeof(*out));
	if (domain == NULL) {
		set_error(error_r, "empty domainpart");
		return -1;
	}
	if (node != NULL && prep_profile(PART_NODE, nbuf, node, strlen(node),
	    &nlen, error_r) == -1)
		return -1;
	if (prep_domain(dbuf, domain, strlen(domain), &dlen, error_r) == -1)
		return -1;
	if (resource != NULL && prep_profile(PART_RESOURCE, rbuf, resource,
	    strlen(resource), &rlen, error_r) == -1)
		return -1;
	if (jid_build(out, node != NULL ? nbuf : NULL, nlen, dbuf, dlen,
	    resource != NULL ? rbuf : NULL, rlen) == -1) {
		set_error(error_r, "out of memory");
		return -1;
	}
	return 0;
}

int
jid_copy(jid *out, const jid *src)
{
	if (src == NULL || src->domain == NULL) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	/* The parts are prepared already; preparing again is not needed
	 * (and stringprep output is stable under a second pass anyway). */
	return jid_build(out, src->node, src->node ? strlen(src->node) : 0,
	    src->domain, strlen(src->domain), src->resource,
	    src->resource ? strlen(src->resource) : 0);
}

int
jid_bare_of(jid *out, const jid *src)
{
	if (src == NULL || src->domain == NULL) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	return jid_build(out, src->node, src->node ? strlen(src->node) : 0,
	    src->domain, strlen(src->domain), NULL, 0);
}

void
jid_free(jid *j)
{
	if (j == NULL)
		return;
	free(j->mem);
	memset(j, 0, sizeof(*j));
}

static char *
prep_dup(enum jid_part part, const char *s, size_t len)
{
	char buf[JID_BUF_SIZE];
	size_t olen;
	int rc;

	if (s == NULL)
		return NULL;
	if (part == PART_DOMAIN)
		rc = prep_domain(buf, s, len, &olen, NULL);
	else
		rc = prep_profile(part, buf, s, len, &olen, NULL);
	if (rc == -1)
		return NULL;
	return strdup(buf);
}

char *
jid_nodeprep(const char *s, size_t len)
{
	return prep_dup(PART_NODE, s, len);
}

char *
jid_nameprep(const char *s, size_t len)
{
	return prep_dup(PART_DOMAIN, s, len);
}

char *
jid_resourceprep(const char *s, size_t len)
{
	return prep_dup(PART_RESOURCE, s, len);
}
