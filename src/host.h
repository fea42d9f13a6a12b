/* The services table handed to plugins (struct kiosk_host). */
#ifndef KIOSKD_HOST_H
#define KIOSKD_HOST_H

#include "kiosk/hal.h"

const struct kiosk_host *host_table(void);

#endif
