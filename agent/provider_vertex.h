/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The "vertex" adapter: Google Vertex AI in express mode (an API key, no
 * project or location) or with a service-account key (an access token, the
 * project's regional endpoint: agent/gcptoken.h), Gemini's generateContent
 * and streamGenerateContent, translated to and from OpenAI's chat completion
 * shapes, function tools and json_schema response formats included; with a
 * service-account key also embeddings (:predict). An embeddings call with an
 * API key, the legacy functions / function_call fields, n > 1 and images that are not
 * data: URLs are ERR_UNSUPPORTED (the router tries the next candidate); a
 * tool or schema Vertex cannot take as asked is ERR_INVAL naming the field.
 * Claude models ("claude-...") are partner models that take Anthropic's
 * Messages API on :rawPredict (provider_vertex_claude, for /v1/messages:
 * messages.h), never generateContent.
 * Registered in providers.c's table; the functions below are the table's
 * entries and, for tests, the pure translations.
 */
#ifndef BYOK_AGENT_PROVIDER_VERTEX_H
#define BYOK_AGENT_PROVIDER_VERTEX_H

#include <jansson.h>

#include "agent/providers.h"
#include "common/buf.h"
#include "common/err.h"

/* The longest model name put into the URL path (the plugin's ledger bound). */
#define VERTEX_MAX_MODEL 128
/* The longest responseId taken as the answer's id. */
#define VERTEX_MAX_ID 120
/* The most function declarations one request may carry: Vertex's documented limit. */
#define VERTEX_MAX_TOOLS 128
/* The longest function name Vertex takes (FunctionDeclaration.name). */
#define VERTEX_MAX_FUNCTION_NAME 64
/*
 * The deepest JSON Schema translated (a tool's parameters, response_format's
 * schema), the root being level 1: the translation recurses once per level.
 */
#define VERTEX_MAX_SCHEMA_DEPTH 32

/* The most texts one :predict call embeds (text-embedding-005, text-multilingual-embedding-002). */
#define VERTEX_MAX_EMBED_TEXTS 250
/* outputDimensionality bounds: the text-embedding models make 768, gemini-embedding-001 3072. */
#define VERTEX_MAX_TEXT_DIMENSIONS 768
#define VERTEX_MAX_GEMINI_DIMENSIONS 3072

/*
 * Exposed for tests: an OpenAI embeddings request as a :predict body
 * {"instances": [{"content", "task_type"?}], "parameters": {"autoTruncate":
 * false, "outputDimensionality"?}} (new reference). A string or an array of
 * strings; gemini-embedding-* takes one (a longer array is ERR_UNSUPPORTED,
 * for another candidate), the others at most VERTEX_MAX_EMBED_TEXTS; token
 * ids ERR_UNSUPPORTED. dimensions -> outputDimensionality (1..768, or
 * 1..3072 for gemini-embedding); task_type, when given, one of Vertex's
 * EmbeddingTaskType names; encoding_format float only. ERR_INVAL with bad
 * naming the field otherwise.
 */
MUST_USE enum err provider_vertex_embed_request(const json_t *oreq, const char *model,
                                                struct provider_bad *bad, json_t **ret);
/*
 * A :predict answer {"predictions": [{"embeddings": {"values", "statistics":
 * {"token_count"}}}]} to OpenAI's embedding list (new reference), usage the
 * sum of token_count. ERR_UPSTREAM for Google's error object, ERR_PROTO for
 * anything else that is not such an answer.
 */
MUST_USE enum err provider_vertex_embed_answer(const json_t *resp, const char *model, json_t **ret,
                                               struct provider_usage *ret_usage);

/* The location a service-account key's calls go to when its metadata names none. */
#define VERTEX_DEFAULT_REGION "us-central1"
/* The longest region (key metadata "region") taken. */
#define VERTEX_MAX_REGION 32

/*
 * The URL prefix for a service-account key's calls, up to the
 * "/publishers/..." part: base_url as it is when it already names
 * "/projects/"; else base_url + "/projects/{project}/locations/{region}",
 * the built-in global host https://aiplatform.googleapis.com becoming the
 * region's https://{region}-aiplatform.googleapis.com (unless the region is
 * "global"). region: the key metadata's, else VERTEX_DEFAULT_REGION.
 * ERR_CONFIG for an unusable base_url, ERR_TOOBIG past size.
 */
MUST_USE enum err provider_vertex_sa_prefix(const json_t *entry, const json_t *metadata,
                                            const char *project, char *out, size_t size,
                                            bool *ret_local);

/*
 * The upstream request: base_url + "/publishers/google/models/{model}:generateContent"
 * (streamed: ":streamGenerateContent?alt=sse"), the key in an x-goog-api-key
 * header only (never in the URL), the body from provider_vertex_request.
 * ERR_UNSUPPORTED for embeddings and what the adapter does not translate;
 * ERR_INVAL with out->bad naming the field for a request that cannot be.
 */
MUST_USE enum err provider_vertex_build(const struct provider_call *c, struct provider_http *out);

/*
 * Is model Claude on Vertex ("claude-...", e.g. claude-sonnet-4@20250514)?
 * Claude is a partner model: it takes Anthropic's Messages API
 * (rawPredict), not generateContent, so chat is ERR_UNSUPPORTED for it.
 */
bool provider_vertex_claude_model(const char *model);

/*
 * Claude's Messages API on Vertex (messages.h makes the body): out takes body
 * (malloc'd, len bytes) whatever the outcome, then POST {the key's regional
 * prefix}/publishers/anthropic/models/{c->model}:rawPredict (or
 * :streamRawPredict for c->stream) with the JSON headers and c->token as a
 * bearer token. ERR_UNSUPPORTED for an express-mode API key (partner models
 * take service-account credentials only), ERR_CONFIG for a model that is not
 * Claude or cannot be put in the URL, or no token.
 */
MUST_USE enum err provider_vertex_claude(const struct provider_call *c, char *body, size_t len,
                                         struct provider_http *out);

/* A 2xx GenerateContentResponse to a chat.completion (see provider_vertex_answer). */
MUST_USE enum err provider_vertex_response(enum provider_op op, const char *body, size_t len,
                                           const char *model, json_t **ret_json,
                                           struct provider_usage *ret_usage);

/*
 * Google answers an API key it does not know with 400 INVALID_ARGUMENT whose
 * error.details hold an ErrorInfo with reason API_KEY_INVALID (a missing or
 * refused one with 401 / 403, which the status alone says): true for such
 * a body. Reads the JSON body only to classify it; its text goes nowhere.
 */
bool provider_vertex_key_refused(long status, const char *body, size_t len);

/*
 * One SSE event of streamGenerateContent?alt=sse (each a whole
 * GenerateContentResponse with the next piece of text, or whole function
 * calls) to chat.completion.chunk frames: text as content deltas, each
 * function call as a tool call opened with its id and name and then its
 * arguments. The first event adds the role chunk; the event that carries the
 * candidate's finishReason (or a blocked prompt's promptFeedback) adds the
 * finish chunk, the usage chunk (unless st->skip_usage_chunk) and [DONE], and
 * sets st->done: Vertex sends no end marker of its own. ERR_PROTO for data
 * that is not a JSON object or a function call without a usable name; an
 * error object sets st->failed (its text is never read). Nothing of an event
 * that fails is appended to out.
 */
MUST_USE enum err provider_vertex_stream_event(struct provider_stream *st, const char *event,
                                               const char *data, size_t len, struct buf *out);

/*
 * Exposed for tests. The GenerateContentRequest body for an OpenAI chat
 * request (new reference in *ret). bad (may be NULL) names the field when the
 * result is ERR_INVAL.
 */
MUST_USE enum err provider_vertex_request(const json_t *openai_req, struct provider_bad *bad,
                                          json_t **ret);

/*
 * A parsed GenerateContentResponse to OpenAI's chat.completion (new reference)
 * and its usage. ERR_UPSTREAM for Google's error object, ERR_PROTO when it has
 * neither candidates nor a blocked prompt's promptFeedback.
 */
MUST_USE enum err provider_vertex_answer(const json_t *resp, const char *model, json_t **ret,
                                         struct provider_usage *ret_usage);

#endif
