/* The transaction store: a SQLite outbox (WAL, synchronous=FULL) with
 * group commit, flows, an audit journal of device commands, and personal
 * data encrypted at rest.  See docs/delivery.md for the guarantees. */
#ifndef KIOSKD_STORE_H
#define KIOSKD_STORE_H

#include <event2/event.h>
#include <jansson.h>
#include <stdint.h>

#include "conf.h"

enum txn_state { TXN_QUEUED, TXN_SENDING, TXN_DELIVERED, TXN_FAILED };

/* Error codes of the store, mapped to the protocol's storage_full /
 * storage_error / bad_request by the caller. */
enum store_err { STORE_OK = 0, STORE_EFULL, STORE_EIO, STORE_EINVAL, STORE_ENOKEY };

/* Open (create, migrate) <state_dir>/<store path>.  A corrupt database is
 * renamed aside (kept for inspection), reported loudly, and a fresh one is
 * started.  Rows left in `sending` by a crash go back to `queued`.  0 or -1
 * (a schema version newer than this kioskd, a store key that cannot be
 * read, a database that cannot be opened).  Loads the key for personal
 * data (store key_file, else $CREDENTIALS_DIRECTORY/kioskd-store.key) and
 * hands it to the blob spool.
 *
 * The loop must have been given priorities first, as the daemon does:
 * event_base_priority_init(base, 3), I/O and timers at the default (1).
 * A submission that comes alone is committed from an event at that
 * priority, after the socket callbacks of its turn.  Once commits carry
 * more than one, the group commit runs from an event at the lowest
 * priority (2), after every socket callback of the turns that follow
 * without a pause; a priority-0 timer commits anyway when a busy loop
 * keeps it waiting 20 ms. */
int store_open(struct event_base *base, const struct conf *c);
void store_close(void);

typedef void (*store_done_fn)(void *arg, enum store_err err, const char *why, json_t *txn);

/* txn.submit.  in = {"type", "payload", "pii"?, "blobs"?, "flow"?, "final"?,
 * "txn_id"?}: the store checks it and answers STORE_EINVAL with why.  The
 * row joins the group commit of this loop turn; done() runs once it is
 * durable (err 0, txn = {"txn_id", "state", "endpoint"}) or when the commit
 * failed (STORE_EFULL "storage full: ...", STORE_EIO).  endpoint is the
 * route's target, NULL when no route matches.  done() always runs later,
 * from the loop, never inside store_submit (except when the store is not
 * open: STORE_EIO at once).  The store keeps references to values of in
 * until done() ran: do not modify in after the call (dropping your own
 * reference is fine).
 *
 * blobs: ids, or {"id", "mime"?}; stored as [{"id", "mime"?, "size"}].
 * A txn_id seen before with the same type, payload, flow, final, pii and
 * blobs answers the existing row and its current state (idempotent); with
 * anything different, STORE_EINVAL "txn_id ... already used for a
 * different transaction".  pii with no key loaded: STORE_ENOKEY. */
void store_submit(json_t *in, const char *endpoint, store_done_fn done, void *arg);

/* One transaction as the UI sees it (personal data decrypted unless
 * purged), or NULL: {"txn_id", "type", "state", "endpoint"?, "attempts",
 * "flow"?, "final"?, "reason"?, "created", "delivered"?, "next_attempt"?,
 * "purged"? true, "payload", "pii"?, "blobs"?}; times in RFC 3339 UTC with
 * milliseconds.  Personal data that does not decrypt (another key) shows
 * as null with "pii_unreadable": true. */
json_t *store_get(const char *id);
/* txn.list: filter {"type"? glob, "state"?, "since"?, "until"? (RFC 3339
 * or epoch ms, on created; until is exclusive), "flow"?, "unfinished"?
 * bool (rows of open flows), "limit"? (default 100, max 1000), "before"?
 * (id, for paging)}.  NULL with why on a bad filter.  An array, newest
 * first, of summaries: store_get's fields without payload, pii and blobs
 * (a page of 1000 full payloads could be 256 MB); the last id of a page is
 * the next page's before. */
json_t *store_list(json_t *filter, char *why, size_t whylen);
/* {"queued": n, "sending": n, "delivered": n, "failed": n,
 *  "oldest_queued_s": seconds or null}.  O(1): the counts are kept in
 *  memory and follow every committed state change, so a UI may poll it. */
json_t *store_counts(void);
/* queue.retry: a failed transaction goes back to queued.  0, or -1 with
 * why (no such id, not failed). */
int store_retry(const char *id, char *why, size_t whylen);
/* Open flows: flows with no final transaction, oldest first:
 * [{"flow", "types": [...], "first": ts, "last": ts, "txns": [ids]}] */
json_t *store_unfinished_flows(void);

/* Audit journal: one row per device command and its outcome.  Written
 * with the next group commit (this turn's, started if need be); strings
 * are copied, detail cut at 1 KiB.  Never personal data in detail.  If a
 * commit fails (disk full) the rows wait for the next one, up to 10,000. */
void store_audit(const char *device, const char *cmd, const char *flow, const char *txn,
                 const char *outcome, const char *detail);

/* audit.list: the journal, newest first; filter {"flow"?, "txn"?,
 * "device"?, "limit"? (default 100, max 1000), "before"? (a seq)}.
 * [{"seq", "ts", "device", "cmd", "flow"?, "txn"?, "outcome", "detail"?}];
 * NULL with why on a bad filter. */
json_t *store_audit_list(json_t *filter, char *why, size_t whylen);

/* ---- the narrow interface sync uses (docs/delivery.md) ---- */
struct store_batch {
	int n;
	char **ids;
	char *body; /* the JSON body to POST (personal data decrypted) */
	size_t len;
};
/* Take up to max queued transactions routed to endpoint, oldest first,
 * mark them sending (attempts + 1, one transaction) and build the request
 * body of docs/delivery.md (personal data decrypted, blobs read from the
 * spool as base64).  0 with b->n == 0 when there is nothing to send; -1 on
 * a storage error.  A row that cannot be built (its blob is gone, its
 * personal data does not decrypt) is marked failed with the reason, so it
 * cannot block the queue.  Free with store_batch_free. */
int store_take_batch(const char *endpoint, const char *kiosk_id, int max, struct store_batch *b);
void store_batch_free(struct store_batch *b);
enum store_outcome { OUT_DELIVERED, OUT_RETRY, OUT_FAILED };
/* Report the outcome of one transaction of a batch (reason for FAILED).
 * Applied with the next group commit, like the audit: a report lost to a
 * crash only means the transaction is sent again (same id). */
void store_report(const char *id, enum store_outcome o, const char *reason);
/* Number of queued transactions for endpoint (to know whether to send);
 * NULL: those no route matched.  Counted once, then kept in memory. */
int64_t store_pending(const char *endpoint);

/* Erase personal data of transactions delivered more than retention ago
 * (pii fields set to null, purged), delete the blobs only purged
 * transactions use, and checkpoint so no old copy stays in the WAL; runs
 * at open and hourly from a timer inside the store too. */
void store_purge(void);

/* ---- for tests ---- */
/* Open databases through this registered SQLite VFS (NULL or "": the
 * default one). */
void store_set_vfs(const char *name);
/* Write transactions committed since store_open (group commits, batches
 * taken, retries, purges). */
unsigned long store_commit_count(void);
/* The store's own connection (to set limits such as max_page_count, or to
 * look at rows); NULL when closed. */
struct sqlite3 *store_sqlite(void);

#endif
