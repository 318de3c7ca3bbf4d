/*
 * module.c - module loader and registries (module.h, hooks/xmppd.h).
 *
 * Every registration goes through the module's context, so unloading (or a
 * failed load) removes exactly what the module put in (Redis' module.c).
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "abi/module.h"
#include "core/astore.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/registry.h"
#include "core/worker.h"
#include "http/http.h"
#include "net/listener.h"
#include "router/session.h"

#ifndef XMPPD_MODULE_DIR
#define XMPPD_MODULE_DIR "/usr/local/lib/xmppd"
#endif

/* ---------------------------------------------------------------- */
/* Contexts.                                                          */

struct opt_value {
	int set;
	long ival;
	char *sval;
	char **list;
	size_t nlist;
	struct opt_value *sub;      /* XMPPD_OPT_MAP: list holds the names, sub[i] the strings */
};

struct xmppd_ctx {
	struct xmppd_ctx *next;
	char *name;
	char *path;
	void *dl;
	const struct xmppd_module *mod;
	void *data;
	struct opt_value *opts;     /* parallel to mod->options */
	size_t nopts;
	char **strs;                /* strings owned by registrations */
	size_t nstrs;
	xml_elem **elems;           /* elements owned by registrations */
	size_t nelems;
	int slots[MODULE_MAX_SLOTS];
	size_t nslots;
	const struct conf *conf;    /* while loading: the one it came from */
	struct conf_node *opts_node; /* a copy of the options it was loaded with */
	struct astore_owner store;  /* its asynchronous store work in flight */
	int stuck;                  /* that work never completed: keep the code mapped */
	int unloading;              /* atomic: no new timers (ctx_unregister) */
};

static struct xmppd_ctx *modules;       /* loaded, in load order */

/*
 * The message of the module_* function that failed last (module.h): they
 * all run on the main thread, so one buffer serves, valid until the next
 * call.
 */
static char module_error[1024];

static const char *merror(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *
merror(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(module_error, sizeof(module_error), fmt, ap);
	va_end(ap);
	return module_error;
}

static char *
ctx_strdup(xmppd_ctx *ctx, const char *s)
{
	char **v;

	if (s == NULL)
		return NULL;
	v = realloc(ctx->strs, (ctx->nstrs + 1) * sizeof(*v));
	if (v == NULL)
		return NULL;
	ctx->strs = v;
	if ((v[ctx->nstrs] = strdup(s)) == NULL)
		return NULL;
	return v[ctx->nstrs++];
}

/* ---------------------------------------------------------------- */
/* Registration API (hooks/xmppd.h).                                  */

XMPPD_API int
xmppd_hook_add(xmppd_ctx *ctx, enum xmppd_hook hook, const char *host, int priority,
    xmppd_hook_fn fn, void *ud)
{
	struct reg r = { .owner = ctx, .prio = priority, .fn = (void *)fn, .ud = ud };

	if ((unsigned)hook >= XMPPD_HOOK__COUNT || fn == NULL)
		return -1;
	/* Its latency, as xmppd_hook_duration_seconds{hook,module}. */
	r.stat = metrics_hook_slot((unsigned)hook, ctx != NULL ? ctx->name : NULL);
	if (host != NULL && (r.host = ctx_strdup(ctx, host)) == NULL)
		return -1;
	return registry_add((enum reg_kind)hook, &r);
}

XMPPD_API enum xmppd_result
xmppd_hook_run(enum xmppd_hook hook, const char *host, void *args)
{
	return hooks_run(hook, host, args);
}

XMPPD_API int
xmppd_iq_register(xmppd_ctx *ctx, const char *host, const char *ns, unsigned types,
    unsigned scopes, xmppd_iq_fn fn, void *ud)
{
	struct reg r = { .owner = ctx, .types = types, .scopes = scopes, .fn = (void *)fn,
		.ud = ud };

	if (ns == NULL || fn == NULL || types == 0 || scopes == 0)
		return -1;
	/* Its latency, as xmppd_hook_duration_seconds{hook="iq_handler"}. */
	r.stat = metrics_hook_slot(METRICS_HOOK_IQ, ctx != NULL ? ctx->name : NULL);
	if ((r.s1 = ctx_strdup(ctx, ns)) == NULL)
		return -1;
	if (host != NULL && (r.host = ctx_strdup(ctx, host)) == NULL)
		return -1;
	return registry_add(REG_IQ, &r);
}

XMPPD_API int
xmppd_disco_feature(xmppd_ctx *ctx, const char *ns)
{
	struct reg r = { .owner = ctx, .s1 = ctx_strdup(ctx, ns) };

	return r.s1 != NULL ? registry_add(REG_DISCO_FEATURE, &r) : -1;
}

XMPPD_API int
xmppd_disco_account_feature(xmppd_ctx *ctx, const char *ns)
{
	struct reg r = { .owner = ctx, .s1 = ctx_strdup(ctx, ns) };

	return r.s1 != NULL ? registry_add(REG_DISCO_ACCOUNT_FEATURE, &r) : -1;
}

XMPPD_API int
xmppd_disco_identity(xmppd_ctx *ctx, const char *category, const char *type, const char *name)
{
	struct reg r = { .owner = ctx, .s1 = ctx_strdup(ctx, category),
		.s2 = ctx_strdup(ctx, type), .s3 = name ? ctx_strdup(ctx, name) : NULL };

	return r.s1 != NULL && r.s2 != NULL ? registry_add(REG_DISCO_IDENTITY, &r) : -1;
}

XMPPD_API void
xmppd_disco_foreach_feature(int account, void (*fn)(const char *ns, void *ud), void *ud)
{
	const struct reg_list *l = registry_list(account ? REG_DISCO_ACCOUNT_FEATURE : REG_DISCO_FEATURE);

	for (size_t i = 0; l != NULL && i < l->n; i++)
		fn(l->e[i].s1, ud);
}

XMPPD_API void
xmppd_disco_foreach_identity(void (*fn)(const char *category, const char *type,
    const char *name, void *ud), void *ud)
{
	const struct reg_list *l = registry_list(REG_DISCO_IDENTITY);

	for (size_t i = 0; l != NULL && i < l->n; i++)
		fn(l->e[i].s1, l->e[i].s2, l->e[i].s3, ud);
}

XMPPD_API int
xmppd_stream_feature(xmppd_ctx *ctx, const xmppd_elem *el, int authenticated)
{
	struct reg r = { .owner = ctx, .authenticated = authenticated ? 1 : 0 };
	xml_elem **v = realloc(ctx->elems, (ctx->nelems + 1) * sizeof(*v));

	if (v == NULL)
		return -1;
	ctx->elems = v;
	r.el = v[ctx->nelems++] = xml_elem_copy(el);
	return registry_add(REG_STREAM_FEATURE, &r);
}

XMPPD_API int
xmppd_service_register(xmppd_ctx *ctx, const char *domain, xmppd_service_fn fn, void *ud)
{
	struct reg r = { .owner = ctx, .fn = (void *)fn, .ud = ud };
	char *d = jid_nameprep(domain, strlen(domain));
	const struct conf_listen *cl;

	if (d == NULL || fn == NULL || registry_service_find(d) != NULL || xmppd_is_local_host(d)) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot claim domain %s", domain);
		free(d);
		return -1;
	}
	/* An external component's domain is the component's (XEP-0114). */
	if (conf_component_find(conf_local(), d, &cl) != NULL) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot claim domain %s: it is an external "
		    "component's (the listener on line %d)", d, cl->line);
		free(d);
		return -1;
	}
	r.s1 = ctx_strdup(ctx, d);
	free(d);
	return r.s1 != NULL ? registry_add(REG_SERVICE, &r) : -1;
}

XMPPD_API int
xmppd_ctl_register(xmppd_ctx *ctx, const char *name, const char *usage, xmppd_ctl_fn fn,
    void *ud)
{
	static const char *const builtin[] = { "status", "register", "unregister", "passwd",
		"users", "connected", "kick", "reload", "stop", "module", "components", NULL };
	struct reg r = { .owner = ctx, .fn = (void *)fn, .ud = ud };
	const struct reg_list *l = registry_list(REG_CTL);

	for (size_t i = 0; builtin[i] != NULL; i++)
		if (strcmp(builtin[i], name) == 0)
			return -1;
	for (size_t i = 0; l != NULL && i < l->n; i++)
		if (strcmp(l->e[i].s1, name) == 0)
			return -1;
	r.s1 = ctx_strdup(ctx, name);
	r.s2 = ctx_strdup(ctx, usage != NULL ? usage : name);
	return r.s1 != NULL && fn != NULL ? registry_add(REG_CTL, &r) : -1;
}

/* ---- HTTP handlers (ABI 1.3) ---- */

/* A module's handler: the route's argument, owned by the module's ctx. */
struct http_handler {
	xmppd_http_fn fn;
	void *ud;
	xmppd_ctx *ctx;
};

/* The module whose HTTP handler runs on this thread (for
 * xmppd_http_stream). */
static __thread xmppd_ctx *http_ctx;

static void
http_call(struct http_req *r, void *arg)
{
	const struct http_handler *h = arg;
	xmppd_ctx *outer = http_ctx;

	/* A handler that returns without answering gets a 500 from the
	 * HTTP layer (http.c, dispatch). */
	http_ctx = h->ctx;
	h->fn((xmppd_http_req *)r, h->ud);
	http_ctx = outer;
}

/* The route of xmppd_http_register and _register_stream: a handler
 * record kept with the ctx's strings (freed after its routes are gone). */
static int
http_register(xmppd_ctx *ctx, const char *path, xmppd_http_fn fn, void *ud, int stream)
{
	struct http_handler *h;
	char **v;

	if (fn == NULL || path == NULL || (h = malloc(sizeof(*h))) == NULL)
		return -1;
	h->fn = fn;
	h->ud = ud;
	h->ctx = ctx;
	if ((v = realloc(ctx->strs, (ctx->nstrs + 1) * sizeof(*v))) == NULL) {
		free(h);
		return -1;
	}
	ctx->strs = v;
	v[ctx->nstrs++] = (char *)h;
	if ((stream ? http_route_add_stream : http_route_add)(path, http_call, h, ctx) < 0) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot serve HTTP path %s", path);
		return -1;
	}
	return 0;
}

XMPPD_API int
xmppd_http_register(xmppd_ctx *ctx, const char *path, xmppd_http_fn fn, void *ud)
{
	return http_register(ctx, path, fn, ud, 0);
}

XMPPD_API const char *
xmppd_http_method(const xmppd_http_req *req)
{
	return http_req_method((const struct http_req *)req);
}

XMPPD_API const char *
xmppd_http_path(const xmppd_http_req *req)
{
	return http_req_path((const struct http_req *)req);
}

XMPPD_API const char *
xmppd_http_query(const xmppd_http_req *req)
{
	return http_req_query((const struct http_req *)req);
}

XMPPD_API const char *
xmppd_http_header(const xmppd_http_req *req, const char *name)
{
	return http_req_header((const struct http_req *)req, name);
}

XMPPD_API const void *
xmppd_http_body(const xmppd_http_req *req, size_t *len_r)
{
	return http_req_body((const struct http_req *)req, len_r);
}

XMPPD_API const struct sockaddr *
xmppd_http_client(const xmppd_http_req *req)
{
	return http_req_client((const struct http_req *)req);
}

XMPPD_API int
xmppd_http_secure(const xmppd_http_req *req)
{
	return http_req_secure((const struct http_req *)req);
}

XMPPD_API const char *
xmppd_http_base_url(xmppd_http_req *req)
{
	return http_req_base_url((struct http_req *)req);
}

XMPPD_API void
xmppd_http_respond(xmppd_http_req *req, int status, const char *content_type, const void *body,
    size_t len, const char *headers)
{
	if (status < 100 || status > 599)
		status = 500;
	http_respond((struct http_req *)req, status, content_type, body, len, headers);
}

/* ---- Streamed bodies and files (ABI 1.8) ---- */

XMPPD_API int
xmppd_http_register_stream(xmppd_ctx *ctx, const char *path, xmppd_http_fn fn, void *ud)
{
	return http_register(ctx, path, fn, ud, 1);
}

/* The module's ops for one request, between the HTTP layer's calls and
 * the module's (the request types differ only in name); freed after end
 * or abort, the last call. A body being streamed counts as the module's
 * store work: its unload waits for the end or abort (store_quiesce),
 * since the module's code runs until then. */
struct body_glue {
	const struct xmppd_http_body_ops *ops;
	void *ud;
	xmppd_ctx *ctx;
};

static void
glue_done(struct body_glue *g)
{
	xmppd_ctx *ctx = g->ctx;

	free(g);
	__atomic_sub_fetch(&module_store_owner(ctx)->pending, 1, __ATOMIC_RELEASE);
}

static int
glue_chunk(struct http_req *r, const char *p, size_t n, void *arg)
{
	struct body_glue *g = arg;

	return g->ops->chunk((xmppd_http_req *)r, p, n, g->ud);
}

static void
glue_end(struct http_req *r, void *arg)
{
	struct body_glue *g = arg;

	g->ops->end((xmppd_http_req *)r, g->ud);
	glue_done(g);
}

static void
glue_abort(struct http_req *r, void *arg)
{
	struct body_glue *g = arg;

	if (g->ops->abort != NULL)
		g->ops->abort((xmppd_http_req *)r, g->ud);
	glue_done(g);
}

static const struct http_body_ops glue_ops = { glue_chunk, glue_end, glue_abort };

XMPPD_API void
xmppd_http_stream(xmppd_http_req *req, const struct xmppd_http_body_ops *ops, void *ud)
{
	struct body_glue *g;

	/* Only from a handler of a route of xmppd_http_register_stream's
	 * (or xmppd_http_register's: the body is then complete). */
	if (ops == NULL || ops->chunk == NULL || ops->end == NULL || http_ctx == NULL ||
	    (g = malloc(sizeof(*g))) == NULL) {
		if (ops != NULL && ops->abort != NULL)
			ops->abort(req, ud);
		http_error((struct http_req *)req, 500, "out of memory");
		return;
	}
	g->ops = ops;
	g->ud = ud;
	g->ctx = http_ctx;
	__atomic_add_fetch(&module_store_owner(g->ctx)->pending, 1, __ATOMIC_RELAXED);
	http_req_stream((struct http_req *)req, &glue_ops, g);
}

XMPPD_API void
xmppd_http_respond_file(xmppd_http_req *req, int fd, uint64_t size, const char *content_type,
    const char *headers)
{
	http_respond_file((struct http_req *)req, fd, size, content_type, headers);
}

XMPPD_API char *
xmppd_spool_dir(void)
{
	struct conf *c = conf_current();
	char *s = c != NULL && c->spool_dir != NULL ? strdup(c->spool_dir) : NULL;

	conf_unref(c);
	return s;
}

XMPPD_API void
xmppd_service_foreach(void (*fn)(const char *domain, void *ud), void *ud)
{
	const struct reg_list *l = registry_list(REG_SERVICE);
	/* A reference of our own: fn may call what refreshes conf_local. */
	struct conf *c = conf_current();

	for (size_t i = 0; l != NULL && i < l->n; i++)
		fn(l->e[i].s1, ud);
	/* External components' domains (XEP-0114), as Prosody lists them:
	 * every configured one, connected or not (the domain answers
	 * either way, doc/architecture.md "External components"). */
	for (size_t i = 0; i < c->nlisten; i++)
		for (size_t j = 0; j < c->listen[i].ncomponents; j++)
			fn(c->listen[i].components[j].domain, ud);
	conf_unref(c);
}

/* ---------------------------------------------------------------- */
/* Session slots.                                                     */

static xmppd_ctx *slot_owner[MODULE_MAX_SLOTS];
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;

XMPPD_API int
xmppd_session_slot(xmppd_ctx *ctx)
{
	int s = -1;

	pthread_mutex_lock(&slot_lock);
	for (int i = 0; i < MODULE_MAX_SLOTS; i++)
		if (slot_owner[i] == NULL) {
			slot_owner[i] = ctx;
			s = i;
			break;
		}
	pthread_mutex_unlock(&slot_lock);
	if (s >= 0)
		ctx->slots[ctx->nslots++] = s;
	return s;
}

static void
slot_clear_task(struct worker *w, void *a, uint64_t slot)
{
	session_clear_slot(w, (int)slot);
}

/* ---------------------------------------------------------------- */
/* Timers.                                                            */

struct xmppd_timer {
	struct xmppd_timer *next;     /* in its worker's list */
	struct event *ev;
	xmppd_ctx *owner;
	xmppd_timer_fn fn;
	void *ud;
	unsigned worker;
	uint64_t delay;
};

static struct xmppd_timer **worker_timers;   /* per worker, touched by it only */

static void
timer_unlink_free(struct xmppd_timer *t)
{
	struct xmppd_timer **pp = &worker_timers[t->worker];

	for (; *pp != NULL; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	if (t->ev != NULL)
		event_free(t->ev);
	free(t);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct xmppd_timer *t = arg;
	uint64_t next = t->fn(t->ud);

	if (next == 0) {
		timer_unlink_free(t);
		return;
	}
	{
		struct timeval tv = { (time_t)(next / 1000), (suseconds_t)(next % 1000) * 1000 };

		evtimer_add(t->ev, &tv);
	}
}

static void
timer_start_task(struct worker *w, void *a, uint64_t b)
{
	struct xmppd_timer *t = a;
	struct timeval tv = { (time_t)(t->delay / 1000), (suseconds_t)(t->delay % 1000) * 1000 };

	/* Made for this worker by another one just before its module began
	 * to unload, and arrived after this worker dropped that module's
	 * timers: it is not started (its code is about to be unmapped). The
	 * flag is set before the drop tasks are posted, so a start task
	 * that runs after this worker's drop sees it. */
	if (__atomic_load_n(&t->owner->unloading, __ATOMIC_ACQUIRE)) {
		free(t);
		return;
	}
	t->ev = evtimer_new(worker_base(w), timer_cb, t);
	t->next = worker_timers[t->worker];
	worker_timers[t->worker] = t;
	evtimer_add(t->ev, &tv);
}

static struct xmppd_timer *
timer_new_on(xmppd_ctx *ctx, unsigned worker, uint64_t delay, xmppd_timer_fn fn, void *ud)
{
	struct xmppd_timer *t;

	/* A module being unloaded gets no new timer (hooks/xmppd.h). */
	if (__atomic_load_n(&ctx->unloading, __ATOMIC_ACQUIRE) ||
	    (t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->owner = ctx;
	t->fn = fn;
	t->ud = ud;
	t->worker = worker;
	t->delay = delay;
	if (worker_timers == NULL &&
	    (worker_timers = calloc(worker_count(), sizeof(*worker_timers))) == NULL) {
		free(t);
		return NULL;
	}
	/* Created by the worker itself: its event base is not locked. */
	worker_post(worker_get(worker), timer_start_task, t, 0);
	return t;
}

XMPPD_API xmppd_timer *
xmppd_timer_add(xmppd_ctx *ctx, uint64_t delay_ms, xmppd_timer_fn fn, void *ud)
{
	struct worker *w = worker_self();

	return timer_new_on(ctx, w != NULL ? worker_id(w) : 0, delay_ms, fn, ud);
}

XMPPD_API int
xmppd_timer_add_every_worker(xmppd_ctx *ctx, uint64_t delay_ms, xmppd_timer_fn fn, void *ud)
{
	for (unsigned i = 0; i < worker_count(); i++)
		if (timer_new_on(ctx, i, delay_ms, fn, ud) == NULL)
			return -1;
	return 0;
}

XMPPD_API void
xmppd_timer_del(xmppd_timer *t)
{
	if (t != NULL)
		timer_unlink_free(t);
}

static void
timers_drop_task(struct worker *w, void *a, uint64_t b)
{
	xmppd_ctx *owner = a;
	struct xmppd_timer *t, *next;

	if (worker_timers == NULL)
		return;
	for (t = worker_timers[worker_id(w)]; t != NULL; t = next) {
		next = t->next;
		if (t->owner == owner)
			timer_unlink_free(t);
	}
}

/* ---------------------------------------------------------------- */
/* Options.                                                           */

static int
parse_bool(const char *s, int *out)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0) {
		*out = 1;
		return 0;
	}
	if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0) {
		*out = 0;
		return 0;
	}
	return -1;
}

static void
opt_free(struct opt_value *v)
{
	free(v->sval);
	for (size_t i = 0; i < v->nlist; i++) {
		free(v->list[i]);
		if (v->sub != NULL)
			opt_free(&v->sub[i]);
	}
	free(v->list);
	free(v->sub);
	memset(v, 0, sizeof(*v));
}

/* Sets v from a scalar (the default) or a node. */
static int
opt_set(const struct xmppd_option *o, struct opt_value *v, const char *scalar,
    const struct conf_node *node, const char **why)
{
	const char *s = node != NULL ? (node->type == CONF_NODE_SCALAR ? node->scalar : NULL) :
	    scalar;
	int b;

	switch (o->type) {
	case XMPPD_OPT_BOOL:
		if (s == NULL || parse_bool(s, &b) < 0) {
			*why = "expects true or false";
			return -1;
		}
		v->ival = b;
		break;
	case XMPPD_OPT_INT: {
		char *end;
		long n;

		errno = 0;
		n = s != NULL ? strtol(s, &end, 10) : 0;
		if (s == NULL || *s == '\0' || *end != '\0' || errno != 0 || n < o->min ||
		    n > o->max) {
			*why = "expects a whole number in range";
			return -1;
		}
		v->ival = n;
		break;
	}
	case XMPPD_OPT_STRING:
		if (s == NULL) {
			*why = "expects a string";
			return -1;
		}
		v->sval = strdup(s);
		break;
	case XMPPD_OPT_MAP:
		if (node == NULL || node->type != CONF_NODE_MAP) {
			*why = "expects a mapping of names to strings or lists of strings";
			return -1;
		}
		v->list = calloc(node->n + 1, sizeof(char *));
		v->sub = calloc(node->n + 1, sizeof(*v->sub));
		if (v->list == NULL || v->sub == NULL) {
			*why = "out of memory";
			return -1;
		}
		for (size_t i = 0; i < node->n; i++) {
			static const struct xmppd_option list_opt = { "", XMPPD_OPT_STRING_LIST,
			    NULL, 0, 0 };

			if ((v->list[i] = strdup(node->keys[i])) == NULL) {
				*why = "out of memory";
				return -1;
			}
			v->nlist++;
			if (opt_set(&list_opt, &v->sub[i], NULL, node->items[i], why) < 0) {
				*why = "expects a mapping of names to strings or lists of strings";
				return -1;
			}
		}
		break;
	case XMPPD_OPT_STRING_LIST:
		if (node != NULL && node->type == CONF_NODE_SEQ) {
			v->list = calloc(node->n + 1, sizeof(char *));
			for (size_t i = 0; i < node->n; i++) {
				if (node->items[i]->type != CONF_NODE_SCALAR) {
					*why = "expects a list of strings";
					return -1;
				}
				v->list[v->nlist++] = strdup(node->items[i]->scalar);
			}
		} else if (s != NULL) {
			v->list = calloc(2, sizeof(char *));
			v->list[v->nlist++] = strdup(s);
		} else {
			*why = "expects a list of strings";
			return -1;
		}
		break;
	}
	v->set = 1;
	return 0;
}

static int
ctx_options(xmppd_ctx *ctx, const struct conf *c, const struct conf_module *cm,
    const char **error_r)
{
	const struct xmppd_option *opts = ctx->mod->options;
	const char *why;
	size_t n = 0;

	struct opt_value *v;

	while (opts != NULL && opts[n].name != NULL)
		n++;
	/* Filled privately and published whole: on a reload, workers keep
	 * reading the old array until it is swapped. */
	v = calloc(n + 1, sizeof(*v));
	if (v == NULL) {
		*error_r = merror("%s: out of memory", ctx->name);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (opts[i].default_value != NULL &&
		    opt_set(&opts[i], &v[i], opts[i].default_value, NULL, &why) < 0) {
			*error_r = merror("%s: the default of option '%s' is invalid (%s)",
			    ctx->name, opts[i].name, why);
			goto fail;
		}
	for (size_t k = 0; cm != NULL && cm->opts != NULL && k < cm->opts->n; k++) {
		const char *key = cm->opts->keys[k];
		const struct conf_node *val = cm->opts->items[k];
		size_t i;

		for (i = 0; i < n && strcmp(opts[i].name, key) != 0; i++)
			;
		if (i == n) {
			*error_r = merror("%s:%d: %s: unknown option '%s'", c->path, val->line,
			    ctx->name, key);
			goto fail;
		}
		opt_free(&v[i]);
		if (opt_set(&opts[i], &v[i], NULL, val, &why) < 0) {
			if (opts[i].type == XMPPD_OPT_INT)
				*error_r = merror("%s:%d: %s: '%s' expects a whole number "
				    "from %ld to %ld", c->path, val->line, ctx->name, key,
				    opts[i].min, opts[i].max);
			else
				*error_r = merror("%s:%d: %s: '%s' %s", c->path, val->line,
				    ctx->name, key, why);
			goto fail;
		}
	}
	ctx->nopts = n;
	__atomic_store_n(&ctx->opts, v, __ATOMIC_RELEASE);
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		opt_free(&v[i]);
	free(v);
	return -1;
}


static struct opt_value *
opt_find(xmppd_ctx *ctx, const char *name, enum xmppd_opt_type type)
{
	struct opt_value *v = __atomic_load_n(&ctx->opts, __ATOMIC_ACQUIRE);

	for (size_t i = 0; v != NULL && i < ctx->nopts; i++)
		if (strcmp(ctx->mod->options[i].name, name) == 0 &&
		    ctx->mod->options[i].type == type)
			return &v[i];
	return NULL;
}

XMPPD_API int
xmppd_opt_bool(xmppd_ctx *ctx, const char *name)
{
	struct opt_value *v = opt_find(ctx, name, XMPPD_OPT_BOOL);

	return v != NULL && v->set ? (int)v->ival : 0;
}

XMPPD_API long
xmppd_opt_int(xmppd_ctx *ctx, const char *name)
{
	struct opt_value *v = opt_find(ctx, name, XMPPD_OPT_INT);

	return v != NULL && v->set ? v->ival : 0;
}

XMPPD_API const char *
xmppd_opt_string(xmppd_ctx *ctx, const char *name)
{
	struct opt_value *v = opt_find(ctx, name, XMPPD_OPT_STRING);

	return v != NULL && v->set ? v->sval : NULL;
}

XMPPD_API size_t
xmppd_opt_list_len(xmppd_ctx *ctx, const char *name)
{
	struct opt_value *v = opt_find(ctx, name, XMPPD_OPT_STRING_LIST);

	return v != NULL ? v->nlist : 0;
}

XMPPD_API const char *
xmppd_opt_list_at(xmppd_ctx *ctx, const char *name, size_t i)
{
	struct opt_value *v = opt_find(ctx, name, XMPPD_OPT_STRING_LIST);

	return v != NULL && i < v->nlist ? v->list[i] : NULL;
}

XMPPD_API size_t
xmppd_opt_map_len(xmppd_ctx *ctx, const char *name)
{
	struct opt_value *v = opt_find(ctx, name, XMPPD_OPT_MAP);

	return v != NULL ? v->nlist : 0;
}

XMPPD_API const char *
xmppd_opt_map_key(xmppd_ctx *ctx, const char *name, size_t i)
{
	struct opt_value *v = opt_find(ctx, name, XMPPD_OPT_MAP);

	return v != NULL && i < v->nlist ? v->list[i] : NULL;
}

XMPPD_API size_t
xmppd_opt_map_list_len(xmppd_ctx *ctx, const char *name, size_t i)
{
	struct opt_value *v = opt_find(ctx, name, XMPPD_OPT_MAP);

	return v != NULL && i < v->nlist ? v->sub[i].nlist : 0;
}

XMPPD_API const char *
xmppd_opt_map_list_at(xmppd_ctx *ctx, const char *name, size_t i, size_t j)
{
	struct opt_value *v = opt_find(ctx, name, XMPPD_OPT_MAP);

	return v != NULL && i < v->nlist && j < v->sub[i].nlist ? v->sub[i].list[j] : NULL;
}

XMPPD_API void
xmppd_set_data(xmppd_ctx *ctx, void *data)
{
	ctx->data = data;
}

XMPPD_API void *
xmppd_get_data(xmppd_ctx *ctx)
{
	return ctx->data;
}

XMPPD_API const char *
xmppd_module_name(xmppd_ctx *ctx)
{
	return ctx->name;
}

XMPPD_API void
xmppd_log(xmppd_ctx *ctx, enum xmppd_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg((enum log_level)level, ctx != NULL ? ctx->name : "module", fmt, ap);
	va_end(ap);
}

XMPPD_API int
xmppd_log_enabled(enum xmppd_log_level level)
{
	return log_enabled((enum log_level)level);
}

const struct conf *
module_conf_of(xmppd_ctx *ctx)
{
	return ctx->conf;
}

struct astore_owner *
module_store_owner(xmppd_ctx *ctx)
{
	return ctx != NULL ? &ctx->store : NULL;
}

const char *
module_name_of(xmppd_ctx *ctx)
{
	return ctx->name;
}

int
module_unloading(xmppd_ctx *ctx)
{
	return __atomic_load_n(&ctx->unloading, __ATOMIC_ACQUIRE);
}

/* ---------------------------------------------------------------- */
/* Loading and unloading.                                             */

static const struct conf_node *
conf_module_opts(const struct conf *c, const char *name)
{
	for (size_t i = 0; c != NULL && i < c->nmodules; i++)
		if (strcmp(c->modules[i].name, name) == 0)
			return c->modules[i].opts;
	return NULL;
}

static xmppd_ctx *
find_loaded(const char *name)
{
	for (xmppd_ctx *m = modules; m != NULL; m = m->next)
		if (strcmp(m->name, name) == 0)
			return m;
	return NULL;
}

static const struct conf_module *
conf_module_find(const struct conf *c, const char *name)
{
	for (size_t i = 0; c != NULL && i < c->nmodules; i++)
		if (strcmp(c->modules[i].name, name) == 0)
			return &c->modules[i];
	return NULL;
}

static void
ctx_destroy(xmppd_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nopts; i++)
		opt_free(&ctx->opts[i]);
	free(ctx->opts);
	for (size_t i = 0; i < ctx->nstrs; i++)
		free(ctx->strs[i]);
	free(ctx->strs);
	for (size_t i = 0; i < ctx->nelems; i++)
		xml_elem_unref(ctx->elems[i]);
	free(ctx->elems);
	conf_node_free(ctx->opts_node);
	if (ctx->dl != NULL && !ctx->stuck)
		dlclose(ctx->dl);
	free(ctx->name);
	free(ctx->path);
	free(ctx);
}

/*
 * Waits until every asynchronous store operation of ctx has completed and
 * its callback returned (hooks/xmppd.h: unload waits for them, nothing is
 * cancelled). They complete on the workers' loops, which keep running:
 * with LMDB within a loop iteration, with a backend that answers later
 * when it answers. A module whose work never completes (a backend that
 * lost it) is left mapped rather than unmapped under a callback.
 */
#define STORE_QUIESCE_MAX_MS 60000

static void
store_quiesce(xmppd_ctx *ctx)
{
	uint64_t start = clock_now_ms(), said = start;

	while (astore_pending(&ctx->store) > 0) {
		uint64_t now = clock_now_ms();

		if (now - start >= STORE_QUIESCE_MAX_MS) {
			log_error("module", "%s: %lu store operation(s) never completed; "
			    "its code stays mapped", ctx->name, astore_pending(&ctx->store));
			ctx->stuck = 1;
			return;
		}
		if (now - said >= 1000) {
			log_notice("module", "%s: waiting for %lu store operation(s)", ctx->name,
			    astore_pending(&ctx->store));
			said = now;
		}
		usleep(1000);
	}
}

/* Removes every registration of ctx and waits until no worker can be
 * running its code (DESIGN.md: unload waits for quiescence), its store
 * work included. */
static void
ctx_unregister(xmppd_ctx *ctx)
{
	__atomic_store_n(&ctx->unloading, 1, __ATOMIC_RELEASE);
	registry_remove_owner(ctx);
	request_forget_owner(ctx);
	entity_forget_owner(ctx);
	(void)http_route_remove(ctx);
	/* Bodies being streamed to it end now (their abort runs before the
	 * sync below), rather than keep the unload waiting on a client. */
	http_abort_owner(ctx);
	worker_post_all(timers_drop_task, ctx, 0);
	for (size_t i = 0; i < ctx->nslots; i++)
		worker_post_all(slot_clear_task, NULL, (uint64_t)ctx->slots[i]);
	worker_sync_all();
	store_quiesce(ctx);
	registry_reclaim();
	pthread_mutex_lock(&slot_lock);
	for (size_t i = 0; i < ctx->nslots; i++)
		slot_owner[ctx->slots[i]] = NULL;
	pthread_mutex_unlock(&slot_lock);
	ctx->nslots = 0;
}

static int
load_module(const struct conf *c, const char *name, const struct conf_module *cm,
    const char **error_r)
{
	const char *dir = c->module_dir != NULL ? c->module_dir : XMPPD_MODULE_DIR;
	xmppd_ctx *ctx;
	char path[PATH_MAX];

	if (find_loaded(name) != NULL) {
		*error_r = merror("%s is already loaded", name);
		return -1;
	}
	if (strchr(name, '/') != NULL || strncmp(name, "mod_", 4) != 0) {
		*error_r = merror("'%s' is not a module name (mod_...)", name);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s.so", dir, name);
	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL || (ctx->name = strdup(name)) == NULL ||
	    (ctx->path = strdup(path)) == NULL) {
		*error_r = merror("out of memory");
		goto fail;
	}
	ctx->conf = c;
	/* RTLD_NOW: a missing symbol is found now, not at the first call;
	 * RTLD_LOCAL: modules do not see each other's symbols. */
	ctx->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (ctx->dl == NULL) {
		*error_r = merror("%s: %s", name, dlerror());
		goto fail;
	}
	ctx->mod = dlsym(ctx->dl, XMPPD_MODULE_SYMBOL);
	if (ctx->mod == NULL) {
		*error_r = merror("%s: %s exports no '%s' descriptor", name, path,
		    XMPPD_MODULE_SYMBOL);
		goto fail;
	}
	/* nginx style: say exactly why a module is refused. */
	if (ctx->mod->abi_major != XMPPD_ABI_MAJOR || ctx->mod->abi_minor > XMPPD_ABI_MINOR) {
		*error_r = merror("%s: built for module ABI %u.%u, this xmppd has ABI %u.%u",
		    name, ctx->mod->abi_major, ctx->mod->abi_minor, XMPPD_ABI_MAJOR,
		    XMPPD_ABI_MINOR);
		goto fail;
	}
	if (ctx->mod->name == NULL || strcmp(ctx->mod->name, name) != 0) {
		*error_r = merror("%s: the file calls itself '%s'", name,
		    ctx->mod->name ? ctx->mod->name : "(null)");
		goto fail;
	}
	for (size_t i = 0; ctx->mod->depends != NULL && ctx->mod->depends[i] != NULL; i++)
		if (find_loaded(ctx->mod->depends[i]) == NULL) {
			*error_r = merror("%s needs %s, which is not loaded", name,
			    ctx->mod->depends[i]);
			goto fail;
		}
	if (ctx_options(ctx, c, cm, error_r) < 0)
		goto fail;
	ctx->opts_node = cm != NULL ? conf_node_dup(cm->opts) : NULL;
	if (ctx->mod->load == NULL || ctx->mod->load(ctx) < 0) {
		*error_r = merror("%s: load failed (see the log)", name);
		/* All or nothing: take back whatever it registered. */
		ctx_unregister(ctx);
		goto fail;
	}
	ctx->conf = NULL;
	/* Appended: load order is kept for unload_all (reverse). */
	{
		xmppd_ctx **pp = &modules;

		while (*pp != NULL)
			pp = &(*pp)->next;
		*pp = ctx;
	}
	log_notice("module", "loaded %s %s from %s", name,
	    ctx->mod->version ? ctx->mod->version : "", path);
	return 0;
fail:
	if (ctx != NULL)
		ctx_destroy(ctx);
	return -1;
}

static const char *
needed_by(const char *name)
{
	for (xmppd_ctx *m = modules; m != NULL; m = m->next)
		for (size_t i = 0; m->mod->depends != NULL && m->mod->depends[i] != NULL; i++)
			if (strcmp(m->mod->depends[i], name) == 0)
				return m->name;
	return NULL;
}

static void
unload_ctx(xmppd_ctx *ctx)
{
	xmppd_ctx **pp;

	for (pp = &modules; *pp != NULL; pp = &(*pp)->next)
		if (*pp == ctx) {
			*pp = ctx->next;
			break;
		}
	ctx_unregister(ctx);
	/* Store work that never completed may still call the module: its
	 * state stays too. */
	if (ctx->mod->unload != NULL && !ctx->stuck)
		ctx->mod->unload(ctx);
	log_notice("module", "unloaded %s", ctx->name);
	ctx_destroy(ctx);
}

int
module_load_all(const struct conf *c, const char **error_r)
{
	size_t loaded = 0, pass;
	char last[sizeof(module_error)] = "";
	const char *err;

	/* Dependencies first: as many passes as there are modules. */
	for (pass = 0; pass <= c->nmodules && loaded < c->nmodules; pass++) {
		for (size_t i = 0; i < c->nmodules; i++) {
			if (find_loaded(c->modules[i].name) != NULL)
				continue;
			if (load_module(c, c->modules[i].name, &c->modules[i], &err) == 0) {
				loaded++;
				continue;
			}
			snprintf(last, sizeof(last), "%s", err);
			if (strstr(last, "which is not loaded") == NULL) {
				module_unload_all();
				*error_r = merror("%s", last);
				return -1;
			}
		}
	}
	if (loaded < c->nmodules) {
		module_unload_all();
		*error_r = merror("%s (missing from 'modules', or a dependency cycle)", last);
		return -1;
	}
	return 0;
}

/* Opens a module file to read its descriptor and validate options: no
 * load(), no registration. */
static int
check_one(const struct conf *c, const struct conf_module *cm, const char **error_r)
{
	const char *dir = c->module_dir != NULL ? c->module_dir : XMPPD_MODULE_DIR;
	xmppd_ctx tmp;
	char path[PATH_MAX];
	int rc = -1;

	memset(&tmp, 0, sizeof(tmp));
	tmp.name = cm->name;
	snprintf(path, sizeof(path), "%s/%s.so", dir, cm->name);
	tmp.dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (tmp.dl == NULL) {
		*error_r = merror("%s:%d: %s: %s", c->path, cm->line, cm->name, dlerror());
		return -1;
	}
	tmp.mod = dlsym(tmp.dl, XMPPD_MODULE_SYMBOL);
	if (tmp.mod == NULL)
		*error_r = merror("%s:%d: %s: no '%s' descriptor", c->path, cm->line,
		    cm->name, XMPPD_MODULE_SYMBOL);
	else if (tmp.mod->abi_major != XMPPD_ABI_MAJOR || tmp.mod->abi_minor > XMPPD_ABI_MINOR)
		*error_r = merror("%s: built for module ABI %u.%u, this xmppd has ABI %u.%u",
		    cm->name, tmp.mod->abi_major, tmp.mod->abi_minor, XMPPD_ABI_MAJOR,
		    XMPPD_ABI_MINOR);
	else if (ctx_options(&tmp, c, cm, error_r) == 0) {
		rc = 0;
		for (size_t i = 0; tmp.mod->depends != NULL && tmp.mod->depends[i] != NULL; i++)
			if (conf_module_find(c, tmp.mod->depends[i]) == NULL) {
				*error_r = merror("%s:%d: %s needs %s, which is not in 'modules'",
				    c->path, cm->line, cm->name, tmp.mod->depends[i]);
				rc = -1;
				break;
			}
		for (size_t i = 0; i < tmp.nopts; i++)
			opt_free(&tmp.opts[i]);
		free(tmp.opts);
	}
	dlclose(tmp.dl);
	return rc;
}

int
module_check_conf(const struct conf *c, const char **error_r)
{
	for (size_t i = 0; i < c->nmodules; i++)
		if (check_one(c, &c->modules[i], error_r) < 0)
			return -1;
	return 0;
}

int
module_load_one(const struct conf *c, const char *name, const char **error_r)
{
	return load_module(c, name, conf_module_find(c, name), error_r);
}

int
module_unload_one(const char *name, const char **error_r)
{
	xmppd_ctx *ctx = find_loaded(name);
	const char *user;

	if (ctx == NULL) {
		*error_r = merror("%s is not loaded", name);
		return -1;
	}
	if ((user = needed_by(name)) != NULL) {
		*error_r = merror("%s is needed by %s; unload that first", name, user);
		return -1;
	}
	unload_ctx(ctx);
	return 0;
}

int
module_reload_one(const struct conf *c, const char *name, const char **error_r)
{
	xmppd_ctx *ctx = find_loaded(name);
	const struct conf_module *cm = conf_module_find(c, name);

	if (ctx == NULL) {
		*error_r = merror("%s is not loaded", name);
		return -1;
	}
	if (ctx->mod->reload != NULL) {
		struct opt_value *old = ctx->opts, *fresh;
		size_t nold = ctx->nopts;
		int ok;

		ctx->conf = c;
		if (ctx_options(ctx, c, cm, error_r) < 0) {
			/* Nothing was published: the module keeps its options. */
			ctx->conf = NULL;
			return -1;
		}
		ok = ctx->mod->reload(ctx) == 0;
		ctx->conf = NULL;
		fresh = ctx->opts;
		if (!ok)
			__atomic_store_n(&ctx->opts, old, __ATOMIC_RELEASE);
		/* Handlers on workers may still hold values of the array that
		 * was replaced (xmppd_opt_string): free it after a quiescent
		 * point. */
		worker_sync_all();
		{
			struct opt_value *gone = ok ? old : fresh;

			for (size_t i = 0; i < nold; i++)
				opt_free(&gone[i]);
			free(gone);
		}
		if (ok) {
			conf_node_free(ctx->opts_node);
			ctx->opts_node = cm != NULL ? conf_node_dup(cm->opts) : NULL;
			log_notice("module", "reloaded %s", name);
			return 0;
		}
		/* reload() said no: fall back to unload + load. */
	}
	if (needed_by(name) != NULL) {
		*error_r = merror("%s cannot be reloaded while %s needs it", name,
		    needed_by(name));
		return -1;
	}
	unload_ctx(ctx);
	return load_module(c, name, cm, error_r);
}

int
module_apply_conf(const struct conf *c, const char **error_r)
{
	char kept[sizeof(module_error)] = "";
	const char *err;
	int rc = 0;
	int again;

	/* Removed modules, dependants first. */
	do {
		again = 0;
		for (xmppd_ctx *m = modules; m != NULL; m = m->next)
			if (conf_module_find(c, m->name) == NULL && needed_by(m->name) == NULL) {
				unload_ctx(m);
				again = 1;
				break;
			}
	} while (again);
	/* Changed options: names first, reloading may replace the context. */
	{
		size_t n = 0, k = 0;
		char **names;

		for (xmppd_ctx *m = modules; m != NULL; m = m->next)
			n++;
		names = calloc(n + 1, sizeof(*names));
		for (xmppd_ctx *m = modules; names != NULL && m != NULL; m = m->next)
			if (!conf_node_equal(m->opts_node, conf_module_opts(c, m->name)))
				names[k++] = strdup(m->name);
		for (size_t i = 0; i < k; i++) {
			if (module_reload_one(c, names[i], &err) < 0) {
				snprintf(kept, sizeof(kept), "%s", err);
				rc = -1;
			}
			free(names[i]);
		}
		free(names);
	}
	for (size_t pass = 0; pass < c->nmodules; pass++)
		for (size_t i = 0; i < c->nmodules; i++)
			if (find_loaded(c->modules[i].name) == NULL &&
			    load_module(c, c->modules[i].name, &c->modules[i], &err) < 0 &&
			    pass + 1 == c->nmodules) {
				snprintf(kept, sizeof(kept), "%s", err);
				rc = -1;
			}
	/* The failure that counts, not a dependency's missing in an early pass. */
	if (rc < 0)
		*error_r = merror("%s", kept);
	return rc;
}

void
module_unload_all(void)
{
	while (modules != NULL) {
		xmppd_ctx *last = modules;

		while (last->next != NULL)
			last = last->next;
		unload_ctx(last);
	}
}

void
module_foreach(void (*fn)(void *ud, const char *name, const char *version, const char *path),
    void *ud)
{
	for (xmppd_ctx *m = modules; m != NULL; m = m->next)
		fn(ud, m->name, m->mod->version ? m->mod->version : "", m->path);
}
