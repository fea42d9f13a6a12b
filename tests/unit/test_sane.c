/* hal/sane: the sane_options parser, the class-word mapping and the PNG
 * encoder (decoded again with libpng's reader). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../hal/sane/sane_opts.h"
#include "../../hal/sane/sane_png.h"

static void test_opts_parse(void **state)
{
	struct sane_kvs kv;
	char why[256];

	(void)state;
	assert_int_equal(sane_opts_parse("", &kv, why, sizeof(why)), 0);
	assert_int_equal(kv.n, 0);
	assert_int_equal(sane_opts_parse(NULL, &kv, why, sizeof(why)), 0);
	assert_int_equal(sane_opts_parse("  \t ", &kv, why, sizeof(why)), 0);
	assert_int_equal(kv.n, 0);

	assert_int_equal(sane_opts_parse(" test-picture = Color pattern ,depth=16,x2=a=b", &kv, why,
	                                 sizeof(why)),
	                 0);
	assert_int_equal(kv.n, 3);
	assert_string_equal(kv.kv[0].name, "test-picture");
	assert_string_equal(kv.kv[0].value, "Color pattern");
	assert_string_equal(kv.kv[1].name, "depth");
	assert_string_equal(kv.kv[1].value, "16");
	assert_string_equal(kv.kv[2].value, "a=b");
	sane_opts_free(&kv);
	assert_int_equal(kv.n, 0);
	/* a trailing comma is harmless */
	assert_int_equal(sane_opts_parse("a=1,", &kv, why, sizeof(why)), 0);
	assert_int_equal(kv.n, 1);
	sane_opts_free(&kv);
}

static void bad_opts(const char *text, const char *want)
{
	struct sane_kvs kv;
	char why[256] = "";

	assert_int_equal(sane_opts_parse(text, &kv, why, sizeof(why)), -1);
	assert_int_equal(kv.n, 0);
	assert_non_null(strstr(why, want));
}

static void test_opts_bad(void **state)
{
	char many[400] = "";

	(void)state;
	bad_opts("mode", "'mode' is not name=value");
	bad_opts("Mode=Gray", "'Mode' is not a SANE option name");
	bad_opts("mo de=Gray", "is not a SANE option name");
	bad_opts("=Gray", "'' is not a SANE option name");
	bad_opts("mode=", "mode has no value");
	bad_opts("mode=  ", "mode has no value");
	bad_opts("a=1,,b=2", "'' is not name=value");
	bad_opts("a=1, b", "'b' is not name=value");
	for (int i = 0; i < 33; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "o%d=1,", i);
	bad_opts(many, "more than 32 options");
}

static void test_values(void **state)
{
	int b = -1;
	double x;

	(void)state;
	assert_int_equal(sane_parse_bool("yes", &b), 0);
	assert_int_equal(b, 1);
	assert_int_equal(sane_parse_bool("OFF", &b), 0);
	assert_int_equal(b, 0);
	assert_int_equal(sane_parse_bool("maybe", &b), -1);
	assert_int_equal(sane_parse_number("300", &x), 0);
	assert_true(x == 300.0);
	assert_int_equal(sane_parse_number("-2.5", &x), 0);
	assert_true(x == -2.5);
	assert_int_equal(sane_parse_number("3oo", &x), -1);
	assert_int_equal(sane_parse_number("", &x), -1);
	assert_int_equal(sane_parse_number("nan", &x), -1);
	assert_int_equal(sane_parse_number("1e12", &x), -1); /* not a SANE_Word */
}

static void test_pick_words(void **state)
{
	static const char *const test_modes[] = {"Gray", "Color", NULL};
	static const char *const brother[] = {"Black & White", "True Gray", "24bit Color", NULL};
	static const char *const hp[] = {"Lineart", "Gray", "Color", NULL};
	static const char *const sources_a[] = {"Flatbed", "Automatic Document Feeder", NULL};
	static const char *const sources_b[] = {"FlatBed", "ADF Front", "ADF Duplex", NULL};
	static const char *const sources_c[] = {"Normal", "ADF", NULL};
	static const char *const adf_only[] = {"ADF Front", "ADF Back", NULL};

	(void)state;
	assert_string_equal(sane_pick_mode(test_modes, "color"), "Color");
	assert_string_equal(sane_pick_mode(test_modes, "gray"), "Gray");
	assert_null(sane_pick_mode(test_modes, "lineart"));
	assert_string_equal(sane_pick_mode(brother, "color"), "24bit Color");
	assert_string_equal(sane_pick_mode(brother, "lineart"), "Black & White");
	assert_null(sane_pick_mode(brother, "gray")); /* "True Gray" is not a known word */
	assert_string_equal(sane_pick_mode(hp, "lineart"), "Lineart");
	assert_null(sane_pick_mode(hp, "sepia"));
	assert_null(sane_pick_mode(NULL, "color"));

	assert_string_equal(sane_pick_source(sources_a, "flatbed"), "Flatbed");
	assert_string_equal(sane_pick_source(sources_a, "adf"), "Automatic Document Feeder");
	assert_string_equal(sane_pick_source(sources_b, "flatbed"), "FlatBed");
	assert_string_equal(sane_pick_source(sources_b, "adf"), "ADF Front");
	assert_string_equal(sane_pick_source(sources_c, "flatbed"), "Normal");
	assert_string_equal(sane_pick_source(sources_c, "adf"), "ADF");
	assert_null(sane_pick_source(adf_only, "flatbed"));
	assert_string_equal(sane_pick_source(adf_only, "adf"), "ADF Front");
}

/* --- PNG --- */

static uint8_t *encode(uint32_t w, uint32_t h, int channels, int depth, const uint8_t *rows,
                       size_t *len)
{
	char why[256];
	struct sane_png *p = sane_png_new(w, h, channels, depth, 300, 6, why, sizeof(why));
	uint8_t *png = NULL;

	assert_non_null(p);
	for (uint32_t y = 0; y < h; y++)
		assert_int_equal(
		        sane_png_row(p, rows + y * sane_png_row_bytes(p), why, sizeof(why)), 0);
	assert_int_equal(sane_png_finish(p, &png, len, why, sizeof(why)), 0);
	sane_png_free(p);
	return png;
}

/* libpng's reader, asked for 8 or 16-bit samples in big-endian order. */
static uint8_t *decode(const uint8_t *png, size_t len, png_uint_32 format, png_image *img)
{
	uint8_t *px;

	memset(img, 0, sizeof(*img));
	img->version = PNG_IMAGE_VERSION;
	assert_true(png_image_begin_read_from_memory(img, png, len));
	img->format = format;
	px = malloc(PNG_IMAGE_SIZE(*img));
	assert_non_null(px);
	assert_true(png_image_finish_read(img, NULL, px, 0, NULL));
	return px;
}

static void test_png_rgb8(void **state)
{
	static const uint8_t rows[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 250, 251, 252, 253, 254, 255, 0, 0, 0};
	size_t len;
	png_image img;
	uint8_t *png = encode(3, 2, 3, 8, rows, &len), *px;

	(void)state;
	assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);
	px = decode(png, len, PNG_FORMAT_RGB, &img);
	assert_int_equal(img.width, 3);
	assert_int_equal(img.height, 2);
	assert_memory_equal(px, rows, sizeof(rows));
	free(px);
	free(png);
}

static void test_png_lineart_is_inverted(void **state)
{
	/* SANE: 1 = black.  10 pixels: two bytes a line */
	static const uint8_t rows[] = {0xf0, 0x00, 0x0f, 0xc0};
	size_t len;
	png_image img;
	uint8_t *png = encode(10, 2, 1, 1, rows, &len), *px;

	(void)state;
	px = decode(png, len, PNG_FORMAT_GRAY, &img);
	for (int x = 0; x < 10; x++) {
		assert_int_equal(px[x], x < 4 ? 0 : 255);
		assert_int_equal(px[10 + x], x >= 4 && x < 10 ? 0 : 255);
	}
	free(px);
	free(png);
}

static void test_png_16bit_byte_order(void **state)
{
	uint16_t rows[2] = {0x1234, 0xfe01}; /* host order, as SANE sends it */
	size_t len;
	png_image img;
	uint8_t *png = encode(2, 1, 1, 16, (const uint8_t *)rows, &len);
	const uint8_t *ihdr = png + 16;

	(void)state;
	assert_int_equal(ihdr[8], 16); /* bit depth */
	/* linear 16-bit out of libpng's simplified reader is host order */
	uint16_t *px = (uint16_t *)decode(png, len, PNG_FORMAT_LINEAR_Y, &img);
	/* the simplified API converts from sRGB to linear: only check the
	 * order is kept (brighter stays brighter) and the header */
	assert_true(px[1] > px[0]);
	free(px);
	free(png);
}

static void test_png_rows_must_match(void **state)
{
	char why[256];
	uint8_t row[6] = {0}, *png = NULL;
	size_t len;
	struct sane_png *p = sane_png_new(2, 2, 3, 8, 75, 6, why, sizeof(why));

	(void)state;
	assert_int_equal(sane_png_row(p, row, why, sizeof(why)), 0);
	assert_int_equal(sane_png_finish(p, &png, &len, why, sizeof(why)), -1);
	assert_string_equal(why, "the page ended after 1 of 2 lines");
	assert_null(png);
	assert_int_equal(sane_png_row(p, row, why, sizeof(why)), 0);
	assert_int_equal(sane_png_row(p, row, why, sizeof(why)), -1);
	assert_string_equal(why, "more than 2 lines");
	sane_png_free(p);
}

static void test_png_bad_shapes(void **state)
{
	char why[256];

	(void)state;
	assert_null(sane_png_new(0, 10, 1, 8, 75, 6, why, sizeof(why)));
	assert_null(sane_png_new(10, 0, 1, 8, 75, 6, why, sizeof(why)));
	assert_null(sane_png_new(10, 10, 2, 8, 75, 6, why, sizeof(why)));
	assert_null(sane_png_new(10, 10, 1, 4, 75, 6, why, sizeof(why)));
	assert_null(sane_png_new(10, 10, 3, 1, 75, 6, why, sizeof(why)));
	assert_string_equal(why, "1-bit colour cannot be a PNG");
	sane_png_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_opts_parse),
	        cmocka_unit_test(test_opts_bad),
	        cmocka_unit_test(test_values),
	        cmocka_unit_test(test_pick_words),
	        cmocka_unit_test(test_png_rgb8),
	        cmocka_unit_test(test_png_lineart_is_inverted),
	        cmocka_unit_test(test_png_16bit_byte_order),
	        cmocka_unit_test(test_png_rows_must_match),
	        cmocka_unit_test(test_png_bad_shapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
