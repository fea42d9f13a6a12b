/* schema.c: class names, verbs and every argument check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

static const struct verb_spec *verb(enum kiosk_class cls, const char *name)
{
	const struct verb_spec *v = schema_verb(cls, name);
	assert_non_null(v);
	assert_string_equal(v->verb, name);
	return v;
}

/* Check args (JSON text, or NULL for no args object) against cls.verb:
 * want_why NULL means accepted, else refused with exactly that reason. */
static void check(enum kiosk_class cls, const char *name, const char *args_json,
                  const char *want_why)
{
	const struct verb_spec *v = verb(cls, name);
	json_error_t err;
	json_t *args = NULL;
	char why[256] = "";

	if (args_json) {
		args = json_loads(args_json, 0, &err);
		if (!args)
			fail_msg("bad test JSON %s: %s", args_json, err.text);
	}
	int rc = schema_check(v, args, why, sizeof(why));
	json_decref(args);
	if (!want_why) {
		if (rc != 0)
			fail_msg("%s.%s %s refused: %s", schema_class_name(cls), name, args_json,
			         why);
	} else {
		if (rc != -1)
			fail_msg("%s.%s %s accepted, wanted: %s", schema_class_name(cls), name,
			         args_json, want_why);
		assert_string_equal(why, want_why);
	}
}

/* JSON text of a string argument: {"<key>": "<c repeated n times>"} */
static char *str_arg(const char *key, char c, size_t n)
{
	char *s = malloc(n + strlen(key) + 16);
	int k = sprintf(s, "{\"%s\": \"", key);
	memset(s + k, c, n);
	strcpy(s + k + n, "\"}");
	return s;
}

#define CARD    KIOSK_CLASS_CARDREADER
#define PRINTER KIOSK_CLASS_PRINTER

static void test_class_names(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		enum kiosk_class cls;
	} all[] = {
	        {"cardreader", KIOSK_CLASS_CARDREADER}, {"printer", KIOSK_CLASS_PRINTER},
	        {"scanner", KIOSK_CLASS_SCANNER},       {"idreader", KIOSK_CLASS_IDREADER},
	        {"camera", KIOSK_CLASS_CAMERA},         {"audio", KIOSK_CLASS_AUDIO},
	        {"barcode", KIOSK_CLASS_BARCODE},       {"locker", KIOSK_CLASS_LOCKER},
	        {"sensor", KIOSK_CLASS_SENSOR},         {"actuator", KIOSK_CLASS_ACTUATOR},
	};
	unsigned seen = 0;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		assert_int_equal(schema_class_by_name(all[i].name), all[i].cls);
		assert_string_equal(schema_class_name(all[i].cls), all[i].name);
		/* every class has status */
		assert_non_null(schema_verb(all[i].cls, "status"));
		seen |= all[i].cls;
	}
	assert_int_equal(seen, KIOSK_CLASS_ALL);
	assert_int_equal(schema_class_by_name("Printer"), 0);
	assert_int_equal(schema_class_by_name("print"), 0);
	assert_int_equal(schema_class_by_name(""), 0);
	assert_int_equal(schema_class_by_name(NULL), 0);
	assert_string_equal(schema_class_name(0), "unknown");
	assert_string_equal(schema_class_name(KIOSK_CLASS_PRINTER | KIOSK_CLASS_CAMERA), "unknown");
}

static void test_verbs(void **state)
{
	(void)state;
	verb(CARD, "read");
	verb(CARD, "write");
	verb(CARD, "apdu");
	verb(CARD, "eject");
	verb(CARD, "wait");
	verb(PRINTER, "print");
	verb(KIOSK_CLASS_SCANNER, "scan");
	verb(KIOSK_CLASS_AUDIO, "play");
	verb(KIOSK_CLASS_LOCKER, "open");
	verb(KIOSK_CLASS_ACTUATOR, "set");
	assert_null(schema_verb(CARD, "print"));
	assert_null(schema_verb(CARD, "rea"));
	assert_null(schema_verb(CARD, ""));
	assert_null(schema_verb(0, "status"));
	assert_null(schema_verb(PRINTER, "text")); /* a block kind, not a verb */

	json_t *v = schema_verbs_json(PRINTER), *want = json_pack("[s,s]", "status", "print");
	assert_true(json_equal(v, want));
	json_decref(v);
	json_decref(want);
	v = schema_verbs_json(0);
	assert_true(json_is_array(v));
	assert_int_equal(json_array_size(v), 0);
	json_decref(v);
}

static void test_int(void **state)
{
	(void)state;
	check(CARD, "read", "{}", NULL);
	check(CARD, "read", NULL, NULL);
	check(CARD, "read", "{\"offset\": 0, \"length\": 1}", NULL);
	check(CARD, "read", "{\"offset\": 65535, \"length\": 4096}", NULL);
	check(CARD, "read", "{\"offset\": -1}", "offset: must be between 0 and 65535");
	check(CARD, "read", "{\"offset\": 65536}", "offset: must be between 0 and 65535");
	check(CARD, "read", "{\"length\": 0}", "length: must be between 1 and 4096");
	check(CARD, "read", "{\"length\": 9223372036854775807}",
	      "length: must be between 1 and 4096");
	check(CARD, "read", "{\"offset\": \"1\"}", "offset: must be an integer");
	check(CARD, "read", "{\"offset\": 1.0}", "offset: must be an integer");
	check(CARD, "read", "{\"offset\": true}", "offset: must be an integer");
	check(CARD, "read", "{\"offset\": null}", "offset: must be an integer");
	check(KIOSK_CLASS_LOCKER, "open", "{\"door\": 1000}", NULL);
	check(KIOSK_CLASS_LOCKER, "open", "{\"door\": 1001}", "door: must be between 1 and 1000");
}

static void test_bool(void **state)
{
	(void)state;
	check(KIOSK_CLASS_AUDIO, "record", "{\"duration_ms\": 100, \"noise_suppression\": true}",
	      NULL);
	check(KIOSK_CLASS_AUDIO, "record", "{\"duration_ms\": 100, \"noise_suppression\": false}",
	      NULL);
	check(KIOSK_CLASS_AUDIO, "record", "{\"duration_ms\": 100, \"noise_suppression\": 1}",
	      "noise_suppression: must be true or false");
	check(KIOSK_CLASS_AUDIO, "record", "{\"duration_ms\": 100, \"noise_suppression\": \"yes\"}",
	      "noise_suppression: must be true or false");
}

static void test_enum(void **state)
{
	(void)state;
	const enum kiosk_class sc = KIOSK_CLASS_SCANNER;
	check(sc, "scan", "{\"mode\": \"color\"}", NULL);
	check(sc, "scan", "{\"mode\": \"gray\"}", NULL);
	check(sc, "scan", "{\"mode\": \"lineart\"}", NULL);
	check(sc, "scan", "{\"mode\": \"sepia\"}", "mode: must be one of color|gray|lineart");
	/* whole choices only: no prefixes, no run-ons, no separators */
	check(sc, "scan", "{\"mode\": \"colo\"}", "mode: must be one of color|gray|lineart");
	check(sc, "scan", "{\"mode\": \"colors\"}", "mode: must be one of color|gray|lineart");
	check(sc, "scan", "{\"mode\": \"color|gray\"}", "mode: must be one of color|gray|lineart");
	check(sc, "scan", "{\"mode\": \"\"}", "mode: must be one of color|gray|lineart");
	check(sc, "scan", "{\"mode\": \"Color\"}", "mode: must be one of color|gray|lineart");
	check(sc, "scan", "{\"mode\": 1}", "mode: must be one of color|gray|lineart");
	check(sc, "scan", "{\"source\": \"adf\", \"pages\": 100, \"resolution\": 1200}", NULL);
	check(sc, "scan", "{\"resolution\": 49}", "resolution: must be between 50 and 1200");
}

static void test_hex(void **state)
{
	(void)state;
	check(CARD, "write", "{\"offset\": 0, \"data\": \"00\"}", NULL);
	check(CARD, "write", "{\"offset\": 0, \"data\": \"0123456789abcdefABCDEF\"}", NULL);
	check(CARD, "write", "{\"offset\": 0, \"data\": \"abc\"}",
	      "data: must be an even number of hex digits");
	check(CARD, "write", "{\"offset\": 0, \"data\": \"zz\"}",
	      "data: must be an even number of hex digits");
	check(CARD, "write", "{\"offset\": 0, \"data\": \"0x00\"}",
	      "data: must be an even number of hex digits");
	check(CARD, "write", "{\"offset\": 0, \"data\": \"00 11\"}",
	      "data: must be an even number of hex digits");
	check(CARD, "write", "{\"offset\": 0, \"data\": \"\"}",
	      "data: length must be between 2 and 8192");
	check(CARD, "write", "{\"offset\": 0, \"data\": 12}", "data: must be a hex string");
	/* short APDUs only */
	check(CARD, "apdu", "{\"apdu\": \"00a40400\"}", NULL);
	check(CARD, "apdu", "{\"apdu\": \"00a404\"}", "apdu: length must be between 8 and 522");
	char *s = str_arg("apdu", 'f', 522);
	check(CARD, "apdu", s, NULL);
	free(s);
	s = str_arg("apdu", 'f', 524);
	check(CARD, "apdu", s, "apdu: length must be between 8 and 522");
	free(s);
}

static void test_string(void **state)
{
	(void)state;
	const enum kiosk_class ac = KIOSK_CLASS_ACTUATOR;
	check(ac, "set", "{\"output\": \"heater\", \"on\": true, \"level\": 100}", NULL);
	check(ac, "set", "{\"output\": \"\"}", "output: length must be between 1 and 64");
	char *s = str_arg("output", 'x', 64);
	check(ac, "set", s, NULL);
	free(s);
	s = str_arg("output", 'x', 65);
	check(ac, "set", s, "output: length must be between 1 and 64");
	free(s);
	check(ac, "set", "{\"output\": [\"heater\"]}", "output: must be a string");
	check(ac, "set", "{\"output\": \"fan\", \"level\": 101}",
	      "level: must be between 0 and 100");
}

static void test_array(void **state)
{
	(void)state;
	check(PRINTER, "print", "{\"blocks\": [{\"text\": \"hi\"}]}", NULL);
	check(PRINTER, "print", "{\"blocks\": []}", "blocks: must have between 1 and 1000 items");
	check(PRINTER, "print", "{\"blocks\": {\"text\": \"hi\"}}", "blocks: must be an array");

	json_t *blocks = json_array();
	for (int i = 0; i < 1001; i++)
		json_array_append_new(blocks, json_pack("{s:i}", "feed", 1));
	json_t *args = json_pack("{s:o}", "blocks", blocks);
	char why[256];
	const struct verb_spec *v = verb(PRINTER, "print");
	assert_int_equal(schema_check(v, args, why, sizeof(why)), -1);
	assert_string_equal(why, "blocks: must have between 1 and 1000 items");
	json_array_remove(blocks, 0);
	assert_int_equal(schema_check(v, args, why, sizeof(why)), 0);
	json_decref(args);
}

static void test_unknown_and_missing(void **state)
{
	(void)state;
	check(CARD, "read", "{\"offset\": 1, \"foo\": 2}", "unknown argument 'foo' for read");
	check(CARD, "eject", "{\"now\": true}", "unknown argument 'now' for eject");
	check(CARD, "write", "{\"data\": \"00\"}", "missing argument 'offset'");
	check(CARD, "write", "{\"offset\": 1}", "missing argument 'data'");
	check(CARD, "write", "{}", "missing argument 'offset'");
	check(CARD, "write", NULL, "missing argument 'offset'");
	check(PRINTER, "print", NULL, "missing argument 'blocks'");
	/* a long unknown key is cut in the message */
	char key[200], json[300], want[200];
	memset(key, 'k', 100);
	key[100] = 0;
	snprintf(json, sizeof(json), "{\"%s\": 1}", key);
	snprintf(want, sizeof(want), "unknown argument '%.64s' for read", key);
	check(CARD, "read", json, want);
}

static void test_printer_blocks(void **state)
{
	(void)state;
	check(PRINTER, "print",
	      "{\"blocks\": ["
	      "{\"text\": \"\\u6536\\u636e\", \"align\": \"center\", \"bold\": true, \"double\": "
	      "false},"
	      "{\"text\": \"\"},"
	      "{\"qr\": \"https://example.org/pay?o=1\", \"size\": 8},"
	      "{\"barcode\": \"4006381333931\", \"symbology\": \"ean13\", \"align\": \"right\"},"
	      "{\"image\": "
	      "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"},"
	      "{\"feed\": 3},"
	      "{\"cut\": \"partial\"},"
	      "{\"cut\": \"full\"},"
	      "{\"cut\": true},"
	      "{}"
	      "]}",
	      "blocks[9]: needs one of text, qr, barcode, image, feed, cut");
	check(PRINTER, "print", "{\"blocks\": [{\"align\": \"left\"}]}",
	      "blocks[0]: needs one of text, qr, barcode, image, feed, cut");
	check(PRINTER, "print", "{\"blocks\": [{\"text\": \"a\", \"qr\": \"b\"}]}",
	      "blocks[0]: has both 'text' and 'qr'");
	check(PRINTER, "print", "{\"blocks\": [{\"feed\": 1, \"cut\": true}]}",
	      "blocks[0]: has both 'feed' and 'cut'");
	check(PRINTER, "print", "{\"blocks\": [{\"text\": \"a\"}, 7]}",
	      "blocks[1]: must be an object");
	check(PRINTER, "print", "{\"blocks\": [{\"text\": \"a\"}, {\"qr\": \"x\", \"size\": 99}]}",
	      "blocks[1]: size: must be between 1 and 16");
	check(PRINTER, "print", "{\"blocks\": [{\"text\": \"a\", \"bogus\": 1}]}",
	      "blocks[0]: unknown argument 'bogus' for text");
	check(PRINTER, "print", "{\"blocks\": [{\"text\": \"a\", \"size\": 2}]}",
	      "blocks[0]: unknown argument 'size' for text");
	check(PRINTER, "print", "{\"blocks\": [{\"text\": null}]}",
	      "blocks[0]: text: must be a string");
	check(PRINTER, "print", "{\"blocks\": [{\"qr\": \"\"}]}",
	      "blocks[0]: qr: length must be between 1 and 2000");
	check(PRINTER, "print", "{\"blocks\": [{\"barcode\": \"1\", \"symbology\": \"upc\"}]}",
	      "blocks[0]: symbology: must be one of code128|ean13|code39");
	check(PRINTER, "print", "{\"blocks\": [{\"image\": \"abcd\"}]}",
	      "blocks[0]: image: must be a blob id (64 lowercase hex digits)");
	check(PRINTER, "print", "{\"blocks\": [{\"feed\": 0}]}",
	      "blocks[0]: feed: must be between 1 and 255");
	check(PRINTER, "print", "{\"blocks\": [{\"cut\": \"half\"}]}",
	      "blocks[0]: cut: must be one of full|partial");
	check(PRINTER, "print", "{\"blocks\": [{\"cut\": false}]}",
	      "blocks[0]: cut: must be one of full|partial");
	/* "cut": true is a full cut, with no other keys allowed either */
	check(PRINTER, "print", "{\"blocks\": [{\"cut\": true, \"bogus\": 1}]}",
	      "blocks[0]: unknown argument 'bogus' for cut");
	check(PRINTER, "print", "{\"blocks\": [{\"cut\": true, \"align\": \"left\"}]}",
	      "blocks[0]: unknown argument 'align' for cut");
	/* the whole document is not touched by the check */
	const char *doc = "{\"blocks\": [{\"cut\": true}]}";
	json_t *args = json_loads(doc, 0, NULL), *copy = json_deep_copy(args);
	char why[256];
	assert_int_equal(schema_check(verb(PRINTER, "print"), args, why, sizeof(why)), 0);
	assert_true(json_equal(args, copy));
	json_decref(args);
	json_decref(copy);
}

static void test_audio_play(void **state)
{
	(void)state;
	const enum kiosk_class au = KIOSK_CLASS_AUDIO;
	const char *one = "play needs exactly one of 'file', 'blob' or 'tts'";
	check(au, "play", "{\"file\": \"/usr/share/kioskd/welcome.wav\"}", NULL);
	check(au, "play", "{\"tts\": \"\\u6b22\\u8fce\"}", NULL);
	check(au, "play",
	      "{\"blob\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}",
	      NULL);
	check(au, "play", "{}", one);
	check(au, "play", NULL, one);
	check(au, "play", "{\"file\": \"a\", \"tts\": \"b\"}", one);
	check(au, "play",
	      "{\"file\": \"a\", \"blob\": \"" /* 64 */
	      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}",
	      one);
	check(au, "play", "{\"blob\": \"abcd\"}", "blob: must be a blob id (64 lowercase hex digits)");
	/* ids are lowercase: an uppercase one would pass here and fail in blob_get */
	check(au, "play",
	      "{\"blob\": \"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\"}",
	      "blob: must be a blob id (64 lowercase hex digits)");
	check(au, "play", "{\"file\": \"\"}", "file: length must be between 1 and 4096");
	check(au, "volume", "{\"level\": 0}", NULL);
	check(au, "volume", "{}", "missing argument 'level'");
	check(au, "record", "{\"duration_ms\": 99}", "duration_ms: must be between 100 and 600000");
}

static void test_small_why(void **state)
{
	(void)state;
	/* a short buffer gets a cut, terminated message */
	char why[8];
	json_t *args = json_pack("{s:i}", "offset", -1);
	assert_int_equal(schema_check(verb(CARD, "read"), args, why, sizeof(why)), -1);
	assert_string_equal(why, "offset:");
	json_decref(args);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_class_names),
	        cmocka_unit_test(test_verbs),
	        cmocka_unit_test(test_int),
	        cmocka_unit_test(test_bool),
	        cmocka_unit_test(test_enum),
	        cmocka_unit_test(test_hex),
	        cmocka_unit_test(test_string),
	        cmocka_unit_test(test_array),
	        cmocka_unit_test(test_unknown_and_missing),
	        cmocka_unit_test(test_printer_blocks),
	        cmocka_unit_test(test_audio_play),
	        cmocka_unit_test(test_small_why),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
