/*
 * sim_req.c -- the running request: its step timer and how it ends.
 *
 * Our state is cleared before host->reply()/fail() is called, because the
 * core may start the next queued command from inside those calls.
 */
#include <stdarg.h>
#include <stdio.h>

#include "sim.h"

/* Stop whatever works for the running request and forget it. */
static struct kiosk_req *end_request(struct sim *s)
{
	struct kiosk_req *req = s->req;

	if (s->step)
		s->host->timer_stop(s->step);
	s->step = NULL;
	s->step_fn = NULL;
	sim_render_abandon(s);
	json_decref(s->result);
	s->result = NULL;
	s->req = NULL;
	s->hanging = 0;
	if (s->cls->reset)
		s->cls->reset(s);
	return req;
}

void sim_abandon(struct sim *s)
{
	end_request(s);
}

void sim_reply(struct sim *s, json_t *result)
{
	struct kiosk_req *req;

	if (!s->req) {
		json_decref(result);
		return;
	}
	req = end_request(s);
	s->host->reply(req, result);
}

static void vfail(struct sim *s, const char *code, const char *fmt, va_list ap)
{
	struct kiosk_req *req;
	char c[sizeof(s->code)], msg[sizeof(s->msg)];

	if (!s->req)
		return;
	/* Copies: code or fmt's arguments may point into s->code/s->msg. */
	snprintf(c, sizeof(c), "%s", code);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	req = end_request(s);
	s->host->fail(req, c, "%s", msg);
}

void sim_fail(struct sim *s, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(s, code, fmt, ap);
	va_end(ap);
}

static void step_fired(void *arg)
{
	struct sim *s = arg;
	void (*fn)(struct sim *) = s->step_fn;

	/* A one-shot timer is released by the core once it fired. */
	s->step = NULL;
	s->step_fn = NULL;
	if (fn)
		fn(s);
}

void sim_step(struct sim *s, uint32_t ms, void (*fn)(struct sim *s))
{
	if (!s->req)
		return;
	if (s->step)
		s->host->timer_stop(s->step);
	s->step_fn = fn;
	s->step = s->host->timer_start(s->dev, ms, 0, step_fired, s);
	if (!s->step)
		sim_fail(s, "internal", "cannot start a timer");
}

static void deliver_result(struct sim *s)
{
	json_t *r = s->result;

	s->result = NULL;
	sim_reply(s, r);
}

static void deliver_error(struct sim *s)
{
	sim_fail(s, s->code, "%s", s->msg);
}

void sim_reply_after(struct sim *s, uint32_t ms, json_t *result)
{
	if (!s->req) {
		json_decref(result);
		return;
	}
	json_decref(s->result);
	s->result = result;
	sim_step(s, ms, deliver_result);
}

void sim_fail_after(struct sim *s, uint32_t ms, const char *code, const char *fmt, ...)
{
	char msg[sizeof(s->msg)];
	va_list ap;

	if (!s->req)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(s->code, sizeof(s->code), "%s", code);
	snprintf(s->msg, sizeof(s->msg), "%s", msg);
	sim_step(s, ms, deliver_error);
}
