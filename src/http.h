/* HTTPS plumbing shared by delivery (sync.c) and remote.call (remote.c):
 * one libcurl multi handle driven by the daemon's libevent loop, the
 * endpoints' credentials, and the pure pieces of the endpoint contract
 * (docs/delivery.md) kept apart so that tests and fuzzers reach them. */
#ifndef KIOSKD_HTTP_H
#define KIOSKD_HTTP_H

#include <curl/curl.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "conf.h"

/* Bodies read from an endpoint are cut here; a longer answer is an error
 * (transient for a batch), so a hostile endpoint cannot grow us. */
#define HTTP_MAX_BODY (1L << 20)

/* One [endpoint NAME] as the transfers need it: a copy of its
 * configuration (the conf is freed on reload) and its secrets. */
struct http_endpoint {
	char *name;
	char *url; /* without a trailing '/' */
	char *ca_file, *cert_file, *key_file, *token_file, *hmac_key_file;
	int connect_timeout_ms, timeout_ms;
	int low_speed_bytes, low_speed_time_s;
	char *token;             /* from token_file, or NULL */
	unsigned char *hmac_key; /* from hmac_key_file, or NULL */
	size_t hmac_len;
	char secret_error[256]; /* why a secret file is unusable; "" when fine */
};

/* Copy ce; read the secret files (problems logged, kept in
 * secret_error).  0, or -1 when out of memory. */
int http_endpoint_init(struct http_endpoint *h, const struct conf_endpoint *ce);
/* Read token_file and hmac_key_file again (a rotated token); 0 when both
 * are usable, -1 (with secret_error set and logged) when not. */
int http_endpoint_load_secrets(struct http_endpoint *h);
void http_endpoint_free(struct http_endpoint *h);
/* Nonzero when ce configures the same connection as h (same URL, files,
 * timeouts); secrets' contents are not compared. */
int http_endpoint_same(const struct http_endpoint *h, const struct conf_endpoint *ce);

struct http_xfer;
/* A transfer ended: rc is libcurl's result, status the HTTP status (0
 * when there was none).  The transfer is off the multi handle; the
 * callee frees it with http_xfer_free. */
typedef void (*http_done_fn)(struct http_xfer *x, CURLcode rc, long status);

struct http_xfer {
	CURL *easy;
	struct curl_slist *headers;
	char *resp; /* the answer's body, NUL-terminated, at most HTTP_MAX_BODY */
	size_t resp_len, resp_cap;
	int too_big;         /* the answer was longer than HTTP_MAX_BODY */
	long retry_after_ms; /* Retry-After of the answer, -1 when none */
	int running;         /* on the multi handle */
	http_done_fn done;
	void *arg;
	char errbuf[CURL_ERROR_SIZE];
};

int http_init(struct event_base *base);
void http_shutdown(void);
/* Cap on connections kept open for reuse (the sum of the endpoints'
 * concurrency plus some for remote.call). */
void http_set_maxconnects(long n);

/* A POST of body (len bytes, which must outlive the transfer) to url
 * with h's TLS settings, client certificate, Authorization,
 * X-Kiosk-Signature, X-Kiosk-Id and, when idempotency_key is not NULL,
 * Idempotency-Key.  timeout_ms <= 0: h's.  NULL when out of memory. */
struct http_xfer *http_xfer_new(const struct http_endpoint *h, const char *url, const char *body,
                                size_t len, const char *kiosk_id, const char *idempotency_key,
                                int timeout_ms, http_done_fn done, void *arg);
/* Put x on the loop: 0, or -1 (x untouched, not started). */
int http_xfer_start(struct http_xfer *x);
/* Take x off the loop if it runs (done is not called) and free it. */
void http_xfer_free(struct http_xfer *x);
/* "timeout", a TLS or network error, in words for logs and admins. */
const char *http_xfer_error(const struct http_xfer *x, CURLcode rc);

/* ---- between sync.c, which owns the endpoints, and remote.c ---- */

struct http_endpoint *sync_endpoint_find(const char *name);
const char *sync_kiosk_id(void);
/* End the remote calls still running (remote_unavailable). */
void remote_shutdown(void);

/* ---- pure parts (unit tests, fuzzing) ---- */

/* Idempotency-Key of a batch: hex SHA-256 of its ids, each followed by
 * "\n", in order.  out gets 64 hex digits and a NUL. */
void http_idempotency_key(const char *const *ids, int n, char out[65]);
/* X-Kiosk-Signature value: "sha256=" and the hex HMAC-SHA256 of body. */
void http_signature(const unsigned char *key, size_t keylen, const char *body, size_t len,
                    char out[72]);
/* Milliseconds a Retry-After value asks for (delay-seconds or an
 * HTTP-date relative to now), or -1 when it is neither. */
long http_retry_after_ms(const char *value, time_t now);
/* Full jitter: a uniform pick in [0, min(max_ms, min_ms * 2^attempt)]
 * from the random number rnd. */
long http_backoff_ms(long min_ms, long max_ms, unsigned attempt, uint64_t rnd);
/* 64 random bits (getrandom). */
uint64_t http_random(void);
/* 0 when path may follow an endpoint's URL in remote.call: it starts
 * with '/', holds only path characters (no '?', '#', '\', space or
 * control bytes), no "//", no "." or ".." segment, no percent-encoded
 * '.', '/' or '\'.  Else -1 with why. */
int http_path_check(const char *path, char *why, size_t whylen);
/* Up to max bytes of a body, fit for a message: control bytes become
 * spaces, runs of blanks one, the cut marked with "...", valid UTF-8. */
void http_excerpt(const char *body, size_t len, size_t max, char *out, size_t outlen);

#endif
