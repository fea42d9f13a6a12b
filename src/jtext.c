/* Fast paths for the JSON text of the protocol's common case.
 *
 * Every request line is parsed and every reply and event is written as
 * JSON.  jansson reads through a character callback and writes through
 * one per token, which made text handling a third of kioskd's own work
 * on a txn.submit.  These two walk the bytes directly and build or read
 * the same json_t trees.  They handle what the protocol carries day to
 * day (objects, arrays, UTF-8 strings, integers, true/false/null) and
 * decline the rest, so that jansson keeps deciding every corner case and
 * wording every error: the caller falls back to it on NULL or 0. */
#include "jtext.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* JSON's short escapes: the letter after the backslash, and its byte */
static const char esc_letter[] = "\"\\/bfnrt", esc_byte[] = "\"\\/\b\f\n\r\t";

/* ---- reading ---- */

struct rd {
	const unsigned char *p, *end;
	int depth;
};

static json_t *read_value(struct rd *r);

static void skip_ws(struct rd *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

/* The string whose opening quote r->p is on, unescaped into a malloc()ed
 * buffer when it has escapes; *len its length.  NULL: declined. */
static char *read_string(struct rd *r, size_t *len, int *owned)
{
	const unsigned char *start = ++r->p, *q = start;
	char *buf = NULL;
	size_t n = 0;

	/* the common case: no escapes, the text is the value */
	while (q < r->end && *q != '"' && *q != '\\') {
		if (*q >= 0x20 && *q < 0x80) { /* printable ASCII: no call per byte */
			q++;
			continue;
		}
		size_t k = *q < 0x20 ? 0 : utf8_seq(q, (size_t)(r->end - q));
		if (!k)
			return NULL;
		q += k;
	}
	if (q >= r->end)
		return NULL;
	if (*q == '"') {
		r->p = q + 1;
		*len = (size_t)(q - start);
		*owned = 0;
		return (char *)start;
	}
	/* escapes: the value is never longer than its text */
	if (!(buf = malloc((size_t)(r->end - start))))
		return NULL;
	memcpy(buf, start, (size_t)(q - start));
	n = (size_t)(q - start);
	while (q < r->end && *q != '"') {
		if (*q == '\\') {
			const char *e = q + 1 < r->end && q[1] ? strchr(esc_letter, q[1]) : NULL;
			if (!e)
				break; /* \u, or not an escape at all */
			buf[n++] = esc_byte[e - esc_letter];
			q += 2;
			continue;
		}
		size_t k = *q < 0x20 ? 0 : utf8_seq(q, (size_t)(r->end - q));
		if (!k)
			break;
		memcpy(buf + n, q, k);
		n += k;
		q += k;
	}
	if (q >= r->end || *q != '"') {
		free(buf);
		return NULL;
	}
	r->p = q + 1;
	*len = n;
	*owned = 1;
	return buf;
}

static json_t *read_number(struct rd *r)
{
	const unsigned char *q = r->p;
	int neg = *q == '-';
	json_int_t v = 0;
	int digits = 0;

	q += neg;
	if (q < r->end && *q == '0') {
		q++;
		digits = 1;
	} else {
		/* 18 digits cannot overflow json_int_t; longer ones are declined */
		for (; q < r->end && *q >= '0' && *q <= '9' && digits < 18; q++, digits++)
			v = v * 10 + (*q - '0');
	}
	if (!digits ||
	    (q < r->end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E')))
		return NULL;
	r->p = q;
	return json_integer(neg ? -v : v);
}

static json_t *read_word(struct rd *r)
{
	static const struct {
		const char *w;
		size_t n;
	} words[] = {{"true", 4}, {"false", 5}, {"null", 4}};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		size_t n = words[i].n;
		if ((size_t)(r->end - r->p) < n || memcmp(r->p, words[i].w, n))
			continue;
		/* "truex" is declined by what must follow a value (, } ]) */
		r->p += n;
		return i == 0 ? json_true() : i == 1 ? json_false() : json_null();
	}
	return NULL;
}

/* Past one punctuation byte c (and the blanks after it) when it is next:
 * 1, else 0. */
static int eat(struct rd *r, char c)
{
	if (r->p >= r->end || *r->p != c)
		return 0;
	r->p++;
	skip_ws(r);
	return 1;
}

/* One "key": value member into o: 0, or -1 (declined). */
static int read_member(struct rd *r, json_t *o)
{
	size_t klen;
	int owned, rc = -1;
	char *key = r->p < r->end && *r->p == '"' ? read_string(r, &klen, &owned) : NULL;

	if (!key)
		return -1;
	skip_ws(r);
	if (!json_object_getn(o, key, klen) && eat(r, ':')) {
		json_t *v = read_value(r);
		rc = v ? json_object_setn_new_nocheck(o, key, klen, v) : -1;
	}
	if (owned)
		free(key);
	return rc;
}

/* An object or an array, r->p on its opening bracket. */
static json_t *read_container(struct rd *r)
{
	int obj = *r->p == '{';
	char close = obj ? '}' : ']';
	json_t *c = obj ? json_object() : json_array();

	eat(r, *r->p);
	if (c && eat(r, close))
		return c;
	while (c) {
		json_t *v = obj ? NULL : read_value(r);
		if (obj ? read_member(r, c) < 0 : !v || json_array_append_new(c, v) < 0)
			break;
		skip_ws(r);
		if (eat(r, close))
			return c;
		if (!eat(r, ','))
			break;
	}
	json_decref(c);
	return NULL;
}

static json_t *read_value(struct rd *r)
{
	json_t *v = NULL;

	if (r->p >= r->end)
		return NULL;
	switch (*r->p) {
	case '{':
	case '[':
		if (r->depth >= JTEXT_MAX_DEPTH)
			return NULL;
		r->depth++;
		v = read_container(r);
		r->depth--;
		return v;
	case '"': {
		size_t len;
		int owned;
		char *s = read_string(r, &len, &owned);
		if (s)
			v = json_stringn_nocheck(s, len);
		if (s && owned)
			free(s);
		return v;
	}
	case '-':
	case '0' ... '9':
		return read_number(r);
	default:
		return read_word(r);
	}
}

json_t *jtext_parse(const char *s, size_t len)
{
	struct rd r = {(const unsigned char *)s, (const unsigned char *)s + len, 0};

	skip_ws(&r);
	if (r.p >= r.end || *r.p != '{')
		return NULL;
	json_t *v = read_value(&r);
	if (v)
		skip_ws(&r);
	if (v && r.p != r.end) {
		json_decref(v);
		return NULL;
	}
	return v;
}

/* ---- writing ---- */

struct wr {
	char *buf;
	size_t size, len;
};

static void put(struct wr *w, const void *p, size_t n)
{
	if (w->len + n <= w->size)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static int write_string(struct wr *w, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n, *run;

	put(w, "\"", 1);
	while (p < end) {
		for (run = p; p < end && *p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80; p++)
			;
		put(w, run, (size_t)(p - run));
		if (p == end)
			break;
		if (*p >= 0x80) {
			size_t k = utf8_seq(p, (size_t)(end - p));
			if (!k)
				return -1; /* jansson refuses it */
			put(w, p, k);
			p += k;
			continue;
		}
		char esc[7] = {'\\', 0};
		size_t elen = 2;
		const char *e = memchr(esc_byte, *p, sizeof(esc_byte) - 1);
		if (e) {
			esc[1] = esc_letter[e - esc_byte];
		} else {
			static const char hex[] = "0123456789ABCDEF";
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			elen = 6;
		}
		put(w, esc, elen);
		p++;
	}
	put(w, "\"", 1);
	return 0;
}

static void write_integer(struct wr *w, json_int_t v)
{
	char tmp[24], *q = tmp + sizeof(tmp);
	/* through unsigned: the most negative value has no positive twin */
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	do
		*--q = (char)('0' + u % 10);
	while ((u /= 10));
	if (v < 0)
		*--q = '-';
	put(w, q, (size_t)(tmp + sizeof(tmp) - q));
}

static int write_value(struct wr *w, const json_t *v, int depth)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
	case JSON_ARRAY: {
		int obj = json_is_object(v);
		void *it = obj ? json_object_iter((json_t *)v) : NULL;
		size_t n = obj ? json_object_size(v) : json_array_size(v);
		if (depth >= JTEXT_MAX_DEPTH)
			return -1;
		put(w, obj ? "{" : "[", 1);
		for (size_t i = 0; i < n; i++) {
			json_t *x = obj ? json_object_iter_value(it) : json_array_get(v, i);
			if (i)
				put(w, ",", 1);
			if (obj && write_string(w, json_object_iter_key(it),
			                        json_object_iter_key_len(it)) < 0)
				return -1;
			if (obj) {
				put(w, ":", 1);
				it = json_object_iter_next((json_t *)v, it);
			}
			if (write_value(w, x, depth + 1) < 0)
				return -1;
		}
		put(w, obj ? "}" : "]", 1);
		return 0;
	}
	case JSON_STRING:
		return write_string(w, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		write_integer(w, json_integer_value(v));
		return 0;
	case JSON_TRUE:
		put(w, "true", 4);
		return 0;
	case JSON_FALSE:
		put(w, "false", 5);
		return 0;
	case JSON_NULL:
		put(w, "null", 4);
		return 0;
	default:
		return -1; /* reals: jansson's formatting is its own */
	}
}

size_t jtext_dump(const json_t *v, char *buf, size_t size)
{
	struct wr w = {buf, size, 0};

	if (!json_is_object(v) && !json_is_array(v))
		return 0;
	return write_value(&w, v, 0) < 0 ? 0 : w.len;
}

size_t jtext_reply_ok(const json_t *id, const json_t *result, char *buf, size_t size)
{
	static const char head[] = "{\"id\":", mid[] = ",\"ok\":true,\"result\":";
	struct wr w = {buf, size, 0};

	put(&w, head, sizeof(head) - 1);
	if (write_value(&w, id ? id : json_null(), 1) < 0)
		return 0;
	put(&w, mid, sizeof(mid) - 1);
	if (!result)
		put(&w, "{}", 2);
	else if (write_value(&w, result, 1) < 0)
		return 0;
	put(&w, "}", 1);
	return w.len;
}

char *jtext_dumps(const json_t *v)
{
	char small[512], *out;
	size_t n = jtext_dump(v, small, sizeof(small));

	if (!n)
		return json_dumps(v, JSON_COMPACT);
	if (!(out = malloc(n + 1)))
		return NULL;
	if (n <= sizeof(small))
		memcpy(out, small, n);
	else
		jtext_dump(v, out, n);
	out[n] = 0;
	return out;
}
