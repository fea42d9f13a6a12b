/*
 * sim_printer.c -- a simulated receipt printer: a paper roll measured in
 * lines, a cover, jams.  A document is rendered to plain text at `width`
 * columns (CJK characters take two, as on a real receipt head) and one
 * line of paper is used per rendered line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

struct printer {
	long long cap, left; /* paper, in lines */
	int width;
	int cover_open, jammed;
	long long jobs;
	json_t *lines;  /* the job being printed */
	json_t *result; /* a document job's result, staged */
};

static struct printer *printer(struct sim *s)
{
	return s->priv;
}

/* "low" is below 10% of a full roll, rounded up so small rolls have one. */
static long long low_mark(const struct printer *p)
{
	return (p->cap + 9) / 10;
}

static const char *paper_state(const struct printer *p)
{
	return p->left == 0 ? "out" : p->left < low_mark(p) ? "low" : "ok";
}

static json_t *paper_json(const struct printer *p)
{
	return json_pack("{s:I}", "paper_lines_left", (json_int_t)p->left);
}

/* --- rendering --- */

/* Columns a code point takes on a receipt head: East Asian wide and
 * fullwidth ranges take two. */
static int cp_width(uint32_t c)
{
	if (c < 0x20)
		return 0;
	if ((c >= 0x1100 && c <= 0x115f) || (c >= 0x2e80 && c <= 0xa4cf) ||
	    (c >= 0xac00 && c <= 0xd7a3) || (c >= 0xf900 && c <= 0xfaff) ||
	    (c >= 0xfe30 && c <= 0xfe4f) || (c >= 0xff00 && c <= 0xff60) ||
	    (c >= 0xffe0 && c <= 0xffe6) || (c >= 0x20000 && c <= 0x3fffd))
		return 2;
	return 1;
}

/* jansson strings are valid UTF-8, so no error handling is needed. */
static const char *utf8_next(const char *p, uint32_t *cp)
{
	const unsigned char *u = (const unsigned char *)p;
	int n = u[0] < 0x80 ? 0 : u[0] < 0xe0 ? 1 : u[0] < 0xf0 ? 2 : 3;

	*cp = n == 0 ? u[0] : (uint32_t)(u[0] & (0x3f >> n));
	for (int i = 1; i <= n; i++)
		*cp = *cp << 6 | (u[i] & 0x3f);
	return p + n + 1;
}

static void add_line(json_t *lines, const char *p, size_t n, int cols, const char *align, int width)
{
	int pad = cols < width ? width - cols : 0;
	char *buf;

	if (!align || strcmp(align, "left") == 0)
		pad = 0;
	else if (strcmp(align, "center") == 0)
		pad /= 2;
	if (!(buf = malloc((size_t)pad + n + 1)))
		return;
	memset(buf, ' ', (size_t)pad);
	memcpy(buf + pad, p, n);
	json_array_append_new(lines, json_stringn(buf, (size_t)pad + n));
	free(buf);
}

/* Wrap at width columns, never inside a character; '\n' breaks a line and
 * a final '\n' adds no empty line. */
static void add_text(json_t *lines, const char *text, const char *align, int width)
{
	const char *start = text, *p = text;
	int cols = 0;

	for (;;) {
		uint32_t cp;
		const char *q;
		if (*p == '\0' || *p == '\n') {
			add_line(lines, start, (size_t)(p - start), cols, align, width);
			if (*p == '\0' || p[1] == '\0')
				return;
			start = ++p;
			cols = 0;
			continue;
		}
		q = utf8_next(p, &cp);
		if (cols > 0 && cols + cp_width(cp) > width) {
			add_line(lines, start, (size_t)(p - start), cols, align, width);
			start = p;
			cols = 0;
		}
		cols += cp_width(cp);
		p = q;
	}
}

static void add_formatted(json_t *lines, json_t *str, const char *align, int width)
{
	if (str)
		add_text(lines, json_string_value(str), align, width);
	json_decref(str);
}

static int add_block(struct sim *s, json_t *lines, json_t *b, char *why, size_t whylen)
{
	const char *align = json_string_value(json_object_get(b, "align"));
	int width = printer(s)->width;
	json_t *v;

	if ((v = json_object_get(b, "text"))) {
		add_text(lines, json_string_value(v), align, width);
	} else if ((v = json_object_get(b, "qr"))) {
		add_formatted(lines, json_sprintf("[QR: %s]", json_string_value(v)), align, width);
	} else if ((v = json_object_get(b, "barcode"))) {
		const char *sym = json_string_value(json_object_get(b, "symbology"));
		add_formatted(lines,
		              json_sprintf("[BARCODE %s: %s]", sym ? sym : "code128",
		                           json_string_value(v)),
		              align, width);
	} else if ((v = json_object_get(b, "image"))) {
		if (!sim_blob_exists(s, json_string_value(v))) {
			snprintf(why, whylen, "image %.8s: no such blob", json_string_value(v));
			return -1;
		}
		add_formatted(lines, json_sprintf("[IMAGE %.8s]", json_string_value(v)), align,
		              width);
	} else if ((v = json_object_get(b, "feed"))) {
		for (json_int_t i = 0; i < json_integer_value(v); i++)
			json_array_append_new(lines, json_string(""));
	} else if (json_object_get(b, "cut")) {
		json_array_append_new(lines, json_string("-------- cut --------"));
	}
	return 0;
}

static json_t *render(struct sim *s, json_t *blocks, char *why, size_t whylen)
{
	json_t *lines = json_array(), *b;
	size_t i;

	json_array_foreach(blocks, i, b)
	{
		if (add_block(s, lines, b, why, whylen) < 0) {
			json_decref(lines);
			return NULL;
		}
	}
	return lines;
}

static json_t *join_lines(json_t *lines)
{
	size_t i, n = 0;
	json_t *l, *text;
	char *buf, *p;

	json_array_foreach(lines, i, l) n += json_string_length(l) + 1;
	if (!(p = buf = malloc(n + 1)))
		return json_null();
	json_array_foreach(lines, i, l)
	{
		memcpy(p, json_string_value(l), json_string_length(l));
		p += json_string_length(l);
		*p++ = '\n';
	}
	text = json_stringn(buf, n);
	free(buf);
	return text;
}

/* --- printing --- */

/* Uses up to n lines; emits paper_low/paper_out on the way down.
 * Returns the lines actually printed. */
static long long use_paper(struct sim *s, struct printer *p, long long n)
{
	long long before = p->left, used = n < p->left ? n : p->left;

	p->left -= used;
	if (before >= low_mark(p) && p->left < low_mark(p)) {
		sim_log(s, "paper low");
		sim_emit(s, "paper_low", paper_json(p));
	}
	if (before > 0 && p->left == 0) {
		sim_log(s, "paper out");
		sim_emit(s, "paper_out", paper_json(p));
	}
	return used;
}

static void print_done(struct sim *s)
{
	struct printer *p = printer(s);
	long long want = (long long)json_array_size(p->lines), got;

	/* the state can change while the job runs (injected jam, cover) */
	if (p->jammed) {
		sim_fail(s, "device_error", "paper jam");
		return;
	}
	if (p->cover_open) {
		sim_fail(s, "device_error", "cover opened during print");
		return;
	}
	if ((got = use_paper(s, p, want)) < want) {
		sim_fail(s, "device_error", "paper ran out after %lld of %lld lines", got, want);
		return;
	}
	p->jobs++;
	sim_emit(s, "printed", json_pack("{s:I}", "lines", (json_int_t)want));
	sim_reply(s,
	          json_pack("{s:I,s:o}", "lines", (json_int_t)want, "text", join_lines(p->lines)));
}

/* --- documents: an A4 job simulated as sent and printed at once --- */

/* The type by the leading bytes, as the cups plugin detects it. */
static const char *doc_format(const unsigned char *d, size_t n)
{
	if (n >= 5 && memcmp(d, "%PDF-", 5) == 0)
		return "application/pdf";
	if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
		return "image/png";
	if (n >= 3 && memcmp(d, "\xff\xd8\xff", 3) == 0)
		return "image/jpeg";
	return NULL;
}

static void document_done(struct sim *s)
{
	struct printer *p = printer(s);
	json_t *res = p->result;

	p->result = NULL;
	if (p->jammed || p->cover_open) {
		json_decref(res);
		sim_fail(s, "device_error", p->jammed ? "paper jam" : "cover opened during print");
		return;
	}
	p->jobs++;
	sim_emit(s, "job_state",
	         json_pack("{s:O,s:s}", "job_id", json_object_get(res, "job_id"), "state",
	                   "completed"));
	sim_reply(s, res);
}

static void do_document(struct sim *s, json_t *args)
{
	struct printer *p = printer(s);
	const char *id = json_string_value(json_object_get(args, "document"));
	json_t *copies = json_object_get(args, "copies");
	const char *fmt;
	void *data = NULL;
	size_t len = 0;

	if (s->host->blob_get(s->dev, id, &data, &len) < 0) {
		sim_fail_after(s, 0, "bad_request", "document %.8s: no such blob", id);
		return;
	}
	fmt = doc_format(data, len);
	free(data);
	if (!fmt) {
		sim_fail_after(s, 0, "bad_request", "document %.8s is not a PDF, PNG or JPEG", id);
		return;
	}
	if (p->cover_open || p->jammed) {
		sim_fail_after(s, 0, p->jammed ? "device_error" : "device_offline",
		               p->jammed ? "paper jam" : "cover open");
		return;
	}
	p->result = json_pack("{s:I,s:s,s:s,s:I,s:I}", "job_id", (json_int_t)p->jobs + 1, "state",
	                      "completed", "format", fmt, "bytes", (json_int_t)len, "copies",
	                      (json_int_t)(copies ? json_integer_value(copies) : 1));
	sim_step(s, s->latency_ms, document_done);
}

static void do_print(struct sim *s, json_t *args)
{
	struct printer *p = printer(s);
	char why[160];

	if (json_object_get(args, "document")) {
		do_document(s, args);
		return;
	}
	if (!(p->lines = render(s, json_object_get(args, "blocks"), why, sizeof(why)))) {
		sim_fail_after(s, 0, "bad_request", "%s", why);
		return;
	}
	if (p->cover_open)
		sim_fail_after(s, 0, "device_offline", "cover open");
	else if (p->left == 0)
		sim_fail_after(s, 0, "device_offline", "paper out");
	else if (p->jammed)
		sim_fail_after(s, 0, "device_error", "paper jam");
	else
		sim_step(s, s->latency_ms, print_done);
}

/* --- injects: each emits its event only when the state changes --- */

static void set_paper(struct sim *s, long long left)
{
	struct printer *p = printer(s);
	const char *before = paper_state(p);

	p->left = left;
	if (strcmp(before, paper_state(p)) == 0)
		return;
	sim_log(s, "paper %s", paper_state(p));
	sim_emit(s,
	         strcmp(paper_state(p), "ok") == 0 ? "paper_ok"
	         : p->left                         ? "paper_low"
	                                           : "paper_out",
	         paper_json(p));
}

static int inj_paper_low(struct sim *s, json_t *args, char *why, size_t whylen)
{
	long long mark = low_mark(printer(s));

	(void)args, (void)why, (void)whylen;
	set_paper(s, mark > 1 ? mark - 1 : 1);
	return 0;
}

static int inj_paper_out(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	set_paper(s, 0);
	return 0;
}

static int inj_paper_ok(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	set_paper(s, printer(s)->cap);
	return 0;
}

/* Flip a flag; emit ev_on/ev_off when it changed. */
static void set_flag(struct sim *s, int *flag, int on, const char *ev_on, const char *ev_off)
{
	if (*flag == on)
		return;
	*flag = on;
	sim_log(s, "%s", on ? ev_on : ev_off);
	sim_emit(s, on ? ev_on : ev_off, NULL);
}

static int inj_cover_open(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	set_flag(s, &printer(s)->cover_open, 1, "cover_open", "cover_closed");
	return 0;
}

static int inj_cover_close(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	set_flag(s, &printer(s)->cover_open, 0, "cover_open", "cover_closed");
	return 0;
}

static int inj_jam(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	set_flag(s, &printer(s)->jammed, 1, "jam", "jam_cleared");
	return 0;
}

static int inj_clear(struct sim *s, json_t *args, char *why, size_t whylen)
{
	(void)args, (void)why, (void)whylen;
	set_flag(s, &printer(s)->jammed, 0, "jam", "jam_cleared");
	return 0;
}

/* --- class --- */

static int printer_open(struct sim *s, char *why, size_t whylen)
{
	struct printer *p;

	if (!(p = calloc(1, sizeof(*p)))) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	p->cap = p->left = sim_opt_int(s, "paper_lines", 2000);
	p->width = (int)sim_opt_int(s, "width", 32);
	s->priv = p;
	return 0;
}

static void printer_reset(struct sim *s)
{
	struct printer *p = printer(s);

	json_decref(p->lines);
	p->lines = NULL;
	json_decref(p->result);
	p->result = NULL;
}

static void printer_close(struct sim *s)
{
	printer_reset(s);
	free(s->priv);
	s->priv = NULL;
}

static json_t *printer_status(struct sim *s)
{
	struct printer *p = printer(s);

	return json_pack("{s:s,s:I,s:s,s:b,s:I,s:i}", "paper", paper_state(p), "paper_lines_left",
	                 (json_int_t)p->left, "cover", p->cover_open ? "open" : "closed", "jammed",
	                 p->jammed, "printed_jobs", (json_int_t)p->jobs, "width", p->width);
}

static const struct sim_verb verbs[] = {
        {"print", do_print},
        {NULL, NULL},
};

static const struct sim_inject injects[] = {
        {"paper_low", inj_paper_low},
        {"paper_out", inj_paper_out},
        {"paper_ok", inj_paper_ok},
        {"cover_open", inj_cover_open},
        {"cover_close", inj_cover_close},
        {"jam", inj_jam},
        {"clear", inj_clear},
        {NULL, NULL},
};

const struct sim_class sim_printer = {
        .cls = KIOSK_CLASS_PRINTER,
        .name = "printer",
        .open = printer_open,
        .close = printer_close,
        .reset = printer_reset,
        .status = printer_status,
        .verbs = verbs,
        .injects = injects,
};
