/* The cups plugin's pure decisions (hal/cups/cups_model.c) and the
 * printer.print schema for documents (src/schema.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "../../hal/cups/cups_model.h"
#include "schema.h"

static void test_doc_format(void **state)
{
	static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xe0, 0, 0x10};
	static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0};
	(void)state;
	assert_string_equal(cq_doc_format("%PDF-1.7\n", 9), "application/pdf");
	assert_string_equal(cq_doc_format(png, sizeof(png)), "image/png");
	assert_string_equal(cq_doc_format(jpeg, sizeof(jpeg)), "image/jpeg");
	/* too short, near misses, text, empty */
	assert_null(cq_doc_format("%PDF", 4));
	assert_null(cq_doc_format(png, 7));
	assert_null(cq_doc_format(jpeg, 2));
	assert_null(cq_doc_format("%pdf-1.4", 8));
	assert_null(cq_doc_format(" %PDF-1.4", 9));
	assert_null(cq_doc_format("GIF89a", 6));
	assert_null(cq_doc_format("", 0));
}

static void test_media(void **state)
{
	(void)state;
	assert_string_equal(cq_media_keyword("A4"), "iso_a4_210x297mm");
	assert_string_equal(cq_media_keyword("letter"), "na_letter_8.5x11in");
	assert_null(cq_media_keyword("a4"));
	assert_null(cq_media_keyword(NULL));
}

static void test_job_states(void **state)
{
	(void)state;
	assert_string_equal(cq_job_state_name(CQ_JOB_PENDING), "pending");
	assert_string_equal(cq_job_state_name(CQ_JOB_HELD), "held");
	assert_string_equal(cq_job_state_name(CQ_JOB_CANCELED), "cancelled");
	assert_string_equal(cq_job_state_name(CQ_JOB_COMPLETED), "completed");
	assert_string_equal(cq_job_state_name(2), "unknown");
	assert_string_equal(cq_job_state_name(10), "unknown");
	assert_false(cq_job_terminal(CQ_JOB_PROCESSING));
	assert_false(cq_job_terminal(CQ_JOB_STOPPED));
	assert_true(cq_job_terminal(CQ_JOB_ABORTED));
}

static struct cq_job job(int st, const char *reasons, const char *message)
{
	struct cq_job j = {.state = st};
	strcpy(j.reasons, reasons);
	strcpy(j.message, message);
	return j;
}

static void test_verdicts(void **state)
{
	struct cq_job j;
	(void)state;

	j = job(CQ_JOB_PENDING, "none", "");
	assert_int_equal(cq_job_verdict(&j, 1), CQ_WAIT);
	assert_int_equal(cq_job_verdict(&j, 0), CQ_OFFLINE);
	assert_true(cq_job_needs_cancel(&j, CQ_OFFLINE));
	j = job(CQ_JOB_PROCESSING, "job-printing", "");
	assert_int_equal(cq_job_verdict(&j, 1), CQ_WAIT);
	assert_false(cq_job_needs_cancel(&j, CQ_WAIT));
	/* held on purpose waits; held by CUPS after a printer error fails */
	j = job(CQ_JOB_HELD, "job-hold-until-specified", "");
	assert_int_equal(cq_job_verdict(&j, 1), CQ_WAIT);
	j = job(CQ_JOB_HELD, "resources-are-not-ready", "simulated printer failure");
	assert_int_equal(cq_job_verdict(&j, 1), CQ_FAILED);
	assert_true(cq_job_needs_cancel(&j, CQ_FAILED));
	assert_string_equal(cq_job_detail(&j), "simulated printer failure");
	j = job(CQ_JOB_STOPPED, "job-stopped", "");
	assert_int_equal(cq_job_verdict(&j, 1), CQ_FAILED);
	assert_true(cq_job_needs_cancel(&j, CQ_FAILED));
	assert_string_equal(cq_job_detail(&j), "job-stopped");
	j = job(CQ_JOB_ABORTED, "none", "");
	assert_int_equal(cq_job_verdict(&j, 1), CQ_FAILED);
	assert_false(cq_job_needs_cancel(&j, CQ_FAILED)); /* already over */
	assert_string_equal(cq_job_detail(&j), "no reason given");
	/* a finished job is finished, whatever the queue does now */
	j = job(CQ_JOB_COMPLETED, "job-completed-successfully", "");
	assert_int_equal(cq_job_verdict(&j, 0), CQ_DONE);
	j = job(CQ_JOB_CANCELED, "job-canceled-by-user", "");
	assert_int_equal(cq_job_verdict(&j, 0), CQ_CANCELLED);
	/* a job that could not be read (gone) */
	j = job(0, "", "client-error-not-found");
	assert_int_equal(cq_job_verdict(&j, 1), CQ_FAILED);
	assert_false(cq_job_needs_cancel(&j, CQ_FAILED));
}

static void test_queue_problem(void **state)
{
	struct cq_queue q = {.reachable = 1, .found = 1, .state = CQ_PRINTER_IDLE, .accepting = 1};
	char why[200];
	(void)state;

	strcpy(q.reasons, "none");
	assert_int_equal(cq_queue_problem(&q, "a4", why, sizeof(why)), 0);
	assert_string_equal(cq_queue_state_name(&q), "idle");
	q.state = CQ_PRINTER_STOPPED;
	assert_int_equal(cq_queue_problem(&q, "a4", why, sizeof(why)), -1);
	assert_string_equal(why, "queue a4 is stopped");
	strcpy(q.reasons, "paused");
	assert_int_equal(cq_queue_problem(&q, "a4", why, sizeof(why)), -1);
	assert_string_equal(why, "queue a4 is stopped: paused");
	strcpy(q.message, "out of toner");
	assert_int_equal(cq_queue_problem(&q, "a4", why, sizeof(why)), -1);
	assert_string_equal(why, "queue a4 is stopped: out of toner");
	q.state = CQ_PRINTER_PROCESSING;
	q.accepting = 0;
	assert_int_equal(cq_queue_problem(&q, "a4", why, sizeof(why)), -1);
	assert_string_equal(why, "queue a4 is not accepting jobs: out of toner");
	assert_string_equal(cq_queue_state_name(&q), "processing");
	q.found = 0;
	assert_int_equal(cq_queue_problem(&q, "a4", why, sizeof(why)), -1);
	assert_string_equal(why, "queue a4 does not exist");
	assert_string_equal(cq_queue_state_name(&q), "missing");
	q.reachable = 0;
	strcpy(q.error, "/run/x.sock: No such file or directory");
	assert_int_equal(cq_queue_problem(&q, "a4", why, sizeof(why)), -1);
	assert_string_equal(why, "CUPS server unreachable: /run/x.sock: No such file or directory");
	assert_string_equal(cq_queue_state_name(&q), "unreachable");
	assert_string_equal(cq_queue_state_name(NULL), "unknown");
}

/* printer.print: accepted (want NULL) or refused with exactly want. */
static void check(const char *args_json, const char *want)
{
	const struct verb_spec *v = schema_verb(KIOSK_CLASS_PRINTER, "print");
	json_t *args = args_json ? json_loads(args_json, 0, NULL) : NULL;
	char why[256] = "";
	int rc;

	assert_non_null(v);
	if (args_json && !args)
		fail_msg("bad test JSON %s", args_json);
	rc = schema_check(v, args, why, sizeof(why));
	json_decref(args);
	if (!want && rc != 0)
		fail_msg("%s refused: %s", args_json, why);
	if (want) {
		if (rc != -1)
			fail_msg("%s accepted, wanted %s", args_json, want);
		assert_string_equal(why, want);
	}
}

#define DOC                                                                                        \
	"\"document\": \""                                                                         \
	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\""

static void test_schema_document(void **state)
{
	(void)state;
	check("{" DOC "}", NULL);
	check("{" DOC ", \"copies\": 99, \"media\": \"letter\", \"sides\": \"one-sided\"}", NULL);
	check("{" DOC ", \"copies\": 0}", "copies: must be between 1 and 99");
	check("{" DOC ", \"copies\": 100}", "copies: must be between 1 and 99");
	check("{" DOC ", \"media\": \"A0\"}", "media: must be one of A4|A5|A3|letter|legal");
	check("{" DOC ", \"sides\": \"both\"}",
	      "sides: must be one of one-sided|two-sided-long-edge|two-sided-short-edge");
	check("{" DOC ", \"staple\": true}", "unknown argument 'staple' for print");
	check("{\"document\": \"ABCD\"}", "document: must be a blob id (64 lowercase hex digits)");
	check("{" DOC ", \"blocks\": [{\"text\": \"x\"}]}",
	      "print needs exactly one of 'blocks' or 'document'");
	check("{\"blocks\": [{\"text\": \"x\"}], \"copies\": 2}", "copies: only with 'document'");
	check("{\"blocks\": [{\"text\": \"x\"}], \"media\": \"A4\"}",
	      "media: only with 'document'");
	check("{\"blocks\": [{\"text\": \"x\"}]}", NULL);
	check("{\"copies\": 2}", "missing argument 'blocks'");
	check(NULL, "missing argument 'blocks'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_doc_format),    cmocka_unit_test(test_media),
	        cmocka_unit_test(test_job_states),    cmocka_unit_test(test_verdicts),
	        cmocka_unit_test(test_queue_problem), cmocka_unit_test(test_schema_document),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
