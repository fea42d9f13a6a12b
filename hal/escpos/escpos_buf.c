/*
 * escpos_buf.c -- the growable byte buffer a document is rendered into.
 * Running out of memory sets a sticky flag instead of failing every call,
 * so the renderer checks once at the end.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "escpos.h"

void escpos_buf_put(struct escpos_buf *b, const void *p, size_t n)
{
	if (b->oom || n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *d;
		while (cap < b->len + n)
			cap *= 2;
		if (!(d = realloc(b->data, cap))) {
			b->oom = 1;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void escpos_buf_byte(struct escpos_buf *b, uint8_t c)
{
	escpos_buf_put(b, &c, 1);
}

void escpos_buf_cmd(struct escpos_buf *b, int n, ...)
{
	uint8_t cmd[8];
	va_list ap;

	if (n > (int)sizeof(cmd))
		n = (int)sizeof(cmd);
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		cmd[i] = (uint8_t)va_arg(ap, int);
	va_end(ap);
	escpos_buf_put(b, cmd, (size_t)n);
}

void escpos_buf_free(struct escpos_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}
