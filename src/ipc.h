/* The UI and admin sockets: listeners, sessions, line framing, roles
 * from the socket and SO_PEERCRED, and backpressure (bounded lines,
 * bounded output per client, bounded clients). */
#ifndef KIOSKD_IPC_H
#define KIOSKD_IPC_H

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include "conf.h"

enum role { ROLE_UI = 1, ROLE_ADMIN = 2 };

struct session;

int ipc_init(struct event_base *base, const struct conf *conf);
/* Take new limits after a reload (socket paths change only on restart). */
void ipc_apply(const struct conf *conf);
void ipc_stop_listening(void);
/* Stop accepting; send what is queued if the socket takes it; drop every
 * session. */
void ipc_shutdown(void);
int ipc_nclients(void);

/* Queue a message (one line).  A session whose unread output passes the
 * configured cap is dropped: it stopped reading and must not make the
 * daemon's memory grow. */
void session_send(struct session *s, json_t *msg);
void session_send_line(struct session *s, const char *line, size_t len);
enum role session_role(const struct session *s);
unsigned session_id(const struct session *s);
pid_t session_pid(const struct session *s);
int session_alive(const struct session *s);

/* A request of s was answered or dropped (closes a half-closed session
 * once its last reply is out). */
void session_req_removed(struct session *s);

/* Event subscriptions: the session's topic patterns (a JSON array). */
json_t *session_topics(struct session *s);
/* Send line to every live session whose patterns match topic. */
void ipc_broadcast(const char *topic, const char *line, size_t len);

#ifdef KIOSKD_FUZZING
/* A session with no socket behind it (its output: session_fake_sink). */
struct session *session_fake(enum role role);
void session_fake_free(struct session *s);
/* Where fake sessions' output lines go (NULL: discarded). */
extern void (*session_fake_sink)(struct session *s, const char *line, size_t len);
#endif

#endif
