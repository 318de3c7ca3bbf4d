/*
 * log.c - line-oriented logging to stderr, a file or syslog.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include "core/log.h"

enum log_level log_current_level = LOG_LVL_INFO;

static int log_fd = 2;
static int log_syslog;
static char *log_path;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {
	"error", "warning", "notice", "info", "debug",
};

int
log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	if (strcmp(name, "warn") == 0)
		return LOG_LVL_WARNING;
	return -1;
}

const char *
log_level_name(enum log_level level)
{
	return level_names[level];
}

void
log_set_level(enum log_level level)
{
	__atomic_store_n(&log_current_level, level, __ATOMIC_RELAXED);
}

int
log_open(const char *target, const char **error_r)
{
	int fd;

	if (target == NULL || strcmp(target, "stderr") == 0) {
		pthread_mutex_lock(&log_lock);
		if (log_fd > 2)
			close(log_fd);
		log_fd = 2;
		log_syslog = 0;
		pthread_mutex_unlock(&log_lock);
		return 0;
	}
	if (strcmp(target, "syslog") == 0) {
		openlog("xmppd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		pthread_mutex_lock(&log_lock);
		log_syslog = 1;
		pthread_mutex_unlock(&log_lock);
		return 0;
	}
	fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		*error_r = strerror(errno);
		return -1;
	}
	pthread_mutex_lock(&log_lock);
	if (log_fd > 2)
		close(log_fd);
	log_fd = fd;
	log_syslog = 0;
	free(log_path);
	log_path = strdup(target);
	pthread_mutex_unlock(&log_lock);
	return 0;
}

void
log_reopen(void)
{
	const char *err;
	char *path;

	pthread_mutex_lock(&log_lock);
	path = log_path != NULL ? strdup(log_path) : NULL;
	pthread_mutex_unlock(&log_lock);
	if (path != NULL && log_fd > 2)
		(void)log_open(path, &err);
	free(path);
}

void
log_vmsg(enum log_level level, const char *tag, const char *fmt, va_list ap)
{
	static const int prio[] = {
		LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG,
	};
	char line[2048];
	size_t n = 0;
	int r;

	if (!log_enabled(level))
		return;
	if (!log_syslog) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
		r = snprintf(line + n, sizeof(line) - n, ".%03ld [%s] ",
		    ts.tv_nsec / 1000000, level_names[level]);
		n += (size_t)r;
	}
	if (tag != NULL) {
		r = snprintf(line + n, sizeof(line) - n, "%s: ", tag);
		if (r > 0)
			n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	}
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	if (log_syslog) {
		syslog(prio[level], "%s", line);
		return;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(log_fd, line, n);
}

void
log_msg(enum log_level level, const char *tag, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, tag, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_current_level = log_current_level < LOG_LVL_ERROR ? LOG_LVL_ERROR : log_current_level;
	log_vmsg(LOG_LVL_ERROR, "fatal", fmt, ap);
	va_end(ap);
	exit(1);
}
