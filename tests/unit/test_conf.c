/* conf.c: the INI configuration, its drop-ins and every diagnostic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"

#define N "t.conf"

static void dump(const struct diag *d)
{
	for (int i = 0; i < d->n; i++)
		print_message("diag[%d]: %s\n", i, d->msgs[i]);
}

static struct conf *load_ok(const char *text)
{
	struct diag d = {0};
	struct conf *c = conf_load_string(N, text, &d);
	if (!c || d.n)
		dump(&d);
	assert_non_null(c);
	assert_int_equal(d.n, 0);
	diag_free(&d);
	return c;
}

/* The text is refused with exactly these messages (NULL-terminated), in order. */
static void expect_errors_(const char *text, const char *const *want)
{
	struct diag d = {0};
	struct conf *c = conf_load_string(N, text, &d);
	int n = 0;

	while (want[n])
		n++;
	if (c || d.n != n)
		dump(&d);
	assert_null(c);
	assert_int_equal(d.n, n);
	for (int i = 0; i < n; i++)
		assert_string_equal(d.msgs[i], want[i]);
	diag_free(&d);
}
#define expect_errors(text, ...) expect_errors_(text, (const char *const[]){__VA_ARGS__, NULL})

static const struct conf_device *dev(const struct conf *c, const char *name)
{
	const struct conf_device *d = conf_device_find(c, name);
	assert_non_null(d);
	return d;
}

/* ---- valid configurations ---- */

static void test_defaults(void **state)
{
	(void)state;
	struct conf *c = load_ok("");

	assert_string_equal(c->path, N);
	assert_null(c->runtime_dir);
	assert_null(c->state_dir);
	assert_string_equal(c->plugin_path, KIOSKD_PLUGINDIR);
	assert_int_equal(c->log_level, LOG_INFO);
	assert_int_equal(c->max_clients, 64);
	assert_int_equal(c->max_line, 1L << 20);
	assert_int_equal(c->client_buffer, 4L << 20);
	assert_null(c->admin_group);
	assert_null(c->ui_group);
	assert_int_equal(c->command_timeout_ms, 30000);
	assert_int_equal(c->cancel_grace_ms, 2000);
	assert_int_equal(c->workers, 2);
	assert_int_equal(c->reopen_min_ms, 500);
	assert_int_equal(c->reopen_max_ms, 60000);
	assert_null(c->devices);
	conf_free(c);

	/* comments and blank lines only */
	c = load_ok("# comment\n; another\n\n[daemon]\n\n");
	assert_int_equal(c->workers, 2);
	conf_free(c);
}

static void test_every_daemon_key(void **state)
{
	(void)state;
	struct conf *c = load_ok("[daemon]\n"
	                         "runtime_dir = /tmp/k/run\n"
	                         "state_dir = /tmp/k/state\n"
	                         "plugin_path = /a:/b\n"
	                         "log_level = debug\n"
	                         "max_clients = 4096\n"
	                         "max_line_bytes = 256\n"
	                         "client_buffer_bytes = 268435456\n"
	                         "admin_group = kiosk-admin\n"
	                         "ui_group = kiosk-ui\n"
	                         "command_timeout_ms = 10\n"
	                         "cancel_grace_ms = 600000\n"
	                         "workers = 64\n"
	                         "reopen_min_ms = 10\n"
	                         "reopen_max_ms = 3600000\n");

	assert_string_equal(c->runtime_dir, "/tmp/k/run");
	assert_string_equal(c->state_dir, "/tmp/k/state");
	assert_string_equal(c->plugin_path, "/a:/b");
	assert_int_equal(c->log_level, LOG_DEBUG);
	assert_int_equal(c->max_clients, 4096);
	assert_int_equal(c->max_line, 256);
	assert_int_equal(c->client_buffer, 256L << 20);
	assert_string_equal(c->admin_group, "kiosk-admin");
	assert_string_equal(c->ui_group, "kiosk-ui");
	assert_int_equal(c->command_timeout_ms, 10);
	assert_int_equal(c->cancel_grace_ms, 600000);
	assert_int_equal(c->workers, 64);
	assert_int_equal(c->reopen_min_ms, 10);
	assert_int_equal(c->reopen_max_ms, 3600000);
	conf_free(c);

	/* every level name, and an inline comment after a value */
	static const struct {
		const char *name;
		int level;
	} levels[] = {{"err", LOG_ERR},
	              {"warning", LOG_WARNING},
	              {"notice", LOG_NOTICE},
	              {"info", LOG_INFO},
	              {"debug", LOG_DEBUG}};
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		char text[128];
		snprintf(text, sizeof(text), "[daemon]\nlog_level = %s ; comment\n",
		         levels[i].name);
		c = load_ok(text);
		assert_int_equal(c->log_level, levels[i].level);
		conf_free(c);
	}
}

static void test_devices(void **state)
{
	(void)state;
	struct conf *c = load_ok("[daemon]\n"
	                         "workers = 3\n"
	                         "\n"
	                         "[device printer0]\n"
	                         "class = printer\n"
	                         "plugin = sim\n"
	                         "width = 32\n"
	                         "timeout_ms = 5000\n"
	                         "\n"
	                         "[device locker_1-a]\n"
	                         "class = locker\n"
	                         "plugin = /opt/hal/locker.so\n"
	                         "doors = 24\n"
	                         "enabled = no\n");
	const struct conf_device *p = conf_device_find(c, "printer0");
	const struct conf_device *l = conf_device_find(c, "locker_1-a");

	assert_null(conf_device_find(c, "printer1"));
	assert_non_null(p);
	assert_non_null(l);
	/* in the order of the file */
	assert_ptr_equal(c->devices, p);
	assert_ptr_equal(p->next, l);
	assert_null(l->next);

	assert_int_equal(p->cls, KIOSK_CLASS_PRINTER);
	assert_string_equal(p->plugin, "sim");
	assert_int_equal(p->timeout_ms, 5000);
	assert_int_equal(p->enabled, 1);
	assert_string_equal(p->file, N);
	assert_int_equal(p->line, 4); /* the section header */
	assert_string_equal(conf_device_opt(p, "width"), "32");
	assert_string_equal(conf_device_opt(p, "plugin"), "sim");
	/* keys the core owns are not plugin options */
	assert_null(conf_device_opt(p, "class"));
	assert_null(conf_device_opt(p, "timeout_ms"));
	assert_null(conf_device_opt(p, "height"));
	assert_non_null(p->plugin_at);
	assert_string_equal(p->plugin_at->file, N);
	assert_int_equal(p->plugin_at->line, 6);

	assert_int_equal(l->cls, KIOSK_CLASS_LOCKER);
	assert_string_equal(l->plugin, "/opt/hal/locker.so");
	assert_int_equal(l->timeout_ms, 0);
	assert_int_equal(l->enabled, 0);
	assert_null(conf_device_opt(l, "enabled"));
	assert_string_equal(conf_device_opt(l, "doors"), "24");
	for (const struct conf_opt *o = l->opts; o; o = o->next) {
		if (!strcmp(o->key, "doors")) {
			assert_string_equal(o->file, N);
			assert_int_equal(o->line, 13);
		}
	}
	conf_free(c);

	/* every spelling of a boolean */
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		char text[128];
		snprintf(text, sizeof(text),
		         "[device a]\nclass = sensor\nplugin = sim\nenabled = %s\n", yes[i]);
		c = load_ok(text);
		assert_int_equal(c->devices->enabled, 1);
		conf_free(c);
		snprintf(text, sizeof(text),
		         "[device a]\nclass = sensor\nplugin = sim\nenabled = %s\n", no[i]);
		c = load_ok(text);
		assert_int_equal(c->devices->enabled, 0);
		conf_free(c);
	}
}

static void test_later_wins(void **state)
{
	(void)state;
	struct conf *c = load_ok("[daemon]\n"
	                         "workers = 3\n"
	                         "runtime_dir = /one\n"
	                         "[device a]\n"
	                         "class = printer\n"
	                         "plugin = sim\n"
	                         "width = 10\n"
	                         "[daemon]\n"
	                         "workers = 5\n"
	                         "runtime_dir = /two\n"
	                         "[device a]\n"
	                         "plugin = other\n"
	                         "width = 20\n"
	                         "enabled = no\n"
	                         "enabled = yes\n");

	assert_int_equal(c->workers, 5);
	assert_string_equal(c->runtime_dir, "/two");
	assert_non_null(c->devices);
	assert_null(c->devices->next); /* one device, merged */
	assert_string_equal(c->devices->plugin, "other");
	assert_string_equal(conf_device_opt(c->devices, "plugin"), "other");
	assert_string_equal(conf_device_opt(c->devices, "width"), "20");
	assert_int_equal(c->devices->enabled, 1);
	/* the section is where it first appeared; the option where last set */
	assert_int_equal(c->devices->line, 4);
	assert_int_equal(c->devices->plugin_at->line, 12);
	conf_free(c);
}

static void test_shipped_config(void **state)
{
	(void)state;
	struct conf *c;
	/* the unit tests run from the top of the tree */
	FILE *fp = fopen("conf/kioskd.conf", "r");
	if (!fp)
		skip();
	char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = 0;
	c = load_ok(buf);
	assert_non_null(conf_device_find(c, "printer0"));
	assert_string_equal(conf_device_opt(conf_device_find(c, "printer0"), "width"), "32");
	assert_int_equal(conf_device_find(c, "climate0")->cls, KIOSK_CLASS_ACTUATOR);
	conf_free(c);
}

/* ---- errors: every one with file:line ---- */

static void test_unknown_key(void **state)
{
	(void)state;
	expect_errors("[daemon]\nworkers = 2\nfoo = 1\n", N ":3: unknown key 'foo' in [daemon]");
}

static void test_bad_numbers(void **state)
{
	(void)state;
	expect_errors("[daemon]\nmax_clients = abc\n",
	              N ":2: max_clients: 'abc' is not a whole number between 1 and 4096");
	expect_errors("[daemon]\nmax_clients = 12x\n",
	              N ":2: max_clients: '12x' is not a whole number between 1 and 4096");
	expect_errors("[daemon]\nmax_clients = 0\n",
	              N ":2: max_clients: '0' is not a whole number between 1 and 4096");
	expect_errors("[daemon]\nmax_clients = 4097\n",
	              N ":2: max_clients: '4097' is not a whole number between 1 and 4096");
	expect_errors("[daemon]\n\nmax_line_bytes = 255\n",
	              N ":3: max_line_bytes: '255' is not a whole number between 256 and 67108864");
	expect_errors("[daemon]\nworkers = 99999999999999999999999\n",
	              N ":2: workers: '99999999999999999999999' is not a whole number between 1 "
	                "and 64");
	expect_errors("[daemon]\ncommand_timeout_ms = 9\n",
	              N ":2: command_timeout_ms: '9' is not a whole number between 10 and "
	                "86400000");
	expect_errors("[daemon]\nworkers =\n",
	              N ":2: workers: '' is not a whole number between 1 and 64");
}

static void test_bad_values(void **state)
{
	(void)state;
	expect_errors("[daemon]\nlog_level = loud\n",
	              N ":2: log_level: 'loud' is not one of err, warning, notice, info, debug");
	expect_errors("[daemon]\nlog_level = emerg\n",
	              N ":2: log_level: 'emerg' is not one of err, warning, notice, info, debug");
	expect_errors("[daemon]\nstate_dir =\n", N ":2: state_dir: empty value");
	expect_errors("[daemon]\nreopen_min_ms = 5000\nreopen_max_ms = 1000\n",
	              N ": reopen_min_ms (5000) is above reopen_max_ms (1000)");
}

static void test_sections(void **state)
{
	(void)state;
	expect_errors("[daemons]\nworkers = 1\n",
	              N ":1: unknown section [daemons] (expected [daemon], [store], [route], [device NAME] or [endpoint NAME])");
	/* reported at its header, also when it has no keys */
	expect_errors("[daemon]\n[nope]\n",
	              N ":2: unknown section [nope] (expected [daemon], [store], [route], [device NAME] or [endpoint NAME])");
	expect_errors("workers = 1\n[daemon]\n", N ":1: key 'workers' outside any section");
	/* a device section without a name is an unknown section */
	expect_errors("[device]\nclass = printer\n",
	              N ":1: unknown section [device] (expected [daemon], [store], [route], [device NAME] or [endpoint NAME])");
}

static void test_device_errors(void **state)
{
	(void)state;
	expect_errors("[device a]\nplugin = sim\n", N ":1: device a: no valid 'class'");
	expect_errors("\n[device a]\nclass = printer\n", N ":2: device a: no 'plugin'");
	expect_errors("[device a]\nwidth = 3\n", N ":1: device a: no valid 'class'",
	              N ":1: device a: no 'plugin'");
	/* an empty device section is a device without class and plugin */
	expect_errors("[device a]\n", N ":1: device a: no valid 'class'",
	              N ":1: device a: no 'plugin'");
	expect_errors("[device a]\nclass = fridge\nplugin = sim\n",
	              N ":2: device a: unknown class 'fridge' (cardreader, printer, scanner, "
	                "idreader, camera, audio, barcode, locker, sensor, actuator)",
	              N ":1: device a: no valid 'class'");
	expect_errors("[device a]\nclass = printer\nplugin =\n", N ":3: device a: empty plugin");
	expect_errors("[device a]\nclass = printer\nplugin = sim\ntimeout_ms = 5\n",
	              N ":4: device a: timeout_ms: '5' is not between 10 and 86400000");
	expect_errors("[device a]\nclass = printer\nplugin = sim\nenabled = maybe\n",
	              N ":4: device a: enabled: 'maybe' is not yes or no");
}

static void test_device_names(void **state)
{
	(void)state;
	/* a badly named section is refused once, at its header; none of its
	 * keys is kept */
	expect_errors("[device Printer]\nclass = printer\nplugin = sim\n",
	              N ":1: device name 'Printer': use 1-32 of a-z 0-9 _ -");
	expect_errors("[device a.b]\nclass = printer\n",
	              N ":1: device name 'a.b': use 1-32 of a-z 0-9 _ -");
	expect_errors("[device 012345678901234567890123456789012]\nclass = printer\n",
	              N ":1: device name '012345678901234567890123456789012': use 1-32 of a-z "
	                "0-9 _ -");
	struct conf *c = load_ok("[device 01234567890123456789012345678901]\n"
	                         "class = printer\nplugin = sim\n");
	assert_string_equal(c->devices->name, "01234567890123456789012345678901");
	conf_free(c);
}

static void test_every_problem_reported(void **state)
{
	(void)state;
	expect_errors("[daemon]\n"
	              "workers = 0\n"
	              "bogus = 1\n"
	              "[device a]\n"
	              "class = printer\n"
	              "[nope]\n"
	              "x = 1\n",
	              N ":2: workers: '0' is not a whole number between 1 and 64",
	              N ":3: unknown key 'bogus' in [daemon]",
	              N ":6: unknown section [nope] (expected [daemon], [store], [route], [device NAME] or [endpoint NAME])",
	              N ":4: device a: no 'plugin'");
}

static void test_syntax_error(void **state)
{
	(void)state;
	expect_errors("[daemon]\nworkers = 2\nthis is not ini\nworkers = 3\n",
	              N ":3: syntax error (expected [section] or key = value)");
	/* an unclosed section header opens no section */
	expect_errors("[daemon\nworkers = 2\n", N ":2: key 'workers' outside any section",
	              N ":1: syntax error (expected [section] or key = value)");
	/* only the first syntax error has a line (inih reports one) */
	expect_errors("[daemon]\n\n\n\nno equals\nnor here\n",
	              N ":5: syntax error (expected [section] or key = value)");
}

static void test_last_line_without_newline(void **state)
{
	(void)state;
	struct conf *c = load_ok("[daemon]\nworkers = 7");
	assert_int_equal(c->workers, 7);
	conf_free(c);
	/* the line number of a last line with no newline is its own */
	expect_errors("[daemon]\nworkers = 2\nfoo = 1", N ":3: unknown key 'foo' in [daemon]");
	expect_errors("foo = 1", N ":1: key 'foo' outside any section");
}

static void test_long_line(void **state)
{
	(void)state;
	char text[1200], want[300];
	struct conf *c;
	int n = snprintf(text, sizeof(text), "[daemon]\nruntime_dir = /");
	memset(text + n, 'a', 600);
	n += 600;
	n += snprintf(text + n, sizeof(text) - (size_t)n, "\nworkers = 0\n");
	/* reported once, on its own line; its tail is not read as more lines,
	 * so the line after it is still line 3 */
	expect_errors(text, N ":2: line too long (over 197 bytes)",
	              N ":3: workers: '0' is not a whole number between 1 and 64");

	/* a long line's tail that looks like a key is not read as one, and a
	 * syntax error after it has its true line number */
	n = snprintf(text, sizeof(text), "[daemon]\n# ");
	memset(text + n, 'c', 300);
	n += 300;
	n += snprintf(text + n, sizeof(text) - (size_t)n, " bogus = 1\nplugin_path = /x\noops\n");
	expect_errors(text, N ":2: line too long (over 197 bytes)",
	              N ":4: syntax error (expected [section] or key = value)");

	/* the same from a file */
	char path[] = "/tmp/kioskd-conf-long-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct diag d = {0};
	assert_null(conf_load(path, &d));
	if (d.n != 2)
		dump(&d);
	assert_int_equal(d.n, 2);
	snprintf(want, sizeof(want), "%s:2: line too long (over 197 bytes)", path);
	assert_string_equal(d.msgs[0], want);
	snprintf(want, sizeof(want), "%s:4: syntax error (expected [section] or key = value)",
	         path);
	assert_string_equal(d.msgs[1], want);
	diag_free(&d);
	unlink(path);

	/* the longest line that fits (198 bytes and its newline) is accepted */
	n = snprintf(text, sizeof(text), "[daemon]\nruntime_dir = /");
	memset(text + n, 'b', 198 - 15);
	n += 198 - 15;
	snprintf(text + n, sizeof(text) - (size_t)n, "\nworkers = 4\n");
	c = load_ok(text);
	assert_int_equal(strlen(c->runtime_dir), 198 - 14);
	assert_int_equal(c->workers, 4);
	conf_free(c);
}

/* ---- files and drop-ins ---- */

static char tmpdir[PATH_MAX];

static void write_file(const char *rel, const char *text)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void make_dir(const char *rel)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	assert_int_equal(mkdir(path, 0755), 0);
}

static int tree_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/kioskd-conf-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int tree_teardown(void **state)
{
	char cmd[PATH_MAX + 16];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_dropins(void **state)
{
	(void)state;
	char path[PATH_MAX + 64], want[PATH_MAX + 200];
	struct diag d = {0};
	struct conf *c;

	write_file("kioskd.conf", "[daemon]\nworkers = 1\nmax_clients = 5\n"
	                          "[device p]\nclass = printer\nplugin = sim\nwidth = 32\n");
	make_dir("conf.d");
	make_dir("kioskd.conf.d");
	/* merged across both directories by file name: 10, 20, 30 */
	write_file("conf.d/10-a.conf", "[daemon]\nworkers = 10\nmax_clients = 10\n");
	write_file("kioskd.conf.d/20-b.conf", "[daemon]\nworkers = 20\n"
	                                      "[device p]\nwidth = 48\n");
	write_file("conf.d/30-c.conf", "[daemon]\nworkers = 30\n");
	/* not drop-ins */
	write_file("conf.d/40-d.conf.bak", "[daemon]\nworkers = 40\n");
	write_file("conf.d/.50-e.conf", "[daemon]\nworkers = 50\n");
	write_file("conf.d/README", "not ini at all\n");

	snprintf(path, sizeof(path), "%s/kioskd.conf", tmpdir);
	c = conf_load(path, &d);
	if (!c)
		dump(&d);
	assert_non_null(c);
	assert_int_equal(d.n, 0);
	assert_string_equal(c->path, path);
	assert_int_equal(c->workers, 30);
	assert_int_equal(c->max_clients, 10);
	assert_string_equal(conf_device_opt(c->devices, "width"), "48");
	conf_free(c);

	/* a drop-in's problem is reported with its own path and line, next to
	 * the main file's */
	write_file("kioskd.conf", "[daemon]\nworkers = 1\nbad_main = 1\n"
	                          "[device p]\nclass = printer\nplugin = sim\n");
	write_file("kioskd.conf.d/25-bad.conf", "[daemon]\n# comment\nbad_dropin = 2\n");
	c = conf_load(path, &d);
	if (d.n != 2)
		dump(&d);
	assert_null(c);
	assert_int_equal(d.n, 2);
	snprintf(want, sizeof(want), "%s/kioskd.conf:3: unknown key 'bad_main' in [daemon]",
	         tmpdir);
	assert_string_equal(d.msgs[0], want);
	snprintf(want, sizeof(want),
	         "%s/kioskd.conf.d/25-bad.conf:3: unknown key 'bad_dropin' in [daemon]", tmpdir);
	assert_string_equal(d.msgs[1], want);
	diag_free(&d);

	/* a device finished by a drop-in: the class in the main file, the plugin
	 * in a drop-in */
	write_file("kioskd.conf", "[device q]\nclass = scanner\n"
	                          "[device p]\nclass = printer\nplugin = sim\n");
	snprintf(path, sizeof(path), "%s/kioskd.conf.d/25-bad.conf", tmpdir);
	unlink(path);
	write_file("conf.d/26-q.conf", "[device q]\nplugin = sim\n");
	snprintf(path, sizeof(path), "%s/kioskd.conf", tmpdir);
	c = conf_load(path, &d);
	if (!c)
		dump(&d);
	assert_non_null(c);
	assert_int_equal(c->devices->cls, KIOSK_CLASS_SCANNER);
	assert_string_equal(c->devices->plugin, "sim");
	assert_string_equal(conf_device_opt(dev(c, "p"), "width"), "48");
	snprintf(want, sizeof(want), "%s/conf.d/26-q.conf", tmpdir);
	assert_string_equal(c->devices->plugin_at->file, want);
	assert_int_equal(c->devices->plugin_at->line, 2);
	conf_free(c);
	diag_free(&d);
}

static void test_missing_file(void **state)
{
	(void)state;
	char path[PATH_MAX + 64], want[PATH_MAX + 200];
	struct diag d = {0};

	snprintf(path, sizeof(path), "%s/nothere/kioskd.conf", tmpdir);
	assert_null(conf_load(path, &d));
	assert_int_equal(d.n, 1);
	snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
	assert_string_equal(d.msgs[0], want);
	diag_free(&d);
}

/* ---- conf_device_equal ---- */

static void test_device_equal(void **state)
{
	(void)state;
	struct conf *c = load_ok("[device a]\nclass = printer\nplugin = sim\nwidth = 32\nx = 1\n"
	                         "[device same]\nplugin = sim\nx = 1\nclass = printer\nwidth = 32\n"
	                         "[device val]\nclass = printer\nplugin = sim\nwidth = 48\nx = 1\n"
	                         "[device fewer]\nclass = printer\nplugin = sim\nwidth = 32\n"
	                         "[device more]\nclass = printer\nplugin = sim\nwidth = 32\nx = 1\n"
	                         "y = 2\n"
	                         "[device cls]\nclass = scanner\nplugin = sim\nwidth = 32\nx = 1\n"
	                         "[device plug]\nclass = printer\nplugin = esc\nwidth = 32\nx = 1\n"
	                         "[device off]\nclass = printer\nplugin = sim\nwidth = 32\nx = 1\n"
	                         "enabled = no\n"
	                         "[device tmo]\nclass = printer\nplugin = sim\nwidth = 32\nx = 1\n"
	                         "timeout_ms = 100\n");
	const struct conf_device *a = dev(c, "a");

	assert_true(conf_device_equal(a, a));
	/* the order of the keys does not matter */
	assert_true(conf_device_equal(a, dev(c, "same")));
	assert_true(conf_device_equal(dev(c, "same"), a));
	static const char *const differ[] = {"val", "fewer", "more", "cls", "plug", "off", "tmo"};
	for (size_t i = 0; i < sizeof(differ) / sizeof(differ[0]); i++) {
		assert_false(conf_device_equal(a, dev(c, differ[i])));
		assert_false(conf_device_equal(dev(c, differ[i]), a));
	}

	/* a copy outlives its configuration and still compares equal */
	struct conf_device *copy = conf_device_dup(a);
	assert_non_null(copy);
	assert_null(copy->next);
	conf_free(c);
	c = load_ok("[device a]\nclass = printer\nplugin = sim\nx = 1\nwidth = 32\n");
	assert_true(conf_device_equal(copy, c->devices));
	assert_string_equal(copy->name, "a");
	assert_string_equal(conf_device_opt(copy, "width"), "32");
	conf_device_free(copy);
	conf_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_every_daemon_key),
	        cmocka_unit_test(test_devices),
	        cmocka_unit_test(test_later_wins),
	        cmocka_unit_test(test_shipped_config),
	        cmocka_unit_test(test_unknown_key),
	        cmocka_unit_test(test_bad_numbers),
	        cmocka_unit_test(test_bad_values),
	        cmocka_unit_test(test_sections),
	        cmocka_unit_test(test_device_errors),
	        cmocka_unit_test(test_device_names),
	        cmocka_unit_test(test_every_problem_reported),
	        cmocka_unit_test(test_syntax_error),
	        cmocka_unit_test(test_last_line_without_newline),
	        cmocka_unit_test(test_long_line),
	        cmocka_unit_test_setup_teardown(test_dropins, tree_setup, tree_teardown),
	        cmocka_unit_test_setup_teardown(test_missing_file, tree_setup, tree_teardown),
	        cmocka_unit_test(test_device_equal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
