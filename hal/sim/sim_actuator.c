/*
 * sim_actuator.c -- simulated relay/PWM outputs (heater, fans, light).
 * Each output has an on flag and a level 0..100; a level above 0 turns
 * the output on, turning on an output at level 0 runs it at 100.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define OUTPUTS_MAX     32
#define OUTPUT_NAME_MAX 63

struct output {
	char name[OUTPUT_NAME_MAX + 1];
	int on, level;
	int fail_next; /* fail_output: the next set does not answer */
};

struct actuator {
	int n;
	struct output out[OUTPUTS_MAX];
	char names[OUTPUTS_MAX * (OUTPUT_NAME_MAX + 2)]; /* "heater, fan, light" for errors */
	/* the running set */
	struct output *setting;
	int want_on, want_level;
};

static struct actuator *actuator(struct sim *s)
{
	return s->priv;
}

static struct output *find_output(struct actuator *a, const char *name)
{
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->out[i].name, name) == 0)
			return &a->out[i];
	return NULL;
}

static json_t *output_json(const struct output *o)
{
	return json_pack("{s:s,s:b,s:i}", "output", o->name, "on", o->on, "level", o->level);
}

static void set_done(struct sim *s)
{
	struct actuator *a = actuator(s);
	struct output *o = a->setting;

	if (o->fail_next) {
		o->fail_next = 0;
		sim_fail(s, "device_error", "output %s not responding", o->name);
		return;
	}
	if (o->on != a->want_on || o->level != a->want_level) {
		o->on = a->want_on;
		o->level = a->want_level;
		sim_log(s, "%s %s at %d", o->name, o->on ? "on" : "off", o->level);
		sim_emit(s, "changed", output_json(o));
	}
	sim_reply(s, output_json(o));
}

static void do_set(struct sim *s, json_t *args)
{
	struct actuator *a = actuator(s);
	const char *name = json_string_value(json_object_get(args, "output"));
	json_t *on = json_object_get(args, "on"), *level = json_object_get(args, "level");
	struct output *o;

	if (!(o = find_output(a, name))) {
		sim_fail_after(s, 0, "bad_request", "unknown output '%.64s' (%s)", name, a->names);
		return;
	}
	a->setting = o;
	a->want_level = level ? (int)json_integer_value(level) : o->level;
	a->want_on = on ? json_is_true(on) : level ? a->want_level > 0 : o->on;
	if (a->want_on && !level && a->want_level == 0)
		a->want_level = 100;
	sim_step(s, s->latency_ms, set_done);
}

static int inj_fail_output(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct actuator *a = actuator(s);
	const char *name;
	struct output *o;

	if (sim_arg_need(sim_arg_str(args, "output", OUTPUT_NAME_MAX, &name, why, whylen), "output",
	                 why, whylen) < 0)
		return -1;
	if (!(o = find_output(a, name))) {
		snprintf(why, whylen, "unknown output '%s' (%s)", name, a->names);
		return -1;
	}
	o->fail_next = 1;
	return 0;
}

/* "heater, fan ,light" -> three outputs; empty items are skipped. */
static int parse_outputs(struct actuator *a, const char *list, char *why, size_t whylen)
{
	const char *p = list;

	while (*p) {
		size_t len = strcspn(p, ",");
		const char *q = p + len;
		while (len && (*p == ' ' || *p == '\t'))
			p++, len--;
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len > OUTPUT_NAME_MAX || (len && a->n == OUTPUTS_MAX)) {
			snprintf(why, whylen, "outputs: at most %d names of at most %d characters",
			         OUTPUTS_MAX, OUTPUT_NAME_MAX);
			return -1;
		}
		if (len) {
			memcpy(a->out[a->n].name, p, len);
			if (find_output(a, a->out[a->n].name)) {
				snprintf(why, whylen, "outputs: '%s' listed twice",
				         a->out[a->n].name);
				return -1;
			}
			a->n++;
		}
		p = *q ? q + 1 : q;
	}
	if (a->n == 0) {
		snprintf(why, whylen, "outputs: name at least one output");
		return -1;
	}
	return 0;
}

static int actuator_open(struct sim *s, char *why, size_t whylen)
{
	struct actuator *a;

	if (!(a = calloc(1, sizeof(*a)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (parse_outputs(a, sim_opt_str(s, "outputs", "heater,fan,light"), why, whylen) < 0) {
		free(a);
		return -1;
	}
	for (int i = 0; i < a->n; i++) {
		strcat(a->names, i ? ", " : "");
		strcat(a->names, a->out[i].name);
	}
	s->priv = a;
	return 0;
}

static void actuator_close(struct sim *s)
{
	free(s->priv);
	s->priv = NULL;
}

static json_t *actuator_status(struct sim *s)
{
	struct actuator *a = actuator(s);
	json_t *outs = json_array();

	for (int i = 0; i < a->n; i++)
		json_array_append_new(outs, output_json(&a->out[i]));
	return json_pack("{s:o}", "outputs", outs);
}

static const struct sim_verb verbs[] = {
        {"set", do_set},
        {NULL, NULL},
};

static const struct sim_inject injects[] = {
        {"fail_output", inj_fail_output},
        {NULL, NULL},
};

const struct sim_class sim_actuator = {
        .cls = KIOSK_CLASS_ACTUATOR,
        .name = "actuator",
        .open = actuator_open,
        .close = actuator_close,
        .status = actuator_status,
        .verbs = verbs,
        .injects = injects,
};
