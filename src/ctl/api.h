/*
 * api.h - the admin HTTP API: POST /api/COMMAND on the `module: http`
 * listener runs an xmppctl command (or a module's) with JSON arguments and
 * answers JSON (doc/admin.md, "Admin HTTP API"), and the tokens that
 * `xmppctl api-token` manages (api_token.c).
 *
 * Requests are checked on their worker (method, size, type, JSON, a
 * bearer token), then run on the main thread (password check, access
 * rule, the command, like the control socket) and answered on their
 * worker again.
 */
#ifndef XMPPD_CTL_API_H
#define XMPPD_CTL_API_H

#include <stddef.h>

struct evbuffer;
struct http_req;

/* Registers the /api/ route; main thread, after http_init and
 * api_token_init. 0 or -1. */
int api_init(void);
/* After the workers have stopped: frees the requests still in flight. */
void api_free(void);

/*
 * 1 if r carries valid admin credentials: a bearer token (checked in
 * memory), or Basic credentials of an account that the access rule
 * api_access (default: the acl admins) allows. Any thread; the Basic
 * check derives the password's key from the store's salt, the bounded
 * work SASL PLAIN does on a worker (auth/sasl.c). /metrics asks it
 * (http_metrics_set_auth, set by api_init).
 */
int api_request_authorized(struct http_req *r);

/* ---------------------------------------------------------------- */
/* Tokens (api_token.c).                                              */

/* Loads the tokens from the store; main thread, after store_open. */
int api_token_init(void);
void api_token_free(void);
/* 1 if token (len bytes, as the client sent it) is a valid token. Any
 * thread; digests compared in constant time. */
int api_token_check(const char *token, size_t len);
/* `xmppctl api-token create [COMMENT] | list | revoke ID`: writes the
 * control socket's answer ("OK\n..." or "ERR ...\n") to out. Main thread. */
void api_token_ctl(int argc, char **argv, struct evbuffer *out);

#endif
