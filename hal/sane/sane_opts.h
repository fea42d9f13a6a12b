/*
 * sane_opts.h -- the `sane_options` setting and the class words, as text.
 * Pure (no SANE calls): unit-tested and fuzzed on its own.
 */
#ifndef KIOSK_SANE_OPTS_H
#define KIOSK_SANE_OPTS_H

#include <stddef.h>

#define SANE_OPTS_MAX 32

struct sane_kv {
	char *name;
	char *value;
};

struct sane_kvs {
	struct sane_kv kv[SANE_OPTS_MAX];
	size_t n;
};

/* "name=value, name=value": SANE option names are [a-z0-9-]; a value is
 * anything but a comma, trimmed, and not empty.  0, or -1 with a reason. */
int sane_opts_parse(const char *text, struct sane_kvs *out, char *why, size_t whylen);
void sane_opts_free(struct sane_kvs *kvs);

/* yes/no, true/false, on/off, 1/0.  0, or -1 when it is none of them. */
int sane_parse_bool(const char *s, int *v);
/* A whole decimal number (integers for SANE_TYPE_INT).  0 or -1. */
int sane_parse_number(const char *s, double *v);

/* The backend's own word for a class word, from its list of choices:
 * scan modes ("color", "gray", "lineart") and sources ("flatbed", "adf").
 * NULL when the device has none that means it. */
const char *sane_pick_mode(const char *const *choices, const char *mode);
const char *sane_pick_source(const char *const *choices, const char *source);

#endif
