/*
 * sim_audio.c -- simulated speaker and microphone.  Playback takes
 * simulated time (TTS: 50 ms a character, at most 2 s; a file or blob:
 * latency_ms) and plays nothing.  A recording is a quiet 400 Hz tone as
 * a 16 kHz 16-bit mono WAV; without noise suppression it carries some
 * deterministic hiss, so the two can be told apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

#define RATE       16000
#define TONE_HZ    400
#define AMPLITUDE  1000 /* of 32767: quiet */
#define TTS_MS     50
#define TTS_MAX_MS 2000

struct audio {
	int volume;
	long long plays, recordings;
	/* the running command */
	const char *source;
	long long ms;
	int playing, recording, denoise;
};

static struct audio *audio(struct sim *s)
{
	return s->priv;
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32le(uint8_t *p, uint32_t v)
{
	put16(p, v & 0xffff);
	put16(p + 2, v >> 16);
}

static void wav_header(uint8_t *h, uint32_t data_len)
{
	memcpy(h, "RIFF", 4);
	put32le(h + 4, 36 + data_len);
	memcpy(h + 8, "WAVEfmt ", 8);
	put32le(h + 16, 16);       /* fmt chunk size */
	put16(h + 20, 1);          /* PCM */
	put16(h + 22, 1);          /* mono */
	put32le(h + 24, RATE);     /* sample rate */
	put32le(h + 28, RATE * 2); /* byte rate */
	put16(h + 32, 2);          /* block align */
	put16(h + 34, 16);         /* bits per sample */
	memcpy(h + 36, "data", 4);
	put32le(h + 40, data_len);
}

/* 400 Hz divides 16 kHz: one 40-sample period, repeated. */
static uint8_t *make_wav(long long ms, int denoise, size_t *len)
{
	size_t n = (size_t)(ms * RATE / 1000);
	int16_t period[RATE / TONE_HZ];
	uint32_t lcg = 12345;
	uint8_t *w;

	*len = 44 + 2 * n;
	if (!(w = malloc(*len)))
		return NULL;
	wav_header(w, (uint32_t)(2 * n));
	for (size_t i = 0; i < RATE / TONE_HZ; i++)
		period[i] = (int16_t)(AMPLITUDE * sin(2 * M_PI * (double)i * TONE_HZ / RATE));
	for (size_t i = 0; i < n; i++) {
		int v = period[i % (RATE / TONE_HZ)];
		if (!denoise) {
			lcg = lcg * 1103515245u + 12345u;
			v += (int)(lcg >> 16 & 0x1ff) - 256;
		}
		put16(w + 44 + 2 * i, (unsigned)(uint16_t)v);
	}
	return w;
}

static void play_done(struct sim *s)
{
	struct audio *a = audio(s);
	long long ms = a->ms;

	a->plays++;
	sim_emit(s, "played",
	         json_pack("{s:s,s:I}", "source", a->source, "played_ms", (json_int_t)ms));
	sim_reply(s, json_pack("{s:I}", "played_ms", (json_int_t)ms));
}

static void do_play(struct sim *s, json_t *args)
{
	struct audio *a = audio(s);
	const char *file = json_string_value(json_object_get(args, "file"));
	const char *blob = json_string_value(json_object_get(args, "blob"));
	const char *tts = json_string_value(json_object_get(args, "tts"));
	int fd;

	if (file && (fd = open(file, O_RDONLY | O_CLOEXEC)) < 0) {
		sim_fail_after(s, 0, "device_error", "cannot open %s: %s", file, strerror(errno));
		return;
	}
	if (file)
		close(fd);
	if (blob && !sim_blob_exists(s, blob)) {
		sim_fail_after(s, 0, "bad_request", "blob %.8s: no such blob", blob);
		return;
	}
	a->source = file ? "file" : blob ? "blob" : "tts";
	a->ms = s->latency_ms;
	if (tts) {
		a->ms = (long long)sim_utf8_len(tts) * TTS_MS;
		a->ms = a->ms > TTS_MAX_MS ? TTS_MAX_MS : a->ms;
	}
	a->playing = 1;
	sim_step(s, (uint32_t)a->ms, play_done);
}

static void record_done(struct sim *s)
{
	struct audio *a = audio(s);
	char id[KIOSK_BLOB_ID_SIZE];
	size_t len;
	uint8_t *wav = make_wav(a->ms, a->denoise, &len);
	int r;

	if (!wav) {
		sim_fail(s, "device_error", "out of memory");
		return;
	}
	r = sim_blob_put(s, wav, len, "audio/wav", id);
	free(wav);
	if (r < 0)
		return;
	a->recordings++;
	sim_emit(s, "recorded", json_pack("{s:I}", "duration_ms", (json_int_t)a->ms));
	sim_reply(s, json_pack("{s:s,s:s,s:I,s:b}", "blob", id, "mime", "audio/wav", "duration_ms",
	                       (json_int_t)a->ms, "noise_suppression", a->denoise));
}

static void do_record(struct sim *s, json_t *args)
{
	struct audio *a = audio(s);
	json_t *ns = json_object_get(args, "noise_suppression");

	a->ms = json_integer_value(json_object_get(args, "duration_ms"));
	a->denoise = !ns || json_is_true(ns);
	a->recording = 1;
	sim_step(s, (uint32_t)a->ms, record_done);
}

static void do_volume(struct sim *s, json_t *args)
{
	struct audio *a = audio(s);

	a->volume = (int)json_integer_value(json_object_get(args, "level"));
	sim_log(s, "volume %d", a->volume);
	sim_reply_after(s, s->latency_ms, json_pack("{s:i}", "level", a->volume));
}

static int audio_open(struct sim *s, char *why, size_t whylen)
{
	struct audio *a;

	if (!(a = calloc(1, sizeof(*a)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	a->volume = (int)sim_opt_int(s, "volume", 70);
	s->priv = a;
	return 0;
}

static void audio_reset(struct sim *s)
{
	struct audio *a = audio(s);

	a->playing = a->recording = 0;
}

static void audio_close(struct sim *s)
{
	free(s->priv);
	s->priv = NULL;
}

static json_t *audio_status(struct sim *s)
{
	struct audio *a = audio(s);

	return json_pack("{s:i,s:b,s:b,s:I,s:I}", "volume", a->volume, "playing", a->playing,
	                 "recording", a->recording, "plays", (json_int_t)a->plays, "recordings",
	                 (json_int_t)a->recordings);
}

static const struct sim_verb verbs[] = {
        {"play", do_play},
        {"record", do_record},
        {"volume", do_volume},
        {NULL, NULL},
};

static const struct sim_inject injects[] = {
        {NULL, NULL},
};

const struct sim_class sim_audio = {
        .cls = KIOSK_CLASS_AUDIO,
        .name = "audio",
        .open = audio_open,
        .close = audio_close,
        .reset = audio_reset,
        .status = audio_status,
        .verbs = verbs,
        .injects = injects,
};
