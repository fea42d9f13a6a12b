/* Shared by the store's unit tests: a temporary state directory, a
 * configuration made by hand, a loop with the daemon's three priorities,
 * and submissions that wait for their done().  Include after cmocka.h. */
#ifndef KIOSKD_STORE_HARNESS_H
#define KIOSKD_STORE_HARNESS_H

#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "conf.h"
#include "log.h"
#include "store.h"

#define UNUSED __attribute__((unused))

static char t_dir[PATH_MAX];
static char t_db[PATH_MAX + 32];
static char t_keyfile[PATH_MAX + 32];
static struct conf t_conf;
static struct conf_route t_route;
static struct event_base *t_base;

struct t_res {
	int called;
	enum store_err err;
	char why[256];
	json_t *txn;
	unsigned long commits; /* store_commit_count() when done() ran */
};

static UNUSED void t_done(void *arg, enum store_err err, const char *why, json_t *txn)
{
	struct t_res *r = arg;
	r->called++;
	r->err = err;
	snprintf(r->why, sizeof(r->why), "%s", why ? why : "");
	json_decref(r->txn);
	r->txn = json_incref(txn);
	r->commits = store_commit_count();
}

static UNUSED void t_res_clear(struct t_res *r)
{
	json_decref(r->txn);
	memset(r, 0, sizeof(*r));
}

static UNUSED void t_write_key(const char *path, mode_t mode)
{
	unsigned char key[32];
	for (int i = 0; i < 32; i++)
		key[i] = (unsigned char)(i * 37 + 11);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, key, sizeof(key)), (ssize_t)sizeof(key));
	fchmod(fd, mode);
	close(fd);
}

/* A fresh directory and configuration; key: write and use a store key.
 * Transactions of every type route to endpoint "ep". */
static UNUSED int t_setup_with(int key)
{
	log_init("test", LOG_CRIT);
	unsetenv("CREDENTIALS_DIRECTORY");
	snprintf(t_dir, sizeof(t_dir), "%s/kioskd-store-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(t_dir))
		return -1;
	snprintf(t_db, sizeof(t_db), "%s/kioskd.db", t_dir);
	snprintf(t_keyfile, sizeof(t_keyfile), "%s/store.key", t_dir);
	memset(&t_conf, 0, sizeof(t_conf));
	t_conf.state_dir = t_dir;
	t_conf.store_path = "kioskd.db";
	t_conf.pii_retention_s = 3600;
	t_conf.kiosk_id = "K0001";
	t_route.pattern = "*";
	t_route.endpoint = "ep";
	t_conf.routes = &t_route;
	if (key) {
		t_write_key(t_keyfile, 0600);
		t_conf.store_key_file = t_keyfile;
	}
	if (blob_init(t_dir) < 0)
		return -1;
	t_base = event_base_new();
	if (!t_base || event_base_priority_init(t_base, 3) < 0)
		return -1;
	return 0;
}

static UNUSED int t_setup(void **state)
{
	(void)state;
	return t_setup_with(1);
}

static UNUSED int t_setup_nokey(void **state)
{
	(void)state;
	return t_setup_with(0);
}

static UNUSED int t_teardown(void **state)
{
	char cmd[PATH_MAX + 64];
	(void)state;
	store_close();
	event_base_free(t_base);
	t_base = NULL;
	/* a tmpfs a failed test left mounted */
	snprintf(cmd, sizeof(cmd), "%s/small", t_dir);
	if (access(cmd, F_OK) == 0) {
		snprintf(cmd, sizeof(cmd), "umount '%s/small' 2>/dev/null", t_dir);
		if (system(cmd) != 0) {
			/* not mounted */
		}
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Run the loop until *n reaches want (or a few seconds passed). */
static UNUSED void t_spin(const int *n, int want)
{
	for (int i = 0; *n < want && i < 100000; i++)
		event_base_loop(t_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_true(*n >= want);
}

/* Submit JSON text and wait for done(). */
static UNUSED enum store_err t_submit(const char *text, struct t_res *r)
{
	json_error_t e;
	json_t *in = json_loads(text, 0, &e);
	if (!in)
		fail_msg("bad test JSON %s: %s", text, e.text);
	t_res_clear(r);
	store_submit(in, "ep", t_done, r);
	json_decref(in);
	assert_int_equal(r->called, 0); /* never inside store_submit */
	t_spin(&r->called, 1);
	return r->err;
}

/* The txn_id of a successful submission. */
static UNUSED const char *t_id(struct t_res *r)
{
	return json_string_value(json_object_get(r->txn, "txn_id"));
}

/* A separate connection to the database (sees only what is committed). */
static UNUSED sqlite3 *t_raw(void)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(t_db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 2000);
	return db;
}

static UNUSED long long t_raw_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* What the store's own connection runs between t_trace_start() and
 * t_trace_stop(), through sqlite3_trace_v2: statements started, their
 * text, and the work they did (virtual machine steps, steps of full
 * scans, sorts), from SQLite's own counters, so no timing is involved. */
#define T_TRACE_SQL_MAX 8
static struct {
	int stmts;
	char sql[T_TRACE_SQL_MAX][256];
	long long vm_steps, fullscan_steps, sorts;
} t_trace;

static UNUSED int t_trace_cb(unsigned type, void *ctx, void *p, void *x)
{
	sqlite3_stmt *st = p;
	(void)ctx;
	if (type == SQLITE_TRACE_STMT) {
		const char *sql = x;
		if (sql && !strncmp(sql, "--", 2))
			return 0; /* a trigger's, part of its statement */
		if (t_trace.stmts < T_TRACE_SQL_MAX)
			snprintf(t_trace.sql[t_trace.stmts], sizeof(t_trace.sql[0]), "%s",
			         sql ? sql : "");
		t_trace.stmts++;
		/* count this run only: the statements are prepared once */
		sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 1);
		sqlite3_stmt_status(st, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1);
		sqlite3_stmt_status(st, SQLITE_STMTSTATUS_SORT, 1);
	} else if (type == SQLITE_TRACE_PROFILE) {
		t_trace.vm_steps += sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 0);
		t_trace.fullscan_steps +=
		        sqlite3_stmt_status(st, SQLITE_STMTSTATUS_FULLSCAN_STEP, 0);
		t_trace.sorts += sqlite3_stmt_status(st, SQLITE_STMTSTATUS_SORT, 0);
	}
	return 0;
}

static UNUSED void t_trace_start(void)
{
	memset(&t_trace, 0, sizeof(t_trace));
	assert_non_null(store_sqlite());
	assert_int_equal(sqlite3_trace_v2(store_sqlite(), SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE,
	                                  t_trace_cb, NULL),
	                 SQLITE_OK);
}

static UNUSED void t_trace_stop(void)
{
	sqlite3_trace_v2(store_sqlite(), 0, NULL, NULL);
}

/* Whole file in memory (NULL and *len 0 when it does not exist). */
static UNUSED char *t_slurp(const char *path, size_t *len)
{
	struct stat st;
	*len = 0;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return NULL;
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return NULL;
	char *buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	*len = fread(buf, 1, (size_t)st.st_size, fp);
	fclose(fp);
	return buf;
}

static UNUSED int t_file_has(const char *path, const char *needle)
{
	size_t len;
	char *buf = t_slurp(path, &len);
	int found = buf && memmem(buf, len, needle, strlen(needle)) != NULL;
	free(buf);
	return found;
}

#endif
