/* blob.c: the content-addressed spool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"

#define SHA256_ABC   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA256_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static char tmpdir[PATH_MAX];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/kioskd-blob-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir))
		return -1;
	return blob_init(tmpdir);
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Names in the spool directory. */
static int spool_count(void)
{
	char dir[PATH_MAX + 16];
	struct dirent *de;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/blobs", tmpdir);
	DIR *dp = opendir(dir);
	assert_non_null(dp);
	while ((de = readdir(dp)))
		n += de->d_name[0] != '.';
	closedir(dp);
	return n;
}

static void test_init(void **state)
{
	(void)state;
	char dir[PATH_MAX + 16];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/blobs", tmpdir);
	assert_int_equal(stat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	/* again on an existing spool */
	assert_int_equal(blob_init(tmpdir), 0);
	/* a state dir that does not exist */
	snprintf(dir, sizeof(dir), "%s/no/such", tmpdir);
	assert_int_equal(blob_init(dir), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(blob_init(tmpdir), 0);
}

static void test_round_trip(void **state)
{
	(void)state;
	char id[BLOB_ID_SIZE], path[PATH_MAX + 100];
	void *data;
	size_t len;
	struct stat st;

	assert_int_equal(blob_put("abc", 3, id), 0);
	assert_string_equal(id, SHA256_ABC);
	assert_true(blob_exists(id));
	assert_int_equal(blob_get(id, &data, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(data, "abc", 3);
	free(data);

	/* stored under its id, private */
	snprintf(path, sizeof(path), "%s/blobs/%s", tmpdir, SHA256_ABC);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 3);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* binary content with NULs, larger than one read */
	size_t big = 3 * 1024 * 1024 + 17;
	unsigned char *b = malloc(big);
	for (size_t i = 0; i < big; i++)
		b[i] = (unsigned char)(i * 7 + (i >> 11));
	assert_int_equal(blob_put(b, big, id), 0);
	assert_int_equal(strlen(id), 64);
	assert_string_not_equal(id, SHA256_ABC);
	assert_int_equal(blob_get(id, &data, &len), 0);
	assert_int_equal(len, big);
	assert_memory_equal(data, b, big);
	free(data);
	free(b);

	/* the empty blob */
	assert_int_equal(blob_put("", 0, id), 0);
	assert_string_equal(id, SHA256_EMPTY);
	data = NULL;
	assert_int_equal(blob_get(id, &data, &len), 0);
	assert_int_equal(len, 0);
	assert_non_null(data);
	free(data);
	assert_int_equal(spool_count(), 3);
}

static void test_same_content(void **state)
{
	(void)state;
	char id1[BLOB_ID_SIZE], id2[BLOB_ID_SIZE];

	assert_int_equal(blob_put("abc", 3, id1), 0);
	assert_int_equal(blob_put("abc", 3, id2), 0);
	assert_string_equal(id1, id2);
	/* one file, no temporary left behind */
	assert_int_equal(spool_count(), 1);
	assert_int_equal(blob_put("abd", 3, id2), 0);
	assert_string_not_equal(id1, id2);
	assert_int_equal(spool_count(), 2);
}

static void test_missing_and_invalid(void **state)
{
	(void)state;
	void *data = (void *)1;
	size_t len = 99;

	errno = 0;
	assert_int_equal(blob_get(SHA256_ABC, &data, &len), -1);
	assert_int_equal(errno, ENOENT);
	assert_false(blob_exists(SHA256_ABC));

	static const char *const bad[] = {
	        "",
	        "xyz",
	        SHA256_ABC "0",                                                     /* 65 */
	        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",  /* 63 */
	        "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", /* upper */
	        "../../../../../../../../../../../../../../../../../../etc/passwd",
	        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a/",
	        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a ",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		assert_int_equal(blob_get(bad[i], &data, &len), -1);
		assert_int_equal(errno, EINVAL);
		assert_false(blob_exists(bad[i]));
	}
	/* untouched on failure */
	assert_ptr_equal(data, (void *)1);
	assert_int_equal(len, 99);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_init, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_same_content, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_missing_and_invalid, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
