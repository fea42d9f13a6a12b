/* cups_ipp.c -- see cups_ipp.h.  Runs on worker threads only. */
#include "cups_ipp.h"

#include <cups/cups.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A connection that does not answer within this long is treated as
 * unreachable (a local cupsd answers in milliseconds). */
#define CONNECT_MS 5000
#define CHUNK      65536

struct cq_conn {
	http_t *http;
	char host[256];
	int port;
	char shown[300];
};

struct cq_conn *cq_conn_new(const char *server)
{
	struct cq_conn *c = calloc(1, sizeof(*c));
	const char *colon;

	if (!c)
		return NULL;
	/* cupsServer() and ippPort() read CUPS_SERVER/IPP_PORT and
	 * client.conf; their state is per thread, but only read here */
	if (!server || !*server)
		server = cupsServer();
	snprintf(c->host, sizeof(c->host), "%s", server);
	c->port = ippPort();
	colon = strrchr(c->host, ':');
	if (c->host[0] != '/' && colon && strchr(c->host, ':') == colon && colon[1]) {
		c->port = atoi(colon + 1);
		c->host[colon - c->host] = '\0';
	}
	if (c->host[0] == '/')
		snprintf(c->shown, sizeof(c->shown), "%s", c->host);
	else
		snprintf(c->shown, sizeof(c->shown), "%s:%d", c->host, c->port);
	return c;
}

void cq_conn_free(struct cq_conn *c)
{
	if (!c)
		return;
	if (c->http)
		httpClose(c->http);
	free(c);
}

const char *cq_conn_server(const struct cq_conn *c)
{
	return c->shown;
}

/* The open connection, dialling it first when needed; NULL with why. */
static http_t *conn(struct cq_conn *c, char *why, size_t whylen)
{
	if (c->http)
		return c->http;
	c->http = httpConnect2(c->host, c->port, NULL, AF_UNSPEC, HTTP_ENCRYPTION_IF_REQUESTED, 1,
	                       CONNECT_MS, NULL);
	if (!c->http)
		snprintf(why, whylen, "%s: %s", c->shown, cupsLastErrorString());
	return c->http;
}

/* After a transport error the connection may be half-way through a
 * request: drop it, the next call dials again. */
static void drop_if_broken(struct cq_conn *c)
{
	ipp_status_t st = cupsLastError();

	if (c->http && (st == IPP_STATUS_ERROR_SERVICE_UNAVAILABLE ||
	                st == IPP_STATUS_ERROR_INTERNAL || httpError(c->http) != 0)) {
		httpClose(c->http);
		c->http = NULL;
	}
}

static ipp_t *printer_request(ipp_op_t op, const char *queue)
{
	ipp_t *req = ippNewRequest(op);
	char uri[HTTP_MAX_URI];

	httpAssembleURIf(HTTP_URI_CODING_ALL, uri, sizeof(uri), "ipp", NULL, "localhost", 0,
	                 "/printers/%s", queue);
	ippAddString(req, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", NULL, uri);
	ippAddString(req, IPP_TAG_OPERATION, IPP_TAG_NAME, "requesting-user-name", NULL,
	             cupsUser());
	return req;
}

/* Join the values of a keyword attribute with commas. */
static void join_values(ipp_attribute_t *a, char *out, size_t n)
{
	size_t used = 0;

	*out = '\0';
	for (int i = 0; a && i < ippGetCount(a) && used < n; i++) {
		int w = snprintf(out + used, n - used, "%s%s", i ? "," : "",
		                 ippGetString(a, i, NULL));
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

void cq_get_queue(struct cq_conn *c, const char *queue, struct cq_queue *q)
{
	static const char *const want[] = {"printer-state", "printer-state-reasons",
	                                   "printer-state-message", "printer-is-accepting-jobs"};
	ipp_t *req, *resp;
	http_t *h;
	ipp_attribute_t *a;

	memset(q, 0, sizeof(*q));
	if (!(h = conn(c, q->error, sizeof(q->error))))
		return;
	req = printer_request(IPP_OP_GET_PRINTER_ATTRIBUTES, queue);
	ippAddStrings(req, IPP_TAG_OPERATION, IPP_TAG_KEYWORD, "requested-attributes",
	              (int)(sizeof(want) / sizeof(want[0])), NULL, want);
	resp = cupsDoRequest(h, req, "/");
	if (!resp || cupsLastError() > IPP_STATUS_OK_CONFLICTING) {
		if (cupsLastError() == IPP_STATUS_ERROR_NOT_FOUND) {
			q->reachable = 1;
		} else {
			snprintf(q->error, sizeof(q->error), "%.120s: %s", c->shown,
			         cupsLastErrorString());
			drop_if_broken(c);
		}
		ippDelete(resp);
		return;
	}
	q->reachable = q->found = 1;
	q->state = (a = ippFindAttribute(resp, "printer-state", IPP_TAG_ENUM)) ? ippGetInteger(a, 0)
	                                                                       : 0;
	q->accepting = (a = ippFindAttribute(resp, "printer-is-accepting-jobs", IPP_TAG_BOOLEAN))
	                       ? ippGetBoolean(a, 0)
	                       : 0;
	join_values(ippFindAttribute(resp, "printer-state-reasons", IPP_TAG_KEYWORD), q->reasons,
	            sizeof(q->reasons));
	if ((a = ippFindAttribute(resp, "printer-state-message", IPP_TAG_TEXT)))
		snprintf(q->message, sizeof(q->message), "%s", ippGetString(a, 0, NULL));
	ippDelete(resp);
}

static int send_document(http_t *h, const char *queue, int id, const struct cq_job_opts *o,
                         const void *data, size_t len)
{
	const char *p = data;

	if (cupsStartDocument(h, queue, id, "document", o->format, 1) != HTTP_STATUS_CONTINUE)
		return -1;
	for (size_t off = 0; off < len; off += CHUNK) {
		size_t n = len - off < CHUNK ? len - off : CHUNK;
		if (cupsWriteRequestData(h, p + off, n) != HTTP_STATUS_CONTINUE) {
			cupsFinishDocument(h, queue);
			return -1;
		}
	}
	return cupsFinishDocument(h, queue) <= IPP_STATUS_OK_CONFLICTING ? 0 : -1;
}

int cq_submit(struct cq_conn *c, const char *queue, const struct cq_job_opts *o, const void *data,
              size_t len, char *why, size_t whylen)
{
	cups_option_t *opts = NULL;
	int nopts = 0, id;
	char copies[16];
	http_t *h;

	if (!(h = conn(c, why, whylen)))
		return 0;
	snprintf(copies, sizeof(copies), "%d", o->copies);
	nopts = cupsAddOption("copies", copies, nopts, &opts);
	if (o->media)
		nopts = cupsAddOption("media", o->media, nopts, &opts);
	if (o->sides)
		nopts = cupsAddOption("sides", o->sides, nopts, &opts);
	id = cupsCreateJob(h, queue, o->title, nopts, opts);
	cupsFreeOptions(nopts, opts);
	if (id <= 0) {
		snprintf(why, whylen, "CUPS refused the job: %s", cupsLastErrorString());
		drop_if_broken(c);
		return 0;
	}
	if (send_document(h, queue, id, o, data, len) < 0) {
		snprintf(why, whylen, "sending the document failed: %s", cupsLastErrorString());
		drop_if_broken(c);
		/* a created job without its document would wait forever */
		if ((h = conn(c, why + strlen(why), 0)))
			cupsCancelJob2(h, queue, id, 0);
		return 0;
	}
	return id;
}

void cq_get_job(struct cq_conn *c, const char *queue, int job_id, struct cq_job *j)
{
	static const char *const want[] = {"job-state", "job-state-reasons", "job-state-message",
	                                   "job-printer-state-message"};
	ipp_attribute_t *a;
	ipp_t *req, *resp;
	http_t *h;

	memset(j, 0, sizeof(*j));
	if (!(h = conn(c, j->message, sizeof(j->message))))
		return;
	req = printer_request(IPP_OP_GET_JOB_ATTRIBUTES, queue);
	ippAddInteger(req, IPP_TAG_OPERATION, IPP_TAG_INTEGER, "job-id", job_id);
	ippAddStrings(req, IPP_TAG_OPERATION, IPP_TAG_KEYWORD, "requested-attributes",
	              (int)(sizeof(want) / sizeof(want[0])), NULL, want);
	resp = cupsDoRequest(h, req, "/");
	if (!resp || cupsLastError() > IPP_STATUS_OK_CONFLICTING) {
		snprintf(j->message, sizeof(j->message), "%s", cupsLastErrorString());
		drop_if_broken(c);
		ippDelete(resp);
		return;
	}
	j->state =
	        (a = ippFindAttribute(resp, "job-state", IPP_TAG_ENUM)) ? ippGetInteger(a, 0) : 0;
	/* CUPS puts a backend's complaint in the printer's message, which it
	 * copies to the job as job-printer-state-message */
	if (((a = ippFindAttribute(resp, "job-state-message", IPP_TAG_TEXT)) &&
	     *ippGetString(a, 0, NULL)) ||
	    (a = ippFindAttribute(resp, "job-printer-state-message", IPP_TAG_TEXT)))
		snprintf(j->message, sizeof(j->message), "%s", ippGetString(a, 0, NULL));
	join_values(ippFindAttribute(resp, "job-state-reasons", IPP_TAG_KEYWORD), j->reasons,
	            sizeof(j->reasons));
	ippDelete(resp);
}

int cq_cancel(struct cq_conn *c, const char *queue, int job_id, char *why, size_t whylen)
{
	http_t *h = conn(c, why, whylen);

	if (!h)
		return -1;
	if (cupsCancelJob2(h, queue, job_id, 0) > IPP_STATUS_OK_CONFLICTING) {
		snprintf(why, whylen, "%s", cupsLastErrorString());
		drop_if_broken(c);
		return -1;
	}
	return 0;
}
