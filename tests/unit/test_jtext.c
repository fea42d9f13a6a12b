/* jtext.c against jansson, its reference: whatever jtext parses, jansson
 * parses to an equal value with its keys in the same order; whatever
 * jtext writes is byte for byte what json_dumpb writes.  And the fast
 * paths are taken for the protocol's everyday text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jtext.h"
#include "util.h"

/* jansson's compact text of v (keys in insertion order). */
static char *ref_dump(const json_t *v)
{
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* The invariants on one input; 1 when jtext took it. */
static int same_as_jansson(const char *s, size_t len)
{
	json_t *a = jtext_parse(s, len);
	json_t *b = json_loadb(s, len, JSON_REJECT_DUPLICATES, NULL);
	int fast = a != NULL;

	if (a) {
		assert_non_null(b);
		assert_true(json_equal(a, b));
		char *da = ref_dump(a), *db = ref_dump(b);
		assert_string_equal(da, db);
		free(da);
		free(db);
	}
	if (b) {
		char buf[8192], *want = ref_dump(b);
		size_t n = jtext_dump(b, buf, sizeof(buf));
		if (n) {
			assert_true(n <= sizeof(buf));
			assert_int_equal(n, strlen(want));
			assert_memory_equal(buf, want, n);
		}
		free(want);
	}
	json_decref(a);
	json_decref(b);
	return fast;
}

static void parsed(const char *s)
{
	assert_true(same_as_jansson(s, strlen(s)));
}

static void declined(const char *s)
{
	assert_false(same_as_jansson(s, strlen(s)));
}

static void test_parse_everyday(void **state)
{
	(void)state;
	parsed("{\"id\":1,\"cmd\":\"hello\"}");
	parsed("{\"id\":12,\"cmd\":\"txn.submit\",\"args\":{\"type\":\"gas.topup\","
	       "\"payload\":{\"card\":\"8860012345\",\"amount_fen\":5000,\"order\":\"P-1\"},"
	       "\"pii\":[\"card\"],\"flow\":\"f-1\",\"final\":false}}");
	parsed("  {\"id\":\"abc\", \"cmd\" : \"printer.print\" ,\"args\":{\"lines\":[\"\xe6\x94\xb6"
	       "\xe6\x8d\xae\",\"x\"],\"cut\":true,\"n\":null}}\r\n");
	parsed("{}");
	parsed("{\"a\":[]}");
	parsed("{\"a\":[[],[{}],{\"b\":[1,-2,0,-0]}]}");
	parsed("{\"\":\"\"}");
	parsed("{\"esc\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\"}");
	parsed("{\"n\":999999999999999999,\"m\":-999999999999999999}");
	parsed("{\"emoji\":\"\xf0\x9f\x98\x80\",\"del\":\"\x7f\"}");
	parsed("{\"t\":true,\"f\":false,\"z\":null}");
}

static void test_parse_declines(void **state)
{
	(void)state;
	/* what jansson has to decide or word */
	declined("");
	declined("   ");
	declined("[1,2]");
	declined("\"s\"");
	declined("{\"a\":1.5}");
	declined("{\"a\":1e3}");
	declined("{\"a\":1E3}");
	declined("{\"a\":1000000000000000000}");
	declined("{\"a\":99999999999999999999999}");
	declined("{\"a\":01}");
	declined("{\"a\":-}");
	declined("{\"a\":\"\\u00e9\"}");
	declined("{\"a\":\"\\x\"}");
	declined("{\"a\":\"tab\there\"}");
	declined("{\"a\":\"\xc3\"}");
	declined("{\"a\":\"\xed\xa0\x80\"}");
	declined("{\"a\":1,\"a\":2}");
	declined("{\"a\":tru}");
	declined("{\"a\":truex}");
	declined("{\"a\":nullnull}");
	declined("{\"a\":1,}");
	declined("{\"a\":[1,]}");
	declined("{\"a\" 1}");
	declined("{a:1}");
	declined("{\"a\":1}x");
	declined("{\"a\":1}{}");
	declined("{\"a\":1");
	declined("{\"a\":\"open");
	declined("\xef\xbb\xbf{}");
	assert_false(same_as_jansson("{\"a\":\"x\0y\"}", 11));
	assert_false(same_as_jansson("{}\0", 3));
}

/* {"a":[[...]]} with its arrays making it depth levels deep; its length. */
static size_t nested(char *out, int depth)
{
	size_t n = 0;
	out[n++] = '{';
	memcpy(out + n, "\"a\":", 4);
	n += 4;
	for (int i = 1; i < depth; i++)
		out[n++] = '[';
	for (int i = 1; i < depth; i++)
		out[n++] = ']';
	out[n++] = '}';
	return n;
}

static void test_parse_depth(void **state)
{
	(void)state;
	char deep[256];
	size_t n = nested(deep, JTEXT_MAX_DEPTH);
	assert_true(same_as_jansson(deep, n));
	/* one deeper: declined, and jansson still takes it */
	n = nested(deep, JTEXT_MAX_DEPTH + 1);
	assert_false(same_as_jansson(deep, n));
	json_t *v = json_loadb(deep, n, 0, NULL);
	assert_non_null(v);
	json_decref(v);
}

/* jtext_dump of v: the same bytes as jansson, or declined. */
static size_t dumped(json_t *v, int want_fast)
{
	char buf[4096];
	char *want = json_dumps(v, JSON_COMPACT);
	size_t n = jtext_dump(v, buf, sizeof(buf));

	if (want_fast) {
		assert_non_null(want);
		assert_int_equal(n, strlen(want));
		assert_memory_equal(buf, want, n);
	} else {
		assert_int_equal(n, 0);
	}
	free(want);
	json_decref(v);
	return n;
}

static void test_dump(void **state)
{
	(void)state;
	char all[128];
	for (int i = 0; i < 128; i++)
		all[i] = (char)i; /* every control byte, NUL included, and DEL */
	json_t *o = json_object();
	json_object_set_new(o, "ascii", json_stringn(all, sizeof(all)));
	json_object_set_new(o, "cjk", json_string("\xe5\xa4\xa9\xe7\x84\xb6\xe6\xb0\x94"));
	json_object_set_new(o, "k\"\\\n", json_string("/"));
	json_object_set_new(o, "min", json_integer(INT64_MIN));
	json_object_set_new(o, "max", json_integer(INT64_MAX));
	json_object_set_new(o, "zero", json_integer(0));
	json_object_set_new(o, "a", json_pack("[{},[],true,false,null,-1]"));
	dumped(o, 1);
	/* a key with a NUL in it (only setn makes one) */
	o = json_object();
	json_object_setn_new(o, "a\0b", 3, json_true());
	dumped(o, 1);
	/* declined: reals anywhere, text jansson refuses, bare values, depth */
	dumped(json_pack("{s:[i,f]}", "x", 1, 0.5), 0);
	o = json_object();
	json_object_set_new(o, "bad", json_stringn_nocheck("\xc3(", 2));
	dumped(o, 0);
	dumped(json_string("bare"), 0);
	json_t *deep = json_array(), *in = deep;
	for (int i = 1; i < JTEXT_MAX_DEPTH; i++) {
		json_t *next = json_array();
		json_array_append_new(in, next);
		in = next;
	}
	dumped(json_incref(deep), 1);
	json_array_append_new(in, json_array());
	dumped(deep, 0);
}

static void test_dump_small_buffer(void **state)
{
	(void)state;
	json_t *v = json_pack("{s:s,s:i}", "txn_id", "01JB6Z", "n", 42);
	char buf[16];
	memset(buf, '#', sizeof(buf));
	/* the whole length is told; nothing is written past the size */
	size_t n = jtext_dump(v, buf, 8);
	assert_int_equal(n, strlen("{\"txn_id\":\"01JB6Z\",\"n\":42}"));
	assert_memory_equal(buf + 8, "########", 8);
	char *s = jtext_dumps(v);
	assert_string_equal(s, "{\"txn_id\":\"01JB6Z\",\"n\":42}");
	free(s);
	/* longer than jtext_dumps' own buffer, and one it declines */
	json_t *big = json_array();
	for (int i = 0; i < 200; i++)
		json_array_append_new(big, json_string("0123456789"));
	s = jtext_dumps(big);
	char *want = json_dumps(big, JSON_COMPACT);
	assert_string_equal(s, want);
	free(s);
	free(want);
	json_array_append_new(big, json_real(2.5));
	s = jtext_dumps(big);
	want = json_dumps(big, JSON_COMPACT);
	assert_string_equal(s, want);
	free(s);
	free(want);
	json_decref(big);
	json_decref(v);
}

/* json_line goes through jtext, and through jansson (reals to 12 digits)
 * when jtext declines. */
/* The success envelope written directly is the text of the object
 * req.c used to json_pack: every id type, a missing result, a nested one. */
static void test_reply_ok(void **state)
{
	(void)state;
	json_t *ids[] = {json_integer(7), json_integer(-9223372036854775807LL - 1),
	                 json_string("a\"b\\c\x01\xe4\xb8\xad"), json_null(), json_true(),
	                 json_pack("{s:i}", "k", 1), NULL};
	json_t *results[] = {json_pack("{s:s,s:s,s:s}", "txn_id", "01JB6Z", "state", "queued",
	                               "endpoint", "gov"),
	                     json_pack("{s:[i,s,{}],s:null}", "a", 1, "\xe6\x96\x87", "b"),
	                     json_object(), NULL};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		for (size_t k = 0; k < sizeof(results) / sizeof(results[0]); k++) {
			json_t *env = json_pack("{s:O,s:b,s:o}", "id", ids[i] ? ids[i] : json_null(),
			                        "ok", 1, "result",
			                        results[k] ? json_incref(results[k]) : json_object());
			char *want = json_dumps(env, JSON_COMPACT), buf[512];
			size_t n = jtext_reply_ok(ids[i], results[k], buf, sizeof(buf));
			assert_non_null(want);
			assert_int_equal(n, strlen(want));
			assert_memory_equal(buf, want, n);
			/* too small: the length is still told, nothing written past */
			memset(buf, '#', sizeof(buf));
			assert_int_equal(jtext_reply_ok(ids[i], results[k], buf, 10), n);
			assert_memory_equal(buf + 10, "####", 4);
			free(want);
			json_decref(env);
		}
	/* reals are jansson's to write */
	json_t *real = json_pack("{s:f}", "t", 21.5);
	char buf[64];
	assert_int_equal(jtext_reply_ok(ids[0], real, buf, sizeof(buf)), 0);
	assert_int_equal(jtext_reply_ok(real, NULL, buf, sizeof(buf)), 0);
	json_decref(real);
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		json_decref(ids[i]);
	for (size_t k = 0; k < sizeof(results) / sizeof(results[0]); k++)
		json_decref(results[k]);
}

static void test_json_line(void **state)
{
	(void)state;
	char buf[64];
	size_t len;
	json_t *v = json_pack("{s:i,s:b}", "id", 7, "ok", 1);
	char *line = json_line(v, buf, sizeof(buf), &len);
	assert_ptr_equal(line, buf);
	assert_int_equal(len, strlen("{\"id\":7,\"ok\":true}\n"));
	assert_memory_equal(line, "{\"id\":7,\"ok\":true}\n", len);
	json_object_set_new(v, "t", json_real(1.0 / 3));
	line = json_line(v, buf, sizeof(buf), &len);
	assert_memory_equal(line, "{\"id\":7,\"ok\":true,\"t\":0.333333333333}\n", len);
	json_object_set_new(v, "long", json_string("a string longer than the line buffer is"));
	line = json_line(v, buf, sizeof(buf), &len);
	assert_ptr_not_equal(line, buf);
	assert_memory_equal(line + len - 4, "s\"}\n", 4);
	free(line);
	json_decref(v);
}

/* Mutations of everyday requests, each checked against jansson. */
static void test_mutations(void **state)
{
	(void)state;
	static const char *seeds[] = {
	        "{\"id\":1,\"cmd\":\"hello\"}",
	        "{\"id\":12,\"cmd\":\"txn.submit\",\"args\":{\"type\":\"gas.topup\",\"payload\":"
	        "{\"card\":\"8860012345\",\"amount_fen\":5000},\"pii\":[\"card\"]}}",
	        "{\"id\":\"x\",\"cmd\":\"a\",\"args\":{\"l\":[\"\xe6\x94\xb6\",true,null,[-3]]}}",
	        "{\"e\":\"\\n\\t\\\"\",\"f\":false}",
	};
	static const char alphabet[] = "{}[]\":,\\ -019.eEtrufalsn\x80\xc3\xa9\xe6\x00\t\n";
	unsigned long x = 88172645463325252ul;
	long fast = 0, total = 0;

	for (int round = 0; round < 60000; round++) {
		char buf[512];
		const char *seed = seeds[round % 4];
		size_t n = strlen(seed);
		memcpy(buf, seed, n);
		int edits = 1 + (int)(round % 3);
		for (int e = 0; e < edits; e++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t at = (size_t)(x % (n + 1));
			char c = alphabet[(x >> 20) % (sizeof(alphabet) - 1)];
			switch ((x >> 40) % 3) {
			case 0: /* replace */
				if (at < n)
					buf[at] = c;
				break;
			case 1: /* insert */
				if (n < sizeof(buf) - 1) {
					memmove(buf + at + 1, buf + at, n - at);
					buf[at] = c;
					n++;
				}
				break;
			default: /* delete */
				if (at < n) {
					memmove(buf + at, buf + at + 1, n - at - 1);
					n--;
				}
			}
		}
		fast += same_as_jansson(buf, n);
		total++;
	}
	/* the test would say nothing if every mutant were declined */
	assert_true(fast > total / 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_everyday),   cmocka_unit_test(test_parse_declines),
	        cmocka_unit_test(test_parse_depth),      cmocka_unit_test(test_dump),
	        cmocka_unit_test(test_dump_small_buffer), cmocka_unit_test(test_json_line),
	        cmocka_unit_test(test_reply_ok),
	        cmocka_unit_test(test_mutations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
