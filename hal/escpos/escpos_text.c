/*
 * escpos_text.c -- a text block as a receipt printer prints it: wrapped at
 * the line width, ASCII as is, everything else converted to GB18030 and
 * sent inside the printer's Chinese mode (FS & ... FS .), where each
 * double-byte character is a full-width glyph of two columns.
 *
 * What is refused, and why (glibc's iconv maps every Unicode scalar value
 * to GB18030, so iconv itself refuses nothing JSON can carry):
 *  - control characters other than '\n' (C0, DEL, C1): they would reach
 *    the printer as commands (ESC, GS, DLE...);
 *  - private-use characters U+E000..U+F8FF: they map to GB18030's
 *    user-defined area, which has no glyphs in a printer's font;
 *  - characters whose GB18030 form is four bytes (outside GBK: emoji, CJK
 *    extension B and later, unassigned code points, supplementary private
 *    use): receipt printer fonts hold the double-byte GBK set only, and
 *    print such a sequence as two wrong glyphs.  allow_4byte lifts this for
 *    printers with a full GB18030 font.
 */
#include <iconv.h>
#include <stdio.h>
#include <string.h>

#include "escpos.h"

#define FS       0x1c
#define LINE_MAX 256 /* code points per line: cols is at most 255 */

/* One code point from valid UTF-8 (jansson checks it); -1 on a bad byte. */
static int utf8_next(const unsigned char *s, uint32_t *cp)
{
	int n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : 4;

	if (s[0] >= 0x80 && (s[0] < 0xc2 || s[0] > 0xf4))
		return -1;
	*cp = n == 1 ? s[0] : (uint32_t)(s[0] & (0x7f >> n));
	for (int i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return -1;
		*cp = *cp << 6 | (s[i] & 0x3f);
	}
	return n;
}

static int refuse_cp(uint32_t cp, char *why, size_t whylen)
{
	if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) {
		snprintf(why, whylen, "text: control character U+%04X cannot be printed", cp);
		return -1;
	}
	if (cp >= 0xe000 && cp <= 0xf8ff) {
		snprintf(why, whylen,
		         "text: private-use character U+%04X has no glyph in the printer's font",
		         cp);
		return -1;
	}
	return 0;
}

/* Convert one line; refuse four-byte sequences unless allowed. */
static int encode_line(struct escpos_buf *out, iconv_t cd, const char *p, size_t n, int allow_4byte,
                       char *why, size_t whylen)
{
	char buf[LINE_MAX * 4 + 16], *in = (char *)p, *o = buf;
	size_t il = n, ol = sizeof(buf);

	iconv(cd, NULL, NULL, NULL, NULL);
	if (iconv(cd, &in, &il, &o, &ol) == (size_t)-1) {
		snprintf(why, whylen, "text: cannot be converted to GB18030");
		return -1;
	}
	/* the k-th character out is the k-th code point in */
	const unsigned char *b = (const unsigned char *)buf, *end = (const unsigned char *)o;
	const unsigned char *src = (const unsigned char *)p;
	while (b < end) {
		uint32_t cp = 0;
		int len = b[0] < 0x80 ? 1 : (end - b > 1 && b[1] >= 0x30 && b[1] <= 0x39) ? 4 : 2;
		int k = utf8_next(src, &cp);
		if (len == 4 && !allow_4byte) {
			snprintf(why, whylen,
			         "text: U+%04X is not in the printer's GBK font (a four-byte "
			         "GB18030 "
			         "character)",
			         cp);
			return -1;
		}
		b += len;
		src += k > 0 ? k : 1;
	}
	escpos_buf_cmd(out, 2, FS, '&');
	escpos_buf_put(out, buf, (size_t)(o - buf));
	escpos_buf_cmd(out, 2, FS, '.');
	return 0;
}

static int emit_line(struct escpos_buf *out, iconv_t cd, const char *p, size_t n, int wide,
                     int allow_4byte, int *lines, char *why, size_t whylen)
{
	if (wide) {
		if (encode_line(out, cd, p, n, allow_4byte, why, whylen) < 0)
			return -1;
	} else {
		escpos_buf_put(out, p, n);
	}
	escpos_buf_byte(out, '\n');
	(*lines)++;
	return 0;
}

/* '\n' breaks a line and a final '\n' adds no empty line, as on the
 * simulator; a line never splits a character. */
int escpos_text(struct escpos_buf *out, void *cd, const char *text, int cols, int allow_4byte,
                int *lines, char *why, size_t whylen)
{
	const char *start = text, *p = text;
	int used = 0, wide = 0, count = 0;

	if (cols < 1)
		cols = 1;
	for (;;) {
		uint32_t cp;
		int k, w;
		if (*p == '\0' || *p == '\n') {
			if (emit_line(out, cd, start, (size_t)(p - start), wide, allow_4byte, lines,
			              why, whylen) < 0)
				return -1;
			if (*p == '\0' || p[1] == '\0')
				return 0;
			start = ++p;
			used = wide = count = 0;
			continue;
		}
		if ((k = utf8_next((const unsigned char *)p, &cp)) < 0) {
			snprintf(why, whylen, "text: not valid UTF-8");
			return -1;
		}
		if (refuse_cp(cp, why, whylen) < 0)
			return -1;
		w = cp < 0x80 ? 1 : 2;
		if ((used > 0 && used + w > cols) || count >= LINE_MAX) {
			if (emit_line(out, cd, start, (size_t)(p - start), wide, allow_4byte, lines,
			              why, whylen) < 0)
				return -1;
			start = p;
			used = wide = count = 0;
		}
		used += w;
		wide |= cp >= 0x80;
		count++;
		p += k;
	}
}
