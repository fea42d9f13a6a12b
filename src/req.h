/* A request in flight: the core's side of `struct kiosk_req`.  It is
 * answered exactly once (reply, fail, timeout or cancel) and freed when
 * it is both answered and no longer held by a device. */
#ifndef KIOSKD_REQ_H
#define KIOSKD_REQ_H

#include "tailq.h"
#include <event2/event.h>
#include <jansson.h>

#include "kiosk/hal.h"

struct session;

struct kiosk_req {
	TAILQ_ENTRY(kiosk_req) s_entry; /* the session's open requests */
	TAILQ_ENTRY(kiosk_req) d_entry; /* the device's queue */
	struct session *sess;           /* NULL once the client is gone */
	json_t *id;
	char *cmd;
	const char *verb; /* points into cmd: the part after "<class>." */
	json_t *args;
	struct kiosk_dev *dev;
	char *flow, *txn; /* what a device command served (audit journal) */
	char outcome[24]; /* "ok" or the error code of the final reply */
	char *detail;     /* the error message, for the audit journal */
	struct event *timer;
	int timeout_ms;
	/* Who holds the request besides its session (a device queue, the
	 * store's group commit, a remote call) and how to stop it early. */
	void (*abort)(struct kiosk_req *r, const char *code);
	void *owner;
	unsigned answered : 1;
	unsigned held : 1;    /* an owner still refers to it */
	unsigned running : 1; /* handed to the plugin */
	unsigned cancelled : 1;
};
TAILQ_HEAD(req_list, kiosk_req);

struct kiosk_req *req_new(struct session *s, json_t *id, const char *cmd, json_t *args,
                          int timeout_ms);
/* Start the timeout clock. */
void req_arm(struct kiosk_req *r);
void req_reply(struct kiosk_req *r, json_t *result);
void req_fail(struct kiosk_req *r, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
void req_vfail(struct kiosk_req *r, const char *code, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));
void req_progress(struct kiosk_req *r, json_t *data);
/* Mark r held by an owner that will call req_release; abort (may be NULL)
 * stops the work early on timeout, cancel or disconnect. */
void req_hold(struct kiosk_req *r, void (*abort)(struct kiosk_req *r, const char *code),
              void *owner);
/* The owner let go of it; frees it if already answered. */
void req_release(struct kiosk_req *r);
/* The client went away: nothing more is sent and a running command is
 * cancelled. */
void req_orphan(struct kiosk_req *r);
/* Send a final error for a request that never became a kiosk_req. */
void reply_error(struct session *s, json_t *id, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* Send a final reply for a request answered on the spot. */
void reply_ok(struct session *s, json_t *id, json_t *result);

/* The session's open requests (kept by ipc.c). */
struct req_list *session_reqs(struct session *s);

#endif
