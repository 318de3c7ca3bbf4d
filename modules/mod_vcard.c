/*
 * mod_vcard - XEP-0054: vcard-temp, and XEP-0153: vCard-Based Avatars.
 *
 * A user stores a vCard with a set to their own account and anyone reads it
 * with a get to the account's bare JID (XEP-0054 3, 6: vCards are
 * world-readable). The server's own vCard is empty. A vCard is read back
 * as it was published, even an empty one; with none stored, one's own get
 * answers an empty vCard (3.1) and another's service-unavailable, as for
 * an account that does not exist (3.3).
 *
 * Avatars: when a stored vCard has a PHOTO with a BINVAL, the SHA-1 of the
 * decoded image is kept and put into every available presence the user
 * sends, as <x xmlns='vcard-temp:x:update'><photo>HASH</photo></x>
 * (XEP-0153 3.1, 4.1), replacing whatever update child the client sent.
 * Presence is immutable once routed, so this is done where the ABI allows
 * a stanza to be replaced: in filter_packet for routed (directed) presence,
 * and, for the broadcast to the user's own resources, which the core does
 * without routing, in presence_in, by sending the recipient a changed copy.
 *
 * Presence cannot wait for the store, so the hash of every user with a
 * session is kept in memory (the photo cache below): loaded when a session
 * opens (the stream holds its next stanza, the initial presence, until it
 * is: RFC 6120 10.1), replaced when a vCard set has completed, dropped when
 * the user's last session ends.
 *
 * The store is used through the asynchronous API (ABI 1.2): gets answer
 * from the read's callback, sets from the batch's (deferred IQ replies).
 *
 * Tables: mod_vcard (host NUL node NUL -> the vCard as XML) and
 * mod_vcard_photo (the same key -> 40 hex digits).
 *
 * Links with -lcrypto (OpenSSL: base64 decoding and SHA-1).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <xmppd.h>

#include "mod_vcard.h"

#define NS_VCARD VCARD_NS
#define NS_UPDATE "vcard-temp:x:update"
#define T_VCARD VCARD_TABLE
#define T_PHOTO VCARD_PHOTO_TABLE
#define HASH_HEX VCARD_HASH_HEX
#define PHOTO_BUCKETS 1024

static const struct xmppd_option options[] = {
	/* The largest vCard stored, serialized, in bytes. */
	{ "max_size", XMPPD_OPT_INT, "65536", 256, 16777216 },
	/* XEP-0398: the vCard photo and the XEP-0084 PEP avatar kept as one
	 * (vcard_avatar.c; needs mod_pubsub). */
	{ "avatar_conversion", XMPPD_OPT_BOOL, "true", 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

static int
same_bare(const xmppd_jid *a, const xmppd_jid *b)
{
	const char *x = a != NULL ? xmppd_jid_bare(a) : NULL;
	const char *y = b != NULL ? xmppd_jid_bare(b) : NULL;

	return x != NULL && y != NULL && strcmp(x, y) == 0;
}

size_t
vcard_user_key(char *buf, size_t size, const char *node, const char *host)
{
	return xmppd_store_key(buf, size, host, node, (const char *)NULL);
}

static int
is(const char *a, const char *b)
{
	return a != NULL && strcmp(a, b) == 0;
}

/* ---------------------------------------------------------------- */
/* XEP-0153: the avatar's hash.                                       */

/*
 * The SHA-1 of the image in vcard's PHOTO/BINVAL, in hex, into hex (41
 * bytes). 1 done, 0 no image, -1 the data is not base64 (or no memory).
 */
int
vcard_photo_hash(xmppd_elem *vcard, char *hex)
{
	xmppd_elem *photo = xmppd_elem_child(vcard, NS_VCARD, "PHOTO");
	xmppd_elem *binval = photo != NULL ? xmppd_elem_child(photo, NS_VCARD, "BINVAL") : NULL;
	const char *text = binval != NULL ? xmppd_elem_text(binval) : "";
	unsigned char *b64, *img = NULL, md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	size_t len = 0, pad = 0;
	int n, rc = -1;

	if ((b64 = malloc(strlen(text) + 1)) == NULL)
		return -1;
	/* XEP-0153 4.6: whitespace in the data is ignored. */
	for (const char *p = text; *p != '\0'; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			b64[len++] = (unsigned char)*p;
	if (len == 0) {
		rc = 0;
		goto out;
	}
	/* Padding: at most two '=', at the end only. */
	while (pad < len && b64[len - 1 - pad] == '=')
		pad++;
	if (len % 4 != 0 || pad > 2 || memchr(b64, '=', len - pad) != NULL ||
	    len > (size_t)INT32_MAX || (img = malloc(len / 4 * 3)) == NULL)
		goto out;
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if ((n = EVP_DecodeBlock(img, b64, (int)len)) < (int)pad ||
	    !EVP_Digest(img, (size_t)n - pad, md, &mdlen, EVP_sha1(), NULL))
		goto out;
	for (unsigned i = 0; i < mdlen; i++) {
		hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
		hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
	}
	hex[2 * mdlen] = '\0';
	rc = 1;
out:
	free(img);
	free(b64);
	return rc;
}

/* ---------------------------------------------------------------- */
/* The photo cache.                                                   */

/*
 * One entry per user with a session on any worker (module-wide, under a
 * mutex: presence is stamped on the sender's worker, and on the recipient's
 * for the broadcast to the user's own resources). Each session holds a
 * reference through its slot (freed when the session ends or the module
 * unloads), and so does a load in flight.
 */
struct photo {
	struct photo *next;
	unsigned refs;
	int known;                  /* hex is what the store holds */
	char hex[HASH_HEX + 1];     /* "" when the user has no avatar */
	char bare[];
};

static struct photo *photos[PHOTO_BUCKETS];
static pthread_mutex_t photo_lock = PTHREAD_MUTEX_INITIALIZER;
static int slot = -1;

static struct photo **
photo_bucket(const char *bare)
{
	unsigned h = 5381;

	for (const unsigned char *p = (const unsigned char *)bare; *p != '\0'; p++)
		h = h * 33 + *p;
	return &photos[h % PHOTO_BUCKETS];
}

/* Called with photo_lock held. */
static struct photo *
photo_find(const char *bare)
{
	struct photo *p;

	for (p = *photo_bucket(bare); p != NULL && strcmp(p->bare, bare) != 0; p = p->next)
		;
	return p;
}

/* The entry of bare, made if needed, with a reference; NULL: no memory. */
static struct photo *
photo_ref(const char *bare)
{
	struct photo *p;

	pthread_mutex_lock(&photo_lock);
	if ((p = photo_find(bare)) == NULL && (p = calloc(1, sizeof(*p) + strlen(bare) + 1)) != NULL) {
		strcpy(p->bare, bare);
		p->next = *photo_bucket(bare);
		*photo_bucket(bare) = p;
	}
	if (p != NULL)
		p->refs++;
	pthread_mutex_unlock(&photo_lock);
	return p;
}

static void
photo_unref(void *data)
{
	struct photo *p = data, **pp;

	pthread_mutex_lock(&photo_lock);
	if (--p->refs == 0) {
		for (pp = photo_bucket(p->bare); *pp != p; pp = &(*pp)->next)
			;
		*pp = p->next;
		free(p);
	}
	pthread_mutex_unlock(&photo_lock);
}

/* The hash of bare's avatar into hex; 1 if there is one, else 0 (also
 * when bare has no session, or its hash is still being loaded). */
static int
photo_lookup(const char *bare, char *hex)
{
	struct photo *p;
	int found = 0;

	pthread_mutex_lock(&photo_lock);
	if ((p = photo_find(bare)) != NULL && p->known && p->hex[0] != '\0') {
		memcpy(hex, p->hex, HASH_HEX + 1);
		found = 1;
	}
	pthread_mutex_unlock(&photo_lock);
	return found;
}

/* A vCard set has completed: what the store now holds ("" none). */
void
vcard_photo_learn(const char *bare, const char *hex)
{
	struct photo *p;

	pthread_mutex_lock(&photo_lock);
	if ((p = photo_find(bare)) != NULL) {
		strcpy(p->hex, hex);
		p->known = 1;
	}
	pthread_mutex_unlock(&photo_lock);
}

/* The load's read has completed. A set that completed meanwhile knows
 * better: it wrote after this read. */
static void
photo_loaded(int status, const void *val, size_t vlen, void *ud)
{
	struct photo *p = ud;

	pthread_mutex_lock(&photo_lock);
	if (!p->known && (status == XMPPD_STORE_OK || status == XMPPD_STORE_NOT_FOUND)) {
		if (status == XMPPD_STORE_OK && vlen == HASH_HEX)
			memcpy(p->hex, val, HASH_HEX);
		p->hex[status == XMPPD_STORE_OK && vlen == HASH_HEX ? HASH_HEX : 0] = '\0';
		p->known = 1;
	}
	pthread_mutex_unlock(&photo_lock);
	photo_unref(p);
}

/* A session of a user: its reference on the user's entry, and the load if
 * the hash is not known yet. */
static void
photo_adopt(xmppd_ctx *ctx, xmppd_session *s)
{
	const xmppd_jid *jid = xmppd_session_jid(s);
	char key[512];
	size_t klen;
	struct photo *p;
	int known;

	if (jid == NULL || xmppd_jid_node(jid) == NULL || xmppd_session_get(s, slot) != NULL ||
	    (p = photo_ref(xmppd_jid_bare(jid))) == NULL)
		return;
	xmppd_session_set(s, slot, p, photo_unref);
	pthread_mutex_lock(&photo_lock);
	known = p->known;
	if (!known)
		p->refs++;              /* the load's */
	pthread_mutex_unlock(&photo_lock);
	if (known)
		return;
	klen = vcard_user_key(key, sizeof(key), xmppd_jid_node(jid), xmppd_jid_domain(jid));
	if (xmppd_store_aget(ctx, T_PHOTO, key, klen, photo_loaded, p) < 0)
		photo_unref(p);
}

static enum xmppd_result
session_opened(void *args, void *ud)
{
	photo_adopt(ud, ((struct xmppd_session_args *)args)->session);
	return XMPPD_CONTINUE;
}

/* Loaded while users are online: their sessions are adopted on their
 * workers (a timer on each, once). */
static void
adopt_one(xmppd_session *s, void *ud)
{
	photo_adopt(ud, s);
}

static uint64_t
adopt_sweep(void *ud)
{
	xmppd_session_foreach_local(adopt_one, ud);
	return 0;
}

/*
 * XEP-0153 4.1: an available presence from a user with an avatar carries
 * its hash. Returns a changed copy of st (new), or NULL if st is fine as
 * it is or is not such a presence. from: the sender, or NULL to read it
 * from st.
 */
static xmppd_elem *
with_photo(const xmppd_elem *st, const xmppd_jid *from)
{
	xmppd_jid *parsed = NULL;
	xmppd_elem *copy, *c, *next, *x;
	char hex[HASH_HEX + 1];
	int found = 0, updates = 0, same = 0;

	if (!is(xmppd_stanza_kind(st), "presence") || xmppd_elem_attr(st, "type") != NULL)
		return NULL;
	if (from == NULL)
		from = parsed = xmppd_jid_parse(xmppd_elem_attr(st, "from"));
	if (from != NULL && xmppd_jid_node(from) != NULL)
		found = photo_lookup(xmppd_jid_bare(from), hex);
	xmppd_jid_free(parsed);
	if (!found)
		return NULL;
	for (c = xmppd_elem_first_child(st); c != NULL; c = xmppd_elem_next_sibling(c))
		if (is(xmppd_elem_ns(c), NS_UPDATE) && is(xmppd_elem_name(c), "x")) {
			updates++;
			same = is(xmppd_elem_child_text(c, NS_UPDATE, "photo"), hex);
		}
	if (updates == 1 && same)
		return NULL;
	copy = xmppd_elem_copy(st);
	for (c = xmppd_elem_first_child(copy); c != NULL; c = next) {
		next = xmppd_elem_next_sibling(c);
		if (is(xmppd_elem_ns(c), NS_UPDATE) && is(xmppd_elem_name(c), "x"))
			xmppd_elem_remove_child(copy, c);
	}
	x = xmppd_elem_add_child(copy, NS_UPDATE, "x");
	xmppd_elem_add_text(xmppd_elem_add_child(x, NS_UPDATE, "photo"), hex, HASH_HEX);
	return copy;
}

/* Routed presence (directed, and whatever the core routes later). */
static enum xmppd_result
filter_packet(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	xmppd_elem *changed = with_photo(pa->stanza, pa->from);

	/* The ABI: store the new reference, the core drops the old one. */
	if (changed != NULL)
		pa->stanza = changed;
	return XMPPD_CONTINUE;
}

/*
 * Presence the core hands to a session without routing it (the broadcast
 * to the user's own resources, RFC 6121 4.2.2, 4.4.2): the stanza may not
 * be changed here, so the session gets a changed copy and the original
 * stops. Registered late, so that every other handler has seen it.
 */
static enum xmppd_result
presence_in(void *args, void *ud)
{
	struct xmppd_packet_args *pa = args;
	xmppd_elem *changed;

	if (pa->session == NULL || (changed = with_photo(pa->stanza, NULL)) == NULL)
		return XMPPD_CONTINUE;
	xmppd_session_send(pa->session, changed);
	xmppd_elem_unref(changed);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* XEP-0054: the IQs.                                                 */

/* A get in flight: the IQ (a reference) and whose vCard it asks for. */
struct vget {
	xmppd_elem *iq;
	int own;                    /* the requester's own vCard */
};

/* A get's read has completed: the deferred reply. */
static void
vcard_got(int status, const void *val, size_t vlen, void *ud)
{
	struct vget *vg = ud;
	xmppd_elem *vcard;

	if (status == XMPPD_STORE_NOT_FOUND && vg->own) {
		/* XEP-0054 3.1: one's own vCard, none stored: an empty one. */
		xmppd_iq_reply(vg->iq, xmppd_elem_new(NS_VCARD, "vCard"));
	} else if (status == XMPPD_STORE_NOT_FOUND) {
		/* XEP-0054 3.3: another user's, none stored: the error a
		 * user who does not exist gets too (the core answers those
		 * service-unavailable, RFC 6121 8.5.1), so that the answer
		 * does not tell which accounts exist. */
		xmppd_iq_error(vg->iq, "service-unavailable", NULL);
	} else if (status != XMPPD_STORE_OK || (vcard = xmppd_elem_parse(val, vlen)) == NULL) {
		xmppd_iq_error(vg->iq, "internal-server-error", NULL);
	} else {
		xmppd_iq_reply(vg->iq, vcard);
	}
	xmppd_elem_unref(vg->iq);
	free(vg);
}

static void
vcard_get(xmppd_ctx *ctx, xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to)
{
	char key[512];
	size_t klen = vcard_user_key(key, sizeof(key), xmppd_jid_node(to), xmppd_jid_domain(to));
	struct vget *vg;

	if (klen == 0 || (vg = malloc(sizeof(*vg))) == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	vg->iq = xmppd_elem_ref(iq);
	vg->own = same_bare(from, to);
	if (xmppd_store_aget(ctx, T_VCARD, key, klen, vcard_got, vg) < 0) {
		xmppd_elem_unref(vg->iq);
		free(vg);
		xmppd_iq_error(iq, "internal-server-error", NULL);
	}
}

/* A set in flight: the IQ (a reference) and the hash it stores. */
struct vset {
	xmppd_elem *iq;
	xmppd_ctx *ctx;
	char hex[HASH_HEX + 1];     /* "" none */
	char bare[];
};

static void
vcard_stored(int status, void *ud)
{
	struct vset *vs = ud;

	if (status == XMPPD_STORE_OK) {
		char old[HASH_HEX + 1] = "";

		/* Durable: presence from now on carries the new hash, and
		 * XEP-0398: the PEP avatar follows. */
		(void)photo_lookup(vs->bare, old);
		vcard_photo_learn(vs->bare, vs->hex);
		xmppd_iq_reply(vs->iq, NULL);
		avatar_vcard_stored(vs->ctx, vs->bare, xmppd_elem_first_child(vs->iq), old,
		    vs->hex);
	} else {
		xmppd_log(vs->ctx, XMPPD_LOG_ERROR, "cannot store the vCard of %s", vs->bare);
		xmppd_iq_error(vs->iq, "internal-server-error", NULL);
	}
	xmppd_elem_unref(vs->iq);
	free(vs);
}

static void
vcard_set(xmppd_ctx *ctx, xmppd_elem *iq, xmppd_elem *vcard, const xmppd_jid *to)
{
	char key[512], hex[HASH_HEX + 1], *text;
	size_t klen = vcard_user_key(key, sizeof(key), xmppd_jid_node(to), xmppd_jid_domain(to)), len;
	struct vset *vs;
	xmppd_batch *b;
	int photo;

	if ((text = xmppd_elem_to_string(vcard, &len)) == NULL || klen == 0) {
		free(text);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	if (len > (size_t)xmppd_opt_int(ctx, "max_size")) {
		free(text);
		xmppd_iq_error(iq, "not-acceptable", "the vCard is too large");
		return;
	}
	if ((photo = vcard_photo_hash(vcard, hex)) < 0) {
		free(text);
		xmppd_iq_error(iq, "bad-request", "PHOTO/BINVAL is not base64");
		return;
	}
	if ((vs = calloc(1, sizeof(*vs) + strlen(xmppd_jid_bare(to)) + 1)) == NULL ||
	    (b = xmppd_batch_new(ctx)) == NULL) {
		free(vs);
		free(text);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	/* XEP-0054 3.2: the set replaces the whole vCard, and what is read
	 * back is what was published, an empty vCard too (a client that
	 * reads item-not-found after publishing takes it for a failure).
	 * The vCard and its hash change together. */
	(void)xmppd_batch_put(b, T_VCARD, key, klen, text, len);
	if (photo)
		(void)xmppd_batch_put(b, T_PHOTO, key, klen, hex, HASH_HEX);
	else
		(void)xmppd_batch_del(b, T_PHOTO, key, klen);
	free(text);
	vs->iq = xmppd_elem_ref(iq);
	vs->ctx = ctx;
	strcpy(vs->hex, photo ? hex : "");
	strcpy(vs->bare, xmppd_jid_bare(to));
	if (xmppd_batch_submit(b, vcard_stored, vs) < 0) {
		xmppd_elem_unref(vs->iq);
		free(vs);
		xmppd_iq_error(iq, "internal-server-error", NULL);
	}
}

static enum xmppd_result
vcard_iq(xmppd_elem *iq, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	xmppd_elem *vcard = xmppd_elem_first_child(iq);
	int set = is(xmppd_elem_attr(iq, "type"), "set");

	if (!is(xmppd_elem_name(vcard), "vCard")) {
		xmppd_iq_error(iq, "bad-request", NULL);
		return XMPPD_STOP;
	}
	if (set && (xmppd_jid_node(to) == NULL || !same_bare(from, to))) {
		/* XEP-0054 3.2: only one's own vCard. */
		xmppd_iq_error(iq, "forbidden", NULL);
		return XMPPD_STOP;
	}
	if (set)
		vcard_set(ud, iq, vcard, to);
	else if (xmppd_jid_node(to) == NULL)
		xmppd_iq_reply(iq, xmppd_elem_new(NS_VCARD, "vCard"));   /* the server's */
	else
		vcard_get(ud, iq, from, to);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static int
load(xmppd_ctx *ctx)
{
	if ((slot = xmppd_session_slot(ctx)) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_SM_SESSION_OPENED, NULL, 0, session_opened, ctx) < 0 ||
	    xmppd_timer_add_every_worker(ctx, 1, adopt_sweep, ctx) < 0 ||
	    xmppd_iq_register(ctx, NULL, NS_VCARD, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_SERVER | XMPPD_IQ_ACCOUNT, vcard_iq, ctx) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_FILTER_PACKET, NULL, 50, filter_packet, ctx) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_PRESENCE_IN, NULL, 1000, presence_in, ctx) < 0 ||
	    xmppd_store_user_table(ctx, T_VCARD) < 0 ||
	    xmppd_store_user_table(ctx, T_PHOTO) < 0 ||
	    xmppd_disco_feature(ctx, NS_VCARD) < 0 ||
	    xmppd_disco_account_feature(ctx, NS_VCARD) < 0 || avatar_load(ctx) < 0)
		return -1;
	return 0;
}

/* The slots' references went before this (the core frees session slots,
 * and waits for the loads in flight, before calling unload). */
static void
unload(xmppd_ctx *ctx)
{
	struct photo *p, *next;

	for (size_t i = 0; i < PHOTO_BUCKETS; i++) {
		for (p = photos[i]; p != NULL; p = next) {
			next = p->next;
			free(p);
		}
		photos[i] = NULL;
	}
	slot = -1;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.2: the asynchronous store */
	.name = "mod_vcard",
	.version = "1.0",
	.options = options,
	.load = load,
	.unload = unload,
};
