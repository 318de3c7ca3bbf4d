/*
 * mod_caps - entity capabilities (XEP-0115).
 *
 * Tracks the <c xmlns='http://jabber.org/protocol/caps'/> of every
 * presence the server routes to a local account or a local user
 * broadcasts, asks the resource for disco#info once per unknown hash
 * (node#ver, XEP-0115 6.2), verifies the answer against the hash (5.4),
 * caches it for every user, and answers xmppd_caps_has_feature (ABI 1.5)
 * from that cache: what PEP uses for NODE+notify (XEP-0163 4.3). It runs
 * caps_presence when a resource's features are known (at once, or once
 * the answer is verified) and when the resource goes unavailable. The
 * server's own caps go in the stream features (6.3), with the node query
 * they imply answered (disco_info for NODE#VER).
 *
 * State is module-wide (any worker routes presence; any worker asks
 * has_feature): two hash tables under one read-write lock, bounded by
 * caps_max_hashes and caps_max_resources (beyond them a new hash or
 * resource is not tracked: has_feature answers -1 for it).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <xmppd.h>

#define NS_CAPS "http://jabber.org/protocol/caps"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DATA "jabber:x:data"
#define SERVER_NODE "https://github.com/xmppd/xmppd"
/* Bounds on what a peer's disco#info may hold, and on waiters per hash. */
#define ITEMS_MAX 512
#define VER_MAX 128
/* Every resource (and every local account its presence reached) that
 * sent a hash while it was being asked for hears once it is verified: a
 * client release seen by many users at once (a server restart, the
 * contacts of one account) makes thousands of them. */
#define WAITERS_MAX 65536
#define REPLY_TIMEOUT_MS 20000
/* A hash whose answer failed verification is not asked for again before
 * this long (a peer announcing a wrong hash must not cost a query per
 * presence). */
#define RETRY_MS (10 * 60 * 1000)

static const struct xmppd_option options[] = {
	{ "caps_max_hashes", XMPPD_OPT_INT, "100000", 1, 10000000 },
	{ "caps_max_resources", XMPPD_OPT_INT, "1000000", 1, 100000000 },
	{ NULL, 0, NULL, 0, 0 },
};

static xmppd_ctx *module_ctx;
static long max_hashes, max_resources;

enum { CAPS_PENDING, CAPS_OK, CAPS_FAILED };

struct waiter {
	xmppd_jid *from, *to;       /* to may be NULL */
};

/* One hash ("sha-1 VER"): its features once verified. */
struct caps {
	struct caps *next;
	char *key;
	int state;
	uint64_t failed_at;
	char **features;            /* sorted */
	size_t nfeatures;
	struct waiter *waiters;
	size_t nwaiters, wcap;
};

/* One resource's current caps. */
struct res {
	struct res *next;
	char *full;
	struct caps *caps;
};

#define CAPS_BUCKETS 4096
#define RES_BUCKETS 65536
static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static struct caps *caps_tab[CAPS_BUCKETS];
static struct res *res_tab[RES_BUCKETS];
static long ncaps, nres;

/* The server's own caps (computed at the first stream features). */
static pthread_mutex_t own_lock = PTHREAD_MUTEX_INITIALIZER;
static char own_ver[64];

static unsigned
hash_str(const char *s)
{
	unsigned h = 2166136261u;

	while (*s != '\0')
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}

static struct caps *
caps_find(const char *key)
{
	struct caps *c;

	for (c = caps_tab[hash_str(key) % CAPS_BUCKETS]; c != NULL; c = c->next)
		if (strcmp(c->key, key) == 0)
			return c;
	return NULL;
}

static struct res **
res_slot(const char *full)
{
	struct res **pp = &res_tab[hash_str(full) % RES_BUCKETS];

	while (*pp != NULL && strcmp((*pp)->full, full) != 0)
		pp = &(*pp)->next;
	return pp;
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The provider (any thread). */
static int
has_feature(const xmppd_jid *full, const char *feature)
{
	struct res *r;
	int ans = -1;

	pthread_rwlock_rdlock(&lock);
	r = *res_slot(xmppd_jid_full(full));
	if (r != NULL && r->caps->state == CAPS_OK)
		ans = bsearch(&feature, r->caps->features, r->caps->nfeatures, sizeof(char *),
		    str_cmp) != NULL;
	pthread_rwlock_unlock(&lock);
	return ans;
}

static void
run_hook(const xmppd_jid *from, const xmppd_jid *to, int available)
{
	struct xmppd_caps_presence_args a = { from, to, available };

	(void)xmppd_hook_run(XMPPD_HOOK_CAPS_PRESENCE,
	    xmppd_jid_domain(to != NULL ? to : from), &a);
}

/* ---- XEP-0115 5.1: the verification string ---- */

struct sbuf {
	char *p;
	size_t len, cap;
	int failed;
};

static void
sb_add(struct sbuf *b, const char *s)
{
	size_t n = strlen(s);

	if (b->failed)
		return;
	if (b->len + n + 2 > b->cap) {
		size_t cap = (b->len + n + 2) * 2;
		char *p = realloc(b->p, cap);

		if (p == NULL) {
			b->failed = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len++] = '<';
	b->p[b->len] = '\0';
}

static int
has_dup(char **v, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (strcmp(v[i - 1], v[i]) == 0)
			return 1;
	return 0;
}

static void
free_strs(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* One extended form's part of S (5.1 step 4), or NULL for a form to skip
 * (no FORM_TYPE, or one not hidden: 5.4 3.6), with *bad set for one that
 * makes the whole answer ill-formed (5.4 3.5). */
static char *
form_string(xmppd_elem *x, int *bad)
{
	char *fields[ITEMS_MAX], *form_type = NULL;
	size_t nf = 0;
	int ntypes = 0, ignore = 0;
	struct sbuf b = { 0 };

	for (xmppd_elem *f = xmppd_elem_first_child(x); f != NULL; f = xmppd_elem_next_sibling(f)) {
		const char *var = xmppd_elem_attr(f, "var");
		struct sbuf fb = { 0 };
		char *vals[ITEMS_MAX];
		size_t nv = 0;

		if (strcmp(xmppd_elem_name(f), "field") != 0 || var == NULL)
			continue;
		for (xmppd_elem *v = xmppd_elem_first_child(f); v != NULL; v = xmppd_elem_next_sibling(v))
			if (strcmp(xmppd_elem_name(v), "value") == 0 && nv < ITEMS_MAX)
				vals[nv++] = strdup(xmppd_elem_text(v));
		if (strcmp(var, "FORM_TYPE") == 0) {
			const char *type = xmppd_elem_attr(f, "type");

			ntypes++;
			/* 5.4 3.5: one FORM_TYPE of one value; 3.6: a form
			 * whose FORM_TYPE is not hidden is ignored. */
			if (type != NULL && strcmp(type, "hidden") != 0)
				ignore = 1;
			if (nv != 1 || ntypes > 1 || form_type != NULL)
				*bad = 1;
			else if ((form_type = strdup(vals[0] != NULL ? vals[0] : "")) == NULL)
				*bad = 1;
			for (size_t i = 0; i < nv; i++)
				free(vals[i]);
			continue;
		}
		for (size_t i = 0; i < nv; i++)
			if (vals[i] == NULL)
				*bad = 1;
		if (!*bad) {
			qsort(vals, nv, sizeof(char *), str_cmp);
			sb_add(&fb, var);
			for (size_t i = 0; i < nv; i++)
				sb_add(&fb, vals[i]);
			if (fb.failed || nf == ITEMS_MAX)
				*bad = 1;
			else
				fields[nf++] = fb.p, fb.p = NULL;
		}
		free(fb.p);
		for (size_t i = 0; i < nv; i++)
			free(vals[i]);
	}
	if (!*bad && form_type != NULL) {
		qsort(fields, nf, sizeof(char *), str_cmp);
		sb_add(&b, form_type);
		for (size_t i = 0; i < nf; i++) {
			/* Each field's text has its '<' already. */
			size_t l = strlen(fields[i]);

			fields[i][l - 1] = '\0';
			sb_add(&b, fields[i]);
		}
		if (b.failed)
			*bad = 1;
	}
	for (size_t i = 0; i < nf; i++)
		free(fields[i]);
	if (*bad || ignore || form_type == NULL) {
		free(form_type);
		free(b.p);
		return NULL;
	}
	/* Sorted by FORM_TYPE: the string starts with it. */
	free(form_type);
	return b.p != NULL ? b.p : strdup("");
}

/* Computes the base64 sha-1 of query's S into out (at least 64 bytes);
 * the features (sorted, new) into *feat_r when asked. 0, or -1 for an
 * answer 5.4 says to reject. */
static size_t
dedup(char **v, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (k > 0 && strcmp(v[k - 1], v[i]) == 0) {
			free(v[i]);
			continue;
		}
		v[k++] = v[i];
	}
	return k;
}

static int
verify_string(xmppd_elem *query, char *out, char ***feat_r, size_t *nfeat_r, int own)
{
	char *ids[ITEMS_MAX], *feats[ITEMS_MAX], *forms[ITEMS_MAX];
	size_t ni = 0, nf = 0, nx = 0;
	int bad = 0;
	struct sbuf s = { 0 };
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen;

	for (xmppd_elem *e = xmppd_elem_first_child(query); e != NULL && !bad;
	    e = xmppd_elem_next_sibling(e)) {
		const char *name = xmppd_elem_name(e), *ns = xmppd_elem_ns(e);

		if (strcmp(name, "identity") == 0 && (ns == NULL || strcmp(ns, NS_DISCO_INFO) == 0)) {
			const char *cat = xmppd_elem_attr(e, "category"),
			    *type = xmppd_elem_attr(e, "type"),
			    *lang = xmppd_elem_attr(e, "xml:lang"),
			    *nm = xmppd_elem_attr(e, "name");
			size_t l;
			char *p;

			if (cat == NULL || type == NULL || ni == ITEMS_MAX) {
				bad = 1;
				break;
			}
			l = strlen(cat) + strlen(type) + (lang ? strlen(lang) : 0) +
			    (nm ? strlen(nm) : 0) + 4;
			if ((p = malloc(l)) == NULL) {
				bad = 1;
				break;
			}
			snprintf(p, l, "%s/%s/%s/%s", cat, type, lang ? lang : "", nm ? nm : "");
			ids[ni++] = p;
		} else if (strcmp(name, "feature") == 0 &&
		    (ns == NULL || strcmp(ns, NS_DISCO_INFO) == 0)) {
			const char *var = xmppd_elem_attr(e, "var");

			if (var == NULL || nf == ITEMS_MAX || (feats[nf] = strdup(var)) == NULL) {
				bad = 1;
				break;
			}
			nf++;
		} else if (strcmp(name, "x") == 0 && ns != NULL && strcmp(ns, NS_DATA) == 0) {
			char *fs = form_string(e, &bad);

			if (fs != NULL) {
				if (nx == ITEMS_MAX)
					bad = 1, free(fs);
				else
					forms[nx++] = fs;
			}
		}
	}
	qsort(ids, ni, sizeof(char *), str_cmp);
	qsort(feats, nf, sizeof(char *), str_cmp);
	qsort(forms, nx, sizeof(char *), str_cmp);
	/* 5.4 3.3-3.4: no two identities, features or forms alike (forms
	 * alike in FORM_TYPE: compared on their first part). Our own answer
	 * goes out without its duplicates (mod_disco removes them). */
	if (own) {
		ni = dedup(ids, ni);
		nf = dedup(feats, nf);
	}
	if (has_dup(ids, ni) || has_dup(feats, nf))
		bad = 1;
	for (size_t i = 1; i < nx && !bad; i++) {
		const char *a = forms[i - 1], *b = forms[i];
		size_t la = strcspn(a, "<"), lb = strcspn(b, "<");

		if (la == lb && memcmp(a, b, la) == 0)
			bad = 1;
	}
	for (size_t i = 0; i < ni && !bad; i++)
		sb_add(&s, ids[i]);
	for (size_t i = 0; i < nf && !bad; i++)
		sb_add(&s, feats[i]);
	for (size_t i = 0; i < nx && !bad; i++) {
		forms[i][strlen(forms[i]) - 1] = '\0';
		sb_add(&s, forms[i]);
	}
	if (!bad && !s.failed &&
	    EVP_Digest(s.p != NULL ? s.p : "", s.len, md, &mdlen, EVP_sha1(), NULL))
		EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
	else
		bad = 1;
	free(s.p);
	for (size_t i = 0; i < ni; i++)
		free(ids[i]);
	for (size_t i = 0; i < nx; i++)
		free(forms[i]);
	if (bad || feat_r == NULL) {
		for (size_t i = 0; i < nf; i++)
			free(feats[i]);
		return bad ? -1 : 0;
	}
	if ((*feat_r = malloc((nf ? nf : 1) * sizeof(char *))) == NULL) {
		for (size_t i = 0; i < nf; i++)
			free(feats[i]);
		return -1;
	}
	memcpy(*feat_r, feats, nf * sizeof(char *));
	*nfeat_r = nf;
	return 0;
}

/* ---- asking for a hash ---- */

struct ask {
	char *key;
	char ver[VER_MAX];
};

static void
waiters_free(struct waiter *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		xmppd_jid_free(w[i].from);
		xmppd_jid_free(w[i].to);
	}
	free(w);
}

static void
answered(const xmppd_elem *reply, void *ud)
{
	struct ask *a = ud;
	xmppd_elem *q = NULL;
	char got[64] = "";
	char **feat = NULL;
	size_t nfeat = 0, nw = 0;
	struct waiter *w = NULL;
	struct caps *c;
	int ok = 0;

	if (reply != NULL && strcmp(xmppd_stanza_type(reply), "result") == 0 &&
	    (q = xmppd_elem_child(reply, NS_DISCO_INFO, "query")) != NULL &&
	    verify_string(q, got, &feat, &nfeat, 0) == 0)
		ok = strcmp(got, a->ver) == 0;
	if (!ok && feat != NULL) {
		free_strs(feat, nfeat);
		feat = NULL;
	}
	pthread_rwlock_wrlock(&lock);
	if ((c = caps_find(a->key)) != NULL && c->state == CAPS_PENDING) {
		if (ok) {
			c->state = CAPS_OK;
			c->features = feat;
			c->nfeatures = nfeat;
			feat = NULL;
		} else {
			c->state = CAPS_FAILED;
			c->failed_at = xmppd_now_ms();
		}
		w = c->waiters;
		nw = c->nwaiters;
		c->waiters = NULL;
		c->nwaiters = c->wcap = 0;
	}
	pthread_rwlock_unlock(&lock);
	if (feat != NULL)
		free_strs(feat, nfeat);
	if (!ok)
		xmppd_log(module_ctx, XMPPD_LOG_INFO, "caps %s: %s", a->key,
		    reply == NULL ? "no answer" : q == NULL ? "no disco#info" :
		    "the answer does not match its hash (XEP-0115 5.4)");
	/* The waiters whose resource still has this hash hear of it. */
	for (size_t i = 0; ok && i < nw; i++)
		if (has_feature(w[i].from, "") >= 0)
			run_hook(w[i].from, w[i].to, 1);
	waiters_free(w, nw);
	free(a->key);
	free(a);
}

static void
ask(const char *key, const char *node, const char *ver, const xmppd_jid *from,
    const xmppd_jid *to)
{
	struct ask *a = calloc(1, sizeof(*a));
	xmppd_elem *iq = xmppd_elem_new(NULL, "iq"), *q;
	char nodever[1024];

	if (a == NULL || iq == NULL || (a->key = strdup(key)) == NULL) {
		free(a);
		xmppd_elem_unref(iq);
		return;
	}
	memcpy(a->ver, ver, strlen(ver) + 1);
	xmppd_elem_set_attr(iq, "type", "get");
	/* From the server of the account the presence was for (or the
	 * user's own server): xmppd_iq_request takes only such a from. */
	xmppd_elem_set_attr(iq, "from", xmppd_jid_domain(to != NULL ? to : from));
	xmppd_elem_set_attr(iq, "to", xmppd_jid_full(from));
	q = xmppd_elem_add_child(iq, NS_DISCO_INFO, "query");
	snprintf(nodever, sizeof(nodever), "%s#%s", node, ver);
	xmppd_elem_set_attr(q, "node", nodever);
	if (xmppd_iq_request(module_ctx, iq, REPLY_TIMEOUT_MS, answered, a) < 0)
		answered(NULL, a);
}

/* ---- presence ---- */

static void
forget(const xmppd_jid *from, const xmppd_jid *to)
{
	struct res **pp, *r;
	int had;

	/* Most copies of an unavailable presence find the resource gone
	 * (the first took it): a read lock tells without blocking others. */
	pthread_rwlock_rdlock(&lock);
	r = *res_slot(xmppd_jid_full(from));
	pthread_rwlock_unlock(&lock);
	if (r != NULL) {
		pthread_rwlock_wrlock(&lock);
		pp = res_slot(xmppd_jid_full(from));
		if ((r = *pp) != NULL) {
			*pp = r->next;
			nres--;
		}
		pthread_rwlock_unlock(&lock);
	}
	had = r != NULL;
	if (r != NULL) {
		free(r->full);
		free(r);
	}
	/* The resource is one entry for all the accounts its presence
	 * reaches, so the copies to the others find it gone: each of them
	 * still hears that it went. */
	if (had || to != NULL)
		run_hook(from, to, 0);
}

static void
seen(xmppd_elem *c, const xmppd_jid *from, const xmppd_jid *to)
{
	const char *hash = xmppd_elem_attr(c, "hash"), *node = xmppd_elem_attr(c, "node"),
	    *ver = xmppd_elem_attr(c, "ver");
	char key[VER_MAX + 16];
	struct caps *cp;
	struct res **pp, *r;
	int known = 0, asking = 0;

	/* 1.5 with sha-1; the legacy form (no hash) has no verifiable ver
	 * and is not tracked (XEP-0115 8.4). */
	if (hash == NULL || strcmp(hash, "sha-1") != 0 || node == NULL || ver == NULL ||
	    strlen(ver) >= VER_MAX || strlen(node) > 512 || *ver == '\0')
		return;
	snprintf(key, sizeof(key), "sha-1 %s", ver);
	/* The common case: a broadcast reaching many local contacts, every
	 * copy after the first finding the resource known with this hash
	 * verified; a read lock is enough for it. */
	pthread_rwlock_rdlock(&lock);
	r = *res_slot(xmppd_jid_full(from));
	known = r != NULL && r->caps->state == CAPS_OK && strcmp(r->caps->key, key) == 0;
	pthread_rwlock_unlock(&lock);
	if (known) {
		run_hook(from, to, 1);
		return;
	}
	pthread_rwlock_wrlock(&lock);
	if ((cp = caps_find(key)) == NULL && ncaps < max_hashes &&
	    (cp = calloc(1, sizeof(*cp))) != NULL) {
		if ((cp->key = strdup(key)) == NULL) {
			free(cp);
			cp = NULL;
		} else {
			unsigned b = hash_str(key) % CAPS_BUCKETS;

			cp->state = CAPS_PENDING;
			cp->next = caps_tab[b];
			caps_tab[b] = cp;
			ncaps++;
			asking = 1;
		}
	} else if (cp != NULL && cp->state == CAPS_FAILED &&
	    xmppd_now_ms() - cp->failed_at > RETRY_MS) {
		cp->state = CAPS_PENDING;
		asking = 1;
	}
	if (cp == NULL) {
		pthread_rwlock_unlock(&lock);
		return;
	}
	pp = res_slot(xmppd_jid_full(from));
	if ((r = *pp) == NULL && nres < max_resources && (r = calloc(1, sizeof(*r))) != NULL) {
		if ((r->full = strdup(xmppd_jid_full(from))) == NULL) {
			free(r);
			r = NULL;
		} else {
			*pp = r;
			nres++;
		}
	}
	if (r != NULL)
		r->caps = cp;
	known = cp->state == CAPS_OK;
	if (r != NULL && cp->state == CAPS_PENDING && cp->nwaiters < WAITERS_MAX) {
		struct waiter *w;

		if (cp->nwaiters == cp->wcap) {
			size_t cap = cp->wcap != 0 ? cp->wcap * 2 : 16;

			if ((w = realloc(cp->waiters, cap * sizeof(*w))) != NULL) {
				cp->waiters = w;
				cp->wcap = cap;
			}
		}
		if (cp->nwaiters < cp->wcap) {
			w = cp->waiters;
			w[cp->nwaiters].from = xmppd_jid_copy(from);
			w[cp->nwaiters].to = to != NULL ? xmppd_jid_copy(to) : NULL;
			cp->nwaiters++;
		}
	}
	pthread_rwlock_unlock(&lock);
	if (known && r != NULL)
		run_hook(from, to, 1);
	else if (asking)
		ask(key, node, ver, from, to);
}

static void
presence(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to)
{
	const char *type;
	xmppd_elem *c;

	if (strcmp(xmppd_stanza_kind(st), "presence") != 0 || from == NULL ||
	    xmppd_jid_resource(from) == NULL)
		return;
	type = xmppd_elem_attr(st, "type");
	if (type != NULL && strcmp(type, "unavailable") == 0) {
		forget(from, to);
		return;
	}
	if (type != NULL)
		return;         /* subscriptions, probes, errors */
	if ((c = xmppd_elem_child(st, NS_CAPS, "c")) != NULL)
		seen(c, from, to);
	else
		forget(from, to);       /* caps no longer advertised */
}

/* Presence routed to a local account (a contact's, local or remote). */
static enum xmppd_result
on_filter(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;

	(void)ud;
	/* Every stanza passes here: nothing but a kind check for the
	 * messages and IQs. */
	if (strcmp(xmppd_stanza_kind(pa->stanza), "presence") == 0 &&
	    pa->to != NULL && xmppd_jid_node(pa->to) != NULL &&
	    xmppd_is_local_host(xmppd_jid_domain(pa->to)) && pa->from != NULL &&
	    strcmp(xmppd_jid_bare(pa->from), xmppd_jid_bare(pa->to)) != 0) {
		xmppd_jid *bare = xmppd_jid_make(xmppd_jid_node(pa->to), xmppd_jid_domain(pa->to),
		    NULL);

		if (bare != NULL)
			presence(pa->stanza, pa->from, bare);
		xmppd_jid_free(bare);
	}
	return XMPPD_CONTINUE;
}

/* A local user's broadcast presence (no 'to'). */
static enum xmppd_result
on_send(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;

	(void)ud;
	if (xmppd_elem_attr(pa->stanza, "to") == NULL && pa->session != NULL)
		presence(pa->stanza, xmppd_session_jid(pa->session), NULL);
	return XMPPD_CONTINUE;
}

static enum xmppd_result
on_closed(void *args, void *ud)
{
	struct xmppd_session_args *sa = args;

	(void)ud;
	forget(xmppd_session_jid(sa->session), NULL);
	return XMPPD_CONTINUE;
}

/* ---- the server's own caps (6.3) ---- */

struct collect {
	xmppd_elem *q;
};

static void
add_identity(const char *category, const char *type, const char *name, void *ud)
{
	xmppd_elem *i = xmppd_elem_add_child(((struct collect *)ud)->q, NS_DISCO_INFO, "identity");

	xmppd_elem_set_attr(i, "category", category);
	xmppd_elem_set_attr(i, "type", type);
	if (name != NULL)
		xmppd_elem_set_attr(i, "name", name);
}

static void
add_feature(const char *ns, void *ud)
{
	xmppd_elem *f = xmppd_elem_add_child(((struct collect *)ud)->q, NS_DISCO_INFO, "feature");

	xmppd_elem_set_attr(f, "var", ns);
}

/* What disco#info on the server says, into q: what mod_disco answers
 * (its identity and the disco namespaces, what modules register, what
 * they fold into disco_info), duplicates left to verify_string. */
static void
server_info(const char *host, xmppd_elem *q)
{
	struct collect c = { q };
	xmppd_jid *server = xmppd_jid_make(NULL, host, NULL);
	struct xmppd_disco_args da = { q, server, server, NULL };

	add_identity("server", "im", "xmppd", &c);
	xmppd_disco_foreach_identity(add_identity, &c);
	add_feature(NS_DISCO_INFO, &c);
	add_feature("http://jabber.org/protocol/disco#items", &c);
	xmppd_disco_foreach_feature(0, add_feature, &c);
	if (server != NULL)
		(void)xmppd_hook_run(XMPPD_HOOK_DISCO_INFO, host, &da);
	xmppd_jid_free(server);
}

static enum xmppd_result
on_features(void *args, void *ud)
{
	struct xmppd_features_args *fa = args;
	xmppd_elem *q, *c;
	char ver[64] = "";

	(void)ud;
	if (!fa->authenticated)
		return XMPPD_CONTINUE;
	/* Computed each time: modules loaded or unloaded change it. One
	 * stream's features per login, so the cost is that of disco#info. */
	q = xmppd_elem_new(NS_DISCO_INFO, "query");
	server_info(fa->host, q);
	if (verify_string(q, ver, NULL, NULL, 1) < 0) {
		xmppd_elem_unref(q);
		return XMPPD_CONTINUE;
	}
	xmppd_elem_unref(q);
	pthread_mutex_lock(&own_lock);
	memcpy(own_ver, ver, sizeof(own_ver));
	pthread_mutex_unlock(&own_lock);
	c = xmppd_elem_add_child(fa->features, NS_CAPS, "c");
	xmppd_elem_set_attr(c, "hash", "sha-1");
	xmppd_elem_set_attr(c, "node", SERVER_NODE);
	xmppd_elem_set_attr(c, "ver", ver);
	return XMPPD_CONTINUE;
}

/* disco#info to the server for SERVER_NODE#ver: the same as without a
 * node (XEP-0115 6.2), for whoever verifies the server's hash. */
static enum xmppd_result
on_disco_info(void *args, void *ud)
{
	struct xmppd_disco_args *da = args;
	char want[sizeof(SERVER_NODE) + 64];
	(void)ud;
	if (da->node == NULL || xmppd_jid_node(da->to) != NULL)
		return XMPPD_CONTINUE;
	pthread_mutex_lock(&own_lock);
	snprintf(want, sizeof(want), "%s#%s", SERVER_NODE, own_ver);
	pthread_mutex_unlock(&own_lock);
	if (strcmp(da->node, want) != 0)
		return XMPPD_CONTINUE;
	/* mod_disco drops the duplicates of what it answers. */
	server_info(xmppd_jid_domain(da->to), da->query);
	return XMPPD_CONTINUE;
}

static int
load(xmppd_ctx *ctx)
{
	module_ctx = ctx;
	max_hashes = xmppd_opt_int(ctx, "caps_max_hashes");
	max_resources = xmppd_opt_int(ctx, "caps_max_resources");
	if (xmppd_caps_provide(ctx, has_feature) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_FILTER_PACKET, NULL, 30, on_filter, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_USER_SEND_PACKET, NULL, 30, on_send, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_SM_SESSION_CLOSED, NULL, 50, on_closed, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_C2S_STREAM_FEATURES, NULL, 50, on_features, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_DISCO_INFO, NULL, 50, on_disco_info, NULL) < 0 ||
	    xmppd_disco_feature(ctx, NS_CAPS) < 0)
		return -1;
	return 0;
}

static void
unload(xmppd_ctx *ctx)
{
	(void)ctx;
	for (size_t i = 0; i < RES_BUCKETS; i++)
		while (res_tab[i] != NULL) {
			struct res *r = res_tab[i];

			res_tab[i] = r->next;
			free(r->full);
			free(r);
		}
	for (size_t i = 0; i < CAPS_BUCKETS; i++)
		while (caps_tab[i] != NULL) {
			struct caps *c = caps_tab[i];

			caps_tab[i] = c->next;
			free_strs(c->features, c->nfeatures);
			waiters_free(c->waiters, c->nwaiters);
			free(c->key);
			free(c);
		}
	ncaps = nres = 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_caps",
	.version = "1.0",
	.options = options,
	.load = load,
	.unload = unload,
};
