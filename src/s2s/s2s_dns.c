/*
 * s2s_dns.c - where a remote domain's server is: DNS SRV records
 * (RFC 6120 3.2.1; XEP-0368 for _xmpps-server, direct TLS), ordered by
 * priority and weight (RFC 2782), else the domain itself on 5269
 * (RFC 6120 3.2.2). Addresses (A/AAAA, /etc/hosts) are evdns's job, in
 * s2s_out.c.
 *
 * libevent 2.1's evdns resolves A, AAAA and PTR only, so the SRV query is
 * built with the C library's res_mkquery, sent over UDP from the worker's
 * event loop to the nameservers evdns read (s2s_resolv_conf), and its
 * answer read with dn_expand. Nothing blocks a worker.
 */
#include "config.h"

#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"
#include "s2s/s2s_int.h"

#define SRV_MAX_NS 3
#define SRV_TIMEOUT_S 3
#define SRV_MAX_RECS 32
#define T_SRV_ 33

struct srv_rec {
	char *target;
	uint16_t prio, weight, port;
	int tls;
};

struct srv_lookup {
	struct srv_lookup *next;
	struct s2s_worker *sw;
	uint64_t conn_id;
	s2s_targets_fn cb;
	char *domain;
	int phase;                  /* 0: _xmpps-server (XEP-0368), 1: _xmpp-server */
	int fd;
	struct event *ev;
	struct sockaddr_storage ns[SRV_MAX_NS];
	ev_socklen_t nslen[SRV_MAX_NS];
	int nns, attempt;
	unsigned char q[512];
	int qlen;
	struct srv_rec recs[SRV_MAX_RECS];
	size_t nrecs;
	int dot;                    /* a "." target: the service is not offered */
};

static void query_send(struct srv_lookup *l);

void
s2s_targets_free(struct s2s_target *t, size_t n)
{
	for (size_t i = 0; t != NULL && i < n; i++)
		free(t[i].host);
	free(t);
}

static void
lookup_free(struct srv_lookup *l)
{
	struct srv_lookup **pp;

	for (pp = &l->sw->lookups; *pp != NULL; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	if (l->ev != NULL)
		event_free(l->ev);
	if (l->fd >= 0)
		close(l->fd);
	for (size_t i = 0; i < l->nrecs; i++)
		free(l->recs[i].target);
	free(l->domain);
	free(l);
}

void
s2s_dns_free_all(struct s2s_worker *sw)
{
	while (sw->lookups != NULL)
		lookup_free(sw->lookups);
}

static int
by_priority(const void *a, const void *b)
{
	const struct srv_rec *x = a, *y = b;

	if (x->prio != y->prio)
		return x->prio < y->prio ? -1 : 1;
	/* XEP-0368 3.1: at equal priority, direct TLS first is allowed;
	 * weight 0 records first within the group for RFC 2782's draw. */
	if (x->weight != y->weight)
		return x->weight < y->weight ? -1 : 1;
	return y->tls - x->tls;
}

/* RFC 2782: within a priority, draw records at random in proportion to
 * their weights; the records not drawn yet stay in their order, weight 0
 * first, for the next draw. */
static void
order_by_weight(struct srv_rec *r, size_t n)
{
	size_t i = 0;

	qsort(r, n, sizeof(*r), by_priority);
	while (i < n) {
		size_t j = i;

		while (j < n && r[j].prio == r[i].prio)
			j++;
		for (size_t k = i; k + 1 < j; k++) {
			unsigned long sum = 0, pick, run = 0;
			uint32_t rnd;
			size_t m;

			for (m = k; m < j; m++)
				sum += r[m].weight;
			evutil_secure_rng_get_bytes(&rnd, sizeof(rnd));
			pick = sum > 0 ? rnd % (sum + 1) : 0;
			for (m = k; m < j; m++) {
				run += r[m].weight;
				if (run >= pick)
					break;
			}
			if (m == j)
				m = j - 1;
			if (m != k) {
				/* Not a swap: that would put a weight 0
				 * record behind others, where a draw of 0
				 * no longer finds it. */
				struct srv_rec t = r[m];

				memmove(&r[k + 1], &r[k], (m - k) * sizeof(*r));
				r[k] = t;
			}
		}
		i = j;
	}
}

static void
finish(struct srv_lookup *l)
{
	struct s2s_target *t = NULL;
	size_t n = 0;

	if (l->nrecs > 0) {
		order_by_weight(l->recs, l->nrecs);
		t = calloc(l->nrecs, sizeof(*t));
		for (size_t i = 0; t != NULL && i < l->nrecs; i++) {
			t[n].host = l->recs[i].target;
			l->recs[i].target = NULL;
			t[n].port = l->recs[i].port;
			t[n].direct_tls = l->recs[i].tls;
			n++;
		}
	} else if (!l->dot) {
		/* RFC 6120 3.2.2: no SRV records, the domain on 5269. */
		t = calloc(1, sizeof(*t));
		if (t != NULL && (t[0].host = strdup(l->domain)) != NULL) {
			t[0].port = 5269;
			n = 1;
		}
	} else {
		log_info("s2s", "%s: SRV target \".\": no XMPP service there", l->domain);
	}
	l->cb(l->sw, l->conn_id, t, n);
	lookup_free(l);
}

static uint16_t
get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Reads the SRV records of an answer; 0, or -1 if it is not one for us. */
static int
parse_answer(struct srv_lookup *l, const unsigned char *msg, int len)
{
	const unsigned char *p = msg + 12, *end = msg + len;
	unsigned qd, an, rcode;
	char name[NS_MAXDNAME];
	int n;

	if (len < 12 || get16(msg) != get16(l->q) || !(msg[2] & 0x80))
		return -1;
	rcode = msg[3] & 0x0f;
	if (rcode != 0)
		return 0;       /* NXDOMAIN, SERVFAIL ...: no records */
	qd = get16(msg + 4);
	an = get16(msg + 6);
	for (unsigned i = 0; i < qd; i++) {
		if ((n = dn_skipname(p, end)) < 0 || p + n + 4 > end)
			return 0;
		p += n + 4;
	}
	for (unsigned i = 0; i < an; i++) {
		unsigned type, rdlen;

		if ((n = dn_skipname(p, end)) < 0 || p + n + 10 > end)
			return 0;
		p += n;
		type = get16(p);
		rdlen = get16(p + 8);
		p += 10;
		if (p + rdlen > end)
			return 0;
		if (type == T_SRV_ && rdlen >= 7 && l->nrecs < SRV_MAX_RECS &&
		    dn_expand(msg, end, p + 6, name, sizeof(name)) >= 0) {
			struct srv_rec *r = &l->recs[l->nrecs];

			if (name[0] == '\0' || strcmp(name, ".") == 0) {
				l->dot = 1;
			} else if ((r->target = strdup(name)) != NULL) {
				r->prio = get16(p);
				r->weight = get16(p + 2);
				r->port = get16(p + 4);
				r->tls = l->phase == 0;
				l->nrecs++;
			}
		}
		p += rdlen;
	}
	return 0;
}

static void
next_phase(struct srv_lookup *l)
{
	if (l->ev != NULL)
		event_free(l->ev);
	l->ev = NULL;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	if (l->phase == 1) {
		finish(l);
		return;
	}
	l->phase = 1;
	l->attempt = 0;
	query_send(l);
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_lookup *l = arg;
	unsigned char buf[4096];
	ssize_t n;

	if (what & EV_TIMEOUT) {
		l->attempt++;
		if (l->attempt >= 2 * l->nns) {
			log_info("s2s", "SRV lookup for %s: no answer", l->domain);
			next_phase(l);
			return;
		}
		event_free(l->ev);
		l->ev = NULL;
		close(l->fd);
		l->fd = -1;
		query_send(l);
		return;
	}
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0 || parse_answer(l, buf, (int)n) < 0) {
		if (n < 0) {
			/* ICMP unreachable and the like: the next server. */
			l->attempt++;
			if (l->attempt >= 2 * l->nns) {
				next_phase(l);
				return;
			}
			event_free(l->ev);
			l->ev = NULL;
			close(l->fd);
			l->fd = -1;
			query_send(l);
		}
		return;         /* a stray datagram: keep waiting */
	}
	next_phase(l);
}

static void
query_send(struct srv_lookup *l)
{
	char name[NS_MAXDNAME];
	struct timeval tv = { SRV_TIMEOUT_S, 0 };
	int ns = l->attempt % l->nns;
	uint16_t id;

	snprintf(name, sizeof(name), "%s._tcp.%s",
	    l->phase == 0 ? "_xmpps-server" : "_xmpp-server", l->domain);
	l->qlen = res_mkquery(QUERY, name, C_IN, T_SRV_, NULL, 0, NULL, l->q, sizeof(l->q));
	if (l->qlen < 12) {
		next_phase(l);
		return;
	}
	evutil_secure_rng_get_bytes(&id, sizeof(id));
	memcpy(l->q, &id, 2);
	l->fd = socket(l->ns[ns].ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0 || connect(l->fd, (struct sockaddr *)&l->ns[ns], l->nslen[ns]) < 0 ||
	    send(l->fd, l->q, (size_t)l->qlen, 0) < 0) {
		log_info("s2s", "SRV query for %s: %s", name, strerror(errno));
		l->attempt = 2 * l->nns;
		next_phase(l);
		return;
	}
	l->ev = event_new(worker_base(worker_get(l->sw->id)), l->fd, EV_READ | EV_PERSIST,
	    read_cb, l);
	event_add(l->ev, &tv);
	log_debug("s2s", "SRV query %s", name);
}

void
s2s_dns_targets(struct s2s_worker *sw, const struct conf *conf, uint64_t conn_id,
    const char *domain, s2s_targets_fn cb)
{
	struct evdns_base *dns;
	struct srv_lookup *l;
	size_t dl = strlen(domain);

	/* RFC 6761 6.4: "invalid" names never resolve; no query is sent. */
	if (strcmp(domain, "invalid") == 0 ||
	    (dl > 8 && strcmp(domain + dl - 8, ".invalid") == 0)) {
		cb(sw, conn_id, NULL, 0);
		return;
	}
	dns = s2s_dns(sw, conf);
	l = calloc(1, sizeof(*l));
	if (l == NULL || (l->domain = strdup(domain)) == NULL) {
		free(l);
		cb(sw, conn_id, NULL, 0);
		return;
	}
	l->sw = sw;
	l->conn_id = conn_id;
	l->cb = cb;
	l->fd = -1;
	l->next = sw->lookups;
	sw->lookups = l;
	for (int i = 0; dns != NULL && l->nns < SRV_MAX_NS; i++) {
		int r = evdns_base_get_nameserver_addr(dns, i, (struct sockaddr *)&l->ns[l->nns],
		    sizeof(l->ns[0]));

		if (r < 0)
			break;
		if (r > (int)sizeof(l->ns[0]))
			continue;
		l->nslen[l->nns++] = (ev_socklen_t)r;
	}
	if (l->nns == 0) {
		/* No nameserver: the A/AAAA fallback (and /etc/hosts). */
		l->phase = 1;
		finish(l);
		return;
	}
	query_send(l);
}
