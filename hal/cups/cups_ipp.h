/*
 * cups_ipp.h -- the blocking side of the cups plugin: every libcups call
 * lives here and runs only inside host->run_blocking() jobs, one job at a
 * time per device, so a connection is never used by two threads at once.
 */
#ifndef KIOSK_CUPS_IPP_H
#define KIOSK_CUPS_IPP_H

#include <stddef.h>

#include "cups_model.h"

struct cq_conn; /* one connection to a CUPS server */

/* server: "/path/to.sock", "host" or "host:port"; "" = libcups' default
 * (CUPS_SERVER, client.conf, the local socket).  Never fails: connecting
 * happens in the calls below, and again after a broken connection. */
struct cq_conn *cq_conn_new(const char *server);
void cq_conn_free(struct cq_conn *c);
/* The server as it will be (or was) dialled, for status. */
const char *cq_conn_server(const struct cq_conn *c);

/* Fill q with the queue's state (q->reachable = 0 with q->error when the
 * server cannot be reached). */
void cq_get_queue(struct cq_conn *c, const char *queue, struct cq_queue *q);

struct cq_job_opts {
	const char *format; /* MIME type */
	const char *title;  /* job-name */
	int copies;         /* 1.. */
	const char *media;  /* PWG keyword or NULL */
	const char *sides;  /* IPP sides keyword or NULL */
};

/* Create a job on queue and send data as its one document: the job id,
 * or 0 with why. */
int cq_submit(struct cq_conn *c, const char *queue, const struct cq_job_opts *o, const void *data,
              size_t len, char *why, size_t whylen);

/* Fill j with the job's state; j->state = 0 and CUPS' error in
 * j->message when it cannot be read. */
void cq_get_job(struct cq_conn *c, const char *queue, int job_id, struct cq_job *j);

/* Cancel the job: 0, or -1 with why. */
int cq_cancel(struct cq_conn *c, const char *queue, int job_id, char *why, size_t whylen);

#endif
