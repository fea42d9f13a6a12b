/*
 * sim_render.c -- encode a synthetic image on the host's worker pool.
 *
 * A 1200 dpi colour page is ~6 MB of pixels: encoding it on the loop
 * would stall every other device, which is exactly what real plugins
 * must avoid too.  The job touches only the image; the result comes back
 * on the loop thread, where the request may have ended meanwhile
 * (cancel, unplug): then the image is just freed.
 */
#include <stdlib.h>

#include "sim.h"

static void image_row(uint8_t *row, uint32_t y, const void *ctx)
{
	const struct sim_image *img = ctx;
	uint8_t rgb[3] = {0, 0, 0};

	for (uint32_t x = 0; x < img->width; x++) {
		if (!img->dark)
			img->pixel(img, x, y, rgb);
		if (img->channels == 3) {
			row[3 * x] = rgb[0];
			row[3 * x + 1] = rgb[1];
			row[3 * x + 2] = rgb[2];
			continue;
		}
		/* ITU-R BT.601 luma */
		row[x] = (uint8_t)((rgb[0] * 299 + rgb[1] * 587 + rgb[2] * 114) / 1000);
		if (img->threshold)
			row[x] = row[x] < 128 ? 0 : 255;
	}
}

static void render_job(void *arg)
{
	struct sim_image *img = arg;

	if (sim_png_encode(img->width, img->height, img->channels, image_row, img, &img->png,
	                   &img->len) < 0)
		img->png = NULL;
}

static void render_done(void *arg)
{
	struct sim_image *img = arg;
	struct sim *s = img->s;

	if (!img->abandoned) {
		s->job = NULL;
		if (img->png)
			img->done(s, img);
		else
			sim_fail(s, "device_error", "out of memory for a %ux%u image", img->width,
			         img->height);
	}
	free(img->png);
	free(img);
}

void sim_render(struct sim *s, struct sim_image *img)
{
	img->s = s;
	sim_render_abandon(s);
	s->job = img;
	if (s->host->run_blocking(s->dev, render_job, render_done, img) < 0) {
		/* The pool is full: do it here rather than fail the command. */
		render_job(img);
		render_done(img);
	}
}

void sim_render_abandon(struct sim *s)
{
	if (s->job)
		s->job->abandoned = 1;
	s->job = NULL;
}
