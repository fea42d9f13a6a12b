/*
 * sane_png.h -- SANE frames to PNG in memory, one scan line at a time.
 * Pure (no SANE calls): unit-tested and fuzzed on its own.
 */
#ifndef KIOSK_SANE_PNG_H
#define KIOSK_SANE_PNG_H

#include <stddef.h>
#include <stdint.h>

struct sane_png;

/* A PNG of w x h pixels with channels 1 (gray) or 3 (RGB) and a SANE depth
 * of 1, 8 or 16 bits; dpi goes into the pHYs chunk, level is zlib's 0-9.
 * NULL with a reason in why when the shape cannot be a PNG. */
struct sane_png *sane_png_new(uint32_t w, uint32_t h, int channels, int depth, int dpi, int level,
                              char *why, size_t whylen);
/* Bytes in one SANE scan line of this shape. */
size_t sane_png_row_bytes(const struct sane_png *p);
/* Append one scan line as SANE sends it (depth 1: 1 = black; depth 16:
 * host byte order).  0, or -1 with a reason. */
int sane_png_row(struct sane_png *p, const uint8_t *row, char *why, size_t whylen);
/* After all h lines: the PNG, malloc()ed, for the caller to free. */
int sane_png_finish(struct sane_png *p, uint8_t **png, size_t *len, char *why, size_t whylen);
void sane_png_free(struct sane_png *p);

#endif
