/*
 * bench_sqlite.c -- the baseline of the store rows: raw SQLite, one row per
 * commit, with the durability settings of kioskd's store.
 *
 *   bench_sqlite --db PATH --schema-from KIOSKD_DB [--fresh] [--walvfs] [--threads 1]
 *                --seconds S [--warmup S]
 *   bench_sqlite --db PATH --schema-from KIOSKD_DB [--fresh] [--walvfs] --serve SOCKET
 *                [--poll]
 *
 * Creates PATH (--fresh: removing an old one and its -wal/-shm first; else
 * rows of earlier runs stay, as they do in kioskd's database between the
 * runs of bench_submit) with the schema copied from KIOSKD_DB's
 * sqlite_master -- the transactions table with its indexes, exactly as
 * kioskd created it -- and opens it with the
 * pragmas src/store.c's open_db() uses: journal_mode=WAL,
 * synchronous=FULL, cache_size=-1000, temp_store=MEMORY,
 * secure_delete=ON, journal_size_limit=4194304.  Each of --threads threads
 * has its own connection and loops
 *
 *   BEGIN IMMEDIATE; INSERT INTO transactions (...) VALUES (...); COMMIT
 *
 * with the row kioskd's store writes for a bench_submit request: a
 * 26-character ULID-like id, type bench.topup, the same payload text,
 * endpoint NULL, created in ms.  Same counting as bench_submit: the
 * commits that finish in the last --seconds.  Prints one JSON object.
 *
 * --serve writes the same rows one per request of a bench_submit client
 * on a Unix socket, and answers each after its COMMIT: the floor of any
 * daemon that stores a submission durably behind kioskd's socket.  With
 * --poll it waits for each request in epoll_wait() (with a 1 s timeout,
 * as a loop with timers does) before reading it, the way an event loop
 * serving many clients must: the floor of an event-driven daemon.
 *
 * --walvfs opens the database over src/walvfs.c, as kioskd's store does
 * (each WAL commit handed to the file system in one write): the raw
 * baseline is SQLite's stock VFS; with --walvfs it shows what kioskd's
 * way of writing the WAL is worth on its own.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <sys/epoll.h>

#include "bench_common.h"
#include "walvfs.h"

static const char *db_path, *schema_from, *serve_path;
static int serve_poll, use_walvfs;
static double seconds, warmup;
static uint64_t t_meas, t_end;

struct worker {
	pthread_t th;
	int idx;
	long done, measured;
	uint64_t *lat;
	size_t nlat, caplat;
	char err[256];
};

static void exec_or_die(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		die("%s: %s", sql, msg ? msg : sqlite3_errmsg(db));
}

static sqlite3 *open_db(void)
{
	sqlite3 *db;
	const char *vfs = use_walvfs ? walvfs_over(NULL) : NULL;
	if (use_walvfs && !vfs)
		die("walvfs_over: cannot register the shim");
	if (sqlite3_open_v2(db_path, &db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                    vfs) != SQLITE_OK)
		die("open %s: %s", db_path, sqlite3_errmsg(db));
	sqlite3_busy_timeout(db, 10000);
	exec_or_die(db, "PRAGMA journal_mode = WAL");
	exec_or_die(db, "PRAGMA synchronous = FULL");
	exec_or_die(db, "PRAGMA cache_size = -1000");
	exec_or_die(db, "PRAGMA temp_store = MEMORY");
	exec_or_die(db, "PRAGMA secure_delete = ON");
	exec_or_die(db, "PRAGMA journal_size_limit = 4194304");
	return db;
}

/* The schema of kioskd's database, statement by statement. */
static void copy_schema(sqlite3 *dst)
{
	sqlite3 *src;
	sqlite3_stmt *st;
	int n = 0;

	if (sqlite3_prepare_v2(dst, "SELECT 1 FROM sqlite_master WHERE name = 'transactions'", -1,
	                       &st, NULL) != SQLITE_OK)
		die("%s: %s", db_path, sqlite3_errmsg(dst));
	n = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (n)
		return; /* made by an earlier run */

	if (sqlite3_open_v2(schema_from, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		die("open %s: %s", schema_from, sqlite3_errmsg(src));
	if (sqlite3_prepare_v2(src,
	                       "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL "
	                       "AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
	                       -1, &st, NULL) != SQLITE_OK)
		die("%s: %s", schema_from, sqlite3_errmsg(src));
	exec_or_die(dst, "BEGIN");
	while (sqlite3_step(st) == SQLITE_ROW) {
		exec_or_die(dst, (const char *)sqlite3_column_text(st, 0));
		n++;
	}
	exec_or_die(dst, "COMMIT");
	sqlite3_finalize(st);
	sqlite3_close(src);
	if (!n)
		die("%s has no schema (start kioskd on it first)", schema_from);
}

static long count_rows(sqlite3 *db)
{
	sqlite3_stmt *st;
	long rows = -1;
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM transactions", -1, &st, NULL) ==
	            SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		rows = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rows < 0)
		die("count: %s", sqlite3_errmsg(db));
	return rows;
}

/* 26 characters of Crockford base32: 48 bits of ms, then the worker and
 * a counter (unique across threads, in creation order within one). */
static void make_id(char out[27], int idx, uint64_t k)
{
	static const char abc[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (int i = 9; i >= 0; i--, ms >>= 5)
		out[i] = abc[ms & 31];
	uint64_t v = ((uint64_t)idx << 40) | (k & 0xffffffffffull);
	for (int i = 25; i >= 10; i--, v >>= 5)
		out[i] = abc[v & 31];
	out[26] = 0;
}

struct stmts {
	sqlite3_stmt *begin, *ins, *commit;
};

static int prepare(sqlite3 *db, struct stmts *st)
{
	return sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &st->begin, NULL) != SQLITE_OK ||
	                       sqlite3_prepare_v2(db,
	                                          "INSERT INTO transactions (id, type, payload, "
	                                          "pii, blobs, flow, final, endpoint, created) "
	                                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
	                                          -1, &st->ins, NULL) != SQLITE_OK ||
	                       sqlite3_prepare_v2(db, "COMMIT", -1, &st->commit, NULL) != SQLITE_OK
	               ? -1
	               : 0;
}

static void finalize(struct stmts *st)
{
	sqlite3_finalize(st->begin);
	sqlite3_finalize(st->ins);
	sqlite3_finalize(st->commit);
}

/* Row k of writer idx in one transaction of its own: SQLITE_DONE when
 * committed. */
static int insert_row(struct stmts *st, int idx, uint64_t k)
{
	char id[27], payload[128];
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	make_id(id, idx, k);
	snprintf(payload, sizeof(payload),
	         "{\"card\":\"8860012345\",\"amount_fen\":5000,\"order\":\"P-%08llu\"}",
	         (unsigned long long)(k * 64 + (uint64_t)idx));
	int rc = sqlite3_step(st->begin);
	sqlite3_reset(st->begin);
	if (rc == SQLITE_DONE) {
		sqlite3_bind_text(st->ins, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st->ins, 2, "bench.topup", -1, SQLITE_STATIC);
		sqlite3_bind_text(st->ins, 3, payload, -1, SQLITE_STATIC);
		for (int i = 4; i <= 6; i++)
			sqlite3_bind_null(st->ins, i);
		sqlite3_bind_int(st->ins, 7, 0);
		sqlite3_bind_null(st->ins, 8);
		sqlite3_bind_int64(st->ins, 9, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
		rc = sqlite3_step(st->ins);
		sqlite3_reset(st->ins);
	}
	if (rc == SQLITE_DONE) {
		rc = sqlite3_step(st->commit);
		sqlite3_reset(st->commit);
	}
	return rc;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	sqlite3 *db = open_db();
	struct stmts st;

	if (prepare(db, &st) < 0) {
		snprintf(w->err, sizeof(w->err), "prepare: %s", sqlite3_errmsg(db));
		return NULL;
	}
	for (uint64_t k = 0;; k++) {
		uint64_t t0 = now_ns();
		if (t0 >= t_end)
			break;
		if (insert_row(&st, w->idx, k) != SQLITE_DONE) {
			snprintf(w->err, sizeof(w->err), "row %llu: %s", (unsigned long long)k,
			         sqlite3_errmsg(db));
			break;
		}
		uint64_t t1 = now_ns();
		w->done++;
		if (t1 >= t_meas && t1 <= t_end) {
			if (w->nlat == w->caplat) {
				uint64_t *bigger;
				w->caplat = w->caplat ? w->caplat * 2 : 16384;
				if (!(bigger = realloc(w->lat, w->caplat * sizeof(*w->lat))))
					die("out of memory");
				w->lat = bigger;
			}
			w->lat[w->nlat++] = t1 - t0;
			w->measured++;
		}
	}
	finalize(&st);
	sqlite3_close(db);
	return NULL;
}

/* --serve: the same rows, one per request line of a single client on a
 * Unix socket, committed before the reply {"id":N,"ok":true} -- raw
 * SQLite behind the hop kioskd's clients make, with nothing else (no
 * JSON parsing, no event loop).  The socket appears under its name only
 * once it listens.  Ends when the client closes; prints the count. */
static void serve(sqlite3 *db, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char tmp[sizeof(sun.sun_path)];
	static struct linebuf lb;
	struct stmts st;
	long served = 0;
	size_t n;

	if (snprintf(tmp, sizeof(tmp), "%s.new", path) >= (int)sizeof(tmp))
		die("socket path too long: %s", path);
	memcpy(sun.sun_path, tmp, strlen(tmp) + 1);
	unlink(tmp);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(lfd, 1) < 0 ||
	    rename(tmp, path) < 0)
		die("listen on %s: %s", path, strerror(errno));
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		die("accept: %s", strerror(errno));
	close(lfd);
	unlink(path);
	if (prepare(db, &st) < 0)
		die("prepare: %s", sqlite3_errmsg(db));
	int ep = -1;
	if (serve_poll) {
		struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
		if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0 ||
		    fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
			die("epoll: %s", strerror(errno));
	}
	for (;;) {
		char *line, reply[64];
		while (!(line = lb_next(&lb, &n))) {
			struct epoll_event e;
			if (ep >= 0 && epoll_wait(ep, &e, 1, 1000) < 0 && errno != EINTR)
				die("epoll_wait: %s", strerror(errno));
			if (lb_fill(&lb, fd) == 0)
				goto done;
		}
		if (insert_row(&st, 0, (uint64_t)served) != SQLITE_DONE)
			die("row %ld: %s", served, sqlite3_errmsg(db));
		served++;
		int len = snprintf(reply, sizeof(reply), "{\"id\":%lld,\"ok\":true}\n",
		                   field_int(line, "id"));
		write_all(fd, reply, (size_t)len);
	}
done:
	if (ep >= 0)
		close(ep);
	finalize(&st);
	close(fd);
	printf("{\"served\":%ld}\n", served);
}

int main(int argc, char **argv)
{
	long threads = 1;
	int fresh = 0;
	char path[4096];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--db") && i + 1 < argc)
			db_path = argv[++i];
		else if (!strcmp(argv[i], "--schema-from") && i + 1 < argc)
			schema_from = argv[++i];
		else if (!strcmp(argv[i], "--fresh"))
			fresh = 1;
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = arg_long(argv[++i], "--threads", 1);
		else if (!strcmp(argv[i], "--serve") && i + 1 < argc)
			serve_path = argv[++i];
		else if (!strcmp(argv[i], "--poll"))
			serve_poll = 1;
		else if (!strcmp(argv[i], "--walvfs"))
			use_walvfs = 1;
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = arg_double(argv[++i], "--seconds");
		else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
			warmup = arg_double(argv[++i], "--warmup");
		else
			die("usage: bench_sqlite --db PATH --schema-from KIOSKD_DB [--fresh] "
			    "[--walvfs] {[--threads N] --seconds S [--warmup S] | --serve SOCKET "
			    "[--poll]}");
	}
	if (serve_poll && !serve_path)
		die("--poll goes with --serve");
	if (!db_path || !schema_from || (seconds <= 0 && !serve_path))
		die("--db, --schema-from and --seconds (or --serve) are required");
	if (threads > 64)
		die("--threads: at most 64");

	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; fresh && i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", db_path, sfx[i]);
		if (unlink(path) < 0 && errno != ENOENT)
			die("unlink %s: %s", path, strerror(errno));
	}
	sqlite3 *db = open_db();
	copy_schema(db);
	long before = count_rows(db);
	if (serve_path) {
		serve(db, serve_path);
		sqlite3_close(db);
		return 0;
	}

	struct worker *w = calloc((size_t)threads, sizeof(*w));
	if (!w)
		die("out of memory");
	uint64_t t_start = now_ns();
	t_meas = t_start + (uint64_t)(warmup * 1e9);
	t_end = t_meas + (uint64_t)(seconds * 1e9);
	for (long i = 0; i < threads; i++) {
		w[i].idx = (int)i;
		if (pthread_create(&w[i].th, NULL, run, &w[i]) != 0)
			die("pthread_create failed");
	}
	long done = 0, measured = 0;
	size_t nlat = 0;
	for (long i = 0; i < threads; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].err[0])
			die("thread %ld: %s", i, w[i].err);
		done += w[i].done;
		measured += w[i].measured;
		nlat += w[i].nlat;
	}
	double wall = (double)(now_ns() - t_start) / 1e9;
	uint64_t *lat = malloc((nlat ? nlat : 1) * sizeof(*lat));
	if (!lat)
		die("out of memory");
	nlat = 0;
	for (long i = 0; i < threads; i++) {
		memcpy(lat + nlat, w[i].lat, w[i].nlat * sizeof(*lat));
		nlat += w[i].nlat;
		free(w[i].lat);
	}

	/* the rows are all there: a check that the loop wrote what it counted */
	long rows = count_rows(db) - before;
	sqlite3_close(db);
	if (rows != done)
		die("%ld rows added to the table, %ld commits counted", rows, done);

	printf("{\"threads\":%ld,\"done\":%ld,\"measured\":%ld,\"window_s\":%.3f,"
	       "\"wall_s\":%.3f,\"rate\":%.1f,\"sqlite\":\"%s\",",
	       threads, done, measured, seconds, wall, (double)measured / seconds,
	       sqlite3_libversion());
	print_stats(stdout, "latency", lat, nlat);
	printf("}\n");
	free(lat);
	free(w);
	return 0;
}
