/*
 * static.c - a directory served under a path prefix (static.h). The files
 * are read at start-up into one table sorted by path; a request looks its
 * path up there (bsearch) and is answered from memory.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http/http.h"
#include "http/static.h"

struct sfile {
	char *rel;                  /* "dist/converse.min.js" */
	char *data;
	size_t len;
	const char *type;
	char etag[64];              /* "\"<size hex>-<mtime ns hex>\"" */
	char modified[40];          /* IMF-fixdate (RFC 9110 5.6.7) */
};

struct http_static {
	char *prefix;
	char *cache_control;
	char *headers;
	struct sfile *files;
	size_t n, cap, total;
};

static char errbuf[512];

/* ---------------------------------------------------------------- */
/* Content types by extension.                                        */

static const struct {
	const char *ext, *type;
} types[] = {
	{ "html", "text/html; charset=utf-8" },
	{ "htm", "text/html; charset=utf-8" },
	{ "css", "text/css; charset=utf-8" },
	{ "js", "text/javascript; charset=utf-8" },
	{ "mjs", "text/javascript; charset=utf-8" },
	{ "json", "application/json" },
	{ "txt", "text/plain; charset=utf-8" },
	{ "svg", "image/svg+xml" },
	{ "png", "image/png" },
	{ "jpg", "image/jpeg" },
	{ "jpeg", "image/jpeg" },
	{ "gif", "image/gif" },
	{ "webp", "image/webp" },
	{ "ico", "image/vnd.microsoft.icon" },
	{ "woff", "font/woff" },
	{ "woff2", "font/woff2" },
	{ "ttf", "font/ttf" },
	{ "otf", "font/otf" },
	{ "eot", "application/vnd.ms-fontobject" },
	{ "wasm", "application/wasm" },
	{ "mp3", "audio/mpeg" },
	{ "ogg", "audio/ogg" },
	{ "wav", "audio/wav" },
	{ "webmanifest", "application/manifest+json" },
};

static const char *
type_of(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot != NULL && strchr(dot, '/') == NULL)
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcasecmp(dot + 1, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return -1;
}

static int
skipped(const char *name)
{
	size_t n = strlen(name);

	return name[0] == '.' || (n > 4 && strcmp(name + n - 4, ".map") == 0);
}

static int
add_file(struct http_static *s, int dfd, const char *name, const char *rel)
{
	struct sfile *f;
	struct stat st;
	struct tm tm;
	size_t got = 0;
	int fd;

	if (s->n == HTTP_STATIC_MAX_FILES)
		return fail("%s: more than %d files", rel, HTTP_STATIC_MAX_FILES);
	if ((fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return fail("%s: %s", rel, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	if ((size_t)st.st_size > HTTP_STATIC_MAX_FILE ||
	    s->total + (size_t)st.st_size > HTTP_STATIC_MAX_TOTAL) {
		close(fd);
		return fail("%s: too large (a file at most 16 MiB, all at most 64 MiB)", rel);
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct sfile *nf = realloc(s->files, cap * sizeof(*nf));

		if (nf == NULL) {
			close(fd);
			return fail("%s: out of memory", rel);
		}
		s->files = nf;
		s->cap = cap;
	}
	f = &s->files[s->n];
	memset(f, 0, sizeof(*f));
	f->len = (size_t)st.st_size;
	if ((f->rel = strdup(rel)) == NULL || (f->data = malloc(f->len + 1)) == NULL) {
		free(f->rel);
		close(fd);
		return fail("%s: out of memory", rel);
	}
	while (got < f->len) {
		ssize_t r = read(fd, f->data + got, f->len - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(f->rel);
			free(f->data);
			close(fd);
			return fail("%s: %s", rel, r < 0 ? strerror(errno) : "shorter than its size");
		}
		got += (size_t)r;
	}
	close(fd);
	f->data[f->len] = '\0';
	f->type = type_of(rel);
	snprintf(f->etag, sizeof(f->etag), "\"%zx-%llx\"", f->len,
	    (unsigned long long)st.st_mtim.tv_sec * 1000000000ULL +
	    (unsigned long long)st.st_mtim.tv_nsec);
	gmtime_r(&st.st_mtim.tv_sec, &tm);
	strftime(f->modified, sizeof(f->modified), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	s->total += f->len;
	s->n++;
	return 0;
}

/* Walks dfd (owned: closed here); base is its path under the root. */
static int
walk(struct http_static *s, int dfd, const char *base, int depth)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;
	int rc = 0;

	if (d == NULL) {
		close(dfd);
		return fail("%s: %s", *base ? base : ".", strerror(errno));
	}
	if (depth > 16) {
		closedir(d);
		return fail("%s: directories nested too deep", base);
	}
	while (rc == 0 && (e = readdir(d)) != NULL) {
		char rel[1024];
		struct stat st;

		if (skipped(e->d_name))
			continue;
		if ((size_t)snprintf(rel, sizeof(rel), "%s%s%s", base, *base ? "/" : "",
		    e->d_name) >= sizeof(rel)) {
			rc = fail("%s: path too long", base);
			break;
		}
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = fail("%s: %s", rel, strerror(errno));
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), e->d_name,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			rc = sub < 0 ? fail("%s: %s", rel, strerror(errno)) :
			    walk(s, sub, rel, depth + 1);
		} else if (S_ISREG(st.st_mode)) {
			rc = add_file(s, dirfd(d), e->d_name, rel);
		}
		/* Symbolic links and special files are not served. */
	}
	closedir(d);
	return rc;
}

static int
cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct sfile *)a)->rel, ((const struct sfile *)b)->rel);
}

struct http_static *
http_static_load(const char *dir, const char *prefix, const char *cache_control,
    const char *headers, const char **error_r)
{
	struct http_static *s = calloc(1, sizeof(*s));
	int dfd;

	if (s == NULL || (s->prefix = strdup(prefix)) == NULL ||
	    (cache_control != NULL && (s->cache_control = strdup(cache_control)) == NULL) ||
	    (s->headers = strdup(headers != NULL ? headers : "")) == NULL) {
		fail("out of memory");
		goto err;
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		fail("%s: %s", dir, strerror(errno));
		goto err;
	}
	if (walk(s, dfd, "", 0) < 0) {
		char msg[sizeof(errbuf)];

		memcpy(msg, errbuf, sizeof(msg));
		fail("%s/%s", dir, msg);
		goto err;
	}
	if (s->n > 0)
		qsort(s->files, s->n, sizeof(s->files[0]), cmp_file);
	return s;
err:
	*error_r = errbuf;
	http_static_free(&s);
	return NULL;
}

void
http_static_free(struct http_static **sp)
{
	struct http_static *s = *sp;

	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->files[i].rel);
		free(s->files[i].data);
	}
	free(s->files);
	free(s->prefix);
	free(s->cache_control);
	free(s->headers);
	free(s);
	*sp = NULL;
}

size_t
http_static_count(const struct http_static *s, size_t *bytes_r)
{
	if (bytes_r != NULL)
		*bytes_r = s->total;
	return s->n;
}

static const struct sfile *
lookup(const struct http_static *s, const char *rel)
{
	struct sfile key = { .rel = (char *)rel };

	if (s->n == 0)
		return NULL;
	return bsearch(&key, s->files, s->n, sizeof(s->files[0]), cmp_file);
}

const char *
http_static_get(const struct http_static *s, const char *rel, size_t *len_r)
{
	const struct sfile *f = lookup(s, rel);

	if (f == NULL)
		return NULL;
	*len_r = f->len;
	return f->data;
}

/* ---------------------------------------------------------------- */
/* Serving.                                                           */

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The request path under the prefix, percent-decoded (RFC 3986 2.1) into
 * out: 0, or -1 for what no file of ours can be named by (a NUL, a bad
 * escape, an empty, "." or ".." segment: RFC 3986 5.2.4 would move it
 * elsewhere, and we do not play that game). Only lookups in the table
 * follow, so this is belt and braces, not the guard.
 */
static int
decode_rel(const char *p, char *out, size_t outlen)
{
	size_t n = 0;
	const char *seg;

	for (; *p != '\0'; p++) {
		int c = (unsigned char)*p;

		if (c == '%') {
			int h = hexval(p[1]), l = h < 0 ? -1 : hexval(p[2]);

			if (h < 0 || l < 0)
				return -1;
			c = h * 16 + l;
			p += 2;
			/* An escaped '/' names no file of ours either. */
			if (c == 0 || c == '/')
				return -1;
		}
		if (n + 1 >= outlen)
			return -1;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	for (seg = out;; ) {
		size_t len = strcspn(seg, "/");

		if ((len == 0 && seg[len] == '/') || (len == 1 && seg[0] == '.') ||
		    (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return -1;
		if (seg[len] == '\0')
			break;
		seg += len + 1;
	}
	return 0;
}

/* If-None-Match lists f's ETag, or "*" (RFC 9110 13.1.2). */
static int
etag_matches(const char *inm, const char *etag)
{
	size_t el = strlen(etag);

	for (const char *p = inm; *p != '\0'; ) {
		p += strspn(p, " \t,");
		if (*p == '*')
			return 1;
		/* The weak comparison: W/ is ignored. */
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (strncmp(p, etag, el) == 0 && (p[el] == '\0' || strchr(" \t,", p[el]) != NULL))
			return 1;
		p += strcspn(p, ",");
	}
	return 0;
}

static void
answer(struct http_req *r, const struct http_static *s, const struct sfile *f)
{
	const char *inm = http_req_header(r, "If-None-Match");
	const char *ims = http_req_header(r, "If-Modified-Since");
	char *headers;
	int not_modified;

	/* RFC 9110 13.2.2: If-None-Match first; If-Modified-Since only
	 * without it (compared as written: we sent that string). */
	if (inm != NULL)
		not_modified = etag_matches(inm, f->etag);
	else
		not_modified = ims != NULL && strcmp(ims, f->modified) == 0;
	if (asprintf(&headers, "ETag: %s\r\nLast-Modified: %s\r\n%s%s%s%s", f->etag, f->modified,
	    s->cache_control != NULL ? "Cache-Control: " : "",
	    s->cache_control != NULL ? s->cache_control : "",
	    s->cache_control != NULL ? "\r\n" : "", s->headers) < 0) {
		http_error(r, 500, "out of memory");
		return;
	}
	if (not_modified)
		http_respond(r, 304, NULL, "", 0, headers);
	else
		http_respond(r, 200, f->type, f->data, f->len, headers);
	free(headers);
}

void
http_static_handler(struct http_req *r, void *arg)
{
	const struct http_static *s = arg;
	const char *path = http_req_path(r), *method = http_req_method(r);
	size_t plen = strlen(s->prefix);
	const struct sfile *f;
	char rel[1024], idx[1040];

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		http_respond(r, 405, "text/plain; charset=utf-8", "GET or HEAD only\n", 17,
		    "Allow: GET, HEAD\r\n");
		return;
	}
	if (strncmp(path, s->prefix, plen) != 0 || decode_rel(path + plen, rel, sizeof(rel)) < 0) {
		http_error(r, 404, "not found");
		return;
	}
	/* A directory is its index.html; there is no listing. */
	if (rel[0] == '\0' || rel[strlen(rel) - 1] == '/') {
		snprintf(idx, sizeof(idx), "%sindex.html", rel);
		f = lookup(s, idx);
	} else if ((f = lookup(s, rel)) == NULL) {
		/* A directory named without its '/': send the client there,
		 * so that the page's relative URLs resolve under it. */
		snprintf(idx, sizeof(idx), "%s/index.html", rel);
		if (lookup(s, idx) != NULL) {
			char loc[1200];

			snprintf(loc, sizeof(loc), "Location: %s/\r\n", path);
			if (strpbrk(path, "\r\n") == NULL) {
				http_respond(r, 301, "text/plain; charset=utf-8", "moved\n", 6, loc);
				return;
			}
		}
	}
	if (f == NULL) {
		http_error(r, 404, "not found");
		return;
	}
	answer(r, s, f);
}
