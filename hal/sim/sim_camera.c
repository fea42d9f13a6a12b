/*
 * sim_camera.c -- a simulated still camera: each capture is an RGB
 * gradient whose blue level moves with the frame number, so consecutive
 * frames are different blobs.  A covered lens gives black frames, as a real
 * camera does; capturing still works.
 */
#include <stdio.h>
#include <stdlib.h>

#include "sim.h"

/* A real kiosk camera tops out well below the protocol's 8192 limit; a
 * cap also keeps one capture under ~50 MB of PNG. */
#define CAMERA_MAX 4096

struct camera {
	int covered;
	long long frames;
	uint32_t width, height; /* the running capture */
};

static struct camera *camera(struct sim *s)
{
	return s->priv;
}

static void gradient_pixel(const struct sim_image *img, uint32_t x, uint32_t y, uint8_t rgb[3])
{
	rgb[0] = (uint8_t)(x * 255 / img->width);
	rgb[1] = (uint8_t)(y * 255 / img->height);
	rgb[2] = (uint8_t)img->seed;
}

static void capture_done(struct sim *s, struct sim_image *img)
{
	char id[KIOSK_BLOB_ID_SIZE];

	if (sim_blob_put(s, img->png, img->len, "image/png", id) < 0)
		return;
	sim_reply(s, json_pack("{s:s,s:s,s:i,s:i}", "blob", id, "mime", "image/png", "width",
	                       (int)img->width, "height", (int)img->height));
}

static void capture_step(struct sim *s)
{
	struct camera *c = camera(s);
	struct sim_image *img;

	if (!(img = calloc(1, sizeof(*img)))) {
		sim_fail(s, "device_error", "out of memory");
		return;
	}
	img->width = c->width;
	img->height = c->height;
	img->channels = 3;
	img->dark = c->covered;
	img->seed = (int)(++c->frames % 256);
	img->pixel = gradient_pixel;
	img->done = capture_done;
	sim_render(s, img);
}

static void do_capture(struct sim *s, json_t *args)
{
	struct camera *c = camera(s);
	json_t *w = json_object_get(args, "width"), *h = json_object_get(args, "height");

	c->width = w ? (uint32_t)json_integer_value(w) : 320;
	c->height = h ? (uint32_t)json_integer_value(h) : 240;
	if (c->width > CAMERA_MAX || c->height > CAMERA_MAX) {
		sim_fail_after(s, 0, "bad_request", "%ux%u is above this camera's %dx%d", c->width,
		               c->height, CAMERA_MAX, CAMERA_MAX);
		return;
	}
	sim_step(s, s->latency_ms, capture_step);
}

static int inj_cover(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	camera(s)->covered = 1;
	sim_log(s, "lens covered");
	return 0;
}

static int inj_uncover(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	camera(s)->covered = 0;
	sim_log(s, "lens uncovered");
	return 0;
}

static int camera_open(struct sim *s, char *why, size_t whylen)
{
	if (!(s->priv = calloc(1, sizeof(struct camera)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

static void camera_close(struct sim *s)
{
	free(s->priv);
	s->priv = NULL;
}

static json_t *camera_status(struct sim *s)
{
	struct camera *c = camera(s);

	return json_pack("{s:s,s:I}", "lens", c->covered ? "covered" : "clear", "captures",
	                 (json_int_t)c->frames);
}

static const struct sim_verb verbs[] = {
        {"capture", do_capture},
        {NULL, NULL},
};

static const struct sim_inject injects[] = {
        {"cover", inj_cover},
        {"uncover", inj_uncover},
        {NULL, NULL},
};

const struct sim_class sim_camera = {
        .cls = KIOSK_CLASS_CAMERA,
        .name = "camera",
        .open = camera_open,
        .close = camera_close,
        .status = camera_status,
        .verbs = verbs,
        .injects = injects,
};
