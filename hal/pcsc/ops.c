/*
 * ops.c -- the APDU sequences behind each verb (on a worker thread).
 *
 * Writes are verified by reading back every chunk right after it was
 * written: a SLE4442 silently ignores a write to a locked byte or without
 * a presented PSC (the reader still answers 9000), and a card pulled
 * mid-write must be reported exactly -- the count of bytes written is the
 * count of bytes read back equal, and nothing after them is claimed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"

#define GONE_WAIT_MS 1500

static void jfail(struct job *j, const char *code, const char *fmt, ...) KIOSK_PRINTF(3, 4);
static void jfail(struct job *j, const char *code, const char *fmt, ...)
{
	va_list ap;

	snprintf(j->code, sizeof(j->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
	va_end(ap);
}

static void drop_card(struct pcsc *p)
{
	if (p->card_ok)
		SCardDisconnect(p->card, SCARD_LEAVE_CARD);
	p->card_ok = 0;
}

/* After a failed transmit: is the card out of the reader?  vpcd and some
 * readers first answer "not transacted" and notice the card gone a moment
 * later, so give the reader that moment. */
static int card_gone(struct job *j, LONG rv)
{
	SCARD_READERSTATE st = {.szReader = j->reader, .dwCurrentState = SCARD_STATE_UNAWARE};

	if (rv == SCARD_W_REMOVED_CARD || rv == SCARD_E_NO_SMARTCARD)
		return 1;
	if (SCardGetStatusChange(j->p->ctx, 0, &st, 1) != SCARD_S_SUCCESS)
		return 1;
	if (!(st.dwEventState & SCARD_STATE_PRESENT))
		return 1;
	st.dwCurrentState = st.dwEventState & ~SCARD_STATE_CHANGED;
	rv = SCardGetStatusChange(j->p->ctx, GONE_WAIT_MS, &st, 1);
	return rv == SCARD_S_SUCCESS && !(st.dwEventState & SCARD_STATE_PRESENT);
}

static const SCARD_IO_REQUEST *pci(DWORD proto)
{
	return proto == SCARD_PROTOCOL_T0   ? SCARD_PCI_T0
	       : proto == SCARD_PROTOCOL_T1 ? SCARD_PCI_T1
	                                    : SCARD_PCI_RAW;
}

/* One APDU: 0, or -1 with the job failed ("card removed" or why). */
static int xfer(struct job *j, const uint8_t *apdu, size_t n, uint8_t *resp, size_t *rlen)
{
	struct pcsc *p = j->p;
	DWORD len = RESP_MAX;
	LONG rv;

	if (atomic_load(&j->cancelled)) {
		jfail(j, "cancelled", "cancelled");
		return -1;
	}
	rv = SCardTransmit(p->card, pci(p->proto), apdu, (DWORD)n, NULL, resp, &len);
	if (rv == SCARD_S_SUCCESS && len >= 2) {
		*rlen = len;
		return 0;
	}
	drop_card(p);
	/* a card pulled mid-APDU shows as an empty answer through vpcd and
	 * as "not transacted" through others: ask the reader either way */
	if (!card_gone(j, rv))
		jfail(j, "device_error", "card communication failed: %s",
		      rv == SCARD_S_SUCCESS ? "short response" : pcsc_stringify_error(rv));
	else
		jfail(j, "device_error", "card removed");
	return -1;
}

/* An APDU that must end in 9000: 0, or -1 with the job failed. */
static int xfer_ok(struct job *j, const uint8_t *apdu, size_t n, uint8_t *resp, size_t *rlen,
                   const char *what)
{
	if (xfer(j, apdu, n, resp, rlen) < 0)
		return -1;
	if (resp_sw(resp, *rlen) != 0x9000) {
		jfail(j, "device_error", "%s failed (status %04x)", what, resp_sw(resp, *rlen));
		return -1;
	}
	*rlen -= 2;
	return 0;
}

static int ensure_ctx(struct job *j)
{
	struct pcsc *p = j->p;
	LONG rv;

	if (p->ctx_ok)
		return 0;
	rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &p->ctx);
	if (rv != SCARD_S_SUCCESS) {
		jfail(j, "device_error", "cannot reach pcscd: %s", pcsc_stringify_error(rv));
		return -1;
	}
	p->ctx_ok = 1;
	return 0;
}

/* Connected to the card the loop saw inserted (a new one since the last
 * command gets a new connection); a SLE4442 reader is told the card type. */
static int ensure_card(struct job *j)
{
	struct pcsc *p = j->p;
	uint8_t apdu[APDU_MAX], resp[RESP_MAX];
	size_t rlen;
	LONG rv;

	if (ensure_ctx(j) < 0)
		return -1;
	if (p->card_ok && p->card_gen == j->gen)
		return 0;
	drop_card(p);
	rv = SCardConnect(p->ctx, j->reader, SCARD_SHARE_SHARED,
	                  SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &p->card, &p->proto);
	if (rv == SCARD_E_NO_SMARTCARD || rv == SCARD_W_REMOVED_CARD) {
		jfail(j, "device_error", "no card in reader");
		return -1;
	}
	if (rv != SCARD_S_SUCCESS) {
		jfail(j, "device_error", "cannot connect to the card: %s",
		      pcsc_stringify_error(rv));
		return -1;
	}
	p->card_ok = 1;
	p->card_gen = j->gen;
	if (j->type == CARD_SLE4442)
		return xfer_ok(j, apdu, apdu_sle_select(apdu), resp, &rlen, "selecting SLE4442");
	return 0;
}

static int sle_errcnt(struct job *j)
{
	uint8_t apdu[APDU_MAX], resp[RESP_MAX];
	size_t rlen;

	if (xfer_ok(j, apdu, apdu_sle_errcnt(apdu), resp, &rlen, "reading the error counter") < 0)
		return -1;
	if (rlen < 1) {
		jfail(j, "device_error", "reading the error counter: short response");
		return -1;
	}
	j->tries = sle_tries(resp[0]);
	return 0;
}

static void op_identify(struct job *j)
{
	uint8_t apdu[APDU_MAX], resp[RESP_MAX];
	size_t rlen;

	if (j->type == CARD_SLE4442) {
		sle_errcnt(j);
		return;
	}
	if (!card_is_mifare(j->type))
		return;
	if (xfer_ok(j, apdu, apdu_get_uid(apdu), resp, &rlen, "reading the UID") < 0)
		return;
	j->uidlen = rlen > sizeof(j->uid) ? sizeof(j->uid) : rlen;
	memcpy(j->uid, resp, j->uidlen);
}

static void op_read(struct job *j)
{
	uint8_t apdu[APDU_MAX], resp[RESP_MAX];
	size_t rlen, step = card_is_mifare(j->type) ? MIF_BLOCK : 128;
	char what[64];

	for (size_t at = 0; at < j->len; at += step) {
		size_t n = j->len - at < step ? j->len - at : step;
		unsigned block = j->addr + (unsigned)(at / MIF_BLOCK);
		if (!card_is_mifare(j->type)) {
			snprintf(what, sizeof(what), "reading %zu bytes at %zu", n, j->addr + at);
			if (xfer_ok(j, apdu,
			            apdu_sle_read(apdu, (unsigned)(j->addr + at), (unsigned)n),
			            resp, &rlen, what) < 0)
				return;
		} else if (xfer(j, apdu, apdu_mif_read(apdu, block), resp, &rlen) < 0) {
			return;
		} else if (resp_sw(resp, rlen) == 0x6982) {
			jfail(j, "device_error",
			      "block %u: access denied: authenticate sector %u first "
			      "(cardreader.auth)",
			      block, mif_sector(block));
			return;
		} else if (resp_sw(resp, rlen) != 0x9000) {
			jfail(j, "device_error", "block %u: read failed (status %04x)", block,
			      resp_sw(resp, rlen));
			return;
		} else {
			rlen -= 2;
		}
		if (rlen != n) {
			jfail(j, "device_error", "read returned %zu bytes, not %zu", rlen, n);
			return;
		}
		memcpy(j->out + at, resp, n);
	}
	j->outlen = j->len;
}

/* "bytes 32-33" / "byte 32" */
static void range(char *buf, size_t len, const char *unit, size_t from, size_t n)
{
	if (n == 1)
		snprintf(buf, len, "%s %zu", unit, from);
	else
		snprintf(buf, len, "%ss %zu-%zu", unit, from, from + n - 1);
}

/* The failure of a write, saying what is on the card and what is not. */
static void write_failed(struct job *j, const char *why)
{
	int mif = card_is_mifare(j->type);
	const char *unit = mif ? "block" : "byte";
	size_t u = mif ? MIF_BLOCK : 1, done = j->done / u, all = j->len / u;
	char ok[48] = "", not [48];

	range(not, sizeof(not ), unit, j->addr + done, all - done);
	if (done)
		range(ok, sizeof(ok), unit, j->addr, done);
	jfail(j, "device_error", "%s during write: %zu of %zu %ss written (%s%s%s not confirmed)",
	      why, done, all, unit, ok, done ? " written; " : "", not );
}

/* Write one chunk and read it back: 0, or -1 with the job failed. */
static int write_chunk(struct job *j, size_t at, size_t n)
{
	uint8_t apdu[APDU_MAX], resp[RESP_MAX], back[RESP_MAX];
	size_t rlen, blen;
	unsigned block = j->addr + (unsigned)(at / MIF_BLOCK);
	int mif = card_is_mifare(j->type);
	size_t an = mif ? apdu_mif_write(apdu, block, j->data + at)
	                : apdu_sle_write(apdu, (unsigned)(j->addr + at), j->data + at, (unsigned)n);

	if (xfer_ok(j, apdu, an, resp, &rlen, "write") < 0)
		return -1;
	an = mif ? apdu_mif_read(apdu, block)
	         : apdu_sle_read(apdu, (unsigned)(j->addr + at), (unsigned)n);
	if (xfer_ok(j, apdu, an, back, &blen, "read-back") < 0)
		return -1;
	if (blen != n || memcmp(back, j->data + at, n) != 0) {
		jfail(j, "device_error", "read-back differs");
		return -1;
	}
	j->done += n;
	return 0;
}

static void op_write(struct job *j)
{
	size_t step = card_is_mifare(j->type) ? MIF_BLOCK : j->p->chunk;
	char why[200];

	for (size_t at = 0; at < j->len; at += step) {
		size_t n = j->len - at < step ? j->len - at : step;
		if (write_chunk(j, at, n) == 0)
			continue;
		if (!strcmp(j->code, "cancelled"))
			snprintf(why, sizeof(why), "cancelled");
		else if (!strcmp(j->msg, "card removed"))
			snprintf(why, sizeof(why), "card removed");
		else if (!strcmp(j->msg, "read-back differs"))
			snprintf(why, sizeof(why), "card did not keep the data (%s)",
			         card_is_mifare(j->type) ? "access bits?"
			                                 : "locked byte or PSC not verified?");
		else
			snprintf(why, sizeof(why), "%.160s", j->msg);
		write_failed(j, why);
		return;
	}
}

static void op_verify(struct job *j)
{
	uint8_t apdu[APDU_MAX], resp[RESP_MAX];
	size_t rlen;

	if (sle_errcnt(j) < 0)
		return;
	if (j->tries == 0) {
		jfail(j, "device_error", "card locked: no PSC attempts left");
		return;
	}
	if (j->tries == 1 && !j->force) {
		jfail(j, "device_error",
		      "only 1 PSC attempt left: not presented (a wrong PSC now locks the card for "
		      "good; set force to present it anyway)");
		return;
	}
	if (xfer(j, apdu, apdu_sle_verify(apdu, j->psc), resp, &rlen) < 0)
		return;
	if (resp[rlen - 2] != 0x90) {
		jfail(j, "device_error", "presenting the PSC failed (status %04x)",
		      resp_sw(resp, rlen));
		return;
	}
	/* the reader answers 90 with the error counter after the try: all
	 * three bits set again means the PSC was right */
	j->tries = sle_tries(resp[rlen - 1]);
	j->verified = resp[rlen - 1] == 0x07;
}

static void op_auth(struct job *j)
{
	uint8_t apdu[APDU_MAX], resp[RESP_MAX];
	size_t rlen;
	int rc = xfer_ok(j, apdu, apdu_mif_load_key(apdu, j->key), resp, &rlen,
	                 "loading the key into the reader");

	memset(apdu, 0, sizeof(apdu));
	if (rc < 0)
		return;
	if (xfer(j, apdu, apdu_mif_auth(apdu, j->addr, j->key_b), resp, &rlen) < 0)
		return;
	if (resp_sw(resp, rlen) != 0x9000)
		jfail(j, "device_error",
		      "authentication failed: key '%s' (%c) does not open sector %u (status %04x)",
		      j->key_name, j->key_b ? 'B' : 'A', mif_sector(j->addr), resp_sw(resp, rlen));
}

static void op_apdu(struct job *j)
{
	size_t rlen;

	if (xfer(j, j->apdu, j->apdulen, j->out, &rlen) == 0)
		j->outlen = rlen;
}

static void op_eject(struct job *j)
{
	LONG rv = SCardDisconnect(j->p->card, SCARD_EJECT_CARD);

	j->p->card_ok = 0;
	if (rv != SCARD_S_SUCCESS && rv != SCARD_W_REMOVED_CARD)
		jfail(j, "device_error", "eject: %s", pcsc_stringify_error(rv));
}

void ops_run(void *arg)
{
	struct job *j = arg;
	static void (*const ops[])(struct job *) = {
	        [OP_IDENTIFY] = op_identify, [OP_READ] = op_read, [OP_WRITE] = op_write,
	        [OP_VERIFY] = op_verify,     [OP_AUTH] = op_auth, [OP_APDU] = op_apdu,
	        [OP_EJECT] = op_eject,
	};

	j->tries = -1;
	if (ensure_card(j) == 0)
		ops[j->op](j);
	/* key bytes live no longer than the command */
	volatile uint8_t *k = j->key;
	for (size_t i = 0; i < sizeof(j->key); i++)
		k[i] = 0;
}

void ops_release(struct pcsc *p)
{
	drop_card(p);
	if (p->ctx_ok)
		SCardReleaseContext(p->ctx);
	p->ctx_ok = 0;
}
