/*
 * sane_png.c -- SANE scan lines to a PNG in memory with libpng.
 *
 * Lines are encoded as they arrive, so a page never exists uncompressed
 * in full.  The PNG matches what `scanimage --format=png` writes: the same
 * zlib level (libpng's default, 6, unless configured), libpng's default
 * filter choice, and a pHYs chunk with the resolution.
 *
 * libpng reports errors by longjmp(): every function that calls into it
 * sets its own jump point and keeps no non-volatile locals across it.
 */
#include "sane_png.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sane_png {
	png_structp png;
	png_infop info;
	uint32_t w, h, rows;
	int channels, depth;
	size_t row_bytes;
	uint8_t *scratch; /* one line, converted to PNG's conventions */
	/* the growing output */
	uint8_t *out;
	size_t len, cap;
	int nomem;
	char err[128];
};

static void on_error(png_structp png, png_const_charp msg)
{
	struct sane_png *p = png_get_error_ptr(png);

	snprintf(p->err, sizeof(p->err), "%s", msg);
	png_longjmp(png, 1);
}

/* libpng would print warnings on stderr; none of them matters here. */
static void on_warning(png_structp png, png_const_charp msg)
{
	(void)png, (void)msg;
}

static void on_write(png_structp png, png_bytep data, size_t n)
{
	struct sane_png *p = png_get_io_ptr(png);

	if (p->len + n > p->cap) {
		size_t cap = p->cap ? p->cap : 64 * 1024;
		uint8_t *q;
		while (cap < p->len + n)
			cap *= 2;
		if (!(q = realloc(p->out, cap))) {
			p->nomem = 1;
			png_error(png, "out of memory");
		}
		p->out = q;
		p->cap = cap;
	}
	memcpy(p->out + p->len, data, n);
	p->len += n;
}

static void on_flush(png_structp png)
{
	(void)png;
}

static int shape_ok(uint32_t w, uint32_t h, int channels, int depth, char *why, size_t whylen)
{
	if (w == 0 || h == 0 || w > 1000000 || h > 1000000)
		snprintf(why, whylen, "a %ux%u page cannot be a PNG", w, h);
	else if (channels != 1 && channels != 3)
		snprintf(why, whylen, "%d channels cannot be a PNG", channels);
	else if (depth != 1 && depth != 8 && depth != 16)
		snprintf(why, whylen, "depth %d cannot be a PNG", depth);
	else if (depth == 1 && channels == 3)
		snprintf(why, whylen, "1-bit colour cannot be a PNG");
	else
		return 0;
	return -1;
}

static int write_header(struct sane_png *p, int dpi, int level)
{
	/* pixels per metre, as scanimage writes it */
	png_uint_32 ppm = (png_uint_32)(dpi * 39.3700787401575 + 0.5);

	if (setjmp(png_jmpbuf(p->png)))
		return -1;
	png_set_write_fn(p->png, p, on_write, on_flush);
	png_set_compression_level(p->png, level);
	png_set_IHDR(p->png, p->info, p->w, p->h, p->depth,
	             p->channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
	             PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_BASE, PNG_FILTER_TYPE_BASE);
	png_set_pHYs(p->png, p->info, ppm, ppm, PNG_RESOLUTION_METER);
	png_write_info(p->png, p->info);
	return 0;
}

struct sane_png *sane_png_new(uint32_t w, uint32_t h, int channels, int depth, int dpi, int level,
                              char *why, size_t whylen)
{
	struct sane_png *p;

	if (shape_ok(w, h, channels, depth, why, whylen) < 0)
		return NULL;
	if (!(p = calloc(1, sizeof(*p)))) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	p->w = w, p->h = h, p->channels = channels, p->depth = depth;
	p->row_bytes = ((size_t)w * (size_t)channels * (size_t)depth + 7) / 8;
	p->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, p, on_error, on_warning);
	p->info = p->png ? png_create_info_struct(p->png) : NULL;
	p->scratch = malloc(p->row_bytes);
	if (!p->png || !p->info || !p->scratch) {
		snprintf(why, whylen, "out of memory");
		sane_png_free(p);
		return NULL;
	}
	if (write_header(p, dpi, level < 0 ? 0 : level > 9 ? 9 : level) < 0) {
		snprintf(why, whylen, "png: %s", p->err);
		sane_png_free(p);
		return NULL;
	}
	return p;
}

size_t sane_png_row_bytes(const struct sane_png *p)
{
	return p->row_bytes;
}

/* SANE: 1-bit lines say 1 for black, 16-bit samples are in host order.
 * PNG: 0 is black, samples are big-endian. */
static const uint8_t *to_png_line(struct sane_png *p, const uint8_t *row)
{
	static const union {
		uint16_t u;
		uint8_t b[2];
	} probe = {1};

	if (p->depth == 1) {
		for (size_t i = 0; i < p->row_bytes; i++)
			p->scratch[i] = (uint8_t)~row[i];
		return p->scratch;
	}
	if (p->depth == 16 && probe.b[0] == 1) {
		for (size_t i = 0; i + 1 < p->row_bytes; i += 2) {
			p->scratch[i] = row[i + 1];
			p->scratch[i + 1] = row[i];
		}
		return p->scratch;
	}
	return row;
}

static int write_line(struct sane_png *p, const uint8_t *line)
{
	if (setjmp(png_jmpbuf(p->png)))
		return -1;
	png_write_row(p->png, line);
	return 0;
}

int sane_png_row(struct sane_png *p, const uint8_t *row, char *why, size_t whylen)
{
	if (p->rows >= p->h) {
		snprintf(why, whylen, "more than %u lines", p->h);
		return -1;
	}
	if (write_line(p, to_png_line(p, row)) < 0) {
		snprintf(why, whylen, "png: %s", p->err);
		return -1;
	}
	p->rows++;
	return 0;
}

static int write_end(struct sane_png *p)
{
	if (setjmp(png_jmpbuf(p->png)))
		return -1;
	png_write_end(p->png, p->info);
	return 0;
}

int sane_png_finish(struct sane_png *p, uint8_t **png, size_t *len, char *why, size_t whylen)
{
	if (p->rows != p->h) {
		snprintf(why, whylen, "the page ended after %u of %u lines", p->rows, p->h);
		return -1;
	}
	if (write_end(p) < 0) {
		snprintf(why, whylen, "png: %s", p->err);
		return -1;
	}
	*png = p->out;
	*len = p->len;
	p->out = NULL;
	p->len = p->cap = 0;
	return 0;
}

void sane_png_free(struct sane_png *p)
{
	if (!p)
		return;
	if (p->png)
		png_destroy_write_struct(&p->png, p->info ? &p->info : NULL);
	free(p->scratch);
	free(p->out);
	free(p);
}
