/* log.h -- one line per event, with a level; never key values. */
#ifndef KV_LOG_H
#define KV_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the lowest level printed; parses etcd's names ("debug", "info", "warn", "error").
 * Returns 0, or -1 for an unknown name. */
int log_set_level_name(const char *name);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
