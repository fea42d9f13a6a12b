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
 */
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
	long count = 2000, block = 50;
	static struct linebuf lb;
	struct direct d;
	char req[700];
	size_t reqlen, nk = 0, nd = 0;
	uint64_t *tk, *td;
	int fd;

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
		else
			die("unknown argument %s", argv[i]);
	}
	if (!sock || !reader || strlen(hex) > 522)
		die("usage: bench_apdu --socket UI.SOCK --reader NAME [--count N] [--block N] "
		    "[--apdu HEX]");
	reqlen = (size_t)snprintf(req, sizeof(req),
	                          "{\"id\":1,\"cmd\":\"cardreader.apdu\",\"args\":{\"apdu\":\"%s\"}}\n",
	                          hex);
	fd = connect_unix(sock);
	int direct = strcmp(reader, "-") != 0;
	if (direct)
		direct_open(&d, reader, hex);
	tk = calloc((size_t)count, sizeof(*tk));
	td = calloc((size_t)count, sizeof(*td));
	if (!tk || !td)
		die("out of memory");
	for (int w = 0; w < 20; w++) { /* warm up both paths */
		kioskd_once(fd, &lb, req, reqlen);
		if (direct)
			direct_once(&d);
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
	}
	printf("{");
	print_stats(stdout, "kioskd", tk, nk);
	printf(",");
	print_stats(stdout, "direct", td, nd);
	printf("}\n");
	if (direct) {
		SCardDisconnect(d.card, SCARD_LEAVE_CARD);
		SCardReleaseContext(d.ctx);
	}
	close(fd);
	free(tk);
	free(td);
	return 0;
}
