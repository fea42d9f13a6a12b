/*
 * vcard.c -- a virtual IC card for the pcsc plugin's tests: it speaks the
 * vpcd protocol to pcscd's vsmartcard reader driver and emulates either a
 * SLE4442 memory card behind an ACS ACR38-style reader or a MIFARE Classic
 * 1K behind a PC/SC part 3 contactless reader.
 *
 *   vcard --port N --type sle4442|mifare [--state FILE] [--psc HEX6]
 *         [--tries N] [--uid HEX8] [--key-a HEX12] [--key-b HEX12]
 *         [--die-after N]
 *
 * vpcd framing (TCP, the card connects to pcscd): every message is a 2-byte
 * big-endian length and a payload.  A 1-byte payload is a control code
 * (00 power off, 01 power on, 02 reset, 04 ATR: only ATR is answered);
 * anything longer is a command APDU, answered with data + SW1 SW2.
 *
 * The process is the card: killing it, or --die-after N (exit without an
 * answer once N bytes (SLE4442) or N blocks (MIFARE) were written, the
 * last write cut short) is pulling the card.  --state FILE keeps the card's
 * memory across "insertions": loaded at start when it exists, rewritten
 * after every change.  Its layout -- SLE4442: 256 bytes main memory,
 * 4 bytes protection bits, 1 byte tries left, 3 bytes PSC (264 bytes);
 * MIFARE 1K: the 1024 bytes of its 64 blocks, keys in the sector trailers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SLE_SIZE     256
#define MIF_BLOCKS   64
#define STATE_SLE    (SLE_SIZE + 4 + 1 + 3)
#define STATE_MIF    (MIF_BLOCKS * 16)
#define MAX_RESPONSE 260

struct card {
	int mifare;
	uint8_t mem[MIF_BLOCKS * 16];
	uint8_t prot[4]; /* SLE4442: bit i of byte i/8 clear = byte i locked */
	uint8_t psc[3];
	int tries;
	int verified; /* SLE4442: PSC presented since power-on */
	uint8_t uid[4];
	uint8_t keys[2][6]; /* MIFARE: the reader's key slots (LOAD KEY) */
	int auth_sector;    /* MIFARE: -1 = none */
	const char *state;
	long die_after; /* -1 = never */
	long written;
};

struct resp {
	uint8_t b[MAX_RESPONSE];
	size_t n;
};

static const uint8_t atr_sle[] = {0x3b, 0x04, 0xa2, 0x13, 0x10, 0x91};
static const uint8_t atr_mif[] = {0x3b, 0x8f, 0x80, 0x01, 0x80, 0x4f, 0x0c, 0xa0, 0x00, 0x00,
                                  0x03, 0x06, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x6a};

static int hex_decode(const char *h, uint8_t *out, size_t want)
{
	if (strlen(h) != 2 * want)
		return -1;
	for (size_t i = 0; i < want; i++)
		if (sscanf(h + 2 * i, "%2hhx", &out[i]) != 1)
			return -1;
	return 0;
}

static void save_state(const struct card *c)
{
	FILE *f;
	uint8_t t;

	if (!c->state || !(f = fopen(c->state, "wb")))
		return;
	if (c->mifare) {
		fwrite(c->mem, 1, STATE_MIF, f);
	} else {
		t = (uint8_t)c->tries;
		fwrite(c->mem, 1, SLE_SIZE, f);
		fwrite(c->prot, 1, 4, f);
		fwrite(&t, 1, 1, f);
		fwrite(c->psc, 1, 3, f);
	}
	fclose(f);
}

/* 1 loaded, 0 no file, -1 bad file. */
static int load_state(struct card *c)
{
	uint8_t buf[STATE_MIF + 1];
	size_t want = c->mifare ? STATE_MIF : STATE_SLE, n;
	FILE *f;

	if (!c->state || !(f = fopen(c->state, "rb")))
		return 0;
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (n != want)
		return -1;
	if (c->mifare) {
		memcpy(c->mem, buf, STATE_MIF);
		return 1;
	}
	memcpy(c->mem, buf, SLE_SIZE);
	memcpy(c->prot, buf + SLE_SIZE, 4);
	c->tries = buf[SLE_SIZE + 4];
	memcpy(c->psc, buf + SLE_SIZE + 5, 3);
	return 1;
}

/* A fresh SLE4442: ATR header and issuer bytes in the locked first 32
 * bytes, the rest erased. */
static void fresh_sle(struct card *c)
{
	for (int i = 0; i < SLE_SIZE; i++)
		c->mem[i] = i < 4 ? atr_sle[i + 2] : i < 32 ? (uint8_t)i : 0xff;
	memset(c->prot, 0x00, 4);
}

/* A fresh MIFARE 1K: UID, BCC and manufacturer data in block 0, the given
 * keys and the transport access bits in every trailer. */
static void fresh_mifare(struct card *c, const uint8_t ka[6], const uint8_t kb[6])
{
	static const uint8_t access[4] = {0xff, 0x07, 0x80, 0x69};

	memset(c->mem, 0, sizeof(c->mem));
	memcpy(c->mem, c->uid, 4);
	c->mem[4] = c->uid[0] ^ c->uid[1] ^ c->uid[2] ^ c->uid[3];
	c->mem[5] = 0x08;
	c->mem[6] = 0x04;
	for (int b = 3; b < MIF_BLOCKS; b += 4) {
		memcpy(c->mem + 16 * b, ka, 6);
		memcpy(c->mem + 16 * b + 6, access, 4);
		memcpy(c->mem + 16 * b + 10, kb, 6);
	}
}

static void sw(struct resp *r, uint8_t sw1, uint8_t sw2)
{
	r->b[r->n++] = sw1;
	r->b[r->n++] = sw2;
}

static int err_cnt_bits(int tries)
{
	return tries >= 3 ? 0x07 : tries == 2 ? 0x03 : tries == 1 ? 0x01 : 0x00;
}

/* The card is pulled in the middle of this write: keep what got through,
 * then vanish without an answer. */
static void die_mid_write(struct card *c)
{
	save_state(c);
	fprintf(stderr, "vcard: pulled after %ld written\n", c->written);
	exit(0);
}

static void sle_read(struct card *c, const uint8_t *a, size_t n, struct resp *r)
{
	size_t addr = a[3], len = n >= 5 ? (a[4] ? a[4] : 256) : 256;

	if (addr + len > SLE_SIZE) {
		sw(r, 0x6b, 0x00);
		return;
	}
	memcpy(r->b, c->mem + addr, len > 256 ? 256 : len);
	r->n = len;
	sw(r, 0x90, 0x00);
}

static void sle_verify(struct card *c, const uint8_t *a, size_t n, struct resp *r)
{
	if (n != 8 || a[4] != 3) {
		sw(r, 0x67, 0x00);
		return;
	}
	if (c->tries == 0) {
		sw(r, 0x90, 0x00);
		return;
	}
	/* the chip counts the try before it compares */
	if (memcmp(a + 5, c->psc, 3) == 0) {
		c->tries = 3;
		c->verified = 1;
	} else {
		c->tries--;
		c->verified = 0;
	}
	save_state(c);
	sw(r, 0x90, (uint8_t)err_cnt_bits(c->tries));
}

/* Like the chip: without a verified PSC, or on a locked byte, a write is
 * silently not done (the reader still says 9000): only reading back tells. */
static void sle_write(struct card *c, const uint8_t *a, size_t n, struct resp *r)
{
	size_t addr = a[3], len = n >= 5 ? a[4] : 0;

	if (len == 0 || n != 5 + len || addr + len > SLE_SIZE) {
		sw(r, 0x67, 0x00);
		return;
	}
	for (size_t i = 0; i < len; i++) {
		size_t at = addr + i;
		if (c->die_after >= 0 && c->written >= c->die_after)
			die_mid_write(c);
		if (!c->verified || (at < 32 && !(c->prot[at / 8] & (1u << (at % 8)))))
			continue;
		c->mem[at] = a[5 + i];
		c->written++;
	}
	save_state(c);
	sw(r, 0x90, 0x00);
}

static void sle_apdu(struct card *c, const uint8_t *a, size_t n, struct resp *r)
{
	switch (a[1]) {
	case 0xa4: /* select card type: 06 = SLE4432/4442 */
		sw(r, n == 6 && a[5] == 0x06 ? 0x90 : 0x6a, n == 6 && a[5] == 0x06 ? 0x00 : 0x81);
		return;
	case 0xb0:
		sle_read(c, a, n, r);
		return;
	case 0xb1: /* error counter; the PSC shows only once presented */
		r->b[0] = (uint8_t)err_cnt_bits(c->tries);
		memcpy(r->b + 1, c->verified ? c->psc : (const uint8_t *)"\0\0\0", 3);
		r->n = 4;
		sw(r, 0x90, 0x00);
		return;
	case 0xb2:
		memcpy(r->b, c->prot, 4);
		r->n = 4;
		sw(r, 0x90, 0x00);
		return;
	case 0x20:
		sle_verify(c, a, n, r);
		return;
	case 0xd0:
		sle_write(c, a, n, r);
		return;
	default:
		sw(r, 0x6d, 0x00);
	}
}

static int mif_authed(const struct card *c, int block)
{
	return c->auth_sector >= 0 && c->auth_sector == block / 4;
}

static void mif_auth(struct card *c, const uint8_t *a, size_t n, struct resp *r)
{
	int block, kt, kn;
	const uint8_t *trailer;

	if (n != 10 || a[4] != 5 || a[5] != 0x01) {
		sw(r, 0x67, 0x00);
		return;
	}
	block = a[7];
	kt = a[8];
	kn = a[9];
	if (block >= MIF_BLOCKS || (kt != 0x60 && kt != 0x61) || kn > 1) {
		sw(r, 0x6a, 0x82);
		return;
	}
	trailer = c->mem + 16 * ((block / 4) * 4 + 3);
	if (memcmp(c->keys[kn], kt == 0x60 ? trailer : trailer + 10, 6) == 0) {
		c->auth_sector = block / 4;
		sw(r, 0x90, 0x00);
	} else {
		c->auth_sector = -1;
		sw(r, 0x63, 0x00);
	}
}

static void mif_read(struct card *c, const uint8_t *a, size_t n, struct resp *r)
{
	int block = a[3];

	if (n != 5 || a[4] != 16 || block >= MIF_BLOCKS) {
		sw(r, 0x6a, 0x82);
		return;
	}
	if (!mif_authed(c, block)) {
		sw(r, 0x69, 0x82);
		return;
	}
	memcpy(r->b, c->mem + 16 * block, 16);
	if (block % 4 == 3)
		memset(r->b, 0, 6); /* key A never reads back */
	r->n = 16;
	sw(r, 0x90, 0x00);
}

static void mif_write(struct card *c, const uint8_t *a, size_t n, struct resp *r)
{
	int block = a[3];

	if (n != 21 || a[4] != 16 || block >= MIF_BLOCKS) {
		sw(r, 0x6a, 0x82);
		return;
	}
	if (!mif_authed(c, block) || block == 0) {
		sw(r, 0x69, 0x82);
		return;
	}
	if (c->die_after >= 0 && c->written >= c->die_after)
		die_mid_write(c);
	memcpy(c->mem + 16 * block, a + 5, 16);
	c->written++;
	save_state(c);
	sw(r, 0x90, 0x00);
}

static void mif_apdu(struct card *c, const uint8_t *a, size_t n, struct resp *r)
{
	switch (a[1]) {
	case 0xca: /* GET DATA: UID */
		memcpy(r->b, c->uid, 4);
		r->n = 4;
		sw(r, 0x90, 0x00);
		return;
	case 0x82: /* LOAD KEY into a volatile reader slot */
		if (n != 11 || a[4] != 6 || a[3] > 1) {
			sw(r, 0x69, 0x86);
			return;
		}
		memcpy(c->keys[a[3]], a + 5, 6);
		sw(r, 0x90, 0x00);
		return;
	case 0x86:
		mif_auth(c, a, n, r);
		return;
	case 0xb0:
		mif_read(c, a, n, r);
		return;
	case 0xd6:
		mif_write(c, a, n, r);
		return;
	default:
		sw(r, 0x6d, 0x00);
	}
}

static void apdu(struct card *c, const uint8_t *a, size_t n, struct resp *r)
{
	r->n = 0;
	if (n < 4) {
		sw(r, 0x67, 0x00);
	} else if (a[0] != 0xff) {
		/* no ISO 7816-4 applications on a memory card: SELECT by
		 * name finds nothing, everything else is unknown */
		sw(r, a[1] == 0xa4 ? 0x6a : 0x6e, a[1] == 0xa4 ? 0x82 : 0x00);
	} else if (c->mifare) {
		mif_apdu(c, a, n, r);
	} else {
		sle_apdu(c, a, n, r);
	}
}

/* vpcd sends the length and the payload in two writes: without an
 * immediate ACK here, Nagle on its side holds the payload back until our
 * delayed ACK fires (40 ms a message).  Quick-ack mode does not stick, so
 * it is set again before every read. */
static void quickack(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static int readn(int fd, uint8_t *b, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k;
		quickack(fd);
		k = read(fd, b + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return 0;
}

static int send_msg(int fd, const uint8_t *b, size_t n)
{
	uint8_t msg[2 + MAX_RESPONSE];

	msg[0] = (uint8_t)(n >> 8);
	msg[1] = (uint8_t)n;
	memcpy(msg + 2, b, n);
	return write(fd, msg, n + 2) == (ssize_t)(n + 2) ? 0 : -1;
}

static void power(struct card *c, uint8_t code)
{
	(void)code;
	c->verified = 0;
	c->auth_sector = -1;
}

static int serve(struct card *c, int fd)
{
	static uint8_t buf[65536];
	struct resp r;
	uint8_t h[2];
	size_t n;

	for (;;) {
		if (readn(fd, h, 2) < 0)
			return 0;
		n = (size_t)h[0] << 8 | h[1];
		if (readn(fd, buf, n) < 0)
			return 0;
		if (n == 1 && buf[0] == 0x04) {
			if (send_msg(fd, c->mifare ? atr_mif : atr_sle,
			             c->mifare ? sizeof(atr_mif) : sizeof(atr_sle)) < 0)
				return 1;
			continue;
		}
		if (n == 1) {
			power(c, buf[0]);
			continue;
		}
		apdu(c, buf, n, &r);
		if (send_msg(fd, r.b, r.n) < 0)
			return 1;
	}
}

static int connect_vpcd(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int one = 1;

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("vcard: connect");
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int usage(void)
{
	fprintf(stderr, "usage: vcard --port N --type sle4442|mifare [--state FILE] [--psc HEX6]\n"
	                "             [--tries N] [--uid HEX8] [--key-a HEX12] [--key-b HEX12]\n"
	                "             [--die-after N]\n");
	return 2;
}

struct opts {
	int port;
	const char *type, *psc, *uid, *ka, *kb;
};

static int parse(int argc, char **argv, struct card *c, struct opts *o)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--port"))
			o->port = atoi(v);
		else if (!strcmp(k, "--type"))
			o->type = v;
		else if (!strcmp(k, "--state"))
			c->state = v;
		else if (!strcmp(k, "--psc"))
			o->psc = v;
		else if (!strcmp(k, "--tries"))
			c->tries = atoi(v);
		else if (!strcmp(k, "--uid"))
			o->uid = v;
		else if (!strcmp(k, "--key-a"))
			o->ka = v;
		else if (!strcmp(k, "--key-b"))
			o->kb = v;
		else if (!strcmp(k, "--die-after"))
			c->die_after = atol(v);
		else
			return -1;
	}
	return argc % 2 == 1 && o->port > 0 ? 0 : -1;
}

static int setup(struct card *c, const struct opts *o)
{
	uint8_t ka[6], kb[6];

	c->mifare = !strcmp(o->type, "mifare");
	if (!c->mifare && strcmp(o->type, "sle4442") != 0)
		return -1;
	if (hex_decode(o->psc, c->psc, 3) < 0 || hex_decode(o->uid, c->uid, 4) < 0 ||
	    hex_decode(o->ka, ka, 6) < 0 || hex_decode(o->kb, kb, 6) < 0)
		return -1;
	if (c->mifare)
		fresh_mifare(c, ka, kb);
	else
		fresh_sle(c);
	if (load_state(c) < 0) {
		fprintf(stderr, "vcard: %s is not a %s state file\n", c->state, o->type);
		return -1;
	}
	save_state(c);
	return 0;
}

int main(int argc, char **argv)
{
	static struct card c = {.tries = 3, .auth_sector = -1, .die_after = -1};
	struct opts o = {0, "sle4442", "ffffff", "04a1b2c3", "ffffffffffff", "ffffffffffff"};
	int fd, rc;

	if (parse(argc, argv, &c, &o) < 0)
		return usage();
	if (setup(&c, &o) < 0)
		return usage();
	if ((fd = connect_vpcd(o.port)) < 0)
		return 1;
	rc = serve(&c, fd);
	close(fd);
	return rc;
}
