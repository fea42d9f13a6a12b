/* crypt.c (AES-256-GCM, keys, base64) and blob.c's encryption at rest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "crypt.h"
#include "log.h"

static char dir[PATH_MAX];
static unsigned char key[CRYPT_KEY_SIZE];

static int setup(void **state)
{
	(void)state;
	log_init("test", LOG_CRIT);
	unsetenv("CREDENTIALS_DIRECTORY");
	snprintf(dir, sizeof(dir), "%s/kioskd-crypt-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	for (int i = 0; i < CRYPT_KEY_SIZE; i++)
		key[i] = (unsigned char)(i + 1);
	return blob_init(dir);
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];
	(void)state;
	blob_set_key(NULL);
	unsetenv("CREDENTIALS_DIRECTORY");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void put_file(const char *name, const void *data, size_t len, mode_t mode, char *path,
                     size_t pathlen)
{
	snprintf(path, pathlen, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	fchmod(fd, mode);
	close(fd);
}

static int file_has(const char *path, const void *needle, size_t n)
{
	char buf[65536];
	int fd = open(path, O_RDONLY);
	ssize_t len = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
	if (fd >= 0)
		close(fd);
	return len > 0 && memmem(buf, (size_t)len, needle, n) != NULL;
}

/* stderr of f() in a file; nonzero when it contains needle */
static int logs(int (*f)(void), const char *needle)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/stderr", dir);
	fflush(stderr);
	int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	log_setlevel(LOG_WARNING);
	f();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	log_setlevel(LOG_CRIT);
	return file_has(path, needle, strlen(needle));
}

static void test_seal_open(void **state)
{
	(void)state;
	const char *msg = "card 1234567890";
	size_t n = strlen(msg);
	unsigned char a[64], b[64], out[64];

	assert_int_equal(crypt_seal(key, "id1", 3, msg, n, a), 0);
	assert_int_equal(crypt_seal(key, "id1", 3, msg, n, b), 0);
	/* a fresh nonce each time */
	assert_memory_not_equal(a, b, n + CRYPT_OVERHEAD);
	assert_null(memmem(a, n + CRYPT_OVERHEAD, "1234567890", 10));
	assert_int_equal(crypt_open(key, "id1", 3, a, n + CRYPT_OVERHEAD, out), 0);
	assert_memory_equal(out, msg, n);
	/* other additional data (another row), another key, a flipped bit, too
	 * short: none opens */
	assert_int_equal(crypt_open(key, "id2", 3, a, n + CRYPT_OVERHEAD, out), -1);
	unsigned char k2[CRYPT_KEY_SIZE];
	memcpy(k2, key, sizeof(k2));
	k2[5] ^= 1;
	assert_int_equal(crypt_open(k2, "id1", 3, a, n + CRYPT_OVERHEAD, out), -1);
	for (size_t i = 0; i < n + CRYPT_OVERHEAD; i += 5) {
		a[i] ^= 0x40;
		assert_int_equal(crypt_open(key, "id1", 3, a, n + CRYPT_OVERHEAD, out), -1);
		a[i] ^= 0x40;
	}
	assert_int_equal(crypt_open(key, "id1", 3, a, CRYPT_OVERHEAD - 1, out), -1);
	/* empty plaintext */
	assert_int_equal(crypt_seal(key, NULL, 0, "", 0, a), 0);
	assert_int_equal(crypt_open(key, NULL, 0, a, CRYPT_OVERHEAD, out), 0);

	/* a known answer: NIST GCM test case 16 shape with our layout
	 * (AES-256, 96-bit IV) checked against OpenSSL directly */
	unsigned char ct[64];
	assert_int_equal(crypt_seal(key, "aad", 3, msg, n, ct), 0);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int len;
	unsigned char plain[64];
	EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, ct);
	EVP_DecryptUpdate(c, NULL, &len, (const unsigned char *)"aad", 3);
	EVP_DecryptUpdate(c, plain, &len, ct + CRYPT_NONCE_SIZE, (int)n);
	EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG_SIZE, ct + CRYPT_NONCE_SIZE + n);
	assert_int_equal(EVP_DecryptFinal_ex(c, plain + len, &len), 1);
	EVP_CIPHER_CTX_free(c);
	assert_memory_equal(plain, msg, n);
}

static void test_base64(void **state)
{
	(void)state;
	unsigned char data[300], ref[512];
	size_t len;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 97 + 3);
	for (size_t n = 0; n < sizeof(data); n++) {
		char *b = crypt_b64(data, n, &len);
		int rl = EVP_EncodeBlock(ref, data, (int)n);
		assert_int_equal(len, (size_t)rl);
		assert_string_equal(b, (char *)ref);
		unsigned char *back = crypt_unb64(b, len, &len);
		assert_non_null(back);
		assert_int_equal(len, n);
		assert_memory_equal(back, data, n);
		free(back);
		free(b);
	}
	static const char *const bad[] = {"A", "AB=", "A===", "AB!D", "AB D", "ABC\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(crypt_unb64(bad[i], strlen(bad[i]), &len));
}

static void test_load_key(void **state)
{
	(void)state;
	unsigned char k[CRYPT_KEY_SIZE];
	char path[PATH_MAX + 32], from[PATH_MAX], why[PATH_MAX + 200];
	char hex[80];
	char text[96];

	/* nothing configured */
	assert_int_equal(crypt_load_key(NULL, k, from, sizeof(from), why, sizeof(why)), 0);
	/* 32 raw bytes */
	put_file("raw.key", key, sizeof(key), 0600, path, sizeof(path));
	memset(k, 0, sizeof(k));
	assert_int_equal(crypt_load_key(path, k, from, sizeof(from), why, sizeof(why)), 1);
	assert_memory_equal(k, key, sizeof(key));
	assert_string_equal(from, path);
	/* 64 hex digits, with or without a newline */
	for (int i = 0; i < CRYPT_KEY_SIZE; i++)
		snprintf(hex + 2 * i, 3, i % 2 ? "%02X" : "%02x", key[i]);
	for (int nl = 0; nl < 3; nl++) {

		snprintf(text, sizeof(text), "%s%s", hex, nl == 0 ? "" : nl == 1 ? "\n" : "\r\n");
		put_file("hex.key", text, strlen(text), 0400, path, sizeof(path));
		memset(k, 0, sizeof(k));
		assert_int_equal(crypt_load_key(path, k, from, sizeof(from), why, sizeof(why)), 1);
		assert_memory_equal(k, key, sizeof(key));
	}
	/* wrong sizes and contents: a clear error */
	static const char *const bad[] = {"short", ""};
	for (size_t i = 0; i < 2; i++) {
		put_file("bad.key", bad[i], strlen(bad[i]), 0600, path, sizeof(path));
		assert_int_equal(crypt_load_key(path, k, from, sizeof(from), why, sizeof(why)), -1);
		assert_non_null(strstr(why, "expected 32 raw bytes or 64 hex digits"));
	}
	memset(text, 'z', 64);
	put_file("bad.key", text, 64, 0600, path, sizeof(path));
	assert_int_equal(crypt_load_key(path, k, from, sizeof(from), why, sizeof(why)), -1);
	memset(text, 'a', 70);
	put_file("bad.key", text, 70, 0600, path, sizeof(path));
	assert_int_equal(crypt_load_key(path, k, from, sizeof(from), why, sizeof(why)), -1);
	assert_non_null(strstr(why, "found at least"));
	assert_int_equal(crypt_load_key("/nonexistent/k", k, from, sizeof(from), why, sizeof(why)),
	                 -1);
	assert_non_null(strstr(why, "cannot open the store key /nonexistent/k"));
	snprintf(path, sizeof(path), "%s", dir);
	assert_int_equal(crypt_load_key(path, k, from, sizeof(from), why, sizeof(why)), -1);
	assert_non_null(strstr(why, "not a regular file"));

	/* the systemd credential */
	char creds[PATH_MAX + 16];
	snprintf(creds, sizeof(creds), "%s/creds", dir);
	mkdir(creds, 0700);
	setenv("CREDENTIALS_DIRECTORY", creds, 1);
	assert_int_equal(crypt_load_key(NULL, k, from, sizeof(from), why, sizeof(why)), 0);
	put_file("creds/kioskd-store.key", key, sizeof(key), 0400, path, sizeof(path));
	memset(k, 0, sizeof(k));
	assert_int_equal(crypt_load_key(NULL, k, from, sizeof(from), why, sizeof(why)), 1);
	assert_memory_equal(k, key, sizeof(key));
	assert_string_equal(from, path);
	/* key_file wins over the credential */
	put_file("other.key", "0123456789abcdef0123456789abcdef", 32, 0600, path, sizeof(path));
	assert_int_equal(crypt_load_key(path, k, from, sizeof(from), why, sizeof(why)), 1);
	assert_memory_equal(k, "0123456789abcdef0123456789abcdef", 32);
	unsetenv("CREDENTIALS_DIRECTORY");
}

static char open_key_path[PATH_MAX + 32];

static int load_open_key(void)
{
	unsigned char k[CRYPT_KEY_SIZE];
	char from[PATH_MAX], why[256];
	return crypt_load_key(open_key_path, k, from, sizeof(from), why, sizeof(why));
}

static void test_key_mode_warning(void **state)
{
	(void)state;
	put_file("open.key", key, sizeof(key), 0644, open_key_path, sizeof(open_key_path));
	assert_true(logs(load_open_key, "accessible by group or others (mode 0644)"));
	assert_int_equal(load_open_key(), 1); /* used all the same */
	chmod(open_key_path, 0600);
	assert_false(logs(load_open_key, "accessible"));
	chmod(open_key_path, 0400);
	assert_false(logs(load_open_key, "accessible"));
}

static void test_blob_encrypted(void **state)
{
	(void)state;
	const char *secret = "PASSPORT-PHOTO-PIXELS-0123456789";
	char id[BLOB_ID_SIZE], plain_id[BLOB_ID_SIZE], path[PATH_MAX + 100];
	unsigned char sum[32];
	unsigned int sl;
	struct stat st;
	void *data;
	size_t len, size;

	/* written before a key existed: plain, and still readable after */
	assert_int_equal(blob_put("old plain blob", 14, plain_id), 0);
	blob_set_key(key);
	assert_int_equal(blob_put(secret, strlen(secret), id), 0);
	/* the id is the sha256 of the plain bytes */
	EVP_Digest(secret, strlen(secret), sum, &sl, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++) {
		char h[3];
		snprintf(h, sizeof(h), "%02x", sum[i]);
		assert_memory_equal(id + 2 * i, h, 2);
	}
	snprintf(path, sizeof(path), "%s/blobs/%s", dir, id);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((size_t)st.st_size, strlen(secret) + 4 + CRYPT_OVERHEAD);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_false(file_has(path, "PASSPORT", 8));
	assert_int_equal(blob_size(id, &size), 0);
	assert_int_equal(size, strlen(secret));
	assert_int_equal(blob_get(id, &data, &len), 0);
	assert_int_equal(len, strlen(secret));
	assert_memory_equal(data, secret, len);
	free(data);
	assert_int_equal(blob_get(plain_id, &data, &len), 0);
	assert_memory_equal(data, "old plain blob", 14);
	free(data);
	assert_int_equal(blob_size(plain_id, &size), 0);
	assert_int_equal(size, 14);
	/* putting the plain one again encrypts it */
	assert_int_equal(blob_put("old plain blob", 14, plain_id), 0);
	snprintf(path, sizeof(path), "%s/blobs/%s", dir, plain_id);
	assert_false(file_has(path, "old plain", 9));
	assert_int_equal(blob_get(plain_id, &data, &len), 0);
	assert_memory_equal(data, "old plain blob", 14);
	free(data);

	/* a file swapped under another id does not open */
	char other[BLOB_ID_SIZE], opath[PATH_MAX + 100], cmd[2 * PATH_MAX + 300];
	assert_int_equal(blob_put("another", 7, other), 0);
	snprintf(opath, sizeof(opath), "%s/blobs/%s", dir, other);
	snprintf(path, sizeof(path), "%s/blobs/%s", dir, id);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", path, opath);
	assert_int_equal(system(cmd), 0);
	errno = 0;
	assert_int_equal(blob_get(other, &data, &len), -1);
	assert_int_equal(errno, EBADMSG);
	/* nor without the key */
	blob_set_key(NULL);
	errno = 0;
	assert_int_equal(blob_get(id, &data, &len), -1);
	assert_int_equal(errno, ENOKEY);
	/* and the empty blob */
	blob_set_key(key);
	assert_int_equal(blob_put("", 0, id), 0);
	assert_int_equal(blob_get(id, &data, &len), 0);
	assert_int_equal(len, 0);
	free(data);
	/* removal */
	assert_int_equal(blob_remove(id), 0);
	assert_false(blob_exists(id));
	assert_int_equal(blob_remove("../x"), -1);
	assert_int_equal(errno, EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_seal_open, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_base64, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_load_key, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_key_mode_warning, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_blob_encrypted, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
