/* proto.c and ipc.c over real sockets: the envelope, errors, roles,
 * pipelining, line limits and config.reload.  No devices configured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "harness.h"

static int setup(void **state)
{
	(void)state;
	return h_start("max_line_bytes = 256\n");
}

static int teardown(void **state)
{
	(void)state;
	return h_stop();
}

/* The reply to line is an error with this id (JSON text), code and message. */
static void expect_error(struct client *c, const char *line, const char *id, const char *code,
                         const char *message)
{
	json_t *m = request(c, line), *want_id = json_loads(id, JSON_DECODE_ANY, NULL);

	assert_non_null(want_id);
	if (!json_equal(json_object_get(m, "id"), want_id) ||
	    !json_is_false(json_object_get(m, "ok")) || !error_code(m) ||
	    strcmp(error_code(m), code) || (message && strcmp(error_message(m), message))) {
		char *s = json_dumps(m, 0);
		fail_msg("%s -> %s; wanted id %s, %s: %s", line, s, id, code,
		         message ? message : "...");
	}
	json_decref(want_id);
	json_decref(m);
}

static void test_hello(void **state)
{
	(void)state;
	struct client ui, admin;
	json_t *m, *r;

	client_connect(&ui, "ui.sock");
	client_connect(&admin, "admin.sock");
	m = request(&ui, "{\"id\": 1, \"cmd\": \"hello\"}\n");
	r = result(m);
	assert_int_equal(json_integer_value(json_object_get(m, "id")), 1);
	assert_int_equal(json_integer_value(json_object_get(r, "protocol")), 1);
	assert_string_equal(json_string_value(json_object_get(r, "version")), KIOSKD_VERSION);
	assert_string_equal(json_string_value(json_object_get(r, "role")), "ui");
	json_decref(m);
	/* the admin socket grants admin to root, or to the daemon's own user */
	m = request(&admin, "{\"id\": \"a-1\", \"cmd\": \"hello\"}\n");
	r = result(m);
	assert_string_equal(json_string_value(json_object_get(m, "id")), "a-1");
	assert_string_equal(json_string_value(json_object_get(r, "role")), "admin");
	json_decref(m);

	m = request(&ui, "{\"id\": 2, \"cmd\": \"status\"}\n");
	r = result(m);
	assert_string_equal(
	        json_string_value(json_object_get(json_object_get(r, "daemon"), "config")), h_conf);
	assert_int_equal(
	        json_integer_value(json_object_get(json_object_get(r, "daemon"), "clients")), 2);
	assert_int_equal(json_array_size(json_object_get(r, "devices")), 0);
	json_decref(m);
	m = request(&ui, "{\"id\": 3, \"cmd\": \"devices.list\"}\n");
	assert_true(json_is_array(json_object_get(result(m), "devices")));
	json_decref(m);
	client_close(&ui);
	client_close(&admin);
}

static void test_envelope_errors(void **state)
{
	(void)state;
	struct client c;

	client_connect(&c, "ui.sock");
	expect_error(&c, "not json\n", "null", "bad_request", NULL);
	expect_error(&c, "[1, 2]\n", "null", "bad_request", "a request must be a JSON object");
	expect_error(&c, "{\"cmd\": \"hello\"}\n", "null", "bad_request", "id: missing");
	expect_error(&c, "{\"id\": null, \"cmd\": \"hello\"}\n", "null", "bad_request",
	             "id: must be an integer or a string");
	expect_error(&c, "{\"id\": 1.5, \"cmd\": \"hello\"}\n", "null", "bad_request",
	             "id: must be an integer or a string");
	expect_error(&c, "{\"id\": 1, \"id\": 2, \"cmd\": \"hello\"}\n", "null", "bad_request",
	             NULL);
	expect_error(&c, "{\"id\": 4}\n", "4", "bad_request", "cmd: missing");
	expect_error(&c, "{\"id\": 4, \"cmd\": \"\"}\n", "4", "bad_request",
	             "cmd: must be a string of 1-64 characters");
	expect_error(&c,
	             "{\"id\": 4, \"cmd\": "
	             "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n",
	             "4", "bad_request", "cmd: must be a string of 1-64 characters");
	expect_error(&c, "{\"id\": \"x\", \"cmd\": \"hello\", \"device\": 3}\n", "\"x\"",
	             "bad_request", "device: must be a string");
	expect_error(&c, "{\"id\": 5, \"cmd\": \"hello\", \"args\": []}\n", "5", "bad_request",
	             "args: must be an object");
	expect_error(&c, "{\"id\": 5, \"cmd\": \"hello\", \"timeout_ms\": 0}\n", "5", "bad_request",
	             "timeout_ms: must be an integer from 1 to 86400000");
	expect_error(&c, "{\"id\": 5, \"cmd\": \"hello\", \"timeout_ms\": \"9\"}\n", "5",
	             "bad_request", "timeout_ms: must be an integer from 1 to 86400000");
	expect_error(&c, "{\"id\": 6, \"cmd\": \"nope\"}\n", "6", "unknown_command",
	             "unknown command 'nope'");
	expect_error(&c, "{\"id\": 6, \"cmd\": \"printer.fly\"}\n", "6", "unknown_command",
	             "unknown command 'printer.fly'");
	expect_error(&c, "{\"id\": 6, \"cmd\": \"printer.print\"}\n", "6", "unknown_device",
	             "no printer is configured");
	expect_error(&c, "{\"id\": 6, \"cmd\": \"printer.print\", \"device\": \"p9\"}\n", "6",
	             "unknown_device", "no device named 'p9'");
	expect_error(&c, "{\"id\": 7, \"cmd\": \"cancel\"}\n", "7", "bad_request",
	             "target: must be the id of a running request");
	/* the connection survives all of that */
	json_t *m = request(&c, "{\"id\": 8, \"cmd\": \"hello\"}\n");
	result(m);
	json_decref(m);
	client_close(&c);
}

static void test_utf8_in_messages(void **state)
{
	(void)state;
	struct client c;
	json_t *m;

	/* a name cut at 64 bytes in the middle of a character: the reply must
	 * still be valid JSON (it was not sent at all) */
	client_connect(&c, "ui.sock");
	m = request(
	        &c,
	        "{\"id\": 1, \"cmd\": \"printer.print\", \"device\": "
	        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\\u00e9\"}\n");
	assert_string_equal(error_code(m), "unknown_device");
	assert_string_equal(error_message(m),
	                    "no device named "
	                    "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	                    "aaaaaaaaa?'");
	json_decref(m);
	/* whole characters stay */
	m = request(&c,
	            "{\"id\": 2, \"cmd\": \"printer.print\", \"device\": \"\\u6253\\u5370\"}\n");
	assert_string_equal(error_message(m), "no device named '\xe6\x89\x93\xe5\x8d\xb0'");
	json_decref(m);
	client_close(&c);
}

static void test_roles(void **state)
{
	(void)state;
	struct client ui, admin;
	json_t *m;

	client_connect(&ui, "ui.sock");
	client_connect(&admin, "admin.sock");
	expect_error(&ui, "{\"id\": 1, \"cmd\": \"config.reload\"}\n", "1", "not_permitted",
	             "config.reload needs the admin role (admin.sock)");
	expect_error(&ui, "{\"id\": 2, \"cmd\": \"sim.inject\", \"device\": \"x\"}\n", "2",
	             "not_permitted", "sim.inject needs the admin role (admin.sock)");
	/* admin may call what ui may, and more */
	m = request(&admin, "{\"id\": 3, \"cmd\": \"events.subscribe\", \"args\": {\"topics\": "
	                    "[\"*\"]}}\n");
	result(m);
	json_decref(m);
	expect_error(&admin, "{\"id\": 4, \"cmd\": \"sim.inject\", \"device\": \"x\"}\n", "4",
	             "unknown_device", "no device named 'x'");
	expect_error(&admin, "{\"id\": 4, \"cmd\": \"sim.inject\"}\n", "4", "bad_request",
	             "sim.inject needs \"device\"");
	client_close(&ui);
	client_close(&admin);
}

static void test_pipelining_and_blank_lines(void **state)
{
	(void)state;
	struct client c;
	json_t *m;

	client_connect(&c, "ui.sock");
	/* three requests in one write, blank lines (keep-alives) between;
	 * one reply each, in order */
	client_send(&c, "{\"id\": 1, \"cmd\": \"hello\"}\n\n\r\n{\"id\": 2, \"cmd\": \"nope\"}\r\n"
	                "{\"id\": 3, \"cmd\": \"hello\"}\n");
	for (int i = 1; i <= 3; i++) {
		m = client_recv(&c, 2000);
		assert_non_null(m);
		assert_int_equal(json_integer_value(json_object_get(m, "id")), i);
		json_decref(m);
	}
	assert_null(client_recv(&c, 50));
	/* a request split over several writes */
	client_send(&c, "{\"id\": 4, ");
	assert_null(client_recv(&c, 20));
	client_send(&c, "\"cmd\": \"hello\"}");
	assert_null(client_recv(&c, 20));
	client_send(&c, "\n");
	m = client_recv(&c, 2000);
	assert_int_equal(json_integer_value(json_object_get(m, "id")), 4);
	json_decref(m);
	client_close(&c);
}

static void test_too_large(void **state)
{
	(void)state;
	struct client c;
	char line[400];
	json_t *m;

	/* exactly the limit (256 bytes before the newline) is fine */
	client_connect(&c, "ui.sock");
	int n = snprintf(line, sizeof(line), "{\"id\": 1, \"cmd\": \"hello\", \"x\": \"");
	memset(line + n, 'a', 256 - (size_t)n - 2);
	strcpy(line + 254, "\"}\n");
	assert_int_equal(strlen(line), 257);
	m = request(&c, line);
	result(m);
	json_decref(m);

	/* one more byte: refused, then the connection is closed */
	n = snprintf(line, sizeof(line), "{\"id\": 2, \"cmd\": \"hello\", \"x\": \"");
	memset(line + n, 'a', 257 - (size_t)n - 2);
	strcpy(line + 255, "\"}\n");
	m = request(&c, line);
	assert_string_equal(error_code(m), "too_large");
	assert_string_equal(error_message(m), "request line longer than 256 bytes");
	assert_true(json_is_null(json_object_get(m, "id")));
	json_decref(m);
	assert_null(client_recv(&c, 2000));
	assert_true(c.closed);
	client_close(&c);

	/* no newline in sight and already over the limit */
	client_connect(&c, "ui.sock");
	memset(line, ' ', 300);
	line[300] = 0;
	client_send(&c, line);
	m = client_recv(&c, 2000);
	assert_non_null(m);
	assert_string_equal(error_code(m), "too_large");
	json_decref(m);
	assert_null(client_recv(&c, 2000));
	assert_true(c.closed);
	client_close(&c);

	/* the daemon still serves others */
	client_connect(&c, "ui.sock");
	m = request(&c, "{\"id\": 3, \"cmd\": \"hello\"}\n");
	result(m);
	json_decref(m);
	client_close(&c);
}

static void test_reload(void **state)
{
	(void)state;
	struct client c;
	json_t *m;
	char want[2 * PATH_MAX + 300];

	client_connect(&c, "admin.sock");
	h_write_conf("max_line_bytes = 256\nworkers = 3\n");
	m = request(&c, "{\"id\": 1, \"cmd\": \"config.reload\"}\n");
	assert_true(json_is_true(json_object_get(result(m), "reloaded")));
	assert_int_equal(json_array_size(json_object_get(result(m), "changed")), 0);
	json_decref(m);
	assert_int_equal(daemon_conf->workers, 3);

	/* a bad configuration is refused with every problem, the old one kept */
	h_write_conf("workers = 0\nbogus = 1\n");
	m = request(&c, "{\"id\": 2, \"cmd\": \"config.reload\"}\n");
	assert_string_equal(error_code(m), "bad_request");
	snprintf(want, sizeof(want),
	         "configuration refused, old one kept: %s:4: workers: '0' is not a whole number "
	         "between 1 and 64; %s:5: unknown key 'bogus' in [daemon]",
	         h_conf, h_conf);
	assert_string_equal(error_message(m), want);
	json_decref(m);
	assert_int_equal(daemon_conf->workers, 3);

	/* limits apply from the next line on */
	h_write_conf("max_line_bytes = 1024\n");
	m = request(&c, "{\"id\": 3, \"cmd\": \"config.reload\"}\n");
	result(m);
	json_decref(m);
	char line[600];
	int n = snprintf(line, sizeof(line), "{\"id\": 4, \"cmd\": \"hello\", \"x\": \"");
	memset(line + n, 'a', 500);
	strcpy(line + n + 500, "\"}\n");
	m = request(&c, line);
	result(m);
	json_decref(m);
	client_close(&c);
}

static int setup_limits(void **state)
{
	(void)state;
	return h_start("max_clients = 2\nclient_buffer_bytes = 4096\n");
}

static void test_max_clients(void **state)
{
	(void)state;
	struct client a, b, c;
	json_t *m;

	client_connect(&a, "ui.sock");
	client_connect(&b, "admin.sock");
	m = request(&a, "{\"id\": 1, \"cmd\": \"hello\"}\n");
	json_decref(m);
	m = request(&b, "{\"id\": 1, \"cmd\": \"hello\"}\n");
	json_decref(m);
	assert_int_equal(ipc_nclients(), 2);
	/* the third is told why and closed */
	client_connect(&c, "ui.sock");
	m = client_recv(&c, 2000);
	assert_non_null(m);
	assert_string_equal(error_code(m), "not_permitted");
	assert_string_equal(error_message(m), "too many clients (limit 2)");
	json_decref(m);
	assert_null(client_recv(&c, 2000));
	assert_true(c.closed);
	client_close(&c);
	/* room again once one leaves */
	client_close(&a);
	for (int i = 0; i < 100 && ipc_nclients() > 1; i++)
		event_base_loop(daemon_base, EVLOOP_NONBLOCK);
	assert_int_equal(ipc_nclients(), 1);
	client_connect(&c, "ui.sock");
	m = request(&c, "{\"id\": 2, \"cmd\": \"hello\"}\n");
	result(m);
	json_decref(m);
	client_close(&b);
	client_close(&c);
}

static void test_slow_reader_dropped(void **state)
{
	(void)state;
	struct client slow, ok;
	json_t *m;

	client_connect(&slow, "ui.sock");
	client_connect(&ok, "ui.sock");
	m = request(&slow, "{\"id\": 1, \"cmd\": \"events.subscribe\", \"args\": {\"topics\": "
	                   "[\"test.*\"]}}\n");
	result(m);
	json_decref(m);
	m = request(&ok, "{\"id\": 1, \"cmd\": \"hello\"}\n");
	json_decref(m);
	assert_int_equal(ipc_nclients(), 2);
	/* more than the socket's kernel buffer plus client_buffer_bytes in one
	 * loop turn: dropped, not buffered without bound (replies and events
	 * go straight to the socket while it takes them) */
	int sndbuf = 0;
	socklen_t sl = sizeof(sndbuf);
	assert_int_equal(getsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &sndbuf, &sl), 0);
	int n = 2 * (sndbuf + 4096) / 80 + 100;
	for (int i = 0; i < n; i++)
		events_publish(
		        "test.flood", NULL,
		        json_pack("{s:s}", "pad",
		                  "0123456789012345678901234567890123456789012345678901234567890123"
		                  "456789"));
	for (int i = 0; i < 100 && ipc_nclients() > 1; i++)
		event_base_loop(daemon_base, EVLOOP_NONBLOCK);
	assert_int_equal(ipc_nclients(), 1);
	/* it got at most what fitted, then the end of the connection */
	int got = 0;
	while ((m = client_recv(&slow, 2000))) {
		got++;
		json_decref(m);
	}
	assert_true(slow.closed);
	assert_true(got < n);
	/* the other client is served as before */
	m = request(&ok, "{\"id\": 2, \"cmd\": \"hello\"}\n");
	result(m);
	json_decref(m);
	client_close(&slow);
	client_close(&ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_hello, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_envelope_errors, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_utf8_in_messages, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_roles, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_pipelining_and_blank_lines, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_max_clients, setup_limits, teardown),
	        cmocka_unit_test_setup_teardown(test_slow_reader_dropped, setup_limits, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
