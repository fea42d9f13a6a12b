#include "devices.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "dev.h"
#include "events.h"
#include "host.h"
#include "log.h"
#include "schema.h"
#include "store.h"
#include "usb.h"
#include "util.h"

static TAILQ_HEAD(, kiosk_dev) devices = TAILQ_HEAD_INITIALIZER(devices);

static const char *const state_names[] = {"opening", "ready", "busy", "offline", "failed"};

static void device_run(struct kiosk_dev *d);

/* The device lets go of r: journal what the command did, for the
 * transaction or flow it served (docs/delivery.md). */
static void device_release(struct kiosk_dev *d, struct kiosk_req *r)
{
	store_audit(d->name, r->cmd, r->flow, r->txn, *r->outcome ? r->outcome : "dropped",
	            strcmp(r->outcome, "ok") ? r->detail : NULL);
	req_release(r);
}
static void device_try_open(struct kiosk_dev *d);

const char *device_name(const struct kiosk_dev *d)
{
	return d->name;
}

enum kiosk_class device_class(const struct kiosk_dev *d)
{
	return d->cls;
}

int device_timeout_ms(const struct kiosk_dev *d)
{
	return d->conf->timeout_ms ? d->conf->timeout_ms : daemon_conf->command_timeout_ms;
}

static void set_state(struct kiosk_dev *d, enum dev_state st, const char *reason)
{
	enum dev_state old = d->state;
	int same_reason = !strcmp(d->reason, reason ? reason : "");

	d->state = st;
	snprintf(d->reason, sizeof(d->reason), "%s", reason ? reason : "");
	utf8_sanitize(d->reason); /* a plugin's text, maybe cut: it goes into JSON */
	if (old == st && same_reason)
		return;
	/* busy <-> ready flips with every command: keep them out of the log */
	if (!((old == DEV_BUSY && st == DEV_READY) || (old == DEV_READY && st == DEV_BUSY)))
		log_msg(st == DEV_FAILED || st == DEV_OFFLINE ? LOG_WARNING : LOG_INFO,
		        "device %s: %s%s%s", d->name, state_names[st], *d->reason ? ": " : "",
		        d->reason);
	events_publish("device.state", d->name,
	               json_pack("{s:s,s:s,s:s}", "state", state_names[st], "previous",
	                         state_names[old], "reason", d->reason));
}

void device_emit(struct kiosk_dev *d, const char *event, json_t *data)
{
	char topic[96];
	snprintf(topic, sizeof(topic), "%s.%s", schema_class_name(d->cls), event);
	events_publish(topic, d->name, data);
}

static void fail_queue(struct kiosk_dev *d, const char *code, const char *why)
{
	struct kiosk_req *r;
	while ((r = TAILQ_FIRST(&d->queue))) {
		TAILQ_REMOVE(&d->queue, r, d_entry);
		req_fail(r, code, "%s: %s", d->name, why);
		device_release(d, r);
	}
}

static void schedule_reopen(struct kiosk_dev *d)
{
	const struct conf *c = daemon_conf;
	/* full jitter, like the sync backoff: a fleet of kiosks that lost a
	 * shared USB hub together must not hammer it in step */
	int ms = d->backoff_ms / 2 + (d->backoff_ms > 1 ? rand() % (d->backoff_ms / 2 + 1) : 0);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	evtimer_add(d->reopen_ev, &tv);
	d->backoff_ms = d->backoff_ms * 2 > c->reopen_max_ms ? c->reopen_max_ms : d->backoff_ms * 2;
}

/* Close the plugin side.  While worker jobs of the device still run, the
 * plugin may still hold the running request: answer it now, ask the plugin
 * to cancel, and let the last job's completion finish the close. */
static void device_close(struct kiosk_dev *d)
{
	struct kiosk_req *r = d->running;

	if (d->grace_ev)
		evtimer_del(d->grace_ev);
	if (r && !r->answered) {
		req_fail(r, "device_offline", "%s: %s", d->name, d->reason);
		if (d->jobs > 0 && d->open) {
			r->cancelled = 1;
			d->plugin->desc->cancel(d, r);
		}
	}
	if (d->jobs > 0)
		return;
	if (d->open) {
		d->open = 0;
		d->plugin->desc->close(d);
	}
	if ((r = d->running)) { /* the plugin is closed: nobody holds it now */
		d->running = NULL;
		device_release(d, r);
	}
	d->priv = NULL;
	device_release_resources(d);
}

static void device_free(struct kiosk_dev *d)
{
	usb_forget(d);
	TAILQ_REMOVE(&devices, d, entry);
	event_free(d->reopen_ev);
	event_free(d->grace_ev);
	conf_device_free(d->conf);
	free(d->name);
	free(d);
}

void device_job_done(struct kiosk_dev *d)
{
	if (--d->jobs > 0)
		return;
	if (d->open && (d->state == DEV_OFFLINE || d->state == DEV_FAILED || d->removing))
		device_close(d);
	if (d->removing && !d->open)
		device_free(d);
}

void device_lost(struct kiosk_dev *d, const char *reason)
{
	if (d->state == DEV_OFFLINE || d->state == DEV_FAILED)
		return;
	set_state(d, DEV_OFFLINE, reason);
	device_close(d);
	fail_queue(d, "device_offline", reason);
	schedule_reopen(d);
}

static void on_reopen(evutil_socket_t fd, short what, void *arg)
{
	struct kiosk_dev *d = arg;
	(void)fd;
	(void)what;
	if (d->jobs > 0) { /* still closing: try again a little later */
		schedule_reopen(d);
		return;
	}
	device_try_open(d);
}

static void device_try_open(struct kiosk_dev *d)
{
	char why[256] = "";

	set_state(d, DEV_OPENING, NULL);
	if (d->plugin->desc->open(d, host_table(), why, sizeof(why)) == 0) {
		d->open = 1;
		d->backoff_ms = daemon_conf->reopen_min_ms;
		set_state(d, DEV_READY, NULL);
		device_run(d);
		return;
	}
	device_release_resources(d);
	d->priv = NULL;
	set_state(d, DEV_OFFLINE, *why ? why : "open failed");
	schedule_reopen(d);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
	struct kiosk_dev *d = arg;
	(void)fd;
	(void)what;
	if (!d->running)
		return;
	log_warnx("device %s: plugin did not finish a cancelled %s within %d ms; reopening",
	          d->name, d->running->cmd, daemon_conf->cancel_grace_ms);
	device_lost(d, "command did not finish after cancel");
}

static struct kiosk_dev *device_new(const struct conf_device *cd)
{
	struct kiosk_dev *d = calloc(1, sizeof(*d));
	char why[300];

	if (!d)
		return NULL;
	d->name = strdup(cd->name);
	d->cls = cd->cls;
	d->conf = conf_device_dup(cd);
	d->backoff_ms = daemon_conf->reopen_min_ms;
	TAILQ_INIT(&d->queue);
	TAILQ_INIT(&d->timers);
	TAILQ_INIT(&d->watches);
	d->reopen_ev = evtimer_new(daemon_base, on_reopen, d);
	d->grace_ev = evtimer_new(daemon_base, on_grace, d);
	TAILQ_INSERT_TAIL(&devices, d, entry);
	d->state = DEV_OPENING;
	d->plugin = plugin_get(cd->plugin, daemon_conf->plugin_path, why, sizeof(why));
	if (!d->plugin) {
		set_state(d, DEV_FAILED, why);
		return d;
	}
	struct diag diag = {0};
	if (plugin_check_device(d->plugin, cd, &diag) < 0) {
		set_state(d, DEV_FAILED, diag.msgs[0]);
		diag_free(&diag);
		d->plugin = NULL;
		return d;
	}
	device_try_open(d);
	return d;
}

int devices_check_conf(const struct conf *c, struct diag *diag)
{
	char why[300];
	int bad = 0;

	for (const struct conf_device *d = c->devices; d; d = d->next) {
		if (!d->enabled || !d->cls || !d->plugin)
			continue; /* conf_load already said what is missing */
		const struct plugin *p = plugin_get(d->plugin, c->plugin_path, why, sizeof(why));
		if (!p) {
			const struct conf_opt *at = d->plugin_at;
			diag_add(diag, at ? at->file : d->file, at ? at->line : d->line,
			         "device %s: %s", d->name, why);
			bad = 1;
		} else if (plugin_check_device(p, d, diag) < 0) {
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}

void devices_start(const struct conf *c)
{
	for (const struct conf_device *cd = c->devices; cd; cd = cd->next)
		if (cd->enabled)
			device_new(cd);
}

static void device_remove(struct kiosk_dev *d, const char *why)
{
	events_publish("device.removed", d->name, json_pack("{s:s}", "reason", why));
	d->removing = 1;
	evtimer_del(d->reopen_ev);
	snprintf(d->reason, sizeof(d->reason), "%s", why);
	fail_queue(d, "device_offline", why);
	device_close(d);
	if (!d->open && d->jobs == 0)
		device_free(d);
}

void devices_apply(const struct conf *c, json_t *changed)
{
	struct kiosk_dev *d, *tmp;

	TAILQ_FOREACH_SAFE(d, &devices, entry, tmp)
	{
		if (d->removing)
			continue;
		const struct conf_device *nd = conf_device_find(c, d->name);
		if (nd && nd->enabled && conf_device_equal(nd, d->conf))
			continue; /* same settings: keep it open */
		if (changed)
			json_array_append_new(changed, json_string(d->name));
		device_remove(d, nd && nd->enabled ? "reconfigured" : "removed from configuration");
	}
	for (const struct conf_device *cd = c->devices; cd; cd = cd->next) {
		if (!cd->enabled)
			continue;
		int exists = 0;
		TAILQ_FOREACH(d, &devices, entry)
		if (!d->removing && !strcmp(d->name, cd->name))
			exists = 1;
		if (exists)
			continue;
		int listed = 0;
		size_t i;
		json_t *v;
		json_array_foreach(changed, i, v) listed |= !strcmp(json_string_value(v), cd->name);
		if (changed && !listed)
			json_array_append_new(changed, json_string(cd->name));
		device_new(cd);
	}
}

void devices_shutdown(void)
{
	struct kiosk_dev *d, *tmp;
	TAILQ_FOREACH_SAFE(d, &devices, entry, tmp)
	device_remove(d, "daemon stopping");
}

struct kiosk_dev *devices_find(const char *name)
{
	struct kiosk_dev *d;
	TAILQ_FOREACH(d, &devices, entry)
	if (!d->removing && !strcmp(d->name, name))
		return d;
	return NULL;
}

struct kiosk_dev *devices_resolve(enum kiosk_class cls, const char *name, const char **code,
                                  char *why, size_t whylen)
{
	struct kiosk_dev *d, *found = NULL;
	int n = 0;

	if (name) {
		if (!(d = devices_find(name))) {
			*code = "unknown_device";
			snprintf(why, whylen, "no device named '%.64s'", name);
			return NULL;
		}
		if (d->cls != cls) {
			*code = "bad_request";
			snprintf(why, whylen, "%s is a %s, not a %s", d->name,
			         schema_class_name(d->cls), schema_class_name(cls));
			return NULL;
		}
		return d;
	}
	TAILQ_FOREACH(d, &devices, entry)
	{
		if (!d->removing && d->cls == cls) {
			found = d;
			n++;
		}
	}
	if (n == 1)
		return found;
	*code = n ? "bad_request" : "unknown_device";
	if (n)
		snprintf(why, whylen, "%d %s devices are configured: name one with \"device\"", n,
		         schema_class_name(cls));
	else
		snprintf(why, whylen, "no %s is configured", schema_class_name(cls));
	return NULL;
}

/* Start queued commands while the device is free.  A plugin may finish a
 * command inside command(): the loop then goes on to the next one here
 * instead of recursing once per queued request. */
static void device_run(struct kiosk_dev *d)
{
	struct kiosk_req *r;

	if (d->in_run)
		return;
	d->in_run = 1;
	while (!d->running && d->open && d->state == DEV_READY && (r = TAILQ_FIRST(&d->queue))) {
		TAILQ_REMOVE(&d->queue, r, d_entry);
		d->running = r;
		r->running = 1;
		set_state(d, DEV_BUSY, NULL);
		d->plugin->desc->command(d, r, r->verb, r->args);
	}
	d->in_run = 0;
}

void device_done(struct kiosk_dev *d, struct kiosk_req *r)
{
	if (d->running != r)
		return; /* finished twice, or after the device was reset */
	d->running = NULL;
	evtimer_del(d->grace_ev);
	device_release(d, r);
	if (d->state == DEV_BUSY)
		set_state(d, DEV_READY, NULL);
	device_run(d);
}

void devices_submit(struct kiosk_dev *d, struct kiosk_req *r)
{
	if (d->state == DEV_FAILED || d->state == DEV_OFFLINE) {
		req_fail(r, "device_offline", "%s: %s", d->name, d->reason);
		return;
	}
	r->dev = d;
	req_hold(r, devices_abort, d);
	req_arm(r);
	TAILQ_INSERT_TAIL(&d->queue, r, d_entry);
	device_run(d);
}

void devices_abort(struct kiosk_req *r, const char *code)
{
	struct kiosk_dev *d = r->dev;

	r->cancelled = 1;
	if (!r->running) {
		TAILQ_REMOVE(&d->queue, r, d_entry);
		req_fail(r, code, "%s: %s before it started", r->cmd,
		         !strcmp(code, "timeout") ? "timed out" : "cancelled");
		device_release(d, r);
		return;
	}
	if (!strcmp(code, "timeout"))
		req_fail(r, code, "%s: %s did not finish within %d ms", d->name, r->cmd,
		         r->timeout_ms);
	else
		req_fail(r, code, "%s: %s cancelled", d->name, r->cmd);
	struct timeval tv = {daemon_conf->cancel_grace_ms / 1000,
	                     (daemon_conf->cancel_grace_ms % 1000) * 1000};
	evtimer_add(d->grace_ev, &tv);
	d->plugin->desc->cancel(d, r);
}

json_t *devices_inject(struct kiosk_dev *d, const char *what, json_t *args, char *why,
                       size_t whylen)
{
	json_t *res;

	if (!d->plugin || !d->plugin->desc->inject) {
		snprintf(why, whylen, "%s (plugin %s) is not a simulator", d->name,
		         d->plugin ? d->plugin->name : d->conf->plugin);
		return NULL;
	}
	int was_offline = d->state == DEV_OFFLINE;
	res = d->plugin->desc->inject(d, what, args, why, whylen);
	/* a simulated replug should not wait out the backoff (an unplug that
	 * just took the device offline should) */
	if (res && was_offline)
		device_replugged(d);
	return res;
}

void device_replugged(struct kiosk_dev *d)
{
	if (d->state != DEV_OFFLINE || d->jobs > 0 || d->removing || !d->plugin)
		return;
	evtimer_del(d->reopen_ev);
	d->backoff_ms = daemon_conf->reopen_min_ms;
	device_try_open(d);
}

json_t *devices_status(struct kiosk_dev *d, char *why, size_t whylen)
{
	if (!d->open || !d->plugin) {
		snprintf(why, whylen, "%s: %s", d->name, *d->reason ? d->reason : "not open");
		return NULL;
	}
	json_t *st = d->plugin->desc->status(d);
	return st ? st : json_object();
}

json_t *devices_json(int with_status)
{
	json_t *a = json_array();
	struct kiosk_dev *d;

	TAILQ_FOREACH(d, &devices, entry)
	{
		if (d->removing)
			continue;
		json_t *o =
		        json_pack("{s:s,s:s,s:s,s:s,s:o}", "name", d->name, "class",
		                  schema_class_name(d->cls), "plugin", d->conf->plugin, "state",
		                  state_names[d->state], "capabilities", schema_verbs_json(d->cls));
		if (*d->reason)
			json_object_set_new(o, "reason", json_string(d->reason));
		if (with_status && d->open) {
			json_t *st = d->plugin->desc->status(d);
			json_object_set_new(o, "status", st ? st : json_object());
		}
		json_array_append_new(a, o);
	}
	return a;
}

json_t *devices_state_counts(void)
{
	json_t *o = json_object();
	struct kiosk_dev *d;
	for (size_t i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
		json_object_set_new(o, state_names[i], json_integer(0));
	TAILQ_FOREACH(d, &devices, entry)
	{
		json_t *v = json_object_get(o, state_names[d->state]);
		json_integer_set(v, json_integer_value(v) + 1);
	}
	return o;
}
