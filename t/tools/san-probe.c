/*
 * san-probe.c - a program that does one bad thing on purpose, built with
 * the same flags as xmppd, for t/integration/t0000-sanitizers.py: in a
 * sanitizer build each bad thing must produce a report that the harness's
 * scanner recognises and a non-zero exit status, or the suite's log scans
 * and exit-status checks would pass whatever the server did.
 *
 *   san-probe none | heap-overflow | use-after-free | leak | ubsan
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kept out of the compiler's sight so that nothing is folded away. */
static volatile int one = 1;
static void *volatile keep;

int
main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "none";

	if (strcmp(what, "none") == 0) {
		char *p = malloc(16);

		free(p);
		return 0;
	}
	if (strcmp(what, "heap-overflow") == 0) {
		/* Through a volatile pointer, so that UBSan's object-size
		 * check does not see the size and ASan is the one to report. */
		char *volatile p = calloc(16, 1);
		int c;

		c = p[16 + one - 1];  /* one byte past the end */
		free(p);
		return c;
	}
	if (strcmp(what, "use-after-free") == 0) {
		char *volatile p = malloc(16);

		free(p);
		return p[one];  /* p passed through a volatile: no warning */
	}
	if (strcmp(what, "leak") == 0) {
		keep = malloc(4096);
		keep = NULL;  /* the only pointer is gone: a leak at exit */
		return 0;
	}
	if (strcmp(what, "ubsan") == 0) {
		int big = INT_MAX - 1 + one;

		return big + one > 0;  /* signed overflow */
	}
	fprintf(stderr, "usage: san-probe none|heap-overflow|use-after-free|leak|ubsan\n");
	return 2;
}
