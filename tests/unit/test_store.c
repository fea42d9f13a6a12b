/* store.c: the SQLite outbox, on real database files in a temporary
 * directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "crypt.h"
#include "store_harness.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- basics ---- */

static void test_open_schema(void **state)
{
	(void)state;
	assert_int_equal(store_open(t_base, &t_conf), 0);
	sqlite3 *db = t_raw();
	assert_int_equal(t_raw_int(db, "PRAGMA user_version"), 2);
	/* WAL, and the tables and indexes the issue names */
	char *mode = NULL;
	sqlite3_stmt *st;
	sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	mode = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	assert_string_equal(mode, "wal");
	free(mode);
	static const char *const names[] = {"transactions", "audit",    "meta",
	                                    "txn_queue",    "txn_flow", "txn_created"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char sql[200];
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM sqlite_schema WHERE name = '%s'",
		         names[i]);
		assert_int_equal(t_raw_int(db, sql), 1);
	}
	/* the store's own connection: synchronous=FULL (2), bounded cache */
	assert_int_equal(t_raw_int(store_sqlite(), "PRAGMA synchronous"), 2);
	assert_int_equal(t_raw_int(store_sqlite(), "PRAGMA cache_size"), -1000);
	/* over the shim that writes each WAL commit at once (walvfs.c) */
	sqlite3_vfs *vfs = NULL;
	assert_int_equal(
	        sqlite3_file_control(store_sqlite(), "main", SQLITE_FCNTL_VFS_POINTER, &vfs),
	        SQLITE_OK);
	assert_non_null(vfs);
	assert_int_equal(strncmp(vfs->zName, "kioskd-wal+", 11), 0);
	sqlite3_close(db);
}

static void test_submit_get(void **state)
{
	(void)state;
	struct t_res r = {0};

	assert_int_equal(store_open(t_base, &t_conf), 0);
	assert_int_equal(t_submit("{\"type\": \"gas.topup\", \"payload\": {\"order\": \"P-1\", "
	                          "\"amount_fen\": 5000}, \"flow\": \"f1\", \"final\": false}",
	                          &r),
	                 STORE_OK);
	const char *id = t_id(&r);
	assert_non_null(id);
	assert_int_equal(strlen(id), 26);
	assert_string_equal(json_string_value(json_object_get(r.txn, "state")), "queued");
	assert_string_equal(json_string_value(json_object_get(r.txn, "endpoint")), "ep");

	json_t *t = store_get(id);
	assert_non_null(t);
	assert_string_equal(json_string_value(json_object_get(t, "type")), "gas.topup");
	assert_string_equal(json_string_value(json_object_get(t, "state")), "queued");
	assert_string_equal(json_string_value(json_object_get(t, "flow")), "f1");
	assert_true(json_is_false(json_object_get(t, "final")));
	assert_int_equal(
	        json_integer_value(json_object_get(json_object_get(t, "payload"), "amount_fen")),
	        5000);
	const char *created = json_string_value(json_object_get(t, "created"));
	assert_non_null(created);
	assert_int_equal(strlen(created), 24); /* 2026-12-04T15:20:00.123Z */
	assert_int_equal(created[23], 'Z');
	json_decref(t);
	assert_null(store_get("no-such-id"));

	/* ids sort in creation order */
	char prev[64];
	snprintf(prev, sizeof(prev), "%s", id);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {}}", &r), STORE_OK);
		assert_true(strcmp(t_id(&r), prev) > 0);
		snprintf(prev, sizeof(prev), "%s", t_id(&r));
	}
	t_res_clear(&r);
}

static void test_submit_invalid(void **state)
{
	(void)state;
	struct t_res r = {0};
	static const struct {
		const char *in, *why;
	} bad[] = {
	        {"{\"payload\": {}}", "type"},
	        {"{\"type\": \"Gas\", \"payload\": {}}", "type"},
	        {"{\"type\": \"a b\", \"payload\": {}}", "type"},
	        {"{\"type\": "
	         "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", "
	         "\"payload\": {}}",
	         "type"},
	        {"{\"type\": \"x\"}", "payload"},
	        {"{\"type\": \"x\", \"payload\": [1]}", "payload"},
	        {"{\"type\": \"x\", \"payload\": {\"a\": 1}, \"pii\": [\"b\"]}", "not a key"},
	        {"{\"type\": \"x\", \"payload\": {\"a\": 1}, \"pii\": \"a\"}", "pii"},
	        {"{\"type\": \"x\", \"payload\": {\"a\": 1}, \"pii\": [1]}", "pii[0]"},
	        {"{\"type\": \"x\", \"payload\": {}, \"blobs\": [\"abc\"]}", "blobs[0]"},
	        {"{\"type\": \"x\", \"payload\": {}, \"blobs\": "
	         "[\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"]}",
	         "no blob"},
	        {"{\"type\": \"x\", \"payload\": {}, \"flow\": \"a/b\"}", "flow"},
	        {"{\"type\": \"x\", \"payload\": {}, \"flow\": \"\"}", "flow"},
	        {"{\"type\": \"x\", \"payload\": {}, \"final\": 1}", "final"},
	        {"{\"type\": \"x\", \"payload\": {}, \"txn_id\": \"a b\"}", "txn_id"},
	        {"{\"type\": \"x\", \"payload\": {}, \"txn_id\": 5}", "txn_id"},
	        {"{\"type\": \"x\", \"payload\": {}, \"colour\": 5}", "unknown key 'colour'"},
	};

	assert_int_equal(store_open(t_base, &t_conf), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(t_submit(bad[i].in, &r), STORE_EINVAL);
		if (!strstr(r.why, bad[i].why))
			fail_msg("%s: '%s' does not mention '%s'", bad[i].in, r.why, bad[i].why);
		assert_null(r.txn);
	}
	/* payload over 256 KiB serialised */
	size_t big = 256 * 1024;
	char *text = malloc(big + 100);
	assert_non_null(text);
	int n = snprintf(text, big + 100, "{\"type\": \"x\", \"payload\": {\"a\": \"");
	memset(text + n, 'x', big);
	strcpy(text + n + big, "\"}}");
	assert_int_equal(t_submit(text, &r), STORE_EINVAL);
	assert_non_null(strstr(r.why, "at most"));
	/* just under the limit is fine */
	strcpy(text + n + big - 40, "\"}}");
	assert_int_equal(t_submit(text, &r), STORE_OK);
	free(text);
	/* nothing but the last one was stored */
	sqlite3 *db = t_raw();
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM transactions"), 1);
	sqlite3_close(db);
	t_res_clear(&r);
}

static void test_pii_without_key(void **state)
{
	(void)state;
	struct t_res r = {0};

	assert_int_equal(store_open(t_base, &t_conf), 0);
	assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {\"card\": \"1\"}, \"pii\": "
	                          "[\"card\"]}",
	                          &r),
	                 STORE_ENOKEY);
	assert_string_equal(r.why, "no encryption key configured for personal data");
	/* without personal data it is fine */
	assert_int_equal(
	        t_submit("{\"type\": \"x\", \"payload\": {\"card\": \"1\"}, \"pii\": []}", &r),
	        STORE_OK);
	t_res_clear(&r);
}

/* ---- idempotency ---- */

static void test_idempotent_txn_id(void **state)
{
	(void)state;
	struct t_res r = {0}, r2 = {0};
	const char *a = "{\"type\": \"gas.topup\", \"txn_id\": \"ui:0001\", \"payload\": "
	                "{\"card\": \"C-42\", \"amount\": 5}, \"pii\": [\"card\"]}";

	assert_int_equal(store_open(t_base, &t_conf), 0);
	assert_int_equal(t_submit(a, &r), STORE_OK);
	assert_string_equal(t_id(&r), "ui:0001");
	/* again: the same row, its current state */
	assert_int_equal(t_submit(a, &r), STORE_OK);
	assert_string_equal(t_id(&r), "ui:0001");
	assert_string_equal(json_string_value(json_object_get(r.txn, "state")), "queued");
	/* key order does not matter */
	assert_int_equal(t_submit("{\"type\": \"gas.topup\", \"txn_id\": \"ui:0001\", \"pii\": "
	                          "[\"card\"], \"payload\": {\"amount\": 5, \"card\": \"C-42\"}}",
	                          &r),
	                 STORE_OK);
	/* different content */
	assert_int_equal(t_submit("{\"type\": \"gas.topup\", \"txn_id\": \"ui:0001\", "
	                          "\"payload\": {\"card\": \"C-42\", \"amount\": 6}, \"pii\": "
	                          "[\"card\"]}",
	                          &r),
	                 STORE_EINVAL);
	assert_string_equal(r.why, "txn_id ui:0001 already used for a different transaction");
	assert_int_equal(t_submit("{\"type\": \"gas.other\", \"txn_id\": \"ui:0001\", "
	                          "\"payload\": {\"card\": \"C-42\", \"amount\": 5}}",
	                          &r),
	                 STORE_EINVAL);
	/* flow, final, pii keys and blobs are part of the transaction too */
	static const char *const other[] = {
	        "{\"type\": \"gas.topup\", \"txn_id\": \"ui:0001\", \"flow\": \"f\", "
	        "\"payload\": {\"card\": \"C-42\", \"amount\": 5}, \"pii\": [\"card\"]}",
	        "{\"type\": \"gas.topup\", \"txn_id\": \"ui:0001\", \"final\": true, "
	        "\"payload\": {\"card\": \"C-42\", \"amount\": 5}, \"pii\": [\"card\"]}",
	        "{\"type\": \"gas.topup\", \"txn_id\": \"ui:0001\", "
	        "\"payload\": {\"card\": \"C-42\", \"amount\": 5}}",
	        "{\"type\": \"gas.topup\", \"txn_id\": \"ui:0001\", \"payload\": {\"card\": "
	        "\"C-42\", \"amount\": 5}, \"pii\": [\"card\", \"amount\"]}",
	};
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		assert_int_equal(t_submit(other[i], &r), STORE_EINVAL);
		assert_non_null(strstr(r.why, "already used for a different transaction"));
	}
	char blob[BLOB_ID_SIZE], text[512];
	assert_int_equal(blob_put("scan", 4, blob), 0);
	snprintf(text, sizeof(text),
	         "{\"type\": \"gas.topup\", \"txn_id\": \"ui:0001\", \"payload\": {\"card\": "
	         "\"C-42\", \"amount\": 5}, \"pii\": [\"card\"], \"blobs\": [\"%s\"]}",
	         blob);
	assert_int_equal(t_submit(text, &r), STORE_EINVAL);

	/* after delivery it answers delivered */
	struct store_batch b;
	assert_int_equal(store_take_batch("ep", "K", 10, &b), 0);
	assert_int_equal(b.n, 1);
	store_report(b.ids[0], OUT_DELIVERED, NULL);
	store_batch_free(&b);
	assert_int_equal(t_submit(a, &r), STORE_OK);
	assert_string_equal(json_string_value(json_object_get(r.txn, "state")), "delivered");

	/* twice in the same turn: both answered, one row */
	json_t *in = json_loads("{\"type\": \"x\", \"txn_id\": \"same-turn\", \"payload\": {}}", 0,
	                        NULL);
	t_res_clear(&r);
	store_submit(in, "ep", t_done, &r);
	store_submit(in, "ep", t_done, &r2);
	json_decref(in);
	t_spin(&r2.called, 1);
	assert_int_equal(r.called, 1);
	assert_int_equal(r.err, STORE_OK);
	assert_int_equal(r2.err, STORE_OK);
	sqlite3 *db = t_raw();
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM transactions"), 2);
	sqlite3_close(db);
	t_res_clear(&r);
	t_res_clear(&r2);
}

/* ---- ids ---- */

/* Value of n Crockford base32 characters; -1: a character not in it. */
static int64_t b32(const char *p, int n)
{
	static const char abc[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	int64_t v = 0;
	for (int i = 0; i < n; i++) {
		const char *c = p[i] ? strchr(abc, p[i]) : NULL;
		if (!c)
			return -1;
		v = v << 5 | (c - abc);
	}
	return v;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The ids kioskd chooses are ULIDs: 10 characters of milliseconds, then
 * 80 random bits that count up within one millisecond, so ids sort in
 * creation order. */
static void test_ids(void **state)
{
	(void)state;
	enum { N = 400 };
	struct t_res *r = calloc(N, sizeof(*r));
	int same_ms = 0;

	assert_int_equal(store_open(t_base, &t_conf), 0);
	int64_t t0 = wall_ms();
	for (int i = 0; i < N; i++) {
		json_t *in = json_pack("{s:s, s:{}}", "type", "x", "payload");
		store_submit(in, "ep", t_done, &r[i]);
		json_decref(in);
	}
	t_spin(&r[N - 1].called, 1);
	int64_t t1 = wall_ms();
	for (int i = 0; i < N; i++) {
		const char *id = json_string_value(json_object_get(r[i].txn, "txn_id"));
		assert_non_null(id);
		assert_int_equal(strlen(id), 26);
		int64_t ms = b32(id, 10);
		assert_true(ms >= t0 && ms <= t1);
		/* the random part, as two halves of 40 bits */
		assert_true(b32(id + 10, 8) >= 0 && b32(id + 18, 8) >= 0);
		if (i == 0)
			continue;
		const char *prev = json_string_value(json_object_get(r[i - 1].txn, "txn_id"));
		assert_true(strcmp(prev, id) < 0);
		if (b32(prev, 10) == ms) {
			/* one more, carried across the halves */
			int64_t hi = b32(id + 10, 8), lo = b32(id + 18, 8);
			int64_t phi = b32(prev + 10, 8), plo = b32(prev + 18, 8);
			if (lo == 0)
				assert_true(hi == phi + 1 && plo == (1LL << 40) - 1);
			else
				assert_true(hi == phi && lo == plo + 1);
			same_ms++;
		}
	}
	assert_true(same_ms > 0); /* 400 ids in one turn share milliseconds */
	for (int i = 0; i < N; i++)
		t_res_clear(&r[i]);
	free(r);
}

/* ---- group commit ---- */

static int sock_submits;
static struct t_res sock_res[16];

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	char buf[16];
	struct t_res *r = arg;
	(void)what;
	assert_int_equal(read(fd, buf, sizeof(buf)), 1);
	json_t *in =
	        json_pack("{s:s, s:{s:i}}", "type", "bench.x", "payload", "n", (int)(r - sock_res));
	store_submit(in, "ep", t_done, r);
	json_decref(in);
	sock_submits++;
}

static void test_group_commit(void **state)
{
	(void)state;
	struct t_res r[16] = {{0}};
	int sv[16][2];
	struct event *ev[16];

	assert_int_equal(store_open(t_base, &t_conf), 0);
	/* submissions made in one turn outside the loop: one commit */
	unsigned long c0 = store_commit_count();
	for (int i = 0; i < 16; i++) {
		json_t *in = json_pack("{s:s, s:{}}", "type", "x", "payload");
		store_submit(in, "ep", t_done, &r[i]);
		json_decref(in);
	}
	t_spin(&r[15].called, 1);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(r[i].called, 1);
		assert_int_equal(r[i].err, STORE_OK);
		assert_int_equal(r[i].commits, c0 + 1);
		t_res_clear(&r[i]);
	}
	assert_int_equal(store_commit_count(), c0 + 1);

	/* the real case: 16 sockets readable in the same turn, each
	 * callback submits; the commit event runs after all of them */
	for (int i = 0; i < 16; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
		ev[i] = event_new(t_base, sv[i][0], EV_READ | EV_PERSIST, on_readable,
		                  &sock_res[i]);
		event_add(ev[i], NULL);
	}
	for (int round = 0; round < 5; round++) {
		c0 = store_commit_count();
		sock_submits = 0;
		for (int i = 0; i < 16; i++) {
			t_res_clear(&sock_res[i]);
			assert_int_equal(write(sv[i][1], "x", 1), 1);
		}
		t_spin(&sock_res[15].called, 1);
		for (int i = 0; i < 16; i++) {
			t_spin(&sock_res[i].called, 1);
			assert_int_equal(sock_res[i].err, STORE_OK);
		}
		assert_int_equal(sock_submits, 16);
		assert_int_equal(store_commit_count(), c0 + 1);
	}
	for (int i = 0; i < 16; i++) {
		event_free(ev[i]);
		close(sv[i][0]);
		close(sv[i][1]);
		t_res_clear(&sock_res[i]);
	}
	sqlite3 *db = t_raw();
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM transactions"), 16 * 6);
	sqlite3_close(db);
}

/* done() runs only once the row is committed: another connection sees
 * it from inside the callback */
static int durable_checked;

static void durable_done(void *arg, enum store_err err, const char *why, json_t *txn)
{
	(void)arg;
	(void)why;
	assert_int_equal(err, STORE_OK);
	sqlite3 *db = t_raw();
	sqlite3_stmt *st;
	sqlite3_prepare_v2(db, "SELECT count(*) FROM transactions WHERE id = ?", -1, &st, NULL);
	sqlite3_bind_text(st, 1, json_string_value(json_object_get(txn, "txn_id")), -1,
	                  SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	/* and the store is out of its transaction */
	assert_true(sqlite3_get_autocommit(store_sqlite()));
	durable_checked++;
}

static void test_done_after_commit(void **state)
{
	(void)state;
	assert_int_equal(store_open(t_base, &t_conf), 0);
	durable_checked = 0;
	for (int i = 0; i < 8; i++) {
		json_t *in = json_pack("{s:s, s:{s:i}}", "type", "x", "payload", "i", i);
		store_submit(in, "ep", durable_done, NULL);
		json_decref(in);
	}
	assert_int_equal(durable_checked, 0);
	t_spin(&durable_checked, 8);
}

/* ---- states and delivery ---- */

static void test_states_and_retry(void **state)
{
	(void)state;
	struct t_res r = {0};
	char ids[3][64], why[200];
	struct store_batch b;

	assert_int_equal(store_open(t_base, &t_conf), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {}}", &r), STORE_OK);
		snprintf(ids[i], sizeof(ids[i]), "%s", t_id(&r));
	}
	assert_int_equal(store_pending("ep"), 3);
	assert_int_equal(store_take_batch("ep", "K", 10, &b), 0);
	assert_int_equal(b.n, 3);
	for (int i = 0; i < 3; i++)
		assert_string_equal(b.ids[i], ids[i]);
	assert_int_equal(store_pending("ep"), 0);
	json_t *t = store_get(ids[0]);
	assert_string_equal(json_string_value(json_object_get(t, "state")), "sending");
	assert_int_equal(json_integer_value(json_object_get(t, "attempts")), 1);
	json_decref(t);
	/* nothing more to take while they are out */
	struct store_batch b2;
	assert_int_equal(store_take_batch("ep", "K", 10, &b2), 0);
	assert_int_equal(b2.n, 0);
	assert_null(b2.body);

	store_report(ids[0], OUT_DELIVERED, NULL);
	store_report(ids[1], OUT_FAILED, "card number unknown");
	store_report(ids[2], OUT_RETRY, NULL);
	store_batch_free(&b);
	/* reports ride the next group commit */
	unsigned long c0 = store_commit_count();
	assert_int_equal(t_submit("{\"type\": \"y\", \"payload\": {}}", &r), STORE_OK);
	assert_int_equal(store_commit_count(), c0 + 1);

	t = store_get(ids[0]);
	assert_string_equal(json_string_value(json_object_get(t, "state")), "delivered");
	assert_non_null(json_object_get(t, "delivered"));
	json_decref(t);
	t = store_get(ids[1]);
	assert_string_equal(json_string_value(json_object_get(t, "state")), "failed");
	assert_string_equal(json_string_value(json_object_get(t, "reason")), "card number unknown");
	json_decref(t);
	t = store_get(ids[2]);
	assert_string_equal(json_string_value(json_object_get(t, "state")), "queued");
	json_decref(t);
	assert_int_equal(store_pending("ep"), 2);

	json_t *c = store_counts();
	assert_int_equal(json_integer_value(json_object_get(c, "queued")), 2);
	assert_int_equal(json_integer_value(json_object_get(c, "sending")), 0);
	assert_int_equal(json_integer_value(json_object_get(c, "delivered")), 1);
	assert_int_equal(json_integer_value(json_object_get(c, "failed")), 1);
	assert_true(json_is_integer(json_object_get(c, "oldest_queued_s")));
	json_decref(c);

	/* retry: only a failed one */
	assert_int_equal(store_retry(ids[0], why, sizeof(why)), -1);
	assert_non_null(strstr(why, "delivered, not failed"));
	assert_int_equal(store_retry("nope", why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no transaction nope"));
	assert_int_equal(store_retry(ids[1], why, sizeof(why)), 0);
	t = store_get(ids[1]);
	assert_string_equal(json_string_value(json_object_get(t, "state")), "queued");
	assert_null(json_object_get(t, "reason"));
	json_decref(t);
	assert_int_equal(store_pending("ep"), 3);
	assert_int_equal(store_pending("other"), 0);

	/* the pending count agrees with the table after all that */
	sqlite3 *db = t_raw();
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM transactions WHERE state = "
	                               "'queued' AND endpoint = 'ep'"),
	                 3);
	sqlite3_close(db);
	/* nothing is ever deleted */
	c = store_counts();
	assert_int_equal(json_integer_value(json_object_get(c, "queued")) +
	                         json_integer_value(json_object_get(c, "delivered")),
	                 4);
	json_decref(c);
	t_res_clear(&r);
}

static void test_no_route(void **state)
{
	(void)state;
	struct t_res r = {0};
	json_t *in = json_loads("{\"type\": \"x\", \"payload\": {}}", 0, NULL);

	assert_int_equal(store_open(t_base, &t_conf), 0);
	store_submit(in, NULL, t_done, &r);
	json_decref(in);
	t_spin(&r.called, 1);
	assert_int_equal(r.err, STORE_OK);
	assert_true(json_is_null(json_object_get(r.txn, "endpoint")) ||
	            !json_object_get(r.txn, "endpoint"));
	assert_int_equal(store_pending(NULL), 1);
	assert_int_equal(store_pending("ep"), 0);
	/* the next start routes it (the configuration routes * to ep) */
	store_close();
	assert_int_equal(store_open(t_base, &t_conf), 0);
	assert_int_equal(store_pending(NULL), 0);
	assert_int_equal(store_pending("ep"), 1);
	t_res_clear(&r);
}

static void test_batch_body(void **state)
{
	(void)state;
	struct t_res r = {0};
	char blob[BLOB_ID_SIZE], text[1024], id1[64];
	struct store_batch b;
	static const unsigned char png[] = {0x89, 'P', 'N', 'G', 0, 1, 2, 3, 0xff};

	assert_int_equal(blob_put(png, sizeof(png), blob), 0);
	assert_int_equal(store_open(t_base, &t_conf), 0);
	snprintf(text, sizeof(text),
	         "{\"type\": \"gas.topup\", \"flow\": \"f-1\", \"final\": false, \"payload\": "
	         "{\"card\": \"1234567890\", \"amount_fen\": 5000, \"order\": \"P-778812\"}, "
	         "\"pii\": [\"card\"], \"blobs\": [{\"id\": \"%s\", \"mime\": \"image/png\"}]}",
	         blob);
	assert_int_equal(t_submit(text, &r), STORE_OK);
	snprintf(id1, sizeof(id1), "%s", t_id(&r));
	assert_int_equal(t_submit("{\"type\": \"gas.card_written\", \"payload\": {\"n\": 1}}", &r),
	                 STORE_OK);
	/* another endpoint's row is not in this batch */
	json_t *in = json_loads("{\"type\": \"health\", \"payload\": {}}", 0, NULL);
	struct t_res r3 = {0};
	store_submit(in, "fleet", t_done, &r3);
	json_decref(in);
	t_spin(&r3.called, 1);

	assert_int_equal(store_take_batch("ep", "K0001", 16, &b), 0);
	assert_int_equal(b.n, 2);
	assert_int_equal(b.len, strlen(b.body));
	json_error_t e;
	json_t *body = json_loads(b.body, 0, &e);
	assert_non_null(body);
	assert_int_equal(json_object_size(body), 2);
	assert_string_equal(json_string_value(json_object_get(body, "kiosk")), "K0001");
	json_t *txns = json_object_get(body, "transactions");
	assert_int_equal(json_array_size(txns), 2);
	json_t *t0 = json_array_get(txns, 0), *t1 = json_array_get(txns, 1);
	assert_string_equal(json_string_value(json_object_get(t0, "id")), id1);
	assert_string_equal(json_string_value(json_object_get(t0, "id")), b.ids[0]);
	assert_string_equal(json_string_value(json_object_get(t0, "type")), "gas.topup");
	assert_int_equal(strlen(json_string_value(json_object_get(t0, "created"))), 24);
	assert_string_equal(json_string_value(json_object_get(t0, "flow")), "f-1");
	assert_true(json_is_false(json_object_get(t0, "final")));
	json_t *p = json_object_get(t0, "payload");
	/* personal data decrypted for the endpoint */
	assert_string_equal(json_string_value(json_object_get(p, "card")), "1234567890");
	assert_int_equal(json_integer_value(json_object_get(p, "amount_fen")), 5000);
	json_t *bl = json_array_get(json_object_get(t0, "blobs"), 0);
	assert_string_equal(json_string_value(json_object_get(bl, "id")), blob);
	assert_string_equal(json_string_value(json_object_get(bl, "mime")), "image/png");
	assert_int_equal(json_integer_value(json_object_get(bl, "size")), sizeof(png));
	const char *data = json_string_value(json_object_get(bl, "data"));
	size_t len;
	unsigned char *raw = crypt_unb64(data, strlen(data), &len);
	assert_int_equal(len, sizeof(png));
	assert_memory_equal(raw, png, sizeof(png));
	free(raw);
	assert_int_equal(json_object_size(t0), 7);
	/* flow, final and blobs only when set */
	assert_null(json_object_get(t1, "flow"));
	assert_null(json_object_get(t1, "final"));
	assert_null(json_object_get(t1, "blobs"));
	assert_int_equal(json_object_size(t1), 4);
	json_decref(body);
	store_batch_free(&b);

	assert_int_equal(store_take_batch("fleet", "K0001", 16, &b), 0);
	assert_int_equal(b.n, 1);
	store_batch_free(&b);
	t_res_clear(&r);
	t_res_clear(&r3);
}

static void test_batch_missing_blob(void **state)
{
	(void)state;
	struct t_res r = {0};
	char blob[BLOB_ID_SIZE], text[512], bad[64];
	struct store_batch b;

	assert_int_equal(blob_put("scan", 4, blob), 0);
	assert_int_equal(store_open(t_base, &t_conf), 0);
	snprintf(text, sizeof(text), "{\"type\": \"x\", \"payload\": {}, \"blobs\": [\"%s\"]}",
	         blob);
	assert_int_equal(t_submit(text, &r), STORE_OK);
	snprintf(bad, sizeof(bad), "%s", t_id(&r));
	assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {}}", &r), STORE_OK);
	assert_int_equal(blob_remove(blob), 0);
	/* the one that cannot be built fails here, the rest goes */
	assert_int_equal(store_take_batch("ep", "K", 16, &b), 0);
	assert_int_equal(b.n, 1);
	assert_string_equal(b.ids[0], t_id(&r));
	store_batch_free(&b);
	json_t *t = store_get(bad);
	assert_string_equal(json_string_value(json_object_get(t, "state")), "failed");
	assert_non_null(strstr(json_string_value(json_object_get(t, "reason")), "missing"));
	json_decref(t);

	/* a blob that cannot be read for now (here: a directory in its place,
	 * EISDIR) gives the batch up and keeps the row queued */
	char path[PATH_MAX + 100];
	assert_int_equal(blob_put("photo", 5, blob), 0);
	snprintf(text, sizeof(text), "{\"type\": \"x\", \"payload\": {}, \"blobs\": [\"%s\"]}",
	         blob);
	assert_int_equal(t_submit(text, &r), STORE_OK);
	snprintf(path, sizeof(path), "%s/blobs/%s", t_dir, blob);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(store_take_batch("ep", "K", 16, &b), -1);
	assert_int_equal(b.n, 0);
	t = store_get(t_id(&r));
	assert_string_equal(json_string_value(json_object_get(t, "state")), "queued");
	json_decref(t);
	assert_int_equal(store_pending("ep"), 1);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(blob_put("photo", 5, blob), 0);
	assert_int_equal(store_take_batch("ep", "K", 16, &b), 0);
	assert_int_equal(b.n, 1);
	store_batch_free(&b);
	t_res_clear(&r);
}

/* ---- flows ---- */

static void test_flows(void **state)
{
	(void)state;
	struct t_res r = {0};
	char why[200];

	assert_int_equal(store_open(t_base, &t_conf), 0);
	assert_int_equal(
	        t_submit("{\"type\": \"gas.topup\", \"flow\": \"f1\", \"payload\": {}}", &r),
	        STORE_OK);
	assert_int_equal(
	        t_submit("{\"type\": \"gas.topup\", \"flow\": \"f2\", \"payload\": {}}", &r),
	        STORE_OK);
	assert_int_equal(t_submit("{\"type\": \"gas.card_written\", \"flow\": \"f2\", \"final\": "
	                          "true, \"payload\": {}}",
	                          &r),
	                 STORE_OK);
	assert_int_equal(t_submit("{\"type\": \"print.receipt\", \"flow\": \"f1\", \"payload\": "
	                          "{}}",
	                          &r),
	                 STORE_OK);
	assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {}}", &r), STORE_OK);
	/* across a restart, as at daemon start */
	store_close();
	assert_int_equal(store_open(t_base, &t_conf), 0);
	json_t *f = store_unfinished_flows();
	assert_int_equal(json_array_size(f), 1);
	json_t *f1 = json_array_get(f, 0);
	assert_string_equal(json_string_value(json_object_get(f1, "flow")), "f1");
	json_t *types = json_object_get(f1, "types");
	assert_int_equal(json_array_size(types), 2);
	assert_string_equal(json_string_value(json_array_get(types, 0)), "gas.topup");
	assert_int_equal(json_array_size(json_object_get(f1, "txns")), 2);
	assert_non_null(json_string_value(json_object_get(f1, "first")));
	assert_non_null(json_string_value(json_object_get(f1, "last")));
	json_decref(f);

	json_t *filter = json_pack("{s:b}", "unfinished", 1);
	json_t *l = store_list(filter, why, sizeof(why));
	assert_non_null(l);
	assert_int_equal(json_array_size(l), 2);
	json_decref(l);
	json_decref(filter);

	/* the final one closes it */
	assert_int_equal(t_submit("{\"type\": \"gas.card_written\", \"flow\": \"f1\", \"final\": "
	                          "true, \"payload\": {}}",
	                          &r),
	                 STORE_OK);
	f = store_unfinished_flows();
	assert_int_equal(json_array_size(f), 0);
	json_decref(f);
	t_res_clear(&r);
}

/* ---- list ---- */

static void test_list(void **state)
{
	(void)state;
	struct t_res r = {0};
	char why[200], ids[30][64];

	assert_int_equal(store_open(t_base, &t_conf), 0);
	for (int i = 0; i < 30; i++) {
		assert_int_equal(t_submit(i % 3 ? "{\"type\": \"gas.topup\", \"payload\": {}}"
		                                : "{\"type\": \"water.topup\", \"flow\": \"w\", "
		                                  "\"payload\": {}}",
		                          &r),
		                 STORE_OK);
		snprintf(ids[i], sizeof(ids[i]), "%s", t_id(&r));
	}
	json_t *l = store_list(NULL, why, sizeof(why));
	assert_int_equal(json_array_size(l), 30);
	/* newest first, summaries */
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "txn_id")),
	                    ids[29]);
	assert_null(json_object_get(json_array_get(l, 0), "payload"));
	json_decref(l);

	json_t *f = json_pack("{s:s}", "type", "gas.*");
	l = store_list(f, why, sizeof(why));
	assert_int_equal(json_array_size(l), 20);
	json_decref(l);
	json_decref(f);
	f = json_pack("{s:s}", "flow", "w");
	l = store_list(f, why, sizeof(why));
	assert_int_equal(json_array_size(l), 10);
	json_decref(l);
	json_decref(f);
	f = json_pack("{s:s, s:s}", "state", "queued", "type", "water.topup");
	l = store_list(f, why, sizeof(why));
	assert_int_equal(json_array_size(l), 10);
	json_decref(l);
	json_decref(f);
	f = json_pack("{s:s}", "state", "delivered");
	l = store_list(f, why, sizeof(why));
	assert_int_equal(json_array_size(l), 0);
	json_decref(l);
	json_decref(f);

	/* paging */
	char before[64] = "";
	int seen = 0;
	for (int page = 0; page < 5; page++) {
		f = before[0] ? json_pack("{s:i, s:s}", "limit", 7, "before", before)
		              : json_pack("{s:i}", "limit", 7);
		l = store_list(f, why, sizeof(why));
		assert_non_null(l);
		for (size_t i = 0; i < json_array_size(l); i++) {
			const char *id =
			        json_string_value(json_object_get(json_array_get(l, i), "txn_id"));
			assert_string_equal(id, ids[29 - seen]);
			seen++;
		}
		if (json_array_size(l))
			snprintf(before, sizeof(before), "%s",
			         json_string_value(json_object_get(
			                 json_array_get(l, json_array_size(l) - 1), "txn_id")));
		json_decref(l);
		json_decref(f);
	}
	assert_int_equal(seen, 30);

	/* time filters: RFC 3339 and epoch ms */
	f = json_pack("{s:s}", "since", "2000-01-01T00:00:00Z");
	l = store_list(f, why, sizeof(why));
	assert_int_equal(json_array_size(l), 30);
	json_decref(l);
	json_decref(f);
	f = json_pack("{s:s}", "until", "2000-01-01T00:00:00.000+08:00");
	l = store_list(f, why, sizeof(why));
	assert_int_equal(json_array_size(l), 0);
	json_decref(l);
	json_decref(f);
	f = json_pack("{s:I}", "since", (json_int_t)4102444800000LL); /* 2100 */
	l = store_list(f, why, sizeof(why));
	assert_int_equal(json_array_size(l), 0);
	json_decref(l);
	json_decref(f);

	/* bad filters */
	static const char *const bad[] = {
	        "{\"state\": \"lost\"}",      "{\"limit\": 0}",         "{\"limit\": 1001}",
	        "{\"since\": \"yesterday\"}", "{\"before\": \"nope\"}", "{\"colour\": 1}",
	        "{\"type\": \"a b\"}",        "{\"unfinished\": 1}",    "{\"flow\": 3}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f = json_loads(bad[i], 0, NULL);
		why[0] = 0;
		assert_null(store_list(f, why, sizeof(why)));
		assert_true(why[0] != 0);
		json_decref(f);
	}
	t_res_clear(&r);
}

/* ---- audit ---- */

static void test_audit(void **state)
{
	(void)state;
	struct t_res r = {0};

	assert_int_equal(store_open(t_base, &t_conf), 0);
	unsigned long c0 = store_commit_count();
	store_audit("card0", "cardreader.read", "f1", NULL, "ok", NULL);
	store_audit("printer0", "printer.print", "f1", "TXN1", "error", "paper_out");
	json_t *in = json_loads("{\"type\": \"x\", \"payload\": {}}", 0, NULL);
	store_submit(in, "ep", t_done, &r);
	json_decref(in);
	t_spin(&r.called, 1);
	/* one commit for both */
	assert_int_equal(store_commit_count(), c0 + 1);
	sqlite3 *db = t_raw();
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM audit"), 2);
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM audit WHERE device = 'printer0' AND "
	                               "cmd = 'printer.print' AND flow = 'f1' AND txn = 'TXN1' "
	                               "AND outcome = 'error' AND detail = 'paper_out' AND ts > 0"),
	                 1);
	sqlite3_close(db);
	/* on its own it waits a little for company (not a commit per
	 * device command), then is committed */
	store_audit("locker0", "locker.open", NULL, NULL, "ok", NULL);
	event_base_loop(t_base, EVLOOP_NONBLOCK);
	event_base_loop(t_base, EVLOOP_NONBLOCK);
	db = t_raw();
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM audit"), 2);
	sqlite3_close(db);
	struct timeval tv = {0, 200000};
	event_base_loopexit(t_base, &tv);
	event_base_dispatch(t_base);
	db = t_raw();
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM audit"), 3);
	sqlite3_close(db);
	/* audit.list shows rows still waiting */
	store_audit("locker0", "locker.open", NULL, NULL, "ok", "door 2");
	char why[128];
	json_t *list = store_audit_list(NULL, why, sizeof(why));
	assert_non_null(list);
	assert_int_equal(json_array_size(list), 4);
	json_decref(list);
	t_res_clear(&r);
}

/* ---- crash recovery ---- */

static void test_sending_requeued(void **state)
{
	(void)state;
	struct t_res r = {0};
	struct store_batch b;

	assert_int_equal(store_open(t_base, &t_conf), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {}}", &r), STORE_OK);
	store_close();

	/* a child takes a batch and dies mid-delivery */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct event_base *base = event_base_new();
		if (store_open(base, &t_conf) < 0 || store_take_batch("ep", "K", 3, &b) < 0 ||
		    b.n != 3)
			_exit(1);
		_exit(0); /* no close, no reports: like kill -9 */
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	sqlite3 *db = t_raw();
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM transactions WHERE state = "
	                               "'sending'"),
	                 3);
	sqlite3_close(db);

	assert_int_equal(store_open(t_base, &t_conf), 0);
	json_t *c = store_counts();
	assert_int_equal(json_integer_value(json_object_get(c, "queued")), 5);
	assert_int_equal(json_integer_value(json_object_get(c, "sending")), 0);
	json_decref(c);
	assert_int_equal(store_take_batch("ep", "K", 10, &b), 0);
	assert_int_equal(b.n, 5);
	store_batch_free(&b);
	t_res_clear(&r);
}

/* ---- schema versions ---- */

static void test_migrate_v0(void **state)
{
	(void)state;
	sqlite3 *db;
	struct t_res r = {0};

	/* an empty file and an empty database (user_version 0) */
	for (int round = 0; round < 2; round++) {
		unlink(t_db);
		if (round == 0) {
			close(open(t_db, O_WRONLY | O_CREAT, 0600));
		} else {
			assert_int_equal(sqlite3_open(t_db, &db), SQLITE_OK);
			assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 0; VACUUM", NULL,
			                              NULL, NULL),
			                 SQLITE_OK);
			sqlite3_close(db);
		}
		assert_int_equal(store_open(t_base, &t_conf), 0);
		assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {}}", &r), STORE_OK);
		db = t_raw();
		assert_int_equal(t_raw_int(db, "PRAGMA user_version"), 2);
		assert_int_equal(t_raw_int(db, "SELECT count(*) FROM meta WHERE key = "
		                               "'migrated_v1'"),
		                 1);
		assert_int_equal(t_raw_int(db, "SELECT count(*) FROM meta WHERE key = "
		                               "'migrated_v2'"),
		                 1);
		sqlite3_close(db);
		store_close();
		/* and it is not migrated twice */
		assert_int_equal(store_open(t_base, &t_conf), 0);
		store_close();
	}
	t_res_clear(&r);
}

/* A v1 database (as kioskd 0.1 wrote it, with rows) gains v2's audit
 * indexes and keeps its rows. */
static void test_migrate_v1_to_v2(void **state)
{
	(void)state;
	struct t_res r = {0};
	sqlite3 *db;

	assert_int_equal(store_open(t_base, &t_conf), 0);
	assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {\"n\": 1}}", &r), STORE_OK);
	store_close();
	assert_int_equal(sqlite3_open(t_db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "DROP INDEX audit_flow; DROP INDEX audit_device;"
	                              "DELETE FROM meta WHERE key = 'migrated_v2';"
	                              "PRAGMA user_version = 1",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(t_base, &t_conf), 0);
	db = t_raw();
	assert_int_equal(t_raw_int(db, "PRAGMA user_version"), 2);
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
	                               "('audit_flow', 'audit_device')"),
	                 2);
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM transactions"), 1);
	sqlite3_close(db);
	store_close();
	t_res_clear(&r);
}

static void test_future_version_refused(void **state)
{
	(void)state;
	sqlite3 *db;
	char path[PATH_MAX + 64];
	glob_t g;

	assert_int_equal(sqlite3_open(t_db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "CREATE TABLE future (x); PRAGMA user_version = 7; "
	                              "INSERT INTO future VALUES (42)",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	/* the message says why, on stderr */
	snprintf(path, sizeof(path), "%s/stderr", t_dir);
	fflush(stderr);
	int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	log_setlevel(LOG_ERR);
	int rc = store_open(t_base, &t_conf);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	log_setlevel(LOG_CRIT);
	assert_int_equal(rc, -1);
	assert_true(t_file_has(path, "schema version 7 is newer than this kioskd knows (2)"));
	/* left as it was: not moved aside, not changed */
	snprintf(path, sizeof(path), "%s.corrupt-*", t_db);
	assert_int_equal(glob(path, 0, NULL, &g), GLOB_NOMATCH);
	db = t_raw();
	assert_int_equal(t_raw_int(db, "PRAGMA user_version"), 7);
	assert_int_equal(t_raw_int(db, "SELECT x FROM future"), 42);
	sqlite3_close(db);
}

/* ---- corruption ---- */

/* Open with stderr captured; the quarantined path it reported. */
static void open_corrupt(const char *expect_kind)
{
	char path[PATH_MAX + 64];
	glob_t g;
	struct t_res r = {0};

	snprintf(path, sizeof(path), "%s/stderr", t_dir);
	fflush(stderr);
	int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	int rc = store_open(t_base, &t_conf);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	assert_int_equal(rc, 0);
	assert_true(t_file_has(path, " crit: store "));
	assert_true(t_file_has(path, expect_kind));
	/* moved aside, named in the message */
	snprintf(path, sizeof(path), "%s.corrupt-*", t_db);
	assert_int_equal(glob(path, 0, NULL, &g), 0);
	int found = 0;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		char *p = g.gl_pathv[i];
		size_t n = strlen(p);
		if (n > 4 && (!strcmp(p + n - 4, "-wal") || !strcmp(p + n - 4, "-shm")))
			continue;
		char err[PATH_MAX + 64];
		snprintf(err, sizeof(err), "%s/stderr", t_dir);
		assert_true(t_file_has(err, p));
		found++;
	}
	assert_int_equal(found, 1);
	globfree(&g);
	/* a fresh, working store */
	json_t *c = store_counts();
	assert_int_equal(json_integer_value(json_object_get(c, "queued")), 0);
	json_decref(c);
	assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {}}", &r), STORE_OK);
	t_res_clear(&r);
	store_close();
}

static void test_corrupt_garbage(void **state)
{
	(void)state;
	unsigned char junk[8192];
	size_t len;

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 131 + 7);
	int fd = open(t_db, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	open_corrupt("not a database");
	/* the quarantined file is the garbage, unchanged */
	char path[PATH_MAX + 64];
	glob_t g;
	snprintf(path, sizeof(path), "%s.corrupt-*", t_db);
	assert_int_equal(glob(path, 0, NULL, &g), 0);
	char *kept = t_slurp(g.gl_pathv[0], &len);
	assert_int_equal(len, sizeof(junk));
	assert_memory_equal(kept, junk, sizeof(junk));
	free(kept);
	globfree(&g);
}

/* A real store with rows, closed (so everything is in the main file). */
static void fill_and_close(int rows)
{
	struct t_res r = {0};
	assert_int_equal(store_open(t_base, &t_conf), 0);
	for (int i = 0; i < rows; i++) {
		json_t *in = json_pack("{s:s, s:{s:i, s:s}}", "type", "x", "payload", "i", i, "pad",
		                       "................................................");
		store_submit(in, "ep", t_done, &r);
		json_decref(in);
	}
	t_spin(&r.called, rows);
	t_res_clear(&r);
	store_close();
}

static void test_corrupt_page(void **state)
{
	(void)state;
	unsigned char junk[4096];
	struct stat st;

	fill_and_close(500);
	assert_int_equal(stat(t_db, &st), 0);
	assert_true(st.st_size > 10 * 4096);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 53 + 1);
	int fd = open(t_db, O_WRONLY);
	assert_int_equal(pwrite(fd, junk, sizeof(junk), 4 * 4096), (ssize_t)sizeof(junk));
	close(fd);
	open_corrupt("quick_check");
}

static void test_corrupt_truncated(void **state)
{
	(void)state;
	struct stat st;

	fill_and_close(500);
	assert_int_equal(stat(t_db, &st), 0);
	assert_int_equal(truncate(t_db, st.st_size / 2), 0);
	open_corrupt("corrupt");
}

static void test_corrupt_header(void **state)
{
	(void)state;
	fill_and_close(50);
	int fd = open(t_db, O_WRONLY);
	assert_int_equal(pwrite(fd, "this is no sqlite header!", 25, 0), 25);
	close(fd);
	open_corrupt("not a database");
}

/* ---- disk full ---- */

static void test_disk_full(void **state)
{
	(void)state;
	struct t_res r = {0};
	char keep[20][64], text[8192];
	int n = 0, full = 0;

	assert_int_equal(store_open(t_base, &t_conf), 0);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {\"keep\": true}}", &r),
		                 STORE_OK);
		snprintf(keep[i], sizeof(keep[i]), "%s", t_id(&r));
	}
	long long pages = t_raw_int(store_sqlite(), "PRAGMA page_count");
	char sql[80];
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", pages + 8);
	t_raw_int(store_sqlite(), sql);
	/* fill it up: SQLITE_FULL, reported as storage full */
	memset(text, 0, sizeof(text));
	int len = snprintf(text, sizeof(text), "{\"type\": \"x\", \"payload\": {\"big\": \"");
	memset(text + len, 'b', 3000);
	strcat(text, "\"}}");
	for (n = 0; n < 200 && !full; n++) {
		enum store_err e = t_submit(text, &r);
		assert_true(e == STORE_OK || e == STORE_EFULL);
		full = e == STORE_EFULL;
	}
	assert_true(full);
	assert_true(n > 1);
	assert_non_null(strstr(r.why, "storage full: "));
	assert_null(r.txn);
	/* several in one group: every one of them gets the error */
	struct t_res g[4] = {{0}};
	json_t *in = json_loads(text, 0, NULL);
	for (int i = 0; i < 4; i++)
		store_submit(in, "ep", t_done, &g[i]);
	json_decref(in);
	t_spin(&g[3].called, 1);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(g[i].called, 1);
		assert_int_equal(g[i].err, STORE_EFULL);
		assert_non_null(strstr(g[i].why, "storage full: "));
		assert_null(g[i].txn);
		t_res_clear(&g[i]);
	}
	/* still full, still answered; audit rows wait */
	store_audit("d", "c", NULL, NULL, "ok", NULL);
	assert_int_equal(t_submit(text, &r), STORE_EFULL);
	/* nothing committed is damaged */
	for (int i = 0; i < 20; i++) {
		json_t *t = store_get(keep[i]);
		assert_non_null(t);
		json_decref(t);
	}
	assert_string_equal((const char *)"ok", "ok");
	sqlite3 *db = t_raw();
	sqlite3_stmt *st;
	sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
	sqlite3_close(db);
	/* space comes back: the next submission just works */
	t_raw_int(store_sqlite(), "PRAGMA max_page_count = 1073741823");
	assert_int_equal(t_submit(text, &r), STORE_OK);
	db = t_raw();
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM audit"), 1);
	sqlite3_close(db);
	t_res_clear(&r);
}

/* A real full filesystem (a small tmpfs; root only): ENOSPC from the
 * WAL write is storage_full, committed rows stay intact, and the store
 * recovers by itself once there is room again. */
static void test_disk_full_tmpfs(void **state)
{
	(void)state;
	struct t_res r = {0};
	char mnt[PATH_MAX + 16], dbpath[PATH_MAX + 40], cmd[PATH_MAX + 80];
	char text[4096], ids[400][64];
	int n = 0, full = 0;

	snprintf(mnt, sizeof(mnt), "%s/small", t_dir);
	mkdir(mnt, 0700);
	snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=512k tmpfs '%s' 2>/dev/null", mnt);
	if (geteuid() != 0 || system(cmd) != 0) {
		print_message("    (no tmpfs: needs root and mount; the max_page_count test covers "
		              "SQLITE_FULL)\n");
		skip();
	}
	snprintf(dbpath, sizeof(dbpath), "%s/kioskd.db", mnt);
	t_conf.store_path = dbpath;
	assert_int_equal(store_open(t_base, &t_conf), 0);
	int len = snprintf(text, sizeof(text), "{\"type\": \"x\", \"payload\": {\"big\": \"");
	for (int i = 0; i < 2000; i++)
		text[len + i] = (char)('a' + (i * 7) % 26);
	strcpy(text + len + 2000, "\"}}");
	for (n = 0; n < 400 && !full; n++) {
		enum store_err e = t_submit(text, &r);
		if (e == STORE_OK)
			snprintf(ids[n], sizeof(ids[n]), "%s", t_id(&r));
		else
			assert_int_equal(e, STORE_EFULL);
		full = e == STORE_EFULL;
	}
	int acked = n - 1;
	assert_true(full);
	assert_non_null(strstr(r.why, "storage full"));
	/* again: still full, still an answer */
	assert_int_equal(t_submit(text, &r), STORE_EFULL);
	for (int i = 0; i < acked; i++) {
		json_t *t = store_get(ids[i]);
		assert_non_null(t);
		json_decref(t);
	}
	/* room again: no restart needed */
	snprintf(cmd, sizeof(cmd), "mount -o remount,size=8m '%s'", mnt);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(t_submit(text, &r), STORE_OK);
	store_close();
	/* and what was acknowledged survives a restart, intact */
	assert_int_equal(store_open(t_base, &t_conf), 0);
	for (int i = 0; i < acked; i++) {
		json_t *t = store_get(ids[i]);
		assert_non_null(t);
		json_decref(t);
	}
	sqlite3 *db = store_sqlite();
	sqlite3_stmt *st;
	sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
	store_close();
	print_message("    %d acknowledged before ENOSPC on a 512 KiB tmpfs\n", acked);
	snprintf(cmd, sizeof(cmd), "umount '%s'", mnt);
	assert_int_equal(system(cmd), 0);
	t_res_clear(&r);
}

/* ---- personal data ---- */

#define CARD  "CARD-9988776655"
#define NAME  "ZHANG-SECRET-NAME"
#define PHOTO "PHOTO-SECRET-BYTES-0123456789"

/* None of the files of the store holds needle. */
static void assert_not_at_rest(const char *needle)
{
	char path[PATH_MAX + 300];
	DIR *d;
	struct dirent *de;

	for (int pass = 0; pass < 2; pass++) {
		snprintf(path, sizeof(path), pass ? "%s/blobs" : "%s", t_dir);
		assert_non_null(d = opendir(path));
		while ((de = readdir(d))) {
			char f[PATH_MAX + 600];
			if (de->d_name[0] == '.' || !strcmp(de->d_name, "stderr"))
				continue;
			snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
			if (t_file_has(f, needle))
				fail_msg("'%s' found in %s", needle, f);
		}
		closedir(d);
	}
}

static void set_delivered_ago(const char *id, int seconds)
{
	sqlite3 *db = t_raw();
	sqlite3_stmt *st;
	sqlite3_prepare_v2(db,
	                   "UPDATE transactions SET delivered = (strftime('%s','now') - ?) * 1000 "
	                   "WHERE id = ?",
	                   -1, &st, NULL);
	sqlite3_bind_int(st, 1, seconds);
	sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static char *stored_payload(const char *id)
{
	sqlite3 *db = t_raw();
	sqlite3_stmt *st;
	char *p = NULL;
	sqlite3_prepare_v2(db, "SELECT payload FROM transactions WHERE id = ?", -1, &st, NULL);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		p = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return p;
}

static void test_pii_at_rest_and_purge(void **state)
{
	(void)state;
	struct t_res r = {0};
	char blob[BLOB_ID_SIZE], shared[BLOB_ID_SIZE], text[1024], id[64], other[64];
	char errpath[PATH_MAX + 16];
	struct store_batch b;

	/* every log line of the run goes to a file we grep afterwards */
	snprintf(errpath, sizeof(errpath), "%s/stderr", t_dir);
	fflush(stderr);
	int saved = dup(2), fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	log_setlevel(LOG_DEBUG);

	assert_int_equal(store_open(t_base, &t_conf), 0); /* sets the blob key */
	assert_int_equal(blob_put(PHOTO, strlen(PHOTO), blob), 0);
	assert_int_equal(blob_put("shared scan", 11, shared), 0);
	snprintf(text, sizeof(text),
	         "{\"type\": \"id.check\", \"payload\": {\"card\": \"" CARD "\", \"person\": "
	         "{\"name\": \"" NAME "\"}, \"amount\": 7}, \"pii\": [\"card\", \"person\"], "
	         "\"blobs\": [\"%s\", \"%s\"]}",
	         blob, shared);
	assert_int_equal(t_submit(text, &r), STORE_OK);
	snprintf(id, sizeof(id), "%s", t_id(&r));
	snprintf(text, sizeof(text),
	         "{\"type\": \"id.check\", \"payload\": {}, \"blobs\": [\"%s\"]}", shared);
	assert_int_equal(t_submit(text, &r), STORE_OK);
	snprintf(other, sizeof(other), "%s", t_id(&r));

	/* at rest: encrypted in the database, its WAL and the blob spool
	 * (while the rest of the payload is plainly there: the grep works) */
	char wal[PATH_MAX + 40];
	snprintf(wal, sizeof(wal), "%s-wal", t_db);
	assert_true(t_file_has(wal, "\"amount\":7"));
	assert_not_at_rest(CARD);
	assert_not_at_rest(NAME);
	assert_not_at_rest(PHOTO);
	assert_not_at_rest("shared scan");
	char *p = stored_payload(id);
	assert_non_null(strstr(p, "{\"$enc\":\""));
	assert_non_null(strstr(p, "\"amount\":7"));
	/* the ciphertext, to look for after the purge */
	char *enc = strstr(p, "{\"$enc\":\"") + 9;
	*strchr(enc, '"') = 0;
	char cipher[512];
	snprintf(cipher, sizeof(cipher), "%s", enc);
	free(p);

	/* what the UI and the endpoint see is the plain data */
	json_t *t = store_get(id);
	json_t *pl = json_object_get(t, "payload");
	assert_string_equal(json_string_value(json_object_get(pl, "card")), CARD);
	assert_string_equal(
	        json_string_value(json_object_get(json_object_get(pl, "person"), "name")), NAME);
	assert_int_equal(json_array_size(json_object_get(t, "pii")), 2);
	json_decref(t);
	assert_int_equal(store_take_batch("ep", "K", 10, &b), 0);
	assert_int_equal(b.n, 2);
	assert_non_null(strstr(b.body, CARD));
	assert_non_null(strstr(b.body, NAME));
	store_report(b.ids[0], OUT_DELIVERED, NULL);
	store_batch_free(&b);
	store_audit("idreader0", "idreader.read", NULL, id, "ok", NULL);
	event_base_loop(t_base, EVLOOP_NONBLOCK);
	event_base_loop(t_base, EVLOOP_NONBLOCK);

	/* within the retention: kept */
	store_purge();
	t = store_get(id);
	assert_string_equal(
	        json_string_value(json_object_get(json_object_get(t, "payload"), "card")), CARD);
	json_decref(t);
	store_close();
	assert_not_at_rest(CARD);
	assert_not_at_rest(NAME);
	assert_not_at_rest(PHOTO);

	/* delivered two hours ago, retention one hour: erased at open */
	set_delivered_ago(id, 7200);
	assert_int_equal(store_open(t_base, &t_conf), 0);
	t = store_get(id);
	pl = json_object_get(t, "payload");
	assert_true(json_is_null(json_object_get(pl, "card")));
	assert_true(json_is_null(json_object_get(pl, "person")));
	assert_int_equal(json_integer_value(json_object_get(pl, "amount")), 7);
	assert_true(json_is_true(json_object_get(t, "purged")));
	assert_string_equal(json_string_value(json_object_get(t, "state")), "delivered");
	json_decref(t);
	/* its own blob is gone; the one a pending transaction uses stays */
	assert_false(blob_exists(blob));
	assert_true(blob_exists(shared));
	/* not even the ciphertext is left in the files */
	assert_not_at_rest(cipher);
	/* a second purge finds nothing to do, and the other row keeps its blob */
	store_purge();
	assert_true(blob_exists(shared));
	t = store_get(other);
	assert_false(json_is_true(json_object_get(t, "purged")));
	json_decref(t);

	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	log_setlevel(LOG_CRIT);
	/* the log of the whole run says nothing personal */
	assert_true(t_file_has(errpath, "erased"));
	assert_false(t_file_has(errpath, CARD));
	assert_false(t_file_has(errpath, NAME));
	assert_false(t_file_has(errpath, PHOTO));
	t_res_clear(&r);
}

/* A sealed value is bound to its row and field; another key does not
 * open it either. */
static void test_pii_bound_to_row_and_key(void **state)
{
	(void)state;
	struct t_res r = {0};
	char a[64], c[64], why[128];
	struct store_batch b;

	assert_int_equal(store_open(t_base, &t_conf), 0);
	assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {\"card\": \"" CARD
	                          "\"}, \"pii\": [\"card\"]}",
	                          &r),
	                 STORE_OK);
	snprintf(a, sizeof(a), "%s", t_id(&r));
	assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {\"card\": \"other\"}, \"pii\": "
	                          "[\"card\"]}",
	                          &r),
	                 STORE_OK);
	snprintf(c, sizeof(c), "%s", t_id(&r));
	/* copy a's sealed card into c */
	sqlite3 *db = t_raw();
	sqlite3_stmt *st;
	sqlite3_prepare_v2(db,
	                   "UPDATE transactions SET payload = (SELECT payload FROM transactions "
	                   "WHERE id = ?) WHERE id = ?",
	                   -1, &st, NULL);
	sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, c, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(db);
	json_t *t = store_get(c);
	assert_true(json_is_true(json_object_get(t, "pii_unreadable")));
	assert_true(json_is_null(json_object_get(json_object_get(t, "payload"), "card")));
	json_decref(t);
	store_close();

	/* another key: nothing opens, and such rows fail instead of blocking
	 * the queue */
	t_write_key(t_keyfile, 0600);
	int kfd = open(t_keyfile, O_WRONLY);
	assert_int_equal(write(kfd, "different key, 32 bytes long....", 32), 32);
	close(kfd);
	assert_int_equal(store_open(t_base, &t_conf), 0);
	t = store_get(a);
	assert_true(json_is_true(json_object_get(t, "pii_unreadable")));
	json_decref(t);
	assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {}}", &r), STORE_OK);
	assert_int_equal(store_take_batch("ep", "K", 10, &b), 0);
	assert_int_equal(b.n, 1);
	assert_string_equal(b.ids[0], t_id(&r));
	store_batch_free(&b);
	t = store_get(a);
	assert_string_equal(json_string_value(json_object_get(t, "state")), "failed");
	assert_non_null(strstr(json_string_value(json_object_get(t, "reason")), "decrypt"));
	json_decref(t);
	/* an admin can put it back once the right key is there */
	assert_int_equal(store_retry(a, why, sizeof(why)), 0);
	t_res_clear(&r);
}

static void test_bad_key_refuses_open(void **state)
{
	(void)state;
	int fd = open(t_keyfile, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "short", 5), 5);
	close(fd);
	assert_int_equal(store_open(t_base, &t_conf), -1);
	t_conf.store_key_file = "/nonexistent/kioskd.key";
	assert_int_equal(store_open(t_base, &t_conf), -1);
	/* from the systemd credential when no key_file is set */
	char dir[PATH_MAX + 16], path[PATH_MAX + 40];
	snprintf(dir, sizeof(dir), "%s/creds", t_dir);
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/kioskd-store.key", dir);
	t_write_key(path, 0400);
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	t_conf.store_key_file = NULL;
	assert_int_equal(store_open(t_base, &t_conf), 0);
	struct t_res r = {0};
	assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {\"card\": \"1\"}, \"pii\": "
	                          "[\"card\"]}",
	                          &r),
	                 STORE_OK);
	unsetenv("CREDENTIALS_DIRECTORY");
	t_res_clear(&r);
}

/* ---- the loop ---- */

/* A socket that stays readable (a busy client) keeps an I/O event active
 * in every turn, so the low-priority commit event would wait; the guard
 * timer commits anyway. */
static int busy_runs;

static void busy_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	busy_runs++; /* never reads: ready again next turn */
}

static void break_done(void *arg, enum store_err err, const char *why, json_t *txn)
{
	t_done(arg, err, why, txn);
	event_base_loopbreak(t_base);
}

static void give_up(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopbreak(t_base);
}

/* One submission under a socket that is readable in every turn; how
 * many busy callbacks ran before its commit. */
static int busy_submit(struct t_res *r)
{
	int sv[2];
	struct timeval five = {5, 0};

	busy_runs = 0;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], "x", 1), 1);
	struct event *ev = event_new(t_base, sv[0], EV_READ | EV_PERSIST, busy_cb, NULL);
	event_add(ev, NULL);
	struct event *timeout = evtimer_new(t_base, give_up, NULL);
	evtimer_add(timeout, &five);
	json_t *in = json_loads("{\"type\": \"x\", \"payload\": {}}", 0, NULL);
	double t0 = now_s();
	store_submit(in, "ep", break_done, r);
	json_decref(in);
	/* something is always active: the loop returns at a loopbreak */
	event_base_dispatch(t_base);
	double waited = now_s() - t0;
	event_free(ev);
	event_free(timeout);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(r->called, 1);
	assert_int_equal(r->err, STORE_OK);
	assert_true(waited < 2.0);
	print_message("    committed after %.1f ms under a busy loop (%d busy callbacks)\n",
	              waited * 1e3, busy_runs);
	return busy_runs;
}

/* A submission that comes alone is committed in its turn; once commits
 * carry more than one, the commit waits for the turn's stragglers, and the
 * guard timer commits anyway when a busy socket would make it wait for
 * ever. */
static void test_commit_not_starved(void **state)
{
	(void)state;
	struct t_res r = {0}, g[2] = {{0}};

	assert_int_equal(store_open(t_base, &t_conf), 0);
	assert_true(busy_submit(&r) <= 2);
	t_res_clear(&r);

	/* a group of two: the next commit waits for company */
	for (int i = 0; i < 2; i++) {
		json_t *in = json_loads("{\"type\": \"x\", \"payload\": {}}", 0, NULL);
		store_submit(in, "ep", t_done, &g[i]);
		json_decref(in);
	}
	event_base_loop(t_base, EVLOOP_NONBLOCK);
	assert_int_equal(g[0].called + g[1].called, 2);
	assert_int_equal(g[0].commits, g[1].commits);
	assert_true(busy_submit(&r) > 10); /* the busy socket kept it waiting */
	t_res_clear(&r);
	t_res_clear(&g[0]);
	t_res_clear(&g[1]);
}

/* Closing answers what is waiting (committed first). */
static void test_close_commits_waiting(void **state)
{
	(void)state;
	struct t_res r = {0};
	char id[64];

	assert_int_equal(store_open(t_base, &t_conf), 0);
	json_t *in = json_loads("{\"type\": \"x\", \"payload\": {\"a\": 1}}", 0, NULL);
	store_submit(in, "ep", t_done, &r);
	json_decref(in);
	store_audit("d", "c", NULL, NULL, "ok", NULL);
	store_close();
	assert_int_equal(r.called, 1);
	assert_int_equal(r.err, STORE_OK);
	snprintf(id, sizeof(id), "%s", t_id(&r));
	/* closed: refused at once, not lost in a queue */
	in = json_loads("{\"type\": \"x\", \"payload\": {}}", 0, NULL);
	t_res_clear(&r);
	store_submit(in, "ep", t_done, &r);
	json_decref(in);
	assert_int_equal(r.called, 1);
	assert_int_equal(r.err, STORE_EIO);
	assert_int_equal(store_open(t_base, &t_conf), 0);
	json_t *t = store_get(id);
	assert_non_null(t);
	json_decref(t);
	sqlite3 *db = t_raw();
	assert_int_equal(t_raw_int(db, "SELECT count(*) FROM audit"), 1);
	sqlite3_close(db);
	t_res_clear(&r);
}

/* ---- scale ---- */

static long rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *fp = fopen("/proc/self/status", "r");
	while (fp && fgets(line, sizeof(line), fp))
		if (!strncmp(line, "VmRSS:", 6))
			kib = atol(line + 6);
	if (fp)
		fclose(fp);
	return kib;
}

/* Submit n rows of endpoint ep, group commits of group rows. */
static void bulk(int n, int group, const char *ep)
{
	struct t_res *r = calloc((size_t)group, sizeof(*r));
	for (int done = 0; done < n; done += group) {
		int k = n - done < group ? n - done : group;
		for (int i = 0; i < k; i++) {
			json_t *in = json_pack("{s:s, s:{s:i, s:s}}", "type", "bulk.x", "payload",
			                       "n", done + i, "order", "P-0000000000");
			store_submit(in, ep, t_done, &r[i]);
			json_decref(in);
		}
		t_spin(&r[k - 1].called, 1);
		for (int i = 0; i < k; i++) {
			assert_int_equal(r[i].err, STORE_OK);
			t_res_clear(&r[i]);
		}
	}
	free(r);
}

/* ---- per-state counts, kept in memory ---- */

static const char *const t_states[] = {"queued", "sending", "delivered", "failed"};
static const enum store_outcome t_outcomes[] = {OUT_DELIVERED, OUT_RETRY, OUT_FAILED};

/* store_counts against COUNT(*) per state on a separate connection (it
 * sees only what is committed), and store_pending against the queued rows
 * per endpoint. */
static void t_check_counts(sqlite3 *raw, const char *when, int step)
{
	json_t *c = store_counts();
	long long queued = 0;
	char sql[160];

	for (size_t i = 0; i < 4; i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM transactions WHERE state = '%s'",
		         t_states[i]);
		long long want = t_raw_int(raw, sql);
		json_t *got = json_object_get(c, t_states[i]);
		if (!json_is_integer(got) || json_integer_value(got) != want)
			fail_msg("%s (step %d): store_counts says %s %lld, the table %lld", when,
			         step, t_states[i], (long long)json_integer_value(got), want);
		if (i == 0)
			queued = want;
	}
	json_t *oldest = json_object_get(c, "oldest_queued_s");
	if (queued ? !json_is_integer(oldest) : !json_is_null(oldest))
		fail_msg("%s (step %d): oldest_queued_s %s with %lld queued", when, step,
		         json_is_null(oldest) ? "null" : "set", queued);
	json_decref(c);
	static const char *const eps[] = {"ep", "ep2"};
	for (size_t i = 0; i < 2; i++) {
		snprintf(sql, sizeof(sql),
		         "SELECT count(*) FROM transactions WHERE state = 'queued' AND endpoint = "
		         "'%s'",
		         eps[i]);
		long long want = t_raw_int(raw, sql);
		if (store_pending(eps[i]) != want)
			fail_msg("%s (step %d): store_pending(%s) %lld, the table %lld", when, step,
			         eps[i], (long long)store_pending(eps[i]), want);
	}
}

#define T_IDS_MAX 4096

struct t_model {
	char (*taken)[64]; /* every id a batch took, also after it was reported */
	int ntaken;
	char blobs[16][BLOB_ID_SIZE];
	int nblobs, nblob_made;
	int submitted, refused;
};

/* A group of 1 to 6 submissions in one commit, with whatever reports are
 * waiting: new rows (endpoint ep, ep2 or none), a reused txn_id with the
 * same content (idempotent) or another (refused), invalid ones, rows
 * with a blob.  *full is set when the commit ran out of room. */
static void t_random_submits(struct t_model *m, int *full)
{
	struct t_res r[6];
	int k = 1 + rand() % 6;
	static const char *const eps[] = {"ep", "ep2", NULL};

	memset(r, 0, sizeof(r));
	for (int i = 0; i < k; i++) {
		json_t *in;
		int kind = rand() % 10;
		if (kind == 0) {
			in = json_pack("{s:s, s:{}}", "type", "Bad Type", "payload");
		} else if (kind <= 2) {
			/* a reused txn_id: same content, or (1 in 4) other content */
			int d = rand() % 20;
			char id[32];
			snprintf(id, sizeof(id), "dup-%d", d);
			in = json_pack("{s:s, s:s, s:{s:i}}", "txn_id", id, "type", "dup",
			               "payload", "d", rand() % 4 ? d : -1);
		} else if (kind == 3 && m->nblobs < 16) {
			char data[32], *b = m->blobs[m->nblobs];
			int len = snprintf(data, sizeof(data), "blob-%d", m->nblob_made++);
			assert_int_equal(blob_put(data, (size_t)len, b), 0);
			m->nblobs++;
			in = json_pack("{s:s, s:{}, s:[s]}", "type", "withblob", "payload", "blobs",
			               b);
		} else {
			in = json_pack("{s:s, s:{s:i}}", "type", "x", "payload", "n", rand());
		}
		store_submit(in, eps[rand() % 3], t_done, &r[i]);
		json_decref(in);
	}
	t_spin(&r[k - 1].called, 1);
	for (int i = 0; i < k; i++) {
		assert_int_equal(r[i].called, 1);
		if (r[i].err == STORE_OK)
			m->submitted++;
		else
			m->refused++;
		if (r[i].err == STORE_EFULL)
			*full = 1;
		t_res_clear(&r[i]);
	}
}

static void t_random_take(struct t_model *m)
{
	struct store_batch b;
	int rc = store_take_batch(rand() % 2 ? "ep" : "ep2", "K", 1 + rand() % 8, &b);
	for (int i = 0; rc == 0 && i < b.n && m->ntaken < T_IDS_MAX; i++)
		snprintf(m->taken[m->ntaken++], sizeof(m->taken[0]), "%s", b.ids[i]);
	store_batch_free(&b);
}

/* Reports of every outcome for ids taken at some point (so also for rows
 * reported before, or queued again, or failed) and for no row at all. */
static void t_random_reports(struct t_model *m)
{
	int k = 1 + rand() % 5;
	for (int i = 0; i < k; i++) {
		const char *id = m->ntaken && rand() % 8 ? m->taken[rand() % m->ntaken] : "nope";
		int o = rand() % 3;
		store_report(id, t_outcomes[o], o == 2 ? "rejected by the test" : NULL);
	}
}

/* One random step; *full as for t_random_submits. */
static void t_random_step(struct t_model *m, int *full)
{
	char why[200];
	int op = rand() % 100;

	if (op < 35) {
		t_random_submits(m, full);
	} else if (op < 55) {
		t_random_take(m);
	} else if (op < 78) {
		t_random_reports(m);
		if (rand() % 2) /* else they ride a later commit */
			event_base_loop(t_base, EVLOOP_NONBLOCK);
	} else if (op < 90) {
		if (m->ntaken)
			store_retry(m->taken[rand() % m->ntaken], why, sizeof(why));
	} else if (op < 94) {
		/* a blob gone: the rows using it fail when a batch takes them */
		if (m->nblobs) {
			int i = rand() % m->nblobs;
			blob_remove(m->blobs[i]);
			memmove(m->blobs[i], m->blobs[m->nblobs - 1], BLOB_ID_SIZE);
			m->nblobs--;
		}
	} else if (op < 97) {
		store_purge(); /* no state changes, but commits */
	} else {
		store_audit("printer", "print", NULL, NULL, "ok", NULL);
		event_base_loop(t_base, EVLOOP_NONBLOCK);
	}
}

static void t_random_steps(struct t_model *m, sqlite3 *raw, int n, const char *phase)
{
	for (int i = 0; i < n; i++) {
		int full = 0;
		t_random_step(m, &full);
		assert_false(full);
		t_check_counts(raw, phase, i);
	}
}

/* After a long random run of submissions, batches, reports of every
 * outcome, retries, failed commits (disk full, database locked) and
 * reopenings, store_counts (kept in memory) is what COUNT(*) per state
 * says. */
static void test_counts_follow_the_table(void **state)
{
	(void)state;
	struct t_model m;
	const char *e = getenv("STORE_COUNTS_SEED");
	unsigned seed = e ? (unsigned)atol(e) : (unsigned)time(NULL);
	char why[200];

	print_message("    seed %u (STORE_COUNTS_SEED to replay)\n", seed);
	srand(seed);
	memset(&m, 0, sizeof(m));
	m.taken = calloc(T_IDS_MAX, sizeof(*m.taken));
	assert_non_null(m.taken);
	assert_int_equal(store_open(t_base, &t_conf), 0);
	sqlite3 *raw = t_raw();
	t_check_counts(raw, "empty", 0);
	t_random_steps(&m, raw, 400, "random");

	/* disk full: a commit carrying reports and submissions fails whole;
	 * the counts do not move, and do once space comes back */
	for (int i = 0; i < 10; i++)
		t_random_take(&m);
	long long pages = t_raw_int(store_sqlite(), "PRAGMA page_count");
	char sql[80], big[8192];
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", pages);
	t_raw_int(store_sqlite(), sql);
	int len = snprintf(big, sizeof(big), "{\"type\": \"x\", \"payload\": {\"big\": \"");
	memset(big + len, 'b', 6000);
	strcpy(big + len + 6000, "\"}}");
	struct t_res r = {0};
	for (int i = 0; i < m.ntaken; i++)
		store_report(m.taken[i], t_outcomes[i % 3], "full");
	assert_int_equal(t_submit(big, &r), STORE_EFULL);
	t_check_counts(raw, "disk full", 0);
	/* more of everything while full: whatever fails must not count */
	for (int i = 0; i < 60; i++) {
		int full = 0;
		t_random_step(&m, &full);
		if (i % 4 == 0 && t_submit(big, &r) != STORE_EFULL)
			fail_msg("a large submission fitted in a full database");
		t_check_counts(raw, "disk full", i);
	}
	t_raw_int(store_sqlite(), "PRAGMA max_page_count = 1073741823");
	assert_int_equal(t_submit(big, &r), STORE_OK);
	t_check_counts(raw, "space back", 0);

	/* the database locked by another connection: BEGIN fails (busy), so
	 * the group commit, a batch and a retry fail; nothing counts */
	sqlite3 *lock = t_raw();
	assert_int_equal(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_busy_timeout(store_sqlite(), 0);
	t_random_reports(&m);
	assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {}}", &r), STORE_EIO);
	struct store_batch b;
	assert_int_equal(store_take_batch("ep", "K", 10, &b), -1);
	for (int i = 0; i < m.ntaken; i++)
		assert_int_not_equal(store_retry(m.taken[i], why, sizeof(why)), 0);
	t_check_counts(raw, "locked", 0);
	assert_int_equal(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(lock);
	sqlite3_busy_timeout(store_sqlite(), 2000);
	assert_int_equal(t_submit("{\"type\": \"x\", \"payload\": {}}", &r), STORE_OK);
	t_check_counts(raw, "unlocked", 0);
	t_random_steps(&m, raw, 200, "after the failures");

	/* close with rows out (sending) and reports waiting, open again:
	 * the waiting reports are committed at close, the rows still sending
	 * go back to queued */
	for (int i = 0; i < 5; i++)
		t_random_take(&m);
	t_random_reports(&m);
	store_close();
	assert_int_equal(store_open(t_base, &t_conf), 0);
	t_check_counts(raw, "reopened", 0);
	/* rows a crash left sending (written here while the store is closed) */
	store_close();
	assert_int_equal(sqlite3_exec(raw,
	                              "UPDATE transactions SET state = 'sending' WHERE seq IN "
	                              "(SELECT seq FROM transactions WHERE state = 'queued' "
	                              "LIMIT 7)",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	assert_int_equal(store_open(t_base, &t_conf), 0);
	assert_int_equal(t_raw_int(raw, "SELECT count(*) FROM transactions WHERE state = "
	                                "'sending'"),
	                 0);
	t_check_counts(raw, "reopened after a crash", 0);
	t_random_steps(&m, raw, 200, "after reopening");

	/* every state was reached, and the store's counts were not shortcuts */
	for (size_t i = 0; i < 4; i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM transactions WHERE state = '%s'",
		         t_states[i]);
		if (i != 1 && t_raw_int(raw, sql) == 0)
			fail_msg("seed %u: no row ended %s; a weak run", seed, t_states[i]);
	}
	print_message("    %d submissions answered ok, %d refused, %d ids taken\n", m.submitted,
	              m.refused, m.ntaken);
	sqlite3_close(raw);
	free(m.taken);
	t_res_clear(&r);
}

/* store_counts runs no COUNT: with 3,000 rows in every state, it runs one
 * statement (the oldest queued row, through an index), a few dozen
 * virtual machine steps and no scan or sort; none when nothing is
 * queued.  From SQLite's own counters, not from a clock. */
static void test_counts_do_not_count(void **state)
{
	(void)state;
	struct store_batch b;

	assert_int_equal(store_open(t_base, &t_conf), 0);
	bulk(3000, 1000, "ep");
	/* some of every state */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(store_take_batch("ep", "K", 100, &b), 0);
		for (int k = 0; k < b.n; k++)
			if (i != 2)
				store_report(b.ids[k], i == 0 ? OUT_DELIVERED : OUT_FAILED, "no");
		store_batch_free(&b);
	}
	event_base_loop(t_base, EVLOOP_NONBLOCK);
	event_base_loop(t_base, EVLOOP_NONBLOCK);

	t_trace_start();
	json_t *c = store_counts();
	t_trace_stop();
	assert_int_equal(json_integer_value(json_object_get(c, "queued")), 2700);
	assert_int_equal(json_integer_value(json_object_get(c, "sending")), 100);
	assert_int_equal(json_integer_value(json_object_get(c, "delivered")), 100);
	assert_int_equal(json_integer_value(json_object_get(c, "failed")), 100);
	assert_true(json_is_integer(json_object_get(c, "oldest_queued_s")));
	json_decref(c);
	print_message("    store_counts: %d statement(s), %lld VM steps, %lld full-scan steps, "
	              "%lld sorts\n",
	              t_trace.stmts, t_trace.vm_steps, t_trace.fullscan_steps, t_trace.sorts);
	if (t_trace.stmts > 1)
		fail_msg("store_counts ran %d statements (%s; %s; ...)", t_trace.stmts,
		         t_trace.sql[0], t_trace.sql[1]);
	for (int i = 0; i < t_trace.stmts && i < T_TRACE_SQL_MAX; i++)
		if (strcasestr(t_trace.sql[i], "count("))
			fail_msg("store_counts counted: %s", t_trace.sql[i]);
	assert_true(t_trace.vm_steps < 100); /* a walk over 2,700 index entries: thousands */
	assert_int_equal(t_trace.fullscan_steps, 0);
	assert_int_equal(t_trace.sorts, 0);

	/* nothing queued: not even the lookup */
	for (;;) {
		assert_int_equal(store_take_batch("ep", "K", 1000, &b), 0);
		int n = b.n;
		store_batch_free(&b);
		if (!n)
			break;
	}
	t_trace_start();
	c = store_counts();
	t_trace_stop();
	assert_int_equal(json_integer_value(json_object_get(c, "queued")), 0);
	assert_int_equal(json_integer_value(json_object_get(c, "sending")), 2800);
	assert_true(json_is_null(json_object_get(c, "oldest_queued_s")));
	json_decref(c);
	assert_int_equal(t_trace.stmts, 0);

	/* the tracer sees what the store runs (a COUNT where there is one) */
	t_trace_start();
	assert_int_equal(store_pending(NULL), 0);
	t_trace_stop();
	assert_int_equal(t_trace.stmts, 1);
	assert_non_null(strcasestr(t_trace.sql[0], "count("));
}

/* 100,000 queued rows: a batch for an endpoint whose rows come last is
 * still found at once (index), and only the batch is in memory. */
static void test_take_batch_100k(void **state)
{
	(void)state;
	struct store_batch b;

	assert_int_equal(store_open(t_base, &t_conf), 0);
	double t0 = now_s();
	bulk(100000, 2000, "a");
	bulk(300, 100, "b");
	double t1 = now_s();
	long rss0 = rss_kib();
	assert_int_equal(store_pending("a"), 100000);
	assert_int_equal(store_pending("b"), 300);
	double t2 = now_s();
	assert_int_equal(store_take_batch("b", "K", 100, &b), 0);
	double t3 = now_s();
	assert_int_equal(b.n, 100);
	json_t *body = json_loads(b.body, 0, NULL);
	/* oldest first */
	assert_int_equal(
	        json_integer_value(json_object_get(
	                json_object_get(json_array_get(json_object_get(body, "transactions"), 0),
	                                "payload"),
	                "n")),
	        0);
	json_decref(body);
	store_batch_free(&b);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(store_take_batch("a", "K", 100, &b), 0);
		assert_int_equal(b.n, 100);
		for (int k = 0; k < b.n; k++)
			store_report(b.ids[k], OUT_DELIVERED, NULL);
		store_batch_free(&b);
	}
	event_base_loop(t_base, EVLOOP_NONBLOCK);
	event_base_loop(t_base, EVLOOP_NONBLOCK);
	double t4 = now_s();
	assert_int_equal(store_pending("a"), 95000);
	json_t *c = store_counts();
	assert_int_equal(json_integer_value(json_object_get(c, "delivered")), 5000);
	json_decref(c);
	print_message("    100,300 rows in %.2f s; take_batch(100) behind 100,000 others %.2f ms; "
	              "50 batches of 100 taken and delivered in %.2f s; RSS %ld KiB -> %ld KiB\n",
	              t1 - t0, (t3 - t2) * 1e3, t4 - t3, rss0, rss_kib());
}

/* Submissions per second, one per commit and 16 per group commit, next
 * to raw SQLite with the same durability, one row per commit, in the
 * same directory.  The three are interleaved in slices so that a disk
 * whose fsync time wanders affects them alike.  Informative (printed), not
 * asserted: it depends on the disk. */
static void test_throughput(void **state)
{
	(void)state;
	struct t_res r[16] = {{0}};
	const int slices = 20, per = 10;
	double t_raw = 0, t_one = 0, t_group = 0;
	sqlite3 *db;
	sqlite3_stmt *st;
	char path[PATH_MAX + 16];

	assert_int_equal(store_open(t_base, &t_conf), 0);
	snprintf(path, sizeof(path), "%s/raw.db", t_dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_exec(db,
	             "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (seq "
	             "INTEGER PRIMARY KEY, id TEXT UNIQUE, payload TEXT)",
	             NULL, NULL, NULL);
	sqlite3_prepare_v2(db, "INSERT INTO t (id, payload) VALUES (?, ?)", -1, &st, NULL);
	unsigned long c0 = store_commit_count();
	for (int slice = 0; slice < slices; slice++) {
		double t0 = now_s();
		for (int i = 0; i < per; i++) {
			char id[32];
			snprintf(id, sizeof(id), "id%d.%d", slice, i);
			sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(st, 2, "{\"order\":\"P-1\",\"amount_fen\":5000}", -1,
			                  SQLITE_STATIC);
			assert_int_equal(sqlite3_step(st), SQLITE_DONE);
			sqlite3_reset(st);
		}
		double t1 = now_s();
		for (int i = 0; i < per; i++)
			assert_int_equal(
			        t_submit("{\"type\": \"gas.topup\", \"payload\": {\"order\": "
			                 "\"P-1\", \"amount_fen\": 5000}}",
			                 &r[0]),
			        STORE_OK);
		double t2 = now_s();
		for (int i = 0; i < per; i++) {
			for (int k = 0; k < 16; k++) {
				json_t *in =
				        json_pack("{s:s, s:{s:s, s:i}}", "type", "gas.topup",
				                  "payload", "order", "P-1", "amount_fen", 5000);
				store_submit(in, "ep", t_done, &r[k]);
				json_decref(in);
			}
			t_spin(&r[15].called, 1);
			for (int k = 0; k < 16; k++) {
				assert_int_equal(r[k].err, STORE_OK);
				t_res_clear(&r[k]);
			}
		}
		double t3 = now_s();
		t_raw += t1 - t0;
		t_one += t2 - t1;
		t_group += t3 - t2;
	}
	assert_int_equal(store_commit_count() - c0, (unsigned long)(2 * slices * per));
	sqlite3_finalize(st);
	sqlite3_close(db);
	int n = slices * per;
	print_message("    durable submissions/s: raw SQLite 1 row/commit %.0f; store 1 per "
	              "commit %.0f (%.2fx raw); store 16 per group commit %.0f (%.1fx raw)\n",
	              n / t_raw, n / t_one, t_raw / t_one, 16 * n / t_group, 16 * t_raw / t_group);
	t_res_clear(&r[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_open_schema, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_submit_get, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_submit_invalid, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_pii_without_key, t_setup_nokey, t_teardown),
	        cmocka_unit_test_setup_teardown(test_idempotent_txn_id, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_ids, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_group_commit, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_done_after_commit, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_states_and_retry, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_no_route, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_batch_body, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_batch_missing_blob, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_flows, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_list, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_audit, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_sending_requeued, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_migrate_v0, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_migrate_v1_to_v2, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_future_version_refused, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_corrupt_garbage, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_corrupt_page, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_corrupt_truncated, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_corrupt_header, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_disk_full, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_disk_full_tmpfs, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_pii_at_rest_and_purge, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_pii_bound_to_row_and_key, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_bad_key_refuses_open, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_commit_not_starved, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_close_commits_waiting, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_counts_follow_the_table, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_counts_do_not_count, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_take_batch_100k, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_throughput, t_setup, t_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
