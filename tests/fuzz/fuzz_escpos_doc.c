/* libFuzzer target: the escpos document renderer on arbitrary JSON (what
 * the core's schema lets through and much it does not), with one small
 * PNG blob available as image "png" and the input itself as image "raw".
 * Checked: a refusal always says why and a success never leaves an
 * out-of-memory buffer; the renderer never reads or writes out of bounds
 * (ASan) and never hangs.  Text, QR, barcode, image, feed and cut all
 * run. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../hal/escpos/escpos.h"

/* an 8x2 gray PNG */
static const uint8_t PNG[] = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x00, 0x00, 0x00, 0x40,
        0xff, 0xc2, 0x31, 0x00, 0x00, 0x00, 0x11, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60,
        0x00, 0x82, 0xff, 0x40, 0x00, 0x26, 0x40, 0x00, 0x00, 0x51, 0xc0, 0x0b, 0xf5, 0x8e, 0x24,
        0xa5, 0x2d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *doc = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
	struct escpos_image_src img[2] = {{"png", PNG, sizeof(PNG)}, {"raw", data, size}};
	struct escpos_doc_opts o = {.width = 1 + (int)(size % 64),
	                            .dots = 8 + (int)(size % 600),
	                            .qr_ec = (enum escpos_qr_ec)(size % 4),
	                            .allow_4byte = (int)(size & 1),
	                            .images = img,
	                            .nimages = 2};
	struct escpos_buf out = {0};
	char why[200] = "";
	int lines;

	if (!doc)
		return 0;
	int rc = escpos_render(doc, &o, &out, &lines, why, sizeof(why));
	if (rc < 0 && why[0] == '\0')
		abort();
	if (rc == 0 && (out.oom || out.len < 2 || lines < 0))
		abort();
	escpos_buf_free(&out);
	json_decref(doc);
	return 0;
}
