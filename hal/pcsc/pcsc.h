/*
 * pcsc.h -- private to the pcsc plugin.
 *
 * Threads: the loop thread owns everything but the fields marked "monitor"
 * (the thread waiting in SCardGetStatusChange, monitor.c) and "job" (a
 * command's card I/O on the host's worker pool, ops.c; the core runs one
 * command at a time per device, so one job at a time touches them).
 */
#ifndef KIOSK_PCSC_H
#define KIOSK_PCSC_H

#include <pthread.h>
#include <stdatomic.h>
#include <winscard.h>

#include "card.h"
#include "keys.h"
#include "kiosk/hal.h"

#define READER_MAX 256
#define ATR_MAX    33

/* What the monitor thread tells the loop, through a pipe (one write of a
 * whole message: atomic, being under PIPE_BUF). */
enum mon_kind { MON_READER, MON_INSERTED, MON_REMOVED, MON_LOST };
struct mon_msg {
	enum mon_kind kind;
	uint8_t atr[ATR_MAX];
	uint8_t atrlen;
	char text[200]; /* MON_READER: the reader name; MON_LOST: why */
};

struct pcsc {
	struct kiosk_dev *dev;
	const struct kiosk_host *host;

	/* configuration */
	char want[READER_MAX]; /* reader name must contain this ("" = any) */
	unsigned chunk;        /* bytes per SLE4442 write APDU */
	struct keyring keys;

	/* the monitor thread */
	pthread_t thread;
	int thread_started;
	int pipe[2];
	struct kiosk_watch *watch;
	pthread_mutex_t mon_lock; /* guards mon_ctx against SCardCancel */
	SCARDCONTEXT mon_ctx;     /* monitor */
	int mon_ctx_ok;
	atomic_int stopping;
	atomic_int teardown; /* pcsc.c: who frees a close() that gave up waiting */

	/* the reader and its card, as the loop knows them */
	char reader[READER_MAX]; /* "" until the monitor found it */
	int present;
	unsigned gen; /* bumped per insertion */
	uint8_t atr[ATR_MAX];
	size_t atrlen;
	enum card_type type;
	int psc_left;           /* SLE4442 tries left, -1 unknown */
	unsigned psc_ok_gen;    /* gen whose PSC was verified, 0 none */
	struct kiosk_req *wait; /* a cardreader.wait for a card to come */

	/* the running command's job */
	struct job *job;

	/* job: the command context and the card connection */
	SCARDCONTEXT ctx;
	int ctx_ok;
	SCARDHANDLE card;
	int card_ok;
	unsigned card_gen; /* the gen card was connected for */
	DWORD proto;
};

/* pcsc.c: the host table, kept from init() (command() gets none). */
extern const struct kiosk_host *pcsc_host;

/* monitor.c */
int monitor_start(struct pcsc *p, char *why, size_t whylen);
void monitor_unwatch(struct pcsc *p);
void monitor_join(struct pcsc *p);

/* cmd.c: the class's verbs, and the card events that finish a wait. */
void pcsc_command(struct kiosk_dev *dev, struct kiosk_req *req, const char *verb, json_t *args);
void pcsc_cancel(struct kiosk_dev *dev, struct kiosk_req *req);
void cmd_card_inserted(struct pcsc *p);
void cmd_close(struct pcsc *p);

#endif
