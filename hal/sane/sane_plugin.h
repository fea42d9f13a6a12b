/*
 * sane_plugin.h -- one scanner device of the sane plugin, on the loop.
 *
 * All of it is touched on the loop thread only, except what a job
 * function fills in while it runs (the job's inputs and outputs); one job
 * at a time per device, so nothing is shared with another thread at once.
 */
#ifndef KIOSK_SANE_PLUGIN_H
#define KIOSK_SANE_PLUGIN_H

#include <kiosk/hal.h>
#include <sane/sane.h>

#include "sane_dev.h"
#include "sane_opts.h"
#include "sane_png.h"

#define SANE_READ_BUF (64 * 1024)

/* The running scanner.scan. */
struct scan {
	/* what was asked */
	const char *mode, *source;
	int res, want;
	/* pages done */
	json_t *pages;
	int done;
	/* the page being read */
	SANE_Parameters p;
	struct sane_png *png;
	uint8_t *line;    /* a scan line split over two sane_read()s */
	size_t have;      /* bytes of it */
	uint32_t rows;    /* lines encoded */
	size_t got, size; /* page bytes read, expected */
	int pct;          /* last percentage sent */
	int eof;
	uint8_t *out; /* the finished PNG */
	size_t outlen;
	SANE_Status st;
	/* how it ends: NULL code = success */
	const char *code;
	char why[300];
};

struct sctx {
	struct kiosk_dev *dev;
	const struct kiosk_host *host;
	SANE_Handle h;
	char want[128]; /* the configured device name, "" = the first found */
	char name[128]; /* the SANE device opened */
	json_t *info;   /* device list and capabilities, from the connect job */
	struct sane_kvs kvs;
	int level;
	int connected;
	int reading; /* the job in flight is in sane_read(): cancel may interrupt it */
	struct kiosk_req *req;
	json_t *args; /* a scan that came before the connect job finished */
	struct scan scan;
	struct sdev_err err; /* the last job's failure */
	uint8_t buf[SANE_READ_BUF];
	const char *fault; /* the last scan's fault, machine-readable */
	long long scanned;
};

void sane_scan_begin(struct sctx *c, struct kiosk_req *req, json_t *args);
void sane_scan_cancel(struct sctx *c);
/* Free what a scan holds (the device is closing). */
void sane_scan_reset(struct sctx *c);

#endif
