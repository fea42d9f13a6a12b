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

static char tmpdir[PATH_MAX];

struct client {
	int fd;
	char buf[65536];
	size_t len;
};

static void client_connect(struct client *c, const char *sock)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	c->len = 0;
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, sock);
	assert_true(strlen(path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(c->fd >= 0);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
}

static void client_send(struct client *c, const char *line)
{
	size_t n = strlen(line);
	assert_int_equal(write(c->fd, line, n), (ssize_t)n);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the loop until c has a whole line, return it parsed (or NULL when
 * none came within ms). */
static json_t *client_recv(struct client *c, int ms)
{
	double end = now() + ms / 1000.0;

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			size_t n = (size_t)(nl - c->buf) + 1;
			json_error_t err;
			json_t *m = json_loadb(c->buf, n - 1, 0, &err);
			if (!m)
				fail_msg("bad line from daemon: %.*s", (int)n, c->buf);
			memmove(c->buf, c->buf + n, c->len - n);
			c->len -= n;
			return m;
		}
		if (now() > end)
			return NULL;
		event_base_loop(daemon_base, EVLOOP_NONBLOCK);
		ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r > 0)
			c->len += (size_t)r;
		else if (r == 0)
			return NULL;
		else
			usleep(1000);
	}
}

static json_t *request(struct client *c, const char *line)
{
	client_send(c, line);
	json_t *m = client_recv(c, 2000);
	assert_non_null(m);
	return m;
}

static int ipc_setup(void **state)
{
	struct diag d = {0};
	char text[PATH_MAX + 64];
	(void)state;

	log_init("test", LOG_ERR);
	snprintf(tmpdir, sizeof(tmpdir), "%s/kioskd-events-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(text, sizeof(text), "[daemon]\nruntime_dir = %s\n", tmpdir);
	daemon_base = event_base_new();
	daemon_conf = conf_load_string("test.conf", text, &d);
	diag_free(&d);
	if (!daemon_base || !daemon_conf)
		return -1;
	return ipc_init(daemon_base, daemon_conf);
}

static int ipc_teardown(void **state)
{
	char cmd[PATH_MAX + 16];
	(void)state;

	ipc_shutdown();
	/* let the reaper and bufferevents settle */
	event_base_loop(daemon_base, EVLOOP_NONBLOCK);
	event_base_free(daemon_base);
	daemon_base = NULL;
	conf_free(daemon_conf);
	daemon_conf = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void expect_ok(json_t *m, json_int_t id)
{
	if (!json_is_true(json_object_get(m, "ok")) ||
	    json_integer_value(json_object_get(m, "id")) != id) {
		char *s = json_dumps(m, 0);
		fail_msg("not ok for id %lld: %s", (long long)id, s);
	}
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
	close(b.fd);
	event_base_loop(daemon_base, EVLOOP_NONBLOCK);
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
