/* remote.call: one POST to an endpoint with its credentials, answered to
 * the caller as it comes; never queued, never retried (the UI decides). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"
#include "sync.h"
#include "tailq.h"
#include "util.h"

struct remote_call {
	TAILQ_ENTRY(remote_call) entry;
	struct http_xfer *x;
	char *body;
	char endpoint[40];
	int timeout_ms;
	remote_done_fn done;
	void *arg;
};

static TAILQ_HEAD(, remote_call) calls = TAILQ_HEAD_INITIALIZER(calls);

static void call_free(struct remote_call *rc)
{
	http_xfer_free(rc->x);
	free(rc->body);
	free(rc);
}

static struct remote_call *refuse(remote_done_fn done, void *arg, const char *code, const char *fmt,
                                  ...) __attribute__((format(printf, 4, 5)));
static struct remote_call *refuse(remote_done_fn done, void *arg, const char *code, const char *fmt,
                                  ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	utf8_sanitize(why);
	done(arg, code, why, NULL);
	return NULL;
}

/* An Idempotency-Key from the UI goes into a header: 1-255 visible ASCII
 * characters, nothing that could end the header. */
static int key_ok(const char *k)
{
	size_t n = strlen(k);
	if (n < 1 || n > 255)
		return 0;
	for (; *k; k++)
		if (*k < 0x21 || *k > 0x7e)
			return 0;
	return 1;
}

/* The joined URL still names the endpoint's host: http_path_check makes
 * sure of it; this makes sure the check and libcurl agree. */
static int same_origin(const char *base, const char *url)
{
	static const CURLUPart parts[] = {CURLUPART_SCHEME, CURLUPART_HOST,  CURLUPART_PORT,
	                                  CURLUPART_USER,   CURLUPART_QUERY, CURLUPART_FRAGMENT};
	CURLU *a = curl_url(), *b = curl_url();
	int same = a && b && curl_url_set(a, CURLUPART_URL, base, 0) == CURLUE_OK &&
	           curl_url_set(b, CURLUPART_URL, url, 0) == CURLUE_OK;

	for (size_t i = 0; same && i < sizeof(parts) / sizeof(parts[0]); i++) {
		char *pa = NULL, *pb = NULL;
		CURLUcode ea = curl_url_get(a, parts[i], &pa, CURLU_DEFAULT_PORT);
		CURLUcode eb = curl_url_get(b, parts[i], &pb, CURLU_DEFAULT_PORT);
		same = ea == eb && (!pa || !pb ? pa == pb : !strcmp(pa, pb));
		curl_free(pa);
		curl_free(pb);
	}
	curl_url_cleanup(a);
	curl_url_cleanup(b);
	return same;
}

static void on_done(struct http_xfer *x, CURLcode rc, long status)
{
	struct remote_call *c = x->arg;
	remote_done_fn done = c->done;
	void *arg = c->arg;
	const char *code = NULL;
	json_t *result = NULL;
	char why[256] = "", excerpt[160];

	TAILQ_REMOVE(&calls, c, entry);
	http_excerpt(x->resp, x->resp_len, 120, excerpt, sizeof(excerpt));
	if (rc == CURLE_OPERATION_TIMEDOUT && !x->too_big) {
		code = "timeout";
		snprintf(why, sizeof(why), "endpoint %s: %s", c->endpoint, http_xfer_error(x, rc));
	} else if (rc != CURLE_OK) {
		code = "remote_unavailable";
		snprintf(why, sizeof(why), "endpoint %s: %s", c->endpoint, http_xfer_error(x, rc));
	} else if (status >= 200 && status < 300) {
		json_t *body = x->resp_len
		                       ? json_loadb(x->resp, x->resp_len,
		                                    JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL)
		                       : NULL;
		if (!body) {
			/* not JSON: as text (a JSON string is UTF-8) */
			char *s = x->resp ? x->resp : "";
			utf8_sanitize(s);
			body = json_stringn(s, strlen(s));
		}
		result = json_pack("{s:i,s:o}", "status", (int)status, "body",
		                   body ? body : json_null());
		if (!result) {
			code = "remote_unavailable";
			snprintf(why, sizeof(why), "endpoint %s: out of memory", c->endpoint);
		}
	} else if (status >= 400 && status < 500) {
		code = "remote_rejected";
		snprintf(why, sizeof(why), "HTTP %ld: %s", status, excerpt);
	} else {
		code = "remote_unavailable";
		snprintf(why, sizeof(why), "endpoint %s: HTTP %ld%s%s", c->endpoint, status,
		         status < 400 ? " (redirects are not followed)"
		         : excerpt[0] ? ": "
		                      : "",
		         status < 400 ? "" : excerpt);
	}
	utf8_sanitize(why);
	call_free(c);
	done(arg, code, code ? why : NULL, result);
	json_decref(result);
}

struct remote_call *remote_call_start(const char *endpoint, const char *path, json_t *body,
                                      const char *idempotency_key, int timeout_ms,
                                      remote_done_fn done, void *arg)
{
	struct http_endpoint *h = sync_endpoint_find(endpoint);
	struct remote_call *c;
	char why[160], *url = NULL;

	if (!h)
		return refuse(done, arg, "bad_request", "no endpoint named '%.64s'",
		              endpoint ? endpoint : "");
	if (http_path_check(path, why, sizeof(why)) < 0)
		return refuse(done, arg, "bad_request", "%s", why);
	if (idempotency_key && !key_ok(idempotency_key))
		return refuse(done, arg, "bad_request",
		              "idempotency_key: 1-255 characters from '!' to '~'");
	if (h->secret_error[0] && http_endpoint_load_secrets(h) < 0)
		return refuse(done, arg, "remote_unavailable", "endpoint %s: %s", h->name,
		              h->secret_error);
	if (asprintf(&url, "%s%s", h->url, path) < 0)
		return refuse(done, arg, "remote_unavailable", "out of memory");
	if (!same_origin(h->url, url)) {
		free(url);
		return refuse(done, arg, "bad_request", "path: would leave the endpoint's host");
	}
	if (!(c = calloc(1, sizeof(*c))) ||
	    !(c->body = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("{}"))) {
		free(c);
		free(url);
		return refuse(done, arg, "remote_unavailable", "out of memory");
	}
	snprintf(c->endpoint, sizeof(c->endpoint), "%s", h->name);
	c->timeout_ms = timeout_ms;
	c->done = done;
	c->arg = arg;
	c->x = http_xfer_new(h, url, c->body, strlen(c->body), sync_kiosk_id(), idempotency_key,
	                     timeout_ms, on_done, c);
	free(url);
	if (!c->x || http_xfer_start(c->x) < 0) {
		call_free(c);
		return refuse(done, arg, "remote_unavailable", "cannot start the request");
	}
	TAILQ_INSERT_TAIL(&calls, c, entry);
	return c;
}

void remote_call_cancel(struct remote_call *c)
{
	if (!c)
		return;
	TAILQ_REMOVE(&calls, c, entry);
	call_free(c);
}

void remote_shutdown(void)
{
	struct remote_call *c;

	while ((c = TAILQ_FIRST(&calls))) {
		remote_done_fn done = c->done;
		void *arg = c->arg;

		TAILQ_REMOVE(&calls, c, entry);
		call_free(c);
		done(arg, "remote_unavailable", "the daemon is stopping", NULL);
	}
}
