#include "events.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "ipc.h"
#include "util.h"

static uint64_t seq;

int events_match(json_t *patterns, const char *topic)
{
	size_t i;
	json_t *p;
	json_array_foreach(patterns, i, p)
	{
		if (fnmatch(json_string_value(p), topic, 0) == 0)
			return 1;
	}
	return 0;
}

int events_pattern_check(const char *p)
{
	size_t n = strlen(p);
	if (n == 0 || n > 64)
		return -1;
	for (; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("_.*?-", *p)))
			return -1;
	return 0;
}

uint64_t events_last_seq(void)
{
	return seq;
}

static json_t *event_make(const char *topic, const char *device, json_t *data)
{
	char ts[40];
	json_t *ev;

	daemon_timestamp(ts, sizeof(ts));
	ev = json_pack("{s:s,s:I,s:s,s:o}", "event", topic, "seq", (json_int_t)++seq, "ts", ts,
	               "data", data ? data : json_object());
	if (ev && device) /* core events (no device) leave the key out */
		json_object_set_new(ev, "device", json_string(device));
	return ev;
}

void events_publish_to(struct session *s, const char *topic, const char *device, json_t *data)
{
	json_t *ev = event_make(topic, device, data);
	if (ev)
		session_send(s, ev);
	json_decref(ev);
}

void events_publish(const char *topic, const char *device, json_t *data)
{
	json_t *ev = event_make(topic, device, data);
	size_t len;
	char buf[4096], *line;

	if (!ev)
		return;
	/* serialise once, whatever the number of subscribers */
	if ((line = json_line(ev, buf, sizeof(buf), &len))) {
		ipc_broadcast(topic, line, len);
		if (line != buf)
			free(line);
	}
	json_decref(ev);
}
