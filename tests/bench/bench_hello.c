/*
 * bench_hello.c -- round-trip latency of `hello` over ui.sock, next to a
 * raw Unix-socket ping-pong of the same bytes.
 *
 *   bench_hello --socket RUNTIME/ui.sock [--count N] [--warmup N] [--block N]
 *
 * One connection to kioskd sends {"id":1,"cmd":"hello"} and reads the
 * reply line; the first reply is kept as the canned answer of the
 * baseline: a forked child listening on its own Unix socket that reads a
 * line and writes that exact reply back (blocking read/write, nothing
 * else).  The client code is the same for both: write the request, read
 * until '\n', check the length.  The two are measured in alternating
 * blocks (--block round trips each) so that CPU frequency or scheduler
 * noise falls on both alike.  Prints one JSON object on stdout.
 */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "bench_common.h"

static const char request[] = "{\"id\":1,\"cmd\":\"hello\"}\n";

/* The baseline server: one connection, one canned reply per line read. */
static void raw_serve(int lfd, const char *reply, size_t replylen)
{
	static struct linebuf lb;
	size_t n;
	int fd = accept(lfd, NULL, NULL);

	if (fd < 0)
		die("raw server: accept: %s", strerror(errno));
	close(lfd);
	for (;;) {
		while (!lb_next(&lb, &n))
			if (lb_fill(&lb, fd) == 0)
				_exit(0);
		write_all(fd, reply, replylen);
	}
}

static pid_t raw_start(const char *path, const char *reply, size_t replylen, int close_in_child,
                       int cpu)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int lfd;
	pid_t pid;

	if (strlen(path) >= sizeof(sun.sun_path))
		die("socket path too long: %s", path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	unlink(path);
	if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(lfd, 4) < 0)
		die("raw server: listen on %s: %s", path, strerror(errno));
	if ((pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		/* the daemon must see our client close, not a copy held here */
		close(close_in_child);
		pin(cpu);
		raw_serve(lfd, reply, replylen);
	}
	close(lfd);
	return pid;
}

/* One round trip: the request out, one whole reply line back. */
static uint64_t round_trip(int fd, struct linebuf *lb, size_t want)
{
	size_t n;
	uint64_t t0 = now_ns();
	char *line;

	write_all(fd, request, sizeof(request) - 1);
	line = lb_getline(lb, fd, &n);
	uint64_t dt = now_ns() - t0;
	if (n + 1 != want)
		die("unexpected reply (%zu bytes, want %zu): %.200s", n + 1, want, line);
	return dt;
}

int main(int argc, char **argv)
{
	const char *sock = NULL;
	long count = 20000, warmup = 2000, block = 1000;
	int client_cpu = -1, server_cpu = -1;
	static struct linebuf lk, lr;
	char reply[4096], rawpath[128];
	size_t replylen, n;
	int kfd, rfd;
	pid_t raw;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			sock = argv[++i];
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = arg_long(argv[++i], "--count", 1);
		else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
			warmup = arg_long(argv[++i], "--warmup", 0);
		else if (!strcmp(argv[i], "--block") && i + 1 < argc)
			block = arg_long(argv[++i], "--block", 1);
		else if (!strcmp(argv[i], "--client-cpu") && i + 1 < argc)
			client_cpu = (int)arg_long(argv[++i], "--client-cpu", 0);
		else if (!strcmp(argv[i], "--server-cpu") && i + 1 < argc)
			server_cpu = (int)arg_long(argv[++i], "--server-cpu", 0);
		else
			die("usage: bench_hello --socket PATH [--count N] [--warmup N] [--block N] "
			    "[--client-cpu N] [--server-cpu N]");
	}
	if (!sock)
		die("--socket is required");
	signal(SIGPIPE, SIG_IGN);
	pin(client_cpu);

	/* The daemon's reply to our request, byte for byte. */
	kfd = connect_unix(sock);
	write_all(kfd, request, sizeof(request) - 1);
	char *line = lb_getline(&lk, kfd, &n);
	if (n + 1 >= sizeof(reply) || !strstr(line, "\"ok\":true"))
		die("hello failed: %.200s", line);
	memcpy(reply, line, n);
	reply[n] = '\n';
	replylen = n + 1;

	/* The baseline server beside the daemon's socket. */
	snprintf(rawpath, sizeof(rawpath), "%s.raw-%d", sock, (int)getpid());
	raw = raw_start(rawpath, reply, replylen, kfd, server_cpu);
	rfd = connect_unix(rawpath);

	for (long i = 0; i < warmup; i++) {
		round_trip(kfd, &lk, replylen);
		round_trip(rfd, &lr, replylen);
	}

	uint64_t *tk = calloc((size_t)count, sizeof(*tk));
	uint64_t *tr = calloc((size_t)count, sizeof(*tr));
	if (!tk || !tr)
		die("out of memory");
	uint64_t start = now_ns();
	for (long done = 0; done < count;) {
		long m = count - done < block ? count - done : block;
		for (long i = 0; i < m; i++)
			tk[done + i] = round_trip(kfd, &lk, replylen);
		for (long i = 0; i < m; i++)
			tr[done + i] = round_trip(rfd, &lr, replylen);
		done += m;
	}
	double wall = (double)(now_ns() - start) / 1e9;

	close(rfd);
	close(kfd);
	waitpid(raw, NULL, 0);
	unlink(rawpath);

	printf("{\"request_bytes\":%zu,\"reply_bytes\":%zu,\"wall_s\":%.3f,", sizeof(request) - 1,
	       replylen, wall);
	print_stats(stdout, "kioskd", tk, (size_t)count);
	printf(",");
	print_stats(stdout, "raw", tr, (size_t)count);
	printf("}\n");
	free(tk);
	free(tr);
	return 0;
}
