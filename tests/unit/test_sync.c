/* sync.c and http.c, the pure parts: the batch answer parser, backoff,
 * Retry-After, remote.call's path check, Idempotency-Key, the HMAC
 * signature, body excerpts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "sync.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *const ids3[] = {"t1", "t2", "t3"};

/* Parse body against ids3; returns sync_parse_results' value. */
static int parse3(const char *body, enum store_outcome out[3], char *reasons[3])
{
	return sync_parse_results(body, strlen(body), ids3, 3, out, reasons);
}

static void free3(char *reasons[3])
{
	for (int i = 0; i < 3; i++)
		free(reasons[i]);
}

static void test_parse_each_status(void **state)
{
	(void)state;
	enum store_outcome out[3];
	char *r[3];

	assert_int_equal(parse3("{\"results\":[{\"id\":\"t1\",\"status\":\"ok\"},"
	                        "{\"id\":\"t2\",\"status\":\"duplicate\"},"
	                        "{\"id\":\"t3\",\"status\":\"rejected\",\"reason\":\"card number "
	                        "unknown\"}]}",
	                        out, r),
	                 0);
	assert_int_equal(out[0], OUT_DELIVERED);
	assert_int_equal(out[1], OUT_DELIVERED);
	assert_int_equal(out[2], OUT_FAILED);
	assert_null(r[0]);
	assert_null(r[1]);
	assert_string_equal(r[2], "card number unknown");
	free3(r);

	/* in another order, with extra keys and unknown ids */
	assert_int_equal(parse3("{\"x\":1,\"results\":[{\"id\":\"zz\",\"status\":\"ok\"},"
	                        "{\"status\":\"ok\",\"id\":\"t3\",\"extra\":[1,2]},"
	                        "{\"id\":\"t1\",\"status\":\"rejected\"}]}",
	                        out, r),
	                 0);
	assert_int_equal(out[0], OUT_FAILED);
	assert_string_equal(r[0], "rejected"); /* no reason given */
	assert_int_equal(out[1], OUT_RETRY);   /* missing */
	assert_int_equal(out[2], OUT_DELIVERED);
	free3(r);
}

static void test_parse_missing_and_unknown(void **state)
{
	(void)state;
	enum store_outcome out[3];
	char *r[3];

	assert_int_equal(parse3("{\"results\":[]}", out, r), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(out[i], OUT_RETRY);
	free3(r);

	/* unknown status, a status of the wrong type, no id, an id of the
	 * wrong type, an item that is not an object */
	assert_int_equal(parse3("{\"results\":[{\"id\":\"t1\",\"status\":\"maybe\"},"
	                        "{\"id\":\"t2\",\"status\":1},{\"status\":\"ok\"},"
	                        "{\"id\":3,\"status\":\"ok\"},\"t3\",null,[\"t3\"]]}",
	                        out, r),
	                 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(out[i], OUT_RETRY);
		assert_null(r[i]);
	}
	free3(r);
	/* case matters */
	assert_int_equal(parse3("{\"results\":[{\"id\":\"T1\",\"status\":\"ok\"},"
	                        "{\"id\":\"t2\",\"status\":\"OK\"}]}",
	                        out, r),
	                 0);
	assert_int_equal(out[0], OUT_RETRY);
	assert_int_equal(out[1], OUT_RETRY);
	free3(r);
}

static void test_parse_duplicated_ids(void **state)
{
	(void)state;
	enum store_outcome out[3];
	char *r[3];

	/* the same answer twice is one answer; contradicting ones are none */
	assert_int_equal(parse3("{\"results\":[{\"id\":\"t1\",\"status\":\"ok\"},"
	                        "{\"id\":\"t1\",\"status\":\"duplicate\"},"
	                        "{\"id\":\"t2\",\"status\":\"ok\"},"
	                        "{\"id\":\"t2\",\"status\":\"rejected\",\"reason\":\"x\"},"
	                        "{\"id\":\"t2\",\"status\":\"ok\"},"
	                        "{\"id\":\"t3\",\"status\":\"rejected\",\"reason\":\"a\"},"
	                        "{\"id\":\"t3\",\"status\":\"rejected\",\"reason\":\"b\"}]}",
	                        out, r),
	                 0);
	assert_int_equal(out[0], OUT_DELIVERED);
	assert_int_equal(out[1], OUT_RETRY);
	assert_null(r[1]);
	assert_int_equal(out[2], OUT_FAILED);
	assert_string_equal(r[2], "a");
	free3(r);

	/* a duplicated key in one object is not JSON we read */
	assert_int_equal(parse3("{\"results\":[{\"id\":\"t1\",\"status\":\"rejected\","
	                        "\"status\":\"ok\"}]}",
	                        out, r),
	                 -1);
	free3(r);
}

static void test_parse_garbage(void **state)
{
	(void)state;
	enum store_outcome out[3];
	char *r[3];
	static const char *const bad[] = {
	        "",
	        "<html><body><h1>502 Bad Gateway</h1></body></html>",
	        "null",
	        "[]",
	        "[{\"id\":\"t1\",\"status\":\"ok\"}]",
	        "{}",
	        "{\"results\":{\"t1\":\"ok\"}}",
	        "{\"results\":\"ok\"}",
	        "{\"results\":null}",
	        "{\"results\":[{\"id\":\"t1\",\"status\":\"ok\"}]",
	        "{\"results\":[{\"id\":\"t1\",\"status\":\"ok\"}]} trailing",
	        "{\"results\":[],\"results\":[]}",
	};

	for (int k = 0; k < N(bad); k++) {
		for (int i = 0; i < 3; i++)
			out[i] = OUT_DELIVERED;
		assert_int_equal(parse3(bad[k], out, r), -1);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(out[i], OUT_RETRY);
			assert_null(r[i]);
		}
	}
	/* NULL body, and no ids at all */
	assert_int_equal(sync_parse_results(NULL, 0, ids3, 3, out, r), -1);
	assert_int_equal(sync_parse_results("{\"results\":[]}", 14, NULL, 0, NULL, NULL), 0);
	/* bytes after a NUL are part of the body: not JSON */
	assert_int_equal(sync_parse_results("{\"results\":[]}\0x", 16, ids3, 3, out, r), -1);
	/* invalid UTF-8 */
	assert_int_equal(parse3("{\"results\":[{\"id\":\"t1\xff\",\"status\":\"ok\"}]}", out, r),
	                 -1);
	/* deep nesting */
	char *deep = malloc(200010);
	memset(deep, '[', 100000);
	memset(deep + 100000, ']', 100000);
	deep[200000] = 0;
	assert_int_equal(parse3(deep, out, r), -1);
	free(deep);
}

static void test_parse_reasons_cleaned(void **state)
{
	(void)state;
	enum store_outcome out[3];
	char *r[3];
	char body[4096];

	/* control bytes, newlines (log injection), a very long reason */
	snprintf(body, sizeof(body),
	         "{\"results\":[{\"id\":\"t1\",\"status\":\"rejected\",\"reason\":\"bad\\n"
	         "Dec 4 kioskd: fake line\\u0001\\u001b[31m\"},"
	         "{\"id\":\"t2\",\"status\":\"rejected\",\"reason\":\"%0600d\"},"
	         "{\"id\":\"t3\",\"status\":\"rejected\",\"reason\":42}]}",
	         7);
	assert_int_equal(parse3(body, out, r), 0);
	assert_int_equal(out[0], OUT_FAILED);
	assert_null(strchr(r[0], '\n'));
	assert_null(strchr(r[0], '\x1b'));
	assert_string_equal(r[0], "bad Dec 4 kioskd: fake line [31m");
	assert_true(strlen(r[1]) <= 210);
	assert_non_null(strstr(r[1], "..."));
	assert_string_equal(r[2], "rejected");
	free3(r);
}

static void test_parse_big_batch(void **state)
{
	(void)state;
	enum { NB = 5000 };
	char **ids = calloc(NB, sizeof(*ids));
	enum store_outcome *out = calloc(NB, sizeof(*out));
	char **r = calloc(NB, sizeof(*r));
	size_t cap = (size_t)NB * 64, len = 0;
	char *body = malloc(cap);

	len += (size_t)snprintf(body + len, cap - len, "{\"results\":[");
	for (int i = 0; i < NB; i++) {
		assert_true(asprintf(&ids[i], "01HF7Z3Q4W8V5R%012d", i) > 0);
		/* answers in reverse order; every third rejected, every
		 * seventh left out */
		int j = NB - 1 - i;
		if (j % 7 == 0)
			continue;
		len += (size_t)snprintf(body + len, cap - len,
		                        "%s{\"id\":\"01HF7Z3Q4W8V5R%012d\",\"status\":\"%s\"}",
		                        len > 12 ? "," : "", j, j % 3 ? "ok" : "rejected");
	}
	len += (size_t)snprintf(body + len, cap - len, "]}");
	assert_int_equal(sync_parse_results(body, len, (const char *const *)ids, NB, out, r), 0);
	for (int i = 0; i < NB; i++) {
		if (i % 7 == 0)
			assert_int_equal(out[i], OUT_RETRY);
		else if (i % 3 == 0)
			assert_int_equal(out[i], OUT_FAILED);
		else
			assert_int_equal(out[i], OUT_DELIVERED);
		free(r[i]);
		free(ids[i]);
	}
	free(body);
	free(ids);
	free(out);
	free(r);
}

static void test_backoff_bounds(void **state)
{
	(void)state;

	/* the cap doubles from min up to max */
	for (unsigned a = 0; a < 70; a++) {
		long cap = 1000;
		for (unsigned i = 0; i < a && cap < 600000; i++)
			cap = cap * 2 > 600000 ? 600000 : cap * 2;
		/* rnd picks: the lowest, the highest, and many in between */
		assert_int_equal(http_backoff_ms(1000, 600000, a, 0), 0);
		assert_int_equal(http_backoff_ms(1000, 600000, a, (uint64_t)cap), cap);
		for (int k = 0; k < 200; k++) {
			long ms = http_backoff_ms(1000, 600000, a, http_random());
			assert_true(ms >= 0 && ms <= cap);
		}
	}
	assert_int_equal(http_backoff_ms(1000, 600000, 3, 8000), 8000);
	assert_int_equal(http_backoff_ms(1000, 600000, 3, 8001), 0);
	assert_int_equal(http_backoff_ms(1000, 600000, UINT32_MAX, 600000), 600000);
	/* huge limits do not overflow */
	assert_int_equal(http_backoff_ms(86400000, 86400000, 1000, 86400000), 86400000);
	assert_int_equal(http_backoff_ms(10, 10, 0, 11), 0);

	/* full jitter: the picks spread over the whole range */
	int low = 0, high = 0;
	for (int k = 0; k < 2000; k++) {
		long ms = http_backoff_ms(100, 100000, 10, http_random());
		low += ms < 100000 / 4;
		high += ms > 3 * 100000 / 4;
	}
	assert_true(low > 300 && high > 300);
}

static void test_retry_after(void **state)
{
	(void)state;
	time_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */

	assert_int_equal(http_retry_after_ms("120", now), 120000);
	assert_int_equal(http_retry_after_ms(" 0\r\n", now), 0);
	assert_int_equal(http_retry_after_ms("\t7 ", now), 7000);
	assert_int_equal(http_retry_after_ms("99999999999999999999999", now), 86400000);
	assert_int_equal(http_retry_after_ms("100000", now), 86400000);
	assert_int_equal(http_retry_after_ms("Wed, 21 Oct 2015 07:28:30 GMT", now), 30000);
	assert_int_equal(http_retry_after_ms("Wed, 21 Oct 2015 07:28:30 GMT\r\n", now), 30000);
	/* obsolete forms too */
	assert_int_equal(http_retry_after_ms("Wednesday, 21-Oct-15 07:29:00 GMT", now), 60000);
	assert_int_equal(http_retry_after_ms("Wed Oct 21 07:29:00 2015", now), 60000);
	/* a date in the past: now */
	assert_int_equal(http_retry_after_ms("Wed, 21 Oct 2015 07:00:00 GMT", now), 0);
	/* a year ahead: capped (the caller caps again at backoff_max_ms) */
	assert_int_equal(http_retry_after_ms("Fri, 21 Oct 2016 07:28:00 GMT", now), 86400000);
	static const char *const garbage[] = {"",     " ",  "soon", "-5",    "1.5", "12abc",
	                                      "0x10", "+3", "GMT",  "12:00", "\r\n"};
	for (int i = 0; i < N(garbage); i++)
		assert_int_equal(http_retry_after_ms(garbage[i], now), -1);
	char longv[300];
	memset(longv, '1', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = 0;
	assert_int_equal(http_retry_after_ms(longv, now), -1);
}

static void test_path_check(void **state)
{
	(void)state;
	char why[160];
	static const char *const good[] = {
	        "/",
	        "/payments/qr",
	        "/orders/P-778812/status",
	        "/a:b@c/~x_y.z",
	        "/v1/eligibility;check=1",
	        "/%41%42",
	        "/.well-known/x",
	        "/a/b.",
	};
	static const char *const bad[] = {
	        "",
	        "payments",
	        "@evil.example/x",
	        ".evil.example/x",
	        ":8443/x",
	        "//evil.example/x",
	        "/a//b",
	        "/../admin",
	        "/a/..",
	        "/a/../b",
	        "/a/./b",
	        "/a/.",
	        "/x?redirect=https://evil",
	        "/x#frag",
	        "/x\\..\\y",
	        "/x y",
	        "/x\ty",
	        "/x\r\nHost: evil",
	        "/%2e%2e/admin",
	        "/%2E%2e/admin",
	        "/a%2fb",
	        "/a%5cb",
	        "/a%00b",
	        "/a%0d%0a",
	        "/a%",
	        "/a%4",
	        "/a%zz",
	        "/\xc3\xa9",
	};

	for (int i = 0; i < N(good); i++) {
		why[0] = 0;
		if (http_path_check(good[i], why, sizeof(why)) != 0)
			fail_msg("%s refused: %s", good[i], why);
	}
	/* no ".." anywhere, even where it would not be a segment */
	assert_int_equal(http_path_check("/a/...b", why, sizeof(why)), -1);
	for (int i = 0; i < N(bad); i++) {
		why[0] = 0;
		if (http_path_check(bad[i], why, sizeof(why)) != -1)
			fail_msg("%s accepted", bad[i]);
		assert_true(why[0] != 0);
	}
	assert_int_equal(http_path_check(NULL, why, sizeof(why)), -1);
	char longp[1100];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = 0;
	assert_int_equal(http_path_check(longp, why, sizeof(why)), -1);
	longp[1024] = 0;
	assert_int_equal(http_path_check(longp, why, sizeof(why)), 0);
}

static void test_idempotency_key(void **state)
{
	(void)state;
	char key[65];
	const char *ab[] = {"a", "b"};
	const char *ulids[] = {"01HF7Z3Q4W8V5R2N6M1K0J9H8G", "01HF7Z3Q4W8V5R2N6M1K0J9H8H"};
	const char *ba[] = {"b", "a"};

	/* sha256("a\nb\n") */
	http_idempotency_key(ab, 2, key);
	assert_string_equal(key,
	                    "911169ddaaf146aff539f58c26c489af3b892dff0fe283c1c264c65ae5aa59a2");
	http_idempotency_key(ulids, 2, key);
	assert_string_equal(key,
	                    "3050d66efceb64439dd4089f39f5a903fb1ed04bd9ab978ea8c30fa7cbe4b74c");
	/* order matters; no ids is sha256("") */
	http_idempotency_key(ba, 2, key);
	assert_string_not_equal(key,
	                        "911169ddaaf146aff539f58c26c489af3b892dff0fe283c1c264c65ae5aa59a2");
	http_idempotency_key(NULL, 0, key);
	assert_string_equal(key,
	                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_signature(void **state)
{
	(void)state;
	char sig[72];
	const char *data = "what do ya want for nothing?";

	/* RFC 4231, test case 2 */
	http_signature((const unsigned char *)"Jefe", 4, data, strlen(data), sig);
	assert_string_equal(
	        sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	/* over the exact bytes, NULs included */
	http_signature((const unsigned char *)"k", 1, "", 0, sig);
	assert_string_equal(
	        sig, "sha256=8bb990c40a7d61cb97597a942125025be50ac8beb74436e3735b98893a7f6620");
	char sig2[72];
	http_signature((const unsigned char *)"k", 1, "a\0b", 3, sig);
	http_signature((const unsigned char *)"k", 1, "a\0c", 3, sig2);
	assert_string_not_equal(sig, sig2);
}

static void test_excerpt(void **state)
{
	(void)state;
	char out[64];

	http_excerpt("  {\"error\":\n\t\"no\"}  ", 20, 100, out, sizeof(out));
	assert_string_equal(out, "{\"error\": \"no\"}");
	http_excerpt("abcdefghij", 10, 4, out, sizeof(out));
	assert_string_equal(out, "abcd...");
	http_excerpt(NULL, 0, 10, out, sizeof(out));
	assert_string_equal(out, "");
	/* a cut inside a character leaves valid UTF-8 */
	http_excerpt("\xe4\xbd\xa0\xe5\xa5\xbd", 6, 4, out, sizeof(out));
	assert_string_equal(out, "\xe4\xbd\xa0?...");
	/* the buffer bounds it too */
	char small[10];
	http_excerpt("0123456789abcdef", 16, 100, small, sizeof(small));
	assert_string_equal(small, "012345...");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_each_status),
	        cmocka_unit_test(test_parse_missing_and_unknown),
	        cmocka_unit_test(test_parse_duplicated_ids),
	        cmocka_unit_test(test_parse_garbage),
	        cmocka_unit_test(test_parse_reasons_cleaned),
	        cmocka_unit_test(test_parse_big_batch),
	        cmocka_unit_test(test_backoff_bounds),
	        cmocka_unit_test(test_retry_after),
	        cmocka_unit_test(test_path_check),
	        cmocka_unit_test(test_idempotency_key),
	        cmocka_unit_test(test_signature),
	        cmocka_unit_test(test_excerpt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
