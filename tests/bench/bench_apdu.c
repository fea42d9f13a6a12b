/*
 * bench_apdu.c -- round trip of one APDU through kioskd's pcsc plugin
 * (cardreader.apdu over ui.sock), next to a direct libpcsclite client
 * sending the same APDU to the same pcscd and card.
 *
 *   bench_apdu --socket RUNTIME/ui.sock --reader NAME [--count N]
 *              [--block N] [--apdu HEX]
 *
 * Both are measured in alternating blocks (--block round trips each) so
 * that noise falls on both alike; the direct client keeps its connection
 * open (SCARD_SHARE_SHARED, like the plugin).  The APDU defaults to the
 * PC/SC GET UID (ff ca 00 00 00).  --reader - measures kioskd alone (for
 * a simulator device: the core's own per-command cost).  Prints one JSON
 * object on stdout.
 *
 * Two more paths, in the same alternating blocks, measure the floor that
 * any daemon between the UI and pcscd starts from on this machine: a
 * forked relay process that reads a 1-byte request on a Unix socket,
 * sends the APDU with SCardTransmit and writes back the response -- no
 * JSON, no event loop, no journal.  "relay" calls SCardTransmit on its
 * only thread; "relay_thread" hands each request to a second thread and
 * back (a condition variable there, an eventfd back, waited for with
 * poll() next to the socket), the way ARCHITECTURE.md decision 1 makes
 * kioskd run every blocking SDK call.  --client-cpu and --relay-cpu pin
 * this process and the relay (plugin_pcsc.py pins kioskd's threads to the
 * relay's CPU), so that every path crosses CPUs alike.
 */
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <winscard.h>

#include "bench_common.h"

struct direct {
	SCARDCONTEXT ctx;
	SCARDHANDLE card;
	DWORD proto;
	BYTE apdu[261];
	DWORD apdulen;
};

static void direct_open(struct direct *d, const char *reader, const char *hex)
{
	LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &d->ctx);

	if (rv != SCARD_S_SUCCESS)
		die("SCardEstablishContext: %s", pcsc_stringify_error(rv));
	rv = SCardConnect(d->ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
	                  &d->card, &d->proto);
	if (rv != SCARD_S_SUCCESS)
		die("SCardConnect %s: %s", reader, pcsc_stringify_error(rv));
	for (d->apdulen = 0; hex[2 * d->apdulen] && d->apdulen < sizeof(d->apdu); d->apdulen++)
		if (sscanf(hex + 2 * d->apdulen, "%2hhx", &d->apdu[d->apdulen]) != 1)
			die("--apdu: not hex");
}

static void direct_once(struct direct *d)
{
	BYTE resp[258];
	DWORD len = sizeof(resp);
	LONG rv = SCardTransmit(d->card, d->proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1,
	                        d->apdu, d->apdulen, NULL, resp, &len);

	if (rv != SCARD_S_SUCCESS || len < 2 || resp[len - 2] != 0x90)
		die("SCardTransmit: %s", pcsc_stringify_error(rv));
}

/* The relay's second thread: one job at a time, like a worker. */
static struct {
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	int job, efd;
	struct direct *d;
} relay_w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1, NULL};

static void *relay_worker(void *unused)
{
	uint64_t one = 1;

	(void)unused;
	for (;;) {
		pthread_mutex_lock(&relay_w.mtx);
		while (!relay_w.job)
			pthread_cond_wait(&relay_w.cond, &relay_w.mtx);
		relay_w.job = 0;
		pthread_mutex_unlock(&relay_w.mtx);
		direct_once(relay_w.d);
		if (write(relay_w.efd, &one, sizeof(one)) != sizeof(one))
			die("relay: eventfd: %s", strerror(errno));
	}
	return NULL;
}

/* Serves requests on fd until it closes: 'i' inline, 't' on the thread. */
static void relay_serve(int fd, const char *reader, const char *hex)
{
	struct direct d;
	pthread_t th;
	char req, resp[2] = {'o', 'k'};
	uint64_t n;

	direct_open(&d, reader, hex);
	relay_w.d = &d;
	if ((relay_w.efd = eventfd(0, EFD_CLOEXEC)) < 0 ||
	    pthread_create(&th, NULL, relay_worker, NULL) != 0)
		die("relay: thread: %s", strerror(errno));
	for (;;) {
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = relay_w.efd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0)
			die("relay: poll: %s", strerror(errno));
		if (p[1].revents & POLLIN) {
			if (read(relay_w.efd, &n, sizeof(n)) != sizeof(n))
				die("relay: eventfd: %s", strerror(errno));
			write_all(fd, resp, sizeof(resp));
		}
		if (!(p[0].revents & (POLLIN | POLLHUP)))
			continue;
		if (read(fd, &req, 1) != 1)
			_exit(0);
		if (req == 'i') {
			direct_once(&d);
			write_all(fd, resp, sizeof(resp));
		} else {
			pthread_mutex_lock(&relay_w.mtx);
			relay_w.job = 1;
			pthread_cond_signal(&relay_w.cond);
			pthread_mutex_unlock(&relay_w.mtx);
		}
	}
}

static int relay_start(const char *reader, const char *hex, int cpu, pid_t *pid)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair: %s", strerror(errno));
	if ((*pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (*pid == 0) {
		close(sv[0]);
		pin(cpu);
		relay_serve(sv[1], reader, hex);
	}
	close(sv[1]);
	return sv[0];
}

static void relay_once(int fd, char how)
{
	char resp[2];
	size_t got = 0;

	write_all(fd, &how, 1);
	while (got < sizeof(resp)) {
		ssize_t r = read(fd, resp + got, sizeof(resp) - got);
		if (r <= 0)
			die("relay: %s", r < 0 ? strerror(errno) : "closed");
		got += (size_t)r;
	}
}

static void kioskd_once(int fd, struct linebuf *lb, const char *req, size_t reqlen)
{
	size_t n;
	char *line;

	write_all(fd, req, reqlen);
	line = lb_getline(lb, fd, &n);
	if (!strstr(line, "\"ok\":true"))
		die("cardreader.apdu failed: %s", line);
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *reader = NULL, *hex = "ffca000000";
	long count = 2000, block = 50, client_cpu = -1, relay_cpu = -1;
	static struct linebuf lb;
	struct direct d;
	char req[700];
	size_t reqlen, nk = 0, nd = 0, nr = 0, nt = 0;
	uint64_t *tk, *td, *tr, *tt;
	int fd, rfd = -1;
	pid_t relay = 0;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--socket"))
			sock = argv[i + 1];
		else if (!strcmp(argv[i], "--reader"))
			reader = argv[i + 1];
		else if (!strcmp(argv[i], "--apdu"))
			hex = argv[i + 1];
		else if (!strcmp(argv[i], "--count"))
			count = arg_long(argv[i + 1], "--count", 1);
		else if (!strcmp(argv[i], "--block"))
			block = arg_long(argv[i + 1], "--block", 1);
		else if (!strcmp(argv[i], "--client-cpu"))
			client_cpu = arg_long(argv[i + 1], "--client-cpu", 0);
		else if (!strcmp(argv[i], "--relay-cpu"))
			relay_cpu = arg_long(argv[i + 1], "--relay-cpu", 0);
		else
			die("unknown argument %s", argv[i]);
	}
	if (!sock || !reader || strlen(hex) > 522)
		die("usage: bench_apdu --socket UI.SOCK --reader NAME [--count N] [--block N] "
		    "[--apdu HEX] [--client-cpu N] [--relay-cpu N]");
	reqlen = (size_t)snprintf(req, sizeof(req),
	                          "{\"id\":1,\"cmd\":\"cardreader.apdu\",\"args\":{\"apdu\":\"%s\"}}\n",
	                          hex);
	pin((int)client_cpu);
	fd = connect_unix(sock);
	int direct = strcmp(reader, "-") != 0;
	if (direct) {
		/* before this process's own PC/SC context: fork() and
		 * libpcsclite's state do not mix */
		rfd = relay_start(reader, hex, (int)relay_cpu, &relay);
		direct_open(&d, reader, hex);
	}
	tk = calloc((size_t)count, sizeof(*tk));
	td = calloc((size_t)count, sizeof(*td));
	tr = calloc((size_t)count, sizeof(*tr));
	tt = calloc((size_t)count, sizeof(*tt));
	if (!tk || !td || !tr || !tt)
		die("out of memory");
	for (int w = 0; w < 20; w++) { /* warm up every path */
		kioskd_once(fd, &lb, req, reqlen);
		if (direct) {
			direct_once(&d);
			relay_once(rfd, 'i');
			relay_once(rfd, 't');
		}
	}
	while (nk < (size_t)count) {
		for (long i = 0; i < block && nk < (size_t)count; i++) {
			uint64_t t0 = now_ns();
			kioskd_once(fd, &lb, req, reqlen);
			tk[nk++] = now_ns() - t0;
		}
		for (long i = 0; direct && i < block && nd < (size_t)count; i++) {
			uint64_t t0 = now_ns();
			direct_once(&d);
			td[nd++] = now_ns() - t0;
		}
		for (long i = 0; direct && i < block && nr < (size_t)count; i++) {
			uint64_t t0 = now_ns();
			relay_once(rfd, 'i');
			tr[nr++] = now_ns() - t0;
		}
		for (long i = 0; direct && i < block && nt < (size_t)count; i++) {
			uint64_t t0 = now_ns();
			relay_once(rfd, 't');
			tt[nt++] = now_ns() - t0;
		}
	}
	printf("{");
	print_stats(stdout, "kioskd", tk, nk);
	printf(",");
	print_stats(stdout, "direct", td, nd);
	printf(",");
	print_stats(stdout, "relay", tr, nr);
	printf(",");
	print_stats(stdout, "relay_thread", tt, nt);
	printf("}\n");
	if (direct) {
		SCardDisconnect(d.card, SCARD_LEAVE_CARD);
		SCardReleaseContext(d.ctx);
		close(rfd);
		waitpid(relay, NULL, 0);
	}
	close(fd);
	free(tk);
	free(td);
	free(tr);
	free(tt);
	return 0;
}
