/*
 * t-listener.c - a listener (net/listener.h) whose accept(2) fails with
 * EMFILE pauses and retries every 500 ms instead of spinning, logs one
 * line, shows in listener_stats_get, and accepts the connection waiting in
 * its backlog once a descriptor is free again.
 *
 * The test runs out of descriptors by lowering its own soft RLIMIT_NOFILE
 * to the lowest free descriptor, so that the next accept cannot succeed.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "core/log.h"
#include "net/listener.h"

static void
count_accept(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	(*(int *)arg)++;
	close(fd);
}

static void
run_for(struct event_base *base, long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static int
count_lines(const char *path, const char *needle)
{
	char line[2048];
	FILE *f = fopen(path, "r");
	int n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, needle) != NULL)
			n++;
	fclose(f);
	return n;
}

static void
test_pause_on_emfile(void **state)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	struct rlimit saved, low;
	struct listener_stats st;
	struct event_base *base;
	struct listener *l;
	const char *tmp = getenv("TMPDIR"), *err;
	char logpath[PATH_MAX];
	int lfd, cfd, probe, accepted = 0;

	snprintf(logpath, sizeof(logpath), "%s/t-listener.%ld.log",
	    tmp != NULL && *tmp ? tmp : "/tmp", (long)getpid());
	assert_int_equal(log_open(logpath, &err), 0);
	base = event_base_new();
	assert_non_null(base);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 16), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	/* On loopback the handshake completes in the kernel: the connection
	 * waits in the backlog whether or not it is accepted. */
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(cfd >= 0);
	assert_int_equal(connect(cfd, (struct sockaddr *)&sin, sizeof(sin)), 0);

	l = listener_open(base, lfd, count_accept, &accepted, "test 127.0.0.1");
	assert_non_null(l);
	listener_stats_get(&st);
	assert_int_equal(st.listeners, 1);
	assert_int_equal(st.pauses, 0);
	assert_int_equal(st.last, 0);

	/* Every descriptor from the lowest free one up is out of reach. */
	probe = dup(lfd);
	assert_true(probe >= 0);
	close(probe);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur = (rlim_t)probe;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

	/* Failures at about 0, 500 and 1000 ms; paused again until 1500.
	 * The limit is restored before any check (a failed check must not
	 * leave the sanitizers without descriptors). */
	run_for(base, 1250);
	listener_stats_get(&st);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	assert_int_equal(accepted, 0);
	assert_true(st.pauses >= 2);    /* the timer enabled it again */
	assert_true(st.pauses <= 4);    /* and accept(2) was not called in a loop */
	assert_int_equal(st.last_errno, EMFILE);
	assert_true(st.last != 0);
	assert_int_equal(st.paused_now, 1);
	/* One line: the next is due ten seconds after it at the earliest. */
	assert_int_equal(count_lines(logpath, "accept on test 127.0.0.1: Too many open files"), 1);

	/* Descriptors are free again: the next retry accepts the backlog. */
	run_for(base, 1000);
	listener_stats_get(&st);
	assert_int_equal(accepted, 1);
	assert_int_equal(st.paused_now, 0);

	listener_close(&l);
	assert_null(l);
	listener_stats_get(&st);
	assert_int_equal(st.listeners, 0);
	close(cfd);
	event_base_free(base);
	assert_int_equal(log_open("stderr", &err), 0);
	unlink(logpath);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pause_on_emfile),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
