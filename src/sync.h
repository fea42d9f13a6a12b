/* Delivery of queued transactions to the configured HTTPS endpoints, and
 * remote.call: libcurl's multi interface driven by the daemon's libevent
 * loop (socket and timer callbacks; no thread, no blocking call).  Sync
 * talks to the store only through store_take_batch / store_report. */
#ifndef KIOSKD_SYNC_H
#define KIOSKD_SYNC_H

#include <event2/event.h>
#include <jansson.h>

#include "conf.h"

int sync_init(struct event_base *base, const struct conf *c);
/* New configuration: endpoints added, changed or removed. */
void sync_apply(const struct conf *c);
void sync_shutdown(void);

/* Something was queued for endpoint (after a commit): send soon. */
void sync_kick(const char *endpoint);
/* Kick every endpoint now, skipping any backoff (kioskctl sync --now). */
void sync_kick_all(void);
/* [{"name", "url", "state": "idle|sending|backoff|down", "last_error"?,
 *   "next_attempt_s"?, "delivered", "failed", "inflight"}] */
json_t *sync_endpoints_json(void);

/* remote.call: POST body to <endpoint url><path>.  done(arg, code, why,
 * result) runs on the loop thread: code NULL and result {"status",
 * "body"} on a 2xx; else a protocol error code (remote_unavailable,
 * remote_rejected, timeout, bad_request, unknown_device for an unknown
 * endpoint). Returns a handle for remote_cancel, or NULL when done() was
 * already called. */
typedef void (*remote_done_fn)(void *arg, const char *code, const char *why, json_t *result);
struct remote_call;
struct remote_call *remote_call_start(const char *endpoint, const char *path, json_t *body,
                                      const char *idempotency_key, int timeout_ms,
                                      remote_done_fn done, void *arg);
/* Abandon a call (client gone or cancel): done() is not called. */
void remote_call_cancel(struct remote_call *rc);

#endif
