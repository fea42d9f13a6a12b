/*
 * cmd.c -- the cardreader verbs on the loop thread: check the arguments
 * against the card in the reader, hand the card I/O to a job (ops.c) and
 * turn its outcome into the reply.
 *
 * Logs name what happened, never a UID, PSC, key or card byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

static struct pcsc *P(struct kiosk_dev *dev, const struct kiosk_host *h)
{
	return h->priv(dev);
}

static json_t *hex_json(const uint8_t *b, size_t n)
{
	char *s = malloc(2 * n + 1);
	json_t *j;

	if (!s)
		return NULL;
	hex_encode(b, n, s);
	j = json_string(s);
	free(s);
	return j;
}

static json_t *identity(const struct pcsc *p, const struct job *j)
{
	json_t *r = json_pack("{s:s,s:o}", "type", card_type_name(p->type), "atr",
	                      hex_json(p->atr, p->atrlen));

	if (j && j->uidlen)
		json_object_set_new(r, "uid", hex_json(j->uid, j->uidlen));
	if (p->type == CARD_SLE4442 && p->psc_left >= 0)
		json_object_set_new(r, "psc_attempts_left", json_integer(p->psc_left));
	return r;
}

static json_t *result(struct pcsc *p, const struct job *j)
{
	int mif = card_is_mifare(j->type);

	switch (j->op) {
	case OP_IDENTIFY:
		return identity(p, j);
	case OP_READ:
		return mif ? json_pack("{s:s,s:I,s:I,s:o}", "type", "mifare", "block",
		                       (json_int_t)j->addr, "blocks",
		                       (json_int_t)(j->len / MIF_BLOCK), "data",
		                       hex_json(j->out, j->outlen))
		           : json_pack("{s:s,s:I,s:o}", "type", "sle4442", "offset",
		                       (json_int_t)j->addr, "data", hex_json(j->out, j->outlen));
	case OP_WRITE:
		return json_pack("{s:I}", "written", (json_int_t)j->done);
	case OP_VERIFY:
		return json_pack("{s:b,s:i}", "verified", j->verified, "psc_attempts_left",
		                 j->tries);
	case OP_AUTH:
		return json_pack("{s:I,s:I,s:s}", "block", (json_int_t)j->addr, "sector",
		                 (json_int_t)mif_sector(j->addr), "key_type", j->key_b ? "B" : "A");
	case OP_APDU:
		return json_pack("{s:o}", "response", hex_json(j->out, j->outlen));
	case OP_EJECT:
		return json_pack("{s:b}", "ejected", 1);
	}
	return json_object();
}

/* What a finished job tells about the card, kept for status and for the
 * next command (only when it is still the same card). */
static void learn(struct pcsc *p, const struct job *j)
{
	if (j->gen != p->gen)
		return;
	if (j->tries >= 0)
		p->psc_left = j->tries;
	if (j->op == OP_VERIFY && !j->code[0])
		p->psc_ok_gen = j->verified ? j->gen : 0;
}

static void log_outcome(struct pcsc *p, const struct job *j)
{
	static const char *const names[] = {"identify",     "read", "write", "PSC verify",
	                                    "authenticate", "apdu", "eject"};

	if (j->code[0])
		p->host->log(p->dev, KIOSK_LOG_INFO, "card %s failed: %s", names[j->op], j->msg);
	else if (j->op == OP_WRITE)
		p->host->log(p->dev, KIOSK_LOG_INFO, "card write of %zu bytes done", j->done);
	else if (j->op == OP_VERIFY)
		p->host->log(p->dev, KIOSK_LOG_INFO, "PSC %s, %d attempts left",
		             j->verified ? "verified" : "wrong", j->tries);
	else if (j->op != OP_APDU)
		p->host->log(p->dev, KIOSK_LOG_DEBUG, "card %s done", names[j->op]);
}

static void job_done(void *arg)
{
	struct job *j = arg;
	struct pcsc *p = j->p;

	p->job = NULL;
	learn(p, j);
	log_outcome(p, j);
	if (j->code[0])
		p->host->fail(j->req, j->code, "%s", j->msg);
	else
		p->host->reply(j->req, result(p, j));
	memset(j, 0, sizeof(*j)); /* card data and keys go with it */
	free(j);
}

static struct job *job_new(struct pcsc *p, struct kiosk_req *req, enum op op)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j) {
		p->host->fail(req, "internal", "out of memory");
		return NULL;
	}
	j->p = p;
	j->req = req;
	j->op = op;
	j->gen = p->gen;
	j->type = p->type;
	snprintf(j->reader, sizeof(j->reader), "%s", p->reader);
	return j;
}

static void submit(struct pcsc *p, struct job *j)
{
	p->job = j;
	if (p->host->run_blocking(p->dev, ops_run, job_done, j) < 0) {
		p->job = NULL;
		p->host->fail(j->req, "internal", "worker pool full");
		free(j);
	}
}

/* A card of a kind the verb works on: 0, or -1 with req failed. */
static int need_card(struct pcsc *p, struct kiosk_req *req, int want_sle, int want_mifare)
{
	if (!p->present) {
		p->host->fail(req, "device_error", "no card in reader");
		return -1;
	}
	if ((want_sle && p->type == CARD_SLE4442) || (want_mifare && card_is_mifare(p->type)))
		return 0;
	if (!want_sle && !want_mifare)
		return 0;
	p->host->fail(req, "bad_request", "this verb is for %s cards; the card in the reader is %s",
	              want_sle ? "SLE4442" : "MIFARE Classic", card_type_name(p->type));
	return -1;
}

static long long arg_int(json_t *args, const char *key, long long def)
{
	json_t *v = json_object_get(args, key);
	return v ? json_integer_value(v) : def;
}

static void do_wait(struct pcsc *p, struct kiosk_req *req, json_t *args)
{
	struct job *j;

	(void)args;
	if (!p->present) {
		p->wait = req;
		return;
	}
	if ((j = job_new(p, req, OP_IDENTIFY)))
		submit(p, j);
}

void cmd_card_inserted(struct pcsc *p)
{
	struct kiosk_req *req = p->wait;
	struct job *j;

	p->wait = NULL;
	if (req && (j = job_new(p, req, OP_IDENTIFY)))
		submit(p, j);
}

/* SLE4442: offset/length in bytes; MIFARE: block/blocks.  0 or -1. */
static int address(struct pcsc *p, struct kiosk_req *req, json_t *args, size_t datalen,
                   struct job *j)
{
	int has_block = json_object_get(args, "block") != NULL;
	size_t size = card_memory(p->type), blocks = mif_blocks(p->type);

	if (p->type == CARD_SLE4442) {
		if (has_block) {
			p->host->fail(req, "bad_request",
			              "SLE4442 memory is addressed by offset, not block");
			return -1;
		}
		j->addr = (unsigned)arg_int(args, "offset", 0);
		if (j->addr >= size) {
			p->host->fail(req, "bad_request",
			              "offset %u is past the end of the card (%zu bytes)", j->addr,
			              size);
			return -1;
		}
		j->len = datalen ? datalen
		                 : (size_t)arg_int(args, "length", (long long)(size - j->addr));
		if (j->len > size - j->addr) {
			p->host->fail(req, "bad_request",
			              "%s past end: %zu bytes at %u, card has %zu",
			              datalen ? "write" : "read", j->len, j->addr, size);
			return -1;
		}
		return 0;
	}
	if (!has_block) {
		p->host->fail(req, "bad_request",
		              "MIFARE Classic is addressed by block: give block (and blocks)");
		return -1;
	}
	j->addr = (unsigned)arg_int(args, "block", 0);
	j->len = datalen ? datalen : (size_t)arg_int(args, "blocks", 1) * MIF_BLOCK;
	if (j->addr + j->len / MIF_BLOCK > blocks) {
		p->host->fail(req, "bad_request",
		              "blocks %u-%zu are past the end of the card (%zu blocks)", j->addr,
		              j->addr + j->len / MIF_BLOCK - 1, blocks);
		return -1;
	}
	return 0;
}

static void do_read(struct pcsc *p, struct kiosk_req *req, json_t *args)
{
	struct job *j;

	if (need_card(p, req, 1, 1) < 0 || !(j = job_new(p, req, OP_READ)))
		return;
	if (address(p, req, args, 0, j) < 0) {
		free(j);
		return;
	}
	submit(p, j);
}

/* MIFARE blocks a write must not touch: 0 or -1 with req failed. */
static int mif_writable(struct pcsc *p, struct kiosk_req *req, const struct job *j)
{
	for (unsigned b = j->addr; b < j->addr + j->len / MIF_BLOCK; b++) {
		if (b == 0) {
			p->host->fail(req, "bad_request",
			              "block 0 holds the UID and manufacturer data: read-only");
			return -1;
		}
		if (mif_is_trailer(b)) {
			p->host->fail(
			        req, "bad_request",
			        "block %u is the trailer of sector %u (keys and access bits): "
			        "not written through cardreader.write",
			        b, mif_sector(b));
			return -1;
		}
	}
	return 0;
}

static void do_write(struct pcsc *p, struct kiosk_req *req, json_t *args)
{
	const char *hex = json_string_value(json_object_get(args, "data"));
	struct job *j;
	long n;

	if (need_card(p, req, 1, 1) < 0 || !(j = job_new(p, req, OP_WRITE)))
		return;
	n = hex_decode(hex, j->data, sizeof(j->data));
	if (n <= 0 || address(p, req, args, (size_t)n, j) < 0 ||
	    (card_is_mifare(p->type) && mif_writable(p, req, j) < 0)) {
		if (n <= 0)
			p->host->fail(req, "bad_request", "data: must be hex");
		free(j);
		return;
	}
	if (p->type == CARD_SLE4442 && p->psc_ok_gen != p->gen) {
		p->host->fail(req, "device_error",
		              "PSC not verified for this card: cardreader.verify first");
		free(j);
		return;
	}
	submit(p, j);
}

static void do_verify(struct pcsc *p, struct kiosk_req *req, json_t *args)
{
	struct job *j;

	if (need_card(p, req, 1, 0) < 0 || !(j = job_new(p, req, OP_VERIFY)))
		return;
	if (hex_decode(json_string_value(json_object_get(args, "psc")), j->psc, SLE_PSC_LEN) !=
	    SLE_PSC_LEN) {
		p->host->fail(req, "bad_request", "psc: must be 3 bytes (6 hex digits)");
		free(j);
		return;
	}
	j->force = json_is_true(json_object_get(args, "force"));
	submit(p, j);
}

static void do_auth(struct pcsc *p, struct kiosk_req *req, json_t *args)
{
	const char *name = json_string_value(json_object_get(args, "key"));
	const char *kt = json_string_value(json_object_get(args, "key_type"));
	const struct key *k = keys_find(&p->keys, name);
	struct job *j;

	if (need_card(p, req, 0, 1) < 0)
		return;
	if (!k) {
		p->host->fail(req, "bad_request", "no key named '%.64s' in %s", name,
		              p->keys.n ? "the key file" : "the key file (no key_file configured)");
		return;
	}
	if (!(j = job_new(p, req, OP_AUTH)))
		return;
	j->addr = (unsigned)arg_int(args, "block", 0);
	if (j->addr >= mif_blocks(p->type)) {
		p->host->fail(req, "bad_request",
		              "block %u is past the end of the card (%u blocks)", j->addr,
		              mif_blocks(p->type));
		free(j);
		return;
	}
	memcpy(j->key, k->key, MIF_KEY_LEN);
	snprintf(j->key_name, sizeof(j->key_name), "%s", k->name);
	j->key_b = kt && !strcmp(kt, "B");
	submit(p, j);
}

static void do_apdu(struct pcsc *p, struct kiosk_req *req, json_t *args)
{
	struct job *j;
	long n;

	if (need_card(p, req, 0, 0) < 0 || !(j = job_new(p, req, OP_APDU)))
		return;
	n = hex_decode(json_string_value(json_object_get(args, "apdu")), j->apdu, APDU_MAX);
	if (n < 4) {
		p->host->fail(req, "bad_request", "apdu: must be 4 to %d bytes of hex", APDU_MAX);
		free(j);
		return;
	}
	j->apdulen = (size_t)n;
	submit(p, j);
}

static void do_eject(struct pcsc *p, struct kiosk_req *req, json_t *args)
{
	struct job *j;

	(void)args;
	if (need_card(p, req, 0, 0) == 0 && (j = job_new(p, req, OP_EJECT)))
		submit(p, j);
}

static const struct {
	const char *verb;
	void (*fn)(struct pcsc *p, struct kiosk_req *req, json_t *args);
} verbs[] = {
        {"wait", do_wait}, {"read", do_read}, {"write", do_write}, {"verify", do_verify},
        {"auth", do_auth}, {"apdu", do_apdu}, {"eject", do_eject},
};

void pcsc_command(struct kiosk_dev *dev, struct kiosk_req *req, const char *verb, json_t *args)
{
	struct pcsc *p = P(dev, pcsc_host);

	if (!p->reader[0]) {
		pcsc_host->fail(req, "device_offline", "reader not found yet");
		return;
	}
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(verbs[i].verb, verb)) {
			verbs[i].fn(p, req, args);
			return;
		}
	pcsc_host->fail(req, "unknown_command", "cardreader.%s is not supported by pcsc", verb);
}

void pcsc_cancel(struct kiosk_dev *dev, struct kiosk_req *req)
{
	struct pcsc *p = P(dev, pcsc_host);

	if (p->wait == req) {
		p->wait = NULL;
		pcsc_host->fail(req, "cancelled", "cancelled");
	} else if (p->job && p->job->req == req) {
		atomic_store(&p->job->cancelled, 1);
	}
}

/* The core releases a request still held at close itself. */
void cmd_close(struct pcsc *p)
{
	p->wait = NULL;
}
