#include "proto.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "devices.h"
#include "events.h"
#include "ipc.h"
#include "jtext.h"
#include "log.h"
#include "req.h"
#include "schema.h"
#include "store.h"
#include "sync.h"

#define MAX_TIMEOUT_MS 86400000
#define MAX_TOPICS     32

static void cmd_hello(struct call *c)
{
	reply_ok(c->s, c->id,
	         json_pack("{s:i,s:s,s:s,s:s,s:i}", "protocol", PROTOCOL_VERSION, "daemon",
	                   "kioskd", "version", KIOSKD_VERSION, "role",
	                   session_role(c->s) == ROLE_ADMIN ? "admin" : "ui", "session",
	                   (int)session_id(c->s)));
}

static void cmd_status(struct call *c)
{
	json_t *devs = devices_json(0);
	size_t i;
	json_t *d;

	/* status is the summary: drop the per-device capability lists */
	json_array_foreach(devs, i, d) json_object_del(d, "capabilities");
	reply_ok(c->s, c->id,
	         json_pack("{s:{s:s,s:i,s:f,s:i,s:s,s:I},s:o,s:o,s:o,s:o}", "daemon", "version",
	                   KIOSKD_VERSION, "pid", (int)getpid(), "uptime_s", daemon_uptime(),
	                   "clients", ipc_nclients(), "config", daemon_conf->path, "events_seq",
	                   (json_int_t)events_last_seq(), "devices", devs, "device_states",
	                   devices_state_counts(), "queue", store_counts(), "endpoints",
	                   sync_endpoints_json()));
}

static void cmd_devices_list(struct call *c)
{
	reply_ok(c->s, c->id, json_pack("{s:o}", "devices", devices_json(1)));
}

static int topics_arg(struct call *c, json_t **out)
{
	json_t *t = json_object_get(c->args, "topics"), *v;
	size_t i;

	*out = t;
	if (!t)
		return 0;
	if (!json_is_array(t) || json_array_size(t) == 0 || json_array_size(t) > MAX_TOPICS) {
		reply_error(c->s, c->id, "bad_request",
		            "topics: must be an array of 1 to %d patterns", MAX_TOPICS);
		return -1;
	}
	json_array_foreach(t, i, v)
	{
		if (!json_is_string(v) || events_pattern_check(json_string_value(v)) < 0) {
			reply_error(c->s, c->id, "bad_request",
			            "topics[%zu]: a pattern is 1-64 of a-z 0-9 _ . - * ?", i);
			return -1;
		}
	}
	return 0;
}

static int has_topic(json_t *list, json_t *t)
{
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) if (json_equal(v, t)) return (int)i + 1;
	return 0;
}

static void cmd_subscribe(struct call *c)
{
	json_t *t, *mine = session_topics(c->s), *v;
	size_t i;

	if (topics_arg(c, &t) < 0)
		return;
	if (!t) {
		reply_error(c->s, c->id, "bad_request", "missing argument 'topics'");
		return;
	}
	size_t add = 0;
	json_array_foreach(t, i, v) add += !has_topic(mine, v);
	if (json_array_size(mine) + add > MAX_TOPICS) {
		reply_error(c->s, c->id, "bad_request",
		            "too many topic patterns: a session may hold %d (it has %zu)",
		            MAX_TOPICS, json_array_size(mine));
		return;
	}
	json_array_foreach(t, i, v)
	{
		if (!has_topic(mine, v))
			json_array_append(mine, v);
	}
	reply_ok(c->s, c->id, json_pack("{s:O}", "topics", mine));
	/* open flows were announced at start, before this client came: give
	 * a new flow.* subscriber what it missed */
	if (events_match(t, "flow.unfinished")) {
		json_t *flows = store_unfinished_flows(), *f;
		json_array_foreach(flows, i, f)
		        events_publish_to(c->s, "flow.unfinished", NULL, json_incref(f));
		json_decref(flows);
	}
}

static void cmd_unsubscribe(struct call *c)
{
	json_t *t, *mine = session_topics(c->s), *v;
	size_t i;
	int at;

	if (topics_arg(c, &t) < 0)
		return;
	if (!t)
		json_array_clear(mine);
	json_array_foreach(t, i, v) if ((at = has_topic(mine, v)))
	        json_array_remove(mine, (size_t)at - 1);
	reply_ok(c->s, c->id, json_pack("{s:O}", "topics", mine));
}

static void cmd_cancel(struct call *c)
{
	json_t *target = json_object_get(c->args, "target");
	struct kiosk_req *r;

	if (!json_is_integer(target) && !json_is_string(target)) {
		reply_error(c->s, c->id, "bad_request",
		            "target: must be the id of a running request");
		return;
	}
	TAILQ_FOREACH(r, session_reqs(c->s), s_entry)
	{
		if (json_equal(r->id, target) && !r->answered) {
			if (r->held && r->abort)
				r->abort(r, "cancelled");
			else
				req_fail(r, "cancelled", "%s: cancelled", r->cmd);
			reply_ok(c->s, c->id, json_pack("{s:b}", "cancelled", 1));
			return;
		}
	}
	reply_ok(c->s, c->id,
	         json_pack("{s:b,s:s}", "cancelled", 0, "reason", "no such request is running"));
}

static void cmd_reload(struct call *c)
{
	struct diag diag = {0};
	json_t *changed = json_array();

	if (daemon_reload(&diag, changed) == 0) {
		reply_ok(c->s, c->id, json_pack("{s:b,s:o}", "reloaded", 1, "changed", changed));
	} else {
		char msg[1024] = "";
		size_t n = 0;
		for (int i = 0; i < diag.n && n < sizeof(msg) - 1; i++)
			n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s%s", i ? "; " : "",
			                      diag.msgs[i]);
		reply_error(c->s, c->id, "bad_request", "configuration refused, old one kept: %s",
		            msg);
		json_decref(changed);
	}
	diag_free(&diag);
}

static void cmd_inject(struct call *c)
{
	json_t *what = json_object_get(c->args, "what"), *res;
	struct kiosk_dev *d;
	char why[256] = "";

	if (!c->device) {
		reply_error(c->s, c->id, "bad_request", "sim.inject needs \"device\"");
		return;
	}
	if (!(d = devices_find(c->device))) {
		reply_error(c->s, c->id, "unknown_device", "no device named '%.64s'", c->device);
		return;
	}
	if (!json_is_string(what)) {
		reply_error(c->s, c->id, "bad_request", "args.what: must be a string");
		return;
	}
	if (!(res = devices_inject(d, json_string_value(what), c->args, why, sizeof(why)))) {
		reply_error(c->s, c->id, "bad_request", "%s", *why ? why : "refused");
		return;
	}
	log_info("device %s: sim.inject %s", c->device, json_string_value(what));
	reply_ok(c->s, c->id, res);
}

static const struct command {
	const char *name;
	enum role role;
	void (*fn)(struct call *c);
} commands[] = {
        {"hello", ROLE_UI, cmd_hello},
        {"status", ROLE_UI, cmd_status},
        {"devices.list", ROLE_UI, cmd_devices_list},
        {"events.subscribe", ROLE_UI, cmd_subscribe},
        {"events.unsubscribe", ROLE_UI, cmd_unsubscribe},
        {"cancel", ROLE_UI, cmd_cancel},
        {"config.reload", ROLE_ADMIN, cmd_reload},
        {"sim.inject", ROLE_ADMIN, cmd_inject},
        {"txn.submit", ROLE_UI, cmd_txn_submit},
        {"txn.get", ROLE_UI, cmd_txn_get},
        {"txn.list", ROLE_UI, cmd_txn_list},
        {"queue.list", ROLE_ADMIN, cmd_queue_list},
        {"queue.retry", ROLE_ADMIN, cmd_queue_retry},
        {"audit.list", ROLE_ADMIN, cmd_audit_list},
        {"sync.status", ROLE_UI, cmd_sync_status},
        {"sync.kick", ROLE_ADMIN, cmd_sync_kick},
        {"remote.call", ROLE_UI, cmd_remote_call},
};

static void device_command(struct call *c)
{
	char cls_name[32], why[256];
	const char *dot = strchr(c->cmd, '.'), *code = NULL;
	enum kiosk_class cls = 0;
	const struct verb_spec *spec = NULL;
	struct kiosk_dev *d;

	if (dot && (size_t)(dot - c->cmd) < sizeof(cls_name)) {
		snprintf(cls_name, sizeof(cls_name), "%.*s", (int)(dot - c->cmd), c->cmd);
		if ((cls = schema_class_by_name(cls_name)))
			spec = schema_verb(cls, dot + 1);
	}
	if (!spec) {
		reply_error(c->s, c->id, "unknown_command", "unknown command '%.64s'", c->cmd);
		return;
	}
	if (!(d = devices_resolve(cls, c->device, &code, why, sizeof(why)))) {
		reply_error(c->s, c->id, code, "%s", why);
		return;
	}
	/* "flow" and "txn" may go with any device command: they link its
	 * audit record to what it served; the plugin never sees them */
	json_t *flow = json_object_get(c->args, "flow"), *txn = json_object_get(c->args, "txn");
	json_t *args = c->args;
	if ((flow && !json_is_string(flow)) || (txn && !json_is_string(txn))) {
		reply_error(c->s, c->id, "bad_request", "%s: 'flow' and 'txn' must be strings",
		            c->cmd);
		return;
	}
	if (flow || txn) {
		args = json_copy(c->args);
		json_object_del(args, "flow");
		json_object_del(args, "txn");
	}
	if (schema_check(spec, args, why, sizeof(why)) < 0) {
		reply_error(c->s, c->id, "bad_request", "%s: %s", c->cmd, why);
		if (args != c->args)
			json_decref(args);
		return;
	}
	if (!strcmp(spec->verb, "status")) {
		if (args != c->args)
			json_decref(args);
		/* status never queues behind a running command: a UI polls it
		 * while a wait or a print is in progress */
		json_t *st = devices_status(d, why, sizeof(why));
		if (st)
			reply_ok(c->s, c->id, st);
		else
			reply_error(c->s, c->id, "device_offline", "%s", why);
		return;
	}
	struct kiosk_req *r = req_new(c->s, c->id, c->cmd, args,
	                              c->timeout_ms ? c->timeout_ms : device_timeout_ms(d));
	if (args != c->args)
		json_decref(args);
	if (!r) {
		reply_error(c->s, c->id, "internal", "out of memory");
		return;
	}
	r->flow = flow ? strdup(json_string_value(flow)) : NULL;
	r->txn = txn ? strdup(json_string_value(txn)) : NULL;
	devices_submit(d, r);
}

static void dispatch(struct call *c)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, c->cmd))
			continue;
		if (commands[i].role == ROLE_ADMIN && session_role(c->s) != ROLE_ADMIN) {
			reply_error(c->s, c->id, "not_permitted",
			            "%s needs the admin role (admin.sock)", c->cmd);
			return;
		}
		commands[i].fn(c);
		return;
	}
	device_command(c);
}

/* Check the fixed envelope; answer and return -1 when it is wrong. */
static int envelope(struct session *s, json_t *req, struct call *c)
{
	json_t *v;

	c->s = s;
	c->id = json_object_get(req, "id");
	if (!c->id || !(json_is_integer(c->id) || json_is_string(c->id))) {
		reply_error(s, NULL, "bad_request", "id: %s",
		            c->id ? "must be an integer or a string" : "missing");
		return -1;
	}
	v = json_object_get(req, "cmd");
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 64) {
		reply_error(s, c->id, "bad_request", "cmd: %s",
		            v ? "must be a string of 1-64 characters" : "missing");
		return -1;
	}
	c->cmd = json_string_value(v);
	v = json_object_get(req, "device");
	if (v && !json_is_string(v)) {
		reply_error(s, c->id, "bad_request", "device: must be a string");
		return -1;
	}
	c->device = v ? json_string_value(v) : NULL;
	v = json_object_get(req, "args");
	if (v && !json_is_object(v)) {
		reply_error(s, c->id, "bad_request", "args: must be an object");
		return -1;
	}
	c->args = v;
	v = json_object_get(req, "timeout_ms");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 1 ||
	          json_integer_value(v) > MAX_TIMEOUT_MS)) {
		reply_error(s, c->id, "bad_request", "timeout_ms: must be an integer from 1 to %d",
		            MAX_TIMEOUT_MS);
		return -1;
	}
	c->timeout_ms = v ? (int)json_integer_value(v) : 0;
	return 0;
}

void proto_handle(struct session *s, const char *line, size_t len)
{
	json_error_t err;
	json_t *req;
	struct call c = {0};

	if (len == 0 || (len == 1 && line[0] == '\r'))
		return; /* blank lines are keep-alives */
	/* jtext declines what it does not know; jansson then decides, and
	 * words the error */
	if (!(req = jtext_parse(line, len)) &&
	    !(req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err))) {
		reply_error(s, NULL, "bad_request", "malformed JSON at column %d: %s", err.column,
		            err.text);
		return;
	}
	if (!json_is_object(req)) {
		reply_error(s, NULL, "bad_request", "a request must be a JSON object");
	} else if (envelope(s, req, &c) == 0) {
		json_t *empty = NULL;
		if (!c.args)
			c.args = empty = json_object();
		dispatch(&c);
		json_decref(empty);
	}
	json_decref(req);
}
