/* Content-addressed blob spool (<state_dir>/blobs/<sha256>): scans,
 * photos and recordings that plugins produce and transactions reference. */
#ifndef KIOSKD_BLOB_H
#define KIOSKD_BLOB_H

#include <stddef.h>

#define BLOB_ID_SIZE 65

int blob_init(const char *state_dir);
/* Store bytes; writes the hex sha256 to id.  0, or -1 with errno. */
int blob_put(const void *data, size_t len, char id[BLOB_ID_SIZE]);
/* malloc()ed copy of a blob.  0, or -1 with errno (ENOENT: no such blob). */
int blob_get(const char *id, void **data, size_t *len);
/* Nonzero for a well-formed id that exists in the spool. */
int blob_exists(const char *id);

#endif
