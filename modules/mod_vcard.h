/*
 * mod_vcard.h - what mod_vcard.c and vcard_avatar.c share.
 */
#ifndef MOD_VCARD_H
#define MOD_VCARD_H

#include <xmppd.h>

#define VCARD_NS "vcard-temp"
#define VCARD_TABLE "mod_vcard"
#define VCARD_PHOTO_TABLE "mod_vcard_photo"
#define VCARD_HASH_HEX 40

/* The key of an account's vCard and photo hash (0: too long). */
size_t vcard_user_key(char *buf, size_t size, const char *node, const char *host);
/* The SHA-1 of vcard's PHOTO/BINVAL in hex (41 bytes): 1, 0 no image,
 * -1 not base64. */
int vcard_photo_hash(xmppd_elem *vcard, char *hex);
/* A vCard write has completed: presence carries hex ("" none) from now. */
void vcard_photo_learn(const char *bare, const char *hex);

/* XEP-0398 (vcard_avatar.c): a vCard set has completed; the photo's hash
 * was old_hex and is hex now ("" none). */
void avatar_vcard_stored(xmppd_ctx *ctx, const char *bare, xmppd_elem *vcard,
    const char *old_hex, const char *hex);
/* Registers the conversion when the avatar_conversion option is on. */
int avatar_load(xmppd_ctx *ctx);

#endif
