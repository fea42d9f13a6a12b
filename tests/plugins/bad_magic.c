/* bad_magic.c -- refused by the loader: a wrong magic number.
 * Otherwise the good_echo plugin. */
#define ECHO_NAME  "bad_magic"
#define ECHO_MAGIC 0x4c41484bu /* "KHAL" byte-swapped */
#include "good_echo.c"
