/* kioskctl: the admin command line for kioskd.  Speaks the same protocol as a
 * kiosk UI (through kclient) on admin.sock or ui.sock.  docs/kioskctl.md is
 * the manual; keep it, the help texts and the exit codes in step. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* ppoll */
#endif
#include "kclient.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#ifndef KIOSKD_VERSION
#define KIOSKD_VERSION "unknown"
#endif

#define ADMIN_SOCK "/run/kioskd/admin.sock"
#define UI_SOCK    "/run/kioskd/ui.sock"
/* Without --timeout, commands that answer at once still get a bound, so a
 * wedged daemon cannot hang a script; device commands (call) and events
 * wait as long as the daemon's own timeouts say. */
#define DEFAULT_WAIT_MS 60000
/* Human output: 21.3 rather than 21.300000000000001. */
#define HUMAN_JSON (JSON_ENCODE_ANY | JSON_REAL_PRECISION(15))

/* Exit statuses: part of the interface, documented in docs/kioskctl.md. */
enum {
	RC_OK = 0,
	RC_REFUSED = 1, /* the daemon answered ok:false */
	RC_USAGE = 2,
	RC_CONN = 3, /* cannot connect, connection lost, protocol broken */
	RC_TIMEOUT = 4,
	RC_DENIED = 5, /* not_permitted */
};

/* Long options without a short letter. */
enum {
	OPT_STATE = 0x100,
	OPT_TYPE,
	OPT_FLOW,
	OPT_UNFINISHED,
	OPT_LIMIT,
	OPT_BEFORE,
	OPT_NOW,
};

struct ctx {
	const char *socket;
	int json;
	int timeout_ms; /* -1: no --timeout */
	const char *device;
	int follow;
	int count;      /* 0: not given */
	json_t *filter; /* queue list's options as queue.list args; NULL: none given */
	int filter_opt; /* the first of them, for 'applies to queue list only' */
	int now;
	const struct command *cmd;
	struct kclient *kc;
	struct timespec start;
};

struct command {
	const char *name;
	const char *synopsis;
	int min_args, max_args;
	int (*run)(struct ctx *c, int argc, char **argv);
	const char *summary;
	const char *help;
};

static const struct command *find_command(const char *name);
static void print_usage(FILE *f);
static const char *opt_name(int ch);

/* ---- messages ---- */

static int usage_error(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int try_help(const struct ctx *c)
{
	fprintf(stderr, "Try 'kioskctl %s%s--help'.\n", c->cmd ? c->cmd->name : "",
	        c->cmd ? " " : "");
	return RC_USAGE;
}

static int usage_error(struct ctx *c, const char *fmt, ...)
{
	va_list ap;

	fputs("kioskctl: ", stderr);
	if (c->cmd)
		fprintf(stderr, "%s: ", c->cmd->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return try_help(c);
}

/* Map a kclient failure to a message and an exit status. */
static int report(struct ctx *c, const char *cmd, int st, json_t *reply)
{
	const char *code;

	switch (st) {
	case KC_EREPLY:
		code = kc_error_code(reply);
		fprintf(stderr, "kioskctl: %s: %s: %s\n", cmd, code, kc_error_message(reply));
		if (strcmp(code, "not_permitted") == 0)
			return RC_DENIED;
		return strcmp(code, "timeout") == 0 ? RC_TIMEOUT : RC_REFUSED;
	case KC_ETIMEOUT:
		fprintf(stderr, "kioskctl: %s: timeout: %s\n", cmd, kc_strerror(c->kc));
		return RC_TIMEOUT;
	case KC_EINVAL:
		fprintf(stderr, "kioskctl: %s: %s\n", cmd, kc_strerror(c->kc));
		return RC_USAGE;
	default:
		fprintf(stderr, "kioskctl: %s: %s\n", cmd, kc_strerror(c->kc));
		return RC_CONN;
	}
}

/* ---- connection and requests ---- */

static const char *pick_socket(const struct ctx *c)
{
	const char *env = getenv("KIOSKCTL_SOCKET");

	if (c->socket)
		return c->socket;
	if (env && *env)
		return env;
	/* connecting needs write permission on the socket file */
	if (access(ADMIN_SOCK, W_OK) == 0)
		return ADMIN_SOCK;
	return UI_SOCK;
}

static int connect_daemon(struct ctx *c, const char *cmd)
{
	char err[512];
	int e;

	if (c->kc)
		return RC_OK;
	if ((c->kc = kc_connect(pick_socket(c), err, sizeof(err))))
		return RC_OK;
	e = errno;
	fprintf(stderr, "kioskctl: %s: %s%s\n", cmd, err,
	        e == ENOENT || e == ECONNREFUSED ? " (is kioskd running?)" : "");
	return RC_CONN;
}

/* Send cmd and wait for its reply; *result gets the result (never NULL) on RC_OK. */
static int request(struct ctx *c, const char *cmd, const char *device, json_t *args, int forever,
                   json_t **result)
{
	json_t *reply = NULL;
	long long id = -1;
	int rc, st;

	*result = NULL;
	if ((rc = connect_daemon(c, cmd)) != RC_OK)
		return rc;
	if (c->timeout_ms > 0 || forever) {
		st = kc_call(c->kc, cmd, device, args, c->timeout_ms, &reply);
	} else {
		st = kc_send(c->kc, cmd, device, args, 0, &id);
		/* as kc_call(): a daemon that answered and hung up before our
		 * write (too many clients) still left its reply to read */
		if (st == KC_OK || (st == KC_ECLOSED && id >= 0))
			st = kc_wait_reply(c->kc, id, DEFAULT_WAIT_MS, &reply);
	}
	if (st != KC_OK) {
		rc = report(c, cmd, st, reply);
		json_decref(reply);
		return rc;
	}
	*result = kc_result(reply) ? json_incref(kc_result(reply)) : json_object();
	json_decref(reply);
	return RC_OK;
}

/* ---- output helpers ---- */

static void die_oom(void);

/* Indented JSON for people, one compact line for scripts.  jansson escapes
 * C0 controls (as \u001B) but lets DEL and C1 (U+0080..U+009F, e.g. CSI)
 * through; they can only sit inside strings, so for people they become \u
 * escapes too: the text stays the same JSON and cannot drive a terminal. */
static void print_json(json_t *v, int pretty)
{
	const unsigned char *p;
	char *s;

	if (!pretty) {
		json_dumpf(v, stdout, JSON_ENCODE_ANY | JSON_COMPACT);
		putchar('\n');
		return;
	}
	if (!(s = json_dumps(v, HUMAN_JSON | JSON_INDENT(2))))
		die_oom();
	for (p = (const unsigned char *)s; *p; p++) {
		if (*p == 0x7f)
			fputs("\\u007F", stdout);
		else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			printf("\\u00%02X", *++p);
		else
			putchar(*p);
	}
	putchar('\n');
	free(s);
}

/* Device names and reasons come from plugins: keep control characters
 * (escape sequences) off the terminal. */
static char *sanitize(char *s)
{
	for (unsigned char *p = (unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
		/* C1 controls (U+0080..U+009F, e.g. CSI) act on terminals too */
		if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			p[0] = p[1] = '?';
	}
	return s;
}

static void die_oom(void)
{
	fputs("kioskctl: out of memory\n", stderr);
	exit(RC_CONN);
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		die_oom();
	return p;
}

static char *value_text(json_t *v);

static int is_scalar_array(json_t *v)
{
	size_t i;
	json_t *e;

	if (!json_is_array(v))
		return 0;
	for (i = 0; i < json_array_size(v); i++) {
		e = json_array_get(v, i);
		if (json_is_array(e) || json_is_object(e))
			return 0;
	}
	return 1;
}

static char *join_array(json_t *a)
{
	char *buf = NULL, *s;
	size_t len = 0, i;
	FILE *f;

	if (!(f = open_memstream(&buf, &len)))
		die_oom();
	for (i = 0; i < json_array_size(a); i++) {
		s = value_text(json_array_get(a, i));
		fprintf(f, "%s%s", i ? ", " : "", s);
		free(s);
	}
	if (fclose(f) != 0 || !buf)
		die_oom();
	return buf;
}

/* A JSON value as text for a table cell or field: strings bare, arrays of
 * scalars comma-joined, "-" for nothing, anything else compact JSON.
 * Caller frees. */
static char *value_text(json_t *v)
{
	char *s;

	if (!v || json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0))
		return xstrdup("-");
	if (json_is_string(v))
		return sanitize(xstrdup(json_string_value(v)));
	if (is_scalar_array(v))
		return join_array(v);
	if (!(s = json_dumps(v, HUMAN_JSON | JSON_COMPACT)))
		die_oom();
	return sanitize(s);
}

/* Terminal columns of a string: wcwidth() in a multibyte locale (CJK
 * device names and reasons are two columns a character), else code points. */
static int text_width(const char *s)
{
	mbstate_t st = {0};
	int w = 0, cw;
	wchar_t wc;
	size_t n;

	while (*s) {
		n = MB_CUR_MAX > 1 ? mbrtowc(&wc, s, MB_CUR_MAX, &st) : (size_t)-1;
		if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
			w += ((unsigned char)*s++ & 0xc0) != 0x80;
			memset(&st, 0, sizeof(st));
			continue;
		}
		cw = wcwidth(wc);
		w += cw > 0 ? cw : 0;
		s += n;
	}
	return w;
}

static void pad(int n)
{
	while (n-- > 0)
		putchar(' ');
}

/* Object fields as "key:  value" lines, nested objects indented below their key. */
static void print_fields(json_t *obj, int indent)
{
	const char *key;
	json_t *v;
	int w = 0;
	char *s;
	void *it;

	for (it = json_object_iter(obj); it; it = json_object_iter_next(obj, it))
		if (text_width(json_object_iter_key(it)) > w)
			w = text_width(json_object_iter_key(it));
	for (it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
		key = json_object_iter_key(it);
		v = json_object_iter_value(it);
		s = sanitize(xstrdup(key));
		pad(indent);
		if (json_is_object(v) && json_object_size(v) > 0) {
			printf("%s:\n", s);
			print_fields(v, indent + 2);
		} else {
			printf("%s:", s);
			pad(w - text_width(s) + 2);
			free(s);
			s = value_text(v);
			printf("%s\n", s);
		}
		free(s);
	}
}

/* ---- tables ---- */

#define MAXCOLS 8

struct table {
	int ncols;
	size_t nrows;
	char **cells; /* row-major, row 0 is the header */
};

static void table_row(struct table *t, ...)
{
	char **cells = realloc(t->cells, (t->nrows + 1) * (size_t)t->ncols * sizeof(char *));
	va_list ap;

	if (!cells)
		die_oom();
	t->cells = cells;
	va_start(ap, t);
	for (int i = 0; i < t->ncols; i++)
		cells[t->nrows * (size_t)t->ncols + (size_t)i] = va_arg(ap, char *);
	va_end(ap);
	t->nrows++;
}

/* Print aligned, two spaces between columns, no trailing blanks; frees the cells. */
static void table_print(struct table *t)
{
	int w[MAXCOLS] = {0}, n;
	char *s;

	for (size_t r = 0; r < t->nrows; r++)
		for (int i = 0; i < t->ncols; i++)
			if ((n = text_width(t->cells[r * (size_t)t->ncols + (size_t)i])) > w[i])
				w[i] = n;
	for (size_t r = 0; r < t->nrows; r++) {
		for (int i = 0; i < t->ncols; i++) {
			s = t->cells[r * (size_t)t->ncols + (size_t)i];
			fputs(s, stdout);
			if (i + 1 < t->ncols)
				pad(w[i] - text_width(s) + 2);
			free(s);
		}
		putchar('\n');
	}
	free(t->cells);
	t->cells = NULL;
	t->nrows = 0;
}

static char *field(json_t *obj, const char *key)
{
	return value_text(json_object_get(obj, key));
}

/* ---- argument helpers ---- */

static int parse_int(const char *s, int min, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > INT_MAX)
		return -1;
	*out = (int)v;
	return 0;
}

/* Point at the byte where jansson gave up, when the text fits on one line. */
static void show_position(const char *text, const json_error_t *e)
{
	int len = (int)strlen(text), pos = e->position;

	if (strchr(text, '\n') || len > 120 || pos < 0)
		return;
	/* jansson's position is just past the offending token */
	if (strstr(e->text, "end of file"))
		pos = len;
	else if (pos > 0)
		pos--;
	fprintf(stderr, "  %s\n  %*s^\n", text, pos, "");
}

/* The JSON-args word of call and sim: an object, or a usage error that
 * points at the mistake. */
static int parse_args_json(struct ctx *c, const char *text, json_t **out)
{
	json_error_t e;
	json_t *v;

	*out = NULL;
	if (!(v = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e))) {
		fprintf(stderr, "kioskctl: %s: bad JSON arguments at line %d, column %d: %s\n",
		        c->cmd->name, e.line, e.column, e.text);
		show_position(text, &e);
		return try_help(c);
	}
	if (!json_is_object(v)) {
		json_decref(v);
		return usage_error(c, "JSON arguments must be an object, e.g. '{\"door\": 3}'");
	}
	*out = v;
	return RC_OK;
}

/* ---- hello, status, devices, reload ---- */

static int cmd_hello(struct ctx *c, int argc, char **argv)
{
	json_t *r;
	int rc;

	(void)argc, (void)argv;
	if ((rc = request(c, "hello", NULL, NULL, 0, &r)) != RC_OK)
		return rc;
	if (c->json) {
		print_json(r, 0);
	} else {
		json_object_set_new(r, "socket", json_string(pick_socket(c)));
		print_fields(r, 0);
	}
	json_decref(r);
	return RC_OK;
}

static void fmt_duration(long long s, char *buf, size_t len)
{
	long long d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;

	if (d)
		snprintf(buf, len, "%lldd %lldh %02lldm", d, h, m);
	else if (h)
		snprintf(buf, len, "%lldh %02lldm", h, m);
	else if (m)
		snprintf(buf, len, "%lldm %02llds", m, sec);
	else
		snprintf(buf, len, "%llds", sec);
}

/* Seconds the daemon sent as "4m 10s": whole ones, fractions cut or rounded
 * up; nonsense (negative, NaN, centuries) cannot overflow the conversion. */
static void fmt_seconds(json_t *v, int round_up, char *buf, size_t len)
{
	double secs = json_number_value(v);
	long long n = 0;

	if (secs > 1e12)
		n = 1000000000000LL;
	else if (secs > 0)
		n = (long long)secs + (round_up && (double)(long long)secs < secs);
	fmt_duration(n, buf, len);
}

/* Right-aligned labels, as systemctl status does. */
static void label(const char *name, char *value)
{
	printf("%9s: %s\n", name, value);
	free(value);
}

/* Counts per state, in the daemon's order: "3 queued, 0 sending, ...". */
static char *counts_text(json_t *counts, int skip_zero)
{
	char *buf = NULL, *s;
	size_t len = 0, n = 0;
	json_t *v;
	FILE *f;
	void *it;

	if (!(f = open_memstream(&buf, &len)))
		die_oom();
	for (it = json_object_iter(counts); it; it = json_object_iter_next(counts, it)) {
		v = json_object_iter_value(it);
		if (skip_zero && json_is_integer(v) && json_integer_value(v) == 0)
			continue;
		s = value_text(v);
		fprintf(f, "%s%s %s", n++ ? ", " : "", s, json_object_iter_key(it));
		free(s);
	}
	if (fclose(f) != 0 || !buf)
		die_oom();
	if (!*buf) {
		free(buf);
		return xstrdup("-");
	}
	return sanitize(buf);
}

/* The outbox counts of status, queue.list and sync.status: "3 queued,
 * 0 sending, 120 delivered, 1 failed; oldest queued 4m 10s", "-" without a
 * store. */
static char *queue_text(json_t *counts)
{
	json_t *states, *oldest = json_object_get(counts, "oldest_queued_s");
	char age[64], *text, *s;

	if (!json_is_object(counts))
		return xstrdup("-");
	if (!(states = json_copy(counts)))
		die_oom();
	json_object_del(states, "oldest_queued_s");
	text = counts_text(states, 0);
	json_decref(states);
	if (!json_is_number(oldest))
		return text;
	fmt_seconds(oldest, 0, age, sizeof(age));
	if (asprintf(&s, "%s; oldest queued %s", text, age) < 0)
		die_oom();
	free(text);
	return s;
}

/* "9 ready, 1 offline": devices per state, counted here so it matches the table. */
static char *states_text(json_t *devices)
{
	json_t *counts = json_object(), *n;
	const char *state;
	char *text;

	for (size_t i = 0; i < json_array_size(devices); i++) {
		state = json_string_value(json_object_get(json_array_get(devices, i), "state"));
		n = json_object_get(counts, state ? state : "unknown");
		json_object_set_new(counts, state ? state : "unknown",
		                    json_integer(n ? json_integer_value(n) + 1 : 1));
	}
	text = counts_text(counts, 1);
	json_decref(counts);
	return text;
}

static void print_daemon(json_t *status)
{
	json_t *d = json_object_get(status, "daemon"), *up = json_object_get(d, "uptime_s");
	char buf[64], *s;

	s = field(d, "version");
	printf("kioskd %s\n", s);
	free(s);
	label("PID", field(d, "pid"));
	fmt_duration((long long)json_number_value(up), buf, sizeof(buf));
	label("Uptime", xstrdup(json_is_number(up) ? buf : "-"));
	label("Clients", field(d, "clients"));
	label("Config", field(d, "config"));
	label("Devices", states_text(json_object_get(status, "devices")));
	label("Queue", queue_text(json_object_get(status, "queue")));
}

static void print_device_table(json_t *devices, int caps)
{
	struct table t = {.ncols = caps ? 6 : 5};
	size_t i;
	json_t *d;

	if (json_array_size(devices) == 0) {
		puts("No devices configured.");
		return;
	}
	if (caps)
		table_row(&t, xstrdup("NAME"), xstrdup("CLASS"), xstrdup("PLUGIN"),
		          xstrdup("STATE"), xstrdup("CAPABILITIES"), xstrdup("REASON"));
	else
		table_row(&t, xstrdup("NAME"), xstrdup("CLASS"), xstrdup("PLUGIN"),
		          xstrdup("STATE"), xstrdup("REASON"));
	for (i = 0; i < json_array_size(devices); i++) {
		d = json_array_get(devices, i);
		if (caps)
			table_row(&t, field(d, "name"), field(d, "class"), field(d, "plugin"),
			          field(d, "state"), field(d, "capabilities"), field(d, "reason"));
		else
			table_row(&t, field(d, "name"), field(d, "class"), field(d, "plugin"),
			          field(d, "state"), field(d, "reason"));
	}
	table_print(&t);
}

static void print_endpoints(json_t *endpoints)
{
	struct table t = {.ncols = 2};
	size_t i;
	json_t *e;

	if (json_array_size(endpoints) == 0) {
		puts("No endpoints configured.");
		return;
	}
	table_row(&t, xstrdup("ENDPOINT"), xstrdup("STATE"));
	for (i = 0; i < json_array_size(endpoints); i++) {
		e = json_array_get(endpoints, i);
		table_row(&t, field(e, "name"), field(e, "state"));
	}
	table_print(&t);
}

static int cmd_status(struct ctx *c, int argc, char **argv)
{
	json_t *r;
	int rc;

	(void)argc, (void)argv;
	if ((rc = request(c, "status", NULL, NULL, 0, &r)) != RC_OK)
		return rc;
	if (c->json) {
		print_json(r, 0);
	} else {
		print_daemon(r);
		putchar('\n');
		print_device_table(json_object_get(r, "devices"), 0);
		putchar('\n');
		print_endpoints(json_object_get(r, "endpoints"));
	}
	json_decref(r);
	return RC_OK;
}

static json_t *find_device(json_t *devices, const char *name)
{
	const char *n;
	size_t i;
	json_t *d;

	for (i = 0; i < json_array_size(devices); i++) {
		d = json_array_get(devices, i);
		n = json_string_value(json_object_get(d, "name"));
		if (n && strcmp(n, name) == 0)
			return d;
	}
	return NULL;
}

static int show_device(struct ctx *c, json_t *devices, const char *name)
{
	json_t *d = find_device(devices, name);

	if (!d) {
		fprintf(stderr, "kioskctl: devices.list: unknown_device: no device named '%s'\n",
		        name);
		return RC_REFUSED;
	}
	if (c->json)
		print_json(d, 0);
	else
		print_fields(d, 0);
	return RC_OK;
}

static int cmd_devices(struct ctx *c, int argc, char **argv)
{
	json_t *r;
	int rc;

	if ((rc = request(c, "devices.list", NULL, NULL, 0, &r)) != RC_OK)
		return rc;
	if (argc == 1)
		rc = show_device(c, json_object_get(r, "devices"), argv[0]);
	else if (c->json)
		print_json(r, 0);
	else
		print_device_table(json_object_get(r, "devices"), 1);
	json_decref(r);
	return rc;
}

static int cmd_reload(struct ctx *c, int argc, char **argv)
{
	json_t *r;
	int rc;

	(void)argc, (void)argv;
	if ((rc = request(c, "config.reload", NULL, NULL, 0, &r)) != RC_OK)
		return rc;
	if (c->json) {
		print_json(r, 0);
	} else {
		puts("Configuration reloaded.");
		print_fields(r, 2);
	}
	json_decref(r);
	return RC_OK;
}

/* ---- call, sim ---- */

/* Progress goes to stderr so stdout holds only the result. */
static void on_progress(void *arg, enum kc_kind kind, json_t *msg)
{
	struct ctx *c = arg;
	char *s;

	if (kind != KC_PROGRESS)
		return;
	s = c->json ? json_dumps(msg, JSON_COMPACT)
	            : json_dumps(json_object_get(msg, "progress"), HUMAN_JSON | JSON_COMPACT);
	if (s)
		fprintf(stderr, c->json ? "%s\n" : "progress: %s\n", s);
	free(s);
}

static int print_result(struct ctx *c, json_t *r, int quiet_if_empty)
{
	if (c->json)
		print_json(r, 0);
	else if (!quiet_if_empty || json_object_size(r) > 0)
		print_json(r, 1);
	json_decref(r);
	return RC_OK;
}

static int cmd_call(struct ctx *c, int argc, char **argv)
{
	json_t *args = NULL, *r;
	int rc;

	if (argc == 2 && (rc = parse_args_json(c, argv[1], &args)) != RC_OK)
		return rc;
	if ((rc = connect_daemon(c, argv[0])) == RC_OK) {
		kc_set_handler(c->kc, on_progress, c);
		rc = request(c, argv[0], c->device, args, 1, &r);
	}
	json_decref(args);
	return rc == RC_OK ? print_result(c, r, 0) : rc;
}

static int cmd_sim(struct ctx *c, int argc, char **argv)
{
	json_t *args = NULL, *r;
	int rc;

	if (argc == 3 && (rc = parse_args_json(c, argv[2], &args)) != RC_OK)
		return rc;
	if (!args)
		args = json_object();
	if (json_object_get(args, "what")) {
		json_decref(args);
		return usage_error(c, "give WHAT as a word, not as \"what\" in the JSON arguments");
	}
	json_object_set_new(args, "what", json_string(argv[1]));
	rc = request(c, "sim.inject", argv[0], args, 0, &r);
	json_decref(args);
	return rc == RC_OK ? print_result(c, r, 1) : rc;
}

/* ---- queue, sync ---- */

#define QUEUE_LIST_SYNOPSIS                                                                        \
	"queue list [--state STATE] [--type GLOB] [--flow FLOW] [--unfinished] [--limit N] "       \
	"[--before TXN_ID]"

/* queue: the counts.  queue.list answers them with any list; one row is
 * the least it can be asked for. */
static int queue_counts(struct ctx *c)
{
	json_t *args = json_pack("{si}", "limit", 1), *r, *counts, *v;
	struct table t = {.ncols = 2};
	char age[64];
	void *it;
	int rc;

	rc = request(c, "queue.list", NULL, args, 0, &r);
	json_decref(args);
	if (rc != RC_OK)
		return rc;
	counts = json_object_get(r, "counts");
	if (c->json) {
		print_json(counts ? counts : json_null(), 0);
		json_decref(r);
		return RC_OK;
	}
	table_row(&t, xstrdup("STATE"), xstrdup("TRANSACTIONS"));
	for (it = json_object_iter(counts); it; it = json_object_iter_next(counts, it)) {
		if (strcmp(json_object_iter_key(it), "oldest_queued_s") == 0)
			continue;
		v = json_object_iter_value(it);
		table_row(&t, sanitize(xstrdup(json_object_iter_key(it))), value_text(v));
	}
	table_print(&t);
	v = json_object_get(counts, "oldest_queued_s");
	if (json_is_number(v))
		fmt_seconds(v, 0, age, sizeof(age));
	printf("Oldest queued: %s\n", json_is_number(v) ? age : "-");
	json_decref(r);
	return RC_OK;
}

static void print_txn_table(json_t *txns)
{
	int reason = 0;
	struct table t;
	const char *st;
	size_t i;
	json_t *x;

	if (json_array_size(txns) == 0) {
		puts("No transactions.");
		return;
	}
	/* REASON only when it says something: why a listed transaction failed */
	for (i = 0; i < json_array_size(txns); i++) {
		x = json_array_get(txns, i);
		st = json_string_value(json_object_get(x, "state"));
		if ((st && strcmp(st, "failed") == 0) || json_object_get(x, "reason"))
			reason = 1;
	}
	t = (struct table){.ncols = reason ? 7 : 6};
	table_row(&t, xstrdup("ID"), xstrdup("TYPE"), xstrdup("STATE"), xstrdup("ENDPOINT"),
	          xstrdup("ATTEMPTS"), xstrdup("CREATED"), reason ? xstrdup("REASON") : NULL);
	for (i = 0; i < json_array_size(txns); i++) {
		x = json_array_get(txns, i);
		table_row(&t, field(x, "txn_id"), field(x, "type"), field(x, "state"),
		          field(x, "endpoint"), field(x, "attempts"), field(x, "created"),
		          reason ? field(x, "reason") : NULL);
	}
	table_print(&t);
}

static int queue_list(struct ctx *c)
{
	json_t *r, *next;
	char *s;
	int rc;

	if ((rc = request(c, "queue.list", NULL, c->filter, 0, &r)) != RC_OK)
		return rc;
	if (c->json) {
		print_json(r, 0);
	} else {
		print_txn_table(json_object_get(r, "transactions"));
		next = json_object_get(r, "next");
		if (next && !json_is_null(next)) {
			s = value_text(next);
			printf("more: --before %s\n", s);
			free(s);
		}
	}
	json_decref(r);
	return RC_OK;
}

static int queue_show(struct ctx *c, json_t *args)
{
	json_t *r;
	int rc;

	if ((rc = request(c, "txn.get", NULL, args, 0, &r)) != RC_OK)
		return rc;
	return print_result(c, r, 0);
}

static int queue_retry(struct ctx *c, json_t *args)
{
	json_t *r, *id;
	char *s;
	int rc;

	if ((rc = request(c, "queue.retry", NULL, args, 0, &r)) != RC_OK)
		return rc;
	if (c->json) {
		print_json(r, 0);
	} else {
		id = json_object_get(r, "txn_id");
		s = value_text(json_is_string(id) ? id : json_object_get(args, "txn_id"));
		printf("%s queued again\n", s);
		free(s);
	}
	json_decref(r);
	return RC_OK;
}

static int cmd_queue(struct ctx *c, int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : NULL;
	json_t *args;
	int rc;

	if (c->filter_opt && !(sub && strcmp(sub, "list") == 0))
		return usage_error(c, "--%s applies to 'queue list' only", opt_name(c->filter_opt));
	if (!sub)
		return queue_counts(c);
	if (strcmp(sub, "list") == 0) {
		if (argc > 1)
			return usage_error(c, "too many arguments; usage: kioskctl %s",
			                   QUEUE_LIST_SYNOPSIS);
		return queue_list(c);
	}
	if (strcmp(sub, "show") != 0 && strcmp(sub, "retry") != 0)
		return usage_error(c, "unknown queue command '%s' (list, show or retry)", sub);
	if (argc != 2)
		return usage_error(c, "%s; usage: kioskctl queue %s TXN_ID",
		                   argc < 2 ? "missing TXN_ID" : "too many arguments", sub);
	if (!(args = json_pack("{ss}", "txn_id", argv[1])))
		return usage_error(c, "TXN_ID is not valid UTF-8");
	rc = strcmp(sub, "show") == 0 ? queue_show(c, args) : queue_retry(c, args);
	json_decref(args);
	return rc;
}

/* "in 2m 05s", rounded up: "in 0s" for 0.3 s would be a lie */
static char *next_attempt_text(json_t *v)
{
	char buf[64], *s;

	if (!json_is_number(v))
		return value_text(v);
	if (!(json_number_value(v) > 0))
		return xstrdup("now");
	fmt_seconds(v, 1, buf, sizeof(buf));
	if (asprintf(&s, "in %s", buf) < 0)
		die_oom();
	return s;
}

static void print_sync_endpoints(json_t *endpoints)
{
	struct table t = {.ncols = 7};
	size_t i;
	json_t *e;

	if (json_array_size(endpoints) == 0) {
		puts("No endpoints configured.");
		return;
	}
	table_row(&t, xstrdup("NAME"), xstrdup("STATE"), xstrdup("INFLIGHT"), xstrdup("DELIVERED"),
	          xstrdup("FAILED"), xstrdup("NEXT-ATTEMPT"), xstrdup("LAST-ERROR"));
	for (i = 0; i < json_array_size(endpoints); i++) {
		e = json_array_get(endpoints, i);
		table_row(&t, field(e, "name"), field(e, "state"), field(e, "inflight"),
		          field(e, "delivered"), field(e, "failed"),
		          next_attempt_text(json_object_get(e, "next_attempt_s")),
		          field(e, "last_error"));
	}
	table_print(&t);
}

static int cmd_sync(struct ctx *c, int argc, char **argv)
{
	json_t *r;
	char *s;
	int rc;

	(void)argc, (void)argv;
	if (c->now) {
		if ((rc = request(c, "sync.kick", NULL, NULL, 0, &r)) != RC_OK)
			return rc;
		json_decref(r);
		if (!c->json)
			puts("Every endpoint was told to send now, backoff skipped.\n");
	}
	if ((rc = request(c, "sync.status", NULL, NULL, 0, &r)) != RC_OK)
		return rc;
	if (c->json) {
		print_json(r, 0);
	} else {
		print_sync_endpoints(json_object_get(r, "endpoints"));
		s = queue_text(json_object_get(r, "queue"));
		printf("\nQueue: %s\n", s);
		free(s);
	}
	json_decref(r);
	return RC_OK;
}

/* ---- events ---- */

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

/* SIGINT/SIGTERM end --follow cleanly.  They stay blocked except inside
 * ppoll(), so one cannot slip in between the check and the wait. */
static void catch_signals(sigset_t *wait_mask)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigset_t block;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, wait_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static void print_event(struct ctx *c, json_t *ev)
{
	json_t *data = json_object_get(ev, "data");
	char *ts, *name, *dev, *d = NULL;

	if (c->json) {
		print_json(ev, 0);
		fflush(stdout);
		return;
	}
	ts = field(ev, "ts");
	name = field(ev, "event");
	dev = field(ev, "device");
	if (data && !json_is_null(data))
		d = json_dumps(data, HUMAN_JSON | JSON_COMPACT);
	printf("%s  %s  %s%s%s\n", ts, name, dev, d ? "  " : "", d ? d : "");
	fflush(stdout);
	free(ts);
	free(name);
	free(dev);
	free(d);
}

/* Milliseconds of --timeout left: -1 without one, 0 when spent. */
static int time_left(const struct ctx *c)
{
	struct timespec now;
	long long left;

	if (c->timeout_ms < 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	left = c->timeout_ms - ((long long)(now.tv_sec - c->start.tv_sec) * 1000 +
	                        (now.tv_nsec - c->start.tv_nsec) / 1000000);
	return left > 0 ? (int)left : 0;
}

/* Print queued events; 1 once the wanted count is reached. */
static int drain_events(struct ctx *c, int want, int *seen)
{
	enum kc_kind kind;
	json_t *m;

	while ((!want || *seen < want) && (m = kc_next(c->kc, &kind))) {
		if (kind == KC_EVENT) {
			print_event(c, m);
			(*seen)++;
		}
		json_decref(m);
	}
	return want && *seen >= want;
}

static int events_expired(struct ctx *c, int want, int seen)
{
	/* a --follow without --count was simply told how long to listen */
	if (!want)
		return RC_OK;
	if (seen == 0)
		fprintf(stderr, "kioskctl: events.subscribe: timeout: no event within %d ms\n",
		        c->timeout_ms);
	else
		fprintf(stderr,
		        "kioskctl: events.subscribe: timeout: %d of %d events within %d ms\n", seen,
		        want, c->timeout_ms);
	return RC_TIMEOUT;
}

static int event_loop(struct ctx *c, int want, const sigset_t *wait_mask)
{
	struct pollfd p = {.fd = kc_fd(c->kc), .events = POLLIN};
	struct timespec ts;
	int seen = 0, st = KC_OK, left;

	for (;;) {
		if (drain_events(c, want, &seen) || got_signal)
			return RC_OK;
		if (st != KC_OK)
			return report(c, "events.subscribe", st, NULL);
		if ((left = time_left(c)) == 0)
			return events_expired(c, want, seen);
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (long)(left % 1000) * 1000000L;
		p.revents = 0;
		if (ppoll(&p, 1, left < 0 ? NULL : &ts, wait_mask) < 0 && errno != EINTR) {
			fprintf(stderr, "kioskctl: events: poll: %s\n", strerror(errno));
			return RC_CONN;
		}
		/* queued messages are printed before a close or bad line is reported */
		if (p.revents)
			st = kc_feed(c->kc);
	}
}

static int cmd_events(struct ctx *c, int argc, char **argv)
{
	json_t *topics = json_array(), *args, *r;
	int rc, wait = time_left(c);
	sigset_t wait_mask;

	for (int i = 0; i < argc; i++) {
		if (json_array_append_new(topics, json_string(argv[i])) < 0) {
			json_decref(topics);
			return usage_error(c, "pattern %d is not valid UTF-8", i + 1);
		}
	}
	if (argc == 0)
		json_array_append_new(topics, json_string("*"));
	args = json_pack("{so}", "topics", topics);
	if ((rc = connect_daemon(c, "events.subscribe")) != RC_OK) {
		json_decref(args);
		return rc;
	}
	/* the subscribe reply is quick; --timeout is mostly for the events */
	if (wait < 0)
		wait = DEFAULT_WAIT_MS;
	rc = kc_call(c->kc, "events.subscribe", NULL, args, wait > 0 ? wait : 1, &r);
	json_decref(args);
	if (rc != KC_OK) {
		rc = report(c, "events.subscribe", rc, r);
		json_decref(r);
		return rc;
	}
	json_decref(r);
	sigemptyset(&wait_mask);
	if (c->follow)
		catch_signals(&wait_mask);
	else
		sigprocmask(SIG_BLOCK, NULL, &wait_mask);
	return event_loop(c, c->follow ? c->count : (c->count ? c->count : 1), &wait_mask);
}

/* ---- help texts ---- */

static const char exit_help[] =
        "Exit status:\n"
        "  0  success\n"
        "  1  the daemon answered with an error (its code is printed)\n"
        "  2  usage error: bad option, command or JSON argument\n"
        "  3  cannot connect, connection lost, or the daemon broke the protocol\n"
        "  4  timed out: nothing within --timeout, or the daemon's error was 'timeout'\n"
        "  5  not permitted: the daemon's error was 'not_permitted'\n";

static const char common_help[] =
        "Common options (before or after the command):\n"
        "  -s, --socket PATH  the daemon's socket (see kioskctl --help)\n"
        "  -j, --json         print the result as one line of JSON, for scripts\n"
        "  -t, --timeout MS   give up after MS milliseconds (exit status 4); the daemon\n"
        "                     also gets MS as the command's timeout_ms.  Default: 60 s\n"
        "                     for hello, status, devices, sim, reload, queue and\n"
        "                     sync; call and events wait as long as the daemon's own\n"
        "                     timeouts say\n"
        "  -h, --help         show this help\n";

static const char hello_help[] =
        "Usage: kioskctl hello\n"
        "\n"
        "Say hello to the daemon: print the protocol version, the daemon's version\n"
        "and the role this connection has (admin or ui), plus the socket used.\n"
        "A quick way to check that kioskd is up and which socket you reach.\n"
        "\n"
        "Examples:\n"
        "  kioskctl hello\n"
        "  kioskctl --json hello | jq -r .role\n";

static const char status_help[] =
        "Usage: kioskctl status\n"
        "\n"
        "Show the daemon's state: version, PID, uptime, connected clients and the\n"
        "configuration file; how many devices are in each state; the outbox queue\n"
        "per transaction state and how long the oldest queued one has waited\n"
        "(kioskctl queue and kioskctl sync tell more); every device with its class,\n"
        "plugin, state and, when it is not ready, the reason; every remote\n"
        "endpoint, up or down.\n"
        "\n"
        "Examples:\n"
        "  kioskctl status\n"
        "  kioskctl --json status | jq '.devices[] | select(.state != \"ready\")'\n";

static const char devices_help[] =
        "Usage: kioskctl devices [NAME]\n"
        "\n"
        "Without NAME, list every configured device as a table: name, class,\n"
        "plugin, state, the commands it offers (capabilities) and why it is not\n"
        "ready.  With NAME, show that device in detail, including the plugin's own\n"
        "status fields.  An unknown NAME is exit status 1 (unknown_device).\n"
        "\n"
        "Examples:\n"
        "  kioskctl devices\n"
        "  kioskctl devices printer0\n"
        "  kioskctl --json devices card0 | jq .status\n";

static const char call_help[] =
        "Usage: kioskctl call CMD [JSON-ARGS] [--device NAME]\n"
        "\n"
        "Send any protocol command (docs/protocol.md) and print its result:\n"
        "indented JSON for people, one line with --json.  JSON-ARGS, when given,\n"
        "must be one JSON object; it becomes the request's \"args\".  Progress\n"
        "reports go to standard error as they arrive (\"progress: {...}\", or the\n"
        "raw progress lines with --json), so standard output holds only the\n"
        "result.  Without --timeout the daemon's configured timeout for CMD\n"
        "applies and kioskctl waits for its answer.  Interrupting kioskctl closes\n"
        "the connection, which cancels the command.\n"
        "\n"
        "Options:\n"
        "  -d, --device NAME  the device to address; needed when the class has\n"
        "                     more than one device\n"
        "\n"
        "Examples:\n"
        "  kioskctl call cardreader.read '{\"offset\": 0, \"length\": 32}'\n"
        "  kioskctl call printer.print --device printer0 \\\n"
        "      '{\"blocks\": [{\"text\": \"hello\"}, {\"cut\": true}]}'\n"
        "  kioskctl call locker.open '{\"door\": 3}'\n"
        "  kioskctl --timeout 10000 call cardreader.wait\n";

static const char events_help[] =
        "Usage: kioskctl events [--follow] [--count N] [PATTERN...]\n"
        "\n"
        "Subscribe to the events whose topic matches a PATTERN, a shell glob such\n"
        "as 'cardreader.*' or 'device.state' (default '*', all), and print them\n"
        "one a line:\n"
        "  2026-12-04T15:20:00.123Z  cardreader.inserted  card0  {\"type\":\"sle4442\"}\n"
        "that is time stamp, event, device and data.  With --json each event is\n"
        "printed as the daemon sent it, one JSON object a line.\n"
        "\n"
        "Without --follow, wait for the first event (N with --count), print it and\n"
        "exit 0.  Without --timeout that wait has no end; with it, exit 4 when the\n"
        "events did not come in time.  --timeout counts from kioskctl's start.\n"
        "\n"
        "Options:\n"
        "  -f, --follow   keep printing events until SIGINT or SIGTERM (exit 0), the\n"
        "                 daemon closes the connection (exit 3), N events were\n"
        "                 printed (--count, exit 0) or --timeout ends (exit 0, or 4\n"
        "                 when fewer than N events came)\n"
        "  -n, --count N  stop after N events\n"
        "\n"
        "Examples:\n"
        "  kioskctl --timeout 30000 events 'cardreader.*'\n"
        "  kioskctl events --follow 'locker.*' 'device.state'\n"
        "  kioskctl --json events --follow > events.jsonl\n";

static const char sim_help[] =
        "Usage: kioskctl sim DEVICE WHAT [JSON-ARGS]\n"
        "\n"
        "Drive a simulated device (admin only): sends sim.inject to DEVICE with\n"
        "args {\"what\": WHAT} merged with JSON-ARGS, which must be an object.\n"
        "hal/sim/README.md lists what each simulator understands; an unknown WHAT\n"
        "is refused with a list of the known ones (exit status 1).  The result,\n"
        "usually the simulator's new status, is printed when it is not empty.\n"
        "\n"
        "Examples:\n"
        "  kioskctl sim card0 insert '{\"card\": {\"type\": \"sle4442\"}}'\n"
        "  kioskctl sim card0 remove\n"
        "  kioskctl sim printer0 paper_out\n"
        "  kioskctl sim cabinet0 set '{\"temperature\": -30}'\n";

static const char reload_help[] =
        "Usage: kioskctl reload\n"
        "\n"
        "Make the daemon re-read its configuration (config.reload, admin only).\n"
        "Devices are re-opened only where their configuration changed.  A\n"
        "configuration with errors is refused and the running one stays.\n"
        "\n"
        "Examples:\n"
        "  kioskctl reload\n";

static const char queue_help[] =
        "Usage: kioskctl queue\n"
        "       kioskctl queue list [--state STATE] [--type GLOB] [--flow FLOW]\n"
        "                           [--unfinished] [--limit N] [--before TXN_ID]\n"
        "       kioskctl queue show TXN_ID\n"
        "       kioskctl queue retry TXN_ID\n"
        "\n"
        "Inspect and operate the outbox, where every transaction the kiosk UI\n"
        "submitted waits until its endpoint has it (docs/delivery.md).  A\n"
        "transaction is queued, sending, delivered, or failed: the endpoint refused\n"
        "it for good and said why.  A failed transaction stays until an admin\n"
        "retries it.\n"
        "\n"
        "  queue               how many transactions are in each state, and how long\n"
        "                      the oldest queued one has waited\n"
        "  queue list          the transactions as a table: ID, TYPE, STATE,\n"
        "                      ENDPOINT ('-': no route), ATTEMPTS, CREATED and, when\n"
        "                      a failed one is listed, REASON.  At most 100 (--limit);\n"
        "                      when there are more, the last line is\n"
        "                      'more: --before TXN_ID': repeat the command with that\n"
        "                      option for the next page\n"
        "  queue show TXN_ID   one transaction in full, as indented JSON: payload,\n"
        "                      blobs, flow, attempts, and why it failed\n"
        "  queue retry TXN_ID  put a failed transaction back in the queue, to be sent\n"
        "                      again; prints 'TXN_ID queued again'.  A transaction\n"
        "                      that is not failed, or an unknown TXN_ID, is refused\n"
        "                      (exit status 1)\n"
        "\n"
        "queue, queue list and queue retry need the admin role (admin.sock; exit\n"
        "status 5 on ui.sock); queue show works on either socket.  With --json:\n"
        "queue prints the counts object, queue list the whole queue.list result\n"
        "(transactions, next, counts), queue show the transaction and queue retry\n"
        "the daemon's answer.\n"
        "\n"
        "Options of queue list (given together, a transaction must match all):\n"
        "  --state STATE    queued, sending, delivered or failed\n"
        "  --type GLOB      transaction types matching a shell glob, e.g. 'gas.*'\n"
        "  --flow FLOW      the transactions of one flow\n"
        "  --unfinished     the transactions of flows whose final transaction never\n"
        "                   came (say, a paid top-up whose card write is missing)\n"
        "  --limit N        at most N transactions, 1 to 1000 (default 100)\n"
        "  --before TXN_ID  the next page: the id a 'more:' line gave\n"
        "\n"
        "Examples:\n"
        "  kioskctl queue\n"
        "  kioskctl queue list --state failed\n"
        "  kioskctl queue list --type 'gas.*' --limit 20\n"
        "  kioskctl queue show 01HF7Z3Q4W8V5R2N6M1K0J9H8J\n"
        "  kioskctl queue retry 01HF7Z3Q4W8V5R2N6M1K0J9H8J\n"
        "  kioskctl --json queue list --state failed | jq -r '.transactions[].txn_id'\n";

static const char sync_help[] =
        "Usage: kioskctl sync [--now]\n"
        "\n"
        "Show how delivery to the remote endpoints goes: one row per configured\n"
        "endpoint with its STATE (idle, sending, backoff or down), the transactions\n"
        "in flight, its DELIVERED and FAILED counts, when it tries again while it\n"
        "backs off (NEXT-ATTEMPT) and its LAST-ERROR; then the outbox counts, as\n"
        "'kioskctl queue' gives them.  Works on either socket.  With --json, the\n"
        "sync.status result on one line.\n"
        "\n"
        "Options:\n"
        "  --now  first tell every endpoint to send what it has queued at once,\n"
        "         skipping any backoff (sync.kick, admin only: exit status 5 on\n"
        "         ui.sock), then show the state.  For when the network is back and\n"
        "         waiting out the backoff is not wanted\n"
        "\n"
        "Examples:\n"
        "  kioskctl sync\n"
        "  kioskctl sync --now\n"
        "  kioskctl --json sync | jq -r '.endpoints[] | select(.state == \"down\") | .name'\n";

static const char help_help[] =
        "Usage: kioskctl help [COMMAND]\n"
        "\n"
        "Show the overview, or the help of COMMAND (same as kioskctl COMMAND --help).\n";

static int cmd_help(struct ctx *c, int argc, char **argv);

static const struct command commands[] = {
        {"hello", "hello", 0, 0, cmd_hello, "protocol and daemon version, your role", hello_help},
        {"status", "status", 0, 0, cmd_status, "daemon, queue, devices and endpoints", status_help},
        {"devices", "devices [NAME]", 0, 1, cmd_devices, "list devices, or show one in detail",
         devices_help},
        {"call", "call CMD [JSON-ARGS] [--device NAME]", 1, 2, cmd_call,
         "send any command and print its result", call_help},
        {"events", "events [--follow] [--count N] [PATTERN...]", 0, INT_MAX, cmd_events,
         "wait for events and print them", events_help},
        {"sim", "sim DEVICE WHAT [JSON-ARGS]", 2, 3, cmd_sim,
         "drive a simulator (sim.inject, admin)", sim_help},
        {"reload", "reload", 0, 0, cmd_reload, "re-read the configuration (admin)", reload_help},
        {"queue", "queue [list [OPTIONS] | show ID | retry ID]", 0, INT_MAX, cmd_queue,
         "the outbox: counts, list, show, retry (admin)", queue_help},
        {"sync", "sync [--now]", 0, 0, cmd_sync, "delivery to the endpoints; --now: send now",
         sync_help},
        {"help", "help [COMMAND]", 0, 1, cmd_help, "this overview, or a command's help", help_help},
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void print_usage(FILE *f)
{
	fputs("Usage: kioskctl [--socket PATH] [--json] [--timeout MS] COMMAND [ARGS]\n"
	      "       kioskctl COMMAND --help | --help | --version\n"
	      "\n"
	      "Control and inspect kioskd, the kiosk device daemon, over its socket.\n"
	      "\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-44s %s\n", commands[i].synopsis, commands[i].summary);
	fputs("\n"
	      "Options:\n"
	      "  -s, --socket PATH  the daemon's socket; default $KIOSKCTL_SOCKET, else\n"
	      "                     " ADMIN_SOCK " when writable, else\n"
	      "                     " UI_SOCK "\n"
	      "  -j, --json         print results as one line of JSON, for scripts\n"
	      "  -t, --timeout MS   give up after MS milliseconds (exit status 4)\n"
	      "  -h, --help         show this help (COMMAND --help: that command's)\n"
	      "  -V, --version      show the version\n"
	      "\n"
	      "Errors are printed as 'kioskctl: CMD: CODE: MESSAGE'.\n"
	      "\n",
	      f);
	fputs(exit_help, f);
	fputs("\nSee docs/kioskctl.md for the manual.\n", f);
}

static int print_command_help(const struct command *cmd)
{
	printf("%s\n%s\n%s", cmd->help, common_help, exit_help);
	return RC_OK;
}

static int cmd_help(struct ctx *c, int argc, char **argv)
{
	const struct command *cmd;

	if (argc == 0) {
		print_usage(stdout);
		return RC_OK;
	}
	if (!(cmd = find_command(argv[0]))) {
		c->cmd = NULL;
		return usage_error(c, "unknown command '%s'", argv[0]);
	}
	return print_command_help(cmd);
}

/* ---- option parsing ---- */

static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"device", required_argument, NULL, 'd'},
        {"follow", no_argument, NULL, 'f'},
        {"count", required_argument, NULL, 'n'},
        {"state", required_argument, NULL, OPT_STATE},
        {"type", required_argument, NULL, OPT_TYPE},
        {"flow", required_argument, NULL, OPT_FLOW},
        {"unfinished", no_argument, NULL, OPT_UNFINISHED},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"before", required_argument, NULL, OPT_BEFORE},
        {"now", no_argument, NULL, OPT_NOW},
        {NULL, 0, NULL, 0},
};

/* Options of one command only; elsewhere they are usage errors. */
static const struct own_option {
	int val;
	const char *command;
	const char *where; /* "goes after its command: kioskctl <where>" */
} own_options[] = {
        {'d', "call", "call CMD --device"},
        {'f', "events", "events --follow"},
        {'n', "events", "events --count"},
        {OPT_STATE, "queue", "queue list --state"},
        {OPT_TYPE, "queue", "queue list --type"},
        {OPT_FLOW, "queue", "queue list --flow"},
        {OPT_UNFINISHED, "queue", "queue list --unfinished"},
        {OPT_LIMIT, "queue", "queue list --limit"},
        {OPT_BEFORE, "queue", "queue list --before"},
        {OPT_NOW, "sync", "sync --now"},
};

static const struct own_option *own_option(int ch)
{
	for (size_t i = 0; i < sizeof(own_options) / sizeof(own_options[0]); i++)
		if (own_options[i].val == ch)
			return &own_options[i];
	return NULL;
}

static const char *opt_name(int ch)
{
	for (const struct option *o = longopts; o->name; o++)
		if (o->val == ch)
			return o->name;
	return "?";
}

static int bad_option(struct ctx *c, int ch, char **argv)
{
	if (ch == ':')
		return usage_error(c, "option '%s' needs an argument", argv[optind - 1]);
	if (optopt)
		return usage_error(c, "unknown option '-%c'", optopt);
	return usage_error(c, "unknown option '%s'", argv[optind - 1]);
}

static const char *const txn_states[] = {"queued", "sending", "delivered", "failed"};

/* A queue list option into c->filter, the queue.list arguments. */
static int filter_option(struct ctx *c, int ch, int *rc)
{
	const char *key = opt_name(ch);
	int limit, ok = 0;
	json_t *v;

	switch (ch) {
	case OPT_STATE:
		for (size_t i = 0; i < sizeof(txn_states) / sizeof(txn_states[0]); i++)
			ok |= strcmp(optarg, txn_states[i]) == 0;
		if (!ok) {
			*rc = usage_error(c,
			                  "--state wants queued, sending, delivered or failed, "
			                  "not '%s'",
			                  optarg);
			return -1;
		}
		v = json_string(optarg);
		break;
	case OPT_LIMIT:
		if (parse_int(optarg, 1, &limit) < 0 || limit > 1000) {
			*rc = usage_error(
			        c, "--limit wants a whole number from 1 to 1000, not '%s'", optarg);
			return -1;
		}
		v = json_integer(limit);
		break;
	case OPT_UNFINISHED:
		v = json_true();
		break;
	default: /* --type, --flow, --before: the daemon judges them */
		if (!(v = json_string(optarg))) {
			*rc = usage_error(c, "--%s: the value is not valid UTF-8", key);
			return -1;
		}
	}
	if (!c->filter && !(c->filter = json_object()))
		die_oom();
	if (json_object_set_new(c->filter, key, v) < 0)
		die_oom();
	if (!c->filter_opt)
		c->filter_opt = ch;
	return 0;
}

/* One option; -1 when it means "exit now with *rc". */
static int take_option(struct ctx *c, int ch, char **argv, int *rc)
{
	switch (ch) {
	case OPT_STATE:
	case OPT_TYPE:
	case OPT_FLOW:
	case OPT_UNFINISHED:
	case OPT_LIMIT:
	case OPT_BEFORE:
		return filter_option(c, ch, rc);
	case OPT_NOW:
		c->now = 1;
		return 0;
	case 's':
		c->socket = optarg;
		return 0;
	case 'j':
		c->json = 1;
		return 0;
	case 't':
		if (parse_int(optarg, 1, &c->timeout_ms) == 0)
			return 0;
		*rc = usage_error(c, "--timeout wants milliseconds, a whole number > 0, not '%s'",
		                  optarg);
		return -1;
	case 'd':
		c->device = optarg;
		return 0;
	case 'f':
		c->follow = 1;
		return 0;
	case 'n':
		if (parse_int(optarg, 1, &c->count) == 0)
			return 0;
		*rc = usage_error(c, "--count wants a whole number > 0, not '%s'", optarg);
		return -1;
	case 'V':
		printf("kioskctl %s\n", KIOSKD_VERSION);
		*rc = RC_OK;
		return -1;
	case 'h':
		*rc = c->cmd ? print_command_help(c->cmd) : (print_usage(stdout), RC_OK);
		return -1;
	}
	*rc = bad_option(c, ch, argv);
	return -1;
}

/* Options before the command: only the common ones. */
static int parse_global(struct ctx *c, int argc, char **argv, int *rc)
{
	const struct own_option *own;
	int ch;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:s:jt:hVd:fn:", longopts, NULL)) != -1) {
		if ((own = own_option(ch))) {
			*rc = usage_error(c, "--%s goes after its command: kioskctl %s",
			                  opt_name(ch), own->where);
			return -1;
		}
		if (take_option(c, ch, argv, rc) < 0)
			return -1;
	}
	return optind;
}

/* The command's words; options may come anywhere among them. */
static int parse_command(struct ctx *c, int argc, char **argv, int *rc)
{
	const struct own_option *own;
	int ch;

	optind = 0; /* glibc: restart scanning, permuting options to the front */
	while ((ch = getopt_long(argc, argv, ":s:jt:hVd:fn:", longopts, NULL)) != -1) {
		if ((own = own_option(ch)) && strcmp(own->command, c->cmd->name) != 0) {
			*rc = usage_error(c, "--%s does not apply to %s", opt_name(ch),
			                  c->cmd->name);
			return -1;
		}
		if (take_option(c, ch, argv, rc) < 0)
			return -1;
	}
	argc -= optind;
	if (argc < c->cmd->min_args || argc > c->cmd->max_args) {
		*rc = usage_error(c, "%s; usage: kioskctl %s",
		                  argc < c->cmd->min_args ? "missing arguments"
		                                          : "too many arguments",
		                  c->cmd->synopsis);
		return -1;
	}
	return optind;
}

int main(int argc, char **argv)
{
	struct ctx c = {.timeout_ms = -1};
	int first, rc = RC_OK;

	clock_gettime(CLOCK_MONOTONIC, &c.start);
	setlocale(LC_CTYPE, ""); /* for text_width() only; output stays UTF-8 as received */
	if ((first = parse_global(&c, argc, argv, &rc)) < 0)
		return rc;
	if (first >= argc) {
		print_usage(stderr);
		return RC_USAGE;
	}
	if (!(c.cmd = find_command(argv[first])))
		return usage_error(&c, "unknown command '%s'", argv[first]);
	argc -= first;
	argv += first;
	if ((first = parse_command(&c, argc, argv, &rc)) >= 0)
		rc = c.cmd->run(&c, argc - first, argv + first);
	json_decref(c.filter);
	kc_close(c.kc);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "kioskctl: writing output: %s\n", strerror(errno));
		return rc ? rc : RC_REFUSED;
	}
	return rc;
}
