/* events.c: topic globs, pattern syntax, sequence numbers, and the
 * fan-out to subscribed sessions over a real ui.sock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "daemon.h"
#include "events.h"
#include "ipc.h"
#include "log.h"

#include "harness.h"

static int matches(const char *topic, ...)
{
	va_list ap;
	const char *p;
	json_t *patterns = json_array();

	va_start(ap, topic);
	while ((p = va_arg(ap, const char *)))
		json_array_append_new(patterns, json_string(p));
	va_end(ap);
	int rc = events_match(patterns, topic);
	json_decref(patterns);
	return rc;
}

static void test_match(void **state)
{
	(void)state;
	assert_true(matches("cardreader.inserted", "cardreader.*", NULL));
	assert_true(matches("cardreader.inserted", "cardreader.inserted", NULL));
	assert_true(matches("cardreader.inserted", "printer.*", "cardreader.*", NULL));
	assert_true(matches("cardreader.inserted", "*", NULL));
	assert_true(matches("cardreader.inserted", "*.inserted", NULL));
	assert_true(matches("cardreader.inserted", "card?eader.*", NULL));
	assert_true(matches("locker.door_opened", "locker.door_*", NULL));
	assert_false(matches("cardreader.inserted", "printer.*", NULL));
	assert_false(matches("cardreader.inserted", "cardreader", NULL));
	assert_false(matches("cardreader.inserted", "cardreader.", NULL));
	assert_false(matches("cardreader.inserted", "card.*", NULL));
	assert_false(matches("cardreader.inserted", "cardreader.inserted.x", NULL));
	assert_false(matches("cardreader.inserted", "?.inserted", NULL));
	assert_false(matches("cardreader.inserted", NULL));
	assert_false(events_match(NULL, "cardreader.inserted"));
}

static void test_pattern_check(void **state)
{
	(void)state;
	char p[80];

	assert_int_equal(events_pattern_check("cardreader.*"), 0);
	assert_int_equal(events_pattern_check("*"), 0);
	assert_int_equal(events_pattern_check("device.state"), 0);
	assert_int_equal(events_pattern_check("a_b-c.d?e*0-9"), 0);
	assert_int_equal(events_pattern_check(""), -1);
	assert_int_equal(events_pattern_check("Cardreader.*"), -1);
	assert_int_equal(events_pattern_check("card reader"), -1);
	assert_int_equal(events_pattern_check("card/*"), -1);
	assert_int_equal(events_pattern_check("[a-z]*"), -1); /* no bracket sets */
	assert_int_equal(events_pattern_check("a\\*"), -1);
	assert_int_equal(events_pattern_check("\xe5\x8d\xa1"), -1);
	memset(p, 'a', 64);
	p[64] = 0;
	assert_int_equal(events_pattern_check(p), 0);
	p[64] = 'a';
	p[65] = 0;
	assert_int_equal(events_pattern_check(p), -1);
}

static void test_publish_seq(void **state)
{
	(void)state;
	uint64_t first = events_last_seq();

	/* with no session at all, publishing still counts (and frees data) */
	events_publish("test.one", NULL, NULL);
	assert_int_equal(events_last_seq(), first + 1);
	events_publish("test.two", "dev0", json_pack("{s:i}", "n", 2));
	assert_int_equal(events_last_seq(), first + 2);
	for (int i = 0; i < 10; i++)
		events_publish("test.more", "dev0", json_object());
	assert_int_equal(events_last_seq(), first + 12);
}

/* ---- fan-out through ipc to real clients ---- */

static int ipc_setup(void **state)
{
	(void)state;
	return h_start(NULL);
}

static int ipc_teardown(void **state)
{
	(void)state;
	return h_stop();
}

static void expect_ok(json_t *m, json_int_t id)
{
	result(m);
	assert_int_equal(json_integer_value(json_object_get(m, "id")), id);
}

static void test_fanout(void **state)
{
	(void)state;
	struct client a, b;
	json_t *m, *topics;
	regex_t ts_re;

	assert_int_equal(
	        regcomp(&ts_re,
	                "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
	                REG_EXTENDED | REG_NOSUB),
	        0);
	client_connect(&a, "ui.sock");
	client_connect(&b, "ui.sock");

	m = request(&a, "{\"id\": 1, \"cmd\": \"events.subscribe\", \"args\": {\"topics\": "
	                "[\"test.*\", \"device.state\"]}}\n");
	expect_ok(m, 1);
	topics = json_pack("[s,s]", "test.*", "device.state");
	assert_true(json_equal(json_object_get(json_object_get(m, "result"), "topics"), topics));
	json_decref(topics);
	json_decref(m);
	m = request(&b, "{\"id\": 2, \"cmd\": \"events.subscribe\", \"args\": {\"topics\": "
	                "[\"other.*\"]}}\n");
	expect_ok(m, 2);
	json_decref(m);

	uint64_t seq = events_last_seq();
	events_publish("other.thing", NULL, NULL);
	events_publish("test.ping", "dev0", json_pack("{s:i}", "n", 7));

	/* a sees only test.ping, numbered after other.thing */
	m = client_recv(&a, 2000);
	assert_non_null(m);
	assert_string_equal(json_string_value(json_object_get(m, "event")), "test.ping");
	assert_string_equal(json_string_value(json_object_get(m, "device")), "dev0");
	assert_int_equal(json_integer_value(json_object_get(m, "seq")), seq + 2);
	assert_int_equal(regexec(&ts_re, json_string_value(json_object_get(m, "ts")), 0, NULL, 0),
	                 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "data"), "n")), 7);
	assert_null(json_object_get(m, "id"));
	json_decref(m);

	/* b sees only other.thing, with no device and empty data */
	m = client_recv(&b, 2000);
	assert_non_null(m);
	assert_string_equal(json_string_value(json_object_get(m, "event")), "other.thing");
	assert_false(json_is_string(json_object_get(m, "device"))); /* null or absent */
	assert_int_equal(json_integer_value(json_object_get(m, "seq")), seq + 1);
	assert_true(json_is_object(json_object_get(m, "data")));
	assert_int_equal(json_object_size(json_object_get(m, "data")), 0);
	json_decref(m);
	assert_null(client_recv(&b, 50));
	assert_null(client_recv(&a, 50));

	/* unsubscribing one pattern keeps the other */
	m = request(&a, "{\"id\": 3, \"cmd\": \"events.unsubscribe\", \"args\": {\"topics\": "
	                "[\"test.*\"]}}\n");
	expect_ok(m, 3);
	json_decref(m);
	events_publish("test.ping", NULL, NULL);
	events_publish("device.state", "dev1", NULL);
	m = client_recv(&a, 2000);
	assert_non_null(m);
	assert_string_equal(json_string_value(json_object_get(m, "event")), "device.state");
	assert_int_equal(json_integer_value(json_object_get(m, "seq")), seq + 4);
	json_decref(m);

	/* a closed client is no obstacle to the others */
	client_close(&b);
	events_publish("device.state", "dev1", NULL);
	m = client_recv(&a, 2000);
	assert_non_null(m);
	assert_int_equal(json_integer_value(json_object_get(m, "seq")), seq + 5);
	json_decref(m);

	/* a bad pattern is refused and nothing is subscribed */
	m = request(&a, "{\"id\": 4, \"cmd\": \"events.subscribe\", \"args\": {\"topics\": "
	                "[\"ok.*\", \"Bad\"]}}\n");
	assert_false(json_is_true(json_object_get(m, "ok")));
	assert_string_equal(json_string_value(json_object_get(json_object_get(m, "error"), "code")),
	                    "bad_request");
	json_decref(m);
	m = request(&a, "{\"id\": 5, \"cmd\": \"events.unsubscribe\"}\n");
	expect_ok(m, 5);
	assert_int_equal(json_array_size(json_object_get(json_object_get(m, "result"), "topics")),
	                 0);
	json_decref(m);

	close(a.fd);
	regfree(&ts_re);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_match),
	        cmocka_unit_test(test_pattern_check),
	        cmocka_unit_test(test_publish_seq),
	        cmocka_unit_test_setup_teardown(test_fanout, ipc_setup, ipc_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
