/* struct kiosk_dev, shared by devices.c (lifecycle) and host.c (the
 * services plugins call).  Not a public header. */
#ifndef KIOSKD_DEV_H
#define KIOSKD_DEV_H

#include "tailq.h"
#include <event2/event.h>

#include "conf.h"
#include "plugin.h"
#include "req.h"

enum dev_state {
	DEV_OPENING, /* open() being tried */
	DEV_READY,
	DEV_BUSY,
	DEV_OFFLINE, /* closed; reopen scheduled */
	DEV_FAILED,  /* cannot work with this configuration: no retries */
};

struct kiosk_timer {
	TAILQ_ENTRY(kiosk_timer) entry;
	struct kiosk_dev *dev;
	struct event *ev;
	kiosk_cb cb;
	void *arg;
	unsigned repeat : 1, firing : 1, stopped : 1, detached : 1;
};

struct kiosk_watch {
	TAILQ_ENTRY(kiosk_watch) entry;
	struct kiosk_dev *dev;
	struct event *ev;
	kiosk_fd_cb cb;
	void *arg;
};

struct kiosk_dev {
	TAILQ_ENTRY(kiosk_dev) entry;
	char *name;
	enum kiosk_class cls;
	struct conf_device *conf;    /* our own copy */
	const struct plugin *plugin; /* NULL when it could not be loaded */
	enum dev_state state;
	char reason[256];
	void *priv;
	int open;     /* the plugin's open() succeeded and close() is due */
	int jobs;     /* worker jobs in flight: close waits for them */
	int removing; /* free once closed and jobs are done */
	struct req_list queue;
	struct kiosk_req *running;
	int in_run;
	struct event *reopen_ev, *grace_ev;
	int backoff_ms;
	TAILQ_HEAD(, kiosk_timer) timers;
	TAILQ_HEAD(, kiosk_watch) watches;
};

void device_lost(struct kiosk_dev *d, const char *reason);
/* Its hardware came back (hotplug, simulated replug): reopen now rather
 * than after the backoff. */
void device_replugged(struct kiosk_dev *d);
/* The plugin finished r (reply or fail already sent or skipped). */
void device_done(struct kiosk_dev *d, struct kiosk_req *r);
/* A worker job of d finished. */
void device_job_done(struct kiosk_dev *d);
void device_emit(struct kiosk_dev *d, const char *event, json_t *data);
void device_release_resources(struct kiosk_dev *d);

#endif
