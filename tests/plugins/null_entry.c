/* null_entry.c -- refused by the loader: no command() entry point, which is required.
 * Otherwise the good_echo plugin. */
#define ECHO_NAME    "null_entry"
#define ECHO_COMMAND NULL
#include "good_echo.c"
