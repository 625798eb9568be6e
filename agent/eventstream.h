/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Incremental decoder for AWS's binary event stream framing
 * (application/vnd.amazon.eventstream), which Amazon Bedrock's ConverseStream
 * answers with instead of SSE. Each message is:
 *   total length (4 bytes, big-endian, the whole message)
 *   headers length (4 bytes, big-endian)
 *   prelude CRC32 (4 bytes, of the 8 bytes before it)
 *   headers: name length (1 byte), name, value type (1 byte), value
 *   payload (the event's JSON)
 *   message CRC32 (4 bytes, of everything before it)
 * CRC32 is the IEEE (gzip) polynomial. Header values are typed: 0/1 true and
 * false (no bytes), 2 byte, 3 int16, 4 int32, 5 int64, 6 bytes and 7 string
 * (each with a 2-byte big-endian length), 8 timestamp (8 bytes), 9 uuid (16).
 * References: the event stream encoding in the Amazon Transcribe and Lex
 * developer guides ("Event stream encoding"), and Bedrock's
 * ConverseStreamOutput.
 *
 * Bytes arrive in arbitrary chunks: a message may be split anywhere, and one
 * chunk may hold several. Only the :message-type, :event-type and
 * :exception-type headers are read (strings); the others are skipped by type.
 * Nothing here knows what an event means (provider_bedrock.c does), and
 * nothing is logged.
 */
#ifndef BYOK_AGENT_EVENTSTREAM_H
#define BYOK_AGENT_EVENTSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

/* Prelude (two lengths and its CRC) and the whole framing overhead (prelude + message CRC). */
#define EVS_PRELUDE_LEN 12
#define EVS_OVERHEAD 16
/* The format's own bounds: 16 MiB per message, 128 KiB of headers. */
#define EVS_MAX_MESSAGE ((size_t)16 * 1024 * 1024)
#define EVS_MAX_HEADERS ((size_t)128 * 1024)
/* Longest :message-type / :event-type / :exception-type value kept. */
#define EVS_MAX_NAME 64

/*
 * What a message callback returns, as for sse_event_cb: 0 to go on; EVS_END
 * when the message ends the stream (every byte after it, in this chunk and in
 * later ones, is ignored: see evs_ended); any other value to stop
 * (evs_feed returns ERR_CANCELLED).
 */
#define EVS_END 2
/*
 * One message: its :message-type ("event", "exception" or "error"; "" when
 * missing), its :event-type for an event or :exception-type for an
 * exception ("" when missing), and its payload (not NUL-terminated; valid
 * during the call only).
 */
typedef int (*evs_message_cb)(void *arg, const char *message_type, const char *event_type,
                              const char *payload, size_t len);

struct evs {
    struct buf pending; /* bytes of the message being received */
    size_t max_message; /* cap on one message's total length */
    bool ended;         /* a callback returned EVS_END */
    enum err err;       /* the first error: nothing more is parsed */
    evs_message_cb cb;
    void *arg;
};

/* max_message: cap on one message (also bounded by EVS_MAX_MESSAGE). */
void evs_init(struct evs *p, size_t max_message, evs_message_cb cb, void *arg);
void evs_done(struct evs *p);
/*
 * Feeds the next bytes. ERR_TOOBIG: a message longer than the cap (refused
 * from its prelude, before its bytes are held); ERR_PROTO: a bad prelude or
 * message CRC, a length below the minimum, headers that do not fit the
 * message or a header of an unknown type; ERR_CANCELLED: a callback stopped;
 * ERR_NOMEM. After an error every later call fails the same way.
 */
MUST_USE enum err evs_feed(struct evs *p, const char *data, size_t len);
/* True once a callback returned EVS_END: nothing more is parsed. */
bool evs_ended(const struct evs *p);
/* True when no partial message is held (the stream ended on a message boundary). */
bool evs_idle(const struct evs *p);

/* CRC32 (IEEE 802.3, as gzip and zlib's crc32), continued from crc (0 to start). */
uint32_t evs_crc32(uint32_t crc, const void *data, size_t len);

#endif
