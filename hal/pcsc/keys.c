/*
 * keys.c -- loading the MIFARE key file (see keys.h for the format).
 */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYFILE_MAX 16384

static int name_ok(const char *s, size_t n)
{
	if (n == 0 || n > KEY_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return 0;
	}
	return 1;
}

static const char *trim(const char *s, const char *end, const char **tend)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	*tend = end;
	return s;
}

/* One line without its newline: 0 (key added or nothing there), or -1. */
static int parse_line(struct keyring *kr, const char *s, const char *end, int lineno, char *why,
                      size_t whylen)
{
	const char *hash = memchr(s, '#', (size_t)(end - s)), *eq, *ne, *ve, *v;
	char hex[2 * MIF_KEY_LEN + 1];
	struct key *k;

	s = trim(s, hash ? hash : end, &end);
	if (s == end)
		return 0;
	if (!(eq = memchr(s, '=', (size_t)(end - s)))) {
		snprintf(why, whylen, "line %d: expected name = 12 hex digits", lineno);
		return -1;
	}
	s = trim(s, eq, &ne);
	v = trim(eq + 1, end, &ve);
	if (!name_ok(s, (size_t)(ne - s))) {
		snprintf(why, whylen, "line %d: key name must be 1-64 of A-Z a-z 0-9 _ - .",
		         lineno);
		return -1;
	}
	if (kr->n == KEYS_MAX) {
		snprintf(why, whylen, "line %d: more than %d keys", lineno, KEYS_MAX);
		return -1;
	}
	k = &kr->keys[kr->n];
	memcpy(k->name, s, (size_t)(ne - s));
	k->name[ne - s] = 0;
	if (keys_find(kr, k->name)) {
		snprintf(why, whylen, "line %d: key '%s' defined twice", lineno, k->name);
		return -1;
	}
	if (ve - v != 2 * MIF_KEY_LEN) {
		snprintf(why, whylen, "line %d: key '%s' must be 12 hex digits (6 bytes)", lineno,
		         k->name);
		return -1;
	}
	memcpy(hex, v, sizeof(hex) - 1);
	hex[sizeof(hex) - 1] = 0;
	if (hex_decode(hex, k->key, MIF_KEY_LEN) != MIF_KEY_LEN) {
		snprintf(why, whylen, "line %d: key '%s' must be 12 hex digits (6 bytes)", lineno,
		         k->name);
		memset(hex, 0, sizeof(hex));
		return -1;
	}
	memset(hex, 0, sizeof(hex));
	kr->n++;
	return 0;
}

int keys_parse(struct keyring *kr, const char *text, char *why, size_t whylen)
{
	int lineno = 1;

	kr->n = 0;
	for (const char *s = text; *s; lineno++) {
		const char *nl = strchr(s, '\n'), *end = nl ? nl : s + strlen(s);
		if (parse_line(kr, s, end, lineno, why, whylen) < 0) {
			keys_wipe(kr);
			return -1;
		}
		s = nl ? nl + 1 : end;
	}
	return 0;
}

/* Keys are secrets: a file others can read is refused, not just warned
 * about, so a mistake shows on the first start. */
static int check_file(int fd, const char *path, char *why, size_t whylen)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "key_file %s: not a regular file", path);
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(why, whylen, "key_file %s: must be owned by root", path);
		return -1;
	}
	if (st.st_mode & 077) {
		snprintf(why, whylen,
		         "key_file %s: must not be accessible by group or others (mode %04o; "
		         "chmod 600)",
		         path, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	if (st.st_size > KEYFILE_MAX) {
		snprintf(why, whylen, "key_file %s: larger than %d bytes", path, KEYFILE_MAX);
		return -1;
	}
	return 0;
}

int keys_load(struct keyring *kr, const char *path, char *why, size_t whylen)
{
	char text[KEYFILE_MAX + 1], inner[200];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n;
	int rc = -1;

	if (fd < 0) {
		snprintf(why, whylen, "key_file %s: %s", path, strerror(errno));
		return -1;
	}
	if (check_file(fd, path, why, whylen) == 0) {
		n = read(fd, text, KEYFILE_MAX);
		if (n < 0) {
			snprintf(why, whylen, "key_file %s: %s", path, strerror(errno));
		} else {
			text[n] = 0;
			rc = keys_parse(kr, text, inner, sizeof(inner));
			if (rc < 0)
				snprintf(why, whylen, "key_file %s: %s", path, inner);
		}
		memset(text, 0, sizeof(text));
	}
	close(fd);
	return rc;
}

const struct key *keys_find(const struct keyring *kr, const char *name)
{
	for (size_t i = 0; i < kr->n; i++)
		if (strcmp(kr->keys[i].name, name) == 0)
			return &kr->keys[i];
	return NULL;
}

void keys_wipe(struct keyring *kr)
{
	/* volatile: the compiler must not drop a store to memory freed next */
	volatile uint8_t *p = (volatile uint8_t *)kr->keys;
	for (size_t i = 0; i < sizeof(kr->keys); i++)
		p[i] = 0;
	kr->n = 0;
}
