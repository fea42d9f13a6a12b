/* A printer on the daemon's USB services, for the core's USB tests: opens
 * vid:pid[:serial] with host->usb_open(), claims interface 0 and sends the
 * text of a print's first block as one asynchronous bulk OUT transfer. */
#include <kiosk/hal.h>
#include <libusb.h>
#include <stdlib.h>
#include <string.h>

struct probe {
	struct kiosk_dev *dev;
	const struct kiosk_host *h;
	libusb_device_handle *uh;
	struct libusb_transfer *xfer; /* in flight, or NULL */
	struct kiosk_req *req;
	int closing;
	unsigned char buf[4096];
};

static const struct kiosk_host *host;

static int probe_init(const struct kiosk_host *h)
{
	host = h;
	return 0;
}

static int probe_open(struct kiosk_dev *dev, const struct kiosk_host *h, char *why, size_t len)
{
	struct probe *p;
	const char *serial = h->config(dev, "serial");

	if (h->abi_minor < 1 || !h->usb_context()) {
		snprintf(why, len, "no USB in this daemon");
		return -1;
	}
	if (!(p = calloc(1, sizeof(*p))))
		return -1;
	p->dev = dev;
	p->h = h;
	p->uh = h->usb_open(dev, (uint16_t)atoi(h->config(dev, "vid")),
	                    (uint16_t)atoi(h->config(dev, "pid")),
	                    serial && *serial ? serial : NULL, why, len);
	if (!p->uh) {
		free(p);
		return -1;
	}
	int rc = libusb_claim_interface(p->uh, 0);
	if (rc < 0) {
		snprintf(why, len, "cannot claim interface 0: %s", libusb_strerror(rc));
		h->usb_close(dev, p->uh);
		free(p);
		return -1;
	}
	h->set_priv(dev, p);
	return 0;
}

static void on_sent(struct libusb_transfer *x)
{
	struct probe *p = x->user_data;
	struct kiosk_req *r = p->req;

	p->xfer = NULL;
	p->req = NULL;
	if (p->closing) { /* inside usb_close(): the core holds the request */
		libusb_free_transfer(x);
		return;
	}
	if (x->status == LIBUSB_TRANSFER_NO_DEVICE) {
		/* may come before the core's own hotplug news: either way the
		 * core answers the request and closes us */
		libusb_free_transfer(x);
		p->h->lost(p->dev, "unplugged");
		return;
	}
	if (x->status == LIBUSB_TRANSFER_CANCELLED)
		p->h->fail(r, "cancelled", "bulk OUT cancelled");
	else if (x->status == LIBUSB_TRANSFER_COMPLETED)
		p->h->reply(r, json_pack("{s:i}", "sent", x->actual_length));
	else
		p->h->fail(r, "device_error", "bulk OUT failed (transfer status %d)", x->status);
	libusb_free_transfer(x);
}

static void probe_command(struct kiosk_dev *dev, struct kiosk_req *req, const char *verb,
                          json_t *args)
{
	struct probe *p = host->priv(dev);
	const char *text = json_string_value(
	        json_object_get(json_array_get(json_object_get(args, "blocks"), 0), "text"));
	size_t n = text ? strlen(text) : 0;

	if (strcmp(verb, "print") != 0 || !text || n > sizeof(p->buf)) {
		host->fail(req, "unsupported", "usb_probe prints one short text block");
		return;
	}
	memcpy(p->buf, text, n);
	p->xfer = libusb_alloc_transfer(0);
	p->req = req;
	libusb_fill_bulk_transfer(p->xfer, p->uh, 0x01, p->buf, (int)n, on_sent, p, 2000);
	int rc = libusb_submit_transfer(p->xfer);
	if (rc < 0) {
		libusb_free_transfer(p->xfer);
		p->xfer = NULL;
		p->req = NULL;
		host->fail(req, "device_error", "cannot submit: %s", libusb_strerror(rc));
	}
}

static void probe_cancel(struct kiosk_dev *dev, struct kiosk_req *req)
{
	struct probe *p = host->priv(dev);
	(void)req;
	if (p->xfer)
		libusb_cancel_transfer(p->xfer);
}

static void probe_close(struct kiosk_dev *dev)
{
	struct probe *p = host->priv(dev);

	p->closing = 1;
	if (p->xfer)
		libusb_cancel_transfer(p->xfer); /* completes inside usb_close() */
	libusb_release_interface(p->uh, 0);
	host->usb_close(dev, p->uh);
	free(p);
}

static json_t *probe_status(struct kiosk_dev *dev)
{
	(void)dev;
	return json_pack("{s:b}", "usb", 1);
}

static const struct kiosk_option probe_options[] = {
        {"vid", KIOSK_OPT_INT, "4660", 0, 65535, "USB vendor id"},
        {"pid", KIOSK_OPT_INT, "22136", 0, 65535, "USB product id (0: any)"},
        {"serial", KIOSK_OPT_STRING, "", 0, 0, "USB serial number"},
        {NULL, 0, NULL, 0, 0, NULL},
};

static const struct kiosk_match probe_match[] = {
        {"usb", 0x1234, 0x5678, "test printer (umockdev)"},
        {NULL, 0, 0, NULL},
};

KIOSK_EXPORT const struct kiosk_plugin kiosk_hal_plugin = {
        .magic = KIOSK_HAL_MAGIC,
        .abi_major = KIOSK_HAL_ABI_MAJOR,
        .abi_minor = KIOSK_HAL_ABI_MINOR,
        .struct_size = sizeof(struct kiosk_plugin),
        .name = "usb_probe",
        .version = "1",
        .description = "USB test printer",
        .classes = KIOSK_CLASS_PRINTER,
        .match = probe_match,
        .options = probe_options,
        .init = probe_init,
        .open = probe_open,
        .close = probe_close,
        .command = probe_command,
        .cancel = probe_cancel,
        .status = probe_status,
};
