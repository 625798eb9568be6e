/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Structured logging: one JSON object per line on a stream (stderr by default),
 * shaped like hclog's JSON format so that Vault re-logs plugin lines at their
 * level: "@level", "@message", "@timestamp" (2006-01-02T15:04:05.000000Z07:00),
 * then the key/value pairs given by the caller.
 *
 * Library-like modules never log; request boundaries log once per failure.
 * Never pass a secret as a value: there is no redaction here by design, the
 * callers are responsible (and tests grep the logs for canary keys).
 * Thread-safe: a line is written with one locked write.
 */
#ifndef BYOK_COMMON_LOG_H
#define BYOK_COMMON_LOG_H

#include <stdio.h>

/* Not LOG_INFO etc.: <syslog.h> owns those names. */
enum log_level { LOGL_TRACE, LOGL_DEBUG, LOGL_INFO, LOGL_WARN, LOGL_ERROR, LOGL_OFF };

/* A line longer than this is cut (go-plugin splits lines over 64 KiB). */
#define LOG_MAX_LINE 16384

/* Sets the stream (NULL = stderr) and the minimum level. Call before threads start. */
void log_init(FILE *out, enum log_level min_level);

/* Parses "trace".."error"/"off"; returns -1 for anything else. */
int log_level_parse(const char *name);

/* Is a line at this level written? Lets callers skip building expensive values. */
int log_enabled(enum log_level level);

/*
 * Writes one line. After msg come key/value pairs of C strings, ended by NULL:
 *   log_kv(LOGL_INFO, "plugin started", "version", BYOK_VERSION, "socket", path, NULL);
 * A NULL value is written as JSON null.
 */
void log_kv(enum log_level level, const char *msg, ...) __attribute__((sentinel));

/*
 * Optional: finished lines (newline included) go to sink instead of one
 * write(2) each, so that a single-threaded caller can batch them (the agent
 * writes a loop turn's lines at once). NULL restores the direct write. Set
 * before threads start.
 */
typedef void (*log_sink_fn)(enum log_level level, const char *line, size_t len, void *arg);
void log_set_sink(log_sink_fn sink, void *arg);

/* Writes bytes to the log stream in full, as log_kv does without a sink. */
void log_write_raw(const char *p, size_t len);

#endif
