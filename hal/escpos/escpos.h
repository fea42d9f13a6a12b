/*
 * escpos.h -- private to the ESC/POS receipt printer plugin.
 *
 * The plugin is split so that the parts a test can drive without a daemon
 * stay pure (no host calls, no I/O): the byte buffer, the document renderer
 * (escpos_render.c, escpos_text.c, escpos_image.c) and the status parser
 * (escpos_status.c) are linked directly by the unit tests, the fuzz targets
 * and the benchmark.  escpos_io.c is the transports, run on worker threads;
 * escpos.c is the plugin itself, on the loop thread.
 */
#ifndef KIOSK_ESCPOS_H
#define KIOSK_ESCPOS_H

#include <stddef.h>
#include <stdint.h>

#include "kiosk/hal.h"

/* --- escpos_buf.c: a growable byte buffer; oom sticks once set --- */
struct escpos_buf {
	uint8_t *data;
	size_t len, cap;
	int oom;
};
void escpos_buf_put(struct escpos_buf *b, const void *p, size_t n);
void escpos_buf_byte(struct escpos_buf *b, uint8_t c);
/* Up to 8 bytes given as ints, for commands: escpos_buf_cmd(b, 3, 0x1b, 0x61, 1). */
void escpos_buf_cmd(struct escpos_buf *b, int n, ...);
void escpos_buf_free(struct escpos_buf *b);

/* --- escpos_render.c: the printer class's document model to ESC/POS --- */
enum escpos_qr_ec { ESCPOS_QR_L, ESCPOS_QR_M, ESCPOS_QR_Q, ESCPOS_QR_H };

/* An image block's blob, fetched by the caller (the renderer does no I/O). */
struct escpos_image_src {
	char id[KIOSK_BLOB_ID_SIZE];
	const uint8_t *data;
	size_t len;
};

struct escpos_doc_opts {
	int width;               /* characters per line (font A) */
	int dots;                /* printable dots per line, for images */
	enum escpos_qr_ec qr_ec; /* QR error correction */
	int allow_4byte;         /* the font has GB18030 four-byte characters */
	const struct escpos_image_src *images;
	size_t nimages;
};

/* Render blocks (the printer.print "blocks" array) into out, appending.
 * 0 with *lines (paper lines, as the simulator counts them), or -1 with why
 * when the document cannot be printed as asked (a bad_request) or memory
 * ran out (out->oom set). */
int escpos_render(const json_t *blocks, const struct escpos_doc_opts *o, struct escpos_buf *out,
                  int *lines, char *why, size_t whylen);

/* QR byte-mode capacity of the largest symbol (version 40) at level ec. */
size_t escpos_qr_capacity(enum escpos_qr_ec ec);

/* --- escpos_text.c: one text block, wrapped, encoded, in Chinese mode --- */
/* cd is an iconv_open("GB18030", "UTF-8") descriptor. */
int escpos_text(struct escpos_buf *out, void *cd, const char *text, int cols, int allow_4byte,
                int *lines, char *why, size_t whylen);

/* --- escpos_image.c: PNG bytes to a 1-bit raster (GS v 0) --- */
/* Append the image as raster bands, scaled down to at most max_dots wide.
 * 0, or -1 with why (not a PNG, too large, out of memory). */
int escpos_image(struct escpos_buf *out, const uint8_t *png, size_t len, int max_dots, char *why,
                 size_t whylen);

/* --- escpos_status.c: DLE EOT answers --- */
struct escpos_status {
	int offline;       /* n=1 bit 3 */
	int cover_open;    /* n=2 bit 2 */
	int paper_low;     /* n=4 bits 2-3: roll near end */
	int paper_out;     /* n=4 bits 5-6, or n=2 bit 5: printing stopped, paper end */
	int cutter_error;  /* n=3 bit 3 */
	int unrecoverable; /* n=3 bit 5 */
	int recoverable;   /* n=3 bit 6: auto-recoverable (head temperature...) */
};
#define ESCPOS_STATUS_QUERIES 4
/* The answers to DLE EOT 1..4, one byte each, in order.  0, or -1 when
 * a byte is not a status byte (its fixed bits are wrong). */
int escpos_status_parse(const uint8_t *r, size_t n, struct escpos_status *st);
const char *escpos_paper_state(const struct escpos_status *st);
/* The printer events (without "printer.") going from old to new, in the
 * order to publish them; at most ESCPOS_MAX_EVENTS. */
#define ESCPOS_MAX_EVENTS 4
size_t escpos_status_events(const struct escpos_status *old, const struct escpos_status *now,
                            const char *ev[ESCPOS_MAX_EVENTS]);

/* --- escpos_io.c: transports; everything but setup runs on a worker --- */
enum escpos_transport { ESCPOS_TCP, ESCPOS_USB, ESCPOS_CHARDEV };

struct escpos_io {
	enum escpos_transport t;
	int fd; /* tcp, chardev */
	struct libusb_device_handle *usb;
	int iface;
	uint8_t ep_out, ep_in;
	int claimed;
	int connected;  /* tcp: a job connected fd */
	char name[256]; /* tcp: the host, looked up by the first job */
	int port;
	int partial; /* the last write stopped part-way through */
	int timeout_ms;
};

/* I/O results, negative: the device is gone or does not answer. */
#define ESCPOS_IO_OK      0
#define ESCPOS_IO_LOST    (-1)
#define ESCPOS_IO_TIMEOUT (-2)
#define ESCPOS_IO_GARBAGE (-3)
#define ESCPOS_IO_CANCEL  (-4)

/* Loop thread: start the connection (tcp: non-blocking connect; chardev:
 * open and make raw).  0, or -1 with why. */
int escpos_io_start_fd(struct escpos_io *io, const char *host, int port, const char *device,
                       int baud, char *why, size_t whylen);
/* Loop thread: find the printer interface's bulk endpoints (no transfer). */
int escpos_io_usb_endpoints(struct escpos_io *io, char *why, size_t whylen);
/* Worker: finish the connection (tcp connect, usb claim). */
int escpos_io_prepare(struct escpos_io *io, char *why, size_t whylen);
int escpos_io_write(struct escpos_io *io, const uint8_t *p, size_t n, const int *cancel, char *why,
                    size_t whylen);
/* Ask DLE EOT 1..4 and parse the answers. */
int escpos_io_status(struct escpos_io *io, struct escpos_status *st, char *why, size_t whylen);
/* Loop thread. */
void escpos_io_close_fd(struct escpos_io *io);

#endif /* KIOSK_ESCPOS_H */
