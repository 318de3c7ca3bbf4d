/*
 * mod_http_upload - XEP-0363: HTTP File Upload.
 *
 * The service upload.HOST (one per host, modules/service_domains.c)
 * answers disco#info with urn:xmpp:http:upload:0 and its max-file-size
 * (XEP-0363 3) and hands out slots (XEP-0363 4): a PUT URL and a GET URL
 * on the HTTP listeners' /upload/ path,
 *
 *     PUT  BASE/upload/SLOTID/FILENAME?v=EXPIRY.HMAC
 *     GET  BASE/upload/SLOTID/FILENAME
 *
 * SLOTID is 128 bits from the CSPRNG (hex), so a GET URL cannot be
 * guessed (XEP-0363 9.2); HMAC is HMAC-SHA256 of SLOTID, FILENAME, the
 * size, the content type and EXPIRY under the module's secret, so a PUT
 * URL cannot be forged or stretched past put_ttl (9.1). The PUT's body is
 * streamed to SPOOL/upload/SLOTID/file.part (ABI 1.8: never in memory)
 * and renamed to file when complete; the GET is answered from the file
 * as the client reads it, with Range (RFC 9110 14).
 *
 * State: every slot (pending or complete) in a table in memory, guarded
 * by one mutex (the service's worker adds, HTTP workers look up, the
 * purge and xmppctl remove), and on disk as SPOOL/upload/SLOTID/meta
 * (read back at load). Disk work on the workers: the meta file (a few
 * hundred bytes) at a slot request, each piece of a PUT's body as it is
 * read (one write(2)), and open/pread of a GET: bounded, page-cache work
 * (doc/modules.md, "mod_http_upload").
 */
#define _GNU_SOURCE             /* asprintf */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <xmppd.h>

#include "service_domains.h"
#include "strfmt.h"

#define NS_UPLOAD "urn:xmpp:http:upload:0"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_DATA "jabber:x:data"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

#define ID_LEN 32               /* 128 bits, hex */
#define MAX_FILENAME 255        /* bytes */
#define MAX_CTYPE 128
#define BUCKETS 4096
#define OWNER_BUCKETS 4096
#define CTL_USAGE "upload list [USER@HOST] | upload purge --all|USER@HOST|older-than SECONDS"

enum slot_state { SLOT_PENDING, SLOT_UPLOADING, SLOT_DONE };

/* What one user holds: the quota is checked against it in O(1). */
struct owner {
	struct owner *next;
	struct slot *slots;         /* its slots, by onext */
	uint64_t bytes;             /* of its slots, complete or not */
	size_t nslots;
	char bare[];
};

struct slot {
	struct slot *next;
	char id[ID_LEN + 1];
	char *owner;                /* bare JID */
	struct owner *own;          /* its entry in up.owners, while in the table */
	struct slot *onext, **oprev; /* in own->slots */
	char *filename;
	char *enc;                  /* filename percent-encoded (the URL's) */
	char *ctype;
	uint64_t size;
	int64_t created;            /* unix time */
	int64_t put_expiry;         /* unix time the PUT URL expires */
	enum slot_state state;
};

static const struct xmppd_option options[] = {
	/* Domains: host_prefix + each host (or of `hosts`). */
	{ "hosts", XMPPD_OPT_STRING_LIST, NULL, 0, 0 },
	{ "host_prefix", XMPPD_OPT_STRING, "upload.", 0, 0 },
	{ "name", XMPPD_OPT_STRING, "HTTP File Upload", 0, 0 },
	/* The URL the HTTP listener is reached at, e.g.
	 * "https://upload.example.org:5443" (required). */
	{ "base_url", XMPPD_OPT_STRING, NULL, 0, 0 },
	{ "max_file_size", XMPPD_OPT_INT, "104857600", 1, 1L << 40 },
	/* Bytes of files (complete and pending) per user; 0: no limit. */
	{ "user_quota", XMPPD_OPT_INT, "1073741824", 0, 1L << 50 },
	/* Seconds a PUT URL is valid. */
	{ "put_ttl", XMPPD_OPT_INT, "300", 1, 86400 },
	/* Seconds a file is kept; 0: for ever. */
	{ "expire_after", XMPPD_OPT_INT, "2592000", 0, 20L * 365 * 86400 },
	{ "purge_interval", XMPPD_OPT_INT, "3600", 1, 86400 },
	/* The HMAC key; unset: a random one kept in SPOOL/upload/secret. */
	{ "upload_secret", XMPPD_OPT_STRING, NULL, 0, 0 },
	{ NULL, 0, NULL, 0, 0 },
};

static struct {
	xmppd_ctx *ctx;
	char **services;
	size_t nservices;
	char *dir;                  /* SPOOL/upload */
	char *base_url;
	const char *name;
	uint64_t max_file_size, user_quota;
	int64_t put_ttl, expire_after, purge_interval;
	unsigned char secret[64];
	size_t secret_len;
	pthread_mutex_t lock;
	struct slot *b[BUCKETS];
	size_t nslots;
	struct owner *owners[OWNER_BUCKETS];
} up = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* ---------------------------------------------------------------- */
/* Helpers.                                                           */

static int
is(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static const char *
our_service(const char *domain)
{
	for (size_t i = 0; i < up.nservices; i++)
		if (is(up.services[i], domain))
			return up.services[i];
	return NULL;
}

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

static int
is_hexid(const char *s, size_t n)
{
	if (n != ID_LEN)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* RFC 3986 2.3: unreserved characters stay, every other byte is %XX;
 * also a valid RFC 8187 value-chars for Content-Disposition. */
static char *
pct_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *o = malloc(3 * n + 1), *p = o;

	if (o == NULL)
		return NULL;
	for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
		if (isalnum(*c) || *c == '-' || *c == '.' || *c == '_' || *c == '~') {
			*p++ = (char)*c;
		} else {
			*p++ = '%';
			*p++ = hex[*c >> 4];
			*p++ = hex[*c & 15];
		}
	}
	*p = '\0';
	return o;
}

/* A file name a client may give (XEP-0363 4: a name, not a path). */
static int
filename_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > MAX_FILENAME || is(s, ".") || is(s, ".."))
		return 0;
	for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++)
		if (*c < 0x20 || *c == 0x7f || *c == '/' || *c == '\\')
			return 0;
	return 1;
}

/* A media type we can echo in a header: type/subtype with token
 * characters and simple parameters, nothing that could end the line. */
static int
ctype_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MAX_CTYPE || strchr(s, '/') == NULL)
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	    "!#$&^_.+-/;= ") == n;
}

/* The media type without parameters, for comparing two. */
static size_t
ctype_base_len(const char *s)
{
	size_t n = strcspn(s, "; \t");

	return n;
}

static int
ctype_match(const char *a, const char *b)
{
	size_t na = ctype_base_len(a), nb = ctype_base_len(b);

	return na == nb && strncasecmp(a, b, na) == 0;
}

/* hex HMAC-SHA256 of the slot's fields and expiry (XEP-0363 9.1). */
static void
slot_hmac(const char *id, const char *filename, uint64_t size, const char *ctype,
    int64_t expiry, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char *data = strfmt("%s|%s|%" PRIu64 "|%s|%" PRId64, id, filename, size, ctype, expiry);

	out[0] = '\0';
	if (data == NULL)
		return;
	if (HMAC(EVP_sha256(), up.secret, (int)up.secret_len, (unsigned char *)data,
	    strlen(data), md, &mdlen) != NULL) {
		for (unsigned i = 0; i < mdlen && i < 32; i++)
			snprintf(out + 2 * i, 3, "%02x", md[i]);
	}
	free(data);
}

/* ---------------------------------------------------------------- */
/* The slot table (up.lock).                                          */

static unsigned
bucket(const char *id)
{
	unsigned h = 0;

	for (int i = 0; i < 3; i++)
		h = h * 16 + (unsigned)(id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
	return h % BUCKETS;
}

static struct slot *
slot_find(const char *id)
{
	for (struct slot *s = up.b[bucket(id)]; s != NULL; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

static void
slot_free(struct slot *s)
{
	if (s == NULL)
		return;
	free(s->owner);
	free(s->filename);
	free(s->enc);
	free(s->ctype);
	free(s);
}

static unsigned
owner_bucket(const char *bare)
{
	uint32_t h = 2166136261u;   /* FNV-1a */

	for (; *bare != '\0'; bare++)
		h = (h ^ (unsigned char)*bare) * 16777619u;
	return h % OWNER_BUCKETS;
}

static struct owner *
owner_find(const char *bare)
{
	for (struct owner *o = up.owners[owner_bucket(bare)]; o != NULL; o = o->next)
		if (strcmp(o->bare, bare) == 0)
			return o;
	return NULL;
}

/* Puts s in the table and counts it to its owner; with up.lock held.
 * -1 without memory (s is not in the table then). */
static int
slot_insert(struct slot *s)
{
	unsigned h = bucket(s->id);
	struct owner *o = owner_find(s->owner);

	if (o == NULL) {
		unsigned oh = owner_bucket(s->owner);
		size_t n = strlen(s->owner) + 1;

		if ((o = calloc(1, sizeof(*o) + n)) == NULL)
			return -1;
		memcpy(o->bare, s->owner, n);
		o->next = up.owners[oh];
		up.owners[oh] = o;
	}
	o->bytes += s->size;
	o->nslots++;
	s->own = o;
	if ((s->onext = o->slots) != NULL)
		o->slots->oprev = &s->onext;
	o->slots = s;
	s->oprev = &o->slots;
	s->next = up.b[h];
	up.b[h] = s;
	up.nslots++;
	return 0;
}

/* Takes s's bytes off its owner, and the owner off the table with its
 * last slot; the caller has taken s out of up.b. With up.lock held. */
static void
slot_uncount(struct slot *s)
{
	struct owner *o = s->own;

	up.nslots--;
	s->own = NULL;
	if (o == NULL)
		return;
	if ((*s->oprev = s->onext) != NULL)
		s->onext->oprev = s->oprev;
	s->onext = NULL;
	s->oprev = NULL;
	o->bytes -= s->size;
	if (--o->nslots > 0)
		return;
	for (struct owner **p = &up.owners[owner_bucket(o->bare)]; *p != NULL; p = &(*p)->next) {
		if (*p == o) {
			*p = o->next;
			break;
		}
	}
	free(o);
}

static void
slot_unlink(struct slot *s)
{
	for (struct slot **p = &up.b[bucket(s->id)]; *p != NULL; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			slot_uncount(s);
			return;
		}
	}
}

/* Bytes owner has in slots, complete or not. */
static uint64_t
usage(const char *owner)
{
	struct owner *o = owner_find(owner);

	return o != NULL ? o->bytes : 0;
}

static struct slot *
slot_new(const char *id, const char *owner, const char *filename, const char *ctype,
    uint64_t size, int64_t created, int64_t put_expiry)
{
	struct slot *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->owner = strdup(owner);
	s->filename = strdup(filename);
	s->enc = pct_encode(filename);
	s->ctype = strdup(ctype);
	s->size = size;
	s->created = created;
	s->put_expiry = put_expiry;
	if (s->owner == NULL || s->filename == NULL || s->enc == NULL || s->ctype == NULL) {
		slot_free(s);
		return NULL;
	}
	return s;
}

/* ---------------------------------------------------------------- */
/* Files.                                                             */

static char *
slot_path(const char *id, const char *leaf)
{
	return strfmt("%s/%s%s%s", up.dir, id, leaf != NULL ? "/" : "", leaf != NULL ? leaf : "");
}

/* Removes a slot's directory and what is in it. */
static void
slot_remove_files(const char *id)
{
	static const char *const leaves[] = { "file", "file.part", "meta", NULL };

	for (int i = 0; leaves[i] != NULL; i++) {
		char *p = slot_path(id, leaves[i]);

		if (p != NULL)
			(void)unlink(p);
		free(p);
	}
	char *d = slot_path(id, NULL);

	if (d != NULL)
		(void)rmdir(d);
	free(d);
}

/* meta: a version line, then one field a line (a file name has no
 * newline: filename_ok). */
static int
meta_write(const struct slot *s)
{
	char *d = slot_path(s->id, NULL), *p = slot_path(s->id, "meta");
	char *text = strfmt("xmppd-upload 1\n%s\n%s\n%s\n%" PRIu64 "\n%" PRId64 "\n%" PRId64 "\n",
	    s->owner, s->filename, s->ctype, s->size, s->created, s->put_expiry);
	int fd = -1, rc = -1;

	if (d == NULL || p == NULL || text == NULL)
		goto out;
	if (mkdir(d, 0750) < 0)
		goto out;
	if ((fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640)) < 0)
		goto out;
	if (write(fd, text, strlen(text)) == (ssize_t)strlen(text))
		rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0 && d != NULL) {
		if (p != NULL)
			(void)unlink(p);
		(void)rmdir(d);
	}
	free(d);
	free(p);
	free(text);
	return rc;
}

/* Reads SPOOL/upload/ID/meta back (load, the main thread). */
static struct slot *
meta_read(const char *id)
{
	char *p = slot_path(id, "meta"), *f = slot_path(id, "file");
	char buf[2048], *line[8], *save = NULL;
	struct slot *s = NULL;
	struct stat st;
	ssize_t n = -1;
	int fd, k = 0;

	if (p != NULL && (fd = open(p, O_RDONLY | O_CLOEXEC)) >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
	}
	if (n <= 0)
		goto out;
	buf[n] = '\0';
	for (char *t = strtok_r(buf, "\n", &save); t != NULL && k < 8; t = strtok_r(NULL, "\n", &save))
		line[k++] = t;
	if (k != 7 || !is(line[0], "xmppd-upload 1"))
		goto out;
	s = slot_new(id, line[1], line[2], line[3], strtoull(line[4], NULL, 10),
	    strtoll(line[5], NULL, 10), strtoll(line[6], NULL, 10));
	if (s != NULL && f != NULL && stat(f, &st) == 0 && (uint64_t)st.st_size == s->size)
		s->state = SLOT_DONE;
out:
	free(p);
	free(f);
	return s;
}

static int
load_slots(void)
{
	DIR *d = opendir(up.dir);
	struct dirent *e;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		struct slot *s;

		if (!is_hexid(e->d_name, strlen(e->d_name)))
			continue;
		if ((s = meta_read(e->d_name)) == NULL) {
			xmppd_log(up.ctx, XMPPD_LOG_WARNING, "%s/%s: no valid meta, ignored", up.dir,
			    e->d_name);
			continue;
		}
		/* A PUT cut by a stop leaves its part: the slot is pending again. */
		char *part = slot_path(s->id, "file.part");

		if (part != NULL)
			(void)unlink(part);
		free(part);
		if (slot_insert(s) < 0) {
			slot_free(s);
			closedir(d);
			return -1;
		}
	}
	closedir(d);
	return 0;
}

static int
load_secret(void)
{
	const char *opt = xmppd_opt_string(up.ctx, "upload_secret");
	char *p;
	int fd, rc = -1;

	if (opt != NULL && opt[0] != '\0') {
		up.secret_len = strlen(opt) < sizeof(up.secret) ? strlen(opt) : sizeof(up.secret);
		memcpy(up.secret, opt, up.secret_len);
		return 0;
	}
	/* Kept in the spool: URLs handed out stay valid across a restart. */
	if ((p = strfmt("%s/secret", up.dir)) == NULL)
		return -1;
	if ((fd = open(p, O_RDONLY | O_CLOEXEC)) >= 0) {
		if (read(fd, up.secret, 32) == 32)
			rc = 0;
		close(fd);
	} else if (errno == ENOENT && RAND_bytes(up.secret, 32) == 1 &&
	    (fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0) {
		if (write(fd, up.secret, 32) == 32 && fsync(fd) == 0)
			rc = 0;
		close(fd);
	}
	if (rc < 0)
		xmppd_log(up.ctx, XMPPD_LOG_ERROR, "%s: cannot read or make the secret", p);
	up.secret_len = 32;
	free(p);
	return rc;
}

/* ---------------------------------------------------------------- */
/* The service (XMPP).                                                */

static void
disco_info(xmppd_elem *iq)
{
	xmppd_elem *q = xmppd_elem_new(NS_DISCO_INFO, "query"), *e, *x, *f;
	char max[32];

	/* XEP-0363 3: the feature, and max-file-size in a XEP-0128 form. */
	e = xmppd_elem_add_child(q, NS_DISCO_INFO, "identity");
	xmppd_elem_set_attr(e, "category", "store");
	xmppd_elem_set_attr(e, "type", "file");
	xmppd_elem_set_attr(e, "name", up.name);
	xmppd_elem_set_attr(xmppd_elem_add_child(q, NS_DISCO_INFO, "feature"), "var", NS_UPLOAD);
	xmppd_elem_set_attr(xmppd_elem_add_child(q, NS_DISCO_INFO, "feature"), "var",
	    NS_DISCO_INFO);
	x = xmppd_elem_add_child(q, NS_DATA, "x");
	xmppd_elem_set_attr(x, "type", "result");
	f = xmppd_elem_add_child(x, NS_DATA, "field");
	xmppd_elem_set_attr(f, "var", "FORM_TYPE");
	xmppd_elem_set_attr(f, "type", "hidden");
	xmppd_elem_add_text(xmppd_elem_add_child(f, NS_DATA, "value"), NS_UPLOAD, strlen(NS_UPLOAD));
	f = xmppd_elem_add_child(x, NS_DATA, "field");
	xmppd_elem_set_attr(f, "var", "max-file-size");
	snprintf(max, sizeof(max), "%" PRIu64, up.max_file_size);
	xmppd_elem_add_text(xmppd_elem_add_child(f, NS_DATA, "value"), max, strlen(max));
	xmppd_iq_reply(iq, q);
}

/* XEP-0363 5: the file is over max_file_size. */
static void
too_large(xmppd_elem *iq)
{
	xmppd_elem *e, *err = NULL, *t;
	char max[32], text[96];

	snprintf(max, sizeof(max), "%" PRIu64, up.max_file_size);
	snprintf(text, sizeof(text), "File too large: the maximum file size is %s bytes", max);
	if ((e = xmppd_stanza_error(iq, "not-acceptable", text)) == NULL)
		return;
	for (xmppd_elem *c = xmppd_elem_first_child(e); c != NULL; c = xmppd_elem_next_sibling(c))
		if (xmppd_elem_ns(c) == NULL && is(xmppd_elem_name(c), "error"))
			err = c;
	if (err != NULL) {
		xmppd_elem_set_attr(err, "type", "modify");
		t = xmppd_elem_add_child(err, NS_UPLOAD, "file-too-large");
		xmppd_elem_add_text(xmppd_elem_add_child(t, NS_UPLOAD, "max-file-size"), max,
		    strlen(max));
	}
	xmppd_route(e);
	xmppd_elem_unref(e);
}

static void
slot_request(xmppd_elem *iq, const xmppd_jid *from, const char *service, xmppd_elem *req)
{
	const char *filename = xmppd_elem_attr(req, "filename");
	const char *size_s = xmppd_elem_attr(req, "size");
	const char *ctype = xmppd_elem_attr(req, "content-type");
	const char *host = service + strlen(xmppd_opt_string(up.ctx, "host_prefix"));
	unsigned char rnd[ID_LEN / 2];
	char id[ID_LEN + 1], mac[65];
	struct slot *s;
	uint64_t size, used;
	int64_t now = now_s();
	char *end, *put = NULL, *get = NULL;
	xmppd_elem *r, *e;

	/* Local users of the host this service is for (XEP-0363 8: the
	 * service decides who may upload). */
	if (xmppd_jid_node(from) == NULL || !is(xmppd_jid_domain(from), host) ||
	    !xmppd_user_exists(xmppd_jid_node(from), host)) {
		xmppd_iq_error(iq, "forbidden", "only local users of the host may upload");
		return;
	}
	if (!filename_ok(filename)) {
		xmppd_iq_error(iq, "bad-request", "a file name, without a path, is required");
		return;
	}
	if (size_s == NULL || !isdigit((unsigned char)size_s[0]) ||
	    (errno = 0, size = strtoull(size_s, &end, 10), errno != 0) || *end != '\0' || size == 0) {
		xmppd_iq_error(iq, "bad-request", "a size in bytes is required");
		return;
	}
	if (ctype == NULL || ctype[0] == '\0')
		ctype = "application/octet-stream";
	if (!ctype_ok(ctype)) {
		xmppd_iq_error(iq, "bad-request", "malformed content-type");
		return;
	}
	if (size > up.max_file_size) {
		too_large(iq);
		return;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(id + 2 * i, 3, "%02x", rnd[i]);
	if ((s = slot_new(id, xmppd_jid_bare(from), filename, ctype, size, now,
	    now + up.put_ttl)) == NULL) {
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	/* The quota counts pending slots too: a client cannot reserve
	 * past it by asking for slots it does not fill. */
	pthread_mutex_lock(&up.lock);
	used = usage(s->owner);
	if (up.user_quota > 0 && used + size > up.user_quota) {
		pthread_mutex_unlock(&up.lock);
		slot_free(s);
		xmppd_iq_error(iq, "resource-constraint", "upload quota exceeded");
		return;
	}
	if (slot_insert(s) < 0) {
		pthread_mutex_unlock(&up.lock);
		slot_free(s);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	pthread_mutex_unlock(&up.lock);
	if (meta_write(s) < 0) {
		xmppd_log(up.ctx, XMPPD_LOG_ERROR, "%s/%s: cannot write the slot: %s", up.dir, id,
		    strerror(errno));
		pthread_mutex_lock(&up.lock);
		slot_unlink(s);
		pthread_mutex_unlock(&up.lock);
		slot_free(s);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	slot_hmac(id, s->filename, size, s->ctype, s->put_expiry, mac);
	get = strfmt("%s/upload/%s/%s", up.base_url, id, s->enc);
	put = strfmt("%s?v=%" PRId64 ".%s", get != NULL ? get : "", s->put_expiry, mac);
	if (get == NULL || put == NULL) {
		free(get);
		free(put);
		xmppd_iq_error(iq, "internal-server-error", NULL);
		return;
	}
	xmppd_log(up.ctx, XMPPD_LOG_INFO, "slot %s for %s: %s, %" PRIu64 " bytes", id,
	    s->owner, s->filename, size);
	/* XEP-0363 4: <slot><put url/><get url/></slot>. */
	r = xmppd_elem_new(NS_UPLOAD, "slot");
	e = xmppd_elem_add_child(r, NS_UPLOAD, "put");
	xmppd_elem_set_attr(e, "url", put);
	e = xmppd_elem_add_child(r, NS_UPLOAD, "get");
	xmppd_elem_set_attr(e, "url", get);
	xmppd_iq_reply(iq, r);
	free(get);
	free(put);
}

static void
service_stanza(xmppd_elem *st, const xmppd_jid *from, const xmppd_jid *to, void *ud)
{
	const char *kind = xmppd_stanza_kind(st), *type = xmppd_stanza_type(st);
	const char *service = our_service(xmppd_jid_domain(to));
	xmppd_elem *q;

	(void)ud;
	if (service == NULL || from == NULL || !is(kind, "iq") ||
	    !(is(type, "get") || is(type, "set")))
		return;
	if (xmppd_jid_node(to) != NULL || xmppd_jid_resource(to) != NULL ||
	    (q = xmppd_elem_first_child(st)) == NULL) {
		xmppd_iq_error(st, "service-unavailable", NULL);
		return;
	}
	if (is(xmppd_elem_ns(q), NS_DISCO_INFO) && is(type, "get") &&
	    xmppd_elem_attr(q, "node") == NULL)
		disco_info(st);
	else if (is(xmppd_elem_ns(q), NS_DISCO_ITEMS) && is(type, "get"))
		xmppd_iq_reply(st, xmppd_elem_new(NS_DISCO_ITEMS, "query"));
	else if (is(xmppd_elem_ns(q), NS_UPLOAD) && is(xmppd_elem_name(q), "request") &&
	    is(type, "get"))
		slot_request(st, from, service, q);
	else
		xmppd_iq_error(st, "service-unavailable", NULL);
}

/* ---------------------------------------------------------------- */
/* HTTP.                                                              */

/* What a request names: /upload/ID/NAME, split; 0, or the status to
 * answer. The file system sees only ID (32 hex digits): NAME is compared
 * with the slot's own encoding, never used as a path. */
static int
parse_path(const char *path, char id_r[ID_LEN + 1], const char **name_r)
{
	const char *p = path + strlen("/upload/"), *slash;

	/* Hostile forms get a 400 (XEP-0363 9: the service must not be a
	 * way into the file system): traversal, encoded dots, backslashes,
	 * encoded NUL or slashes. */
	if (strstr(p, "..") != NULL || strcasestr(p, "%2e") != NULL || strchr(p, '\\') != NULL ||
	    strstr(p, "%00") != NULL || strcasestr(p, "%2f") != NULL ||
	    strcasestr(p, "%5c") != NULL || p[0] == '/')
		return 400;
	if ((slash = strchr(p, '/')) == NULL || !is_hexid(p, (size_t)(slash - p)) ||
	    slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
		return 404;
	memcpy(id_r, p, ID_LEN);
	id_r[ID_LEN] = '\0';
	*name_r = slash + 1;
	return 0;
}

static void
fail(xmppd_http_req *req, int status, const char *text)
{
	char body[160];
	int n = snprintf(body, sizeof(body), "%s\n", text);

	xmppd_http_respond(req, status, "text/plain; charset=utf-8", body, (size_t)n,
	    "Access-Control-Allow-Origin: *\r\n");
}

/* A PUT being written. */
struct put {
	char id[ID_LEN + 1];
	int fd;
	uint64_t size, got;
	char *part;
};

static void
put_release(struct put *u, int done)
{
	struct slot *s;

	if (u->fd >= 0)
		close(u->fd);
	if (!done && u->part != NULL)
		(void)unlink(u->part);
	pthread_mutex_lock(&up.lock);
	/* Not done: pending again, for a retry while the URL is valid. */
	if ((s = slot_find(u->id)) != NULL && s->state == SLOT_UPLOADING)
		s->state = done ? SLOT_DONE : SLOT_PENDING;
	pthread_mutex_unlock(&up.lock);
	free(u->part);
	free(u);
}

static int
put_chunk(xmppd_http_req *req, const void *p, size_t n, void *ud)
{
	struct put *u = ud;
	const char *c = p;

	(void)req;
	if (u->got + n > u->size)
		return 413;
	while (n > 0) {
		ssize_t w = write(u->fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			xmppd_log(up.ctx, XMPPD_LOG_ERROR, "%s: %s", u->part, strerror(errno));
			return 500;
		}
		c += w;
		n -= (size_t)w;
		u->got += (uint64_t)w;
	}
	return 0;
}

static void
put_end(xmppd_http_req *req, void *ud)
{
	struct put *u = ud;
	char *file = slot_path(u->id, "file");

	if (u->got != u->size) {
		fail(req, 400, "the body is not the slot's size");
		free(file);
		put_release(u, 0);
		return;
	}
	if (file == NULL || rename(u->part, file) < 0) {
		fail(req, 500, "cannot store the file");
		free(file);
		put_release(u, 0);
		return;
	}
	free(file);
	xmppd_log(up.ctx, XMPPD_LOG_INFO, "slot %s: %" PRIu64 " bytes stored", u->id, u->got);
	put_release(u, 1);
	xmppd_http_respond(req, 201, "text/plain; charset=utf-8", "created\n", 8,
	    "Access-Control-Allow-Origin: *\r\n");
}

static void
put_abort(xmppd_http_req *req, void *ud)
{
	(void)req;
	put_release(ud, 0);
}

static const struct xmppd_http_body_ops put_ops = { put_chunk, put_end, put_abort };

/* XEP-0363 6 and 9.1: the signature and expiry, the slot unused, the
 * size and type as the slot says; then the body goes to file.part. */
static void
handle_put(xmppd_http_req *req, const char *id, const char *name)
{
	const char *q = xmppd_http_query(req), *cl = xmppd_http_header(req, "Content-Length");
	const char *ct = xmppd_http_header(req, "Content-Type");
	char mac[65], *end, given[65];
	struct slot *s;
	struct put *u;
	int64_t expiry;
	uint64_t len;
	int status = 0;
	const char *why = NULL;

	if (q == NULL || strncmp(q, "v=", 2) != 0 || !isdigit((unsigned char)q[2]) ||
	    (errno = 0, expiry = strtoll(q + 2, &end, 10), errno != 0) || *end != '.' ||
	    strlen(end + 1) != 64) {
		fail(req, 403, "missing or malformed signature");
		return;
	}
	snprintf(given, sizeof(given), "%s", end + 1);
	if (cl == NULL) {
		fail(req, 411, "Content-Length is required");
		return;
	}
	if (!isdigit((unsigned char)cl[0]) || (errno = 0, len = strtoull(cl, &end, 10), errno != 0) ||
	    *end != '\0') {
		fail(req, 400, "malformed Content-Length");
		return;
	}
	if ((u = calloc(1, sizeof(*u))) == NULL) {
		fail(req, 500, "out of memory");
		return;
	}
	u->fd = -1;
	pthread_mutex_lock(&up.lock);
	if ((s = slot_find(id)) == NULL || !is(s->enc, name)) {
		status = 404, why = "no such slot";
	} else {
		slot_hmac(s->id, s->filename, s->size, s->ctype, expiry, mac);
		if (CRYPTO_memcmp(mac, given, 64) != 0)
			status = 403, why = "bad signature";
		else if (expiry != s->put_expiry || expiry < now_s())
			status = 403, why = "the upload URL has expired";
		else if (s->state == SLOT_DONE)
			status = 409, why = "this slot was used";
		else if (s->state == SLOT_UPLOADING)
			status = 409, why = "an upload to this slot is under way";
		else if (len > s->size)
			status = 413, why = "the body is larger than the slot";
		else if (len != s->size)
			status = 400, why = "Content-Length is not the slot's size";
		else if (ct != NULL && !ctype_match(ct, s->ctype))
			status = 415, why = "Content-Type is not the slot's";
		else
			s->state = SLOT_UPLOADING;
	}
	if (status == 0) {
		memcpy(u->id, s->id, sizeof(u->id));
		u->size = s->size;
	}
	pthread_mutex_unlock(&up.lock);
	if (status != 0) {
		free(u);
		fail(req, status, why);
		return;
	}
	if ((u->part = slot_path(u->id, "file.part")) == NULL ||
	    (u->fd = open(u->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)) < 0) {
		xmppd_log(up.ctx, XMPPD_LOG_ERROR, "%s: %s", u->part ? u->part : id, strerror(errno));
		put_release(u, 0);
		fail(req, 500, "cannot store the file");
		return;
	}
	xmppd_http_stream(req, &put_ops, u);
}

static void
handle_get(xmppd_http_req *req, const char *id, const char *name)
{
	char *file, *hdr, *ctype = NULL, *enc = NULL;
	const char *disp;
	struct slot *s;
	struct stat st;
	int fd, found = 0;

	pthread_mutex_lock(&up.lock);
	if ((s = slot_find(id)) != NULL && s->state == SLOT_DONE && is(s->enc, name)) {
		found = 1;
		ctype = strdup(s->ctype);
		enc = strdup(s->enc);
	}
	pthread_mutex_unlock(&up.lock);
	if (!found || ctype == NULL || enc == NULL) {
		free(ctype);
		free(enc);
		fail(req, 404, "not found");
		return;
	}
	file = slot_path(id, "file");
	if (file == NULL || (fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 ||
	    (fstat(fd, &st) < 0 && (close(fd), 1))) {
		free(file);
		free(ctype);
		free(enc);
		fail(req, 404, "not found");
		return;
	}
	free(file);
	/* XEP-0363 9.3 (and RFC 6266): media a browser shows are inline,
	 * the rest is a download; the content may never run as script on
	 * this origin (CSP, nosniff). */
	disp = strncasecmp(ctype, "image/", 6) == 0 || strncasecmp(ctype, "audio/", 6) == 0 ||
	    strncasecmp(ctype, "video/", 6) == 0 ? "inline" : "attachment";
	hdr = strfmt("Content-Disposition: %s; filename*=UTF-8''%s\r\n"
	    "Content-Security-Policy: default-src 'none'\r\n"
	    "X-Content-Type-Options: nosniff\r\n"
	    "Access-Control-Allow-Origin: *\r\n"
	    "Cache-Control: public, max-age=31536000, immutable\r\n", disp, enc);
	if (hdr == NULL) {
		close(fd);
		fail(req, 500, "out of memory");
	} else {
		xmppd_http_respond_file(req, fd, (uint64_t)st.st_size, ctype, hdr);
	}
	free(hdr);
	free(ctype);
	free(enc);
}

static void
http_upload(xmppd_http_req *req, void *ud)
{
	const char *m = xmppd_http_method(req), *name = NULL;
	char id[ID_LEN + 1];
	int st;

	(void)ud;
	if (is(m, "OPTIONS")) {
		/* A CORS preflight (web clients PUT with a Content-Type). */
		xmppd_http_respond(req, 204, NULL, NULL, 0,
		    "Access-Control-Allow-Origin: *\r\n"
		    "Access-Control-Allow-Methods: GET, HEAD, PUT, OPTIONS\r\n"
		    "Access-Control-Allow-Headers: Content-Type\r\n"
		    "Access-Control-Max-Age: 86400\r\n"
		    "Allow: GET, HEAD, PUT, OPTIONS\r\n");
		return;
	}
	if ((st = parse_path(xmppd_http_path(req), id, &name)) != 0) {
		fail(req, st, st == 400 ? "bad path" : "not found");
		return;
	}
	if (is(m, "PUT"))
		handle_put(req, id, name);
	else if (is(m, "GET") || is(m, "HEAD"))
		handle_get(req, id, name);
	else
		xmppd_http_respond(req, 405, "text/plain; charset=utf-8", "method not allowed\n", 19,
		    "Allow: GET, HEAD, PUT, OPTIONS\r\n");
}

/* ---------------------------------------------------------------- */
/* Expiry and xmppctl.                                                */

enum { SEL_ALL, SEL_OWNER, SEL_OLDER, SEL_EXPIRED };

/* Takes the slots sel picks (never one being uploaded) out of the
 * table, then removes their files; how many. */
static size_t
purge(int sel, const char *owner, int64_t age)
{
	struct slot *gone = NULL;
	int64_t now = now_s();
	size_t n = 0;

	pthread_mutex_lock(&up.lock);
	if (sel == SEL_OWNER) {
		/* The owner's own list: an account deleted costs its files,
		 * not a walk over everybody's. slot_unlink may free the
		 * owner with its last slot; next is read before. */
		struct owner *o = owner_find(owner);

		for (struct slot *s = o != NULL ? o->slots : NULL, *next; s != NULL; s = next) {
			next = s->onext;
			if (s->state == SLOT_UPLOADING)
				continue;
			slot_unlink(s);
			s->next = gone;
			gone = s;
		}
	}
	for (unsigned i = 0; sel != SEL_OWNER && i < BUCKETS; i++) {
		for (struct slot **p = &up.b[i]; *p != NULL;) {
			struct slot *s = *p;
			int take;

			switch (sel) {
			case SEL_ALL: take = 1; break;
			case SEL_OLDER: take = now - s->created >= age; break;
			default:
				/* A pending slot whose PUT URL expired put_ttl
				 * ago (until then a late PUT hears 403, not
				 * 404); a file older than expire_after. */
				take = (s->state == SLOT_PENDING &&
				    s->put_expiry + up.put_ttl < now) ||
				    (s->state == SLOT_DONE && up.expire_after > 0 &&
				    now - s->created >= up.expire_after);
			}
			if (!take || s->state == SLOT_UPLOADING) {
				p = &s->next;
				continue;
			}
			*p = s->next;
			slot_uncount(s);
			s->next = gone;
			gone = s;
		}
	}
	pthread_mutex_unlock(&up.lock);
	while (gone != NULL) {
		struct slot *s = gone;

		gone = s->next;
		slot_remove_files(s->id);
		slot_free(s);
		n++;
	}
	return n;
}

static uint64_t
purge_timer(void *ud)
{
	size_t n;

	(void)ud;
	if ((n = purge(SEL_EXPIRED, NULL, 0)) > 0)
		xmppd_log(up.ctx, XMPPD_LOG_INFO, "%zu expired uploads removed", n);
	return (uint64_t)up.purge_interval * 1000;
}

/*
 * An account that is deleted takes its files with it, as ejabberd's
 * mod_http_upload does (remove_user): its GET URLs answer 404 from then
 * on. A file still being uploaded at that moment is kept: it is stored
 * under the old name and goes when it expires (expire_after) or with
 * xmppctl upload purge.
 */
static enum xmppd_result
user_removed(void *args, void *ud)
{
	struct xmppd_user_args *ua = args;
	char *bare = strfmt("%s@%s", ua->node, ua->host);
	size_t n;

	(void)ud;
	if (bare == NULL)
		return XMPPD_CONTINUE;
	if ((n = purge(SEL_OWNER, bare, 0)) > 0)
		xmppd_log(up.ctx, XMPPD_LOG_INFO, "%s deleted: %zu uploads removed", bare, n);
	free(bare);
	return XMPPD_CONTINUE;
}

static int
upload_ctl(int argc, char **argv, char **out_r, void *ud)
{
	(void)ud;
	if (argc >= 2 && is(argv[1], "list") && argc <= 3) {
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);

		if (f == NULL)
			return -1;
		pthread_mutex_lock(&up.lock);
		for (unsigned i = 0; i < BUCKETS; i++)
			for (struct slot *s = up.b[i]; s != NULL; s = s->next)
				if (argc < 3 || is(s->owner, argv[2]))
					fprintf(f, "%s %s %" PRIu64 " %s %" PRId64 " %s %s\n", s->id,
					    s->owner, s->size, s->ctype, s->created,
					    s->state == SLOT_DONE ? "stored" :
					    s->state == SLOT_UPLOADING ? "uploading" : "pending",
					    s->filename);
		pthread_mutex_unlock(&up.lock);
		fclose(f);
		*out_r = buf;
		return 0;
	}
	if (argc >= 3 && is(argv[1], "purge")) {
		size_t n;
		char *end;
		long long age;

		if (argc == 3 && is(argv[2], "--all")) {
			n = purge(SEL_ALL, NULL, 0);
		} else if (argc == 4 && is(argv[2], "older-than")) {
			errno = 0;
			age = strtoll(argv[3], &end, 10);
			if (errno != 0 || *end != '\0' || age < 0 || argv[3][0] == '\0') {
				*out_r = strfmt("older-than takes seconds");
				return -1;
			}
			n = purge(SEL_OLDER, NULL, (int64_t)age);
		} else if (argc == 3 && strchr(argv[2], '@') != NULL) {
			xmppd_jid *j = xmppd_jid_parse(argv[2]);

			if (j == NULL || xmppd_jid_node(j) == NULL) {
				xmppd_jid_free(j);
				*out_r = strfmt("%s: not a user's JID", argv[2]);
				return -1;
			}
			n = purge(SEL_OWNER, xmppd_jid_bare(j), 0);
			xmppd_jid_free(j);
		} else {
			*out_r = strfmt("usage: %s", CTL_USAGE);
			return -1;
		}
		*out_r = strfmt("%zu files removed\n", n);
		return 0;
	}
	*out_r = strfmt("usage: %s", CTL_USAGE);
	return -1;
}

/* ---------------------------------------------------------------- */
/* Loading.                                                           */

static void
unload(xmppd_ctx *ctx)
{
	(void)ctx;
	pthread_mutex_lock(&up.lock);
	for (unsigned i = 0; i < BUCKETS; i++) {
		while (up.b[i] != NULL) {
			struct slot *s = up.b[i];

			up.b[i] = s->next;
			slot_free(s);
		}
	}
	for (unsigned i = 0; i < OWNER_BUCKETS; i++) {
		while (up.owners[i] != NULL) {
			struct owner *o = up.owners[i];

			up.owners[i] = o->next;
			free(o);
		}
	}
	up.nslots = 0;
	pthread_mutex_unlock(&up.lock);
	service_domains_free(up.services, up.nservices);
	up.services = NULL;
	up.nservices = 0;
	free(up.dir);
	free(up.base_url);
	up.dir = up.base_url = NULL;
	OPENSSL_cleanse(up.secret, sizeof(up.secret));
}

static int
load(xmppd_ctx *ctx)
{
	const char *base = xmppd_opt_string(ctx, "base_url");
	char *spool;
	size_t n;

	up.ctx = ctx;
	up.name = xmppd_opt_string(ctx, "name");
	up.max_file_size = (uint64_t)xmppd_opt_int(ctx, "max_file_size");
	up.user_quota = (uint64_t)xmppd_opt_int(ctx, "user_quota");
	up.put_ttl = xmppd_opt_int(ctx, "put_ttl");
	up.expire_after = xmppd_opt_int(ctx, "expire_after");
	up.purge_interval = xmppd_opt_int(ctx, "purge_interval");
	if (base == NULL || (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)) {
		xmppd_log(ctx, XMPPD_LOG_ERROR,
		    "base_url is required: the http(s) URL the HTTP listener is reached at");
		return -1;
	}
	/* "https://h:5443/" and "https://h:5443" name the same base. */
	if ((up.base_url = strdup(base)) == NULL)
		return -1;
	n = strlen(up.base_url);
	while (n > 0 && up.base_url[n - 1] == '/')
		up.base_url[--n] = '\0';
	if ((spool = xmppd_spool_dir()) == NULL || (up.dir = strfmt("%s/upload", spool)) == NULL) {
		free(spool);
		goto err;
	}
	free(spool);
	if (mkdir(up.dir, 0750) < 0 && errno != EEXIST) {
		xmppd_log(ctx, XMPPD_LOG_ERROR, "%s: %s", up.dir, strerror(errno));
		goto err;
	}
	if (load_secret() < 0 || load_slots() < 0)
		goto err;
	if (service_domains(ctx, xmppd_opt_string(ctx, "host_prefix"), &up.services,
	    &up.nservices) < 0)
		goto err;
	for (size_t i = 0; i < up.nservices; i++)
		if (xmppd_service_register(ctx, up.services[i], service_stanza, NULL) < 0)
			goto err;
	if (xmppd_http_register_stream(ctx, "/upload/", http_upload, NULL) < 0 ||
	    xmppd_ctl_register(ctx, "upload", CTL_USAGE, upload_ctl, NULL) < 0 ||
	    xmppd_hook_add(ctx, XMPPD_HOOK_REMOVE_USER, NULL, 50, user_removed, NULL) < 0 ||
	    xmppd_timer_add(ctx, (uint64_t)up.purge_interval * 1000, purge_timer, NULL) == NULL)
		goto err;
	xmppd_log(ctx, XMPPD_LOG_INFO, "%zu uploads in %s", up.nslots, up.dir);
	return 0;
err:
	unload(ctx);
	return -1;
}

XMPPD_MODULE_EXPORT const struct xmppd_module xmppd_module = {
	.abi_major = XMPPD_ABI_MAJOR,
	.abi_minor = XMPPD_ABI_MINOR,   /* 1.8: streamed bodies, file answers */
	.name = "mod_http_upload",
	.version = "1.0",
	.options = options,
	.load = load,
	.unload = unload,
};
