/* no_symbol.c -- a shared object that is not a plugin: it exports a
 * function, but no kiosk_hal_plugin descriptor.  The loader must refuse it
 * by the missing symbol, never guess from what else is there. */
#include "kiosk/hal.h"

KIOSK_EXPORT int kiosk_hal_not_a_plugin(void);

KIOSK_EXPORT int kiosk_hal_not_a_plugin(void)
{
	return 42;
}
