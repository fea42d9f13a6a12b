/* The device registry: one instance per [device NAME] section, its state
 * machine (opening -> ready <-> busy -> offline -> reopen with backoff, or
 * failed when it cannot ever work), a command queue served one at a time,
 * timeouts and cancellation. */
#ifndef KIOSKD_DEVICES_H
#define KIOSKD_DEVICES_H

#include <jansson.h>

#include "conf.h"
#include "kiosk/hal.h"

struct kiosk_req;
struct kiosk_dev;

/* Load plugins and validate every device section against them. */
int devices_check_conf(const struct conf *c, struct diag *diag);
/* Create and open the devices of c (at start). */
void devices_start(const struct conf *c);
/* Switch to a new configuration: devices whose section changed are closed
 * and reopened, removed ones closed, new ones opened.  Their names go to
 * changed (a JSON array). */
void devices_apply(const struct conf *c, json_t *changed);
void devices_shutdown(void);

struct kiosk_dev *devices_find(const char *name);
/* The device a command addresses: by name, or the only one of its class.
 * NULL with an error code and message. */
struct kiosk_dev *devices_resolve(enum kiosk_class cls, const char *name, const char **code,
                                  char *why, size_t whylen);
const char *device_name(const struct kiosk_dev *d);
enum kiosk_class device_class(const struct kiosk_dev *d);
int device_timeout_ms(const struct kiosk_dev *d);

/* Queue a checked command (r->verb, r->args) on d. */
void devices_submit(struct kiosk_dev *d, struct kiosk_req *r);
/* Stop r (queued or running) and answer it with code ("timeout",
 * "cancelled"). */
void devices_abort(struct kiosk_req *r, const char *code);
/* sim.inject: NULL with why when the device is no simulator or refuses. */
json_t *devices_inject(struct kiosk_dev *d, const char *what, json_t *args, char *why,
                       size_t whylen);

/* <class>.status: the plugin's view, at once, even while a command runs.
 * NULL with why when the device is not open. */
json_t *devices_status(struct kiosk_dev *d, char *why, size_t whylen);
/* [{name, class, plugin, state, reason?, capabilities, status?}] */
json_t *devices_json(int with_status);
/* {"ready": n, "busy": n, ...} */
json_t *devices_state_counts(void);

#endif
