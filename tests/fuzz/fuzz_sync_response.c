/* libFuzzer target: what an endpoint may answer.  The input is the body
 * of a 2xx answer to a batch of eight transactions (ids "t0".."t7", and
 * the input's first line as a ninth when it is short), read by
 * sync_parse_results; the same bytes also go through the Retry-After
 * parser, remote.call's path check and the excerpt used in messages.
 *
 * Checked on every input: each outcome is one of the three; a reason
 * exists exactly for a failed transaction, is valid UTF-8 without
 * control bytes, and is short; a body that does not parse leaves every
 * transaction to be retried; the other parsers stay in their bounds. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "log.h"
#include "sync.h"

#define NIDS 9

/* Valid UTF-8 (as jansson checks it) with no control bytes. */
static int clean(const char *s)
{
	json_t *j = json_string(s);
	int ok = j != NULL;
	json_decref(j);
	for (; ok && *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			ok = 0;
	return ok;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init("fuzz", LOG_EMERG);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *ids[NIDS] = {"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", NULL};
	enum store_outcome out[NIDS];
	char *reasons[NIDS], first[33], *text, why[160], ex[128];
	const char *nl = memchr(data, '\n', size);
	size_t n1 = nl ? (size_t)(nl - (const char *)data) : size;
	int n = NIDS - 1, rc;

	/* a ninth id from the input: ids the fuzzer chooses, duplicates too */
	if (n1 > 0 && n1 < sizeof(first) && !memchr(data, 0, n1)) {
		memcpy(first, data, n1);
		first[n1] = 0;
		ids[n++] = first;
	}
	rc = sync_parse_results((const char *)data, size, ids, n, out, reasons);
	if (rc != 0 && rc != -1)
		abort();
	for (int i = 0; i < n; i++) {
		if (out[i] != OUT_DELIVERED && out[i] != OUT_RETRY && out[i] != OUT_FAILED)
			abort();
		if (rc < 0 && (out[i] != OUT_RETRY || reasons[i]))
			abort();
		if ((out[i] == OUT_FAILED) != (reasons[i] != NULL))
			abort();
		if (reasons[i] && (!reasons[i][0] || strlen(reasons[i]) > 210 || !clean(reasons[i])))
			abort();
		free(reasons[i]);
	}

	if (!(text = malloc(size + 1)))
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	long ms = http_retry_after_ms(text, (time_t)1445412480);
	if (ms < -1 || ms > 86400L * 1000)
		abort();
	why[0] = 0;
	rc = http_path_check(text, why, sizeof(why));
	if (rc == 0 && (text[0] != '/' || strstr(text, "..") || strstr(text, "//") ||
	                strpbrk(text, "?#\\ \r\n")))
		abort();
	if (rc != 0 && !why[0])
		abort();
	http_excerpt((const char *)data, size, 100, ex, sizeof(ex));
	if (strlen(ex) > 103 || !clean(ex))
		abort();
	free(text);
	return 0;
}
