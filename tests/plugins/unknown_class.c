/* unknown_class.c -- refused by the loader: a device class bit the daemon does not know.
 * Otherwise the good_echo plugin. */
#define ECHO_NAME    "unknown_class"
#define ECHO_CLASSES (1u << 20)
#include "good_echo.c"
