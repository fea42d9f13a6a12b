/*
 * card.c -- ATRs, pseudo-APDUs and geometry of the two card kinds.
 *
 * SLE4442 is a memory card without a processor: it has no APDUs of its
 * own, so readers map their own "pseudo-APDUs" (class FF) onto the chip's
 * commands.  We use the ACS ACR38 set, the one most contact readers copy.
 * MIFARE Classic gets the PC/SC part 3 storage-card commands that every
 * PC/SC contactless reader (ACR122U, Omnikey, SCM) implements.
 */
#include "card.h"

#include <kiosk/hex.h>

#include <string.h>

/* ACR38 presents a SLE4442 as TS=3B, T0=04 and the chip's 4-byte ATR as
 * historical bytes; some readers pass the raw chip ATR. */
static const uint8_t sle_chip_atr[] = {0xa2, 0x13, 0x10, 0x91};
/* PC/SC part 3: 3B 8F 80 01 80 4F 0C, RID A0 00 00 03 06, SS, NN NN, RFU,
 * TCK.  SS 03 = ISO 14443 A part 3; NN 0001 = MIFARE 1K, 0002 = 4K. */
static const uint8_t part3_head[] = {0x3b, 0x8f, 0x80, 0x01, 0x80, 0x4f, 0x0c,
                                     0xa0, 0x00, 0x00, 0x03, 0x06, 0x03};

enum card_type card_classify(const uint8_t *atr, size_t n)
{
	if (n == 4 && memcmp(atr, sle_chip_atr, 4) == 0)
		return CARD_SLE4442;
	if (n == 6 && atr[0] == 0x3b && atr[1] == 0x04 && memcmp(atr + 2, sle_chip_atr, 4) == 0)
		return CARD_SLE4442;
	if (n == 20 && memcmp(atr, part3_head, sizeof(part3_head)) == 0 && atr[13] == 0x00) {
		if (atr[14] == 0x01)
			return CARD_MIFARE_1K;
		if (atr[14] == 0x02)
			return CARD_MIFARE_4K;
	}
	return CARD_UNKNOWN;
}

const char *card_type_name(enum card_type t)
{
	switch (t) {
	case CARD_SLE4442:
		return "sle4442";
	case CARD_MIFARE_1K:
	case CARD_MIFARE_4K:
		return "mifare";
	default:
		return "unknown";
	}
}

size_t card_memory(enum card_type t)
{
	return t == CARD_SLE4442 ? SLE_SIZE : (size_t)mif_blocks(t) * MIF_BLOCK;
}

int card_is_mifare(enum card_type t)
{
	return t == CARD_MIFARE_1K || t == CARD_MIFARE_4K;
}

unsigned mif_blocks(enum card_type t)
{
	return t == CARD_MIFARE_1K ? 64 : t == CARD_MIFARE_4K ? 256 : 0;
}

/* 4K: sectors 0-31 have 4 blocks, sectors 32-39 have 16. */
unsigned mif_sector(unsigned block)
{
	return block < 128 ? block / 4 : 32 + (block - 128) / 16;
}

int mif_is_trailer(unsigned block)
{
	return block < 128 ? block % 4 == 3 : block % 16 == 15;
}

int sle_tries(uint8_t errcnt)
{
	return (errcnt & 1) + (errcnt >> 1 & 1) + (errcnt >> 2 & 1);
}

static size_t header(uint8_t *a, uint8_t ins, uint8_t p1, uint8_t p2)
{
	a[0] = 0xff;
	a[1] = ins;
	a[2] = p1;
	a[3] = p2;
	return 4;
}

size_t apdu_sle_select(uint8_t *a)
{
	size_t n = header(a, 0xa4, 0x00, 0x00);
	a[n++] = 0x01;
	a[n++] = 0x06; /* card type: SLE4432/SLE4442/SLE5532/SLE5542 */
	return n;
}

/* len 1..256 (256 is sent as Le 00). */
size_t apdu_sle_read(uint8_t *a, unsigned addr, unsigned len)
{
	size_t n = header(a, 0xb0, 0x00, (uint8_t)addr);
	a[n++] = (uint8_t)len;
	return n;
}

size_t apdu_sle_errcnt(uint8_t *a)
{
	size_t n = header(a, 0xb1, 0x00, 0x00);
	a[n++] = 0x04;
	return n;
}

size_t apdu_sle_verify(uint8_t *a, const uint8_t psc[SLE_PSC_LEN])
{
	size_t n = header(a, 0x20, 0x00, 0x00);
	a[n++] = SLE_PSC_LEN;
	memcpy(a + n, psc, SLE_PSC_LEN);
	return n + SLE_PSC_LEN;
}

/* len 1..255 */
size_t apdu_sle_write(uint8_t *a, unsigned addr, const uint8_t *data, unsigned len)
{
	size_t n = header(a, 0xd0, 0x00, (uint8_t)addr);
	a[n++] = (uint8_t)len;
	memcpy(a + n, data, len);
	return n + len;
}

size_t apdu_get_uid(uint8_t *a)
{
	size_t n = header(a, 0xca, 0x00, 0x00);
	a[n++] = 0x00;
	return n;
}

size_t apdu_mif_load_key(uint8_t *a, const uint8_t key[MIF_KEY_LEN])
{
	size_t n = header(a, 0x82, 0x00, 0x00); /* P1 00: card key, volatile; P2: slot 0 */
	a[n++] = MIF_KEY_LEN;
	memcpy(a + n, key, MIF_KEY_LEN);
	return n + MIF_KEY_LEN;
}

size_t apdu_mif_auth(uint8_t *a, unsigned block, int key_b)
{
	size_t n = header(a, 0x86, 0x00, 0x00);
	static const uint8_t v1_hdr[] = {0x05, 0x01, 0x00}; /* Lc, version 1, MSB */
	memcpy(a + n, v1_hdr, sizeof(v1_hdr));
	n += sizeof(v1_hdr);
	a[n++] = (uint8_t)block;
	a[n++] = key_b ? 0x61 : 0x60;
	a[n++] = 0x00; /* key slot */
	return n;
}

size_t apdu_mif_read(uint8_t *a, unsigned block)
{
	size_t n = header(a, 0xb0, 0x00, (uint8_t)block);
	a[n++] = MIF_BLOCK;
	return n;
}

size_t apdu_mif_write(uint8_t *a, unsigned block, const uint8_t data[MIF_BLOCK])
{
	size_t n = header(a, 0xd6, 0x00, (uint8_t)block);
	a[n++] = MIF_BLOCK;
	memcpy(a + n, data, MIF_BLOCK);
	return n + MIF_BLOCK;
}

unsigned resp_sw(const uint8_t *r, size_t n)
{
	return n < 2 ? 0 : (unsigned)r[n - 2] << 8 | r[n - 1];
}

void hex_encode(const uint8_t *p, size_t n, char *out)
{
	kiosk_hex_encode(p, n, out);
}

long hex_decode(const char *hex, uint8_t *out, size_t max)
{
	return kiosk_hex_decode(hex, out, max);
}
