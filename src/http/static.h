/*
 * static.h - static files on the HTTP listener: a directory served under a
 * path prefix (the web admin page, Converse.js's dist/). Every regular file
 * under the directory is read into memory once, at start-up on the main
 * thread (bounded in count and size), so that a request does no disk I/O on
 * its worker and a path can only ever name a file of that table: nothing
 * outside the directory is reachable, whatever the request says.
 *
 * GET and HEAD; Content-Type by extension; a strong ETag and Last-Modified
 * with If-None-Match / If-Modified-Since (RFC 9110 13.1, 304); the
 * Cache-Control and extra headers the owner gives; index.html for a
 * directory; no directory listing.
 */
#ifndef XMPPD_HTTP_STATIC_H
#define XMPPD_HTTP_STATIC_H

#include <stddef.h>

struct http_req;
struct http_static;

/* Limits of one directory: files, bytes of one file, bytes in all. */
#define HTTP_STATIC_MAX_FILES 4096
#define HTTP_STATIC_MAX_FILE ((size_t)16 << 20)
#define HTTP_STATIC_MAX_TOTAL ((size_t)64 << 20)

/*
 * Reads dir (files whose name starts with '.' and source maps "*.map" are
 * left out, as are symbolic links). prefix is the URL path the files sit
 * under, ending in '/' ("/admin/"). cache_control is the value of the
 * Cache-Control header ("no-cache") or NULL; headers are extra header
 * lines ("Name: value\r\n" each) added to every answer, or NULL. Both are
 * copied. NULL with the reason in *error_r (a static buffer) on failure.
 */
struct http_static *http_static_load(const char *dir, const char *prefix,
    const char *cache_control, const char *headers, const char **error_r);
void http_static_free(struct http_static **s);
/* Files and bytes loaded. */
size_t http_static_count(const struct http_static *s, size_t *bytes_r);
/* The content of a file by its path under the directory ("index.html"), or
 * NULL. Borrowed from s. */
const char *http_static_get(const struct http_static *s, const char *rel, size_t *len_r);

/* The handler (arg: the struct http_static) for the routes of prefix. */
void http_static_handler(struct http_req *r, void *arg);

#endif
