/* The transaction store: a SQLite outbox.
 *
 * Durability: WAL with synchronous=FULL, so COMMIT returns after fsync.
 * Group commit: store_submit, store_report and store_audit only queue their
 * work in memory; one event writes everything queued in a single BEGIN
 * IMMEDIATE ... COMMIT and only then runs the done() callbacks.  The
 * daemon initialises the loop with event_base_priority_init(base, 3): I/O
 * and timer events keep the default priority (1).  While submissions come
 * one at a time the commit event runs at that priority too, after the
 * socket callbacks of its turn; once commits carry more than one, it runs
 * at priority 2, the last one, so that the submissions the next polls of
 * the loop bring join its commit, and a priority-0 timer commits anyway
 * when a steady stream of I/O would keep it waiting longer than
 * COMMIT_MAX_WAIT_MS (see schedule()).  With a single priority the store
 * still works; the group is then whatever was queued before the event's
 * turn came.
 *
 * Reports (delivered / retry / failed) and audit rows ride the same group
 * commit: they need no acknowledgement, and a report lost to a power cut
 * only means the transaction is sent again, which the idempotency key makes
 * harmless.  If a commit fails they stay queued for the next one.
 *
 * Personal data: the payload fields listed in "pii" are stored as
 * {"$enc": base64(nonce | ciphertext | tag)}, AES-256-GCM with the
 * transaction id and the field name as additional data.  Messages logged
 * here name transactions by id and type only. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blob.h"
#include "crypt.h"
#include "jtext.h"
#include "log.h"
#include "walvfs.h"

#define TXN_ID_MAX         64
#define TYPE_MAX           64
#define FLOW_MAX           64
#define PAYLOAD_MAX        (256 * 1024)
#define BLOBS_MAX          64
#define MIME_MAX           127
#define DETAIL_MAX         1024
#define COMMIT_MAX_WAIT_MS 20
#define PURGE_INTERVAL_S   3600
#define PURGE_CHUNK        256
#define AUDIT_BACKLOG_MAX  10000
#define AUDIT_DELAY_MS     50  /* audit rows alone wait this long for company */
#define AUDIT_BATCH        256 /* ... or until this many are waiting */
#define LIST_DEFAULT       100
#define LIST_MAX           1000

/* Schema migrations: migrations[v] takes a database from user_version v to
 * v + 1, in one transaction with the version bump. */
static const char *const migrations[] = {
        /* v1 */
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
        "CREATE TABLE transactions ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " id TEXT NOT NULL UNIQUE,"
        " type TEXT NOT NULL,"
        " payload TEXT NOT NULL," /* JSON; pii fields as {\"$enc\": ...} */
        " pii TEXT,"              /* JSON array of the encrypted keys */
        " blobs TEXT,"            /* JSON [{id, mime?, size}] */
        " flow TEXT,"
        " final INTEGER NOT NULL DEFAULT 0,"
        " endpoint TEXT,"
        " state TEXT NOT NULL DEFAULT 'queued'"
        "  CHECK (state IN ('queued', 'sending', 'delivered', 'failed')),"
        " reason TEXT,"
        " attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt INTEGER," /* wall clock ms, informative */
        " created INTEGER NOT NULL,"
        " delivered INTEGER,"
        " purged INTEGER NOT NULL DEFAULT 0);"
        "CREATE INDEX txn_queue ON transactions (state, endpoint, seq);"
        "CREATE INDEX txn_state ON transactions (state, seq);"
        "CREATE INDEX txn_flow ON transactions (flow) WHERE flow IS NOT NULL;"
        "CREATE INDEX txn_created ON transactions (created);"
        "CREATE INDEX txn_purge ON transactions (delivered)"
        " WHERE state = 'delivered' AND purged = 0;"
        /* which transactions reference a blob, for the purge */
        "CREATE TABLE txn_blobs (blob TEXT NOT NULL, seq INTEGER NOT NULL,"
        " PRIMARY KEY (blob, seq)) WITHOUT ROWID;"
        /* one row per flow, so open flows are found without a scan */
        "CREATE TABLE flows (flow TEXT PRIMARY KEY, first_seq INTEGER NOT NULL,"
        " final INTEGER NOT NULL DEFAULT 0);"
        "CREATE INDEX flows_open ON flows (first_seq) WHERE final = 0;"
        "CREATE TABLE audit (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, device TEXT,"
        " cmd TEXT, flow TEXT, txn TEXT, outcome TEXT, detail TEXT);"
        "CREATE INDEX audit_ts ON audit (ts);"
        "CREATE INDEX audit_txn ON audit (txn) WHERE txn IS NOT NULL;",
        /* v2: audit.list by flow and by device */
        "CREATE INDEX audit_flow ON audit (flow) WHERE flow IS NOT NULL;"
        "CREATE INDEX audit_device ON audit (device, seq);",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_FIND,
	S_INSERT,
	S_INSERT_BLOB,
	S_FLOW,
	S_AUDIT,
	S_DELIVERED,
	S_RETRY_SENDING,
	S_FAIL_SENDING,
	S_TAKE,
	S_MARK_SENDING,
	S_FAIL_SEQ,
	S_PENDING,
	S_PENDING_NULL,
	S_GET,
	S_COUNT,
	S_OLDEST,
	S_STATE_OF,
	S_RETRY_FAILED,
	S_OPEN_FLOWS,
	S_FLOW_TXNS,
	S_PURGE_SELECT,
	S_PURGE_UPDATE,
	S_BLOB_LIVE,
	S_SEQ_OF,
	S_N
};

static const char *const stmt_sql[S_N] = {
        [S_BEGIN] = "BEGIN IMMEDIATE",
        [S_COMMIT] = "COMMIT",
        [S_ROLLBACK] = "ROLLBACK",
        [S_FIND] = "SELECT seq, type, payload, pii, state, endpoint, purged, flow, final, blobs "
                   "FROM transactions WHERE id = ?",
        [S_INSERT] = "INSERT INTO transactions (id, type, payload, pii, blobs, flow, final, "
                     "endpoint, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT (id) DO NOTHING",
        [S_INSERT_BLOB] = "INSERT OR IGNORE INTO txn_blobs (blob, seq) VALUES (?, ?)",
        [S_FLOW] = "INSERT INTO flows (flow, first_seq, final) VALUES (?, ?, ?) "
                   "ON CONFLICT (flow) DO UPDATE SET final = max(final, excluded.final)",
        [S_AUDIT] = "INSERT INTO audit (ts, device, cmd, flow, txn, outcome, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
        /* from sending, else from failed: run with each (the counts follow) */
        [S_DELIVERED] = "UPDATE transactions SET state = 'delivered', delivered = ?, "
                        "reason = NULL, next_attempt = NULL "
                        "WHERE id = ? AND state = ?",
        [S_RETRY_SENDING] = "UPDATE transactions SET state = 'queued' "
                            "WHERE id = ? AND state = 'sending' RETURNING endpoint",
        [S_FAIL_SENDING] = "UPDATE transactions SET state = 'failed', reason = ?, "
                           "next_attempt = NULL WHERE id = ? AND state = 'sending'",
        [S_TAKE] = "SELECT seq, id, type, payload, pii, blobs, flow, final, created "
                   "FROM transactions WHERE state = 'queued' AND endpoint = ? "
                   "ORDER BY seq LIMIT ?",
        [S_MARK_SENDING] = "UPDATE transactions SET state = 'sending', attempts = attempts + 1 "
                           "WHERE seq = ?",
        [S_FAIL_SEQ] = "UPDATE transactions SET state = 'failed', reason = ? WHERE seq = ?",
        [S_PENDING] = "SELECT count(*) FROM transactions WHERE state = 'queued' AND endpoint = ?",
        [S_PENDING_NULL] = "SELECT count(*) FROM transactions "
                           "WHERE state = 'queued' AND endpoint IS NULL",
        [S_GET] = "SELECT id, type, payload, pii, blobs, flow, final, endpoint, state, reason, "
                  "attempts, next_attempt, created, delivered, purged FROM transactions "
                  "WHERE id = ?",
        [S_COUNT] = "SELECT count(*) FROM transactions WHERE state = ?",
        /* the oldest queued row through txn_state (state, seq): no scan */
        [S_OLDEST] = "SELECT created FROM transactions WHERE seq = "
                     "(SELECT min(seq) FROM transactions WHERE state = 'queued')",
        [S_STATE_OF] = "SELECT state, endpoint FROM transactions WHERE id = ?",
        [S_RETRY_FAILED] = "UPDATE transactions SET state = 'queued', reason = NULL, "
                           "next_attempt = NULL WHERE id = ? AND state = 'failed'",
        [S_OPEN_FLOWS] = "SELECT flow FROM flows WHERE final = 0 ORDER BY first_seq",
        [S_FLOW_TXNS] = "SELECT id, type, created FROM transactions WHERE flow = ? "
                        "ORDER BY seq",
        [S_PURGE_SELECT] = "SELECT seq, id, payload, pii, blobs FROM transactions "
                           "WHERE state = 'delivered' AND purged = 0 AND delivered <= ? "
                           "LIMIT "
                           "256",
        [S_PURGE_UPDATE] = "UPDATE transactions SET payload = ?, purged = 1 WHERE seq = ?",
        [S_BLOB_LIVE] = "SELECT 1 FROM txn_blobs b JOIN transactions t ON t.seq = b.seq "
                        "WHERE b.blob = ? AND t.purged = 0 LIMIT 1",
        [S_SEQ_OF] = "SELECT seq FROM transactions WHERE id = ?",
};

/* The states' names, in the order of enum txn_state. */
static const char *const state_names[] = {"queued", "sending", "delivered", "failed"};

/* A submission waiting for the group commit. */
struct sub {
	struct sub *next;
	store_done_fn done;
	void *arg;
	enum store_err err;
	char why[256];
	char id[TXN_ID_MAX + 1];
	json_t *type, *payload; /* as submitted, for the idempotency check */
	char *sealed;           /* payload with personal data encrypted */
	char *pii, *blobs;      /* JSON text or NULL */
	json_t *blob_ids;
	char *flow;
	int final;
	char *endpoint;
	int64_t created;
	/* filled by the commit */
	int64_t seq;
	char state[16];
	char *res_endpoint;
	int db;       /* needs the database (no validation error) */
	int inserted; /* a new row */
	int old;      /* matched a row committed before this commit */
};

struct report {
	struct report *next;
	char *id, *reason;
	enum store_outcome o;
	int64_t ts;
	char *endpoint; /* of a row that went back to queued */
	int requeued;
	int from; /* the state the row left (enum txn_state), -1: none */
};

struct audit {
	struct audit *next;
	int64_t ts;
	char *f[6]; /* device, cmd, flow, txn, outcome, detail */
};

/* Queued transactions per endpoint, counted once and then kept up to date,
 * so that store_pending does not count a long queue on every call. */
struct pending {
	struct pending *next;
	char *endpoint;
	int64_t n;
};

static struct {
	sqlite3 *db;
	sqlite3_stmt *st[S_N];
	struct event_base *base;
	struct event *commit_ev, *guard_ev, *purge_ev;
	int scheduled, audit_armed;
	int pri_now, pri_wait; /* the commit event's priority alone / with company */
	int last_group;        /* submissions the last commit that had any carried */
	char path[PATH_MAX];
	int retention_s;
	unsigned char key[CRYPT_KEY_SIZE];
	int have_key;
	struct sub *subs, **subs_tail;
	struct report *reps, **reps_tail;
	struct audit *auds, **auds_tail;
	int naudits;
	struct pending *pending;
	/* Rows per state (enum txn_state), counted once at open and then
	 * moved by every state change the store commits, only once its
	 * COMMIT succeeded; counted 0: not known (the count failed), counted
	 * again on the next store_counts. */
	int64_t counts[4];
	int counted;
	unsigned long commits;
} S;

static char store_vfs[64];

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fmt_ts(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char when[32];

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", when, (int)(ms % 1000));
}

static json_t *ts_json(int64_t ms)
{
	char buf[40];
	fmt_ts(ms, buf, sizeof(buf));
	return json_string(buf);
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static int charset_ok(const char *s, size_t max, const char *extra, int upper)
{
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      (upper && c >= 'A' && c <= 'Z') || strchr(extra, c)))
			return 0;
	}
	return n >= 1 && n <= max;
}

static int is_blob_id(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return 0;
	return n == BLOB_ID_SIZE - 1;
}

/* A ULID: 48 bits of milliseconds and 80 random bits in Crockford base32,
 * 26 characters that sort in creation order (the random part counts up
 * within one millisecond, and the time never goes back within a run). */
static void new_id(char out[27])
{
	static const char abc[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	static uint64_t last_ms;
	static unsigned char rnd[10];
	uint64_t ms = (uint64_t)now_ms();

	if (ms <= last_ms) {
		ms = last_ms;
		for (int i = 9; i >= 0 && ++rnd[i] == 0; i--)
			;
	} else {
		/* one RAND_bytes call per 25 ids: each call costs more than
		 * the rest of the id */
		static unsigned char pool[250];
		static size_t left;
		if (!left) {
			if (RAND_bytes(pool, sizeof(pool)) != 1)
				for (size_t i = 0; i < sizeof(pool); i++)
					pool[i] = (unsigned char)random();
			left = sizeof(pool);
		}
		left -= sizeof(rnd);
		memcpy(rnd, pool + left, sizeof(rnd));
		rnd[0] &= 0x7f; /* room to count up */
		last_ms = ms;
	}
	for (int i = 9; i >= 0; i--, ms >>= 5)
		out[i] = abc[ms & 31];
	/* 80 bits, most significant first: two halves of 40 bits, 5 at a time */
	for (int h = 0; h < 2; h++) {
		uint64_t v = 0;
		for (int k = 0; k < 5; k++)
			v = v << 8 | rnd[h * 5 + k];
		for (int i = 7; i >= 0; i--, v >>= 5)
			out[10 + h * 8 + i] = abc[v & 31];
	}
	out[26] = 0;
}

static int rc_is_full(int rc)
{
	if (rc == SQLITE_FULL)
		return 1;
	if ((rc & 0xff) == SQLITE_IOERR)
		return rc == SQLITE_IOERR_WRITE || rc == SQLITE_IOERR_FSYNC ||
		       rc == SQLITE_IOERR_TRUNCATE || rc == SQLITE_IOERR_SHMSIZE ||
		       (S.db && sqlite3_system_errno(S.db) == ENOSPC);
	return 0;
}

static enum store_err db_err(int rc, char *why, size_t whylen)
{
	const char *msg = S.db ? sqlite3_errmsg(S.db) : sqlite3_errstr(rc);
	if (rc_is_full(rc)) {
		snprintf(why, whylen, "storage full: %s", msg);
		return STORE_EFULL;
	}
	snprintf(why, whylen, "storage error: %s", msg);
	return STORE_EIO;
}

static sqlite3_stmt *stmt(int i)
{
	sqlite3_stmt *st = S.st[i];
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* Run a statement that returns no rows; the SQLite result code. */
static int run(int i)
{
	int rc = sqlite3_step(S.st[i]);
	sqlite3_reset(S.st[i]);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int begin(void)
{
	stmt(S_BEGIN);
	return run(S_BEGIN);
}

static int commit(void)
{
	stmt(S_COMMIT);
	return run(S_COMMIT);
}

static void rollback(void)
{
	if (!sqlite3_get_autocommit(S.db)) {
		stmt(S_ROLLBACK);
		run(S_ROLLBACK);
	}
}

static int64_t count_of(int i)
{
	int64_t n = 0;
	if (sqlite3_step(S.st[i]) == SQLITE_ROW)
		n = sqlite3_column_int64(S.st[i], 0);
	sqlite3_reset(S.st[i]);
	return n;
}

static struct pending *pending_find(const char *endpoint)
{
	for (struct pending *p = S.pending; p; p = p->next)
		if (!strcmp(p->endpoint, endpoint))
			return p;
	return NULL;
}

static void pending_add(const char *endpoint, int64_t n)
{
	struct pending *p;
	if (endpoint && (p = pending_find(endpoint)))
		p->n += n;
}

/* n rows committed from one state to another (-1: none, a new row). */
static void counts_move(int from, int to, int64_t n)
{
	if (from >= 0)
		S.counts[from] -= n;
	if (to >= 0)
		S.counts[to] += n;
}

static void pending_forget(void)
{
	while (S.pending) {
		struct pending *p = S.pending;
		S.pending = p->next;
		free(p->endpoint);
		free(p);
	}
}

/* ---- personal data ---- */

static int field_aad(char *buf, size_t len, const char *id, const char *field)
{
	/* id NUL field: a value opens only in its own row and field */
	size_t a = strlen(id), b = strlen(field);
	if (a + b + 1 > len)
		return -1;
	memcpy(buf, id, a + 1);
	memcpy(buf + a + 1, field, b);
	return (int)(a + 1 + b);
}

static json_t *seal_value(const char *id, const char *field, json_t *v)
{
	char aad[TXN_ID_MAX + 2 + 1024];
	int aadlen = field_aad(aad, sizeof(aad), id, field);
	char *pt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	json_t *out = NULL;

	if (!pt || aadlen < 0) {
		free(pt);
		return NULL;
	}
	size_t len = strlen(pt);
	unsigned char *ct = malloc(len + CRYPT_OVERHEAD);
	if (ct && crypt_seal(S.key, aad, (size_t)aadlen, pt, len, ct) == 0) {
		char *b = crypt_b64(ct, len + CRYPT_OVERHEAD, NULL);
		if (b)
			out = json_pack("{s:s}", "$enc", b);
		free(b);
	}
	crypt_wipe(pt, len);
	free(pt);
	free(ct);
	return out;
}

static json_t *open_value(const char *id, const char *field, json_t *v)
{
	char aad[TXN_ID_MAX + 2 + 1024];
	int aadlen = field_aad(aad, sizeof(aad), id, field);
	const char *b = json_string_value(json_object_get(v, "$enc"));
	size_t len;
	json_t *out = NULL;

	if (!b || aadlen < 0 || !S.have_key)
		return NULL;
	unsigned char *ct = crypt_unb64(b, strlen(b), &len);
	if (!ct || len < CRYPT_OVERHEAD) {
		free(ct);
		return NULL;
	}
	char *pt = malloc(len - CRYPT_OVERHEAD + 1);
	if (pt && crypt_open(S.key, aad, (size_t)aadlen, ct, len, (unsigned char *)pt) == 0) {
		pt[len - CRYPT_OVERHEAD] = 0;
		out = json_loads(pt, JSON_DECODE_ANY, NULL);
		crypt_wipe(pt, len - CRYPT_OVERHEAD);
	}
	free(pt);
	free(ct);
	return out;
}

/* The stored payload text with its personal data opened.  NULL when a
 * field does not open (wrong key, no key, damaged). */
static json_t *open_payload(const char *id, const char *text, const char *pii_text)
{
	json_t *p = json_loads(text, 0, NULL), *pii = NULL;
	size_t i;
	json_t *k;

	if (!p || !json_is_object(p)) {
		json_decref(p);
		return NULL;
	}
	if (!pii_text || !(pii = json_loads(pii_text, 0, NULL)))
		return p;
	json_array_foreach(pii, i, k)
	{
		const char *f = json_string_value(k);
		json_t *v = f ? json_object_get(p, f) : NULL;
		if (!v || json_is_null(v))
			continue; /* purged */
		json_t *plain = open_value(id, f, v);
		if (!plain) {
			json_decref(p);
			p = NULL;
			break;
		}
		json_object_set_new(p, f, plain);
	}
	json_decref(pii);
	return p;
}

/* ---- the group commit ---- */

static void sub_free(struct sub *s)
{
	json_decref(s->type);
	json_decref(s->payload);
	json_decref(s->blob_ids);
	free(s->sealed);
	free(s->pii);
	free(s->blobs);
	free(s->flow);
	free(s->endpoint);
	free(s->res_endpoint);
	free(s);
}

static void report_free(struct report *r)
{
	free(r->id);
	free(r->reason);
	free(r->endpoint);
	free(r);
}

static void audit_free(struct audit *a)
{
	for (int i = 0; i < 6; i++)
		free(a->f[i]);
	free(a);
}

static void commit_cb(evutil_socket_t fd, short what, void *arg);
static void schedule(void);
static int exec(const char *sql);

/* Every device command writes an audit row: committing each on its own
 * would put a commit on the loop after every command.  Alone, they wait
 * up to AUDIT_DELAY_MS for more rows (or for a submission's commit, which
 * takes them along). */
static void schedule_audit(void)
{
	struct timeval tv = {0, AUDIT_DELAY_MS * 1000};

	if (S.naudits >= AUDIT_BATCH)
		schedule();
	if (S.scheduled || S.audit_armed || !S.guard_ev)
		return;
	S.audit_armed = 1;
	evtimer_add(S.guard_ev, &tv);
}

/* A submission that came alone (the last commit carried one) is
 * committed in this turn, after the socket callbacks already due: waiting
 * a turn for company that is not coming costs a poll on every one of
 * them.  Once commits carry more than one, the commit waits at the lowest
 * priority for the stragglers of the turn -- PostgreSQL's commit_siblings
 * rule, with the last group standing in for the active transactions. */
static void schedule(void)
{
	if (S.scheduled || !S.commit_ev)
		return;
	int company = S.last_group > 1;
	S.scheduled = 1;
	event_priority_set(S.commit_ev, company ? S.pri_wait : S.pri_now);
	event_active(S.commit_ev, EV_TIMEOUT, 0);
	if (company) {
		struct timeval tv = {0, COMMIT_MAX_WAIT_MS * 1000};
		evtimer_add(S.guard_ev, &tv);
	}
}

/* Two optional JSON texts (NULL: absent) that hold equal values; arrays
 * of strings compare as sets when set is true (pii keys). */
static int same_json(const char *a, const char *b, int set)
{
	json_t *x = a ? json_loads(a, 0, NULL) : NULL, *y = b ? json_loads(b, 0, NULL) : NULL;
	int same;

	if (!set || !json_is_array(x) || !json_is_array(y)) {
		same = json_equal(x, y) || (!x && !y);
	} else {
		size_t i, j;
		json_t *v, *w;
		same = json_array_size(x) == json_array_size(y);
		json_array_foreach(x, i, v)
		{
			int found = 0;
			json_array_foreach(y, j, w) found |= json_equal(v, w);
			same &= found;
		}
	}
	json_decref(x);
	json_decref(y);
	return same;
}

/* Is this submission the same transaction as the stored row?  Its type,
 * payload, flow, final, personal keys and blob references all count: a
 * reused id that changes any of them is another transaction. */
static int same_txn(struct sub *s, sqlite3_stmt *st)
{
	const char *type = col_text(st, 1), *payload = col_text(st, 2), *pii = col_text(st, 3);
	const char *flow = col_text(st, 7), *blobs = col_text(st, 9);
	int purged = sqlite3_column_int(st, 6);
	int same = 0;

	if (!type || strcmp(type, json_string_value(s->type)) != 0)
		return 0;
	if ((flow || s->flow) && (!flow || !s->flow || strcmp(flow, s->flow) != 0))
		return 0;
	if (!sqlite3_column_int(st, 8) != !s->final)
		return 0;
	if (!same_json(pii, s->pii, 1) || !same_json(blobs, s->blobs, 0))
		return 0;
	json_t *stored = open_payload(s->id, payload, purged ? NULL : pii);
	if (!stored)
		return 0;
	if (purged) {
		/* personal data is gone: compare the rest */
		json_t *mine = json_copy(s->payload), *keys = pii ? json_loads(pii, 0, NULL) : NULL;
		size_t i;
		json_t *k;
		json_array_foreach(keys, i, k)
		{
			json_object_del(mine, json_string_value(k));
			json_object_del(stored, json_string_value(k));
		}
		same = json_equal(mine, stored);
		json_decref(mine);
		json_decref(keys);
	} else {
		same = json_equal(s->payload, stored);
	}
	json_decref(stored);
	return same;
}

/* Insert one submission, or match it to the row with its id (s->old:
 * a row committed before this transaction).  SQLite result code; s->err
 * set for a txn_id reused with other content. */
static int apply_new(struct sub *s, int64_t *first_new);

static int apply_sub(struct sub *s, int64_t *first_new)
{
	/* the insert first: a new id (nearly every submission) costs one
	 * look-up of the id index, not two; a taken one is then read */
	sqlite3_stmt *st = stmt(S_INSERT);
	sqlite3_bind_text(st, 1, s->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, json_string_value(s->type), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, s->sealed, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, s->pii, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, s->blobs, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, s->flow, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 7, s->final);
	sqlite3_bind_text(st, 8, s->endpoint, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, s->created);
	int rc = run(S_INSERT);
	if (rc != SQLITE_OK)
		return rc;
	if (sqlite3_changes(S.db) > 0)
		return apply_new(s, first_new);

	st = stmt(S_FIND);
	sqlite3_bind_text(st, 1, s->id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (same_txn(s, st)) {
			s->seq = sqlite3_column_int64(st, 0);
			s->old = !*first_new || s->seq < *first_new;
			snprintf(s->state, sizeof(s->state), "%s", col_text(st, 4));
			s->res_endpoint = xstrdup(col_text(st, 5));
		} else {
			s->err = STORE_EINVAL;
			snprintf(s->why, sizeof(s->why),
			         "txn_id %s already used for a different transaction", s->id);
		}
		sqlite3_reset(st);
		return SQLITE_OK;
	}
	sqlite3_reset(st);
	/* not inserted and not there: a constraint other than the id's */
	return rc == SQLITE_DONE ? SQLITE_CONSTRAINT : rc;
}

/* The rows that go with a newly inserted transaction. */
static int apply_new(struct sub *s, int64_t *first_new)
{
	sqlite3_stmt *st;
	int rc;

	s->seq = sqlite3_last_insert_rowid(S.db);
	s->inserted = 1;
	if (!*first_new)
		*first_new = s->seq;
	snprintf(s->state, sizeof(s->state), "queued");
	s->res_endpoint = xstrdup(s->endpoint);

	size_t i;
	json_t *b;
	json_array_foreach(s->blob_ids, i, b)
	{
		st = stmt(S_INSERT_BLOB);
		sqlite3_bind_text(st, 1, json_string_value(b), -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, s->seq);
		if ((rc = run(S_INSERT_BLOB)) != SQLITE_OK)
			return rc;
	}
	if (s->flow) {
		st = stmt(S_FLOW);
		sqlite3_bind_text(st, 1, s->flow, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, s->seq);
		sqlite3_bind_int(st, 3, s->final);
		if ((rc = run(S_FLOW)) != SQLITE_OK)
			return rc;
	}
	return SQLITE_OK;
}

/* A report back to queued names its endpoint, so its pending count can
 * follow. */
static int apply_report(struct report *r)
{
	static const enum txn_state delivered_from[] = {TXN_SENDING, TXN_FAILED};
	sqlite3_stmt *st;
	int rc;

	/* set again on every try: a failed commit applies it once more */
	r->from = -1;
	r->requeued = 0;
	switch (r->o) {
	case OUT_DELIVERED:
		for (size_t i = 0; i < 2; i++) {
			st = stmt(S_DELIVERED);
			sqlite3_bind_int64(st, 1, r->ts);
			sqlite3_bind_text(st, 2, r->id, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, state_names[delivered_from[i]], -1, SQLITE_STATIC);
			if ((rc = run(S_DELIVERED)) != SQLITE_OK)
				return rc;
			if (sqlite3_changes(S.db) > 0) {
				r->from = (int)delivered_from[i];
				break;
			}
		}
		return SQLITE_OK;
	case OUT_RETRY:
		st = stmt(S_RETRY_SENDING);
		sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		free(r->endpoint);
		r->endpoint = NULL;
		if (rc == SQLITE_ROW) {
			r->endpoint = xstrdup(col_text(st, 0));
			r->requeued = 1;
			r->from = TXN_SENDING;
			rc = sqlite3_step(st);
		}
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? SQLITE_OK : rc;
	case OUT_FAILED:
		st = stmt(S_FAIL_SENDING);
		sqlite3_bind_text(st, 1, r->reason ? r->reason : "rejected", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, r->id, -1, SQLITE_STATIC);
		if ((rc = run(S_FAIL_SENDING)) == SQLITE_OK && sqlite3_changes(S.db) > 0)
			r->from = TXN_SENDING;
		return rc;
	}
	return SQLITE_OK;
}

static int apply_audit(struct audit *a)
{
	sqlite3_stmt *st = stmt(S_AUDIT);
	sqlite3_bind_int64(st, 1, a->ts);
	for (int i = 0; i < 6; i++)
		sqlite3_bind_text(st, i + 2, a->f[i], -1, SQLITE_STATIC);
	return run(S_AUDIT);
}

/* {"txn_id", "state", "endpoint" (null: no route)} of a committed submission, built
 * directly: json_pack parses its format and checks its keys again for
 * every submission of every commit (3.7k instructions of a 141k one). */
static json_t *sub_result(const struct sub *s)
{
	json_t *r = json_object();

	if (!r || json_object_set_new_nocheck(r, "txn_id", json_string(s->id)) < 0 ||
	    json_object_set_new_nocheck(r, "state", json_string(s->state)) < 0 ||
	    json_object_set_new_nocheck(r, "endpoint",
	                                s->res_endpoint ? json_string(s->res_endpoint)
	                                                : json_null()) < 0) {
		json_decref(r);
		return NULL;
	}
	return r;
}

/* Write everything queued in one transaction, then answer. */
static void commit_now(void)
{
	struct sub *subs = S.subs;
	struct report *reps = S.reps;
	struct audit *auds = S.auds;
	int need_db = reps || auds, rc = SQLITE_OK, lazy = 0;
	int64_t first_new = 0;
	char why[256] = "";
	enum store_err err = STORE_OK;

	S.scheduled = 0;
	S.audit_armed = 0;
	if (S.guard_ev)
		evtimer_del(S.guard_ev);
	/* the guard came first: the commit event must not stay due (at a
	 * priority the next schedule() could then not change) */
	if (S.commit_ev)
		event_del(S.commit_ev);
	S.subs = NULL;
	S.subs_tail = &S.subs;
	S.reps = NULL;
	S.reps_tail = &S.reps;
	S.auds = NULL;
	S.auds_tail = &S.auds;
	int naudits = S.naudits;
	S.naudits = 0;
	int group = 0;
	for (struct sub *s = subs; s; s = s->next)
		group += s->db;
	need_db |= group > 0;
	if (group)
		S.last_group = group;

	if (need_db && !S.db) {
		err = STORE_EIO;
		snprintf(why, sizeof(why), "storage error: the store is closed");
	} else if (need_db) {
		/* audit rows alone are not worth an fsync on the loop thread
		 * (every device command writes one): they are written to the WAL
		 * (a crash of the daemon keeps them) and reach the disk with the
		 * next durable commit or checkpoint (a power cut may lose them) */
		lazy = !reps;
		for (struct sub *s = subs; lazy && s; s = s->next)
			lazy = !s->db;
		if (lazy)
			exec("PRAGMA synchronous = NORMAL");
		rc = begin();
		/* reports first: a repeated submission answers the state after them */
		for (struct report *r = reps; rc == SQLITE_OK && r; r = r->next)
			rc = apply_report(r);
		for (struct sub *s = subs; rc == SQLITE_OK && s; s = s->next)
			if (s->db)
				rc = apply_sub(s, &first_new);
		for (struct audit *a = auds; rc == SQLITE_OK && a; a = a->next)
			rc = apply_audit(a);
		if (rc == SQLITE_OK)
			rc = commit();
		if (rc != SQLITE_OK) {
			err = db_err(rc, why, sizeof(why));
			rollback();
			log_msg(err == STORE_EFULL ? LOG_WARNING : LOG_ERR,
			        "store: commit failed, nothing of it was written: %s", why);
		} else {
			S.commits++;
		}
		if (lazy)
			exec("PRAGMA synchronous = FULL");
	}

	if (err == STORE_OK) {
		/* the pending and state counts follow what was committed */
		for (struct sub *s = subs; s; s = s->next)
			if (s->inserted) {
				pending_add(s->endpoint, 1);
				counts_move(-1, TXN_QUEUED, 1);
			}
		while (reps) {
			struct report *r = reps;
			reps = r->next;
			if (r->requeued)
				pending_add(r->endpoint, 1);
			if (r->from >= 0)
				counts_move(r->from,
				            r->o == OUT_DELIVERED ? TXN_DELIVERED
				            : r->o == OUT_FAILED  ? TXN_FAILED
				                                  : TXN_QUEUED,
				            1);
			report_free(r);
		}
		while (auds) {
			struct audit *a = auds;
			auds = a->next;
			audit_free(a);
		}
	} else {
		/* keep reports and audit rows for the next commit; nothing was
		 * queued meanwhile (done() has not run yet) */
		S.reps = reps;
		while (*S.reps_tail)
			S.reps_tail = &(*S.reps_tail)->next;
		S.auds = auds;
		S.naudits = naudits;
		while (*S.auds_tail)
			S.auds_tail = &(*S.auds_tail)->next;
	}

	/* answer, in submission order; a row that matched one committed
	 * before is durable even when this commit failed */
	while (subs) {
		struct sub *s = subs;
		subs = s->next;
		json_t *res = NULL;
		if (s->err == STORE_OK && err != STORE_OK && !s->old) {
			s->err = err;
			snprintf(s->why, sizeof(s->why), "%s", why);
		}
		if (s->err == STORE_OK)
			res = sub_result(s);
		if (s->done)
			s->done(s->arg, s->err, s->err ? s->why : NULL, res);
		json_decref(res);
		sub_free(s);
	}
}

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	commit_now();
}

/* ---- txn.submit ---- */

static int fail(struct sub *s, enum store_err e, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(struct sub *s, enum store_err e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
	s->err = e;
	return -1;
}

/* A blob reference: "<id>" or {"id", "mime"?}. */
static int check_blob(struct sub *s, json_t *v, size_t i, json_t *refs)
{
	const char *id = NULL, *mime = NULL;
	size_t size;

	if (json_is_string(v)) {
		id = json_string_value(v);
	} else if (json_is_object(v)) {
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x)
		{
			if (!strcmp(k, "id") && json_is_string(x))
				id = json_string_value(x);
			else if (!strcmp(k, "mime") && json_is_string(x))
				mime = json_string_value(x);
			else
				return fail(s, STORE_EINVAL, "blobs[%zu]: unexpected key '%.32s'",
				            i, k);
		}
	}
	if (!id || !is_blob_id(id))
		return fail(s, STORE_EINVAL,
		            "blobs[%zu]: expected a blob id (64 lowercase hex digits) or "
		            "{\"id\", \"mime\"}",
		            i);
	if (mime) {
		size_t n = strlen(mime);
		for (size_t k = 0; k < n; k++)
			if (mime[k] < 0x21 || mime[k] > 0x7e)
				n = 0;
		if (n == 0 || n > MIME_MAX || !strchr(mime, '/'))
			return fail(s, STORE_EINVAL, "blobs[%zu]: mime must look like type/subtype",
			            i);
	}
	if (!blob_exists(id) || blob_size(id, &size) < 0)
		return fail(s, STORE_EINVAL, "blobs[%zu]: no blob %s in the spool", i, id);
	json_t *ref = json_pack("{s:s}", "id", id);
	if (mime)
		json_object_set_new(ref, "mime", json_string(mime));
	json_object_set_new(ref, "size", json_integer((json_int_t)size));
	json_array_append_new(refs, ref);
	json_array_append_new(s->blob_ids, json_string(id));
	return 0;
}

static int check_blobs(struct sub *s, json_t *blobs);

static int check_submit(struct sub *s, json_t *in)
{
	json_t *type = NULL, *payload = NULL, *pii = NULL, *blobs = NULL, *flow = NULL;
	json_t *final = NULL, *txn_id = NULL, *v;
	const char *k;

	if (!json_is_object(in))
		return fail(s, STORE_EINVAL, "expected an object");
	json_object_foreach(in, k, v)
	{
		if (!strcmp(k, "type"))
			type = v;
		else if (!strcmp(k, "payload"))
			payload = v;
		else if (!strcmp(k, "pii"))
			pii = v;
		else if (!strcmp(k, "blobs"))
			blobs = v;
		else if (!strcmp(k, "flow"))
			flow = v;
		else if (!strcmp(k, "final"))
			final = v;
		else if (!strcmp(k, "txn_id"))
			txn_id = v;
		else
			return fail(
			        s, STORE_EINVAL,
			        "unknown key '%.32s' (expected type, payload, pii, blobs, flow, "
			        "final, txn_id)",
			        k);
	}
	if (!json_is_string(type) || !charset_ok(json_string_value(type), TYPE_MAX, "_.-", 0))
		return fail(s, STORE_EINVAL, "type: 1 to %d characters of [a-z0-9_.-] required",
		            TYPE_MAX);
	if (!json_is_object(payload))
		return fail(s, STORE_EINVAL, "payload: an object is required");
	if (txn_id && (!json_is_string(txn_id) ||
	               !charset_ok(json_string_value(txn_id), TXN_ID_MAX, "_.:-", 1)))
		return fail(s, STORE_EINVAL, "txn_id: 1 to %d characters of [A-Za-z0-9_.:-]",
		            TXN_ID_MAX);
	if (flow &&
	    (!json_is_string(flow) || !charset_ok(json_string_value(flow), FLOW_MAX, "_.:-", 1)))
		return fail(s, STORE_EINVAL, "flow: 1 to %d characters of [A-Za-z0-9_.:-]",
		            FLOW_MAX);
	if (final && !json_is_boolean(final))
		return fail(s, STORE_EINVAL, "final: true or false");
	if (pii && !json_is_array(pii))
		return fail(s, STORE_EINVAL, "pii: an array of payload keys");
	if (blobs && !json_is_array(blobs))
		return fail(s, STORE_EINVAL, "blobs: an array of blob ids");
	if (blobs && json_array_size(blobs) > BLOBS_MAX)
		return fail(s, STORE_EINVAL, "blobs: at most %d", BLOBS_MAX);

	size_t i;
	json_array_foreach(pii, i, v)
	{
		const char *f = json_string_value(v);
		if (!f)
			return fail(s, STORE_EINVAL, "pii[%zu]: a payload key (string)", i);
		if (!json_object_get(payload, f))
			return fail(s, STORE_EINVAL, "pii[%zu]: '%.64s' is not a key of payload", i,
			            f);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(json_string_value(json_array_get(pii, j)), f))
				return fail(s, STORE_EINVAL, "pii[%zu]: '%.64s' listed twice", i,
				            f);
	}
	if (json_array_size(pii) && !S.have_key)
		return fail(s, STORE_ENOKEY, "no encryption key configured for personal data");

	if (txn_id)
		snprintf(s->id, sizeof(s->id), "%s", json_string_value(txn_id));
	else
		new_id(s->id);
	/* references, not copies: the caller hands in over (store.h) */
	s->type = json_incref(type);
	s->payload = json_incref(payload);
	s->flow = flow ? strdup(json_string_value(flow)) : NULL;
	s->final = json_is_true(final);
	s->created = now_ms();

	/* the payload as stored: personal data sealed to this row.  Without
	 * personal data the plain text is the stored text (the common case:
	 * one serialisation per submission) */
	char *text = jtext_dumps(payload);
	size_t len = text ? strlen(text) : 0;
	if (!text)
		return fail(s, STORE_EINVAL, "payload: cannot be serialised");
	if (len > PAYLOAD_MAX || json_array_size(pii)) {
		crypt_wipe(text, len);
		free(text);
		text = NULL;
	}
	if (len > PAYLOAD_MAX)
		return fail(s, STORE_EINVAL, "payload: %zu bytes serialised, at most %d", len,
		            PAYLOAD_MAX);
	if (text) {
		s->sealed = text;
		return check_blobs(s, blobs);
	}
	json_t *stored = json_copy(payload);
	json_array_foreach(pii, i, v)
	{
		const char *f = json_string_value(v);
		json_t *sealed = seal_value(s->id, f, json_object_get(payload, f));
		if (!sealed) {
			json_decref(stored);
			return fail(s, STORE_EIO, "storage error: cannot encrypt personal data");
		}
		json_object_set_new(stored, f, sealed);
	}
	s->sealed = json_dumps(stored, JSON_COMPACT);
	json_decref(stored);
	s->pii = json_dumps(pii, JSON_COMPACT);
	if (!s->sealed || !s->pii)
		return fail(s, STORE_EIO, "storage error: out of memory");
	return check_blobs(s, blobs);
}

static int check_blobs(struct sub *s, json_t *blobs)
{
	size_t i;
	json_t *v;

	s->blob_ids = json_array();
	if (json_array_size(blobs)) {
		json_t *refs = json_array();
		json_array_foreach(blobs, i, v)
		{
			if (check_blob(s, v, i, refs) < 0) {
				json_decref(refs);
				return -1;
			}
		}
		s->blobs = json_dumps(refs, JSON_COMPACT);
		json_decref(refs);
	}
	if (json_array_size(blobs) && !s->blobs)
		return fail(s, STORE_EIO, "storage error: out of memory");
	return 0;
}

void store_submit(json_t *in, const char *endpoint, store_done_fn done, void *arg)
{
	struct sub *s = calloc(1, sizeof(*s));

	if (!s) {
		if (done)
			done(arg, STORE_EIO, "storage error: out of memory", NULL);
		return;
	}
	s->done = done;
	s->arg = arg;
	s->endpoint = xstrdup(endpoint);
	if (!S.db)
		fail(s, STORE_EIO, "storage error: the store is not open");
	else if (check_submit(s, in) == 0)
		s->db = 1;
	if (!S.commit_ev) {
		/* no loop to defer to (the store is closed) */
		if (done)
			done(arg, s->err, s->why, NULL);
		sub_free(s);
		return;
	}
	*S.subs_tail = s;
	S.subs_tail = &s->next;
	schedule();
}

void store_audit(const char *device, const char *cmd, const char *flow, const char *txn,
                 const char *outcome, const char *detail)
{
	const char *f[6] = {device, cmd, flow, txn, outcome, detail};
	struct audit *a;

	if (!S.db || S.naudits >= AUDIT_BACKLOG_MAX || !(a = calloc(1, sizeof(*a))))
		return;
	a->ts = now_ms();
	for (int i = 0; i < 6; i++)
		if (f[i])
			a->f[i] = strndup(f[i], DETAIL_MAX);
	*S.auds_tail = a;
	S.auds_tail = &a->next;
	S.naudits++;
	schedule_audit();
}

void store_report(const char *id, enum store_outcome o, const char *reason)
{
	struct report *r;

	if (!S.db || !id || !(r = calloc(1, sizeof(*r))))
		return;
	r->id = strdup(id);
	r->o = o;
	r->reason = reason ? strndup(reason, DETAIL_MAX) : NULL;
	r->ts = now_ms();
	*S.reps_tail = r;
	S.reps_tail = &r->next;
	schedule();
}

/* ---- delivery ---- */

/* One transaction of a batch body; NULL with reason when it cannot be
 * built, *transient set when that may pass (the batch is then given up,
 * not the row). */
static json_t *batch_item(sqlite3_stmt *st, char *reason, size_t rlen, int *transient)
{
	const char *id = col_text(st, 1), *blobs = col_text(st, 5), *flow = col_text(st, 6);
	int final = sqlite3_column_int(st, 7);
	json_t *payload = open_payload(id, col_text(st, 3), col_text(st, 4));

	if (!payload) {
		snprintf(reason, rlen, "%s",
		         S.have_key
		                 ? "stored personal data does not decrypt with the configured key"
		                 : "no encryption key configured to decrypt personal data");
		return NULL;
	}
	json_t *item = json_pack("{s:s, s:s, s:o}", "id", id, "type", col_text(st, 2), "created",
	                         ts_json(sqlite3_column_int64(st, 8)));
	if (flow)
		json_object_set_new(item, "flow", json_string(flow));
	if (flow || final)
		json_object_set_new(item, "final", json_boolean(final));
	json_object_set_new(item, "payload", payload);
	json_t *refs = blobs ? json_loads(blobs, 0, NULL) : NULL;
	if (json_array_size(refs)) {
		size_t i;
		json_t *ref;
		json_array_foreach(refs, i, ref)
		{
			const char *bid = json_string_value(json_object_get(ref, "id"));
			void *data;
			size_t len, b64len;
			if (!bid || blob_get(bid, &data, &len) < 0) {
				int e = bid ? errno : EINVAL;
				if (e == ENOENT || e == EINVAL)
					snprintf(reason, rlen,
					         "blob %.64s is missing from the spool",
					         bid ? bid : "?");
				else if (e == EBADMSG || e == ENOKEY)
					snprintf(reason, rlen,
					         "blob %.64s does not decrypt with the configured "
					         "key",
					         bid);
				else
					snprintf(reason, rlen, "blob %.64s cannot be read: %s", bid,
					         strerror(e));
				*transient = !(e == ENOENT || e == EINVAL || e == EBADMSG ||
				               e == ENOKEY);
				json_decref(refs);
				json_decref(item);
				return NULL;
			}
			char *b64 = crypt_b64(data, len, &b64len);
			crypt_wipe(data, len);
			free(data);
			if (!b64) {
				snprintf(reason, rlen, "out of memory");
				*transient = 1;
				json_decref(refs);
				json_decref(item);
				return NULL;
			}
			json_object_set_new(ref, "data", json_stringn_nocheck(b64, b64len));
			free(b64);
		}
		json_object_set(item, "blobs", refs);
	}
	json_decref(refs);
	return item;
}

struct taken {
	int64_t seq;
	char *reason; /* NULL: goes out; else fails here */
};

int store_take_batch(const char *endpoint, const char *kiosk_id, int max, struct store_batch *b)
{
	memset(b, 0, sizeof(*b));
	if (!S.db || !endpoint || max <= 0)
		return S.db && endpoint ? 0 : -1;

	for (;;) {
		struct taken *t = calloc((size_t)max, sizeof(*t));
		json_t *arr = json_array(), *ids = json_array();
		int n = 0, bad = 0, transient = 0, rc = begin();
		char reason[160];

		if (rc == SQLITE_OK) {
			sqlite3_stmt *st = stmt(S_TAKE);
			sqlite3_bind_text(st, 1, endpoint, -1, SQLITE_STATIC);
			sqlite3_bind_int(st, 2, max);
			while (t && (rc = sqlite3_step(st)) == SQLITE_ROW && n + bad < max) {
				json_t *item = batch_item(st, reason, sizeof(reason), &transient);
				t[n + bad].seq = sqlite3_column_int64(st, 0);
				if (transient) {
					log_err("store: transaction %s (%s): %s; batch given up "
					        "for "
					        "now",
					        col_text(st, 1), col_text(st, 2), reason);
					rc = SQLITE_IOERR_READ;
					break;
				}
				if (item) {
					json_array_append_new(arr, item);
					json_array_append_new(ids, json_string(col_text(st, 1)));
					n++;
				} else {
					log_err("store: transaction %s (%s) cannot be sent and is "
					        "marked "
					        "failed: %s",
					        col_text(st, 1), col_text(st, 2), reason);
					t[n + bad].reason = strdup(reason);
					bad++;
				}
			}
			sqlite3_reset(st);
			rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
			if (transient)
				rc = SQLITE_IOERR_READ;
		}
		for (int i = 0; rc == SQLITE_OK && t && i < n + bad; i++) {
			if (t[i].reason) {
				sqlite3_stmt *st = stmt(S_FAIL_SEQ);
				sqlite3_bind_text(st, 1, t[i].reason, -1, SQLITE_STATIC);
				sqlite3_bind_int64(st, 2, t[i].seq);
				rc = run(S_FAIL_SEQ);
			} else {
				sqlite3_bind_int64(stmt(S_MARK_SENDING), 1, t[i].seq);
				rc = run(S_MARK_SENDING);
			}
		}
		if (rc == SQLITE_OK && t)
			rc = commit();
		else if (!t)
			rc = SQLITE_NOMEM;
		if (rc == SQLITE_OK)
			S.commits++;
		for (int i = 0; t && i < n + bad; i++)
			free(t[i].reason);
		free(t);
		if (rc != SQLITE_OK) {
			char why[256];
			db_err(rc, why, sizeof(why));
			rollback();
			if (!transient)
				log_err("store: cannot take a batch for %s: %s", endpoint, why);
			json_decref(arr);
			json_decref(ids);
			return -1;
		}
		pending_add(endpoint, -(n + bad));
		counts_move(TXN_QUEUED, TXN_SENDING, n);
		counts_move(TXN_QUEUED, TXN_FAILED, bad);
		if (n == 0) {
			json_decref(arr);
			json_decref(ids);
			if (bad)
				continue; /* those failed here; look again */
			return 0;
		}
		json_t *body = json_pack("{s:s, s:o}", "kiosk", kiosk_id ? kiosk_id : "",
		                         "transactions", arr);
		b->body = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		b->ids = calloc((size_t)n, sizeof(char *));
		if (!b->body || !b->ids) {
			json_decref(ids);
			store_batch_free(b);
			return -1;
		}
		b->len = strlen(b->body);
		for (int i = 0; i < n; i++)
			b->ids[i] = strdup(json_string_value(json_array_get(ids, (size_t)i)));
		b->n = n;
		json_decref(ids);
		return 0;
	}
}

void store_batch_free(struct store_batch *b)
{
	for (int i = 0; b->ids && i < b->n; i++)
		free(b->ids[i]);
	free(b->ids);
	if (b->body)
		crypt_wipe(b->body, b->len);
	free(b->body);
	memset(b, 0, sizeof(*b));
}

int64_t store_pending(const char *endpoint)
{
	struct pending *p;

	if (!S.db)
		return 0;
	if (!endpoint) {
		stmt(S_PENDING_NULL);
		return count_of(S_PENDING_NULL);
	}
	if ((p = pending_find(endpoint)))
		return p->n;
	sqlite3_bind_text(stmt(S_PENDING), 1, endpoint, -1, SQLITE_STATIC);
	int64_t n = count_of(S_PENDING);
	if ((p = calloc(1, sizeof(*p))) && (p->endpoint = strdup(endpoint))) {
		p->n = n;
		p->next = S.pending;
		S.pending = p;
	} else {
		free(p);
	}
	return n;
}

/* ---- what the UI and admins read ---- */

#define ROW_COLS                                                                                   \
	"id, type, payload, pii, blobs, flow, final, endpoint, state, reason, attempts, "          \
	"next_attempt, created, delivered, purged"

static json_t *row_json(sqlite3_stmt *st, int full)
{
	const char *id = col_text(st, 0), *flow = col_text(st, 5), *endpoint = col_text(st, 7);
	const char *reason = col_text(st, 9);
	int purged = sqlite3_column_int(st, 14);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s?, s:I}", "txn_id", id, "type", col_text(st, 1),
	                      "state", col_text(st, 8), "endpoint", endpoint, "attempts",
	                      (json_int_t)sqlite3_column_int64(st, 10));

	if (flow)
		json_object_set_new(o, "flow", json_string(flow));
	if (flow || sqlite3_column_int(st, 6))
		json_object_set_new(o, "final", json_boolean(sqlite3_column_int(st, 6)));
	if (reason)
		json_object_set_new(o, "reason", json_string(reason));
	json_object_set_new(o, "created", ts_json(sqlite3_column_int64(st, 12)));
	if (sqlite3_column_type(st, 13) != SQLITE_NULL)
		json_object_set_new(o, "delivered", ts_json(sqlite3_column_int64(st, 13)));
	if (sqlite3_column_type(st, 11) != SQLITE_NULL)
		json_object_set_new(o, "next_attempt", ts_json(sqlite3_column_int64(st, 11)));
	if (purged)
		json_object_set_new(o, "purged", json_true());
	if (!full)
		return o;

	const char *pii = col_text(st, 3), *blobs = col_text(st, 4);
	json_t *payload = open_payload(id, col_text(st, 2), pii);
	if (!payload) {
		/* keep the row readable; its personal data shows as null */
		json_t *keys = json_loads(pii, 0, NULL), *k;
		size_t i;
		payload = json_loads(col_text(st, 2), 0, NULL);
		json_array_foreach(keys, i, k)
		        json_object_set_new(payload, json_string_value(k), json_null());
		json_decref(keys);
		json_object_set_new(o, "pii_unreadable", json_true());
		log_warnx("store: personal data of transaction %s does not decrypt", id);
	}
	json_object_set_new(o, "payload", payload ? payload : json_null());
	if (pii)
		json_object_set_new(o, "pii", json_loads(pii, 0, NULL));
	if (blobs)
		json_object_set_new(o, "blobs", json_loads(blobs, 0, NULL));
	return o;
}

json_t *store_get(const char *id)
{
	json_t *o = NULL;

	if (!S.db || !id)
		return NULL;
	sqlite3_stmt *st = stmt(S_GET);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		o = row_json(st, 1);
	sqlite3_reset(st);
	return o;
}

/* RFC 3339 ("2026-12-04T15:20:00.123Z", "...+08:00") or epoch ms. */
static int parse_time(json_t *v, int64_t *ms)
{
	if (json_is_integer(v)) {
		*ms = json_integer_value(v);
		return 0;
	}
	const char *s = json_string_value(v);
	struct tm tm = {0};
	int n = 0, frac = 0, fdigits = 0;
	if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	                 &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
		return -1;
	s += n;
	if (*s == '.')
		for (s++; *s >= '0' && *s <= '9'; s++, fdigits++)
			if (fdigits < 3)
				frac = frac * 10 + (*s - '0');
	for (; fdigits < 3; fdigits++)
		frac *= 10;
	long off = 0;
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		int hh, mm;
		if (sscanf(s + 1, "%2d:%2d", &hh, &mm) != 2)
			return -1;
		off = (hh * 60L + mm) * 60 * (*s == '+' ? 1 : -1);
		s += 6;
	} else {
		return -1;
	}
	if (*s || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*ms = ((int64_t)timegm(&tm) - off) * 1000 + frac;
	return 0;
}

static int state_ok(const char *s)
{
	for (size_t i = 0; i < 4; i++)
		if (s && !strcmp(s, state_names[i]))
			return 1;
	return 0;
}

/* Not a hot path: the statement depends on the filter, so it is prepared
 * per call. */
json_t *store_list(json_t *filter, char *why, size_t whylen)
{
	char sql[768];
	const char *k, *type = NULL, *state = NULL, *flow = NULL, *before = NULL;
	json_t *v, *out;
	int64_t since = 0, until = 0, before_seq = 0;
	int has_since = 0, has_until = 0, unfinished = 0, limit = LIST_DEFAULT;

	if (!S.db) {
		snprintf(why, whylen, "the store is not open");
		return NULL;
	}
	if (filter && !json_is_object(filter)) {
		snprintf(why, whylen, "filter: expected an object");
		return NULL;
	}
	json_object_foreach(filter, k, v)
	{
		if (!strcmp(k, "type")) {
			type = json_string_value(v);
			if (!type || !charset_ok(type, TYPE_MAX, "_.-*?[]^", 0)) {
				snprintf(why, whylen, "type: a type or a glob such as gas.*");
				return NULL;
			}
		} else if (!strcmp(k, "state")) {
			state = json_string_value(v);
			if (!state_ok(state)) {
				snprintf(why, whylen,
				         "state: one of queued, sending, delivered, failed");
				return NULL;
			}
		} else if (!strcmp(k, "since") || !strcmp(k, "until")) {
			int64_t *t = k[0] == 's' ? &since : &until;
			if (parse_time(v, t) < 0) {
				snprintf(why, whylen,
				         "%s: an RFC 3339 time (2026-12-04T15:20:00Z) or epoch ms",
				         k);
				return NULL;
			}
			*(k[0] == 's' ? &has_since : &has_until) = 1;
		} else if (!strcmp(k, "flow")) {
			flow = json_string_value(v);
			if (!flow || !charset_ok(flow, FLOW_MAX, "_.:-", 1)) {
				snprintf(why, whylen, "flow: 1 to %d characters of [A-Za-z0-9_.:-]",
				         FLOW_MAX);
				return NULL;
			}
		} else if (!strcmp(k, "unfinished")) {
			if (!json_is_boolean(v)) {
				snprintf(why, whylen, "unfinished: true or false");
				return NULL;
			}
			unfinished = json_is_true(v);
		} else if (!strcmp(k, "limit")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > LIST_MAX) {
				snprintf(why, whylen, "limit: 1 to %d", LIST_MAX);
				return NULL;
			}
			limit = (int)json_integer_value(v);
		} else if (!strcmp(k, "before")) {
			before = json_string_value(v);
			if (!before) {
				snprintf(why, whylen, "before: a txn_id (the last one of a page)");
				return NULL;
			}
			sqlite3_bind_text(stmt(S_SEQ_OF), 1, before, -1, SQLITE_STATIC);
			if (sqlite3_step(S.st[S_SEQ_OF]) == SQLITE_ROW)
				before_seq = sqlite3_column_int64(S.st[S_SEQ_OF], 0);
			sqlite3_reset(S.st[S_SEQ_OF]);
			if (!before_seq) {
				snprintf(why, whylen, "before: no transaction %.64s", before);
				return NULL;
			}
		} else {
			snprintf(
			        why, whylen,
			        "unknown filter '%.32s' (expected type, state, since, until, flow, "
			        "unfinished, limit, before)",
			        k);
			return NULL;
		}
	}
	snprintf(sql, sizeof(sql),
	         "SELECT " ROW_COLS " FROM transactions WHERE 1%s%s%s%s%s%s%s "
	         "ORDER BY seq DESC LIMIT :limit",
	         type ? " AND type GLOB :type" : "", state ? " AND state = :state" : "",
	         has_since ? " AND created >= :since" : "",
	         has_until ? " AND created < :until" : "", flow ? " AND flow = :flow" : "",
	         unfinished ? " AND flow IN (SELECT flow FROM flows WHERE final = 0)" : "",
	         before_seq ? " AND seq < :before" : "");
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(S.db, sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(why, whylen, "storage error: %s", sqlite3_errmsg(S.db));
		return NULL;
	}
#define BIND(name, call)                                                                           \
	do {                                                                                       \
		int ix_ = sqlite3_bind_parameter_index(st, name);                                  \
		if (ix_)                                                                           \
			call;                                                                      \
	} while (0)
	BIND(":type", sqlite3_bind_text(st, ix_, type, -1, SQLITE_STATIC));
	BIND(":state", sqlite3_bind_text(st, ix_, state, -1, SQLITE_STATIC));
	BIND(":since", sqlite3_bind_int64(st, ix_, since));
	BIND(":until", sqlite3_bind_int64(st, ix_, until));
	BIND(":flow", sqlite3_bind_text(st, ix_, flow, -1, SQLITE_STATIC));
	BIND(":before", sqlite3_bind_int64(st, ix_, before_seq));
	BIND(":limit", sqlite3_bind_int(st, ix_, limit));
#undef BIND
	out = json_array();
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(out, row_json(st, 0));
	if (rc != SQLITE_DONE) {
		snprintf(why, whylen, "storage error: %s", sqlite3_errmsg(S.db));
		json_decref(out);
		out = NULL;
	}
	sqlite3_finalize(st);
	return out;
}

json_t *store_audit_list(json_t *filter, char *why, size_t whylen)
{
	const char *flow = NULL, *txn = NULL, *device = NULL, *k;
	json_int_t limit = 100, before = 0;
	json_t *v, *out;
	char sql[512];
	sqlite3_stmt *st;
	int rc;

	if (S.auds) /* rows still waiting for company: the list shows them */
		commit_now();

	if (!S.db) {
		snprintf(why, whylen, "the store is closed");
		return NULL;
	}
	json_object_foreach(filter, k, v)
	{
		const char **sp = !strcmp(k, "flow")     ? &flow
		                  : !strcmp(k, "txn")    ? &txn
		                  : !strcmp(k, "device") ? &device
		                                         : NULL;
		if (sp) {
			if (!(*sp = json_string_value(v))) {
				snprintf(why, whylen, "%s: must be a string", k);
				return NULL;
			}
		} else if (!strcmp(k, "limit") || !strcmp(k, "before")) {
			json_int_t n = json_integer_value(v);
			if (!json_is_integer(v) || n < 1 || (!strcmp(k, "limit") && n > 1000)) {
				snprintf(why, whylen, "%s: must be %s", k,
				         !strcmp(k, "limit") ? "from 1 to 1000" : "a positive seq");
				return NULL;
			}
			*(!strcmp(k, "limit") ? &limit : &before) = n;
		} else {
			snprintf(why, whylen,
			         "unknown filter '%.32s' (expected flow, txn, device, limit, "
			         "before)",
			         k);
			return NULL;
		}
	}
	snprintf(
	        sql, sizeof(sql),
	        "SELECT seq, ts, device, cmd, flow, txn, outcome, detail FROM audit WHERE 1%s%s%s%s"
	        " ORDER BY seq DESC LIMIT %lld",
	        flow ? " AND flow = :flow" : "", txn ? " AND txn = :txn" : "",
	        device ? " AND device = :device" : "", before ? " AND seq < :before" : "",
	        (long long)limit);
	if (sqlite3_prepare_v2(S.db, sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(why, whylen, "storage error: %s", sqlite3_errmsg(S.db));
		return NULL;
	}
	if (flow)
		sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":flow"), flow, -1,
		                  SQLITE_STATIC);
	if (txn)
		sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":txn"), txn, -1,
		                  SQLITE_STATIC);
	if (device)
		sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":device"), device, -1,
		                  SQLITE_STATIC);
	if (before)
		sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":before"), before);
	out = json_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *row = json_pack("{s:I,s:o}", "seq", (json_int_t)sqlite3_column_int64(st, 0),
		                        "ts", ts_json(sqlite3_column_int64(st, 1)));
		static const char *const cols[] = {NULL,   NULL,  "device",  "cmd",
		                                   "flow", "txn", "outcome", "detail"};
		for (int i = 2; i < 8; i++)
			if (sqlite3_column_type(st, i) != SQLITE_NULL)
				json_object_set_new(
				        row, cols[i],
				        json_string((const char *)sqlite3_column_text(st, i)));
		json_array_append_new(out, row);
	}
	if (rc != SQLITE_DONE) {
		snprintf(why, whylen, "storage error: %s", sqlite3_errmsg(S.db));
		json_decref(out);
		out = NULL;
	}
	sqlite3_finalize(st);
	return out;
}

/* Count the rows of every state (at open, where the counts start).  0,
 * or -1 when a count failed (those read 0; S.counted stays 0). */
static int counts_load(void)
{
	int ok = 1;

	for (size_t i = 0; i < 4; i++) {
		sqlite3_stmt *st = stmt(S_COUNT);
		sqlite3_bind_text(st, 1, state_names[i], -1, SQLITE_STATIC);
		int rc = sqlite3_step(st);
		S.counts[i] = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		ok &= rc == SQLITE_ROW;
		sqlite3_reset(st);
	}
	S.counted = ok;
	if (!ok)
		log_err("store %s: cannot count the transactions: %s", S.path,
		        sqlite3_errmsg(S.db));
	return ok ? 0 : -1;
}

/* From memory: the per-state counts kept since open, and one indexed
 * lookup for the oldest queued row (none when nothing is queued). */
json_t *store_counts(void)
{
	json_t *o = json_object();

	if (!S.db)
		return o;
	if (!S.counted)
		counts_load();
	for (size_t i = 0; i < 4; i++)
		json_object_set_new(o, state_names[i], json_integer(S.counts[i]));
	sqlite3_stmt *st = stmt(S_OLDEST);
	if ((!S.counted || S.counts[TXN_QUEUED] > 0) && sqlite3_step(st) == SQLITE_ROW) {
		int64_t age = (now_ms() - sqlite3_column_int64(st, 0)) / 1000;
		json_object_set_new(o, "oldest_queued_s", json_integer(age > 0 ? age : 0));
	} else {
		json_object_set_new(o, "oldest_queued_s", json_null());
	}
	sqlite3_reset(st);
	return o;
}

int store_retry(const char *id, char *why, size_t whylen)
{
	char state[16] = "", *endpoint = NULL;
	int found = 0;

	if (!S.db || !id) {
		snprintf(why, whylen, "the store is not open");
		return -1;
	}
	sqlite3_stmt *st = stmt(S_STATE_OF);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		found = 1;
		snprintf(state, sizeof(state), "%s", col_text(st, 0));
		endpoint = xstrdup(col_text(st, 1));
	}
	sqlite3_reset(st);
	if (!found) {
		snprintf(why, whylen, "no transaction %.64s", id);
		return -1;
	}
	if (strcmp(state, "failed") != 0) {
		snprintf(why, whylen, "transaction %.64s is %s, not failed", id, state);
		free(endpoint);
		return -1;
	}
	sqlite3_bind_text(stmt(S_RETRY_FAILED), 1, id, -1, SQLITE_STATIC);
	int rc = run(S_RETRY_FAILED);
	if (rc != SQLITE_OK) {
		db_err(rc, why, whylen);
		free(endpoint);
		return -1;
	}
	S.commits++;
	if (sqlite3_changes(S.db) > 0) {
		pending_add(endpoint, 1);
		counts_move(TXN_FAILED, TXN_QUEUED, 1);
	}
	log_info("store: transaction %s queued again by an admin", id);
	free(endpoint);
	return 0;
}

json_t *store_unfinished_flows(void)
{
	json_t *out = json_array();

	if (!S.db)
		return out;
	sqlite3_stmt *st = stmt(S_OPEN_FLOWS);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *flow = col_text(st, 0);
		json_t *types = json_array(), *txns = json_array();
		int64_t first = 0, last = 0;
		sqlite3_stmt *ft = stmt(S_FLOW_TXNS);
		sqlite3_bind_text(ft, 1, flow, -1, SQLITE_STATIC);
		while (sqlite3_step(ft) == SQLITE_ROW) {
			json_t *type = json_string(col_text(ft, 1));
			size_t i;
			json_t *t;
			int seen = 0;
			json_array_foreach(types, i, t) seen |= json_equal(t, type);
			if (!seen)
				json_array_append(types, type);
			json_decref(type);
			json_array_append_new(txns, json_string(col_text(ft, 0)));
			int64_t c = sqlite3_column_int64(ft, 2);
			if (!first || c < first)
				first = c;
			if (c > last)
				last = c;
		}
		sqlite3_reset(ft);
		json_array_append_new(out, json_pack("{s:s, s:o, s:o, s:o, s:o}", "flow", flow,
		                                     "types", types, "first", ts_json(first),
		                                     "last", ts_json(last), "txns", txns));
	}
	sqlite3_reset(st);
	return out;
}

/* ---- retention ---- */

void store_purge(void)
{
	json_t *gone = json_array(); /* blobs to check once the purge is durable */
	int64_t cutoff = now_ms() - (int64_t)S.retention_s * 1000;
	int total = 0, rc = SQLITE_OK;

	if (!S.db) {
		json_decref(gone);
		return;
	}
	for (;;) {
		int n = 0;
		if ((rc = begin()) != SQLITE_OK)
			break;
		sqlite3_stmt *st = stmt(S_PURGE_SELECT);
		sqlite3_bind_int64(st, 1, cutoff);
		/* collect first: updating rows under a running SELECT on the
		 * index it walks is allowed in SQLite, but keep it simple */
		json_t *rows = json_array();
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			json_array_append_new(
			        rows, json_pack("{s:I, s:s, s:s, s:s?, s:s?}", "seq",
			                        (json_int_t)sqlite3_column_int64(st, 0), "id",
			                        col_text(st, 1), "payload", col_text(st, 2), "pii",
			                        col_text(st, 3), "blobs", col_text(st, 4)));
		}
		sqlite3_reset(st);
		rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
		size_t i;
		json_t *r;
		json_array_foreach(rows, i, r)
		{
			if (rc != SQLITE_OK)
				break;
			const char *pii = json_string_value(json_object_get(r, "pii"));
			const char *blobs = json_string_value(json_object_get(r, "blobs"));
			json_t *p = json_loads(json_string_value(json_object_get(r, "payload")), 0,
			                       NULL);
			json_t *keys = pii ? json_loads(pii, 0, NULL) : NULL, *k;
			size_t j;
			json_array_foreach(keys, j, k)
			{
				if (json_object_get(p, json_string_value(k)))
					json_object_set_new(p, json_string_value(k), json_null());
			}
			char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
			st = stmt(S_PURGE_UPDATE);
			sqlite3_bind_text(st, 1,
			                  text ? text
			                       : json_string_value(json_object_get(r, "payload")),
			                  -1, SQLITE_TRANSIENT);
			sqlite3_bind_int64(st, 2, json_integer_value(json_object_get(r, "seq")));
			rc = run(S_PURGE_UPDATE);
			free(text);
			json_decref(p);
			json_decref(keys);
			json_t *refs = blobs ? json_loads(blobs, 0, NULL) : NULL, *ref;
			json_array_foreach(refs, j, ref)
			        json_array_append(gone, json_object_get(ref, "id"));
			json_decref(refs);
			n++;
		}
		json_decref(rows);
		if (rc == SQLITE_OK)
			rc = commit();
		if (rc != SQLITE_OK) {
			rollback();
			break;
		}
		S.commits++;
		total += n;
		if (n < PURGE_CHUNK)
			break;
	}
	if (rc != SQLITE_OK) {
		char why[256];
		db_err(rc, why, sizeof(why));
		log_warnx("store: purge of personal data stopped: %s (tried again later)", why);
	}
	/* a blob goes when no transaction that still keeps its data uses it */
	size_t i;
	json_t *b;
	int removed = 0;
	json_array_foreach(gone, i, b)
	{
		const char *id = json_string_value(b);
		sqlite3_stmt *st = stmt(S_BLOB_LIVE);
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		int live = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_reset(st);
		if (!live && blob_remove(id) == 0)
			removed++;
	}
	json_decref(gone);
	if (total)
		/* old copies of the purged pages leave the WAL too */
		sqlite3_wal_checkpoint_v2(S.db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	if (total)
		log_info("store: personal data of %d delivered transaction%s erased (retention "
		         "%d s), %d blob%s removed",
		         total, total == 1 ? "" : "s", S.retention_s, removed,
		         removed == 1 ? "" : "s");
}

static void purge_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	store_purge();
}

/* ---- open, migrate, quarantine ---- */

void store_set_vfs(const char *name)
{
	snprintf(store_vfs, sizeof(store_vfs), "%s", name ? name : "");
}

unsigned long store_commit_count(void)
{
	return S.commits;
}

sqlite3 *store_sqlite(void)
{
	return S.db;
}

static int exec(const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(S.db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		log_err("store: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return rc;
}

/* The first column of the first row of sql, as text (static buffer). */
static int query_text(const char *sql, char *out, size_t len)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(S.db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	out[0] = 0;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		snprintf(out, len, "%s", col_text(st, 0) ? col_text(st, 0) : "");
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

static int is_corrupt(int rc)
{
	return (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT;
}

static void close_db(void)
{
	for (int i = 0; i < S_N; i++) {
		sqlite3_finalize(S.st[i]);
		S.st[i] = NULL;
	}
	if (S.db && sqlite3_close(S.db) != SQLITE_OK)
		log_err("store: closing the database: %s", sqlite3_errmsg(S.db));
	S.db = NULL;
}

static int migrate(int from)
{
	for (int v = from; v < SCHEMA_VERSION; v++) {
		char sql[160], ts[40];
		int rc = exec("BEGIN IMMEDIATE");
		if (rc == SQLITE_OK)
			rc = exec(migrations[v]);
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		if (rc == SQLITE_OK)
			rc = exec(sql);
		fmt_ts(now_ms(), ts, sizeof(ts));
		snprintf(sql, sizeof(sql),
		         "INSERT OR REPLACE INTO meta (key, value) VALUES ('migrated_v%d', '%s')",
		         v + 1, ts);
		if (rc == SQLITE_OK)
			rc = exec(sql);
		if (rc == SQLITE_OK)
			rc = exec("COMMIT");
		if (rc != SQLITE_OK) {
			if (!sqlite3_get_autocommit(S.db))
				exec("ROLLBACK");
			log_err("store %s: migration to schema version %d failed", S.path, v + 1);
			return rc;
		}
		log_info("store %s: schema version %d", S.path, v + 1);
	}
	return SQLITE_OK;
}

/* 0 open; -1 unusable (reported); -2 corrupt (why says how). */
static int open_db(char *why, size_t whylen)
{
	char buf[256];
	int rc;

	/* WAL commits written with one write each (walvfs.h); over an
	 * unknown base the open below fails with SQLite's own message */
	const char *vfs = walvfs_over(store_vfs);
	if (!vfs)
		vfs = store_vfs[0] ? store_vfs : NULL;
	rc = sqlite3_open_v2(S.path, &S.db,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, vfs);
	if (rc != SQLITE_OK) {
		log_err("store %s: cannot open: %s", S.path,
		        S.db ? sqlite3_errmsg(S.db) : sqlite3_errstr(rc));
		close_db();
		return -1;
	}
	sqlite3_extended_result_codes(S.db, 1);
	sqlite3_busy_timeout(S.db, 2000);
	/* the header is read here first: garbage answers SQLITE_NOTADB */
	rc = query_text("PRAGMA journal_mode = WAL", buf, sizeof(buf));
	if (rc == SQLITE_OK && strcmp(buf, "wal") != 0) {
		log_err("store %s: cannot use WAL mode (journal mode %s)", S.path, buf);
		close_db();
		return -1;
	}
	if (rc == SQLITE_OK)
		rc = exec("PRAGMA synchronous = FULL");
	if (rc == SQLITE_OK)
		/* bounded page cache (KiB): memory does not grow with the queue */
		rc = exec("PRAGMA cache_size = -1000");
	if (rc == SQLITE_OK)
		rc = exec("PRAGMA temp_store = MEMORY");
	if (rc == SQLITE_OK)
		/* purged (and superseded) values are zeroed, not left in free pages */
		rc = exec("PRAGMA secure_delete = ON");
	if (rc == SQLITE_OK)
		/* the WAL is truncated back to this after checkpoints */
		rc = exec("PRAGMA journal_size_limit = 4194304");
	if (rc == SQLITE_OK)
		rc = query_text("PRAGMA quick_check", buf, sizeof(buf));
	if (rc == SQLITE_OK && strcmp(buf, "ok") != 0) {
		snprintf(why, whylen, "quick_check: %.200s", buf);
		close_db();
		return -2;
	}
	if (is_corrupt(rc)) {
		snprintf(why, whylen, "%s", sqlite3_errmsg(S.db));
		close_db();
		return -2;
	}
	if (rc != SQLITE_OK) {
		log_err("store %s: %s", S.path, sqlite3_errmsg(S.db));
		close_db();
		return -1;
	}
	if ((rc = query_text("PRAGMA user_version", buf, sizeof(buf))) != SQLITE_OK) {
		close_db();
		return -1;
	}
	int version = atoi(buf);
	if (version > SCHEMA_VERSION || version < 0) {
		log_err("store %s: schema version %d is newer than this kioskd knows (%d); "
		        "refusing "
		        "to use it (was it written by a newer kioskd?)",
		        S.path, version, SCHEMA_VERSION);
		close_db();
		return -1;
	}
	if (migrate(version) != SQLITE_OK) {
		close_db();
		return -1;
	}
	for (int i = 0; i < S_N; i++) {
		if (sqlite3_prepare_v3(S.db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &S.st[i],
		                       NULL) != SQLITE_OK) {
			log_err("store %s: preparing \"%s\": %s", S.path, stmt_sql[i],
			        sqlite3_errmsg(S.db));
			close_db();
			return -1;
		}
	}
	return 0;
}

/* Move a corrupt database (and its WAL and shared memory) aside. */
static int quarantine(const char *reason)
{
	char dst[PATH_MAX + 64], from[PATH_MAX + 8], to[PATH_MAX + 72], ts[32], why[512];
	struct tm tm;
	time_t t = time(NULL);
	struct stat st;
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};

	/* quick_check answers several lines: keep the report one log line, so
	 * that the file names stay in the line with the priority */
	snprintf(why, sizeof(why), "%s", reason);
	for (char *p = why; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(dst, sizeof(dst), "%s.corrupt-%s", S.path, ts);
	for (int n = 1; stat(dst, &st) == 0 && n < 100; n++)
		snprintf(dst, sizeof(dst), "%s.corrupt-%s-%d", S.path, ts, n);
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(from, sizeof(from), "%s%s", S.path, sfx[i]);
		snprintf(to, sizeof(to), "%s%s", dst, sfx[i]);
		if (rename(from, to) < 0 && errno != ENOENT) {
			log_msg(LOG_CRIT, "store %s is corrupt (%s) and cannot be moved aside: %s",
			        S.path, why, strerror(errno));
			return -1;
		}
	}
	log_msg(LOG_CRIT,
	        "store %s is corrupt (%s): moved it to %s (kept for inspection); starting a "
	        "fresh, empty store",
	        S.path, why, dst);
	return 0;
}

/* Queued rows no route matched (NULL endpoint) get one if the
 * configuration now has it. */
static void reroute(const struct conf *c)
{
	sqlite3_stmt *sel, *upd;
	int n = 0;

	if (!c || !c->routes)
		return;
	if (sqlite3_prepare_v2(S.db,
	                       "SELECT seq, type FROM transactions "
	                       "WHERE state = 'queued' AND endpoint IS NULL",
	                       -1, &sel, NULL) != SQLITE_OK)
		return;
	if (sqlite3_prepare_v2(S.db, "UPDATE transactions SET endpoint = ? WHERE seq = ?", -1, &upd,
	                       NULL) != SQLITE_OK) {
		sqlite3_finalize(sel);
		return;
	}
	exec("BEGIN IMMEDIATE");
	while (sqlite3_step(sel) == SQLITE_ROW) {
		const char *ep = conf_route(c, col_text(sel, 1));
		if (!ep)
			continue;
		sqlite3_bind_text(upd, 1, ep, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(upd, 2, sqlite3_column_int64(sel, 0));
		if (sqlite3_step(upd) == SQLITE_DONE)
			n++;
		sqlite3_reset(upd);
	}
	sqlite3_finalize(sel);
	sqlite3_finalize(upd);
	exec("COMMIT");
	if (n)
		log_notice("store: %d queued transaction%s without an endpoint now routed", n,
		           n == 1 ? "" : "s");
}

int store_open(struct event_base *base, const struct conf *c)
{
	char why[512], from[PATH_MAX];
	int rc;

	if (S.db)
		store_close();
	memset(&S, 0, sizeof(S));
	S.subs_tail = &S.subs;
	S.reps_tail = &S.reps;
	S.auds_tail = &S.auds;
	S.base = base;
	S.retention_s = c->pii_retention_s;
	const char *p = c->store_path ? c->store_path : "kioskd.db";
	if (p[0] == '/')
		snprintf(S.path, sizeof(S.path), "%s", p);
	else
		snprintf(S.path, sizeof(S.path), "%s/%s", c->state_dir ? c->state_dir : ".", p);

	rc = crypt_load_key(c->store_key_file, S.key, from, sizeof(from), why, sizeof(why));
	if (rc < 0) {
		log_err("store: %s", why);
		return -1;
	}
	S.have_key = rc == 1;
	blob_set_key(S.have_key ? S.key : NULL);
	if (S.have_key)
		log_info("store: personal data is encrypted at rest (key %s)", from);
	else
		log_notice(
		        "store: no key for personal data (store key_file or the kioskd-store.key "
		        "credential); transactions with personal data are refused");

	rc = open_db(why, sizeof(why));
	if (rc == -2) {
		if (quarantine(why) < 0)
			return -1;
		rc = open_db(why, sizeof(why));
		if (rc == -2)
			log_msg(LOG_CRIT, "store %s: still corrupt after starting afresh: %s",
			        S.path, why);
	}
	if (rc < 0) {
		crypt_wipe(S.key, sizeof(S.key));
		blob_set_key(NULL);
		return -1;
	}

	/* a crash while sending: the idempotency key makes sending again safe */
	rc = exec("UPDATE transactions SET state = 'queued' WHERE state = 'sending'");
	if (rc == SQLITE_OK && sqlite3_changes(S.db) > 0)
		log_notice("store: %d transaction%s left sending by the last run queued again",
		           sqlite3_changes(S.db), sqlite3_changes(S.db) == 1 ? "" : "s");
	reroute(c);

	if (base) {
		int npri = event_base_get_npriorities(base);
		S.commit_ev = event_new(base, -1, 0, commit_cb, NULL);
		S.guard_ev = evtimer_new(base, commit_cb, NULL);
		S.purge_ev = event_new(base, -1, EV_PERSIST, purge_cb, NULL);
		if (!S.commit_ev || !S.guard_ev || !S.purge_ev) {
			store_close();
			return -1;
		}
		/* alone: the I/O events' priority (libevent's default,
		 * npri / 2); with company: the last one */
		S.pri_now = npri / 2;
		S.pri_wait = npri - 1;
		if (npri > 1)
			event_priority_set(S.guard_ev, 0);
		struct timeval hour = {PURGE_INTERVAL_S, 0};
		evtimer_add(S.purge_ev, &hour);
	}
	store_purge();
	/* after the recovery above; from here on every committed state
	 * change moves them */
	counts_load();
	log_info("store %s open (schema %d): %lld queued", S.path, SCHEMA_VERSION,
	         (long long)S.counts[TXN_QUEUED]);
	return 0;
}

void store_close(void)
{
	/* answer what is waiting: commit it first */
	if (S.subs || S.reps || S.auds)
		commit_now();
	if (S.commit_ev)
		event_free(S.commit_ev);
	if (S.guard_ev)
		event_free(S.guard_ev);
	if (S.purge_ev)
		event_free(S.purge_ev);
	S.commit_ev = S.guard_ev = S.purge_ev = NULL;
	S.scheduled = 0;
	/* leftovers of a failed last commit */
	while (S.reps) {
		struct report *r = S.reps;
		S.reps = r->next;
		report_free(r);
	}
	while (S.auds) {
		struct audit *a = S.auds;
		S.auds = a->next;
		audit_free(a);
	}
	S.reps_tail = &S.reps;
	S.auds_tail = &S.auds;
	S.naudits = 0;
	pending_forget();
	memset(S.counts, 0, sizeof(S.counts));
	S.counted = 0;
	close_db();
	crypt_wipe(S.key, sizeof(S.key));
	S.have_key = 0;
	blob_set_key(NULL);
}
