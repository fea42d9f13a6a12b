/* libFuzzer target: jtext against jansson, its reference.
 *
 * Checked on every input: when jtext_parse takes the bytes, jansson
 * (json_loadb with JSON_REJECT_DUPLICATES) takes them too, to an equal
 * value with its keys in the same order; for whatever jansson takes,
 * jtext_dump tells the length of json_dumpb's compact text and writes
 * exactly that text when it fits, or declines; it never writes past the
 * buffer it is given (ASan watches the malloc()ed one). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jtext.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	json_t *a = jtext_parse(s, size);
	json_t *b = json_loadb(s, size, JSON_REJECT_DUPLICATES, NULL);

	if (a) {
		char *da = json_dumps(a, JSON_COMPACT), *db = b ? json_dumps(b, JSON_COMPACT) : NULL;
		if (!b || !json_equal(a, b) || !da || !db || strcmp(da, db))
			abort();
		free(da);
		free(db);
	}
	if (b) {
		char *want = json_dumps(b, JSON_COMPACT);
		size_t cap = size % 64; /* small buffers too: nothing past them */
		char *buf = malloc(cap ? cap : 1);
		size_t n = jtext_dump(b, buf, cap);
		if (n && (!want || n != strlen(want) || (n <= cap && memcmp(buf, want, n))))
			abort();
		free(buf);
		free(want);
	}
	json_decref(a);
	json_decref(b);
	return 0;
}
