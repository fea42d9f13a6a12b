/* Signals as loop events, immune to libraries that change dispositions. */
#ifndef KIOSKD_SIG_H
#define KIOSKD_SIG_H

#include <event2/event.h>

/* Block SIGHUP, SIGTERM and SIGINT in this thread and every thread it
 * starts later, and ignore SIGPIPE.  Call before any thread exists. */
void sig_block(void);
/* Deliver the blocked signals to cb(signo) on the loop.  0 or -1. */
int sig_init(struct event_base *base, void (*cb)(int signo));
void sig_shutdown(void);

#endif
