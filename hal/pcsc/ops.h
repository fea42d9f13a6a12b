/*
 * ops.h -- one command's card I/O, run on the host's worker pool.
 *
 * The loop fills a struct job (checked arguments, a copy of what it knows
 * of the card), ops_run() does the APDUs on a worker thread and fills in
 * the outcome, and the loop turns that into the reply.  A job reads no
 * loop state but the fields pcsc.h marks "job".
 */
#ifndef KIOSK_PCSC_OPS_H
#define KIOSK_PCSC_OPS_H

#include <stdatomic.h>

#include "pcsc.h"

enum op { OP_IDENTIFY, OP_READ, OP_WRITE, OP_VERIFY, OP_AUTH, OP_APDU, OP_EJECT };

struct job {
	struct pcsc *p;
	struct kiosk_req *req;
	enum op op;
	atomic_int cancelled;

	/* in */
	char reader[READER_MAX];
	unsigned gen;
	enum card_type type;
	unsigned addr; /* byte offset (SLE4442) or first block (MIFARE) */
	size_t len;    /* bytes */
	uint8_t data[4096];
	uint8_t psc[SLE_PSC_LEN];
	int force;
	uint8_t key[MIF_KEY_LEN];
	int key_b;
	char key_name[KEY_NAME_MAX + 1];
	uint8_t apdu[APDU_MAX];
	size_t apdulen;

	/* out */
	char code[24]; /* "" = success */
	char msg[256];
	uint8_t out[4096]; /* read data, APDU response */
	size_t outlen;
	uint8_t uid[10];
	size_t uidlen;
	int tries; /* SLE4442 tries left after the command, -1 unknown */
	int verified;
	size_t done; /* bytes read back equal after a write */
};

void ops_run(void *arg);
/* Disconnect and release the command context (loop thread, no job running). */
void ops_release(struct pcsc *p);

#endif
