/*
 * escpos_status.c -- the printer's answers to DLE EOT n (real-time status
 * transmission), as Epson's TM series and the common Chinese clones send
 * them: one byte per query whose bits 0 and 7 are 0 and bits 1 and 4 are 1.
 * Those fixed bits are how a stray byte (an ASB message, echo, line noise)
 * is told from a status answer.
 */
#include <string.h>

#include "escpos.h"

static int is_status_byte(uint8_t b)
{
	return (b & 0x93) == 0x12;
}

int escpos_status_parse(const uint8_t *r, size_t n, struct escpos_status *st)
{
	memset(st, 0, sizeof(*st));
	if (n != ESCPOS_STATUS_QUERIES)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!is_status_byte(r[i]))
			return -1;
	st->offline = !!(r[0] & 0x08);
	st->cover_open = !!(r[1] & 0x04);
	/* n=2 bit 5 "printing stopped by paper end" is set with the roll
	 * sensor on most models, but some clones only set this one */
	st->paper_out = (r[1] & 0x20) || (r[3] & 0x60) == 0x60;
	st->cutter_error = !!(r[2] & 0x08);
	st->unrecoverable = !!(r[2] & 0x20);
	st->recoverable = !!(r[2] & 0x40);
	st->paper_low = (r[3] & 0x0c) == 0x0c;
	return 0;
}

const char *escpos_paper_state(const struct escpos_status *st)
{
	return st->paper_out ? "out" : st->paper_low ? "low" : "ok";
}

/* The events are the simulator's (docs/protocol.md "printer events"): an
 * autocutter error is the cutter jamming on paper, so it is a jam. */
size_t escpos_status_events(const struct escpos_status *old, const struct escpos_status *now,
                            const char *ev[ESCPOS_MAX_EVENTS])
{
	const char *was = escpos_paper_state(old), *is = escpos_paper_state(now);
	size_t n = 0;

	if (strcmp(was, is) != 0)
		ev[n++] = now->paper_out ? "paper_out" : now->paper_low ? "paper_low" : "paper_ok";
	if (old->cover_open != now->cover_open)
		ev[n++] = now->cover_open ? "cover_open" : "cover_closed";
	if (old->cutter_error != now->cutter_error)
		ev[n++] = now->cutter_error ? "jam" : "jam_cleared";
	return n;
}
