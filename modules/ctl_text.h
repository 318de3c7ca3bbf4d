/*
 * ctl_text.h - the text of an xmppctl answer for the modules that add
 * commands (xmppd_ctl_register); compiled into each such module
 * (modules/ctl_text.c).
 */
#ifndef CTL_TEXT_H
#define CTL_TEXT_H

#include <xmppd.h>

/* A malloc'd string printed from fmt, for *out_r; NULL without memory
 * (xmppctl then says the command failed). */
char *ctl_text(const char *fmt, ...) XMPPD_PRINTF(1, 2);

#endif
