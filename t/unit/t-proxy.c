/*
 * t-proxy.c - net/proxy.h: the PROXY protocol header, versions 1 and 2
 * (haproxy's doc/proxy-protocol.txt, sections 2.1 and 2.2), fed whole and
 * a byte at a time; the X-Forwarded-For walk over trusted_proxies; and
 * the two configuration keys (trusted_proxies, a listener's
 * proxy_protocol) with their mistakes.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "c2s/c2s.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "net/listener.h"
#include "net/proxy.h"
#include "net/tls.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

#define H "hosts: [localhost]\n"

static struct conf *
parse(const char *text, const char **err_r)
{
	*err_r = NULL;
	return conf_parse("t-proxy.yml", text, strlen(text), err_r);
}

static struct conf *
parse_ok(const char *text)
{
	const char *err;
	struct conf *c = parse(text, &err);

	if (c == NULL)
		fail_msg("unexpected error: %s", err);
	return c;
}

static void
parse_bad(const char *text, const char *want)
{
	const char *err;
	struct conf *c = parse(text, &err);

	if (c != NULL) {
		conf_unref(c);
		fail_msg("loaded, but should not have: %s", text);
	}
	assert_string_equal(err, want);
}

static const char *
fmt(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	sockaddr_format((const struct sockaddr *)ss, buf, len);
	return buf;
}

/* A socket address from "IP" or "IP port". */
static struct sockaddr_storage
mkaddr(const char *ip, unsigned port)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	return ss;
}

/*
 * Parses p[0..len) whole, then fed a byte at a time as a reader that
 * takes what the parser calls header would: every proper prefix must be
 * PROXY_INCOMPLETE (or, once the header is known to be bad,
 * PROXY_INVALID), and the whole must give the same answer.
 */
static enum proxy_status
parse_hdr(const void *p, size_t len, struct proxy_result *r)
{
	enum proxy_status whole = proxy_parse(p, len, r), st = PROXY_INCOMPLETE;
	struct proxy_result r2;
	size_t i;

	for (i = 1; i <= len; i++) {
		st = proxy_parse(p, i, &r2);
		if (st != PROXY_INCOMPLETE)
			break;
	}
	if (whole == PROXY_COMPLETE) {
		/* Complete exactly when the header's last byte came. */
		assert_int_equal(st, PROXY_COMPLETE);
		assert_int_equal(i, r->len);
		assert_int_equal(r2.len, r->len);
	} else if (whole == PROXY_INVALID) {
		assert_int_equal(st, PROXY_INVALID);
	} else {
		assert_int_equal(st, PROXY_INCOMPLETE);
	}
	return whole;
}

static enum proxy_status
parse_str(const char *s, struct proxy_result *r)
{
	return parse_hdr(s, strlen(s), r);
}

static const unsigned char v2sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* A v2 header: signature, ver_cmd, fam, then body[0..blen) as the
 * address block and TLVs (its length in bytes 15-16). Returns the size. */
static size_t
v2(unsigned char *out, unsigned ver_cmd, unsigned fam, const unsigned char *body,
    size_t blen)
{
	memcpy(out, v2sig, 12);
	out[12] = (unsigned char)ver_cmd;
	out[13] = (unsigned char)fam;
	out[14] = (unsigned char)(blen >> 8);
	out[15] = (unsigned char)blen;
	if (blen > 0)
		memcpy(out + 16, body, blen);
	return 16 + blen;
}

/* ------------------------------------------------------------------ */
/* Version 1                                                           */
/* ------------------------------------------------------------------ */

static void
test_v1(void **state)
{
	struct proxy_result r;
	char buf[200], a[80];
	const char *tail = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 5222\r\n<stream:stream>";

	/* TCP4: the client's address and port, the header's length. */
	assert_int_equal(parse_str("PROXY TCP4 192.0.2.1 198.51.100.2 56324 5222\r\n", &r),
	    PROXY_COMPLETE);
	assert_int_equal(r.version, 1);
	assert_false(r.local);
	assert_int_equal(r.len, 46);
	assert_int_equal(r.srclen, sizeof(struct sockaddr_in));
	assert_string_equal(fmt(&r.src, a, sizeof(a)), "192.0.2.1:56324");
	assert_string_equal(fmt(&r.dst, a, sizeof(a)), "198.51.100.2:5222");
	/* What follows the CRLF is not the header's. */
	assert_int_equal(proxy_parse((const unsigned char *)tail, strlen(tail), &r),
	    PROXY_COMPLETE);
	assert_int_equal(r.len, 46);
	/* TCP6, also the longest TCP6 line (104 bytes). */
	assert_int_equal(parse_str("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", &r),
	    PROXY_COMPLETE);
	assert_int_equal(r.srclen, sizeof(struct sockaddr_in6));
	assert_string_equal(fmt(&r.src, a, sizeof(a)), "[2001:db8::1]:1");
	assert_string_equal(fmt(&r.dst, a, sizeof(a)), "[2001:db8::2]:65535");
	snprintf(buf, sizeof(buf), "PROXY TCP6 %s %s 65535 65535\r\n",
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
	assert_int_equal(strlen(buf), 104);
	assert_int_equal(parse_str(buf, &r), PROXY_COMPLETE);
	assert_int_equal(r.len, 104);
	/* UNKNOWN: the socket's addresses; the rest of the line ignored,
	 * up to the longest line the receiver must take (107 bytes). */
	assert_int_equal(parse_str("PROXY UNKNOWN\r\n", &r), PROXY_COMPLETE);
	assert_true(r.local);
	assert_int_equal(r.len, 15);
	snprintf(buf, sizeof(buf), "PROXY UNKNOWN %s %s 65535 65535\r\n",
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	assert_int_equal(strlen(buf), 107);
	assert_int_equal(parse_str(buf, &r), PROXY_COMPLETE);
	assert_true(r.local);
	assert_int_equal(r.len, 107);

	/* Truncated: a beginning is incomplete, never complete. */
	assert_int_equal(parse_str("PROXY TCP4 192.0.2.1 198.51.100.2 56324 5222", &r),
	    PROXY_INCOMPLETE);
	assert_int_equal(parse_str("PROXY TCP4 192.0.2.1 198.51.100.2 56324 5222\r", &r),
	    PROXY_INCOMPLETE);
	assert_int_equal(parse_str("PRO", &r), PROXY_INCOMPLETE);
	assert_int_equal(proxy_parse((const unsigned char *)"", 0, &r), PROXY_INCOMPLETE);

	/* Over-long: no CRLF within 107 bytes; a CRLF as bytes 107-108. */
	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "PROXY UNKNOWN ", 14);
	assert_int_equal(parse_hdr(buf, 106, &r), PROXY_INCOMPLETE);
	assert_int_equal(parse_hdr(buf, 107, &r), PROXY_INVALID);
	assert_int_equal(parse_hdr(buf, sizeof(buf), &r), PROXY_INVALID);
	buf[106] = '\r';
	buf[107] = '\n';
	assert_int_equal(parse_hdr(buf, 108, &r), PROXY_INVALID);
	assert_int_equal(parse_hdr(buf, 107, &r), PROXY_INVALID);
	assert_int_equal(parse_hdr(buf, 106, &r), PROXY_INCOMPLETE);

	/* Malformed lines (2.1: "any sequence which does not exactly match
	 * the protocol must be discarded"). */
	static const char *const bad[] = {
		"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n",       /* case */
		"PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n",      /* two spaces */
		"PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",      /* trailing space */
		"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",         /* a field short */
		"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n",     /* one too many */
		"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",         /* LF alone */
		"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rx",        /* CR alone */
		"PROXY TCP4 192.0.2.01 198.51.100.2 1 2\r\n",      /* leading zero */
		"PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 1 65536\r\n",   /* port range */
		"PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n",
		"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",     /* family */
		"PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",
		"PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n",
		"PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",
		"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
		"PROXY UNKNOWNX\r\n",
		"PROXY \r\n",
		"PROXY TCP4\r\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 1 2x\r\n",
		"GET / HTTP/1.1\r\n",                              /* not PROXY */
		"<stream:stream xmlns='jabber:client'>",
		"\x16\x03\x01\x02\x00\x01",                        /* a TLS ClientHello */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse_str(bad[i], &r) != PROXY_INVALID)
			fail_msg("accepted: %s", bad[i]);
	}
	/* A NUL in the line. */
	assert_int_equal(parse_hdr("PROXY UNKNOWN\0\r\n", 16, &r), PROXY_INVALID);
}

/* ------------------------------------------------------------------ */
/* Version 2                                                           */
/* ------------------------------------------------------------------ */

static void
test_v2(void **state)
{
	static const unsigned char tcp4[12] = {
		192, 0, 2, 1,  198, 51, 100, 2,  0xdb, 0xc4,  0x14, 0x66   /* 56260, 5222 */
	};
	unsigned char tcp6[36] = { 0 }, body[600], h[700];
	struct proxy_result r;
	size_t n;
	char a[80];

	/* TCP over IPv4 (\x21 = version 2, PROXY; \x11 = INET, STREAM). */
	n = v2(h, 0x21, 0x11, tcp4, sizeof(tcp4));
	assert_int_equal(parse_hdr(h, n, &r), PROXY_COMPLETE);
	assert_int_equal(r.version, 2);
	assert_false(r.local);
	assert_int_equal(r.len, 28);
	assert_int_equal(r.srclen, sizeof(struct sockaddr_in));
	assert_string_equal(fmt(&r.src, a, sizeof(a)), "192.0.2.1:56260");
	assert_string_equal(fmt(&r.dst, a, sizeof(a)), "198.51.100.2:5222");
	/* With the client's first bytes behind it. */
	memcpy(h + n, "<?xml", 5);
	assert_int_equal(proxy_parse(h, n + 5, &r), PROXY_COMPLETE);
	assert_int_equal(r.len, 28);

	/* TCP over IPv6 (\x21). */
	tcp6[0] = 0x20; tcp6[1] = 0x01; tcp6[2] = 0x0d; tcp6[3] = 0xb8; tcp6[15] = 1;
	tcp6[16] = 0x20; tcp6[17] = 0x01; tcp6[18] = 0x0d; tcp6[19] = 0xb8; tcp6[31] = 2;
	tcp6[32] = 0x30; tcp6[33] = 0x39;       /* 12345 */
	tcp6[34] = 0x14; tcp6[35] = 0x95;       /* 5269 */
	n = v2(h, 0x21, 0x21, tcp6, sizeof(tcp6));
	assert_int_equal(parse_hdr(h, n, &r), PROXY_COMPLETE);
	assert_int_equal(r.len, 52);
	assert_int_equal(r.srclen, sizeof(struct sockaddr_in6));
	assert_string_equal(fmt(&r.src, a, sizeof(a)), "[2001:db8::1]:12345");
	assert_string_equal(fmt(&r.dst, a, sizeof(a)), "[2001:db8::2]:5269");

	/* LOCAL (\x20): the socket's addresses, whatever the family says,
	 * and the address block skipped whatever its length. */
	n = v2(h, 0x20, 0x00, NULL, 0);
	assert_int_equal(parse_hdr(h, n, &r), PROXY_COMPLETE);
	assert_true(r.local);
	assert_int_equal(r.len, 16);
	n = v2(h, 0x20, 0x11, tcp4, sizeof(tcp4));
	assert_int_equal(parse_hdr(h, n, &r), PROXY_COMPLETE);
	assert_true(r.local);
	assert_int_equal(r.len, 28);
	/* UNSPEC, AF_UNIX and UDP with PROXY: the UNSPEC behaviour. */
	n = v2(h, 0x21, 0x00, tcp4, 5);
	assert_int_equal(parse_hdr(h, n, &r), PROXY_COMPLETE);
	assert_true(r.local);
	assert_int_equal(r.len, 21);
	memset(body, 0, sizeof(body));
	n = v2(h, 0x21, 0x31, body, 216);
	assert_int_equal(parse_hdr(h, n, &r), PROXY_COMPLETE);
	assert_true(r.local);
	n = v2(h, 0x21, 0x12, tcp4, sizeof(tcp4));
	assert_int_equal(parse_hdr(h, n, &r), PROXY_COMPLETE);
	assert_true(r.local);

	/* TLVs after the addresses are skipped: an ALPN, a NOOP with an
	 * empty value, a unique id of 128 bytes, an SSL one with sub-TLVs. */
	memcpy(body, tcp4, 12);
	n = 12;
	memcpy(body + n, "\x01\x00\x04xmpp", 7);                  n += 7;
	memcpy(body + n, "\x04\x00\x00", 3);                      n += 3;
	memcpy(body + n, "\x05\x00\x80", 3);                      n += 3;
	memset(body + n, 'u', 128);                               n += 128;
	memcpy(body + n, "\x20\x00\x0b\x01\x00\x00\x00\x00\x21\x00\x03TLS", 14); n += 14;
	n = v2(h, 0x21, 0x11, body, n);
	assert_int_equal(parse_hdr(h, n, &r), PROXY_COMPLETE);
	assert_false(r.local);
	assert_int_equal(r.len, n);
	assert_string_equal(fmt(&r.src, a, sizeof(a)), "192.0.2.1:56260");
	/* A TLV that runs past the header, or a stray byte after the last. */
	memcpy(body + 12, "\x01\x00\x05xmpp", 7);
	n = v2(h, 0x21, 0x11, body, 19);
	assert_int_equal(parse_hdr(h, n, &r), PROXY_INVALID);
	memcpy(body + 12, "\x01\x00\x04xmpp\x00", 8);
	n = v2(h, 0x21, 0x11, body, 20);
	assert_int_equal(parse_hdr(h, n, &r), PROXY_INVALID);
	memcpy(body + 12, "\x04\x00", 2);
	n = v2(h, 0x21, 0x11, body, 14);
	assert_int_equal(parse_hdr(h, n, &r), PROXY_INVALID);

	/* Truncated: every beginning, the signature's included, waits. */
	n = v2(h, 0x21, 0x11, tcp4, sizeof(tcp4));
	for (size_t i = 0; i < n; i++)
		assert_int_equal(proxy_parse(h, i, &r), PROXY_INCOMPLETE);

	/* Over-long: a length that takes the header past PROXY_HEADER_MAX
	 * is refused at once (16 bytes are enough to know). */
	h[14] = (PROXY_HEADER_MAX - 16 + 1) >> 8;
	h[15] = (PROXY_HEADER_MAX - 16 + 1) & 0xff;
	assert_int_equal(proxy_parse(h, 16, &r), PROXY_INVALID);
	h[14] = 0xff;
	h[15] = 0xff;
	assert_int_equal(proxy_parse(h, 16, &r), PROXY_INVALID);
	/* The longest that is taken. */
	memset(body, 0, sizeof(body));
	memcpy(body, tcp4, 12);
	{
		static unsigned char big[PROXY_HEADER_MAX];
		size_t tl = PROXY_HEADER_MAX - 16 - 12 - 3;

		memcpy(big, v2sig, 12);
		big[12] = 0x21;
		big[13] = 0x11;
		big[14] = (PROXY_HEADER_MAX - 16) >> 8;
		big[15] = (PROXY_HEADER_MAX - 16) & 0xff;
		memcpy(big + 16, tcp4, 12);
		big[28] = 0x04;                 /* NOOP */
		big[29] = (unsigned char)(tl >> 8);
		big[30] = (unsigned char)tl;
		assert_int_equal(parse_hdr(big, sizeof(big), &r), PROXY_COMPLETE);
		assert_int_equal(r.len, PROXY_HEADER_MAX);
	}

	/* Bad signature, version, command, family, transport; an address
	 * block shorter than its family's. */
	n = v2(h, 0x21, 0x11, tcp4, sizeof(tcp4));
	h[6] ^= 1;
	assert_int_equal(parse_hdr(h, n, &r), PROXY_INVALID);
	assert_int_equal(proxy_parse(h, 7, &r), PROXY_INVALID);
	n = v2(h, 0x11, 0x11, tcp4, sizeof(tcp4));
	assert_int_equal(parse_hdr(h, n, &r), PROXY_INVALID);
	n = v2(h, 0x22, 0x11, tcp4, sizeof(tcp4));
	assert_int_equal(parse_hdr(h, n, &r), PROXY_INVALID);
	n = v2(h, 0x21, 0x41, tcp4, sizeof(tcp4));
	assert_int_equal(parse_hdr(h, n, &r), PROXY_INVALID);
	n = v2(h, 0x21, 0x13, tcp4, sizeof(tcp4));
	assert_int_equal(parse_hdr(h, n, &r), PROXY_INVALID);
	n = v2(h, 0x21, 0x11, tcp4, 11);
	assert_int_equal(parse_hdr(h, n, &r), PROXY_INVALID);
	n = v2(h, 0x21, 0x21, tcp6, 35);
	assert_int_equal(parse_hdr(h, n, &r), PROXY_INVALID);
}

/* ------------------------------------------------------------------ */
/* X-Forwarded-For                                                     */
/* ------------------------------------------------------------------ */

static void
test_xff(void **state)
{
	struct conf *c = parse_ok(H "trusted_proxies: [\"10.0.0.0/8\", \"2001:db8:1::/48\", "
	    "\"192.0.2.7\"]\n");
	struct sockaddr_storage proxy = mkaddr("10.1.2.3", 40000);
	struct sockaddr_storage proxy6 = mkaddr("2001:db8:1::9", 40000);
	struct sockaddr_storage other = mkaddr("203.0.113.5", 40000);
	struct sockaddr_storage out;
	const struct conf_net *t = c->trusted_proxies;
	size_t nt = c->ntrusted_proxies;
	char a[80];

#define XFF(xff, peer) proxy_xff_client((xff), (const struct sockaddr *)&(peer), t, nt, &out)

	assert_int_equal(nt, 3);
	/* One hop: the client is the one address. */
	assert_int_equal(XFF("198.51.100.1", proxy), 1);
	assert_string_equal(fmt(&out, a, sizeof(a)), "198.51.100.1:0");
	/* From the right, skipping trusted proxies: what a client wrote
	 * itself (the leftmost) is not believed. */
	assert_int_equal(XFF("6.6.6.6, 198.51.100.1, 10.9.9.9, 192.0.2.7", proxy), 1);
	assert_string_equal(fmt(&out, a, sizeof(a)), "198.51.100.1:0");
	assert_int_equal(XFF("6.6.6.6,198.51.100.1,\t10.9.9.9", proxy6), 1);
	assert_string_equal(fmt(&out, a, sizeof(a)), "198.51.100.1:0");
	/* Every address trusted: the leftmost. */
	assert_int_equal(XFF("10.0.0.1, 10.0.0.2", proxy), 1);
	assert_string_equal(fmt(&out, a, sizeof(a)), "10.0.0.1:0");
	/* IPv6, bracketed, with ports; empty list elements are skipped. */
	assert_int_equal(XFF("2001:db8:2::1", proxy), 1);
	assert_string_equal(fmt(&out, a, sizeof(a)), "[2001:db8:2::1]:0");
	assert_int_equal(XFF("[2001:db8:2::1]:4711 , , [2001:db8:1::5]", proxy), 1);
	assert_string_equal(fmt(&out, a, sizeof(a)), "[2001:db8:2::1]:0");
	assert_int_equal(XFF("198.51.100.1:4711", proxy), 1);
	assert_string_equal(fmt(&out, a, sizeof(a)), "198.51.100.1:0");
	/* An IPv4-mapped proxy entry counts as its IPv4 network. */
	assert_int_equal(XFF("198.51.100.1, ::ffff:10.1.1.1", proxy), 1);
	assert_string_equal(fmt(&out, a, sizeof(a)), "198.51.100.1:0");

	/* An untrusted peer's header is ignored: the peer is the client. */
	assert_int_equal(XFF("198.51.100.1", other), 0);
	assert_string_equal(fmt(&out, a, sizeof(a)), "203.0.113.5:40000");
	/* No header, or nothing in it. */
	assert_int_equal(XFF(NULL, proxy), 0);
	assert_string_equal(fmt(&out, a, sizeof(a)), "10.1.2.3:40000");
	assert_int_equal(XFF(" , ", proxy), 0);
	assert_string_equal(fmt(&out, a, sizeof(a)), "10.1.2.3:40000");

	/* Garbage where a trusted proxy vouches: -1, and the peer. */
	static const char *const bad[] = {
		"unknown", "198.51.100.1, bogus", "198.51.100.256", "[2001:db8::1",
		"[2001:db8::1]x", "[2001:db8::1]:99999", "198.51.100.1:", "198.51.100.1:01",
		"[]", "2001:db8::1:80:", "198.51.100.1 10.0.0.1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (XFF(bad[i], proxy) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_string_equal(fmt(&out, a, sizeof(a)), "10.1.2.3:40000");
	}
	/* Garbage left of the client is never looked at. */
	assert_int_equal(XFF("bogus, 198.51.100.1", proxy), 1);
	assert_string_equal(fmt(&out, a, sizeof(a)), "198.51.100.1:0");
	/* Nothing is trusted without trusted_proxies. */
	assert_int_equal(proxy_xff_client("198.51.100.1", (const struct sockaddr *)&proxy,
	    NULL, 0, &out), 0);
	assert_string_equal(fmt(&out, a, sizeof(a)), "10.1.2.3:40000");
#undef XFF
	conf_unref(c);
}

/* ------------------------------------------------------------------ */
/* Configuration                                                       */
/* ------------------------------------------------------------------ */

#define L(extra) "listen:\n  - {port: 5222, module: c2s, starttls_required: false" extra "}\n"

static void
test_conf(void **state)
{
	struct conf *c;

	/* Defaults: no trusted proxy, no PROXY protocol. */
	c = parse_ok(H L(""));
	assert_int_equal(c->ntrusted_proxies, 0);
	assert_false(c->listen[0].proxy_protocol);
	conf_unref(c);

	c = parse_ok(H "trusted_proxies: [\"127.0.0.1\", \"::1\", \"192.0.2.0/24\"]\n"
	    L(", proxy_protocol: true"));
	assert_int_equal(c->ntrusted_proxies, 3);
	assert_true(c->listen[0].proxy_protocol);
	/* 127.0.0.1 as IPv4-mapped IPv6, a full prefix. */
	assert_int_equal(c->trusted_proxies[0].prefix, 128);
	assert_int_equal(c->trusted_proxies[0].addr[10], 0xff);
	assert_int_equal(c->trusted_proxies[0].addr[12], 127);
	assert_int_equal(c->trusted_proxies[2].prefix, 96 + 24);
	conf_unref(c);
	c = parse_ok(H "trusted_proxies: []\n" L(""));
	assert_int_equal(c->ntrusted_proxies, 0);
	conf_unref(c);

	/* Mistakes, with their lines. */
	parse_bad(H "trusted_proxies: 127.0.0.1\n",
	    "t-proxy.yml:2: 'trusted_proxies' expects a list of addresses or networks, "
	    "such as [\"192.0.2.10\", \"2001:db8::/64\"]");
	parse_bad(H "trusted_proxies:\n  - 127.0.0.1\n  - proxy.example\n",
	    "t-proxy.yml:4: 'proxy.example' is not an IP address or network, such as "
	    "\"192.0.2.10\" or \"2001:db8::/64\"");
	parse_bad(H "trusted_proxies: [\"10.0.0.0/33\"]\n",
	    "t-proxy.yml:2: '10.0.0.0/33' has a bad prefix length: expected 0 to 32");
	parse_bad(H "trusted_proxies: [{a: b}]\n",
	    "t-proxy.yml:2: 'trusted_proxies' expects a list of addresses or networks");
	parse_bad(H L(", proxy_protocol: yes please"),
	    "t-proxy.yml:3: 'proxy_protocol' expects true or false");
	/* proxy_protocol without a proxy to trust would refuse everyone. */
	parse_bad(H L(", proxy_protocol: true"),
	    "t-proxy.yml:3: listener on port 5222 has 'proxy_protocol' but "
	    "'trusted_proxies' is empty: every connection would be refused");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1),
		cmocka_unit_test(test_v2),
		cmocka_unit_test(test_xff),
		cmocka_unit_test(test_conf),
	};

	/* The sections these files use besides the core's (src/xmppd.c). */
	if (conf_section_register(&tls_conf_section) < 0 ||
	    conf_section_register(&c2s_conf_section) < 0 ||
	    conf_section_register(&listen_conf_section) < 0)
		return 1;
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
