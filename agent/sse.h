/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Incremental parser for server-sent events (WHATWG HTML "event stream
 * interpretation") as providers stream them: bytes arrive in arbitrary chunks,
 * a frame may be split anywhere (even between CR and LF). Only the "event"
 * and "data" fields matter to us; "id", "retry" and comments are skipped.
 * Any other line is refused (ERR_PROTO), where the spec would ignore it: a
 * passthrough forwards frames as they came, and such a line is a server's
 * error text (a bare JSON error, an HTML page), which may echo the key.
 */
#ifndef BYOK_AGENT_SSE_H
#define BYOK_AGENT_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"

/* Longest line we hold while waiting for its end. */
#define SSE_MAX_LINE ((size_t)1024 * 1024)
/* Longest event name. */
#define SSE_MAX_EVENT_NAME 64

/*
 * What an event callback returns: 0 to go on; SSE_END when the event ends the
 * stream (its frame is complete: sse_feed returns ERR_OK, sse_frame_end
 * counts the frame, and every byte after it, in this chunk and in later
 * ones, is ignored: see sse_ended); any other value to stop parsing before
 * the event's frame (sse_feed returns ERR_CANCELLED).
 */
#define SSE_END 2
typedef int (*sse_event_cb)(void *arg, const char *event, const char *data, size_t len);

struct sse {
    struct buf line;
    struct buf data;
    char event[SSE_MAX_EVENT_NAME + 1];
    bool has_data;
    bool last_cr;
    bool started;      /* past the stream's first bytes (a leading UTF-8 BOM is dropped) */
    unsigned char bom; /* BOM bytes matched so far at the start of the stream */
    size_t frame_end;  /* see sse_frame_end */
    bool ended;        /* a callback returned SSE_END */
    sse_event_cb cb;
    void *arg;
};

/* max_data: cap on one event's data (ERR_TOOBIG past it). */
void sse_init(struct sse *p, size_t max_data, sse_event_cb cb, void *arg);
void sse_done(struct sse *p);
/*
 * ERR_TOOBIG (line or event over its limit), ERR_CANCELLED (callback stopped),
 * ERR_PROTO (a line that is no comment and no data, event, id or retry field:
 * not an event stream), ERR_NOMEM.
 */
MUST_USE enum err sse_feed(struct sse *p, const char *data, size_t len);
/* True when no partial line or event is buffered (the stream ended on a frame boundary). */
bool sse_idle(const struct sse *p);
/* True once a callback returned SSE_END: nothing more is parsed. */
bool sse_ended(const struct sse *p);
/*
 * After sse_feed: how many bytes of the chunk it was given, from its start,
 * lie before the end of the chunk's last frame handled without error (up to
 * and including the blank line that ends it); 0 when no frame ended in the
 * chunk. When sse_feed failed, the frame that failed (its callback stopped,
 * a line or event over its limit, a line that is no field) starts there, or in an earlier chunk
 * when it is 0. A passthrough forwards exactly the frames before that point,
 * without scanning the bytes again. The LF of a CRLF that ends a frame and
 * arrives in the next chunk is not counted (it belongs to no frame).
 */
size_t sse_frame_end(const struct sse *p);

/*
 * For a passthrough: whether whole frames (data, len bytes, from a line
 * start) hold a line sse_scrub would change, and their scrubbed copy into out
 * (room for len bytes; returns its length). A comment keeps only its ':' (a
 * keep-alive still, its text gone), an "id" or "retry" line is dropped, every
 * other line (event, data, blank) and every line end is kept as it came. A
 * provider's text never reaches the app outside the event data the adapter
 * read, and no provider comment can pass for the agent's closing
 * ": x-byok-usage" line.
 */
bool sse_needs_scrub(const char *data, size_t len);
size_t sse_scrub(const char *data, size_t len, char *out);

#endif
