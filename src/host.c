/* The host services plugins call.  Every entry runs on the loop thread. */
#include "host.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "daemon.h"
#include "dev.h"
#include "log.h"
#include "usb.h"
#include "worker.h"

static const char *h_dev_name(const struct kiosk_dev *d)
{
	return d->name;
}

static enum kiosk_class h_dev_class(const struct kiosk_dev *d)
{
	return d->cls;
}

static const char *h_config(const struct kiosk_dev *d, const char *key)
{
	const char *v = conf_device_opt(d->conf, key);
	return v ? v : (d->plugin ? plugin_option_default(d->plugin, key) : NULL);
}

static void h_set_priv(struct kiosk_dev *d, void *priv)
{
	d->priv = priv;
}

static void *h_priv(const struct kiosk_dev *d)
{
	return d->priv;
}

static void h_log(const struct kiosk_dev *d, int level, const char *fmt, ...)
{
	char msg[800];
	va_list ap;

	if (level < LOG_ERR)
		level = LOG_ERR;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (d)
		log_msg(level, "device %s: %s", d->name, msg);
	else
		log_msg(level, "plugin: %s", msg);
}

static void timer_free(struct kiosk_timer *t)
{
	if (!t->detached)
		TAILQ_REMOVE(&t->dev->timers, t, entry);
	event_free(t->ev);
	free(t);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct kiosk_timer *t = arg;
	(void)fd;
	(void)what;
	t->firing = 1;
	t->cb(t->arg);
	t->firing = 0;
	if (!t->repeat || t->stopped)
		timer_free(t);
}

static struct kiosk_timer *h_timer_start(struct kiosk_dev *d, uint32_t ms, int repeat, kiosk_cb cb,
                                         void *arg)
{
	struct kiosk_timer *t = calloc(1, sizeof(*t));
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	if (!t)
		return NULL;
	t->ev = event_new(daemon_base, -1, repeat ? EV_PERSIST : 0, on_timer, t);
	if (!t->ev) {
		free(t);
		return NULL;
	}
	t->dev = d;
	t->cb = cb;
	t->arg = arg;
	t->repeat = !!repeat;
	TAILQ_INSERT_TAIL(&d->timers, t, entry);
	evtimer_add(t->ev, &tv);
	return t;
}

static void h_timer_stop(struct kiosk_timer *t)
{
	if (!t)
		return;
	if (t->firing) {
		t->stopped = 1;
		evtimer_del(t->ev);
		return;
	}
	timer_free(t);
}

static void on_fd(evutil_socket_t fd, short what, void *arg)
{
	struct kiosk_watch *w = arg;
	w->cb(fd, (what & EV_READ ? KIOSK_FD_READ : 0) | (what & EV_WRITE ? KIOSK_FD_WRITE : 0),
	      w->arg);
}

static struct kiosk_watch *h_watch_fd(struct kiosk_dev *d, int fd, int what, kiosk_fd_cb cb,
                                      void *arg)
{
	struct kiosk_watch *w = calloc(1, sizeof(*w));
	short ev = EV_PERSIST | (what & KIOSK_FD_READ ? EV_READ : 0) |
	           (what & KIOSK_FD_WRITE ? EV_WRITE : 0);

	if (!w)
		return NULL;
	if (!(w->ev = event_new(daemon_base, fd, ev, on_fd, w)) || event_add(w->ev, NULL) < 0) {
		if (w->ev)
			event_free(w->ev);
		free(w);
		return NULL;
	}
	w->dev = d;
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&d->watches, w, entry);
	return w;
}

static void h_unwatch_fd(struct kiosk_watch *w)
{
	if (!w)
		return;
	TAILQ_REMOVE(&w->dev->watches, w, entry);
	event_free(w->ev);
	free(w);
}

void device_release_resources(struct kiosk_dev *d)
{
	struct kiosk_timer *t;
	struct kiosk_watch *w;
	while ((t = TAILQ_FIRST(&d->timers))) {
		if (!t->firing) {
			timer_free(t);
			continue;
		}
		/* the device closed from inside this timer's callback: on_timer
		 * frees it once the callback returns */
		TAILQ_REMOVE(&d->timers, t, entry);
		t->detached = 1;
		t->stopped = 1;
		evtimer_del(t->ev);
	}
	while ((w = TAILQ_FIRST(&d->watches)))
		h_unwatch_fd(w);
}

static void h_emit(struct kiosk_dev *d, const char *event, json_t *data)
{
	device_emit(d, event, data);
}

static void h_reply(struct kiosk_req *r, json_t *result)
{
	struct kiosk_dev *d = r->dev;
	req_reply(r, result);
	device_done(d, r);
}

static void h_fail(struct kiosk_req *r, const char *code, const char *fmt, ...)
{
	struct kiosk_dev *d = r->dev;
	va_list ap;
	va_start(ap, fmt);
	req_vfail(r, code, fmt, ap);
	va_end(ap);
	device_done(d, r);
}

static void h_progress(struct kiosk_req *r, json_t *data)
{
	req_progress(r, data);
}

static int h_cancelled(const struct kiosk_req *r)
{
	return r->cancelled;
}

static struct kiosk_dev *h_req_dev(const struct kiosk_req *r)
{
	return r->dev;
}

static void h_lost(struct kiosk_dev *d, const char *reason)
{
	if (!usb_defer_lost(d, reason))
		device_lost(d, reason);
}

struct job {
	struct kiosk_dev *dev;
	kiosk_cb fn, done;
	void *arg;
};

static void job_run(void *arg)
{
	struct job *j = arg;
	j->fn(j->arg);
}

static void job_done(void *arg)
{
	struct job *j = arg;
	j->done(j->arg);
	device_job_done(j->dev);
	free(j);
}

static int h_run_blocking(struct kiosk_dev *d, kiosk_cb fn, kiosk_cb done, void *arg)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return -1;
	*j = (struct job){d, fn, done, arg};
	d->jobs++;
	if (worker_submit(job_run, job_done, j) < 0) {
		d->jobs--;
		free(j);
		return -1;
	}
	return 0;
}

static int h_blob_put(struct kiosk_dev *d, const void *data, size_t len, const char *mime,
                      char id[KIOSK_BLOB_ID_SIZE])
{
	(void)mime;
	if (blob_put(data, len, id) < 0) {
		log_warn("device %s: cannot store a blob of %zu bytes", d->name, len);
		return -1;
	}
	return 0;
}

static int h_blob_get(struct kiosk_dev *d, const char *id, void **data, size_t *len)
{
	(void)d;
	return blob_get(id, data, len);
}

static struct libusb_context *h_usb_context(void)
{
	return usb_context();
}

static const struct kiosk_host host = {
        .struct_size = sizeof(struct kiosk_host),
        .abi_major = KIOSK_HAL_ABI_MAJOR,
        .abi_minor = KIOSK_HAL_ABI_MINOR,
        .dev_name = h_dev_name,
        .dev_class = h_dev_class,
        .config = h_config,
        .set_priv = h_set_priv,
        .priv = h_priv,
        .log = h_log,
        .timer_start = h_timer_start,
        .timer_stop = h_timer_stop,
        .watch_fd = h_watch_fd,
        .unwatch_fd = h_unwatch_fd,
        .emit = h_emit,
        .reply = h_reply,
        .fail = h_fail,
        .progress = h_progress,
        .cancelled = h_cancelled,
        .req_dev = h_req_dev,
        .lost = h_lost,
        .run_blocking = h_run_blocking,
        .blob_put = h_blob_put,
        .blob_get = h_blob_get,
        .usb_context = h_usb_context,
        .usb_open = usb_open,
        .usb_close = usb_close,
};

const struct kiosk_host *host_table(void)
{
	return &host;
}
