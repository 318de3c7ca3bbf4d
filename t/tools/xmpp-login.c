/*
 * xmpp-login.c - a minimal XMPP client for the tests: connects (STARTTLS or
 * direct TLS with ALPN), authenticates with one SASL mechanism through
 * libgsasl, binds a resource and prints what happened:
 *
 *   OK tls=TLSv1.3 mech=SCRAM-SHA-256-PLUS cb=tls-exporter alpn=xmpp-client jid=a@b/r
 *   FAIL <what went wrong>
 *
 * --corrupt-cb sends channel-binding data that is not the connection's
 * (every byte changed), as a client behind a TLS-terminating attacker
 * would: the server must refuse it. --bind-after-failure then asks for a
 * resource all the same, on the stream that failed, and says what came
 * back:
 *
 *   FAIL SASL failure not-authorized; bind after it: stream error not-authorized
 *
 * It exists because no Python client here can compute tls-exporter
 * (RFC 9266): Python's ssl module does not export keying material.
 * The server's replies are parsed with xmppd's own stream parser.
 */
#include "config.h"

#include <getopt.h>
#include <stdarg.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gsasl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "xml/stream.h"
#include "xmpp/ns.h"

static struct {
	const char *ip, *port, *domain, *user, *pass, *mech, *ca, *cbtype, *resource;
	int direct_tls, tls_max, corrupt_cb, bind_after_failure;
} opt = { "127.0.0.1", "5222", "localhost", NULL, NULL, "SCRAM-SHA-256", NULL,
	  NULL, "test", 0, 0, 0, 0 };

static int fd = -1;
static SSL *ssl;
static xml_stream *xs;
static xml_elem *queue[64];    /* depth-1 elements received, not yet read */
static size_t qhead, qtail;
static xml_elem *last;         /* the element next() returned */
static int stream_started, stream_failed;
static char failure[256];

static void __attribute__((noreturn, format(printf, 1, 2)))
fail(const char *fmt, ...)
{
	va_list ap;

	printf("FAIL ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(1);
}

static void
on_start(void *ud, const char *ns, const char **attrs)
{
	stream_started = 1;
}

static void
on_elem(void *ud, xml_elem *e)
{
	if (qtail - qhead == 64)
		fail("too many elements at once");
	queue[qtail++ % 64] = e;
}

static void
on_end(void *ud)
{
	stream_failed = 1;
	snprintf(failure, sizeof(failure), "stream closed by server");
}

static void
on_error(void *ud, const char *cond, const char *text)
{
	stream_failed = 1;
	snprintf(failure, sizeof(failure), "parse error %s: %s", cond, text);
}

static const struct xml_stream_cb cb = { on_start, on_elem, on_end, on_error };

static void
new_parser(void)
{
	struct xml_stream_limits lim = { 1 << 20, 64, 64 };

	xml_stream_free(&xs);
	xs = xml_stream_new(&cb, NULL, &lim);
	stream_started = 0;
}

static void
send_str(const char *s)
{
	size_t len = strlen(s);
	int n = ssl != NULL ? SSL_write(ssl, s, (int)len) : (int)write(fd, s, len);

	if (n != (int)len)
		fail("write failed");
}

/* Reads until the stream header (want_header) or a depth-1 element is
 * there, and returns the oldest element not yet returned. */
static xml_elem *
next(int want_header)
{
	char buf[16384];

	xml_elem_unref(last);
	last = NULL;
	while (want_header ? !stream_started : qhead == qtail) {
		int n = ssl != NULL ? SSL_read(ssl, buf, sizeof(buf)) : (int)read(fd, buf, sizeof(buf));
		size_t used;

		if (stream_failed)
			fail("%s", failure);
		if (n <= 0)
			fail("connection closed while waiting (%s)", want_header ? "header" : "element");
		(void)xml_stream_feed(xs, buf, (size_t)n, &used);
	}
	if (want_header)
		return NULL;
	last = queue[qhead++ % 64];
	return last;
}

static void
open_stream(void)
{
	char hdr[512];

	new_parser();
	stream_failed = 0;
	snprintf(hdr, sizeof(hdr), "<?xml version='1.0'?><stream:stream to='%s' "
	    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
	    "version='1.0'>", opt.domain);
	send_str(hdr);
	(void)next(1);
}

static void
start_tls(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (opt.tls_max)
		SSL_CTX_set_max_proto_version(ctx, opt.tls_max);
	if (opt.ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, opt.ca, NULL) != 1)
			fail("cannot load CA %s", opt.ca);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	ssl = SSL_new(ctx);
	SSL_set_tlsext_host_name(ssl, opt.domain);
	SSL_set1_host(ssl, opt.domain);
	if (opt.direct_tls)
		SSL_set_alpn_protos(ssl, (const unsigned char *)"\x0bxmpp-client", 12);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) {
		char e[256];

		ERR_error_string_n(ERR_get_error(), e, sizeof(e));
		fail("TLS handshake: %s", e);
	}
	SSL_CTX_free(ctx);
}

static int
cb_callback(Gsasl *ctx, Gsasl_session *s, Gsasl_property prop)
{
	unsigned char data[64];
	char *b64 = NULL;
	size_t b64len, n = 0;
	int rc = GSASL_NO_CALLBACK;

	switch (prop) {
	case GSASL_AUTHID:
		return gsasl_property_set(s, prop, opt.user);
	case GSASL_PASSWORD:
		return gsasl_property_set(s, prop, opt.pass);
	case GSASL_CB_TLS_EXPORTER:
		/* Channel binding data only for -PLUS: without it the client
		 * sends the 'n' flag, as a client that does not bind would. */
		if (strstr(opt.mech, "-PLUS") == NULL)
			return GSASL_NO_CALLBACK;
		if (opt.cbtype != NULL && strcmp(opt.cbtype, "tls-exporter") != 0)
			return GSASL_NO_CALLBACK;
		if (SSL_export_keying_material(ssl, data, 32, "EXPORTER-Channel-Binding", 24,
		    NULL, 0, 0) != 1)
			return GSASL_NO_CALLBACK;
		n = 32;
		break;
	case GSASL_CB_TLS_UNIQUE:
		if (strstr(opt.mech, "-PLUS") == NULL)
			return GSASL_NO_CALLBACK;
		if (opt.cbtype != NULL && strcmp(opt.cbtype, "tls-unique") != 0)
			return GSASL_NO_CALLBACK;
		n = SSL_get_finished(ssl, data, sizeof(data));
		break;
	default:
		return GSASL_NO_CALLBACK;
	}
	if (opt.corrupt_cb)
		for (size_t i = 0; i < n; i++)
			data[i] ^= 0x5a;
	if (gsasl_base64_to((const char *)data, n, &b64, &b64len) == GSASL_OK)
		rc = gsasl_property_set(s, prop, b64);
	free(b64);
	return rc;
}

static const char *
bind_iq(char *buf, size_t len)
{
	snprintf(buf, len, "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:"
	    "ns:xmpp-bind'><resource>%s</resource></bind></iq>", opt.resource);
	return buf;
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "ip", required_argument, NULL, 'i' }, { "port", required_argument, NULL, 'p' },
		{ "domain", required_argument, NULL, 'd' }, { "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'w' }, { "mech", required_argument, NULL, 'm' },
		{ "ca", required_argument, NULL, 'c' }, { "cb", required_argument, NULL, 'b' },
		{ "direct-tls", no_argument, NULL, 'D' }, { "tls12", no_argument, NULL, '2' },
		{ "resource", required_argument, NULL, 'r' }, { "corrupt-cb", no_argument, NULL, 'C' },
		{ "bind-after-failure", no_argument, NULL, 'B' }, { NULL, 0, NULL, 0 },
	};
	struct addrinfo hints = { 0 }, *ai;
	Gsasl *gctx;
	Gsasl_session *gs;
	const unsigned char *alpn = NULL;
	unsigned alpnlen = 0;
	char *out = NULL, buf[4096];
	const char *cbused = "none";
	xml_elem *e;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'i': opt.ip = optarg; break;
		case 'p': opt.port = optarg; break;
		case 'd': opt.domain = optarg; break;
		case 'u': opt.user = optarg; break;
		case 'w': opt.pass = optarg; break;
		case 'm': opt.mech = optarg; break;
		case 'c': opt.ca = optarg; break;
		case 'b': opt.cbtype = optarg; break;
		case 'D': opt.direct_tls = 1; break;
		case '2': opt.tls_max = TLS1_2_VERSION; break;
		case 'r': opt.resource = optarg; break;
		case 'C': opt.corrupt_cb = 1; break;
		case 'B': opt.bind_after_failure = 1; break;
		default: return 2;
		}
	}
	if (opt.user == NULL || opt.pass == NULL) {
		fprintf(stderr, "usage: xmpp-login --user U --password P [--ip --port --domain "
		    "--mech --ca --cb tls-exporter|tls-unique --corrupt-cb --bind-after-failure "
		    "--direct-tls --tls12 --resource]\n");
		return 2;
	}
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(opt.ip, opt.port, &hints, &ai) != 0)
		fail("bad address");
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		fail("connect to %s:%s", opt.ip, opt.port);
	freeaddrinfo(ai);

	if (opt.direct_tls) {
		start_tls();
		open_stream();
		e = next(0);
	} else {
		open_stream();
		e = next(0);
		if (xml_child(e, NS_TLS, "starttls") == NULL)
			fail("no STARTTLS offered");
		send_str("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
		e = next(0);
		if (strcmp(xml_elem_name(e), "proceed") != 0)
			fail("STARTTLS refused");
		start_tls();
		open_stream();
		e = next(0);
	}
	SSL_get0_alpn_selected(ssl, &alpn, &alpnlen);

	gsasl_init(&gctx);
	gsasl_callback_set(gctx, cb_callback);
	if (gsasl_client_start(gctx, opt.mech, &gs) != GSASL_OK)
		fail("gsasl does not know %s", opt.mech);
	rc = gsasl_step64(gs, "", &out);
	if (rc != GSASL_OK && rc != GSASL_NEEDS_MORE)
		fail("gsasl cannot start %s: %s", opt.mech, gsasl_strerror(rc));
	snprintf(buf, sizeof(buf), "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
	    "mechanism='%s'>%s</auth>", opt.mech, *out ? out : "=");
	free(out);
	send_str(buf);
	if (strstr(opt.mech, "-PLUS") != NULL) {
		const char *p = gsasl_property_fast(gs, GSASL_CB_TLS_EXPORTER);

		cbused = p != NULL ? "tls-exporter" : "tls-unique";
	}
	/* On stderr, so that a failure still says what was tried. */
	fprintf(stderr, "trying tls=%s mech=%s cb=%s%s\n", SSL_get_version(ssl), opt.mech,
	    cbused, opt.corrupt_cb ? " (corrupted)" : "");
	for (;;) {
		const char *name;

		e = next(0);
		name = xml_elem_name(e);
		out = NULL;
		if (strcmp(name, "failure") == 0) {
			xml_elem *c = xml_first_child(e);
			char cond[64];

			snprintf(cond, sizeof(cond), "%s", c != NULL ? xml_elem_name(c) : "?");
			if (!opt.bind_after_failure)
				fail("SASL failure %s", cond);
			send_str(bind_iq(buf, sizeof(buf)));
			e = next(0);
			c = xml_first_child(e);
			if (strcmp(xml_elem_name(e), "error") == 0)
				fail("SASL failure %s; bind after it: stream error %s", cond,
				    c != NULL ? xml_elem_name(c) : "?");
			fail("SASL failure %s; bind after it: <%s type='%s'/>", cond,
			    xml_elem_name(e), xml_attr_get(e, "type") ? xml_attr_get(e, "type") : "");
		}
		if (strcmp(name, "challenge") != 0 && strcmp(name, "success") != 0)
			fail("unexpected <%s/> during SASL", name);
		rc = gsasl_step64(gs, xml_text(e), &out);
		if (strcmp(name, "success") == 0) {
			if (rc != GSASL_OK)
				fail("server signature not verified (%s)", gsasl_strerror(rc));
			free(out);
			break;
		}
		if (rc != GSASL_OK && rc != GSASL_NEEDS_MORE)
			fail("client refuses the server's %s: %s", name, gsasl_strerror(rc));
		snprintf(buf, sizeof(buf), "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s"
		    "</response>", *out ? out : "=");
		free(out);
		send_str(buf);
	}
	gsasl_finish(gs);
	gsasl_done(gctx);

	open_stream();
	e = next(0);
	if (xml_child(e, NS_BIND, "bind") == NULL)
		fail("no bind feature");
	send_str(bind_iq(buf, sizeof(buf)));
	e = next(0);
	{
		xml_elem *b = xml_child(e, NS_BIND, "bind");
		const char *jid = b != NULL ? xml_child_text(b, NS_BIND, "jid") : NULL;

		if (jid == NULL)
			fail("bind failed");
		printf("OK tls=%s mech=%s cb=%s alpn=%.*s jid=%s\n", SSL_get_version(ssl),
		    opt.mech, cbused, (int)alpnlen, alpn ? (const char *)alpn : "", jid);
	}
	send_str("</stream:stream>");
	xml_elem_unref(last);
	xml_stream_free(&xs);
	SSL_free(ssl);
	close(fd);
	return 0;
}
