/*
 * pubsub.h - mod_pubsub's units. One engine keeps nodes, items and
 * subscriptions: pubsub_engine.c (requests, the per-worker node tables,
 * loading, the queue of each node), pubsub_ops.c (create, configure,
 * delete, purge, publish, retract), pubsub_subs.c (access models,
 * subscriptions, items, affiliations, disco of a node, the dispatch),
 * pubsub_form.c (configuration forms), pubsub_store.c (keys, records).
 * Its front ends: mod_pubsub.c (the XEP-0060 service on pubsub.DOMAIN,
 * the ABI provider, xmppctl pubsub) and pubsub_pep.c (XEP-0163 PEP).
 *
 * A *service* is a JID with a kind: a pubsub service domain, or an
 * account's bare JID (PEP). A node is named by (service, node); it lives
 * on the worker xmppd_entity_worker() names for its key (ps_node_key):
 * "SERVICE/NODE" for a service node, the account's bare JID for every PEP
 * node of an account. Its state is touched by that worker only (one
 * table of nodes per worker): a request is handed there with
 * xmppd_entity_post before anything reads the node.
 *
 * Tables (values start with a version byte):
 *   mod_pubsub_nodes  key(service, node)            -> node record
 *   mod_pubsub_subs   key(service, node, jid)       -> subscription
 *   mod_pubsub_items  key(service, node) + seq(8 BE) -> item record
 * so that a node's items are in publish order (seq grows) and a range
 * read backwards gives the newest first; and for PEP the same in
 * mod_pubsub_pep_*, with key(host, user) in place of key(service): user
 * tables (xmppd_store_user_table), whose rows go with the account.
 */
#ifndef PUBSUB_H
#define PUBSUB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <xmppd.h>

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_OWNER NS_PUBSUB "#owner"
#define NS_PUBSUB_EVENT NS_PUBSUB "#event"
#define NS_PUBSUB_ERRORS NS_PUBSUB "#errors"
#define NS_XDATA "jabber:x:data"
#define NS_RSM "http://jabber.org/protocol/rsm"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

#define T_NODES "mod_pubsub_nodes"
#define T_SUBS "mod_pubsub_subs"
#define T_ITEMS "mod_pubsub_items"
/* PEP's (user tables: rows go with the account). */
#define T_PEP_NODES "mod_pubsub_pep_nodes"
#define T_PEP_SUBS "mod_pubsub_pep_subs"
#define T_PEP_ITEMS "mod_pubsub_pep_items"

#define PS_KEY_MAX 512
#define PS_NODE_NAME_MAX 256

enum ps_kind { PS_SERVICE = 0, PS_PEP = 1 };

/* XEP-0060 4.5 */
enum ps_access { PS_OPEN, PS_PRESENCE, PS_ROSTER, PS_WHITELIST, PS_AUTHORIZE };
/* pubsub#publish_model */
enum ps_pubmodel { PS_PUB_PUBLISHERS, PS_PUB_SUBSCRIBERS, PS_PUB_OPEN };
/* XEP-0060 4.1 affiliations */
enum ps_aff { PS_AFF_NONE, PS_AFF_OWNER, PS_AFF_PUBLISHER, PS_AFF_PUBLISH_ONLY,
	PS_AFF_MEMBER, PS_AFF_OUTCAST };
/* XEP-0060 4.2 subscription states */
enum ps_substate { PS_SUB_NONE, PS_SUB_PENDING, PS_SUB_UNCONFIGURED, PS_SUB_SUBSCRIBED };
enum ps_sendlast { PS_LAST_NEVER, PS_LAST_ON_SUB, PS_LAST_ON_SUB_AND_PRESENCE };

#define PS_MAX_ITEMS_MAX (-1L)  /* max_items "max": the service's cap */

struct ps_config {
	int access;
	int publish_model;
	long max_items;             /* or PS_MAX_ITEMS_MAX */
	int persist_items;
	int deliver_payloads;
	int deliver_notifications;
	int notify_config, notify_delete, notify_retract, notify_sub;
	int send_last;
	int headline;               /* pubsub#notification_type headline (else normal) */
	long max_payload_size;
	char *title;
	char *description;
	char *payload_type;         /* pubsub#type */
};

struct ps_aff_entry {
	char *jid;                  /* bare */
	int aff;
};

struct ps_sub {
	char *jid;                  /* as subscribed (bare or full) */
	int state;
	char subid[17];
	/* Subscription options (XEP-0060 6.3), parsed: zero is the
	 * default. pubsub#deliver false: no notifications. */
	int no_deliver;
};

struct ps_item {
	uint64_t seq;
	char *id;
};

struct ps_req;

enum ps_node_state { PS_LOADING, PS_READY };

struct ps_node {
	struct ps_node *hnext;
	char *service, *name, *key;
	int kind;
	int state;
	int exists;
	char *creator;              /* bare JID, "" for the server */
	struct ps_config cfg;
	struct ps_aff_entry *affs;
	size_t naffs;
	struct ps_sub *subs;
	size_t nsubs, subs_cap;     /* subs grows by doubling (ps_sub_room) */
	struct ps_item *items;      /* oldest first */
	size_t nitems, items_cap;
	uint64_t next_seq;
	char *last_xml;             /* the newest item, serialized; or NULL */
	size_t last_len;
	/* Requests in arrival order; the head one runs (busy) until done. */
	struct ps_req *qhead, *qtail;
	size_t nqueued;             /* on the queue (not the running one) */
	int busy;
	/* Its service went (ps_forget_service) while it was busy or had
	 * requests queued: cleared before the next one runs. */
	int forgotten;
	int draining;
	int load_status;
	uint64_t used_ms;           /* when a request last came (xmppd_now_ms) */
};

/* Module-wide settings, read-only after load. */
struct ps_mod {
	xmppd_ctx *ctx;
	char **services;            /* the service domains */
	size_t nservices;
	const char *name;
	const char *access_create;  /* "local" or an access rule */
	long max_item_size;
	long max_items_per_node;
	long default_max_items;
	long max_nodes_per_user;
	long max_nodes;
	long max_pep_nodes;         /* PEP nodes of one account, 0: no limit */
	long max_subscriptions_per_node;
	long max_subscriptions_per_jid;     /* of one bare JID on one node, 0: no limit */
	long max_affiliations_per_node;     /* 0: no limit */
	long max_items_page_bytes;  /* payload bytes of one <items/> answer, 0: no limit */
	long max_queued_requests;   /* waiting on one node, 0: no limit */
	long shaper_rate;           /* publishes per second */
	long shaper_burst;
	const char *shaper_error;   /* "resource-constraint" or "policy-violation" */
	struct ps_table *tables;    /* one per worker */
	unsigned nworkers;
};

/* How a request is answered: an IQ, or a module's callback (ABI). */
struct ps_req {
	struct ps_req *next;
	struct ps_mod *m;
	xmppd_jid *actor;           /* bare; NULL: the server */
	xmppd_jid *actor_full;      /* as it came; NULL: the server */
	char *service;
	char *node;                 /* NULL: the request names none */
	char *key;
	int kind;
	int set;
	xmppd_elem *payload;        /* the <pubsub>/<query>/form, owned */
	xmppd_elem *iq;             /* a reference, or NULL */
	xmppd_pubsub_fn done;
	void *done_ud;
	int disco;                  /* 1 disco#info, 2 disco#items */
	int authorize;              /* an owner's answer to 8.6 (payload is the form) */
	int sendlast;               /* PEP: the last item to actor_full (4.3.2) */
	int pep_counted;            /* PEP auto-create: the account's nodes were counted */
	char *drop_jid;             /* a removed account's bare JID: its rights go (ps_drop_account) */
	int recheck;                /* the access model became presence/roster: re-check subscribers */
	/* Scratch of the operation that runs. */
	struct ps_node *n;
	void *op;
	void (*op_free)(void *op);  /* frees what op holds (not op itself) */
};

/* ---- mod_pubsub.c ---- */
extern struct ps_mod ps_module;
/* A <pubsub/> or <pubsub#owner/> request for service, from an IQ (iq) or
 * a module (done). */
void ps_handle_pubsub(const xmppd_jid *actor, const char *service, int set,
    const xmppd_elem *payload, const xmppd_elem *iq, xmppd_pubsub_fn done, void *done_ud);
uint64_t ps_hash_str(const char *s);

/* ---- pubsub_pep.c ---- */
int ps_pep_load(xmppd_ctx *ctx);
void ps_pep_free(void);

/* ---- pubsub_form.c ---- */
void ps_config_default(struct ps_mod *m, struct ps_config *c, int kind);
void ps_config_free(struct ps_config *c);
int ps_config_copy(struct ps_config *dst, const struct ps_config *src);
/* Applies a submitted pubsub#node_config form (XEP-0060 8.2.4) to c.
 * 0, or -1 with *cond_r (and *why_r). */
int ps_config_apply(struct ps_mod *m, struct ps_config *c, xmppd_elem *x,
    const char **cond_r, const char **why_r);
/* The fields of a publish-options form as the configuration of a node
 * made by the publish (XEP-0163 3): -1 for an unknown field or bad value. */
int ps_config_apply_fields(struct ps_mod *m, struct ps_config *c, xmppd_elem *x);
/* XEP-0060 7.1.5: 0 when every field of the publish-options form matches
 * c, -1 otherwise. */
int ps_config_preconditions(struct ps_mod *m, const struct ps_config *c, xmppd_elem *x);
/* The node_config form (type form) with c's values, added to parent. */
void ps_config_form(const struct ps_config *c, xmppd_elem *parent, const char *form_type,
    const char *ftype);
/* The subscribe_options form (XEP-0060 16.4.2) with s's values (NULL:
 * the defaults), of type ftype, added to parent. */
void ps_subopts_form(const struct ps_sub *s, xmppd_elem *parent, const char *ftype);
/* Applies a submitted subscribe_options form to s: 0, or -1 for
 * invalid-options (6.3.6), s unchanged. */
int ps_subopts_apply(struct ps_sub *s, xmppd_elem *x);
/* The pubsub#meta-data form (XEP-0060 5.4) for n, added to parent. */
void ps_meta_form(const struct ps_node *n, xmppd_elem *parent);
const char *ps_access_name(int a);
const char *ps_aff_name(int a);
int ps_aff_parse(const char *s);
const char *ps_sub_name(int s);
/* A form's field value, or NULL. */
const char *ps_form_value(xmppd_elem *x, const char *var);
const char *ps_form_type(xmppd_elem *x);

/* ---- pubsub_store.c ---- */
/* Whether service is an account's bare JID (PEP). */
int ps_is_pep(const char *service);
/* The table for service: T_NODES etc., or their PEP twins. */
const char *ps_table(const char *service, const char *table);
/* The prefix of every key of service. */
size_t ps_key_service(char *buf, const char *service);
size_t ps_key_node(char *buf, const char *service, const char *node);
size_t ps_key_sub(char *buf, const char *service, const char *node, const char *jid);
size_t ps_key_item(char *buf, const char *service, const char *node, uint64_t seq);
uint64_t ps_key_seq(const void *key, size_t klen);
/* The node record (config, creator, affiliations), malloc'd. */
char *ps_node_record(const struct ps_node *n, size_t *len_r);
int ps_node_parse(struct ps_mod *m, struct ps_node *n, const void *val, size_t vlen);
/* The creator in a node record, copied into buf (for counting). */
int ps_node_record_creator(const void *val, size_t vlen, char *buf, size_t size);
char *ps_sub_record(const struct ps_sub *s, size_t *len_r);
int ps_sub_parse(struct ps_sub *s, const char *jid, const void *val, size_t vlen);
/* An item record: version, publisher NUL, id NUL, the item's XML. */
char *ps_item_record(const char *publisher, const char *id, const char *xml, size_t xlen,
    size_t *len_r);
int ps_item_parse(const void *val, size_t vlen, const char **publisher_r, const char **id_r,
    const char **xml_r, size_t *xlen_r);

/* ---- pubsub_engine.c ---- */
int ps_engine_init(struct ps_mod *m);
/* On the main thread after every worker stopped running the module:
 * answers what is queued (service-unavailable) and frees the nodes. */
void ps_engine_free(struct ps_mod *m);
/* Frees the calling worker's nodes idle for idle_ms (a timer on every
 * worker): a node is loaded again from the store when next asked for. */
void ps_engine_sweep(struct ps_mod *m, uint64_t idle_ms);
/* The key a node lives by (placement), malloc'd. */
char *ps_node_key(int kind, const char *service, const char *node);
/* Hands r to its node's worker (r->key) and runs it there. 0 or -1. */
int ps_submit(struct ps_req *r);
/* Frees a request not submitted or done. */
void ps_req_free(struct ps_req *r);
/* A new request: actor_full may be NULL (the server). */
struct ps_req *ps_req_new(struct ps_mod *m, const xmppd_jid *actor_full, const char *service,
    const char *node, int set, const xmppd_elem *payload);
/* Answers. ps_reply takes payload. app: an element of #errors or NULL;
 * feature: for app "unsupported". */
void ps_reply(struct ps_req *r, xmppd_elem *payload_take);
void ps_error(struct ps_req *r, const char *cond, const char *app, const char *feature);
/* PEP (mod_pubsub.c): notifications to the contacts whose caps ask for
 * the node (XEP-0163 4.3.1), on the account's worker. */
void ps_pep_notify(struct ps_mod *m, const struct ps_node *n, const xmppd_elem *msg);
/* PEP: forgets the nodes of an account (removed), on its worker. */
void ps_forget_service(struct ps_mod *m, const char *service);
/* A removed account (bare JID, on a worker): its subscriptions and
 * affiliations on the nodes of every local service and of the other
 * accounts' PEP services go, each through its node's worker (a request
 * with drop_jid); a service node it alone owned is deleted
 * (pubsub_pep.c). */
void ps_drop_account(struct ps_mod *m, const char *bare);
/* Whether actor may create nodes (access_create). */
int ps_may_create(struct ps_mod *m, const xmppd_jid *actor);
/* The service's identity and features (disco#info on the service). */
void ps_service_features(xmppd_elem *query);
/* A random id (hex) into buf (17 bytes). */
void ps_random_id(char *buf);

/* ---- engine internals (pubsub_engine.c, pubsub_ops.c, pubsub_subs.c) ---- */
/* Runs the request at the head of its node's queue (pubsub_subs.c). */
void ps_dispatch(struct ps_req *r);
void ps_node_clear(struct ps_node *n);
int ps_items_push(struct ps_node *n, uint64_t seq, const char *id);
int ps_aff_of(const struct ps_node *n, const xmppd_jid *actor);
struct ps_sub *ps_sub_find(struct ps_node *n, const char *jid);
struct ps_sub *ps_sub_of_actor(struct ps_node *n, const xmppd_jid *actor);
void ps_sub_remove(struct ps_node *n, struct ps_sub *s);
/* Room for one more entry in n->subs (the array doubles): 0, or -1. */
int ps_sub_room(struct ps_node *n);
/* Subscriptions of jid's bare JID (itself or any of its full JIDs) on n. */
size_t ps_subs_of_bare(const struct ps_node *n, const char *jid);
long ps_max_items(const struct ps_req *r, const struct ps_node *n);
ssize_t ps_item_index(const struct ps_node *n, const char *id);
void ps_item_remove_at(struct ps_node *n, size_t i);
xmppd_elem *ps_result(const char *ns);
void ps_run_event(struct ps_req *r, int kind, const char *item_id, const xmppd_elem *item);
xmppd_elem *ps_event_message(const struct ps_node *n, xmppd_elem **event_r);
void ps_send_to(const xmppd_elem *msg, const char *to);
void ps_notify_all(const struct ps_node *n, const xmppd_elem *msg);
int ps_pep_owner(const struct ps_req *r);
int ps_write_record(struct ps_req *r, const struct ps_config *cfg, xmppd_batch *b,
    xmppd_store_done_fn done);
void ps_send_last_item(const struct ps_node *n, const char *to);
typedef void (*access_fn)(struct ps_req *r);
/* Runs next(r) when the actor may see the node, else answers the error. */
void ps_check_access(struct ps_req *r, access_fn next, int for_items);
void ps_op_create(struct ps_req *r, xmppd_elem *action);
void ps_op_configure(struct ps_req *r, xmppd_elem *action);
void ps_op_delete(struct ps_req *r, xmppd_elem *action, int purge);
void ps_op_publish(struct ps_req *r, xmppd_elem *action);
void ps_op_retract(struct ps_req *r, xmppd_elem *action);
/* XEP-0060 4.5: whether the affiliation of jid's bare JID in affs
 * grants access whatever the model (owner, publisher, member). */
int ps_affs_grant(const struct ps_aff_entry *affs, size_t naffs, const char *jid);
/* XEP-0060 4.5 / 8.8.4: s no longer qualifies for the node's access
 * model: the subscriber is told (subscription 'none'), the owners too
 * (notify_sub). The caller removes it. */
void ps_sub_revoked(const struct ps_node *n, const struct ps_sub *s);
/* The node record of n with affs in place of n->affs, malloc'd. */
char *ps_node_record_affs(const struct ps_node *n, const struct ps_aff_entry *affs,
    size_t naffs, size_t *len_r);

#endif
