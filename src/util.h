/* Small helpers without a better home. */
#ifndef KIOSKD_UTIL_H
#define KIOSKD_UTIL_H

#include <sys/types.h>

/* mkdir -p: 0, or -1 with errno. */
int mkdir_p(const char *dir, mode_t mode);
/* Replace, in place, every byte that is not part of well-formed UTF-8
 * with '?': a message cut by "%.64s" or by its buffer may split a
 * character, and a JSON string must be valid UTF-8. */
void utf8_sanitize(char *s);

#endif
