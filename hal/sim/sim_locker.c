/*
 * sim_locker.c -- a simulated locker controller board: `doors` doors with
 * a lock and a door sensor each.  A stuck lock does not open; with
 * auto_close_ms a door that was opened (by command or by force) closes
 * by itself after that long, like a customer shutting it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "sim.h"

struct door {
	struct sim *s;
	int n; /* 1-based, as printed on the cabinet */
	int open, stuck;
	struct kiosk_timer *auto_close;
};

struct locker {
	int ndoors;
	uint32_t auto_close_ms;
	int opening; /* the door the running command opens */
	struct door doors[];
};

static struct locker *locker(struct sim *s)
{
	return s->priv;
}

static void stop_auto_close(struct door *d)
{
	if (d->auto_close)
		d->s->host->timer_stop(d->auto_close);
	d->auto_close = NULL;
}

static void close_door(struct door *d)
{
	stop_auto_close(d);
	if (!d->open)
		return;
	d->open = 0;
	sim_log(d->s, "door %d closed", d->n);
	sim_emit(d->s, "closed", json_pack("{s:i}", "door", d->n));
}

static void auto_close_fired(void *arg)
{
	struct door *d = arg;

	d->auto_close = NULL; /* a fired one-shot is released by the core */
	close_door(d);
}

static void open_door(struct door *d, int forced)
{
	struct sim *s = d->s;
	struct locker *l = locker(s);

	if (!d->open) {
		d->open = 1;
		sim_log(s, "door %d %s", d->n, forced ? "forced open" : "opened");
		sim_emit(s, "opened",
		         forced ? json_pack("{s:i,s:b}", "door", d->n, "forced", 1)
		                : json_pack("{s:i}", "door", d->n));
	}
	stop_auto_close(d);
	if (l->auto_close_ms)
		d->auto_close =
		        s->host->timer_start(s->dev, l->auto_close_ms, 0, auto_close_fired, d);
}

static void open_done(struct sim *s)
{
	struct door *d = &locker(s)->doors[locker(s)->opening - 1];

	if (d->stuck) {
		sim_fail(s, "device_error", "door %d did not open", d->n);
		return;
	}
	open_door(d, 0);
	sim_reply(s, json_pack("{s:i,s:s}", "door", d->n, "state", "open"));
}

static void do_open(struct sim *s, json_t *args)
{
	struct locker *l = locker(s);
	json_int_t n = json_integer_value(json_object_get(args, "door"));

	if (n < 1 || n > l->ndoors) {
		sim_fail_after(s, 0, "bad_request", "no door %lld (1..%d)", (long long)n,
		               l->ndoors);
		return;
	}
	l->opening = (int)n;
	sim_step(s, s->latency_ms, open_done);
}

/* --- injects --- */

static struct door *door_arg(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct locker *l = locker(s);
	long long n;

	if (sim_arg_need(sim_arg_int(args, "door", 1, l->ndoors, &n, why, whylen), "door", why,
	                 whylen) < 0)
		return NULL;
	return &l->doors[n - 1];
}

static int inj_close(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct door *d = door_arg(s, args, why, whylen);

	if (!d)
		return -1;
	close_door(d);
	return 0;
}

static int inj_force(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct door *d = door_arg(s, args, why, whylen);

	if (!d)
		return -1;
	open_door(d, 1);
	return 0;
}

static int inj_stuck(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct door *d = door_arg(s, args, why, whylen);

	if (!d)
		return -1;
	d->stuck = 1;
	return 0;
}

static int inj_unstuck(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct door *d = door_arg(s, args, why, whylen);

	if (!d)
		return -1;
	d->stuck = 0;
	return 0;
}

/* --- class --- */

static int locker_open(struct sim *s, char *why, size_t whylen)
{
	int n = (int)sim_opt_int(s, "doors", 16);
	struct locker *l;

	if (n < 1 || !(l = calloc(1, sizeof(*l) + (size_t)n * sizeof(l->doors[0])))) {
		snprintf(why, whylen, n < 1 ? "doors: must be at least 1" : "out of memory");
		return -1;
	}
	l->ndoors = n;
	l->auto_close_ms = (uint32_t)sim_opt_int(s, "auto_close_ms", 0);
	for (int i = 0; i < n; i++) {
		l->doors[i].s = s;
		l->doors[i].n = i + 1;
	}
	s->priv = l;
	return 0;
}

static void locker_close(struct sim *s)
{
	struct locker *l = locker(s);

	for (int i = 0; i < l->ndoors; i++)
		stop_auto_close(&l->doors[i]);
	free(l);
	s->priv = NULL;
}

static json_t *locker_status(struct sim *s)
{
	struct locker *l = locker(s);
	json_t *doors = json_array();

	for (int i = 0; i < l->ndoors; i++)
		json_array_append_new(doors,
		                      json_pack("{s:i,s:s,s:b}", "door", l->doors[i].n, "state",
		                                l->doors[i].open ? "open" : "closed", "stuck",
		                                l->doors[i].stuck));
	return json_pack("{s:o}", "doors", doors);
}

static const struct sim_verb verbs[] = {
        {"open", do_open},
        {NULL, NULL},
};

static const struct sim_inject injects[] = {
        {"close", inj_close},     {"force", inj_force}, {"stuck", inj_stuck},
        {"unstuck", inj_unstuck}, {NULL, NULL},
};

const struct sim_class sim_locker = {
        .cls = KIOSK_CLASS_LOCKER,
        .name = "locker",
        .open = locker_open,
        .close = locker_close,
        .status = locker_status,
        .verbs = verbs,
        .injects = injects,
};
