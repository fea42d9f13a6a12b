/* libFuzzer target: the configuration parser (inih + conf.c) on arbitrary
 * text.  Checked: a refused configuration always says why, every message
 * starts with the file name and names a line that exists, and an
 * accepted one is consistent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char name[] = "fuzz.conf";
	struct diag diag = {0};
	char *text = malloc(size + 1);
	struct conf *c;

	memcpy(text, data, size);
	text[size] = 0;
	c = conf_load_string(name, text, &diag);
	if (!c && diag.n == 0)
		abort(); /* refused without a reason */
	if (c && diag.n != 0)
		abort(); /* accepted with problems */
	/* lines as the parser sees them: up to a newline or the end (a NUL
	 * ends the text) */
	int lines = 0;
	for (const char *t = text; *t; lines++) {
		const char *nl = strchr(t, '\n');
		t = nl ? nl + 1 : t + strlen(t);
	}
	for (int i = 0; i < diag.n; i++) {
		const char *m = diag.msgs[i];
		if (strncmp(m, name, sizeof(name) - 1) || m[sizeof(name) - 1] != ':')
			abort();
		int line = atoi(m + sizeof(name));
		if (line < 0 || line > lines)
			abort(); /* a line number past the end of the text */
	}
	if (c) {
		if (c->max_clients < 1 || c->workers < 1 || c->max_line < 256 ||
		    c->reopen_min_ms > c->reopen_max_ms || log_level_name(c->log_level)[0] == '?')
			abort();
		for (const struct conf_device *d = c->devices; d; d = d->next) {
			if (!d->cls || !d->plugin || strlen(d->name) > 32 ||
			    conf_device_find(c, d->name) != d)
				abort();
			struct conf_device *copy = conf_device_dup(d);
			if (!conf_device_equal(copy, d))
				abort();
			conf_device_free(copy);
		}
	}
	conf_free(c);
	diag_free(&diag);
	free(text);
	return 0;
}
