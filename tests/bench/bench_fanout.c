/*
 * bench_fanout.c -- event fan-out latency: one producer on admin.sock,
 * many subscribers on ui.sock.
 *
 *   bench_fanout --ui RUNTIME/ui.sock --admin RUNTIME/admin.sock
 *                [--device qr0] [--subscribers 32] [--events 500] [--warmup 20]
 *                [--topic 'barcode.*'] [--gap-us 1000]
 *
 * Each subscriber connection sends events.subscribe for --topic.  Then,
 * one event at a time, the producer writes
 *   {"id":K,"cmd":"sim.inject","device":"qr0","args":{"what":"scan","code":"BENCH-K"}}
 * and one epoll loop over the subscribers and the producer waits until
 * every subscriber has the barcode.scanned event carrying that code and the
 * producer has its reply.  A receipt's time is taken when epoll_wait
 * returns with the socket readable (the data was there by then), from a
 * CLOCK_MONOTONIC stamp taken just before the inject write.  All
 * subscribers must see the same seq for an event, and seq must grow.
 * --gap-us pauses between events so that the daemon is idle when each
 * one arrives, as on a kiosk.  Prints one JSON object on stdout.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>

#include "bench_common.h"

struct conn {
	int fd;
	struct linebuf lb;
	int got; /* has this event */
};

/* One event in flight: what has arrived so far. */
struct round {
	long k;           /* event number, warm-up included */
	const char *code; /* the scanned code that marks this event */
	long have;        /* subscribers that have it */
	int have_reply;
	long long seq;
	uint64_t t0, t_first, t_last, t_reply;
	uint64_t *lat; /* this event's row of delivery times, or NULL */
};

/* A line on subscriber idx (or on the producer when idx == nsub). */
static void on_line(struct round *rd, struct conn *c, long idx, long nsub, const char *line,
                    uint64_t t)
{
	if (idx == nsub) {
		if (field_int(line, "id") != rd->k + 2 || !strstr(line, "\"ok\":true"))
			die("inject %ld: unexpected reply: %.300s", rd->k, line);
		rd->have_reply = 1;
		rd->t_reply = t;
		return;
	}
	if (!strstr(line, "\"event\":") || !strstr(line, rd->code))
		die("subscriber %ld: unexpected line for event %ld: %.300s", idx, rd->k, line);
	if (c->got)
		die("subscriber %ld: event %ld delivered twice", idx, rd->k);
	long long s = field_int(line, "seq");
	if (rd->seq < 0)
		rd->seq = s;
	else if (s != rd->seq)
		die("event %ld: seq %lld at subscriber %ld, %lld elsewhere", rd->k, s, idx,
		    rd->seq);
	c->got = 1;
	if (!rd->have++)
		rd->t_first = t;
	rd->t_last = t;
	if (rd->lat)
		rd->lat[idx] = t - rd->t0;
}

int main(int argc, char **argv)
{
	const char *ui = NULL, *admin = NULL, *device = "qr0", *topic = "barcode.*";
	long nsub = 32, nev = 500, warmup = 20, gap_us = 1000;
	struct conn *subs, prod;
	char req[512], code[32], subreq[256];
	size_t n;
	int ep;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--ui") && i + 1 < argc)
			ui = argv[++i];
		else if (!strcmp(argv[i], "--admin") && i + 1 < argc)
			admin = argv[++i];
		else if (!strcmp(argv[i], "--device") && i + 1 < argc)
			device = argv[++i];
		else if (!strcmp(argv[i], "--topic") && i + 1 < argc)
			topic = argv[++i];
		else if (!strcmp(argv[i], "--subscribers") && i + 1 < argc)
			nsub = arg_long(argv[++i], "--subscribers", 1);
		else if (!strcmp(argv[i], "--events") && i + 1 < argc)
			nev = arg_long(argv[++i], "--events", 1);
		else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
			warmup = arg_long(argv[++i], "--warmup", 0);
		else if (!strcmp(argv[i], "--gap-us") && i + 1 < argc)
			gap_us = arg_long(argv[++i], "--gap-us", 0);
		else
			die("usage: bench_fanout --ui PATH --admin PATH [--device NAME] "
			    "[--subscribers N] [--events N] [--warmup N] [--topic PATTERN] "
			    "[--gap-us N]");
	}
	if (!ui || !admin)
		die("--ui and --admin are required");
	signal(SIGPIPE, SIG_IGN);
	if (!(subs = calloc((size_t)nsub, sizeof(*subs))))
		die("out of memory");
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1: %s", strerror(errno));

	/* Subscribe every connection and wait for each confirmation. */
	snprintf(subreq, sizeof(subreq),
	         "{\"id\":1,\"cmd\":\"events.subscribe\",\"args\":{\"topics\":[\"%s\"]}}\n", topic);
	for (long i = 0; i < nsub; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
		subs[i].fd = connect_unix(ui);
		write_all(subs[i].fd, subreq, strlen(subreq));
		char *line = lb_getline(&subs[i].lb, subs[i].fd, &n);
		if (!strstr(line, "\"ok\":true"))
			die("subscriber %ld: events.subscribe failed: %.200s", i, line);
		set_nonblock(subs[i].fd);
		if (epoll_ctl(ep, EPOLL_CTL_ADD, subs[i].fd, &ev) < 0)
			die("epoll_ctl: %s", strerror(errno));
	}
	memset(&prod, 0, sizeof(prod));
	prod.fd = connect_unix(admin);
	set_nonblock(prod.fd);
	{
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)nsub};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, prod.fd, &ev) < 0)
			die("epoll_ctl: %s", strerror(errno));
	}

	size_t total = (size_t)nev * (size_t)nsub;
	/* every delivery; per event: first and last subscriber, the reply */
	uint64_t *lat = calloc(total, sizeof(*lat));
	uint64_t *first = calloc((size_t)nev, sizeof(*lat));
	uint64_t *last = calloc((size_t)nev, sizeof(*lat));
	uint64_t *rtt = calloc((size_t)nev, sizeof(*lat));
	struct epoll_event *evs = calloc((size_t)nsub + 1, sizeof(*evs));
	if (!lat || !first || !last || !rtt || !evs)
		die("out of memory");
	long long prev_seq = -1;
	long reply_first = 0; /* replies that beat the first delivery */
	uint64_t start = now_ns();

	for (long k = 0; k < warmup + nev; k++) {
		long rec = k - warmup; /* < 0 while warming up */
		struct round rd = {.k = k, .code = code, .seq = -1};

		if (rec >= 0)
			rd.lat = lat + (size_t)rec * (size_t)nsub;
		snprintf(code, sizeof(code), "BENCH-%06ld", k);
		snprintf(req, sizeof(req),
		         "{\"id\":%ld,\"cmd\":\"sim.inject\",\"device\":\"%s\","
		         "\"args\":{\"what\":\"scan\",\"code\":\"%s\"}}\n",
		         k + 2, device, code);
		for (long i = 0; i < nsub; i++)
			subs[i].got = 0;

		rd.t0 = now_ns();
		write_all(prod.fd, req, strlen(req));
		while (rd.have < nsub || !rd.have_reply) {
			int m = epoll_wait(ep, evs, (int)nsub + 1, 5000);
			uint64_t t = now_ns();
			if (m < 0 && errno == EINTR)
				continue;
			if (m < 0)
				die("epoll_wait: %s", strerror(errno));
			if (m == 0)
				die("event %ld: timed out after 5 s: %ld of %ld subscribers, "
				    "reply %s",
				    k, rd.have, nsub, rd.have_reply ? "received" : "missing");
			for (int e = 0; e < m; e++) {
				long idx = (long)evs[e].data.u64;
				struct conn *c = idx == nsub ? &prod : &subs[idx];
				char *line;
				/* one read per wake-up: epoll is level-triggered, so
				 * anything left is reported again */
				if (lb_fill(&c->lb, c->fd) == 0)
					die("%s %ld: connection closed by kioskd",
					    idx == nsub ? "producer" : "subscriber", idx);
				while ((line = lb_next(&c->lb, &n)))
					on_line(&rd, c, idx, nsub, line, t);
			}
		}
		if (rd.seq <= prev_seq)
			die("event %ld: seq %lld does not follow %lld", k, rd.seq, prev_seq);
		prev_seq = rd.seq;
		if (rec >= 0) {
			first[rec] = rd.t_first - rd.t0;
			last[rec] = rd.t_last - rd.t0;
			rtt[rec] = rd.t_reply - rd.t0;
			reply_first += rd.t_reply < rd.t_first;
		}
		if (gap_us) {
			struct timespec ts = {gap_us / 1000000, (gap_us % 1000000) * 1000};
			nanosleep(&ts, NULL);
		}
	}
	double wall = (double)(now_ns() - start) / 1e9;

	printf("{\"subscribers\":%ld,\"events\":%ld,\"gap_us\":%ld,\"wall_s\":%.3f,"
	       "\"reply_before_first_delivery\":%ld,",
	       nsub, nev, gap_us, wall, reply_first);
	print_stats(stdout, "delivery", lat, total);
	printf(",");
	print_stats(stdout, "first", first, (size_t)nev);
	printf(",");
	print_stats(stdout, "last", last, (size_t)nev);
	printf(",");
	print_stats(stdout, "inject_rtt", rtt, (size_t)nev);
	printf("}\n");
	for (long i = 0; i < nsub; i++)
		close(subs[i].fd);
	close(prod.fd);
	free(subs);
	free(lat);
	free(first);
	free(last);
	free(rtt);
	free(evs);
	return 0;
}
