/*
 * log.h - the one logging family of xmppd.
 *
 * Lines go to stderr, a file or syslog (log_open). The level is switched at
 * run time (log_set_level), never compiled out. Each line should name the
 * connection or module it is about: pass a short tag such as "c2s#12".
 * Thread-safe: one write(2) or syslog(3) call per line.
 */
#ifndef XMPPD_LOG_H
#define XMPPD_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARNING,
	LOG_LVL_NOTICE,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

extern enum log_level log_current_level;

/* "stderr", "syslog" or a file path. Returns 0, or -1 with *error_r set. */
int log_open(const char *target, const char **error_r);
void log_set_level(enum log_level level);
/* Parses "error", "warning", "notice", "info", "debug"; -1 if unknown. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level level);
/* Reopen the file target (after logrotate); used on SIGHUP. */
void log_reopen(void);

void log_msg(enum log_level level, const char *tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level level, const char *tag, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

#define log_enabled(lvl) ((lvl) <= log_current_level)
#define log_error(tag, ...) log_msg(LOG_LVL_ERROR, tag, __VA_ARGS__)
#define log_warning(tag, ...) log_msg(LOG_LVL_WARNING, tag, __VA_ARGS__)
#define log_notice(tag, ...) log_msg(LOG_LVL_NOTICE, tag, __VA_ARGS__)
#define log_info(tag, ...) \
	do { if (log_enabled(LOG_LVL_INFO)) log_msg(LOG_LVL_INFO, tag, __VA_ARGS__); } while (0)
#define log_debug(tag, ...) \
	do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, tag, __VA_ARGS__); } while (0)

/* Start-up failures and impossible states only (OpenBSD style). */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
