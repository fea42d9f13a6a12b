/*
 * kiosk/hal.h -- the whole plugin ABI of kioskd.
 *
 * A plugin is a shared object that exports one const descriptor,
 * `struct kiosk_plugin kiosk_hal_plugin`, and includes nothing from the
 * daemon but this header (and jansson for JSON values).  Everything a
 * plugin needs from the daemon -- logging, timers, fd watches, events,
 * the worker pool, configuration and the blob store -- comes through the
 * `struct kiosk_host` table handed to init() and open().
 *
 * Rules a plugin follows:
 *  - Every callback runs on the daemon's single loop thread.  Never block
 *    it: slow or blocking vendor calls go through host->run_blocking().
 *  - Every request handed to command() is finished exactly once with
 *    host->reply() or host->fail(), possibly much later.
 *  - Never retry or reopen on your own: report a lost device with
 *    host->lost() and the core reopens it with backoff.
 *  - Never log personal data (ID numbers, names, card numbers, photos).
 *
 * Versioning: the core refuses a descriptor whose magic or abi_major
 * differs from its own, or whose struct_size is smaller than the fields
 * of KIOSK_HAL_ABI_MINOR 0.  Minor versions only append fields.
 */
#ifndef KIOSK_HAL_H
#define KIOSK_HAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KIOSK_HAL_MAGIC     0x4b48414cu /* "KHAL" */
#define KIOSK_HAL_ABI_MAJOR 1
#define KIOSK_HAL_ABI_MINOR 1
#define KIOSK_HAL_SYMBOL    "kiosk_hal_plugin"

#if defined(__GNUC__)
#define KIOSK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define KIOSK_EXPORT       __attribute__((visibility("default")))
#else
#define KIOSK_PRINTF(f, a)
#define KIOSK_EXPORT
#endif

/* Device classes (ARCHITECTURE.md section 5).  A plugin lists the classes
 * it serves as a bit mask; each configured device has exactly one. */
enum kiosk_class {
	KIOSK_CLASS_CARDREADER = 1u << 0,
	KIOSK_CLASS_PRINTER = 1u << 1,
	KIOSK_CLASS_SCANNER = 1u << 2,
	KIOSK_CLASS_IDREADER = 1u << 3,
	KIOSK_CLASS_CAMERA = 1u << 4,
	KIOSK_CLASS_AUDIO = 1u << 5,
	KIOSK_CLASS_BARCODE = 1u << 6,
	KIOSK_CLASS_LOCKER = 1u << 7,
	KIOSK_CLASS_SENSOR = 1u << 8,
	KIOSK_CLASS_ACTUATOR = 1u << 9,
};
#define KIOSK_CLASS_ALL 0x3ffu

/* Log levels are syslog priorities. */
enum kiosk_log_level {
	KIOSK_LOG_ERR = 3,
	KIOSK_LOG_WARNING = 4,
	KIOSK_LOG_NOTICE = 5,
	KIOSK_LOG_INFO = 6,
	KIOSK_LOG_DEBUG = 7,
};

/* fd watch interest and readiness. */
#define KIOSK_FD_READ  0x01
#define KIOSK_FD_WRITE 0x02

/* A blob id is the lowercase hex sha256 of the content. */
#define KIOSK_BLOB_ID_SIZE 65

/* Hardware a plugin can drive, used for hotplug matching and to generate
 * udev rules and the supported-hardware list.  The table ends with an entry
 * whose bus is NULL. */
struct kiosk_match {
	const char *bus;  /* "usb", "serial", "net", "sim" */
	uint16_t vid;     /* usb: vendor id */
	uint16_t pid;     /* usb: product id, 0 = any */
	const char *what; /* a human name for the supported-hardware list */
};

enum kiosk_opt_type {
	KIOSK_OPT_STRING = 1,
	KIOSK_OPT_INT,
	KIOSK_OPT_BOOL,
	KIOSK_OPT_DOUBLE,
};

/* The keys a plugin accepts in a [device NAME] section.  The core rejects
 * unknown keys and values of the wrong type or out of range before the
 * plugin sees them, so plugins read configuration without re-validating.
 * The table ends with an entry whose key is NULL. */
struct kiosk_option {
	const char *key;
	enum kiosk_opt_type type;
	const char *def; /* default as text, NULL = none */
	double min, max; /* for INT/DOUBLE; min == max means unbounded */
	const char *help;
};

struct kiosk_dev;   /* one configured device instance, owned by the core */
struct kiosk_req;   /* one in-flight command, owned by the core */
struct kiosk_timer; /* a timer started through the host */
struct kiosk_watch; /* an fd watch started through the host */
struct libusb_context;
struct libusb_device_handle;

typedef void (*kiosk_cb)(void *arg);
typedef void (*kiosk_fd_cb)(int fd, int what, void *arg);

struct kiosk_host {
	uint32_t struct_size;
	uint16_t abi_major;
	uint16_t abi_minor;

	/* Identity and configuration of a device. */
	const char *(*dev_name)(const struct kiosk_dev *dev);
	enum kiosk_class (*dev_class)(const struct kiosk_dev *dev);
	/* The configured value of a plugin option, else its default, else NULL. */
	const char *(*config)(const struct kiosk_dev *dev, const char *key);
	void (*set_priv)(struct kiosk_dev *dev, void *priv);
	void *(*priv)(const struct kiosk_dev *dev);

	/* dev may be NULL for plugin-wide messages. */
	void (*log)(const struct kiosk_dev *dev, int level, const char *fmt, ...)
	        KIOSK_PRINTF(3, 4);

	/* Timers and fd watches belong to a device and are released by the
	 * core when that device closes.  Callbacks run on the loop thread.
	 * A one-shot timer is released right after its callback returns:
	 * forget the pointer there (stopping it from inside its own callback
	 * is allowed).  A repeating timer lives until timer_stop(). */
	struct kiosk_timer *(*timer_start)(struct kiosk_dev *dev, uint32_t ms, int repeat,
	                                   kiosk_cb cb, void *arg);
	void (*timer_stop)(struct kiosk_timer *t);
	struct kiosk_watch *(*watch_fd)(struct kiosk_dev *dev, int fd, int what, kiosk_fd_cb cb,
	                                void *arg);
	void (*unwatch_fd)(struct kiosk_watch *w);

	/* Publish "<class>.<event>" for this device; takes the reference to
	 * data (which may be NULL). */
	void (*emit)(struct kiosk_dev *dev, const char *event, json_t *data);

	/* Finish a request: reply() takes the reference to result (NULL means
	 * an empty object); fail() uses a code from the protocol's closed set.
	 * Finishing a request that the core already answered (timeout, cancel)
	 * is allowed and only frees the device for the next command. */
	void (*reply)(struct kiosk_req *req, json_t *result);
	void (*fail)(struct kiosk_req *req, const char *code, const char *fmt, ...)
	        KIOSK_PRINTF(3, 4);
	/* Intermediate progress; takes the reference to data. */
	void (*progress)(struct kiosk_req *req, json_t *data);
	/* Nonzero once the request was cancelled or timed out. */
	int (*cancelled)(const struct kiosk_req *req);
	struct kiosk_dev *(*req_dev)(const struct kiosk_req *req);

	/* The device went away (unplugged, link down): the core fails its
	 * running command, closes it (close() may run before lost() returns:
	 * touch nothing of the device after calling it) and reopens it with
	 * backoff. */
	void (*lost)(struct kiosk_dev *dev, const char *reason);

	/* Run job(arg) on a worker thread, then done(arg) on the loop thread.
	 * The core closes a device only after its jobs are done.  Returns 0,
	 * or -1 when the pool cannot take the job. */
	int (*run_blocking)(struct kiosk_dev *dev, kiosk_cb job, kiosk_cb done, void *arg);

	/* Content-addressed blob store.  blob_put writes id (sha256 hex);
	 * blob_get returns malloc()ed bytes the caller frees.  0 or -1. */
	int (*blob_put)(struct kiosk_dev *dev, const void *data, size_t len, const char *mime,
	                char id[KIOSK_BLOB_ID_SIZE]);
	int (*blob_get)(struct kiosk_dev *dev, const char *id, void **data, size_t *len);

	/* ---- ABI minor 1 (check abi_minor >= 1 before using) ---- */

	/* USB.  The daemon owns one libusb context whose events it handles on
	 * its loop: submit asynchronous transfers (libusb_submit_transfer) and
	 * their callbacks run on the loop thread; synchronous libusb calls are
	 * allowed only inside run_blocking() jobs.  Never call
	 * libusb_handle_events*() yourself.  usb_context() is NULL when USB is
	 * not available on this machine.
	 *
	 * usb_open() opens the first device that matches vid:pid (pid 0 = any
	 * of the vendor's) and, when serial is not NULL, has that serial
	 * number; it claims no interface.  From then on the core watches the
	 * match for dev: when the opened device is unplugged the core calls
	 * lost(dev, "unplugged") itself (close() then releases the handle with
	 * usb_close()), and when a matching device is plugged in while dev is
	 * offline the core reopens dev at once instead of waiting out the
	 * backoff.  A failed usb_open() (NULL, reason in why) also registers
	 * the match, so a device absent at start opens when it arrives.
	 * In close(), cancel your transfers (libusb_cancel_transfer), release
	 * your interfaces, then call usb_close(): it first lets the cancelled
	 * transfers complete, so their callbacks run inside usb_close() with
	 * LIBUSB_TRANSFER_CANCELLED (free the transfer there, touch nothing
	 * else of the device), then closes the handle.  A transfer that
	 * completes with LIBUSB_TRANSFER_NO_DEVICE: call lost() from its
	 * callback (the close then happens on the loop's next turn, after
	 * libusb's event handling returned). */
	struct libusb_context *(*usb_context)(void);
	struct libusb_device_handle *(*usb_open)(struct kiosk_dev *dev, uint16_t vid, uint16_t pid,
	                                         const char *serial, char *why, size_t whylen);
	void (*usb_close)(struct kiosk_dev *dev, struct libusb_device_handle *h);
};

struct kiosk_plugin {
	uint32_t magic;       /* KIOSK_HAL_MAGIC */
	uint16_t abi_major;   /* KIOSK_HAL_ABI_MAJOR */
	uint16_t abi_minor;   /* KIOSK_HAL_ABI_MINOR */
	uint32_t struct_size; /* sizeof(struct kiosk_plugin) */
	const char *name;     /* short, [a-z0-9_-], unique */
	const char *version;
	const char *description;
	uint32_t classes;                   /* enum kiosk_class bits */
	const struct kiosk_match *match;    /* may be NULL */
	const struct kiosk_option *options; /* may be NULL */

	/* Optional: once after loading / before unloading. */
	int (*init)(const struct kiosk_host *host);
	void (*fini)(void);

	/* Required.  open() returns 0 when the device is ready, or -1 with a
	 * short reason in why (shown to admins as the device's state reason). */
	int (*open)(struct kiosk_dev *dev, const struct kiosk_host *host, char *why, size_t whylen);
	void (*close)(struct kiosk_dev *dev);
	/* Start the command "verb" (the part after "<class>.") with args that
	 * the core already checked against the class schema.  The core sends
	 * one command at a time per device.  The request may be finished
	 * inside command() or any time later. */
	void (*command)(struct kiosk_dev *dev, struct kiosk_req *req, const char *verb,
	                json_t *args);
	/* Ask the running command to stop soon; it still finishes via
	 * reply()/fail().  If it does not within the grace period the core
	 * closes and reopens the device. */
	void (*cancel)(struct kiosk_dev *dev, struct kiosk_req *req);
	/* Plugin-specific state for status/devices.list (new reference). */
	json_t *(*status)(struct kiosk_dev *dev);

	/* Optional, simulators only: drive the simulated hardware (sim.inject).
	 * Also called while the device is closed (host->priv() is NULL then),
	 * so keep the host table from init() or open().  Returns a new
	 * reference to a result, or NULL with why filled in. */
	json_t *(*inject)(struct kiosk_dev *dev, const char *what, json_t *args, char *why,
	                  size_t whylen);
};

#ifdef __cplusplus
}
#endif
#endif /* KIOSK_HAL_H */
