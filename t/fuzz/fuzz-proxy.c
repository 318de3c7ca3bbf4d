/*
 * fuzz-proxy.c - libFuzzer target for net/proxy.h: the PROXY protocol
 * header a trusted proxy sends first (proxy_parse), and the
 * X-Forwarded-For walk (proxy_xff_client).
 *
 * The input is given to proxy_parse as the first bytes of a connection;
 * the listener reads only what the parser calls header, so the checks
 * are that: a complete header is at most the input and PROXY_HEADER_MAX
 * long and parses the same on its own; one byte less of it is still
 * incomplete; an incomplete input is shorter than PROXY_HEADER_MAX; a
 * client address is IPv4 or IPv6. The same bytes, up to a NUL, are an
 * X-Forwarded-For header from a trusted and from an untrusted peer: the
 * untrusted one's is never used, and the answer is always an address.
 */
#include "config.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/conf.h"
#include "net/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int cond)
{
	if (!cond)
		abort();
}

static int
is_inet(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET || ss->ss_family == AF_INET6;
}

static void
fuzz_xff(const uint8_t *data, size_t size)
{
	/* 10.0.0.0/8 (IPv4-mapped) and 2001:db8::/32. */
	static const struct conf_net trusted[2] = {
		{ { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10 }, 104 },
		{ { 0x20, 0x01, 0x0d, 0xb8 }, 32 },
	};
	struct sockaddr_in proxy = { .sin_family = AF_INET, .sin_port = htons(4711) };
	struct sockaddr_in other = { .sin_family = AF_INET, .sin_port = htons(4712) };
	struct sockaddr_storage out;
	char *s;
	int r;

	if (size > 4096 || (s = malloc(size + 1)) == NULL)
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	proxy.sin_addr.s_addr = htonl(0x0a010203);      /* 10.1.2.3 */
	other.sin_addr.s_addr = htonl(0xcb007105);      /* 203.0.113.5 */
	r = proxy_xff_client(s, (struct sockaddr *)&proxy, trusted, 2, &out);
	check(r >= -1 && r <= 1 && is_inet(&out));
	if (r != 1)
		check(memcmp(&out, &proxy, sizeof(proxy)) == 0);
	r = proxy_xff_client(s, (struct sockaddr *)&other, trusted, 2, &out);
	check(r == 0 && memcmp(&out, &other, sizeof(other)) == 0);
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_result r, again;
	enum proxy_status st = proxy_parse(data, size, &r);

	check(st == PROXY_INVALID || st == PROXY_INCOMPLETE || st == PROXY_COMPLETE);
	if (st == PROXY_COMPLETE) {
		check(r.len > 0 && r.len <= size && r.len <= PROXY_HEADER_MAX);
		check(r.version == 1 || r.version == 2);
		check(r.local || (is_inet(&r.src) && is_inet(&r.dst) &&
		    r.src.ss_family == r.dst.ss_family &&
		    (r.srclen == sizeof(struct sockaddr_in) ||
		    r.srclen == sizeof(struct sockaddr_in6))));
		check(proxy_parse(data, r.len, &again) == PROXY_COMPLETE);
		check(again.len == r.len && again.local == r.local &&
		    again.version == r.version);
		check(r.local || memcmp(&again.src, &r.src, sizeof(r.src)) == 0);
		check(proxy_parse(data, r.len - 1, &again) == PROXY_INCOMPLETE);
	} else if (st == PROXY_INCOMPLETE) {
		check(size < PROXY_HEADER_MAX);
	}
	fuzz_xff(data, size);
	return 0;
}
