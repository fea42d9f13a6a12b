/*
 * bench_common.h -- the few helpers the C benchmarks share: a monotonic
 * clock in nanoseconds, a blocking Unix-socket connect, whole writes,
 * line reads, percentiles.  Deliberately no kclient: the benchmarks talk
 * to the sockets with plain read()/write() so that the client side costs
 * the same for kioskd and for the raw baseline.
 */
#ifndef KIOSK_BENCH_COMMON_H
#define KIOSK_BENCH_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* Pin the calling process to one CPU; -1 leaves it to the scheduler. */
static inline void pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		die("sched_setaffinity(%d): %s", cpu, strerror(errno));
}

static inline int connect_unix(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		die("socket path too long: %s", path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		die("connect %s: %s", path, strerror(errno));
	return fd;
}

static inline void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write: %s", w < 0 ? strerror(errno) : "short write");
		p += w;
		n -= (size_t)w;
	}
}

/* A line reader over a blocking or non-blocking fd.  Lines are returned
 * NUL-terminated without their '\n'. */
struct linebuf {
	char buf[65536];
	size_t len; /* bytes held */
	size_t off; /* start of the unread part */
};

/* The next complete line already buffered, or NULL. */
static inline char *lb_next(struct linebuf *b, size_t *linelen)
{
	char *start = b->buf + b->off;
	char *nl = memchr(start, '\n', b->len - b->off);
	if (!nl)
		return NULL;
	*nl = '\0';
	*linelen = (size_t)(nl - start);
	b->off = (size_t)(nl - b->buf) + 1;
	return start;
}

/* Read once more into the buffer: bytes read, 0 on EOF, -1 on EAGAIN. */
static inline ssize_t lb_fill(struct linebuf *b, int fd)
{
	ssize_t r;

	if (b->off) {
		memmove(b->buf, b->buf + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len == sizeof(b->buf))
		die("line longer than %zu bytes", sizeof(b->buf));
	do
		r = read(fd, b->buf + b->len, sizeof(b->buf) - b->len);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return -1;
	if (r < 0)
		die("read: %s", strerror(errno));
	b->len += (size_t)r;
	return r;
}

/* Block until a whole line is there (fd must be blocking). */
static inline char *lb_getline(struct linebuf *b, int fd, size_t *linelen)
{
	char *line;
	while (!(line = lb_next(b, linelen)))
		if (lb_fill(b, fd) == 0)
			die("connection closed by peer");
	return line;
}

static inline int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n), in microseconds. */
static inline double pct_us(const uint64_t *v, size_t n, double p)
{
	size_t rank;
	if (!n)
		return 0;
	rank = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1000.0;
}

static inline double mean_us(const uint64_t *v, size_t n)
{
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += (double)v[i];
	return n ? sum / (double)n / 1000.0 : 0;
}

/* One JSON object of summary statistics for sorted v[0..n). */
static inline void print_stats(FILE *f, const char *name, uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	fprintf(f,
	        "\"%s\":{\"n\":%zu,\"min_us\":%.2f,\"p50_us\":%.2f,\"p90_us\":%.2f,"
	        "\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,\"mean_us\":%.2f}",
	        name, n, pct_us(v, n, 0), pct_us(v, n, 50), pct_us(v, n, 90), pct_us(v, n, 99),
	        pct_us(v, n, 99.9), n ? (double)v[n - 1] / 1000.0 : 0, mean_us(v, n));
}

static inline long arg_long(const char *s, const char *name, long min)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v < min)
		die("%s: want an integer >= %ld, got '%s'", name, min, s);
	return v;
}

static inline double arg_double(const char *s, const char *name)
{
	char *end;
	double v = strtod(s, &end);
	if (!*s || *end || v < 0)
		die("%s: want a number >= 0, got '%s'", name, s);
	return v;
}

/* The decimal after "key": in a line, or -1. */
static inline long long field_int(const char *line, const char *key)
{
	char pat[32];
	const char *p;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	if (!(p = strstr(line, pat)))
		return -1;
	return strtoll(p + strlen(pat), NULL, 10);
}

static inline void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl: %s", strerror(errno));
}

#endif /* KIOSK_BENCH_COMMON_H */
