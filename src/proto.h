/* The UI protocol: parse one request line, check the envelope, dispatch
 * to a core command or to a device, answer errors uniformly. */
#ifndef KIOSKD_PROTO_H
#define KIOSKD_PROTO_H

#include <stddef.h>

#define PROTOCOL_VERSION 1

#include <jansson.h>

struct session;

/* One request being dispatched (borrowed from the parsed line). */
struct call {
	struct session *s;
	json_t *id;
	const char *cmd;
	const char *device; /* NULL when absent */
	json_t *args;       /* an object, never NULL */
	int timeout_ms;     /* 0 when absent */
};

/* Command families in their own files (cmd_txn.c). */
void cmd_txn_submit(struct call *c);
void cmd_txn_get(struct call *c);
void cmd_txn_list(struct call *c);
void cmd_queue_list(struct call *c);
void cmd_queue_retry(struct call *c);
void cmd_audit_list(struct call *c);
void cmd_sync_status(struct call *c);
void cmd_sync_kick(struct call *c);
void cmd_remote_call(struct call *c);

/* Handle one line (without its newline).  Every request gets exactly one
 * final reply, now or later. */
void proto_handle(struct session *s, const char *line, size_t len);

#endif
