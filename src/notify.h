/* systemd service notifications (READY=1, RELOADING=1, STOPPING=1,
 * STATUS=) and the watchdog ping, sent from the loop so a hung loop
 * stops the pings and systemd restarts us. */
#ifndef KIOSKD_NOTIFY_H
#define KIOSKD_NOTIFY_H

#include <event2/event.h>

void notify_init(struct event_base *base);
void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(void);
void notify_shutdown(void);

#endif
