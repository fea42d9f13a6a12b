/*
 * sane_plugin.c -- the `sane` plugin: any SANE-supported document scanner
 * as a kioskd scanner.
 *
 * libsane blocks (sane_open() can take seconds on a USB scanner), so
 * open() only starts a connect job and says yes; a scan that arrives
 * before the job is back waits for it, and a failed connect is reported
 * with host->lost(), so the core reopens with its backoff.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sane_plugin.h"

#define SANE_LIBRARY "libsane.so.1"

static const struct kiosk_option sane_options_table[] = {
        {"device", KIOSK_OPT_STRING, "", 0, 0,
         "SANE device name (scanimage -L), empty = the first scanner found"},
        {"sane_options", KIOSK_OPT_STRING, "", 0, 0,
         "backend options set after open and before every scan: name=value, name=value"},
        {"png_level", KIOSK_OPT_INT, "6", 0, 9,
         "zlib level of the PNG pages (6 = libpng's default, as scanimage)"},
        {NULL},
};

static struct sctx *ctx(struct kiosk_dev *dev, const struct kiosk_host *host)
{
	return host->priv(dev);
}

static const struct kiosk_host *g_host; /* for entry points that get no host */

static void job_connect(void *arg)
{
	struct sctx *c = arg;

	sdev_connect(c->want, &c->kvs, &c->h, c->name, sizeof(c->name), &c->info, &c->err);
}

static void done_connect(void *arg)
{
	struct sctx *c = arg;
	json_t *args = c->args;

	if (c->err.code) {
		/* the core fails a waiting scan, closes and reopens with backoff;
		 * c is gone after lost() */
		c->host->lost(c->dev, c->err.why);
		return;
	}
	c->connected = 1;
	c->host->log(c->dev, KIOSK_LOG_INFO, "opened SANE device %s", c->name);
	if (c->req) {
		c->args = NULL;
		sane_scan_begin(c, c->req, args);
		json_decref(args);
	}
}

static int sane_open_dev(struct kiosk_dev *dev, const struct kiosk_host *host, char *why,
                         size_t whylen)
{
	struct sctx *c = calloc(1, sizeof(*c));

	if (!c) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	c->dev = dev;
	c->host = host;
	snprintf(c->want, sizeof(c->want), "%s", host->config(dev, "device"));
	c->level = atoi(host->config(dev, "png_level"));
	if (sane_opts_parse(host->config(dev, "sane_options"), &c->kvs, why, whylen) < 0) {
		free(c);
		return -1;
	}
	host->set_priv(dev, c);
	if (host->run_blocking(dev, job_connect, done_connect, c) < 0) {
		snprintf(why, whylen, "no worker thread for the scanner");
		sane_opts_free(&c->kvs);
		free(c);
		return -1;
	}
	return 0;
}

static void job_close(void *arg)
{
	sdev_close(arg);
}

static void done_close(void *arg)
{
	(void)arg;
}

static void sane_close_dev(struct kiosk_dev *dev)
{
	struct sctx *c = ctx(dev, g_host);

	if (!c)
		return;
	/* the core closes only when no job of the device runs; the handle
	 * is released on a worker, or here when the pool is already stopping
	 * (daemon exit, where nothing else waits on the loop) */
	if (c->h && c->host->run_blocking(dev, job_close, done_close, c->h) < 0)
		sdev_close(c->h);
	sane_scan_reset(c);
	json_decref(c->args);
	json_decref(c->info);
	sane_opts_free(&c->kvs);
	free(c);
}

static void sane_command(struct kiosk_dev *dev, struct kiosk_req *req, const char *verb,
                         json_t *args)
{
	struct sctx *c = ctx(dev, g_host);

	if (strcmp(verb, "scan") != 0) {
		c->host->fail(req, "unknown_command", "the sane plugin has no scanner.%s", verb);
		return;
	}
	if (!c->connected) { /* the connect job is still out: go on from its done() */
		c->req = req;
		c->args = json_incref(args);
		return;
	}
	sane_scan_begin(c, req, args);
}

static void sane_cancel_req(struct kiosk_dev *dev, struct kiosk_req *req)
{
	struct sctx *c = ctx(dev, g_host);

	(void)req;
	if (c)
		sane_scan_cancel(c);
}

static json_t *sane_status(struct kiosk_dev *dev)
{
	struct sctx *c = ctx(dev, g_host);
	json_t *info = c->info, *o;

	o = json_pack("{s:s?,s:s,s:O?,s:O?,s:O?,s:O?,s:s?,s:I}", "device",
	              c->connected ? c->name : NULL, "state",
	              !c->connected ? "connecting"
	              : c->req      ? "scanning"
	                            : "idle",
	              "devices", json_object_get(info, "devices"), "modes",
	              json_object_get(info, "modes"), "sources", json_object_get(info, "sources"),
	              "resolutions", json_object_get(info, "resolutions"), "fault", c->fault,
	              "scanned_pages", (json_int_t)c->scanned);
	return o;
}

static int sane_init_plugin(const struct kiosk_host *host)
{
	g_host = host;
	/* libsane keeps static state it never frees (its config path list) and
	 * cannot be set up twice cleanly: keep it loaded for the life of the
	 * process even when the daemon unloads this plugin. */
	if (!dlopen(SANE_LIBRARY, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE))
		host->log(NULL, KIOSK_LOG_WARNING, "sane: cannot pin %s: %s", SANE_LIBRARY,
		          dlerror());
	return 0;
}

static void sane_fini(void)
{
	sdev_exit();
}

KIOSK_EXPORT const struct kiosk_plugin kiosk_hal_plugin = {
        .magic = KIOSK_HAL_MAGIC,
        .abi_major = KIOSK_HAL_ABI_MAJOR,
        .abi_minor = KIOSK_HAL_ABI_MINOR,
        .struct_size = sizeof(struct kiosk_plugin),
        .name = "sane",
        .version = "1.0.0",
        .description = "document scanners through SANE (libsane)",
        .classes = KIOSK_CLASS_SCANNER,
        /* no match table: which scanners work is SANE's business (its
         * backends and their udev rules), not a vid:pid list here */
        .match = NULL,
        .options = sane_options_table,
        .init = sane_init_plugin,
        .fini = sane_fini,
        .open = sane_open_dev,
        .close = sane_close_dev,
        .command = sane_command,
        .cancel = sane_cancel_req,
        .status = sane_status,
};
