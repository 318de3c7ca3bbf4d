/*
 * worker.h - shared-nothing worker threads (doc/architecture.md, "Threads").
 *
 * Each worker runs one event_base and owns its connections. Workers talk only
 * through inboxes: worker_post() appends a task (function + two arguments)
 * to a worker's queue and wakes it through an eventfd; the task runs on that
 * worker's thread. Posting never allocates per task (the queue is an array
 * that grows and is reused).
 *
 * worker_sync_all() is the quiescent point used before freeing shared
 * structures (configuration, module code): it returns once every worker has
 * run a no-op task, i.e. has finished whatever callback it was in when the
 * call began.
 */
#ifndef XMPPD_WORKER_H
#define XMPPD_WORKER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct worker;

typedef void (*worker_task_fn)(struct worker *w, void *a, uint64_t b);

/* Creates n workers (threads not yet started). */
int worker_init(unsigned n, const char **error_r);
/* Starts the threads; each runs its event loop until worker_stop_all. */
int worker_start_all(void);
/* Asks every loop to exit once its connections are gone, and joins. */
void worker_join_all(void);
void worker_free_all(void);

unsigned worker_count(void);
/* Tasks waiting in worker id's inbox (xmppd_worker_queue_depth). Any
 * thread; takes the inbox lock briefly. */
size_t worker_queue_depth(unsigned id);
struct worker *worker_get(unsigned id);
/* The worker running the calling thread, or NULL on the main thread. */
struct worker *worker_self(void);
unsigned worker_id(const struct worker *w);
struct event_base *worker_base(struct worker *w);

/* Runs fn(w, a, b) on worker w. Callable from any thread. When w is the
 * calling worker the task is still queued (never run re-entrantly). */
void worker_post(struct worker *w, worker_task_fn fn, void *a, uint64_t b);
/* Runs fn on every worker. */
void worker_post_all(worker_task_fn fn, void *a, uint64_t b);
/* Blocks (main thread only) until every worker has passed a quiescent
 * point. */
void worker_sync_all(void);
/* Tells every worker its loop may exit (after shutdown closed streams). */
void worker_exit_all(void);
/* fn(w) runs on each worker's thread when its loop has ended, before the
 * thread exits (the asynchronous store completes what is pending there).
 * One function; set before the workers start. */
void worker_set_exit_hook(void (*fn)(struct worker *w));

/*
 * The main thread's inbox: main_post() runs fn(NULL, a, b) on the main
 * thread (the control socket's, where module and account commands run),
 * from any thread. main_post_init takes the main event base (made with
 * evthread_use_pthreads, so that event_active from a worker is safe).
 * Tasks still queued when main_post_free runs are dropped, not run: their
 * owners free what they point to (ctl/api.c keeps a list).
 */
int main_post_init(struct event_base *base);
void main_post(worker_task_fn fn, void *a, uint64_t b);
void main_post_free(void);

#endif
