/* The plugin loader: find <name>.so on the plugin path, dlopen it, check
 * its descriptor against the ABI, and refuse it with one clear log line
 * when it does not fit. */
#ifndef KIOSKD_PLUGIN_H
#define KIOSKD_PLUGIN_H

#include <stddef.h>

#include "conf.h"
#include "kiosk/hal.h"

struct plugin {
	char *name;
	char *path;
	void *dl;
	const struct kiosk_plugin *desc; /* NULL when refused */
	char why[256];                   /* why it was refused */
	struct plugin *next;
};

/* The loaded plugin for name (a bare name searched on search_path, a
 * colon-separated list, or a path to a .so).  Loads it once; refusals are
 * remembered and logged once.  NULL with why filled in. */
const struct plugin *plugin_get(const char *name, const char *search_path, char *why,
                                size_t whylen);
/* Check a device section against its plugin: class served, option keys
 * known, values of the right type and range.  Problems go to diag. */
int plugin_check_device(const struct plugin *p, const struct conf_device *d, struct diag *diag);
/* The option's default text, or NULL. */
const char *plugin_option_default(const struct plugin *p, const char *key);
void plugin_unload_all(void);
/* build/hal beside build/kioskd: searched after the plugin path. */
int plugin_dir_beside_binary(char *out, size_t outlen);

#ifdef KIOSKD_FUZZING
/* A plugin linked into the fuzzer, then found under name as if loaded. */
void plugin_register_builtin(const char *name, const struct kiosk_plugin *desc);
#endif

#endif
