/*
 * conf.h - the running configuration, read from xmppd.yml with libyaml.
 *
 * A struct conf is immutable once loaded. The running one is swapped whole on
 * reload (conf_current/conf_swap); holders take a reference for as long as
 * they use it (a connection keeps the one it started with), and the old copy
 * is freed when the last reference goes.
 *
 * Keys follow ejabberd.yml where one exists; see doc/configuration.md.
 */
#ifndef XMPPD_CONF_H
#define XMPPD_CONF_H

#include <stddef.h>
#include <stdint.h>

enum conf_listen_module { CONF_LISTEN_C2S, CONF_LISTEN_S2S, CONF_LISTEN_HTTP, CONF_LISTEN_COMPONENT,
	CONF_LISTEN__COUNT };

/* An external component's domain on a `module: component` listener
 * (XEP-0114; the `hosts` key, as ejabberd's ejabberd_service). */
struct conf_component_host {
	char *domain;               /* prepared (nameprep) */
	char *password;             /* the shared secret of the handshake */
	int line;
};

struct conf_listen {
	char *ip;                   /* "::" by default; "127.0.0.1", ... */
	uint16_t port;
	enum conf_listen_module module;
	int tls;                    /* direct TLS (XEP-0368), ALPN set by module */
	int starttls_required;      /* c2s default 1 */
	size_t max_stanza_size;     /* c2s default 262144, s2s 524288 */
	char *shaper;               /* name or NULL (module issue) */
	int secure;                 /* http: plain, but counts as encrypted (a TLS proxy in front) */
	/* PROXY protocol (net/proxy.h): every connection starts with a
	 * header from one of trusted_proxies; default 0. */
	int proxy_protocol;
	int line;                   /* where it was declared, for messages */
	/* module: component only: the domains it serves and their secrets. */
	struct conf_component_host *components;
	size_t ncomponents;
};

/*
 * A YAML node kept as it was written, for the sections whose shape only
 * their consumer knows (module options). Every node remembers its line so
 * that the consumer's errors can say file:line.
 */
enum conf_node_type { CONF_NODE_SCALAR, CONF_NODE_SEQ, CONF_NODE_MAP };

struct conf_node {
	enum conf_node_type type;
	int line;
	char *scalar;               /* CONF_NODE_SCALAR */
	size_t n;                   /* items (SEQ) or pairs (MAP) */
	char **keys;                /* MAP: the keys, in file order */
	struct conf_node **items;   /* SEQ items or MAP values */
};

/* modules: NAME: {options}, in file order. */
struct conf_module {
	char *name;                 /* "mod_ping" */
	int line;
	struct conf_node *opts;     /* a MAP (empty map if none given) */
};

/*
 * Access control in the ejabberd style (doc/configuration.md, "Access
 * control"). An acl is a named list of matchers; an access rule an ordered
 * list of allow/deny over acl names ("all" and "none" are built in).
 */
enum conf_acl_kind {
	CONF_ACL_USER,              /* "alice@example.org", or "alice" on any local host */
	CONF_ACL_SERVER,            /* "example.org" */
	CONF_ACL_IP,                /* "192.0.2.0/24", "2001:db8::/32", "127.0.0.1" */
	CONF_ACL_USER_REGEXP,       /* POSIX ERE on the node, local hosts only */
	CONF_ACL_SERVER_REGEXP,     /* POSIX ERE on the domain */
	CONF_ACL_RESOURCE,          /* exact resource */
};

struct conf_acl_matcher {
	enum conf_acl_kind kind;
	char *value;                /* as written (prepared for user/server) */
	void *compiled;             /* regex_t * for the regexp kinds */
	unsigned char addr[16];     /* IP: network, IPv4 as IPv4-mapped IPv6 */
	unsigned prefix;            /* IP: prefix length in the IPv6 form */
	int line;
};

struct conf_acl {
	char *name;
	struct conf_acl_matcher *m;
	size_t n;
	int line;
};

struct conf_access_rule {
	char *name;
	struct {
		int allow;              /* 1 allow, 0 deny */
		char *acl;              /* an acl name, "all" or "none" */
		int line;               /* where the acl was named */
	} *r;
	size_t n;
	int line;
};

/* An address or network (trusted_proxies): IPv4 as IPv4-mapped IPv6,
 * the prefix length in that form, bits past it cleared. */
struct conf_net {
	unsigned char addr[16];
	unsigned prefix;
};

struct conf_shaper {
	char *name;
	uint64_t rate;              /* bytes per second */
	uint64_t burst;             /* bucket size in bytes (default: rate) */
	int line;
};

struct conf {
	int refcount;               /* atomic; see conf_ref/conf_unref */
	char *path;                 /* the file it was read from */

	char **hosts;               /* prepared (nameprep) domain names */
	size_t nhosts;
	char **certfiles;           /* PEM files: certificate chain + key */
	size_t ncertfiles;
	char *ca_file;              /* for verifying peers (s2s), or NULL */

	int loglevel;               /* enum log_level */
	char *log;                  /* "stderr" (default), "syslog" or a path */

	unsigned workers;           /* 0 = online CPUs (resolved at start) */
	char *spool_dir;            /* LMDB environment directory */
	size_t store_map_size;      /* bytes, default 1 GiB */
	unsigned store_test_delay_ms; /* tests only: store work completes this late; 0 */
	unsigned store_commit_window_ms; /* a worker commits at most once per window; 0 */
	char *user;                 /* drop to this user after binding, or NULL */
	char *pidfile;              /* or NULL */
	char *ctl_socket;           /* default: <spool_dir>/xmppd.ctl */

	struct conf_listen *listen;
	size_t nlisten;

	/* Limits (doc/configuration.md, "Limits"). */
	unsigned negotiation_timeout;      /* s, unauthenticated stream; default 30 */
	unsigned hibernate_after;          /* s idle before a client stream's parser goes; 0 never; 90 */
	unsigned max_xml_depth;            /* default 32 */
	unsigned max_xml_attrs;            /* default 64 */
	unsigned max_connections_per_ip;   /* default 100; 0 = unlimited */
	unsigned auth_failure_delay_ms;    /* default 1000 */
	unsigned max_auth_attempts;        /* per stream, default 3 */

	/* Stream management, XEP-0198 (c2s/c2s_conf.c; doc/configuration.md,
	 * "Stream management"). */
	unsigned sm_max_resume;            /* s a detached session waits; 0: no resumption; 300 */
	unsigned sm_max_ack_queue;         /* unacknowledged stanzas before policy-violation; 5000 */
	unsigned sm_ack_after;             /* <r/> after this many unacknowledged stanzas; 5 */
	unsigned sm_ack_interval;          /* s: <r/> when stanzas wait unacknowledged this long; 30 */
	unsigned sm_ack_timeout;           /* s an <r/> may go unanswered before the link is dead; 60 */
	int sm_durable;                    /* resumption state kept in the store (survives a restart); 0 */
	size_t max_send_queue;             /* bytes queued to a slow reader, default 1 MiB */
	unsigned scram_iterations;         /* default 4096 */
	int tls_min_version;               /* TLS1_2_VERSION (default) or TLS1_3_VERSION */
	int allow_plain;                   /* offer PLAIN (over TLS only); default 1 */

	/* Modules (hooks/xmppd.h): loaded in this order, dependencies first. */
	char *module_dir;                  /* default: XMPPD_MODULE_DIR */
	struct conf_module *modules;
	size_t nmodules;

	struct conf_acl *acls;
	size_t nacls;
	struct conf_access_rule *access_rules;
	size_t naccess_rules;
	struct conf_shaper *shapers;
	size_t nshapers;
	char *c2s_access;                  /* access rule for logins; NULL: everyone */
	/* Proxies whose PROXY header or X-Forwarded-For is believed
	 * (net/proxy.h); default none. */
	struct conf_net *trusted_proxies;
	size_t ntrusted_proxies;

	/* The HTTP listener (http/http_conf.c, doc/configuration.md "HTTP"). */
	size_t http_max_header_size;       /* request line and headers; default 8 KiB */
	size_t http_max_body_size;         /* default 1 MiB */
	unsigned http_request_timeout;     /* s from a request's first byte to its end; 10 */
	unsigned http_idle_timeout;        /* s a kept-alive connection may idle; 60 */
	unsigned http_max_requests_per_ip; /* a second (burst twice that); 0 unlimited; 100 */
	char *public_base_url;             /* "https://chat.example.org"; NULL: from Host */
	char **websocket_origins;          /* allowed Origin values; none set: any */
	size_t nwebsocket_origins;
	unsigned websocket_ping_interval;  /* s of quiet before a ping; 0 never; 60 */
	/* BOSH (XEP-0124, c2s/bosh.c). */
	unsigned bosh_max_wait;            /* s a request may be held; 60 */
	unsigned bosh_max_inactivity;      /* s with no request before the session ends; 60 */
	unsigned bosh_max_pause;           /* s a client may pause for (XEP-0124 10); 120 */
	/* Web pages on the HTTP listener (http/web.c, doc/admin.md "Web
	 * admin" and "Web chat"); read at start-up. */
	int admin_page;                    /* /admin/ served; default 1 */
	char *admin_page_dir;              /* NULL: XMPPD_WWW_DIR "/admin" */
	int web_chat;                      /* /chat served; default 1 */
	char *conversejs_path;             /* Converse.js dist/; NULL: XMPPD_CONVERSEJS_DIR */

	/* Federation (doc/federation.md). */
	int s2s_use_starttls;              /* CONF_S2S_TLS_*; default REQUIRED */
	int s2s_dialback;                  /* XEP-0220 allowed; default 1 */
	char *s2s_secret;                  /* dialback key secret; NULL = random per start */
	char *s2s_access;                  /* access rule over remote domains; NULL = all */
	struct conf_s2s_host *s2s_hosts;   /* domain -> host:port pins */
	size_t ns2s_hosts;
	unsigned s2s_idle_timeout;         /* s, a link with no stanza closes; 0 = never; 600 */
	unsigned s2s_keepalive;            /* s idle before a whitespace ping; 0 = off; 60 */
	unsigned s2s_keepalive_timeout;    /* s for that ping to leave the send queue; 30 */
	unsigned s2s_connect_timeout;      /* s from resolving to authenticated; 30 */
	unsigned s2s_max_queue;            /* stanzas queued per link while it opens; 1000 */
	char *s2s_resolv_conf;             /* nameservers for SRV/A/AAAA; /etc/resolv.conf */
};

enum { CONF_S2S_TLS_FALSE, CONF_S2S_TLS_OPTIONAL, CONF_S2S_TLS_REQUIRED };

/* s2s_hosts: where to connect for a remote domain instead of DNS. */
struct conf_s2s_host {
	char *domain;               /* prepared */
	char *host;                 /* name or address ("::1" without brackets) */
	uint16_t port;              /* default 5269 */
	int line;
};

/*
 * Reads path. Returns the configuration, or NULL with a message in *error_r
 * (if error_r is not NULL): "xmppd.yml:12: 'workers' expects a whole number
 * from 0 to 1024". Unknown keys are errors; a key is known if a built-in
 * section or one registered with conf_section_register (conf_keys.h) has
 * it. Relative paths in the file (spool_dir, certfiles, ...) are taken
 * relative to the file's directory.
 *
 * The message is in a buffer of the calling thread, valid until that
 * thread's next conf_load or conf_parse: copy it to keep it longer.
 */
struct conf *conf_load(const char *path, const char **error_r);
/* The same for len bytes at buf as if read from path (which names the file
 * in messages and is the base of relative paths); the fuzz target's entry. */
struct conf *conf_parse(const char *path, const char *buf, size_t len,
    const char **error_r);
struct conf *conf_ref(struct conf *c);
void conf_unref(struct conf *c);

/* The running configuration: conf_current returns a new reference. */
struct conf *conf_current(void);
/* Installs c (takes the caller's reference) and drops the old one. */
void conf_swap(struct conf *c);
/*
 * The running configuration for the calling thread's hot paths, without a
 * lock: a reference cached per thread, refreshed when a swap has happened
 * since. Borrowed: valid until the thread's next conf_local call. A worker
 * or the main thread drops its cached reference with conf_local_release
 * before it exits; any other thread's is dropped when the thread exits.
 */
const struct conf *conf_local(void);
void conf_local_release(void);

/* conf_node trees (module options): free, deep copy, compare. */
void conf_node_free(struct conf_node *n);
struct conf_node *conf_node_dup(const struct conf_node *n);
int conf_node_equal(const struct conf_node *a, const struct conf_node *b);

/* 1 if host is one of c->hosts. */
int conf_is_local_host(const struct conf *c, const char *host);
/* The s2s_hosts entry for a remote domain, or NULL. */
const struct conf_s2s_host *conf_s2s_host(const struct conf *c, const char *domain);

#endif
