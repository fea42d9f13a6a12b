/*
 * sim_barcode.c -- a simulated QR/barcode scanner.  A scan is published
 * as an event and also completes a pending `wait`.  Scans are not
 * buffered: a wait started after a scan waits for the next one, as a UI
 * listening to a real scanner would.  Codes are never logged (payment
 * QR codes can carry personal data).
 */
#include <stdio.h>
#include <stdlib.h>

#include "sim.h"

struct barcode {
	int waiting;
	long long scans;
};

static struct barcode *barcode(struct sim *s)
{
	return s->priv;
}

static void do_wait(struct sim *s, json_t *args)
{
	(void)args;
	barcode(s)->waiting = 1;
}

static int inj_scan(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct barcode *b = barcode(s);
	const char *code = NULL, *sym = "qr";

	if (sim_arg_need(sim_arg_str(args, "code", 8192, &code, why, whylen), "code", why, whylen) <
	            0 ||
	    sim_arg_str(args, "symbology", 32, &sym, why, whylen) < 0)
		return -1;
	b->scans++;
	sim_log(s, "%s code scanned", sym);
	sim_emit(s, "scanned", json_pack("{s:s,s:s}", "code", code, "symbology", sym));
	if (b->waiting)
		sim_reply(s, json_pack("{s:s,s:s}", "code", code, "symbology", sym));
	return 0;
}

static int barcode_open(struct sim *s, char *why, size_t whylen)
{
	if (!(s->priv = calloc(1, sizeof(struct barcode)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

static void barcode_reset(struct sim *s)
{
	barcode(s)->waiting = 0;
}

static void barcode_close(struct sim *s)
{
	free(s->priv);
	s->priv = NULL;
}

static json_t *barcode_status(struct sim *s)
{
	struct barcode *b = barcode(s);

	return json_pack("{s:b,s:I}", "waiting", b->waiting, "scans", (json_int_t)b->scans);
}

static const struct sim_verb verbs[] = {
        {"wait", do_wait},
        {NULL, NULL},
};

static const struct sim_inject injects[] = {
        {"scan", inj_scan},
        {NULL, NULL},
};

const struct sim_class sim_barcode = {
        .cls = KIOSK_CLASS_BARCODE,
        .name = "barcode",
        .open = barcode_open,
        .close = barcode_close,
        .reset = barcode_reset,
        .status = barcode_status,
        .verbs = verbs,
        .injects = injects,
};
