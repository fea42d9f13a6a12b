/* Delivery: per endpoint, take batches from the store, POST them, report
 * each transaction's outcome, back off on transient failures.
 *
 * An endpoint is "waiting" while its timer runs (the random start-up
 * delay, then each backoff): no batch starts before it fires, whatever
 * the kicks say.  Otherwise it fills up to `concurrency` requests
 * whenever something changes: a kick (a commit), a finished request,
 * the timer.  Nothing runs when nothing is queued: an idle daemon does
 * not wake up for delivery. */
#include "sync.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "http.h"
#include "log.h"
#include "tailq.h"
#include "util.h"

/* During a long outage: one reminder in the log this often. */
#define OUTAGE_LOG_EVERY_S 600
/* Bytes of an endpoint's reason kept for the store, events and logs. */
#define REASON_MAX 200
/* store_report() of OUT_RETRY is written by the store's next group
 * commit: until then the transactions are still `sending` and a batch
 * cannot take them.  For this long after such a report, finding nothing
 * to send means "look again shortly", not "done". */
#define REQUEUE_WATCH_MS 1000
#define RECHECK_MS       25

enum health { H_NEW, H_UP, H_BACKOFF, H_DOWN };
static const char *const health_names[] = {"new", "up", "backoff", "down"};

struct batch;

struct ep {
	TAILQ_ENTRY(ep) entry;
	struct http_endpoint h;
	char *batch_url; /* <url>/transactions */
	int batch_size, concurrency;
	int backoff_min_ms, backoff_max_ms, startup_delay_ms;

	enum health health;
	int waiting;           /* timer armed: start nothing before it fires */
	struct event *timer;   /* the next attempt (monotonic) */
	struct event *kick;    /* coalesces the kicks of a loop turn */
	struct event *recheck; /* look again once retried ones are queued again */
	double requeued_until; /* monotonic s: see REQUEUE_WATCH_MS */
	struct timespec due;   /* when timer fires, while waiting */
	unsigned failures;     /* consecutive failed attempts: the backoff exponent */
	int isolate;           /* batches of one to send before full ones again */
	TAILQ_HEAD(, batch) batches;
	int inflight;
	uint64_t delivered, failed;
	char last_error[256];

	/* the log during an outage: its first failure, then a reminder
	 * every OUTAGE_LOG_EVERY_S with the count */
	struct timespec outage_since, logged_at;
	unsigned outage_failures;
};

struct batch {
	TAILQ_ENTRY(batch) entry;
	struct ep *ep;
	struct http_xfer *x;
	struct store_batch b;
};

static TAILQ_HEAD(, ep) eps = TAILQ_HEAD_INITIALIZER(eps);
static struct event_base *base;
static char *kiosk_id;
static int initialised;

static const struct sync_store default_store = {
        .take_batch = store_take_batch,
        .batch_free = store_batch_free,
        .report = store_report,
        .pending = store_pending,
};
static const struct sync_store *store = &default_store;

static void pump(struct ep *ep);

void sync_set_store(const struct sync_store *s)
{
	store = s ? s : &default_store;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double ts_s(const struct timespec *ts)
{
	return (double)ts->tv_sec + (double)ts->tv_nsec / 1e9;
}

static struct ep *ep_find(const char *name)
{
	struct ep *ep;
	TAILQ_FOREACH(ep, &eps, entry)
	if (name && !strcmp(ep->h.name, name))
		return ep;
	return NULL;
}

struct http_endpoint *sync_endpoint_find(const char *name)
{
	struct ep *ep = ep_find(name);
	return ep ? &ep->h : NULL;
}

const char *sync_kiosk_id(void)
{
	return kiosk_id;
}

/* ---- the results of a batch ---- */

static char *clean_reason(const char *s)
{
	char buf[REASON_MAX + 8];

	if (!s || !*s)
		return strdup("rejected");
	http_excerpt(s, strlen(s), REASON_MAX, buf, sizeof(buf));
	return strdup(buf[0] ? buf : "rejected");
}

int sync_parse_results(const char *body, size_t len, const char *const *ids, int n,
                       enum store_outcome *out, char **reasons)
{
	json_error_t err;
	json_t *root, *results, *item, *index;
	unsigned char *seen; /* 0: no result yet, 1: one, 2: contradicting ones */
	size_t k;

	for (int i = 0; i < n; i++) {
		out[i] = OUT_RETRY;
		reasons[i] = NULL;
	}
	if (!body || !len)
		return -1;
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
	results = json_object_get(root, "results");
	if (!json_is_object(root) || !json_is_array(results)) {
		json_decref(root);
		return -1;
	}
	/* id -> position: a batch of thousands against as many results */
	index = json_object();
	seen = calloc((size_t)n + 1, 1);
	if (!index || !seen) {
		json_decref(index);
		free(seen);
		json_decref(root);
		return -1;
	}
	for (int i = 0; i < n; i++)
		json_object_set_new(index, ids[i], json_integer(i));
	json_array_foreach(results, k, item)
	{
		const char *id = json_string_value(json_object_get(item, "id"));
		const char *status = json_string_value(json_object_get(item, "status"));
		json_t *pos = id ? json_object_get(index, id) : NULL;
		enum store_outcome o;

		if (!pos || !status)
			continue;
		int i = (int)json_integer_value(pos);
		if (!strcmp(status, "ok") || !strcmp(status, "duplicate"))
			o = OUT_DELIVERED;
		else if (!strcmp(status, "rejected"))
			o = OUT_FAILED;
		else
			o = OUT_RETRY;
		if (seen[i] == 2 || (seen[i] == 1 && out[i] == o))
			continue;
		if (seen[i] == 1) {
			/* "ok" and "rejected" for one id: believe neither, ask again */
			seen[i] = 2;
			out[i] = OUT_RETRY;
			free(reasons[i]);
			reasons[i] = NULL;
			continue;
		}
		seen[i] = 1;
		out[i] = o;
		if (o == OUT_FAILED)
			reasons[i] =
			        clean_reason(json_string_value(json_object_get(item, "reason")));
	}
	free(seen);
	json_decref(index);
	json_decref(root);
	return 0;
}

/* ---- endpoint health, backoff, the log ---- */

static void publish_state(struct ep *ep)
{
	json_t *d =
	        json_pack("{s:s,s:s}", "endpoint", ep->h.name, "state", health_names[ep->health]);
	if (d && ep->health != H_UP && ep->last_error[0])
		json_object_set_new(d, "error", json_string(ep->last_error));
	events_publish("sync.endpoint", NULL, d);
}

static void wait_ms(struct ep *ep, long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	ep->due = mono_after_ms(ms);
	ep->waiting = 1;
	evtimer_add(ep->timer, &tv);
}

/* A failed attempt: back off (once for requests failing together),
 * honouring retry_after_ms (-1: none) up to backoff_max_ms. */
static void fail(struct ep *ep, enum health hl, long retry_after_ms, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void fail(struct ep *ep, enum health hl, long retry_after_ms, const char *fmt, ...)
{
	struct timespec now;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ep->last_error, sizeof(ep->last_error), fmt, ap);
	va_end(ap);
	utf8_sanitize(ep->last_error);
	if (retry_after_ms > ep->backoff_max_ms)
		retry_after_ms = ep->backoff_max_ms;
	if (!ep->waiting) {
		long ms = http_backoff_ms(ep->backoff_min_ms, ep->backoff_max_ms, ep->failures,
		                          http_random());
		if (ep->failures < 64)
			ep->failures++;
		wait_ms(ep, ms > retry_after_ms ? ms : retry_after_ms);
	} else if (retry_after_ms >= 0 && now_s() + retry_after_ms / 1000.0 > ts_s(&ep->due)) {
		/* the other request's backoff is shorter than this Retry-After */
		evtimer_del(ep->timer);
		wait_ms(ep, retry_after_ms);
	}

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (ep->health == H_NEW || ep->health == H_UP) {
		log_warnx("endpoint %s: %s; retrying with backoff", ep->h.name, ep->last_error);
		ep->outage_since = ep->logged_at = now;
		ep->outage_failures = 1;
	} else {
		ep->outage_failures++;
		if (now.tv_sec - ep->logged_at.tv_sec >= OUTAGE_LOG_EVERY_S) {
			log_warnx("endpoint %s: still failing, %u failed attempts in %ld s, the "
			          "last: %s",
			          ep->h.name, ep->outage_failures,
			          (long)(now.tv_sec - ep->outage_since.tv_sec), ep->last_error);
			ep->logged_at = now;
		}
	}
	if (ep->health != hl) {
		ep->health = hl;
		publish_state(ep);
	}
}

/* The endpoint answered as the contract says. */
static void up(struct ep *ep)
{
	struct timespec now;

	ep->failures = 0;
	if (ep->health == H_UP)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (ep->health == H_NEW)
		log_info("endpoint %s: up", ep->h.name);
	else
		log_notice("endpoint %s: up again after %u failed attempts in %ld s", ep->h.name,
		           ep->outage_failures, (long)(now.tv_sec - ep->outage_since.tv_sec));
	ep->health = H_UP;
	ep->last_error[0] = 0;
	publish_state(ep);
}

static void publish_rejected(struct ep *ep, const char *id, const char *reason)
{
	/* ids and reasons only: the payload may hold personal data */
	log_warnx("endpoint %s rejected transaction %s: %s", ep->h.name, id, reason);
	events_publish(
	        "sync.rejected", NULL,
	        json_pack("{s:s,s:s,s:s}", "endpoint", ep->h.name, "txn_id", id, "reason", reason));
}

/* ---- batches ---- */

static void batch_free(struct batch *bt)
{
	http_xfer_free(bt->x);
	store->batch_free(&bt->b);
	free(bt);
}

static void requeued(struct ep *ep)
{
	ep->requeued_until = now_s() + REQUEUE_WATCH_MS / 1000.0;
}

static void report_all(struct batch *bt, enum store_outcome o, const char *reason)
{
	for (int i = 0; i < bt->b.n; i++)
		store->report(bt->b.ids[i], o, reason);
	if (o == OUT_RETRY)
		requeued(bt->ep);
}

static void on_results(struct ep *ep, struct batch *bt, long status)
{
	int n = bt->b.n, delivered = 0, rejected = 0, retry = 0;
	enum store_outcome *out = calloc((size_t)n, sizeof(*out));
	char **reasons = calloc((size_t)n, sizeof(*reasons));

	if (!out || !reasons) {
		report_all(bt, OUT_RETRY, NULL);
		fail(ep, H_BACKOFF, -1, "out of memory reading an answer");
	} else if (sync_parse_results(bt->x->resp, bt->x->resp_len, (const char *const *)bt->b.ids,
	                              n, out, reasons) < 0) {
		report_all(bt, OUT_RETRY, NULL);
		fail(ep, H_BACKOFF, bt->x->retry_after_ms,
		     "HTTP %ld with an answer that is not {\"results\": [...]}", status);
	} else {
		for (int i = 0; i < n; i++) {
			store->report(bt->b.ids[i], out[i], reasons[i]);
			if (out[i] == OUT_DELIVERED) {
				delivered++;
			} else if (out[i] == OUT_FAILED) {
				rejected++;
				publish_rejected(ep, bt->b.ids[i], reasons[i]);
			} else {
				retry++;
			}
		}
		ep->delivered += (uint64_t)delivered;
		ep->failed += (uint64_t)rejected;
		if (delivered)
			events_publish(
			        "sync.delivered", NULL,
			        json_pack("{s:s,s:i}", "endpoint", ep->h.name, "count", delivered));
		/* items with no result would come straight back: not at full speed */
		if (retry) {
			requeued(ep);
			fail(ep, H_BACKOFF, bt->x->retry_after_ms,
			     "%d of %d transactions without a result", retry, n);
		} else {
			up(ep);
		}
	}
	for (int i = 0; reasons && i < n; i++)
		free(reasons[i]);
	free(reasons);
	free(out);
}

static void on_batch_done(struct http_xfer *x, CURLcode rc, long status)
{
	struct batch *bt = x->arg;
	struct ep *ep = bt->ep;
	char excerpt[160];

	TAILQ_REMOVE(&ep->batches, bt, entry);
	ep->inflight--;
	if (rc != CURLE_OK) {
		report_all(bt, OUT_RETRY, NULL);
		/* an oversized answer came from a working endpoint */
		fail(ep, x->too_big ? H_BACKOFF : H_DOWN, -1, "%s", http_xfer_error(x, rc));
	} else if (status >= 200 && status < 300) {
		on_results(ep, bt, status);
	} else if (status == 401 || status == 403 || status == 407) {
		/* our credentials, not the transactions: failing them all would
		 * empty the queue into `failed` until an admin fixes the token */
		report_all(bt, OUT_RETRY, NULL);
		http_excerpt(x->resp, x->resp_len, 100, excerpt, sizeof(excerpt));
		fail(ep, H_DOWN, x->retry_after_ms, "HTTP %ld (check the credentials): %s", status,
		     excerpt);
	} else if (status == 408 || status == 409 || status == 429 || status >= 500 ||
	           status < 400) {
		report_all(bt, OUT_RETRY, NULL);
		http_excerpt(x->resp, x->resp_len, 100, excerpt, sizeof(excerpt));
		fail(ep, H_BACKOFF, x->retry_after_ms, "HTTP %ld%s%s", status,
		     status < 400 ? " (redirects are not followed)"
		     : excerpt[0] ? ": "
		                  : "",
		     status < 400 ? "" : excerpt);
	} else if (bt->b.n == 1) {
		char reason[REASON_MAX + 32];
		http_excerpt(x->resp, x->resp_len, REASON_MAX, excerpt, sizeof(excerpt));
		snprintf(reason, sizeof(reason), "HTTP %ld: %s", status, excerpt);
		store->report(bt->b.ids[0], OUT_FAILED, reason);
		ep->failed++;
		publish_rejected(ep, bt->b.ids[0], reason);
		up(ep);
	} else {
		/* one of them is refused: send them one by one so that only
		 * that one fails */
		log_info("endpoint %s: HTTP %ld for a batch of %d, sending them one at a time",
		         ep->h.name, status, bt->b.n);
		report_all(bt, OUT_RETRY, NULL);
		if (ep->isolate < bt->b.n)
			ep->isolate = bt->b.n;
		/* not now: they are queued again only after the store's commit,
		 * and the singles are for them */
		struct timeval tv = {0, RECHECK_MS * 1000};
		evtimer_add(ep->recheck, &tv);
		batch_free(bt);
		return;
	}
	batch_free(bt);
	pump(ep);
}

static int send_batch(struct ep *ep, struct batch *bt)
{
	char key[65];

	http_idempotency_key((const char *const *)bt->b.ids, bt->b.n, key);
	bt->ep = ep;
	bt->x = http_xfer_new(&ep->h, ep->batch_url, bt->b.body, bt->b.len, kiosk_id, key, 0,
	                      on_batch_done, bt);
	if (!bt->x || http_xfer_start(bt->x) < 0)
		return -1;
	TAILQ_INSERT_TAIL(&ep->batches, bt, entry);
	ep->inflight++;
	log_debug("endpoint %s: sending %d transactions", ep->h.name, bt->b.n);
	return 0;
}

/* Start what may start. */
static void pump(struct ep *ep)
{
	while (!ep->waiting && ep->inflight < ep->concurrency) {
		struct batch *bt;

		if (ep->h.secret_error[0] && http_endpoint_load_secrets(&ep->h) < 0) {
			/* no request without its credentials: it would be refused,
			 * and refusals fail transactions */
			if (store->pending(ep->h.name) > 0)
				fail(ep, H_DOWN, -1, "%s", ep->h.secret_error);
			return;
		}
		if (!(bt = calloc(1, sizeof(*bt)))) {
			fail(ep, H_BACKOFF, -1, "out of memory");
			return;
		}
		if (store->take_batch(ep->h.name, kiosk_id, ep->isolate > 0 ? 1 : ep->batch_size,
		                      &bt->b) < 0) {
			free(bt);
			fail(ep, H_BACKOFF, -1, "the store could not build a batch");
			return;
		}
		if (bt->b.n <= 0) {
			store->batch_free(&bt->b);
			free(bt);
			if (now_s() < ep->requeued_until && !evtimer_pending(ep->recheck, NULL)) {
				struct timeval tv = {0, RECHECK_MS * 1000};
				evtimer_add(ep->recheck, &tv);
			}
			return;
		}
		if (ep->isolate > 0)
			ep->isolate--;
		if (send_batch(ep, bt) < 0) {
			report_all(bt, OUT_RETRY, NULL);
			batch_free(bt);
			fail(ep, H_BACKOFF, -1, "cannot start a request (out of memory)");
			return;
		}
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct ep *ep = arg;
	(void)fd;
	(void)what;

	ep->waiting = 0;
	pump(ep);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pump(arg);
}

/* ---- endpoints ---- */

static void ep_abort(struct ep *ep)
{
	struct batch *bt;

	/* whatever the endpoint did with them, they go again later: it
	 * knows their ids */
	while ((bt = TAILQ_FIRST(&ep->batches))) {
		TAILQ_REMOVE(&ep->batches, bt, entry);
		report_all(bt, OUT_RETRY, NULL);
		batch_free(bt);
	}
	ep->inflight = 0;
}

static void ep_free(struct ep *ep)
{
	ep_abort(ep);
	TAILQ_REMOVE(&eps, ep, entry);
	if (ep->timer)
		event_free(ep->timer);
	if (ep->kick)
		event_free(ep->kick);
	if (ep->recheck)
		event_free(ep->recheck);
	http_endpoint_free(&ep->h);
	free(ep->batch_url);
	free(ep);
}

static struct ep *ep_new(const struct conf_endpoint *ce)
{
	struct ep *ep = calloc(1, sizeof(*ep));

	if (!ep)
		return NULL;
	TAILQ_INIT(&ep->batches);
	if (http_endpoint_init(&ep->h, ce) < 0) {
		free(ep);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&eps, ep, entry);
	ep->batch_size = ce->batch_size > 0 ? ce->batch_size : 1;
	ep->concurrency = ce->concurrency > 0 ? ce->concurrency : 1;
	ep->backoff_min_ms = ce->backoff_min_ms;
	ep->backoff_max_ms = ce->backoff_max_ms;
	ep->startup_delay_ms = ce->startup_delay_ms;
	if (asprintf(&ep->batch_url, "%s/transactions", ep->h.url) < 0)
		ep->batch_url = NULL;
	ep->timer = evtimer_new(base, on_timer, ep);
	ep->kick = event_new(base, -1, 0, on_kick, ep);
	ep->recheck = evtimer_new(base, on_kick, ep);
	if (!ep->batch_url || !ep->timer || !ep->kick || !ep->recheck) {
		ep_free(ep);
		return NULL;
	}
	/* a fleet that comes back from a power cut does not call at once */
	wait_ms(ep, (long)(http_random() % ((uint64_t)ep->startup_delay_ms + 1)));
	return ep;
}

static int ep_same(const struct ep *ep, const struct conf_endpoint *ce)
{
	return http_endpoint_same(&ep->h, ce) && ep->batch_size == ce->batch_size &&
	       ep->concurrency == ce->concurrency && ep->backoff_min_ms == ce->backoff_min_ms &&
	       ep->backoff_max_ms == ce->backoff_max_ms &&
	       ep->startup_delay_ms == ce->startup_delay_ms;
}

static void set_kiosk_id(const struct conf *c)
{
	char host[256] = "";

	free(kiosk_id);
	if (c->kiosk_id && c->kiosk_id[0]) {
		kiosk_id = strdup(c->kiosk_id);
	} else {
		gethostname(host, sizeof(host) - 1);
		kiosk_id = strdup(host[0] ? host : "unknown");
	}
}

static void set_maxconnects(void)
{
	long n = 4; /* for remote.call */
	struct ep *ep;

	TAILQ_FOREACH(ep, &eps, entry)
	n += ep->concurrency;
	http_set_maxconnects(n);
}

int sync_init(struct event_base *b, const struct conf *c)
{
	int n = 0;

	if (initialised)
		sync_shutdown();
	base = b;
	/* libcurl is loaded only when there is an endpoint to talk to */
	if (c->endpoints && http_init(b) < 0)
		return -1;
	initialised = 1;
	set_kiosk_id(c);
	for (const struct conf_endpoint *ce = c->endpoints; ce; ce = ce->next, n++)
		if (!ep_new(ce)) {
			log_warnx("endpoint %s: out of memory", ce->name);
			sync_shutdown();
			return -1;
		}
	set_maxconnects();
	if (n)
		log_info("sync: %d endpoint%s", n, n == 1 ? "" : "s");
	return 0;
}

void sync_apply(const struct conf *c)
{
	struct ep *ep, *tmp;

	if (!initialised)
		return;
	if (c->endpoints && http_init(base) < 0) {
		log_warnx("sync: cannot start libcurl; endpoints stay unused");
		return;
	}
	set_kiosk_id(c);
	TAILQ_FOREACH_SAFE(ep, &eps, entry, tmp)
	{
		const struct conf_endpoint *ce = conf_endpoint_find(c, ep->h.name);
		if (!ce) {
			log_info("endpoint %s: removed", ep->h.name);
			ep_free(ep);
		} else if (!ep_same(ep, ce)) {
			/* batches aborted here, or retried just before, are queued
			 * again only by the store's next commit: the new endpoint
			 * must look again until then, else they wait for the next
			 * submission */
			int watch = ep->inflight > 0 || now_s() < ep->requeued_until;
			log_info("endpoint %s: changed", ep->h.name);
			ep_free(ep);
			if (watch && (ep = ep_new(ce)))
				requeued(ep);
		} else if (http_endpoint_load_secrets(&ep->h) == 0 && !ep->waiting) {
			/* unchanged; a fixed token file counts at once */
			event_active(ep->kick, EV_TIMEOUT, 1);
		}
	}
	for (const struct conf_endpoint *ce = c->endpoints; ce; ce = ce->next)
		if (!ep_find(ce->name) && !ep_new(ce))
			log_warnx("endpoint %s: out of memory", ce->name);
	set_maxconnects();
}

void sync_shutdown(void)
{
	struct ep *ep;

	if (!initialised)
		return;
	while ((ep = TAILQ_FIRST(&eps)))
		ep_free(ep);
	remote_shutdown();
	http_shutdown();
	free(kiosk_id);
	kiosk_id = NULL;
	base = NULL;
	initialised = 0;
}

void sync_kick(const char *endpoint)
{
	struct ep *ep = ep_find(endpoint);

	if (ep && !ep->waiting && ep->inflight < ep->concurrency)
		event_active(ep->kick, EV_TIMEOUT, 1);
}

void sync_kick_all(void)
{
	struct ep *ep;

	TAILQ_FOREACH(ep, &eps, entry)
	{
		if (ep->waiting) {
			evtimer_del(ep->timer);
			ep->waiting = 0;
		}
		event_active(ep->kick, EV_TIMEOUT, 1);
	}
}

/* url as shown: without a user:password part */
static json_t *shown_url(const char *url)
{
	CURLU *u = curl_url();
	char *s = NULL;
	json_t *j;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_USER, NULL, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK) {
		j = json_string(s);
	} else {
		j = json_string("(unparsable)");
	}
	curl_free(s);
	curl_url_cleanup(u);
	return j;
}

json_t *sync_endpoints_json(void)
{
	json_t *a = json_array();
	struct ep *ep;

	TAILQ_FOREACH(ep, &eps, entry)
	{
		const char *state = ep->health == H_BACKOFF ? "backoff"
		                    : ep->health == H_DOWN  ? "down"
		                    : ep->inflight          ? "sending"
		                                            : "idle";
		json_t *o = json_pack("{s:s,s:o,s:s,s:I,s:I,s:i,s:I}", "name", ep->h.name, "url",
		                      shown_url(ep->h.url), "state", state, "delivered",
		                      (json_int_t)ep->delivered, "failed", (json_int_t)ep->failed,
		                      "inflight", ep->inflight, "queued",
		                      (json_int_t)store->pending(ep->h.name));
		if (!o)
			continue;
		if (ep->last_error[0])
			json_object_set_new(o, "last_error", json_string(ep->last_error));
		if (ep->waiting) {
			double s = ts_s(&ep->due) - now_s();
			json_object_set_new(
			        o, "next_attempt_s",
			        json_real(s > 0 ? (double)(long)(s * 10 + 0.5) / 10 : 0));
		}
		json_array_append_new(a, o);
	}
	return a;
}
