/*
 * vcard_avatar.c - mod_vcard's half of XEP-0398 (User Avatar to vCard-Based
 * Avatars Conversion): one avatar, whether a client sets it in the vCard
 * (XEP-0153) or in PEP (XEP-0084).
 *
 *  - A vCard set whose photo changed publishes the image to the user's
 *    urn:xmpp:avatar:data node and then its <info/> to
 *    urn:xmpp:avatar:metadata (XEP-0084 4.1: data first), both with the
 *    hash as item id; a vCard without a photo, after one with, publishes
 *    an empty <metadata/> (XEP-0084 4.5: avatar disabled). The nodes get
 *    access model open, as vCards are world-readable here (XEP-0054 3);
 *    when the user configured them otherwise (the precondition fails,
 *    XEP-0060 7.1.5), the item is published again without options into
 *    the node as it is.
 *  - A metadata item a user publishes (pubsub_event) puts the image of its
 *    first <info/> without url, read from the data node, into the vCard's
 *    PHOTO (TYPE, BINVAL); an empty <metadata/> removes the PHOTO. The
 *    XEP-0153 hash in presence follows (the photo cache).
 * What the server publishes itself reaches pubsub_event with no publisher
 * and is not converted back.
 *
 * Through the pubsub ABI (xmppd_pubsub_request as the server), so this
 * needs the module that keeps PEP nodes (mod_pubsub); without one the
 * requests fail and the vCard is all there is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd.h>

#include "mod_vcard.h"

#define NS_AVATAR_DATA "urn:xmpp:avatar:data"
#define NS_AVATAR_META "urn:xmpp:avatar:metadata"
#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_DATA "jabber:x:data"
#define NS_PUBLISH_OPTIONS "http://jabber.org/protocol/pubsub#publish-options"

static int
is(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* ---------------------------------------------------------------- */
/* vCard -> PEP.                                                      */

struct pub {
	xmppd_ctx *ctx;
	xmppd_jid *user;
	xmppd_elem *data;           /* the <data/> payload; NULL: none (disable) */
	xmppd_elem *meta;           /* the <metadata/> payload */
	char hex[VCARD_HASH_HEX + 1];
	int step;                   /* 0 data, 1 metadata */
	int plain;                  /* published again without options */
};

static void
pub_free(struct pub *p)
{
	xmppd_jid_free(p->user);
	xmppd_elem_unref(p->data);
	xmppd_elem_unref(p->meta);
	free(p);
}

static xmppd_elem *
publish_request(const char *node, const char *id, const xmppd_elem *payload, int options)
{
	xmppd_elem *ps = xmppd_elem_new(NS_PUBSUB, "pubsub"), *p, *item, *x, *f;

	p = xmppd_elem_add_child(ps, NS_PUBSUB, "publish");
	xmppd_elem_set_attr(p, "node", node);
	item = xmppd_elem_add_child(p, NS_PUBSUB, "item");
	xmppd_elem_set_attr(item, "id", id);
	xmppd_elem_append_copy(item, payload);
	if (!options)
		return ps;
	p = xmppd_elem_add_child(ps, NS_PUBSUB, "publish-options");
	x = xmppd_elem_add_child(p, NS_DATA, "x");
	xmppd_elem_set_attr(x, "type", "submit");
	f = xmppd_elem_add_child(x, NS_DATA, "field");
	xmppd_elem_set_attr(f, "var", "FORM_TYPE");
	xmppd_elem_set_attr(f, "type", "hidden");
	xmppd_elem_add_text(xmppd_elem_add_child(f, NS_DATA, "value"), NS_PUBLISH_OPTIONS,
	    strlen(NS_PUBLISH_OPTIONS));
	f = xmppd_elem_add_child(x, NS_DATA, "field");
	xmppd_elem_set_attr(f, "var", "pubsub#access_model");
	xmppd_elem_add_text(xmppd_elem_add_child(f, NS_DATA, "value"), "open", 4);
	return ps;
}

static void pub_next(struct pub *p);

static void
published(const char *condition, const xmppd_elem *result, void *ud)
{
	struct pub *p = ud;

	(void)result;
	if (condition != NULL && is(condition, "conflict") && !p->plain) {
		/* The node is configured otherwise: keep the owner's choice. */
		p->plain = 1;
		pub_next(p);
		return;
	}
	if (condition != NULL) {
		xmppd_log(p->ctx, is(condition, "service-unavailable") ? XMPPD_LOG_DEBUG :
		    XMPPD_LOG_WARNING, "avatar of %s: publishing to PEP: %s",
		    xmppd_jid_bare(p->user), condition);
		pub_free(p);
		return;
	}
	p->plain = 0;
	if (++p->step == 1) {
		pub_next(p);
		return;
	}
	pub_free(p);
}

static void
pub_next(struct pub *p)
{
	xmppd_elem *req;

	if (p->step == 0 && p->data == NULL)
		p->step = 1;            /* disabling: metadata only */
	if (p->step == 0)
		req = publish_request(NS_AVATAR_DATA, p->hex, p->data, !p->plain);
	else
		req = publish_request(NS_AVATAR_META, p->data != NULL ? p->hex : "current",
		    p->meta, !p->plain);
	if (xmppd_pubsub_request(p->ctx, NULL, p->user, 1, req, published, p) < 0)
		pub_free(p);
	xmppd_elem_unref(req);
}

void
avatar_vcard_stored(xmppd_ctx *ctx, const char *bare, xmppd_elem *vcard, const char *old_hex,
    const char *hex)
{
	xmppd_elem *photo = xmppd_elem_child(vcard, VCARD_NS, "PHOTO"), *info;
	const char *b64 = photo != NULL ? xmppd_elem_child_text(photo, VCARD_NS, "BINVAL") : NULL;
	const char *type = photo != NULL ? xmppd_elem_child_text(photo, VCARD_NS, "TYPE") : NULL;
	struct pub *p;
	char *clean, bytes[32];
	size_t n = 0, pad = 0;

	if (!xmppd_opt_bool(ctx, "avatar_conversion") || strcmp(old_hex, hex) == 0)
		return;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return;
	p->ctx = ctx;
	p->user = xmppd_jid_parse(bare);
	p->meta = xmppd_elem_new(NS_AVATAR_META, "metadata");
	strcpy(p->hex, hex);
	if (hex[0] != '\0' && b64 != NULL) {
		/* photo_hash has checked it is base64; XEP-0084 2.1 carries it
		 * without the line breaks vCards have. */
		if ((clean = malloc(strlen(b64) + 1)) == NULL) {
			pub_free(p);
			return;
		}
		for (const char *s = b64; *s != '\0'; s++)
			if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
				clean[n++] = *s;
		clean[n] = '\0';
		while (pad < 2 && pad < n && clean[n - 1 - pad] == '=')
			pad++;
		p->data = xmppd_elem_new(NS_AVATAR_DATA, "data");
		xmppd_elem_add_text(p->data, clean, n);
		free(clean);
		info = xmppd_elem_add_child(p->meta, NS_AVATAR_META, "info");
		snprintf(bytes, sizeof(bytes), "%zu", n / 4 * 3 - pad);
		xmppd_elem_set_attr(info, "bytes", bytes);
		xmppd_elem_set_attr(info, "id", hex);
		/* XEP-0084 4.2 requires a type; a vCard may leave it out. */
		xmppd_elem_set_attr(info, "type", type != NULL && *type != '\0' ? type : "image/png");
	}
	if (p->user == NULL) {
		pub_free(p);
		return;
	}
	pub_next(p);
}

/* ---------------------------------------------------------------- */
/* PEP -> vCard.                                                      */

struct conv {
	xmppd_ctx *ctx;
	xmppd_jid *user;
	char *type;                 /* NULL: remove the photo */
	char *b64;
	char hex[VCARD_HASH_HEX + 1];
};

static void
conv_free(struct conv *c)
{
	xmppd_jid_free(c->user);
	free(c->type);
	free(c->b64);
	free(c);
}

static void
conv_stored(int status, void *ud)
{
	struct conv *c = ud;

	if (status == XMPPD_STORE_OK)
		vcard_photo_learn(xmppd_jid_bare(c->user), c->hex);
	else
		xmppd_log(c->ctx, XMPPD_LOG_WARNING, "avatar of %s: the vCard was not updated",
		    xmppd_jid_bare(c->user));
	conv_free(c);
}

/* The vCard as stored: its PHOTO replaced (or removed), the rest kept. */
static void
conv_vcard(int status, const void *val, size_t vlen, void *ud)
{
	struct conv *c = ud;
	xmppd_elem *vcard = NULL, *ch, *next, *photo;
	char key[512], *text = NULL;
	size_t klen, len;
	xmppd_batch *b = NULL;
	int h;

	if (status == XMPPD_STORE_OK)
		vcard = xmppd_elem_parse(val, vlen);
	else if (status == XMPPD_STORE_NOT_FOUND)
		vcard = xmppd_elem_new(VCARD_NS, "vCard");
	if (vcard == NULL)
		goto fail;
	for (ch = xmppd_elem_first_child(vcard); ch != NULL; ch = next) {
		next = xmppd_elem_next_sibling(ch);
		if (is(xmppd_elem_ns(ch), VCARD_NS) && is(xmppd_elem_name(ch), "PHOTO"))
			xmppd_elem_remove_child(vcard, ch);
	}
	if (c->type != NULL) {
		photo = xmppd_elem_add_child(vcard, VCARD_NS, "PHOTO");
		xmppd_elem_add_text(xmppd_elem_add_child(photo, VCARD_NS, "TYPE"), c->type,
		    strlen(c->type));
		xmppd_elem_add_text(xmppd_elem_add_child(photo, VCARD_NS, "BINVAL"), c->b64,
		    strlen(c->b64));
	}
	if ((h = vcard_photo_hash(vcard, c->hex)) < 0)
		goto fail;              /* the data node held no base64 */
	if (h == 0)
		c->hex[0] = '\0';
	klen = vcard_user_key(key, sizeof(key), xmppd_jid_node(c->user),
	    xmppd_jid_domain(c->user));
	if (klen == 0 || (text = xmppd_elem_to_string(vcard, &len)) == NULL ||
	    len > (size_t)xmppd_opt_int(c->ctx, "max_size") || (b = xmppd_batch_new(c->ctx)) == NULL)
		goto fail;
	(void)xmppd_batch_put(b, VCARD_TABLE, key, klen, text, len);
	if (c->hex[0] != '\0')
		(void)xmppd_batch_put(b, VCARD_PHOTO_TABLE, key, klen, c->hex, VCARD_HASH_HEX);
	else
		(void)xmppd_batch_del(b, VCARD_PHOTO_TABLE, key, klen);
	free(text);
	xmppd_elem_unref(vcard);
	if (xmppd_batch_submit(b, conv_stored, c) < 0)
		conv_free(c);
	return;
fail:
	free(text);
	xmppd_elem_unref(vcard);
	xmppd_log(c->ctx, XMPPD_LOG_WARNING, "avatar of %s: not put into the vCard",
	    xmppd_jid_bare(c->user));
	conv_free(c);
}

static void
conv_store(struct conv *c)
{
	char key[512];
	size_t klen = vcard_user_key(key, sizeof(key), xmppd_jid_node(c->user),
	    xmppd_jid_domain(c->user));

	if (klen == 0 || xmppd_store_aget(c->ctx, VCARD_TABLE, key, klen, conv_vcard, c) < 0)
		conv_free(c);
}

static void
conv_data(const char *condition, const xmppd_elem *result, void *ud)
{
	struct conv *c = ud;
	const xmppd_elem *items = result != NULL ? xmppd_elem_child(result, NS_PUBSUB, "items") :
	    NULL;
	xmppd_elem *item = items != NULL ? xmppd_elem_child(items, NS_PUBSUB, "item") : NULL;
	xmppd_elem *data = item != NULL ? xmppd_elem_child(item, NS_AVATAR_DATA, "data") : NULL;

	if (condition != NULL || data == NULL ||
	    (c->b64 = strdup(xmppd_elem_text(data))) == NULL) {
		xmppd_log(c->ctx, XMPPD_LOG_INFO, "avatar of %s: no data item %s (%s)",
		    xmppd_jid_bare(c->user), c->hex, condition != NULL ? condition : "none");
		conv_free(c);
		return;
	}
	conv_store(c);
}

static enum xmppd_result
on_event(void *args, void *ud)
{
	struct xmppd_pubsub_event_args *a = args;
	xmppd_elem *meta, *info, *ps, *items, *it;
	const char *id = NULL, *type = NULL;
	struct conv *c;

	/* The account's own publishes only: another entity with a
	 * publisher affiliation (XEP-0060 8.9) on its metadata node must
	 * not rewrite its vCard (XEP-0398). */
	if (a->publisher == NULL || a->kind != XMPPD_PUBSUB_PUBLISHED || a->service == NULL ||
	    xmppd_jid_node(a->service) == NULL ||
	    !is(xmppd_jid_bare(a->publisher), xmppd_jid_bare(a->service)) ||
	    !is(a->node, NS_AVATAR_META) ||
	    a->item == NULL || (meta = xmppd_elem_child(a->item, NS_AVATAR_META, "metadata")) == NULL)
		return XMPPD_CONTINUE;
	/* XEP-0084 4.2: the first <info/> the server holds (no url). */
	for (info = xmppd_elem_first_child(meta); info != NULL; info = xmppd_elem_next_sibling(info))
		if (is(xmppd_elem_name(info), "info") && xmppd_elem_attr(info, "url") == NULL &&
		    xmppd_elem_attr(info, "id") != NULL) {
			id = xmppd_elem_attr(info, "id");
			type = xmppd_elem_attr(info, "type");
			break;
		}
	if (id != NULL && strlen(id) > VCARD_HASH_HEX)
		return XMPPD_CONTINUE;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return XMPPD_CONTINUE;
	c->ctx = ud;
	if ((c->user = xmppd_jid_copy(a->service)) == NULL ||
	    (id != NULL && (c->type = strdup(type != NULL ? type : "image/png")) == NULL)) {
		conv_free(c);
		return XMPPD_CONTINUE;
	}
	if (id == NULL) {               /* XEP-0084 4.5: disabled */
		conv_store(c);
		return XMPPD_CONTINUE;
	}
	strcpy(c->hex, id);
	ps = xmppd_elem_new(NS_PUBSUB, "pubsub");
	items = xmppd_elem_add_child(ps, NS_PUBSUB, "items");
	xmppd_elem_set_attr(items, "node", NS_AVATAR_DATA);
	it = xmppd_elem_add_child(items, NS_PUBSUB, "item");
	xmppd_elem_set_attr(it, "id", id);
	if (xmppd_pubsub_request(c->ctx, NULL, c->user, 0, ps, conv_data, c) < 0)
		conv_free(c);
	xmppd_elem_unref(ps);
	return XMPPD_CONTINUE;
}

int
avatar_load(xmppd_ctx *ctx)
{
	if (!xmppd_opt_bool(ctx, "avatar_conversion"))
		return 0;
	if (xmppd_hook_add(ctx, XMPPD_HOOK_PUBSUB_EVENT, NULL, 50, on_event, ctx) < 0 ||
	    xmppd_disco_account_feature(ctx, "urn:xmpp:pep-vcard-conversion:0") < 0)
		return -1;
	return 0;
}
