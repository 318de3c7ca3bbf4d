/*
 * strfmt.h - a malloc'd printf, for the modules' xmppctl answers, paths
 * and the like; compiled into each module that uses it (modules/strfmt.c).
 */
#ifndef STRFMT_H
#define STRFMT_H

#include <xmppd.h>

/* A malloc'd string printed from fmt; NULL without memory (an xmppctl
 * command answering NULL is reported as failed). */
char *strfmt(const char *fmt, ...) XMPPD_PRINTF(1, 2);

#endif
