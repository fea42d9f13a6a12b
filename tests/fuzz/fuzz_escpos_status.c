/* libFuzzer target: the escpos plugin's DLE EOT status parser and the
 * events it derives.  Checked: a parse that fails leaves a zeroed status;
 * a parse that succeeds took only bytes with the fixed status bits; the
 * events between two statuses are at most ESCPOS_MAX_EVENTS known names
 * and none when nothing changed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../hal/escpos/escpos.h"

static int known(const char *e)
{
	static const char *const names[] = {"paper_ok",     "paper_low", "paper_out",  "cover_open",
	                                    "cover_closed", "jam",       "jam_cleared"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(e, names[i]) == 0)
			return 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct escpos_status a, b;
	const char *ev[ESCPOS_MAX_EVENTS];
	static const struct escpos_status zero;
	int ra = escpos_status_parse(data, size < 4 ? size : 4, &a);
	int rb = escpos_status_parse(size > 4 ? data + 4 : data,
	                             size > 4 ? (size - 4 < 4 ? size - 4 : 4) : 0, &b);

	if (ra < 0 && memcmp(&a, &zero, sizeof(a)) != 0)
		abort();
	if (ra == 0)
		for (size_t i = 0; i < 4; i++)
			if ((data[i] & 0x93) != 0x12)
				abort();
	size_t n = escpos_status_events(&a, &b, ev);
	if (n > ESCPOS_MAX_EVENTS)
		abort();
	for (size_t i = 0; i < n; i++)
		if (!known(ev[i]))
			abort();
	if (escpos_status_events(&a, &a, ev) != 0)
		abort();
	return 0;
}
