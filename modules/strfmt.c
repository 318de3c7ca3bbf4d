/*
 * strfmt.c - see strfmt.h.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>

#include "strfmt.h"

char *
strfmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}
