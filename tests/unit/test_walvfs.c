/* walvfs: a WAL transaction reaches its file in one write, before SQLite
 * syncs or publishes it, and a failed write fails the transaction.
 *
 * Below the shim sits a counting VFS (SQLite's default, with the writes
 * and syncs of WAL files counted, and a switch that fails them), so what
 * the shim hands down is seen, not inferred.  Real database files in a
 * temporary directory throughout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "walvfs.h"

/* ---- the counting VFS ---- */

struct cnt_file {
	sqlite3_file base;
	sqlite3_file *real;
};

static sqlite3_vfs *cnt_real;
static sqlite3_vfs cnt_vfs;
static sqlite3_io_methods cnt_io;
static long cnt_writes, cnt_syncs, cnt_bytes;
static int cnt_fail; /* WAL writes fail with SQLITE_FULL */

/* the order of what reaches the WAL: 'w' writes and 's' syncs */
static struct {
	char op;
	sqlite3_int64 off;
	int len;
} cnt_log[64];
static int cnt_nlog;

static void cnt_note(char op, sqlite3_int64 off, int len)
{
	if (cnt_nlog < 64)
		cnt_log[cnt_nlog++] = (typeof(cnt_log[0])){op, off, len};
}

#define REAL(f) (((struct cnt_file *)(f))->real)

static int cnt_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}

static int cnt_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
	return REAL(f)->pMethods->xRead(REAL(f), p, n, off);
}

static int cnt_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
	if (cnt_fail)
		return SQLITE_FULL;
	cnt_writes++;
	cnt_bytes += n;
	cnt_note('w', off, n);
	return REAL(f)->pMethods->xWrite(REAL(f), p, n, off);
}

static int cnt_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int cnt_sync(sqlite3_file *f, int flags)
{
	cnt_syncs++;
	cnt_note('s', 0, 0);
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int cnt_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int cnt_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}

static int cnt_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}

static int cnt_reserved(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int cnt_control(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int cnt_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int cnt_device(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int cnt_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
	struct cnt_file *c = (struct cnt_file *)f;
	(void)vfs;
	if (!(flags & SQLITE_OPEN_WAL))
		return cnt_real->xOpen(cnt_real, name, f, flags, out);
	memset(c, 0, sizeof(*c));
	c->real = (sqlite3_file *)(c + 1);
	int rc = cnt_real->xOpen(cnt_real, name, c->real, flags, out);
	if (rc == SQLITE_OK)
		c->base.pMethods = &cnt_io;
	return rc;
}

static void cnt_register(void)
{
	if (cnt_real)
		return;
	cnt_real = sqlite3_vfs_find(NULL);
	assert_non_null(cnt_real);
	cnt_vfs = *cnt_real;
	cnt_vfs.zName = "count";
	cnt_vfs.szOsFile = (int)sizeof(struct cnt_file) + cnt_real->szOsFile;
	cnt_vfs.xOpen = cnt_open;
	cnt_vfs.pNext = NULL;
	cnt_io = (sqlite3_io_methods){1,           cnt_close,  cnt_read,  cnt_write,  cnt_truncate,
	                              cnt_sync,    cnt_size,   cnt_lock,  cnt_unlock, cnt_reserved,
	                              cnt_control, cnt_sector, cnt_device};
	assert_int_equal(sqlite3_vfs_register(&cnt_vfs, 0), SQLITE_OK);
}

/* ---- helpers ---- */

static char dir[PATH_MAX], path[PATH_MAX + 16];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/kioskd-walvfs-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/t.db", dir);
	cnt_register();
	cnt_fail = 0;
	return 0;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK)
		fail_msg("%s: %s", sql, err ? err : sqlite3_errstr(rc));
}

static sqlite3 *open_with(const char *p, const char *vfs, const char *sync)
{
	sqlite3 *db;
	char sql[64];
	assert_int_equal(sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
	                 SQLITE_OK);
	exec_ok(db, "PRAGMA journal_mode = WAL");
	snprintf(sql, sizeof(sql), "PRAGMA synchronous = %s", sync);
	exec_ok(db, sql);
	/* the shape of kioskd's store: a table and a few indexes */
	exec_ok(db, "CREATE TABLE IF NOT EXISTS t (seq INTEGER PRIMARY KEY, id TEXT UNIQUE,"
	            " state TEXT, created INTEGER, body BLOB);"
	            "CREATE INDEX IF NOT EXISTS t_state ON t (state, seq);"
	            "CREATE INDEX IF NOT EXISTS t_created ON t (created)");
	return db;
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void integrity_ok(sqlite3 *db)
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
}

/* The database at p as SQLite's default VFS reads it, in a connection of
 * its own: n rows, intact. */
static void plain_has(const char *p, int64_t n)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(query_int(db, "SELECT count(*) FROM t"), n);
	integrity_ok(db);
	sqlite3_close(db);
}

/* One row per transaction; SQLite's result code. */
static int insert_row(sqlite3 *db, int k, int body_len)
{
	sqlite3_stmt *st;
	char id[32];
	unsigned char *body = malloc((size_t)body_len + 1);
	assert_non_null(body);
	for (int i = 0; i < body_len; i++)
		body[i] = (unsigned char)(k * 31 + i);
	snprintf(id, sizeof(id), "row-%08d", k);
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "INSERT INTO t (id, state, created, body)"
	                                    " VALUES (?, 'queued', ?, ?)",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 2, 1000000 + k);
	sqlite3_bind_blob(st, 3, body, body_len, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	free(body);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* ---- tests ---- */

static void test_names(void **state)
{
	(void)state;
	const char *a = walvfs_over(NULL), *b = walvfs_over(""), *c = walvfs_over("count");
	assert_non_null(a);
	assert_non_null(c);
	assert_string_equal(a, b); /* one shim per base */
	assert_string_not_equal(a, c);
	assert_string_equal(c, walvfs_over("count"));
	assert_non_null(sqlite3_vfs_find(c));
	assert_null(walvfs_over("no-such-vfs"));
}

/* What the shim exists for: a one-row commit (six pages: twelve writes
 * through SQLite's own path) reaches the WAL with one write and one
 * sync.  Counted below the shim, and without it for comparison. */
static void test_one_write_per_commit(void **state)
{
	(void)state;
	long writes[2], syncs[2];
	const char *vfs[2] = {"count", walvfs_over("count")};

	for (int v = 0; v < 2; v++) {
		char p[PATH_MAX + 32];
		snprintf(p, sizeof(p), "%s/c%d.db", dir, v);
		sqlite3 *db = open_with(p, vfs[v], "FULL");
		assert_int_equal(insert_row(db, 0, 100), SQLITE_OK); /* the WAL's header */
		cnt_writes = cnt_syncs = 0;
		for (int k = 1; k <= 100; k++)
			assert_int_equal(insert_row(db, k, 100), SQLITE_OK);
		writes[v] = cnt_writes;
		syncs[v] = cnt_syncs;
		assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 101);
		integrity_ok(db);
		sqlite3_close(db);
	}
	print_message("WAL writes per commit: %.2f without the shim, %.2f with it\n",
	              writes[0] / 100.0, writes[1] / 100.0);
	assert_true(writes[0] >= 6 * 100); /* a frame is a header and a page */
	assert_int_equal(writes[1], 100);
	assert_int_equal(syncs[0], 100);
	assert_int_equal(syncs[1], 100); /* durability unchanged */
}

/* With synchronous = NORMAL nothing syncs at a commit: the commit itself
 * must hand the frames to the file, or another connection (which reads
 * them through the wal-index) would read stale pages, and a crash of the
 * process would lose a transaction SQLite reported committed. */
static void test_commit_reaches_file_without_sync(void **state)
{
	(void)state;
	sqlite3 *db = open_with(path, walvfs_over("count"), "NORMAL");
	for (int k = 0; k < 20; k++)
		assert_int_equal(insert_row(db, k, 3000), SQLITE_OK);

	/* another connection, straight on SQLite's default VFS */
	plain_has(path, 20);

	/* the files as a killed process leaves them: copied while db is open */
	char cmd[5 * PATH_MAX], copy[PATH_MAX + 32];
	snprintf(copy, sizeof(copy), "%s/crash.db", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && cp '%s-wal' '%s-wal'", path, copy, path, copy);
	assert_int_equal(system(cmd), 0);
	plain_has(copy, 20);
	sqlite3_close(db);
}

/* After a checkpoint SQLite starts the WAL over: its new header must be
 * on disk before any frame that follows it (SQLite syncs it first), so
 * the sync after the header write must hand the header down alone. */
static void test_restart_header_first(void **state)
{
	(void)state;
	sqlite3 *db = open_with(path, walvfs_over("count"), "FULL");
	for (int k = 0; k < 10; k++)
		assert_int_equal(insert_row(db, k, 100), SQLITE_OK);
	exec_ok(db, "PRAGMA wal_checkpoint(PASSIVE)");
	cnt_nlog = 0;
	assert_int_equal(insert_row(db, 10, 100), SQLITE_OK);
	assert_int_equal(cnt_nlog, 4);
	assert_int_equal(cnt_log[0].op, 'w');
	assert_int_equal(cnt_log[0].off, 0);
	assert_int_equal(cnt_log[0].len, 32); /* the header alone */
	assert_int_equal(cnt_log[1].op, 's');
	assert_int_equal(cnt_log[2].op, 'w');
	assert_int_equal(cnt_log[2].off, 32); /* then the frames, at once */
	assert_true(cnt_log[2].len > 4 * 4096);
	assert_int_equal(cnt_log[3].op, 's');
	sqlite3_close(db);
}

/* A transaction larger than the buffer, with a page cache so small that
 * SQLite spills pages into the WAL mid-transaction and reads them back;
 * one rolled back the same way must leave nothing. */
static void test_large_transactions(void **state)
{
	(void)state;
	sqlite3 *db = open_with(path, walvfs_over("count"), "FULL");
	exec_ok(db, "PRAGMA cache_size = 8");
	exec_ok(db, "BEGIN");
	for (int k = 0; k < 400; k++)
		assert_int_equal(insert_row(db, k, 2000), SQLITE_OK);
	exec_ok(db, "UPDATE t SET state = 'sending' WHERE seq % 3 = 0");
	exec_ok(db, "COMMIT");

	exec_ok(db, "BEGIN");
	for (int k = 400; k < 800; k++)
		assert_int_equal(insert_row(db, k, 2000), SQLITE_OK);
	exec_ok(db, "DELETE FROM t WHERE seq < 100");
	exec_ok(db, "ROLLBACK");

	assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 400);
	assert_int_equal(query_int(db, "SELECT count(*) FROM t WHERE state = 'sending'"), 133);
	/* the bodies as written: byte i of row k is k * 31 + i */
	assert_int_equal(
	        query_int(db, "SELECT count(*) FROM t WHERE"
	                      " hex(substr(body, 1, 1)) <> printf('%02X', (seq - 1) * 31 % 256)"),
	        0);
	integrity_ok(db);
	exec_ok(db, "PRAGMA wal_checkpoint(TRUNCATE)");
	integrity_ok(db);
	sqlite3_close(db);

	plain_has(path, 400);
}

/* The gathered write fails (a full disk): the commit reports it, nothing
 * of it is kept, and the next commit after the space returns works. */
static void test_failed_write_fails_commit(void **state)
{
	(void)state;
	sqlite3 *db = open_with(path, walvfs_over("count"), "FULL");
	for (int k = 0; k < 5; k++)
		assert_int_equal(insert_row(db, k, 500), SQLITE_OK);
	cnt_fail = 1;
	int rc = insert_row(db, 5, 500);
	cnt_fail = 0;
	assert_int_equal(rc & 0xff, SQLITE_FULL);
	assert_int_equal(insert_row(db, 6, 500), SQLITE_OK);
	assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 6);
	assert_int_equal(query_int(db, "SELECT count(*) FROM t WHERE id = 'row-00000005'"), 0);
	integrity_ok(db);
	sqlite3_close(db);

	plain_has(path, 6);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(test_names),
	        T(test_one_write_per_commit),
	        T(test_commit_reaches_file_without_sync),
	        T(test_restart_header_first),
	        T(test_large_transactions),
	        T(test_failed_write_fails_commit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
