/*
 * escpos_render.c -- the printer class's document model (docs/protocol.md
 * "printer") rendered to ESC/POS bytes.  Pure: no host calls and no I/O,
 * so tests, fuzzers and the benchmark link it directly.
 *
 * The core has checked the blocks against the class schema, but the
 * renderer still checks every type it reads: it is also fed raw fuzz input.
 */
#include <ctype.h>
#include <iconv.h>
#include <stdio.h>
#include <string.h>

#include "escpos.h"

#define ESC 0x1b
#define GS  0x1d

struct ctx {
	const struct escpos_doc_opts *o;
	struct escpos_buf *out;
	iconv_t cd;
	int lines;
	char *why;
	size_t whylen;
};

/* Byte-mode capacity of a version 40 symbol (ISO/IEC 18004 table 7). */
size_t escpos_qr_capacity(enum escpos_qr_ec ec)
{
	static const size_t cap[] = {2953, 2331, 1663, 1273};
	return cap[ec <= ESCPOS_QR_H ? ec : ESCPOS_QR_H];
}

static const char *str_opt(const json_t *b, const char *key)
{
	return json_string_value(json_object_get(b, key));
}

static void set_align(struct ctx *c, const json_t *b)
{
	const char *a = str_opt(b, "align");
	int n = !a ? 0 : strcmp(a, "center") == 0 ? 1 : strcmp(a, "right") == 0 ? 2 : 0;
	escpos_buf_cmd(c->out, 3, ESC, 'a', n);
}

static int do_text(struct ctx *c, const json_t *b, const char *text)
{
	int bold = json_is_true(json_object_get(b, "bold"));
	int dbl = json_is_true(json_object_get(b, "double"));
	int cols = dbl ? c->o->width / 2 : c->o->width;

	set_align(c, b);
	escpos_buf_cmd(c->out, 3, ESC, 'E', bold);
	escpos_buf_cmd(c->out, 3, GS, '!', dbl ? 0x11 : 0x00);
	if (escpos_text(c->out, c->cd, text, cols, c->o->allow_4byte, &c->lines, c->why,
	                c->whylen) < 0)
		return -1;
	escpos_buf_cmd(c->out, 3, ESC, 'E', 0);
	escpos_buf_cmd(c->out, 3, GS, '!', 0);
	return 0;
}

/* GS ( k: model 2, module size, error correction, store, print. */
static int do_qr(struct ctx *c, const json_t *b, const char *data)
{
	size_t n = strlen(data), cap = escpos_qr_capacity(c->o->qr_ec);
	json_int_t size = json_integer_value(json_object_get(b, "size"));

	if (n == 0 || n > cap) {
		snprintf(c->why, c->whylen,
		         "qr: a payload of %zu bytes does not fit the printer's QR code (1 to %zu "
		         "bytes at error correction %c)",
		         n, cap, "LMQH"[c->o->qr_ec & 3]);
		return -1;
	}
	if (size < 1 || size > 16)
		size = 6;
	set_align(c, b);
	escpos_buf_cmd(c->out, 8, GS, '(', 'k', 4, 0, '1', 'A', '2');
	escpos_buf_byte(c->out, 0);
	escpos_buf_cmd(c->out, 8, GS, '(', 'k', 3, 0, '1', 'C', (int)size);
	escpos_buf_cmd(c->out, 8, GS, '(', 'k', 3, 0, '1', 'E', '0' + (c->o->qr_ec & 3));
	escpos_buf_cmd(c->out, 8, GS, '(', 'k', (int)((n + 3) & 0xff), (int)((n + 3) >> 8), '1',
	               'P', '0');
	escpos_buf_put(c->out, data, n);
	escpos_buf_cmd(c->out, 8, GS, '(', 'k', 3, 0, '1', 'Q', '0');
	escpos_buf_byte(c->out, '\n');
	c->lines++;
	return 0;
}

static int ean13_ok(const char *d, size_t n)
{
	int sum = 0;

	if (n != 12 && n != 13)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)d[i]))
			return 0;
	if (n == 12)
		return 1; /* the printer adds the check digit */
	for (int i = 0; i < 12; i++)
		sum += (d[i] - '0') * (i % 2 ? 3 : 1);
	return (10 - sum % 10) % 10 == d[12] - '0';
}

static int code39_ok(const char *d)
{
	for (; *d; d++)
		if (!isdigit((unsigned char)*d) && !(*d >= 'A' && *d <= 'Z') &&
		    !strchr(" $%+-./", *d))
			return 0;
	return 1;
}

static int printable_ascii(const char *d)
{
	for (; *d; d++)
		if ((unsigned char)*d < 0x20 || (unsigned char)*d > 0x7e)
			return 0;
	return 1;
}

/* GS k, format 2 (length-prefixed); HRI text below the bars. */
static int do_barcode(struct ctx *c, const json_t *b, const char *data)
{
	const char *sym = str_opt(b, "symbology");
	size_t n = strlen(data);
	uint8_t body[140];
	size_t bn = 0;
	int m;

	if (!sym || strcmp(sym, "code128") == 0) {
		if (!printable_ascii(data) || n == 0 || n > 64)
			goto bad;
		m = 73;
		body[bn++] = '{'; /* start in code set B; a literal '{' is "{{" */
		body[bn++] = 'B';
		for (size_t i = 0; i < n; i++) {
			if (data[i] == '{')
				body[bn++] = '{';
			body[bn++] = (uint8_t)data[i];
		}
	} else if (strcmp(sym, "ean13") == 0) {
		if (!ean13_ok(data, n))
			goto bad;
		m = 67;
		memcpy(body, data, 12); /* the printer computes the check digit */
		bn = 12;
	} else if (strcmp(sym, "code39") == 0) {
		if (n == 0 || n > 64 || !code39_ok(data))
			goto bad;
		m = 69;
		memcpy(body, data, n);
		bn = n;
	} else {
		snprintf(c->why, c->whylen, "barcode: unknown symbology '%s'", sym);
		return -1;
	}
	set_align(c, b);
	escpos_buf_cmd(c->out, 3, GS, 'H', 2);
	escpos_buf_cmd(c->out, 3, GS, 'h', 80);
	escpos_buf_cmd(c->out, 3, GS, 'w', 2);
	escpos_buf_cmd(c->out, 4, GS, 'k', m, (int)bn);
	escpos_buf_put(c->out, body, bn);
	escpos_buf_byte(c->out, '\n');
	c->lines++;
	return 0;
bad:
	snprintf(c->why, c->whylen, "barcode: '%.64s' cannot be encoded as %s%s", data,
	         sym ? sym : "code128",
	         sym && strcmp(sym, "ean13") == 0 ? " (12 digits, or 13 with a valid check digit)"
	         : sym && strcmp(sym, "code39") == 0 ? " (0-9, A-Z, space and $%+-./)"
	                                             : " (printable ASCII)");
	return -1;
}

static int do_image(struct ctx *c, const json_t *b, const char *id)
{
	for (size_t i = 0; i < c->o->nimages; i++) {
		if (strcmp(c->o->images[i].id, id) != 0)
			continue;
		set_align(c, b);
		if (escpos_image(c->out, c->o->images[i].data, c->o->images[i].len, c->o->dots,
		                 c->why, c->whylen) < 0)
			return -1;
		c->lines++;
		return 0;
	}
	snprintf(c->why, c->whylen, "image %.8s: no such blob", id);
	return -1;
}

/* jansson strings may hold U+0000, which C strings would silently cut. */
static const char *content(struct ctx *c, const json_t *b, const char *kind, int *bad)
{
	const json_t *v = json_object_get(b, kind);
	const char *s = json_string_value(v);

	if (s && strlen(s) != json_string_length(v)) {
		snprintf(c->why, c->whylen, "%s: U+0000 cannot be printed", kind);
		*bad = 1;
		return NULL;
	}
	return s;
}

static int do_block(struct ctx *c, const json_t *b)
{
	const json_t *v;
	const char *s;
	int bad = 0;

	if ((s = content(c, b, "text", &bad)))
		return do_text(c, b, s);
	if ((s = content(c, b, "qr", &bad)))
		return do_qr(c, b, s);
	if ((s = content(c, b, "barcode", &bad)))
		return do_barcode(c, b, s);
	if (bad)
		return -1;

	if ((s = str_opt(b, "image")))
		return do_image(c, b, s);
	if ((v = json_object_get(b, "feed"))) {
		json_int_t n = json_integer_value(v);
		if (n < 1 || n > 255) {
			snprintf(c->why, c->whylen, "feed: must be between 1 and 255");
			return -1;
		}
		escpos_buf_cmd(c->out, 3, ESC, 'd', (int)n);
		c->lines += (int)n;
		return 0;
	}
	if ((v = json_object_get(b, "cut"))) {
		/* GS V 65/66 n: feed to the cutter, then a full/partial cut */
		int partial = json_is_string(v) && strcmp(json_string_value(v), "partial") == 0;
		escpos_buf_cmd(c->out, 4, GS, 'V', partial ? 66 : 65, 0);
		c->lines++;
		return 0;
	}
	snprintf(c->why, c->whylen, "needs one of text, qr, barcode, image, feed, cut");
	return -1;
}

int escpos_render(const json_t *blocks, const struct escpos_doc_opts *o, struct escpos_buf *out,
                  int *lines, char *why, size_t whylen)
{
	struct ctx c = {o, out, (iconv_t)-1, 0, why, whylen};
	char inner[200];
	size_t i;
	int rc = 0;

	*lines = 0;
	if (!json_is_array(blocks)) {
		snprintf(why, whylen, "blocks: must be an array");
		return -1;
	}
	if ((c.cd = iconv_open("GB18030", "UTF-8")) == (iconv_t)-1) {
		snprintf(why, whylen, "iconv has no GB18030 converter");
		return -1;
	}
	c.why = inner;
	c.whylen = sizeof(inner);
	escpos_buf_cmd(out, 2, ESC, '@');
	for (i = 0; i < json_array_size(blocks) && rc == 0; i++) {
		const json_t *b = json_array_get(blocks, i);
		if (!json_is_object(b)) {
			snprintf(inner, sizeof(inner), "must be an object");
			rc = -1;
		} else {
			rc = do_block(&c, b);
		}
		if (rc < 0)
			snprintf(why, whylen, "blocks[%zu]: %s", i, inner);
	}
	iconv_close(c.cd);
	if (rc == 0 && out->oom) {
		snprintf(why, whylen, "out of memory");
		rc = -1;
	}
	*lines = c.lines;
	return rc;
}
