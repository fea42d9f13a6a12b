/* plugin.c: finding, loading and refusing plugins, and checking device
 * sections against a plugin's option table.  The plugins are small shared
 * objects compiled here from one source with -D variants (skipped when
 * there is no C compiler). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "plugin.h"

static char tmpdir[PATH_MAX];
static int have_cc;

static const char plugin_src[] =
        "#include \"kiosk/hal.h\"\n"
        "#ifndef MAGIC\n#define MAGIC KIOSK_HAL_MAGIC\n#endif\n"
        "#ifndef MAJOR\n#define MAJOR KIOSK_HAL_ABI_MAJOR\n#endif\n"
        "#ifndef MINOR\n#define MINOR KIOSK_HAL_ABI_MINOR\n#endif\n"
        "#ifndef SIZE\n#define SIZE sizeof(struct kiosk_plugin)\n#endif\n"
        "#ifndef CLASSES\n#define CLASSES (KIOSK_CLASS_PRINTER | KIOSK_CLASS_SCANNER)\n#endif\n"
        "#ifndef NAME\n#define NAME \"fake\"\n#endif\n"
        "#ifndef OPEN\n#define OPEN p_open\n#endif\n"
        "#ifndef STATUS\n#define STATUS p_status\n#endif\n"
        "#ifndef INIT_RC\n#define INIT_RC 0\n#endif\n"
        "static int p_init(const struct kiosk_host *h) { return h->abi_major == 1 ? INIT_RC : -1; "
        "}\n"
        "static int p_open(struct kiosk_dev *d, const struct kiosk_host *h, char *w, size_t n)\n"
        "{ (void)d; (void)h; (void)w; (void)n; return 0; }\n"
        "static void p_close(struct kiosk_dev *d) { (void)d; }\n"
        "static void p_command(struct kiosk_dev *d, struct kiosk_req *r, const char *v, json_t "
        "*a)\n"
        "{ (void)d; (void)r; (void)v; (void)a; }\n"
        "static void p_cancel(struct kiosk_dev *d, struct kiosk_req *r) { (void)d; (void)r; }\n"
        "static json_t *p_status(struct kiosk_dev *d) { (void)d; return 0; }\n"
        "static const struct kiosk_option opts[] = {\n"
        "  {\"width\", KIOSK_OPT_INT, \"32\", 16, 64, \"characters per line\"},\n"
        "  {\"speed\", KIOSK_OPT_DOUBLE, 0, 0, 0, 0},\n"
        "  {\"ratio\", KIOSK_OPT_DOUBLE, \"0.5\", 0, 1, 0},\n"
        "  {\"flag\", KIOSK_OPT_BOOL, \"no\", 0, 0, 0},\n"
        "  {\"label\", KIOSK_OPT_STRING, 0, 0, 0, 0},\n"
        "  {0}};\n"
        "KIOSK_EXPORT const struct kiosk_plugin kiosk_hal_plugin = {\n"
        "  .magic = MAGIC, .abi_major = MAJOR, .abi_minor = MINOR, .struct_size = SIZE,\n"
        "  .name = NAME, .version = \"1.0\", .classes = CLASSES, .options = opts,\n"
        "  .init = p_init, .open = OPEN, .close = p_close, .command = p_command,\n"
        "  .cancel = p_cancel, .status = STATUS};\n";

/* Build <tmpdir>/<name>.so with extra -D flags. */
static void build(const char *name, const char *defines)
{
	char cmd[PATH_MAX * 2 + 512];
	if (!have_cc)
		skip();
	snprintf(cmd, sizeof(cmd),
	         "cc -shared -fPIC -fvisibility=hidden -Ihal/include %s -o '%s/%s.so' '%s/p.c' "
	         ">/dev/null 2>&1",
	         defines, tmpdir, name, tmpdir);
	assert_int_equal(system(cmd), 0);
}

static void so_path(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s.so", tmpdir, name);
}

static int group_setup(void **state)
{
	char path[PATH_MAX + 16];
	(void)state;

	log_init("test", LOG_CRIT); /* refusals are logged; keep the output clean */
	snprintf(tmpdir, sizeof(tmpdir), "%s/kioskd-plugin-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(path, sizeof(path), "%s/p.c", tmpdir);
	FILE *fp = fopen(path, "w");
	if (!fp)
		return -1;
	fputs(plugin_src, fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/notelf.so", tmpdir);
	if (!(fp = fopen(path, "w")))
		return -1;
	fputs("not a shared object\n", fp);
	fclose(fp);
	/* the tests run from the top of the tree, where hal/include is */
	have_cc = access("hal/include/kiosk/hal.h", R_OK) == 0 &&
	          system("cc --version >/dev/null 2>&1") == 0;
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[PATH_MAX + 16];
	(void)state;
	plugin_unload_all();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

#define MINOR_TEXT_(n) #n
#define MINOR_TEXT(n)  MINOR_TEXT_(n)

static void expect_refused(const char *name, const char *search, const char *want)
{
	char why[512] = "";
	assert_null(plugin_get(name, search, why, sizeof(why)));
	assert_string_equal(why, want);
	/* remembered: the same answer again */
	why[0] = 0;
	assert_null(plugin_get(name, search, why, sizeof(why)));
	assert_string_equal(why, want);
}

static void test_not_found(void **state)
{
	(void)state;
	expect_refused("nosuchplugin", "/nonexistent-a:/nonexistent-b",
	               "plugin nosuchplugin refused: not found in /nonexistent-a:/nonexistent-b");
	expect_refused("/nonexistent/x.so", "/usr/lib",
	               "plugin /nonexistent/x.so refused: not found in /nonexistent/x.so");
	expect_refused("nosuchplugin2", "", "plugin nosuchplugin2 refused: not found in ");
}

static void test_not_a_plugin(void **state)
{
	(void)state;
	char path[PATH_MAX + 32], want[PATH_MAX + 128], why[512];

	/* a shared object without the descriptor */
	const char *libm = "/lib/x86_64-linux-gnu/libm.so.6";
	if (access(libm, R_OK) == 0) {
		snprintf(want, sizeof(want), "plugin %s refused: does not export kiosk_hal_plugin",
		         libm);
		expect_refused(libm, NULL, want);
	}
	/* not a shared object at all, found by its bare name on the path */
	so_path(path, sizeof(path), "notelf");
	snprintf(want, sizeof(want), "/nonexistent:%s", tmpdir);
	assert_null(plugin_get("notelf", want, why, sizeof(why)));
	snprintf(want, sizeof(want), "plugin notelf refused: cannot load: %s", path);
	assert_int_equal(strncmp(why, want, strlen(want)), 0);
}

static void test_load_and_options(void **state)
{
	(void)state;
	char path[PATH_MAX + 32], why[512];
	struct diag d = {0};

	build("good", "");
	snprintf(path, sizeof(path), "/nonexistent:%s", tmpdir);
	const struct plugin *p = plugin_get("good", path, why, sizeof(why));
	if (!p)
		fail_msg("refused: %s", why);
	assert_non_null(p->desc);
	assert_string_equal(p->desc->name, "fake");
	assert_string_equal(p->name, "good");
	so_path(path, sizeof(path), "good");
	assert_string_equal(p->path, path);
	/* loaded once */
	assert_ptr_equal(plugin_get("good", "/elsewhere", why, sizeof(why)), p);
	assert_string_equal(plugin_option_default(p, "width"), "32");
	assert_null(plugin_option_default(p, "speed"));
	assert_null(plugin_option_default(p, "nope"));

	struct conf *c = conf_load_string("t.conf",
	                                  "[device ok]\nclass = printer\nplugin = good\n"
	                                  "width = 16\nspeed = -1e9\nratio = 1\nflag = yes\n"
	                                  "label = anything at all\n"
	                                  "[device bad]\nclass = printer\nplugin = good\n"
	                                  "width = 65\nspeed = nan\nratio = 1.5\nflag = maybe\n"
	                                  "bogus = 1\nlabel =\n"
	                                  "[device badint]\nclass = scanner\nplugin = good\n"
	                                  "width = 20.5\nspeed = inf\n"
	                                  "[device cam]\nclass = camera\nplugin = good\n",
	                                  &d);
	assert_non_null(c);
	assert_int_equal(plugin_check_device(p, conf_device_find(c, "ok"), &d), 0);
	assert_int_equal(d.n, 0);

	/* each problem on the line of its key (options are listed newest
	 * first, so sort the messages) */
	assert_int_equal(plugin_check_device(p, conf_device_find(c, "bad"), &d), -1);
	static const char *const want_bad[] = {
	        "t.conf:12: device bad: width: 65 is out of range (16..64)",
	        "t.conf:13: device bad: speed: 'nan' is not a number",
	        "t.conf:14: device bad: ratio: 1.5 is out of range (0..1)",
	        "t.conf:15: device bad: flag: 'maybe' is not yes or no",
	        "t.conf:16: device bad: unknown option 'bogus' for plugin good",
	};
	assert_int_equal(d.n, 5);
	for (size_t i = 0; i < 5; i++) {
		int found = 0;
		for (int k = 0; k < d.n; k++)
			found |= !strcmp(d.msgs[k], want_bad[i]);
		if (!found)
			fail_msg("missing: %s", want_bad[i]);
	}
	diag_free(&d);

	assert_int_equal(plugin_check_device(p, conf_device_find(c, "badint"), &d), -1);
	assert_int_equal(d.n, 2);
	for (int k = 0; k < d.n; k++)
		assert_true(!strcmp(d.msgs[k], "t.conf:21: device badint: width: '20.5' is not a "
		                               "whole number") ||
		            !strcmp(d.msgs[k], "t.conf:22: device badint: speed: 'inf' is not a "
		                               "number"));
	diag_free(&d);

	assert_int_equal(plugin_check_device(p, conf_device_find(c, "cam"), &d), -1);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msgs[0], "t.conf:23: device cam: plugin good does not serve class "
	                               "camera");
	diag_free(&d);
	conf_free(c);
}

static void test_refusals(void **state)
{
	(void)state;
	char path[PATH_MAX + 32], want[PATH_MAX + 512];
	static const struct {
		const char *name, *defines, *why;
	} cases[] = {
	        {"magic", "-DMAGIC=0x12345678", "bad magic 0x12345678 (not a kioskd plugin)"},
	        {"major2", "-DMAJOR=2 -DMINOR=3",
	         "built for plugin ABI 2.3, this kioskd speaks 1.x"},
	        {"major0", "-DMAJOR=0",
         "built for plugin ABI 0." MINOR_TEXT(KIOSK_HAL_ABI_MINOR) ", this kioskd speaks 1.x"},
	        {"small", "-DSIZE=16", NULL}, /* message built below */
	        {"noopen", "-DOPEN=0", "entry point open() is missing"},
	        {"nostatus", "-DSTATUS=0", "entry point status() is missing"},
	        {"noname", "-DNAME=0", "descriptor has no name or version"},
	        {"noclass", "-DCLASSES=0", "serves unknown device classes (mask 0x0)"},
	        {"badclass", "-DCLASSES=0x401", "serves unknown device classes (mask 0x401)"},
	        {"initfail", "-DINIT_RC=-1", "its init() failed"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char why[256];
		build(cases[i].name, cases[i].defines);
		so_path(path, sizeof(path), cases[i].name);
		if (cases[i].why)
			snprintf(why, sizeof(why), "%s", cases[i].why);
		else
			snprintf(why, sizeof(why),
			         "descriptor is 16 bytes, ABI 1.0 needs at least %zu",
			         offsetof(struct kiosk_plugin, inject) + sizeof(void *));
		snprintf(want, sizeof(want), "plugin %s refused: %s", path, why);
		expect_refused(path, NULL, want);
	}
}

static void test_newer_minor(void **state)
{
	(void)state;
	char path[PATH_MAX + 32], why[512];

	/* a later minor appends fields: a bigger descriptor is fine */
	build("minor9", "-DMINOR=9 -DSIZE='(sizeof(struct kiosk_plugin) + 64)'");
	so_path(path, sizeof(path), "minor9");
	const struct plugin *p = plugin_get(path, NULL, why, sizeof(why));
	if (!p)
		fail_msg("refused: %s", why);
	assert_int_equal(p->desc->abi_minor, 9);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_not_found),        cmocka_unit_test(test_not_a_plugin),
	        cmocka_unit_test(test_load_and_options), cmocka_unit_test(test_refusals),
	        cmocka_unit_test(test_newer_minor),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
