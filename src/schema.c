/* Class schemas.  Keep this table and docs/protocol.md in step. */
#include "schema.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define NOARGS NULL
#define END                                                                                        \
	{                                                                                          \
		NULL, 0, 0, 0, 0, NULL                                                             \
	}

/* SLE4442 memory is addressed by byte (offset/length), MIFARE Classic by
 * 16-byte block (block/blocks): one or the other, never both. */
static int check_card_addr(json_t *args, char *why, size_t whylen);
static int check_card_write(json_t *args, char *why, size_t whylen);
static int check_card_verify(json_t *args, char *why, size_t whylen);
static const struct arg_spec card_read[] = {
        {"offset", ARG_INT, 0, 0, 65535, NULL},
        {"length", ARG_INT, 0, 1, 4096, NULL},
        {"block", ARG_INT, 0, 0, 255, NULL},
        {"blocks", ARG_INT, 0, 1, 256, NULL},
        END,
};
static const struct arg_spec card_write[] = {
        {"offset", ARG_INT, 0, 0, 65535, NULL},
        {"block", ARG_INT, 0, 0, 255, NULL},
        {"data", ARG_HEX, 0, 2, 8192, NULL}, /* required: check_card_write, after the address */
        END,
};
static const struct arg_spec card_apdu[] = {
        /* short APDUs only: header + Lc + 255 data + Le */
        {"apdu", ARG_HEX, 1, 8, 2 * 261, NULL},
        END,
};
static const struct arg_spec card_verify[] = {
        {"psc", ARG_HEX, 1, 2, 64, NULL},
        {"force", ARG_BOOL, 0, 0, 0, NULL},
        END,
};
static const struct arg_spec card_auth[] = {
        {"block", ARG_INT, 1, 0, 255, NULL},
        {"key", ARG_STR, 1, 1, 64, NULL}, /* a key NAME from the key file, never bytes */
        {"key_type", ARG_ENUM, 0, 0, 0, "A|B"},
        END,
};
static const struct verb_spec cardreader_verbs[] = {
        {"status", NOARGS, NULL},
        {"wait", NOARGS, NULL},
        {"read", card_read, check_card_addr},
        {"write", card_write, check_card_write},
        {"verify", card_verify, check_card_verify},
        {"auth", card_auth, NULL},
        {"apdu", card_apdu, NULL},
        {"eject", NOARGS, NULL},
        {NULL, NULL, NULL},
};

static int check_print(json_t *args, char *why, size_t whylen);
/* Either a receipt (blocks) or a finished document (a PDF or image blob)
 * with its job options; check_print says which combinations make sense. */
static const struct arg_spec printer_print[] = {
        {"blocks", ARG_ARRAY, 0, 1, 1000, NULL},
        {"document", ARG_BLOB, 0, 64, 64, NULL},
        {"copies", ARG_INT, 0, 1, 99, NULL},
        {"media", ARG_ENUM, 0, 0, 0, "A4|A5|A3|letter|legal"},
        {"sides", ARG_ENUM, 0, 0, 0, "one-sided|two-sided-long-edge|two-sided-short-edge"},
        END,
};
static const struct verb_spec printer_verbs[] = {
        {"status", NOARGS, NULL},
        {"print", printer_print, check_print},
        {NULL, NULL, NULL},
};

static const struct arg_spec scanner_scan[] = {
        {"resolution", ARG_INT, 0, 50, 1200, NULL},
        {"mode", ARG_ENUM, 0, 0, 0, "color|gray|lineart"},
        {"source", ARG_ENUM, 0, 0, 0, "flatbed|adf"},
        {"pages", ARG_INT, 0, 1, 100, NULL},
        END,
};
static const struct verb_spec scanner_verbs[] = {
        {"status", NOARGS, NULL},
        {"scan", scanner_scan, NULL},
        {NULL, NULL, NULL},
};

static const struct verb_spec idreader_verbs[] = {
        {"status", NOARGS, NULL},
        {"read", NOARGS, NULL},
        {NULL, NULL, NULL},
};

static const struct arg_spec camera_capture[] = {
        {"width", ARG_INT, 0, 16, 8192, NULL},
        {"height", ARG_INT, 0, 16, 8192, NULL},
        END,
};
static const struct verb_spec camera_verbs[] = {
        {"status", NOARGS, NULL},
        {"capture", camera_capture, NULL},
        {NULL, NULL, NULL},
};

static int check_play(json_t *args, char *why, size_t whylen);
static const struct arg_spec audio_play[] = {
        {"file", ARG_STR, 0, 1, 4096, NULL},
        {"blob", ARG_BLOB, 0, 64, 64, NULL},
        {"tts", ARG_STR, 0, 1, 4096, NULL},
        END,
};
static const struct arg_spec audio_record[] = {
        {"duration_ms", ARG_INT, 1, 100, 600000, NULL},
        {"noise_suppression", ARG_BOOL, 0, 0, 0, NULL},
        END,
};
static const struct arg_spec audio_volume[] = {
        {"level", ARG_INT, 1, 0, 100, NULL},
        END,
};
static const struct verb_spec audio_verbs[] = {
        {"status", NOARGS, NULL},
        {"play", audio_play, check_play},
        {"record", audio_record, NULL},
        {"volume", audio_volume, NULL},
        {NULL, NULL, NULL},
};

static const struct verb_spec barcode_verbs[] = {
        {"status", NOARGS, NULL},
        {"wait", NOARGS, NULL},
        {NULL, NULL, NULL},
};

static const struct arg_spec locker_open[] = {
        {"door", ARG_INT, 1, 1, 1000, NULL},
        END,
};
static const struct verb_spec locker_verbs[] = {
        {"status", NOARGS, NULL},
        {"open", locker_open, NULL},
        {NULL, NULL, NULL},
};

static const struct verb_spec sensor_verbs[] = {
        {"status", NOARGS, NULL},
        {"read", NOARGS, NULL},
        {NULL, NULL, NULL},
};

static const struct arg_spec actuator_set[] = {
        {"output", ARG_STR, 1, 1, 64, NULL},
        {"on", ARG_BOOL, 0, 0, 0, NULL},
        {"level", ARG_INT, 0, 0, 100, NULL},
        END,
};
static const struct verb_spec actuator_verbs[] = {
        {"status", NOARGS, NULL},
        {"set", actuator_set, NULL},
        {NULL, NULL, NULL},
};

static const struct class_spec {
	enum kiosk_class cls;
	const char *name;
	const struct verb_spec *verbs;
} classes[] = {
        {KIOSK_CLASS_CARDREADER, "cardreader", cardreader_verbs},
        {KIOSK_CLASS_PRINTER, "printer", printer_verbs},
        {KIOSK_CLASS_SCANNER, "scanner", scanner_verbs},
        {KIOSK_CLASS_IDREADER, "idreader", idreader_verbs},
        {KIOSK_CLASS_CAMERA, "camera", camera_verbs},
        {KIOSK_CLASS_AUDIO, "audio", audio_verbs},
        {KIOSK_CLASS_BARCODE, "barcode", barcode_verbs},
        {KIOSK_CLASS_LOCKER, "locker", locker_verbs},
        {KIOSK_CLASS_SENSOR, "sensor", sensor_verbs},
        {KIOSK_CLASS_ACTUATOR, "actuator", actuator_verbs},
};

static const struct class_spec *class_find(enum kiosk_class cls)
{
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
		if (classes[i].cls == cls)
			return &classes[i];
	return NULL;
}

enum kiosk_class schema_class_by_name(const char *name)
{
	for (size_t i = 0; name && i < sizeof(classes) / sizeof(classes[0]); i++)
		if (strcmp(classes[i].name, name) == 0)
			return classes[i].cls;
	return 0;
}

const char *schema_class_name(enum kiosk_class cls)
{
	const struct class_spec *c = class_find(cls);
	return c ? c->name : "unknown";
}

const struct verb_spec *schema_verb(enum kiosk_class cls, const char *verb)
{
	const struct class_spec *c = class_find(cls);
	if (!c)
		return NULL;
	for (const struct verb_spec *v = c->verbs; v->verb; v++)
		if (strcmp(v->verb, verb) == 0)
			return v;
	return NULL;
}

json_t *schema_verbs_json(enum kiosk_class cls)
{
	json_t *a = json_array();
	const struct class_spec *c = class_find(cls);
	for (const struct verb_spec *v = c ? c->verbs : NULL; v && v->verb; v++)
		json_array_append_new(a, json_string(v->verb));
	return a;
}

static int is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return n % 2 == 0;
}

static int is_blob_id(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return 0;
	return n == 64;
}

static int in_choices(const char *choices, const char *s)
{
	size_t n = strlen(s);
	for (const char *p = choices; *p;) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && strncmp(p, s, n) == 0)
			return 1;
		p += len + (bar != NULL);
	}
	return 0;
}

static int check_one(const struct arg_spec *a, json_t *v, char *why, size_t whylen)
{
	long long len;

	switch (a->type) {
	case ARG_INT:
		if (!json_is_integer(v))
			break;
		if (json_integer_value(v) < a->min || json_integer_value(v) > a->max) {
			snprintf(why, whylen, "%s: must be between %lld and %lld", a->name, a->min,
			         a->max);
			return -1;
		}
		return 0;
	case ARG_BOOL:
		return json_is_boolean(v)
		               ? 0
		               : (snprintf(why, whylen, "%s: must be true or false", a->name), -1);
	case ARG_ENUM:
		if (json_is_string(v) && in_choices(a->choices, json_string_value(v)))
			return 0;
		snprintf(why, whylen, "%s: must be one of %s", a->name, a->choices);
		return -1;
	case ARG_STR:
	case ARG_HEX:
		if (!json_is_string(v))
			break;
		len = (long long)json_string_length(v);
		if (a->type == ARG_HEX && !is_hex(json_string_value(v), (size_t)len)) {
			snprintf(why, whylen, "%s: must be an even number of hex digits", a->name);
			return -1;
		}
		if (len < a->min || len > a->max) {
			snprintf(why, whylen, "%s: length must be between %lld and %lld", a->name,
			         a->min, a->max);
			return -1;
		}
		return 0;
	case ARG_ARRAY:
		if (!json_is_array(v))
			break;
		len = (long long)json_array_size(v);
		if (len < a->min || len > a->max) {
			snprintf(why, whylen, "%s: must have between %lld and %lld items", a->name,
			         a->min, a->max);
			return -1;
		}
		return 0;
	case ARG_OBJECT:
		if (json_is_object(v))
			return 0;
		break;
	case ARG_BLOB:
		if (json_is_string(v) && is_blob_id(json_string_value(v)))
			return 0;
		snprintf(why, whylen, "%s: must be a blob id (64 lowercase hex digits)", a->name);
		return -1;
	}
	static const char *const tname[] = {"",          "an integer",   "a string",
	                                    "a boolean", "a hex string", "a string",
	                                    "an array",  "an object"};
	snprintf(why, whylen, "%s: must be %s", a->name, tname[a->type]);
	return -1;
}

int schema_check(const struct verb_spec *spec, json_t *args, char *why, size_t whylen)
{
	const char *key;
	json_t *v;

	json_object_foreach(args, key, v)
	{
		const struct arg_spec *a = spec->args;
		while (a && a->name && strcmp(a->name, key) != 0)
			a++;
		if (!a || !a->name) {
			snprintf(why, whylen, "unknown argument '%.64s' for %s", key, spec->verb);
			return -1;
		}
		if (check_one(a, v, why, whylen) < 0)
			return -1;
	}
	for (const struct arg_spec *a = spec->args; a && a->name; a++) {
		if (a->required && !json_object_get(args, a->name)) {
			snprintf(why, whylen, "missing argument '%s'", a->name);
			return -1;
		}
	}
	return spec->check ? spec->check(args, why, whylen) : 0;
}

static int check_card_addr(json_t *args, char *why, size_t whylen)
{
	int bytes = json_object_get(args, "offset") || json_object_get(args, "length");
	int blocks = json_object_get(args, "block") || json_object_get(args, "blocks");

	if (bytes && blocks) {
		snprintf(why, whylen,
		         "give offset/length (SLE4442) or block/blocks (MIFARE), "
		         "not both");
		return -1;
	}
	if (json_object_get(args, "blocks") && !json_object_get(args, "block")) {
		snprintf(why, whylen, "blocks: needs block");
		return -1;
	}
	return 0;
}

static int check_card_write(json_t *args, char *why, size_t whylen)
{
	int off = json_object_get(args, "offset") != NULL,
	    blk = json_object_get(args, "block") != NULL;

	if (off && blk) {
		snprintf(why, whylen, "give offset (SLE4442) or block (MIFARE), not both");
		return -1;
	}
	if (!off && !blk) {
		snprintf(why, whylen, "missing argument 'offset'");
		return -1;
	}
	if (!json_object_get(args, "data")) {
		snprintf(why, whylen, "missing argument 'data'");
		return -1;
	}
	if (blk && json_string_length(json_object_get(args, "data")) % 32) {
		snprintf(why, whylen,
		         "data: must be whole 16-byte blocks (a multiple of 32 hex "
		         "digits) with block");
		return -1;
	}
	return 0;
}

static int check_card_verify(json_t *args, char *why, size_t whylen)
{
	if (json_string_length(json_object_get(args, "psc")) == 6)
		return 0;
	snprintf(why, whylen, "psc: must be 3 bytes (6 hex digits)");
	return -1;
}

static int check_play(json_t *args, char *why, size_t whylen)
{
	int n = !!json_object_get(args, "file") + !!json_object_get(args, "blob") +
	        !!json_object_get(args, "tts");
	if (n == 1)
		return 0;
	snprintf(why, whylen, "play needs exactly one of 'file', 'blob' or 'tts'");
	return -1;
}

/* A printable document is an array of blocks, each an object with exactly
 * one kind key (text, qr, barcode, image, feed, cut) and that kind's
 * options; see docs/protocol.md "printer". */
static const struct arg_spec block_text[] = {
        {"text", ARG_STR, 1, 0, 65536, NULL},
        {"align", ARG_ENUM, 0, 0, 0, "left|center|right"},
        {"bold", ARG_BOOL, 0, 0, 0, NULL},
        {"double", ARG_BOOL, 0, 0, 0, NULL},
        END,
};
static const struct arg_spec block_qr[] = {
        {"qr", ARG_STR, 1, 1, 2000, NULL},
        {"size", ARG_INT, 0, 1, 16, NULL},
        {"align", ARG_ENUM, 0, 0, 0, "left|center|right"},
        END,
};
static const struct arg_spec block_barcode[] = {
        {"barcode", ARG_STR, 1, 1, 64, NULL},
        {"symbology", ARG_ENUM, 0, 0, 0, "code128|ean13|code39"},
        {"align", ARG_ENUM, 0, 0, 0, "left|center|right"},
        END,
};
static const struct arg_spec block_image[] = {
        {"image", ARG_BLOB, 1, 64, 64, NULL},
        {"align", ARG_ENUM, 0, 0, 0, "left|center|right"},
        END,
};
static const struct arg_spec block_feed[] = {
        {"feed", ARG_INT, 1, 1, 255, NULL},
        END,
};
static const struct arg_spec block_cut[] = {
        {"cut", ARG_ENUM, 0, 0, 0, "full|partial"},
        END,
};
static const struct verb_spec block_kinds[] = {
        {"text", block_text, NULL},   {"qr", block_qr, NULL},     {"barcode", block_barcode, NULL},
        {"image", block_image, NULL}, {"feed", block_feed, NULL}, {"cut", block_cut, NULL},
        {NULL, NULL, NULL},
};

static int check_blocks(json_t *args, char *why, size_t whylen);

/* Exactly one of blocks/document; the job options belong to a document
 * (a receipt printer has no copies, media or duplex). */
static int check_print(json_t *args, char *why, size_t whylen)
{
	static const char *const doc_only[] = {"copies", "media", "sides"};
	int blocks = json_object_get(args, "blocks") != NULL;

	if (blocks && json_object_get(args, "document")) {
		snprintf(why, whylen, "print needs exactly one of 'blocks' or 'document'");
		return -1;
	}
	/* neither: the receipt spelling, as before documents existed */
	if (!blocks && !json_object_get(args, "document")) {
		snprintf(why, whylen, "missing argument 'blocks'");
		return -1;
	}
	for (size_t i = 0; blocks && i < sizeof(doc_only) / sizeof(doc_only[0]); i++) {
		if (json_object_get(args, doc_only[i])) {
			snprintf(why, whylen, "%s: only with 'document'", doc_only[i]);
			return -1;
		}
	}
	return blocks ? check_blocks(args, why, whylen) : 0;
}

static int check_blocks(json_t *args, char *why, size_t whylen)
{
	size_t i;
	json_t *b;
	char inner[200];

	json_array_foreach(json_object_get(args, "blocks"), i, b)
	{
		const struct verb_spec *kind = NULL;
		if (!json_is_object(b)) {
			snprintf(why, whylen, "blocks[%zu]: must be an object", i);
			return -1;
		}
		for (const struct verb_spec *k = block_kinds; k->verb; k++) {
			if (!json_object_get(b, k->verb))
				continue;
			if (kind) {
				snprintf(why, whylen, "blocks[%zu]: has both '%s' and '%s'", i,
				         kind->verb, k->verb);
				return -1;
			}
			kind = k;
		}
		if (!kind) {
			snprintf(why, whylen,
			         "blocks[%zu]: needs one of text, qr, barcode, image, feed, cut",
			         i);
			return -1;
		}
		/* "cut": true is the usual spelling; check it as a full cut (the
		 * block's other keys still count) */
		json_t *copy = NULL;
		if (kind->args == block_cut && json_is_true(json_object_get(b, "cut"))) {
			copy = json_copy(b);
			json_object_set_new(copy, "cut", json_string("full"));
		}
		int rc = schema_check(kind, copy ? copy : b, inner, sizeof(inner));
		json_decref(copy);
		if (rc < 0) {
			snprintf(why, whylen, "blocks[%zu]: %s", i, inner);
			return -1;
		}
	}
	return 0;
}
