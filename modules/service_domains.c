/*
 * service_domains.c - see service_domains.h.
 */
#define _GNU_SOURCE             /* asprintf */
#include <stdio.h>
#include <stdlib.h>

#include "service_domains.h"

struct collect {
	const char *prefix;
	char **v;
	size_t n, max;
	int failed;
};

/* The list cannot change between the count and this: both run in the
 * module's load, under the loader. */
static void
add(const char *host, void *ud)
{
	struct collect *c = ud;

	if (c->failed || c->n >= c->max)
		return;
	if (asprintf(&c->v[c->n], "%s%s", c->prefix, host) < 0)
		c->failed = 1;
	else
		c->n++;
}

int
service_domains(xmppd_ctx *ctx, const char *prefix, char ***out, size_t *n_out)
{
	size_t listed = xmppd_opt_list_len(ctx, "hosts");
	size_t nh = listed != 0 ? listed : xmppd_host_foreach(NULL, NULL);
	struct collect c = { prefix != NULL ? prefix : "", NULL, 0, nh, 0 };

	*out = NULL;
	*n_out = 0;
	if (nh == 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "no host to serve");
		return -1;
	}
	if ((c.v = calloc(nh, sizeof(*c.v))) == NULL)
		return -1;
	if (listed == 0)
		(void)xmppd_host_foreach(add, &c);
	for (size_t i = 0; i < listed; i++)
		add(xmppd_opt_list_at(ctx, "hosts", i), &c);
	if (c.failed) {
		service_domains_free(c.v, c.n);
		return -1;
	}
	*out = c.v;
	*n_out = c.n;
	return 0;
}

void
service_domains_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}
