/*
 * bench_submit.c -- durable txn.submit throughput (and fill) over ui.sock.
 *
 *   bench_submit --socket RUNTIME/ui.sock [--clients 1] [--pipeline 1]
 *                (--seconds S [--warmup S] | --count N) [--type bench.topup]
 *
 * --clients connections, one epoll loop.  Each connection keeps up to
 * --pipeline txn.submit requests outstanding: with 1 (the throughput
 * rows) it is a closed loop, request, reply, next request; with more (the
 * fills of the drain and RSS rows) it writes a burst of requests whenever
 * half of them have been answered.  Every reply must be "ok":true and come
 * back in order on its connection (its "id" is checked).  A reply means
 * the row is committed and fsync()ed (docs/protocol.md, txn.submit).
 *
 * --seconds: submit for --warmup + --seconds; the rate counts the replies
 * that arrive in the last --seconds, and their latencies (request written
 * to reply read) are the latency statistics.  Then no new requests are
 * sent and the outstanding ones are waited for.  --count: exactly N
 * submissions in all, as fast as they go.
 *
 * The payload is small and fixed in shape, e.g.
 *   {"card":"8860012345","amount_fen":5000,"order":"P-00000042"}
 * (bench_sqlite writes the same text).  Prints one JSON object on stdout.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>

#include "bench_common.h"

struct conn {
	int fd;
	struct linebuf lb;
	long outstanding;
	/* the requests in flight, oldest first: id and time written */
	long *ids;
	uint64_t *sent;
	long head, n;
};

/* Whole writes on a non-blocking socket: wait for room with poll(). */
static void write_all_nb(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			poll(&pfd, 1, 1000);
			continue;
		}
		if (w <= 0)
			die("write: %s", w < 0 ? strerror(errno) : "short write");
		p += w;
		n -= (size_t)w;
	}
}

static const char *type = "bench.topup";
static long next_id = 1;

/* Append one request to buf; its id. */
static long request(char *buf, size_t len, size_t *used)
{
	long id = next_id++;
	int n = snprintf(buf + *used, len - *used,
	                 "{\"id\":%ld,\"cmd\":\"txn.submit\",\"args\":{\"type\":\"%s\","
	                 "\"payload\":{\"card\":\"8860012345\",\"amount_fen\":5000,"
	                 "\"order\":\"P-%08ld\"}}}\n",
	                 id, type, id);
	if (n < 0 || (size_t)n >= len - *used)
		die("request buffer too small");
	*used += (size_t)n;
	return id;
}

/* Latencies of the measured replies, grown as needed. */
static uint64_t *lat;
static size_t nlat, caplat;

static void lat_add(uint64_t v)
{
	if (nlat == caplat) {
		uint64_t *bigger;
		caplat = caplat ? caplat * 2 : 65536;
		if (!(bigger = realloc(lat, caplat * sizeof(*lat))))
			die("out of memory");
		lat = bigger;
	}
	lat[nlat++] = v;
}

int main(int argc, char **argv)
{
	const char *sock = NULL;
	long clients = 1, pipeline = 1, count = 0;
	double seconds = 0, warmup = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			sock = argv[++i];
		else if (!strcmp(argv[i], "--clients") && i + 1 < argc)
			clients = arg_long(argv[++i], "--clients", 1);
		else if (!strcmp(argv[i], "--pipeline") && i + 1 < argc)
			pipeline = arg_long(argv[++i], "--pipeline", 1);
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = arg_long(argv[++i], "--count", 1);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = arg_double(argv[++i], "--seconds");
		else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
			warmup = arg_double(argv[++i], "--warmup");
		else if (!strcmp(argv[i], "--type") && i + 1 < argc)
			type = argv[++i];
		else
			die("usage: bench_submit --socket PATH [--clients N] [--pipeline N] "
			    "(--seconds S [--warmup S] | --count N) [--type T]");
	}
	if (!sock || (!count) == (seconds <= 0))
		die("--socket and one of --seconds or --count are required");
	if (pipeline > 4096)
		die("--pipeline: at most 4096");
	signal(SIGPIPE, SIG_IGN);

	struct conn *c = calloc((size_t)clients, sizeof(*c));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (!c || ep < 0)
		die("setup: %s", strerror(errno));
	for (long i = 0; i < clients; i++) {
		c[i].fd = connect_unix(sock);
		set_nonblock(c[i].fd);
		c[i].ids = calloc((size_t)pipeline, sizeof(long));
		c[i].sent = calloc((size_t)pipeline, sizeof(uint64_t));
		if (!c[i].ids || !c[i].sent)
			die("out of memory");
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev) < 0)
			die("epoll_ctl: %s", strerror(errno));
	}

	size_t bufcap = (size_t)pipeline * 192 + 256;
	char *buf = malloc(bufcap);
	if (!buf)
		die("out of memory");
	long issued = 0, done = 0, measured = 0, outstanding = 0;
	uint64_t t_start = now_ns();
	uint64_t t_meas = t_start + (uint64_t)(warmup * 1e9);
	uint64_t t_end = t_meas + (uint64_t)(seconds * 1e9);
	int stopping = 0;

	/* Top a connection up to the pipeline depth (when at most half is
	 * outstanding, or at all with a depth of 1). */
	for (long i = 0; i < clients; i++)
		c[i].outstanding = -1; /* marks "needs a first burst" */

	for (;;) {
		uint64_t now = now_ns();
		if (count ? issued >= count : now >= t_end)
			stopping = 1;
		for (long i = 0; i < clients && !stopping; i++) {
			struct conn *k = &c[i];
			if (k->outstanding < 0)
				k->outstanding = 0;
			if (k->outstanding > pipeline / 2)
				continue;
			size_t used = 0;
			long add = pipeline - k->outstanding;
			if (count && add > count - issued)
				add = count - issued;
			if (add <= 0)
				continue;
			uint64_t t = now_ns();
			for (long j = 0; j < add; j++) {
				long slot = (k->head + k->n) % pipeline;
				k->ids[slot] = request(buf, bufcap, &used);
				k->sent[slot] = t;
				k->n++;
			}
			write_all_nb(k->fd, buf, used);
			k->outstanding += add;
			outstanding += add;
			issued += add;
		}
		if (stopping && outstanding == 0)
			break;

		struct epoll_event evs[64];
		int ne = epoll_wait(ep, evs, 64, 5000);
		if (ne < 0 && errno == EINTR)
			continue;
		if (ne < 0)
			die("epoll_wait: %s", strerror(errno));
		if (ne == 0)
			die("no reply for 5 s (%ld outstanding)", outstanding);
		for (int e = 0; e < ne; e++) {
			struct conn *k = &c[evs[e].data.u64];
			ssize_t r = lb_fill(&k->lb, k->fd);
			if (r == 0)
				die("connection closed by kioskd (%ld done)", done);
			uint64_t t = now_ns();
			char *line;
			size_t n;
			while ((line = lb_next(&k->lb, &n))) {
				if (!k->n)
					die("a line nobody asked for: %.300s", line);
				long want = k->ids[k->head];
				if (field_int(line, "id") != want || !strstr(line, "\"ok\":true"))
					die("request %ld: unexpected reply: %.300s", want, line);
				if (t >= t_meas && (count || t <= t_end)) {
					lat_add(t - k->sent[k->head]);
					measured++;
				}
				k->head = (k->head + 1) % pipeline;
				k->n--;
				k->outstanding--;
				outstanding--;
				done++;
			}
		}
	}
	uint64_t t_stop = now_ns();
	double wall = (double)(t_stop - t_start) / 1e9;
	double window = count ? wall : seconds;

	printf("{\"clients\":%ld,\"pipeline\":%ld,\"done\":%ld,\"measured\":%ld,"
	       "\"window_s\":%.3f,\"wall_s\":%.3f,\"rate\":%.1f,",
	       clients, pipeline, done, measured, window, wall, (double)measured / window);
	print_stats(stdout, "latency", lat, nlat);
	printf("}\n");
	for (long i = 0; i < clients; i++)
		close(c[i].fd);
	return 0;
}
