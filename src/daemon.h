/* State every module shares: the loop, the configuration in force, the
 * start time.  Owned and set by kioskd.c. */
#ifndef KIOSKD_DAEMON_H
#define KIOSKD_DAEMON_H

#include <event2/event.h>
#include <jansson.h>
#include <time.h>

#include "conf.h"

extern struct event_base *daemon_base;
extern struct conf *daemon_conf;
extern struct timespec daemon_started; /* CLOCK_MONOTONIC */

/* Re-read the configuration; refuse (and keep the old one) when it is
 * bad.  Returns 0, or -1 with the problems in diag.  changed (a JSON array,
 * may be NULL) receives the names of devices that were reopened. */
int daemon_reload(struct diag *diag, json_t *changed);
/* Begin a graceful stop. */
void daemon_stop(void);
double daemon_uptime(void);
/* "2026-12-04T15:20:00.123Z" for now. */
void daemon_timestamp(char *buf, size_t len);

#endif
