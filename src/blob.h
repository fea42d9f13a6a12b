/* Content-addressed blob spool (<state_dir>/blobs/<sha256>): scans,
 * photos and recordings that plugins produce and transactions reference. */
#ifndef KIOSKD_BLOB_H
#define KIOSKD_BLOB_H

#include <stddef.h>

#define BLOB_ID_SIZE 65

int blob_init(const char *state_dir);
/* The store's key (CRYPT_KEY_SIZE bytes, copied), or NULL: while a key is
 * set, every blob put is encrypted at rest (AES-256-GCM); the id stays the
 * sha256 of the plain bytes and blob_get returns them. */
void blob_set_key(const unsigned char *key);
/* Store bytes; writes the hex sha256 to id.  0, or -1 with errno. */
int blob_put(const void *data, size_t len, char id[BLOB_ID_SIZE]);
/* malloc()ed copy of a blob.  0, or -1 with errno (ENOENT: no such blob). */
int blob_get(const char *id, void **data, size_t *len);
/* Size of the plain content.  0, or -1 with errno. */
int blob_size(const char *id, size_t *len);
/* Delete a blob (purge of personal data).  0, or -1 with errno. */
int blob_remove(const char *id);
/* Nonzero for a well-formed id that exists in the spool. */
int blob_exists(const char *id);

#endif
