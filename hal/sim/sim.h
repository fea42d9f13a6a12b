/*
 * sim.h -- private to the simulator plugin.
 *
 * One struct sim per open device holds what every class shares: the
 * running request, its step timer, injected faults.  Each class keeps
 * its own state behind s->priv and describes itself with a struct
 * sim_class (verbs, injects, open/close/status).
 *
 * A request is never finished inside command(): refusals go out on the
 * next loop turn (sim_fail_after(s, 0, ...)), work after s->latency_ms.
 * So the core's command path is never re-entered from the plugin.
 */
#ifndef KIOSK_SIM_H
#define KIOSK_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "kiosk/hal.h"

struct sim;
struct sim_image;

struct sim_verb {
	const char *verb;
	/* Start the command; s->req is set.  Finish with sim_reply/sim_fail
	 * or the *_after variants. */
	void (*start)(struct sim *s, json_t *args);
};

struct sim_inject {
	const char *what;
	/* 0, or -1 with why; the caller answers with the device's status. */
	int (*fn)(struct sim *s, json_t *args, char *why, size_t whylen);
};

struct sim_class {
	enum kiosk_class cls;
	const char *name;
	/* Allocate s->priv from the options; -1 with why refuses the open. */
	int (*open)(struct sim *s, char *why, size_t whylen);
	/* Stop the class's own timers and free s->priv. */
	void (*close)(struct sim *s);
	/* Forget the running command's work.  Called whenever a request
	 * ends (reply, fail, cancel, unplug, close); may be NULL. */
	void (*reset)(struct sim *s);
	json_t *(*status)(struct sim *s);
	const struct sim_verb *verbs;     /* without "status"; NULL-terminated */
	const struct sim_inject *injects; /* class-specific; NULL-terminated */
};

struct sim {
	struct kiosk_dev *dev;
	const struct kiosk_host *host;
	const struct sim_class *cls;
	void *priv; /* the class's own state */
	uint32_t latency_ms;

	/* The running request (one at a time per device). */
	struct kiosk_req *req;
	struct kiosk_timer *step; /* its next step, one-shot */
	void (*step_fn)(struct sim *s);
	struct sim_image *job; /* an image being rendered for it */
	int hanging;           /* hang_next fault: never finish, ignore cancel */
	json_t *result;        /* staged by sim_reply_after */
	char code[24];         /* staged by sim_fail_after */
	char msg[256];

	/* Faults injected for the next command. */
	int fail_next;
	int hang_next;
	char fail_code[24];
	char fail_msg[200];
};

extern const struct sim_class sim_cardreader, sim_printer, sim_scanner, sim_idreader, sim_camera,
        sim_audio, sim_barcode, sim_locker, sim_sensor, sim_actuator;

/* sim_req.c: finishing the running request.  All are no-ops when no
 * request is running.  After sim_reply/sim_fail the request is gone. */
void sim_reply(struct sim *s, json_t *result);
void sim_fail(struct sim *s, const char *code, const char *fmt, ...) KIOSK_PRINTF(3, 4);
void sim_reply_after(struct sim *s, uint32_t ms, json_t *result);
void sim_fail_after(struct sim *s, uint32_t ms, const char *code, const char *fmt, ...)
        KIOSK_PRINTF(4, 5);
/* Run fn(s) after ms as the running request's next step. */
void sim_step(struct sim *s, uint32_t ms, void (*fn)(struct sim *s));
/* Cancel, unplug and close: stop the request's work without answering. */
void sim_abandon(struct sim *s);

/* sim_util.c */
void sim_log(struct sim *s, const char *fmt, ...) KIOSK_PRINTF(2, 3);
void sim_emit(struct sim *s, const char *event, json_t *data);
uint64_t sim_now_ms(void);
long long sim_opt_int(struct sim *s, const char *key, long long def);
double sim_opt_num(struct sim *s, const char *key, double def);
const char *sim_opt_str(struct sim *s, const char *key, const char *def);
/* Inject arguments (not checked by the core): 1 when present and valid,
 * 0 when absent (*out untouched), -1 with why. */
int sim_arg_int(json_t *args, const char *key, long long min, long long max, long long *out,
                char *why, size_t whylen);
int sim_arg_num(json_t *args, const char *key, double min, double max, double *out, char *why,
                size_t whylen);
int sim_arg_str(json_t *args, const char *key, size_t maxlen, const char **out, char *why,
                size_t whylen);
/* Turn "absent" into an error for a required argument: 0 or -1. */
int sim_arg_need(int r, const char *key, char *why, size_t whylen);
/* Decode hex into out: the byte count, or -1 when odd, not hex or > max. */
long sim_hex_decode(const char *hex, uint8_t *out, size_t max);
json_t *sim_hex_json(const uint8_t *p, size_t n);
/* A number rounded to 0.01, so readings do not show float noise. */
json_t *sim_num_json(double v);
/* Code points in a UTF-8 string. */
size_t sim_utf8_len(const char *p);
/* Store a blob; on failure fail the request with storage_error. */
int sim_blob_put(struct sim *s, const void *data, size_t len, const char *mime,
                 char id[KIOSK_BLOB_ID_SIZE]);
/* Nonzero when the blob exists. */
int sim_blob_exists(struct sim *s, const char *id);

/* sim_png.c: an 8-bit gray (channels 1) or RGB (channels 3) PNG with
 * stored deflate blocks.  row() fills one row of width*channels bytes.
 * 0, or -1 when out of memory or too big; *png is malloc()ed. */
typedef void (*sim_row_fn)(uint8_t *row, uint32_t y, const void *ctx);
int sim_png_encode(uint32_t width, uint32_t height, int channels, sim_row_fn row, const void *ctx,
                   uint8_t **png, size_t *len);

/* sim_render.c: images are encoded on the host's worker pool, so a large
 * scan or capture does not stall the loop. */
struct sim_image {
	uint32_t width, height;
	int channels;  /* 1 gray, 3 RGB */
	int threshold; /* gray thresholded to black/white (lineart) */
	int dark;      /* all black (camera lens covered) */
	int seed;      /* varies the pattern: page number, frame number */
	void (*pixel)(const struct sim_image *img, uint32_t x, uint32_t y, uint8_t rgb[3]);
	/* On the loop thread with png/len filled, unless the request ended. */
	void (*done)(struct sim *s, struct sim_image *img);
	uint8_t *png;
	size_t len;
	/* owned by sim_render.c */
	struct sim *s;
	int abandoned;
};
/* Takes img (calloc()ed by the caller); call from a step, not command(). */
void sim_render(struct sim *s, struct sim_image *img);
void sim_render_abandon(struct sim *s);

#endif /* KIOSK_SIM_H */
