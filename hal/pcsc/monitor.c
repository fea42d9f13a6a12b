/*
 * monitor.c -- card insert/remove from SCardGetStatusChange.
 *
 * SCardGetStatusChange blocks, so it runs on a thread of the plugin's own
 * rather than on the host's worker pool: a wait that lasts as long as the
 * device is open would hold one of the pool's few workers for good, and
 * the core neither closes a device nor tells its plugin while a job of it
 * runs.  close() stops the thread with SCardCancel; the wait also wakes
 * twice a second, so a cancel that lands before the wait began costs at
 * most that long.  What the thread sees goes to the loop as messages on a
 * pipe; the loop side turns them into events.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pcsc.h"

#define POLL_MS 500

static void post(struct pcsc *p, enum mon_kind kind, const uint8_t *atr, size_t atrlen,
                 const char *text)
{
	struct mon_msg m;
	ssize_t w;

	memset(&m, 0, sizeof(m));
	m.kind = kind;
	if (atr) {
		m.atrlen = (uint8_t)(atrlen > ATR_MAX ? ATR_MAX : atrlen);
		memcpy(m.atr, atr, m.atrlen);
	}
	if (text)
		snprintf(m.text, sizeof(m.text), "%s", text);
	do
		w = write(p->pipe[1], &m, sizeof(m));
	while (w < 0 && errno == EINTR);
}

static void post_lost(struct pcsc *p, const char *what, LONG rv)
{
	char why[200];

	snprintf(why, sizeof(why), "%s: %s", what, pcsc_stringify_error(rv));
	post(p, MON_LOST, NULL, 0, why);
}

/* The first reader whose name contains p->want, into name. */
static int find_reader(struct pcsc *p, SCARDCONTEXT ctx, char *name, size_t namelen)
{
	char *list = NULL, why[200];
	DWORD len = SCARD_AUTOALLOCATE;
	LONG rv = SCardListReaders(ctx, NULL, (LPSTR)&list, &len);
	int found = 0;

	if (rv != SCARD_S_SUCCESS && rv != SCARD_E_NO_READERS_AVAILABLE) {
		post_lost(p, "listing readers", rv);
		return -1;
	}
	for (char *r = rv == SCARD_S_SUCCESS ? list : NULL; r && *r && !found; r += strlen(r) + 1)
		if (strstr(r, p->want)) {
			snprintf(name, namelen, "%s", r);
			found = 1;
		}
	if (list)
		SCardFreeMemory(ctx, list);
	if (!found) {
		snprintf(why, sizeof(why), "no PC/SC reader%s%.120s%s",
		         *p->want ? " matching '" : "", p->want, *p->want ? "'" : "");
		post(p, MON_LOST, NULL, 0, why);
		return -1;
	}
	post(p, MON_READER, NULL, 0, name);
	return 0;
}

static void report(struct pcsc *p, const SCARD_READERSTATE *st, int *present, DWORD *events)
{
	int now = !!(st->dwEventState & SCARD_STATE_PRESENT);
	/* pcsc-lite counts card events in the high word: a card swapped
	 * between two wakeups still shows as out and in */
	DWORD count = st->dwEventState >> 16;
	int swapped = now && *present && count != *events;

	if (*present && (!now || swapped))
		post(p, MON_REMOVED, NULL, 0, NULL);
	if (now && (!*present || swapped))
		post(p, MON_INSERTED, st->rgbAtr, st->cbAtr, NULL);
	*present = now;
	*events = count;
}

static void watch_reader(struct pcsc *p, SCARDCONTEXT ctx, const char *name)
{
	SCARD_READERSTATE st = {.szReader = name, .dwCurrentState = SCARD_STATE_UNAWARE};
	int present = 0;
	DWORD events = 0;

	while (!atomic_load(&p->stopping)) {
		LONG rv = SCardGetStatusChange(ctx, POLL_MS, &st, 1);
		if (atomic_load(&p->stopping))
			return;
		if (rv == SCARD_E_TIMEOUT || rv == SCARD_E_CANCELLED)
			continue;
		if (rv != SCARD_S_SUCCESS) {
			post_lost(p, "pcscd", rv);
			return;
		}
		if (st.dwEventState & (SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE)) {
			post(p, MON_LOST, NULL, 0, "reader removed");
			return;
		}
		report(p, &st, &present, &events);
		st.dwCurrentState = st.dwEventState & ~SCARD_STATE_CHANGED;
	}
}

static void *monitor_main(void *arg)
{
	struct pcsc *p = arg;
	char name[READER_MAX];
	SCARDCONTEXT ctx;
	LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);

	if (rv != SCARD_S_SUCCESS) {
		post_lost(p, "cannot reach pcscd", rv);
		return NULL;
	}
	pthread_mutex_lock(&p->mon_lock);
	p->mon_ctx = ctx;
	p->mon_ctx_ok = 1;
	pthread_mutex_unlock(&p->mon_lock);
	if (find_reader(p, ctx, name, sizeof(name)) == 0)
		watch_reader(p, ctx, name);
	pthread_mutex_lock(&p->mon_lock);
	p->mon_ctx_ok = 0;
	pthread_mutex_unlock(&p->mon_lock);
	SCardReleaseContext(ctx);
	return NULL;
}

static void on_inserted(struct pcsc *p, const struct mon_msg *m)
{
	p->present = 1;
	p->gen++;
	memcpy(p->atr, m->atr, m->atrlen);
	p->atrlen = m->atrlen;
	p->type = card_classify(p->atr, p->atrlen);
	p->psc_left = -1;
	p->host->log(p->dev, KIOSK_LOG_INFO, "card inserted (%s)", card_type_name(p->type));
	char atr[2 * ATR_MAX + 1];
	hex_encode(p->atr, p->atrlen, atr);
	p->host->emit(p->dev, "inserted",
	              json_pack("{s:s,s:s}", "type", card_type_name(p->type), "atr", atr));
	cmd_card_inserted(p);
}

/* Returns -1 when the device was reported lost (and may be closed). */
static int on_msg(struct pcsc *p, const struct mon_msg *m)
{
	switch (m->kind) {
	case MON_READER:
		snprintf(p->reader, sizeof(p->reader), "%s", m->text);
		p->host->log(p->dev, KIOSK_LOG_INFO, "watching reader '%s'", p->reader);
		return 0;
	case MON_INSERTED:
		on_inserted(p, m);
		return 0;
	case MON_REMOVED:
		p->present = 0;
		p->host->log(p->dev, KIOSK_LOG_INFO, "card removed");
		p->host->emit(p->dev, "removed", json_object());
		return 0;
	case MON_LOST:
		p->host->lost(p->dev, m->text);
		return -1;
	}
	return 0;
}

static void on_pipe(int fd, int what, void *arg)
{
	struct pcsc *p = arg;
	struct mon_msg m;

	(void)what;
	while (read(fd, &m, sizeof(m)) == (ssize_t)sizeof(m))
		if (on_msg(p, &m) < 0)
			return;
}

int monitor_start(struct pcsc *p, char *why, size_t whylen)
{
	if (pipe2(p->pipe, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		return -1;
	}
	/* never block the thread on a full pipe (the loop drains it; a message
	 * lost there is only possible with the loop stalled for good) */
	fcntl(p->pipe[0], F_SETFL, O_NONBLOCK);
	fcntl(p->pipe[1], F_SETFL, O_NONBLOCK);
	p->watch = p->host->watch_fd(p->dev, p->pipe[0], KIOSK_FD_READ, on_pipe, p);
	if (!p->watch || pthread_create(&p->thread, NULL, monitor_main, p) != 0) {
		snprintf(why, whylen, "cannot start the monitor thread");
		return -1;
	}
	p->thread_started = 1;
	return 0;
}

/* The loop's half of stopping: no more messages are read (the thread's
 * writes to the closed pipe fail with EPIPE, SIGPIPE being blocked). */
void monitor_unwatch(struct pcsc *p)
{
	if (p->watch)
		p->host->unwatch_fd(p->watch);
	p->watch = NULL;
	if (p->pipe[0] >= 0)
		close(p->pipe[0]);
	p->pipe[0] = -1;
}

/* The thread's end: SCardCancel wakes the wait at once, the poll within
 * POLL_MS -- with a pcscd that answers.  Any thread; no host calls. */
void monitor_join(struct pcsc *p)
{
	if (p->thread_started) {
		atomic_store(&p->stopping, 1);
		pthread_mutex_lock(&p->mon_lock);
		if (p->mon_ctx_ok)
			SCardCancel(p->mon_ctx);
		pthread_mutex_unlock(&p->mon_lock);
		pthread_join(p->thread, NULL);
		p->thread_started = 0;
	}
	if (p->pipe[1] >= 0)
		close(p->pipe[1]);
	p->pipe[1] = -1;
}
