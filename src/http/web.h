/*
 * web.h - the web pages of the HTTP listener: the admin page under
 * /admin/ (static files from admin_page_dir, talking to /api/) and the
 * Converse.js web chat at /chat (doc/admin.md, "Web admin" and "Web chat").
 * Their files are read once at start-up; later reloads of xmppd.yml do not
 * change them.
 */
#ifndef XMPPD_HTTP_WEB_H
#define XMPPD_HTTP_WEB_H

struct conf;
struct conf_section;

/* admin_page, admin_page_dir, web_chat, conversejs_path. */
extern const struct conf_section web_conf_section;

/* Reads the files and registers the routes; main thread, after http_init.
 * A directory that cannot be read is logged and its pages answer 503:
 * the server runs without them. 0, or -1 (out of memory). */
int web_init(const struct conf *c);
/* After http_free (no request can be running). */
void web_free(void);

#endif
