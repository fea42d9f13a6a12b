/*
 * sim.c -- the simulator plugin: descriptor, options, dispatch to the
 * per-class simulators, the faults every class shares and the sticky
 * per-name state that outlives close/open (the "unplugged" flag).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* Every key any class reads: the core validates [device] sections against
 * this one table, so a key is accepted for every class. */
static const struct kiosk_option options[] = {
        {"latency_ms", KIOSK_OPT_INT, "10", 0, 600000,
         "simulated hardware time per command, in ms (0 = next loop turn)"},
        {"card", KIOSK_OPT_STRING, "none", 0, 0,
         "cardreader: card in the reader at open: none, sle4442 or mifare"},
        {"paper_lines", KIOSK_OPT_INT, "2000", 1, 10000000,
         "printer: lines on a full roll (low below 10%)"},
        {"width", KIOSK_OPT_INT, "32", 8, 255, "printer: characters per line"},
        {"adf_pages", KIOSK_OPT_INT, "10", 0, 10000, "scanner: sheets in the document feeder"},
        {"volume", KIOSK_OPT_INT, "70", 0, 100, "audio: volume at open, 0..100"},
        {"doors", KIOSK_OPT_INT, "16", 1, 1000, "locker: number of doors"},
        {"auto_close_ms", KIOSK_OPT_INT, "0", 0, 86400000,
         "locker: an open door closes by itself after this long (0 = never)"},
        {"interval_ms", KIOSK_OPT_INT, "1000", 50, 3600000, "sensor: sampling period in ms"},
        {"temperature", KIOSK_OPT_DOUBLE, "20.0", -100, 150, "sensor: temperature at open, °C"},
        {"humidity", KIOSK_OPT_DOUBLE, "45.0", 0, 100, "sensor: relative humidity at open, %"},
        {"alarm_high", KIOSK_OPT_DOUBLE, "45.0", -100, 150, "sensor: high temperature alarm, °C"},
        {"alarm_low", KIOSK_OPT_DOUBLE, "-30.0", -100, 150, "sensor: low temperature alarm, °C"},
        {"outputs", KIOSK_OPT_STRING, "heater,fan,light", 0, 0,
         "actuator: comma-separated output names"},
        {NULL, 0, NULL, 0, 0, NULL},
};

static const struct kiosk_match match[] = {
        {"sim", 0, 0, "simulated device"},
        {NULL, 0, 0, NULL},
};

static const struct sim_class *const classes[] = {
        &sim_cardreader, &sim_printer, &sim_scanner, &sim_idreader, &sim_camera,
        &sim_audio,      &sim_barcode, &sim_locker,  &sim_sensor,   &sim_actuator,
};

/* The host table, kept from init() or the first open(): inject() may be
 * called for a device that is not open and gets no host of its own. */
static const struct kiosk_host *host;

/* State that belongs to the device name, not to one open instance. */
struct sticky {
	struct sticky *next;
	int unplugged;
	char name[];
};
static struct sticky *stickies;

static struct sticky *sticky_get(const char *name)
{
	struct sticky *st;
	size_t n = strlen(name);

	for (st = stickies; st; st = st->next)
		if (strcmp(st->name, name) == 0)
			return st;
	if (!(st = calloc(1, sizeof(*st) + n + 1)))
		return NULL;
	memcpy(st->name, name, n + 1);
	st->next = stickies;
	stickies = st;
	return st;
}

static int is_unplugged(struct kiosk_dev *dev)
{
	struct sticky *st = sticky_get(host->dev_name(dev));
	return st && st->unplugged;
}

static void set_unplugged(struct kiosk_dev *dev, int on)
{
	struct sticky *st = sticky_get(host->dev_name(dev));
	if (st)
		st->unplugged = on;
}

static const struct sim_class *class_of(struct kiosk_dev *dev)
{
	enum kiosk_class cls = host->dev_class(dev);

	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
		if (classes[i]->cls == cls)
			return classes[i];
	return NULL;
}

static int sim_init(const struct kiosk_host *h)
{
	host = h;
	return 0;
}

static void sim_fini(void)
{
	while (stickies) {
		struct sticky *st = stickies;
		stickies = st->next;
		free(st);
	}
}

static int sim_open(struct kiosk_dev *dev, const struct kiosk_host *h, char *why, size_t whylen)
{
	const struct sim_class *cls;
	struct sim *s;

	host = h;
	if (!(cls = class_of(dev))) {
		snprintf(why, whylen, "class not simulated");
		return -1;
	}
	if (is_unplugged(dev)) {
		snprintf(why, whylen, "not connected (simulated)");
		return -1;
	}
	if (!(s = calloc(1, sizeof(*s)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	s->dev = dev;
	s->host = h;
	s->cls = cls;
	s->latency_ms = (uint32_t)sim_opt_int(s, "latency_ms", 10);
	if (cls->open(s, why, whylen) < 0) {
		free(s);
		return -1;
	}
	h->set_priv(dev, s);
	sim_log(s, "simulated %s ready", cls->name);
	return 0;
}

static void sim_close(struct kiosk_dev *dev)
{
	struct sim *s = host->priv(dev);

	if (!s)
		return;
	/* A request still pending here belongs to the core now: drop it
	 * without answering and never touch it again. */
	sim_abandon(s);
	s->cls->close(s);
	host->set_priv(dev, NULL);
	free(s);
}

static json_t *sim_status_json(struct sim *s)
{
	json_t *st = s->cls->status(s);

	json_object_set_new(st, "latency_ms", json_integer(s->latency_ms));
	json_object_set_new(st, "next_fault",
	                    s->hang_next   ? json_string("hang")
	                    : s->fail_next ? json_string(s->fail_code)
	                                   : json_null());
	return st;
}

static const struct sim_verb *verb_find(const struct sim_class *cls, const char *verb)
{
	for (const struct sim_verb *v = cls->verbs; v->verb; v++)
		if (strcmp(v->verb, verb) == 0)
			return v;
	return NULL;
}

static void sim_command(struct kiosk_dev *dev, struct kiosk_req *req, const char *verb,
                        json_t *args)
{
	struct sim *s = host->priv(dev);
	const struct sim_verb *v;

	if (!s || s->req) {
		/* The core promises neither; answer rather than lose the request. */
		host->fail(req, s ? "device_busy" : "device_offline",
		           s ? "a command is already running" : "device is not open");
		return;
	}
	s->req = req;
	/* status is served at once and never consumes an injected fault, so
	 * tests can look at the device while a fault is armed. */
	if (strcmp(verb, "status") == 0) {
		sim_reply_after(s, 0, sim_status_json(s));
		return;
	}
	if (s->hang_next) {
		s->hang_next = 0;
		s->hanging = 1;
		sim_log(s, "%s will never finish (hang_next)", verb);
		return;
	}
	if (s->fail_next) {
		s->fail_next = 0;
		sim_fail_after(s, s->latency_ms, s->fail_code, "%s", s->fail_msg);
		return;
	}
	if (!(v = verb_find(s->cls, verb))) {
		sim_fail_after(s, 0, "unknown_command", "%s has no verb '%s'", s->cls->name, verb);
		return;
	}
	v->start(s, args);
}

static void sim_cancel(struct kiosk_dev *dev, struct kiosk_req *req)
{
	struct sim *s = host->priv(dev);

	if (!s || s->req != req)
		return;
	if (s->hanging) {
		/* The point of a hang: let the core's grace period and reopen
		 * path deal with a device that stopped answering. */
		host->log(dev, KIOSK_LOG_DEBUG, "ignoring cancel (hang_next)");
		return;
	}
	sim_fail(s, "cancelled", "cancelled");
}

static json_t *sim_status(struct kiosk_dev *dev)
{
	struct sim *s = host->priv(dev);

	if (!s)
		return json_pack("{s:b}", "unplugged", is_unplugged(dev));
	return sim_status_json(s);
}

/* --- injects every class shares --- */

static int inj_fail_next(struct sim *s, json_t *args, char *why, size_t whylen)
{
	/* The protocol's closed set, minus what only the core may say. */
	static const char *const codes[] = {
	        "bad_request",     "device_offline", "device_busy",
	        "device_error",    "timeout",        "cancelled",
	        "storage_full",    "storage_error",  "remote_unavailable",
	        "remote_rejected", "internal",       NULL};
	const char *code = "device_error", *msg = "simulated failure";
	size_t i;

	if (sim_arg_str(args, "code", 23, &code, why, whylen) < 0 ||
	    sim_arg_str(args, "message", sizeof(s->fail_msg) - 1, &msg, why, whylen) < 0)
		return -1;
	for (i = 0; codes[i] && strcmp(codes[i], code) != 0; i++)
		;
	if (!codes[i]) {
		snprintf(why, whylen,
		         "code: must be a device error code such as device_error, "
		         "device_offline, bad_request, timeout");
		return -1;
	}
	snprintf(s->fail_code, sizeof(s->fail_code), "%s", code);
	snprintf(s->fail_msg, sizeof(s->fail_msg), "%s", msg);
	s->fail_next = 1;
	s->hang_next = 0;
	return 0;
}

static int inj_hang_next(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	s->hang_next = 1;
	s->fail_next = 0;
	return 0;
}

static int inj_latency(struct sim *s, json_t *args, char *why, size_t whylen)
{
	long long ms;

	if (sim_arg_need(sim_arg_int(args, "ms", 0, 600000, &ms, why, whylen), "ms", why, whylen) <
	    0)
		return -1;
	s->latency_ms = (uint32_t)ms;
	return 0;
}

static int inj_replug(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	set_unplugged(s->dev, 0);
	return 0;
}

/* unplug is handled by sim_inject itself: the device goes away under it. */
static const struct sim_inject common_injects[] = {
        {"unplug", NULL},
        {"replug", inj_replug},
        {"fail_next", inj_fail_next},
        {"hang_next", inj_hang_next},
        {"latency", inj_latency},
        {NULL, NULL},
};

static const struct sim_inject *inject_find(const struct sim_class *cls, const char *what)
{
	const struct sim_inject *t;

	for (t = common_injects; t->what; t++)
		if (strcmp(t->what, what) == 0)
			return t;
	for (t = cls->injects; t->what; t++)
		if (strcmp(t->what, what) == 0)
			return t;
	return NULL;
}

/* "unknown what 'fly' for cardreader (insert, remove, unplug, ...)" */
static void list_injects(const struct sim_class *cls, const char *what, char *why, size_t whylen)
{
	const struct sim_inject *lists[] = {cls->injects, common_injects};
	const char *sep = "";
	size_t n = (size_t)snprintf(why, whylen, "unknown what '%.32s' for %s (", what, cls->name);

	for (size_t l = 0; l < 2; l++) {
		for (const struct sim_inject *t = lists[l]; t->what && n < whylen; t++) {
			n += (size_t)snprintf(why + n, whylen - n, "%s%s", sep, t->what);
			sep = ", ";
		}
	}
	if (n < whylen)
		snprintf(why + n, whylen - n, ")");
}

static json_t *unplug(struct kiosk_dev *dev)
{
	struct sim *s = host->priv(dev);

	set_unplugged(dev, 1);
	if (s) {
		sim_log(s, "unplugged (simulated)");
		if (s->req)
			sim_fail(s, "device_offline", "unplugged (simulated)");
		/* lost() may close the device right here: s is gone after it. */
		host->lost(dev, "unplugged (simulated)");
	}
	return json_pack("{s:s,s:b}", "done", "unplug", "unplugged", 1);
}

static json_t *sim_inject(struct kiosk_dev *dev, const char *what, json_t *args, char *why,
                          size_t whylen)
{
	const struct sim_class *cls;
	const struct sim_inject *t;
	struct sim *s;
	json_t *res;

	if (!host || !(cls = class_of(dev))) {
		snprintf(why, whylen, "device is not open");
		return NULL;
	}
	if (!(t = inject_find(cls, what))) {
		list_injects(cls, what, why, whylen);
		return NULL;
	}
	if (strcmp(what, "unplug") == 0)
		return unplug(dev);
	if (!(s = host->priv(dev))) {
		if (strcmp(what, "replug") != 0) {
			snprintf(why, whylen, "device is not open");
			return NULL;
		}
		set_unplugged(dev, 0);
		return json_pack("{s:s,s:b}", "done", "replug", "unplugged", 0);
	}
	if (t->fn(s, args, why, whylen) < 0)
		return NULL;
	res = sim_status_json(s);
	json_object_set_new(res, "done", json_string(what));
	return res;
}

KIOSK_EXPORT const struct kiosk_plugin kiosk_hal_plugin = {
        .magic = KIOSK_HAL_MAGIC,
        .abi_major = KIOSK_HAL_ABI_MAJOR,
        .abi_minor = KIOSK_HAL_ABI_MINOR,
        .struct_size = sizeof(struct kiosk_plugin),
        .name = "sim",
        .version = "0.1.0",
        .description = "simulators for every device class, with fault injection",
        .classes = KIOSK_CLASS_ALL,
        .match = match,
        .options = options,
        .init = sim_init,
        .fini = sim_fini,
        .open = sim_open,
        .close = sim_close,
        .command = sim_command,
        .cancel = sim_cancel,
        .status = sim_status,
        .inject = sim_inject,
};
