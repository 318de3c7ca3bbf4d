/*
 * proxy.h - the client's address behind a proxy or load balancer: the
 * PROXY protocol header (haproxy's proxy-protocol.txt, versions 1 and 2)
 * a listener with proxy_protocol reads before anything else, and the
 * X-Forwarded-For walk for HTTP requests. Both trust only the proxies of
 * the top-level trusted_proxies list (doc/configuration.md).
 *
 * Pure functions: no I/O, no allocation, safe from any thread. The
 * listener's side (reading the header off a socket, before TLS and
 * before the transport sees the connection) is in listener.c.
 */
#ifndef XMPPD_NET_PROXY_H
#define XMPPD_NET_PROXY_H

#include <stddef.h>
#include <sys/socket.h>

#include "core/conf.h"

/*
 * The longest header proxy_parse takes. Version 1 is at most 107 bytes
 * with its CRLF (section 2.1); version 2 is 16 bytes and up to 65535 more
 * (section 2.2), of which the addresses take 36 at most and the rest are
 * TLVs: a proxy's TLVs (ALPN, authority, unique id, SSL) fit in far less
 * than this, and a longer header is refused rather than buffered.
 */
#define PROXY_HEADER_MAX 1024

enum proxy_status {
	PROXY_INVALID = -1,     /* not a PROXY header, or a malformed one */
	PROXY_INCOMPLETE = 0,   /* every byte so far belongs to a header: read on */
	PROXY_COMPLETE = 1,     /* r is filled in; r->len bytes are the header */
};

struct proxy_result {
	int version;                    /* 1 or 2 */
	/* 1: keep the socket's own addresses: a v2 LOCAL command (a health
	 * check from the proxy itself), v1 UNKNOWN, or a v2 family or
	 * transport without addresses we use (AF_UNSPEC, AF_UNIX, UDP). */
	int local;
	struct sockaddr_storage src;    /* !local: the client's address and port */
	socklen_t srclen;
	struct sockaddr_storage dst;    /* !local: the address the client reached */
	size_t len;                     /* bytes of the header (to skip) */
};

/*
 * Parses the first len bytes a connection sent. PROXY_INCOMPLETE means
 * that p[0..len) is a proper beginning of a header and that all of it is
 * header: a reader may consume it and wait for more (so that nothing
 * after the header is ever read by the listener). A header longer than
 * PROXY_HEADER_MAX is PROXY_INVALID.
 */
enum proxy_status proxy_parse(const unsigned char *p, size_t len, struct proxy_result *r);

/*
 * The client's address for an HTTP request that came from peer (the
 * socket's) with X-Forwarded-For: xff (NULL if absent; several headers
 * joined with ", ", RFC 9110 5.3). Only a trusted peer's header counts:
 * the list is walked from the right, each address a trusted proxy
 * appended, and the first one not in trusted[0..ntrusted) is the client;
 * if every one is trusted, the leftmost is. An entry is an IPv4 or IPv6
 * address, optionally "[IPv6]", "[IPv6]:port" or "IPv4:port".
 *
 * Returns 1 with the client's address in *out (port 0), 0 with peer in
 * *out (an untrusted peer, or no header), or -1 with peer in *out if the
 * part of the header a trusted proxy vouches for is malformed (the caller
 * may answer 400).
 */
int proxy_xff_client(const char *xff, const struct sockaddr *peer,
    const struct conf_net *trusted, size_t ntrusted, struct sockaddr_storage *out);

#endif
