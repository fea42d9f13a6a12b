/*
 * pcsc.c -- the pcsc plugin: IC card readers through pcsc-lite.
 *
 * One device = one PC/SC reader (the first whose name contains the
 * `reader` option).  Card events come from a monitor thread (monitor.c),
 * card I/O runs as jobs on the host's workers (ops.c), the verbs are in
 * cmd.c, and card.c knows the two card kinds.  See README.md.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ops.h"

#define CLOSE_WAIT_MS 1000
_Static_assert(CLOSE_WAIT_MS % 1000 == 0, "pcsc_close() adds whole seconds");

const struct kiosk_host *pcsc_host;

static const struct kiosk_option options[] = {
        {"reader", KIOSK_OPT_STRING, "", 0, 0,
         "use the first PC/SC reader whose name contains this (empty: the first reader)"},
        {"key_file", KIOSK_OPT_STRING, "", 0, 0,
         "MIFARE key file: 'name = 12 hex digits' lines, mode 0600, owned by root"},
        {"write_chunk", KIOSK_OPT_INT, "16", 1, 255,
         "SLE4442 bytes per write APDU (each chunk is read back before the next)"},
        {NULL, 0, NULL, 0, 0, NULL},
};

static const struct kiosk_match match[] = {
        {"usb", 0x072f, 0x9000, "ACS ACR38 contact reader (SLE4442 memory cards)"},
        {"usb", 0x072f, 0x2200, "ACS ACR122U contactless reader (MIFARE Classic)"},
        {NULL, 0, 0, NULL},
};

static int pcsc_init(const struct kiosk_host *host)
{
	pcsc_host = host;
	return 0;
}

static void pcsc_free(struct pcsc *p)
{
	keys_wipe(&p->keys);
	pthread_mutex_destroy(&p->mon_lock);
	free(p);
}

static int pcsc_open(struct kiosk_dev *dev, const struct kiosk_host *host, char *why, size_t whylen)
{
	const char *reader = host->config(dev, "reader"), *keyfile = host->config(dev, "key_file");
	const char *chunk = host->config(dev, "write_chunk");
	struct pcsc *p = calloc(1, sizeof(*p));

	pcsc_host = host;
	if (!p) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	p->dev = dev;
	p->host = host;
	p->pipe[0] = p->pipe[1] = -1;
	p->psc_left = -1;
	p->chunk = chunk ? (unsigned)atoi(chunk) : 16;
	pthread_mutex_init(&p->mon_lock, NULL);
	snprintf(p->want, sizeof(p->want), "%s", reader ? reader : "");
	if (keyfile && *keyfile && keys_load(&p->keys, keyfile, why, whylen) < 0) {
		pcsc_free(p);
		return -1;
	}
	host->set_priv(dev, p);
	if (monitor_start(p, why, whylen) < 0) {
		monitor_unwatch(p);
		monitor_join(p);
		host->set_priv(dev, NULL);
		pcsc_free(p);
		return -1;
	}
	return 0;
}

enum { TD_RUNNING, TD_DONE, TD_ABANDONED };

/* Keep this plugin (and libpcsclite with it) mapped for good: a thread left
 * inside pcscd calls must have code to return to, even after the core
 * unloads the plugin at exit. */
static void pin_plugin(void)
{
	Dl_info info;
	if (dladdr((void *)pin_plugin, &info) && info.dli_fname)
		dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

/* The pcscd side of close(): each of these calls waits for pcscd. */
static void *teardown_main(void *arg)
{
	struct pcsc *p = arg;
	int running = TD_RUNNING;

	monitor_join(p);
	ops_release(p);
	if (!atomic_compare_exchange_strong(&p->teardown, &running, TD_DONE))
		pcsc_free(p); /* close() stopped waiting: the rest is ours */
	return NULL;
}

/* The core calls this only once no job of the device runs.  A pcscd that
 * stopped answering (frozen, or its socket wedged) would hold SCardCancel's
 * thread join and SCardReleaseContext for ever, and the loop with them:
 * they run on a thread of their own, waited for CLOSE_WAIT_MS, and are
 * left to finish -- and free the state -- on their own after that. */
static void pcsc_close(struct kiosk_dev *dev)
{
	struct pcsc *p = pcsc_host->priv(dev);
	struct timespec until;
	pthread_t t;
	int running = TD_RUNNING;

	if (!p)
		return;
	cmd_close(p);
	monitor_unwatch(p);
	pcsc_host->set_priv(dev, NULL);
	atomic_store(&p->teardown, TD_RUNNING);
	if (pthread_create(&t, NULL, teardown_main, p) != 0) {
		monitor_join(p);
		ops_release(p);
		pcsc_free(p);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += CLOSE_WAIT_MS / 1000;
	if (pthread_clockjoin_np(t, NULL, CLOCK_MONOTONIC, &until) == 0) {
		pcsc_free(p);
		return;
	}
	if (!atomic_compare_exchange_strong(&p->teardown, &running, TD_ABANDONED)) {
		pthread_join(t, NULL); /* it finished just now */
		pcsc_free(p);
		return;
	}
	pthread_detach(t);
	pin_plugin();
	pcsc_host->log(dev, KIOSK_LOG_WARNING,
	               "pcscd did not answer within %d ms of the close: its connections are "
	               "left to close on their own",
	               CLOSE_WAIT_MS);
}

static json_t *pcsc_status(struct kiosk_dev *dev)
{
	struct pcsc *p = pcsc_host->priv(dev);
	json_t *st;
	char atr[2 * ATR_MAX + 1];

	if (!p)
		return json_object();
	st = json_pack("{s:s?,s:s,s:b}", "reader", p->reader[0] ? p->reader : NULL, "card",
	               p->present ? "present" : "absent", "waiting", p->wait != NULL);
	if (!p->present)
		return st;
	hex_encode(p->atr, p->atrlen, atr);
	json_object_set_new(st, "type", json_string(card_type_name(p->type)));
	json_object_set_new(st, "atr", json_string(atr));
	json_object_set_new(st, "memory_bytes", json_integer((json_int_t)card_memory(p->type)));
	if (p->type == CARD_SLE4442) {
		json_object_set_new(st, "psc_attempts_left",
		                    p->psc_left >= 0 ? json_integer(p->psc_left) : json_null());
		json_object_set_new(st, "psc_verified", json_boolean(p->psc_ok_gen == p->gen));
	}
	return st;
}

KIOSK_EXPORT const struct kiosk_plugin kiosk_hal_plugin = {
        .magic = KIOSK_HAL_MAGIC,
        .abi_major = KIOSK_HAL_ABI_MAJOR,
        .abi_minor = KIOSK_HAL_ABI_MINOR,
        .struct_size = sizeof(struct kiosk_plugin),
        .name = "pcsc",
        .version = "1.0.0",
        .description = "PC/SC IC card readers (SLE4442 memory cards, MIFARE Classic)",
        .classes = KIOSK_CLASS_CARDREADER,
        .match = match,
        .options = options,
        .init = pcsc_init,
        .open = pcsc_open,
        .close = pcsc_close,
        .command = pcsc_command,
        .cancel = pcsc_cancel,
        .status = pcsc_status,
};
