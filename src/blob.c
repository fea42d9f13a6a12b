#include "blob.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypt.h"

/* An encrypted blob file: magic | nonce | ciphertext | tag, sealed with
 * the blob's id as additional data.  Files without the magic are plain
 * (written while no key was configured) and still read. */
#define BLOB_MAGIC     "KBE1"
#define BLOB_MAGIC_LEN 4
#define BLOB_OVERHEAD  (BLOB_MAGIC_LEN + CRYPT_OVERHEAD)

static char blob_dir[PATH_MAX - 128];
static unsigned char blob_key[CRYPT_KEY_SIZE];
static int blob_have_key;

void blob_set_key(const unsigned char *key)
{
	if (key)
		memcpy(blob_key, key, CRYPT_KEY_SIZE);
	else
		crypt_wipe(blob_key, sizeof(blob_key));
	blob_have_key = key != NULL;
}

int blob_init(const char *state_dir)
{
	snprintf(blob_dir, sizeof(blob_dir), "%s/blobs", state_dir);
	if (mkdir(blob_dir, 0700) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int valid_id(const char *id)
{
	size_t i;
	for (i = 0; id[i]; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	return i == BLOB_ID_SIZE - 1;
}

static void blob_path(char *out, size_t n, const char *id)
{
	snprintf(out, n, "%s/%s", blob_dir, id);
}

static int sha256_hex(const void *data, size_t len, char id[BLOB_ID_SIZE])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL))
		return -1;
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(id + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int blob_put(const void *data, size_t len, char id[BLOB_ID_SIZE])
{
	char path[PATH_MAX], tmp[PATH_MAX + 16];
	unsigned char *sealed = NULL;
	struct stat st;
	int have_key = blob_have_key;

	if (sha256_hex(data, len, id) < 0 || len > SIZE_MAX - BLOB_OVERHEAD) {
		errno = EIO;
		return -1;
	}
	blob_path(path, sizeof(path), id);
	/* same content already stored (and encrypted if it should be) */
	if (stat(path, &st) == 0 && (size_t)st.st_size == len + (have_key ? BLOB_OVERHEAD : 0))
		return 0;
	if (have_key) {
		if (!(sealed = malloc(len + BLOB_OVERHEAD)))
			return -1;
		memcpy(sealed, BLOB_MAGIC, BLOB_MAGIC_LEN);
		if (crypt_seal(blob_key, id, BLOB_ID_SIZE - 1, data, len, sealed + BLOB_MAGIC_LEN) <
		    0) {
			free(sealed);
			errno = EIO;
			return -1;
		}
		data = sealed;
		len += BLOB_OVERHEAD;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		free(sealed);
		return -1;
	}
	/* fsync before rename: a transaction may reference the blob as soon as
	 * this returns, so it must survive a power cut */
	if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		free(sealed);
		errno = e;
		return -1;
	}
	free(sealed);
	close(fd);
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	return 0;
}

/* Open the blob's file for reading: the descriptor, or -1 with errno
 * (EINVAL for a malformed id). */
static int blob_open(const char *id, struct stat *st)
{
	char path[PATH_MAX];
	int fd;

	if (!valid_id(id)) {
		errno = EINVAL;
		return -1;
	}
	blob_path(path, sizeof(path), id);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(fd, st) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int blob_get(const char *id, void **data, size_t *len)
{
	struct stat st;
	int fd = blob_open(id, &st);

	if (fd < 0)
		return -1;
	unsigned char *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			free(buf);
			buf = NULL;
			errno = r == 0 ? EIO : errno;
		} else {
			got += (size_t)r;
		}
	}
	close(fd);
	if (!buf)
		return -1;
	if (got >= BLOB_OVERHEAD && !memcmp(buf, BLOB_MAGIC, BLOB_MAGIC_LEN)) {
		char sum[BLOB_ID_SIZE];
		size_t plen = got - BLOB_OVERHEAD;
		unsigned char *plain = malloc(plen ? plen : 1);
		if (plain && blob_have_key &&
		    crypt_open(blob_key, id, BLOB_ID_SIZE - 1, buf + BLOB_MAGIC_LEN,
		               got - BLOB_MAGIC_LEN, plain) == 0) {
			free(buf);
			*data = plain;
			*len = plen;
			return 0;
		}
		free(plain);
		/* a plain blob that happens to begin with the magic? */
		if (sha256_hex(buf, got, sum) < 0 || strcmp(sum, id) != 0) {
			free(buf);
			errno = blob_have_key ? EBADMSG : ENOKEY;
			return -1;
		}
	}
	*data = buf;
	*len = got;
	return 0;
}

int blob_size(const char *id, size_t *len)
{
	char magic[BLOB_MAGIC_LEN];
	struct stat st;
	int fd = blob_open(id, &st);

	if (fd < 0)
		return -1;
	*len = (size_t)st.st_size;
	if (*len >= BLOB_OVERHEAD && read(fd, magic, sizeof(magic)) == (ssize_t)sizeof(magic) &&
	    !memcmp(magic, BLOB_MAGIC, BLOB_MAGIC_LEN))
		*len -= BLOB_OVERHEAD;
	close(fd);
	return 0;
}

int blob_remove(const char *id)
{
	char path[PATH_MAX];

	if (!valid_id(id)) {
		errno = EINVAL;
		return -1;
	}
	blob_path(path, sizeof(path), id);
	return unlink(path);
}

int blob_exists(const char *id)
{
	char path[PATH_MAX];
	if (!valid_id(id))
		return 0;
	blob_path(path, sizeof(path), id);
	return access(path, F_OK) == 0;
}
