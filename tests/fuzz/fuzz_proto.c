/* libFuzzer target: the UI protocol, one request per input line, through
 * proto_handle() into the core commands and -- with a plugin linked in
 * here that serves every class -- the class schemas, the device queue,
 * progress, cancel, timeouts, lost devices and events.
 *
 * A line is sent by an admin session; a line that starts with a space
 * (still valid JSON) by a ui session, which is closed at the end of the
 * input with its requests still running.
 *
 * Checked on every input: every line the daemon writes is one JSON
 * object; every non-blank admin line gets exactly one final reply; no
 * request is left open once the devices are shut down.
 *
 * FUZZ_PROTO_TRACE=1 build-fuzz/fuzz_proto FILE shows the conversation. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "daemon.h"
#include "devices.h"
#include "ipc.h"
#include "log.h"
#include "plugin.h"
#include "proto.h"
#include "req.h"

static const struct kiosk_host *host;
static struct session *admin;
static long admin_lines, admin_finals;
static int trace; /* FUZZ_PROTO_TRACE=1: print what the daemon writes */

/* ---- a plugin for every class ---- */

struct fdev {
	struct kiosk_req *held; /* the running request we answer later */
	const char *verb;
	struct kiosk_timer *timer;
};

static int f_open(struct kiosk_dev *d, const struct kiosk_host *h, char *why, size_t whylen)
{
	host = h;
	if (!strcmp(h->dev_name(d), "broken0")) {
		snprintf(why, whylen, "no such port");
		return -1;
	}
	h->set_priv(d, calloc(1, sizeof(struct fdev)));
	return 0;
}

static void f_close(struct kiosk_dev *d)
{
	free(host->priv(d));
	host->set_priv(d, NULL);
}

static void on_later(void *arg)
{
	struct kiosk_dev *d = arg;
	struct fdev *f = host->priv(d);
	struct kiosk_req *r = f->held;

	f->timer = NULL;
	f->held = NULL;
	if (r)
		host->reply(r, json_pack("{s:s}", "done", f->verb));
}

static void f_command(struct kiosk_dev *d, struct kiosk_req *r, const char *verb, json_t *args)
{
	struct fdev *f = host->priv(d);

	if (!strcmp(verb, "status")) {
		host->reply(r, json_pack("{s:s}", "state", "ok"));
	} else if (!strcmp(verb, "eject")) {
		host->fail(r, "device_error", "%s: jammed", host->dev_name(d));
	} else if (!strcmp(verb, "open") &&
	           json_integer_value(json_object_get(args, "door")) == 13) {
		host->lost(d, "unplugged"); /* fails r, closes d: both are gone now */
	} else if (!strcmp(verb, "print")) {
		host->progress(
		        r, json_pack("{s:I}", "blocks",
		                     (json_int_t)json_array_size(json_object_get(args, "blocks"))));
		host->emit(d, "printed", NULL);
		host->reply(r, NULL);
	} else {
		/* answered later: "wait" only by cancel, timeout or close, the rest
		 * on the next loop turn */
		f->held = r;
		f->verb = verb;
		host->progress(r, NULL);
		if (strcmp(verb, "wait"))
			f->timer = host->timer_start(d, 0, 0, on_later, d);
	}
}

static void f_cancel(struct kiosk_dev *d, struct kiosk_req *r)
{
	struct fdev *f = host->priv(d);

	if (!host->cancelled(r))
		abort(); /* the core cancels only what it marked cancelled */
	if (f->held != r || !strcmp(f->verb, "wait"))
		return; /* left to the grace timer or the close */
	host->timer_stop(f->timer);
	f->timer = NULL;
	f->held = NULL;
	host->fail(r, "cancelled", "stopped");
}

static json_t *f_status(struct kiosk_dev *d)
{
	struct fdev *f = host->priv(d);
	return json_pack("{s:b}", "holding", f && f->held);
}

static json_t *f_inject(struct kiosk_dev *d, const char *what, json_t *args, char *why,
                        size_t whylen)
{
	if (!strcmp(what, "lost")) {
		host->lost(d, "injected");
	} else if (!strcmp(what, "event")) {
		json_t *data = json_object_get(args, "data");
		host->emit(d, "injected", data ? json_incref(data) : NULL);
	} else if (strcmp(what, "replug")) {
		snprintf(why, whylen, "what: unknown '%.32s'", what);
		return NULL;
	}
	return json_object();
}

static const struct kiosk_plugin fake = {
        .magic = KIOSK_HAL_MAGIC,
        .abi_major = KIOSK_HAL_ABI_MAJOR,
        .abi_minor = KIOSK_HAL_ABI_MINOR,
        .struct_size = sizeof(struct kiosk_plugin),
        .name = "fake",
        .version = "1",
        .classes = KIOSK_CLASS_ALL,
        .open = f_open,
        .close = f_close,
        .command = f_command,
        .cancel = f_cancel,
        .status = f_status,
        .inject = f_inject,
};

static const char config[] = "[daemon]\n"
                             "log_level = err\n"
                             "[device card0]\nclass = cardreader\nplugin = fake\n"
                             "[device printer0]\nclass = printer\nplugin = fake\n"
                             "[device printer1]\nclass = printer\nplugin = fake\n"
                             "[device scanner0]\nclass = scanner\nplugin = fake\n"
                             "[device idreader0]\nclass = idreader\nplugin = fake\n"
                             "[device broken0]\nclass = idreader\nplugin = fake\n"
                             "[device camera0]\nclass = camera\nplugin = fake\n"
                             "timeout_ms = 60000\n"
                             "[device audio0]\nclass = audio\nplugin = fake\n"
                             "[device qr0]\nclass = barcode\nplugin = fake\n"
                             "[device locker0]\nclass = locker\nplugin = fake\n"
                             "[device cabinet0]\nclass = sensor\nplugin = fake\n"
                             "[device climate0]\nclass = actuator\nplugin = fake\n"
                             "[device off0]\nclass = scanner\nplugin = fake\n"
                             "enabled = no\n";

static void sink(struct session *s, const char *line, size_t len)
{
	json_error_t err;
	json_t *m;

	if (trace)
		fprintf(stderr, "%s> %.*s", s == admin ? "admin" : "ui", (int)len, line);
	if (!len || line[len - 1] != '\n' || memchr(line, '\n', len - 1))
		abort(); /* one line, newline-terminated */
	if (!(m = json_loadb(line, len - 1, JSON_REJECT_DUPLICATES, &err)) || !json_is_object(m))
		abort();
	if (s == admin && json_object_get(m, "ok"))
		admin_finals++;
	json_decref(m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct diag diag = {0};
	(void)argc;
	(void)argv;

	trace = getenv("FUZZ_PROTO_TRACE") != NULL;
	log_init("fuzz", trace ? LOG_DEBUG : LOG_EMERG);
	daemon_base = event_base_new();
	clock_gettime(CLOCK_MONOTONIC, &daemon_started);
	/* config.reload re-reads this path: it does not exist, so a reload is
	 * refused and the configuration stays */
	daemon_conf = conf_load_string("/nonexistent/kioskd-fuzz.conf", config, &diag);
	if (!daemon_base || !daemon_conf)
		abort();
	diag_free(&diag);
	plugin_register_builtin("fake", &fake);
	admin = session_fake(ROLE_ADMIN);
	session_fake_sink = sink;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session *ui = session_fake(ROLE_UI);
	const char *p = (const char *)data, *end = p + size;

	admin_lines = admin_finals = 0;
	devices_start(daemon_conf);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *line = malloc(len + 1);
		struct session *s = len && p[0] == ' ' ? ui : admin;

		memcpy(line, p, len);
		line[len] = 0; /* like ipc.c: NUL-terminated, without the newline */
		if (s == admin && !(len == 0 || (len == 1 && line[0] == '\r')))
			admin_lines++;
		proto_handle(s, line, len);
		free(line);
		/* timers that are due: replies "on the next loop turn" */
		event_base_loop(daemon_base, EVLOOP_NONBLOCK);
		p += len + (nl != NULL);
	}
	/* the ui client goes away with its requests running, then the daemon
	 * stops its devices: everything left must be answered now */
	session_fake_free(ui);
	devices_shutdown();
	event_base_loop(daemon_base, EVLOOP_NONBLOCK);
	if (!TAILQ_EMPTY(session_reqs(admin)))
		abort(); /* a request left open */
	if (admin_finals != admin_lines)
		abort(); /* not exactly one final reply per request */
	json_array_clear(session_topics(admin));
	return 0;
}
