/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Anthropic's Messages API on the agent socket (POST /v1/messages and
 * /v1/messages/count_tokens), a passthrough to providers whose catalog
 * api_style is "anthropic": the app's body goes on as it was written, its
 * "model" alone rewritten to the provider's model name, and the answer (JSON
 * or the SSE events message_start ... message_stop) comes back as the
 * provider sent it. This module holds the pure parts: the body's checks, what
 * the router needs to know of it (needs, prompt estimate), the body with the
 * model spliced in, the app's anthropic-version and anthropic-beta headers,
 * the upstream request, the usage read from answers and events (the
 * Anthropic adapter's reader), and the errors in Anthropic's shape. Claude on
 * Amazon Bedrock takes the same body through InvokeModel (Bedrock's
 * anthropic_version added, model and stream removed, on the bytes) and
 * answers in Anthropic's shape, its stream's events wrapped in the binary
 * event stream's chunks: messages_bedrock_* below.
 * Reference: https://docs.anthropic.com/en/api/messages,
 * /en/api/messages-count-tokens, /en/api/messages-streaming, /en/api/errors.
 */
#ifndef BYOK_AGENT_MESSAGES_H
#define BYOK_AGENT_MESSAGES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/providers.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/secret.h"

/* The routes; every reply on them (errors included) is in Anthropic's shape. */
#define MESSAGES_ROUTE "/v1/messages"
#define MESSAGES_COUNT_ROUTE "/v1/messages/count_tokens"
/* The longest anthropic-beta value taken from the app (a list of feature names). */
#define MESSAGES_MAX_BETA 512
/* anthropic-version: a date, YYYY-MM-DD. */
#define MESSAGES_VERSION_LEN 10

/* Why a body was refused: the field and the reason, never a value from the body. */
struct messages_bad {
    char param[32];
    char msg[128];
};

/*
 * Checks what the agent relies on in a Messages body (an object): model a
 * string if present; messages a non-empty array of objects with a string
 * role and string or array content; max_tokens an integer from 1 to
 * PROVIDER_MAX_TOKENS (required unless count, count_tokens takes none);
 * stream a boolean if present; system a string or an array, tools an array,
 * if present. Everything else is the provider's to judge. ERR_INVAL with bad.
 */
MUST_USE enum err messages_validate(const json_t *req, bool count, struct messages_bad *bad);

/*
 * The route_need bits of a Messages body, as route_needs gives them for
 * chat: chat; streaming for "stream": true (never for count); tools for a
 * non-empty tools or mcp_servers array; vision for an image or document
 * (PDF) content block anywhere in messages (a tool_result's content
 * included).
 */
unsigned messages_needs(const json_t *req, bool count);

/*
 * Prompt tokens estimated from a Messages body, by provider_prompt_estimate's
 * rule: text characters / 4 (system, the text of content blocks and of
 * tool_result contents) + 4 per message + 3. Images, documents and tool
 * definitions are not counted.
 */
long long messages_prompt_estimate(const json_t *req);

/*
 * The app's body (len bytes, a JSON object jansson has parsed) with its
 * top-level "model" value replaced by model (JSON-escaped), or with
 * "model" added first when it has none; every other byte as it was. *ret
 * is malloc'd (*ret_len bytes). ERR_PROTO when the body is not an object,
 * ERR_NOMEM.
 */
MUST_USE enum err messages_body(const char *body, size_t len, const char *model, char **ret,
                                size_t *ret_len);

/* An anthropic-version value the agent forwards: a date YYYY-MM-DD. */
bool messages_version_valid(const char *v);
/*
 * An anthropic-beta value the agent forwards: 1..MESSAGES_MAX_BETA bytes,
 * comma-separated tokens of letters, digits, '-' and '_' (spaces after a
 * comma allowed), no empty token.
 */
bool messages_beta_valid(const char *v);

/* One upstream request: everything borrowed. */
struct messages_call {
    const char *body; /* the app's body */
    size_t len;
    const char *model; /* the provider's model name */
    bool stream;
    bool count;             /* count_tokens */
    const char *version;    /* the app's anthropic-version, or NULL for the default */
    const char *beta;       /* the app's anthropic-beta, or NULL */
    const json_t *entry;    /* catalog entry: base_url, local */
    const json_t *metadata; /* the key's metadata (Bedrock, Vertex: region) or NULL */
    const struct secret *key;
    const struct secret *token; /* Vertex: the service-account key's access token */
};

/*
 * base_url + /messages (or /messages/count_tokens), the body with the model
 * spliced in, JSON headers, anthropic-version, anthropic-beta, and the key
 * in x-api-key (the wiped header list).
 */
MUST_USE enum err messages_build(const struct messages_call *m, struct provider_http *out);

/*
 * The adapter proxy.c calls a passthrough with: its response reads a 2xx
 * answer's usage (ERR_UPSTREAM for Anthropic's error object in a 2xx,
 * ERR_PROTO for no JSON object; ret_json stays NULL), its stream_event reads
 * usage from message_start and message_delta, ends at message_stop and fails
 * at an error event, forwarding nothing itself (stream_passthrough).
 */
const struct provider_adapter *messages_adapter(void);

/*
 * Does the body's max_tokens fit the catalog's max_output_tokens for model
 * (entry's models[])? True when either is missing: the router checks the
 * candidates it plans, this also an explicit provider/model.
 */
bool messages_output_fits(const json_t *req, const json_t *entry, const char *model);

/* Anthropic's error type for an HTTP status the agent answers with. */
const char *messages_error_type(int status);

/*
 * {"type":"error","error":{"type":...,"message":...},"request_id":...}
 * (new reference, NULL when out of memory); request_id may be NULL (null).
 */
json_t *messages_error_json(int status, const char *message, const char *request_id);

/* ---- Claude on Amazon Bedrock (InvokeModel) ---------------------------------------------- */

/* The anthropic_version Bedrock's InvokeModel takes in the body of a Claude call. */
#define MESSAGES_BEDROCK_VERSION "bedrock-2023-05-31"

/*
 * The app's body (len bytes, a JSON object jansson has parsed) as Bedrock's
 * InvokeModel takes it for Claude: its top-level "model" and "stream"
 * members removed (the model id and the stream are in the URL), then
 * "anthropic_version": version added first unless the body has one, and
 * beta (a messages_beta_valid value, or NULL) as "anthropic_beta": [names]
 * unless the body has that member. Every other byte as it was. *ret is
 * malloc'd (*ret_len bytes). ERR_PROTO when the body is not an object,
 * ERR_NOMEM.
 */
MUST_USE enum err messages_invoke_body(const char *body, size_t len, const char *version,
                                       const char *beta, char **ret, size_t *ret_len);

/*
 * Bedrock's upstream request: POST base_url/model/{id}/invoke (or
 * /invoke-with-response-stream) with messages_invoke_body, authenticated as
 * the Bedrock adapter does (provider_bedrock_invoke: bearer or SigV4).
 * ERR_UNSUPPORTED for count_tokens; the adapter's errors otherwise.
 */
MUST_USE enum err messages_bedrock_build(const struct messages_call *m, struct provider_http *out);

/*
 * The adapter for /v1/messages on Bedrock: its response is the passthrough's
 * (InvokeModel answers in Anthropic's shape); its stream_event takes the
 * binary event stream's messages: a "chunk" event's {"bytes": base64} holds
 * one Anthropic event's JSON, appended to out as the SSE frame
 * "event: <type>\ndata: <json>\n\n" and read for usage as the passthrough
 * reads it, with the last chunk's amazon-bedrock-invocationMetrics
 * (inputTokenCount, outputTokenCount) when Anthropic's usage is missing.
 * ERR_PROTO for a chunk whose payload, base64 or event is not readable.
 */
const struct provider_adapter *messages_bedrock_adapter(void);

/* Exposed for tests and fuzzing: the adapter's stream_event. */
MUST_USE enum err messages_bedrock_event(struct provider_stream *st, const char *event,
                                         const char *data, size_t len, struct buf *out);

/* ---- Claude on Vertex AI (rawPredict) ------------------------------------------------------ */

/* The anthropic_version Vertex AI takes in the body of a Claude call. */
#define MESSAGES_VERTEX_VERSION "vertex-2023-10-16"

/*
 * The app's body as Vertex's rawPredict takes it for Claude: its top-level
 * "model" removed (the model is in the URL; "stream" stays, as Anthropic's
 * SDK sends it), "anthropic_version": version added first unless the body
 * has one; every other byte as it was. Errors as messages_invoke_body's.
 */
MUST_USE enum err messages_raw_predict_body(const char *body, size_t len, const char *version,
                                            char **ret, size_t *ret_len);

/*
 * Vertex's upstream request (provider_vertex_claude: the service-account
 * key's regional :rawPredict or :streamRawPredict, its access token as a
 * bearer token) with messages_raw_predict_body, and the app's anthropic-beta
 * as a header. The answer is Anthropic's message or SSE stream:
 * messages_adapter reads it. ERR_UNSUPPORTED for count_tokens and an express
 * API key.
 */
MUST_USE enum err messages_vertex_build(const struct messages_call *m, struct provider_http *out);

/* Is route (a request's route label) one of the Messages routes? */
bool messages_route(const char *route);

#endif
