/* cups_model.c -- see cups_model.h. */
#include "cups_model.h"

#include <stdio.h>
#include <string.h>

const char *cq_doc_format(const void *data, size_t len)
{
	static const struct {
		const char *magic;
		size_t n;
		const char *format;
	} kinds[] = {
	        {"%PDF-", 5, "application/pdf"},
	        {"\x89PNG\r\n\x1a\n", 8, "image/png"},
	        {"\xff\xd8\xff", 3, "image/jpeg"},
	};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (len >= kinds[i].n && memcmp(data, kinds[i].magic, kinds[i].n) == 0)
			return kinds[i].format;
	return NULL;
}

const char *cq_media_keyword(const char *media)
{
	static const char *const map[][2] = {
	        {"A4", "iso_a4_210x297mm"},     {"A5", "iso_a5_148x210mm"},
	        {"A3", "iso_a3_297x420mm"},     {"letter", "na_letter_8.5x11in"},
	        {"legal", "na_legal_8.5x14in"},
	};

	for (size_t i = 0; media && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i][0], media) == 0)
			return map[i][1];
	return NULL;
}

const char *cq_job_state_name(int state)
{
	static const char *const names[] = {"pending",   "held",    "processing", "stopped",
	                                    "cancelled", "aborted", "completed"};

	if (state < CQ_JOB_PENDING || state > CQ_JOB_COMPLETED)
		return "unknown";
	return names[state - CQ_JOB_PENDING];
}

int cq_job_terminal(int state)
{
	return state == CQ_JOB_CANCELED || state == CQ_JOB_ABORTED || state == CQ_JOB_COMPLETED;
}

const char *cq_queue_state_name(const struct cq_queue *q)
{
	if (!q)
		return "unknown";
	if (!q->reachable)
		return "unreachable";
	if (!q->found)
		return "missing";
	switch (q->state) {
	case CQ_PRINTER_IDLE:
		return "idle";
	case CQ_PRINTER_PROCESSING:
		return "processing";
	case CQ_PRINTER_STOPPED:
		return "stopped";
	default:
		return "unknown";
	}
}

/* The most telling words CUPS has for a queue: its message, else its
 * reasons, else nothing. */
static const char *detail(const struct cq_queue *q)
{
	if (*q->message)
		return q->message;
	if (*q->reasons && strcmp(q->reasons, "none") != 0)
		return q->reasons;
	return "";
}

int cq_queue_problem(const struct cq_queue *q, const char *queue, char *why, size_t whylen)
{
	const char *d = detail(q);
	const char *sep = *d ? ": " : "";

	if (!q->reachable)
		snprintf(why, whylen, "CUPS server unreachable: %s", q->error);
	else if (!q->found)
		snprintf(why, whylen, "queue %s does not exist", queue);
	else if (q->state == CQ_PRINTER_STOPPED)
		snprintf(why, whylen, "queue %s is stopped%s%s", queue, sep, d);
	else if (!q->accepting)
		snprintf(why, whylen, "queue %s is not accepting jobs%s%s", queue, sep, d);
	else
		return 0;
	return -1;
}

/* A hold the job asked for (job-hold-until, or the queue's default) is
 * a wait; CUPS also holds a job it could not send (its retry after a
 * printer error), and that is a failure the customer must hear about now. */
static int held_on_purpose(const struct cq_job *j)
{
	return strstr(j->reasons, "job-hold-until-specified") != NULL;
}

enum cq_verdict cq_job_verdict(const struct cq_job *j, int queue_ok)
{
	switch (j->state) {
	case CQ_JOB_COMPLETED:
		return CQ_DONE;
	case CQ_JOB_CANCELED:
		return CQ_CANCELLED;
	case CQ_JOB_ABORTED:
	case CQ_JOB_STOPPED:
		return CQ_FAILED;
	case CQ_JOB_HELD:
		if (!held_on_purpose(j))
			return CQ_FAILED;
		break;
	case CQ_JOB_PENDING:
	case CQ_JOB_PROCESSING:
		break;
	default:
		return CQ_FAILED; /* gone, or a state IPP does not have */
	}
	return queue_ok ? CQ_WAIT : CQ_OFFLINE;
}

int cq_job_needs_cancel(const struct cq_job *j, enum cq_verdict v)
{
	return (v == CQ_FAILED || v == CQ_OFFLINE) && j->state && !cq_job_terminal(j->state);
}

const char *cq_job_detail(const struct cq_job *j)
{
	if (*j->message)
		return j->message;
	if (*j->reasons && strcmp(j->reasons, "none") != 0)
		return j->reasons;
	return "no reason given";
}
