/* A small pool of threads for blocking vendor calls.  Jobs run on a
 * worker; their completion callbacks run back on the loop thread, so no
 * daemon state is ever touched from another thread. */
#ifndef KIOSKD_WORKER_H
#define KIOSKD_WORKER_H

#include <event2/event.h>

typedef void (*worker_fn)(void *arg);

int worker_init(struct event_base *base, int nthreads);
/* 0, or -1 when the pool is stopping or out of memory. */
int worker_submit(worker_fn job, worker_fn done, void *arg);
/* Jobs queued or running. */
int worker_pending(void);
/* Run every queued job to its end, then their done callbacks; join; 0.
 * Jobs still running after grace_ms are left behind and their number
 * returned: their done callbacks have not run and the pool is not freed,
 * so the caller either exits without unloading the code they run, or
 * calls this again once they returned. */
int worker_shutdown(int grace_ms);

#endif
