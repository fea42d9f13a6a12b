/* kclient: framing, queueing and waiting for the kioskd protocol.  See kclient.h. */
#include "kclient.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The daemon refuses requests over 1 MiB, but replies may carry more (lists,
 * status dumps); past this we assume a runaway peer rather than buffer on. */
#define MAX_LINE   (16u << 20)
#define READ_CHUNK 65536
/* Reads per kc_feed(): a chatty daemon must not starve the caller's loop. */
#define FEED_READS 16
/* Ids whose replies nobody waits for any more (timed-out calls, cancels). */
#define NABANDONED 32

struct buf {
	char *data;
	size_t len, cap;
};

struct msg {
	struct msg *next;
	enum kc_kind kind;
	json_t *json;
};

struct kclient {
	int fd;
	int closed;   /* no more requests can be sent */
	int eof;      /* and nothing more can be read */
	int skipping; /* discarding the rest of an oversized line */
	long long next_id;
	struct buf in, out;
	struct msg *head, **tailp;
	kc_handler *handler;
	void *handler_arg;
	long long abandoned[NABANDONED];
	unsigned nabandoned;
	char *path;
	char err[512];
};

static int set_err(struct kclient *kc, int status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int set_err(struct kclient *kc, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(kc->err, sizeof(kc->err), fmt, ap);
	va_end(ap);
	return status;
}

static int buf_reserve(struct buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 4096;
	char *p;

	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	if (!(p = realloc(b->data, cap)))
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

static void buf_consume(struct buf *b, size_t n)
{
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

struct kclient *kc_connect(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct kclient *kc;
	int fd, saved;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "cannot connect to %s: socket path too long", path);
		errno = ENAMETOOLONG;
		return NULL;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		goto fail;
	if (!(kc = calloc(1, sizeof(*kc))) || !(kc->path = strdup(path))) {
		free(kc);
		errno = ENOMEM;
		goto fail;
	}
	kc->fd = fd;
	kc->next_id = 1;
	kc->tailp = &kc->head;
	return kc;
fail:
	saved = errno;
	snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(saved));
	if (fd >= 0)
		close(fd);
	errno = saved;
	return NULL;
}

void kc_close(struct kclient *kc)
{
	struct msg *m, *next;

	if (!kc)
		return;
	for (m = kc->head; m; m = next) {
		next = m->next;
		json_decref(m->json);
		free(m);
	}
	close(kc->fd);
	free(kc->in.data);
	free(kc->out.data);
	free(kc->path);
	free(kc);
}

int kc_fd(const struct kclient *kc)
{
	return kc->fd;
}

const char *kc_strerror(const struct kclient *kc)
{
	return kc->err;
}

void kc_set_handler(struct kclient *kc, kc_handler *fn, void *arg)
{
	kc->handler = fn;
	kc->handler_arg = arg;
}

enum kc_kind kc_classify(json_t *msg)
{
	if (!json_is_object(msg))
		return KC_NONE;
	if (json_object_get(msg, "event"))
		return json_is_string(json_object_get(msg, "event")) ? KC_EVENT : KC_NONE;
	if (!json_object_get(msg, "id"))
		return KC_NONE;
	if (json_is_boolean(json_object_get(msg, "ok")))
		return KC_REPLY;
	if (json_object_get(msg, "progress"))
		return KC_PROGRESS;
	return KC_NONE;
}

json_t *kc_result(json_t *reply)
{
	return json_object_get(reply, "result");
}

/* The error object's field, or NULL when the reply is not an error. */
static const char *error_field(json_t *reply, const char *key)
{
	if (!json_is_false(json_object_get(reply, "ok")))
		return NULL;
	return json_string_value(json_object_get(json_object_get(reply, "error"), key));
}

const char *kc_error_code(json_t *reply)
{
	const char *code = error_field(reply, "code");

	/* a daemon that forgets the code still failed: never look like success */
	if (!code && json_is_false(json_object_get(reply, "ok")))
		return "internal";
	return code;
}

const char *kc_error_message(json_t *reply)
{
	const char *m = error_field(reply, "message");

	if (!m && json_is_false(json_object_get(reply, "ok")))
		return "";
	return m;
}

/* Our ids are integers; a reply echoing anything else is not ours to match. */
static int msg_id(json_t *msg, long long *id)
{
	json_t *v = json_object_get(msg, "id");

	if (!json_is_integer(v))
		return 0;
	*id = json_integer_value(v);
	return 1;
}

static void abandon(struct kclient *kc, long long id)
{
	kc->abandoned[kc->nabandoned++ % NABANDONED] = id;
}

/* Is this message for a request nobody waits for?  A final reply also
 * forgets the id so the slot can be reused. */
static int is_abandoned(struct kclient *kc, json_t *msg, enum kc_kind kind)
{
	long long id;

	if (!msg_id(msg, &id))
		return 0;
	for (unsigned i = 0; i < NABANDONED && i < kc->nabandoned; i++) {
		if (kc->abandoned[i] != id || id == 0)
			continue;
		if (kind == KC_REPLY)
			kc->abandoned[i] = 0;
		return 1;
	}
	return 0;
}

static int enqueue(struct kclient *kc, json_t *msg, enum kc_kind kind)
{
	struct msg *m = malloc(sizeof(*m));

	if (!m) {
		json_decref(msg);
		return set_err(kc, KC_EINVAL, "out of memory queueing a message");
	}
	m->next = NULL;
	m->kind = kind;
	m->json = msg;
	*kc->tailp = m;
	kc->tailp = &m->next;
	return KC_OK;
}

/* Unlink the message after prev (NULL: the head) and return its json. */
static json_t *unlink_msg(struct kclient *kc, struct msg *prev, enum kc_kind *kind)
{
	struct msg *m = prev ? prev->next : kc->head;
	json_t *j = m->json;

	if (prev)
		prev->next = m->next;
	else
		kc->head = m->next;
	if (kc->tailp == &m->next)
		kc->tailp = prev ? &prev->next : &kc->head;
	if (kind)
		*kind = m->kind;
	free(m);
	return j;
}

json_t *kc_next(struct kclient *kc, enum kc_kind *kind)
{
	if (!kc->head) {
		if (kind)
			*kind = KC_NONE;
		return NULL;
	}
	return unlink_msg(kc, NULL, kind);
}

/* Take the final reply to id out of the queue, wherever it sits. */
static json_t *take_reply(struct kclient *kc, long long id)
{
	struct msg *prev = NULL;
	long long got;

	for (struct msg *m = kc->head; m; prev = m, m = m->next)
		if (m->kind == KC_REPLY && msg_id(m->json, &got) && got == id)
			return unlink_msg(kc, prev, NULL);
	return NULL;
}

/* The daemon answers a request it could not read (too large, too many
 * clients) with "id": null and then hangs up: that error, not "closed",
 * is what a waiting caller should see. */
static json_t *take_null_reply(struct kclient *kc)
{
	struct msg *prev = NULL;

	for (struct msg *m = kc->head; m; prev = m, m = m->next)
		if (m->kind == KC_REPLY && json_is_null(json_object_get(m->json, "id")))
			return unlink_msg(kc, prev, NULL);
	return NULL;
}

/* Parse one line (without its newline) and queue or hand out the message. */
static int take_line(struct kclient *kc, const char *line, size_t len)
{
	json_error_t e;
	enum kc_kind kind;
	json_t *msg;

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (len == 0)
		return KC_OK;
	if (!(msg = json_loadb(line, len, 0, &e)))
		return set_err(kc, KC_EPROTO, "malformed line from daemon: column %d: %s", e.column,
		               e.text);
	if ((kind = kc_classify(msg)) == KC_NONE) {
		json_decref(msg);
		return set_err(kc, KC_EPROTO,
		               "malformed line from daemon: not a reply, progress or event: %.*s",
		               len > 80 ? 80 : (int)len, line);
	}
	if (is_abandoned(kc, msg, kind)) {
		json_decref(msg);
		return KC_OK;
	}
	if (kc->handler && kind != KC_REPLY) {
		kc->handler(kc->handler_arg, kind, msg);
		json_decref(msg);
		return KC_OK;
	}
	return enqueue(kc, msg, kind);
}

/* Split the input buffer into lines; keep the incomplete tail. */
static int split_lines(struct kclient *kc)
{
	size_t start = 0, len;
	int rc = KC_OK;
	char *nl;

	while ((nl = memchr(kc->in.data + start, '\n', kc->in.len - start))) {
		len = (size_t)(nl - (kc->in.data + start));
		if (kc->skipping)
			kc->skipping = 0;
		else if (take_line(kc, kc->in.data + start, len) != KC_OK)
			rc = KC_EPROTO;
		start += len + 1;
	}
	buf_consume(&kc->in, start);
	if (kc->skipping) {
		kc->in.len = 0;
	} else if (kc->in.len > MAX_LINE) {
		/* framing survives: drop bytes up to the next newline and go on */
		kc->in.len = 0;
		kc->skipping = 1;
		rc = set_err(kc, KC_EPROTO, "malformed line from daemon: longer than %u bytes",
		             MAX_LINE);
	}
	return rc;
}

int kc_feed(struct kclient *kc)
{
	int rc = KC_OK;
	ssize_t n;

	if (kc->eof)
		return set_err(kc, KC_ECLOSED, "daemon closed the connection");
	for (int i = 0; i < FEED_READS; i++) {
		if (buf_reserve(&kc->in, READ_CHUNK) < 0)
			return set_err(kc, KC_EINVAL, "out of memory reading from daemon");
		n = read(kc->fd, kc->in.data + kc->in.len, READ_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0 && errno != ECONNRESET)
			return set_err(kc, KC_EIO, "read from %s: %s", kc->path, strerror(errno));
		if (n <= 0) {
			/* a half-received last line is lost with the connection */
			kc->closed = kc->eof = 1;
			return set_err(kc, KC_ECLOSED, "daemon closed the connection");
		}
		kc->in.len += (size_t)n;
		if (split_lines(kc) != KC_OK)
			rc = KC_EPROTO;
		if (n < READ_CHUNK)
			break;
	}
	return rc;
}

int kc_want_write(const struct kclient *kc)
{
	return kc->out.len > 0;
}

int kc_flush(struct kclient *kc)
{
	ssize_t n;

	while (kc->out.len > 0) {
		if (kc->closed)
			return KC_ECLOSED;
		n = send(kc->fd, kc->out.data, kc->out.len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return KC_OK;
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			/* unsendable now; what the daemon said before it hung up is still read */
			kc->out.len = 0;
			kc->closed = 1;
			return set_err(kc, KC_ECLOSED, "daemon closed the connection");
		}
		if (n < 0)
			return set_err(kc, KC_EIO, "write to %s: %s", kc->path, strerror(errno));
		buf_consume(&kc->out, (size_t)n);
	}
	return KC_OK;
}

static json_t *build_request(long long id, const char *cmd, const char *device, json_t *args,
                             int timeout_ms)
{
	json_t *req = json_object();

	/* json_string() refuses invalid UTF-8, which the daemon would refuse too */
	if (!req || json_object_set_new(req, "id", json_integer(id)) < 0 ||
	    json_object_set_new(req, "cmd", json_string(cmd)) < 0 ||
	    (device && json_object_set_new(req, "device", json_string(device)) < 0) ||
	    (args && json_object_set(req, "args", args) < 0) ||
	    (timeout_ms > 0 &&
	     json_object_set_new(req, "timeout_ms", json_integer(timeout_ms)) < 0)) {
		json_decref(req);
		return NULL;
	}
	return req;
}

int kc_send(struct kclient *kc, const char *cmd, const char *device, json_t *args, int timeout_ms,
            long long *id)
{
	json_t *req;
	char *line;
	size_t len;

	if (!cmd || !*cmd || (args && !json_is_object(args)))
		return set_err(kc, KC_EINVAL, "request needs a command and object arguments");
	if (kc->closed)
		return set_err(kc, KC_ECLOSED, "daemon closed the connection");
	if (!(req = build_request(kc->next_id, cmd, device, args, timeout_ms)))
		return set_err(kc, KC_EINVAL, "command or device name is not valid UTF-8");
	line = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!line || buf_reserve(&kc->out, (len = strlen(line)) + 1) < 0) {
		free(line);
		return set_err(kc, KC_EINVAL, "out of memory building a request");
	}
	memcpy(kc->out.data + kc->out.len, line, len);
	kc->out.data[kc->out.len + len] = '\n';
	kc->out.len += len + 1;
	free(line);
	if (id)
		*id = kc->next_id;
	kc->next_id++;
	return kc_flush(kc);
}

int kc_cancel(struct kclient *kc, long long id)
{
	json_t *args = json_pack("{sI}", "target", (json_int_t)id);
	long long cid;
	int rc;

	if (!args)
		return set_err(kc, KC_EINVAL, "out of memory building a request");
	rc = kc_send(kc, "cancel", NULL, args, 0, &cid);
	json_decref(args);
	if (rc == KC_OK)
		abandon(kc, cid);
	return rc;
}

static struct timespec deadline_in(int timeout_ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += timeout_ms / 1000;
	t.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

/* Milliseconds left until dl (rounded up so we never spin), 0 when past, -1 without one. */
static int ms_left(const struct timespec *dl)
{
	struct timespec now;
	long long ns;

	if (!dl)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ns = (long long)(dl->tv_sec - now.tv_sec) * 1000000000LL + (dl->tv_nsec - now.tv_nsec);
	return ns <= 0 ? 0 : (int)((ns + 999999) / 1000000);
}

/* Wait for the socket once and move bytes both ways.  KC_OK means "look
 * at the queue again", also after a signal: waits resume by design. */
static int pump(struct kclient *kc, const struct timespec *dl)
{
	int ms = ms_left(dl), rc = KC_OK;
	struct pollfd p = {.fd = kc->fd, .events = POLLIN};

	if (kc->out.len)
		p.events |= POLLOUT;
	switch (poll(&p, 1, ms)) {
	case -1:
		if (errno == EINTR)
			return KC_OK;
		return set_err(kc, KC_EIO, "poll on %s: %s", kc->path, strerror(errno));
	case 0:
		return ms_left(dl) == 0 ? KC_ETIMEOUT : KC_OK;
	}
	if (p.revents & POLLNVAL)
		return set_err(kc, KC_EIO, "poll on %s: invalid descriptor", kc->path);
	if (p.revents & POLLOUT)
		rc = kc_flush(kc);
	if ((rc == KC_OK || rc == KC_ECLOSED) && (p.revents & (POLLIN | POLLHUP | POLLERR)))
		rc = kc_feed(kc);
	return rc;
}

int kc_wait(struct kclient *kc, int timeout_ms)
{
	struct timespec dl = deadline_in(timeout_ms);
	int rc;

	for (;;) {
		if (kc->head)
			return KC_OK;
		if (kc->eof)
			return set_err(kc, KC_ECLOSED, "daemon closed the connection");
		rc = pump(kc, timeout_ms < 0 ? NULL : &dl);
		if (rc == KC_ETIMEOUT)
			return set_err(kc, rc, "no message from daemon within %d ms", timeout_ms);
		if (rc != KC_OK && rc != KC_ECLOSED)
			return rc;
	}
}

static int reply_status(struct kclient *kc, json_t *reply)
{
	if (json_is_true(json_object_get(reply, "ok")))
		return KC_OK;
	return set_err(kc, KC_EREPLY, "%s: %s", kc_error_code(reply), kc_error_message(reply));
}

int kc_wait_reply(struct kclient *kc, long long id, int timeout_ms, json_t **reply)
{
	struct timespec dl = deadline_in(timeout_ms);
	json_t *m;
	int rc;

	if (reply)
		*reply = NULL;
	for (;;) {
		if ((m = take_reply(kc, id)) || (kc->closed && (m = take_null_reply(kc)))) {
			rc = reply_status(kc, m);
			if (reply)
				*reply = m;
			else
				json_decref(m);
			return rc;
		}
		if (kc->eof)
			return set_err(kc, KC_ECLOSED, "daemon closed the connection");
		rc = pump(kc, timeout_ms < 0 ? NULL : &dl);
		if (rc == KC_ETIMEOUT)
			return set_err(kc, rc, "no reply from daemon within %d ms", timeout_ms);
		if (rc != KC_OK && rc != KC_ECLOSED)
			return rc;
	}
}

int kc_call(struct kclient *kc, const char *cmd, const char *device, json_t *args, int timeout_ms,
            json_t **reply)
{
	long long id = -1;
	int rc;

	if (reply)
		*reply = NULL;
	if (timeout_ms > INT_MAX - KC_GRACE_MS)
		timeout_ms = INT_MAX - KC_GRACE_MS;
	/* a request queued on a connection that just broke still waits: the
	 * daemon's last line (too_large, not_permitted) is the better error */
	if ((rc = kc_send(kc, cmd, device, args, timeout_ms, &id)) != KC_OK && id < 0)
		return rc;
	rc = kc_wait_reply(kc, id, timeout_ms > 0 ? timeout_ms + KC_GRACE_MS : -1, reply);
	if (rc == KC_OK || rc == KC_EREPLY)
		return rc;
	/* the caller never saw the id: nobody will collect a late reply */
	abandon(kc, id);
	if (rc == KC_ETIMEOUT) {
		kc_cancel(kc, id);
		rc = set_err(kc, rc, "no reply from daemon within %d ms", timeout_ms);
	}
	return rc;
}
