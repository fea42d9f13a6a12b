/* Small helpers without a better home. */
#ifndef KIOSKD_UTIL_H
#define KIOSKD_UTIL_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

/* mkdir -p: 0, or -1 with errno. */
int mkdir_p(const char *dir, mode_t mode);
/* Length of the well-formed UTF-8 sequence at p, of the avail bytes
 * there (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF), or 0. */
size_t utf8_seq(const unsigned char *p, size_t avail);
/* Replace, in place, every byte that is not part of well-formed UTF-8
 * with '?': a message cut by "%.64s" or by its buffer may split a
 * character, and a JSON string must be valid UTF-8. */
void utf8_sanitize(char *s);

/* CLOCK_MONOTONIC now plus ms (ms >= 0): a deadline for
 * pthread_cond_clockwait() and friends. */
struct timespec mono_after_ms(long ms);

/* msg as one protocol line (compact JSON and a newline): in buf when it
 * fits, else in malloc()ed memory the caller frees (when it is not buf).
 * NULL when msg cannot be serialised. */
char *json_line(json_t *msg, char *buf, size_t size, size_t *len);

#endif
