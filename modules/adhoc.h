/*
 * adhoc.h - what the files of mod_adhoc share; internal to the module.
 *
 *  - mod_adhoc.c: XEP-0050 itself: the command list in disco, the
 *    sessions, the execute / complete / cancel exchange, the ping
 *    command, loading;
 *  - adhoc_form.c: XEP-0004 data forms (building them, reading what was
 *    submitted);
 *  - adhoc_admin.c: the XEP-0133 service administration commands, and the
 *    message of the day sent at login.
 *
 * A command is a struct adhoc_cmd. Its form function (NULL: the command
 * takes no input) builds the form the requester fills in; its run
 * function acts on the submitted form. Both receive a struct adhoc_req
 * and end it exactly once, during the call or later (from a store
 * callback), with adhoc_form, adhoc_done or adhoc_fail, which answer the
 * IQ and free the request.
 */
#ifndef MOD_ADHOC_H
#define MOD_ADHOC_H

#include <stddef.h>

#include <xmppd.h>

#define NS_COMMANDS "http://jabber.org/protocol/commands"
#define NS_XDATA "jabber:x:data"
#define NS_ADMIN "http://jabber.org/protocol/admin"
#define T_ADHOC "mod_adhoc"

struct adhoc_req;

struct adhoc_cmd {
	const char *node;
	const char *name;
	int admin;                      /* XEP-0133: admins only */
	void (*form)(struct adhoc_req *r);             /* or NULL */
	void (*run)(struct adhoc_req *r, xmppd_elem *x);  /* x: the submitted form or NULL */
};

struct adhoc_req {
	xmppd_ctx *ctx;
	xmppd_elem *iq;                 /* a reference */
	xmppd_jid *from;                /* the requester (full JID) */
	char *host;                     /* the server it was sent to */
	const struct adhoc_cmd *cmd;
	char sessionid[40];             /* "" until a form went out */
	void *data;                     /* the command's, freed with free() */
	struct adhoc_req *prev, *next;  /* adhoc_admin.c: waiting for a roster */
};

/* mod_adhoc.c */
/* Replies status='executing' with form x (taken) and the one action
 * 'complete' (XEP-0050 3.4); the session then waits for the submission. */
void adhoc_form(struct adhoc_req *r, xmppd_elem *x_take);
/* Replies status='completed' (the session ends) with a note (type
 * "info", "warn" or "error"; note NULL: none) and payload (taken, NULL:
 * none), usually a result form. */
void adhoc_done(struct adhoc_req *r, const char *note_type, const char *note,
    xmppd_elem *payload_take);
/* Answers with a stanza error (RFC 6120 8.3.3) and, when app is not NULL,
 * the XEP-0050 4.6 condition element of that name. The session ends. */
void adhoc_fail(struct adhoc_req *r, const char *condition, const char *app);
/* Frees r without answering (the module unloads). */
void adhoc_req_free(struct adhoc_req *r);
/* 1 if jid may run the admin commands. */
int adhoc_is_admin(const xmppd_jid *jid);

/* adhoc_form.c */
/* A new <x xmlns='jabber:x:data' type=type> with title (or NULL) and, when
 * form_type is not NULL, the hidden FORM_TYPE field (XEP-0068). */
xmppd_elem *form_new(const char *type, const char *title, const char *form_type);
/* Adds a field; label, value may be NULL. Returns the field. */
xmppd_elem *form_field(xmppd_elem *x, const char *var, const char *type, const char *label,
    const char *value, int required);
void form_field_value(xmppd_elem *field, const char *value);
void form_field_option(xmppd_elem *field, const char *label, const char *value);
/* The submitted form's field var (NULL if absent). */
xmppd_elem *form_get_field(xmppd_elem *x, const char *var);
/* Its first value, NULL if absent. */
const char *form_get(xmppd_elem *x, const char *var);
/* The text-multi value: the values joined by newlines (malloc'd, "" if
 * none; NULL when absent). */
char *form_get_multi(xmppd_elem *x, const char *var);
/* 1 if x is a submitted form (type 'submit'). */
int form_is_submit(const xmppd_elem *x);

/* adhoc_admin.c */
extern const struct adhoc_cmd adhoc_admin_cmds[];
extern const size_t adhoc_admin_ncmds;
int adhoc_admin_load(xmppd_ctx *ctx);
/* Frees the requests still waiting for an answer that will not come. */
void adhoc_admin_unload(void);

#endif
