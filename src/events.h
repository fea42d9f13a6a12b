/* The event bus: "<class>.<event>" topics from devices and "<area>.<event>"
 * from the core, stamped with a daemon-wide sequence number and a time,
 * fanned out to the sessions whose topic patterns match. */
#ifndef KIOSKD_EVENTS_H
#define KIOSKD_EVENTS_H

#include <jansson.h>
#include <stdint.h>

/* Publish; takes the reference to data (may be NULL).  device may be NULL. */
void events_publish(const char *topic, const char *device, json_t *data);
/* Nonzero when one of patterns (JSON array of glob strings) matches topic. */
int events_match(json_t *patterns, const char *topic);
/* A topic pattern is 1-64 of [a-z0-9_.*?-]; 0 when valid. */
int events_pattern_check(const char *pattern);
uint64_t events_last_seq(void);
struct session;
/* Publish to one session only (a replay for a new subscriber). */
void events_publish_to(struct session *s, const char *topic, const char *device, json_t *data);

#endif
