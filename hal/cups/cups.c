/*
 * cups.c -- an A4 printer behind a CUPS queue (printer class).
 *
 * printer.print {"document": <blob>} sends a PDF, PNG or JPEG blob to the
 * configured queue through libcups and follows the job until CUPS says it
 * is done.  Every libcups call blocks, so all of them run in
 * host->run_blocking() jobs (cups_ipp.c), one at a time per device; the
 * loop side here only decides.  A repeating timer polls the queue and the
 * running job: job states go out as progress and printer.job_state
 * events, a queue that cannot print (server gone, queue missing, stopped,
 * rejecting jobs) takes the device offline with CUPS' reason.
 *
 * Receipts (printer.print {"blocks": ...}) are refused: laying out a
 * receipt on A4 is the UI's job (it can render a PDF).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cups_ipp.h"
#include "cups_model.h"
#include "kiosk/hal.h"

static const struct kiosk_option options[] = {
        {"queue", KIOSK_OPT_STRING, "", 0, 0, "CUPS queue (printer name) to print to; required"},
        {"server", KIOSK_OPT_STRING, "", 0, 0,
         "CUPS server: /path/to/socket, host or host:port (default: libcups' own, "
         "CUPS_SERVER or client.conf)"},
        {"poll_ms", KIOSK_OPT_INT, "500", 20, 60000,
         "how often the queue and the running job are polled, in ms"},
        {"job_name", KIOSK_OPT_STRING, "kioskd", 0, 0,
         "job-name of every job (no document names: they may be personal)"},
        {NULL, 0, NULL, 0, 0, NULL},
};

static const struct kiosk_match match[] = {
        {"net", 0, 0, "any printer with a CUPS queue (IPP, USB, network)"},
        {NULL, 0, 0, NULL},
};

struct cq {
	struct kiosk_dev *dev;
	const struct kiosk_host *host;
	char queue[128];
	char job_name[128];
	struct cq_conn *conn;
	struct kiosk_timer *poll;
	int busy; /* a worker job runs (it owns conn meanwhile) */
	int gone; /* lost() was called: start nothing more */
	int polled;
	struct cq_queue q;
	long long printed;

	/* the running request */
	struct kiosk_req *req;
	int job_id; /* 0 until CUPS created the job */
	int job_state;
	int cancel; /* cancel() or a timeout asked to stop */
	const char *format;
	size_t bytes;
	int copies;
	struct work *pending; /* a submit waiting for a running poll */
	/* a fresh job is polled soon and then less often, up to poll_ms: a
	 * short job finishes in milliseconds on a local cupsd */
	struct kiosk_timer *fast;
	uint32_t fast_ms, poll_ms;
};

/* One run_blocking() job: inputs copied from the loop side, outputs read
 * back by its done callback. */
struct work {
	struct cq *p;
	int job_id; /* poll: the job to follow; submit: the job created */
	int cancel; /* poll: cancel the job first */
	struct cq_job_opts opts;
	void *data;
	size_t len;

	struct cq_queue q;
	int offline; /* the queue cannot print: why says why */
	struct cq_job job;
	enum cq_verdict verdict;
	int cancelled; /* poll: we cancelled the failed job in CUPS */
	char why[512];
};

static void start_poll(struct cq *p);
static void start_submit(struct cq *p, struct work *w);
static void fast_poll(struct cq *p);

/* The host table from init(): close() and cancel() get none of their own. */
static const struct kiosk_host *cq_host;

static struct cq *dev_priv(struct kiosk_dev *dev)
{
	return cq_host->priv(dev);
}

/*
 * The gate: what the last look at a device's queue found, kept per device
 * name across close/open.  Without it a broken queue would make the device
 * flap: open() cannot ask CUPS (that blocks), so it would say "ready", the
 * first poll "offline", at every reopen.  Instead, while the gate is shut,
 * open() refuses with the last reason and starts a probe on the worker
 * pool; the next reopen after a good probe opens.
 */
struct gate {
	struct gate *next;
	int shut, probing;
	char reason[512];
	char key[300]; /* queue and server the verdict is about */
	char name[];
};
static struct gate *gates;

static struct gate *gate_get(const char *name)
{
	struct gate *g;
	size_t n = strlen(name);

	for (g = gates; g; g = g->next)
		if (strcmp(g->name, name) == 0)
			return g;
	if (!(g = calloc(1, sizeof(*g) + n + 1)))
		return NULL;
	memcpy(g->name, name, n + 1);
	g->next = gates;
	gates = g;
	return g;
}

static void gate_key(struct kiosk_dev *dev, char *key, size_t n)
{
	snprintf(key, n, "%s|%s", cq_host->config(dev, "queue"), cq_host->config(dev, "server"));
}

struct probe {
	struct gate *gate;
	char queue[128], server[160];
	int bad;
	char why[512];
};

static void probe_job(void *arg)
{
	struct probe *pr = arg;
	struct cq_conn *c = cq_conn_new(pr->server);
	struct cq_queue q;

	if (!c) {
		pr->bad = 1;
		snprintf(pr->why, sizeof(pr->why), "out of memory");
		return;
	}
	cq_get_queue(c, pr->queue, &q);
	pr->bad = cq_queue_problem(&q, pr->queue, pr->why, sizeof(pr->why)) < 0;
	cq_conn_free(c);
}

/* Only the plugin's own gate is touched: the device may be gone. */
static void probe_done(void *arg)
{
	struct probe *pr = arg;

	pr->gate->probing = 0;
	pr->gate->shut = pr->bad;
	if (pr->bad)
		snprintf(pr->gate->reason, sizeof(pr->gate->reason), "%s", pr->why);
	free(pr);
}

/* The gate is shut: start a probe (unless one runs) and refuse the open
 * with the last reason. */
static int gate_refuse(struct kiosk_dev *dev, struct gate *g, char *why, size_t whylen)
{
	struct probe *pr;

	snprintf(why, whylen, "%s", g->reason);
	if (g->probing || !(pr = calloc(1, sizeof(*pr))))
		return -1;
	pr->gate = g;
	snprintf(pr->queue, sizeof(pr->queue), "%s", cq_host->config(dev, "queue"));
	snprintf(pr->server, sizeof(pr->server), "%s", cq_host->config(dev, "server"));
	g->probing = 1;
	if (cq_host->run_blocking(dev, probe_job, probe_done, pr) < 0) {
		g->probing = 0;
		free(pr);
	}
	return -1;
}

/* --- finishing the request: our state is cleared first, because the
 * core may hand us the next command from inside reply()/fail() --- */

static struct kiosk_req *end_request(struct cq *p)
{
	struct kiosk_req *req = p->req;

	p->req = NULL;
	p->job_id = 0;
	p->job_state = 0;
	p->cancel = 0;
	return req;
}

static void finish_ok(struct cq *p)
{
	json_t *res =
	        json_pack("{s:i,s:s,s:s,s:I,s:i}", "job_id", p->job_id, "state", "completed",
	                  "format", p->format, "bytes", (json_int_t)p->bytes, "copies", p->copies);

	p->printed++;
	p->host->reply(end_request(p), res);
}

static void finish_fail(struct cq *p, const char *code, const char *why)
{
	p->host->fail(end_request(p), code, "%s", why);
}

/* --- what the polls saw --- */

/* Keep the new queue state; the device's status shows it, and a queue
 * that cannot print takes the device offline (device.state says why). */
static void take_queue(struct cq *p, const struct cq_queue *q)
{
	p->q = *q;
	p->polled = 1;
}

/* A new job state: progress on the request and a printer.job_state event. */
static void take_job_state(struct cq *p, int state)
{
	if (state == p->job_state)
		return;
	p->job_state = state;
	p->host->log(p->dev, KIOSK_LOG_INFO, "job %d %s", p->job_id, cq_job_state_name(state));
	p->host->progress(p->req, json_pack("{s:i,s:s}", "job_id", p->job_id, "state",
	                                    cq_job_state_name(state)));
	p->host->emit(
	        p->dev, "job_state",
	        json_pack("{s:i,s:s}", "job_id", p->job_id, "state", cq_job_state_name(state)));
}

/* The device cannot print: answer the request, then hand the device back
 * to the core, which reopens it with backoff.  Touch nothing after. */
static void go_offline(struct cq *p, const char *why)
{
	struct gate *g = gate_get(cq_host->dev_name(p->dev));

	if (g) {
		g->shut = 1;
		snprintf(g->reason, sizeof(g->reason), "%s", why);
		gate_key(p->dev, g->key, sizeof(g->key));
	}
	p->gone = 1;
	if (p->req)
		finish_fail(p, "device_offline", why);
	p->host->log(p->dev, KIOSK_LOG_WARNING, "offline: %s", why);
	p->host->lost(p->dev, why);
}

/* The job's verdict, for a request that is still ours. */
static void job_verdict(struct cq *p, const struct work *w)
{
	char why[800];

	switch (w->verdict) {
	case CQ_WAIT:
	case CQ_OFFLINE: /* answered by go_offline() */
		return;
	case CQ_DONE:
		finish_ok(p);
		return;
	case CQ_CANCELLED:
		if (p->cancel) {
			snprintf(why, sizeof(why), "job %d cancelled", p->job_id);
			finish_fail(p, "cancelled", why);
			return;
		}
		snprintf(why, sizeof(why), "job %d was cancelled in CUPS", p->job_id);
		break;
	case CQ_FAILED:
		if (w->job.state)
			snprintf(why, sizeof(why), "job %d %s by CUPS: %s%s", p->job_id,
			         cq_job_state_name(w->job.state), cq_job_detail(&w->job),
			         w->cancelled ? "; cancelled" : "");
		else
			snprintf(why, sizeof(why), "job %d: %s", p->job_id, cq_job_detail(&w->job));
		break;
	}
	finish_fail(p, "device_error", why);
}

/* --- the poll: queue state, and the running job's --- */

static void poll_job(void *arg)
{
	struct work *w = arg;
	struct cq *p = w->p;
	char ignore[256];

	cq_get_queue(p->conn, p->queue, &w->q);
	w->offline = cq_queue_problem(&w->q, p->queue, w->why, sizeof(w->why)) < 0;
	if (!w->job_id)
		return;
	if (!w->q.reachable) {
		w->verdict = CQ_OFFLINE;
		return;
	}
	/* success or not, the state read next tells what became of the job */
	if (w->cancel)
		cq_cancel(p->conn, p->queue, w->job_id, ignore, sizeof(ignore));
	cq_get_job(p->conn, p->queue, w->job_id, &w->job);
	w->verdict = cq_job_verdict(&w->job, !w->offline);
	if (cq_job_needs_cancel(&w->job, w->verdict))
		w->cancelled = cq_cancel(p->conn, p->queue, w->job_id, ignore, sizeof(ignore)) == 0;
}

/* A job found the queue unusable: the device goes offline with its
 * reason (kept past freeing the work it came in). */
static void work_offline(struct cq *p, struct work *w)
{
	char why[sizeof(w->why)];

	memcpy(why, w->why, sizeof(why));
	free(w);
	go_offline(p, why);
}

static void poll_done(void *arg)
{
	struct work *w = arg;
	struct cq *p = w->p;

	p->busy = 0;
	if (p->gone) {
		free(w);
		return;
	}
	take_queue(p, &w->q);
	if (p->req && p->job_id && w->job_id == p->job_id) {
		if (w->job.state)
			take_job_state(p, w->job.state);
		job_verdict(p, w);
	}
	if (w->offline) {
		work_offline(p, w);
		return;
	}
	free(w);
	if (p->pending) {
		struct work *next = p->pending;
		p->pending = NULL;
		start_submit(p, next);
	} else if (p->req && p->job_id && p->cancel) {
		/* a cancel that came while this poll ran */
		start_poll(p);
	} else {
		fast_poll(p);
	}
}

static void start_poll(struct cq *p)
{
	struct work *w;

	if (p->busy || p->gone || !(w = calloc(1, sizeof(*w))))
		return;
	w->p = p;
	w->job_id = p->req ? p->job_id : 0;
	w->cancel = p->req && p->cancel;
	p->busy = 1;
	if (p->host->run_blocking(p->dev, poll_job, poll_done, w) < 0) {
		p->busy = 0;
		free(w);
	}
}

static void on_poll(void *arg)
{
	start_poll(arg);
}

static void on_fast(void *arg)
{
	struct cq *p = arg;

	p->fast = NULL; /* one-shot: released after this returns */
	start_poll(p);
}

/* The next quick look at the running job, each twice as late as the last,
 * until the repeating poll is as quick. */
static void fast_poll(struct cq *p)
{
	if (p->fast || !p->req || !p->job_id || p->fast_ms >= p->poll_ms)
		return;
	p->fast = p->host->timer_start(p->dev, p->fast_ms, 0, on_fast, p);
	p->fast_ms *= 2;
}

/* --- printing --- */

static void submit_job(void *arg)
{
	struct work *w = arg;
	struct cq *p = w->p;

	cq_get_queue(p->conn, p->queue, &w->q);
	if (cq_queue_problem(&w->q, p->queue, w->why, sizeof(w->why)) < 0) {
		w->offline = 1;
		return;
	}
	w->job_id = cq_submit(p->conn, p->queue, &w->opts, w->data, w->len, w->why, sizeof(w->why));
}

static void submit_done(void *arg)
{
	struct work *w = arg;
	struct cq *p = w->p;

	p->busy = 0;
	free(w->data);
	w->data = NULL;
	if (p->gone) {
		free(w);
		return;
	}
	take_queue(p, &w->q);
	if (w->offline) {
		work_offline(p, w);
		return;
	}
	if (!w->job_id) {
		finish_fail(p, "device_error", w->why);
		free(w);
		return;
	}
	p->job_id = w->job_id;
	free(w);
	p->host->log(p->dev, KIOSK_LOG_INFO, "job %d queued (%s, %zu bytes, %d copies)", p->job_id,
	             p->format, p->bytes, p->copies);
	take_job_state(p, CQ_JOB_PENDING);
	if (p->cancel) {
		start_poll(p);
		return;
	}
	p->fast_ms = 5;
	fast_poll(p);
}

/* Read and check the document; NULL after failing the request. */
static struct work *prepare(struct cq *p, json_t *args)
{
	const char *id = json_string_value(json_object_get(args, "document"));
	json_t *copies = json_object_get(args, "copies");
	struct work *w = calloc(1, sizeof(*w));
	char why[160];

	if (!w) {
		finish_fail(p, "internal", "out of memory");
		return NULL;
	}
	if (p->host->blob_get(p->dev, id, &w->data, &w->len) < 0) {
		snprintf(why, sizeof(why), "document %.8s: no such blob", id);
		goto refuse;
	}
	if (!(p->format = cq_doc_format(w->data, w->len))) {
		snprintf(why, sizeof(why), "document %.8s is not a PDF, PNG or JPEG", id);
		goto refuse;
	}
	p->bytes = w->len;
	p->copies = copies ? (int)json_integer_value(copies) : 1;
	w->p = p;
	w->opts = (struct cq_job_opts){
	        .format = p->format,
	        .title = p->job_name,
	        .copies = p->copies,
	        .media = cq_media_keyword(json_string_value(json_object_get(args, "media"))),
	        /* the schema's choices are IPP's own keywords */
	        .sides = json_string_value(json_object_get(args, "sides")),
	};
	return w;
refuse:
	free(w->data);
	free(w);
	finish_fail(p, "bad_request", why);
	return NULL;
}

static void start_submit(struct cq *p, struct work *w)
{
	p->busy = 1;
	if (p->host->run_blocking(p->dev, submit_job, submit_done, w) < 0) {
		p->busy = 0;
		free(w->data);
		free(w);
		finish_fail(p, "internal", "worker pool unavailable");
	}
}

static void do_print(struct cq *p, json_t *args)
{
	struct work *w;

	if (json_object_get(args, "blocks")) {
		finish_fail(p, "bad_request",
		            "this is an A4 printer: print a PDF or image with 'document' "
		            "(receipt blocks are for receipt printers)");
		return;
	}
	if (!(w = prepare(p, args)))
		return;
	/* the poll and the submit share the connection: a submit that finds
	 * a poll running starts when that poll is done */
	if (p->busy)
		p->pending = w;
	else
		start_submit(p, w);
}

/* --- plugin entry points --- */

static int cups_open(struct kiosk_dev *dev, const struct kiosk_host *host, char *why, size_t whylen)
{
	const char *queue = host->config(dev, "queue");
	struct cq *p;

	struct gate *g = gate_get(host->dev_name(dev));
	char key[sizeof(g->key)];

	if (!queue || !*queue) {
		snprintf(why, whylen, "no queue configured (option 'queue')");
		return -1;
	}
	gate_key(dev, key, sizeof(key));
	if (g && g->shut && strcmp(g->key, key) != 0)
		g->shut = 0; /* reconfigured: the old verdict is about another queue */
	if (g && g->shut)
		return gate_refuse(dev, g, why, whylen);
	if (!(p = calloc(1, sizeof(*p))) || !(p->conn = cq_conn_new(host->config(dev, "server")))) {
		free(p);
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	p->dev = dev;
	p->host = host;
	snprintf(p->queue, sizeof(p->queue), "%s", queue);
	snprintf(p->job_name, sizeof(p->job_name), "%s", host->config(dev, "job_name"));
	host->set_priv(dev, p);
	p->poll_ms = (uint32_t)atoi(host->config(dev, "poll_ms"));
	p->poll = host->timer_start(dev, p->poll_ms, 1, on_poll, p);
	start_poll(p);
	return 0;
}

/* The core closes a device only when none of its jobs runs, and releases
 * its timers itself. */
static void cups_close(struct kiosk_dev *dev)
{
	struct cq *p = dev_priv(dev);

	if (!p)
		return;
	if (p->pending) {
		free(p->pending->data);
		free(p->pending);
	}
	cq_conn_free(p->conn);
	free(p);
	cq_host->set_priv(dev, NULL);
}

static void cups_command(struct kiosk_dev *dev, struct kiosk_req *req, const char *verb,
                         json_t *args)
{
	struct cq *p = dev_priv(dev);

	p->req = req;
	if (strcmp(verb, "print") == 0) {
		do_print(p, args);
		return;
	}
	finish_fail(p, "unknown_command", "the cups plugin has no such verb");
}

/* Cancel (or timeout): cancel the CUPS job at the next poll, which runs
 * at once unless one is running; the answer is "cancelled" once CUPS
 * confirms.  Before the job exists the submit's end starts that poll. */
static void cups_cancel(struct kiosk_dev *dev, struct kiosk_req *req)
{
	struct cq *p = dev_priv(dev);

	if (!p || p->req != req || p->gone)
		return;
	p->cancel = 1;
	if (p->pending) { /* not sent yet: nothing to cancel in CUPS */
		free(p->pending->data);
		free(p->pending);
		p->pending = NULL;
		finish_fail(p, "cancelled", "cancelled before it was sent");
		return;
	}
	if (p->job_id)
		start_poll(p);
}

static json_t *cups_status(struct kiosk_dev *dev)
{
	struct cq *p = dev_priv(dev);
	int job = p->req && p->job_id;

	return json_pack("{s:s,s:s,s:s,s:b,s:s,s:s,s:o,s:o,s:I}", "queue", p->queue, "server",
	                 cq_conn_server(p->conn), "queue_state",
	                 cq_queue_state_name(p->polled ? &p->q : NULL), "accepting",
	                 p->polled && p->q.accepting, "reasons", p->polled ? p->q.reasons : "",
	                 "message", p->polled ? p->q.message : "", "job_id",
	                 job ? json_integer(p->job_id) : json_null(), "job_state",
	                 job ? json_string(cq_job_state_name(p->job_state)) : json_null(),
	                 "printed_jobs", (json_int_t)p->printed);
}

static int cups_init(const struct kiosk_host *host)
{
	cq_host = host;
	return 0;
}

static void cups_fini(void)
{
	while (gates) {
		struct gate *g = gates;
		gates = g->next;
		free(g);
	}
}

KIOSK_EXPORT const struct kiosk_plugin kiosk_hal_plugin = {
        .magic = KIOSK_HAL_MAGIC,
        .abi_major = KIOSK_HAL_ABI_MAJOR,
        .abi_minor = KIOSK_HAL_ABI_MINOR,
        .struct_size = sizeof(struct kiosk_plugin),
        .name = "cups",
        .version = "1.0.0",
        .description = "A4 printer behind a CUPS queue (PDF, PNG, JPEG documents)",
        .classes = KIOSK_CLASS_PRINTER,
        .match = match,
        .options = options,
        .init = cups_init,
        .fini = cups_fini,
        .open = cups_open,
        .close = cups_close,
        .command = cups_command,
        .cancel = cups_cancel,
        .status = cups_status,
};
