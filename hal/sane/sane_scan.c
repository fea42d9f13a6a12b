/*
 * sane_scan.c -- scanner.scan as a chain of worker jobs:
 *
 *   setup -> start -> read ... read -> (next page: start ...) -> end
 *
 * Each job does one blocking step; its done() runs on the loop, checks for
 * cancel, sends progress and submits the next.  A read job returns after
 * READ_CHUNK bytes so progress keeps coming on a big page.  `end` always
 * runs sane_cancel(), which SANE wants after the last page and after any
 * failure, before the request is answered: the next command finds the
 * scanner idle.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sane_plugin.h"

#define READ_CHUNK (256 * 1024)

static void end(struct sctx *c, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void next_page(struct sctx *c);

/* --- jobs (worker threads: touch only c->h, c->scan, c->buf, c->err) --- */

static void job_setup(void *arg)
{
	struct sctx *c = arg;

	sdev_setup(c->h, c->scan.source, c->scan.mode, &c->scan.res, &c->kvs, &c->err);
}

static int page_shape(struct scan *s, int level, struct sdev_err *err)
{
	const SANE_Parameters *p = &s->p;
	int channels = p->format == SANE_FRAME_RGB ? 3 : p->format == SANE_FRAME_GRAY ? 1 : 0;

	err->code = "device_error";
	if (!channels)
		snprintf(err->why, sizeof(err->why),
		         "three-pass colour scanners are not supported");
	else if (p->lines <= 0)
		snprintf(err->why, sizeof(err->why),
		         "scanners that do not know the page length are not supported");
	else if (!(s->png = sane_png_new((uint32_t)p->pixels_per_line, (uint32_t)p->lines, channels,
	                                 p->depth, s->res, level, err->why, sizeof(err->why))))
		;
	else if ((size_t)p->bytes_per_line < sane_png_row_bytes(s->png))
		snprintf(err->why, sizeof(err->why),
		         "the scanner sends %d bytes for a %d-pixel line", p->bytes_per_line,
		         p->pixels_per_line);
	else if (!(s->line = malloc((size_t)p->bytes_per_line)))
		snprintf(err->why, sizeof(err->why), "out of memory");
	else
		return err->code = NULL, 0;
	return -1;
}

static void job_start(void *arg)
{
	struct sctx *c = arg;
	struct scan *s = &c->scan;

	s->st = sdev_start(c->h, &s->p);
	if (s->st == SANE_STATUS_GOOD && page_shape(s, c->level, &c->err) == 0)
		s->size = (size_t)s->p.bytes_per_line * (size_t)s->p.lines;
}

static int put_row(struct scan *s, const uint8_t *row, struct sdev_err *err)
{
	if (s->rows >= (uint32_t)s->p.lines)
		return 0; /* more than announced: the backend's padding, dropped */
	s->rows++;
	if (sane_png_row(s->png, row, err->why, sizeof(err->why)) == 0)
		return 0;
	err->code = "device_error";
	return -1;
}

/* Whole lines go straight to the encoder; a line split over two reads
 * is put together in s->line first. */
static int feed(struct scan *s, const uint8_t *d, size_t n, struct sdev_err *err)
{
	size_t bpl = (size_t)s->p.bytes_per_line;

	s->got += n;
	while (n) {
		if (s->have == 0 && n >= bpl) {
			if (put_row(s, d, err) < 0)
				return -1;
			d += bpl, n -= bpl;
			continue;
		}
		size_t k = bpl - s->have < n ? bpl - s->have : n;
		memcpy(s->line + s->have, d, k);
		s->have += k, d += k, n -= k;
		if (s->have == bpl) {
			s->have = 0;
			if (put_row(s, s->line, err) < 0)
				return -1;
		}
	}
	return 0;
}

static void job_read(void *arg)
{
	struct sctx *c = arg;
	struct scan *s = &c->scan;
	size_t chunk = 0;
	SANE_Int len;

	while (chunk < READ_CHUNK) {
		len = 0;
		s->st = sdev_read(c->h, c->buf, SANE_READ_BUF, &len);
		if (s->st == SANE_STATUS_EOF) {
			s->eof = 1;
			if (sane_png_finish(s->png, &s->out, &s->outlen, c->err.why,
			                    sizeof(c->err.why)) < 0)
				c->err.code = "device_error";
			return;
		}
		if (s->st != SANE_STATUS_GOOD)
			return;
		if (len > 0 && feed(s, c->buf, (size_t)len, &c->err) < 0)
			return;
		chunk += (size_t)len;
	}
}

/* Backends built on sanei_thread (the test backend and many real ones)
 * stop their reader thread with asynchronous cancellation.  A reader
 * cancelled inside malloc() leaves the allocator's lock held and every
 * thread of the daemon that allocates hangs (seen here: a fault returned
 * by the first sane_read(), cancelled while the reader was still
 * allocating its buffer).  After a read that ended early, give the reader
 * time to get past its start-up before cancelling it; a finished page's
 * reader has already ended.  Hosting libsane in a helper process would
 * remove the hazard altogether (hal/sane/README.md). */
#define READER_SETTLE_US 100000

static void job_end(void *arg)
{
	struct sctx *c = arg;
	SANE_Status st = c->scan.st;

	if (st != SANE_STATUS_GOOD && st != SANE_STATUS_EOF && st != SANE_STATUS_CANCELLED)
		usleep(READER_SETTLE_US);
	sdev_cancel(c->h);
}

/* --- the loop side --- */

static void page_free(struct scan *s)
{
	sane_png_free(s->png);
	free(s->line);
	free(s->out);
	s->png = NULL, s->line = NULL, s->out = NULL;
	s->have = s->got = s->size = s->outlen = 0;
	s->rows = 0;
	s->eof = s->pct = 0;
}

void sane_scan_reset(struct sctx *c)
{
	page_free(&c->scan);
	json_decref(c->scan.pages);
	c->scan.pages = NULL;
}

static void submit(struct sctx *c, kiosk_cb job, kiosk_cb done)
{
	c->err.code = NULL;
	if (c->host->run_blocking(c->dev, job, done, c) == 0)
		return;
	c->reading = 0;
	c->host->fail(c->req, "internal", "no worker thread for the scanner");
	c->req = NULL;
	sane_scan_reset(c);
}

static void done_end(void *arg)
{
	struct sctx *c = arg;
	struct kiosk_req *req = c->req;
	struct scan *s = &c->scan;

	c->req = NULL;
	if (s->code)
		c->host->fail(req, s->code, "%s", s->why);
	else
		c->host->reply(req, json_pack("{s:O}", "pages", s->pages));
	sane_scan_reset(c);
}

static void end(struct sctx *c, const char *code, const char *fmt, ...)
{
	struct scan *s = &c->scan;
	va_list ap;

	s->code = code;
	if (code) {
		va_start(ap, fmt);
		vsnprintf(s->why, sizeof(s->why), fmt, ap);
		va_end(ap);
	}
	submit(c, job_end, done_end);
}

/* SANE's domain words, as the scanner class says them (docs/protocol.md). */
static void end_status(struct sctx *c, const char *step, SANE_Status st)
{
	struct scan *s = &c->scan;
	const char *code = "device_error", *msg = NULL;
	char after[64] = "";

	if (s->done > 0)
		snprintf(after, sizeof(after), " after %d of %d pages", s->done, s->want);
	switch (st) {
	case SANE_STATUS_JAMMED:
		msg = "jammed", c->fault = "jammed";
		break;
	case SANE_STATUS_NO_DOCS:
		msg = "no paper in feeder", c->fault = "no_paper";
		break;
	case SANE_STATUS_COVER_OPEN:
		code = "device_offline", msg = "cover open", c->fault = "cover_open";
		break;
	case SANE_STATUS_CANCELLED: /* a cancel button on the scanner */
		code = "cancelled", msg = "cancelled on the scanner";
		break;
	case SANE_STATUS_DEVICE_BUSY:
		code = "device_busy", msg = "the scanner is busy";
		break;
	default:
		end(c, "device_error", "%s: %s%s", step, sane_strstatus(st), after);
		return;
	}
	end(c, code, "%s%s", msg, after);
}

static int stop_if_cancelled(struct sctx *c)
{
	if (!c->host->cancelled(c->req))
		return 0;
	end(c, "cancelled", "scan cancelled");
	return 1;
}

static const char *page_mode(const SANE_Parameters *p)
{
	return p->format == SANE_FRAME_RGB ? "color" : p->depth == 1 ? "lineart" : "gray";
}

static void page_stored(struct sctx *c)
{
	struct scan *s = &c->scan;
	char id[KIOSK_BLOB_ID_SIZE];

	if (c->host->blob_put(c->dev, s->out, s->outlen, "image/png", id) < 0) {
		end(c, "storage_error", "the blob spool refused page %d", s->done + 1);
		return;
	}
	json_array_append_new(s->pages, json_pack("{s:s,s:s,s:i,s:i,s:i,s:s}", "blob", id, "mime",
	                                          "image/png", "width", s->p.pixels_per_line,
	                                          "height", s->p.lines, "resolution", s->res,
	                                          "mode", page_mode(&s->p)));
	s->done++;
	c->scanned++;
	c->host->progress(c->req, json_pack("{s:i,s:i}", "page", s->done, "pages", s->want));
	page_free(s);
	if (s->done < s->want) {
		next_page(c);
		return;
	}
	c->fault = NULL;
	end(c, NULL, NULL);
}

static void done_read(void *arg);

static void read_more(struct sctx *c)
{
	c->reading = 1;
	submit(c, job_read, done_read);
}

static void done_read(void *arg)
{
	struct sctx *c = arg;
	struct scan *s = &c->scan;
	int pct;

	c->reading = 0;
	if (stop_if_cancelled(c))
		return;
	if (c->err.code) {
		end(c, c->err.code, "%s", c->err.why);
		return;
	}
	if (s->eof) {
		page_stored(c);
		return;
	}
	if (s->st != SANE_STATUS_GOOD) {
		end_status(c, "sane_read", s->st);
		return;
	}
	pct = s->size ? (int)(s->got * 100 / s->size) : 0;
	if (pct >= s->pct + 10 && pct < 100) {
		s->pct = pct - pct % 10;
		c->host->progress(c->req, json_pack("{s:i,s:i,s:i}", "page", s->done + 1, "pages",
		                                    s->want, "percent", s->pct));
	}
	read_more(c);
}

static void done_start(void *arg)
{
	struct sctx *c = arg;
	struct scan *s = &c->scan;

	if (stop_if_cancelled(c))
		return;
	if (s->st != SANE_STATUS_GOOD)
		end_status(c, "sane_start", s->st);
	else if (c->err.code)
		end(c, c->err.code, "%s", c->err.why);
	else
		read_more(c);
}

static void next_page(struct sctx *c)
{
	submit(c, job_start, done_start);
}

static void done_setup(void *arg)
{
	struct sctx *c = arg;

	if (stop_if_cancelled(c))
		return;
	if (c->err.code)
		end(c, c->err.code, "%s", c->err.why);
	else
		next_page(c);
}

/* Static copies: args are freed when command() returns. */
static const char *word(json_t *args, const char *key, const char *const *words)
{
	json_t *v = json_object_get(args, key);

	for (size_t i = 1; v && words[i]; i++)
		if (!strcmp(json_string_value(v), words[i]))
			return words[i];
	return words[0];
}

void sane_scan_begin(struct sctx *c, struct kiosk_req *req, json_t *args)
{
	static const char *const modes[] = {"color", "color", "gray", "lineart", NULL};
	static const char *const sources[] = {"flatbed", "flatbed", "adf", NULL};
	struct scan *s = &c->scan;
	json_t *v;

	sane_scan_reset(c);
	memset(s, 0, sizeof(*s));
	s->mode = word(args, "mode", modes);
	s->source = word(args, "source", sources);
	s->res = (v = json_object_get(args, "resolution")) ? (int)json_integer_value(v) : 150;
	s->want = (v = json_object_get(args, "pages")) ? (int)json_integer_value(v) : 1;
	if (!strcmp(s->source, "flatbed") && s->want > 1) {
		c->host->fail(req, "bad_request", "the flatbed scans one page; use source adf");
		return;
	}
	if (!(s->pages = json_array())) {
		c->host->fail(req, "internal", "out of memory");
		return;
	}
	c->req = req;
	submit(c, job_setup, done_setup);
}

void sane_scan_cancel(struct sctx *c)
{
	/* SANE allows sane_cancel() at any time; the job's sane_read() then
	 * returns soon (the loop still sees host->cancelled() in done) */
	if (c->reading && c->h)
		sane_cancel(c->h);
}
