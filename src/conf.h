/* Configuration: conf/kioskd.conf plus drop-ins (every *.conf in kioskd.conf.d/
 * and conf.d/ beside it, in lexical order), INI syntax read with inih. */
#ifndef KIOSKD_CONF_H
#define KIOSKD_CONF_H

#include "kiosk/hal.h"

/* Problems found while reading, each "file:line: message". */
struct diag {
	char **msgs;
	int n, cap;
};
void diag_add(struct diag *d, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void diag_free(struct diag *d);

struct conf_opt {
	char *key, *value, *file;
	int line;
	struct conf_opt *next;
};

struct conf_device {
	char *name;
	char *file; /* where its section first appears */
	int line;
	enum kiosk_class cls;
	char *plugin;
	int timeout_ms; /* 0: the daemon's command_timeout_ms */
	int enabled;
	struct conf_opt *opts;      /* every key the core does not own: plugin options */
	struct conf_opt *plugin_at; /* where "plugin" was set, for messages */
	struct conf_device *next;
};

/* [endpoint NAME]: a remote HTTPS service that transactions are delivered
 * to and that remote.call reaches. */
struct conf_endpoint {
	char *name, *file;
	int line;
	char *url;        /* https:// base; batches go to <url>/transactions */
	char *ca_file;    /* trust anchors (default: the system's) */
	char *cert_file;  /* client certificate (mTLS) */
	char *key_file;   /* its private key */
	char *token_file; /* bearer token */
	char *hmac_key_file;
	int batch_size, concurrency;
	int connect_timeout_ms, timeout_ms;
	int low_speed_bytes, low_speed_time_s;
	int backoff_min_ms, backoff_max_ms;
	int startup_delay_ms; /* random delay before the first attempt, up to this */
	struct conf_endpoint *next;
};

/* [route]: "type pattern = endpoint", first match in file order wins. */
struct conf_route {
	char *pattern, *endpoint, *file;
	int line;
	struct conf_route *next;
};

struct conf {
	char *path;
	char *kiosk_id; /* sent to endpoints; default: the host name */
	char *runtime_dir, *state_dir, *plugin_path;
	int log_level;
	int max_clients;
	long max_line;      /* bytes of one request line */
	long client_buffer; /* bytes queued to one client before it is dropped */
	char *admin_group, *ui_group;
	int command_timeout_ms, cancel_grace_ms;
	int workers;
	int reopen_min_ms, reopen_max_ms;
	struct conf_device *devices;
	/* [store] */
	char *store_path;     /* relative to state_dir unless absolute */
	char *store_key_file; /* AES-256 key for personal data at rest */
	int pii_retention_s;  /* personal data kept this long after delivery */
	struct conf_endpoint *endpoints;
	struct conf_route *routes;
};

/* Read path and its drop-ins.  Returns NULL when anything is wrong, with
 * every problem in diag (not just the first). */
struct conf *conf_load(const char *path, struct diag *diag);
/* Same, but returns what could be read even when there are problems, so
 * that --check-config can go on to check the devices against plugins. */
struct conf *conf_load_partial(const char *path, struct diag *diag);
/* Same, from a string (fuzzing, tests); name is used in messages. */
struct conf *conf_load_string(const char *name, const char *text, struct diag *diag);
void conf_free(struct conf *c);
const struct conf_endpoint *conf_endpoint_find(const struct conf *c, const char *name);
/* The endpoint a transaction type is routed to, or NULL. */
const char *conf_route(const struct conf *c, const char *type);
const struct conf_device *conf_device_find(const struct conf *c, const char *name);
const char *conf_device_opt(const struct conf_device *d, const char *key);
/* A device section that outlives its configuration (devices keep one). */
struct conf_device *conf_device_dup(const struct conf_device *d);
void conf_device_free(struct conf_device *d);
/* Nonzero when two device sections would open the same thing the same way. */
int conf_device_equal(const struct conf_device *a, const struct conf_device *b);

#endif
