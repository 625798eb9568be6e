/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Helpers the provider adapters share (providers.c, provider_bedrock.c,
 * provider_vertex.c, and messages.c's passthrough): building the URL,
 * recording why a request cannot be translated, reading a provider's token
 * counts, mapping finish reasons, checking tool calls, and writing the
 * OpenAI shapes every translating adapter answers with (usage, the answer's
 * message, the stream's chunks and its end). Internal to the adapters:
 * nothing else includes it. Like the adapters, these never log and never
 * see the key.
 */
#ifndef BYOK_AGENT_PROVIDER_UTIL_H
#define BYOK_AGENT_PROVIDER_UTIL_H

#include <jansson.h>
#include <stdbool.h>

#include "agent/providers.h"
#include "common/buf.h"
#include "common/err.h"

/* ---- the request ---------------------------------------------------------------------- */

/*
 * A catalog entry's base_url (borrowed), its length without trailing slashes,
 * and whether the entry is local. ERR_CONFIG when it is missing or neither
 * https nor (for a local entry) http.
 */
MUST_USE enum err prov_base_url(const json_t *entry, const char **ret_base, size_t *ret_len,
                                bool *ret_local);

/*
 * out->url: the entry's base_url without trailing slashes, then suffix;
 * out->allow_http set for a local entry. ERR_CONFIG as prov_base_url,
 * ERR_TOOBIG when the URL does not fit out->url.
 */
MUST_USE enum err prov_url(struct provider_http *out, const json_t *entry, const char *suffix);

/* The request body: body serialised into out->body (owned by out). ERR_NOMEM. */
MUST_USE enum err prov_dump(const json_t *body, struct provider_http *out);

/*
 * The headers every JSON request carries: Content-Type, accept (a whole
 * "Accept: ..." line) and an empty Expect (curl's 100-continue round trip
 * for large bodies is not wanted).
 */
MUST_USE enum err prov_json_headers(struct provider_http *out, const char *accept);

/*
 * Records why a request cannot be translated: the field (fmt, printf-formatted)
 * and the reason (msg) in bad, which may be NULL. Always returns ERR_INVAL.
 */
MUST_USE enum err prov_bad(struct provider_bad *bad, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The text of a message content (new reference): a string as it is, or the
 * text of an array's parts joined with newlines (at most 16 MiB). NULL when
 * out of memory.
 */
json_t *prov_text_of(const json_t *content);

/*
 * OpenAI's tools (an array of {type: function, function: {name, description,
 * parameters}}) as a provider's array (new reference): each checked (a
 * non-empty name, a string description when there is one, an object as
 * parameters when there are some; null parameters count as none when
 * null_params), then turned into the provider's tool by convert, which gets
 * borrowed views of the three (description and parameters NULL when absent)
 * and returns a new reference, NULL when out of memory. ERR_INVAL with bad
 * naming the field, ERR_NOMEM.
 */
MUST_USE enum err prov_tools(const json_t *tools, bool null_params,
                             json_t *(*convert)(const json_t *name, const json_t *desc,
                                                const json_t *params),
                             struct provider_bad *bad, json_t **ret);

/* What a request's OpenAI tool_choice asks for (prov_tool_choice). */
enum prov_choice {
    PROV_CHOICE_UNSET, /* missing or null */
    PROV_CHOICE_AUTO,
    PROV_CHOICE_NONE,
    PROV_CHOICE_REQUIRED,
    PROV_CHOICE_FUNCTION, /* {type: function, function: {name}} */
    PROV_CHOICE_INVALID,  /* none of OpenAI's shapes: the adapter says why, naming tool_choice */
};

/*
 * A request's tool_choice: "auto", "none", "required", or one function by
 * name, whose name (borrowed, a string) goes to *ret_name (left alone
 * otherwise). How each is translated, or refused, is the adapter's.
 */
enum prov_choice prov_tool_choice(const json_t *oreq, const json_t **ret_name);

/*
 * Checks tool call j of message mi (messages[mi].tool_calls[j]): a non-empty
 * id, a non-empty function name and arguments as a string; borrowed views of
 * them go to the ret_ pointers. ERR_INVAL with bad naming the field otherwise.
 */
MUST_USE enum err prov_call_check(const json_t *call, size_t mi, size_t j, struct provider_bad *bad,
                                  const json_t **ret_id, const json_t **ret_name,
                                  const json_t **ret_args);

/*
 * A checked tool call's arguments string parsed to the JSON object it holds
 * (new reference; an empty string is an empty object). ERR_INVAL with bad
 * naming the field when it holds no object, ERR_NOMEM.
 */
MUST_USE enum err prov_call_input(const json_t *args, size_t mi, size_t j, struct provider_bad *bad,
                                  json_t **ret_input);

/*
 * OpenAI's stop (a string or an array of strings) set in out under key, as an
 * array; nothing when it is missing or null. ERR_INVAL with bad naming the
 * field when it is anything else.
 */
MUST_USE enum err prov_stop_sequences(const json_t *oreq, const char *key, struct provider_bad *bad,
                                      json_t *out);

/*
 * The text of message mi's content (new reference, as prov_text_of): a string
 * or an array of text parts. ERR_INVAL with bad naming the field, ERR_NOMEM.
 */
MUST_USE enum err prov_message_text(const json_t *content, size_t mi, struct provider_bad *bad,
                                    json_t **ret_text);

/*
 * A tool message's tool_call_id (borrowed; a non-empty string) and the text
 * of its content (new reference, as prov_text_of; a string or an array of
 * text parts). ERR_INVAL with bad naming the field, ERR_NOMEM.
 */
MUST_USE enum err prov_tool_result(const json_t *m, size_t mi, struct provider_bad *bad,
                                   const json_t **ret_id, json_t **ret_text);

/*
 * The output cap the app asked for: max_completion_tokens, else max_tokens
 * (OpenAI's newer field wins, as in OpenAI's API; a positive integer, the
 * proxy has bounded both), 0 when neither is given. One rule for every
 * translating adapter.
 */
long long prov_max_output(const json_t *oreq);

/* ---- prompt-cache hints (provider_cache_check validates them first) ------------------- */

/* Does holder (a message, a content part, a tool) carry a cache_control object? */
bool prov_cache_hint(const json_t *holder);

/* Does any part of a content array carry one? false for a string content. */
bool prov_cache_in_content(const json_t *content);

/*
 * holder's cache_control as Anthropic's (new reference): {"type": "ephemeral"}
 * and its "ttl" when it has one. NULL when out of memory.
 */
json_t *prov_cache_anthropic(const json_t *holder);

/*
 * Does the request carry a cache_control member anywhere the hints may be
 * (any value, so a stripped copy is made even for one the check let through
 * as null)?
 */
bool prov_cache_present(const json_t *req);

/* Removes every cache_control from messages, their parts and tools; true if one was there. */
bool prov_cache_strip(json_t *req);

/* ---- the answer ----------------------------------------------------------------------- */

/* A provider's token count: an integer or a real (truncated), clamped to 0..PROVIDER_MAX_TOKENS. */
long long prov_count(const json_t *v);

/* The smaller of a and b. */
long long prov_min(long long a, long long b);

/*
 * Text characters of a message content, for the prompt estimates: a string's
 * length, or the lengths of the "text" strings of an array's parts (OpenAI's
 * parts, Anthropic's blocks); while depth > 0, also those of each part's own
 * "content" (a tool_result's), depth levels down. 0 for anything else. The
 * caller bounds the sums (the request body is capped).
 */
long long prov_content_chars(const json_t *content, int depth);

/* Tokens for n characters of text (4 a token, rounded up), at most PROVIDER_MAX_TOKENS. */
long long prov_est_tokens(long long chars);

/* OpenAI's usage object for u (new reference; NULL when out of memory). */
json_t *prov_usage_json(const struct provider_usage *u);

/* One provider finish reason and OpenAI's finish_reason for it; a table ends with NULLs. */
struct prov_finish_map {
    const char *from, *to;
};

/*
 * A provider's finish reason as OpenAI's finish_reason, by map: NULL for none
 * (not finished yet), "stop" for a reason the map does not name.
 */
const char *prov_finish(const struct prov_finish_map *map, const char *reason);

/*
 * A provider's tool call block as OpenAI's {id, type: function, function:
 * {name, arguments}} (new reference): its id (under id_key) and name checked
 * and bounded by prov_tool_ident, its "input" serialised as the arguments
 * ("{}" when missing). NULL when the id or name is not usable.
 */
json_t *prov_tool_call(const json_t *blk, const char *id_key);

/*
 * A tool call block's id (under id_key) and name: non-empty strings of at most
 * PROVIDER_MAX_TOOL_ID and PROVIDER_MAX_TOOL_NAME bytes, else false.
 */
/*
 * Whether an Anthropic-style stream frame (event name, parsed data j, its
 * "type" or NULL) is the provider failing: an "error" event whatever its
 * data says, a data type "error", or a top-level "error" object or string
 * (a gateway's or proxy's shape). Such a frame is never forwarded nor read:
 * its text may echo the request, and the key with it.
 */
bool prov_stream_error_frame(const char *event, const json_t *j, const char *type);

bool prov_tool_ident(const json_t *blk, const char *id_key, const char **ret_id,
                     const char **ret_name);

/*
 * Appends tc (taken) to an answer's tool_calls. ERR_PROTO when tc is NULL (a
 * tool call the app could not use) or there are PROVIDER_MAX_TOOL_CALLS
 * already, ERR_NOMEM.
 */
MUST_USE enum err prov_tool_calls_add(json_t *tool_calls, json_t *tc);

/*
 * An answer's assistant message (new reference) from its text and tool_calls
 * (taken): as OpenAI, content null when the answer is only tool calls, and no
 * tool_calls field when there are none. NULL when out of memory.
 */
json_t *prov_answer_message(const struct buf *text, json_t *tool_calls);

/* ---- the stream ----------------------------------------------------------------------- */

/* Appends "data: <json>\n\n" for one chunk (taken; NULL is ERR_NOMEM). */
MUST_USE enum err prov_emit(struct buf *out, json_t *chunk);

/* A chat.completion.chunk of the stream with one choice: delta (taken) and finish (may be NULL). */
json_t *prov_chunk(const struct provider_stream *st, json_t *delta, const char *finish);

/* A stream event's block index, an integer under key; -1 when it has none. */
long long prov_block_index(const json_t *ev, const char *key);

/* The stream's first chunk: the assistant role with empty content. */
MUST_USE enum err prov_stream_role(struct provider_stream *st, struct buf *out);

/* A chunk of text (a JSON string), counted into the completion estimate. */
MUST_USE enum err prov_stream_text(struct provider_stream *st, const json_t *text, struct buf *out);

/*
 * A tool call block starting at the provider's block index: a chunk that opens
 * OpenAI tool call number st->tool_calls (its ordinal among the answer's tool
 * calls) with the block's id (under id_key) and name and empty arguments.
 * ERR_PROTO when the id or name is not usable, index is negative or there are
 * PROVIDER_MAX_TOOL_CALLS already.
 */
MUST_USE enum err prov_stream_tool_start(struct provider_stream *st, const json_t *blk,
                                         const char *id_key, long long index, struct buf *out);

/*
 * A fragment of a tool call's arguments (a JSON string) at the provider's
 * block index: a chunk for the open tool call when the block is that call's
 * and the fragment is not empty, counted into the completion estimate;
 * nothing otherwise.
 */
MUST_USE enum err prov_stream_tool_args(struct provider_stream *st, const json_t *frag,
                                        long long index, struct buf *out);

/* The end of the block at the provider's index: closes the open tool call if it is that one. */
void prov_stream_tool_stop(struct provider_stream *st, long long index);

/*
 * The stream's end: the finish chunk (when finish is not NULL), the usage
 * chunk of empty choices (OpenAI's include_usage shape) unless
 * st->skip_usage_chunk, then [DONE]. Sets st->done, even on an error.
 */
MUST_USE enum err prov_stream_end(struct provider_stream *st, const char *finish, struct buf *out);

#endif
