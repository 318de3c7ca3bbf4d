/*
 * mod_private.h - what mod_private.c and private_bookmarks.c share.
 */
#ifndef MOD_PRIVATE_H
#define MOD_PRIVATE_H

#include <xmppd.h>

#define PRIVATE_TABLE "mod_private"

/* The key of element e in user's private storage (0: too long). */
size_t private_key(char *buf, size_t size, const xmppd_jid *user, const xmppd_elem *e);
/* The largest element kept (the max_size option). */
size_t private_max_size(xmppd_ctx *ctx);

/* XEP-0402 5.3 (private_bookmarks.c): a private set of a XEP-0048
 * <storage/> has completed; carry it to the PEP nodes. */
void bookmarks_private_set(xmppd_ctx *ctx, const xmppd_jid *user, const xmppd_elem *storage);
/* Registers the sync when the bookmarks_sync option is on. 0 or -1. */
int bookmarks_load(xmppd_ctx *ctx);

#endif
