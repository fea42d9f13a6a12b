/* libFuzzer target: the pcsc plugin's pure card code (hal/pcsc/card.c).
 * The input is an ATR, a response and a hex string from the UI at once:
 * the classifier and status-word reader must take any bytes, the hex
 * decoder must refuse or round-trip, and every pseudo-APDU built from
 * input-chosen addresses and lengths must fit a short APDU and say what
 * it was asked (the length byte equals the data that follows). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../hal/pcsc/card.h"

static void check_apdu(const uint8_t *apdu, size_t n)
{
	if (n < 4 || n > APDU_MAX)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum card_type t = card_classify(data, size);
	uint8_t apdu[APDU_MAX], out[APDU_MAX];
	char hex[2 * APDU_MAX + 1], *text;

	if (!card_type_name(t))
		abort();
	if (card_memory(t) > 4096 || (card_is_mifare(t) && mif_blocks(t) == 0))
		abort();
	(void)resp_sw(data, size);

	/* the input as a hex string from the UI */
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	long n = hex_decode(text, out, sizeof(out));
	if (n >= 0) {
		if ((size_t)n > sizeof(out) || (size_t)n * 2 != strlen(text))
			abort();
		hex_encode(out, (size_t)n, hex);
		for (long i = 0; i < 2 * n; i++)
			if ((hex[i] | 0x20) != (text[i] | 0x20))
				abort();
	}
	free(text);

	if (size < 4)
		return 0;
	unsigned addr = data[0] | (unsigned)data[1] << 8, len = data[2] | (unsigned)data[3] << 8;
	size_t body = size - 4 > 255 ? 255 : size - 4;
	if (len <= 255 && addr + len <= SLE_SIZE) {
		check_apdu(apdu, apdu_sle_read(apdu, addr, len));
		if (len <= body && len > 0) {
			size_t k = apdu_sle_write(apdu, addr, data + 4, len);
			check_apdu(apdu, k);
			if (k < 5 + len || memcmp(apdu + k - len, data + 4, len) != 0)
				abort();
		}
	}
	unsigned block = addr % 256;
	check_apdu(apdu, apdu_mif_auth(apdu, block, data[2] & 1));
	check_apdu(apdu, apdu_mif_read(apdu, block));
	if (body >= MIF_BLOCK)
		check_apdu(apdu, apdu_mif_write(apdu, block, data + 4));
	if (body >= MIF_KEY_LEN)
		check_apdu(apdu, apdu_mif_load_key(apdu, data + 4));
	if (body >= SLE_PSC_LEN)
		check_apdu(apdu, apdu_sle_verify(apdu, data + 4));
	(void)mif_sector(block);
	(void)mif_is_trailer(block);
	(void)sle_tries(data[0]);
	return 0;
}
