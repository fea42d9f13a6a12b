/* Transactions, the outbox and the online path: txn.*, queue.*, sync.*
 * and remote.call.  The store and sync do the work; this file turns
 * requests into their calls and their answers into replies. */
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "ipc.h"
#include "log.h"
#include "proto.h"
#include "req.h"
#include "store.h"
#include "sync.h"

#define REMOTE_DEFAULT_TIMEOUT_MS 15000

static const char *store_code(enum store_err e)
{
	switch (e) {
	case STORE_OK:
		return NULL;
	case STORE_EFULL:
		return "storage_full";
	case STORE_EINVAL:
		return "bad_request";
	case STORE_ENOKEY:
	case STORE_EIO:
		break;
	}
	return "storage_error";
}

static void submit_done(void *arg, enum store_err err, const char *why, json_t *txn)
{
	struct kiosk_req *r = arg;

	if (err == STORE_OK) {
		const char *ep = json_string_value(json_object_get(txn, "endpoint"));
		req_reply(r, json_incref(txn));
		if (ep)
			sync_kick(ep);
	} else {
		req_fail(r, store_code(err), "txn.submit: %s", why ? why : "store error");
	}
	req_release(r);
}

void cmd_txn_submit(struct call *c)
{
	const char *type = json_string_value(json_object_get(c->args, "type"));
	struct kiosk_req *r;

	if (!type) {
		reply_error(c->s, c->id, "bad_request", "txn.submit: 'type' must be a string");
		return;
	}
	if (!(r = req_new(c->s, c->id, c->cmd, c->args, 0))) {
		reply_error(c->s, c->id, "internal", "out of memory");
		return;
	}
	/* durable before acknowledged: the reply waits for the group commit;
	 * a client that leaves meanwhile changes nothing about the commit */
	req_hold(r, NULL, NULL);
	store_submit(c->args, conf_route(daemon_conf, type), submit_done, r);
}

static const char *txn_id_arg(struct call *c)
{
	const char *id = json_string_value(json_object_get(c->args, "txn_id"));
	if (!id)
		reply_error(c->s, c->id, "bad_request", "%s: 'txn_id' must be a string", c->cmd);
	return id;
}

void cmd_txn_get(struct call *c)
{
	const char *id = txn_id_arg(c);
	json_t *t;

	if (!id)
		return;
	if (!(t = store_get(id)))
		reply_error(c->s, c->id, "bad_request", "txn.get: no transaction '%.64s'", id);
	else
		reply_ok(c->s, c->id, t);
}

/* {"transactions": [...], "next": id or null}: a full page means there may
 * be more, and its last id is where the next page starts ("before"). */
static json_t *list_result(json_t *l, json_t *args)
{
	json_t *lim = json_object_get(args, "limit");
	size_t limit = json_is_integer(lim) ? (size_t)json_integer_value(lim) : 100;
	size_t n = json_array_size(l);
	json_t *next = json_null();

	if (n && n == limit)
		next = json_incref(json_object_get(json_array_get(l, n - 1), "txn_id"));
	return json_pack("{s:o,s:o}", "transactions", l, "next", next);
}

void cmd_txn_list(struct call *c)
{
	char why[256];
	json_t *l = store_list(c->args, why, sizeof(why));

	if (!l)
		reply_error(c->s, c->id, "bad_request", "%s: %s", c->cmd, why);
	else
		reply_ok(c->s, c->id, list_result(l, c->args));
}

void cmd_queue_list(struct call *c)
{
	char why[256];
	json_t *l = store_list(c->args, why, sizeof(why));

	if (!l) {
		reply_error(c->s, c->id, "bad_request", "%s: %s", c->cmd, why);
		return;
	}
	l = list_result(l, c->args);
	json_object_set_new(l, "counts", store_counts());
	reply_ok(c->s, c->id, l);
}

void cmd_queue_retry(struct call *c)
{
	const char *id = txn_id_arg(c);
	char why[256];
	json_t *t;

	if (!id)
		return;
	if (store_retry(id, why, sizeof(why)) < 0) {
		reply_error(c->s, c->id, "bad_request", "queue.retry: %s", why);
		return;
	}
	t = store_get(id);
	const char *ep = json_string_value(json_object_get(t, "endpoint"));
	if (ep)
		sync_kick(ep);
	reply_ok(c->s, c->id, json_pack("{s:s,s:s}", "txn_id", id, "state", "queued"));
	json_decref(t);
}

void cmd_audit_list(struct call *c)
{
	char why[256];
	json_t *l = store_audit_list(c->args, why, sizeof(why));

	if (!l)
		reply_error(c->s, c->id, "bad_request", "%s: %s", c->cmd, why);
	else
		reply_ok(c->s, c->id, json_pack("{s:o}", "entries", l));
}

void cmd_sync_status(struct call *c)
{
	reply_ok(c->s, c->id,
	         json_pack("{s:o,s:o}", "endpoints", sync_endpoints_json(), "queue",
	                   store_counts()));
}

void cmd_sync_kick(struct call *c)
{
	sync_kick_all();
	reply_ok(c->s, c->id, json_pack("{s:b}", "kicked", 1));
}

static void remote_done(void *arg, const char *code, const char *why, json_t *result)
{
	struct kiosk_req *r = arg;

	if (code)
		req_fail(r, code, "remote.call: %s", why ? why : code);
	else
		req_reply(r, json_incref(result));
	req_release(r);
}

static void remote_abort(struct kiosk_req *r, const char *code)
{
	remote_call_cancel(r->owner);
	if (!strcmp(code, "timeout"))
		req_fail(r, code, "remote.call: no answer within %d ms", r->timeout_ms);
	else
		req_fail(r, code, "remote.call: cancelled");
	req_release(r);
}

void cmd_remote_call(struct call *c)
{
	const char *ep = json_string_value(json_object_get(c->args, "endpoint"));
	const char *path = json_string_value(json_object_get(c->args, "path"));
	const char *key = json_string_value(json_object_get(c->args, "idempotency_key"));
	json_t *body = json_object_get(c->args, "body");
	int timeout = c->timeout_ms ? c->timeout_ms : REMOTE_DEFAULT_TIMEOUT_MS;
	struct kiosk_req *r;
	struct remote_call *rc;

	if (!ep || !path) {
		reply_error(c->s, c->id, "bad_request",
		            "remote.call: 'endpoint' and 'path' must be strings");
		return;
	}
	if (body && !json_is_object(body) && !json_is_array(body)) {
		reply_error(c->s, c->id, "bad_request", "remote.call: 'body' must be JSON object");
		return;
	}
	if (!(r = req_new(c->s, c->id, c->cmd, c->args, timeout))) {
		reply_error(c->s, c->id, "internal", "out of memory");
		return;
	}
	req_hold(r, NULL, NULL);
	rc = remote_call_start(ep, path, body, key, timeout, remote_done, r);
	if (rc && r->held) {
		r->abort = remote_abort; /* client gone or cancel: stop the transfer */
		r->owner = rc;
	}
}
