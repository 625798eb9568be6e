/* SPDX-License-Identifier: MPL-2.0 */
/*
 * SSE line splitting and field handling. Lines are accumulated in a capped
 * buffer only when a chunk ends mid-line; complete lines inside a chunk are
 * handled in place without copying.
 */
#include "agent/sse.h"

#include <string.h>

void sse_init(struct sse *p, size_t max_data, sse_event_cb cb, void *arg)
{
    buf_init(&p->line, SSE_MAX_LINE);
    buf_init(&p->data, max_data);
    p->event[0] = '\0';
    p->has_data = false;
    p->last_cr = false;
    p->started = false;
    p->bom = 0;
    p->frame_end = 0;
    p->ended = false;
    p->cb = cb;
    p->arg = arg;
}

void sse_done(struct sse *p)
{
    buf_done(&p->line);
    buf_done(&p->data);
}

size_t sse_frame_end(const struct sse *p)
{
    return p->frame_end;
}

bool sse_ended(const struct sse *p)
{
    return p->ended;
}

bool sse_idle(const struct sse *p)
{
    /* The first bytes of a BOM not yet matched in full are held too (in bom, not line). */
    return p->line.len == 0 && !p->has_data && (p->started || p->bom == 0);
}

static enum err sse_dispatch(struct sse *p)
{
    if (!p->has_data) {
        p->event[0] = '\0';
        return ERR_OK;
    }
    size_t n = p->data.len;
    /* The spec drops the last newline added after each data line. */
    if (n > 0 && p->data.data[n - 1] == '\n') {
        n--;
        p->data.data[n] = '\0';
    }
    int rc = p->cb(p->arg, p->event[0] != '\0' ? p->event : "message",
                   p->data.data != NULL ? p->data.data : "", n);
    buf_reset(&p->data);
    p->has_data = false;
    p->event[0] = '\0';
    if (rc == SSE_END) {
        p->ended = true;
        return ERR_OK;
    }
    return rc != 0 ? ERR_CANCELLED : ERR_OK;
}

static enum err sse_line(struct sse *p, const char *s, size_t n)
{
    if (n == 0) {
        return sse_dispatch(p);
    }
    if (s[0] == ':') {
        return ERR_OK;
    }
    const char *colon = memchr(s, ':', n);
    size_t flen = colon != NULL ? (size_t)(colon - s) : n;
    const char *v = colon != NULL ? colon + 1 : s + n;
    size_t vlen = n - (size_t)(v - s);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    if (flen == 4 && memcmp(s, "data", 4) == 0) {
        enum err e = buf_append(&p->data, v, vlen);
        if (e == ERR_OK) {
            e = buf_append(&p->data, "\n", 1);
        }
        if (e != ERR_OK) {
            return e;
        }
        p->has_data = true;
    } else if (flen == 5 && memcmp(s, "event", 5) == 0) {
        if (vlen > SSE_MAX_EVENT_NAME) {
            return ERR_TOOBIG;
        }
        memcpy(p->event, v, vlen);
        p->event[vlen] = '\0';
    } else if (!(flen == 2 && memcmp(s, "id", 2) == 0) &&
               !(flen == 5 && memcmp(s, "retry", 5) == 0)) {
        /*
         * Any other line is no field of an event stream: a provider's error
         * written bare, without "data:" ({"error": ...}), or a proxy's HTML
         * page, by a server failing mid-stream. The spec would ignore it, and a
         * passthrough would forward it, text and all, which may echo the key:
         * refused instead, so that the frame it is in is never forwarded.
         */
        return ERR_PROTO;
    }
    return ERR_OK;
}

enum err sse_feed(struct sse *p, const char *data, size_t len)
{
    size_t i = 0;
    p->frame_end = 0;
    if (p->ended) {
        return ERR_OK; /* the stream ended: what follows is not part of it */
    }
    /* A leading UTF-8 byte order mark is not part of the stream (WHATWG), even split. */
    static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
    while (!p->started && i < len) {
        if ((unsigned char)data[i] == bom[p->bom]) {
            i++;
            p->started = ++p->bom == sizeof(bom);
            continue;
        }
        p->started = true;
        if (p->bom > 0) { /* a BOM's first bytes, then something else: they were text */
            enum err e = buf_append(&p->line, (const char *)bom, p->bom);
            if (e != ERR_OK) {
                return e;
            }
        }
    }
    if (i == len) {
        return ERR_OK; /* nothing else (an empty chunk keeps a pending CR's state too) */
    }
    if (p->last_cr && data[i] == '\n') {
        i++; /* the LF of a CRLF split across chunks */
    }
    p->last_cr = false;
    while (i < len) {
        const char *start = data + i;
        size_t rest = len - i;
        size_t k = 0;
        while (k < rest && start[k] != '\n' && start[k] != '\r') {
            k++;
        }
        if (k == rest) {
            /* No line end in this chunk: keep the partial line. */
            return buf_append(&p->line, start, rest);
        }
        enum err e;
        bool blank = k == 0 && p->line.len == 0; /* a blank line ends a frame */
        if (p->line.len > 0) {
            e = buf_append(&p->line, start, k);
            if (e == ERR_OK) {
                e = sse_line(p, p->line.data, p->line.len);
            }
            buf_reset(&p->line);
        } else {
            e = sse_line(p, start, k);
        }
        if (e != ERR_OK) {
            return e;
        }
        i += k + 1;
        if (start[k] == '\r') {
            if (i < len && data[i] == '\n') {
                i++;
            } else if (i == len) {
                p->last_cr = true;
            }
        }
        if (blank) {
            p->frame_end = i; /* the frame was handled: its callback went on */
            if (p->ended) {
                return ERR_OK;
            }
        }
    }
    return ERR_OK;
}

/* The line at data (len bytes left): its length without its end, and with it (*full). */
static size_t sse_line_at(const char *data, size_t len, size_t *full)
{
    size_t i = 0;
    while (i < len && data[i] != '\n' && data[i] != '\r') {
        i++;
    }
    size_t end = i;
    if (i < len && data[i] == '\r') {
        i++;
        if (i < len && data[i] == '\n') {
            i++;
        }
    } else if (i < len) {
        i++;
    }
    *full = i;
    return end;
}

/* 0: keep the line; 1: a comment (keep its ':'); 2: an id or retry field (drop it). */
static int sse_scrub_kind(const char *line, size_t n)
{
    if (n > 0 && line[0] == ':') {
        return 1;
    }
    const char *colon = memchr(line, ':', n);
    size_t flen = colon != NULL ? (size_t)(colon - line) : n;
    if ((flen == 2 && memcmp(line, "id", 2) == 0) || (flen == 5 && memcmp(line, "retry", 5) == 0)) {
        return 2;
    }
    return 0;
}

bool sse_needs_scrub(const char *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t full = 0;
        size_t n = sse_line_at(data + i, len - i, &full);
        int kind = sse_scrub_kind(data + i, n);
        if (kind == 2 || (kind == 1 && n > 1)) {
            return true;
        }
        i += full;
    }
    return false;
}

size_t sse_scrub(const char *data, size_t len, char *out)
{
    size_t i = 0, o = 0;
    while (i < len) {
        size_t full = 0;
        size_t n = sse_line_at(data + i, len - i, &full);
        int kind = sse_scrub_kind(data + i, n);
        if (kind == 1) {
            out[o++] = ':';
            memcpy(out + o, data + i + n, full - n);
            o += full - n;
        } else if (kind == 0) {
            memcpy(out + o, data + i, full);
            o += full;
        }
        i += full;
    }
    return o;
}
