#include "ipc.h"

#include "tailq.h"
#include <errno.h>
#include <event2/buffer.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "daemon.h"
#include "devices.h"
#include "events.h"
#include "log.h"
#include "proto.h"
#include "req.h"
#include "util.h"

/* A session reads and writes its socket itself, with plain events rather
 * than a bufferevent: a request is one read() into a buffer of its own and
 * a reply one write() straight from the line, with no FIONREAD, buffer
 * chains or deferred callbacks between the loop and the protocol. */
struct session {
	TAILQ_ENTRY(session) entry;
	int fd;                /* -1: a fake session (fuzzing) */
	struct event *rev;     /* readable; deleted while paused or after EOF */
	struct event *wev;     /* writable; added only while out holds bytes */
	char *in;              /* received bytes not yet taken as lines */
	size_t in_len, in_cap; /* in_cap grows to max_line + 1 at most */
	struct evbuffer *out;  /* replies and events the socket has not taken yet */
	enum role role;
	unsigned id;
	pid_t pid;
	uid_t uid;
	json_t *topics;
	struct req_list reqs;
	unsigned dead : 1;    /* dropped; freed by the reaper */
	unsigned closing : 1; /* flushing a last error, then dropped */
	unsigned fake : 1;
	unsigned eof : 1;      /* the client shut down its write side */
	unsigned batching : 1; /* inside serve_lines: collect replies, write once */
	unsigned paused : 1;   /* not reading until out drains (see session_pause_if_full) */
	unsigned writing : 1;  /* wev is added */
};
static TAILQ_HEAD(, session) sessions = TAILQ_HEAD_INITIALIZER(sessions);

struct listener {
	struct evconnlistener *lev;
	enum role role; /* the most this socket can grant */
	char path[108];
	int owned; /* we created the file (not socket-activated) */
};

#define ADMIN_RESERVE 4

static struct listener listeners[2];
static struct event *reaper;
static int nclients;
static unsigned next_id = 1;
static long max_line, client_buffer;
static int max_clients;
static gid_t admin_gid;
static int have_admin_gid;

struct req_list *session_reqs(struct session *s)
{
	return &s->reqs;
}

enum role session_role(const struct session *s)
{
	return s->role;
}

unsigned session_id(const struct session *s)
{
	return s->id;
}

pid_t session_pid(const struct session *s)
{
	return s->pid;
}

int session_alive(const struct session *s)
{
	return !s->dead;
}

json_t *session_topics(struct session *s)
{
	return s->topics;
}

int ipc_nclients(void)
{
	return nclients;
}

/* Freeing is deferred to the reaper so that a session can be dropped from
 * anywhere (an event fan-out, a plugin callback) without freeing memory a
 * caller further up the stack still uses. */
static void session_drop(struct session *s, const char *why)
{
	if (s->dead)
		return;
	s->dead = 1;
	log_debug("client %u (pid %d) dropped: %s", s->id, (int)s->pid, why);
	if (s->rev)
		event_del(s->rev);
	if (s->wev)
		event_del(s->wev);
	event_active(reaper, 0, 0);
}

static void session_free(struct session *s)
{
	struct kiosk_req *r;

	/* closing a connection cancels its running requests */
	while ((r = TAILQ_FIRST(&s->reqs)))
		req_orphan(r);
	TAILQ_REMOVE(&sessions, s, entry);
	if (!s->fake)
		nclients--;
	if (s->rev)
		event_free(s->rev);
	if (s->wev)
		event_free(s->wev);
	if (s->fd >= 0)
		close(s->fd);
	if (s->out)
		evbuffer_free(s->out);
	free(s->in);
	json_decref(s->topics);
	free(s);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct session *s, *tmp;
	(void)fd;
	(void)what;
	(void)arg;
	TAILQ_FOREACH_SAFE(s, &sessions, entry, tmp)
	if (s->dead)
		session_free(s);
}

#ifdef KIOSKD_FUZZING
void (*session_fake_sink)(struct session *s, const char *line, size_t len);
#endif

static size_t session_queued(struct session *s)
{
	return s->out ? evbuffer_get_length(s->out) : 0;
}

static void session_drained(struct session *s);

/* Write what the socket takes of out; the write event stays armed while
 * bytes remain.  -1: the session was dropped. */
static int session_write(struct session *s)
{
	while (evbuffer_get_length(s->out) > 0) {
		int n = evbuffer_write(s->out, s->fd);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!s->writing && event_add(s->wev, NULL) == 0)
				s->writing = 1;
			return 0;
		}
		session_drop(s, n < 0 ? "socket error" : "socket closed");
		return -1;
	}
	if (s->writing) {
		event_del(s->wev);
		s->writing = 0;
	}
	return 0;
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	(void)fd;
	(void)what;
	if (!s->dead && session_write(s) == 0)
		session_drained(s);
}

void session_send_line(struct session *s, const char *line, size_t len)
{
#ifdef KIOSKD_FUZZING
	if (s->fake && !s->dead && session_fake_sink)
		session_fake_sink(s, line, len);
#endif
	if (s->dead || s->closing || s->fd < 0)
		return;
	size_t queued = session_queued(s);
	if ((long)(queued + len) > client_buffer) {
		log_warnx("client %u (pid %d) dropped: not reading (%zu bytes queued)", s->id,
		          (int)s->pid, queued);
		session_drop(s, "output buffer full");
		return;
	}
	/* nothing queued before it: straight from the caller's line, one
	 * write() and no copy (replies to pipelined requests are collected
	 * by serve_lines and written once) */
	if (!queued && !s->batching) {
		ssize_t n;
		do
			n = send(s->fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			session_drop(s, "socket error");
			return;
		}
		if (n > 0) {
			line += n;
			len -= (size_t)n;
		}
		if (!len)
			return;
	}
	if (evbuffer_add(s->out, line, len) < 0) {
		session_drop(s, "out of memory");
		return;
	}
	if (!s->batching)
		session_write(s);
}

void session_send(struct session *s, json_t *msg)
{
	char buf[4096], *line;
	size_t len;

	if (s->dead || s->closing || (s->fd < 0 && !s->fake) || !msg)
		return;
	if (!(line = json_line(msg, buf, sizeof(buf), &len)))
		return;
	session_send_line(s, line, len);
	if (line != buf)
		free(line);
}

void ipc_broadcast(const char *topic, const char *line, size_t len)
{
	struct session *s;
	TAILQ_FOREACH(s, &sessions, entry)
	{
		if (!s->dead && events_match(s->topics, topic))
			session_send_line(s, line, len);
	}
}

/* Stop taking requests; the session goes once out has been written. */
static void session_close_after_output(struct session *s, const char *why)
{
	s->closing = 1;
	if (s->rev)
		event_del(s->rev);
	if (session_queued(s) == 0)
		session_drop(s, why);
}

/* Send a last error and close once it is written. */
static void session_close_with(struct session *s, const char *code, const char *msg)
{
	reply_error(s, NULL, code, "%s", msg);
	if (session_write(s) == 0)
		session_close_after_output(s, "closed after error");
}

/* A client that pipelines faster than it reads its replies is paused, not
 * dropped: take no more requests until its output has drained to a quarter
 * of the cap.  Only output it did not ask for (events) can overflow it. */
static int session_pause_if_full(struct session *s)
{
	if ((long)session_queued(s) <= client_buffer / 2)
		return 0;
	if (session_write(s) < 0 || (long)session_queued(s) <= client_buffer / 2)
		return 0;
	s->paused = 1;
	event_del(s->rev);
	return 1;
}

/* Take the complete lines in s->in, then keep the partial one. */
static void take_lines(struct session *s)
{
	size_t start = 0;

	while (!s->dead && !s->closing && !session_pause_if_full(s)) {
		char *line = s->in + start;
		char *nl = memchr(line, '\n', s->in_len - start);
		size_t len = nl ? (size_t)(nl - line) : s->in_len - start;
		if ((long)len > max_line) {
			char m[96];
			snprintf(m, sizeof(m), "request line longer than %ld bytes", max_line);
			session_close_with(s, "too_large", m);
			break;
		}
		if (!nl)
			break;
		*nl = '\0';
		start += len + 1;
		proto_handle(s, line, len);
	}
	if (start) {
		s->in_len -= start;
		memmove(s->in, s->in + start, s->in_len);
	}
}

/* Answer the lines received so far, their replies collected into one
 * write. */
static void serve_lines(struct session *s)
{
	s->batching = 1;
	take_lines(s);
	s->batching = 0;
	if (!s->dead)
		session_write(s);
}

/* Room to read into: the buffer grows to hold one line of max_line bytes
 * and its newline, and shrinks back once a large line has gone. */
static int session_in_room(struct session *s)
{
	size_t want = s->in_cap;

	if (!s->in || s->in_len == s->in_cap)
		want = s->in_cap ? s->in_cap * 2 : 4096;
	else if (s->in_cap > 65536 && s->in_len < 4096)
		want = 4096;
	if ((long)want > max_line + 1)
		want = (size_t)max_line + 1 > s->in_len ? (size_t)max_line + 1 : s->in_len;
	if (want == s->in_cap && s->in)
		return 0;
	char *p = realloc(s->in, want);
	if (!p)
		return s->in_len < s->in_cap ? 0 : -1;
	s->in = p;
	s->in_cap = want;
	return 0;
}

/* A peer that closed its socket is gone (POLLHUP); one that only shut
 * down its write side (printf ... | socat) still waits for its replies. */
static int peer_gone(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
	return poll(&pfd, 1, 0) != 1 || (pfd.revents & (POLLHUP | POLLERR));
}

static void session_eof(struct session *s)
{
	if (TAILQ_EMPTY(&s->reqs) || peer_gone(s->fd)) {
		session_drop(s, "disconnected");
		return;
	}
	s->eof = 1;
	event_del(s->rev);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	ssize_t n;
	(void)what;

	if (session_in_room(s) < 0) {
		session_drop(s, "out of memory");
		return;
	}
	if (s->in_len == s->in_cap) { /* max_line shrank under a long line */
		take_lines(s);
		return;
	}
	do
		n = read(fd, s->in + s->in_len, s->in_cap - s->in_len);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			session_drop(s, "socket error");
		return;
	}
	if (n == 0) {
		session_eof(s);
		return;
	}
	s->in_len += (size_t)n;
	serve_lines(s);
}

/* out is empty, or below the resume mark of a paused session. */
static void session_drained(struct session *s)
{
	if (s->closing) {
		if (session_queued(s) == 0)
			session_drop(s, "closed after error");
		return;
	}
	if (s->paused && (long)session_queued(s) <= client_buffer / 4) {
		s->paused = 0;
		if (!s->eof)
			event_add(s->rev, NULL);
		serve_lines(s);
	}
}

void session_req_removed(struct session *s)
{
	if (!s->eof || s->closing || s->dead || !TAILQ_EMPTY(&s->reqs))
		return;
	session_close_after_output(s, "half-closed client answered");
}

static int in_group(uid_t uid, gid_t gid, gid_t want)
{
	struct passwd *pw;
	gid_t groups[256];
	int n = 256;

	if (gid == want)
		return 1;
	if (!(pw = getpwuid(uid)) || getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
		return 0;
	for (int i = 0; i < n; i++)
		if (groups[i] == want)
			return 1;
	return 0;
}

/* admin.sock grants admin to root, to members of admin_group, and -- when
 * no admin group is configured and we are not root -- to our own user, so
 * a build tree runs its tests without privileges. */
static enum role peer_role(const struct listener *l, const struct ucred *cr)
{
	if (l->role != ROLE_ADMIN)
		return ROLE_UI;
	if (cr->uid == 0)
		return ROLE_ADMIN;
	if (have_admin_gid && in_group(cr->uid, cr->gid, admin_gid))
		return ROLE_ADMIN;
	if (!daemon_conf->admin_group && geteuid() != 0 && cr->uid == geteuid())
		return ROLE_ADMIN;
	return ROLE_UI;
}

static void refuse(int fd, const char *msg)
{
	char line[256];
	int n = snprintf(line, sizeof(line),
	                 "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"not_permitted\","
	                 "\"message\":\"%s\"}}\n",
	                 msg);
	/* best effort: a fresh socket's buffer always has room for one line */
	if (write(fd, line, (size_t)n) < 0)
		log_debug("refused client: %s", strerror(errno));
	close(fd);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct listener *l = arg;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	struct session *s;
	(void)lev;
	(void)sa;
	(void)salen;

	/* admin.sock has a few places of its own: UI clients that use up
	 * max_clients must not lock the admin out */
	int limit = max_clients + (l->role == ROLE_ADMIN ? ADMIN_RESERVE : 0);
	if (nclients >= limit) {
		char m[96];
		snprintf(m, sizeof(m), "too many clients (limit %d)", limit);
		log_warnx("client refused: %s", m);
		refuse(fd, m);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0) {
		log_warn("SO_PEERCRED");
		close(fd);
		return;
	}
	if (!(s = calloc(1, sizeof(*s)))) {
		close(fd);
		return;
	}
	/* listed first, so that session_free() undoes any step that fails */
	s->fd = fd;
	TAILQ_INIT(&s->reqs);
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	nclients++;
	s->topics = json_array();
	s->rev = event_new(daemon_base, fd, EV_READ | EV_PERSIST, on_readable, s);
	s->wev = event_new(daemon_base, fd, EV_WRITE | EV_PERSIST, on_writable, s);
	s->out = evbuffer_new();
	if (!s->topics || !s->rev || !s->wev || !s->out || event_add(s->rev, NULL) < 0) {
		session_free(s);
		return;
	}
	s->id = next_id++;
	s->pid = cr.pid;
	s->uid = cr.uid;
	s->role = peer_role(l, &cr);
	log_debug("client %u connected: pid %d uid %d role %s", s->id, (int)cr.pid, (int)cr.uid,
	          s->role == ROLE_ADMIN ? "admin" : "ui");
}

static int socket_in_use(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	rc = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	if (fd >= 0)
		close(fd);
	return rc;
}

static int listen_path(const char *path, mode_t mode, const char *group)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_err("socket path too long: %s", path);
		return -1;
	}
	if (socket_in_use(path)) {
		log_err("%s: another kioskd is already listening there", path);
		return -1;
	}
	unlink(path);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(path, mode) < 0 ||
	    listen(fd, 64) < 0) {
		log_warn("cannot listen on %s", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (group && geteuid() == 0) {
		struct group *gr = getgrnam(group);
		if (!gr)
			log_warnx("%s: group '%s' does not exist; socket stays root-only", path,
			          group);
		else if (chown(path, 0, gr->gr_gid) < 0)
			log_warn("chown %s", path);
	}
	return fd;
}

/* Sockets handed over by systemd (kioskd-ui.socket, kioskd-admin.socket),
 * told apart by FileDescriptorName=ui/admin, else by their path. */
static int adopt_systemd(int fds[2])
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names), found = 0;

	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		int which = -1;
		if (names && !strcmp(names[i], "ui"))
			which = 0;
		else if (names && !strcmp(names[i], "admin"))
			which = 1;
		else
			for (int k = 0; k < 2; k++)
				if (sd_is_socket_unix(fd, SOCK_STREAM, 1, listeners[k].path, 0) > 0)
					which = k;
		if (which < 0 || fds[which] >= 0) {
			log_warnx("ignoring unexpected socket-activated fd %d (%s)", fd,
			          names ? names[i] : "?");
			continue;
		}
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		evutil_make_socket_nonblocking(fd);
		fds[which] = fd;
		found++;
	}
	for (int i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
	return found;
}

void ipc_apply(const struct conf *conf)
{
	struct group *gr;

	max_line = conf->max_line;
	client_buffer = conf->client_buffer;
	max_clients = conf->max_clients;
	have_admin_gid = 0;
	if (conf->admin_group) {
		if ((gr = getgrnam(conf->admin_group))) {
			admin_gid = gr->gr_gid;
			have_admin_gid = 1;
		} else {
			log_warnx("admin_group '%s' does not exist: only root is admin",
			          conf->admin_group);
		}
	}
}

int ipc_init(struct event_base *base, const struct conf *conf)
{
	int fds[2] = {-1, -1};

	ipc_apply(conf);
	if (strlen(conf->runtime_dir) + sizeof("/admin.sock") > sizeof(listeners[0].path)) {
		log_err("runtime directory %s is too long for a socket path (at most %zu bytes)",
		        conf->runtime_dir, sizeof(listeners[0].path) - sizeof("/admin.sock"));
		return -1;
	}
	reaper = event_new(base, -1, 0, on_reap, NULL);
	snprintf(listeners[0].path, sizeof(listeners[0].path), "%s/ui.sock", conf->runtime_dir);
	snprintf(listeners[1].path, sizeof(listeners[1].path), "%s/admin.sock", conf->runtime_dir);
	listeners[0].role = ROLE_UI;
	listeners[1].role = ROLE_ADMIN;
	adopt_systemd(fds);
	if ((fds[0] < 0 || fds[1] < 0) && mkdir_p(conf->runtime_dir, 0755) < 0) {
		log_warn("cannot create runtime directory %s", conf->runtime_dir);
		return -1;
	}
	for (int k = 0; k < 2; k++) {
		int backlog = 0; /* already listening when systemd passed it */
		if (fds[k] < 0) {
			/* admin.sock is 0600 unless an admin group may use it */
			const char *group = k ? conf->admin_group : conf->ui_group;
			fds[k] = listen_path(listeners[k].path, k && !group ? 0600 : 0660, group);
			if (fds[k] < 0)
				return -1;
			listeners[k].owned = 1;
		}
		listeners[k].lev = evconnlistener_new(base, on_accept, &listeners[k],
		                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
		                                      backlog, fds[k]);
		if (!listeners[k].lev)
			return -1;
		log_info("listening on %s (%s)", listeners[k].path, k ? "admin" : "ui");
	}
	return 0;
}

void ipc_stop_listening(void)
{
	for (int k = 0; k < 2; k++) {
		if (listeners[k].lev)
			evconnlistener_free(listeners[k].lev);
		listeners[k].lev = NULL;
		if (listeners[k].owned)
			unlink(listeners[k].path);
		listeners[k].owned = 0;
	}
}

/* Last words to a client at shutdown: what fits in the socket now.  The
 * final replies of cancelled requests are small, so they fit. */
static void session_flush(struct session *s)
{
	if (s->fd < 0 || s->dead)
		return;
	while (evbuffer_get_length(s->out) > 0 && evbuffer_write(s->out, s->fd) > 0)
		;
}

void ipc_shutdown(void)
{
	struct session *s, *tmp;

	ipc_stop_listening();
	TAILQ_FOREACH_SAFE(s, &sessions, entry, tmp)
	{
		session_flush(s);
		session_free(s);
	}
	if (reaper)
		event_free(reaper);
	reaper = NULL;
}

#ifdef KIOSKD_FUZZING
struct session *session_fake(enum role role)
{
	struct session *s = calloc(1, sizeof(*s));
	s->fd = -1;
	s->role = role;
	s->fake = 1;
	s->topics = json_array();
	TAILQ_INIT(&s->reqs);
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	if (!reaper)
		reaper = event_new(daemon_base, -1, 0, on_reap, NULL);
	if (!max_line) {
		max_line = 1 << 20;
		client_buffer = 1 << 20;
	}
	return s;
}

void session_fake_free(struct session *s)
{
	session_free(s);
}
#endif
