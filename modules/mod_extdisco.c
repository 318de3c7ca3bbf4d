/*
 * mod_extdisco - XEP-0215: External Service Discovery (urn:xmpp:extdisco:2).
 *
 * Tells the server's own users which STUN and TURN servers (or any other
 * external service) to use for Jingle media (XEP-0176), and hands out
 * short-lived credentials for the restricted ones in the form coturn's
 * use-auth-secret (the "TURN REST API" draft, draft-uberti-behave-turn-rest)
 * checks without talking to us:
 *
 *     username = "EXPIRY:user@host"        (EXPIRY: unix time)
 *     password = base64(HMAC-SHA1(turn_secret, username))
 *
 * The services come from the option `services`, a list of strings of
 * space-separated key=value pairs named as the attributes of XEP-0215's
 * <service/> (type, host, port, transport, name, restricted). They are
 * checked at load and read again for each request, so a reload needs no
 * module state: everything here is read-only or on the stack.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <xmppd.h>

#define NS_EXTDISCO "urn:xmpp:extdisco:2"

/* A service string is an option the administrator wrote; still, bound it. */
#define SERVICE_MAX 1024

static const struct xmppd_option extdisco_options[] = {
	{ "services", XMPPD_OPT_STRING_LIST, NULL, 0, 0 },
	/* coturn: static-auth-secret (with use-auth-secret). */
	{ "turn_secret", XMPPD_OPT_STRING, NULL, 0, 0 },
	/* Seconds a credential stays valid. */
	{ "credentials_ttl", XMPPD_OPT_INT, "86400", 1, 31536000 },
	/* An access rule naming who may ask (unset: every local user). */
	{ "access", XMPPD_OPT_STRING, NULL, 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

/* One service, pointing into buf. */
struct service {
	char buf[SERVICE_MAX];
	const char *type, *host, *transport, *name;
	long port;                  /* 0: none given */
	int restricted;
};

/* ------------------------------------------------------------------ */
/* Options                                                            */

/* Parses "type=turn host=turn.example.org port=3478 transport=udp
 * restricted=true" into svc. 0, or -1 with *why set. */
static int
service_parse(const char *text, struct service *svc, const char **why)
{
	char *save = NULL, *tok;

	memset(svc, 0, sizeof(*svc));
	/* NULL: the list became shorter under a request (a reload swaps the
	 * options while workers read them). */
	if (text == NULL) {
		*why = "is missing";
		return -1;
	}
	if (strlen(text) >= sizeof(svc->buf)) {
		*why = "is too long";
		return -1;
	}
	strcpy(svc->buf, text);
	for (tok = strtok_r(svc->buf, " \t", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t", &save)) {
		char *val = strchr(tok, '=');

		if (val == NULL || val == tok || val[1] == '\0') {
			*why = "expects key=value pairs";
			return -1;
		}
		*val++ = '\0';
		if (strcmp(tok, "type") == 0)
			svc->type = val;
		else if (strcmp(tok, "host") == 0)
			svc->host = val;
		else if (strcmp(tok, "name") == 0)
			svc->name = val;
		else if (strcmp(tok, "transport") == 0) {
			/* XEP-0215 2: "udp" or "tcp". */
			if (strcmp(val, "udp") != 0 && strcmp(val, "tcp") != 0) {
				*why = "has a transport other than udp or tcp";
				return -1;
			}
			svc->transport = val;
		} else if (strcmp(tok, "port") == 0) {
			char *end;

			errno = 0;
			svc->port = strtol(val, &end, 10);
			if (*end != '\0' || errno != 0 || svc->port < 1 || svc->port > 65535) {
				*why = "has a port that is not 1 to 65535";
				return -1;
			}
		} else if (strcmp(tok, "restricted") == 0) {
			if (strcmp(val, "true") == 0 || strcmp(val, "1") == 0)
				svc->restricted = 1;
			else if (strcmp(val, "false") == 0 || strcmp(val, "0") == 0)
				svc->restricted = 0;
			else {
				*why = "has restricted other than true or false";
				return -1;
			}
		} else {
			*why = "has an unknown key (type, host, port, transport, name, "
			    "restricted)";
			return -1;
		}
	}
	/* XEP-0215 2: host and type are REQUIRED. */
	if (svc->type == NULL || svc->host == NULL) {
		*why = "needs type= and host=";
		return -1;
	}
	return 0;
}

static int
check_options(xmppd_ctx *ctx)
{
	size_t n = xmppd_opt_list_len(ctx, "services");
	struct service svc;
	const char *why;
	int restricted = 0;

	for (size_t i = 0; i < n; i++) {
		if (service_parse(xmppd_opt_list_at(ctx, "services", i), &svc, &why) < 0) {
			xmppd_log(ctx, XMPPD_LOG_ERROR, "services: entry %zu ('%s') %s", i + 1,
			    xmppd_opt_list_at(ctx, "services", i), why);
			return -1;
		}
		restricted |= svc.restricted;
	}
	if (restricted && xmppd_opt_string(ctx, "turn_secret") == NULL) {
		xmppd_log(ctx, XMPPD_LOG_ERROR,
		    "services: a restricted service needs turn_secret (coturn's static-auth-secret)");
		return -1;
	}
	if (n == 0)
		xmppd_log(ctx, XMPPD_LOG_WARNING, "no services configured: answers are empty");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Answers                                                            */

/* username and password of the TURN REST API for user (a bare JID), valid
 * until expiry. 0 or -1. */
static int
rest_credentials(const char *secret, const char *user, time_t expiry,
    char *username, size_t usize, char *password, size_t psize)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	int n;

	n = snprintf(username, usize, "%lld:%s", (long long)expiry, user);
	if (n < 0 || (size_t)n >= usize)
		return -1;
	if (HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)username,
	    (size_t)n, mac, &maclen) == NULL)
		return -1;
	/* base64 of 20 bytes: 28 characters and a NUL. */
	if (psize < 4 * ((maclen + 2) / 3) + 1)
		return -1;
	EVP_EncodeBlock((unsigned char *)password, mac, (int)maclen);
	return 0;
}

/* Appends <service/> for svc to parent (XEP-0215 2), with credentials for
 * user when it is restricted. 0 or -1. */
static int
add_service(xmppd_ctx *ctx, xmppd_elem *parent, const struct service *svc,
    const char *user)
{
	xmppd_elem *e = xmppd_elem_add_child(parent, NS_EXTDISCO, "service");
	char port[24];

	xmppd_elem_set_attr(e, "type", svc->type);
	xmppd_elem_set_attr(e, "host", svc->host);
	if (svc->port > 0) {
		snprintf(port, sizeof(port), "%ld", svc->port);
		xmppd_elem_set_attr(e, "port", port);
	}
	if (svc->transport != NULL)
		xmppd_elem_set_attr(e, "transport", svc->transport);
	if (svc->name != NULL)
		xmppd_elem_set_attr(e, "name", svc->name);
	if (svc->restricted) {
		const char *secret = xmppd_opt_string(ctx, "turn_secret");
		time_t expiry = time(NULL) + xmppd_opt_int(ctx, "credentials_ttl");
		char username[3200], password[64], expires[32];
		struct tm tm;

		/* XEP-0215 2: restricted, with the credentials given at once
		 * (3.1 "if not already provided"), and when they expire as an
		 * XEP-0082 DateTime. */
		if (secret == NULL || gmtime_r(&expiry, &tm) == NULL ||
		    strftime(expires, sizeof(expires), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 ||
		    rest_credentials(secret, user, expiry, username, sizeof(username),
		    password, sizeof(password)) < 0)
			return -1;
		xmppd_elem_set_attr(e, "restricted", "true");
		xmppd_elem_set_attr(e, "username", username);
		xmppd_elem_set_attr(e, "password", password);
		xmppd_elem_set_attr(e, "expires", expires);
	}
	return 0;
}

/* XEP-0215 3.1 (all services) and 3.2 (services of the type asked for). */
static void
answer_services(xmppd_ctx *ctx, xmppd_elem *iq, xmppd_elem *req, const char *user)
{
	const char *type = xmppd_elem_attr(req, "type");
	size_t n = xmppd_opt_list_len(ctx, "services");
	xmppd_elem *res = xmppd_elem_new(NS_EXTDISCO, "services");
	struct service svc;
	const char *why;

	if (type != NULL)
		xmppd_elem_set_attr(res, "type", type);
	for (size_t i = 0; i < n; i++) {
		if (service_parse(xmppd_opt_list_at(ctx, "services", i), &svc, &why) < 0)
			continue;       /* checked at load: cannot happen */
		if (type != NULL && strcmp(type, svc.type) != 0)
			continue;
		if (add_service(ctx, res, &svc, user) < 0) {
			xmppd_elem_unref(res);
			xmppd_iq_error(iq, "internal-server-error", NULL);
			return;
		}
	}
	xmppd_iq_reply(iq, res);
}

/* XEP-0215 3.3: credentials for the service named by host and type (and
 * port, if given) in <credentials><service/></credentials>. */
static void
answer_credentials(xmppd_ctx *ctx, xmppd_elem *iq, xmppd_elem *req, const char *user)
{
	xmppd_elem *want = xmppd_elem_child(req, NS_EXTDISCO, "service"), *res;
	const char *host, *type, *port;
	size_t n = xmppd_opt_list_len(ctx, "services"), found = 0;
	struct service svc;
	const char *why;
	long wport = 0;

	host = want != NULL ? xmppd_elem_attr(want, "host") : NULL;
	type = want != NULL ? xmppd_elem_attr(want, "type") : NULL;
	port = want != NULL ? xmppd_elem_attr(want, "port") : NULL;
	if (host == NULL || type == NULL) {
		xmppd_iq_error(iq, "bad-request", "a <service/> with host and type is required");
		return;
	}
	if (port != NULL) {
		char *end;

		errno = 0;
		wport = strtol(port, &end, 10);
		if (*port == '\0' || *end != '\0' || errno != 0 || wport < 1 || wport > 65535) {
			xmppd_iq_error(iq, "bad-request", "port is not a port number");
			return;
		}
	}
	res = xmppd_elem_new(NS_EXTDISCO, "credentials");
	for (size_t i = 0; i < n; i++) {
		if (service_parse(xmppd_opt_list_at(ctx, "services", i), &svc, &why) < 0)
			continue;
		if (strcmp(svc.host, host) != 0 || strcmp(svc.type, type) != 0 ||
		    (wport != 0 && svc.port != wport) || !svc.restricted)
			continue;
		if (add_service(ctx, res, &svc, user) < 0) {
			xmppd_elem_unref(res);
			xmppd_iq_error(iq, "internal-server-error", NULL);
			return;
		}
		found++;
	}
	if (found == 0) {
		/* No restricted service of that name: nothing to give. */
		xmppd_elem_unref(res);
		xmppd_iq_error(iq, "item-not-found", NULL);
		return;
	}
	xmppd_iq_reply(iq, res);
}

static enum xmppd_result
extdisco_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_ctx *ctx = ud;
	xmppd_elem *req = xmppd_elem_first_child(iq);
	const char *type = xmppd_elem_attr(iq, "type");
	const char *rule = xmppd_opt_string(ctx, "access");
	const char *name;

	(void)to;
	if (req == NULL) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return XMPPD_STOP;
	}
	/* The list, and above all the credentials (which cost the TURN
	 * server's bandwidth), are for the server's own users, as with
	 * Prosody and ejabberd: an account of another server or a component
	 * gets forbidden, the error XEP-0215 3.3 names for an entity not
	 * allowed to have credentials. */
	if (from == NULL || xmppd_jid_node(from) == NULL ||
	    !xmppd_is_local_host(xmppd_jid_domain(from)) ||
	    (rule != NULL && !xmppd_access_check(rule, from, NULL))) {
		xmppd_iq_error(iq, "forbidden", NULL);
		return XMPPD_STOP;
	}
	/* XEP-0215 3: every request is a get (pushes, 3.4, go the other way). */
	if (type == NULL || strcmp(type, "get") != 0) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return XMPPD_STOP;
	}
	name = xmppd_elem_name(req);
	if (strcmp(name, "services") == 0)
		answer_services(ctx, iq, req, xmppd_jid_bare(from));
	else if (strcmp(name, "credentials") == 0)
		answer_credentials(ctx, iq, req, xmppd_jid_bare(from));
	else
		xmppd_iq_error(iq, "feature-not-implemented", NULL);
	return XMPPD_STOP;
}

/* ------------------------------------------------------------------ */
/* Module                                                             */

static int
load(xmppd_ctx *ctx)
{
	if (check_options(ctx) < 0)
		return -1;
	if (xmppd_iq_register(ctx, NULL, NS_EXTDISCO, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_SERVER, extdisco_iq, ctx) < 0)
		return -1;
	return xmppd_disco_feature(ctx, NS_EXTDISCO);      /* XEP-0215 5 */
}

/* The options are read per request: a reload only has to check them. */
static int
reload(xmppd_ctx *ctx)
{
	return check_options(ctx);
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_extdisco",
	.version = "1.0",
	.options = extdisco_options,
	.load = load,
	.reload = reload,
};
