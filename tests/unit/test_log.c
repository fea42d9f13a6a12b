/* log.c: syslog prefixes when stderr is journald's stream, timestamped
 * lines otherwise, and level filtering.  stderr goes to a temporary file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static int saved_stderr = -1;
static char path[] = "/tmp/kioskd-log-XXXXXX";

/* stderr to a fresh temporary file */
static int setup(void **state)
{
	(void)state;
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	fflush(stderr);
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	char buf[4096];
	ssize_t n;
	(void)state;
	/* whatever is left (cmocka's failure messages) goes to the real stderr */
	fflush(stderr);
	lseek(2, 0, SEEK_SET);
	while ((n = read(2, buf, sizeof(buf))) > 0)
		if (write(saved_stderr, buf, (size_t)n) < 0)
			break;
	dup2(saved_stderr, 2);
	close(saved_stderr);
	unlink(path);
	strcpy(path, "/tmp/kioskd-log-XXXXXX");
	unsetenv("JOURNAL_STREAM");
	log_init("kioskd", LOG_INFO);
	return 0;
}

/* What was written to stderr since the last call. */
static char *captured(void)
{
	static char buf[8192];
	fflush(stderr);
	off_t end = lseek(2, 0, SEEK_CUR);
	ssize_t n = pread(2, buf, sizeof(buf) - 1, 0);
	assert_true(n >= 0);
	buf[n] = 0;
	assert_int_equal(end, n);
	assert_int_equal(ftruncate(2, 0), 0);
	lseek(2, 0, SEEK_SET);
	return buf;
}

static void set_journal_stream(int match)
{
	struct stat st;
	char v[64];
	assert_int_equal(fstat(2, &st), 0);
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
	         (unsigned long long)st.st_ino + (match ? 0 : 1));
	setenv("JOURNAL_STREAM", v, 1);
}

static void test_journal_prefixes(void **state)
{
	(void)state;
	set_journal_stream(1);
	log_init("kioskd", LOG_DEBUG);
	log_err("e %d", 1);
	log_warnx("w");
	log_notice("n");
	log_info("i %s", "x");
	log_debug("d");
	assert_string_equal(captured(), "<3>e 1\n<4>w\n<5>n\n<6>i x\n<7>d\n");
}

static void assert_plain(const char *text, const char *rest_re)
{
	regex_t re;
	char pat[512];
	snprintf(pat, sizeof(pat),
	         "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z %s\n$",
	         rest_re);
	assert_int_equal(regcomp(&re, pat, REG_EXTENDED | REG_NOSUB), 0);
	if (regexec(&re, text, 0, NULL, 0) != 0)
		fail_msg("'%s' does not match %s", text, pat);
	regfree(&re);
}

static void test_plain_when_not_journal(void **state)
{
	(void)state;
	/* another stream's dev:ino (stderr was redirected after journald
	 * set it up) */
	set_journal_stream(0);
	log_init("kioskd", LOG_INFO);
	log_info("hello %d", 42);
	assert_plain(captured(), "kioskd info: hello 42");

	/* no JOURNAL_STREAM at all, another ident */
	unsetenv("JOURNAL_STREAM");
	log_init("kioskctl", LOG_INFO);
	log_err("boom");
	assert_plain(captured(), "kioskctl err: boom");

	/* garbage in JOURNAL_STREAM */
	setenv("JOURNAL_STREAM", "garbage", 1);
	log_init("kioskd", LOG_INFO);
	log_warnx("careful");
	assert_plain(captured(), "kioskd warning: careful");
}

static void test_levels(void **state)
{
	(void)state;
	set_journal_stream(1);
	log_init("kioskd", LOG_WARNING);
	assert_int_equal(log_getlevel(), LOG_WARNING);
	log_debug("no");
	log_info("no");
	log_notice("no");
	log_warnx("yes w");
	log_err("yes e");
	assert_string_equal(captured(), "<4>yes w\n<3>yes e\n");

	log_setlevel(LOG_ERR);
	assert_int_equal(log_getlevel(), LOG_ERR);
	log_warnx("no");
	log_err("yes");
	assert_string_equal(captured(), "<3>yes\n");

	log_setlevel(LOG_DEBUG);
	log_debug("now %s", "yes");
	assert_string_equal(captured(), "<7>now yes\n");
}

static void test_log_warn_errno(void **state)
{
	(void)state;
	set_journal_stream(1);
	log_init("kioskd", LOG_INFO);
	errno = ENOENT;
	log_warn("open %s", "/x");
	assert_string_equal(captured(), "<4>open /x: No such file or directory\n");
	/* logging leaves errno alone */
	errno = EACCES;
	log_info("hi");
	assert_int_equal(errno, EACCES);
	captured();
	/* a long message is cut, still one line */
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	log_info("%s", big);
	char *out = captured();
	assert_int_equal(strncmp(out, "<6>xxx", 6), 0);
	assert_int_equal(out[strlen(out) - 1], '\n');
	assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
	assert_int_equal(strlen(out), 3 + 1023 + 1);
}

static void test_level_names(void **state)
{
	(void)state;
	assert_int_equal(log_level_parse("err"), LOG_ERR);
	assert_int_equal(log_level_parse("warning"), LOG_WARNING);
	assert_int_equal(log_level_parse("notice"), LOG_NOTICE);
	assert_int_equal(log_level_parse("info"), LOG_INFO);
	assert_int_equal(log_level_parse("debug"), LOG_DEBUG);
	/* levels the daemon never runs at are not settable */
	assert_int_equal(log_level_parse("emerg"), -1);
	assert_int_equal(log_level_parse("crit"), -1);
	assert_int_equal(log_level_parse("INFO"), -1);
	assert_int_equal(log_level_parse("warn"), -1);
	assert_int_equal(log_level_parse(""), -1);
	assert_string_equal(log_level_name(LOG_ERR), "err");
	assert_string_equal(log_level_name(LOG_DEBUG), "debug");
	assert_string_equal(log_level_name(LOG_EMERG), "emerg");
	assert_string_equal(log_level_name(8), "?");
	assert_string_equal(log_level_name(-1), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_journal_prefixes, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_plain_when_not_journal, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_log_warn_errno, setup, teardown),
	        cmocka_unit_test(test_level_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
