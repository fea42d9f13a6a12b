#include "conf.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "events.h"
#include "log.h"
#include "schema.h"

void diag_add(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	char msg[512], *s;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0) {
		if (asprintf(&s, "%s:%d: %s", file, line, msg) < 0)
			return;
	} else if (asprintf(&s, "%s: %s", file, msg) < 0) {
		return;
	}
	if (d->n == d->cap) {
		int cap = d->cap ? d->cap * 2 : 8;
		char **m = realloc(d->msgs, (size_t)cap * sizeof(*m));
		if (!m) {
			free(s);
			return;
		}
		d->msgs = m;
		d->cap = cap;
	}
	d->msgs[d->n++] = s;
}

void diag_free(struct diag *d)
{
	for (int i = 0; i < d->n; i++)
		free(d->msgs[i]);
	free(d->msgs);
	memset(d, 0, sizeof(*d));
}

/* Keys are read by tables so --check-config and docs agree. */
enum key_kind { K_STR, K_INT, K_LONG, K_LEVEL };
struct key_spec {
	const char *key;
	enum key_kind kind;
	size_t off;
	long min, max;
};
static const struct key_spec daemon_keys[] = {
        {"kiosk_id", K_STR, offsetof(struct conf, kiosk_id), 0, 0},
        {"runtime_dir", K_STR, offsetof(struct conf, runtime_dir), 0, 0},
        {"state_dir", K_STR, offsetof(struct conf, state_dir), 0, 0},
        {"plugin_path", K_STR, offsetof(struct conf, plugin_path), 0, 0},
        {"log_level", K_LEVEL, offsetof(struct conf, log_level), 0, 0},
        {"max_clients", K_INT, offsetof(struct conf, max_clients), 1, 4096},
        {"max_line_bytes", K_LONG, offsetof(struct conf, max_line), 256, 64L << 20},
        {"client_buffer_bytes", K_LONG, offsetof(struct conf, client_buffer), 4096, 256L << 20},
        {"admin_group", K_STR, offsetof(struct conf, admin_group), 0, 0},
        {"ui_group", K_STR, offsetof(struct conf, ui_group), 0, 0},
        {"command_timeout_ms", K_INT, offsetof(struct conf, command_timeout_ms), 10, 86400000},
        {"cancel_grace_ms", K_INT, offsetof(struct conf, cancel_grace_ms), 10, 600000},
        {"workers", K_INT, offsetof(struct conf, workers), 1, 64},
        {"reopen_min_ms", K_INT, offsetof(struct conf, reopen_min_ms), 10, 3600000},
        {"reopen_max_ms", K_INT, offsetof(struct conf, reopen_max_ms), 10, 3600000},
        {NULL, 0, 0, 0, 0},
};

static const struct key_spec store_keys[] = {
        {"path", K_STR, offsetof(struct conf, store_path), 0, 0},
        {"key_file", K_STR, offsetof(struct conf, store_key_file), 0, 0},
        {"pii_retention_s", K_INT, offsetof(struct conf, pii_retention_s), 0, 366 * 86400},
        {NULL, 0, 0, 0, 0},
};

#define EP(f) offsetof(struct conf_endpoint, f)
static const struct key_spec endpoint_keys[] = {
        {"url", K_STR, EP(url), 0, 0},
        {"ca_file", K_STR, EP(ca_file), 0, 0},
        {"cert_file", K_STR, EP(cert_file), 0, 0},
        {"key_file", K_STR, EP(key_file), 0, 0},
        {"token_file", K_STR, EP(token_file), 0, 0},
        {"hmac_key_file", K_STR, EP(hmac_key_file), 0, 0},
        {"batch_size", K_INT, EP(batch_size), 1, 10000},
        {"concurrency", K_INT, EP(concurrency), 1, 64},
        {"connect_timeout_ms", K_INT, EP(connect_timeout_ms), 100, 600000},
        {"timeout_ms", K_INT, EP(timeout_ms), 100, 3600000},
        {"low_speed_bytes", K_INT, EP(low_speed_bytes), 0, 1 << 30},
        {"low_speed_time_s", K_INT, EP(low_speed_time_s), 0, 3600},
        {"backoff_min_ms", K_INT, EP(backoff_min_ms), 10, 3600000},
        {"backoff_max_ms", K_INT, EP(backoff_max_ms), 10, 86400000},
        {"startup_delay_ms", K_INT, EP(startup_delay_ms), 0, 3600000},
        {NULL, 0, 0, 0, 0},
};
#undef EP

struct parse {
	struct conf *conf;
	struct diag *diag;
	const char *file;
	int line; /* line of the key being handled, counted by line_reader */
	int bad;
	int skip_section; /* its header was refused: don't repeat it per key */
	FILE *fp;
	const char *str; /* when parsing a string */
};

static void bad(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(struct parse *p, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	diag_add(p->diag, p->file, p->line, "%s", msg);
	p->bad = 1;
}

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s)
{
	if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on") || !strcmp(s, "1"))
		return 1;
	if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "off") || !strcmp(s, "0"))
		return 0;
	return -1;
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
}

/* Set key of the struct at base from the table; where names the section
 * in messages. */
static void table_key(struct parse *p, const struct key_spec *table, void *base, const char *where,
                      const char *key, const char *value)
{
	const struct key_spec *k = table;
	long v;

	while (k->key && strcmp(k->key, key))
		k++;
	if (!k->key) {
		bad(p, "unknown key '%s' in [%s]", key, where);
		return;
	}
	char *field = (char *)base + k->off;
	switch (k->kind) {
	case K_STR:
		if (!*value) {
			bad(p, "%s: empty value", key);
			return;
		}
		set_str((char **)(void *)field, value);
		break;
	case K_LEVEL:
		if ((v = log_level_parse(value)) < 0)
			bad(p, "log_level: '%s' is not one of err, warning, notice, info, debug",
			    value);
		else
			*(int *)(void *)field = (int)v;
		break;
	case K_INT:
	case K_LONG:
		if (parse_long(value, k->min, k->max, &v) < 0) {
			bad(p, "%s: '%s' is not a whole number between %ld and %ld", key, value,
			    k->min, k->max);
			return;
		}
		if (k->kind == K_INT)
			*(int *)(void *)field = (int)v;
		else
			*(long *)(void *)field = v;
		break;
	}
}

static int valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 32)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		      *s == '-'))
			return 0;
	return 1;
}

static struct conf_device *device_get(struct parse *p, const char *name)
{
	struct conf_device **dp = &p->conf->devices;
	for (; *dp; dp = &(*dp)->next)
		if (!strcmp((*dp)->name, name))
			return *dp;
	struct conf_device *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->name = strdup(name);
	d->file = strdup(p->file);
	d->line = p->line;
	d->enabled = 1;
	*dp = d;
	return d;
}

static struct conf_opt *opt_set(struct conf_opt **head, struct parse *p, const char *key,
                                const char *value)
{
	struct conf_opt *o;
	for (o = *head; o; o = o->next)
		if (!strcmp(o->key, key))
			break;
	if (!o) {
		if (!(o = calloc(1, sizeof(*o))))
			return NULL;
		o->key = strdup(key);
		o->next = *head;
		*head = o;
	}
	set_str(&o->value, value);
	set_str(&o->file, p->file);
	o->line = p->line;
	return o;
}

static void device_key(struct parse *p, const char *name, const char *key, const char *value)
{
	struct conf_device *d;
	long v;

	if (!valid_name(name)) {
		bad(p, "device name '%s': use 1-32 of a-z 0-9 _ -", name);
		return;
	}
	if (!(d = device_get(p, name)))
		return;
	if (!strcmp(key, "class")) {
		if (!(d->cls = schema_class_by_name(value)))
			bad(p,
			    "device %s: unknown class '%s' (cardreader, printer, scanner, "
			    "idreader, camera, audio, barcode, locker, sensor, actuator)",
			    name, value);
	} else if (!strcmp(key, "plugin")) {
		if (!*value)
			bad(p, "device %s: empty plugin", name);
		set_str(&d->plugin, value);
		d->plugin_at = opt_set(&d->opts, p, "plugin", value);
	} else if (!strcmp(key, "timeout_ms")) {
		if (parse_long(value, 10, 86400000, &v) < 0)
			bad(p, "device %s: timeout_ms: '%s' is not between 10 and 86400000", name,
			    value);
		else
			d->timeout_ms = (int)v;
	} else if (!strcmp(key, "enabled")) {
		if ((v = parse_bool(value)) < 0)
			bad(p, "device %s: enabled: '%s' is not yes or no", name, value);
		else
			d->enabled = (int)v;
	} else {
		opt_set(&d->opts, p, key, value);
	}
}

static struct conf_endpoint *endpoint_get(struct parse *p, const char *name)
{
	struct conf_endpoint **ep = &p->conf->endpoints;
	for (; *ep; ep = &(*ep)->next)
		if (!strcmp((*ep)->name, name))
			return *ep;
	struct conf_endpoint *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->name = strdup(name);
	e->file = strdup(p->file);
	e->line = p->line;
	e->batch_size = 100;
	e->concurrency = 2;
	e->connect_timeout_ms = 10000;
	e->timeout_ms = 60000;
	e->low_speed_bytes = 100;
	e->low_speed_time_s = 30;
	e->backoff_min_ms = 1000;
	e->backoff_max_ms = 600000;
	e->startup_delay_ms = 30000;
	*ep = e;
	return e;
}

static void endpoint_key(struct parse *p, const char *name, const char *key, const char *value)
{
	struct conf_endpoint *e = endpoint_get(p, name);
	char where[64];

	snprintf(where, sizeof(where), "endpoint %s", name);
	if (e)
		table_key(p, endpoint_keys, e, where, key, value);
}

/* Routes keep file order: the first pattern that matches a type wins. */
static void route_key(struct parse *p, const char *pattern, const char *endpoint)
{
	struct conf_route **rp = &p->conf->routes, *r;

	if (events_pattern_check(pattern) < 0) {
		bad(p, "route '%s': a type pattern is 1-64 of a-z 0-9 _ . - * ?", pattern);
		return;
	}
	for (; *rp; rp = &(*rp)->next)
		if (!strcmp((*rp)->pattern, pattern))
			break;
	if (!(r = *rp)) {
		if (!(r = calloc(1, sizeof(*r))))
			return;
		r->pattern = strdup(pattern);
		*rp = r;
	}
	set_str(&r->endpoint, endpoint);
	set_str(&r->file, p->file);
	r->line = p->line;
}

static int on_key(void *user, const char *section, const char *key, const char *value)
{
	struct parse *p = user;

	if (p->skip_section)
		return 1;
	if (!strcmp(section, "daemon"))
		table_key(p, daemon_keys, p->conf, "daemon", key, value);
	else if (!strcmp(section, "store"))
		table_key(p, store_keys, p->conf, "store", key, value);
	else if (!strncmp(section, "endpoint ", 9))
		endpoint_key(p, section + 9, key, value);
	else if (!strcmp(section, "route"))
		route_key(p, key, value);
	else if (!strncmp(section, "device ", 7))
		device_key(p, section + 7, key, value);
	else if (!*section)
		bad(p, "key '%s' outside any section", key);
	else
		bad(p, "unknown section [%s]", section);
	return 1; /* keep going: report every problem */
}

/* Check a [section] line when it is read: inih never reports a section
 * without keys, and this way a device's file:line is its header. */
static void section_header(struct parse *p, const char *line)
{
	char name[128];
	const char *end;
	size_t n;

	while (*line == ' ' || *line == '\t')
		line++;
	if (*line != '[' || !(end = strchr(line, ']')))
		return;
	line++;
	while (*line == ' ' || *line == '\t')
		line++;
	n = (size_t)(end - line);
	while (n && (line[n - 1] == ' ' || line[n - 1] == '\t'))
		n--;
	snprintf(name, sizeof(name), "%.*s", (int)n, line);
	p->skip_section = 1;
	if (!strcmp(name, "daemon") || !strcmp(name, "store") || !strcmp(name, "route")) {
		p->skip_section = 0;
	} else if (!strncmp(name, "endpoint ", 9)) {
		const char *ep = name + 9;
		while (*ep == ' ')
			ep++;
		if (!valid_name(ep))
			bad(p, "endpoint name '%s': use 1-32 of a-z 0-9 _ -", ep);
		else
			p->skip_section = !endpoint_get(p, ep);
	} else if (!strncmp(name, "device ", 7)) {
		const char *dev = name + 7;
		while (*dev == ' ')
			dev++;
		if (!valid_name(dev))
			bad(p, "device name '%s': use 1-32 of a-z 0-9 _ -", dev);
		else
			p->skip_section = !device_get(p, dev);
	} else {
		bad(p,
		    "unknown section [%s] (expected [daemon], [store], [route], [device NAME] or "
		    "[endpoint NAME])",
		    name);
	}
}

/* inih calls the reader once per line and counts the calls; counting them
 * here too tells the handler which line it is looking at (this inih is
 * built without INI_HANDLER_LINENO).  A line longer than inih's buffer is
 * refused once and the rest of it skipped, so that inih never sees its
 * tail as more lines and both counts stay the same. */
static char *line_reader(char *buf, int size, void *stream)
{
	struct parse *p = stream;
	size_t n;

	if (p->fp) {
		if (!fgets(buf, size, p->fp))
			return NULL;
	} else {
		const char *s = p->str;
		if (!*s)
			return NULL;
		int i = 0;
		while (i < size - 1 && s[i] && s[i] != '\n')
			i++;
		if (i < size - 1 && s[i] == '\n')
			i++;
		memcpy(buf, s, (size_t)i);
		buf[i] = 0;
		p->str = s + i;
	}
	p->line++;
	n = strlen(buf);
	if (n < (size_t)size - 1 || buf[n - 1] == '\n')
		section_header(p, buf);
	if (n == (size_t)size - 1 && buf[n - 1] != '\n') {
		bad(p, "line too long (over %d bytes)", size - 3);
		if (p->fp) {
			int ch;
			while ((ch = getc(p->fp)) != EOF && ch != '\n')
				;
		} else {
			const char *nl = strchr(p->str, '\n');
			p->str = nl ? nl + 1 : p->str + strlen(p->str);
		}
	}
	return buf;
}

static void parse_one(struct parse *p, const char *file, FILE *fp, const char *str)
{
	int rc;

	p->file = file;
	p->fp = fp;
	p->str = str;
	p->line = 0;
	rc = ini_parse_stream(line_reader, p, on_key, p);
	if (rc > 0) {
		diag_add(p->diag, file, rc, "syntax error (expected [section] or key = value)");
		p->bad = 1;
	} else if (rc < 0) {
		diag_add(p->diag, file, 0, "cannot read: %s", rc == -2 ? "out of memory" : "error");
		p->bad = 1;
	}
}

static void parse_file(struct parse *p, const char *path)
{
	FILE *fp = fopen(path, "re");
	struct stat st;

	if (!fp) {
		diag_add(p->diag, path, 0, "cannot open: %s", strerror(errno));
		p->bad = 1;
		return;
	}
	if (fstat(fileno(fp), &st) < 0 || !S_ISREG(st.st_mode)) {
		diag_add(p->diag, path, 0, "cannot read: not a regular file");
		p->bad = 1;
		fclose(fp);
		return;
	}
	parse_one(p, path, fp, NULL);
	fclose(fp);
}

static int dropin_seen(char *const *paths, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(strrchr(paths[i], '/') + 1, name))
			return 1;
	return 0;
}

static int conf_name_cmp(const void *a, const void *b)
{
	const char *x = strrchr(*(char *const *)a, '/'), *y = strrchr(*(char *const *)b, '/');
	int c = strcmp(x, y);
	return c ? c : strcmp(*(char *const *)a, *(char *const *)b);
}

/* Drop-ins from <dir>/kioskd.conf.d/ and <dir>/conf.d/, merged and read
 * in lexical order of their file names, like systemd's: a file name found
 * in both directories is read once, from kioskd.conf.d/. */
static void parse_dropins(struct parse *p, const char *main_path)
{
	static const char *const subdirs[] = {"kioskd.conf.d", "conf.d"};
	char dir[PATH_MAX], *paths[512];
	const char *slash = strrchr(main_path, '/');
	int n = 0;

	for (size_t s = 0; s < 2; s++) {
		if (slash)
			snprintf(dir, sizeof(dir), "%.*s/%s", (int)(slash - main_path), main_path,
			         subdirs[s]);
		else
			snprintf(dir, sizeof(dir), "%s", subdirs[s]);
		DIR *dp = opendir(dir);
		struct dirent *de;
		while (dp && (de = readdir(dp)) && n < 512) {
			size_t len = strlen(de->d_name);
			if (de->d_name[0] == '.' || len < 6 ||
			    strcmp(de->d_name + len - 5, ".conf"))
				continue;
			if (dropin_seen(paths, n, de->d_name))
				continue;
			if (asprintf(&paths[n], "%s/%s", dir, de->d_name) >= 0)
				n++;
		}
		if (dp)
			closedir(dp);
	}
	qsort(paths, (size_t)n, sizeof(paths[0]), conf_name_cmp);
	for (int i = 0; i < n; i++) {
		parse_file(p, paths[i]);
		free(paths[i]);
	}
}

static void conf_defaults(struct conf *c)
{
	/* runtime_dir and state_dir stay NULL unless set: daemon_dirs() then
	 * picks the command line, systemd's environment or the defaults */
	c->plugin_path = strdup(KIOSKD_PLUGINDIR);
	c->log_level = LOG_INFO;
	c->max_clients = 64;
	c->max_line = 1L << 20;
	c->client_buffer = 4L << 20;
	c->command_timeout_ms = 30000;
	c->cancel_grace_ms = 2000;
	c->workers = 2;
	c->reopen_min_ms = 500;
	c->store_path = strdup("kioskd.db");
	c->pii_retention_s = 30 * 86400;
	c->reopen_max_ms = 60000;
}

static void conf_finish(struct parse *p)
{
	struct conf *c = p->conf;

	if (c->reopen_min_ms > c->reopen_max_ms) {
		diag_add(p->diag, c->path, 0, "reopen_min_ms (%d) is above reopen_max_ms (%d)",
		         c->reopen_min_ms, c->reopen_max_ms);
		p->bad = 1;
	}
	for (struct conf_endpoint *e = c->endpoints; e; e = e->next) {
		/* TLS verification is not optional, so neither is https */
		if (!e->url || strncmp(e->url, "https://", 8) || !e->url[8]) {
			diag_add(p->diag, e->file, e->line,
			         "endpoint %s: 'url' must be an https:// URL", e->name);
			p->bad = 1;
		}
		if (!e->cert_file != !e->key_file) {
			diag_add(p->diag, e->file, e->line,
			         "endpoint %s: cert_file and key_file go together", e->name);
			p->bad = 1;
		}
		if (e->backoff_min_ms > e->backoff_max_ms) {
			diag_add(p->diag, e->file, e->line,
			         "endpoint %s: backoff_min_ms is above backoff_max_ms", e->name);
			p->bad = 1;
		}
	}
	for (struct conf_route *r = c->routes; r; r = r->next) {
		if (!conf_endpoint_find(c, r->endpoint)) {
			diag_add(p->diag, r->file, r->line, "route %s: no [endpoint %s]",
			         r->pattern, r->endpoint);
			p->bad = 1;
		}
	}
	for (struct conf_device *d = c->devices; d; d = d->next) {
		if (!d->cls) {
			diag_add(p->diag, d->file, d->line, "device %s: no valid 'class'", d->name);
			p->bad = 1;
		}
		if (!d->plugin) {
			diag_add(p->diag, d->file, d->line, "device %s: no 'plugin'", d->name);
			p->bad = 1;
		}
	}
}

static struct conf *conf_parse(const char *name, const char *text, struct diag *diag, int partial)
{
	struct parse p = {.diag = diag};

	if (!(p.conf = calloc(1, sizeof(*p.conf))))
		return NULL;
	conf_defaults(p.conf);
	p.conf->path = strdup(name);
	if (text) {
		parse_one(&p, name, NULL, text);
	} else {
		parse_file(&p, name);
		if (!p.bad || diag->n == 0 || !strstr(diag->msgs[diag->n - 1], "cannot "))
			parse_dropins(&p, name);
	}
	conf_finish(&p);
	if (p.bad && !partial) {
		conf_free(p.conf);
		return NULL;
	}
	return p.conf;
}

struct conf *conf_load(const char *path, struct diag *diag)
{
	return conf_parse(path, NULL, diag, 0);
}

struct conf *conf_load_partial(const char *path, struct diag *diag)
{
	return conf_parse(path, NULL, diag, 1);
}

struct conf *conf_load_string(const char *name, const char *text, struct diag *diag)
{
	return conf_parse(name, text, diag, 0);
}

static void opts_free(struct conf_opt *o)
{
	while (o) {
		struct conf_opt *next = o->next;
		free(o->key);
		free(o->value);
		free(o->file);
		free(o);
		o = next;
	}
}

void conf_free(struct conf *c)
{
	if (!c)
		return;
	for (struct conf_device *d = c->devices, *next; d; d = next) {
		next = d->next;
		conf_device_free(d);
	}
	for (struct conf_endpoint *e = c->endpoints, *next; e; e = next) {
		next = e->next;
		free(e->name);
		free(e->file);
		free(e->url);
		free(e->ca_file);
		free(e->cert_file);
		free(e->key_file);
		free(e->token_file);
		free(e->hmac_key_file);
		free(e);
	}
	for (struct conf_route *r = c->routes, *next; r; r = next) {
		next = r->next;
		free(r->pattern);
		free(r->endpoint);
		free(r->file);
		free(r);
	}
	free(c->kiosk_id);
	free(c->store_path);
	free(c->store_key_file);
	free(c->path);
	free(c->runtime_dir);
	free(c->state_dir);
	free(c->plugin_path);
	free(c->admin_group);
	free(c->ui_group);
	free(c);
}

const struct conf_endpoint *conf_endpoint_find(const struct conf *c, const char *name)
{
	for (const struct conf_endpoint *e = c->endpoints; e; e = e->next)
		if (!strcmp(e->name, name))
			return e;
	return NULL;
}

const char *conf_route(const struct conf *c, const char *type)
{
	for (const struct conf_route *r = c->routes; r; r = r->next)
		if (fnmatch(r->pattern, type, 0) == 0)
			return r->endpoint;
	return NULL;
}

const struct conf_device *conf_device_find(const struct conf *c, const char *name)
{
	for (const struct conf_device *d = c->devices; d; d = d->next)
		if (!strcmp(d->name, name))
			return d;
	return NULL;
}

const char *conf_device_opt(const struct conf_device *d, const char *key)
{
	for (const struct conf_opt *o = d->opts; o; o = o->next)
		if (!strcmp(o->key, key))
			return o->value;
	return NULL;
}

static struct conf_opt *opts_dup(const struct conf_opt *o)
{
	struct conf_opt *head = NULL, **tail = &head;
	for (; o; o = o->next) {
		struct conf_opt *n = calloc(1, sizeof(*n));
		if (!n)
			break;
		n->key = strdup(o->key);
		n->value = strdup(o->value);
		n->file = strdup(o->file);
		n->line = o->line;
		*tail = n;
		tail = &n->next;
	}
	return head;
}

struct conf_device *conf_device_dup(const struct conf_device *d)
{
	struct conf_device *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	*n = *d;
	n->name = strdup(d->name);
	n->file = strdup(d->file);
	n->plugin = d->plugin ? strdup(d->plugin) : NULL;
	n->opts = opts_dup(d->opts);
	n->plugin_at = NULL;
	n->next = NULL;
	return n;
}

void conf_device_free(struct conf_device *d)
{
	if (!d)
		return;
	free(d->name);
	free(d->file);
	free(d->plugin);
	opts_free(d->opts);
	free(d);
}

static int opts_subset(const struct conf_opt *a, const struct conf_device *b)
{
	for (; a; a = a->next) {
		const char *v = conf_device_opt(b, a->key);
		if (!v || strcmp(v, a->value))
			return 0;
	}
	return 1;
}

int conf_device_equal(const struct conf_device *a, const struct conf_device *b)
{
	return a->cls == b->cls && !strcmp(a->plugin, b->plugin) && a->enabled == b->enabled &&
	       a->timeout_ms == b->timeout_ms && opts_subset(a->opts, b) && opts_subset(b->opts, a);
}
