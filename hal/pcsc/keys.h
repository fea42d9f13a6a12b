/*
 * keys.h -- the MIFARE key file: named 6-byte keys, so the UI says
 * "key": "water_a" and never sees or sends key bytes.
 *
 * Format, one key a line; '#' starts a comment:
 *     water_a = a0a1a2a3a4a5
 * Names are 1-64 of [A-Za-z0-9_.-].  The file must be a regular file owned
 * by root or by the daemon's user, with no access for group or others.
 */
#ifndef KIOSK_PCSC_KEYS_H
#define KIOSK_PCSC_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "card.h"

#define KEY_NAME_MAX 64
#define KEYS_MAX     64

struct key {
	char name[KEY_NAME_MAX + 1];
	uint8_t key[MIF_KEY_LEN];
};

struct keyring {
	struct key keys[KEYS_MAX];
	size_t n;
};

/* Parse the text of a key file: 0, or -1 with why (names the line, never
 * a key's bytes). */
int keys_parse(struct keyring *kr, const char *text, char *why, size_t whylen);
/* Check ownership and mode, then read and parse path: 0 or -1 with why. */
int keys_load(struct keyring *kr, const char *path, char *why, size_t whylen);
const struct key *keys_find(const struct keyring *kr, const char *name);
/* Overwrite the keys in memory. */
void keys_wipe(struct keyring *kr);

#endif
