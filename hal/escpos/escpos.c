/*
 * escpos.c -- the ESC/POS receipt printer plugin: descriptor, options,
 * lifecycle, and the jobs that talk to the printer.
 *
 * At most one job runs per printer, on the host's worker pool: a status
 * poll (DLE EOT 1..4) every poll_ms, or a print (render, fresh status,
 * refuse or send, status again).  A print that arrives while a poll runs
 * waits for it.  Jobs never chain from their done() callback: the next one
 * starts from a 0 ms timer, so the core sees the device without jobs in
 * between and can close it there.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escpos.h"

static const struct kiosk_option options[] = {
        {"transport", KIOSK_OPT_STRING, "tcp", 0, 0, "tcp, usb or chardev"},
        {"host", KIOSK_OPT_STRING, NULL, 0, 0, "tcp: the printer's IP address"},
        {"port", KIOSK_OPT_INT, "9100", 1, 65535, "tcp: the raw print port"},
        {"device", KIOSK_OPT_STRING, NULL, 0, 0, "chardev: /dev/usb/lp0, /dev/ttyUSB0, ..."},
        {"baud", KIOSK_OPT_INT, "9600", 1200, 115200, "chardev: serial speed, when a tty"},
        {"usb_id", KIOSK_OPT_STRING, "04b8:0202", 0, 0,
         "usb: vendor:product in hex (04b8:0202), or vendor alone for any of its products"},
        {"usb_serial", KIOSK_OPT_STRING, NULL, 0, 0, "usb: the printer's serial number"},
        {"width", KIOSK_OPT_INT, "48", 16, 255, "characters per line (80 mm: 48, 58 mm: 32)"},
        {"dots", KIOSK_OPT_INT, "576", 8, 4096, "printable dots per line (80 mm: 576, 58 mm: 384)"},
        {"qr_ec", KIOSK_OPT_STRING, "M", 0, 0, "QR error correction: L, M, Q or H"},
        {"gb18030_4byte", KIOSK_OPT_BOOL, "false", 0, 0,
         "the font has GB18030 four-byte characters (most receipt fonts hold GBK only)"},
        {"status", KIOSK_OPT_BOOL, "true", 0, 0,
         "query DLE EOT status (false for printers that never answer)"},
        {"poll_ms", KIOSK_OPT_INT, "1000", 100, 600000, "status poll period"},
        {"timeout_ms", KIOSK_OPT_INT, "3000", 100, 60000, "connect, write and answer timeout"},
        {NULL, 0, NULL, 0, 0, NULL},
};

/* Receipt printers that speak ESC/POS over USB.  Printer-class interfaces
 * (7/1/2) or vendor bulk interfaces; pid 0 = any product of the vendor. */
static const struct kiosk_match match[] = {
        {"usb", 0x04b8, 0x0202, "Epson TM-T88/TM-T20/TM-T82 series (receipt, USB)"},
        {"usb", 0x04b8, 0x0e03, "Epson TM-T20"},
        {"usb", 0x04b8, 0x0e15, "Epson TM-T20II"},
        {"usb", 0x04b8, 0x0e28, "Epson TM-T20III"},
        {"usb", 0x04b8, 0x0e27, "Epson TM-T82III"},
        {"usb", 0x0519, 0x0001, "Star Micronics TSP100/TSP650 (ESC/POS mode)"},
        {"usb", 0x0416, 0x5011, "Winbond-based receipt printers (POS58, POS80 clones)"},
        {"usb", 0x0483, 0x5720, "STMicro-based receipt printers (Xprinter, Gprinter clones)"},
        {"usb", 0x0fe6, 0x811e, "ICS Advent-based 58/80 mm receipt printers"},
        {"usb", 0x1fc9, 0x2016, "Xprinter XP-58/XP-80 series"},
        {"usb", 0x28e9, 0x0289, "GD32-based 58/80 mm receipt printers (Gprinter, Xprinter)"},
        {"usb", 0x1504, 0x0006, "Bixolon/SNBC BTP series"},
        {"usb", 0x0dd4, 0x0205, "Custom VKP80 kiosk printer"},
        {"net", 0, 0, "any ESC/POS printer on raw TCP port 9100"},
        {"serial", 0, 0, "any ESC/POS printer on a serial port or /dev/usb/lp*"},
        {NULL, 0, 0, NULL},
};

enum job_kind { JOB_POLL, JOB_PRINT };

struct escpos;

struct job {
	struct escpos *p;
	enum job_kind kind;
	struct escpos_io io; /* a copy: the worker touches nothing of p */
	int status_on;
	json_t *blocks; /* print: owned by the job */
	struct escpos_doc_opts opts;
	struct escpos_image_src *images;
	size_t nimages;
	int cancel; /* set on the loop, read on the worker (atomic) */
	/* results */
	int rc, bad_doc, refused;
	char why[256];
	struct escpos_status before, after;
	int have_before, have_after;
	size_t bytes;
	int lines;
};

struct escpos {
	struct kiosk_dev *dev;
	const struct kiosk_host *host;
	struct escpos_io io;
	struct escpos_doc_opts opts;
	int poll_ms, status_on;
	const char *transport;
	struct escpos_status st;
	int have_st;
	struct job *job;       /* running */
	struct job *waiting;   /* a print waiting for the running poll */
	struct kiosk_req *req; /* the print request, waiting or running */
	struct kiosk_timer *kick;
	long long printed;
};

static void job_free(struct job *j)
{
	if (!j)
		return;
	json_decref(j->blocks);
	for (size_t i = 0; i < j->nimages; i++)
		free((void *)j->images[i].data);
	free(j->images);
	free(j);
}

/* --- worker side: touches only the job --- */

static int query(struct job *j, struct escpos_status *st, int *have)
{
	int rc = escpos_io_status(&j->io, st, j->why, sizeof(j->why));
	*have = rc == ESCPOS_IO_OK;
	return rc;
}

static void print_run(struct job *j)
{
	struct escpos_buf buf = {0};
	char why[256];

	if (escpos_render(j->blocks, &j->opts, &buf, &j->lines, why, sizeof(why)) < 0) {
		j->bad_doc = 1;
		snprintf(j->why, sizeof(j->why), "%s", why);
		escpos_buf_free(&buf);
		return;
	}
	if (j->status_on && (j->rc = query(j, &j->before, &j->have_before)) != ESCPOS_IO_OK)
		goto out;
	if (j->have_before && (j->before.paper_out || j->before.cover_open)) {
		j->refused = 1; /* nothing was sent */
		goto out;
	}
	if ((j->rc = escpos_io_write(&j->io, buf.data, buf.len, &j->cancel, j->why,
	                             sizeof(j->why))) != ESCPOS_IO_OK)
		goto out;
	j->bytes = buf.len;
	if (j->status_on)
		j->rc = query(j, &j->after, &j->have_after);
out:
	escpos_buf_free(&buf);
}

static void job_run(void *arg)
{
	struct job *j = arg;

	if ((j->rc = escpos_io_prepare(&j->io, j->why, sizeof(j->why))) != ESCPOS_IO_OK)
		return;
	if (j->kind == JOB_POLL)
		j->rc = query(j, &j->after, &j->have_after);
	else
		print_run(j);
}

/* --- loop side --- */

static void apply_status(struct escpos *p, const struct escpos_status *st)
{
	const char *ev[ESCPOS_MAX_EVENTS];
	struct escpos_status old = p->st;
	size_t n = escpos_status_events(&old, st, ev);

	p->st = *st;
	p->have_st = 1;
	for (size_t i = 0; i < n; i++) {
		p->host->log(p->dev, KIOSK_LOG_NOTICE, "%s", ev[i]);
		p->host->emit(p->dev, ev[i], json_object());
	}
}

static void kick_soon(struct escpos *p);

/* The refusal a print gets from the printer's state, or NULL. */
static const char *refusal(const struct escpos_status *st)
{
	return st->paper_out ? "paper out" : st->cover_open ? "cover open" : NULL;
}

static void finish_print(struct escpos *p, struct job *j)
{
	struct kiosk_req *req = p->req;
	const char *no;

	p->req = NULL;
	if (j->bad_doc) {
		p->host->fail(req, "bad_request", "%s", j->why);
	} else if (j->rc == ESCPOS_IO_CANCEL) {
		p->host->fail(req, "cancelled", "print cancelled");
	} else if (j->rc != ESCPOS_IO_OK) {
		p->host->fail(req, "device_offline", "%s", j->why);
	} else if (j->refused && (no = refusal(&j->before))) {
		p->host->fail(req, "device_offline", "%s", no);
	} else if (j->have_after && j->after.paper_out) {
		p->host->fail(req, "device_error",
		              "paper ran out during the print: the receipt may be incomplete");
	} else {
		p->printed++;
		p->host->emit(p->dev, "printed", json_pack("{s:i}", "lines", j->lines));
		p->host->reply(req, json_pack("{s:i,s:I}", "lines", j->lines, "bytes",
		                              (json_int_t)j->bytes));
	}
}

static void job_done(void *arg)
{
	struct job *j = arg;
	struct escpos *p = j->p;
	char reason[400];

	p->job = NULL;
	p->io.claimed = j->io.claimed;
	p->io.connected = j->io.connected;
	p->io.fd = j->io.fd; /* a looked-up host name's connection */
	if (j->have_before)
		apply_status(p, &j->before);
	if (j->have_after)
		apply_status(p, &j->after);
	if (j->kind == JOB_PRINT && p->req)
		finish_print(p, j);
	if (j->rc == ESCPOS_IO_CANCEL && j->io.partial) {
		/* the printer may sit inside a command (raster, QR data) that
		 * would swallow the next document: start it afresh */
		job_free(j);
		p->host->lost(p->dev, "print cancelled part-way: reconnecting");
		return;
	}
	if (j->rc != ESCPOS_IO_OK && j->rc != ESCPOS_IO_CANCEL) {
		snprintf(reason, sizeof(reason), "%s%s", j->why,
		         j->rc == ESCPOS_IO_LOST ? ""
		                                 : " (set status = false for a printer that never "
		                                   "answers DLE EOT)");
		job_free(j);
		/* the core closes the device once this job is done */
		p->host->lost(p->dev, reason);
		return;
	}
	job_free(j);
	if (p->waiting)
		kick_soon(p);
}

static int job_start(struct escpos *p, struct job *j)
{
	j->p = p;
	j->io = p->io;
	j->status_on = p->status_on;
	if (p->host->run_blocking(p->dev, job_run, job_done, j) < 0)
		return -1;
	p->job = j;
	return 0;
}

static void start_waiting(struct escpos *p)
{
	struct job *j = p->waiting;

	if (!j || p->job)
		return;
	p->waiting = NULL;
	if (job_start(p, j) < 0) {
		struct kiosk_req *req = p->req;
		p->req = NULL;
		job_free(j);
		p->host->fail(req, "internal", "the worker pool cannot take the print");
	}
}

static void on_kick(void *arg)
{
	struct escpos *p = arg;

	p->kick = NULL;
	start_waiting(p);
}

static void kick_soon(struct escpos *p)
{
	if (!p->kick)
		p->kick = p->host->timer_start(p->dev, 0, 0, on_kick, p);
}

static void on_poll(void *arg)
{
	struct escpos *p = arg;
	struct job *j;

	if (p->job || p->waiting || !(j = calloc(1, sizeof(*j))))
		return;
	j->kind = JOB_POLL;
	if (job_start(p, j) < 0)
		free(j);
}

/* Fetch every image block's blob on the loop: the renderer does no I/O. */
static int fetch_images(struct escpos *p, struct job *j, json_t *blocks, char *why, size_t whylen)
{
	size_t i, n = 0;
	json_t *b;

	j->images = calloc(json_array_size(blocks) + 1, sizeof(*j->images));
	if (!j->images) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	json_array_foreach(blocks, i, b)
	{
		const char *id = json_string_value(json_object_get(b, "image"));
		void *data;
		size_t len;
		if (!id)
			continue;
		if (p->host->blob_get(p->dev, id, &data, &len) < 0) {
			snprintf(why, whylen, "blocks[%zu]: image %.8s: no such blob", i, id);
			return -1;
		}
		snprintf(j->images[n].id, sizeof(j->images[n].id), "%s", id);
		j->images[n].data = data;
		j->images[n].len = len;
		j->nimages = ++n;
	}
	return 0;
}

static void do_print(struct escpos *p, struct kiosk_req *req, json_t *args)
{
	json_t *blocks = json_object_get(args, "blocks");
	const char *no = p->have_st ? refusal(&p->st) : NULL;
	struct job *j;
	char why[200];

	if (no) { /* known already: refused without a word to the printer */
		p->host->fail(req, "device_offline", "%s", no);
		return;
	}
	if (!(j = calloc(1, sizeof(*j)))) {
		p->host->fail(req, "internal", "out of memory");
		return;
	}
	j->kind = JOB_PRINT;
	j->opts = p->opts;
	if (fetch_images(p, j, blocks, why, sizeof(why)) < 0) {
		job_free(j);
		p->host->fail(req, "bad_request", "%s", why);
		return;
	}
	j->opts.images = j->images;
	j->opts.nimages = j->nimages;
	/* a deep copy: the worker must share no reference count with the loop */
	j->blocks = json_deep_copy(blocks);
	p->req = req;
	p->waiting = j;
	start_waiting(p);
}

/* Kept from init() or open(): command() and friends get no host table. */
static const struct kiosk_host *host;

static void escpos_command(struct kiosk_dev *dev, struct kiosk_req *req, const char *verb,
                           json_t *args)
{
	struct escpos *p = host->priv(dev);

	/* the core answers printer.status itself, from status() */
	if (strcmp(verb, "print") == 0)
		do_print(p, req, args);
	else
		host->fail(req, "unknown_command", "printer.%s is not supported by escpos", verb);
}

static void escpos_cancel(struct kiosk_dev *dev, struct kiosk_req *req)
{
	struct escpos *p = host->priv(dev);

	if (!p || req != p->req)
		return;
	if (p->waiting) { /* not started: nothing reached the printer */
		job_free(p->waiting);
		p->waiting = NULL;
		p->req = NULL;
		host->fail(req, "cancelled", "print cancelled");
	} else if (p->job && p->job->kind == JOB_PRINT) {
		__atomic_store_n(&p->job->cancel, 1, __ATOMIC_RELAXED);
	}
}

static json_t *escpos_status_json(struct kiosk_dev *dev)
{
	struct escpos *p = host->priv(dev);
	const struct escpos_status *st = &p->st;
	int known = p->have_st;

	return json_pack("{s:s,s:s,s:s,s:b,s:o,s:b,s:I,s:i,s:i}", "transport", p->transport,
	                 "paper", known ? escpos_paper_state(st) : "unknown", "cover",
	                 !known           ? "unknown"
	                 : st->cover_open ? "open"
	                                  : "closed",
	                 "jammed", known && st->cutter_error, "error",
	                 !known              ? json_null()
	                 : st->unrecoverable ? json_string("unrecoverable")
	                 : st->recoverable   ? json_string("recoverable")
	                                     : json_null(),
	                 "online", known && !st->offline, "printed_jobs", (json_int_t)p->printed,
	                 "width", p->opts.width, "dots", p->opts.dots);
}

static int escpos_init(const struct kiosk_host *h)
{
	host = h;
	return 0;
}

static long opt_int(struct kiosk_dev *dev, const char *key)
{
	const char *v = host->config(dev, key);
	return v ? strtol(v, NULL, 10) : 0;
}

static int opt_bool(struct kiosk_dev *dev, const char *key)
{
	const char *v = host->config(dev, key);
	return v && (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "1") == 0 ||
	             strcmp(v, "on") == 0);
}

static int parse_qr_ec(const char *v, enum escpos_qr_ec *ec)
{
	const char *const names = "LMQH";

	if (!v || strlen(v) != 1 || !strchr(names, v[0]))
		return -1;
	*ec = (enum escpos_qr_ec)(strchr(names, v[0]) - names);
	return 0;
}

/* "04b8:0202" or "04b8" (any product of the vendor). */
static int parse_usb_id(const char *v, uint16_t *vid, uint16_t *pid)
{
	unsigned a, b = 0;
	int n = 0;

	if (!v ||
	    (sscanf(v, "%4x:%4x%n", &a, &b, &n) != 2 && (n = 0, sscanf(v, "%4x%n", &a, &n) != 1)) ||
	    v[n] != '\0' || a == 0)
		return -1;
	*vid = (uint16_t)a;
	*pid = (uint16_t)b;
	return 0;
}

static int open_usb(struct escpos *p, char *why, size_t whylen)
{
	const char *id = host->config(p->dev, "usb_id");
	uint16_t vid, pid;

	if (parse_usb_id(id, &vid, &pid) < 0) {
		snprintf(why, whylen, "usb_id '%s': want vendor:product in hex, like 04b8:0202",
		         id ? id : "");
		return -1;
	}
	if (host->struct_size < offsetof(struct kiosk_host, usb_close) + sizeof(host->usb_close) ||
	    host->abi_minor < 1) {
		snprintf(why, whylen, "this kioskd has no USB services (HAL ABI 1.1)");
		return -1;
	}
	p->io.usb =
	        host->usb_open(p->dev, vid, pid, host->config(p->dev, "usb_serial"), why, whylen);
	if (!p->io.usb)
		return -1;
	if (escpos_io_usb_endpoints(&p->io, why, whylen) < 0) {
		host->usb_close(p->dev, p->io.usb);
		p->io.usb = NULL;
		return -1;
	}
	return 0;
}

static int open_transport(struct escpos *p, char *why, size_t whylen)
{
	const char *t = host->config(p->dev, "transport");
	const char *h = host->config(p->dev, "host"), *d = host->config(p->dev, "device");

	p->transport = t && strcmp(t, "usb") == 0       ? "usb"
	               : t && strcmp(t, "chardev") == 0 ? "chardev"
	               : t && strcmp(t, "tcp") == 0     ? "tcp"
	                                                : NULL;
	if (!p->transport) {
		snprintf(why, whylen, "transport '%s': must be tcp, usb or chardev", t ? t : "");
		return -1;
	}
	p->io.fd = -1;
	p->io.timeout_ms = (int)opt_int(p->dev, "timeout_ms");
	if (strcmp(p->transport, "usb") == 0) {
		p->io.t = ESCPOS_USB;
		return open_usb(p, why, whylen);
	}
	p->io.t = strcmp(p->transport, "tcp") == 0 ? ESCPOS_TCP : ESCPOS_CHARDEV;
	if (p->io.t == ESCPOS_TCP && !h) {
		snprintf(why, whylen, "transport tcp needs 'host'");
		return -1;
	}
	if (p->io.t == ESCPOS_CHARDEV && !d) {
		snprintf(why, whylen, "transport chardev needs 'device'");
		return -1;
	}
	return escpos_io_start_fd(&p->io, h, (int)opt_int(p->dev, "port"), d,
	                          (int)opt_int(p->dev, "baud"), why, whylen);
}

static int escpos_open(struct kiosk_dev *dev, const struct kiosk_host *h, char *why, size_t whylen)
{
	struct escpos *p;

	host = h;
	if (!(p = calloc(1, sizeof(*p)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	p->dev = dev;
	p->host = h;
	p->opts.width = (int)opt_int(dev, "width");
	p->opts.dots = (int)opt_int(dev, "dots");
	p->opts.allow_4byte = opt_bool(dev, "gb18030_4byte");
	p->status_on = opt_bool(dev, "status");
	p->poll_ms = (int)opt_int(dev, "poll_ms");
	if (parse_qr_ec(h->config(dev, "qr_ec"), &p->opts.qr_ec) < 0) {
		snprintf(why, whylen, "qr_ec '%s': must be L, M, Q or H", h->config(dev, "qr_ec"));
		free(p);
		return -1;
	}
	if (open_transport(p, why, whylen) < 0) {
		free(p);
		return -1;
	}
	h->set_priv(dev, p);
	if (p->status_on) {
		h->timer_start(dev, (uint32_t)p->poll_ms, 1, on_poll, p);
		h->timer_start(dev, 0, 0, on_poll, p); /* the first status now */
	}
	h->log(dev, KIOSK_LOG_INFO, "ESC/POS printer on %s", p->transport);
	return 0;
}

/* The core calls this only once no job runs (jobs hold the handle). */
static void escpos_close(struct kiosk_dev *dev)
{
	struct escpos *p = host->priv(dev);

	if (!p)
		return;
	job_free(p->waiting);
	if (p->io.usb)
		host->usb_close(dev, p->io.usb);
	escpos_io_close_fd(&p->io);
	free(p);
	host->set_priv(dev, NULL);
}

KIOSK_EXPORT const struct kiosk_plugin kiosk_hal_plugin = {
        .magic = KIOSK_HAL_MAGIC,
        .abi_major = KIOSK_HAL_ABI_MAJOR,
        .abi_minor = KIOSK_HAL_ABI_MINOR,
        .struct_size = sizeof(struct kiosk_plugin),
        .name = "escpos",
        .version = "1.0.0",
        .description = "ESC/POS receipt printers over TCP 9100, USB or a character device",
        .classes = KIOSK_CLASS_PRINTER,
        .match = match,
        .options = options,
        .init = escpos_init,
        .open = escpos_open,
        .close = escpos_close,
        .command = escpos_command,
        .cancel = escpos_cancel,
        .status = escpos_status_json,
};
