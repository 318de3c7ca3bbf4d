/* http_conf.h - the HTTP listener's section of xmppd.yml (http_conf.c). */
#ifndef XMPPD_HTTP_HTTP_CONF_H
#define XMPPD_HTTP_HTTP_CONF_H

struct conf_section;
extern const struct conf_section http_conf_section;

#endif
