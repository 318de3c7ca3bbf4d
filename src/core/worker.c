/*
 * worker.c - worker threads and their inboxes.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"

struct task {
	worker_task_fn fn;
	void *a;
	uint64_t b;
};

struct task_queue {
	struct task *v;
	size_t len, cap;
};

struct worker {
	unsigned id;
	pthread_t thread;
	struct event_base *base;
	int efd;
	struct event *wake_ev;
	pthread_mutex_t lock;
	struct task_queue q;       /* filled by posters, under lock */
	struct task_queue run;     /* drained by the worker, no lock */
	int sleeping;              /* the worker may be waiting: wake it */
	int started;
};

static struct worker *workers;
static unsigned nworkers;
static void (*exit_hook)(struct worker *w);
static __thread struct worker *current;

static void
queue_push(struct task_queue *q, worker_task_fn fn, void *a, uint64_t b)
{
	if (q->len == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		struct task *v = realloc(q->v, cap * sizeof(*v));

		if (v == NULL)
			fatal("out of memory growing a worker inbox");
		q->v = v;
		q->cap = cap;
	}
	q->v[q->len++] = (struct task){ fn, a, b };
}

size_t
worker_queue_depth(unsigned id)
{
	struct worker *w;
	size_t n;

	if (id >= nworkers)
		return 0;
	w = &workers[id];
	pthread_mutex_lock(&w->lock);
	n = w->q.len;
	pthread_mutex_unlock(&w->lock);
	return n;
}

static void
worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct task_queue tmp;
	uint64_t n;

	(void)!read(fd, &n, sizeof(n));
	/* Swap the queues under the lock, run the tasks outside it, so that
	 * posters never wait for a task to run. Repeat until empty. */
	for (;;) {
		pthread_mutex_lock(&w->lock);
		if (w->q.len == 0) {
			w->sleeping = 1;
			pthread_mutex_unlock(&w->lock);
			return;
		}
		tmp = w->q;
		w->q = w->run;
		w->q.len = 0;
		w->run = tmp;
		pthread_mutex_unlock(&w->lock);
		for (size_t i = 0; i < w->run.len; i++)
			w->run.v[i].fn(w, w->run.v[i].a, w->run.v[i].b);
		w->run.len = 0;
	}
}

int
worker_init(unsigned n, const char **error_r)
{
	workers = calloc(n, sizeof(*workers));
	if (workers == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	nworkers = n;
	for (unsigned i = 0; i < n; i++) {
		struct worker *w = &workers[i];
		struct event_config *cfg = event_config_new();

		w->id = i;
		/* One thread per base: no libevent locking needed. */
		event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
		w->base = event_base_new_with_config(cfg);
		event_config_free(cfg);
		if (w->base == NULL) {
			*error_r = "cannot create an event base";
			return -1;
		}
		w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->efd < 0) {
			*error_r = strerror(errno);
			return -1;
		}
		w->wake_ev = event_new(w->base, w->efd, EV_READ | EV_PERSIST,
		    worker_wake_cb, w);
		event_add(w->wake_ev, NULL);
		pthread_mutex_init(&w->lock, NULL);
		w->sleeping = 1;
	}
	return 0;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];

	current = w;
	snprintf(name, sizeof(name), "xmppd-w%u", w->id);
	pthread_setname_np(pthread_self(), name);
	log_debug(name, "worker started");
	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	if (exit_hook != NULL)
		exit_hook(w);
	conf_local_release();
	log_debug(name, "worker stopped");
	return NULL;
}

int
worker_start_all(void)
{
	for (unsigned i = 0; i < nworkers; i++) {
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
			return -1;
		workers[i].started = 1;
	}
	return 0;
}

static void
exit_task(struct worker *w, void *a, uint64_t b)
{
	event_base_loopexit(w->base, NULL);
}

void
worker_exit_all(void)
{
	worker_post_all(exit_task, NULL, 0);
}

void
worker_join_all(void)
{
	for (unsigned i = 0; i < nworkers; i++)
		if (workers[i].started) {
			pthread_join(workers[i].thread, NULL);
			workers[i].started = 0;
		}
}

void
worker_free_all(void)
{
	for (unsigned i = 0; i < nworkers; i++) {
		struct worker *w = &workers[i];

		event_free(w->wake_ev);
		event_base_free(w->base);
		close(w->efd);
		free(w->q.v);
		free(w->run.v);
		pthread_mutex_destroy(&w->lock);
	}
	free(workers);
	workers = NULL;
	nworkers = 0;
}

void
worker_set_exit_hook(void (*fn)(struct worker *w))
{
	exit_hook = fn;
}

unsigned
worker_count(void)
{
	return nworkers;
}

struct worker *
worker_get(unsigned id)
{
	return id < nworkers ? &workers[id] : NULL;
}

struct worker *
worker_self(void)
{
	return current;
}

unsigned
worker_id(const struct worker *w)
{
	return w->id;
}

struct event_base *
worker_base(struct worker *w)
{
	return w->base;
}

void
worker_post(struct worker *w, worker_task_fn fn, void *a, uint64_t b)
{
	int wake;
	uint64_t one = 1;

	pthread_mutex_lock(&w->lock);
	queue_push(&w->q, fn, a, b);
	/* Only the first task after the worker drained its queue costs a
	 * write(2); later ones ride on the same wake-up. */
	wake = w->sleeping;
	w->sleeping = 0;
	pthread_mutex_unlock(&w->lock);
	if (wake)
		(void)!write(w->efd, &one, sizeof(one));
}

void
worker_post_all(worker_task_fn fn, void *a, uint64_t b)
{
	for (unsigned i = 0; i < nworkers; i++)
		worker_post(&workers[i], fn, a, b);
}

struct sync_state {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned left;
};

static void
sync_task(struct worker *w, void *a, uint64_t b)
{
	struct sync_state *s = a;

	pthread_mutex_lock(&s->lock);
	if (--s->left == 0)
		pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

void
worker_sync_all(void)
{
	struct sync_state s = {
		PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0,
	};
	unsigned n = 0;

	for (unsigned i = 0; i < nworkers; i++)
		n += workers[i].started;
	if (n == 0)
		return;
	s.left = n;
	for (unsigned i = 0; i < nworkers; i++)
		if (workers[i].started)
			worker_post(&workers[i], sync_task, &s, 0);
	pthread_mutex_lock(&s.lock);
	while (s.left > 0)
		pthread_cond_wait(&s.cond, &s.lock);
	pthread_mutex_unlock(&s.lock);
}

/* ---------------------------------------------------------------- */
/* The main thread's inbox.                                           */

static struct {
	pthread_mutex_t lock;
	struct task_queue q, run;
	struct event *ev;
} mainq = { PTHREAD_MUTEX_INITIALIZER, { NULL, 0, 0 }, { NULL, 0, 0 }, NULL };

static void
main_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct task_queue tmp;

	for (;;) {
		pthread_mutex_lock(&mainq.lock);
		if (mainq.q.len == 0) {
			pthread_mutex_unlock(&mainq.lock);
			return;
		}
		tmp = mainq.q;
		mainq.q = mainq.run;
		mainq.q.len = 0;
		mainq.run = tmp;
		pthread_mutex_unlock(&mainq.lock);
		for (size_t i = 0; i < mainq.run.len; i++)
			mainq.run.v[i].fn(NULL, mainq.run.v[i].a, mainq.run.v[i].b);
		mainq.run.len = 0;
	}
}

int
main_post_init(struct event_base *base)
{
	mainq.ev = event_new(base, -1, 0, main_wake_cb, NULL);
	return mainq.ev != NULL ? 0 : -1;
}

void
main_post(worker_task_fn fn, void *a, uint64_t b)
{
	pthread_mutex_lock(&mainq.lock);
	queue_push(&mainq.q, fn, a, b);
	pthread_mutex_unlock(&mainq.lock);
	/* Thread-safe (evthread_use_pthreads); activating an active event
	 * does nothing, and the callback drains until empty. */
	if (mainq.ev != NULL)
		event_active(mainq.ev, EV_TIMEOUT, 0);
}

void
main_post_free(void)
{
	if (mainq.ev != NULL)
		event_free(mainq.ev);
	mainq.ev = NULL;
	pthread_mutex_lock(&mainq.lock);
	free(mainq.q.v);
	free(mainq.run.v);
	mainq.q = mainq.run = (struct task_queue){ NULL, 0, 0 };
	pthread_mutex_unlock(&mainq.lock);
}
