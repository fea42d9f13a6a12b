/*
 * sim_util.c -- small helpers the simulators share: logging, options,
 * inject argument parsing, hex, time, blobs.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

#include <kiosk/hex.h>

void sim_log(struct sim *s, const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	s->host->log(s->dev, KIOSK_LOG_INFO, "%s", buf);
}

void sim_emit(struct sim *s, const char *event, json_t *data)
{
	s->host->emit(s->dev, event, data ? data : json_object());
}

uint64_t sim_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The core checked the value against the options table; a NULL or an
 * unparsable value can only mean an older core, so fall back. */
long long sim_opt_int(struct sim *s, const char *key, long long def)
{
	const char *v = s->host->config(s->dev, key);
	char *end;
	long long n;

	if (!v)
		return def;
	n = strtoll(v, &end, 10);
	return end != v ? n : def;
}

double sim_opt_num(struct sim *s, const char *key, double def)
{
	const char *v = s->host->config(s->dev, key);
	char *end;
	double d;

	if (!v)
		return def;
	d = strtod(v, &end);
	return end != v ? d : def;
}

const char *sim_opt_str(struct sim *s, const char *key, const char *def)
{
	const char *v = s->host->config(s->dev, key);
	return v ? v : def;
}

int sim_arg_int(json_t *args, const char *key, long long min, long long max, long long *out,
                char *why, size_t whylen)
{
	json_t *v = json_object_get(args, key);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		snprintf(why, whylen, "%s: must be an integer between %lld and %lld", key, min,
		         max);
		return -1;
	}
	*out = json_integer_value(v);
	return 1;
}

int sim_arg_num(json_t *args, const char *key, double min, double max, double *out, char *why,
                size_t whylen)
{
	json_t *v = json_object_get(args, key);

	if (!v)
		return 0;
	if (!json_is_number(v) || json_number_value(v) < min || json_number_value(v) > max) {
		snprintf(why, whylen, "%s: must be a number between %g and %g", key, min, max);
		return -1;
	}
	*out = json_number_value(v);
	return 1;
}

int sim_arg_str(json_t *args, const char *key, size_t maxlen, const char **out, char *why,
                size_t whylen)
{
	json_t *v = json_object_get(args, key);

	if (!v)
		return 0;
	if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > maxlen) {
		snprintf(why, whylen, "%s: must be a string of 1 to %zu bytes", key, maxlen);
		return -1;
	}
	*out = json_string_value(v);
	return 1;
}

int sim_arg_need(int r, const char *key, char *why, size_t whylen)
{
	if (r == 0)
		snprintf(why, whylen, "missing '%s'", key);
	return r == 1 ? 0 : -1;
}

long sim_hex_decode(const char *hex, uint8_t *out, size_t max)
{
	return kiosk_hex_decode(hex, out, max);
}

json_t *sim_hex_json(const uint8_t *p, size_t n)
{
	char *buf = malloc(2 * n + 1);
	json_t *j;

	if (!buf)
		return json_null();
	kiosk_hex_encode(p, n, buf);
	j = json_string(buf);
	free(buf);
	return j;
}

json_t *sim_num_json(double v)
{
	long long c = (long long)(v * 100 + (v < 0 ? -0.5 : 0.5));
	return json_real((double)c / 100);
}

size_t sim_utf8_len(const char *p)
{
	size_t n = 0;

	for (; *p; p++)
		n += ((unsigned char)*p & 0xc0) != 0x80;
	return n;
}

int sim_blob_put(struct sim *s, const void *data, size_t len, const char *mime,
                 char id[KIOSK_BLOB_ID_SIZE])
{
	if (s->host->blob_put(s->dev, data, len, mime, id) == 0)
		return 0;
	sim_fail(s, "storage_error", "cannot store the %s blob", mime);
	return -1;
}

int sim_blob_exists(struct sim *s, const char *id)
{
	void *data = NULL;
	size_t len = 0;

	if (s->host->blob_get(s->dev, id, &data, &len) < 0)
		return 0;
	free(data);
	return 1;
}
