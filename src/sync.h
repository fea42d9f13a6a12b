/* Delivery of queued transactions to the configured HTTPS endpoints, and
 * remote.call: libcurl's multi interface driven by the daemon's libevent
 * loop (socket and timer callbacks; no thread, no blocking call).  Sync
 * talks to the store only through store_take_batch / store_report. */
#ifndef KIOSKD_SYNC_H
#define KIOSKD_SYNC_H

#include <event2/event.h>
#include <jansson.h>

#include "conf.h"
#include "store.h"

int sync_init(struct event_base *base, const struct conf *c);
/* New configuration: endpoints added, changed or removed. */
void sync_apply(const struct conf *c);
void sync_shutdown(void);

/* Something was queued for endpoint (after a commit): send soon. */
void sync_kick(const char *endpoint);
/* Kick every endpoint now, skipping any backoff (kioskctl sync --now). */
void sync_kick_all(void);
/* [{"name", "url", "state": "idle|sending|backoff|down", "last_error"?,
 *   "next_attempt_s"?, "delivered", "failed", "inflight", "queued"}]
 * url without any user:password part; delivered and failed count since
 * start (or since the endpoint was last changed); queued is
 * store_pending(). */
json_t *sync_endpoints_json(void);

/* remote.call: POST body (borrowed: serialised before this returns; NULL
 * sends {}) to <endpoint url><path>.  done(arg, code, why, result) runs
 * on the loop thread, once: code NULL and result {"status", "body"} on a
 * 2xx (body: the answer parsed as JSON, else as a string; result is
 * borrowed: done() takes a reference to keep it); else result NULL and a
 * protocol error code with why:
 *   bad_request         no endpoint named so ("no endpoint named 'x'"), a
 *                       path that is not a plain absolute path (see
 *                       http_path_check: no "..", "//", '?', '#'), a bad
 *                       idempotency_key (1-255 of '!'..'~')
 *   timeout             no answer within timeout_ms (<= 0: the endpoint's)
 *   remote_unavailable  network or TLS error, 5xx, a redirect, an answer
 *                       over 1 MiB, unreadable credential files
 *   remote_rejected     a 4xx: why is "HTTP <status>: <start of the body>"
 * The request carries the endpoint's credentials; they never reach the
 * caller.  Never queued, never retried.  Returns a handle for
 * remote_cancel, or NULL when done() was already called.  sync_shutdown
 * ends calls still running with remote_unavailable. */
typedef void (*remote_done_fn)(void *arg, const char *code, const char *why, json_t *result);
struct remote_call;
struct remote_call *remote_call_start(const char *endpoint, const char *path, json_t *body,
                                      const char *idempotency_key, int timeout_ms,
                                      remote_done_fn done, void *arg);
/* Abandon a call (client gone or cancel): done() is not called. */
void remote_call_cancel(struct remote_call *rc);

/* ---- for tests, fuzzing and a later privilege-separated sync ---- */

/* A 2xx batch answer {"results": [{"id", "status", "reason"?}, ...]}
 * against the batch's n ids: out[i] is OUT_DELIVERED for "ok" and
 * "duplicate", OUT_FAILED for "rejected" (reasons[i] = its reason, cut
 * and cleaned for logs; malloc()ed, the caller frees), OUT_RETRY for an
 * id with no result, any other status, or contradicting results.  0, or
 * -1 (every out[i] OUT_RETRY) when the body is not such an object. */
int sync_parse_results(const char *body, size_t len, const char *const *ids, int n,
                       enum store_outcome *out, char **reasons);

/* The store as sync uses it (docs/delivery.md): by default store.h's
 * functions.  NULL puts those back. */
struct sync_store {
	int (*take_batch)(const char *endpoint, const char *kiosk_id, int max,
	                  struct store_batch *b);
	void (*batch_free)(struct store_batch *b);
	void (*report)(const char *id, enum store_outcome o, const char *reason);
	int64_t (*pending)(const char *endpoint);
};
void sync_set_store(const struct sync_store *s);

#endif
