#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "jtext.h"

int mkdir_p(const char *dir, mode_t mode)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) == 0)
		return 0;
	struct stat st;
	if (errno == EEXIST && stat(tmp, &st) == 0 && !S_ISDIR(st.st_mode))
		errno = ENOTDIR; /* a file is in the way */
	else if (errno == EEXIST)
		return 0;
	return -1;
}

size_t utf8_seq(const unsigned char *p, size_t avail)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (n > avail)
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

void utf8_sanitize(char *s)
{
	unsigned char *p = (unsigned char *)s, *end = p + strlen(s);
	while (*p) {
		size_t n = utf8_seq(p, (size_t)(end - p));
		if (n)
			p += n;
		else
			*p++ = '?';
	}
}

#define LINE_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(12))

char *json_line(json_t *msg, char *buf, size_t size, size_t *len)
{
	/* one pass for the common small message; a second only when it is
	 * big.  jtext writes what jansson would, and declines (reals) what it
	 * does not */
	size_t n = jtext_dump(msg, buf, size - 1);
	int fast = n != 0;
	char *p = buf;

	if (!fast)
		n = json_dumpb(msg, buf, size - 1, LINE_FLAGS);
	if (n == 0)
		return NULL;
	if (n >= size) {
		if (!(p = malloc(n + 1)))
			return NULL;
		if (fast)
			jtext_dump(msg, p, n);
		else
			json_dumpb(msg, p, n, LINE_FLAGS);
	}
	p[n] = '\n';
	*len = n + 1;
	return p;
}

struct timespec mono_after_ms(long ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}
