/* Power loss: a test-only SQLite VFS over the default one keeps, for every
 * database, WAL and journal file, the content it had at its last xSync and
 * the writes made since.  "Cutting the power" stops all I/O (the dying
 * process cannot write any more), then puts every file back to what a disk
 * could hold after a cut: the synced content plus none, some, or a prefix
 * of the writes that were not synced.  The store is then reopened: every
 * transaction whose done() reported success must be there, intact, and
 * PRAGMA integrity_check must say ok.  Many cycles, with the cut at a
 * random write or sync.
 *
 * POWERLOSS_CYCLES and POWERLOSS_SEED override the defaults (a longer soak,
 * or replaying a failure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <glob.h>

#include "store_harness.h"

/* ---- the VFS shim ---- */

struct pl_write {
	struct pl_write *next;
	sqlite3_int64 off;
	int len; /* -1: a truncation to off */
	unsigned char data[];
};

struct pl_state {
	struct pl_state *next;
	char *path;
	unsigned char *img; /* content at the last sync */
	size_t len, cap;
	struct pl_write *pend, **tail; /* since then */
};

struct pl_file {
	sqlite3_file base;
	struct pl_state *st; /* NULL: not tracked (temporary files) */
	sqlite3_file *real;
};

static sqlite3_vfs *pl_real;
static sqlite3_vfs pl_vfs;
static struct pl_state *pl_states;
static int pl_dead;          /* the power is off */
static long pl_countdown;    /* writes and syncs until it goes off (0: never) */
static unsigned long pl_ops; /* writes and syncs seen */

static void img_reserve(struct pl_state *st, size_t n)
{
	if (n <= st->cap)
		return;
	size_t cap = st->cap ? st->cap : 65536;
	while (cap < n)
		cap *= 2;
	st->img = realloc(st->img, cap);
	assert_non_null(st->img);
	st->cap = cap;
}

static void img_apply(struct pl_state *st, const struct pl_write *w)
{
	size_t off = (size_t)w->off;
	if (w->len < 0) {
		if (off > st->len) {
			img_reserve(st, off);
			memset(st->img + st->len, 0, off - st->len);
		}
		st->len = off;
		return;
	}
	size_t end = off + (size_t)w->len;
	img_reserve(st, end);
	if (off > st->len)
		memset(st->img + st->len, 0, off - st->len);
	memcpy(st->img + off, w->data, (size_t)w->len);
	if (end > st->len)
		st->len = end;
}

static void pend_free(struct pl_state *st)
{
	while (st->pend) {
		struct pl_write *w = st->pend;
		st->pend = w->next;
		free(w);
	}
	st->tail = &st->pend;
}

static struct pl_state *state_get(const char *path, sqlite3_file *real)
{
	struct pl_state *st;
	for (st = pl_states; st; st = st->next)
		if (!strcmp(st->path, path))
			return st;
	st = calloc(1, sizeof(*st));
	st->path = strdup(path);
	st->tail = &st->pend;
	/* what is there before we look is taken as synced */
	sqlite3_int64 size = 0;
	real->pMethods->xFileSize(real, &size);
	img_reserve(st, (size_t)size + 1);
	if (size > 0)
		real->pMethods->xRead(real, st->img, (int)size, 0);
	st->len = (size_t)size;
	st->next = pl_states;
	pl_states = st;
	return st;
}

static void state_drop(const char *path)
{
	for (struct pl_state **p = &pl_states; *p; p = &(*p)->next) {
		if (!strcmp((*p)->path, path)) {
			struct pl_state *st = *p;
			*p = st->next;
			pend_free(st);
			free(st->img);
			free(st->path);
			free(st);
			return;
		}
	}
}

/* One more write or sync; nonzero when the power is (now) off. */
static int pl_tick(void)
{
	if (pl_dead)
		return 1;
	pl_ops++;
	if (pl_countdown > 0 && --pl_countdown == 0)
		pl_dead = 1;
	return pl_dead;
}

#define REAL(f) (((struct pl_file *)(f))->real)

static int pl_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}

static int pl_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
	return REAL(f)->pMethods->xRead(REAL(f), buf, amt, off);
}

static int pl_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
	struct pl_file *p = (struct pl_file *)f;
	if (p->st && pl_tick())
		return SQLITE_IOERR_WRITE;
	int rc = p->real->pMethods->xWrite(p->real, buf, amt, off);
	if (rc == SQLITE_OK && p->st) {
		struct pl_write *w = malloc(sizeof(*w) + (size_t)amt);
		w->next = NULL;
		w->off = off;
		w->len = amt;
		memcpy(w->data, buf, (size_t)amt);
		*p->st->tail = w;
		p->st->tail = &w->next;
	}
	return rc;
}

static int pl_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct pl_file *p = (struct pl_file *)f;
	if (p->st && pl_tick())
		return SQLITE_IOERR_TRUNCATE;
	int rc = p->real->pMethods->xTruncate(p->real, size);
	if (rc == SQLITE_OK && p->st) {
		struct pl_write *w = calloc(1, sizeof(*w));
		w->off = size;
		w->len = -1;
		*p->st->tail = w;
		p->st->tail = &w->next;
	}
	return rc;
}

/* The model decides what is durable, so the real fsync is skipped. */
static int pl_sync(sqlite3_file *f, int flags)
{
	struct pl_file *p = (struct pl_file *)f;
	(void)flags;
	if (!p->st)
		return SQLITE_OK;
	if (pl_tick())
		return SQLITE_IOERR_FSYNC;
	for (struct pl_write *w = p->st->pend; w; w = w->next)
		img_apply(p->st, w);
	pend_free(p->st);
	return SQLITE_OK;
}

static int pl_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int pl_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}

static int pl_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}

static int pl_check_lock(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int pl_fcntl(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int pl_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int pl_devchar(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int pl_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}

static int pl_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}

static void pl_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int pl_shm_unmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static const sqlite3_io_methods pl_io = {
        .iVersion = 2, /* no xFetch: no memory-mapped I/O */
        .xClose = pl_close,
        .xRead = pl_read,
        .xWrite = pl_write,
        .xTruncate = pl_truncate,
        .xSync = pl_sync,
        .xFileSize = pl_file_size,
        .xLock = pl_lock,
        .xUnlock = pl_unlock,
        .xCheckReservedLock = pl_check_lock,
        .xFileControl = pl_fcntl,
        .xSectorSize = pl_sector,
        .xDeviceCharacteristics = pl_devchar,
        .xShmMap = pl_shm_map,
        .xShmLock = pl_shm_lock,
        .xShmBarrier = pl_shm_barrier,
        .xShmUnmap = pl_shm_unmap,
};

static int pl_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
	struct pl_file *p = (struct pl_file *)f;
	(void)vfs;
	memset(p, 0, sizeof(*p));
	p->real = (sqlite3_file *)(p + 1);
	int rc = pl_real->xOpen(pl_real, name, p->real, flags, out);
	if (rc != SQLITE_OK)
		return rc;
	if (name && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL)))
		p->st = state_get(name, p->real);
	p->base.pMethods = &pl_io;
	return SQLITE_OK;
}

/* A deletion is taken as durable at once (a simplification: after a cut
 * the file could come back, which SQLite handles as a stale WAL or a hot
 * journal). */
static int pl_delete(sqlite3_vfs *vfs, const char *name, int syncdir)
{
	(void)vfs;
	if (pl_dead)
		return SQLITE_IOERR_DELETE;
	int rc = pl_real->xDelete(pl_real, name, syncdir);
	if (rc == SQLITE_OK)
		state_drop(name);
	return rc;
}

static void pl_register(void)
{
	pl_real = sqlite3_vfs_find(NULL);
	assert_non_null(pl_real);
	pl_vfs = *pl_real;
	pl_vfs.iVersion = pl_real->iVersion;
	pl_vfs.zName = "powerloss";
	pl_vfs.szOsFile = (int)sizeof(struct pl_file) + pl_real->szOsFile;
	pl_vfs.xOpen = pl_open;
	pl_vfs.xDelete = pl_delete;
	pl_vfs.pNext = NULL;
	assert_int_equal(sqlite3_vfs_register(&pl_vfs, 0), SQLITE_OK);
}

/* After the cut and once the store's connection is closed: put every
 * file back to what survived.  mode 0: only what was synced; 1: plus a
 * random subset of the later writes (a disk reorders); 2: plus a prefix
 * of them (a disk that writes in order). */
static int pl_restore(int mode)
{
	int kept = 0;
	for (struct pl_state *st = pl_states; st; st = st->next) {
		int n = 0;
		for (struct pl_write *w = st->pend; w; w = w->next)
			n++;
		int prefix = n ? rand() % (n + 1) : 0, i = 0;
		for (struct pl_write *w = st->pend; w; w = w->next, i++) {
			if ((mode == 1 && rand() % 2) || (mode == 2 && i < prefix)) {
				img_apply(st, w);
				kept++;
			}
		}
		pend_free(st);
		FILE *fp = fopen(st->path, "wb");
		assert_non_null(fp);
		assert_int_equal(fwrite(st->img, 1, st->len, fp), st->len);
		fclose(fp);
	}
	return kept;
}

static void pl_forget(void)
{
	while (pl_states)
		state_drop(pl_states->path);
}

/* ---- the workload ---- */

static json_t *acked; /* txn_id -> the payload's n, for every success */
static int submitted, failed_submits;

struct pl_sub {
	int n;
	int called;
};

static void pl_done(void *arg, enum store_err err, const char *why, json_t *txn)
{
	struct pl_sub *s = arg;
	(void)why;
	s->called = 1;
	if (err == STORE_OK)
		json_object_set_new(acked, json_string_value(json_object_get(txn, "txn_id")),
		                    json_integer(s->n));
	else
		failed_submits++;
}

static void check_store(void)
{
	const char *id;
	json_t *n;
	sqlite3_stmt *st;

	/* integrity, through the store's own connection */
	assert_int_equal(
	        sqlite3_prepare_v2(store_sqlite(), "PRAGMA integrity_check", -1, &st, NULL),
	        SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	if (strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
		fail_msg("integrity_check: %s", sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	/* every acknowledged transaction, intact */
	json_object_foreach(acked, id, n)
	{
		json_t *t = store_get(id);
		if (!t)
			fail_msg("acknowledged transaction %s lost", id);
		json_t *p = json_object_get(t, "payload");
		assert_int_equal(json_integer_value(json_object_get(p, "n")),
		                 json_integer_value(n));
		assert_string_equal(json_string_value(json_object_get(p, "card")), "C-1");
		json_decref(t);
	}
	/* and whatever else is there is whole */
	assert_int_equal(
	        sqlite3_prepare_v2(store_sqlite(), "SELECT id FROM transactions", -1, &st, NULL),
	        SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *t = store_get((const char *)sqlite3_column_text(st, 0));
		assert_non_null(t);
		assert_null(json_object_get(t, "pii_unreadable"));
		assert_true(json_is_integer(json_object_get(json_object_get(t, "payload"), "n")));
		json_decref(t);
	}
	sqlite3_finalize(st);
}

/* One loop turn of work: k submissions, and sometimes a batch with
 * reports and audit rows. */
static void turn(void)
{
	struct pl_sub subs[16];
	int k = 1 + rand() % 16;

	for (int i = 0; i < k; i++) {
		subs[i].n = submitted++;
		subs[i].called = 0;
		json_t *in = json_pack(
		        "{s:s, s:{s:i, s:s, s:s}, s:[s]}", "type", "gas.topup", "payload", "n",
		        subs[i].n, "card", "C-1", "pad",
		        "................................................................", "pii",
		        "card");
		if (rand() % 4 == 0)
			json_object_set_new(in, "flow", json_string("f"));
		store_submit(in, "ep", pl_done, &subs[i]);
		json_decref(in);
	}
	if (rand() % 3 == 0) {
		struct store_batch b;
		if (store_take_batch("ep", "K", 1 + rand() % 40, &b) == 0) {
			for (int i = 0; i < b.n; i++)
				store_report(b.ids[i],
				             rand() % 5   ? OUT_DELIVERED
				             : rand() % 2 ? OUT_RETRY
				                          : OUT_FAILED,
				             "no");
			store_batch_free(&b);
		}
	}
	if (rand() % 2)
		store_audit("card0", "cardreader.read", NULL, NULL, "ok", NULL);
	for (int i = 0; i < k; i++)
		t_spin(&subs[i].called, 1);
}

static void open_checked(void)
{
	char pattern[PATH_MAX + 64];
	glob_t g;

	assert_int_equal(store_open(t_base, &t_conf), 0);
	snprintf(pattern, sizeof(pattern), "%s.corrupt-*", t_db);
	if (glob(pattern, 0, NULL, &g) != GLOB_NOMATCH)
		fail_msg("the store was found corrupt after a power cut");
}

static void test_power_cuts(void **state)
{
	(void)state;
	const char *e;
	int cycles = (e = getenv("POWERLOSS_CYCLES")) ? atoi(e) : 150;
	unsigned seed = (e = getenv("POWERLOSS_SEED")) ? (unsigned)atol(e) : (unsigned)time(NULL);
	int mid_commit = 0, kept = 0;

	print_message("    seed %u (POWERLOSS_SEED to replay), %d cycles\n", seed, cycles);
	srand(seed);
	pl_register();
	store_set_vfs("powerloss");
	acked = json_object();
	pl_dead = 0;
	pl_countdown = 0;

	for (int c = 0; c < cycles; c++) {
		open_checked();
		check_store();
		/* a small WAL limit now and then, so that checkpoints (db file
		 * writes and syncs) are cut too */
		if (rand() % 2)
			sqlite3_wal_autocheckpoint(store_sqlite(), 4 + rand() % 20);
		pl_ops = 0;
		pl_countdown = 1 + rand() % 400;
		for (int t = 0; t < 40 && !pl_dead; t++)
			turn();
		if (!pl_dead)
			pl_dead = 1; /* between commits */
		else
			mid_commit++;
		pl_countdown = 0;
		store_close();
		kept += pl_restore(c % 3);
		pl_dead = 0;
	}
	open_checked();
	check_store();
	json_t *counts = store_counts();
	print_message("    %d submitted, %zu acknowledged and all found, %d refused by the cut; "
	              "%d cuts inside I/O, %d unsynced writes kept at cuts; %lld delivered\n",
	              submitted, json_object_size(acked), failed_submits, mid_commit, kept,
	              (long long)json_integer_value(json_object_get(counts, "delivered")));
	assert_true(json_object_size(acked) > 0);
	assert_true(mid_commit > cycles / 4);
	json_decref(counts);
	store_close();
	json_decref(acked);
	store_set_vfs(NULL);
	pl_forget();
	sqlite3_vfs_unregister(&pl_vfs);
}

/* The shim itself: an unsynced write is gone after a cut, a synced one
 * stays (otherwise the test above could pass by accident). */
static void test_shim_drops_unsynced(void **state)
{
	(void)state;
	sqlite3 *db;

	pl_register();
	pl_dead = 0;
	pl_countdown = 0;
	assert_int_equal(
	        sqlite3_open_v2(t_db, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "powerloss"),
	        SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
	                              "CREATE TABLE t (x); INSERT INTO t VALUES (1)",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	/* synchronous=OFF: committed, never synced */
	assert_int_equal(sqlite3_exec(db, "PRAGMA synchronous = OFF; INSERT INTO t VALUES (2)",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	pl_dead = 1;
	sqlite3_close(db);
	pl_restore(0);
	pl_dead = 0;
	assert_int_equal(sqlite3_open_v2(t_db, &db, SQLITE_OPEN_READWRITE, "powerloss"), SQLITE_OK);
	sqlite3_stmt *st;
	sqlite3_prepare_v2(db, "SELECT group_concat(x) FROM t", -1, &st, NULL);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "1");
	sqlite3_finalize(st);
	sqlite3_close(db);
	pl_forget();
	sqlite3_vfs_unregister(&pl_vfs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_shim_drops_unsynced, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_power_cuts, t_setup, t_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
