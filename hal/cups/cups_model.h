/*
 * cups_model.h -- the cups plugin's pure decisions: what a document blob
 * is, what a queue's or a job's IPP state means for a kiosk request.
 * No libcups and no host calls here, so the unit tests and the fuzzer
 * drive it directly.
 */
#ifndef KIOSK_CUPS_MODEL_H
#define KIOSK_CUPS_MODEL_H

#include <stddef.h>

/* IPP job-state values (RFC 8011 5.3.7), as libcups' ipp_jstate_t. */
enum cq_jstate {
	CQ_JOB_PENDING = 3,
	CQ_JOB_HELD = 4,
	CQ_JOB_PROCESSING = 5,
	CQ_JOB_STOPPED = 6,
	CQ_JOB_CANCELED = 7,
	CQ_JOB_ABORTED = 8,
	CQ_JOB_COMPLETED = 9,
};

/* IPP printer-state values. */
enum cq_pstate {
	CQ_PRINTER_IDLE = 3,
	CQ_PRINTER_PROCESSING = 4,
	CQ_PRINTER_STOPPED = 5,
};

/* A queue as last seen by a poll.  reachable = 0: the server did not
 * answer; found = 0: it answered that the queue does not exist. */
struct cq_queue {
	int reachable, found;
	int state; /* enum cq_pstate */
	int accepting;
	char reasons[256]; /* printer-state-reasons, comma-separated */
	char message[256]; /* printer-state-message */
	char error[256];   /* why it was unreachable */
};

/* A job as last seen by a poll (state 0: it could not be read). */
struct cq_job {
	int state;         /* enum cq_jstate */
	char reasons[256]; /* job-state-reasons, comma-separated */
	char message[256]; /* job-state-message */
};

/* What a poll's view of the running job means for its request. */
enum cq_verdict {
	CQ_WAIT,      /* still on its way */
	CQ_DONE,      /* printed */
	CQ_CANCELLED, /* cancelled (by us, or by someone in CUPS) */
	CQ_FAILED,    /* aborted, stopped, or held by CUPS after an error */
	CQ_OFFLINE,   /* the queue cannot print it */
};

/* queue_ok: the queue can take jobs (cq_queue_problem() == 0). */
enum cq_verdict cq_job_verdict(const struct cq_job *j, int queue_ok);
/* Nonzero when a job with this verdict must be cancelled in CUPS, so it
 * does not come out hours after the kiosk told the customer it failed. */
int cq_job_needs_cancel(const struct cq_job *j, enum cq_verdict v);
/* CUPS' words on a job: its message, else its reasons. */
const char *cq_job_detail(const struct cq_job *j);

/* "application/pdf", "image/png" or "image/jpeg" by the leading magic
 * bytes, or NULL for anything else. */
const char *cq_doc_format(const void *data, size_t len);

/* The PWG media keyword for a schema media name (A4, letter...), or NULL. */
const char *cq_media_keyword(const char *media);

/* "pending", "held", "processing", "stopped", "cancelled", "aborted",
 * "completed"; "unknown" for anything else. */
const char *cq_job_state_name(int state);
/* Nonzero for states a job never leaves. */
int cq_job_terminal(int state);

/* "idle", "processing", "stopped", "missing", "unreachable"; "unknown"
 * before the first poll (q == NULL). */
const char *cq_queue_state_name(const struct cq_queue *q);

/* 0 when the queue can take a job; else -1 with the reason the device is
 * offline in why ("queue a4 is stopped: Paused"). */
int cq_queue_problem(const struct cq_queue *q, const char *queue, char *why, size_t whylen);

#endif
