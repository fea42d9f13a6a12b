/* worker.c: jobs on other threads, completions back on the loop thread
 * in the order the jobs finished, and a shutdown that finishes them all --
 * or, after its grace period, leaves a job stuck in a call behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/event.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

static struct event_base *base;
static pthread_t loop_thread;

struct rec {
	int idx;
	pthread_t job_thread;
	pthread_t done_thread;
	int job_ran, done_ran;
	sem_t *wait_for; /* the job blocks on it */
	sem_t *post_on_done;
};

static int done_order[64], ndone;
static int started; /* jobs that began, across threads */

static void job(void *arg)
{
	struct rec *r = arg;
	r->job_thread = pthread_self();
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	if (r->wait_for)
		sem_wait(r->wait_for);
	r->job_ran = 1;
}

static void done(void *arg)
{
	struct rec *r = arg;
	r->done_thread = pthread_self();
	r->done_ran = 1;
	done_order[ndone++] = r->idx;
	if (r->post_on_done)
		sem_post(r->post_on_done);
}

static int setup(void **state)
{
	(void)state;
	log_init("test", LOG_ERR);
	loop_thread = pthread_self();
	ndone = 0;
	started = 0;
	base = event_base_new();
	return base && worker_init(base, 2) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	worker_shutdown(5000);
	event_base_free(base);
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the loop until n completions arrived (or 5 s passed). */
static void run_until(int n)
{
	double end = now() + 5;
	while (ndone < n && now() < end) {
		struct timeval tv = {0, 10000};
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	assert_int_equal(ndone, n);
}

static void test_threads(void **state)
{
	(void)state;
	struct rec r[4] = {{.idx = 0}, {.idx = 1}, {.idx = 2}, {.idx = 3}};

	for (int i = 0; i < 4; i++)
		assert_int_equal(worker_submit(job, done, &r[i]), 0);
	assert_int_equal(worker_pending(), 4);
	/* nothing completes until the loop runs */
	usleep(20000);
	assert_int_equal(ndone, 0);
	run_until(4);
	assert_int_equal(worker_pending(), 0);
	for (int i = 0; i < 4; i++) {
		assert_true(r[i].job_ran);
		assert_true(r[i].done_ran);
		assert_false(pthread_equal(r[i].job_thread, loop_thread));
		assert_true(pthread_equal(r[i].done_thread, loop_thread));
	}
}

static void test_finish_order(void **state)
{
	(void)state;
	sem_t release_a;
	/* a is submitted first but blocks until b's completion has run on the
	 * loop: the completions come in the order the jobs finished, b first */
	struct rec a = {.idx = 0, .wait_for = &release_a};
	struct rec b = {.idx = 1, .post_on_done = &release_a};

	sem_init(&release_a, 0, 0);
	assert_int_equal(worker_submit(job, done, &a), 0);
	assert_int_equal(worker_submit(job, done, &b), 0);
	run_until(2);
	assert_int_equal(done_order[0], 1);
	assert_int_equal(done_order[1], 0);
	/* both pool threads were used */
	assert_false(pthread_equal(a.job_thread, b.job_thread));
	sem_destroy(&release_a);
}

static void test_pool_bound(void **state)
{
	(void)state;
	sem_t gate;
	struct rec r[6];

	/* six blocked jobs on a pool of two: only two run at once, the rest
	 * wait their turn and all finish */
	sem_init(&gate, 0, 0);
	for (int i = 0; i < 6; i++) {
		r[i] = (struct rec){.idx = i, .wait_for = &gate};
		assert_int_equal(worker_submit(job, done, &r[i]), 0);
	}
	usleep(50000);
	assert_int_equal(__atomic_load_n(&started, __ATOMIC_SEQ_CST), 2);
	for (int i = 0; i < 6; i++)
		sem_post(&gate);
	run_until(6);
	sem_destroy(&gate);
}

static void sleepy_job(void *arg)
{
	usleep(20000);
	job(arg);
}

static void test_shutdown_finishes_queued(void **state)
{
	(void)state;
	struct rec r[5];

	/* a pool of one, five jobs, no loop turn: shutdown runs them all and
	 * then their completions, on the caller's thread */
	worker_shutdown(5000);
	assert_int_equal(worker_init(base, 1), 0);
	for (int i = 0; i < 5; i++) {
		r[i] = (struct rec){.idx = i};
		assert_int_equal(worker_submit(i == 0 ? sleepy_job : job, done, &r[i]), 0);
	}
	worker_shutdown(5000);
	assert_int_equal(ndone, 5);
	assert_int_equal(worker_pending(), 0);
	for (int i = 0; i < 5; i++) {
		assert_true(r[i].job_ran);
		assert_true(r[i].done_ran);
		assert_int_equal(done_order[i], i); /* one thread: in order */
		assert_true(pthread_equal(r[i].done_thread, loop_thread));
	}
	/* a stopped pool takes nothing more */
	struct rec late = {.idx = 9};
	assert_int_equal(worker_submit(job, done, &late), -1);
	assert_false(late.job_ran);
	assert_false(late.done_ran);
	/* and starts again */
	assert_int_equal(worker_init(base, 2), 0);
	assert_int_equal(worker_submit(job, done, &late), 0);
	run_until(6);
	assert_true(late.done_ran);
}

static uint64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_shutdown_leaves_a_stuck_job_behind(void **state)
{
	(void)state;
	sem_t never;
	struct rec stuck = {.idx = 0, .wait_for = &never}, quick = {.idx = 1};

	/* a job blocked in a call that does not return (a device service that
	 * stopped answering) must not hang the stop */
	sem_init(&never, 0, 0);
	assert_int_equal(worker_submit(job, done, &stuck), 0);
	assert_int_equal(worker_submit(job, done, &quick), 0);
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < 2)
		usleep(1000);
	uint64_t t0 = ms_now();
	assert_int_equal(worker_shutdown(200), 1);
	uint64_t took = ms_now() - t0;
	assert_true(took >= 150 && took < 3000);
	assert_true(quick.done_ran); /* what finished is still completed */
	assert_false(stuck.done_ran);
	/* once the call returns, a second shutdown finishes the first */
	sem_post(&never);
	assert_int_equal(worker_shutdown(5000), 0);
	assert_true(stuck.job_ran);
	assert_true(stuck.done_ran);
	assert_int_equal(worker_pending(), 0);
	sem_destroy(&never);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_finish_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_pool_bound, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_shutdown_finishes_queued, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_shutdown_leaves_a_stuck_job_behind, setup,
	                                        teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
