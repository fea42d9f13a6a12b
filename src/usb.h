/* USB for plugins: one libusb context driven by the daemon's loop, devices
 * opened by vid:pid[:serial], and hotplug that takes an opened device
 * offline when it is unplugged and reopens it when it comes back. */
#ifndef KIOSKD_USB_H
#define KIOSKD_USB_H

#include <stddef.h>
#include <stdint.h>

struct kiosk_dev;
struct libusb_context;
struct libusb_device_handle;

/* The shared context, created on first use; NULL when libusb cannot start. */
struct libusb_context *usb_context(void);
struct libusb_device_handle *usb_open(struct kiosk_dev *d, uint16_t vid, uint16_t pid,
                                      const char *serial, char *why, size_t whylen);
void usb_close(struct kiosk_dev *d, struct libusb_device_handle *h);
/* host->lost() of d: 1 when it was called inside libusb's event handling
 * and will take effect on the loop's next turn, else 0. */
int usb_defer_lost(struct kiosk_dev *d, const char *reason);
/* d goes away: stop watching for it. */
void usb_forget(struct kiosk_dev *d);
void usb_shutdown(void);

#endif
