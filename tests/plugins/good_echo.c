/*
 * good_echo.c -- a minimal, correct plugin for the loader tests: it
 * answers every verb at once with what it was given ({"verb", "args"};
 * status with {"echo": true}).  A daemon must keep serving it while it
 * refuses the broken plugins next to it.
 *
 * The broken plugins include this file with one ECHO_* macro changed, so
 * each is wrong in exactly one way and right in every other.
 */
#include <string.h>

#include "kiosk/hal.h"

#ifndef ECHO_NAME
#define ECHO_NAME "good_echo"
#endif
#ifndef ECHO_MAGIC
#define ECHO_MAGIC KIOSK_HAL_MAGIC
#endif
#ifndef ECHO_MAJOR
#define ECHO_MAJOR KIOSK_HAL_ABI_MAJOR
#endif
#ifndef ECHO_SIZE
#define ECHO_SIZE sizeof(struct kiosk_plugin)
#endif
/* cardreader as the minimal case; printer too, for tests that need a
 * non-simulator device of a class with richer verbs */
#ifndef ECHO_CLASSES
#define ECHO_CLASSES (KIOSK_CLASS_CARDREADER | KIOSK_CLASS_PRINTER)
#endif
#ifndef ECHO_COMMAND
#define ECHO_COMMAND echo_command
#endif

static const struct kiosk_host *host;

static int echo_open(struct kiosk_dev *dev, const struct kiosk_host *h, char *why, size_t whylen)
{
	(void)dev, (void)why, (void)whylen;
	host = h;
	return 0;
}

static void echo_close(struct kiosk_dev *dev)
{
	(void)dev;
}

/* Answered inside command(): the simplest plugin a core must support. */
__attribute__((unused)) static void echo_command(struct kiosk_dev *dev, struct kiosk_req *req,
                                                 const char *verb, json_t *args)
{
	(void)dev;
	if (strcmp(verb, "status") == 0)
		host->reply(req, json_pack("{s:b}", "echo", 1));
	else
		host->reply(req, json_pack("{s:s,s:o}", "verb", verb, "args",
		                           args ? json_incref(args) : json_object()));
}

/* Nothing to stop: every command is answered before command() returns. */
static void echo_cancel(struct kiosk_dev *dev, struct kiosk_req *req)
{
	(void)dev, (void)req;
}

static json_t *echo_status(struct kiosk_dev *dev)
{
	(void)dev;
	return json_pack("{s:b}", "echo", 1);
}

static const struct kiosk_match echo_match[] = {
        {"sim", 0, 0, "echo test device"},
        {"usb", 0x1234, 0x5678, "echo test printer"},
        {"usb", 0x1d6b, 0, "any echo gadget"},
        {NULL, 0, 0, NULL},
};

KIOSK_EXPORT const struct kiosk_plugin kiosk_hal_plugin = {
        .magic = ECHO_MAGIC,
        .abi_major = ECHO_MAJOR,
        .abi_minor = KIOSK_HAL_ABI_MINOR,
        .struct_size = ECHO_SIZE,
        .name = ECHO_NAME,
        .version = "1.0",
        .description = "loader test plugin: " ECHO_NAME,
        .classes = ECHO_CLASSES,
        .match = echo_match,
        .open = echo_open,
        .close = echo_close,
        .command = ECHO_COMMAND,
        .cancel = echo_cancel,
        .status = echo_status,
};
