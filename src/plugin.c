#include "plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "schema.h"

static struct plugin *plugins;

/* The fields of ABI 1.0: a descriptor smaller than this cannot be read. */
#define KIOSK_PLUGIN_SIZE_1_0 (offsetof(struct kiosk_plugin, inject) + sizeof(void *))

/* A build tree keeps plugins in build/hal/ beside build/kioskd: look there
 * last, so './kioskd --config conf/kioskd.conf' works uninstalled. */
int plugin_dir_beside_binary(char *out, size_t outlen)
{
	char exe[PATH_MAX / 2];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n <= 0)
		return -1;
	exe[n] = 0;
	if (!(slash = strrchr(exe, '/')))
		return -1;
	*slash = 0;
	snprintf(out, outlen, "%s/hal", exe);
	return 0;
}

static int find_beside_binary(const char *name, char *out, size_t outlen)
{
	char dir[PATH_MAX / 2];

	if (plugin_dir_beside_binary(dir, sizeof(dir)) < 0)
		return -1;
	snprintf(out, outlen, "%s/%s.so", dir, name);
	return access(out, R_OK);
}

static int find_file(const char *name, const char *search_path, char *out, size_t outlen)
{
	if (strchr(name, '/')) {
		snprintf(out, outlen, "%s", name);
		return access(out, R_OK);
	}
	char *copy = strdup(search_path ? search_path : ""), *save = NULL;
	int rc = -1;
	for (char *dir = strtok_r(copy, ":", &save); dir && rc < 0;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(out, outlen, "%s/%s.so", dir, name);
		rc = access(out, R_OK);
	}
	free(copy);
	if (rc < 0)
		rc = find_beside_binary(name, out, outlen);
	return rc;
}

static int check_desc(const struct kiosk_plugin *d, char *why, size_t len)
{
	if (d->magic != KIOSK_HAL_MAGIC) {
		snprintf(why, len, "bad magic 0x%08x (not a kioskd plugin)", d->magic);
		return -1;
	}
	if (d->abi_major != KIOSK_HAL_ABI_MAJOR) {
		snprintf(why, len, "built for plugin ABI %u.%u, this kioskd speaks %d.x",
		         d->abi_major, d->abi_minor, KIOSK_HAL_ABI_MAJOR);
		return -1;
	}
	if (d->struct_size < KIOSK_PLUGIN_SIZE_1_0) {
		snprintf(why, len, "descriptor is %u bytes, ABI 1.0 needs at least %zu",
		         d->struct_size, KIOSK_PLUGIN_SIZE_1_0);
		return -1;
	}
	if (!d->name || !d->version) {
		snprintf(why, len, "descriptor has no name or version");
		return -1;
	}
	const char *missing = !d->open      ? "open"
	                      : !d->close   ? "close"
	                      : !d->command ? "command"
	                      : !d->cancel  ? "cancel"
	                      : !d->status  ? "status"
	                                    : NULL;
	if (missing) {
		snprintf(why, len, "entry point %s() is missing", missing);
		return -1;
	}
	if (!d->classes || (d->classes & ~KIOSK_CLASS_ALL)) {
		snprintf(why, len, "serves unknown device classes (mask 0x%x)", d->classes);
		return -1;
	}
	return 0;
}

static void plugin_load(struct plugin *p, const char *search_path)
{
	char path[PATH_MAX];
	const struct kiosk_plugin *d;

	if (find_file(p->name, search_path, path, sizeof(path)) < 0) {
		snprintf(p->why, sizeof(p->why), "not found in %s",
		         strchr(p->name, '/') ? p->name : search_path);
		return;
	}
	p->path = strdup(path);
	if (!(p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
		snprintf(p->why, sizeof(p->why), "cannot load: %s", dlerror());
		return;
	}
	if (!(d = dlsym(p->dl, KIOSK_HAL_SYMBOL))) {
		snprintf(p->why, sizeof(p->why), "does not export %s", KIOSK_HAL_SYMBOL);
		return;
	}
	if (check_desc(d, p->why, sizeof(p->why)) < 0)
		return;
	if (d->init && d->init(host_table()) != 0) {
		snprintf(p->why, sizeof(p->why), "its init() failed");
		return;
	}
	p->desc = d;
	log_info("plugin %s %s loaded from %s", d->name, d->version, path);
}

const struct plugin *plugin_get(const char *name, const char *search_path, char *why, size_t whylen)
{
	struct plugin *p;

	for (p = plugins; p; p = p->next)
		if (!strcmp(p->name, name))
			break;
	if (!p) {
		if (!(p = calloc(1, sizeof(*p))) || !(p->name = strdup(name))) {
			free(p);
			snprintf(why, whylen, "out of memory");
			return NULL;
		}
		plugin_load(p, search_path);
		if (!p->desc) {
			log_err("plugin %s refused: %s", p->path ? p->path : name, p->why);
			if (p->dl)
				dlclose(p->dl);
			p->dl = NULL;
		}
		p->next = plugins;
		plugins = p;
	}
	if (!p->desc) {
		snprintf(why, whylen, "plugin %s refused: %s", name, p->why);
		return NULL;
	}
	return p;
}

static const struct kiosk_option *option_find(const struct plugin *p, const char *key)
{
	for (const struct kiosk_option *o = p->desc->options; o && o->key; o++)
		if (!strcmp(o->key, key))
			return o;
	return NULL;
}

const char *plugin_option_default(const struct plugin *p, const char *key)
{
	const struct kiosk_option *o = option_find(p, key);
	return o ? o->def : NULL;
}

static int check_value(const struct kiosk_option *o, const char *v, char *why, size_t len)
{
	char *end;
	double x;

	switch (o->type) {
	case KIOSK_OPT_STRING:
		return 0;
	case KIOSK_OPT_BOOL:
		if (!strcmp(v, "yes") || !strcmp(v, "no") || !strcmp(v, "true") ||
		    !strcmp(v, "false") || !strcmp(v, "on") || !strcmp(v, "off") ||
		    !strcmp(v, "1") || !strcmp(v, "0"))
			return 0;
		snprintf(why, len, "'%s' is not yes or no", v);
		return -1;
	case KIOSK_OPT_INT:
	case KIOSK_OPT_DOUBLE:
		errno = 0;
		x = o->type == KIOSK_OPT_INT ? (double)strtoll(v, &end, 10) : strtod(v, &end);
		if (errno || end == v || *end || !isfinite(x)) {
			snprintf(why, len, "'%s' is not a %s", v,
			         o->type == KIOSK_OPT_INT ? "whole number" : "number");
			return -1;
		}
		if (o->min != o->max && (x < o->min || x > o->max)) {
			snprintf(why, len, "%s is out of range (%g..%g)", v, o->min, o->max);
			return -1;
		}
		return 0;
	}
	snprintf(why, len, "option has an unknown type");
	return -1;
}

int plugin_check_device(const struct plugin *p, const struct conf_device *d, struct diag *diag)
{
	char why[256];
	int bad = 0;

	if (!(p->desc->classes & d->cls)) {
		diag_add(diag, d->file, d->line, "device %s: plugin %s does not serve class %s",
		         d->name, p->name, schema_class_name(d->cls));
		bad = 1;
	}
	for (const struct conf_opt *o = d->opts; o; o = o->next) {
		if (!strcmp(o->key, "plugin"))
			continue;
		const struct kiosk_option *opt = option_find(p, o->key);
		if (!opt) {
			diag_add(diag, o->file, o->line,
			         "device %s: unknown option '%s' for plugin %s", d->name, o->key,
			         p->name);
			bad = 1;
		} else if (check_value(opt, o->value, why, sizeof(why)) < 0) {
			diag_add(diag, o->file, o->line, "device %s: %s: %s", d->name, o->key, why);
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}

void plugin_unload_all(void)
{
	while (plugins) {
		struct plugin *p = plugins;
		plugins = p->next;
		if (p->desc && p->desc->fini)
			p->desc->fini();
		/* keep the code mapped: a plugin may have registered atexit()
		 * handlers or threads of a vendor library; unmapping is not worth
		 * that risk at exit */
		free(p->name);
		free(p->path);
		free(p);
	}
}

#ifdef KIOSKD_FUZZING
void plugin_register_builtin(const char *name, const struct kiosk_plugin *desc)
{
	struct plugin *p = calloc(1, sizeof(*p));
	p->name = strdup(name);
	p->desc = desc;
	p->next = plugins;
	plugins = p;
}
#endif
