/*
 * sim_scanner.c -- a simulated document scanner with a flatbed and an
 * automatic document feeder.  Faults are SANE's: jammed, no documents
 * in the feeder, cover open; they stay until "clear".
 *
 * Pages are synthetic A4 sheets at 1/8 of the requested resolution (the
 * point is a real PNG of the right shape, not megabytes per test).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

struct scanner {
	int jammed, no_paper, cover_open;
	long long adf_pages;
	long long scanned;
	/* the running scan */
	int adf;
	long long res, want;
	const char *mode;
	json_t *pages;
};

static struct scanner *scanner(struct sim *s)
{
	return s->priv;
}

/* A white sheet with a dark header stamp whose length changes per page
 * (so every page is a different blob) and grey bars for lines of text. */
static void page_pixel(const struct sim_image *img, uint32_t x, uint32_t y, uint8_t rgb[3])
{
	uint32_t margin = img->width / 12 + 1, pitch = img->height / 40 + 2;
	uint32_t stamp = margin + (uint32_t)(img->seed * 7 % 30) * img->width / 60;
	uint32_t line = (y - margin) / pitch, len = img->width - 2 * margin;

	rgb[0] = rgb[1] = rgb[2] = 255;
	if (x < margin || x >= img->width - margin || y < margin || y >= img->height - margin)
		return;
	if (line < 3) {
		if (x < stamp) {
			rgb[0] = 30, rgb[1] = 60, rgb[2] = 170;
		}
		return;
	}
	len = len * (50 + (line * 37 + (uint32_t)img->seed * 11) % 50) / 100;
	if ((y - margin) % pitch < pitch / 2 && x < margin + len)
		rgb[0] = rgb[1] = rgb[2] = 40;
}

/* SANE words for the faults, in the order a real scanner reports them. */
static int check_faults(struct sim *s, struct scanner *sc, int now)
{
	const char *code = NULL, *msg = NULL;

	if (sc->cover_open)
		code = "device_offline", msg = "cover open";
	else if (sc->jammed)
		code = "device_error", msg = "jammed";
	else if (sc->adf && (sc->no_paper || sc->adf_pages == 0))
		code = "device_error", msg = "no paper in feeder";
	if (!code)
		return 0;
	if (now && sc->pages && json_array_size(sc->pages) > 0)
		sim_fail(s, code, "%s after %zu of %lld pages", msg, json_array_size(sc->pages),
		         sc->want);
	else if (now)
		sim_fail(s, code, "%s", msg);
	else
		sim_fail_after(s, 0, code, "%s", msg);
	return -1;
}

static void scan_page(struct sim *s);

static void page_done(struct sim *s, struct sim_image *img)
{
	struct scanner *sc = scanner(s);
	char id[KIOSK_BLOB_ID_SIZE];
	size_t n;

	if (sim_blob_put(s, img->png, img->len, "image/png", id) < 0)
		return;
	json_array_append_new(sc->pages, json_pack("{s:s,s:s,s:i,s:i,s:I,s:s}", "blob", id, "mime",
	                                           "image/png", "width", (int)img->width, "height",
	                                           (int)img->height, "resolution",
	                                           (json_int_t)sc->res, "mode", sc->mode));
	sc->scanned++;
	n = json_array_size(sc->pages);
	s->host->progress(s->req, json_pack("{s:I,s:I}", "page", (json_int_t)n, "pages",
	                                    (json_int_t)sc->want));
	if ((long long)n < sc->want)
		sim_step(s, s->latency_ms, scan_page);
	else
		sim_reply(s, json_pack("{s:O}", "pages", sc->pages));
}

static void scan_page(struct sim *s)
{
	struct scanner *sc = scanner(s);
	struct sim_image *img;

	if (check_faults(s, sc, 1) < 0)
		return;
	if (!(img = calloc(1, sizeof(*img)))) {
		sim_fail(s, "device_error", "out of memory");
		return;
	}
	if (sc->adf)
		sc->adf_pages--;
	img->width = (uint32_t)(8.27 * (double)sc->res / 8);
	img->height = (uint32_t)(11.69 * (double)sc->res / 8);
	img->channels = strcmp(sc->mode, "color") == 0 ? 3 : 1;
	img->threshold = strcmp(sc->mode, "lineart") == 0;
	img->seed = (int)(sc->scanned + 1);
	img->pixel = page_pixel;
	img->done = page_done;
	sim_render(s, img);
}

/* A static copy: args are freed when command() returns. */
static const char *scan_mode(json_t *v)
{
	static const char *const modes[] = {"color", "gray", "lineart"};

	for (size_t i = 0; v && i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(json_string_value(v), modes[i]) == 0)
			return modes[i];
	return "color";
}

static void do_scan(struct sim *s, json_t *args)
{
	struct scanner *sc = scanner(s);
	json_t *v;

	sc->res = (v = json_object_get(args, "resolution")) ? json_integer_value(v) : 150;
	sc->mode = scan_mode(json_object_get(args, "mode"));
	sc->adf = (v = json_object_get(args, "source")) && strcmp(json_string_value(v), "adf") == 0;
	sc->want = (v = json_object_get(args, "pages")) ? json_integer_value(v) : 1;
	if (!sc->adf && sc->want > 1) {
		sim_fail_after(s, 0, "bad_request", "the flatbed scans one page; use source adf");
		return;
	}
	if (check_faults(s, sc, 0) < 0)
		return;
	sc->pages = json_array();
	sim_step(s, s->latency_ms, scan_page);
}

/* --- injects --- */

static int inj_jam(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	scanner(s)->jammed = 1;
	sim_log(s, "jammed");
	return 0;
}

static int inj_no_paper(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	scanner(s)->no_paper = 1;
	sim_log(s, "feeder empty");
	return 0;
}

static int inj_cover_open(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	scanner(s)->cover_open = 1;
	sim_log(s, "cover open");
	return 0;
}

static int inj_clear(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct scanner *sc = scanner(s);

	(void)args, (void)why, (void)whylen;
	sc->jammed = sc->no_paper = sc->cover_open = 0;
	sim_log(s, "faults cleared");
	return 0;
}

static int inj_load(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct scanner *sc = scanner(s);
	long long n = 10;

	if (sim_arg_int(args, "pages", 0, 10000, &n, why, whylen) < 0)
		return -1;
	sc->adf_pages = n;
	sc->no_paper = 0;
	sim_log(s, "feeder loaded with %lld pages", n);
	return 0;
}

/* --- class --- */

static int scanner_open(struct sim *s, char *why, size_t whylen)
{
	struct scanner *sc;

	if (!(sc = calloc(1, sizeof(*sc)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	sc->adf_pages = sim_opt_int(s, "adf_pages", 10);
	s->priv = sc;
	return 0;
}

static void scanner_reset(struct sim *s)
{
	struct scanner *sc = scanner(s);

	json_decref(sc->pages);
	sc->pages = NULL;
}

static void scanner_close(struct sim *s)
{
	scanner_reset(s);
	free(s->priv);
	s->priv = NULL;
}

static json_t *scanner_status(struct sim *s)
{
	struct scanner *sc = scanner(s);

	return json_pack("{s:s,s:b,s:s,s:I,s:I}", "cover", sc->cover_open ? "open" : "closed",
	                 "jammed", sc->jammed, "feeder",
	                 sc->no_paper || sc->adf_pages == 0 ? "empty" : "loaded", "adf_pages",
	                 (json_int_t)(sc->no_paper ? 0 : sc->adf_pages), "scanned_pages",
	                 (json_int_t)sc->scanned);
}

static const struct sim_verb verbs[] = {
        {"scan", do_scan},
        {NULL, NULL},
};

static const struct sim_inject injects[] = {
        {"jam", inj_jam},     {"no_paper", inj_no_paper}, {"cover_open", inj_cover_open},
        {"clear", inj_clear}, {"load", inj_load},         {NULL, NULL},
};

const struct sim_class sim_scanner = {
        .cls = KIOSK_CLASS_SCANNER,
        .name = "scanner",
        .open = scanner_open,
        .close = scanner_close,
        .reset = scanner_reset,
        .status = scanner_status,
        .verbs = verbs,
        .injects = injects,
};
