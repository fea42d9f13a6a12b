#include "req.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "ipc.h"
#include "jtext.h"
#include "util.h"

struct kiosk_req *req_new(struct session *s, json_t *id, const char *cmd, json_t *args,
                          int timeout_ms)
{
	struct kiosk_req *r = calloc(1, sizeof(*r));
	if (!r || !(r->cmd = strdup(cmd))) {
		free(r);
		return NULL;
	}
	const char *dot = strchr(r->cmd, '.');
	r->verb = dot ? dot + 1 : r->cmd;
	r->id = json_incref(id);
	r->args = args ? json_incref(args) : json_object();
	r->timeout_ms = timeout_ms;
	r->sess = s;
	if (s)
		TAILQ_INSERT_TAIL(session_reqs(s), r, s_entry);
	return r;
}

static void req_free(struct kiosk_req *r)
{
	if (r->timer)
		event_free(r->timer);
	json_decref(r->id);
	json_decref(r->args);
	free(r->cmd);
	free(r->flow);
	free(r->txn);
	free(r->detail);
	free(r);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct kiosk_req *r = arg;
	(void)fd;
	(void)what;
	if (r->held && r->abort)
		r->abort(r, "timeout");
	else
		req_fail(r, "timeout", "%s: no answer within %d ms", r->cmd, r->timeout_ms);
}

void req_arm(struct kiosk_req *r)
{
	struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
	if (!r->timer)
		r->timer = evtimer_new(daemon_base, on_timeout, r);
	if (r->timer)
		evtimer_add(r->timer, &tv);
}

static void req_detach(struct kiosk_req *r)
{
	struct session *s = r->sess;
	if (s) {
		TAILQ_REMOVE(session_reqs(s), r, s_entry);
		r->sess = NULL;
		session_req_removed(s);
	}
}

/* The success reply, written straight from id and result: the envelope
 * object json_pack would build for it is only ever serialised.  A long
 * one is written again into a buffer of the length the first pass gave. */
static void send_ok(struct session *s, json_t *id, json_t *result)
{
	char small[4096], *buf = small;
	size_t n = jtext_reply_ok(id, result, small, sizeof(small) - 1);

	if (n > sizeof(small) - 1 && (buf = malloc(n + 1)) &&
	    jtext_reply_ok(id, result, buf, n) != n) {
		free(buf);
		buf = NULL;
	}
	if (n && buf) {
		buf[n] = '\n';
		session_send_line(s, buf, n + 1);
	} else {
		/* declined (a real), or no memory: jansson builds and writes it */
		json_t *m = json_pack("{s:O,s:b,s:o}", "id", id ? id : json_null(), "ok", 1,
		                      "result", result ? json_incref(result) : json_object());
		session_send(s, m);
		json_decref(m);
	}
	if (buf != small)
		free(buf);
}

static void req_mark(struct kiosk_req *r, const char *outcome)
{
	snprintf(r->outcome, sizeof(r->outcome), "%s", outcome);
	r->answered = 1;
	if (r->timer)
		evtimer_del(r->timer);
}

static void req_done(struct kiosk_req *r)
{
	req_detach(r);
	if (!r->held)
		req_free(r);
}

/* Mark answered and send msg (ownership taken) to the client if any. */
static void req_finish(struct kiosk_req *r, const char *outcome, json_t *msg)
{
	req_mark(r, outcome);
	if (r->sess)
		session_send(r->sess, msg);
	json_decref(msg);
	req_done(r);
}

void req_reply(struct kiosk_req *r, json_t *result)
{
	if (r->answered) {
		json_decref(result);
		return;
	}
	req_mark(r, "ok");
	if (r->sess)
		send_ok(r->sess, r->id, result);
	json_decref(result);
	req_done(r);
}

void req_vfail(struct kiosk_req *r, const char *code, const char *fmt, va_list ap)
{
	char msg[512];
	if (r->answered)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	utf8_sanitize(msg); /* else json_pack fails and no reply goes out */
	free(r->detail);
	r->detail = strdup(msg);
	req_finish(r, code,
	           json_pack("{s:O,s:b,s:{s:s,s:s}}", "id", r->id, "ok", 0, "error", "code", code,
	                     "message", msg));
}

void req_fail(struct kiosk_req *r, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	req_vfail(r, code, fmt, ap);
	va_end(ap);
}

void req_progress(struct kiosk_req *r, json_t *data)
{
	if (!r->answered && r->sess) {
		json_t *m = json_pack("{s:O,s:o}", "id", r->id, "progress",
		                      data ? data : json_object());
		session_send(r->sess, m);
		json_decref(m);
	} else {
		json_decref(data);
	}
}

void req_hold(struct kiosk_req *r, void (*abort)(struct kiosk_req *r, const char *code),
              void *owner)
{
	r->held = 1;
	r->abort = abort;
	r->owner = owner;
}

void req_release(struct kiosk_req *r)
{
	r->held = 0;
	r->abort = NULL;
	r->running = 0;
	if (r->answered)
		req_free(r);
}

void req_orphan(struct kiosk_req *r)
{
	req_detach(r);
	if (r->answered)
		return;
	if (r->held) {
		if (r->abort)
			r->abort(r, "cancelled"); /* e.g. frees the device for others */
		else
			r->answered = 1; /* the owner frees it when it lets go */
		return;
	}
	r->answered = 1;
	req_free(r);
}

void reply_error(struct session *s, json_t *id, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	utf8_sanitize(msg);
	json_t *m = json_pack("{s:O,s:b,s:{s:s,s:s}}", "id", id ? id : json_null(), "ok", 0,
	                      "error", "code", code, "message", msg);
	session_send(s, m);
	json_decref(m);
}

void reply_ok(struct session *s, json_t *id, json_t *result)
{
	send_ok(s, id, result);
	json_decref(result);
}
