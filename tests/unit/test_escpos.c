/* escpos plugin, the pure parts: the DLE EOT status parser and its
 * events, and the document renderer's bytes and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../hal/escpos/escpos.h"

/* --- status --- */

static void test_status_ok_and_faults(void **state)
{
	struct escpos_status st;
	const uint8_t ok[] = {0x12, 0x12, 0x12, 0x12};
	const uint8_t out[] = {0x1a, 0x32, 0x12, 0x7e}; /* offline, paper end, sensor end */
	const uint8_t low[] = {0x12, 0x12, 0x12, 0x1e};
	const uint8_t cover_cut[] = {0x1a, 0x16, 0x1a, 0x12};
	(void)state;

	assert_int_equal(escpos_status_parse(ok, 4, &st), 0);
	assert_string_equal(escpos_paper_state(&st), "ok");
	assert_false(st.cover_open || st.offline || st.cutter_error);
	assert_int_equal(escpos_status_parse(out, 4, &st), 0);
	assert_string_equal(escpos_paper_state(&st), "out");
	assert_true(st.offline);
	assert_int_equal(escpos_status_parse(low, 4, &st), 0);
	assert_string_equal(escpos_paper_state(&st), "low");
	assert_int_equal(escpos_status_parse(cover_cut, 4, &st), 0);
	assert_true(st.cover_open && st.cutter_error);
}

static void test_status_rejects_non_status_bytes(void **state)
{
	struct escpos_status st;
	const uint8_t ff[] = {0xff, 0x12, 0x12, 0x12};
	const uint8_t bit0[] = {0x12, 0x13, 0x12, 0x12};
	const uint8_t ascii[] = {'O', 'K', '\r', '\n'};
	(void)state;

	assert_int_equal(escpos_status_parse(ff, 4, &st), -1);
	assert_int_equal(escpos_status_parse(bit0, 4, &st), -1);
	assert_int_equal(escpos_status_parse(ascii, 4, &st), -1);
	assert_int_equal(escpos_status_parse(ff + 1, 3, &st), -1);
}

static void test_status_events(void **state)
{
	struct escpos_status a = {0}, b = {0};
	const char *ev[ESCPOS_MAX_EVENTS];
	(void)state;

	assert_int_equal(escpos_status_events(&a, &b, ev), 0);
	b.paper_low = 1;
	assert_int_equal(escpos_status_events(&a, &b, ev), 1);
	assert_string_equal(ev[0], "paper_low");
	a = b;
	b.paper_out = 1;
	b.cover_open = 1;
	b.cutter_error = 1;
	assert_int_equal(escpos_status_events(&a, &b, ev), 3);
	assert_string_equal(ev[0], "paper_out");
	assert_string_equal(ev[1], "cover_open");
	assert_string_equal(ev[2], "jam");
	assert_int_equal(escpos_status_events(&b, &(struct escpos_status){0}, ev), 3);
	assert_string_equal(ev[0], "paper_ok");
	assert_string_equal(ev[1], "cover_closed");
	assert_string_equal(ev[2], "jam_cleared");
}

/* --- render --- */

static const struct escpos_doc_opts OPTS = {.width = 32, .dots = 384, .qr_ec = ESCPOS_QR_M};

static int render(const char *json, const struct escpos_doc_opts *o, struct escpos_buf *out,
                  char *why, size_t whylen)
{
	json_error_t err;
	json_t *b = json_loads(json, JSON_ALLOW_NUL, &err);
	int lines, rc;

	assert_non_null(b);
	memset(out, 0, sizeof(*out));
	rc = escpos_render(b, o ? o : &OPTS, out, &lines, why, whylen);
	json_decref(b);
	return rc;
}

static void expect_bytes(const char *json, const uint8_t *want, size_t n)
{
	struct escpos_buf out;
	char why[200] = "";

	assert_int_equal(render(json, NULL, &out, why, sizeof(why)), 0);
	assert_int_equal(out.len, n);
	assert_memory_equal(out.data, want, n);
	escpos_buf_free(&out);
}

static void expect_refused(const char *json, const struct escpos_doc_opts *o, const char *msg)
{
	struct escpos_buf out;
	char why[200] = "";

	assert_int_equal(render(json, o, &out, why, sizeof(why)), -1);
	if (!strstr(why, msg))
		fail_msg("refusal '%s' does not say '%s'", why, msg);
	escpos_buf_free(&out);
}

static void test_render_text_bytes(void **state)
{
	/* ESC @; align center, bold, double; the line; reset bold and size */
	const uint8_t want[] = {0x1b, '@',  0x1b, 'a',  1,    0x1b, 'E',  1,    0x1d, '!',
	                        0x11, 'H',  'i',  '\n', 0x1b, 'E',  0,    0x1d, '!',  0};
	(void)state;
	expect_bytes("[{\"text\": \"Hi\", \"align\": \"center\", \"bold\": true, \"double\": true}]",
	             want, sizeof(want));
}

static void test_render_chinese_in_chinese_mode(void **state)
{
	/* 中 is D6 D0 in GB18030/GBK, inside FS & ... FS . */
	const uint8_t want[] = {0x1b, '@', 0x1b, 'a', 0,    0x1b, 'E', 0,    0x1d, '!', 0,
	                        0x1c, '&', 'a',  ' ', 0xd6, 0xd0, 0x1c, '.', '\n', 0x1b, 'E',
	                        0,    0x1d, '!', 0};
	(void)state;
	expect_bytes("[{\"text\": \"a 中\"}]", want, sizeof(want));
}

static void test_render_qr_cut_feed(void **state)
{
	const uint8_t want[] = {
	        0x1b, '@', 0x1b, 'a', 0,   0x1d, '(', 'k', 4,   0,   '1', 'A',  '2', 0,
	        0x1d, '(', 'k',  3,   0,   '1',  'C', 6,   0x1d, '(', 'k', 3,    0,   '1',
	        'E',  '1', 0x1d, '(', 'k', 5,    0,   '1', 'P', '0', 'h', 'i',  0x1d, '(',
	        'k',  3,   0,    '1', 'Q', '0',  '\n', 0x1b, 'd', 3,   0x1d, 'V', 66,   0};
	(void)state;
	expect_bytes("[{\"qr\": \"hi\"}, {\"feed\": 3}, {\"cut\": \"partial\"}]", want, sizeof(want));
}

static void test_render_refusals(void **state)
{
	struct escpos_doc_opts h = OPTS;
	(void)state;

	h.qr_ec = ESCPOS_QR_H;
	expect_refused("[{\"text\": \"\\ud83d\\ude00\"}]", NULL, "U+1F600 is not in the printer's");
	expect_refused("[{\"text\": \"\\ue000\"}]", NULL, "private-use character U+E000");
	expect_refused("[{\"text\": \"a\\u001bb\"}]", NULL, "control character U+001B");
	expect_refused("[{\"text\": \"a\\u0085b\"}]", NULL, "control character U+0085");
	expect_refused("[{\"text\": \"a\\u0000b\"}]", NULL, "text: U+0000 cannot be printed");
	expect_refused("[{\"qr\": \"a\\u0000b\"}]", NULL, "qr: U+0000 cannot be printed");
	expect_refused("[{\"barcode\": \"4006381333932\", \"symbology\": \"ean13\"}]", NULL,
	               "cannot be encoded as ean13");
	expect_refused("[{\"feed\": 0}]", NULL, "feed: must be between 1 and 255");
	expect_refused("[1]", NULL, "blocks[0]: must be an object");
	expect_refused("[{\"text\": \"ok\"}, {}]", NULL, "blocks[1]: needs one of");
	expect_refused("[{\"image\": \"abc\"}]", NULL, "image abc: no such blob");
	char big[1400 + 32];
	snprintf(big, sizeof(big), "[{\"qr\": \"%01274d\"}]", 0);
	expect_refused(big, &h, "1274 bytes does not fit the printer's QR code (1 to 1273");
}

static void test_render_allows_4byte_when_the_font_has_them(void **state)
{
	struct escpos_doc_opts o = OPTS;
	struct escpos_buf out;
	char why[200] = "";
	(void)state;

	o.allow_4byte = 1;
	assert_int_equal(render("[{\"text\": \"\\ud83d\\ude00\"}]", &o, &out, why, sizeof(why)), 0);
	/* U+1F600 is 94 39 FC 36 in GB18030 */
	assert_non_null(memmem(out.data, out.len, "\x1c&\x94\x39\xfc\x36\x1c.", 8));
	escpos_buf_free(&out);
}

static void test_render_ean13_check_digit(void **state)
{
	struct escpos_buf out;
	char why[200] = "";
	(void)state;

	assert_int_equal(render("[{\"barcode\": \"4006381333931\", \"symbology\": \"ean13\"}]", NULL,
	                        &out, why, sizeof(why)),
	                 0);
	assert_non_null(memmem(out.data, out.len, "\x1dk\x43\x0c" "400638133393", 16));
	escpos_buf_free(&out);
}

/* --- images --- */

static void test_image_png_and_not_png(void **state)
{
	uint8_t px[16 * 2], *png = NULL;
	png_alloc_size_t len = 0;
	png_image img = {0};
	struct escpos_buf out = {0};
	char why[200];
	(void)state;

	for (int i = 0; i < 32; i++)
		px[i] = i < 8 ? 0 : 255; /* first 8 pixels of row 0 black */
	img.version = PNG_IMAGE_VERSION;
	img.width = 16;
	img.height = 2;
	img.format = PNG_FORMAT_GRAY;
	assert_true(png_image_write_get_memory_size(img, len, 0, px, 0, NULL));
	png = malloc(len);
	assert_true(png_image_write_to_memory(&img, png, &len, 0, px, 0, NULL));
	assert_int_equal(escpos_image(&out, png, len, 384, why, sizeof(why)), 0);
	const uint8_t want[] = {0x1d, 'v', '0', 0, 2, 0, 2, 0, 0xff, 0x00, 0x00, 0x00};
	assert_int_equal(out.len, sizeof(want));
	assert_memory_equal(out.data, want, sizeof(want));
	escpos_buf_free(&out);
	/* scaled to 8 dots: one byte per row, half the rows */
	assert_int_equal(escpos_image(&out, png, len, 8, why, sizeof(why)), 0);
	const uint8_t half[] = {0x1d, 'v', '0', 0, 1, 0, 1, 0, 0xf0};
	assert_int_equal(out.len, sizeof(half));
	assert_memory_equal(out.data, half, sizeof(half));
	escpos_buf_free(&out);
	assert_int_equal(escpos_image(&out, (const uint8_t *)"RIFF....WAVEfmt ", 16, 384, why,
	                              sizeof(why)),
	                 -1);
	assert_string_equal(why, "image: the blob is not a PNG image");
	/* cut short: a clear refusal, no crash */
	assert_int_equal(escpos_image(&out, png, 40, 384, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "image: not a readable PNG"));
	escpos_buf_free(&out);
	free(png);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_status_ok_and_faults),
	        cmocka_unit_test(test_status_rejects_non_status_bytes),
	        cmocka_unit_test(test_status_events),
	        cmocka_unit_test(test_render_text_bytes),
	        cmocka_unit_test(test_render_chinese_in_chinese_mode),
	        cmocka_unit_test(test_render_qr_cut_feed),
	        cmocka_unit_test(test_render_refusals),
	        cmocka_unit_test(test_render_allows_4byte_when_the_font_has_them),
	        cmocka_unit_test(test_render_ean13_check_digit),
	        cmocka_unit_test(test_image_png_and_not_png),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
