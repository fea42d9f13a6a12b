/* Small helpers without a better home. */
#ifndef KIOSKD_UTIL_H
#define KIOSKD_UTIL_H

#include <sys/types.h>

/* mkdir -p: 0, or -1 with errno. */
int mkdir_p(const char *dir, mode_t mode);

#endif
