/*
 * sim_png.c -- a minimal PNG writer: 8-bit gray or RGB, filter 0, and a
 * zlib stream of "stored" (uncompressed) deflate blocks, so no zlib is
 * needed.  Simulated images are synthetic; their size does not matter.
 *
 * It runs on worker threads: no static mutable state (the CRC table is
 * built per image, 256 entries, far cheaper than the pixels).
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define STORED_MAX 65535u      /* the most one stored block can hold */
#define CHUNK_MAX  0x7fffffffu /* PNG chunk length limit */

struct png {
	uint8_t *p; /* write position */
	uint32_t crc_table[256];
	/* zlib stream state */
	size_t raw_left;   /* uncompressed bytes still to come */
	size_t block_left; /* room left in the current stored block */
	uint32_t a, b;     /* adler32 */
};

static void crc_init(uint32_t t[256])
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		t[n] = c;
	}
}

static uint32_t crc32(const uint32_t t[256], const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--)
		c = t[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

static void adler_update(struct png *z, const uint8_t *p, size_t n)
{
	while (n) {
		/* 5552 is the most bytes before b can overflow 32 bits */
		size_t k = n < 5552 ? n : 5552;
		n -= k;
		while (k--) {
			z->a += *p++;
			z->b += z->a;
		}
		z->a %= 65521;
		z->b %= 65521;
	}
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Opens a chunk; returns where its type starts, for the CRC. */
static uint8_t *chunk_begin(struct png *z, const char *type, uint32_t len)
{
	uint8_t *start;

	put32(z->p, len);
	start = z->p + 4;
	memcpy(start, type, 4);
	z->p += 8;
	return start;
}

static void chunk_end(struct png *z, const uint8_t *start)
{
	put32(z->p, crc32(z->crc_table, start, (size_t)(z->p - start)));
	z->p += 4;
}

static void block_header(struct png *z)
{
	uint16_t len = (uint16_t)(z->raw_left < STORED_MAX ? z->raw_left : STORED_MAX);
	uint16_t nlen = (uint16_t)~len;

	*z->p++ = z->raw_left == len; /* BFINAL, BTYPE 00 = stored */
	*z->p++ = (uint8_t)len;
	*z->p++ = (uint8_t)(len >> 8);
	*z->p++ = (uint8_t)nlen;
	*z->p++ = (uint8_t)(nlen >> 8);
	z->block_left = len;
}

/* Append uncompressed bytes, opening stored blocks as they fill. */
static void zput(struct png *z, const uint8_t *p, size_t n)
{
	adler_update(z, p, n);
	while (n) {
		size_t k;
		if (z->block_left == 0)
			block_header(z);
		k = n < z->block_left ? n : z->block_left;
		memcpy(z->p, p, k);
		z->p += k;
		p += k;
		n -= k;
		z->block_left -= k;
		z->raw_left -= k;
	}
}

static void write_ihdr(struct png *z, uint32_t w, uint32_t h, int channels)
{
	uint8_t *start = chunk_begin(z, "IHDR", 13);

	put32(z->p, w);
	put32(z->p + 4, h);
	z->p[8] = 8;                     /* bit depth */
	z->p[9] = channels == 3 ? 2 : 0; /* truecolour or greyscale */
	z->p[10] = z->p[11] = z->p[12] = 0;
	z->p += 13;
	chunk_end(z, start);
}

static void write_idat(struct png *z, uint32_t w, uint32_t h, int channels, sim_row_fn row,
                       const void *ctx, uint8_t *rowbuf, size_t zlen)
{
	size_t rowlen = 1 + (size_t)w * (size_t)channels;
	uint8_t *start = chunk_begin(z, "IDAT", (uint32_t)zlen);

	*z->p++ = 0x78; /* deflate, 32K window */
	*z->p++ = 0x01; /* no preset dictionary, check bits */
	for (uint32_t y = 0; y < h; y++) {
		rowbuf[0] = 0; /* filter type None */
		row(rowbuf + 1, y, ctx);
		zput(z, rowbuf, rowlen);
	}
	put32(z->p, z->b << 16 | z->a);
	z->p += 4;
	chunk_end(z, start);
}

int sim_png_encode(uint32_t w, uint32_t h, int channels, sim_row_fn row, const void *ctx,
                   uint8_t **png, size_t *len)
{
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	size_t rowlen = 1 + (size_t)w * (size_t)channels;
	size_t raw = rowlen * h;
	size_t blocks = raw / STORED_MAX + (raw % STORED_MAX != 0);
	size_t zlen = 2 + raw + 5 * blocks + 4;
	size_t total = sizeof(sig) + 25 + 12 + zlen + 12;
	struct png z = {.raw_left = raw, .a = 1};
	uint8_t *buf, *rowbuf;

	*png = NULL;
	if (w == 0 || h == 0 || zlen > CHUNK_MAX)
		return -1;
	buf = malloc(total);
	rowbuf = malloc(rowlen);
	if (!buf || !rowbuf) {
		free(buf);
		free(rowbuf);
		return -1;
	}
	crc_init(z.crc_table);
	z.p = buf;
	memcpy(z.p, sig, sizeof(sig));
	z.p += sizeof(sig);
	write_ihdr(&z, w, h, channels);
	write_idat(&z, w, h, channels, row, ctx, rowbuf, zlen);
	chunk_end(&z, chunk_begin(&z, "IEND", 0));
	free(rowbuf);
	*png = buf;
	*len = (size_t)(z.p - buf);
	return 0;
}
