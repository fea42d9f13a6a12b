/*
 * card.h -- what the pcsc plugin knows about the two card kinds, as pure
 * functions (no PC/SC calls), so they are unit-tested and fuzzed alone:
 * telling the card apart by its ATR, building the reader pseudo-APDUs,
 * reading status words and MIFARE Classic memory geometry.
 */
#ifndef KIOSK_PCSC_CARD_H
#define KIOSK_PCSC_CARD_H

#include <stddef.h>
#include <stdint.h>

enum card_type { CARD_UNKNOWN, CARD_SLE4442, CARD_MIFARE_1K, CARD_MIFARE_4K };

#define SLE_SIZE    256 /* SLE4442 main memory */
#define SLE_PSC_LEN 3
#define MIF_BLOCK   16
#define MIF_KEY_LEN 6
#define APDU_MAX    261 /* short APDU: header, Lc, 255 data, Le */
#define RESP_MAX    258 /* 256 data + SW1 SW2 */

enum card_type card_classify(const uint8_t *atr, size_t n);
/* "sle4442", "mifare" or "unknown". */
const char *card_type_name(enum card_type t);
/* Main memory in bytes: 256, 1024, 4096, or 0 when unknown. */
size_t card_memory(enum card_type t);
int card_is_mifare(enum card_type t);

/* MIFARE Classic geometry: blocks on the card, the sector of a block and
 * whether it is a sector trailer (keys and access bits). */
unsigned mif_blocks(enum card_type t);
unsigned mif_sector(unsigned block);
int mif_is_trailer(unsigned block);

/* The SLE4442 error counter byte (bits 0-2, one per try left) as tries. */
int sle_tries(uint8_t errcnt);

/* Pseudo-APDU builders: each writes into apdu[APDU_MAX] and returns the
 * length.  SLE4442 through an ACS ACR38-style reader: */
size_t apdu_sle_select(uint8_t *apdu);
size_t apdu_sle_read(uint8_t *apdu, unsigned addr, unsigned len);
size_t apdu_sle_errcnt(uint8_t *apdu);
size_t apdu_sle_verify(uint8_t *apdu, const uint8_t psc[SLE_PSC_LEN]);
size_t apdu_sle_write(uint8_t *apdu, unsigned addr, const uint8_t *data, unsigned len);
/* MIFARE Classic through a PC/SC part 3 reader (key slot 0, volatile): */
size_t apdu_get_uid(uint8_t *apdu);
size_t apdu_mif_load_key(uint8_t *apdu, const uint8_t key[MIF_KEY_LEN]);
size_t apdu_mif_auth(uint8_t *apdu, unsigned block, int key_b);
size_t apdu_mif_read(uint8_t *apdu, unsigned block);
size_t apdu_mif_write(uint8_t *apdu, unsigned block, const uint8_t data[MIF_BLOCK]);

/* SW1 SW2 of a response (0 when shorter than 2 bytes). */
unsigned resp_sw(const uint8_t *resp, size_t n);

/* Lowercase hex of n bytes into out (2n+1 bytes); hex into bytes: the
 * count, or -1 when odd, not hex or longer than max. */
void hex_encode(const uint8_t *p, size_t n, char *out);
long hex_decode(const char *hex, uint8_t *out, size_t max);

#endif
