/*
 * xmppd.h - the module ABI of xmppd.
 *
 * This header is the whole interface a module may use: installed as
 * $(includedir)/xmppd/xmppd.h and included as <xmppd.h> with the flags of
 * `pkg-config --cflags xmppd`. Everything here
 * is prefixed xmppd_; every type is opaque (no core struct layout is
 * exposed), so the core can change without rebuilding modules as long as
 * the ABI major does not change.
 *
 * Versioning: XMPPD_ABI_MAJOR changes when anything here changes in an
 * incompatible way (a signature, a hook's argument struct, the meaning of a
 * result). XMPPD_ABI_MINOR grows when something is added. The loader
 * accepts a module built for the same major and a minor not newer than its
 * own.
 *
 * Threads (doc/modules.md has the full rules):
 *  - load, unload and reload run on the main thread, while workers run.
 *  - Hooks, IQ handlers, service handlers and timers run on a worker: the
 *    one that owns the entity being processed (a client session on the
 *    worker of its connection; a service address on the worker its address
 *    hashes to). Several workers run handlers of the same module at once:
 *    module-wide state must be read-only after load, or per-worker, or in
 *    the store, or guarded by the module.
 *  - Functions marked "any thread" may be called from any thread; the
 *    others only from the thread that is running the module's callback.
 *  - The asynchronous store's callbacks (ABI 1.2) run on the worker that
 *    made the call, never before the call returns ("Store" below).
 *
 * Ownership: arguments are borrowed unless the name says take, and results
 * are borrowed unless the function says "new" (then the caller owns one
 * reference or must free it as documented). Elements (stanzas) are
 * reference-counted and immutable once routed: copy one to change it.
 */
#ifndef XMPPD_H
#define XMPPD_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XMPPD_ABI_MAJOR 1
#define XMPPD_ABI_MINOR 8

#if defined(__GNUC__)
#define XMPPD_API __attribute__((visibility("default")))
#define XMPPD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define XMPPD_API
#define XMPPD_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------ */
/* Opaque types                                                        */

typedef struct xmppd_elem xmppd_elem;       /* an XML element (a stanza) */
typedef struct xmppd_jid xmppd_jid;         /* a prepared JID */
typedef struct xmppd_session xmppd_session; /* a bound client session */
typedef struct xmppd_ctx xmppd_ctx;         /* a loaded module */
typedef struct xmppd_txn xmppd_txn;         /* a store transaction (synchronous) */
typedef struct xmppd_batch xmppd_batch;     /* a store batch (asynchronous, ABI 1.2) */
typedef struct xmppd_timer xmppd_timer;
typedef struct xmppd_http_req xmppd_http_req; /* an HTTP request (ABI 1.3) */

/* What a hook handler returns. Errors never travel through it: a handler
 * that rejects a stanza bounces it (xmppd_bounce) and returns STOP. */
enum xmppd_result {
	XMPPD_CONTINUE = 0,     /* go on with the next handler */
	XMPPD_STOP = 1,         /* handled: the stanza goes no further */
	XMPPD_DROP = 2,         /* discard the stanza silently */
};

/* ------------------------------------------------------------------ */
/* Module descriptor                                                   */

enum xmppd_opt_type {
	XMPPD_OPT_BOOL,         /* true / false */
	XMPPD_OPT_INT,          /* an integer within [min, max] */
	XMPPD_OPT_STRING,
	XMPPD_OPT_STRING_LIST,  /* a YAML list of strings (or one string) */
	/* (ABI 1.8) a YAML mapping of names to a list of strings (or one
	 * string) each; its default_value must be NULL (unset: no names). */
	XMPPD_OPT_MAP,
};

/* One option a module accepts; a table of them ends with name NULL. The
 * loader refuses options not in the table, or of the wrong type, with
 * "xmppd.yml:LINE: ...", before load is called. */
struct xmppd_option {
	const char *name;
	enum xmppd_opt_type type;
	const char *default_value;  /* as it would be written in YAML; NULL = unset */
	long min, max;              /* XMPPD_OPT_INT only */
};

struct xmppd_module {
	unsigned abi_major;         /* XMPPD_ABI_MAJOR when built */
	unsigned abi_minor;         /* XMPPD_ABI_MINOR when built */
	const char *name;           /* "mod_example", the file is mod_example.so */
	const char *version;
	const char *const *depends; /* NULL-terminated module names, or NULL */
	const struct xmppd_option *options;  /* or NULL */
	/* Registers everything through ctx. 0, or -1 after logging why: the
	 * core then removes whatever ctx registered (all or nothing). */
	int (*load)(xmppd_ctx *ctx);
	/* Called after every registration is removed and every worker has
	 * passed a quiescent point: free module state. */
	void (*unload)(xmppd_ctx *ctx);
	/* Optional: options changed on a configuration reload. 0 or -1
	 * (the module is then unloaded and loaded again). */
	int (*reload)(xmppd_ctx *ctx);
	void *spare[8];             /* zero: room to grow without a major bump */
};

/* Every module exports its descriptor under this symbol name:
 *     XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
 *         XMPPD_ABI_MAJOR, XMPPD_ABI_MINOR, "mod_example", "1.0", ...
 *     };
 */
#define XMPPD_MODULE_SYMBOL "xmppd_module"
#define XMPPD_MODULE_EXPORT __attribute__((visibility("default")))

/* The module's own pointer, kept in its context. */
XMPPD_API void xmppd_set_data(xmppd_ctx *ctx, void *data);
XMPPD_API void *xmppd_get_data(xmppd_ctx *ctx);
XMPPD_API const char *xmppd_module_name(xmppd_ctx *ctx);

/* Option values (validated by the loader, defaults applied). */
XMPPD_API int xmppd_opt_bool(xmppd_ctx *ctx, const char *name);
XMPPD_API long xmppd_opt_int(xmppd_ctx *ctx, const char *name);
XMPPD_API const char *xmppd_opt_string(xmppd_ctx *ctx, const char *name);  /* NULL if unset */
XMPPD_API size_t xmppd_opt_list_len(xmppd_ctx *ctx, const char *name);
XMPPD_API const char *xmppd_opt_list_at(xmppd_ctx *ctx, const char *name, size_t i);
/* (ABI 1.8) An XMPPD_OPT_MAP option: how many names, the i-th name (in
 * the file's order), and the strings of the i-th name. NULL / 0 past the
 * end. */
XMPPD_API size_t xmppd_opt_map_len(xmppd_ctx *ctx, const char *name);
XMPPD_API const char *xmppd_opt_map_key(xmppd_ctx *ctx, const char *name, size_t i);
XMPPD_API size_t xmppd_opt_map_list_len(xmppd_ctx *ctx, const char *name, size_t i);
XMPPD_API const char *xmppd_opt_map_list_at(xmppd_ctx *ctx, const char *name, size_t i,
    size_t j);

/* ------------------------------------------------------------------ */
/* Logging (any thread)                                                */

enum xmppd_log_level {
	XMPPD_LOG_ERROR, XMPPD_LOG_WARNING, XMPPD_LOG_NOTICE, XMPPD_LOG_INFO, XMPPD_LOG_DEBUG,
};

/* Lines are tagged with the module's name. */
XMPPD_API void xmppd_log(xmppd_ctx *ctx, enum xmppd_log_level level, const char *fmt, ...)
    XMPPD_PRINTF(3, 4);
XMPPD_API int xmppd_log_enabled(enum xmppd_log_level level);

/* ------------------------------------------------------------------ */
/* Hooks                                                               */

/*
 * Hook ids, with the struct their handlers receive as args. doc/hooks.md
 * says for each when it runs, on which thread, and what each result does.
 * New hooks are added at the end (a minor bump); an id never changes.
 */
enum xmppd_hook {
	XMPPD_HOOK_FILTER_PACKET = 0,      /* struct xmppd_packet_args */
	XMPPD_HOOK_USER_SEND_PACKET,       /* struct xmppd_packet_args */
	XMPPD_HOOK_USER_RECEIVE_PACKET,    /* struct xmppd_packet_args */
	XMPPD_HOOK_C2S_STREAM_FEATURES,    /* struct xmppd_features_args (fold) */
	XMPPD_HOOK_SM_SESSION_OPENED,      /* struct xmppd_session_args */
	XMPPD_HOOK_SM_SESSION_CLOSED,      /* struct xmppd_session_args */
	XMPPD_HOOK_OFFLINE_MESSAGE,        /* struct xmppd_packet_args */
	XMPPD_HOOK_DISCO_INFO,             /* struct xmppd_disco_args (fold) */
	XMPPD_HOOK_DISCO_ITEMS,            /* struct xmppd_disco_args (fold) */
	XMPPD_HOOK_REGISTER_USER,          /* struct xmppd_user_args */
	XMPPD_HOOK_REMOVE_USER,            /* struct xmppd_user_args */
	XMPPD_HOOK_PRESENCE_IN,            /* struct xmppd_packet_args */
	XMPPD_HOOK_PRESENCE_OUT,           /* struct xmppd_packet_args */
	XMPPD_HOOK_ROSTER_GET,             /* struct xmppd_roster_args (fold) */
	XMPPD_HOOK_ROSTER_IN_SUBSCRIPTION, /* struct xmppd_packet_args: subscription
					    * presence and probes to a local user */
	XMPPD_HOOK_ROSTER_OUT_SUBSCRIPTION,/* struct xmppd_packet_args: subscription
					    * presence a client sends */
	XMPPD_HOOK_S2S_SEND_PACKET,        /* struct xmppd_packet_args */
	XMPPD_HOOK_S2S_RECEIVE_PACKET,     /* struct xmppd_packet_args */
	/* ABI 1.4 */
	XMPPD_HOOK_C2S_NONZA,              /* struct xmppd_nonza_args */
	XMPPD_HOOK_SM_SESSION_RESUMED,     /* struct xmppd_session_args */
	/* ABI 1.5 */
	XMPPD_HOOK_PUBSUB_EVENT,           /* struct xmppd_pubsub_event_args */
	XMPPD_HOOK_CAPS_PRESENCE,          /* struct xmppd_caps_presence_args */
	/* ABI 1.7 */
	XMPPD_HOOK_SERVER_STOPPING,        /* NULL: the server is stopping */
	XMPPD_HOOK__COUNT
};

/* A stanza on its way. */
struct xmppd_packet_args {
	/* filter_packet only may replace it: store a new reference here
	 * (the core drops the old one). Others must not change it. */
	xmppd_elem *stanza;
	const xmppd_jid *from;
	const xmppd_jid *to;
	/* The client session it comes from (user_send_packet,
	 * presence_out) or goes to (user_receive_packet, presence_in);
	 * NULL otherwise. */
	xmppd_session *session;
};

/* c2s_nonza (ABI 1.4): a top-level element that is not a stanza and not
 * the core's (stream management, SASL...), from a bound client (XEP-0352
 * <active/>). STOP: handled; nobody: unsupported-stanza-type. Not counted
 * as a stanza by stream management. */
struct xmppd_nonza_args {
	xmppd_elem *elem;           /* borrowed */
	xmppd_session *session;
};

/* c2s_stream_features: append children to features. */
struct xmppd_features_args {
	xmppd_elem *features;       /* the accumulator: <stream:features/> */
	const char *host;
	int tls;                    /* the stream is encrypted */
	int authenticated;          /* after SASL */
};

struct xmppd_session_args {
	xmppd_session *session;
};

/* disco_info / disco_items: append to query (<query xmlns='...#info'/>
 * or '#items'). to is the entity asked about (the server, an account, a
 * service); node is the disco node or NULL. */
struct xmppd_disco_args {
	xmppd_elem *query;
	const xmppd_jid *from;
	const xmppd_jid *to;
	const char *node;
};

/* register_user / remove_user: node and host are prepared. */
struct xmppd_user_args {
	const char *node;
	const char *host;
};

/* roster_get: append <item/> children to query for user. */
struct xmppd_roster_args {
	xmppd_elem *query;
	const xmppd_jid *user;
};

/* pubsub_event (ABI 1.5): a node of a pubsub service or of an account's
 * PEP changed; run by the module that keeps nodes on the
 * node's worker once the change is durable, before the notifications go
 * out. For modules that mirror a node (XEP-0402 bookmarks into XEP-0048
 * storage, XEP-0398 avatars into the vCard). The result is ignored. */
enum {
	XMPPD_PUBSUB_PUBLISHED = 1,     /* item: the <item id=...> with its payload */
	XMPPD_PUBSUB_RETRACTED = 2,     /* item: <item id=.../>, no payload */
	XMPPD_PUBSUB_PURGED = 3,        /* every item went; item NULL */
	XMPPD_PUBSUB_DELETED = 4,       /* the node went; item NULL */
};
struct xmppd_pubsub_event_args {
	int kind;                   /* XMPPD_PUBSUB_* */
	const xmppd_jid *service;   /* pubsub.DOMAIN, or the account's bare JID (PEP) */
	const char *node;
	const char *item_id;        /* PUBLISHED, RETRACTED; else NULL */
	const xmppd_elem *item;     /* borrowed */
	const xmppd_jid *publisher; /* who did it: a bare JID, or NULL (the server) */
};

/* caps_presence (ABI 1.5): run by the module that keeps entity
 * capabilities (XEP-0115, mod_caps) when a resource whose features it
 * knows sends available presence, and when it sends unavailable
 * presence (to a local account: always; its own broadcast: when its caps
 * were known). from is the resource's full JID; to is the local account's
 * bare JID the presence was for, or NULL for a local user's own
 * broadcast (then from is one of the account's resources). Runs on the
 * worker routing the presence, or for a hash first met there, on the one
 * that verified it (XEP-0115 5.4) once the answer came: so an available
 * presence runs it once its features are known, and xmppd_caps_has_feature
 * answers for from during the call. */
struct xmppd_caps_presence_args {
	const xmppd_jid *from;
	const xmppd_jid *to;        /* or NULL */
	int available;
};

typedef enum xmppd_result (*xmppd_hook_fn)(void *args, void *ud);

/*
 * Registers fn on hook for host (NULL: every host). Lower priority runs
 * first (ejabberd's sequence numbers); bands in doc/hooks.md. 0 or -1.
 */
XMPPD_API int xmppd_hook_add(xmppd_ctx *ctx, enum xmppd_hook hook, const char *host,
    int priority, xmppd_hook_fn fn, void *ud);
/* Runs a hook (for modules that define events others fold into, e.g.
 * mod_disco running disco_info). Returns the first non-CONTINUE result. */
XMPPD_API enum xmppd_result xmppd_hook_run(enum xmppd_hook hook, const char *host, void *args);

/* ------------------------------------------------------------------ */
/* IQ handlers                                                         */

enum {
	XMPPD_IQ_GET = 1,
	XMPPD_IQ_SET = 2,
};

enum {
	XMPPD_IQ_SERVER = 1,        /* to the server's own JID (a host) */
	XMPPD_IQ_ACCOUNT = 2,       /* to an account's bare JID (RFC 6121 8.5.2.1.3) */
	/* On a client stream before authentication, once TLS is up (XEP-0077
	 * registration). from is NULL, to is the host the stream is for; the
	 * reply must be given during the call (no deferred replies) and goes
	 * back on that stream. */
	XMPPD_IQ_STREAM = 4,
};

/*
 * Handles IQs of type get and/or set (types) whose payload is in ns, sent
 * to host (NULL: any local host) and the scopes given. The handler answers
 * with xmppd_iq_reply / xmppd_iq_error and returns STOP; it may also keep a
 * reference to iq and answer later from any thread (a deferred reply). It
 * returns CONTINUE to leave the IQ to the next handler; if nobody takes it
 * the core answers service-unavailable (RFC 6120 8.4).
 */
typedef enum xmppd_result (*xmppd_iq_fn)(xmppd_elem *iq, const xmppd_jid *from,
    const xmppd_jid *to, void *ud);
XMPPD_API int xmppd_iq_register(xmppd_ctx *ctx, const char *host, const char *ns,
    unsigned types, unsigned scopes, xmppd_iq_fn fn, void *ud);
/* A result to iq carrying payload (taken; NULL for an empty result).
 * Any thread. */
XMPPD_API void xmppd_iq_reply(const xmppd_elem *iq, xmppd_elem *payload_take);
/* An error reply (RFC 6120 8.3.3 condition). Any thread. */
XMPPD_API void xmppd_iq_error(const xmppd_elem *iq, const char *condition, const char *text);
/* During an XMPPD_IQ_STREAM handler: the client's address (for access rules
 * and rate limits); NULL otherwise. */
XMPPD_API const struct sockaddr *xmppd_iq_stream_addr(const xmppd_elem *iq);

/*
 * (ABI 1.4) Sends iq, a get or set with 'from' (the server, or a local
 * account's bare JID) and 'to' set (taken: its 'id' is replaced by one the
 * core makes, random), and calls fn once on this worker, never before this
 * returns: with the reply (a result or an error, from iq's 'to'; borrowed
 * for the call) or NULL once timeout_ms (at most 120000; 0 = that) has
 * passed without one. The reply reaches nobody else. For answers from
 * other entities (XEP-0357 push: an app server's error disables the
 * registration). Counts as the module's store work: its unload drops the
 * requests still waiting (fn is not called for them) and waits for the
 * replies being delivered. 0, or -1 (not on a worker, a bad iq; iq freed).
 */
typedef void (*xmppd_iq_reply_fn)(const xmppd_elem *reply, void *ud);
XMPPD_API int xmppd_iq_request(xmppd_ctx *ctx, xmppd_elem *iq_take, uint64_t timeout_ms,
    xmppd_iq_reply_fn fn, void *ud);

/* ------------------------------------------------------------------ */
/* Rosters (ABI 1.4): the subscription between a user and a contact     */

enum {
	XMPPD_SUB_NONE = 0,
	XMPPD_SUB_TO = 1,           /* the user sees the contact's presence */
	XMPPD_SUB_FROM = 2,         /* the contact sees the user's */
	XMPPD_SUB_BOTH = 3,
	XMPPD_SUB_IN_ROSTER = 4,    /* the contact is in the user's roster */
	XMPPD_SUB_PENDING_OUT = 8,  /* the user asked to subscribe */
	XMPPD_SUB_PENDING_IN = 16,  /* the contact asked */
};
typedef void (*xmppd_roster_sub_fn)(int sub, void *ud);
/* The state between the local user and contact (both taken as bare JIDs):
 * fn runs once, on this worker, never before this returns, with
 * XMPPD_SUB_* bits, or < 0 when no module provides rosters. Called while a
 * stanza is handled, the stream waits for the answer as for store work.
 * 0, or -1 (not on a worker: fn does not run). */
XMPPD_API int xmppd_roster_subscription(xmppd_ctx *ctx, const xmppd_jid *user,
    const xmppd_jid *contact, xmppd_roster_sub_fn fn, void *ud);
/* The roster module answers them: provider(user, contact, done, done_ud)
 * calls done(sub, done_ud) exactly once, on this worker, during the call
 * or later (from its store callbacks). One provider; removed when its
 * module unloads. 0, or -1 (another module provides them). */
typedef void (*xmppd_roster_provider_fn)(const xmppd_jid *user, const xmppd_jid *contact,
    xmppd_roster_sub_fn done, void *done_ud);
XMPPD_API int xmppd_roster_provide(xmppd_ctx *ctx, xmppd_roster_provider_fn fn);

/* ------------------------------------------------------------------ */
/* Service discovery, stream features, service domains                 */

/* Features and identities of the server's own JID (mod_disco collects
 * them), and features every account's bare JID has. */
XMPPD_API int xmppd_disco_feature(xmppd_ctx *ctx, const char *ns);
XMPPD_API int xmppd_disco_account_feature(xmppd_ctx *ctx, const char *ns);
XMPPD_API int xmppd_disco_identity(xmppd_ctx *ctx, const char *category, const char *type,
    const char *name);
/* Iterators for whoever answers disco#info (any thread). */
XMPPD_API void xmppd_disco_foreach_feature(int account, void (*fn)(const char *ns, void *ud),
    void *ud);
XMPPD_API void xmppd_disco_foreach_identity(void (*fn)(const char *category,
    const char *type, const char *name, void *ud), void *ud);

/* A stream feature offered to clients: el is copied into the features
 * after authentication (authenticated = 1) or before it (0). */
XMPPD_API int xmppd_stream_feature(xmppd_ctx *ctx, const xmppd_elem *el, int authenticated);

/*
 * Claims a domain (e.g. "conference.example.org"): every stanza routed to
 * it goes to fn, on the worker its 'to' bare JID hashes to, so that one
 * entity's stanzas are handled in order on one thread.
 */
typedef void (*xmppd_service_fn)(xmppd_elem *stanza, const xmppd_jid *from,
    const xmppd_jid *to, void *ud);
XMPPD_API int xmppd_service_register(xmppd_ctx *ctx, const char *domain,
    xmppd_service_fn fn, void *ud);
/* Service domains registered, then the domains of the external components
 * (XEP-0114) the configuration has, connected or not (for disco#items);
 * any thread. */
XMPPD_API void xmppd_service_foreach(void (*fn)(const char *domain, void *ud), void *ud);

/* ------------------------------------------------------------------ */
/* Routing (any thread)                                                */

/* Routes stanza by its 'to' (RFC 6120 10); 'from' must be set. The core
 * takes its own reference. */
XMPPD_API void xmppd_route(xmppd_elem *stanza);
/* (ABI 1.4) The same without filter_packet, for a stanza that has been
 * through it already and was held (mod_offline's message taken back for
 * a session that came online): routed again, the filters would archive,
 * carbon-copy and push it a second time. */
XMPPD_API void xmppd_route_filtered(xmppd_elem *stanza);
/* Answers stanza with an error of condition to its sender (nothing for an
 * error or an IQ result). */
XMPPD_API void xmppd_bounce(const xmppd_elem *stanza, const char *condition, const char *text);
/* Calls fn with the last presence of every available resource of bare
 * (RFC 6121 4.3.2: what answers a probe). Returns how many. Any thread;
 * presence is borrowed for the call. */
XMPPD_API size_t xmppd_user_presences(const xmppd_jid *bare,
    void (*fn)(const xmppd_elem *presence, void *ud), void *ud);
/* Sends a copy of stanza, 'to' set to each resource, to every session of
 * bare (available ones only if available_only). Returns how many. */
XMPPD_API size_t xmppd_send_to_resources(const xmppd_jid *bare, const xmppd_elem *stanza,
    int available_only);
XMPPD_API int xmppd_is_local_host(const char *domain);
/* (ABI 1.6) Calls fn with each host the configuration serves (prepared:
 * nameprep'd), in the configuration's order; returns how many. For modules
 * that serve a domain per host (pubsub.HOST). Any thread. */
XMPPD_API size_t xmppd_host_foreach(void (*fn)(const char *host, void *ud), void *ud);

/* (ABI 1.4) What the session manager knows of each resource of an
 * account, for modules that act for resources on other workers (carbons,
 * push). flags: the bits modules set on their sessions
 * (xmppd_session_set_flags) and the core's below. */
enum {
	XMPPD_RES_CARBONS = 1u << 0,    /* mod_carbons: enabled (XEP-0280) */
	XMPPD_RES_INACTIVE = 1u << 1,   /* mod_csi: the client said <inactive/> */
	XMPPD_RES_PUSH = 1u << 2,       /* mod_push: a registration (XEP-0357) */
	/* bits 3-15: for modules; 16-31: the core's */
	XMPPD_RES_SM = 1u << 16,        /* stream management enabled (XEP-0198) */
	XMPPD_RES_DETACHED = 1u << 17,  /* no connection: waiting for a resumption */
};
struct xmppd_resource {
	const char *resource;
	const char *full;               /* bare/resource */
	int available;                  /* sent available presence */
	int priority;
	unsigned flags;
	/* Monotonic ms (xmppd_now_ms) the server's oldest unanswered <r/> to
	 * it went out (XEP-0198 4), 0 if none. */
	uint64_t ack_wait_since_ms;
};
/* Calls fn for every bound resource of bare (outside the session table's
 * locks: fn may route). Returns how many. Any thread. */
XMPPD_API size_t xmppd_user_resources(const xmppd_jid *bare,
    void (*fn)(const struct xmppd_resource *r, void *ud), void *ud);
/* Delivers a copy of stanza to the bound resource full as the session
 * manager does (user_receive_packet runs, then the client gets it), without
 * routing it (filter_packet does not run): for copies a module makes for
 * one resource (carbons). 1 if the resource was bound, else 0. Any thread. */
XMPPD_API int xmppd_deliver(const xmppd_jid *full, const xmppd_elem *stanza);

/* ------------------------------------------------------------------ */
/* Entities (ABI 1.5)                                                  */

/*
 * An entity without a connection (a pubsub node, an account's PEP nodes,
 * a MUC room) lives on one worker, the one the core's placement names for
 * its key (DESIGN.md, "Threads"), and its state is touched by that worker
 * alone. Handlers that receive a stanza for it elsewhere (an IQ to an
 * account's bare JID runs on the sender's worker) pass it there.
 */
/* The calling worker's number (0 .. xmppd_worker_count()-1), or -1 when
 * not on a worker. Any thread. */
XMPPD_API int xmppd_worker_id(void);
XMPPD_API unsigned xmppd_worker_count(void);
/* The worker that owns the entity named key: a bare JID (a service's
 * addressee, as xmppd_service_register places it; an account's own
 * entities) or any string a module names its entities with. Fixed for
 * the life of the process. Any thread. */
XMPPD_API unsigned xmppd_entity_worker(const char *key);
/* Runs fn(ud) on the worker that owns key, after the tasks already posted
 * there (so what one worker posts for one entity runs in that order);
 * when that worker is the caller's, never before this returns (another
 * worker may run it at once: set up what fn reads before the call). Counts
 * as the module's store work: its unload waits until fn has run. Any
 * thread. 0, or -1 (no memory, the module is unloading: fn will not run). */
typedef void (*xmppd_entity_fn)(void *ud);
XMPPD_API int xmppd_entity_post(xmppd_ctx *ctx, const char *key, xmppd_entity_fn fn,
    void *ud);

/* ------------------------------------------------------------------ */
/* Entity capabilities (ABI 1.5; XEP-0115)                             */

/* Whether the resource full (local, or remote whose presence reached a
 * local account) advertised feature in its current presence's caps:
 * 1, 0, or -1 (no caps known for it, not verified yet, or no module keeps
 * caps). Any thread. */
XMPPD_API int xmppd_caps_has_feature(const xmppd_jid *full, const char *feature);
/* The module that keeps them (mod_caps) answers: any thread, without
 * blocking. One provider; removed when its module unloads. 0, or -1
 * (another module provides them). */
typedef int (*xmppd_caps_provider_fn)(const xmppd_jid *full, const char *feature);
XMPPD_API int xmppd_caps_provide(xmppd_ctx *ctx, xmppd_caps_provider_fn fn);

/* ------------------------------------------------------------------ */
/* Publish-subscribe (ABI 1.5; XEP-0060, XEP-0163)                     */

/*
 * A module acts on a node as a client would with an IQ: request is the
 * IQ's payload (<pubsub xmlns='http://jabber.org/protocol/pubsub'> or
 * '#owner', with one action: <publish>, <retract>, <items>, <subscribe>,
 * <configure>, <create>, <delete>...), set says whether the IQ would be a
 * set. service is pubsub.DOMAIN or an account's bare JID (PEP); actor is
 * the JID it acts as (its access is checked as for an IQ from it), or NULL
 * for the server (an owner of every node). To hear of changes, subscribe a
 * JID the module owns or hook pubsub_event.
 *
 * fn runs once, on the calling worker, never before this returns: with
 * condition NULL and the reply's payload (or NULL for an empty result), or
 * with the RFC 6120 condition and the XEP-0060 application condition
 * element (or NULL) of the error the IQ would get; both borrowed for the
 * call. Counts as the module's store work. 0, or -1 (not on a worker, no
 * memory: fn does not run). With no module keeping nodes, fn gets
 * "service-unavailable".
 */
typedef void (*xmppd_pubsub_fn)(const char *condition, const xmppd_elem *result, void *ud);
XMPPD_API int xmppd_pubsub_request(xmppd_ctx *ctx, const xmppd_jid *actor,
    const xmppd_jid *service, int set, const xmppd_elem *request, xmppd_pubsub_fn fn,
    void *ud);
/* The module that keeps nodes answers: provider(...) calls done(condition,
 * result, done_ud) exactly once, from any thread, during the call or
 * later (also for what is outstanding when it unloads: the asker's unload
 * waits for its answer); the core copies what it needs and calls the asker
 * on its worker. One provider; removed when its module unloads. 0, or -1. */
typedef void (*xmppd_pubsub_provider_fn)(const xmppd_jid *actor, const xmppd_jid *service,
    int set, const xmppd_elem *request, xmppd_pubsub_fn done, void *done_ud);
XMPPD_API int xmppd_pubsub_provide(xmppd_ctx *ctx, xmppd_pubsub_provider_fn fn);

/* ------------------------------------------------------------------ */
/* Push notifications (ABI 1.7; XEP-0357)                              */

/*
 * Wakes the devices of the local account user (a bare JID) for msg, a
 * message that was not sent to the account but concerns it (mod_muc: a
 * mention in a room the member is not in): every push registration of the
 * account is notified as for a message worth a notification while its
 * device sleeps (the sender is msg's 'from'; counted, rate-limited and
 * with or without the body as the provider's options say), whether or
 * not its session is awake, since that session did not get msg. Returns
 * how many notifications went (0: none, e.g. no registration, or the rate
 * limit), or -1 when no module provides push or an argument is missing.
 * Any thread (on a worker the app servers' errors are heard).
 */
XMPPD_API int xmppd_push_notify(xmppd_ctx *ctx, const xmppd_jid *user, const xmppd_elem *msg);
/* The module that keeps registrations (mod_push) answers them: without
 * blocking, from any thread. One provider; removed when its module
 * unloads. 0, or -1 (another module provides push). */
typedef int (*xmppd_push_provider_fn)(const xmppd_jid *user, const xmppd_elem *msg);
XMPPD_API int xmppd_push_provide(xmppd_ctx *ctx, xmppd_push_provider_fn fn);

/* ------------------------------------------------------------------ */
/* Control commands (xmppctl)                                          */

/*
 * Adds `xmppctl NAME ARGS...`. fn runs on the main thread with argv[0] ==
 * name; it returns 0 with its output (a malloc'd string, or NULL) in
 * *out_r, or -1 with a malloc'd message in *out_r. usage is shown in
 * errors and help.
 */
typedef int (*xmppd_ctl_fn)(int argc, char **argv, char **out_r, void *ud);
XMPPD_API int xmppd_ctl_register(xmppd_ctx *ctx, const char *name, const char *usage,
    xmppd_ctl_fn fn, void *ud);

/* ------------------------------------------------------------------ */
/* HTTP handlers (ABI 1.3; doc/modules.md, "HTTP")                      */

/*
 * Serves requests on the HTTP listeners (listen with module: http) whose
 * path is path, or starts with it when it ends in '/'. fn runs on the
 * worker of the request's connection and must answer it before it
 * returns (xmppd_http_respond); the request is valid until then. A path
 * already served (by the core: /xmpp-websocket, /http-bind,
 * /.well-known/host-meta, or another module) is refused (-1). Removed when
 * the module unloads.
 */
typedef void (*xmppd_http_fn)(xmppd_http_req *req, void *ud);
XMPPD_API int xmppd_http_register(xmppd_ctx *ctx, const char *path, xmppd_http_fn fn,
    void *ud);
XMPPD_API const char *xmppd_http_method(const xmppd_http_req *req);  /* "GET" */
XMPPD_API const char *xmppd_http_path(const xmppd_http_req *req);
XMPPD_API const char *xmppd_http_query(const xmppd_http_req *req);   /* or NULL */
/* A header's value (case-blind name), or NULL. */
XMPPD_API const char *xmppd_http_header(const xmppd_http_req *req, const char *name);
XMPPD_API const void *xmppd_http_body(const xmppd_http_req *req, size_t *len_r);
/* The client's address (after PROXY protocol / trusted X-Forwarded-For). */
XMPPD_API const struct sockaddr *xmppd_http_client(const xmppd_http_req *req);
/* Over TLS, or on a listener with secure: true. */
XMPPD_API int xmppd_http_secure(const xmppd_http_req *req);
/* The base for URLs handed out ("https://chat.example.org"): the
 * configured public_base_url, else the request's scheme and Host. */
XMPPD_API const char *xmppd_http_base_url(xmppd_http_req *req);
/* The answer: status, Content-Type (or NULL), the body and extra header
 * lines ("Name: value\r\n" each, or NULL). */
XMPPD_API void xmppd_http_respond(xmppd_http_req *req, int status, const char *content_type,
    const void *body, size_t len, const char *headers);

/*
 * (ABI 1.8) Streamed request bodies and file answers, for bodies and
 * files too large for memory (mod_http_upload).
 *
 * xmppd_http_register_stream serves path like xmppd_http_register, but a
 * request with a body reaches fn after its head, before its body is read
 * (http_max_body_size does not apply: the module bounds it). fn then
 * answers at once (a refusal such as 403 or 413: the body is not read and
 * the connection closes after the answer) or takes the body with
 * xmppd_http_stream. A request without a body reaches fn complete, as
 * with xmppd_http_register.
 */
XMPPD_API int xmppd_http_register_stream(xmppd_ctx *ctx, const char *path, xmppd_http_fn fn,
    void *ud);
struct xmppd_http_body_ops {
	/* The next piece of the body (at most some tens of KiB): 0 to go
	 * on, or an HTTP status (4xx, 5xx) that refuses the request (the
	 * core answers with it and closes; abort follows). */
	int (*chunk)(xmppd_http_req *req, const void *p, size_t n, void *ud);
	/* The whole body came: answer req now (xmppd_http_respond). */
	void (*end)(xmppd_http_req *req, void *ud);
	/* req goes without end (refused, a limit, the client went): clean
	 * up; the last call with req, which must not be answered. */
	void (*abort)(xmppd_http_req *req, void *ud);
};
/* Takes req's body (from fn, before it returns): chunk for each piece as
 * it is read, then end or abort, on the request's worker. A client that
 * sent "Expect: 100-continue" gets "100 Continue" now (RFC 9110 10.1.1).
 * ops and ud must live until end or abort. For a request that was
 * complete when fn ran, chunk runs for what was buffered and end at once. */
XMPPD_API void xmppd_http_stream(xmppd_http_req *req, const struct xmppd_http_body_ops *ops,
    void *ud);
/* Answers req (GET or HEAD) with the file open on fd (taken: closed when
 * sent or on failure) of size bytes: 200, or for a GET with a single
 * Range 206 with Content-Range, or 416 with Content-Range: bytes STAR/SIZE
 * (RFC 9110 14). Content-Length and Accept-Ranges are added to headers.
 * The file is read as the client takes it: a large file is never in
 * memory. */
XMPPD_API void xmppd_http_respond_file(xmppd_http_req *req, int fd, uint64_t size,
    const char *content_type, const char *headers);
/* (ABI 1.8) The configuration's spool_dir (a new string: free it). Any
 * thread. */
XMPPD_API char *xmppd_spool_dir(void);

/* ------------------------------------------------------------------ */
/* Sessions (the session's worker, during a callback that handed it)   */

XMPPD_API const xmppd_jid *xmppd_session_jid(xmppd_session *s);
XMPPD_API int xmppd_session_available(xmppd_session *s);
XMPPD_API int xmppd_session_priority(xmppd_session *s);
XMPPD_API const struct sockaddr *xmppd_session_addr(xmppd_session *s);
/* Milliseconds since the client last sent anything. */
XMPPD_API uint64_t xmppd_session_idle_ms(xmppd_session *s);
/* Writes stanza to this client directly (no routing, no hooks). */
XMPPD_API void xmppd_session_send(xmppd_session *s, const xmppd_elem *stanza);
/* (ABI 1.4) Sets the bits of mask in the session's resource flags
 * (struct xmppd_resource) to those of value; bits 0-15 only. */
XMPPD_API void xmppd_session_set_flags(xmppd_session *s, unsigned mask, unsigned value);
XMPPD_API unsigned xmppd_session_flags(xmppd_session *s);
/* Ends the stream with a stream error (RFC 6120 4.9.3 condition). */
XMPPD_API void xmppd_session_close(xmppd_session *s, const char *condition, const char *text);

/* Per-session data slots (Dovecot's MODULE_CONTEXT): a module allocates a
 * slot at load and hangs its data on sessions; free_fn runs when the
 * session ends or the module unloads. */
XMPPD_API int xmppd_session_slot(xmppd_ctx *ctx);
XMPPD_API void *xmppd_session_get(xmppd_session *s, int slot);
XMPPD_API void xmppd_session_set(xmppd_session *s, int slot, void *data,
    void (*free_fn)(void *data));
/* Calls fn for every session of the calling worker. */
XMPPD_API void xmppd_session_foreach_local(void (*fn)(xmppd_session *s, void *ud), void *ud);

/* ------------------------------------------------------------------ */
/* Timers (Redis style: the callback returns its next delay)           */

/* Returns the delay in ms until the next run, or 0 to stop. */
typedef uint64_t (*xmppd_timer_fn)(void *ud);
/* A timer on the calling worker (on worker 0 when called from load). */
XMPPD_API xmppd_timer *xmppd_timer_add(xmppd_ctx *ctx, uint64_t delay_ms, xmppd_timer_fn fn,
    void *ud);
/* One timer on every worker (e.g. a sweep over xmppd_session_foreach_local). */
XMPPD_API int xmppd_timer_add_every_worker(xmppd_ctx *ctx, uint64_t delay_ms,
    xmppd_timer_fn fn, void *ud);
/* Cancels a timer (on its worker). Timers left are removed on unload;
 * once the unload has begun, xmppd_timer_add and _every_worker fail (NULL,
 * -1) and a timer handle may no longer be cancelled. */
XMPPD_API void xmppd_timer_del(xmppd_timer *t);
/* Milliseconds of a monotonic clock. */
XMPPD_API uint64_t xmppd_now_ms(void);

/* ------------------------------------------------------------------ */
/* Store: the asynchronous API (ABI 1.2)                               */

/*
 * What every module uses (doc/modules.md, "The store"). Operations complete
 * through a callback, so that a backend that answers later (PostgreSQL,
 * over the network) needs no change to a module; LMDB answers at once.
 *
 * Tables are named (your module's name or a prefix of it, at most 64
 * bytes); keys are 1 to 511 bytes (prefixes 0 to 511), built with
 * xmppd_store_key; values are any bytes.
 *
 * The contract, for every backend:
 *  - Call these only on a worker, from a callback the core runs there (a
 *    hook, an IQ or service handler, a timer, or one of these callbacks).
 *    Elsewhere (load, unload, reload, a control command: the main thread)
 *    they return -1 and nothing runs.
 *  - Every callback runs on the worker that made the call, from its event
 *    loop, and NEVER before the call has returned: state the caller sets
 *    up after the call is in place when the callback runs.
 *  - Every call that returned 0 completes exactly once, whatever happens
 *    (errors, shutdown): its get, row and done functions run.
 *  - Operations one worker submits take effect, and complete, in
 *    submission order: a get submitted after a batch sees the batch's
 *    writes, and callbacks run in the order the calls were made.
 *  - A batch is all or nothing, and durable when its done callback reports
 *    XMPPD_STORE_OK. Batches are independent: one that fails leaves
 *    nothing behind and does not fail the others. Writes of several
 *    batches are committed together (group commit: one transaction per
 *    loop iteration of the worker, not one per stanza), so a module never
 *    commits by itself.
 *  - Stanza order (RFC 6120 10.1): while operations that a stanza's
 *    handlers started (directly, or from those operations' callbacks) are
 *    pending, the stream that sent the stanza processes no further input;
 *    it resumes when the last of them has completed. A roster set followed
 *    by a presence on one stream: the presence is handled after the set's
 *    batch has completed. (Work started elsewhere, by the stanza's
 *    delivery on another worker or from a timer, does not hold it.)
 *  - Unload: the loader waits until every operation the module submitted
 *    has completed (and its callback returned) before it calls unload and
 *    unmaps the module; callbacks may run after the module's registrations
 *    are gone.
 *
 * What a callback may do:
 *  - get, row (of xmppd_store_ascan) and done callbacks run after the
 *    backend's work, with no transaction open: route, send, reply to an
 *    IQ (xmppd_iq_reply / xmppd_iq_error on an iq the handler kept a
 *    reference to: a deferred reply), start more asynchronous operations
 *    (they count against the same stream), use every other function.
 *    Never the synchronous xmppd_store_* below: they block the worker (on
 *    a backend that answers later, for a round trip).
 *  - The get and row functions of a batch (xmppd_batch_get / _scan) are
 *    steps: they run while the batch executes, inside its transaction
 *    (with LMDB, the worker holds the write lock). A step may only read
 *    what it is given, copy it, append ops to its batch (xmppd_batch_put,
 *    ... on the batch passed to it) and decide: return 0 to go on, < 0 to
 *    fail the batch (XMPPD_STORE_ABORTED), and for a row > 0 to skip the
 *    rest of the scan. It must not route, send, reply, or call anything
 *    that may touch the store; do that in the done callback.
 *
 * Pointers passed to callbacks (keys, values) are valid during the call
 * only. Arguments to these functions are copied: the caller's buffers may
 * be freed when the call returns. Keep no xmppd_session pointer for a
 * callback (the session may end meanwhile); keep a JID and route.
 */
enum xmppd_store_status {
	XMPPD_STORE_OK = 0,
	XMPPD_STORE_NOT_FOUND = 1,  /* a get: no such key */
	XMPPD_STORE_ERROR = -1,     /* the backend failed (I/O, full, ...) */
	XMPPD_STORE_INVALID = -2,   /* a bad table name, key or prefix */
	XMPPD_STORE_ABORTED = -3,   /* a step of the batch returned < 0 */
};

/* A get's result: status OK with the value, or NOT_FOUND / an error with
 * NULL, 0. */
typedef void (*xmppd_store_get_fn)(int status, const void *val, size_t vlen, void *ud);
/* The end of a scan or a batch. */
typedef void (*xmppd_store_done_fn)(int status, void *ud);
/* A batch's steps (see above): b is the batch, to append ops to. */
typedef int (*xmppd_batch_get_fn)(xmppd_batch *b, int status, const void *val, size_t vlen,
    void *ud);
typedef int (*xmppd_batch_row_fn)(xmppd_batch *b, const void *key, size_t klen,
    const void *val, size_t vlen, void *ud);
/* The row function of xmppd_store_ascan (and of the synchronous
 * xmppd_store_scan): non-zero stops. */
typedef int (*xmppd_scan_fn)(void *ud, const void *key, size_t klen, const void *val,
    size_t vlen);

/* One key. fn runs once. 0, or -1 (not on a worker: nothing runs). */
XMPPD_API int xmppd_store_aget(xmppd_ctx *ctx, const char *table, const void *key,
    size_t klen, xmppd_store_get_fn fn, void *ud);
/* Every key starting with prefix, in key order: row for each until it
 * returns non-zero (the backend may have read further), then done (may be
 * NULL) with OK or an error (no rows are given after an error). 0 or -1. */
XMPPD_API int xmppd_store_ascan(xmppd_ctx *ctx, const char *table, const void *prefix,
    size_t plen, xmppd_scan_fn row, xmppd_store_done_fn done, void *ud);
/* (ABI 1.4) Keys starting with prefix from start (inclusive; slen 0: the
 * first key, or the last when reverse), forward in key order or backward
 * (reverse), at most limit rows (0: all): row for each until it returns
 * non-zero, then done. Only the rows asked for are read, so a page of an
 * archive of millions costs a page. 0 or -1. */
XMPPD_API int xmppd_store_arange(xmppd_ctx *ctx, const char *table, const void *prefix,
    size_t plen, const void *start, size_t slen, int reverse, size_t limit,
    xmppd_scan_fn row, xmppd_store_done_fn done, void *ud);

/*
 * A batch: writes and reads that run in order, atomically, when submitted.
 * Build it with the functions below (each copies its arguments and returns
 * 0, or -1 for a bad argument or no memory: the batch then completes with
 * XMPPD_STORE_INVALID or XMPPD_STORE_ERROR without running), then submit
 * it; the core frees it after its done callback. A get or scan inside a
 * batch sees the batch's earlier writes. From a step, the same functions
 * append to the running batch (-1 then only says the op was not added).
 */
XMPPD_API xmppd_batch *xmppd_batch_new(xmppd_ctx *ctx);       /* NULL: no memory */
XMPPD_API int xmppd_batch_put(xmppd_batch *b, const char *table, const void *key,
    size_t klen, const void *val, size_t vlen);
/* An absent key is not an error. */
XMPPD_API int xmppd_batch_del(xmppd_batch *b, const char *table, const void *key,
    size_t klen);
XMPPD_API int xmppd_batch_del_prefix(xmppd_batch *b, const char *table, const void *prefix,
    size_t plen);
/* fn runs while the batch executes, with OK and the value or NOT_FOUND. */
XMPPD_API int xmppd_batch_get(xmppd_batch *b, const char *table, const void *key,
    size_t klen, xmppd_batch_get_fn fn, void *ud);
/* fn runs for each row with the prefix, in key order, while the batch
 * executes. */
XMPPD_API int xmppd_batch_scan(xmppd_batch *b, const char *table, const void *prefix,
    size_t plen, xmppd_batch_row_fn fn, void *ud);
/* Submits b; done (may be NULL) runs once with OK (durable), ABORTED,
 * INVALID or ERROR (then nothing of b was written). 0, or -1 (not on a
 * worker: nothing runs, b is freed). */
XMPPD_API int xmppd_batch_submit(xmppd_batch *b, xmppd_store_done_fn done, void *ud);
/* Drops a batch that was not submitted. NULL ok. */
XMPPD_API void xmppd_batch_free(xmppd_batch *b);

/* ------------------------------------------------------------------ */
/* Store: synchronous (deprecated for modules)                         */

/*
 * The ABI 1.0 store calls, kept so that older modules load. Deprecated for
 * modules: they block the calling worker until the store answers, which a
 * backend across a network makes long, and they bypass the stream order
 * above. Never call them from the asynchronous API's callbacks (a step
 * holds the worker's write transaction: a deadlock).
 *
 * Any thread. A write transaction is durable once xmppd_store_commit
 * returns 0. Keep transactions short and never send, route or close a
 * session while one is open: that can run other modules' hooks, which open
 * their own (LMDB has one writer at a time: a deadlock).
 */
XMPPD_API xmppd_txn *xmppd_store_begin(int write);
XMPPD_API int xmppd_store_commit(xmppd_txn *txn);   /* 0 or -1; frees txn */
XMPPD_API void xmppd_store_abort(xmppd_txn *txn);   /* frees txn; NULL ok */
/* 0 and the value (valid until the transaction ends), 1 absent, -1 error. */
XMPPD_API int xmppd_store_get(xmppd_txn *txn, const char *table, const void *key, size_t klen,
    const void **val_r, size_t *vlen_r);
XMPPD_API int xmppd_store_put(xmppd_txn *txn, const char *table, const void *key, size_t klen,
    const void *val, size_t vlen);
/* 0 deleted, 1 absent, -1 error. */
XMPPD_API int xmppd_store_del(xmppd_txn *txn, const char *table, const void *key, size_t klen);
/* Every key starting with prefix, in order, until fn returns non-zero
 * (returned). 0 at the end, -1 on error. fn must not write the table. */
XMPPD_API int xmppd_store_scan(xmppd_txn *txn, const char *table, const void *prefix,
    size_t plen, xmppd_scan_fn fn, void *ud);
XMPPD_API long xmppd_store_del_prefix(xmppd_txn *txn, const char *table, const void *prefix,
    size_t plen);
/* (Both APIs.) Builds a key from strings, each followed by a NUL byte
 * (unambiguous), into buf. Returns the length, or 0 if it does not fit (LMDB keys are at
 * most 511 bytes). The list ends with (char *)NULL. */
XMPPD_API size_t xmppd_store_key(char *buf, size_t size, ...);
/*
 * (ABI 1.1) Declares table a user table: every key in it starts with
 * xmppd_store_key(host, node, ...) of the account it belongs to. When an
 * account is removed, the core deletes its rows from every user table in
 * the same transaction as the account itself, also for tables of modules
 * not loaded then (the declaration is kept in the store). Call it in
 * load(), once per table. 0 or -1.
 */
XMPPD_API int xmppd_store_user_table(xmppd_ctx *ctx, const char *table);

/* ------------------------------------------------------------------ */
/* Accounts (any thread; node and host prepared)                       */

XMPPD_API int xmppd_user_exists(const char *node, const char *host);
/* Create runs register_user after the account is made; remove runs
 * remove_user before the account and its user tables' rows are deleted
 * (in one transaction), then closes its sessions. 0 or -1 with *error_r
 * ("exists", "not found", ...). */
XMPPD_API int xmppd_user_create(const char *node, const char *host, const char *password,
    const char **error_r);
XMPPD_API int xmppd_user_set_password(const char *node, const char *host,
    const char *password, const char **error_r);
XMPPD_API int xmppd_user_remove(const char *node, const char *host, const char **error_r);
/* 1 right, 0 wrong or no account. */
XMPPD_API int xmppd_user_check_password(const char *node, const char *host,
    const char *password);

/* Access rules of the configuration (doc/configuration.md): 1 allow, 0 deny.
 * user and addr may be NULL. */
XMPPD_API int xmppd_access_check(const char *rule, const xmppd_jid *user,
    const struct sockaddr *addr);

/* (ABI 1.8) Whether the acl of the configuration named acl (doc/
 * configuration.md, "Acls") matches user or addr (either may be NULL):
 * 1 or 0 (also for an acl that is not defined). Any thread. */
XMPPD_API int xmppd_acl_match(const char *acl, const xmppd_jid *user,
    const struct sockaddr *addr);
/* (ABI 1.8) Calls fn with the node of every account of host (prepared), in
 * key order; returns how many, or -1 on a store error. A bounded read of
 * the accounts table, like xmppd_user_exists. Any thread. */
XMPPD_API long xmppd_user_foreach(const char *host, void (*fn)(const char *node, void *ud),
    void *ud);
/* (ABI 1.8) Calls fn with the full JID of every bound session of the
 * server (host NULL) or of host, and whether it is available. fn runs with
 * the session table's lock held: it must only copy what it is given (no
 * routing, no other call into the server). Returns how many. Any thread. */
XMPPD_API size_t xmppd_sessions_foreach(const char *host,
    void (*fn)(const char *full, int available, void *ud), void *ud);
/* (ABI 1.8) Ends every session of j (a bare JID: all its resources; a full
 * JID: that one) with a stream error (RFC 6120 4.9.3); condition and text
 * must be string constants. Returns how many were asked to close. Any
 * thread. */
XMPPD_API size_t xmppd_user_kick(const xmppd_jid *j, const char *condition,
    const char *text);

/* ------------------------------------------------------------------ */
/* Elements (any thread for a tree the caller owns)                    */

/* A new tree (one reference). ns NULL = the stream's content namespace
 * (jabber:client / jabber:server), which stanzas and their plain children
 * (<body/>, <error/> ...) use. */
XMPPD_API xmppd_elem *xmppd_elem_new(const char *ns, const char *name);
XMPPD_API xmppd_elem *xmppd_elem_add_child(xmppd_elem *parent, const char *ns, const char *name);
XMPPD_API void xmppd_elem_add_text(xmppd_elem *parent, const char *text, size_t len);
/* value NULL removes the attribute. "xml:lang" for the XML namespace. */
XMPPD_API void xmppd_elem_set_attr(xmppd_elem *e, const char *name, const char *value);
/* Adds a deep copy of child (from any tree) at the end of parent. */
XMPPD_API void xmppd_elem_append_copy(xmppd_elem *parent, const xmppd_elem *child);
XMPPD_API void xmppd_elem_remove_child(xmppd_elem *parent, xmppd_elem *child);
XMPPD_API xmppd_elem *xmppd_elem_copy(const xmppd_elem *e);     /* new */
XMPPD_API xmppd_elem *xmppd_elem_ref(xmppd_elem *root);
XMPPD_API void xmppd_elem_unref(xmppd_elem *root);               /* NULL ok */

XMPPD_API const char *xmppd_elem_name(const xmppd_elem *e);
XMPPD_API const char *xmppd_elem_ns(const xmppd_elem *e);       /* NULL = content ns */
XMPPD_API const char *xmppd_elem_attr(const xmppd_elem *e, const char *name);
XMPPD_API xmppd_elem *xmppd_elem_child(const xmppd_elem *e, const char *ns, const char *name);
XMPPD_API xmppd_elem *xmppd_elem_first_child(const xmppd_elem *e);
XMPPD_API xmppd_elem *xmppd_elem_next_sibling(const xmppd_elem *e);
XMPPD_API const char *xmppd_elem_text(xmppd_elem *e);           /* "" if none */
XMPPD_API const char *xmppd_elem_child_text(xmppd_elem *e, const char *ns, const char *name);

/* Serializes (content namespace written as jabber:client) into a
 * malloc'd string the caller frees with free(). */
XMPPD_API char *xmppd_elem_to_string(const xmppd_elem *e, size_t *len_r);
/* Parses one element from text (as written by xmppd_elem_to_string; for
 * what a module stored). New tree, or NULL if it is not well-formed. */
XMPPD_API xmppd_elem *xmppd_elem_parse(const char *text, size_t len);

/* Stanzas. */
/* A new error reply to st (RFC 6120 8.3): NULL for an error or IQ result. */
XMPPD_API xmppd_elem *xmppd_stanza_error(const xmppd_elem *st, const char *condition,
    const char *text);
/* "message", "presence", "iq" or NULL; the type with RFC defaults. */
XMPPD_API const char *xmppd_stanza_kind(const xmppd_elem *st);
XMPPD_API const char *xmppd_stanza_type(const xmppd_elem *st);
/* A presence's priority as the core reads it (RFC 6121 4.7.2.3): -128 to
 * +127, 0 when absent or invalid. */
XMPPD_API int xmppd_presence_priority(xmppd_elem *presence);

/* ------------------------------------------------------------------ */
/* JIDs (any thread)                                                   */

/* New prepared JID, or NULL if invalid; free with xmppd_jid_free. */
XMPPD_API xmppd_jid *xmppd_jid_parse(const char *s);
XMPPD_API xmppd_jid *xmppd_jid_make(const char *node, const char *domain, const char *resource);
XMPPD_API xmppd_jid *xmppd_jid_copy(const xmppd_jid *j);
XMPPD_API void xmppd_jid_free(xmppd_jid *j);                   /* NULL ok */
XMPPD_API const char *xmppd_jid_node(const xmppd_jid *j);      /* NULL if none */
XMPPD_API const char *xmppd_jid_domain(const xmppd_jid *j);
XMPPD_API const char *xmppd_jid_resource(const xmppd_jid *j);  /* NULL if none */
XMPPD_API const char *xmppd_jid_bare(const xmppd_jid *j);
XMPPD_API const char *xmppd_jid_full(const xmppd_jid *j);
/* malloc'd prepared node, or NULL if invalid. */
XMPPD_API char *xmppd_nodeprep(const char *s);

/* ------------------------------------------------------------------ */
/* The server                                                          */

XMPPD_API const char *xmppd_version(void);
/* Unix time the server started. */
XMPPD_API int64_t xmppd_start_time(void);

#ifdef __cplusplus
}
#endif

#endif
