/*
 * sim_card.c -- a simulated IC card reader holding a SLE4442 memory card
 * (256 bytes, PSC error counter 3) or a MIFARE Classic 1K (1024 bytes).
 *
 * A write commits after latency_ms.  Pulling the card before that models
 * a torn write: the bytes "already written" (in proportion to the time
 * elapsed) land on the card, and the command reports exactly how many.
 * The removed card is kept, so insert {"same": true} puts it back with
 * whatever a torn write left on it -- the case a top-up must recover.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define CARD_MAX 1024

enum card_op { OP_NONE, OP_WAIT, OP_READ, OP_WRITE, OP_APDU, OP_EJECT };

struct card {
	/* the card: in the reader, or the last one taken out */
	int present, have;
	unsigned gen; /* bumped per insert: an op notices a swapped card */
	const char *type;
	const uint8_t *atr;
	size_t atrlen;
	uint8_t uid[10];
	size_t uidlen;
	uint8_t mem[CARD_MAX];
	size_t memlen;
	int psc_left;
	int auth_sector; /* MIFARE: the sector cardreader.auth opened, -1 none */

	/* the running command */
	enum card_op op;
	unsigned op_gen;
	size_t off, len;
	uint8_t buf[CARD_MAX]; /* write data, or the APDU */
	uint64_t started;
};

/* The real ATRs: SLE4442 answers with its 4-byte header; PC/SC readers
 * build a MIFARE 1K ATR from the PC/SC part 3 storage card template. */
static const uint8_t atr_sle4442[] = {0xa2, 0x13, 0x10, 0x91};
static const uint8_t atr_mifare[] = {0x3b, 0x8f, 0x80, 0x01, 0x80, 0x4f, 0x0c, 0xa0, 0x00, 0x00,
                                     0x03, 0x06, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x6a};
static const uint8_t uid_sle4442[] = {0x44, 0x42, 0x00, 0x01};
static const uint8_t uid_mifare[] = {0x04, 0x5a, 0x3c, 0x11};

static struct card *card(struct sim *s)
{
	return s->priv;
}

/* SLE4442: the chip's first bytes repeat its ATR header, then a fake
 * issuer area, the rest erased (0xff). */
static void fill_sle4442(struct card *c)
{
	c->memlen = 256;
	c->psc_left = 3;
	for (size_t i = 0; i < c->memlen; i++)
		c->mem[i] = i < 4 ? atr_sle4442[i] : i < 32 ? (uint8_t)i : 0xff;
}

/* MIFARE 1K: block 0 holds UID, BCC and manufacturer bytes; every sector
 * trailer has transport keys (ff..ff) and the default access bits. */
static void fill_mifare(struct card *c)
{
	static const uint8_t trailer[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07,
	                                    0x80, 0x69, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

	c->memlen = 1024;
	c->psc_left = 0;
	memset(c->mem, 0, sizeof(c->mem));
	memcpy(c->mem, c->uid, 4);
	c->mem[4] = c->uid[0] ^ c->uid[1] ^ c->uid[2] ^ c->uid[3];
	c->mem[5] = 0x08;
	c->mem[6] = 0x04;
	for (size_t b = 3; b < 64; b += 4)
		memcpy(c->mem + 16 * b, trailer, 16);
}

/* uid may be NULL for the type's fixed fake one. */
static int make_card(struct card *c, const char *type, const uint8_t *uid, size_t uidlen)
{
	int mifare = strcmp(type, "mifare") == 0;

	if (!mifare && strcmp(type, "sle4442") != 0)
		return -1;
	c->type = mifare ? "mifare" : "sle4442";
	c->atr = mifare ? atr_mifare : atr_sle4442;
	c->atrlen = mifare ? sizeof(atr_mifare) : sizeof(atr_sle4442);
	if (!uid) {
		uid = mifare ? uid_mifare : uid_sle4442;
		uidlen = 4;
	}
	memcpy(c->uid, uid, uidlen);
	c->uidlen = uidlen;
	if (mifare)
		fill_mifare(c);
	else
		fill_sle4442(c);
	c->have = 1;
	return 0;
}

static json_t *card_info(const struct card *c)
{
	return json_pack("{s:s,s:o,s:o}", "type", c->type, "uid", sim_hex_json(c->uid, c->uidlen),
	                 "atr", sim_hex_json(c->atr, c->atrlen));
}

static void insert_card(struct sim *s, struct card *c)
{
	c->present = 1;
	c->auth_sector = -1;
	c->gen++;
	sim_log(s, "card inserted (%s)", c->type);
	sim_emit(s, "inserted",
	         json_pack("{s:s,s:o}", "type", c->type, "atr", sim_hex_json(c->atr, c->atrlen)));
	if (c->op == OP_WAIT)
		sim_reply(s, card_info(c));
}

/* The bytes of the running write already on the card at this moment. */
static size_t write_progress(struct sim *s, const struct card *c)
{
	uint64_t elapsed = sim_now_ms() - c->started;

	if (s->latency_ms == 0 || elapsed == 0)
		return 0;
	if (elapsed >= s->latency_ms)
		return c->len;
	return (size_t)(c->len * elapsed / s->latency_ms);
}

static void remove_card(struct sim *s, struct card *c)
{
	size_t done;

	c->present = 0;
	sim_log(s, "card removed");
	sim_emit(s, "removed", NULL);
	switch (c->op) {
	case OP_WRITE:
		done = write_progress(s, c);
		memcpy(c->mem + c->off, c->buf, done);
		sim_fail(s, "device_error", "card removed during write: %zu of %zu bytes written",
		         done, c->len);
		break;
	case OP_READ:
	case OP_APDU:
		sim_fail(s, "device_error", "card removed during %s",
		         c->op == OP_READ ? "read" : "apdu");
		break;
	default:
		break;
	}
}

/* Checked when a command starts and again when it completes. */
static int need_card(struct sim *s, const struct card *c, int at_start)
{
	if (c->present && (at_start || c->gen == c->op_gen))
		return 0;
	if (at_start)
		sim_fail_after(s, 0, "device_error", "no card in reader");
	else
		sim_fail(s, "device_error", "card removed during the command");
	return -1;
}

static void begin(struct card *c, enum card_op op)
{
	c->op = op;
	c->op_gen = c->gen;
	c->started = sim_now_ms();
}

static void do_wait(struct sim *s, json_t *args)
{
	struct card *c = card(s);

	(void)args;
	if (c->present) {
		sim_reply_after(s, 0, card_info(c));
		return;
	}
	c->op = OP_WAIT;
}

static void read_done(struct sim *s)
{
	struct card *c = card(s);
	json_t *r;

	if (need_card(s, c, 0) < 0)
		return;
	r = card_info(c);
	json_object_set_new(r, "offset", json_integer((json_int_t)c->off));
	json_object_set_new(r, "data", sim_hex_json(c->mem + c->off, c->len));
	sim_reply(s, r);
}

/* Block addressing (MIFARE): like the pcsc plugin, only blocks of the
 * sector cardreader.auth opened.  0, or -1 with the request failed. */
static int blocks_ok(struct sim *s, struct card *c, size_t block, size_t n)
{
	if (strcmp(c->type, "mifare") != 0) {
		sim_fail_after(s, 0, "bad_request",
		               "SLE4442 memory is addressed by offset, not block");
		return -1;
	}
	if (block + n > c->memlen / 16) {
		sim_fail_after(s, 0, "bad_request",
		               "blocks %zu-%zu are past the end of the card (%zu blocks)", block,
		               block + n - 1, c->memlen / 16);
		return -1;
	}
	for (size_t b = block; b < block + n; b++)
		if (c->auth_sector != (int)(b / 4)) {
			sim_fail_after(s, 0, "device_error",
			               "block %zu: access denied: authenticate sector %zu first "
			               "(cardreader.auth)",
			               b, b / 4);
			return -1;
		}
	return 0;
}

static void do_read(struct sim *s, json_t *args)
{
	struct card *c = card(s);
	json_t *o = json_object_get(args, "offset"), *l = json_object_get(args, "length");
	json_t *b = json_object_get(args, "block"), *nb = json_object_get(args, "blocks");
	size_t off = o ? (size_t)json_integer_value(o) : 0;

	if (need_card(s, c, 1) < 0)
		return;
	if (b) {
		size_t n = nb ? (size_t)json_integer_value(nb) : 1;
		if (blocks_ok(s, c, (size_t)json_integer_value(b), n) < 0)
			return;
		begin(c, OP_READ);
		c->off = 16 * (size_t)json_integer_value(b);
		c->len = 16 * n;
		sim_step(s, s->latency_ms, read_done);
		return;
	}
	if (off >= c->memlen) {
		sim_fail_after(s, 0, "bad_request",
		               "offset %zu is past the end of the card (%zu bytes)", off,
		               c->memlen);
		return;
	}
	c->len = l ? (size_t)json_integer_value(l) : c->memlen - off;
	if (c->len > c->memlen - off) {
		sim_fail_after(s, 0, "bad_request", "read past end: %zu bytes at %zu, card has %zu",
		               c->len, off, c->memlen);
		return;
	}
	begin(c, OP_READ);
	c->off = off;
	sim_step(s, s->latency_ms, read_done);
}

static void write_done(struct sim *s)
{
	struct card *c = card(s);
	size_t n = c->len;

	if (need_card(s, c, 0) < 0)
		return;
	memcpy(c->mem + c->off, c->buf, n);
	sim_log(s, "card write of %zu bytes done", n);
	sim_reply(s, json_pack("{s:I}", "written", (json_int_t)n));
}

static void do_write(struct sim *s, json_t *args)
{
	struct card *c = card(s);
	json_t *b = json_object_get(args, "block");
	size_t off = (size_t)json_integer_value(json_object_get(args, "offset"));
	const char *hex = json_string_value(json_object_get(args, "data"));
	size_t n = strlen(hex) / 2;

	if (need_card(s, c, 1) < 0)
		return;
	if (b) {
		off = 16 * (size_t)json_integer_value(b);
		if (blocks_ok(s, c, off / 16, n / 16) < 0)
			return;
		for (size_t k = off / 16; k < (off + n) / 16; k++)
			if (k == 0 || k % 4 == 3) {
				sim_fail_after(
				        s, 0, "bad_request",
				        "block %zu is %s: not written through cardreader.write", k,
				        k ? "a sector trailer" : "read-only");
				return;
			}
	}
	if (off > c->memlen || n > c->memlen - off) {
		sim_fail_after(s, 0, "bad_request",
		               "write past end: %zu bytes at %zu, card has %zu", n, off, c->memlen);
		return;
	}
	sim_hex_decode(hex, c->buf, sizeof(c->buf));
	begin(c, OP_WRITE);
	c->off = off;
	c->len = n;
	sim_step(s, s->latency_ms, write_done);
}

/* Enough of ISO 7816-4 and PC/SC part 3 for a UI to identify the card. */
static void apdu_done(struct sim *s)
{
	static const uint8_t get_uid[] = {0xff, 0xca, 0x00, 0x00};
	static const uint8_t ok[] = {0x90, 0x00}, no_ins[] = {0x6d, 0x00};
	struct card *c = card(s);
	uint8_t resp[sizeof(c->uid) + 2];
	size_t n = 0;

	if (need_card(s, c, 0) < 0)
		return;
	if (memcmp(c->buf, get_uid, sizeof(get_uid)) == 0) {
		memcpy(resp, c->uid, c->uidlen);
		n = c->uidlen;
	}
	if (n || c->buf[1] == 0xa4)
		memcpy(resp + n, ok, 2);
	else
		memcpy(resp, no_ins, 2);
	sim_reply(s, json_pack("{s:o}", "response", sim_hex_json(resp, n + 2)));
}

static void do_apdu(struct sim *s, json_t *args)
{
	struct card *c = card(s);

	if (need_card(s, c, 1) < 0)
		return;
	sim_hex_decode(json_string_value(json_object_get(args, "apdu")), c->buf, sizeof(c->buf));
	begin(c, OP_APDU);
	sim_step(s, s->latency_ms, apdu_done);
}

/* SLE4442 PSC: the simulated card's PSC is the factory default ffffff. */
static void do_verify(struct sim *s, json_t *args)
{
	static const uint8_t factory[3] = {0xff, 0xff, 0xff};
	struct card *c = card(s);
	uint8_t psc[3];

	if (need_card(s, c, 1) < 0)
		return;
	if (strcmp(c->type, "sle4442") != 0) {
		sim_fail_after(s, 0, "bad_request",
		               "this verb is for SLE4442 cards; the card in the reader is %s",
		               c->type);
		return;
	}
	if (c->psc_left == 0) {
		sim_fail_after(s, 0, "device_error", "card locked: no PSC attempts left");
		return;
	}
	if (c->psc_left == 1 && !json_is_true(json_object_get(args, "force"))) {
		sim_fail_after(s, 0, "device_error",
		               "only 1 PSC attempt left: not presented (a wrong PSC now locks the "
		               "card for good; set force to present it anyway)");
		return;
	}
	sim_hex_decode(json_string_value(json_object_get(args, "psc")), psc, sizeof(psc));
	c->psc_left = memcmp(psc, factory, 3) == 0 ? 3 : c->psc_left - 1;
	sim_reply_after(s, s->latency_ms,
	                json_pack("{s:b,s:i}", "verified", c->psc_left == 3, "psc_attempts_left",
	                          c->psc_left));
}

/* MIFARE: the simulator's trailers hold the transport key (ff..ff) as
 * both A and B, known here under the name "transport". */
static void do_auth(struct sim *s, json_t *args)
{
	struct card *c = card(s);
	const char *key = json_string_value(json_object_get(args, "key"));
	const char *kt = json_string_value(json_object_get(args, "key_type"));
	size_t block = (size_t)json_integer_value(json_object_get(args, "block"));

	if (need_card(s, c, 1) < 0)
		return;
	if (strcmp(c->type, "mifare") != 0) {
		sim_fail_after(
		        s, 0, "bad_request",
		        "this verb is for MIFARE Classic cards; the card in the reader is %s",
		        c->type);
		return;
	}
	if (strcmp(key, "transport") != 0) {
		sim_fail_after(
		        s, 0, "bad_request",
		        "no key named '%.64s' in the key file (the simulator has 'transport')",
		        key);
		return;
	}
	if (block >= c->memlen / 16) {
		sim_fail_after(s, 0, "bad_request",
		               "block %zu is past the end of the card (%zu blocks)", block,
		               c->memlen / 16);
		return;
	}
	c->auth_sector = (int)(block / 4);
	sim_reply_after(s, s->latency_ms,
	                json_pack("{s:I,s:I,s:s}", "block", (json_int_t)block, "sector",
	                          (json_int_t)(block / 4), "key_type", kt ? kt : "A"));
}

static void eject_done(struct sim *s)
{
	struct card *c = card(s);

	/* Taken out by hand meanwhile: the card is out all the same. */
	if (c->present && c->gen == c->op_gen) {
		c->op = OP_NONE;
		remove_card(s, c);
	}
	sim_reply(s, json_pack("{s:b}", "ejected", 1));
}

static void do_eject(struct sim *s, json_t *args)
{
	struct card *c = card(s);

	(void)args;
	if (need_card(s, c, 1) < 0)
		return;
	begin(c, OP_EJECT);
	sim_step(s, s->latency_ms, eject_done);
}

/* --- injects --- */

static int card_from_args(struct card *c, json_t *spec, char *why, size_t whylen)
{
	const char *type = "sle4442", *uid = NULL, *data = NULL;
	uint8_t tmp[CARD_MAX], id[10];
	long n = 0;

	if (spec && !json_is_object(spec)) {
		snprintf(why, whylen, "card: must be an object {type?, uid?, data?}");
		return -1;
	}
	if (sim_arg_str(spec, "type", 16, &type, why, whylen) < 0 ||
	    sim_arg_str(spec, "uid", 20, &uid, why, whylen) < 0 ||
	    sim_arg_str(spec, "data", 2 * CARD_MAX, &data, why, whylen) < 0)
		return -1;
	if (uid && ((n = sim_hex_decode(uid, id, sizeof(id))) < 4)) {
		snprintf(why, whylen, "card.uid: must be 4 to 10 bytes of hex");
		return -1;
	}
	if (make_card(c, type, uid ? id : NULL, (size_t)n) < 0) {
		snprintf(why, whylen, "card.type: must be sle4442 or mifare");
		return -1;
	}
	if (data && (n = sim_hex_decode(data, tmp, c->memlen)) < 0) {
		snprintf(why, whylen, "card.data: must be hex, at most %zu bytes for %s", c->memlen,
		         c->type);
		return -1;
	}
	if (data)
		memcpy(c->mem, tmp, (size_t)n);
	return 0;
}

static int inj_insert(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct card *c = card(s), next = *c;

	if (c->present) {
		snprintf(why, whylen, "a card is already in the reader");
		return -1;
	}
	if (json_is_true(json_object_get(args, "same"))) {
		if (!c->have) {
			snprintf(why, whylen, "same: no card was removed yet");
			return -1;
		}
	} else if (card_from_args(&next, json_object_get(args, "card"), why, whylen) < 0) {
		return -1;
	} else {
		*c = next;
	}
	insert_card(s, c);
	return 0;
}

static int inj_remove(struct sim *s, json_t *args, char *why, size_t whylen)
{
	struct card *c = card(s);

	(void)args;
	if (!c->present) {
		snprintf(why, whylen, "no card in reader");
		return -1;
	}
	remove_card(s, c);
	return 0;
}

/* --- class --- */

static int card_open(struct sim *s, char *why, size_t whylen)
{
	const char *type = sim_opt_str(s, "card", "none");
	struct card *c;

	if (!(c = calloc(1, sizeof(*c)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	s->priv = c;
	if (strcmp(type, "none") != 0 && make_card(c, type, NULL, 0) < 0) {
		snprintf(why, whylen, "card: must be none, sle4442 or mifare");
		free(c);
		s->priv = NULL;
		return -1;
	}
	c->present = c->have;
	return 0;
}

static void card_close(struct sim *s)
{
	free(s->priv);
	s->priv = NULL;
}

static void card_reset(struct sim *s)
{
	card(s)->op = OP_NONE;
}

static json_t *card_status(struct sim *s)
{
	struct card *c = card(s);
	json_t *st = json_pack("{s:s,s:b}", "card", c->present ? "present" : "absent", "waiting",
	                       c->op == OP_WAIT);

	if (c->present) {
		json_object_set_new(st, "type", json_string(c->type));
		json_object_set_new(st, "memory_bytes", json_integer((json_int_t)c->memlen));
		if (strcmp(c->type, "sle4442") == 0)
			json_object_set_new(st, "psc_attempts_left", json_integer(c->psc_left));
	}
	return st;
}

static const struct sim_verb verbs[] = {
        {"wait", do_wait},   {"read", do_read},     {"write", do_write}, {"apdu", do_apdu},
        {"eject", do_eject}, {"verify", do_verify}, {"auth", do_auth},   {NULL, NULL},
};

static const struct sim_inject injects[] = {
        {"insert", inj_insert},
        {"remove", inj_remove},
        {NULL, NULL},
};

const struct sim_class sim_cardreader = {
        .cls = KIOSK_CLASS_CARDREADER,
        .name = "cardreader",
        .open = card_open,
        .close = card_close,
        .reset = card_reset,
        .status = card_status,
        .verbs = verbs,
        .injects = injects,
};
