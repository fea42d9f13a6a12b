/* What hardware the installed plugins support, from their match tables:
 * a human list and the udev rules that give the daemon's group access to
 * the USB devices (systemd/70-kioskd.rules is generated from this). */
#ifndef KIOSKD_HWLIST_H
#define KIOSKD_HWLIST_H

#include <stdio.h>

enum hwlist_format {
	HWLIST_TEXT,
	HWLIST_UDEV,
};

/* Every plugin found on search_path (colon-separated directories), in
 * name order.  Returns 0, or 1 when a plugin could not be loaded (it is
 * named on stderr and skipped). */
int hwlist_print(FILE *out, const char *search_path, enum hwlist_format fmt, const char *group);

#endif
