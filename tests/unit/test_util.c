/* util.c: mkdir_p and utf8_sanitize. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static void sanitized(const char *in, const char *want)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", in);
	utf8_sanitize(buf);
	assert_string_equal(buf, want);
	/* and jansson takes the result as a JSON string */
	json_t *s = json_string(buf);
	assert_non_null(s);
	json_decref(s);
}

static void test_utf8_sanitize(void **state)
{
	(void)state;
	sanitized("", "");
	sanitized("plain ascii", "plain ascii");
	/* well-formed 2, 3 and 4 byte characters stay */
	sanitized("caf\xc3\xa9 \xe6\x94\xb6\xe6\x8d\xae \xf0\x9f\x98\x80",
	          "caf\xc3\xa9 \xe6\x94\xb6\xe6\x8d\xae \xf0\x9f\x98\x80");
	sanitized("\xed\x9f\xbf \xee\x80\x80 \xf4\x8f\xbf\xbf",
	          "\xed\x9f\xbf \xee\x80\x80 \xf4\x8f\xbf\xbf");
	/* a character cut by "%.64s": its lead byte goes */
	char cut[128];
	snprintf(cut, sizeof(cut), "'%.4s'", "ab\xc3\xa9");
	assert_string_equal(cut, "'ab\xc3\xa9'");
	snprintf(cut, sizeof(cut), "'%.3s'", "ab\xc3\xa9");
	sanitized(cut, "'ab?'");
	sanitized("x\xe6\x94", "x??");
	sanitized("\xe6\x94x", "??x");
	sanitized("\xf0\x9f\x98", "???");
	/* stray continuation bytes, bytes never used, overlong forms,
	 * surrogates, beyond U+10FFFF */
	sanitized("\x80\xbf", "??");
	sanitized("\xc0\xaf \xc1\xbf", "?? ??");
	sanitized("\xe0\x80\xaf", "???");
	sanitized("\xf0\x80\x80\xaf", "????");
	sanitized("\xed\xa0\x80", "???");
	sanitized("\xf4\x90\x80\x80 \xf5\x80\x80\x80 \xff", "???? ???? ?");
	/* a bad byte does not swallow the good character after it */
	sanitized("\xc3\xe6\x94\xb6", "?\xe6\x94\xb6");
}

static void test_mkdir_p(void **state)
{
	(void)state;
	char base[PATH_MAX], path[PATH_MAX + 64], cmd[PATH_MAX + 16];
	struct stat st;

	snprintf(base, sizeof(base), "%s/kioskd-util-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(base));
	snprintf(path, sizeof(path), "%s/a/b/c", base);
	assert_int_equal(mkdir_p(path, 0700), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	/* again: it exists, fine */
	assert_int_equal(mkdir_p(path, 0700), 0);
	/* a file in the way */
	snprintf(path, sizeof(path), "%s/file", base);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/file/sub", base);
	assert_int_equal(mkdir_p(path, 0700), -1);
	assert_int_equal(errno, ENOTDIR);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_utf8_sanitize),
	        cmocka_unit_test(test_mkdir_p),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
