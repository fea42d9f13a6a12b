/* small_struct.c -- refused by the loader: struct_size 8: smaller than the ABI 1.0 descriptor.
 * Otherwise the good_echo plugin. */
#define ECHO_NAME "small_struct"
#define ECHO_SIZE 8
#include "good_echo.c"
