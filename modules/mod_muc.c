/*
 * mod_muc - XEP-0045 Multi-User Chat: a service on conference.HOST for
 * each host (muc.h has the design). This file has the options, the
 * service domain's entry point, the disco of the service itself and
 * loading.
 *
 * Stanzas for a room (room@service, room@service/nick) arrive on the
 * room's worker and go to muc_room.c (presence, messages) or
 * muc_admin.c (IQs); those for the service's own JID are answered here.
 */
#define _GNU_SOURCE             /* asprintf */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include <sys/random.h>

#include "muc.h"
#include "service_domains.h"

static const struct xmppd_option options[] = {
	/* The hosts that get a service (default: every host of the
	 * configuration); each gets host_prefix + host. */
	{ "hosts", XMPPD_OPT_STRING_LIST, NULL, 0, 0 },
	{ "host_prefix", XMPPD_OPT_STRING, "conference.", 0, 0 },
	/* The disco#info identity's name. */
	{ "name", XMPPD_OPT_STRING, "Chatrooms", 0, 0 },
	/* Who may create rooms: "local" (users of this server's hosts) or
	 * an access rule of the configuration (as mod_pubsub's). */
	{ "access_create", XMPPD_OPT_STRING, "local", 0, 0 },
	/* Messages a room keeps for the history sent on join. */
	{ "history_size", XMPPD_OPT_INT, "20", 0, 1000 },
	/* The cap of muc#roomconfig_maxusers (and its default). */
	{ "max_users", XMPPD_OPT_INT, "200", 1, 100000 },
	/* The longest subject, in bytes. */
	{ "max_subject_length", XMPPD_OPT_INT, "1024", 1, 65536 },
	{ "max_nick_length", XMPPD_OPT_INT, "64", 1, MUC_NICK_MAX },
	/* Messages per second per occupant session, and the burst. */
	{ "message_rate", XMPPD_OPT_INT, "10", 1, 100000 },
	{ "message_burst", XMPPD_OPT_INT, "30", 1, 1000000 },
	/* Joins per second per room (users below admin), and the burst:
	 * a flood of joins in one room slows that room only. */
	{ "join_rate", XMPPD_OPT_INT, "10", 1, 100000 },
	{ "join_burst", XMPPD_OPT_INT, "50", 1, 1000000 },
	/* What a message (or a join) past the rate gets:
	 * resource-constraint (type wait) or policy-violation. */
	{ "message_excess", XMPPD_OPT_STRING, "resource-constraint", 0, 0 },
	/* Rooms one user may have made that exist at once (the stored
	 * ones counted at load); 0: no limit. */
	{ "max_rooms_per_user", XMPPD_OPT_INT, "100", 0, 1000000 },
	/* XEP-0421 occupant ids: the HMAC key (up to 64 bytes). Unset: a
	 * random key at each start (ids then change with a restart). */
	{ "occupant_id_secret", XMPPD_OPT_STRING, NULL, 0, 0 },
	/* Missed mentions kept per member per room (muc_mention.c). */
	{ "mention_keep", XMPPD_OPT_INT, "100", 1, 1000 },
	/* The rooms' archives (muc_mam.c), as mod_mam's options of the same
	 * names: seconds a message is kept (0: for ever), the largest page,
	 * seconds between two runs of the retention purge. */
	{ "archive_expiry", XMPPD_OPT_INT, "0", 0, 20L * 365 * 86400 },
	{ "mam_max_page", XMPPD_OPT_INT, "250", 1, 10000 },
	{ "purge_interval", XMPPD_OPT_INT, "600", 1, 86400 },
	{ NULL, 0, NULL, 0, 0 },
};

struct muc_mod muc_module;

int
muc_is(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

const char *
muc_our_service(const char *domain)
{
	for (size_t i = 0; i < muc_module.nservices; i++)
		if (muc_is(muc_module.services[i], domain))
			return muc_module.services[i];
	return NULL;
}

/* The same semantics as mod_pubsub's access_create. */
int
muc_may_create(const xmppd_jid *actor)
{
	if (muc_is(muc_module.access_create, "local"))
		return xmppd_jid_node(actor) != NULL &&
		    xmppd_is_local_host(xmppd_jid_domain(actor));
	return xmppd_access_check(muc_module.access_create, actor, NULL);
}

/* ---------------------------------------------------------------- */
/* Rooms per user: the one table workers share, under its own lock
 * (creating a room is rare; no room's state is behind it).           */

#define CREATOR_BUCKETS 256

struct creator {
	struct creator *next;
	char *bare;
	long count;
};

static pthread_mutex_t creators_mu = PTHREAD_MUTEX_INITIALIZER;
static struct creator *creators[CREATOR_BUCKETS];
/* Set once the persistent rooms of the store are counted (at load). */
static int creators_counted;

static unsigned
creator_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % CREATOR_BUCKETS;
}

/* bare's entry (made when absent), under creators_mu; NULL: no memory. */
static struct creator *
creator_entry(const char *bare)
{
	struct creator **pp, *c;

	for (pp = &creators[creator_hash(bare)]; (c = *pp) != NULL; pp = &c->next)
		if (strcmp(c->bare, bare) == 0)
			return c;
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->bare = strdup(bare)) == NULL) {
		free(c);
		return NULL;
	}
	*pp = c;
	return c;
}

int
muc_creator_take(const char *bare)
{
	struct creator *c;
	int rc = 0;

	if (muc_module.max_rooms_per_user == 0)
		return 0;
	/* Until the stored rooms are counted, nobody makes one (a restart
	 * must not reset what a user has made). */
	if (!__atomic_load_n(&creators_counted, __ATOMIC_ACQUIRE))
		return -2;
	pthread_mutex_lock(&creators_mu);
	if ((c = creator_entry(bare)) == NULL || c->count >= muc_module.max_rooms_per_user)
		rc = -1;
	else
		c->count++;
	pthread_mutex_unlock(&creators_mu);
	return rc;
}

void
muc_creator_seed(const char *bare)
{
	struct creator *c;

	if (muc_module.max_rooms_per_user == 0)
		return;
	pthread_mutex_lock(&creators_mu);
	if ((c = creator_entry(bare)) != NULL)
		c->count++;
	pthread_mutex_unlock(&creators_mu);
}

void
muc_creators_ready(void)
{
	__atomic_store_n(&creators_counted, 1, __ATOMIC_RELEASE);
}

void
muc_creator_release(const char *bare)
{
	struct creator **pp, *c;

	if (muc_module.max_rooms_per_user == 0)
		return;
	pthread_mutex_lock(&creators_mu);
	for (pp = &creators[creator_hash(bare)]; (c = *pp) != NULL; pp = &c->next)
		if (strcmp(c->bare, bare) == 0) {
			if (--c->count <= 0) {
				*pp = c->next;
				free(c->bare);
				free(c);
			}
			break;
		}
	pthread_mutex_unlock(&creators_mu);
}

void
muc_creators_free(void)
{
	__atomic_store_n(&creators_counted, 0, __ATOMIC_RELEASE);
	pthread_mutex_lock(&creators_mu);
	for (size_t b = 0; b < CREATOR_BUCKETS; b++)
		while (creators[b] != NULL) {
			struct creator *c = creators[b];

			creators[b] = c->next;
			free(c->bare);
			free(c);
		}
	pthread_mutex_unlock(&creators_mu);
}

void
muc_error(const xmppd_elem *st, const char *cond, const char *text)
{
	xmppd_bounce(st, cond, text);
}

/* ---------------------------------------------------------------- */
/* The service's own JID.                                             */

static void
service_disco(xmppd_elem *iq, const xmppd_jid *to, xmppd_elem *q, int items)
{
	xmppd_elem *res, *e;

	if (xmppd_elem_attr(q, "node") != NULL) {
		xmppd_iq_error(iq, "item-not-found", NULL);
		return;
	}
	if (items) {
		muc_service_items(iq, xmppd_jid_domain(to), q);
		return;
	}
	/* XEP-0045 6.1 */
	res = xmppd_elem_new(NS_DISCO_INFO, "query");
	e = xmppd_elem_add_child(res, NS_DISCO_INFO, "identity");
	xmppd_elem_set_attr(e, "category", "conference");
	xmppd_elem_set_attr(e, "type", "text");
	xmppd_elem_set_attr(e, "name", muc_module.name);
	xmppd_elem_set_attr(xmppd_elem_add_child(res, NS_DISCO_INFO, "feature"), "var",
	    NS_DISCO_INFO);
	xmppd_elem_set_attr(xmppd_elem_add_child(res, NS_DISCO_INFO, "feature"), "var",
	    NS_DISCO_ITEMS);
	xmppd_elem_set_attr(xmppd_elem_add_child(res, NS_DISCO_INFO, "feature"), "var", NS_MUC);
	xmppd_iq_reply(iq, res);
}

void
muc_dispatch(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to)
{
	const char *kind = xmppd_stanza_kind(st), *type = xmppd_stanza_type(st);

	if (muc_is(kind, "presence"))
		muc_presence(st, from, to);
	else if (muc_is(kind, "message"))
		muc_message(st, from, to);
	else if (muc_is(kind, "iq") && (muc_is(type, "get") || muc_is(type, "set")))
		muc_iq(st, from, to);
	else if (muc_is(kind, "iq") && xmppd_jid_resource(to) != NULL)
		muc_iq_answer(st, from, to);
}

static void
service_stanza(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	const char *kind = xmppd_stanza_kind(st), *type = xmppd_stanza_type(st);
	xmppd_elem *q;

	(void)ud;
	if (from == NULL || muc_our_service(xmppd_jid_domain(to)) == NULL)
		return;
	if (xmppd_jid_node(to) != NULL) {
		if (!muc_gate(st, from, to))
			muc_dispatch(st, from, to);
		return;
	}
	if (!muc_is(kind, "iq") || !(muc_is(type, "get") || muc_is(type, "set")))
		return;
	q = xmppd_elem_first_child(st);
	if (xmppd_jid_resource(to) == NULL && q != NULL && muc_is(type, "get") &&
	    muc_is(xmppd_elem_ns(q), NS_DISCO_INFO))
		service_disco(st, to, q, 0);
	else if (xmppd_jid_resource(to) == NULL && q != NULL && muc_is(type, "get") &&
	    muc_is(xmppd_elem_ns(q), NS_DISCO_ITEMS))
		service_disco(st, to, q, 1);
	else
		xmppd_iq_error(st, "service-unavailable", NULL);
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static void
free_services(void)
{
	service_domains_free(muc_module.services, muc_module.nservices);
	muc_module.services = NULL;
	muc_module.nservices = 0;
}

static void
unload(xmppd_ctx *ctx)
{
	(void)ctx;
	muc_rooms_free();
	muc_creators_free();
	muc_ctl_free();
	free_services();
}

static int
load(xmppd_ctx *ctx)
{
	const char *prefix = xmppd_opt_string(ctx, "host_prefix");
	const char *secret;

	memset(&muc_module, 0, sizeof(muc_module));
	muc_module.ctx = ctx;
	muc_module.name = xmppd_opt_string(ctx, "name");
	muc_module.access_create = xmppd_opt_string(ctx, "access_create");
	muc_module.history_size = xmppd_opt_int(ctx, "history_size");
	muc_module.max_users = xmppd_opt_int(ctx, "max_users");
	muc_module.max_subject = xmppd_opt_int(ctx, "max_subject_length");
	muc_module.max_nick = xmppd_opt_int(ctx, "max_nick_length");
	muc_module.msg_rate = xmppd_opt_int(ctx, "message_rate");
	muc_module.msg_burst = xmppd_opt_int(ctx, "message_burst");
	muc_module.join_rate = xmppd_opt_int(ctx, "join_rate");
	muc_module.join_burst = xmppd_opt_int(ctx, "join_burst");
	muc_module.rate_error = xmppd_opt_string(ctx, "message_excess");
	muc_module.max_rooms_per_user = xmppd_opt_int(ctx, "max_rooms_per_user");
	muc_module.mention_keep = xmppd_opt_int(ctx, "mention_keep");
	if (!muc_is(muc_module.rate_error, "resource-constraint") &&
	    !muc_is(muc_module.rate_error, "policy-violation")) {
		xmppd_log(ctx, XMPPD_LOG_ERROR,
		    "message_excess must be resource-constraint or policy-violation");
		return -1;
	}
	secret = xmppd_opt_string(ctx, "occupant_id_secret");
	if (secret != NULL && *secret) {
		muc_module.occ_secret_len = strlen(secret) < sizeof(muc_module.occ_secret) ?
		    strlen(secret) : sizeof(muc_module.occ_secret);
		memcpy(muc_module.occ_secret, secret, muc_module.occ_secret_len);
	} else {
		muc_module.occ_secret_len = 32;
		if (getrandom(muc_module.occ_secret, 32, 0) != 32) {
			xmppd_log(ctx, XMPPD_LOG_ERROR, "no random bytes for occupant ids");
			return -1;
		}
	}
	if (service_domains(ctx, prefix, &muc_module.services, &muc_module.nservices) < 0)
		goto err;
	if (muc_rooms_init() < 0 || muc_ctl_init(ctx) < 0 || muc_mam_init(ctx) < 0 ||
	    muc_store_count_creators() < 0)
		goto err;
	for (size_t i = 0; i < muc_module.nservices; i++)
		if (xmppd_service_register(ctx, muc_module.services[i], service_stanza, NULL) < 0)
			goto err;
	xmppd_set_data(ctx, &muc_module);
	return 0;
err:
	unload(ctx);
	return -1;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.7: server_stopping, xmppd_push_notify */
	.name = "mod_muc",
	.version = "0.1",
	.options = options,
	.load = load,
	.unload = unload,
};
