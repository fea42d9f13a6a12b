/* bad_major.c -- refused by the loader: ABI major 99: a future, incompatible ABI.
 * Otherwise the good_echo plugin. */
#define ECHO_NAME  "bad_major"
#define ECHO_MAJOR 99
#include "good_echo.c"
