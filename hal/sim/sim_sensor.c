/*
 * sim_sensor.c -- a simulated cabinet sensor: temperature, humidity, a
 * door switch and a latched tamper switch.  Temperature follows a curve
 * set by inject; one repeating timer samples it every interval_ms and
 * emits readings, alarms and alarm clears -- the only wake-up a sensor
 * device causes, however long the daemon runs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "sim.h"

#define MIN_CHANGE 0.1 /* smaller changes are not worth a reading event */
#define HYSTERESIS 1.0 /* an alarm clears this far back inside its limit */
#define CURVE_MAX  1000

enum alarm { ALARM_NONE, ALARM_HIGH, ALARM_LOW };

struct point {
	uint64_t at; /* monotonic ms */
	double temp;
};

struct sensor {
	double temp, hum;
	double sent_temp, sent_hum; /* last reading event */
	double high, low;
	enum alarm alarm;
	int door_open, tamper;
	struct point *curve; /* NULL when the temperature is set, not moving */
	size_t npoints;
	struct kiosk_timer *tick;
};

static const char *const alarm_names[] = {NULL, "high", "low"};

static struct sensor *sensor(struct sim *s)
{
	return s->priv;
}

/* Linear between points; the last point holds once reached. */
static double curve_at(const struct sensor *se, uint64_t now)
{
	const struct point *p = se->curve;
	size_t i;

	if (now <= p[0].at)
		return p[0].temp;
	for (i = 1; i < se->npoints && p[i].at <= now; i++)
		;
	if (i == se->npoints)
		return p[i - 1].temp;
	/* p[i - 1].at <= now < p[i].at, so the span is not empty */
	return p[i - 1].temp + (p[i].temp - p[i - 1].temp) * (double)(now - p[i - 1].at) /
	                               (double)(p[i].at - p[i - 1].at);
}

static void emit_alarm(struct sim *s, struct sensor *se, enum alarm a)
{
	se->alarm = a;
	sim_log(s, "temperature alarm %s at %.1f", alarm_names[a], se->temp);
	sim_emit(s, "alarm",
	         json_pack("{s:s,s:o,s:o}", "kind", alarm_names[a], "temperature",
	                   sim_num_json(se->temp), "threshold",
	                   sim_num_json(a == ALARM_HIGH ? se->high : se->low)));
}

static void check_alarms(struct sim *s, struct sensor *se)
{
	enum alarm was = se->alarm;

	if ((was == ALARM_HIGH && se->temp <= se->high - HYSTERESIS) ||
	    (was == ALARM_LOW && se->temp >= se->low + HYSTERESIS)) {
		se->alarm = ALARM_NONE;
		sim_log(s, "temperature alarm %s cleared at %.1f", alarm_names[was], se->temp);
		sim_emit(s, "alarm_cleared",
		         json_pack("{s:s,s:o}", "kind", alarm_names[was], "temperature",
		                   sim_num_json(se->temp)));
	}
	if (se->alarm != ALARM_HIGH && se->temp > se->high)
		emit_alarm(s, se, ALARM_HIGH);
	else if (se->alarm != ALARM_LOW && se->temp < se->low)
		emit_alarm(s, se, ALARM_LOW);
}

static void stop_curve(struct sensor *se)
{
	free(se->curve);
	se->curve = NULL;
	se->npoints = 0;
}

static void sample(struct sim *s, struct sensor *se)
{
	uint64_t now = sim_now_ms();

	if (se->curve) {
		se->temp = curve_at(se, now);
		if (now >= se->curve[se->npoints - 1].at)
			stop_curve(se); /* holding the last point from here on */
	}
	if (fabs(se->temp - se->sent_temp) >= MIN_CHANGE - 1e-9 ||
	    fabs(se->hum - se->sent_hum) >= MIN_CHANGE - 1e-9) {
		se->sent_temp = se->temp;
		se->sent_hum = se->hum;
		sim_emit(s, "reading",
		         json_pack("{s:o,s:o}", "temperature", sim_num_json(se->temp), "humidity",
		                   sim_num_json(se->hum)));
	}
	check_alarms(s, se);
}

static void tick(void *arg)
{
	struct sim *s = arg;

	sample(s, sensor(s));
}

static void read_done(struct sim *s)
{
	struct sensor *se = sensor(s);

	sample(s, se); /* a read is a sample: what it returns is what was sent */
	sim_reply(s, json_pack("{s:o,s:o,s:s,s:b,s:o}", "temperature", sim_num_json(se->temp),
	                       "humidity", sim_num_json(se->hum), "door",
	                       se->door_open ? "open" : "closed", "tamper", se->tamper, "alarm",
	                       se->alarm ? json_string(alarm_names[se->alarm]) : json_null()));
}

static void do_read(struct sim *s, json_t *args)
{
	(void)args;
	sim_step(s, s->latency_ms, read_done);
}

/* --- injects --- */

static int inj_set(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct sensor *se = sensor(s);
	double t = se->temp, h = se->hum;
	int rt, rh;

	if ((rt = sim_arg_num(args, "temperature", -100, 150, &t, why, whylen)) < 0 ||
	    (rh = sim_arg_num(args, "humidity", 0, 100, &h, why, whylen)) < 0)
		return -1;
	if (!rt && !rh) {
		snprintf(why, whylen, "set needs temperature and/or humidity");
		return -1;
	}
	if (rt)
		stop_curve(se);
	se->temp = t;
	se->hum = h;
	return 0;
}

static int parse_point(json_t *pt, uint64_t now, struct point *out, char *why, size_t whylen)
{
	json_t *ms = json_array_get(pt, 0), *t = json_array_get(pt, 1);

	if (json_array_size(pt) != 2 || !json_is_integer(ms) || json_integer_value(ms) < 0 ||
	    json_integer_value(ms) > 86400000LL * 30 || !json_is_number(t) ||
	    json_number_value(t) < -100 || json_number_value(t) > 150) {
		snprintf(why, whylen,
		         "points: each must be [ms_from_now >= 0, temperature "
		         "-100..150]");
		return -1;
	}
	out->at = now + (uint64_t)json_integer_value(ms);
	out->temp = json_number_value(t);
	return 0;
}

/* The curve starts from the current temperature, now. */
static int inj_curve(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct sensor *se = sensor(s);
	json_t *pts = json_object_get(args, "points");
	size_t n = json_array_size(pts), i;
	uint64_t now = sim_now_ms();
	struct point *p;

	if (!json_is_array(pts) || n < 1 || n > CURVE_MAX) {
		snprintf(why, whylen, "points: must be an array of 1 to %d [ms, temperature]",
		         CURVE_MAX);
		return -1;
	}
	if (!(p = calloc(n + 1, sizeof(*p)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	p[0].at = now;
	p[0].temp = se->curve ? curve_at(se, now) : se->temp;
	for (i = 0; i < n; i++) {
		if (parse_point(json_array_get(pts, i), now, &p[i + 1], why, whylen) < 0)
			break;
		if (p[i + 1].at < p[i].at) {
			snprintf(why, whylen, "points: times must not go back");
			break;
		}
	}
	if (i < n) {
		free(p);
		return -1;
	}
	stop_curve(se);
	se->curve = p;
	se->npoints = n + 1;
	return 0;
}

static int set_door(struct sim *s, int open)
{
	struct sensor *se = sensor(s);

	if (se->door_open != open) {
		se->door_open = open;
		sim_log(s, "cabinet door %s", open ? "open" : "closed");
		sim_emit(s, "door", json_pack("{s:s}", "state", open ? "open" : "closed"));
	}
	return 0;
}

static int inj_door_open(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	return set_door(s, 1);
}

static int inj_door_close(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	return set_door(s, 0);
}

static int inj_tamper(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	sensor(s)->tamper = 1;
	sim_log(s, "tamper switch triggered");
	sim_emit(s, "tamper", NULL);
	return 0;
}

/* A tamper switch latches until service resets it. */
static int inj_tamper_reset(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	sensor(s)->tamper = 0;
	sim_log(s, "tamper switch reset");
	return 0;
}

/* --- class --- */

static int sensor_open(struct sim *s, char *why, size_t whylen)
{
	struct sensor *se;
	uint32_t interval = (uint32_t)sim_opt_int(s, "interval_ms", 1000);

	if (!(se = calloc(1, sizeof(*se)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	se->temp = se->sent_temp = sim_opt_num(s, "temperature", 20.0);
	se->hum = se->sent_hum = sim_opt_num(s, "humidity", 45.0);
	se->high = sim_opt_num(s, "alarm_high", 45.0);
	se->low = sim_opt_num(s, "alarm_low", -30.0);
	s->priv = se;
	if (!(se->tick = s->host->timer_start(s->dev, interval < 50 ? 50 : interval, 1, tick, s))) {
		snprintf(why, whylen, "cannot start the sampling timer");
		free(se);
		s->priv = NULL;
		return -1;
	}
	return 0;
}

static void sensor_close(struct sim *s)
{
	struct sensor *se = sensor(s);

	if (se->tick)
		s->host->timer_stop(se->tick);
	stop_curve(se);
	free(se);
	s->priv = NULL;
}

static json_t *sensor_status(struct sim *s)
{
	struct sensor *se = sensor(s);

	return json_pack("{s:o,s:o,s:s,s:b,s:o,s:b,s:o,s:o}", "temperature", sim_num_json(se->temp),
	                 "humidity", sim_num_json(se->hum), "door",
	                 se->door_open ? "open" : "closed", "tamper", se->tamper, "alarm",
	                 se->alarm ? json_string(alarm_names[se->alarm]) : json_null(), "curve",
	                 se->curve != NULL, "alarm_high", sim_num_json(se->high), "alarm_low",
	                 sim_num_json(se->low));
}

static const struct sim_verb verbs[] = {
        {"read", do_read},
        {NULL, NULL},
};

static const struct sim_inject injects[] = {
        {"set", inj_set},
        {"curve", inj_curve},
        {"door_open", inj_door_open},
        {"door_close", inj_door_close},
        {"tamper", inj_tamper},
        {"tamper_reset", inj_tamper_reset},
        {NULL, NULL},
};

const struct sim_class sim_sensor = {
        .cls = KIOSK_CLASS_SENSOR,
        .name = "sensor",
        .open = sensor_open,
        .close = sensor_close,
        .status = sensor_status,
        .verbs = verbs,
        .injects = injects,
};
