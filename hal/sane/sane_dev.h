/*
 * sane_dev.h -- the blocking side: every libsane call but sane_cancel().
 *
 * Run these only from host->run_blocking() jobs.  libsane and its
 * backends are not made for concurrent callers, so each function holds
 * one plugin-wide lock while it is inside libsane; sane_cancel() is the
 * one call SANE allows at any time, from the loop, while a job is in
 * sane_read().
 */
#ifndef KIOSK_SANE_DEV_H
#define KIOSK_SANE_DEV_H

#include <jansson.h>
#include <sane/sane.h>

#include "sane_opts.h"

/* A failed step: code is a protocol error code, why a message for people. */
struct sdev_err {
	const char *code;
	char why[256];
};

/* sane_init() once, list the devices (info "devices"), open `want` (the
 * first one listed when empty), describe it (info "modes", "sources",
 * "resolutions") and apply the configured options. */
int sdev_connect(const char *want, const struct sane_kvs *kvs, SANE_Handle *h, char *name,
                 size_t namelen, json_t **info, struct sdev_err *err);
/* Source, mode and resolution for the next scan, then the configured
 * options again (they win).  The resolution the device took is in *res. */
int sdev_setup(SANE_Handle h, const char *source, const char *mode, int *res,
               const struct sane_kvs *kvs, struct sdev_err *err);
SANE_Status sdev_start(SANE_Handle h, SANE_Parameters *p);
SANE_Status sdev_read(SANE_Handle h, SANE_Byte *buf, SANE_Int max, SANE_Int *len);
void sdev_cancel(SANE_Handle h);
void sdev_close(SANE_Handle h);
/* From the plugin's fini(), once no device is left. */
void sdev_exit(void);

#endif
