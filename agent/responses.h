/* SPDX-License-Identifier: MPL-2.0 */
/*
 * OpenAI's Responses API (POST /v1/responses) bridged onto Chat Completions,
 * stateless: a Responses request becomes an OpenAI chat request (which the
 * proxy routes and sends like any other), and the chat answer, or its stream
 * of chat.completion.chunk frames, becomes a Responses object, or its stream
 * of Responses events. Pure translation: no I/O, no logging, no keys.
 * Reference: https://platform.openai.com/docs/api-reference/responses
 *
 * Nothing is stored: previous_response_id, conversation, background, prompt
 * (stored prompts) and include are refused, as are built-in tools; every
 * answer says "store": false.
 */
#ifndef BYOK_AGENT_RESPONSES_H
#define BYOK_AGENT_RESPONSES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/providers.h"
#include "common/buf.h"
#include "common/err.h"

/* The most input items, content parts of one message, and tools a request may carry. */
#define RESPONSES_MAX_ITEMS 4096
#define RESPONSES_MAX_PARTS 1024
#define RESPONSES_MAX_TOOLS 512
/* metadata: OpenAI's own bounds (16 pairs, keys of 64 characters, string values of 512). */
#define RESPONSES_MAX_METADATA 16
#define RESPONSES_MAX_METADATA_KEY 64
#define RESPONSES_MAX_METADATA_VALUE 512
/* text.format json_schema name: OpenAI's bound. */
#define RESPONSES_MAX_SCHEMA_NAME 64
/* What one chat chunk may hold beyond its escaped delta (id, model, fields): see
 * responses_stream_new. */
#define RESPONSES_CHUNK_SLACK ((size_t)64 * 1024)
/* The longest response id a caller may give (the agent's is "resp_" + 24 hex digits). */
#define RESPONSES_MAX_ID 64

/*
 * Why a request is refused: the field as a path into the app's request
 * ("input[2].content[0].type"), the error code (invalid_type, invalid_value,
 * unsupported_parameter, missing_required_parameter) and the reason. Never
 * holds a value from the request, so it is safe to log and to answer with.
 */
struct responses_bad {
    char param[128];
    const char *code;
    char msg[192];
};

/*
 * The chat request for a Responses request (new reference in *ret_chat), and
 * the fields the answer echoes (instructions, tools, metadata, ...: a new
 * object in *ret_echo, for responses_answer and responses_stream_new).
 * ERR_INVAL with bad filled when the request is refused, ERR_NOMEM.
 * Fields this module does not know are passed on to the chat request as they
 * are, as the chat path passes on the fields it does not know.
 */
MUST_USE enum err responses_request(const json_t *rreq, struct responses_bad *bad,
                                    json_t **ret_chat, json_t **ret_echo);

/*
 * The Responses object for a chat answer (OpenAI's chat.completion shape) and
 * the usage the call is counted with: id is the response's ("resp_..."),
 * model the name when the answer has none. ERR_PROTO when the answer has no
 * choices[0].message, ERR_NOMEM.
 */
MUST_USE enum err responses_answer(const json_t *echo, const json_t *chat,
                                   const struct provider_usage *u, const char *id,
                                   long long created_at, const char *model, json_t **ret);

struct responses_stream;

/*
 * A stream translator. cap bounds what it holds (the answer's text and tool
 * call arguments together: upstream.max_response_bytes) and each chat chunk
 * it parses. echo is referenced, id copied (at most RESPONSES_MAX_ID bytes).
 */
MUST_USE enum err responses_stream_new(const json_t *echo, const char *id, long long created_at,
                                       const char *model, size_t cap,
                                       struct responses_stream **ret);
/* Wipes what it held and frees; NULLs the caller's pointer. Accepts NULL. */
void responses_stream_free(struct responses_stream **s);
/*
 * Feeds OpenAI chat stream bytes ("data: {chunk}" frames, split anywhere,
 * "data: [DONE]" ignored) and appends the Responses events they make to out:
 * response.created and response.in_progress first, then output items and
 * their deltas. On an error (ERR_PROTO: a frame that is no chunk; ERR_TOOBIG:
 * past cap, or out's cap; ERR_NOMEM) out keeps the events of the frames
 * before the failing one, whole, and the translator takes nothing more.
 */
MUST_USE enum err responses_stream_feed(struct responses_stream *s, const char *data, size_t len,
                                        struct buf *out);
/*
 * Ends the stream: the .done events of every open item, then
 * response.completed (response.incomplete when the answer was cut by the
 * output cap or a content filter) with the whole response and usage u.
 */
MUST_USE enum err responses_stream_finish(struct responses_stream *s,
                                          const struct provider_usage *u, struct buf *out);
/*
 * Ends the stream as failed: response.failed, whose response has status
 * "failed", the error {code, message} (the agent's words) and the items as
 * far as they came, each "incomplete".
 */
MUST_USE enum err responses_stream_fail(struct responses_stream *s, const char *code,
                                        const char *message, const struct provider_usage *u,
                                        struct buf *out);

#endif
