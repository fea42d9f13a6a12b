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
 * started.  Rows left in `sending` by a crash go back to `queued`.  0 or -1. */
int store_open(struct event_base *base, const struct conf *c);
void store_close(void);

typedef void (*store_done_fn)(void *arg, enum store_err err, const char *why, json_t *txn);

/* txn.submit.  in = {"type", "payload", "pii"?, "blobs"?, "flow"?, "final"?,
 * "txn_id"?}: the store checks it and answers STORE_EINVAL with why.  The
 * row joins the group commit of this loop turn; done() runs once it is
 * durable (err 0, txn = {"txn_id", "state", "endpoint"}) or when the commit
 * failed.  endpoint is the route's target, NULL when no route matches. */
void store_submit(json_t *in, const char *endpoint, store_done_fn done, void *arg);

/* One transaction as the UI sees it (personal data decrypted unless
 * purged), or NULL. */
json_t *store_get(const char *id);
/* txn.list: filter {"type"? glob, "state"?, "since"?, "until"? (RFC 3339
 * or epoch ms), "flow"?, "unfinished"? bool, "limit"? (default 100, max
 * 1000), "before"? (id, for paging)}.  NULL with why on a bad filter. */
json_t *store_list(json_t *filter, char *why, size_t whylen);
/* {"queued": n, "sending": n, "delivered": n, "failed": n,
 *  "oldest_queued_s": seconds or null} */
json_t *store_counts(void);
/* queue.retry: a failed transaction goes back to queued.  0, or -1 with
 * why (no such id, not failed). */
int store_retry(const char *id, char *why, size_t whylen);
/* Open flows: flows with no final transaction, oldest first:
 * [{"flow", "types": [...], "first": ts, "last": ts, "txns": [ids]}] */
json_t *store_unfinished_flows(void);

/* Audit journal: one row per device command and its outcome. */
void store_audit(const char *device, const char *cmd, const char *flow, const char *txn,
                 const char *outcome, const char *detail);

/* ---- the narrow interface sync uses (docs/delivery.md) ---- */
struct store_batch {
	int n;
	char **ids;
	char *body; /* the JSON body to POST (personal data decrypted) */
	size_t len;
};
/* Take up to max queued transactions routed to endpoint, mark them
 * sending and build the request body.  0 with b->n == 0 when there is
 * nothing to send.  Free with store_batch_free. */
int store_take_batch(const char *endpoint, const char *kiosk_id, int max, struct store_batch *b);
void store_batch_free(struct store_batch *b);
enum store_outcome { OUT_DELIVERED, OUT_RETRY, OUT_FAILED };
/* Report the outcome of one transaction of a batch (reason for FAILED). */
void store_report(const char *id, enum store_outcome o, const char *reason);
/* Number of queued transactions for endpoint (to know whether to send). */
int64_t store_pending(const char *endpoint);

/* Erase personal data of transactions delivered more than retention ago;
 * runs from a timer inside the store too. */
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
