/*
 * mod_vcard - XEP-0054: vcard-temp, and XEP-0153: vCard-Based Avatars.
 *
 * A user stores a vCard with a set to their own account and anyone reads it
 * with a get to the account's bare JID (XEP-0054 3, 6: vCards are
 * world-readable). The server's own vCard is empty.
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
 * Tables: mod_vcard (host NUL node NUL -> the vCard as XML) and
 * mod_vcard_photo (the same key -> 40 hex digits).
 *
 * Links with -lcrypto (OpenSSL: base64 decoding and SHA-1).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <xmppd.h>

#define NS_VCARD "vcard-temp"
#define NS_UPDATE "vcard-temp:x:update"
#define T_VCARD "mod_vcard"
#define T_PHOTO "mod_vcard_photo"
#define HASH_HEX 40

static const struct xmppd_option options[] = {
	/* The largest vCard stored, serialized, in bytes. */
	{ "max_size", XMPPD_OPT_INT, "65536", 256, 16777216 },
	{ NULL, 0, NULL, 0, 0 },
};

static int
same_bare(const xmppd_jid *a, const xmppd_jid *b)
{
	const char *x = a != NULL ? xmppd_jid_bare(a) : NULL;
	const char *y = b != NULL ? xmppd_jid_bare(b) : NULL;

	return x != NULL && y != NULL && strcmp(x, y) == 0;
}

static size_t
user_key(char *buf, size_t size, const char *node, const char *host)
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
static int
photo_hash(xmppd_elem *vcard, char *hex)
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

/* The stored hash of node@host's avatar into hex; 1 found, else 0. */
static int
stored_hash(const char *node, const char *host, char *hex)
{
	char key[512];
	size_t klen = user_key(key, sizeof(key), node, host), vlen;
	const void *val;
	xmppd_txn *txn;
	int found = 0;

	if (klen == 0 || (txn = xmppd_store_begin(0)) == NULL)
		return 0;
	if (xmppd_store_get(txn, T_PHOTO, key, klen, &val, &vlen) == 0 && vlen == HASH_HEX) {
		memcpy(hex, val, HASH_HEX);
		hex[HASH_HEX] = '\0';
		found = 1;
	}
	xmppd_store_abort(txn);
	return found;
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
		found = stored_hash(xmppd_jid_node(from), xmppd_jid_domain(from), hex);
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

static void
vcard_get(xmppd_elem *iq, const xmppd_jid *to)
{
	char key[512];
	size_t klen = user_key(key, sizeof(key), xmppd_jid_node(to), xmppd_jid_domain(to)), vlen;
	const void *val;
	xmppd_elem *vcard = NULL;
	xmppd_txn *txn;
	int r = -1;

	if (klen != 0 && (txn = xmppd_store_begin(0)) != NULL) {
		if ((r = xmppd_store_get(txn, T_VCARD, key, klen, &val, &vlen)) == 0)
			vcard = xmppd_elem_parse(val, vlen);
		xmppd_store_abort(txn);
	}
	if (r == 1)     /* XEP-0054 3.1, 3.3: none stored */
		xmppd_iq_error(iq, "item-not-found", NULL);
	else if (vcard == NULL)
		xmppd_iq_error(iq, "internal-server-error", NULL);
	else
		xmppd_iq_reply(iq, vcard);
}

static void
vcard_set(xmppd_ctx *ctx, xmppd_elem *iq, xmppd_elem *vcard, const xmppd_jid *to)
{
	char key[512], hex[HASH_HEX + 1], *text;
	size_t klen = user_key(key, sizeof(key), xmppd_jid_node(to), xmppd_jid_domain(to)), len;
	xmppd_txn *txn;
	int photo, r;

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
	if ((photo = photo_hash(vcard, hex)) < 0) {
		free(text);
		xmppd_iq_error(iq, "bad-request", "PHOTO/BINVAL is not base64");
		return;
	}
	if ((txn = xmppd_store_begin(1)) == NULL) {
		free(text);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	/* An empty vCard removes the stored one (XEP-0054 3.2 replaces the
	 * whole vCard; there is nothing left to keep). */
	if (xmppd_elem_first_child(vcard) == NULL)
		r = xmppd_store_del(txn, T_VCARD, key, klen);
	else
		r = xmppd_store_put(txn, T_VCARD, key, klen, text, len);
	if (r >= 0)
		r = photo ? xmppd_store_put(txn, T_PHOTO, key, klen, hex, HASH_HEX) :
		    xmppd_store_del(txn, T_PHOTO, key, klen);
	free(text);
	if (r < 0 || xmppd_store_commit(txn) < 0) {
		if (r < 0)
			xmppd_store_abort(txn);
		xmppd_log(ctx, XMPPD_LOG_ERROR, "cannot store the vCard of %s", xmppd_jid_bare(to));
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	xmppd_iq_reply(iq, NULL);
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
		vcard_get(iq, to);
	return XMPPD_STOP;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static int
load(xmppd_ctx *ctx)
{
	if (xmppd_iq_register(ctx, NULL, NS_VCARD, XMPPD_IQ_GET | XMPPD_IQ_SET,
	    XMPPD_IQ_SERVER | XMPPD_IQ_ACCOUNT, vcard_iq, ctx) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_FILTER_PACKET, NULL, 50, filter_packet, ctx) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_PRESENCE_IN, NULL, 1000, presence_in, ctx) < 0 ||
	    xmppd_store_user_table(ctx, T_VCARD) < 0 ||
	    xmppd_store_user_table(ctx, T_PHOTO) < 0 ||
	    xmppd_disco_feature(ctx, NS_VCARD) < 0 ||
	    xmppd_disco_account_feature(ctx, NS_VCARD) < 0)
		return -1;
	return 0;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,
	.name = "mod_vcard",
	.version = "1.0",
	.options = options,
	.load = load,
};
