/* The daemon's libusb context.  libusb hands us its file descriptors
 * (usbfs nodes, its timerfd, the hotplug monitor); we watch them on the
 * loop and let libusb run its handlers when one is ready, so transfer and
 * hotplug callbacks arrive on the loop thread like everything else and no
 * thread spins in libusb_handle_events().  The context is created only
 * when a plugin first asks for it: a kiosk without USB devices pays
 * nothing. */
#include "usb.h"

#include <libusb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "daemon.h"
#include "dev.h"
#include "log.h"
#include "tailq.h"

struct usb_fd {
	TAILQ_ENTRY(usb_fd) entry;
	int fd;
	struct event *ev; /* NULL: epoll refused it, polled instead */
};

/* What a device asked for, and what it holds now. */
struct usb_watch {
	TAILQ_ENTRY(usb_watch) entry;
	struct kiosk_dev *dev;
	uint16_t vid, pid;
	char *serial;
	libusb_device *opened; /* referenced while open */
	libusb_device_handle *handle;
	/* Hotplug news and a plugin's lost() arrive inside libusb's event
	 * handling, where a handle must not be closed: they take effect on
	 * the loop's next turn, through these. */
	struct event *lost_ev, *replug_ev;
	char lost_why[128];
};

static libusb_context *ctx;
static int ctx_failed, in_events;
static struct event *timeout_ev, *poll_ev;
static int npolled;
static libusb_hotplug_callback_handle hotplug;
static TAILQ_HEAD(, usb_fd) fds = TAILQ_HEAD_INITIALIZER(fds);
static TAILQ_HEAD(, usb_watch) watches = TAILQ_HEAD_INITIALIZER(watches);

static void usb_arm_timeout(void);

static void usb_handle(void)
{
	struct timeval zero = {0, 0};
	in_events++;
	libusb_handle_events_timeout_completed(ctx, &zero, NULL);
	in_events--;
	usb_arm_timeout();
}

static void on_fd(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	usb_handle();
}

/* epoll refuses descriptors that are not pollable by it (regular files:
 * what umockdev's emulated usbfs nodes are in the tests).  libusb itself
 * would poll() them, and poll() says "ready" at once, so checking them
 * every few milliseconds is what libusb's own loop would do. */
static void poll_fallback(int delta)
{
	static const struct timeval every = {0, 2000};

	npolled += delta;
	if (npolled > 0 && !poll_ev) {
		poll_ev = event_new(daemon_base, -1, EV_PERSIST, on_fd, NULL);
		event_add(poll_ev, &every);
	} else if (npolled == 0 && poll_ev) {
		event_free(poll_ev);
		poll_ev = NULL;
	}
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	usb_handle();
}

/* Only needed where libusb has no timerfd: then it tells us when its
 * next transfer times out and we come back then. */
static void usb_arm_timeout(void)
{
	struct timeval tv;

	if (!timeout_ev)
		return;
	if (libusb_get_next_timeout(ctx, &tv) == 1)
		evtimer_add(timeout_ev, &tv);
	else
		evtimer_del(timeout_ev);
}

static void fd_added(int fd, short events, void *user)
{
	struct usb_fd *u = calloc(1, sizeof(*u));
	short what = EV_PERSIST;
	(void)user;

	if (!u) {
		log_warnx("usb: out of memory watching fd %d", fd);
		return;
	}
	if (events & POLLIN)
		what |= EV_READ;
	if (events & POLLOUT)
		what |= EV_WRITE;
	u->fd = fd;
	u->ev = event_new(daemon_base, fd, what, on_fd, NULL);
	if (!u->ev || event_add(u->ev, NULL) < 0) {
		log_debug("usb: fd %d cannot be watched by the loop: polling it", fd);
		if (u->ev)
			event_free(u->ev);
		u->ev = NULL;
		poll_fallback(1);
	}
	TAILQ_INSERT_TAIL(&fds, u, entry);
}

static void fd_free(struct usb_fd *u)
{
	TAILQ_REMOVE(&fds, u, entry);
	if (u->ev)
		event_free(u->ev);
	else
		poll_fallback(-1);
	free(u);
}

static void fd_removed(int fd, void *user)
{
	struct usb_fd *u;
	(void)user;

	TAILQ_FOREACH(u, &fds, entry)
	{
		if (u->fd == fd) {
			fd_free(u);
			return;
		}
	}
}

static int watch_matches(const struct usb_watch *w, const struct libusb_device_descriptor *dd)
{
	return dd->idVendor == w->vid && (w->pid == 0 || dd->idProduct == w->pid);
}

static struct usb_watch *watch_of(const struct kiosk_dev *d)
{
	struct usb_watch *w;
	TAILQ_FOREACH(w, &watches, entry)
	if (w->dev == d)
		return w;
	return NULL;
}

/* Both wait for the loop's next turn (see struct usb_watch). */
static void watch_lost(struct usb_watch *w, const char *reason)
{
	snprintf(w->lost_why, sizeof(w->lost_why), "%s", reason ? reason : "lost");
	event_active(w->lost_ev, EV_TIMEOUT, 0);
}

static void on_deferred_lost(evutil_socket_t fd, short what, void *arg)
{
	struct usb_watch *w = arg;
	(void)fd;
	(void)what;
	device_lost(w->dev, w->lost_why);
}

static void on_replug(evutil_socket_t fd, short what, void *arg)
{
	struct usb_watch *w = arg;
	(void)fd;
	(void)what;
	device_replugged(w->dev);
}

static int on_hotplug(libusb_context *c, libusb_device *udev, libusb_hotplug_event event,
                      void *user)
{
	struct libusb_device_descriptor dd;
	struct usb_watch *w;
	(void)c;
	(void)user;

	if (libusb_get_device_descriptor(udev, &dd) < 0)
		return 0;
	log_debug("usb: hotplug %s %04x:%04x bus %u address %u",
	          event == LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT ? "left" : "arrived", dd.idVendor,
	          dd.idProduct, libusb_get_bus_number(udev), libusb_get_device_address(udev));
	TAILQ_FOREACH(w, &watches, entry)
	{
		if (event == LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT && w->opened == udev) {
			log_info("usb: %04x:%04x of device %s unplugged", dd.idVendor, dd.idProduct,
			         w->dev->name);
			watch_lost(w, "unplugged");
		} else if (event == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED && !w->opened &&
		           watch_matches(w, &dd)) {
			log_info("usb: %04x:%04x for device %s plugged in", dd.idVendor,
			         dd.idProduct, w->dev->name);
			event_active(w->replug_ev, EV_TIMEOUT, 0);
		}
	}
	return 0;
}

/* A transfer callback that finds the device gone calls lost(), and lost()
 * closes the device, whose close() closes the handle: libusb forbids that
 * inside its own event handling (it would wait for itself).  So a lost()
 * from there takes effect on the loop's next turn. */
int usb_defer_lost(struct kiosk_dev *d, const char *reason)
{
	struct usb_watch *w;

	if (!in_events || !(w = watch_of(d)))
		return 0;
	watch_lost(w, reason);
	return 1;
}

struct libusb_context *usb_context(void)
{
	const struct libusb_pollfd **pfds;

	if (ctx || ctx_failed)
		return ctx;
	int rc = libusb_init(&ctx);
	if (rc < 0) {
		log_warnx("usb: cannot start libusb: %s", libusb_strerror(rc));
		ctx = NULL;
		ctx_failed = 1;
		return NULL;
	}
	libusb_set_pollfd_notifiers(ctx, fd_added, fd_removed, NULL);
	if ((pfds = libusb_get_pollfds(ctx))) {
		for (int i = 0; pfds[i]; i++)
			fd_added(pfds[i]->fd, pfds[i]->events, NULL);
		libusb_free_pollfds(pfds);
	}
	if (!libusb_pollfds_handle_timeouts(ctx))
		timeout_ev = evtimer_new(daemon_base, on_timeout, NULL);
	if (libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG)) {
		rc = libusb_hotplug_register_callback(
		        ctx, LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED | LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT,
		        0, LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY,
		        LIBUSB_HOTPLUG_MATCH_ANY, on_hotplug, NULL, &hotplug);
		if (rc < 0)
			log_warnx("usb: no hotplug events: %s", libusb_strerror(rc));
	} else {
		log_warnx("usb: this libusb has no hotplug support: unplugged devices are "
		          "noticed only when a transfer fails");
	}
	return ctx;
}

static int serial_matches(libusb_device_handle *h, const struct libusb_device_descriptor *dd,
                          const char *serial)
{
	unsigned char buf[128];

	if (!serial)
		return 1;
	if (!dd->iSerialNumber)
		return 0;
	int n = libusb_get_string_descriptor_ascii(h, dd->iSerialNumber, buf, sizeof(buf));
	return n >= 0 && strcmp((char *)buf, serial) == 0;
}

static void watch_free(struct usb_watch *w)
{
	if (w->lost_ev)
		event_free(w->lost_ev);
	if (w->replug_ev)
		event_free(w->replug_ev);
	free(w->serial);
	free(w);
}

static struct usb_watch *watch_set(struct kiosk_dev *d, uint16_t vid, uint16_t pid,
                                   const char *serial)
{
	struct usb_watch *w = watch_of(d);

	if (!w) {
		if (!(w = calloc(1, sizeof(*w))))
			return NULL;
		w->dev = d;
		w->lost_ev = event_new(daemon_base, -1, 0, on_deferred_lost, w);
		w->replug_ev = event_new(daemon_base, -1, 0, on_replug, w);
		if (!w->lost_ev || !w->replug_ev) {
			watch_free(w);
			return NULL;
		}
		TAILQ_INSERT_TAIL(&watches, w, entry);
	}
	w->vid = vid;
	w->pid = pid;
	free(w->serial);
	w->serial = serial ? strdup(serial) : NULL;
	return w;
}

/* The first device that matches and opens. */
static libusb_device_handle *usb_find(const struct usb_watch *w, char *why, size_t whylen)
{
	libusb_device **list;
	libusb_device_handle *found = NULL;
	int last_err = 0, matched = 0;
	ssize_t n = libusb_get_device_list(ctx, &list);

	if (n < 0) {
		snprintf(why, whylen, "cannot list USB devices: %s", libusb_strerror((int)n));
		return NULL;
	}
	for (ssize_t i = 0; i < n && !found; i++) {
		struct libusb_device_descriptor dd;
		libusb_device_handle *h;
		if (libusb_get_device_descriptor(list[i], &dd) < 0 || !watch_matches(w, &dd))
			continue;
		matched++;
		int rc = libusb_open(list[i], &h);
		if (rc < 0) {
			last_err = rc;
			continue;
		}
		if (serial_matches(h, &dd, w->serial))
			found = h;
		else
			libusb_close(h);
	}
	libusb_free_device_list(list, 1);
	if (found)
		return found;
	if (last_err)
		snprintf(why, whylen, "USB device %04x:%04x cannot be opened: %s", w->vid, w->pid,
		         libusb_strerror(last_err));
	else if (matched && w->serial)
		snprintf(why, whylen, "no USB device %04x:%04x with serial %s", w->vid, w->pid,
		         w->serial);
	else
		snprintf(why, whylen, "no USB device %04x:%04x is plugged in", w->vid, w->pid);
	return NULL;
}

struct libusb_device_handle *usb_open(struct kiosk_dev *d, uint16_t vid, uint16_t pid,
                                      const char *serial, char *why, size_t whylen)
{
	struct usb_watch *w;
	libusb_device_handle *h;

	if (!usb_context()) {
		snprintf(why, whylen, "USB is not available on this machine");
		return NULL;
	}
	if (!(w = watch_set(d, vid, pid, serial))) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	if (w->handle) {
		snprintf(why, whylen, "the device already has a USB device open");
		return NULL;
	}
	if (!(h = usb_find(w, why, whylen)))
		return NULL;
	w->handle = h;
	w->opened = libusb_ref_device(libusb_get_device(h));
	return h;
}

/* Transfers the plugin cancelled in close() complete on the next event
 * handling: run it now, while the handle is still valid, so that their
 * callbacks come before libusb_close(), which must not find one in
 * flight.  usbfs gives a discarded URB back within a millisecond or two;
 * a handle with nothing pending costs the three short waits. */
static void usb_drain(void)
{
	if (in_events) /* cannot happen through lost(), which defers */
		return;
	in_events++;
	for (int i = 0; i < 3; i++) {
		struct timeval tv = {0, 5000};
		libusb_handle_events_timeout_completed(ctx, &tv, NULL);
	}
	in_events--;
}

void usb_close(struct kiosk_dev *d, struct libusb_device_handle *h)
{
	struct usb_watch *w = watch_of(d);

	if (!h)
		return;
	usb_drain();
	if (w && w->handle == h) {
		libusb_unref_device(w->opened);
		w->opened = NULL;
		w->handle = NULL;
	}
	libusb_close(h);
}

void usb_forget(struct kiosk_dev *d)
{
	struct usb_watch *w = watch_of(d);

	if (!w)
		return;
	if (w->handle) /* the plugin did not close it: do it for it */
		usb_close(d, w->handle);
	TAILQ_REMOVE(&watches, w, entry);
	watch_free(w);
}

void usb_shutdown(void)
{
	struct usb_fd *u;

	if (!ctx)
		return;
	while (!TAILQ_EMPTY(&watches))
		usb_forget(TAILQ_FIRST(&watches)->dev);
	if (hotplug)
		libusb_hotplug_deregister_callback(ctx, hotplug);
	libusb_exit(ctx);
	ctx = NULL;
	while ((u = TAILQ_FIRST(&fds)))
		fd_free(u);
	if (timeout_ev)
		event_free(timeout_ev);
	timeout_ev = NULL;
}
