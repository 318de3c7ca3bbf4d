/*
 * proxy.c - the PROXY protocol header (versions 1 and 2) and the
 * X-Forwarded-For walk (proxy.h). Section numbers are those of haproxy's
 * doc/proxy-protocol.txt.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "core/acl.h"
#include "core/conf.h"
#include "net/proxy.h"

/* 2.1: "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n". */
#define V1_MAX 107
/* 2.2: the 12-byte signature, then version and command, family and
 * transport, and the length of what follows. */
#define V2_HEAD 16
static const unsigned char v1_sig[] = "PROXY ";
static const unsigned char v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static void
make_sa(struct sockaddr_storage *ss, socklen_t *len_r, int af, const unsigned char *addr,
    unsigned port)
{
	memset(ss, 0, sizeof(*ss));
	if (af == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, addr, 4);
		s4->sin_port = htons((uint16_t)port);
		if (len_r != NULL)
			*len_r = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, addr, 16);
		s6->sin6_port = htons((uint16_t)port);
		if (len_r != NULL)
			*len_r = sizeof(*s6);
	}
}

/* ---------------------------------------------------------------- */
/* Version 1 (2.1).                                                   */

/* A port: decimal, 0 to 65535, no leading zero (2.1). -1 if not. */
static long
v1_port(const char *s, size_t n)
{
	long v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= 65535 ? v : -1;
}

/* An address of family af in its canonical form; inet_pton refuses
 * leading zeros in IPv4 (2.1: "heading zeroes are not permitted"). */
static int
v1_addr(int af, const char *s, size_t n, unsigned char out[16])
{
	char buf[INET6_ADDRSTRLEN];

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(af, buf, out) == 1 ? 0 : -1;
}

/* The line p[0..n) without its CRLF: "PROXY TCP4 SRC DST SPORT DPORT". */
static enum proxy_status
v1_line(const char *p, size_t n, struct proxy_result *r)
{
	const char *f[4];
	size_t flen[4], nf = 0, i;
	unsigned char src[16], dst[16];
	long sport, dport;
	int af;

	p += sizeof(v1_sig) - 1;
	n -= sizeof(v1_sig) - 1;
	/* UNKNOWN: whatever follows before the CRLF is ignored, and the
	 * socket's addresses are used. */
	if (n >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (n == 7 || p[7] == ' ')) {
		r->local = 1;
		return PROXY_COMPLETE;
	}
	if (n < 5 || memcmp(p, "TCP", 3) != 0 || (p[3] != '4' && p[3] != '6') || p[4] != ' ')
		return PROXY_INVALID;
	af = p[3] == '4' ? AF_INET : AF_INET6;
	p += 5;
	n -= 5;
	/* Exactly four fields, each separated by exactly one space. */
	f[0] = p;
	for (i = 0; i < n; i++) {
		if (p[i] != ' ')
			continue;
		if (nf == 3)
			return PROXY_INVALID;
		flen[nf] = (size_t)(p + i - f[nf]);
		f[++nf] = p + i + 1;
	}
	if (nf != 3)
		return PROXY_INVALID;
	flen[3] = (size_t)(p + n - f[3]);
	if (v1_addr(af, f[0], flen[0], src) < 0 || v1_addr(af, f[1], flen[1], dst) < 0 ||
	    (sport = v1_port(f[2], flen[2])) < 0 || (dport = v1_port(f[3], flen[3])) < 0)
		return PROXY_INVALID;
	make_sa(&r->src, &r->srclen, af, src, (unsigned)sport);
	make_sa(&r->dst, NULL, af, dst, (unsigned)dport);
	return PROXY_COMPLETE;
}

static enum proxy_status
parse_v1(const unsigned char *p, size_t len, struct proxy_result *r)
{
	size_t n = len < V1_MAX ? len : V1_MAX;

	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r') {
			/* The CRLF must end within the first 107 bytes. */
			if (i + 1 >= V1_MAX)
				return PROXY_INVALID;
			if (i + 1 == len)
				return PROXY_INCOMPLETE;
			/* A CR alone does not end the line (2.1). */
			if (p[i + 1] != '\n')
				return PROXY_INVALID;
			r->version = 1;
			r->len = i + 2;
			return v1_line((const char *)p, i, r);
		}
		/* Nor does an LF alone; and the line is text. */
		if (p[i] == '\n' || p[i] == '\0')
			return PROXY_INVALID;
	}
	/* No CRLF within the first 107 bytes: invalid (2.1). */
	return len >= V1_MAX ? PROXY_INVALID : PROXY_INCOMPLETE;
}

/* ---------------------------------------------------------------- */
/* Version 2 (2.2).                                                   */

static enum proxy_status
parse_v2(const unsigned char *p, size_t len, struct proxy_result *r)
{
	unsigned cmd, fam, proto;
	size_t total, need, off;

	if (len < V2_HEAD)
		return PROXY_INCOMPLETE;
	/* The version must be 2; the command LOCAL (0) or PROXY (1). */
	if ((p[12] >> 4) != 2 || (cmd = p[12] & 0x0f) > 1)
		return PROXY_INVALID;
	/* Families UNSPEC, INET, INET6, UNIX; transports UNSPEC, STREAM,
	 * DGRAM; anything else "must be rejected as invalid". */
	fam = p[13] >> 4;
	proto = p[13] & 0x0f;
	if (fam > 3 || proto > 2)
		return PROXY_INVALID;
	total = V2_HEAD + ((size_t)p[14] << 8 | p[15]);
	if (total > PROXY_HEADER_MAX)
		return PROXY_INVALID;
	if (len < total)
		return PROXY_INCOMPLETE;
	r->version = 2;
	r->len = total;
	/* LOCAL: the proxy's own connection (a health check); the address
	 * block, whatever its length, is skipped (2.2). */
	if (cmd == 0) {
		r->local = 1;
		return PROXY_COMPLETE;
	}
	need = fam == 1 ? 12 : fam == 2 ? 36 : fam == 3 ? 216 : 0;
	if (total - V2_HEAD < need)
		return PROXY_INVALID;
	/* What follows the addresses is TLVs (2.2): type, a 16-bit length,
	 * the value. None is needed here; each is skipped, but they must
	 * fill the rest exactly. With AF_UNSPEC the address length is not
	 * known, so neither is where the TLVs start: all of it is skipped. */
	if (fam != 0)
		for (off = V2_HEAD + need; off < total; ) {
			size_t vlen;

			if (total - off < 3)
				return PROXY_INVALID;
			vlen = (size_t)p[off + 1] << 8 | p[off + 2];
			if (total - off - 3 < vlen)
				return PROXY_INVALID;
			off += 3 + vlen;
		}
	/* TCP over IPv4 or IPv6; for the other combinations the receiver
	 * falls back to the UNSPEC behaviour: the socket's addresses. */
	if (proto != 1 || (fam != 1 && fam != 2)) {
		r->local = 1;
		return PROXY_COMPLETE;
	}
	if (fam == 1) {
		make_sa(&r->src, &r->srclen, AF_INET, p + 16, (unsigned)p[24] << 8 | p[25]);
		make_sa(&r->dst, NULL, AF_INET, p + 20, (unsigned)p[26] << 8 | p[27]);
	} else {
		make_sa(&r->src, &r->srclen, AF_INET6, p + 16, (unsigned)p[48] << 8 | p[49]);
		make_sa(&r->dst, NULL, AF_INET6, p + 32, (unsigned)p[50] << 8 | p[51]);
	}
	return PROXY_COMPLETE;
}

enum proxy_status
proxy_parse(const unsigned char *p, size_t len, struct proxy_result *r)
{
	size_t n;

	memset(r, 0, sizeof(*r));
	if (len == 0)
		return PROXY_INCOMPLETE;
	/* The two signatures differ in their first byte (2.2, "identifying
	 * the protocol version"); anything else is not covered by the
	 * specification and the connection is dropped. */
	if (p[0] == v1_sig[0]) {
		n = len < sizeof(v1_sig) - 1 ? len : sizeof(v1_sig) - 1;
		if (memcmp(p, v1_sig, n) != 0)
			return PROXY_INVALID;
		return n < sizeof(v1_sig) - 1 ? PROXY_INCOMPLETE : parse_v1(p, len, r);
	}
	n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
	if (memcmp(p, v2_sig, n) != 0)
		return PROXY_INVALID;
	return parse_v2(p, len, r);
}

/* ---------------------------------------------------------------- */
/* X-Forwarded-For.                                                   */

/* One entry, s[0..n) trimmed: "IP", "[IPv6]", "[IPv6]:port", "IPv4:port". */
static int
xff_entry(const char *s, size_t n, struct sockaddr_storage *out)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char a[16];
	const char *colon;

	if (n > 0 && s[0] == '[') {
		const char *end = memchr(s, ']', n);

		if (end == NULL)
			return -1;
		if (end + 1 != s + n && (end[1] != ':' || v1_port(end + 2,
		    (size_t)(s + n - end - 2)) < 0))
			return -1;
		s++;
		n = (size_t)(end - s);
		if (n == 0 || n >= sizeof(buf))
			return -1;
		memcpy(buf, s, n);
		buf[n] = '\0';
		if (inet_pton(AF_INET6, buf, a) != 1)
			return -1;
		make_sa(out, NULL, AF_INET6, a, 0);
		return 0;
	}
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET6, buf, a) == 1) {
		make_sa(out, NULL, AF_INET6, a, 0);
		return 0;
	}
	/* IPv4, with a port or without (a single colon). */
	if ((colon = strchr(buf, ':')) != NULL) {
		if (v1_port(colon + 1, strlen(colon + 1)) < 0)
			return -1;
		buf[colon - buf] = '\0';
	}
	if (inet_pton(AF_INET, buf, a) != 1)
		return -1;
	make_sa(out, NULL, AF_INET, a, 0);
	return 0;
}

static void
copy_peer(const struct sockaddr *peer, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (peer->sa_family == AF_INET)
		memcpy(out, peer, sizeof(struct sockaddr_in));
	else if (peer->sa_family == AF_INET6)
		memcpy(out, peer, sizeof(struct sockaddr_in6));
	else
		out->ss_family = peer->sa_family;
}

static int
is_space(char c)
{
	return c == ' ' || c == '\t';
}

int
proxy_xff_client(const char *xff, const struct sockaddr *peer,
    const struct conf_net *trusted, size_t ntrusted, struct sockaddr_storage *out)
{
	struct sockaddr_storage e;
	size_t end;
	int found = 0;

	copy_peer(peer, out);
	/* An untrusted peer may write anything in the header: it is not
	 * looked at. */
	if (xff == NULL || !acl_net_match(trusted, ntrusted, peer))
		return 0;
	/* From the right: each proxy appended the address it took the
	 * request from; the first one that is not a trusted proxy is the
	 * client (and nothing left of it can be believed). */
	for (end = strlen(xff); end > 0; ) {
		size_t start = end, s, n;

		while (start > 0 && xff[start - 1] != ',')
			start--;
		s = start;
		n = end;
		while (s < n && is_space(xff[s]))
			s++;
		while (n > s && is_space(xff[n - 1]))
			n--;
		end = start > 0 ? start - 1 : 0;
		if (s == n)
			continue;       /* an empty list element (RFC 9110 5.6.1) */
		if (xff_entry(xff + s, n - s, &e) < 0) {
			copy_peer(peer, out);
			return -1;
		}
		*out = e;
		found = 1;
		if (!acl_net_match(trusted, ntrusted, (struct sockaddr *)&e))
			return 1;
	}
	/* Every address is a trusted proxy's: the leftmost is the client. */
	return found;
}
