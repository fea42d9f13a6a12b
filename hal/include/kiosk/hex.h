/*
 * kiosk/hex.h -- hex text to bytes and back, for plugins.
 *
 * Card data, APDUs and keys travel as hex strings in the UI protocol (the
 * class schemas check the digits; plugins decode).  Header-only, so a
 * plugin needs nothing from the daemon for it.
 */
#ifndef KIOSK_HEX_H
#define KIOSK_HEX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The value of one hex digit (either case), or -1. */
static inline int kiosk_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* hex into out: the byte count, or -1 when the length is odd, a character
 * is not a hex digit, or it would be more than max bytes. */
static inline long kiosk_hex_decode(const char *hex, uint8_t *out, size_t max)
{
	size_t len = strlen(hex);

	if (len % 2 || len / 2 > max)
		return -1;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = kiosk_hex_digit(hex[2 * i]), lo = kiosk_hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (long)(len / 2);
}

/* n bytes as lowercase hex into out (2n + 1 bytes with the NUL). */
static inline void kiosk_hex_encode(const uint8_t *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = 0;
}

#endif /* KIOSK_HEX_H */
