/* SPDX-License-Identifier: MPL-2.0 */
/*
 * hclog-shaped JSON lines. The encoder escapes by hand rather than building a
 * jansson tree: it runs on every request's failure path and must not allocate.
 * It does not sanitise secrets (callers never pass them) and does not buffer.
 */
#include "common/log.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/utf8.h"

/*
 * A full non-blocking log fd is waited for LOG_WAIT_MS at a time, at most
 * LOG_MAX_WAITS times per line (0.5 s): a reader that stopped must not stop the
 * program (after one such give-up, lines are tried once without waiting until
 * one goes through whole), and a slow one should not lose lines.
 */
#define LOG_WAIT_MS 50
#define LOG_MAX_WAITS 10

static FILE *log_out;
/* Set when a line was written in part: the next one starts with a newline. */
static atomic_bool log_torn;
/* Set when the last write gave up on a full fd: the next ones do not wait. */
static atomic_bool log_stalled;
static enum log_level log_min = LOGL_INFO;
static log_sink_fn log_sink;
static void *log_sink_arg;

static const char *const log_names[] = {"trace", "debug", "info", "warn", "error", "off"};

void log_init(FILE *out, enum log_level min_level)
{
    log_out = out;
    log_min = min_level;
}

void log_set_sink(log_sink_fn sink, void *arg)
{
    log_sink = sink;
    log_sink_arg = arg;
}

void log_write_raw(const char *p, size_t left)
{
    /* One write(2) per call keeps lines whole across threads and processes. */
    int fd = fileno(log_out != NULL ? log_out : stderr);
    int saved = errno; /* callers log between a failure and reading its errno */
    /* After a give-up, no waiting until a write goes through whole: a stuck reader costs 0.5 s
     * once. */
    int waits = atomic_load(&log_stalled) ? LOG_MAX_WAITS : 0;
    bool wrote = false;
    if (atomic_load(&log_torn)) {
        /* The last line was cut short: end it, so this one is not glued to it. */
        ssize_t n;
        do {
            n = write(fd, "\n", 1);
        } while (n < 0 && errno == EINTR);
        if (n != 1) {
            /* Still full: this line is dropped whole and the newline owed stays owed. */
            atomic_store(&log_stalled, true);
            errno = saved;
            return;
        }
        atomic_store(&log_torn, false);
    }
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n > 0) {
            p += n;
            left -= (size_t)n;
            wrote = true;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && waits < LOG_MAX_WAITS) {
            /* A non-blocking stderr (a pipe shared with a parent that set O_NONBLOCK) is full. */
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            (void)poll(&pfd, 1, LOG_WAIT_MS);
            waits++;
            continue;
        }
        break; /* closed, or still full after LOG_MAX_WAITS: drop the rest */
    }
    if (left > 0 && wrote) {
        atomic_store(&log_torn, true);
    }
    atomic_store(&log_stalled, left > 0);
    errno = saved;
}

int log_level_parse(const char *name)
{
    if (name == NULL) {
        return -1;
    }
    for (int i = 0; i <= LOGL_OFF; i++) {
        if (strcmp(name, log_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

int log_enabled(enum log_level level)
{
    return level >= log_min && level < LOGL_OFF;
}

/*
 * A line is built in a fixed buffer. String contents stop at LINE_CONTENT_MAX;
 * the remaining bytes are reserved for the closing quotes, braces and newline,
 * so a cut line is still one valid JSON object. A string is cut only between
 * whole characters and escapes; a key is written whole or not at all (with
 * its value and every pair after it), and the message leaves room for the
 * timestamp that follows it (go-plugin drops the level of a line whose
 * "@timestamp" does not parse).
 */
#define LINE_RESERVE 64
#define LINE_CONTENT_MAX (LOG_MAX_LINE - LINE_RESERVE)
/* ,"@timestamp":"2006-01-02T15:04:05.000000Z" */
#define LINE_TIMESTAMP_ROOM 48

struct line {
    char buf[LOG_MAX_LINE];
    size_t len;
    int full;
};

static void line_raw(struct line *l, const char *s, size_t n)
{
    if (l->len + n > sizeof(l->buf) - 2) {
        l->full = 1;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/*
 * The JSON text of the character at p into out (at most 6 bytes): an escape
 * for '"', '\\' and control characters, U+FFFD for a byte that does not start
 * well-formed UTF-8 (strict JSON readers refuse such a line), else the
 * character itself. Sets *ret_in to the bytes of p it stands for.
 */
static size_t line_char(const unsigned char *p, char out[6], size_t *ret_in)
{
    static const char hex[] = "0123456789abcdef";
    *ret_in = 1;
    if (*p == '"' || *p == '\\') {
        out[0] = '\\';
        out[1] = (char)*p;
        return 2;
    }
    if (*p == '\n' || *p == '\t') {
        out[0] = '\\';
        out[1] = *p == '\n' ? 'n' : 't';
        return 2;
    }
    if (*p < 0x20 || *p == 0x7f) {
        out[0] = '\\';
        out[1] = 'u';
        out[2] = '0';
        out[3] = '0';
        out[4] = hex[*p >> 4];
        out[5] = hex[*p & 15];
        return 6;
    }
    if (*p < 0x80) {
        out[0] = (char)*p;
        return 1;
    }
    size_t n = utf8_char_len((const char *)p);
    if (n == 0) {
        return utf8_put_replacement(out);
    }
    memcpy(out, p, n);
    *ret_in = n;
    return n;
}

/* Length of s as JSON string contents. */
static size_t line_str_len(const char *s)
{
    size_t total = 0;
    char esc[6];
    size_t in;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p += in) {
        total += line_char(p, esc, &in);
    }
    return total;
}

/* Writes s quoted, cut before the first character that would end past byte max of the line. */
static void line_str_max(struct line *l, const char *s, size_t max)
{
    line_raw(l, "\"", 1);
    char esc[6];
    size_t in;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p += in) {
        if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') {
            /* Printable ASCII, nearly every byte of a line: no escape, no sequence to check. */
            if (l->len + 1 > max) {
                l->full = 1;
                break;
            }
            l->buf[l->len++] = (char)*p;
            in = 1;
            continue;
        }
        size_t n = line_char(p, esc, &in);
        if (l->len + n > max) {
            l->full = 1;
            break;
        }
        memcpy(l->buf + l->len, esc, n);
        l->len += n;
    }
    line_raw(l, "\"", 1);
}

static void line_str(struct line *l, const char *s)
{
    line_str_max(l, s, LINE_CONTENT_MAX);
}

void log_kv(enum log_level level, const char *msg, ...)
{
    if (!log_enabled(level)) {
        return;
    }
    struct line l;
    l.len = 0;
    l.full = 0;

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)tv.tv_usec);

    line_raw(&l, "{\"@level\":", 10);
    line_str(&l, log_names[level]);
    line_raw(&l, ",\"@message\":", 12);
    line_str_max(&l, msg != NULL ? msg : "", LINE_CONTENT_MAX - LINE_TIMESTAMP_ROOM);
    line_raw(&l, ",\"@timestamp\":", 14);
    line_str(&l, ts);

    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (key == NULL || l.full) {
            break;
        }
        const char *val = va_arg(ap, const char *);
        /* The key, its quotes, ',' ':' and at least an empty value. */
        if (l.len + line_str_len(key) + 6 > LINE_CONTENT_MAX) {
            break;
        }
        line_raw(&l, ",", 1);
        line_str(&l, key);
        line_raw(&l, ":", 1);
        if (val == NULL) {
            line_raw(&l, "null", 4);
        } else {
            line_str(&l, val);
        }
    }
    va_end(ap);
    l.buf[l.len++] = '}';
    l.buf[l.len++] = '\n';

    if (log_sink != NULL) {
        log_sink(level, l.buf, l.len, log_sink_arg);
        return;
    }
    log_write_raw(l.buf, l.len);
}
