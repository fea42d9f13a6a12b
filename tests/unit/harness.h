/* A daemon core in the test process: the loop, a configuration read from
 * a temporary directory, the two sockets, and clients that talk to them.
 * Include after cmocka.h. */
#ifndef KIOSKD_TEST_HARNESS_H
#define KIOSKD_TEST_HARNESS_H

#include <event2/event.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "daemon.h"
#include "devices.h"
#include "ipc.h"
#include "log.h"

#define UNUSED __attribute__((unused))

static char h_dir[PATH_MAX];       /* the temporary directory */
static char h_conf[PATH_MAX + 16]; /* <h_dir>/kioskd.conf */

struct client {
	int fd;
	int closed; /* the daemon closed the connection */
	char buf[65536];
	size_t len;
};

static UNUSED double h_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Write <h_dir>/kioskd.conf: runtime and state dirs in h_dir, then extra. */
static UNUSED void h_write_conf(const char *extra)
{
	FILE *fp = fopen(h_conf, "w");
	assert_non_null(fp);
	fprintf(fp, "[daemon]\nruntime_dir = %s\nstate_dir = %s\n%s", h_dir, h_dir,
	        extra ? extra : "");
	fclose(fp);
}

/* Start the core on a fresh temporary directory; extra goes after the
 * [daemon] keys of the configuration. */
static UNUSED int h_start(const char *extra)
{
	struct diag d = {0};

	unsetenv("NOTIFY_SOCKET"); /* reloads send sd_notify: to no one */
	log_init("test", LOG_CRIT);
	snprintf(h_dir, sizeof(h_dir), "%s/kioskd-test-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(h_dir))
		return -1;
	snprintf(h_conf, sizeof(h_conf), "%s/kioskd.conf", h_dir);
	h_write_conf(extra);
	daemon_base = event_base_new();
	clock_gettime(CLOCK_MONOTONIC, &daemon_started);
	daemon_conf = conf_load(h_conf, &d);
	for (int i = 0; i < d.n; i++)
		fprintf(stderr, "%s\n", d.msgs[i]);
	diag_free(&d);
	if (!daemon_base || !daemon_conf)
		return -1;
	return ipc_init(daemon_base, daemon_conf);
}

static UNUSED int h_stop(void)
{
	char cmd[PATH_MAX + 16];

	ipc_shutdown();
	devices_shutdown();
	event_base_loop(daemon_base, EVLOOP_NONBLOCK);
	event_base_free(daemon_base);
	daemon_base = NULL;
	conf_free(daemon_conf);
	daemon_conf = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Connect to <h_dir>/<sock> ("ui.sock" or "admin.sock"). */
static UNUSED void client_connect(struct client *c, const char *sock)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char path[PATH_MAX + 16];

	memset(c, 0, sizeof(*c));
	snprintf(path, sizeof(path), "%s/%s", h_dir, sock);
	assert_true(strlen(path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(c->fd >= 0);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
}

static UNUSED void client_close(struct client *c)
{
	close(c->fd);
	c->fd = -1;
	/* let the daemon see it */
	event_base_loop(daemon_base, EVLOOP_NONBLOCK);
}

static UNUSED void client_send_n(struct client *c, const char *data, size_t n)
{
	while (n) {
		event_base_loop(daemon_base, EVLOOP_NONBLOCK);
		ssize_t w = write(c->fd, data, n);
		if (w < 0) {
			usleep(1000);
			continue;
		}
		data += w;
		n -= (size_t)w;
	}
}

static UNUSED void client_send(struct client *c, const char *line)
{
	client_send_n(c, line, strlen(line));
}

/* Run the loop until c has a whole line and return it parsed; NULL when
 * none came within ms or the daemon closed the connection (c->closed). */
static UNUSED json_t *client_recv(struct client *c, int ms)
{
	double end = h_now() + ms / 1000.0;

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			size_t n = (size_t)(nl - c->buf) + 1;
			json_error_t err;
			json_t *m = json_loadb(c->buf, n - 1, JSON_REJECT_DUPLICATES, &err);
			if (!m)
				fail_msg("bad line from the daemon (%s): %.*s", err.text, (int)n,
				         c->buf);
			memmove(c->buf, c->buf + n, c->len - n);
			c->len -= n;
			return m;
		}
		if (c->closed || h_now() > end)
			return NULL;
		event_base_loop(daemon_base, EVLOOP_NONBLOCK);
		ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r > 0)
			c->len += (size_t)r;
		else if (r == 0)
			c->closed = 1;
		else
			usleep(1000);
	}
}

/* Send a line and return the next line that comes back. */
static UNUSED json_t *request(struct client *c, const char *line)
{
	client_send(c, line);
	json_t *m = client_recv(c, 2000);
	if (!m)
		fail_msg("no answer to %s", line);
	return m;
}

static UNUSED const char *error_code(json_t *m)
{
	return json_string_value(json_object_get(json_object_get(m, "error"), "code"));
}

static UNUSED const char *error_message(json_t *m)
{
	return json_string_value(json_object_get(json_object_get(m, "error"), "message"));
}

static UNUSED json_t *result(json_t *m)
{
	if (!json_is_true(json_object_get(m, "ok"))) {
		char *s = json_dumps(m, 0);
		fail_msg("not ok: %s", s);
	}
	return json_object_get(m, "result");
}

#endif
