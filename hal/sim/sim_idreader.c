/*
 * sim_idreader.c -- a simulated resident ID card reader.  The identity is
 * obviously fake; the photo is a 102x126 placeholder (the size of the
 * photo a real card carries).  Personal data goes only into the read
 * result, which names its PII fields; never into logs or events.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static const char *const fields[] = {"name",      "sex",    "nation",     "birth",    "address",
                                     "id_number", "issuer", "valid_from", "valid_to", NULL};

struct idreader {
	int present;
	unsigned gen; /* bumped per placement: a read notices a swapped card */
	unsigned read_gen;
	int reading;
	json_t *identity;
	long long reads;
};

static struct idreader *idr(struct sim *s)
{
	return s->priv;
}

static json_t *default_identity(void)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "name", "测试用户", "sex", "男",
	                 "nation", "汉", "birth", "1990-01-01", "address", "北京市东城区测试路1号",
	                 "id_number", "110101199001011234", "issuer", "北京市公安局东城分局(测试)",
	                 "valid_from", "2020-01-01", "valid_to", "2040-01-01");
}

/* A pale background, a face and shoulders. */
static void photo_pixel(const struct sim_image *img, uint32_t x, uint32_t y, uint8_t rgb[3])
{
	long dx = (long)x - 51, dy = (long)y - 52, sy = (long)y - 140;

	(void)img;
	rgb[0] = 235, rgb[1] = 240, rgb[2] = 250;
	if (dx * dx * 32 * 32 + dy * dy * 25 * 25 <= 25L * 25 * 32 * 32)
		rgb[0] = 225, rgb[1] = 190, rgb[2] = 160;
	else if (dx * dx * 45 * 45 + sy * sy * 60 * 60 <= 60L * 60 * 45 * 45)
		rgb[0] = 40, rgb[1] = 45, rgb[2] = 70;
}

static void photo_done(struct sim *s, struct sim_image *img)
{
	struct idreader *r = idr(s);
	char id[KIOSK_BLOB_ID_SIZE];

	if (sim_blob_put(s, img->png, img->len, "image/png", id) < 0)
		return;
	r->reads++;
	sim_log(s, "ID card read");
	/* every identity field is personal data (ethnicity and issuer too) */
	json_t *pii = json_array();
	const char *key;
	json_t *v;
	json_object_foreach(r->identity, key, v) json_array_append_new(pii, json_string(key));
	json_array_append_new(pii, json_string("photo"));
	sim_reply(s, json_pack("{s:O,s:s,s:o}", "identity", r->identity, "photo", id, "pii", pii));
}

static void read_step(struct sim *s)
{
	struct idreader *r = idr(s);
	struct sim_image *img;

	if (!r->present || r->gen != r->read_gen) {
		sim_fail(s, "device_error", "ID card removed during read");
		return;
	}
	if (!(img = calloc(1, sizeof(*img)))) {
		sim_fail(s, "device_error", "out of memory");
		return;
	}
	img->width = 102;
	img->height = 126;
	img->channels = 3;
	img->pixel = photo_pixel;
	img->done = photo_done;
	sim_render(s, img);
}

static void do_read(struct sim *s, json_t *args)
{
	struct idreader *r = idr(s);

	(void)args;
	if (!r->present) {
		sim_fail_after(s, 0, "device_error", "no ID card on reader");
		return;
	}
	r->read_gen = r->gen;
	r->reading = 1;
	sim_step(s, s->latency_ms, read_step);
}

/* --- injects --- */

static int merge_identity(json_t *id, json_t *given, char *why, size_t whylen)
{
	const char *key;
	json_t *v;

	if (given && !json_is_object(given)) {
		snprintf(why, whylen, "identity: must be an object");
		return -1;
	}
	json_object_foreach(given, key, v)
	{
		size_t i;
		for (i = 0; fields[i] && strcmp(fields[i], key) != 0; i++)
			;
		if (!fields[i]) {
			snprintf(why, whylen,
			         "identity.%.32s: unknown; fields are name, sex, nation, "
			         "birth, address, id_number, issuer, valid_from, valid_to",
			         key);
			return -1;
		}
		if (!json_is_string(v) || json_string_length(v) > 256) {
			snprintf(why, whylen, "identity.%s: must be a string of at most 256 bytes",
			         key);
			return -1;
		}
		json_object_set(id, key, v);
	}
	return 0;
}

static int inj_place(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct idreader *r = idr(s);
	json_t *id = default_identity();

	if (r->present) {
		snprintf(why, whylen, "an ID card is already on the reader");
		json_decref(id);
		return -1;
	}
	if (merge_identity(id, json_object_get(args, "identity"), why, whylen) < 0) {
		json_decref(id);
		return -1;
	}
	json_decref(r->identity);
	r->identity = id;
	r->present = 1;
	r->gen++;
	sim_log(s, "ID card placed");
	sim_emit(s, "placed", NULL);
	return 0;
}

static int inj_remove(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct idreader *r = idr(s);

	(void)args;
	if (!r->present) {
		snprintf(why, whylen, "no ID card on reader");
		return -1;
	}
	r->present = 0;
	sim_log(s, "ID card removed");
	sim_emit(s, "removed", NULL);
	/* a read in flight fails now, also while its photo is being made */
	if (r->reading)
		sim_fail(s, "device_error", "ID card removed during read");
	return 0;
}

/* --- class --- */

static int idreader_open(struct sim *s, char *why, size_t whylen)
{
	if (!(s->priv = calloc(1, sizeof(struct idreader)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

static void idreader_reset(struct sim *s)
{
	idr(s)->reading = 0;
}

static void idreader_close(struct sim *s)
{
	json_decref(idr(s)->identity);
	free(s->priv);
	s->priv = NULL;
}

static json_t *idreader_status(struct sim *s)
{
	struct idreader *r = idr(s);

	return json_pack("{s:s,s:I}", "card", r->present ? "present" : "absent", "reads",
	                 (json_int_t)r->reads);
}

static const struct sim_verb verbs[] = {
        {"read", do_read},
        {NULL, NULL},
};

static const struct sim_inject injects[] = {
        {"place", inj_place},
        {"remove", inj_remove},
        {NULL, NULL},
};

const struct sim_class sim_idreader = {
        .cls = KIOSK_CLASS_IDREADER,
        .name = "idreader",
        .open = idreader_open,
        .close = idreader_close,
        .reset = idreader_reset,
        .status = idreader_status,
        .verbs = verbs,
        .injects = injects,
};
