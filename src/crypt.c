#include "crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiosk/hex.h"
#include "log.h"

void crypt_wipe(void *p, size_t len)
{
	if (p)
		OPENSSL_cleanse(p, len);
}

/* 32 raw bytes, or 64 hex digits and an optional newline. */
static int parse_key(const unsigned char *buf, size_t n, unsigned char key[CRYPT_KEY_SIZE])
{
	if (n == CRYPT_KEY_SIZE) {
		memcpy(key, buf, CRYPT_KEY_SIZE);
		return 0;
	}
	if (n == 2 * CRYPT_KEY_SIZE + 2 && buf[n - 2] == '\r' && buf[n - 1] == '\n')
		n -= 2;
	else if (n == 2 * CRYPT_KEY_SIZE + 1 && buf[n - 1] == '\n')
		n--;
	if (n != 2 * CRYPT_KEY_SIZE)
		return -1;
	for (size_t i = 0; i < CRYPT_KEY_SIZE; i++) {
		int hi = kiosk_hex_digit(buf[2 * i]), lo = kiosk_hex_digit(buf[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		key[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

int crypt_load_key(const char *file, unsigned char key[CRYPT_KEY_SIZE], char *from, size_t fromlen,
                   char *why, size_t whylen)
{
	char path[PATH_MAX];
	unsigned char buf[2 * CRYPT_KEY_SIZE + 3];
	struct stat st;
	const char *creds = getenv("CREDENTIALS_DIRECTORY");
	size_t n = 0;

	if (file && *file) {
		snprintf(path, sizeof(path), "%s", file);
	} else if (creds && *creds) {
		snprintf(path, sizeof(path), "%s/kioskd-store.key", creds);
		if (access(path, F_OK) < 0 && errno == ENOENT)
			return 0;
	} else {
		return 0;
	}
	snprintf(from, fromlen, "%s", path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "cannot open the store key %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "store key %s is not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_mode & 077)
		log_warnx("store key %s is accessible by group or others (mode %04o); make it 0600 "
		          "or 0400",
		          path, (unsigned)(st.st_mode & 07777));
	while (n < sizeof(buf)) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(why, whylen, "cannot read the store key %s: %s", path,
			         strerror(errno));
			close(fd);
			crypt_wipe(buf, sizeof(buf));
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	int rc = parse_key(buf, n, key);
	crypt_wipe(buf, sizeof(buf));
	if (rc < 0) {
		snprintf(why, whylen,
		         "store key %s: expected 32 raw bytes or 64 hex digits (and an optional "
		         "newline), found %s%zu bytes",
		         path, n == sizeof(buf) ? "at least " : "", n);
		return -1;
	}
	return 1;
}

int crypt_seal(const unsigned char key[CRYPT_KEY_SIZE], const void *aad, size_t aadlen,
               const void *pt, size_t len, unsigned char *out)
{
	EVP_CIPHER_CTX *ctx;
	int n, ok = 0;

	if (len > INT_MAX - 64 || aadlen > INT_MAX)
		return -1;
	if (RAND_bytes(out, CRYPT_NONCE_SIZE) != 1)
		return -1;
	if (!(ctx = EVP_CIPHER_CTX_new()))
		return -1;
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, out) == 1 &&
	    (aadlen == 0 || EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aadlen) == 1) &&
	    EVP_EncryptUpdate(ctx, out + CRYPT_NONCE_SIZE, &n, pt, (int)len) == 1 &&
	    EVP_EncryptFinal_ex(ctx, out + CRYPT_NONCE_SIZE + n, &n) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPT_TAG_SIZE,
	                        out + CRYPT_NONCE_SIZE + len) == 1)
		ok = 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok ? 0 : -1;
}

int crypt_open(const unsigned char key[CRYPT_KEY_SIZE], const void *aad, size_t aadlen,
               const unsigned char *in, size_t inlen, unsigned char *out)
{
	EVP_CIPHER_CTX *ctx;
	unsigned char tag[CRYPT_TAG_SIZE];
	int n, ok = 0;

	if (inlen < CRYPT_OVERHEAD || inlen > INT_MAX || aadlen > INT_MAX)
		return -1;
	size_t len = inlen - CRYPT_OVERHEAD;
	memcpy(tag, in + CRYPT_NONCE_SIZE + len, CRYPT_TAG_SIZE);
	if (!(ctx = EVP_CIPHER_CTX_new()))
		return -1;
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, in) == 1 &&
	    (aadlen == 0 || EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aadlen) == 1) &&
	    EVP_DecryptUpdate(ctx, out, &n, in + CRYPT_NONCE_SIZE, (int)len) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG_SIZE, tag) == 1 &&
	    EVP_DecryptFinal_ex(ctx, out + n, &n) == 1)
		ok = 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		crypt_wipe(out, len);
	return ok ? 0 : -1;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *crypt_b64(const void *data, size_t len, size_t *outlen)
{
	const unsigned char *p = data;

	if (len > SIZE_MAX / 2)
		return NULL;
	size_t n = (len + 2) / 3 * 4;
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = b64chars[v >> 18];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = b64chars[(v >> 6) & 63];
		*o++ = b64chars[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
		*o++ = b64chars[v >> 18];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = 0;
	if (outlen)
		*outlen = n;
	return out;
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

unsigned char *crypt_unb64(const char *s, size_t slen, size_t *outlen)
{
	size_t pad = 0;

	if (slen % 4)
		return NULL;
	if (slen && s[slen - 1] == '=')
		pad = slen >= 2 && s[slen - 2] == '=' ? 2 : 1;
	unsigned char *out = malloc(slen / 4 * 3 + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < slen; i += 4) {
		int last = i + 4 == slen;
		int v[4];
		for (int k = 0; k < 4; k++) {
			if (last && k >= 4 - (int)pad) {
				v[k] = 0;
				continue;
			}
			if ((v[k] = b64val((unsigned char)s[i + k])) < 0) {
				free(out);
				return NULL;
			}
		}
		uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		             (uint32_t)v[3];
		*o++ = (unsigned char)(x >> 16);
		if (!last || pad < 2)
			*o++ = (unsigned char)(x >> 8);
		if (!last || pad < 1)
			*o++ = (unsigned char)x;
	}
	*outlen = (size_t)(o - out);
	return out;
}
