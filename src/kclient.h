/*
 * kclient -- the client side of the kioskd protocol (PROTOCOL.md), for
 * kioskctl, tests and kiosk UIs written in C.  Needs only libc + jansson.
 *
 * One connection is one struct kclient, used from one thread.  Requests
 * get integer ids from the library; messages from the daemon are read
 * into a queue in arrival order.  Two ways to drive it:
 *
 *  - blocking: kc_call() sends a request and waits for its final reply;
 *    events, progress and other replies that arrive meanwhile are queued
 *    (or handed to the handler) for later, so calls may be pipelined;
 *  - from your own poll loop: poll kc_fd() for POLLIN (plus POLLOUT while
 *    kc_want_write()), then kc_feed() / kc_flush(), then kc_next() until
 *    it returns NULL.
 *
 * JSON ownership: arguments passed in are borrowed (the library takes its
 * own references); messages handed out by kc_next(), kc_wait_reply() and
 * kc_call() are new references the caller must json_decref(); messages
 * passed to a handler are borrowed for the duration of the callback.
 */
#ifndef KCLIENT_H
#define KCLIENT_H

#include <jansson.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct kclient;

/* How much longer kc_call() waits than the timeout it gives the daemon. */
#define KC_GRACE_MS 500

/* How an operation ended; kc_strerror() has the words. */
enum kc_status {
	KC_OK = 0,   /* done; for a reply: the daemon answered "ok": true */
	KC_EREPLY,   /* the daemon answered "ok": false; see kc_error_code() */
	KC_ETIMEOUT, /* the client-side deadline passed first */
	KC_ECLOSED,  /* the daemon closed the connection (sticky) */
	KC_EIO,      /* a socket call failed (connection is unusable) */
	KC_EPROTO,   /* the daemon sent a line that is not the protocol; it was dropped */
	KC_EINVAL,   /* bad argument from the caller, or out of memory */
};

/* What a message from the daemon is (PROTOCOL.md "Daemon -> client"). */
enum kc_kind {
	KC_NONE = 0, /* not a protocol message */
	KC_REPLY,    /* final reply: has "id" and "ok" */
	KC_PROGRESS, /* progress of a running request: "id" and "progress" */
	KC_EVENT,    /* subscribed event: "event", "device", "seq", "ts", "data" */
};

/* Receives progress and events instead of the queue; msg is borrowed.
 * It must not call kc_call(), kc_wait() or kc_wait_reply(). */
typedef void kc_handler(void *arg, enum kc_kind kind, json_t *msg);

/* Connect to the Unix socket at path; NULL with err filled (and errno kept) on failure. */
struct kclient *kc_connect(const char *path, char *err, size_t errlen);
/* Close the connection and free everything still queued. */
void kc_close(struct kclient *kc);
/* The socket, non-blocking, for the caller's poll loop; do not read or close it. */
int kc_fd(const struct kclient *kc);
/* Text of the last error (connect path and strerror, reply code: message, ...). */
const char *kc_strerror(const struct kclient *kc);
/* Hand progress and events to fn (NULL: queue them for kc_next(), the default). */
void kc_set_handler(struct kclient *kc, kc_handler *fn, void *arg);

/* Queue a request and write what the socket takes; *id gets its id once queued (also when
 * the write then fails).  device may be NULL, args NULL or an object (borrowed);
 * timeout_ms <= 0 leaves the daemon's default. */
int kc_send(struct kclient *kc, const char *cmd, const char *device, json_t *args, int timeout_ms,
            long long *id);
/* Ask the daemon to cancel request id; its final reply (cancelled) still arrives. */
int kc_cancel(struct kclient *kc, long long id);
/* Non-zero while requests wait to be written: poll for POLLOUT and call kc_flush(). */
int kc_want_write(const struct kclient *kc);
/* Write pending requests without blocking. */
int kc_flush(struct kclient *kc);
/* Read what is readable without blocking and queue the complete messages. */
int kc_feed(struct kclient *kc);
/* The oldest queued message (new reference) and its kind, or NULL when none. */
json_t *kc_next(struct kclient *kc, enum kc_kind *kind);

/* The waits below poll the socket themselves and resume after signals.
 * Block until kc_next() has a message; timeout_ms < 0 waits forever, 0 only reads what is there. */
int kc_wait(struct kclient *kc, int timeout_ms);
/* Block until the final reply to id; *reply (may be NULL) gets it as a new reference. */
int kc_wait_reply(struct kclient *kc, long long id, int timeout_ms, json_t **reply);
/* kc_send() + kc_wait_reply().  timeout_ms > 0 goes to the daemon as the request's timeout
 * and the wait ends KC_GRACE_MS later, so the daemon's own "timeout" reply normally wins;
 * when the wait ends first the request is cancelled and its late reply dropped.
 * timeout_ms <= 0: the daemon's default, and wait for as long as that takes. */
int kc_call(struct kclient *kc, const char *cmd, const char *device, json_t *args, int timeout_ms,
            json_t **reply);

/* The kind of a parsed message. */
enum kc_kind kc_classify(json_t *msg);
/* A reply's "result" (borrowed), NULL when absent. */
json_t *kc_result(json_t *reply);
/* A reply's error code / message (borrowed strings), NULL when it is not an error. */
const char *kc_error_code(json_t *reply);
const char *kc_error_message(json_t *reply);

#ifdef __cplusplus
}
#endif

#endif
