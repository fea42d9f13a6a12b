/* Logging to stderr: syslog priority prefixes under journald, plain text
 * with a timestamp otherwise.  No personal data in any message, ever. */
#ifndef KIOSKD_LOG_H
#define KIOSKD_LOG_H

#include <stdarg.h>
#include <syslog.h>

void log_init(const char *ident, int level);
void log_setlevel(int level);
int log_getlevel(void);
/* "err", "warning", "notice", "info", "debug" -> syslog priority, -1 if unknown */
int log_level_parse(const char *name);
const char *log_level_name(int level);

void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(int prio, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define log_err(...)    log_msg(LOG_ERR, __VA_ARGS__)
#define log_warnx(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)   log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)  log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
