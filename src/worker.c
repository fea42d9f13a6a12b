#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct job {
	worker_fn fn, done;
	void *arg;
	struct job *next;
};

struct jobq {
	struct job *head, *tail;
};

static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t exited = PTHREAD_COND_INITIALIZER;
static struct jobq todo, finished;
static pthread_t *threads;
static int nthreads, max_threads, stopping, pending, alive;
static int wake_fd = -1;
static struct event *wake_ev;

static void q_push(struct jobq *q, struct job *j)
{
	j->next = NULL;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
}

static struct job *q_take_all(struct jobq *q)
{
	struct job *j = q->head;
	q->head = q->tail = NULL;
	return j;
}

static void *worker_main(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&mtx);
	for (;;) {
		while (!todo.head && !stopping)
			pthread_cond_wait(&cond, &mtx);
		if (!todo.head)
			break;
		struct job *j = todo.head;
		todo.head = j->next;
		if (!todo.head)
			todo.tail = NULL;
		pthread_mutex_unlock(&mtx);
		j->fn(j->arg);
		pthread_mutex_lock(&mtx);
		q_push(&finished, j);
		uint64_t one = 1;
		/* the eventfd counter cannot overflow in practice; a short write
		 * would only delay the wake-up to the next finished job */
		if (write(wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_warn("worker: wake");
	}
	alive--;
	pthread_cond_signal(&exited);
	pthread_mutex_unlock(&mtx);
	return NULL;
}

static size_t count_finished(void)
{
	size_t n = 0;
	for (struct job *j = finished.head; j; j = j->next)
		n++;
	return n;
}

static void run_finished(void)
{
	pthread_mutex_lock(&mtx);
	struct job *j = q_take_all(&finished);
	pthread_mutex_unlock(&mtx);
	while (j) {
		struct job *next = j->next;
		pending--;
		j->done(j->arg);
		free(j);
		j = next;
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;
	(void)what;
	(void)arg;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("worker: read eventfd");
	run_finished();
}

int worker_init(struct event_base *base, int n)
{
	if ((wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		return -1;
	wake_ev = event_new(base, wake_fd, EV_READ | EV_PERSIST, on_wake, NULL);
	if (!wake_ev || event_add(wake_ev, NULL) < 0)
		return -1;
	/* Threads start on demand: an idle daemon whose plugins never block
	 * keeps its memory and thread count down. */
	threads = calloc((size_t)n, sizeof(*threads));
	max_threads = n;
	nthreads = 0;
	stopping = 0;
	return threads ? 0 : -1;
}

int worker_submit(worker_fn job, worker_fn done, void *arg)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j || stopping) {
		free(j);
		return -1;
	}
	j->fn = job;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&mtx);
	if (nthreads <= pending && nthreads < max_threads &&
	    pthread_create(&threads[nthreads], NULL, worker_main, NULL) == 0) {
		nthreads++;
		alive++;
	}
	if (nthreads == 0) {
		pthread_mutex_unlock(&mtx);
		free(j);
		log_err("worker: no thread could be started");
		return -1;
	}
	q_push(&todo, j);
	pending++;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&mtx);
	return 0;
}

int worker_pending(void)
{
	return pending;
}

int worker_shutdown(int grace_ms)
{
	struct timespec until = mono_after_ms(grace_ms);
	int left;

	pthread_mutex_lock(&mtx);
	stopping = 1;
	pthread_cond_broadcast(&cond);
	while (alive > 0 && pthread_cond_clockwait(&exited, &mtx, CLOCK_MONOTONIC, &until) == 0)
		;
	/* threads still there without a job are about to exit: joined below */
	left = alive > 0 ? pending - (int)count_finished() : 0;
	pthread_mutex_unlock(&mtx);
	if (left > 0) {
		/* A thread stuck in a vendor call (a service that stopped
		 * answering) cannot be interrupted, and joining it would hang
		 * the stop: it is left behind, with its job, for exit() */
		run_finished();
		return left;
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	run_finished();
	free(threads);
	threads = NULL;
	nthreads = 0;
	if (wake_ev)
		event_free(wake_ev);
	wake_ev = NULL;
	if (wake_fd >= 0)
		close(wake_fd);
	wake_fd = -1;
	return 0;
}
