/* SPDX-License-Identifier: MPL-2.0 */
#include "agent/logbuf.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "common/log.h"

/* One loop turn's lines; past this much the buffer is written at once. */
#define LOGBUF_MAX_PENDING ((size_t)256 * 1024)

static struct evbuffer *logbuf_pending;
static struct event *logbuf_flush_ev;
static bool logbuf_scheduled;
/* Inside libevent's log callback, where no libevent function may be called. */
static bool logbuf_direct;
static time_t logbuf_lib_last;
static unsigned long logbuf_lib_suppressed;

static void logbuf_flush(void)
{
    size_t n = evbuffer_get_length(logbuf_pending);
    if (n > 0) {
        log_write_raw((const char *)evbuffer_pullup(logbuf_pending, -1), n);
        evbuffer_drain(logbuf_pending, n);
    }
}

static void logbuf_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    logbuf_scheduled = false;
    logbuf_flush();
}

static void logbuf_sink(enum log_level level, const char *line, size_t len, void *arg)
{
    if (logbuf_direct) {
        log_write_raw(line, len); /* may come before this turn's queued info lines */
        return;
    }
    if (level >= LOGL_WARN || evbuffer_add(logbuf_pending, line, len) != 0) {
        logbuf_flush();
        log_write_raw(line, len);
        return;
    }
    if (evbuffer_get_length(logbuf_pending) > LOGBUF_MAX_PENDING) {
        logbuf_flush();
        return;
    }
    if (!logbuf_scheduled) {
        /* Active now: runs after the callbacks already queued in this turn. */
        event_active(logbuf_flush_ev, EV_TIMEOUT, 0);
        logbuf_scheduled = true;
    }
}

/*
 * libevent's own warnings and errors (e.g. a failed accept) as our JSON lines
 * instead of plain "[warn]" text on stderr; at most one a second, with the
 * count of those left out since. Debug and info messages are dropped.
 */
static void logbuf_libevent(int severity, const char *msg)
{
    if (severity < EVENT_LOG_WARN) {
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (logbuf_lib_last != 0 && ts.tv_sec - logbuf_lib_last < 1) {
        logbuf_lib_suppressed++;
        return;
    }
    char n[24];
    snprintf(n, sizeof(n), "%lu", logbuf_lib_suppressed);
    logbuf_direct = true;
    log_kv(severity >= EVENT_LOG_ERR ? LOGL_ERROR : LOGL_WARN, "libevent", "detail", msg,
           "suppressed", n, NULL);
    logbuf_direct = false;
    logbuf_lib_last = ts.tv_sec;
    logbuf_lib_suppressed = 0;
}

enum err logbuf_start(struct event_base *base)
{
    logbuf_pending = evbuffer_new();
    logbuf_flush_ev = event_new(base, -1, 0, logbuf_flush_cb, NULL);
    if (logbuf_pending == NULL || logbuf_flush_ev == NULL) {
        logbuf_stop();
        return ERR_NOMEM;
    }
    log_set_sink(logbuf_sink, NULL);
    event_set_log_callback(logbuf_libevent);
    return ERR_OK;
}

void logbuf_stop(void)
{
    event_set_log_callback(NULL);
    logbuf_lib_last = 0;
    logbuf_lib_suppressed = 0;
    log_set_sink(NULL, NULL);
    if (logbuf_pending != NULL) {
        logbuf_flush();
        evbuffer_free(logbuf_pending);
        logbuf_pending = NULL;
    }
    if (logbuf_flush_ev != NULL) {
        event_free(logbuf_flush_ev);
        logbuf_flush_ev = NULL;
    }
    logbuf_scheduled = false;
}
