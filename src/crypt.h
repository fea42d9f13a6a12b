/* Personal data at rest: AES-256-GCM through OpenSSL EVP.  A sealed value
 * is nonce (96 random bits) | ciphertext | tag; the additional data binds
 * it to where it belongs (a transaction id and field, a blob id), so a
 * value copied into another row or file does not open. */
#ifndef KIOSKD_CRYPT_H
#define KIOSKD_CRYPT_H

#include <stddef.h>

#define CRYPT_KEY_SIZE   32
#define CRYPT_NONCE_SIZE 12
#define CRYPT_TAG_SIZE   16
#define CRYPT_OVERHEAD   (CRYPT_NONCE_SIZE + CRYPT_TAG_SIZE)

/* The store key: from file when it is set (never from configuration
 * text), else from $CREDENTIALS_DIRECTORY/kioskd-store.key when that
 * exists.  The file holds 32 raw bytes, or 64 hex digits and an optional
 * newline.  1 (loaded; *from says where), 0 (no key configured), or -1
 * with why.  A file readable by group or others is used with a warning. */
int crypt_load_key(const char *file, unsigned char key[CRYPT_KEY_SIZE], char *from, size_t fromlen,
                   char *why, size_t whylen);

/* out holds len + CRYPT_OVERHEAD bytes.  0, or -1 (OpenSSL failed). */
int crypt_seal(const unsigned char key[CRYPT_KEY_SIZE], const void *aad, size_t aadlen,
               const void *pt, size_t len, unsigned char *out);
/* in is what crypt_seal wrote; out holds inlen - CRYPT_OVERHEAD bytes.
 * 0, or -1 when it does not authenticate (wrong key, wrong aad, tampered,
 * too short). */
int crypt_open(const unsigned char key[CRYPT_KEY_SIZE], const void *aad, size_t aadlen,
               const unsigned char *in, size_t inlen, unsigned char *out);

/* Standard base64 with padding, NUL-terminated, malloc()ed; *outlen (may
 * be NULL) excludes the NUL.  NULL when out of memory. */
char *crypt_b64(const void *data, size_t len, size_t *outlen);
/* Strict decoding of the above (no whitespace); malloc()ed, NULL when s is
 * not base64. */
unsigned char *crypt_unb64(const char *s, size_t slen, size_t *outlen);

/* Overwrite secrets before freeing them (not optimised away). */
void crypt_wipe(void *p, size_t len);

#endif
