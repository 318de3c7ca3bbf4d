/*
 * service_domains.h - the domains of a module that serves one per host
 * (mod_pubsub's pubsub.HOST, mod_muc's conference.HOST); compiled into
 * each such module (modules/service_domains.c).
 */
#ifndef SERVICE_DOMAINS_H
#define SERVICE_DOMAINS_H

#include <stddef.h>

#include <xmppd.h>

/*
 * prefix + each host of the module's string-list option `hosts`, or of
 * the configuration (xmppd_host_foreach, ABI 1.6) when the option is
 * unset or empty. Into *out (malloc'd, of malloc'd strings) and *n_out.
 * 0, or -1 after logging why (no host, no memory).
 */
int service_domains(xmppd_ctx *ctx, const char *prefix, char ***out, size_t *n_out);
void service_domains_free(char **v, size_t n);

#endif
