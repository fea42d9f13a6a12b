/* sync.c and remote.c on a real loop against the reference endpoint
 * (tests/endpoint/server.py: HTTPS, mTLS, bearer token, HMAC, an
 * idempotency ledger, faults): first with an in-memory store behind
 * sync_set_store, so every outcome sync reports is checked; then with the
 * real store (SQLite, group commit) as the daemon runs it.
 *
 * Checked throughout: nothing is lost (every transaction ends delivered
 * or, when the endpoint refuses it, failed), nothing is applied twice
 * (the ledger), every report is about a transaction that was being sent,
 * the endpoint saw no contract violation (it runs --strict), and failing
 * endpoints are not hammered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "store.h"
#include "sync.h"

#define PYTHON "/usr/bin/python3"
#define MAXTX  2000

static char ep_dir[PATH_MAX];
static pid_t ep_pid = -1;
static int ep_port, ctl_port;

/* ---- the endpoint's control API (blocking; plain HTTP on loopback) ---- */

static size_t ctl_sink(char *p, size_t size, size_t n, void *arg)
{
	char **buf = arg;
	size_t old = *buf ? strlen(*buf) : 0;
	*buf = realloc(*buf, old + size * n + 1);
	memcpy(*buf + old, p, size * n);
	(*buf)[old + size * n] = 0;
	return size * n;
}

static json_t *ctl(const char *method, const char *path, const char *body)
{
	CURL *e = curl_easy_init();
	char url[256], *out = NULL;
	long code = 0;
	json_t *j;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", ctl_port, path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	if (body)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ctl_sink);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
	if (curl_easy_perform(e) != CURLE_OK)
		fail_msg("control %s %s: no answer", method, path);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(e);
	if (code != 200)
		fail_msg("control %s %s: %ld %s", method, path, code, out);
	j = json_loads(out, 0, NULL);
	free(out);
	assert_non_null(j);
	return j;
}

static void ctl_do(const char *method, const char *path, const char *body)
{
	json_decref(ctl(method, path, body));
}

static json_int_t ctl_stat(const char *name)
{
	json_t *s = ctl("GET", "/stats", NULL);
	json_int_t v = json_integer_value(json_object_get(s, name));
	json_decref(s);
	return v;
}

/* ---- the store, in memory ---- */

enum { T_QUEUED, T_SENDING, T_DELIVERED, T_FAILED };

static struct ftxn {
	char id[32];
	int state;
	char *reason;
	int special; /* 1: the endpoint rejects it; 2: the batch body is broken for it */
} txns[MAXTX];
static int ntxns;
static int bad_reports;   /* reports about something that was not being sent */
static int batches_taken; /* store_take_batch calls that gave something */
static int max_batch;

static void txns_add(int n, int special)
{
	for (int i = 0; i < n && ntxns < MAXTX; i++, ntxns++) {
		struct ftxn *t = &txns[ntxns];
		snprintf(t->id, sizeof(t->id), "01TEST%020d", ntxns);
		t->state = T_QUEUED;
		t->special = special;
	}
}

static void txns_reset(void)
{
	for (int i = 0; i < ntxns; i++)
		free(txns[i].reason);
	memset(txns, 0, sizeof(txns));
	ntxns = bad_reports = batches_taken = max_batch = 0;
}

static int count_state(int st)
{
	int n = 0;
	for (int i = 0; i < ntxns; i++)
		n += txns[i].state == st;
	return n;
}

static int f_take(const char *endpoint, const char *kiosk_id, int max, struct store_batch *b)
{
	json_t *list = json_array();
	(void)endpoint;

	memset(b, 0, sizeof(*b));
	b->ids = calloc((size_t)max, sizeof(char *));
	for (int i = 0; i < ntxns && b->n < max; i++) {
		struct ftxn *t = &txns[i];
		if (t->state != T_QUEUED)
			continue;
		t->state = T_SENDING;
		b->ids[b->n++] = strdup(t->id);
		json_t *o = json_pack("{s:s,s:s,s:s,s:{s:i}}", "id", t->id, "type", "test.item",
		                      "created", "2026-12-04T15:20:00.123Z", "payload", "n", i);
		if (t->special == 1)
			json_object_set_new(json_object_get(o, "payload"), "reject",
			                    json_string("card number unknown"));
		if (t->special == 2)
			json_object_del(o, "id"); /* the endpoint answers 400 to the batch */
		json_array_append_new(list, o);
	}
	if (b->n) {
		json_t *body = json_pack("{s:s,s:o}", "kiosk", kiosk_id, "transactions", list);
		b->body = json_dumps(body, JSON_COMPACT);
		b->len = strlen(b->body);
		json_decref(body);
		batches_taken++;
		if (b->n > max_batch)
			max_batch = b->n;
	} else {
		json_decref(list);
	}
	return 0;
}

static void f_free(struct store_batch *b)
{
	for (int i = 0; i < b->n; i++)
		free(b->ids[i]);
	free(b->ids);
	free(b->body);
	memset(b, 0, sizeof(*b));
}

static void f_report(const char *id, enum store_outcome o, const char *reason)
{
	for (int i = 0; i < ntxns; i++) {
		struct ftxn *t = &txns[i];
		if (strcmp(t->id, id))
			continue;
		if (t->state != T_SENDING)
			bad_reports++;
		t->state = o == OUT_DELIVERED ? T_DELIVERED : o == OUT_FAILED ? T_FAILED : T_QUEUED;
		free(t->reason);
		t->reason = reason ? strdup(reason) : NULL;
		return;
	}
	bad_reports++;
}

static int64_t f_pending(const char *endpoint)
{
	(void)endpoint;
	return count_state(T_QUEUED);
}

static const struct sync_store fake = {f_take, f_free, f_report, f_pending};

/* ---- events seen by a subscribed client ---- */

static struct client sub;
static int ev_delivered, ev_rejected, ev_up, ev_down, ev_backoff;
static json_t *last_event;

static void drain_events(void)
{
	for (;;) {
		char *nl = memchr(sub.buf, '\n', sub.len);
		if (!nl) {
			ssize_t r = read(sub.fd, sub.buf + sub.len, sizeof(sub.buf) - sub.len);
			if (r <= 0)
				return;
			sub.len += (size_t)r;
			continue;
		}
		size_t n = (size_t)(nl - sub.buf) + 1;
		json_t *m = json_loadb(sub.buf, n - 1, 0, NULL);
		memmove(sub.buf, sub.buf + n, sub.len - n);
		sub.len -= n;
		const char *topic = json_string_value(json_object_get(m, "event"));
		json_t *d = json_object_get(m, "data");
		const char *st = json_string_value(json_object_get(d, "state"));
		if (!topic) {
			json_decref(m);
			continue;
		}
		if (!strcmp(topic, "sync.delivered"))
			ev_delivered += (int)json_integer_value(json_object_get(d, "count"));
		else if (!strcmp(topic, "sync.rejected"))
			ev_rejected++;
		else if (!strcmp(topic, "sync.endpoint") && st)
			*(!strcmp(st, "up")     ? &ev_up
			  : !strcmp(st, "down") ? &ev_down
			                        : &ev_backoff) += 1;
		json_decref(last_event);
		last_event = m;
	}
}

/* ---- running the loop ---- */

static void noop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Run the loop until cond() or ms pass; returns cond().  Returns the
 * number of loop turns in *turns when not NULL. */
static int run_until(int (*cond)(void), int ms, int *turns)
{
	double end = h_now() + ms / 1000.0;
	struct event *guard = evtimer_new(daemon_base, noop, NULL);
	int n = 0, ok;

	while (!(ok = cond && cond()) && h_now() < end) {
		double left = end - h_now();
		struct timeval tv = {(time_t)left, (suseconds_t)((left - (time_t)left) * 1e6)};
		if (cond && left > 0.05) /* poll the condition now and then */
			tv = (struct timeval){0, 50000};
		evtimer_add(guard, &tv);
		event_base_loop(daemon_base, EVLOOP_ONCE);
		n++;
		drain_events();
	}
	event_free(guard);
	if (turns)
		*turns = n;
	return ok;
}

static int all_settled(void)
{
	return count_state(T_QUEUED) + count_state(T_SENDING) == 0;
}

/* The endpoint's state in sync.status (a static copy). */
static const char *endpoint_state(void)
{
	static char st[16];
	json_t *a = sync_endpoints_json();
	snprintf(st, sizeof(st), "%s",
	         json_string_value(json_object_get(json_array_get(a, 0), "state")));
	json_decref(a);
	return st;
}

static int in_backoff(void)
{
	json_t *a = sync_endpoints_json();
	const char *st = json_string_value(json_object_get(json_array_get(a, 0), "state"));
	int yes = st && !strcmp(st, "backoff");
	json_decref(a);
	return yes;
}

/* ---- set-up ---- */

static void write_file(const char *name, const char *text)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", ep_dir, name);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	chmod(path, 0600);
}

static int group_setup(void **state)
{
	char portfile[PATH_MAX + 32], certs[PATH_MAX + 32], token[PATH_MAX + 32],
	        key[PATH_MAX + 32];
	(void)state;

	if (access(PYTHON, X_OK) < 0 || access("tests/endpoint/server.py", R_OK) < 0) {
		fprintf(stderr,
		        "test_sync_loop: needs %s and tests/endpoint/server.py (run from the "
		        "top directory)\n",
		        PYTHON);
		return -1;
	}
	snprintf(ep_dir, sizeof(ep_dir), "%s/kioskd-ep-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(ep_dir))
		return -1;
	write_file("token", "s3cret-token\n");
	write_file("hmac.key", "hmac-key-bytes\n");
	snprintf(portfile, sizeof(portfile), "%s/port.json", ep_dir);
	snprintf(certs, sizeof(certs), "%s/certs", ep_dir);
	snprintf(token, sizeof(token), "%s/token", ep_dir);
	snprintf(key, sizeof(key), "%s/hmac.key", ep_dir);
	if ((ep_pid = fork()) == 0) {
		char log[PATH_MAX + 32];
		snprintf(log, sizeof(log), "%s/endpoint.log", ep_dir);
		freopen("/dev/null", "r", stdin);
		freopen(log, "a", stdout);
		freopen(log, "a", stderr);
		execl(PYTHON, PYTHON, "tests/endpoint/server.py", "--certs", certs, "--port-file",
		      portfile, "--token-file", token, "--hmac-key", key, "--strict",
		      "--paid-after", "1", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 3000; i++) {
		json_t *j = json_load_file(portfile, 0, NULL);
		if (j) {
			ep_port = (int)json_integer_value(json_object_get(j, "port"));
			ctl_port = (int)json_integer_value(json_object_get(j, "control_port"));
			json_decref(j);
			return 0;
		}
		if (waitpid(ep_pid, NULL, WNOHANG) == ep_pid)
			break;
		usleep(10000);
	}
	fprintf(stderr, "test_sync_loop: the endpoint did not start (see %s/endpoint.log)\n",
	        ep_dir);
	return -1;
}

static int group_teardown(void **state)
{
	char cmd[PATH_MAX + 16];
	(void)state;

	if (ep_pid > 0) {
		kill(ep_pid, SIGTERM);
		waitpid(ep_pid, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ep_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* The configuration of [endpoint e], with extra keys after the defaults. */
static void conf_text(char *buf, size_t len, const char *extra)
{
	snprintf(buf, len,
	         "kiosk_id = K0001\n"
	         "[endpoint e]\n"
	         "url = https://127.0.0.1:%d/api/\n"
	         "ca_file = %s/certs/ca.crt\n"
	         "cert_file = %s/certs/client.crt\n"
	         "key_file = %s/certs/client.key\n"
	         "token_file = %s/token\n"
	         "hmac_key_file = %s/hmac.key\n"
	         "batch_size = 10\n"
	         "concurrency = 2\n"
	         "connect_timeout_ms = 1000\n"
	         "timeout_ms = 3000\n"
	         "low_speed_bytes = 1000\n"
	         "low_speed_time_s = 2\n"
	         "backoff_min_ms = 20\n"
	         "backoff_max_ms = 300\n"
	         "startup_delay_ms = 0\n"
	         "%s",
	         ep_port, ep_dir, ep_dir, ep_dir, ep_dir, ep_dir, extra ? extra : "");
}

static int start_with(const char *extra)
{
	char text[6 * PATH_MAX + 2048];

	ctl_do("POST", "/reset", NULL);
	txns_reset();
	ev_delivered = ev_rejected = ev_up = ev_down = ev_backoff = 0;
	conf_text(text, sizeof(text), extra);
	if (h_start(text) < 0)
		return -1;
	sync_set_store(&fake);
	if (sync_init(daemon_base, daemon_conf) < 0)
		return -1;
	client_connect(&sub, "ui.sock");
	json_decref(request(&sub, "{\"id\":1,\"cmd\":\"events.subscribe\",\"args\":"
	                          "{\"topics\":[\"sync.*\"]}}\n"));
	return 0;
}

static int setup(void **state)
{
	(void)state;
	return start_with(NULL);
}

static int teardown(void **state)
{
	(void)state;
	sync_shutdown();
	sync_set_store(NULL);
	client_close(&sub);
	json_decref(last_event);
	last_event = NULL;
	ctl_do("POST", "/faults/clear", NULL);
	ctl_do("POST", "/tls", "{\"cert\":\"good\"}");
	return h_stop();
}

/* Every transaction delivered once, none failed, the endpoint content. */
static void assert_all_delivered_once(void)
{
	json_t *a = ctl("GET", "/applied?brief=1", NULL), *e;
	size_t i;

	assert_int_equal(bad_reports, 0);
	assert_int_equal(count_state(T_DELIVERED), ntxns);
	assert_int_equal(json_integer_value(json_object_get(a, "count")), ntxns);
	json_array_foreach(json_object_get(a, "applied"), i, e)
	{
		const char *id = json_string_value(json_object_get(e, "id"));
		int found = 0;
		for (int k = 0; k < ntxns; k++)
			found += !strcmp(txns[k].id, id);
		assert_int_equal(found, 1);
	}
	json_decref(a);
	json_t *v = ctl("GET", "/violations", NULL);
	if (json_array_size(json_object_get(v, "violations"))) {
		char *s = json_dumps(v, 0);
		fail_msg("contract violations: %s", s);
	}
	json_decref(v);
}

static json_t *endpoint_json(void)
{
	json_t *a = sync_endpoints_json();
	json_t *e = json_incref(json_array_get(a, 0));
	json_decref(a);
	assert_non_null(e);
	return e;
}

static json_int_t requests_seen(void)
{
	json_t *r = ctl("GET", "/requests", NULL);
	json_int_t n = (json_int_t)json_array_size(json_object_get(r, "requests"));
	json_decref(r);
	return n;
}

/* ---- tests ---- */

static void test_deliver(void **state)
{
	(void)state;

	txns_add(95, 0);
	sync_kick("e");
	assert_true(run_until(all_settled, 10000, NULL));
	assert_all_delivered_once();
	assert_int_equal(max_batch, 10);
	assert_int_equal(batches_taken, 10);
	run_until(NULL, 50, NULL);
	assert_int_equal(ev_delivered, 95);
	assert_int_equal(ev_up, 1);
	assert_int_equal(ev_down + ev_backoff, 0);

	json_t *e = endpoint_json();
	assert_string_equal(json_string_value(json_object_get(e, "name")), "e");
	assert_string_equal(json_string_value(json_object_get(e, "state")), "idle");
	assert_int_equal(json_integer_value(json_object_get(e, "delivered")), 95);
	assert_int_equal(json_integer_value(json_object_get(e, "failed")), 0);
	assert_int_equal(json_integer_value(json_object_get(e, "queued")), 0);
	assert_null(json_object_get(e, "last_error"));
	json_decref(e);

	/* keep-alive: a handful of connections for ten requests */
	json_t *r = ctl("GET", "/requests", NULL), *x;
	size_t i;
	json_int_t conns[16];
	int nconn = 0;
	json_array_foreach(json_object_get(r, "requests"), i, x)
	{
		json_int_t c = json_integer_value(json_object_get(x, "conn"));
		int seen = 0;
		for (int k = 0; k < nconn; k++)
			seen |= conns[k] == c;
		if (!seen && nconn < 16)
			conns[nconn++] = c;
		assert_string_equal(json_string_value(json_object_get(x, "kiosk_id")), "K0001");
	}
	assert_true(nconn <= 2);
	json_decref(r);

	/* more later: a kick sends them */
	txns_add(3, 0);
	sync_kick("e");
	sync_kick("e");
	assert_true(run_until(all_settled, 5000, NULL));
	assert_all_delivered_once();
	assert_int_equal(batches_taken, 11);
	/* a kick for nobody */
	sync_kick("nosuch");
	sync_kick(NULL);
}

static void test_idle_does_not_wake(void **state)
{
	(void)state;
	int turns;
	struct rusage ru0, ru1;

	txns_add(5, 0);
	sync_kick("e");
	assert_true(run_until(all_settled, 5000, NULL));
	/* nothing queued, a connection kept alive: the loop sleeps */
	getrusage(RUSAGE_SELF, &ru0);
	run_until(NULL, 1500, &turns);
	getrusage(RUSAGE_SELF, &ru1);
	assert_true(turns <= 2);
	assert_true(ru1.ru_nvcsw - ru0.ru_nvcsw <= 5);
	/* kicks with nothing queued: one look at the store, no request */
	json_int_t before = requests_seen();
	for (int i = 0; i < 100; i++)
		sync_kick("e");
	run_until(NULL, 200, NULL);
	assert_int_equal(requests_seen(), before);
}

static void test_rejected(void **state)
{
	(void)state;

	txns_add(4, 0);
	txns_add(1, 1);
	txns_add(4, 0);
	sync_kick("e");
	assert_true(run_until(all_settled, 5000, NULL));
	assert_int_equal(bad_reports, 0);
	assert_int_equal(count_state(T_DELIVERED), 8);
	assert_int_equal(txns[4].state, T_FAILED);
	assert_string_equal(txns[4].reason, "card number unknown");
	run_until(NULL, 50, NULL);
	assert_int_equal(ev_rejected, 1);
	json_t *e = endpoint_json();
	assert_int_equal(json_integer_value(json_object_get(e, "failed")), 1);
	assert_int_equal(json_integer_value(json_object_get(e, "delivered")), 8);
	json_decref(e);
}

/* A 4xx for a batch: its transactions go one by one, only the bad one
 * fails. */
static void test_isolate(void **state)
{
	(void)state;

	txns_add(6, 0);
	txns_add(1, 2);
	txns_add(12, 0);
	sync_kick("e");
	assert_true(run_until(all_settled, 10000, NULL));
	assert_int_equal(bad_reports, 0);
	assert_int_equal(count_state(T_DELIVERED), 18);
	assert_int_equal(txns[6].state, T_FAILED);
	assert_non_null(strstr(txns[6].reason, "HTTP 400: "));
	assert_non_null(strstr(txns[6].reason, "no string id"));
	assert_int_equal(ctl_stat("applied"), 18);
	/* and then back to full batches */
	txns_add(20, 0);
	int before = batches_taken;
	sync_kick("e");
	assert_true(run_until(all_settled, 5000, NULL));
	assert_int_equal(batches_taken - before, 2);
}

/* One transient failure each: retried, delivered once. */
static void fault_then_deliver(const char *fault)
{
	txns_add(25, 0);
	ctl_do("POST", "/fault", fault);
	sync_kick("e");
	if (!run_until(all_settled, 15000, NULL)) {
		json_t *e = endpoint_json();
		char *s = json_dumps(e, 0);
		fail_msg("%s: not settled: %d queued, %d sending; %s", fault, count_state(T_QUEUED),
		         count_state(T_SENDING), s);
	}
	assert_all_delivered_once();
	ctl_do("POST", "/faults/clear", NULL);
	txns_reset();
	ctl_do("POST", "/reset", NULL);
}

static void test_transient_faults(void **state)
{
	(void)state;
	static const char *const faults[] = {
	        "{\"name\":\"500\",\"count\":3}",
	        "{\"name\":\"502\",\"count\":1,\"apply\":true}",
	        "{\"name\":\"503\",\"count\":2,\"retry_after\":0}",
	        "{\"name\":\"429\",\"count\":2,\"retry_after\":0}",
	        "{\"name\":\"408\",\"count\":1}",
	        "{\"name\":\"409\",\"count\":1}",
	        "{\"name\":\"reset_before\",\"count\":2}",
	        "{\"name\":\"reset_after\",\"count\":2}",
	        "{\"name\":\"reset_after\",\"count\":1,\"rst\":false}",
	        "{\"name\":\"commit_drop\",\"count\":2}",
	        "{\"name\":\"garbage\",\"count\":2}",
	        "{\"name\":\"garbage\",\"count\":1,\"body\":\"{\\\"results\\\":7}\"}",
	        "{\"name\":\"huge\",\"count\":1}",
	        "{\"name\":\"missing_items\",\"count\":1}",
	        "{\"name\":\"missing_items\",\"count\":1,\"mode\":\"status\"}",
	        "{\"name\":\"missing_items\",\"count\":1,\"mode\":\"id\",\"keep\":0}",
	        "{\"name\":\"close\",\"count\":2}",
	        "{\"name\":\"hang\",\"count\":1}",
	        "{\"name\":\"slow\",\"count\":1,\"ms\":300,\"chunk\":1}",
	        "{\"name\":\"302\",\"count\":1}",
	};
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		fault_then_deliver(faults[i]);
}

/* commit_drop: the endpoint applied the batch, the answer was lost; the
 * same batch comes again, is recognised, and counts as delivered. */
static void test_commit_drop_is_not_applied_twice(void **state)
{
	(void)state;

	txns_add(10, 0);
	ctl_do("POST", "/fault", "{\"name\":\"commit_drop\",\"count\":1}");
	sync_kick("e");
	assert_true(run_until(all_settled, 5000, NULL));
	assert_all_delivered_once();
	assert_int_equal(ctl_stat("applied"), 10);
	assert_int_equal(ctl_stat("received"), 20);
	assert_int_equal(ctl_stat("key_replay"), 1);
}

/* Retry-After is honoured (up to backoff_max_ms). */
static void test_retry_after(void **state)
{
	(void)state;

	teardown(NULL);
	assert_int_equal(start_with("backoff_max_ms = 5000\n"), 0);
	txns_add(5, 0);
	ctl_do("POST", "/fault", "{\"name\":\"503\",\"count\":1,\"retry_after\":2}");
	double t0 = h_now();
	sync_kick("e");
	assert_true(run_until(in_backoff, 2000, NULL));
	assert_int_equal(count_state(T_QUEUED), 5);
	json_t *e = endpoint_json();
	assert_string_equal(json_string_value(json_object_get(e, "state")), "backoff");
	assert_true(json_real_value(json_object_get(e, "next_attempt_s")) > 1.5);
	assert_non_null(strstr(json_string_value(json_object_get(e, "last_error")), "HTTP 503"));
	json_decref(e);
	/* a kick does not cut the wait short */
	sync_kick("e");
	assert_false(run_until(all_settled, 1500, NULL));
	assert_true(run_until(all_settled, 3000, NULL));
	assert_true(h_now() - t0 >= 1.9);
	assert_all_delivered_once();
	run_until(NULL, 50, NULL);
	assert_int_equal(ev_backoff, 1);
	assert_int_equal(ev_up, 1);

	/* an HTTP-date beyond backoff_max_ms: capped */
	teardown(NULL);
	assert_int_equal(start_with("backoff_max_ms = 500\n"), 0);
	txns_add(5, 0);
	ctl_do("POST", "/fault",
	       "{\"name\":\"429\",\"count\":1,"
	       "\"retry_after\":\"Fri, 31 Dec 2100 23:59:59 GMT\"}");
	t0 = h_now();
	sync_kick("e");
	assert_true(run_until(all_settled, 3000, NULL));
	assert_true(h_now() - t0 < 1.5);
	assert_all_delivered_once();
}

/* A long outage: exponential backoff, no hammering, and it recovers. */
static void test_outage_backoff(void **state)
{
	(void)state;

	txns_add(30, 0);
	ctl_do("POST", "/fault", "{\"name\":\"503\",\"retry_after\":null}");
	sync_kick("e");
	run_until(NULL, 3000, NULL);
	/* backoff 20 ms doubling to 300 ms, full jitter: ~20 requests in 3 s
	 * at most (less than a tenth of what no backoff would send) */
	json_int_t n = requests_seen();
	assert_true(n >= 4);
	assert_true(n <= 40);
	assert_int_equal(count_state(T_DELIVERED), 0);
	assert_int_equal(count_state(T_FAILED), 0);
	json_t *e = endpoint_json();
	assert_string_equal(json_string_value(json_object_get(e, "state")), "backoff");
	json_decref(e);
	assert_int_equal(ev_backoff, 1); /* once per transition, not per attempt */

	/* the endpoint goes away entirely: down */
	ctl_do("POST", "/down", NULL);
	ctl_do("POST", "/faults/clear", NULL);
	run_until(NULL, 1500, NULL);
	e = endpoint_json();
	assert_string_equal(json_string_value(json_object_get(e, "state")), "down");
	json_decref(e);
	assert_int_equal(ev_down, 1);
	ctl_do("POST", "/up", NULL);
	assert_true(run_until(all_settled, 5000, NULL));
	assert_all_delivered_once();
	run_until(NULL, 50, NULL);
	assert_int_equal(ev_up, 1);
}

/* sync_kick_all skips the backoff. */
static void test_kick_all(void **state)
{
	(void)state;

	teardown(NULL);
	assert_int_equal(start_with("backoff_min_ms = 60000\nbackoff_max_ms = 60000\n"), 0);
	txns_add(5, 0);
	ctl_do("POST", "/fault", "{\"name\":\"500\",\"count\":1}");
	sync_kick("e");
	assert_true(run_until(in_backoff, 2000, NULL));
	/* backoff in [0, 60 s]: very likely still waiting */
	sync_kick_all();
	assert_true(run_until(all_settled, 2000, NULL));
	assert_all_delivered_once();
}

/* The random start-up delay; kick_all cuts it short. */
static void test_startup_delay(void **state)
{
	(void)state;

	teardown(NULL);
	/* the last startup_delay_ms wins */
	assert_int_equal(start_with("startup_delay_ms = 600000\n"), 0);
	txns_add(3, 0);
	sync_kick("e");
	run_until(NULL, 300, NULL);
	/* ~0.05% chance the pick was below 300 ms */
	json_t *e = endpoint_json();
	if (count_state(T_DELIVERED) == 0) {
		assert_true(json_real_value(json_object_get(e, "next_attempt_s")) > 0);
		assert_true(json_real_value(json_object_get(e, "next_attempt_s")) <= 600);
		assert_string_equal(json_string_value(json_object_get(e, "state")), "idle");
	}
	json_decref(e);
	sync_kick_all();
	assert_true(run_until(all_settled, 3000, NULL));
	assert_all_delivered_once();
}

/* Credentials: a wrong token keeps everything queued (401 is about the
 * kiosk, not the transactions); a reload with the right one delivers. */
static void test_bad_token(void **state)
{
	(void)state;

	write_file("token", "wrong-token\n");
	sync_apply(daemon_conf); /* the files are read again */
	txns_add(12, 0);
	sync_kick("e");
	run_until(NULL, 1000, NULL);
	assert_int_equal(count_state(T_DELIVERED) + count_state(T_FAILED), 0);
	json_t *e = endpoint_json();
	assert_string_equal(json_string_value(json_object_get(e, "state")), "down");
	assert_non_null(strstr(json_string_value(json_object_get(e, "last_error")), "HTTP 401"));
	json_decref(e);
	write_file("token", "s3cret-token\n");
	sync_apply(daemon_conf);
	sync_kick_all();
	assert_true(run_until(all_settled, 3000, NULL));
	assert_all_delivered_once();

	/* a missing token file: nothing is sent at all */
	teardown(NULL);
	assert_int_equal(start_with("token_file = /nonexistent/token\n"), 0);
	txns_add(3, 0);
	sync_kick("e");
	run_until(NULL, 500, NULL);
	assert_int_equal(requests_seen(), 0);
	e = endpoint_json();
	assert_string_equal(json_string_value(json_object_get(e, "state")), "down");
	assert_non_null(
	        strstr(json_string_value(json_object_get(e, "last_error")), "/nonexistent/token"));
	json_decref(e);
	assert_int_equal(count_state(T_QUEUED), 3);
}

/* TLS failures are transient: nothing is lost, and it recovers. */
static void test_tls_failures(void **state)
{
	(void)state;
	static const char *const certs[] = {"unknown_ca", "expired", "wrong_host"};

	for (size_t i = 0; i < 3; i++) {
		char body[64];
		snprintf(body, sizeof(body), "{\"cert\":\"%s\"}", certs[i]);
		ctl_do("POST", "/tls", body);
		txns_add(5, 0);
		sync_kick_all();
		run_until(NULL, 600, NULL);
		assert_int_equal(count_state(T_DELIVERED), (int)i * 5);
		json_t *e = endpoint_json();
		assert_string_equal(json_string_value(json_object_get(e, "state")), "down");
		json_decref(e);
		ctl_do("POST", "/tls", "{\"cert\":\"good\"}");
		sync_kick_all();
		assert_true(run_until(all_settled, 3000, NULL));
	}
	assert_all_delivered_once();

	/* no client certificate, or one the endpoint does not trust */
	teardown(NULL);
	assert_int_equal(start_with("cert_file = /nonexistent.crt\n"), 0);
	txns_add(2, 0);
	sync_kick("e");
	run_until(NULL, 500, NULL);
	assert_int_equal(count_state(T_DELIVERED) + count_state(T_FAILED), 0);
	assert_string_equal(endpoint_state(), "down");
	teardown(NULL);
	char extra[PATH_MAX * 2 + 128];
	snprintf(extra, sizeof(extra),
	         "cert_file = %s/certs/unknown-ca-client.crt\n"
	         "key_file = %s/certs/unknown-ca-client.key\n",
	         ep_dir, ep_dir);
	assert_int_equal(start_with(extra), 0);
	txns_add(2, 0);
	sync_kick("e");
	run_until(NULL, 500, NULL);
	assert_int_equal(count_state(T_DELIVERED) + count_state(T_FAILED), 0);
	assert_string_equal(endpoint_state(), "down");
	assert_int_equal(ctl_stat("applied"), 0);
}

/* A random mix of faults under load: exactly once in effect. */
static void test_fault_mix(void **state)
{
	(void)state;

	teardown(NULL);
	assert_int_equal(start_with("batch_size = 7\nconcurrency = 3\ntimeout_ms = 1500\n"), 0);
	ctl_do("POST", "/config", "{\"seed\":7}");
	ctl_do("POST", "/fault", "{\"name\":\"500\",\"probability\":0.1}");
	static const char *const more[] = {
	        "{\"name\":\"reset_before\",\"probability\":0.1,\"add\":true}",
	        "{\"name\":\"reset_after\",\"probability\":0.1,\"add\":true}",
	        "{\"name\":\"commit_drop\",\"probability\":0.1,\"add\":true}",
	        "{\"name\":\"missing_items\",\"probability\":0.1,\"add\":true}",
	        "{\"name\":\"garbage\",\"probability\":0.05,\"add\":true}",
	        "{\"name\":\"503\",\"probability\":0.05,\"retry_after\":0,\"add\":true}",
	        "{\"name\":\"close\",\"probability\":0.1,\"add\":true}",
	        "{\"name\":\"hang\",\"probability\":0.02,\"add\":true}",
	};
	for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
		ctl_do("POST", "/fault", more[i]);
	txns_add(150, 0);
	txns_add(1, 1);
	txns_add(150, 0);
	for (int round = 0; round < 30 && !all_settled(); round++) {
		sync_kick("e");
		run_until(all_settled, 1000, NULL);
		txns_add(round < 10 ? 5 : 0, 0);
	}
	ctl_do("POST", "/faults/clear", NULL);
	sync_kick_all();
	assert_true(run_until(all_settled, 10000, NULL));
	assert_int_equal(bad_reports, 0);
	assert_int_equal(count_state(T_FAILED), 1);
	assert_int_equal(txns[150].state, T_FAILED);
	assert_int_equal(count_state(T_DELIVERED), ntxns - 1);
	assert_int_equal(ctl_stat("applied"), ntxns - 1);
	json_t *v = ctl("GET", "/violations", NULL);
	assert_int_equal(json_array_size(json_object_get(v, "violations")), 0);
	json_decref(v);
}

/* Reload: a changed endpoint drops its requests (their transactions go
 * back to the queue), a removed one too; an added one starts. */
static void test_apply(void **state)
{
	(void)state;
	char text[6 * PATH_MAX + 2048];
	struct diag d = {0};

	txns_add(10, 0);
	ctl_do("POST", "/fault", "{\"name\":\"hang\"}");
	sync_kick("e");
	run_until(NULL, 300, NULL);
	assert_int_equal(count_state(T_SENDING), 10);

	/* changed: timeout */
	conf_text(text, sizeof(text), "timeout_ms = 4000\n");
	h_write_conf(text);
	struct conf *c = conf_load(h_conf, &d);
	assert_non_null(c);
	sync_apply(c);
	assert_int_equal(count_state(T_QUEUED), 10);
	assert_int_equal(bad_reports, 0);
	run_until(NULL, 300, NULL);
	assert_int_equal(count_state(T_SENDING), 10);

	/* removed */
	struct conf *c2 = conf_load_string("empty", "[daemon]\n", &d);
	assert_non_null(c2);
	sync_apply(c2);
	assert_int_equal(count_state(T_QUEUED), 10);
	json_t *a = sync_endpoints_json();
	assert_int_equal(json_array_size(a), 0);
	json_decref(a);
	sync_kick("e");

	/* added back */
	ctl_do("POST", "/faults/clear", NULL);
	sync_apply(c);
	sync_kick_all();
	assert_true(run_until(all_settled, 5000, NULL));
	assert_int_equal(bad_reports, 0);
	assert_int_equal(count_state(T_DELIVERED), 10);
	conf_free(c2);
	conf_free(daemon_conf);
	daemon_conf = c;
	diag_free(&d);
}

/* ---- remote.call ---- */

static int rc_done;
static char *rc_code, *rc_why;
static json_t *rc_result;

static void on_remote(void *arg, const char *code, const char *why, json_t *result)
{
	(void)arg;
	rc_done++;
	free(rc_code);
	free(rc_why);
	rc_code = code ? strdup(code) : NULL;
	rc_why = why ? strdup(why) : NULL;
	json_decref(rc_result);
	rc_result = json_incref(result); /* borrowed */
}

static int remote_done(void)
{
	return rc_done > 0;
}

/* One call; waits for its end; returns the error code or NULL. */
static const char *call(const char *ep, const char *path, const char *body, const char *key,
                        int timeout_ms)
{
	json_t *b = body ? json_loads(body, JSON_DECODE_ANY, NULL) : NULL;

	rc_done = 0;
	struct remote_call *c = remote_call_start(ep, path, b, key, timeout_ms, on_remote, NULL);
	json_decref(b);
	if (!c)
		assert_int_equal(rc_done, 1);
	else
		assert_true(run_until(remote_done, 10000, NULL));
	assert_int_equal(rc_done, 1);
	return rc_code;
}

static void test_remote_call(void **state)
{
	(void)state;
	json_t *body;

	assert_null(call("e", "/echo", "{\"a\":[1,\"\xe5\x8d\xa1\"]}", NULL, 0));
	assert_int_equal(json_integer_value(json_object_get(rc_result, "status")), 200);
	body = json_object_get(rc_result, "body");
	assert_string_equal(json_string_value(json_array_get(json_object_get(body, "a"), 1)),
	                    "\xe5\x8d\xa1");

	/* the credentials went along; the UI's key too */
	assert_null(call("e", "/whoami", NULL, "pay-123", 0));
	body = json_object_get(rc_result, "body");
	assert_string_equal(json_string_value(json_object_get(body, "client_cn")), "kiosk-0001");
	assert_string_equal(json_string_value(json_object_get(body, "kiosk_id")), "K0001");
	assert_string_equal(json_string_value(json_object_get(body, "idempotency_key")), "pay-123");
	assert_true(json_is_true(json_object_get(body, "authorized")));
	assert_true(json_is_true(json_object_get(body, "signed")));
	/* and never come back */
	char *s = json_dumps(rc_result, 0);
	assert_null(strstr(s, "s3cret"));
	free(s);

	/* the payment flow */
	assert_null(call("e", "/payment/qr", "{\"amount_fen\":5000}", NULL, 0));
	const char *order =
	        json_string_value(json_object_get(json_object_get(rc_result, "body"), "order"));
	char req[128];
	snprintf(req, sizeof(req), "{\"order\":\"%s\"}", order);
	assert_null(call("e", "/payment/status", req, NULL, 0));
	assert_string_equal(
	        json_string_value(json_object_get(json_object_get(rc_result, "body"), "status")),
	        "pending");
	assert_null(call("e", "/payment/status", req, NULL, 0));
	assert_string_equal(
	        json_string_value(json_object_get(json_object_get(rc_result, "body"), "status")),
	        "paid");

	/* 4xx, 5xx, timeout */
	assert_string_equal(call("e", "/payment/status", "{\"order\":\"nope\"}", NULL, 0),
	                    "remote_rejected");
	assert_non_null(strstr(rc_why, "HTTP 404: "));
	assert_non_null(strstr(rc_why, "unknown order"));
	assert_null(rc_result);
	assert_string_equal(call("e", "/echo", "{\"fail\":503,\"retry_after\":5}", NULL, 0),
	                    "remote_unavailable");
	assert_non_null(strstr(rc_why, "HTTP 503"));
	double t0 = h_now();
	assert_string_equal(call("e", "/echo", "{\"sleep_ms\":3000}", NULL, 300), "timeout");
	assert_true(h_now() - t0 < 1.5);
	ctl_do("POST", "/fault", "{\"name\":\"reset_after\",\"count\":1}");
	assert_string_equal(call("e", "/echo", "{}", NULL, 0), "remote_unavailable");
	ctl_do("POST", "/fault", "{\"name\":\"huge\",\"count\":1}");
	assert_string_equal(call("e", "/echo", "{}", NULL, 0), "remote_unavailable");
	assert_non_null(strstr(rc_why, "1 MiB"));
	ctl_do("POST", "/fault", "{\"name\":\"garbage\",\"count\":1}");
	assert_null(call("e", "/echo", "{}", NULL, 0));
	assert_true(json_is_string(json_object_get(rc_result, "body")));

	/* refused before anything is sent (the endpoint logs a request
	 * after its answer: let it) */
	run_until(NULL, 200, NULL);
	json_int_t before = requests_seen();
	assert_string_equal(call("nosuch", "/echo", NULL, NULL, 0), "bad_request");
	assert_string_equal(rc_why, "no endpoint named 'nosuch'");
	assert_string_equal(call(NULL, "/echo", NULL, NULL, 0), "bad_request");
	static const char *const bad_paths[] = {
	        "echo",   "@evil.example/", "//evil.example/x", "/../admin",
	        "/x?y=1", "/x#y",           "/%2e%2e/x",        ""};
	for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++)
		assert_string_equal(call("e", bad_paths[i], NULL, NULL, 0), "bad_request");
	assert_string_equal(call("e", NULL, NULL, NULL, 0), "bad_request");
	assert_string_equal(call("e", "/echo", NULL, "a\r\nX-Evil: 1", 0), "bad_request");
	assert_string_equal(call("e", "/echo", NULL, "", 0), "bad_request");
	assert_int_equal(requests_seen(), before);

	/* cancelled: done() is not called; the daemon goes on */
	rc_done = 0;
	struct remote_call *c = remote_call_start("e", "/echo", NULL, NULL, 0, on_remote, NULL);
	assert_non_null(c);
	remote_call_cancel(c);
	run_until(NULL, 200, NULL);
	assert_int_equal(rc_done, 0);

	/* shut down with a call running: answered */
	json_t *slow = json_pack("{s:i}", "sleep_ms", 2000);
	c = remote_call_start("e", "/echo", slow, NULL, 0, on_remote, NULL);
	json_decref(slow); /* the body is serialised at once */
	assert_non_null(c);
	run_until(NULL, 100, NULL);
	sync_shutdown();
	assert_int_equal(rc_done, 1);
	assert_string_equal(rc_code, "remote_unavailable");

	free(rc_code);
	free(rc_why);
	json_decref(rc_result);
	rc_code = rc_why = NULL;
	rc_result = NULL;
}

/* ---- with the real store ---- */

static int acked, submit_errors;

static void submitted(void *arg, enum store_err err, const char *why, json_t *txn)
{
	(void)arg;
	(void)why;
	if (err) {
		submit_errors++;
		return;
	}
	acked++;
	/* what the daemon does after a commit */
	sync_kick(json_string_value(json_object_get(txn, "endpoint")));
}

static void submit(int n)
{
	static int seq;
	for (int i = 0; i < n; i++) {
		json_t *in = json_pack("{s:s,s:{s:i,s:s}}", "type", "test.item", "payload", "n",
		                       seq++, "order", "P-778812");
		store_submit(in, "e", submitted, NULL);
		json_decref(in);
	}
}

static json_int_t store_count(const char *state)
{
	json_t *c = store_counts();
	json_int_t n = json_integer_value(json_object_get(c, state));
	json_decref(c);
	return n;
}

static int store_settled(void)
{
	return store_count("queued") + store_count("sending") == 0 && acked + submit_errors > 0;
}

static int start_store(const char *extra)
{
	char text[6 * PATH_MAX + 2048], more[1024];

	ctl_do("POST", "/reset", NULL);
	acked = submit_errors = 0;
	ev_delivered = ev_rejected = ev_up = ev_down = ev_backoff = 0;
	snprintf(more, sizeof(more), "%s[store]\npath = kioskd.db\n[route]\ntest.* = e\n",
	         extra ? extra : "");
	conf_text(text, sizeof(text), more);
	if (h_start(text) < 0)
		return -1;
	/* as kioskd.c: the group commit runs after the I/O of a turn */
	if (event_base_priority_init(daemon_base, 3) < 0)
		return -1;
	if (store_open(daemon_base, daemon_conf) < 0 || sync_init(daemon_base, daemon_conf) < 0)
		return -1;
	client_connect(&sub, "ui.sock");
	json_decref(request(&sub, "{\"id\":1,\"cmd\":\"events.subscribe\",\"args\":"
	                          "{\"topics\":[\"sync.*\"]}}\n"));
	return 0;
}

static int setup_store(void **state)
{
	(void)state;
	return start_store(NULL);
}

static int teardown_store(void **state)
{
	(void)state;
	sync_shutdown();
	store_close();
	client_close(&sub);
	json_decref(last_event);
	last_event = NULL;
	ctl_do("POST", "/faults/clear", NULL);
	return h_stop();
}

/* Every acknowledged transaction at the endpoint exactly once. */
static void assert_store_delivered_once(void)
{
	json_t *a = ctl("GET", "/applied?brief=1", NULL), *e;
	size_t i;

	assert_int_equal(submit_errors, 0);
	assert_int_equal(store_count("delivered"), acked);
	assert_int_equal(store_count("failed"), 0);
	assert_int_equal(json_integer_value(json_object_get(a, "count")), acked);
	json_array_foreach(json_object_get(a, "applied"), i, e)
	{
		json_t *t = store_get(json_string_value(json_object_get(e, "id")));
		assert_non_null(t);
		assert_string_equal(json_string_value(json_object_get(t, "state")), "delivered");
		json_decref(t);
	}
	json_decref(a);
	json_t *v = ctl("GET", "/violations", NULL);
	assert_int_equal(json_array_size(json_object_get(v, "violations")), 0);
	json_decref(v);
}

static void test_store_deliver(void **state)
{
	(void)state;

	submit(250); /* one group commit, then 25 batches */
	assert_true(run_until(store_settled, 15000, NULL));
	assert_int_equal(acked, 250);
	assert_store_delivered_once();
	run_until(NULL, 50, NULL);
	assert_int_equal(ev_delivered, 250);
	/* trickling in: each commit kicks */
	for (int i = 0; i < 20; i++) {
		submit(1);
		run_until(NULL, 10, NULL);
	}
	assert_true(run_until(store_settled, 5000, NULL));
	assert_store_delivered_once();
}

/* Transient failures with the store's own timing: a retried transaction
 * is queued again only at the next group commit. */
static void test_store_faults(void **state)
{
	(void)state;
	static const char *const faults[] = {
	        "{\"name\":\"500\",\"count\":2}",
	        "{\"name\":\"422\",\"count\":1}", /* a batch refused: one by one */
	        "{\"name\":\"missing_items\",\"count\":2}",
	        "{\"name\":\"commit_drop\",\"count\":1}",
	        "{\"name\":\"reset_after\",\"count\":2}",
	        "{\"name\":\"garbage\",\"count\":1}",
	        "{\"name\":\"503\",\"count\":3,\"retry_after\":0}",
	};

	teardown_store(NULL);
	/* backoff of a few ms: shorter than a commit can take */
	assert_int_equal(start_store("backoff_min_ms = 10\nbackoff_max_ms = 20\n"), 0);
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		ctl_do("POST", "/fault", faults[i]);
		submit(35);
		if (!run_until(store_settled, 10000, NULL)) {
			json_t *c = store_counts();
			char *s = json_dumps(c, 0);
			fail_msg("%s: not settled: %s", faults[i], s);
		}
		assert_store_delivered_once();
	}
}

/* Many quick retries, nothing new submitted: a backoff that ends before
 * the store's commit puts the transactions back in the queue finds
 * nothing to send; sync must look again rather than go idle. */
static void test_store_quick_retries(void **state)
{
	(void)state;

	teardown_store(NULL);
	assert_int_equal(start_store("backoff_min_ms = 10\nbackoff_max_ms = 10\n"
	                             "concurrency = 1\n"),
	                 0);
	ctl_do("POST", "/fault", "{\"name\":\"500\",\"count\":60}");
	submit(5);
	assert_true(run_until(store_settled, 10000, NULL));
	assert_store_delivered_once();
	assert_int_equal(ctl_stat("applied"), 5);
}

/* The daemon stops with batches on the wire; it starts again: nothing
 * lost, nothing applied twice. */
static void test_store_restart(void **state)
{
	(void)state;

	ctl_do("POST", "/fault", "{\"name\":\"hang\"}");
	submit(30);
	run_until(NULL, 400, NULL);
	assert_int_equal(acked, 30);
	assert_true(store_count("sending") > 0);
	sync_shutdown();
	store_close();
	ctl_do("POST", "/faults/clear", NULL);
	assert_int_equal(store_open(daemon_base, daemon_conf), 0);
	assert_int_equal(store_count("queued"), 30);
	assert_int_equal(sync_init(daemon_base, daemon_conf), 0);
	assert_true(run_until(store_settled, 5000, NULL));
	assert_store_delivered_once();

	/* the answer is lost, the daemon stops before it hears anything */
	ctl_do("POST", "/fault", "{\"name\":\"commit_drop\",\"count\":1}");
	submit(10);
	run_until(NULL, 300, NULL);
	sync_shutdown();
	store_close();
	assert_int_equal(store_open(daemon_base, daemon_conf), 0);
	assert_int_equal(sync_init(daemon_base, daemon_conf), 0);
	sync_kick_all();
	assert_true(run_until(store_settled, 5000, NULL));
	assert_store_delivered_once();
	assert_int_equal(ctl_stat("applied"), 40);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_deliver, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_idle_does_not_wake, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rejected, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_isolate, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_transient_faults, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_commit_drop_is_not_applied_twice, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_retry_after, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_outage_backoff, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_kick_all, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_startup_delay, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_bad_token, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_tls_failures, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_fault_mix, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_apply, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_remote_call, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_deliver, setup_store, teardown_store),
	        cmocka_unit_test_setup_teardown(test_store_faults, setup_store, teardown_store),
	        cmocka_unit_test_setup_teardown(test_store_quick_retries, setup_store,
	                                        teardown_store),
	        cmocka_unit_test_setup_teardown(test_store_restart, setup_store, teardown_store),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
