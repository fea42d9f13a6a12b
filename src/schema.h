/* Per-class command schemas: which verbs each device class has and the
 * arguments they take, checked in the core so every plugin of a class
 * answers bad input with the same errors. */
#ifndef KIOSKD_SCHEMA_H
#define KIOSKD_SCHEMA_H

#include <jansson.h>
#include <stddef.h>

#include "kiosk/hal.h"

enum arg_type {
	ARG_INT = 1,
	ARG_STR,
	ARG_BOOL,
	ARG_HEX,
	ARG_ENUM,
	ARG_ARRAY,
	ARG_OBJECT,
	ARG_BLOB
};

struct arg_spec {
	const char *name;
	enum arg_type type;
	int required;
	long long min, max;  /* INT: range; STR/HEX/ARRAY: length range */
	const char *choices; /* ENUM: "a|b|c" */
};

struct verb_spec {
	const char *verb;
	const struct arg_spec *args; /* NULL-name terminated, may be NULL */
	/* extra structural check (e.g. printer blocks); 0 or -1 with why */
	int (*check)(json_t *args, char *why, size_t whylen);
};

/* "cardreader" -> KIOSK_CLASS_CARDREADER; 0 when unknown. */
enum kiosk_class schema_class_by_name(const char *name);
const char *schema_class_name(enum kiosk_class cls);
/* The verb's spec, or NULL when the class has no such verb. */
const struct verb_spec *schema_verb(enum kiosk_class cls, const char *verb);
/* The verbs of a class as a JSON array of strings (new reference). */
json_t *schema_verbs_json(enum kiosk_class cls);
/* Check args (an object or NULL) against spec: 0, or -1 with why. */
int schema_check(const struct verb_spec *spec, json_t *args, char *why, size_t whylen);

#endif
