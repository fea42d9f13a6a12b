/*
 * sane_dev.c -- libsane, called only from worker jobs (see sane_dev.h).
 *
 * Options are found by name and set from text.  Every value is checked
 * against the option's own constraint first, so a bad value is refused
 * with the device's real choices in the message instead of being clamped
 * silently by the backend.
 */
#include "sane_dev.h"

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <sane/saneopts.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static pthread_mutex_t sane_lock = PTHREAD_MUTEX_INITIALIZER;
static int sane_inited; /* under sane_lock */

/* Backends that read in a sanei_thread reset SIGTERM (and SIGPIPE) to
 * their defaults for the whole process; the daemon keeps those signals
 * blocked in every thread and reads them from a signalfd (src/sig.c), so
 * nothing here needs to put dispositions back. */

static void *idle_thread(void *arg)
{
	(void)arg;
	for (;;)
		pause(); /* a cancellation point */
	return NULL;
}

/* The first pthread_cancel() in a process makes glibc load libgcc_s for
 * the unwinder, with the loader's lock held, from inside the cancelled
 * thread's signal handler; a reader cancelled at that moment (see the
 * reader cancellation note in README.md) leaves the lock taken and the
 * next pthread_create() hangs (seen here).  Cancel a thread of our own
 * once, at a quiet moment, so that the loading is done. */
static void unwinder_ready(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, idle_thread, NULL) != 0)
		return;
	pthread_cancel(t);
	pthread_join(t, NULL);
}

static int fail(struct sdev_err *err, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(struct sdev_err *err, const char *code, const char *fmt, ...)
{
	va_list ap;

	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->why, sizeof(err->why), fmt, ap);
	va_end(ap);
	return -1;
}

static SANE_Int find_option(SANE_Handle h, const char *name, const SANE_Option_Descriptor **out)
{
	const SANE_Option_Descriptor *d;

	for (SANE_Int i = 1; (d = sane_get_option_descriptor(h, i)); i++)
		if (d->name && !strcmp(d->name, name)) {
			*out = d;
			return i;
		}
	return -1;
}

/* The constraint of a number option, as text for messages. */
static void describe_numbers(const SANE_Option_Descriptor *d, char *buf, size_t len)
{
	int fixed = d->type == SANE_TYPE_FIXED;
	size_t n = 0;

	buf[0] = 0;
	if (d->constraint_type == SANE_CONSTRAINT_RANGE) {
		const SANE_Range *r = d->constraint.range;
		snprintf(buf, len, "%g to %g", fixed ? SANE_UNFIX(r->min) : r->min,
		         fixed ? SANE_UNFIX(r->max) : r->max);
		return;
	}
	if (d->constraint_type != SANE_CONSTRAINT_WORD_LIST)
		return;
	for (SANE_Int i = 1; i <= d->constraint.word_list[0] && n + 16 < len; i++) {
		SANE_Word w = d->constraint.word_list[i];
		n += (size_t)snprintf(buf + n, len - n, "%s%g", i > 1 ? ", " : "",
		                      fixed ? SANE_UNFIX(w) : w);
	}
}

static int number_allowed(const SANE_Option_Descriptor *d, SANE_Word w)
{
	if (d->constraint_type == SANE_CONSTRAINT_RANGE)
		return w >= d->constraint.range->min && w <= d->constraint.range->max;
	if (d->constraint_type == SANE_CONSTRAINT_WORD_LIST) {
		for (SANE_Int i = 1; i <= d->constraint.word_list[0]; i++)
			if (d->constraint.word_list[i] == w)
				return 1;
		return 0;
	}
	return 1;
}

static int to_number(const SANE_Option_Descriptor *d, const char *value, SANE_Word *w,
                     struct sdev_err *err)
{
	char allowed[160];
	double x;

	if (sane_parse_number(value, &x) < 0 || (d->type == SANE_TYPE_INT && x != floor(x)))
		return fail(err, "bad_request", "%s: '%.64s' is not a number for it", d->name,
		            value);
	*w = d->type == SANE_TYPE_FIXED ? SANE_FIX(x) : (SANE_Word)x;
	if (number_allowed(d, *w))
		return 0;
	describe_numbers(d, allowed, sizeof(allowed));
	return fail(err, "bad_request", "%s: %s is not one this scanner takes (%s)", d->name, value,
	            allowed);
}

static void describe_strings(const SANE_Option_Descriptor *d, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = 0;
	for (const SANE_String_Const *s = d->constraint.string_list; *s && n + 2 < len; s++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s",
		                      s == d->constraint.string_list ? "" : ", ", *s);
}

static int to_string(const SANE_Option_Descriptor *d, const char *value, char *buf, size_t len,
                     struct sdev_err *err)
{
	char allowed[200];

	if (d->constraint_type == SANE_CONSTRAINT_STRING_LIST) {
		const char *match = NULL;
		for (const SANE_String_Const *s = d->constraint.string_list; *s && !match; s++)
			if (!strcasecmp(*s, value))
				match = *s; /* the backend's spelling */
		if (!match) {
			describe_strings(d, allowed, sizeof(allowed));
			return fail(err, "bad_request", "%s: '%.64s' is not one of %s", d->name,
			            value, allowed);
		}
		value = match;
	}
	if (strlen(value) >= len || (SANE_Int)strlen(value) >= d->size)
		return fail(err, "bad_request", "%s: '%.64s' is too long", d->name, value);
	strcpy(buf, value);
	return 0;
}

/* Turn text into the option's value; 0, or -1 with err. */
static int to_value(const SANE_Option_Descriptor *d, const char *value, void *buf, size_t len,
                    struct sdev_err *err)
{
	int b;

	if ((d->type == SANE_TYPE_INT || d->type == SANE_TYPE_FIXED || d->type == SANE_TYPE_BOOL) &&
	    d->size != sizeof(SANE_Word))
		return fail(err, "bad_request", "%s: lists of values cannot be set", d->name);
	switch (d->type) {
	case SANE_TYPE_BOOL:
		if (sane_parse_bool(value, &b) < 0)
			return fail(err, "bad_request", "%s: '%.64s' is not yes or no", d->name,
			            value);
		*(SANE_Word *)buf = b ? SANE_TRUE : SANE_FALSE;
		return 0;
	case SANE_TYPE_INT:
	case SANE_TYPE_FIXED:
		return to_number(d, value, buf, err);
	case SANE_TYPE_STRING:
		return to_string(d, value, buf, len, err);
	default:
		return fail(err, "bad_request", "%s: buttons and groups cannot be set", d->name);
	}
}

/* Set option `name` from text.  Unknown, inactive or read-only options and
 * values outside the option's constraint are bad_request. */
static int set_option(SANE_Handle h, const char *name, const char *value, struct sdev_err *err)
{
	const SANE_Option_Descriptor *d;
	SANE_Word buf[256]; /* a string option of up to 1 KiB, or one word */
	SANE_Int i = find_option(h, name, &d), info = 0;
	SANE_Status st;

	if (i < 0)
		return fail(err, "bad_request", "no option '%.64s' on this scanner", name);
	if (!SANE_OPTION_IS_ACTIVE(d->cap) || !SANE_OPTION_IS_SETTABLE(d->cap))
		return fail(err, "bad_request", "option %s is %s", name,
		            SANE_OPTION_IS_ACTIVE(d->cap) ? "read-only" : "inactive");
	memset(buf, 0, sizeof(buf));
	if (to_value(d, value, buf, sizeof(buf), err) < 0)
		return -1;
	st = sane_control_option(h, i, SANE_ACTION_SET_VALUE, buf, &info);
	if (st != SANE_STATUS_GOOD)
		return fail(err, st == SANE_STATUS_INVAL ? "bad_request" : "device_error",
		            "option %s: %s", name, sane_strstatus(st));
	return 0;
}

static int apply_kvs(SANE_Handle h, const struct sane_kvs *kvs, struct sdev_err *err)
{
	for (size_t i = 0; i < kvs->n; i++)
		if (set_option(h, kvs->kv[i].name, kvs->kv[i].value, err) < 0) {
			char why[sizeof(err->why)];
			memcpy(why, err->why, sizeof(why));
			snprintf(err->why, sizeof(err->why), "sane_options: %.230s", why);
			return -1;
		}
	return 0;
}

static json_t *string_choices(SANE_Handle h, const char *name)
{
	const SANE_Option_Descriptor *d;
	json_t *a = json_array();

	if (find_option(h, name, &d) >= 0 && d->type == SANE_TYPE_STRING &&
	    d->constraint_type == SANE_CONSTRAINT_STRING_LIST)
		for (const SANE_String_Const *s = d->constraint.string_list; *s; s++)
			json_array_append_new(a, json_string(*s));
	return a;
}

static json_t *resolutions(SANE_Handle h)
{
	const SANE_Option_Descriptor *d;
	int fixed;

	if (find_option(h, SANE_NAME_SCAN_RESOLUTION, &d) < 0)
		return json_null();
	fixed = d->type == SANE_TYPE_FIXED;
	if (d->constraint_type == SANE_CONSTRAINT_RANGE)
		return json_pack(
		        "{s:f,s:f}", "min",
		        fixed ? SANE_UNFIX(d->constraint.range->min) : d->constraint.range->min,
		        "max",
		        fixed ? SANE_UNFIX(d->constraint.range->max) : d->constraint.range->max);
	json_t *a = json_array();
	if (d->constraint_type == SANE_CONSTRAINT_WORD_LIST)
		for (SANE_Int i = 1; i <= d->constraint.word_list[0]; i++) {
			SANE_Word w = d->constraint.word_list[i];
			json_array_append_new(a, json_real(fixed ? SANE_UNFIX(w) : w));
		}
	return a;
}

/* Backends keep static state that nothing frees (sanei_config's path
 * list), and dll's sane_exit() unloads them, which makes it unreachable:
 * a leak on every daemon stop, and noise in every ASan run.  Keep the
 * backend of the opened device mapped; its exit function still runs. */
static void pin_backend(const char *device)
{
	char lib[96];
	size_t n = strcspn(device, ":");

	if (n == 0 || n > 40)
		return;
	snprintf(lib, sizeof(lib), "libsane-%.*s.so.1", (int)n, device);
	dlopen(lib, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

/* Names and models only: nothing personal is in a SANE device list. */
static json_t *device_list(void)
{
	const SANE_Device **list = NULL;
	json_t *a = json_array();

	if (sane_get_devices(&list, SANE_TRUE) != SANE_STATUS_GOOD || !list)
		return a;
	for (int i = 0; list[i]; i++)
		if (list[i]->name)
			pin_backend(list[i]->name);
	for (int i = 0; list[i]; i++)
		json_array_append_new(a, json_pack("{s:s?,s:s?,s:s?,s:s?}", "name", list[i]->name,
		                                   "vendor", list[i]->vendor, "model",
		                                   list[i]->model, "type", list[i]->type));
	return a;
}

static int connect_locked(const char *want, const struct sane_kvs *kvs, SANE_Handle *h, char *name,
                          size_t namelen, json_t *info, struct sdev_err *err)
{
	json_t *devs;
	SANE_Status st;
	SANE_Int version;

	if (!sane_inited) {
		unwinder_ready();
		if ((st = sane_init(&version, NULL)) != SANE_STATUS_GOOD)
			return fail(err, "device_offline", "sane_init: %s", sane_strstatus(st));
		sane_inited = 1;
	}
	devs = device_list();
	json_object_set_new(info, "devices", devs);
	if (!*want && json_array_size(devs) == 0)
		return fail(err, "device_offline", "no scanner found");
	if (!*want)
		want = json_string_value(json_object_get(json_array_get(devs, 0), "name"));
	snprintf(name, namelen, "%s", want ? want : "");
	if ((st = sane_open(name, h)) != SANE_STATUS_GOOD)
		return fail(err, "device_offline", "sane_open(%.100s): %s", name,
		            sane_strstatus(st));
	pin_backend(name);
	json_object_set_new(info, "modes", string_choices(*h, SANE_NAME_SCAN_MODE));
	json_object_set_new(info, "sources", string_choices(*h, SANE_NAME_SCAN_SOURCE));
	json_object_set_new(info, "resolutions", resolutions(*h));
	if (apply_kvs(*h, kvs, err) < 0) {
		sane_close(*h);
		*h = NULL;
		return -1;
	}
	return 0;
}

int sdev_connect(const char *want, const struct sane_kvs *kvs, SANE_Handle *h, char *name,
                 size_t namelen, json_t **info, struct sdev_err *err)
{
	int rc;

	*h = NULL;
	*info = json_object();
	pthread_mutex_lock(&sane_lock);
	rc = connect_locked(want, kvs, h, name, namelen, *info, err);
	pthread_mutex_unlock(&sane_lock);
	return rc;
}

/* The descriptor of a string option with a list of choices, or NULL. */
static const SANE_Option_Descriptor *choices(SANE_Handle h, const char *name)
{
	const SANE_Option_Descriptor *d = NULL;

	if (find_option(h, name, &d) < 0 || d->type != SANE_TYPE_STRING ||
	    d->constraint_type != SANE_CONSTRAINT_STRING_LIST || !SANE_OPTION_IS_ACTIVE(d->cap))
		return NULL;
	return d;
}

static int setup_source(SANE_Handle h, const char *source, struct sdev_err *err)
{
	const SANE_Option_Descriptor *d = choices(h, SANE_NAME_SCAN_SOURCE);
	const char *word;

	if (!d) /* one source only: a flatbed */
		return strcmp(source, "flatbed")
		               ? fail(err, "bad_request", "this scanner has no document feeder")
		               : 0;
	if (!(word = sane_pick_source(d->constraint.string_list, source)))
		return fail(err, "bad_request", "this scanner has no %s source",
		            strcmp(source, "adf") ? "flatbed" : "document feeder");
	return set_option(h, SANE_NAME_SCAN_SOURCE, word, err);
}

static int setup_mode(SANE_Handle h, const char *mode, struct sdev_err *err)
{
	const SANE_Option_Descriptor *d = choices(h, SANE_NAME_SCAN_MODE);
	const char *word;
	char have[200];

	if (!d) /* no choice: the scanner has one mode */
		return 0;
	if (!(word = sane_pick_mode(d->constraint.string_list, mode))) {
		describe_strings(d, have, sizeof(have));
		return fail(err, "bad_request", "this scanner has no %s mode (it has %s)", mode,
		            have);
	}
	return set_option(h, SANE_NAME_SCAN_MODE, word, err);
}

static int setup_resolution(SANE_Handle h, int *res, struct sdev_err *err)
{
	const SANE_Option_Descriptor *d;
	SANE_Int i = find_option(h, SANE_NAME_SCAN_RESOLUTION, &d);
	SANE_Word w;
	char text[16];

	if (i < 0)
		return 0; /* fixed resolution: reported as asked */
	snprintf(text, sizeof(text), "%d", *res);
	if (set_option(h, SANE_NAME_SCAN_RESOLUTION, text, err) < 0) {
		if (!strncmp(err->why, "resolution: ", 12)) /* say it in the class's words */
			memmove(err->why, err->why + 12, strlen(err->why + 12) + 1);
		return -1;
	}
	/* a backend may round to its steps: report what it took */
	if (d->size == sizeof(SANE_Word) &&
	    sane_control_option(h, i, SANE_ACTION_GET_VALUE, &w, NULL) == SANE_STATUS_GOOD)
		*res = d->type == SANE_TYPE_FIXED ? (int)lround(SANE_UNFIX(w)) : (int)w;
	return 0;
}

int sdev_setup(SANE_Handle h, const char *source, const char *mode, int *res,
               const struct sane_kvs *kvs, struct sdev_err *err)
{
	int rc;

	pthread_mutex_lock(&sane_lock);
	rc = setup_source(h, source, err) < 0 || setup_mode(h, mode, err) < 0 ||
	                     setup_resolution(h, res, err) < 0 || apply_kvs(h, kvs, err) < 0
	             ? -1
	             : 0;
	pthread_mutex_unlock(&sane_lock);
	return rc;
}

SANE_Status sdev_start(SANE_Handle h, SANE_Parameters *p)
{
	SANE_Status st;

	pthread_mutex_lock(&sane_lock);
	st = sane_start(h);
	if (st == SANE_STATUS_GOOD)
		st = sane_get_parameters(h, p);
	pthread_mutex_unlock(&sane_lock);
	return st;
}

SANE_Status sdev_read(SANE_Handle h, SANE_Byte *buf, SANE_Int max, SANE_Int *len)
{
	SANE_Status st;

	pthread_mutex_lock(&sane_lock);
	st = sane_read(h, buf, max, len);
	pthread_mutex_unlock(&sane_lock);
	return st;
}

/* Not under sane_lock: the read it stops holds it, and SANE means
 * sane_cancel() to be called while sane_read() blocks elsewhere. */
void sdev_cancel(SANE_Handle h)
{
	sane_cancel(h);
}

void sdev_close(SANE_Handle h)
{
	pthread_mutex_lock(&sane_lock);
	sane_close(h);
	pthread_mutex_unlock(&sane_lock);
}

void sdev_exit(void)
{
	pthread_mutex_lock(&sane_lock);
	if (sane_inited)
		sane_exit();
	sane_inited = 0;
	pthread_mutex_unlock(&sane_lock);
}
