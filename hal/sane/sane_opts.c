/*
 * sane_opts.c -- parsing the `sane_options` setting, and mapping kioskd's
 * scanner words onto the words a backend offers.
 *
 * Backends spell the same thing differently ("Color", "Colour", "24bit
 * Color"; "ADF", "ADF Front", "Automatic Document Feeder"), so mapping
 * goes by a list of known spellings, best first, compared without case.
 */
#include "sane_opts.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *skip_space(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* [s, e) without the blanks around it, as a new string. */
static char *trimmed(const char *s, const char *e)
{
	s = skip_space(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	return strndup(s, (size_t)(e - s));
}

static int name_ok(const char *n)
{
	if (!*n || strlen(n) > 64)
		return 0;
	for (; *n; n++)
		if (!islower((unsigned char)*n) && !isdigit((unsigned char)*n) && *n != '-')
			return 0;
	return 1;
}

static int parse_one(const char *s, const char *e, struct sane_kvs *out, char *why, size_t whylen)
{
	const char *eq = memchr(s, '=', (size_t)(e - s));
	struct sane_kv *kv = &out->kv[out->n];

	if (!eq) {
		snprintf(why, whylen, "sane_options: '%.*s' is not name=value", (int)(e - s), s);
		return -1;
	}
	kv->name = trimmed(s, eq);
	kv->value = trimmed(eq + 1, e);
	if (!kv->name || !kv->value) {
		snprintf(why, whylen, "out of memory");
		goto bad;
	}
	if (!name_ok(kv->name)) {
		snprintf(why, whylen, "sane_options: '%.64s' is not a SANE option name", kv->name);
		goto bad;
	}
	if (!*kv->value) {
		snprintf(why, whylen, "sane_options: %s has no value", kv->name);
		goto bad;
	}
	out->n++;
	return 0;
bad:
	free(kv->name);
	free(kv->value);
	kv->name = kv->value = NULL;
	return -1;
}

int sane_opts_parse(const char *text, struct sane_kvs *out, char *why, size_t whylen)
{
	const char *s = text ? text : "";

	memset(out, 0, sizeof(*out));
	while (*(s = skip_space(s))) {
		const char *e = strchr(s, ',');
		if (!e)
			e = s + strlen(s);
		if (out->n == SANE_OPTS_MAX) {
			snprintf(why, whylen, "sane_options: more than %d options", SANE_OPTS_MAX);
			goto bad;
		}
		if (parse_one(s, e, out, why, whylen) < 0)
			goto bad;
		s = *e ? e + 1 : e;
	}
	return 0;
bad:
	sane_opts_free(out);
	return -1;
}

void sane_opts_free(struct sane_kvs *kvs)
{
	for (size_t i = 0; i < kvs->n; i++) {
		free(kvs->kv[i].name);
		free(kvs->kv[i].value);
	}
	kvs->n = 0;
}

int sane_parse_bool(const char *s, int *v)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(s, yes[i]))
			return *v = 1, 0;
		if (!strcasecmp(s, no[i]))
			return *v = 0, 0;
	}
	return -1;
}

int sane_parse_number(const char *s, double *v)
{
	char *end;

	errno = 0;
	*v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(*v) || fabs(*v) > 32767.0 * 65536.0)
		return -1;
	return 0;
}

static const char *pick(const char *const *choices, const char *const *words)
{
	for (; choices && *words; words++)
		for (const char *const *c = choices; *c; c++)
			if (!strcasecmp(*c, *words))
				return *c;
	return NULL;
}

/* A choice that contains one of words (for "ADF Front", "ADF Duplex"). */
static const char *pick_part(const char *const *choices, const char *const *words)
{
	for (; choices && *words; words++)
		for (const char *const *c = choices; *c; c++)
			if (strcasestr(*c, *words))
				return *c;
	return NULL;
}

const char *sane_pick_mode(const char *const *choices, const char *mode)
{
	static const char *const color[] = {"Color", "Colour", "24bit Color", "RGB", NULL};
	static const char *const gray[] = {"Gray", "Grey", "Grayscale", "8bit Gray", NULL};
	static const char *const lineart[] = {"Lineart", "Binary", "Black & White", "Monochrome",
	                                      NULL};

	if (!strcmp(mode, "color"))
		return pick(choices, color);
	if (!strcmp(mode, "gray"))
		return pick(choices, gray);
	if (!strcmp(mode, "lineart"))
		return pick(choices, lineart);
	return NULL;
}

const char *sane_pick_source(const char *const *choices, const char *source)
{
	static const char *const flatbed[] = {"Flatbed", "FlatBed", "Normal", NULL};
	static const char *const flatbed_part[] = {"flatbed", NULL};
	static const char *const adf[] = {"Automatic Document Feeder", "ADF", "ADF Front", NULL};
	static const char *const adf_part[] = {"ADF", "Feeder", NULL};
	const char *c;

	if (!strcmp(source, "flatbed"))
		return (c = pick(choices, flatbed)) ? c : pick_part(choices, flatbed_part);
	if (!strcmp(source, "adf"))
		return (c = pick(choices, adf)) ? c : pick_part(choices, adf_part);
	return NULL;
}
