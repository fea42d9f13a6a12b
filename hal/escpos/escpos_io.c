/*
 * escpos_io.c -- the three ways to reach a receipt printer: raw TCP (port
 * 9100, "JetDirect"), a USB printer-class interface (libusb bulk
 * transfers), and a character device (/dev/usb/lp*, a serial port).
 *
 * Only quick, non-blocking steps run on the loop (opening a device node,
 * reading cached USB descriptors).  The TCP host is looked up, and
 * connected to, by the first job after each (re)open.  Every transfer
 * runs inside a host->run_blocking() job,
 * with poll()/libusb timeouts: the core closes a device only once its jobs
 * are done, so a transfer never outlives the handle it uses.
 */
#include <errno.h>
#include <fcntl.h>
#include <libusb.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "escpos.h"

#define CHUNK 4096

/* Nothing on the loop: the first job looks the host up (an address is
 * taken as it is, a name may wait on DNS) and connects (tcp_resolve). */
static int tcp_start(struct escpos_io *io, const char *host, int port, char *why, size_t whylen)
{
	if (!*host || strlen(host) >= sizeof(io->name)) {
		snprintf(why, whylen, "host '%.64s': empty or longer than 255 characters", host);
		return -1;
	}
	snprintf(io->name, sizeof(io->name), "%s", host);
	io->port = port;
	io->connected = 0;
	return 0;
}

static speed_t baud_speed(int baud)
{
	static const struct {
		int baud;
		speed_t speed;
	} t[] = {{1200, B1200},   {2400, B2400},   {4800, B4800},   {9600, B9600},
	         {19200, B19200}, {38400, B38400}, {57600, B57600}, {115200, B115200}};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].baud == baud)
			return t[i].speed;
	return 0;
}

static int chardev_start(struct escpos_io *io, const char *device, int baud, char *why,
                         size_t whylen)
{
	struct termios tio;

	if ((io->fd = open(device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		snprintf(why, whylen, "%s: %s", device, strerror(errno));
		return -1;
	}
	/* a serial port: raw 8N1, or the line discipline eats our bytes */
	if (isatty(io->fd) && tcgetattr(io->fd, &tio) == 0) {
		speed_t sp = baud_speed(baud);
		if (!sp) {
			snprintf(why, whylen, "baud %d is not a standard rate", baud);
			close(io->fd);
			io->fd = -1;
			return -1;
		}
		cfmakeraw(&tio);
		cfsetispeed(&tio, sp);
		cfsetospeed(&tio, sp);
		tcsetattr(io->fd, TCSANOW, &tio);
	}
	io->connected = 1;
	return 0;
}

int escpos_io_start_fd(struct escpos_io *io, const char *host, int port, const char *device,
                       int baud, char *why, size_t whylen)
{
	io->fd = -1;
	if (io->t == ESCPOS_TCP)
		return tcp_start(io, host, port, why, whylen);
	return chardev_start(io, device, baud, why, whylen);
}

void escpos_io_close_fd(struct escpos_io *io)
{
	if (io->fd >= 0)
		close(io->fd);
	io->fd = -1;
}

/* The printer-class interface (7/1/x), else the first with a bulk OUT
 * endpoint (vendor-class clones). */
static int pick_interface(struct escpos_io *io, const struct libusb_config_descriptor *c)
{
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < c->bNumInterfaces; i++) {
			const struct libusb_interface_descriptor *d =
			        &c->interface[i].altsetting[0];
			uint8_t out = 0, in = 0;
			if (pass == 0 && d->bInterfaceClass != LIBUSB_CLASS_PRINTER)
				continue;
			for (int e = 0; e < d->bNumEndpoints; e++) {
				const struct libusb_endpoint_descriptor *ep = &d->endpoint[e];
				if ((ep->bmAttributes & 3) != LIBUSB_TRANSFER_TYPE_BULK)
					continue;
				if (ep->bEndpointAddress & LIBUSB_ENDPOINT_IN)
					in = in ? in : ep->bEndpointAddress;
				else
					out = out ? out : ep->bEndpointAddress;
			}
			if (out) {
				io->iface = d->bInterfaceNumber;
				io->ep_out = out;
				io->ep_in = in;
				return 0;
			}
		}
	}
	return -1;
}

int escpos_io_usb_endpoints(struct escpos_io *io, char *why, size_t whylen)
{
	struct libusb_config_descriptor *c;
	int rc = libusb_get_active_config_descriptor(libusb_get_device(io->usb), &c);

	if (rc < 0) {
		snprintf(why, whylen, "USB configuration: %s", libusb_strerror(rc));
		return -1;
	}
	rc = pick_interface(io, c);
	libusb_free_config_descriptor(c);
	if (rc < 0)
		snprintf(why, whylen, "the USB device has no printer interface with a bulk OUT");
	return rc;
}

/* --- worker side --- */

static int usb_result(int rc, const char *what, char *why, size_t whylen)
{
	if (rc == 0)
		return ESCPOS_IO_OK;
	snprintf(why, whylen, "USB %s: %s", what, libusb_strerror(rc));
	return rc == LIBUSB_ERROR_TIMEOUT ? ESCPOS_IO_TIMEOUT : ESCPOS_IO_LOST;
}

static int fd_wait(struct escpos_io *io, short ev, int ms, char *why, size_t whylen)
{
	struct pollfd p = {io->fd, ev, 0};
	int rc;

	while ((rc = poll(&p, 1, ms)) < 0 && errno == EINTR)
		;
	if (rc == 0) {
		snprintf(why, whylen, "the printer did not answer within %d ms", ms);
		return ESCPOS_IO_TIMEOUT;
	}
	if (rc < 0 || (p.revents & (POLLERR | POLLNVAL))) {
		snprintf(why, whylen, "connection lost");
		return ESCPOS_IO_LOST;
	}
	return ESCPOS_IO_OK;
}

/* One address of the host: connected within timeout_ms, or the reason
 * why not (a connect that times out is a printer not there). */
static int tcp_try(struct escpos_io *io, const struct addrinfo *a, char *why, size_t whylen)
{
	int err = 0;
	socklen_t len = sizeof(err);

	io->fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (io->fd < 0) {
		snprintf(why, whylen, "socket: %s", strerror(errno));
		return ESCPOS_IO_LOST;
	}
	if (connect(io->fd, a->ai_addr, a->ai_addrlen) < 0) {
		err = errno;
		if (err == EINPROGRESS &&
		    fd_wait(io, POLLOUT, io->timeout_ms, why, whylen) == ESCPOS_IO_TIMEOUT)
			err = ETIMEDOUT;
		else if (err == EINPROGRESS)
			getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	}
	if (err) {
		snprintf(why, whylen, "connect to %s port %d: %s", io->name, io->port,
		         strerror(err));
		close(io->fd);
		io->fd = -1;
		return ESCPOS_IO_LOST;
	}
	io->connected = 1;
	return ESCPOS_IO_OK;
}

/* The host, looked up here, in a job (a name may wait on DNS), then each
 * of its addresses tried in turn ("localhost" may be ::1 first while the
 * printer listens on 127.0.0.1 only). */
static int tcp_resolve(struct escpos_io *io, char *why, size_t whylen)
{
	struct addrinfo hints = {0}, *ai;
	char serv[16];
	int rc = ESCPOS_IO_LOST;

	hints.ai_flags = AI_NUMERICSERV;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(serv, sizeof(serv), "%d", io->port);
	int g = getaddrinfo(io->name, serv, &hints, &ai);
	if (g != 0) {
		snprintf(why, whylen, "host '%s': %s", io->name,
		         g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
		return ESCPOS_IO_LOST;
	}
	for (struct addrinfo *a = ai; a && rc != ESCPOS_IO_OK; a = a->ai_next)
		rc = tcp_try(io, a, why, whylen);
	freeaddrinfo(ai);
	return rc;
}

int escpos_io_prepare(struct escpos_io *io, char *why, size_t whylen)
{
	int rc;

	if (io->t == ESCPOS_USB) {
		if (io->claimed)
			return ESCPOS_IO_OK;
		/* usblp binds printer interfaces: take the interface over when
		 * the kernel holds it (asked only then: not every usbfs knows
		 * the driver ioctls) */
		rc = libusb_claim_interface(io->usb, io->iface);
		if (rc == LIBUSB_ERROR_BUSY && libusb_detach_kernel_driver(io->usb, io->iface) == 0)
			rc = libusb_claim_interface(io->usb, io->iface);
		if ((rc = usb_result(rc, "claim", why, whylen)) == ESCPOS_IO_OK)
			io->claimed = 1;
		return rc;
	}
	return io->connected ? ESCPOS_IO_OK : tcp_resolve(io, why, whylen);
}

/* Wait until writable in short slices, so a cancel is seen while a
 * printer that stopped reading holds the write. */
static int fd_wait_out(struct escpos_io *io, const int *cancel, char *why, size_t whylen)
{
	for (int waited = 0; waited < io->timeout_ms; waited += 100) {
		int rc = fd_wait(io, POLLOUT, 100, why, whylen);
		if (rc != ESCPOS_IO_TIMEOUT)
			return rc;
		if (cancel && __atomic_load_n(cancel, __ATOMIC_RELAXED)) {
			snprintf(why, whylen, "cancelled");
			return ESCPOS_IO_CANCEL;
		}
	}
	snprintf(why, whylen, "the printer took no data for %d ms", io->timeout_ms);
	return ESCPOS_IO_LOST; /* not a status problem: reconnect */
}

static int fd_write(struct escpos_io *io, const uint8_t *p, size_t n, const int *cancel, char *why,
                    size_t whylen)
{
	while (n > 0) {
		ssize_t w = io->t == ESCPOS_TCP ? send(io->fd, p, n, MSG_NOSIGNAL)
		                                : write(io->fd, p, n);
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			int rc = fd_wait_out(io, cancel, why, whylen);
			if (rc != ESCPOS_IO_OK)
				return rc;
			continue;
		}
		if (w <= 0) {
			snprintf(why, whylen, "write: %s", w < 0 ? strerror(errno) : "closed");
			return ESCPOS_IO_LOST;
		}
		p += w;
		n -= (size_t)w;
	}
	return ESCPOS_IO_OK;
}

int escpos_io_write(struct escpos_io *io, const uint8_t *p, size_t n, const int *cancel, char *why,
                    size_t whylen)
{
	const uint8_t *start = p;

	io->partial = 0;
	while (n > 0) {
		size_t k = n < CHUNK ? n : CHUNK;
		int rc, done = 0;
		if (cancel && __atomic_load_n(cancel, __ATOMIC_RELAXED)) {
			snprintf(why, whylen, "cancelled");
			return ESCPOS_IO_CANCEL;
		}
		if (io->t == ESCPOS_USB) {
			rc = usb_result(libusb_bulk_transfer(io->usb, io->ep_out, (uint8_t *)p,
			                                     (int)k, &done,
			                                     (unsigned)io->timeout_ms),
			                "write", why, whylen);
			k = (size_t)done;
		} else {
			rc = fd_write(io, p, k, cancel, why, whylen);
		}
		if (rc != ESCPOS_IO_OK) {
			io->partial = p > start;
			return rc;
		}
		p += k;
		n -= k;
	}
	return ESCPOS_IO_OK;
}

/* Bytes the printer sent that nobody asked for (an old answer that came
 * late): drop them so they are not taken for the next answer. */
static void fd_drain(struct escpos_io *io)
{
	uint8_t junk[256];
	while (read(io->fd, junk, sizeof(junk)) > 0)
		;
}

/* One answer byte.  A USB IN transfer must take a whole packet. */
static int read_byte(struct escpos_io *io, uint8_t *b, char *why, size_t whylen)
{
	uint8_t buf[64];
	int rc, got = 0;

	if (io->t == ESCPOS_USB) {
		if (!io->ep_in) {
			snprintf(why, whylen, "the USB printer has no bulk IN endpoint for status");
			return ESCPOS_IO_GARBAGE;
		}
		rc = usb_result(libusb_bulk_transfer(io->usb, io->ep_in, buf, sizeof(buf), &got,
		                                     (unsigned)io->timeout_ms),
		                "status read", why, whylen);
		if (rc == ESCPOS_IO_TIMEOUT)
			snprintf(why, whylen,
			         "the printer did not answer a status query within %d ms",
			         io->timeout_ms);
		if (rc != ESCPOS_IO_OK)
			return rc;
	} else {
		ssize_t n;
		if ((rc = fd_wait(io, POLLIN, io->timeout_ms, why, whylen)) != ESCPOS_IO_OK)
			return rc;
		n = read(io->fd, buf, 1);
		if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) {
			snprintf(why, whylen, "read: %s", n < 0 ? strerror(errno) : "closed");
			return ESCPOS_IO_LOST;
		}
		got = n > 0 ? (int)n : 0;
	}
	if (got < 1) {
		snprintf(why, whylen, "the printer sent an empty status answer");
		return ESCPOS_IO_GARBAGE;
	}
	*b = buf[0];
	return ESCPOS_IO_OK;
}

int escpos_io_status(struct escpos_io *io, struct escpos_status *st, char *why, size_t whylen)
{
	uint8_t r[ESCPOS_STATUS_QUERIES];

	if (io->t != ESCPOS_USB)
		fd_drain(io);
	for (int n = 1; n <= ESCPOS_STATUS_QUERIES; n++) {
		const uint8_t q[3] = {0x10, 0x04, (uint8_t)n}; /* DLE EOT n */
		int rc = escpos_io_write(io, q, sizeof(q), NULL, why, whylen);
		if (rc == ESCPOS_IO_OK)
			rc = read_byte(io, &r[n - 1], why, whylen);
		if (rc != ESCPOS_IO_OK)
			return rc;
	}
	if (escpos_status_parse(r, sizeof(r), st) < 0) {
		snprintf(why, whylen,
		         "the printer's status answer %02x %02x %02x %02x is not ESC/POS status",
		         r[0], r[1], r[2], r[3]);
		return ESCPOS_IO_GARBAGE;
	}
	return ESCPOS_IO_OK;
}
