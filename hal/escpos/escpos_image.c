/*
 * escpos_image.c -- an image blob as raster bit images (GS v 0).  Blobs
 * are PNG (camera.capture and scanner.scan make PNG); anything else is
 * refused.  The image is scaled down (nearest pixel) to the printable
 * width, turned to gray and thresholded at half intensity, and sent in
 * bands of at most BAND rows: many printers' receive buffers hold less
 * than one tall raster command.
 */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escpos.h"

#define BAND       256
#define MAX_PIXELS (4096u * 4096u) /* larger images are refused, not decoded */

static void put_band(struct escpos_buf *out, const uint8_t *gray, uint32_t w, uint32_t h,
                     uint32_t src_w, uint32_t src_h, uint32_t y0, uint32_t rows)
{
	uint32_t bytes = (w + 7) / 8;

	escpos_buf_cmd(out, 8, 0x1d, 'v', '0', 0, bytes & 0xff, bytes >> 8, rows & 0xff, rows >> 8);
	for (uint32_t y = y0; y < y0 + rows; y++) {
		const uint8_t *row = gray + (size_t)(y * src_h / h) * src_w;
		for (uint32_t bx = 0; bx < bytes; bx++) {
			uint8_t v = 0;
			for (uint32_t i = 0; i < 8; i++) {
				uint32_t x = bx * 8 + i;
				if (x < w && row[x * src_w / w] < 128)
					v |= (uint8_t)(0x80 >> i);
			}
			escpos_buf_byte(out, v);
		}
	}
}

int escpos_image(struct escpos_buf *out, const uint8_t *data, size_t len, int max_dots, char *why,
                 size_t whylen)
{
	png_image img;
	uint8_t *gray;
	uint32_t w, h;

	memset(&img, 0, sizeof(img));
	img.version = PNG_IMAGE_VERSION;
	if (len < 8 || png_sig_cmp((png_const_bytep)data, 0, 8) != 0) {
		snprintf(why, whylen, "image: the blob is not a PNG image");
		return -1;
	}
	if (!png_image_begin_read_from_memory(&img, data, len)) {
		snprintf(why, whylen, "image: not a readable PNG: %s", img.message);
		png_image_free(&img);
		return -1;
	}
	if (img.width == 0 || img.height == 0 || (uint64_t)img.width * img.height > MAX_PIXELS) {
		snprintf(why, whylen, "image: %ux%u pixels is too large (at most %u pixels)",
		         img.width, img.height, MAX_PIXELS);
		png_image_free(&img);
		return -1;
	}
	/* composited on white: a transparent logo prints as its shape */
	img.format = PNG_FORMAT_GRAY;
	png_color white = {255, 255, 255};
	if (!(gray = malloc(PNG_IMAGE_SIZE(img)))) {
		png_image_free(&img);
		out->oom = 1;
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (!png_image_finish_read(&img, &white, gray, 0, NULL)) {
		snprintf(why, whylen, "image: not a readable PNG: %s", img.message);
		free(gray);
		png_image_free(&img);
		return -1;
	}
	w = img.width;
	h = img.height;
	if (max_dots > 0 && w > (uint32_t)max_dots) {
		h = (uint32_t)((uint64_t)h * (uint32_t)max_dots / w);
		w = (uint32_t)max_dots;
		if (h == 0)
			h = 1;
	}
	for (uint32_t y = 0; y < h; y += BAND)
		put_band(out, gray, w, h, img.width, img.height, y, h - y < BAND ? h - y : BAND);
	free(gray);
	png_image_free(&img);
	return 0;
}
