/* The UI protocol: parse one request line, check the envelope, dispatch
 * to a core command or to a device, answer errors uniformly. */
#ifndef KIOSKD_PROTO_H
#define KIOSKD_PROTO_H

#include <stddef.h>

#define PROTOCOL_VERSION 1

struct session;

/* Handle one line (without its newline).  Every request gets exactly one
 * final reply, now or later. */
void proto_handle(struct session *s, const char *line, size_t len);

#endif
