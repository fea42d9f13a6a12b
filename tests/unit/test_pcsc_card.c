/* The pcsc plugin's pure parts: ATR classification, APDU builders, MIFARE
 * geometry, the SLE4442 error counter and the key file parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../hal/pcsc/card.h"
#include "../../hal/pcsc/keys.h"

static void test_classify(void **state)
{
	static const uint8_t mif1k[] = {0x3b, 0x8f, 0x80, 0x01, 0x80, 0x4f, 0x0c, 0xa0, 0x00, 0x00,
	                                0x03, 0x06, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x6a};
	static const uint8_t sle[] = {0x3b, 0x04, 0xa2, 0x13, 0x10, 0x91};
	uint8_t m[20];

	(void)state;
	assert_int_equal(card_classify(mif1k, sizeof(mif1k)), CARD_MIFARE_1K);
	memcpy(m, mif1k, 20);
	m[14] = 0x02;
	assert_int_equal(card_classify(m, 20), CARD_MIFARE_4K);
	m[14] = 0x03; /* Ultralight: not a Classic */
	assert_int_equal(card_classify(m, 20), CARD_UNKNOWN);
	assert_int_equal(card_classify(sle, sizeof(sle)), CARD_SLE4442);
	assert_int_equal(card_classify(sle + 2, 4), CARD_SLE4442);
	assert_int_equal(card_classify(sle, 5), CARD_UNKNOWN);
	assert_int_equal(card_classify(mif1k, 19), CARD_UNKNOWN);
	assert_int_equal(card_classify(NULL, 0), CARD_UNKNOWN);
	assert_string_equal(card_type_name(CARD_MIFARE_4K), "mifare");
	assert_int_equal(card_memory(CARD_SLE4442), 256);
	assert_int_equal(card_memory(CARD_MIFARE_4K), 4096);
}

static void test_geometry_and_counter(void **state)
{
	(void)state;
	assert_int_equal(mif_sector(7), 1);
	assert_true(mif_is_trailer(7));
	assert_false(mif_is_trailer(8));
	assert_int_equal(mif_sector(128), 32);
	assert_int_equal(mif_sector(255), 39);
	assert_true(mif_is_trailer(143));
	assert_false(mif_is_trailer(131));
	assert_int_equal(sle_tries(0x07), 3);
	assert_int_equal(sle_tries(0x03), 2);
	assert_int_equal(sle_tries(0x01), 1);
	assert_int_equal(sle_tries(0x00), 0);
}

static void test_apdus(void **state)
{
	static const uint8_t psc[3] = {0x12, 0x34, 0x56}, key[6] = {1, 2, 3, 4, 5, 6};
	static const uint8_t want_auth[] = {0xff, 0x86, 0x00, 0x00, 0x05, 0x01, 0x00, 0x09, 0x61, 0x00};
	static const uint8_t want_verify[] = {0xff, 0x20, 0x00, 0x00, 0x03, 0x12, 0x34, 0x56};
	uint8_t a[APDU_MAX], d[MIF_BLOCK] = {0};

	(void)state;
	assert_int_equal(apdu_mif_auth(a, 9, 1), sizeof(want_auth));
	assert_memory_equal(a, want_auth, sizeof(want_auth));
	assert_int_equal(apdu_sle_verify(a, psc), sizeof(want_verify));
	assert_memory_equal(a, want_verify, sizeof(want_verify));
	assert_int_equal(apdu_sle_read(a, 32, 256), 5);
	assert_int_equal(a[4], 0x00); /* 256 is Le 00 */
	assert_int_equal(apdu_mif_load_key(a, key), 11);
	assert_memory_equal(a + 5, key, 6);
	assert_int_equal(apdu_mif_write(a, 4, d), 21);
	assert_int_equal(apdu_sle_write(a, 250, d, 3), 8);
	assert_int_equal(apdu_get_uid(a), 5);
	assert_int_equal(resp_sw((const uint8_t *)"\x90\x00", 2), 0x9000);
	assert_int_equal(resp_sw((const uint8_t *)"\x90", 1), 0);
}

static void test_hex(void **state)
{
	uint8_t b[4];
	char s[9];

	(void)state;
	assert_int_equal(hex_decode("a0B1", b, 4), 2);
	hex_encode(b, 2, s);
	assert_string_equal(s, "a0b1");
	assert_int_equal(hex_decode("abc", b, 4), -1);
	assert_int_equal(hex_decode("zz", b, 4), -1);
	assert_int_equal(hex_decode("0011223344", b, 4), -1);
	assert_int_equal(hex_decode("", b, 4), 0);
}

static void bad_keys(const char *text, const char *want)
{
	struct keyring kr;
	char why[200] = "";

	assert_int_equal(keys_parse(&kr, text, why, sizeof(why)), -1);
	assert_non_null(strstr(why, want));
	assert_null(strstr(why, "a0a1a2"));
	assert_int_equal(kr.n, 0);
}

static void test_keys(void **state)
{
	struct keyring kr;
	char why[200];

	(void)state;
	assert_int_equal(keys_parse(&kr, "# c\n\n water_a = A0A1A2A3A4A5 # x\r\nw.b-2=000000000000",
	                            why, sizeof(why)),
	                 0);
	assert_int_equal(kr.n, 2);
	assert_non_null(keys_find(&kr, "water_a"));
	assert_int_equal(keys_find(&kr, "water_a")->key[5], 0xa5);
	assert_non_null(keys_find(&kr, "w.b-2"));
	assert_null(keys_find(&kr, "water"));
	keys_wipe(&kr);
	assert_int_equal(kr.n, 0);
	assert_null(keys_find(&kr, "water_a"));
	bad_keys("water_a a0a1a2a3a4a5\n", "line 1: expected name");
	bad_keys("\nwater_a = a0a1a2\n", "line 2: key 'water_a' must be 12 hex digits");
	bad_keys("water_a = a0a1a2a3a4zz\n", "must be 12 hex digits");
	bad_keys("wa ter = a0a1a2a3a4a5\n", "key name must be");
	bad_keys(" = a0a1a2a3a4a5\n", "key name must be");
	bad_keys("k = a0a1a2a3a4a5\nk = a0a1a2a3a4a5\n", "line 2: key 'k' defined twice");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_classify), cmocka_unit_test(test_geometry_and_counter),
	        cmocka_unit_test(test_apdus),    cmocka_unit_test(test_hex),
	        cmocka_unit_test(test_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
