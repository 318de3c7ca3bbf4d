/*
 * replay.c - runs a libFuzzer target over its corpus without libFuzzer, so
 * that `make check` replays every kept input with the normal (gcc, and in
 * CI sanitizer) build: t/fuzz/corpus-NAME (the seeds and what fuzzing
 * found worth keeping) and t/fuzz/crashes-NAME (inputs that once crashed,
 * kept as regression tests). Linked with fuzz-NAME.c; prints TAP.
 *
 *   replay-NAME              the two directories under $srcdir/t/fuzz
 *   replay-NAME PATH...      these files or directories
 *
 * A crash or a failed check() aborts with the sanitizer's report; the
 * input being run was named on stdout just before.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FUZZ_NAME
#error FUZZ_NAME must name the target (stream, jid, sasl, conf, proxy)
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int tests, failures;

static void tap(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
tap(int ok, const char *fmt, ...)
{
	va_list ap;

	tests++;
	if (!ok)
		failures++;
	printf("%sok %d - ", ok ? "" : "not ", tests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* Runs one file; 0, or -1 if it could not be read. */
static int
run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (f == NULL)
		return -1;
	do {
		if (len == cap) {
			uint8_t *nb;

			cap = cap ? cap * 2 : 4096;
			if ((nb = realloc(buf, cap)) == NULL) {
				free(buf);
				fclose(f);
				return -1;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	printf("# %s (%zu bytes)\n", path, len);
	fflush(stdout);
	/* An exact-size copy, so that ASan sees a read past the input's end. */
	{
		uint8_t *exact = malloc(len ? len : 1);

		if (exact == NULL) {
			free(buf);
			return -1;
		}
		memcpy(exact, buf, len);
		free(buf);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
	}
	return 0;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file in dir, in name order; the count, or -1. */
static long
run_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;
	long done = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **nn;

			cap = cap ? cap * 2 : 64;
			if ((nn = realloc(names, cap * sizeof(*names))) == NULL)
				break;
			names = nn;
		}
		if ((names[n] = malloc(strlen(dir) + strlen(e->d_name) + 2)) == NULL)
			break;
		sprintf(names[n], "%s/%s", dir, e->d_name);
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		struct stat st;

		if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(names[i]) < 0)
				done = -1;
			else if (done >= 0)
				done++;
		}
		free(names[i]);
	}
	free(names);
	return done;
}

static void
run_path(const char *path, int must_exist)
{
	struct stat st;
	long n;

	if (stat(path, &st) != 0) {
		if (must_exist || errno != ENOENT)
			tap(0, "%s exists (%s)", path, strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		tap(run_file(path) == 0, "%s replayed", path);
		return;
	}
	n = run_dir(path);
	tap(n >= (must_exist ? 1 : 0), "%s: every input replayed (%ld)", path, n);
}

int
main(int argc, char **argv)
{
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			run_path(argv[i], 1);
	} else {
		const char *src = getenv("srcdir");
		char path[4096];

		if (src == NULL)
			src = ".";
		/* The corpus must be there; crash inputs only once there are. */
		snprintf(path, sizeof(path), "%s/t/fuzz/corpus-%s", src, FUZZ_NAME);
		run_path(path, 1);
		snprintf(path, sizeof(path), "%s/t/fuzz/crashes-%s", src, FUZZ_NAME);
		run_path(path, 0);
	}
	printf("1..%d\n", tests);
	return failures != 0;
}
