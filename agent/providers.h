/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Provider adapters, a static table keyed by the catalog's api_style:
 *   "openai"    OpenAI and every OpenAI-compatible API (DeepSeek, Mistral,
 *               OpenRouter, Perplexity, Gemini's OpenAI endpoint, HuggingFace,
 *               Ollama, vLLM, LM Studio): Authorization: Bearer
 *   "azure"     Azure OpenAI: api-key header, deployment URL, api-version
 *   "anthropic" Anthropic Messages API, translated to and from OpenAI's chat
 *               completion shapes, streaming events included
 *   "cohere"    Cohere's v2 Chat and Embed APIs, translated likewise:
 *               Authorization: Bearer
 *   "vertex"    Vertex AI express mode (Gemini generateContent), likewise
 *               translated: provider_vertex.h
 *   "bedrock"   Amazon Bedrock's Converse API, translated likewise, its binary
 *               event stream included (provider_bedrock.h): Authorization:
 *               Bearer for an API key, a Signature Version 4 for IAM keys
 * An adapter builds the upstream HTTP request from an OpenAI-shaped request,
 * turns a buffered response into OpenAI's shape, and turns one streamed SSE
 * event into OpenAI chat.completion.chunk bytes. Adapters never log and never
 * copy the key anywhere but the (wiped) curl header list.
 */
#ifndef BYOK_AGENT_PROVIDERS_H
#define BYOK_AGENT_PROVIDERS_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <time.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/secret.h"

enum provider_op { PROVIDER_CHAT, PROVIDER_EMBEDDINGS };

/*
 * The most tokens of one kind one call may report: 10x the largest context
 * window we know of (~10^7). Provider usage counts are clamped to
 * 0..PROVIDER_MAX_TOKENS (see provider_usage_from_openai).
 */
#define PROVIDER_MAX_TOKENS 100000000LL
/* The highest catalog price (USD per 1M tokens) a cost is computed from: the plugin's bound. */
#define PROVIDER_MAX_PRICE 100000.0
/*
 * The anthropic-version header the agent sends to Anthropic: always for the
 * translated chat, and on /v1/messages when the app sends none
 * (https://docs.anthropic.com/en/api/versioning).
 */
#define PROVIDER_ANTHROPIC_VERSION "2023-06-01"

/* The highest web_search_per_1k (USD per 1,000 searches) a cost is computed from: the plugin's. */
#define PROVIDER_MAX_SEARCH_PRICE 1000.0

/*
 * One call's tokens. prompt_tokens counts every input token, as OpenAI's does:
 * cached_tokens (prompt-cache reads) and cache_write_tokens (prompt-cache
 * writes, Anthropic's cache_creation_input_tokens, Bedrock's
 * cacheWriteInputTokens) are parts of it, and cache_write_1h_tokens the part
 * of the writes made with Anthropic's 1-hour TTL. provider_cost prices each
 * part at its own catalog price. web_search_requests: the searches Anthropic's
 * server-side web search tool made (usage.server_tool_use), billed apart from
 * tokens; clamped to 0..PROVIDER_MAX_TOKENS like the counts.
 */
struct provider_usage {
    long long prompt_tokens;
    long long completion_tokens;
    long long cached_tokens;
    long long cache_write_tokens;
    long long cache_write_1h_tokens;
    long long web_search_requests;
    bool seen;
};

/* What an adapter needs to build one upstream request. All borrowed. */
struct provider_call {
    enum provider_op op;
    json_t *req;       /* the app's OpenAI-shaped request; may be modified */
    const char *model; /* the provider's model name to ask for */
    bool stream;
    const json_t *entry;    /* catalog entry from creds: base_url, local, models ... */
    const json_t *metadata; /* key metadata (Azure deployment, api_version) or NULL */
    const struct secret *key;
    long default_max_tokens;
    time_t now; /* the time a request is signed at (Bedrock IAM keys); 0: the clock's */
    /*
     * The access token traded for a service-account key (agent/gcptoken.h),
     * sent instead of the key; NULL for every other key.
     */
    const struct secret *token;
};

/*
 * Why a request cannot be translated (build returned ERR_INVAL): the field, as
 * a path into the app's request ("messages[2].tool_calls[0].function.arguments"),
 * and the reason. Empty when the adapter did not say. Never holds a value from
 * the request, so it is safe to log and to answer with.
 */
struct provider_bad {
    char param[128];
    char msg[128];
};

/* The upstream request; body and headers are owned (handed to upstream_xfer_start). */
struct provider_http {
    char url[4096];
    char *body;
    size_t body_len;
    struct curl_slist *headers;
    bool allow_http;
    struct provider_bad bad; /* set with ERR_INVAL when the adapter knows the field */
};

/* Per-stream translation state. */
struct provider_stream {
    char id[128];
    char model[260];
    long long created;
    bool started;
    bool done;   /* the stream's end marker was seen ([DONE] / message_stop) */
    bool failed; /* the provider sent an error event (its text is not kept) */
    struct provider_usage usage;
    bool usage_final; /* the provider's usage for the whole answer was seen */
    /*
     * Completion tokens estimated from what was forwarded so far, for a stream
     * that ends without usage_final: one per OpenAI chunk (OpenAI sends one
     * token per chunk), text bytes / 4 per Anthropic or Cohere delta.
     */
    long long est_completion;
    /*
     * Anthropic tool_use blocks (Cohere, Bedrock and Vertex tool calls): how
     * many have started (the next OpenAI tool_calls index) and the provider's
     * index of the open one, whose input_json_delta (tool-call-delta) events
     * become that tool call's argument fragments.
     */
    int tool_calls;
    bool tool_open;
    long long tool_block;
    /*
     * The app did not ask for the usage chunk (stream_options.include_usage),
     * which the adapters ask the provider for anyway: set by the caller. Its
     * chunk of empty "choices" is then not the app's: Anthropic's translation
     * leaves it out, and an OpenAI-style one sets usage_tail when it comes
     * (its usage read), for the caller to end the stream there instead of
     * forwarding it (SDK loops reading choices[0] of every chunk break on it).
     */
    bool skip_usage_chunk;
    bool usage_tail;
};

/* The most texts Cohere's /v2/embed takes in one call (its API reference): more are refused. */
#define PROVIDER_COHERE_MAX_TEXTS 96

/* The most tool calls one answer may carry, and the longest tool call id and name taken from it. */
#define PROVIDER_MAX_TOOL_CALLS 1024
#define PROVIDER_MAX_TOOL_ID 256
#define PROVIDER_MAX_TOOL_NAME 256

/* How a provider frames a stream: server-sent events, or AWS's binary event stream. */
enum provider_framing { PROVIDER_FRAMING_SSE, PROVIDER_FRAMING_EVENTSTREAM };

struct provider_adapter {
    const char *api_style;
    bool stream_passthrough; /* upstream SSE is already OpenAI's: forward bytes as they are */
    MUST_USE enum err (*build)(const struct provider_call *c, struct provider_http *out);
    /*
     * A 2xx body to OpenAI's shape (new reference) and its usage. ret_json may
     * be NULL when only usage is wanted (passthrough adapters may then skip
     * the full parse); ERR_PROTO when the body is not a JSON object,
     * ERR_UPSTREAM when it is the provider's error (its text is never read).
     */
    MUST_USE enum err (*response)(enum provider_op op, const char *body, size_t len,
                                  const char *model, json_t **ret_json,
                                  struct provider_usage *ret_usage);
    /* One SSE event; appends OpenAI SSE bytes to out (not for passthrough adapters' forwarding). */
    MUST_USE enum err (*stream_event)(struct provider_stream *st, const char *event,
                                      const char *data, size_t len, struct buf *out);
    /*
     * How the provider frames a stream: SSE (the zero value), or Bedrock's
     * AWS binary event stream (agent/eventstream.h), whose messages reach
     * stream_event as events named by their :event-type ("error" for an
     * exception).
     */
    enum provider_framing framing;
    /*
     * Does a non-2xx answer (status, its body as far as it was kept) say the
     * key was refused, though its status is neither 401 nor 403 (which always
     * do)? Google answers an API key it does not know with 400
     * INVALID_ARGUMENT. NULL: the status alone says. Only classifies: the
     * body's text is never passed on.
     */
    bool (*key_refused)(long status, const char *body, size_t len);
};

/*
 * A stream request's answer that came back whole (a server that ignored
 * "stream"), OpenAI-shaped (the adapter's response), as the stream it would
 * have been: appends to out, as "data: " frames, per choice a
 * chat.completion.chunk whose delta is the message (role, content, tool calls
 * with their index, refusal ...) and one with its finish_reason, then with
 * include_usage the chunk of empty choices carrying the answer's usage (when
 * it has one), then [DONE]. ERR_PROTO when the answer has no choices to
 * stream or a choice without a message; ERR_TOOBIG past out's cap (the
 * chunks repeat the answer's id and model).
 */
MUST_USE enum err provider_stream_from_answer(const json_t *answer, bool include_usage,
                                              struct buf *out);

/* The adapter for an api_style, or NULL (a style no adapter speaks). */
const struct provider_adapter *provider_find(const char *api_style);

/*
 * How an adapter's upstream stream is framed (its framing; SSE for NULL).
 */
enum provider_framing provider_stream_framing(const struct provider_adapter *ad);

/*
 * Reads OpenAI's usage object into u (prompt, completion, cached tokens).
 * Counts come from a peer: a negative, non-numeric or absurd count must not
 * lower a tenant's spend, overflow a total, or get a whole usage batch
 * refused by the plugin (which bounds every count), so each is clamped to
 * 0..PROVIDER_MAX_TOKENS and cached tokens to at most the prompt tokens.
 */
void provider_usage_from_openai(const json_t *usage, struct provider_usage *u);

/*
 * Prompt tokens estimated from an OpenAI-shaped request, for a call the
 * provider billed but never reported: text characters / 4 (OpenAI's rule of
 * thumb for English) + 4 per chat message + 3; token-id inputs count one
 * each. Images, tool definitions and non-text parts are not counted: this is
 * the router's context-window estimate; what tpm_limit and budgets reserve
 * counts the whole request (usagebound_request_tokens).
 */
long long provider_prompt_estimate(enum provider_op op, const json_t *req);
/*
 * How many embeddings an OpenAI embeddings request asks for, so that an answer
 * with another number of vectors can be refused (a provider's malformed reply,
 * never passed on as a shorter or longer list): 1 for a string or one array of
 * token ids, the array's length for an array of strings or of token-id arrays;
 * 0 when input is none of these.
 */
size_t provider_embed_inputs(const json_t *req);
/* Completion tokens estimated from an OpenAI-shaped chat answer: its message text / 4. */
long long provider_completion_estimate(const json_t *answer);

/*
 * The cost of u at the prices of model in a catalog entry's models[]; 0 when
 * the model is unknown or a price is out of the plugin's bounds:
 *   (prompt - cached - cache writes) x input_per_1m
 *   + cached x cached_input_per_1m + 5-minute cache writes x cache_write_per_1m
 *   + 1-hour cache writes x 2 x input_per_1m (Anthropic's multiplier)
 *   + completion x output_per_1m, all per 1M tokens,
 *   + web_search_requests x web_search_per_1k / 1000.
 * A model without cached_input_per_1m or cache_write_per_1m (older catalogs,
 * models without prompt caching) has those tokens at input_per_1m. When the
 * whole prompt (cache reads and writes included) exceeds the model's
 * long_context_threshold, input_per_1m and output_per_1m are
 * long_input_per_1m and long_output_per_1m, and the cache prices are scaled by
 * long_input_per_1m / input_per_1m (at most PROVIDER_MAX_PRICE; the long
 * input price itself when input_per_1m is 0). A model without the three
 * long-context fields, or with one out of the plugin's bounds, has no tier;
 * without a valid web_search_per_1k, searches cost nothing: the cost is what
 * it was before those fields existed.
 */
double provider_cost(const json_t *entry, const char *model, const struct provider_usage *u);

/* The most cache breakpoints (cache_control hints) one request may set: Anthropic's limit. */
#define PROVIDER_MAX_CACHE_POINTS 4

/*
 * Checks the app's prompt-cache hints (cache_control on messages[i],
 * messages[i].content[j] and tools[i]) before any provider is called: each
 * must be {"type": "ephemeral"} with an optional "ttl" of "5m" or "1h", and
 * at most PROVIDER_MAX_CACHE_POINTS may be set. ERR_INVAL with bad naming
 * the field (never its value); ERR_OK for a request without hints.
 */
MUST_USE enum err provider_cache_check(const json_t *req, struct provider_bad *bad);

/* Frees a provider_http's body (wiped) and headers. */
void provider_http_done(struct provider_http *h);

/*
 * Exposed for tests: Anthropic request/response translation. ERR_INVAL when
 * the request cannot be translated (the adapter's build also names the field
 * in provider_http.bad).
 */
MUST_USE enum err provider_anthropic_request(const json_t *openai_req, const char *model,
                                             bool stream, long default_max_tokens, json_t **ret);
/* Whether an Azure api-version takes stream_options (2024-09-01-preview and later). */
bool provider_azure_stream_options(const char *api_version);
MUST_USE enum err provider_anthropic_response(const json_t *msg, json_t **ret,
                                              struct provider_usage *ret_usage);
/*
 * Reads Anthropic's usage object into u, as the Anthropic adapter does
 * (prompt tokens include cache reads and writes, counts clamped).
 * input_side: the object of a whole answer or of message_start, whose input
 * counts are taken even when zero; message_delta's only when it has them.
 */
void provider_anthropic_usage(const json_t *usage, struct provider_usage *u, bool input_side);
/*
 * Is the parsed answer Anthropic's error object ({"type":"error",
 * "error":{...}}, or any object with an "error" object), as gateways may
 * send it in a 2xx? Only its shape is looked at: its text may echo the key.
 */
bool provider_anthropic_error(const json_t *answer);

/*
 * Exposed for tests: Cohere request/response translation. The request is
 * Cohere's chat (or embed) body for an OpenAI chat (or embeddings) request;
 * ERR_INVAL with bad (may be NULL) naming the field when it cannot be
 * translated. The response takes Cohere's parsed answer: ERR_PROTO when it is
 * not one, ERR_UPSTREAM when it is Cohere's error (its text is never read).
 */
MUST_USE enum err provider_cohere_request(enum provider_op op, const json_t *openai_req,
                                          const char *model, bool stream, struct provider_bad *bad,
                                          json_t **ret);
MUST_USE enum err provider_cohere_response(enum provider_op op, const json_t *answer,
                                           const char *model, json_t **ret,
                                           struct provider_usage *ret_usage);

#endif
